//! Benchmark: `migrate lint --estimate`'s duration ranges against the statements run, on the
//! same PostgreSQL server (one the benchmark starts), in the same run.
//!
//! `cargo run --release --example bench_estimate [-- --rows N] [--rounds N]`
//! (default 1,000,000 rows, 1 round)
//!
//! A table of N rows (`id bigint PRIMARY KEY`, an indexed `n int`, an `email text`, a
//! `created_at timestamptz`), filled with generate_series and analyzed. For each statement below,
//! on a fresh copy of that table: a migration holding only that statement is linted with the
//! estimate (the library's `lint_paths` and `estimate::annotate`, what `migrate lint --estimate`
//! runs), then the statement runs and is timed. Printed per statement: the estimate's range, the
//! measured time, whether it falls inside the range and its ratio to the range's geometric middle.
//! The acceptance figure is the UPDATE of every row: measured within 3x of the estimate.

use std::path::PathBuf;
use std::time::Instant;

use pg_harness::PgServer;
use postgres::{Client, NoTls};
use xtask_migrate::lint::estimate::{self, pg::PgCatalog};
use xtask_migrate::lint::{self, LintOptions};
use xtask_migrate::sql::Dialect;

type BoxError = Box<dyn std::error::Error>;

/// (what, statement, the rule whose finding carries the estimate)
const STATEMENTS: &[(&str, &str, &str)] = &[
    (
        "UPDATE every row",
        "UPDATE users SET n = n + 1",
        "backfill-update",
    ),
    (
        "DELETE half the rows",
        "DELETE FROM users WHERE id <= {half}",
        "backfill-delete",
    ),
    (
        "SET NOT NULL (scan)",
        "ALTER TABLE users ALTER COLUMN email SET NOT NULL",
        "set-not-null",
    ),
    (
        "CREATE INDEX",
        "CREATE INDEX users_email ON users (email)",
        "index-not-concurrent",
    ),
    (
        "type change (rewrite)",
        "ALTER TABLE users ALTER COLUMN n TYPE bigint",
        "backfill-alter-column-type",
    ),
];

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str, default: usize| -> Result<usize, BoxError> {
        match args.iter().position(|a| a == name) {
            Some(i) => Ok(args
                .get(i + 1)
                .ok_or(format!("{name} needs a value"))?
                .replace([',', '_'], "")
                .parse()?),
            None => Ok(default),
        }
    };
    let rows = flag("--rows", 1_000_000)?;
    let rounds = flag("--rounds", 1)?.max(1);

    let server = PgServer::start()?;
    let url = server.create_database("bench_estimate");
    let mut client = Client::connect(&url, NoTls)?;
    client.batch_execute(&format!(
        "CREATE TABLE template (id bigint PRIMARY KEY, n int NOT NULL, email text,
                                created_at timestamptz NOT NULL);
         INSERT INTO template
         SELECT g, g % 100, 'user' || g || '@example.com',
                timestamptz '2024-01-01' + g * interval '1 minute'
           FROM generate_series(1, {rows}) g;
         CREATE INDEX template_n ON template (n);"
    ))?;
    let dir = tempfile::tempdir()?;
    let migration = dir.path().join("V2__statement.sql");
    println!("{rows} rows, {rounds} round(s)");
    println!(
        "{:<24} {:>12} {:>18} {:>10} {:>7} {:>6}",
        "statement", "bytes", "estimate (s)", "measured", "inside", "ratio"
    );
    let mut update_ok = true;
    for round in 1..=rounds {
        for &(what, statement, rule) in STATEMENTS {
            client.batch_execute(
                "DROP TABLE IF EXISTS users;
                 CREATE TABLE users (LIKE template INCLUDING ALL);
                 INSERT INTO users SELECT * FROM template;",
            )?;
            // Separate calls: VACUUM cannot run in the implicit transaction of a batch.
            client.batch_execute("VACUUM ANALYZE users")?;
            client.batch_execute("CHECKPOINT")?;
            let statement = &statement.replace("{half}", &(rows / 2).to_string());
            std::fs::write(&migration, format!("{statement};\n"))?;
            let mut report =
                lint::lint_paths(&[PathBuf::from(&migration)], &LintOptions::default())?;
            let mut catalog = PgCatalog::connect(&url)?;
            estimate::annotate(&mut report, Dialect::Postgres, &mut catalog)?;
            catalog.finish()?;
            let e = report
                .findings()
                .find(|(_, f)| f.rule.as_str() == rule)
                .and_then(|(_, f)| f.estimate.clone())
                .ok_or(format!("no {rule} estimate for {statement}"))?;
            let (low, high) = e
                .seconds_low
                .zip(e.seconds_high)
                .ok_or(format!("no duration for {statement}: {}", e.text))?;

            let started = Instant::now();
            client.batch_execute(statement)?;
            let measured = started.elapsed().as_secs_f64();
            let inside = low <= measured && measured <= high;
            let ratio = measured / (low * high).sqrt();
            println!(
                "{:<24} {:>9.0} MB {:>8.2}-{:<9.2} {:>8.2} s {:>7} {:>5.2}x",
                what,
                e.bytes.unwrap_or(0) as f64 / 1e6,
                low,
                high,
                measured,
                if inside { "yes" } else { "no" },
                ratio
            );
            if rule == "backfill-update" {
                let within = low / 3.0 <= measured && measured <= high * 3.0;
                update_ok &= within;
                println!(
                    "  round {round}: UPDATE of {rows} rows estimated {low:.1}-{high:.1} s, measured {measured:.1} s: {} 3x of the estimate ({})",
                    if within { "within" } else { "NOT within" },
                    e.text
                );
            }
        }
    }
    if !update_ok {
        return Err("the UPDATE's measured time was not within 3x of its estimate".into());
    }
    Ok(())
}
