//! Writing a capture: one fixture file per table (the format `backfill sample` loads, see
//! [`crate::backfill::sample::fixtures`]) and `manifest.json`, into a temporary directory beside
//! the fixtures directory, which then replaces it in one step (an atomic exchange of the two
//! directories on Linux). Until then the old fixtures are untouched, and on an error the
//! temporary directory is removed.
//!
//! Files of the old directory that a capture does not write (its README, notes) are carried
//! over; its other `*.csv` files are not (a capture is the whole fixture set).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::settings::{CaptureSettings, ChildRelation, Root};
use crate::backfill::error::{Error, ErrorKind, Result};
use crate::backfill::sample::fixtures::NULL;
pub use crate::backfill::sample::manifest::{MANIFEST, MANIFEST_FORMAT, Manifest, TableEntry};

/// The sampling settings, as they were applied (policies by name, never a key).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ManifestSettings {
    pub seed: u64,
    pub schema: String,
    pub statement_timeout_ms: u64,
    pub roots: Vec<Root>,
    pub children: Vec<ChildRelation>,
    /// `table.column` -> policy (`keep`, `null`, `fake:email`, `hmac`, `constant`).
    pub columns: BTreeMap<String, String>,
}

impl ManifestSettings {
    /// The manifest's `settings` value.
    pub fn from(settings: &CaptureSettings, schema: &str) -> serde_json::Value {
        let settings = ManifestSettings {
            seed: settings.seed,
            schema: schema.to_string(),
            statement_timeout_ms: settings.statement_timeout.as_millis() as u64,
            roots: settings.roots.clone(),
            children: settings.children.clone(),
            columns: settings
                .columns
                .iter()
                .map(|((t, c), p)| (format!("{t}.{c}"), p.to_string()))
                .collect(),
        };
        serde_json::to_value(settings).unwrap_or_default()
    }
}

/// The directory a capture is written into before it replaces the fixtures.
pub struct Staging {
    dir: tempfile::TempDir,
    target: PathBuf,
    tables: BTreeMap<String, TableEntry>,
}

impl Staging {
    /// A temporary directory beside `target` (same file system, so it can replace it).
    pub fn new(target: &Path) -> Result<Staging> {
        let parent = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&parent)
            .map_err(|e| Error::file(ErrorKind::Io, &parent, format!("cannot create: {e}")))?;
        let dir = tempfile::Builder::new()
            .prefix(".fixtures-capture-")
            .tempdir_in(&parent)
            .map_err(|e| {
                Error::file(
                    ErrorKind::Io,
                    &parent,
                    format!("cannot create a temporary directory: {e}"),
                )
            })?;
        Ok(Staging {
            dir,
            target: target.to_path_buf(),
            tables: BTreeMap::new(),
        })
    }

    /// Starts `<table>.csv` with its header.
    pub fn table<'a>(
        &'a mut self,
        table: &str,
        columns: impl Iterator<Item = &'a str>,
    ) -> Result<TableFile<'a>> {
        let path = self.dir.path().join(format!("{table}.csv"));
        let file = File::create(&path)
            .map_err(|e| Error::file(ErrorKind::Io, &path, format!("cannot create: {e}")))?;
        let mut writer = csv::WriterBuilder::new()
            .flexible(false)
            .from_writer(Hashing {
                inner: BufWriter::with_capacity(1 << 16, file),
                hasher: Sha256::new(),
            });
        let header: Vec<&str> = columns.collect();
        writer
            .write_record(&header)
            .map_err(|e| Error::file(ErrorKind::Io, &path, format!("cannot write: {e}")))?;
        Ok(TableFile {
            staging: self,
            table: table.to_string(),
            path,
            writer,
            rows: 0,
        })
    }

    /// Writes the manifest and replaces the fixtures directory.
    pub fn finish(self, mut manifest: Manifest) -> Result<()> {
        manifest.tables = self.tables.clone();
        let path = self.dir.path().join(MANIFEST);
        let mut text = serde_json::to_string_pretty(&manifest)
            .map_err(|e| Error::new(ErrorKind::Io, format!("cannot encode the manifest: {e}")))?;
        text.push('\n');
        std::fs::write(&path, text)
            .map_err(|e| Error::file(ErrorKind::Io, &path, format!("cannot write: {e}")))?;
        // Carry over what the capture does not write (a README).
        if self.target.is_dir() {
            let entries = std::fs::read_dir(&self.target).map_err(|e| {
                Error::file(ErrorKind::Io, &self.target, format!("cannot read: {e}"))
            })?;
            for entry in entries.flatten() {
                let from = entry.path();
                let name = entry.file_name();
                let ours = from.extension().is_some_and(|e| e == "csv") || name == MANIFEST;
                if from.is_file() && !ours {
                    std::fs::copy(&from, self.dir.path().join(&name)).map_err(|e| {
                        Error::file(ErrorKind::Io, &from, format!("cannot copy: {e}"))
                    })?;
                }
            }
        }
        replace_dir(self.dir, &self.target)
    }
}

