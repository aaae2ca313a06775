//! `backfill verify` against a real PostgreSQL server the tests start: each category of
//! difference planted on purpose is found and named exactly, a correct table verifies clean while
//! another session writes to it, re-reads keep to their rate limit, the kill switch stops and
//! keeps its evidence, values appear only with `--show-values`, and no password appears
//! anywhere.

use std::io::Read;
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use postgres::{Client, NoTls};
use xtask_migrate::cli::backfill::BackfillCommand;
use xtask_migrate::config::Config;

use crate::support::{bin, write};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: BackfillCommand,
}

/// Runs `backfill ARGS` in this process: `(exit code, stdout)` or the error.
fn command(config: &Config, args: &[&str]) -> (Result<ExitCode, String>, String) {
    let cli = Cli::try_parse_from(std::iter::once("backfill").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    let mut out = Vec::new();
    let result = match cli.command {
        BackfillCommand::Verify(a) => a.run_to(config, &mut out),
        BackfillCommand::Status(a) => a.run_to(config, &mut out),
        BackfillCommand::Pause(a) => a.run_to(config, &mut out),
        BackfillCommand::Resume(a) => a.run_to(config, &mut out),
        BackfillCommand::Cancel(a) => a.run_to(config, &mut out),
        BackfillCommand::Pace(a) => a.run_to(config, &mut out),
        other => panic!("not used here: {other:?}"),
    };
    (
        result.map_err(|e| e.to_string()),
        String::from_utf8(out).unwrap(),
    )
}

/// `backfill verify ...` expecting exit `code` (0 or 1); its stdout.
fn verify(config: &Config, url: &str, args: &[&str], code: u8) -> String {
    let mut all = vec!["verify", "V1", "--database-url", url, "--progress", "quiet"];
    all.extend_from_slice(args);
    let (result, out) = command(config, &all);
    match result {
        Ok(c) if c == ExitCode::from(code) => out,
        Ok(c) => panic!("{all:?} exited {c:?}, expected {code}:\n{out}"),
        Err(e) => panic!("{all:?} failed: {e}\n{out}"),
    }
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// The keys of a JSON report: `(key, category, columns)`, sorted by key as a number.
fn keys(report: &serde_json::Value) -> Vec<(i64, String, Vec<String>)> {
    let mut keys: Vec<(i64, String, Vec<String>)> = report["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["key"].as_str().unwrap().parse().unwrap(),
                k["category"].as_str().unwrap().to_string(),
                k["columns"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| c.as_str().unwrap().to_string())
                    .collect(),
            )
        })
        .collect();
    keys.sort();
    keys
}

fn workspace(migration: &str) -> (tempfile::TempDir, Config) {
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("Cargo.toml"),
        "[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n",
    );
    write(&dir.path().join("src/lib.rs"), "");
    let config = Config::defaults(dir.path());
    write(
        &config.data_migrations.join("V1__copy_emails.sql"),
        migration,
    );
    (dir, config)
}

/// A data migration that copies each user's e-mail addresses, in order, from `legacy_emails`
/// to `emails`, with a verification that compares them as ordered lists per user.
const EMAILS: &str = "-- @requires 1
-- @table users
-- @key id
-- @batch-size 100

-- @batch
INSERT INTO emails (user_id, position, email)
SELECT id, 1, 'x' FROM users WHERE id > :lower AND id <= :upper AND false;

-- @snapshot
SELECT count(*) FROM emails;

-- @expected
SELECT user_id, email FROM legacy_emails
WHERE user_id > :lower AND user_id <= :upper ORDER BY user_id, position;

-- @actual
SELECT user_id, email FROM emails
WHERE user_id > :lower AND user_id <= :upper ORDER BY user_id, position;
";

