//! `backfill-do-block`: data changes inside a `DO` block (or a function this file defines and then
//! calls), on tables that existed before the migration.
//!
//! A DO block runs when the migration runs, as one statement inside its transaction: a loop of
//! UPDATEs over a big table in there is a backfill like any other, only harder to see, and no
//! other linter looks inside. Every data-changing statement of the body (including SQL run by
//! EXECUTE, whose `format()` placeholders the front end fills with stand-in names) is reported
//! here and by no other backfill rule, with the span of the inner statement. A DO block that only
//! RAISEs, creates things, or inserts constant rows is fine.
//!
//! The same goes for `SELECT f()` / `CALL p()` of a function or procedure created earlier in the
//! same file whose body writes an existing table. Functions that are only defined (trigger
//! functions, helpers for the application) are never reported: defining code runs nothing.

use std::collections::HashMap;

use crate::lint::rules::{
    FileViews, LineIndex, MOVE_TO_DATA_MIGRATION, Read, SEED_FIXUP_HELP, Scope, enclosing_do,
    in_do_block,
};
use crate::lint::{FileCx, Finding, RuleId, Severity};
use crate::sql::postgres::STAND_IN;
use crate::sql::{CopyDirection, InsertSource, Name, Origin, Statement, StmtKind};

pub(crate) fn check(cx: &FileCx<'_>, out: &mut Vec<Finding>) {
    let lines = LineIndex::new(cx.text);
    let views = FileViews::new(cx);
    // Routines defined so far, by unqualified name: the latest definition is the one a call runs
    // (CREATE OR REPLACE).
    let mut routines: Routines<'_> = HashMap::new();
    for (index, stmt, _) in cx.statements() {
        if let StmtKind::CreateFunction { name, .. } = &stmt.kind {
            routines.insert(&name.name, (stmt, name));
        }
        // A DO block's statements are judged for what they change; a call of a routine defined
        // in this file (top level, or PERFORM in a DO block) for what the routine's body runs.
        let found = if in_do_block(cx, stmt) {
            do_block_change(cx, &lines, &views, index, stmt)
        } else {
            None
        };
        out.extend(found.or_else(|| call_of_routine(cx, &lines, &views, &routines, index, stmt)));
    }
}

/// The routines defined so far: name -> (its CREATE statement, its name).
type Routines<'a> = HashMap<&'a str, (&'a Statement, &'a Name)>;

/// What a statement that runs now (in a DO block, or in the body of a routine called now) does
/// to rows that existed before the migration, if it changes any: a description ("UPDATE of
/// `users`, an existing table, rewrites every row"), its severity, and the existing table it
/// writes, when it writes one.
struct Change<'a> {
    what: String,
    severity: Severity,
    writes: Option<&'a Name>,
}

/// What `stmt`, running at statement `index`, changes of existing rows.
fn change<'a>(
    cx: &FileCx<'_>,
    views: &FileViews<'a>,
    index: usize,
    stmt: &'a Statement,
) -> Option<Change<'a>> {
    let is_existing = |t: &Name| cx.is_existing_large_table(index, t);
    let change = |what: String, severity: Severity, writes: Option<&'a Name>| {
        Some(Change {
            what,
            severity,
            writes,
        })
    };
    match &stmt.kind {
        StmtKind::Update { table, filter, .. } if is_existing(table) => {
            let scope = Scope::of(filter.as_ref());
            let what = format!("UPDATE of {} rewrites {}", existing(table), scope.rows());
            change(what, scope.severity(Severity::Error), Some(table))
        }
        StmtKind::Delete { table, filter, .. } if is_existing(table) => {
            let scope = Scope::of(filter.as_ref());
            let what = format!("DELETE from {} removes {}", existing(table), scope.rows());
            change(what, scope.severity(Severity::Error), Some(table))
        }
        StmtKind::Merge {
            table,
            source,
            by_source,
        } => match views.first_existing_rows(cx, index, source) {
            Some(read) => {
                let what = format!(
                    "MERGE into {} writes a row for every matching row of {}",
                    shown(table),
                    read_phrase(&read)
                );
                let writes = is_existing(table).then_some(table);
                change(what, Severity::Error, writes)
            }
            None if is_existing(table) && *by_source => {
                let what = format!(
                    "MERGE into {} with WHEN NOT MATCHED BY SOURCE acts on every row its source does not match",
                    existing(table)
                );
                change(what, Severity::Error, Some(table))
            }
            // Constant rows upserted by key: a seed, like INSERT ... VALUES ... ON CONFLICT.
            None if source.sources.is_empty() => None,
            None if is_existing(table) => {
                let what = format!(
                    "MERGE into {} writes a row for every row of its source",
                    existing(table)
                );
                change(what, Severity::Error, Some(table))
            }
            None => None,
        },
        StmtKind::Insert {
            table,
            source: InsertSource::Query(query),
            ..
        } => {
            let read = views.first_existing_rows(cx, index, query)?;
            let what = format!(
                "INSERT ... SELECT copies rows of {} into {}",
                read_phrase(&read),
                shown(table)
            );
            change(what, Severity::Error, is_existing(table).then_some(table))
        }
        StmtKind::Copy {
            table: Some(table),
            direction: CopyDirection::From,
        } if is_existing(table) => change(
            format!("COPY FROM loads rows into {}", existing(table)),
            Severity::Error,
            Some(table),
        ),
        StmtKind::CreateTable {
            table,
            as_query: Some(query),
            with_no_data: false,
            ..
        }
        | StmtKind::SelectInto { table, query }
        | StmtKind::CreateView {
            name: table,
            materialized: true,
            with_no_data: false,
            query,
            ..
        } => {
            let read = views.first_existing_rows(cx, index, query)?;
            let what = format!(
                "copying the rows of {} into {}",
                read_phrase(&read),
                shown(table)
            );
            change(what, Severity::Error, None)
        }
        _ => None,
    }
}

