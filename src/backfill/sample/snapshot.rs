//! Snapshots of a data migration's result, and approval.
//!
//! The snapshot query's rows are rendered as text (one line per row) and kept in insta's file
//! format at `data-migrations/snapshots/V{n}__{name}.snap`, so `cargo insta review` /
//! `cargo insta accept` work on them as on any insta snapshot. The header records the
//! SHA-256 of the data migration the snapshot was taken from (`info.checksum`): a data migration
//! is *approved* when its accepted snapshot records the current file's checksum.
//!
//! insta's own assertion macros are not used: they panic on a difference, read their update mode
//! once per process from the environment, and locate snapshots from the calling source file.
//! The CLI needs to decide per run instead, so this module writes insta-format files itself
//! (read back with insta's parser, [`insta::Snapshot::from_file`], so the format cannot drift)
//! and follows insta's rules for when to write what:
//!
//! | mode | on a difference |
//! | --- | --- |
//! | `--check` | writes nothing, prints the diff, fails |
//! | `INSTA_UPDATE=no`, or `CI` set with `INSTA_UPDATE` unset/`auto` | the same |
//! | default (`auto`, not CI), `INSTA_UPDATE=new` | writes `.snap.new` for `cargo insta review`, fails |
//! | `INSTA_UPDATE=always` / `force` | writes `.snap` (accepts), passes |
//! | `INSTA_UPDATE=unseen` | `.snap.new` when there is no snapshot yet, else like `always` (insta's rule) |
//!
//! A snapshot whose rows match but whose checksum is another file's is *stale*: it counts as a
//! difference, so editing a data migration always needs a new review.
//!
//! The header also records the engine the snapshot was taken on (`info.engine`: `sqlite`,
//! `postgres-local`, `postgres-url`; snapshots written before engines were recorded have none).
//! The engine is not part of the approval: the same rows on another engine still match. A
//! difference found on another engine than the approval's is still a failure, and
//! [`engine_note`] says plainly that the engines differ before the diff is shown.

use crate::backfill::display::short;
use crate::backfill::error::display_path;
use crate::config::Config;
use std::path::{Path, PathBuf};

use insta::internals::Content;
use insta::{Snapshot, TextSnapshotKind, internals::TextSnapshotContents};

use crate::backfill::db::{Cell, Rows};
use crate::backfill::error::{Error, ErrorKind, Result};
use crate::backfill::migration::DataMigration;
use crate::config::SampleEngine;

/// What to do when the new snapshot differs from the accepted one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Write nothing; a difference fails.
    Check,
    /// Write `.snap.new` for review; a difference fails.
    Review,
    /// Write `.snap`: accept the new snapshot.
    Accept,
    /// insta's `unseen`: [`Mode::Review`] without an accepted snapshot, else [`Mode::Accept`].
    Unseen,
}

impl Mode {
    /// `--check`, else insta's environment variables (`INSTA_UPDATE`, `CI`).
    pub fn from_env(check: bool) -> Result<Mode> {
        Mode::decide(
            check,
            std::env::var("INSTA_UPDATE").ok().as_deref(),
            is_ci(),
        )
    }

    /// The decision of [`Mode::from_env`], from the values it reads.
    pub fn decide(check: bool, insta_update: Option<&str>, ci: bool) -> Result<Mode> {
        if check {
            return Ok(Mode::Check);
        }
        Ok(match insta_update.unwrap_or("") {
            "" | "auto" => {
                if ci {
                    Mode::Check
                } else {
                    Mode::Review
                }
            }
            "always" | "1" | "force" => Mode::Accept,
            "new" => Mode::Review,
            "unseen" => Mode::Unseen,
            "no" => Mode::Check,
            other => {
                return Err(Error::new(
                    ErrorKind::Io,
                    format!(
                        "INSTA_UPDATE={other} is not one of auto, always, new, unseen, no, force"
                    ),
                ));
            }
        })
    }
}

/// insta's rule for "running on CI".
fn is_ci() -> bool {
    match std::env::var("CI").ok().as_deref() {
        Some("false") | Some("0") | Some("") => false,
        None => std::env::var("TF_BUILD").is_ok(),
        Some(_) => true,
    }
}

