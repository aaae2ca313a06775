//! `backfill capture`: a sampled, referentially intact, PII-scrubbed subset of a real
//! PostgreSQL or SQLite database, written as the fixtures `backfill sample` loads.
//!
//! The algorithm lives here, once; a [`source::Source`] (PostgreSQL, a SQLite file) supplies
//! its history, its catalog, the SQL pieces that differ and the running of a query over a chunk
//! of keys. Steps, all in one read-only transaction of the source with a statement timeout (one
//! consistent snapshot, so the foreign keys close; no lock beyond reads):
//! 1. read the catalog ([`catalog`]) and check the settings against it ([`settings`]): every
//!    table and column named exists, every personal-looking text column has a policy
//!    ([`scrub`]), key and foreign-key columns are kept or hashed alike on both ends;
//! 2. select keys: the roots (predicate, deterministic fraction by md5 of seed and key computed
//!    in SQL, the same value on both sources, cap by lowest hash), then the configured children
//!    of selected rows (a cap per parent), then the referential closure: every row a selected row references, followed over
//!    the catalog's foreign keys until nothing new is found (self-references and cycles end
//!    there, composite keys match whole, a NULL foreign key references nothing);
//! 3. stream each table's selected rows in key order, a chunk of keys at a time (constant
//!    memory), scrub each value by its column's policy, write `<table>.csv` and hash it
//!    ([`output`]), then `manifest.json`;
//! 4. replace the fixtures directory in one step: everything is written into a temporary
//!    directory beside it first, so an error leaves the old fixtures as they were.
//!
//! Neither rows nor the selected keys are held in memory: the keys go into a SQLite file
//! ([`keys`]) as they arrive, and every query that needs them reads them back in chunks, so the
//! runner's memory is bounded, not proportional to the size of the capture.

pub mod catalog;
pub mod keys;
pub mod output;
pub mod progress;
pub mod scrub;
pub mod settings;
pub mod source;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::backfill::db::postgres::{PgBackend, pg_error};
use crate::backfill::db::quote_ident;
use crate::backfill::db::target::Target;
use crate::backfill::display::{count, millis, thousands};
use crate::backfill::error::{Error, ErrorKind, Result, display_path};
use crate::config::Config;
use crate::sql::Dialect;
use catalog::{Catalog, CatalogTable, ForeignKey};
use keys::{Cursor, KeyStore};
use progress::CaptureProgress;
use settings::{CaptureSettings, Policy, config_error};
use source::Source;

/// Rows fetched from the source per round trip (keys while selecting, rows while streaming):
/// with [`KEY_CHUNK`], what bounds the rows held at once.
const FETCH_ROWS: usize = 1024;

/// Keys sent to the source per query (as one text array per key column on PostgreSQL, a
/// `VALUES` list on SQLite). The chunk, its parameters and the rows it selects are what the
/// runner holds at once, so this bounds its memory whatever the size of the capture; a query per
/// 1,024 keys costs little against the work the source does for them.
const KEY_CHUNK: usize = 1024;

/// What to capture and where to write it.
#[derive(Debug, Clone)]
pub struct CaptureOptions {
    pub settings: CaptureSettings,
    /// The fixtures directory to replace.
    pub fixtures: PathBuf,
    /// The time recorded in the manifest (default: the snapshot's, from the source's clock).
    pub captured_at: Option<String>,
}

/// What a capture wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct CaptureReport {
    pub schema_version: u64,
    /// `(table, rows)` by table name.
    pub tables: Vec<(String, u64)>,
    pub rows: u64,
}

