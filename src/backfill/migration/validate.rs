//! What each section's statement must be, checked on sqlparser's syntax tree once the parser has
//! cut it out of the file. The batch statement uses both `:lower` and `:upper`, and is one
//! UPDATE, DELETE or INSERT ... SELECT (never DDL) that works on the `-- @table` table alone and
//! selects its rows with `key > :lower AND key <= :upper` at the top of its WHERE clause. Checks
//! and the snapshot are queries, and the snapshot's rows come in one order every time, because
//! reviewers approve them as a file. The verification's `-- @expected` and `-- @actual` are
//! queries over `(:lower, :upper]` (both bounds used, no `LIMIT`), with the same number of
//! columns where the projection says, and either both or neither ending in an `ORDER BY` that
//! starts with the key (their first column).
//!
//! Each function here returns what is wrong as a one-line message; the parser adds the
//! `file:line` of the statement. The parser calls them for the batch, then each check, then the
//! snapshot, each as soon as its section is cut out, so the first mistake in that order is the
//! one reported.

use sqlparser::ast::{
    BinaryOperator, Expr, FromTable, GroupByExpr, Ident, ObjectName, ObjectNamePart, OrderByKind,
    Query, SelectItem, SetExpr, Statement, TableFactor, TableWithJoins, Value,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

/// The batch statement uses both bounds: `:lower` (`uses_lower`) and `:upper` (`uses_upper`).
pub(super) fn both_bounds_used(
    uses_lower: bool,
    uses_upper: bool,
    key: &str,
) -> Result<(), String> {
    for (used, name) in [(uses_lower, ":lower"), (uses_upper, ":upper")] {
        if !used {
            return Err(format!(
                "the batch statement never uses `{name}`: {}",
                bounds_help(key)
            ));
        }
    }
    Ok(())
}

/// The batch statement (its bounds written `$1` and `$2`) changes rows of `table` alone and
/// selects them by the bounds of `key`.
pub(super) fn batch_statement(sql: &str, table: &str, key: &str) -> Result<(), String> {
    let bounds_help = bounds_help(key);
    match parse_one(sql)? {
        Statement::Update(update) => {
            let target = single_table(std::slice::from_ref(&update.table));
            if target.is_none() {
                return Err("the batch statement must update one table (no joins in the target)".into());
            }
            target_and_bounds(target, update.selection.as_ref(), table, key, &bounds_help)
        }
        Statement::Delete(delete) => {
            let tables = match &delete.from {
                FromTable::WithFromKeyword(t) | FromTable::WithoutKeyword(t) => t,
            };
            let target = single_table(tables);
            if target.is_none() || !delete.tables.is_empty() {
                return Err("the batch statement must delete from one table".into());
            }
            target_and_bounds(target, delete.selection.as_ref(), table, key, &bounds_help)
        }
        Statement::Insert(insert) => {
            // INSERT ... SELECT copies rows of the batched table somewhere else: the bounds
            // belong to the SELECT that reads it.
            let select = insert.source.as_deref().and_then(|source| match &*source.body {
                SetExpr::Select(select) => Some(select),
                _ => None,
            });
            let Some(select) = select else {
                return Err(format!(
                    "the batch INSERT must read `{table}` with a plain SELECT: `INSERT ... SELECT ... FROM {table} WHERE {key} > :lower AND {key} <= :upper`"
                ));
            };
            target_and_bounds(single_table(&select.from), select.selection.as_ref(), table, key, &bounds_help)
        }
        Statement::Query(_) => {
            Err("the batch statement must change rows (UPDATE, DELETE or INSERT ... SELECT), found a query".into())
        }
        other => Err(format!(
            "no DDL or other statements in a data migration (found `{}`): its batch is one UPDATE, DELETE or INSERT ... SELECT; schema changes belong in migrations/",
            first_words(&other.to_string())
        )),
    }
}

/// The statement of the `-- {section}` section is one query; it is returned parsed.
pub(super) fn query(sql: &str, section: &str) -> Result<Box<Query>, String> {
    parse_query(sql).map_err(|m| format!("the `-- {section}` section must be a query: {m}"))
}

/// The snapshot query returns its rows in one order every time.
pub(super) fn deterministic_order(query: &Query) -> Result<(), String> {
    if deterministic(query) {
        Ok(())
    } else {
        Err("the snapshot query's row order is not deterministic: add `ORDER BY` a unique key (or select one row of aggregates)".into())
    }
}

/// A verification query (`section` names it) uses both bounds.
pub(super) fn range_bounds_used(
    uses_lower: bool,
    uses_upper: bool,
    section: &str,
    key: &str,
) -> Result<(), String> {
    for (used, name) in [(uses_lower, ":lower"), (uses_upper, ":upper")] {
        if !used {
            return Err(format!(
                "the `-- {section}` query never uses `{name}`: it reads one key range at a time, e.g. `WHERE {key} > :lower AND {key} <= :upper`"
            ));
        }
    }
    Ok(())
}

/// A verification query (its bounds written `$1` and `$2`): one query that returns every row of
/// the range.
pub(super) fn verification_query(sql: &str, section: &str) -> Result<Box<Query>, String> {
    let query = query(sql, section)?;
    if query.limit_clause.is_some() || query.fetch.is_some() {
        return Err(format!(
            "the `-- {section}` query has a LIMIT, OFFSET or FETCH: it must return every row of the key range, or rows would go unverified"
        ));
    }
    Ok(query)
}

/// `-- @expected` and `-- @actual` agree on their shape. `Ok(ordered)`: whether row order is
/// compared (both end in `ORDER BY key, ...`). `Err((on_actual, message))`: what is wrong, and
/// whether the `-- @actual` query (else `-- @expected`) is the one to fix.
pub(super) fn verification_pair(expected: &Query, actual: &Query) -> Result<bool, (bool, String)> {
    let (e_ordered, a_ordered) = (has_order_by(expected), has_order_by(actual));
    if e_ordered != a_ordered {
        let (on_actual, has, lacks) = if e_ordered {
            (true, "@expected", "@actual")
        } else {
            (false, "@actual", "@expected")
        };
        return Err((
            on_actual,
            format!(
                "the `-- {has}` query has an ORDER BY and the `-- {lacks}` query none: row order is compared only when both queries order their rows (by the key first); add it to both, or remove it"
            ),
        ));
    }
    if e_ordered {
        for (on_actual, name, query) in [(false, "@expected", expected), (true, "@actual", actual)]
        {
            if !orders_by_key_first(query) {
                return Err((
                    on_actual,
                    format!(
                        "the `-- {name}` query's ORDER BY must start with the key, its first column (`ORDER BY 1, ...` or the column's name): the rows of each key are compared in order"
                    ),
                ));
            }
        }
    }
    if let (Some(e), Some(a)) = (column_count(expected), column_count(actual))
        && e != a
    {
        return Err((
            true,
            format!(
                "the `-- @actual` query returns {a} columns and the `-- @expected` query {e}: both return the key, then the same compared columns"
            ),
        ));
    }
    Ok(e_ordered)
}

fn has_order_by(query: &Query) -> bool {
    query.order_by.as_ref().is_some_and(|o| match &o.kind {
        OrderByKind::Expressions(exprs) => !exprs.is_empty(),
        OrderByKind::All(_) => true,
    })
}

/// The top-level SELECT's projection, when the query is one.
fn projection(query: &Query) -> Option<&[SelectItem]> {
    match &*query.body {
        SetExpr::Select(select) => Some(&select.projection),
        SetExpr::Query(inner) => projection(inner),
        _ => None,
    }
}

/// The number of columns the query returns, when its projection says (no `*`).
fn column_count(query: &Query) -> Option<usize> {
    let items = projection(query)?;
    items
        .iter()
        .all(|i| {
            matches!(
                i,
                SelectItem::UnnamedExpr(_) | SelectItem::ExprWithAlias { .. }
            )
        })
        .then_some(items.len())
}

/// The query's ORDER BY starts with its first output column: `1`, that column's alias or
/// expression, or (for a bare column) its name.
fn orders_by_key_first(query: &Query) -> bool {
    let Some(first) = query.order_by.as_ref().and_then(|o| match &o.kind {
        OrderByKind::Expressions(exprs) => exprs.first().map(|e| &e.expr),
        OrderByKind::All(_) => None,
    }) else {
        return false;
    };
    if let Expr::Value(v) = first
        && v.value == Value::Number("1".into(), false)
    {
        return true;
    }
    let name_of = |e: &Expr| match e {
        Expr::Identifier(ident) => Some(normalize(ident)),
        Expr::CompoundIdentifier(parts) => parts.last().map(normalize),
        _ => None,
    };
    match projection(query).and_then(|p| p.first()) {
        Some(SelectItem::ExprWithAlias { expr, alias }) => {
            expr == first || name_of(first).is_some_and(|n| n == normalize(alias))
        }
        Some(SelectItem::UnnamedExpr(expr)) => {
            expr == first || (name_of(expr).is_some() && name_of(expr) == name_of(first))
        }
        // `SELECT *`: the first column is not known here; the key's name is the best guess.
        _ => name_of(first).is_some(),
    }
}

fn bounds_help(key: &str) -> String {
    format!("select the batch's rows with `WHERE {key} > :lower AND {key} <= :upper`")
}

fn parse_one(sql: &str) -> Result<Statement, String> {
    let mut statements = Parser::parse_sql(&PostgreSqlDialect {}, sql)
        .map_err(|e| format!("does not parse: {e}"))?;
    match (statements.pop(), statements.is_empty()) {
        (Some(statement), true) => Ok(statement),
        _ => Err("expected exactly one statement".into()),
    }
}

fn parse_query(sql: &str) -> Result<Box<Query>, String> {
    match parse_one(sql)? {
        Statement::Query(query) => Ok(query),
        other => Err(format!("found `{}`", first_words(&other.to_string()))),
    }
}

fn first_words(sql: &str) -> String {
    sql.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}

/// The batch's `target` is `table`, and its `filter` bounds `key` by both placeholders.
fn target_and_bounds(
    target: Option<&ObjectName>,
    filter: Option<&Expr>,
    table: &str,
    key: &str,
    bounds_help: &str,
) -> Result<(), String> {
    let Some(target) = target else {
        return Err(format!("the batch statement must work on `{table}` alone"));
    };
    let name = last_part(target);
    if name.as_deref() != Some(table) {
        return Err(format!(
            "the batch statement works on `{target}`, but `-- @table` is `{table}`: one data migration walks one table"
        ));
    }
    let mut found = (false, false);
    if let Some(filter) = filter {
        bounds(filter, key, &mut found);
    }
    match found {
        (true, true) => Ok(()),
        _ => Err(format!(
            "the key bounds are not both on `{key}` at the top of the WHERE clause; {bounds_help}"
        )),
    }
}

fn single_table(from: &[TableWithJoins]) -> Option<&ObjectName> {
    match from {
        [only] if only.joins.is_empty() => match &only.relation {
            TableFactor::Table { name, .. } => Some(name),
            _ => None,
        },
        _ => None,
    }
}

/// An identifier as the directives normalize names: unquoted folded to lower case, quoted kept.
fn normalize(ident: &Ident) -> String {
    match ident.quote_style {
        None => ident.value.to_lowercase(),
        Some(_) => ident.value.clone(),
    }
}

fn last_part(name: &ObjectName) -> Option<String> {
    match name.0.last()? {
        ObjectNamePart::Identifier(ident) => Some(normalize(ident)),
        _ => None,
    }
}

/// Looks through the `AND`s at the top of `expr` for `key > $1` and `key <= $2` (either way
/// round). Anything under an `OR` or a function does not bound the batch, so it is not looked at.
fn bounds(expr: &Expr, key: &str, found: &mut (bool, bool)) {
    let is_key = |e: &Expr| match e {
        Expr::Identifier(ident) => normalize(ident) == key,
        Expr::CompoundIdentifier(parts) => parts.last().is_some_and(|p| normalize(p) == key),
        _ => false,
    };
    let is_param = |e: &Expr, name: &str| matches!(e, Expr::Value(v) if v.value == Value::Placeholder(name.into()));
    match expr {
        Expr::Nested(inner) => bounds(inner, key, found),
        Expr::BinaryOp { left, op, right } => match op {
            BinaryOperator::And => {
                bounds(left, key, found);
                bounds(right, key, found);
            }
            BinaryOperator::Gt if is_key(left) && is_param(right, "$1") => found.0 = true,
            BinaryOperator::Lt if is_param(left, "$1") && is_key(right) => found.0 = true,
            BinaryOperator::LtEq if is_key(left) && is_param(right, "$2") => found.1 = true,
            BinaryOperator::GtEq if is_param(left, "$2") && is_key(right) => found.1 = true,
            _ => {}
        },
        _ => {}
    }
}

/// Whether a query returns its rows in one order every time: it has an `ORDER BY`, or it returns
/// a single row (aggregates without `GROUP BY`).
fn deterministic(query: &Query) -> bool {
    if let Some(order_by) = &query.order_by {
        return match &order_by.kind {
            OrderByKind::Expressions(exprs) => !exprs.is_empty(),
            OrderByKind::All(_) => true,
        };
    }
    if query.limit_clause.is_some() || query.fetch.is_some() {
        return false;
    }
    match &*query.body {
        SetExpr::Select(select) => {
            let no_group =
                matches!(&select.group_by, GroupByExpr::Expressions(e, _) if e.is_empty());
            no_group
                && select.having.is_none()
                && !select.projection.is_empty()
                && select.projection.iter().all(|item| match item {
                    SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                        single_value(e)
                    }
                    _ => false,
                })
        }
        SetExpr::Query(inner) => deterministic(inner),
        _ => false,
    }
}

