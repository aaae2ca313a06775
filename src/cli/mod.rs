//! The command line: clap subcommands another workspace's xtask can mount as they are.
//!
//! ```no_run
//! use clap::Parser;
//!
//! #[derive(clap::Parser)]
//! #[command(name = "cargo xtask")]
//! enum Xtask {
//!     #[command(flatten)]
//!     Migrate(xtask_migrate::Command),
//!     /// Build the release artifacts (the workspace's own task)
//!     Dist,
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     match Xtask::parse() {
//!         Xtask::Migrate(command) => command.run(),
//!         Xtask::Dist => std::process::ExitCode::SUCCESS,
//!     }
//! }
//! ```
//!
//! Exit codes are the contract pre-commit hooks and CI rely on: 0 clean, 1 findings (or a
//! snapshot difference, a run not done), 2 usage, input or I/O error. [`Command::run`] keeps it:
//! an error prints as one line, `error: ...`, with any password scrubbed, and exits 2.

#[cfg(feature = "backfill")]
pub mod backfill;
#[cfg(feature = "backfill")]
pub mod capture;
#[cfg(feature = "backfill")]
pub mod deploy;
#[cfg(feature = "backfill")]
pub mod health;
#[cfg(feature = "backfill")]
pub mod production;
#[cfg(feature = "backfill")]
pub mod verify;

#[cfg(feature = "lint")]
use std::io::{IsTerminal, Write};
#[cfg(feature = "lint")]
use std::path::PathBuf;
use std::process::ExitCode;

#[cfg(feature = "lint")]
use anyhow::bail;

#[cfg(feature = "backfill")]
use crate::cli::backfill::BackfillCommand;
use crate::config::Config;
#[cfg(feature = "lint")]
use crate::config::parse_table_name;
#[cfg(feature = "lint")]
use crate::lint::output::{self, Format};
#[cfg(feature = "lint")]
use crate::lint::{self, Level, RuleId};
#[cfg(feature = "lint")]
use crate::sql::Dialect;

/// The subcommands this crate provides (those of the enabled features, `lint` and `backfill`).
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Schema migrations: lint them for hidden backfills and long locks, apply them in order
    #[command(subcommand)]
    Migrate(MigrateCommand),
    /// Data migrations: sample them on fixtures, plan, run, watch and control them in production
    #[cfg(feature = "backfill")]
    #[command(subcommand)]
    Backfill(BackfillCommand),
}

impl Command {
    /// Runs the command in the workspace around the current directory and returns the exit
    /// code: 0 clean or done, 1 findings or not done, 2 on an error, which is printed to stderr on
    /// one line with every secret scrubbed (see [`exit_code`]).
    pub fn run(self) -> ExitCode {
        exit_code(Config::discover().and_then(|config| self.execute(&config)))
    }

    /// Runs the command with an explicit configuration and returns the error instead of
    /// printing it; pass the result to [`exit_code`] to keep the exit-code contract.
    pub fn execute(self, config: &Config) -> anyhow::Result<ExitCode> {
        match self {
            #[cfg(feature = "lint")]
            Command::Migrate(MigrateCommand::Lint(args)) => args.run(config),
            #[cfg(feature = "backfill")]
            Command::Migrate(MigrateCommand::Run(args)) => args.run(config),
            #[cfg(feature = "backfill")]
            Command::Backfill(command) => command.run(config),
        }
    }
}

