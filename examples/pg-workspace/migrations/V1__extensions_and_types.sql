-- Case-insensitive text for e-mail addresses (citext ships with PostgreSQL's core packages),
-- and the states an order goes through.
CREATE EXTENSION IF NOT EXISTS citext;

CREATE TYPE order_status AS ENUM ('pending', 'paid', 'shipped', 'cancelled');
