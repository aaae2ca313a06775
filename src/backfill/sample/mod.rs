//! `backfill sample`: runs a data migration end to end on a fresh database built from the
//! workspace's schema migrations and fixtures, checks the result and compares its snapshot.
//!
//! Stages, each timed: schema (refinery applies `migrations/` up to the version the data
//! migration requires), fixtures (loaded parents first, one transaction, foreign keys checked once at its end where
//! the engine can), backfill (the batch
//! engine with small batches so batch boundaries are exercised), checks (each must return no
//! rows; a failing one prints its first offending rows), verify (when the data migration has
//! `-- @expected` and `-- @actual`: the production verification, [`crate::backfill::verify`], on
//! the sampled database; any difference fails the sample; on PostgreSQL the checks run on a
//! session of their own at the same time), snapshot (insta-format, see
//! [`crate::backfill::sample::snapshot`]). Each data migration gets its own fresh database on the
//! command's engine ([`engine`]): a temporary SQLite file, a new database of a private
//! PostgreSQL cluster, or a throwaway schema of a PostgreSQL server that is dropped afterwards,
//! also on error. Pacing (`@pause`) is for production and is not applied here.

pub mod cache;
pub mod engine;
pub mod fixtures;
pub mod manifest;
pub mod snapshot;

use std::io::Write;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use crate::backfill::db::postgres::{PgBackend, redact_url};
use crate::backfill::db::sqlite::SqliteBackend;
use crate::backfill::db::{Backend, BatchLimits, SampleBackend};
use crate::backfill::display::{count, millis, thousands};
use crate::backfill::error::{Error, ErrorKind, Result, display_path};
use crate::backfill::migration::DataMigration;
use crate::backfill::run::plan::Settings;
use crate::backfill::run::progress::{Progress, ProgressMode};
use crate::backfill::run::tracking::postgres::PgStore;
use crate::backfill::run::tracking::sqlite::SqliteStore;
use crate::backfill::run::tracking::{Store, TrackingNames};
use crate::backfill::run::worker::{self, RunOptions};
use crate::config::{Config, SampleEngine};
use engine::{Engine, LocalCluster, Startup};
use fixtures::FixtureFile;
use snapshot::{Mode, Outcome};

/// The smallest default batch size of a sample run: a few thousand fixture rows cross dozens of
/// batch boundaries.
pub const SAMPLE_BATCH_SIZE: u64 = 100;

/// The batch size a sample uses unless `--batch-size` says otherwise: about a hundred batches
/// (at least [`SAMPLE_BATCH_SIZE`] rows each), and never more than the data migration's own size.
/// Small enough to exercise many batch boundaries; large enough that, on a big fixture, the
/// per-batch commit does not dwarf the work the way it never would in production.
pub fn sample_batch_size(migration_batch_size: u64, table_rows: u64) -> u64 {
    table_rows
        .div_ceil(100)
        .max(SAMPLE_BATCH_SIZE)
        .min(migration_batch_size)
        .max(1)
}

/// Offending rows printed for a failing check.
pub const CHECK_ROWS_SHOWN: usize = 5;

#[derive(Debug, Clone, PartialEq)]
pub struct SampleOptions {
    pub batch_size: Option<u64>,
    pub mode: Mode,
}

/// What the data migrations are sampled on, read once per command.
pub struct Inputs {
    pub migrations: Vec<refinery::Migration>,
    pub fixtures: Vec<FixtureFile>,
    /// The schema version the fixtures fit, from their manifest (`backfill capture` writes
    /// one); `None` for fixtures without one, which are loaded at the data migration's version.
    pub fixtures_version: Option<u64>,
    /// SHA-256 of the manifest's bytes, when there is one (part of [`cache::key`]).
    pub manifest_sha256: Option<[u8; 32]>,
}

