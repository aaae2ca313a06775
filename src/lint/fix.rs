//! `migrate lint --fix`: moves an inline backfill out of a schema migration into a new data
//! migration.
//!
//! A fixable finding is a `backfill-update` or `backfill-delete` on a top-level statement of a
//! migration above the baseline (one that has not run anywhere, so its text may change). The
//! statement leaves the schema migration (a comment names where it went) and becomes the batch
//! statement of a new data migration in the data-migrations directory:
//!
//! - `@requires` the schema migration's version, `@table` the statement's table, `@key` its
//!   primary key (one column, declared by a `CREATE TABLE` in the migrations);
//! - the batch: the statement with `key > :lower AND key <= :upper AND (its condition)`;
//! - a check: the rows the statement selects whose columns do not hold the assigned values yet
//!   (`col IS DISTINCT FROM (expr)`), or, for a DELETE, the rows it would still delete. No check
//!   is derived when an assigned value reads an assigned column (`n = n + 1`): applying it again
//!   changes the row, so "not yet applied" cannot be told from the row;
//! - a snapshot: the key and the assigned columns of every row, in key order (for a DELETE, the
//!   rows left).
//!
//! What cannot be moved safely is refused with the reason and changes nothing: a statement in a
//! `DO` block or a function, one that reads or joins other tables in its target (`FROM`,
//! `USING`), one with `RETURNING`, `ORDER BY` or `LIMIT`, a non-deterministic one (`now()`,
//! `random()`, a sequence: each batch would compute another value than the single statement),
//! a table without a one-column primary key, and the other backfill rules (a copy, a type
//! change, a table rebuild), which need a data migration written by hand.
//!
//! Nothing here writes: [`plan`] returns the files' new texts, the command shows them as a diff
//! or writes them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use sqlparser::ast::{
    AssignmentTarget, ColumnOption, Expr, FromTable, Ident, ObjectName, ObjectNamePart,
    Statement as Ast, TableConstraint, TableFactor, TableWithJoins,
};
use sqlparser::dialect::{Dialect as SqlDialect, PostgreSqlDialect, SQLiteDialect};
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, Tokenizer};

use super::{LintOptions, Report, RuleId, migration_version};
use crate::sql::{Dialect, Origin, StmtKind};

/// A file's new text: `before` is `None` for a file the fix creates.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub path: PathBuf,
    pub before: Option<String>,
    pub after: String,
}

/// A backfill finding the fix leaves alone, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub path: PathBuf,
    pub line: usize,
    pub rule: RuleId,
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct FixPlan {
    /// Schema migrations first (in migration order), then the data migrations they gave.
    pub changes: Vec<Change>,
    pub refused: Vec<Refusal>,
}

impl FixPlan {
    /// The data migrations the fix creates, by path.
    pub fn created(&self) -> impl Iterator<Item = &Path> {
        self.changes
            .iter()
            .filter(|c| c.before.is_none())
            .map(|c| c.path.as_path())
    }
}

/// Functions (and keywords) whose value changes from one call, or one transaction, to the next.
const NON_DETERMINISTIC: &[&str] = &[
    "random",
    "now",
    "clock_timestamp",
    "statement_timestamp",
    "transaction_timestamp",
    "timeofday",
    "current_timestamp",
    "current_time",
    "current_date",
    "localtimestamp",
    "localtime",
    "nextval",
    "setval",
    "gen_random_uuid",
    "uuid_generate_v1",
    "uuid_generate_v4",
    "txid_current",
    "pg_current_xact_id",
    "randomblob",
    "changes",
    "last_insert_rowid",
];

