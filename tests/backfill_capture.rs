//! `backfill capture` against a real PostgreSQL server the tests start (a database per test):
//! closure over foreign keys (cycles, self-references, composite and nullable keys),
//! determinism, scrubbing (canaries never leave, default-deny refusals), secrets, bad input, and
//! the captured fixtures loading with every constraint on, in SQLite and PostgreSQL, and
//! sampling a data migration.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use xtask_migrate::backfill::capture::settings::{CaptureSettings, Overrides};
use xtask_migrate::backfill::capture::{self, CaptureOptions};
use xtask_migrate::backfill::db::Backend;
use xtask_migrate::backfill::sample::engine::Engine;
use xtask_migrate::backfill::sample::manifest::{MANIFEST, read as read_manifest};
use xtask_migrate::backfill::sample::snapshot::{Mode, Outcome};
use xtask_migrate::backfill::sample::{self, Inputs, SampleOptions, fixtures};
use xtask_migrate::config::{Config, METADATA_KEY, SampleEngine};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A workspace in a temp dir: the example's migrations and data migrations, a README in its
/// fixtures directory, and a Cargo.toml whose metadata is `metadata` (TOML), for the binary.
pub(crate) struct Ws {
    dir: tempfile::TempDir,
}

impl Ws {
    pub(crate) fn example(metadata: &str) -> Ws {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["migrations", "data-migrations"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
            for entry in std::fs::read_dir(repo().join(sub)).unwrap() {
                let path = entry.unwrap().path();
                if path.is_file() {
                    std::fs::copy(&path, dir.path().join(sub).join(path.file_name().unwrap()))
                        .unwrap();
                }
            }
        }
        let ws = Ws { dir };
        ws.finish(metadata);
        ws
    }

    pub(crate) fn with_migrations(files: &[(&str, &str)], metadata: &str) -> Ws {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            crate::support::write(&dir.path().join("migrations").join(name), text);
        }
        let ws = Ws { dir };
        ws.finish(metadata);
        ws
    }

    fn finish(&self, metadata: &str) {
        crate::support::write(
            &self.path().join("Cargo.toml"),
            &format!(
                "[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n\n{metadata}"
            ),
        );
        crate::support::write(&self.path().join("src/lib.rs"), "");
        crate::support::write(
            &self.path().join("fixtures/README.md"),
            "hand-written notes\n",
        );
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn config(&self) -> Config {
        Config::discover_from(self.path()).unwrap()
    }

    pub(crate) fn fixtures(&self) -> PathBuf {
        self.path().join("fixtures")
    }

    /// Runs the binary's `backfill capture` here: (exit code, stdout, stderr).
    pub(crate) fn capture(&self, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
        let mut cmd = Command::new(crate::support::bin());
        cmd.current_dir(self.path())
            .args(["backfill", "capture"])
            .args(args)
            .env_remove("DATABASE_URL")
            .env_remove("SOURCE_DATE_EPOCH");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    }
}

pub(crate) fn client(url: &str) -> postgres::Client {
    postgres::Client::connect(url, postgres::NoTls).unwrap()
}

/// Every file under `dir`, as (name, bytes), sorted.
pub(crate) fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

/// The rows of a captured CSV, as fields (`None` for NULL).
pub(crate) fn rows(dir: &Path, table: &str) -> Vec<Vec<Option<String>>> {
    fixtures::read_file(&dir.join(format!("{table}.csv")))
        .unwrap()
        .rows
        .into_iter()
        .map(|(_, r)| r)
        .collect()
}

pub(crate) fn column(dir: &Path, table: &str, name: &str) -> Vec<Option<String>> {
    let file = fixtures::read_file(&dir.join(format!("{table}.csv"))).unwrap();
    let i = file.header.iter().position(|h| h == name).unwrap();
    file.rows.into_iter().map(|(_, r)| r[i].clone()).collect()
}

pub(crate) const EXAMPLE_CAPTURE: &str = r#"
[workspace.metadata.xtask-migrate.capture]
seed = 3
roots = [{ table = "users", fraction = 0.1 }]
children = [
    { table = "follows", parent = "users", via = ["follower_id"], per-parent = 3 },
    { table = "posts", parent = "users", per-parent = 2 },
]

[workspace.metadata.xtask-migrate.capture.columns]
"users.handle" = "fake:username"
"users.display_name" = "fake:name"
"#;

