//! The batch engine: one worker running a data migration's batches on a tracking store. Every
//! run of a data migration goes through [`execute`]: `backfill run` in production, `backfill
//! sample` on its throwaway database, one code path.
//!
//! One worker's loop, each step a method of [`Worker`]:
//! 1. [`Worker::control`]: read the run's control row (state, pace overrides, progress); wait
//!    while `paused`, stop on `cancelled`, stop after the current batch when asked to;
//! 2. [`Worker::range`]: hold a claimed key range (claim one when none: `FOR UPDATE SKIP
//!    LOCKED` on PostgreSQL), or finish the run when every range is done;
//! 3. [`Worker::batch`]: one batch through [`Store::run_batch`] (one transaction that moves the
//!    range's cursor with a compare-and-set), then [`Worker::applied`] adapts the batch size
//!    and paces, or [`Worker::failed`] decides how to retry.
//!
//! Errors are retried by their [`Retry`] class: a lost connection reconnects (the range's cursor
//! is then read back from the database, never assumed), lock timeouts, deadlocks and
//! serialization failures back off with exponential delays and jitter, a statement timeout
//! halves the batch. A batch that fails more than `max_retries` times in a row, or with an error
//! no retry cures, fails the run with the error recorded; running again resumes it.
//!
//! What a batch does is a [`BatchWork`]: the data migration's statement ([`Statement`], what
//! `execute` runs), or a verification's reads (`backfill verify` runs [`execute_job`] with its
//! own work, as a [`JobKind::Verify`] run named `V{n}__{name}:verify`). The loop, its control,
//! claims, retries, pacing and the batch transaction are the same for both.
//!
//! Invariants: the worker never decides that a batch ran; only a committed compare-and-set in
//! the database says so. It never prints: what it has to say goes to [`Progress`], and the
//! caller reports the [`RunReport`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::backfill::db::{Backend, BatchLimits, KeyKind, KeyValue};
use crate::backfill::display::short;
use crate::backfill::error::{Error, ErrorKind, Result, Retry};
use crate::backfill::migration::DataMigration;
use crate::backfill::run::health::Monitor;
use crate::backfill::run::pacing::{adapt, backoff, sleep, wait_after};
use crate::backfill::run::plan::Settings;
use crate::backfill::run::progress::Progress;
use crate::backfill::run::tracking::{
    BatchOutcome, BatchRequest, Control, NewRun, RangeRow, RunRow, RunState, Store, split,
};

/// What a worker does with each batch, and between batches.
pub trait BatchWork {
    /// Runs the batch `request` describes: one transaction of the store that moves the range's
    /// cursor with its compare-and-set.
    fn batch(&mut self, store: &mut dyn Store, request: &BatchRequest<'_>) -> Result<BatchOutcome>;

    /// Between batches of a running run, outside any transaction. `Some(reason)` stops the run:
    /// it is marked failed with the reason (running it again resumes it).
    fn between(&mut self, _store: &mut dyn Store, _run_id: i64) -> Result<Option<String>> {
        Ok(None)
    }

    /// Once every range is done, before the run is marked done by this worker, and again when
    /// this worker finds the run done: finish what is pending. `Some(reason)` stops the run as
    /// [`BatchWork::between`] does.
    fn before_done(
        &mut self,
        store: &mut dyn Store,
        run_id: i64,
        _stop: &AtomicBool,
    ) -> Result<Option<String>> {
        self.between(store, run_id)
    }
}

/// The data migration's batch statement: what `backfill run` and `backfill sample` execute.
pub struct Statement;

impl BatchWork for Statement {
    fn batch(&mut self, store: &mut dyn Store, request: &BatchRequest<'_>) -> Result<BatchOutcome> {
        store.run_batch(request)
    }
}

/// What a run of a data migration is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// Its batch statement, exactly once per row: the run is named like the data migration.
    Migration,
    /// Its verification (`-- @expected` against `-- @actual`), read-only: the run is named
    /// `V{n}__{name}:verify`, walks every key from the smallest possible one, and starts over
    /// once done or cancelled (a verification can run any number of times).
    Verify,
}

/// The suffix of a verification run's name.
pub const VERIFY_SUFFIX: &str = ":verify";

impl JobKind {
    /// The name of `migration`'s run of this kind in the tracking tables.
    pub fn run_name(self, migration: &DataMigration) -> String {
        match self {
            JobKind::Migration => migration.id(),
            JobKind::Verify => format!("{}{VERIFY_SUFFIX}", migration.id()),
        }
    }
}

/// How a worker runs.
pub struct RunOptions<'a> {
    /// Names this worker's claims (default `host:pid`).
    pub worker: String,
    pub progress: Progress,
    /// Stop after the current batch when set.
    pub stop: &'a AtomicBool,
    /// How often a waiting worker looks at the control row again.
    pub poll: Duration,
    /// Stop after this many batches of this worker (the rest is left for the next run).
    pub max_batches: Option<u64>,
    /// Start over after the cancelled run with this id: a new run goes through every row again.
    /// When another worker already restarted that run, this one joins the new run.
    pub restart: Option<i64>,
}

impl RunOptions<'_> {
    pub fn default_worker() -> String {
        format!(
            "{}:{}",
            crate::backfill::run::host::hostname(),
            std::process::id()
        )
    }
}

/// How a worker's run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finish {
    /// Every range is done (by this worker or others).
    Done,
    /// The run was already done when this worker started.
    AlreadyDone,
    Cancelled,
    /// Stopped after the current batch: by a signal, or after `max_batches`.
    Interrupted,
}

/// What one worker did.
#[derive(Debug, Clone, PartialEq)]
pub struct RunReport {
    pub finish: Finish,
    pub run_id: i64,
    pub migration: String,
    pub batches: u64,
    pub rows: u64,
    pub retries: u64,
    pub longest_hold: Duration,
    pub elapsed: Duration,
    /// Rows every worker of the run changed, from the tracking tables.
    pub run_rows: u64,
    /// The error the run had failed with, when this worker resumed it.
    pub resumed_failure: Option<String>,
    /// The cancelled run this worker replaced with the new run `run_id` (`RunOptions::restart`).
    pub restarted: Option<i64>,
    /// How long this worker waited for the database's health.
    pub throttled: Duration,
}

