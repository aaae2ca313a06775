//! `backfill run`: executes a plan on the target database, batch by batch, exactly once,
//! resumable, paced and controllable, alone or with other workers.
//!
//! The loop of one worker:
//! 1. read the run's control row (state, pace overrides, progress): wait while `paused`, stop
//!    on `cancelled`, stop after the current batch on SIGINT/SIGTERM;
//! 2. hold a claimed key range (claim one when none: `FOR UPDATE SKIP LOCKED`), or finish the
//!    run when every range is done;
//! 3. run one batch through [`Store::run_batch`] (one transaction that moves the range's cursor
//!    with a compare-and-set), then adapt the batch size toward the target duration and sleep
//!    for the pause and the rows-per-second cap.
//!
//! Errors are retried by kind ([`Retry`]): a lost connection reconnects (the range's cursor is
//! then read back from the database, never assumed), lock timeouts, deadlocks and serialization
//! failures back off with exponential delays and jitter, a statement timeout halves the batch.
//! A batch that fails more than `max_retries` times in a row, or with an error no retry cures,
//! fails the run with the error recorded; running the plan again resumes it.

pub mod control;
pub mod host;
pub mod plan;
pub mod progress;
pub mod tracking;

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::backfill::db::target::Target;
use crate::backfill::db::{BatchLimits, KeyKind, KeyValue};
use crate::backfill::display::count;
use crate::backfill::display::{format_duration, short};
use crate::backfill::error::{Error, ErrorKind, display_path};
use crate::backfill::migration::DataMigration;
use crate::backfill::run::plan::{Plan, Settings};
use crate::backfill::run::progress::Progress;
use crate::backfill::run::tracking::{
    BatchOutcome, BatchRequest, Control, NewRun, RangeRow, Retry, RunRow, RunState, Store,
    StoreError, Transition, split,
};

/// Set by SIGINT/SIGTERM: the run stops after the current batch.
static STOP: AtomicBool = AtomicBool::new(false);

#[cfg(unix)]
extern "C" fn on_signal(signal: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
    // A second Ctrl-C ends the process at once: only the open transaction is lost, and the
    // database rolls it back.
    // SAFETY: signal() is async-signal-safe; resetting to the default disposition is allowed.
    unsafe {
        libc::signal(signal, libc::SIG_DFL);
    }
}

/// Makes SIGINT and SIGTERM stop the run after the current batch.
pub fn install_signal_handlers() {
    #[cfg(unix)]
    // SAFETY: the handler only stores to an atomic and calls signal(), both async-signal-safe.
    unsafe {
        let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

/// The flag the signal handlers set.
pub fn signal_flag() -> &'static AtomicBool {
    &STOP
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
    /// Stopped by a signal after the current batch.
    Interrupted,
}

/// What one worker did.
#[derive(Debug, Clone, PartialEq)]
pub struct RunReport {
    pub finish: Finish,
    pub run_id: i64,
    pub batches: u64,
    pub rows: u64,
    pub retries: u64,
    pub longest_hold: Duration,
    pub elapsed: Duration,
}

/// A failure that ends the run: the message, already scrubbed of credentials.
fn fail(target: &Target, e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!(target.scrub(&e.to_string()))
}

/// Exponential backoff with jitter: 100ms, 200ms, ... capped at 10s, each between half and
/// all of it, so workers that failed together do not retry together.
pub fn backoff(attempt: u32) -> Duration {
    let base = 100u64.saturating_mul(1u64 << attempt.min(10)).min(10_000);
    let jitter = fastrand::u64(base / 2..=base);
    Duration::from_millis(jitter)
}

/// Sleeps `d`, waking early when `stop` is set.
fn sleep(d: Duration, stop: &AtomicBool) {
    let end = Instant::now() + d;
    while !stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        if now >= end {
            break;
        }
        std::thread::sleep((end - now).min(Duration::from_millis(50)));
    }
}

/// The share of the target batch duration the adaptation aims at. Batch times vary (the next
/// key range may be denser, a checkpoint may start): aiming at the target itself would put
/// every other batch over it, and the target is a ceiling on how long a batch holds its locks.
const AIM: f64 = 0.7;