/// Plans the fix of every movable backfill finding in `report`, a lint of the migrations (all of
/// them, in migration order, so each table's primary key is known). New data migrations are
/// numbered after the highest version in `data_dir`.
pub fn plan(report: &Report, data_dir: &Path, options: &LintOptions) -> FixPlan {
    let mut next_version = next_data_version(data_dir);
    let mut keys: HashMap<String, Option<String>> = HashMap::new();
    let mut plan = FixPlan::default();
    let mut created = Vec::new();

    for file in &report.files {
        let parsed = super::parse_guarded(&file.text, options.dialect);
        // The statements to cut out of this file: (span, replacement comment).
        let mut cuts: Vec<(std::ops::Range<usize>, String)> = Vec::new();
        let line_of = |offset: usize| {
            file.text[..offset.min(file.text.len())]
                .matches('\n')
                .count()
                + 1
        };

        for finding in &file.findings {
            if finding.rule.category() != super::rule_id::Category::Backfill {
                continue;
            }
            let line = line_of(finding.span.start);
            let refuse = |reason: String| Refusal {
                path: file.path.clone(),
                line,
                rule: finding.rule,
                reason,
            };
            if !matches!(
                finding.rule,
                RuleId::BackfillUpdate | RuleId::BackfillDelete
            ) {
                plan.refused.push(refuse(format!(
                    "only a single-table UPDATE or DELETE moves by itself; write this data migration by hand (`cargo xtask migrate lint --explain {}`)",
                    finding.rule.as_str()
                )));
                continue;
            }
            let Some(stmt) = parsed.statements.iter().find(|s| s.span == finding.span) else {
                plan.refused.push(refuse(
                    "the statement was not found again in the file".into(),
                ));
                continue;
            };
            if stmt.origin != Origin::TopLevel {
                plan.refused.push(refuse(
                    "the statement runs inside a DO block or another statement: move it by hand"
                        .into(),
                ));
                continue;
            }
            let Some(version) = super::layout::version(options.layout, &file.path) else {
                plan.refused.push(refuse(
                    "the file has no migration version to require".into(),
                ));
                continue;
            };
            let text = &file.text[stmt.span.clone()];
            match move_statement(text, options.dialect, &keys) {
                Err(reason) => plan.refused.push(refuse(reason)),
                Ok(moved) => {
                    let id = unique_id(next_version, &moved.slug, &created);
                    next_version += 1;
                    let path = data_dir.join(format!("{id}.sql"));
                    let from = display_path(&file.path);
                    plan.changes.push(Change {
                        path: path.clone(),
                        before: None,
                        after: moved.data_migration(&from, line, version, &id),
                    });
                    created.push(id.clone());
                    cuts.push((
                        statement_with_semicolon(&file.text, stmt.span.clone()),
                        format!(
                            "-- Moved to {}: it runs there in batches, after this migration.",
                            display_path(&path)
                        ),
                    ));
                }
            }
        }

        if !cuts.is_empty() {
            let mut after = file.text.clone();
            cuts.sort_by_key(|(span, _)| std::cmp::Reverse(span.start));
            for (span, comment) in cuts {
                after.replace_range(span, &comment);
            }
            // Schema migrations go first: the diff reads as "out of here, into there".
            let at = plan.changes.iter().filter(|c| c.before.is_some()).count();
            plan.changes.insert(
                at,
                Change {
                    path: file.path.clone(),
                    before: Some(file.text.clone()),
                    after,
                },
            );
        }
        record_keys(&parsed, &file.text, options.dialect, &mut keys);
    }
    plan
}

/// A statement ready to become a data migration.
struct Moved {
    table: String,
    key: String,
    batch: String,
    check: Option<(String, String)>,
    /// Why there is no check, when there is none.
    no_check: Option<String>,
    snapshot: String,
    /// `backfill_<table>_<first column>` or `purge_<table>`.
    slug: String,
}

impl Moved {
    fn data_migration(&self, from: &str, line: usize, requires: u64, id: &str) -> String {
        let mut out = format!(
            "-- Moved out of {from} (line {line}) by `cargo xtask migrate lint --fix`: the statement\n\
             -- runs here in batches of `{key}`, each in its own short transaction, after that schema\n\
             -- migration, instead of locking every row of `{table}` at once inside it. Review the check\n\
             -- and the snapshot query, then `cargo xtask backfill sample {id}`.\n\
             --\n\
             -- @requires {requires}\n\
             -- @table {table}\n\
             -- @key {key}\n\n\
             -- @batch\n{batch};\n",
            key = self.key,
            table = self.table,
            batch = self.batch,
        );
        match (&self.check, &self.no_check) {
            (Some((what, sql)), _) => out.push_str(&format!("\n-- @check {what}\n{sql};\n")),
            (None, Some(why)) => out.push_str(&format!("\n-- No check was derived: {why}.\n")),
            (None, None) => {}
        }
        out.push_str(&format!("\n-- @snapshot\n{};\n", self.snapshot));
        out
    }
}

