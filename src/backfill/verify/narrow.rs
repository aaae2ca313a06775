//! One key range's verification: a digest of each side first, and where they differ, narrowing.
//!
//! The digests of a range (row counts and sums of row hashes, [`Digest`]) are computed where the
//! rows are, one per part of the range: the range is cut into parts of about [`Checker::leaf`]
//! rows (at least [`PARTS`], at most [`MAX_PARTS`]) at the walked table's keys (read through its
//! index), and one round trip per side returns a digest per part. Equal digests everywhere: the
//! range is clean, and that is all a clean table costs, about one read of each side (and of the
//! key's index). A part whose digests differ is cut into parts in turn, down to ranges of at most
//! [`Checker::leaf`] rows, whose rows are read and compared ([`compare`]). A difference in a
//! batch of 50,000 rows costs one read of the thousand rows around it on each side: the digests
//! of a batch's parts cost the same one pass over its rows whatever their number, while every
//! level of narrowing would read the part again.

use crate::backfill::db::{Backend, Digest, KeyKind, KeyValue, TextRows};
use crate::backfill::error::{Error, ErrorKind, Result};
use crate::backfill::verify::compare::{Difference, compare};

/// Where the two sides are read: one database for both, or the expected side on another
/// (`--against-url`). The walked table is on the actual side's.
pub enum Sides<'b> {
    One(&'b mut dyn Backend),
    Two {
        expected: &'b mut dyn Backend,
        actual: &'b mut dyn Backend,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Expected,
    Actual,
}

impl Sides<'_> {
    fn get(&mut self, side: Side) -> &mut dyn Backend {
        match (self, side) {
            (Sides::One(b), _) => &mut **b,
            (Sides::Two { expected, .. }, Side::Expected) => &mut **expected,
            (Sides::Two { actual, .. }, Side::Actual) => &mut **actual,
        }
    }
}

/// A difference and the range a re-read reads again: the key's own, `(key - 1, key]`, for an
/// integer key, else the range it was found in.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub diff: Difference,
    pub lower: KeyValue,
    pub upper: KeyValue,
}

/// What the checks cost so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cost {
    /// Digests computed (each one query on one side).
    pub digests: u64,
    /// Ranges whose rows were read and compared.
    pub leaves: u64,
    /// Rows read to compare them.
    pub rows_read: u64,
    /// Time spent narrowing differences down (digests of parts, rows read), beyond the batches'
    /// own digests.
    pub narrowing: std::time::Duration,
}

/// Checks key ranges of a verification.
pub struct Checker {
    pub expected_sql: String,
    pub actual_sql: String,
    pub ordered: bool,
    /// The walked table and its key: where ranges are split.
    pub table: String,
    pub key: String,
    pub kind: KeyKind,
    /// Ranges of at most this many rows (on the larger side) are compared row by row.
    pub leaf: u64,
    pub cost: Cost,
}

/// The default [`Checker::leaf`].
pub const LEAF_ROWS: u64 = 1024;

/// The fewest parts a range is cut into to narrow a difference down: each level reads the range
/// once per side and leaves at most a sixteenth of it to look at.
pub const PARTS: u64 = 16;

/// The most parts a batch's range is cut into: a digest per part is one more `EXECUTE` in the
/// round trip, so a batch of up to 64 leaves costs one round trip per side and a difference in
/// it one read of a leaf.
pub const MAX_PARTS: u64 = 64;

impl Checker {
    /// The rows compared in `(lower, upper]` (the larger side's count) and the differences;
    /// `rows`: about how many rows of the walked table the range holds.
    pub fn check(
        &mut self,
        sides: &mut Sides<'_>,
        lower: &KeyValue,
        upper: &KeyValue,
        rows: u64,
    ) -> Result<(u64, Vec<Found>)> {
        // A range of a sixteenth of a leaf or less is one part: one digest per side, and its
        // rows read only when they differ (the sample's small batches).
        let bounds = if rows <= self.leaf / PARTS {
            Vec::new()
        } else {
            let parts = rows.div_ceil(self.leaf).clamp(PARTS, MAX_PARTS);
            self.split(sides, lower, upper, rows, parts)?
        };
        let e = self.digests(sides, Side::Expected, lower, upper, &bounds)?;
        let a = self.digests(sides, Side::Actual, lower, upper, &bounds)?;
        let total = |d: &[Digest]| d.iter().map(|d| d.rows).sum::<u64>();
        let mut found = Vec::new();
        let started = std::time::Instant::now();
        self.parts(sides, lower, upper, &bounds, &e, &a, &mut found)?;
        self.cost.narrowing += started.elapsed();
        Ok((total(&e).max(total(&a)), found))
    }