impl Inputs {
    /// Reads `migrations/` with refinery and every fixture file. Nothing runs yet: a malformed
    /// fixture fails the command before any database or snapshot is touched.
    pub fn load(config: &Config) -> Result<Inputs> {
        let migrations = crate::backfill::db::schema::load_migrations(
            &config.migrations,
            config.migration_layout,
            "`backfill sample`",
        )?;
        let fixtures = fixtures::read_dir(&config.fixtures)?;
        let fixtures_version = manifest::read(&config.fixtures)?.map(|m| m.schema_version);
        let manifest_sha256 = std::fs::read(config.fixtures.join(manifest::MANIFEST))
            .ok()
            .map(|bytes| {
                use sha2::Digest;
                sha2::Sha256::digest(&bytes).into()
            });
        if let Some(version) = fixtures_version
            && !migrations
                .iter()
                .any(|m| u64::try_from(m.version()).ok() == Some(version))
        {
            return Err(Error::file(
                ErrorKind::Schema,
                &config.fixtures.join(manifest::MANIFEST),
                format!(
                    "the fixtures were captured at schema version V{version}, which {} does not have: the schema they fit cannot be built",
                    display_path(&config.migrations)
                ),
            ));
        }
        Ok(Inputs {
            migrations,
            fixtures,
            fixtures_version,
            manifest_sha256,
        })
    }
}

/// [`Inputs::load`] while `open` starts the engine on another thread: finding the server's
/// binaries (`pg_config`) and the kept-alive cluster, or starting one, take as long as reading
/// and checking the inputs, and neither needs the other. A malformed input still fails the
/// command before any database is made (the engine, started, is dropped), and is the error
/// reported when both fail.
pub fn load_while_opening<E: Send>(
    config: &Config,
    open: impl FnOnce() -> Result<E> + Send,
) -> Result<(Inputs, E)> {
    std::thread::scope(|scope| {
        let engine = scope.spawn(open);
        let inputs = Inputs::load(config);
        let engine = engine
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        Ok((inputs?, engine?))
    })
}

/// Timing of one stage.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    pub name: &'static str,
    pub summary: String,
    pub elapsed: Duration,
    /// Rows the stage processed, for rows/s.
    pub rows: Option<u64>,
}

impl Stage {
    pub fn rows_per_second(&self) -> Option<f64> {
        let secs = self.elapsed.as_secs_f64();
        self.rows.filter(|_| secs > 0.0).map(|r| r as f64 / secs)
    }
}

/// The result of sampling one data migration.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleReport {
    pub id: String,
    pub stages: Vec<Stage>,
    pub failed_checks: Vec<String>,
    pub outcome: Outcome,
}

impl SampleReport {
    pub fn passed(&self) -> bool {
        self.failed_checks.is_empty() && self.outcome.passed()
    }

    pub fn stage(&self, name: &str) -> Option<&Stage> {
        self.stages.iter().find(|s| s.name == name)
    }
}

/// Samples `migration` on a fresh database of `engine`, printing progress to `out`.
pub fn sample(
    config: &Config,
    inputs: &Inputs,
    migration: &DataMigration,
    engine: &mut Engine,
    options: &SampleOptions,
    out: &mut dyn Write,
) -> Result<SampleReport> {
    let required = migration.requires.value;
    if !inputs
        .migrations
        .iter()
        .any(|m| u64::try_from(m.version()).ok() == Some(required))
    {
        let versions: Vec<String> = inputs
            .migrations
            .iter()
            .map(|m| format!("V{}", m.version()))
            .collect();
        return Err(migration.error_at(
            ErrorKind::Schema,
            migration.requires.line,
            format!(
                "`-- @requires {required}`: {} has no migration V{required} (it has: {})",
                display_path(&config.migrations),
                if versions.is_empty() {
                    "none".into()
                } else {
                    versions.join(", ")
                }
            ),
        ));
    }
    let kind = engine.kind();
    let result = match engine {
        Engine::Sqlite => {
            let mut db = SqliteStore::new(SqliteBackend::throwaway()?, TrackingNames::default())?;
            let _ = writeln!(
                out,
                "sample {} on a temporary SQLite database",
                migration.id()
            );
            sample_on(config, inputs, migration, options, kind, &mut db, out)
        }
        Engine::PostgresLocal(local) => {
            sample_local(config, inputs, migration, local, options, out)
        }
        Engine::PostgresUrl(url) => {
            // Dropped at the end of this arm, on success, error or panic: the schema goes with it.
            let backend = PgBackend::throwaway_schema(url)?;
            let _ = writeln!(
                out,
                "sample {} on PostgreSQL {} (throwaway schema {})",
                migration.id(),
                redact_url(url),
                backend.schema().unwrap_or("?")
            );
            // The tracking tables go into the throwaway schema (the search path's first).
            let mut db = PgStore::new(backend, TrackingNames::default());
            db.init_session()?;
            sample_on(config, inputs, migration, options, kind, &mut db, out)
        }
    };
    result.map_err(|e| engine::explain(e, kind, config, inputs))
}

