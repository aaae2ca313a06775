//! The database a production run targets, from `--database-url`: PostgreSQL (`postgres://...`
//! or a `key=value` connection string) or a SQLite file (`sqlite:///path/app.db`, `sqlite:path`
//! or a plain path).
//!
//! Credentials never leave this module: what is shown, logged, or written into a plan or a
//! tracking row is [`TargetInfo`] (dialect, host, port, database name), and [`Target::scrub`]
//! removes the password from any text that might have picked it up (a driver's error message).

use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::sql::Dialect;

/// A parsed `--database-url`. Its `Debug` output hides the URL.
#[derive(Clone)]
pub enum Target {
    Postgres { url: String },
    Sqlite { path: PathBuf },
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Target({})", self.info().describe())
    }
}

/// Where a run goes, safe to print and store: never a user name or a password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetInfo {
    pub dialect: Dialect,
    /// Host name, address or unix socket directory (PostgreSQL).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Database name (PostgreSQL) or file path (SQLite).
    pub database: String,
}

impl TargetInfo {
    pub fn describe(&self) -> String {
        match self.dialect {
            Dialect::Postgres => format!(
                "PostgreSQL {}:{}/{}",
                self.host.as_deref().unwrap_or("localhost"),
                self.port.unwrap_or(5432),
                self.database
            ),
            Dialect::Sqlite => format!("SQLite {}", self.database),
        }
    }
}

