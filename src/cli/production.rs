//! The production commands as clap argument structs with a `run` method, for the binary (or
//! another workspace's xtask) to mount: `backfill plan`, `run`, `pause`, `resume`, `cancel`,
//! `pace`, and the database arguments they and `backfill status` share ([`DbArgs`]).
//!
//! Exit codes: 0 done (or the control change made), 1 not done (cancelled, stopped by a signal,
//! a control change refused), and errors bubble up for the binary to print on one line and exit
//! 2. The database URL may come from `DATABASE_URL` instead of the command line, which keeps a
//! password out of shell history and `ps`; it is never printed either way.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::backfill::db::target::Target;
use crate::backfill::error::display_path;
use crate::backfill::migration::{self, parse_duration};
use crate::backfill::run::control;
use crate::backfill::run::plan::{self, Plan, PlanRequest, Settings};
use crate::backfill::run::progress::{Progress, ProgressMode};
use crate::backfill::run::tracking::{PaceChange, RunState, TrackingNames};
use crate::backfill::run::{self, Finish, RunOptions};
use crate::config::Config;

/// Where the run's database is, and its tracking tables.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DbArgs {
    /// The target database: postgres://user:password@host/db (an `@` in the password written
    /// `%40`), a key=value connection string, or a SQLite file (sqlite:///path/app.db). Prefer
    /// the environment variable for a URL with a password.
    #[arg(long, value_name = "URL", env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Schema of the tracking tables (default: config `tracking-schema`, else the search path's)
    #[arg(long, value_name = "SCHEMA")]
    pub tracking_schema: Option<String>,
    /// Prefix of the tracking tables' names (default: config `tracking-table-prefix`, else
    /// `xtask_backfill_`)
    #[arg(long, value_name = "PREFIX")]
    pub tracking_prefix: Option<String>,
}

impl DbArgs {
    pub fn tracking(&self, config: &Config) -> anyhow::Result<TrackingNames> {
        TrackingNames::new(
            self.tracking_schema
                .clone()
                .or_else(|| config.tracking_schema.clone()),
            self.tracking_prefix
                .clone()
                .or_else(|| config.tracking_table_prefix.clone()),
        )
        .map_err(anyhow::Error::msg)
    }

    pub fn target(&self) -> anyhow::Result<Option<Target>> {
        self.database_url
            .as_deref()
            .map(|url| Target::parse(url).map_err(anyhow::Error::msg))
            .transpose()
    }

    fn required_target(&self) -> anyhow::Result<Target> {
        self.target()?.ok_or_else(|| {
            anyhow::anyhow!("no database given: pass --database-url URL or set DATABASE_URL")
        })
    }

    /// Connects to the target and opens its tracking store.
    pub(crate) fn open(
        &self,
        config: &Config,
    ) -> anyhow::Result<(Target, Box<dyn crate::backfill::run::tracking::Store>)> {
        let target = self.required_target()?;
        let store = crate::backfill::run::tracking::open(&target, &self.tracking(config)?)?;
        Ok((target, store))
    }
}

fn duration_arg(text: &str) -> Result<Duration, String> {
    parse_duration(text)
}

/// Make the reviewable plan of a production run
#[derive(Debug, Clone, clap::Args)]
pub struct PlanArgs {
    /// The data migration: file name, `V1`, or its name
    pub name: String,
    #[command(flatten)]
    pub db: DbArgs,
    /// Where to write the plan (default: data-migrations/plans/V<n>__<name>.json)
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Rows in the first batch (default: the data migration's @batch-size)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub batch_size: Option<u64>,
    /// Keep the batch size fixed instead of adapting it toward --target-batch-duration
    #[arg(long)]
    pub fixed_batch_size: bool,
    /// Smallest batch the adaptive batch size may shrink to (default: 100, or the first batch
    /// size when smaller)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub min_batch_size: Option<u64>,
    /// Largest batch the adaptive batch size may grow to (default: 100000, or the first batch
    /// size when larger)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_batch_size: Option<u64>,
    /// How long one batch should hold its transaction (default 200ms)
    #[arg(long, value_name = "DURATION", value_parser = duration_arg)]
    pub target_batch_duration: Option<Duration>,
    /// Sleep between batches (default: the data migration's @pause)
    #[arg(long, value_name = "DURATION", value_parser = duration_arg)]
    pub pause: Option<Duration>,
    /// Cap on rows changed per second, shared by all workers
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_rows_per_second: Option<u64>,
    /// lock_timeout of each batch (default 2s)
    #[arg(long, value_name = "DURATION", value_parser = duration_arg)]
    pub lock_timeout: Option<Duration>,
    /// statement_timeout of each batch; a batch hitting it is split (default 30s)
    #[arg(long, value_name = "DURATION", value_parser = duration_arg)]
    pub statement_timeout: Option<Duration>,
    /// Attempts of one batch before the run fails (default 10)
    #[arg(long, value_name = "N")]
    pub max_retries: Option<u32>,
    /// Key ranges for workers to claim (default: from the estimate, at most 16)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=64))]
    pub ranges: Option<u64>,
    /// A claim silent for this long is taken over by another worker (default 5m)
    #[arg(long, value_name = "DURATION", value_parser = duration_arg)]
    pub claim_timeout: Option<Duration>,
    #[command(flatten)]
    pub health: Box<crate::cli::health::HealthArgs>,
}

impl PlanArgs {
    pub fn run(self, config: &Config) -> anyhow::Result<ExitCode> {
        self.run_to(config, &mut std::io::stdout().lock())
    }

