//! A SQLite source: the file opened read-only (never created), `PRAGMA query_only`, and one
//! `BEGIN DEFERRED` transaction whose first read fixes the snapshot every later read sees (so
//! the foreign keys close). A busy or locked file is waited for at most the statement timeout
//! (`busy_timeout`), and a statement running longer than that is interrupted: an error, never a
//! hang. On a rollback-journal database the capture's read lock makes writers wait until it
//! ends; in WAL mode they go on.
//!
//! The catalog comes from the pragmas (`table_xinfo`, `index_list`/`index_info`,
//! `foreign_key_list`), the sampling hash from a deterministic scalar function registered on the
//! connection (`xtask_md5_32`, the same value as PostgreSQL's expression), and a chunk of keys
//! is bound as a `VALUES` list. Values are written by their storage class, whatever the
//! column's declared type: an INTEGER or REAL as its number, TEXT as it is, a BLOB as `\x` and
//! hex digits (as PostgreSQL writes a bytea), NULL as NULL.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use md5::{Digest, Md5};
use rusqlite::functions::FunctionFlags;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, ErrorCode, OpenFlags};

use super::{Applied, KeySink, RowSink, Source};
use crate::backfill::capture::catalog::{
    Catalog, CatalogColumn, CatalogTable, ForeignKey, unique_key,
};
use crate::backfill::db::quote_ident;
use crate::backfill::db::sqlite::text_value;
use crate::backfill::db::target::TargetInfo;
use crate::backfill::error::{Error, ErrorKind, Result};
use crate::sql::Dialect;

/// SQLite's one schema.
const SCHEMA: &str = "main";

/// Virtual-machine steps between two looks at the statement's deadline.
const PROGRESS_STEPS: i32 = 10_000;

/// An open SQLite source, inside its read transaction.
pub struct SqliteSource {
    conn: Connection,
    path: PathBuf,
    timeout: Duration,
    /// Milliseconds after `epoch` past which the running statement is interrupted.
    deadline: Arc<AtomicU64>,
    epoch: Instant,
}

/// The first 32 bits of md5(`text`), big-endian, as PostgreSQL's
/// `('x' || substr(md5(text), 1, 8))::bit(32)::bigint` reads them.
pub fn md5_32(text: &[u8]) -> i64 {
    let digest = Md5::digest(text);
    i64::from(u32::from_be_bytes([
        digest[0], digest[1], digest[2], digest[3],
    ]))
}

impl SqliteSource {
    /// Opens `path` read-only and starts the read transaction. A missing file, or one that is
    /// not a database, is an error naming it (the latter at the first read).
    pub fn open(path: &Path, timeout: Duration) -> Result<SqliteSource> {
        if !path.is_file() {
            return Err(Error::file(
                ErrorKind::Database,
                path,
                if path.exists() {
                    "not a file: a SQLite source is a database file"
                } else {
                    "no such SQLite database: a capture opens its source read-only and never creates it"
                },
            ));
        }
        let open_error = |e: rusqlite::Error| {
            Error::file(
                ErrorKind::Database,
                path,
                format!("cannot open as a SQLite database: {e}"),
            )
        };
        let mut conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(open_error)?;
        conn.busy_timeout(timeout).map_err(open_error)?;
        conn.create_scalar_function(
            "xtask_md5_32",
            1,
            FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
            |ctx| {
                Ok(match ctx.get_raw(0) {
                    ValueRef::Null => None,
                    ValueRef::Text(t) | ValueRef::Blob(t) => Some(md5_32(t)),
                    ValueRef::Integer(i) => Some(md5_32(i.to_string().as_bytes())),
                    ValueRef::Real(f) => Some(md5_32(
                        text_value(ValueRef::Real(f)).unwrap_or_default().as_bytes(),
                    )),
                })
            },
        )
        .map_err(open_error)?;
        let deadline = Arc::new(AtomicU64::new(u64::MAX));
        let epoch = Instant::now();
        let watched = Arc::clone(&deadline);
        conn.progress_handler(
            PROGRESS_STEPS,
            Some(move || epoch.elapsed().as_millis() as u64 > watched.load(Ordering::Relaxed)),
        )
        .map_err(open_error)?;
        let source = SqliteSource {
            conn,
            path: path.to_path_buf(),
            timeout,
            deadline,
            epoch,
        };
        source
            .conn
            .execute_batch("PRAGMA query_only = ON; BEGIN DEFERRED")
            .map_err(|e| source.error(e, "start a read transaction"))?;
        Ok(source)
    }

    /// Ends the read transaction (it wrote nothing).
    pub fn finish(self) {
        let _ = self.conn.execute_batch("COMMIT");
    }