#[derive(Debug, clap::Subcommand)]
pub enum MigrateCommand {
    /// Find backfills and long locks hidden in schema migrations
    ///
    /// Lints the configured migrations and data-migrations directories, or the files and
    /// directories given. SQL that does not parse is a finding like any other. Data migrations
    /// are checked as data migrations: placeholders bounding the key, one target table, no DDL,
    /// a snapshot query with a deterministic order.
    ///
    /// With --estimate --database-url URL, each backfill and lock finding also says what it
    /// costs on that PostgreSQL database (read only, catalog statistics, no scans):
    ///     = estimate: UPDATE of ~1.00M rows (106 MB) holding row locks ~4.2-26 s;
    ///       ROW EXCLUSIVE on public.users for the whole time
    ///
    /// Exit status: 0 no error-severity finding, 1 findings, 2 usage or I/O error.
    ///
    /// Suppress a finding with a comment before the statement that gives a reason:
    ///     -- migrate-lint: allow(backfill-update) roles has five rows everywhere
    /// or for the whole file:
    ///     -- migrate-lint: allow-file(require-lock-timeout) runs before launch
    #[command(verbatim_doc_comment)]
    #[cfg(feature = "lint")]
    Lint(LintArgs),
    /// Apply pending schema migrations in order, holding those that wait for a backfill
    ///
    /// Applies the migrations of the migrations directory with refinery, one at a time, printing
    /// each with its duration; refinery's history table is the record, so refinery's own runner
    /// and this command can be used on the same database in turn.
    ///
    /// Directives in a migration's header comments:
    ///     -- migrate: no-transaction
    ///         run its statements one by one outside a transaction (CREATE INDEX
    ///         CONCURRENTLY), then record it as refinery would
    ///     -- migrate: after-backfill V1
    ///         apply it only once data migration V1 is done on this database
    ///
    /// Exit status: 0 up to date, 1 stopped at a migration that waits for a backfill (or an
    /// inline backfill stopped), 2 an error (nothing after the failing migration is applied).
    #[command(verbatim_doc_comment)]
    #[cfg(feature = "backfill")]
    Run(crate::cli::deploy::MigrateRunArgs),
}

/// `migrate lint`.
#[cfg(feature = "lint")]
#[derive(Debug, clap::Args)]
pub struct LintArgs {
    /// Files or directories to lint (default: the configured migrations directory)
    pub paths: Vec<PathBuf>,

    /// SQL dialect of the migrations (default: from the config, else postgres)
    #[arg(long, value_enum)]
    pub dialect: Option<Dialect>,

    /// Output format
    #[arg(long, value_enum, default_value = "human")]
    pub format: Format,

    /// Do not report on migrations with a version at or below this (they have run everywhere);
    /// they are still read, so later migrations know the schema they built
    #[arg(long, value_name = "VERSION")]
    pub baseline: Option<u64>,

    /// A table known to stay small, where a backfill is allowed (repeat for more; replaces the
    /// configured list)
    #[arg(long = "small-table", value_name = "TABLE")]
    pub small_tables: Vec<String>,

    /// Set a rule's severity: `--rule set-not-null=off` (off, warning or error; repeatable)
    #[arg(long = "rule", value_name = "ID=LEVEL", value_parser = parse_rule_level)]
    pub rules: Vec<(RuleId, Level)>,

    /// Which tool's layout the migrations follow: its file names, versions and order (default:
    /// the configured `migration-layout`, else refinery)
    #[arg(long, value_enum, value_name = "LAYOUT")]
    pub migration_layout: Option<crate::config::MigrationLayout>,

    /// Whether the migration runner wraps each migration in a transaction (refinery does)
    #[arg(long, value_name = "BOOL")]
    pub transactional_migrations: Option<bool>,

    /// Colors in human output
    #[arg(long, value_enum, default_value = "auto")]
    pub color: ColorChoice,

    /// Lint what the next commit contains: the migrations and data migrations staged in git's
    /// index, reported under their real paths (other migrations are read for context only).
    /// What the git pre-commit hook runs
    #[arg(long, conflicts_with = "paths")]
    pub staged: bool,

    /// List every rule with its id, category, default severity and description, and exit
    #[arg(long)]
    pub list_rules: bool,

    /// Print a rule's documentation (what it catches, why it matters, what to do instead, an
    /// example), and exit
    #[arg(long, value_name = "RULE", conflicts_with_all = ["paths", "staged", "list_rules"])]
    pub explain: Option<String>,

    /// Move each inline backfill (an UPDATE or DELETE of one table in a schema migration above
    /// the baseline) into a new data migration, batched by the table's primary key, with a check
    /// and a snapshot query. Shows the change as a diff and writes nothing unless --write is
    /// given; says why for what it cannot move safely
    #[arg(long, conflicts_with_all = ["paths", "staged", "list_rules"])]
    pub fix: bool,

    /// With --fix: make the change (edit the schema migrations, create the data migrations)
    #[arg(long, requires = "fix")]
    pub write: bool,

    /// Add to each backfill and lock finding what it costs on the database of --database-url:
    /// the rows and bytes it touches, the lock it takes and on what, and a duration range (from
    /// catalog statistics and the planner's estimate, read in one read-only transaction: no
    /// table is scanned). Needs the `backfill` feature
    #[arg(long, requires = "database_url", conflicts_with_all = ["fix", "list_rules", "explain"])]
    pub estimate: bool,

