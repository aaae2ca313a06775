//! `backfill-insert-select`: INSERT ... SELECT (or REPLACE ... SELECT) copying rows of a table that
//! existed before the migration.
//!
//! Copying rows from an existing table scales with that table, whether the target is new or not:
//! the copy runs inside the migration's transaction and the deploy waits for it. What counts is
//! where the rows come from (the query's `sources`: FROM items, set operation branches, derived
//! tables, CTEs selected from), not every table the query reads: INSERT of constant rows (VALUES,
//! a SELECT with no FROM, or one guarded by `WHERE NOT EXISTS (SELECT ... FROM existing)`, the way
//! seed rows are added) and copies between tables this file created are not backfills. The INSERT of a table rebuild is reported by
//! `backfill-table-rebuild` instead, and an INSERT inside a DO block by `backfill-do-block`.

use std::collections::HashSet;

use crate::lint::rules::{
    FileViews, LineIndex, MOVE_TO_DATA_MIGRATION, backfill_table_rebuild, cte_note, in_do_block,
};
use crate::lint::{FileCx, Finding, RuleId};
use crate::sql::{InsertSource, Origin, StmtKind};

pub(crate) fn check(cx: &FileCx<'_>, out: &mut Vec<Finding>) {
    let lines = LineIndex::new(cx.text);
    let views = FileViews::new(cx);
    let rebuilds: HashSet<usize> = backfill_table_rebuild::find(cx)
        .iter()
        .map(|r| r.insert)
        .collect();
    for (index, stmt, _) in cx.statements() {
        let StmtKind::Insert {
            table,
            source: InsertSource::Query(query),
            replace,
        } = &stmt.kind
        else {
            continue;
        };
        if in_do_block(cx, stmt) || rebuilds.contains(&index) {
            continue;
        }
        let Some(read) = views.first_existing_rows(cx, index, query) else {
            continue;
        };
        let verb = if *replace {
            "REPLACE ... SELECT"
        } else {
            "INSERT ... SELECT"
        };
        let target = if cx.is_existing_large_table(index, table) {
            format!("`{table}`, also an existing table,")
        } else {
            format!("`{table}`")
        };
        let mut finding = Finding::at(
            RuleId::BackfillInsertSelect,
            stmt,
            format!(
                "{verb} copies rows of {} into {target} inside the migration: it runs as long as `{}` is large and the deploy waits until it finishes",
                read.phrase(),
                read.table
            ),
            MOVE_TO_DATA_MIGRATION,
        );
        if stmt.origin == Origin::Cte {
            finding = finding.with_note(cte_note("INSERT", &lines, stmt));
        }
        out.push(finding);
    }
}

#[cfg(test)]
mod tests {
    use crate::lint::RuleId::BackfillInsertSelect as RULE;
    use crate::lint::rules::test_support::{lint_errors, lint_ok};
    use crate::sql::Dialect::{Postgres, Sqlite};

    #[test]
    fn err_insert_select_into_new_table() {
        let sql = "CREATE TABLE user_handles (user_id bigint, handle text);\nINSERT INTO user_handles (user_id, handle) SELECT id, handle FROM users;\n";
        insta::assert_yaml_snapshot!(lint_errors(sql, Postgres, RULE));
        insta::assert_yaml_snapshot!(
            "err_insert_select_into_new_table_sqlite",
            lint_errors(sql, Sqlite, RULE)
        );
    }

    #[test]
    fn err_insert_select_into_existing_table() {
        let sql = "INSERT INTO follows (follower_id, followee_id, created_at)\nSELECT u.id, 1, now() FROM users u WHERE u.id <> 1;\n";
        insta::assert_yaml_snapshot!(lint_errors(sql, Postgres, RULE));
    }

    #[test]
    fn err_replace_select() {
        let sql = "REPLACE INTO user_stats (user_id, posts) SELECT author_id, count(*) FROM posts GROUP BY author_id;\n";
        insta::assert_yaml_snapshot!(lint_errors(sql, Sqlite, RULE));
    }

    #[test]
    fn err_insert_select_reading_through_a_join() {
        // The first table read is new; the join still reads an existing one.
        let sql = "CREATE TABLE picks (id bigint);\nCREATE TABLE featured (user_id bigint);\nINSERT INTO featured SELECT u.id FROM picks p JOIN users u ON u.id = p.id;\n";
        insta::assert_yaml_snapshot!(lint_errors(sql, Postgres, RULE));
        insta::assert_yaml_snapshot!(
            "err_insert_select_reading_through_a_join_sqlite",
            lint_errors(sql, Sqlite, RULE)
        );
    }

