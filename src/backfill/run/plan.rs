//! `backfill plan`: the reviewable plan of a production run, as a JSON file and a summary.
//!
//! A plan pins the data migration by checksum and holds every setting of the run, the exact
//! SQL, the key range and estimates (when given a database), the tracking tables, and the
//! commands to run, watch, pause, resume, cancel and pace it. It carries a digest of its own
//! content: `backfill run` refuses a plan edited after it was made (a reviewed plan is the one
//! that runs; change a setting by making a new plan), and a plan whose checksum is not the
//! data-migration file's.
//!
//! Planning reads the catalog and the key's index only: bounds by `ORDER BY key LIMIT 1` both
//! ways, rows from `pg_class.reltuples` scaled to the table's current size (or the planner's
//! estimate when it was never analyzed); the run reads its range bounds from `pg_stats`'
//! histogram when it starts, with more than one range. It never
//! scans the table, so a 100-million-row table plans as fast as a small one. Nothing is written
//! to the database. No credentials: the target is host, port and database name.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::backfill::db::target::{Target, TargetInfo};
use crate::backfill::db::{KeyKind, KeyValue};
use crate::backfill::display::{count, format_duration, kind_name, thousands};
use crate::backfill::error::display_path;
use crate::backfill::migration::DataMigration;
use crate::backfill::run::health::Health;
use crate::backfill::run::tracking::{Estimate, TrackingNames};
use crate::config::Config;

/// The plan file format's version.
pub const FORMAT: u32 = 1;

/// What the estimated duration assumes when nothing caps the rate: a conservative rate for
/// an UPDATE per row with index lookups. The run's progress shows the real one.
pub const ASSUMED_ROWS_PER_SECOND: u64 = 20_000;

/// The run's settings. Defaults come from the data migration and from here; flags of
/// `backfill plan` change them; `backfill pace` overrides some of them live.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Rows in the first batch (the data migration's `@batch-size`).
    pub batch_size: u64,
    /// Whether the batch size adapts toward `target_batch_ms`.
    pub adaptive: bool,
    pub min_batch_size: u64,
    pub max_batch_size: u64,
    /// How long a batch should hold its transaction open.
    pub target_batch_ms: u64,
    /// Sleep between batches (the data migration's `@pause`).
    pub pause_ms: u64,
    /// Cap on the rows the run changes per second, shared by its workers.
    pub max_rows_per_second: Option<u64>,
    /// `SET LOCAL lock_timeout` of every batch.
    pub lock_timeout_ms: u64,
    /// `SET LOCAL statement_timeout` of every batch; a batch that hits it is split.
    pub statement_timeout_ms: u64,
    /// Consecutive failed attempts of one batch before the run fails.
    pub max_retries: u32,
    /// How many key ranges the run is split into (what workers claim).
    pub ranges: u64,
    /// A claim whose heartbeat is older than this is taken over (a stuck worker).
    pub claim_timeout_s: u64,
    /// When to wait for the database's health (replication lag, archiver, vacuum, a query).
    /// Absent from plans without any limit (and from plans made before it existed, which load
    /// as before).
    #[serde(default, skip_serializing_if = "Health::is_off")]
    pub health: Health,
}

impl Settings {
    pub const DEFAULT_TARGET_BATCH_MS: u64 = 200;
    pub const DEFAULT_MAX_BATCH_SIZE: u64 = 100_000;
    pub const DEFAULT_LOCK_TIMEOUT_MS: u64 = 2_000;
    pub const DEFAULT_STATEMENT_TIMEOUT_MS: u64 = 30_000;
    pub const DEFAULT_MAX_RETRIES: u32 = 10;
    pub const DEFAULT_CLAIM_TIMEOUT_S: u64 = 300;
    pub const MAX_RANGES: u64 = 64;

