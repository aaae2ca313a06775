-- A cached count of each order's line items, for the order list. Structure only: the data
-- migration data-migrations/V1__backfill_order_item_counts.sql fills it in batches. The check
-- is added NOT VALID (no scan of the table under its lock); it is validated once filled.
SET lock_timeout = '2s';

ALTER TABLE orders ADD COLUMN item_count integer;
ALTER TABLE orders ADD CONSTRAINT orders_item_count_not_negative CHECK (item_count >= 0) NOT VALID;
