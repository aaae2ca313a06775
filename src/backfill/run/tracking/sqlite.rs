//! The tracking store on a SQLite file: the same tables and the same exactly-once batch
//! transaction as on PostgreSQL, in `BEGIN IMMEDIATE` transactions (SQLite has one writer at a
//! time, so there is no `SKIP LOCKED` to need).
//!
//! A claim is live while its process is: claims record the host and process id of the worker,
//! and a worker on the same host sees at once that a killed one is gone. Several workers on one
//! file are correct (the cursor's compare-and-set decides) but take turns; one is the norm.

use std::time::{Duration, Instant};

use rusqlite::{OptionalExtension, Row, params};

use super::{
    BatchOutcome, BatchRequest, CheckFn, Control, DiffRow, DiffStatus, Estimate, HealthPace,
    HealthPaceChange, NewDiff, NewRun, Pace, PaceChange, RangeRow, Recent, RunRow, RunState, Store,
    StoreResult, TrackingNames, Transition, Txn, check_transition, past_end,
};
use crate::backfill::db::sqlite::{SqliteBackend, db_error, key_from, key_param, statement_error};
use crate::backfill::db::{Backend, KeyKind, KeyValue, quote_ident};
use crate::backfill::display::kind_name;
use crate::backfill::error::{Error, ErrorKind};
use crate::backfill::run::host::{hostname, process_alive};

pub struct SqliteStore {
    backend: SqliteBackend,
    names: TrackingNames,
}

fn db(e: rusqlite::Error) -> Error {
    db_error(e)
}

fn corrupt(what: &str) -> Error {
    Error::new(
        ErrorKind::Database,
        format!("the tracking tables hold {what}"),
    )
}

fn parse_kind(text: &str) -> KeyKind {
    if text == "text" {
        KeyKind::Text
    } else {
        KeyKind::Integer
    }
}

fn key_of(kind: KeyKind, stored: &str) -> StoreResult<KeyValue> {
    KeyValue::from_stored(kind, stored).ok_or_else(|| {
        corrupt(&format!(
            "`{stored}`, which is not a {} key",
            kind_name(kind)
        ))
    })
}

fn u64_of(v: Option<i64>) -> Option<u64> {
    v.map(|v| v.max(0) as u64)
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

const NOW: &str = "strftime('%Y-%m-%d %H:%M:%f', 'now')";

/// Timestamps are stored as [`NOW`] writes them (UTC) and read as RFC 3339, like PostgreSQL's.
const RUN_COLUMNS: &str = "id, migration, checksum, state, table_name, key_column, key_kind, settings, rows_estimated, pace_batch_size, pace_pause_ms, pace_max_rows_per_second, last_error,
    strftime('%Y-%m-%dT%H:%M:%fZ', created_at), strftime('%Y-%m-%dT%H:%M:%fZ', updated_at),
    strftime('%Y-%m-%dT%H:%M:%fZ', finished_at), strftime('%Y-%m-%dT%H:%M:%fZ', started_at),
    strftime('%Y-%m-%dT%H:%M:%fZ', superseded_at), superseded_by, restart_of, pace_health,
    strftime('%Y-%m-%dT%H:%M:%fZ', throttled_since), throttle_reason";

/// A run row, with its state still as text (checked by the caller, outside rusqlite's closure).
fn run_row(r: &Row<'_>) -> rusqlite::Result<(RunRow, String)> {
    let state: String = r.get(3)?;
    Ok((
        RunRow {
            id: r.get(0)?,
            migration: r.get(1)?,
            checksum: r.get(2)?,
            state: RunState::Pending,
            table: r.get(4)?,
            key: r.get(5)?,
            key_kind: parse_kind(&r.get::<_, String>(6)?),
            settings: r.get(7)?,
            rows_estimated: u64_of(r.get(8)?),
            pace: Pace {
                batch_size: u64_of(r.get(9)?),
                pause: u64_of(r.get(10)?).map(Duration::from_millis),
                max_rows_per_second: u64_of(r.get(11)?),
            },
            last_error: r.get(12)?,
            created_at: r.get(13)?,
            updated_at: r.get(14)?,
            finished_at: r.get(15)?,
            started_at: r.get(16)?,
            superseded_at: r.get(17)?,
            superseded_by: r.get(18)?,
            restart_of: r.get(19)?,
            health_pace: HealthPace::from_stored(r.get::<_, Option<String>>(20)?.as_deref()),
            throttled_since: r.get(21)?,
            throttle_reason: r.get(22)?,
        },
        state,
    ))
}

fn with_state((mut run, state): (RunRow, String)) -> StoreResult<RunRow> {
    run.state = RunState::parse(&state).ok_or_else(|| corrupt(&format!("a state `{state}`")))?;
    Ok(run)
}

const RANGE_COLUMNS: &str = "id, ord, lower_key, upper_key, cursor_key, done, claimed_by, (julianday('now') - julianday(heartbeat)) * 86400.0, rows_done, batches, claim_host, claim_pid";

type RawRange = (
    i64,
    i64,
    String,
    Option<String>,
    String,
    bool,
    Option<String>,
    Option<f64>,
    i64,
    i64,
    Option<String>,
    Option<i64>,
);

fn raw_range(r: &Row<'_>) -> rusqlite::Result<RawRange> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
        r.get(9)?,
        r.get(10)?,
        r.get(11)?,
    ))
}