/// [`sample`] on a fresh database of the private cluster. On the kept-alive cluster, a database
/// whose schema and fixtures an earlier sample of the same inputs loaded ([`cache::key`]) is a
/// copy of that one; a database loaded now is kept for the later samples before the data
/// migration runs on it.
pub fn sample_local(
    config: &Config,
    inputs: &Inputs,
    migration: &DataMigration,
    local: &mut LocalCluster,
    options: &SampleOptions,
    out: &mut dyn Write,
) -> Result<SampleReport> {
    let key = local
        .keeps_loaded()
        .then(|| cache::key(config, inputs, migration));
    let database = local.create_database_for(key.as_deref())?;
    let _ = writeln!(
        out,
        "sample {} on a private PostgreSQL {} cluster ({})",
        migration.id(),
        local.server().version(),
        display_path(local.server().bin_dir())
    );
    let cluster = match database.cluster {
        Some(Startup::Started) => "cluster started, ",
        Some(Startup::StartedKept(_)) => "cluster started (kept alive for the next commands), ",
        Some(Startup::Reused) => "kept-alive cluster reused, ",
        None => "",
    };
    let made = if database.cached.is_some() {
        "copied"
    } else {
        "created"
    };
    let connect = || -> Result<PgStore> {
        let mut db = PgStore::new(PgBackend::connect(&database.url)?, TrackingNames::default());
        db.init_session()?;
        Ok(db)
    };
    // The sample's session is part of the engine's stage.
    let started = Instant::now();
    let mut db = connect()?;
    let mut stages = Vec::new();
    push_stage(
        out,
        &mut stages,
        Stage {
            name: "engine",
            summary: format!("{cluster}database {} {made}", database.name),
            elapsed: database.elapsed + started.elapsed(),
            rows: None,
        },
    );
    match &database.cached {
        Some(cached) => cached_stages(inputs, migration, cached, out, &mut stages),
        None => {
            let loaded = load_stages(config, inputs, migration, &mut db, out, &mut stages)?;
            if let Some(key) = &key {
                // The copy needs the database to itself: the sample's session closes and
                // opens again, and its time is the keeping's. The kept database has the
                // batch engine's tracking tables too (empty), which every sample's run
                // otherwise creates first.
                let started = Instant::now();
                db.ensure_tables()?;
                drop(db);
                let kept = local.keep_loaded(&database.name, key, loaded);
                db = connect()?;
                if let Some(name) = kept {
                    push_stage(
                        out,
                        &mut stages,
                        Stage {
                            name: "cache",
                            summary: format!("kept as {name}"),
                            elapsed: started.elapsed(),
                            rows: None,
                        },
                    );
                }
            }
        }
    }
    run_stages(
        config,
        migration,
        options,
        SampleEngine::PostgresLocal,
        &mut db,
        out,
        stages,
    )
}

/// A database a sample runs on: the tracking store the batch engine runs on, whose backend also
/// builds the database (schema migrations, fixtures).
pub trait SampleStore: Store {
    fn builder(&mut self) -> &mut dyn SampleBackend;

    /// Opens another session on the same database when called, on any thread. `None` where
    /// the database is a file of this process's (SQLite): one session does everything.
    fn session_opener(&mut self) -> Option<SessionOpener> {
        None
    }
}

/// Opens another session of a [`SampleStore`]'s database ([`SampleStore::session_opener`]).
pub type SessionOpener = Box<dyn FnOnce() -> Result<Box<dyn Store + Send>> + Send>;

impl SampleStore for SqliteStore {
    fn builder(&mut self) -> &mut dyn SampleBackend {
        self.backend_mut()
    }
}

impl SampleStore for PgStore {
    fn builder(&mut self) -> &mut dyn SampleBackend {
        self.backend_mut()
    }

