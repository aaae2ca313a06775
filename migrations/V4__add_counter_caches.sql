-- Counter caches for profile pages. Structure only: the counts are filled in by the data
-- migration `data-migrations/V1__backfill_counter_caches.sql`, in batches, after this has run.
-- A constant default needs no table rewrite (PostgreSQL 11+ stores it in the catalog).
SET lock_timeout = '2s';

ALTER TABLE users ADD COLUMN followers_count bigint NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN following_count bigint NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN posts_count bigint NOT NULL DEFAULT 0;
