//! The batch engine's contract, one suite run on both databases: the same data migration on
//! the same rows gives the same batches, the same rows and the same tracking rows on SQLite and
//! on a real PostgreSQL server the tests start themselves. Each test is written once, as a
//! function of a [`Db`], and instantiated for both by `contract!`.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use xtask_migrate::backfill::db::postgres::PgBackend;
use xtask_migrate::backfill::db::sqlite::SqliteBackend;
use xtask_migrate::backfill::db::{Backend, BatchLimits, Cell, KeyKind};
use xtask_migrate::backfill::migration::{self, DataMigration};
use xtask_migrate::backfill::run::plan::Settings;
use xtask_migrate::backfill::run::progress::{Progress, ProgressMode};
use xtask_migrate::backfill::run::tracking::postgres::PgStore;
use xtask_migrate::backfill::run::tracking::sqlite::SqliteStore;
use xtask_migrate::backfill::run::tracking::{
    BatchOutcome, BatchRequest, RunState, Store, TrackingNames,
};
use xtask_migrate::backfill::run::worker::{self, Finish, RunOptions, RunReport};
use xtask_migrate::backfill::{Error, Retry};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Engine {
    Sqlite,
    Postgres,
}

/// A fresh database with `items(key, n)` and the tracking store over it.
struct Db {
    engine: Engine,
    store: Box<dyn Store>,
}

/// The key column's type on each database.
struct KeyType {
    sqlite: &'static str,
    postgres: &'static str,
}

const BIGINT: KeyType = KeyType {
    sqlite: "bigint",
    postgres: "bigint",
};

fn db(engine: Engine, key: &str, ty: KeyType, extra: &str) -> Db {
    let ddl = |ty: &str| {
        format!(
            "CREATE TABLE items ({key} {ty} PRIMARY KEY NOT NULL, n bigint NOT NULL DEFAULT 0{extra})"
        )
    };
    let store: Box<dyn Store> = match engine {
        Engine::Sqlite => {
            let mut backend = SqliteBackend::throwaway().unwrap();
            backend.execute(&ddl(ty.sqlite)).unwrap();
            Box::new(SqliteStore::new(backend, TrackingNames::default()).unwrap())
        }
        Engine::Postgres => {
            let url = pg_harness::shared().create_database("engine");
            let mut backend = PgBackend::throwaway_schema(&url).unwrap();
            backend.execute(&ddl(ty.postgres)).unwrap();
            let mut store = PgStore::new(backend, TrackingNames::default());
            store.init_session().unwrap();
            Box::new(store)
        }
    };
    Db { engine, store }
}

fn migration(key: &str, extra_where: &str) -> DataMigration {
    let text = format!(
        "-- @requires 1\n-- @table items\n-- @key {key}\n\n-- @batch\nUPDATE items SET n = n + 1 WHERE {key} > :lower AND {key} <= :upper{extra_where};\n\n-- @snapshot\nSELECT {key}, n FROM items ORDER BY {key};\n"
    );
    migration::parse(Path::new("data-migrations/V7__bump.sql"), &text).unwrap()
}

fn settings(batch_size: u64) -> Settings {
    Settings {
        batch_size,
        adaptive: false,
        min_batch_size: 1,
        max_batch_size: batch_size,
        target_batch_ms: 200,
        pause_ms: 0,
        max_rows_per_second: None,
        lock_timeout_ms: 2_000,
        statement_timeout_ms: 30_000,
        max_retries: 2,
        ranges: 1,
        claim_timeout_s: 60,
        health: Default::default(),
    }
}

impl Db {
    fn execute(&mut self, sql: &str) {
        self.store.backend().execute(sql).unwrap();
    }

    fn run(
        &mut self,
        m: &DataMigration,
        s: &Settings,
        max_batches: Option<u64>,
    ) -> Result<RunReport, Error> {
        self.run_with(m, s, max_batches, None)
    }

    /// [`Db::run`], starting over after the cancelled run `restart`.
    fn run_with(
        &mut self,
        m: &DataMigration,
        s: &Settings,
        max_batches: Option<u64>,
        restart: Option<i64>,
    ) -> Result<RunReport, Error> {
        let stop = AtomicBool::new(false);
        worker::apply_limits(self.store.as_mut(), s)?;
        worker::execute(
            self.store.as_mut(),
            s,
            m,
            RunOptions {
                worker: "contract".into(),
                progress: Progress::new(ProgressMode::Quiet, Duration::from_secs(60)),
                stop: &stop,
                poll: Duration::from_millis(5),
                max_batches,
                restart,
            },
        )
    }