    /// With --estimate: the PostgreSQL database to read statistics from (postgres://...; its
    /// password is never printed)
    #[arg(long, value_name = "URL", requires = "estimate")]
    pub database_url: Option<String>,
}

#[cfg(feature = "lint")]
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[cfg(feature = "lint")]
fn parse_rule_level(text: &str) -> Result<(RuleId, Level), String> {
    let (id, level) = text
        .split_once('=')
        .ok_or_else(|| format!("expected ID=LEVEL, e.g. set-not-null=off, got `{text}`"))?;
    let rule = id
        .trim()
        .parse::<RuleId>()
        .map_err(|()| format!("`{id}` is not a rule id (see --list-rules)"))?;
    let level = match level.trim() {
        "off" => Level::Off,
        "warning" | "warn" => Level::Warning,
        "error" => Level::Error,
        other => {
            return Err(format!(
                "`{other}` is not a level: use off, warning or error"
            ));
        }
    };
    Ok((rule, level))
}

#[cfg(feature = "lint")]
impl LintArgs {
    pub fn run(self, config: &Config) -> anyhow::Result<ExitCode> {
        let mut out = std::io::stdout().lock();
        if let Some(id) = &self.explain {
            out.write_all(explain_rule(id)?.as_bytes())?;
            return Ok(ExitCode::SUCCESS);
        }
        if self.list_rules {
            for rule in RuleId::ALL {
                writeln!(
                    out,
                    "{:<34} {:<15} {:<8} {}",
                    rule.as_str(),
                    rule.category().as_str(),
                    rule.default_severity().as_str(),
                    rule.description()
                )?;
            }
            return Ok(ExitCode::SUCCESS);
        }

        let mut options = config.lint_options();
        if let Some(dialect) = self.dialect {
            options.dialect = dialect;
        }
        if let Some(baseline) = self.baseline {
            options.baseline = Some(baseline);
        }
        if !self.small_tables.is_empty() {
            options.small_tables = self
                .small_tables
                .iter()
                .map(|t| parse_table_name(t))
                .collect();
        }
        if let Some(wraps) = self.transactional_migrations {
            options.runner_wraps_in_transaction = wraps;
        }
        if let Some(layout) = self.migration_layout {
            options.layout = layout;
        }
        options.levels.extend(self.rules.iter().copied());

        if self.fix {
            return fix(config, &options, self.write, &mut out);
        }

        // Checked before linting: a build without the PostgreSQL client says so at once.
        let estimate_url = match (self.estimate, self.database_url.as_deref()) {
            (true, Some(url)) => Some(estimate_target(url, options.dialect)?),
            _ => None,
        };
        let mut report = if self.staged {
            lint_staged(config, &options)?
        } else {
            lint_given(config, &options, self.paths)?
        };
        if let Some(url) = estimate_url {
            add_estimates(&mut report, &url, options.dialect)?;
        }

        let color = match self.color {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                self.format == Format::Human
                    && std::io::stdout().is_terminal()
                    && std::env::var_os("NO_COLOR").is_none()
            }
        };
        out.write_all(output::render(&report, self.format, color).as_bytes())?;
        out.flush()?;
        Ok(if report.has_errors() {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        })
    }
}

/// The PostgreSQL URL `--estimate` reads, or the one-line error of a build or a target that
/// cannot estimate.
#[cfg(feature = "lint")]
fn estimate_target(url: &str, dialect: Dialect) -> anyhow::Result<String> {
    #[cfg(not(feature = "backfill"))]
    {
        let _ = (url, dialect);
        bail!(
            "--estimate reads the target database with the PostgreSQL client, which this build leaves out: enable the `backfill` feature of xtask-migrate"
        );
    }
    #[cfg(feature = "backfill")]
    {
        if dialect != Dialect::Postgres {
            bail!("--estimate reads PostgreSQL statistics: it needs --dialect postgres");
        }
        use crate::backfill::db::target::Target;
        match Target::parse(url) {
            Ok(Target::Postgres { url }) => Ok(url),
            Ok(Target::Sqlite { .. }) => {
                bail!("--database-url: --estimate reads a PostgreSQL database (postgres://...)")
            }
            Err(e) => bail!("--database-url: {e}"),
        }
    }
}

