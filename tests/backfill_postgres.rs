//! The batch engine and `backfill sample` on a real PostgreSQL server that the tests start
//! themselves (one per test binary run, a database per test).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use xtask_migrate::backfill::db::postgres::PgBackend;
use xtask_migrate::backfill::db::{Backend, BatchLimits, Cell, KeyValue};
use xtask_migrate::backfill::engine::{self, BatchReport, EngineOptions};
use xtask_migrate::backfill::migration::{self, DataMigration};
use xtask_migrate::cli::backfill::SampleArgs;
use xtask_migrate::config::Config;

fn migration(key: &str, extra_where: &str) -> DataMigration {
    let text = format!(
        "-- @requires 1\n-- @table items\n-- @key {key}\n\n-- @batch\nUPDATE items SET n = n + 1 WHERE {key} > :lower AND {key} <= :upper{extra_where};\n\n-- @snapshot\nSELECT {key}, n FROM items ORDER BY {key};\n"
    );
    migration::parse(Path::new("data-migrations/V7__bump.sql"), &text).unwrap()
}

fn options(batch_size: u64) -> EngineOptions {
    EngineOptions {
        batch_size,
        pause: Duration::ZERO,
        limits: BatchLimits {
            lock_timeout: Some(Duration::from_secs(2)),
            statement_timeout: Some(Duration::from_secs(30)),
        },
        max_batches: None,
    }
}

/// A throwaway schema in a new database of the shared server, with `items(key, n)`.
fn db(key_type: &str, key: &str) -> PgBackend {
    let url = pg_harness::shared().create_database("engine");
    let mut db = PgBackend::throwaway_schema(&url).unwrap();
    db.execute(&format!(
        "CREATE TABLE items ({key} {key_type} PRIMARY KEY, n bigint NOT NULL DEFAULT 0)"
    ))
    .unwrap();
    db
}

fn run(db: &mut PgBackend, m: &DataMigration, o: &EngineOptions) -> Vec<BatchReport> {
    let mut batches = Vec::new();
    let report = engine::run(db, m, o, &mut |b| batches.push(b.clone())).unwrap();
    assert_eq!(report.batches as usize, batches.len());
    batches
}

fn counts(db: &mut PgBackend) -> Vec<String> {
    db.query("SELECT n FROM items ORDER BY 1")
        .unwrap()
        .rows
        .into_iter()
        .map(|r| match &r[0] {
            Cell::Number(n) => n.clone(),
            other => panic!("{other:?}"),
        })
        .collect()
}

#[test]
fn sparse_integer_keys_give_full_batches() {
    let mut db = db("bigint", "id");
    db.execute("INSERT INTO items (id) VALUES (-40), (1), (2), (10), (11), (500), (501), (502), (9000000000)")
        .unwrap();
    let batches = run(&mut db, &migration("id", ""), &options(3));
    let bounds: Vec<(KeyValue, KeyValue, u64)> = batches
        .iter()
        .map(|b| (b.lower.clone(), b.upper.clone(), b.rows))
        .collect();
    use KeyValue::Int;
    assert_eq!(
        bounds,
        vec![
            (Int(-41), Int(2), 3),
            (Int(2), Int(500), 3),
            (Int(500), Int(9_000_000_000), 3)
        ]
    );
    assert_eq!(counts(&mut db), vec!["1"; 9]);
}

#[test]
fn int4_keys_batch_size_one_and_an_empty_table() {
    let mut db = db("integer", "id");
    let m = migration("id", "");
    assert!(
        run(&mut db, &m, &options(1)).is_empty(),
        "empty table: no batch"
    );
    db.execute("INSERT INTO items (id) VALUES (2147483647), (-2147483647), (0)")
        .unwrap();
    let batches = run(&mut db, &m, &options(1));
    let uppers: Vec<KeyValue> = batches.iter().map(|b| b.upper.clone()).collect();
    assert_eq!(uppers, [-2147483647, 0, 2147483647].map(KeyValue::Int));
    assert_eq!(counts(&mut db), vec!["1"; 3]);
}