/// The key column of a data migration's table, checked against the database's catalog.
pub fn key_kind(backend: &mut dyn Backend, migration: &DataMigration) -> Result<KeyKind> {
    let (table, key) = (&migration.table.value, &migration.key.value);
    let Some(columns) = backend.columns(table)? else {
        return Err(migration.error_at(
            ErrorKind::Statement,
            migration.table.line,
            format!(
                "table `{table}` does not exist in the schema at version {} ({})",
                migration.requires.value,
                backend.describe()
            ),
        ));
    };
    let Some(column) = columns.iter().find(|c| &c.name == key) else {
        let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
        return Err(migration.error_at(
            ErrorKind::Statement,
            migration.key.line,
            format!(
                "table `{table}` has no column `{key}` (it has: {})",
                names.join(", ")
            ),
        ));
    };
    let Some(kind) = column.ty.key_kind() else {
        return Err(migration.error_at(
            ErrorKind::Statement,
            migration.key.line,
            format!(
                "key `{table}.{key}` is of type `{}`; batch keys must be integer or text",
                column.declared
            ),
        ));
    };
    if !column.not_null {
        let nulls = backend.count_null_keys(table, key)?;
        if nulls > 0 {
            return Err(migration.error_at(
                ErrorKind::Statement,
                migration.key.line,
                format!(
                    "{} of `{table}` {} a NULL `{key}`: no batch would ever reach them",
                    crate::backfill::display::count(nulls, "row", "rows"),
                    if nulls == 1 { "has" } else { "have" }
                ),
            ));
        }
    }
    Ok(kind)
}

/// A bound below `first`, the smallest key: the first range is `(below, ...]`.
fn below(first: &KeyValue, migration: &DataMigration) -> Result<KeyValue> {
    let err = |what: &str| {
        migration.error_at(
            ErrorKind::Statement,
            migration.key.line,
            format!("the smallest key is {what}, which no `key > :lower` bound can include"),
        )
    };
    match first {
        KeyValue::Int(i) => i
            .checked_sub(1)
            .map(KeyValue::Int)
            .ok_or_else(|| err("the smallest 64-bit integer")),
        KeyValue::Text(s) if s.is_empty() => Err(err("the empty string")),
        KeyValue::Text(_) => Ok(KeyValue::Text(String::new())),
    }
}

/// The run a new run of `migration` records: its key's type, bounds and estimate read from the
/// table now, and its ranges.
fn new_run(
    store: &mut dyn Store,
    settings: &Settings,
    migration: &DataMigration,
    job: JobKind,
) -> Result<NewRun> {
    let kind = key_kind(store.backend(), migration)?;
    let (table, key) = (&migration.table.value, &migration.key.value);
    let min = store.backend().min_key(table, key, kind)?;
    let max = store.max_key(table, key, kind)?;
    let estimate = store.estimate(table, key, kind, settings.ranges > 1)?;
    let mut ranges = match (min, max) {
        (Some(min), Some(max)) => {
            let lower = below(&min, migration)?;
            split(&lower, &max, &estimate.histogram, settings.ranges)
        }
        // An empty table: one open range, for rows that arrive while it runs.
        _ => vec![(
            match kind {
                KeyKind::Integer => KeyValue::Int(i64::MIN),
                KeyKind::Text => KeyValue::Text(String::new()),
            },
            None,
        )],
    };
    // A verification compares keys the walked table may not have (rows missing from it): its
    // first range starts below every key.
    if job == JobKind::Verify
        && let Some((lower @ KeyValue::Int(_), _)) = ranges.first_mut()
    {
        *lower = KeyValue::Int(i64::MIN);
    }
    let settings_json = serde_json::to_string(settings)
        .map_err(|e| Error::new(ErrorKind::Format, format!("the run's settings: {e}")))?;
    Ok(NewRun {
        migration: job.run_name(migration),
        checksum: migration.checksum.clone(),
        table: table.clone(),
        key: key.clone(),
        key_kind: kind,
        settings: settings_json,
        rows_estimated: estimate.rows,
        ranges,
    })
}

/// Finds or records the run of `migration`, refusing one recorded from another checksum. With
/// `restart`, replaces that cancelled run with a new one first; the second value is then the
/// replaced run's id.
fn prepare_run(
    store: &mut dyn Store,
    settings: &Settings,
    migration: &DataMigration,
    restart: Option<i64>,
    kind: JobKind,
) -> Result<(RunRow, Option<i64>)> {
    store.ensure_tables()?;
    let id = kind.run_name(migration);
    let current = store.find_run(&id)?;
    if kind == JobKind::Verify {
        return prepare_verification(store, settings, migration, current);
    }
    let Some(old) = restart else {
        if let Some(run) = current {
            refuse_other_version(&run, migration)?;
            return Ok((run, None));
        }
        let new = new_run(store, settings, migration, kind)?;
        let run = store.create_run(&new)?;
        refuse_other_version(&run, migration)?;
        return Ok((run, None));
    };
    let refuse = |message: String| {
        Err(Error::file(
            ErrorKind::Statement,
            &migration.path,
            format!("--restart {old}: {message}"),
        ))
    };
    let Some(run) = current else {
        return refuse(format!("no run of {id} is recorded on this database"));
    };
    // Another worker given the same command restarted it first: join the new run.
    if run.restart_of == Some(old) {
        refuse_other_version(&run, migration)?;
        return Ok((run, None));
    }
    if run.id != old {
        return refuse(format!(
            "run {old} is not the current run of {id} on this database; run {} is ({})",
            run.id, run.state
        ));
    }
    match run.state {
        RunState::Cancelled => {}
        RunState::Done => {
            return refuse(format!(
                "run {old} of {id} is done; a done run does not start over: to apply the batch statement again, write a new data migration"
            ));
        }
        state => {
            return refuse(format!(
                "run {old} of {id} is {state}; only a cancelled run starts over: cancel it first (`cargo xtask backfill cancel {id}`)"
            ));
        }
    }
    let new = new_run(store, settings, migration, kind)?;
    let by = crate::backfill::run::host::user_at_host();
    match store.restart(old, &by, &new)? {
        Some(run) => Ok((run, Some(old))),
        // Lost the compare-and-set: another worker restarted it in between (join that run), or
        // the run changed otherwise (say why).
        None => match store.find_run(&id)? {
            Some(run) if run.restart_of == Some(old) => {
                refuse_other_version(&run, migration)?;
                Ok((run, None))
            }
            _ => refuse(format!(
                "run {old} of {id} changed while restarting it; look at `cargo xtask backfill status`"
            )),
        },
    }
}