    /// The data migration's settings with the defaults around them.
    pub fn from_migration(migration: &DataMigration) -> Settings {
        let batch_size = migration.batch_size.value;
        Settings {
            batch_size,
            adaptive: true,
            min_batch_size: batch_size.min(100),
            max_batch_size: Settings::DEFAULT_MAX_BATCH_SIZE.max(batch_size),
            target_batch_ms: Settings::DEFAULT_TARGET_BATCH_MS,
            pause_ms: migration.pause.value.as_millis() as u64,
            max_rows_per_second: None,
            lock_timeout_ms: Settings::DEFAULT_LOCK_TIMEOUT_MS,
            statement_timeout_ms: Settings::DEFAULT_STATEMENT_TIMEOUT_MS,
            max_retries: Settings::DEFAULT_MAX_RETRIES,
            ranges: 0,
            claim_timeout_s: Settings::DEFAULT_CLAIM_TIMEOUT_S,
            health: Health::default(),
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.min_batch_size == 0 || self.batch_size == 0 {
            return Err("batch sizes must be at least 1".into());
        }
        if self.min_batch_size > self.max_batch_size {
            return Err(format!(
                "the minimum batch size ({}) is above the maximum ({})",
                self.min_batch_size, self.max_batch_size
            ));
        }
        if self.target_batch_ms == 0 || self.statement_timeout_ms == 0 || self.lock_timeout_ms == 0
        {
            return Err("timeouts and the target batch duration must be above 0".into());
        }
        if self.statement_timeout_ms <= self.target_batch_ms {
            return Err(format!(
                "the statement timeout ({}ms) must be longer than the target batch duration ({}ms)",
                self.statement_timeout_ms, self.target_batch_ms
            ));
        }
        if self.ranges == 0 || self.ranges > Settings::MAX_RANGES {
            return Err(format!(
                "ranges must be between 1 and {}",
                Settings::MAX_RANGES
            ));
        }
        const DAY_MS: u64 = 86_400_000;
        if self.lock_timeout_ms > DAY_MS
            || self.statement_timeout_ms > DAY_MS
            || self.pause_ms > 3_600_000
            || self.claim_timeout_s > 86_400
            || self.claim_timeout_s == 0
        {
            return Err(
                "timeouts must be at most a day, the pause at most an hour, the claim timeout between 1s and a day".into(),
            );
        }
        if self.max_rows_per_second == Some(0) {
            return Err(
                "a rows-per-second cap of 0 would never finish; pause the run instead".into(),
            );
        }
        Ok(())
    }

    /// The batch size clamped to the adaptive bounds.
    pub fn clamp(&self, size: u64) -> u64 {
        size.clamp(self.min_batch_size, self.max_batch_size)
    }
}

/// Which data migration, pinned by checksum.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanMigration {
    pub id: String,
    /// Relative to the workspace root.
    pub file: String,
    pub checksum: String,
    /// The schema version the data migration needs (its `@requires`): the schema migrations up
    /// to it must have run on the target. Absent from plans made before it was recorded; left
    /// out of the JSON when absent, so such a plan keeps its digest and still loads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requires_schema_version: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bounds {
    pub min: String,
    pub max: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanEstimate {
    pub rows: u64,
    /// Where the row count comes from.
    pub source: String,
    /// At the first batch size; adaptation changes it.
    pub batches: u64,
    pub duration_seconds: u64,
    /// The rate the duration assumes (the cap, when lower).
    pub rows_per_second: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanCheck {
    pub description: String,
    pub sql: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanSql {
    /// As written in the data migration (`:lower` / `:upper`).
    pub batch: String,
    /// As PostgreSQL runs it (`$1` / `$2`, bound to each batch's `(lower, upper]`).
    pub postgres: String,
    /// As SQLite runs it.
    pub sqlite: String,
    /// Queries that must return no rows once the run is done (run them to verify).
    pub checks: Vec<PlanCheck>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Commands {
    pub run: String,
    pub status: String,
    pub pause: String,
    pub resume: String,
    pub cancel: String,
    pub pace: String,
}

/// A plan file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub format: u32,
    pub migration: PlanMigration,
    pub table: String,
    pub key: String,
    /// `integer` or `text`, when a database was asked.
    pub key_type: Option<String>,
    /// Whether an index leads with the key, when a database was asked.
    pub key_indexed: Option<bool>,
    pub settings: Settings,
    /// Where the plan was made against; `None`: bounds are read when the run starts.
    pub target: Option<TargetInfo>,
    pub bounds: Option<Bounds>,
    pub estimate: Option<PlanEstimate>,
    pub tracking: TrackingNames,
    pub sql: PlanSql,
    pub commands: Commands,
    /// SHA-256 of the plan with this field empty: edits are detected.
    pub digest: String,
}

impl Plan {
    /// The digest of this plan's content (the `digest` field excluded).
    pub fn compute_digest(&self) -> String {
        let mut copy = self.clone();
        copy.digest.clear();
        let json = serde_json::to_string(&copy).unwrap_or_default();
        crate::backfill::migration::checksum(json.as_bytes())
    }

    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
    }

    /// Reads a plan file and checks its digest.
    pub fn load(path: &Path) -> anyhow::Result<Plan> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("{}: cannot read the plan: {e}", display_path(path)))?;
        let plan: Plan = serde_json::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "{}:{}: not a backfill plan: {e}",
                display_path(path),
                e.line()
            )
        })?;
        if plan.format != FORMAT {
            anyhow::bail!(
                "{}: plan format {} is not {FORMAT}; make the plan again with this version",
                display_path(path),
                plan.format
            );
        }
        if plan.compute_digest() != plan.digest {
            anyhow::bail!(
                "{}: the plan was edited after it was made (its digest does not match its content); make a new plan with `backfill plan` and have it reviewed",
                display_path(path)
            );
        }
        plan.settings
            .validate()
            .map_err(|e| anyhow::anyhow!("{}: {e}", display_path(path)))?;
        Ok(plan)
    }
}