/// An expression that has one value over all rows of a `SELECT` without `GROUP BY`: an aggregate
/// whose result does not depend on row order, a constant, a deterministic scalar subquery, or
/// arithmetic of those. A bare column is not: without `GROUP BY` it has one value per row.
fn single_value(expr: &Expr) -> bool {
    const ORDER_FREE_AGGREGATES: [&str; 8] = [
        "count", "sum", "total", "min", "max", "avg", "bool_and", "bool_or",
    ];
    match expr {
        Expr::Value(_) => true,
        Expr::Nested(e) | Expr::Cast { expr: e, .. } | Expr::UnaryOp { expr: e, .. } => {
            single_value(e)
        }
        Expr::BinaryOp { left, right, .. } => single_value(left) && single_value(right),
        Expr::Subquery(q) => deterministic(q),
        Expr::Function(f) => {
            let name = f.name.0.last().and_then(|p| match p {
                ObjectNamePart::Identifier(i) => Some(i.value.to_lowercase()),
                _ => None,
            });
            name.is_some_and(|n| ORDER_FREE_AGGREGATES.contains(&n.as_str())) && f.over.is_none()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use crate::backfill::migration::example::{error, good_with, parse_text};

    #[test]
    fn bounds_may_be_written_either_way_round_and_qualified() {
        let text = good_with(
            "WHERE id > :lower AND id <= :upper",
            "WHERE (:lower < users.id) AND (:upper >= users.id)",
        );
        parse_text(&text).unwrap();
    }

    #[test]
    fn missing_placeholder() {
        let e = error(&good_with("AND id <= :upper", "AND id <= 100"));
        assert!(
            e.contains(":9: the batch statement never uses `:upper`"),
            "{e}"
        );
    }

    #[test]
    fn placeholders_not_used_as_key_bounds() {
        let e = error(&good_with(
            "WHERE id > :lower AND id <= :upper",
            "WHERE posts_count > :lower OR id <= :upper",
        ));
        assert!(e.contains(":9: the key bounds are not both on `id`"), "{e}");
        let e = error(&good_with(
            "WHERE id > :lower AND id <= :upper",
            "WHERE id >= :lower AND id <= :upper",
        ));
        assert!(e.contains("the key bounds are not both on `id`"), "{e}");
    }

    #[test]
    fn batch_on_another_table() {
        let e = error(&good_with("UPDATE users SET", "UPDATE posts SET"));
        assert!(
            e.contains("works on `posts`, but `-- @table` is `users`"),
            "{e}"
        );
    }

    #[test]
    fn ddl_is_refused() {
        let text = good_with(
            "UPDATE users SET posts_count = (SELECT count(*) FROM posts WHERE posts.author_id = users.id)\nWHERE id > :lower AND id <= :upper;",
            "ALTER TABLE users ADD COLUMN x int DEFAULT :lower + :upper;",
        );
        let e = error(&text);
        assert!(e.contains("no DDL"), "{e}");
    }

    #[test]
    fn delete_and_insert_select_batches() {
        let delete = good_with(
            "UPDATE users SET posts_count = (SELECT count(*) FROM posts WHERE posts.author_id = users.id)",
            "DELETE FROM users",
        );
        parse_text(&delete).unwrap();
        let insert = good_with(
            "UPDATE users SET posts_count = (SELECT count(*) FROM posts WHERE posts.author_id = users.id)\nWHERE",
            "INSERT INTO archive (id) SELECT id FROM users WHERE",
        );
        parse_text(&insert).unwrap();
    }

    #[test]
    fn check_must_be_a_query() {
        let e = error(&good_with(
            "SELECT id FROM users WHERE posts_count",
            "DELETE FROM users WHERE posts_count",
        ));
        assert!(
            e.contains(":13: the `-- @check` section must be a query: found `DELETE FROM`"),
            "{e}"
        );
        let e = error(&good_with(
            "-- @check every posts_count matches",
            "-- @check",
        ));
        assert!(e.contains(":12: `-- @check` needs a description"), "{e}");
    }

    #[test]
    fn snapshot_must_be_deterministic() {
        let e = error(&good_with("FROM users ORDER BY id", "FROM users"));
        assert!(
            e.contains(":16: the snapshot query's row order is not deterministic"),
            "{e}"
        );
        let e = error(&good_with(
            "SELECT id, posts_count FROM users ORDER BY id",
            "SELECT id FROM users LIMIT 3",
        ));
        assert!(e.contains("not deterministic"), "{e}");
        let e = error(&good_with(
            "SELECT id, posts_count FROM users ORDER BY id",
            "SELECT author_id, count(*) FROM posts GROUP BY author_id",
        ));
        assert!(e.contains("not deterministic"), "{e}");
        let e = error(&good_with(
            "SELECT id, posts_count FROM users ORDER BY id",
            "SELECT string_agg(handle, ',') FROM users",
        ));
        assert!(e.contains("not deterministic"), "{e}");
        for single_row in [
            "SELECT count(*), sum(posts_count) FROM users",
            "SELECT (SELECT count(*) FROM users) AS n, (SELECT max(id) FROM posts) + 1",
            "SELECT sum(posts_count) - count(*) AS excess FROM users WHERE posts_count > 0",
        ] {
            parse_text(&good_with(
                "SELECT id, posts_count FROM users ORDER BY id",
                single_row,
            ))
            .unwrap();
        }
    }

    /// GOOD with a verification appended.
    fn verified(expected: &str, actual: &str) -> String {
        format!(
            "{}\n-- @expected\n{expected};\n\n-- @actual\n{actual};\n",
            crate::backfill::migration::example::GOOD
        )
    }

    const EXPECTED: &str = "SELECT u.id, (SELECT count(*) FROM posts AS p WHERE p.author_id = u.id) AS posts_count\nFROM users AS u WHERE u.id > :lower AND u.id <= :upper";
    const ACTUAL: &str = "SELECT id, posts_count FROM users WHERE id > :lower AND id <= :upper";

    #[test]
    fn a_verification_parses_with_its_placeholders_rewritten() {
        let m = parse_text(&verified(EXPECTED, ACTUAL)).unwrap();
        let v = m.verify.expect("a verification");
        assert!(!v.ordered);
        assert_eq!(v.expected.section.directive_line, 18);
        assert_eq!(v.expected.section.line, 19);
        assert!(
            v.expected
                .postgres
                .ends_with("WHERE u.id > $1 AND u.id <= $2"),
            "{}",
            v.expected.postgres
        );
        assert_eq!(
            v.actual.sqlite,
            "SELECT id, posts_count FROM users WHERE id > ?1 AND id <= ?2"
        );
        assert_eq!(v.actual.section.line, 23);
        assert!(
            parse_text(crate::backfill::migration::example::GOOD)
                .unwrap()
                .verify
                .is_none()
        );
    }

    #[test]
    fn ordered_verifications_order_both_queries_by_the_key_first() {
        let ordered = |e: &str, a: &str| {
            parse_text(&verified(
                &format!("{EXPECTED} {e}"),
                &format!("{ACTUAL} {a}"),
            ))
            .map(|m| m.verify.unwrap().ordered)
        };
        assert!(ordered("ORDER BY 1, 2", "ORDER BY id, posts_count").unwrap());
        assert!(ordered("ORDER BY u.id", "ORDER BY 1 DESC").unwrap());
        let e = ordered("ORDER BY u.id", "").unwrap_err().to_string();
        assert!(
            e.contains(
                ":23: the `-- @expected` query has an ORDER BY and the `-- @actual` query none"
            ),
            "{e}"
        );
        let e = ordered("ORDER BY posts_count, u.id", "ORDER BY id")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(":19: the `-- @expected` query's ORDER BY must start with the key"),
            "{e}"
        );
    }

    #[test]
    fn verification_mistakes_name_their_line() {
        let e = error(&verified(
            EXPECTED,
            "SELECT id, posts_count FROM users WHERE id > :lower",
        ));
        assert!(
            e.contains(":23: the `-- @actual` query never uses `:upper`"),
            "{e}"
        );
        let e = error(&verified(EXPECTED, &format!("{ACTUAL} LIMIT 10")));
        assert!(e.contains(":23: the `-- @actual` query has a LIMIT"), "{e}");
        let e = error(&verified(
            EXPECTED,
            "SELECT id FROM users WHERE id > :lower AND id <= :upper",
        ));
        assert!(
            e.contains(
                ":23: the `-- @actual` query returns 1 columns and the `-- @expected` query 2"
            ),
            "{e}"
        );
        let e = error(&verified(
            EXPECTED,
            "UPDATE users SET posts_count = 0 WHERE id > :lower AND id <= :upper",
        ));
        assert!(
            e.contains(":23: the `-- @actual` section must be a query: found `UPDATE users`"),
            "{e}"
        );
        let e = error(&format!(
            "{}\n-- @expected\n{EXPECTED};\n",
            crate::backfill::migration::example::GOOD
        ));
        assert!(
            e.contains(":1: `-- @expected` (line 18) has no `-- @actual` section"),
            "{e}"
        );
        let e = error(&format!(
            "{}\n-- @actual\n{ACTUAL};\n-- @actual\n{ACTUAL};\n",
            crate::backfill::migration::example::GOOD
        ));
        assert!(e.contains("a second `-- @actual` section"), "{e}");
        // `SELECT *` leaves the column count to the run.
        parse_text(&verified(
            EXPECTED,
            "SELECT * FROM users WHERE id > :lower AND id <= :upper",
        ))
        .unwrap();
    }
}
