//! `backfill verify`: dual reads. A data migration's `-- @expected` query says what the rows of a
//! key range should be (computed from the source of truth, possibly on another database) and its
//! `-- @actual` query what they are; the verification walks the key range batch by batch, reads
//! both, and reports every key whose rows differ, by category (see [`compare`]).
//!
//! It is a run of the batch engine ([`crate::backfill::run::worker::execute_job`], kind
//! [`JobKind::Verify`]): the same claims, cursor compare-and-set, control (`status`, `pause`,
//! `resume`, `cancel`, `pace`, with the run named `V{n}__{name}:verify`), pacing, retries and
//! resumption as `backfill run`. Only the batch differs ([`VerifyWork`]): instead of a statement,
//! the batch's transaction (REPEATABLE READ on PostgreSQL: one snapshot for both sides) runs the
//! [`narrow::Checker`] on `(cursor, upper]` and records the differences it found, `pending`, in
//! the tracking table `{prefix}diffs`, with the cursor's move. Nothing is written to the data.
//!
//! A difference counts only once it survives a re-read: between batches, each pending one is read
//! again after `recheck_delay` (a write that raced the batch's reads has committed by then), at
//! most `recheck_limit` re-reads per window ([`recheck::RateLimit`]); it is then `confirmed` or
//! `cleared`. Kill switch: once `max_mismatches` differences are confirmed, or their share of the
//! rows compared passes `max_mismatch_rate`, the run stops (marked failed with the reason); the
//! differences found stay recorded, and verifying again resumes it.
//!
//! Output: keys and column names only. Values are the rows' own (personal data): they are never
//! stored, and shown only with `show_values`, for differences this process re-read.

pub mod compare;
pub mod narrow;
pub mod recheck;
pub mod report;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use crate::backfill::db::postgres::PgBackend;
use crate::backfill::db::sqlite::SqliteBackend;
use crate::backfill::db::target::Target;
use crate::backfill::db::{Backend, KeyKind};
use crate::backfill::error::{Error, ErrorKind, Result, Retry};
use crate::backfill::migration::DataMigration;
use crate::backfill::run::health::Monitor;
use crate::backfill::run::pacing::{backoff, sleep};
use crate::backfill::run::plan::Settings;
use crate::backfill::run::tracking::{
    self, BatchOutcome, BatchRequest, DiffStatus, NewDiff, RangeCheck, Store, TrackingNames,
};
use crate::backfill::run::worker::{self, BatchWork, JobKind, RunOptions, RunReport};
use crate::sql::Dialect;
use compare::Difference;
use narrow::{Checker, Cost, Sides};
use recheck::RateLimit;
pub use report::VerifyReport;

/// How a verification runs, beyond the batch engine's settings.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// How long after a difference was found it is re-read.
    pub recheck_delay: Duration,
    /// At most this many re-reads per this window.
    pub recheck_limit: (u32, Duration),
    /// Stop once this many differences are confirmed.
    pub max_mismatches: Option<u64>,
    /// Stop once confirmed differences pass this share of the rows compared (after at least
    /// [`MIN_ROWS_FOR_RATE`] rows).
    pub max_mismatch_rate: Option<f64>,
    /// Ranges of at most this many rows are compared row by row.
    pub leaf_rows: u64,
    /// Keep the values of the differences re-read here, for `--show-values`.
    pub keep_values: bool,
}

impl Default for VerifyOptions {
    fn default() -> VerifyOptions {
        VerifyOptions {
            recheck_delay: Duration::from_millis(250),
            recheck_limit: (600, Duration::from_secs(60)),
            max_mismatches: None,
            max_mismatch_rate: None,
            leaf_rows: narrow::LEAF_ROWS,
            keep_values: false,
        }
    }
}

/// The error rate is judged only after this many rows: the first difference in the first rows
/// says little about the rate.
pub const MIN_ROWS_FOR_RATE: u64 = 1000;

/// How often the run's confirmed differences (every worker's) are read for the kill switch.
const CONFIRMED_EVERY: Duration = Duration::from_secs(2);

