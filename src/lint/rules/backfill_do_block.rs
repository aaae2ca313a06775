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
    first_existing, in_do_block,
};
use crate::lint::{FileCx, Finding, RuleId, Severity};
use crate::sql::postgres::STAND_IN;
use crate::sql::{CopyDirection, InsertSource, Name, Origin, Statement, StmtKind};

pub(crate) fn check(cx: &FileCx<'_>, out: &mut Vec<Finding>) {
    let lines = LineIndex::new(cx.text);
    let views = FileViews::new(cx);
    // Routines defined so far, by unqualified name: the latest definition is the one a call runs
    // (CREATE OR REPLACE).
    let mut routines: HashMap<&str, Routine<'_>> = HashMap::new();
    for (index, stmt, _) in cx.statements() {
        if let StmtKind::CreateFunction {
            name, body_writes, ..
        } = &stmt.kind
        {
            routines.insert(&name.name, (stmt, name, body_writes));
        }
        // A DO block's statements are judged for what they change; a call of a routine defined
        // in this file (top level, or PERFORM in a DO block) for what the routine writes.
        let found = if in_do_block(cx, stmt) {
            do_block_change(cx, &lines, &views, index, stmt)
        } else {
            None
        };
        out.extend(found.or_else(|| call_of_writing_function(cx, &lines, &routines, index, stmt)));
    }
}

/// A routine's definition, its name and the tables its body writes.
type Routine<'a> = (&'a Statement, &'a Name, &'a [Name]);

/// What a statement of a DO block's body does to an existing table, if it changes data.
fn do_block_change(
    cx: &FileCx<'_>,
    lines: &LineIndex<'_>,
    views: &FileViews<'_>,
    index: usize,
    stmt: &Statement,
) -> Option<Finding> {
    let is_existing = |t: &Name| cx.is_existing_large_table(index, t);
    let (what, severity) = match &stmt.kind {
        StmtKind::Update { table, filter, .. } if is_existing(table) => {
            let scope = Scope::of(filter.as_ref());
            let what = format!("UPDATE of {} rewrites {}", existing(table), scope.rows());
            (what, scope.severity(Severity::Error))
        }
        StmtKind::Delete { table, filter, .. } if is_existing(table) => {
            let scope = Scope::of(filter.as_ref());
            let what = format!("DELETE from {} removes {}", existing(table), scope.rows());
            (what, scope.severity(Severity::Error))
        }
        StmtKind::Merge { table, source } => {
            match views.first_existing_source(cx, index, &source.sources) {
                Some(read) => {
                    let what = format!(
                        "MERGE into {} writes a row for every matching row of {}",
                        shown(table),
                        read_phrase(&read)
                    );
                    (what, Severity::Error)
                }
                None if is_existing(table) && source.sources.is_empty() => {
                    let what = format!("MERGE into {} upserts constant rows", existing(table));
                    (what, Severity::Warning)
                }
                None if is_existing(table) => {
                    let what = format!(
                        "MERGE into {} writes a row for every row of its source",
                        existing(table)
                    );
                    (what, Severity::Error)
                }
                None => return None,
            }
        }
        StmtKind::Insert {
            table,
            source: InsertSource::Query(query),
            ..
        } => {
            let read = views.first_existing_source(cx, index, &query.sources)?;
            let what = format!(
                "INSERT ... SELECT copies rows of {} into {}",
                read_phrase(&read),
                shown(table)
            );
            (what, Severity::Error)
        }
        StmtKind::Copy {
            table: Some(table),
            direction: CopyDirection::From,
        } if is_existing(table) => (
            format!("COPY FROM loads rows into {}", existing(table)),
            Severity::Error,
        ),
        StmtKind::CreateTable {
            table,
            as_query: Some(query),
            with_no_data: false,
            ..
        }
        | StmtKind::SelectInto { table, query } => {
            let read = views.first_existing_source(cx, index, &query.sources)?;
            let what = format!(
                "copying the rows of {} into {}",
                read_phrase(&read),
                shown(table)
            );
            (what, Severity::Error)
        }
        _ => return None,
    };
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
    let help = if severity == Severity::Warning {
        SEED_FIXUP_HELP
    } else {
        MOVE_TO_DATA_MIGRATION
    };
    let mut finding = Finding::at(
        RuleId::BackfillDoBlock,
        stmt,
        format!("{what} in a DO block, which runs with the migration: nothing in it is batched and the deploy waits until it finishes"),
        help,
    )
    .with_note(note);
    finding.severity = severity;
    Some(finding)
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

/// `SELECT f()` / `CALL p()` of a routine created earlier in this file whose body writes an
/// existing table.
fn call_of_writing_function(
    cx: &FileCx<'_>,
    lines: &LineIndex<'_>,
    routines: &HashMap<&str, Routine<'_>>,
    index: usize,
    stmt: &Statement,
) -> Option<Finding> {
    let called: Vec<Routine<'_>> = match &stmt.kind {
        StmtKind::Select { query } => query
            .calls
            .iter()
            .filter_map(|call| routines.get(call.as_str()).copied())
            .collect(),
        StmtKind::Call { name } => routines
            .get(name.name.as_str())
            .copied()
            .filter(|(_, defined, _)| defined.same_object(name))
            .into_iter()
            .collect(),
        _ => return None,
    };
    let ((defined_at, name, _), written) = called.into_iter().find_map(|routine| {
        first_existing(cx, index, routine.2).map(|written| (routine, written))
    })?;
    Some(
        Finding::at(
            RuleId::BackfillDoBlock,
            stmt,
            format!("this calls `{name}`, which writes `{written}`, an existing table, while the migration runs: nothing in it is batched and the deploy waits until it finishes"),
            MOVE_TO_DATA_MIGRATION,
        )
        .with_note(format!("`{name}` is defined at line {}", lines.line_of(defined_at.span.start))),
    )
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
}
