//! `migrate run` on SQLite files and on a real PostgreSQL server the tests start: in order,
//! recorded as refinery records it (refinery's own runner accepts the history), held at gates
//! until their backfill is done, non-transactional migrations outside a transaction.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use xtask_migrate::backfill::db::SampleBackend;
use xtask_migrate::backfill::deploy::Backfills;
use xtask_migrate::backfill::run::progress::ProgressMode;
use xtask_migrate::backfill::sample::{Inputs, fixtures};
use xtask_migrate::cli::deploy::MigrateRunArgs;
use xtask_migrate::config::Config;

use crate::support::copy_dir;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A workspace in a temp dir, with a SQLite database file path beside it.
struct Ws {
    dir: tempfile::TempDir,
    config: Config,
}

/// A data migration of the SQLite workspace: fills `items.m` from `n`.
const FILL_M: &str = "-- @requires 2\n-- @table items\n-- @key id\n-- @batch-size 7\n\n-- @batch\nUPDATE items SET m = n * 2 WHERE id > :lower AND id <= :upper;\n\n-- @snapshot\nSELECT id, m FROM items ORDER BY id;\n";

impl Ws {
    /// A SQLite project: `items(id, n)`, then a column `m`, and an approved data migration
    /// filling it.
    fn sqlite() -> Ws {
        let ws = Ws::with(&[]);
        ws.write(
            "migrations/V1__items.sql",
            "CREATE TABLE items (id INTEGER PRIMARY KEY, n INTEGER NOT NULL DEFAULT 0);\n",
        );
        ws.write(
            "migrations/V2__items_m.sql",
            "ALTER TABLE items ADD COLUMN m INTEGER;\n",
        );
        ws.write_data_migration("V1__fill_m", FILL_M);
        ws
    }

    /// This repository's example project (PostgreSQL schema, data migration with its accepted
    /// snapshot, fixtures).
    fn example() -> Ws {
        Ws::with(&["migrations", "data-migrations", "fixtures"])
    }

