//! The data-migration file format: one `.sql` file per data migration, settings and sections as
//! directive comments, so an editor highlights it as SQL and a reviewer reads it top to bottom.
//!
//! ```sql
//! -- Fill the counter caches that V4 added (free comments like this one are fine).
//! -- @requires 4                    schema version (refinery) the data migration needs
//! -- @table users                   the table walked in key order
//! -- @key id                        its batch key: one integer or text column, unique
//! -- @batch-size 500                rows per batch in production (default 1000)
//! -- @pause 10ms                    sleep between batches in production (default 0)
//!
//! -- @batch
//! UPDATE users SET posts_count = (SELECT count(*) FROM posts WHERE posts.author_id = users.id)
//! WHERE id > :lower AND id <= :upper;
//!
//! -- @check every user's posts_count matches the posts table
//! SELECT id FROM users WHERE posts_count <> (SELECT count(*) FROM posts WHERE author_id = users.id);
//!
//! -- @snapshot
//! SELECT id, posts_count FROM users ORDER BY id;
//!
//! -- @expected                     optional: what the rows should be, for keys in (:lower, :upper]
//! SELECT u.id, (SELECT count(*) FROM posts AS p WHERE p.author_id = u.id) AS posts_count
//! FROM users AS u WHERE u.id > :lower AND u.id <= :upper;
//!
//! -- @actual                       and what they are (`backfill verify` compares the two)
//! SELECT id, posts_count FROM users WHERE id > :lower AND id <= :upper;
//! ```
//!
//! Files are named like refinery's migrations, `V{n}__{name}.sql` with `name` in `\w+`, in their
//! own version sequence. A directive is a `--` comment whose text starts with `@`. Settings come
//! first; then the sections: exactly one `-- @batch`, any number of `-- @check <description>`,
//! exactly one `-- @snapshot`, and optionally one `-- @expected` with one `-- @actual` (the
//! verification), each holding one statement. The batch statement selects its rows
//! with `key > :lower AND key <= :upper`: the engine binds the bounds of each batch, `(lower,
//! upper]`. A check is a query that must return no rows once the data migration has run. The
//! snapshot query's rows are what reviewers approve, so it must have a deterministic order
//! (`ORDER BY` a unique key, or a single row of aggregates). The verification's two queries read
//! the same key range, `(:lower, :upper]`, each returning the row's key as its first column and
//! then the compared columns, the same number and names on both sides: `@expected` computes what
//! the rows should be from the source of truth, `@actual` reads what they are. Row order is part
//! of the comparison when (and only when) both queries end in an `ORDER BY` that starts with the
//! key; the rows of one key are then compared as a sequence.
//!
//! Statement boundaries, directives and placeholders are found with sqlparser's tokenizer, so a
//! `;` or `:lower` inside a string literal or a comment is never mistaken for one; the sections
//! are then parsed with sqlparser to check their shape. The checksum is the SHA-256 of the
//! file's exact bytes (what `sha256sum` prints).
//!
//! # What this module owns, and what it never does
//!
//! It owns the file format: reading data-migration files, turning one file's text into a
//! [`DataMigration`], and refusing a file that breaks a rule above. Each refusal is one
//! [`Error`], of kind [`ErrorKind::Format`] ([`ErrorKind::Io`] when a file cannot be read),
//! naming `file:line`, or only the file when the mistake is its name, encoding or version. It never
//! touches a database: whether the required schema version, the table and the key exist is found
//! out by the stages that run the data migration (`backfill sample`, `backfill run`), so a file
//! can be linted and reviewed with no database at all.
//!
//! The work is in three steps, one file each:
//! - `load.rs`: directories and files (which files are data migrations, their names, versions
//!   and checksums, finding one by name);
//! - `parse.rs`: one file's text into a [`DataMigration`] (directives, settings, sections, the
//!   `:lower`/`:upper` placeholders);
//! - `validate.rs`: what each section's statement must look like (both bounds used on the key,
//!   one table, no DDL, queries where queries belong, a deterministic snapshot order), checked on
//!   sqlparser's syntax tree as the parser cuts each statement out.

mod identity;
mod load;
mod parse;
mod validate;

use std::path::PathBuf;
use std::time::Duration;

use crate::backfill::error::{Error, ErrorKind};
use crate::sql::Dialect;

pub use identity::{checksum, parse_file_name};
pub use load::{check_dir, find, load_dir, load_file};
pub use parse::{parse, parse_duration};

/// Rows per batch when a data migration does not say.
pub const DEFAULT_BATCH_SIZE: u64 = 1000;
/// The largest `@batch-size` accepted: one batch is one transaction, and a transaction this big
/// is the long lock the whole tool exists to avoid.
pub const MAX_BATCH_SIZE: u64 = 1_000_000;

