//! `concurrently-in-transaction` (PostgreSQL): CREATE/DROP INDEX CONCURRENTLY where PostgreSQL
//! refuses it.
//!
//! PostgreSQL fails such a statement with "cannot run inside a transaction block" inside BEGIN ...
//! COMMIT, and "cannot be executed from a function" inside a DO block. The BEGIN may be the
//! file's own, or the migration runner's: refinery 0.10 runs every migration in a transaction and
//! has no opt-out (`transactional-migrations = false` tells the linter when a runner does not).
//! A migration marked `-- migrate: no-transaction` is run outside one by `migrate run`, and one
//! named by a runner's convention for that (ory/popx's `*.autocommit.up.sql`) by that runner, so
//! the runner's transaction does not apply to it (its own BEGIN and DO blocks still do).

use crate::lint::rules::{LineIndex, in_do_block};
use crate::lint::{FileCx, Finding, RuleId};
use crate::sql::{Dialect, StmtKind, TransactionControl};

/// Where the details are: the supported way is spelled out by `--explain`, so the help stays
/// one line.
const EXPLAIN: &str = "see `cargo xtask migrate lint --explain concurrently-in-transaction`";

/// What to do when the runner wraps the migration in a transaction.
fn runner_help() -> String {
    format!(
        "put it in its own migration marked `-- migrate: no-transaction`, applied by `cargo xtask migrate run`; {EXPLAIN}"
    )
}

pub(crate) fn check(cx: &FileCx<'_>, out: &mut Vec<Finding>) {
    if cx.dialect != Dialect::Postgres {
        return;
    }
    let lines = LineIndex::new(cx.text);
    // `migrate run` runs a migration marked so outside any transaction of its own, and popx one
    // named so.
    let outside_runner = cx.outside_transaction.is_some();
    // Where the file's latest BEGIN starts, for the message.
    let mut last_begin = None;
    for (_, stmt, facts) in cx.statements() {
        if let StmtKind::Transaction(TransactionControl::Begin) = stmt.kind {
            last_begin = Some(stmt.span.start);
        }
        let what = match &stmt.kind {
            StmtKind::CreateIndex {
                concurrently: true,
                unique: true,
                ..
            } => "CREATE UNIQUE INDEX CONCURRENTLY",
            StmtKind::CreateIndex {
                concurrently: true, ..
            } => "CREATE INDEX CONCURRENTLY",
            StmtKind::DropIndex {
                concurrently: true, ..
            } => "DROP INDEX CONCURRENTLY",
            _ => continue,
        };
        let finding = if in_do_block(cx, stmt) {
            Finding::at(
                RuleId::ConcurrentlyInTransaction,
                stmt,
                format!(
                    "{what} inside a DO block fails: PostgreSQL refuses it inside a function or transaction block, so the migration stops here"
                ),
                if cx.options.runner_wraps_in_transaction {
                    format!(
                        "move it out of the DO block into its own migration and run that outside the runner's transaction; {EXPLAIN}"
                    )
                } else {
                    format!("move it out of the DO block; {EXPLAIN}")
                },
            )
        } else if facts.in_explicit_transaction {
            let at = last_begin
                .map(|b| format!(" at line {}", lines.line_of(b)))
                .unwrap_or_default();
            let help = if cx.options.runner_wraps_in_transaction {
                format!(
                    "remove the BEGIN ... COMMIT around it, then {}",
                    runner_help()
                )
            } else {
                "move it after the COMMIT of the file's transaction block (each statement outside one runs on its own)".to_string()
            };
            Finding::at(
                RuleId::ConcurrentlyInTransaction,
                stmt,
                format!(
                    "{what} fails inside the file's own BEGIN{at}: PostgreSQL refuses it inside a transaction block (\"cannot run inside a transaction block\")"
                ),
                help,
            )
        } else if facts.in_transaction && !outside_runner {
            Finding::at(
                RuleId::ConcurrentlyInTransaction,
                stmt,
                format!(
                    "{what} fails in this migration: refinery runs every migration in a transaction, and PostgreSQL refuses it inside a transaction block (\"cannot run inside a transaction block\")"
                ),
                runner_help(),
            )
        } else {
            continue;
        };
        out.push(finding);
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::lint::RuleId::ConcurrentlyInTransaction as RULE;
    use crate::lint::rules::test_support::{lint_errors, lint_ok};
    use crate::lint::{LintOptions, lint_text};
    use crate::sql::Dialect::Postgres;

    #[test]
    fn err_runner_wraps_migrations() {
        let sql = "SET lock_timeout = '2s';\nCREATE INDEX CONCURRENTLY IF NOT EXISTS users_created_at_idx ON users (created_at);\n";
        insta::assert_yaml_snapshot!(lint_errors(sql, Postgres, RULE));
    }

    #[test]
    fn err_explicit_begin() {
        let sql = "BEGIN;\nDROP INDEX CONCURRENTLY posts_author_id_idx;\nCOMMIT;\n";
        insta::assert_yaml_snapshot!(lint_errors(sql, Postgres, RULE));
    }

    #[test]
    fn err_in_do_block() {
        let sql = "DO $$ BEGIN EXECUTE 'CREATE INDEX CONCURRENTLY users_created_at_idx ON users (created_at)'; END $$;\n";
        insta::assert_yaml_snapshot!(lint_errors(sql, Postgres, RULE));
    }

    #[test]
    fn ok_marked_no_transaction() {
        lint_ok(
            "-- migrate: no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS users_created_at_idx ON users (created_at);\n",
            Postgres,
            RULE,
        );
    }

    #[test]
    fn err_marked_but_in_the_file_s_own_begin() {
        let found = lint_errors(
            "-- migrate: no-transaction\nBEGIN;\nCREATE INDEX CONCURRENTLY i ON users (created_at);\nCOMMIT;\n",
            Postgres,
            RULE,
        );
        assert_eq!(found.len(), 1);
    }

    fn not_wrapped(sql: &str) -> Vec<String> {
        let options = LintOptions {
            dialect: Postgres,
            runner_wraps_in_transaction: false,
            ..LintOptions::default()
        };
        lint_text(Path::new("t.sql"), sql, &options)
            .into_iter()
            .filter(|f| f.rule == RULE)
            .map(|f| f.message)
            .collect()
    }

    #[test]
    fn ok_runner_without_transaction() {
        assert_eq!(
            not_wrapped("CREATE INDEX CONCURRENTLY i ON users (created_at);\n"),
            Vec::<String>::new()
        );
    }

    #[test]
    fn err_explicit_begin_with_runner_without_transaction() {
        let found = not_wrapped(
            "BEGIN;\nCREATE INDEX CONCURRENTLY i ON users (created_at);\nCOMMIT;\nCREATE INDEX CONCURRENTLY j ON users (handle);\n",
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("BEGIN at line 1"), "{found:?}");
    }

    #[test]
    fn ok_without_concurrently() {
        lint_ok(
            "CREATE INDEX users_created_at_idx ON users (created_at);\n",
            Postgres,
            RULE,
        );
    }
}