    /// Starts the clock of the next statement.
    fn arm(&self) {
        let at = self.epoch.elapsed() + self.timeout;
        self.deadline
            .store(at.as_millis() as u64, Ordering::Relaxed);
    }

    /// A SQLite error of the step `what` as one line: a busy file and a file that is not a
    /// database name the file; a statement's own failure is a `Statement` error with SQLite's
    /// message alone.
    fn error(&self, e: rusqlite::Error, what: &str) -> Error {
        let code = e.sqlite_error_code();
        let ms = self.timeout.as_millis();
        match code {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => Error::file(
                ErrorKind::Database,
                &self.path,
                format!(
                    "{what}: the database is locked by another connection, and stayed locked for {ms} ms (the statement timeout): capture when its writer is done, or from a copy of the file"
                ),
            ),
            Some(ErrorCode::NotADatabase) => Error::file(
                ErrorKind::Database,
                &self.path,
                format!("{what}: not a SQLite database ({e})"),
            ),
            Some(ErrorCode::OperationInterrupted) => Error::new(
                ErrorKind::Statement,
                format!(
                    "the statement ran longer than the statement timeout ({ms} ms) and was interrupted"
                ),
            ),
            _ => Error::new(ErrorKind::Statement, e.to_string()),
        }
    }

    /// A read of the catalog or the history: every failure names the file and the step.
    fn read_error(&self, e: rusqlite::Error, what: &str) -> Error {
        let e = self.error(e, what);
        if e.path.is_some() {
            e
        } else {
            Error::file(
                ErrorKind::Database,
                &self.path,
                format!("{what}: {}", e.message),
            )
        }
    }

    /// Runs `sql` with `keys` bound in order and hands each row to `each`.
    fn query(
        &mut self,
        sql: &str,
        keys: &[Vec<String>],
        each: &mut dyn FnMut(&rusqlite::Row<'_>) -> Result<()>,
    ) -> Result<()> {
        self.arm();
        let mut statement = self
            .conn
            .prepare_cached(sql)
            .map_err(|e| self.error(e, "prepare"))?;
        let mut i = 0;
        for key in keys {
            for value in key {
                i += 1;
                statement
                    .raw_bind_parameter(i, value.as_str())
                    .map_err(|e| self.error(e, "bind"))?;
            }
        }
        let mut rows = statement.raw_query();
        while let Some(row) = rows.next().map_err(|e| self.error(e, "read"))? {
            each(row)?;
        }
        Ok(())
    }
}

impl Source for SqliteSource {
    fn info(&self) -> TargetInfo {
        TargetInfo {
            dialect: Dialect::Sqlite,
            host: None,
            port: None,
            // The file's name: where it sits on the capturing machine is nobody's business.
            database: self
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        }
    }

    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn history(&mut self) -> Result<Option<Vec<Applied>>> {
        self.arm();
        let what = "read refinery_schema_history";
        let exists: bool = self
            .conn
            .query_row(
                "SELECT count(*) > 0 FROM main.sqlite_master WHERE type = 'table' AND name = 'refinery_schema_history'",
                [],
                |r| r.get(0),
            )
            .map_err(|e| self.read_error(e, what))?;
        if !exists {
            return Ok(None);
        }
        let mut statement = self
            .conn
            .prepare(
                "SELECT version, name, checksum FROM main.refinery_schema_history ORDER BY version",
            )
            .map_err(|e| self.read_error(e, what))?;
        let rows = statement
            .query_map([], |r| {
                Ok(Applied {
                    version: r.get(0)?,
                    name: text_value(r.get_ref(1)?),
                    checksum: text_value(r.get_ref(2)?),
                })
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>());
        let history = rows.map_err(|e| self.read_error(e, what))?;
        Ok(Some(history))
    }

    fn snapshot_time(&mut self) -> Result<String> {
        self.conn
            .query_row("SELECT strftime('%Y-%m-%dT%H:%M:%SZ', 'now')", [], |r| {
                r.get(0)
            })
            .map_err(|e| self.read_error(e, "read the clock"))
    }

    fn catalog(&mut self, schema: Option<&str>) -> Result<Catalog> {
        if let Some(schema) = schema.filter(|s| *s != SCHEMA) {
            return Err(Error::file(
                ErrorKind::Database,
                &self.path,
                format!(
                    "the capture's schema is `{schema}`, and a SQLite source has one schema, `{SCHEMA}`: leave `schema` out of [workspace.metadata.xtask-migrate.capture]"
                ),
            ));
        }
        self.arm();
        read_catalog(&self.conn).map_err(|e| self.read_error(e, "read the source's catalog"))
    }

    fn text(&self, expr: &str) -> String {
        format!("CAST({expr} AS TEXT)")
    }

    fn hash(&self, text: &str) -> String {
        format!("xtask_md5_32({text})")
    }

    fn value(&self, column: &CatalogColumn, alias: &str) -> String {
        format!("{alias}.{}", quote_ident(&column.name))
    }

    fn key_join(&self, table: &CatalogTable, alias: &str, keys: usize) -> String {
        let key = table.key_columns();
        let width = key.len();
        let row = format!("({}", vec!["?"; width].join(", "));
        let values: Vec<String> = (1..=keys).map(|ord| format!("{row}, {ord})")).collect();
        let names: Vec<String> = (0..width)
            .map(|i| format!("column{} AS k{i}", i + 1))
            .collect();
        // A VALUES column has no affinity: compared with a column that has one (INTEGER, REAL,
        // NUMERIC, TEXT), the key's text converts as that column's values did when stored. A
        // column without affinity (no declared type, BLOB) converts nothing, so it is compared
        // by its text, as the key was read.
        let on: Vec<String> = key
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let column = format!("{alias}.{}", quote_ident(&c.name));
                if blob_affinity(&c.type_name) {
                    format!("CAST({column} AS TEXT) = xtask_keys.k{i}")
                } else {
                    format!("{column} = xtask_keys.k{i}")
                }
            })
            .collect();
        format!(
            "JOIN (SELECT {}, column{} AS xtask_ord FROM (VALUES {})) AS xtask_keys ON {}",
            names.join(", "),
            width + 1,
            values.join(", "),
            on.join(" AND ")
        )
    }

