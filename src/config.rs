//! Configuration: `[workspace.metadata.xtask-migrate]` in the workspace's root `Cargo.toml`,
//! found with cargo_metadata. Command-line flags override it (each command applies its own).
//!
//! ```toml
//! [workspace.metadata.xtask-migrate]
//! migrations = "migrations"            # schema migrations
//! migration-layout = "refinery"        # their tool's layout: refinery, sqlx or diesel
//! data-migrations = "data-migrations"
//! fixtures = "fixtures"
//! dialect = "postgres"                 # or "sqlite": the production database's dialect
//! baseline = 3                         # V1..V3 have run everywhere: not linted (still read)
//! small-tables = ["roles", "settings"] # backfills of these are allowed
//! transactional-migrations = true      # the runner wraps each migration in a transaction
//! tracking-schema = "ops"              # where `backfill run` keeps its tracking tables
//! tracking-table-prefix = "xtask_backfill_"  # their names' prefix (`..._runs`, `..._ranges`)
//! sample-engine = "auto"               # what `backfill sample` runs on: auto, sqlite,
//!                                      # postgres-local, postgres-url
//! postgres-bin-dir = "/usr/lib/postgresql/15/bin"  # postgres-local's server binaries
//!
//! [workspace.metadata.xtask-migrate.rules]
//! require-lock-timeout = "error"       # off | warning | error
//!
//! [workspace.metadata.xtask-migrate.capture]  # `backfill capture` (see backfill::capture)
//! seed = 1
//! roots = [{ table = "users", fraction = 0.01 }]
//! ```
//!
//! Unknown keys are errors, not silently ignored: a misspelt `small-table` must not quietly
//! re-enable every backfill finding.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

#[cfg(feature = "lint")]
use crate::lint::{Level, LintOptions, RuleId};
use crate::sql::{Dialect, Name};

/// The table under `[workspace.metadata]` this tool reads.
pub const METADATA_KEY: &str = "xtask-migrate";

/// Settings as written in `Cargo.toml`; every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct RawConfig {
    migrations: Option<PathBuf>,
    data_migrations: Option<PathBuf>,
    fixtures: Option<PathBuf>,
    dialect: Option<Dialect>,
    baseline: Option<u64>,
    #[serde(default)]
    small_tables: Vec<String>,
    transactional_migrations: Option<bool>,
    tracking_schema: Option<String>,
    tracking_table_prefix: Option<String>,
    sample_engine: Option<SampleEngine>,
    postgres_bin_dir: Option<PathBuf>,
    /// `backfill capture`'s table, read by that command (`backfill::capture::settings`).
    capture: Option<serde_json::Value>,
    migration_layout: Option<MigrationLayout>,
    #[cfg(feature = "lint")]
    #[serde(default)]
    rules: HashMap<String, Level>,
    /// Rule severities only matter to the linter: a build without it accepts the table unread.
    #[cfg(not(feature = "lint"))]
    #[serde(default)]
    #[allow(dead_code)]
    rules: HashMap<String, serde::de::IgnoredAny>,
}

/// The resolved configuration of a workspace.
#[derive(Debug, Clone)]
pub struct Config {
    /// The workspace root: relative paths in the config are relative to it.
    pub root: PathBuf,
    /// Schema migrations (refinery `V{n}__{name}.sql` files).
    pub migrations: PathBuf,
    /// Data migrations.
    pub data_migrations: PathBuf,
    /// Sampled fixture rows, one file per table.
    pub fixtures: PathBuf,
    /// The production database's dialect (what `migrate lint` parses by default).
    pub dialect: Dialect,
    pub baseline: Option<u64>,
    pub small_tables: Vec<Name>,
    pub transactional_migrations: bool,
    #[cfg(feature = "lint")]
    pub rule_levels: HashMap<RuleId, Level>,
    /// Schema of `backfill run`'s tracking tables (PostgreSQL; default: the search path's).
    pub tracking_schema: Option<String>,
    /// Prefix of the tracking tables' names (default `xtask_backfill_`).
    pub tracking_table_prefix: Option<String>,
    /// What `backfill sample` runs on (default [`SampleEngine::Auto`]).
    pub sample_engine: SampleEngine,
    /// Where `postgres-local` finds `initdb` and `postgres` (default: searched for).
    pub postgres_bin_dir: Option<PathBuf>,
    /// `[workspace.metadata.xtask-migrate.capture]` as written: what `backfill capture` samples
    /// and how it scrubs personal data. Checked by that command, against the source's catalog.
    pub capture: Option<serde_json::Value>,
    /// Which tool's layout the migrations directory follows (default refinery's).
    pub migration_layout: MigrationLayout,
}

/// The migrations directory's layout: the file names, versions and order of the tool that runs
/// it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum MigrationLayout {
    /// refinery: `V{version}__{name}.sql` at any depth
    #[default]
    Refinery,
    /// sqlx: `{version}_{description}.sql`, or `.up.sql` and `.down.sql`, at the top level
    Sqlx,
    /// diesel: a directory `{version}_{name}/` per migration with `up.sql` and `down.sql`
    Diesel,
}

