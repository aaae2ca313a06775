-- The example application's schema: users who follow each other and write posts.
CREATE TABLE users (
    id bigint PRIMARY KEY,
    handle text NOT NULL UNIQUE,
    display_name text,
    created_at timestamp NOT NULL
);