    fn keys(
        &mut self,
        sql: &str,
        keys: &[Vec<String>],
        fetch: usize,
        sink: &mut KeySink<'_>,
    ) -> Result<()> {
        let mut batch: Vec<Vec<String>> = Vec::with_capacity(fetch);
        self.query(sql, keys, &mut |row| {
            let key = (0..row.as_ref().column_count())
                .map(|i| row.get_ref(i).map(|v| text_value(v).unwrap_or_default()))
                .collect::<rusqlite::Result<Vec<String>>>()
                .map_err(|e| Error::new(ErrorKind::Statement, e.to_string()))?;
            batch.push(key);
            if batch.len() >= fetch {
                sink(&batch)?;
                batch.clear();
            }
            Ok(())
        })?;
        if !batch.is_empty() {
            sink(&batch)?;
        }
        Ok(())
    }

    fn rows(
        &mut self,
        sql: &str,
        keys: &[Vec<String>],
        _fetch: usize,
        sink: &mut RowSink<'_>,
    ) -> Result<()> {
        // SQLite steps through the result row by row: nothing is read ahead.
        let mut owned: Vec<Option<String>> = Vec::new();
        self.query(sql, keys, &mut |row| {
            owned.clear();
            for i in 0..row.as_ref().column_count() {
                let value = row
                    .get_ref(i)
                    .map_err(|e| Error::new(ErrorKind::Statement, e.to_string()))?;
                owned.push(text_value(value));
            }
            let values: Vec<Option<&str>> = owned.iter().map(Option::as_deref).collect();
            sink(&values)
        })
    }
}

/// Declared types that hold text: SQLite's TEXT affinity (`CHAR`, `CLOB`, `TEXT`), no declared
/// type at all, and JSON.
fn text_like(declared: &str) -> bool {
    let d = declared.to_ascii_uppercase();
    d.is_empty()
        || ["CHAR", "CLOB", "TEXT", "JSON"]
            .iter()
            .any(|t| d.contains(t))
            && !d.contains("INT")
}

/// SQLite's BLOB affinity (no declared type, or one naming BLOB): values are compared as they
/// are stored, never converted.
fn blob_affinity(declared: &str) -> bool {
    let d = declared.to_ascii_uppercase();
    !["INT", "CHAR", "CLOB", "TEXT"]
        .iter()
        .any(|t| d.contains(t))
        && (d.is_empty() || d.contains("BLOB"))
}