/// The example schema (refinery, up to V4) with realistic mess: NULL and empty display names,
/// emoji, quotes, commas, newlines, the text `\N`, very long text; every handle and display name
/// carries a canary that must never leave the database.
pub(crate) fn example_source(server: &pg_harness::PgServer, version: i32) -> String {
    let url = server.create_database("capture_src");
    let mut c = client(&url);
    let migrations = refinery::load_sql_migrations(repo().join("migrations")).unwrap();
    refinery::Runner::new(&migrations)
        .set_target(refinery::Target::Version(version))
        .run(&mut c)
        .unwrap();
    c.batch_execute(
        r#"
        INSERT INTO users (id, handle, display_name, created_at)
        SELECT i, 'canaryhandle' || i,
               CASE i % 5 WHEN 0 THEN NULL WHEN 1 THEN 'Canarydisplay Zoë 🦀 "q", ' || i
                          WHEN 2 THEN 'canarydisplay' || i || E'\nsecond line' ELSE 'Canarydisplay ' || i END,
               timestamp '2024-01-01' + i * interval '1 hour'
        FROM generate_series(1, 600) AS i;
        INSERT INTO follows (follower_id, followee_id, created_at)
        SELECT a, b, timestamp '2024-06-01' + (a + b) * interval '1 minute'
        FROM generate_series(1, 600) AS a, generate_series(1, 600) AS b
        WHERE a <> b AND (a * 7 + b * 13) % 97 = 0;
        INSERT INTO posts (id, author_id, body, created_at)
        SELECT 1000 + i, 1 + (i * 17) % 600,
               CASE i % 6 WHEN 0 THEN repeat('long text ', 3000) WHEN 1 THEN E'line1\nline2, "quoted"'
                          WHEN 2 THEN '\N' WHEN 3 THEN '' WHEN 4 THEN 'café ☕ 🎉' ELSE 'post ' || i END,
               timestamp '2024-07-01' + i * interval '1 second'
        FROM generate_series(1, 1500) AS i;
        "#,
    )
    .unwrap();
    url
}

fn options(ws: &Ws, fixtures: PathBuf) -> CaptureOptions {
    CaptureOptions {
        settings: CaptureSettings::resolve(&ws.config(), &Overrides::default()).unwrap(),
        fixtures,
        captured_at: Some("2024-01-01T00:00:00Z".into()),
    }
}

