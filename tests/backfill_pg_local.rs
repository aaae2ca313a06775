//! `backfill sample` on the `postgres-local` engine: a private PostgreSQL cluster that the code
//! under test starts itself from the machine's PostgreSQL binaries (CI installs
//! postgresql-15), and the errors of choosing and running an engine. These tests run as root on
//! CI, where the server must run as the `postgres` user.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Output};

use xtask_migrate::backfill::db::cluster::{self, Cluster};
use xtask_migrate::backfill::migration;
use xtask_migrate::backfill::sample::engine::Engine;
use xtask_migrate::backfill::sample::snapshot::Mode;
use xtask_migrate::backfill::sample::{self, Inputs, SampleOptions};
use xtask_migrate::cli::backfill::SampleArgs;
use xtask_migrate::config::{Config, SampleEngine};

use crate::support::{copy_dir, write};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn pg_workspace() -> PathBuf {
    repo().join("examples/pg-workspace")
}

fn bin_dir() -> PathBuf {
    cluster::find_binaries(None).unwrap_or_else(|looked| {
        panic!(
            "these tests need PostgreSQL's server binaries (apt-get install postgresql-15); looked in {}",
            looked.join(", ")
        )
    })
}

fn check(engine: Option<SampleEngine>) -> SampleArgs {
    SampleArgs {
        name: None,
        check: true,
        batch_size: None,
        engine,
        database_url: None,
        keep_alive: None,
    }
}

fn run(args: SampleArgs, config: &Config) -> (anyhow::Result<ExitCode>, String) {
    let mut out = Vec::new();
    let code = args.run_to(config, &mut out);
    (code, String::from_utf8(out).unwrap())
}

fn edit(dir: &Path, relative: &str, from: &str, to: &str) {
    let path = dir.join(relative);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{relative} lacks {from:?}");
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
}

/// A temporary directory the `postgres` user can reach, for a workspace or a TMPDIR: the
/// server runs as that user when the tests run as root.
fn open_tempdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    dir
}

/// A copy of the PostgreSQL-only example workspace.
fn pg_workspace_copy() -> tempfile::TempDir {
    let dir = open_tempdir();
    copy_dir(&pg_workspace(), dir.path());
    dir
}

/// The cluster directories (`xtask-sample-pg-*`) in `tmp`.
fn cluster_dirs(tmp: &Path) -> Vec<String> {
    std::fs::read_dir(tmp)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(cluster::DIR_PREFIX))
        .collect()
}

