//! `backfill sample` on the kept-alive PostgreSQL cluster keeps the database as it stands after
//! the schema migrations and the fixture load, and builds later samples of the same inputs from
//! it. Each test keeps its cluster under a private parent directory (removed at the end, which
//! stops the server), so it shares nothing with the machine's kept-alive cluster or another
//! test's.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use xtask_migrate::backfill::db::cluster;
use xtask_migrate::backfill::db::warm::WarmCluster;
use xtask_migrate::backfill::migration;
use xtask_migrate::backfill::sample::engine::{LOADED_KEPT, LocalCluster, Server};
use xtask_migrate::backfill::sample::snapshot::{Mode, Outcome};
use xtask_migrate::backfill::sample::{self, Inputs, SampleOptions, SampleReport};
use xtask_migrate::config::Config;

use crate::support::copy_dir;

/// A copy of the PostgreSQL-only example workspace and a private place for its cluster, both
/// removed at the end of the test.
struct Place {
    workspace: tempfile::TempDir,
    parent: tempfile::TempDir,
    bin: PathBuf,
}

/// A temporary directory the `postgres` user can reach (the server runs as that user when the
/// tests run as root).
fn open_tempdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    dir
}

impl Place {
    fn new() -> Place {
        let workspace = open_tempdir();
        copy_dir(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/pg-workspace"),
            workspace.path(),
        );
        let bin = cluster::find_binaries(None).unwrap_or_else(|looked| {
            panic!(
                "these tests need PostgreSQL's server binaries (apt-get install postgresql-15); looked in {}",
                looked.join(", ")
            )
        });
        Place {
            workspace,
            parent: open_tempdir(),
            bin,
        }
    }

    fn config(&self) -> Config {
        Config::discover_from(self.workspace.path()).unwrap()
    }

    fn edit(&self, relative: &str, from: &str, to: &str) {
        let path = self.workspace.path().join(relative);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{relative} lacks {from:?}");
        std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    }

    /// The kept-alive cluster of this test, as a command finds it.
    fn cluster(&self) -> LocalCluster {
        let warm = WarmCluster::acquire_in(self.parent.path(), &self.bin, Duration::from_secs(120))
            .unwrap();
        LocalCluster::on(Server::Warm(Box::new(warm)), Instant::now()).unwrap()
    }

    /// One command's `backfill sample --check V1`: its report (or error) and its output.
    fn sample(&self) -> (xtask_migrate::backfill::error::Result<SampleReport>, String) {
        self.sample_on(self.cluster())
    }

    /// [`Place::sample`] on `local`.
    fn sample_on(
        &self,
        mut local: LocalCluster,
    ) -> (xtask_migrate::backfill::error::Result<SampleReport>, String) {
        let config = self.config();
        let mut out = Vec::new();
        let report = Inputs::load(&config).and_then(|inputs| {
            let migration = migration::find(&config.data_migrations, "V1")?;
            sample::sample_local(
                &config,
                &inputs,
                &migration,
                &mut local,
                &SampleOptions {
                    batch_size: None,
                    mode: Mode::Check,
                },
                &mut out,
            )
        });
        drop(local);
        (report, String::from_utf8(out).unwrap())
    }

    /// A URL of the cluster's database `database`.
    fn url(&self, database: &str) -> String {
        let warm = WarmCluster::acquire_in(self.parent.path(), &self.bin, Duration::from_secs(120))
            .unwrap();
        warm.url(database)
    }

    fn admin_url(&self) -> String {
        self.url("postgres")
    }

