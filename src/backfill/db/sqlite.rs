//! The SQLite backend (rusqlite, bundled SQLite): the database `backfill sample` builds in a
//! temporary directory, and a production target for applications that run on SQLite.
//!
//! A batch is `BEGIN IMMEDIATE` … `COMMIT`: the write lock is taken up front, so a batch never
//! fails half-way for want of it. Foreign keys are enforced, as PostgreSQL would.

use std::path::{Path, PathBuf};

use rusqlite::Connection;
use rusqlite::types::{ToSqlOutput, Value, ValueRef};

use crate::backfill::db::{
    Backend, BatchLimits, Cell, Column, ColumnType, Digest, KeyKind, KeyValue, Rows, SampleBackend,
    SqlValue, TextRow, TextRows, format_real, quote_ident,
};
use crate::backfill::error::{Error, ErrorKind, Result, Retry};
use crate::sql::Dialect;

pub struct SqliteBackend {
    conn: Connection,
    path: PathBuf,
    /// Holds the temporary directory of a throwaway database: removed when this is dropped.
    _tempdir: Option<tempfile::TempDir>,
}

impl SqliteBackend {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path) -> Result<SqliteBackend> {
        let conn = open(path)?;
        Ok(SqliteBackend {
            conn,
            path: path.to_path_buf(),
            _tempdir: None,
        })
    }

    /// A new, empty database in a temporary directory that is deleted with this value. Durability
    /// is switched off: nothing in it outlives the process.
    pub fn throwaway() -> Result<SqliteBackend> {
        let dir = tempfile::Builder::new()
            .prefix("xtask-backfill-")
            .tempdir()
            .map_err(|e| {
                Error::new(
                    ErrorKind::Io,
                    format!("cannot create a temporary directory: {e}"),
                )
            })?;
        let path = dir.path().join("sample.db");
        let conn = open(&path)?;
        // Nothing else opens this file, and nothing in it must survive a crash: no fsync, the
        // rollback journal in memory, the file lock held once instead of per transaction, and a
        // cache big enough for a large fixture's indexes (256 MiB, allocated only as used).
        conn.execute_batch(
            "PRAGMA synchronous = OFF; PRAGMA journal_mode = MEMORY; PRAGMA locking_mode = EXCLUSIVE; PRAGMA cache_size = -262144;",
        )
            .map_err(db_error)?;
        Ok(SqliteBackend {
            conn,
            path,
            _tempdir: Some(dir),
        })
    }

    /// The underlying connection, for tests and benchmarks that compare with plain SQL.
    pub fn connection(&mut self) -> &mut Connection {
        &mut self.conn
    }
}

fn open(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path).map_err(|e| {
        Error::new(
            ErrorKind::Database,
            format!("cannot open SQLite database {}: {e}", path.display()),
        )
    })?;
    conn.execute_batch("PRAGMA foreign_keys = ON;")
        .map_err(db_error)?;
    Ok(conn)
}