    fn session_opener(&mut self) -> Option<SessionOpener> {
        let open = self.backend_mut().session_opener();
        let names = self.names().clone();
        Some(Box::new(move || {
            let mut store = PgStore::new(open()?, names);
            store.init_session()?;
            Ok(Box::new(store) as Box<dyn Store + Send>)
        }))
    }
}

/// What the checks found: the descriptions of those that returned rows, the lines printed for
/// them, and the stage's time.
struct Checked {
    failed: Vec<String>,
    failures: String,
    elapsed: Duration,
}

/// The checks on a session of their own, opened on a thread while the batches run, for them to
/// run at the same time as the verification.
struct ChecksSession {
    go: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Option<Result<Checked>>>>,
}

impl ChecksSession {
    /// Opens the session on a thread that waits for [`ChecksSession::start`]; `None` where the
    /// database takes no second session.
    fn open(
        db: &mut dyn SampleStore,
        migration: &DataMigration,
        limits: BatchLimits,
    ) -> Option<ChecksSession> {
        let open = db.session_opener()?;
        let migration = migration.clone();
        let (go, started) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            // No session (say every connection of the server is taken): the sample's own
            // session runs the checks after the verification instead.
            let mut store = open().ok()?;
            store.backend().apply_limits(&limits).ok()?;
            // The batches failed, or the sample ended otherwise: nothing to check.
            started.recv().ok()?;
            Some(run_checks(store.backend(), &migration))
        });
        Some(ChecksSession {
            go: Some(go),
            thread: Some(thread),
        })
    }

    /// The batches are done: the checks run now.
    fn start(mut self) -> ChecksSession {
        if let Some(go) = self.go.take() {
            let _ = go.send(());
        }
        self
    }

    /// Waits for the checks; `None` when they did not run (no session).
    fn finish(mut self) -> Option<Result<Checked>> {
        self.go.take();
        let thread = self.thread.take()?;
        thread
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}

impl Drop for ChecksSession {
    /// Not started: the thread is told so and its session closes before the sample's database
    /// is dropped.
    fn drop(&mut self) {
        self.go.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Runs the data migration's checks on `db`; a check that cannot run is an error at its line.
fn run_checks(db: &mut dyn Backend, migration: &DataMigration) -> Result<Checked> {
    let started = Instant::now();
    let mut failed = Vec::new();
    let mut failures = String::new();
    for check in &migration.checks {
        let rows = db.query(&check.section.sql).map_err(|e| {
            let message = format!("check `{}` cannot run: {}", check.description, e.message);
            migration.error_at(ErrorKind::Statement, check.section.line, message)
        })?;
        if !rows.rows.is_empty() {
            failed.push(check.description.clone());
            failures.push_str(&format!(
                "  check failed: {} ({}:{}): {} offending {}{}\n",
                check.description,
                display_path(&migration.path),
                check.section.line,
                thousands(rows.rows.len() as u64),
                if rows.rows.len() == 1 { "row" } else { "rows" },
                if rows.rows.len() > CHECK_ROWS_SHOWN {
                    format!(", the first {CHECK_ROWS_SHOWN}")
                } else {
                    String::new()
                }
            ));
            failures.push_str(&format!("    {}\n", rows.columns.join(" | ")));
            for row in rows.rows.iter().take(CHECK_ROWS_SHOWN) {
                let cells: Vec<String> = row.iter().map(snapshot::render_cell).collect();
                failures.push_str(&format!("    {}\n", cells.join(" | ")));
            }
        }
    }
    Ok(Checked {
        failed,
        failures,
        elapsed: started.elapsed(),
    })
}

/// The settings a sample runs with: the plan's defaults for this data migration (limits,
/// retries, one key range), with a fixed batch size so every run of the sample crosses the same
/// batch boundaries, and no pacing.
pub fn sample_settings(migration: &DataMigration, batch_size: u64) -> Settings {
    Settings {
        batch_size,
        adaptive: false,
        min_batch_size: 1,
        max_batch_size: batch_size.max(1),
        pause_ms: 0,
        max_rows_per_second: None,
        ranges: 1,
        ..Settings::from_migration(migration)
    }
}

/// Prints a stage's line: name, summary, time and rate.
fn print_stage(out: &mut dyn Write, s: &Stage) {
    let rate = s
        .rows_per_second()
        .map(|r| format!("  {} rows/s", thousands(r as u64)))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "  {:<9} {:<44} {:>9}{rate}",
        s.name,
        s.summary,
        millis(s.elapsed)
    );
}

/// [`sample`] on a database the caller provides (fresh, empty), built by `engine` (recorded in
/// the snapshot): for benchmarks and tests that look at the database afterwards.
pub fn sample_on(
    config: &Config,
    inputs: &Inputs,
    migration: &DataMigration,
    options: &SampleOptions,
    engine: SampleEngine,
    db: &mut dyn SampleStore,
    out: &mut dyn Write,
) -> Result<SampleReport> {
    let mut stages = Vec::new();
    load_stages(config, inputs, migration, db, out, &mut stages)?;
    run_stages(config, migration, options, engine, db, out, stages)
}

/// Prints a stage's line and keeps it for the report.
fn push_stage(out: &mut dyn Write, stages: &mut Vec<Stage>, s: Stage) {
    print_stage(out, &s);
    stages.push(s);
}

/// What the schema and fixture stages built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loaded {
    pub tables: u64,
    pub rows: u64,
}

