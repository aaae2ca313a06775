//! Fixtures: a sampled subset of production-shaped rows, one CSV file per table, loaded into the
//! database `backfill sample` builds, after the schema migrations and before the data migration.
//!
//! Format (`fixtures/<table>.csv`, RFC 4180 CSV as the `csv` crate reads it):
//! - the first line names the columns; columns left out get their default;
//! - `\N` (unquoted or quoted, the whole field) is NULL; `\\N` is the two-character text `\N`;
//!   an empty field is the empty string, and an error for a column that is not text, so a
//!   forgotten value never passes for NULL;
//! - values are checked and converted by the column's declared type in the schema: integer,
//!   real, decimal (kept exact), bool (`true`/`false`, `t`/`f`, `1`/`0`), timestamp
//!   (`YYYY-MM-DD HH:MM[:SS[.ffffff]]`, `T` allowed, optional zone), date (`YYYY-MM-DD`),
//!   blob (`\x` then hex, PostgreSQL's bytea form); anything else is text.
//! - a timestamp is stored as PostgreSQL prints it in a UTC session, so it reads the same on
//!   every engine: `YYYY-MM-DD HH:MM:SS`, then the fraction (microseconds, rounded) without
//!   trailing zeros; a `with time zone` column's value is converted to UTC (and shown without an
//!   offset), another column's zone is ignored, as PostgreSQL does.
//!
//! Loading reads the foreign keys from the database's catalog and inserts parents before
//! children, all tables in one transaction with one prepared statement per table. Tables in a
//! cycle of foreign keys, or referencing themselves, are loaded with their checks deferred to
//! the commit (SQLite: every key; PostgreSQL: those declared DEFERRABLE), so their rows need no
//! order. Every problem is an error naming `file:line`, and a failed load leaves no row behind.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use sha2::Digest;

use crate::backfill::db::{Column, ColumnType, SampleBackend, SqlValue};
use crate::backfill::error::{Error, ErrorKind, Result};

/// The field that means NULL.
pub const NULL: &str = "\\N";

/// One fixture file, read and split into fields, not yet matched to a schema.
#[derive(Debug, Clone, PartialEq)]
pub struct FixtureFile {
    pub table: String,
    pub path: PathBuf,
    pub header: Vec<String>,
    /// `(line, fields)`; a field is `None` for NULL.
    pub rows: Vec<(usize, Vec<Option<String>>)>,
    /// SHA-256 of the file's bytes, as they were read: what a kept-alive cluster's cache of
    /// loaded fixtures is keyed by.
    pub sha256: [u8; 32],
}

/// What a load did.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LoadReport {
    /// `(table, rows)` in the order they were loaded.
    pub tables: Vec<(String, usize)>,
    pub rows: usize,
}

/// Every `*.csv` file of `dir`, by file name. A missing directory is no fixtures.
pub fn read_dir(dir: &Path) -> Result<Vec<FixtureFile>> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let entries = std::fs::read_dir(dir).map_err(|e| {
        Error::file(
            ErrorKind::Io,
            dir,
            format!("cannot read the fixtures directory: {e}"),
        )
    })?;
    let mut paths = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| Error::file(ErrorKind::Io, dir, e.to_string()))?
            .path();
        if path.is_file() && path.extension().is_some_and(|e| e == "csv") {
            paths.push(path);
        }
    }
    paths.sort();
    paths.iter().map(|p| read_file(p)).collect()
}