    /// The batches the tracking tables logged: (lower, upper, rows changed), in commit order.
    fn logged(&mut self) -> Vec<(String, String, i64)> {
        let order = match self.engine {
            Engine::Sqlite => "rowid",
            Engine::Postgres => "ctid",
        };
        let rows = self
            .store
            .backend()
            .query(&format!(
                "SELECT lower_key, upper_key, rows_changed FROM xtask_backfill_batch_log ORDER BY {order}"
            ))
            .unwrap();
        rows.rows
            .into_iter()
            .map(|r| (text(&r[0]), text(&r[1]), text(&r[2]).parse().unwrap()))
            .collect()
    }

    fn counts(&mut self) -> Vec<String> {
        let rows = self
            .store
            .backend()
            .query("SELECT n FROM items ORDER BY 1")
            .unwrap();
        rows.rows.iter().map(|r| text(&r[0])).collect()
    }
}

fn text(c: &Cell) -> String {
    match c {
        Cell::Text(t) | Cell::Number(t) => t.clone(),
        other => panic!("{other:?}"),
    }
}

fn batches(list: &[(&str, &str, i64)]) -> Vec<(String, String, i64)> {
    list.iter()
        .map(|(l, u, n)| (l.to_string(), u.to_string(), *n))
        .collect()
}

/// Instantiates each test function for both databases.
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $name() { super::$name(super::Engine::Sqlite) } )*
        }
        mod postgres {
            $( #[test] fn $name() { super::$name(super::Engine::Postgres) } )*
        }
    };
}

contract!(
    sparse_integer_keys_give_full_batches,
    narrow_integer_keys_batch_size_one_and_an_empty_table,
    text_keys_follow_the_column_collation,
    a_batch_that_changes_no_row_still_commits,
    a_failing_batch_rolls_back_names_the_file_and_fails_the_run,
    a_resumed_run_applies_every_batch_exactly_once,
    a_batch_whose_cursor_moved_is_a_lost_race_and_rolls_back,
    a_run_of_another_version_is_refused,
    a_cancelled_run_restarts_as_a_new_run_exactly_once,
    a_batch_of_a_run_replaced_by_a_restart_rolls_back,
    tracking_tables_of_the_previous_version_are_upgraded_in_place,
);

fn sparse_integer_keys_give_full_batches(engine: Engine) {
    let mut db = db(engine, "id", BIGINT, "");
    db.execute("INSERT INTO items (id) VALUES (-40), (1), (2), (10), (11), (500), (501), (502), (9000000000)");
    let report = db.run(&migration("id", ""), &settings(3), None).unwrap();
    assert_eq!(
        (report.finish, report.batches, report.rows),
        (Finish::Done, 3, 9)
    );
    assert_eq!(
        db.logged(),
        batches(&[("-41", "2", 3), ("2", "500", 3), ("500", "9000000000", 3)])
    );
    assert_eq!(db.counts(), vec!["1"; 9]);
}

fn narrow_integer_keys_batch_size_one_and_an_empty_table(engine: Engine) {
    let ty = KeyType {
        sqlite: "integer",
        postgres: "integer",
    };
    let mut db = db(engine, "id", ty, "");
    let m = migration("id", "");
    let report = db.run(&m, &settings(1), None).unwrap();
    assert_eq!(
        (report.finish, report.batches),
        (Finish::Done, 0),
        "empty table: no batch"
    );
    // A done run is done: rows added later belong to another data migration.
    db.execute("INSERT INTO items (id) VALUES (2147483647), (-2147483647), (0)");
    let report = db.run(&m, &settings(1), None).unwrap();
    assert_eq!(report.finish, Finish::AlreadyDone);
    assert_eq!(db.counts(), vec!["0"; 3]);

    let mut db2 = self::db(
        engine,
        "id",
        KeyType {
            sqlite: "integer",
            postgres: "integer",
        },
        "",
    );
    db2.execute("INSERT INTO items (id) VALUES (2147483647), (-2147483647), (0)");
    db2.run(&m, &settings(1), None).unwrap();
    let uppers: Vec<String> = db2.logged().into_iter().map(|b| b.1).collect();
    assert_eq!(uppers, ["-2147483647", "0", "2147483647"]);
    assert_eq!(db2.counts(), vec!["1"; 3]);
}

