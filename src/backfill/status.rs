//! `backfill status`: every data migration of the workspace with its approval and, when a
//! database is given, its run there; runs recorded on the database whose data migration is not in
//! the workspace are listed too. The same [`Report`] renders as text for people and as JSON for
//! machines (documented in `docs/backfill-run.md`).
//!
//! Read-only: the workspace's files and, on the database, the tracking tables (never created
//! here).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::backfill::db::target::Target;
use crate::backfill::migration::{self, DataMigration};
use crate::backfill::run::control::{self, RunStatus};
use crate::backfill::run::tracking::{RunRow, Store};
use crate::backfill::run::worker::VERIFY_SUFFIX;
use crate::backfill::sample::{self, snapshot};
use crate::config::Config;

/// The version of the JSON document; it changes only when a field changes meaning or goes away
/// (new fields may appear).
pub const FORMAT_VERSION: u32 = 1;

/// `--format` of `backfill status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum StatusFormat {
    /// Lines for people.
    #[default]
    Human,
    /// One JSON document (see docs/backfill-run.md).
    Json,
}

/// What `backfill status` shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub format_version: u32,
    /// The database the runs were read from (never with a password); null without one.
    pub database: Option<String>,
    /// The workspace's data migrations in version order, then runs of data migrations that are
    /// not in it.
    pub data_migrations: Vec<MigrationStatus>,
    /// Where the data migrations were looked for (for the text when there are none).
    #[serde(skip)]
    pub directory: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MigrationStatus {
    pub id: String,
    /// The file, relative to the workspace root; null when it is not in the workspace.
    pub file: Option<String>,
    /// The file's checksum; null when it is not in the workspace.
    pub checksum: Option<String>,
    pub approval: ApprovalState,
    /// The accepted snapshot's checksum when it is from another version of the file.
    pub snapshot_checksum: Option<String>,
    /// A `.snap.new` waits for `cargo insta review`.
    pub snapshot_pending_review: bool,
    /// One entry per database given (none without one); `state` is `not_run` when the data
    /// migration has no run there.
    pub runs: Vec<DatabaseRun>,
    /// The schema migrations that wait for it (`-- migrate: after-backfill`): `migrate run`
    /// holds them until it is done on the database.
    pub holds: Vec<String>,
    /// Its verification run (`backfill verify`, run name `V{n}__{name}:verify`) on each database
    /// given that has one; none otherwise.
    pub verifications: Vec<DatabaseRun>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalState {
    Approved,
    SnapshotStale,
    NoSnapshot,
    /// A run recorded on the database for a data migration the workspace does not have.
    NotInWorkspace,
}

impl ApprovalState {
    pub fn label(self) -> &'static str {
        match self {
            ApprovalState::Approved => "approved",
            ApprovalState::SnapshotStale => "snapshot stale",
            ApprovalState::NoSnapshot => "no snapshot",
            ApprovalState::NotInWorkspace => "not in the workspace",
        }
    }
}

/// A data migration's run on one database.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DatabaseRun {
    pub database: String,
    #[serde(flatten)]
    pub run: RunStatus,
}

