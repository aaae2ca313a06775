//! Benchmark: `backfill verify` against one full-table read of both of its queries, on the same
//! PostgreSQL server (one the benchmark starts), in the same run.
//!
//! `cargo run --release --example bench_verify [-- --rows N] [--rounds N] [--planted N]`
//! (default 1,000,000 rows, 3 rounds, 100 planted differences)
//!
//! Two tables of N rows, `source` (the source of truth) and `items` (its copy), ids 2, 4, 6, ...;
//! a data migration whose `-- @expected` reads `source` and whose `-- @actual` reads `items`,
//! both over `(:lower, :upper]`. Per round:
//! - the reference: one full-table read of both queries (every row of each fetched to the client,
//!   what a dual read without digests costs), and, for comparison, the same queries counted in
//!   the server (`SELECT count(*)`: no transfer at all);
//! - `verify` on the correct table, default settings: time, ratio to the reference (goal: at most
//!   1.5x);
//! - `verify` after planting `--planted` differences (a third each: a value changed, a row
//!   deleted, a row added at an odd id): every one must be found and named, time against the
//!   clean case (goal: at most 2x).
//!
//! Then the peak RSS of the verifying process on a table of N/10 rows and of N rows (goal: flat).
//! Each verification is this example started again with `--worker`, so its memory is measured
//! alone (`wait4`).

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use pg_harness::PgServer;
use postgres::{Client, NoTls};
use xtask_migrate::backfill::db::target::Target;
use xtask_migrate::backfill::migration;
use xtask_migrate::backfill::run::health::Monitor;
use xtask_migrate::backfill::run::progress::{Progress, ProgressMode};
use xtask_migrate::backfill::run::tracking::TrackingNames;
use xtask_migrate::backfill::run::worker::RunOptions;
use xtask_migrate::backfill::verify::{self, VerifyOptions, VerifyReport};
use xtask_migrate::config::Config;

const MIGRATION: &str = "-- @requires 1
-- @table items
-- @key id

-- @batch
UPDATE items SET n = n WHERE id > :lower AND id <= :upper;

-- @snapshot
SELECT count(*) FROM items;

-- @expected
SELECT id, n, payload FROM source WHERE id > :lower AND id <= :upper;

-- @actual
SELECT id, n, payload FROM items WHERE id > :lower AND id <= :upper;
";