fn text_keys_follow_the_column_collation(engine: Engine) {
    let ty = KeyType {
        sqlite: "text",
        postgres: "text COLLATE \"C\"",
    };
    let mut db = db(engine, "code", ty, "");
    db.execute(
        "INSERT INTO items (code) VALUES ('b'), ('a'), ('ab'), ('B'), ('z'), ('é'), ('a b')",
    );
    let report = db.run(&migration("code", ""), &settings(2), None).unwrap();
    assert_eq!(report.rows, 7);
    // Byte order on both: upper case before lower case, 'é' last.
    assert_eq!(
        db.logged(),
        batches(&[("", "a", 2), ("a", "ab", 2), ("ab", "z", 2), ("z", "é", 1)])
    );
    assert_eq!(db.counts(), vec!["1"; 7]);
}

fn a_batch_that_changes_no_row_still_commits(engine: Engine) {
    let mut db = db(engine, "id", BIGINT, "");
    db.execute("INSERT INTO items (id) VALUES (1), (3), (5), (6), (7), (9), (10)");
    db.run(&migration("id", " AND id % 2 = 0"), &settings(3), None)
        .unwrap();
    let rows: Vec<i64> = db.logged().into_iter().map(|b| b.2).collect();
    assert_eq!(rows, vec![0, 1, 1]);
    assert_eq!(db.counts(), vec!["0", "0", "0", "0", "0", "1", "1"]);
}

fn a_failing_batch_rolls_back_names_the_file_and_fails_the_run(engine: Engine) {
    let mut db = db(
        engine,
        "id",
        BIGINT,
        ", CONSTRAINT small CHECK (id <> 5 OR n = 0)",
    );
    db.execute("INSERT INTO items (id) VALUES (1), (2), (3), (4), (5), (6)");
    let m = migration("id", "");
    let e = db.run(&m, &settings(2), None).unwrap_err();
    let s = e.to_string();
    assert!(
        s.starts_with("data-migrations/V7__bump.sql:6: batch of range 0 failed: keys (4, 6]:"),
        "{s}"
    );
    assert!(s.contains("small"), "{s}");
    assert_eq!(
        e.retry,
        Retry::Never,
        "a check violation does not go away by retrying"
    );
    assert_eq!(db.logged().len(), 2);
    assert_eq!(db.counts(), vec!["0", "0", "1", "1", "1", "1"]);
    let run = db.store.find_run("V7__bump").unwrap().unwrap();
    assert_eq!(run.state, RunState::Failed);
    assert!(run.last_error.unwrap().contains("keys (4, 6]"));
}

fn a_resumed_run_applies_every_batch_exactly_once(engine: Engine) {
    let mut db = db(engine, "id", BIGINT, "");
    let values: Vec<String> = (1..=50).map(|g| format!("({})", g * 3)).collect();
    db.execute(&format!(
        "INSERT INTO items (id) VALUES {}",
        values.join(", ")
    ));
    let m = migration("id", "");
    let first = db.run(&m, &settings(7), Some(3)).unwrap();
    assert_eq!((first.finish, first.batches), (Finish::Interrupted, 3));
    db.store.reconnect().unwrap();
    let rest = db.run(&m, &settings(7), None).unwrap();
    assert_eq!(
        (rest.finish, rest.batches, rest.run_rows),
        (Finish::Done, 5, 50)
    );
    let logged = db.logged();
    assert_eq!(logged.len(), 8);
    assert_eq!(logged[3].0, "63");
    assert_eq!(db.counts(), vec!["1"; 50]);
}

