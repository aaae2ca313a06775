//! Configuration: `[workspace.metadata.xtask-migrate]` in the workspace's root `Cargo.toml`.
//! Command-line flags override it (each command applies its own).
//!
//! The workspace root is found as cargo finds it: the nearest `Cargo.toml` at or above the
//! current directory is the root when it has a `[workspace]` table, else the package belongs to
//! the workspace above that lists it. Those manifests are read directly with the `toml` crate
//! (every `migrate lint` of a pre-commit hook pays for this, and a `cargo metadata` process costs
//! more than linting a thousand files); any other layout (glob members, `package.workspace`, a
//! manifest that does not parse, a member without a manifest) is left to `cargo metadata`, so
//! the root and the table read are always the ones cargo would use.
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
//! sample-keep-alive = "10m"           # postgres-local keeps its cluster this long after the
//!                                      # last command ("0": one cluster per command)
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
    sample_keep_alive: Option<String>,
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
    /// How long `postgres-local` keeps its cluster running after a command's last use, as
    /// written (`10m`, `90s`, `0`: a cluster per command); read by the sample engine.
    pub sample_keep_alive: Option<String>,
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
        if let Some((root, workspace_metadata)) = read_workspace_metadata(dir) {
            return Config::from_metadata(&root, &workspace_metadata);
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
            sample_keep_alive: raw.sample_keep_alive,
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

/// The workspace root around `dir` and its `[workspace.metadata]` (`Null` when there is none), as
/// `cargo metadata` would report them, read from the manifests themselves; `None` when finding
/// them needs more of cargo than this reads (see the module documentation).
fn read_workspace_metadata(dir: &Path) -> Option<(PathBuf, serde_json::Value)> {
    // Cargo starts from the process's working directory, which has its symbolic links resolved.
    let start = dir.canonicalize().ok()?;
    let package_dir = start
        .ancestors()
        .find(|d| d.join("Cargo.toml").is_file())?
        .to_path_buf();
    let manifest = read_manifest(&package_dir)?;
    if manifest
        .get("package")
        .is_some_and(|p| p.get("workspace").is_some())
    {
        return None;
    }
    if let Some(workspace) = manifest.get("workspace") {
        return workspace_root(&package_dir, workspace.as_table()?);
    }
    manifest.get("package")?;
    // A package: the root is the first manifest above it, which must list it as a member; with no
    // manifest above, the package is a workspace of its own, without workspace metadata.
    let Some(root) = package_dir
        .ancestors()
        .skip(1)
        .find(|d| d.join("Cargo.toml").is_file())
    else {
        return Some((package_dir, serde_json::Value::Null));
    };
    let root_manifest = read_manifest(root)?;
    let workspace = root_manifest.get("workspace")?.as_table()?;
    let relative = package_dir.strip_prefix(root).ok()?;
    let listed = workspace.get("members")?.as_array()?.iter().any(|m| {
        m.as_str()
            .is_some_and(|m| Path::new(m).components().eq(relative.components()))
    });
    if !listed
        || root_manifest
            .get("package")
            .is_some_and(|p| p.get("workspace").is_some())
    {
        return None;
    }
    workspace_root(root, workspace)
}

/// `root` and its `[workspace.metadata]`, when every member the `[workspace]` table lists is a
/// directory with a manifest (a glob, or a member cargo would fail to load, is left to cargo).
fn workspace_root(root: &Path, workspace: &toml::Table) -> Option<(PathBuf, serde_json::Value)> {
    if let Some(members) = workspace.get("members") {
        for member in members.as_array()? {
            let member = member.as_str()?;
            if member.contains(['*', '?', '[']) || !root.join(member).join("Cargo.toml").is_file() {
                return None;
            }
        }
    }
    let metadata = workspace
        .get("metadata")
        .map_or(serde_json::Value::Null, toml_to_json);
    Some((root.to_path_buf(), metadata))
}

fn read_manifest(dir: &Path) -> Option<toml::Table> {
    std::fs::read_to_string(dir.join("Cargo.toml"))
        .ok()?
        .parse()
        .ok()
}

/// A TOML value as `cargo metadata` writes it in JSON (a date-time as its TOML text).
fn toml_to_json(value: &toml::Value) -> serde_json::Value {
    use serde_json::Value as Json;
    match value {
        toml::Value::String(s) => Json::String(s.clone()),
        toml::Value::Integer(i) => Json::from(*i),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
        toml::Value::Boolean(b) => Json::Bool(*b),
        toml::Value::Datetime(d) => Json::String(d.to_string()),
        toml::Value::Array(items) => Json::Array(items.iter().map(toml_to_json).collect()),
        toml::Value::Table(table) => Json::Object(
            table
                .iter()
                .map(|(k, v)| (k.clone(), toml_to_json(v)))
                .collect(),
        ),
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

    /// What `cargo metadata` reports as the workspace root and its metadata, from `dir`.
    fn cargo_says(dir: &Path) -> (PathBuf, serde_json::Value) {
        let metadata = cargo_metadata::MetadataCommand::new()
            .current_dir(dir)
            .no_deps()
            .exec()
            .unwrap();
        (
            metadata.workspace_root.into_std_path_buf(),
            metadata.workspace_metadata,
        )
    }

    #[test]
    fn the_manifests_give_the_root_and_table_cargo_metadata_gives() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        // The root, a member, a directory inside the root package, a workspace of its own inside.
        for dir in [
            repo.to_path_buf(),
            repo.join("xtask"),
            repo.join("xtask/src"),
            repo.join("src/lint"),
            repo.join("examples/pg-workspace/migrations"),
        ] {
            let read = read_workspace_metadata(&dir)
                .unwrap_or_else(|| panic!("{}: left to cargo", dir.display()));
            assert_eq!(read, cargo_says(&dir), "{}", dir.display());
        }
    }

    #[test]
    fn layouts_the_manifests_do_not_settle_are_left_to_cargo() {
        let ws = tempfile::tempdir().unwrap();
        let root = ws.path();
        let write = |path: &str, text: &str| {
            let path = root.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        let package = "[package]\nname = \"m\"\nversion = \"0.1.0\"\nedition = \"2021\"\n";
        write("crates/m/Cargo.toml", package);
        write("crates/m/src/lib.rs", "");
        let member = root.join("crates/m");
        // A package with no workspace above is its own root, with no workspace metadata.
        let read = read_workspace_metadata(&member).unwrap();
        assert_eq!(read, cargo_says(&member));
        assert_eq!(read.1, serde_json::Value::Null);

        let meta = "\n[workspace.metadata.xtask-migrate]\ndialect = \"sqlite\"\nbaseline = 3\nsmall-tables = [\"roles\"]\n";
        write(
            "Cargo.toml",
            &format!("[workspace]\nmembers = [\"crates/m/\"]\n{meta}"),
        );
        let read = read_workspace_metadata(&member).unwrap();
        assert_eq!(read, cargo_says(&member));
        let config = Config::discover_from(&member).unwrap();
        assert_eq!(config.dialect, Dialect::Sqlite);
        assert_eq!(config.baseline, Some(3));
        assert_eq!(config.root, root.canonicalize().unwrap());

        // Glob members, a member cargo would not find, a root that does not list the package, a
        // `package.workspace` pointer: cargo decides.
        for manifest in [
            "[workspace]\nmembers = [\"crates/*\"]\n",
            "[workspace]\nmembers = [\"crates/m\", \"crates/gone\"]\n",
            "[workspace]\nmembers = []\n",
        ] {
            write("Cargo.toml", &format!("{manifest}{meta}"));
            assert_eq!(read_workspace_metadata(&member), None, "{manifest}");
        }
        write(
            "Cargo.toml",
            &format!("[workspace]\nmembers = [\"crates/m\"]\n{meta}"),
        );
        write(
            "crates/m/Cargo.toml",
            &format!("{package}workspace = \"../..\"\n"),
        );
        assert_eq!(read_workspace_metadata(&member), None);
        assert_eq!(Config::discover_from(&member).unwrap().baseline, Some(3));
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
