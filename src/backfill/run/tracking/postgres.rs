//! The tracking store on PostgreSQL: tables, claims with `FOR UPDATE SKIP LOCKED`, and the
//! exactly-once batch transaction, over the engine's [`PgBackend`].
//!
//! A claim is live while the session that made it is: claims record the server process id and
//! start time of their session (`pg_stat_activity`), so a worker killed with SIGKILL, whose
//! session the server ends at once, gives its range back without waiting for the heartbeat to
//! go stale. The heartbeat still covers a worker that is alive but stuck. The statements read
//! the one session they ask about from `pg_stat_get_activity(pid)`, the function under the
//! view (the same rows, with the same visibility for other roles' sessions): the view's
//! rewriting and planning, with its joins to `pg_database` and `pg_authid`, cost a fresh
//! session several milliseconds per statement, and every sample's run starts in one.
//!
//! Errors are classified for the runner ([`Retry`]) from their SQLSTATE, never their text.

use std::collections::HashMap;
use std::time::Duration;

use postgres::types::{ToSql, Type};
use postgres::{SimpleQueryMessage, Statement};

use super::{
    BatchOutcome, BatchRequest, CheckFn, Control, DiffRow, DiffStatus, Estimate, HealthPace,
    HealthPaceChange, NewDiff, NewRun, Pace, PaceChange, RangeRow, Recent, Retry, RunRow, RunState,
    Store, StoreResult, TrackingNames, Transition, Txn, check_transition, past_end,
};
use crate::backfill::db::postgres::{PgBackend, key_param, pg_error, read_key, read_key_at};
use crate::backfill::db::{Backend, KeyKind, KeyValue, quote_ident};
use crate::backfill::display::kind_name;
use crate::backfill::error::{Error, ErrorKind};

pub struct PgStore {
    backend: PgBackend,
    names: TrackingNames,
    prepared: HashMap<String, Statement>,
    /// The key kind of each run read so far: set when the run is recorded, never changed.
    kinds: HashMap<i64, KeyKind>,
}

fn err(e: postgres::Error, kind: ErrorKind) -> Error {
    pg_error(e, kind)
}

fn db(e: postgres::Error) -> Error {
    err(e, ErrorKind::Database)
}

fn parse_kind(text: &str) -> KeyKind {
    if text == "text" {
        KeyKind::Text
    } else {
        KeyKind::Integer
    }
}

