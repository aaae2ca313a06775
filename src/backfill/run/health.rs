//! Throttling on the database's health: a run (or a verification) waits before its next batch
//! while a standby replays too far behind, the WAL archiver is behind, (auto)vacuum works on the
//! walked table, or a query of the user's says to wait.
//!
//! The limits live in the plan ([`Health`], in its settings); `backfill pace` overrides them live
//! ([`HealthPace`], in the run's row); the state (why the run waits, since when) is written to the
//! run's row for `backfill status`. Only [`Monitor::check`] talks to databases: the target (its
//! `pg_stat_replication`, `pg_stat_archiver`, `pg_stat_progress_vacuum`) and the standbys given
//! with `--replica-url` (their replay timestamp). A statistic the role may not read is treated as
//! unknown, never as a reason to wait.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::backfill::db::{Backend, Cell};
use crate::backfill::display::format_duration;
use crate::backfill::error::Result;
use crate::backfill::run::tracking::HealthPace;
use crate::sql::Dialect;

/// The health limits of a plan; all off by default.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Health {
    /// Wait while a standby replays more than this many milliseconds behind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_replication_lag_ms: Option<u64>,
    /// Wait while a standby has more than this many bytes of WAL not replayed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_replication_lag_bytes: Option<u64>,
    /// Wait while the WAL archiver has more than this many completed segments not archived (or
    /// its last attempt failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_archive_lag_segments: Option<u64>,
    /// Wait while (auto)vacuum works on the walked table.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pause_during_vacuum: bool,
    /// Wait while this query's first value is true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle_query: Option<String>,
}

impl Health {
    pub fn is_off(&self) -> bool {
        *self == Health::default()
    }

    /// These limits with `backfill pace`'s overrides (`Some(0)` or `Some(false)` switches a
    /// check off).
    pub fn with(&self, pace: &HealthPace) -> Health {
        let pick = |plan: Option<u64>, live: Option<u64>| match live {
            Some(0) => None,
            Some(v) => Some(v),
            None => plan,
        };
        Health {
            max_replication_lag_ms: pick(self.max_replication_lag_ms, pace.max_replication_lag_ms),
            max_replication_lag_bytes: pick(
                self.max_replication_lag_bytes,
                pace.max_replication_lag_bytes,
            ),
            max_archive_lag_segments: pick(
                self.max_archive_lag_segments,
                pace.max_archive_lag_segments,
            ),
            pause_during_vacuum: pace.pause_during_vacuum.unwrap_or(self.pause_during_vacuum),
            throttle_query: self.throttle_query.clone(),
        }
    }

    /// The limits in words, for the plan's summary and `pace`.
    pub fn describe(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(ms) = self.max_replication_lag_ms {
            out.push(format!(
                "replication lag at most {}",
                format_duration(Duration::from_millis(ms))
            ));
        }
        if let Some(bytes) = self.max_replication_lag_bytes {
            out.push(format!("replication lag at most {}", size(bytes)));
        }
        if let Some(segments) = self.max_archive_lag_segments {
            out.push(format!("WAL archiver at most {segments} segments behind"));
        }
        if self.pause_during_vacuum {
            out.push("pause while (auto)vacuum works on the table".into());
        }
        if let Some(q) = &self.throttle_query {
            out.push(format!("pause while `{q}` is true"));
        }
        out
    }
}

/// `1.5 MB`, `640 kB`, `12 B`.
pub fn size(bytes: u64) -> String {
    const KB: f64 = 1024.0;
    let b = bytes as f64;
    if b >= KB * KB * KB {
        format!("{:.1} GB", b / (KB * KB * KB))
    } else if b >= KB * KB {
        format!("{:.1} MB", b / (KB * KB))
    } else if b >= KB {
        format!("{:.0} kB", b / KB)
    } else {
        format!("{bytes} B")
    }
}

