//! The engines a sample runs on, and which one a command uses.
//!
//! - `sqlite`: a temporary SQLite database per data migration (embedded, nothing to install).
//! - `postgres-local`: a private PostgreSQL cluster started from the machine's server binaries
//!   ([`crate::backfill::db::cluster`]), with a fresh database per data migration: kept alive
//!   between commands ([`WarmCluster`]), or one per command, stopped and removed when the
//!   command ends, however it ends. The kept-alive one also keeps the databases loaded by
//!   earlier samples (schema migrations run, fixtures loaded: `fixtures_<key>`, at most
//!   [`LOADED_KEPT`]), and a later sample of the same inputs
//!   ([`crate::backfill::sample::cache::key`]) starts from a copy of one instead of loading.
//! - `postgres-url`: a throwaway schema per data migration on the server of `--database-url`.
//!
//! The engine comes from `--engine`, else `sample-engine` in the config, else `auto`: `sqlite`
//! for a workspace whose dialect is sqlite; for a postgres workspace `postgres-local` when the
//! server binaries are found, else `sqlite` with a one-line note, so a machine without PostgreSQL
//! still samples every migration SQLite can run. `--database-url` means `postgres-url`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::backfill::db::cluster::{self, Cluster};
use crate::backfill::db::postgres::redact_url;
use crate::backfill::db::quote_ident;
use crate::backfill::db::schema::postgres_only;
use crate::backfill::db::warm::{DEFAULT_KEEP_ALIVE, WarmCluster};
use crate::backfill::error::{Error, ErrorKind, Result};
use crate::backfill::migration::parse_duration;
use crate::backfill::sample::{Inputs, Loaded};
use crate::config::{Config, METADATA_KEY, SampleEngine};
use crate::sql::Dialect;

/// The engine a command samples on, ready to give each data migration a fresh database.
pub enum Engine {
    Sqlite,
    PostgresLocal(Box<LocalCluster>),
    PostgresUrl(String),
}

/// The private cluster of `postgres-local`, and the databases made on it.
pub struct LocalCluster {
    /// Connected to the `postgres` database: creates and drops the sample databases.
    admin: postgres::Client,
    databases: usize,
    /// How long starting (or finding) the cluster took, reported with the first data migration.
    startup: Option<Duration>,
    /// The last database made, dropped before the next one and, on a kept-alive cluster, when
    /// the command ends.
    current: Option<String>,
    /// Making the spare databases the next command on a kept-alive cluster will take: at most
    /// one empty one and one per loaded database kept ([`Spare::key`]).
    spares: Vec<Spare>,
    /// Declared last: a per-command cluster is stopped and removed, a kept-alive one released,
    /// after the admin connection is closed.
    server: Server,
}

/// The cluster a command samples on.
pub enum Server {
    /// Started for this command, stopped and removed when it ends.
    Private(Cluster),
    /// Kept alive between commands ([`WarmCluster`]).
    Warm(Box<WarmCluster>),
}

impl Server {
    pub fn url(&self, database: &str) -> String {
        match self {
            Server::Private(c) => c.url(database),
            Server::Warm(c) => c.url(database),
        }
    }

    pub fn version(&self) -> &str {
        match self {
            Server::Private(c) => c.version(),
            Server::Warm(c) => c.version(),
        }
    }

    pub fn bin_dir(&self) -> &Path {
        match self {
            Server::Private(c) => c.bin_dir(),
            Server::Warm(c) => c.bin_dir(),
        }
    }

    /// The major version (`15`), for the statements that depend on it.
    fn major(&self) -> u32 {
        self.version()
            .split(['.', ' '])
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(0)
    }
}

/// A fresh database of the private cluster, for one data migration.
pub struct LocalDatabase {
    pub url: String,
    pub name: String,
    /// Starting the cluster (first database only) and creating the database.
    pub elapsed: Duration,
    /// How the cluster came to be, for the first database only.
    pub cluster: Option<Startup>,
    /// Set when the database is a copy of a loaded database kept by an earlier sample: its
    /// schema and fixtures are in place.
    pub cached: Option<Cached>,
}

/// A database copied from a loaded one an earlier sample kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cached {
    /// What the earlier sample loaded.
    pub loaded: Loaded,
    /// This command's part of the copy: renaming a spare copied beforehand, or copying the
    /// kept database now.
    pub elapsed: Duration,
    /// The kept database's name.
    pub from: String,
}

/// How the command came by its cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Startup {
    /// A per-command cluster, started now.
    Started,
    /// A kept-alive cluster, started now and kept for this long after the last use.
    StartedKept(Duration),
    /// A kept-alive cluster an earlier command started.
    Reused,
}