/// Runs the real binary's `backfill sample ARGS` in `dir`, with its temporary files in a
/// directory of its own, and asserts that no cluster directory is left there afterwards.
fn sample_cli(dir: &Path, args: &[&str]) -> Output {
    let tmp = open_tempdir();
    let out = Command::new(crate::support::bin())
        .current_dir(dir)
        .args(["backfill", "sample"])
        .args(args)
        .env("TMPDIR", tmp.path())
        .env_remove("CI")
        .env_remove("INSTA_UPDATE")
        .output()
        .unwrap();
    assert_eq!(
        cluster_dirs(tmp.path()),
        Vec::<String>::new(),
        "the cluster's directory is removed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    out
}

/// The one error line of a command that failed with exit status 2.
#[track_caller]
fn error_line(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(2),
        "stdout: {}\nstderr: {stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    stderr.trim_end().to_string()
}

/// The PostgreSQL-only example (enum type, jsonb, `DEFAULT now()`, `CHECK ... NOT VALID`,
/// `CREATE EXTENSION citext`) matches its snapshot, taken on postgres-local, as CI checks it.
#[test]
fn the_postgres_only_example_passes_check_on_postgres_local() {
    let config = Config::discover_from(&pg_workspace()).unwrap();
    assert_eq!(config.sample_engine, SampleEngine::PostgresLocal);
    let (code, out) = run(check(None), &config);
    assert_eq!(code.unwrap(), ExitCode::SUCCESS, "{out}");
    let first = out.lines().next().unwrap();
    assert!(
        first.starts_with("sample V1__backfill_order_item_counts on a private PostgreSQL 1")
            && first.ends_with(&format!(" cluster ({})", bin_dir().display())),
        "{out}"
    );
    // The kept-alive cluster (the default): this command started it, or an earlier one did.
    let database = format!("database sample_{}_", std::process::id());
    assert!(
        out.contains(&format!(
            "  engine    cluster started (kept alive for the next commands), {database}"
        )) || out.contains(&format!(
            "  engine    kept-alive cluster reused, {database}"
        )),
        "{out}"
    );
    assert!(out.contains("checks    2 passed"), "{out}");
    assert!(out.contains("4 rows match, approved"), "{out}");
}

/// This repository's example, approved on SQLite, gives the same rows on PostgreSQL.
#[test]
fn this_repository_s_example_matches_its_sqlite_snapshot_on_postgres_local() {
    let config = Config::discover().unwrap();
    assert_eq!(config.sample_engine, SampleEngine::Sqlite);
    let (code, out) = run(check(Some(SampleEngine::PostgresLocal)), &config);
    assert_eq!(code.unwrap(), ExitCode::SUCCESS, "{out}");
    assert!(out.contains("on a private PostgreSQL 1"), "{out}");
    assert!(out.contains("20 rows match, approved"), "{out}");
}

/// A copy of this repository's example workspace (migrations, data migrations, fixtures).
fn repo_example_copy() -> tempfile::TempDir {
    let dir = open_tempdir();
    for sub in ["migrations", "data-migrations", "fixtures"] {
        copy_dir(&repo().join(sub), &dir.path().join(sub));
    }
    dir
}

/// A difference on another engine than the approval's still fails, and says first that the
/// engines differ.
#[test]
fn a_difference_on_another_engine_says_so_before_the_diff() {
    let dir = repo_example_copy();
    let _ = std::fs::remove_dir_all(dir.path().join("data-migrations/snapshots"));
    // An average: a float on SQLite, an exact numeric on PostgreSQL.
    edit(
        dir.path(),
        "data-migrations/V1__backfill_counter_caches.sql",
        "max(posts_count) AS max_posts",
        "max(posts_count) AS max_posts,\n       avg(followers_count) AS mean_followers",
    );
    let config = Config::defaults(dir.path());
    let migration = migration::find(&config.data_migrations, "V1").unwrap();
    let inputs = Inputs::load(&config).unwrap();
    let options = SampleOptions {
        batch_size: None,
        mode: Mode::Accept,
    };
    let report = sample::sample(
        &config,
        &inputs,
        &migration,
        &mut Engine::Sqlite,
        &options,
        &mut Vec::new(),
    )
    .unwrap();
    assert!(report.passed());
    let snap = std::fs::read_to_string(
        dir.path()
            .join("data-migrations/snapshots/V1__backfill_counter_caches.snap"),
    )
    .unwrap();
    assert!(snap.contains("  engine: \"sqlite\"\n"), "{snap}");

    let (code, out) = run(check(Some(SampleEngine::PostgresLocal)), &config);
    assert_eq!(code.unwrap(), ExitCode::from(1), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("  snapshot  DIFFERS"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        lines[at + 1].starts_with(
            "  approved on sqlite, checked on postgres-local: results may differ between engines"
        ),
        "{out}"
    );
    assert!(lines[at + 1].contains("(--engine sqlite)"), "{out}");
    assert!(
        lines[at + 2].ends_with("V1__backfill_counter_caches.snap:"),
        "{out}"
    );
    // Back on the approval's engine it matches.
    let (code, out) = run(check(Some(SampleEngine::Sqlite)), &config);
    assert_eq!(code.unwrap(), ExitCode::SUCCESS, "{out}");
}

/// On PostgreSQL the checks run on a session of their own beside the verification: what fails
/// is reported as on SQLite, the checks' lines and rows first, then the verification's.
#[test]
fn a_failing_check_and_the_verification_report_as_on_sqlite() {
    let dir = repo_example_copy();
    // The classic bug: followers and following swapped.
    edit(
        dir.path(),
        "data-migrations/V1__backfill_counter_caches.sql",
        "SET followers_count = (SELECT count(*) FROM follows WHERE follows.followee_id = users.id)",
        "SET followers_count = (SELECT count(*) FROM follows WHERE follows.follower_id = users.id)",
    );
    let config = Config::defaults(dir.path());
    // What follows the batches' line up to the snapshot's diff (on PostgreSQL preceded by a
    // line saying the approval was on SQLite), less each stage's time.
    let reported = |out: &str| -> Vec<String> {
        let lines: Vec<&str> = out.lines().collect();
        let at = lines
            .iter()
            .position(|l| l.starts_with("  backfill  "))
            .unwrap_or_else(|| panic!("{out}"));
        lines[at + 1..]
            .iter()
            .take_while(|l| !l.starts_with("  approved on ") && !l.ends_with(".snap:"))
            .filter(|l| !l.starts_with("  snapshot  "))
            // A stage's line: its name and summary, the time after them cut off.
            .map(
                |l| match l.starts_with("  checks ") || l.starts_with("  verify ") {
                    true => l[..l.len().min(56)].trim_end().to_string(),
                    false => l.to_string(),
                },
            )
            .collect()
    };
    let (code, on_postgres) = run(check(Some(SampleEngine::PostgresLocal)), &config);
    assert_eq!(code.unwrap(), ExitCode::from(1), "{on_postgres}");
    assert!(
        on_postgres.contains("  checks    1 of 3 FAILED"),
        "{on_postgres}"
    );
    assert!(
        on_postgres.contains("  verify    2,146 differences in 2,500 rows"),
        "{on_postgres}"
    );
    let (code, on_sqlite) = run(check(Some(SampleEngine::Sqlite)), &config);
    assert_eq!(code.unwrap(), ExitCode::from(1), "{on_sqlite}");
    assert_eq!(reported(&on_postgres), reported(&on_sqlite));
    let lines = reported(&on_postgres);
    let check = lines
        .iter()
        .position(|l| l.starts_with("  check failed: every user's followers_count"))
        .unwrap_or_else(|| panic!("{on_postgres}"));
    let verification = lines
        .iter()
        .position(|l| l.starts_with("  verification failed ("))
        .unwrap_or_else(|| panic!("{on_postgres}"));
    assert!(check < verification, "{on_postgres}");
}

/// A check the server cannot run, on its session beside the verification, is an error at the
/// check's line, as on SQLite.
#[test]
fn a_check_that_cannot_run_is_an_error_at_its_line() {
    let dir = repo_example_copy();
    edit(
        dir.path(),
        "data-migrations/V1__backfill_counter_caches.sql",
        "SELECT u.id, u.followers_count, (SELECT count(*)",
        "SELECT u.id, u.no_such_column, (SELECT count(*)",
    );
    let config = Config::defaults(dir.path());
    for engine in [SampleEngine::PostgresLocal, SampleEngine::Sqlite] {
        let (code, out) = run(check(Some(engine)), &config);
        let error = code.expect_err(&out).to_string();
        assert!(
            error.contains("V1__backfill_counter_caches.sql:20: check `every user's followers_count equals the follows pointing at them` cannot run: "),
            "{engine:?}: {error}"
        );
        assert!(error.contains("no_such_column"), "{engine:?}: {error}");
    }
}

/// A schema migration PostgreSQL rejects: file, line, the server's message, the engine; exit 2,
/// and the cluster's directory is gone.
#[test]
fn a_schema_migration_postgresql_rejects_names_its_file_line_and_engine() {
    let ws = pg_workspace_copy();
    edit(
        ws.path(),
        "migrations/V2__create_customers_and_orders.sql",
        "REFERENCES customers (id)",
        "REFERENCES customer (id)",
    );
    let out = sample_cli(ws.path(), &["--check"]);
    // The server gives no position for this one: the line is the failing statement's first.
    assert_eq!(
        error_line(&out),
        "error: migrations/V2__create_customers_and_orders.sql:8: relation \"customer\" does not exist (engine: postgres-local)"
    );
}

/// On SQLite, a migration SQLite refuses because it is PostgreSQL-only says what in it is, and
/// how to sample on PostgreSQL instead; the line is SQLite's.
#[test]
fn sqlite_names_the_postgres_only_construct_and_how_to_switch() {
    let switch = "sample on PostgreSQL: set sample-engine = \"postgres-local\" in [workspace.metadata.xtask-migrate] or pass --engine postgres-local";
    for (migration, line, what) in [
        (
            "CREATE EXTENSION IF NOT EXISTS citext;\n",
            1,
            "CREATE EXTENSION",
        ),
        (
            "-- states\nCREATE TYPE order_status AS ENUM ('pending', 'paid');\n",
            2,
            "CREATE TYPE ... AS ENUM",
        ),
        (
            "CREATE TABLE orders (\n    id bigint PRIMARY KEY,\n    placed_at timestamp NOT NULL DEFAULT now()\n);\n",
            3,
            "DEFAULT now()",
        ),
        (
            "CREATE TABLE orders (\n    id bigint PRIMARY KEY,\n    details jsonb NOT NULL DEFAULT '{}'::jsonb\n);\n",
            3,
            "a `::` cast",
        ),
        (
            "CREATE TABLE orders (id bigint PRIMARY KEY, n integer);\n\nALTER TABLE orders ADD CONSTRAINT n_positive CHECK (n > 0) NOT VALID;\n",
            3,
            "ADD CONSTRAINT ... NOT VALID",
        ),
    ] {
        let ws = open_tempdir();
        write(&ws.path().join("migrations/V1__schema.sql"), migration);
        write(
            &ws.path().join("data-migrations/V1__fill.sql"),
            "-- @requires 1\n-- @table orders\n-- @key id\n-- @batch\nUPDATE orders SET id = id WHERE id > :lower AND id <= :upper;\n-- @snapshot\nSELECT count(*) FROM orders;\n",
        );
        let out = sample_cli(ws.path(), &["--engine", "sqlite", "--check"]);
        let line_text = error_line(&out);
        let prefix = format!("error: migrations/V1__schema.sql:{line}: ");
        let suffix = format!(
            " (engine: sqlite): {what} is PostgreSQL-only, and SQLite cannot run it; {switch}"
        );
        assert!(
            line_text.starts_with(&prefix) && line_text.ends_with(&suffix),
            "{line_text}\nshould start with {prefix}\nand end with {suffix}"
        );
    }
    // A mistake that is not PostgreSQL's gets no advice to switch.
    let ws = open_tempdir();
    write(
        &ws.path().join("migrations/V1__schema.sql"),
        "CREATE TABLE orders (id bigint PRIMARY KEY,, n integer);\n",
    );
    write(
        &ws.path().join("data-migrations/V1__fill.sql"),
        "-- @requires 1\n-- @table orders\n-- @key id\n-- @batch\nUPDATE orders SET id = id WHERE id > :lower AND id <= :upper;\n-- @snapshot\nSELECT count(*) FROM orders;\n",
    );
    let line = error_line(&sample_cli(ws.path(), &["--engine", "sqlite"]));
    assert!(
        line.starts_with("error: migrations/V1__schema.sql:1: ")
            && line.ends_with(" (engine: sqlite)"),
        "{line}"
    );
}

#[test]
fn postgres_local_without_binaries_says_where_it_looked_and_what_to_do() {
    let empty = tempfile::tempdir().unwrap();
    let mut config = Config::discover_from(&pg_workspace()).unwrap();
    config.postgres_bin_dir = Some(empty.path().to_path_buf());
    let (code, out) = run(check(None), &config);
    let e = xtask_migrate::cli::error_line(&code.unwrap_err());
    assert_eq!(
        e,
        format!(
            "no PostgreSQL server binaries found (looked in {}): install PostgreSQL (e.g. apt-get install postgresql-15) or set postgres-bin-dir in [workspace.metadata.xtask-migrate]",
            empty.path().display()
        ),
        "{out}"
    );
}

#[test]
fn an_unknown_engine_names_the_choices() {
    let ws = pg_workspace_copy();
    let line = String::from_utf8_lossy(&sample_cli(ws.path(), &["--engine", "postgres"]).stderr)
        .into_owned();
    assert!(
        line.starts_with("error: invalid value 'postgres' for '--engine <ENGINE>'")
            && line.contains("[possible values: auto, sqlite, postgres-local, postgres-url]"),
        "{line}"
    );
    edit(
        ws.path(),
        "Cargo.toml",
        "sample-engine = \"postgres-local\"",
        "sample-engine = \"embedded-postgres\"",
    );
    let line = error_line(&sample_cli(ws.path(), &[]));
    assert!(
        line.contains("invalid [workspace.metadata.xtask-migrate]: unknown variant `embedded-postgres`, expected one of `auto`, `sqlite`, `postgres-local`, `postgres-url`"),
        "{line}"
    );
}

#[test]
fn database_url_means_postgres_url() {
    let ws = pg_workspace_copy();
    let line = error_line(&sample_cli(
        ws.path(),
        &[
            "--engine",
            "sqlite",
            "--database-url",
            "postgres://app:s3cret@127.0.0.1:1/db",
        ],
    ));
    assert!(
        line.starts_with("error: --database-url samples on a throwaway schema of that server (engine postgres-url), not on sqlite"),
        "{line}"
    );
    assert!(!line.contains("s3cret"), "{line}");
    let line = error_line(&sample_cli(ws.path(), &["--engine", "postgres-url"]));
    assert!(
        line.contains("pass --database-url postgres://..."),
        "{line}"
    );
}

/// The cluster is stopped and its directory removed after success, after an error (above),
/// and when a panic unwinds through it; as root, the server runs as the `postgres` user.
#[test]
fn a_cluster_is_gone_after_a_panic_and_runs_as_postgres_under_root() {
    let bin = bin_dir();
    let (dir, pid) = std::panic::catch_unwind(|| {
        let cluster = Cluster::start(&bin).unwrap();
        let dir = cluster.dir().to_path_buf();
        let pid: i32 = std::fs::read_to_string(dir.join("data/postmaster.pid"))
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        check_owner(&cluster);
        std::panic::panic_any((dir, pid));
    })
    .unwrap_err()
    .downcast::<(PathBuf, i32)>()
    .map(|b| *b)
    .unwrap();
    assert!(!dir.exists(), "{} is removed", dir.display());
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "the server (pid {pid}) has exited"
    );
}

#[cfg(unix)]
fn check_owner(cluster: &Cluster) {
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(cluster.dir().join("data")).unwrap().uid();
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if me == 0 {
        assert!(cluster.runs_as_other_user());
        // SAFETY: a NUL-terminated name; the record is read at once.
        let pw = unsafe { libc::getpwnam(c"postgres".as_ptr()) };
        assert!(!pw.is_null());
        // SAFETY: pw is non-null.
        assert_eq!(
            owner,
            unsafe { (*pw).pw_uid },
            "root runs the server as postgres"
        );
    } else {
        assert!(!cluster.runs_as_other_user());
        assert_eq!(owner, me);
    }
    // Nothing listens on TCP: the only way in is the socket in the cluster's directory.
    let mut client = postgres::Client::connect(&cluster.url("postgres"), postgres::NoTls).unwrap();
    let row = client
        .query_one(
            "SELECT current_setting('listen_addresses'), current_setting('fsync'), current_setting('TimeZone')",
            &[],
        )
        .unwrap();
    assert_eq!(
        (
            row.get::<_, String>(0),
            row.get::<_, String>(1),
            row.get::<_, String>(2)
        ),
        (String::new(), "off".into(), "UTC".into())
    );
}

/// A directory left by a killed process (its owner and server gone) is removed by the next
/// cluster's start.
#[test]
fn a_killed_run_s_directory_is_removed_by_the_next_start() {
    let stale = std::env::temp_dir().join(format!(
        "{}stale-test-{}",
        cluster::DIR_PREFIX,
        std::process::id()
    ));
    std::fs::create_dir_all(stale.join("data")).unwrap();
    let mut child = Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    std::fs::write(stale.join("owner.pid"), dead.to_string()).unwrap();
    let cluster = Cluster::start(&bin_dir()).unwrap();
    assert!(!stale.exists(), "{} is removed", stale.display());
    assert!(cluster.dir().exists());
}

/// The first start in a cache runs initdb and leaves a template there; the next copies it and
/// gets a working server with the template untouched; a damaged template is made again.
#[test]
fn a_cluster_starts_from_the_cached_template_and_remakes_a_damaged_one() {
    let bin = bin_dir();
    let cache = tempfile::tempdir().unwrap();
    let template = cluster::template_dir(cache.path(), &bin).unwrap();
    assert!(!template.exists());

    let first = Cluster::start_with_cache(&bin, Some(cache.path())).unwrap();
    drop(first);
    assert!(
        template.join("PG_VERSION").is_file(),
        "the template is published"
    );
    assert!(
        !template.join("postmaster.pid").exists(),
        "the template is initdb's output, not a running server's directory"
    );

    let second = Cluster::start_with_cache(&bin, Some(cache.path())).unwrap();
    check_owner(&second);
    let mut client = postgres::Client::connect(&second.url("postgres"), postgres::NoTls).unwrap();
    client
        .batch_execute("CREATE TABLE t (id bigint PRIMARY KEY); INSERT INTO t VALUES (1)")
        .unwrap();
    drop(client);
    drop(second);
    // The table lives in the cluster's copy only.
    let third = Cluster::start_with_cache(&bin, Some(cache.path())).unwrap();
    let mut client = postgres::Client::connect(&third.url("postgres"), postgres::NoTls).unwrap();
    let exists: bool = client
        .query_one("SELECT to_regclass('t') IS NOT NULL", &[])
        .unwrap()
        .get(0);
    assert!(!exists, "a cluster never writes into the template");
    drop(client);
    drop(third);

    // A template the server cannot start from: removed and made again by initdb.
    std::fs::remove_dir_all(template.join("global")).unwrap();
    let fourth = Cluster::start_with_cache(&bin, Some(cache.path())).unwrap();
    check_owner(&fourth);
    drop(fourth);
    assert!(
        template.join("global").is_dir(),
        "the template is made again"
    );
}

/// Waits up to `seconds` for `done`.
fn eventually(seconds: u64, done: impl Fn() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    while std::time::Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    done()
}

fn process_exists(pid: u32) -> bool {
    // A zombie is gone for every purpose here; its /proc entry says `Z`.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

/// The databases of a cluster whose names start with `prefix`.
fn databases(url: &str, prefix: &str) -> Vec<String> {
    let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
    client
        .query(
            "SELECT datname::text FROM pg_database WHERE starts_with(datname, $1) ORDER BY 1",
            &[&prefix],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// A later command finds the kept-alive cluster the first one started: the same server, a
/// fresh database of its own, the first command's database dropped when it ended; a spare
/// database made during the first command is what the second takes.
#[test]
fn a_later_command_reuses_the_kept_alive_cluster_in_a_fresh_database() {
    use std::time::{Duration, Instant};
    use xtask_migrate::backfill::db::warm::WarmCluster;
    use xtask_migrate::backfill::sample::engine::{LocalCluster, Server, Startup};
    let parent = open_tempdir();
    let bin = bin_dir();
    let keep = Duration::from_secs(3);

    let warm = WarmCluster::acquire_in(parent.path(), &bin, keep).unwrap();
    assert!(warm.started());
    let pid = warm.server_pid().unwrap();
    let dir = warm.dir().to_path_buf();
    let mut first = LocalCluster::on(Server::Warm(Box::new(warm)), Instant::now()).unwrap();
    let database = first.create_database().unwrap();
    assert_eq!(database.cluster, Some(Startup::StartedKept(keep)));
    assert!(
        database
            .name
            .starts_with(&format!("sample_{}_", std::process::id())),
        "{}",
        database.name
    );
    let mut client = postgres::Client::connect(&database.url, postgres::NoTls).unwrap();
    client.batch_execute("CREATE TABLE t (id int)").unwrap();
    drop(client);
    drop(first);
    let admin = first_url(&dir);
    assert_eq!(databases(&admin, "sample_"), Vec::<String>::new());
    assert_eq!(
        databases(&admin, "spare_").len(),
        1,
        "a spare database waits for the next command"
    );

    let warm = WarmCluster::acquire_in(parent.path(), &bin, keep).unwrap();
    assert!(!warm.started());
    assert_eq!(warm.server_pid(), Some(pid), "the same server");
    let mut second = LocalCluster::on(Server::Warm(Box::new(warm)), Instant::now()).unwrap();
    let database = second.create_database().unwrap();
    assert_eq!(database.cluster, Some(Startup::Reused));
    let mut client = postgres::Client::connect(&database.url, postgres::NoTls).unwrap();
    let tables: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        tables, 0,
        "a fresh database: nothing of the first command's"
    );
    drop(client);
    drop(second);

    // Nobody uses it now: after the keep-alive it stops and its directory goes.
    assert!(
        eventually(20, || !dir.exists() && !process_exists(pid)),
        "the kept-alive cluster stops after its keep-alive: dir {} exists: {}, server alive: {}",
        dir.display(),
        dir.exists(),
        process_exists(pid)
    );
}

/// The URL of the `postgres` database of the kept-alive cluster in `dir`.
fn first_url(dir: &Path) -> String {
    let socket: String = dir
        .join("socket")
        .to_string_lossy()
        .replace('%', "%25")
        .replace('/', "%2F");
    format!("postgresql://postgres@{socket}:5432/postgres")
}

/// While a command holds the kept-alive cluster, its keep-alive does not run out; a server
/// that died (killed here) is replaced by the next command, and what a killed command left
/// (its database) is dropped by the next one.
#[test]
fn a_held_cluster_outlives_its_keep_alive_and_a_dead_one_is_replaced() {
    use std::time::{Duration, Instant};
    use xtask_migrate::backfill::db::warm::WarmCluster;
    use xtask_migrate::backfill::sample::engine::{LocalCluster, Server};
    let parent = open_tempdir();
    let bin = bin_dir();
    let keep = Duration::from_secs(1);

    let warm = WarmCluster::acquire_in(parent.path(), &bin, keep).unwrap();
    let pid = warm.server_pid().unwrap();
    let dir = warm.dir().to_path_buf();
    // Held three times its keep-alive: still there.
    std::thread::sleep(Duration::from_secs(3));
    assert!(process_exists(pid) && dir.join("data").is_dir());
    // A database as a killed command would leave it (its process, pid 1's child long gone,
    // is taken as one that no longer exists).
    let mut admin = postgres::Client::connect(&first_url(&dir), postgres::NoTls).unwrap();
    admin
        .batch_execute("CREATE DATABASE sample_999999999_1")
        .unwrap();
    drop(admin);
    drop(warm);

    let warm = WarmCluster::acquire_in(parent.path(), &bin, Duration::from_secs(60)).unwrap();
    assert_eq!(warm.server_pid(), Some(pid), "reused within its keep-alive");
    let local = LocalCluster::on(Server::Warm(Box::new(warm)), Instant::now()).unwrap();
    assert_eq!(
        databases(&first_url(&dir), "sample_999999999"),
        Vec::<String>::new(),
        "the killed command's database is dropped"
    );
    drop(local);

    // The server dies: the next command starts another in its place.
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    assert!(eventually(10, || !process_exists(pid)));
    let warm = WarmCluster::acquire_in(parent.path(), &bin, keep).unwrap();
    assert!(warm.started(), "a new server");
    let new_pid = warm.server_pid().unwrap();
    assert_ne!(new_pid, pid);
    let mut client = postgres::Client::connect(&warm.url("postgres"), postgres::NoTls).unwrap();
    client.batch_execute("SELECT 1").unwrap();
    drop(client);
    drop(warm);
    assert!(
        eventually(20, || !dir.exists() && !process_exists(new_pid)),
        "the replacement stops after its keep-alive too"
    );
}

/// `--keep-alive 0` samples on a cluster of the command's own, stopped when it ends; a
/// keep-alive that is not a duration is a one-line error, from the flag or the configuration.
#[test]
fn keep_alive_zero_is_a_cluster_per_command_and_a_bad_keep_alive_is_one_line() {
    let ws = pg_workspace_copy();
    let out = sample_cli(ws.path(), &["--check", "--keep-alive", "0"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("  engine    cluster started, database sample_1 created"),
        "{stdout}"
    );

    let out = sample_cli(ws.path(), &["--check", "--keep-alive", "soon"]);
    let line = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{line}");
    assert!(line.contains("`soon` is not a duration"), "{line}");

    edit(
        ws.path(),
        "Cargo.toml",
        "sample-engine = \"postgres-local\"",
        "sample-engine = \"postgres-local\"\nsample-keep-alive = \"a while\"",
    );
    let out = sample_cli(ws.path(), &["--check"]);
    let line = error_line(&out);
    assert!(
        line.contains("Cargo.toml: [workspace.metadata.xtask-migrate] sample-keep-alive: `a while` is not a duration"),
        "{line}"
    );
}

/// The fixtures are vacuumed once loaded, as autovacuum keeps a production table: their pages
/// are all-visible, so the counts of the example's batches, checks and verification scan only
/// their indexes (`Heap Fetches: 0`), on a cluster whose commits write their WAL before they
/// return (a commit that does not leaves rows a vacuum cannot mark) and whose WAL is minimal.
#[test]
fn the_loaded_fixtures_are_all_visible_so_counts_read_only_the_index() {
    use std::time::Duration;
    use xtask_migrate::backfill::db::postgres::PgBackend;
    use xtask_migrate::backfill::run::tracking::TrackingNames;
    use xtask_migrate::backfill::run::tracking::postgres::PgStore;
    use xtask_migrate::backfill::sample::engine::LocalCluster;

    let bin = bin_dir();
    let config = Config::defaults(&repo());
    let inputs = Inputs::load(&config).unwrap();
    let migration = migration::find(&config.data_migrations, "V1").unwrap();
    let mut local = LocalCluster::start(&bin, Duration::ZERO).unwrap();
    let database = local.create_database().unwrap();
    let mut db = PgStore::new(
        PgBackend::connect(&database.url).unwrap(),
        TrackingNames::default(),
    );
    db.init_session().unwrap();
    let options = SampleOptions {
        batch_size: None,
        mode: Mode::Check,
    };
    let report = sample::sample_on(
        &config,
        &inputs,
        &migration,
        &options,
        SampleEngine::PostgresLocal,
        &mut db,
        &mut std::io::sink(),
    )
    .unwrap();
    assert!(report.passed(), "{report:?}");
    drop(db);

    let mut client = postgres::Client::connect(&database.url, postgres::NoTls).unwrap();
    for (setting, expected) in [
        ("wal_level", "minimal"),
        ("synchronous_commit", "on"),
        // Its shared memory segments are files of its directory, gone with it even when the
        // server is killed.
        ("dynamic_shared_memory_type", "mmap"),
    ] {
        let value: String = client
            .query_one(&format!("SHOW {setting}"), &[])
            .unwrap()
            .get(0);
        assert_eq!(value, expected, "{setting}");
    }
    // The batches updated users; follows and posts are as the load left them.
    for table in ["follows", "posts"] {
        let row = client
            .query_one(
                "SELECT relpages, relallvisible FROM pg_class WHERE relname = $1",
                &[&table],
            )
            .unwrap();
        let (pages, visible): (i32, i32) = (row.get(0), row.get(1));
        assert!(pages > 0, "{table} has pages");
        assert_eq!(visible, pages, "every page of {table} is all-visible");
    }
    let plan: Vec<String> = client
        .query(
            "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF)
             SELECT count(*) FROM follows WHERE followee_id = 7155",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let plan = plan.join("\n");
    assert!(plan.contains("Index Only Scan"), "{plan}");
    assert!(plan.contains("Heap Fetches: 0"), "{plan}");

    // The fixtures went in with room on their pages, so every row the batches updated kept
    // its new version on its page (a HOT update: no new index entry); the fill factor of the
    // load is gone from the tables afterwards. The counters are the server's own, written
    // when the sample's session ends.
    let hot = |client: &mut postgres::Client| -> (i64, i64) {
        let row = client
            .query_one(
                "SELECT pg_stat_get_tuples_updated(oid), pg_stat_get_tuples_hot_updated(oid)
                 FROM pg_class WHERE relname = 'users'",
                &[],
            )
            .unwrap();
        (row.get(0), row.get(1))
    };
    let url = database.url.clone();
    assert!(
        eventually(10, || {
            let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
            hot(&mut c).0 >= 2500
        }),
        "the batches' updates are counted: {:?}",
        hot(&mut client)
    );
    let (updated, hot_updated) = hot(&mut client);
    assert_eq!(updated, 2500, "each user updated once");
    assert_eq!(hot_updated, updated, "every update stayed on its page");
    let options: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_class WHERE relname IN ('users', 'follows', 'posts')
             AND reloptions IS NOT NULL",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        options, 0,
        "no storage option is left on the fixture tables"
    );
}

/// A fill factor the schema sets is the table's after the fixtures' load, as it was before;
/// a table without one has none afterwards either.
#[test]
fn the_load_keeps_a_fill_factor_the_schema_sets() {
    use std::time::Duration;
    use xtask_migrate::backfill::db::postgres::PgBackend;
    use xtask_migrate::backfill::sample::engine::LocalCluster;
    use xtask_migrate::backfill::sample::fixtures;

    let tmp = open_tempdir();
    write(&tmp.path().join("dense.csv"), "id,v\n1,a\n2,b\n");
    write(&tmp.path().join("plain.csv"), "id,dense_id\n1,1\n2,2\n");
    let files = fixtures::read_dir(tmp.path()).unwrap();
    let mut local = LocalCluster::start(&bin_dir(), Duration::ZERO).unwrap();
    let database = local.create_database().unwrap();
    let mut db = PgBackend::connect(&database.url).unwrap();
    db.client()
        .batch_execute(
            "CREATE TABLE dense (id bigint PRIMARY KEY, v text) WITH (fillfactor = 70, autovacuum_enabled = off);
             CREATE TABLE plain (id bigint PRIMARY KEY, dense_id bigint REFERENCES dense (id));
             CREATE INDEX plain_dense_id_idx ON plain (dense_id)",
        )
        .unwrap();
    let report = fixtures::load(&mut db, &files, 1).unwrap();
    assert_eq!(report.rows, 4);
    let options: Vec<(String, Option<Vec<String>>)> = db
        .client()
        .query(
            "SELECT relname::text, reloptions FROM pg_class WHERE relname IN ('dense', 'plain') ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        options,
        [
            (
                "dense".to_string(),
                Some(vec![
                    "fillfactor=70".to_string(),
                    "autovacuum_enabled=off".to_string()
                ])
            ),
            ("plain".to_string(), None),
        ]
    );
}
