//! The name matcher against refinery's own loader and runner, and the findings' wording.

use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use super::{
    Name, Suggestion, Versions, check_names, classify, match_pattern, migration_version,
    suggest_name,
};
use crate::lint::RuleId;

/// Names refinery treats in every way it has: loaded, skipped, failing, panicking.
const NAMES: &[&str] = &[
    "V1__create_users.sql",
    "U1__x.sql",
    "V1.5__x.sql",
    "V01__x.sql",
    "v1__x.sql",
    "V1_x.sql",
    "V1__.sql",
    "V1__é.sql",
    "V1__a b.sql",
    "|1__x.sql",
    "|1.5__x.sql",
    "V1__create-users.sql",
    "V\u{661}__x.sql", // ARABIC-INDIC DIGIT ONE: `\d`, but not a digit `parse` reads
    "V\u{216B}__x.sql", // ROMAN NUMERAL TWELVE: alphabetic, not `\d`
    "V2147483647__x.sql", // i32::MAX
    "V2147483648__x.sql", // past i32::MAX
    "V00000000000000000001__x.sql",
    "V0__x.sql",
    "V1__x.SQL",
    "V1__a\u{301}.sql",   // a combining mark is `\w`
    "V1__x\u{b2}.sql",    // SUPERSCRIPT TWO is a number, not `\w`
    "V1__x\u{200d}.sql",  // ZERO WIDTH JOINER is `\w` (Join_Control)
    "V1__x\u{203f}y.sql", // UNDERTIE is connector punctuation, `\w`
    "V1___x.sql",
    "V1__2__x.sql",
    "V1__x.y.sql",
    "V1__x.sql.sql",
    "V1.__x.sql",
    "V1.5.5__x.sql",
    "V__x.sql",
    "V-1__x.sql",
    "V+1__x.sql",
    " V1__x.sql",
    "V1__x .sql",
    "1__x.sql",
    "create_users.sql",
];

#[derive(Debug, PartialEq)]
enum Loaded {
    Migration(String, i64),
    Skipped,
    Error(String),
    Panic,
}

/// What `refinery::load_sql_migrations` makes of a directory holding only `name`.
fn refinery_loads(name: &std::ffi::OsStr) -> Loaded {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(name), "SELECT 1;").unwrap();
    match catch_unwind(AssertUnwindSafe(|| {
        refinery::load_sql_migrations(dir.path())
    })) {
        Err(_) => Loaded::Panic,
        Ok(Err(e)) => Loaded::Error(e.to_string()),
        Ok(Ok(migrations)) => match migrations.as_slice() {
            [] => Loaded::Skipped,
            [m] => Loaded::Migration(m.to_string(), m.version().into()),
            more => panic!("one file loaded as {} migrations", more.len()),
        },
    }
}

fn ours(name: &std::ffi::OsStr) -> Loaded {
    match classify(name) {
        Name::Migration {
            prefix,
            version,
            name,
        } => Loaded::Migration(format!("{prefix}{version}__{name}"), version.into()),
        Name::Skipped => Loaded::Skipped,
        Name::BadVersion { .. } => {
            Loaded::Error("migration version must be a valid integer".into())
        }
        Name::PipePrefix => Loaded::Panic,
    }
}

#[test]
fn agrees_with_refinery_on_every_name() {
    for name in NAMES {
        let name = std::ffi::OsStr::new(name);
        let theirs = refinery_loads(name);
        assert_eq!(ours(name), theirs, "{name:?}");
        let version = match &theirs {
            Loaded::Migration(_, version) => u64::try_from(*version).ok(),
            _ => None,
        };
        assert_eq!(
            migration_version(Path::new("migrations/sub").join(name).as_path()),
            version,
            "{name:?}"
        );
        // And every name refinery would not run is reported, the others not.
        let findings = check_names(
            Path::new("migrations"),
            &[Path::new("migrations").join(name)],
        );
        let expect_finding = !matches!(theirs, Loaded::Migration(..));
        assert_eq!(
            findings.len(),
            usize::from(expect_finding),
            "{name:?}: {findings:?}"
        );
        if let Some((_, finding)) = findings.first() {
            assert_eq!(finding.rule, RuleId::MigrationNameSkipped);
        }
    }
}