impl LocalCluster {
    /// The cluster of the binaries in `bin`: with a non-zero `keep_alive`, the kept-alive one
    /// ([`WarmCluster`], started when none runs) where this machine can keep one; else a
    /// private cluster for this command alone.
    pub fn start(bin: &Path, keep_alive: Duration) -> Result<LocalCluster> {
        let started = Instant::now();
        let warm = if keep_alive.is_zero() {
            None
        } else {
            WarmCluster::acquire(bin, keep_alive)?
        };
        let server = match warm {
            Some(warm) => Server::Warm(Box::new(warm)),
            None => Server::Private(Cluster::start(bin)?),
        };
        LocalCluster::on(server, started)
    }

    /// Samples on `server`, started (or found) since `started`.
    pub fn on(mut server: Server, started: Instant) -> Result<LocalCluster> {
        let found = match &mut server {
            Server::Warm(warm) => warm.take_client(),
            Server::Private(_) => None,
        };
        let mut admin = match found {
            Some(client) => client,
            None => postgres::Client::connect(&server.url("postgres"), postgres::NoTls).map_err(
                |e| {
                    Error::new(
                        ErrorKind::Database,
                        format!("cannot connect to the private PostgreSQL cluster: {e}"),
                    )
                },
            )?,
        };
        if let Server::Warm(warm) = &server
            && !warm.started()
        {
            drop_abandoned(&mut admin, server.major());
        }
        Ok(LocalCluster {
            admin,
            databases: 0,
            startup: Some(started.elapsed()),
            current: None,
            spares: Vec::new(),
            server,
        })
    }

    pub fn server(&self) -> &Server {
        &self.server
    }

    /// Creates a new, empty database and returns it. The previous one, whose sample is over and
    /// its connection closed, is dropped first, so a long command does not fill the disk; the
    /// last one goes with a per-command cluster (dropping a database costs a checkpoint), or
    /// when the command ends on a kept-alive one.
    pub fn create_database(&mut self) -> Result<LocalDatabase> {
        self.create_database_for(None)
    }

    /// Whether this cluster keeps loaded databases for later samples: only the kept-alive one
    /// (a per-command cluster goes with its command; a server of `--database-url` is not ours).
    pub fn keeps_loaded(&self) -> bool {
        matches!(self.server, Server::Warm(_))
    }

    /// [`LocalCluster::create_database`], for a sample whose schema and fixtures have the key
    /// `key` ([`crate::backfill::sample::cache::key`]): on the kept-alive cluster, when an
    /// earlier sample kept a database loaded with that key, the new database is a copy of it
    /// (a spare copied beforehand, renamed, or a copy made now), and says so
    /// ([`LocalDatabase::cached`]). Anything that stops the copy (the kept database dropped
    /// meanwhile, someone connected to it) gives an empty database instead, for a normal load.
    pub fn create_database_for(&mut self, key: Option<&str>) -> Result<LocalDatabase> {
        let started = Instant::now();
        self.drop_current();
        self.databases += 1;
        // On a kept-alive cluster, the process's id keeps concurrent commands apart and lets
        // a later command drop what a killed one left; the number, this process's samples.
        let name = match self.server {
            Server::Private(_) => format!("sample_{}", self.databases),
            Server::Warm(_) => format!("sample_{}_{}", std::process::id(), next_number()),
        };
        let warm = matches!(self.server, Server::Warm(_));
        let cached = match key.filter(|_| warm) {
            Some(key) => self.copy_loaded(&name, key),
            None => None,
        };
        let created = started.elapsed() - cached.as_ref().map_or(Duration::ZERO, |c| c.elapsed);
        if cached.is_none() {
            let claimed = warm && self.claim_spare(&name, None);
            if !claimed {
                self.admin
                    .batch_execute(&create_database(&name, None, self.server.major()))
                    .map_err(|e| {
                        Error::new(
                            ErrorKind::Database,
                            format!(
                                "cannot create a database in the private PostgreSQL cluster: {e}"
                            ),
                        )
                    })?;
            }
        }
        if warm {
            match (&cached, key) {
                // The next command of the same inputs takes a copy made while this one runs.
                (Some(c), Some(key)) => {
                    let from = c.from.clone();
                    self.make_spare(Some((key, &from)), Empty::No, false);
                }
                // Loaded now: the spare is made once it is kept (`keep_loaded`).
                (None, Some(_)) => {}
                (_, None) => self.make_spare(None, Empty::Yes, false),
            }
        }
        self.current = Some(name.clone());
        let startup = self.startup.take();
        let cluster = startup.map(|_| match &self.server {
            Server::Private(_) => Startup::Started,
            Server::Warm(warm) if warm.started() => Startup::StartedKept(warm.keep_alive()),
            Server::Warm(_) => Startup::Reused,
        });
        let elapsed = if cached.is_some() {
            created
        } else {
            started.elapsed()
        };
        Ok(LocalDatabase {
            url: self.server.url(&name),
            elapsed: elapsed + startup.unwrap_or_default(),
            cluster,
            name,
            cached,
        })
    }

