//! `backfill capture`: the command-line face of [`crate::backfill::capture`].

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::backfill::capture::settings::{CaptureSettings, Overrides};
use crate::backfill::capture::{self, CaptureOptions};
use crate::config::Config;

/// Capture a sampled, FK-closed, PII-scrubbed subset of a PostgreSQL or SQLite database into
/// fixtures/.
#[derive(Debug, Clone, clap::Args)]
pub struct CaptureArgs {
    /// The source database: postgres://... (read only, one REPEATABLE READ snapshot) or
    /// sqlite:PATH (opened read-only, one read transaction)
    #[arg(long, env = "DATABASE_URL", value_name = "URL", hide_env_values = true)]
    pub database_url: String,
    /// Sample these root tables instead of the configured ones (repeatable)
    #[arg(long = "root", value_name = "TABLE")]
    pub roots: Vec<String>,
    /// Every root's fraction, in (0, 1]
    #[arg(long, value_name = "F")]
    pub fraction: Option<f64>,
    /// Every root's cap on rows
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
    /// The fraction's hash seed (the same seed gives the same rows)
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// statement_timeout of every statement on the source, in milliseconds
    #[arg(long, value_name = "MS")]
    pub statement_timeout_ms: Option<u64>,
    /// Write here instead of the configured fixtures directory
    #[arg(long, value_name = "DIR")]
    pub fixtures: Option<PathBuf>,
    /// The capture time the manifest records (default: the snapshot's time on the source;
    /// SOURCE_DATE_EPOCH, when set, also fixes it, for reproducible fixtures)
    #[arg(long, value_name = "RFC3339")]
    pub captured_at: Option<String>,
}

impl CaptureArgs {
    pub fn run(self, config: &Config) -> anyhow::Result<ExitCode> {
        self.run_to(config, &mut std::io::stdout().lock())
    }

    pub fn run_to(self, config: &Config, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
        let settings = CaptureSettings::resolve(
            config,
            &Overrides {
                seed: self.seed,
                roots: self.roots,
                fraction: self.fraction,
                limit: self.limit,
                statement_timeout: self.statement_timeout_ms.map(Duration::from_millis),
            },
        )?;
        let captured_at = self.captured_at.or_else(|| {
            std::env::var("SOURCE_DATE_EPOCH")
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .map(rfc3339)
        });
        let options = CaptureOptions {
            settings,
            fixtures: self
                .fixtures
                .map(|d| config.root.join(d))
                .unwrap_or_else(|| config.fixtures.clone()),
            captured_at,
        };
        capture::capture(config, &self.database_url, &options, out)?;
        Ok(ExitCode::SUCCESS)
    }
}

/// Seconds since 1970 as `YYYY-MM-DDTHH:MM:SSZ`.
fn rfc3339(secs: i64) -> String {
    let (year, month, day) =
        crate::backfill::sample::fixtures::civil_from_days(secs.div_euclid(86_400));
    let rest = secs.rem_euclid(86_400);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(subcommand)]
        command: crate::cli::backfill::BackfillCommand,
    }

    #[test]
    fn parses_every_flag() {
        let cli = Cli::try_parse_from([
            "backfill",
            "capture",
            "--database-url",
            "postgres://u@h/db",
            "--root",
            "users",
            "--root",
            "teams",
            "--fraction",
            "0.5",
            "--limit",
            "9",
            "--seed",
            "4",
            "--statement-timeout-ms",
            "100",
            "--fixtures",
            "out",
            "--captured-at",
            "2024-01-01T00:00:00Z",
        ])
        .unwrap();
        let crate::cli::backfill::BackfillCommand::Capture(args) = cli.command else {
            panic!("{cli:?}")
        };
        assert_eq!(args.roots, vec!["users", "teams"]);
        assert_eq!(args.fraction, Some(0.5));
        assert_eq!(args.limit, Some(9));
        assert_eq!(args.seed, Some(4));
        assert_eq!(args.statement_timeout_ms, Some(100));
        assert_eq!(args.fixtures.as_deref(), Some(std::path::Path::new("out")));
        assert_eq!(args.captured_at.as_deref(), Some("2024-01-01T00:00:00Z"));
    }

    #[test]
    fn source_date_epoch_is_printed_as_rfc3339() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_709_210_096), "2024-02-29T12:34:56Z");
    }
}