impl Target {
    pub fn parse(url: &str) -> Result<Target, String> {
        let url = url.trim();
        if url.is_empty() {
            return Err("the database URL is empty".into());
        }
        if let Some(rest) = url.strip_prefix("sqlite:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if path.is_empty() {
                return Err("`sqlite:` needs a path, e.g. sqlite:///srv/app.db".into());
            }
            return Ok(Target::Sqlite { path: path.into() });
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") || url.contains('=') {
            // A password with an unencoded `@` parses, but as a wrong host: say so before
            // anything tries to connect, without quoting the URL.
            if let Some(message) = super::postgres::unencoded_at(url) {
                return Err(message);
            }
            // Parse now, so a malformed URL is reported before anything runs; the driver's
            // message names the faulty part, never echoes the whole string (still scrubbed).
            let target = Target::Postgres {
                url: url.to_string(),
            };
            if let Some(password) = target.password() {
                crate::secrets::register(&password);
            }
            postgres::Config::from_str(url)
                .map_err(|e| target.scrub(&format!("not a PostgreSQL connection string: {e}")))?;
            return Ok(target);
        }
        if url.contains("://") {
            return Err(format!(
                "unsupported database URL scheme `{}`: use postgres://, postgresql:// or sqlite://",
                url.split("://").next().unwrap_or("")
            ));
        }
        Ok(Target::Sqlite { path: url.into() })
    }

    pub fn dialect(&self) -> Dialect {
        match self {
            Target::Postgres { .. } => Dialect::Postgres,
            Target::Sqlite { .. } => Dialect::Sqlite,
        }
    }

    pub fn info(&self) -> TargetInfo {
        match self {
            Target::Sqlite { path } => TargetInfo {
                dialect: Dialect::Sqlite,
                host: None,
                port: None,
                database: path.display().to_string(),
            },
            Target::Postgres { url } => {
                let config = postgres::Config::from_str(url).ok();
                let host = config.as_ref().and_then(|c| {
                    c.get_hosts().first().map(|h| match h {
                        postgres::config::Host::Tcp(name) => name.clone(),
                        #[cfg(unix)]
                        postgres::config::Host::Unix(dir) => dir.display().to_string(),
                    })
                });
                let port = config.as_ref().and_then(|c| c.get_ports().first().copied());
                // Without a database name the server picks the user's: not shown either.
                let database = config
                    .as_ref()
                    .and_then(|c| c.get_dbname().map(str::to_string))
                    .unwrap_or_else(|| "(the user's default database)".into());
                TargetInfo {
                    dialect: Dialect::Postgres,
                    host,
                    port,
                    database,
                }
            }
        }
    }

    /// The password in the URL, if any (to remove it from messages).
    fn password(&self) -> Option<String> {
        let Target::Postgres { url } = self else {
            return None;
        };
        let from_config = postgres::Config::from_str(url).ok().and_then(|c| {
            c.get_password()
                .map(|p| String::from_utf8_lossy(p).into_owned())
        });
        from_config.or_else(|| {
            // Unparsable URL: take the userinfo's password by hand.
            let rest = url.split_once("://")?.1;
            let authority = rest.split(['/', '?']).next()?;
            let userinfo = authority.rsplit_once('@')?.0;
            Some(userinfo.split_once(':')?.1.to_string())
        })
    }

    /// `text` with the password (raw and percent-encoded) replaced by `***`.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        if let Some(password) = self.password().filter(|p| !p.is_empty()) {
            out = out.replace(&password, "***");
            let encoded = crate::secrets::percent_encode(&password);
            if encoded != password {
                out = out.replace(&encoded, "***");
            }
        }
        if let Target::Postgres { url } = self {
            out = out.replace(url.as_str(), &super::postgres::redact_url(url));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_both_dialects() {
        for (url, dialect) in [
            ("postgres://u:p@db:5433/app", Dialect::Postgres),
            ("postgresql://db/app", Dialect::Postgres),
            ("host=db dbname=app password=x", Dialect::Postgres),
            ("sqlite:///srv/app.db", Dialect::Sqlite),
            ("sqlite:app.db", Dialect::Sqlite),
            ("./app.db", Dialect::Sqlite),
        ] {
            assert_eq!(Target::parse(url).unwrap().dialect(), dialect, "{url}");
        }
        match Target::parse("sqlite:///srv/app.db").unwrap() {
            Target::Sqlite { path } => assert_eq!(path, PathBuf::from("/srv/app.db")),
            other => panic!("{other:?}"),
        }
        assert!(Target::parse("mysql://db/app").is_err());
        assert!(Target::parse("  ").is_err());
        assert!(Target::parse("sqlite:").is_err());
    }

    #[test]
    fn info_has_no_credentials() {
        let t =
            Target::parse("postgres://app:s3cr%40t@db.internal:6432/prod?sslmode=disable").unwrap();
        let info = t.info();
        assert_eq!(
            info,
            TargetInfo {
                dialect: Dialect::Postgres,
                host: Some("db.internal".into()),
                port: Some(6432),
                database: "prod".into()
            }
        );
        let json = serde_json::to_string(&info).unwrap();
        assert!(!json.contains("s3cr") && !json.contains("app:"), "{json}");
        assert!(!format!("{t:?}").contains("s3cr"));
        assert_eq!(info.describe(), "PostgreSQL db.internal:6432/prod");
        let info = Target::parse("postgres://alice@db").unwrap().info();
        assert!(!info.database.contains("alice"), "{info:?}");
    }

    #[test]
    fn a_password_with_an_unencoded_at_is_refused_without_showing_it() {
        let e = Target::parse("postgres://app:p@ss@db/prod").unwrap_err();
        assert!(
            e.starts_with("the database URL has more than one `@` before its host"),
            "{e}"
        );
        assert!(e.contains("write each `@` in it as `%40`"), "{e}");
        assert!(
            !e.contains("p@ss") && !e.contains("ss@") && !e.contains('\n'),
            "{e}"
        );
        // Encoded, it is the password it was meant to be.
        let t = Target::parse("postgres://app:p%40ss@db/prod").unwrap();
        assert_eq!(t.info().host.as_deref(), Some("db"));
        assert_eq!(t.scrub("p@ss"), "***");
    }

    #[test]
    fn scrub_removes_the_password_in_every_spelling() {
        let t = Target::parse("postgres://app:s3cr%40t@db/prod").unwrap();
        assert_eq!(
            t.scrub("auth failed for s3cr@t and s3cr%40t"),
            "auth failed for *** and ***"
        );
        let t = Target::parse("host=db password=hunter2 dbname=x").unwrap();
        assert_eq!(t.scrub("oops hunter2"), "oops ***");
        let t = Target::parse("postgres://db/prod").unwrap();
        assert_eq!(t.scrub("nothing to hide"), "nothing to hide");
    }
}
