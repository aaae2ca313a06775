//! `backfill-create-table-as`: CREATE TABLE ... AS query, SELECT ... INTO and CREATE MATERIALIZED
//! VIEW copying rows of a table that existed before the migration.
//!
//! Each copies every row the query returns into the new table (or the materialized view's
//! storage) inside the migration, so the time grows with the table the rows come from (the
//! query's `sources`; a table read only by a subquery in WHERE or in the select list does not
//! multiply the rows). `WITH NO DATA` copies nothing (a materialized view created so is filled
//! later by REFRESH). A plain view copies nothing. Inside a DO block these belong to
//! `backfill-do-block`.

use crate::lint::rules::{FileViews, MOVE_TO_DATA_MIGRATION, in_do_block};
use crate::lint::{FileCx, Finding, RuleId};
use crate::sql::StmtKind;

pub(crate) fn check(cx: &FileCx<'_>, out: &mut Vec<Finding>) {
    let views = FileViews::new(cx);
    for (index, stmt, _) in cx.statements() {
        let (table, query, verb) = match &stmt.kind {
            StmtKind::CreateTable {
                table,
                as_query: Some(query),
                with_no_data: false,
                ..
            } => (table, query, "CREATE TABLE ... AS"),
            StmtKind::SelectInto { table, query } => (table, query, "SELECT ... INTO"),
            StmtKind::CreateView {
                name,
                materialized: true,
                with_no_data: false,
                query,
                ..
            } => (name, query, "CREATE MATERIALIZED VIEW"),
            _ => continue,
        };
        if in_do_block(cx, stmt) {
            continue;
        }
        let Some(read) = views.first_existing_rows(cx, index, query) else {
            continue;
        };
        let help = match &stmt.kind {
            StmtKind::CreateView { .. } => format!(
                "create `{table}` `WITH NO DATA` here and fill it with `REFRESH MATERIALIZED VIEW` outside the deploy (CONCURRENTLY, once it has a unique index, keeps it readable), or make it a table filled by a batched data migration in `data-migrations/`"
            ),
            _ => format!(
                "create `{table}` empty here (or `WITH NO DATA`) and {MOVE_TO_DATA_MIGRATION}"
            ),
        };
        out.push(Finding::at(
            RuleId::BackfillCreateTableAs,
            stmt,
            format!("{verb} copies the rows of {} into `{table}` inside the migration: it runs as long as `{}` is large and the deploy waits until it finishes", read.phrase(), read.table),
            help,
        ));
    }
}

#[cfg(test)]
mod tests {
    use crate::lint::RuleId::BackfillCreateTableAs as RULE;
    use crate::lint::rules::test_support::{lint_errors, lint_ok};
    use crate::sql::Dialect::{Postgres, Sqlite};

    #[test]
    fn err_create_table_as_select() {
        let sql = "CREATE TABLE active_users AS SELECT id, handle FROM users WHERE created_at > '2024-01-01';\n";
        insta::assert_yaml_snapshot!(lint_errors(sql, Postgres, RULE));
        insta::assert_yaml_snapshot!(
            "err_create_table_as_select_sqlite",
            lint_errors(sql, Sqlite, RULE)
        );
    }

    #[test]
    fn err_select_into() {
        let sql = "SELECT id, handle INTO users_backup FROM users;\n";
        insta::assert_yaml_snapshot!(lint_errors(sql, Postgres, RULE));
    }

    #[test]
    fn err_create_temp_table_as() {
        let sql = "CREATE TEMP TABLE ids AS SELECT id FROM users;\n";
        insta::assert_yaml_snapshot!(lint_errors(sql, Postgres, RULE));
        insta::assert_yaml_snapshot!(
            "err_create_temp_table_as_sqlite",
            lint_errors(sql, Sqlite, RULE)
        );
    }

    #[test]
    fn ok_create_table_as_with_no_data() {
        lint_ok(
            "CREATE TABLE users_archive AS SELECT * FROM users WITH NO DATA;\n",
            Postgres,
            RULE,
        );
    }

    #[test]
    fn ok_create_table_as_constants_or_new_tables() {
        let sql = "CREATE TABLE t (id int);\nCREATE TABLE t2 AS SELECT id FROM t;\nCREATE TABLE one AS SELECT 1 AS id;\n";
        lint_ok(sql, Postgres, RULE);
        lint_ok(sql, Sqlite, RULE);
    }

    #[test]
    fn err_create_table_as_from_view_created_in_same_file() {
        // LemmyNet/lemmy 2020-06-30-135809_remove_mat_views materializes its views this way.
        let sql = "CREATE VIEW user_view AS SELECT u.id, count(p.id) AS posts FROM users u LEFT JOIN posts p ON p.author_id = u.id GROUP BY u.id;\nCREATE TABLE user_fast AS SELECT * FROM user_view;\n";
        insta::assert_yaml_snapshot!(lint_errors(sql, Postgres, RULE));
        insta::assert_yaml_snapshot!(
            "err_create_table_as_from_view_created_in_same_file_sqlite",
            lint_errors(sql, Sqlite, RULE)
        );
    }

