//! `index-not-concurrent` (PostgreSQL): index builds and drops that block an existing table.
//!
//! - CREATE INDEX without CONCURRENTLY holds a SHARE lock for the whole build: reads go on, every
//!   write to the table waits.
//! - DROP INDEX without CONCURRENTLY takes an ACCESS EXCLUSIVE lock on the index's table. Only an
//!   index created earlier in the same file is known to be on a new table; any other is assumed
//!   to be on an existing one.
//! - ADD CONSTRAINT ... UNIQUE / PRIMARY KEY (and ADD COLUMN ... UNIQUE / PRIMARY KEY) builds its
//!   index under the ACCESS EXCLUSIVE lock of ALTER TABLE, unless it adopts one built beforehand
//!   (`USING INDEX`).
//!
//! An index on a materialized view created earlier in the file is not reported: nothing can have
//! used the view yet. SQLite has no CONCURRENTLY, so there is nothing better to suggest there.

use crate::lint::rules::CreatedHere;
use crate::lint::{FileCx, Finding, RuleId};
use crate::sql::{AlterAction, ConstraintKind, Dialect, Statement, StmtKind};

pub(crate) fn check(cx: &FileCx<'_>, out: &mut Vec<Finding>) {
    if cx.dialect != Dialect::Postgres {
        return;
    }
    let mut created = CreatedHere::default();
    for (index, stmt, _) in cx.statements() {
        judge(cx, index, stmt, &created, out);
        created.record(stmt);
    }
}

fn judge(
    cx: &FileCx<'_>,
    index: usize,
    stmt: &Statement,
    created: &CreatedHere<'_>,
    out: &mut Vec<Finding>,
) {
    match &stmt.kind {
        StmtKind::CreateIndex {
            table,
            concurrently: false,
            unique,
            ..
        } if cx.is_existing_large_table(index, table) && !created.has_view(table) => {
            let what = if *unique {
                "CREATE UNIQUE INDEX"
            } else {
                "CREATE INDEX"
            };
            out.push(Finding::at(
                    RuleId::IndexNotConcurrent,
                    stmt,
                    format!("{what} on `{table}`, an existing table, without CONCURRENTLY holds a SHARE lock for the whole build: every write to `{table}` waits until it finishes"),
                    format!("use {what} CONCURRENTLY, outside a transaction (see `cargo xtask migrate lint --explain concurrently-in-transaction`)"),
                ));
        }
        StmtKind::DropIndex {
            names,
            concurrently: false,
        } => {
            let Some(name) = names.iter().find(|n| !created.has_index(n)) else {
                return;
            };
            out.push(Finding::at(
                    RuleId::IndexNotConcurrent,
                    stmt,
                    format!("DROP INDEX `{name}` without CONCURRENTLY takes an ACCESS EXCLUSIVE lock on its table: reads and writes wait until it finishes, and it waits for every running query first"),
                    "use DROP INDEX CONCURRENTLY, outside a transaction (see `cargo xtask migrate lint --explain concurrently-in-transaction`)",
                ));
        }
        StmtKind::AlterTable { table, actions } if cx.is_existing_large_table(index, table) => {
            for action in actions {
                let builds_index = |kind: &ConstraintKind| {
                    matches!(
                        kind,
                        ConstraintKind::Unique { using_index: false }
                            | ConstraintKind::PrimaryKey { using_index: false }
                    )
                };
                let kind = match action {
                    AlterAction::AddConstraint(c) if builds_index(&c.kind) => &c.kind,
                    AlterAction::AddColumn { column } => {
                        match column.constraints.iter().find(|c| builds_index(&c.kind)) {
                            Some(c) => &c.kind,
                            None => continue,
                        }
                    }
                    _ => continue,
                };
                let what = match kind {
                    ConstraintKind::PrimaryKey { .. } => "PRIMARY KEY",
                    _ => "UNIQUE",
                };
                out.push(Finding::at(
                        RuleId::IndexNotConcurrent,
                        stmt,
                        format!("adding a {what} constraint to `{table}`, an existing table, builds its index under an ACCESS EXCLUSIVE lock: reads and writes wait for the whole build"),
                        format!("build the index first with CREATE UNIQUE INDEX CONCURRENTLY (outside a transaction), then ADD CONSTRAINT ... {what} USING INDEX, which only updates the catalog"),
                    ));
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use crate::lint::RuleId::IndexNotConcurrent as RULE;
    use crate::lint::rules::test_support::{lint_errors, lint_ok};
    use crate::sql::Dialect::{Postgres, Sqlite};

    #[test]
    fn err_create_index_on_existing_table() {
        let sql = "CREATE INDEX users_created_at_idx ON users (created_at);\n";
        insta::assert_yaml_snapshot!(lint_errors(sql, Postgres, RULE));
    }

    #[test]
    fn err_create_unique_index_on_existing_table() {
        let sql =
            "CREATE UNIQUE INDEX IF NOT EXISTS users_handle_key ON public.users (lower(handle));\n";
        insta::assert_yaml_snapshot!(lint_errors(sql, Postgres, RULE));
    }

    #[test]
    fn err_drop_index() {
        let sql = "DROP INDEX IF EXISTS posts_author_id_idx;\n";
        insta::assert_yaml_snapshot!(lint_errors(sql, Postgres, RULE));
    }

    #[test]
    fn err_add_unique_and_primary_key_constraints() {
        let sql = "ALTER TABLE users ADD CONSTRAINT users_handle_key UNIQUE (handle);\nALTER TABLE follows ADD PRIMARY KEY (follower_id, followee_id);\n";
        insta::assert_yaml_snapshot!(lint_errors(sql, Postgres, RULE));
    }

    #[test]
    fn err_add_column_with_unique() {
        let sql = "ALTER TABLE users ADD COLUMN email text UNIQUE;\n";
        insta::assert_yaml_snapshot!(lint_errors(sql, Postgres, RULE));
    }

    #[test]
    fn ok_concurrently() {
        lint_ok(
            "CREATE INDEX CONCURRENTLY users_created_at_idx ON users (created_at);\nDROP INDEX CONCURRENTLY posts_author_id_idx;\n",
            Postgres,
            RULE,
        );
    }

    #[test]
    fn ok_constraint_using_index() {
        lint_ok(
            "ALTER TABLE users ADD CONSTRAINT users_handle_key UNIQUE USING INDEX users_handle_idx;\nALTER TABLE follows ADD CONSTRAINT follows_pkey PRIMARY KEY USING INDEX follows_idx;\n",
            Postgres,
            RULE,
        );
    }

    #[test]
    fn ok_index_on_table_created_in_same_file() {
        lint_ok(
            "CREATE TABLE t (id int, n int);\nCREATE INDEX t_n_idx ON t (n);\nALTER TABLE t ADD CONSTRAINT t_n_key UNIQUE (n);\nDROP INDEX t_n_idx;\n",
            Postgres,
            RULE,
        );
    }

    #[test]
    fn ok_index_on_materialized_view_created_in_same_file() {
        // LemmyNet/lemmy 2020-02-06-165953_change_post_title_length: recreate the view, index it.
        lint_ok(
            "CREATE MATERIALIZED VIEW post_stats AS SELECT id FROM posts;\nCREATE UNIQUE INDEX post_stats_id ON post_stats (id);\n",
            Postgres,
            RULE,
        );
    }

    #[test]
    fn ok_sqlite_has_no_concurrently() {
        lint_ok(
            "CREATE INDEX users_created_at_idx ON users (created_at);\nDROP INDEX users_created_at_idx;\n",
            Sqlite,
            RULE,
        );
    }
}
