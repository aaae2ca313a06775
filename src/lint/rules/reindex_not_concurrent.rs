//! `reindex-not-concurrent` (PostgreSQL): REINDEX without CONCURRENTLY.
//!
//! A plain REINDEX holds a SHARE lock on each table for the whole rebuild (every write waits) and
//! an ACCESS EXCLUSIVE lock on each index it rebuilds (every query that would use the index
//! waits, reads included). REINDEX CONCURRENTLY (PostgreSQL 12+) builds a new index next to the
//! old one and swaps them, blocking neither. Rebuilding an index or a table created earlier in
//! the file blocks nobody; a table configured small rebuilds in no time. SCHEMA and DATABASE
//! rebuild every index they hold and are always reported; SYSTEM cannot run concurrently at all
//! and is reported with a help of its own.

use crate::lint::rules::CreatedHere;
use crate::lint::{FileCx, Finding, RuleId};
use crate::sql::{Dialect, ReindexTarget, StmtKind};

pub(crate) fn check(cx: &FileCx<'_>, out: &mut Vec<Finding>) {
    if cx.dialect != Dialect::Postgres {
        return;
    }
    let mut created = CreatedHere::default();
    for (index, stmt, _) in cx.statements() {
        if let StmtKind::Reindex {
            target,
            concurrently: false,
        } = &stmt.kind
        {
            let what = match target {
                ReindexTarget::Index(name) if !created.has_index(name) => Some(format!(
                    "REINDEX INDEX `{name}` locks the index ACCESS EXCLUSIVE and its table SHARE while it rebuilds: writes to the table wait, and so do reads that use the index"
                )),
                ReindexTarget::Table(table) if cx.is_existing_large_table(index, table) => {
                    Some(format!(
                        "REINDEX TABLE `{table}` locks `{table}` SHARE and each of its indexes ACCESS EXCLUSIVE while it rebuilds them: writes wait, and so do reads that use an index"
                    ))
                }
                ReindexTarget::Named(name) => Some(format!(
                    "REINDEX `{name}` blocks writes to the table, and reads through its indexes, while it rebuilds"
                )),
                ReindexTarget::Many(scope) => Some(format!(
                    "REINDEX {scope} rebuilds every index in it, one table at a time, each under a SHARE lock on the table and ACCESS EXCLUSIVE on its indexes: writes wait, and so do reads that use an index"
                )),
                _ => None,
            };
            if let Some(message) = what {
                let help = if matches!(target, ReindexTarget::Many(scope) if scope == "SYSTEM") {
                    "REINDEX SYSTEM cannot run concurrently: run it in a maintenance window, outside the migrations"
                } else {
                    "use REINDEX ... CONCURRENTLY (PostgreSQL 12+) in its own migration marked `-- migrate: no-transaction`: it rebuilds without blocking reads or writes"
                };
                out.push(Finding::at(
                    RuleId::ReindexNotConcurrent,
                    stmt,
                    message,
                    help,
                ));
            }
        }
        created.record(stmt);
    }
}

#[cfg(test)]
mod tests {
    use crate::lint::RuleId::ReindexNotConcurrent as RULE;
    use crate::lint::rules::test_support::{lint_errors, lint_ok};
    use crate::sql::Dialect::{Postgres, Sqlite};

    #[test]
    fn err_reindex_index() {
        let sql = "REINDEX INDEX users_handle_idx;\n";
        insta::assert_yaml_snapshot!(lint_errors(sql, Postgres, RULE));
    }

    #[test]
    fn err_reindex_table() {
        let sql = "REINDEX TABLE posts;\n";
        insta::assert_yaml_snapshot!(lint_errors(sql, Postgres, RULE));
    }

    #[test]
    fn err_reindex_schema_database_system() {
        let sql = "REINDEX SCHEMA app;\nREINDEX DATABASE app;\nREINDEX (CONCURRENTLY off) DATABASE app;\nREINDEX SYSTEM;\n";
        insta::assert_yaml_snapshot!(lint_errors(sql, Postgres, RULE));
    }

    #[test]
    fn ok_concurrently() {
        lint_ok(
            "REINDEX INDEX CONCURRENTLY users_handle_idx;\nREINDEX TABLE CONCURRENTLY posts;\nREINDEX (CONCURRENTLY) SCHEMA app;\nREINDEX (VERBOSE, CONCURRENTLY true) DATABASE app;\n",
            Postgres,
            RULE,
        );
    }

    #[test]
    fn ok_created_in_same_file() {
        lint_ok(
            "CREATE TABLE t (id int PRIMARY KEY, n int);\nCREATE INDEX t_n_idx ON t (n);\nREINDEX TABLE t;\nREINDEX INDEX t_n_idx;\n",
            Postgres,
            RULE,
        );
    }

    #[test]
    fn ok_sqlite() {
        lint_ok("REINDEX users_handle_idx;\n", Sqlite, RULE);
    }
}
