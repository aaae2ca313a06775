//! Tracking tables of production runs (`backfill run`), their state machine, and the storage
//! trait the runner and the control commands talk to.
//!
//! Three tables live in the target database, created if missing, named from a configurable
//! prefix (and, on PostgreSQL, schema):
//! - `{prefix}runs`: one row per data-migration run: name, checksum, state, settings (JSON),
//!   key bounds, estimates and counts, timestamps, last error, and the live-control columns
//!   (pace overrides). `state` is also the control column: `pause`, `resume` and `cancel` move it
//!   through [`check_transition`], with a compare-and-set on the old state, and workers read it
//!   between batches. One column rather than a "desired" and an "actual" state: there is one
//!   source of truth, and a worker that sees `paused` simply waits.
//!   A data migration has at most one current run per database (a unique index on `migration`
//!   where `superseded_at` is null). [`Store::restart`] starts a new run after a cancelled one:
//!   the cancelled run's row stays, with `superseded_at` and `superseded_by` set, and the new
//!   row's `restart_of` names it.
//! - `{prefix}ranges`: the run's key range split into ranges `(lower, upper]` (the last one open
//!   above), each with its cursor (every key up to it is done), its claim (worker, session,
//!   heartbeat) and its counts. Workers claim ranges with `FOR UPDATE SKIP LOCKED`.
//! - `{prefix}batch_log`: one row per committed batch, written in the batch's own transaction,
//!   unique per `(range, lower key)`: a second safety net under the cursor's compare-and-set,
//!   and the record of how long each batch held its transaction open.
//! - `{prefix}diffs`, for verification runs (`backfill verify`, run name `V{n}__{name}:verify`):
//!   one row per difference a batch found (key, category, column names, the range it was found
//!   in), written in the batch's transaction with the cursor's move, then settled by a re-read
//!   (`confirmed` or `cleared`). Never a value: the rows are the database's own, and stay there.
//!
//! Exactly once: a batch is one transaction that locks its range row, checks the cursor it
//! started from, runs the batch statement on `(cursor, upper]`, and moves the cursor with
//! `UPDATE ... WHERE id = $id AND cursor = $old AND claimed_by = $me`; zero rows means another
//! worker got there first and the whole transaction rolls back. A killed process loses only its
//! open transaction, and the next one starts from the cursor the database holds. The
//! compare-and-set also requires the run not to be superseded: once a restart committed, no
//! batch of the old run commits any more.
//!
//! Tables created by the previous version (one run per data migration: `migration` unique, no
//! `superseded_at`, `superseded_by`, `restart_of`) are upgraded in place the first time a command
//! of this version opens them: the three columns are added and the unique constraint becomes the
//! partial unique index, in one transaction, keeping every row.

pub mod postgres;
pub mod sqlite;

use crate::backfill::db::postgres::PgBackend;
use crate::backfill::db::sqlite::SqliteBackend;
use crate::backfill::db::target::Target;
use crate::backfill::error::ErrorKind;

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::backfill::db::{Backend, BatchLimits, KeyKind, KeyValue, quote_ident};
use crate::backfill::error::Error;
pub use crate::backfill::error::Retry;

/// The default prefix of the tracking tables' names.
pub const DEFAULT_PREFIX: &str = "xtask_backfill_";

/// PostgreSQL truncates longer identifiers silently; two tables could then share a name.
const MAX_IDENTIFIER: usize = 63;

/// Where the tracking tables are: an optional schema (PostgreSQL) and a name prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackingNames {
    pub schema: Option<String>,
    pub prefix: String,
}

impl Default for TrackingNames {
    fn default() -> TrackingNames {
        TrackingNames {
            schema: None,
            prefix: DEFAULT_PREFIX.to_string(),
        }
    }
}