/// `users` 1..=n, two legacy addresses for each user not divisible by 20, copied correctly.
fn emails_db(prefix: &str, users: i64) -> (String, Client) {
    let url = pg_harness::shared().create_database(prefix);
    let mut client = Client::connect(&url, NoTls).unwrap();
    client
        .batch_execute(&format!(
            "CREATE TABLE users (id bigint PRIMARY KEY);
             CREATE TABLE legacy_emails (user_id bigint NOT NULL, position integer NOT NULL, email text, PRIMARY KEY (user_id, position));
             CREATE TABLE emails (user_id bigint NOT NULL, position integer NOT NULL, email text, PRIMARY KEY (user_id, position));
             INSERT INTO users SELECT g FROM generate_series(1, {users}) AS g;
             INSERT INTO legacy_emails
               SELECT u, p, 'user' || u || '.' || p || '@example.com'
               FROM generate_series(1, {users}) AS u, generate_series(1, 2) AS p WHERE u % 20 <> 0;
             INSERT INTO emails SELECT * FROM legacy_emails;
             ANALYZE;"
        ))
        .unwrap();
    (url, client)
}

#[test]
fn each_planted_category_is_found_and_named_exactly() {
    let (url, mut client) = emails_db("verify_categories", 5_000);
    let (_dir, config) = workspace(EMAILS);
    let clean = json(&verify(&config, &url, &["--format", "json"], 0));
    assert_eq!(clean["outcome"], "clean", "{clean}");
    assert_eq!(clean["rows_compared"], 9_500);
    assert_eq!(clean["differences"], 0);
    // A clean table is compared through digests alone: no rows read.
    assert_eq!(clean["rows_read"], 0, "{clean}");

    client
        .batch_execute(
            "DELETE FROM emails WHERE user_id = 101;                                      -- missing
             INSERT INTO emails VALUES (1220, 1, 'new@example.com');                      -- extra (1220 has none)
             UPDATE emails SET email = 'changed@example.com' WHERE user_id = 2345 AND position = 2;  -- value
             INSERT INTO emails VALUES (3001, 3, 'third@example.com');                    -- length
             UPDATE emails SET position = position + 10 WHERE user_id = 4002;             -- order
             UPDATE emails SET position = 13 - position WHERE user_id = 4002;
             INSERT INTO emails VALUES (5003, 1, 'past@example.com');                     -- extra, past the last user",
        )
        .unwrap();
    let report = json(&verify(
        &config,
        &url,
        &["--format", "json", "--recheck-delay", "0"],
        1,
    ));
    assert_eq!(
        keys(&report),
        vec![
            (101, "missing".into(), vec![]),
            (1220, "extra".into(), vec![]),
            (2345, "value".into(), vec!["email".into()]),
            (3001, "length".into(), vec![]),
            (4002, "order".into(), vec![]),
            (5003, "extra".into(), vec![]),
        ],
        "{report}"
    );
    assert_eq!(report["outcome"], "differences");
    assert_eq!(report["differences"], 6);
    assert_eq!(
        report["by_category"],
        serde_json::json!({"extra": 2, "length": 1, "missing": 1, "order": 1, "value": 1})
    );
    assert_eq!(
        (report["unconfirmed"].clone(), report["cleared"].clone()),
        (0.into(), 0.into())
    );
    // Narrowed: a few small ranges read, not the table.
    assert!(report["rows_read"].as_u64().unwrap() < 2_000, "{report}");

    // The human summary: keys and columns.
    let text = verify(&config, &url, &["--recheck-delay", "0"], 1);
    assert!(
        text.contains("6 differences (extra 2, length 1, missing 1, order 1, value 1)"),
        "{text}"
    );
    assert!(text.contains("  value    key 2345: email\n"), "{text}");
    assert!(text.contains("  order    key 4002\n"), "{text}");
}