    /// The databases whose names match the regular expression `pattern`.
    fn databases(&self, pattern: &str) -> Vec<String> {
        let mut client = postgres::Client::connect(&self.admin_url(), postgres::NoTls).unwrap();
        client
            .query(
                "SELECT datname::text FROM pg_database WHERE datname ~ $1 ORDER BY 1",
                &[&pattern],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    fn kept(&self) -> Vec<String> {
        self.databases("^fixtures_[0-9a-f]{16}$")
    }
}

const LOADED: &str = "  fixtures  2 tables, ";
const FROM_CACHE: &str = " rows (as loaded by an earlier sample)";

/// The name in the output's `cache` line (`kept as fixtures_...`).
fn kept_as(out: &str) -> Option<String> {
    let line = out
        .lines()
        .find(|l| l.starts_with("  cache     kept as "))?;
    Some(
        line["  cache     kept as ".len()..]
            .split(' ')
            .next()?
            .to_string(),
    )
}

#[track_caller]
fn passed(result: (xtask_migrate::backfill::error::Result<SampleReport>, String)) -> String {
    let (report, out) = result;
    let report = report.unwrap_or_else(|e| panic!("{e}\n{out}"));
    assert!(report.passed(), "{out}");
    assert_eq!(report.outcome, Outcome::Matched, "{out}");
    out
}

/// A first sample loads the fixtures and keeps the result; the same sample again copies it
/// (said on its fixtures line, timed there) and gives the same approved snapshot. Nothing the
/// backfill wrote is in the kept database, and a cluster per command keeps nothing.
#[test]
fn a_repeated_sample_copies_the_loaded_database_and_gives_the_same_snapshot() {
    let place = Place::new();
    let first = passed(place.sample());
    assert!(!first.contains(FROM_CACHE), "{first}");
    let name = kept_as(&first).unwrap_or_else(|| panic!("the load is kept: {first}"));
    assert_eq!(place.kept(), vec![name.clone()]);

    for _ in 0..2 {
        let again = passed(place.sample());
        let fixtures = again.lines().find(|l| l.starts_with(LOADED)).unwrap();
        assert!(fixtures.contains(FROM_CACHE), "{again}");
        assert!(
            again.contains("migrations applied, up to V3 (as loaded by an earlier sample)"),
            "{again}"
        );
        assert!(again.contains(" copied "), "{again}");
        assert_eq!(kept_as(&again), None, "{again}");
        // The same rows and tables as the load that was kept.
        let loaded =
            |out: &str| out.lines().find(|l| l.starts_with(LOADED)).unwrap()[..30].to_string();
        assert_eq!(loaded(&first), loaded(&again));
    }
    assert_eq!(place.kept(), vec![name.clone()]);

    // The kept database is as the load left it, with the batch engine's tracking tables made
    // and empty: no run recorded, no backfilled count.
    let mut admin = postgres::Client::connect(&place.admin_url(), postgres::NoTls).unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE probe TEMPLATE {name}"))
        .unwrap();
    let probe = place.url("probe");
    let mut client = postgres::Client::connect(&probe, postgres::NoTls).unwrap();
    let tracking: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'xtask_backfill%'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(tracking > 0, "no tracking table in the kept database");
    let runs: i64 = client
        .query_one("SELECT count(*) FROM xtask_backfill_runs", &[])
        .unwrap()
        .get(0);
    assert_eq!(runs, 0);
    let filled: i64 = client
        .query_one("SELECT count(*) FROM orders WHERE item_count > 0", &[])
        .unwrap()
        .get(0);
    let orders: i64 = client
        .query_one("SELECT count(*) FROM orders", &[])
        .unwrap()
        .get(0);
    assert_eq!((filled, orders > 0), (0, true));

    // A cluster per command keeps nothing.
    let local = LocalCluster::start(&place.bin, Duration::ZERO).unwrap();
    assert!(!local.keeps_loaded());
    let (report, out) = place.sample_on(local);
    let report = report.unwrap();
    assert!(report.passed(), "{out}");
    assert_eq!(kept_as(&out), None, "{out}");
    assert!(!out.contains(FROM_CACHE), "{out}");
}

/// A changed fixture, migration or manifest is loaded again (and a changed value changes the
/// snapshot); no more than a few loaded databases are kept, the least recently used dropped.
#[test]
fn changed_inputs_load_again_and_the_kept_databases_stay_bounded() {
    let place = Place::new();
    let original = kept_as(&passed(place.sample())).unwrap();

    // A fixture's value: loaded again, and the snapshot shows it.
    place.edit(
        "fixtures/orders.csv",
        "101,17,pending,228.76",
        "101,17,pending,1228.76",
    );
    let (report, out) = place.sample();
    let report = report.unwrap_or_else(|e| panic!("{e}\n{out}"));
    assert!(!out.contains(FROM_CACHE), "{out}");
    let fixture = kept_as(&out).unwrap_or_else(|| panic!("{out}"));
    assert!(
        matches!(&report.outcome, Outcome::Failed { diff, .. } if diff.contains("5232.4")),
        "{out}"
    );

    // A schema migration's text.
    place.edit(
        "migrations/V2__create_customers_and_orders.sql",
        "CREATE INDEX orders_customer_id_idx",
        "-- the customer's orders\nCREATE INDEX orders_customer_id_idx",
    );
    let (_, out) = place.sample();
    assert!(!out.contains(FROM_CACHE), "{out}");
    let migration = kept_as(&out).unwrap_or_else(|| panic!("{out}"));

    // A manifest, then another one.
    let manifest = |captured: &str| {
        format!(
            r#"{{"format": 1, "schema_version": 3, "captured_at": "{captured}", "source": {{"dialect": "postgres", "database": "shop"}}, "settings": {{}}, "tables": {{}}}}"#
        )
    };
    let path = place.workspace.path().join("fixtures/manifest.json");
    std::fs::write(&path, manifest("2026-01-01T00:00:00Z")).unwrap();
    let (_, out) = place.sample();
    assert!(!out.contains(FROM_CACHE), "{out}");
    let first_manifest = kept_as(&out).unwrap_or_else(|| panic!("{out}"));
    std::fs::write(&path, manifest("2026-01-02T00:00:00Z")).unwrap();
    let (_, out) = place.sample();
    assert!(!out.contains(FROM_CACHE), "{out}");
    let second_manifest = kept_as(&out).unwrap_or_else(|| panic!("{out}"));

    let mut names = vec![
        original.clone(),
        fixture,
        migration,
        first_manifest,
        second_manifest.clone(),
    ];
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 5, "five inputs, five keys: {names:?}");
    let kept = place.kept();
    assert_eq!(kept.len(), LOADED_KEPT, "{kept:?}");
    assert!(
        !kept.contains(&original),
        "the least recently used went: {kept:?}"
    );
    // Spare copies only of what is kept, one each at most.
    let spares = place.databases("^spare_[0-9a-f]{16}_");
    assert!(spares.len() <= LOADED_KEPT, "{spares:?}");
    for spare in &spares {
        assert!(
            kept.iter()
                .any(|k| spare.starts_with(&k.replace("fixtures_", "spare_"))),
            "{spare}"
        );
    }

    // The last inputs again: a copy.
    let out = place.sample().1;
    assert!(out.contains(FROM_CACHE), "{out}");
    assert_eq!(kept_as(&out), None, "{out}");
    assert!(place.kept().contains(&second_manifest));
}

/// A load that fails keeps nothing, and the next sample fails the same way, with the file and
/// line of the refused value.
#[test]
fn a_failed_load_is_not_kept() {
    let place = Place::new();
    place.edit(
        "fixtures/orders.csv",
        "101,17,pending,228.76",
        "101,17,pending,lots",
    );
    let mut errors = Vec::new();
    for _ in 0..2 {
        let (report, out) = place.sample();
        let e = report.expect_err(&out);
        assert!(!out.contains(FROM_CACHE), "{out}");
        errors.push(e.to_string());
        assert_eq!(place.kept(), Vec::<String>::new());
        assert_eq!(
            place.databases("^(fixtures|spare)_[0-9a-f]{16}"),
            Vec::<String>::new()
        );
    }
    assert_eq!(errors[0], errors[1]);
    assert!(errors[0].contains("orders.csv:2"), "{}", errors[0]);
}

/// Two samples at once on one cluster both pass, whether both load (one keeps its load, the
/// other's copy is dropped) or both copy; nothing half made is left.
#[test]
fn two_samples_at_once_both_pass() {
    let place = Place::new();
    for round in 0..2 {
        let (a, b) = std::thread::scope(|s| {
            let a = s.spawn(|| place.sample());
            let b = s.spawn(|| place.sample());
            (a.join().unwrap(), b.join().unwrap())
        });
        let (a, b) = (passed(a), passed(b));
        if round == 1 {
            assert!(a.contains(FROM_CACHE) && b.contains(FROM_CACHE), "{a}\n{b}");
        }
        assert_eq!(place.kept().len(), 1, "{a}\n{b}");
        assert_eq!(
            place.databases("^(fixtures_new|sample)_"),
            Vec::<String>::new()
        );
    }
}

/// A kept database someone is connected to cannot be copied: the sample loads the fixtures
/// itself and passes.
#[test]
fn a_kept_database_in_use_is_loaded_again_instead() {
    let place = Place::new();
    let name = kept_as(&passed(place.sample())).unwrap();
    let mut admin = postgres::Client::connect(&place.admin_url(), postgres::NoTls).unwrap();
    for spare in place.databases("^spare_[0-9a-f]{16}_") {
        admin
            .batch_execute(&format!("DROP DATABASE {spare}"))
            .unwrap();
    }
    admin
        .batch_execute(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
        .unwrap();
    let url = place.url(&name);
    let holder = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let out = passed(place.sample());
    assert!(!out.contains(FROM_CACHE), "{out}");
    drop(holder);
    assert_eq!(place.kept(), vec![name]);
}

/// A command leaves its last database renamed `trash_<pid>_<n>` (a rename instead of a drop at
/// its end), and the next command drops it while its own sample runs: only the last command's
/// stays.
#[test]
fn the_last_database_is_renamed_and_the_next_command_drops_it() {
    let place = Place::new();
    passed(place.sample());
    assert_eq!(place.databases("^sample_"), Vec::<String>::new());
    let first = place.databases("^trash_[0-9]+_[0-9]+$");
    assert_eq!(first.len(), 1, "{first:?}");
    passed(place.sample());
    assert_eq!(place.databases("^sample_"), Vec::<String>::new());
    let second = place.databases("^trash_[0-9]+_[0-9]+$");
    assert_eq!(second.len(), 1, "{second:?}");
    assert_ne!(first, second, "the first command's database is gone");
}
