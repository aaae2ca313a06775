//! The production run: a reviewed plan executed on the target database, batch by batch,
//! exactly once, resumable, paced and controllable, alone or with other workers.
//!
//! - [`plan`]: the plan file (settings, key range and estimates from the catalog, the exact SQL).
//! - [`worker`]: the batch engine, one worker's loop. `backfill sample` runs the same
//!   [`worker::execute`] on its throwaway database; [`run`] here adds only what production needs
//!   around it (connecting with retries, the plan's target, signals, the summary lines).
//! - [`tracking`]: the tracking tables and the exactly-once batch transaction, per database.
//! - [`pacing`], [`progress`], [`control`] (status, pause, resume, cancel, pace), [`host`].
//! - [`health`]: waiting while a standby lags, the WAL archiver is behind, vacuum works on the
//!   table, or a throttle query says so.
//!
//! Invariants: dependencies point down, to [`crate::backfill::db`], [`crate::backfill::migration`]
//! and [`crate::backfill::error`]; nothing here reads fixtures or snapshots. A batch counts as
//! done only when its transaction, which moved the range's cursor with a compare-and-set,
//! committed.

pub mod control;
pub mod health;
pub mod host;
pub mod pacing;
pub mod plan;
pub mod progress;
pub mod tracking;
pub mod worker;

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::backfill::db::target::Target;
use crate::backfill::display::{count, format_duration, short};
use crate::backfill::error::{Retry, display_path};
use crate::backfill::migration::DataMigration;
use crate::backfill::run::pacing::{backoff, sleep};
use crate::backfill::run::plan::Plan;
use crate::backfill::run::tracking::{RunState, Transition};
pub use worker::{Finish, RunOptions, RunReport};

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

/// Refuses a database whose schema, by refinery's history, is behind the version `migration`
/// requires: its batches would fail on the first statement. A database without refinery's
/// history table is not refused (its schema is managed another way).
pub fn require_schema(target: &Target, migration: &DataMigration) -> anyhow::Result<()> {
    let required = migration.requires.value;
    if let Some(have) = crate::backfill::db::history::schema_version(target)?
        && have < required
    {
        anyhow::bail!(
            "{}:{}: {} requires schema version V{required}, but {} is at V{have} (refinery's history): apply the schema migrations first (`cargo xtask migrate run`)",
            display_path(&migration.path),
            migration.requires.line,
            migration.id(),
            target.info().describe()
        );
    }
    Ok(())
}

/// Runs `plan` (already loaded and checked against `migration`) on `target` as one worker, and
/// says how it went on `out`.
pub fn run(
    target: &Target,
    plan: &Plan,
    migration: &DataMigration,
    options: RunOptions<'_>,
    out: &mut dyn Write,
) -> anyhow::Result<RunReport> {
    run_with(
        target,
        plan,
        migration,
        options,
        &mut health::Monitor::default(),
        out,
    )
}

/// [`run`], watching the standbys of `monitor` too (`--replica-url`) for the plan's health
/// limits.
pub fn run_with(
    target: &Target,
    plan: &Plan,
    migration: &DataMigration,
    mut options: RunOptions<'_>,
    monitor: &mut health::Monitor,
    out: &mut dyn Write,
) -> anyhow::Result<RunReport> {
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
    // Connecting is retried too: a run started while the server restarts waits for it.
    let check_schema = || require_schema(target, migration);
    let mut connects = 0u64;
    let mut store = loop {
        match tracking::open(target, &plan.tracking) {
            Ok(store) => break store,
            Err(e) if e.retry != Retry::Never && connects < u64::from(settings.max_retries) => {
                connects += 1;
                options.progress.note(&format!(
                    "connecting: {} (attempt {connects} of {})",
                    e.message, settings.max_retries
                ));
                sleep(backoff(connects as u32), options.stop);
            }
            Err(e) => return Err(e.into()),
        }
    };
    check_schema()?;
    worker::apply_limits(store.as_mut(), settings)?;
    writeln!(
        out,
        "running {} on {} as worker {}",
        migration.id(),
        info.describe(),
        options.worker
    )?;
    let mut report = worker::execute_job(
        store.as_mut(),
        settings,
        migration,
        options,
        worker::JobKind::Migration,
        &mut worker::Statement,
        monitor,
    )?;
    report.retries += connects;
    if let Some(old) = report.restarted {
        writeln!(
            out,
            "started {} over: run {old} (cancelled) is superseded by run {}, which goes through every row again",
            report.migration, report.run_id
        )?;
    }
    if !report.throttled.is_zero() {
        writeln!(
            out,
            "{} waited {} for the database's health (the plan's limits)",
            report.migration,
            format_duration(report.throttled)
        )?;
    }
    if let Some(failure) = &report.resumed_failure {
        writeln!(
            out,
            "resumed {} after its failure: {failure}",
            report.migration
        )?;
    }
    match report.finish {
        Finish::AlreadyDone => writeln!(
            out,
            "{} is already done on {}",
            report.migration,
            info.describe()
        )?,
        Finish::Done => writeln!(
            out,
            "{} done: this worker ran {} changing {} in {} ({}, longest batch transaction {}); the run changed {}",
            report.migration,
            count(report.batches, "batch", "batches"),
            count(report.rows, "row", "rows"),
            format_duration(report.elapsed),
            count(report.retries, "retry", "retries"),
            format_duration(report.longest_hold),
            count(report.run_rows, "row", "rows")
        )?,
        Finish::Cancelled => writeln!(
            out,
            "{} was cancelled: this worker stopped after {} ({}); what ran stays applied; {}",
            report.migration,
            count(report.batches, "batch", "batches"),
            count(report.rows, "row", "rows"),
            control::restart_hint(report.run_id)
        )?,
        Finish::Interrupted => writeln!(
            out,
            "{} stopped after the current batch ({}, {} by this worker); run the plan again to resume",
            report.migration,
            count(report.batches, "batch", "batches"),
            count(report.rows, "row", "rows")
        )?,
    }
    Ok(report)
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

/// Converts a store error of a control command into a message without credentials.
pub fn transition_message(t: &Transition, to: RunState, name: &str) -> (bool, String) {
    match t {
        Transition::Changed { from } => (true, format!("{name}: {from} -> {to}")),
        Transition::Unchanged => (true, format!("{name} is already {to}")),
        Transition::Refused { reason, .. } => (false, format!("{name}: {reason}")),
    }
}