impl TrackingNames {
    /// Validated names: the longest table name must fit PostgreSQL's identifier limit.
    pub fn new(schema: Option<String>, prefix: Option<String>) -> Result<TrackingNames, String> {
        let prefix = prefix.unwrap_or_else(|| DEFAULT_PREFIX.to_string());
        if prefix.len() + "batch_log".len() > MAX_IDENTIFIER {
            return Err(format!(
                "tracking table prefix `{prefix}` is too long: `{prefix}batch_log` must fit in {MAX_IDENTIFIER} bytes"
            ));
        }
        if prefix.contains('\0') {
            return Err("tracking table prefix contains a NUL character".into());
        }
        let schema = schema.filter(|s| !s.is_empty());
        if let Some(s) = &schema
            && (s.len() > MAX_IDENTIFIER || s.contains('\0'))
        {
            return Err(format!("tracking schema `{s}` is not a valid name"));
        }
        Ok(TrackingNames { schema, prefix })
    }

    fn qualified(&self, table: &str) -> String {
        let name = quote_ident(&format!("{}{table}", self.prefix));
        match &self.schema {
            Some(schema) => format!("{}.{name}", quote_ident(schema)),
            None => name,
        }
    }

    pub fn runs(&self) -> String {
        self.qualified("runs")
    }

    pub fn ranges(&self) -> String {
        self.qualified("ranges")
    }

    pub fn batch_log(&self) -> String {
        self.qualified("batch_log")
    }

    pub fn diffs(&self) -> String {
        self.qualified("diffs")
    }

    /// Names of the tables as people read them (unquoted).
    pub fn describe(&self) -> String {
        let schema = self
            .schema
            .as_deref()
            .map(|s| format!("{s}."))
            .unwrap_or_default();
        format!("{schema}{}{{runs,ranges,batch_log,diffs}}", self.prefix)
    }
}

/// The state of a run. Lower-case names are what the tracking table stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    /// Recorded, no batch yet.
    Pending,
    Running,
    /// Workers wait between batches until it is resumed.
    Paused,
    Done,
    /// Stopped for good by `backfill cancel`; what ran stays applied. A restart
    /// ([`Store::restart`]) may replace the run with a new one.
    Cancelled,
    /// A batch failed with an error that retrying does not cure; `last_error` says which.
    Failed,
}

impl RunState {
    pub const ALL: [RunState; 6] = [
        RunState::Pending,
        RunState::Running,
        RunState::Paused,
        RunState::Done,
        RunState::Cancelled,
        RunState::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Pending => "pending",
            RunState::Running => "running",
            RunState::Paused => "paused",
            RunState::Done => "done",
            RunState::Cancelled => "cancelled",
            RunState::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<RunState> {
        RunState::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// No transition leaves a terminal state.
    pub fn is_terminal(self) -> bool {
        matches!(self, RunState::Done | RunState::Cancelled)
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The one place that says which state changes are allowed:
///
/// ```text
/// pending ──► running ◄──► paused
///    │           │           │
///    │           ├──► done   │
///    │           ├──► failed ┼──► running (a new `backfill run` after the cause is fixed)
///    └───────────┴───────────┴──► cancelled
/// ```
///
/// `failed` is not terminal: the failure may come from outside the data migration (a row the
/// batch cannot handle, fixed by hand; a full disk), and the checksum check still guarantees the
/// same file resumes. `done` and `cancelled` are final: starting over after a cancel is a new run
/// ([`Store::restart`]), not a transition. Staying in the same state is not a transition (callers
/// report it as "already ...").
pub fn check_transition(from: RunState, to: RunState) -> Result<(), String> {
    use RunState::*;
    let allowed = match from {
        Pending => matches!(to, Running | Paused | Cancelled),
        Running => matches!(to, Paused | Done | Cancelled | Failed),
        Paused => matches!(to, Running | Cancelled),
        Failed => matches!(to, Running | Cancelled),
        Done | Cancelled => false,
    };
    if allowed {
        Ok(())
    } else if from == to {
        Err(format!("the run is already {from}"))
    } else if from.is_terminal() {
        Err(format!("the run is {from}; nothing can change it any more"))
    } else {
        Err(format!("a {from} run cannot become {to}"))
    }
}

/// Live pace overrides, set by `backfill pace` in the run's row. `None` keeps the plan's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Pace {
    /// A fixed batch size: adaptation stops while it is set.
    pub batch_size: Option<u64>,
    pub pause: Option<Duration>,
    pub max_rows_per_second: Option<u64>,
}

/// A change to [`Pace`]: each field `None` = leave it, `Some(None)` = back to the plan's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PaceChange {
    pub batch_size: Option<Option<u64>>,
    pub pause: Option<Option<Duration>>,
    pub max_rows_per_second: Option<Option<u64>>,
}

impl Pace {
    pub fn apply(&mut self, change: &PaceChange) {
        if let Some(v) = change.batch_size {
            self.batch_size = v;
        }
        if let Some(v) = change.pause {
            self.pause = v;
        }
        if let Some(v) = change.max_rows_per_second {
            self.max_rows_per_second = v;
        }
    }
}

/// Live overrides of the plan's health limits (`backfill pace`), stored as JSON in the run's row:
/// `None` keeps the plan's value; `Some(0)` (or `Some(false)`) switches the check off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HealthPace {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_replication_lag_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_replication_lag_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_archive_lag_segments: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_during_vacuum: Option<bool>,
}

/// A change to [`HealthPace`]: each field `None` = leave it, `Some(None)` = back to the plan's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HealthPaceChange {
    pub max_replication_lag_ms: Option<Option<u64>>,
    pub max_replication_lag_bytes: Option<Option<u64>>,
    pub max_archive_lag_segments: Option<Option<u64>>,
    pub pause_during_vacuum: Option<Option<bool>>,
}