/// Values kept for `--show-values`: enough to look at, bounded whatever the table holds.
const KEPT_VALUES: usize = 1000;

/// Differences found in one range, waiting for their re-read.
struct Pending {
    due: Instant,
    lower: crate::backfill::db::KeyValue,
    upper: crate::backfill::db::KeyValue,
    /// Recorded differences: id and key.
    diffs: Vec<(i64, Option<String>)>,
}

/// What the verification did, beyond the engine's report.
#[derive(Debug, Clone, Default)]
pub struct Activity {
    /// Re-reads made (one range each).
    pub rechecks: u64,
    /// Time spent waiting for the re-read rate limit.
    pub rate_limited: Duration,
    /// Time spent re-reading.
    pub rechecking: Duration,
    /// Time spent at the end waiting for the last differences' re-read delay.
    pub delayed: Duration,
    pub cost: Cost,
    /// Why the kill switch stopped the run.
    pub stopped: Option<String>,
    /// Values of differences this process re-read, by difference id.
    pub values: HashMap<i64, Difference>,
}

/// A verification's batches: the checker in the batch transaction, re-reads between batches.
pub struct VerifyWork {
    checker: Checker,
    /// The `-- @expected` side's database, when it is not the target.
    against: Option<Box<dyn Backend>>,
    dialect: Dialect,
    options: VerifyOptions,
    rate: RateLimit,
    queue: VecDeque<Pending>,
    queued: HashSet<i64>,
    /// Whether the pending differences recorded before this process started were loaded.
    loaded: bool,
    /// Confirmed differences of the run (every worker's), as last read and counted since.
    confirmed: u64,
    /// When the run's confirmed differences were last read.
    confirmed_read: Option<Instant>,
    pub activity: Activity,
}

impl VerifyWork {
    /// The work of verifying `migration` (which must have a verification) on a database of
    /// `dialect`, whose walked key is of `kind`; `against`: the expected side's database.
    pub fn new(
        migration: &DataMigration,
        dialect: Dialect,
        kind: KeyKind,
        against: Option<Box<dyn Backend>>,
        options: VerifyOptions,
    ) -> Result<VerifyWork> {
        let verify = migration
            .verify
            .as_ref()
            .ok_or_else(|| no_verification(migration))?;
        let expected_dialect = against.as_ref().map_or(dialect, |a| a.dialect());
        Ok(VerifyWork {
            checker: Checker {
                expected_sql: verify.expected.sql(expected_dialect).to_string(),
                actual_sql: verify.actual.sql(dialect).to_string(),
                ordered: verify.ordered,
                table: migration.table.value.clone(),
                key: migration.key.value.clone(),
                kind,
                leaf: options.leaf_rows.max(1),
                cost: Cost::default(),
            },
            against,
            dialect,
            rate: RateLimit::new(options.recheck_limit.0, options.recheck_limit.1),
            options,
            queue: VecDeque::new(),
            queued: HashSet::new(),
            loaded: false,
            confirmed: 0,
            confirmed_read: None,
            activity: Activity::default(),
        })
    }

    /// Queues the run's pending differences not queued yet, due `delay` from now (those an
    /// earlier process left are due at once).
    fn load_pending(&mut self, store: &mut dyn Store, run_id: i64, delay: Duration) -> Result<()> {
        let due = Instant::now() + delay;
        for row in store.diffs(run_id, Some(DiffStatus::Pending))? {
            if !self.queued.insert(row.id) {
                continue;
            }
            let (lower, upper) = (row.diff.lower, row.diff.upper);
            match self
                .queue
                .iter_mut()
                .find(|p| p.lower == lower && p.upper == upper)
            {
                Some(p) => p.diffs.push((row.id, row.diff.key)),
                None => self.queue.push_back(Pending {
                    due,
                    lower,
                    upper,
                    diffs: vec![(row.id, row.diff.key)],
                }),
            }
        }
        Ok(())
    }