type BoxError = Box<dyn std::error::Error>;

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--worker") {
        return worker(&args[1..]);
    }
    let (mut rows, mut rounds, mut planted) = (1_000_000u64, 3usize, 100u64);
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        match (flag.as_str(), it.next().map(|v| v.parse::<u64>())) {
            ("--rows", Some(Ok(v))) if v >= 1000 => rows = v,
            ("--rounds", Some(Ok(v))) if v > 0 => rounds = v as usize,
            ("--planted", Some(Ok(v))) if v >= 3 => planted = v,
            _ => return Err("usage: bench_verify [--rows N] [--rounds N] [--planted N]".into()),
        }
    }
    let server = PgServer::start()?;
    println!(
        "PostgreSQL on port {} (fsync off); {rows} rows, {rounds} rounds, {planted} planted differences",
        server.port()
    );
    let ws = tempfile::tempdir()?;
    let config = Config::defaults(ws.path());
    std::fs::create_dir_all(&config.data_migrations)?;
    std::fs::write(config.data_migrations.join("V1__copy.sql"), MIGRATION)?;

    // Memory first, on a tenth of the table: compared with the full-size runs below.
    let small_url = server.create_database("small");
    fill(&mut Client::connect(&small_url, NoTls)?, rows / 10)?;
    let small = verify_in_child(&config, &small_url)?;
    if small.report.outcome != "clean" {
        return Err(format!(
            "the small table does not verify clean: {}",
            small.report.to_text()
        )
        .into());
    }

    let (mut clean_ratios, mut count_ratios, mut planted_ratios) =
        (Vec::new(), Vec::new(), Vec::new());
    let mut peak = 0;
    for round in 1..=rounds {
        let url = server.create_database("verify");
        let mut client = Client::connect(&url, NoTls)?;
        fill(&mut client, rows)?;
        let (fetched, read) = full_read(&mut client)?;
        let counted = count_read(&mut client)?;
        println!(
            "round {round}: full read of both queries: {fetched} rows fetched in {:.2}s; counted in the server in {:.2}s",
            read.as_secs_f64(),
            counted.as_secs_f64()
        );
        let clean = verify_in_child(&config, &url)?;
        if clean.report.outcome != "clean" || clean.report.rows_compared != rows {
            return Err(format!("not clean: {}", clean.report.to_text()).into());
        }
        let ratio = clean.elapsed.as_secs_f64() / read.as_secs_f64();
        println!(
            "round {round}: verify, clean:    {} rows compared in {:.2}s ({} digests, {} rows read), peak RSS {} KiB; ratio to the full read {ratio:.2}, to the count {:.2}",
            clean.report.rows_compared,
            clean.elapsed.as_secs_f64(),
            clean.report.digests,
            clean.report.rows_read,
            clean.peak_kb,
            clean.elapsed.as_secs_f64() / counted.as_secs_f64()
        );
        clean_ratios.push(ratio);
        count_ratios.push(clean.elapsed.as_secs_f64() / counted.as_secs_f64());
        peak = peak.max(clean.peak_kb);

        let expected = plant(&mut client, rows, planted)?;
        let found = verify_in_child(&config, &url)?;
        let mut keys: Vec<(i64, String)> = found
            .report
            .keys
            .iter()
            .map(|k| {
                (
                    k.key.as_deref().and_then(|k| k.parse().ok()).unwrap_or(-1),
                    k.category.clone(),
                )
            })
            .collect();
        keys.sort();
        if keys != expected || found.report.differences != planted {
            return Err(format!(
                "found {} of {planted} planted differences ({} named as planted): {}",
                found.report.differences,
                keys.iter().filter(|k| expected.contains(k)).count(),
                found.report.to_text()
            )
            .into());
        }
        let ratio = found.elapsed.as_secs_f64() / clean.elapsed.as_secs_f64();
        println!(
            "round {round}: verify, planted:  all {planted} found and named in {:.2}s ({} digests, {} ranges and {} rows read, {} re-reads; narrowing {:.2}s, re-reading {:.2}s, the last re-read delay {:.2}s); {ratio:.2}x the clean case",
            found.elapsed.as_secs_f64(),
            found.report.digests,
            found.report.ranges_read,
            found.report.rows_read,
            found.report.rechecks,
            found.report.narrowing_seconds,
            found.report.rechecking_seconds,
            found.report.delayed_seconds
        );
        planted_ratios.push(ratio);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let clean = median(&mut clean_ratios);
    let counted = median(&mut count_ratios);
    let planted_ratio = median(&mut planted_ratios);
    println!(
        "verify on a correct table / one full read of both queries, median of {rounds}: {clean:.2} (goal <= 1.5) {}; / both counted in the server: {counted:.2}",
        if clean <= 1.5 { "ok" } else { "ABOVE GOAL" }
    );
    println!(
        "verify with {planted} planted differences / clean, median of {rounds}: {planted_ratio:.2} (goal <= 2.0) {}; all found every round",
        if planted_ratio <= 2.0 {
            "ok"
        } else {
            "ABOVE GOAL"
        }
    );
    println!(
        "peak RSS of the verifying process: {} KiB at {} rows, {peak} KiB at {rows} rows",
        small.peak_kb,
        rows / 10
    );
    Ok(())
}

/// `source` and `items`, identical: `rows` rows at ids 2, 4, 6, ..., vacuumed and analyzed.
fn fill(client: &mut Client, rows: u64) -> Result<(), BoxError> {
    client.batch_execute(&format!(
        "CREATE TABLE source (id bigint PRIMARY KEY, n integer NOT NULL, payload text NOT NULL);
         INSERT INTO source SELECT g * 2, g % 1000, md5(g::text) FROM generate_series(1, {rows}) AS g;
         CREATE TABLE items (id bigint PRIMARY KEY, n integer NOT NULL, payload text NOT NULL);
         INSERT INTO items SELECT * FROM source;"
    ))?;
    // Alone: VACUUM refuses to run in the implicit transaction of a multi-statement string.
    client.batch_execute("VACUUM ANALYZE source")?;
    client.batch_execute("VACUUM ANALYZE items")?;
    Ok(())
}

