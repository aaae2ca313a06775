//! Benchmark: `backfill sample` of this repository's example data migration on its fixtures, on
//! each engine: `sqlite` (a temporary SQLite database) and `postgres-local`, three ways: a
//! private PostgreSQL cluster for the command alone (`--keep-alive 0`: started from this
//! machine's binaries, stopped and removed afterwards), and the kept-alive cluster a later
//! command finds running (the default), twice: a first sample of these inputs (no loaded
//! database kept: it loads, and keeps what it loaded) and the same sample repeated (its
//! database a copy of the one kept), the edit-sample loop of a data migration.
//!
//! `cargo run --release --example bench_engines [-- --rounds N] [-- --bin-dir DIR]`
//!
//! Each round samples once on each engine, alternately (the machine may be shared: one timing
//! alone is noise), and times the stages: engine start (a fresh database, with the tracking
//! tables; for a cluster per command, the copy of the template and the server's start; for the
//! kept-alive cluster, finding it), schema replay, fixture load (on a repeated sample: the copy
//! of the kept database), keeping the loaded database (a first sample on the kept-alive
//! cluster), batches, checks, snapshot, teardown (the cluster's stop and removal, or the
//! database's rename for the next command to drop, and the wait for the spare databases made
//! for the next command), and the whole sample (reading the inputs, everything above and the
//! teardown). Prints the median of each and the ratios of the whole samples to SQLite's. On
//! PostgreSQL some stages overlap, as
//! in the command: the engine's start with the reading of the inputs, the checks with the
//! verification; the whole is the wall time.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use xtask_migrate::backfill::db::cluster;
use xtask_migrate::backfill::db::sqlite::SqliteBackend;
use xtask_migrate::backfill::migration;
use xtask_migrate::backfill::run::tracking::TrackingNames;
use xtask_migrate::backfill::run::tracking::sqlite::SqliteStore;
use xtask_migrate::backfill::sample::engine::LocalCluster;
use xtask_migrate::backfill::sample::snapshot::Mode;
use xtask_migrate::backfill::sample::{self, Inputs, SampleOptions, SampleReport};
use xtask_migrate::config::{Config, SampleEngine};

const STAGES: [&str; 11] = [
    "start", "schema", "fixtures", "cache", "backfill", "checks", "verify", "snapshot", "teardown",
    "other", "whole",
];

/// The keep-alive of the kept-alive cluster's rounds.
const KEEP_ALIVE: Duration = Duration::from_secs(60);

