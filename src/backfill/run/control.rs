//! Live control of runs through the tracking tables, from any terminal or machine that reaches
//! the database: `status`, `pause`, `resume`, `cancel` and `pace`. Workers read the run's row
//! between batches, so a change takes effect after the batch in flight.
//!
//! Runs are named like data migrations (`V1__backfill_counter_caches`, `V1`, `1` or
//! `backfill_counter_caches`) and found in the tracking tables, so control needs no checkout of
//! the data migrations.

use std::time::Duration;

use crate::backfill::display::thousands;
use crate::backfill::display::{count, format_duration};
use crate::backfill::run::tracking::{
    Pace, PaceChange, RunRow, RunState, Store, StoreResult, Transition,
};

/// The run `name` designates, or an error listing the recorded ones.
pub fn find(store: &mut dyn Store, name: &str) -> anyhow::Result<RunRow> {
    if !store.tables_exist()? {
        anyhow::bail!("no backfill has run on this database (no tracking tables)");
    }
    let runs = store.runs()?;
    let wanted = name.trim();
    let version = wanted
        .strip_prefix('V')
        .unwrap_or(wanted)
        .parse::<u64>()
        .ok();
    let matches = |r: &RunRow| {
        let (v, n) = crate::backfill::migration::parse_file_name(&format!("{}.sql", r.migration))
            .unwrap_or((u64::MAX, String::new()));
        r.migration == wanted || n == wanted || version == Some(v)
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
    Ok((ok, message))
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

/// Seconds after which a worker that has not touched its claim is shown as silent.
const SILENT_AFTER: f64 = 30.0;

/// The status of every recorded run (or one), for people.
pub fn status(store: &mut dyn Store, only: Option<&str>) -> StoreResult<String> {
    let runs = store.runs()?;
    let mut out = String::new();
    if runs.is_empty() {
        out.push_str("no runs recorded\n");
    }
    for run in runs
        .iter()
        .filter(|r| only.is_none_or(|n| n == r.migration))
    {
        let control = store.control(run.id)?;
        let ranges = store.ranges(run.id)?;
        let (recent_rows, longest) = store.recent(run.id, Duration::from_secs(60))?;
        let mut line = format!(
            "{}  {}  {}",
            run.migration,
            run.state,
            count(control.rows_done, "row", "rows")
        );
        if let Some(total) = run.rows_estimated.filter(|t| *t > 0) {
            let total = total.max(control.rows_done);
            line.push_str(&format!(
                " of ~{} ({}%)",
                thousands(total),
                (control.rows_done as f64 * 100.0 / total as f64).round()
            ));
        }
        let rate = recent_rows as f64 / 60.0;
        if run.state == RunState::Running {
            line.push_str(&format!(
                ", {} rows/s over the last minute",
                thousands(rate.round() as u64)
            ));
            if let Some(total) = run.rows_estimated
                && rate > 0.0
            {
                let left = total.saturating_sub(control.rows_done) as f64 / rate;
                line.push_str(&format!(
                    ", ETA {}",
                    format_duration(Duration::from_secs_f64(left.min(1e7)))
                ));
            }
        }
        out.push_str(&line);
        out.push('\n');
        let mut workers: Vec<String> = ranges
            .iter()
            .filter(|r| !r.done)
            .filter_map(|r| {
                let who = r.claimed_by.as_ref()?;
                let age = r.heartbeat_age.unwrap_or(f64::INFINITY);
                Some(if age > SILENT_AFTER {
                    format!(
                        "{who} (silent for {})",
                        format_duration(Duration::from_secs_f64(age.min(1e7)))
                    )
                } else {
                    who.clone()
                })
            })
            .collect();
        workers.sort();
        workers.dedup();
        out.push_str(&format!(
            "  ranges {}/{} done; workers: {}\n",
            control.ranges_done,
            control.ranges,
            if workers.is_empty() {
                "none".to_string()
            } else {
                workers.join(", ")
            }
        ));
        out.push_str(&format!(
            "  table {} by {}; longest batch transaction {}\n",
            run.table,
            run.key,
            format_duration(longest)
        ));
        if run.pace != Pace::default() {
            out.push_str(&format!("  pace overrides: {}\n", describe_pace(&run.pace)));
        }
        out.push_str(&format!(
            "  checksum {}; recorded {}; updated {}{}\n",
            crate::backfill::display::short(&run.checksum),
            run.created_at,
            run.updated_at,
            run.finished_at
                .as_deref()
                .map(|t| format!("; finished {t}"))
                .unwrap_or_default()
        ));
        if let Some(e) = &run.last_error {
            out.push_str(&format!("  last error: {e}\n"));
        }
        if run.state == RunState::Running && workers.is_empty() {
            out.push_str(
                "  no worker holds a range: start `backfill run` with the plan to continue\n",
            );
        }
    }
    Ok(out)
}