/// The verification run to work on: the current one while it is unfinished (of this version of
/// the file), else a new one (none yet, or the last one done or cancelled, which the new one
/// supersedes). The second value is the run it replaced.
fn prepare_verification(
    store: &mut dyn Store,
    settings: &Settings,
    migration: &DataMigration,
    current: Option<RunRow>,
) -> Result<(RunRow, Option<i64>)> {
    let Some(run) = current else {
        let new = new_run(store, settings, migration, JobKind::Verify)?;
        return Ok((store.create_run(&new)?, None));
    };
    if !run.state.is_terminal() {
        if run.checksum != migration.checksum {
            return Err(Error::file(
                ErrorKind::Format,
                &migration.path,
                format!(
                    "this database records an unfinished verification {} of another version of the file (run {}, {}, checksum {}, the file's is {}); cancel it (`cargo xtask backfill cancel {}`) and verify again",
                    run.migration,
                    run.id,
                    run.state,
                    short(&run.checksum),
                    short(&migration.checksum),
                    run.migration
                ),
            ));
        }
        return Ok((run, None));
    }
    let new = new_run(store, settings, migration, JobKind::Verify)?;
    let by = crate::backfill::run::host::user_at_host();
    match store.restart(run.id, &by, &new)? {
        Some(new) => Ok((new, Some(run.id))),
        // Another worker started the new verification first: join it.
        None => match store.find_run(&run.migration)? {
            Some(current) if current.restart_of == Some(run.id) => Ok((current, None)),
            _ => Err(Error::file(
                ErrorKind::Statement,
                &migration.path,
                format!(
                    "verification run {} changed while starting a new one; look at `cargo xtask backfill status`",
                    run.id
                ),
            )),
        },
    }
}

fn refuse_other_version(run: &RunRow, migration: &DataMigration) -> Result<()> {
    if run.checksum != migration.checksum {
        let way = if run.state == RunState::Cancelled {
            format!(
                "it was cancelled: to run this version instead, run the plan with `--restart {}` (it goes through every row again, re-applying the batch statement to the rows the cancelled run changed), or write a new data migration",
                run.id
            )
        } else {
            format!(
                "to run this version instead, cancel that run (`cargo xtask backfill cancel {}`) and run the plan with `--restart {}` (it goes through every row again, re-applying the batch statement to the rows already changed), or write a new data migration",
                run.migration, run.id
            )
        };
        return Err(Error::file(
            ErrorKind::Format,
            &migration.path,
            format!(
                "this database records a run of {} from another version of the file (run {}, checksum {}, the file's is {}); a data migration runs once, from one version; {way}",
                run.migration,
                run.id,
                short(&run.checksum),
                short(&migration.checksum)
            ),
        ));
    }
    Ok(())
}

/// Runs `migration` with `settings` on `store` as one worker, until the run is done, cancelled
/// or this worker is asked to stop. The store's connection already has the run's limits applied
/// by [`apply_limits`].
pub fn execute(
    store: &mut dyn Store,
    settings: &Settings,
    migration: &DataMigration,
    options: RunOptions<'_>,
) -> Result<RunReport> {
    execute_job(
        store,
        settings,
        migration,
        options,
        JobKind::Migration,
        &mut Statement,
        &mut Monitor::default(),
    )
}

/// [`execute`] for a run of `kind` whose batches are `work`'s, waiting for the database's
/// health as `monitor` sees it (the settings' limits, with `pace`'s overrides).
pub fn execute_job(
    store: &mut dyn Store,
    settings: &Settings,
    migration: &DataMigration,
    options: RunOptions<'_>,
    kind: JobKind,
    work: &mut dyn BatchWork,
    monitor: &mut Monitor,
) -> Result<RunReport> {
    let started = Instant::now();
    let limits = limits(settings);
    let (run, restarted) = prepare_run(store, settings, migration, options.restart, kind)?;
    let mut report = RunReport {
        finish: Finish::Done,
        run_id: run.id,
        migration: run.migration.clone(),
        batches: 0,
        rows: 0,
        retries: 0,
        longest_hold: Duration::ZERO,
        elapsed: Duration::ZERO,
        run_rows: 0,
        resumed_failure: None,
        restarted,
        throttled: Duration::ZERO,
    };
    match run.state {
        RunState::Done => {
            report.finish = Finish::AlreadyDone;
            report.run_rows = store.control(run.id)?.rows_done;
            return Ok(report);
        }
        RunState::Cancelled => {
            return Err(Error::file(
                ErrorKind::Statement,
                &migration.path,
                format!(
                    "run {} of {} was cancelled{}; a cancelled run does not start again: {}",
                    run.id,
                    run.migration,
                    run.finished_at
                        .as_deref()
                        .map(|t| format!(" at {t}"))
                        .unwrap_or_default(),
                    crate::backfill::run::control::restart_hint(run.id)
                ),
            ));
        }
        RunState::Pending | RunState::Failed => {
            if run.state == RunState::Failed {
                report.resumed_failure = Some(
                    run.last_error
                        .clone()
                        .unwrap_or_else(|| "(no error recorded)".into()),
                );
            }
            store.transition(run.id, RunState::Running, None)?;
        }
        RunState::Running | RunState::Paused => {}
    }
    let sql = match kind {
        JobKind::Migration => migration.batch.sql(store.backend().dialect()).to_string(),
        JobKind::Verify => String::new(),
    };
    let stop = options.stop;
    let mut worker = Worker {
        store,
        work,
        monitor,
        throttled: None,
        unknown_noted: 0,
        settings,
        migration,
        run_name: run.migration.clone(),
        sql,
        limits,
        run_id: run.id,
        kind: run.key_kind,
        name: options.worker,
        progress: options.progress,
        stop: options.stop,
        poll: options.poll,
        max_batches: options.max_batches,
        size: settings.clamp(settings.batch_size),
        claimed: None,
        attempt: 0,
        last_heartbeat: Instant::now(),
        control: None,
        report,
    };
    worker.progress.start(&run.migration, run.rows_estimated);
    let mut finish = worker.run();
    // Another worker marked the run done: what this one left pending is finished all the same.
    if matches!(finish, Ok(Finish::Done))
        && let Some(reason) = worker.work.before_done(worker.store, worker.run_id, stop)?
    {
        finish = worker.stop_for(reason);
    }
    let mut report = worker.finish(finish)?;
    report.elapsed = started.elapsed();
    Ok(report)
}