/// The schema migrations of `inputs` up to `version`.
fn applied(inputs: &Inputs, version: u64) -> u64 {
    inputs
        .migrations
        .iter()
        .filter(|m| u64::try_from(m.version()).is_ok_and(|v| v <= version))
        .count() as u64
}

/// The first schema stage's summary: the migrations up to the version the fixtures load at.
fn schema_summary(inputs: &Inputs, migration: &DataMigration) -> String {
    let load_at = cache::load_version(inputs, migration);
    format!(
        "{}, up to V{load_at}",
        count(
            applied(inputs, load_at),
            "migration applied",
            "migrations applied"
        )
    )
}

/// The fixture stage's summary and, for fixtures that load at an older version, the summary of
/// the schema stage after them.
fn fixture_summaries(
    inputs: &Inputs,
    migration: &DataMigration,
    loaded: Loaded,
) -> (String, Option<String>) {
    let required = migration.requires.value;
    let load_at = cache::load_version(inputs, migration);
    let mut fixtures = format!(
        "{}, {}",
        count(loaded.tables, "table", "tables"),
        count(loaded.rows, "row", "rows")
    );
    if load_at < required {
        fixtures.push_str(&format!(", at V{load_at}"));
    }
    let more = (load_at < required).then(|| {
        format!(
            "{}, up to V{required}",
            count(
                applied(inputs, required) - applied(inputs, load_at),
                "more migration applied",
                "more migrations applied"
            )
        )
    });
    (fixtures, more)
}

/// The schema and fixture stages: refinery applies the schema migrations up to the version the
/// fixtures fit, the fixtures load, and the later migrations carry them to the data
/// migration's version.
fn load_stages(
    config: &Config,
    inputs: &Inputs,
    migration: &DataMigration,
    db: &mut dyn SampleStore,
    out: &mut dyn Write,
    stages: &mut Vec<Stage>,
) -> Result<Loaded> {
    let started = Instant::now();
    let required = migration.requires.value;
    // Fixtures captured at an older schema load there; the later migrations then carry them to
    // the data migration's version, as they carry production's rows.
    let load_at = cache::load_version(inputs, migration);
    db.builder()
        .apply_migrations(&inputs.migrations, load_at, &config.migrations)?;
    push_stage(
        out,
        stages,
        Stage {
            name: "schema",
            summary: schema_summary(inputs, migration),
            elapsed: started.elapsed(),
            rows: None,
        },
    );

    let started = Instant::now();
    let report = fixtures::load(db.builder(), &inputs.fixtures, load_at)?;
    let loaded = Loaded {
        tables: report.tables.len() as u64,
        rows: report.rows as u64,
    };
    let fixtures_elapsed = started.elapsed();
    let (fixtures, more) = fixture_summaries(inputs, migration, loaded);
    let fixtures = Stage {
        name: "fixtures",
        summary: fixtures,
        elapsed: fixtures_elapsed,
        rows: Some(loaded.rows),
    };
    push_stage(out, stages, fixtures);
    if let Some(more) = more {
        let started = Instant::now();
        db.builder()
            .apply_migrations(&inputs.migrations, required, &config.migrations)?;
        push_stage(
            out,
            stages,
            Stage {
                name: "schema",
                summary: more,
                elapsed: started.elapsed(),
                rows: None,
            },
        );
    }
    Ok(loaded)
}