    /// Makes `name` a copy of the loaded database kept under `key`, when there is one: a spare
    /// copy of it renamed, else a copy made now. `None` when there is none or the copy failed.
    fn copy_loaded(&mut self, name: &str, key: &str) -> Option<Cached> {
        let started = Instant::now();
        let from = loaded_name(key);
        let row = self
            .admin
            .query_opt(
                "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1",
                &[&from],
            )
            .ok()??;
        let record = Record::parse(row.get::<_, Option<String>>(0).as_deref()?)?;
        let copied = self.claim_spare(name, Some(key))
            || self
                .admin
                .batch_execute(&create_database(name, Some(&from), self.server.major()))
                .is_ok();
        if !copied {
            return None;
        }
        // Its last use, for the least recently used to go first. Best effort: two commands
        // touching it at once may make one of them fail.
        let used = Record {
            used: now_millis(),
            ..record
        };
        let _ = self.admin.batch_execute(&format!(
            "COMMENT ON DATABASE {} IS {}",
            quote_ident(&from),
            quote_literal(&used.to_string())
        ));
        Some(Cached {
            loaded: record.loaded,
            elapsed: started.elapsed(),
            from,
        })
    }

    /// Keeps the database `database`, whose schema and fixtures have just been loaded and
    /// whose sample has not started (its session closed), as the loaded database of `key`
    /// for later samples: copied under a temporary name, its record written, then renamed, so
    /// no other command ever sees it half made. Then, in the background, the least recently
    /// used beyond [`LOADED_KEPT`] are dropped and a spare copy is made for the next command. Best
    /// effort: returns the kept database's name, `None` when it could not be kept (the sample
    /// goes on all the same).
    pub fn keep_loaded(&mut self, database: &str, key: &str, loaded: Loaded) -> Option<String> {
        if !self.keeps_loaded() {
            return None;
        }
        self.wait_for_sessions(database);
        let temporary = format!("fixtures_new_{}_{}", std::process::id(), next_number());
        let target = loaded_name(key);
        let record = Record {
            loaded,
            used: now_millis(),
        };
        let made = self
            .admin
            .batch_execute(&format!(
                "{} ALLOW_CONNECTIONS = false",
                create_database(&temporary, Some(database), self.server.major())
            ))
            .is_ok();
        if !made {
            return None;
        }
        // One query, so one implicit transaction: the database takes its name with its record.
        let kept = self
            .admin
            .batch_execute(&format!(
                "COMMENT ON DATABASE {temporary} IS {}; ALTER DATABASE {temporary} RENAME TO {}",
                quote_literal(&record.to_string()),
                quote_ident(&target),
                temporary = quote_ident(&temporary),
            ))
            .is_ok();
        if !kept {
            // Another command kept the same inputs first: its copy serves.
            drop_database(&mut self.admin, &temporary);
            return None;
        }
        self.make_spare(Some((key, &target)), Empty::IfNone, true);
        Some(target)
    }

    /// Drops every loaded database kept on the cluster and their spares (for a measurement
    /// of a first sample, or a test).
    pub fn forget_loaded(&mut self) {
        let pattern = "^(fixtures|spare)_[0-9a-f]{16}(_[0-9]+_[0-9]+)?$";
        for name in databases_matching(&mut self.admin, pattern) {
            drop_database(&mut self.admin, &name);
        }
    }

    /// Renames a spare database of the kept-alive cluster (one an earlier command made
    /// while its sample ran) to `name`: the fresh database without the wait for `CREATE
    /// DATABASE`. An empty spare when `key` is `None`, else a copy of the loaded database kept
    /// under `key`. Of two commands after the same spare, the second's rename fails and it
    /// takes the next, or creates one.
    fn claim_spare(&mut self, name: &str, key: Option<&str>) -> bool {
        let pattern = match key {
            None => "^spare_[0-9]+_[0-9]+$".to_string(),
            Some(key) => format!("^spare_{key}_[0-9]+_[0-9]+$"),
        };
        let Ok(rows) = self.admin.query(
            "SELECT datname::text FROM pg_database WHERE datname ~ $1 ORDER BY 1",
            &[&pattern],
        ) else {
            return false;
        };
        rows.iter().any(|row| {
            let spare: String = row.get(0);
            self.admin
                .batch_execute(&format!(
                    "ALTER DATABASE {} RENAME TO {}",
                    quote_ident(&spare),
                    quote_ident(name)
                ))
                .is_ok()
        })
    }