/// One row per key, unordered: the value category names exactly the columns that differ.
#[test]
fn a_value_difference_names_its_columns_and_values_need_show_values() {
    let url = pg_harness::shared().create_database("verify_values");
    let mut client = Client::connect(&url, NoTls).unwrap();
    client
        .batch_execute(
            "CREATE TABLE profiles (id bigint PRIMARY KEY, display text, bio text, score numeric);
             CREATE TABLE legacy_profiles (id bigint PRIMARY KEY, display text, bio text, score numeric);
             INSERT INTO legacy_profiles SELECT g, 'User ' || g, NULL, g * 1.5 FROM generate_series(1, 3000) AS g;
             INSERT INTO profiles SELECT * FROM legacy_profiles;
             UPDATE profiles SET bio = 'SECRET-BIO-7731' WHERE id = 77;
             UPDATE profiles SET display = 'SECRET-NAME-1999', score = 0 WHERE id = 1999;
             UPDATE profiles SET display = '' WHERE id = 2500;",
        )
        .unwrap();
    let (_dir, config) = workspace(
        "-- @requires 1
-- @table profiles
-- @key id
-- @batch
UPDATE profiles SET bio = bio WHERE id > :lower AND id <= :upper;
-- @snapshot
SELECT count(*) FROM profiles;
-- @expected
SELECT id, display, bio, score FROM legacy_profiles WHERE id > :lower AND id <= :upper;
-- @actual
SELECT id, display, bio, score FROM profiles WHERE id > :lower AND id <= :upper;
",
    );
    let args = ["--recheck-delay", "0"];
    let report = json(&verify(
        &config,
        &url,
        &[&args[..], &["--format", "json"]].concat(),
        1,
    ));
    assert_eq!(
        keys(&report),
        vec![
            (77, "value".into(), vec!["bio".into()]),
            (1999, "value".into(), vec!["display".into(), "score".into()]),
            // NULL is not the empty string... and 'User 2500' is not '' either.
            (2500, "value".into(), vec!["display".into()]),
        ]
    );
    let text = verify(&config, &url, &args, 1);
    let json_text = verify(
        &config,
        &url,
        &[&args[..], &["--format", "json"]].concat(),
        1,
    );
    for out in [&text, &json_text] {
        assert!(
            !out.contains("SECRET-"),
            "a value without --show-values:\n{out}"
        );
        assert!(
            !out.contains("User 77"),
            "a value without --show-values:\n{out}"
        );
    }
    assert!(text.contains("add --show-values"), "{text}");
    // Nothing of the rows is stored in the tracking tables either.
    for row in client
        .query("SELECT t::text FROM xtask_backfill_diffs AS t", &[])
        .unwrap()
    {
        let row: String = row.get(0);
        assert!(!row.contains("SECRET-") && !row.contains("User "), "{row}");
    }
    let shown = verify(&config, &url, &[&args[..], &["--show-values"]].concat(), 1);
    assert!(
        shown.contains("    expected 77 | User 77 | NULL | 115.5\n"),
        "{shown}"
    );
    assert!(
        shown.contains("    actual   77 | User 77 | SECRET-BIO-7731 | 115.5\n"),
        "{shown}"
    );
    assert!(shown.contains("SECRET-NAME-1999"), "{shown}");
    let shown = json(&verify(
        &config,
        &url,
        &[&args[..], &["--show-values", "--format", "json"]].concat(),
        1,
    ));
    assert_eq!(shown["values_shown"], true);
    assert_eq!(
        shown["keys"][0]["actual"],
        serde_json::json!([["77", "User 77", "SECRET-BIO-7731", "115.5"]])
    );
}