/// Reads one fixture file; the table is the file's name without `.csv`.
pub fn read_file(path: &Path) -> Result<FixtureFile> {
    let err = |line: usize, message: String| Error::at(ErrorKind::Fixture, path, line, message);
    let table = path
        .file_stem()
        .and_then(|s| s.to_str())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            Error::file(
                ErrorKind::Fixture,
                path,
                "a fixture file is named after its table: `<table>.csv`",
            )
        })?
        .to_string();
    // Read whole: the rows parsed and the digest are of the same bytes.
    let bytes = std::fs::read(path)
        .map_err(|e| Error::file(ErrorKind::Io, path, format!("cannot read: {e}")))?;
    let sha256: [u8; 32] = sha2::Sha256::digest(&bytes).into();
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(bytes.as_slice());
    let mut records = reader.records();
    let header = match records.next() {
        None => {
            return Err(err(
                1,
                "empty fixture: the first line names the columns".into(),
            ));
        }
        Some(Err(e)) => return Err(csv_error(path, &e)),
        Some(Ok(record)) => record.iter().map(str::to_string).collect::<Vec<_>>(),
    };
    let mut seen = BTreeSet::new();
    for name in &header {
        if name.trim().is_empty() {
            return Err(err(1, "the header has an empty column name".into()));
        }
        if !seen.insert(name.as_str()) {
            return Err(err(1, format!("the header names column `{name}` twice")));
        }
    }
    let mut rows = Vec::new();
    for record in records {
        let record = record.map_err(|e| csv_error(path, &e))?;
        let line = record.position().map_or(0, |p| p.line() as usize);
        let fields = record
            .iter()
            .map(|f| match f {
                NULL => None,
                "\\\\N" => Some(NULL.to_string()),
                other => Some(other.to_string()),
            })
            .collect();
        rows.push((line, fields));
    }
    Ok(FixtureFile {
        table,
        path: path.to_path_buf(),
        header,
        rows,
        sha256,
    })
}

fn csv_error(path: &Path, e: &csv::Error) -> Error {
    let line = e.position().map_or(0, |p| p.line() as usize);
    let message = match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => {
            format!("this row has {len} fields, the header has {expected_len}")
        }
        csv::ErrorKind::Utf8 { .. } => "not UTF-8 text".to_string(),
        _ => format!("malformed CSV: {e}"),
    };
    Error::at(ErrorKind::Fixture, path, line, message)
}

/// A fixture file matched to its columns, its rows converted.
type Prepared<'a> = (&'a FixtureFile, Vec<Column>, Vec<Vec<SqlValue>>);

/// Loads `files` into the database: checks them against the schema, orders them parents first,
/// inserts everything in one transaction.
pub fn load(
    db: &mut dyn SampleBackend,
    files: &[FixtureFile],
    schema_version: u64,
) -> Result<LoadReport> {
    let mut prepared: Vec<Prepared<'_>> = Vec::new();
    for file in files {
        let Some(all) = db.columns(&file.table)? else {
            return Err(Error::file(
                ErrorKind::Fixture,
                &file.path,
                format!(
                    "no table `{}` in the schema at version {schema_version}",
                    file.table
                ),
            ));
        };
        let mut columns = Vec::with_capacity(file.header.len());
        for name in &file.header {
            let Some(column) = all.iter().find(|c| &c.name == name) else {
                let names: Vec<&str> = all.iter().map(|c| c.name.as_str()).collect();
                return Err(Error::at(
                    ErrorKind::Fixture,
                    &file.path,
                    1,
                    format!(
                        "column `{name}` is not in table `{}` at schema version {schema_version} (it has: {})",
                        file.table,
                        names.join(", ")
                    ),
                ));
            };
            columns.push(column.clone());
        }
        let mut rows = Vec::with_capacity(file.rows.len());
        for (line, fields) in &file.rows {
            let mut row = Vec::with_capacity(fields.len());
            for (field, column) in fields.iter().zip(&columns) {
                let value = convert(field.as_deref(), column).map_err(|m| {
                    Error::at(
                        ErrorKind::Fixture,
                        &file.path,
                        *line,
                        format!("column `{}`: {m}", column.name),
                    )
                })?;
                row.push(value);
            }
            rows.push(row);
        }
        prepared.push((file, columns, rows));
    }

    let (order, defer) = dependency_order(db, files)?;
    prepared.sort_by_key(|(file, _, _)| order.iter().position(|t| t == &file.table));

    let tables: Vec<String> = prepared.iter().map(|(f, _, _)| f.table.clone()).collect();
    // Foreign keys and secondary indexes set aside during the load, checked and built once at
    // its end; when that fails, the load runs again with every key and index in place, which
    // names the fixture row.
    let mut loaded = insert_all(db, &prepared, defer, Some(&tables))?;
    if matches!(loaded, Loaded::KeysFailed) {
        loaded = insert_all(db, &prepared, defer, None)?;
    }
    match loaded {
        Loaded::Done(report) => {
            db.analyze()?;
            Ok(report)
        }
        // With every key in place, a row no key accepts fails its insert, naming it.
        Loaded::KeysFailed => Err(Error::new(
            ErrorKind::Fixture,
            "a foreign key of the fixtures does not hold",
        )),
    }
}