/// `migrate lint --estimate`: each backfill and lock finding gets its cost on the target.
#[cfg(all(feature = "lint", feature = "backfill"))]
fn add_estimates(report: &mut lint::Report, url: &str, dialect: Dialect) -> anyhow::Result<()> {
    use anyhow::Context;
    let mut catalog = lint::estimate::pg::PgCatalog::connect(url).context("--estimate")?;
    lint::estimate::annotate(report, dialect, &mut catalog).context("--estimate")?;
    catalog.finish().context("--estimate")
}

#[cfg(all(feature = "lint", not(feature = "backfill")))]
fn add_estimates(_: &mut lint::Report, _: &str, _: Dialect) -> anyhow::Result<()> {
    Ok(())
}

/// `migrate lint --fix [--write]`: the diff of moving each inline backfill into a data
/// migration, what cannot move and why; with `write`, the files. Exit 1 while a backfill stays
/// in a schema migration (one not moved, or a dry run that found one).
#[cfg(feature = "lint")]
fn fix(
    config: &Config,
    options: &lint::LintOptions,
    write: bool,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    if !config.migrations.is_dir() {
        bail!(
            "{}: the migrations directory does not exist (configure `migrations` under [workspace.metadata.{}])",
            config.migrations.display(),
            crate::config::METADATA_KEY
        );
    }
    let report = lint::lint_paths(&[relative_to_cwd(&config.migrations)], options)?;
    let plan = lint::fix::plan(&report, &relative_to_cwd(&config.data_migrations), options);

    for change in &plan.changes {
        let shown = change.path.display().to_string();
        let before = change.before.as_deref().unwrap_or("");
        let diff = similar::TextDiff::from_lines(before, change.after.as_str());
        let old_header = match change.before {
            Some(_) => format!("a/{shown}"),
            None => "/dev/null".to_string(),
        };
        write!(
            out,
            "{}",
            diff.unified_diff()
                .context_radius(3)
                .header(&old_header, &format!("b/{shown}"))
        )?;
    }
    for refusal in &plan.refused {
        writeln!(
            out,
            "{}:{}: {}: not moved: {}",
            refusal.path.display(),
            refusal.line,
            refusal.rule.as_str(),
            refusal.reason
        )?;
    }
    let created: Vec<String> = plan
        .created()
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    let moved = created.len();
    let statements = |n: usize| if n == 1 { "statement" } else { "statements" };
    if write && moved > 0 {
        // New files first (never over an existing one), then the schema migrations: a failure
        // part-way leaves every schema migration as it was or complete.
        for change in plan.changes.iter().filter(|c| c.before.is_none()) {
            if let Some(dir) = change.path.parent() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| anyhow::anyhow!("{}: cannot create: {e}", dir.display()))?;
            }
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&change.path)
                .and_then(|mut f| f.write_all(change.after.as_bytes()))
                .map_err(|e| anyhow::anyhow!("{}: cannot write: {e}", change.path.display()))?;
        }
        for change in plan.changes.iter().filter(|c| c.before.is_some()) {
            let staging = change.path.with_extension("sql.fix");
            std::fs::write(&staging, &change.after)
                .and_then(|()| std::fs::rename(&staging, &change.path))
                .map_err(|e| anyhow::anyhow!("{}: cannot write: {e}", change.path.display()))?;
        }
        writeln!(
            out,
            "moved {moved} {} into {}; next: `cargo xtask backfill sample {}`, review its check and snapshot, and accept the snapshot",
            statements(moved),
            created.join(", "),
            created.join(" ")
        )?;
    } else if moved > 0 {
        writeln!(
            out,
            "{moved} {} can move into data migrations; nothing was written: run `cargo xtask migrate lint --fix --write` to make the change",
            statements(moved)
        )?;
    } else if plan.refused.is_empty() {
        writeln!(out, "no inline backfill to move")?;
    }
    out.flush()?;
    let pending = !plan.refused.is_empty() || (!write && moved > 0);
    Ok(if pending {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Lints the paths given (default: the migrations and data-migrations directories).
#[cfg(feature = "lint")]
fn lint_given(
    config: &Config,
    options: &lint::LintOptions,
    paths: Vec<PathBuf>,
) -> anyhow::Result<lint::Report> {
    let defaulted = paths.is_empty();
    let paths = if defaulted {
        if !config.migrations.is_dir() {
            bail!(
                "{}: the migrations directory does not exist (configure `migrations` under [workspace.metadata.{}] or pass paths)",
                config.migrations.display(),
                crate::config::METADATA_KEY
            );
        }
        vec![relative_to_cwd(&config.migrations)]
    } else {
        paths
    };

    // Data migrations are not schema migrations (their UPDATE is the point): they get the
    // data-migration checks instead of the schema rules.
    let data_dir = config.data_migrations.canonicalize().ok();
    let mut canonical = lint::canonical::CanonicalPaths::default();
    if data_dir.is_some() {
        canonical.prefetch(&paths);
    }
    let is_data = |p: &PathBuf| {
        data_dir
            .as_ref()
            .is_some_and(|dir| canonical.get(p).is_some_and(|c| c.starts_with(dir)))
    };
    let (data_paths, schema_paths): (Vec<PathBuf>, Vec<PathBuf>) =
        paths.into_iter().partition(is_data);
    let mut report = if schema_paths.is_empty() {
        lint::Report::default()
    } else {
        lint::lint_paths_with(&schema_paths, options, &mut canonical)?
    };
    if defaulted && config.data_migrations.is_dir() {
        lint_data_migrations(&mut report, &config.data_migrations, None, options)?;
    } else if !data_paths.is_empty() {
        lint_data_migrations(
            &mut report,
            &config.data_migrations,
            Some(&data_paths),
            options,
        )?;
    }
    Ok(report)
}

/// Lints the files staged in git's index under the migrations and data-migrations directories.
#[cfg(feature = "lint")]
fn lint_staged(config: &Config, options: &lint::LintOptions) -> anyhow::Result<lint::Report> {
    let migrations = staged_under(&config.migrations)?;
    let mut report = if migrations.is_empty() {
        lint::Report::default()
    } else {
        lint::lint_staged(&[relative_to_cwd(&config.migrations)], migrations, options)?
    };
    let data = staged_under(&config.data_migrations)?;
    if !data.is_empty() {
        // The data-migration checks read the files themselves: they see the working tree, which
        // matches the index unless the file has unstaged edits.
        let paths: Vec<PathBuf> = data.into_keys().collect();
        lint_data_migrations(&mut report, &config.data_migrations, Some(&paths), options)?;
    }
    Ok(report)
}

/// The `.sql` files staged (added, copied, modified, renamed) under `dir`, with their staged
/// content, keyed by the path a walk of `relative_to_cwd(dir)` would give them.
#[cfg(feature = "lint")]
fn staged_under(
    dir: &std::path::Path,
) -> anyhow::Result<std::collections::HashMap<PathBuf, Vec<u8>>> {
    use anyhow::Context;
    let mut staged = std::collections::HashMap::new();
    let Ok(canonical_dir) = dir.canonicalize() else {
        return Ok(staged);
    };
    let git = |args: &[&std::ffi::OsStr]| -> anyhow::Result<Vec<u8>> {
        let out = std::process::Command::new("git")
            .current_dir(&canonical_dir)
            .args(args)
            .output()
            .context("run git (is it installed?)")?;
        if !out.status.success() {
            bail!(
                "{}: git {}: {}",
                canonical_dir.display(),
                args.iter()
                    .map(|a| a.to_string_lossy())
                    .collect::<Vec<_>>()
                    .join(" "),
                String::from_utf8_lossy(&out.stderr)
                    .trim()
                    .replace('\n', " ")
            );
        }
        Ok(out.stdout)
    };
    let top = git(&["rev-parse".as_ref(), "--show-toplevel".as_ref()])?;
    let top = PathBuf::from(
        String::from_utf8_lossy(&top)
            .trim_end_matches('\n')
            .to_string(),
    )
    .canonicalize()
    .context("find the git work tree")?;
    let names = git(&[
        "diff".as_ref(),
        "--cached".as_ref(),
        "--name-only".as_ref(),
        "-z".as_ref(),
        "--diff-filter=ACMR".as_ref(),
        "--".as_ref(),
        canonical_dir.as_os_str(),
    ])?;
    let shown = relative_to_cwd(dir);
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let name = String::from_utf8_lossy(name).into_owned();
        if !name.ends_with(".sql") {
            continue;
        }
        let Ok(relative) = top
            .join(&name)
            .strip_prefix(&canonical_dir)
            .map(PathBuf::from)
        else {
            continue;
        };
        let spec = format!(":{name}");
        let content = git(&["show".as_ref(), spec.as_ref()])?;
        staged.insert(shown.join(relative), content);
    }
    Ok(staged)
}

/// Adds the data-migration findings for the files of `dir` (all of them, or those under `only`).
#[cfg(feature = "lint")]
fn lint_data_migrations(
    report: &mut lint::Report,
    dir: &std::path::Path,
    only: Option<&[PathBuf]>,
    options: &lint::LintOptions,
) -> anyhow::Result<()> {
    use std::collections::BTreeMap;

    let Some(severity) = options.severity(RuleId::DataMigrationInvalid) else {
        return Ok(());
    };
    let wanted = |p: &std::path::Path| match only {
        None => true,
        Some(only) => {
            let c = p.canonicalize().ok();
            only.iter().any(|o| match (o.canonicalize().ok(), &c) {
                (Some(o), Some(c)) => c.starts_with(&o),
                _ => false,
            })
        }
    };
    let mut files: BTreeMap<PathBuf, Vec<lint::Finding>> = BTreeMap::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_file() && path.extension().is_some_and(|e| e == "sql") && wanted(&path) {
            files.entry(path).or_default();
        }
    }
    for error in crate::backfill::migration::check_dir(dir) {
        let Some(path) = error.path.clone().filter(|p| files.contains_key(p)) else {
            continue;
        };
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let span = error.line.map_or(0..0, |line| line_span(&text, line));
        files.entry(path).or_default().push(lint::Finding {
            rule: RuleId::DataMigrationInvalid,
            severity,
            span: span.clone(),
            anchor: Some(span),
            message: error.message.clone(),
            help: "fix the data migration; `cargo xtask migrate lint --explain data-migration-invalid` describes the format".into(),
            note: None,
            estimate: None,
        });
    }
    for (path, findings) in files {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        report.files.push(lint::FileReport {
            path: relative_to_cwd(&path),
            text,
            findings,
        });
    }
    Ok(())
}

