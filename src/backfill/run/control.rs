//! Live control of runs through the tracking tables, from any terminal or machine that reaches
//! the database: `status`, `pause`, `resume`, `cancel` and `pace`. Workers read the run's row
//! between batches, so a change takes effect after the batch in flight.
//!
//! Runs are named like data migrations (`V1__backfill_counter_caches`, `V1`, `1` or
//! `backfill_counter_caches`) and found in the tracking tables, so control needs no checkout of
//! the data migrations. A name designates the data migration's current run; runs a restart
//! replaced are only shown.

use std::time::Duration;

use serde::Serialize;

use crate::backfill::display::thousands;
use crate::backfill::display::{count, format_duration};
use crate::backfill::run::health::Health;
use crate::backfill::run::tracking::{
    HealthPace, Pace, PaceChange, RangeRow, Recent, RunRow, RunState, Store, StoreResult,
    Transition,
};

/// The run `name` designates, or an error listing the recorded ones.
pub fn find(store: &mut dyn Store, name: &str) -> anyhow::Result<RunRow> {
    if !store.tables_exist()? {
        anyhow::bail!("no backfill has run on this database (no tracking tables)");
    }
    let runs: Vec<RunRow> = store
        .runs()?
        .into_iter()
        .filter(RunRow::is_current)
        .collect();
    let wanted = name.trim();
    // A verification run is named like its data migration with `:verify` after it, in any of
    // the forms a data migration is named (`V1:verify`, `fill:verify`).
    let suffix = crate::backfill::run::worker::VERIFY_SUFFIX;
    let (base, verification) = match wanted.strip_suffix(suffix) {
        Some(base) => (base, true),
        None => (wanted, false),
    };
    let version = base.strip_prefix('V').unwrap_or(base).parse::<u64>().ok();
    let matches = |r: &RunRow| {
        let (migration, is_verification) = match r.migration.strip_suffix(suffix) {
            Some(m) => (m, true),
            None => (r.migration.as_str(), false),
        };
        let (v, n) = crate::backfill::migration::parse_file_name(&format!("{migration}.sql"))
            .unwrap_or((u64::MAX, String::new()));
        is_verification == verification && (migration == base || n == base || version == Some(v))
    };
    match runs.iter().find(|r| matches(r)) {
        Some(run) => Ok(run.clone()),
        None => {
            let known: Vec<&str> = runs.iter().map(|r| r.migration.as_str()).collect();
            anyhow::bail!(
                "no run of `{wanted}` is recorded on this database (recorded: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )
        }
    }
}

/// Asks for a state change; `Ok((changed_or_already, message))`.
pub fn set_state(
    store: &mut dyn Store,
    name: &str,
    to: RunState,
) -> anyhow::Result<(bool, String)> {
    let run = find(store, name)?;
    let t = store.transition(run.id, to, None)?;
    let (ok, mut message) = crate::backfill::run::transition_message(&t, to, &run.migration);
    if matches!(t, Transition::Changed { .. }) {
        message.push_str(match to {
            RunState::Paused => "; workers wait after their current batch (`resume` to continue)",
            RunState::Running => {
                "; waiting workers continue (start `backfill run` if none is left)"
            }
            RunState::Cancelled => {
                "; workers stop after their current batch, what ran stays applied"
            }
            _ => "",
        });
    }
    // A cancelled run is final; say what comes next instead of leaving a dead end.
    let cancelled = match t {
        Transition::Changed { .. } | Transition::Unchanged => to == RunState::Cancelled,
        Transition::Refused { from, .. } => from == RunState::Cancelled,
    };
    if cancelled {
        message.push_str("; ");
        if run
            .migration
            .ends_with(crate::backfill::run::worker::VERIFY_SUFFIX)
        {
            message.push_str(VERIFY_AGAIN);
        } else {
            message.push_str(&restart_hint(run.id));
        }
    }
    Ok((ok, message))
}

/// How to go on after a cancelled verification: it is read-only, so it simply starts over.
pub const VERIFY_AGAIN: &str =
    "`backfill verify` starts a new verification (the cancelled one stays on record)";

/// How to go on after the cancelled run `run_id`, in the words every command uses.
pub fn restart_hint(run_id: i64) -> String {
    format!(
        "to start over, run the plan again with `--restart {run_id}` (a new run goes through every row again, re-applying the batch statement to the rows this run changed), or write a new data migration"
    )
}

pub fn set_pace(
    store: &mut dyn Store,
    name: &str,
    change: &PaceChange,
) -> anyhow::Result<(RunRow, Pace)> {
    let run = find(store, name)?;
    if run.state.is_terminal() {
        anyhow::bail!(
            "{} is {}: there is no pace to change",
            run.migration,
            run.state
        );
    }
    let pace = store.set_pace(run.id, change)?;
    Ok((run, pace))
}

pub fn describe_pace(pace: &Pace) -> String {
    format!(
        "batch size {}, pause {}, {}",
        pace.batch_size
            .map_or("from the plan (adaptive)".into(), |b| format!(
                "{} (fixed)",
                thousands(b)
            )),
        pace.pause.map_or("from the plan".into(), format_duration),
        pace.max_rows_per_second
            .map_or("rows/s cap from the plan".into(), |c| format!(
                "at most {} rows/s",
                thousands(c)
            ))
    )
}

/// The health limits `run` works by: its plan's (recorded with the run), with `pace`'s
/// overrides `live`.
pub fn run_health(run: &RunRow, live: &HealthPace) -> Health {
    serde_json::from_str::<serde_json::Value>(&run.settings)
        .ok()
        .and_then(|v| serde_json::from_value::<Health>(v["health"].clone()).ok())
        .unwrap_or_default()
        .with(live)
}

/// [`run_health`] in words.
pub fn describe_health(run: &RunRow, live: &HealthPace) -> String {
    let health = run_health(run, live);
    if health.is_off() {
        "off".into()
    } else {
        health.describe().join("; ")
    }
}

/// Seconds after which a worker that has not touched its claim is shown as silent.
const SILENT_AFTER: f64 = 30.0;

/// The window the rate is measured over.
pub const RATE_WINDOW: Duration = Duration::from_secs(60);

/// The smallest span a rate is computed over: one short batch says little about the pace.
const MIN_RATE_SPAN: Duration = Duration::from_secs(1);

/// A run as `backfill status` shows it, in text and as JSON (the names are the JSON's, documented
/// in `docs/backfill-run.md`). A data migration that has not run on the database is
/// [`RunStatus::not_run`]: every field is there, `state` is `"not_run"`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunStatus {
    /// The run's state, `None` for a data migration that has not run (`"not_run"` in JSON).
    #[serde(serialize_with = "state_name")]
    pub state: Option<RunState>,
    pub run_id: Option<i64>,
    /// Running or paused, but no live worker holds a range (every worker was stopped or killed).
    pub interrupted: bool,
    /// The checksum of the file the run was made from.
    pub checksum: Option<String>,
    pub table: Option<String>,
    pub key: Option<String>,
    pub rows_done: u64,
    /// The catalog's estimate when the run started.
    pub rows_estimated: Option<u64>,
    /// Rows per second over [`RunStatus::rate_window_seconds`]; only while running with a live
    /// worker, and once the window is long enough to tell.
    pub rows_per_second: Option<f64>,
    /// The time the rate covers: from the start of the first batch in the last minute, at most a
    /// minute.
    pub rate_window_seconds: Option<f64>,
    pub eta_seconds: Option<f64>,
    /// Workers holding a range that is not done.
    pub workers: Vec<WorkerStatus>,
    pub ranges: RangeCount,
    pub longest_batch_seconds: Option<f64>,
    pub pace: PaceOverrides,
    pub last_error: Option<String>,
    /// Since when a worker of the run waits for the database's health (replication lag, the
    /// WAL archiver, vacuum, the throttle query), and why; null while none waits.
    pub throttled_since: Option<String>,
    pub throttle_reason: Option<String>,
    pub created_at: Option<String>,
    pub started_at: Option<String>,
    pub updated_at: Option<String>,
    pub finished_at: Option<String>,
    /// The cancelled run this one restarted.
    pub restart_of: Option<i64>,
    /// Runs of the same data migration a restart replaced, oldest first.
    pub earlier_runs: Vec<EarlierRun>,
}

