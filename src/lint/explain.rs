//! `migrate lint --explain RULE`: each rule's full documentation, built into the binary so it is
//! at hand in any workspace (a finding's help line points here rather than to a file that only
//! this repository has).
//!
//! Every rule has the same four parts: what it catches, why it matters, what to do instead, and
//! an example. The match in [`explanation`] is exhaustive, so a new rule does not compile until
//! it is documented.

use super::{Category, RuleId};

/// The documentation of one rule.
#[derive(Debug, Clone, Copy)]
pub struct Explanation {
    pub catches: &'static str,
    pub why: &'static str,
    pub instead: &'static str,
    pub example: &'static str,
}

/// The help of the backfill rules, at the end of "what to do instead".
const BACKFILL_INSTEAD: &str = "Keep the structure change in the schema migration and move the row changes to a data migration in `data-migrations/`: it runs in small batches, each its own short transaction, resumable, paced, and reviewed through a snapshot. Try it with `cargo xtask backfill sample NAME`, then `cargo xtask backfill plan NAME` and `cargo xtask backfill run PLAN` in production (`cargo xtask migrate lint --explain data-migration-invalid` shows the file format). If the table is small in every environment, list it under `small-tables` in the config or suppress the finding with a reason that says so.";

/// The documentation of `rule`.
pub fn explanation(rule: RuleId) -> Explanation {
    use RuleId::*;
    match rule {
        BackfillUpdate => Explanation {
            catches: "An UPDATE of a table that existed before this migration (any table the same file did not create first), including an UPDATE inside a WITH clause. An UPDATE whose WHERE only compares columns with constants (`WHERE id = 7`) is reported as a warning: it is probably a seed-row fix-up. Tables created earlier in the same file are new and empty, and never reported.",
            why: "Every matching row is rewritten inside the migration's transaction and stays locked until the migration commits: writers to those rows wait, the deploy waits, and the time grows with the table. A failure half-way rolls everything back, with nothing to resume.",
            instead: BACKFILL_INSTEAD,
            example: "-- migrations/V5__add_posts_count.sql\nALTER TABLE users ADD COLUMN posts_count bigint;   -- fine: instant\nUPDATE users SET posts_count =                      -- reported\n    (SELECT count(*) FROM posts WHERE posts.author_id = users.id);\n\n-- instead, data-migrations/V1__fill_posts_count.sql:\n-- @requires 5\n-- @table users\n-- @key id\n-- @batch\nUPDATE users SET posts_count = (SELECT count(*) FROM posts WHERE posts.author_id = users.id)\nWHERE id > :lower AND id <= :upper;\n-- @snapshot\nSELECT id, posts_count FROM users ORDER BY id;",
        },
        BackfillDelete => Explanation {
            catches: "A DELETE from a table that existed before this migration, including one inside a WITH clause. A WHERE that only compares columns with constants is reported as a warning (a likely seed-row fix-up).",
            why: "The DELETE scans the table for the rows its WHERE matches and deletes them inside the migration's transaction, holding a lock on each until the migration commits and leaving as many dead rows for vacuum: the time grows with the table and the deploy waits.",
            instead: BACKFILL_INSTEAD,
            example: "DELETE FROM sessions WHERE expires_at < now();   -- reported\n\n-- instead, a data migration with `-- @table sessions`, `-- @key id` and\n-- @batch\nDELETE FROM sessions WHERE expires_at < now() AND id > :lower AND id <= :upper;",
        },
        BackfillMerge => Explanation {
            catches: "A MERGE into a table that existed before this migration, or a MERGE that copies an existing table's rows into a new one. A MERGE of constant rows (a VALUES source) is an upsert of seed rows, like INSERT ... VALUES ... ON CONFLICT, and is not reported, unless a WHEN NOT MATCHED BY SOURCE clause makes it act on every other row of the target.",
            why: "MERGE joins its source to the target and writes a row for each match inside the migration's transaction: every row it writes stays locked until the migration commits, and the time grows with the source and the target.",
            instead: BACKFILL_INSTEAD,
            example: "MERGE INTO users u USING legacy_users l ON u.id = l.id   -- reported\nWHEN MATCHED THEN UPDATE SET handle = l.handle;\n\n-- instead: a data migration whose batch statement is an UPDATE ... FROM legacy_users\n-- bounded by `u.id > :lower AND u.id <= :upper`",
        },
        BackfillInsertSelect => Explanation {
            catches: "INSERT ... SELECT (or SQLite's REPLACE ... SELECT) whose rows come from a table that existed before this migration: its FROM items, set-operation branches, derived tables and CTEs. INSERT of constant rows (VALUES, a SELECT without FROM, or one guarded by `WHERE NOT EXISTS (SELECT ... FROM existing)`, the way seed rows are added) is not reported, nor a copy between tables created in the same file.",
            why: "The copy scales with the source table and runs inside the migration's transaction: the deploy waits until every row is copied, and a failure half-way leaves nothing to resume.",
            instead: BACKFILL_INSTEAD,
            example: "CREATE TABLE user_settings (user_id bigint PRIMARY KEY, theme text);\nINSERT INTO user_settings (user_id, theme) SELECT id, 'light' FROM users;   -- reported\n\n-- instead, a data migration on `users` with\n-- @batch\nINSERT INTO user_settings (user_id, theme)\nSELECT id, 'light' FROM users WHERE id > :lower AND id <= :upper;",
        },
        BackfillCreateTableAs => Explanation {
            catches: "CREATE TABLE ... AS query, SELECT ... INTO and CREATE MATERIALIZED VIEW (`WITH DATA`, the default) whose rows come from a table that existed before this migration, directly, through a view, or through a set-returning function the file creates (`SELECT * FROM f()`, `SELECT generate_series(1, (SELECT max(id) FROM t))`). `WITH NO DATA` and plain views are not reported.",
            why: "Every row the query returns is copied into the new table (or the materialized view's storage) inside the migration: the time grows with the source table and the deploy waits for it.",
            instead: BACKFILL_INSTEAD,
            example: "CREATE TABLE posts_archive AS SELECT * FROM posts WHERE created_at < '2020-01-01';   -- reported\n\n-- instead: CREATE TABLE posts_archive (LIKE posts) in the migration, and a data migration\n-- on `posts` whose batch statement is an INSERT INTO posts_archive SELECT ... bounded by the key",
        },
        BackfillCopy => Explanation {
            catches: "COPY ... FROM (a file, a program or STDIN) into a table that existed before this migration (PostgreSQL). COPY ... TO only reads and is not reported.",
            why: "The load runs inside the migration's transaction: the deploy waits until every row is in, and a failure half-way leaves nothing to resume.",
            instead: "Load the data outside the schema migration: a one-off job, or a staging table filled by the job and a data migration in `data-migrations/` that moves its rows in batches (`cargo xtask backfill sample NAME` tries it). If the table is small everywhere, suppress the finding with a reason that says so.",
            example: "COPY countries FROM '/data/countries.csv' WITH (FORMAT csv);   -- reported when `countries` existed before",
        },
        BackfillDoBlock => Explanation {
            catches: "Data changes inside a DO block on tables that existed before this migration: UPDATE, DELETE, MERGE, INSERT ... SELECT, COPY FROM, CREATE TABLE AS and materialized views, and SQL run by EXECUTE of a literal or of `format(...)`. Also `SELECT f()`, `PERFORM f()` and `CALL p()` (at the top level or in a DO block) of a function or procedure defined earlier in the same file: its body runs now, and its statements (and those of the routines it calls, transitively) are judged the same way. Functions that are only defined (trigger functions, helpers) are never reported: defining code runs nothing. A point-lookup change (`WHERE id = 7`) is a warning; constant rows are not a change of existing rows.",
            why: "A DO block runs with the migration, as one statement inside its transaction: a loop of UPDATEs over a big table in there is a backfill like any other, only harder to see in review.",
            instead: BACKFILL_INSTEAD,
            example: "DO $$\nBEGIN\n  UPDATE users SET handle = lower(handle);   -- reported, with this line\nEND $$;",
        },
        BackfillAlterColumnType => Explanation {
            catches: "ALTER COLUMN ... TYPE (PostgreSQL) to a type that is not binary-coercible from the old one, or with a USING clause. The old type comes from the migrations linted before the file; when it is unknown, only a new type that is not one of the usual free targets (text, varchar, unconstrained numeric, citext) is reported.",
            why: "PostgreSQL rewrites every row and rebuilds every index of the table under an ACCESS EXCLUSIVE lock: no reads and no writes on the table until it finishes. `int` to `bigint` is such a change; `varchar(50)` to `varchar(100)` or to `text` is not.",
            instead: "Add a column of the new type, keep it in sync for new writes with a trigger, fill the existing rows with a data migration in `data-migrations/` (`cargo xtask backfill sample NAME`), switch readers over, then drop the old column. If the old type really is binary-coercible to the new one, suppress the finding with that reason.",
            example: "ALTER TABLE users ALTER COLUMN id TYPE bigint;   -- reported: rewrites `users`\nALTER TABLE users ALTER COLUMN bio TYPE text;    -- fine when bio was varchar(n)",
        },
        BackfillVolatileDefault => Explanation {
            catches: "ADD COLUMN on an existing table with a volatile default (PostgreSQL): gen_random_uuid(), uuid_generate_v4(), random(), clock_timestamp(), nextval(), the `serial` types (an implicit nextval), and functions created in this file or an earlier migration as PostgreSQL judges them: volatile unless declared IMMUTABLE or STABLE, except a `LANGUAGE sql` function PostgreSQL inlines (one `SELECT expr` or `RETURN expr`), which is as volatile as its expression; PL/pgSQL is never inlined. Constant and stable defaults (`0`, `'new'`, `now()`) are not reported, nor functions nothing here defined.",
            why: "Since PostgreSQL 11 a constant default is stored in the catalog and ADD COLUMN is instant; a volatile one must be computed for every row, so PostgreSQL rewrites the whole table under an ACCESS EXCLUSIVE lock.",
            instead: "Add the column without a default (or with a constant one), set the volatile default in a separate statement afterwards (it then applies to new rows only), and fill the existing rows with a data migration in `data-migrations/`.",
            example: "ALTER TABLE users ADD COLUMN public_id uuid DEFAULT gen_random_uuid();   -- reported\n\n-- instead:\nALTER TABLE users ADD COLUMN public_id uuid;\nALTER TABLE users ALTER COLUMN public_id SET DEFAULT gen_random_uuid();\n-- and a data migration: UPDATE users SET public_id = gen_random_uuid()\n--   WHERE public_id IS NULL AND id > :lower AND id <= :upper",
        },
        BackfillStoredGeneratedColumn => Explanation {
            catches: "ADD COLUMN ... GENERATED ALWAYS AS (...) STORED or ... GENERATED ... AS IDENTITY on an existing table (PostgreSQL). A virtual generated column (PostgreSQL 18) is not reported.",
            why: "Both compute and write a value for every existing row, so PostgreSQL rewrites the whole table under an ACCESS EXCLUSIVE lock.",
            instead: "For a generated column: a plain nullable column kept up to date by a trigger, existing rows filled by a data migration in `data-migrations/` (or a view or an expression index if it need not be stored). For an identity: a plain nullable column, a sequence default set in a separate statement (new rows only), existing rows filled by a data migration.",
            example: "ALTER TABLE users ADD COLUMN handle_lower text GENERATED ALWAYS AS (lower(handle)) STORED;   -- reported",
        },
        BackfillTableRebuild => Explanation {
            catches: "The table-rebuild pattern: CREATE TABLE new, INSERT INTO new SELECT ... FROM old, DROP TABLE old, ALTER TABLE new RENAME TO old (drop and rename in either order), or its mirror that renames the old table away first; in one file, or split over neighbouring migrations of one directory (up to 8 files on each side of the INSERT). Reported once, at the INSERT. In SQLite, also ALTER TABLE ... DROP COLUMN on an existing table: SQLite rewrites every row to take the column out.",
            why: "Every row of the table is copied inside the migration: SQLite write-locks the whole database for the copy; in PostgreSQL, writes to the old table meanwhile are lost or wait for the DROP.",
            instead: "In PostgreSQL, change the table in place (ADD COLUMN, ALTER COLUMN ... TYPE, ADD CONSTRAINT ... NOT VALID) and move any change to its data to a data migration in `data-migrations/`. SQLite's ALTER TABLE cannot change a column's type or constraints, so there the rebuild is sometimes the only way: suppress the finding with a reason that says how many rows the table has in production.",
            example: "CREATE TABLE users_new (id integer PRIMARY KEY, handle text NOT NULL);\nINSERT INTO users_new (id, handle) SELECT id, handle FROM users;   -- reported\nDROP TABLE users;\nALTER TABLE users_new RENAME TO users;",
        },
        IndexNotConcurrent => Explanation {
            catches: "On an existing table (PostgreSQL): CREATE INDEX and DROP INDEX without CONCURRENTLY, and ADD CONSTRAINT ... UNIQUE / PRIMARY KEY (or ADD COLUMN ... UNIQUE / PRIMARY KEY) that builds its own index instead of adopting one with USING INDEX.",
            why: "CREATE INDEX holds a SHARE lock for the whole build: reads go on, every write to the table waits. DROP INDEX and ADD CONSTRAINT take ACCESS EXCLUSIVE: reads wait too.",
            instead: "Use CREATE INDEX CONCURRENTLY / DROP INDEX CONCURRENTLY, which cannot run inside a transaction: see `cargo xtask migrate lint --explain concurrently-in-transaction` for where to put them. For a UNIQUE or PRIMARY KEY constraint, build the index first with CREATE UNIQUE INDEX CONCURRENTLY, then ADD CONSTRAINT ... USING INDEX, which only updates the catalog.",
            example: "CREATE INDEX posts_author_id_idx ON posts (author_id);                -- reported\nCREATE INDEX CONCURRENTLY posts_author_id_idx ON posts (author_id);   -- instead, outside a transaction\n\nCREATE UNIQUE INDEX CONCURRENTLY users_handle_idx ON users (handle);\nALTER TABLE users ADD CONSTRAINT users_handle_key UNIQUE USING INDEX users_handle_idx;",
        },
        ConcurrentlyInTransaction => Explanation {
            catches: "CREATE INDEX CONCURRENTLY or DROP INDEX CONCURRENTLY where PostgreSQL refuses it: inside the file's own BEGIN ... COMMIT, inside a DO block, or anywhere in a migration when the migration runner wraps each migration in a transaction (refinery does; `transactional-migrations = false` in the config says your runner does not). A file marked `-- migrate: no-transaction`, or named by a runner's convention for running outside a transaction (ory/popx's `*.autocommit.up.sql`), is not run in one.",
            why: "PostgreSQL fails the statement with \"cannot run inside a transaction block\" (or \"cannot be executed from a function\" in a DO block), so the migration stops there and the deploy fails. Dropping CONCURRENTLY to make it pass blocks writes to the table for the whole build instead (`index-not-concurrent`).",
            instead: "Put the statement in a migration of its own (nothing else that needs a transaction, no BEGIN) and mark it `-- migrate: no-transaction` in its header: `cargo xtask migrate run` runs its statements one by one outside a transaction and records it in refinery's history exactly as refinery would, so refinery's own runner still accepts the history. Inside a DO block, move it out of the block. If your own runner can run a migration outside a transaction, set `transactional-migrations = false` in the config instead; if the file has its own BEGIN ... COMMIT, move the statement after the COMMIT.",
            example: "-- migrations/V7__index_posts_author.sql: reported, refinery runs it in a transaction\nCREATE INDEX CONCURRENTLY posts_author_id_idx ON posts (author_id);\n\n-- instead, applied with `cargo xtask migrate run`:\n-- migrate: no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS posts_author_id_idx ON posts (author_id);",
        },
        ConstraintWithoutNotValid => Explanation {
            catches: "ADD FOREIGN KEY or ADD CHECK on an existing table without NOT VALID (PostgreSQL), the same constraints written inline in ADD COLUMN (`ADD COLUMN editor_id bigint REFERENCES users`), which have no NOT VALID form, and a VALIDATE CONSTRAINT in the same transaction as the ADD CONSTRAINT ... NOT VALID it validates (the same file, when the runner wraps it in a transaction; the same BEGIN ... COMMIT otherwise): the lock the ADD took is held until commit, so the scan runs under it.",
            why: "The constraint is checked against every existing row while the lock is held: ACCESS EXCLUSIVE for a CHECK (no reads, no writes), SHARE ROW EXCLUSIVE on both tables for a foreign key (no writes to either).",
            instead: "Add the constraint NOT VALID (new rows are checked at once), then VALIDATE CONSTRAINT in a later migration: validation only takes a SHARE UPDATE EXCLUSIVE lock, which blocks neither reads nor writes. For an inline constraint, add the column plain, then ADD CONSTRAINT ... NOT VALID.",
            example: "ALTER TABLE posts ADD CONSTRAINT posts_author_fk FOREIGN KEY (author_id) REFERENCES users (id);   -- reported\n\n-- instead:\nALTER TABLE posts ADD CONSTRAINT posts_author_fk FOREIGN KEY (author_id) REFERENCES users (id) NOT VALID;\n-- and in a later migration:\nALTER TABLE posts VALIDATE CONSTRAINT posts_author_fk;",
        },
        SetNotNull => Explanation {
            catches: "ALTER COLUMN ... SET NOT NULL on a column of an existing table (PostgreSQL), unless a validated `CHECK (column IS NOT NULL)` already proves it (one an earlier migration added validated or validated, or one this file validates or adds validated first), the column is NOT NULL already, or the file validates a constraint of the table whose content no migration read here shows.",
            why: "PostgreSQL scans every row to prove there is no NULL, holding ACCESS EXCLUSIVE the whole time: no reads, no writes until the scan finishes.",
            instead: "Add `CHECK (column IS NOT NULL) NOT VALID`, VALIDATE it in a later migration (no blocking lock), then SET NOT NULL: PostgreSQL 12+ uses the validated check and skips the scan. Drop the check afterwards.",
            example: "ALTER TABLE users ALTER COLUMN handle SET NOT NULL;   -- reported\n\n-- instead, V8:\nALTER TABLE users ADD CONSTRAINT users_handle_not_null CHECK (handle IS NOT NULL) NOT VALID;\n-- V9:\nALTER TABLE users VALIDATE CONSTRAINT users_handle_not_null;\nALTER TABLE users ALTER COLUMN handle SET NOT NULL;\nALTER TABLE users DROP CONSTRAINT users_handle_not_null;",
        },
        RequireLockTimeout => Explanation {
            catches: "The first statement of a file that takes an ACCESS EXCLUSIVE (or SHARE ROW EXCLUSIVE) lock on an existing table or view with no `SET lock_timeout` before it (PostgreSQL): ALTER TABLE (except VALIDATE CONSTRAINT), DROP TABLE, TRUNCATE, DROP INDEX without CONCURRENTLY, CREATE TRIGGER, DROP TRIGGER, DROP [MATERIALIZED] VIEW, CREATE OR REPLACE VIEW of a view the file did not create, and a foreign key to an existing table in CREATE TABLE or added to a new table (it locks the referenced table SHARE ROW EXCLUSIVE). A warning by default; reported once per file.",
            why: "The statement first waits for every query running on the table; while it waits, every new query on the table, reads included, queues behind it. One slow report query and the application stops answering.",
            instead: "Start the file with `SET lock_timeout = '2s';` (or `SET LOCAL` inside the file's own transaction): the migration then fails fast instead of queueing the application behind it, and can be retried. Make it an error with `require-lock-timeout = \"error\"` under `[workspace.metadata.xtask-migrate.rules]`.",
            example: "SET lock_timeout = '2s';\nALTER TABLE users ADD COLUMN bio text;   -- not reported: the timeout comes first",
        },
        MigrationNameSkipped => Explanation {
            catches: "A file in the migrations directory that refinery would not run: a name that does not match `[UV]{version}__{name}.sql` (one underscore, no name, a fractional version, digits that are not ASCII), a version refinery cannot load at all, or a name that is not UTF-8.",
            why: "refinery skips such a file with at most a log line, so the schema change silently never happens; some names even make refinery refuse the whole directory, and then no migration runs.",
            instead: "Rename the file as the finding suggests: `V{version}__{name}.sql`, a whole version, two underscores, a name of letters, digits and `_`.",
            example: "migrations/V6_add_bio.sql     -- reported: one underscore, refinery skips it\nmigrations/V6__add_bio.sql    -- instead",
        },
        DuplicateMigrationVersion => Explanation {
            catches: "Two migration files with the same version, e.g. `V6__add_bio.sql` and `V6__add_avatar.sql` (typical after merging two branches).",
            why: "refinery applies only one of them: depending on the environment it fails, runs one and fails to record the other, or skips the second without a word, so environments drift apart.",
            instead: "Give the newer file a version of its own, such as the next free one. A file already applied somewhere keeps its version. Delete one of two identical copies.",
            example: "migrations/V6__add_bio.sql\nmigrations/V6__add_avatar.sql   -- reported: rename to V7__add_avatar.sql",
        },
        SyntaxError => Explanation {
            catches: "SQL that does not parse in the configured dialect (`--dialect postgres`, PostgreSQL's own grammar, or `sqlite`), and files that are not UTF-8 text or contain NUL bytes.",
            why: "The database will refuse the statement when the migration runs, and the linter cannot see what it does; the rest of the file is still linted.",
            instead: "Fix the SQL at the position shown. If it is valid for your database, check that the dialect is right (`dialect` in the config or `--dialect`).",
            example: "ALTER TABLE users ADD COLUMN bio text   -- reported: no `;` before the next statement\nCREATE INDEX ...",
        },
        SuppressionUnknownRule => Explanation {
            catches: "A `-- migrate-lint:` comment that names a rule id that does not exist (with the closest id suggested), names no rule, has no closing `)`, or is neither `allow(...)` nor `allow-file(...)`.",
            why: "The comment suppresses nothing for the misspelled rule, so the finding it was meant to excuse still fails the lint, or a reviewer believes something is excused that is not.",
            instead: "Use the ids `cargo xtask migrate lint --list-rules` prints: `-- migrate-lint: allow(rule-id, ...) reason` for the next statement, `allow-file(...)` for the whole file.",
            example: "-- migrate-lint: allow(backfil-update) roles has five rows   -- reported: did you mean `backfill-update`?",
        },
        SuppressionMissingReason => Explanation {
            catches: "A suppression comment with no reason after its rule ids.",
            why: "An exception nobody can explain later was never reviewed. Without a reason the suppression is not granted, so the finding it names is reported too.",
            instead: "Say why the statement is safe after the closing `)`: how many rows the table has everywhere, or when the migration runs.",
            example: "-- migrate-lint: allow(backfill-update)                                -- reported\n-- migrate-lint: allow(backfill-update) roles has five rows everywhere   -- instead",
        },
        SuppressionUnused => Explanation {
            catches: "A suppression comment that allows a rule with no finding to suppress: on the next statement for `allow(...)`, in the whole file for `allow-file(...)`. A warning by default.",
            why: "The statement it excused was changed or removed: an exception that outlives its cause would hide the next real finding on that statement.",
            instead: "Remove the rule from the comment, or the whole comment.",
            example: "-- migrate-lint: allow(backfill-update) five rows   -- reported: nothing to suppress\nALTER TABLE roles ADD COLUMN label text;",
        },
        ContractWithoutGate => Explanation {
            catches: "A schema migration that contracts what a data migration of the workspace fills or reads, without waiting for it: SET NOT NULL on a column its batch assigns, a validated CHECK on its table, dropping or renaming a column it assigns, dropping or renaming its table or a table it reads. Only data migrations whose `@requires` is below the schema migration's version count (the contract comes after their structure); a `-- migrate: after-backfill NAME` directive naming the data migration silences it.",
            why: "Deploys apply schema migrations as soon as they are merged, and the backfill runs on its own schedule, batch by batch. On a database where it has not finished, the SET NOT NULL fails on the rows still NULL, the CHECK fails on rows not yet filled, and a dropped or renamed column or table makes the backfill's next batch fail. It passes on a CI database where the backfill ran at once, and fails in production.",
            instead: "Declare the order: add `-- migrate: after-backfill V1__name` to the schema migration's header. `cargo xtask migrate run` then applies everything before it and stops there (exit 1) until the data migration is done on that database (or runs it inline with `--backfills run`), and `cargo xtask backfill status --require-done` is the CI/CD check.",
            example: "-- migrations/V6__posts_count_not_null.sql: reported, V1 fills users.posts_count\nALTER TABLE users ALTER COLUMN posts_count SET NOT NULL;\n\n-- instead:\n-- migrate: after-backfill V1__backfill_counter_caches\nALTER TABLE users ALTER COLUMN posts_count SET NOT NULL;",
        },
        AddingRequiredColumn => Explanation {
            catches: "ADD COLUMN ... NOT NULL (or, in PostgreSQL, an inline PRIMARY KEY) without a DEFAULT on a table that existed before this migration, in PostgreSQL and SQLite. `DEFAULT NULL` counts as no default. Generated columns (STORED, IDENTITY) and `serial` columns give every row a value and are not reported; neither is a table created earlier in the same file. Small tables are reported too: they have rows. It is a backfill rule because what the column lacks is a value for the existing rows: a constant default, or a backfill.",
            why: "Every existing row gets the column's default, NULL, and the constraint refuses it: PostgreSQL fails with \"column ... contains null values\", SQLite with \"Cannot add a NOT NULL column with default value NULL\". On an empty table both accept the statement, so the migration passes on a fresh CI database and fails in production, in the middle of a deploy.",
            instead: "If one value fits every existing row, give the column a constant DEFAULT: since PostgreSQL 11 it is stored in the catalog and ADD COLUMN stays instant (drop the default afterwards if new rows must set it). Otherwise add the column nullable, fill it with a data migration in `data-migrations/` (`cargo xtask backfill sample NAME`), and SET NOT NULL in a later migration marked `-- migrate: after-backfill NAME` (see `cargo xtask migrate lint --explain set-not-null` for doing that without a long lock).",
            example: "ALTER TABLE users ADD COLUMN tenant_id bigint NOT NULL;   -- reported: fails on existing rows\n\n-- instead, one value for every row:\nALTER TABLE users ADD COLUMN plan text NOT NULL DEFAULT 'free';\n\n-- or: nullable, a data migration that fills it, then (gated) the constraint\nALTER TABLE users ADD COLUMN tenant_id bigint;",
        },
        ReindexNotConcurrent => Explanation {
            catches: "REINDEX INDEX, TABLE, SCHEMA, DATABASE or SYSTEM without CONCURRENTLY (PostgreSQL), also with `(CONCURRENTLY false)`. An index or a table created earlier in the same file, and a table listed under `small-tables`, are not reported.",
            why: "A plain REINDEX holds a SHARE lock on the table for the whole rebuild, so every write waits, and an ACCESS EXCLUSIVE lock on each index it rebuilds, so every query planned to use the index waits too, reads included. SCHEMA and DATABASE do that to every table in turn.",
            instead: "Use REINDEX ... CONCURRENTLY (PostgreSQL 12+): it builds a new index beside the old one and swaps them without blocking reads or writes. It cannot run inside a transaction, so put it in its own migration marked `-- migrate: no-transaction` (see `cargo xtask migrate lint --explain concurrently-in-transaction`). REINDEX SYSTEM cannot run concurrently: run it in a maintenance window, outside the migrations.",
            example: "REINDEX INDEX users_handle_idx;   -- reported\n\n-- instead, in its own migration:\n-- migrate: no-transaction\nREINDEX INDEX CONCURRENTLY users_handle_idx;",
        },
        TransactionInMigration => Explanation {
            catches: "BEGIN / START TRANSACTION, COMMIT / END and ROLLBACK / ABORT written in a migration when the migration runner wraps each migration in a transaction (refinery does; `transactional-migrations = false` in the config says your runner does not), in PostgreSQL and SQLite. A migration marked `-- migrate: no-transaction` (or named `*.autocommit.up.sql`, popx's convention) runs outside any transaction and may have its own; savepoints and statements inside DO blocks are not reported. It sits with the lock rules as the other rule about the runner's transaction (`concurrently-in-transaction`).",
            why: "refinery runs the migration and then its history insert in one transaction. A BEGIN only makes PostgreSQL warn (SQLite refuses it). A COMMIT ends the runner's transaction early: what came before is committed on its own and the rest runs outside the runner's transaction, so a failure after it leaves the migration half applied and not recorded, and the next deploy runs the first half again. A ROLLBACK undoes what came before it, yet the rest runs and the migration is recorded as applied.",
            instead: "Remove the transaction control: the runner already makes the migration atomic. A migration that must manage its own transactions (or run statements outside one) goes in a file of its own marked `-- migrate: no-transaction`, applied by `cargo xtask migrate run`.",
            example: "BEGIN;                                   -- reported\nALTER TABLE users ADD COLUMN bio text;\nCOMMIT;                                  -- reported\n\n-- instead:\nALTER TABLE users ADD COLUMN bio text;",
        },
        IdentifierTooLong => Explanation {
            catches: "A name over 63 bytes (PostgreSQL) given to a new object: CREATE TABLE (the table, its columns and named constraints), ADD COLUMN, ADD CONSTRAINT, CREATE INDEX, CREATE VIEW, and the new name of RENAME TO / RENAME COLUMN. Bytes are counted in UTF-8, so 32 accented letters are already too long. When two table, index or view names of the file truncate to the same 63 bytes, the note says so. A warning by default; it is in the syntax category because the SQL does not mean what it says.",
            why: "PostgreSQL keeps only the first 63 bytes of an identifier (NAMEDATALEN - 1) and truncates a longer one with a NOTICE nobody reads in a migration log. The object gets a name nobody wrote: a later migration, an ORM or a monitoring query that looks for the full name does not find it, and two long names that share their first 63 bytes collide (\"relation ... already exists\"), typically generated index and constraint names.",
            instead: "Shorten the name to at most 63 bytes: abbreviate the table or column parts of a generated name (`idx`, `fk`, `chk` suffixes, initials of long column lists).",
            example: "CREATE INDEX customer_subscription_billing_events_created_at_and_status_id_idx ON events (created_at, status);   -- reported: 65 bytes\n\n-- instead:\nCREATE INDEX billing_events_created_at_status_idx ON events (created_at, status);",
        },
        DataMigrationInvalid => Explanation {
            catches: "A file in the data-migrations directory that the batch engine cannot run safely: a malformed name, a missing or unknown directive, a batch statement that is not one UPDATE, DELETE or INSERT ... SELECT on the `@table` bounded by `:lower` and `:upper` on the `@key`, DDL, a check or snapshot that is not a query, a snapshot without a deterministic order, a verification (`@expected` and `@actual`) that is not a pair of queries over `:lower` and `:upper` returning as many columns, or that orders one side only.",
            why: "`backfill sample`, `plan` and `run` refuse such a file; a batch statement that is not bounded by the key would rewrite the whole table in every batch.",
            instead: "Fix the file at the line shown. The format, in brief:\n- One `.sql` file per data migration in the data-migrations directory, named `V{n}__{name}.sql`: its own version sequence, `name` of letters, digits and `_`.\n- Settings first, as comments: `-- @requires N` (the schema migration version it needs), `-- @table T` (the table walked in key order), `-- @key K` (one unique integer or text column of `T`), optionally `-- @batch-size N` (rows per batch in production, default 1000) and `-- @pause D` (e.g. `10ms`, the sleep between batches in production).\n- Then the sections, one statement each: exactly one `-- @batch` (an UPDATE, DELETE or INSERT ... SELECT of `T` that selects its rows with `K > :lower AND K <= :upper`), any number of `-- @check DESCRIPTION` (a query that must return no rows afterwards), exactly one `-- @snapshot` (the rows reviewers approve: ORDER BY a unique key, or one row of aggregates), and optionally the verification `cargo xtask backfill verify` runs: one `-- @expected` (what the rows of `(:lower, :upper]` should be, computed from the source of truth) and one `-- @actual` (what they are), each a query returning the key first, then the same compared columns; both may end in `ORDER BY key, ...` when the order of a key's rows matters.\nThen `cargo xtask backfill sample NAME` runs it on the fixtures and writes its snapshot for review.",
            example: "-- data-migrations/V1__fill_posts_count.sql\n-- @requires 5\n-- @table users\n-- @key id\n-- @batch-size 500\n-- @pause 10ms\n\n-- @batch\nUPDATE users SET posts_count = (SELECT count(*) FROM posts WHERE posts.author_id = users.id)\nWHERE id > :lower AND id <= :upper;\n\n-- @check every posts_count matches the posts table\nSELECT id FROM users WHERE posts_count <> (SELECT count(*) FROM posts WHERE author_id = users.id);\n\n-- @snapshot\nSELECT id, posts_count FROM users ORDER BY id;",
        },
    }
}