/// The message of an error SQLite gave for a migration's SQL, and the byte offset it points at
/// when it says.
pub(crate) fn locate(e: &(dyn std::error::Error + 'static), _sql: &str) -> (String, Option<usize>) {
    match e.downcast_ref::<rusqlite::Error>() {
        Some(rusqlite::Error::SqlInputError { msg, offset, .. }) => {
            (msg.clone(), usize::try_from(*offset).ok())
        }
        Some(rusqlite::Error::SqliteFailure(_, Some(msg))) => (msg.clone(), None),
        _ => (e.to_string(), None),
    }
}

/// SQLite's errors: a busy or locked database is worth waiting for, nothing else is.
pub fn classify(e: &rusqlite::Error) -> Retry {
    match e {
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(
                f.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ) =>
        {
            Retry::Backoff
        }
        _ => Retry::Never,
    }
}

/// A database error; busy and locked databases are worth a retry.
pub(crate) fn db_error(e: rusqlite::Error) -> Error {
    statement_error(e).with_kind(ErrorKind::Database)
}

/// An error in a statement of the user's (a data migration's or a fixture's).
pub(crate) fn statement_error(e: rusqlite::Error) -> Error {
    Error::new(ErrorKind::Statement, e.to_string()).with_retry(classify(&e))
}

pub(crate) fn key_param(key: &KeyValue) -> Value {
    match key {
        KeyValue::Int(i) => Value::Integer(*i),
        KeyValue::Text(s) => Value::Text(s.clone()),
    }
}

pub(crate) fn key_from(
    value: ValueRef<'_>,
    kind: KeyKind,
    table: &str,
    key: &str,
) -> Result<KeyValue> {
    match (kind, value) {
        (KeyKind::Integer, ValueRef::Integer(i)) => Ok(KeyValue::Int(i)),
        (KeyKind::Text, ValueRef::Text(t)) => {
            Ok(KeyValue::Text(String::from_utf8_lossy(t).into_owned()))
        }
        (_, other) => Err(Error::new(
            ErrorKind::Statement,
            format!(
                "{table}.{key} holds a {:?} value where a {} key was expected; SQLite does not enforce column types, the fixtures or the schema must",
                other.data_type(),
                match kind {
                    KeyKind::Integer => "integer",
                    KeyKind::Text => "text",
                }
            ),
        )),
    }
}

/// A value as a cell. SQLite stores a bool as 0 or 1: read from a column declared bool, it is
/// the bool PostgreSQL would return.
fn cell(value: ValueRef<'_>, declared_bool: bool) -> Cell {
    match value {
        ValueRef::Null => Cell::Null,
        ValueRef::Integer(i @ (0 | 1)) if declared_bool => Cell::Bool(i == 1),
        ValueRef::Integer(i) => Cell::Number(i.to_string()),
        ValueRef::Real(f) => Cell::Number(format_real(f)),
        ValueRef::Text(t) => Cell::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Cell::Blob(b.to_vec()),
    }
}

/// A value in its text form for a verification: what SQLite's `CAST(v AS TEXT)` gives, a real
/// in its shortest form, a blob in hex (`\x...`), NULL as `None`.
pub(crate) fn text_value(value: ValueRef<'_>) -> Option<String> {
    match value {
        ValueRef::Null => None,
        ValueRef::Integer(i) => Some(i.to_string()),
        ValueRef::Real(f) => Some(format_real(f)),
        ValueRef::Text(t) => Some(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Some(format!(
            "\\x{}",
            b.iter().map(|x| format!("{x:02x}")).collect::<String>()
        )),
    }
}

/// Two 64-bit hashes of a row (SHA-256 of its values, each length-prefixed, NULL marked), with
/// its position first when `position` is given.
pub(crate) fn row_hash(row: &[Option<String>], position: Option<u64>) -> [i64; 2] {
    use sha2::{Digest as _, Sha256};
    let mut hasher = Sha256::new();
    if let Some(p) = position {
        hasher.update(p.to_le_bytes());
    }
    for value in row {
        match value {
            Some(text) => {
                hasher.update((text.len() as u64).to_le_bytes());
                hasher.update(text.as_bytes());
            }
            None => hasher.update(u64::MAX.to_le_bytes()),
        }
    }
    let out = hasher.finalize();
    let half = |i: usize| {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&out[i..i + 8]);
        i64::from_le_bytes(bytes)
    };
    [half(0), half(8)]
}

impl SqliteBackend {
    /// Runs a verification query for `(lower, upper]`, handing each row's text values to `each`.
    fn each_range_row(
        &mut self,
        sql: &str,
        lower: &KeyValue,
        upper: &KeyValue,
        mut each: impl FnMut(TextRow),
    ) -> Result<Vec<String>> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(statement_error)?;
        let columns: Vec<String> = stmt.column_names().map(String::from).collect();
        let width = columns.len();
        let mut rows = stmt
            .query(rusqlite::params![key_param(lower), key_param(upper)])
            .map_err(statement_error)?;
        while let Some(row) = rows.next().map_err(statement_error)? {
            let mut values = Vec::with_capacity(width);
            for i in 0..width {
                values.push(text_value(row.get_ref(i).map_err(statement_error)?));
            }
            each(values);
        }
        Ok(columns)
    }
}

/// A fixture value bound without copying its text (loading is most of a sample's time).
struct Bind<'a>(&'a SqlValue);

