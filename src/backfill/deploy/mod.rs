//! `migrate run`: applies the workspace's schema migrations to a database, in order, with
//! refinery, and holds each one that needs a backfill until that data migration is done there.
//!
//! Every migration is applied by refinery's own runner, one at a time (so each is printed with
//! its duration and a failure names its file and line), and refinery's history table is the only
//! record: refinery's runner and this command can be used on the same database in turn. Two
//! directives in a migration's header change how it is applied (see [`crate::markers`]):
//! - `-- migrate: no-transaction`: its statements run one by one outside a transaction (what
//!   `CREATE INDEX CONCURRENTLY` needs); then refinery records it without running it
//!   (`Target::FakeVersion`), so the history holds exactly the checksum refinery computes. A
//!   failure part-way leaves the statements before it applied and the migration unrecorded:
//!   write such migrations to be re-runnable (`IF NOT EXISTS`).
//! - `-- migrate: after-backfill V1`: before applying it, the data migration must be `done` on
//!   this database (its tracking tables say so). If it is not, the command stops there (exit 1)
//!   and says how to run it; with [`Backfills::Run`] it runs the approved data migration inline
//!   through the production engine ([`crate::backfill::run::worker`]), then goes on.
//!
//! Invariants: nothing is applied when a directive is malformed or names a data migration that
//! does not exist, or when a gate could never open (the data migration needs a schema version
//! at or after the gated one). A migration whose file changed after it was applied is refused,
//! as refinery refuses it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use refinery::{Migration, Runner, Target as RefineryTarget};

use crate::backfill::db::postgres::PgBackend;
use crate::backfill::db::sqlite::SqliteBackend;
use crate::backfill::db::target::Target;
use crate::backfill::display::{count, format_duration};
use crate::backfill::error::{Error, ErrorKind, Result};
use crate::backfill::migration::{self as data, DataMigration};
use crate::backfill::run::plan::Settings;
use crate::backfill::run::progress::{Progress, ProgressMode};
use crate::backfill::run::tracking::{self, RunState, TrackingNames};
use crate::backfill::run::worker::{self, Finish, RunOptions};
use crate::config::Config;
use crate::markers::{self, Markers};

/// refinery's history table (its default name).
const HISTORY: &str = "refinery_schema_history";

/// What to do at a gate whose data migration is not done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backfills {
    /// Stop before the gated migration (exit 1) and say which backfill to run.
    Wait,
    /// Run the approved data migration inline, batch by batch, then continue.
    Run,
}

/// How `migrate run` runs.
pub struct Options<'a> {
    /// Apply up to and including this version (default: every migration).
    pub target_version: Option<u64>,
    pub backfills: Backfills,
    pub tracking: TrackingNames,
    /// Set by a signal: an inline backfill stops after its current batch.
    pub stop: &'a AtomicBool,
    pub progress: ProgressMode,
}

/// How `migrate run` ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every migration up to the target is applied.
    UpToDate {
        applied: usize,
        version: Option<u64>,
    },
    /// Stopped before `migration`: `backfill` is not done on this database.
    Gated {
        applied: usize,
        migration: String,
        backfill: String,
    },
}

/// A schema migration with what its directives say.
struct Schema {
    migration: Migration,
    version: u64,
    path: PathBuf,
    markers: Markers,
    /// The data migrations its gates name, resolved in `data-migrations/`.
    gates: Vec<DataMigration>,
}

/// The database, through the connection refinery's runner takes.
enum Db {
    Postgres(Box<PgBackend>),
    Sqlite(SqliteBackend),
}

impl Db {
    fn connect(target: &Target) -> Result<Db> {
        Ok(match target {
            Target::Postgres { url } => Db::Postgres(Box::new(PgBackend::connect(url)?)),
            Target::Sqlite { path } => Db::Sqlite(SqliteBackend::open(path)?),
        })
    }

    /// The history, created first when missing (as refinery's runner does).
    fn applied(&mut self) -> std::result::Result<Vec<Migration>, refinery::Error> {
        use refinery::Migrate;
        let runner = Runner::new(&[]);
        match self {
            Db::Postgres(db) => {
                db.client().assert_migrations_table(HISTORY)?;
                runner.get_applied_migrations(db.client())
            }
            Db::Sqlite(db) => {
                db.connection().assert_migrations_table(HISTORY)?;
                runner.get_applied_migrations(db.connection())
            }
        }
    }

