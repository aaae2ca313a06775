//! The `backfill sample` and `backfill status` commands as clap argument structs with a `run`
//! method, for the binary (or another workspace's xtask) to mount.
//!
//! Exit codes: 0 when everything passed, 1 when a check failed or a snapshot differs (or is
//! stale), and errors (bad input, a statement the database refuses) bubble up for the binary to
//! print on one line and exit 2.

use std::io::Write;
use std::process::ExitCode;

use crate::backfill::migration::{self, DataMigration};
use crate::backfill::sample::engine::Engine;
use crate::backfill::sample::snapshot::{Mode, Outcome};
use crate::backfill::sample::{self, SampleOptions};
use crate::backfill::status::{self, StatusFormat};
use crate::config::{Config, SampleEngine};

/// The `backfill` subcommands, mounted as `backfill <command>`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum BackfillCommand {
    /// Run data migrations on the fixtures in a fresh database, check them, compare snapshots
    ///
    /// Each data migration runs on a fresh database of the engine (--engine, else sample-engine in
    /// the config): a temporary SQLite database, a private PostgreSQL cluster started from this
    /// machine's PostgreSQL binaries, or a throwaway schema of the server of --database-url; it
    /// is built from the schema migrations and the fixtures; its checks must return no rows, and the
    /// rows of its snapshot query are compared with its accepted snapshot in
    /// data-migrations/snapshots/. An accepted snapshot of the current file is the approval
    /// `backfill plan` requires.
    ///
    /// A new or different snapshot is written beside it as `.snap.new` for review. Accept it
    /// with `cargo insta review` (install it with `cargo install cargo-insta`), or without
    /// cargo-insta: check the rows printed, then run `INSTA_UPDATE=always cargo xtask backfill
    /// sample NAME`, which writes the `.snap` itself. insta's other settings apply too:
    /// `INSTA_UPDATE=no`, or `CI` set, writes nothing, like --check.
    ///
    /// Exit status: 0 all passed, 1 a check failed or a snapshot is new, differs or is stale,
    /// 2 error.
    Sample(SampleArgs),
    /// List every data migration with its approval and, with a database, its run there
    ///
    /// Each data migration of the workspace: approved, snapshot stale, or no snapshot. With
    /// --database-url (or DATABASE_URL), also its run on that database (state, rows, rate, ETA,
    /// workers, ranges, last error), "not run" when it has none, and the runs recorded there whose
    /// data migration is not in the workspace. `--format json` prints one JSON document
    /// (docs/backfill-run.md describes it).
    Status(StatusArgs),
    /// Make the reviewable plan of a production run (refuses an unapproved data migration)
    ///
    /// Writes the plan file (JSON, to commit and review) and prints its summary: the data
    /// migration's checksum and required schema version, the settings, the key range and row
    /// estimate read from the catalog and the key's index (never a table scan), the exact SQL,
    /// and the commands that run and control it. Without a database URL, bounds and estimates
    /// are read when the run starts. The data migration must be approved first: run
    /// `cargo xtask backfill sample NAME` and accept its snapshot.
    Plan(crate::cli::production::PlanArgs),
    /// Execute a plan batch by batch, exactly once and resumable; start several to scale out
    ///
    /// After a cancel, `--restart RUN` starts a new run that goes through every row again,
    /// re-applying the batch statement to the rows the cancelled run changed (see --restart).
    ///
    /// Exit status: 0 done, 1 cancelled or stopped by SIGINT/SIGTERM, 2 error.
    Run(crate::cli::production::RunArgs),
    /// Pause a run: its workers wait after their current batch
    Pause(crate::cli::production::PauseArgs),
    /// Resume a paused run
    Resume(crate::cli::production::ResumeArgs),
    /// Cancel a run for good (what ran stays applied)
    Cancel(crate::cli::production::CancelArgs),
    /// Change the batch size, pause or rows-per-second cap of a running backfill
    Pace(crate::cli::production::PaceArgs),
    /// Capture a sampled, FK-closed, PII-scrubbed subset of a PostgreSQL database as fixtures
    ///
    /// Reads the source in one REPEATABLE READ, read-only transaction with a statement_timeout:
    /// root rows by predicate and/or a deterministic fraction (md5 of a seed and the key), their
    /// configured children with a cap per parent, then every row they reference over the
    /// catalog's foreign keys. Every column is kept, nulled, faked, hashed (HMAC) or replaced by
    /// a constant by its policy in [workspace.metadata.xtask-migrate.capture]; a personal-looking
    /// text column without one stops the capture. Writes fixtures/<table>.csv and
    /// fixtures/manifest.json (schema version, counts, checksums, settings; the source as host,
    /// port and database only), replacing the directory only once everything is written.
    ///
    /// Exit status: 0 written, 2 error or refusal (nothing written).
    Capture(crate::cli::capture::CaptureArgs),
    /// Compare the data migration's expected rows with the actual rows, batch by batch, read-only
    ///
    /// Walks the key range like `run` (paced, resumable, and controlled with status, pause,
    /// resume, cancel and pace under the name `V{n}__{name}:verify`), comparing per range a row
    /// count and a hash computed in the database on each side, and rows only where they differ.
    /// Reports each differing key by category (missing, extra, value with its columns, length,
    /// order), after re-reading it. Keys and column names only: values with --show-values.
    ///
    /// Exit status: 0 no difference, 1 differences (or stopped before the end), 2 error.
    Verify(Box<crate::cli::verify::VerifyArgs>),
}