    #[test]
    fn ok_create_table_as_from_view_of_new_tables() {
        let sql = "CREATE TABLE t (id int);\nCREATE VIEW v AS SELECT id FROM t;\nCREATE TABLE t2 AS SELECT id FROM v;\n";
        lint_ok(sql, Postgres, RULE);
        lint_ok(sql, Sqlite, RULE);
    }

    #[test]
    fn ok_views_are_not_backfills() {
        let sql =
            "CREATE VIEW active_users AS SELECT * FROM users WHERE created_at > '2024-01-01';\n";
        lint_ok(sql, Postgres, RULE);
        lint_ok(sql, Sqlite, RULE);
        lint_ok(
            "CREATE MATERIALIZED VIEW user_counts AS SELECT count(*) FROM users WITH NO DATA;\n",
            Postgres,
            RULE,
        );
    }

    #[test]
    fn err_materialized_view_with_data_copies() {
        // WITH DATA is the default: the query runs and its rows are stored now.
        let sql = "CREATE MATERIALIZED VIEW post_counts AS SELECT author_id, count(*) FROM posts GROUP BY author_id;\nCREATE MATERIALIZED VIEW handles AS SELECT id, handle FROM users WITH DATA;\n";
        insta::assert_yaml_snapshot!(lint_errors(sql, Postgres, RULE));
    }

    #[test]
    fn ok_materialized_view_of_new_tables() {
        lint_ok(
            "CREATE TABLE t (id int);\nCREATE MATERIALIZED VIEW v AS SELECT id FROM t;\n",
            Postgres,
            RULE,
        );
    }

    #[test]
    fn err_rows_of_a_set_returning_function() {
        // The rows are as many as `users` has, whether the function is in FROM or in the
        // select list.
        let sql =
            "CREATE TABLE ids AS SELECT generate_series(1, (SELECT max(id) FROM users)) AS id;\n";
        let found = lint_errors(sql, Postgres, RULE);
        assert!(
            found[0].contains("`users`, an existing table,"),
            "{found:?}"
        );
        let sql = "CREATE FUNCTION user_ids() RETURNS TABLE (id bigint) LANGUAGE plpgsql AS $$ BEGIN RETURN QUERY SELECT u.id FROM users u; END $$;\nCREATE TABLE ids AS SELECT * FROM user_ids();\n";
        let found = lint_errors(sql, Postgres, RULE);
        assert!(
            found[0].contains("read through the function `user_ids`"),
            "{found:?}"
        );
    }

    #[test]
    fn ok_set_returning_function_of_constants() {
        let sql = "CREATE TABLE ids AS SELECT generate_series(1, 10) AS id;\nCREATE FUNCTION digits() RETURNS SETOF int LANGUAGE sql AS 'SELECT generate_series(0, 9)';\nCREATE TABLE d AS SELECT * FROM digits();\n";
        lint_ok(sql, Postgres, RULE);
    }

    #[test]
    fn ok_create_table_as_constants_guarded_by_an_existing_table() {
        let sql = "CREATE TABLE flags AS SELECT 'on' AS state WHERE EXISTS (SELECT 1 FROM users);\nCREATE TABLE next_id AS SELECT (SELECT max(id) FROM users) + 1 AS id;\n";
        lint_ok(sql, Postgres, RULE);
        lint_ok(sql, Sqlite, RULE);
        lint_ok(
            "SELECT 1 AS id INTO flags WHERE EXISTS (SELECT 1 FROM users);\n",
            Postgres,
            RULE,
        );
    }

    #[test]
    fn err_create_table_as_from_a_cte_or_through_a_view_source() {
        let sql = "CREATE TABLE ids AS WITH u AS (SELECT id FROM users) SELECT id FROM u;\nCREATE VIEW recent AS SELECT p.id FROM (SELECT id FROM posts) AS p;\nCREATE TABLE recent_copy AS SELECT id FROM recent;\n";
        let found = lint_errors(sql, Postgres, RULE);
        insta::assert_yaml_snapshot!(found);
        assert_eq!(lint_errors(sql, Sqlite, RULE), found);
    }

    #[test]
    fn ok_create_table_as_from_a_view_of_constants() {
        // The view reads `users` only to decide whether it has its one row.
        let sql = "CREATE VIEW flag AS SELECT 1 AS on_ WHERE EXISTS (SELECT 1 FROM users);\nCREATE TABLE flag_copy AS SELECT * FROM flag;\n";
        lint_ok(sql, Postgres, RULE);
        lint_ok(sql, Sqlite, RULE);
    }
}
