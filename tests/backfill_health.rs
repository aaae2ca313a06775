//! Health throttling against real PostgreSQL servers the tests start, one with a real streaming
//! standby (`pg_basebackup -R`): a run waits while the standby's replay is paused and the lag
//! passes the plan's limit, `pace` changes the limit live, the run continues once the standby
//! catches up; a verification waits on a `--replica-url`'s replay lag; a run waits while VACUUM
//! works on its table and while its throttle query is true; a run waits while the WAL archiver
//! fails (`archive_mode` on, a failing `archive_command`) and continues once it archives again.
//! `status` says why and since when.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use pg_harness::PgServer;
use postgres::{Client, NoTls};
use xtask_migrate::backfill::migration;
use xtask_migrate::backfill::sample::snapshot;
use xtask_migrate::cli::backfill::BackfillCommand;
use xtask_migrate::config::Config;

use crate::support::{bin, write};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: BackfillCommand,
}

fn command(config: &Config, args: &[&str]) -> (Result<ExitCode, String>, String) {
    let cli = Cli::try_parse_from(std::iter::once("backfill").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    let mut out = Vec::new();
    let result = match cli.command {
        BackfillCommand::Plan(a) => a.run_to(config, &mut out),
        BackfillCommand::Status(a) => a.run_to(config, &mut out),
        BackfillCommand::Pace(a) => a.run_to(config, &mut out),
        other => panic!("not used here: {other:?}"),
    };
    (
        result.map_err(|e| e.to_string()),
        String::from_utf8(out).unwrap(),
    )
}

fn ok(config: &Config, args: &[&str]) -> String {
    match command(config, args) {
        (Ok(code), out) if code == ExitCode::SUCCESS => out,
        (result, out) => panic!("{args:?}: {result:?}\n{out}"),
    }
}

const BUMP: &str = "-- @requires 1
-- @table items
-- @key id
-- @batch-size 100

-- @batch
UPDATE items SET n = n + 1 WHERE id > :lower AND id <= :upper;

-- @snapshot
SELECT id, n FROM items ORDER BY id;

-- @expected
SELECT id, n FROM expected WHERE id > :lower AND id <= :upper;

-- @actual
SELECT id, n FROM items WHERE id > :lower AND id <= :upper;
";

/// A workspace with the approved data migration `V1__bump`.
fn workspace() -> (tempfile::TempDir, Config) {
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("Cargo.toml"),
        "[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n",
    );
    write(&dir.path().join("src/lib.rs"), "");
    let config = Config::defaults(dir.path());
    let path = config.data_migrations.join("V1__bump.sql");
    write(&path, BUMP);
    let m = migration::load_file(&path).unwrap();
    let snap = snapshot::path_for(&config.data_migrations.join("snapshots"), &m);
    write(
        &snap,
        &snapshot::file_text(&m, "V1__bump.sql", "approved in a test"),
    );
    (dir, config)
}

/// `items(id, n)` with `rows` rows, and `expected`: what one run of V1 gives.
fn items(client: &mut Client, rows: u64) {
    client
        .batch_execute(&format!(
            "CREATE TABLE items (id bigint PRIMARY KEY, n integer NOT NULL DEFAULT 0, pad text);
             INSERT INTO items (id, pad) SELECT g, repeat('x', 200) FROM generate_series(1, {rows}) AS g;
             CREATE TABLE expected AS SELECT id, n + 1 AS n FROM items;
             ANALYZE;"
        ))
        .unwrap();
}

fn plan(config: &Config, url: &str, flags: &[&str]) -> PathBuf {
    let mut args = vec!["plan", "V1", "--database-url", url];
    args.extend_from_slice(flags);
    ok(config, &args);
    config.data_migrations.join("plans/V1__bump.json")
}

