//! `constraint-without-not-valid` (PostgreSQL): a FOREIGN KEY or CHECK constraint added to an
//! existing table and validated on the spot.
//!
//! Without NOT VALID, ADD CONSTRAINT checks every existing row while it holds its lock: ACCESS
//! EXCLUSIVE for a CHECK (no reads, no writes), SHARE ROW EXCLUSIVE on both tables for a foreign
//! key (no writes to either). Added NOT VALID, the constraint applies to new rows at once and
//! VALIDATE CONSTRAINT, in a later migration, scans under SHARE UPDATE EXCLUSIVE only, which
//! blocks neither. The same scan happens for a constraint written inline in ADD COLUMN
//! (`ADD COLUMN c bigint REFERENCES t`), which has no NOT VALID form at all.
//!
//! NOT VALID followed by VALIDATE CONSTRAINT in the same transaction (the same file, when the
//! runner wraps it in one; the same `BEGIN ... COMMIT` otherwise) gains nothing: the lock ADD
//! CONSTRAINT took is held until the transaction commits, so the scan runs under it all the same.
//! That VALIDATE is reported.

use std::collections::HashMap;

use crate::lint::rules::LineIndex;
use crate::lint::{FileCx, Finding, RuleId};
use crate::sql::{AlterAction, Constraint, ConstraintKind, Dialect, Name, StmtKind};

/// A constraint added NOT VALID to an existing table in this file: where, what, and in which
/// transaction.
struct Added<'a> {
    at: usize,
    constraint: &'a Constraint,
    transaction: usize,
}

pub(crate) fn check(cx: &FileCx<'_>, out: &mut Vec<Finding>) {
    if cx.dialect != Dialect::Postgres {
        return;
    }
    let lines = LineIndex::new(cx.text);
    // (qualified table, constraint name) -> the NOT VALID ADD CONSTRAINT, while its transaction
    // may still be open.
    let mut added: HashMap<(Name, &str), Added<'_>> = HashMap::new();
    for (index, stmt, facts) in cx.statements() {
        let StmtKind::AlterTable { table, actions } = &stmt.kind else {
            continue;
        };
        if !cx.is_existing_large_table(index, table) {
            continue;
        }
        let qualified = cx.qualify(index, table);
        for action in actions {
            let (constraint, inline_column): (&Constraint, Option<&str>) = match action {
                AlterAction::ValidateConstraint { name } => {
                    let Some(add) = added.get(&(qualified.clone(), name.as_str())) else {
                        continue;
                    };
                    if facts.transaction != Some(add.transaction) {
                        continue;
                    }
                    out.push(validated_in_same_transaction(
                        cx, &lines, stmt, table, name, add,
                    ));
                    continue;
                }
                AlterAction::AddConstraint(c) if c.not_valid => {
                    if let (Some(name), Some(transaction)) = (&c.name, facts.transaction) {
                        added.insert(
                            (qualified.clone(), name.as_str()),
                            Added {
                                at: index,
                                constraint: c,
                                transaction,
                            },
                        );
                    }
                    continue;
                }
                AlterAction::AddConstraint(c) => (c, None),
                AlterAction::AddColumn { column } => {
                    match column.constraints.iter().find(|c| {
                        matches!(
                            c.kind,
                            ConstraintKind::ForeignKey { .. } | ConstraintKind::Check
                        )
                    }) {
                        Some(c) => (c, Some(column.name.as_str())),
                        None => continue,
                    }
                }
                _ => continue,
            };
            if constraint.not_valid {
                continue;
            }
            let named = constraint
                .name
                .as_ref()
                .map(|n| format!(" `{n}`"))
                .unwrap_or_default();
            let (message, help) = match &constraint.kind {
                ConstraintKind::ForeignKey { references } => (
                    format!(
                        "adding the foreign key{named} to `{table}`, an existing table, checks every row while holding a SHARE ROW EXCLUSIVE lock on `{table}` and `{references}`: writes to both wait until the scan finishes"
                    ),
                    "add it with NOT VALID (new rows are checked at once), then VALIDATE CONSTRAINT in a later migration, which only takes a SHARE UPDATE EXCLUSIVE lock",
                ),
                ConstraintKind::Check => (
                    format!(
                        "adding the CHECK constraint{named} to `{table}`, an existing table, scans every row under an ACCESS EXCLUSIVE lock: reads and writes wait until the scan finishes"
                    ),
                    "add it with NOT VALID (new rows are checked at once), then VALIDATE CONSTRAINT in a later migration, which only takes a SHARE UPDATE EXCLUSIVE lock",
                ),
                _ => continue,
            };
            let help = match inline_column {
                Some(column) => format!(
                    "add `{column}` without the inline constraint, then ADD CONSTRAINT ... NOT VALID in the same migration and VALIDATE CONSTRAINT in a later one, which only takes a SHARE UPDATE EXCLUSIVE lock"
                ),
                None => help.to_string(),
            };
            out.push(Finding::at(
                RuleId::ConstraintWithoutNotValid,
                stmt,
                message,
                help,
            ));
        }
    }
}

