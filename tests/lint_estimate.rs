//! `migrate lint --estimate` against a real PostgreSQL server the tests start themselves: the
//! figures it gives, what it says when it cannot know, that it changes nothing, and its estimate
//! of an inline UPDATE of 1,000,000 rows against the time that UPDATE really takes.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Instant;

use postgres::{Client, NoTls};
use serde_json::Value;

use crate::support::{bin, write};

const PASSWORD: &str = "estimate-hunter2";

/// The test server's URL for `db` with a password in it (the server trusts every login, so the
/// password only shows whether it leaks).
fn with_password(url: &str) -> String {
    url.replace("postgres@", &format!("postgres:{PASSWORD}@"))
}

fn lint(dir: &Path, url: &str, args: &[&str]) -> Output {
    let out = Command::new(bin())
        .current_dir(dir)
        .args(["migrate", "lint", "--estimate", "--database-url", url])
        .args(args)
        .env_remove("CI")
        .output()
        .expect("run xtask-migrate");
    for stream in [&out.stdout, &out.stderr] {
        assert!(
            !String::from_utf8_lossy(stream).contains(PASSWORD),
            "the password was printed: {out:?}"
        );
    }
    out
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// The estimate of the finding of `rule` on 1-based `line`.
fn estimate<'a>(doc: &'a Value, rule: &str, line: u64) -> &'a Value {
    doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rule"] == rule && f["line"] == line)
        .unwrap_or_else(|| panic!("no {rule} on line {line}: {doc:#}"))
        .get("estimate")
        .unwrap_or_else(|| panic!("no estimate for {rule} on line {line}: {doc:#}"))
}