fn move_statement(
    text: &str,
    dialect: Dialect,
    keys: &HashMap<String, Option<String>>,
) -> Result<Moved, String> {
    let ast = parse_one(text, dialect)?;
    if let Some(word) = non_deterministic(text, dialect) {
        return Err(format!(
            "`{word}` is not deterministic: each batch would compute another value than the single statement did; write this data migration by hand"
        ));
    }
    let (target, selection, assignments) = match &ast {
        Ast::Update(update) => {
            if update.from.is_some() || !update.table.joins.is_empty() {
                return Err(
                    "the UPDATE reads other tables in FROM or a join: write this data migration by hand, batching the table it changes".into(),
                );
            }
            if update.returning.is_some() || update.limit.is_some() || !update.order_by.is_empty() {
                return Err("RETURNING, ORDER BY or LIMIT has no meaning in batches".into());
            }
            let mut assignments = Vec::new();
            for assignment in &update.assignments {
                match &assignment.target {
                    AssignmentTarget::ColumnName(name) => match last_ident(name) {
                        Some(column) => assignments.push((column, assignment.value.clone())),
                        None => return Err("an assignment target is not a column".into()),
                    },
                    AssignmentTarget::Tuple(_) => {
                        return Err(
                            "a tuple assignment `(a, b) = ...`: write this data migration by hand"
                                .into(),
                        );
                    }
                }
            }
            (&update.table, update.selection.clone(), Some(assignments))
        }
        Ast::Delete(delete) => {
            let tables = match &delete.from {
                FromTable::WithFromKeyword(t) | FromTable::WithoutKeyword(t) => t,
            };
            if !delete.tables.is_empty() || delete.using.is_some() || tables.len() != 1 {
                return Err(
                    "the DELETE reads other tables (USING, several tables): write this data migration by hand".into(),
                );
            }
            if delete.returning.is_some() || delete.limit.is_some() || !delete.order_by.is_empty() {
                return Err("RETURNING, ORDER BY or LIMIT has no meaning in batches".into());
            }
            (&tables[0], delete.selection.clone(), None)
        }
        _ => return Err("only a single-table UPDATE or DELETE moves by itself".into()),
    };
    let (table, alias) = relation(target)?;
    let key = match keys.get(&table) {
        Some(Some(key)) => key.clone(),
        Some(None) => {
            return Err(format!(
                "`{table}` has no one-column primary key: a data migration walks one unique key; write it by hand"
            ));
        }
        None => {
            return Err(format!(
                "no CREATE TABLE for `{table}` in the migrations before it, so its primary key is unknown: write this data migration by hand"
            ));
        }
    };
    let qualifier = alias.clone().unwrap_or_else(|| quote(&table));
    let key_ref = format!("{qualifier}.{}", quote(&key));
    let from = match &alias {
        Some(alias) => format!("{} AS {alias}", quote(&table)),
        None => quote(&table),
    };
    let condition = selection.as_ref().map(|e| format!("({e})"));

    // The batch: the statement, its condition narrowed to the batch's keys.
    let bounds = format!("{key_ref} > :lower AND {key_ref} <= :upper");
    let bounded = match &condition {
        Some(condition) => format!("{bounds} AND {condition}"),
        None => bounds,
    };
    let bounded_expr = parse_expr(&bounded, dialect)?;
    let mut batch = ast.clone();
    match &mut batch {
        Ast::Update(update) => update.selection = Some(bounded_expr),
        Ast::Delete(delete) => delete.selection = Some(bounded_expr),
        _ => unreachable!("only UPDATE and DELETE get here"),
    }
    let batch = format!("{batch:#}");

    let (check, no_check, snapshot, slug) = match assignments {
        Some(assignments) => {
            let assigned: Vec<String> = assignments.iter().map(|(c, _)| c.clone()).collect();
            let reads_assigned = assignments.iter().find_map(|(_, value)| {
                words(&value.to_string(), dialect)
                    .into_iter()
                    .find(|w| assigned.contains(w))
            });
            let (check, no_check) = match reads_assigned {
                Some(column) => (
                    None,
                    Some(format!(
                        "an assigned value reads `{column}`, which the statement changes, so a row does not show whether it was done"
                    )),
                ),
                None => {
                    let differs: Vec<String> = assignments
                        .iter()
                        .map(|(column, value)| {
                            format!("{qualifier}.{} IS DISTINCT FROM ({value})", quote(column))
                        })
                        .collect();
                    let differs = differs.join("\n    OR ");
                    let filter = match &condition {
                        Some(condition) => format!("{condition}\n  AND ({differs})"),
                        None => differs,
                    };
                    (
                        Some((
                            format!(
                                "every row the statement selects holds its new {}",
                                assigned.join(", ")
                            ),
                            format!(
                                "SELECT {key_ref}\nFROM {from}\nWHERE {filter}\nORDER BY {key_ref}"
                            ),
                        )),
                        None,
                    )
                }
            };
            let columns: Vec<String> = std::iter::once(key_ref.clone())
                .chain(assigned.iter().map(|c| format!("{qualifier}.{}", quote(c))))
                .collect();
            let snapshot = format!(
                "SELECT {}\nFROM {from}\nORDER BY {key_ref}",
                columns.join(", ")
            );
            let slug = format!("backfill_{table}_{}", assigned[0]);
            (check, no_check, snapshot, slug)
        }
        None => {
            let filter = condition.unwrap_or_else(|| "true".into());
            let check = (
                "no row the statement deletes is left".to_string(),
                format!("SELECT {key_ref}\nFROM {from}\nWHERE {filter}\nORDER BY {key_ref}"),
            );
            let snapshot = format!("SELECT {key_ref}\nFROM {from}\nORDER BY {key_ref}");
            (Some(check), None, snapshot, format!("purge_{table}"))
        }
    };
    for (what, sql) in [
        ("check", check.as_ref().map(|c| c.1.as_str())),
        ("snapshot", Some(&snapshot)),
    ] {
        if let Some(sql) = sql {
            parse_one(sql, dialect)
                .map_err(|e| format!("the derived {what} does not parse: {e}"))?;
        }
    }
    Ok(Moved {
        table,
        key,
        batch,
        check,
        no_check,
        snapshot,
        slug,
    })
}