    /// Re-reads the due ranges the rate limit allows (in one snapshot); what is left queued.
    fn recheck_due(&mut self, store: &mut dyn Store, run_id: i64) -> Result<Queue> {
        if !self.loaded {
            self.loaded = true;
            self.load_pending(store, run_id, Duration::ZERO)?;
        }
        // Other workers confirm differences too: read the run's count now and then.
        if self
            .confirmed_read
            .is_none_or(|at| at.elapsed() >= CONFIRMED_EVERY)
        {
            self.confirmed = store.diffs(run_id, Some(DiffStatus::Confirmed))?.len() as u64;
            self.confirmed_read = Some(Instant::now());
        }
        let mut due = Vec::new();
        let mut limited = None;
        while let Some(next) = self.queue.front() {
            let now = Instant::now();
            if next.due > now {
                break;
            }
            if let Err(wait) = self.rate.take(now) {
                limited = Some(wait);
                break;
            }
            due.extend(self.queue.pop_front());
        }
        if !due.is_empty() {
            self.recheck(store, &due)?;
        }
        Ok(match (limited, self.queue.front()) {
            (Some(wait), _) => Queue::RateLimited(wait),
            (None, Some(p)) => Queue::Delayed(p.due.saturating_duration_since(Instant::now())),
            (None, None) => Queue::Empty,
        })
    }

    /// Re-reads ranges, in one snapshot of the target, and settles their differences in the
    /// same transaction.
    fn recheck(&mut self, store: &mut dyn Store, due: &[Pending]) -> Result<()> {
        let started = Instant::now();
        let result = self.recheck_all(store, due);
        self.activity.rechecking += started.elapsed();
        result
    }

    fn recheck_all(&mut self, store: &mut dyn Store, due: &[Pending]) -> Result<()> {
        self.activity.rechecks += due.len() as u64;
        let begin = match self.dialect {
            Dialect::Postgres => "BEGIN ISOLATION LEVEL REPEATABLE READ",
            Dialect::Sqlite => "BEGIN",
        };
        store.backend().execute(begin)?;
        match self.recheck_in(store, due) {
            Ok(()) => store.backend().execute("COMMIT"),
            Err(e) => {
                let _ = store.backend().execute("ROLLBACK");
                Err(e)
            }
        }
    }

    fn recheck_in(&mut self, store: &mut dyn Store, due: &[Pending]) -> Result<()> {
        for pending in due {
            let now = read_with(&mut self.against, store.backend(), |sides| {
                self.checker.recheck(sides, &pending.lower, &pending.upper)
            })?;
            for (id, key) in &pending.diffs {
                match now.iter().find(|d| d.key == *key) {
                    Some(diff) => {
                        store.settle_diff(
                            *id,
                            DiffStatus::Confirmed,
                            diff.category.as_str(),
                            &diff.columns,
                        )?;
                        self.confirmed += 1;
                        if self.options.keep_values && self.activity.values.len() < KEPT_VALUES {
                            self.activity.values.insert(*id, diff.clone());
                        }
                    }
                    None => store.settle_diff(*id, DiffStatus::Cleared, "", &[])?,
                }
            }
        }
        Ok(())
    }

    /// The kill switch: why the run must stop, if it must.
    fn kill_switch(&self, store: &mut dyn Store, run_id: i64) -> Result<Option<String>> {
        if let Some(max) = self.options.max_mismatches
            && self.confirmed >= max
        {
            return Ok(Some(format!(
                "kill switch: {} confirmed (--max-mismatches {max})",
                crate::backfill::display::count(self.confirmed, "difference", "differences")
            )));
        }
        if let Some(rate) = self.options.max_mismatch_rate
            && self.confirmed > 0
        {
            let rows = store.control(run_id)?.rows_done;
            if rows >= MIN_ROWS_FOR_RATE && self.confirmed as f64 / rows as f64 > rate {
                return Ok(Some(format!(
                    "kill switch: {} confirmed in {} rows compared, more than {}% (--max-mismatch-rate {rate})",
                    crate::backfill::display::count(self.confirmed, "difference", "differences"),
                    crate::backfill::display::thousands(rows),
                    rate * 100.0
                )));
            }
        }
        Ok(None)
    }