/// Captures from the database at `url` (PostgreSQL, or a SQLite file) into
/// `options.fixtures`, printing progress to `out`.
pub fn capture(
    config: &Config,
    url: &str,
    options: &CaptureOptions,
    out: &mut dyn Write,
) -> Result<CaptureReport> {
    let target = Target::parse(url).map_err(|e| Error::new(ErrorKind::Database, e))?;
    let manifest = config.root.join("Cargo.toml");
    let settings = &options.settings;
    let hmac_key = read_hmac_key(settings, &manifest)?;
    let migrations = crate::backfill::db::schema::load_migrations(
        &config.migrations,
        config.migration_layout,
        "`backfill capture`",
    )?;
    let capture = Capture {
        config,
        options,
        manifest: &manifest,
        hmac_key,
        migrations: &migrations,
    };
    match &target {
        Target::Postgres { url } => {
            let mut backend = PgBackend::connect(url)?;
            let client = backend.client();
            let mut tx = client
                .build_transaction()
                .isolation_level(postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .map_err(|e| {
                    pg_error(e, ErrorKind::Database).context("start a read-only transaction")
                })?;
            let timeout = settings.statement_timeout.as_millis();
            tx.batch_execute(&format!(
                "SET LOCAL statement_timeout = {timeout}; SET LOCAL lock_timeout = {timeout};
                 SET LOCAL TimeZone = 'UTC'; SET LOCAL DateStyle = 'ISO, MDY';
                 SET LOCAL IntervalStyle = 'postgres'; SET LOCAL bytea_output = 'hex';
                 SET LOCAL extra_float_digits = 3"
            ))
            .map_err(|e| pg_error(e, ErrorKind::Database).context("set the session up"))?;
            let mut source = source::postgres::PgSource {
                tx: &mut tx,
                info: target.info(),
            };
            let report = capture.run(&mut source, out)?;
            let _ = tx.commit();
            Ok(report)
        }
        Target::Sqlite { path } => {
            let mut source = source::sqlite::SqliteSource::open(path, settings.statement_timeout)?;
            let report = capture.run(&mut source, out)?;
            source.finish();
            Ok(report)
        }
    }
}

/// One capture's inputs, run on an open [`Source`]: the algorithm, once for every source.
struct Capture<'a> {
    config: &'a Config,
    options: &'a CaptureOptions,
    /// The workspace's `Cargo.toml`, named by configuration errors.
    manifest: &'a Path,
    hmac_key: Option<Vec<u8>>,
    migrations: &'a [refinery::Migration],
}