    /// Starts making spare databases for the next command on a connection of its own, while
    /// this command's sample runs; waited for when the command ends. `loaded` is a key and
    /// its kept database, for a copy of it; `empty` asks for an empty one too (`IfNone`: when
    /// the cluster has none left). At most one of each per command. With `evict`, the loaded
    /// databases beyond [`LOADED_KEPT`] are dropped first. Best effort: without a spare, the
    /// next command creates its database itself.
    ///
    /// The server process doing this runs at a low CPU priority while the sample runs: on a
    /// machine of two cores, at full priority it takes a core from the sample it is meant to
    /// speed up. When the command ends and waits for it, it gets its priority back where the
    /// system allows that (as root).
    fn make_spare(&mut self, loaded: Option<(&str, &str)>, empty: Empty, evict: bool) {
        let major = self.server.major();
        let mut jobs = Vec::new();
        if let Some((key, from)) = loaded
            && !self
                .spares
                .iter()
                .any(|s| s.keys.iter().any(|k| k.as_deref() == Some(key)))
        {
            let name = format!("spare_{key}_{}_{}", std::process::id(), next_number());
            jobs.push((
                Some(key.to_string()),
                false,
                create_database(&name, Some(from), major),
            ));
        }
        if empty != Empty::No && !self.spares.iter().any(|s| s.keys.contains(&None)) {
            let name = format!("spare_{}_{}", std::process::id(), next_number());
            jobs.push((
                None,
                empty == Empty::IfNone,
                create_database(&name, None, major),
            ));
        }
        if jobs.is_empty() && !evict {
            return;
        }
        let url = self.server.url("postgres");
        let keys = jobs.iter().map(|(key, _, _)| key.clone()).collect();
        // A copy of the files, as for the command's own database. The default strategy of
        // PostgreSQL 15 copies through the shared buffers and the WAL (8 MB of each for an
        // empty database), and the checkpoint of the command's `DROP DATABASE` then writes
        // those buffers out again: 10-15 ms at the end of every command. The copy's own two
        // checkpoints come while the sample is young (its schema stage), with little of it to
        // write.
        let pid = std::sync::Arc::new(std::sync::atomic::AtomicI32::new(0));
        let backend = pid.clone();
        // The databases this process retires from now on are not this thread's to drop: on a
        // loaded machine it may start late, after this command has retired its own.
        let retired_before = first_number_from_now();
        let thread = std::thread::spawn(move || {
            let Ok(mut client) = postgres::Client::connect(&url, postgres::NoTls) else {
                return;
            };
            if let Ok(row) = client.query_one("SELECT pg_backend_pid()", &[]) {
                let pid = row.get::<_, i32>(0);
                set_priority(pid, SPARE_NICENESS);
                backend.store(pid, std::sync::atomic::Ordering::SeqCst);
            }
            drop_trash(&mut client, major, retired_before);
            if evict {
                evict_loaded(&mut client);
            }
            for (_, if_none, sql) in jobs {
                if !(if_none && has_empty_spare(&mut client)) {
                    let _ = client.batch_execute(&sql);
                }
            }
            backend.store(0, std::sync::atomic::Ordering::SeqCst);
        });
        self.spares.push(Spare { thread, pid, keys });
    }

    /// Drops the last database made. Failing to is harmless: a per-command cluster goes whole
    /// at the end of the command, and the next command on a kept-alive one drops it.
    fn drop_current(&mut self) {
        if let Some(previous) = self.current.take() {
            self.wait_for_sessions(&previous);
            drop_forced(&mut self.admin, &previous, self.server.major());
        }
    }
}

impl LocalCluster {
    /// At the end of a command on the kept-alive cluster: renames the last database made to
    /// `trash_<pid>_<n>`, which a later command drops while its sample runs (with its spares),
    /// instead of dropping it now: a drop takes a checkpoint and the removal of its files, a few
    /// milliseconds of every command, a rename a fraction of one. Dropped now when it cannot be
    /// renamed.
    fn retire_current(&mut self) {
        let Some(current) = self.current.take() else {
            return;
        };
        self.wait_for_sessions(&current);
        let trash = format!("trash_{}_{}", std::process::id(), next_number());
        let renamed = self
            .admin
            .batch_execute(&format!(
                "ALTER DATABASE {} RENAME TO {}",
                quote_ident(&current),
                quote_ident(&trash)
            ))
            .is_ok();
        if !renamed {
            self.current = Some(current);
            self.drop_current();
        }
    }

    /// Waits, up to two seconds, until no session is connected to `database`. A sample's
    /// session closed a moment ago, but its server process may not have exited yet; `DROP
    /// DATABASE` would then sleep a tenth of a second before looking again, and `CREATE
    /// DATABASE` from it would fail. Polling for it costs a millisecond or two.
    fn wait_for_sessions(&mut self, database: &str) {
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline
            && self
                .admin
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = $1",
                    &[&database],
                )
                .is_ok_and(|row| row.get::<_, i64>(0) > 0)
        {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        if matches!(self.server, Server::Warm(_)) {
            self.retire_current();
        }
        for spare in self.spares.drain(..) {
            spare.wait();
        }
    }
}

/// How many loaded databases a kept-alive cluster keeps, the least recently used dropped
/// first: a few sets of inputs (a branch's fixtures and another's, a migration being edited)
/// without letting the cluster grow with every edit.
pub const LOADED_KEPT: usize = 4;

/// The kept loaded database of a key.
pub fn loaded_name(key: &str) -> String {
    format!("fixtures_{key}")
}

/// What a kept loaded database's comment records: what was loaded, and when it was last used
/// (milliseconds since the epoch). Written before the database takes its name, so a kept
/// database always has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Record {
    loaded: Loaded,
    used: u64,
}