    fn stop(&mut self, reason: String) -> Option<String> {
        self.activity.stopped = Some(reason.clone());
        Some(reason)
    }
}

/// Runs `f` on the two sides: the expected side on `against` when there is one (in one
/// REPEATABLE READ, read-only snapshot of it), else both on `target`.
fn read_with<T>(
    against: &mut Option<Box<dyn Backend>>,
    target: &mut dyn Backend,
    f: impl FnOnce(&mut Sides<'_>) -> Result<T>,
) -> Result<T> {
    match against {
        None => f(&mut Sides::One(target)),
        Some(other) => {
            let (begin, end) = match other.dialect() {
                Dialect::Postgres => ("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", "COMMIT"),
                Dialect::Sqlite => ("BEGIN", "COMMIT"),
            };
            other.execute(begin)?;
            let result = f(&mut Sides::Two {
                expected: &mut **other,
                actual: target,
            });
            match result {
                Ok(v) => {
                    other.execute(end)?;
                    Ok(v)
                }
                Err(e) => {
                    let _ = other.execute("ROLLBACK");
                    Err(e)
                }
            }
        }
    }
}

impl BatchWork for VerifyWork {
    fn batch(&mut self, store: &mut dyn Store, request: &BatchRequest<'_>) -> Result<BatchOutcome> {
        let (checker, against) = (&mut self.checker, &mut self.against);
        let mut found_any = false;
        let size = request.size;
        let outcome = store.verify_batch(request, &mut |backend, lower, upper| {
            let (rows, found) = read_with(against, backend, |sides| {
                checker.check(sides, lower, upper, size)
            })?;
            found_any |= !found.is_empty();
            Ok(RangeCheck {
                rows,
                found: found
                    .into_iter()
                    .map(|f| NewDiff {
                        key: f.diff.key,
                        category: f.diff.category.as_str().to_string(),
                        columns: f.diff.columns,
                        lower: f.lower,
                        upper: f.upper,
                    })
                    .collect(),
            })
        });
        self.activity.cost = self.checker.cost;
        let outcome = match outcome {
            Err(e) if e.retry == Retry::Never => {
                // The other database's session may be in a failed transaction: end it, so a
                // retry or the next command starts clean.
                if let Some(other) = &mut self.against {
                    let _ = other.execute("ROLLBACK");
                }
                return Err(e);
            }
            other => other?,
        };
        if found_any && matches!(outcome, BatchOutcome::Applied { .. }) {
            let delay = self.options.recheck_delay;
            self.load_pending(store, request.run_id, delay)?;
        }
        Ok(outcome)
    }

    fn between(&mut self, store: &mut dyn Store, run_id: i64) -> Result<Option<String>> {
        self.recheck_due(store, run_id)?;
        Ok(match self.kill_switch(store, run_id)? {
            Some(reason) => self.stop(reason),
            None => None,
        })
    }

    /// Waits for every pending difference to be re-read (their delay, the rate limit), then
    /// looks at the kill switch one last time.
    fn before_done(
        &mut self,
        store: &mut dyn Store,
        run_id: i64,
        stop: &AtomicBool,
    ) -> Result<Option<String>> {
        self.load_pending(store, run_id, self.options.recheck_delay)?;
        loop {
            let queue = self.recheck_due(store, run_id)?;
            if let Some(reason) = self.kill_switch(store, run_id)? {
                return Ok(self.stop(reason));
            }
            if stop.load(std::sync::atomic::Ordering::SeqCst) {
                return Ok(None);
            }
            match queue {
                Queue::Empty => return Ok(None),
                Queue::Delayed(wait) => {
                    let started = Instant::now();
                    sleep(wait.max(Duration::from_millis(10)), stop);
                    self.activity.delayed += started.elapsed();
                }
                Queue::RateLimited(wait) => {
                    let started = Instant::now();
                    sleep(wait.max(Duration::from_millis(10)), stop);
                    self.activity.rate_limited += started.elapsed();
                }
            }
        }
    }
}

/// What is left of the re-read queue.
enum Queue {
    Empty,
    /// The next re-read is due in this long.
    Delayed(Duration),
    /// The next re-read is due, but the rate limit's window is used up for this long.
    RateLimited(Duration),
}

fn no_verification(migration: &DataMigration) -> Error {
    Error::file(
        ErrorKind::Format,
        &migration.path,
        format!(
            "{} has no verification: add an `-- @expected` query (what the rows of `(:lower, :upper]` should be) and an `-- @actual` query (what they are), each returning the key and the compared columns (see data-migrations/README.md)",
            migration.id()
        ),
    )
}

/// Connects to the expected side's database (`--against-url`), of the same kind as the target:
/// digests compare within one kind of database.
pub fn connect_against(target: &Target, url: &str) -> anyhow::Result<Box<dyn Backend>> {
    let against = Target::parse(url).map_err(anyhow::Error::msg)?;
    if against.dialect() != target.dialect() {
        anyhow::bail!(
            "--against-url is {}, the target {}: both sides of a verification are the same kind of database",
            against.info().describe(),
            target.info().describe()
        );
    }
    Ok(match &against {
        Target::Postgres { url } => {
            let mut backend = PgBackend::connect(url)?;
            backend.execute("SET application_name = 'xtask-migrate verify'")?;
            Box::new(backend)
        }
        Target::Sqlite { path } => {
            if !path.is_file() {
                anyhow::bail!(
                    "--against-url: no such SQLite database file {}",
                    path.display()
                );
            }
            Box::new(SqliteBackend::open(path)?)
        }
    })
}

/// The settings a verification runs with: the data migration's batch size and pause with the
/// plan's defaults, one key range.
pub fn settings(migration: &DataMigration) -> Settings {
    Settings {
        ranges: 1,
        ..Settings::from_migration(migration)
    }
}

/// What a verification run did: the engine's report and the verification's own.
pub struct Verified {
    pub run: RunReport,
    pub activity: Activity,
}

/// Verifies `migration` on `target` as one worker (`against`: the expected side's database).
#[allow(clippy::too_many_arguments)]
pub fn verify(
    target: &Target,
    tracking: &TrackingNames,
    migration: &DataMigration,
    settings: &Settings,
    against: Option<Box<dyn Backend>>,
    options: VerifyOptions,
    run_options: RunOptions<'_>,
    monitor: &mut Monitor,
) -> Result<(Verified, Box<dyn Store>)> {
    if migration.verify.is_none() {
        return Err(no_verification(migration));
    }
    // Connecting is retried like a run's: a verification started while the server restarts
    // waits for it.
    let mut connects = 0u32;
    let mut store = loop {
        match tracking::open(target, tracking) {
            Ok(store) => break store,
            Err(e) if e.retry != Retry::Never && connects < settings.max_retries => {
                connects += 1;
                sleep(backoff(connects), run_options.stop);
            }
            Err(e) => return Err(e),
        }
    };
    let kind = worker::key_kind(store.backend(), migration)?;
    worker::apply_limits(store.as_mut(), settings)?;
    let verified = verify_on(
        store.as_mut(),
        migration,
        settings,
        kind,
        against,
        options,
        run_options,
        monitor,
    )?;
    Ok((verified, store))
}

/// [`verify`] on a store the caller opened (the sample stage's database).
#[allow(clippy::too_many_arguments)]
pub fn verify_on(
    store: &mut dyn Store,
    migration: &DataMigration,
    settings: &Settings,
    kind: KeyKind,
    against: Option<Box<dyn Backend>>,
    options: VerifyOptions,
    run_options: RunOptions<'_>,
    monitor: &mut Monitor,
) -> Result<Verified> {
    let dialect = store.backend().dialect();
    let mut work = VerifyWork::new(migration, dialect, kind, against, options)?;
    let run = worker::execute_job(
        store,
        settings,
        migration,
        run_options,
        JobKind::Verify,
        &mut work,
        monitor,
    )?;
    work.activity.cost = work.checker.cost;
    Ok(Verified {
        run,
        activity: work.activity,
    })
}