    /// Reads `(lower, upper]` again, row by row: every difference it holds now.
    pub fn recheck(
        &mut self,
        sides: &mut Sides<'_>,
        lower: &KeyValue,
        upper: &KeyValue,
    ) -> Result<Vec<Difference>> {
        let (columns, expected, actual) = self.read(sides, lower, upper)?;
        Ok(compare(
            &columns,
            &expected.rows,
            &actual.rows,
            self.ordered,
        ))
    }

    fn digests(
        &mut self,
        sides: &mut Sides<'_>,
        side: Side,
        lower: &KeyValue,
        upper: &KeyValue,
        bounds: &[KeyValue],
    ) -> Result<Vec<Digest>> {
        self.cost.digests += 1;
        let sql = match side {
            Side::Expected => &self.expected_sql,
            Side::Actual => &self.actual_sql,
        };
        sides
            .get(side)
            .range_digests(sql, lower, upper, bounds, self.ordered)
            .map_err(|e| e.context(side_name(side)))
    }

    /// Narrows each part of `(lower, upper]` cut at `bounds` whose digests differ.
    #[allow(clippy::too_many_arguments)]
    fn parts(
        &mut self,
        sides: &mut Sides<'_>,
        lower: &KeyValue,
        upper: &KeyValue,
        bounds: &[KeyValue],
        e: &[Digest],
        a: &[Digest],
        found: &mut Vec<Found>,
    ) -> Result<()> {
        let mut from = lower;
        for (i, to) in bounds.iter().chain(std::iter::once(upper)).enumerate() {
            if e[i] != a[i] {
                self.narrow(sides, from, to, e[i], a[i], found)?;
            }
            from = to;
        }
        Ok(())
    }

    /// Finds the differences of `(lower, upper]`, whose digests `e` and `a` differ: its rows
    /// when it is small, else its parts' digests, and the parts that differ in turn.
    fn narrow(
        &mut self,
        sides: &mut Sides<'_>,
        lower: &KeyValue,
        upper: &KeyValue,
        e: Digest,
        a: Digest,
        found: &mut Vec<Found>,
    ) -> Result<()> {
        let rows = e.rows.max(a.rows);
        if rows <= self.leaf {
            return self.leaf(sides, lower, upper, found);
        }
        // As many parts as make each small enough to read (at most PARTS): fewer statements
        // for the few thousand rows a part of a batch holds.
        let parts = rows.div_ceil(self.leaf).clamp(2, PARTS);
        let bounds = self.split(sides, lower, upper, rows, parts)?;
        if bounds.is_empty() {
            return self.leaf(sides, lower, upper, found);
        }
        let ep = self.digests(sides, Side::Expected, lower, upper, &bounds)?;
        let ap = self.digests(sides, Side::Actual, lower, upper, &bounds)?;
        self.parts(sides, lower, upper, &bounds, &ep, &ap, found)
    }

    /// Where to cut `(lower, upper]`, which holds about `rows` rows, into `parts` parts. An
    /// integer key is cut at equal distances between the walked table's first and last key in
    /// the range (two probes of the key's index: parts of equal row counts for the dense keys of
    /// a sequence, and no read of the range's index entries; keys past the last one are the last
    /// part's); a text key at the walked table's keys of equal row counts. Where the walked table
    /// has no key, an integer range is cut in the middle. None: it cannot be cut.
    fn split(
        &mut self,
        sides: &mut Sides<'_>,
        lower: &KeyValue,
        upper: &KeyValue,
        rows: u64,
        parts: u64,
    ) -> Result<Vec<KeyValue>> {
        let backend = sides.get(Side::Actual);
        let mut keys = match (lower, upper) {
            (KeyValue::Int(_), KeyValue::Int(_)) => {
                match backend.key_bounds(&self.table, &self.key, self.kind, lower, upper)? {
                    Some((KeyValue::Int(first), KeyValue::Int(last))) => {
                        equal_cuts(first.saturating_sub(1), last, parts)
                    }
                    _ => Vec::new(),
                }
            }
            _ => {
                backend.split_keys(&self.table, &self.key, self.kind, lower, upper, rows, parts)?
            }
        };
        keys.retain(|k| k != lower && k != upper);
        keys.dedup();
        if keys.is_empty()
            && let Some(middle) = midpoint(lower, upper)
        {
            keys.push(middle);
        }
        Ok(keys)
    }

    /// Compares the rows of `(lower, upper]`.
    fn leaf(
        &mut self,
        sides: &mut Sides<'_>,
        lower: &KeyValue,
        upper: &KeyValue,
        found: &mut Vec<Found>,
    ) -> Result<()> {
        self.cost.leaves += 1;
        let (columns, expected, actual) = self.read(sides, lower, upper)?;
        for diff in compare(&columns, &expected.rows, &actual.rows, self.ordered) {
            // An integer key's re-read reads its own rows only: `(key - 1, key]`.
            let (lower, upper) = match (lower, upper, diff.key.as_deref().map(str::parse::<i64>)) {
                (KeyValue::Int(lo), KeyValue::Int(hi), Some(Ok(key)))
                    if key > *lo && key <= *hi && key > i64::MIN =>
                {
                    (KeyValue::Int(key - 1), KeyValue::Int(key))
                }
                _ => (lower.clone(), upper.clone()),
            };
            found.push(Found { diff, lower, upper });
        }
        Ok(())
    }