/// The per-statement limits of a run.
pub fn limits(settings: &Settings) -> BatchLimits {
    BatchLimits {
        lock_timeout: Some(Duration::from_millis(settings.lock_timeout_ms)),
        statement_timeout: Some(Duration::from_millis(settings.statement_timeout_ms)),
    }
}

/// Applies the run's limits to every statement of the store's connection, not only the batches.
pub fn apply_limits(store: &mut dyn Store, settings: &Settings) -> Result<()> {
    store.backend().apply_limits(&limits(settings))
}

/// How long a worker acts on the control row it read last before it reads it again. Batches of
/// production size take longer than this, so there it is read before every batch; a sample's
/// millisecond batches do not pay a read each. A pause or cancel takes effect within this, plus
/// the batch in flight.
const CONTROL_EVERY: Duration = Duration::from_millis(50);

/// What the next loop turn does.
enum Step {
    Continue,
    Stop(Finish),
}

/// One worker's state while it runs.
struct Worker<'a, 's> {
    store: &'s mut dyn Store,
    work: &'s mut dyn BatchWork,
    monitor: &'s mut Monitor,
    /// Why this worker waits for the database's health, as recorded in the run's row.
    throttled: Option<String>,
    /// The monitor's unreadable statistics already reported.
    unknown_noted: usize,
    settings: &'a Settings,
    migration: &'a DataMigration,
    /// The run's name in the tracking tables.
    run_name: String,
    sql: String,
    limits: BatchLimits,
    run_id: i64,
    kind: KeyKind,
    name: String,
    progress: Progress,
    stop: &'a AtomicBool,
    poll: Duration,
    max_batches: Option<u64>,
    /// The batch size when no pace override fixes it.
    size: u64,
    /// The range this worker holds, with its cursor as of the last committed batch.
    claimed: Option<RangeRow>,
    /// Failed attempts of the current batch.
    attempt: u32,
    last_heartbeat: Instant,
    /// The control row as last read while running, and when.
    control: Option<(Instant, Control)>,
    report: RunReport,
}

impl Worker<'_, '_> {
    fn run(&mut self) -> Result<Finish> {
        loop {
            if self.stop.load(Ordering::SeqCst)
                || self.max_batches.is_some_and(|m| self.report.batches >= m)
            {
                let _ = self.store.release(self.run_id, &self.name);
                return Ok(Finish::Interrupted);
            }
            let control = match self.control()? {
                (Step::Stop(finish), _) => return Ok(finish),
                (Step::Continue, None) => continue,
                (Step::Continue, Some(control)) => control,
            };
            if let Some(reason) = self.work.between(self.store, self.run_id)? {
                return self.stop_for(reason);
            }
            let Some(range) = self.range()? else {
                let run_id = self.run_id;
                if let Some(reason) = self.work.before_done(self.store, run_id, self.stop)? {
                    return self.stop_for(reason);
                }
                if self.retrying(|s| s.finish(run_id))? {
                    return Ok(Finish::Done);
                }
                // The ranges left are held by live workers: wait for them to finish, or for
                // their claims to go stale. The control row is read afresh next: the worker
                // that finishes the last range marks the run done.
                self.progress
                    .waiting("other workers hold the remaining ranges");
                self.control = None;
                sleep(self.poll, self.stop);
                continue;
            };
            // Claimed first: a worker waiting for the database's health holds its range (and
            // shows as live in `status`).
            if !self.throttle(&control)? {
                self.claimed = Some(range);
                continue;
            }
            self.batch(range, &control)?;
        }
    }

    /// Waits while the database's health says to (the plan's limits with `pace`'s overrides),
    /// recording why and since when in the run's row. `false`: stop or a state change came
    /// while waiting (the loop looks at the control row again).
    fn throttle(&mut self, control: &Control) -> Result<bool> {
        let mut limits = self.settings.health.with(&control.health);
        let started = Instant::now();
        let table = self.migration.table.value.clone();
        loop {
            let reason = self.monitor.check(self.store.backend(), &table, &limits)?;
            for note in self.monitor.unknown.iter().skip(self.unknown_noted) {
                self.progress
                    .note(&format!("cannot read {note}; that check is skipped"));
            }
            self.unknown_noted = self.monitor.unknown.len();
            let run_id = self.run_id;
            let Some(reason) = reason else {
                if self.throttled.take().is_some() {
                    self.retrying(|s| s.set_throttle(run_id, None))?;
                    self.progress
                        .note("the database is healthy again: continuing");
                    self.report.throttled += started.elapsed();
                }
                return Ok(true);
            };
            if self.throttled.as_deref() != Some(reason.as_str()) {
                self.retrying(|s| s.set_throttle(run_id, Some(&reason)))?;
                if self.throttled.is_none() {
                    self.progress.note(&format!("throttled: {reason}"));
                }
                self.throttled = Some(reason.clone());
            }
            self.progress.waiting(&format!("throttled: {reason}"));
            if self.last_heartbeat.elapsed() > Duration::from_secs(5) {
                let name = self.name.clone();
                self.retrying(|s| s.heartbeat(run_id, &name))?;
                self.last_heartbeat = Instant::now();
            }
            sleep(self.poll.max(Duration::from_millis(100)), self.stop);
            // Pause, cancel and pace's new limits take effect while the run waits.
            let fresh = self.retrying(|s| s.control(run_id))?;
            if self.stop.load(Ordering::SeqCst) || fresh.state != RunState::Running {
                self.report.throttled += started.elapsed();
                self.control = None;
                return Ok(false);
            }
            limits = self.settings.health.with(&fresh.health);
        }
    }