impl HealthPace {
    /// The overrides a run's row holds (none when the column is empty or unreadable).
    pub fn from_stored(text: Option<&str>) -> HealthPace {
        text.and_then(|t| serde_json::from_str(t).ok())
            .unwrap_or_default()
    }

    /// What the run's row stores: nothing when there is no override.
    pub fn to_stored(&self) -> Option<String> {
        (*self != HealthPace::default()).then(|| serde_json::to_string(self).unwrap_or_default())
    }

    pub fn apply(&mut self, change: &HealthPaceChange) {
        if let Some(v) = change.max_replication_lag_ms {
            self.max_replication_lag_ms = v;
        }
        if let Some(v) = change.max_replication_lag_bytes {
            self.max_replication_lag_bytes = v;
        }
        if let Some(v) = change.max_archive_lag_segments {
            self.max_archive_lag_segments = v;
        }
        if let Some(v) = change.pause_during_vacuum {
            self.pause_during_vacuum = v;
        }
    }
}

/// What a new run records about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRun {
    pub migration: String,
    pub checksum: String,
    pub table: String,
    pub key: String,
    pub key_kind: KeyKind,
    /// The plan's settings, as JSON (for people reading the table).
    pub settings: String,
    pub rows_estimated: Option<u64>,
    /// Bounds of the ranges: `ranges[i] = (lower, upper)`; the last upper is `None` (open).
    pub ranges: Vec<(KeyValue, Option<KeyValue>)>,
}

/// A run as its row records it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRow {
    pub id: i64,
    pub migration: String,
    pub checksum: String,
    pub state: RunState,
    pub table: String,
    pub key: String,
    pub key_kind: KeyKind,
    pub settings: String,
    pub rows_estimated: Option<u64>,
    pub pace: Pace,
    pub last_error: Option<String>,
    /// Timestamps in RFC 3339, UTC (`2026-11-21T10:00:00.123Z`), on both databases.
    pub created_at: String,
    pub updated_at: String,
    /// When the run first became `running`.
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// Set when a restart replaced this run: when, and who (`user@host`).
    pub superseded_at: Option<String>,
    pub superseded_by: Option<String>,
    /// The cancelled run this one restarted.
    pub restart_of: Option<i64>,
    /// `backfill pace`'s overrides of the plan's health limits.
    pub health_pace: HealthPace,
    /// Since when a worker waits for the database's health, and why (`None`: it does not).
    pub throttled_since: Option<String>,
    pub throttle_reason: Option<String>,
}

