//! `fixtures/manifest.json`: what `backfill capture` records beside the fixture files, and what
//! the sample reads back (the schema version the rows fit). Hand-written fixtures have none.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::backfill::db::target::TargetInfo;
use crate::backfill::error::{Error, ErrorKind, Result};

/// The manifest's file name in the fixtures directory.
pub const MANIFEST: &str = "manifest.json";

/// The manifest's format version.
pub const MANIFEST_FORMAT: u32 = 1;

/// Where the fixtures come from and what they hold. Never a user name or a password: the source
/// is host, port and database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// refinery's newest version on the source: the schema the rows fit.
    pub schema_version: u64,
    /// When the snapshot was taken (UTC, RFC 3339).
    pub captured_at: String,
    pub source: TargetInfo,
    /// The sampling settings as applied (seed, schema, roots, children, policies by name).
    pub settings: serde_json::Value,
    /// Per table: rows and the SHA-256 of its file.
    pub tables: BTreeMap<String, TableEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableEntry {
    pub rows: u64,
    pub sha256: String,
}

/// Reads the manifest of a fixtures directory, `None` when it has none.
pub fn read(dir: &Path) -> Result<Option<Manifest>> {
    let path = dir.join(MANIFEST);
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::file(ErrorKind::Io, &path, format!("cannot read: {e}")))?;
    serde_json::from_str(&text).map(Some).map_err(|e| {
        Error::at(
            ErrorKind::Fixture,
            &path,
            e.line(),
            format!("not a capture manifest: {e}"),
        )
    })
}