impl Record {
    fn parse(text: &str) -> Option<Record> {
        let mut fields = text.split_whitespace().map(|f| f.split_once('='));
        let mut field = |name: &str| -> Option<u64> {
            let (key, value) = fields.next()??;
            (key == name).then(|| value.parse().ok())?
        };
        Some(Record {
            loaded: Loaded {
                tables: field("tables")?,
                rows: field("rows")?,
            },
            used: field("used")?,
        })
    }
}

impl std::fmt::Display for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "tables={} rows={} used={}",
            self.loaded.tables, self.loaded.rows, self.used
        )
    }
}

fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `s` as an SQL string literal.
fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The niceness of the server process making a spare database while a sample runs: low
/// enough to yield to the sample, not so low that a busy machine starves it (the command
/// waits for it when it ends).
const SPARE_NICENESS: i32 = 10;

/// The spare databases being made: the thread that waits for them, and the server process's
/// id while it works (0 before and after).
struct Spare {
    thread: std::thread::JoinHandle<()>,
    pid: std::sync::Arc<std::sync::atomic::AtomicI32>,
    /// The keys of the loaded databases it copies; `None` for an empty one.
    keys: Vec<Option<String>>,
}

/// Whether to make an empty spare database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Empty {
    No,
    Yes,
    /// When the cluster has none.
    IfNone,
}

/// Drops the loaded databases beyond the [`LOADED_KEPT`] used last, and the spare copies of
/// those no longer kept.
fn evict_loaded(client: &mut postgres::Client) {
    let Ok(rows) = client.query(
        "SELECT datname::text, shobj_description(oid, 'pg_database') FROM pg_database
         WHERE datname ~ '^fixtures_[0-9a-f]{16}$'",
        &[],
    ) else {
        return;
    };
    let mut loaded: Vec<(u64, String)> = rows
        .iter()
        .map(|row| {
            let used = row
                .get::<_, Option<String>>(1)
                .as_deref()
                .and_then(Record::parse)
                .map_or(0, |r| r.used);
            (used, row.get(0))
        })
        .collect();
    loaded.sort_by(|a, b| b.cmp(a));
    for (_, name) in loaded.split_off(loaded.len().min(LOADED_KEPT)) {
        drop_database(client, &name);
    }
    let Ok(spares) = client.query(
        "SELECT datname::text FROM pg_database WHERE datname ~ '^spare_[0-9a-f]{16}_[0-9]+_[0-9]+$'",
        &[],
    ) else {
        return;
    };
    for row in spares {
        let spare: String = row.get(0);
        let key = spare.split('_').nth(1).unwrap_or("");
        if !loaded.iter().any(|(_, name)| *name == loaded_name(key)) {
            drop_database(client, &spare);
        }
    }
}

/// Drops the databases earlier commands retired ([`LocalCluster::retire_current`]): those of
/// other processes, and this process's numbered below `before` (what [`first_number_from_now`]
/// gave when the caller started). A command's own database, retired while this runs, stays for
/// the next command, as it would have had this run sooner.
fn drop_trash(client: &mut postgres::Client, major: u32, before: u64) {
    for name in databases_matching(client, "^trash_[0-9]+_[0-9]+$") {
        if !retired_by_this_process_since(&name, before) {
            drop_forced(client, &name, major);
        }
    }
}

/// Whether `trash_<pid>_<n>` is this process's and numbered `before` or later.
fn retired_by_this_process_since(name: &str, before: u64) -> bool {
    let mut parts = name.rsplit('_');
    let number = parts.next().and_then(|n| n.parse::<u64>().ok());
    let pid = parts.next().and_then(|p| p.parse::<u32>().ok());
    pid == Some(std::process::id()) && number.is_some_and(|n| n >= before)
}

/// The databases whose names match the regular expression `pattern`; none when the server
/// cannot be asked (every caller's work is best effort).
fn databases_matching(client: &mut postgres::Client, pattern: &str) -> Vec<String> {
    client
        .query(
            "SELECT datname::text FROM pg_database WHERE datname ~ $1",
            &[&pattern],
        )
        .map(|rows| rows.iter().map(|row| row.get(0)).collect())
        .unwrap_or_default()
}

/// Drops `name`, ending any session still connected to it where the server can (since
/// PostgreSQL 13). Best effort, as every drop here: what fails to go is tried again later.
fn drop_forced(client: &mut postgres::Client, name: &str, major: u32) {
    let force = if major >= 13 { " WITH (FORCE)" } else { "" };
    let _ = client.batch_execute(&format!(
        "DROP DATABASE IF EXISTS {}{force}",
        quote_ident(name)
    ));
}

/// Whether an empty spare database is there for the next command.
fn has_empty_spare(client: &mut postgres::Client) -> bool {
    client
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname ~ '^spare_[0-9]+_[0-9]+$'",
            &[],
        )
        .is_ok_and(|row| row.get::<_, i64>(0) > 0)
}

/// Drops a database nobody uses. Failing to is harmless: the next eviction tries again.
fn drop_database(client: &mut postgres::Client, name: &str) {
    let _ = client.batch_execute(&format!("DROP DATABASE IF EXISTS {}", quote_ident(name)));
}