/// `64kB`, `16MB`, `1GB`, `4096`: a size in bytes.
pub fn parse_size(text: &str) -> std::result::Result<u64, String> {
    let bad = || format!("`{text}` is not a size: write e.g. `512kB`, `16MB` or `1GB`");
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().map_err(|_| bad())?;
    let factor = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" | "k" => 1024.0,
        "mb" | "m" => 1024.0 * 1024.0,
        "gb" | "g" => 1024.0 * 1024.0 * 1024.0,
        _ => return Err(bad()),
    };
    let bytes = number * factor;
    if !(0.0..=1e15).contains(&bytes) {
        return Err(bad());
    }
    Ok(bytes.round() as u64)
}

/// A standby to watch: its description (no password) and its connection.
pub struct Replica {
    pub name: String,
    pub backend: Box<dyn Backend>,
}

/// Looks at the database's health; at most once per [`Monitor::every`], the answer in between
/// is the last one.
pub struct Monitor {
    replicas: Vec<Replica>,
    every: Duration,
    last: Option<(Instant, Option<String>)>,
    /// Checks that failed (a statistic the role may not read), each reported once.
    pub unknown: Vec<String>,
}

impl Default for Monitor {
    fn default() -> Monitor {
        Monitor::new(Vec::new())
    }
}

impl Monitor {
    pub fn new(replicas: Vec<Replica>) -> Monitor {
        Monitor {
            replicas,
            every: Duration::from_millis(500),
            last: None,
            unknown: Vec::new(),
        }
    }

    /// Why the run must wait now (`None`: go on), by `limits`, on `target` whose walked table
    /// is `table`.
    pub fn check(
        &mut self,
        target: &mut dyn Backend,
        table: &str,
        limits: &Health,
    ) -> Result<Option<String>> {
        if limits.is_off() {
            self.last = None;
            return Ok(None);
        }
        if let Some((at, reason)) = &self.last
            && at.elapsed() < self.every
        {
            return Ok(reason.clone());
        }
        let reason = self.reason(target, table, limits)?;
        self.last = Some((Instant::now(), reason.clone()));
        Ok(reason)
    }

    fn reason(
        &mut self,
        target: &mut dyn Backend,
        table: &str,
        limits: &Health,
    ) -> Result<Option<String>> {
        let postgres = target.dialect() == Dialect::Postgres;
        let lag_limited =
            limits.max_replication_lag_ms.is_some() || limits.max_replication_lag_bytes.is_some();
        if postgres && lag_limited {
            if let Some(r) = self.primary_lag(target, limits) {
                return Ok(Some(r));
            }
            for i in 0..self.replicas.len() {
                if let Some(r) = self.replica_lag(i, limits) {
                    return Ok(Some(r));
                }
            }
        }
        if postgres
            && let Some(max) = limits.max_archive_lag_segments
            && let Some(r) = self.archiver(target, max)
        {
            return Ok(Some(r));
        }
        if postgres
            && limits.pause_during_vacuum
            && let Some(r) = self.vacuum(target, table)
        {
            return Ok(Some(r));
        }
        if let Some(query) = &limits.throttle_query {
            // The user's query is part of the plan: an error in it is an error of the run.
            let rows = target
                .query(query)
                .map_err(|e| e.context(format!("the throttle query `{query}`")))?;
            if rows
                .rows
                .first()
                .and_then(|r| r.first())
                .is_some_and(truthy)
            {
                return Ok(Some(format!("the throttle query `{query}` is true")));
            }
        }
        Ok(None)
    }

    /// The standbys streaming from the target (`pg_stat_replication`): replay lag in bytes, and
    /// in time as the walsender measures it.
    fn primary_lag(&mut self, target: &mut dyn Backend, limits: &Health) -> Option<String> {
        let rows = stats(
            &mut self.unknown,
            target,
            "replication lag (pg_stat_replication)",
            "SELECT coalesce(nullif(application_name, ''), client_addr::text, 'standby'),
                    pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::float8,
                    (extract(epoch FROM replay_lag) * 1000)::float8
             FROM pg_stat_replication
             WHERE NOT pg_is_in_recovery()",
        )?;
        for row in rows {
            let name = text(&row[0]);
            if let Some(r) = over_limits(&name, number(&row[1]), number(&row[2]), limits) {
                return Some(r);
            }
        }
        None
    }

