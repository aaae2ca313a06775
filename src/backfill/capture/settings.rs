//! What `backfill capture` samples and how it scrubs: `[workspace.metadata.xtask-migrate.capture]`
//! in the workspace's `Cargo.toml`, with command-line flags applied over it.
//!
//! ```toml
//! [workspace.metadata.xtask-migrate.capture]
//! seed = 1                          # the fraction's hash seed: same seed, same rows
//! schema = "public"                 # default: the connection's current schema
//! statement-timeout-ms = 60000      # each statement of the capture (default 60 s)
//! hmac-key-env = "XTASK_CAPTURE_HMAC_KEY"   # where the `hmac` policy's key is read
//!
//! [[workspace.metadata.xtask-migrate.capture.roots]]
//! table = "users"
//! fraction = 0.01                   # deterministic: md5(seed, key) below the fraction
//! where = "created_at >= '2024-01-01'"  # optional predicate (SQL of the source)
//! limit = 5000                      # at most this many roots (lowest hashes first)
//!
//! [[workspace.metadata.xtask-migrate.capture.children]]
//! table = "posts"                   # rows of posts whose author is a sampled user
//! parent = "users"
//! via = ["author_id"]               # the foreign key's columns (needed when several lead there)
//! per-parent = 10                   # at most 10 posts per user
//!
//! [workspace.metadata.xtask-migrate.capture.columns]
//! "users.email" = "fake:email"      # keep | null | fake:KIND | hmac | constant:VALUE
//! ```
//!
//! Names are checked against the source's catalog before anything is read
//! ([`super::Capture`]); here only the shape is.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::backfill::error::{Error, ErrorKind, Result};
use crate::config::{Config, METADATA_KEY};

/// The environment variable the `hmac` policy's key is read from unless configured otherwise.
pub const DEFAULT_HMAC_KEY_ENV: &str = "XTASK_CAPTURE_HMAC_KEY";

/// The default `statement_timeout` of every statement a capture runs on the source.
pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct RawCapture {
    seed: Option<u64>,
    schema: Option<String>,
    statement_timeout_ms: Option<u64>,
    hmac_key_env: Option<String>,
    #[serde(default)]
    roots: Vec<Root>,
    #[serde(default)]
    children: Vec<ChildRelation>,
    #[serde(default)]
    columns: BTreeMap<String, String>,
}

/// A table whose rows are sampled directly.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Root {
    pub table: String,
    /// Keep a row when the md5 of the seed and its key falls below this fraction of the hash
    /// space: the same rows on every capture, whatever the physical order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fraction: Option<f64>,
    /// A predicate in the source's SQL, ANDed with the fraction.
    #[serde(default, rename = "where", skip_serializing_if = "Option::is_none")]
    pub predicate: Option<String>,
    /// At most this many roots: those with the lowest hashes, so a cap is a sample too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
}

/// Children of sampled rows: rows of `table` referencing a sampled row of `parent`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ChildRelation {
    pub table: String,
    pub parent: String,
    /// The foreign key's columns in `table` (default: its only foreign key to `parent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<Vec<String>>,
    /// At most this many children per parent row (lowest hashes of their keys first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_parent: Option<u64>,
}

/// What happens to a column's values on the way out. NULL stays NULL under every policy but
/// `null` (which NULLs are there is often what breaks a backfill).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Policy {
    Keep,
    Null,
    Fake(FakeKind),
    /// HMAC-SHA-256 with the key from the environment, hex: equal inputs stay equal (joins
    /// hold), nothing is reversible without the key.
    Hmac,
    Constant(String),
}

/// The kinds of deterministic fake values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FakeKind {
    Email,
    Name,
    Username,
    Phone,
    Address,
    Ip,
    /// Free text of the same length (in characters).
    Text,
}

impl FakeKind {
    pub const ALL: [FakeKind; 7] = [
        FakeKind::Email,
        FakeKind::Name,
        FakeKind::Username,
        FakeKind::Phone,
        FakeKind::Address,
        FakeKind::Ip,
        FakeKind::Text,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FakeKind::Email => "email",
            FakeKind::Name => "name",
            FakeKind::Username => "username",
            FakeKind::Phone => "phone",
            FakeKind::Address => "address",
            FakeKind::Ip => "ip",
            FakeKind::Text => "text",
        }
    }
}