/// How one attempt at loading ended, short of an error.
enum Loaded {
    Done(LoadReport),
    /// A foreign key set aside did not hold when added back, or an index set aside could not
    /// be built again: nothing is loaded.
    KeysFailed,
}

/// Inserts every prepared table in one transaction; with `suspend`, the foreign keys and
/// indexes of those tables the backend can check and build in one pass are set aside while the
/// rows go in.
fn insert_all(
    db: &mut dyn SampleBackend,
    prepared: &[Prepared<'_>],
    defer: bool,
    suspend: Option<&[String]>,
) -> Result<Loaded> {
    db.execute("BEGIN")?;
    if defer {
        // Rows of a cycle (or of a table referencing itself) need not come parents first:
        // their foreign keys are checked at COMMIT. SQLite defers every foreign key for this
        // transaction; PostgreSQL those declared DEFERRABLE.
        let sql = match db.dialect() {
            crate::sql::Dialect::Sqlite => "PRAGMA defer_foreign_keys = ON",
            crate::sql::Dialect::Postgres => "SET CONSTRAINTS ALL DEFERRED",
        };
        if let Err(e) = db.execute(sql) {
            let _ = db.execute("ROLLBACK");
            return Err(e);
        }
    }
    let restore = match suspend.map(|tables| db.suspend_for_load(tables)) {
        None => Vec::new(),
        Some(Ok(restore)) => restore,
        Some(Err(e)) => {
            let _ = db.execute("ROLLBACK");
            return Err(e);
        }
    };
    let mut report = LoadReport::default();
    for (file, columns, rows) in prepared {
        if let Err((index, e)) = db.insert_rows(&file.table, columns, rows) {
            let _ = db.execute("ROLLBACK");
            let e = e.with_kind(ErrorKind::Fixture).in_file(&file.path);
            return Err(match index.and_then(|i| file.rows.get(i)) {
                Some((line, _)) => e.at_line(*line),
                None => e,
            });
        }
        report.tables.push((file.table.clone(), rows.len()));
        report.rows += rows.len();
    }
    for statement in &restore {
        if db.execute(statement).is_err() {
            let _ = db.execute("ROLLBACK");
            return Ok(Loaded::KeysFailed);
        }
    }
    if let Err(e) = db.execute("COMMIT") {
        let _ = db.execute("ROLLBACK");
        return Err(e.context("commit the fixtures"));
    }
    Ok(Loaded::Done(report))
}

/// The fixture tables, parents before children (by the foreign keys in the catalog), otherwise
/// alphabetical; and whether foreign-key checks must wait for COMMIT: when tables reference
/// each other in a cycle (those come last, alphabetically) or a table references itself.
fn dependency_order(
    db: &mut dyn SampleBackend,
    files: &[FixtureFile],
) -> Result<(Vec<String>, bool)> {
    let tables: BTreeSet<String> = files.iter().map(|f| f.table.clone()).collect();
    let mut defer = false;
    let mut parents: BTreeMap<&str, BTreeSet<String>> = tables
        .iter()
        .map(|t| (t.as_str(), BTreeSet::new()))
        .collect();
    for (child, parent) in db.foreign_keys()? {
        defer |= child == parent && tables.contains(&child);
        if child != parent
            && tables.contains(&parent)
            && let Some(set) = parents.get_mut(child.as_str())
        {
            set.insert(parent);
        }
    }
    let mut order: Vec<String> = Vec::with_capacity(tables.len());
    while order.len() < tables.len() {
        let ready = parents
            .iter()
            .find(|(table, deps)| {
                !order.iter().any(|o| o == *table) && deps.iter().all(|d| order.contains(d))
            })
            .map(|(table, _)| table.to_string());
        match ready {
            Some(table) => order.push(table),
            None => {
                // A cycle: what is left goes in alphabetically, checked at COMMIT.
                let stuck: Vec<String> = parents
                    .keys()
                    .filter(|t| !order.iter().any(|o| o == *t))
                    .map(|t| t.to_string())
                    .collect();
                order.extend(stuck);
                defer = true;
            }
        }
    }
    Ok((order, defer))
}

/// Converts one field by its column's type.
pub fn convert(field: Option<&str>, column: &Column) -> std::result::Result<SqlValue, String> {
    let Some(text) = field else {
        return Ok(SqlValue::Null);
    };
    let ty = column.ty;
    if text.is_empty() && ty != ColumnType::Text {
        return Err(format!(
            "empty value for a {} column (write \\N for NULL)",
            type_name(ty)
        ));
    }
    let bad = |expected: &str| format!("`{text}` is not {expected}");
    match ty {
        ColumnType::Text => Ok(SqlValue::Text(text.to_string())),
        ColumnType::Integer => text
            .parse::<i64>()
            .map(SqlValue::Int)
            .map_err(|_| bad("an integer")),
        ColumnType::Real => text
            .parse::<f64>()
            .map(SqlValue::Real)
            .map_err(|_| bad("a number")),
        ColumnType::Decimal => {
            if is_decimal(text) {
                Ok(SqlValue::Decimal(text.to_string()))
            } else {
                Err(bad("a decimal number"))
            }
        }
        ColumnType::Bool => match text.to_ascii_lowercase().as_str() {
            "true" | "t" | "1" | "yes" => Ok(SqlValue::Bool(true)),
            "false" | "f" | "0" | "no" => Ok(SqlValue::Bool(false)),
            _ => Err(bad("a bool (true/false, t/f, 1/0)")),
        },
        ColumnType::Date => {
            if is_date(text) {
                Ok(SqlValue::Text(text.to_string()))
            } else {
                Err(bad("a date (YYYY-MM-DD)"))
            }
        }
        ColumnType::Timestamp => timestamp(text, with_time_zone(&column.declared))
            .map(SqlValue::Text)
            .ok_or_else(|| bad("a timestamp (YYYY-MM-DD HH:MM:SS)")),
        ColumnType::Blob => text
            .strip_prefix("\\x")
            .and_then(hex)
            .map(SqlValue::Blob)
            .ok_or_else(|| bad("a blob (\\x followed by hex digits)")),
    }
}

fn type_name(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::Integer => "integer",
        ColumnType::Real => "real",
        ColumnType::Decimal => "decimal",
        ColumnType::Text => "text",
        ColumnType::Blob => "blob",
        ColumnType::Bool => "bool",
        ColumnType::Timestamp => "timestamp",
        ColumnType::Date => "date",
    }
}

