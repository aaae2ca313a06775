-- Fill orders.item_count, added by migrations/V3__add_order_item_count.sql, with the number of
-- line items in each order's details document, one batch of orders at a time.
--
-- @requires 3
-- @table orders
-- @key id
-- @batch-size 1000
-- @pause 10ms

-- @batch
UPDATE orders
SET item_count = jsonb_array_length(details -> 'items')
WHERE id > :lower AND id <= :upper;

-- @check every order's item_count equals the line items of its details
SELECT id, item_count, jsonb_array_length(details -> 'items') AS actual
FROM orders
WHERE item_count IS DISTINCT FROM jsonb_array_length(details -> 'items')
ORDER BY id;

-- @check every item_count satisfies the check constraint, so it can be validated
SELECT id, item_count FROM orders WHERE item_count < 0 ORDER BY id;

-- @snapshot
-- Per status, in the enum's order: orders, their items, money and first order time, and
-- whether every order has an item. A wrong count changes a sum or a maximum.
SELECT status,
       count(*) AS orders,
       sum(item_count) AS items,
       max(item_count) AS max_items,
       sum(total) AS total,
       min(placed_at) AS first_placed,
       bool_and(item_count > 0) AS all_have_items
FROM orders
GROUP BY status
ORDER BY status;
