-- A shop: customers and their orders; an order's line items are a jsonb document.
CREATE TABLE customers (
    id bigint PRIMARY KEY,
    email citext NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE orders (
    id bigint PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES customers (id),
    status order_status NOT NULL DEFAULT 'pending',
    total numeric(10, 2) NOT NULL,
    details jsonb NOT NULL DEFAULT '{"items": []}'::jsonb,
    placed_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX orders_customer_id_idx ON orders (customer_id);