fn a_batch_whose_cursor_moved_is_a_lost_race_and_rolls_back(engine: Engine) {
    let mut db = db(engine, "id", BIGINT, "");
    db.execute("INSERT INTO items (id) VALUES (1), (2), (3)");
    let m = migration("id", "");
    db.run(&m, &settings(1), Some(1)).unwrap();
    let run = db.store.find_run("V7__bump").unwrap().unwrap();
    let range = db
        .store
        .claim(run.id, "a", Duration::from_secs(60))
        .unwrap()
        .unwrap();
    let sql = m.batch.sql(db.store.backend().dialect()).to_string();
    let request = |range| BatchRequest {
        run_id: run.id,
        range,
        table: "items",
        key: "id",
        kind: KeyKind::Integer,
        sql: &sql,
        size: 1,
        worker: "a",
        limits: BatchLimits::default(),
    };
    assert!(matches!(
        db.store.run_batch(&request(&range)).unwrap(),
        BatchOutcome::Applied { .. }
    ));
    // The same cursor again, as a worker that did not see the commit would send it.
    assert_eq!(
        db.store.run_batch(&request(&range)).unwrap(),
        BatchOutcome::Lost
    );
    // A worker that does not hold the claim loses too.
    let mut other = db.store.ranges(run.id).unwrap().remove(0);
    other.claimed_by = Some("b".into());
    let stolen = BatchRequest {
        worker: "b",
        ..request(&other)
    };
    assert_eq!(db.store.run_batch(&stolen).unwrap(), BatchOutcome::Lost);
    assert_eq!(db.counts(), vec!["0", "1", "1"]);
    assert_eq!(db.logged().len(), 2);
}

fn a_run_of_another_version_is_refused(engine: Engine) {
    let mut db = db(engine, "id", BIGINT, "");
    db.execute("INSERT INTO items (id) VALUES (1), (2), (3)");
    let m = migration("id", "");
    db.run(&m, &settings(1), Some(1)).unwrap();
    let mut changed = m.clone();
    changed.checksum = migration::checksum(b"another file");
    let e = db
        .run(&changed, &settings(1), None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("records a run of V7__bump from another version of the file"),
        "{e}"
    );
    assert_eq!(db.counts(), vec!["0", "0", "1"]);
}

/// After a cancel, a plain run is refused and names the way out; `--restart RUN` starts a new run
/// that goes through every row once (rows the cancelled run changed get the statement a second
/// time, as asked); the cancelled run stays, marked superseded with who and when; asking for the
/// same restart again joins the new run instead of starting over twice.
fn a_cancelled_run_restarts_as_a_new_run_exactly_once(engine: Engine) {
    let mut db = db(engine, "id", BIGINT, "");
    let values: Vec<String> = (1..=20).map(|g| format!("({g})")).collect();
    db.execute(&format!(
        "INSERT INTO items (id) VALUES {}",
        values.join(", ")
    ));
    let m = migration("id", "");
    let first = db.run(&m, &settings(3), Some(2)).unwrap();
    assert_eq!((first.finish, first.rows), (Finish::Interrupted, 6));
    let old = db.store.find_run("V7__bump").unwrap().unwrap();
    db.store
        .transition(old.id, RunState::Cancelled, None)
        .unwrap();

    let e = db.run(&m, &settings(3), None).unwrap_err().to_string();
    assert!(e.contains("was cancelled"), "{e}");
    assert!(e.contains(&format!("`--restart {}`", old.id)), "{e}");
    assert!(e.contains("or write a new data migration"), "{e}");
    let e = db
        .run_with(&m, &settings(3), None, Some(old.id + 100))
        .unwrap_err()
        .to_string();
    assert!(e.contains("is not the current run of V7__bump"), "{e}");

    let report = db.run_with(&m, &settings(3), None, Some(old.id)).unwrap();
    assert_eq!(report.restarted, Some(old.id));
    assert_eq!(
        (report.finish, report.rows, report.batches),
        (Finish::Done, 20, 7)
    );
    assert_ne!(report.run_id, old.id);
    // Sorted by value: the first run's 6 rows got the statement twice, the others once.
    let mut expected = vec!["1"; 14];
    expected.extend(vec!["2"; 6]);
    assert_eq!(db.counts(), expected);

    let runs = db.store.runs().unwrap();
    assert_eq!(runs.len(), 2);
    let (was, new) = (&runs[0], &runs[1]);
    assert_eq!((was.id, was.state), (old.id, RunState::Cancelled));
    assert!(was.superseded_at.is_some() && !was.is_current());
    assert!(was.superseded_by.as_deref().unwrap().contains('@'));
    assert_eq!((new.id, new.restart_of), (report.run_id, Some(old.id)));
    assert_eq!(new.state, RunState::Done);
    assert_eq!(db.store.find_run("V7__bump").unwrap().unwrap().id, new.id);
    // The new run's batches tile the key space once: 7 batches of at most 3 rows.
    let logged = db.logged();
    let new_batches: Vec<_> = logged[2..].to_vec();
    assert_eq!(new_batches.first().unwrap().0, "0");
    assert_eq!(new_batches.iter().map(|b| b.2).sum::<i64>(), 20);
    for pair in new_batches.windows(2) {
        assert_eq!(pair[0].1, pair[1].0, "{new_batches:?}");
    }

    // The same command again (a retried job, a second worker): it joins the new run.
    let again = db.run_with(&m, &settings(3), None, Some(old.id)).unwrap();
    assert_eq!(
        (again.finish, again.restarted, again.run_id),
        (Finish::AlreadyDone, None, new.id)
    );
    assert_eq!(db.counts(), expected);
    // A done run does not start over.
    let e = db
        .run_with(&m, &settings(3), None, Some(new.id))
        .unwrap_err()
        .to_string();
    assert!(e.contains("a done run does not start over"), "{e}");
}

