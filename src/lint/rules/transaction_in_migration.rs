//! `transaction-in-migration` (PostgreSQL and SQLite): BEGIN / COMMIT / ROLLBACK written in a
//! migration that the runner already wraps in a transaction.
//!
//! refinery runs each migration, and then its history insert, inside one transaction of its own.
//! A BEGIN in the file only makes PostgreSQL warn ("there is already a transaction in progress");
//! SQLite refuses it ("cannot start a transaction within a transaction"). A COMMIT ends the
//! runner's transaction early: what comes before it is committed on its own, and the rest of
//! the file runs outside the runner's transaction, so a failure after it leaves the migration
//! half applied and not recorded. A ROLLBACK undoes what came before it, yet the rest runs and
//! the runner records the migration as applied.
//!
//! Not reported when the runner does not wrap migrations (`transactional-migrations = false`),
//! nor in a migration marked `-- migrate: no-transaction` (`migrate run` runs it outside any
//! transaction, so its own BEGIN ... COMMIT is the only one) or named `*.autocommit.up.sql`
//! (popx's convention for the same). Statements inside a DO block are
//! not transaction control of the file.

use crate::lint::{FileCx, Finding, RuleId};
use crate::sql::{Dialect, Origin, StmtKind, TransactionControl};

const HELP: &str = "remove it: the runner already runs the migration in one transaction (a migration that must control its own transactions is marked `-- migrate: no-transaction`)";

pub(crate) fn check(cx: &FileCx<'_>, out: &mut Vec<Finding>) {
    if !cx.options.runner_wraps_in_transaction {
        return;
    }
    // `migrate run` runs a migration marked so outside any transaction of its own, and popx one
    // named so.
    if cx.outside_transaction.is_some() {
        return;
    }
    for (_, stmt, _) in cx.statements() {
        if stmt.origin != Origin::TopLevel {
            continue;
        }
        let StmtKind::Transaction(control) = stmt.kind else {
            continue;
        };
        let message = match (control, cx.dialect) {
            (TransactionControl::Begin, Dialect::Postgres) => {
                "BEGIN inside the transaction the runner wraps this migration in only makes PostgreSQL warn (\"there is already a transaction in progress\"), and a COMMIT after it ends the runner's transaction early"
            }
            (TransactionControl::Begin, Dialect::Sqlite) => {
                "BEGIN inside the transaction the runner wraps this migration in fails: SQLite refuses it (\"cannot start a transaction within a transaction\")"
            }
            (TransactionControl::Commit, _) => {
                "COMMIT ends the transaction the runner wraps this migration in: what comes before it is committed on its own, and the rest of the migration runs outside the runner's transaction, so a failure after it leaves the migration half applied and not recorded"
            }
            (TransactionControl::Rollback, _) => {
                "ROLLBACK undoes the transaction the runner wraps this migration in: the statements before it are rolled back, yet the rest runs and the runner records the migration as applied"
            }
        };
        out.push(Finding::at(
            RuleId::TransactionInMigration,
            stmt,
            message,
            HELP,
        ));
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::lint::RuleId::TransactionInMigration as RULE;
    use crate::lint::rules::test_support::{lint_errors, lint_ok};
    use crate::lint::{LintOptions, lint_text};
    use crate::sql::Dialect::{Postgres, Sqlite};

    #[test]
    fn err_begin_commit() {
        let sql = "BEGIN;\nALTER TABLE users ADD COLUMN bio text;\nCOMMIT;\n";
        insta::assert_yaml_snapshot!(lint_errors(sql, Postgres, RULE));
    }

    #[test]
    fn err_other_spellings() {
        let sql = "START TRANSACTION;\nALTER TABLE users ADD COLUMN bio text;\nEND;\nBEGIN WORK;\nROLLBACK;\nBEGIN;\nABORT;\n";
        insta::assert_yaml_snapshot!(lint_errors(sql, Postgres, RULE));
    }

    #[test]
    fn err_sqlite() {
        let sql = "BEGIN TRANSACTION;\nALTER TABLE users ADD COLUMN bio TEXT;\nCOMMIT;\n";
        insta::assert_yaml_snapshot!(lint_errors(sql, Sqlite, RULE));
    }

    #[test]
    fn ok_marked_no_transaction() {
        lint_ok(
            "-- migrate: no-transaction\nBEGIN;\nALTER TABLE users ADD COLUMN bio text;\nCOMMIT;\n",
            Postgres,
            RULE,
        );
    }

    #[test]
    fn ok_savepoints_and_plain_statements() {
        lint_ok(
            "SAVEPOINT s;\nALTER TABLE users ADD COLUMN bio text;\nROLLBACK TO SAVEPOINT s;\nRELEASE SAVEPOINT s;\n",
            Postgres,
            RULE,
        );
    }

    #[test]
    fn ok_runner_without_transaction() {
        let options = LintOptions {
            dialect: Postgres,
            runner_wraps_in_transaction: false,
            ..LintOptions::default()
        };
        let found: Vec<_> = lint_text(
            Path::new("t.sql"),
            "BEGIN;\nALTER TABLE users ADD COLUMN bio text;\nCOMMIT;\n",
            &options,
        )
        .into_iter()
        .filter(|f| f.rule == RULE)
        .collect();
        assert!(found.is_empty(), "{found:?}");
    }
}