    /// Stops the run for `reason` (the work's): marked failed with it, claims released.
    fn stop_for(&mut self, reason: String) -> Result<Finish> {
        let run_id = self.run_id;
        self.retrying(|s| s.transition(run_id, RunState::Failed, Some(&reason)))?;
        let _ = self.store.release(run_id, &self.name);
        Ok(Finish::Interrupted)
    }

    /// Reads the control row. `None` with `Continue`: waited (paused); look again.
    fn control(&mut self) -> Result<(Step, Option<Control>)> {
        let run_id = self.run_id;
        if let Some((read, control)) = &self.control
            && read.elapsed() < CONTROL_EVERY
        {
            return Ok((Step::Continue, Some(control.clone())));
        }
        let control = self.retrying(|s| s.control(run_id))?;
        self.progress.update(&control, self.size);
        self.control =
            (control.state == RunState::Running).then(|| (Instant::now(), control.clone()));
        match control.state {
            RunState::Running => Ok((Step::Continue, Some(control))),
            RunState::Paused | RunState::Pending => {
                self.progress.waiting("paused");
                if self.last_heartbeat.elapsed() > Duration::from_secs(5) {
                    let name = self.name.clone();
                    self.retrying(|s| s.heartbeat(run_id, &name))?;
                    self.last_heartbeat = Instant::now();
                }
                sleep(self.poll, self.stop);
                Ok((Step::Continue, None))
            }
            RunState::Cancelled => {
                let _ = self.store.release(run_id, &self.name);
                Ok((Step::Stop(Finish::Cancelled), None))
            }
            RunState::Done => Ok((Step::Stop(Finish::Done), None)),
            RunState::Failed => {
                let id = self.run_name.clone();
                let run = self.retrying(|s| s.find_run(&id))?;
                Err(Error::new(
                    ErrorKind::Database,
                    format!(
                        "the run of {id} failed in another worker: {}",
                        run.and_then(|r| r.last_error)
                            .unwrap_or_else(|| "no error recorded".into())
                    ),
                ))
            }
        }
    }

    /// The range this worker holds, claiming one when it holds none; `None` when no range is
    /// free.
    fn range(&mut self) -> Result<Option<RangeRow>> {
        if let Some(range) = self.claimed.take() {
            return Ok(Some(range));
        }
        let (run_id, name) = (self.run_id, self.name.clone());
        let stale = Duration::from_secs(self.settings.claim_timeout_s);
        self.retrying(|s| s.claim(run_id, &name, stale))
    }

    /// Runs one batch of `range` and handles its outcome.
    fn batch(&mut self, range: RangeRow, control: &Control) -> Result<()> {
        let size = control.pace.batch_size.unwrap_or(self.size).max(1);
        let request = BatchRequest {
            run_id: self.run_id,
            range: &range,
            table: &self.migration.table.value,
            key: &self.migration.key.value,
            kind: self.kind,
            sql: &self.sql,
            size,
            worker: &self.name,
            limits: self.limits,
        };
        let started = Instant::now();
        match self.work.batch(self.store, &request) {
            Ok(BatchOutcome::Applied { upper, rows, held }) => {
                self.applied(range, upper, rows, held, size, started, control);
                Ok(())
            }
            Ok(BatchOutcome::RangeDone) => {
                self.attempt = 0;
                Ok(())
            }
            Ok(BatchOutcome::Lost) => {
                // Another worker took the range over (this one looked dead or stuck): claim
                // again, which reads every cursor afresh.
                self.progress.note(&format!(
                    "range {} was taken over; claiming another",
                    range.ord
                ));
                Ok(())
            }
            Err(e) => self.failed(&range, size, e),
        }
    }

    /// A committed batch: count it, adapt the size, pace.
    #[allow(clippy::too_many_arguments)]
    fn applied(
        &mut self,
        mut range: RangeRow,
        upper: KeyValue,
        rows: u64,
        held: Duration,
        size: u64,
        started: Instant,
        control: &Control,
    ) {
        self.attempt = 0;
        self.report.batches += 1;
        self.report.rows += rows;
        self.report.longest_hold = self.report.longest_hold.max(held);
        range.cursor = upper;
        range.rows_done += rows;
        self.claimed = Some(range);
        self.last_heartbeat = Instant::now();
        if self.settings.adaptive && control.pace.batch_size.is_none() {
            self.size = adapt(self.settings, size, held);
        }
        self.progress.batch(rows);
        let pause = control
            .pace
            .pause
            .unwrap_or(Duration::from_millis(self.settings.pause_ms));
        let cap = control
            .pace
            .max_rows_per_second
            .or(self.settings.max_rows_per_second);
        let wait = wait_after(rows, started.elapsed(), pause, cap, control.workers);
        if !wait.is_zero() {
            sleep(wait, self.stop);
        }
    }

    /// A failed batch: retry it the way its error class says, or fail the run.
    fn failed(&mut self, range: &RangeRow, size: u64, e: Error) -> Result<()> {
        let max = self.settings.max_retries;
        if e.retry == Retry::Never || self.attempt >= max {
            let message = format!("batch of range {} failed: {}", range.ord, e.message);
            let _ = self
                .store
                .transition(self.run_id, RunState::Failed, Some(&message));
            let _ = self.store.release(self.run_id, &self.name);
            return Err(self
                .migration
                .error_at(
                    e.kind,
                    self.migration.batch.section.line,
                    format!(
                        "{message}; the run is marked failed: fix the cause and run again to resume"
                    ),
                )
                .with_retry(e.retry));
        }
        self.attempt += 1;
        self.report.retries += 1;
        self.progress.note(&format!(
            "batch on range {} after key {}: {} (attempt {} of {max})",
            range.ord, range.cursor, e.message, self.attempt
        ));
        match e.retry {
            Retry::Split => {
                self.size = (size / 2).max(1);
                self.progress.note(&format!(
                    "the batch hit statement_timeout: splitting it ({} next)",
                    crate::backfill::display::count(self.size, "row", "rows")
                ));
            }
            Retry::Reconnect => {
                sleep(backoff(self.attempt), self.stop);
                self.reconnect()?;
                // Our claim's session changed: say it is still ours.
                let (run_id, name) = (self.run_id, self.name.clone());
                self.retrying(|s| s.heartbeat(run_id, &name))?;
            }
            Retry::Backoff => sleep(backoff(self.attempt), self.stop),
            Retry::Never => {}
        }
        // Read the range again: after a lost connection the commit may have happened.
        self.claimed = None;
        Ok(())
    }

