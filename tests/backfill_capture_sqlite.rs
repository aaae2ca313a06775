//! `backfill capture` from a SQLite file: the example schema replayed by refinery (as `backfill
//! sample` applies it to SQLite) and filled with a copy of the PostgreSQL example's rows, a
//! schema of its own with a cycle and self-references, tables keyed by a unique index, and bad
//! input. The same settings on a SQLite copy of the same rows write the same fixtures, byte for
//! byte, as on PostgreSQL.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use xtask_migrate::backfill::capture::settings::{CaptureSettings, Overrides};
use xtask_migrate::backfill::capture::{self, CaptureOptions};
use xtask_migrate::backfill::db::sqlite::SqliteBackend;
use xtask_migrate::backfill::db::{Backend, SampleBackend};
use xtask_migrate::backfill::sample::engine::Engine;
use xtask_migrate::backfill::sample::manifest::{MANIFEST, read as read_manifest};
use xtask_migrate::backfill::sample::snapshot::{Mode, Outcome};
use xtask_migrate::backfill::sample::{self, Inputs, SampleOptions, fixtures};
use xtask_migrate::config::SampleEngine;
use xtask_migrate::sql::Dialect;

use crate::backfill_capture::{
    CYCLE_CAPTURE, CYCLE_DATA, CYCLE_SCHEMA_SQLITE, EXAMPLE_CAPTURE, Ws, check_cycle_capture,
    client, column, files, rows,
};

/// A SQLite database at `path` with `ws`'s migrations applied up to `version` by refinery, the
/// way `backfill sample` applies them to SQLite (its history table included).
fn migrated(ws: &Ws, path: &Path, version: u64) {
    let dir = ws.path().join("migrations");
    let migrations = refinery::load_sql_migrations(&dir).unwrap();
    let mut db = SqliteBackend::open(path).unwrap();
    db.apply_migrations(&migrations, version, &dir).unwrap();
}

/// The PostgreSQL example source's rows, copied as text into a SQLite database of the same
/// schema: NULL and empty display names, emoji, quotes, commas, newlines, `\N`, long text, and
/// the canaries in every handle and display name.
fn sqlite_copy(pg_url: &str, ws: &Ws, path: &Path) {
    migrated(ws, path, 4);
    let mut pg = client(pg_url);
    let mut conn = rusqlite::Connection::open(path).unwrap();
    let tx = conn.transaction().unwrap();
    for row in pg
        .query(
            "SELECT id, handle, display_name, created_at::text FROM users",
            &[],
        )
        .unwrap()
    {
        tx.execute(
            "INSERT INTO users (id, handle, display_name, created_at) VALUES (?1, ?2, ?3, ?4)",
            rusqlite::params![
                row.get::<_, i64>(0),
                row.get::<_, String>(1),
                row.get::<_, Option<String>>(2),
                row.get::<_, String>(3)
            ],
        )
        .unwrap();
    }
    for row in pg
        .query(
            "SELECT follower_id, followee_id, created_at::text FROM follows",
            &[],
        )
        .unwrap()
    {
        tx.execute(
            "INSERT INTO follows VALUES (?1, ?2, ?3)",
            rusqlite::params![
                row.get::<_, i64>(0),
                row.get::<_, i64>(1),
                row.get::<_, String>(2)
            ],
        )
        .unwrap();
    }
    for row in pg
        .query(
            "SELECT id, author_id, body, created_at::text FROM posts",
            &[],
        )
        .unwrap()
    {
        tx.execute(
            "INSERT INTO posts VALUES (?1, ?2, ?3, ?4)",
            rusqlite::params![
                row.get::<_, i64>(0),
                row.get::<_, i64>(1),
                row.get::<_, String>(2),
                row.get::<_, String>(3)
            ],
        )
        .unwrap();
    }
    tx.commit().unwrap();
}

fn options(ws: &Ws, fixtures: PathBuf) -> CaptureOptions {
    CaptureOptions {
        settings: CaptureSettings::resolve(&ws.config(), &Overrides::default()).unwrap(),
        fixtures,
        captured_at: Some("2024-01-01T00:00:00Z".into()),
    }
}

