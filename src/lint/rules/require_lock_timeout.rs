//! `require-lock-timeout` (PostgreSQL, warning): a strong lock requested with no lock_timeout.
//!
//! A statement that needs ACCESS EXCLUSIVE (or SHARE ROW EXCLUSIVE) on a busy table first waits
//! for every query running on it; while it waits, every new query on the table queues behind it,
//! reads included. One slow report query and the site is down. With `SET lock_timeout` the
//! migration gives up after a few seconds instead and can be retried. Reported once per file, at
//! the first such statement on an existing table: ALTER TABLE (anything but VALIDATE CONSTRAINT),
//! DROP TABLE, TRUNCATE, DROP INDEX without CONCURRENTLY, CREATE TRIGGER. A table created earlier
//! in the file has nobody waiting on it.

use crate::lint::rules::CreatedHere;
use crate::lint::{FileCx, Finding, RuleId};
use crate::sql::{AlterAction, ConstraintKind, Dialect, Name, StmtKind};

pub(crate) fn check(cx: &FileCx<'_>, out: &mut Vec<Finding>) {
    if cx.dialect != Dialect::Postgres {
        return;
    }
    let mut created = CreatedHere::default();
    for (index, stmt, facts) in cx.statements() {
        let strong = strong_lock(cx, index, &stmt.kind, &created);
        created.record(stmt);
        if facts.lock_timeout_set {
            continue;
        }
        let Some((what, lock, table)) = strong else {
            continue;
        };
        let on = match table {
            Some(table) => format!("on `{table}`"),
            None => "on its table".to_string(),
        };
        out.push(Finding::at(
            RuleId::RequireLockTimeout,
            stmt,
            format!("{what} waits for a{lock} lock {on} with no lock_timeout set: while it waits behind running queries, every new query on the table queues behind it"),
            "put `SET lock_timeout = '2s';` at the top of the file: the migration then fails fast instead of queueing every query on the table behind it, and can be retried later",
        ));
        // Once per file: the first one is where the timeout has to come before.
        return;
    }
}

/// What takes the lock, which lock, and on which table (`None`: an index's table, unknown here).
fn strong_lock<'a>(
    cx: &FileCx<'_>,
    index: usize,
    kind: &'a StmtKind,
    created: &CreatedHere<'_>,
) -> Option<(&'static str, &'static str, Option<&'a Name>)> {
    let existing = |t: &Name| cx.is_existing_large_table(index, t);
    match kind {
        StmtKind::AlterTable { table, actions } if existing(table) => {
            if actions
                .iter()
                .all(|a| matches!(a, AlterAction::ValidateConstraint { .. }))
            {
                return None;
            }
            // Adding a foreign key takes SHARE ROW EXCLUSIVE; nearly everything else, ACCESS
            // EXCLUSIVE. Either blocks writes and queues the table's queries while it waits.
            let only_foreign_keys = actions.iter().all(|a| {
                matches!(a, AlterAction::AddConstraint(c) if matches!(c.kind, ConstraintKind::ForeignKey { .. }))
            });
            let lock = if only_foreign_keys {
                " SHARE ROW EXCLUSIVE"
            } else {
                "n ACCESS EXCLUSIVE"
            };
            Some(("ALTER TABLE", lock, Some(table)))
        }
        StmtKind::DropTable { tables } => tables
            .iter()
            .find(|t| existing(t))
            .map(|t| ("DROP TABLE", "n ACCESS EXCLUSIVE", Some(t))),
        StmtKind::Truncate { tables } => tables
            .iter()
            .find(|t| existing(t))
            .map(|t| ("TRUNCATE", "n ACCESS EXCLUSIVE", Some(t))),
        StmtKind::DropIndex {
            names,
            concurrently: false,
        } => names.iter().any(|n| !created.has_index(n)).then_some((
            "DROP INDEX",
            "n ACCESS EXCLUSIVE",
            None,
        )),
        StmtKind::CreateTrigger { table, .. } if existing(table) => {
            Some(("CREATE TRIGGER", " SHARE ROW EXCLUSIVE", Some(table)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use crate::lint::RuleId::RequireLockTimeout as RULE;
    use crate::lint::rules::test_support::{lint_errors, lint_ok};
    use crate::sql::Dialect::{Postgres, Sqlite};

    #[test]
    fn err_alter_table_without_lock_timeout_reported_once() {
        let sql = "CREATE TABLE t (id int);\nALTER TABLE t ADD COLUMN n int;\nALTER TABLE users ADD COLUMN bio text;\nALTER TABLE users DROP COLUMN display_name;\n";
        let found = lint_errors(sql, Postgres, RULE);
        assert_eq!(found.len(), 1);
        insta::assert_yaml_snapshot!(found);
    }

    #[test]
    fn err_foreign_key_lock() {
        let sql = "ALTER TABLE posts ADD CONSTRAINT posts_author_fk FOREIGN KEY (author_id) REFERENCES users (id) NOT VALID;\n";
        insta::assert_yaml_snapshot!(lint_errors(sql, Postgres, RULE));
    }

    #[test]
    fn err_drop_truncate_trigger_index() {
        for sql in [
            "DROP TABLE legacy_sessions;",
            "TRUNCATE sessions;",
            "CREATE TRIGGER bump AFTER INSERT ON posts FOR EACH ROW EXECUTE FUNCTION bump();",
            "DROP INDEX posts_author_id_idx;",
        ] {
            assert_eq!(lint_errors(sql, Postgres, RULE).len(), 1, "{sql}");
        }
    }

    #[test]
    fn err_lock_timeout_reset_to_zero() {
        let sql = "SET lock_timeout = '2s';\nSET lock_timeout = 0;\nALTER TABLE users ADD COLUMN bio text;\n";
        insta::assert_yaml_snapshot!(lint_errors(sql, Postgres, RULE));
    }

    #[test]
    fn ok_lock_timeout_set_first() {
        lint_ok(
            "SET lock_timeout = '2s';\nALTER TABLE users ADD COLUMN bio text;\n",
            Postgres,
            RULE,
        );
        lint_ok(
            "BEGIN;\nSET LOCAL lock_timeout TO '5s';\nALTER TABLE users RENAME COLUMN bio TO about;\nCOMMIT;\n",
            Postgres,
            RULE,
        );
    }

    #[test]
    fn ok_validate_constraint_and_new_tables() {
        let sql = "ALTER TABLE posts VALIDATE CONSTRAINT posts_author_fk;\nCREATE TABLE t (id int);\nALTER TABLE t ADD COLUMN n int;\nCREATE INDEX CONCURRENTLY i ON users (handle);\nDROP INDEX CONCURRENTLY j;\n";
        lint_ok(sql, Postgres, RULE);
    }

    #[test]
    fn ok_sqlite_has_no_lock_timeout() {
        lint_ok("ALTER TABLE users ADD COLUMN bio text;\n", Sqlite, RULE);
    }
}