    fn run(&mut self, runner: &Runner) -> std::result::Result<(), refinery::Error> {
        match self {
            Db::Postgres(db) => runner.run(db.client()).map(drop),
            Db::Sqlite(db) => runner.run(db.connection()).map(drop),
        }
    }

    /// Runs one statement on its own, outside any transaction.
    fn execute_alone(&mut self, sql: &str) -> std::result::Result<(), (String, Option<usize>)> {
        match self {
            Db::Postgres(db) => db
                .client()
                .batch_execute(sql)
                .map_err(|e| crate::backfill::db::postgres::locate(&e, sql)),
            Db::Sqlite(db) => db
                .connection()
                .execute_batch(sql)
                .map_err(|e| crate::backfill::db::sqlite::locate(&e, sql)),
        }
    }

    fn locate(&self, e: &(dyn std::error::Error + 'static), sql: &str) -> (String, Option<usize>) {
        match self {
            Db::Postgres(_) => crate::backfill::db::postgres::locate(e, sql),
            Db::Sqlite(_) => crate::backfill::db::sqlite::locate(e, sql),
        }
    }
}

/// Loads the schema migrations and their directives, and resolves every gate: any mistake is
/// reported before anything is applied.
fn load(config: &Config) -> Result<Vec<Schema>> {
    let mut migrations = crate::backfill::db::schema::load_migrations(
        &config.migrations,
        config.migration_layout,
        "`migrate run`",
    )?;
    migrations.sort_by_key(Migration::version);
    let files = files_by_name(&config.migrations);
    let mut out = Vec::new();
    for migration in migrations {
        let path = files
            .iter()
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n == format!("{migration}.sql").as_str())
            })
            .cloned()
            .unwrap_or_else(|| config.migrations.join(format!("{migration}.sql")));
        let version = u64::try_from(migration.version()).map_err(|_| {
            Error::file(
                ErrorKind::Schema,
                &path,
                "a negative version cannot be ordered",
            )
        })?;
        let sql = migration.sql().unwrap_or("");
        let markers = markers::parse(sql)
            .map_err(|e| Error::at(ErrorKind::Schema, &path, e.line, e.message))?;
        let mut gates = Vec::new();
        for (name, line) in &markers.after_backfill {
            let gate = data::find(&config.data_migrations, name).map_err(|e| {
                Error::at(
                    ErrorKind::Schema,
                    &path,
                    *line,
                    format!(
                        "`after-backfill {name}`: no such data migration in {} ({})",
                        crate::backfill::error::display_path(&config.data_migrations),
                        e.message
                    ),
                )
            })?;
            if gate.requires.value >= version {
                return Err(Error::at(
                    ErrorKind::Schema,
                    &path,
                    *line,
                    format!(
                        "`after-backfill {}` can never be met: {} requires schema version {}, which this migration (V{version}) must wait for; gate a later migration, or lower its `@requires`",
                        gate.id(),
                        gate.id(),
                        gate.requires.value
                    ),
                ));
            }
            gates.push(gate);
        }
        out.push(Schema {
            migration,
            version,
            path,
            markers,
            gates,
        });
    }
    Ok(out)
}

/// Every gate of the workspace's schema migrations: `(schema migration, data migration it waits
/// for)`, in migration order. Malformed directives and unknown data migrations are errors.
pub fn gates(config: &Config) -> Result<Vec<(String, DataMigration)>> {
    Ok(load(config)?
        .into_iter()
        .flat_map(|s| {
            let name = s.migration.to_string();
            s.gates.into_iter().map(move |g| (name.clone(), g))
        })
        .collect())
}

