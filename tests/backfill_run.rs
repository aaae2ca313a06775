//! `backfill plan`, `run`, `status`, `pause`, `resume`, `cancel` and `pace` against a real
//! PostgreSQL server the tests start (and a SQLite file): exactly-once under SIGKILL, a server
//! restart, row locks, concurrent application writes, several workers, live control, refused
//! plans, and no password anywhere.
//!
//! Workers run as separate processes of the real binary where it matters (kills, signals,
//! control from another process); the other commands run in this process through their `run`
//! functions.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use clap::Parser;
use pg_harness::PgServer;
use postgres::{Client, NoTls};
use xtask_migrate::backfill::db::target::Target;
use xtask_migrate::backfill::migration;
use xtask_migrate::backfill::run::plan::Plan;
use xtask_migrate::backfill::run::progress::{Progress, ProgressMode};
use xtask_migrate::backfill::run::{self, Finish, RunOptions};
use xtask_migrate::backfill::sample::snapshot;
use xtask_migrate::cli::backfill::StatusArgs;
use xtask_migrate::cli::production::{
    CancelArgs, PaceArgs, PauseArgs, PlanArgs, ResumeArgs, RunArgs,
};
use xtask_migrate::config::Config;

use crate::support::bin;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Sub,
}

#[derive(clap::Subcommand)]
enum Sub {
    Plan(PlanArgs),
    Run(RunArgs),
    Status(StatusArgs),
    Pause(PauseArgs),
    Resume(ResumeArgs),
    Cancel(CancelArgs),
    Pace(PaceArgs),
}