/// Reads the workspace and, with `database`, its tracking tables.
pub fn report(
    config: &Config,
    database: Option<(&Target, &mut dyn Store)>,
) -> anyhow::Result<Report> {
    let migrations = if config.data_migrations.exists() {
        migration::load_dir(&config.data_migrations)?
    } else {
        Vec::new()
    };
    let dir = sample::snapshot_dir(config);
    let mut entries: Vec<MigrationStatus> = Vec::new();
    // Malformed directives are `migrate run`'s and `migrate lint`'s to report; status still
    // shows what it can.
    let gates = if config.migrations.is_dir() {
        crate::backfill::deploy::gates(config).unwrap_or_default()
    } else {
        Vec::new()
    };
    for m in &migrations {
        let mut entry = workspace_entry(config, &dir, m)?;
        entry.holds = gates
            .iter()
            .filter(|(_, gate)| gate.id() == m.id())
            .map(|(schema, _)| schema.clone())
            .collect();
        entries.push(entry);
    }
    let mut described = None;
    if let Some((target, store)) = database {
        let name = target.info().describe();
        let runs = if store.tables_exist()? {
            store.runs()?
        } else {
            Vec::new()
        };
        // Each data migration's runs, in the order they were recorded, and its verifications.
        let mut by_migration: BTreeMap<&str, Vec<&RunRow>> = BTreeMap::new();
        let mut verifications: BTreeMap<&str, Vec<&RunRow>> = BTreeMap::new();
        for run in &runs {
            match run.migration.strip_suffix(VERIFY_SUFFIX) {
                Some(base) => verifications.entry(base).or_default().push(run),
                None => by_migration.entry(&run.migration).or_default().push(run),
            }
        }
        let recorded: Vec<&str> = by_migration
            .keys()
            .chain(verifications.keys())
            .copied()
            .collect();
        for id in recorded {
            if !entries.iter().any(|e| e.id == id) {
                entries.push(MigrationStatus {
                    id: id.to_string(),
                    file: None,
                    checksum: None,
                    approval: ApprovalState::NotInWorkspace,
                    snapshot_checksum: None,
                    snapshot_pending_review: false,
                    runs: Vec::new(),
                    holds: Vec::new(),
                    verifications: Vec::new(),
                });
            }
        }
        for entry in &mut entries {
            let runs = by_migration.get(entry.id.as_str()).map_or(&[][..], |r| r);
            let (current, earlier): (Vec<&RunRow>, Vec<&RunRow>) =
                runs.iter().partition(|r| r.is_current());
            let run = match current.last() {
                Some(run) => control::run_status(store, run, &earlier)?,
                None => RunStatus {
                    earlier_runs: control::earlier_runs(store, &earlier)?,
                    ..RunStatus::not_run()
                },
            };
            entry.runs.push(DatabaseRun {
                database: name.clone(),
                run,
            });
            let checks = verifications.get(entry.id.as_str()).map_or(&[][..], |r| r);
            let (current, earlier): (Vec<&RunRow>, Vec<&RunRow>) =
                checks.iter().partition(|r| r.is_current());
            if let Some(run) = current.last() {
                entry.verifications.push(DatabaseRun {
                    database: name.clone(),
                    run: control::run_status(store, run, &earlier)?,
                });
            }
        }
        described = Some(name);
    }
    entries.sort_by_key(|e| {
        let version = migration::parse_file_name(&format!("{}.sql", e.id)).map(|(v, _)| v);
        (version.unwrap_or(u64::MAX), e.id.clone())
    });
    Ok(Report {
        format_version: FORMAT_VERSION,
        database: described,
        data_migrations: entries,
        directory: crate::backfill::error::display_path(&config.data_migrations),
    })
}

fn workspace_entry(
    config: &Config,
    dir: &std::path::Path,
    m: &DataMigration,
) -> anyhow::Result<MigrationStatus> {
    let (approval, snapshot_checksum) = match snapshot::approval(dir, m)? {
        snapshot::Approval::Approved => (ApprovalState::Approved, None),
        snapshot::Approval::Stale { recorded } => (ApprovalState::SnapshotStale, recorded),
        snapshot::Approval::NoSnapshot => (ApprovalState::NoSnapshot, None),
    };
    let file = m
        .path
        .strip_prefix(&config.root)
        .unwrap_or(&m.path)
        .display()
        .to_string();
    Ok(MigrationStatus {
        id: m.id(),
        file: Some(file),
        checksum: Some(m.checksum.clone()),
        approval,
        snapshot_checksum,
        snapshot_pending_review: snapshot::has_pending(dir, m),
        runs: Vec::new(),
        holds: Vec::new(),
        verifications: Vec::new(),
    })
}