/// The acceptance measurement: the estimate of an inline UPDATE of every row of a
/// 1,000,000-row table, against the UPDATE run on that table right after. Prints both.
#[test]
fn the_estimate_of_a_million_row_update_is_within_3x_of_the_measured_time() {
    let url = pg_harness::shared().create_database("estimate_million");
    let mut client = Client::connect(&url, NoTls).unwrap();
    client
        .batch_execute(
            "CREATE TABLE users (id bigint PRIMARY KEY, n int NOT NULL, email text,
                                 created_at timestamptz NOT NULL);
             INSERT INTO users
             SELECT g, g % 100, 'user' || g || '@example.com',
                    timestamptz '2024-01-01' + g * interval '1 minute'
               FROM generate_series(1, 1000000) g;
             CREATE INDEX users_n ON users (n);
             ANALYZE users;
             CHECKPOINT;",
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let statement = "UPDATE users SET n = n + 1";
    write(
        &dir.path().join("migrations/V2__bump.sql"),
        &format!("{statement};\n"),
    );

    let out = lint(
        dir.path(),
        &with_password(&url),
        &["--format", "json", "migrations"],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let doc = json(&out);
    let e = estimate(&doc, "backfill-update", 1);
    assert_eq!(e["exists"], true, "{e:#}");
    assert_eq!(e["table"], "public.users", "{e:#}");
    assert_eq!(e["work"], "update", "{e:#}");
    assert_eq!(e["locks"][0]["mode"], "ROW EXCLUSIVE", "{e:#}");
    assert_eq!(e["row_locks"], true, "{e:#}");
    assert_eq!(e["indexes"], 2, "{e:#}");
    let rows = e["rows"].as_f64().unwrap();
    assert!((950_000.0..=1_050_000.0).contains(&rows), "{e:#}");
    let low = e["seconds_low"].as_f64().unwrap();
    let high = e["seconds_high"].as_f64().unwrap();
    assert!(0.0 < low && low < high, "{e:#}");

    // Nothing was written: the estimate only read.
    let untouched: i64 = client
        .query_one("SELECT count(*) FROM users WHERE n <> id % 100", &[])
        .unwrap()
        .get(0);
    assert_eq!(untouched, 0);

    let started = Instant::now();
    let updated = client.execute(statement, &[]).unwrap();
    let measured = started.elapsed().as_secs_f64();
    assert_eq!(updated, 1_000_000);
    println!(
        "UPDATE of 1,000,000 rows: estimated {low:.1}-{high:.1} s ({}), measured {measured:.1} s",
        e["text"].as_str().unwrap()
    );
    assert!(
        low / 3.0 <= measured && measured <= high * 3.0,
        "measured {measured:.1} s is not within 3x of the estimate {low:.1}-{high:.1} s"
    );
}

/// A filtered UPDATE counts the planner's rows; a table the target does not have, a statement
/// the target cannot plan and a table never analyzed are said plainly; a foreign key locks both
/// tables; every format carries the estimate.
#[test]
fn estimates_say_where_their_rows_come_from_and_what_they_cannot_know() {
    let url = pg_harness::shared().create_database("estimate_cases");
    let mut client = Client::connect(&url, NoTls).unwrap();
    client
        .batch_execute(
            "CREATE TABLE accounts (id bigint PRIMARY KEY, email text);
             INSERT INTO accounts
             SELECT g, CASE WHEN g % 10 = 0 THEN NULL ELSE 'a' || g END
               FROM generate_series(1, 20000) g;
             ANALYZE accounts;
             CREATE TABLE orders (id bigint PRIMARY KEY, account_id bigint, note text)
               WITH (autovacuum_enabled = false);
             INSERT INTO orders SELECT g, g % 20000 + 1, 'x' FROM generate_series(1, 20000) g;",
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("migrations/V1__create.sql"),
        "CREATE TABLE invoices (id bigint PRIMARY KEY, paid boolean);\n",
    );
    write(
        &dir.path().join("migrations/V2__changes.sql"),
        "UPDATE accounts SET email = '' WHERE email IS NULL;
ALTER TABLE accounts ADD COLUMN verified boolean;
UPDATE accounts SET verified = true WHERE verified IS NULL;
UPDATE invoices SET paid = false;
ALTER TABLE orders ALTER COLUMN note SET NOT NULL;
ALTER TABLE orders ADD CONSTRAINT orders_account FOREIGN KEY (account_id) REFERENCES accounts (id);
",
    );
    let url = with_password(&url);
    let out = lint(dir.path(), &url, &["--format", "json", "migrations"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let doc = json(&out);

    // 10% of the rows have no email: the planner's estimate, not the whole table.
    let filtered = estimate(&doc, "backfill-update", 1);
    assert_eq!(filtered["rows_from"], "planner", "{filtered:#}");
    let rows = filtered["rows"].as_f64().unwrap();
    assert!((1_000.0..=4_000.0).contains(&rows), "{filtered:#}");
    assert_eq!(filtered["table_rows"], 20000.0, "{filtered:#}");

    // `verified` does not exist on the target yet: the whole table, as an upper bound.
    let unplanned = estimate(&doc, "backfill-update", 3);
    assert!(
        unplanned["rows_from"]
            .as_str()
            .unwrap()
            .contains("upper bound"),
        "{unplanned:#}"
    );
    assert_eq!(unplanned["rows"], 20000.0, "{unplanned:#}");

    // The migrations create `invoices`; the target does not have it.
    let missing = estimate(&doc, "backfill-update", 4);
    assert_eq!(missing["exists"], false, "{missing:#}");
    assert!(missing.get("seconds_high").is_none(), "{missing:#}");
    assert!(
        missing["text"]
            .as_str()
            .unwrap()
            .contains("invoices does not exist on the target"),
        "{missing:#}"
    );

    // `orders` was never analyzed: its rows come from its size.
    let scan = estimate(&doc, "set-not-null", 5);
    assert_eq!(scan["locks"][0]["mode"], "ACCESS EXCLUSIVE", "{scan:#}");
    assert_eq!(scan["work"], "scan", "{scan:#}");
    assert!(
        scan["rows_from"]
            .as_str()
            .unwrap()
            .contains("never analyzed"),
        "{scan:#}"
    );
    let rows = scan["rows"].as_f64().unwrap();
    assert!((5_000.0..=80_000.0).contains(&rows), "{scan:#}");
    assert!(scan["text"].as_str().unwrap().contains("never analyzed"));

    let fk = estimate(&doc, "constraint-without-not-valid", 6);
    let locks: Vec<(&str, &str)> = fk["locks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["mode"].as_str().unwrap(), l["table"].as_str().unwrap()))
        .collect();
    assert_eq!(
        locks,
        [
            ("SHARE ROW EXCLUSIVE", "public.orders"),
            ("SHARE ROW EXCLUSIVE", "public.accounts")
        ]
    );

    // Nothing changed on the target.
    let nulls: i64 = client
        .query_one("SELECT count(*) FROM accounts WHERE email IS NULL", &[])
        .unwrap()
        .get(0);
    assert_eq!(nulls, 2000);

    // The other formats carry the same estimate.
    let human = lint(
        dir.path(),
        &url,
        &["--format", "human", "--color", "never", "migrations"],
    );
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(
        text.contains(&format!(
            "= estimate: {}",
            filtered["text"].as_str().unwrap()
        )),
        "{text}"
    );
    let github = lint(dir.path(), &url, &["--format", "github", "migrations"]);
    let text = String::from_utf8_lossy(&github.stdout);
    assert!(
        text.contains("estimate: UPDATE of ~") && text.contains("invoices does not exist"),
        "{text}"
    );
    let sarif = json(&lint(
        dir.path(),
        &url,
        &["--format", "sarif", "migrations"],
    ));
    let results = sarif["runs"][0]["results"].as_array().unwrap();
    assert!(
        results
            .iter()
            .any(|r| r["properties"]["estimate"]["text"] == filtered["text"]),
        "{sarif:#}"
    );
}

/// A server that does not answer: one line, exit 2, no password; nothing on stdout.
#[test]
fn an_unreachable_server_is_one_line_and_exit_2() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("migrations/V1__x.sql"),
        "UPDATE users SET n = 0;\n",
    );
    let url = format!("postgres://app:{PASSWORD}@127.0.0.1:{port}/app");
    let out = lint(dir.path(), &url, &["migrations"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: --estimate: cannot connect to postgres://app:***@127.0.0.1:"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "{out:?}");

    // A SQLite URL is refused the same way.
    let out = lint(dir.path(), "sqlite:///tmp/x.db", &["migrations"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("PostgreSQL"),
        "{out:?}"
    );
}

/// A migration that sets `search_path` is estimated as it will run: its unqualified names
/// resolve through that path on the target, and the next file starts from the target's own.
#[test]
fn a_search_path_the_migration_sets_resolves_its_names_on_the_target() {
    let url = pg_harness::shared().create_database("estimate_search_path");
    let mut client = Client::connect(&url, NoTls).unwrap();
    client
        .batch_execute(
            "CREATE SCHEMA app;
             CREATE TABLE app.items (id bigint PRIMARY KEY, n int);
             INSERT INTO app.items SELECT g, 0 FROM generate_series(1, 5000) g;
             ANALYZE app.items;",
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("migrations/V1__in_app.sql"),
        "SET search_path = app;\nUPDATE items SET n = 1;\n",
    );
    write(
        &dir.path().join("migrations/V2__default_path.sql"),
        "UPDATE items SET n = 2;\n",
    );
    let out = lint(
        dir.path(),
        &with_password(&url),
        &["--format", "json", "migrations"],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let doc = json(&out);

    let in_app = estimate(&doc, "backfill-update", 2);
    assert_eq!(in_app["exists"], true, "{in_app:#}");
    assert_eq!(in_app["table_rows"], 5000.0, "{in_app:#}");
    assert_eq!(in_app["locks"][0]["table"], "app.items", "{in_app:#}");

    let public = estimate(&doc, "backfill-update", 1);
    assert_eq!(public["exists"], false, "{public:#}");
}