/// One fixture file being written.
pub struct TableFile<'a> {
    staging: &'a mut Staging,
    table: String,
    path: PathBuf,
    writer: csv::Writer<Hashing>,
    rows: u64,
}

impl TableFile<'_> {
    /// Writes one row: `None` is NULL (`\N`), the text `\N` is written `\\N`.
    pub fn row(&mut self, values: &[Option<String>]) -> Result<()> {
        let fields = values.iter().map(|v| match v.as_deref() {
            None => NULL,
            Some(NULL) => "\\\\N",
            Some(text) => text,
        });
        self.writer
            .write_record(fields)
            .map_err(|e| Error::file(ErrorKind::Io, &self.path, format!("cannot write: {e}")))?;
        self.rows += 1;
        Ok(())
    }

    /// Flushes the file and records its rows and checksum; returns the rows.
    pub fn finish(self) -> Result<u64> {
        let io = |e: std::io::Error| {
            Error::file(ErrorKind::Io, &self.path, format!("cannot write: {e}"))
        };
        let mut hashing = self.writer.into_inner().map_err(|e| io(e.into_error()))?;
        hashing.inner.flush().map_err(io)?;
        let sha256: String = hashing
            .hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        self.staging.tables.insert(
            self.table.clone(),
            TableEntry {
                rows: self.rows,
                sha256,
            },
        );
        Ok(self.rows)
    }
}

/// A writer that hashes what goes through it.
struct Hashing {
    inner: BufWriter<File>,
    hasher: Sha256,
}

impl Write for Hashing {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Puts `new` in the place of `target`. On Linux the two directories are exchanged atomically
/// (`renameat2(RENAME_EXCHANGE)`) and the old one is removed with `new`'s handle; elsewhere, or
/// where the file system cannot exchange, the old directory is moved aside first.
fn replace_dir(new: tempfile::TempDir, target: &Path) -> Result<()> {
    let io = |e: std::io::Error| {
        Error::file(
            ErrorKind::Io,
            target,
            format!("cannot replace the fixtures directory: {e}"),
        )
    };
    if !target.exists() {
        let path = new.keep();
        return std::fs::rename(&path, target).map_err(io);
    }
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::ffi::OsStrExt;
        let from = std::ffi::CString::new(new.path().as_os_str().as_bytes())
            .map_err(|e| io(std::io::Error::other(e)))?;
        let to = std::ffi::CString::new(target.as_os_str().as_bytes())
            .map_err(|e| io(std::io::Error::other(e)))?;
        // SAFETY: both are valid NUL-terminated paths; AT_FDCWD resolves them like rename(2).
        let rc = unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                from.as_ptr(),
                libc::AT_FDCWD,
                to.as_ptr(),
                libc::RENAME_EXCHANGE,
            )
        };
        if rc == 0 {
            // `new`'s path now holds the old fixtures: dropping it removes them.
            return Ok(());
        }
    }
    let aside = target.with_file_name(format!(".fixtures-old-{}", std::process::id()));
    std::fs::rename(target, &aside).map_err(io)?;
    let path = new.keep();
    if let Err(e) = std::fs::rename(&path, target) {
        let _ = std::fs::rename(&aside, target);
        let _ = std::fs::remove_dir_all(&path);
        return Err(io(e));
    }
    std::fs::remove_dir_all(&aside).map_err(io)
}
