//! Benchmark: `backfill sample` of the example counter-cache data migration on a generated
//! fixture of 100,000 users (plus their follows and posts), then, on the same SQLite data in
//! the same run, the same work as one unbatched UPDATE.
//!
//! `cargo run --release --example bench_sample [-- --users N] [-- --batch-size N]`
//!
//! Prints each stage of the sample with its rows/s and the whole sample's time; then, on the same
//! database, times the batched backfill and the single UPDATE alternately five times and prints
//! their medians and ratio (goal: within 1.5x).

use std::path::Path;
use std::time::Instant;

use std::time::Duration;

use std::sync::atomic::AtomicBool;

use xtask_migrate::backfill::db::sqlite::SqliteBackend;
use xtask_migrate::backfill::migration;
use xtask_migrate::backfill::run::progress::{Progress, ProgressMode};
use xtask_migrate::backfill::run::tracking::sqlite::SqliteStore;
use xtask_migrate::backfill::run::tracking::{Store, TrackingNames};
use xtask_migrate::backfill::run::worker::{self, RunOptions};
use xtask_migrate::backfill::sample::snapshot::Mode;
use xtask_migrate::backfill::sample::{self, Inputs, SampleOptions};
use xtask_migrate::config::{Config, SampleEngine};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut users = 100_000usize;
    let mut batch_size = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next().map(|v| v.parse::<u64>())) {
            ("--users", Some(Ok(v))) => users = v as usize,
            ("--batch-size", Some(Ok(v))) => batch_size = Some(v),
            _ => return Err("usage: bench_sample [--users N] [--batch-size N]".into()),
        }
    }

    // A workspace with this repository's schema and data migration, and generated fixtures.
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir()?;
    for sub in ["migrations", "data-migrations"] {
        std::fs::create_dir_all(dir.path().join(sub))?;
        for entry in std::fs::read_dir(repo.join(sub))? {
            let path = entry?.path();
            if path.is_file() {
                std::fs::copy(
                    &path,
                    dir.path()
                        .join(sub)
                        .join(path.file_name().unwrap_or_default()),
                )?;
            }
        }
    }
    let generated = Instant::now();
    let sizes = pg_harness::write_social_fixtures(&dir.path().join("fixtures"), users, 20240229)?;
    println!(
        "generated {} users, {} follows, {} posts in {:.0} ms",
        sizes.users,
        sizes.follows,
        sizes.posts,
        generated.elapsed().as_secs_f64() * 1000.0
    );

    let config = Config::defaults(dir.path());
    let migration = migration::find(&config.data_migrations, "V1")?;
    let started = Instant::now();
    let inputs = Inputs::load(&config)?;
    let read = started.elapsed();
    let mut db = SqliteStore::new(SqliteBackend::throwaway()?, TrackingNames::default())?;
    let options = SampleOptions {
        batch_size,
        mode: Mode::Accept,
    };
    let report = sample::sample_on(
        &config,
        &inputs,
        &migration,
        &options,
        SampleEngine::Sqlite,
        &mut db,
        &mut std::io::stdout(),
    )?;
    let whole = started.elapsed();
    println!(
        "whole sample: {:.0} ms (reading fixtures {:.0} ms)",
        whole.as_secs_f64() * 1000.0,
        read.as_secs_f64() * 1000.0
    );

    // On the same data: the batched backfill again (the engine `backfill run` uses, with the
    // sample's settings), and the same work as one unbatched UPDATE
    // (the batch statement once over every key, one transaction), alternately, several times:
    // the machine is shared, one timing alone is noise.
    let batch_size = report
        .stage("backfill")
        .and_then(|s| s.summary.split("batches of ").nth(1))
        .and_then(|s| s.split(',').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(sample::SAMPLE_BATCH_SIZE);
    let settings = sample::sample_settings(&migration, batch_size);
    let sql = migration.batch.sql(db.backend().dialect()).to_string();
    let reset = "UPDATE users SET followers_count = 0, following_count = 0, posts_count = 0; DELETE FROM xtask_backfill_batch_log; DELETE FROM xtask_backfill_ranges; DELETE FROM xtask_backfill_runs;";
    let (mut batched, mut single) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        db.backend().execute(reset)?;
        let stop = AtomicBool::new(false);
        let started = Instant::now();
        let run = worker::execute(
            &mut db,
            &settings,
            &migration,
            RunOptions {
                worker: "bench".into(),
                progress: Progress::new(ProgressMode::Quiet, Duration::from_secs(60)),
                stop: &stop,
                poll: Duration::from_millis(10),
                max_batches: None,
                restart: None,
            },
        )?;
        batched.push(started.elapsed());
        db.backend().execute(reset)?;
        let started = Instant::now();
        let changed = db
            .backend_mut()
            .connection()
            .execute(&sql, rusqlite::params![i64::MIN, i64::MAX])?;
        single.push(started.elapsed());
        assert_eq!(changed as u64, run.rows);
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (batched, single) = (median(&mut batched), median(&mut single));
    println!(
        "median of 5: batched backfill ({batch_size} rows per batch) {:.0} ms, single UPDATE {:.0} ms: ratio {:.2}x (goal <= 1.5x)",
        batched.as_secs_f64() * 1000.0,
        single.as_secs_f64() * 1000.0,
        batched.as_secs_f64() / single.as_secs_f64()
    );
    if !report.passed() {
        return Err(format!("the sample failed its checks: {:?}", report.failed_checks).into());
    }
    Ok(())
}