impl Report {
    /// The text for people: a line per data migration (its id and approval), and under it, with
    /// a database, its run there.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        if let Some(database) = &self.database {
            out.push_str(&format!("runs on {database}:\n"));
        }
        if self.data_migrations.is_empty() {
            out.push_str(&format!("no data migrations in {}\n", self.directory));
            return out;
        }
        let width = self
            .data_migrations
            .iter()
            .map(|m| m.id.len())
            .max()
            .unwrap_or(0);
        for m in &self.data_migrations {
            let mut line = format!("{:<width$}  {}", m.id, m.approval.label());
            if m.approval == ApprovalState::SnapshotStale {
                line.push_str(&format!(
                    " (taken from checksum {}, the file is {})",
                    m.snapshot_checksum
                        .as_deref()
                        .map_or("none", crate::backfill::display::short),
                    m.checksum
                        .as_deref()
                        .map_or("none", crate::backfill::display::short)
                ));
            }
            if m.snapshot_pending_review {
                line.push_str(", a new snapshot awaits `cargo insta review`");
            }
            out.push_str(line.trim_end());
            out.push('\n');
            if !m.holds.is_empty() {
                out.push_str(&format!(
                    "  holds back {} (`-- migrate: after-backfill`) until done\n",
                    m.holds.join(", ")
                ));
            }
            for run in &m.runs {
                for (i, text) in control::describe(&run.run, m.checksum.as_deref())
                    .iter()
                    .enumerate()
                {
                    let indent = if i == 0 { "  " } else { "    " };
                    out.push_str(&format!("{indent}{text}\n"));
                }
            }
            for run in &m.verifications {
                for (i, text) in control::describe(&run.run, m.checksum.as_deref())
                    .iter()
                    .enumerate()
                {
                    // A verification starts over by itself: not by a plan's `--restart`.
                    let text = if text.starts_with("to start over") {
                        control::VERIFY_AGAIN.to_string()
                    } else {
                        text.clone()
                    };
                    let text = if i == 0 {
                        format!("  verification {text}")
                    } else {
                        format!("    {text}")
                    };
                    out.push_str(&text);
                    out.push('\n');
                }
            }
        }
        out
    }

    pub fn to_json(&self) -> String {
        // Plain data (strings, numbers, options): serializing it cannot fail.
        let mut out = serde_json::to_string_pretty(self).unwrap_or_default();
        out.push('\n');
        out
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::backfill::run::control::{EarlierRun, PaceOverrides, RangeCount, WorkerStatus};
    use crate::backfill::run::tracking::RunState;

    fn running() -> RunStatus {
        RunStatus {
            state: Some(RunState::Running),
            run_id: Some(3),
            interrupted: false,
            checksum: Some("0123456789abcdef".into()),
            table: Some("items".into()),
            key: Some("id".into()),
            rows_done: 27_000,
            rows_estimated: Some(2_400_000),
            rows_per_second: Some(9_000.0),
            rate_window_seconds: Some(3.0),
            eta_seconds: Some(263.7),
            workers: vec![WorkerStatus {
                id: "host:1".into(),
                live: true,
                heartbeat_age_seconds: Some(0.2),
            }],
            ranges: RangeCount { done: 0, total: 4 },
            longest_batch_seconds: Some(0.12),
            pace: PaceOverrides::default(),
            last_error: None,
            throttled_since: None,
            throttle_reason: None,
            created_at: Some("2026-11-21T10:00:00.000Z".into()),
            started_at: Some("2026-11-21T10:00:00.100Z".into()),
            updated_at: Some("2026-11-21T10:00:00.100Z".into()),
            finished_at: None,
            restart_of: None,
            earlier_runs: Vec::new(),
        }
    }

    fn entry(id: &str, approval: ApprovalState, run: Option<RunStatus>) -> MigrationStatus {
        MigrationStatus {
            id: id.into(),
            file: (approval != ApprovalState::NotInWorkspace)
                .then(|| format!("data-migrations/{id}.sql")),
            checksum: (approval != ApprovalState::NotInWorkspace)
                .then(|| "0123456789abcdef".into()),
            approval,
            snapshot_checksum: (approval == ApprovalState::SnapshotStale)
                .then(|| "fedcba9876543210".into()),
            snapshot_pending_review: false,
            runs: run
                .into_iter()
                .map(|run| DatabaseRun {
                    database: "PostgreSQL db.internal:5432/app".into(),
                    run,
                })
                .collect(),
            holds: if id.starts_with("V1__") {
                vec!["V5__index_users_by_followers".into()]
            } else {
                Vec::new()
            },
            verifications: Vec::new(),
        }
    }

    fn report(entries: Vec<MigrationStatus>, database: bool) -> Report {
        Report {
            format_version: FORMAT_VERSION,
            database: database.then(|| "PostgreSQL db.internal:5432/app".into()),
            data_migrations: entries,
            directory: "data-migrations".into(),
        }
    }

    /// A run three seconds old at 9,000 rows/s reads as such; an interrupted one shows no rate
    /// and no ETA; approvals and data migrations never run are listed beside runs.
    #[test]
    fn text_with_a_database() {
        let mut interrupted = running();
        interrupted.run_id = Some(4);
        interrupted.interrupted = true;
        interrupted.rows_per_second = None;
        interrupted.rate_window_seconds = None;
        interrupted.eta_seconds = None;
        interrupted.workers = vec![WorkerStatus {
            id: "host:2".into(),
            live: false,
            heartbeat_age_seconds: Some(4.0),
        }];
        let mut restarted = running();
        restarted.state = Some(RunState::Done);
        restarted.run_id = Some(6);
        restarted.rows_done = 2_400_000;
        restarted.rows_per_second = None;
        restarted.rate_window_seconds = None;
        restarted.eta_seconds = None;
        restarted.workers = Vec::new();
        restarted.ranges = RangeCount { done: 4, total: 4 };
        restarted.finished_at = Some("2026-11-21T10:05:00.000Z".into());
        restarted.restart_of = Some(5);
        restarted.earlier_runs = vec![EarlierRun {
            run_id: 5,
            state: RunState::Cancelled,
            checksum: "0123456789abcdef".into(),
            rows_done: 1_200,
            started_at: None,
            finished_at: Some("2026-11-21T09:00:00.000Z".into()),
            superseded_at: Some("2026-11-21T09:30:00.000Z".into()),
            superseded_by: Some("alice@ops-1".into()),
        }];
        let mut failed = running();
        failed.state = Some(RunState::Failed);
        failed.run_id = Some(7);
        failed.checksum = Some("bbbbbbbbbbbbbbbb".into());
        failed.rows_per_second = None;
        failed.rate_window_seconds = None;
        failed.eta_seconds = None;
        failed.workers = Vec::new();
        failed.last_error =
            Some("batch of range 2 failed: keys (40, 60]: deadlock detected".into());
        failed.pace = PaceOverrides {
            batch_size: Some(500),
            pause_ms: Some(50),
            max_rows_per_second: None,
        };
        let mut cancelled = running();
        cancelled.state = Some(RunState::Cancelled);
        cancelled.run_id = Some(1);
        cancelled.rows_per_second = None;
        cancelled.rate_window_seconds = None;
        cancelled.eta_seconds = None;
        cancelled.workers = Vec::new();
        cancelled.checksum = Some("aaaaaaaaaaaaaaaa".into());
        let text = report(
            vec![
                entry("V0__gone", ApprovalState::NotInWorkspace, Some(cancelled)),
                entry("V1__fast", ApprovalState::Approved, Some(running())),
                entry("V2__killed", ApprovalState::Approved, Some(interrupted)),
                entry("V3__again", ApprovalState::Approved, Some(restarted)),
                entry(
                    "V4__new",
                    ApprovalState::SnapshotStale,
                    Some(RunStatus::not_run()),
                ),
                entry(
                    "V5__draft",
                    ApprovalState::NoSnapshot,
                    Some(RunStatus::not_run()),
                ),
                entry("V6__edited", ApprovalState::Approved, Some(failed)),
            ],
            true,
        )
        .to_text();
        insta::assert_snapshot!(text);
    }

    /// Machines read the same keys whatever the state: a data migration that has not run has
    /// every field of one that has.
    #[test]
    fn json_has_one_shape() {
        let json = report(
            vec![
                entry("V1__fast", ApprovalState::Approved, Some(running())),
                entry(
                    "V2__new",
                    ApprovalState::NoSnapshot,
                    Some(RunStatus::not_run()),
                ),
            ],
            true,
        )
        .to_json();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["format_version"], 1);
        let runs: Vec<&serde_json::Value> = value["data_migrations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| &m["runs"][0])
            .collect();
        let keys = |v: &serde_json::Value| {
            let mut keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            keys.sort();
            keys
        };
        assert_eq!(keys(runs[0]), keys(runs[1]));
        assert_eq!(runs[0]["state"], "running");
        assert_eq!(runs[0]["throttled_since"], serde_json::Value::Null);
        assert_eq!(runs[1]["state"], "not_run");
        assert_eq!(runs[1]["database"], "PostgreSQL db.internal:5432/app");
        assert_eq!(value["data_migrations"][1]["approval"], "no_snapshot");
    }

    #[test]
    fn text_without_a_database_is_the_approvals() {
        let text = report(
            vec![
                entry("V1__fast", ApprovalState::Approved, None),
                entry("V12__slow", ApprovalState::NoSnapshot, None),
            ],
            false,
        )
        .to_text();
        assert_eq!(
            text,
            "V1__fast   approved\n  holds back V5__index_users_by_followers (`-- migrate: after-backfill`) until done\nV12__slow  no snapshot\n"
        );
        assert_eq!(
            report(Vec::new(), false).to_text(),
            "no data migrations in data-migrations\n"
        );
    }

    #[test]
    fn the_rate_covers_the_time_the_batches_took() {
        use crate::backfill::run::tracking::Recent;
        let recent = |rows, span: Option<f64>| Recent {
            rows,
            span: span.map(Duration::from_secs_f64),
            longest: Duration::ZERO,
        };
        // Three seconds into a run at 9,000 rows/s: 9,000 rows/s, not 27,000 / 60.
        let (rate, span) = control::rate(&recent(27_000, Some(3.0))).unwrap();
        assert_eq!((rate.round(), span), (9_000.0, Duration::from_secs(3)));
        // A long run: over the whole minute.
        let (rate, _) = control::rate(&recent(60_000, Some(60.0))).unwrap();
        assert_eq!(rate.round(), 1_000.0);
        // One short batch says too little; no batch says nothing.
        assert_eq!(control::rate(&recent(500, Some(0.2))), None);
        assert_eq!(control::rate(&recent(0, None)), None);
    }
}
