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
        keep_alive: None,
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

/// A unique index that is no constraint is set aside while the rows go in and built again
/// before COMMIT; a fixture row that breaks it is still named by file and line.
#[test]
fn a_fixture_row_a_unique_index_refuses_names_its_line() {
    let url = pg_harness::shared().create_database("fixture_unique");
    let dir = workspace();
    edit(
        &dir,
        "migrations/V3__create_posts.sql",
        "CREATE INDEX posts_author_id_idx ON posts (author_id);",
        "CREATE INDEX posts_author_id_idx ON posts (author_id);\nCREATE UNIQUE INDEX posts_body_idx ON posts (body);",
    );
    edit(
        &dir,
        "fixtures/posts.csv",
        "Post 1006: café ☕",
        "Post 1008 by user686",
    );
    let (code, out) = sample_on(&url, &Config::defaults(dir.path()));
    let e = code.unwrap_err().to_string();
    assert!(
        e.contains("fixtures/posts.csv:6: duplicate key value violates unique constraint \"posts_body_idx\""),
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

/// The fixtures load with the foreign keys set aside and checked once at the end: afterwards
/// every key is back as it was declared (validated, `NOT VALID`, deferrable), and a row a key
/// refuses is still named by file and line, whether the key was set aside or stayed in place.
#[test]
fn foreign_keys_are_checked_once_after_the_load_and_put_back_as_declared() {
    use xtask_migrate::backfill::db::postgres::PgBackend;
    use xtask_migrate::backfill::sample::fixtures;

    const SCHEMA: &str = "CREATE TABLE users (id bigint PRIMARY KEY);
        CREATE TABLE posts (id bigint PRIMARY KEY, author bigint REFERENCES users (id),
            editor bigint);
        ALTER TABLE posts ADD CONSTRAINT posts_editor_fkey FOREIGN KEY (editor)
            REFERENCES users (id) NOT VALID;
        CREATE TABLE nodes (id bigint PRIMARY KEY, parent bigint);
        ALTER TABLE nodes ADD CONSTRAINT nodes_parent_fkey FOREIGN KEY (parent)
            REFERENCES nodes (id) DEFERRABLE INITIALLY IMMEDIATE;";
    // (name, definition, oid): a key set aside and added back has a new oid.
    let keys = |db: &mut PgBackend| -> Vec<(String, String, u32)> {
        db.client()
            .query(
                "SELECT conname::text, pg_get_constraintdef(c.oid), c.oid FROM pg_constraint AS c
                 JOIN pg_namespace AS n ON n.oid = c.connamespace
                 WHERE c.contype = 'f' AND n.nspname = current_schema() ORDER BY 1",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect()
    };
    let declared = |keys: &[(String, String, u32)]| -> Vec<(String, String)> {
        keys.iter()
            .map(|(n, d, _)| (n.clone(), d.clone()))
            .collect()
    };
    type Keys = Vec<(String, String, u32)>;
    let load = |posts: &str| -> (Result<usize, String>, Keys, Keys) {
        let url = pg_harness::shared().create_database("fixture_keys");
        let mut db = PgBackend::throwaway_schema(&url).unwrap();
        db.client().batch_execute(SCHEMA).unwrap();
        let before = keys(&mut db);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("users.csv"), "id\n1\n2\n").unwrap();
        std::fs::write(dir.path().join("posts.csv"), posts).unwrap();
        std::fs::write(dir.path().join("nodes.csv"), "id,parent\n2,1\n1,\\N\n3,2\n").unwrap();
        let files = fixtures::read_dir(dir.path()).unwrap();
        let result = fixtures::load(&mut db, &files, 1)
            .map(|r| r.rows)
            .map_err(|e| e.to_string());
        let after = keys(&mut db);
        (result, before, after)
    };

    let (loaded, before, after) = load("id,author,editor\n10,1,2\n11,2,\\N\n");
    assert_eq!(loaded, Ok(7));
    assert_eq!(before.len(), 3, "{before:?}");
    assert_eq!(
        declared(&after),
        declared(&before),
        "every key is back as declared"
    );
    assert!(after[2].1.ends_with("NOT VALID"), "{after:?}");
    assert!(after[0].1.contains("DEFERRABLE"), "{after:?}");
    // The validated keys were set aside and added back; the NOT VALID one stayed in place.
    assert_ne!(after[0].2, before[0].2, "{after:?}");
    assert_ne!(after[1].2, before[1].2, "{after:?}");
    assert_eq!(after[2].2, before[2].2, "{after:?}");

    // A key set aside (author) refuses a row: nothing is loaded, and the line is named.
    let (loaded, before, after) = load("id,author,editor\n10,1,2\n11,9,\\N\n");
    let e = loaded.unwrap_err();
    assert!(
        e.contains("posts.csv:3: insert or update on table \"posts\" violates foreign key constraint \"posts_author_fkey\""),
        "{e}"
    );
    assert_eq!(after, before, "nothing changed: the load was rolled back");
    // A key that stayed in place (NOT VALID: it checks new rows only) refuses one too.
    let (loaded, _, _) = load("id,author,editor\n10,1,2\n11,2,7\n");
    let e = loaded.unwrap_err();
    assert!(
        e.contains("posts.csv:3: insert or update on table \"posts\" violates foreign key constraint \"posts_editor_fkey\""),
        "{e}"
    );
}

/// The secondary indexes of the loaded tables are dropped while the rows go in and built again
/// before COMMIT, each as declared (expression, predicate, uniqueness); indexes behind a
/// constraint, or carrying a comment, stay in place.
#[test]
fn secondary_indexes_are_built_after_the_load_and_put_back_as_declared() {
    use xtask_migrate::backfill::db::postgres::PgBackend;
    use xtask_migrate::backfill::sample::fixtures;

    const SCHEMA: &str = "CREATE TABLE items (id bigint PRIMARY KEY, code text UNIQUE,
            owner bigint, label text);
        CREATE INDEX items_owner_idx ON items (owner);
        CREATE UNIQUE INDEX items_label_idx ON items (lower(label)) WHERE owner IS NOT NULL;
        CREATE INDEX items_noted_idx ON items (label);
        COMMENT ON INDEX items_noted_idx IS 'kept';";
    // (name, definition, oid): an index dropped and built again has a new oid.
    let indexes = |db: &mut PgBackend| -> Vec<(String, String, u32)> {
        db.client()
            .query(
                "SELECT indexname::text, indexdef, (quote_ident(schemaname) || '.' || quote_ident(indexname))::regclass::oid
                 FROM pg_indexes WHERE schemaname = current_schema() ORDER BY 1",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect()
    };
    let url = pg_harness::shared().create_database("fixture_indexes");
    let mut db = PgBackend::throwaway_schema(&url).unwrap();
    db.client().batch_execute(SCHEMA).unwrap();
    let before = indexes(&mut db);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("items.csv"),
        "id,code,owner,label\n1,a,7,One\n2,b,\\N,one\n3,c,7,Two\n",
    )
    .unwrap();
    let files = fixtures::read_dir(dir.path()).unwrap();
    assert_eq!(fixtures::load(&mut db, &files, 1).unwrap().rows, 3);
    let after = indexes(&mut db);
    let names: Vec<&str> = before.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "items_code_key",
            "items_label_idx",
            "items_noted_idx",
            "items_owner_idx",
            "items_pkey"
        ]
    );
    for ((name, declared, old), (_, rebuilt, new)) in before.iter().zip(&after) {
        assert_eq!(rebuilt, declared, "{name} is back as declared");
        let set_aside = matches!(name.as_str(), "items_label_idx" | "items_owner_idx");
        assert_eq!(new != old, set_aside, "{name}: set aside and built again");
    }
    // The rebuilt indexes hold the rows: the unique one refuses a duplicate.
    let e = db
        .client()
        .batch_execute("INSERT INTO items VALUES (4, 'd', 8, 'ONE')")
        .unwrap_err();
    assert!(
        e.as_db_error()
            .is_some_and(|d| d.constraint() == Some("items_label_idx")),
        "{e:?}"
    );
}

