//! The health-throttling arguments `backfill plan`, `run`, `verify` and `pace` share: the limits
//! ([`HealthArgs`], recorded in a plan), the standbys to watch at run time ([`ReplicaArgs`]),
//! and their live overrides ([`HealthPaceArgs`]).

use std::time::Duration;

use crate::backfill::db::postgres::PgBackend;
use crate::backfill::db::target::Target;
use crate::backfill::migration::parse_duration;
use crate::backfill::run::health::{Health, Monitor, Replica, parse_size};
use crate::backfill::run::tracking::HealthPaceChange;

fn duration_arg(text: &str) -> Result<Duration, String> {
    parse_duration(text)
}

/// When a run waits for the database's health; every check is off unless asked.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct HealthArgs {
    /// Wait while a standby replays more than this far behind (the primary's
    /// pg_stat_replication.replay_lag; for a --replica-url, the time since its last replayed
    /// transaction while it has WAL to replay)
    #[arg(long, value_name = "DURATION", value_parser = duration_arg)]
    pub max_replication_lag: Option<Duration>,
    /// Wait while a standby has more than this much WAL not replayed, e.g. 64MB
    /// (pg_stat_replication on the primary; received and not replayed on a --replica-url)
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_replication_lag_bytes: Option<u64>,
    /// Wait while the WAL archiver has more than N completed segments not archived, or its last
    /// attempt failed (when archive_mode is on)
    #[arg(long, value_name = "N")]
    pub max_archive_lag: Option<u64>,
    /// Wait while VACUUM or autovacuum works on the table (pg_stat_progress_vacuum)
    #[arg(long)]
    pub pause_during_vacuum: bool,
    /// Wait while this query's first value is true, e.g. "SELECT now()::time BETWEEN '09:00' AND
    /// '18:00'" (run on the target before each batch, at most twice a second)
    #[arg(long, value_name = "SQL")]
    pub throttle_query: Option<String>,
}

impl HealthArgs {
    pub fn health(&self) -> Health {
        Health {
            max_replication_lag_ms: self
                .max_replication_lag
                .map(|d| (d.as_millis() as u64).max(1)),
            max_replication_lag_bytes: self.max_replication_lag_bytes,
            max_archive_lag_segments: self.max_archive_lag,
            pause_during_vacuum: self.pause_during_vacuum,
            throttle_query: self.throttle_query.clone().filter(|q| !q.trim().is_empty()),
        }
    }
}

/// Standbys whose replay lag counts, given at run time (their URLs are never recorded).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ReplicaArgs {
    /// A standby to watch for the replication lag limits (repeat for several, or list them in
    /// REPLICA_URLS, comma-separated); the primary's own pg_stat_replication is always watched
    #[arg(
        long = "replica-url",
        value_name = "URL",
        env = "REPLICA_URLS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub replica_urls: Vec<String>,
}

impl ReplicaArgs {
    /// Connects to each standby.
    pub fn monitor(&self) -> anyhow::Result<Monitor> {
        let mut replicas = Vec::new();
        for url in &self.replica_urls {
            let target = Target::parse(url).map_err(anyhow::Error::msg)?;
            let Target::Postgres { url } = &target else {
                anyhow::bail!(
                    "--replica-url: {} is not a PostgreSQL standby",
                    target.info().describe()
                );
            };
            let backend = PgBackend::connect(url)
                .map_err(|e| anyhow::anyhow!("--replica-url: {}", e.message))?;
            replicas.push(Replica {
                name: target.info().describe(),
                backend: Box::new(backend),
            });
        }
        Ok(Monitor::new(replicas))
    }
}

/// A live health limit: a value, `plan` (back to the plan's) or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit<T> {
    Plan,
    Off,
    Set(T),
}

impl<T> Limit<T> {
    fn change(self, off: T) -> Option<T> {
        match self {
            Limit::Plan => None,
            Limit::Off => Some(off),
            Limit::Set(v) => Some(v),
        }
    }
}

fn limit<T>(text: &str, parse: impl Fn(&str) -> Result<T, String>) -> Result<Limit<T>, String> {
    match text {
        "plan" => Ok(Limit::Plan),
        "off" => Ok(Limit::Off),
        _ => parse(text).map(Limit::Set),
    }
}

fn lag_limit(text: &str) -> Result<Limit<u64>, String> {
    limit(text, |t| {
        parse_duration(t).map(|d| (d.as_millis() as u64).max(1))
    })
}

fn size_limit(text: &str) -> Result<Limit<u64>, String> {
    limit(text, |t| parse_size(t).map(|b| b.max(1)))
}

fn count_limit(text: &str) -> Result<Limit<u64>, String> {
    limit(text, |t| {
        t.parse::<u64>()
            .map_err(|_| format!("`{t}` is not a number (or `plan`, `off`)"))
    })
}

fn switch(text: &str) -> Result<Limit<bool>, String> {
    match text {
        "on" => Ok(Limit::Set(true)),
        "off" => Ok(Limit::Off),
        "plan" => Ok(Limit::Plan),
        _ => Err(format!("`{text}`: write on, off or plan")),
    }
}

/// `backfill pace`'s health limits: each a value, `off`, or `plan` for the plan's.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct HealthPaceArgs {
    /// Wait while a standby replays more than this far behind (DURATION, off or plan)
    #[arg(long, value_name = "DURATION|off|plan", value_parser = lag_limit)]
    pub max_replication_lag: Option<Limit<u64>>,
    /// Wait while a standby has more than this much WAL not replayed (SIZE, off or plan)
    #[arg(long, value_name = "SIZE|off|plan", value_parser = size_limit)]
    pub max_replication_lag_bytes: Option<Limit<u64>>,
    /// Wait while the WAL archiver is more than N segments behind (N, off or plan)
    #[arg(long, value_name = "N|off|plan", value_parser = count_limit)]
    pub max_archive_lag: Option<Limit<u64>>,
    /// Wait while (auto)vacuum works on the table (on, off or plan)
    #[arg(long, value_name = "on|off|plan", value_parser = switch)]
    pub pause_during_vacuum: Option<Limit<bool>>,
}

impl HealthPaceArgs {
    pub fn change(&self) -> HealthPaceChange {
        HealthPaceChange {
            max_replication_lag_ms: self.max_replication_lag.map(|l| l.change(0)),
            max_replication_lag_bytes: self.max_replication_lag_bytes.map(|l| l.change(0)),
            max_archive_lag_segments: self.max_archive_lag.map(|l| l.change(0)),
            pause_during_vacuum: self.pause_during_vacuum.map(|l| l.change(false)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_limits_parse() {
        assert_eq!(lag_limit("5s"), Ok(Limit::Set(5000)));
        assert_eq!(lag_limit("off"), Ok(Limit::Off));
        assert_eq!(size_limit("1MB"), Ok(Limit::Set(1024 * 1024)));
        assert_eq!(switch("plan"), Ok(Limit::Plan));
        assert!(switch("yes").is_err());
        let args = HealthPaceArgs {
            max_replication_lag: Some(Limit::Off),
            pause_during_vacuum: Some(Limit::Set(true)),
            ..HealthPaceArgs::default()
        };
        assert_eq!(
            args.change(),
            HealthPaceChange {
                max_replication_lag_ms: Some(Some(0)),
                pause_during_vacuum: Some(Some(true)),
                ..HealthPaceChange::default()
            }
        );
    }
}