/// The accepted snapshot of a data migration, as read from its `.snap` file.
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    pub contents: String,
    /// The checksum recorded in it; `None` for a snapshot written by something else.
    pub checksum: Option<String>,
    /// The engine it was taken on (`sqlite`, `postgres-local`, `postgres-url`); `None` for a
    /// snapshot written before engines were recorded.
    pub engine: Option<String>,
}

/// Where a data migration stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Approval {
    Approved,
    /// The accepted snapshot was taken from another version of the file.
    Stale {
        recorded: Option<String>,
    },
    NoSnapshot,
}

impl Approval {
    pub fn label(&self) -> &'static str {
        match self {
            Approval::Approved => "approved",
            Approval::Stale { .. } => "snapshot stale",
            Approval::NoSnapshot => "no snapshot",
        }
    }
}

/// How a sample's snapshot compared, and what was written.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Same rows, same checksum: approved.
    Matched,
    /// Different (or stale, or new) and accepted in place (`INSTA_UPDATE=always`).
    Accepted { path: PathBuf },
    /// Different: `.snap.new` written for review. `first`: there is no accepted snapshot yet.
    Pending {
        path: PathBuf,
        diff: String,
        first: bool,
    },
    /// Different, nothing written (`--check`, CI). `first`: there is no accepted snapshot yet.
    Failed { diff: String, first: bool },
}

impl Outcome {
    pub fn passed(&self) -> bool {
        matches!(self, Outcome::Matched | Outcome::Accepted { .. })
    }
}

/// `snapshots/V{n}__{name}.snap` under the data-migrations directory.
pub fn path_for(snapshot_dir: &Path, migration: &DataMigration) -> PathBuf {
    snapshot_dir.join(format!("{}.snap", migration.id()))
}

fn pending_path(path: &Path) -> PathBuf {
    path.with_extension("snap.new")
}

/// Rows as snapshot text: a count line, a header line, then one line per row with cells
/// separated by ` | `. Text is quoted (JSON escapes), so `NULL`, `''` and `'NULL'` all differ.
pub fn render(rows: &Rows) -> String {
    let mut out = format!(
        "{} {}, {} {}\n",
        rows.rows.len(),
        if rows.rows.len() == 1 { "row" } else { "rows" },
        rows.columns.len(),
        if rows.columns.len() == 1 {
            "column"
        } else {
            "columns"
        }
    );
    out.push_str(&rows.columns.join(" | "));
    out.push('\n');
    for row in &rows.rows {
        let cells: Vec<String> = row.iter().map(render_cell).collect();
        out.push_str(&cells.join(" | "));
        out.push('\n');
    }
    out
}

pub fn render_cell(cell: &Cell) -> String {
    match cell {
        Cell::Null => "NULL".into(),
        Cell::Number(n) => n.clone(),
        Cell::Text(t) => serde_json::Value::String(t.clone()).to_string(),
        Cell::Bool(b) => b.to_string(),
        Cell::Blob(b) => format!(
            "x'{}'",
            b.iter().map(|x| format!("{x:02x}")).collect::<String>()
        ),
    }
}

/// Reads an accepted snapshot; `None` when there is none.
pub fn read(path: &Path) -> Result<Option<Accepted>> {
    if !path.exists() {
        return Ok(None);
    }
    let snapshot = Snapshot::from_file(path).map_err(|e| {
        Error::file(
            ErrorKind::Io,
            path,
            format!("not a readable insta snapshot: {e}"),
        )
    })?;
    let contents = snapshot.as_text().map(|t| t.to_string()).ok_or_else(|| {
        Error::file(
            ErrorKind::Io,
            path,
            "a binary snapshot where a text one was expected",
        )
    })?;
    let info = |key: &str| match snapshot.metadata().private_info() {
        Some(Content::Map(entries)) => entries
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .and_then(|(_, v)| v.as_str())
            .map(str::to_string),
        _ => None,
    };
    Ok(Some(Accepted {
        contents,
        checksum: info("checksum"),
        engine: info("engine"),
    }))
}

