//! The batch engine: walks a data migration's table in key order and runs its batch statement
//! once per key range `(lower, upper]`, each batch one transaction that also records itself in
//! the tracking table. `backfill sample` and the production runner both drive it.
//!
//! Keyset batching: the upper bound of a batch is the key `batch_size` rows past the lower one,
//! read from the table (`ORDER BY key LIMIT 1 OFFSET batch_size - 1`), so gaps and sparse keys
//! still give full batches, and the last batch ends at the largest key. Bounds are never compared
//! in Rust: the database orders integer and text keys with the column's own collation, and the
//! batch statement compares with the same one. The first batch's lower bound is a value below
//! every key (the smallest key minus one, or the empty string for text keys).
//!
//! A run resumes after the last batch its tracking table records for the data migration, and
//! refuses to resume a run recorded from a different version of the file (checksum).

use std::time::{Duration, Instant};

use crate::backfill::db::{Backend, BatchLimits, Checkpoint, KeyKind, KeyValue};
use crate::backfill::error::{Error, ErrorKind, Result};
use crate::backfill::migration::DataMigration;

/// How to run a data migration; `backfill sample` and production differ only here.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineOptions {
    pub batch_size: u64,
    /// Sleep between two batches.
    pub pause: Duration,
    pub limits: BatchLimits,
    /// Stop after this many batches (the rest is left for a resumed run).
    pub max_batches: Option<u64>,
}

impl EngineOptions {
    /// The data migration's own settings.
    pub fn from_migration(migration: &DataMigration) -> EngineOptions {
        EngineOptions {
            batch_size: migration.batch_size.value,
            pause: migration.pause.value,
            limits: BatchLimits::default(),
            max_batches: None,
        }
    }
}

/// One committed batch.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchReport {
    pub batch: u64,
    pub lower: KeyValue,
    pub upper: KeyValue,
    /// Rows the statement changed (what the database reports).
    pub rows: u64,
    pub elapsed: Duration,
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RunReport {
    /// Batches committed by this run.
    pub batches: u64,
    pub rows_changed: u64,
    /// The batch number this run resumed after, when a previous run had committed some.
    pub resumed_after: Option<u64>,
    /// Whether the whole table is done (false when `max_batches` stopped the run).
    pub complete: bool,
    pub elapsed: Duration,
}

/// The key column of a data migration's table, checked against the database's catalog.
pub fn key_kind(backend: &mut dyn Backend, migration: &DataMigration) -> Result<KeyKind> {
    let (table, key) = (&migration.table.value, &migration.key.value);
    let Some(columns) = backend.columns(table)? else {
        return Err(migration.error_at(
            ErrorKind::Statement,
            migration.table.line,
            format!(
                "table `{table}` does not exist in the schema at version {} ({})",
                migration.requires.value,
                backend.describe()
            ),
        ));
    };
    let Some(column) = columns.iter().find(|c| &c.name == key) else {
        let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
        return Err(migration.error_at(
            ErrorKind::Statement,
            migration.key.line,
            format!(
                "table `{table}` has no column `{key}` (it has: {})",
                names.join(", ")
            ),
        ));
    };
    let Some(kind) = column.ty.key_kind() else {
        return Err(migration.error_at(
            ErrorKind::Statement,
            migration.key.line,
            format!(
                "key `{table}.{key}` is of type `{}`; batch keys must be integer or text",
                column.declared
            ),
        ));
    };
    if !column.not_null {
        let nulls = backend.count_null_keys(table, key)?;
        if nulls > 0 {
            return Err(migration.error_at(
                ErrorKind::Statement,
                migration.key.line,
                format!(
                    "{} of `{table}` {} a NULL `{key}`: no batch would ever reach them",
                    crate::backfill::display::count(nulls, "row", "rows"),
                    if nulls == 1 { "has" } else { "have" }
                ),
            ));
        }
    }
    Ok(kind)
}