impl RunRow {
    /// Whether this is the data migration's current run (not replaced by a restart).
    pub fn is_current(&self) -> bool {
        self.superseded_at.is_none()
    }
}

/// What a worker reads between batches.
#[derive(Debug, Clone, PartialEq)]
pub struct Control {
    pub state: RunState,
    pub pace: Pace,
    /// Workers holding a claim on a range that is not done (at least 1 while we hold one).
    pub workers: u64,
    pub rows_done: u64,
    pub ranges_done: u64,
    pub ranges: u64,
    /// `backfill pace`'s overrides of the plan's health limits.
    pub health: HealthPace,
}

/// A key range of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct RangeRow {
    pub id: i64,
    pub ord: i64,
    pub lower: KeyValue,
    /// `None`: open above (the last range, which takes rows inserted past the old maximum).
    pub upper: Option<KeyValue>,
    /// Every key up to and including it is done (the lower bound before the first batch).
    pub cursor: KeyValue,
    pub done: bool,
    pub claimed_by: Option<String>,
    /// Seconds since the claim's last heartbeat.
    pub heartbeat_age: Option<f64>,
    /// Whether the session (PostgreSQL) or process (SQLite, same host) that made the claim still
    /// exists, as far as the database can tell; a claim from another host counts as alive and
    /// only its heartbeat says otherwise.
    pub claim_alive: bool,
    pub rows_done: u64,
    pub batches: u64,
}

/// The batches a run committed lately, for its rate.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Recent {
    /// Rows the batches that started in the window changed.
    pub rows: u64,
    /// From the start of the first of those batches until now, at most the window; `None` when
    /// no batch started in the window.
    pub span: Option<Duration>,
    /// The longest any batch of the run held its transaction.
    pub longest: Duration,
}

/// How a batch ended when nothing failed.
#[derive(Debug, Clone, PartialEq)]
pub enum BatchOutcome {
    /// Committed: the cursor moved to `upper`.
    Applied {
        upper: KeyValue,
        rows: u64,
        /// Server-side time from the transaction's start to its last statement.
        held: Duration,
    },
    /// No key is left in the range: it is marked done.
    RangeDone,
    /// The cursor or the claim was not ours any more: rolled back, nothing applied.
    Lost,
}

/// How a transaction's work ended when nothing failed: commit it, or roll it back and still
/// report a result (a compare-and-set that lost is an outcome, not an error).
#[derive(Debug, Clone, PartialEq)]
pub enum Txn<T> {
    Commit(T),
    Rollback(T),
}

/// One batch to run: the range, where its cursor is, how many rows.
#[derive(Debug, Clone)]
pub struct BatchRequest<'a> {
    pub run_id: i64,
    pub range: &'a RangeRow,
    pub table: &'a str,
    pub key: &'a str,
    pub kind: KeyKind,
    pub sql: &'a str,
    pub size: u64,
    pub worker: &'a str,
    pub limits: BatchLimits,
}

/// Where a verification's difference stands: found by a batch, then re-read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiffStatus {
    /// Found; not re-read yet.
    Pending,
    /// Still there when re-read: it counts.
    Confirmed,
    /// Gone when re-read: a write raced the batch's reads.
    Cleared,
}