fn is_decimal(text: &str) -> bool {
    let body = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (mantissa, exponent) = match body.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e.strip_prefix(['-', '+']).unwrap_or(e))),
        None => (body, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    (!int.is_empty() || !frac.is_empty())
        && digits(int)
        && digits(frac)
        && exponent.is_none_or(|e| !e.is_empty() && digits(e))
}

fn number_in(text: &str, range: std::ops::RangeInclusive<u32>) -> bool {
    text.bytes().all(|b| b.is_ascii_digit())
        && text.parse::<u32>().is_ok_and(|n| range.contains(&n))
}

fn is_date(text: &str) -> bool {
    let parts: Vec<&str> = text.split('-').collect();
    matches!(parts.as_slice(), [y, m, d]
        if y.len() == 4 && number_in(y, 0..=9999) && m.len() == 2 && number_in(m, 1..=12) && d.len() == 2 && number_in(d, 1..=31))
}

/// Whether a declared timestamp type keeps the instant (`timestamptz`, `timestamp with time
/// zone`) rather than the wall-clock reading.
fn with_time_zone(declared: &str) -> bool {
    let lower = declared.to_ascii_lowercase();
    lower.starts_with("timestamptz") || lower.contains("with time zone")
}

/// Checks a timestamp and writes it as PostgreSQL prints it in a UTC session (see the module
/// docs): text timestamps in SQLite then compare in time order, and read the same on both
/// engines. A date alone is midnight. With `with_zone`, the zone (`Z`, `+HH`, `+HH:MM`, `+HHMM`)
/// is applied and the result is UTC; otherwise it is checked and ignored.
fn timestamp(text: &str, with_zone: bool) -> Option<String> {
    let (date, rest) = match text.split_at_checked(10) {
        Some((date, "")) => (date, None),
        Some((date, rest)) => (date, Some(rest.strip_prefix([' ', 'T'])?)),
        None => return None,
    };
    if !is_date(date) {
        return None;
    }
    let (mut seconds, mut micros, mut offset) = (0i64, 0i64, 0i64);
    if let Some(rest) = rest {
        // Zone: `Z`, or `+HH[:MM]` / `-HH[:MM]` / `+HHMM` after the time.
        let (time, zone) = match rest.find(['Z', '+', '-']) {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if !zone.is_empty() && zone != "Z" {
            let z = &zone[1..];
            let (h, m) = z
                .split_once(':')
                .unwrap_or((z.get(..2).unwrap_or(z), z.get(2..).unwrap_or("")));
            let ok = h.len() == 2
                && number_in(h, 0..=15)
                && (m.is_empty() || (m.len() == 2 && number_in(m, 0..=59)));
            if !ok {
                return None;
            }
            let minutes = h.parse::<i64>().ok()? * 60 + m.parse::<i64>().unwrap_or(0);
            offset = if zone.starts_with('-') {
                -minutes
            } else {
                minutes
            } * 60;
        }
        let (clock, fraction) = match time.split_once('.') {
            Some((clock, fraction)) => {
                if fraction.is_empty() || !fraction.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                (clock, Some(fraction))
            }
            None => (time, None),
        };
        let fields: Vec<&str> = clock.split(':').collect();
        let (h, m, s) = match fields.as_slice() {
            [h, m] => (*h, *m, "00"),
            [h, m, s] => (*h, *m, *s),
            _ => return None,
        };
        let ok = h.len() == 2
            && number_in(h, 0..=23)
            && m.len() == 2
            && number_in(m, 0..=59)
            && s.len() == 2
            && number_in(s, 0..=60);
        if !ok {
            return None;
        }
        seconds =
            h.parse::<i64>().ok()? * 3600 + m.parse::<i64>().ok()? * 60 + s.parse::<i64>().ok()?;
        // PostgreSQL reads the fraction as a float and rounds it to microseconds, ties to even.
        if let Some(fraction) = fraction {
            let value: f64 = format!("0.{fraction}").parse().ok()?;
            micros = (value * 1e6).round_ties_even() as i64;
        }
    }
    let year: i64 = date[..4].parse().ok()?;
    let month: i64 = date[5..7].parse().ok()?;
    let day: i64 = date[8..].parse().ok()?;
    let mut total = (days_from_civil(year, month, day) * 86_400 + seconds) * 1_000_000 + micros;
    if with_zone {
        total -= offset * 1_000_000;
    }
    let (days, rest) = (
        total.div_euclid(86_400_000_000),
        total.rem_euclid(86_400_000_000),
    );
    let (year, month, day) = civil_from_days(days);
    let (secs, micros) = (rest / 1_000_000, rest % 1_000_000);
    let mut out = format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    );
    if micros != 0 {
        let fraction = format!("{micros:06}");
        out.push('.');
        out.push_str(fraction.trim_end_matches('0'));
    }
    Some(out)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`]: `(year, month, day)`.
pub(crate) fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

fn hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(declared: &str) -> Column {
        Column {
            name: "c".into(),
            declared: declared.into(),
            ty: ColumnType::from_declared(declared),
            not_null: false,
        }
    }

    #[test]
    fn conversions() {
        let ok = |declared: &str, text: &str| convert(Some(text), &column(declared)).unwrap();
        assert_eq!(ok("bigint", "-42"), SqlValue::Int(-42));
        assert_eq!(ok("real", "1.5"), SqlValue::Real(1.5));
        assert_eq!(
            ok("numeric(10,2)", "10.50"),
            SqlValue::Decimal("10.50".into())
        );
        assert_eq!(ok("boolean", "T"), SqlValue::Bool(true));
        assert_eq!(ok("boolean", "0"), SqlValue::Bool(false));
        assert_eq!(ok("text", ""), SqlValue::Text(String::new()));
        assert_eq!(
            ok("date", "2024-02-29"),
            SqlValue::Text("2024-02-29".into())
        );
        assert_eq!(
            ok("timestamp", "2024-02-29T13:05:00"),
            SqlValue::Text("2024-02-29 13:05:00".into())
        );
        assert_eq!(
            ok("timestamp", "2024-02-29 13:05"),
            SqlValue::Text("2024-02-29 13:05:00".into())
        );
        assert_eq!(
            ok("timestamptz", "2024-02-29 13:05:00.123456+01:00"),
            SqlValue::Text("2024-02-29 12:05:00.123456".into())
        );
        assert_eq!(
            ok("timestamp", "2024-02-29 13:05:00Z"),
            SqlValue::Text("2024-02-29 13:05:00".into())
        );
        assert_eq!(ok("bytea", "\\x00ff"), SqlValue::Blob(vec![0, 255]));
        assert_eq!(convert(None, &column("bigint")), Ok(SqlValue::Null));
    }

    /// Timestamps are stored as PostgreSQL prints them in a UTC session (checked against
    /// PostgreSQL 15: `SET TimeZone = 'UTC'; SELECT '...'::timestamp, '...'::timestamptz`).
    #[test]
    fn timestamps_are_stored_as_postgresql_prints_them() {
        for (text, plain, zoned) in [
            ("2024-02-29", "2024-02-29 00:00:00", "2024-02-29 00:00:00"),
            (
                "2024-02-29 13:05",
                "2024-02-29 13:05:00",
                "2024-02-29 13:05:00",
            ),
            (
                "2024-02-29T13:05:07.100",
                "2024-02-29 13:05:07.1",
                "2024-02-29 13:05:07.1",
            ),
            (
                "2024-02-29 13:05:07.1234565",
                "2024-02-29 13:05:07.123456",
                "2024-02-29 13:05:07.123456",
            ),
            (
                "2024-02-29 13:05:07.1234575",
                "2024-02-29 13:05:07.123458",
                "2024-02-29 13:05:07.123458",
            ),
            (
                "2024-03-01 00:30:00+01:00",
                "2024-03-01 00:30:00",
                "2024-02-29 23:30:00",
            ),
            (
                "2023-12-31 23:00:00-0230",
                "2023-12-31 23:00:00",
                "2024-01-01 01:30:00",
            ),
            (
                "2024-02-29 13:05:00Z",
                "2024-02-29 13:05:00",
                "2024-02-29 13:05:00",
            ),
            (
                "2016-12-31 23:59:60",
                "2017-01-01 00:00:00",
                "2017-01-01 00:00:00",
            ),
            (
                "1969-12-31 23:59:59.5+00",
                "1969-12-31 23:59:59.5",
                "1969-12-31 23:59:59.5",
            ),
        ] {
            assert_eq!(timestamp(text, false).as_deref(), Some(plain), "{text}");
            assert_eq!(
                timestamp(text, true).as_deref(),
                Some(zoned),
                "{text} with time zone"
            );
        }
        assert!(with_time_zone("timestamp with time zone"));
        assert!(with_time_zone("TIMESTAMPTZ"));
        assert!(!with_time_zone("timestamp without time zone"));
        assert!(!with_time_zone("datetime"));
    }

    #[test]
    fn bad_values() {
        let bad = |declared: &str, text: &str| convert(Some(text), &column(declared)).unwrap_err();
        assert_eq!(bad("bigint", "4.5"), "`4.5` is not an integer");
        assert_eq!(
            bad("bigint", ""),
            "empty value for a integer column (write \\N for NULL)"
        );
        assert!(bad("bigint", "99999999999999999999").contains("not an integer"));
        assert!(bad("numeric", "1.2.3").contains("decimal"));
        assert!(bad("numeric", "e5").contains("decimal"));
        assert!(bad("boolean", "maybe").contains("bool"));
        assert!(bad("date", "2024-13-01").contains("date"));
        assert!(bad("timestamp", "2024-01-01 25:00:00").contains("timestamp"));
        assert!(bad("timestamp", "2024-01-01 10:00:00.").contains("timestamp"));
        assert!(bad("timestamp", "yesterday").contains("timestamp"));
        assert!(bad("timestamp", "2024-01-01x10:00").contains("timestamp"));
        assert!(bad("timestamp", "2024-01-01 é:00").contains("timestamp"));
        assert!(bad("bytea", "\\x0").contains("blob"));
        assert!(bad("bytea", "00").contains("blob"));
        assert!(bad("bytea", "\\xé0").contains("blob"));
    }

    fn write(dir: &Path, name: &str, text: impl AsRef<[u8]>) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn reads_null_empty_and_escaped_null() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "users.csv",
            "id,name\n1,\\N\n2,\n3,\\\\N\n4,\"\\N\"\n5,\"a, \"\"quoted\"\"\nline\"\n6,x\n",
        );
        let f = read_file(&path).unwrap();
        assert_eq!(f.table, "users");
        assert_eq!(f.header, vec!["id", "name"]);
        let names: Vec<Option<&str>> = f.rows.iter().map(|(_, r)| r[1].as_deref()).collect();
        assert_eq!(
            names,
            vec![
                None,
                Some(""),
                Some("\\N"),
                None,
                Some("a, \"quoted\"\nline"),
                Some("x")
            ]
        );
        let lines: Vec<usize> = f.rows.iter().map(|(l, _)| *l).collect();
        assert_eq!(lines, vec![2, 3, 4, 5, 6, 8]);
    }

    #[test]
    fn malformed_rows_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "users.csv", "id,name\n1,a\n2\n");
        let e = read_file(&path).unwrap_err().to_string();
        assert!(
            e.ends_with("users.csv:3: this row has 1 fields, the header has 2"),
            "{e}"
        );
        let path = write(dir.path(), "posts.csv", b"id,body\n1,\xff\n");
        let e = read_file(&path).unwrap_err().to_string();
        assert!(e.ends_with("posts.csv:2: not UTF-8 text"), "{e}");
        let path = write(dir.path(), "empty.csv", "");
        let e = read_file(&path).unwrap_err().to_string();
        assert!(
            e.ends_with("empty.csv:1: empty fixture: the first line names the columns"),
            "{e}"
        );
        let path = write(dir.path(), "twice.csv", "id,id\n");
        let e = read_file(&path).unwrap_err().to_string();
        assert!(
            e.ends_with("twice.csv:1: the header names column `id` twice"),
            "{e}"
        );
    }

    fn schema() -> crate::backfill::db::sqlite::SqliteBackend {
        use crate::backfill::db::Backend;
        let mut db = crate::backfill::db::sqlite::SqliteBackend::throwaway().unwrap();
        db.execute(
            "CREATE TABLE users (id bigint PRIMARY KEY, handle text NOT NULL, active boolean, created_at timestamp);
             CREATE TABLE follows (follower_id bigint NOT NULL REFERENCES users (id), followee_id bigint NOT NULL REFERENCES users (id));
             CREATE TABLE zeta (id bigint PRIMARY KEY, parent bigint REFERENCES zeta (id));",
        )
        .unwrap();
        db
    }

    fn count(db: &mut crate::backfill::db::sqlite::SqliteBackend, table: &str) -> String {
        use crate::backfill::db::{Backend, Cell};
        match &db
            .query(&format!("SELECT count(*) FROM {table}"))
            .unwrap()
            .rows[0][0]
        {
            Cell::Number(n) => n.clone(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn loads_parents_first_in_one_transaction() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "follows.csv",
            "follower_id,followee_id\n1,2\n2,1\n",
        );
        write(
            dir.path(),
            "users.csv",
            "id,handle,active,created_at\n1,a,t,2024-01-01T00:00:00\n2,,\\N,\\N\n",
        );
        write(dir.path(), "zeta.csv", "id,parent\n1,\\N\n2,1\n");
        let mut db = schema();
        let files = read_dir(dir.path()).unwrap();
        let report = load(&mut db, &files, 3).unwrap();
        assert_eq!(
            report.tables,
            vec![
                ("users".to_string(), 2),
                ("follows".to_string(), 2),
                ("zeta".to_string(), 2)
            ]
        );
        assert_eq!(report.rows, 6);
        use crate::backfill::db::{Backend, Cell};
        let rows = db
            .query("SELECT handle, active, created_at FROM users ORDER BY id")
            .unwrap()
            .rows;
        assert_eq!(
            rows[0],
            vec![
                Cell::Text("a".into()),
                Cell::Bool(true),
                Cell::Text("2024-01-01 00:00:00".into())
            ]
        );
        assert_eq!(
            rows[1],
            vec![Cell::Text(String::new()), Cell::Null, Cell::Null]
        );
    }

    /// Tables in a cycle load in any order: their foreign keys are checked at commit, and a
    /// row that references nothing there is still refused.
    #[test]
    fn a_cycle_between_tables_loads_checked_at_commit() {
        use crate::backfill::db::Backend;
        let dir = tempfile::tempdir().unwrap();
        let mut db = crate::backfill::db::sqlite::SqliteBackend::throwaway().unwrap();
        db.execute(
            "CREATE TABLE a (id bigint PRIMARY KEY, b_id bigint REFERENCES b (id));
             CREATE TABLE b (id bigint PRIMARY KEY, a_id bigint REFERENCES a (id));",
        )
        .unwrap();
        write(dir.path(), "a.csv", "id,b_id\n1,2\n");
        write(dir.path(), "b.csv", "id,a_id\n2,1\n");
        let report = load(&mut db, &read_dir(dir.path()).unwrap(), 1).unwrap();
        assert_eq!(report.rows, 2);
        write(dir.path(), "a.csv", "id,b_id\n3,9\n");
        write(dir.path(), "b.csv", "id,a_id\n4,3\n");
        let e = load(&mut db, &read_dir(dir.path()).unwrap(), 1).unwrap_err();
        assert!(
            e.to_string().contains("FOREIGN KEY constraint failed"),
            "{e}"
        );
        assert_eq!(count(&mut db, "a"), "1");
    }

    #[test]
    fn a_failing_row_names_its_line_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "users.csv", "id,handle\n1,a\n2,b\n");
        write(
            dir.path(),
            "follows.csv",
            "follower_id,followee_id\n1,2\n2,3\n",
        );
        let mut db = schema();
        let e = load(&mut db, &read_dir(dir.path()).unwrap(), 3).unwrap_err();
        let s = e.to_string();
        assert!(
            s.contains("follows.csv:3: FOREIGN KEY constraint failed"),
            "{s}"
        );
        assert_eq!(e.kind, ErrorKind::Fixture);
        assert_eq!(
            (count(&mut db, "users"), count(&mut db, "follows")),
            ("0".into(), "0".into())
        );
    }

    #[test]
    fn fixture_that_does_not_fit_the_schema() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = schema();
        write(dir.path(), "users.csv", "id,handle,nickname\n1,a,x\n");
        let e = load(&mut db, &read_dir(dir.path()).unwrap(), 3)
            .unwrap_err()
            .to_string();
        assert!(e.contains("users.csv:1: column `nickname` is not in table `users` at schema version 3 (it has: id, handle, active, created_at)"), "{e}");
        write(dir.path(), "users.csv", "id,handle\n1,a\nx,b\n");
        let e = load(&mut db, &read_dir(dir.path()).unwrap(), 3)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("users.csv:3: column `id`: `x` is not an integer"),
            "{e}"
        );
        std::fs::remove_file(dir.path().join("users.csv")).unwrap();
        write(dir.path(), "posts.csv", "id\n1\n");
        let e = load(&mut db, &read_dir(dir.path()).unwrap(), 3)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("posts.csv: no table `posts` in the schema at version 3"),
            "{e}"
        );
        assert_eq!(count(&mut db, "users"), "0");
    }
}