/// A parsed, validated data migration.
#[derive(Debug, Clone, PartialEq)]
pub struct DataMigration {
    /// `n` of `V{n}__{name}.sql`.
    pub version: u64,
    /// `name` of `V{n}__{name}.sql`.
    pub name: String,
    pub path: PathBuf,
    /// SHA-256 of the file's bytes, lower-case hex.
    pub checksum: String,
    /// The schema version (refinery) this data migration needs.
    pub requires: Located<u64>,
    /// The table walked in key order, normalized like an SQL identifier (unquoted names are
    /// lower-cased, quoted ones kept as written).
    pub table: Located<String>,
    /// The batch key column, normalized the same way.
    pub key: Located<String>,
    pub batch_size: Located<u64>,
    pub pause: Located<Duration>,
    pub batch: BatchStatement,
    pub checks: Vec<Check>,
    pub snapshot: Section,
    /// The `-- @expected` and `-- @actual` queries, when the file has them.
    pub verify: Option<Verification>,
}

impl DataMigration {
    /// `V{n}__{name}`: the file name without `.sql`, which is also the snapshot's name.
    pub fn id(&self) -> String {
        format!("V{}__{}", self.version, self.name)
    }

    /// An error at `line` of this data migration's file.
    pub fn error_at(&self, kind: ErrorKind, line: usize, message: impl Into<String>) -> Error {
        Error::at(kind, &self.path, line, message)
    }
}

/// A value and the line it was declared on (0 for a default).
#[derive(Debug, Clone, PartialEq)]
pub struct Located<T> {
    pub value: T,
    pub line: usize,
}

/// One statement of a section, as written (comments inside it kept, no trailing `;`).
#[derive(Debug, Clone, PartialEq)]
pub struct Section {
    /// Line of the directive that opens the section.
    pub directive_line: usize,
    /// Line where the statement starts.
    pub line: usize,
    pub sql: String,
}

/// The batch statement, with its placeholders rewritten for each dialect.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchStatement {
    pub section: Section,
    /// `:lower`/`:upper` as `$1`/`$2`.
    pub postgres: String,
    /// `:lower`/`:upper` as `?1`/`?2`.
    pub sqlite: String,
}

impl BatchStatement {
    pub fn sql(&self, dialect: Dialect) -> &str {
        match dialect {
            Dialect::Postgres => &self.postgres,
            Dialect::Sqlite => &self.sqlite,
        }
    }
}

/// A query of a verification over `(:lower, :upper]`, with its placeholders rewritten for each
/// database like the batch statement's.
#[derive(Debug, Clone, PartialEq)]
pub struct RangeQuery {
    pub section: Section,
    /// `:lower`/`:upper` as `$1`/`$2`.
    pub postgres: String,
    /// `:lower`/`:upper` as `?1`/`?2`.
    pub sqlite: String,
}

impl RangeQuery {
    pub fn sql(&self, dialect: Dialect) -> &str {
        match dialect {
            Dialect::Postgres => &self.postgres,
            Dialect::Sqlite => &self.sqlite,
        }
    }
}

/// The verification of a data migration: what the rows of a key range should be, and what they
/// are. Both queries return the key first, then the compared columns.
#[derive(Debug, Clone, PartialEq)]
pub struct Verification {
    /// `-- @expected`: computed from the source of truth (may run on another database).
    pub expected: RangeQuery,
    /// `-- @actual`: the rows as the data migration left them.
    pub actual: RangeQuery,
    /// Both queries end in `ORDER BY key, ...`: the order of a key's rows is part of the
    /// contract, and compared.
    pub ordered: bool,
}

/// A `-- @check <description>` section: a query that must return no rows once the data
/// migration has run.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub description: String,
    pub section: Section,
}

/// A complete, valid data-migration file and helpers to vary it, shared by the tests of each
/// step.
#[cfg(test)]
mod example {
    use std::path::Path;

    use super::{DataMigration, parse};
    use crate::backfill::error::Result;

    pub(super) const GOOD: &str = "\
-- Fill posts_count.
-- @requires 4
-- @table users
-- @key id
-- @batch-size 500
-- @pause 10ms

-- @batch
UPDATE users SET posts_count = (SELECT count(*) FROM posts WHERE posts.author_id = users.id)
WHERE id > :lower AND id <= :upper;

-- @check every posts_count matches
SELECT id FROM users WHERE posts_count <> (SELECT count(*) FROM posts WHERE author_id = users.id);

-- @snapshot
SELECT id, posts_count FROM users ORDER BY id;
";

    pub(super) fn parse_text(text: &str) -> Result<DataMigration> {
        parse(Path::new("data-migrations/V3__fill_posts.sql"), text)
    }

    #[track_caller]
    pub(super) fn error(text: &str) -> String {
        match parse_text(text) {
            Ok(m) => panic!("expected an error; got {m:#?}"),
            Err(e) => {
                let s = e.to_string();
                assert!(!s.contains('\n'), "one line: {s}");
                s
            }
        }
    }

    pub(super) fn good_with(from: &str, to: &str) -> String {
        assert!(GOOD.contains(from), "{from}");
        GOOD.replacen(from, to, 1)
    }
}
