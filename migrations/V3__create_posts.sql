-- The foreign keys lock users (SHARE ROW EXCLUSIVE) while the table is created.
SET lock_timeout = '2s';

CREATE TABLE posts (
    id bigint PRIMARY KEY,
    author_id bigint NOT NULL REFERENCES users (id),
    body text NOT NULL,
    created_at timestamp NOT NULL
);

CREATE INDEX posts_author_id_idx ON posts (author_id);
