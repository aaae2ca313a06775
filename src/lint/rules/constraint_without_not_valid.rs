//! `constraint-without-not-valid` (PostgreSQL): a FOREIGN KEY or CHECK constraint added to an
//! existing table and validated on the spot.
//!
//! Without NOT VALID, ADD CONSTRAINT checks every existing row while it holds its lock: ACCESS
//! EXCLUSIVE for a CHECK (no reads, no writes), SHARE ROW EXCLUSIVE on both tables for a foreign
//! key (no writes to either). Added NOT VALID, the constraint applies to new rows at once and
//! VALIDATE CONSTRAINT, in a later migration, scans under SHARE UPDATE EXCLUSIVE only, which
//! blocks neither. The same scan happens for a constraint written inline in ADD COLUMN
//! (`ADD COLUMN c bigint REFERENCES t`), which has no NOT VALID form at all.

use crate::lint::{FileCx, Finding, RuleId};
use crate::sql::{AlterAction, Constraint, ConstraintKind, Dialect, StmtKind};

pub(crate) fn check(cx: &FileCx<'_>, out: &mut Vec<Finding>) {
    if cx.dialect != Dialect::Postgres {
        return;
    }
    for (index, stmt, _) in cx.statements() {
        let StmtKind::AlterTable { table, actions } = &stmt.kind else {
            continue;
        };
        if !cx.is_existing_large_table(index, table) {
            continue;
        }
        for action in actions {
            let (constraint, inline_column): (&Constraint, Option<&str>) = match action {
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
    fn ok_not_valid_then_validate() {
        lint_ok(
            "ALTER TABLE posts ADD CONSTRAINT posts_author_fk FOREIGN KEY (author_id) REFERENCES users (id) NOT VALID;\nALTER TABLE users ADD CONSTRAINT users_followers_nonneg CHECK (followers_count >= 0) NOT VALID;\nALTER TABLE posts VALIDATE CONSTRAINT posts_author_fk;\n",
            Postgres,
            RULE,
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