fn spawn(config: &Config, args: &[&str]) -> Child {
    Command::new(bin())
        .current_dir(&config.root)
        .arg("backfill")
        .args(args)
        .env_remove("DATABASE_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finish(mut child: Child, limit: Duration) -> (Option<i32>, String) {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let mut err = String::new();
            let _ = child.stderr.take().unwrap().read_to_string(&mut err);
            panic!("did not finish within {limit:?}: {err}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = child.wait().unwrap();
    let (mut out, mut err) = (String::new(), String::new());
    let _ = child.stdout.take().unwrap().read_to_string(&mut out);
    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
    (status.code(), format!("{out}{err}"))
}

/// The run (or, `verification`, the verification run) of V1 as `status --format json` shows it.
fn run_status(config: &Config, url: &str, verification: bool) -> serde_json::Value {
    let out = ok(
        config,
        &["status", "--database-url", url, "--format", "json"],
    );
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let entry = &json["data_migrations"][0];
    if verification {
        entry["verifications"][0].clone()
    } else {
        entry["runs"][0].clone()
    }
}

/// Polls `status` until `until` holds of the run, within `limit`.
fn wait_for(
    config: &Config,
    url: &str,
    verification: bool,
    limit: Duration,
    what: &str,
    until: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + limit;
    loop {
        let run = run_status(config, url, verification);
        if until(&run) {
            return run;
        }
        assert!(
            Instant::now() < deadline,
            "not {what} within {limit:?}: {run}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn throttled(run: &serde_json::Value) -> bool {
    !run["throttled_since"].is_null()
}

/// Waits until the standby has replayed everything the primary wrote.
fn caught_up(primary: &mut Client) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let behind: Option<f64> = primary
            .query_one(
                "SELECT max(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn))::float8 FROM pg_stat_replication",
                &[],
            )
            .unwrap()
            .get(0);
        if behind == Some(0.0) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the standby did not catch up: {behind:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_run_waits_while_a_standby_lags_and_continues_when_it_catches_up() {
    let primary = PgServer::start().unwrap();
    let replica = primary.start_replica().unwrap();
    let url = primary.create_database("health");
    let mut client = Client::connect(&url, NoTls).unwrap();
    items(&mut client, 20_000);
    let mut standby = Client::connect(&replica.url("postgres"), NoTls).unwrap();
    let in_recovery: bool = standby
        .query_one("SELECT pg_is_in_recovery()", &[])
        .unwrap()
        .get(0);
    assert!(in_recovery, "a standby");
    caught_up(&mut client);

    let (_dir, config) = workspace();
    let plan = plan(
        &config,
        &url,
        &[
            "--max-replication-lag-bytes",
            "256kB",
            "--fixed-batch-size",
            "--pause",
            "20ms",
        ],
    );
    let summary = std::fs::read_to_string(&plan).unwrap();
    assert!(
        summary.contains("\"max_replication_lag_bytes\": 262144"),
        "{summary}"
    );

    standby
        .batch_execute("SELECT pg_wal_replay_pause()")
        .unwrap();
    let worker = spawn(
        &config,
        &[
            "run",
            plan.to_str().unwrap(),
            "--database-url",
            &url,
            "--progress",
            "lines",
        ],
    );
    // Each batch writes WAL the paused standby does not replay: past 256kB, the run waits.
    let run = wait_for(
        &config,
        &url,
        false,
        Duration::from_secs(60),
        "throttled",
        throttled,
    );
    let reason = run["throttle_reason"].as_str().unwrap().to_string();
    assert!(
        reason.starts_with("replication lag: ")
            && reason.contains("of WAL not replayed (limit 256 kB)"),
        "{reason}"
    );
    assert!(
        run["throttled_since"].as_str().unwrap().ends_with('Z'),
        "{run}"
    );
    let text = ok(&config, &["status", "--database-url", &url]);
    assert!(
        text.contains("throttled since ") && text.contains(&reason),
        "{text}"
    );
    // It really waits: no batch while throttled.
    let before = run["rows_done"].as_u64().unwrap();
    assert!(before < 20_000, "{run}");
    std::thread::sleep(Duration::from_millis(1500));
    let still = run_status(&config, &url, false);
    assert_eq!(still["rows_done"].as_u64().unwrap(), before, "{still}");
    assert!(throttled(&still));

    // `pace` switches the limit off live: the run goes on though the standby still lags...
    let out = ok(
        &config,
        &[
            "pace",
            "V1",
            "--max-replication-lag-bytes",
            "off",
            "--database-url",
            &url,
        ],
    );
    assert!(out.contains("health limits off"), "{out}");
    wait_for(
        &config,
        &url,
        false,
        Duration::from_secs(30),
        "going on",
        |r| !throttled(r) && r["rows_done"].as_u64().unwrap() > before,
    );
    // ... and back to the plan's: it waits again.
    let out = ok(
        &config,
        &[
            "pace",
            "V1",
            "--max-replication-lag-bytes",
            "plan",
            "--database-url",
            &url,
        ],
    );
    assert!(
        out.contains("health limits replication lag at most 256 kB"),
        "{out}"
    );
    let run = wait_for(
        &config,
        &url,
        false,
        Duration::from_secs(30),
        "throttled again",
        throttled,
    );
    assert_ne!(run["state"], "done", "{run}");

    // The standby catches up: the run continues and finishes.
    standby
        .batch_execute("SELECT pg_wal_replay_resume()")
        .unwrap();
    let (code, out) = finish(worker, Duration::from_secs(120));
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("throttled: replication lag: "), "{out}");
    assert!(
        out.contains("the database is healthy again: continuing"),
        "{out}"
    );
    assert!(
        out.contains("for the database's health (the plan's limits)"),
        "{out}"
    );
    let done = run_status(&config, &url, false);
    assert_eq!(done["state"], "done");
    assert_eq!(done["rows_done"], 20_000);
    assert!(!throttled(&done), "{done}");
    let wrong: i64 = client
        .query_one("SELECT count(*) FROM items WHERE n <> 1", &[])
        .unwrap()
        .get(0);
    assert_eq!(wrong, 0);

    // A verification watches a standby given with --replica-url: its replay falls behind in
    // time while its replay is paused and the verification's tracking rows stream to it.
    caught_up(&mut client);
    standby
        .batch_execute("SELECT pg_wal_replay_pause()")
        .unwrap();
    // The last transaction the standby replayed is then older than the limit, so the
    // verification's first look at the standby finds it behind however fast its batches go
    // (they may all be done within a second).
    std::thread::sleep(Duration::from_millis(1500));
    let verifier = spawn(
        &config,
        &[
            "verify",
            "V1",
            "--database-url",
            &url,
            "--replica-url",
            &replica.url("postgres"),
            "--max-replication-lag",
            "1s",
            "--batch-size",
            "200",
            "--pause",
            "50ms",
            "--progress",
            "quiet",
        ],
    );
    let run = wait_for(
        &config,
        &url,
        true,
        Duration::from_secs(60),
        "throttled",
        throttled,
    );
    let reason = run["throttle_reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!("127.0.0.1:{}/postgres replays", replica.port()))
            && reason.contains("behind (limit 1s)"),
        "{reason}"
    );
    standby
        .batch_execute("SELECT pg_wal_replay_resume()")
        .unwrap();
    let (code, out) = finish(verifier, Duration::from_secs(120));
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("no differences"), "{out}");
}

#[test]
fn a_run_waits_for_vacuum_on_its_table_and_for_its_throttle_query() {
    let url = pg_harness::shared().create_database("health_vacuum");
    let mut client = Client::connect(&url, NoTls).unwrap();
    items(&mut client, 20_000);
    client
        .batch_execute(
            "CREATE TABLE maintenance (active boolean NOT NULL);
             INSERT INTO maintenance VALUES (true);
             ALTER TABLE items SET (autovacuum_enabled = false);
             UPDATE items SET pad = repeat('y', 200);",
        )
        .unwrap();
    let (_dir, config) = workspace();
    let plan = plan(
        &config,
        &url,
        &[
            "--pause-during-vacuum",
            "--throttle-query",
            "SELECT active FROM maintenance",
            "--pause",
            "10ms",
            "--fixed-batch-size",
        ],
    );
    let worker = spawn(
        &config,
        &[
            "run",
            plan.to_str().unwrap(),
            "--database-url",
            &url,
            "--progress",
            "quiet",
        ],
    );
    let run = wait_for(
        &config,
        &url,
        false,
        Duration::from_secs(30),
        "throttled",
        throttled,
    );
    assert_eq!(
        run["throttle_reason"],
        "the throttle query `SELECT active FROM maintenance` is true"
    );
    assert_eq!(run["rows_done"], 0);

    // A slow VACUUM of the table (cost-based delay): the run waits for it too.
    let vacuum = {
        let url = url.clone();
        std::thread::spawn(move || {
            let mut c = Client::connect(&url, NoTls).unwrap();
            // One statement per message: VACUUM refuses the implicit transaction of several.
            c.batch_execute("SET vacuum_cost_delay = '100ms'").unwrap();
            c.batch_execute("SET vacuum_cost_limit = 1").unwrap();
            c.batch_execute("VACUUM items")
        })
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let pid: i32 = loop {
        let rows = client
            .query(
                "SELECT pid FROM pg_stat_progress_vacuum WHERE relid = 'items'::regclass",
                &[],
            )
            .unwrap();
        if let Some(r) = rows.first() {
            break r.get(0);
        }
        assert!(
            Instant::now() < deadline && !vacuum.is_finished(),
            "VACUUM did not start (or ended at once)"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    client
        .batch_execute("UPDATE maintenance SET active = false")
        .unwrap();
    let run = wait_for(
        &config,
        &url,
        false,
        Duration::from_secs(30),
        "waiting for VACUUM",
        |r| {
            r["throttle_reason"]
                .as_str()
                .is_some_and(|s| s.starts_with("VACUUM works on items ("))
        },
    );
    assert_eq!(run["rows_done"], 0, "{run}");
    client
        .query_one("SELECT pg_cancel_backend($1)", &[&pid])
        .unwrap();
    assert!(vacuum.join().unwrap().is_err(), "the VACUUM was cancelled");
    let (code, out) = finish(worker, Duration::from_secs(120));
    assert_eq!(code, Some(0), "{out}");
    let done = run_status(&config, &url, false);
    assert_eq!(
        (done["state"].clone(), done["rows_done"].clone()),
        ("done".into(), 20_000.into())
    );
    assert!(!throttled(&done));
}

/// The archiver's counters: (archived, failed).
fn archiver_counts(client: &mut Client) -> (i64, i64) {
    let row = client
        .query_one(
            "SELECT archived_count, failed_count FROM pg_stat_archiver",
            &[],
        )
        .unwrap();
    (row.get(0), row.get(1))
}

/// Completes the current WAL segment (after writing something, so there is one to complete).
fn switch_wal(client: &mut Client) {
    client
        .batch_execute("CREATE TEMP TABLE IF NOT EXISTS wal_note (n int); INSERT INTO wal_note VALUES (1); SELECT pg_switch_wal();")
        .unwrap();
}

#[test]
fn a_run_waits_while_the_wal_archiver_fails_and_continues_when_it_archives_again() {
    // A server of its own: archiving needs `archive_mode`, which only a restart changes.
    let mut server = PgServer::start().unwrap();
    {
        let mut admin = Client::connect(&server.url("postgres"), NoTls).unwrap();
        // One statement per message: ALTER SYSTEM refuses the implicit transaction of several.
        admin
            .batch_execute("ALTER SYSTEM SET archive_mode = on")
            .unwrap();
        admin
            .batch_execute("ALTER SYSTEM SET archive_command = 'false'")
            .unwrap();
    }
    server.restart(Duration::ZERO).unwrap();
    let url = server.create_database("health_archiver");
    let mut client = Client::connect(&url, NoTls).unwrap();
    items(&mut client, 20_000);
    // A completed segment the archiver cannot archive: its attempts fail.
    switch_wal(&mut client);
    let deadline = Instant::now() + Duration::from_secs(30);
    while archiver_counts(&mut client).1 == 0 {
        assert!(Instant::now() < deadline, "the archiver never tried");
        std::thread::sleep(Duration::from_millis(50));
    }

    let (_dir, config) = workspace();
    let plan = plan(
        &config,
        &url,
        &[
            "--max-archive-lag",
            "4",
            "--pause",
            "10ms",
            "--fixed-batch-size",
        ],
    );
    let plan_text = std::fs::read_to_string(&plan).unwrap();
    assert!(
        plan_text.contains("max_archive_lag_segments"),
        "{plan_text}"
    );
    let worker = spawn(
        &config,
        &[
            "run",
            plan.to_str().unwrap(),
            "--database-url",
            &url,
            "--progress",
            "quiet",
        ],
    );
    let run = wait_for(
        &config,
        &url,
        false,
        Duration::from_secs(30),
        "throttled",
        throttled,
    );
    assert_eq!(
        run["throttle_reason"], "the WAL archiver's last attempt failed",
        "{run}"
    );
    assert_eq!(run["rows_done"], 0, "{run}");
    // Still waiting a while later: the failing archiver holds the run, whatever its pace.
    std::thread::sleep(Duration::from_millis(500));
    let run = run_status(&config, &url, false);
    assert!(throttled(&run), "{run}");
    assert_eq!(run["rows_done"], 0, "{run}");

    // The archive works again: the archiver (woken by the reload and the next segment)
    // archives what waited, and the run goes on.
    client
        .batch_execute("ALTER SYSTEM SET archive_command = 'true'")
        .unwrap();
    client.batch_execute("SELECT pg_reload_conf()").unwrap();
    switch_wal(&mut client);
    let (code, out) = finish(worker, Duration::from_secs(180));
    assert_eq!(code, Some(0), "{out}");
    assert!(archiver_counts(&mut client).0 > 0, "nothing was archived");
    let done = run_status(&config, &url, false);
    assert_eq!(
        (done["state"].clone(), done["rows_done"].clone()),
        ("done".into(), 20_000.into())
    );
    assert!(!throttled(&done), "{done}");
}