impl Capture<'_> {
    /// The schema version the source's rows fit (refinery's newest), refused when the source
    /// has no history, is at a version `migrations/` lacks, or ran a migration with another
    /// checksum than its file here.
    fn schema_version(&self, source: &mut dyn Source) -> Result<u64> {
        let history = source.history()?.unwrap_or_default();
        let schema_version = history
            .iter()
            .filter_map(|a| u64::try_from(a.version).ok())
            .max()
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Schema,
                    "the source has no refinery_schema_history table (or no row in it): a capture records the schema version its rows fit, so the source's schema must be applied by refinery (`cargo xtask migrate run`)",
                )
            })?;
        let versions: Vec<u64> = self
            .migrations
            .iter()
            .filter_map(|m| u64::try_from(m.version()).ok())
            .collect();
        if !versions.contains(&schema_version) {
            return Err(Error::file(
                ErrorKind::Schema,
                &self.config.migrations,
                format!(
                    "the source is at schema version V{schema_version}, which is not among the migrations here ({}): the sample could not build the schema these rows fit; update migrations/ first",
                    if versions.is_empty() {
                        "none".to_string()
                    } else {
                        format!(
                            "V{}..V{}",
                            versions.iter().min().unwrap_or(&0),
                            versions.iter().max().unwrap_or(&0)
                        )
                    }
                ),
            ));
        }
        check_checksums(
            &history,
            self.migrations,
            &self.config.migrations,
            source.dialect(),
        )?;
        Ok(schema_version)
    }

    fn run(self, source: &mut dyn Source, out: &mut dyn Write) -> Result<CaptureReport> {
        let settings = &self.options.settings;
        let manifest = self.manifest;
        let schema_version = self.schema_version(source)?;
        let captured_at = match &self.options.captured_at {
            Some(at) => at.clone(),
            None => source.snapshot_time()?,
        };
        let catalog = source.catalog(settings.schema.as_deref())?;
        let plan = Plan::check(&catalog, settings, manifest, source.dialect())?;
        let _ = writeln!(
            out,
            "capture from {} (schema {}, version V{schema_version}, snapshot {captured_at})",
            source.info().describe(),
            catalog.schema
        );

        let started = Instant::now();
        let progress = CaptureProgress::new();
        let mut selection = Selection {
            source: &mut *source,
            catalog: &catalog,
            settings,
            manifest,
            progress: &progress,
            keys: KeyStore::create(plan.tables.iter().map(|t| &catalog.tables[t]))?,
        };
        let summary = selection.run()?;
        let keys = selection.keys;
        let mut total = 0;
        for table in &plan.tables {
            total += keys.len(table)?;
        }
        progress
            .suspend(|| {
                writeln!(
                    out,
                    "  {:<9} {:<44} {:>9}",
                    "select",
                    format!("{}, {summary}", count(total, "row", "rows")),
                    millis(started.elapsed())
                )
            })
            .ok();
        progress.streaming(total);

        let scrubber = scrub::Scrubber::new(self.hmac_key, settings.seed);
        let mut writer = output::Staging::new(&self.options.fixtures)?;
        let mut personal_values: BTreeSet<String> = BTreeSet::new();
        let mut tables = Vec::new();
        for table_name in &plan.tables {
            let table = &catalog.tables[table_name];
            let started = Instant::now();
            progress.table(table_name);
            let columns: Vec<&catalog::CatalogColumn> =
                table.columns.iter().filter(|c| !c.generated).collect();
            let policies: Vec<(Policy, bool)> = columns
                .iter()
                .map(
                    |c| match settings.columns.get(&(table.name.clone(), c.name.clone())) {
                        Some(policy) => (policy.clone(), false),
                        None => (Policy::Keep, c.text_like),
                    },
                )
                .collect();
            let mut file = writer.table(&table.name, columns.iter().map(|c| c.name.as_str()))?;
            let list: Vec<String> = columns.iter().map(|c| source.value(c, "t")).collect();
            let mut values: Vec<Option<String>> = Vec::with_capacity(columns.len());
            let mut cursor = Cursor::new(table_name, 0, i64::MAX);
            while let Some(chunk) = keys.next_chunk(&mut cursor, KEY_CHUNK)? {
                // The rows of one chunk of keys, in the chunk's order: chunks come in key
                // order, so the file is sorted by key.
                let sql = format!(
                    "SELECT {} FROM {} AS t {} ORDER BY xtask_keys.xtask_ord",
                    list.join(", "),
                    catalog.qualified(&table.name),
                    source.key_join(table, "t", chunk.len()),
                );
                source
                    .rows(&sql, &chunk, FETCH_ROWS, &mut |row| {
                        progress.add(1);
                        values.clear();
                        for (i, (policy, check)) in policies.iter().enumerate() {
                            let value = row[i];
                            if *check
                                && let Some(v) = value
                                && scrub::looks_personal_value(v)
                            {
                                personal_values
                                    .insert(format!("{}.{}", table.name, columns[i].name));
                            }
                            values.push(scrubber.apply(policy, value));
                        }
                        file.row(&values)
                    })
                    .map_err(|e| source_error(e, format!("read table {}", table.name)))?;
            }
            let rows = file.finish()?;
            let elapsed = started.elapsed();
            let rate = if elapsed.as_secs_f64() > 0.0 {
                format!(
                    "  {} rows/s",
                    thousands((rows as f64 / elapsed.as_secs_f64()) as u64)
                )
            } else {
                String::new()
            };
            progress
                .suspend(|| {
                    writeln!(
                        out,
                        "  {:<9} {:<44} {:>9}{rate}",
                        table.name,
                        count(rows, "row", "rows"),
                        millis(elapsed)
                    )
                })
                .ok();
            tables.push((table.name.clone(), rows));
        }
        if !personal_values.is_empty() {
            return Err(config_error(
                manifest,
                format!(
                    "refusing to capture: values of {} look like email or IP addresses and the column has no policy: give it one in `columns` (keep, null, fake:KIND, hmac, constant:VALUE)",
                    personal_values.into_iter().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        drop(progress);

        let manifest_doc = output::Manifest {
            format: output::MANIFEST_FORMAT,
            schema_version,
            captured_at,
            source: source.info(),
            settings: output::ManifestSettings::from(settings, &catalog.schema),
            tables: BTreeMap::new(),
        };
        writer.finish(manifest_doc)?;
        let rows = tables.iter().map(|(_, r)| r).sum();
        let _ = writeln!(
            out,
            "wrote {} ({}, {}) and manifest.json",
            display_path(&self.options.fixtures),
            count(tables.len() as u64, "table", "tables"),
            count(rows, "row", "rows")
        );
        Ok(CaptureReport {
            schema_version,
            tables,
            rows,
        })
    }
}

/// An error of the source's own statement (kind `Statement`) as a database error of the step
/// `what`; an error of the capture's own side (the key file, the fixtures) as it is.
fn source_error(e: Error, what: impl std::fmt::Display) -> Error {
    if e.kind == ErrorKind::Statement {
        e.with_kind(ErrorKind::Database).context(what)
    } else {
        e
    }
}

/// Refuses a source whose refinery history records a migration of `migrations` with another
/// checksum than refinery computes for the file here (from its name, version and SQL): the file
/// changed after it ran there, so the schema the sample builds is not the one the rows fit. On a
/// SQLite source, the checksum of the file as this tool adapts it to SQLite (PostgreSQL session
/// settings and `CONCURRENTLY` blanked, what `backfill sample` applies and refinery records
/// there) is the file's too.
fn check_checksums(
    history: &[source::Applied],
    migrations: &[refinery::Migration],
    dir: &Path,
    dialect: Dialect,
) -> Result<()> {
    for applied in history {
        let Some(local) = migrations
            .iter()
            .find(|m| i64::from(m.version()) == applied.version)
        else {
            continue;
        };
        let recorded = applied.checksum.clone().unwrap_or_default();
        let mut accepted = vec![local.checksum()];
        if dialect == Dialect::Sqlite
            && let Ok(adapted) =
                crate::backfill::db::schema::prepare(std::slice::from_ref(local), u64::MAX, dialect)
        {
            accepted.extend(adapted.iter().map(|m| m.checksum()));
        }
        if recorded
            .trim()
            .parse::<u64>()
            .is_ok_and(|c| accepted.contains(&c))
        {
            continue;
        }
        let file = migration_file(dir, local);
        return Err(Error::file(
            ErrorKind::Schema,
            &file,
            format!(
                "the source applied V{} ({}) with checksum {recorded}, and refinery's checksum of this file is {}: it changed after it ran there, so the sample would not build the schema the captured rows fit; restore the file as it ran, or capture from a database migrated with it",
                applied.version,
                applied.name.clone().unwrap_or_default(),
                local.checksum()
            ),
        ));
    }
    Ok(())
}

/// The file of `migration` under `dir` (refinery reads them at any depth), or `dir` when it is
/// not found by its name.
fn migration_file(dir: &Path, migration: &refinery::Migration) -> PathBuf {
    let wanted = format!("{}__{}.sql", migration.version(), migration.name());
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        let mut entries: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                stack.push(path);
            } else if let Some(file) = path.file_name().and_then(|f| f.to_str())
                && file
                    .strip_prefix(['V', 'U'])
                    .is_some_and(|rest| rest == wanted)
            {
                return path;
            }
        }
    }
    dir.to_path_buf()
}

