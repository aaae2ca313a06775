//! `identifier-too-long` (PostgreSQL, warning): a name longer than 63 bytes.
//!
//! PostgreSQL keeps at most NAMEDATALEN - 1 = 63 bytes of an identifier and truncates a longer
//! one with only a NOTICE. The object then has a name nobody wrote: a later migration or tool
//! that compares the full name does not find it, and two long names that share their first 63
//! bytes collide ("relation ... already exists"), typically generated index and constraint names.
//! The names checked are the ones a migration gives new objects: CREATE TABLE (the table, its
//! columns and constraints), ADD COLUMN, ADD CONSTRAINT, CREATE INDEX, CREATE VIEW, and the new
//! name of RENAME TO / RENAME COLUMN. Bytes are counted in UTF-8, as a UTF-8 database stores them.

use std::collections::HashMap;

use crate::lint::rules::LineIndex;
use crate::lint::{FileCx, Finding, RuleId};
use crate::sql::{AlterAction, Dialect, StmtKind};

/// PostgreSQL's NAMEDATALEN - 1.
const MAX_BYTES: usize = 63;

pub(crate) fn check(cx: &FileCx<'_>, out: &mut Vec<Finding>) {
    if cx.dialect != Dialect::Postgres {
        return;
    }
    let lines = LineIndex::new(cx.text);
    // Truncated relation name -> the full name and where it was given, to tell collisions.
    let mut seen: HashMap<String, (String, usize)> = HashMap::new();
    for (_, stmt, _) in cx.statements() {
        for (what, name) in given_names(&stmt.kind) {
            if name.len() <= MAX_BYTES {
                continue;
            }
            let kept = truncated(name);
            let mut finding = Finding::at(
                RuleId::IdentifierTooLong,
                stmt,
                format!(
                    "the {what} name `{name}` is {} bytes: PostgreSQL silently truncates it to the 63 bytes `{kept}`",
                    name.len()
                ),
                "shorten it to at most 63 bytes, for example by abbreviating the table or column parts of a generated name",
            );
            // Tables, indexes and views share one namespace per schema; columns and constraints
            // are per table, which is not tracked here, so only relations are compared.
            let relation = matches!(what, "table" | "index" | "view");
            match seen.get(kept).filter(|_| relation) {
                Some((other, at)) if other != name => {
                    finding = finding.with_note(format!(
                        "`{other}` at line {} truncates to the same name: the two collide",
                        lines.line_of(*at)
                    ));
                }
                Some(_) => {}
                None if relation => {
                    seen.insert(kept.to_string(), (name.to_string(), stmt.span.start));
                }
                None => {}
            }
            out.push(finding);
        }
    }
}

/// The names `kind` gives to new objects, with what they name.
fn given_names(kind: &StmtKind) -> Vec<(&'static str, &str)> {
    let mut names = Vec::new();
    match kind {
        StmtKind::CreateTable {
            table,
            columns,
            constraints,
            ..
        } => {
            names.push(("table", table.name.as_str()));
            for column in columns {
                names.push(("column", column.name.as_str()));
                names.extend(
                    column
                        .constraints
                        .iter()
                        .filter_map(|c| c.name.as_deref())
                        .map(|n| ("constraint", n)),
                );
            }
            names.extend(
                constraints
                    .iter()
                    .filter_map(|c| c.name.as_deref())
                    .map(|n| ("constraint", n)),
            );
        }
        StmtKind::AlterTable { actions, .. } => {
            for action in actions {
                match action {
                    AlterAction::AddColumn { column } => {
                        names.push(("column", column.name.as_str()));
                        names.extend(
                            column
                                .constraints
                                .iter()
                                .filter_map(|c| c.name.as_deref())
                                .map(|n| ("constraint", n)),
                        );
                    }
                    AlterAction::AddConstraint(c) => {
                        names.extend(c.name.as_deref().map(|n| ("constraint", n)))
                    }
                    AlterAction::RenameTable { new_name } => {
                        names.push(("table", new_name.name.as_str()))
                    }
                    AlterAction::RenameColumn { to, .. } => names.push(("column", to.as_str())),
                    _ => {}
                }
            }
        }
        StmtKind::CreateIndex {
            name: Some(name), ..
        } => names.push(("index", name.name.as_str())),
        StmtKind::CreateView { name, .. } => names.push(("view", name.name.as_str())),
        _ => {}
    }
    names
}

/// The first 63 bytes of `name`, cut at a character boundary as PostgreSQL cuts it.
fn truncated(name: &str) -> &str {
    let mut end = MAX_BYTES.min(name.len());
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

#[cfg(test)]
mod tests {
    use crate::lint::RuleId::IdentifierTooLong as RULE;
    use crate::lint::rules::test_support::{lint_errors, lint_ok};
    use crate::sql::Dialect::{Postgres, Sqlite};

    const LONG_TABLE: &str = "customer_subscription_billing_events_partitioned_by_month_archive";

    #[test]
    fn err_long_index_names_collide() {
        let sql = "CREATE INDEX CONCURRENTLY customer_subscription_billing_events_created_at_and_status_id_idx ON events (created_at, status);\nCREATE INDEX CONCURRENTLY customer_subscription_billing_events_created_at_and_status_id_idx2 ON events (created_at);\n";
        insta::assert_yaml_snapshot!(lint_errors(sql, Postgres, RULE));
    }

    #[test]
    fn err_create_table_names() {
        let sql = format!(
            "CREATE TABLE {LONG_TABLE} (id bigint PRIMARY KEY, the_identifier_of_the_customer_who_owns_this_billing_event_record bigint);\n"
        );
        insta::assert_yaml_snapshot!(lint_errors(&sql, Postgres, RULE));
    }

    #[test]
    fn err_add_column_and_constraint() {
        let sql = "ALTER TABLE posts ADD COLUMN the_number_of_distinct_readers_who_finished_reading_this_post_today bigint;\nALTER TABLE posts ADD CONSTRAINT posts_author_id_references_users_id_and_must_be_valid_foreign_key FOREIGN KEY (author_id) REFERENCES users (id) NOT VALID;\n";
        assert_eq!(lint_errors(sql, Postgres, RULE).len(), 2);
    }

    #[test]
    fn err_multibyte_counts_bytes() {
        // 32 two-byte characters: 64 bytes, 32 characters.
        let name = "é".repeat(32);
        let sql = format!("CREATE TABLE \"{name}\" (id int);\n");
        let found = lint_errors(&sql, Postgres, RULE);
        assert!(found[0].contains("is 64 bytes"), "{found:?}");
        assert!(
            found[0].contains(&format!("`{}`", "é".repeat(31))),
            "{found:?}"
        );
    }

    #[test]
    fn ok_63_bytes() {
        let name = "a".repeat(63);
        lint_ok(
            &format!("CREATE TABLE {name} ({name} int);\nCREATE INDEX {name} ON t (x);\n"),
            Postgres,
            RULE,
        );
    }

    #[test]
    fn ok_sqlite_has_no_limit() {
        lint_ok(
            &format!("CREATE TABLE {LONG_TABLE} (id INTEGER PRIMARY KEY);\n"),
            Sqlite,
            RULE,
        );
    }
}