fn range_row(raw: &RawRange, kind: KeyKind) -> StoreResult<RangeRow> {
    Ok(RangeRow {
        id: raw.0,
        ord: raw.1,
        lower: key_of(kind, &raw.2)?,
        upper: match &raw.3 {
            Some(u) => Some(key_of(kind, u)?),
            None => None,
        },
        cursor: key_of(kind, &raw.4)?,
        done: raw.5,
        claimed_by: raw.6.clone(),
        heartbeat_age: raw.7,
        rows_done: raw.8.max(0) as u64,
        batches: raw.9.max(0) as u64,
        claim_alive: raw.6.is_some()
            && match (&raw.10, raw.11) {
                (Some(host), Some(pid)) if *host == hostname() => process_alive(pid),
                _ => true,
            },
    })
}

impl SqliteStore {
    pub fn new(backend: SqliteBackend, names: TrackingNames) -> StoreResult<SqliteStore> {
        if names.schema.is_some() {
            return Err(Error::new(
                ErrorKind::Database,
                "a tracking schema is a PostgreSQL setting; SQLite keeps the tracking tables in the database file",
            ));
        }
        let mut store = SqliteStore { backend, names };
        store.init()?;
        Ok(store)
    }

    /// Several processes may share the file: wait for the write lock rather than fail at once.
    fn init(&mut self) -> StoreResult<()> {
        self.backend
            .connection()
            .busy_timeout(Duration::from_secs(10))
            .map_err(db)
    }

    /// The backend itself (the sample stage builds its database through it).
    pub fn backend_mut(&mut self) -> &mut SqliteBackend {
        &mut self.backend
    }

    fn conn(&mut self) -> &mut rusqlite::Connection {
        self.backend.connection()
    }

    /// Runs `f` in a transaction, committed when it succeeds, rolled back when it fails.
    fn in_transaction<T>(
        &mut self,
        f: impl FnOnce(&mut SqliteStore) -> StoreResult<T>,
    ) -> StoreResult<T> {
        self.transaction(|s| f(s).map(Txn::Commit))
    }

