//! `backfill-merge`: a MERGE into a table that existed before the migration (PostgreSQL 15+).
//!
//! MERGE joins its source to the target and updates, inserts or deletes a row for each match,
//! inside the migration's transaction: every row it writes stays locked until the migration
//! commits, and the time grows with the source and the target. A source whose rows come from no
//! table (constant rows in VALUES, whatever the ON condition reads) is an upsert of seed rows,
//! like `INSERT ... VALUES ... ON CONFLICT`, and is not reported, unless a `WHEN NOT MATCHED BY
//! SOURCE` clause makes it act on every other row of the target. A MERGE into a new table from an
//! existing one is a copy, like INSERT ... SELECT, and reported as one. A MERGE inside a DO block
//! is `backfill-do-block`'s.

use crate::lint::rules::{FileViews, LineIndex, MOVE_TO_DATA_MIGRATION, cte_note, in_do_block};
use crate::lint::{FileCx, Finding, RuleId};
use crate::sql::{Origin, StmtKind};

pub(crate) fn check(cx: &FileCx<'_>, out: &mut Vec<Finding>) {
    let lines = LineIndex::new(cx.text);
    let views = FileViews::new(cx);
    for (index, stmt, _) in cx.statements() {
        let StmtKind::Merge {
            table,
            source,
            by_source,
        } = &stmt.kind
        else {
            continue;
        };
        if in_do_block(cx, stmt) {
            continue;
        }
        let target_exists = cx.is_existing_large_table(index, table);
        let mut finding = match (target_exists, views.first_existing_rows(cx, index, source)) {
            (true, Some(read)) => Finding::at(
                RuleId::BackfillMerge,
                stmt,
                format!(
                    "MERGE into `{table}`, an existing table, writes a row for every matching row of `{}` inside the migration: the rows stay locked and the deploy waits until it finishes",
                    read.table
                ),
                MOVE_TO_DATA_MIGRATION,
            ),
            // Like INSERT ... SELECT: a new target still receives as many rows as the source has.
            (false, Some(read)) => Finding::at(
                RuleId::BackfillMerge,
                stmt,
                format!(
                    "MERGE copies the rows of {} into `{table}` inside the migration: it runs as long as `{}` is large and the deploy waits until it finishes",
                    read.phrase(),
                    read.table
                ),
                MOVE_TO_DATA_MIGRATION,
            ),
            (true, None) if *by_source => Finding::at(
                RuleId::BackfillMerge,
                stmt,
                format!(
                    "MERGE into `{table}`, an existing table, with WHEN NOT MATCHED BY SOURCE acts on every row of `{table}` its source does not match, inside the migration: the rows stay locked and the deploy waits until it finishes"
                ),
                MOVE_TO_DATA_MIGRATION,
            ),
            // Constant rows upserted by key: a seed, like INSERT ... VALUES ... ON CONFLICT.
            (true, None) if source.sources.is_empty() => continue,
            // The source reads only tables this file created: as many rows as the file put there.
            (true, None) => Finding::at(
                RuleId::BackfillMerge,
                stmt,
                format!(
                    "MERGE into `{table}`, an existing table, writes a row for every row of its source inside the migration: the rows stay locked and the deploy waits until it finishes"
                ),
                MOVE_TO_DATA_MIGRATION,
            ),
            (false, None) => continue,
        };
        if stmt.origin == Origin::Cte {
            finding = finding.with_note(cte_note("MERGE", &lines, stmt));
        }
        out.push(finding);
    }
}

#[cfg(test)]
mod tests {
    use crate::lint::RuleId::BackfillMerge as RULE;
    use crate::lint::rules::test_support::{lint_errors, lint_ok};
    use crate::sql::Dialect::Postgres;

    // SQLite has no MERGE (its upsert is INSERT ... ON CONFLICT), so these tests are PostgreSQL's.

    #[test]
    fn err_merge_from_existing_table() {
        let sql = "MERGE INTO user_stats s\nUSING users u ON s.user_id = u.id\nWHEN MATCHED THEN UPDATE SET handle = u.handle\nWHEN NOT MATCHED THEN INSERT (user_id, handle) VALUES (u.id, u.handle);\n";
        insta::assert_yaml_snapshot!(lint_errors(sql, Postgres, RULE));
    }

    #[test]
    fn ok_merge_of_constant_rows_is_a_seed() {
        // Like INSERT ... VALUES ... ON CONFLICT: as many rows as the VALUES list has.
        let sql = "MERGE INTO settings s\nUSING (VALUES ('theme', 'dark')) AS v(key, value) ON s.key = v.key\nWHEN MATCHED THEN UPDATE SET value = v.value\nWHEN NOT MATCHED THEN INSERT (key, value) VALUES (v.key, v.value);\n";
        lint_ok(sql, Postgres, RULE);
    }

    #[test]
    fn err_merge_of_constant_rows_not_matched_by_source() {
        // PostgreSQL 17: the DELETE acts on every other row of the target.
        let sql = "MERGE INTO settings s\nUSING (VALUES ('theme', 'dark')) AS v(key, value) ON s.key = v.key\nWHEN NOT MATCHED THEN INSERT (key, value) VALUES (v.key, v.value)\nWHEN NOT MATCHED BY SOURCE THEN DELETE;\n";
        insta::assert_yaml_snapshot!(lint_errors(sql, Postgres, RULE));
    }

    #[test]
    fn err_merge_copies_existing_table_into_new_one() {
        let sql = "CREATE TABLE user_stats (user_id bigint PRIMARY KEY, handle text);\nMERGE INTO user_stats s USING users u ON s.user_id = u.id\nWHEN NOT MATCHED THEN INSERT (user_id, handle) VALUES (u.id, u.handle);\n";
        insta::assert_yaml_snapshot!(lint_errors(sql, Postgres, RULE));
    }

    #[test]
    fn ok_merge_between_tables_created_in_same_file() {
        lint_ok(
            "CREATE TABLE a (id int PRIMARY KEY);\nCREATE TABLE b (id int PRIMARY KEY);\nMERGE INTO b USING a ON a.id = b.id\nWHEN NOT MATCHED THEN INSERT (id) VALUES (a.id);\n",
            Postgres,
            RULE,
        );
    }

    #[test]
    fn ok_merge_in_function_body() {
        lint_ok(
            "CREATE FUNCTION sync() RETURNS void LANGUAGE plpgsql AS $$ BEGIN MERGE INTO user_stats s USING users u ON s.user_id = u.id WHEN NOT MATCHED THEN INSERT (user_id) VALUES (u.id); END $$;",
            Postgres,
            RULE,
        );
    }

    #[test]
    fn ok_merge_of_constants_guarded_by_an_existing_table() {
        // The ON condition reads `users`, but the rows merged are constants.
        let sql = "MERGE INTO settings s\nUSING (SELECT 'theme' AS key) AS v ON s.key = v.key AND EXISTS (SELECT 1 FROM users)\nWHEN NOT MATCHED THEN INSERT (key) VALUES (v.key);\n";
        lint_ok(sql, Postgres, RULE);
    }

    #[test]
    fn err_merge_from_a_set_returning_function_of_the_file() {
        let sql = "CREATE FUNCTION active_ids() RETURNS SETOF bigint LANGUAGE sql AS $$ SELECT id FROM users WHERE active $$;\nMERGE INTO user_stats s USING active_ids() AS a(id) ON s.user_id = a.id\nWHEN NOT MATCHED THEN INSERT (user_id) VALUES (a.id);\n";
        let found = lint_errors(sql, Postgres, RULE);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].contains("every matching row of `users`"),
            "{found:?}"
        );
    }
}