impl Spare {
    /// Waits for the spare database, at the normal priority where the system allows it.
    fn wait(self) {
        let pid = self.pid.load(std::sync::atomic::Ordering::SeqCst);
        if pid != 0 {
            set_priority(pid, 0);
        }
        let _ = self.thread.join();
    }
}

/// Sets the niceness of the server process `pid` (one of the private cluster's, run by this
/// user or, when this process is root, by `postgres`). Best effort: raising a priority needs
/// root, and the process may be gone.
fn set_priority(pid: i32, niceness: i32) {
    #[cfg(unix)]
    if let Ok(pid) = libc::id_t::try_from(pid) {
        // SAFETY: setpriority only reads its integer arguments.
        unsafe {
            libc::setpriority(libc::PRIO_PROCESS, pid, niceness);
        }
    }
    #[cfg(not(unix))]
    let _ = (pid, niceness);
}

/// A number no other database of this process on a kept-alive cluster has (a process may
/// sample on it from several threads).
fn next_number() -> u64 {
    NEXT_NUMBER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// The next number [`next_number`] gives: every database this process names from now on has
/// this number or a higher one.
fn first_number_from_now() -> u64 {
    NEXT_NUMBER.load(std::sync::atomic::Ordering::Relaxed)
}

static NEXT_NUMBER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// `CREATE DATABASE name`, a copy of `template` (else of the default template), as a copy of
/// its files where the server can (since PostgreSQL 15, whose default WAL-logs each block:
/// slower, and the cluster's durability is off anyway).
fn create_database(name: &str, template: Option<&str>, major: u32) -> String {
    let template = template
        .map(|t| format!(" TEMPLATE {}", quote_ident(t)))
        .unwrap_or_default();
    let strategy = if major >= 15 {
        " STRATEGY = FILE_COPY"
    } else {
        ""
    };
    format!("CREATE DATABASE {}{template}{strategy}", quote_ident(name))
}

/// Drops the sample databases of a kept-alive cluster whose command is gone (killed before it
/// could drop its own): `sample_<pid>_<n>` with no process `pid`, and the loaded databases it
/// was keeping, `fixtures_new_<pid>_<n>`.
fn drop_abandoned(admin: &mut postgres::Client, major: u32) {
    for name in databases_matching(admin, "^(sample|fixtures_new)_[0-9]+_[0-9]+$") {
        let pid = name.rsplit('_').nth(1).and_then(|p| p.parse::<i64>().ok());
        if pid.is_some_and(|pid| pid != i64::from(std::process::id()) && !cluster::alive(pid)) {
            drop_forced(admin, &name, major);
        }
    }
}

/// `sample-keep-alive` from the configuration, else [`DEFAULT_KEEP_ALIVE`].
pub fn configured_keep_alive(config: &Config) -> Result<Duration> {
    let Some(text) = &config.sample_keep_alive else {
        return Ok(DEFAULT_KEEP_ALIVE);
    };
    parse_duration(text).map_err(|e| {
        Error::file(
            ErrorKind::Format,
            &config.root.join("Cargo.toml"),
            format!("[workspace.metadata.{METADATA_KEY}] sample-keep-alive: {e}"),
        )
    })
}

/// Which engine to use, before anything is started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// Never [`SampleEngine::Auto`].
    pub engine: SampleEngine,
    /// The server binaries, for `postgres-local`.
    pub bin: Option<PathBuf>,
    /// A line to print first (why `auto` chose SQLite).
    pub note: Option<String>,
}

/// The message when `postgres-local` finds no server binaries.
fn no_binaries(looked: &[String]) -> String {
    format!(
        "no PostgreSQL server binaries found (looked in {}): install PostgreSQL (e.g. apt-get install postgresql-15) or set postgres-bin-dir in [workspace.metadata.{METADATA_KEY}]",
        looked.join(", ")
    )
}

