//! The selected keys, kept out of the process's memory: a SQLite file in the system's temporary
//! directory (`TMPDIR`), one table per captured table, with a bounded page cache. The source is
//! only read (a read-only transaction, also on a hot standby), so the keys cannot live there.
//!
//! Each key is stored with the stage that added it (the roots, each child relation, each round
//! of the closure), so a stage reads exactly the keys of the stages before it, in chunks.
//! Chunks come in key order: integer key columns (`smallint`, `integer`, `bigint`; on a SQLite
//! source, INTEGER affinity) are stored as SQLite integers and compare as numbers, other key
//! columns compare by their text form (bytewise), whatever the source's collation.

use std::collections::BTreeMap;

use rusqlite::types::Value;
use rusqlite::{Connection, params_from_iter};

use super::catalog::CatalogTable;
use crate::backfill::error::{Error, ErrorKind, Result};

/// SQLite's page cache for the key file, in KiB: what the keys may take in memory. Chunks are
/// read in key order along the primary key's B-tree and inserts come in batches, so a small
/// cache costs little; a large one would fill with the file and grow with the capture.
const CACHE_KIB: i64 = 256;

/// The selected keys of a capture, table by table.
pub struct KeyStore {
    conn: Connection,
    /// The file, removed when the store is dropped.
    _file: tempfile::NamedTempFile,
    /// Captured table -> (its SQLite table, its key's width).
    tables: BTreeMap<String, (String, usize)>,
}

/// Where a reading of one table's keys stands: the stages it reads and the last key it gave.
pub struct Cursor {
    table: String,
    stages: (i64, i64),
    after: Option<Vec<Value>>,
}

impl Cursor {
    /// The keys of `table` added by the stages `first..=last`, in key order.
    pub fn new(table: &str, first: i64, last: i64) -> Cursor {
        Cursor {
            table: table.to_string(),
            stages: (first, last),
            after: None,
        }
    }
}

fn sqlite_error(e: rusqlite::Error) -> Error {
    Error::new(
        ErrorKind::Io,
        format!("the capture's key file (in the temporary directory): {e}"),
    )
}

impl KeyStore {
    /// An empty store for `tables`, in a new temporary file.
    pub fn create<'a>(tables: impl IntoIterator<Item = &'a CatalogTable>) -> Result<KeyStore> {
        let file = tempfile::Builder::new()
            .prefix("xtask-capture-keys-")
            .suffix(".sqlite")
            .tempfile()
            .map_err(|e| {
                Error::new(
                    ErrorKind::Io,
                    format!(
                        "cannot create the capture's key file in {}: {e}",
                        std::env::temp_dir().display()
                    ),
                )
            })?;
        let conn = Connection::open(file.path()).map_err(sqlite_error)?;
        // A scratch file: no journal, no syncs, one writer, a bounded cache.
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA locking_mode = EXCLUSIVE;
             PRAGMA temp_store = FILE; PRAGMA cache_size = -{CACHE_KIB};"
        ))
        .map_err(sqlite_error)?;
        let mut store = KeyStore {
            conn,
            _file: file,
            tables: BTreeMap::new(),
        };
        for (i, table) in tables.into_iter().enumerate() {
            let name = format!("k{i}");
            let columns: Vec<String> = table
                .key_columns()
                .iter()
                .enumerate()
                .map(|(j, c)| {
                    let affinity = if c.integer { "INTEGER" } else { "TEXT" };
                    format!("c{j} {affinity} NOT NULL")
                })
                .collect();
            let width = columns.len();
            store
                .conn
                .execute_batch(&format!(
                    "CREATE TABLE {name} ({}, stage INTEGER NOT NULL, PRIMARY KEY ({})) WITHOUT ROWID",
                    columns.join(", "),
                    key_list(width)
                ))
                .map_err(sqlite_error)?;
            store.tables.insert(table.name.clone(), (name, width));
        }
        Ok(store)
    }

    fn table(&self, table: &str) -> Result<&(String, usize)> {
        self.tables.get(table).ok_or_else(|| {
            Error::new(
                ErrorKind::Database,
                format!("table {table} is not among the captured tables"),
            )
        })
    }

    /// Adds `keys` (each: the key's columns as text) to `table` at `stage`; returns how many
    /// were new (a key already stored keeps its stage).
    pub fn insert_keys<'a, K: IntoIterator<Item = &'a str>>(
        &mut self,
        table: &str,
        stage: i64,
        keys: impl IntoIterator<Item = K>,
    ) -> Result<usize> {
        let (name, width) = self.table(table)?.clone();
        let tx = self.conn.transaction().map_err(sqlite_error)?;
        let mut added = 0;
        {
            let mut insert = tx
                .prepare_cached(&format!(
                    "INSERT OR IGNORE INTO {name} VALUES ({}, ?)",
                    vec!["?"; width].join(", ")
                ))
                .map_err(sqlite_error)?;
            for key in keys {
                for (i, value) in key.into_iter().take(width).enumerate() {
                    insert
                        .raw_bind_parameter(i + 1, value)
                        .map_err(sqlite_error)?;
                }
                insert
                    .raw_bind_parameter(width + 1, stage)
                    .map_err(sqlite_error)?;
                added += insert.raw_execute().map_err(sqlite_error)?;
            }
        }
        tx.commit().map_err(sqlite_error)?;
        Ok(added)
    }

    /// The next at most `limit` keys of the cursor, as text; `None` when it is done.
    pub fn next_chunk(
        &self,
        cursor: &mut Cursor,
        limit: usize,
    ) -> Result<Option<Vec<Vec<String>>>> {
        let (name, width) = self.table(&cursor.table)?;
        let width = *width;
        let mut sql = format!(
            "SELECT {} FROM {name} WHERE stage BETWEEN ? AND ?",
            key_list(width)
        );
        let mut bound: Vec<Value> = vec![
            Value::Integer(cursor.stages.0),
            Value::Integer(cursor.stages.1),
        ];
        if let Some(after) = &cursor.after {
            sql.push_str(&format!(
                " AND ({}) > ({})",
                key_list(width),
                vec!["?"; width].join(", ")
            ));
            bound.extend(after.iter().cloned());
        }
        sql.push_str(&format!(" ORDER BY {} LIMIT {limit}", key_list(width)));
        let mut statement = self.conn.prepare_cached(&sql).map_err(sqlite_error)?;
        let mut rows = statement
            .query(params_from_iter(bound.iter()))
            .map_err(sqlite_error)?;
        let mut chunk = Vec::new();
        let mut last = None;
        while let Some(row) = rows.next().map_err(sqlite_error)? {
            let key: Vec<Value> = (0..width)
                .map(|i| row.get::<_, Value>(i))
                .collect::<rusqlite::Result<_>>()
                .map_err(sqlite_error)?;
            chunk.push(key.iter().map(text).collect());
            last = Some(key);
        }
        if chunk.is_empty() {
            return Ok(None);
        }
        cursor.after = last;
        Ok(Some(chunk))
    }

    /// Whether `table` is among the captured tables.
    pub fn contains(&self, table: &str) -> bool {
        self.tables.contains_key(table)
    }

    /// The number of keys selected for `table`.
    pub fn len(&self, table: &str) -> Result<u64> {
        let (name, _) = self.table(table)?;
        self.conn
            .query_row(&format!("SELECT count(*) FROM {name}"), [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n as u64)
            .map_err(sqlite_error)
    }
}