    /// A standby given with `--replica-url`: WAL received and not replayed, and the time since
    /// the last transaction it replayed while it has WAL to replay.
    fn replica_lag(&mut self, i: usize, limits: &Health) -> Option<String> {
        let sql = "SELECT pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::float8,
                          CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
                               ELSE (extract(epoch FROM now() - pg_last_xact_replay_timestamp()) * 1000)::float8 END";
        let replica = &mut self.replicas[i];
        let what = format!("replay lag of {}", replica.name);
        let rows = stats(&mut self.unknown, replica.backend.as_mut(), &what, sql);
        if rows.is_none() {
            // A lost connection to a standby: try again next time.
            let _ = replica.backend.reconnect();
        }
        let row = rows?.into_iter().next()?;
        over_limits(&replica.name, number(&row[0]), number(&row[1]), limits)
    }

    fn archiver(&mut self, target: &mut dyn Backend, max: u64) -> Option<String> {
        let rows = stats(
            &mut self.unknown,
            target,
            "WAL archiver (pg_stat_archiver)",
            "SELECT current_setting('archive_mode'), last_archived_wal, pg_walfile_name(pg_current_wal_lsn()),
                    pg_size_bytes(current_setting('wal_segment_size'))::float8,
                    coalesce(last_failed_time > coalesce(last_archived_time, '-infinity'), false)
             FROM pg_stat_archiver WHERE NOT pg_is_in_recovery()",
        )?;
        let row = rows.into_iter().next()?;
        if text(&row[0]) == "off" {
            return None;
        }
        if row[4] == Cell::Bool(true) {
            return Some("the WAL archiver's last attempt failed".into());
        }
        let segment_size = number(&row[3])? as u64;
        let behind = segments_behind(&text(&row[1]), &text(&row[2]), segment_size)?;
        (behind > max)
            .then(|| format!("the WAL archiver is {behind} segments behind (limit {max})"))
    }

    fn vacuum(&mut self, target: &mut dyn Backend, table: &str) -> Option<String> {
        let sql = format!(
            "SELECT CASE WHEN a.backend_type = 'autovacuum worker' THEN 'autovacuum' ELSE 'VACUUM' END, p.phase
             FROM pg_stat_progress_vacuum AS p LEFT JOIN pg_stat_activity AS a ON a.pid = p.pid
             WHERE p.relid = to_regclass(quote_ident({}))",
            quote_literal(table)
        );
        let rows = stats(
            &mut self.unknown,
            target,
            "vacuum progress (pg_stat_progress_vacuum)",
            &sql,
        )?;
        let row = rows.into_iter().next()?;
        Some(format!(
            "{} works on {table} ({})",
            text(&row[0]),
            text(&row[1])
        ))
    }
}

/// Runs a statistics query; a failure (a role without the right to read it) is unknown, noted
/// once in `unknown`.
fn stats(
    unknown: &mut Vec<String>,
    backend: &mut dyn Backend,
    what: &str,
    sql: &str,
) -> Option<Vec<Vec<Cell>>> {
    match backend.query(sql) {
        Ok(rows) => Some(rows.rows),
        Err(e) => {
            let note = format!("{what}: {}", e.message);
            if !unknown.contains(&note) {
                unknown.push(note);
            }
            None
        }
    }
}

/// Why a standby's lag (`bytes` not replayed, `ms` behind) is over `limits`, if it is.
fn over_limits(name: &str, bytes: Option<f64>, ms: Option<f64>, limits: &Health) -> Option<String> {
    if let (Some(max), Some(bytes)) = (limits.max_replication_lag_bytes, bytes)
        && bytes > max as f64
    {
        return Some(format!(
            "replication lag: {name} has {} of WAL not replayed (limit {})",
            size(bytes as u64),
            size(max)
        ));
    }
    if let (Some(max), Some(ms)) = (limits.max_replication_lag_ms, ms)
        && ms > max as f64
    {
        return Some(format!(
            "replication lag: {name} replays {} behind (limit {})",
            format_duration(Duration::from_millis(ms as u64)),
            format_duration(Duration::from_millis(max))
        ));
    }
    None
}