/// Decides the engine: `requested` (`--engine`) over the config's `sample-engine`; a database
/// URL means `postgres-url`. `find` looks for the server binaries (given `postgres-bin-dir`),
/// only when `postgres-local` is wanted or `auto` must decide.
pub fn choose(
    requested: Option<SampleEngine>,
    config: &Config,
    database_url: Option<&str>,
    find: impl FnOnce(Option<&Path>) -> std::result::Result<PathBuf, Vec<String>>,
) -> Result<Choice> {
    let usage = |message: String| Error::new(ErrorKind::Database, message);
    let engine = match (requested, database_url) {
        (None | Some(SampleEngine::PostgresUrl), Some(_)) => SampleEngine::PostgresUrl,
        (Some(other), Some(_)) => {
            return Err(usage(format!(
                "--database-url samples on a throwaway schema of that server (engine postgres-url), not on {other}: drop one of --database-url and --engine {other}"
            )));
        }
        (Some(engine), None) => engine,
        (None, None) => config.sample_engine,
    };
    let choice = |engine, bin, note| Choice { engine, bin, note };
    match engine {
        SampleEngine::Sqlite => Ok(choice(SampleEngine::Sqlite, None, None)),
        SampleEngine::PostgresUrl if database_url.is_none() => Err(usage(format!(
            "sample-engine postgres-url samples on a throwaway schema of a server you give: pass --database-url postgres://..., or choose another engine (--engine postgres-local, --engine sqlite, or sample-engine in [workspace.metadata.{METADATA_KEY}])"
        ))),
        SampleEngine::PostgresUrl => Ok(choice(SampleEngine::PostgresUrl, None, None)),
        SampleEngine::PostgresLocal => match find(config.postgres_bin_dir.as_deref()) {
            Ok(bin) => Ok(choice(SampleEngine::PostgresLocal, Some(bin), None)),
            Err(looked) => Err(usage(no_binaries(&looked))),
        },
        SampleEngine::Auto if config.dialect == Dialect::Sqlite => {
            Ok(choice(SampleEngine::Sqlite, None, None))
        }
        SampleEngine::Auto => match find(config.postgres_bin_dir.as_deref()) {
            Ok(bin) => Ok(choice(SampleEngine::PostgresLocal, Some(bin), None)),
            // A configured directory without binaries is a mistake to fix, not to work around.
            Err(looked) if config.postgres_bin_dir.is_some() => Err(usage(no_binaries(&looked))),
            Err(looked) => Ok(choice(
                SampleEngine::Sqlite,
                None,
                Some(format!(
                    "note: sampling on SQLite: no PostgreSQL server binaries found for a private cluster (looked in {}); install PostgreSQL to sample on it, or set sample-engine = \"sqlite\" in [workspace.metadata.{METADATA_KEY}]",
                    looked.join(", ")
                )),
            )),
        },
    }
}

impl Engine {
    /// Chooses the engine (see [`choose`]) and starts it; prints the note of an `auto` that fell
    /// back to SQLite.
    ///
    /// `keep_alive` (`--keep-alive`) overrides the configuration's `sample-keep-alive`.
    pub fn open(
        config: &Config,
        requested: Option<SampleEngine>,
        database_url: Option<String>,
        keep_alive: Option<Duration>,
        out: &mut dyn Write,
    ) -> Result<Engine> {
        let keep_alive = match keep_alive {
            Some(keep_alive) => keep_alive,
            None => configured_keep_alive(config)?,
        };
        let choice = choose(
            requested,
            config,
            database_url.as_deref(),
            cluster::find_binaries,
        )?;
        if let Some(note) = &choice.note {
            let _ = writeln!(out, "{note}");
        }
        match (choice.engine, choice.bin, database_url) {
            (SampleEngine::PostgresUrl, _, Some(url)) => {
                if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                    return Err(Error::new(
                        ErrorKind::Database,
                        format!(
                            "--database-url must be a postgres:// URL, got `{}`",
                            redact_url(&url)
                        ),
                    ));
                }
                Ok(Engine::PostgresUrl(url))
            }
            (SampleEngine::PostgresLocal, Some(bin), _) => Ok(Engine::PostgresLocal(Box::new(
                LocalCluster::start(&bin, keep_alive)?,
            ))),
            _ => Ok(Engine::Sqlite),
        }
    }

    /// The engine's name, as snapshots record it.
    pub fn kind(&self) -> SampleEngine {
        match self {
            Engine::Sqlite => SampleEngine::Sqlite,
            Engine::PostgresLocal(_) => SampleEngine::PostgresLocal,
            Engine::PostgresUrl(_) => SampleEngine::PostgresUrl,
        }
    }
}