impl DiffStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DiffStatus::Pending => "pending",
            DiffStatus::Confirmed => "confirmed",
            DiffStatus::Cleared => "cleared",
        }
    }

    pub fn parse(text: &str) -> Option<DiffStatus> {
        [
            DiffStatus::Pending,
            DiffStatus::Confirmed,
            DiffStatus::Cleared,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// A difference a verification batch found, to record with the batch.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDiff {
    /// The key's text (`None`: the query returned a NULL key).
    pub key: Option<String>,
    /// `missing`, `extra`, `value`, `length` or `order`.
    pub category: String,
    /// For `value`: the compared columns whose values differ.
    pub columns: Vec<String>,
    /// The key range it was found in: what a re-read reads again.
    pub lower: KeyValue,
    pub upper: KeyValue,
}

/// A recorded difference.
#[derive(Debug, Clone, PartialEq)]
pub struct DiffRow {
    pub id: i64,
    pub diff: NewDiff,
    pub status: DiffStatus,
    /// The worker whose batch found it.
    pub worker: String,
    pub found_at: String,
}

/// What a verification batch's reads found on `(lower, upper]`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RangeCheck {
    /// Rows compared (the larger side's count).
    pub rows: u64,
    pub found: Vec<NewDiff>,
}

/// The reads of a verification batch: run on the store's connection, inside the batch's
/// transaction, for `(lower, upper]`.
pub type CheckFn<'a> =
    dyn FnMut(&mut dyn Backend, &KeyValue, &KeyValue) -> StoreResult<RangeCheck> + 'a;

/// Where a verification's last, open range ends. Its batches stop at the walked table's last key,
/// but the other side may hold keys past it (rows missing from the table at the end): one more
/// batch covers them, up to the largest `bigint` for integer keys. Text keys have no largest
/// value: a verification of a text key compares the keys up to the walked table's last one.
pub(crate) fn past_end(kind: KeyKind) -> Option<&'static KeyValue> {
    static MAX: KeyValue = KeyValue::Int(i64::MAX);
    match kind {
        KeyKind::Integer => Some(&MAX),
        KeyKind::Text => None,
    }
}

/// Errors of the tracking stores are the library's [`Error`], classified for retries where the
/// database's error is read.
pub type StoreResult<T> = std::result::Result<T, Error>;

/// The result of asking for a state change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    Changed {
        from: RunState,
    },
    /// Already in the asked state.
    Unchanged,
    Refused {
        from: RunState,
        reason: String,
    },
}

/// Key statistics read from the catalog, never from the table's rows.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Estimate {
    pub rows: Option<u64>,
    /// Where `rows` comes from (`pg_class.reltuples`, the planner, `sqlite_stat1`).
    pub source: String,
    /// The key's histogram (ascending, as the database orders it), when statistics have one
    /// and it was asked for.
    pub histogram: Vec<KeyValue>,
    /// Whether an index leads with the key (without one, every batch scans the table).
    pub key_indexed: Option<bool>,
}

/// The tracking tables of one database, and the batch transaction. PostgreSQL and SQLite
/// implement it over their [`Backend`].
pub trait Store {
    fn backend(&mut self) -> &mut dyn Backend;

    /// Reconnects after a lost connection (prepared statements are prepared again).
    fn reconnect(&mut self) -> StoreResult<()>;

    /// Creates the tracking tables if they do not exist.
    fn ensure_tables(&mut self) -> StoreResult<()>;

    /// Whether the tracking tables exist (read-only commands do not create them). Tables of the
    /// previous version are upgraded first, like [`Store::ensure_tables`] does.
    fn tables_exist(&mut self) -> StoreResult<bool>;

    /// The largest key of `table` (through its index: `ORDER BY key DESC LIMIT 1`).
    fn max_key(&mut self, table: &str, key: &str, kind: KeyKind) -> StoreResult<Option<KeyValue>>;

    /// Row estimate, index of the key and, with `histogram` (only splitting into ranges needs
    /// it, and reading it is the costliest part), the key's histogram, from the catalog.
    fn estimate(
        &mut self,
        table: &str,
        key: &str,
        kind: KeyKind,
        histogram: bool,
    ) -> StoreResult<Estimate>;

    /// The data migration's current run (one a restart has not replaced).
    fn find_run(&mut self, migration: &str) -> StoreResult<Option<RunRow>>;

    /// Every run, superseded ones included, in the order they were recorded.
    fn runs(&mut self) -> StoreResult<Vec<RunRow>>;