/// A worker of the cancelled run that had not seen the cancel yet: once a restart replaced the
/// run, its batch rolls back instead of committing beside the new run's.
fn a_batch_of_a_run_replaced_by_a_restart_rolls_back(engine: Engine) {
    let mut db = db(engine, "id", BIGINT, "");
    db.execute("INSERT INTO items (id) VALUES (1), (2), (3), (4)");
    let m = migration("id", "");
    db.run(&m, &settings(1), Some(1)).unwrap();
    let old = db.store.find_run("V7__bump").unwrap().unwrap();
    let range = db
        .store
        .claim(old.id, "late", Duration::from_secs(60))
        .unwrap()
        .unwrap();
    db.store
        .transition(old.id, RunState::Cancelled, None)
        .unwrap();
    // The restart records the new run; this worker stops before its first batch.
    let report = db
        .run_with(&m, &settings(1), Some(0), Some(old.id))
        .unwrap();
    assert_eq!(report.restarted, Some(old.id));
    let sql = m.batch.sql(db.store.backend().dialect()).to_string();
    let request = BatchRequest {
        run_id: old.id,
        range: &range,
        table: "items",
        key: "id",
        kind: KeyKind::Integer,
        sql: &sql,
        size: 1,
        worker: "late",
        limits: BatchLimits::default(),
    };
    assert_eq!(db.store.run_batch(&request).unwrap(), BatchOutcome::Lost);
    assert_eq!(db.counts(), vec!["0", "0", "0", "1"]);
    assert_eq!(db.logged().len(), 1);
}

/// The tracking tables as the previous version created them (one run per data migration), with
/// a run part-way through.
fn previous_version_tables(engine: Engine) -> &'static str {
    match engine {
        Engine::Sqlite => {
            "CREATE TABLE xtask_backfill_runs (
    id INTEGER PRIMARY KEY,
    migration text NOT NULL UNIQUE,
    checksum text NOT NULL,
    state text NOT NULL,
    table_name text NOT NULL,
    key_column text NOT NULL,
    key_kind text NOT NULL,
    settings text NOT NULL,
    rows_estimated integer,
    rows_done integer NOT NULL DEFAULT 0,
    batches_done integer NOT NULL DEFAULT 0,
    pace_batch_size integer,
    pace_pause_ms integer,
    pace_max_rows_per_second integer,
    last_error text,
    created_at text NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    started_at text,
    updated_at text NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    finished_at text
);
CREATE TABLE xtask_backfill_ranges (
    id INTEGER PRIMARY KEY,
    run_id integer NOT NULL REFERENCES xtask_backfill_runs (id) ON DELETE CASCADE,
    ord integer NOT NULL,
    lower_key text NOT NULL,
    upper_key text,
    cursor_key text NOT NULL,
    done boolean NOT NULL DEFAULT 0,
    claimed_by text,
    claim_host text,
    claim_pid integer,
    claim_start numeric,
    heartbeat text,
    rows_done integer NOT NULL DEFAULT 0,
    batches integer NOT NULL DEFAULT 0,
    UNIQUE (run_id, ord)
);
CREATE TABLE xtask_backfill_batch_log (
    range_id integer NOT NULL REFERENCES xtask_backfill_ranges (id) ON DELETE CASCADE,
    run_id integer NOT NULL,
    lower_key text NOT NULL,
    upper_key text NOT NULL,
    rows_changed integer NOT NULL,
    worker text NOT NULL,
    held_ms real NOT NULL,
    committed_at text NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    PRIMARY KEY (range_id, lower_key)
);
CREATE INDEX xtask_backfill_batch_log_run ON xtask_backfill_batch_log (run_id, committed_at);"
        }
        Engine::Postgres => {
            "CREATE TABLE xtask_backfill_runs (
    id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    migration text NOT NULL UNIQUE,
    checksum text NOT NULL,
    state text NOT NULL CHECK (state IN ('pending', 'running', 'paused', 'done', 'cancelled', 'failed')),
    table_name text NOT NULL,
    key_column text NOT NULL,
    key_kind text NOT NULL CHECK (key_kind IN ('integer', 'text')),
    settings jsonb NOT NULL,
    rows_estimated bigint,
    rows_done bigint NOT NULL DEFAULT 0,
    batches_done bigint NOT NULL DEFAULT 0,
    pace_batch_size bigint,
    pace_pause_ms bigint,
    pace_max_rows_per_second bigint,
    last_error text,
    created_at timestamptz NOT NULL DEFAULT now(),
    started_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);