/// A correct counter cache verifies clean while the application keeps writing: new events,
/// deleted ones, new counters, each with its counter in the same transaction.
#[test]
fn a_correct_table_verifies_clean_while_another_session_writes() {
    let url = pg_harness::shared().create_database("verify_writes");
    let mut client = Client::connect(&url, NoTls).unwrap();
    client
        .batch_execute(
            "CREATE TABLE counters (id bigint PRIMARY KEY, n bigint NOT NULL);
             CREATE TABLE events (id bigserial PRIMARY KEY, counter_id bigint NOT NULL);
             CREATE INDEX ON events (counter_id);
             INSERT INTO counters SELECT g, 0 FROM generate_series(1, 20000) AS g;
             INSERT INTO events (counter_id) SELECT 1 + (g * 7919) % 20000 FROM generate_series(1, 60000) AS g;
             UPDATE counters SET n = (SELECT count(*) FROM events WHERE counter_id = counters.id);
             ANALYZE;",
        )
        .unwrap();
    let (_dir, config) = workspace(
        "-- @requires 1
-- @table counters
-- @key id
-- @batch-size 500
-- @batch
UPDATE counters SET n = (SELECT count(*) FROM events WHERE counter_id = counters.id) WHERE id > :lower AND id <= :upper;
-- @snapshot
SELECT sum(n) FROM counters;
-- @expected
SELECT c.id, (SELECT count(*) FROM events AS e WHERE e.counter_id = c.id) AS n FROM counters AS c WHERE c.id > :lower AND c.id <= :upper;
-- @actual
SELECT id, n FROM counters WHERE id > :lower AND id <= :upper;
",
    );
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, url) = (stop.clone(), url.clone());
        std::thread::spawn(move || {
            let mut c = Client::connect(&url, NoTls).unwrap();
            let mut writes = 0u64;
            let mut next_counter = 20_001i64;
            while !stop.load(Ordering::SeqCst) {
                let k = 1 + (writes as i64 * 104_729) % 20_000;
                let sql = match writes % 4 {
                    0 | 1 => format!(
                        "BEGIN; INSERT INTO events (counter_id) VALUES ({k}); UPDATE counters SET n = n + 1 WHERE id = {k}; COMMIT;"
                    ),
                    2 => format!(
                        "BEGIN; UPDATE counters SET n = n - 1 WHERE id = (SELECT counter_id FROM events WHERE counter_id = {k} LIMIT 1);
                         DELETE FROM events WHERE id = (SELECT id FROM events WHERE counter_id = {k} LIMIT 1); COMMIT;"
                    ),
                    _ => {
                        next_counter += 1;
                        format!(
                            "BEGIN; INSERT INTO counters VALUES ({next_counter}, 1); INSERT INTO events (counter_id) VALUES ({next_counter}); COMMIT;"
                        )
                    }
                };
                c.batch_execute(&sql).unwrap();
                writes += 1;
            }
            writes
        })
    };
    let report = json(&verify(
        &config,
        &url,
        &["--format", "json", "--batch-size", "200", "--pause", "5ms"],
        0,
    ));
    stop.store(true, Ordering::SeqCst);
    let writes = writer.join().unwrap();
    assert!(writes > 50, "the writer wrote {writes} times only");
    assert_eq!(report["outcome"], "clean", "{report}");
    assert_eq!(report["differences"], 0);
    assert!(
        report["rows_compared"].as_u64().unwrap() >= 20_000,
        "{report}"
    );
}

