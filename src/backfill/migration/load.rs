//! Data migrations on disk: which files of a directory are data migrations, their names and
//! versions, their checksums, and finding one by the name a person types.
//!
//! A file is a data migration when it ends in `.sql`; its name must then follow refinery's rule,
//! `V{n}__{name}.sql`, and no two files may share a version, because the version orders the data
//! migrations and names the one to run. Everything else in the directory (a README, the
//! `snapshots/` folder) is ignored. Each file is read as UTF-8 and its text handed to
//! [`parse()`]. [`load_dir`] and [`find`] stop at the first bad file; [`check_dir`] reads them
//! all and returns one error per bad file, for `migrate lint`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::DataMigration;
use super::parse::parse;
use crate::backfill::error::{Error, ErrorKind, Result};

/// Every data migration in `dir`, in version order. Files not ending in `.sql` are ignored
/// (a README, the `snapshots/` folder); a `.sql` file whose name refinery would skip, or two
/// files with one version, are errors rather than silent surprises.
pub fn load_dir(dir: &Path) -> Result<Vec<DataMigration>> {
    let entries = std::fs::read_dir(dir).map_err(|e| unreadable_dir(dir, &e))?;
    let mut by_version: BTreeMap<u64, DataMigration> = BTreeMap::new();
    let mut paths = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::file(ErrorKind::Io, dir, e.to_string()))?;
        let path = entry.path();
        if path.is_file() && path.extension().is_some_and(|e| e == "sql") {
            paths.push(path);
        }
    }
    paths.sort();
    for path in paths {
        let migration = load_file(&path)?;
        if let Some(other) = by_version.get(&migration.version) {
            return Err(duplicate_version(&path, migration.version, &other.path));
        }
        by_version.insert(migration.version, migration);
    }
    Ok(by_version.into_values().collect())
}

/// Every mistake in the data migrations of `dir`, one error per file at most (the first one
/// found), without stopping at the first file: what `migrate lint` reports for data migrations
/// (placeholders present and bounding the key, one target table, no DDL, a deterministic
/// snapshot query, names refinery accepts, unique versions).
pub fn check_dir(dir: &Path) -> Vec<Error> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => return vec![unreadable_dir(dir, &e)],
    };
    let mut paths: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "sql"))
        .collect();
    paths.sort();
    let mut errors = Vec::new();
    let mut versions: BTreeMap<u64, PathBuf> = BTreeMap::new();
    for path in paths {
        match load_file(&path) {
            Ok(m) => {
                if let Some(other) = versions.get(&m.version) {
                    errors.push(duplicate_version(&path, m.version, other));
                } else {
                    versions.insert(m.version, path);
                }
            }
            Err(e) => errors.push(e),
        }
    }
    errors
}

/// The data migration of `dir` that `name` designates: its file name (`V1__fill.sql`), its id
/// (`V1__fill`), its name (`fill`) or its version (`V1`, `1`).
pub fn find(dir: &Path, name: &str) -> Result<DataMigration> {
    let all = load_dir(dir)?;
    let wanted = name.trim();
    let version = wanted
        .strip_prefix('V')
        .unwrap_or(wanted)
        .parse::<u64>()
        .ok();
    let found = all.iter().find(|m| {
        m.id() == wanted
            || format!("{}.sql", m.id()) == wanted
            || m.name == wanted
            || version == Some(m.version)
    });
    match found {
        Some(m) => Ok(m.clone()),
        None => {
            let known: Vec<String> = all.iter().map(DataMigration::id).collect();
            Err(Error::file(
                ErrorKind::Format,
                dir,
                format!(
                    "no data migration named `{wanted}` (found: {})",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            ))
        }
    }
}

/// Reads and parses one data-migration file.
pub fn load_file(path: &Path) -> Result<DataMigration> {
    let bytes = std::fs::read(path)
        .map_err(|e| Error::file(ErrorKind::Io, path, format!("cannot read: {e}")))?;
    let text = String::from_utf8(bytes)
        .map_err(|e| Error::file(ErrorKind::Format, path, format!("not UTF-8 text: {e}")))?;
    parse(path, &text)
}

fn unreadable_dir(dir: &Path, e: &std::io::Error) -> Error {
    Error::file(
        ErrorKind::Io,
        dir,
        format!("cannot read the data-migrations directory: {e}"),
    )
}

/// The error for the file `path` whose version the already loaded file `other` has.
fn duplicate_version(path: &Path, version: u64, other: &Path) -> Error {
    Error::file(
        ErrorKind::Format,
        path,
        format!(
            "version {version} is also used by {}; each data migration needs its own version",
            other.file_name().unwrap_or_default().to_string_lossy()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backfill::migration::example::{GOOD, good_with};

    #[test]
    fn check_dir_reports_every_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("V1__good.sql"), GOOD).unwrap();
        std::fs::write(dir.path().join("V1__same_version.sql"), GOOD).unwrap();
        std::fs::write(
            dir.path().join("V2__bad.sql"),
            good_with("-- @key id", "-- @kee id"),
        )
        .unwrap();
        std::fs::write(dir.path().join("v3-misnamed.sql"), GOOD).unwrap();
        std::fs::write(dir.path().join("README.md"), "not SQL").unwrap();
        let errors: Vec<String> = check_dir(dir.path())
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(errors.len(), 3, "{errors:#?}");
        assert!(
            errors.iter().any(|e| e.ends_with("V1__same_version.sql: version 1 is also used by V1__good.sql; each data migration needs its own version")),
            "{errors:#?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.contains("V2__bad.sql:4: unknown directive `@kee`")),
            "{errors:#?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.contains("v3-misnamed.sql: not a data-migration name")),
            "{errors:#?}"
        );
    }
}