/// Whether `migration` is approved by the snapshot in `snapshot_dir`.
pub fn approval(snapshot_dir: &Path, migration: &DataMigration) -> Result<Approval> {
    Ok(match read(&path_for(snapshot_dir, migration))? {
        None => Approval::NoSnapshot,
        Some(accepted) if accepted.checksum.as_deref() == Some(migration.checksum.as_str()) => {
            Approval::Approved
        }
        Some(accepted) => Approval::Stale {
            recorded: accepted.checksum,
        },
    })
}

/// Whether a `.snap.new` is waiting for review.
pub fn has_pending(snapshot_dir: &Path, migration: &DataMigration) -> bool {
    pending_path(&path_for(snapshot_dir, migration)).exists()
}

/// The file text: insta's YAML header, then the contents. `source` is the data migration's path
/// as shown to reviewers (relative to the workspace). Records no engine: see [`file_text_on`].
pub fn file_text(migration: &DataMigration, source: &str, contents: &str) -> String {
    file_text_on(migration, source, contents, None)
}

/// [`file_text`] that also records the engine the rows were taken on.
pub fn file_text_on(
    migration: &DataMigration,
    source: &str,
    contents: &str,
    engine: Option<SampleEngine>,
) -> String {
    let quote = |s: &str| serde_json::Value::String(s.to_string()).to_string();
    let engine = engine.map_or_else(String::new, |e| format!("  engine: {}\n", quote(e.name())));
    format!(
        "---\nsource: {}\ndescription: {}\nexpression: {}\ninfo:\n  checksum: {}\n{engine}---\n{}\n",
        quote(source),
        quote(&format!(
            "rows of the snapshot query of {} after its backfill ran on the fixtures",
            migration.id()
        )),
        quote(&migration.snapshot.sql),
        quote(&migration.checksum),
        contents.trim_end()
    )
}

/// When a snapshot differs and was taken on another engine than `engine`: one line saying so,
/// and what to do, to read before the diff. `None` when the engines are the same.
pub fn engine_note(accepted: &Accepted, engine: SampleEngine) -> Option<String> {
    let approved_on = match accepted.engine.as_deref() {
        Some(name) if name == engine.name() => return None,
        Some(name) => name.to_string(),
        // Before engines were recorded, samples ran on SQLite unless a URL was given.
        None if engine == SampleEngine::Sqlite => return None,
        None => "an unrecorded engine (sqlite, unless it was taken with --database-url)".into(),
    };
    let rerun = match SampleEngine::from_name(&approved_on) {
        Some(SampleEngine::PostgresUrl) => "--database-url URL".to_string(),
        Some(other) => format!("--engine {other}"),
        None => "--engine sqlite".to_string(),
    };
    Some(format!(
        "approved on {approved_on}, checked on {engine}: results may differ between engines (integer and decimal arithmetic, rounding, text ordering and collation, date functions, type checks), so this difference may be the engine's, not the data migration's; check on the approval's engine ({rerun}), or review and accept a snapshot taken on {engine}"
    ))
}

fn write(path: &Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::file(ErrorKind::Io, dir, format!("cannot create: {e}")))?;
    }
    // Write then rename: a reader never sees half a snapshot.
    let tmp = path.with_extension("snap.tmp");
    std::fs::write(&tmp, text)
        .map_err(|e| Error::file(ErrorKind::Io, &tmp, format!("cannot write: {e}")))?;
    std::fs::rename(&tmp, path)
        .map_err(|e| Error::file(ErrorKind::Io, path, format!("cannot write: {e}")))
}

/// A unified diff of the accepted contents and the new ones.
pub fn diff(old: &str, new: &str) -> String {
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header("accepted", "new")
        .to_string()
}