/// Runs `migration`'s batches on `backend` until the table is done (or `max_batches`), calling
/// `on_batch` after each commit.
pub fn run(
    backend: &mut dyn Backend,
    migration: &DataMigration,
    options: &EngineOptions,
    on_batch: &mut dyn FnMut(&BatchReport),
) -> Result<RunReport> {
    let started = Instant::now();
    if options.batch_size == 0 {
        return Err(Error::new(
            ErrorKind::Format,
            "batch size must be at least 1",
        ));
    }
    backend.apply_limits(&options.limits)?;
    let kind = key_kind(backend, migration)?;
    let (table, key) = (migration.table.value.as_str(), migration.key.value.as_str());
    let id = migration.id();
    backend.ensure_tracking()?;

    let mut report = RunReport::default();
    let (mut lower, mut batch) = match backend.last_batch(&id)? {
        Some(last) => {
            if last.checksum != migration.checksum {
                return Err(Error::file(
                    ErrorKind::Format,
                    &migration.path,
                    format!(
                        "this database records a run of another version of this file (checksum {}, the file's is {}); finish or reset that run before starting this one",
                        short(&last.checksum),
                        short(&migration.checksum)
                    ),
                ));
            }
            let lower = KeyValue::from_stored(kind, &last.upper).ok_or_else(|| {
                Error::new(
                    ErrorKind::Database,
                    format!(
                        "the tracking table holds `{}`, which is not a {kind:?} key",
                        last.upper
                    ),
                )
            })?;
            report.resumed_after = Some(last.batch);
            (lower, last.batch)
        }
        None => match backend.min_key(table, key, kind)? {
            None => {
                report.complete = true;
                report.elapsed = started.elapsed();
                return Ok(report);
            }
            Some(first) => (below(&first, migration)?, 0),
        },
    };

    let sql = migration.batch.sql(backend.dialect()).to_string();
    loop {
        if options.max_batches.is_some_and(|max| report.batches >= max) {
            break;
        }
        let Some(upper) = backend.next_upper(table, key, kind, &lower, options.batch_size)? else {
            report.complete = true;
            break;
        };
        if report.batches > 0 && !options.pause.is_zero() {
            std::thread::sleep(options.pause);
        }
        batch += 1;
        let batch_started = Instant::now();
        let checkpoint = Checkpoint {
            migration: &id,
            checksum: &migration.checksum,
            batch,
        };
        let rows = backend
            .run_batch(&sql, &lower, &upper, &checkpoint, &options.limits)
            .map_err(|e| {
                let line = migration.batch.section.line;
                let message = format!(
                    "batch {batch} on keys ({lower}, {upper}] failed: {}",
                    e.message
                );
                migration
                    .error_at(e.kind, line, message)
                    .transient(e.transient)
            })?;
        report.batches += 1;
        report.rows_changed += rows;
        let batch_report = BatchReport {
            batch,
            lower: std::mem::replace(&mut lower, upper.clone()),
            upper,
            rows,
            elapsed: batch_started.elapsed(),
        };
        on_batch(&batch_report);
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

/// A bound below `first`, the smallest key: the first batch is `(below, upper]`.
fn below(first: &KeyValue, migration: &DataMigration) -> Result<KeyValue> {
    let err = |what: &str| {
        migration.error_at(
            ErrorKind::Statement,
            migration.key.line,
            format!("the smallest key is {what}, which no `key > :lower` bound can include"),
        )
    };
    match first {
        KeyValue::Int(i) => i
            .checked_sub(1)
            .map(KeyValue::Int)
            .ok_or_else(|| err("the smallest 64-bit integer")),
        KeyValue::Text(s) if s.is_empty() => Err(err("the empty string")),
        KeyValue::Text(_) => Ok(KeyValue::Text(String::new())),
    }
}

fn short(checksum: &str) -> &str {
    checksum.get(..12).unwrap_or(checksum)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::backfill::db::sqlite::SqliteBackend;
    use crate::backfill::db::{Backend, Cell};
    use crate::backfill::migration;

    /// A data migration over `items(id, n)` that adds 1 to `n` in each batch: a row changed twice
    /// shows up as 2, a row never reached as 0.
    fn bump(key: &str, ty: &str) -> (DataMigration, SqliteBackend) {
        let text = format!(
            "-- @requires 1\n-- @table items\n-- @key {key}\n-- @batch-size 3\n\n-- @batch\nUPDATE items SET n = n + 1 WHERE {key} > :lower AND {key} <= :upper;\n\n-- @snapshot\nSELECT {key}, n FROM items ORDER BY {key};\n"
        );
        let migration = migration::parse(Path::new("data-migrations/V7__bump.sql"), &text).unwrap();
        let mut db = SqliteBackend::throwaway().unwrap();
        db.execute(&format!(
            "CREATE TABLE items ({key} {ty} PRIMARY KEY NOT NULL, n bigint NOT NULL DEFAULT 0)"
        ))
        .unwrap();
        (migration, db)
    }

    fn options(batch_size: u64) -> EngineOptions {
        EngineOptions {
            batch_size,
            pause: Duration::ZERO,
            limits: BatchLimits::default(),
            max_batches: None,
        }
    }

    fn run_all(
        db: &mut SqliteBackend,
        m: &DataMigration,
        batch_size: u64,
    ) -> (RunReport, Vec<BatchReport>) {
        let mut batches = Vec::new();
        let report = run(db, m, &options(batch_size), &mut |b| {
            batches.push(b.clone())
        })
        .unwrap();
        (report, batches)
    }

    fn counts(db: &mut SqliteBackend) -> Vec<String> {
        db.query("SELECT n FROM items ORDER BY 1")
            .unwrap()
            .rows
            .into_iter()
            .map(|r| match &r[0] {
                Cell::Number(n) => n.clone(),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    fn ints(keys: &[i64]) -> String {
        keys.iter()
            .map(|k| format!("({k})"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    #[test]
    fn sparse_keys_with_gaps_give_full_batches() {
        let (m, mut db) = bump("id", "bigint");
        let keys = [-40, 1, 2, 10, 11, 500, 501, 502, 9_000_000_000];
        db.execute(&format!("INSERT INTO items (id) VALUES {}", ints(&keys)))
            .unwrap();
        let (report, batches) = run_all(&mut db, &m, 3);
        let bounds: Vec<(KeyValue, KeyValue, u64)> = batches
            .iter()
            .map(|b| (b.lower.clone(), b.upper.clone(), b.rows))
            .collect();
        use KeyValue::Int;
        assert_eq!(
            bounds,
            vec![
                (Int(-41), Int(2), 3),
                (Int(2), Int(500), 3),
                (Int(500), Int(9_000_000_000), 3)
            ]
        );
        assert_eq!(
            (report.batches, report.rows_changed, report.complete),
            (3, 9, true)
        );
        assert_eq!(counts(&mut db), vec!["1"; 9]);
    }

    #[test]
    fn last_batch_is_short_and_ends_at_the_largest_key() {
        let (m, mut db) = bump("id", "bigint");
        db.execute(&format!(
            "INSERT INTO items (id) VALUES {}",
            ints(&[5, 6, 7, 8, 100])
        ))
        .unwrap();
        let (report, batches) = run_all(&mut db, &m, 3);
        assert_eq!(batches.len(), 2);
        assert_eq!(
            (
                batches[1].lower.clone(),
                batches[1].upper.clone(),
                batches[1].rows
            ),
            (KeyValue::Int(7), KeyValue::Int(100), 2)
        );
        assert_eq!(report.rows_changed, 5);
        assert_eq!(counts(&mut db), vec!["1"; 5]);
    }

    #[test]
    fn batch_size_one() {
        let (m, mut db) = bump("id", "bigint");
        db.execute(&format!(
            "INSERT INTO items (id) VALUES {}",
            ints(&[3, 1, 2, 1000])
        ))
        .unwrap();
        let (report, batches) = run_all(&mut db, &m, 1);
        assert_eq!(report.batches, 4);
        let uppers: Vec<KeyValue> = batches.iter().map(|b| b.upper.clone()).collect();
        assert_eq!(uppers, [1, 2, 3, 1000].map(KeyValue::Int));
        assert!(batches.iter().all(|b| b.rows == 1));
        assert_eq!(counts(&mut db), vec!["1"; 4]);
    }

    #[test]
    fn empty_table_runs_no_batch() {
        let (m, mut db) = bump("id", "bigint");
        let (report, batches) = run_all(&mut db, &m, 3);
        assert!(batches.is_empty());
        assert_eq!(
            (report.batches, report.rows_changed, report.complete),
            (0, 0, true)
        );
    }

    #[test]
    fn a_batch_that_changes_no_row_still_commits_and_moves_on() {
        let text = "-- @requires 1\n-- @table items\n-- @key id\n-- @batch\nUPDATE items SET n = n + 1 WHERE id > :lower AND id <= :upper AND id % 2 = 0;\n-- @snapshot\nSELECT id, n FROM items ORDER BY id;\n";
        let m = migration::parse(Path::new("V8__even.sql"), text).unwrap();
        let (_, mut db) = bump("id", "bigint");
        db.execute(&format!(
            "INSERT INTO items (id) VALUES {}",
            ints(&[1, 3, 5, 6, 7, 9, 10])
        ))
        .unwrap();
        let (report, batches) = run_all(&mut db, &m, 3);
        let rows: Vec<u64> = batches.iter().map(|b| b.rows).collect();
        assert_eq!(rows, vec![0, 1, 1]);
        assert_eq!(report.batches, 3);
        let recorded = db
            .query("SELECT count(*) FROM xtask_backfill_batches WHERE migration = 'V8__even'")
            .unwrap();
        assert_eq!(recorded.rows[0][0], Cell::Number("3".into()));
        assert_eq!(counts(&mut db), vec!["0", "0", "0", "0", "0", "1", "1"]);
    }

    #[test]
    fn text_keys() {
        let (m, mut db) = bump("code", "text");
        db.execute(
            "INSERT INTO items (code) VALUES ('b'), ('a'), ('ab'), ('B'), ('z'), ('é'), ('a b')",
        )
        .unwrap();
        let (report, batches) = run_all(&mut db, &m, 2);
        let uppers: Vec<KeyValue> = batches.iter().map(|b| b.upper.clone()).collect();
        // BINARY collation: upper case before lower case, 'é' (UTF-8 0xC3...) last.
        let text = |s: &str| KeyValue::Text(s.into());
        assert_eq!(uppers, vec![text("a"), text("ab"), text("z"), text("é")]);
        assert_eq!(batches[0].lower, text(""));
        assert_eq!(report.rows_changed, 7);
        assert_eq!(counts(&mut db), vec!["1"; 7]);
    }

    #[test]
    fn empty_string_key_is_refused() {
        let (m, mut db) = bump("code", "text");
        db.execute("INSERT INTO items (code) VALUES (''), ('a')")
            .unwrap();
        let e = run(&mut db, &m, &options(2), &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("V7__bump.sql:3: the smallest key is the empty string"),
            "{e}"
        );
    }

    #[test]
    fn statement_error_names_the_file_and_line() {
        let text = "-- @requires 1\n-- @table items\n-- @key id\n-- @batch\nUPDATE items SET nope = 1 WHERE id > :lower AND id <= :upper;\n-- @snapshot\nSELECT id FROM items ORDER BY id;\n";
        let m = migration::parse(Path::new("data-migrations/V9__broken.sql"), text).unwrap();
        let (_, mut db) = bump("id", "bigint");
        db.execute("INSERT INTO items (id) VALUES (1), (2)")
            .unwrap();
        let e = run(&mut db, &m, &options(10), &mut |_| {}).unwrap_err();
        let s = e.to_string();
        assert!(
            s.starts_with("data-migrations/V9__broken.sql:5: batch 1 on keys (0, 2] failed:"),
            "{s}"
        );
        assert!(s.contains("nope"), "{s}");
        assert_eq!(e.kind, ErrorKind::Statement);
        // The failed batch left nothing behind.
        let recorded = db
            .query("SELECT count(*) FROM xtask_backfill_batches")
            .unwrap();
        assert_eq!(recorded.rows[0][0], Cell::Number("0".into()));
    }

    #[test]
    fn a_failing_batch_rolls_back_its_changes() {
        let text = "-- @requires 1\n-- @table items\n-- @key id\n-- @batch\nUPDATE items SET n = n + 1 WHERE id > :lower AND id <= :upper;\n-- @snapshot\nSELECT id FROM items ORDER BY id;\n";
        let m = migration::parse(Path::new("V10__fails_at_5.sql"), text).unwrap();
        let (_, mut db) = bump("id", "bigint");
        db.execute("CREATE TRIGGER no_five BEFORE UPDATE ON items WHEN NEW.id = 5 BEGIN SELECT RAISE(ABORT, 'five is forbidden'); END")
            .unwrap();
        db.execute(&format!(
            "INSERT INTO items (id) VALUES {}",
            ints(&[1, 2, 3, 4, 5, 6])
        ))
        .unwrap();
        let mut seen = Vec::new();
        let e = run(&mut db, &m, &options(2), &mut |b| seen.push(b.batch))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("batch 3 on keys (4, 6] failed: five is forbidden"),
            "{e}"
        );
        assert_eq!(seen, vec![1, 2]);
        // Batches 1 and 2 committed; batch 3 (rows 5 and 6) left no trace.
        assert_eq!(counts(&mut db), vec!["0", "0", "1", "1", "1", "1"]);
    }

    #[test]
    fn resumes_after_the_last_committed_batch_exactly_once() {
        let (m, mut db) = bump("id", "bigint");
        db.execute(&format!(
            "INSERT INTO items (id) VALUES {}",
            ints(&[1, 2, 4, 8, 16, 32, 64])
        ))
        .unwrap();
        let mut first = options(2);
        first.max_batches = Some(2);
        let report = run(&mut db, &m, &first, &mut |_| {}).unwrap();
        assert_eq!((report.batches, report.complete), (2, false));
        let (report, batches) = run_all(&mut db, &m, 2);
        assert_eq!(report.resumed_after, Some(2));
        assert_eq!(
            batches.first().map(|b| (b.batch, b.lower.clone())),
            Some((3, KeyValue::Int(8)))
        );
        assert!(report.complete);
        assert_eq!(counts(&mut db), vec!["1"; 7]);
        // A third run finds nothing left to do.
        let (report, batches) = run_all(&mut db, &m, 2);
        assert!(batches.is_empty() && report.complete);
        assert_eq!(counts(&mut db), vec!["1"; 7]);
    }

    #[test]
    fn the_same_batch_cannot_commit_twice() {
        let (m, mut db) = bump("id", "bigint");
        db.execute("INSERT INTO items (id) VALUES (1), (2)")
            .unwrap();
        let checkpoint = Checkpoint {
            migration: "V7__bump",
            checksum: &m.checksum,
            batch: 1,
        };
        db.ensure_tracking().unwrap();
        let sql = m.batch.sql(db.dialect()).to_string();
        let limits = BatchLimits::default();
        db.run_batch(
            &sql,
            &KeyValue::Int(0),
            &KeyValue::Int(2),
            &checkpoint,
            &limits,
        )
        .unwrap();
        let e = db
            .run_batch(
                &sql,
                &KeyValue::Int(0),
                &KeyValue::Int(2),
                &checkpoint,
                &limits,
            )
            .unwrap_err();
        assert!(e.to_string().contains("tracking table"), "{e}");
        assert_eq!(counts(&mut db), vec!["1", "1"]);
    }

    #[test]
    fn a_run_of_another_version_of_the_file_is_not_resumed() {
        let (m, mut db) = bump("id", "bigint");
        db.execute("INSERT INTO items (id) VALUES (1), (2), (3)")
            .unwrap();
        let mut first = options(1);
        first.max_batches = Some(1);
        run(&mut db, &m, &first, &mut |_| {}).unwrap();
        let mut changed = m.clone();
        changed.checksum = migration::checksum(b"another file");
        let e = run(&mut db, &changed, &options(1), &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("records a run of another version of this file"),
            "{e}"
        );
    }

    #[test]
    fn missing_table_key_and_bad_key_types() {
        let (m, mut db) = bump("id", "bigint");
        db.execute("DROP TABLE items").unwrap();
        let e = run(&mut db, &m, &options(1), &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("data-migrations/V7__bump.sql:2: table `items` does not exist in the schema at version 1"), "{e}");

        db.execute("CREATE TABLE items (other bigint, n bigint)")
            .unwrap();
        let e = run(&mut db, &m, &options(1), &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("data-migrations/V7__bump.sql:3: table `items` has no column `id` (it has: other, n)"), "{e}");

        db.execute("DROP TABLE items; CREATE TABLE items (id real, n bigint)")
            .unwrap();
        let e = run(&mut db, &m, &options(1), &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(
            e.to_lowercase()
                .contains("key `items.id` is of type `real`"),
            "{e}"
        );

        db.execute("DROP TABLE items; CREATE TABLE items (id bigint, n bigint); INSERT INTO items VALUES (NULL, 0), (1, 0)")
            .unwrap();
        let e = run(&mut db, &m, &options(1), &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(e.contains("1 row of `items` has a NULL `id`"), "{e}");
    }
}