CREATE TABLE xtask_backfill_ranges (
    id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    run_id bigint NOT NULL REFERENCES xtask_backfill_runs (id) ON DELETE CASCADE,
    ord integer NOT NULL,
    lower_key text NOT NULL,
    upper_key text,
    cursor_key text NOT NULL,
    done boolean NOT NULL DEFAULT false,
    claimed_by text,
    claim_host text,
    claim_pid bigint,
    claim_start numeric,
    heartbeat timestamptz,
    rows_done bigint NOT NULL DEFAULT 0,
    batches bigint NOT NULL DEFAULT 0,
    UNIQUE (run_id, ord)
);
CREATE TABLE xtask_backfill_batch_log (
    range_id bigint NOT NULL REFERENCES xtask_backfill_ranges (id) ON DELETE CASCADE,
    run_id bigint NOT NULL,
    lower_key text NOT NULL,
    upper_key text NOT NULL,
    rows_changed bigint NOT NULL,
    worker text NOT NULL,
    held_ms double precision NOT NULL,
    committed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (range_id, lower_key)
);
CREATE INDEX xtask_backfill_batch_log_run ON xtask_backfill_batch_log (run_id, committed_at);"
        }
    }
}

/// Tables of the previous version, holding a run part-way through (rows 1 to 4 of 10 done), are
/// upgraded when first opened: the run resumes exactly where it was, and restarts work on them.
fn tracking_tables_of_the_previous_version_are_upgraded_in_place(engine: Engine) {
    let mut db = db(engine, "id", BIGINT, "");
    let m = migration("id", "");
    db.execute(previous_version_tables(engine));
    let settings_json = serde_json::to_string(&settings(3)).unwrap();
    db.execute(&format!(
        "INSERT INTO items (id, n) VALUES (1, 1), (2, 1), (3, 1), (4, 1), (5, 0), (6, 0), (7, 0), (8, 0), (9, 0), (10, 0);
         INSERT INTO xtask_backfill_runs (migration, checksum, state, table_name, key_column, key_kind, settings, rows_estimated, started_at)
             VALUES ('V7__bump', '{checksum}', 'running', 'items', 'id', 'integer', '{settings_json}', 10, {now});
         INSERT INTO xtask_backfill_ranges (run_id, ord, lower_key, upper_key, cursor_key, rows_done, batches)
             SELECT id, 0, '0', NULL, '4', 4, 2 FROM xtask_backfill_runs;
         INSERT INTO xtask_backfill_batch_log (range_id, run_id, lower_key, upper_key, rows_changed, worker, held_ms)
             SELECT id, run_id, '0', '2', 2, 'old', 1.0 FROM xtask_backfill_ranges
             UNION ALL SELECT id, run_id, '2', '4', 2, 'old', 1.0 FROM xtask_backfill_ranges",
        checksum = m.checksum,
        now = match engine {
            Engine::Sqlite => "strftime('%Y-%m-%d %H:%M:%f', 'now')",
            Engine::Postgres => "now()",
        }
    ));
    assert!(db.store.tables_exist().unwrap());
    let runs = db.store.runs().unwrap();
    assert_eq!(runs.len(), 1);
    let old = runs[0].id;
    assert!(runs[0].is_current() && runs[0].restart_of.is_none());
    assert!(runs[0].created_at.ends_with('Z'), "{:?}", runs[0]);

    let resumed = db.run(&m, &settings(3), Some(1)).unwrap();
    assert_eq!((resumed.run_id, resumed.rows), (old, 3));
    db.store.transition(old, RunState::Cancelled, None).unwrap();
    let report = db.run_with(&m, &settings(3), None, Some(old)).unwrap();
    assert_eq!((report.finish, report.rows), (Finish::Done, 10));
    // Rows 1 to 7 ran in the old run and again in the new one; 8 to 10 only in the new one.
    let mut expected = vec!["1"; 3];
    expected.extend(vec!["2"; 7]);
    assert_eq!(db.counts(), expected);
    assert_eq!(db.store.runs().unwrap().len(), 2);
    // Opening them again finds nothing left to upgrade.
    db.store.ensure_tables().unwrap();
    assert!(db.store.tables_exist().unwrap());
}

