//! The databases: what the batch engine and the sample stage need of one, as a trait
//! ([`Backend`], plus [`SampleBackend`] for building a sample database), its value types, and
//! the two implementations, [`sqlite`] and [`postgres`]. Also where a database is
//! ([`target`]: a URL, without ever showing its password), how schema migrations are applied
//! to it ([`schema`]), and the private PostgreSQL cluster a sample can run on ([`cluster`]).
//!
//! Invariants: a backend supplies primitives (run SQL, read the catalog, bound a key range's
//! keys), never an algorithm: the batch loop, the tracking tables and retries live in
//! [`crate::backfill::run`], once for both databases. Key bounds are read with the table's own
//! ordering and collation, never compared in Rust. Every database error is classified for
//! retries once, where it is read (`postgres::classify`, `sqlite::classify`).

pub mod cluster;
pub mod history;
pub mod postgres;
pub mod schema;
pub mod sqlite;
pub mod target;
pub mod warm;

use std::fmt;
use std::time::Duration;

use crate::backfill::error::Result;
use crate::sql::Dialect;

/// The type of a batch key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Integer,
    Text,
}

/// One value of a batch key: a batch's bound.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KeyValue {
    Int(i64),
    Text(String),
}

impl KeyValue {
    pub fn kind(&self) -> KeyKind {
        match self {
            KeyValue::Int(_) => KeyKind::Integer,
            KeyValue::Text(_) => KeyKind::Text,
        }
    }

    /// The key as stored in the tracking table (text, whatever its type).
    pub fn to_stored(&self) -> String {
        match self {
            KeyValue::Int(i) => i.to_string(),
            KeyValue::Text(s) => s.clone(),
        }
    }

    /// The inverse of [`KeyValue::to_stored`].
    pub fn from_stored(kind: KeyKind, stored: &str) -> Option<KeyValue> {
        match kind {
            KeyKind::Integer => stored.parse().ok().map(KeyValue::Int),
            KeyKind::Text => Some(KeyValue::Text(stored.to_string())),
        }
    }
}

impl fmt::Display for KeyValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyValue::Int(i) => write!(f, "{i}"),
            KeyValue::Text(s) => write!(f, "{s:?}"),
        }
    }
}

/// A value bound to a statement (fixture rows).
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    Null,
    Int(i64),
    Real(f64),
    /// A decimal number kept as written, so no digit is lost on the way (`numeric`).
    Decimal(String),
    Text(String),
    Blob(Vec<u8>),
    Bool(bool),
}

/// One value of a query result, typed only as far as every backend can tell the same way, so the
/// same query gives the same cells on SQLite and PostgreSQL.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    /// An integer, float or decimal, in its shortest text form.
    Number(String),
    Text(String),
    Bool(bool),
    Blob(Vec<u8>),
}

/// The rows a query returned.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Rows {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
}

/// A column as the database's catalog describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    /// The declared type, as the catalog spells it (`bigint`, `timestamp without time zone`).
    pub declared: String,
    pub ty: ColumnType,
    pub not_null: bool,
}

/// What a fixture value must look like to go into a column, from its declared type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    Integer,
    Real,
    Decimal,
    Text,
    Blob,
    Bool,
    Timestamp,
    Date,
}