#[cfg(unix)]
#[test]
fn a_name_that_is_not_utf8_is_skipped_like_refinery_does() {
    use std::os::unix::ffi::OsStrExt;
    let name = std::ffi::OsStr::from_bytes(b"V1__\xff.sql");
    assert_eq!(refinery_loads(name), Loaded::Skipped);
    assert_eq!(ours(name), Loaded::Skipped);
    let findings = check_names(Path::new("m"), &[Path::new("m").join(name)]);
    assert_eq!(findings.len(), 1);
    assert!(
        findings[0].1.message.contains("not valid UTF-8"),
        "{}",
        findings[0].1.message
    );
}

#[test]
fn every_suggestion_is_a_name_refinery_runs() {
    for name in NAMES {
        let suggested = match suggest_name(name, &free(7)) {
            Suggestion::Rename(s) | Suggestion::Renumber(s) => s,
            Suggestion::AddName { .. } => continue,
        };
        assert!(
            matches!(
                refinery_loads(std::ffi::OsStr::new(&suggested)),
                Loaded::Migration(..)
            ),
            "{name:?} -> {suggested:?}"
        );
    }
}

/// The version type the linter reasons with is refinery's (a compile error otherwise).
#[test]
fn versions_are_refinerys_type() {
    let largest: refinery::SchemaVersion = super::SchemaVersion::MAX;
    assert_eq!(largest, refinery::SchemaVersion::MAX);
}

/// No version taken below `next_free`: every suggestion keeps the file's own version.
fn free(next_free: refinery::SchemaVersion) -> Versions {
    Versions {
        taken: Default::default(),
        next_free,
    }
}

#[test]
fn suggestions() {
    let rename = |name: &str| match suggest_name(name, &free(5)) {
        Suggestion::Rename(s) => s,
        other => panic!("{name}: {other:?}"),
    };
    assert_eq!(rename("V1__create-users.sql"), "V1__create_users.sql");
    assert_eq!(rename("v1__x.sql"), "V1__x.sql");
    assert_eq!(rename("V1_x.sql"), "V1__x.sql");
    assert_eq!(rename("V1__a b.sql"), "V1__a_b.sql");
    assert_eq!(rename("V1__a - b.sql"), "V1__a_b.sql");
    assert_eq!(rename("|1__x.sql"), "V1__x.sql");
    assert_eq!(rename("u2-x.sql"), "U2__x.sql");
    assert_eq!(rename("001_init.sql"), "V001__init.sql");
    assert_eq!(rename("V1__x.SQL"), "V1__x.sql");
    assert_eq!(rename("V1__x.y.sql"), "V1__x_y.sql");
    assert_eq!(rename("V1__x\u{b2}.sql"), "V1__x.sql");
    let renumber = |name: &str| match suggest_name(name, &free(5)) {
        Suggestion::Renumber(s) => s,
        other => panic!("{name}: {other:?}"),
    };
    assert_eq!(renumber("create_users.sql"), "V5__create_users.sql");
    assert_eq!(renumber("users.sql"), "V5__users.sql");
    assert_eq!(renumber("V1.5__x.sql"), "V5__x.sql");
    assert_eq!(renumber("V2147483648__x.sql"), "V5__x.sql");
    // A version another file has is not suggested again.
    let taken = Versions {
        taken: [1, 3].into(),
        next_free: 4,
    };
    assert_eq!(
        suggest_name("|3__x.sql", &taken),
        Suggestion::Renumber("V4__x.sql".into())
    );
    assert_eq!(
        suggest_name("V2-x.sql", &taken),
        Suggestion::Rename("V2__x.sql".into())
    );
    assert_eq!(
        suggest_name("V1__.sql", &free(5)),
        Suggestion::AddName {
            prefix: 'V',
            version: "1".into()
        }
    );
}