/// The documentation `migrate lint --explain ID` prints; an unknown id is an error naming the
/// closest one.
#[cfg(feature = "lint")]
pub fn explain_rule(id: &str) -> anyhow::Result<String> {
    let id = id.trim();
    match id.parse::<RuleId>() {
        Ok(rule) => Ok(lint::explain::render(rule, 100)),
        Err(()) => bail!(
            "`{id}` is not a rule id{} (`cargo xtask migrate lint --list-rules` lists them)",
            lint::suggest_rule(id)
        ),
    }
}

/// The byte range of 1-based line `line` of `text` (without its line break).
#[cfg(feature = "lint")]
fn line_span(text: &str, line: usize) -> std::ops::Range<usize> {
    let mut start = 0;
    for (i, l) in text.split_inclusive('\n').enumerate() {
        if i + 1 == line {
            return start..start + l.trim_end_matches(['\n', '\r']).len();
        }
        start += l.len();
    }
    text.len()..text.len()
}

/// Paths print relative to where the user stands when they can.
#[cfg(feature = "lint")]
fn relative_to_cwd(path: &std::path::Path) -> PathBuf {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(&cwd).ok().map(PathBuf::from))
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| path.to_path_buf())
}

/// The whole program for a thin `xtask` binary: parse arguments, run, map errors to exit 2.
pub fn main() -> ExitCode {
    use clap::Parser;

    #[derive(clap::Parser)]
    #[command(
        name = "cargo xtask",
        bin_name = "cargo xtask",
        version,
        about = "Safe schema migrations and resumable backfills"
    )]
    struct Cli {
        #[command(subcommand)]
        command: Command,
    }

    Cli::parse().command.run()
}

/// The exit code of a command's result; an error is printed to stderr as one line, `error: ...`
/// (the context chain joined, line breaks folded), with every secret scrubbed, and gives 2.
pub fn exit_code(result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", error_line(&err));
            ExitCode::from(2)
        }
    }
}

/// An error as the one line [`exit_code`] prints (without `error: `).
pub fn error_line(err: &anyhow::Error) -> String {
    crate::secrets::scrub(&format!("{err:#}").replace(['\n', '\r'], " "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_is_one_scrubbed_line_and_exit_code_2() {
        crate::secrets::register("hunter2-cli-test");
        let err = anyhow::anyhow!("cannot connect: password hunter2-cli-test\nwas refused")
            .context("backfill run");
        assert_eq!(
            error_line(&err),
            "backfill run: cannot connect: password *** was refused"
        );
        assert_eq!(exit_code(Err(err)), ExitCode::from(2));
        assert_eq!(exit_code(Ok(ExitCode::from(1))), ExitCode::from(1));
    }
}