/// The example: closed over foreign keys, scrubbed, byte-identical on every capture (also after
/// the rows moved on disk), without the URL's password anywhere; the captured set samples the
/// example's data migration on SQLite, and the snapshot accepted there matches on PostgreSQL.
#[test]
fn the_example_is_captured_closed_scrubbed_and_deterministic() {
    let server = pg_harness::shared();
    let url = example_source(server, 4);
    let with_password = url.replace("postgres@", "postgres:hunter2secret@");
    let ws = Ws::example(EXAMPLE_CAPTURE);
    let config = ws.config();

    let mut out = Vec::new();
    let report = capture::capture(
        &config,
        &with_password,
        &options(&ws, ws.fixtures()),
        &mut out,
    )
    .unwrap();
    let out = String::from_utf8(out).unwrap();
    assert_eq!(report.schema_version, 4);
    let dir = ws.fixtures();

    // Closure: every referenced user is there; children are capped per parent.
    let users: BTreeSet<String> = column(&dir, "users", "id").into_iter().flatten().collect();
    let followers: Vec<String> = column(&dir, "follows", "follower_id")
        .into_iter()
        .flatten()
        .collect();
    let followees = column(&dir, "follows", "followee_id").into_iter().flatten();
    let authors: Vec<String> = column(&dir, "posts", "author_id")
        .into_iter()
        .flatten()
        .collect();
    assert!(!followers.is_empty() && !authors.is_empty(), "{out}");
    for id in followers
        .iter()
        .cloned()
        .chain(followees)
        .chain(authors.iter().cloned())
    {
        assert!(
            users.contains(&id),
            "user {id} is referenced but not captured"
        );
    }
    for id in &authors {
        assert!(
            authors.iter().filter(|a| *a == id).count() <= 2,
            "posts of {id}"
        );
    }
    // About a tenth of the users are roots; the rest came in as followees and authors.
    let roots = out
        .lines()
        .find(|l| l.contains("select"))
        .unwrap()
        .to_string();
    assert!(roots.contains("users "), "{out}");
    assert!(
        users.len() > 30 && users.len() < 600,
        "{} users: {out}",
        users.len()
    );

    // The awkward values survive: NULL vs empty, the text `\N`, newlines, long text, emoji.
    let bodies: Vec<Option<String>> = column(&dir, "posts", "body");
    assert!(bodies.iter().any(|b| b.as_deref() == Some("")));
    assert!(bodies.iter().any(|b| b.as_deref() == Some("\\N")));
    assert!(
        bodies
            .iter()
            .any(|b| b.as_deref() == Some("line1\nline2, \"quoted\""))
    );
    assert!(
        bodies
            .iter()
            .any(|b| b.as_ref().is_some_and(|b| b.len() == 30_000))
    );
    let names = column(&dir, "users", "display_name");
    assert!(
        names.iter().any(Option::is_none),
        "NULL display names stay NULL"
    );

    // Nothing personal and no password left the database.
    for (name, bytes) in files(&dir) {
        let text = String::from_utf8_lossy(&bytes).to_lowercase();
        for canary in ["canaryhandle", "canarydisplay", "hunter2secret"] {
            assert!(!text.contains(canary), "{canary} in {name}");
        }
    }
    for canary in ["canary", "hunter2secret", "postgres:"] {
        assert!(!out.to_lowercase().contains(canary), "{canary} in {out}");
    }
    assert_eq!(
        std::fs::read_to_string(dir.join("README.md")).unwrap(),
        "hand-written notes\n",
        "other files of the fixtures directory are kept"
    );

    // The manifest: version, counts and checksums, settings, the source without credentials.
    let manifest = read_manifest(&dir).unwrap().unwrap();
    assert_eq!(manifest.schema_version, 4);
    assert_eq!(manifest.source.host.as_deref(), Some("127.0.0.1"));
    assert_eq!(manifest.source.port, Some(server.port()));
    assert_eq!(manifest.tables["users"].rows as usize, users.len());
    assert_eq!(manifest.settings["seed"], 3);
    assert_eq!(
        manifest.settings["columns"]["users.handle"],
        "fake:username"
    );
    let text = std::fs::read_to_string(dir.join(MANIFEST)).unwrap();
    assert!(
        !text.contains("postgres@") && !text.contains("\"user\""),
        "{text}"
    );
    for (table, entry) in &manifest.tables {
        let bytes = std::fs::read(dir.join(format!("{table}.csv"))).unwrap();
        assert_eq!(entry.sha256, sha256_hex(&bytes), "{table}");
    }

    // Determinism: a second capture, and one after half the users moved on disk, are the same
    // bytes.
    let second = ws.path().join("second");
    capture::capture(
        &config,
        &url,
        &options(&ws, second.clone()),
        &mut Vec::new(),
    )
    .unwrap();
    client(&url)
        .batch_execute("UPDATE users SET created_at = created_at WHERE id % 2 = 0; UPDATE posts SET body = body WHERE id % 3 = 0")
        .unwrap();
    let third = ws.path().join("third");
    capture::capture(&config, &url, &options(&ws, third.clone()), &mut Vec::new()).unwrap();
    let first: Vec<_> = files(&dir)
        .into_iter()
        .filter(|(n, _)| n != "README.md")
        .collect();
    assert_eq!(first, files(&second));
    assert_eq!(first, files(&third));
    // Another seed, other rows.
    let other = ws.path().join("other");
    let mut o = options(&ws, other.clone());
    o.settings.seed = 4;
    capture::capture(&config, &url, &o, &mut Vec::new()).unwrap();
    assert_ne!(column(&other, "users", "id"), column(&dir, "users", "id"));

    // The example's data migration samples on the captured fixtures: loaded with foreign keys
    // on in SQLite, its checks pass; the snapshot accepted there matches on PostgreSQL.
    let inputs = Inputs::load(&config).unwrap();
    let migration =
        xtask_migrate::backfill::migration::find(&config.data_migrations, "V1").unwrap();
    let mut log = Vec::new();
    let mut engine =
        Engine::open(&config, Some(SampleEngine::Sqlite), None, None, &mut log).unwrap();
    let options = SampleOptions {
        batch_size: None,
        mode: Mode::Accept,
    };
    let report = sample::sample(
        &config,
        &inputs,
        &migration,
        &mut engine,
        &options,
        &mut log,
    )
    .unwrap();
    let log_text = String::from_utf8_lossy(&log).into_owned();
    assert!(report.failed_checks.is_empty(), "{log_text}");
    assert!(
        matches!(report.outcome, Outcome::Accepted { .. }),
        "{log_text}"
    );
    let target = server.create_database("capture_load");
    let mut engine = Engine::open(
        &config,
        Some(SampleEngine::PostgresUrl),
        Some(target),
        None,
        &mut log,
    )
    .unwrap();
    let check = SampleOptions {
        batch_size: None,
        mode: Mode::Check,
    };
    let report =
        sample::sample(&config, &inputs, &migration, &mut engine, &check, &mut log).unwrap();
    let log_text = String::from_utf8_lossy(&log).into_owned();
    assert!(report.passed(), "{log_text}");
    assert_eq!(report.outcome, Outcome::Matched, "{log_text}");
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A schema with a cycle between two tables (teams lead by people, people in teams), a
/// self-reference (managers), a composite self-reference with a text key (task trees) and
/// nullable foreign keys everywhere. The cycle's and self-references' keys are DEFERRABLE, as
/// PostgreSQL needs to load such rows in any order.
pub(crate) const CYCLE_SCHEMA: &str = "
CREATE SEQUENCE ticket_seq;
CREATE TABLE teams (id int PRIMARY KEY, name text NOT NULL, lead_id int);
CREATE TABLE people (
    id int PRIMARY KEY,
    email text NOT NULL,
    team_id int REFERENCES teams (id) DEFERRABLE,
    manager_id int REFERENCES people (id) DEFERRABLE
);
ALTER TABLE teams ADD CONSTRAINT teams_lead_fk FOREIGN KEY (lead_id) REFERENCES people (id) DEFERRABLE;
CREATE TABLE tasks (
    org text NOT NULL,
    num int NOT NULL,
    parent_org text,
    parent_num int,
    owner_id int REFERENCES people (id),
    PRIMARY KEY (org, num),
    FOREIGN KEY (parent_org, parent_num) REFERENCES tasks (org, num) DEFERRABLE
);
";

/// The same schema in SQLite (a foreign key may name a table created later).
pub(crate) const CYCLE_SCHEMA_SQLITE: &str = "
CREATE TABLE teams (id int PRIMARY KEY, name text NOT NULL, lead_id int REFERENCES people (id));
CREATE TABLE people (
    id int PRIMARY KEY,
    email text NOT NULL,
    team_id int REFERENCES teams (id),
    manager_id int REFERENCES people (id)
);
CREATE TABLE tasks (
    org text NOT NULL,
    num int NOT NULL,
    parent_org text,
    parent_num int,
    owner_id int REFERENCES people (id),
    PRIMARY KEY (org, num),
    FOREIGN KEY (parent_org, parent_num) REFERENCES tasks (org, num)
);
";

pub(crate) const CYCLE_DATA: &str = "
BEGIN;
SET CONSTRAINTS ALL DEFERRED;
INSERT INTO teams VALUES (10, 'red', 3), (20, 'blue', 6), (30, 'green', NULL);
INSERT INTO people VALUES
    (1, 'one@corp.example', 10, 2), (2, 'two@corp.example', 10, 4), (3, 'three@corp.example', 10, NULL),
    (4, 'four@corp.example', 20, NULL), (5, 'five@corp.example', 20, 1), (6, 'six@corp.example', 20, NULL),
    (7, 'seven@corp.example', 30, NULL), (8, 'eight@corp.example', NULL, 8);
INSERT INTO tasks VALUES
    ('a', 1, NULL, NULL, 7), ('b', 1, NULL, NULL, NULL), ('b', 2, 'b', 1, 8), ('b', 3, 'b', 2, 1),
    ('b', 4, 'b', 3, NULL), ('c', 1, NULL, NULL, 5);
COMMIT;
";

pub(crate) const CYCLE_CAPTURE: &str = r#"
[workspace.metadata.xtask-migrate.capture]
hmac-key-env = "CAPTURE_TEST_KEY"
roots = [{ table = "tasks", where = "org = 'b' AND num = 3" }]

[workspace.metadata.xtask-migrate.capture.columns]
"people.email" = "hmac"
"teams.name" = "keep"
"tasks.org" = "hmac"
"tasks.parent_org" = "hmac"
"#;

fn cycle_source(server: &pg_harness::PgServer, ws: &Ws) -> String {
    let url = server.create_database("capture_cycle");
    let mut c = client(&url);
    let migrations = refinery::load_sql_migrations(ws.path().join("migrations")).unwrap();
    refinery::Runner::new(&migrations).run(&mut c).unwrap();
    c.batch_execute(CYCLE_DATA).unwrap();
    url
}

/// The closure follows a composite self-reference up a task tree, a self-reference up the
/// management chain (with a row managing itself), and the cycle between teams and people, to a
/// fixpoint, and nothing else; text keys hashed with HMAC still join; the result loads with
/// foreign keys on in SQLite and in PostgreSQL.
#[test]
fn closure_follows_cycles_and_self_references_and_loads_everywhere() {
    let server = pg_harness::shared();
    let ws = Ws::with_migrations(&[("V1__schema.sql", CYCLE_SCHEMA)], CYCLE_CAPTURE);
    let url = cycle_source(server, &ws);
    let key = ("CAPTURE_TEST_KEY", "k3y-for-the-test");
    let (code, out, err) = ws.capture(&["--database-url", &url], &[key]);
    assert_eq!(code, 0, "{out}{err}");
    // Without a terminal no progress bar is drawn: stderr stays empty.
    assert_eq!(err, "", "{out}");
    let dir = ws.fixtures();
    let tasks = check_cycle_capture(&dir, &out);
    // The org is hashed alike in the key and in the foreign key.
    let org = tasks[0][0].clone().unwrap();
    assert_eq!(org.len(), 64);
    assert!(tasks.iter().all(|r| r[0].as_deref() == Some(org.as_str())));
    assert!(tasks.iter().any(|r| r[2].as_deref() == Some(org.as_str())));
    assert!(!out.contains("k3y-for") && !err.contains("k3y-for"));

    // Loads with foreign keys on in PostgreSQL too (deferrable keys).
    let loaded = fixtures::read_dir(&dir).unwrap();
    let target = server.create_database("capture_cycle_load");
    client(&target).batch_execute(CYCLE_SCHEMA).unwrap();
    let mut pg = xtask_migrate::backfill::db::postgres::PgBackend::connect(&target).unwrap();
    let report = fixtures::load(&mut pg, &loaded, 1).unwrap();
    assert_eq!(report.rows, 11);

    // A broken reference in the captured set is still refused at commit, leaving nothing.
    let broken = tempfile::tempdir().unwrap();
    for (name, bytes) in files(&dir) {
        let mut text = String::from_utf8(bytes).unwrap();
        if name == "people.csv" {
            text = text.replace(",10,2\n", ",10,99\n");
        }
        std::fs::write(broken.path().join(name), text).unwrap();
    }
    let mut sqlite = xtask_migrate::backfill::db::sqlite::SqliteBackend::throwaway().unwrap();
    sqlite.execute(CYCLE_SCHEMA_SQLITE).unwrap();
    let e = fixtures::load(&mut sqlite, &fixtures::read_dir(broken.path()).unwrap(), 1)
        .unwrap_err()
        .to_string();
    assert!(e.contains("FOREIGN KEY constraint failed"), "{e}");
}

/// Each mistake is one line on stderr, exit 2, and the fixtures directory as it was.
#[test]
fn bad_input_is_one_line_exit_2_and_leaves_the_fixtures_alone() {
    let server = pg_harness::shared();
    let ws = Ws::with_migrations(&[("V1__schema.sql", CYCLE_SCHEMA)], CYCLE_CAPTURE);
    let url = cycle_source(server, &ws);
    let key = ("CAPTURE_TEST_KEY", "k3y-for-the-test");
    let before = files(&ws.fixtures());
    let no_history = server.create_database("capture_no_history");
    client(&no_history).batch_execute(CYCLE_SCHEMA).unwrap();
    let with_password = url.replace("postgres@", "postgres:s3cretpass@");
    let unreachable = format!(
        "postgres://postgres:s3cretpass@127.0.0.1:{}/x?connect_timeout=5",
        free_port()
    );
    // (arguments, environment, what stderr says)
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec![
                "--database-url",
                &with_password,
                "--root",
                "nosuch",
                "--limit",
                "1",
            ],
            vec![key],
            "root `nosuch`: no such table in schema public (it has: people, refinery_schema_history, tasks, teams)",
        ),
        (
            vec!["--database-url", &unreachable],
            vec![key],
            "cannot connect to postgres://postgres:***@127.0.0.1:",
        ),
        (
            vec!["--database-url", &no_history],
            vec![key],
            "the source has no refinery_schema_history table",
        ),
        (
            vec!["--database-url", &url],
            vec![],
            "people.email, tasks.org, tasks.parent_org are hashed with hmac, and the key is not set: export CAPTURE_TEST_KEY",
        ),
    ];
    for (args, env, expected) in &cases {
        let (code, out, err) = ws.capture(args, env);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(err.contains(expected), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(
            !err.contains("s3cretpass") && !out.contains("s3cretpass"),
            "{err}"
        );
        assert_eq!(files(&ws.fixtures()), before, "{args:?}");
    }

    // Config mistakes, each in its own workspace.
    for (metadata, expected) in [
        (
            CYCLE_CAPTURE.replace("\"teams.name\" = \"keep\"", "\"teams.nome\" = \"keep\""),
            "columns: `teams.nome`: table `teams` has no column `nome` (it has: id, name, lead_id)",
        ),
        (
            CYCLE_CAPTURE.replace("\"teams.name\" = \"keep\"\n", ""),
            "refusing to capture: these columns look personal and have no policy: teams.name (text)",
        ),
        (
            CYCLE_CAPTURE.replace("org = 'b' AND num = 3", "org = 'b' AND"),
            "root `tasks`: `where` does not parse",
        ),
        (
            CYCLE_CAPTURE.replace("org = 'b' AND num = 3", "orgg = 'b'"),
            "root `tasks`: selecting its rows fails on the source (`where` = \"orgg = 'b'\"): column \"orgg\" does not exist",
        ),
        (
            // The capture's transaction is read-only: a predicate that writes is refused.
            CYCLE_CAPTURE.replace("org = 'b' AND num = 3", "nextval('ticket_seq') > 0"),
            "cannot execute nextval() in a read-only transaction",
        ),
        (
            CYCLE_CAPTURE.replace(
                "\"tasks.parent_org\" = \"hmac\"",
                "\"tasks.parent_org\" = \"keep\"",
            ),
            "`tasks.parent_org` (keep) references `tasks.org` (hmac) through tasks_parent_org_parent_num_fkey",
        ),
    ] {
        let other = Ws::with_migrations(&[("V1__schema.sql", CYCLE_SCHEMA)], &metadata);
        let before = files(&other.fixtures());
        let (code, out, err) = other.capture(&["--database-url", &url], &[key]);
        assert_eq!(code, 2, "{metadata}: {out}{err}");
        assert!(err.contains(expected), "{err}");
        assert!(
            err.contains("Cargo.toml: [workspace.metadata.xtask-migrate.capture]"),
            "{err}"
        );
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert_eq!(files(&other.fixtures()), before);
        let leftovers: Vec<_> = std::fs::read_dir(other.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(".fixtures"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}

/// A source whose refinery history records a migration with another checksum than refinery
/// computes for the file here is refused before anything is read: one line naming the version
/// and the file, exit 2, the fixtures as they were. With the file as it ran, the same source is
/// captured, and without a terminal nothing but the step lines is printed (no progress bar).
#[test]
fn a_migration_changed_after_it_ran_on_the_source_is_refused() {
    let server = pg_harness::shared();
    let url = example_source(server, 4);
    let ws = Ws::example(EXAMPLE_CAPTURE);
    let file = ws.path().join("migrations/V2__create_follows.sql");
    let original = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, format!("{original}\n-- edited after it ran\n")).unwrap();
    let before = files(&ws.fixtures());

    let (code, out, err) = ws.capture(&["--database-url", &url], &[]);
    assert_eq!(code, 2, "{out}{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains("migrations/V2__create_follows.sql: the source applied V2 (create_follows) with checksum "),
        "{err}"
    );
    assert!(err.contains("it changed after it ran there"), "{err}");
    assert_eq!(files(&ws.fixtures()), before);
    let leftovers: Vec<_> = std::fs::read_dir(ws.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".fixtures"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // The history's checksum is refinery's own: restored, the file matches it.
    std::fs::write(&file, &original).unwrap();
    let (code, out, err) = ws.capture(&["--database-url", &url], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(err, "");
    assert!(out.contains("and manifest.json"), "{out}");
    assert!(!rows(&ws.fixtures(), "users").is_empty());

    // A history row whose checksum differs (the file is the same) is refused too.
    client(&url)
        .batch_execute("UPDATE refinery_schema_history SET checksum = '12345' WHERE version = 3")
        .unwrap();
    let captured = files(&ws.fixtures());
    let (code, out, err) = ws.capture(&["--database-url", &url], &[]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("migrations/V3__create_posts.sql: the source applied V3 (create_posts) with checksum 12345,"),
        "{err}"
    );
    assert_eq!(files(&ws.fixtures()), captured);
}

/// A kept text column whose values look like email addresses stops the capture after reading
/// (default-deny by content), without writing anything or printing a value.
#[test]
fn values_that_look_personal_in_an_unlisted_column_are_refused() {
    let server = pg_harness::shared();
    let schema = "CREATE TABLE notes (id int PRIMARY KEY, body text NOT NULL);";
    let ws = Ws::with_migrations(
        &[("V1__notes.sql", schema)],
        "[workspace.metadata.xtask-migrate.capture]\nroots = [{ table = \"notes\", fraction = 1.0 }]\n",
    );
    let url = server.create_database("capture_content");
    let mut c = client(&url);
    let migrations = refinery::load_sql_migrations(ws.path().join("migrations")).unwrap();
    refinery::Runner::new(&migrations).run(&mut c).unwrap();
    c.batch_execute(
        "INSERT INTO notes VALUES (1, 'hello'), (2, 'mail canary.person@corp.example now')",
    )
    .unwrap();
    let (code, out, err) = ws.capture(&["--database-url", &url], &[]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("values of notes.body look like email or IP addresses"),
        "{err}"
    );
    assert!(
        !err.contains("canary") && !out.contains("canary"),
        "{out}{err}"
    );
    assert!(!ws.fixtures().join("notes.csv").exists());
    // With a policy it goes through.
    let ws = Ws::with_migrations(
        &[("V1__notes.sql", schema)],
        "[workspace.metadata.xtask-migrate.capture]\nroots = [{ table = \"notes\", fraction = 1.0 }]\ncolumns = { \"notes.body\" = \"fake:text\" }\n",
    );
    let (code, out, err) = ws.capture(&["--database-url", &url], &[]);
    assert_eq!(code, 0, "{out}{err}");
    let bodies = column(&ws.fixtures(), "notes", "body");
    assert_eq!(bodies[1].as_ref().unwrap().chars().count(), 35);
    assert!(!bodies[1].as_ref().unwrap().contains("canary"));
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn the_config_table_is_read_from_cargo_toml() {
    let ws = Ws::example(EXAMPLE_CAPTURE);
    let config = ws.config();
    assert!(config.capture.is_some());
    let meta = serde_json::json!({ METADATA_KEY: { "capture": { "roots": [{ "table": "users", "fraction": 0.5 }] } } });
    let config = Config::from_metadata(ws.path(), &meta).unwrap();
    let s = CaptureSettings::resolve(&config, &Overrides::default()).unwrap();
    assert_eq!(s.roots[0].fraction, Some(0.5));
}

/// Every kind of value a fixture carries goes out and comes back identical in PostgreSQL:
/// integers, numerics, floats, text with commas, quotes and newlines, NULL vs empty string, the
/// text `\N`, booleans, timestamps with and without zones, dates, bytea, json/jsonb, arrays,
/// enums, UUIDs, intervals, inet.
#[test]
fn every_type_round_trips_through_a_capture() {
    let server = pg_harness::shared();
    let schema = "
        CREATE TYPE mood AS ENUM ('happy', 'sad, \"really\"');
        CREATE TABLE kinds (
            id bigint PRIMARY KEY, small smallint, amount numeric(12, 4), ratio double precision,
            label text, flag boolean, at timestamptz, local timestamp(3), day date, raw bytea,
            doc jsonb, plain json, tags text[], grid int[], feeling mood, ref uuid,
            wait interval, note varchar(20)
        );";
    let ws = Ws::with_migrations(
        &[("V1__kinds.sql", schema)],
        "[workspace.metadata.xtask-migrate.capture]\nroots = [{ table = \"kinds\", fraction = 1.0 }]\ncolumns = { \"kinds.label\" = \"keep\", \"kinds.note\" = \"keep\" }\n",
    );
    let url = server.create_database("capture_types");
    let mut c = client(&url);
    let migrations = refinery::load_sql_migrations(ws.path().join("migrations")).unwrap();
    refinery::Runner::new(&migrations).run(&mut c).unwrap();
    c.batch_execute(
        r#"SET TimeZone = 'America/New_York';
        INSERT INTO kinds VALUES
        (1, -32768, 12345678.1234, 0.1, E'a, "b"\nc', true, '2024-03-01 12:00:00.123456+02',
         '2024-02-29 23:59:59.999', '2024-02-29', '\x00ff10', '{"a": [1, null, "x,y"]}', '{"k":  1}',
         ARRAY['x', 'y z', NULL, '"q"'], ARRAY[[1, 2], [3, 4]], 'sad, "really"',
         'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '1 day 02:03:04', ''),
        (2, NULL, -0.0001, 1e300, '\N', false, NULL, NULL, NULL, '\x', 'null', '[]', '{}', NULL,
         'happy', NULL, '-1 mons', NULL),
        (3, 7, NULL, 'NaN', '', NULL, '1969-12-31 23:59:59.5+00', '1999-01-01 00:00:00', NULL,
         NULL, NULL, NULL, ARRAY[]::text[], NULL, NULL, NULL, NULL, 'é ☕ 🦀');"#,
    )
    .unwrap();
    let (code, out, err) = ws.capture(&["--database-url", &url], &[]);
    assert_eq!(code, 0, "{out}{err}");

    let target = server.create_database("capture_types_load");
    let mut backend =
        xtask_migrate::backfill::db::postgres::PgBackend::throwaway_schema(&target).unwrap();
    backend.execute(schema).unwrap();
    let loaded = fixtures::read_dir(&ws.fixtures()).unwrap();
    fixtures::load(&mut backend, &loaded, 1).unwrap();
    let dump = |client: &mut postgres::Client, table: &str| -> Vec<String> {
        client.batch_execute("SET TimeZone = 'UTC'").unwrap();
        client
            .query(
                &format!("SELECT k::text FROM {table} AS k ORDER BY id"),
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    let expected = dump(&mut c, "public.kinds");
    let schema_name = backend.schema().unwrap().to_string();
    let actual = dump(backend.client(), &format!("\"{schema_name}\".kinds"));
    assert_eq!(actual, expected);
    assert_eq!(expected.len(), 3);
}

/// Fixtures captured from a source at V3 (before the counter-cache columns) sample the data
/// migration that requires V4: the sample loads them at V3, then applies V4 over them.
#[test]
fn fixtures_captured_at_an_older_schema_are_carried_forward_by_the_migrations() {
    let server = pg_harness::shared();
    let url = example_source(server, 3);
    let ws = Ws::example(EXAMPLE_CAPTURE);
    let config = ws.config();
    let report =
        capture::capture(&config, &url, &options(&ws, ws.fixtures()), &mut Vec::new()).unwrap();
    assert_eq!(report.schema_version, 3);
    let inputs = Inputs::load(&config).unwrap();
    assert_eq!(inputs.fixtures_version, Some(3));
    let migration =
        xtask_migrate::backfill::migration::find(&config.data_migrations, "V1").unwrap();
    let mut log = Vec::new();
    let mut engine =
        Engine::open(&config, Some(SampleEngine::Sqlite), None, None, &mut log).unwrap();
    let options = SampleOptions {
        batch_size: None,
        mode: Mode::Accept,
    };
    let report = sample::sample(
        &config,
        &inputs,
        &migration,
        &mut engine,
        &options,
        &mut log,
    )
    .unwrap();
    let log = String::from_utf8_lossy(&log).into_owned();
    assert!(report.failed_checks.is_empty(), "{log}");
    assert!(log.contains("3 migrations applied, up to V3"), "{log}");
    assert!(log.contains("at V3"), "{log}");
    assert!(log.contains("1 more migration applied, up to V4"), "{log}");

    // A manifest at a version migrations/ lacks is refused, naming the manifest.
    let path = ws.fixtures().join(MANIFEST);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("\"schema_version\": 3", "\"schema_version\": 9"),
    )
    .unwrap();
    let e = Inputs::load(&config).err().unwrap().to_string();
    assert!(
        e.contains("manifest.json: the fixtures were captured at schema version V9"),
        "{e}"
    );
}

/// What a capture of the cycle schema (roots, closure, scrubbing) must have written to `dir`,
/// whichever the source: the closed set of ids, no personal value or key in any file, and a
/// load with foreign keys on in SQLite (checked at commit) without violations. Returns the
/// `tasks` rows.
pub(crate) fn check_cycle_capture(dir: &Path, out: &str) -> Vec<Vec<Option<String>>> {
    let ids = |table: &str| -> BTreeSet<i64> {
        column(dir, table, "id")
            .into_iter()
            .map(|v| v.unwrap().parse().unwrap())
            .collect()
    };
    assert_eq!(ids("people"), BTreeSet::from([1, 2, 3, 4, 6, 8]), "{out}");
    assert_eq!(ids("teams"), BTreeSet::from([10, 20]), "{out}");
    let tasks = rows(dir, "tasks");
    let nums: BTreeSet<String> = tasks.iter().map(|r| r[1].clone().unwrap()).collect();
    assert_eq!(nums, BTreeSet::from(["1".into(), "2".into(), "3".into()]));
    let all: String = files(dir)
        .iter()
        .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
        .collect();
    assert!(
        !all.contains("corp.example") && !all.contains("k3y-for"),
        "{all}"
    );
    let loaded = fixtures::read_dir(dir).unwrap();
    let mut sqlite = xtask_migrate::backfill::db::sqlite::SqliteBackend::throwaway().unwrap();
    sqlite.execute(CYCLE_SCHEMA_SQLITE).unwrap();
    assert_eq!(fixtures::load(&mut sqlite, &loaded, 1).unwrap().rows, 11);
    let violations = sqlite.query("PRAGMA foreign_key_check").unwrap();
    assert!(violations.rows.is_empty(), "{violations:?}");
    tasks
}