/// Runs a command in this process; `(exit code is success, stdout, error)`.
fn command(config: &Config, args: &[&str]) -> (Result<ExitCode, String>, String) {
    let cli = Cli::try_parse_from(std::iter::once("backfill").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    let mut out = Vec::new();
    let result = match cli.command {
        Sub::Plan(a) => a.run_to(config, &mut out),
        Sub::Run(a) => a.run_to(config, &mut out),
        Sub::Status(a) => a.run_to(config, &mut out),
        Sub::Pause(a) => a.run_to(config, &mut out),
        Sub::Resume(a) => a.run_to(config, &mut out),
        Sub::Cancel(a) => a.run_to(config, &mut out),
        Sub::Pace(a) => a.run_to(config, &mut out),
    };
    (
        result.map_err(|e| e.to_string()),
        String::from_utf8(out).unwrap(),
    )
}

fn ok(config: &Config, args: &[&str]) -> String {
    let (result, out) = command(config, args);
    match result {
        Ok(code) if code == ExitCode::SUCCESS => out,
        Ok(code) => panic!("{args:?} exited {code:?}: {out}"),
        Err(e) => panic!("{args:?} failed: {e}\n{out}"),
    }
}

fn err(config: &Config, args: &[&str]) -> String {
    match command(config, args) {
        (Err(e), _) => e,
        (Ok(code), out) => panic!("{args:?} succeeded ({code:?}): {out}"),
    }
}

/// A worker: the real binary running `backfill run ARGS` in the workspace.
fn spawn_worker(config: &Config, args: &[&str]) -> Child {
    Command::new(bin())
        .current_dir(&config.root)
        .args(["backfill", "run"])
        .args(args)
        .env_remove("DATABASE_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for a worker; `(exit code, stdout, stderr)`.
fn wait(mut child: Child, limit: Duration) -> (Option<i32>, String, String) {
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let mut err = String::new();
            let _ = child.stderr.take().unwrap().read_to_string(&mut err);
            panic!("worker did not finish within {limit:?}: {err}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (mut out, mut err) = (String::new(), String::new());
    let _ = child.stdout.take().unwrap().read_to_string(&mut out);
    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
    (status.code(), out, err)
}

/// A workspace with data migrations (approved: an accepted snapshot of the current file).
struct Ws {
    _dir: tempfile::TempDir,
    config: Config,
}

fn bump_text(extra: &str, batch_size: u64) -> String {
    format!(
        "-- @requires 1\n-- @table items\n-- @key id\n-- @batch-size {batch_size}\n\n-- @batch\nUPDATE items SET n = n + 1 WHERE id > :lower AND id <= :upper{extra};\n\n-- @snapshot\nSELECT id, n FROM items ORDER BY id;\n"
    )
}

impl Ws {
    fn new(files: &[(&str, String)]) -> Ws {
        let dir = tempfile::tempdir().unwrap();
        // A Cargo workspace, for the binary's config discovery.
        std::fs::write(
            dir.path().join("Cargo.toml"),
            "[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n",
        )
        .unwrap();
        std::fs::create_dir_all(dir.path().join("src")).unwrap();
        std::fs::write(dir.path().join("src/lib.rs"), "").unwrap();
        let config = Config::defaults(dir.path());
        std::fs::create_dir_all(&config.data_migrations).unwrap();
        let ws = Ws { _dir: dir, config };
        for (name, text) in files {
            ws.write(name, text);
        }
        ws
    }

    /// Writes a data migration and approves it.
    fn write(&self, name: &str, text: &str) {
        let path = self.config.data_migrations.join(name);
        std::fs::write(&path, text).unwrap();
        self.approve(name);
    }

    fn approve(&self, name: &str) {
        let path = self.config.data_migrations.join(name);
        let m = migration::load_file(&path).unwrap();
        let snap = snapshot::path_for(&self.config.data_migrations.join("snapshots"), &m);
        std::fs::create_dir_all(snap.parent().unwrap()).unwrap();
        std::fs::write(&snap, snapshot::file_text(&m, name, "approved in a test")).unwrap();
    }

    fn plan_path(&self, id: &str) -> PathBuf {
        self.config
            .data_migrations
            .join("plans")
            .join(format!("{id}.json"))
    }

    /// `backfill plan NAME flags...`; returns the plan file.
    fn plan(&self, id: &str, flags: &[&str]) -> PathBuf {
        let mut args = vec!["plan", id];
        args.extend_from_slice(flags);
        ok(&self.config, &args);
        let m = migration::find(&self.config.data_migrations, id).unwrap();
        self.plan_path(&m.id())
    }
}

/// A database of the shared server with `items(id, n, note)`: `rows` rows, ids 3, 6, 9, ...
fn items_db(prefix: &str, rows: u64) -> (String, Client) {
    let url = pg_harness::shared().create_database(prefix);
    let mut client = Client::connect(&url, NoTls).unwrap();
    client
        .batch_execute(&format!(
            "CREATE TABLE items (id bigint PRIMARY KEY, n integer NOT NULL DEFAULT 0, note integer NOT NULL DEFAULT 0);
             INSERT INTO items (id) SELECT g * 3 FROM generate_series(1, {rows}) AS g;
             CREATE TABLE expected AS SELECT * FROM items;
             UPDATE expected SET n = n + 1;
             ANALYZE items;"
        ))
        .unwrap();
    (url, client)
}

/// The rows differ from what one plain UPDATE gives: `(missing or different, extra)`.
fn differences(client: &mut Client) -> (i64, i64) {
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM (SELECT id, n FROM expected EXCEPT SELECT id, n FROM items) AS a),
                    (SELECT count(*) FROM (SELECT id, n FROM items EXCEPT SELECT id, n FROM expected) AS b)",
            &[],
        )
        .unwrap();
    (row.get(0), row.get(1))
}

/// Every range of the current run is done, and its batches tile it exactly once: each batch starts where the
/// previous ended, from the range's lower bound to its final cursor. Returns the workers seen.
fn assert_tiled(client: &mut Client, migration: &str) -> Vec<String> {
    let ranges = client
        .query(
            "SELECT g.id, g.lower_key, g.cursor_key, g.done, g.rows_done
             FROM xtask_backfill_ranges AS g JOIN xtask_backfill_runs AS r ON r.id = g.run_id
             WHERE r.migration = $1 AND r.superseded_at IS NULL ORDER BY g.ord",
            &[&migration],
        )
        .unwrap();
    assert!(!ranges.is_empty());
    let mut workers = Vec::new();
    for range in &ranges {
        let (id, lower, cursor, done, rows): (i64, String, String, bool, i64) = (
            range.get(0),
            range.get(1),
            range.get(2),
            range.get(3),
            range.get(4),
        );
        assert!(done, "range {id} is not done");
        let batches = client
            .query(
                "SELECT lower_key, upper_key, rows_changed, worker FROM xtask_backfill_batch_log WHERE range_id = $1",
                &[&id],
            )
            .unwrap();
        let mut next: std::collections::HashMap<String, String> = Default::default();
        let mut logged = 0;
        for b in &batches {
            let (lo, hi): (String, String) = (b.get(0), b.get(1));
            assert!(
                next.insert(lo.clone(), hi).is_none(),
                "two batches start at {lo}"
            );
            logged += b.get::<_, i64>(2);
            workers.push(b.get::<_, String>(3));
        }
        let mut at = lower;
        let mut walked = 0;
        while let Some(hi) = next.get(&at) {
            at = hi.clone();
            walked += 1;
        }
        assert_eq!(walked, batches.len(), "range {id}: batches do not chain");
        assert_eq!(at, cursor, "range {id}: the chain ends at the cursor");
        assert_eq!(logged, rows, "range {id}: logged rows");
    }
    workers.sort();
    workers.dedup();
    workers
}

fn state(client: &mut Client, migration: &str) -> String {
    client
        .query_one(
            "SELECT state FROM xtask_backfill_runs WHERE migration = $1 AND superseded_at IS NULL",
            &[&migration],
        )
        .unwrap()
        .get(0)
}

/// Waits (polling, with a deadline) until a worker has committed a batch of the data migration
/// whose id starts with `prefix` on `url` (PostgreSQL, or a SQLite file path).
fn until_a_batch_committed(url: &str, prefix: &str) {
    let sql = "SELECT coalesce(sum(g.batches), 0) FROM xtask_backfill_ranges AS g
               JOIN xtask_backfill_runs AS r ON r.id = g.run_id WHERE r.migration LIKE $1";
    let pattern = format!("{prefix}%");
    let mut batches: Box<dyn FnMut() -> i64> = if url.starts_with("postgres") {
        let mut client = Client::connect(url, NoTls).unwrap();
        let sql = sql.replace(
            "coalesce(sum(g.batches), 0)",
            "coalesce(sum(g.batches), 0)::bigint",
        );
        Box::new(move || {
            client
                .query_one(&sql, &[&pattern])
                .map(|r| r.get::<_, i64>(0))
                .unwrap_or(0)
        })
    } else {
        let path = url.trim_start_matches("sqlite://").to_string();
        let sql = sql.replace("$1", "?1");
        Box::new(move || {
            rusqlite::Connection::open(&path)
                .and_then(|c| c.query_row(&sql, [&pattern], |r| r.get::<_, i64>(0)))
                .unwrap_or(0)
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while batches() == 0 {
        assert!(
            Instant::now() < deadline,
            "no batch of {prefix} committed within 30s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn rows_done(client: &mut Client) -> i64 {
    client
        .query_one(
            "SELECT coalesce(sum(rows_done), 0)::bigint FROM xtask_backfill_ranges",
            &[],
        )
        .unwrap()
        .get(0)
}

/// Runs a plan in this process (a thread of it, for several workers).
fn run_here(
    config: &Config,
    plan: &Path,
    url: &str,
    worker: &str,
) -> anyhow::Result<run::RunReport> {
    let plan_file = Plan::load(plan)?;
    let migration = migration::load_file(&config.root.join(&plan_file.migration.file))?;
    let target = Target::parse(url).map_err(anyhow::Error::msg)?;
    static NEVER: AtomicBool = AtomicBool::new(false);
    let options = RunOptions {
        worker: worker.into(),
        progress: Progress::new(ProgressMode::Quiet, Duration::from_secs(60)),
        stop: &NEVER,
        poll: Duration::from_millis(50),
        max_batches: None,
        restart: None,
    };
    run::run(&target, &plan_file, &migration, options, &mut Vec::new())
}

/// SIGKILL at random points, many times, then resume: exactly the rows one UPDATE gives, with
/// a batch that is not idempotent (`n = n + 1`). Batches sleep 20ms inside their transaction,
/// so most kills land in the middle of one.
#[test]
fn killed_at_random_points_and_resumed_gives_exactly_one_update() {
    let (url, mut client) = items_db("kill", 9000);
    let ws = Ws::new(&[(
        "V1__bump.sql",
        bump_text(" AND (SELECT pg_sleep(0.02)) IS NOT NULL", 40),
    )]);
    let plan = ws.plan("V1", &["--fixed-batch-size", "--ranges", "3"]);
    let plan = plan.to_str().unwrap();
    let mut kills = 0;
    let mut mid_transaction = 0;
    let mut seed = 0x5eed_u64;
    while kills < 15 {
        let child = spawn_worker(
            &ws.config,
            &[plan, "--database-url", &url, "--progress", "quiet"],
        );
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        // The binary first finds its workspace (cargo metadata), then connects and runs.
        let after = Duration::from_millis(150 + (seed >> 33) % 250);
        std::thread::sleep(after);
        let mut child = child;
        if child.try_wait().unwrap().is_some() {
            break;
        }
        // SIGKILL: no handler runs, the open transaction is simply lost.
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
        // A batch was open when the server still sees the killed session in a transaction.
        let open: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'xtask-migrate backfill' AND state LIKE 'idle in transaction%' OR (application_name = 'xtask-migrate backfill' AND state = 'active')",
                &[],
            )
            .unwrap()
            .get(0);
        mid_transaction += open.min(1);
    }
    assert!(kills >= 10, "only {kills} kills before the run finished");
    let (code, out, errors) = wait(
        spawn_worker(
            &ws.config,
            &[plan, "--database-url", &url, "--progress", "lines"],
        ),
        Duration::from_secs(60),
    );
    assert_eq!(code, Some(0), "{out}\n{errors}");
    // The last killed worker may have finished the run just before its kill.
    assert!(
        out.contains("V1__bump done") || out.contains("V1__bump is already done"),
        "{out}"
    );
    assert_eq!(differences(&mut client), (0, 0));
    assert_tiled(&mut client, "V1__bump");
    assert_eq!(state(&mut client, "V1__bump"), "done");
    eprintln!("{kills} kills, {mid_transaction} seen mid-transaction");
}

/// The server restarts in the middle of a run: the worker reconnects and finishes.
#[test]
fn a_server_restart_mid_run_reconnects_and_completes() {
    let mut server = PgServer::start().unwrap();
    let url = server.create_database("restart");
    let mut client = Client::connect(&url, NoTls).unwrap();
    client
        .batch_execute(
            "CREATE TABLE items (id bigint PRIMARY KEY, n integer NOT NULL DEFAULT 0, note integer NOT NULL DEFAULT 0);
             INSERT INTO items (id) SELECT g FROM generate_series(1, 4000) AS g;
             CREATE TABLE expected AS SELECT * FROM items; UPDATE expected SET n = n + 1;",
        )
        .unwrap();
    drop(client);
    let ws = Ws::new(&[(
        "V1__bump.sql",
        bump_text(" AND (SELECT pg_sleep(0.005)) IS NOT NULL", 20),
    )]);
    let plan = ws.plan("V1", &["--fixed-batch-size", "--ranges", "1"]);
    let (config, plan2, url2) = (ws.config.clone(), plan.clone(), url.clone());
    let worker = std::thread::spawn(move || run_here(&config, &plan2, &url2, "w1"));
    until_a_batch_committed(&url, "V1");
    server.restart(Duration::from_millis(700)).unwrap();
    let report = worker.join().unwrap().unwrap();
    assert_eq!(report.finish, Finish::Done);
    assert!(report.retries > 0, "the restart was noticed: {report:?}");
    let mut client = Client::connect(&url, NoTls).unwrap();
    assert_eq!(differences(&mut client), (0, 0));
    assert_tiled(&mut client, "V1__bump");
}

/// Another session holds a row lock: each attempt waits at most lock_timeout, the batch is
/// retried with backoff, and completes once the lock is released.
#[test]
fn a_held_row_lock_costs_lock_timeouts_and_retries_not_a_hang() {
    let (url, mut client) = items_db("lock", 600);
    let ws = Ws::new(&[("V1__bump.sql", bump_text("", 100))]);
    let plan = ws.plan(
        "V1",
        &[
            "--fixed-batch-size",
            "--ranges",
            "1",
            "--lock-timeout",
            "100ms",
            "--max-retries",
            "30",
        ],
    );
    let mut locker = Client::connect(&url, NoTls).unwrap();
    locker
        .batch_execute("BEGIN; SELECT * FROM items WHERE id = 900 FOR UPDATE")
        .unwrap();
    let (config, plan2, url2) = (ws.config.clone(), plan.clone(), url.clone());
    let started = Instant::now();
    let worker = std::thread::spawn(move || run_here(&config, &plan2, &url2, "w1"));
    std::thread::sleep(Duration::from_millis(1200));
    // The worker is stuck behind the lock, not done, and not waiting in one long wait: no
    // session of it has been waiting on a lock for longer than lock_timeout.
    let longest_wait: f64 = client
        .query_one(
            "SELECT coalesce(max(extract(epoch FROM now() - state_change)), 0)::float8 FROM pg_stat_activity
             WHERE application_name = 'xtask-migrate backfill' AND wait_event_type = 'Lock'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(
        longest_wait < 0.5,
        "a batch waited {longest_wait}s on the lock"
    );
    assert!(!worker.is_finished());
    locker.batch_execute("COMMIT").unwrap();
    let report = worker.join().unwrap().unwrap();
    assert_eq!(report.finish, Finish::Done);
    assert!(report.retries >= 3, "{report:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(differences(&mut client), (0, 0));
}

/// The application keeps writing the same rows (another column) and adding rows while the
/// backfill runs: every application write survives, every old row is backfilled once.
#[test]
fn concurrent_application_writes_all_survive() {
    let (url, mut client) = items_db("app", 3000);
    let ws = Ws::new(&[("V1__bump.sql", bump_text("", 50))]);
    let plan = ws.plan(
        "V1",
        &["--fixed-batch-size", "--ranges", "2", "--pause", "5ms"],
    );
    let (config, plan2, url2) = (ws.config.clone(), plan.clone(), url.clone());
    let worker = std::thread::spawn(move || run_here(&config, &plan2, &url2, "w1"));
    let mut app = Client::connect(&url, NoTls).unwrap();
    let (mut writes, mut inserts) = (0i64, 0i64);
    let mut i = 0u64;
    while !worker.is_finished() {
        i += 1;
        let id = ((i * 7919) % 3000 + 1) as i64 * 3;
        app.execute("UPDATE items SET note = note + 1 WHERE id = $1", &[&id])
            .unwrap();
        writes += 1;
        if i.is_multiple_of(10) {
            let new = 100_000 + i as i64;
            app.execute("INSERT INTO items (id, note) VALUES ($1, 1)", &[&new])
                .unwrap();
            inserts += 1;
        }
    }
    let report = worker.join().unwrap().unwrap();
    assert_eq!(report.finish, Finish::Done);
    assert!(
        writes > 50,
        "the application wrote during the run ({writes})"
    );
    let row = client
        .query_one(
            "SELECT (SELECT sum(note) FROM items WHERE id < 100000)::bigint, (SELECT sum(note) FROM items WHERE id >= 100000)::bigint,
                    (SELECT count(*) FROM items WHERE id < 100000 AND n <> 1)",
            &[],
        )
        .unwrap();
    assert_eq!(
        row.get::<_, i64>(0),
        writes,
        "every application update survived"
    );
    assert_eq!(row.get::<_, Option<i64>>(1).unwrap_or(0), inserts);
    assert_eq!(
        row.get::<_, i64>(2),
        0,
        "every old row was backfilled exactly once"
    );
}

/// Two worker processes, then four in-process workers (threads, one connection each), finish
/// one run between them, each range exactly once.
#[test]
fn two_and_four_workers_share_one_run() {
    for (workers, processes) in [(2usize, true), (4, false)] {
        let (url, mut client) = items_db(&format!("workers{workers}"), 4000);
        let ws = Ws::new(&[(
            "V1__bump.sql",
            bump_text(" AND (SELECT pg_sleep(0.005)) IS NOT NULL", 50),
        )]);
        let plan = ws.plan("V1", &["--fixed-batch-size", "--ranges", "8"]);
        let seen = if processes {
            let plan = plan.to_str().unwrap();
            let children: Vec<Child> = (0..workers)
                .map(|i| {
                    spawn_worker(
                        &ws.config,
                        &[
                            plan,
                            "--database-url",
                            &url,
                            "--worker-id",
                            &format!("p{i}"),
                            "--progress",
                            "quiet",
                        ],
                    )
                })
                .collect();
            for child in children {
                let (code, out, errors) = wait(child, Duration::from_secs(60));
                assert_eq!(code, Some(0), "{out}\n{errors}");
            }
            assert_tiled(&mut client, "V1__bump")
        } else {
            let handles: Vec<_> = (0..workers)
                .map(|i| {
                    let (config, plan, url) = (ws.config.clone(), plan.clone(), url.clone());
                    std::thread::spawn(move || run_here(&config, &plan, &url, &format!("t{i}")))
                })
                .collect();
            for h in handles {
                assert_eq!(h.join().unwrap().unwrap().finish, Finish::Done);
            }
            assert_tiled(&mut client, "V1__bump")
        };
        assert!(seen.len() >= 2, "{workers} workers, batches by {seen:?}");
        assert_eq!(differences(&mut client), (0, 0));
        assert_eq!(state(&mut client, "V1__bump"), "done");
    }
}

/// Pause and resume a worker process from this one; change its pace; cancel another run.
#[test]
fn pause_resume_pace_and_cancel_from_another_process() {
    let (url, mut client) = items_db("control", 3000);
    let ws = Ws::new(&[
        ("V1__bump.sql", bump_text("", 25)),
        (
            "V2__other.sql",
            "-- @requires 1\n-- @table items\n-- @key id\n-- @batch-size 10\n-- @batch\nUPDATE items SET note = note + 1 WHERE id > :lower AND id <= :upper;\n-- @snapshot\nSELECT id, note FROM items ORDER BY id;\n".into(),
        ),
    ]);
    let plan = ws.plan(
        "V1",
        &["--fixed-batch-size", "--ranges", "1", "--pause", "20ms"],
    );
    let child = spawn_worker(
        &ws.config,
        &[
            plan.to_str().unwrap(),
            "--database-url",
            &url,
            "--progress",
            "lines",
            "--progress-interval",
            "0",
        ],
    );
    until_a_batch_committed(&url, "V1");
    let out = ok(&ws.config, &["pause", "V1", "--database-url", &url]);
    assert!(out.contains("V1__bump: running -> paused"), "{out}");
    // The batch in flight when the state changed still commits; then nothing may for a while
    // (absence can only be observed over a window).
    std::thread::sleep(Duration::from_millis(300));
    let before = rows_done(&mut client);
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(rows_done(&mut client), before, "no batch while paused");
    assert!(before > 0 && before < 3000, "{before}");
    let out = ok(&ws.config, &["status", "--database-url", &url]);
    assert!(out.contains(" approved\n  run 1: paused, "), "{out}");
    // Pausing twice is fine; resuming a paused run continues it.
    assert!(ok(&ws.config, &["pause", "bump", "--database-url", &url]).contains("already paused"));
    let out = ok(
        &ws.config,
        &[
            "pace",
            "V1",
            "--database-url",
            &url,
            "--batch-size",
            "200",
            "--pause",
            "0",
        ],
    );
    assert!(out.contains("batch size 200 (fixed), pause 0s"), "{out}");
    assert!(ok(&ws.config, &["resume", "1", "--database-url", &url]).contains("paused -> running"));
    let (code, out, errors) = wait(child, Duration::from_secs(30));
    assert_eq!(code, Some(0), "{out}\n{errors}");
    assert!(errors.contains("waiting: paused"), "{errors}");
    assert!(
        errors.contains("batch size 200"),
        "the pace change reached the worker: {errors}"
    );
    assert_eq!(differences(&mut client), (0, 0));
    // A done run cannot be paused.
    let (result, out) = command(&ws.config, &["pause", "V1", "--database-url", &url]);
    assert_eq!(result.unwrap(), ExitCode::from(1));
    assert!(out.contains("nothing can change it"), "{out}");

    let plan = ws.plan(
        "V2",
        &["--fixed-batch-size", "--ranges", "1", "--pause", "20ms"],
    );
    let child = spawn_worker(
        &ws.config,
        &[
            plan.to_str().unwrap(),
            "--database-url",
            &url,
            "--progress",
            "quiet",
        ],
    );
    until_a_batch_committed(&url, "V2");
    assert!(
        ok(&ws.config, &["cancel", "V2", "--database-url", &url]).contains("running -> cancelled")
    );
    let (code, out, _) = wait(child, Duration::from_secs(30));
    assert_eq!(code, Some(1));
    assert!(out.contains("V2__other was cancelled"), "{out}");
    let e = err(
        &ws.config,
        &["run", plan.to_str().unwrap(), "--database-url", &url],
    );
    assert!(e.contains("was cancelled"), "{e}");
}

/// A plan edited by hand, a plan for another version of the file, and a database that recorded
/// a run of another version are all refused; an unapproved data migration is never planned.
#[test]
fn tampered_plans_changed_files_and_unapproved_migrations_are_refused() {
    let (url, mut client) = items_db("refuse", 300);
    let ws = Ws::new(&[("V1__bump.sql", bump_text("", 50))]);
    let plan = ws.plan("V1", &["--ranges", "1"]);
    let p = plan.to_str().unwrap();

    let original = std::fs::read_to_string(&plan).unwrap();
    let tampered = original.replace("\"max_retries\": 10", "\"max_retries\": 1000");
    assert_ne!(tampered, original);
    std::fs::write(&plan, &tampered).unwrap();
    let e = err(&ws.config, &["run", p, "--database-url", &url]);
    assert!(e.contains("edited after it was made"), "{e}");

    // A checksum edited to match another file: the digest catches that too, and a digest
    // recomputed by hand still does not match the file on disk.
    let mut forged: Plan = serde_json::from_str(&original).unwrap();
    forged.migration.checksum = migration::checksum(b"another file");
    forged.digest = forged.compute_digest();
    std::fs::write(&plan, forged.to_json()).unwrap();
    let e = err(&ws.config, &["run", p, "--database-url", &url]);
    assert!(
        e.contains("the data migration changed since it was planned"),
        "{e}"
    );
    std::fs::write(&plan, &original).unwrap();

    // The file changes after planning (and is even approved again): the old plan is refused.
    ws.write("V1__bump.sql", &bump_text(" AND n >= 0", 50));
    let e = err(&ws.config, &["run", p, "--database-url", &url]);
    assert!(e.contains("changed since it was planned"), "{e}");

    // Unapproved: the snapshot is from another version of the file.
    std::fs::write(
        ws.config.data_migrations.join("V1__bump.sql"),
        bump_text("", 51),
    )
    .unwrap();
    let e = err(&ws.config, &["plan", "V1"]);
    assert!(e.contains("V1__bump is not approved"), "{e}");
    std::fs::remove_file(ws.config.data_migrations.join("snapshots/V1__bump.snap")).unwrap();
    let e = err(&ws.config, &["plan", "V1"]);
    assert!(e.contains("has no accepted snapshot"), "{e}");

    // Run one version part-way (paused before it starts), then plan and run another version.
    ws.write("V1__bump.sql", &bump_text("", 50));
    let plan = ws.plan(
        "V1",
        &["--ranges", "1", "--fixed-batch-size", "--pause", "50ms"],
    );
    let child = spawn_worker(
        &ws.config,
        &[
            plan.to_str().unwrap(),
            "--database-url",
            &url,
            "--progress",
            "quiet",
        ],
    );
    until_a_batch_committed(&url, "V1");
    ok(&ws.config, &["cancel", "V1", "--database-url", &url]);
    wait(child, Duration::from_secs(30));
    ws.write("V1__bump.sql", &bump_text(" AND n = 0", 50));
    let plan = ws.plan("V1", &["--ranges", "1"]);
    let e = err(
        &ws.config,
        &["run", plan.to_str().unwrap(), "--database-url", &url],
    );
    assert!(
        e.contains("records a run of V1__bump from another version"),
        "{e}"
    );
    assert_eq!(state(&mut client, "V1__bump"), "cancelled");
}

/// Planning reads the key's index and the catalog: no sequential scan of the table, whatever
/// its size, and estimates close to the truth.
#[test]
fn planning_never_scans_the_table() {
    let (url, setup) = items_db("plan", 200_000);
    // Statistics are flushed when a session ends: the setup's own scans are counted before.
    drop(setup);
    let mut client = Client::connect(&url, NoTls).unwrap();
    let ws = Ws::new(&[("V1__bump.sql", bump_text("", 1000))]);
    let scans = |client: &mut Client| -> (i64, i64) {
        let row = client
            .query_one(
                "SELECT seq_scan, coalesce(idx_scan, 0) FROM pg_stat_user_tables WHERE relname = 'items'",
                &[],
            )
            .unwrap();
        (row.get(0), row.get(1))
    };
    let before = scans(&mut client);
    let started = Instant::now();
    let out = ok(&ws.config, &["plan", "V1", "--database-url", &url]);
    let took = started.elapsed();
    // The planning session has ended; its statistics arrive when its server process exits.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut after = scans(&mut client);
    while after.1 == before.1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        after = scans(&mut client);
    }
    assert_eq!(after.0, before.0, "planning scanned the table:\n{out}");
    assert!(after.1 > before.1, "planning used the key's index");
    assert!(took < Duration::from_secs(5), "{took:?}");
    let plan = Plan::load(&ws.plan_path("V1__bump")).unwrap();
    let bounds = plan.bounds.unwrap();
    assert_eq!((bounds.min.as_str(), bounds.max.as_str()), ("3", "600000"));
    let estimate = plan.estimate.unwrap();
    assert!((190_000..=210_000).contains(&estimate.rows), "{estimate:?}");
    assert_eq!(estimate.source, "pg_class.reltuples");
    assert_eq!(plan.key_indexed, Some(true));
    assert_eq!(plan.settings.ranges, 16);
    assert!(out.contains("key range   3 ..= 600000"), "{out}");
    assert!(
        out.contains("~200,") || out.contains("~199,") || out.contains("~201,"),
        "{out}"
    );
    assert!(out.contains("run:     cargo xtask backfill run data-migrations/plans/V1__bump.json --database-url \"$DATABASE_URL\""), "{out}");

    // A table that was never analyzed: the planner's estimate, still no scan.
    client
        // No index: building one would record the row count in pg_class.
        .batch_execute("CREATE TABLE fresh AS SELECT * FROM items WHERE id <= 30000")
        .unwrap();
    ws.write(
        "V2__fresh.sql",
        &bump_text("", 100)
            .replace("@table items", "@table fresh")
            .replace("UPDATE items", "UPDATE fresh"),
    );
    ok(&ws.config, &["plan", "V2", "--database-url", &url]);
    let plan = Plan::load(&ws.plan_path("V2__fresh")).unwrap();
    let estimate = plan.estimate.unwrap();
    assert!(estimate.source.contains("planner"), "{estimate:?}");
    assert!(estimate.rows > 1000, "{estimate:?}");
}

/// A password in the database URL appears in no output, error, plan file or tracking row.
#[test]
fn the_password_never_appears_anywhere() {
    const SECRET: &str = "hunter2-Sup3rSecret";
    let (plain_url, mut client) = items_db("secret", 500);
    // Trust authentication accepts any password: the URL carries one like production's would.
    let url = plain_url.replace("postgres@", &format!("postgres:{SECRET}@"));
    assert_ne!(url, plain_url);
    let ws = Ws::new(&[("V1__bump.sql", bump_text("", 100))]);
    let mut seen = String::new();
    seen.push_str(&ok(&ws.config, &["plan", "V1", "--database-url", &url]));
    let plan = ws.plan_path("V1__bump");
    seen.push_str(&std::fs::read_to_string(&plan).unwrap());
    let (code, out, errors) = wait(
        spawn_worker(
            &ws.config,
            &[
                plan.to_str().unwrap(),
                "--database-url",
                &url,
                "--progress",
                "lines",
                "--progress-interval",
                "0",
            ],
        ),
        Duration::from_secs(30),
    );
    assert_eq!(code, Some(0), "{out}{errors}");
    seen.push_str(&out);
    seen.push_str(&errors);
    seen.push_str(&ok(&ws.config, &["status", "--database-url", &url]));
    seen.push_str(&ok(
        &ws.config,
        &["status", "--database-url", &url, "--format", "json"],
    ));
    seen.push_str(&command(&ws.config, &["pause", "V1", "--database-url", &url]).1);
    // Errors: a server that is not there, a run that does not exist, a bad URL.
    let dead = url.replace(&format!(":{}/", pg_harness::shared().port()), ":1/");
    seen.push_str(&err(&ws.config, &["status", "--database-url", &dead]));
    seen.push_str(&err(&ws.config, &["pause", "V9", "--database-url", &url]));
    seen.push_str(&err(
        &ws.config,
        &[
            "pause",
            "V1",
            "--database-url",
            &format!("postgres://u:{SECRET}@[::1/x"),
        ],
    ));
    // Help shows where the URL may come from, never its value.
    let help = Command::new(bin())
        .args(["backfill", "run", "--help"])
        .env("DATABASE_URL", &url)
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    assert!(help.contains("DATABASE_URL"), "{help}");
    seen.push_str(&help);
    // Every text value of every tracking row.
    for table in [
        "xtask_backfill_runs",
        "xtask_backfill_ranges",
        "xtask_backfill_batch_log",
    ] {
        for row in client
            .query(&format!("SELECT t::text FROM {table} AS t"), &[])
            .unwrap()
        {
            seen.push_str(&row.get::<_, String>(0));
        }
    }
    assert!(
        seen.contains("V1__bump") && seen.contains("cannot connect"),
        "{seen}"
    );
    assert!(!seen.contains(SECRET), "the password leaked:\n{seen}");
    assert!(
        !seen.contains("hunter2"),
        "part of the password leaked:\n{seen}"
    );
}

/// The same `run` on a SQLite file, interrupted by SIGKILL and resumed.
#[test]
fn runs_on_a_sqlite_file_too() {
    let ws = Ws::new(&[("V1__bump.sql", bump_text("", 20))]);
    let db = ws.config.root.join("app.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(
        "CREATE TABLE items (id integer PRIMARY KEY, n integer NOT NULL DEFAULT 0, note integer NOT NULL DEFAULT 0);
         WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < 2000) INSERT INTO items (id) SELECT i * 2 FROM g;",
    )
    .unwrap();
    drop(conn);
    let url = format!("sqlite://{}", db.display());
    let plan = ws.plan("V1", &["--fixed-batch-size", "--pause", "10ms"]);
    let mut child = spawn_worker(
        &ws.config,
        &[
            plan.to_str().unwrap(),
            "--database-url",
            &url,
            "--progress",
            "quiet",
        ],
    );
    until_a_batch_committed(&url, "V1");
    child.kill().unwrap();
    child.wait().unwrap();
    let (code, out, errors) = wait(
        spawn_worker(
            &ws.config,
            &[
                plan.to_str().unwrap(),
                "--database-url",
                &url,
                "--progress",
                "quiet",
            ],
        ),
        Duration::from_secs(60),
    );
    assert_eq!(code, Some(0), "{out}{errors}");
    let conn = rusqlite::Connection::open(&db).unwrap();
    let (ones, all): (i64, i64) = conn
        .query_row(
            "SELECT count(*) FILTER (WHERE n = 1), count(*) FROM items",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((ones, all), (2000, 2000));
    let resumed: i64 = conn
        .query_row(
            "SELECT count(DISTINCT worker) FROM xtask_backfill_batch_log",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        resumed, 2,
        "the killed worker did some batches, the second the rest"
    );
    let out = ok(&ws.config, &["status", "--database-url", &url]);
    assert!(
        out.contains("V1__bump  approved\n  run 1: done, 2,000 rows"),
        "{out}"
    );
}

/// A batch that hits statement_timeout is split until it fits.
#[test]
fn a_batch_that_times_out_is_split() {
    let (url, mut client) = items_db("split", 400);
    // 2ms per row: 200 rows take 400ms, past the 250ms statement_timeout.
    let ws = Ws::new(&[(
        "V1__bump.sql",
        bump_text(" AND pg_sleep(0.002) IS NOT NULL", 200),
    )]);
    let plan = ws.plan(
        "V1",
        &[
            "--ranges",
            "1",
            "--statement-timeout",
            "250ms",
            "--target-batch-duration",
            "100ms",
            "--min-batch-size",
            "10",
        ],
    );
    let report = run_here(&ws.config, &plan, &url, "w1").unwrap();
    assert_eq!(report.finish, Finish::Done);
    assert!(report.retries >= 1, "{report:?}");
    // The attempt that timed out was cut by the server at the 250 ms statement_timeout; the
    // client's measure of it adds the round trip and the rollback. The whole 200-row batch
    // would have held its locks for 400 ms.
    assert!(
        report.longest_hold < Duration::from_millis(350),
        "{report:?}"
    );
    assert_eq!(differences(&mut client), (0, 0));
    assert_tiled(&mut client, "V1__bump");
}

/// SIGTERM (like Ctrl-C's SIGINT) stops a worker after its current batch: it exits 1, gives
/// its range back, and the next run finishes the rest exactly once.
#[test]
fn sigterm_stops_after_the_current_batch() {
    let (url, mut client) = items_db("sigterm", 2000);
    let ws = Ws::new(&[(
        "V1__bump.sql",
        bump_text(" AND (SELECT pg_sleep(0.02)) IS NOT NULL", 20),
    )]);
    let plan = ws.plan("V1", &["--fixed-batch-size", "--ranges", "1"]);
    let args = [
        plan.to_str().unwrap(),
        "--database-url",
        &url,
        "--progress",
        "quiet",
    ];
    let child = spawn_worker(&ws.config, &args);
    until_a_batch_committed(&url, "V1");
    // SAFETY: kill only sends a signal to our own child.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let signalled = Instant::now();
    let (code, out, errors) = wait(child, Duration::from_secs(10));
    assert_eq!(code, Some(1), "{out}{errors}");
    assert!(out.contains("stopped after the current batch"), "{out}");
    assert!(signalled.elapsed() < Duration::from_secs(2));
    let row = client
        .query_one(
            "SELECT g.claimed_by, g.rows_done, (SELECT count(*) FROM items WHERE n = 1)
             FROM xtask_backfill_ranges AS g",
            &[],
        )
        .unwrap();
    assert_eq!(
        row.get::<_, Option<String>>(0),
        None,
        "the claim was given back"
    );
    let (done, updated): (i64, i64) = (row.get(1), row.get(2));
    assert!(done > 0 && done < 2000, "{done}");
    assert_eq!(
        done, updated,
        "the batch in flight committed whole, none after it"
    );
    let (code, out, errors) = wait(spawn_worker(&ws.config, &args), Duration::from_secs(60));
    assert_eq!(code, Some(0), "{out}{errors}");
    assert_eq!(differences(&mut client), (0, 0));
    assert_tiled(&mut client, "V1__bump");
}

/// Tracking tables go where the plan says; a table of someone else's with a tracking table's
/// name is refused, not misread.
#[test]
fn tracking_names_are_configurable_and_foreign_tables_refused() {
    let (url, mut client) = items_db("names", 200);
    client
        .batch_execute("CREATE TABLE xtask_backfill_runs (id text)")
        .unwrap();
    let ws = Ws::new(&[("V1__bump.sql", bump_text("", 50))]);
    let plan = ws.plan("V1", &["--ranges", "1"]);
    let e = err(
        &ws.config,
        &["run", plan.to_str().unwrap(), "--database-url", &url],
    );
    assert!(e.contains("is not a tracking table"), "{e}");
    let e = err(&ws.config, &["status", "--database-url", &url]);
    assert!(e.contains("is not a tracking table"), "{e}");

    let plan = ws.plan(
        "V1",
        &[
            "--ranges",
            "1",
            "--tracking-schema",
            "ops",
            "--tracking-prefix",
            "bf_",
        ],
    );
    let text = std::fs::read_to_string(&plan).unwrap();
    assert!(
        text.contains("--tracking-schema ops --tracking-prefix bf_"),
        "{text}"
    );
    let out = ok(
        &ws.config,
        &[
            "run",
            plan.to_str().unwrap(),
            "--database-url",
            &url,
            "--progress",
            "quiet",
        ],
    );
    assert!(out.contains("V1__bump done"), "{out}");
    let state: String = client
        .query_one("SELECT state FROM ops.bf_runs", &[])
        .unwrap()
        .get(0);
    assert_eq!(state, "done");
    assert_eq!(differences(&mut client), (0, 0));
    let out = ok(
        &ws.config,
        &[
            "status",
            "--database-url",
            &url,
            "--tracking-schema",
            "ops",
            "--tracking-prefix",
            "bf_",
        ],
    );
    assert!(out.contains("  run 1: done, 200 rows"), "{out}");
}

/// This repository's own data migration end to end on PostgreSQL: the example schema and
/// fixtures, a plan made against the database, two workers; its checks then return no rows.
#[test]
fn the_example_counter_caches_run_end_to_end() {
    use xtask_migrate::backfill::db::postgres::PgBackend;
    use xtask_migrate::backfill::db::{Backend, SampleBackend};
    use xtask_migrate::backfill::sample::{Inputs, fixtures};

    let url = pg_harness::shared().create_database("example");
    let config = Config::defaults(Path::new(env!("CARGO_MANIFEST_DIR")));
    let inputs = Inputs::load(&config).unwrap();
    let m = migration::find(&config.data_migrations, "V1").unwrap();
    let mut db = PgBackend::connect(&url).unwrap();
    db.apply_migrations(&inputs.migrations, m.requires.value, &config.migrations)
        .unwrap();
    fixtures::load(&mut db, &inputs.fixtures, m.requires.value).unwrap();
    db.execute("ANALYZE").unwrap();

    let out_dir = tempfile::tempdir().unwrap();
    let plan = out_dir.path().join("plan.json");
    let out = ok(
        &config,
        &[
            "plan",
            "V1",
            "--database-url",
            &url,
            "--ranges",
            "4",
            "--pause",
            "0",
            "-o",
            plan.to_str().unwrap(),
        ],
    );
    assert!(
        out.contains("table       users, key id (integer, indexed)"),
        "{out}"
    );
    let workers: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|w| {
            let (config, plan, url) = (config.clone(), plan.clone(), url.clone());
            std::thread::spawn(move || run_here(&config, &plan, &url, w))
        })
        .collect();
    let mut rows = 0;
    for w in workers {
        let report = w.join().unwrap().unwrap();
        assert_eq!(report.finish, Finish::Done);
        rows += report.rows;
    }
    let users = db.query("SELECT count(*) FROM users").unwrap();
    assert_eq!(
        users.rows[0][0],
        xtask_migrate::backfill::db::Cell::Number(rows.to_string()),
        "every user updated once"
    );
    assert!(!m.checks.is_empty());
    for check in &m.checks {
        let found = db.query(&check.section.sql).unwrap();
        assert!(
            found.rows.is_empty(),
            "{}: {:?}",
            check.description,
            found.rows
        );
    }
    // `run --checks` runs them too (the run is done: it only checks).
    let out = ok(
        &config,
        &[
            "run",
            plan.to_str().unwrap(),
            "--database-url",
            &url,
            "--checks",
        ],
    );
    assert!(out.contains("is already done"), "{out}");
    assert_eq!(
        out.matches("check passed: ").count(),
        m.checks.len(),
        "{out}"
    );
    // A counter broken by hand fails its check.
    db.execute(
        "UPDATE users SET posts_count = posts_count + 1 WHERE id = (SELECT min(id) FROM users)",
    )
    .unwrap();
    let (result, out) = command(
        &config,
        &[
            "run",
            plan.to_str().unwrap(),
            "--database-url",
            &url,
            "--checks",
        ],
    );
    assert_eq!(result.unwrap(), ExitCode::from(1), "{out}");
    assert!(
        out.contains("check FAILED: every user's posts_count equals the posts they wrote (1 row,"),
        "{out}"
    );
}

/// `backfill plan --help` as a user reads it: every option explained, the default plan path in
/// one piece.
#[test]
fn plan_help() {
    let out = Command::new(bin())
        .args(["backfill", "plan", "--help"])
        .env("COLUMNS", "100")
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8(out.stdout).unwrap();
    insta::assert_snapshot!(help);
}

/// After its data migration is edited, `run` refuses the old plan and names every step to a new
/// one, in order; following them gets a plan that runs.
#[test]
fn a_changed_data_migration_names_the_way_to_a_new_plan() {
    let ws = Ws::new(&[("V1__bump.sql", bump_text("", 20))]);
    let db = ws.config.root.join("app.db");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch(
            "CREATE TABLE items (id integer PRIMARY KEY, n integer NOT NULL DEFAULT 0);
             INSERT INTO items (id) VALUES (1), (2), (3);",
        )
        .unwrap();
    let url = format!("sqlite://{}", db.display());
    let plan = ws.plan("V1", &[]);
    let p = plan.to_str().unwrap();

    // Edited, and not approved again.
    std::fs::write(
        ws.config.data_migrations.join("V1__bump.sql"),
        bump_text(" AND n = 0", 20),
    )
    .unwrap();
    let e = err(&ws.config, &["run", p, "--database-url", &url]);
    assert!(!e.contains('\n'), "one line: {e}");
    let steps = [
        "the data migration changed since it was planned",
        "run `cargo xtask backfill sample V1__bump`",
        "review and accept its new snapshot (`cargo insta review`)",
        "then make a new plan with `cargo xtask backfill plan V1__bump`",
    ];
    let mut at = 0;
    for step in steps {
        let found = e[at..]
            .find(step)
            .unwrap_or_else(|| panic!("`{step}` is not in order in: {e}"));
        at += found + step.len();
    }

    // Planning before the new snapshot is accepted is refused, as the steps say.
    let e = err(&ws.config, &["plan", "V1"]);
    assert!(e.contains("V1__bump is not approved"), "{e}");
    ws.approve("V1__bump.sql");
    let plan = ws.plan("V1", &[]);
    let (code, out, errors) = wait(
        spawn_worker(
            &ws.config,
            &[
                plan.to_str().unwrap(),
                "--database-url",
                &url,
                "--progress",
                "quiet",
            ],
        ),
        Duration::from_secs(60),
    );
    assert_eq!(code, Some(0), "{out}{errors}");
}

/// A password with an unencoded `@` makes the driver look up the rest of the password as a host
/// name. Every command that takes a URL says to percent-encode it, on one line that shows no part
/// of the password.
#[test]
fn a_password_with_an_unencoded_at_is_named_not_shown() {
    let ws = Ws::new(&[("V1__bump.sql", bump_text("", 20))]);
    let plan = ws.plan("V1", &[]);
    let url = "postgres://app:s3cr@t-Pw@db.internal/prod";
    for args in [
        vec!["backfill", "status"],
        vec!["backfill", "plan", "V1"],
        vec!["backfill", "run", plan.to_str().unwrap()],
        vec!["backfill", "pause", "V1"],
    ] {
        let out = Command::new(bin())
            .current_dir(&ws.config.root)
            .args(&args)
            .env("DATABASE_URL", url)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stdout}{stderr}");
        assert_eq!(
            stderr,
            "error: the database URL has more than one `@` before its host: the password (or user name) likely contains `@`, which a URL must percent-encode: write each `@` in it as `%40` (postgres://USER:PASS%40WORD@HOST/DB)\n",
            "{args:?}"
        );
        for part in ["s3cr", "t-Pw"] {
            assert!(
                !stdout.contains(part) && !stderr.contains(part),
                "{args:?}: part of the password leaked: {stdout}{stderr}"
            );
        }
    }
}

/// Replaces what changes from one run of the tests to the next in `backfill status` text: the
/// database's port and name, timestamps, measured durations.
fn normalize(text: &str, url: &str) -> String {
    let port = format!(":{}/", pg_harness::shared().port());
    let db = url.rsplit('/').next().unwrap().split('?').next().unwrap();
    let text = text
        .replace(&port, ":[port]/")
        .replace(&format!("/{db}:"), "/[db]:");
    // 2026-11-21T10:00:00.123Z
    let is_time = |w: &[u8]| {
        w.len() == 24
            && w.iter().enumerate().all(|(i, b)| match i {
                4 | 7 => *b == b'-',
                10 => *b == b'T',
                13 | 16 => *b == b':',
                19 => *b == b'.',
                23 => *b == b'Z',
                _ => b.is_ascii_digit(),
            })
    };
    let bytes = text.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < bytes.len() {
        if i + 24 <= bytes.len() && is_time(&bytes[i..i + 24]) {
            out.push_str("[time]");
            i += 24;
        } else {
            let c = text[i..].chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out.lines()
        .map(|line| match line.find("longest batch transaction ") {
            Some(at) => format!("{}longest batch transaction [duration]", &line[..at]),
            None => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// `backfill status` of the real binary in `ws`, with `env` set; its stdout.
fn status_with_env(ws: &Ws, env: &[(&str, &str)], args: &[&str]) -> String {
    let mut command = Command::new(bin());
    command
        .current_dir(&ws.config.root)
        .args(["backfill", "status"])
        .args(args)
        .env_remove("DATABASE_URL");
    for (k, v) in env {
        command.env(k, v);
    }
    let out = command.output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A workspace and a database with one of each: a data migration run to the end, one approved
/// and never run, one without a snapshot, one whose snapshot is stale, and a run recorded there
/// for a data migration this workspace does not have.
fn status_setup(prefix: &str) -> (Ws, String, Client) {
    let (url, mut client) = items_db(prefix, 300);
    let note = |version: &str| {
        format!(
            "-- @requires 1\n-- @table items\n-- @key id\n-- @batch-size 100\n-- @batch\nUPDATE items SET note = note + 1 WHERE id > :lower AND id <= :upper;\n-- @snapshot\nSELECT id, note FROM items ORDER BY id; -- {version}\n"
        )
    };
    let ws = Ws::new(&[
        ("V1__bump.sql", bump_text("", 100)),
        ("V2__later.sql", note("2")),
        ("V4__stale.sql", note("4")),
    ]);
    std::fs::write(ws.config.data_migrations.join("V3__draft.sql"), note("3")).unwrap();
    std::fs::write(
        ws.config.data_migrations.join("V4__stale.sql"),
        note("4, edited"),
    )
    .unwrap();
    let plan = ws.plan("V1", &["--ranges", "2"]);
    ok(
        &ws.config,
        &[
            "run",
            plan.to_str().unwrap(),
            "--database-url",
            &url,
            "--progress",
            "quiet",
        ],
    );
    // The estimate the next run records: the live rows, whatever autovacuum has done.
    client.batch_execute("ANALYZE items").unwrap();
    let elsewhere = Ws::new(&[("V0__elsewhere.sql", note("0"))]);
    let plan = elsewhere.plan("V0", &["--ranges", "1"]);
    ok(
        &elsewhere.config,
        &[
            "run",
            plan.to_str().unwrap(),
            "--database-url",
            &url,
            "--progress",
            "quiet",
        ],
    );
    (ws, url, client)
}

/// With DATABASE_URL exported, as the docs advise, `backfill status` still lists every data
/// migration of the workspace with its approval, and adds its run there: "not run" when it has
/// none, and the runs of data migrations the workspace does not have.
#[test]
fn status_shows_approvals_and_runs_together() {
    let (ws, url, _client) = status_setup("status");
    let without = status_with_env(&ws, &[], &[]);
    let with = status_with_env(&ws, &[("DATABASE_URL", &url)], &[]);
    // The same approvals either way (aligned with more ids): a database only adds the runs.
    let words = |line: &str| line.split_whitespace().collect::<Vec<_>>().join(" ");
    let with_lines: Vec<String> = with.lines().map(words).collect();
    for line in without.lines() {
        assert!(with_lines.contains(&words(line)), "{line}\n{with}");
    }
    insta::assert_snapshot!("status_without_a_database", without);
    insta::assert_snapshot!("status_with_a_database", normalize(&with, &url));
}

/// `backfill status --format json`: one document, every documented field there and nothing
/// undocumented, a data migration never run has `state: "not_run"` with the same fields.
#[test]
fn status_as_json_is_the_documented_document() {
    let (ws, url, _client) = status_setup("statusjson");
    let text = status_with_env(&ws, &[("DATABASE_URL", &url)], &["--format", "json"]);
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["format_version"], 1);
    let database = json["database"].as_str().unwrap();
    assert!(database.starts_with("PostgreSQL ") && !database.contains("postgres@"));
    let migrations = json["data_migrations"].as_array().unwrap();
    let ids: Vec<&str> = migrations
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "V0__elsewhere",
            "V1__bump",
            "V2__later",
            "V3__draft",
            "V4__stale"
        ]
    );
    let by_id = |id: &str| &migrations[ids.iter().position(|i| *i == id).unwrap()];
    let approvals: Vec<&str> = migrations
        .iter()
        .map(|m| m["approval"].as_str().unwrap())
        .collect();
    assert_eq!(
        approvals,
        [
            "not_in_workspace",
            "approved",
            "approved",
            "no_snapshot",
            "snapshot_stale"
        ]
    );
    let run = &by_id("V1__bump")["runs"][0];
    assert_eq!(run["database"], database);
    assert_eq!(run["state"], "done");
    assert_eq!(run["run_id"].as_i64(), Some(1));
    assert_eq!(run["rows_done"], 300);
    assert_eq!(run["ranges"]["done"], run["ranges"]["total"]);
    assert!(run["ranges"]["total"].as_u64().unwrap() >= 1);
    assert_eq!(run["interrupted"], false);
    assert_eq!(run["eta_seconds"], serde_json::Value::Null);
    assert_eq!(run["throttled_since"], serde_json::Value::Null);
    assert_eq!(run["workers"], serde_json::json!([]));
    assert!(run["started_at"].as_str().unwrap().ends_with('Z'));
    assert!(run["finished_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(by_id("V1__bump")["file"], "data-migrations/V1__bump.sql");
    let never = &by_id("V2__later")["runs"][0];
    assert_eq!(never["state"], "not_run");
    assert_eq!(never["run_id"], serde_json::Value::Null);
    let elsewhere = by_id("V0__elsewhere");
    assert_eq!(elsewhere["file"], serde_json::Value::Null);
    assert_eq!(elsewhere["runs"][0]["state"], "done");

    // Every key of the document is in the documentation's example, and every key there is in
    // the document (a run that restarted another has `earlier_runs`, a live one `workers`).
    let docs =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/backfill-run.md"))
            .unwrap();
    let example = docs
        .split("```json\n")
        .nth(1)
        .and_then(|rest| rest.split("\n```").next())
        .expect("a ```json example in docs/backfill-run.md");
    let example: serde_json::Value = serde_json::from_str(example).unwrap();
    fn paths(v: &serde_json::Value, at: &str, out: &mut std::collections::BTreeSet<String>) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    let path = format!("{at}.{k}");
                    out.insert(path.clone());
                    paths(v, &path, out);
                }
            }
            serde_json::Value::Array(items) => {
                for item in items {
                    paths(item, &format!("{at}[]"), out);
                }
            }
            _ => {}
        }
    }
    let (mut documented, mut produced) = (Default::default(), Default::default());
    paths(&example, "", &mut documented);
    paths(&json, "", &mut produced);
    let missing: Vec<&String> = produced.difference(&documented).collect();
    assert!(missing.is_empty(), "not documented: {missing:?}");
    let dropped: Vec<&String> = documented
        .difference(&produced)
        .filter(|p| !p.contains(".workers[]") && !p.contains(".earlier_runs[]"))
        .collect();
    assert!(
        dropped.is_empty(),
        "documented but not produced: {dropped:?}"
    );
}

/// The run of `migration`'s current run as `status --format json` shows it (in this process).
fn json_status(config: &Config, url: &str, migration: &str) -> serde_json::Value {
    let out = ok(
        config,
        &["status", "--database-url", url, "--format", "json"],
    );
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    json["data_migrations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == migration)
        .unwrap_or_else(|| panic!("{migration} in {out}"))["runs"][0]
        .clone()
}

/// A few seconds into a run, the rate is measured over those seconds (not divided by a whole
/// minute) and gives an ETA; once the worker is stopped (SIGTERM, or killed) the run is still
/// `running` in the tracking tables, and status says no live worker holds it, with no rate and
/// no ETA.
#[test]
fn status_rates_cover_the_run_so_far_and_a_stopped_run_has_no_live_worker() {
    let (url, _client) = items_db("rate", 30_000);
    let ws = Ws::new(&[(
        "V1__bump.sql",
        bump_text(" AND (SELECT pg_sleep(0.005)) IS NOT NULL", 100),
    )]);
    let plan = ws.plan(
        "V1",
        &["--fixed-batch-size", "--ranges", "1", "--pause", "20ms"],
    );
    let args = [
        plan.to_str().unwrap(),
        "--database-url",
        &url,
        "--progress",
        "quiet",
    ];
    let started = Instant::now();
    let child = spawn_worker(&ws.config, &args);
    until_a_batch_committed(&url, "V1");
    std::thread::sleep(Duration::from_millis(2500));
    let run = json_status(&ws.config, &url, "V1__bump");
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(run["state"], "running", "{run}");
    assert_eq!(run["interrupted"], false, "{run}");
    assert_eq!(run["workers"][0]["live"], true, "{run}");
    let rate = run["rows_per_second"].as_f64().unwrap();
    let window = run["rate_window_seconds"].as_f64().unwrap();
    let done = run["rows_done"].as_f64().unwrap();
    assert!(
        window > 1.0 && window < elapsed,
        "{window} of {elapsed}s: {run}"
    );
    // Every batch so far is in the window: the rate is the rows over the time they took.
    assert!(
        (rate * window - done).abs() <= 300.0,
        "{rate} rows/s over {window}s, {done} rows done"
    );
    assert!(rate > 2.0 * done / 60.0, "divided by a whole minute: {run}");
    assert!(run["eta_seconds"].as_f64().unwrap() > 0.0, "{run}");
    let text = ok(&ws.config, &["status", "--database-url", &url]);
    assert!(text.contains(" rows/s over the last "), "{text}");
    assert!(!text.contains("over the last minute"), "{text}");
    assert!(text.contains(", ETA "), "{text}");

    // Ctrl-C's SIGTERM twin: the worker gives its range back and exits.
    // SAFETY: kill only sends a signal to our own child.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let (code, out, errors) = wait(child, Duration::from_secs(10));
    assert_eq!(code, Some(1), "{out}{errors}");
    let run = json_status(&ws.config, &url, "V1__bump");
    assert_eq!(
        (&run["state"], &run["interrupted"]),
        (&"running".into(), &true.into()),
        "{run}"
    );
    assert_eq!(run["eta_seconds"], serde_json::Value::Null, "{run}");
    assert_eq!(run["rows_per_second"], serde_json::Value::Null, "{run}");
    assert_eq!(run["workers"], serde_json::json!([]), "{run}");
    let text = ok(&ws.config, &["status", "--database-url", &url]);
    assert!(
        text.contains("  run 1: running (no live worker: interrupted?), "),
        "{text}"
    );
    assert!(!text.contains("ETA"), "{text}");
    assert!(
        text.contains("no live worker: start `backfill run` with the plan to continue"),
        "{text}"
    );

    // SIGKILL: the claim stays, but its session is gone.
    let mut child = spawn_worker(&ws.config, &args);
    let before = run["rows_done"].as_u64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while json_status(&ws.config, &url, "V1__bump")["rows_done"].as_u64() == Some(before) {
        assert!(Instant::now() < deadline, "the second worker did no batch");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let run = loop {
        let run = json_status(&ws.config, &url, "V1__bump");
        if run["interrupted"] == true || Instant::now() > deadline {
            break run;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(run["interrupted"], true, "{run}");
    assert_eq!(run["workers"][0]["live"], false, "{run}");
    assert_eq!(run["eta_seconds"], serde_json::Value::Null, "{run}");
    let text = ok(&ws.config, &["status", "--database-url", &url]);
    assert!(text.contains("(gone)"), "{text}");
    assert!(text.contains("(no live worker: interrupted?)"), "{text}");
}

/// A cancel is not a dead end: the cancel, the worker's last line, a refused `run` and a refused
/// `resume` all name the way on. `run --restart RUN` on two workers at once starts one new run
/// that goes through every row exactly once more; the cancelled run stays, marked superseded.
#[test]
fn cancel_names_the_way_out_and_restart_runs_once_more() {
    let (url, mut client) = items_db("restart", 3000);
    let ws = Ws::new(&[("V1__bump.sql", bump_text("", 25))]);
    let plan = ws.plan(
        "V1",
        &["--fixed-batch-size", "--ranges", "2", "--pause", "20ms"],
    );
    let p = plan.to_str().unwrap();
    let child = spawn_worker(
        &ws.config,
        &[p, "--database-url", &url, "--progress", "quiet"],
    );
    until_a_batch_committed(&url, "V1");
    let id: i64 = client
        .query_one("SELECT id FROM xtask_backfill_runs", &[])
        .unwrap()
        .get(0);
    let restart = format!("`--restart {id}`");
    let out = ok(&ws.config, &["cancel", "V1", "--database-url", &url]);
    assert!(out.contains("V1__bump: running -> cancelled"), "{out}");
    assert!(out.contains(&restart), "{out}");
    assert!(out.contains("or write a new data migration"), "{out}");
    let (code, out, _) = wait(child, Duration::from_secs(30));
    assert_eq!(code, Some(1));
    assert!(
        out.contains("V1__bump was cancelled") && out.contains(&restart),
        "{out}"
    );
    let e = err(&ws.config, &["run", p, "--database-url", &url]);
    assert!(!e.contains('\n'), "one line: {e}");
    assert!(e.contains("was cancelled") && e.contains(&restart), "{e}");
    let (result, out) = command(&ws.config, &["resume", "V1", "--database-url", &url]);
    assert_eq!(result.unwrap(), ExitCode::from(1));
    assert!(
        out.contains("nothing can change it") && out.contains(&restart),
        "{out}"
    );
    let first = rows_done(&mut client);
    assert!(first > 0 && first < 3000, "{first}");

    // The same command on two workers: one starts over, the other joins that run.
    let again = format!("{id}");
    let workers: Vec<Child> = ["a", "b"]
        .into_iter()
        .map(|w| {
            spawn_worker(
                &ws.config,
                &[
                    p,
                    "--database-url",
                    &url,
                    "--restart",
                    &again,
                    "--worker-id",
                    w,
                    "--progress",
                    "quiet",
                ],
            )
        })
        .collect();
    let mut started_over = 0;
    for child in workers {
        let (code, out, errors) = wait(child, Duration::from_secs(60));
        assert_eq!(code, Some(0), "{out}{errors}");
        started_over += out
            .matches("started V1__bump over: run 1 (cancelled)")
            .count();
    }
    assert_eq!(started_over, 1);
    let row = client
        .query_one(
            "SELECT count(*) FILTER (WHERE n = 2), count(*) FILTER (WHERE n = 1), count(*) FILTER (WHERE n NOT IN (1, 2)) FROM items",
            &[],
        )
        .unwrap();
    let (twice, once, other): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    let first_run: i64 = client
        .query_one(
            "SELECT sum(rows_done)::bigint FROM xtask_backfill_ranges WHERE run_id = $1",
            &[&id],
        )
        .unwrap()
        .get(0);
    assert_eq!((twice, once, other), (first_run, 3000 - first_run, 0));
    assert_tiled(&mut client, "V1__bump");
    let runs = client
        .query(
            "SELECT id, state, superseded_at IS NOT NULL, superseded_by, restart_of FROM xtask_backfill_runs ORDER BY id",
            &[],
        )
        .unwrap();
    assert_eq!(runs.len(), 2);
    let (old_state, superseded, by): (String, bool, Option<String>) =
        (runs[0].get(1), runs[0].get(2), runs[0].get(3));
    assert_eq!((old_state.as_str(), superseded), ("cancelled", true));
    assert!(by.unwrap().contains('@'));
    let (new_id, new_state, restart_of): (i64, String, Option<i64>) =
        (runs[1].get(0), runs[1].get(1), runs[1].get(4));
    assert_eq!((new_state.as_str(), restart_of), ("done", Some(id)));

    let text = ok(&ws.config, &["status", "--database-url", &url]);
    assert!(
        text.contains(&format!("  run {new_id}: done, 3,000 rows")),
        "{text}"
    );
    assert!(
        text.contains(&format!("    earlier run {id}: cancelled after ")),
        "{text}"
    );
    // Run again, the same command starts nothing over.
    let out = ok(
        &ws.config,
        &["run", p, "--database-url", &url, "--restart", &again],
    );
    assert!(out.contains("is already done"), "{out}");
    assert_eq!(rows_done(&mut client), first_run + 3000);
}

/// `backfill run --help` says what `--restart` does to rows already changed.
#[test]
fn run_help() {
    let out = Command::new(bin())
        .args(["backfill", "run", "--help"])
        .env("COLUMNS", "100")
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8(out.stdout).unwrap();
    insta::assert_snapshot!(help);
}
