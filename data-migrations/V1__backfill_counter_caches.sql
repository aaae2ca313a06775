-- Fill the counter caches that migrations/V4__add_counter_caches.sql added to users:
-- followers_count, following_count and posts_count, one batch of users at a time.
-- Each batch counts with the indexes follows_followee_id_idx, the follows primary key
-- (follower_id first) and posts_author_id_idx, so a batch costs its own users, not the table.
--
-- @requires 4
-- @table users
-- @key id
-- @batch-size 500
-- @pause 10ms

-- @batch
UPDATE users
SET followers_count = (SELECT count(*) FROM follows WHERE follows.followee_id = users.id),
    following_count = (SELECT count(*) FROM follows WHERE follows.follower_id = users.id),
    posts_count = (SELECT count(*) FROM posts WHERE posts.author_id = users.id)
WHERE id > :lower AND id <= :upper;

-- @check every user's followers_count equals the follows pointing at them
SELECT u.id, u.followers_count, (SELECT count(*) FROM follows AS f WHERE f.followee_id = u.id) AS actual
FROM users AS u
WHERE u.followers_count <> (SELECT count(*) FROM follows AS f WHERE f.followee_id = u.id)
ORDER BY u.id;

-- @check every user's following_count equals the follows they made
SELECT u.id, u.following_count, (SELECT count(*) FROM follows AS f WHERE f.follower_id = u.id) AS actual
FROM users AS u
WHERE u.following_count <> (SELECT count(*) FROM follows AS f WHERE f.follower_id = u.id)
ORDER BY u.id;

-- @check every user's posts_count equals the posts they wrote
SELECT u.id, u.posts_count, (SELECT count(*) FROM posts AS p WHERE p.author_id = u.id) AS actual
FROM users AS u
WHERE u.posts_count <> (SELECT count(*) FROM posts AS p WHERE p.author_id = u.id)
ORDER BY u.id;

-- @snapshot
-- Per block of 1,000 ids: how many users, and the sum and maximum of each counter. Every
-- user's counts are in some sum, so a wrong count changes a line; blocks keep it short.
SELECT (id / 1000) * 1000 AS first_id,
       count(*) AS users,
       sum(followers_count) AS followers,
       max(followers_count) AS max_followers,
       sum(following_count) AS following,
       max(following_count) AS max_following,
       sum(posts_count) AS posts,
       max(posts_count) AS max_posts
FROM users
GROUP BY id / 1000
ORDER BY first_id;

-- @expected
-- What each user's counters should be, counted from the follows and posts tables (the same
-- indexes as the batch), for `cargo xtask backfill verify V1`: run it after the backfill, and
-- again while the application writes, to prove every write path keeps the counters right.
SELECT u.id,
       (SELECT count(*) FROM follows AS f WHERE f.followee_id = u.id) AS followers_count,
       (SELECT count(*) FROM follows AS f WHERE f.follower_id = u.id) AS following_count,
       (SELECT count(*) FROM posts AS p WHERE p.author_id = u.id) AS posts_count
FROM users AS u
WHERE u.id > :lower AND u.id <= :upper;

-- @actual
-- What the counters are.
SELECT id, followers_count, following_count, posts_count
FROM users
WHERE id > :lower AND id <= :upper;