impl rusqlite::ToSql for Bind<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self.0 {
            SqlValue::Null => ToSqlOutput::Owned(Value::Null),
            SqlValue::Int(i) => ToSqlOutput::Owned(Value::Integer(*i)),
            SqlValue::Real(f) => ToSqlOutput::Owned(Value::Real(*f)),
            // NUMERIC affinity turns the text into an integer or real as it is stored.
            SqlValue::Decimal(s) | SqlValue::Text(s) => {
                ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes()))
            }
            SqlValue::Blob(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
            SqlValue::Bool(b) => ToSqlOutput::Owned(Value::Integer(i64::from(*b))),
        })
    }
}

impl Backend for SqliteBackend {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn describe(&self) -> String {
        format!("SQLite {}", self.path.display())
    }

    fn reconnect(&mut self) -> Result<()> {
        self.conn = open(&self.path)?;
        Ok(())
    }

    fn apply_limits(&mut self, limits: &BatchLimits) -> Result<()> {
        if let Some(timeout) = limits.lock_timeout {
            self.conn.busy_timeout(timeout).map_err(db_error)?;
        }
        Ok(())
    }

    fn execute(&mut self, sql: &str) -> Result<()> {
        self.conn.execute_batch(sql).map_err(statement_error)
    }

    fn columns(&mut self, table: &str) -> Result<Option<Vec<Column>>> {
        let mut stmt = self
            .conn
            .prepare_cached(r#"SELECT name, type, "notnull" FROM pragma_table_info(?1)"#)
            .map_err(db_error)?;
        let columns = stmt
            .query_map([table], |row| {
                let declared: String = row.get(1)?;
                Ok(Column {
                    name: row.get(0)?,
                    ty: ColumnType::from_declared(&declared),
                    declared,
                    not_null: row.get::<_, i64>(2)? != 0,
                })
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(db_error)?;
        Ok((!columns.is_empty()).then_some(columns))
    }

    fn query(&mut self, sql: &str) -> Result<Rows> {
        let mut stmt = self.conn.prepare(sql).map_err(statement_error)?;
        let columns: Vec<String> = stmt.column_names().map(String::from).collect();
        let bools: Vec<bool> = stmt
            .columns()
            .map(|c| {
                c.decl_type()
                    .is_some_and(|t| ColumnType::from_declared(t) == ColumnType::Bool)
            })
            .collect();
        let width = columns.len();
        let mut out = Vec::new();
        let mut rows = stmt.query([]).map_err(statement_error)?;
        while let Some(row) = rows.next().map_err(statement_error)? {
            let mut cells = Vec::with_capacity(width);
            for (i, declared_bool) in bools.iter().enumerate() {
                cells.push(cell(
                    row.get_ref(i).map_err(statement_error)?,
                    *declared_bool,
                ));
            }
            out.push(cells);
        }
        Ok(Rows { columns, rows: out })
    }

    fn min_key(&mut self, table: &str, key: &str, kind: KeyKind) -> Result<Option<KeyValue>> {
        let sql = format!(
            "SELECT {k} FROM {t} WHERE {k} IS NOT NULL ORDER BY {k} LIMIT 1",
            k = quote_ident(key),
            t = quote_ident(table)
        );
        let mut stmt = self.conn.prepare_cached(&sql).map_err(statement_error)?;
        let mut rows = stmt.query([]).map_err(statement_error)?;
        match rows.next().map_err(statement_error)? {
            Some(row) => Ok(Some(key_from(
                row.get_ref(0).map_err(statement_error)?,
                kind,
                table,
                key,
            )?)),
            None => Ok(None),
        }
    }

    fn count_null_keys(&mut self, table: &str, key: &str) -> Result<u64> {
        let sql = format!(
            "SELECT count(*) FROM {} WHERE {} IS NULL",
            quote_ident(table),
            quote_ident(key)
        );
        let n: i64 = self
            .conn
            .query_row(&sql, [], |r| r.get(0))
            .map_err(statement_error)?;
        Ok(n.max(0) as u64)
    }

    fn range_rows(&mut self, sql: &str, lower: &KeyValue, upper: &KeyValue) -> Result<TextRows> {
        let mut rows = Vec::new();
        let columns = self.each_range_row(sql, lower, upper, |row| rows.push(row))?;
        Ok(TextRows { columns, rows })
    }

    /// The rows never leave the process: each part's digest is computed as its rows are read,
    /// in Rust, one query per part.
    fn range_digests(
        &mut self,
        sql: &str,
        lower: &KeyValue,
        upper: &KeyValue,
        bounds: &[KeyValue],
        ordered: bool,
    ) -> Result<Vec<Digest>> {
        let mut digests = Vec::with_capacity(bounds.len() + 1);
        let mut from = lower;
        for to in bounds.iter().chain(std::iter::once(upper)) {
            let mut digest = Digest::default();
            self.each_range_row(sql, from, to, |row| {
                let position = ordered.then_some(digest.rows + 1);
                digest.add(row_hash(&row, position));
            })?;
            digests.push(digest);
            from = to;
        }
        Ok(digests)
    }

    fn key_bounds(
        &mut self,
        table: &str,
        key: &str,
        kind: KeyKind,
        lower: &KeyValue,
        upper: &KeyValue,
    ) -> Result<Option<(KeyValue, KeyValue)>> {
        let sql = crate::backfill::db::key_bounds_sql(table, key, true);
        let mut stmt = self.conn.prepare_cached(&sql).map_err(statement_error)?;
        let mut rows = stmt
            .query(rusqlite::params![key_param(lower), key_param(upper)])
            .map_err(statement_error)?;
        let Some(row) = rows.next().map_err(statement_error)? else {
            return Ok(None);
        };
        let read = |i: usize| -> Result<Option<KeyValue>> {
            match row.get_ref(i).map_err(statement_error)? {
                ValueRef::Null => Ok(None),
                v => key_from(v, kind, table, key).map(Some),
            }
        };
        Ok(read(0)?.zip(read(1)?))
    }

    fn split_keys(
        &mut self,
        table: &str,
        key: &str,
        kind: KeyKind,
        lower: &KeyValue,
        upper: &KeyValue,
        rows: u64,
        parts: u64,
    ) -> Result<Vec<KeyValue>> {
        let sql = crate::backfill::db::split_keys_sql(table, key, true);
        let (step, count) = crate::backfill::db::split_step(rows, parts);
        let mut stmt = self.conn.prepare_cached(&sql).map_err(statement_error)?;
        let mut rows = stmt
            .query(rusqlite::params![
                key_param(lower),
                key_param(upper),
                step,
                count
            ])
            .map_err(statement_error)?;
        let mut keys = Vec::new();
        while let Some(row) = rows.next().map_err(statement_error)? {
            keys.push(key_from(
                row.get_ref(0).map_err(statement_error)?,
                kind,
                table,
                key,
            )?);
        }
        Ok(keys)
    }
}

impl SampleBackend for SqliteBackend {
    fn apply_migrations(
        &mut self,
        migrations: &[refinery::Migration],
        version: u64,
        dir: &Path,
    ) -> Result<()> {
        let prepared = crate::backfill::db::schema::prepare(migrations, version, Dialect::Sqlite)?;
        crate::backfill::db::schema::apply(&mut self.conn, &prepared, version, dir, &locate)
    }

    fn foreign_keys(&mut self) -> Result<Vec<(String, String)>> {
        let mut stmt = self
            .conn
            .prepare(
                r#"SELECT m.name, f."table" FROM sqlite_master AS m, pragma_foreign_key_list(m.name) AS f
                   WHERE m.type = 'table' ORDER BY m.name, f.id"#,
            )
            .map_err(db_error)?;
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(|rows| rows.collect())
            .map_err(db_error)
    }

    fn insert_rows(
        &mut self,
        table: &str,
        columns: &[Column],
        rows: &[Vec<SqlValue>],
    ) -> std::result::Result<(), (Option<usize>, Error)> {
        let names: Vec<String> = columns.iter().map(|c| quote_ident(&c.name)).collect();
        let params: Vec<String> = (1..=columns.len()).map(|i| format!("?{i}")).collect();
        let sql = format!(
            "INSERT INTO {} ({}) VALUES ({})",
            quote_ident(table),
            names.join(", "),
            params.join(", ")
        );
        let mut stmt = self
            .conn
            .prepare(&sql)
            .map_err(|e| (None, statement_error(e)))?;
        for (i, row) in rows.iter().enumerate() {
            stmt.execute(rusqlite::params_from_iter(row.iter().map(Bind)))
                .map_err(|e| (Some(i), statement_error(e)))?;
        }
        Ok(())
    }
}