/// Refuses to run `migration` on `target` when refinery's history there records one of the
/// schema migrations it depends on (versions up to its `@requires`) with another checksum than
/// the file in this workspace: the schema it was approved on is not the one it would run on.
/// A database without refinery's history is not checked (its schema is managed another way).
pub fn require_same_schema(
    config: &Config,
    target: &Target,
    migration: &DataMigration,
) -> anyhow::Result<()> {
    let required = migration.requires.value;
    if crate::backfill::db::history::schema_version(target)?.is_none() {
        return Ok(());
    }
    let files = load(config)?;
    let mut db = Db::connect(target)?;
    let applied = db.applied().map_err(|e| refinery_error(&e, None))?;
    for recorded in applied {
        let Ok(version) = u64::try_from(recorded.version()) else {
            continue;
        };
        if version > required {
            continue;
        }
        let Some(file) = files.iter().find(|f| f.version == version) else {
            continue;
        };
        if file.migration.checksum() != recorded.checksum() {
            anyhow::bail!(
                "{}:{}: {} requires schema version V{required}, and {} records V{version} ({}) with another checksum than {}: the schema it runs on is not the one it was sampled on",
                crate::backfill::error::display_path(&migration.path),
                migration.requires.line,
                migration.id(),
                target.info().describe(),
                recorded.name(),
                crate::backfill::error::display_path(&file.path)
            );
        }
    }
    Ok(())
}

/// Every `.sql` file under `dir`, at any depth (refinery reads them so).
fn files_by_name(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "sql") {
                out.push(path);
            }
        }
    }
    out
}

/// Applies the pending schema migrations of `config` to `target`: see the module documentation.
pub fn migrate(
    config: &Config,
    target: &Target,
    options: &Options<'_>,
    out: &mut dyn Write,
) -> anyhow::Result<Outcome> {
    let schemas = load(config)?;
    let all: Vec<Migration> = schemas.iter().map(|s| s.migration.clone()).collect();
    let mut db = Db::connect(target)?;
    let applied = db.applied().map_err(|e| refinery_error(&e, None))?;
    let current = applied
        .iter()
        .filter_map(|m| u64::try_from(m.version()).ok())
        .max();
    // Refused as refinery refuses it: an applied migration whose file changed, or a file
    // missing below the newest applied version. Applies nothing.
    if let Some(current) = current {
        let runner = Runner::new(&all).set_target(RefineryTarget::Version(version_of(current)?));
        db.run(&runner).map_err(|e| refinery_error(&e, None))?;
    }
    writeln!(
        out,
        "{}: schema at {}",
        target.info().describe(),
        current.map_or("no migration applied".into(), |v| format!("V{v}"))
    )?;
    let mut done = 0usize;
    let mut version = current;
    for schema in schemas
        .iter()
        .filter(|s| current.is_none_or(|c| s.version > c))
        .filter(|s| options.target_version.is_none_or(|t| s.version <= t))
    {
        for gate in &schema.gates {
            if !open_gate(config, target, options, schema, gate, out)? {
                writeln!(
                    out,
                    "stopped before {}: it waits for data migration {} to be done on this database",
                    schema.migration,
                    gate.id()
                )?;
                writeln!(
                    out,
                    "  run it: cargo xtask backfill plan {id} --database-url \"$DATABASE_URL\", then cargo xtask backfill run <plan>; or here, inline: cargo xtask migrate run --backfills run",
                    id = gate.id()
                )?;
                return Ok(Outcome::Gated {
                    applied: done,
                    migration: schema.migration.to_string(),
                    backfill: gate.id(),
                });
            }
        }
        let started = Instant::now();
        apply(&mut db, &all, schema)?;
        done += 1;
        version = Some(schema.version);
        writeln!(
            out,
            "  applied {}{} in {}",
            schema.migration,
            if schema.markers.no_transaction.is_some() {
                " (outside a transaction)"
            } else {
                ""
            },
            format_duration(started.elapsed())
        )?;
    }
    writeln!(
        out,
        "{} applied; schema at {}",
        count(done as u64, "migration", "migrations"),
        version.map_or("no migration".into(), |v| format!("V{v}"))
    )?;
    Ok(Outcome::UpToDate {
        applied: done,
        version,
    })
}

fn version_of(version: u64) -> Result<i32> {
    i32::try_from(version).map_err(|_| {
        Error::new(
            ErrorKind::Schema,
            format!("schema version {version} is out of refinery's range"),
        )
    })
}

