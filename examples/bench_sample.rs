//! Benchmark: `backfill sample` of the example counter-cache data migration on a generated
//! fixture of 100,000 users (plus their follows and posts), then, on the same SQLite data in
//! the same run, the same work as one unbatched UPDATE.
//!
//! `cargo run --release --example bench_sample [-- --users N] [-- --batch-size N]`
//!
//! Prints each stage of the sample with its rows/s, the whole sample's time, the single UPDATE's
//! time, and the ratio of the batched backfill to the single UPDATE (goal: within 1.5x).

use std::path::Path;
use std::time::Instant;

use xtask_migrate::backfill::backend::{Backend, KeyValue};
use xtask_migrate::backfill::format;
use xtask_migrate::backfill::sample::{self, Inputs, SampleOptions};
use xtask_migrate::backfill::snapshot::Mode;
use xtask_migrate::backfill::sqlite::SqliteBackend;
use xtask_migrate::config::Config;

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
    let sizes = xtask_migrate::testing::write_social_fixtures(
        &dir.path().join("fixtures"),
        users,
        20240229,
    )?;
    println!(
        "generated {} users, {} follows, {} posts in {:.0} ms",
        sizes.users,
        sizes.follows,
        sizes.posts,
        generated.elapsed().as_secs_f64() * 1000.0
    );

    let config = Config::defaults(dir.path());
    let migration = format::find(&config.data_migrations, "V1")?;
    let started = Instant::now();
    let inputs = Inputs::load(&config)?;
    let read = started.elapsed();
    let mut db = SqliteBackend::throwaway()?;
    let options = SampleOptions {
        batch_size,
        database_url: None,
        mode: Mode::Accept,
    };
    let report = sample::sample_on(
        &config,
        &inputs,
        &migration,
        &options,
        &mut db,
        &mut std::io::stdout(),
    )?;
    let whole = started.elapsed();
    println!(
        "whole sample: {:.0} ms (reading fixtures {:.0} ms)",
        whole.as_secs_f64() * 1000.0,
        read.as_secs_f64() * 1000.0
    );

    // The same work, unbatched: the batch statement once over every key, one transaction.
    db.execute("UPDATE users SET followers_count = 0, following_count = 0, posts_count = 0")?;
    let sql = migration.batch.sql(db.dialect()).to_string();
    let conn = db.connection();
    let single = Instant::now();
    let changed = conn.execute(&sql, rusqlite::params![i64::MIN, i64::MAX])?;
    let single = single.elapsed();
    let _ = KeyValue::Int(0);
    let backfill = report
        .stage("backfill")
        .map(|s| s.elapsed)
        .unwrap_or_default();
    println!(
        "single UPDATE: {:.0} ms, {changed} rows; batched backfill: {:.0} ms; ratio {:.2}x (goal <= 1.5x)",
        single.as_secs_f64() * 1000.0,
        backfill.as_secs_f64() * 1000.0,
        backfill.as_secs_f64() / single.as_secs_f64()
    );
    if !report.passed() {
        return Err(format!("the sample failed its checks: {:?}", report.failed_checks).into());
    }
    Ok(())
}