impl BackfillCommand {
    pub fn run(self, config: &Config) -> anyhow::Result<ExitCode> {
        match self {
            BackfillCommand::Sample(args) => args.run(config),
            BackfillCommand::Status(args) => args.run(config),
            BackfillCommand::Plan(args) => args.run(config),
            BackfillCommand::Run(args) => args.run(config),
            BackfillCommand::Pause(args) => args.run(config),
            BackfillCommand::Resume(args) => args.run(config),
            BackfillCommand::Cancel(args) => args.run(config),
            BackfillCommand::Pace(args) => args.run(config),
            BackfillCommand::Capture(args) => args.run(config),
            BackfillCommand::Verify(args) => args.run(config),
        }
    }
}

/// Run data migrations on the fixtures in a fresh database, check them, compare their snapshots.
#[derive(Debug, Clone, clap::Args)]
pub struct SampleArgs {
    /// The data migration: file name, `V1`, or its name (default: every data migration).
    pub name: Option<String>,
    /// Write nothing; fail on any snapshot difference, printing the diff (what CI runs).
    #[arg(long)]
    pub check: bool,
    /// Rows per batch (default: about 100 batches of at least 100 rows, at most the data
    /// migration's own batch size)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_size: Option<u64>,
    /// What to sample on (default: sample-engine in [workspace.metadata.xtask-migrate], else
    /// auto: postgres-local for a postgres workspace on a machine with PostgreSQL's server
    /// binaries, else sqlite)
    #[arg(long, value_enum, value_name = "ENGINE")]
    pub engine: Option<SampleEngine>,
    /// Sample on a throwaway schema of this PostgreSQL server (engine postgres-url).
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// How long postgres-local keeps its cluster running after this command, for the next
    /// ones to reuse (`10m`, `90s`; `0`: a cluster for this command alone, stopped when it
    /// ends). Default: sample-keep-alive in [workspace.metadata.xtask-migrate], else 10m
    #[arg(long, value_name = "DURATION", value_parser = crate::backfill::migration::parse_duration)]
    pub keep_alive: Option<std::time::Duration>,
}

impl SampleArgs {
    pub fn run(self, config: &Config) -> anyhow::Result<ExitCode> {
        self.run_to(config, &mut std::io::stdout().lock())
    }

    /// [`SampleArgs::run`], printing to `out`.
    pub fn run_to(self, config: &Config, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
        let mode = Mode::from_env(self.check)?;
        let migrations = select(config, self.name.as_deref())?;
        if migrations.is_empty() {
            writeln!(
                out,
                "no data migrations in {}",
                crate::backfill::error::display_path(&config.data_migrations)
            )?;
            return Ok(ExitCode::SUCCESS);
        }
        let options = SampleOptions {
            batch_size: self.batch_size,
            mode,
        };
        // One engine for every data migration; a private cluster stops when it is dropped. It
        // starts while the inputs are read; its note (an `auto` that fell back) is printed
        // once both are ready.
        let (engine, database_url, keep_alive) = (self.engine, self.database_url, self.keep_alive);
        let mut note = Vec::new();
        let opened = sample::load_while_opening(config, || {
            Engine::open(config, engine, database_url, keep_alive, &mut note)
        });
        let (inputs, mut engine) = opened?;
        out.write_all(&note)?;
        let mut failed = Vec::new();
        let mut unapproved = Vec::new();
        let mut pending = false;
        for migration in &migrations {
            let report = sample::sample(config, &inputs, migration, &mut engine, &options, out)?;
            pending |= matches!(report.outcome, Outcome::Pending { .. });
            if !report.outcome.passed() {
                unapproved.push(report.id.clone());
            }
            if !report.passed() {
                failed.push(report.id);
            }
        }
        writeln!(
            out,
            "{} data {} sampled: {} passed, {} failed",
            migrations.len(),
            if migrations.len() == 1 {
                "migration"
            } else {
                "migrations"
            },
            migrations.len() - failed.len(),
            failed.len()
        )?;
        if failed.is_empty() {
            return Ok(ExitCode::SUCCESS);
        }
        let sample = match unapproved.as_slice() {
            [one] => format!("cargo xtask backfill sample {one}"),
            _ => "cargo xtask backfill sample".to_string(),
        };
        if pending {
            writeln!(
                out,
                "review and accept the new snapshots with `cargo insta review` (`cargo install cargo-insta`), or accept the rows printed above without it: `INSTA_UPDATE=always {sample}`"
            )?;
        } else if mode == Mode::Check && !unapproved.is_empty() {
            writeln!(
                out,
                "to update: run `{sample}` and accept the snapshot with `cargo insta review` (or `INSTA_UPDATE=always {sample}`)"
            )?;
        }
        Ok(ExitCode::from(1))
    }
}