    /// Runs `f` in a `BEGIN IMMEDIATE` transaction that ends as `f` says; rolled back when it
    /// fails.
    fn transaction<T>(
        &mut self,
        f: impl FnOnce(&mut SqliteStore) -> StoreResult<Txn<T>>,
    ) -> StoreResult<T> {
        self.conn().execute_batch("BEGIN IMMEDIATE").map_err(db)?;
        match f(self) {
            Ok(Txn::Commit(v)) => {
                if let Err(e) = self.conn().execute_batch("COMMIT") {
                    let _ = self.conn().execute_batch("ROLLBACK");
                    return Err(db(e));
                }
                Ok(v)
            }
            Ok(Txn::Rollback(v)) => {
                self.conn().execute_batch("ROLLBACK").map_err(db)?;
                Ok(v)
            }
            Err(e) => {
                let _ = self.conn().execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }

    fn kind_of(&mut self, run_id: i64) -> StoreResult<KeyKind> {
        let sql = format!("SELECT key_kind FROM {} WHERE id = ?1", self.names.runs());
        let kind: Option<String> = self
            .conn()
            .query_row(&sql, [run_id], |r| r.get(0))
            .optional()
            .map_err(db)?;
        kind.map(|k| parse_kind(&k))
            .ok_or_else(|| corrupt(&format!("no run {run_id}")))
    }

    fn state_of(&mut self, run_id: i64) -> StoreResult<RunState> {
        let sql = format!("SELECT state FROM {} WHERE id = ?1", self.names.runs());
        let state: Option<String> = self
            .conn()
            .query_row(&sql, [run_id], |r| r.get(0))
            .optional()
            .map_err(db)?;
        let state = state.ok_or_else(|| corrupt(&format!("no run {run_id}")))?;
        RunState::parse(&state).ok_or_else(|| corrupt(&format!("a state `{state}`")))
    }

    fn next_upper(
        &mut self,
        request: &BatchRequest<'_>,
        cursor: &KeyValue,
    ) -> StoreResult<Option<KeyValue>> {
        let (k, t) = (quote_ident(request.key), quote_ident(request.table));
        let cap = if request.range.upper.is_some() {
            format!(" AND {k} <= ?3")
        } else {
            String::new()
        };
        let ahead =
            format!("SELECT {k} FROM {t} WHERE {k} > ?1{cap} ORDER BY {k} LIMIT 1 OFFSET ?2");
        let last = format!(
            "SELECT max({k}) FROM {t} WHERE {k} > ?1{}",
            cap.replace("?3", "?2")
        );
        let offset = i64_of(request.size.saturating_sub(1));
        let lo = key_param(cursor);
        let hi = request.range.upper.as_ref().map(key_param);
        let (table, key, kind) = (request.table, request.key, request.kind);
        let conn = self.backend.connection();
        let read = |v: rusqlite::types::ValueRef<'_>| -> StoreResult<Option<KeyValue>> {
            match v {
                rusqlite::types::ValueRef::Null => Ok(None),
                v => key_from(v, kind, table, key).map(Some),
            }
        };
        let found = {
            let mut stmt = conn.prepare_cached(&ahead).map_err(statement_error)?;
            let mut rows = match &hi {
                Some(hi) => stmt.query(params![lo, offset, hi]),
                None => stmt.query(params![lo, offset]),
            }
            .map_err(statement_error)?;
            match rows.next().map_err(statement_error)? {
                Some(row) => read(row.get_ref(0).map_err(statement_error)?)?,
                None => None,
            }
        };
        if found.is_some() {
            return Ok(found);
        }
        let mut stmt = conn.prepare_cached(&last).map_err(statement_error)?;
        let mut rows = match &hi {
            Some(hi) => stmt.query(params![lo, hi]),
            None => stmt.query(params![lo]),
        }
        .map_err(statement_error)?;
        match rows.next().map_err(statement_error)? {
            Some(row) => read(row.get_ref(0).map_err(statement_error)?),
            None => Ok(None),
        }
    }
}

impl SqliteStore {
    /// The batch transaction both kinds of batch share: lock the file (`BEGIN IMMEDIATE`), check
    /// the range's cursor and claim, find the batch's upper bound, let `work` do the batch's work
    /// on `(cursor, upper]` (returning its row count), then move the cursor with the
    /// compare-and-set and log the batch, in the same transaction.
    fn batch_transaction(
        &mut self,
        request: &BatchRequest<'_>,
        past_end: Option<&KeyValue>,
        work: impl FnOnce(&mut SqliteStore, &KeyValue) -> StoreResult<u64>,
    ) -> StoreResult<BatchOutcome> {
        let ranges = self.names.ranges();
        let log = self.names.batch_log();
        let lock = format!("SELECT cursor_key, claimed_by, done FROM {ranges} WHERE id = ?1");
        // The run must still be current: once a restart superseded it, its batches roll back.
        let current = format!(
            "NOT EXISTS (SELECT 1 FROM {} AS r WHERE r.id = run_id AND r.superseded_at IS NOT NULL)",
            self.names.runs()
        );
        let done = format!(
            "UPDATE {ranges} SET done = 1, heartbeat = {NOW} WHERE id = ?1 AND cursor_key = ?2 AND claimed_by = ?3 AND NOT done AND {current}"
        );
        let advance = format!(
            "UPDATE {ranges} SET cursor_key = ?3, rows_done = rows_done + ?4, batches = batches + 1, heartbeat = {NOW}
             WHERE id = ?1 AND cursor_key = ?2 AND claimed_by = ?5 AND NOT done AND {current}"
        );
        let record = format!(
            "INSERT INTO {log} (range_id, run_id, lower_key, upper_key, rows_changed, worker, held_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
        );
        let range_id = request.range.id;
        let old = request.range.cursor.to_stored();
        let started = Instant::now();
        // BEGIN IMMEDIATE takes the write lock first: the check below cannot go stale.
        self.transaction(|s| {
            let current: Option<(String, Option<String>, bool)> = s
                .conn()
                .prepare_cached(&lock)
                .and_then(|mut stmt| {
                    stmt.query_row([range_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                })
                .optional()
                .map_err(db)?;
            match current {
                Some((cursor, claimed_by, false))
                    if cursor == old && claimed_by.as_deref() == Some(request.worker) => {}
                _ => return Ok(Txn::Rollback(BatchOutcome::Lost)),
            }
            // Past the walked table's last key, an open range may still hold keys of the other
            // side (`past_end`): one more batch covers them.
            let upper = match s.next_upper(request, &request.range.cursor)? {
                Some(upper) => Some(upper),
                None => past_end
                    .filter(|end| request.range.upper.is_none() && request.range.cursor != **end)
                    .cloned(),
            };
            let Some(upper) = upper else {
                let n = s
                    .conn()
                    .prepare_cached(&done)
                    .and_then(|mut stmt| stmt.execute(params![range_id, old, request.worker]))
                    .map_err(db)?;
                return Ok(if n == 1 {
                    Txn::Commit(BatchOutcome::RangeDone)
                } else {
                    Txn::Rollback(BatchOutcome::Lost)
                });
            };
            let changed = work(s, &upper)?;
            let conn = s.conn();
            let moved = conn
                .prepare_cached(&advance)
                .and_then(|mut stmt| {
                    stmt.execute(params![
                        range_id,
                        old,
                        upper.to_stored(),
                        i64_of(changed),
                        request.worker
                    ])
                })
                .map_err(db)?;
            if moved != 1 {
                // Someone else moved the cursor: roll the batch back.
                return Ok(Txn::Rollback(BatchOutcome::Lost));
            }
            let held = started.elapsed();
            conn.prepare_cached(&record)
                .and_then(|mut stmt| {
                    stmt.execute(params![
                        range_id,
                        request.run_id,
                        old,
                        upper.to_stored(),
                        i64_of(changed),
                        request.worker,
                        held.as_secs_f64() * 1000.0
                    ])
                })
                .map_err(db)?;
            Ok(Txn::Commit(BatchOutcome::Applied {
                upper,
                rows: changed,
                held,
            }))
        })
    }
}

/// The runs table, created with `create` (`CREATE TABLE IF NOT EXISTS`, or `CREATE TABLE` for
/// the upgrade's copy) under `name`.
fn runs_ddl(create: &str, name: &str) -> String {
    format!(
        "{create} {name} (
    id INTEGER PRIMARY KEY,
    migration text NOT NULL,
    checksum text NOT NULL,
    state text NOT NULL,
    table_name text NOT NULL,
    key_column text NOT NULL,
    key_kind text NOT NULL,
    settings text NOT NULL,
    rows_estimated integer,
    rows_done integer NOT NULL DEFAULT 0,
    batches_done integer NOT NULL DEFAULT 0,
    pace_batch_size integer,
    pace_pause_ms integer,
    pace_max_rows_per_second integer,
    last_error text,
    created_at text NOT NULL DEFAULT ({NOW}),
    started_at text,
    updated_at text NOT NULL DEFAULT ({NOW}),
    finished_at text,
    superseded_at text,
    superseded_by text,
    restart_of integer,
    pace_health text,
    throttled_since text,
    throttle_reason text
)"
    )
}

/// At most one current run per data migration.
fn current_index(names: &TrackingNames) -> String {
    format!(
        "CREATE UNIQUE INDEX IF NOT EXISTS {} ON {} (migration) WHERE superseded_at IS NULL",
        quote_ident(&format!("{}runs_current", names.prefix)),
        names.runs()
    )
}

/// The columns the previous version's runs table has, all kept by the upgrade.
const PREVIOUS_RUN_COLUMNS: &str = "id, migration, checksum, state, table_name, key_column, key_kind, settings, rows_estimated, rows_done, batches_done, pace_batch_size, pace_pause_ms, pace_max_rows_per_second, last_error, created_at, started_at, updated_at, finished_at";

/// The runs table's columns for health throttling, added to a table made before them.
const HEALTH_COLUMNS: [&str; 3] = ["pace_health", "throttled_since", "throttle_reason"];

impl SqliteStore {
    /// Adds the health columns to a runs table made before them (nullable, no default: SQLite
    /// changes only the schema).
    fn add_health_columns(&mut self) -> StoreResult<()> {
        let name = format!("{}runs", self.names.prefix);
        let runs = self.names.runs();
        self.in_transaction(|s| {
            for column in HEALTH_COLUMNS {
                let present: i64 = s
                    .conn()
                    .query_row(
                        "SELECT count(*) FROM pragma_table_info(?1) WHERE name = ?2",
                        [&name, column],
                        |r| r.get(0),
                    )
                    .map_err(db)?;
                if present == 0 {
                    s.conn()
                        .execute_batch(&format!("ALTER TABLE {runs} ADD COLUMN {column} text"))
                        .map_err(db)?;
                }
            }
            Ok(())
        })
    }