impl Policy {
    pub fn parse(text: &str) -> std::result::Result<Policy, String> {
        let text = text.trim();
        match text {
            "keep" => return Ok(Policy::Keep),
            "null" => return Ok(Policy::Null),
            "hmac" => return Ok(Policy::Hmac),
            _ => {}
        }
        if let Some(kind) = text.strip_prefix("fake:") {
            return FakeKind::ALL
                .into_iter()
                .find(|k| k.name() == kind)
                .map(Policy::Fake)
                .ok_or_else(|| {
                    let kinds: Vec<&str> = FakeKind::ALL.iter().map(|k| k.name()).collect();
                    format!("unknown fake kind `{kind}` (kinds: {})", kinds.join(", "))
                });
        }
        if let Some(value) = text.strip_prefix("constant:") {
            return Ok(Policy::Constant(value.to_string()));
        }
        Err(format!(
            "unknown policy `{text}`: keep, null, fake:KIND, hmac or constant:VALUE"
        ))
    }
}

impl std::fmt::Display for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Policy::Keep => f.write_str("keep"),
            Policy::Null => f.write_str("null"),
            Policy::Hmac => f.write_str("hmac"),
            Policy::Fake(kind) => write!(f, "fake:{}", kind.name()),
            // The constant is not personal (it replaces the value), but need not be shown whole.
            Policy::Constant(_) => f.write_str("constant"),
        }
    }
}

/// The resolved settings of one capture.
#[derive(Debug, Clone, PartialEq)]
pub struct CaptureSettings {
    pub seed: u64,
    pub schema: Option<String>,
    pub statement_timeout: Duration,
    pub hmac_key_env: String,
    pub roots: Vec<Root>,
    pub children: Vec<ChildRelation>,
    /// `(table, column)` -> policy.
    pub columns: BTreeMap<(String, String), Policy>,
}

/// Command-line values that replace the configured ones.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    pub seed: Option<u64>,
    /// Replace the configured roots with these tables (each with `fraction` and `limit`).
    pub roots: Vec<String>,
    /// Every root's fraction.
    pub fraction: Option<f64>,
    /// Every root's cap.
    pub limit: Option<u64>,
    pub statement_timeout: Option<Duration>,
}

impl CaptureSettings {
    /// Reads the config's capture table and applies `overrides`. Errors name `Cargo.toml`.
    pub fn resolve(config: &Config, overrides: &Overrides) -> Result<CaptureSettings> {
        let manifest = config.root.join("Cargo.toml");
        let raw = match &config.capture {
            None => RawCapture::default(),
            Some(value) => RawCapture::deserialize(value)
                .map_err(|e| config_error(&manifest, format!("{e}")))?,
        };
        let mut roots = raw.roots;
        if !overrides.roots.is_empty() {
            roots = overrides
                .roots
                .iter()
                .map(|table| Root {
                    table: table.clone(),
                    fraction: None,
                    predicate: None,
                    limit: None,
                })
                .collect();
        }
        for root in &mut roots {
            if overrides.fraction.is_some() {
                root.fraction = overrides.fraction;
            }
            if overrides.limit.is_some() {
                root.limit = overrides.limit;
            }
        }
        if roots.is_empty() {
            return Err(config_error(
                &manifest,
                "no root table to sample: add `roots = [{ table = \"users\", fraction = 0.01 }]` or pass --root TABLE".into(),
            ));
        }
        for root in &roots {
            if let Some(f) = root.fraction
                && !(f > 0.0 && f <= 1.0)
            {
                return Err(config_error(
                    &manifest,
                    format!("root `{}`: fraction {f} is not in (0, 1]", root.table),
                ));
            }
            if root.fraction.is_none() && root.predicate.is_none() && root.limit.is_none() {
                return Err(config_error(
                    &manifest,
                    format!(
                        "root `{}` has no fraction, `where` or limit: it would capture the whole table (say fraction = 1.0 if that is meant)",
                        root.table
                    ),
                ));
            }
        }
        let mut columns = BTreeMap::new();
        for (name, policy) in raw.columns {
            let Some((table, column)) = name.split_once('.') else {
                return Err(config_error(
                    &manifest,
                    format!("columns: `{name}` is not `table.column`"),
                ));
            };
            let policy = Policy::parse(&policy)
                .map_err(|e| config_error(&manifest, format!("columns: `{name}`: {e}")))?;
            columns.insert((table.to_string(), column.to_string()), policy);
        }
        Ok(CaptureSettings {
            seed: overrides.seed.or(raw.seed).unwrap_or(0),
            schema: raw.schema,
            statement_timeout: overrides
                .statement_timeout
                .or(raw.statement_timeout_ms.map(Duration::from_millis))
                .unwrap_or(DEFAULT_STATEMENT_TIMEOUT),
            hmac_key_env: raw
                .hmac_key_env
                .unwrap_or_else(|| DEFAULT_HMAC_KEY_ENV.to_string()),
            roots,
            children: raw.children,
            columns,
        })
    }
}