/// Compares `contents` with the accepted snapshot of `migration` and writes what `mode` says.
pub fn compare(
    snapshot_dir: &Path,
    migration: &DataMigration,
    source: &str,
    contents: &str,
    mode: Mode,
    engine: SampleEngine,
) -> Result<Outcome> {
    let path = path_for(snapshot_dir, migration);
    let pending = pending_path(&path);
    let accepted = read(&path)?;
    let new = TextSnapshotContents::new(contents.to_string(), TextSnapshotKind::File);
    let (same_rows, same_file) = match &accepted {
        Some(a) => (
            TextSnapshotContents::new(a.contents.clone(), TextSnapshotKind::File)
                .matches_latest(&new),
            a.checksum.as_deref() == Some(migration.checksum.as_str()),
        ),
        None => (false, false),
    };
    if same_rows && same_file {
        // A stale pending file from an earlier run would only confuse `cargo insta review`.
        if pending.exists() && mode != Mode::Check {
            let _ = std::fs::remove_file(&pending);
        }
        return Ok(Outcome::Matched);
    }
    let diff = match &accepted {
        None => format!(
            "no accepted snapshot at {}; the new one:\n{}",
            crate::backfill::error::display_path(&path),
            contents.trim_end()
        ),
        Some(a) if same_rows => format!(
            "the rows match, but the snapshot was taken from another version of the file (checksum {}, the file's is {}): review it again",
            a.checksum
                .as_deref()
                .map_or("none", |c| c.get(..12).unwrap_or(c)),
            migration.checksum.get(..12).unwrap_or(&migration.checksum)
        ),
        Some(a) => diff(
            &(a.contents.trim_end().to_string() + "\n"),
            &(contents.trim_end().to_string() + "\n"),
        ),
    };
    let mode = match mode {
        Mode::Unseen if accepted.is_none() => Mode::Review,
        Mode::Unseen => Mode::Accept,
        other => other,
    };
    let first = accepted.is_none();
    let text = file_text_on(migration, source, contents, Some(engine));
    match mode {
        Mode::Check | Mode::Unseen => Ok(Outcome::Failed { diff, first }),
        Mode::Review => {
            write(&pending, &text)?;
            Ok(Outcome::Pending {
                path: pending,
                diff,
                first,
            })
        }
        Mode::Accept => {
            write(&path, &text)?;
            if pending.exists() {
                let _ = std::fs::remove_file(&pending);
            }
            Ok(Outcome::Accepted { path })
        }
    }
}