    /// Records `run` and its ranges (inside the caller's transaction); `None` when the data
    /// migration already has a current run.
    fn insert_run(&mut self, run: &NewRun, restart_of: Option<i64>) -> StoreResult<Option<i64>> {
        let insert = format!(
            "INSERT INTO {} (migration, checksum, state, table_name, key_column, key_kind, settings, rows_estimated, restart_of)
             VALUES (?1, ?2, 'pending', ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (migration) WHERE superseded_at IS NULL DO NOTHING",
            self.names.runs()
        );
        let range = format!(
            "INSERT INTO {} (run_id, ord, lower_key, upper_key, cursor_key) VALUES (?1, ?2, ?3, ?4, ?3)",
            self.names.ranges()
        );
        let conn = self.conn();
        let inserted = conn
            .execute(
                &insert,
                params![
                    run.migration,
                    run.checksum,
                    run.table,
                    run.key,
                    kind_name(run.key_kind),
                    run.settings,
                    run.rows_estimated.map(i64_of),
                    restart_of
                ],
            )
            .map_err(db)?;
        if inserted == 0 {
            return Ok(None);
        }
        let id = conn.last_insert_rowid();
        for (ord, (lower, upper)) in run.ranges.iter().enumerate() {
            conn.execute(
                &range,
                params![
                    id,
                    ord as i64,
                    lower.to_stored(),
                    upper.as_ref().map(KeyValue::to_stored)
                ],
            )
            .map_err(db)?;
        }
        Ok(Some(id))
    }

    /// Upgrades a runs table of the previous version (`migration` unique, no restart columns).
    /// SQLite cannot drop a column's UNIQUE, so the table is rebuilt the way SQLite documents
    /// (foreign keys off, copy, drop, rename, check, in one transaction); the ranges keep their
    /// run ids, and their foreign key names the rebuilt table.
    fn upgrade_previous(&mut self) -> StoreResult<()> {
        let names = self.names.clone();
        let previous = |conn: &rusqlite::Connection| -> rusqlite::Result<bool> {
            let (tables, restart_columns): (i64, i64) = conn.query_row(
                "SELECT (SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1),
                        (SELECT count(*) FROM pragma_table_info(?1) WHERE name = 'superseded_at')",
                [format!("{}runs", names.prefix)],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            Ok(tables == 1 && restart_columns == 0)
        };
        if !previous(self.conn()).map_err(db)? {
            return Ok(());
        }
        let runs = names.runs();
        let copy = quote_ident(&format!("{}runs_upgrade", names.prefix));
        let rebuild = format!(
            "{create};
INSERT INTO {copy} ({PREVIOUS_RUN_COLUMNS}) SELECT {PREVIOUS_RUN_COLUMNS} FROM {runs};
DROP TABLE {runs};
ALTER TABLE {copy} RENAME TO {renamed};
{index};",
            create = runs_ddl("CREATE TABLE", &copy),
            renamed = quote_ident(&format!("{}runs", names.prefix)),
            index = current_index(&names),
        );
        let failed = |message: String| {
            Error::new(
                ErrorKind::Database,
                format!(
                    "the tracking tables {} were made by an earlier version of xtask-migrate and upgrading them failed: {message}",
                    names.describe()
                ),
            )
        };
        let conn = self.conn();
        // Outside a transaction: inside one, SQLite ignores it.
        conn.execute_batch("PRAGMA foreign_keys = OFF")
            .map_err(db)?;
        let upgraded = (|| -> Result<(), String> {
            conn.execute_batch("BEGIN IMMEDIATE")
                .map_err(|e| db(e).message)?;
            let result = (|| -> Result<(), String> {
                // Another process may have upgraded it while this one waited for the lock.
                if !previous(conn).map_err(|e| db(e).message)? {
                    return Ok(());
                }
                conn.execute_batch(&rebuild).map_err(|e| db(e).message)?;
                let broken: i64 = conn
                    .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
                        r.get(0)
                    })
                    .map_err(|e| db(e).message)?;
                if broken > 0 {
                    return Err(format!(
                        "{broken} rows would no longer match a run; nothing was changed"
                    ));
                }
                Ok(())
            })();
            match result {
                Ok(()) => conn.execute_batch("COMMIT").map_err(|e| db(e).message),
                Err(e) => {
                    let _ = conn.execute_batch("ROLLBACK");
                    Err(e)
                }
            }
        })();
        let restored = conn.execute_batch("PRAGMA foreign_keys = ON").map_err(db);
        upgraded.map_err(failed)?;
        restored
    }
}

impl Store for SqliteStore {
    fn backend(&mut self) -> &mut dyn Backend {
        &mut self.backend
    }