/// A partition's part of a partitioned index cannot be dropped alone: it stays in place while
/// fixtures load into the partition.
#[test]
fn fixtures_load_into_a_partition_of_an_indexed_partitioned_table() {
    use xtask_migrate::backfill::db::postgres::PgBackend;
    use xtask_migrate::backfill::sample::fixtures;

    let url = pg_harness::shared().create_database("fixture_partition");
    let mut db = PgBackend::throwaway_schema(&url).unwrap();
    db.client()
        .batch_execute(
            "CREATE TABLE events (id bigint, at int) PARTITION BY RANGE (at);
             CREATE TABLE events_low PARTITION OF events FOR VALUES FROM (0) TO (100);
             CREATE INDEX events_id_idx ON events (id);
             CREATE INDEX events_low_at_idx ON events_low (at);",
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("events_low.csv"), "id,at\n1,5\n2,50\n").unwrap();
    let files = fixtures::read_dir(dir.path()).unwrap();
    assert_eq!(fixtures::load(&mut db, &files, 1).unwrap().rows, 2);
    let indexes: Vec<String> = db
        .client()
        .query(
            "SELECT indexname::text FROM pg_indexes WHERE schemaname = current_schema()
             AND tablename = 'events_low' ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(indexes, ["events_low_at_idx", "events_low_id_idx"]);
}
