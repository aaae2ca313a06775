-- The foreign keys lock users (SHARE ROW EXCLUSIVE) while the table is created.
SET lock_timeout = '2s';

CREATE TABLE follows (
    follower_id bigint NOT NULL REFERENCES users (id),
    followee_id bigint NOT NULL REFERENCES users (id),
    created_at timestamp NOT NULL,
    PRIMARY KEY (follower_id, followee_id)
);

CREATE INDEX follows_followee_id_idx ON follows (followee_id);
