//! `backfill-delete`: a DELETE from a table that existed before the migration.
//!
//! It scans the table for the rows its WHERE matches and deletes each of them inside the
//! migration's transaction, holding row locks on all of them (and leaving as many dead tuples for
//! vacuum) until the migration commits: the time grows with the table, and the deploy waits. A
//! DELETE inside a DO block is `backfill-do-block`'s.

use crate::lint::rules::{
    LineIndex, MOVE_TO_DATA_MIGRATION, SEED_FIXUP_HELP, Scope, cte_note, in_do_block,
};
use crate::lint::{FileCx, Finding, RuleId};
use crate::sql::{Origin, StmtKind};

pub(crate) fn check(cx: &FileCx<'_>, out: &mut Vec<Finding>) {
    let lines = LineIndex::new(cx.text);
    for (index, stmt, _) in cx.statements() {
        let StmtKind::Delete { table, filter, .. } = &stmt.kind else {
            continue;
        };
        if in_do_block(cx, stmt) || !cx.is_existing_large_table(index, table) {
            continue;
        }
        let scope = Scope::of(filter.as_ref());
        let mut finding = match scope {
            Scope::Point(_) => Finding::at(
                RuleId::BackfillDelete,
                stmt,
                format!(
                    "DELETE from `{table}`, an existing table, removes {} inside the migration: a seed-row fix-up if few rows match, but they stay locked until the deploy finishes",
                    scope.rows()
                ),
                SEED_FIXUP_HELP,
            ),
            _ => Finding::at(
                RuleId::BackfillDelete,
                stmt,
                format!(
                    "DELETE from `{table}`, an existing table, removes {} inside the migration: the rows stay locked and the deploy waits until it finishes",
                    scope.rows()
                ),
                MOVE_TO_DATA_MIGRATION,
            ),
        };
        finding.severity = scope.severity(finding.severity);
        if stmt.origin == Origin::Cte {
            finding = finding.with_note(cte_note("DELETE", &lines, stmt));
        }
        out.push(finding);
    }
}

#[cfg(test)]
mod tests {
    use crate::lint::RuleId::BackfillDelete as RULE;
    use crate::lint::rules::test_support::{lint_errors, lint_ok};
    use crate::sql::Dialect::{Postgres, Sqlite};

    #[test]
    fn err_delete_with_range_filter() {
        let sql = "DELETE FROM sessions WHERE expires_at < '2024-01-01';\n";
        insta::assert_yaml_snapshot!(lint_errors(sql, Postgres, RULE));
        insta::assert_yaml_snapshot!(
            "err_delete_with_range_filter_sqlite",
            lint_errors(sql, Sqlite, RULE)
        );
    }

    #[test]
    fn err_delete_every_row() {
        let sql = "CREATE TABLE audit (id bigint);\nDELETE FROM events;\n";
        insta::assert_yaml_snapshot!(lint_errors(sql, Postgres, RULE));
        insta::assert_yaml_snapshot!(
            "err_delete_every_row_sqlite",
            lint_errors(sql, Sqlite, RULE)
        );
    }

    #[test]
    fn err_delete_point_lookup_is_a_warning() {
        let sql = "DELETE FROM settings WHERE key = 'legacy_theme';\n";
        insta::assert_yaml_snapshot!(lint_errors(sql, Postgres, RULE));
        insta::assert_yaml_snapshot!(
            "err_delete_point_lookup_is_a_warning_sqlite",
            lint_errors(sql, Sqlite, RULE)
        );
    }

    #[test]
    fn err_delete_in_with_clause() {
        let sql = "WITH gone AS (DELETE FROM sessions WHERE expires_at < now() RETURNING id)\nSELECT count(*) FROM gone;\n";
        insta::assert_yaml_snapshot!(lint_errors(sql, Postgres, RULE));
    }

    #[test]
    fn err_delete_moving_rows_through_a_with_clause() {
        // The INSERT reads only the CTE; the DELETE is what scales with `events`.
        let sql = "CREATE TABLE events_archive (id bigint);\nWITH moved AS (DELETE FROM events WHERE created_at < '2020-01-01' RETURNING *)\nINSERT INTO events_archive SELECT id FROM moved;\n";
        insta::assert_yaml_snapshot!(lint_errors(sql, Postgres, RULE));
        crate::lint::rules::test_support::lint_ok(
            sql,
            Postgres,
            crate::lint::RuleId::BackfillInsertSelect,
        );
    }

    #[test]
    fn err_delete_using_another_table() {
        let sql =
            "DELETE FROM posts USING users WHERE posts.author_id = users.id AND users.banned;\n";
        insta::assert_yaml_snapshot!(lint_errors(sql, Postgres, RULE));
    }

    #[test]
    fn ok_delete_table_created_in_same_file() {
        let sql = "CREATE TABLE staging (id int);\nINSERT INTO staging VALUES (1);\nDELETE FROM staging WHERE id = 1;\n";
        lint_ok(sql, Postgres, RULE);
        lint_ok(sql, Sqlite, RULE);
    }

    #[test]
    fn ok_delete_in_trigger_function() {
        lint_ok(
            "CREATE FUNCTION purge() RETURNS trigger AS $$ BEGIN DELETE FROM sessions WHERE user_id = OLD.id; RETURN OLD; END $$ LANGUAGE plpgsql;",
            Postgres,
            RULE,
        );
    }

    #[test]
    fn ok_delete_in_sqlite_trigger() {
        lint_ok(
            "CREATE TRIGGER purge AFTER DELETE ON users BEGIN DELETE FROM sessions WHERE user_id = OLD.id; END;",
            Sqlite,
            RULE,
        );
    }

    #[test]
    fn ok_delete_in_do_block_belongs_to_do_block_rule() {
        lint_ok("DO $$ BEGIN DELETE FROM sessions; END $$;", Postgres, RULE);
    }
}