impl ColumnType {
    /// Classifies a declared type the way both databases would store it. Names follow
    /// PostgreSQL's types and SQLite's affinity rules; anything unknown is text, which both
    /// accept and PostgreSQL then checks against the real type (uuid, json, enums).
    pub fn from_declared(declared: &str) -> ColumnType {
        let lower = declared.to_ascii_lowercase();
        let base = lower.split('(').next().unwrap_or("").trim();
        // An array (`integer[]`, `ARRAY`) is written in PostgreSQL's text form, whatever its
        // element type.
        if lower.trim_end().ends_with(']') || base == "array" {
            ColumnType::Text
        } else if base.starts_with("bool") {
            ColumnType::Bool
        } else if base.starts_with("timestamp") || base.starts_with("datetime") {
            ColumnType::Timestamp
        } else if base == "date" {
            ColumnType::Date
        } else if base.starts_with("interval") || base == "point" {
            ColumnType::Text
        } else if base.contains("int") || base.ends_with("serial") {
            ColumnType::Integer
        } else if base.contains("char") || base.contains("clob") || base.contains("text") {
            ColumnType::Text
        } else if base.contains("blob") || base == "bytea" {
            ColumnType::Blob
        } else if base.contains("real") || base.contains("floa") || base.contains("doub") {
            ColumnType::Real
        } else if base.starts_with("numeric") || base.starts_with("decimal") {
            ColumnType::Decimal
        } else {
            ColumnType::Text
        }
    }

    pub fn key_kind(self) -> Option<KeyKind> {
        match self {
            ColumnType::Integer => Some(KeyKind::Integer),
            ColumnType::Text => Some(KeyKind::Text),
            _ => None,
        }
    }
}

/// Limits on waiting. PostgreSQL applies them as `lock_timeout` and `statement_timeout`; SQLite
/// waits at most `lock_timeout` for a lock (busy timeout) and has no statement timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BatchLimits {
    pub lock_timeout: Option<Duration>,
    pub statement_timeout: Option<Duration>,
}

/// A database the engine can run batches on.
pub trait Backend {
    fn dialect(&self) -> Dialect;

    /// Where this is, for people: a path, or a URL without its password.
    fn describe(&self) -> String;

    /// Replaces the connection with a new one (after a lost connection). Session settings the
    /// backend made itself (search path) are made again.
    fn reconnect(&mut self) -> Result<()>;

    /// Applies `limits` to everything this connection runs from now on (the bound queries as
    /// well as the batches), so nothing the engine does waits on a lock forever.
    fn apply_limits(&mut self, limits: &BatchLimits) -> Result<()>;

    /// Runs SQL text that needs no parameters and returns no rows (may hold several statements).
    fn execute(&mut self, sql: &str) -> Result<()>;

    /// The columns of `table` in the current schema, or `None` when there is no such table.
    fn columns(&mut self, table: &str) -> Result<Option<Vec<Column>>>;

    /// Runs a query and returns every row.
    fn query(&mut self, sql: &str) -> Result<Rows>;

    /// The smallest key of `table`, `None` when it is empty.
    fn min_key(&mut self, table: &str, key: &str, kind: KeyKind) -> Result<Option<KeyValue>>;

    /// How many rows of `table` have a NULL key (they would never be in any batch).
    fn count_null_keys(&mut self, table: &str, key: &str) -> Result<u64>;

    /// The rows a verification query (its bounds written `$1`/`$2` or `?1`/`?2`) returns for keys
    /// in `(lower, upper]`, in its order, each value in the database's own text form.
    fn range_rows(&mut self, sql: &str, lower: &KeyValue, upper: &KeyValue) -> Result<TextRows>;

    /// For each part of `(lower, upper]` cut at `bounds` (ascending in the key's order: part `i`
    /// holds the keys in `(bounds[i - 1], bounds[i]]`, `lower` and `upper` at the ends), how many
    /// rows [`Backend::range_rows`] returns there and a hash of them, computed where the rows are
    /// (PostgreSQL aggregates them in the server, in one statement: one row per part crosses the
    /// network, however many rows the range holds). A part's hash is a sum over its rows, so it
    /// does not depend on their order, unless `ordered`, when each row is hashed with its
    /// position in its part. Digests of the same backend compare; digests of different backends
    /// do not.
    fn range_digests(
        &mut self,
        sql: &str,
        lower: &KeyValue,
        upper: &KeyValue,
        bounds: &[KeyValue],
        ordered: bool,
    ) -> Result<Vec<Digest>>;