/// `c0, c1, ...`
fn key_list(width: usize) -> String {
    (0..width)
        .map(|i| format!("c{i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A stored key column's text form, as the source printed it.
fn text(value: &Value) -> String {
    match value {
        Value::Integer(i) => i.to_string(),
        Value::Text(s) => s.clone(),
        Value::Real(f) => f.to_string(),
        Value::Blob(b) => String::from_utf8_lossy(b).into_owned(),
        Value::Null => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backfill::capture::catalog::CatalogColumn;

    fn table(name: &str, keys: &[(&str, &str)]) -> CatalogTable {
        CatalogTable {
            name: name.to_string(),
            columns: keys
                .iter()
                .map(|(c, t)| CatalogColumn {
                    name: c.to_string(),
                    type_name: t.to_string(),
                    text_like: *t == "text",
                    not_null: true,
                    generated: false,
                    integer: *t != "text",
                })
                .collect(),
            primary_key: (0..keys.len()).collect(),
            unique_index: None,
        }
    }

    fn read_all(
        store: &KeyStore,
        name: &str,
        stages: (i64, i64),
        limit: usize,
    ) -> Vec<Vec<String>> {
        let mut cursor = Cursor::new(name, stages.0, stages.1);
        let mut all = Vec::new();
        while let Some(chunk) = store.next_chunk(&mut cursor, limit).unwrap() {
            assert!(chunk.len() <= limit);
            all.extend(chunk);
        }
        all
    }

    #[test]
    fn keys_are_deduplicated_kept_by_stage_and_read_in_key_order_in_chunks() {
        let users = table("users", &[("id", "bigint")]);
        let items = table("items", &[("org", "text"), ("num", "integer")]);
        let mut store = KeyStore::create([&users, &items]).unwrap();
        let added = store
            .insert_keys("users", 0, [["10"], ["9"], ["-3"], ["100"], ["9"]])
            .unwrap();
        assert_eq!(added, 4);
        assert_eq!(store.insert_keys("users", 1, [["9"], ["11"]]).unwrap(), 1);
        assert_eq!(store.len("users").unwrap(), 5);
        let ids =
            |rows: Vec<Vec<String>>| rows.into_iter().map(|k| k[0].clone()).collect::<Vec<_>>();
        // Integers compare as numbers, across chunk boundaries.
        assert_eq!(
            ids(read_all(&store, "users", (0, i64::MAX), 2)),
            ["-3", "9", "10", "11", "100"]
        );
        // A stage reads only what the stages asked for added (9 stays at stage 0).
        assert_eq!(ids(read_all(&store, "users", (1, 1), 1)), ["11"]);
        assert_eq!(
            ids(read_all(&store, "users", (0, 0), 3)),
            ["-3", "9", "10", "100"]
        );

        store
            .insert_keys(
                "items",
                0,
                [["b", "2"], ["a", "10"], ["a", "9"], ["B", "1"]],
            )
            .unwrap();
        assert_eq!(
            read_all(&store, "items", (0, 0), 3),
            [["B", "1"], ["a", "9"], ["a", "10"], ["b", "2"]]
        );
        assert!(store.insert_keys("nothing", 0, [["1"]]).is_err());
    }
}