    /// Both sides' rows of `(lower, upper]`, and the column names (the expected side's), once
    /// both sides are known to return as many columns.
    fn read(
        &mut self,
        sides: &mut Sides<'_>,
        lower: &KeyValue,
        upper: &KeyValue,
    ) -> Result<(Vec<String>, TextRows, TextRows)> {
        let expected = sides
            .get(Side::Expected)
            .range_rows(&self.expected_sql, lower, upper)
            .map_err(|e| e.context(side_name(Side::Expected)))?;
        let actual = sides
            .get(Side::Actual)
            .range_rows(&self.actual_sql, lower, upper)
            .map_err(|e| e.context(side_name(Side::Actual)))?;
        self.cost.rows_read += (expected.rows.len() + actual.rows.len()) as u64;
        if expected.columns.len() != actual.columns.len() {
            return Err(Error::new(
                ErrorKind::Statement,
                format!(
                    "the `-- @expected` query returns {} columns ({}) and the `-- @actual` query {} ({}): both return the key, then the same compared columns",
                    expected.columns.len(),
                    expected.columns.join(", "),
                    actual.columns.len(),
                    actual.columns.join(", ")
                ),
            ));
        }
        Ok((expected.columns.clone(), expected, actual))
    }
}

fn side_name(side: Side) -> &'static str {
    match side {
        Side::Expected => "the `-- @expected` query",
        Side::Actual => "the `-- @actual` query",
    }
}

/// Integers cutting `(low, high]` into `parts` parts of equal width, strictly between the two.
fn equal_cuts(low: i64, high: i64, parts: u64) -> Vec<KeyValue> {
    let (lo, hi) = (i128::from(low), i128::from(high));
    let mut cuts: Vec<KeyValue> = (1..i128::from(parts))
        .map(|i| lo + (hi - lo) * i / i128::from(parts))
        .filter(|c| *c > lo && *c < hi)
        .filter_map(|c| i64::try_from(c).ok().map(KeyValue::Int))
        .collect();
    cuts.dedup();
    cuts
}