    fn reconnect(&mut self) -> StoreResult<()> {
        self.backend.reconnect()?;
        self.init()
    }

    fn ensure_tables(&mut self) -> StoreResult<()> {
        self.upgrade_previous()?;
        let n = &self.names;
        let log_index = quote_ident(&format!("{}batch_log_run", n.prefix));
        let diffs_index = quote_ident(&format!("{}diffs_run", n.prefix));
        let ddl = format!(
            "{runs_ddl};
{current_index};
CREATE TABLE IF NOT EXISTS {ranges} (
    id INTEGER PRIMARY KEY,
    run_id integer NOT NULL REFERENCES {runs} (id) ON DELETE CASCADE,
    ord integer NOT NULL,
    lower_key text NOT NULL,
    upper_key text,
    cursor_key text NOT NULL,
    done boolean NOT NULL DEFAULT 0,
    claimed_by text,
    claim_host text,
    claim_pid integer,
    claim_start numeric,
    heartbeat text,
    rows_done integer NOT NULL DEFAULT 0,
    batches integer NOT NULL DEFAULT 0,
    UNIQUE (run_id, ord)
);
CREATE TABLE IF NOT EXISTS {log} (
    range_id integer NOT NULL REFERENCES {ranges} (id) ON DELETE CASCADE,
    run_id integer NOT NULL,
    lower_key text NOT NULL,
    upper_key text NOT NULL,
    rows_changed integer NOT NULL,
    worker text NOT NULL,
    held_ms real NOT NULL,
    committed_at text NOT NULL DEFAULT ({NOW}),
    PRIMARY KEY (range_id, lower_key)
);
CREATE INDEX IF NOT EXISTS {log_index} ON {log} (run_id, committed_at);
CREATE TABLE IF NOT EXISTS {diffs} (
    id INTEGER PRIMARY KEY,
    run_id integer NOT NULL REFERENCES {runs} (id) ON DELETE CASCADE,
    key_text text,
    category text NOT NULL,
    columns_json text NOT NULL,
    lower_key text NOT NULL,
    upper_key text NOT NULL,
    status text NOT NULL CHECK (status IN ('pending', 'confirmed', 'cleared')),
    worker text NOT NULL,
    found_at text NOT NULL DEFAULT ({NOW}),
    checked_at text
);
CREATE INDEX IF NOT EXISTS {diffs_index} ON {diffs} (run_id, id);",
            diffs = n.diffs(),
            runs_ddl = runs_ddl("CREATE TABLE IF NOT EXISTS", &n.runs()),
            current_index = current_index(n),
            runs = n.runs(),
            ranges = n.ranges(),
            log = n.batch_log(),
        );
        self.in_transaction(|s| s.conn().execute_batch(&ddl).map_err(db))?;
        self.add_health_columns()
    }

    fn tables_exist(&mut self) -> StoreResult<bool> {
        let name = format!("{}runs", self.names.prefix);
        let exists = self
            .conn()
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [name],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)
            .map_err(db)?;
        if exists {
            self.upgrade_previous()?;
            self.add_health_columns()?;
        }
        Ok(exists)
    }

    fn max_key(&mut self, table: &str, key: &str, kind: KeyKind) -> StoreResult<Option<KeyValue>> {
        let (k, t) = (quote_ident(key), quote_ident(table));
        let sql = format!("SELECT {k} FROM {t} WHERE {k} IS NOT NULL ORDER BY {k} DESC LIMIT 1");
        let conn = self.conn();
        let mut stmt = conn.prepare(&sql).map_err(statement_error)?;
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

    fn estimate(
        &mut self,
        table: &str,
        key: &str,
        _kind: KeyKind,
        _histogram: bool,
    ) -> StoreResult<Estimate> {
        let mut estimate = Estimate {
            source: "no statistics (run ANALYZE for an estimate)".into(),
            ..Estimate::default()
        };
        let conn = self.conn();
        let has_stats: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_stat1'",
                [],
                |r| r.get(0),
            )
            .map_err(db)?;
        if has_stats > 0 {
            // ANALYZE's rows: `stat` starts with the table's row count.
            let stat: Option<String> = conn
                .query_row(
                    "SELECT stat FROM sqlite_stat1 WHERE tbl = ?1 ORDER BY idx IS NULL LIMIT 1",
                    [table],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db)?;
            if let Some(rows) = stat
                .as_deref()
                .and_then(|s| s.split_whitespace().next())
                .and_then(|n| n.parse::<u64>().ok())
            {
                estimate.rows = Some(rows);
                estimate.source = "sqlite_stat1".into();
            }
        }
        // The key is indexed when it is the rowid alias or leads an index.
        let rowid: i64 = conn
            .query_row(
                "SELECT count(*) FROM pragma_table_info(?1) WHERE name = ?2 AND pk = 1 AND upper(type) = 'INTEGER'",
                [table, key],
                |r| r.get(0),
            )
            .map_err(db)?;
        let led: i64 = conn
            .query_row(
                "SELECT count(*) FROM pragma_index_list(?1) AS il, pragma_index_info(il.name) AS ii
                 WHERE ii.seqno = 0 AND ii.name = ?2",
                [table, key],
                |r| r.get(0),
            )
            .map_err(db)?;
        estimate.key_indexed = Some(rowid + led > 0);
        Ok(estimate)
    }