#[test]
fn text_keys_follow_the_column_collation() {
    let mut db = db("text COLLATE \"C\"", "code");
    db.execute(
        "INSERT INTO items (code) VALUES ('b'), ('a'), ('ab'), ('B'), ('z'), ('é'), ('a b')",
    )
    .unwrap();
    let batches = run(&mut db, &migration("code", ""), &options(2));
    let text = |s: &str| KeyValue::Text(s.into());
    let uppers: Vec<KeyValue> = batches.iter().map(|b| b.upper.clone()).collect();
    assert_eq!(uppers, vec![text("a"), text("ab"), text("z"), text("é")]);
    assert_eq!(counts(&mut db), vec!["1"; 7]);
}

#[test]
fn a_batch_that_changes_no_row_still_commits() {
    let mut db = db("bigint", "id");
    db.execute("INSERT INTO items (id) VALUES (1), (3), (5), (6), (7), (9), (10)")
        .unwrap();
    let batches = run(&mut db, &migration("id", " AND id % 2 = 0"), &options(3));
    assert_eq!(
        batches.iter().map(|b| b.rows).collect::<Vec<_>>(),
        vec![0, 1, 1]
    );
    let recorded = db
        .query("SELECT count(*) FROM xtask_backfill_batches")
        .unwrap();
    assert_eq!(recorded.rows[0][0], Cell::Number("3".into()));
}

#[test]
fn a_failing_batch_rolls_back_and_names_the_file() {
    let mut db = db("bigint", "id");
    db.execute("INSERT INTO items (id) VALUES (1), (2), (3), (4), (5), (6)")
        .unwrap();
    db.execute("ALTER TABLE items ADD CONSTRAINT small CHECK (id <> 5 OR n = 0)")
        .unwrap();
    let m = migration("id", "");
    let mut seen = Vec::new();
    let e = engine::run(&mut db, &m, &options(2), &mut |b| seen.push(b.batch)).unwrap_err();
    let s = e.to_string();
    assert!(
        s.starts_with("data-migrations/V7__bump.sql:6: batch 3 on keys (4, 6] failed:"),
        "{s}"
    );
    assert!(s.contains("small"), "{s}");
    assert!(
        !e.transient,
        "a check violation does not go away by retrying"
    );
    assert_eq!(seen, vec![1, 2]);
    assert_eq!(counts(&mut db), vec!["0", "0", "1", "1", "1", "1"]);
}

#[test]
fn a_resumed_run_applies_every_batch_exactly_once() {
    let mut db = db("bigint", "id");
    db.execute("INSERT INTO items (id) SELECT g * 3 FROM generate_series(1, 50) AS g")
        .unwrap();
    let m = migration("id", "");
    let mut first = options(7);
    first.max_batches = Some(3);
    assert_eq!(run(&mut db, &m, &first).len(), 3);
    db.reconnect().unwrap();
    let rest = run(&mut db, &m, &options(7));
    assert_eq!(
        rest.first().map(|b| (b.batch, b.lower.clone())),
        Some((4, KeyValue::Int(63)))
    );
    assert_eq!(rest.len(), 5);
    assert_eq!(counts(&mut db), vec!["1"; 50]);
}

#[test]
fn a_lock_timeout_is_a_transient_error() {
    let mut db = db("bigint", "id");
    db.execute("INSERT INTO items (id) VALUES (1), (2)")
        .unwrap();
    let schema = db.schema().unwrap().to_string();
    let url = db_url(&mut db);
    let mut blocker = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    blocker
        .batch_execute(&format!(
            "BEGIN; LOCK TABLE \"{schema}\".items IN ACCESS EXCLUSIVE MODE"
        ))
        .unwrap();
    let mut o = options(10);
    o.limits.lock_timeout = Some(Duration::from_millis(100));
    let e = engine::run(&mut db, &migration("id", ""), &o, &mut |_| {}).unwrap_err();
    assert!(e.transient, "{e}");
    assert!(e.to_string().contains("lock timeout"), "{e}");
    blocker.batch_execute("ROLLBACK").unwrap();
    assert_eq!(run(&mut db, &migration("id", ""), &options(10)).len(), 1);
}