/// The integer half way between two integer bounds, when there is one strictly between them.
fn midpoint(lower: &KeyValue, upper: &KeyValue) -> Option<KeyValue> {
    match (lower, upper) {
        (KeyValue::Int(l), KeyValue::Int(u)) if i128::from(*u) - i128::from(*l) >= 2 => {
            let middle = i128::from(*l) + (i128::from(*u) - i128::from(*l)) / 2;
            i64::try_from(middle).ok().map(KeyValue::Int)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backfill::db::sqlite::SqliteBackend;
    use crate::backfill::verify::compare::Category;

    /// `expected(id, v)` and `actual(id, v)` with ids 1..=n, v = id * 10; `actual` is walked.
    fn tables(n: i64) -> SqliteBackend {
        let mut db = SqliteBackend::throwaway().unwrap();
        db.execute(&format!(
            "CREATE TABLE expected (id integer PRIMARY KEY, v integer);
             CREATE TABLE actual (id integer PRIMARY KEY, v integer);
             WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < {n})
             INSERT INTO expected SELECT i, i * 10 FROM g;
             INSERT INTO actual SELECT * FROM expected;"
        ))
        .unwrap();
        db
    }

    fn checker(leaf: u64) -> Checker {
        Checker {
            expected_sql: "SELECT id, v FROM expected WHERE id > ?1 AND id <= ?2".into(),
            actual_sql: "SELECT id, v FROM actual WHERE id > ?1 AND id <= ?2".into(),
            ordered: false,
            table: "actual".into(),
            key: "id".into(),
            kind: KeyKind::Integer,
            leaf,
            cost: Cost::default(),
        }
    }

    fn keys(found: &[Found]) -> Vec<(String, Category)> {
        found
            .iter()
            .map(|f| (f.diff.key.clone().unwrap_or_default(), f.diff.category))
            .collect()
    }

    #[test]
    fn a_clean_range_costs_one_digest_per_side() {
        let mut db = tables(10_000);
        let mut c = checker(64);
        let (rows, found) = c
            .check(
                &mut Sides::One(&mut db),
                &KeyValue::Int(0),
                &KeyValue::Int(10_000),
                10_000,
            )
            .unwrap();
        assert_eq!((rows, found.len()), (10_000, 0));
        assert_eq!((c.cost.digests, c.cost.leaves, c.cost.rows_read), (2, 0, 0));
    }

    #[test]
    fn differences_are_narrowed_to_small_ranges_and_found() {
        let mut db = tables(10_000);
        db.execute(
            "UPDATE actual SET v = 0 WHERE id = 4321;
             DELETE FROM actual WHERE id = 17;
             INSERT INTO actual VALUES (20000, 1);",
        )
        .unwrap();
        let mut c = checker(64);
        let (_, found) = c
            .check(
                &mut Sides::One(&mut db),
                &KeyValue::Int(0),
                &KeyValue::Int(i64::MAX),
                10_000,
            )
            .unwrap();
        assert_eq!(
            keys(&found),
            vec![
                ("17".into(), Category::Missing),
                ("4321".into(), Category::Value),
                ("20000".into(), Category::Extra),
            ]
        );
        assert_eq!(found[1].diff.columns, vec!["v".to_string()]);
        // Three leaves of at most 64 rows, not ten thousand rows; a few levels of digests.
        assert!(c.cost.rows_read <= 3 * 2 * 64, "{:?}", c.cost);
        assert!(c.cost.digests <= 2 + 3 * 2 * 2, "{:?}", c.cost);
        // The range each was found in holds its key, and a re-read finds it again.
        let f = &found[1];
        let again = c
            .recheck(&mut Sides::One(&mut db), &f.lower, &f.upper)
            .unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].key.as_deref(), Some("4321"));
    }

    #[test]
    fn ordered_verifications_find_reordered_rows() {
        let mut db = SqliteBackend::throwaway().unwrap();
        db.execute(
            "CREATE TABLE t (id integer, pos integer, tag text);
             CREATE TABLE u (id integer, pos integer, tag text);
             INSERT INTO t VALUES (1, 1, 'a'), (1, 2, 'b'), (2, 1, 'c');
             INSERT INTO u VALUES (1, 1, 'b'), (1, 2, 'a'), (2, 1, 'c');",
        )
        .unwrap();
        let mut c = Checker {
            expected_sql: "SELECT id, tag FROM t WHERE id > ?1 AND id <= ?2 ORDER BY id, pos"
                .into(),
            actual_sql: "SELECT id, tag FROM u WHERE id > ?1 AND id <= ?2 ORDER BY id, pos".into(),
            ordered: true,
            table: "u".into(),
            ..checker(64)
        };
        let (_, found) = c
            .check(
                &mut Sides::One(&mut db),
                &KeyValue::Int(0),
                &KeyValue::Int(2),
                2,
            )
            .unwrap();
        assert_eq!(keys(&found), vec![("1".into(), Category::Order)]);
        c.ordered = false;
        c.expected_sql = c.expected_sql.replace(" ORDER BY id, pos", "");
        c.actual_sql = c.actual_sql.replace(" ORDER BY id, pos", "");
        let (_, found) = c
            .check(
                &mut Sides::One(&mut db),
                &KeyValue::Int(0),
                &KeyValue::Int(2),
                2,
            )
            .unwrap();
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn a_column_count_mismatch_is_an_error() {
        let mut db = tables(10);
        let mut c = checker(64);
        c.actual_sql = "SELECT id FROM actual WHERE id > ?1 AND id <= ?2".into();
        let e = c
            .check(
                &mut Sides::One(&mut db),
                &KeyValue::Int(0),
                &KeyValue::Int(10),
                10,
            )
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("returns 2 columns (id, v) and the `-- @actual` query 1 (id)"),
            "{e}"
        );
    }

    #[test]
    fn equal_cuts_stay_inside() {
        let ints = |v: Vec<KeyValue>| -> Vec<i64> {
            v.into_iter()
                .map(|k| match k {
                    KeyValue::Int(i) => i,
                    KeyValue::Text(_) => panic!(),
                })
                .collect()
        };
        assert_eq!(ints(equal_cuts(0, 16, 4)), vec![4, 8, 12]);
        assert_eq!(ints(equal_cuts(0, 2, 16)), vec![1]);
        assert!(equal_cuts(5, 6, 16).is_empty());
        assert_eq!(equal_cuts(i64::MIN, i64::MAX, 16).len(), 15);
    }

    #[test]
    fn midpoints() {
        assert_eq!(
            midpoint(&KeyValue::Int(0), &KeyValue::Int(10)),
            Some(KeyValue::Int(5))
        );
        assert_eq!(midpoint(&KeyValue::Int(4), &KeyValue::Int(5)), None);
        assert_eq!(
            midpoint(&KeyValue::Int(i64::MIN), &KeyValue::Int(i64::MAX)),
            Some(KeyValue::Int(-1))
        );
        assert_eq!(
            midpoint(&KeyValue::Text("a".into()), &KeyValue::Text("b".into())),
            None
        );
    }
}