fn sql_dialect(dialect: Dialect) -> Box<dyn SqlDialect> {
    match dialect {
        Dialect::Postgres => Box::new(PostgreSqlDialect {}),
        Dialect::Sqlite => Box::new(SQLiteDialect {}),
    }
}

fn parse_one(sql: &str, dialect: Dialect) -> Result<Ast, String> {
    let dialect = sql_dialect(dialect);
    let mut statements =
        Parser::parse_sql(dialect.as_ref(), sql).map_err(|e| format!("cannot rewrite it: {e}"))?;
    match statements.len() {
        1 => Ok(statements.remove(0)),
        _ => Err("cannot rewrite it: not one statement".into()),
    }
}

fn parse_expr(sql: &str, dialect: Dialect) -> Result<Expr, String> {
    let dialect = sql_dialect(dialect);
    Parser::new(dialect.as_ref())
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_expr())
        .map_err(|e| format!("cannot rewrite its condition: {e}"))
}

/// The words (identifiers and keywords, lower case unless quoted) of `sql`, from its tokens.
fn words(sql: &str, dialect: Dialect) -> Vec<String> {
    let dialect = sql_dialect(dialect);
    let Ok(tokens) = Tokenizer::new(dialect.as_ref(), sql).tokenize() else {
        return Vec::new();
    };
    tokens
        .into_iter()
        .filter_map(|t| match t {
            Token::Word(w) if w.quote_style.is_none() => Some(w.value.to_lowercase()),
            Token::Word(w) => Some(w.value),
            _ => None,
        })
        .collect()
}

