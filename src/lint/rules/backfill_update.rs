//! `backfill-update`: an UPDATE of a table that existed before the migration.
//!
//! Every row it matches is rewritten (a new row version each) inside the migration's
//! transaction, holding a ROW EXCLUSIVE lock and row locks on each of them until the migration
//! commits: concurrent writers to those rows wait, the deploy waits, and the time grows with the
//! table. An UPDATE inside a DO block is `backfill-do-block`'s.

use crate::lint::rules::{
    LineIndex, MOVE_TO_DATA_MIGRATION, SEED_FIXUP_HELP, Scope, cte_note, in_do_block,
};
use crate::lint::{FileCx, Finding, RuleId};
use crate::sql::{Origin, StmtKind};

pub(crate) fn check(cx: &FileCx<'_>, out: &mut Vec<Finding>) {
    let lines = LineIndex::new(cx.text);
    for (index, stmt, _) in cx.statements() {
        let StmtKind::Update { table, filter, .. } = &stmt.kind else {
            continue;
        };
        if in_do_block(cx, stmt) || !cx.is_existing_large_table(index, table) {
            continue;
        }
        let scope = Scope::of(filter.as_ref());
        let mut finding = match scope {
            Scope::Point(_) => Finding::at(
                RuleId::BackfillUpdate,
                stmt,
                format!(
                    "UPDATE of `{table}`, an existing table, rewrites {} inside the migration: a seed-row fix-up if few rows match, but they stay locked until the deploy finishes",
                    scope.rows()
                ),
                SEED_FIXUP_HELP,
            ),
            _ => Finding::at(
                RuleId::BackfillUpdate,
                stmt,
                format!(
                    "UPDATE of `{table}`, an existing table, rewrites {} inside the migration: the rows stay locked and the deploy waits until it finishes",
                    scope.rows()
                ),
                MOVE_TO_DATA_MIGRATION,
            ),
        };
        finding.severity = scope.severity(finding.severity);
        if stmt.origin == Origin::Cte {
            finding = finding.with_note(cte_note("UPDATE", &lines, stmt));
        }
        out.push(finding);
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::lint::RuleId::BackfillUpdate as RULE;
    use crate::lint::rules::test_support::{lint_errors, lint_ok};
    use crate::lint::{LintOptions, lint_text};
    use crate::sql::Dialect::{Postgres, Sqlite};
    use crate::sql::Name;

    #[test]
    fn err_update_existing_table() {
        let sql = "ALTER TABLE users ADD COLUMN followers_count bigint;\nUPDATE users SET followers_count = (SELECT count(*) FROM follows WHERE follows.followee_id = users.id);\n";
        insta::assert_yaml_snapshot!(lint_errors(sql, Postgres, RULE));
        insta::assert_yaml_snapshot!(
            "err_update_existing_table_sqlite",
            lint_errors(sql, Sqlite, RULE)
        );
    }

    #[test]
    fn err_update_point_lookup_is_a_warning() {
        let sql =
            "UPDATE settings SET value = 'dark' WHERE key = 'theme' AND scope IN ('web', 'app');\n";
        insta::assert_yaml_snapshot!(lint_errors(sql, Postgres, RULE));
        insta::assert_yaml_snapshot!(
            "err_update_point_lookup_is_a_warning_sqlite",
            lint_errors(sql, Sqlite, RULE)
        );
    }

    #[test]
    fn err_update_in_with_clause() {
        let sql = "CREATE TABLE audit (id bigint);\nWITH touched AS (UPDATE users SET seen = true WHERE seen IS NULL RETURNING id)\nINSERT INTO audit SELECT id FROM touched;\n";
        insta::assert_yaml_snapshot!(lint_errors(sql, Postgres, RULE));
    }

    #[test]
    fn ok_update_of_configured_small_table() {
        let options = LintOptions {
            small_tables: vec![Name::new("roles")],
            ..LintOptions::default()
        };
        let found = lint_text(
            Path::new("t.sql"),
            "UPDATE roles SET name = lower(name);\nUPDATE users SET n = 0;\n",
            &options,
        );
        let rules: Vec<_> = found
            .iter()
            .filter(|f| f.rule == RULE)
            .map(|f| f.message.as_str())
            .collect();
        assert_eq!(rules.len(), 1, "{rules:?}");
        assert!(rules[0].contains("`users`"), "{rules:?}");
    }

    #[test]
    fn ok_update_table_created_in_same_file() {
        let sql = "CREATE TABLE t (id int, n int);\nUPDATE t SET n = 1;\n";
        lint_ok(sql, Postgres, RULE);
        lint_ok(sql, Sqlite, RULE);
    }

    #[test]
    fn ok_update_in_function_body() {
        lint_ok(
            "CREATE FUNCTION f() RETURNS trigger AS $$ BEGIN UPDATE users SET n = n + 1; RETURN NEW; END $$ LANGUAGE plpgsql;",
            Postgres,
            RULE,
        );
    }

    #[test]
    fn ok_update_in_comment_or_string() {
        lint_ok(
            "-- UPDATE users SET n = 1;\nSELECT 'UPDATE users SET n = 1';\n",
            Postgres,
            RULE,
        );
    }
}