/// Applies one pending migration (every one before it is applied).
fn apply(db: &mut Db, all: &[Migration], schema: &Schema) -> Result<()> {
    let version = version_of(schema.version)?;
    let sql = schema.migration.sql().unwrap_or("");
    if schema.markers.no_transaction.is_some() {
        let mut from = 0;
        for statement in markers::statements(sql) {
            let at = sql[from..].find(&statement).map_or(from, |i| from + i);
            from = at + statement.len();
            if let Err((message, offset)) = db.execute_alone(&statement) {
                let line = line_of(sql, at + offset.unwrap_or(0));
                return Err(Error::at(ErrorKind::Schema, &schema.path, line, message)
                    .context("outside a transaction (no-transaction); the statements before this one stay applied and the migration is not recorded"));
            }
        }
        let runner = Runner::new(all).set_target(RefineryTarget::FakeVersion(version));
        return db
            .run(&runner)
            .map_err(|e| refinery_error(&e, None).in_file(&schema.path));
    }
    let runner = Runner::new(all).set_target(RefineryTarget::Version(version));
    db.run(&runner).map_err(|e| {
        let (message, offset) = match e.kind() {
            refinery::error::Kind::Connection(_, source) => db.locate(source.as_ref(), sql),
            other => (other.to_string(), None),
        };
        let error = Error::file(ErrorKind::Schema, &schema.path, message);
        match offset {
            Some(o) if o <= sql.len() => error.at_line(line_of(sql, o)),
            _ => error,
        }
    })
}

fn line_of(sql: &str, offset: usize) -> usize {
    sql.as_bytes()[..offset.min(sql.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

fn refinery_error(e: &refinery::Error, path: Option<&Path>) -> Error {
    let message = match e.kind() {
        refinery::error::Kind::Connection(what, source) => {
            let detail = match source.downcast_ref::<postgres::Error>() {
                Some(pg) => crate::backfill::db::postgres::describe_pg(pg),
                None => source.to_string(),
            };
            format!("{what}: {detail}")
        }
        other => other.to_string(),
    };
    let error = Error::new(ErrorKind::Schema, message);
    match path {
        Some(p) => error.in_file(p),
        None => error,
    }
}

/// Whether the gate of `schema` on `gate` is open: the data migration is done on this
/// database, or was just run inline to the end.
fn open_gate(
    config: &Config,
    target: &Target,
    options: &Options<'_>,
    schema: &Schema,
    gate: &DataMigration,
    out: &mut dyn Write,
) -> anyhow::Result<bool> {
    let mut store = tracking::open(target, &options.tracking)?;
    let state = if store.tables_exist()? {
        store.find_run(&gate.id())?.map(|r| r.state)
    } else {
        None
    };
    if state == Some(RunState::Done) {
        return Ok(true);
    }
    if options.backfills == Backfills::Wait {
        writeln!(
            out,
            "{} waits for {} ({})",
            schema.migration,
            gate.id(),
            state.map_or("not run".into(), |s| s.to_string())
        )?;
        return Ok(false);
    }
    crate::backfill::sample::snapshot::require_approval(config, gate)?;
    // One worker, one key range: the plan's other defaults.
    let settings = Settings {
        ranges: 1,
        ..Settings::from_migration(gate)
    };
    settings
        .validate()
        .map_err(|e| anyhow::anyhow!("{}: {e}", gate.path.display()))?;
    writeln!(
        out,
        "running data migration {} inline before {}",
        gate.id(),
        schema.migration
    )?;
    worker::apply_limits(store.as_mut(), &settings)?;
    let report = worker::execute(
        store.as_mut(),
        &settings,
        gate,
        RunOptions {
            worker: RunOptions::default_worker(),
            progress: Progress::new(options.progress, Duration::from_secs(5)),
            stop: options.stop,
            poll: Duration::from_millis(200),
            max_batches: None,
            restart: None,
        },
    )?;
    writeln!(
        out,
        "  {} {}: {} changed by {}",
        gate.id(),
        match report.finish {
            Finish::Done | Finish::AlreadyDone => "done",
            Finish::Cancelled => "cancelled",
            Finish::Interrupted => "stopped",
        },
        count(report.rows, "row", "rows"),
        count(report.batches, "batch", "batches"),
    )?;
    Ok(matches!(report.finish, Finish::Done | Finish::AlreadyDone))
}