    /// Records a new run (state `pending`) and its ranges in one transaction. When another
    /// process recorded the same migration first, returns that run instead.
    fn create_run(&mut self, run: &NewRun) -> StoreResult<RunRow>;

    /// Replaces the cancelled run `old` with a new run (state `pending`) and its ranges, in one
    /// transaction: `old` is marked superseded (now, by `by`) with a compare-and-set on it being
    /// the current run and cancelled (or done: a verification starts over after a done one; the
    /// batch engine never restarts a done data migration), after the batches of it still in
    /// flight have ended. `None` when the compare-and-set lost (another process restarted it
    /// first, or it is not cancelled or done): nothing changed.
    fn restart(&mut self, old: i64, by: &str, run: &NewRun) -> StoreResult<Option<RunRow>>;

    /// Moves the run to `to` when [`check_transition`] allows it, with a compare-and-set on the
    /// state it read; `error` is recorded as `last_error` (a successful resume clears it).
    fn transition(
        &mut self,
        run_id: i64,
        to: RunState,
        error: Option<&str>,
    ) -> StoreResult<Transition>;

    /// Moves a running run whose every range is done to `done`; false when a range is not.
    fn finish(&mut self, run_id: i64) -> StoreResult<bool>;

    fn set_pace(&mut self, run_id: i64, change: &PaceChange) -> StoreResult<Pace>;

    /// Changes the run's overrides of the plan's health limits; the overrides now.
    fn set_health_pace(
        &mut self,
        run_id: i64,
        change: &HealthPaceChange,
    ) -> StoreResult<HealthPace>;

    /// Records that a worker waits for the database's health, and why (`Some`), or no longer
    /// (`None`). `throttled_since` keeps the time the wait began while the reason changes.
    fn set_throttle(&mut self, run_id: i64, reason: Option<&str>) -> StoreResult<()>;

    fn control(&mut self, run_id: i64) -> StoreResult<Control>;

    fn ranges(&mut self, run_id: i64) -> StoreResult<Vec<RangeRow>>;

    /// Rows the run's batches changed in the last `window` and over how long, and how long its
    /// longest batch transaction was held (for rates and the benchmark).
    fn recent(&mut self, run_id: i64, window: Duration) -> StoreResult<Recent>;

    /// Claims a range that is not done and that nobody live holds (unclaimed, claimed by a dead
    /// session or process, or with a heartbeat older than `stale`); `None` when there is none.
    fn claim(
        &mut self,
        run_id: i64,
        worker: &str,
        stale: Duration,
    ) -> StoreResult<Option<RangeRow>>;

    /// Refreshes the heartbeat of the worker's claims (while it waits).
    fn heartbeat(&mut self, run_id: i64, worker: &str) -> StoreResult<()>;

    /// Gives up the worker's claims on ranges that are not done (a clean stop).
    fn release(&mut self, run_id: i64, worker: &str) -> StoreResult<()>;