    pub fn run_to(self, config: &Config, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
        let target = self.db.target()?;
        self.plan(config, target.as_ref(), out)
    }

    fn settings(&self, migration: &migration::DataMigration) -> Settings {
        let mut s = Settings::from_migration(migration);
        let ms = |d: Duration| d.as_millis() as u64;
        if let Some(v) = self.batch_size {
            s.batch_size = v;
            s.min_batch_size = s.min_batch_size.min(v);
            s.max_batch_size = s.max_batch_size.max(v);
        }
        s.adaptive = !self.fixed_batch_size;
        if let Some(v) = self.min_batch_size {
            s.min_batch_size = v;
        }
        if let Some(v) = self.max_batch_size {
            s.max_batch_size = v;
        }
        if let Some(v) = self.target_batch_duration {
            s.target_batch_ms = ms(v);
        }
        if let Some(v) = self.pause {
            s.pause_ms = ms(v);
        }
        s.max_rows_per_second = self.max_rows_per_second;
        if let Some(v) = self.lock_timeout {
            s.lock_timeout_ms = ms(v);
        }
        if let Some(v) = self.statement_timeout {
            s.statement_timeout_ms = ms(v);
        }
        if let Some(v) = self.max_retries {
            s.max_retries = v;
        }
        if let Some(v) = self.claim_timeout {
            s.claim_timeout_s = v.as_secs().max(1);
        }
        s.health = self.health.health();
        s
    }

    fn plan(
        &self,
        config: &Config,
        target: Option<&Target>,
        out: &mut dyn Write,
    ) -> anyhow::Result<ExitCode> {
        let migration = migration::find(&config.data_migrations, &self.name)?;
        crate::backfill::sample::snapshot::require_approval(config, &migration)?;
        let tracking = self.db.tracking(config)?;
        let mut settings = self.settings(&migration);
        // Validated with a placeholder range count: the real one may come from the estimate.
        settings.ranges = self.ranges.unwrap_or(1);
        settings.validate().map_err(anyhow::Error::msg)?;
        if let Some(t) = target {
            crate::backfill::run::require_schema(t, &migration)?;
            if config.migrations.is_dir() {
                crate::backfill::deploy::require_same_schema(config, t, &migration)?;
            }
        }
        let observed = match target {
            Some(t) => Some(plan::observe(t, &tracking, &migration)?),
            None => None,
        };
        let path = self
            .output
            .clone()
            .unwrap_or_else(|| plan::default_path(config, &migration));
        let request = PlanRequest {
            settings,
            tracking,
            ranges: self.ranges,
        };
        let plan = plan::build(config, &migration, &request, observed.as_ref(), &path);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| anyhow::anyhow!("{}: cannot create: {e}", display_path(dir)))?;
        }
        std::fs::write(&path, plan.to_json())
            .map_err(|e| anyhow::anyhow!("{}: cannot write the plan: {e}", display_path(&path)))?;
        out.write_all(plan::summary(&plan, Some(&path)).as_bytes())?;
        Ok(ExitCode::SUCCESS)
    }
}