impl MigrationLayout {
    /// `Err` (a one-line reason) unless refinery runs the migrations: `what` (`backfill sample`,
    /// `migrate run`) replays and records them with refinery, whose versions are `i32` and whose
    /// file names are its own.
    pub fn require_refinery(self, what: &str) -> Result<(), String> {
        match self {
            MigrationLayout::Refinery => Ok(()),
            other => Err(format!(
                "migration-layout = \"{}\": {what} applies schema migrations with refinery and reads only refinery's layout (V{{n}}__name.sql); `migrate lint` reads the {} layout",
                other.name(),
                other.name()
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            MigrationLayout::Refinery => "refinery",
            MigrationLayout::Sqlx => "sqlx",
            MigrationLayout::Diesel => "diesel",
        }
    }
}

/// The database `backfill sample` builds and runs a data migration on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum SampleEngine {
    /// `sqlite` when the workspace's dialect is sqlite; `postgres-local` when it is postgres and
    /// PostgreSQL's server binaries are on this machine, else `sqlite`, with a note
    #[default]
    Auto,
    /// A temporary SQLite database (embedded: nothing to install)
    Sqlite,
    /// A private, throwaway PostgreSQL cluster started from this machine's PostgreSQL binaries
    PostgresLocal,
    /// A throwaway schema on the server of --database-url
    PostgresUrl,
}

impl SampleEngine {
    pub fn name(self) -> &'static str {
        match self {
            SampleEngine::Auto => "auto",
            SampleEngine::Sqlite => "sqlite",
            SampleEngine::PostgresLocal => "postgres-local",
            SampleEngine::PostgresUrl => "postgres-url",
        }
    }

    /// The engine called `name`, as written in the config and snapshots.
    pub fn from_name(name: &str) -> Option<SampleEngine> {
        [
            SampleEngine::Auto,
            SampleEngine::Sqlite,
            SampleEngine::PostgresLocal,
            SampleEngine::PostgresUrl,
        ]
        .into_iter()
        .find(|e| e.name() == name)
    }
}

impl std::fmt::Display for SampleEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Config {
    /// Defaults for a workspace rooted at `root`, with no metadata table.
    pub fn defaults(root: &Path) -> Config {
        Config::from_raw(root, RawConfig::default()).expect("defaults are valid")
    }

    /// Finds the workspace around the current directory with `cargo metadata` and reads its
    /// `[workspace.metadata.xtask-migrate]` table.
    ///
    /// Outside any Cargo workspace (no `Cargo.toml` in this directory or above), the defaults
    /// apply with the current directory as root, so the linter also works in other repositories.
    pub fn discover() -> anyhow::Result<Config> {
        let cwd = std::env::current_dir().context("read the current directory")?;
        Config::discover_from(&cwd)
    }

    /// [`Config::discover`] from `dir` instead of the current directory.
    pub fn discover_from(dir: &Path) -> anyhow::Result<Config> {
        if !dir.ancestors().any(|d| d.join("Cargo.toml").is_file()) {
            return Ok(Config::defaults(dir));
        }
        let metadata = cargo_metadata::MetadataCommand::new()
            .current_dir(dir)
            .no_deps()
            .exec()
            .context(
                "run `cargo metadata` to find the workspace (is this inside a Cargo workspace?)",
            )?;
        let root = metadata.workspace_root.into_std_path_buf();
        Config::from_metadata(&root, &metadata.workspace_metadata)
    }

    /// Reads the config from the `[workspace.metadata]` value of a workspace rooted at `root`.
    pub fn from_metadata(
        root: &Path,
        workspace_metadata: &serde_json::Value,
    ) -> anyhow::Result<Config> {
        let manifest = root.join("Cargo.toml");
        let raw = match workspace_metadata.get(METADATA_KEY) {
            None => RawConfig::default(),
            Some(value) => RawConfig::deserialize(value).map_err(|e| {
                anyhow::anyhow!(
                    "{}: invalid [workspace.metadata.{METADATA_KEY}]: {e}",
                    manifest.display()
                )
            })?,
        };
        Config::from_raw(root, raw)
    }

    fn from_raw(root: &Path, raw: RawConfig) -> anyhow::Result<Config> {
        #[cfg(feature = "lint")]
        let mut rule_levels = HashMap::new();
        #[cfg(feature = "lint")]
        for (id, level) in raw.rules {
            let Ok(rule) = id.parse::<RuleId>() else {
                anyhow::bail!(
                    "{}: [workspace.metadata.{METADATA_KEY}.rules] names `{id}`, which is not a rule id (see `cargo xtask migrate lint --list-rules`)",
                    root.join("Cargo.toml").display()
                );
            };
            rule_levels.insert(rule, level);
        }
        let dir =
            |p: Option<PathBuf>, default: &str| root.join(p.unwrap_or_else(|| default.into()));
        Ok(Config {
            root: root.to_path_buf(),
            migrations: dir(raw.migrations, "migrations"),
            data_migrations: dir(raw.data_migrations, "data-migrations"),
            fixtures: dir(raw.fixtures, "fixtures"),
            dialect: raw.dialect.unwrap_or(Dialect::Postgres),
            baseline: raw.baseline,
            small_tables: raw
                .small_tables
                .iter()
                .map(|t| parse_table_name(t))
                .collect(),
            transactional_migrations: raw.transactional_migrations.unwrap_or(true),
            #[cfg(feature = "lint")]
            rule_levels,
            tracking_schema: raw.tracking_schema,
            tracking_table_prefix: raw.tracking_table_prefix,
            sample_engine: raw.sample_engine.unwrap_or_default(),
            postgres_bin_dir: raw.postgres_bin_dir.map(|p| root.join(p)),
            capture: raw.capture,
            migration_layout: raw.migration_layout.unwrap_or_default(),
        })
    }