/// The fixture files of `dir` (not the manifest, not the README).
fn csv_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    files(dir)
        .into_iter()
        .filter(|(n, _)| n.ends_with(".csv"))
        .collect()
}

/// The example from a SQLite file: closed over foreign keys, scrubbed, deterministic, the same
/// fixtures as from PostgreSQL with the same rows and settings, a manifest naming only the
/// file, and the example's data migration sampled on it with foreign keys on.
#[test]
fn the_example_is_captured_from_sqlite_as_from_postgresql() {
    let server = pg_harness::shared();
    let pg_url = crate::backfill_capture::example_source(server, 4);
    let ws = Ws::example(EXAMPLE_CAPTURE);
    let source_dir = tempfile::tempdir().unwrap();
    let db = source_dir.path().join("app.db");
    sqlite_copy(&pg_url, &ws, &db);
    let source_bytes = std::fs::read(&db).unwrap();

    let url = format!("sqlite://{}", db.display());
    let (code, out, err) = ws.capture(&["--database-url", &url], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(err, "", "no terminal, no progress bar: {out}");
    assert!(
        out.starts_with("capture from SQLite app.db (schema main, version V4, snapshot "),
        "{out}"
    );
    let dir = ws.fixtures();

    // Closure: every referenced user is there; posts are capped per author.
    let users: BTreeSet<String> = column(&dir, "users", "id").into_iter().flatten().collect();
    let referenced: Vec<String> = ["follower_id", "followee_id"]
        .iter()
        .flat_map(|c| column(&dir, "follows", c))
        .chain(column(&dir, "posts", "author_id"))
        .flatten()
        .collect();
    assert!(!referenced.is_empty(), "{out}");
    for id in &referenced {
        assert!(
            users.contains(id),
            "user {id} is referenced but not captured"
        );
    }
    let authors: Vec<String> = column(&dir, "posts", "author_id")
        .into_iter()
        .flatten()
        .collect();
    for id in &authors {
        assert!(authors.iter().filter(|a| *a == id).count() <= 2, "{id}");
    }
    assert!(users.len() > 30 && users.len() < 600, "{out}");

    // The awkward values, by storage class: NULL vs empty, `\N`, newlines, long text, emoji.
    let bodies = column(&dir, "posts", "body");
    for wanted in ["", "\\N", "line1\nline2, \"quoted\"", "café ☕ 🎉"] {
        assert!(
            bodies.iter().any(|b| b.as_deref() == Some(wanted)),
            "{wanted:?}"
        );
    }
    assert!(
        bodies
            .iter()
            .any(|b| b.as_ref().is_some_and(|b| b.len() == 30_000))
    );
    assert!(
        column(&dir, "users", "display_name")
            .iter()
            .any(Option::is_none)
    );
    assert!(
        column(&dir, "users", "followers_count")
            .iter()
            .all(|c| c.as_deref() == Some("0"))
    );

    // The canaries never leave the file; the output does not name where it lives.
    for (name, bytes) in files(&dir) {
        let text = String::from_utf8_lossy(&bytes).to_lowercase();
        for canary in ["canaryhandle", "canarydisplay"] {
            assert!(!text.contains(canary), "{canary} in {name}");
        }
    }
    assert!(!out.to_lowercase().contains("canary"), "{out}");
    let manifest = read_manifest(&dir).unwrap().unwrap();
    assert_eq!(manifest.schema_version, 4);
    assert_eq!(manifest.source.dialect, Dialect::Sqlite);
    assert_eq!(manifest.source.database, "app.db");
    assert_eq!(manifest.source.host, None);
    let text = std::fs::read_to_string(dir.join(MANIFEST)).unwrap();
    let folder = source_dir.path().display().to_string();
    assert!(!text.contains(&folder) && !out.contains(&folder), "{text}");
    assert_eq!(manifest.tables["users"].rows as usize, users.len());

    // Deterministic, and read-only: the source file is the same bytes afterwards.
    let config = ws.config();
    let second = ws.path().join("second");
    capture::capture(
        &config,
        &url,
        &options(&ws, second.clone()),
        &mut Vec::new(),
    )
    .unwrap();
    assert_eq!(csv_files(&dir), csv_files(&second));
    assert_eq!(std::fs::read(&db).unwrap(), source_bytes);
    assert!(!source_dir.path().join("app.db-journal").exists());

    // The same rows and settings on PostgreSQL: the same fixtures, byte for byte (the sampling
    // hash is PostgreSQL's md5 expression, computed alike).
    let from_pg = ws.path().join("from-pg");
    capture::capture(
        &config,
        &pg_url,
        &options(&ws, from_pg.clone()),
        &mut Vec::new(),
    )
    .unwrap();
    assert_eq!(csv_files(&from_pg), csv_files(&second));

    // The example's data migration samples on what was captured, loaded with foreign keys on.
    let inputs = Inputs::load(&config).unwrap();
    let migration =
        xtask_migrate::backfill::migration::find(&config.data_migrations, "V1").unwrap();
    let mut log = Vec::new();
    let mut engine =
        Engine::open(&config, Some(SampleEngine::Sqlite), None, None, &mut log).unwrap();
    let accept = SampleOptions {
        batch_size: None,
        mode: Mode::Accept,
    };
    let report =
        sample::sample(&config, &inputs, &migration, &mut engine, &accept, &mut log).unwrap();
    let log_text = String::from_utf8_lossy(&log).into_owned();
    assert!(report.failed_checks.is_empty(), "{log_text}");
    assert!(
        matches!(report.outcome, Outcome::Accepted { .. }),
        "{log_text}"
    );
}

/// The closure on SQLite follows the composite self-reference, the management chain and the
/// cycle between teams and people to the same fixpoint as on PostgreSQL; the result loads with
/// foreign keys on.
#[test]
fn closure_on_sqlite_follows_cycles_and_self_references() {
    let ws = Ws::with_migrations(&[("V1__schema.sql", CYCLE_SCHEMA_SQLITE)], CYCLE_CAPTURE);
    let source = tempfile::tempdir().unwrap();
    let db = source.path().join("cycle.sqlite");
    migrated(&ws, &db, 1);
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch(&format!(
            "PRAGMA foreign_keys = OFF; {}",
            CYCLE_DATA.replace("SET CONSTRAINTS ALL DEFERRED;", "")
        ))
        .unwrap();
    let key = ("CAPTURE_TEST_KEY", "k3y-for-the-test");
    let (code, out, err) = ws.capture(
        &["--database-url", &format!("sqlite:{}", db.display())],
        &[key],
    );
    assert_eq!(code, 0, "{out}{err}");
    check_cycle_capture(&ws.fixtures(), &out);
}

/// Tables without a primary key: a unique index over NOT NULL columns keys the rows (a unique
/// index over a nullable column does not); with neither, the refusal says what would make the
/// table capturable. The same on both sources.
const NO_PK_SCHEMA: &str = "
CREATE TABLE tags (name text NOT NULL, note text);
CREATE UNIQUE INDEX tags_note_key ON tags (note);
CREATE UNIQUE INDEX tags_name_key ON tags (name);
CREATE TABLE notes (id bigint PRIMARY KEY, tag text NOT NULL REFERENCES tags (name), body text);
CREATE TABLE logs (line text, at text);
";

const NO_PK_DATA: &str = "
INSERT INTO tags VALUES ('b', 'x'), ('a', NULL), ('c', 'z');
INSERT INTO notes VALUES (1, 'b', 'n1'), (2, 'a', 'n2');
INSERT INTO logs VALUES ('l1', 't');
";

const NO_PK_CAPTURE: &str = r#"
[workspace.metadata.xtask-migrate.capture]
roots = [{ table = "notes", fraction = 1.0 }]

[workspace.metadata.xtask-migrate.capture.columns]
"tags.name" = "keep"
"#;

#[test]
fn a_unique_index_keys_a_table_without_a_primary_key_on_both_sources() {
    let server = pg_harness::shared();
    let ws = Ws::with_migrations(&[("V1__schema.sql", NO_PK_SCHEMA)], NO_PK_CAPTURE);
    let pg_url = server.create_database("capture_no_pk");
    let mut c = client(&pg_url);
    let migrations = refinery::load_sql_migrations(ws.path().join("migrations")).unwrap();
    refinery::Runner::new(&migrations).run(&mut c).unwrap();
    c.batch_execute(NO_PK_DATA).unwrap();
    let source = tempfile::tempdir().unwrap();
    let db = source.path().join("nopk.db");
    migrated(&ws, &db, 1);
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch(NO_PK_DATA)
        .unwrap();
    let sqlite_url = format!("sqlite:{}", db.display());

    let mut captured = Vec::new();
    for url in [&pg_url, &sqlite_url] {
        let (code, out, err) = ws.capture(&["--database-url", url], &[]);
        assert_eq!(code, 0, "{url}: {out}{err}");
        // tags is keyed by tags_name_key: the rows the notes reference, sorted by name.
        assert_eq!(
            rows(&ws.fixtures(), "tags"),
            vec![
                vec![Some("a".to_string()), None],
                vec![Some("b".to_string()), Some("x".to_string())]
            ],
            "{url}: {out}"
        );
        captured.push(csv_files(&ws.fixtures()));

        let before = files(&ws.fixtures());
        let (code, out, err) = ws.capture(
            &["--database-url", url, "--root", "logs", "--fraction", "1"],
            &[],
        );
        assert_eq!(code, 2, "{url}: {out}{err}");
        assert!(
            err.contains("root `logs` has no primary key and no unique index over NOT NULL columns: a capture selects rows by their key; give the table a primary key, or a unique index whose columns are all NOT NULL, to make it capturable"),
            "{url}: {err}"
        );
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert_eq!(files(&ws.fixtures()), before);
    }
    assert_eq!(captured[0], captured[1]);
}

/// Each mistake with a SQLite source is one line on stderr, exit 2, and the fixtures as they
/// were; no file is created where none was, and a locked source is an error, not a hang.
#[test]
fn bad_sqlite_sources_are_one_line_exit_2_and_leave_the_fixtures_alone() {
    let ws = Ws::example(EXAMPLE_CAPTURE);
    let source = tempfile::tempdir().unwrap();
    let good = source.path().join("app.db");
    migrated(&ws, &good, 4);
    rusqlite::Connection::open(&good)
        .unwrap()
        .execute_batch(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 50)
             INSERT INTO users (id, handle, created_at) SELECT i, 'h' || i, '2024-01-01' FROM n",
        )
        .unwrap();
    let missing = source.path().join("missing.db");
    let junk = source.path().join("junk.db");
    std::fs::write(&junk, "this is not a database, only text\n".repeat(200)).unwrap();
    let bare = source.path().join("bare.db");
    rusqlite::Connection::open(&bare)
        .unwrap()
        .execute_batch("CREATE TABLE users (id integer PRIMARY KEY)")
        .unwrap();
    let url = |p: &Path| format!("sqlite:{}", p.display());
    let before = files(&ws.fixtures());

    // A writer holding the file: the capture waits its statement timeout, then says so.
    let locker = rusqlite::Connection::open(&good).unwrap();
    locker
        .execute_batch("PRAGMA journal_mode = DELETE; BEGIN EXCLUSIVE; DELETE FROM posts;")
        .unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![url(&missing)],
            "missing.db: no such SQLite database: a capture opens its source read-only and never creates it",
        ),
        (
            vec![url(&junk)],
            "junk.db: read refinery_schema_history: not a SQLite database",
        ),
        (
            vec![url(&bare)],
            "the source has no refinery_schema_history table",
        ),
        (
            vec![url(&good), "--statement-timeout-ms".into(), "200".into()],
            "app.db: read refinery_schema_history: the database is locked by another connection, and stayed locked for 200 ms",
        ),
    ];
    for (args, expected) in &cases {
        let mut all = vec!["--database-url"];
        all.extend(args.iter().map(String::as_str));
        let (code, out, err) = ws.capture(&all, &[]);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(err.contains(expected), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert_eq!(files(&ws.fixtures()), before, "{args:?}");
    }
    assert!(!missing.exists(), "a missing source is never created");
    locker.execute_batch("ROLLBACK").unwrap();
    drop(locker);

    // The source's history against migrations/ here: a version it lacks, a file changed after
    // it ran there.
    let behind = Ws::example(EXAMPLE_CAPTURE);
    for file in [
        "V4__add_counter_caches.sql",
        "V5__index_users_by_followers.sql",
    ] {
        std::fs::remove_file(behind.path().join("migrations").join(file)).unwrap();
    }
    let changed = Ws::example(EXAMPLE_CAPTURE);
    let v2 = changed.path().join("migrations/V2__create_follows.sql");
    let text = std::fs::read_to_string(&v2).unwrap();
    std::fs::write(
        &v2,
        text.replace("CREATE INDEX", "-- changed\nCREATE INDEX"),
    )
    .unwrap();
    for (other, expected) in [
        (
            &behind,
            "the source is at schema version V4, which is not among the migrations here (V1..V3)",
        ),
        (
            &changed,
            "migrations/V2__create_follows.sql: the source applied V2 (create_follows) with checksum",
        ),
    ] {
        let before = files(&other.fixtures());
        let (code, out, err) = other.capture(&["--database-url", &url(&good)], &[]);
        assert_eq!(code, 2, "{out}{err}");
        assert!(err.contains(expected), "{err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert_eq!(files(&other.fixtures()), before);
    }

    // Mistakes in the settings, each in its own workspace, against the good source.
    for (metadata, args, expected) in [
        (
            EXAMPLE_CAPTURE.to_string(),
            vec!["--root", "nosuch", "--limit", "1"],
            "root `nosuch`: no such table in schema main (it has: follows, posts, refinery_schema_history, users)",
        ),
        (
            EXAMPLE_CAPTURE.replace("\"users.handle\" = \"fake:username\"\n", ""),
            vec![],
            "refusing to capture: these columns look personal and have no policy: users.handle (TEXT)",
        ),
        (
            EXAMPLE_CAPTURE.replace("fraction = 0.1", "fraction = 0.1, where = \"nosuch > 1\""),
            vec![],
            "root `users`: selecting its rows fails on the source (`where` = \"nosuch > 1\"): no such column: nosuch",
        ),
        (
            EXAMPLE_CAPTURE.replace("fraction = 0.1", "fraction = 0.1, where = \"id >\""),
            vec![],
            "root `users`: `where` does not parse",
        ),
        (
            // A statement past the timeout is interrupted: an error, not a hang.
            EXAMPLE_CAPTURE.replace(
                "fraction = 0.1",
                "fraction = 0.1, where = \"(WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r) SELECT count(*) FROM r) > 0\"",
            ),
            vec!["--statement-timeout-ms", "300"],
            "the statement ran longer than the statement timeout (300 ms) and was interrupted",
        ),
    ] {
        let other = Ws::example(&metadata);
        let before = files(&other.fixtures());
        let mut all = vec!["--database-url".to_string(), url(&good)];
        all.extend(args.iter().map(|a| a.to_string()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        let (code, out, err) = other.capture(&all, &[]);
        assert_eq!(code, 2, "{metadata}: {out}{err}");
        assert!(err.contains(expected), "{err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert_eq!(files(&other.fixtures()), before);
    }
}

/// Every storage class, in columns of every declared type (and none): what SQLite stores is
/// what is written, whatever the declaration says, and the fixtures load back to the same
/// values, with the same storage classes, in a table of the same schema.
const VALUES_SCHEMA: &str = "
CREATE TABLE items (
    id INTEGER PRIMARY KEY,
    amount REAL,
    data BLOB,
    note TEXT,
    flag BOOLEAN,
    count INTEGER,
    anything
);
CREATE TABLE loose (k PRIMARY KEY, v);
";

const VALUES_DATA: &str = "
INSERT INTO items VALUES
    (1, 1.5, x'00ff10', 'a,b \"c\"' || char(10) || 'd', 1, 42, 42),
    (2, NULL, NULL, '', 0, NULL, 'text in an untyped column'),
    (3, 1e20, x'', NULL, NULL, -7, 2.5),
    (4, 0.1, x'5c4e', '\\N', 1, 0, x'01'),
    (5, -0.0, NULL, '🦀 Zoë, ☕', NULL, 9007199254740993, NULL),
    (6, 3.0, x'41', 'text in a real column', 1, 5, '');
UPDATE items SET amount = 'not a number' WHERE id = 6;
INSERT INTO loose VALUES (1, 'one'), ('a', 'text key'), (2.5, 'real key');
";

#[test]
fn every_storage_class_round_trips_from_a_sqlite_source() {
    let ws = Ws::with_migrations(
        &[("V1__items.sql", VALUES_SCHEMA)],
        "[workspace.metadata.xtask-migrate.capture]\nroots = [{ table = \"items\", fraction = 1.0 }, { table = \"loose\", fraction = 1.0 }]\n",
    );
    let source = tempfile::tempdir().unwrap();
    let db = source.path().join("items.db");
    migrated(&ws, &db, 1);
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch(VALUES_DATA)
        .unwrap();
    let (code, out, err) = ws.capture(
        &["--database-url", &format!("sqlite://{}", db.display())],
        &[],
    );
    assert_eq!(code, 0, "{out}{err}");
    let dir = ws.fixtures();
    let by_id = rows(&dir, "items");
    let text = |v: &str| Some(v.to_string());
    assert_eq!(by_id.len(), 6);
    assert_eq!(
        by_id[0],
        vec![
            text("1"),
            text("1.5"),
            text("\\x00ff10"),
            text("a,b \"c\"\nd"),
            text("1"),
            text("42"),
            text("42")
        ]
    );
    assert_eq!(
        by_id[1],
        vec![
            text("2"),
            None,
            None,
            text(""),
            text("0"),
            None,
            text("text in an untyped column")
        ]
    );
    assert_eq!(by_id[2][1], text("100000000000000000000"));
    assert_eq!(by_id[2][2], text("\\x"));
    assert_eq!(by_id[2][6], text("2.5"));
    assert_eq!(by_id[3][2], text("\\x5c4e"));
    assert_eq!(by_id[3][3], text("\\N"), "the text \\N is not NULL");
    assert_eq!(by_id[3][6], text("\\x01"));
    assert_eq!(by_id[4][3], text("🦀 Zoë, ☕"));
    assert_eq!(
        by_id[4][5],
        text("9007199254740993"),
        "integers keep every digit"
    );
    assert_eq!(
        by_id[5][1],
        text("not a number"),
        "the declared type decides nothing"
    );
    assert_eq!(by_id[5][6], text(""));
    // A key without a declared type holds any storage class; its rows are found by their text.
    assert_eq!(
        rows(&dir, "loose"),
        vec![
            vec![text("1"), text("one")],
            vec![text("2.5"), text("real key")],
            vec![text("a"), text("text key")]
        ]
    );

    // The sample's loader converts by the declared type: the text in the REAL column is
    // refused there, naming the file and line.
    let mut target = SqliteBackend::throwaway().unwrap();
    target.execute(VALUES_SCHEMA).unwrap();
    let e = fixtures::load(&mut target, &fixtures::read_dir(&dir).unwrap(), 1)
        .unwrap_err()
        .to_string();
    assert!(
        e.ends_with("items.csv:8: column `amount`: `not a number` is not a number"),
        "{e}"
    );

    // Without it, loaded into the same schema, the typed columns hold the same values as the
    // source, of the same storage class.
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch("DELETE FROM items WHERE id = 6")
        .unwrap();
    let (code, out, err) = ws.capture(
        &["--database-url", &format!("sqlite:{}", db.display())],
        &[],
    );
    assert_eq!(code, 0, "{out}{err}");
    let mut target = SqliteBackend::throwaway().unwrap();
    target.execute(VALUES_SCHEMA).unwrap();
    fixtures::load(&mut target, &fixtures::read_dir(&dir).unwrap(), 1).unwrap();
    let typed = "SELECT id, quote(amount), quote(data), quote(note), quote(flag), quote(count) FROM items ORDER BY id";
    let source_rows = target.query(typed).unwrap().rows;
    let mut original = SqliteBackend::open(&db).unwrap();
    assert_eq!(source_rows, original.query(typed).unwrap().rows);
}