    #[test]
    fn ok_insert_constant_rows() {
        let sql = "INSERT INTO settings (key, value) VALUES ('theme', 'dark'), ('lang', 'en');\nINSERT INTO settings (key, value) SELECT 'tz', 'UTC';\n";
        lint_ok(sql, Postgres, RULE);
        lint_ok(sql, Sqlite, RULE);
    }

    #[test]
    fn ok_insert_select_from_table_created_in_same_file() {
        let sql = "CREATE TABLE a (id int);\nCREATE TABLE b (id int);\nINSERT INTO a VALUES (1);\nINSERT INTO b SELECT id FROM a;\n";
        lint_ok(sql, Postgres, RULE);
        lint_ok(sql, Sqlite, RULE);
    }

    #[test]
    fn ok_insert_select_in_trigger_function() {
        lint_ok(
            "CREATE FUNCTION log_user() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO audit SELECT NEW.id, now() FROM users WHERE id = NEW.id; RETURN NEW; END $$;",
            Postgres,
            RULE,
        );
        lint_ok(
            "CREATE TRIGGER log_user AFTER INSERT ON users BEGIN INSERT INTO audit SELECT id FROM users WHERE id = NEW.id; END;",
            Sqlite,
            RULE,
        );
    }

    #[test]
    fn ok_insert_select_in_do_block_belongs_to_do_block_rule() {
        lint_ok(
            "DO $$ BEGIN INSERT INTO audit SELECT id FROM users; END $$;",
            Postgres,
            RULE,
        );
    }

    #[test]
    fn ok_guarded_seed_insert() {
        // How kratos, harbor and synapse seed a row: at most one constant row, whatever the size
        // of the table the guard reads.
        let sql = "INSERT INTO settings (key, value) SELECT 'theme', 'dark' WHERE NOT EXISTS (SELECT 1 FROM settings WHERE key = 'theme');\n";
        lint_ok(sql, Postgres, RULE);
        lint_ok(sql, Sqlite, RULE);
        let cte = "WITH taken AS (SELECT key FROM settings) INSERT INTO settings (key, value) SELECT 'theme', 'dark' WHERE 'theme' NOT IN (SELECT key FROM taken);\n";
        lint_ok(cte, Postgres, RULE);
        lint_ok(cte, Sqlite, RULE);
    }

    #[test]
    fn ok_scalar_subquery_in_select_list() {
        // One row, computed from `users`: reads it, copies none of its rows.
        let sql = "INSERT INTO counters (id) SELECT (SELECT max(id) FROM users) + 1;\n";
        lint_ok(sql, Postgres, RULE);
        lint_ok(sql, Sqlite, RULE);
    }

    #[test]
    fn err_rows_from_a_union_branch_a_derived_table_or_a_cte() {
        let sql = "CREATE TABLE handles (id bigint);\nINSERT INTO handles SELECT 1 UNION ALL SELECT id FROM users;\nINSERT INTO handles SELECT d.id FROM (SELECT id FROM posts WHERE id > 0) AS d;\nWITH src AS (SELECT followee_id AS id FROM follows) INSERT INTO handles SELECT id FROM src;\n";
        let found = lint_errors(sql, Postgres, RULE);
        insta::assert_yaml_snapshot!(found);
        assert_eq!(lint_errors(sql, Sqlite, RULE), found);
    }

    #[test]
    fn err_insert_in_a_cte_copying_rows_of_a_sibling_cte() {
        // documenso's 20250522054050_add_organisations fills a new table this way.
        let sql = "WITH src AS (SELECT id FROM users), ins AS (INSERT INTO orgs (owner_id) SELECT id FROM src RETURNING id) SELECT count(*) FROM ins;\n";
        let found = lint_errors(sql, Postgres, RULE);
        assert_eq!(found.len(), 1);
        assert!(
            found[0].contains(
                "INSERT ... SELECT copies rows of `users`, an existing table, into `orgs`"
            ),
            "{found:?}"
        );
        assert!(found[0].contains("note:"), "{found:?}");
    }

    #[test]
    fn err_guard_does_not_hide_a_copy() {
        // A guard in WHERE does not make the rows constant when they come from a table.
        let sql = "INSERT INTO settings (key, value) SELECT key, value FROM legacy_settings WHERE NOT EXISTS (SELECT 1 FROM settings);\n";
        let found = lint_errors(sql, Postgres, RULE);
        assert_eq!(found.len(), 1);
        assert!(
            found[0].contains("copies rows of `legacy_settings`"),
            "{found:?}"
        );
        assert_eq!(lint_errors(sql, Sqlite, RULE), found);
    }
}
