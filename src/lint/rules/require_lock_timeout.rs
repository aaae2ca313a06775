//! `require-lock-timeout` (PostgreSQL, warning): a strong lock requested with no lock_timeout.
//!
//! A statement that needs ACCESS EXCLUSIVE (or SHARE ROW EXCLUSIVE) on a busy table first waits
//! for every query running on it; while it waits, every new query on the table queues behind it,
//! reads included. One slow report query and the site is down. With `SET lock_timeout` the
//! migration gives up after a few seconds instead and can be retried. Reported once per file, at
//! the first such statement on an existing table: ALTER TABLE (anything but VALIDATE CONSTRAINT),
//! DROP TABLE, TRUNCATE, DROP INDEX without CONCURRENTLY, CREATE TRIGGER, DROP TRIGGER, DROP
//! [MATERIALIZED] VIEW, CREATE OR REPLACE VIEW, and a foreign key to an existing table in CREATE
//! TABLE or in ALTER TABLE of a new table (it locks the referenced table SHARE ROW EXCLUSIVE to
//! install its triggers). A table created earlier in the file has nobody waiting on it.

use crate::lint::rules::CreatedHere;
use crate::lint::{FileCx, Finding, RuleId};
use crate::sql::{AlterAction, Constraint, ConstraintKind, Dialect, Name, StmtKind};

pub(crate) fn check(cx: &FileCx<'_>, out: &mut Vec<Finding>) {
    if cx.dialect != Dialect::Postgres {
        return;
    }
    let mut created = CreatedHere::default();
    for (index, stmt, facts) in cx.statements() {
        let strong = strong_lock(cx, index, &stmt.kind, &created);
        created.record(stmt);
        // Once per file: the first real statement is the one to report, not a guess the parser
        // made in broken text.
        if facts.lock_timeout_set || cx.is_recovered(stmt) {
            continue;
        }
        let Some(StrongLock { what, lock, on }) = strong else {
            continue;
        };
        let on = match on {
            On::Table(table) => format!("on `{table}`"),
            On::ItsTable => "on its table".to_string(),
            On::View(view) => format!("on the view `{view}`"),
            On::TheView => "on the view".to_string(),
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

/// A statement that waits for a strong lock: what takes it, which lock, and on what.
struct StrongLock<'a> {
    what: String,
    lock: &'static str,
    on: On<'a>,
}

/// What the lock is taken on.
enum On<'a> {
    Table(&'a Name),
    /// An index's or a trigger's table, not named in the statement.
    ItsTable,
    View(&'a Name),
    /// A view the statement names only as text the view of the SQL does not keep.
    TheView,
}

const ACCESS_EXCLUSIVE: &str = "n ACCESS EXCLUSIVE";
const SHARE_ROW_EXCLUSIVE: &str = " SHARE ROW EXCLUSIVE";

fn strong_lock<'a>(
    cx: &FileCx<'_>,
    index: usize,
    kind: &'a StmtKind,
    created: &CreatedHere<'_>,
) -> Option<StrongLock<'a>> {
    let existing = |t: &Name| cx.is_existing_large_table(index, t);
    let lock = |what: &str, lock: &'static str, on: On<'a>| {
        Some(StrongLock {
            what: what.to_string(),
            lock,
            on,
        })
    };
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
            let mode = if only_foreign_keys {
                SHARE_ROW_EXCLUSIVE
            } else {
                ACCESS_EXCLUSIVE
            };
            lock("ALTER TABLE", mode, On::Table(table))
        }
        // A foreign key added to a new (or small) table still locks the existing table it
        // references, SHARE ROW EXCLUSIVE, to install its triggers there.
        StmtKind::AlterTable { table, actions } => {
            let constraints = actions.iter().flat_map(|a| match a {
                AlterAction::AddConstraint(c) => std::slice::from_ref(c),
                AlterAction::AddColumn { column } => column.constraints.as_slice(),
                _ => &[],
            });
            let referenced = referenced_existing(constraints, table, existing)?;
            lock(
                &format!("the foreign key of ALTER TABLE `{table}`"),
                SHARE_ROW_EXCLUSIVE,
                On::Table(referenced),
            )
        }
        StmtKind::DropTable { tables } => tables
            .iter()
            .find(|t| existing(t))
            .and_then(|t| lock("DROP TABLE", ACCESS_EXCLUSIVE, On::Table(t))),
        StmtKind::Truncate { tables } => tables
            .iter()
            .find(|t| existing(t))
            .and_then(|t| lock("TRUNCATE", ACCESS_EXCLUSIVE, On::Table(t))),
        StmtKind::DropIndex {
            names,
            concurrently: false,
        } => names
            .iter()
            .any(|n| !created.has_index(n))
            .then(|| lock("DROP INDEX", ACCESS_EXCLUSIVE, On::ItsTable))
            .flatten(),
        StmtKind::CreateTrigger { table, .. } if existing(table) => {
            lock("CREATE TRIGGER", SHARE_ROW_EXCLUSIVE, On::Table(table))
        }
        // So does a foreign key in CREATE TABLE.
        StmtKind::CreateTable {
            table,
            columns,
            constraints,
            ..
        } => {
            let all = constraints
                .iter()
                .chain(columns.iter().flat_map(|c| &c.constraints));
            let referenced = referenced_existing(all, table, existing)?;
            lock(
                &format!("the foreign key of CREATE TABLE `{table}`"),
                SHARE_ROW_EXCLUSIVE,
                On::Table(referenced),
            )
        }
        // Replacing a view locks it ACCESS EXCLUSIVE; one created earlier in the file has nobody
        // waiting on it, and a new name locks nothing.
        StmtKind::CreateView {
            name,
            or_replace: true,
            ..
        } if !created_view_before(cx, index, name) => {
            lock("CREATE OR REPLACE VIEW", ACCESS_EXCLUSIVE, On::View(name))
        }
        // Statements the view keeps only as their leading keywords (`DROP TRIGGER IF EXISTS`):
        // the object's name is not known, so one created earlier in the file cannot be told
        // apart and is reported too.
        StmtKind::Other { what } if starts_with_words(what, "DROP TRIGGER") => {
            lock("DROP TRIGGER", ACCESS_EXCLUSIVE, On::ItsTable)
        }
        StmtKind::Other { what } if starts_with_words(what, "DROP VIEW") => {
            lock("DROP VIEW", ACCESS_EXCLUSIVE, On::TheView)
        }
        StmtKind::Other { what } if starts_with_words(what, "DROP MATERIALIZED VIEW") => {
            lock("DROP MATERIALIZED VIEW", ACCESS_EXCLUSIVE, On::TheView)
        }
        _ => None,
    }
}