/// The schema and fixture stages of a database copied from one an earlier sample loaded from
/// the same inputs: the same lines, saying so. The copy's time is the fixture stage's; the
/// schema stages took no time of this command's.
fn cached_stages(
    inputs: &Inputs,
    migration: &DataMigration,
    cached: &engine::Cached,
    out: &mut dyn Write,
    stages: &mut Vec<Stage>,
) {
    const NOTE: &str = " (as loaded by an earlier sample)";
    let (fixtures, more) = fixture_summaries(inputs, migration, cached.loaded);
    push_stage(
        out,
        stages,
        Stage {
            name: "schema",
            summary: format!("{}{NOTE}", schema_summary(inputs, migration)),
            elapsed: Duration::ZERO,
            rows: None,
        },
    );
    push_stage(
        out,
        stages,
        Stage {
            name: "fixtures",
            summary: format!("{fixtures}{NOTE}"),
            elapsed: cached.elapsed,
            // A copy's time is no loading rate.
            rows: None,
        },
    );
    if let Some(more) = more {
        push_stage(
            out,
            stages,
            Stage {
                name: "schema",
                summary: format!("{more}{NOTE}"),
                elapsed: Duration::ZERO,
                rows: None,
            },
        );
    }
}

/// The stages after the load: the batches, the checks, the verification and the snapshot.
fn run_stages(
    config: &Config,
    migration: &DataMigration,
    options: &SampleOptions,
    engine: SampleEngine,
    db: &mut dyn SampleStore,
    out: &mut dyn Write,
    mut stages: Vec<Stage>,
) -> Result<SampleReport> {
    let mut stage = |out: &mut dyn Write, s: Stage| push_stage(out, &mut stages, s);

    let table_rows = count_rows(db.backend(), migration)?;
    let batch_size = options
        .batch_size
        .unwrap_or_else(|| sample_batch_size(migration.batch_size.value, table_rows));
    if batch_size == 0 {
        return Err(Error::new(
            ErrorKind::Format,
            "--batch-size must be at least 1",
        ));
    }
    // The production engine itself: the same tracking tables, per-batch transaction with its
    // compare-and-set checkpoint, retries and splitting as `backfill run`.
    let settings = sample_settings(migration, batch_size);
    worker::apply_limits(db, &settings)?;
    let checks_session = (migration.verify.is_some() && !migration.checks.is_empty())
        .then(|| ChecksSession::open(db, migration, worker::limits(&settings)))
        .flatten();
    let stop = AtomicBool::new(false);
    let run = worker::execute(
        db,
        &settings,
        migration,
        RunOptions {
            worker: "sample".into(),
            progress: Progress::new(ProgressMode::Quiet, Duration::from_secs(60)),
            stop: &stop,
            poll: Duration::from_millis(10),
            max_batches: None,
            restart: None,
        },
    )?;
    stage(
        out,
        Stage {
            name: "backfill",
            summary: format!(
                "{} of {batch_size}, {} changed",
                count(run.batches, "batch", "batches"),
                count(run.rows, "row", "rows")
            ),
            elapsed: run.elapsed,
            rows: Some(table_rows),
        },
    );

    // The checks and the verification only read the backfilled tables. Where the database
    // takes a second session (PostgreSQL), the checks run on one of their own, opened while the
    // batches run, at the same time as the verification: on a machine of two cores each keeps a
    // core busy in the server, and the sample waits for the longer of the two instead of both.
    let checking = checks_session.map(ChecksSession::start);
    let verified = migration
        .verify
        .is_some()
        .then(|| verify_stage(db, migration, batch_size, table_rows));
    // A check that cannot run is reported before a verification that cannot, as when they run
    // one after the other. Without a session of their own (none could be opened), the checks
    // run on the sample's.
    let checked = match checking.and_then(ChecksSession::finish) {
        Some(checked) => checked?,
        None => run_checks(db.backend(), migration)?,
    };
    let verified = verified.transpose()?;
    let Checked {
        failed: mut failed_checks,
        mut failures,
        elapsed,
    } = checked;
    let total = migration.checks.len();
    stage(
        out,
        Stage {
            name: "checks",
            summary: if failed_checks.is_empty() {
                format!("{total} passed")
            } else {
                format!("{} of {total} FAILED", failed_checks.len())
            },
            elapsed,
            rows: None,
        },
    );
    if let Some((verify, failure)) = verified {
        stage(out, verify);
        if let Some(failure) = failure {
            failed_checks.push("verification".to_string());
            failures.push_str(&failure);
        }
    }
    let _ = out.write_all(failures.as_bytes());

    let started = Instant::now();
    let rows = db.backend().query(&migration.snapshot.sql).map_err(|e| {
        let message = format!("the snapshot query cannot run: {}", e.message);
        migration.error_at(ErrorKind::Statement, migration.snapshot.line, message)
    })?;
    let contents = snapshot::render(&rows);
    let snapshot_dir = snapshot_dir(config);
    let source = migration
        .path
        .strip_prefix(&config.root)
        .unwrap_or(&migration.path);
    let source = source.to_string_lossy().replace('\\', "/");
    let outcome = snapshot::compare(
        &snapshot_dir,
        migration,
        &source,
        &contents,
        options.mode,
        engine,
    )?;
    let path = snapshot::path_for(&snapshot_dir, migration);
    let summary = match &outcome {
        Outcome::Matched => format!(
            "{}, approved",
            count(rows.rows.len() as u64, "row matches", "rows match")
        ),
        Outcome::Accepted { .. } => count(rows.rows.len() as u64, "row accepted", "rows accepted"),
        Outcome::Pending { first: true, .. } => "NEW: wrote .snap.new for review".into(),
        Outcome::Pending { .. } => "DIFFERS: wrote .snap.new for review".into(),
        Outcome::Failed { first: true, .. } => "NEW: no accepted snapshot".into(),
        Outcome::Failed { .. } => "DIFFERS".into(),
    };
    stage(
        out,
        Stage {
            name: "snapshot",
            summary,
            elapsed: started.elapsed(),
            rows: None,
        },
    );
    match &outcome {
        Outcome::Failed { diff, .. } | Outcome::Pending { diff, .. } => {
            // Other rows than those accepted on another engine: say so before the diff, which
            // may be the engine's doing.
            if let Some(note) = snapshot::read(&path)?
                .filter(|accepted| accepted.contents.trim_end() != contents.trim_end())
                .and_then(|accepted| snapshot::engine_note(&accepted, engine))
            {
                let _ = writeln!(out, "  {note}");
            }
            let _ = writeln!(out, "  {}:", display_path(&path));
            for line in diff.lines() {
                let _ = writeln!(out, "    {line}");
            }
        }
        Outcome::Accepted { path } => {
            let _ = writeln!(out, "  wrote {}", display_path(path));
        }
        Outcome::Matched => {}
    }
    Ok(SampleReport {
        id: migration.id(),
        stages,
        failed_checks,
        outcome,
    })
}

