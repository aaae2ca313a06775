//! `backfill verify NAME --database-url URL`: the data migration's verification on a database,
//! batch by batch, read-only (see [`crate::backfill::verify`]).
//!
//! Exit codes: 0 the whole key range compared and nothing differs; 1 differences (or differences
//! not re-read yet), a kill switch, a stop before the end (`--max-batches`, Ctrl-C) or a
//! cancel; errors bubble up for the binary to print on one line and exit 2.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use crate::backfill::migration::{self, parse_duration};
use crate::backfill::run::progress::{Progress, ProgressMode};
use crate::backfill::run::worker::RunOptions;
use crate::backfill::verify::{self, VerifyOptions, VerifyReport, recheck};
use crate::config::Config;

/// `--format` of `backfill verify`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum VerifyFormat {
    /// A summary for people.
    #[default]
    Human,
    /// One JSON document (see docs/backfill-verify.md).
    Json,
}

fn duration_arg(text: &str) -> Result<Duration, String> {
    parse_duration(text)
}

fn rate_arg(text: &str) -> Result<f64, String> {
    text.parse::<f64>()
        .ok()
        .filter(|r| (0.0..=1.0).contains(r) && *r > 0.0)
        .ok_or_else(|| format!("`{text}` is not a fraction: write e.g. 0.01 for 1%"))
}

/// Compare the data migration's `-- @expected` rows with its `-- @actual` rows on a database
#[derive(Debug, Clone, clap::Args)]
pub struct VerifyArgs {
    /// The data migration: file name, `V1`, or its name
    pub name: String,
    #[command(flatten)]
    pub db: crate::cli::production::DbArgs,
    /// Read the `-- @expected` query on this database instead (e.g. the old database of a move):
    /// the same kind of database as the target. Prefer VERIFY_AGAINST_URL for a URL with a
    /// password
    #[arg(
        long,
        value_name = "URL",
        env = "VERIFY_AGAINST_URL",
        hide_env_values = true
    )]
    pub against_url: Option<String>,
    /// Output format: human, or json (one document)
    #[arg(long, value_enum, default_value = "human")]
    pub format: VerifyFormat,
    /// Show the rows of the differing keys (personal data: off by default)
    #[arg(long)]
    pub show_values: bool,
    /// Re-read a difference this long after it was found, before it counts: longer than the
    /// application's write transactions, so a write that raced the read has committed
    #[arg(long, value_name = "DURATION", value_parser = duration_arg, default_value = "250ms")]
    pub recheck_delay: Duration,
    /// At most N re-reads per DURATION, in fixed windows
    #[arg(long, value_name = "N/DURATION", value_parser = recheck::parse_limit, default_value = "600/1m")]
    pub recheck_limit: (u32, Duration),
    /// Kill switch: stop once this many differences are confirmed
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_mismatches: Option<u64>,
    /// Kill switch: stop once confirmed differences pass this share of the rows compared
    /// (judged after 1,000 rows), e.g. 0.01
    #[arg(long, value_name = "FRACTION", value_parser = rate_arg)]
    pub max_mismatch_rate: Option<f64>,
    /// Rows in the first batch (default: the data migration's @batch-size); it adapts
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub batch_size: Option<u64>,
    /// Sleep between batches (default: the data migration's @pause)
    #[arg(long, value_name = "DURATION", value_parser = duration_arg)]
    pub pause: Option<Duration>,
    /// Cap on rows compared per second, shared by all workers
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_rows_per_second: Option<u64>,
    /// statement_timeout of each batch (default 30s)
    #[arg(long, value_name = "DURATION", value_parser = duration_arg)]
    pub statement_timeout: Option<Duration>,
    /// Stop after this worker compared this many batches: verify a subset first; run again to
    /// continue where it stopped
    #[arg(long, value_name = "N")]
    pub max_batches: Option<u64>,
    /// Name of this worker in the tracking tables (default: host:pid)
    #[arg(long, value_name = "ID")]
    pub worker_id: Option<String>,
    /// Progress display (on stderr)
    #[arg(long, value_enum, default_value = "auto")]
    pub progress: ProgressMode,
    #[command(flatten)]
    pub health: crate::cli::health::HealthArgs,
    #[command(flatten)]
    pub replicas: crate::cli::health::ReplicaArgs,
}

impl VerifyArgs {
    pub fn run(self, config: &Config) -> anyhow::Result<ExitCode> {
        self.run_to(config, &mut std::io::stdout().lock())
    }

    pub fn run_to(self, config: &Config, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
        let migration = migration::find(&config.data_migrations, &self.name)?;
        let target = self.db.target()?.ok_or_else(|| {
            anyhow::anyhow!("no database given: pass --database-url URL or set DATABASE_URL")
        })?;
        let tracking = self.db.tracking(config)?;
        let mut settings = verify::settings(&migration);
        if let Some(v) = self.batch_size {
            settings.batch_size = v;
            settings.min_batch_size = settings.min_batch_size.min(v);
            settings.max_batch_size = settings.max_batch_size.max(v);
        }
        if let Some(v) = self.pause {
            settings.pause_ms = v.as_millis() as u64;
        }
        settings.max_rows_per_second = self.max_rows_per_second;
        if let Some(v) = self.statement_timeout {
            settings.statement_timeout_ms = v.as_millis() as u64;
        }
        settings.health = self.health.health();
        settings.validate().map_err(anyhow::Error::msg)?;
        crate::backfill::run::require_schema(&target, &migration)?;
        let against = match &self.against_url {
            Some(url) => Some(verify::connect_against(&target, url)?),
            None => None,
        };
        let against_info = match &self.against_url {
            Some(url) => Some(
                crate::backfill::db::target::Target::parse(url)
                    .map_err(anyhow::Error::msg)?
                    .info()
                    .describe(),
            ),
            None => None,
        };
        crate::backfill::run::install_signal_handlers();
        let options = VerifyOptions {
            recheck_delay: self.recheck_delay,
            recheck_limit: self.recheck_limit,
            max_mismatches: self.max_mismatches,
            max_mismatch_rate: self.max_mismatch_rate,
            keep_values: self.show_values,
            ..VerifyOptions::default()
        };
        let run_options = RunOptions {
            worker: self
                .worker_id
                .clone()
                .unwrap_or_else(RunOptions::default_worker),
            progress: Progress::new(self.progress, Duration::from_secs(5)),
            stop: crate::backfill::run::signal_flag(),
            poll: Duration::from_millis(200),
            max_batches: self.max_batches,
            restart: None,
        };
        let (verified, mut store) = verify::verify(
            &target,
            &tracking,
            &migration,
            &settings,
            against,
            options,
            run_options,
            &mut self.replicas.monitor()?,
        )?;
        let report = VerifyReport::build(
            store.as_mut(),
            &migration.id(),
            target.info().describe(),
            against_info,
            &verified,
            self.show_values,
        )?;
        let text = match self.format {
            VerifyFormat::Human => report.to_text(),
            VerifyFormat::Json => report.to_json(),
        };
        out.write_all(crate::secrets::scrub(&text).as_bytes())?;
        Ok(if report.is_clean() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        })
    }
}