    /// Up to `parts - 1` keys of `table` that cut `(lower, upper]`, which holds about `rows` of
    /// its rows, into parts of about equal row counts (read through the key's index, in its
    /// order): where to cut a range to narrow a difference down.
    #[allow(clippy::too_many_arguments)]
    fn split_keys(
        &mut self,
        table: &str,
        key: &str,
        kind: KeyKind,
        lower: &KeyValue,
        upper: &KeyValue,
        rows: u64,
        parts: u64,
    ) -> Result<Vec<KeyValue>>;

    /// The smallest and the largest key of `table` in `(lower, upper]` (two probes of the key's
    /// index), `None` when it has none there.
    fn key_bounds(
        &mut self,
        table: &str,
        key: &str,
        kind: KeyKind,
        lower: &KeyValue,
        upper: &KeyValue,
    ) -> Result<Option<(KeyValue, KeyValue)>>;
}

/// The statement [`Backend::key_bounds`] runs (`$1`, `$2`: lower, upper), with `?` for
/// SQLite's placeholders when `sqlite`.
pub(crate) fn key_bounds_sql(table: &str, key: &str, sqlite: bool) -> String {
    let (k, t) = (quote_ident(key), quote_ident(table));
    let sql = format!(
        "SELECT (SELECT {k} FROM {t} WHERE {k} > $1 AND {k} <= $2 ORDER BY {k} LIMIT 1),
                (SELECT {k} FROM {t} WHERE {k} > $1 AND {k} <= $2 ORDER BY {k} DESC LIMIT 1)"
    );
    if sqlite { sql.replace('$', "?") } else { sql }
}

/// The statement [`Backend::split_keys`] runs (`$1`..`$4`: lower, upper, step, count), with
/// `?` for SQLite's placeholders when `sqlite`.
pub(crate) fn split_keys_sql(table: &str, key: &str, sqlite: bool) -> String {
    let (k, t) = (quote_ident(key), quote_ident(table));
    let sql = format!(
        "SELECT k FROM (SELECT {k} AS k, row_number() OVER (ORDER BY {k}) AS rn FROM {t} WHERE {k} > $1 AND {k} <= $2) AS s
         WHERE rn % $3 = 0 ORDER BY rn LIMIT $4"
    );
    if sqlite { sql.replace('$', "?") } else { sql }
}

/// The row step and the number of keys [`Backend::split_keys`] asks for.
pub(crate) fn split_step(rows: u64, parts: u64) -> (i64, i64) {
    let parts = parts.max(2);
    let step = rows.div_ceil(parts).max(1);
    (
        i64::try_from(step).unwrap_or(i64::MAX),
        i64::try_from(parts - 1).unwrap_or(i64::MAX),
    )
}

/// One row of a verification query: each value as text, `None` for NULL.
pub type TextRow = Vec<Option<String>>;

/// The rows of a verification query over one key range, and its column names.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TextRows {
    pub columns: Vec<String>,
    pub rows: Vec<TextRow>,
}

/// The row count and hash of a query's rows over a key range ([`Backend::range_digests`]): sums
/// of 64-bit row hashes (one on PostgreSQL, two on SQLite), kept wide enough never to overflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Digest {
    pub rows: u64,
    pub hash: [i128; 2],
}

impl Digest {
    /// Adds one row's two 64-bit hashes.
    pub fn add(&mut self, hash: [i64; 2]) {
        self.rows += 1;
        self.hash[0] += i128::from(hash[0]);
        self.hash[1] += i128::from(hash[1]);
    }
}

/// What `backfill sample` needs beyond the engine: building the database it samples on.
pub trait SampleBackend: Backend {
    /// Applies the schema migrations up to and including `version` with refinery; `dir` is
    /// where they were read from (errors name the file).
    fn apply_migrations(
        &mut self,
        migrations: &[refinery::Migration],
        version: u64,
        dir: &std::path::Path,
    ) -> Result<()>;