/// Runs the data migration's verification on the sampled database, with the sample's batches
/// and no delay before re-reads (nothing else writes to it). Its stage summary, and the lines
/// saying what differs when something does (the fixtures' values shown: they are no one's).
/// The fewest rows a batch of the sample's verification walks.
const VERIFY_BATCH_ROWS: u64 = 10_000;

/// The verify stage: its line, and the lines saying what differs when something does.
fn verify_stage(
    db: &mut dyn SampleStore,
    migration: &DataMigration,
    batch_size: u64,
    table_rows: u64,
) -> Result<(Stage, Option<String>)> {
    let started = Instant::now();
    let (summary, failure) = verify_sample(db, migration, batch_size)?;
    Ok((
        Stage {
            name: "verify",
            summary,
            elapsed: started.elapsed(),
            rows: Some(table_rows),
        },
        failure,
    ))
}

fn verify_sample(
    db: &mut dyn SampleStore,
    migration: &DataMigration,
    batch_size: u64,
) -> Result<(String, Option<String>)> {
    // The backfill's small batches exercise its boundaries; a verification's boundaries change
    // nothing it finds, so it walks the fixtures in batches of a production run's order of size.
    let settings = sample_settings(migration, batch_size.max(VERIFY_BATCH_ROWS));
    let kind = worker::key_kind(db.backend(), migration)?;
    let stop = AtomicBool::new(false);
    // Nothing else writes to the sample's database: re-reads need neither a delay nor a limit.
    let options = crate::backfill::verify::VerifyOptions {
        recheck_delay: Duration::ZERO,
        recheck_limit: (u32::MAX, Duration::from_secs(1)),
        keep_values: true,
        ..Default::default()
    };
    let verified = crate::backfill::verify::verify_on(
        db,
        migration,
        &settings,
        kind,
        None,
        options,
        RunOptions {
            worker: "sample".into(),
            progress: Progress::new(ProgressMode::Quiet, Duration::from_secs(60)),
            stop: &stop,
            poll: Duration::from_millis(10),
            max_batches: None,
            restart: None,
        },
        &mut crate::backfill::run::health::Monitor::default(),
    )?;
    let database = db.backend().describe();
    let report = crate::backfill::verify::VerifyReport::build(
        db,
        &migration.id(),
        database,
        None,
        &verified,
        true,
    )?;
    let compared = count(report.rows_compared, "row", "rows");
    if report.is_clean() {
        return Ok((format!("{compared} compared, no differences"), None));
    }
    let line = verify_line(migration);
    let mut failure = format!(
        "  verification failed ({line}): {} in {compared}\n",
        count(
            report.differences + report.unconfirmed,
            "difference",
            "differences"
        )
    );
    for k in report.keys.iter().take(CHECK_ROWS_SHOWN) {
        let mut text = format!(
            "    {} key {}",
            k.category,
            k.key.as_deref().unwrap_or("NULL")
        );
        if !k.columns.is_empty() {
            text.push_str(&format!(": {}", k.columns.join(", ")));
        }
        for (side, rows) in [("expected", &k.expected), ("actual", &k.actual)] {
            if let Some(rows) = rows {
                let rows: Vec<String> = rows
                    .iter()
                    .map(|r| {
                        r.iter()
                            .map(|c| c.as_deref().unwrap_or("NULL"))
                            .collect::<Vec<_>>()
                            .join(" | ")
                    })
                    .collect();
                text.push_str(&format!("; {side} [{}]", rows.join("; ")));
            }
        }
        failure.push_str(&text);
        failure.push('\n');
    }
    Ok((
        format!(
            "{} in {compared}",
            count(
                report.differences + report.unconfirmed,
                "difference",
                "differences"
            )
        ),
        Some(failure),
    ))
}