/// The `hmac` policy's key, from the environment, when some column uses it.
fn read_hmac_key(settings: &CaptureSettings, manifest: &Path) -> Result<Option<Vec<u8>>> {
    let key = std::env::var(&settings.hmac_key_env)
        .ok()
        .filter(|k| !k.is_empty());
    if let Some(key) = &key {
        crate::secrets::register(key);
    }
    let hashed: Vec<String> = settings
        .columns
        .iter()
        .filter(|(_, p)| **p == Policy::Hmac)
        .map(|((t, c), _)| format!("{t}.{c}"))
        .collect();
    if !hashed.is_empty() && key.is_none() {
        return Err(config_error(
            manifest,
            format!(
                "{} {} hashed with hmac, and the key is not set: export {} (a secret, kept out of the fixtures and of every message)",
                hashed.join(", "),
                if hashed.len() == 1 { "is" } else { "are" },
                settings.hmac_key_env
            ),
        ));
    }
    Ok(key.map(String::into_bytes))
}

/// The tables a capture writes, checked against the catalog before anything is read.
struct Plan {
    tables: Vec<String>,
}

impl Plan {
    fn check(
        catalog: &Catalog,
        settings: &CaptureSettings,
        manifest: &Path,
        dialect: Dialect,
    ) -> Result<Plan> {
        let err = |message: String| config_error(manifest, message);
        let table = |name: &str, role: &str| -> Result<&CatalogTable> {
            let t = catalog.table(name).ok_or_else(|| {
                err(format!(
                    "{role} `{name}`: no such table in schema {} (it has: {})",
                    catalog.schema,
                    catalog
                        .tables
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
            if t.primary_key.is_empty() {
                return Err(err(format!(
                    "{role} `{name}` has no primary key and no unique index over NOT NULL columns: a capture selects rows by their key; give the table a primary key, or a unique index whose columns are all NOT NULL, to make it capturable"
                )));
            }
            Ok(t)
        };
        let mut start = BTreeSet::new();
        for root in &settings.roots {
            table(&root.table, "root")?;
            if let Some(predicate) = &root.predicate {
                check_predicate(&root.table, predicate, dialect).map_err(err)?;
            }
            start.insert(root.table.clone());
        }
        for child in &settings.children {
            table(&child.table, "child table")?;
            table(&child.parent, "parent table")?;
            child_key(catalog, child).map_err(err)?;
            start.insert(child.table.clone());
        }
        // Every table reachable over foreign keys from the sampled ones.
        let mut tables = start.clone();
        let mut queue: VecDeque<String> = start.into_iter().collect();
        while let Some(t) = queue.pop_front() {
            for fk in catalog.outgoing(&t) {
                if tables.insert(fk.parent.clone()) {
                    table(&fk.parent, &format!("table referenced by {}", fk.name))?;
                    queue.push_back(fk.parent.clone());
                }
            }
        }
        for (t, c) in settings.columns.keys() {
            let Some(found) = catalog.table(t) else {
                return Err(err(format!(
                    "columns: `{t}.{c}`: no table `{t}` in schema {}",
                    catalog.schema
                )));
            };
            if found.column(c).is_none() {
                return Err(err(format!(
                    "columns: `{t}.{c}`: table `{t}` has no column `{c}` (it has: {})",
                    found
                        .columns
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        check_policies(catalog, settings, &tables).map_err(err)?;
        Ok(Plan {
            tables: tables.into_iter().collect(),
        })
    }
}

/// A root's predicate must be one SQL expression: `SELECT 1 FROM t WHERE <predicate>` parses as
/// one statement with the source's grammar (PostgreSQL's or SQLite's: the predicate runs there).
fn check_predicate(
    table: &str,
    predicate: &str,
    dialect: Dialect,
) -> std::result::Result<(), String> {
    use sqlparser::dialect::{PostgreSqlDialect, SQLiteDialect};
    use sqlparser::parser::Parser;
    let sql = format!("SELECT 1 FROM t WHERE {predicate}");
    let parsed = match dialect {
        Dialect::Postgres => Parser::parse_sql(&PostgreSqlDialect {}, &sql),
        Dialect::Sqlite => Parser::parse_sql(&SQLiteDialect {}, &sql),
    };
    match parsed {
        Ok(statements) if statements.len() == 1 => Ok(()),
        Ok(_) => Err(format!(
            "root `{table}`: `where` must be one expression, not several statements"
        )),
        Err(e) => Err(format!("root `{table}`: `where` does not parse: {e}")),
    }
}

/// The foreign key a child relation follows.
fn child_key<'a>(
    catalog: &'a Catalog,
    child: &settings::ChildRelation,
) -> std::result::Result<&'a ForeignKey, String> {
    let candidates: Vec<&ForeignKey> = catalog
        .outgoing(&child.table)
        .into_iter()
        .filter(|fk| fk.parent == child.parent)
        .collect();
    let describe = |fks: &[&ForeignKey]| {
        fks.iter()
            .map(|fk| format!("via = [{}]", fk.child_columns.join(", ")))
            .collect::<Vec<_>>()
            .join(" or ")
    };
    match &child.via {
        Some(via) => candidates
            .iter()
            .find(|fk| &fk.child_columns == via)
            .copied()
            .ok_or_else(|| {
                format!(
                    "child `{}`: no foreign key ({}) to `{}`{}",
                    child.table,
                    via.join(", "),
                    child.parent,
                    if candidates.is_empty() {
                        String::new()
                    } else {
                        format!(" (there is {})", describe(&candidates))
                    }
                )
            }),
        None => match candidates.as_slice() {
            [one] => Ok(*one),
            [] => Err(format!(
                "child `{}`: no foreign key to `{}`",
                child.table, child.parent
            )),
            several => Err(format!(
                "child `{}` has several foreign keys to `{}`: say which with {}",
                child.table,
                child.parent,
                describe(several)
            )),
        },
    }
}

/// Default-deny and key consistency, over the columns of the captured tables.
fn check_policies(
    catalog: &Catalog,
    settings: &CaptureSettings,
    tables: &BTreeSet<String>,
) -> std::result::Result<(), String> {
    let policy = |t: &str, c: &str| settings.columns.get(&(t.to_string(), c.to_string()));
    let mut unlisted = Vec::new();
    for t in tables {
        let table = &catalog.tables[t];
        for (i, column) in table.columns.iter().enumerate() {
            if column.generated {
                continue;
            }
            let name = format!("{t}.{}", column.name);
            let key = table.primary_key.contains(&i);
            match policy(t, &column.name) {
                None if column.text_like && scrub::looks_personal(&column.name) => {
                    unlisted.push(format!("{name} ({})", column.type_name));
                }
                None => {}
                Some(Policy::Null) if column.not_null || key => {
                    return Err(format!(
                        "`{name}` is NOT NULL: the null policy cannot apply"
                    ));
                }
                Some(Policy::Hmac | Policy::Fake(_)) if !column.text_like => {
                    return Err(format!(
                        "`{name}` is {}: hmac and fake policies write text, give it keep, null or constant:VALUE",
                        column.type_name
                    ));
                }
                Some(p) if key && !matches!(p, Policy::Keep | Policy::Hmac) => {
                    return Err(format!(
                        "`{name}` is a primary-key column: keep it or hash it with hmac (equal inputs stay equal, so keys stay keys)"
                    ));
                }
                Some(_) => {}
            }
        }
    }
    if !unlisted.is_empty() {
        return Err(format!(
            "refusing to capture: these columns look personal and have no policy: {}; give each one in `columns` (keep, null, fake:KIND, hmac, constant:VALUE)",
            unlisted.join(", ")
        ));
    }
    // Both ends of a foreign key are written the same way, or the rows no longer join.
    for fk in &catalog.foreign_keys {
        if !tables.contains(&fk.child) {
            continue;
        }
        for (c, p) in fk.child_columns.iter().zip(&fk.parent_columns) {
            let (cp, pp) = (
                policy(&fk.child, c).unwrap_or(&Policy::Keep),
                policy(&fk.parent, p).unwrap_or(&Policy::Keep),
            );
            if cp != pp || !matches!(cp, Policy::Keep | Policy::Hmac) {
                return Err(format!(
                    "`{}.{c}` ({cp}) references `{}.{p}` ({pp}) through {}: both ends of a foreign key must be kept, or both hashed with hmac",
                    fk.child, fk.parent, fk.name
                ));
            }
        }
    }
    Ok(())
}

/// Selects the keys of the rows to capture into a [`KeyStore`]. Stages: 0 the roots, `i` the
/// `i`-th child relation, then one per round of the closure.
struct Selection<'t> {
    source: &'t mut dyn Source,
    catalog: &'t Catalog,
    settings: &'t CaptureSettings,
    manifest: &'t Path,
    progress: &'t CaptureProgress,
    keys: KeyStore,
}

impl Selection<'_> {
    /// Roots, children, closure; returns a summary for people.
    fn run(&mut self) -> Result<String> {
        let mut parts = Vec::new();
        for root in &self.settings.roots {
            let n = self.roots(root)?;
            parts.push(format!("{} {}", root.table, thousands(n as u64)));
        }
        for (i, child) in self.settings.children.iter().enumerate() {
            let n = self.children(child, i as i64 + 1)?;
            parts.push(format!("+{} {}", thousands(n as u64), child.table));
        }
        let (added, rounds) = self.closure(self.settings.children.len() as i64)?;
        parts.push(format!(
            "+{} referenced ({})",
            thousands(added as u64),
            count(rounds as u64, "round", "rounds")
        ));
        Ok(parts.join(", "))
    }

    /// Runs `sql` (its key join bound to `chunk`) and adds the keys it returns to `table` at
    /// `stage`, fetching them in bounded rounds; returns how many were new.
    fn fetch_into(
        &mut self,
        sql: &str,
        chunk: &[Vec<String>],
        table: &str,
        stage: i64,
    ) -> Result<usize> {
        let mut added = 0;
        let (keys, progress) = (&mut self.keys, self.progress);
        self.source.keys(sql, chunk, FETCH_ROWS, &mut |rows| {
            let new = keys.insert_keys(
                table,
                stage,
                rows.iter().map(|k| k.iter().map(String::as_str)),
            )?;
            progress.add(new as u64);
            added += new;
            Ok(())
        })?;
        Ok(added)
    }

    fn roots(&mut self, root: &settings::Root) -> Result<usize> {
        let table = &self.catalog.tables[&root.table];
        let hash = hash_expr(&*self.source, table, "t", self.settings.seed);
        let mut conditions = Vec::new();
        if let Some(predicate) = &root.predicate {
            conditions.push(format!("({predicate})"));
        }
        if let Some(fraction) = root.fraction {
            // md5's first 32 bits, uniform in [0, 2^32).
            let threshold = (fraction * 4_294_967_296.0).round() as i64;
            conditions.push(format!("{hash} < {threshold}"));
        }
        let mut sql = format!(
            "SELECT {} FROM {} AS t",
            key_select(&*self.source, table, "t"),
            self.catalog.qualified(&table.name)
        );
        if !conditions.is_empty() {
            sql.push_str(&format!(" WHERE {}", conditions.join(" AND ")));
        }
        if let Some(limit) = root.limit {
            sql.push_str(&format!(
                " ORDER BY {hash}, {} LIMIT {limit}",
                key_order(table, "t")
            ));
        }
        self.progress.selecting(&root.table);
        self.fetch_into(&sql, &[], &root.table, 0).map_err(|e| {
            if e.kind != ErrorKind::Statement {
                return e;
            }
            let message = e.message;
            config_error(
                self.manifest,
                match &root.predicate {
                    Some(p) => format!(
                        "root `{}`: selecting its rows fails on the source (`where` = {p:?}): {message}",
                        root.table
                    ),
                    None => format!(
                        "root `{}`: selecting its rows fails on the source: {message}",
                        root.table
                    ),
                },
            )
        })
    }

    /// Adds the rows of `child.table` that reference the keys selected so far in
    /// `child.parent`, at `stage`.
    fn children(&mut self, child: &settings::ChildRelation, stage: i64) -> Result<usize> {
        let fk = child_key(self.catalog, child)
            .map_err(|m| config_error(self.manifest, m))?
            .clone();
        let what = format!("select the {} of sampled {}", child.table, child.parent);
        self.progress.selecting(&child.table);
        let mut cursor = Cursor::new(&child.parent, 0, stage - 1);
        let mut added = 0;
        while let Some(chunk) = self.keys.next_chunk(&mut cursor, KEY_CHUNK)? {
            let sql = children_sql(
                &*self.source,
                self.catalog,
                child,
                &fk,
                self.settings.seed,
                chunk.len(),
            );
            added += self
                .fetch_into(&sql, &chunk, &child.table, stage)
                .map_err(|e| source_error(e, &what))?;
        }
        Ok(added)
    }

    /// Follows foreign keys from every newly selected row until no new row is found; the keys
    /// found in round `r` are stored at stage `last + r`, and round `r + 1` reads those. Returns
    /// the rows added and the rounds it took.
    fn closure(&mut self, last: i64) -> Result<(usize, usize)> {
        let mut delta: BTreeSet<String> = BTreeSet::new();
        for table in self.catalog.tables.keys() {
            if self.keys.contains(table) && self.keys.len(table)? > 0 {
                delta.insert(table.clone());
            }
        }
        let (mut added, mut rounds) = (0, 0);
        let mut stages = (0, last);
        while !delta.is_empty() {
            rounds += 1;
            self.progress
                .selecting(&format!("rows referenced, round {rounds}"));
            let stage = stages.1 + 1;
            let mut next = BTreeSet::new();
            for child_name in &delta {
                let child = &self.catalog.tables[child_name];
                let fks: Vec<ForeignKey> = self
                    .catalog
                    .outgoing(child_name)
                    .into_iter()
                    .cloned()
                    .collect();
                for fk in fks {
                    let parent = &self.catalog.tables[&fk.parent];
                    let what = format!("follow foreign key {} of {}", fk.name, fk.child);
                    let mut cursor = Cursor::new(child_name, stages.0, stages.1);
                    while let Some(chunk) = self.keys.next_chunk(&mut cursor, KEY_CHUNK)? {
                        let sql = format!(
                            "SELECT {} FROM {} AS p WHERE ({}) IN (SELECT {} FROM {} AS c {})",
                            key_select(&*self.source, parent, "p"),
                            self.catalog.qualified(&parent.name),
                            columns(&fk.parent_columns, "p"),
                            columns(&fk.child_columns, "c"),
                            self.catalog.qualified(&child.name),
                            self.source.key_join(child, "c", chunk.len())
                        );
                        let new = self
                            .fetch_into(&sql, &chunk, &fk.parent, stage)
                            .map_err(|e| source_error(e, &what))?;
                        added += new;
                        if new > 0 {
                            next.insert(fk.parent.clone());
                        }
                    }
                }
            }
            stages = (stage, stage);
            delta = next;
        }
        Ok((added, rounds))
    }
}

/// The keys of the rows of `child.table` that reference, through `fk`, one of a chunk of
/// `keys` keys of `child.parent`, at most `per-parent` per parent (the lowest hashes).
fn children_sql(
    source: &dyn Source,
    catalog: &Catalog,
    child: &settings::ChildRelation,
    fk: &ForeignKey,
    seed: u64,
    keys: usize,
) -> String {
    let parent = &catalog.tables[&child.parent];
    let table = &catalog.tables[&child.table];
    let fk_cols = columns(&fk.child_columns, "c");
    let inner = format!(
        "SELECT {} FROM {} AS p {}",
        columns(&fk.parent_columns, "p"),
        catalog.qualified(&parent.name),
        source.key_join(parent, "p", keys)
    );
    // A cap per parent ranks within one parent's rows: parents taken in chunks give the same
    // rows as all at once.
    match child.per_parent {
        Some(cap) => format!(
            "SELECT {} FROM (SELECT c.*, row_number() OVER (PARTITION BY {fk_cols} ORDER BY {}, {}) AS xtask_rank
             FROM {} AS c WHERE ({fk_cols}) IN ({inner})) AS c WHERE xtask_rank <= {cap}",
            key_select(source, table, "c"),
            hash_expr(source, table, "c", seed),
            key_order(table, "c"),
            catalog.qualified(&table.name),
        ),
        None => format!(
            "SELECT {} FROM {} AS c WHERE ({fk_cols}) IN ({inner})",
            key_select(source, table, "c"),
            catalog.qualified(&table.name),
        ),
    }
}

/// `alias.c1, alias.c2` for `names`, quoted.
fn columns(names: &[String], alias: &str) -> String {
    names
        .iter()
        .map(|c| format!("{alias}.{}", quote_ident(c)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The key's columns as text.
fn key_select(source: &dyn Source, table: &CatalogTable, alias: &str) -> String {
    table
        .key_columns()
        .iter()
        .map(|c| source.text(&format!("{alias}.{}", quote_ident(&c.name))))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The key's columns, for ORDER BY.
fn key_order(table: &CatalogTable, alias: &str) -> String {
    table
        .key_columns()
        .iter()
        .map(|c| format!("{alias}.{}", quote_ident(&c.name)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The first 32 bits of md5(`seed:key`), as an integer: where a row falls in the sample,
/// whatever the physical order. A composite key's columns are joined with commas. The same key
/// text hashes alike on every source, so a copy of the same rows samples the same rows.
fn hash_expr(source: &dyn Source, table: &CatalogTable, alias: &str, seed: u64) -> String {
    source.hash(&format!(
        "'{seed}:' || {}",
        table
            .key_columns()
            .iter()
            .map(|c| source.text(&format!("{alias}.{}", quote_ident(&c.name))))
            .collect::<Vec<_>>()
            .join(" || ',' || ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predicates_are_parsed_before_they_run() {
        assert!(
            check_predicate(
                "users",
                "created_at >= '2024-01-01' AND id % 2 = 0",
                Dialect::Postgres
            )
            .is_ok()
        );
        let e = check_predicate("users", "id >", Dialect::Postgres).unwrap_err();
        assert!(
            e.starts_with("root `users`: `where` does not parse:"),
            "{e}"
        );
        let e = check_predicate("users", "true; DROP TABLE users", Dialect::Postgres).unwrap_err();
        assert!(e.contains("one expression"), "{e}");
    }
}