/// Both queries over every key, every row fetched to the client: the rows and the time.
fn full_read(client: &mut Client) -> Result<(u64, Duration), BoxError> {
    let started = Instant::now();
    let mut fetched = 0u64;
    for table in ["source", "items"] {
        let sql = format!("SELECT id, n, payload FROM {table} WHERE id > $1 AND id <= $2");
        let stmt = client.prepare(&sql)?;
        let params: [&(dyn postgres::types::ToSql + Sync); 2] = [&i64::MIN, &i64::MAX];
        let mut rows = client.query_raw(&stmt, params)?;
        while let Some(row) = postgres::fallible_iterator::FallibleIterator::next(&mut rows)? {
            let _: (i64, i32, &str) = (row.get(0), row.get(1), row.get(2));
            fetched += 1;
        }
    }
    Ok((fetched, started.elapsed()))
}

/// Both queries over every key, counted in the server.
fn count_read(client: &mut Client) -> Result<Duration, BoxError> {
    let started = Instant::now();
    for table in ["source", "items"] {
        client.query_one(
            &format!(
                "SELECT count(*) FROM (SELECT id, n, payload FROM {table} WHERE id > $1 AND id <= $2) AS q"
            ),
            &[&i64::MIN, &i64::MAX],
        )?;
    }
    Ok(started.elapsed())
}

/// Plants `count` differences spread over the table (a third each: value, missing, extra);
/// the keys and categories a verification must report, sorted.
fn plant(client: &mut Client, rows: u64, count: u64) -> Result<Vec<(i64, String)>, BoxError> {
    let step = rows / count;
    let mut expected = Vec::new();
    let mut sql = String::from("BEGIN;");
    for i in 0..count {
        let id = ((i * step + step / 2).max(1) * 2) as i64;
        match i % 3 {
            0 => {
                sql.push_str(&format!("UPDATE items SET n = n + 1 WHERE id = {id};"));
                expected.push((id, "value".to_string()));
            }
            1 => {
                sql.push_str(&format!("DELETE FROM items WHERE id = {id};"));
                expected.push((id, "missing".to_string()));
            }
            _ => {
                sql.push_str(&format!(
                    "INSERT INTO items VALUES ({}, 0, 'planted');",
                    id + 1
                ));
                expected.push((id + 1, "extra".to_string()));
            }
        }
    }
    sql.push_str("COMMIT;");
    client.batch_execute(&sql)?;
    expected.sort();
    Ok(expected)
}

struct Verified {
    elapsed: Duration,
    peak_kb: i64,
    report: VerifyReport,
}

/// `backfill verify V1` at default settings in a child process: its wall time, peak RSS and
/// report.
fn verify_in_child(config: &Config, url: &str) -> Result<Verified, BoxError> {
    let started = Instant::now();
    let mut child = Command::new(std::env::current_exe()?)
        .arg("--worker")
        .arg(&config.root)
        .arg(url)
        .stdout(Stdio::piped())
        .spawn()?;
    let mut out = String::new();
    child
        .stdout
        .take()
        .ok_or("no stdout")?
        .read_to_string(&mut out)?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our child, not yet reaped (we never wait on it through std).
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let elapsed = started.elapsed();
    if rc != pid || !libc::WIFEXITED(status) {
        return Err(format!("the verifying process failed (status {status})").into());
    }
    let report: serde_json::Value = serde_json::from_str(&out)?;
    Ok(Verified {
        elapsed,
        peak_kb: usage.ru_maxrss,
        report: report_from(&report)?,
    })
}

fn report_from(json: &serde_json::Value) -> Result<VerifyReport, BoxError> {
    Ok(serde_json::from_value(json.clone())?)
}

fn worker(args: &[String]) -> Result<(), BoxError> {
    let [root, url] = args else {
        return Err("--worker ROOT URL".into());
    };
    let config = Config::defaults(Path::new(root));
    let migration = migration::find(&config.data_migrations, "V1")?;
    let target = Target::parse(url)?;
    static NEVER: AtomicBool = AtomicBool::new(false);
    let options = RunOptions {
        worker: "bench".into(),
        progress: Progress::new(ProgressMode::Quiet, Duration::from_secs(60)),
        stop: &NEVER,
        poll: Duration::from_millis(20),
        max_batches: None,
        restart: None,
    };
    let settings = verify::settings(&migration);
    let (verified, mut store) = verify::verify(
        &target,
        &TrackingNames::default(),
        &migration,
        &settings,
        None,
        VerifyOptions::default(),
        options,
        &mut Monitor::default(),
    )
    .map_err(|e| e.to_string())?;
    let report = VerifyReport::build(
        store.as_mut(),
        &migration.id(),
        target.info().describe(),
        None,
        &verified,
        false,
    )
    .map_err(|e| e.to_string())?;
    print!("{}", report.to_json());
    Ok(())
}