fn state_name<S: serde::Serializer>(state: &Option<RunState>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(state.map_or("not_run", RunState::as_str))
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkerStatus {
    pub id: String,
    /// Its session (or process) is there and its heartbeat is younger than the claim timeout.
    pub live: bool,
    pub heartbeat_age_seconds: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct RangeCount {
    pub done: u64,
    pub total: u64,
}

/// `backfill pace` overrides; null: the plan's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct PaceOverrides {
    pub batch_size: Option<u64>,
    pub pause_ms: Option<u64>,
    pub max_rows_per_second: Option<u64>,
}

/// A run a restart replaced.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EarlierRun {
    pub run_id: i64,
    pub state: RunState,
    pub checksum: String,
    pub rows_done: u64,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub superseded_at: Option<String>,
    /// Who restarted it (`user@host`).
    pub superseded_by: Option<String>,
}

impl RunStatus {
    pub fn not_run() -> RunStatus {
        RunStatus {
            state: None,
            run_id: None,
            interrupted: false,
            checksum: None,
            table: None,
            key: None,
            rows_done: 0,
            rows_estimated: None,
            rows_per_second: None,
            rate_window_seconds: None,
            eta_seconds: None,
            workers: Vec::new(),
            ranges: RangeCount::default(),
            longest_batch_seconds: None,
            pace: PaceOverrides::default(),
            last_error: None,
            throttled_since: None,
            throttle_reason: None,
            created_at: None,
            started_at: None,
            updated_at: None,
            finished_at: None,
            restart_of: None,
            earlier_runs: Vec::new(),
        }
    }
}