/// What `backfill plan` was asked.
#[derive(Debug, Clone)]
pub struct PlanRequest {
    pub settings: Settings,
    pub tracking: TrackingNames,
    /// Ranges asked for (`None`: from the estimate).
    pub ranges: Option<u64>,
}

/// What the database told the planner.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    pub target: TargetInfo,
    pub kind: KeyKind,
    pub bounds: Option<(KeyValue, KeyValue)>,
    pub estimate: Estimate,
}

/// Reads bounds and estimates from the target: the key's index and the catalog, no scan.
pub fn observe(
    target: &Target,
    tracking: &TrackingNames,
    migration: &DataMigration,
) -> anyhow::Result<Observed> {
    let mut store = crate::backfill::run::tracking::open(target, tracking)?;
    let (table, key) = (&migration.table.value, &migration.key.value);
    let columns = store.backend().columns(table)?.ok_or_else(|| {
        anyhow::anyhow!(
            "{}:{}: table `{table}` does not exist in {}",
            display_path(&migration.path),
            migration.table.line,
            target.info().describe()
        )
    })?;
    let column = columns.iter().find(|c| &c.name == key).ok_or_else(|| {
        anyhow::anyhow!(
            "{}:{}: table `{table}` has no column `{key}`",
            display_path(&migration.path),
            migration.key.line
        )
    })?;
    let kind = column.ty.key_kind().ok_or_else(|| {
        anyhow::anyhow!(
            "{}:{}: key `{table}.{key}` is of type `{}`; batch keys must be integer or text",
            display_path(&migration.path),
            migration.key.line,
            column.declared
        )
    })?;
    let min = store.backend().min_key(table, key, kind)?;
    let max = store.max_key(table, key, kind)?;
    // The plan records no range bounds: the run splits when it starts.
    let estimate = store.estimate(table, key, kind, false)?;
    Ok(Observed {
        target: target.info(),
        kind,
        bounds: min.zip(max),
        estimate,
    })
}

/// How many ranges to split into when not asked: enough for a few workers on a big table,
/// one on a table a few batches long.
pub fn default_ranges(rows: Option<u64>, batch_size: u64) -> u64 {
    match rows {
        None => 16,
        Some(rows) => (rows / batch_size.max(1) / 4).clamp(1, 16),
    }
}