/// The first non-deterministic function or keyword `sql` uses, from its tokens (a string literal
/// that spells `now()` is a string, not a call).
fn non_deterministic(sql: &str, dialect: Dialect) -> Option<String> {
    let dialect = sql_dialect(dialect);
    let tokens = Tokenizer::new(dialect.as_ref(), sql).tokenize().ok()?;
    tokens.into_iter().find_map(|t| match t {
        Token::Word(w)
            if w.quote_style.is_none()
                && NON_DETERMINISTIC.contains(&w.value.to_lowercase().as_str()) =>
        {
            Some(w.value.to_lowercase())
        }
        _ => None,
    })
}

/// The statement's table (unqualified, normalized) and its alias, as written.
fn relation(target: &TableWithJoins) -> Result<(String, Option<String>), String> {
    match &target.relation {
        TableFactor::Table { name, alias, .. } => {
            let table = last_ident(name).ok_or("the target is not a table")?;
            Ok((table, alias.as_ref().map(|a| a.name.to_string())))
        }
        _ => Err("the target is not a table".into()),
    }
}

fn normalize(ident: &Ident) -> String {
    match ident.quote_style {
        None => ident.value.to_lowercase(),
        Some(_) => ident.value.clone(),
    }
}

fn last_ident(name: &ObjectName) -> Option<String> {
    match name.0.last()? {
        ObjectNamePart::Identifier(ident) => Some(normalize(ident)),
        _ => None,
    }
}