/// The text `migrate lint --explain RULE` prints: a header with the rule's id, category and
/// default severity, the four parts wrapped at `width` columns, and how to configure it.
pub fn render(rule: RuleId, width: usize) -> String {
    let e = explanation(rule);
    let id = rule.as_str();
    let mut out = format!(
        "{id} ({}, {} by default)\n{}\n",
        rule.category().as_str(),
        rule.default_severity().as_str(),
        rule.description()
    );
    let mut configure = format!(
        "Turn it off or change its severity with `{id} = \"off\"` (or `\"warning\"`, `\"error\"`) under `[workspace.metadata.xtask-migrate.rules]`, or `--rule {id}=off`."
    );
    // Suppression comments apply to findings about statements; the others are about files.
    if matches!(
        rule.category(),
        Category::Backfill | Category::Lock | Category::Syntax
    ) {
        configure.push_str(&format!(
            " Suppress one finding with a comment before the statement: `-- migrate-lint: allow({id}) why it is safe`."
        ));
    }
    let text_width = width.saturating_sub(2).max(40);
    for (title, text) in [
        ("What it catches", e.catches),
        ("Why it matters", e.why),
        ("What to do instead", e.instead),
    ] {
        out.push_str(&format!("\n{title}:\n"));
        push_paragraphs(&mut out, text, text_width);
    }
    out.push_str("\nExample:\n");
    for line in e.example.lines() {
        if line.is_empty() {
            out.push('\n');
        } else {
            out.push_str(&format!("    {line}\n"));
        }
    }
    out.push('\n');
    for line in wrap(&configure, width) {
        out.push_str(&format!("{line}\n"));
    }
    out
}