/// Refuses a data migration whose snapshot is missing or was taken from another version.
pub fn require_approval(config: &Config, migration: &DataMigration) -> anyhow::Result<()> {
    let dir = crate::backfill::sample::snapshot_dir(config);
    match approval(&dir, migration)? {
        Approval::Approved => Ok(()),
        Approval::NoSnapshot => anyhow::bail!(
            "{}: {} is not approved: it has no accepted snapshot; run `cargo xtask backfill sample {}` and accept the snapshot (`cargo insta review`)",
            display_path(&migration.path),
            migration.id(),
            migration.id()
        ),
        Approval::Stale { recorded } => anyhow::bail!(
            "{}: {} is not approved: its snapshot was taken from another version of the file (checksum {}, the file's is {}); run `cargo xtask backfill sample {}` and accept the new snapshot (`cargo insta review`)",
            display_path(&migration.path),
            migration.id(),
            recorded.as_deref().map_or("none", short),
            short(&migration.checksum),
            migration.id()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backfill::migration;

    fn migration(text_suffix: &str) -> DataMigration {
        let text = format!(
            "-- @requires 1\n-- @table t\n-- @key id\n-- @batch\nUPDATE t SET n = 1 WHERE id > :lower AND id <= :upper;\n-- @snapshot\nSELECT id, n FROM t ORDER BY id;\n{text_suffix}"
        );
        migration::parse(Path::new("data-migrations/V1__fill.sql"), &text).unwrap()
    }

    fn rows(values: &[(i64, Cell)]) -> Rows {
        Rows {
            columns: vec!["id".into(), "n".into()],
            rows: values
                .iter()
                .map(|(id, n)| vec![Cell::Number(id.to_string()), n.clone()])
                .collect(),
        }
    }

    #[test]
    fn renders_one_line_per_row_with_distinct_nulls() {
        let text = render(&rows(&[
            (1, Cell::Null),
            (2, Cell::Text("NULL".into())),
            (3, Cell::Text("".into())),
            (4, Cell::Text("a \"b\"\nc".into())),
            (5, Cell::Bool(true)),
            (6, Cell::Blob(vec![0, 171])),
        ]));
        assert_eq!(
            text,
            "6 rows, 2 columns\nid | n\n1 | NULL\n2 | \"NULL\"\n3 | \"\"\n4 | \"a \\\"b\\\"\\nc\"\n5 | true\n6 | x'00ab'\n"
        );
    }

    #[test]
    fn written_files_read_back_with_insta() {
        let dir = tempfile::tempdir().unwrap();
        let m = migration("");
        let contents = render(&rows(&[(1, Cell::Number("3".into()))]));
        let out = compare(
            dir.path(),
            &m,
            "data-migrations/V1__fill.sql",
            &contents,
            Mode::Accept,
            SampleEngine::PostgresLocal,
        )
        .unwrap();
        assert_eq!(
            out,
            Outcome::Accepted {
                path: dir.path().join("V1__fill.snap")
            }
        );
        let accepted = read(&dir.path().join("V1__fill.snap")).unwrap().unwrap();
        assert_eq!(accepted.contents, contents.trim_end());
        assert_eq!(accepted.checksum.as_deref(), Some(m.checksum.as_str()));
        assert_eq!(accepted.engine.as_deref(), Some("postgres-local"));
        let snapshot = Snapshot::from_file(&dir.path().join("V1__fill.snap")).unwrap();
        assert_eq!(
            snapshot.metadata().expression(),
            Some("SELECT id, n FROM t ORDER BY id")
        );
        assert_eq!(approval(dir.path(), &m).unwrap(), Approval::Approved);
        assert_eq!(
            compare(
                dir.path(),
                &m,
                "x",
                &contents,
                Mode::Check,
                SampleEngine::Sqlite
            )
            .unwrap(),
            Outcome::Matched
        );
    }

    #[test]
    fn a_difference_on_another_engine_is_explained() {
        let accepted = |engine: Option<&str>| Accepted {
            contents: String::new(),
            checksum: None,
            engine: engine.map(str::to_string),
        };
        let note = engine_note(&accepted(Some("sqlite")), SampleEngine::PostgresLocal).unwrap();
        assert!(
            note.starts_with("approved on sqlite, checked on postgres-local: results may differ"),
            "{note}"
        );
        assert!(note.contains("(--engine sqlite)"), "{note}");
        assert!(!note.contains('\n'));
        let note = engine_note(&accepted(Some("postgres-url")), SampleEngine::Sqlite).unwrap();
        assert!(note.contains("(--database-url URL)"), "{note}");
        assert_eq!(
            engine_note(&accepted(Some("sqlite")), SampleEngine::Sqlite),
            None
        );
        // Snapshots from before engines were recorded were taken on SQLite by default.
        assert_eq!(engine_note(&accepted(None), SampleEngine::Sqlite), None);
        let note = engine_note(&accepted(None), SampleEngine::PostgresLocal).unwrap();
        assert!(
            note.starts_with("approved on an unrecorded engine (sqlite, unless"),
            "{note}"
        );
    }

    #[test]
    fn snapshots_without_an_engine_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let m = migration("");
        let contents = render(&rows(&[(1, Cell::Number("3".into()))]));
        std::fs::write(
            dir.path().join("V1__fill.snap"),
            file_text(&m, "s", &contents),
        )
        .unwrap();
        let accepted = read(&dir.path().join("V1__fill.snap")).unwrap().unwrap();
        assert_eq!(accepted.engine, None);
        assert_eq!(approval(dir.path(), &m).unwrap(), Approval::Approved);
        assert_eq!(
            compare(
                dir.path(),
                &m,
                "s",
                &contents,
                Mode::Check,
                SampleEngine::PostgresLocal
            )
            .unwrap(),
            Outcome::Matched
        );
    }

    #[test]
    fn check_mode_writes_nothing_and_shows_the_diff() {
        let dir = tempfile::tempdir().unwrap();
        let m = migration("");
        let old = render(&rows(&[
            (1, Cell::Number("3".into())),
            (2, Cell::Number("0".into())),
        ]));
        compare(
            dir.path(),
            &m,
            "s",
            &old,
            Mode::Accept,
            SampleEngine::Sqlite,
        )
        .unwrap();
        let new = render(&rows(&[
            (1, Cell::Number("3".into())),
            (2, Cell::Number("1".into())),
        ]));
        let out = compare(dir.path(), &m, "s", &new, Mode::Check, SampleEngine::Sqlite).unwrap();
        let Outcome::Failed { diff, first } = out else {
            panic!("{out:?}")
        };
        assert!(!first);
        assert!(diff.contains("-2 | 0\n+2 | 1\n"), "{diff}");
        let files: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(files, vec![std::ffi::OsString::from("V1__fill.snap")]);
        assert_eq!(
            read(&dir.path().join("V1__fill.snap"))
                .unwrap()
                .unwrap()
                .contents,
            old.trim_end()
        );
    }

    #[test]
    fn review_mode_writes_snap_new_and_accept_clears_it() {
        let dir = tempfile::tempdir().unwrap();
        let m = migration("");
        let contents = render(&rows(&[(1, Cell::Number("3".into()))]));
        let out = compare(
            dir.path(),
            &m,
            "s",
            &contents,
            Mode::Review,
            SampleEngine::Sqlite,
        )
        .unwrap();
        let Outcome::Pending { path, diff, first } = out else {
            panic!("{out:?}")
        };
        assert!(first, "no accepted snapshot yet");
        assert_eq!(path, dir.path().join("V1__fill.snap.new"));
        assert!(diff.contains("no accepted snapshot"), "{diff}");
        assert!(has_pending(dir.path(), &m));
        assert_eq!(approval(dir.path(), &m).unwrap(), Approval::NoSnapshot);
        // What `cargo insta accept` does: the pending file becomes the snapshot.
        std::fs::rename(&path, dir.path().join("V1__fill.snap")).unwrap();
        assert_eq!(approval(dir.path(), &m).unwrap(), Approval::Approved);
    }

    #[test]
    fn a_changed_file_makes_its_snapshot_stale() {
        let dir = tempfile::tempdir().unwrap();
        let m = migration("");
        let contents = render(&rows(&[(1, Cell::Number("3".into()))]));
        compare(
            dir.path(),
            &m,
            "s",
            &contents,
            Mode::Accept,
            SampleEngine::Sqlite,
        )
        .unwrap();
        let edited = migration("-- a comment changes the checksum\n");
        assert_ne!(edited.checksum, m.checksum);
        let status = approval(dir.path(), &edited).unwrap();
        assert_eq!(
            status,
            Approval::Stale {
                recorded: Some(m.checksum.clone())
            }
        );
        assert_eq!(status.label(), "snapshot stale");
        let out = compare(
            dir.path(),
            &edited,
            "s",
            &contents,
            Mode::Check,
            SampleEngine::Sqlite,
        )
        .unwrap();
        let Outcome::Failed { diff, .. } = out else {
            panic!("{out:?}")
        };
        assert!(
            diff.contains(
                "the rows match, but the snapshot was taken from another version of the file"
            ),
            "{diff}"
        );
    }

    #[test]
    fn modes_follow_insta() {
        let decide = |check, update, ci| Mode::decide(check, update, ci).unwrap();
        assert_eq!(
            decide(true, Some("always"), false),
            Mode::Check,
            "--check wins"
        );
        assert_eq!(decide(false, None, false), Mode::Review);
        assert_eq!(decide(false, None, true), Mode::Check, "CI never writes");
        assert_eq!(decide(false, Some("auto"), true), Mode::Check);
        assert_eq!(decide(false, Some("always"), true), Mode::Accept);
        assert_eq!(decide(false, Some("new"), true), Mode::Review);
        assert_eq!(decide(false, Some("no"), false), Mode::Check);
        assert_eq!(decide(false, Some("unseen"), false), Mode::Unseen);
        assert!(Mode::decide(false, Some("sometimes"), false).is_err());
    }
}