/// Execute a plan: batch by batch, exactly once, resumable; run several to scale out
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// The plan file made by `backfill plan`
    pub plan: PathBuf,
    /// The target database (see `backfill plan --help`); its tracking tables are the plan's
    #[arg(long, value_name = "URL", env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Name of this worker in the tracking tables (default: host:pid)
    #[arg(long, value_name = "ID")]
    pub worker_id: Option<String>,
    /// Progress display
    #[arg(long, value_enum, default_value = "auto")]
    pub progress: ProgressMode,
    /// Seconds between two progress lines when not on a terminal
    #[arg(long, value_name = "DURATION", value_parser = duration_arg, default_value = "5s")]
    pub progress_interval: Duration,
    /// Once the run is done, run the data migration's checks (queries that must return no
    /// rows); they may scan the table, so they are not run unless asked. Exit 1 if one fails.
    #[arg(long)]
    pub checks: bool,
    /// Stop after this worker ran this many batches: try a few batches on production, look at
    /// the rows, then run the plan again to continue where it stopped (exit 1 until done)
    #[arg(long, value_name = "N")]
    pub max_batches: Option<u64>,
    /// Start over after the cancelled run RUN (its number, as `cancel` and `status` show it):
    /// a new run goes through every row again, so the batch statement is applied a second time to
    /// the rows the cancelled run changed. Use it only when that is safe (the statement gives the
    /// same result applied twice) or wanted. The cancelled run stays in the tracking tables,
    /// marked superseded, with who restarted it and when; the new run applies each batch exactly
    /// once, like any run. Naming the run makes the command safe to repeat: run again, or on
    /// other workers, it joins the new run instead of starting over twice. A done run does not
    /// start over (write a new data migration instead).
    #[arg(long, value_name = "RUN")]
    pub restart: Option<i64>,
    #[command(flatten)]
    pub replicas: crate::cli::health::ReplicaArgs,
}

impl RunArgs {
    pub fn run(self, config: &Config) -> anyhow::Result<ExitCode> {
        self.run_to(config, &mut std::io::stdout().lock())
    }

    pub fn run_to(self, config: &Config, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
        let target = Target::parse(self.database_url.as_deref().ok_or_else(|| {
            anyhow::anyhow!("no database given: pass --database-url URL or set DATABASE_URL")
        })?)
        .map_err(anyhow::Error::msg)?;
        // The plan's own commands name it relative to the workspace root.
        let plan_path = if !self.plan.exists() && self.plan.is_relative() {
            config.root.join(&self.plan)
        } else {
            self.plan.clone()
        };
        let plan = Plan::load(&plan_path)?;
        let file = config.root.join(&plan.migration.file);
        let migration = if file.is_file() {
            migration::load_file(&file)?
        } else {
            migration::find(&config.data_migrations, &plan.migration.id)?
        };
        run::check_plan(&plan, &migration, &plan_path)?;
        if config.migrations.is_dir() {
            crate::backfill::deploy::require_same_schema(config, &target, &migration)?;
        }
        run::install_signal_handlers();
        let options = RunOptions {
            worker: self
                .worker_id
                .clone()
                .unwrap_or_else(RunOptions::default_worker),
            progress: Progress::new(self.progress, self.progress_interval),
            stop: run::signal_flag(),
            poll: Duration::from_millis(200),
            max_batches: self.max_batches,
            restart: self.restart,
        };
        let mut monitor = self.replicas.monitor()?;
        let report = run::run_with(&target, &plan, &migration, options, &mut monitor, out)?;
        match report.finish {
            Finish::Done | Finish::AlreadyDone if self.checks => {
                let passed = run_checks(&target, &plan, &migration, out)?;
                Ok(if passed {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                })
            }
            Finish::Done | Finish::AlreadyDone => Ok(ExitCode::SUCCESS),
            Finish::Cancelled | Finish::Interrupted => Ok(ExitCode::from(1)),
        }
    }
}

/// Runs the data migration's checks on the target; whether every one returned no rows.
fn run_checks(
    target: &Target,
    plan: &Plan,
    migration: &migration::DataMigration,
    out: &mut dyn Write,
) -> anyhow::Result<bool> {
    let mut store = crate::backfill::run::tracking::open(target, &plan.tracking)?;
    if target.dialect() == crate::sql::Dialect::Postgres {
        // A check reads the whole table: the batches' statement timeout does not apply.
        store.backend().execute("SET statement_timeout = 0")?;
    }
    let mut passed = true;
    for check in &migration.checks {
        let rows = store.backend().query(&check.section.sql).map_err(|e| {
            migration.error_at(
                e.kind,
                check.section.line,
                format!("check `{}` failed to run: {}", check.description, e.message),
            )
        })?;
        if rows.rows.is_empty() {
            writeln!(out, "check passed: {}", check.description)?;
        } else {
            passed = false;
            writeln!(
                out,
                "check FAILED: {} ({}, e.g. {})",
                check.description,
                crate::backfill::display::count(rows.rows.len() as u64, "row", "rows"),
                rows.rows
                    .iter()
                    .take(crate::backfill::sample::CHECK_ROWS_SHOWN)
                    .map(|r| r
                        .iter()
                        .map(crate::backfill::sample::snapshot::render_cell)
                        .collect::<Vec<_>>()
                        .join(" | "))
                    .collect::<Vec<_>>()
                    .join("; ")
            )?;
        }
    }
    Ok(passed)
}