/// Where the verification is: the `-- @expected` section's file and line.
fn verify_line(migration: &DataMigration) -> String {
    let line = migration
        .verify
        .as_ref()
        .map_or(0, |v| v.expected.section.directive_line);
    format!("{}:{line}", display_path(&migration.path))
}

fn count_rows(db: &mut dyn Backend, migration: &DataMigration) -> Result<u64> {
    // The engine reports a missing table with the data migration's line; let it.
    if db.columns(&migration.table.value)?.is_none() {
        return Ok(0);
    }
    let sql = format!(
        "SELECT count(*) FROM {}",
        crate::backfill::db::quote_ident(&migration.table.value)
    );
    let rows = db.query(&sql)?;
    Ok(match rows.rows.first().and_then(|r| r.first()) {
        Some(crate::backfill::db::Cell::Number(n)) => n.parse().unwrap_or(0),
        _ => 0,
    })
}

/// The snapshot directory of a workspace.
pub fn snapshot_dir(config: &Config) -> std::path::PathBuf {
    config.data_migrations.join("snapshots")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_batch_sizes() {
        assert_eq!(sample_batch_size(500, 2_500), 100);
        assert_eq!(sample_batch_size(500, 30_000), 300);
        assert_eq!(sample_batch_size(500, 100_000), 500);
        assert_eq!(sample_batch_size(50, 2_500), 50);
        assert_eq!(sample_batch_size(1000, 0), 100);
    }
}