/// The next batch size: toward [`AIM`] of the target from how long `size` rows held the
/// transaction. Grows at most by half per batch (one fast batch proves little; a bigger step
/// overshoots when the next keys are denser) and shrinks up to fivefold (a slow batch is a
/// lock held too long).
pub fn adapt(settings: &Settings, size: u64, held: Duration) -> u64 {
    let goal = settings.target_batch_ms as f64 * AIM;
    let held_ms = held.as_secs_f64() * 1000.0;
    let factor = if held_ms <= 0.0 {
        1.5
    } else {
        (goal / held_ms).clamp(0.2, 1.5)
    };
    let next = (size as f64 * factor).round() as u64;
    settings.clamp(next.max(1))
}

/// A bound below `first`, the smallest key: the first range is `(below, ...]`.
fn below(first: &KeyValue, migration: &DataMigration) -> Result<KeyValue, Error> {
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

/// Retries `f` on transient errors with backoff, reconnecting when the connection is gone.
fn retrying<T>(
    store: &mut dyn Store,
    max_retries: u32,
    stop: &AtomicBool,
    retries: &mut u64,
    progress: &mut Progress,
    mut f: impl FnMut(&mut dyn Store) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let mut attempt = 0u32;
    loop {
        let e = match f(store) {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        if e.retry == Retry::Never || attempt >= max_retries {
            return Err(e);
        }
        attempt += 1;
        *retries += 1;
        progress.note(&format!(
            "retrying after: {} (attempt {attempt} of {max_retries})",
            e.error.message
        ));
        sleep(backoff(attempt), stop);
        if e.retry == Retry::Reconnect {
            reconnect(store, max_retries, stop, retries, progress)?;
        }
    }
}

fn reconnect(
    store: &mut dyn Store,
    max_retries: u32,
    stop: &AtomicBool,
    retries: &mut u64,
    progress: &mut Progress,
) -> Result<(), StoreError> {
    let mut attempt = 0u32;
    loop {
        match store.reconnect() {
            Ok(()) => {
                progress.note("reconnected");
                return Ok(());
            }
            Err(e) if attempt < max_retries && e.retry != Retry::Never => {
                attempt += 1;
                *retries += 1;
                progress.note(&format!(
                    "reconnecting: {} (attempt {attempt} of {max_retries})",
                    e.error.message
                ));
                sleep(backoff(attempt), stop);
            }
            Err(e) => return Err(e),
        }
    }
}

/// Finds or records the run of `plan`, refusing one recorded from another checksum.
fn prepare_run(
    store: &mut dyn Store,
    plan: &Plan,
    migration: &DataMigration,
) -> anyhow::Result<RunRow> {
    store.ensure_tables()?;
    if let Some(run) = store.find_run(&migration.id())? {
        refuse_other_version(&run, migration)?;
        return Ok(run);
    }
    let kind = crate::backfill::engine::key_kind(store.backend(), migration)?;
    let (table, key) = (&migration.table.value, &migration.key.value);
    let min = store.backend().min_key(table, key, kind)?;
    let max = store.max_key(table, key, kind)?;
    let estimate = store.estimate(table, key, kind)?;
    let ranges = match (min, max) {
        (Some(min), Some(max)) => {
            let lower = below(&min, migration)?;
            split(&lower, &max, &estimate.histogram, plan.settings.ranges)
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
    let run = store.create_run(&NewRun {
        migration: migration.id(),
        checksum: migration.checksum.clone(),
        table: table.clone(),
        key: key.clone(),
        key_kind: kind,
        settings: serde_json::to_string(&plan.settings)?,
        rows_estimated: estimate.rows,
        ranges,
    })?;
    refuse_other_version(&run, migration)?;
    Ok(run)
}

fn refuse_other_version(run: &RunRow, migration: &DataMigration) -> anyhow::Result<()> {
    if run.checksum != migration.checksum {
        anyhow::bail!(
            "{}: this database records a run of {} from another version of the file (checksum {}, the file's is {}); a data migration runs once, from one version",
            display_path(&migration.path),
            run.migration,
            short(&run.checksum),
            short(&migration.checksum)
        );
    }
    Ok(())
}

/// Checks that `plan` is for `migration` as it is now on disk.
pub fn check_plan(
    plan: &Plan,
    migration: &DataMigration,
    plan_path: &std::path::Path,
) -> anyhow::Result<()> {
    if plan.migration.checksum != migration.checksum {
        anyhow::bail!(
            "{}: the plan is for checksum {} of {}, but the file's checksum is {}; the data migration changed since it was planned: run `cargo xtask backfill sample {id}`, review and accept its new snapshot (`cargo insta review`), then make a new plan with `cargo xtask backfill plan {id}` and have it reviewed",
            display_path(plan_path),
            short(&plan.migration.checksum),
            display_path(&migration.path),
            short(&migration.checksum),
            id = migration.id()
        );
    }
    if plan.table != migration.table.value || plan.key != migration.key.value {
        anyhow::bail!(
            "{}: the plan's table and key ({}.{}) are not the data migration's",
            display_path(plan_path),
            plan.table,
            plan.key
        );
    }
    Ok(())
}

/// Runs `plan` (already loaded and checked against `migration`) on `target` as one worker.
pub fn run(
    target: &Target,
    plan: &Plan,
    migration: &DataMigration,
    options: RunOptions<'_>,
    out: &mut dyn Write,
) -> anyhow::Result<RunReport> {
    let started = Instant::now();
    let RunOptions {
        worker,
        mut progress,
        stop,
        poll,
    } = options;
    let settings = &plan.settings;
    let info = target.info();
    if let Some(planned) = &plan.target
        && *planned != info
    {
        writeln!(
            out,
            "note: the plan was made against {}; this run targets {}",
            planned.describe(),
            info.describe()
        )?;
    }
    let mut retries = 0u64;
    // Connecting is retried too: a run started while the server restarts waits for it.
    let mut store = {
        let mut attempt = 0u32;
        loop {
            match crate::backfill::run::tracking::open(target, &plan.tracking) {
                Ok(store) => break store,
                Err(e) if e.retry != Retry::Never && attempt < settings.max_retries => {
                    attempt += 1;
                    retries += 1;
                    progress.note(&target.scrub(&format!(
                        "connecting: {} (attempt {attempt} of {})",
                        e.error.message, settings.max_retries
                    )));
                    sleep(backoff(attempt), stop);
                }
                Err(e) => return Err(fail(target, e)),
            }
        }
    };
    let store: &mut dyn Store = store.as_mut();
    let limits = BatchLimits {
        lock_timeout: Some(Duration::from_millis(settings.lock_timeout_ms)),
        statement_timeout: Some(Duration::from_millis(settings.statement_timeout_ms)),
    };
    // Every statement of the run, not only the batches, waits at most this long.
    store
        .backend()
        .apply_limits(&limits)
        .map_err(|e| fail(target, e))?;
    let run = prepare_run(store, plan, migration).map_err(|e| fail(target, e))?;
    let run_id = run.id;
    let mut report = RunReport {
        finish: Finish::Done,
        run_id,
        batches: 0,
        rows: 0,
        retries: 0,
        longest_hold: Duration::ZERO,
        elapsed: Duration::ZERO,
    };
    match run.state {
        RunState::Done => {
            writeln!(
                out,
                "{} is already done on {}",
                run.migration,
                info.describe()
            )?;
            report.finish = Finish::AlreadyDone;
            return Ok(report);
        }
        RunState::Cancelled => {
            anyhow::bail!(
                "{}: the run of {} on {} was cancelled{}; a cancelled run does not start again",
                display_path(&migration.path),
                run.migration,
                info.describe(),
                run.finished_at
                    .as_deref()
                    .map(|t| format!(" at {t}"))
                    .unwrap_or_default()
            );
        }
        RunState::Pending | RunState::Failed => {
            if run.state == RunState::Failed {
                writeln!(
                    out,
                    "resuming {} after its failure: {}",
                    run.migration,
                    run.last_error.as_deref().unwrap_or("(no error recorded)")
                )?;
            }
            store
                .transition(run_id, RunState::Running, None)
                .map_err(|e| fail(target, e))?;
        }
        RunState::Running | RunState::Paused => {}
    }
    writeln!(
        out,
        "running {} on {} as worker {worker}",
        run.migration,
        info.describe()
    )?;
    progress.start(&run.migration, run.rows_estimated);

    let sql = migration.batch.sql(target.dialect()).to_string();
    let stale = Duration::from_secs(settings.claim_timeout_s);
    let mut size = settings.clamp(settings.batch_size);
    let mut claimed: Option<RangeRow> = None;
    let mut last_heartbeat = Instant::now();
    let mut attempt = 0u32;

    macro_rules! store_call {
        ($f:expr) => {
            retrying(
                store,
                settings.max_retries,
                stop,
                &mut retries,
                &mut progress,
                $f,
            )
            .map_err(|e| fail(target, e))
        };
    }

    let finish = loop {
        if stop.load(Ordering::SeqCst) {
            let _ = store.release(run_id, &worker);
            break Finish::Interrupted;
        }
        let control: Control = store_call!(|s| s.control(run_id))?;
        progress.update(&control, size);
        match control.state {
            RunState::Running => {}
            RunState::Paused | RunState::Pending => {
                progress.waiting("paused");
                if last_heartbeat.elapsed() > Duration::from_secs(5) {
                    store_call!(|s| s.heartbeat(run_id, &worker))?;
                    last_heartbeat = Instant::now();
                }
                sleep(poll, stop);
                continue;
            }
            RunState::Cancelled => {
                let _ = store.release(run_id, &worker);
                break Finish::Cancelled;
            }
            RunState::Done => break Finish::Done,
            RunState::Failed => {
                let run = store_call!(|s| s.find_run(&migration.id()))?;
                anyhow::bail!(
                    "the run of {} failed in another worker: {}",
                    migration.id(),
                    run.and_then(|r| r.last_error)
                        .unwrap_or_else(|| "no error recorded".into())
                );
            }
        }
        let range = match claimed.take() {
            Some(range) => range,
            None => match store_call!(|s| s.claim(run_id, &worker, stale))? {
                Some(range) => range,
                None => {
                    if store_call!(|s| s.finish(run_id))? {
                        break Finish::Done;
                    }
                    // The ranges left are held by live workers: wait for them to finish, or
                    // for their claims to go stale.
                    progress.waiting("other workers hold the remaining ranges");
                    sleep(poll, stop);
                    continue;
                }
            },
        };
        let batch_size = control.pace.batch_size.unwrap_or(size).max(1);
        let request = BatchRequest {
            run_id,
            range: &range,
            table: &migration.table.value,
            key: &migration.key.value,
            kind: run.key_kind,
            sql: &sql,
            size: batch_size,
            worker: &worker,
            limits,
        };
        let batch_started = Instant::now();
        match store.run_batch(&request) {
            Ok(BatchOutcome::Applied { upper, rows, held }) => {
                attempt = 0;
                report.batches += 1;
                report.rows += rows;
                report.longest_hold = report.longest_hold.max(held);
                let mut range = range;
                range.cursor = upper;
                range.rows_done += rows;
                claimed = Some(range);
                last_heartbeat = Instant::now();
                if settings.adaptive && control.pace.batch_size.is_none() {
                    size = adapt(settings, batch_size, held);
                }
                progress.batch(rows);
                let pause = control
                    .pace
                    .pause
                    .unwrap_or(Duration::from_millis(settings.pause_ms));
                let cap = control
                    .pace
                    .max_rows_per_second
                    .or(settings.max_rows_per_second);
                let mut wait = pause;
                if let Some(cap) = cap {
                    // The cap is the run's: this worker's share is its part of the live ones.
                    let share = cap as f64 / control.workers.max(1) as f64;
                    let minimum = Duration::from_secs_f64(rows as f64 / share.max(0.001));
                    wait = wait.max(minimum.saturating_sub(batch_started.elapsed()));
                }
                if !wait.is_zero() {
                    sleep(wait, stop);
                }
            }
            Ok(BatchOutcome::RangeDone) => {
                attempt = 0;
            }
            Ok(BatchOutcome::Lost) => {
                // Another worker took the range over (this one looked dead or stuck): claim
                // again, which reads every cursor afresh.
                progress.note(&format!(
                    "range {} was taken over; claiming another",
                    range.ord
                ));
            }
            Err(e) => {
                if e.retry == Retry::Never || attempt >= settings.max_retries {
                    let message = target.scrub(&format!(
                        "batch ({}, ...] of range {} failed: {}",
                        range.cursor, range.ord, e.error.message
                    ));
                    let _ = store.transition(run_id, RunState::Failed, Some(&message));
                    let _ = store.release(run_id, &worker);
                    let error = migration.error_at(
                        e.error.kind,
                        migration.batch.section.line,
                        format!(
                            "{message}; the run is marked failed: fix the cause and run the plan again to resume"
                        ),
                    );
                    return Err(fail(target, error));
                }
                attempt += 1;
                retries += 1;
                progress.note(&target.scrub(&format!(
                    "batch on range {} after key {}: {} (attempt {attempt} of {})",
                    range.ord, range.cursor, e.error.message, settings.max_retries
                )));
                match e.retry {
                    Retry::Split => {
                        size = (batch_size / 2).max(1);
                        progress.note(&format!(
                            "the batch hit statement_timeout: splitting it ({} next)",
                            count(size, "row", "rows")
                        ));
                    }
                    Retry::Reconnect => {
                        sleep(backoff(attempt), stop);
                        reconnect(
                            store,
                            settings.max_retries,
                            stop,
                            &mut retries,
                            &mut progress,
                        )
                        .map_err(|e| fail(target, e))?;
                        // Our claim's session changed: say it is still ours.
                        store_call!(|s| s.heartbeat(run_id, &worker))?;
                    }
                    Retry::Backoff => sleep(backoff(attempt), stop),
                    Retry::Never => {}
                }
                // Read the range again: after a lost connection the commit may have happened.
                claimed = None;
            }
        }
    };
    report.retries = retries;
    report.elapsed = started.elapsed();
    report.finish = finish;
    let control = store.control(run_id).ok();
    progress.finish(control.as_ref());
    let total = control.as_ref().map_or(report.rows, |c| c.rows_done);
    match report.finish {
        Finish::Done | Finish::AlreadyDone => writeln!(
            out,
            "{} done: this worker ran {} changing {} in {} ({}, longest batch transaction {}); the run changed {}",
            migration.id(),
            count(report.batches, "batch", "batches"),
            count(report.rows, "row", "rows"),
            format_duration(report.elapsed),
            count(report.retries, "retry", "retries"),
            format_duration(report.longest_hold),
            count(total, "row", "rows")
        )?,
        Finish::Cancelled => writeln!(
            out,
            "{} was cancelled: this worker stopped after {} ({}); what ran stays applied",
            migration.id(),
            count(report.batches, "batch", "batches"),
            count(report.rows, "row", "rows")
        )?,
        Finish::Interrupted => writeln!(
            out,
            "{} stopped after the current batch ({}, {} by this worker); run the plan again to resume",
            migration.id(),
            count(report.batches, "batch", "batches"),
            count(report.rows, "row", "rows")
        )?,
    }
    Ok(report)
}

/// Converts a store error of a control command into a message without credentials.
pub fn transition_message(t: &Transition, to: RunState, name: &str) -> (bool, String) {
    match t {
        Transition::Changed { from } => (true, format!("{name}: {from} -> {to}")),
        Transition::Unchanged => (true, format!("{name} is already {to}")),
        Transition::Refused { reason, .. } => (false, format!("{name}: {reason}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            batch_size: 1000,
            adaptive: true,
            min_batch_size: 100,
            max_batch_size: 50_000,
            target_batch_ms: 200,
            pause_ms: 0,
            max_rows_per_second: None,
            lock_timeout_ms: 1000,
            statement_timeout_ms: 5000,
            max_retries: 3,
            ranges: 1,
            claim_timeout_s: 60,
        }
    }

    #[test]
    fn batch_size_moves_toward_the_target_at_most_twofold() {
        let s = settings();
        // Ten times too fast: grows by half (the cap on growth).
        assert_eq!(adapt(&s, 1000, Duration::from_millis(20)), 1500);
        // Twice too slow: down to 70% of the target, 140ms of 400ms.
        assert_eq!(adapt(&s, 1000, Duration::from_millis(400)), 350);
        // Far too slow: at most fivefold smaller, never below the minimum.
        assert_eq!(adapt(&s, 1000, Duration::from_secs(10)), 200);
        assert_eq!(adapt(&s, 150, Duration::from_secs(10)), 100);
        // Never above the maximum.
        assert_eq!(adapt(&s, 40_000, Duration::ZERO), 50_000);
        assert_eq!(adapt(&s, 20_000, Duration::ZERO), 30_000);
        // At the target: back under it, as the target is a ceiling.
        assert_eq!(adapt(&s, 1000, Duration::from_millis(200)), 700);
    }

    #[test]
    fn backoff_grows_with_jitter_and_a_cap() {
        for attempt in 0..20 {
            let d = backoff(attempt).as_millis() as u64;
            let base = (100u64 << attempt.min(10)).min(10_000);
            assert!(d >= base / 2 && d <= base, "attempt {attempt}: {d}ms");
        }
    }

    #[test]
    fn sleeping_stops_when_asked() {
        let stop = AtomicBool::new(true);
        let t = Instant::now();
        sleep(Duration::from_secs(5), &stop);
        assert!(t.elapsed() < Duration::from_secs(1));
    }
}