/// One sample's times, in the order of [`STAGES`].
type Times = [Duration; 11];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut rounds = 5usize;
    let mut bin_dir: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--rounds", Some(n)) => rounds = n.parse()?,
            ("--bin-dir", Some(dir)) => bin_dir = Some(dir.into()),
            _ => return Err("usage: bench_engines [--rounds N] [--bin-dir DIR]".into()),
        }
    }
    let bin = cluster::find_binaries(bin_dir.as_deref()).map_err(|looked| {
        format!(
            "no PostgreSQL server binaries (looked in {})",
            looked.join(", ")
        )
    })?;
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = Config::defaults(repo);
    let migration = migration::find(&config.data_migrations, "V1")?;
    let options = SampleOptions {
        batch_size: None,
        mode: Mode::Check,
    };
    println!(
        "sampling {} on sqlite and postgres-local ({}), {rounds} rounds",
        migration.id(),
        bin.display()
    );

    // The kept-alive cluster, started once before the rounds (as by an earlier command), so
    // each round is a later command that finds it.
    drop(LocalCluster::start(&bin, KEEP_ALIVE)?);

    let (mut sqlite, mut local, mut first, mut repeated) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        // SQLite.
        let whole = Instant::now();
        let inputs = Inputs::load(&config)?;
        let started = Instant::now();
        let mut db = SqliteStore::new(SqliteBackend::throwaway()?, TrackingNames::default())?;
        let start = started.elapsed();
        let report = sample::sample_on(
            &config,
            &inputs,
            &migration,
            &options,
            SampleEngine::Sqlite,
            &mut db,
            &mut std::io::sink(),
        )?;
        let stopped = Instant::now();
        drop(db);
        sqlite.push(times(start, &report, stopped.elapsed(), whole.elapsed())?);

        // A private PostgreSQL cluster for this command alone, then the kept-alive one: a
        // first sample of these inputs (nothing kept from an earlier round), then the same
        // sample again.
        let mut forget = LocalCluster::start(&bin, KEEP_ALIVE)?;
        forget.forget_loaded();
        drop(forget);
        for (keep_alive, out) in [
            (Duration::ZERO, &mut local),
            (KEEP_ALIVE, &mut first),
            (KEEP_ALIVE, &mut repeated),
        ] {
            // As the command does: the cluster found (or started) while the inputs are read.
            let whole = Instant::now();
            let (inputs, mut cluster) =
                sample::load_while_opening(&config, || LocalCluster::start(&bin, keep_alive))?;
            let report = sample::sample_local(
                &config,
                &inputs,
                &migration,
                &mut cluster,
                &options,
                &mut std::io::sink(),
            )?;
            let stopped = Instant::now();
            drop(cluster);
            let start = report
                .stage("engine")
                .map(|s| s.elapsed)
                .unwrap_or_default();
            out.push(times(start, &report, stopped.elapsed(), whole.elapsed())?);
        }
    }

    let (sqlite, local, first, repeated) = (
        medians(&mut sqlite),
        medians(&mut local),
        medians(&mut first),
        medians(&mut repeated),
    );
    let ratio = |t: &Times, i: usize| t[i].as_secs_f64() / sqlite[i].as_secs_f64().max(1e-9);
    // A stage SQLite has not (keeping the loaded database) has no ratio.
    let shown = |t: &Times, i: usize| {
        if sqlite[i].is_zero() {
            "-".to_string()
        } else {
            format!("{:.1}x", ratio(t, i))
        }
    };
    println!(
        "{:<9} {:>10} {:>15} {:>6} {:>15} {:>6} {:>15} {:>6}",
        "median",
        "sqlite",
        "postgres-local",
        "ratio",
        "kept, first",
        "ratio",
        "kept, repeated",
        "ratio"
    );
    for (i, name) in STAGES.iter().enumerate() {
        println!(
            "{name:<9} {:>10} {:>15} {:>6} {:>15} {:>6} {:>15} {:>6}",
            ms(sqlite[i]),
            ms(local[i]),
            shown(&local, i),
            ms(first[i]),
            shown(&first, i),
            ms(repeated[i]),
            shown(&repeated, i),
        );
    }
    let whole = STAGES.len() - 1;
    println!(
        "whole sample: postgres-local / sqlite = {:.1}x with a cluster per command; on the kept-alive cluster {:.1}x for a first sample of these inputs, {:.1}x for the same sample repeated (goal: within 2x, engine start included)",
        ratio(&local, whole),
        ratio(&first, whole),
        ratio(&repeated, whole),
    );
    Ok(())
}

/// The times of one sample; `other` is what the stages leave out of the whole (reading the
/// inputs, counting the table's rows, the snapshot file), none where stages overlap (on
/// PostgreSQL the engine's start overlaps the reading of the inputs, and the checks the
/// verification).
fn times(
    start: Duration,
    report: &SampleReport,
    teardown: Duration,
    whole: Duration,
) -> Result<Times, Box<dyn std::error::Error>> {
    if !report.passed() {
        return Err(format!("the sample failed: {report:?}").into());
    }
    let stage = |name: &str| report.stage(name).map(|s| s.elapsed).unwrap_or_default();
    let mut t = [
        start,
        stage("schema"),
        stage("fixtures"),
        stage("cache"),
        stage("backfill"),
        stage("checks"),
        stage("verify"),
        stage("snapshot"),
        teardown,
        Duration::ZERO,
        whole,
    ];
    let counted: Duration = t[..9].iter().sum();
    t[9] = whole.saturating_sub(counted);
    Ok(t)
}

fn medians(samples: &mut [Times]) -> Times {
    let mut out = [Duration::ZERO; 11];
    for (i, slot) in out.iter_mut().enumerate() {
        let mut column: Vec<Duration> = samples.iter().map(|t| t[i]).collect();
        column.sort();
        *slot = column[column.len() / 2];
    }
    out
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}
