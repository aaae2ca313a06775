//! Comparing the rows of one key range, expected against actual, and naming each difference:
//! pure functions of the rows, no database.
//!
//! Rows are grouped by their key (the first column, as text). A key's rows on each side are a
//! list, usually of one row. Per key:
//! - **missing**: expected, absent from the actual rows;
//! - **extra**: present, not expected;
//! - **length**: present on both sides, with another number of rows;
//! - **order**: the same rows in another order (only when order is part of the contract, an
//!   ordered verification);
//! - **value**: the same number of rows, some values differ: the columns whose values differ are
//!   named.
//!
//! Keys come out in the order they were first seen (the expected rows first).

use std::collections::HashMap;

use serde::Serialize;

use crate::backfill::db::TextRow;

/// What kind of difference a key has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    Missing,
    Extra,
    Value,
    Length,
    Order,
}

impl Category {
    pub const ALL: [Category; 5] = [
        Category::Missing,
        Category::Extra,
        Category::Value,
        Category::Length,
        Category::Order,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Category::Missing => "missing",
            Category::Extra => "extra",
            Category::Value => "value",
            Category::Length => "length",
            Category::Order => "order",
        }
    }

    pub fn parse(text: &str) -> Option<Category> {
        Category::ALL.into_iter().find(|c| c.as_str() == text)
    }

    /// What the category means, for the summary.
    pub fn meaning(self) -> &'static str {
        match self {
            Category::Missing => "expected, absent",
            Category::Extra => "present, not expected",
            Category::Value => "values differ",
            Category::Length => "another number of rows",
            Category::Order => "same rows, another order",
        }
    }
}

/// One key's difference, with its rows on both sides (shown only with `--show-values`).
#[derive(Debug, Clone, PartialEq)]
pub struct Difference {
    /// The key as text; `None` for a NULL key.
    pub key: Option<String>,
    pub category: Category,
    /// For [`Category::Value`]: the compared columns whose values differ.
    pub columns: Vec<String>,
    pub expected: Vec<TextRow>,
    pub actual: Vec<TextRow>,
}

/// The rows of one key on both sides.
#[derive(Default)]
struct Group<'r> {
    expected: Vec<&'r TextRow>,
    actual: Vec<&'r TextRow>,
}

/// Compares the rows of one key range. `columns` names the columns (the key first); `ordered`:
/// the order of a key's rows is part of the contract.
pub fn compare(
    columns: &[String],
    expected: &[TextRow],
    actual: &[TextRow],
    ordered: bool,
) -> Vec<Difference> {
    let mut order: Vec<Option<&str>> = Vec::new();
    let mut groups: HashMap<Option<&str>, Group<'_>> = HashMap::new();
    for (rows, is_expected) in [(expected, true), (actual, false)] {
        for row in rows {
            let key = row.first().and_then(|k| k.as_deref());
            let group = groups.entry(key).or_insert_with(|| {
                order.push(key);
                Group::default()
            });
            if is_expected {
                group.expected.push(row);
            } else {
                group.actual.push(row);
            }
        }
    }
    let mut out = Vec::new();
    for key in order {
        let group = &groups[&key];
        if let Some((category, differing)) = compare_key(group, ordered) {
            out.push(Difference {
                key: key.map(str::to_string),
                category,
                columns: differing
                    .into_iter()
                    .map(|i| {
                        columns
                            .get(i)
                            .cloned()
                            .unwrap_or_else(|| format!("#{}", i + 1))
                    })
                    .collect(),
                expected: group.expected.iter().map(|r| (*r).clone()).collect(),
                actual: group.actual.iter().map(|r| (*r).clone()).collect(),
            });
        }
    }
    out
}