/// The first table a foreign key among `constraints` references that existed before the
/// migration (a self-reference of the table being defined locks nothing else).
fn referenced_existing<'a>(
    constraints: impl Iterator<Item = &'a Constraint>,
    table: &Name,
    existing: impl Fn(&Name) -> bool,
) -> Option<&'a Name> {
    constraints
        .filter_map(|c| match &c.kind {
            ConstraintKind::ForeignKey { references } => Some(references),
            _ => None,
        })
        .find(|r| !r.same_object(table) && existing(r))
}

/// Whether a statement before `index` in the file creates the view `name`.
fn created_view_before(cx: &FileCx<'_>, index: usize, name: &Name) -> bool {
    cx.parsed.statements[..index]
        .iter()
        .any(|s| matches!(&s.kind, StmtKind::CreateView { name: n, .. } if n.same_object(name)))
}

/// Whether the upper-case keywords `what` start with the words `prefix`.
fn starts_with_words(what: &str, prefix: &str) -> bool {
    what.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(' '))
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
    fn err_create_table_with_foreign_key_to_existing_table() {
        let sql = "CREATE TABLE comments (\n  id bigint PRIMARY KEY,\n  post_id bigint NOT NULL REFERENCES posts (id)\n);\n";
        insta::assert_yaml_snapshot!(lint_errors(sql, Postgres, RULE));
        let sql = "CREATE TABLE likes (user_id bigint, post_id bigint, FOREIGN KEY (user_id) REFERENCES users (id));\n";
        assert_eq!(lint_errors(sql, Postgres, RULE).len(), 1);
    }

    #[test]
    fn err_foreign_key_added_to_new_table() {
        let sql = "CREATE TABLE comments (id bigint PRIMARY KEY, post_id bigint);\nALTER TABLE comments ADD CONSTRAINT comments_post_fk FOREIGN KEY (post_id) REFERENCES posts (id);\n";
        insta::assert_yaml_snapshot!(lint_errors(sql, Postgres, RULE));
        let sql = "CREATE TABLE comments (id bigint PRIMARY KEY);\nALTER TABLE comments ADD COLUMN author_id bigint REFERENCES users;\n";
        assert_eq!(lint_errors(sql, Postgres, RULE).len(), 1);
    }

    #[test]
    fn err_drop_trigger_and_views() {
        let found: Vec<String> = [
            "DROP TRIGGER IF EXISTS bump ON posts;",
            "DROP VIEW active_users;",
            "DROP MATERIALIZED VIEW IF EXISTS post_stats;",
            "CREATE OR REPLACE VIEW active_users AS SELECT id, handle FROM users;",
        ]
        .into_iter()
        .flat_map(|sql| lint_errors(sql, Postgres, RULE))
        .collect();
        insta::assert_yaml_snapshot!(found);
    }

    #[test]
    fn ok_new_views() {
        lint_ok(
            "CREATE VIEW active_users AS SELECT id FROM users;\nCREATE OR REPLACE VIEW active_users AS SELECT id, handle FROM users;\n",
            Postgres,
            RULE,
        );
    }

    #[test]
    fn ok_foreign_keys_between_new_tables() {
        lint_ok(
            "CREATE TABLE a (id bigint PRIMARY KEY, parent_id bigint REFERENCES a (id));\nCREATE TABLE b (id bigint PRIMARY KEY, a_id bigint REFERENCES a (id));\nALTER TABLE b ADD CONSTRAINT b_a_fk2 FOREIGN KEY (a_id) REFERENCES a (id);\nCREATE TABLE c (id bigint PRIMARY KEY, note text);\n",
            Postgres,
            RULE,
        );
        lint_ok(
            "SET lock_timeout = '2s';\nCREATE TABLE comments (id bigint PRIMARY KEY, post_id bigint REFERENCES posts (id));\n",
            Postgres,
            RULE,
        );
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