#[test]
fn a_lock_timeout_on_postgres_is_retried_then_fails_the_run() {
    let mut db = db(Engine::Postgres, "id", BIGINT, "");
    db.execute("INSERT INTO items (id) VALUES (1), (2)");
    let rows = db
        .store
        .backend()
        .query("SELECT current_database()::text, current_schema()::text")
        .unwrap();
    let (database, schema) = (text(&rows.rows[0][0]), text(&rows.rows[0][1]));
    // Record the run first: reading its key range needs the table too.
    let started = db
        .run(&migration("id", ""), &settings(10), Some(0))
        .unwrap();
    assert_eq!((started.finish, started.batches), (Finish::Interrupted, 0));
    let mut blocker =
        ::postgres::Client::connect(&pg_harness::shared().url(&database), ::postgres::NoTls)
            .unwrap();
    blocker
        .batch_execute(&format!(
            "BEGIN; LOCK TABLE \"{schema}\".items IN ACCESS EXCLUSIVE MODE"
        ))
        .unwrap();
    let mut s = settings(10);
    s.lock_timeout_ms = 100;
    s.max_retries = 1;
    let e = db.run(&migration("id", ""), &s, None).unwrap_err();
    assert!(e.to_string().contains("lock timeout"), "{e}");
    assert_eq!(e.retry, Retry::Backoff, "{e}");
    blocker.batch_execute("ROLLBACK").unwrap();
    // The failed run resumes once the lock is gone.
    let report = db.run(&migration("id", ""), &settings(10), None).unwrap();
    assert_eq!((report.finish, report.rows), (Finish::Done, 2));
    assert!(report.resumed_failure.unwrap().contains("lock timeout"));
}