#[test]
fn migration_versions() {
    assert_eq!(
        migration_version(Path::new("migrations/V01__x.sql")),
        Some(1)
    );
    assert_eq!(migration_version(Path::new("U3__x.sql")), Some(3));
    assert_eq!(migration_version(Path::new("a/b/V7__x.sql")), Some(7));
    assert_eq!(
        migration_version(Path::new("V2147483647__x.sql")),
        Some(2_147_483_647)
    );
    assert_eq!(migration_version(Path::new("V1.5__x.sql")), None);
    assert_eq!(migration_version(Path::new("V1__x.rs")), None);
    assert_eq!(migration_version(Path::new("README.md")), None);
    assert_eq!(migration_version(Path::new("")), None);
    assert_eq!(migration_version(Path::new("/")), None);
}

#[test]
fn the_matcher_splits_like_the_regex() {
    let parts = match_pattern("V1__2__x.sql").unwrap();
    assert_eq!(
        (parts.prefix, parts.version, parts.name),
        ('V', "1", "2__x")
    );
    let parts = match_pattern("U12.34__a_b.sql").unwrap();
    assert_eq!(
        (parts.prefix, parts.version, parts.name),
        ('U', "12.34", "a_b")
    );
    assert!(match_pattern("").is_none());
    assert!(match_pattern(".sql").is_none());
    assert!(match_pattern("V.sql").is_none());
}

/// A migrations directory with `files` (relative path, content), and the paths as a caller would
/// list them.
fn dir_with(files: &[(&str, &str)]) -> (tempfile::TempDir, Vec<PathBuf>) {
    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for (path, content) in files {
        let path = dir.path().join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, content).unwrap();
        paths.push(path);
    }
    (dir, paths)
}

fn run_refinery(dir: &Path, conn: &mut rusqlite::Connection) -> Result<Vec<String>, String> {
    let migrations = refinery::load_sql_migrations(dir).map_err(|e| e.to_string())?;
    refinery::Runner::new(&migrations)
        .run(conn)
        .map(|report| {
            report
                .applied_migrations()
                .iter()
                .map(ToString::to_string)
                .collect()
        })
        .map_err(|e| e.to_string())
}