/// What a statement of a DO block's body does to an existing table, if it changes data.
fn do_block_change(
    cx: &FileCx<'_>,
    lines: &LineIndex<'_>,
    views: &FileViews<'_>,
    index: usize,
    stmt: &Statement,
) -> Option<Finding> {
    let Change { what, severity, .. } = change(cx, views, index, stmt)?;
    let do_line = match enclosing_do(cx, stmt) {
        Some(container) => lines.line_of(container.span.start),
        None => lines.line_of(stmt.anchor.start),
    };
    let note = match stmt.origin {
        Origin::DoExecute => {
            format!("it is SQL run by EXECUTE in the DO block starting at line {do_line}")
        }
        Origin::Cte => {
            format!("it is in a WITH clause inside the DO block starting at line {do_line}")
        }
        _ => format!("it is inside the DO block starting at line {do_line}"),
    };
    let mut finding = Finding::at(
        RuleId::BackfillDoBlock,
        stmt,
        format!("{what} in a DO block, which runs with the migration: nothing in it is batched and the deploy waits until it finishes"),
        help(severity),
    )
    .with_note(note);
    finding.severity = severity;
    Some(finding)
}

fn help(severity: Severity) -> &'static str {
    if severity == Severity::Warning {
        SEED_FIXUP_HELP
    } else {
        MOVE_TO_DATA_MIGRATION
    }
}

/// A table name for a message: SQL run by `EXECUTE format('UPDATE %I ...', ...)` names its table
/// only at run time, and the front end puts a stand-in there.
fn shown(table: &Name) -> String {
    if table.name.contains(STAND_IN) {
        "a table named at run time".to_string()
    } else {
        format!("`{table}`")
    }
}

/// "`users`, an existing table," or, for a stand-in, "a table named at run time".
fn existing(table: &Name) -> String {
    if table.name.contains(STAND_IN) {
        shown(table)
    } else {
        format!("`{table}`, an existing table,")
    }
}

/// An existing table a statement reads, for a message (see [`existing`]).
fn read_phrase(read: &Read<'_>) -> String {
    if read.table.name.contains(STAND_IN) {
        shown(read.table)
    } else {
        read.phrase()
    }
}

/// The routines `stmt` calls now: `SELECT f()` (and PERFORM), `CALL p()`, of routines defined
/// earlier in this file.
fn called<'a>(routines: &Routines<'a>, stmt: &Statement) -> Vec<(&'a Statement, &'a Name)> {
    match &stmt.kind {
        StmtKind::Select { query } => query
            .calls
            .iter()
            .filter_map(|call| routines.get(call.as_str()).copied())
            .collect(),
        StmtKind::Call { name } => routines
            .get(name.name.as_str())
            .copied()
            .filter(|(_, defined)| defined.same_object(name))
            .into_iter()
            .collect(),
        _ => Vec::new(),
    }
}

/// How many routine bodies one call may walk (routines calling routines): a hostile file must
/// not make each call walk a huge graph.
const CALL_BUDGET: usize = 64;

/// A change found in the body of a called routine: the change, the routine whose body has it,
/// and the statement.
struct Found<'a> {
    change: Change<'a>,
    routine: &'a Name,
    defined_at: &'a Statement,
    at: &'a Statement,
}

