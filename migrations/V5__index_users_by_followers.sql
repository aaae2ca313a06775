-- The contract step of the counter caches: profiles are listed by follower count once every
-- user's count is filled. It waits for the backfill (`cargo xtask migrate run` stops before it
-- until data-migrations/V1__backfill_counter_caches.sql is done on the database) and builds the
-- index without blocking writes, outside a transaction.
-- migrate: after-backfill V1__backfill_counter_caches
-- migrate: no-transaction
CREATE INDEX CONCURRENTLY IF NOT EXISTS users_followers_count_idx ON users (followers_count DESC, id);