/// A schema migration's error with the engine it failed on; on SQLite, when the failing
/// statement is PostgreSQL-only, also how to sample on PostgreSQL instead. Other errors are
/// returned as they are.
pub fn explain(error: Error, engine: SampleEngine, config: &Config, inputs: &Inputs) -> Error {
    let Some(path) = error.path.clone() else {
        return error;
    };
    if error.kind != ErrorKind::Schema || path.parent() != Some(config.migrations.as_path()) {
        return error;
    }
    let mut message = format!("{} (engine: {engine})", error.message);
    if engine == SampleEngine::Sqlite {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let sql = inputs
            .migrations
            .iter()
            .find(|m| format!("{m}.sql") == name)
            .and_then(|m| m.sql());
        if let Some(found) = sql.and_then(|sql| postgres_only(sql, error.line)) {
            // Without SQLite's line, every statement was searched: say where the construct is.
            let place = match error.line {
                Some(_) => String::new(),
                None => format!(" (line {})", found.line),
            };
            message.push_str(&format!(
                ": {}{place} is PostgreSQL-only, and SQLite cannot run it; sample on PostgreSQL: set sample-engine = \"postgres-local\" in [workspace.metadata.{METADATA_KEY}] or pass --engine postgres-local",
                found.what
            ));
        }
    }
    Error { message, ..error }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(meta: serde_json::Value) -> Config {
        Config::from_metadata(Path::new("/ws"), &serde_json::json!({ METADATA_KEY: meta })).unwrap()
    }

    fn found(_: Option<&Path>) -> std::result::Result<PathBuf, Vec<String>> {
        Ok(PathBuf::from("/pg/bin"))
    }

    fn missing(configured: Option<&Path>) -> std::result::Result<PathBuf, Vec<String>> {
        Err(match configured {
            Some(dir) => vec![dir.display().to_string()],
            None => vec![
                "pg_config --bindir (no pg_config)".into(),
                "/usr/lib/postgresql/*/bin".into(),
            ],
        })
    }

    /// A spare thread that starts late leaves the databases its own process retired since it
    /// was started, and drops every other one.
    #[test]
    fn only_this_process_s_later_trash_is_left_to_the_next_command() {
        let me = std::process::id();
        let other = me.wrapping_add(1);
        let before = first_number_from_now();
        let later = format!("trash_{me}_{before}");
        let earlier = format!("trash_{me}_{}", before - 1);
        assert!(retired_by_this_process_since(&later, before));
        assert!(!retired_by_this_process_since(&earlier, before));
        assert!(!retired_by_this_process_since(
            &format!("trash_{other}_{before}"),
            before
        ));
        assert!(!retired_by_this_process_since("trash_x_1", before));
    }

    #[test]
    fn a_kept_database_s_record_reads_back_and_a_foreign_comment_is_none() {
        let record = Record {
            loaded: Loaded {
                tables: 3,
                rows: 13_824,
            },
            used: 1_764_748_800_000,
        };
        assert_eq!(record.to_string(), "tables=3 rows=13824 used=1764748800000");
        assert_eq!(Record::parse(&record.to_string()), Some(record));
        for other in [
            "",
            "tables=3 rows=13824",
            "rows=1 tables=3 used=2",
            "a comment",
        ] {
            assert_eq!(Record::parse(other), None, "{other}");
        }
        assert_eq!(loaded_name("0123456789abcdef"), "fixtures_0123456789abcdef");
    }

    #[test]
    fn auto_follows_the_dialect_and_the_machine() {
        let postgres = config(serde_json::json!({}));
        let chosen = choose(None, &postgres, None, found).unwrap();
        assert_eq!(chosen.engine, SampleEngine::PostgresLocal);
        assert_eq!(chosen.bin.as_deref(), Some(Path::new("/pg/bin")));
        assert_eq!(chosen.note, None);

        let chosen = choose(None, &postgres, None, missing).unwrap();
        assert_eq!(chosen.engine, SampleEngine::Sqlite);
        let note = chosen.note.unwrap();
        assert!(
            note.starts_with("note: sampling on SQLite: no PostgreSQL server binaries found for a private cluster (looked in pg_config --bindir (no pg_config), /usr/lib/postgresql/*/bin)"),
            "{note}"
        );

        let sqlite = config(serde_json::json!({ "dialect": "sqlite" }));
        let chosen = choose(None, &sqlite, None, |_| panic!("not looked for")).unwrap();
        assert_eq!(
            chosen,
            Choice {
                engine: SampleEngine::Sqlite,
                bin: None,
                note: None
            }
        );

        // A configured directory without binaries is an error, not a fallback.
        let configured = config(serde_json::json!({ "postgres-bin-dir": "/opt/pg" }));
        let e = choose(None, &configured, None, missing).unwrap_err();
        assert_eq!(
            e.message,
            "no PostgreSQL server binaries found (looked in /opt/pg): install PostgreSQL (e.g. apt-get install postgresql-15) or set postgres-bin-dir in [workspace.metadata.xtask-migrate]"
        );
    }

    #[test]
    fn the_flag_overrides_the_config_and_a_url_means_postgres_url() {
        let local = config(serde_json::json!({ "sample-engine": "postgres-local" }));
        assert_eq!(
            choose(None, &local, None, found).unwrap().engine,
            SampleEngine::PostgresLocal
        );
        assert_eq!(
            choose(Some(SampleEngine::Sqlite), &local, None, found)
                .unwrap()
                .engine,
            SampleEngine::Sqlite
        );
        assert_eq!(
            choose(None, &local, Some("postgres://h/db"), found)
                .unwrap()
                .engine,
            SampleEngine::PostgresUrl
        );
        let e = choose(None, &local, None, missing).unwrap_err();
        assert!(
            e.message
                .starts_with("no PostgreSQL server binaries found (looked in pg_config --bindir"),
            "{e}"
        );
        let e = choose(
            Some(SampleEngine::Sqlite),
            &local,
            Some("postgres://h/db"),
            found,
        )
        .unwrap_err();
        assert!(
            e.message
                .starts_with("--database-url samples on a throwaway schema"),
            "{e}"
        );
        let url = config(serde_json::json!({ "sample-engine": "postgres-url" }));
        let e = choose(None, &url, None, found).unwrap_err();
        assert!(e.message.contains("pass --database-url"), "{e}");
    }
}