    fn find_run(&mut self, migration: &str) -> StoreResult<Option<RunRow>> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM {} WHERE migration = ?1 AND superseded_at IS NULL",
            self.names.runs()
        );
        let row = self
            .conn()
            .query_row(&sql, [migration], run_row)
            .optional()
            .map_err(db)?;
        row.map(with_state).transpose()
    }

    fn runs(&mut self) -> StoreResult<Vec<RunRow>> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM {} ORDER BY id",
            self.names.runs()
        );
        let conn = self.conn();
        let mut stmt = conn.prepare(&sql).map_err(db)?;
        let rows = stmt
            .query_map([], run_row)
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(db)?;
        rows.into_iter().map(with_state).collect()
    }

    fn create_run(&mut self, run: &NewRun) -> StoreResult<RunRow> {
        self.in_transaction(|s| s.insert_run(run, None))?;
        self.find_run(&run.migration)?
            .ok_or_else(|| corrupt("no run right after recording it"))
    }

    fn restart(&mut self, old: i64, by: &str, run: &NewRun) -> StoreResult<Option<RunRow>> {
        // BEGIN IMMEDIATE: no batch of the old run is in flight, and none commits after this.
        let supersede = format!(
            "UPDATE {} SET superseded_at = {NOW}, superseded_by = ?2, updated_at = {NOW}
             WHERE id = ?1 AND state IN ('cancelled', 'done') AND superseded_at IS NULL",
            self.names.runs()
        );
        let id = self.transaction(|s| {
            let changed = s.conn().execute(&supersede, params![old, by]).map_err(db)?;
            if changed != 1 {
                return Ok(Txn::Rollback(None));
            }
            Ok(match s.insert_run(run, Some(old))? {
                Some(id) => Txn::Commit(Some(id)),
                None => Txn::Rollback(None),
            })
        })?;
        match id {
            Some(_) => self.find_run(&run.migration),
            None => Ok(None),
        }
    }

    fn transition(
        &mut self,
        run_id: i64,
        to: RunState,
        error: Option<&str>,
    ) -> StoreResult<Transition> {
        let sql = format!(
            "UPDATE {} SET state = ?3, updated_at = {NOW},
                 last_error = CASE WHEN ?4 IS NOT NULL THEN ?4 WHEN ?3 = 'running' THEN NULL ELSE last_error END,
                 started_at = CASE WHEN ?3 = 'running' THEN coalesce(started_at, {NOW}) ELSE started_at END,
                 finished_at = CASE WHEN ?3 IN ('done', 'cancelled', 'failed') THEN {NOW} ELSE NULL END
             WHERE id = ?1 AND state = ?2",
            self.names.runs()
        );
        self.in_transaction(|s| {
            let from = s.state_of(run_id)?;
            if from == to {
                return Ok(Transition::Unchanged);
            }
            if let Err(reason) = check_transition(from, to) {
                return Ok(Transition::Refused { from, reason });
            }
            s.conn()
                .execute(&sql, params![run_id, from.as_str(), to.as_str(), error])
                .map_err(db)?;
            Ok(Transition::Changed { from })
        })
    }

    fn finish(&mut self, run_id: i64) -> StoreResult<bool> {
        let sql = format!(
            "UPDATE {runs} SET state = 'done', finished_at = {NOW}, updated_at = {NOW},
                 rows_done = (SELECT coalesce(sum(rows_done), 0) FROM {ranges} WHERE run_id = ?1),
                 batches_done = (SELECT coalesce(sum(batches), 0) FROM {ranges} WHERE run_id = ?1)
             WHERE id = ?1 AND state = 'running'
               AND NOT EXISTS (SELECT 1 FROM {ranges} WHERE run_id = ?1 AND NOT done)",
            runs = self.names.runs(),
            ranges = self.names.ranges()
        );
        Ok(self.conn().execute(&sql, [run_id]).map_err(db)? == 1)
    }

    fn set_pace(&mut self, run_id: i64, change: &PaceChange) -> StoreResult<Pace> {
        let runs = self.names.runs();
        let read = format!(
            "SELECT pace_batch_size, pace_pause_ms, pace_max_rows_per_second FROM {runs} WHERE id = ?1"
        );
        let update = format!(
            "UPDATE {runs} SET pace_batch_size = ?2, pace_pause_ms = ?3, pace_max_rows_per_second = ?4, updated_at = {NOW} WHERE id = ?1"
        );
        self.in_transaction(|s| {
            let conn = s.conn();
            let current: Option<(Option<i64>, Option<i64>, Option<i64>)> = conn
                .query_row(&read, [run_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()
                .map_err(db)?;
            let (b, p, m) = current.ok_or_else(|| corrupt(&format!("no run {run_id}")))?;
            let mut pace = Pace {
                batch_size: u64_of(b),
                pause: u64_of(p).map(Duration::from_millis),
                max_rows_per_second: u64_of(m),
            };
            pace.apply(change);
            conn.execute(
                &update,
                params![
                    run_id,
                    pace.batch_size.map(i64_of),
                    pace.pause.map(|p| i64_of(p.as_millis() as u64)),
                    pace.max_rows_per_second.map(i64_of)
                ],
            )
            .map_err(db)?;
            Ok(pace)
        })
    }

    fn control(&mut self, run_id: i64) -> StoreResult<Control> {
        let sql = format!(
            "SELECT r.state, r.pace_batch_size, r.pace_pause_ms, r.pace_max_rows_per_second,
                    (SELECT count(DISTINCT claimed_by) FROM {ranges} WHERE run_id = r.id AND NOT done AND claimed_by IS NOT NULL),
                    (SELECT coalesce(sum(rows_done), 0) FROM {ranges} WHERE run_id = r.id),
                    (SELECT count(*) FROM {ranges} WHERE run_id = r.id AND done),
                    (SELECT count(*) FROM {ranges} WHERE run_id = r.id),
                    r.pace_health
             FROM {runs} AS r WHERE r.id = ?1",
            runs = self.names.runs(),
            ranges = self.names.ranges()
        );
        type Raw = (
            String,
            Option<i64>,
            Option<i64>,
            Option<i64>,
            i64,
            i64,
            i64,
            i64,
            Option<String>,
        );
        let raw: Option<Raw> = self
            .conn()
            .prepare_cached(&sql)
            .and_then(|mut stmt| {
                stmt.query_row([run_id], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                        r.get(7)?,
                        r.get(8)?,
                    ))
                })
                .optional()
            })
            .map_err(db)?;
        let r = raw.ok_or_else(|| corrupt(&format!("no run {run_id}")))?;
        Ok(Control {
            state: RunState::parse(&r.0).ok_or_else(|| corrupt(&format!("a state `{}`", r.0)))?,
            pace: Pace {
                batch_size: u64_of(r.1),
                pause: u64_of(r.2).map(Duration::from_millis),
                max_rows_per_second: u64_of(r.3),
            },
            workers: r.4.max(0) as u64,
            rows_done: r.5.max(0) as u64,
            ranges_done: r.6.max(0) as u64,
            ranges: r.7.max(0) as u64,
            health: HealthPace::from_stored(r.8.as_deref()),
        })
    }

    fn set_health_pace(
        &mut self,
        run_id: i64,
        change: &HealthPaceChange,
    ) -> StoreResult<HealthPace> {
        let runs = self.names.runs();
        let read = format!("SELECT pace_health FROM {runs} WHERE id = ?1");
        let update =
            format!("UPDATE {runs} SET pace_health = ?2, updated_at = {NOW} WHERE id = ?1");
        self.in_transaction(|s| {
            let current: Option<Option<String>> = s
                .conn()
                .query_row(&read, [run_id], |r| r.get(0))
                .optional()
                .map_err(db)?;
            let current = current.ok_or_else(|| corrupt(&format!("no run {run_id}")))?;
            let mut pace = HealthPace::from_stored(current.as_deref());
            pace.apply(change);
            s.conn()
                .execute(&update, params![run_id, pace.to_stored()])
                .map_err(db)?;
            Ok(pace)
        })
    }

    fn set_throttle(&mut self, run_id: i64, reason: Option<&str>) -> StoreResult<()> {
        let sql = format!(
            "UPDATE {} SET throttle_reason = ?2,
                 throttled_since = CASE WHEN ?2 IS NULL THEN NULL ELSE coalesce(throttled_since, {NOW}) END
             WHERE id = ?1",
            self.names.runs()
        );
        self.conn()
            .execute(&sql, params![run_id, reason])
            .map(|_| ())
            .map_err(db)
    }

    fn ranges(&mut self, run_id: i64) -> StoreResult<Vec<RangeRow>> {
        let kind = self.kind_of(run_id)?;
        let sql = format!(
            "SELECT {RANGE_COLUMNS} FROM {} WHERE run_id = ?1 ORDER BY ord",
            self.names.ranges()
        );
        let conn = self.conn();
        let mut stmt = conn.prepare(&sql).map_err(db)?;
        let raws = stmt
            .query_map([run_id], raw_range)
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(db)?;
        raws.iter().map(|r| range_row(r, kind)).collect()
    }

    fn recent(&mut self, run_id: i64, window: Duration) -> StoreResult<Recent> {
        // `committed_at` is written as the batch ends: it started `held_ms` earlier.
        let sql = format!(
            "SELECT coalesce(sum(CASE WHEN age < ?2 THEN rows_changed ELSE 0 END), 0),
                    max(CASE WHEN age < ?2 THEN age + held_ms / 1000.0 END),
                    coalesce(max(held_ms), 0.0)
             FROM (SELECT (julianday('now') - julianday(committed_at)) * 86400.0 AS age, rows_changed, held_ms
                   FROM {} WHERE run_id = ?1)",
            self.names.batch_log()
        );
        let (rows, span, held): (i64, Option<f64>, f64) = self
            .conn()
            .query_row(&sql, params![run_id, window.as_secs_f64()], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .map_err(db)?;
        Ok(Recent {
            rows: rows.max(0) as u64,
            span: span.map(|s| Duration::from_secs_f64(s.clamp(0.0, window.as_secs_f64()))),
            longest: Duration::from_secs_f64(held.max(0.0) / 1000.0),
        })
    }

    fn claim(
        &mut self,
        run_id: i64,
        worker: &str,
        stale: Duration,
    ) -> StoreResult<Option<RangeRow>> {
        let kind = self.kind_of(run_id)?;
        let ranges = self.names.ranges();
        let candidates = format!(
            "SELECT {RANGE_COLUMNS} FROM {ranges} WHERE run_id = ?1 AND NOT done
             ORDER BY claimed_by IS ?2 DESC, claimed_by IS NOT NULL, ord"
        );
        let take = format!(
            "UPDATE {ranges} SET claimed_by = ?2, claim_host = ?3, claim_pid = ?4, heartbeat = {NOW} WHERE id = ?1"
        );
        let host = hostname();
        let pid = i64::from(std::process::id());
        self.in_transaction(|s| {
            let conn = s.conn();
            let raws = {
                let mut stmt = conn.prepare(&candidates).map_err(db)?;
                stmt.query_map(params![run_id, worker], raw_range)
                    .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                    .map_err(db)?
            };
            for raw in &raws {
                let dead = match (&raw.10, raw.11) {
                    (Some(h), Some(p)) => *h == host && !process_alive(p),
                    _ => false,
                };
                let free = raw.6.is_none()
                    || raw.6.as_deref() == Some(worker)
                    || raw.7.is_none_or(|age| age > stale.as_secs_f64())
                    || dead;
                if free {
                    conn.execute(&take, params![raw.0, worker, host, pid])
                        .map_err(db)?;
                    let mut range = range_row(raw, kind)?;
                    range.claimed_by = Some(worker.to_string());
                    range.heartbeat_age = Some(0.0);
                    range.claim_alive = true;
                    return Ok(Some(range));
                }
            }
            Ok(None)
        })
    }

    fn heartbeat(&mut self, run_id: i64, worker: &str) -> StoreResult<()> {
        let sql = format!(
            "UPDATE {} SET heartbeat = {NOW}, claim_pid = ?3 WHERE run_id = ?1 AND claimed_by = ?2 AND NOT done",
            self.names.ranges()
        );
        let pid = i64::from(std::process::id());
        self.conn()
            .execute(&sql, params![run_id, worker, pid])
            .map(|_| ())
            .map_err(db)
    }

    fn release(&mut self, run_id: i64, worker: &str) -> StoreResult<()> {
        let sql = format!(
            "UPDATE {} SET claimed_by = NULL, claim_host = NULL, claim_pid = NULL
             WHERE run_id = ?1 AND claimed_by = ?2 AND NOT done",
            self.names.ranges()
        );
        self.conn()
            .execute(&sql, params![run_id, worker])
            .map(|_| ())
            .map_err(db)
    }

    fn run_batch(&mut self, request: &BatchRequest<'_>) -> StoreResult<BatchOutcome> {
        self.batch_transaction(request, None, |s, upper| {
            let changed = s
                .conn()
                .prepare_cached(request.sql)
                .and_then(|mut stmt| {
                    stmt.execute(params![key_param(&request.range.cursor), key_param(upper)])
                })
                .map_err(|e| {
                    statement_error(e).context(format!("keys ({}, {upper}]", request.range.cursor))
                })?;
            Ok(changed as u64)
        })
    }

    fn verify_batch(
        &mut self,
        request: &BatchRequest<'_>,
        check: &mut CheckFn<'_>,
    ) -> StoreResult<BatchOutcome> {
        let insert = format!(
            "INSERT INTO {} (run_id, key_text, category, columns_json, lower_key, upper_key, status, worker)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7)",
            self.names.diffs()
        );
        self.batch_transaction(request, past_end(request.kind), |s, upper| {
            let checked = check(&mut s.backend, &request.range.cursor, upper)
                .map_err(|e| e.context(format!("keys ({}, {upper}]", request.range.cursor)))?;
            for diff in &checked.found {
                let columns = serde_json::to_string(&diff.columns).unwrap_or_default();
                s.conn()
                    .prepare_cached(&insert)
                    .and_then(|mut stmt| {
                        stmt.execute(params![
                            request.run_id,
                            diff.key,
                            diff.category,
                            columns,
                            diff.lower.to_stored(),
                            diff.upper.to_stored(),
                            request.worker
                        ])
                    })
                    .map_err(db)?;
            }
            Ok(checked.rows)
        })
    }

    fn diffs(&mut self, run_id: i64, status: Option<DiffStatus>) -> StoreResult<Vec<DiffRow>> {
        let kind = self.kind_of(run_id)?;
        let sql = format!(
            "SELECT id, key_text, category, columns_json, lower_key, upper_key, status, worker,
                    strftime('%Y-%m-%dT%H:%M:%fZ', found_at)
             FROM {} WHERE run_id = ?1 AND (?2 IS NULL OR status = ?2) ORDER BY id",
            self.names.diffs()
        );
        type Raw = (
            i64,
            Option<String>,
            String,
            String,
            String,
            String,
            String,
            String,
            String,
        );
        let raw: Vec<Raw> = self
            .conn()
            .prepare_cached(&sql)
            .and_then(|mut stmt| {
                stmt.query_map(params![run_id, status.map(DiffStatus::as_str)], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                        r.get(7)?,
                        r.get(8)?,
                    ))
                })?
                .collect()
            })
            .map_err(db)?;
        raw.into_iter()
            .map(
                |(id, key, category, columns, lower, upper, status, worker, found_at)| {
                    Ok(DiffRow {
                        id,
                        diff: NewDiff {
                            key,
                            category,
                            columns: serde_json::from_str(&columns).map_err(|_| {
                                corrupt("a difference whose columns are not a list")
                            })?,
                            lower: key_of(kind, &lower)?,
                            upper: key_of(kind, &upper)?,
                        },
                        status: DiffStatus::parse(&status)
                            .ok_or_else(|| corrupt(&format!("a difference status `{status}`")))?,
                        worker,
                        found_at,
                    })
                },
            )
            .collect()
    }

    fn settle_diff(
        &mut self,
        id: i64,
        status: DiffStatus,
        category: &str,
        columns: &[String],
    ) -> StoreResult<()> {
        let sql = format!(
            "UPDATE {} SET status = ?2, category = ?3, columns_json = ?4, checked_at = {NOW} WHERE id = ?1",
            self.names.diffs()
        );
        let columns = serde_json::to_string(columns).unwrap_or_default();
        self.conn()
            .execute(&sql, params![id, status.as_str(), category, columns])
            .map(|_| ())
            .map_err(db)
    }
}