/// Builds the plan of `migration` (already checked for approval).
pub fn build(
    config: &Config,
    migration: &DataMigration,
    request: &PlanRequest,
    observed: Option<&Observed>,
    plan_path: &Path,
) -> Plan {
    let mut settings = request.settings.clone();
    let rows = observed.and_then(|o| o.estimate.rows);
    settings.ranges = request
        .ranges
        .unwrap_or_else(|| default_ranges(rows, settings.batch_size))
        .clamp(1, Settings::MAX_RANGES);
    let estimate = rows.map(|rows| {
        let batches = rows.div_ceil(settings.batch_size.max(1));
        let rate = settings
            .max_rows_per_second
            .map_or(ASSUMED_ROWS_PER_SECOND, |cap| {
                cap.min(ASSUMED_ROWS_PER_SECOND)
            });
        let seconds =
            rows as f64 / rate.max(1) as f64 + (batches as f64 * settings.pause_ms as f64 / 1000.0);
        PlanEstimate {
            rows,
            source: observed
                .map(|o| o.estimate.source.clone())
                .unwrap_or_default(),
            batches,
            duration_seconds: seconds.ceil() as u64,
            rows_per_second: rate,
        }
    });
    let file = migration
        .path
        .strip_prefix(&config.root)
        .unwrap_or(&migration.path)
        .display()
        .to_string();
    let plan_shown = plan_path
        .strip_prefix(&config.root)
        .unwrap_or(plan_path)
        .display()
        .to_string();
    let commands = commands(&migration.id(), &plan_shown, &request.tracking);
    let mut plan = Plan {
        format: FORMAT,
        migration: PlanMigration {
            id: migration.id(),
            file,
            checksum: migration.checksum.clone(),
            requires_schema_version: Some(migration.requires.value),
        },
        table: migration.table.value.clone(),
        key: migration.key.value.clone(),
        key_type: observed.map(|o| kind_name(o.kind).to_string()),
        key_indexed: observed.and_then(|o| o.estimate.key_indexed),
        settings,
        target: observed.map(|o| o.target.clone()),
        bounds: observed.and_then(|o| {
            o.bounds.as_ref().map(|(min, max)| Bounds {
                min: min.to_stored(),
                max: max.to_stored(),
            })
        }),
        estimate,
        tracking: request.tracking.clone(),
        sql: PlanSql {
            batch: migration.batch.section.sql.clone(),
            postgres: migration.batch.postgres.clone(),
            sqlite: migration.batch.sqlite.clone(),
            checks: migration
                .checks
                .iter()
                .map(|c| PlanCheck {
                    description: c.description.clone(),
                    sql: c.section.sql.clone(),
                })
                .collect(),
        },
        commands,
        digest: String::new(),
    };
    plan.digest = plan.compute_digest();
    plan
}

/// The commands that drive the run. The database URL is always `$DATABASE_URL`: the real one
/// may hold a password, and a plan is committed.
fn commands(id: &str, plan_path: &str, tracking: &TrackingNames) -> Commands {
    let mut flags = String::from(" --database-url \"$DATABASE_URL\"");
    if let Some(schema) = &tracking.schema {
        flags.push_str(&format!(" --tracking-schema {}", shell_quote(schema)));
    }
    if tracking.prefix != crate::backfill::run::tracking::DEFAULT_PREFIX {
        flags.push_str(&format!(
            " --tracking-prefix {}",
            shell_quote(&tracking.prefix)
        ));
    }
    let base = "cargo xtask backfill";
    Commands {
        run: format!("{base} run {}{flags}", shell_quote(plan_path)),
        status: format!("{base} status{flags}"),
        pause: format!("{base} pause {id}{flags}"),
        resume: format!("{base} resume {id}{flags}"),
        cancel: format!("{base} cancel {id}{flags}"),
        pace: format!(
            "{base} pace {id} --batch-size 500 --pause 50ms --max-rows-per-second 2000{flags}"
        ),
    }
}

