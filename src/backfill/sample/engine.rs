//! The engines a sample runs on, and which one a command uses.
//!
//! - `sqlite`: a temporary SQLite database per data migration (embedded, nothing to install).
//! - `postgres-local`: one private PostgreSQL cluster per command, started from the machine's
//!   server binaries ([`crate::backfill::db::cluster`]), with a fresh database per data
//!   migration; stopped and removed when the command ends, however it ends.
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
use crate::backfill::error::{Error, ErrorKind, Result};
use crate::backfill::sample::Inputs;
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
    /// How long starting the cluster took, reported with the first data migration.
    startup: Option<Duration>,
    /// Declared last: stopped and removed after the admin connection is closed.
    cluster: Cluster,
}

/// A fresh database of the private cluster, for one data migration.
pub struct LocalDatabase {
    pub url: String,
    pub name: String,
    /// Starting the cluster (first database only) and creating the database.
    pub elapsed: Duration,
    pub started_cluster: bool,
}

impl LocalCluster {
    /// Starts a private cluster from the binaries in `bin`.
    pub fn start(bin: &Path) -> Result<LocalCluster> {
        let started = Instant::now();
        let cluster = Cluster::start(bin)?;
        let admin =
            postgres::Client::connect(&cluster.url("postgres"), postgres::NoTls).map_err(|e| {
                Error::new(
                    ErrorKind::Database,
                    format!("cannot connect to the private PostgreSQL cluster: {e}"),
                )
            })?;
        Ok(LocalCluster {
            admin,
            databases: 0,
            startup: Some(started.elapsed()),
            cluster,
        })
    }

    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// Creates a new, empty database and returns it. The previous one, whose sample is over and
    /// its connection closed, is dropped first, so a long command does not fill the disk; the
    /// last one goes with the cluster (dropping a database costs a checkpoint).
    pub fn create_database(&mut self) -> Result<LocalDatabase> {
        let started = Instant::now();
        if self.databases > 0 {
            let previous = format!("sample_{}", self.databases);
            // Failing to drop it is harmless: the whole cluster goes at the end of the command.
            let _ = self.admin.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {}",
                quote_ident(&previous)
            ));
        }
        self.databases += 1;
        let name = format!("sample_{}", self.databases);
        self.admin
            .batch_execute(&format!("CREATE DATABASE {}", quote_ident(&name)))
            .map_err(|e| {
                Error::new(
                    ErrorKind::Database,
                    format!("cannot create a database in the private PostgreSQL cluster: {e}"),
                )
            })?;
        let startup = self.startup.take();
        Ok(LocalDatabase {
            url: self.cluster.url(&name),
            elapsed: started.elapsed() + startup.unwrap_or_default(),
            started_cluster: startup.is_some(),
            name,
        })
    }
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
    pub fn open(
        config: &Config,
        requested: Option<SampleEngine>,
        database_url: Option<String>,
        out: &mut dyn Write,
    ) -> Result<Engine> {
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
            (SampleEngine::PostgresLocal, Some(bin), _) => {
                Ok(Engine::PostgresLocal(Box::new(LocalCluster::start(&bin)?)))
            }
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