/// VALIDATE CONSTRAINT of a constraint this transaction added NOT VALID.
fn validated_in_same_transaction(
    cx: &FileCx<'_>,
    lines: &LineIndex<'_>,
    stmt: &crate::sql::Statement,
    table: &Name,
    name: &str,
    add: &Added<'_>,
) -> Finding {
    let line = lines.line_of(cx.parsed.statements[add.at].span.start);
    let lock = match &add.constraint.kind {
        ConstraintKind::ForeignKey { references } => format!(
            "the SHARE ROW EXCLUSIVE lock it took on `{table}` and `{references}` is held until the transaction commits, so the scan runs under it: writes to both wait until it finishes"
        ),
        _ => format!(
            "the ACCESS EXCLUSIVE lock it took on `{table}` is held until the transaction commits, so the scan runs under it: reads and writes wait until it finishes"
        ),
    };
    let which = if cx.runner_transaction() {
        "the one the runner wraps this migration in"
    } else {
        "one transaction block of the file"
    };
    Finding::at(
        RuleId::ConstraintWithoutNotValid,
        stmt,
        format!(
            "VALIDATE CONSTRAINT `{name}` runs in the same transaction as the ADD CONSTRAINT ... NOT VALID at line {line} ({which}): {lock}"
        ),
        "VALIDATE CONSTRAINT in a later migration (or after a COMMIT): on its own it only takes a SHARE UPDATE EXCLUSIVE lock, which blocks neither reads nor writes",
    )
}

#[cfg(test)]
mod tests {
    use crate::lint::RuleId::ConstraintWithoutNotValid as RULE;
    use crate::lint::rules::test_support::{lint_errors, lint_ok};
    use crate::sql::Dialect::Postgres;

    #[test]
    fn err_foreign_key() {
        let sql = "ALTER TABLE posts ADD CONSTRAINT posts_author_fk FOREIGN KEY (author_id) REFERENCES users (id);\n";
        insta::assert_yaml_snapshot!(lint_errors(sql, Postgres, RULE));
    }

    #[test]
    fn err_check() {
        let sql = "ALTER TABLE users ADD CHECK (followers_count >= 0);\n";
        insta::assert_yaml_snapshot!(lint_errors(sql, Postgres, RULE));
    }

    #[test]
    fn err_inline_foreign_key_in_add_column() {
        let sql = "ALTER TABLE posts ADD COLUMN editor_id bigint REFERENCES users (id);\n";
        insta::assert_yaml_snapshot!(lint_errors(sql, Postgres, RULE));
    }

    #[test]
    fn ok_not_valid_then_validate_outside_a_transaction() {
        let sql = "ALTER TABLE posts ADD CONSTRAINT posts_author_fk FOREIGN KEY (author_id) REFERENCES users (id) NOT VALID;\nALTER TABLE users ADD CONSTRAINT users_followers_nonneg CHECK (followers_count >= 0) NOT VALID;\nALTER TABLE posts VALIDATE CONSTRAINT posts_author_fk;\n";
        lint_ok(
            &format!("-- migrate: no-transaction\n{sql}"),
            Postgres,
            RULE,
        );
        // Each in its own transaction block.
        lint_ok(
            "-- migrate: no-transaction\nBEGIN;\nALTER TABLE users ADD CONSTRAINT c CHECK (n >= 0) NOT VALID;\nCOMMIT;\nBEGIN;\nALTER TABLE users VALIDATE CONSTRAINT c;\nCOMMIT;\n",
            Postgres,
            RULE,
        );
        // Validated in a later migration: the ADD is not in this file.
        lint_ok(
            "ALTER TABLE posts VALIDATE CONSTRAINT posts_author_fk;\n",
            Postgres,
            RULE,
        );
    }

    #[test]
    fn err_not_valid_then_validate_in_the_same_transaction() {
        let sql = "ALTER TABLE posts ADD CONSTRAINT posts_author_fk FOREIGN KEY (author_id) REFERENCES users (id) NOT VALID;\nALTER TABLE users ADD CONSTRAINT users_followers_nonneg CHECK (followers_count >= 0) NOT VALID;\nALTER TABLE posts VALIDATE CONSTRAINT posts_author_fk;\nALTER TABLE users VALIDATE CONSTRAINT users_followers_nonneg;\n";
        insta::assert_yaml_snapshot!(lint_errors(sql, Postgres, RULE));
        // One BEGIN ... COMMIT of the file's own.
        let found = lint_errors(
            "-- migrate: no-transaction\nBEGIN;\nALTER TABLE users ADD CONSTRAINT c CHECK (n >= 0) NOT VALID;\nALTER TABLE users VALIDATE CONSTRAINT c;\nCOMMIT;\n",
            Postgres,
            RULE,
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].contains("one transaction block of the file"),
            "{found:?}"
        );
    }

    #[test]
    fn ok_table_created_in_same_file() {
        lint_ok(
            "CREATE TABLE likes (user_id bigint, post_id bigint);\nALTER TABLE likes ADD CONSTRAINT likes_user_fk FOREIGN KEY (user_id) REFERENCES users (id);\nALTER TABLE likes ADD CHECK (user_id > 0);\n",
            Postgres,
            RULE,
        );
    }

    #[test]
    fn ok_unique_is_another_rule() {
        lint_ok(
            "ALTER TABLE users ADD CONSTRAINT users_handle_key UNIQUE (handle);\n",
            Postgres,
            RULE,
        );
    }
}
