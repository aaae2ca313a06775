//! `migrate run`: the command line of [`crate::backfill::deploy`].

use std::io::Write;
use std::process::ExitCode;

use crate::backfill::db::target::Target;
use crate::backfill::deploy::{self, Backfills, Options, Outcome};
use crate::backfill::run::progress::ProgressMode;
use crate::config::Config;

/// `migrate run`.
#[derive(Debug, Clone, clap::Args)]
pub struct MigrateRunArgs {
    /// The database: postgres://host/db, a key=value connection string, or a SQLite file
    /// (sqlite:///path/app.db, created when missing). Prefer the environment variable for a URL
    /// with a password (percent-encode `@` in it as %40)
    #[arg(long, value_name = "URL", env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Apply up to and including this schema version (default: all)
    #[arg(long, value_name = "V", value_parser = version_arg)]
    pub target: Option<u64>,
    /// At a migration that waits for a data migration not done yet: stop there (wait, exit 1),
    /// or run the approved data migration inline, batch by batch, exactly once and resumable,
    /// then go on (run: for databases small enough; big ones use backfill plan/run on workers)
    #[arg(long, value_enum, default_value = "wait")]
    pub backfills: Backfills,
    /// Schema of the tracking tables the gates read (default: config `tracking-schema`)
    #[arg(long, value_name = "SCHEMA")]
    pub tracking_schema: Option<String>,
    /// Prefix of the tracking tables' names (default: config `tracking-table-prefix`, else
    /// `xtask_backfill_`)
    #[arg(long, value_name = "PREFIX")]
    pub tracking_prefix: Option<String>,
    /// Progress display of an inline backfill
    #[arg(long, value_enum, default_value = "auto")]
    pub progress: ProgressMode,
}

fn version_arg(text: &str) -> Result<u64, String> {
    text.trim()
        .trim_start_matches(['V', 'v'])
        .parse()
        .map_err(|_| format!("`{text}` is not a schema version (e.g. 5 or V5)"))
}

impl MigrateRunArgs {
    pub fn run(self, config: &Config) -> anyhow::Result<ExitCode> {
        self.run_to(config, &mut std::io::stdout().lock())
    }

    pub fn run_to(self, config: &Config, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
        let url = self.database_url.as_deref().ok_or_else(|| {
            anyhow::anyhow!("no database given: pass --database-url URL or set DATABASE_URL")
        })?;
        let target = Target::parse(url).map_err(anyhow::Error::msg)?;
        let db = crate::cli::production::DbArgs {
            database_url: None,
            tracking_schema: self.tracking_schema.clone(),
            tracking_prefix: self.tracking_prefix.clone(),
        };
        let tracking = db.tracking(config)?;
        if self.backfills == Backfills::Run {
            crate::backfill::run::install_signal_handlers();
        }
        let options = Options {
            target_version: self.target,
            backfills: self.backfills,
            tracking,
            stop: crate::backfill::run::signal_flag(),
            progress: self.progress,
        };
        Ok(match deploy::migrate(config, &target, &options, out)? {
            Outcome::UpToDate { .. } => ExitCode::SUCCESS,
            Outcome::Gated { .. } => ExitCode::from(1),
        })
    }
}