    /// The lint settings this config implies (before command-line overrides).
    #[cfg(feature = "lint")]
    pub fn lint_options(&self) -> LintOptions {
        LintOptions {
            dialect: self.dialect,
            levels: self.rule_levels.clone(),
            small_tables: self.small_tables.clone(),
            baseline: self.baseline,
            runner_wraps_in_transaction: self.transactional_migrations,
            migrations_dir: Some(self.migrations.clone()),
            backfills: crate::lint::BackfillFacts::read_dir(&self.data_migrations),
            layout: self.migration_layout,
        }
    }
}

/// `schema.table` or `table`, normalized like unquoted SQL identifiers.
pub fn parse_table_name(text: &str) -> Name {
    let text = text.trim();
    match text.split_once('.') {
        Some((schema, name)) => Name::qualified(schema.to_lowercase(), name.to_lowercase()),
        None => Name::new(text.to_lowercase()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_key() {
        let meta = serde_json::json!({ METADATA_KEY: {
            "migrations": "db/schema",
            "dialect": "sqlite",
            "baseline": 3,
            "small-tables": ["Roles", "app.settings"],
            "transactional-migrations": false,
            "tracking-schema": "ops",
            "tracking-table-prefix": "bf_",
            "sample-engine": "postgres-local",
            "postgres-bin-dir": "/opt/pg/bin",
            "rules": { "require-lock-timeout": "error", "set-not-null": "off" },
        }});
        let config = Config::from_metadata(Path::new("/ws"), &meta).unwrap();
        assert_eq!(config.migrations, Path::new("/ws/db/schema"));
        assert_eq!(config.data_migrations, Path::new("/ws/data-migrations"));
        assert_eq!(config.dialect, Dialect::Sqlite);
        assert_eq!(config.baseline, Some(3));
        assert_eq!(
            config.small_tables,
            vec![Name::new("roles"), Name::qualified("app", "settings")]
        );
        assert!(!config.transactional_migrations);
        assert_eq!(config.tracking_schema.as_deref(), Some("ops"));
        assert_eq!(config.tracking_table_prefix.as_deref(), Some("bf_"));
        assert_eq!(config.sample_engine, SampleEngine::PostgresLocal);
        assert_eq!(
            config.postgres_bin_dir.as_deref(),
            Some(Path::new("/opt/pg/bin"))
        );
        let defaults = Config::defaults(Path::new("/ws"));
        assert_eq!(defaults.sample_engine, SampleEngine::Auto);
        assert_eq!(defaults.postgres_bin_dir, None);
        #[cfg(feature = "lint")]
        assert_eq!(
            config.rule_levels[&RuleId::RequireLockTimeout],
            Level::Error
        );
        #[cfg(feature = "lint")]
        assert_eq!(config.rule_levels[&RuleId::SetNotNull], Level::Off);
    }

    #[test]
    fn unknown_key_is_an_error_naming_the_manifest() {
        let meta = serde_json::json!({ METADATA_KEY: { "small-table": ["roles"] } });
        let err = Config::from_metadata(Path::new("/ws"), &meta)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/ws/Cargo.toml") && err.contains("small-table"),
            "{err}"
        );
    }

    #[test]
    fn an_unknown_sample_engine_names_the_choices() {
        let meta = serde_json::json!({ METADATA_KEY: { "sample-engine": "postgres" } });
        let err = Config::from_metadata(Path::new("/ws"), &meta)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(
                "unknown variant `postgres`, expected one of `auto`, `sqlite`, `postgres-local`, `postgres-url`"
            ),
            "{err}"
        );
        for engine in ["auto", "sqlite", "postgres-local", "postgres-url"] {
            assert_eq!(SampleEngine::from_name(engine).unwrap().name(), engine);
        }
    }

    #[cfg(feature = "lint")]
    #[test]
    fn unknown_rule_is_an_error() {
        let meta = serde_json::json!({ METADATA_KEY: { "rules": { "backfil-update": "off" } } });
        let err = Config::from_metadata(Path::new("/ws"), &meta)
            .unwrap_err()
            .to_string();
        assert!(err.contains("backfil-update"), "{err}");
    }

    #[cfg(feature = "lint")]
    #[test]
    fn bad_level_is_an_error() {
        let meta = serde_json::json!({ METADATA_KEY: { "rules": { "set-not-null": "loud" } } });
        assert!(Config::from_metadata(Path::new("/ws"), &meta).is_err());
    }
}