    fn with(copied: &[&str]) -> Ws {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["migrations", "data-migrations", "fixtures"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        for sub in copied {
            copy_dir(&repo().join(sub), &dir.path().join(sub));
        }
        // A Cargo workspace, for the binary's config discovery.
        std::fs::write(
            dir.path().join("Cargo.toml"),
            "[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n",
        )
        .unwrap();
        std::fs::create_dir_all(dir.path().join("src")).unwrap();
        std::fs::write(dir.path().join("src/lib.rs"), "").unwrap();
        let config = Config::defaults(dir.path());
        Ws { dir, config }
    }

    /// Writes data migration `id` with an accepted snapshot taken from this text: approved.
    fn write_data_migration(&self, id: &str, text: &str) {
        use xtask_migrate::backfill::sample::snapshot;
        self.write(&format!("data-migrations/{id}.sql"), text);
        let migration = xtask_migrate::backfill::migration::load_file(
            &self.config.data_migrations.join(format!("{id}.sql")),
        )
        .unwrap();
        let snap = snapshot::path_for(&self.config.data_migrations.join("snapshots"), &migration);
        std::fs::create_dir_all(snap.parent().unwrap()).unwrap();
        let source = format!("data-migrations/{id}.sql");
        std::fs::write(&snap, snapshot::file_text(&migration, &source, "approved")).unwrap();
    }

    fn write(&self, relative: &str, text: &str) {
        std::fs::write(self.dir.path().join(relative), text).unwrap();
    }

    fn db(&self) -> String {
        format!("sqlite://{}", self.dir.path().join("app.db").display())
    }

    fn migrate(&self, url: &str, backfills: Backfills) -> (anyhow::Result<ExitCode>, String) {
        let args = MigrateRunArgs {
            database_url: Some(url.to_string()),
            target: None,
            backfills,
            tracking_schema: None,
            tracking_prefix: None,
            progress: ProgressMode::Quiet,
        };
        let mut out = Vec::new();
        let code = args.run_to(&self.config, &mut out);
        (code, String::from_utf8(out).unwrap())
    }

    /// The history as refinery's own runner reads it: (version, name, checksum).
    fn history(&self) -> Vec<(i32, String, u64)> {
        let mut conn = rusqlite::Connection::open(self.dir.path().join("app.db")).unwrap();
        refinery::Runner::new(&[])
            .get_applied_migrations(&mut conn)
            .unwrap()
            .iter()
            .map(|m| (m.version(), m.name().to_string(), m.checksum()))
            .collect()
    }

    /// refinery's own runner on the database: it must accept the history and find nothing to do.
    fn refinery_accepts(&self) {
        let migrations = refinery::load_sql_migrations(&self.config.migrations).unwrap();
        let mut conn = rusqlite::Connection::open(self.dir.path().join("app.db")).unwrap();
        let report = refinery::Runner::new(&migrations).run(&mut conn).unwrap();
        assert!(report.applied_migrations().is_empty());
    }
}

/// The checksum refinery computes for a migration file.
fn checksum(path: &Path) -> u64 {
    let name = path.file_stem().unwrap().to_string_lossy().into_owned();
    refinery::Migration::unapplied(&name, &std::fs::read_to_string(path).unwrap())
        .unwrap()
        .checksum()
}

#[test]
fn applies_every_migration_in_order_once_as_refinery_records_it() {
    let ws = Ws::sqlite();
    let (code, out) = ws.migrate(&ws.db(), Backfills::Wait);
    assert_eq!(code.unwrap(), ExitCode::SUCCESS, "{out}");
    for name in ["V1__items", "V2__items_m"] {
        assert!(out.contains(&format!("  applied {name} in ")), "{out}");
    }
    assert!(out.contains("2 migrations applied; schema at V2"), "{out}");
    let history = ws.history();
    assert_eq!(history.len(), 2);
    for (version, name, sum) in &history {
        let path = ws.config.migrations.join(format!("V{version}__{name}.sql"));
        assert_eq!(*sum, checksum(&path), "{name}");
    }
    ws.refinery_accepts();

    // Again: nothing to do.
    let (code, out) = ws.migrate(&ws.db(), Backfills::Wait);
    assert_eq!(code.unwrap(), ExitCode::SUCCESS, "{out}");
    assert!(out.contains("0 migrations applied; schema at V2"), "{out}");

    // A later migration on a partial history; one that fails names its file and line and
    // leaves the ones before it applied.
    ws.write(
        "migrations/V3__items_note.sql",
        "ALTER TABLE items ADD COLUMN note TEXT;\n",
    );
    ws.write(
        "migrations/V4__broken.sql",
        "-- a typo on line 2\nALTER TABLE items ADD;\n",
    );
    let (code, out) = ws.migrate(&ws.db(), Backfills::Wait);
    let e = code.unwrap_err().to_string();
    assert!(out.contains("applied V3__items_note"), "{out}");
    assert!(e.contains("V4__broken.sql:2:"), "{e}");
    assert_eq!(ws.history().len(), 3);
}

#[test]
fn a_changed_migration_is_refused_as_refinery_refuses_it() {
    let ws = Ws::sqlite();
    ws.migrate(&ws.db(), Backfills::Wait).0.unwrap();
    ws.write(
        "migrations/V1__items.sql",
        "CREATE TABLE items (id INTEGER PRIMARY KEY, n INTEGER NOT NULL DEFAULT 0);\n-- edited after it ran\n",
    );
    ws.write(
        "migrations/V3__items_note.sql",
        "ALTER TABLE items ADD COLUMN note TEXT;\n",
    );
    let (code, out) = ws.migrate(&ws.db(), Backfills::Wait);
    let e = code.unwrap_err().to_string();
    assert!(
        e.contains("applied migration V1__items is different than filesystem one"),
        "{e}\n{out}"
    );
    assert_eq!(ws.history().len(), 2, "nothing applied after the refusal");
}

#[test]
fn a_gate_holds_until_its_backfill_is_done_then_the_rest_applies() {
    let ws = Ws::sqlite();
    ws.write(
        "migrations/V3__items_m_idx.sql",
        "-- The contract step: queries use m once the backfill filled it.\n-- migrate: after-backfill V1\nCREATE INDEX items_m_idx ON items (m);\n",
    );
    let (code, out) = ws.migrate(&ws.db(), Backfills::Wait);
    assert_eq!(code.unwrap(), ExitCode::from(1), "{out}");
    assert!(
        out.contains("V3__items_m_idx waits for V1__fill_m (not run)"),
        "{out}"
    );
    assert!(out.contains("--backfills run"), "{out}");
    assert_eq!(
        ws.history().len(),
        2,
        "everything before the gate is applied"
    );
    // The deploy check agrees.
    let status = |ws: &Ws| {
        std::process::Command::new(crate::support::bin())
            .current_dir(ws.dir.path())
            .args([
                "backfill",
                "status",
                "--require-done",
                "--database-url",
                &ws.db(),
            ])
            .env_remove("DATABASE_URL")
            .output()
            .unwrap()
    };
    let out = status(&ws);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("not done: V1__fill_m (not run), which V3__items_m_idx waits for"),
        "{stdout}"
    );