/// The claim timeout the run was planned with: a claim silent for longer is not live.
fn claim_timeout(run: &RunRow) -> f64 {
    serde_json::from_str::<serde_json::Value>(&run.settings)
        .ok()
        .and_then(|v| v["claim_timeout_s"].as_u64())
        .unwrap_or(crate::backfill::run::plan::Settings::DEFAULT_CLAIM_TIMEOUT_S) as f64
}

/// The workers holding the ranges that are not done, by name, live when any of their claims is.
pub fn workers(ranges: &[RangeRow], claim_timeout: f64) -> Vec<WorkerStatus> {
    let mut workers: Vec<WorkerStatus> = Vec::new();
    for range in ranges.iter().filter(|r| !r.done) {
        let Some(id) = &range.claimed_by else {
            continue;
        };
        let age = range.heartbeat_age;
        let live = range.claim_alive && age.is_some_and(|a| a < claim_timeout);
        match workers.iter_mut().find(|w| &w.id == id) {
            Some(w) => {
                w.live |= live;
                w.heartbeat_age_seconds = match (w.heartbeat_age_seconds, age) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            None => workers.push(WorkerStatus {
                id: id.clone(),
                live,
                heartbeat_age_seconds: age,
            }),
        }
    }
    workers.sort_by(|a, b| a.id.cmp(&b.id));
    workers
}

/// The rate over the batches of the last [`RATE_WINDOW`]: rows over the time since the first of
/// them started (a run three seconds old is measured over three seconds, not a minute); `None`
/// below [`MIN_RATE_SPAN`].
pub fn rate(recent: &Recent) -> Option<(f64, Duration)> {
    let span = recent.span?.min(RATE_WINDOW);
    (span >= MIN_RATE_SPAN).then(|| (recent.rows as f64 / span.as_secs_f64(), span))
}

/// The status of `run` (the current run of its data migration) and of the runs it replaced.
pub fn run_status(
    store: &mut dyn Store,
    run: &RunRow,
    earlier: &[&RunRow],
) -> StoreResult<RunStatus> {
    let control = store.control(run.id)?;
    let ranges = store.ranges(run.id)?;
    let recent = store.recent(run.id, RATE_WINDOW)?;
    let workers = workers(&ranges, claim_timeout(run));
    let active = matches!(run.state, RunState::Running | RunState::Paused);
    let interrupted = active && !workers.iter().any(|w| w.live);
    let (rows_per_second, rate_window_seconds) = if run.state == RunState::Running && !interrupted {
        match rate(&recent) {
            Some((rate, span)) => (Some(rate), Some(span.as_secs_f64())),
            None => (None, recent.span.map(|s| s.as_secs_f64())),
        }
    } else {
        (None, None)
    };
    let eta_seconds = match (rows_per_second, run.rows_estimated) {
        (Some(rate), Some(total)) if rate > 0.0 && total > control.rows_done => {
            Some(((total - control.rows_done) as f64 / rate).min(1e7))
        }
        _ => None,
    };
    let earlier_runs = earlier_runs(store, earlier)?;
    Ok(RunStatus {
        state: Some(run.state),
        run_id: Some(run.id),
        interrupted,
        checksum: Some(run.checksum.clone()),
        table: Some(run.table.clone()),
        key: Some(run.key.clone()),
        rows_done: control.rows_done,
        rows_estimated: run.rows_estimated,
        rows_per_second,
        rate_window_seconds,
        eta_seconds,
        workers,
        ranges: RangeCount {
            done: control.ranges_done,
            total: control.ranges,
        },
        longest_batch_seconds: Some(recent.longest.as_secs_f64()),
        pace: PaceOverrides {
            batch_size: run.pace.batch_size,
            pause_ms: run.pace.pause.map(|p| p.as_millis() as u64),
            max_rows_per_second: run.pace.max_rows_per_second,
        },
        last_error: run.last_error.clone(),
        // A worker that stopped while it waited leaves no one waiting.
        throttled_since: run
            .throttled_since
            .clone()
            .filter(|_| active && !interrupted),
        throttle_reason: run
            .throttle_reason
            .clone()
            .filter(|_| active && !interrupted),
        created_at: Some(run.created_at.clone()),
        started_at: run.started_at.clone(),
        updated_at: Some(run.updated_at.clone()),
        finished_at: run.finished_at.clone(),
        restart_of: run.restart_of,
        earlier_runs,
    })
}

/// The runs a restart replaced, as status shows them.
pub fn earlier_runs(store: &mut dyn Store, runs: &[&RunRow]) -> StoreResult<Vec<EarlierRun>> {
    let mut earlier = Vec::new();
    for old in runs {
        earlier.push(EarlierRun {
            run_id: old.id,
            state: old.state,
            checksum: old.checksum.clone(),
            rows_done: store.control(old.id)?.rows_done,
            started_at: old.started_at.clone(),
            finished_at: old.finished_at.clone(),
            superseded_at: old.superseded_at.clone(),
            superseded_by: old.superseded_by.clone(),
        });
    }
    Ok(earlier)
}

/// The lines `backfill status` prints for a run, the first one its summary. `file_checksum`:
/// the data migration's file as it is in the workspace, when it is there.
pub fn describe(status: &RunStatus, file_checksum: Option<&str>) -> Vec<String> {
    let (Some(state), Some(id)) = (status.state, status.run_id) else {
        return vec!["not run".to_string()];
    };
    let mut line = format!("run {id}: {state}");
    if status.interrupted {
        line.push_str(if state == RunState::Running {
            " (no live worker: interrupted?)"
        } else {
            " (no live worker)"
        });
    }
    line.push_str(&format!(", {}", count(status.rows_done, "row", "rows")));
    if let Some(total) = status.rows_estimated.filter(|t| *t > 0) {
        let total = total.max(status.rows_done);
        line.push_str(&format!(
            " of ~{} ({}%)",
            thousands(total),
            (status.rows_done as f64 * 100.0 / total as f64).round()
        ));
    }
    if state == RunState::Running && !status.interrupted {
        match (status.rows_per_second, status.rate_window_seconds) {
            (Some(rate), Some(span)) => {
                let span = Duration::from_secs_f64(span);
                let over = if span >= RATE_WINDOW {
                    "the last minute".to_string()
                } else {
                    format!("the last {}", format_duration(span))
                };
                line.push_str(&format!(
                    ", {} rows/s over {over}",
                    thousands(rate.round() as u64)
                ));
                if let Some(eta) = status.eta_seconds {
                    line.push_str(&format!(
                        ", ETA {}",
                        format_duration(Duration::from_secs_f64(eta))
                    ));
                }
            }
            (None, Some(_)) => line.push_str(", measuring the rate"),
            _ => line.push_str(", no batch in the last minute"),
        }
    }
    let mut lines = vec![line];
    if let (Some(since), Some(reason)) = (&status.throttled_since, &status.throttle_reason) {
        lines.push(format!("throttled since {since}: {reason}"));
    }
    let workers: Vec<String> = status
        .workers
        .iter()
        .map(|w| {
            let silent = w
                .heartbeat_age_seconds
                .filter(|a| *a > SILENT_AFTER)
                .map(|a| format_duration(Duration::from_secs_f64(a.min(1e7))));
            match (w.live, silent) {
                (true, None) => w.id.clone(),
                (true, Some(silent)) => format!("{} (silent for {silent})", w.id),
                (false, None) => format!("{} (gone)", w.id),
                (false, Some(silent)) => format!("{} (gone, silent for {silent})", w.id),
            }
        })
        .collect();
    lines.push(format!(
        "ranges {}/{} done; workers: {}",
        status.ranges.done,
        status.ranges.total,
        if workers.is_empty() {
            "none".to_string()
        } else {
            workers.join(", ")
        }
    ));
    lines.push(format!(
        "table {} by {}; longest batch transaction {}",
        status.table.as_deref().unwrap_or("?"),
        status.key.as_deref().unwrap_or("?"),
        format_duration(Duration::from_secs_f64(
            status.longest_batch_seconds.unwrap_or(0.0)
        ))
    ));
    let pace = Pace {
        batch_size: status.pace.batch_size,
        pause: status.pace.pause_ms.map(Duration::from_millis),
        max_rows_per_second: status.pace.max_rows_per_second,
    };
    if pace != Pace::default() {
        lines.push(format!("pace overrides: {}", describe_pace(&pace)));
    }
    let checksum = status.checksum.as_deref().unwrap_or_default();
    let mut times = format!("checksum {}", crate::backfill::display::short(checksum));
    if let Some(file) = file_checksum.filter(|f| *f != checksum) {
        times.push_str(&format!(
            " (the file's is now {})",
            crate::backfill::display::short(file)
        ));
    }
    for (what, at) in [
        ("recorded", &status.created_at),
        ("started", &status.started_at),
        ("updated", &status.updated_at),
        ("finished", &status.finished_at),
    ] {
        if let Some(at) = at {
            times.push_str(&format!("; {what} {at}"));
        }
    }
    lines.push(times);
    if let Some(e) = &status.last_error {
        lines.push(format!("last error: {e}"));
    }
    if let Some(old) = status.restart_of
        && !status.earlier_runs.iter().any(|e| e.run_id == old)
    {
        lines.push(format!("restarted from run {old}"));
    }
    for old in &status.earlier_runs {
        lines.push(format!(
            "earlier run {}: {} after {}; restarted{}{}",
            old.run_id,
            old.state,
            count(old.rows_done, "row", "rows"),
            old.superseded_at
                .as_deref()
                .map(|t| format!(" {t}"))
                .unwrap_or_default(),
            old.superseded_by
                .as_deref()
                .map(|b| format!(" by {b}"))
                .unwrap_or_default()
        ));
    }
    if status.interrupted {
        lines.push(match state {
            RunState::Paused => {
                "no live worker: `resume` it and start `backfill run` with the plan to continue"
                    .to_string()
            }
            _ => "no live worker: start `backfill run` with the plan to continue".to_string(),
        });
    }
    if state == RunState::Cancelled {
        lines.push(restart_hint(id));
    }
    lines
}