/// What `backfill sample` approves is what `backfill run` does: this repository's example data
/// migration, sampled on its fixtures, and run as a production plan with the same settings on a
/// SQLite file built from the same schema and fixtures, gives the same rows and the same
/// tracking rows (ranges, batches and their bounds, rows per batch).
#[test]
fn sample_and_run_give_identical_rows_and_tracking_rows() {
    use xtask_migrate::backfill::db::SampleBackend;
    use xtask_migrate::backfill::db::target::Target;
    use xtask_migrate::backfill::run::plan::{self, PlanRequest};
    use xtask_migrate::backfill::sample::snapshot::Mode;
    use xtask_migrate::backfill::sample::{self, Inputs, SampleOptions, SampleStore, fixtures};
    use xtask_migrate::config::{Config, SampleEngine};

    let config = Config::discover().unwrap();
    let m = migration::find(&config.data_migrations, "V1").unwrap();
    let inputs = Inputs::load(&config).unwrap();
    let batch_size = 100;

    // The sample, on its own throwaway SQLite database, kept to look at afterwards.
    let mut sampled = SqliteStore::new(
        SqliteBackend::throwaway().unwrap(),
        TrackingNames::default(),
    )
    .unwrap();
    let options = SampleOptions {
        batch_size: Some(batch_size),
        mode: Mode::Check,
    };
    let report = sample::sample_on(
        &config,
        &inputs,
        &m,
        &options,
        SampleEngine::Sqlite,
        &mut sampled,
        &mut Vec::new(),
    )
    .unwrap();
    assert!(report.passed(), "{report:?}");

    // The production path: a SQLite file with the same schema and fixtures, a plan with the
    // sample's settings, `backfill run`'s entry point.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    {
        let mut backend = SqliteBackend::open(&path).unwrap();
        backend
            .apply_migrations(&inputs.migrations, m.requires.value, &config.migrations)
            .unwrap();
        fixtures::load(&mut backend, &inputs.fixtures, m.requires.value).unwrap();
    }
    let request = PlanRequest {
        settings: sample::sample_settings(&m, batch_size),
        tracking: TrackingNames::default(),
        ranges: Some(1),
    };
    let plan = plan::build(&config, &m, &request, None, &dir.path().join("plan.json"));
    let target = Target::parse(&format!("sqlite://{}", path.display())).unwrap();
    let stop = AtomicBool::new(false);
    let options = RunOptions {
        worker: "sample".into(),
        progress: Progress::new(ProgressMode::Quiet, Duration::from_secs(60)),
        stop: &stop,
        poll: Duration::from_millis(5),
        max_batches: None,
        restart: None,
    };
    let ran =
        xtask_migrate::backfill::run::run(&target, &plan, &m, options, &mut Vec::new()).unwrap();
    assert_eq!(ran.finish, Finish::Done);
    let mut production = SqliteStore::new(
        SqliteBackend::open(&path).unwrap(),
        TrackingNames::default(),
    )
    .unwrap();

    let read = |db: &mut dyn SampleStore, sql: &str| db.backend().query(sql).unwrap();
    let tables = [
        m.snapshot.sql.clone(),
        "SELECT * FROM users ORDER BY id".into(),
        // The data migration's run (the sample also verifies it, in a run of its own).
        "SELECT ord, lower_key, upper_key, cursor_key, done, claimed_by, rows_done, batches FROM xtask_backfill_ranges WHERE run_id = 1 ORDER BY ord".into(),
        "SELECT lower_key, upper_key, rows_changed, worker FROM xtask_backfill_batch_log WHERE run_id = 1 ORDER BY rowid".into(),
        "SELECT migration, checksum, state, table_name, key_column, key_kind, settings, rows_estimated, last_error FROM xtask_backfill_runs WHERE id = 1".into(),
    ];
    for sql in tables {
        let a = read(&mut sampled, &sql);
        let b = read(&mut production, &sql);
        assert!(!a.rows.is_empty(), "{sql}");
        assert_eq!(a, b, "{sql}");
    }
    let verified = read(
        &mut sampled,
        "SELECT migration, state FROM xtask_backfill_runs WHERE id = 2",
    );
    assert_eq!(
        verified.rows,
        vec![vec![
            Cell::Text("V1__backfill_counter_caches:verify".into()),
            Cell::Text("done".into())
        ]],
        "the sample verified the data migration too"
    );
    let batches = read(
        &mut sampled,
        "SELECT count(*) FROM xtask_backfill_batch_log",
    );
    assert!(
        text(&batches.rows[0][0]).parse::<u64>().unwrap() > 10,
        "the sample crosses many batch boundaries"
    );
}

/// On PostgreSQL, a run of several ranges cuts them where the key's histogram says the rows
/// are; a run of one range reads no histogram (the costliest of the catalog reads), and its
/// estimate is otherwise the same.
#[test]
fn the_key_s_histogram_is_read_only_to_split_into_ranges() {
    let mut db = db(Engine::Postgres, "id", BIGINT, "");
    // Keys crowd at the low end: squares of 1..1,000.
    db.execute("INSERT INTO items (id) SELECT g * g FROM generate_series(1, 1000) AS g");
    db.execute("ANALYZE items");
    let with = db
        .store
        .estimate("items", "id", KeyKind::Integer, true)
        .unwrap();
    let without = db
        .store
        .estimate("items", "id", KeyKind::Integer, false)
        .unwrap();
    assert!(with.histogram.len() > 10, "{with:?}");
    assert!(without.histogram.is_empty(), "{without:?}");
    assert_eq!(
        (with.rows, &with.source, with.key_indexed),
        (without.rows, &without.source, without.key_indexed)
    );

    let four = Settings {
        ranges: 4,
        ..settings(100)
    };
    let report = db.run(&migration("id", ""), &four, None).unwrap();
    assert_eq!((report.finish, report.rows), (Finish::Done, 1000));
    let uppers: Vec<i64> = db
        .store
        .backend()
        .query("SELECT upper_key::bigint FROM xtask_backfill_ranges WHERE upper_key IS NOT NULL ORDER BY ord")
        .unwrap()
        .rows
        .iter()
        .map(|r| match &r[0] {
            Cell::Number(n) => n.parse().unwrap(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(uppers.len(), 3, "{uppers:?}");
    // About the squares of 250, 500 and 750; an even split of the key's span would cut at
    // 250,000, 500,000 and 750,000.
    assert!(uppers[0] < 100_000 && uppers[1] < 400_000, "{uppers:?}");
}
