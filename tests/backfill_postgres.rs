//! `backfill sample` on a real PostgreSQL server that the tests start themselves (one per test
//! binary run, a database per test). The batch engine's own tests run on both databases in
//! `engine_contract.rs`.

use std::path::PathBuf;
use std::process::ExitCode;

use xtask_migrate::cli::backfill::SampleArgs;
use xtask_migrate::config::Config;

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
        engine: None,
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
        e.contains("V1__backfill_counter_caches.sql:13: batch of range 0 failed: keys (0, "),
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

#[test]
fn a_schema_migration_the_server_rejects_names_its_line_and_the_engine() {
    let url = pg_harness::shared().create_database("schema_error");
    let dir = workspace();
    edit(
        &dir,
        "migrations/V3__create_posts.sql",
        "author_id bigint NOT NULL REFERENCES users (id),",
        "author_id bigint NOT NULL REFERENCES user_accounts (id),",
    );
    let (code, out) = sample_on(&url, &Config::defaults(dir.path()));
    let e = code.unwrap_err().to_string();
    // No position from the server: the line is the failing statement's first.
    assert!(
        e.ends_with(
            "migrations/V3__create_posts.sql:4: relation \"user_accounts\" does not exist (engine: postgres-url)"
        ),
        "{e}\n{out}"
    );
    assert_eq!(throwaway_schemas(&url), 0);
}