/// An identifier as SQL text: bare when it is a plain lower-case name, quoted otherwise.
fn quote(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// Records the one-column primary key of each table the file creates (`None`: none, or several
/// columns), and forgets dropped tables.
fn record_keys(
    parsed: &crate::sql::ParsedFile,
    text: &str,
    dialect: Dialect,
    keys: &mut HashMap<String, Option<String>>,
) {
    for stmt in &parsed.statements {
        match &stmt.kind {
            StmtKind::CreateTable { table, .. } if stmt.origin == Origin::TopLevel => {
                let key = match parse_one(&text[stmt.span.clone()], dialect) {
                    Ok(Ast::CreateTable(create)) => primary_key(&create),
                    _ => None,
                };
                keys.insert(table.name.clone(), key);
            }
            StmtKind::DropTable { tables } => {
                for table in tables {
                    keys.remove(&table.name);
                }
            }
            _ => {}
        }
    }
}

fn primary_key(create: &sqlparser::ast::CreateTable) -> Option<String> {
    let mut found: Vec<String> = Vec::new();
    for column in &create.columns {
        if column
            .options
            .iter()
            .any(|o| matches!(o.option, ColumnOption::PrimaryKey(_)))
        {
            found.push(normalize(&column.name));
        }
    }
    for constraint in &create.constraints {
        if let TableConstraint::PrimaryKey(pk) = constraint {
            for column in &pk.columns {
                match &column.column.expr {
                    Expr::Identifier(ident) => found.push(normalize(ident)),
                    _ => return None,
                }
            }
        }
    }
    match found.as_slice() {
        [only] => Some(only.clone()),
        _ => None,
    }
}

/// The statement's span with the `;` that ends it (and nothing else).
fn statement_with_semicolon(text: &str, span: std::ops::Range<usize>) -> std::ops::Range<usize> {
    let rest = &text[span.end..];
    let skipped = rest.len() - rest.trim_start_matches([' ', '\t']).len();
    if rest[skipped..].starts_with(';') && !text[span.clone()].trim_end().ends_with(';') {
        span.start..span.end + skipped + 1
    } else {
        span
    }
}

/// The version after the highest among `data_dir`'s data migrations (1 when there is none).
fn next_data_version(data_dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(data_dir) else {
        return 1;
    };
    entries
        .flatten()
        .filter_map(|e| migration_version(&e.path()))
        .max()
        .map_or(1, |v| v + 1)
}

fn unique_id(version: u64, slug: &str, taken: &[String]) -> String {
    let base = format!("V{version}__{slug}");
    let mut id = base.clone();
    let mut n = 2;
    while taken.contains(&id) {
        id = format!("{base}_{n}");
        n += 1;
    }
    id
}

fn display_path(path: &Path) -> String {
    path.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lint::{LintOptions, lint_paths};

    /// Lints `files` (name, text) written to a migrations directory and plans the fix.
    fn fix(files: &[(&str, &str)], dialect: Dialect) -> (tempfile::TempDir, FixPlan) {
        let dir = tempfile::tempdir().unwrap();
        let migrations = dir.path().join("migrations");
        std::fs::create_dir_all(&migrations).unwrap();
        for (name, text) in files {
            std::fs::write(migrations.join(name), text).unwrap();
        }
        let options = LintOptions {
            dialect,
            ..LintOptions::default()
        };
        let report = lint_paths(&[migrations], &options).unwrap();
        let plan = plan(&report, &dir.path().join("data-migrations"), &options);
        (dir, plan)
    }

    const USERS: &str = "CREATE TABLE users (id bigint PRIMARY KEY, plan text NOT NULL);\n\
                         CREATE TABLE follows (follower_id bigint NOT NULL, followee_id bigint NOT NULL, PRIMARY KEY (follower_id, followee_id));\n";

    #[test]
    fn an_update_becomes_a_data_migration_with_bounds_a_check_and_a_snapshot() {
        let v2 = "SET lock_timeout = '2s';\n\
                  ALTER TABLE users ADD COLUMN followers_count bigint NOT NULL DEFAULT 0;\n\
                  UPDATE users SET followers_count = (SELECT count(*) FROM follows WHERE follows.followee_id = users.id)\n\
                  WHERE plan <> 'deleted';\n\
                  CREATE INDEX CONCURRENTLY users_plan_idx ON users (plan);\n";
        let (_dir, plan) = fix(
            &[("V1__users.sql", USERS), ("V2__counts.sql", v2)],
            Dialect::Postgres,
        );
        assert_eq!(plan.refused, vec![]);
        assert_eq!(plan.changes.len(), 2, "{plan:#?}");
        let schema = &plan.changes[0];
        assert!(schema.path.ends_with("V2__counts.sql"));
        assert_eq!(
            schema.after,
            "SET lock_timeout = '2s';\n\
             ALTER TABLE users ADD COLUMN followers_count bigint NOT NULL DEFAULT 0;\n\
             -- Moved to "
                .to_string()
                + &plan.changes[1].path.display().to_string()
                + ": it runs there in batches, after this migration.\n\
                   CREATE INDEX CONCURRENTLY users_plan_idx ON users (plan);\n"
        );
        let data = &plan.changes[1];
        assert!(data.before.is_none());
        assert!(
            data.path
                .ends_with("data-migrations/V1__backfill_users_followers_count.sql"),
            "{}",
            data.path.display()
        );
        let text = &data.after;
        assert!(
            text.contains("-- @requires 2\n-- @table users\n-- @key id\n"),
            "{text}"
        );
        assert!(
            text.contains("users.id > :lower AND users.id <= :upper AND (plan <> 'deleted')"),
            "{text}"
        );
        assert!(
            text.contains("WHERE (plan <> 'deleted')\n  AND (users.followers_count IS DISTINCT FROM ((SELECT count(*) FROM follows WHERE follows.followee_id = users.id)))"),
            "{text}"
        );
        assert!(
            text.contains("-- @snapshot\nSELECT users.id, users.followers_count\nFROM users\nORDER BY users.id;\n"),
            "{text}"
        );
        // The data migration is one the batch engine accepts.
        #[cfg(feature = "backfill")]
        {
            let parsed = crate::backfill::migration::parse(&data.path, text).unwrap();
            assert_eq!(parsed.requires.value, 2);
            assert_eq!(parsed.checks.len(), 1);
        }
    }

    #[test]
    fn a_delete_keeps_its_condition_and_checks_nothing_is_left() {
        let v2 = "DELETE FROM users WHERE plan = 'spam';\n";
        let (_dir, plan) = fix(
            &[("V1__users.sql", USERS), ("V2__purge.sql", v2)],
            Dialect::Postgres,
        );
        assert_eq!(plan.refused, vec![]);
        let data = &plan.changes[1];
        assert!(data.path.ends_with("V1__purge_users.sql"));
        assert!(
            data.after.contains("DELETE FROM\n  users\nWHERE\n  users.id > :lower AND users.id <= :upper AND (plan = 'spam');"),
            "{}",
            data.after
        );
        assert!(
            data.after.contains("-- @check no row the statement deletes is left\nSELECT users.id\nFROM users\nWHERE (plan = 'spam')\nORDER BY users.id;"),
            "{}",
            data.after
        );
        assert_eq!(plan.changes[0].after.lines().count(), 1);
    }

    #[test]
    fn sqlite_updates_move_too() {
        let v1 =
            "CREATE TABLE users (id INTEGER PRIMARY KEY, plan TEXT NOT NULL, seats INTEGER);\n";
        let v2 = "UPDATE users SET seats = CASE plan WHEN 'team' THEN 10 ELSE 1 END;\n";
        let (_dir, plan) = fix(
            &[("V1__users.sql", v1), ("V2__seats.sql", v2)],
            Dialect::Sqlite,
        );
        assert_eq!(plan.refused, vec![]);
        let text = &plan.changes[1].after;
        assert!(
            text.contains("WHERE\n  users.id > :lower AND users.id <= :upper;"),
            "{text}"
        );
        assert!(
            text.contains(
                "WHERE users.seats IS DISTINCT FROM (CASE plan WHEN 'team' THEN 10 ELSE 1 END)"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_value_that_reads_its_own_column_gets_no_check() {
        let v2 =
            "ALTER TABLE users ADD COLUMN n bigint;\nUPDATE users SET n = coalesce(n, 0) + 1;\n";
        let (_dir, plan) = fix(
            &[("V1__users.sql", USERS), ("V2__n.sql", v2)],
            Dialect::Postgres,
        );
        let text = &plan.changes[1].after;
        assert!(!text.contains("-- @check"), "{text}");
        assert!(
            text.contains("-- No check was derived: an assigned value reads `n`"),
            "{text}"
        );
    }

    #[test]
    fn what_cannot_move_safely_is_refused_with_the_reason_and_nothing_changes() {
        let cases: &[(&str, &str)] = &[
            (
                "UPDATE users SET plan = 'x' FROM follows WHERE follows.follower_id = users.id;",
                "reads other tables",
            ),
            (
                "UPDATE users SET plan = now()::text;",
                "`now` is not deterministic",
            ),
            (
                "DELETE FROM users WHERE random() < 0.5;",
                "`random` is not deterministic",
            ),
            (
                "DO $$ BEGIN UPDATE users SET plan = 'x'; END $$;",
                "write this data migration by hand",
            ),
            (
                "DELETE FROM follows WHERE follower_id = followee_id;",
                "`follows` has no one-column primary key",
            ),
            ("UPDATE users SET plan = 'x' RETURNING id;", "RETURNING"),
        ];
        for (statement, reason) in cases {
            let (_dir, plan) = fix(
                &[("V1__users.sql", USERS), ("V2__x.sql", statement)],
                Dialect::Postgres,
            );
            assert_eq!(plan.changes, vec![], "{statement}");
            assert_eq!(plan.refused.len(), 1, "{statement}: {plan:#?}");
            assert!(
                plan.refused[0].reason.contains(reason),
                "{statement}: {}",
                plan.refused[0].reason
            );
            assert_eq!(plan.refused[0].line, 1);
        }
    }

    #[test]
    fn a_string_that_spells_a_function_is_not_a_call() {
        let v2 = "UPDATE users SET plan = 'now()';\n";
        let (_dir, plan) = fix(
            &[("V1__users.sql", USERS), ("V2__x.sql", v2)],
            Dialect::Postgres,
        );
        assert_eq!(plan.refused, vec![]);
        assert_eq!(plan.changes.len(), 2);
    }

    #[test]
    fn new_data_migrations_number_after_the_existing_ones() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("V7__old.sql"), "").unwrap();
        assert_eq!(next_data_version(dir.path()), 8);
        assert_eq!(next_data_version(&dir.path().join("missing")), 1);
        assert_eq!(
            unique_id(3, "x", &["V3__x".into(), "V3__x_2".into()]),
            "V3__x_3"
        );
    }
}