fn corrupt(what: &str) -> Error {
    Error::new(
        ErrorKind::Database,
        format!("the tracking tables hold {what}"),
    )
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

/// Timestamps are read as RFC 3339 in UTC, the same text SQLite gives.
const RUN_COLUMNS: &str = r#"id, migration, checksum, state, table_name, key_column, key_kind, settings::text, rows_estimated, pace_batch_size, pace_pause_ms, pace_max_rows_per_second, last_error,
    to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
    to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
    to_char(finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
    to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
    to_char(superseded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
    superseded_by, restart_of, pace_health,
    to_char(throttled_since AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'), throttle_reason"#;

fn run_row(r: &postgres::Row) -> StoreResult<RunRow> {
    let state: String = r.get(3);
    Ok(RunRow {
        id: r.get(0),
        migration: r.get(1),
        checksum: r.get(2),
        state: RunState::parse(&state).ok_or_else(|| corrupt(&format!("a state `{state}`")))?,
        table: r.get(4),
        key: r.get(5),
        key_kind: parse_kind(r.get::<_, &str>(6)),
        settings: r.get(7),
        rows_estimated: u64_of(r.get(8)),
        pace: Pace {
            batch_size: u64_of(r.get(9)),
            pause: u64_of(r.get(10)).map(Duration::from_millis),
            max_rows_per_second: u64_of(r.get(11)),
        },
        last_error: r.get(12),
        created_at: r.get(13),
        updated_at: r.get(14),
        finished_at: r.get(15),
        started_at: r.get(16),
        superseded_at: r.get(17),
        superseded_by: r.get(18),
        restart_of: r.get(19),
        health_pace: HealthPace::from_stored(r.get(20)),
        throttled_since: r.get(21),
        throttle_reason: r.get(22),
    })
}

/// The last column says whether the claiming session is still there; a session of another role
/// whose start time this role may not read counts as there.
const RANGE_COLUMNS: &str = "id, ord, lower_key, upper_key, cursor_key, done, claimed_by, extract(epoch FROM now() - heartbeat)::float8, rows_done, batches,
    claimed_by IS NOT NULL AND EXISTS (SELECT 1 FROM pg_stat_get_activity(claim_pid::integer) AS a WHERE a.pid = claim_pid
        AND (a.backend_start IS NULL OR extract(epoch FROM a.backend_start) = claim_start))";

fn range_row(r: &postgres::Row, kind: KeyKind) -> StoreResult<RangeRow> {
    Ok(RangeRow {
        id: r.get(0),
        ord: i64::from(r.get::<_, i32>(1)),
        lower: key_of(kind, r.get(2))?,
        upper: match r.get::<_, Option<&str>>(3) {
            Some(u) => Some(key_of(kind, u)?),
            None => None,
        },
        cursor: key_of(kind, r.get(4))?,
        done: r.get(5),
        claimed_by: r.get(6),
        heartbeat_age: r.get(7),
        rows_done: r.get::<_, i64>(8).max(0) as u64,
        batches: r.get::<_, i64>(9).max(0) as u64,
        claim_alive: r.get(10),
    })
}

impl PgStore {
    pub fn new(backend: PgBackend, names: TrackingNames) -> PgStore {
        PgStore {
            backend,
            names,
            prepared: HashMap::new(),
            kinds: HashMap::new(),
        }
    }

    /// The key kind of run `run_id`, read once per store.
    fn kind_of(&mut self, run_id: i64) -> StoreResult<KeyKind> {
        if let Some(kind) = self.kinds.get(&run_id) {
            return Ok(*kind);
        }
        let sql = format!("SELECT key_kind FROM {} WHERE id = $1", self.names.runs());
        let kind = self
            .query(&sql, &[&run_id])?
            .first()
            .map(|r| parse_kind(r.get::<_, &str>(0)))
            .ok_or_else(|| corrupt(&format!("no run {run_id}")))?;
        self.kinds.insert(run_id, kind);
        Ok(kind)
    }

    /// Session settings every connection of the runner gets (again after a reconnect).
    pub fn init_session(&mut self) -> StoreResult<()> {
        self.batch(SESSION)
    }

    /// The backend itself (the sample stage builds its database through it).
    pub fn backend_mut(&mut self) -> &mut PgBackend {
        &mut self.backend
    }

    pub fn names(&self) -> &TrackingNames {
        &self.names
    }

    fn prepare(&mut self, sql: &str) -> StoreResult<Statement> {
        self.prepare_typed(sql, &[])
    }

    /// Prepares `sql` once per connection, with the parameter types given (the rest inferred).
    fn prepare_typed(&mut self, sql: &str, types: &[Type]) -> StoreResult<Statement> {
        let cache_key = format!("{types:?}{sql}");
        if let Some(stmt) = self.prepared.get(&cache_key) {
            return Ok(stmt.clone());
        }
        let stmt = self
            .backend
            .client()
            .prepare_typed(sql, types)
            .map_err(db)?;
        self.prepared.insert(cache_key, stmt.clone());
        Ok(stmt)
    }

    fn query(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> StoreResult<Vec<postgres::Row>> {
        let stmt = self.prepare(sql)?;
        self.backend.client().query(&stmt, params).map_err(db)
    }

    fn execute(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> StoreResult<u64> {
        let stmt = self.prepare(sql)?;
        self.backend.client().execute(&stmt, params).map_err(db)
    }

    fn batch(&mut self, sql: &str) -> StoreResult<()> {
        self.backend.client().batch_execute(sql).map_err(db)
    }

    /// Ends an open transaction after an error; a lost connection has none left to end.
    fn rollback(&mut self) {
        let _ = self.backend.client().batch_execute("ROLLBACK");
    }

    /// Runs `f` in a transaction, committed when it succeeds, rolled back when it fails.
    fn in_transaction<T>(
        &mut self,
        begin: &str,
        f: impl FnOnce(&mut PgStore) -> StoreResult<T>,
    ) -> StoreResult<T> {
        self.transaction(begin, |s| f(s).map(Txn::Commit))
    }

    /// Runs `f` in a transaction that ends as `f` says; rolled back when it fails.
    fn transaction<T>(
        &mut self,
        begin: &str,
        f: impl FnOnce(&mut PgStore) -> StoreResult<Txn<T>>,
    ) -> StoreResult<T> {
        self.batch(begin)?;
        match f(self) {
            Ok(Txn::Commit(v)) => {
                self.batch("COMMIT")?;
                Ok(v)
            }
            Ok(Txn::Rollback(v)) => {
                self.batch("ROLLBACK")?;
                Ok(v)
            }
            Err(e) => {
                self.rollback();
                Err(e)
            }
        }
    }

    /// Records `run` and its ranges (inside the caller's transaction); `None` when the data
    /// migration already has a current run.
    fn insert_run(&mut self, run: &NewRun, restart_of: Option<i64>) -> StoreResult<Option<i64>> {
        let insert = format!(
            "INSERT INTO {} (migration, checksum, state, table_name, key_column, key_kind, settings, rows_estimated, restart_of)
             VALUES ($1, $2, 'pending', $3, $4, $5, CAST($6::text AS jsonb), $7, $8)
             ON CONFLICT (migration) WHERE superseded_at IS NULL DO NOTHING RETURNING id",
            self.names.runs()
        );
        let range = format!(
            "INSERT INTO {} (run_id, ord, lower_key, upper_key, cursor_key) VALUES ($1, $2, $3, $4, $3)",
            self.names.ranges()
        );
        let estimated = run.rows_estimated.map(i64_of);
        let kind = kind_name(run.key_kind);
        let rows = self.query(
            &insert,
            &[
                &run.migration,
                &run.checksum,
                &run.table,
                &run.key,
                &kind,
                &run.settings,
                &estimated,
                &restart_of,
            ],
        )?;
        let Some(id) = rows.first().map(|r| r.get::<_, i64>(0)) else {
            return Ok(None);
        };
        for (ord, (lower, upper)) in run.ranges.iter().enumerate() {
            let ord = i32::try_from(ord).unwrap_or(i32::MAX);
            self.execute(
                &range,
                &[
                    &id,
                    &ord,
                    &lower.to_stored(),
                    &upper.as_ref().map(KeyValue::to_stored),
                ],
            )?;
        }
        Ok(Some(id))
    }

    fn state_of(&mut self, run_id: i64) -> StoreResult<RunState> {
        let sql = format!("SELECT state FROM {} WHERE id = $1", self.names.runs());
        let rows = self.query(&sql, &[&run_id])?;
        let state: String = rows
            .first()
            .map(|r| r.get(0))
            .ok_or_else(|| corrupt(&format!("no run {run_id}")))?;
        RunState::parse(&state).ok_or_else(|| corrupt(&format!("a state `{state}`")))
    }

    /// Locks the range's row and reads its cursor, claim and state, with the batch's upper
    /// bound past `request`'s cursor: the key `size` rows on within the range, else the
    /// range's last key, `NULL` when no key is left in it. One statement, one round trip: the
    /// bound is the batch's only if the cursor read is `request`'s, which the caller checks.
    /// The bound may be read before a lock held by another session is granted: any key past
    /// the cursor is a valid bound, and the batch's own statement reads the rows afresh.
    fn lock_range(&mut self, request: &BatchRequest<'_>) -> StoreResult<Option<LockedRange>> {
        let (k, t) = (quote_ident(request.key), quote_ident(request.table));
        let bounded = request.range.upper.is_some();
        let cap = if bounded {
            format!(" AND {k} <= $4")
        } else {
            String::new()
        };
        // `coalesce` runs the second subquery only when the first finds no key.
        let sql = format!(
            "SELECT g.cursor_key, g.claimed_by, g.done,
                    coalesce((SELECT {k} FROM {t} WHERE {k} > $2{cap} ORDER BY {k} LIMIT 1 OFFSET $3),
                             (SELECT max({k}) FROM {t} WHERE {k} > $2{cap}))
             FROM {} AS g WHERE g.id = $1 FOR UPDATE OF g",
            self.names.ranges()
        );
        let key_type = param_type(request.kind);
        let types = [Type::INT8, key_type.clone(), Type::INT8, key_type];
        let stmt = self.prepare_typed(&sql, &types[..if bounded { 4 } else { 3 }])?;
        let lo = key_param(&request.range.cursor, &stmt.params()[1])?;
        let offset = i64_of(request.size.saturating_sub(1));
        let hi = match &request.range.upper {
            Some(u) => Some(key_param(u, &stmt.params()[3])?),
            None => None,
        };
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&request.range.id, &*lo, &offset];
        if let Some(hi) = &hi {
            params.push(&**hi);
        }
        let rows = self.backend.client().query(&stmt, &params).map_err(db)?;
        let Some(r) = rows.first() else {
            return Ok(None);
        };
        Ok(Some(LockedRange {
            cursor: r.get(0),
            claimed_by: r.get(1),
            done: r.get(2),
            upper: read_key_at(r, 3, request.kind)?,
        }))
    }
}

/// A range's row as [`PgStore::lock_range`] read it, holding its lock.
struct LockedRange {
    cursor: String,
    claimed_by: Option<String>,
    done: bool,
    /// The batch's upper bound, were it to start at the cursor the request holds.
    upper: Option<KeyValue>,
}

impl PgStore {
    /// The batch transaction both kinds of batch share: `begin` (with the run's `SET LOCAL`
    /// limits), lock the range's row and check its cursor and claim, find the batch's upper
    /// bound, let `work` do the batch's work on `(cursor, upper]` (returning its row count), then
    /// move the cursor with the compare-and-set and log the batch, in the same transaction.
    fn batch_transaction(
        &mut self,
        request: &BatchRequest<'_>,
        begin: &str,
        past_end: Option<&KeyValue>,
        work: impl FnOnce(&mut PgStore, &KeyValue) -> StoreResult<u64>,
    ) -> StoreResult<BatchOutcome> {
        let ranges = self.names.ranges();
        let log = self.names.batch_log();
        // Read after the range's lock is held: a restart that superseded the run has committed
        // by then, or waits for this transaction.
        let current = format!(
            "NOT EXISTS (SELECT 1 FROM {} AS r WHERE r.id = g.run_id AND r.superseded_at IS NOT NULL)",
            self.names.runs()
        );
        let done = format!(
            "UPDATE {ranges} AS g SET done = true, heartbeat = now()
             WHERE g.id = $1 AND g.cursor_key = $2 AND g.claimed_by = $3 AND NOT g.done AND {current}"
        );
        // The compare-and-set: the cursor moves from where this batch started, by this worker,
        // in a run still current, and the batch is logged, in one statement of the batch's
        // transaction.
        let advance = format!(
            "WITH moved AS (
                 UPDATE {ranges} AS g SET cursor_key = $3, rows_done = g.rows_done + $4, batches = g.batches + 1, heartbeat = now()
                 WHERE g.id = $1 AND g.cursor_key = $2 AND g.claimed_by = $5 AND NOT g.done AND {current}
                 RETURNING g.id, g.run_id)
             INSERT INTO {log} (range_id, run_id, lower_key, upper_key, rows_changed, worker, held_ms)
             SELECT id, run_id, $2, $3, $4, $5, extract(epoch FROM clock_timestamp() - now())::float8 * 1000 FROM moved
             RETURNING held_ms"
        );
        let mut begin = begin.to_string();
        if let Some(t) = request.limits.lock_timeout {
            begin.push_str(&format!(
                "SET LOCAL lock_timeout = '{}ms';",
                t.as_millis().max(1)
            ));
        }
        if let Some(t) = request.limits.statement_timeout {
            begin.push_str(&format!(
                "SET LOCAL statement_timeout = '{}ms';",
                t.as_millis().max(1)
            ));
        }
        let range_id = request.range.id;
        let old = request.range.cursor.to_stored();
        self.transaction(&begin, |s| {
            let Some(locked) = s.lock_range(request)? else {
                return Ok(Txn::Rollback(BatchOutcome::Lost));
            };
            if locked.cursor != old
                || locked.claimed_by.as_deref() != Some(request.worker)
                || locked.done
            {
                return Ok(Txn::Rollback(BatchOutcome::Lost));
            }
            // Past the walked table's last key, an open range may still hold keys of the other
            // side (`past_end`): one more batch covers them.
            let upper = match locked.upper {
                Some(upper) => Some(upper),
                None => past_end
                    .filter(|end| request.range.upper.is_none() && request.range.cursor != **end)
                    .cloned(),
            };
            let Some(upper) = upper else {
                let n = s.execute(&done, &[&range_id, &old, &request.worker])?;
                return Ok(if n == 1 {
                    Txn::Commit(BatchOutcome::RangeDone)
                } else {
                    Txn::Rollback(BatchOutcome::Lost)
                });
            };
            let changed = work(s, &upper)?;
            let logged = s.query(
                &advance,
                &[
                    &range_id,
                    &old,
                    &upper.to_stored(),
                    &i64_of(changed),
                    &request.worker,
                ],
            )?;
            let Some(row) = logged.first() else {
                // Zero rows: someone else moved the cursor. Roll the batch back.
                return Ok(Txn::Rollback(BatchOutcome::Lost));
            };
            let held: f64 = row.get(0);
            Ok(Txn::Commit(BatchOutcome::Applied {
                upper,
                rows: changed,
                held: Duration::from_secs_f64(held.max(0.0) / 1000.0),
            }))
        })
    }
}

/// The type key bounds are sent as: `bigint` for every integer key and `text` for text keys.
/// PostgreSQL compares an `integer` or `smallint` column with a `bigint` bound through the same
/// index (the integer operator family is cross-type), so every bound the tracking tables hold,
/// including the open range's `i64::MIN` below an empty table, binds whatever the column's width.
fn param_type(kind: KeyKind) -> Type {
    match kind {
        KeyKind::Integer => Type::INT8,
        KeyKind::Text => Type::TEXT,
    }
}

/// Names the runner's sessions, so `pg_stat_activity` shows what they are.
const SESSION: &str = "SET application_name = 'xtask-migrate backfill'";

/// The columns each tracking table must have, with their types as `format_type` spells them
/// (the runs table's restart columns, [`RESTART_COLUMNS`], aside).
const SHAPES: [(&str, &[(&str, &str)]); 3] = [
    (
        "runs",
        &[
            ("id", "bigint"),
            ("migration", "text"),
            ("checksum", "text"),
            ("state", "text"),
            ("table_name", "text"),
            ("key_column", "text"),
            ("key_kind", "text"),
            ("settings", "jsonb"),
            ("rows_estimated", "bigint"),
            ("pace_batch_size", "bigint"),
            ("pace_pause_ms", "bigint"),
            ("pace_max_rows_per_second", "bigint"),
            ("last_error", "text"),
            ("created_at", "timestamp with time zone"),
            ("updated_at", "timestamp with time zone"),
            ("finished_at", "timestamp with time zone"),
        ],
    ),
    (
        "ranges",
        &[
            ("id", "bigint"),
            ("run_id", "bigint"),
            ("ord", "integer"),
            ("lower_key", "text"),
            ("upper_key", "text"),
            ("cursor_key", "text"),
            ("done", "boolean"),
            ("claimed_by", "text"),
            ("claim_pid", "bigint"),
            ("claim_start", "numeric"),
            ("heartbeat", "timestamp with time zone"),
            ("rows_done", "bigint"),
            ("batches", "bigint"),
        ],
    ),
    (
        "batch_log",
        &[
            ("range_id", "bigint"),
            ("run_id", "bigint"),
            ("lower_key", "text"),
            ("upper_key", "text"),
            ("rows_changed", "bigint"),
            ("worker", "text"),
            ("held_ms", "double precision"),
        ],
    ),
];

/// The runs table's columns that record restarts. Tables of the previous version have none of
/// them, and are upgraded ([`PgStore::upgrade`]).
const RESTART_COLUMNS: [(&str, &str); 3] = [
    ("superseded_at", "timestamp with time zone"),
    ("superseded_by", "text"),
    ("restart_of", "bigint"),
];

/// The runs table's columns for health throttling. Tables made before them get them added
/// ([`PgStore::add_health_columns`]).
const HEALTH_COLUMNS: [(&str, &str); 3] = [
    ("pace_health", "text"),
    ("throttled_since", "timestamptz"),
    ("throttle_reason", "text"),
];

/// What [`PgStore::verify_tables`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// No runs table.
    Absent,
    /// The previous version's tables: one run per data migration, no restart columns.
    Previous,
    Current,
}

impl PgStore {
    /// Checks that tables with the tracking tables' names are ours: a table of the same name
    /// made by someone else is an error here, not a surprise when a row is read.
    /// `all`: every table must exist (else a missing one is skipped).
    fn verify_tables(&mut self, all: bool) -> StoreResult<Shape> {
        let catalog = self.catalog()?;
        self.shape_of(&catalog, all)
    }

    /// The columns of the tracking tables and of the indexes [`Store::ensure_tables`] makes, by
    /// name, as the catalog has them now, in one query; a name that is not there has no entry.
    fn catalog(&mut self) -> StoreResult<HashMap<String, HashMap<String, String>>> {
        let names = self.catalog_names();
        let rows = self.query(
            "SELECT t.name, a.attname::text, format_type(a.atttypid, a.atttypmod)
             FROM unnest($1::text[]) AS t (name)
             JOIN pg_attribute AS a ON a.attrelid = to_regclass(t.name)
             WHERE a.attnum > 0 AND NOT a.attisdropped",
            &[&names],
        )?;
        let mut catalog: HashMap<String, HashMap<String, String>> = HashMap::new();
        for r in &rows {
            catalog
                .entry(r.get(0))
                .or_default()
                .insert(r.get(1), r.get(2));
        }
        Ok(catalog)
    }

    /// The names [`PgStore::catalog`] looks up: the tables of [`SHAPES`] first, then the
    /// diffs table and the indexes.
    fn catalog_names(&self) -> Vec<String> {
        let n = &self.names;
        vec![
            n.runs(),
            n.ranges(),
            n.batch_log(),
            n.diffs(),
            n.qualified("runs_current"),
            n.qualified("batch_log_run"),
            n.qualified("diffs_run"),
        ]
    }

    /// Which version's tracking tables `catalog` holds; an error when a table of their names
    /// is someone else's. `all`: every table of [`SHAPES`] must exist (else a missing one is
    /// skipped).
    fn shape_of(
        &self,
        catalog: &HashMap<String, HashMap<String, String>>,
        all: bool,
    ) -> StoreResult<Shape> {
        let mut shape = Shape::Absent;
        let empty = HashMap::new();
        for ((table, columns), name) in SHAPES.iter().zip(self.catalog_names()) {
            let found = catalog.get(&name).unwrap_or(&empty);
            if found.is_empty() && !all {
                continue;
            }
            let foreign = |column: &str, ty: &str| {
                Error::new(
                    ErrorKind::Database,
                    format!(
                        "table {name} is not a tracking table of this version of xtask-migrate (column `{column}` should be {ty}); choose other names with --tracking-prefix or --tracking-schema"
                    ),
                )
            };
            for (column, ty) in columns.iter() {
                if found.get(*column).map(String::as_str) != Some(*ty) {
                    return Err(foreign(column, ty));
                }
            }
            if *table == "runs" {
                let present = RESTART_COLUMNS
                    .iter()
                    .filter(|(c, _)| found.contains_key(*c))
                    .count();
                shape = if present == 0 {
                    Shape::Previous
                } else {
                    Shape::Current
                };
                for (column, ty) in RESTART_COLUMNS {
                    if present > 0 && found.get(column).map(String::as_str) != Some(ty) {
                        return Err(foreign(column, ty));
                    }
                }
            }
        }
        Ok(shape)
    }

    /// Upgrades the previous version's tracking tables: adds the restart columns and turns the
    /// unique constraint on `migration` into a unique index over current runs. One transaction,
    /// under the lock that serializes table creation, metadata changes only (no row is
    /// rewritten); it waits at most 10s for the locks it needs.
    fn upgrade(&mut self) -> StoreResult<()> {
        let runs = self.names.runs();
        let current = quote_ident(&format!("{}runs_current", self.names.prefix));
        let begin = "BEGIN; SET LOCAL lock_timeout = '10s';
                     SELECT pg_advisory_xact_lock(hashtext('xtask-migrate tracking tables'))";
        self.in_transaction(begin, |s| {
            // Another process may have upgraded them while this one waited for the lock.
            if s.verify_tables(true)? != Shape::Previous {
                return Ok(());
            }
            let unique = s.query(
                "SELECT c.conname::text FROM pg_constraint AS c
                 JOIN pg_attribute AS a ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey)
                 WHERE c.conrelid = to_regclass($1) AND c.contype = 'u' AND a.attname = 'migration'
                   AND cardinality(c.conkey) = 1",
                &[&runs],
            )?;
            let mut ddl = format!(
                "ALTER TABLE {runs} ADD COLUMN superseded_at timestamptz, ADD COLUMN superseded_by text, ADD COLUMN restart_of bigint;"
            );
            for row in &unique {
                let name: String = row.get(0);
                ddl.push_str(&format!(
                    "ALTER TABLE {runs} DROP CONSTRAINT {};",
                    quote_ident(&name)
                ));
            }
            ddl.push_str(&format!(
                "CREATE UNIQUE INDEX {current} ON {runs} (migration) WHERE superseded_at IS NULL;"
            ));
            s.batch(&ddl)
        })
        .map_err(|e| {
            let message = format!(
                "the tracking tables {} were made by an earlier version of xtask-migrate and upgrading them failed: {}",
                self.names.describe(),
                e.message
            );
            Error::new(ErrorKind::Database, message).with_retry(e.retry)
        })
    }
}

impl PgStore {
    /// Adds the health columns to a runs table made before them: catalog changes only, under
    /// the lock that serializes table creation, waiting at most 10s for the table's lock.
    fn add_health_columns(&mut self) -> StoreResult<()> {
        let runs = self.names.runs();
        let names: Vec<&str> = HEALTH_COLUMNS.iter().map(|(c, _)| *c).collect();
        let present = self.query(
            "SELECT count(*) FROM pg_attribute WHERE attrelid = to_regclass($1) AND attname = ANY ($2) AND NOT attisdropped",
            &[&runs, &names],
        )?;
        if present.first().map(|r| r.get::<_, i64>(0)) == Some(HEALTH_COLUMNS.len() as i64) {
            return Ok(());
        }
        let add: Vec<String> = HEALTH_COLUMNS
            .iter()
            .map(|(c, ty)| format!("ADD COLUMN IF NOT EXISTS {c} {ty}"))
            .collect();
        let ddl = format!("ALTER TABLE {runs} {}", add.join(", "));
        let begin = "BEGIN; SET LOCAL lock_timeout = '10s';
                     SELECT pg_advisory_xact_lock(hashtext('xtask-migrate tracking tables'))";
        self.in_transaction(begin, |s| s.batch(&ddl)).map_err(|e| {
            let message = format!(
                "adding the health columns to the tracking table {runs} failed: {}",
                e.message
            );
            Error::new(ErrorKind::Database, message).with_retry(e.retry)
        })
    }
}

impl Store for PgStore {
    fn backend(&mut self) -> &mut dyn Backend {
        &mut self.backend
    }

    fn reconnect(&mut self) -> StoreResult<()> {
        self.prepared.clear();
        self.backend.reconnect()?;
        self.batch(SESSION)
    }

    fn ensure_tables(&mut self) -> StoreResult<()> {
        let n = &self.names;
        let schema = match &n.schema {
            Some(s) => format!("CREATE SCHEMA IF NOT EXISTS {};", quote_ident(s)),
            None => String::new(),
        };
        let log_index = quote_ident(&format!("{}batch_log_run", n.prefix));
        let diffs_index = quote_ident(&format!("{}diffs_run", n.prefix));
        let current = quote_ident(&format!("{}runs_current", n.prefix));
        let states = RunState::ALL
            .iter()
            .map(|s| format!("'{}'", s.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        // Two workers starting at once would both try to create the tables, and CREATE TABLE
        // IF NOT EXISTS is not safe against that race: serialize on an advisory lock.
        let ddl = format!(
            "SELECT pg_advisory_xact_lock(hashtext('xtask-migrate tracking tables'));
{schema}
CREATE TABLE IF NOT EXISTS {runs} (
    id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    migration text NOT NULL,
    checksum text NOT NULL,
    state text NOT NULL CHECK (state IN ({states})),
    table_name text NOT NULL,
    key_column text NOT NULL,
    key_kind text NOT NULL CHECK (key_kind IN ('integer', 'text')),
    settings jsonb NOT NULL,
    rows_estimated bigint,
    rows_done bigint NOT NULL DEFAULT 0,
    batches_done bigint NOT NULL DEFAULT 0,
    pace_batch_size bigint,
    pace_pause_ms bigint,
    pace_max_rows_per_second bigint,
    last_error text,
    created_at timestamptz NOT NULL DEFAULT now(),
    started_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    superseded_at timestamptz,
    superseded_by text,
    restart_of bigint,
    pace_health text,
    throttled_since timestamptz,
    throttle_reason text
);
CREATE UNIQUE INDEX IF NOT EXISTS {current} ON {runs} (migration) WHERE superseded_at IS NULL;
CREATE TABLE IF NOT EXISTS {ranges} (
    id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    run_id bigint NOT NULL REFERENCES {runs} (id) ON DELETE CASCADE,
    ord integer NOT NULL,
    lower_key text NOT NULL,
    upper_key text,
    cursor_key text NOT NULL,
    done boolean NOT NULL DEFAULT false,
    claimed_by text,
    claim_host text,
    claim_pid bigint,
    claim_start numeric,
    heartbeat timestamptz,
    rows_done bigint NOT NULL DEFAULT 0,
    batches bigint NOT NULL DEFAULT 0,
    UNIQUE (run_id, ord)
);
CREATE TABLE IF NOT EXISTS {log} (
    range_id bigint NOT NULL REFERENCES {ranges} (id) ON DELETE CASCADE,
    run_id bigint NOT NULL,
    lower_key text NOT NULL,
    upper_key text NOT NULL,
    rows_changed bigint NOT NULL,
    worker text NOT NULL,
    held_ms double precision NOT NULL,
    committed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (range_id, lower_key)
);
CREATE INDEX IF NOT EXISTS {log_index} ON {log} (run_id, committed_at);
CREATE TABLE IF NOT EXISTS {diffs} (
    id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    run_id bigint NOT NULL REFERENCES {runs} (id) ON DELETE CASCADE,
    key_text text,
    category text NOT NULL,
    columns_json text NOT NULL,
    lower_key text NOT NULL,
    upper_key text NOT NULL,
    status text NOT NULL CHECK (status IN ('pending', 'confirmed', 'cleared')),
    worker text NOT NULL,
    found_at timestamptz NOT NULL DEFAULT now(),
    checked_at timestamptz
);
CREATE INDEX IF NOT EXISTS {diffs_index} ON {diffs} (run_id, id);",
            runs = n.runs(),
            ranges = n.ranges(),
            log = n.batch_log(),
            diffs = n.diffs(),
        );
        // Someone else's table of the same name would break the DDL in a confusing way.
        let catalog = self.catalog()?;
        match self.shape_of(&catalog, false)? {
            Shape::Previous => self.upgrade()?,
            // Everything there, as this version makes it (the common case: every command
            // after the first on a database): one query instead of the DDL's locks and checks.
            Shape::Current
                if self
                    .catalog_names()
                    .iter()
                    .all(|name| catalog.contains_key(name))
                    && catalog.get(&self.names.runs()).is_some_and(|runs| {
                        HEALTH_COLUMNS.iter().all(|(c, _)| runs.contains_key(*c))
                    }) =>
            {
                return Ok(());
            }
            _ => {}
        }
        // Tables made now number their runs afresh.
        self.kinds.clear();
        self.in_transaction("BEGIN", |s| s.batch(&ddl))?;
        self.verify_tables(true)?;
        self.add_health_columns()
    }

    fn tables_exist(&mut self) -> StoreResult<bool> {
        let rows = self.query("SELECT to_regclass($1) IS NOT NULL", &[&self.names.runs()])?;
        let exists = rows.first().is_some_and(|r| r.get(0));
        if exists && self.verify_tables(true)? == Shape::Previous {
            self.upgrade()?;
        }
        if exists {
            self.add_health_columns()?;
        }
        Ok(exists)
    }

    fn max_key(&mut self, table: &str, key: &str, kind: KeyKind) -> StoreResult<Option<KeyValue>> {
        let (k, t) = (quote_ident(key), quote_ident(table));
        let sql = format!("SELECT {k} FROM {t} WHERE {k} IS NOT NULL ORDER BY {k} DESC LIMIT 1");
        let rows = self.query(&sql, &[])?;
        match rows.first() {
            Some(row) => read_key(row, kind),
            None => Ok(None),
        }
    }

    fn estimate(
        &mut self,
        table: &str,
        key: &str,
        kind: KeyKind,
        histogram: bool,
    ) -> StoreResult<Estimate> {
        let mut estimate = Estimate::default();
        // The planner's own arithmetic: tuples per page from the last ANALYZE/VACUUM, times the
        // table's current size in pages (which pg_relation_size reads from the file system).
        let rows = self.query(
            "SELECT c.reltuples::float8, c.relpages::bigint,
                    pg_relation_size(c.oid) / current_setting('block_size')::bigint
             FROM pg_class AS c WHERE c.oid = to_regclass(quote_ident($1))",
            &[&table],
        )?;
        if let Some(r) = rows.first() {
            let (tuples, pages, now_pages): (f64, i64, i64) = (r.get(0), r.get(1), r.get(2));
            if tuples >= 0.0 {
                let rows = if pages > 0 {
                    tuples / pages as f64 * now_pages as f64
                } else {
                    tuples
                };
                estimate.rows = Some(rows.round().max(0.0) as u64);
                estimate.source = "pg_class.reltuples".into();
            }
        }
        if estimate.rows.is_none() {
            // Never analyzed: ask the planner, which estimates from the table's size.
            let sql = format!("EXPLAIN (FORMAT JSON) SELECT 1 FROM {}", quote_ident(table));
            let messages = self.backend.client().simple_query(&sql).map_err(db)?;
            for m in messages {
                if let SimpleQueryMessage::Row(row) = m
                    && let Some(text) = row.get(0)
                    && let Ok(json) = serde_json::from_str::<serde_json::Value>(text)
                    && let Some(rows) = json[0]["Plan"]["Plan Rows"].as_f64()
                {
                    estimate.rows = Some(rows.max(0.0) as u64);
                    estimate.source = "planner estimate (the table was never analyzed)".into();
                }
            }
        }
        // pg_stats is a view whose rewriting and planning cost a few milliseconds.
        let rows = if !histogram {
            Vec::new()
        } else {
            self.query(
                "SELECT h.v FROM pg_stats AS s
             JOIN pg_class AS c ON c.oid = to_regclass(quote_ident($1))
             JOIN pg_namespace AS n ON n.oid = c.relnamespace,
             unnest(s.histogram_bounds::text::text[]) WITH ORDINALITY AS h(v, i)
             WHERE s.schemaname = n.nspname AND s.tablename = c.relname AND s.attname = $2
             ORDER BY h.i",
                &[&table, &key],
            )?
        };
        for r in rows {
            if let Some(v) = r.get::<_, Option<String>>(0)
                && let Some(key) = KeyValue::from_stored(kind, &v)
            {
                estimate.histogram.push(key);
            }
        }
        let rows = self.query(
            "SELECT EXISTS (SELECT 1 FROM pg_index AS i
                 JOIN pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
                 WHERE i.indrelid = to_regclass(quote_ident($1)) AND a.attname = $2 AND i.indisvalid)",
            &[&table, &key],
        )?;
        estimate.key_indexed = rows.first().map(|r| r.get(0));
        Ok(estimate)
    }

    fn find_run(&mut self, migration: &str) -> StoreResult<Option<RunRow>> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM {} WHERE migration = $1 AND superseded_at IS NULL",
            self.names.runs()
        );
        let rows = self.query(&sql, &[&migration])?;
        rows.first().map(run_row).transpose()
    }

    fn runs(&mut self) -> StoreResult<Vec<RunRow>> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM {} ORDER BY id",
            self.names.runs()
        );
        let rows = self.query(&sql, &[])?;
        rows.iter().map(run_row).collect()
    }

    fn create_run(&mut self, run: &NewRun) -> StoreResult<RunRow> {
        // When another worker recorded it first, its ranges are the ones to work on.
        self.in_transaction("BEGIN", |s| s.insert_run(run, None))?;
        self.find_run(&run.migration)?
            .ok_or_else(|| corrupt("no run right after recording it"))
    }

    fn restart(&mut self, old: i64, by: &str, run: &NewRun) -> StoreResult<Option<RunRow>> {
        let ranges = self.names.ranges();
        let runs = self.names.runs();
        // A batch holds its range's row lock until it commits: locking every range of the old
        // run waits for its batches in flight, and a batch starting later sees the run
        // superseded in its compare-and-set and rolls back.
        let lock = format!("SELECT id FROM {ranges} WHERE run_id = $1 ORDER BY id FOR UPDATE");
        let supersede = format!(
            "UPDATE {runs} SET superseded_at = now(), superseded_by = $2, updated_at = now()
             WHERE id = $1 AND state IN ('cancelled', 'done') AND superseded_at IS NULL"
        );
        let id = self.transaction("BEGIN", |s| {
            s.query(&lock, &[&old])?;
            if s.execute(&supersede, &[&old, &by])? != 1 {
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
            "UPDATE {} SET state = $3, updated_at = now(),
                 last_error = CASE WHEN $4::text IS NOT NULL THEN $4::text WHEN $3 = 'running' THEN NULL ELSE last_error END,
                 started_at = CASE WHEN $3 = 'running' THEN coalesce(started_at, now()) ELSE started_at END,
                 finished_at = CASE WHEN $3 IN ('done', 'cancelled', 'failed') THEN now() ELSE NULL END
             WHERE id = $1 AND state = $2",
            self.names.runs()
        );
        // The compare-and-set can lose to another session changing the state in between:
        // read again and decide again.
        for _ in 0..10 {
            let from = self.state_of(run_id)?;
            if from == to {
                return Ok(Transition::Unchanged);
            }
            if let Err(reason) = check_transition(from, to) {
                return Ok(Transition::Refused { from, reason });
            }
            let changed = self.execute(&sql, &[&run_id, &from.as_str(), &to.as_str(), &error])?;
            if changed == 1 {
                return Ok(Transition::Changed { from });
            }
        }
        Err(Error::new(
            ErrorKind::Database,
            "the run's state keeps changing under us",
        )
        .with_retry(Retry::Backoff))
    }

    fn finish(&mut self, run_id: i64) -> StoreResult<bool> {
        let sql = format!(
            "UPDATE {runs} AS r SET state = 'done', finished_at = now(), updated_at = now(),
                 rows_done = (SELECT coalesce(sum(rows_done), 0) FROM {ranges} WHERE run_id = r.id),
                 batches_done = (SELECT coalesce(sum(batches), 0) FROM {ranges} WHERE run_id = r.id)
             WHERE r.id = $1 AND r.state = 'running'
               AND NOT EXISTS (SELECT 1 FROM {ranges} WHERE run_id = r.id AND NOT done)",
            runs = self.names.runs(),
            ranges = self.names.ranges()
        );
        Ok(self.execute(&sql, &[&run_id])? == 1)
    }

    fn set_pace(&mut self, run_id: i64, change: &PaceChange) -> StoreResult<Pace> {
        let runs = self.names.runs();
        let sql = format!(
            "SELECT pace_batch_size, pace_pause_ms, pace_max_rows_per_second FROM {runs} WHERE id = $1 FOR UPDATE"
        );
        let update = format!(
            "UPDATE {runs} SET pace_batch_size = $2, pace_pause_ms = $3, pace_max_rows_per_second = $4, updated_at = now() WHERE id = $1"
        );
        self.in_transaction("BEGIN", |s| {
            let rows = s.query(&sql, &[&run_id])?;
            let r = rows
                .first()
                .ok_or_else(|| corrupt(&format!("no run {run_id}")))?;
            let mut pace = Pace {
                batch_size: u64_of(r.get(0)),
                pause: u64_of(r.get(1)).map(Duration::from_millis),
                max_rows_per_second: u64_of(r.get(2)),
            };
            pace.apply(change);
            s.execute(
                &update,
                &[
                    &run_id,
                    &pace.batch_size.map(i64_of),
                    &pace.pause.map(|p| i64_of(p.as_millis() as u64)),
                    &pace.max_rows_per_second.map(i64_of),
                ],
            )?;
            Ok(pace)
        })
    }

    fn set_health_pace(
        &mut self,
        run_id: i64,
        change: &HealthPaceChange,
    ) -> StoreResult<HealthPace> {
        let runs = self.names.runs();
        let read = format!("SELECT pace_health FROM {runs} WHERE id = $1 FOR UPDATE");
        let update =
            format!("UPDATE {runs} SET pace_health = $2, updated_at = now() WHERE id = $1");
        self.in_transaction("BEGIN", |s| {
            let rows = s.query(&read, &[&run_id])?;
            let r = rows
                .first()
                .ok_or_else(|| corrupt(&format!("no run {run_id}")))?;
            let mut pace = HealthPace::from_stored(r.get(0));
            pace.apply(change);
            s.execute(&update, &[&run_id, &pace.to_stored()])?;
            Ok(pace)
        })
    }

    fn set_throttle(&mut self, run_id: i64, reason: Option<&str>) -> StoreResult<()> {
        let sql = format!(
            "UPDATE {} SET throttle_reason = $2::text,
                 throttled_since = CASE WHEN $2::text IS NULL THEN NULL ELSE coalesce(throttled_since, now()) END
             WHERE id = $1",
            self.names.runs()
        );
        self.execute(&sql, &[&run_id, &reason]).map(|_| ())
    }

    fn control(&mut self, run_id: i64) -> StoreResult<Control> {
        let sql = format!(
            "SELECT r.state, r.pace_batch_size, r.pace_pause_ms, r.pace_max_rows_per_second,
                    g.workers, g.rows_done, g.ranges_done, g.ranges, r.pace_health
             FROM {runs} AS r, LATERAL (
                 SELECT count(DISTINCT claimed_by) FILTER (WHERE NOT done AND claimed_by IS NOT NULL) AS workers,
                        coalesce(sum(rows_done), 0)::bigint AS rows_done,
                        count(*) FILTER (WHERE done) AS ranges_done,
                        count(*) AS ranges
                 FROM {ranges} WHERE run_id = r.id) AS g
             WHERE r.id = $1",
            runs = self.names.runs(),
            ranges = self.names.ranges()
        );
        let rows = self.query(&sql, &[&run_id])?;
        let r = rows
            .first()
            .ok_or_else(|| corrupt(&format!("no run {run_id}")))?;
        let state: String = r.get(0);
        Ok(Control {
            state: RunState::parse(&state).ok_or_else(|| corrupt(&format!("a state `{state}`")))?,
            pace: Pace {
                batch_size: u64_of(r.get(1)),
                pause: u64_of(r.get(2)).map(Duration::from_millis),
                max_rows_per_second: u64_of(r.get(3)),
            },
            workers: r.get::<_, i64>(4).max(0) as u64,
            rows_done: r.get::<_, i64>(5).max(0) as u64,
            ranges_done: r.get::<_, i64>(6).max(0) as u64,
            ranges: r.get::<_, i64>(7).max(0) as u64,
            health: HealthPace::from_stored(r.get(8)),
        })
    }

    fn ranges(&mut self, run_id: i64) -> StoreResult<Vec<RangeRow>> {
        let kind = self.kind_of(run_id)?;
        let sql = format!(
            "SELECT {RANGE_COLUMNS} FROM {} WHERE run_id = $1 ORDER BY ord",
            self.names.ranges()
        );
        let rows = self.query(&sql, &[&run_id])?;
        rows.iter().map(|r| range_row(r, kind)).collect()
    }

    fn recent(&mut self, run_id: i64, window: Duration) -> StoreResult<Recent> {
        // `committed_at` is the batch transaction's now(): when the batch started.
        let sql = format!(
            "SELECT coalesce(sum(rows_changed) FILTER (WHERE committed_at > now() - make_interval(secs => $2)), 0)::bigint,
                    extract(epoch FROM now() - min(committed_at) FILTER (WHERE committed_at > now() - make_interval(secs => $2)))::float8,
                    coalesce(max(held_ms), 0)::float8
             FROM {} WHERE run_id = $1",
            self.names.batch_log()
        );
        let rows = self.query(&sql, &[&run_id, &window.as_secs_f64()])?;
        let r = rows.first().ok_or_else(|| corrupt("no batch log"))?;
        Ok(Recent {
            rows: r.get::<_, i64>(0).max(0) as u64,
            span: r
                .get::<_, Option<f64>>(1)
                .map(|s| Duration::from_secs_f64(s.clamp(0.0, window.as_secs_f64()))),
            longest: Duration::from_secs_f64(r.get::<_, f64>(2).max(0.0) / 1000.0),
        })
    }

    fn claim(
        &mut self,
        run_id: i64,
        worker: &str,
        stale: Duration,
    ) -> StoreResult<Option<RangeRow>> {
        let ranges = self.names.ranges();
        let kind = self.kind_of(run_id)?;
        // This worker's own claim first (after a reconnect it must not strand it), then
        // unclaimed ranges in key order, then ranges whose claim is dead: its session is
        // gone from pg_stat_activity, or its heartbeat is older than `stale`. SKIP LOCKED
        // passes over a range another worker is claiming (or batching) right now.
        let sql = format!(
            "UPDATE {ranges} SET claimed_by = $2, claim_host = $4, heartbeat = now(),
                 claim_pid = pg_backend_pid(),
                 claim_start = (SELECT extract(epoch FROM backend_start) FROM pg_stat_get_activity(pg_backend_pid()))
             WHERE id = (
                 SELECT g.id FROM {ranges} AS g
                 WHERE g.run_id = $1 AND NOT g.done
                   AND (g.claimed_by IS NULL OR g.claimed_by = $2
                        OR g.heartbeat < now() - make_interval(secs => $3)
                        OR NOT EXISTS (SELECT 1 FROM pg_stat_get_activity(g.claim_pid::integer) AS a
                                       WHERE a.pid = g.claim_pid AND extract(epoch FROM a.backend_start) = g.claim_start))
                 ORDER BY g.claimed_by IS NOT DISTINCT FROM $2 DESC, g.claimed_by IS NOT NULL, g.ord
                 LIMIT 1
                 FOR UPDATE SKIP LOCKED)
             RETURNING {RANGE_COLUMNS}"
        );
        let host = crate::backfill::run::host::hostname();
        let rows = self.query(&sql, &[&run_id, &worker, &stale.as_secs_f64(), &host])?;
        rows.first().map(|r| range_row(r, kind)).transpose()
    }

    fn heartbeat(&mut self, run_id: i64, worker: &str) -> StoreResult<()> {
        // Also re-asserts the claim's session after a reconnect.
        let sql = format!(
            "UPDATE {} SET heartbeat = now(), claim_pid = pg_backend_pid(),
                 claim_start = (SELECT extract(epoch FROM backend_start) FROM pg_stat_get_activity(pg_backend_pid()))
             WHERE run_id = $1 AND claimed_by = $2 AND NOT done",
            self.names.ranges()
        );
        self.execute(&sql, &[&run_id, &worker]).map(|_| ())
    }

    fn release(&mut self, run_id: i64, worker: &str) -> StoreResult<()> {
        let sql = format!(
            "UPDATE {} SET claimed_by = NULL, claim_pid = NULL, claim_start = NULL, claim_host = NULL
             WHERE run_id = $1 AND claimed_by = $2 AND NOT done",
            self.names.ranges()
        );
        self.execute(&sql, &[&run_id, &worker]).map(|_| ())
    }

    fn run_batch(&mut self, request: &BatchRequest<'_>) -> StoreResult<BatchOutcome> {
        self.batch_transaction(request, "BEGIN;", None, |s, upper| {
            let key_type = param_type(request.kind);
            let stmt = s
                .prepare_typed(request.sql, &[key_type.clone(), key_type])
                .map_err(|e| {
                    e.with_kind(ErrorKind::Statement)
                        .context(format!("keys ({}, {upper}]", request.range.cursor))
                })?;
            let params = stmt.params();
            if params.len() != 2 {
                return Err(Error::new(
                    ErrorKind::Statement,
                    format!(
                        "the batch statement has {} parameters, expected 2 (:lower and :upper)",
                        params.len()
                    ),
                ));
            }
            let lo = key_param(&request.range.cursor, &params[0])?;
            let hi = key_param(upper, &params[1])?;
            s.backend
                .client()
                .execute(&stmt, &[&*lo, &*hi])
                .map_err(|e| {
                    err(e, ErrorKind::Statement)
                        .context(format!("keys ({}, {upper}]", request.range.cursor))
                })
        })
    }

    fn verify_batch(
        &mut self,
        request: &BatchRequest<'_>,
        check: &mut CheckFn<'_>,
    ) -> StoreResult<BatchOutcome> {
        let insert = format!(
            "INSERT INTO {} (run_id, key_text, category, columns_json, lower_key, upper_key, status, worker)
             VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7)",
            self.names.diffs()
        );
        // One snapshot for every read of the batch: the expected and the actual rows of the same
        // moment, when both come from this database.
        let begin = "BEGIN ISOLATION LEVEL REPEATABLE READ;";
        self.batch_transaction(request, begin, past_end(request.kind), |s, upper| {
            let checked = check(&mut s.backend, &request.range.cursor, upper)
                .map_err(|e| e.context(format!("keys ({}, {upper}]", request.range.cursor)))?;
            for diff in &checked.found {
                let columns = serde_json::to_string(&diff.columns).unwrap_or_default();
                s.execute(
                    &insert,
                    &[
                        &request.run_id,
                        &diff.key,
                        &diff.category,
                        &columns,
                        &diff.lower.to_stored(),
                        &diff.upper.to_stored(),
                        &request.worker,
                    ],
                )?;
            }
            Ok(checked.rows)
        })
    }

    fn diffs(&mut self, run_id: i64, status: Option<DiffStatus>) -> StoreResult<Vec<DiffRow>> {
        let kind = self.kind_of(run_id)?;
        let sql = format!(
            r#"SELECT id, key_text, category, columns_json, lower_key, upper_key, status, worker,
                      to_char(found_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
               FROM {} WHERE run_id = $1 AND ($2::text IS NULL OR status = $2) ORDER BY id"#,
            self.names.diffs()
        );
        let status = status.map(DiffStatus::as_str);
        let rows = self.query(&sql, &[&run_id, &status])?;
        rows.iter()
            .map(|r| {
                let status: String = r.get(6);
                Ok(DiffRow {
                    id: r.get(0),
                    diff: NewDiff {
                        key: r.get(1),
                        category: r.get(2),
                        columns: serde_json::from_str(r.get::<_, &str>(3))
                            .map_err(|_| corrupt("a difference whose columns are not a list"))?,
                        lower: key_of(kind, r.get(4))?,
                        upper: key_of(kind, r.get(5))?,
                    },
                    status: DiffStatus::parse(&status)
                        .ok_or_else(|| corrupt(&format!("a difference status `{status}`")))?,
                    worker: r.get(7),
                    found_at: r.get(8),
                })
            })
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
            "UPDATE {} SET status = $2, category = $3, columns_json = $4, checked_at = now() WHERE id = $1",
            self.names.diffs()
        );
        let columns = serde_json::to_string(columns).unwrap_or_default();
        self.execute(&sql, &[&id, &status.as_str(), &category, &columns])
            .map(|_| ())
    }
}