/// `SELECT f()` / `PERFORM f()` / `CALL p()` of a routine created earlier in this file whose
/// body (or the body of a routine it calls, transitively) changes existing rows: the body runs
/// now, with the migration.
fn call_of_routine(
    cx: &FileCx<'_>,
    lines: &LineIndex<'_>,
    views: &FileViews<'_>,
    routines: &Routines<'_>,
    index: usize,
    stmt: &Statement,
) -> Option<Finding> {
    let mut best: Option<(&Name, &Statement, Found<'_>)> = None;
    for (defined_at, name) in called(routines, stmt) {
        let mut budget = CALL_BUDGET;
        let mut visited = vec![name];
        let Some(found) = body_change(
            cx,
            views,
            routines,
            index,
            defined_at,
            name,
            &mut visited,
            &mut budget,
        ) else {
            continue;
        };
        let better = best
            .as_ref()
            .is_none_or(|(_, _, b)| found.change.severity > b.change.severity);
        if better {
            best = Some((name, defined_at, found));
        }
        if best
            .as_ref()
            .is_some_and(|(_, _, b)| b.change.severity == Severity::Error)
        {
            break;
        }
    }
    let (name, defined_at, found) = best?;
    let severity = found.change.severity;
    let message = match found.change.writes {
        Some(written) if !written.name.contains(STAND_IN) => format!(
            "this calls `{name}`, which writes `{written}`, an existing table, while the migration runs: nothing in it is batched and the deploy waits until it finishes"
        ),
        _ => format!(
            "this calls `{name}`, whose body runs now: {}, while the migration runs: nothing in it is batched and the deploy waits until it finishes",
            found.change.what
        ),
    };
    let mut note = format!(
        "`{name}` is defined at line {}",
        lines.line_of(defined_at.span.start)
    );
    if !std::ptr::eq(found.defined_at, defined_at) {
        note.push_str(&format!(
            "; the change is in `{}`, which it calls (defined at line {})",
            found.routine,
            lines.line_of(found.defined_at.span.start)
        ));
    }
    if found.change.writes.is_none() {
        note.push_str(&format!(
            "; the statement is at line {}",
            lines.line_of(found.at.span.start)
        ));
    }
    let mut finding =
        Finding::at(RuleId::BackfillDoBlock, stmt, message, help(severity)).with_note(note);
    finding.severity = severity;
    Some(finding)
}

/// The most severe change the body of `routine` (defined by `defined_at`) makes when called at
/// statement `index`, looking into the routines it calls in turn.
#[allow(clippy::too_many_arguments)]
fn body_change<'a>(
    cx: &FileCx<'_>,
    views: &FileViews<'a>,
    routines: &Routines<'a>,
    index: usize,
    defined_at: &'a Statement,
    routine: &'a Name,
    visited: &mut Vec<&'a Name>,
    budget: &mut usize,
) -> Option<Found<'a>> {
    let StmtKind::CreateFunction { body, .. } = &defined_at.kind else {
        return None;
    };
    if *budget == 0 {
        return None;
    }
    *budget -= 1;
    let mut best: Option<Found<'a>> = None;
    let consider = |found: Found<'a>, best: &mut Option<Found<'a>>| {
        if best
            .as_ref()
            .is_none_or(|b| found.change.severity > b.change.severity)
        {
            *best = Some(found);
        }
    };
    for stmt in body {
        if let Some(change) = change(cx, views, index, stmt) {
            consider(
                Found {
                    change,
                    routine,
                    defined_at,
                    at: stmt,
                },
                &mut best,
            );
        }
        for (inner_at, inner) in called(routines, stmt) {
            if visited.iter().any(|v| std::ptr::eq(*v, inner)) {
                continue;
            }
            visited.push(inner);
            if let Some(found) =
                body_change(cx, views, routines, index, inner_at, inner, visited, budget)
            {
                consider(found, &mut best);
            }
        }
        if best
            .as_ref()
            .is_some_and(|b| b.change.severity == Severity::Error)
        {
            break;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use crate::lint::RuleId::{self, BackfillDoBlock as RULE};
    use crate::lint::rules::test_support::{lint_errors, lint_ok};
    use crate::sql::Dialect::Postgres;

    // SQLite has no DO blocks or stored procedures; all of this is PostgreSQL's.

    #[test]
    fn err_update_loop_in_do_block() {
        let sql = "ALTER TABLE users ADD COLUMN followers_count bigint;\n\nDO $$\nDECLARE\n  r record;\nBEGIN\n  FOR r IN SELECT id FROM users LOOP\n    UPDATE users SET followers_count = (SELECT count(*) FROM follows WHERE followee_id = r.id) WHERE id = r.id;\n  END LOOP;\nEND\n$$;\n";
        insta::assert_yaml_snapshot!(lint_errors(sql, Postgres, RULE));
    }

    #[test]
    fn err_execute_format_in_do_block() {
        let sql = "DO $$\nBEGIN\n  EXECUTE format('UPDATE %I SET tenant_id = 1 WHERE tenant_id IS NULL', 'accounts');\n  EXECUTE 'DELETE FROM sessions';\nEND\n$$;\n";
        insta::assert_yaml_snapshot!(lint_errors(sql, Postgres, RULE));
    }

    #[test]
    fn err_every_kind_of_change_in_do_block() {
        let sql = "DO $$\nBEGIN\n  DELETE FROM sessions WHERE expires_at < now();\n  INSERT INTO audit (user_id) SELECT id FROM users;\n  CREATE TABLE users_copy AS SELECT * FROM users;\n  MERGE INTO user_stats s USING users u ON s.user_id = u.id WHEN NOT MATCHED THEN INSERT (user_id) VALUES (u.id);\nEND\n$$;\n";
        insta::assert_yaml_snapshot!(lint_errors(sql, Postgres, RULE));
    }

    #[test]
    fn err_point_lookup_in_do_block_is_a_warning() {
        let sql = "DO $$\nBEGIN\n  IF NOT EXISTS (SELECT 1 FROM settings WHERE key = 'theme') THEN\n    UPDATE settings SET value = 'dark' WHERE key = 'theme';\n  END IF;\nEND\n$$;\n";
        insta::assert_yaml_snapshot!(lint_errors(sql, Postgres, RULE));
    }

    #[test]
    fn err_calling_a_function_that_backfills() {
        let sql = "CREATE FUNCTION fill_counts() RETURNS void LANGUAGE plpgsql AS $$\nBEGIN\n  UPDATE users SET posts_count = (SELECT count(*) FROM posts WHERE author_id = users.id);\nEND\n$$;\nSELECT fill_counts();\n";
        insta::assert_yaml_snapshot!(lint_errors(sql, Postgres, RULE));
    }

    #[test]
    fn err_do_block_change_is_not_reported_by_other_rules() {
        let sql = "DO $$ BEGIN UPDATE users SET n = 0; DELETE FROM sessions; INSERT INTO audit SELECT id FROM users; END $$;\n";
        lint_errors(sql, Postgres, RULE);
        for other in [
            RuleId::BackfillUpdate,
            RuleId::BackfillDelete,
            RuleId::BackfillInsertSelect,
        ] {
            lint_ok(sql, Postgres, other);
        }
    }

    #[test]
    fn ok_do_block_that_raises_creates_or_inserts_constants() {
        let sql = "DO $$\nBEGIN\n  IF current_setting('server_version_num')::int < 140000 THEN\n    RAISE EXCEPTION 'PostgreSQL 14 or later is required';\n  END IF;\n  CREATE TABLE IF NOT EXISTS flags (key text PRIMARY KEY);\n  INSERT INTO settings (key, value) VALUES ('theme', 'dark');\n  EXECUTE 'CREATE INDEX IF NOT EXISTS flags_key ON flags (key)';\nEND\n$$;\n";
        lint_ok(sql, Postgres, RULE);
    }

    #[test]
    fn ok_do_block_writing_tables_it_created() {
        let sql = "CREATE TABLE staging (id int);\nDO $$ BEGIN INSERT INTO staging SELECT generate_series(1, 10); UPDATE staging SET id = id + 1; END $$;\n";
        lint_ok(sql, Postgres, RULE);
    }

    #[test]
    fn err_calling_routines_with_call_and_perform() {
        let sql = "CREATE PROCEDURE fill() LANGUAGE plpgsql AS $$ BEGIN UPDATE users SET n = 0; END $$;\nCALL fill();\nCREATE FUNCTION purge() RETURNS void LANGUAGE sql AS $$ DELETE FROM sessions $$;\nDO $$ BEGIN PERFORM purge(); END $$;\n";
        let found = lint_errors(sql, Postgres, RULE);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found[0].contains("calls `fill`, which writes `users`"),
            "{found:?}"
        );
        assert!(
            found[1].contains("calls `purge`, which writes `sessions`"),
            "{found:?}"
        );
    }

    #[test]
    fn ok_calling_a_routine_that_writes_only_new_tables() {
        let sql = "CREATE TABLE staging (id int);\nCREATE FUNCTION load() RETURNS void LANGUAGE sql AS $$ INSERT INTO staging VALUES (1) $$;\nSELECT load();\n";
        lint_ok(sql, Postgres, RULE);
    }

    #[test]
    fn ok_trigger_function_defined_not_called() {
        let sql = "CREATE FUNCTION bump() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN UPDATE users SET posts_count = posts_count + 1 WHERE id = NEW.author_id; RETURN NEW; END $$;\nCREATE TRIGGER bump AFTER INSERT ON posts FOR EACH ROW EXECUTE FUNCTION bump();\n";
        lint_ok(sql, Postgres, RULE);
    }

    #[test]
    fn ok_update_outside_do_block() {
        lint_ok("UPDATE users SET n = 0;\n", Postgres, RULE);
    }

    #[test]
    fn ok_guarded_seed_insert_in_do_block() {
        let sql = "DO $$ BEGIN\n  INSERT INTO settings (key, value) SELECT 'theme', 'dark' WHERE NOT EXISTS (SELECT 1 FROM settings WHERE key = 'theme');\n  CREATE TABLE flags AS SELECT 'on' AS state WHERE EXISTS (SELECT 1 FROM users);\nEND $$;\n";
        lint_ok(sql, Postgres, RULE);
    }

    #[test]
    fn err_insert_select_from_a_derived_table_in_do_block() {
        let sql = "DO $$ BEGIN INSERT INTO audit SELECT d.id FROM (SELECT id FROM users) AS d WHERE NOT EXISTS (SELECT 1 FROM audit); END $$;\n";
        let found = lint_errors(sql, Postgres, RULE);
        assert_eq!(found.len(), 1);
        assert!(
            found[0].contains("INSERT ... SELECT copies rows of `users`"),
            "{found:?}"
        );
    }

    #[test]
    fn err_calls_looked_into_transitively() {
        // `refresh` runs `fill`, whose UPDATE runs now; the trigger function stays clean.
        let sql = "CREATE FUNCTION fill() RETURNS void LANGUAGE plpgsql AS $$ BEGIN UPDATE users SET n = 0; END $$;\nCREATE FUNCTION refresh() RETURNS void LANGUAGE sql AS $$ SELECT fill() $$;\nCREATE FUNCTION bump() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN UPDATE users SET n = n + 1; RETURN NEW; END $$;\nDO $$ BEGIN PERFORM refresh(); END $$;\n";
        let found = lint_errors(sql, Postgres, RULE);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].contains("calls `refresh`, which writes `users`"),
            "{found:?}"
        );
        assert!(found[0].contains("the change is in `fill`"), "{found:?}");
    }

    #[test]
    fn ok_called_routine_that_seeds_constant_rows() {
        // The body runs now, and what it does is judged like a DO block's statements.
        let sql = "CREATE FUNCTION seed() RETURNS void LANGUAGE sql AS $$ INSERT INTO settings (key, value) VALUES ('theme', 'dark') $$;\nSELECT seed();\nCREATE PROCEDURE seed2() LANGUAGE sql BEGIN ATOMIC MERGE INTO settings s USING (VALUES ('lang', 'en')) AS v(key, value) ON s.key = v.key WHEN NOT MATCHED THEN INSERT VALUES (v.key, v.value); END;\nCALL seed2();\n";
        lint_ok(sql, Postgres, RULE);
    }

    #[test]
    fn err_called_routine_fixing_up_a_seed_row_is_a_warning() {
        let sql = "CREATE FUNCTION fix() RETURNS void LANGUAGE plpgsql AS $$ BEGIN UPDATE settings SET value = 'dark' WHERE key = 'theme'; END $$;\nSELECT fix();\n";
        let found = lint_errors(sql, Postgres, RULE);
        assert!(
            found[0].starts_with("backfill-do-block (warning): this calls `fix`"),
            "{found:?}"
        );
    }

    #[test]
    fn ok_routine_called_before_it_is_defined_or_never() {
        // A call before the CREATE runs another definition (an earlier migration's).
        let sql = "SELECT fill();\nCREATE FUNCTION fill() RETURNS void LANGUAGE plpgsql AS $$ BEGIN UPDATE users SET n = 0; END $$;\n";
        lint_ok(sql, Postgres, RULE);
    }

    #[test]
    fn err_materialized_view_in_do_block() {
        let sql = "DO $$ BEGIN CREATE MATERIALIZED VIEW post_counts AS SELECT author_id, count(*) FROM posts GROUP BY author_id; END $$;\n";
        let found = lint_errors(sql, Postgres, RULE);
        assert!(
            found[0].contains("copying the rows of `posts`"),
            "{found:?}"
        );
    }
}