/// Each line of `text` as a paragraph wrapped at `width`, indented by two spaces; a line that
/// starts with `- ` is a list item whose continuation lines align with its text.
fn push_paragraphs(out: &mut String, text: &str, width: usize) {
    for paragraph in text.lines() {
        let (first, rest, body) = match paragraph.strip_prefix("- ") {
            Some(item) => ("  - ", "    ", item),
            None => ("  ", "  ", paragraph),
        };
        let lines = wrap(body, width + 2 - first.len());
        for (i, line) in lines.iter().enumerate() {
            out.push_str(if i == 0 { first } else { rest });
            out.push_str(line);
            out.push('\n');
        }
    }
}

/// `text` split into lines of at most `width` characters at spaces. A `code span` in backticks
/// is never split, and neither is a word longer than `width`.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    let mut in_code = false;
    for word in text.split_whitespace() {
        match words.last_mut() {
            Some(last) if in_code => {
                last.push(' ');
                last.push_str(word);
            }
            _ => words.push(word.to_string()),
        }
        if word.matches('`').count() % 2 == 1 {
            in_code = !in_code;
        }
    }
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in words {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_is_explained_in_full() {
        for &rule in RuleId::ALL {
            let e = explanation(rule);
            for (part, text) in [
                ("catches", e.catches),
                ("why", e.why),
                ("instead", e.instead),
                ("example", e.example),
            ] {
                assert!(text.trim().len() > 20, "{rule}: `{part}` is too short");
            }
            let text = render(rule, 100);
            assert!(text.starts_with(rule.as_str()), "{text}");
        }
    }

    #[test]
    fn wraps_at_spaces() {
        assert_eq!(
            wrap("aa bb cc dd", 5),
            vec!["aa bb".to_string(), "cc dd".to_string()]
        );
        assert_eq!(wrap("abcdefgh ij", 5), vec!["abcdefgh", "ij"]);
        assert!(wrap("", 10).is_empty());
        assert_eq!(
            wrap("set `-- @batch-size N` here", 12),
            vec!["set", "`-- @batch-size N`", "here"]
        );
    }
}