/// An error in the capture table of `manifest`.
pub fn config_error(manifest: &Path, message: String) -> Error {
    Error::file(
        ErrorKind::Format,
        manifest,
        format!("[workspace.metadata.{METADATA_KEY}.capture]: {message}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(capture: serde_json::Value) -> Config {
        let meta = serde_json::json!({ METADATA_KEY: { "capture": capture } });
        Config::from_metadata(Path::new("/ws"), &meta).unwrap()
    }

    #[test]
    fn reads_the_table_and_applies_flags() {
        let config = config(serde_json::json!({
            "seed": 7,
            "statement-timeout-ms": 1500,
            "roots": [{ "table": "users", "fraction": 0.5, "where": "id > 3", "limit": 10 }],
            "children": [{ "table": "posts", "parent": "users", "per-parent": 2 }],
            "columns": { "users.email": "fake:email", "users.secret": "hmac", "users.x": "constant:a:b" },
        }));
        let s = CaptureSettings::resolve(&config, &Overrides::default()).unwrap();
        assert_eq!(s.seed, 7);
        assert_eq!(s.statement_timeout, Duration::from_millis(1500));
        assert_eq!(s.roots[0].predicate.as_deref(), Some("id > 3"));
        assert_eq!(s.children[0].per_parent, Some(2));
        assert_eq!(
            s.columns[&("users".to_string(), "email".to_string())],
            Policy::Fake(FakeKind::Email)
        );
        assert_eq!(
            s.columns[&("users".to_string(), "x".to_string())],
            Policy::Constant("a:b".into())
        );
        let s = CaptureSettings::resolve(
            &config,
            &Overrides {
                seed: Some(9),
                roots: vec!["accounts".into()],
                fraction: Some(0.25),
                ..Overrides::default()
            },
        )
        .unwrap();
        assert_eq!(s.seed, 9);
        assert_eq!(
            s.roots,
            vec![Root {
                table: "accounts".into(),
                fraction: Some(0.25),
                predicate: None,
                limit: None
            }]
        );
    }

    #[test]
    fn mistakes_are_one_line_errors_naming_the_manifest() {
        for (capture, expected) in [
            (serde_json::json!({ "rootz": [] }), "unknown field `rootz`"),
            (serde_json::json!({}), "no root table to sample"),
            (
                serde_json::json!({ "roots": [{ "table": "users" }] }),
                "would capture the whole table",
            ),
            (
                serde_json::json!({ "roots": [{ "table": "users", "fraction": 2.0 }] }),
                "fraction 2 is not in (0, 1]",
            ),
            (
                serde_json::json!({ "roots": [{ "table": "u", "limit": 1 }], "columns": { "email": "keep" } }),
                "`email` is not `table.column`",
            ),
            (
                serde_json::json!({ "roots": [{ "table": "u", "limit": 1 }], "columns": { "u.email": "fake:mail" } }),
                "unknown fake kind `mail` (kinds: email, name, username, phone, address, ip, text)",
            ),
            (
                serde_json::json!({ "roots": [{ "table": "u", "limit": 1 }], "columns": { "u.email": "drop" } }),
                "unknown policy `drop`",
            ),
        ] {
            let e = CaptureSettings::resolve(&config(capture), &Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with("/ws/Cargo.toml: [workspace.metadata.xtask-migrate.capture]: ")
                    && e.contains(expected)
                    && !e.contains('\n'),
                "{e}"
            );
        }
    }
}