/// The difference of one key's rows, with the indexes of the differing columns for a value
/// difference; `None` when they agree.
fn compare_key(group: &Group<'_>, ordered: bool) -> Option<(Category, Vec<usize>)> {
    let (e, a) = (&group.expected, &group.actual);
    if a.is_empty() {
        return Some((Category::Missing, Vec::new()));
    }
    if e.is_empty() {
        return Some((Category::Extra, Vec::new()));
    }
    if e.len() != a.len() {
        return Some((Category::Length, Vec::new()));
    }
    if e == a {
        return None;
    }
    let (mut se, mut sa) = (e.clone(), a.clone());
    se.sort();
    sa.sort();
    if se == sa {
        // The same rows: another order matters only when order is part of the contract.
        return ordered.then(|| (Category::Order, Vec::new()));
    }
    // Pair the rows: in their order when it is part of the contract, else sorted.
    let pairs: Vec<(&TextRow, &TextRow)> = if ordered {
        e.iter().copied().zip(a.iter().copied()).collect()
    } else {
        se.iter().copied().zip(sa.iter().copied()).collect()
    };
    let width = pairs
        .iter()
        .map(|(x, y)| x.len().max(y.len()))
        .max()
        .unwrap_or(0);
    let differing: Vec<usize> = (1..width)
        .filter(|&i| pairs.iter().any(|(x, y)| x.get(i) != y.get(i)))
        .collect();
    Some((Category::Value, differing))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(values: &[Option<&str>]) -> TextRow {
        values.iter().map(|v| v.map(str::to_string)).collect()
    }

    fn names() -> Vec<String> {
        ["id", "posts_count", "handle"].map(String::from).to_vec()
    }

    fn summary(diffs: &[Difference]) -> Vec<(Option<&str>, Category, Vec<&str>)> {
        diffs
            .iter()
            .map(|d| {
                (
                    d.key.as_deref(),
                    d.category,
                    d.columns.iter().map(String::as_str).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn equal_rows_in_any_order_agree() {
        let e = [
            row(&[Some("1"), Some("5"), Some("a")]),
            row(&[Some("2"), Some("0"), None]),
        ];
        let a = [e[1].clone(), e[0].clone()];
        assert!(compare(&names(), &e, &a, false).is_empty());
    }

    #[test]
    fn each_category_is_named_with_its_key() {
        let e = [
            row(&[Some("1"), Some("5"), Some("a")]),
            row(&[Some("2"), Some("3"), Some("b")]),
            row(&[Some("3"), Some("1"), Some("c")]),
            row(&[Some("5"), Some("1"), Some("e")]),
        ];
        let a = [
            row(&[Some("1"), Some("5"), Some("a")]),
            // value: posts_count and handle differ; NULL is not the empty string
            row(&[Some("2"), Some("4"), None]),
            // 3 missing; 4 extra
            row(&[Some("4"), Some("0"), Some("d")]),
            // length: two rows of key 5
            row(&[Some("5"), Some("1"), Some("e")]),
            row(&[Some("5"), Some("1"), Some("e")]),
        ];
        let diffs = compare(&names(), &e, &a, false);
        assert_eq!(
            summary(&diffs),
            vec![
                (Some("2"), Category::Value, vec!["posts_count", "handle"]),
                (Some("3"), Category::Missing, vec![]),
                (Some("5"), Category::Length, vec![]),
                (Some("4"), Category::Extra, vec![]),
            ]
        );
        assert_eq!(diffs[0].expected, vec![e[1].clone()]);
        assert_eq!(diffs[0].actual, vec![a[1].clone()]);
    }

    #[test]
    fn order_counts_only_when_it_is_part_of_the_contract() {
        let e = [
            row(&[Some("1"), Some("x"), None]),
            row(&[Some("1"), Some("y"), None]),
        ];
        let a = [e[1].clone(), e[0].clone()];
        assert!(compare(&names(), &e, &a, false).is_empty());
        assert_eq!(
            summary(&compare(&names(), &e, &a, true)),
            vec![(Some("1"), Category::Order, vec![])]
        );
        // Reordered and changed: a value difference, paired in order.
        let a = [
            row(&[Some("1"), Some("y"), None]),
            row(&[Some("1"), Some("z"), None]),
        ];
        assert_eq!(
            summary(&compare(&names(), &e, &a, true)),
            vec![(Some("1"), Category::Value, vec!["posts_count"])]
        );
    }

    #[test]
    fn a_null_key_is_a_key_of_its_own() {
        let e = [row(&[None, Some("1"), None])];
        let diffs = compare(&names(), &e, &[], false);
        assert_eq!(summary(&diffs), vec![(None, Category::Missing, vec![])]);
    }
}