    /// `(child, parent)` for every foreign key between tables of the current schema.
    fn foreign_keys(&mut self) -> Result<Vec<(String, String)>>;

    /// Inserts `rows` into `columns` of `table` with one prepared statement, inside whatever
    /// transaction the caller opened. On failure: the index of the row that failed (when one
    /// did) and the error.
    fn insert_rows(
        &mut self,
        table: &str,
        columns: &[Column],
        rows: &[Vec<SqlValue>],
    ) -> std::result::Result<(), (Option<usize>, crate::backfill::Error)>;

    /// Sets aside, inside the caller's transaction, the foreign keys going out of `tables` that
    /// the database can check again in one pass once every row is in, and the indexes it can
    /// build again in one pass; returns the statements that add them back (run them before
    /// COMMIT: each checks or indexes all its rows, and a failure means a fixture row
    /// references nothing or breaks a unique index). A foreign key checked row by row costs a
    /// lookup per inserted row; checked once, a join; an index updated row by row costs a
    /// descent per row, built once, a sort. Nothing by default: rows are checked and indexed
    /// as they are inserted.
    fn suspend_for_load(&mut self, tables: &[String]) -> Result<Vec<String>> {
        let _ = tables;
        Ok(Vec::new())
    }

    /// Brings the query planner's statistics (and, where the database keeps one, the map of
    /// pages whose rows every transaction sees) up to date once the fixtures are loaded, as a
    /// production database's would be. Nothing by default.
    fn analyze(&mut self) -> Result<()> {
        Ok(())
    }
}

/// Quotes an identifier for both dialects: `"name"`, with `"` doubled.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Text form of a float that SQLite and PostgreSQL agree on for ordinary values (`2`, `0.1`).
pub fn format_real(value: f64) -> String {
    if value.is_finite() {
        value.to_string()
    } else if value.is_nan() {
        "NaN".into()
    } else if value > 0.0 {
        "Infinity".into()
    } else {
        "-Infinity".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_declared_types() {
        use ColumnType::*;
        for (declared, ty) in [
            ("bigint", Integer),
            ("INTEGER", Integer),
            ("int4", Integer),
            ("bigserial", Integer),
            ("smallint", Integer),
            ("interval", Text),
            ("point", Text),
            ("text", Text),
            ("character varying(20)", Text),
            ("VARCHAR(255)", Text),
            ("boolean", Bool),
            ("bool", Bool),
            ("timestamp", Timestamp),
            ("timestamp with time zone", Timestamp),
            ("datetime", Timestamp),
            ("date", Date),
            ("double precision", Real),
            ("REAL", Real),
            ("float8", Real),
            ("numeric(10,2)", Decimal),
            ("decimal", Decimal),
            ("bytea", Blob),
            ("BLOB", Blob),
            ("uuid", Text),
            ("jsonb", Text),
            ("integer[]", Text),
            ("timestamp with time zone[]", Text),
            ("character varying(3)[]", Text),
            ("ARRAY", Text),
            ("", Text),
        ] {
            assert_eq!(ColumnType::from_declared(declared), ty, "{declared}");
        }
    }

    #[test]
    fn stored_keys_round_trip() {
        for key in [
            KeyValue::Int(-5),
            KeyValue::Int(i64::MAX),
            KeyValue::Text("a b".into()),
        ] {
            assert_eq!(
                KeyValue::from_stored(key.kind(), &key.to_stored()),
                Some(key)
            );
        }
        assert_eq!(KeyValue::from_stored(KeyKind::Integer, "x"), None);
    }

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("users"), "\"users\"");
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
    }

    #[test]
    fn reals_print_like_the_databases() {
        assert_eq!(format_real(2.0), "2");
        assert_eq!(format_real(0.1), "0.1");
        assert_eq!(format_real(-1.5), "-1.5");
        assert_eq!(format_real(f64::INFINITY), "Infinity");
    }
}