fn tables(conn: &rusqlite::Connection) -> Vec<String> {
    let mut stmt = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name <> 'refinery_schema_history' ORDER BY name")
        .unwrap();
    stmt.query_map([], |row| row.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn duplicate_versions_are_reported_on_the_later_file_as_refinery_behaves() {
    let (dir, paths) = dir_with(&[
        ("V1__a.sql", "CREATE TABLE a (x int);"),
        ("V01__b.sql", "CREATE TABLE b (x int);"),
    ]);
    let findings = check_names(dir.path(), &paths);
    assert_eq!(findings.len(), 1, "{findings:?}");
    let (path, finding) = &findings[0];
    // refinery orders `V01__b.sql` first (its directory walk is sorted by name).
    assert_eq!(path, &dir.path().join("V1__a.sql"));
    assert_eq!(finding.rule, RuleId::DuplicateMigrationVersion);
    assert!(
        finding.message.contains("V01__b.sql"),
        "{}",
        finding.message
    );
    let note = finding.note.as_deref().unwrap();

    // A fresh database: both files' SQL runs, recording the second fails.
    let mut conn = rusqlite::Connection::open_in_memory().unwrap();
    let error = run_refinery(dir.path(), &mut conn).unwrap_err();
    assert!(
        error.contains("UNIQUE constraint failed: refinery_schema_history.version"),
        "{error}"
    );
    assert_eq!(tables(&conn), ["a", "b"]);
    assert!(
        note.contains("runs this file's SQL too and fails to record it"),
        "{note}"
    );
    // Afterwards: this file is skipped without a word.
    assert_eq!(run_refinery(dir.path(), &mut conn), Ok(vec![]));
    assert!(finding.message.contains("skips this file without a word"));

    // A database that recorded this file before `V01__b.sql` appeared: the exact error.
    let (only_a, _) = dir_with(&[("V1__a.sql", "CREATE TABLE a (x int);")]);
    let mut conn = rusqlite::Connection::open_in_memory().unwrap();
    assert_eq!(
        run_refinery(only_a.path(), &mut conn),
        Ok(vec!["V1__a".to_string()])
    );
    let error = run_refinery(dir.path(), &mut conn).unwrap_err();
    assert!(
        note.contains(&format!("\"{error}\"")),
        "refinery said {error:?}; the note says {note}"
    );
}

#[test]
fn an_identical_copy_gets_refinerys_own_words() {
    let sql = "CREATE TABLE a (x int);";
    let (dir, paths) = dir_with(&[("y/V1__a.sql", sql), ("x/V1__a.sql", sql)]);
    let findings = check_names(dir.path(), &paths);
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(findings[0].0, dir.path().join("y/V1__a.sql"));
    let mut conn = rusqlite::Connection::open_in_memory().unwrap();
    let error = run_refinery(dir.path(), &mut conn).unwrap_err();
    assert!(
        findings[0].1.message.contains(&format!("\"{error}\"")),
        "refinery said {error:?}; we said {}",
        findings[0].1.message
    );
    assert_eq!(findings[0].1.help, "delete one of the two copies");
}

#[test]
fn more_duplicates_and_what_is_not_one() {
    let (dir, paths) = dir_with(&[
        ("V2__c.sql", ""),
        ("V1__a.sql", ""),
        ("sub/V1__b.sql", "SELECT 1;"),
        ("U1__d.sql", "SELECT 2;"),
        ("V1.5__e.sql", ""),
        ("V3__f.sql", ""),
        ("notes.txt", ""),
    ]);
    let mut listed = paths.clone();
    listed.push(paths[0].clone()); // listed twice: still one file
    let findings = check_names(dir.path(), &listed);
    let summary: Vec<(String, RuleId)> = findings
        .iter()
        .map(|(path, f)| {
            (
                path.strip_prefix(dir.path()).unwrap().display().to_string(),
                f.rule,
            )
        })
        .collect();
    // refinery's order for version 1: `U1__d.sql`, `V1__a.sql`, `sub/V1__b.sql`.
    assert_eq!(
        summary,
        [
            ("V1.5__e.sql".to_string(), RuleId::MigrationNameSkipped),
            ("V1__a.sql".to_string(), RuleId::DuplicateMigrationVersion),
            (
                "sub/V1__b.sql".to_string(),
                RuleId::DuplicateMigrationVersion
            ),
        ]
    );
    let (_, third) = &findings[2];
    assert!(third.message.contains("U1__d.sql"), "{}", third.message);
    assert!(
        third.note.as_deref().unwrap().contains("fails on `"),
        "{:?}",
        third.note
    );
    assert!(
        third.note.as_deref().unwrap().contains("V1__a.sql"),
        "{:?}",
        third.note
    );
    assert!(
        third.help.contains("`V4__b.sql`"),
        "the next free version: {}",
        third.help
    );
}

#[test]
fn findings_read_well() {
    let (dir, paths) = dir_with(&[
        ("V1__create_users.sql", "CREATE TABLE users (id int);"),
        ("V2__create-follows.sql", ""),
        ("V2.5__posts.sql", ""),
        ("|3__x.sql", ""),
        ("V3__a.sql", "SELECT 1;"),
        ("V03__b.sql", "SELECT 2;"),
        ("add_index.sql", ""),
    ]);
    let findings: Vec<String> = check_names(dir.path(), &paths)
        .into_iter()
        .map(|(path, f)| {
            let mut s = format!(
                "{} {}: {}\n  help: {}",
                path.strip_prefix(dir.path()).unwrap().display(),
                f.rule,
                f.message,
                f.help
            );
            if let Some(note) = f.note {
                s.push_str(&format!("\n  note: {note}"));
            }
            s.replace(&dir.path().display().to_string(), "[dir]")
        })
        .collect();
    insta::assert_yaml_snapshot!(findings);
}