/// Twelve differences in twelve ranges far apart, re-read at most 3 per 2 seconds.
#[test]
fn re_reads_keep_to_their_rate_limit() {
    let (url, mut client) = emails_db("verify_rate", 6_000);
    let (_dir, config) = workspace(EMAILS);
    client
        .batch_execute(
            "UPDATE emails SET email = 'changed' WHERE position = 1 AND user_id IN (SELECT g * 499 FROM generate_series(1, 12) AS g);",
        )
        .unwrap();
    let started = Instant::now();
    let report = json(&verify(
        &config,
        &url,
        &[
            "--format",
            "json",
            "--recheck-delay",
            "0",
            "--recheck-limit",
            "3/2s",
        ],
        1,
    ));
    let elapsed = started.elapsed();
    assert_eq!(report["differences"], 12, "{report}");
    assert_eq!(report["rechecks"], 12, "{report}");
    // Four windows of three: at least three full windows waited.
    assert!(elapsed >= Duration::from_secs(6), "{elapsed:?}");
    assert!(
        report["rate_limited_seconds"].as_f64().unwrap() > 0.0,
        "{report}"
    );
    // When each was re-read, by the database's clock: fixed windows of 2s hold at most 3, so any
    // 7 consecutive re-reads span more than a window.
    let times: Vec<f64> = client
        .query(
            "SELECT extract(epoch FROM checked_at)::float8 FROM xtask_backfill_diffs ORDER BY checked_at",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(times.len(), 12);
    for window in times.windows(7) {
        assert!(window[6] - window[0] >= 2.0, "{times:?}");
    }
}

#[test]
fn the_kill_switch_stops_and_keeps_the_evidence() {
    let (url, mut client) = emails_db("verify_kill", 6_000);
    let (_dir, config) = workspace(EMAILS);
    client
        .batch_execute(
            "DELETE FROM emails WHERE user_id IN (SELECT g * 250 + 1 FROM generate_series(0, 19) AS g);",
        )
        .unwrap();
    let report = json(&verify(
        &config,
        &url,
        &[
            "--format",
            "json",
            "--recheck-delay",
            "0",
            "--max-mismatches",
            "5",
            "--batch-size",
            "250",
        ],
        1,
    ));
    assert_eq!(report["outcome"], "stopped", "{report}");
    let confirmed = report["differences"].as_u64().unwrap();
    assert!((5..20).contains(&confirmed), "{report}");
    assert!(
        report["stopped"]
            .as_str()
            .unwrap()
            .contains("(--max-mismatches 5)"),
        "{report}"
    );
    // The run is marked failed with the reason; the differences stay recorded.
    let row = client
        .query_one(
            "SELECT state, last_error FROM xtask_backfill_runs WHERE migration = 'V1__copy_emails:verify'",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "failed");
    assert!(row.get::<_, String>(1).contains("kill switch"));
    let kept: i64 = client
        .query_one("SELECT count(*) FROM xtask_backfill_diffs", &[])
        .unwrap()
        .get(0);
    assert!(kept as u64 >= confirmed);
    let status = command(&config, &["status", "--database-url", &url]).1;
    assert!(status.contains("verification run 1: failed"), "{status}");
    // Verifying again with a higher limit resumes where it stopped and finds the rest.
    let report = json(&verify(
        &config,
        &url,
        &[
            "--format",
            "json",
            "--recheck-delay",
            "0",
            "--max-mismatches",
            "100",
        ],
        1,
    ));
    assert_eq!(report["outcome"], "differences", "{report}");
    assert_eq!(report["differences"], 20, "{report}");
    assert_eq!(report["run_id"], 1);
    // A kill switch on the error rate: 20 of 11,400 rows is more than 0.1%.
    let report = json(&verify(
        &config,
        &url,
        &[
            "--format",
            "json",
            "--recheck-delay",
            "0",
            "--max-mismatch-rate",
            "0.001",
        ],
        1,
    ));
    assert_eq!(report["outcome"], "stopped", "{report}");
    assert!(
        report["stopped"]
            .as_str()
            .unwrap()
            .contains("--max-mismatch-rate"),
        "{report}"
    );
    assert_eq!(report["run_id"], 2, "a done verification starts over");
}

/// Control like a run: pause, resume and cancel by the verification's name, and `--max-batches`
/// for a subset first.
#[test]
fn a_verification_is_controlled_and_resumed_like_a_run() {
    let (url, _client) = emails_db("verify_control", 3_000);
    let (_dir, config) = workspace(EMAILS);
    let first = json(&verify(
        &config,
        &url,
        &[
            "--format",
            "json",
            "--max-batches",
            "3",
            "--batch-size",
            "100",
            "--pause",
            "0",
        ],
        1,
    ));
    assert_eq!(first["outcome"], "interrupted", "{first}");
    let rows = first["rows_compared"].as_u64().unwrap();
    assert!(rows > 0 && rows < 5_700, "{first}");
    let (result, out) = command(&config, &["pause", "V1:verify", "--database-url", &url]);
    assert_eq!(result, Ok(ExitCode::SUCCESS), "{out}");
    assert!(
        out.contains("V1__copy_emails:verify: running -> paused"),
        "{out}"
    );
    let (result, out) = command(
        &config,
        &["resume", "copy_emails:verify", "--database-url", &url],
    );
    assert_eq!(result, Ok(ExitCode::SUCCESS), "{out}");
    // `V1` alone is the data migration's own run, which never ran here.
    let (result, _) = command(&config, &["pause", "V1", "--database-url", &url]);
    assert!(result.unwrap_err().contains("no run of `V1` is recorded"));
    let done = json(&verify(&config, &url, &["--format", "json"], 0));
    assert_eq!(
        (done["outcome"].clone(), done["run_id"].clone()),
        ("clean".into(), 1.into())
    );
    assert_eq!(
        done["rows_compared"], 5_700,
        "resumed, every row counted once: {done}"
    );
    let status = command(
        &config,
        &["status", "--database-url", &url, "--format", "json"],
    )
    .1;
    let status = json(&status);
    let entry = &status["data_migrations"][0];
    assert_eq!(entry["runs"][0]["state"], "not_run");
    assert_eq!(entry["verifications"][0]["state"], "done", "{status}");
    // A done verification starts over; a cancelled one too, and says so.
    let again = json(&verify(
        &config,
        &url,
        &["--format", "json", "--max-batches", "1"],
        1,
    ));
    assert_eq!(
        (again["outcome"].clone(), again["run_id"].clone()),
        ("interrupted".into(), 2.into())
    );
    let (result, out) = command(&config, &["cancel", "V1:verify", "--database-url", &url]);
    assert_eq!(result, Ok(ExitCode::SUCCESS), "{out}");
    assert!(
        out.contains("`backfill verify` starts a new verification"),
        "{out}"
    );
    assert!(!out.contains("--restart"), "{out}");
    let text = command(&config, &["status", "--database-url", &url]).1;
    assert!(text.contains("  verification run 2: cancelled"), "{text}");
    assert!(!text.contains("--restart"), "{text}");
    let third = json(&verify(&config, &url, &["--format", "json"], 0));
    assert_eq!(
        (third["outcome"].clone(), third["run_id"].clone()),
        ("clean".into(), 3.into())
    );
}

#[test]
fn the_password_never_appears_anywhere() {
    const SECRET: &str = "hunter2-Verify5ecret";
    let (plain, mut client) = emails_db("verify_secret", 500);
    client
        .batch_execute("UPDATE emails SET email = 'x' WHERE user_id = 7 AND position = 1")
        .unwrap();
    // Trust authentication accepts any password: the URL carries one like production's would.
    let url = plain.replace("postgres@", &format!("postgres:{SECRET}@"));
    assert_ne!(url, plain);
    let (dir, config) = workspace(EMAILS);
    let mut seen = String::new();
    // The real binary, progress lines on stderr.
    let mut child = Command::new(bin())
        .current_dir(dir.path())
        .args([
            "backfill",
            "verify",
            "V1",
            "--recheck-delay",
            "0",
            "--progress",
            "lines",
            "--against-url",
            &url,
        ])
        .env("DATABASE_URL", &url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = child.wait().unwrap();
    let (mut out, mut errors) = (String::new(), String::new());
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut errors)
        .unwrap();
    assert_eq!(status.code(), Some(1), "{out}{errors}");
    assert!(out.contains("value    key 7: email"), "{out}");
    seen.push_str(&out);
    seen.push_str(&errors);
    seen.push_str(&verify(
        &config,
        &url,
        &["--format", "json", "--against-url", &url],
        1,
    ));
    // Errors: an expected side that is not there, a malformed one.
    let dead = url.replace(&format!(":{}/", pg_harness::shared().port()), ":1/");
    seen.push_str(
        &command(
            &config,
            &[
                "verify",
                "V1",
                "--database-url",
                &url,
                "--against-url",
                &dead,
            ],
        )
        .0
        .unwrap_err(),
    );
    seen.push_str(
        &command(&config, &["verify", "V1", "--database-url", &dead])
            .0
            .unwrap_err(),
    );
    seen.push_str(
        &command(
            &config,
            &[
                "verify",
                "V1",
                "--database-url",
                &format!("postgres://u:{SECRET}@[::1/x"),
            ],
        )
        .0
        .unwrap_err(),
    );
    seen.push_str(&command(&config, &["status", "--database-url", &url]).1);
    for table in [
        "xtask_backfill_runs",
        "xtask_backfill_ranges",
        "xtask_backfill_diffs",
    ] {
        for row in client
            .query(&format!("SELECT t::text FROM {table} AS t"), &[])
            .unwrap()
        {
            seen.push_str(&row.get::<_, String>(0));
        }
    }
    assert!(seen.contains("cannot connect"), "{seen}");
    assert!(!seen.contains(SECRET), "the password leaked:\n{seen}");
    assert!(
        !seen.contains("hunter2"),
        "part of the password leaked:\n{seen}"
    );
}

#[test]
fn a_data_migration_without_a_verification_says_how_to_add_one() {
    let url = pg_harness::shared().create_database("verify_none");
    let (_dir, config) = workspace(&EMAILS[..EMAILS.find("-- @expected").unwrap()]);
    let (result, _) = command(&config, &["verify", "V1", "--database-url", &url]);
    let e = result.unwrap_err();
    assert!(
        e.contains("V1__copy_emails has no verification: add an `-- @expected` query"),
        "{e}"
    );
}

/// The expected side on another database (`--against-url`): a move from an old database to a
/// new one, compared table to table.
#[test]
fn the_expected_rows_may_come_from_another_database() {
    let old = pg_harness::shared().create_database("verify_old");
    let new = pg_harness::shared().create_database("verify_new");
    for (url, extra) in [
        (&old, ""),
        (
            &new,
            "UPDATE accounts SET plan = 'pro' WHERE id = 4242; DELETE FROM accounts WHERE id = 17;",
        ),
    ] {
        Client::connect(url, NoTls)
            .unwrap()
            .batch_execute(&format!(
                "CREATE TABLE accounts (id bigint PRIMARY KEY, plan text NOT NULL);
                 INSERT INTO accounts SELECT g, 'free' FROM generate_series(1, 10000) AS g;
                 {extra}"
            ))
            .unwrap();
    }
    let (_dir, config) = workspace(
        "-- @requires 1
-- @table accounts
-- @key id
-- @batch
UPDATE accounts SET plan = plan WHERE id > :lower AND id <= :upper;
-- @snapshot
SELECT count(*) FROM accounts;
-- @expected
SELECT id, plan FROM accounts WHERE id > :lower AND id <= :upper;
-- @actual
SELECT id, plan FROM accounts WHERE id > :lower AND id <= :upper;
",
    );
    // Against itself: nothing differs.
    let same = json(&verify(
        &config,
        &new,
        &["--format", "json", "--against-url", &new],
        0,
    ));
    assert_eq!(same["outcome"], "clean", "{same}");
    let report = json(&verify(
        &config,
        &new,
        &[
            "--format",
            "json",
            "--recheck-delay",
            "0",
            "--against-url",
            &old,
        ],
        1,
    ));
    assert_eq!(
        keys(&report),
        vec![
            (17, "missing".into(), vec![]),
            (4242, "value".into(), vec!["plan".into()]),
        ],
        "{report}"
    );
    let against = report["against"].as_str().unwrap();
    assert!(
        against.starts_with("PostgreSQL 127.0.0.1:") && against.contains("/verify_old"),
        "{against}"
    );
    // A SQLite file cannot be the expected side of a PostgreSQL verification.
    let (result, _) = command(
        &config,
        &[
            "verify",
            "V1",
            "--database-url",
            &new,
            "--against-url",
            "sqlite:///tmp/none.db",
        ],
    );
    assert!(
        result
            .unwrap_err()
            .contains("both sides of a verification are the same kind of database"),
    );
}