    let conn = rusqlite::Connection::open(ws.dir.path().join("app.db")).unwrap();
    conn.execute_batch(
        "WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < 100) INSERT INTO items (id, n) SELECT i * 3, i FROM g;",
    )
    .unwrap();
    let (code, out) = ws.migrate(&ws.db(), Backfills::Run);
    assert_eq!(code.unwrap(), ExitCode::SUCCESS, "{out}");
    assert!(
        out.contains("running data migration V1__fill_m inline"),
        "{out}"
    );
    assert!(
        out.contains("V1__fill_m done: 100 rows changed by "),
        "{out}"
    );
    assert!(out.contains("applied V3__items_m_idx"), "{out}");
    assert_eq!(ws.history().len(), 3);
    ws.refinery_accepts();
    let out = status(&ws);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let wrong: i64 = conn
        .query_row("SELECT count(*) FROM items WHERE m IS NOT n * 2", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(wrong, 0);
    // Later gates on the same data migration pass at once: it is recorded as done.
    ws.write(
        "migrations/V4__items_note.sql",
        "-- migrate: after-backfill V1__fill_m\nALTER TABLE items ADD COLUMN note TEXT;\n",
    );
    let (code, out) = ws.migrate(&ws.db(), Backfills::Wait);
    assert_eq!(code.unwrap(), ExitCode::SUCCESS, "{out}");
    assert!(out.contains("applied V4__items_note"), "{out}");
}

#[test]
fn bad_gates_and_directives_are_one_line_errors_and_apply_nothing() {
    for (file, text, expected) in [
        (
            "migrations/V3__gate.sql",
            "-- migrate: after-backfill V9\nSELECT 1;\n",
            "V3__gate.sql:1: `after-backfill V9`: no such data migration",
        ),
        (
            "migrations/V2__items_m.sql",
            "-- migrate: after-backfill V1\nALTER TABLE items ADD COLUMN m INTEGER;\n",
            "can never be met: V1__fill_m requires schema version 2",
        ),
        (
            "migrations/V3__typo.sql",
            "-- a comment\n-- migrate: after-backfil V1\nSELECT 1;\n",
            "V3__typo.sql:2: unknown directive",
        ),
    ] {
        let ws = Ws::sqlite();
        ws.write(file, text);
        let (code, out) = ws.migrate(&ws.db(), Backfills::Wait);
        let e = code.unwrap_err().to_string();
        assert!(e.contains(expected), "{e}\n{out}");
        assert!(!e.contains('\n'));
        assert!(
            !ws.dir.path().join("app.db").exists(),
            "nothing applied, not even connected"
        );
    }
}

#[test]
fn the_binary_exits_1_at_a_gate_and_2_on_bad_input() {
    let ws = Ws::sqlite();
    ws.write(
        "migrations/V3__gate.sql",
        "-- migrate: after-backfill V1\nSELECT 1;\n",
    );
    let run = |args: &[&str]| {
        std::process::Command::new(crate::support::bin())
            .current_dir(ws.dir.path())
            .args(["migrate", "run"])
            .args(args)
            .env_remove("DATABASE_URL")
            .output()
            .unwrap()
    };
    let out = run(&["--database-url", &ws.db()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let out = run(&["--database-url", "mysql://db/app"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

/// This repository's example on PostgreSQL: the deploy sequence of structure, backfill and
/// contract, with the contract step gated on the backfill.
#[test]
fn the_example_deploys_structure_backfill_contract_on_postgres() {
    let url = pg_harness::shared().create_database("deploy");
    // V5 is the example's contract step, gated on V1 and built outside a transaction.
    let ws = Ws::example();
    let (code, out) = ws.migrate(&url, Backfills::Wait);
    assert_eq!(code.unwrap(), ExitCode::from(1), "{out}");
    assert!(out.contains("applied V4__add_counter_caches"), "{out}");
    assert!(
        out.contains("waits for V1__backfill_counter_caches (not run)"),
        "{out}"
    );
    {
        let inputs = Inputs::load(&ws.config).unwrap();
        let mut db = xtask_migrate::backfill::db::postgres::PgBackend::connect(&url).unwrap();
        fixtures::load(&mut db, &inputs.fixtures, 4).unwrap();
        assert!(!db.foreign_keys().unwrap().is_empty());
    }
    let (code, out) = ws.migrate(&url, Backfills::Run);
    assert_eq!(code.unwrap(), ExitCode::SUCCESS, "{out}");
    assert!(
        out.contains("V1__backfill_counter_caches done: 2,500 rows changed"),
        "{out}"
    );
    assert!(
        out.contains("applied V5__index_users_by_followers (outside a transaction)"),
        "{out}"
    );
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let wrong: i64 = client
        .query_one(
            "SELECT count(*) FROM users AS u WHERE posts_count <> (SELECT count(*) FROM posts AS p WHERE p.author_id = u.id)",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(wrong, 0);
    let all = refinery::load_sql_migrations(&ws.config.migrations).unwrap();
    let report = refinery::Runner::new(&all).run(&mut client).unwrap();
    assert!(report.applied_migrations().is_empty());
}

/// On PostgreSQL: a `no-transaction` migration builds its index CONCURRENTLY while another
/// session keeps writing to the table, and is recorded with refinery's own checksum.
#[test]
fn a_no_transaction_migration_runs_concurrently_on_postgres() {
    let url = pg_harness::shared().create_database("migrate_run");
    let dir = tempfile::tempdir().unwrap();
    let migrations = dir.path().join("migrations");
    std::fs::create_dir_all(&migrations).unwrap();
    std::fs::create_dir_all(dir.path().join("data-migrations")).unwrap();
    std::fs::write(
        migrations.join("V1__items.sql"),
        "CREATE TABLE items (id bigserial PRIMARY KEY, n integer NOT NULL);\nINSERT INTO items (n) SELECT g FROM generate_series(1, 200000) AS g;\n",
    )
    .unwrap();
    let index = "-- Built without blocking writes.\n-- migrate: no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS items_n_idx ON items (n);\n";
    std::fs::write(migrations.join("V2__items_n_idx.sql"), index).unwrap();
    let config = Config::defaults(dir.path());
    let migrate = |target: Option<u64>| {
        let args = MigrateRunArgs {
            database_url: Some(url.clone()),
            target,
            backfills: Backfills::Wait,
            tracking_schema: None,
            tracking_prefix: None,
            progress: ProgressMode::Quiet,
        };
        let mut out = Vec::new();
        let code = args.run_to(&config, &mut out);
        (code, String::from_utf8(out).unwrap())
    };
    let (code, out) = migrate(Some(1));
    assert_eq!(code.unwrap(), ExitCode::SUCCESS, "{out}");

    // A writer inserting all the while the index is built.
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, written, url) = (stop.clone(), written.clone(), url.clone());
        std::thread::spawn(move || {
            let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
            while !stop.load(Ordering::SeqCst) {
                client
                    .execute("INSERT INTO items (n) VALUES (-1)", &[])
                    .unwrap();
                written.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    while written.load(Ordering::SeqCst) == 0 {
        std::thread::yield_now();
    }
    let (code, out) = migrate(None);
    let during = written.load(Ordering::SeqCst);
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    assert_eq!(code.unwrap(), ExitCode::SUCCESS, "{out}");
    assert!(
        out.contains("applied V2__items_n_idx (outside a transaction)"),
        "{out}"
    );
    assert!(during > 1, "the writer kept writing");

    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let valid: bool = client
        .query_one(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'items_n_idx'::regclass",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(valid, "a valid index, built concurrently");
    let applied = refinery::Runner::new(&[])
        .get_applied_migrations(&mut client)
        .unwrap();
    let v2 = applied.iter().find(|m| m.version() == 2).unwrap();
    assert_eq!(
        v2.checksum(),
        refinery::Migration::unapplied("V2__items_n_idx", index)
            .unwrap()
            .checksum()
    );
    // refinery's own runner accepts the history.
    let all = refinery::load_sql_migrations(&migrations).unwrap();
    let report = refinery::Runner::new(&all).run(&mut client).unwrap();
    assert!(report.applied_migrations().is_empty());
}

/// `backfill plan` refuses a database whose schema is behind the data migration's `@requires`.
#[test]
fn plan_refuses_a_database_behind_the_required_schema() {
    let ws = Ws::sqlite();
    let args = MigrateRunArgs {
        database_url: Some(ws.db()),
        target: Some(1),
        backfills: Backfills::Wait,
        tracking_schema: None,
        tracking_prefix: None,
        progress: ProgressMode::Quiet,
    };
    args.run_to(&ws.config, &mut Vec::new()).unwrap();
    let out = std::process::Command::new(crate::support::bin())
        .current_dir(ws.dir.path())
        .args(["backfill", "plan", "V1", "--database-url", &ws.db()])
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("V1__fill_m requires schema version V2, but SQLite")
            && stderr.contains("is at V1"),
        "{stderr}"
    );
}

/// `migrate run --backfills run` killed with SIGKILL in the middle of the backfill, then run
/// again: no batch runs twice (the batch adds 1, so a row changed twice shows 2), the backfill
/// finishes, and the gated migration is applied after it.
#[test]
fn an_inline_backfill_killed_mid_way_resumes_exactly_once() {
    let url = pg_harness::shared().create_database("gate_kill");
    let ws = Ws::with(&[]);
    ws.write(
        "migrations/V1__items.sql",
        "CREATE TABLE items (id bigint PRIMARY KEY, n integer NOT NULL DEFAULT 0);\nINSERT INTO items (id) SELECT g FROM generate_series(1, 3000) AS g;\n",
    );
    ws.write(
        "migrations/V2__items_n_idx.sql",
        "-- migrate: after-backfill V1\nSET lock_timeout = '2s';\nCREATE INDEX items_n_idx ON items (n);\n",
    );
    let bump = "-- @requires 1\n-- @table items\n-- @key id\n-- @batch-size 20\n\n-- @batch\nUPDATE items SET n = n + 1 WHERE id > :lower AND id <= :upper AND (SELECT pg_sleep(0.01)) IS NOT NULL;\n\n-- @snapshot\nSELECT id, n FROM items ORDER BY id;\n";
    ws.write_data_migration("V1__bump", bump);
    let spawn = || {
        std::process::Command::new(crate::support::bin())
            .current_dir(ws.dir.path())
            .args([
                "migrate",
                "run",
                "--backfills",
                "run",
                "--progress",
                "quiet",
                "--database-url",
                &url,
            ])
            .env_remove("DATABASE_URL")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let batches = |client: &mut postgres::Client| -> i64 {
        client
            .query_one(
                "SELECT coalesce(sum(batches), 0)::bigint FROM xtask_backfill_ranges",
                &[],
            )
            .map(|r| r.get(0))
            .unwrap_or(0)
    };
    let mut child = spawn();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while batches(&mut client) < 5 {
        assert!(std::time::Instant::now() < deadline, "no batch within 60s");
        assert!(child.try_wait().unwrap().is_none(), "finished too early");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // SIGKILL: no handler runs, the open batch transaction is simply lost.
    child.kill().unwrap();
    child.wait().unwrap();
    let done_before: i64 = batches(&mut client);
    assert!(done_before < 150, "killed mid-way ({done_before} batches)");
    let applied = |client: &mut postgres::Client| -> i64 {
        client
            .query_one("SELECT count(*) FROM refinery_schema_history", &[])
            .unwrap()
            .get(0)
    };
    assert_eq!(applied(&mut client), 1, "the gated migration waits");

    let out = spawn().wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("applied V2__items_n_idx"), "{stdout}");
    assert_eq!(applied(&mut client), 2);
    let (rows, wrong): (i64, i64) = {
        let r = client
            .query_one(
                "SELECT count(*), count(*) FILTER (WHERE n <> 1) FROM items",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!((rows, wrong), (3000, 0), "every row exactly once");
}

/// `backfill plan` refuses a database whose history records a schema migration the data
/// migration depends on with another checksum than the workspace's file.
#[test]
fn plan_refuses_a_database_whose_schema_history_differs() {
    let ws = Ws::sqlite();
    ws.migrate(&ws.db(), Backfills::Wait).0.unwrap();
    ws.write(
        "migrations/V2__items_m.sql",
        "ALTER TABLE items ADD COLUMN m INTEGER; -- edited after it ran\n",
    );
    let out = std::process::Command::new(crate::support::bin())
        .current_dir(ws.dir.path())
        .args(["backfill", "plan", "V1", "--database-url", &ws.db()])
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr
            .contains("records V2 (items_m) with another checksum than migrations/V2__items_m.sql"),
        "{stderr}"
    );
}