    /// One batch, one transaction: see the module documentation.
    fn run_batch(&mut self, request: &BatchRequest<'_>) -> StoreResult<BatchOutcome>;

    /// One batch of a verification: the same transaction as [`Store::run_batch`] (claim, cursor
    /// compare-and-set, log), in which `check` reads `(cursor, upper]` instead of a statement
    /// changing it, and the differences it found are recorded (`pending`). On PostgreSQL the
    /// transaction is REPEATABLE READ, so every read of the batch sees one snapshot.
    fn verify_batch(
        &mut self,
        request: &BatchRequest<'_>,
        check: &mut CheckFn<'_>,
    ) -> StoreResult<BatchOutcome>;

    /// The differences recorded for the run, in the order they were found (`status`: only those).
    fn diffs(&mut self, run_id: i64, status: Option<DiffStatus>) -> StoreResult<Vec<DiffRow>>;

    /// Records what a re-read found for difference `id`: `confirmed` (with what it found then)
    /// or `cleared`.
    fn settle_diff(
        &mut self,
        id: i64,
        status: DiffStatus,
        category: &str,
        columns: &[String],
    ) -> StoreResult<()>;
}

/// Connects to `target` and returns its tracking store.
pub fn open(target: &Target, names: &TrackingNames) -> StoreResult<Box<dyn Store>> {
    match target {
        Target::Postgres { url } => {
            let backend = PgBackend::connect(url)?;
            let mut store = postgres::PgStore::new(backend, names.clone());
            store.init_session()?;
            Ok(Box::new(store))
        }
        Target::Sqlite { path } => {
            if !path.is_file() {
                return Err(Error::file(
                    ErrorKind::Database,
                    path,
                    "no such SQLite database file",
                ));
            }
            let backend = SqliteBackend::open(path)?;
            Ok(Box::new(sqlite::SqliteStore::new(backend, names.clone())?))
        }
    }
}

/// Splits `(below_min, +inf)` into at most `count` ranges at bounds picked evenly from
/// `histogram` (ascending in the database's order), or, for integer keys without one, at
/// evenly spaced values between the smallest and largest key. Bounds are never compared in
/// Rust except integers: a histogram is already in the column's own order, and only equal
/// neighbours are dropped.
pub fn split(
    below_min: &KeyValue,
    max: &KeyValue,
    histogram: &[KeyValue],
    count: u64,
) -> Vec<(KeyValue, Option<KeyValue>)> {
    let count = count.max(1) as usize;
    let mut bounds: Vec<KeyValue> = Vec::new();
    if count > 1 {
        if histogram.len() >= 2 {
            // The histogram's first and last entries are the sampled extremes: pick inner ones.
            for i in 1..count {
                let at = i * (histogram.len() - 1) / count;
                let candidate = &histogram[at.min(histogram.len() - 1)];
                if bounds.last() != Some(candidate) && candidate != below_min {
                    bounds.push(candidate.clone());
                }
            }
        } else if let (KeyValue::Int(lo), KeyValue::Int(hi)) = (below_min, max) {
            let (lo, hi) = (i128::from(*lo), i128::from(*hi));
            let width = hi - lo;
            for i in 1..count as i128 {
                let bound = lo + width * i / count as i128;
                if let Ok(b) = i64::try_from(bound)
                    && bound > lo
                    && bound < hi
                    && bounds.last() != Some(&KeyValue::Int(b))
                {
                    bounds.push(KeyValue::Int(b));
                }
            }
        }
    }
    // Integer bounds must also increase past the lower bound; the histogram of a stale
    // analysis may hold values below today's minimum.
    if let KeyValue::Int(lo) = below_min {
        bounds.retain(|b| matches!(b, KeyValue::Int(v) if v > lo));
        bounds.dedup();
    }
    let mut ranges = Vec::with_capacity(bounds.len() + 1);
    let mut lower = below_min.clone();
    for bound in bounds {
        ranges.push((lower, Some(bound.clone())));
        lower = bound;
    }
    ranges.push((lower, None));
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_transition_is_checked() {
        use RunState::*;
        let allowed = [
            (Pending, Running),
            (Pending, Paused),
            (Pending, Cancelled),
            (Running, Paused),
            (Running, Done),
            (Running, Cancelled),
            (Running, Failed),
            (Paused, Running),
            (Paused, Cancelled),
            (Failed, Running),
            (Failed, Cancelled),
        ];
        for from in RunState::ALL {
            for to in RunState::ALL {
                let ok = check_transition(from, to).is_ok();
                assert_eq!(ok, allowed.contains(&(from, to)), "{from} -> {to}");
            }
        }
    }

    #[test]
    fn refusals_say_why() {
        use RunState::*;
        assert_eq!(
            check_transition(Paused, Paused).unwrap_err(),
            "the run is already paused"
        );
        assert_eq!(
            check_transition(Done, Running).unwrap_err(),
            "the run is done; nothing can change it any more"
        );
        assert_eq!(
            check_transition(Paused, Done).unwrap_err(),
            "a paused run cannot become done"
        );
        assert!(Done.is_terminal() && Cancelled.is_terminal() && !Failed.is_terminal());
    }

    #[test]
    fn states_round_trip_through_their_names() {
        for state in RunState::ALL {
            assert_eq!(RunState::parse(state.as_str()), Some(state));
        }
        assert_eq!(RunState::parse("Running"), None);
    }

    #[test]
    fn names_are_quoted_and_prefixed() {
        let names = TrackingNames::new(Some("ops".into()), Some("bf_".into())).unwrap();
        assert_eq!(names.runs(), "\"ops\".\"bf_runs\"");
        assert_eq!(names.batch_log(), "\"ops\".\"bf_batch_log\"");
        let names = TrackingNames::new(None, Some("we\"ird_".into())).unwrap();
        assert_eq!(names.ranges(), "\"we\"\"ird_ranges\"");
        assert_eq!(TrackingNames::default().runs(), "\"xtask_backfill_runs\"");
        let long = "x".repeat(60);
        assert!(TrackingNames::new(None, Some(long)).is_err());
        assert_eq!(
            TrackingNames::new(Some(String::new()), None)
                .unwrap()
                .schema,
            None
        );
    }

    #[test]
    fn pace_changes_apply_field_by_field() {
        let mut pace = Pace {
            batch_size: Some(10),
            pause: None,
            max_rows_per_second: Some(5),
        };
        pace.apply(&PaceChange {
            batch_size: Some(None),
            pause: Some(Some(Duration::from_millis(50))),
            max_rows_per_second: None,
        });
        assert_eq!(
            pace,
            Pace {
                batch_size: None,
                pause: Some(Duration::from_millis(50)),
                max_rows_per_second: Some(5)
            }
        );
    }

    fn ints(ranges: &[(KeyValue, Option<KeyValue>)]) -> Vec<(i64, Option<i64>)> {
        ranges
            .iter()
            .map(|(l, u)| {
                let int = |k: &KeyValue| match k {
                    KeyValue::Int(i) => *i,
                    KeyValue::Text(_) => panic!("text"),
                };
                (int(l), u.as_ref().map(int))
            })
            .collect()
    }

    #[test]
    fn integer_ranges_tile_the_key_space() {
        let r = split(&KeyValue::Int(0), &KeyValue::Int(100), &[], 4);
        assert_eq!(
            ints(&r),
            vec![(0, Some(25)), (25, Some(50)), (50, Some(75)), (75, None)]
        );
        // More ranges than keys: no empty or repeated bound.
        let r = split(&KeyValue::Int(0), &KeyValue::Int(2), &[], 8);
        assert_eq!(ints(&r), vec![(0, Some(1)), (1, None)]);
        let r = split(&KeyValue::Int(i64::MIN), &KeyValue::Int(i64::MAX), &[], 2);
        assert_eq!(ints(&r), vec![(i64::MIN, Some(-1)), (-1, None)]);
        assert_eq!(
            ints(&split(&KeyValue::Int(5), &KeyValue::Int(9), &[], 1)),
            vec![(5, None)]
        );
    }

    #[test]
    fn histogram_bounds_are_used_in_their_order() {
        let hist: Vec<KeyValue> = [1, 10, 10, 10, 50, 90, 100].map(KeyValue::Int).to_vec();
        let r = split(&KeyValue::Int(0), &KeyValue::Int(100), &hist, 3);
        assert_eq!(ints(&r), vec![(0, Some(10)), (10, Some(50)), (50, None)]);
        let text = |s: &str| KeyValue::Text(s.into());
        let hist = vec![text("a"), text("b"), text("B"), text("c"), text("d")];
        let r = split(&text(""), &text("d"), &hist, 2);
        // "b" then "B": the database's order, not Rust's.
        assert_eq!(r, vec![(text(""), Some(text("B"))), (text("B"), None)]);
    }
}
