//! Benchmark: `backfill run` against one unbatched UPDATE doing the same work, on the same
//! PostgreSQL server (one the benchmark starts), in the same run.
//!
//! `cargo run --release --example bench_run [-- --rows N] [--rounds N] [--workers N]` (default
//! 1,000,000 rows, 3 rounds, 1 worker; with N workers the plan has 4N key ranges and N runner
//! processes share the run)
//!
//! Two identical tables of N rows, each in its own database: one gets `UPDATE items SET
//! n = n + 1` in one statement, the other the same statement as a data migration run by
//! `backfill run` at default settings (the batch size adapting toward 200ms per batch). Prints
//! both times, the throughput ratio (goal: at least 0.8), the longest batch transaction (goal:
//! at most the 200ms target), and the peak RSS of the runner process on a table of N/4 rows and
//! of N rows (goal: flat). The runner is this example started again with `--worker`, so its
//! memory is measured alone (`wait4`).

use std::path::Path;
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use pg_harness::PgServer;
use postgres::{Client, NoTls};
use xtask_migrate::backfill::db::target::Target;
use xtask_migrate::backfill::migration;
use xtask_migrate::backfill::run::plan::{self, Plan, PlanRequest, Settings};
use xtask_migrate::backfill::run::progress::{Progress, ProgressMode};
use xtask_migrate::backfill::run::tracking::TrackingNames;
use xtask_migrate::backfill::run::{self, RunOptions};
use xtask_migrate::backfill::sample::snapshot;
use xtask_migrate::config::Config;

const MIGRATION: &str = "-- @requires 1\n-- @table items\n-- @key id\n\n-- @batch\nUPDATE items SET n = n + 1 WHERE id > :lower AND id <= :upper;\n\n-- @snapshot\nSELECT id, n FROM items ORDER BY id;\n";

type BoxError = Box<dyn std::error::Error>;

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--worker") {
        return worker(&args[1..]);
    }
    let (mut rows, mut rounds, mut workers) = (1_000_000u64, 3usize, 1u64);
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        match (flag.as_str(), it.next().map(|v| v.parse::<u64>())) {
            ("--rows", Some(Ok(v))) => rows = v,
            ("--rounds", Some(Ok(v))) if v > 0 => rounds = v as usize,
            ("--workers", Some(Ok(v))) if v > 0 => workers = v,
            _ => return Err("usage: bench_run [--rows N] [--rounds N] [--workers N]".into()),
        }
    }

    let server = PgServer::start()?;
    println!(
        "PostgreSQL on port {} (fsync off); {rows} rows, {rounds} rounds, {workers} worker(s)",
        server.port()
    );
    let ws = tempfile::tempdir()?;
    let config = Config::defaults(ws.path());
    let plan_path = write_plan(&config, workers)?;

    // Memory first, on a quarter of the table: compared with the full-size runs below.
    let small = batched(&server, &config, &plan_path, rows / 4, workers)?;
    // Rounds alternate the two ways on fresh tables, so a noisy neighbour on the machine (a
    // build, a checkpoint) weighs on both; the median ratio is the result.
    let mut ratios = Vec::new();
    let mut longest = 0f64;
    let mut over = 0i64;
    let mut peak = 0i64;
    for round in 1..=rounds {
        let url = server.create_database("single");
        let mut single = Client::connect(&url, NoTls)?;
        fill(&mut single, rows)?;
        let started = Instant::now();
        let changed = single.execute("UPDATE items SET n = n + 1", &[])?;
        let single_time = started.elapsed();
        println!(
            "round {round}: single UPDATE  {changed} rows in {:.2}s ({:.0} rows/s), one transaction holding every row lock",
            single_time.as_secs_f64(),
            changed as f64 / single_time.as_secs_f64()
        );
        let b = batched(&server, &config, &plan_path, rows, workers)?;
        let ratio = single_time.as_secs_f64() / b.elapsed.as_secs_f64();
        println!("round {round}: backfill run   {}; ratio {ratio:.2}", b.line);
        ratios.push(ratio);
        longest = longest.max(b.longest);
        over += b.over;
        peak = peak.max(b.peak_kb);
    }
    ratios.sort_by(f64::total_cmp);
    let median = ratios[ratios.len() / 2];
    println!(
        "throughput ratio (backfill run / single UPDATE), median of {rounds}: {median:.2} (goal >= 0.80) {}",
        if median >= 0.8 { "ok" } else { "BELOW GOAL" }
    );
    println!(
        "longest batch transaction: {longest:.0}ms; {over} batches over the 200ms target {}",
        if over == 0 { "ok" } else { "(see above)" }
    );
    println!(
        "peak RSS of the runner: {} KiB at {} rows, {peak} KiB at {rows} rows",
        small.peak_kb,
        rows / 4
    );
    Ok(())
}

struct Batched {
    elapsed: Duration,
    longest: f64,
    over: i64,
    peak_kb: i64,
    line: String,
}