macro_rules! state_command {
    ($name:ident, $to:expr, $doc:literal) => {
        #[doc = $doc]
        #[derive(Debug, Clone, clap::Args)]
        pub struct $name {
            /// The run: its data migration's id (`V1__fill`), version (`V1`) or name
            pub name: String,
            #[command(flatten)]
            pub db: DbArgs,
        }

        impl $name {
            pub fn run(self, config: &Config) -> anyhow::Result<ExitCode> {
                self.run_to(config, &mut std::io::stdout().lock())
            }

            pub fn run_to(self, config: &Config, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
                let (_, mut store) = self.db.open(config)?;
                let (ok, message) = control::set_state(store.as_mut(), &self.name, $to)?;
                writeln!(out, "{message}")?;
                Ok(if ok {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                })
            }
        }
    };
}

state_command!(
    PauseArgs,
    RunState::Paused,
    "Pause a run: its workers wait after their current batch"
);
state_command!(
    ResumeArgs,
    RunState::Running,
    "Resume a paused run: its waiting workers continue"
);
state_command!(
    CancelArgs,
    RunState::Cancelled,
    "Cancel a run for good: workers stop after their current batch; what ran stays applied"
);

/// A pace value: a new one, or back to the plan's. (Not `Option<Option<T>>`, which clap reads
/// as a flag with an optional value.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Override<T> {
    Plan,
    Set(T),
}

impl<T> Override<T> {
    fn into_option(self) -> Option<T> {
        match self {
            Override::Plan => None,
            Override::Set(v) => Some(v),
        }
    }
}

fn count_or_reset(text: &str) -> Result<Override<u64>, String> {
    match text {
        "plan" | "auto" => Ok(Override::Plan),
        _ => text
            .replace('_', "")
            .parse::<u64>()
            .ok()
            .filter(|n| *n > 0)
            .map(Override::Set)
            .ok_or_else(|| {
                format!(
                    "`{text}` is not a positive number (or `plan` to go back to the plan's value)"
                )
            }),
    }
}

fn duration_or_reset(text: &str) -> Result<Override<Duration>, String> {
    match text {
        "plan" => Ok(Override::Plan),
        _ => parse_duration(text).map(Override::Set),
    }
}

/// Change the pace of a run while it runs (workers pick it up after their current batch)
#[derive(Debug, Clone, clap::Args)]
pub struct PaceArgs {
    /// The run: its data migration's id (`V1__fill`), version (`V1`) or name
    pub name: String,
    #[command(flatten)]
    pub db: DbArgs,
    /// A fixed batch size, or `auto` to adapt again as the plan says
    #[arg(long, value_name = "N|auto", value_parser = count_or_reset)]
    pub batch_size: Option<Override<u64>>,
    /// Sleep between batches, or `plan`
    #[arg(long, value_name = "DURATION|plan", value_parser = duration_or_reset)]
    pub pause: Option<Override<Duration>>,
    /// Cap on rows changed per second (all workers together), or `plan`
    #[arg(long, value_name = "N|plan", value_parser = count_or_reset)]
    pub max_rows_per_second: Option<Override<u64>>,
    #[command(flatten)]
    pub health: crate::cli::health::HealthPaceArgs,
}

impl PaceArgs {
    pub fn run(self, config: &Config) -> anyhow::Result<ExitCode> {
        self.run_to(config, &mut std::io::stdout().lock())
    }

    pub fn run_to(self, config: &Config, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
        let change = PaceChange {
            batch_size: self.batch_size.map(Override::into_option),
            pause: self.pause.map(Override::into_option),
            max_rows_per_second: self.max_rows_per_second.map(Override::into_option),
        };
        let health = self.health.change();
        let health_changed = health != Default::default();
        if change == PaceChange::default() && !health_changed {
            anyhow::bail!(
                "nothing to change: give --batch-size, --pause, --max-rows-per-second or a health limit"
            );
        }
        let (_, mut store) = self.db.open(config)?;
        let (run, pace) = control::set_pace(store.as_mut(), &self.name, &change)?;
        writeln!(
            out,
            "{}: {}; workers use it from their next batch",
            run.migration,
            control::describe_pace(&pace)
        )?;
        if health_changed {
            let live = store.set_health_pace(run.id, &health)?;
            writeln!(
                out,
                "{}: health limits {}",
                run.migration,
                control::describe_health(&run, &live)
            )?;
        }
        Ok(ExitCode::SUCCESS)
    }
}