fn read_catalog(conn: &Connection) -> rusqlite::Result<Catalog> {
    let names: Vec<String> = conn
        .prepare(
            "SELECT name FROM main.sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut tables = std::collections::BTreeMap::new();
    let mut foreign_keys = Vec::new();
    for name in &names {
        // hidden: 0 a column, 1 a virtual table's hidden column, 2 and 3 generated columns.
        let mut pk: Vec<(i64, usize)> = Vec::new();
        let mut columns = Vec::new();
        let mut statement = conn.prepare(
            "SELECT name, type, \"notnull\", pk, hidden FROM pragma_table_xinfo(?1) WHERE hidden <> 1 ORDER BY cid",
        )?;
        let mut rows = statement.query([name])?;
        while let Some(row) = rows.next()? {
            let declared: String = row.get::<_, Option<String>>(1)?.unwrap_or_default();
            let key: i64 = row.get(3)?;
            if key > 0 {
                pk.push((key, columns.len()));
            }
            let upper = declared.to_ascii_uppercase();
            columns.push(CatalogColumn {
                name: row.get(0)?,
                text_like: text_like(&declared),
                integer: upper.contains("INT"),
                type_name: declared,
                not_null: row.get(2)?,
                generated: row.get::<_, i64>(4)? >= 2,
            });
        }
        pk.sort();
        let mut table = CatalogTable {
            name: name.clone(),
            primary_key: pk.into_iter().map(|(_, i)| i).collect(),
            columns,
            unique_index: None,
        };
        if table.primary_key.is_empty() {
            let mut candidates = Vec::new();
            let indexes: Vec<(String, bool, bool)> = conn
                .prepare(
                    "SELECT name, \"unique\", partial FROM pragma_index_list(?1) ORDER BY name",
                )?
                .query_map([name], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<rusqlite::Result<_>>()?;
            for (index, unique, partial) in indexes {
                if !unique || partial {
                    continue;
                }
                // An expression's column has no name: such an index cannot key a row here.
                let cols: Vec<Option<String>> = conn
                    .prepare("SELECT name FROM pragma_index_info(?1) ORDER BY seqno")?
                    .query_map([&index], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?;
                let positions: Option<Vec<usize>> = cols
                    .iter()
                    .map(|c| {
                        c.as_ref()
                            .and_then(|c| table.columns.iter().position(|col| &col.name == c))
                    })
                    .collect();
                if let Some(positions) = positions {
                    candidates.push((index, positions));
                }
            }
            if let Some((index, columns)) = unique_key(&table.columns, candidates) {
                table.primary_key = columns;
                table.unique_index = Some(index);
            }
        }
        tables.insert(name.clone(), table);

        // id groups the columns of one foreign key, seq orders them; `to` is empty when the
        // key names no columns (the parent's primary key, filled in below).
        let columns: Vec<(i64, String, String, Option<String>)> = conn
            .prepare("SELECT id, \"table\", \"from\", \"to\" FROM pragma_foreign_key_list(?1) ORDER BY id, seq")?
            .query_map([name], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let mut named: Vec<ForeignKey> = Vec::new();
        let mut last_id = None;
        for (id, parent, from, to) in columns {
            if last_id != Some(id) {
                last_id = Some(id);
                named.push(ForeignKey {
                    name: String::new(),
                    child: name.clone(),
                    child_columns: Vec::new(),
                    parent,
                    parent_columns: Vec::new(),
                });
            }
            if let Some(fk) = named.last_mut() {
                fk.child_columns.push(from);
                fk.parent_columns.push(to.unwrap_or_default());
            }
        }
        for fk in &mut named {
            // SQLite keeps no constraint names: PostgreSQL's default name stands in.
            fk.name = format!("{name}_{}_fkey", fk.child_columns.join("_"));
        }
        named.sort_by(|a, b| a.name.cmp(&b.name));
        foreign_keys.extend(named);
    }
    // `REFERENCES parent` without columns means the parent's primary key.
    for fk in &mut foreign_keys {
        if fk.parent_columns.iter().any(String::is_empty)
            && let Some(parent) = tables.get(&fk.parent)
        {
            let key: Vec<String> = parent
                .key_columns()
                .iter()
                .map(|c| c.name.clone())
                .collect();
            if key.len() == fk.child_columns.len() {
                fk.parent_columns = key;
            }
        }
    }
    Ok(Catalog {
        schema: SCHEMA.to_string(),
        tables,
        foreign_keys,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_postgresql_s_first_32_bits_of_md5() {
        // PostgreSQL's ('x' || substr(md5(t), 1, 8))::bit(32)::bigint: the first 8 hex digits
        // of md5 read as an unsigned number (the RFC 1321 test vectors).
        let first8 = |hex: &str| i64::from_str_radix(hex, 16).unwrap();
        assert_eq!(md5_32(b""), first8("d41d8cd9"));
        assert_eq!(md5_32(b"abc"), first8("90015098"));
        assert!(
            md5_32(b"message digest") > i64::from(i32::MAX),
            "never negative"
        );
    }

    #[test]
    fn text_like_follows_sqlite_s_affinity() {
        for t in ["TEXT", "varchar(20)", "", "CLOB", "json"] {
            assert!(text_like(t), "{t}");
        }
        for t in [
            "INTEGER",
            "REAL",
            "BLOB",
            "timestamptz",
            "NUMERIC",
            "CHARINT",
        ] {
            assert!(!text_like(t), "{t}");
        }
    }
}