/// Completed WAL segments not archived: those after `last_archived` up to, not including, the
/// segment being written (`current`); names are `TTTTTTTTLLLLLLLLSSSSSSSS` in hex.
pub fn segments_behind(last_archived: &str, current: &str, segment_size: u64) -> Option<u64> {
    let number = |name: &str| -> Option<u64> {
        if name.len() < 24 {
            return None;
        }
        let log = u64::from_str_radix(name.get(8..16)?, 16).ok()?;
        let seg = u64::from_str_radix(name.get(16..24)?, 16).ok()?;
        let per_log = 0x1_0000_0000u64.checked_div(segment_size.max(1))?;
        Some(log * per_log + seg)
    };
    let (archived, current) = (number(last_archived)?, number(current)?);
    Some(current.saturating_sub(archived).saturating_sub(1))
}

fn text(cell: &Cell) -> String {
    match cell {
        Cell::Null => String::new(),
        Cell::Number(s) | Cell::Text(s) => s.clone(),
        Cell::Bool(b) => b.to_string(),
        Cell::Blob(_) => String::new(),
    }
}

fn number(cell: &Cell) -> Option<f64> {
    match cell {
        Cell::Number(s) => s.parse().ok(),
        _ => None,
    }
}

/// A throttle query's answer: true, a non-zero number, or `t`/`true`/`yes`/`on`.
fn truthy(cell: &Cell) -> bool {
    match cell {
        Cell::Bool(b) => *b,
        Cell::Number(n) => n.parse::<f64>().is_ok_and(|v| v != 0.0),
        Cell::Text(t) => matches!(
            t.to_ascii_lowercase().as_str(),
            "t" | "true" | "yes" | "on" | "1"
        ),
        _ => false,
    }
}

fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pace_overrides_the_plan_s_limits() {
        let plan = Health {
            max_replication_lag_bytes: Some(1024),
            pause_during_vacuum: true,
            ..Health::default()
        };
        assert_eq!(plan.with(&HealthPace::default()), plan);
        let live = plan.with(&HealthPace {
            max_replication_lag_bytes: Some(0),
            max_replication_lag_ms: Some(5000),
            pause_during_vacuum: Some(false),
            ..HealthPace::default()
        });
        assert_eq!(
            live,
            Health {
                max_replication_lag_ms: Some(5000),
                ..Health::default()
            }
        );
        assert!(Health::default().is_off());
    }

    #[test]
    fn archive_lag_counts_completed_segments() {
        let mb16 = 16 * 1024 * 1024;
        assert_eq!(
            segments_behind("000000010000000000000003", "000000010000000000000004", mb16),
            Some(0)
        );
        assert_eq!(
            segments_behind("000000010000000000000003", "000000010000000000000009", mb16),
            Some(5)
        );
        // Across a log file: 256 segments of 16MB per log.
        assert_eq!(
            segments_behind("0000000100000000000000FF", "000000010000000100000001", mb16),
            Some(1)
        );
        assert_eq!(segments_behind("", "000000010000000000000009", mb16), None);
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64kB"), Ok(64 * 1024));
        assert_eq!(parse_size("16MB"), Ok(16 * 1024 * 1024));
        assert_eq!(parse_size("1.5GB"), Ok(1_610_612_736));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5TB").is_err());
        assert_eq!(size(1536 * 1024), "1.5 MB");
        assert_eq!(size(640 * 1024), "640 kB");
    }

    #[test]
    fn lag_over_the_limits_says_which_standby_and_how_far() {
        let limits = Health {
            max_replication_lag_bytes: Some(1024 * 1024),
            max_replication_lag_ms: Some(10_000),
            ..Health::default()
        };
        assert_eq!(over_limits("s1", Some(1000.0), Some(5.0), &limits), None);
        assert_eq!(
            over_limits("s1", Some(3.0 * 1024.0 * 1024.0), None, &limits).unwrap(),
            "replication lag: s1 has 3.0 MB of WAL not replayed (limit 1.0 MB)"
        );
        assert_eq!(
            over_limits("s1", None, Some(42_000.0), &limits).unwrap(),
            "replication lag: s1 replays 42s behind (limit 10s)"
        );
        assert!(truthy(&Cell::Bool(true)) && truthy(&Cell::Number("1".into())));
        assert!(!truthy(&Cell::Null) && !truthy(&Cell::Text("f".into())));
    }
}
