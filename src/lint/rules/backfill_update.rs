//! `backfill-update`: an UPDATE of a table that existed before the migration.
//!
//! Every row it matches is rewritten (a new row version each) inside the migration's
//! transaction, holding a ROW EXCLUSIVE lock and row locks on each of them until the migration
//! commits: concurrent writers to those rows wait, the deploy waits, and the time grows with the
//! table. An UPDATE inside a DO block is `backfill-do-block`'s.

use crate::lint::rules::MOVE_TO_DATA_MIGRATION;
use crate::lint::{FileCx, Finding, RuleId};
use crate::sql::{Origin, StmtKind};

pub(crate) fn check(cx: &FileCx<'_>, out: &mut Vec<Finding>) {
    for (index, stmt, _) in cx.statements() {
        if matches!(stmt.origin, Origin::DoBlock | Origin::DoExecute) {
            continue;
        }
        let StmtKind::Update { table, filter, .. } = &stmt.kind else {
            continue;
        };
        if !cx.is_existing_large_table(index, table) {
            continue;
        }
        let scope = match filter {
            None => "every row".to_string(),
            Some(f) if f.point_lookup => "the rows matching its WHERE".to_string(),
            Some(_) => "every matching row".to_string(),
        };
        let mut finding = Finding::at(
            RuleId::BackfillUpdate,
            stmt,
            format!(
                "UPDATE rewrites {scope} of `{table}`, an existing table, inside the migration: the rows stay locked and the deploy waits until it finishes"
            ),
            MOVE_TO_DATA_MIGRATION,
        );
        if stmt.origin == Origin::Cte {
            finding = finding.with_note("the UPDATE is in a WITH clause of this statement");
        }
        out.push(finding);
    }
}

#[cfg(test)]
mod tests {
    use crate::lint::RuleId::BackfillUpdate as RULE;
    use crate::lint::rules::test_support::{lint_errors, lint_ok};
    use crate::sql::Dialect::{Postgres, Sqlite};

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
