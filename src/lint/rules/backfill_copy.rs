//! `backfill-copy`: COPY ... FROM into a table that existed before the migration (PostgreSQL).
//!
//! The load runs inside the migration's transaction: the deploy waits for every row, and a
//! failure half-way leaves nothing to resume. COPY ... TO only reads and is not reported; a COPY
//! inside a DO block is `backfill-do-block`'s.

use crate::lint::rules::in_do_block;
use crate::lint::{FileCx, Finding, RuleId};
use crate::sql::{CopyDirection, StmtKind};

pub(crate) fn check(cx: &FileCx<'_>, out: &mut Vec<Finding>) {
    for (index, stmt, _) in cx.statements() {
        let StmtKind::Copy {
            table: Some(table),
            direction: CopyDirection::From,
        } = &stmt.kind
        else {
            continue;
        };
        if in_do_block(cx, stmt) || !cx.is_existing_large_table(index, table) {
            continue;
        }
        out.push(Finding::at(
            RuleId::BackfillCopy,
            stmt,
            format!("COPY FROM loads rows into `{table}`, an existing table, inside the migration: the deploy waits until every row is in, and a failure half-way leaves nothing to resume"),
            "load the rows with a batched data migration in `data-migrations/` (try it with `cargo xtask backfill sample`), or into a table this migration creates",
        ));
    }
}

#[cfg(test)]
mod tests {
    use crate::lint::RuleId::BackfillCopy as RULE;
    use crate::lint::rules::test_support::{lint_errors, lint_ok};
    use crate::sql::Dialect::Postgres;

    // SQLite has no COPY statement (the sqlite3 shell's `.import` is not SQL).

    #[test]
    fn err_copy_from_into_existing_table() {
        let sql =
            "COPY users (id, handle, created_at) FROM '/srv/import/users.csv' WITH (FORMAT csv);\n";
        insta::assert_yaml_snapshot!(lint_errors(sql, Postgres, RULE));
    }

    #[test]
    fn err_copy_from_stdin() {
        let sql = "COPY public.countries FROM STDIN;\n";
        insta::assert_yaml_snapshot!(lint_errors(sql, Postgres, RULE));
    }

    #[test]
    fn ok_copy_to_is_a_read() {
        lint_ok(
            "COPY users TO '/tmp/users.csv';\nCOPY (SELECT id FROM users) TO STDOUT;\n",
            Postgres,
            RULE,
        );
    }

    #[test]
    fn ok_copy_into_table_created_in_same_file() {
        lint_ok(
            "CREATE TABLE countries (code text);\nCOPY countries FROM '/srv/countries.csv';\n",
            Postgres,
            RULE,
        );
    }
}