fn shell_quote(text: &str) -> String {
    if !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:".contains(c))
    {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

/// The human summary of a plan.
pub fn summary(plan: &Plan, written_to: Option<&Path>) -> String {
    let s = &plan.settings;
    let mut out = String::new();
    let mut line = |label: &str, value: String| {
        out.push_str(&format!("  {label:<11} {value}\n"));
    };
    line("checksum", plan.migration.checksum.clone());
    line(
        "approved",
        "accepted snapshot taken from this checksum".into(),
    );
    if let Some(version) = plan.migration.requires_schema_version {
        line(
            "requires",
            format!(
                "schema version {version}: the schema migrations up to V{version} must have run on the target"
            ),
        );
    }
    line(
        "target",
        plan.target.as_ref().map_or_else(
            || "none given: bounds and estimates are read when the run starts".into(),
            TargetInfo::describe,
        ),
    );
    let key_type = plan.key_type.as_deref().unwrap_or("type read at run");
    let indexed = match plan.key_indexed {
        Some(true) => ", indexed",
        Some(false) => ", NOT INDEXED: every batch will scan the table; add an index first",
        None => "",
    };
    line(
        "table",
        format!("{}, key {} ({key_type}{indexed})", plan.table, plan.key),
    );
    line(
        "key range",
        match &plan.bounds {
            Some(b) => format!("{} ..= {} (read again when the run starts)", b.min, b.max),
            None if plan.target.is_some() => "the table is empty".into(),
            None => "read when the run starts".into(),
        },
    );
    if let Some(e) = &plan.estimate {
        line(
            "estimate",
            format!(
                "~{} ({}), ~{} of {}, ~{} at {} rows/s",
                count(e.rows, "row", "rows"),
                e.source,
                count(e.batches, "batch", "batches"),
                thousands(s.batch_size),
                format_duration(Duration::from_secs(e.duration_seconds)),
                thousands(e.rows_per_second)
            ),
        );
    }
    let sizing = if s.adaptive {
        format!(
            "batch size {} adapting within {}..={} toward {} per batch",
            thousands(s.batch_size),
            thousands(s.min_batch_size),
            thousands(s.max_batch_size),
            format_duration(Duration::from_millis(s.target_batch_ms))
        )
    } else {
        format!("batch size {} (fixed)", thousands(s.batch_size))
    };
    line("batches", sizing);
    line(
        "pacing",
        format!(
            "pause {} between batches, {}",
            format_duration(Duration::from_millis(s.pause_ms)),
            s.max_rows_per_second
                .map_or("no rows/s cap".into(), |c| format!(
                    "at most {} rows/s",
                    thousands(c)
                ))
        ),
    );
    if !s.health.is_off() {
        line(
            "health",
            format!(
                "wait while not: {} (`backfill pace` changes them live)",
                s.health.describe().join("; ")
            ),
        );
    }
    line(
        "limits",
        format!(
            "lock_timeout {}, statement_timeout {} per batch, {}",
            format_duration(Duration::from_millis(s.lock_timeout_ms)),
            format_duration(Duration::from_millis(s.statement_timeout_ms)),
            count(s.max_retries.into(), "retry", "retries")
        ),
    );
    line(
        "ranges",
        format!(
            "{} (claimed by workers; run several to scale out)",
            s.ranges
        ),
    );
    line("tracking", plan.tracking.describe());
    if let Some(path) = written_to {
        line("plan file", display_path(path));
    }
    let mut text = format!(
        "plan for {} ({})\n{out}\nbatch statement, run for each (lower, upper]:\n",
        plan.migration.id, plan.migration.file
    );
    for l in plan.sql.batch.lines() {
        text.push_str(&format!("    {l}\n"));
    }
    if !plan.sql.checks.is_empty() {
        text.push_str(&format!(
            "\nchecks to run once it is done (each must return no rows): {}\n",
            plan.sql
                .checks
                .iter()
                .map(|c| c.description.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    let c = &plan.commands;
    text.push_str(&format!(
        "\nrun:     {}\nwatch:   {}\npause:   {}\nresume:  {}\ncancel:  {}\npace:    {}\n",
        c.run, c.status, c.pause, c.resume, c.cancel, c.pace
    ));
    text
}

/// The default plan file of a data migration: `data-migrations/plans/V{n}__{name}.json`.
pub fn default_path(config: &Config, migration: &DataMigration) -> PathBuf {
    config
        .data_migrations
        .join("plans")
        .join(format!("{}.json", migration.id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn migration() -> DataMigration {
        let text = "-- @requires 1\n-- @table items\n-- @key id\n-- @batch-size 250\n-- @pause 20ms\n-- @batch\nUPDATE items SET n = n + 1 WHERE id > :lower AND id <= :upper;\n-- @check nothing is left at zero\nSELECT id FROM items WHERE n = 0;\n-- @snapshot\nSELECT id, n FROM items ORDER BY id;\n";
        crate::backfill::migration::parse(Path::new("/ws/data-migrations/V3__bump.sql"), text)
            .unwrap()
    }

    fn request(m: &DataMigration) -> PlanRequest {
        PlanRequest {
            settings: Settings::from_migration(m),
            tracking: TrackingNames::default(),
            ranges: None,
        }
    }

    #[test]
    fn settings_start_from_the_data_migration() {
        let s = Settings::from_migration(&migration());
        assert_eq!((s.batch_size, s.pause_ms, s.min_batch_size), (250, 20, 100));
        assert!(s.adaptive);
        let mut bad = s.clone();
        bad.ranges = 1;
        assert!(bad.validate().is_ok());
        bad.statement_timeout_ms = bad.target_batch_ms;
        assert!(bad.validate().unwrap_err().contains("statement timeout"));
        let mut bad = s;
        bad.ranges = 1;
        bad.min_batch_size = bad.max_batch_size + 1;
        assert!(bad.validate().is_err());
    }

    #[test]
    fn a_plan_without_a_database_leaves_bounds_to_the_run() {
        let m = migration();
        let config = Config::defaults(Path::new("/ws"));
        let path = default_path(&config, &m);
        let plan = build(&config, &m, &request(&m), None, &path);
        assert_eq!(plan.migration.file, "data-migrations/V3__bump.sql");
        assert_eq!(plan.bounds, None);
        assert_eq!(plan.estimate, None);
        assert_eq!(plan.settings.ranges, 16);
        assert!(plan.sql.postgres.contains("$1") && plan.sql.batch.contains(":lower"));
        assert_eq!(
            plan.commands.run,
            "cargo xtask backfill run data-migrations/plans/V3__bump.json --database-url \"$DATABASE_URL\""
        );
        assert_eq!(plan.migration.requires_schema_version, Some(1));
        assert!(
            plan.to_json().contains("\"requires_schema_version\": 1"),
            "{}",
            plan.to_json()
        );
        let text = summary(&plan, None);
        assert!(
            text.contains(
                "  requires    schema version 1: the schema migrations up to V1 must have run on the target\n"
            ),
            "{text}"
        );
        assert!(text.contains("read when the run starts"), "{text}");
        assert!(
            text.contains("cancel:  cargo xtask backfill cancel V3__bump"),
            "{text}"
        );
        assert!(text.contains("nothing is left at zero"), "{text}");
    }

    #[test]
    fn the_digest_catches_any_edit() {
        let m = migration();
        let config = Config::defaults(Path::new("/ws"));
        let plan = build(&config, &m, &request(&m), None, Path::new("/ws/p.json"));
        assert_eq!(plan.compute_digest(), plan.digest);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.json");
        std::fs::write(&path, plan.to_json()).unwrap();
        assert_eq!(Plan::load(&path).unwrap(), plan);

        let edited = plan
            .to_json()
            .replace("\"batch_size\": 250", "\"batch_size\": 90000");
        assert_ne!(edited, plan.to_json());
        std::fs::write(&path, edited).unwrap();
        let e = Plan::load(&path).unwrap_err().to_string();
        assert!(e.contains("edited after it was made"), "{e}");

        // A plan made before the schema version was recorded still loads, digest intact.
        let mut older = plan.clone();
        older.migration.requires_schema_version = None;
        older.digest = older.compute_digest();
        let json = older.to_json();
        assert!(!json.contains("requires_schema_version"), "{json}");
        std::fs::write(&path, json).unwrap();
        assert_eq!(Plan::load(&path).unwrap(), older);

        std::fs::write(&path, "{\"format\": 1}").unwrap();
        let e = Plan::load(&path).unwrap_err().to_string();
        assert!(e.contains("not a backfill plan"), "{e}");
    }

    #[test]
    fn estimates_follow_the_rate_cap_and_pauses() {
        let m = migration();
        let config = Config::defaults(Path::new("/ws"));
        let mut req = request(&m);
        req.settings.max_rows_per_second = Some(1000);
        let observed = Observed {
            target: TargetInfo {
                dialect: crate::sql::Dialect::Postgres,
                host: Some("db".into()),
                port: Some(5432),
                database: "app".into(),
            },
            kind: KeyKind::Integer,
            bounds: Some((KeyValue::Int(1), KeyValue::Int(10_000))),
            estimate: Estimate {
                rows: Some(10_000),
                source: "pg_class.reltuples".into(),
                histogram: vec![],
                key_indexed: Some(true),
            },
        };
        let plan = build(&config, &m, &req, Some(&observed), Path::new("/ws/p.json"));
        let e = plan.estimate.unwrap();
        // 10,000 rows at 1,000 rows/s, plus 40 pauses of 20ms.
        assert_eq!(
            (e.batches, e.duration_seconds, e.rows_per_second),
            (40, 11, 1000)
        );
        assert_eq!(plan.settings.ranges, 10);
        assert_eq!(
            plan.bounds,
            Some(Bounds {
                min: "1".into(),
                max: "10000".into()
            })
        );
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_duration(Duration::from_secs(75)), "1m15s");
        assert_eq!(format_duration(Duration::from_secs(7260)), "2h01m");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }
}