    /// Runs `f` on the store, retrying transient errors with backoff and reconnecting when the
    /// connection is gone.
    fn retrying<T>(&mut self, mut f: impl FnMut(&mut dyn Store) -> Result<T>) -> Result<T> {
        let max = self.settings.max_retries;
        let mut attempt = 0u32;
        loop {
            let e = match f(&mut *self.store) {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            if e.retry == Retry::Never || attempt >= max {
                return Err(e);
            }
            attempt += 1;
            self.report.retries += 1;
            self.progress.note(&format!(
                "retrying after: {} (attempt {attempt} of {max})",
                e.message
            ));
            sleep(backoff(attempt), self.stop);
            if e.retry == Retry::Reconnect {
                self.reconnect()?;
            }
        }
    }

    /// Replaces a lost connection, retrying while the server is unreachable.
    fn reconnect(&mut self) -> Result<()> {
        let max = self.settings.max_retries;
        let mut attempt = 0u32;
        loop {
            match self.store.reconnect() {
                Ok(()) => {
                    self.progress.note("reconnected");
                    return Ok(());
                }
                Err(e) if attempt < max && e.retry != Retry::Never => {
                    attempt += 1;
                    self.report.retries += 1;
                    self.progress.note(&format!(
                        "reconnecting: {} (attempt {attempt} of {max})",
                        e.message
                    ));
                    sleep(backoff(attempt), self.stop);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Ends the progress display and completes the report.
    fn finish(mut self, finish: Result<Finish>) -> Result<RunReport> {
        if self.throttled.take().is_some() {
            let _ = self.store.set_throttle(self.run_id, None);
        }
        let finish = finish?;
        let control = self.store.control(self.run_id).ok();
        self.progress.finish(control.as_ref());
        self.report.finish = finish;
        self.report.run_rows = control.as_ref().map_or(self.report.rows, |c| c.rows_done);
        Ok(self.report)
    }
}

#[cfg(test)]
mod tests {
    //! The engine on SQLite: keyset bounds, resuming, failures. The same behaviour on
    //! PostgreSQL is tested against a real server in `tests/backfill_postgres.rs`.

    use std::path::Path;

    use super::*;
    use crate::backfill::db::Cell;
    use crate::backfill::db::sqlite::SqliteBackend;
    use crate::backfill::migration;
    use crate::backfill::run::progress::ProgressMode;
    use crate::backfill::run::tracking::TrackingNames;
    use crate::backfill::run::tracking::sqlite::SqliteStore;

    /// A data migration over `items(id, n)` that adds 1 to `n` in each batch: a row changed twice
    /// shows up as 2, a row never reached as 0.
    fn bump(key: &str, ty: &str) -> (DataMigration, SqliteStore) {
        let text = format!(
            "-- @requires 1\n-- @table items\n-- @key {key}\n-- @batch-size 3\n\n-- @batch\nUPDATE items SET n = n + 1 WHERE {key} > :lower AND {key} <= :upper;\n\n-- @snapshot\nSELECT {key}, n FROM items ORDER BY {key};\n"
        );
        let migration = migration::parse(Path::new("data-migrations/V7__bump.sql"), &text).unwrap();
        let mut db = SqliteBackend::throwaway().unwrap();
        db.execute(&format!(
            "CREATE TABLE items ({key} {ty} PRIMARY KEY NOT NULL, n bigint NOT NULL DEFAULT 0)"
        ))
        .unwrap();
        (
            migration,
            SqliteStore::new(db, TrackingNames::default()).unwrap(),
        )
    }

    fn settings(batch_size: u64) -> Settings {
        Settings {
            batch_size,
            adaptive: false,
            min_batch_size: 1,
            max_batch_size: batch_size,
            pause_ms: 0,
            max_rows_per_second: None,
            ranges: 1,
            ..crate::backfill::run::pacing::tests::settings()
        }
    }

    fn run_some(
        db: &mut SqliteStore,
        m: &DataMigration,
        batch_size: u64,
        max_batches: Option<u64>,
    ) -> Result<RunReport> {
        let stop = AtomicBool::new(false);
        execute(
            db,
            &settings(batch_size),
            m,
            RunOptions {
                worker: "test".into(),
                progress: Progress::new(ProgressMode::Quiet, Duration::from_secs(60)),
                stop: &stop,
                poll: Duration::from_millis(1),
                max_batches,
                restart: None,
            },
        )
    }

    /// Runs to the end; the batches as the tracking tables logged them: (lower, upper, rows).
    fn run_all(
        db: &mut SqliteStore,
        m: &DataMigration,
        batch_size: u64,
    ) -> (RunReport, Vec<(String, String, u64)>) {
        let report = run_some(db, m, batch_size, None).unwrap();
        (report, logged(db))
    }

    fn logged(db: &mut SqliteStore) -> Vec<(String, String, u64)> {
        let rows = db
            .backend()
            .query("SELECT lower_key, upper_key, rows_changed FROM xtask_backfill_batch_log ORDER BY rowid")
            .unwrap();
        rows.rows
            .into_iter()
            .map(|r| {
                let text = |c: &Cell| match c {
                    Cell::Text(t) | Cell::Number(t) => t.clone(),
                    other => panic!("{other:?}"),
                };
                (text(&r[0]), text(&r[1]), text(&r[2]).parse().unwrap())
            })
            .collect()
    }

    fn counts(db: &mut SqliteStore) -> Vec<String> {
        db.backend()
            .query("SELECT n FROM items ORDER BY 1")
            .unwrap()
            .rows
            .into_iter()
            .map(|r| match &r[0] {
                Cell::Number(n) => n.clone(),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    fn ints(keys: &[i64]) -> String {
        keys.iter()
            .map(|k| format!("({k})"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn bounds(list: &[(&str, &str, u64)]) -> Vec<(String, String, u64)> {
        list.iter()
            .map(|(l, u, n)| (l.to_string(), u.to_string(), *n))
            .collect()
    }

    #[test]
    fn sparse_keys_with_gaps_give_full_batches() {
        let (m, mut db) = bump("id", "bigint");
        let keys = [-40, 1, 2, 10, 11, 500, 501, 502, 9_000_000_000];
        db.backend()
            .execute(&format!("INSERT INTO items (id) VALUES {}", ints(&keys)))
            .unwrap();
        let (report, batches) = run_all(&mut db, &m, 3);
        assert_eq!(
            batches,
            bounds(&[("-41", "2", 3), ("2", "500", 3), ("500", "9000000000", 3)])
        );
        assert_eq!(
            (report.batches, report.rows, report.finish),
            (3, 9, Finish::Done)
        );
        assert_eq!(counts(&mut db), vec!["1"; 9]);
    }

    #[test]
    fn last_batch_is_short_and_ends_at_the_largest_key() {
        let (m, mut db) = bump("id", "bigint");
        db.backend()
            .execute(&format!(
                "INSERT INTO items (id) VALUES {}",
                ints(&[5, 6, 7, 8, 100])
            ))
            .unwrap();
        let (report, batches) = run_all(&mut db, &m, 3);
        assert_eq!(batches, bounds(&[("4", "7", 3), ("7", "100", 2)]));
        assert_eq!(report.rows, 5);
        assert_eq!(counts(&mut db), vec!["1"; 5]);
    }

    #[test]
    fn batch_size_one() {
        let (m, mut db) = bump("id", "bigint");
        db.backend()
            .execute(&format!(
                "INSERT INTO items (id) VALUES {}",
                ints(&[3, 1, 2, 1000])
            ))
            .unwrap();
        let (report, batches) = run_all(&mut db, &m, 1);
        assert_eq!(report.batches, 4);
        let uppers: Vec<&str> = batches.iter().map(|b| b.1.as_str()).collect();
        assert_eq!(uppers, ["1", "2", "3", "1000"]);
        assert!(batches.iter().all(|b| b.2 == 1));
        assert_eq!(counts(&mut db), vec!["1"; 4]);
    }

    #[test]
    fn empty_table_runs_no_batch() {
        let (m, mut db) = bump("id", "bigint");
        let (report, batches) = run_all(&mut db, &m, 3);
        assert!(batches.is_empty());
        assert_eq!(
            (report.batches, report.rows, report.finish),
            (0, 0, Finish::Done)
        );
    }

    #[test]
    fn a_batch_that_changes_no_row_still_commits_and_moves_on() {
        let text = "-- @requires 1\n-- @table items\n-- @key id\n-- @batch\nUPDATE items SET n = n + 1 WHERE id > :lower AND id <= :upper AND id % 2 = 0;\n-- @snapshot\nSELECT id, n FROM items ORDER BY id;\n";
        let m = migration::parse(Path::new("V8__even.sql"), text).unwrap();
        let (_, mut db) = bump("id", "bigint");
        db.backend()
            .execute(&format!(
                "INSERT INTO items (id) VALUES {}",
                ints(&[1, 3, 5, 6, 7, 9, 10])
            ))
            .unwrap();
        let (report, batches) = run_all(&mut db, &m, 3);
        let rows: Vec<u64> = batches.iter().map(|b| b.2).collect();
        assert_eq!(rows, vec![0, 1, 1]);
        assert_eq!(report.batches, 3);
        assert_eq!(counts(&mut db), vec!["0", "0", "0", "0", "0", "1", "1"]);
    }

    #[test]
    fn text_keys() {
        let (m, mut db) = bump("code", "text");
        db.backend()
            .execute(
                "INSERT INTO items (code) VALUES ('b'), ('a'), ('ab'), ('B'), ('z'), ('é'), ('a b')",
            )
            .unwrap();
        let (report, batches) = run_all(&mut db, &m, 2);
        // BINARY collation: upper case before lower case, 'é' (UTF-8 0xC3...) last.
        let uppers: Vec<&str> = batches.iter().map(|b| b.1.as_str()).collect();
        assert_eq!(uppers, ["a", "ab", "z", "é"]);
        assert_eq!(batches[0].0, "");
        assert_eq!(report.rows, 7);
        assert_eq!(counts(&mut db), vec!["1"; 7]);
    }

    #[test]
    fn empty_string_key_is_refused() {
        let (m, mut db) = bump("code", "text");
        db.backend()
            .execute("INSERT INTO items (code) VALUES (''), ('a')")
            .unwrap();
        let e = run_some(&mut db, &m, 2, None).unwrap_err().to_string();
        assert!(
            e.contains("V7__bump.sql:3: the smallest key is the empty string"),
            "{e}"
        );
    }

    #[test]
    fn statement_error_names_the_file_and_line_and_leaves_nothing() {
        let text = "-- @requires 1\n-- @table items\n-- @key id\n-- @batch\nUPDATE items SET nope = 1 WHERE id > :lower AND id <= :upper;\n-- @snapshot\nSELECT id FROM items ORDER BY id;\n";
        let m = migration::parse(Path::new("data-migrations/V9__broken.sql"), text).unwrap();
        let (_, mut db) = bump("id", "bigint");
        db.backend()
            .execute("INSERT INTO items (id) VALUES (1), (2)")
            .unwrap();
        let e = run_some(&mut db, &m, 10, None).unwrap_err();
        let s = e.to_string();
        assert!(
            s.starts_with(
                "data-migrations/V9__broken.sql:5: batch of range 0 failed: keys (0, 2]:"
            ),
            "{s}"
        );
        assert!(s.contains("nope"), "{s}");
        assert_eq!(e.kind, ErrorKind::Statement);
        // The failed batch left nothing behind, and the run is recorded as failed.
        assert!(logged(&mut db).is_empty());
        let run = db.find_run("V9__broken").unwrap().unwrap();
        assert_eq!(run.state, RunState::Failed);
        assert!(run.last_error.unwrap().contains("nope"));
    }

    #[test]
    fn a_failing_batch_rolls_back_its_changes() {
        let text = "-- @requires 1\n-- @table items\n-- @key id\n-- @batch\nUPDATE items SET n = n + 1 WHERE id > :lower AND id <= :upper;\n-- @snapshot\nSELECT id FROM items ORDER BY id;\n";
        let m = migration::parse(Path::new("V10__fails_at_5.sql"), text).unwrap();
        let (_, mut db) = bump("id", "bigint");
        db.backend().execute("CREATE TRIGGER no_five BEFORE UPDATE ON items WHEN NEW.id = 5 BEGIN SELECT RAISE(ABORT, 'five is forbidden'); END")
            .unwrap();
        db.backend()
            .execute(&format!(
                "INSERT INTO items (id) VALUES {}",
                ints(&[1, 2, 3, 4, 5, 6])
            ))
            .unwrap();
        let e = run_some(&mut db, &m, 2, None).unwrap_err().to_string();
        assert!(e.contains("keys (4, 6]: five is forbidden"), "{e}");
        assert_eq!(logged(&mut db).len(), 2);
        // Batches 1 and 2 committed; batch 3 (rows 5 and 6) left no trace.
        assert_eq!(counts(&mut db), vec!["0", "0", "1", "1", "1", "1"]);
    }

    #[test]
    fn resumes_after_the_last_committed_batch_exactly_once() {
        let (m, mut db) = bump("id", "bigint");
        db.backend()
            .execute(&format!(
                "INSERT INTO items (id) VALUES {}",
                ints(&[1, 2, 4, 8, 16, 32, 64])
            ))
            .unwrap();
        let report = run_some(&mut db, &m, 2, Some(2)).unwrap();
        assert_eq!((report.batches, report.finish), (2, Finish::Interrupted));
        let (report, batches) = run_all(&mut db, &m, 2);
        assert_eq!((report.batches, report.finish), (2, Finish::Done));
        assert_eq!(batches[2].0, "8");
        assert_eq!(counts(&mut db), vec!["1"; 7]);
        // A third run finds nothing left to do.
        let report = run_some(&mut db, &m, 2, None).unwrap();
        assert_eq!((report.batches, report.finish), (0, Finish::AlreadyDone));
        assert_eq!(counts(&mut db), vec!["1"; 7]);
    }

    #[test]
    fn a_batch_whose_cursor_moved_is_lost_and_rolled_back() {
        let (m, mut db) = bump("id", "bigint");
        db.backend()
            .execute("INSERT INTO items (id) VALUES (1), (2), (3)")
            .unwrap();
        run_some(&mut db, &m, 1, Some(1)).unwrap();
        let run = db.find_run("V7__bump").unwrap().unwrap();
        let mut range = db
            .claim(run.id, "a", Duration::from_secs(60))
            .unwrap()
            .unwrap();
        // Another worker's batch moved the cursor since `range` was read.
        let stale = range.clone();
        let sql = m.batch.sql(crate::sql::Dialect::Sqlite).to_string();
        fn request<'a>(run_id: i64, range: &'a RangeRow, sql: &'a str) -> BatchRequest<'a> {
            BatchRequest {
                run_id,
                range,
                table: "items",
                key: "id",
                kind: KeyKind::Integer,
                sql,
                size: 1,
                worker: "a",
                limits: BatchLimits::default(),
            }
        }
        match db.run_batch(&request(run.id, &range, &sql)).unwrap() {
            BatchOutcome::Applied { upper, .. } => range.cursor = upper,
            other => panic!("{other:?}"),
        }
        assert_eq!(
            db.run_batch(&request(run.id, &stale, &sql)).unwrap(),
            BatchOutcome::Lost
        );
        // Each row was changed once: the lost batch left nothing.
        assert_eq!(counts(&mut db), vec!["0", "1", "1"]);
        assert_eq!(logged(&mut db).len(), 2);
    }

    #[test]
    fn a_run_of_another_version_of_the_file_is_not_resumed() {
        let (m, mut db) = bump("id", "bigint");
        db.backend()
            .execute("INSERT INTO items (id) VALUES (1), (2), (3)")
            .unwrap();
        run_some(&mut db, &m, 1, Some(1)).unwrap();
        let mut changed = m.clone();
        changed.checksum = migration::checksum(b"another file");
        let e = run_some(&mut db, &changed, 1, None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("records a run of V7__bump from another version of the file"),
            "{e}"
        );
    }

    #[test]
    fn missing_table_key_and_bad_key_types() {
        let (m, mut db) = bump("id", "bigint");
        let fresh = |db: &mut SqliteStore, sql: &str| {
            db.backend().execute(sql).unwrap();
        };
        fresh(&mut db, "DROP TABLE items");
        let e = run_some(&mut db, &m, 1, None).unwrap_err().to_string();
        assert!(e.starts_with("data-migrations/V7__bump.sql:2: table `items` does not exist in the schema at version 1"), "{e}");

        fresh(&mut db, "CREATE TABLE items (other bigint, n bigint)");
        let e = run_some(&mut db, &m, 1, None).unwrap_err().to_string();
        assert!(e.starts_with("data-migrations/V7__bump.sql:3: table `items` has no column `id` (it has: other, n)"), "{e}");

        fresh(
            &mut db,
            "DROP TABLE items; CREATE TABLE items (id real, n bigint)",
        );
        let e = run_some(&mut db, &m, 1, None).unwrap_err().to_string();
        assert!(
            e.to_lowercase()
                .contains("key `items.id` is of type `real`"),
            "{e}"
        );

        fresh(
            &mut db,
            "DROP TABLE items; CREATE TABLE items (id bigint, n bigint); INSERT INTO items VALUES (NULL, 0), (1, 0)",
        );
        let e = run_some(&mut db, &m, 1, None).unwrap_err().to_string();
        assert!(e.contains("1 row of `items` has a NULL `id`"), "{e}");
    }
}