fn db_url(db: &mut PgBackend) -> String {
    let row = db
        .client()
        .query_one("SELECT current_database()::text", &[])
        .unwrap();
    pg_harness::shared().url(&row.get::<_, String>(0))
}

fn throwaway_schemas(url: &str) -> i64 {
    let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
    client
        .query_one(
            "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'xtask_sample_%'",
            &[],
        )
        .unwrap()
        .get(0)
}

fn sample_on(url: &str, config: &Config) -> (anyhow::Result<ExitCode>, String) {
    let args = SampleArgs {
        name: None,
        check: true,
        batch_size: None,
        database_url: Some(url.to_string()),
    };
    let mut out = Vec::new();
    let code = args.run_to(config, &mut out);
    (code, String::from_utf8(out).unwrap())
}

/// The example runs on PostgreSQL and gives the very snapshot accepted on SQLite; its schema is
/// gone afterwards, and the URL's password is never printed.
#[test]
fn sample_on_postgres_matches_the_accepted_snapshot() {
    let server = pg_harness::shared();
    let url = server.create_database("sample");
    let with_password = url.replace("postgres@", "postgres:hunter2@");
    let config = Config::discover().unwrap();
    let (code, out) = sample_on(&with_password, &config);
    assert_eq!(code.unwrap(), ExitCode::SUCCESS, "{out}");
    assert!(
        out.contains("on PostgreSQL postgres://postgres:***@127.0.0.1:"),
        "{out}"
    );
    assert!(!out.contains("hunter2"), "{out}");
    assert!(out.contains("rows match, approved"), "{out}");
    assert_eq!(throwaway_schemas(&url), 0);
}

/// A copy of this repository's workspace in a temp dir.
fn workspace() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    for sub in ["migrations", "data-migrations", "fixtures"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        for entry in std::fs::read_dir(repo.join(sub)).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                std::fs::copy(&path, dir.path().join(sub).join(path.file_name().unwrap())).unwrap();
            }
        }
    }
    dir
}

fn edit(dir: &tempfile::TempDir, relative: &str, from: &str, to: &str) {
    let path = dir.path().join(relative);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{relative} lacks {from:?}");
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
}

#[test]
fn a_fixture_row_postgres_refuses_names_its_line() {
    let url = pg_harness::shared().create_database("fixture_error");
    let dir = workspace();
    edit(&dir, "fixtures/follows.csv", "2,7155,", "2,7154,");
    let (code, out) = sample_on(&url, &Config::defaults(dir.path()));
    let e = code.unwrap_err().to_string();
    assert!(
        e.contains("fixtures/follows.csv:2: insert or update on table \"follows\" violates foreign key constraint"),
        "{e}\n{out}"
    );
    assert_eq!(throwaway_schemas(&url), 0);
}

#[test]
fn the_throwaway_schema_is_dropped_after_an_error() {
    let url = pg_harness::shared().create_database("sample_error");
    let dir = workspace();
    edit(
        &dir,
        "data-migrations/V1__backfill_counter_caches.sql",
        "posts_count = (SELECT",
        "post_count = (SELECT",
    );
    let (code, out) = sample_on(&url, &Config::defaults(dir.path()));
    let e = code.unwrap_err().to_string();
    assert!(
        e.contains("V1__backfill_counter_caches.sql:13: batch 1 on keys (0, "),
        "{e}\n{out}"
    );
    assert!(e.contains("post_count"), "{e}");
    assert_eq!(throwaway_schemas(&url), 0);
    assert!(
        !dir.path().join("data-migrations/snapshots").exists(),
        "nothing written"
    );
}

#[test]
fn an_unreachable_server_is_a_one_line_error_without_the_password() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://app:s3cret@127.0.0.1:{port}/db");
    let (code, _) = sample_on(&url, &Config::discover().unwrap());
    let e = code.unwrap_err().to_string();
    assert!(
        e.starts_with(&format!(
            "cannot connect to postgres://app:***@127.0.0.1:{port}/db: "
        )),
        "{e}"
    );
    assert!(e.to_lowercase().contains("connection refused"), "{e}");
    assert!(!e.contains("s3cret") && !e.contains('\n'), "{e}");
}