/// `backfill run` at default settings on a fresh table of `size` rows, in a child process.
fn batched(
    server: &PgServer,
    config: &Config,
    plan_path: &Path,
    size: u64,
    workers: u64,
) -> Result<Batched, BoxError> {
    let url = server.create_database("batched");
    let mut client = Client::connect(&url, NoTls)?;
    fill(&mut client, size)?;
    let (elapsed, peak_kb) = run_workers(config, plan_path, &url, workers)?;
    let row = client.query_one(
        "SELECT count(*), coalesce(max(held_ms), 0)::float8, count(*) FILTER (WHERE held_ms > 200),
                (SELECT count(*) FROM items WHERE n <> 1), coalesce(sum(held_ms), 0)::float8
         FROM xtask_backfill_batch_log",
        &[],
    )?;
    let (batches, longest, over, wrong, held): (i64, f64, i64, i64, f64) =
        (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
    if wrong != 0 {
        return Err(format!("{wrong} rows were not updated exactly once").into());
    }
    let line = format!(
        "{size} rows in {:.2}s ({:.0} rows/s, {:.2}s inside batch transactions), {batches} batches, longest batch transaction {longest:.0}ms ({over} over the 200ms target), peak RSS {peak_kb} KiB",
        elapsed.as_secs_f64(),
        size as f64 / elapsed.as_secs_f64(),
        held / 1000.0,
    );
    Ok(Batched {
        elapsed,
        longest,
        over,
        peak_kb,
        line,
    })
}

/// `items(id, n, payload)` with `rows` rows, vacuumed and analyzed like a table in service.
fn fill(client: &mut Client, rows: u64) -> Result<(), BoxError> {
    client.batch_execute(&format!(
        "CREATE TABLE items (id bigint PRIMARY KEY, n integer NOT NULL DEFAULT 0, payload text NOT NULL);
         INSERT INTO items SELECT g, 0, md5(g::text) FROM generate_series(1, {rows}) AS g;"
    ))?;
    // Alone: VACUUM refuses to run in the implicit transaction of a multi-statement string.
    client.batch_execute("VACUUM ANALYZE items")?;
    Ok(())
}

/// An approved data migration and its plan at default settings (no database: bounds at run),
/// with four key ranges per worker when several share the run.
fn write_plan(config: &Config, workers: u64) -> Result<std::path::PathBuf, BoxError> {
    std::fs::create_dir_all(&config.data_migrations)?;
    let path = config.data_migrations.join("V1__bump.sql");
    std::fs::write(&path, MIGRATION)?;
    let migration = migration::load_file(&path)?;
    let snap = snapshot::path_for(&config.data_migrations.join("snapshots"), &migration);
    std::fs::create_dir_all(snap.parent().ok_or("no parent")?)?;
    std::fs::write(
        &snap,
        snapshot::file_text(&migration, "V1__bump.sql", "approved"),
    )?;
    xtask_migrate::backfill::sample::snapshot::require_approval(config, &migration)?;
    let plan_path = plan::default_path(config, &migration);
    let request = PlanRequest {
        settings: Settings::from_migration(&migration),
        tracking: TrackingNames::default(),
        ranges: Some(if workers > 1 { workers * 4 } else { 1 }),
    };
    let plan = plan::build(config, &migration, &request, None, &plan_path);
    std::fs::create_dir_all(plan_path.parent().ok_or("no parent")?)?;
    std::fs::write(&plan_path, plan.to_json())?;
    Ok(plan_path)
}

/// Runs the plan in `workers` child processes at once; the wall time until the last one is done
/// and the largest peak RSS (KiB) among them.
fn run_workers(
    config: &Config,
    plan: &Path,
    url: &str,
    workers: u64,
) -> Result<(Duration, i64), BoxError> {
    let started = Instant::now();
    let mut pids = Vec::new();
    for i in 0..workers {
        let child = Command::new(std::env::current_exe()?)
            .arg("--worker")
            .arg(&config.root)
            .arg(plan)
            .arg(url)
            .arg(format!("bench-{i}"))
            .spawn()?;
        pids.push(child.id() as libc::pid_t);
    }
    let mut peak = 0;
    for pid in pids {
        let mut status = 0;
        // SAFETY: an all-zero rusage is a valid value for wait4 to fill in.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: pid is our child, not yet reaped (we never wait on it through std).
        let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if rc != pid || !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
            return Err(format!("a worker failed (status {status})").into());
        }
        peak = peak.max(usage.ru_maxrss);
    }
    Ok((started.elapsed(), peak))
}

fn worker(args: &[String]) -> Result<(), BoxError> {
    let [root, plan_path, url, name] = args else {
        return Err("--worker ROOT PLAN URL NAME".into());
    };
    let config = Config::defaults(Path::new(root));
    let plan = Plan::load(Path::new(plan_path)).map_err(|e| e.to_string())?;
    let migration = migration::load_file(&config.root.join(&plan.migration.file))?;
    let target = Target::parse(url)?;
    static NEVER: AtomicBool = AtomicBool::new(false);
    let options = RunOptions {
        worker: name.clone(),
        progress: Progress::new(ProgressMode::Quiet, Duration::from_secs(60)),
        stop: &NEVER,
        poll: Duration::from_millis(20),
        max_batches: None,
        restart: None,
    };
    run::run(&target, &plan, &migration, options, &mut std::io::sink())
        .map_err(|e| e.to_string())?;
    Ok(())
}