/// List every data migration with its approval: approved, snapshot stale, no snapshot; with a
/// database, also its run there (or "not run") and the runs of data migrations not in the
/// workspace.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub db: crate::cli::production::DbArgs,
    /// Output format: human, or json (one document, described in docs/backfill-run.md)
    #[arg(long, value_enum, default_value = "human")]
    pub format: StatusFormat,
    /// The deploy check: exit 1 while a data migration that a schema migration waits for
    /// (`-- migrate: after-backfill`) is not done on the database (needs --database-url)
    #[arg(long)]
    pub require_done: bool,
}

impl StatusArgs {
    pub fn run(self, config: &Config) -> anyhow::Result<ExitCode> {
        self.run_to(config, &mut std::io::stdout().lock())
    }

    pub fn run_to(self, config: &Config, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
        let report = if self.db.database_url.is_some() {
            let (target, mut store) = self.db.open(config)?;
            status::report(config, Some((&target, store.as_mut())))?
        } else {
            status::report(config, None)?
        };
        let text = match self.format {
            StatusFormat::Human => report.to_text(),
            StatusFormat::Json => report.to_json(),
        };
        out.write_all(crate::secrets::scrub(&text).as_bytes())?;
        if self.require_done {
            return self.require_done(config, out);
        }
        Ok(ExitCode::SUCCESS)
    }

    /// `--require-done`: 1 while a gated data migration is not done on the database.
    fn require_done(&self, config: &Config, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
        if self.db.database_url.is_none() {
            anyhow::bail!(
                "--require-done checks a database: pass --database-url URL or set DATABASE_URL"
            );
        }
        let (_, mut store) = self.db.open(config)?;
        let tables = store.tables_exist()?;
        let mut open = 0usize;
        for (schema, gate) in crate::backfill::deploy::gates(config)? {
            let state = if tables {
                store.find_run(&gate.id())?.map(|r| r.state)
            } else {
                None
            };
            if state != Some(crate::backfill::run::tracking::RunState::Done) {
                open += 1;
                let line = format!(
                    "not done: {} ({}), which {schema} waits for",
                    gate.id(),
                    state.map_or("not run".into(), |s| s.to_string())
                );
                // The JSON document stays one document: the reasons go to stderr then.
                match self.format {
                    StatusFormat::Human => writeln!(out, "{line}")?,
                    StatusFormat::Json => eprintln!("{line}"),
                }
            }
        }
        Ok(if open == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        })
    }
}

fn select(config: &Config, name: Option<&str>) -> anyhow::Result<Vec<DataMigration>> {
    let dir = &config.data_migrations;
    if !dir.exists() {
        return Ok(Vec::new());
    }
    Ok(match name {
        Some(name) => vec![migration::find(dir, name)?],
        None => migration::load_dir(dir)?,
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(subcommand)]
        command: BackfillCommand,
    }

    #[test]
    fn parses_every_flag() {
        let cli = Cli::try_parse_from([
            "backfill",
            "sample",
            "V1",
            "--check",
            "--batch-size",
            "7",
            "--database-url",
            "postgres://u@h/db",
            "--engine",
            "postgres-url",
        ])
        .unwrap();
        let BackfillCommand::Sample(args) = cli.command else {
            panic!("{cli:?}")
        };
        assert_eq!(args.name.as_deref(), Some("V1"));
        assert!(args.check);
        assert_eq!(args.batch_size, Some(7));
        assert_eq!(args.database_url.as_deref(), Some("postgres://u@h/db"));
        assert_eq!(args.engine, Some(SampleEngine::PostgresUrl));
        assert!(matches!(
            Cli::try_parse_from(["backfill", "status"]).unwrap().command,
            BackfillCommand::Status(_)
        ));
    }

    #[test]
    fn an_unknown_engine_is_a_usage_error_naming_the_choices() {
        let e = Cli::try_parse_from(["backfill", "sample", "--engine", "postgres"])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("invalid value 'postgres' for '--engine <ENGINE>'")
                && e.contains("[possible values: auto, sqlite, postgres-local, postgres-url]"),
            "{e}"
        );
    }

    #[test]
    fn a_zero_batch_size_is_a_usage_error() {
        assert!(Cli::try_parse_from(["backfill", "sample", "--batch-size", "0"]).is_err());
    }

    #[test]
    fn the_command_definition_is_valid() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
