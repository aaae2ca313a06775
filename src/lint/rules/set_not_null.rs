//! `set-not-null` (PostgreSQL): ALTER COLUMN ... SET NOT NULL on an existing table.
//!
//! PostgreSQL scans every row to prove there is no NULL, holding ACCESS EXCLUSIVE the whole time,
//! unless a validated `CHECK (col IS NOT NULL)` already proves it (PostgreSQL 12+). The safe path
//! is that check, added NOT VALID, validated in a later migration, then SET NOT NULL. The last
//! step of that path, a file that validates a constraint of the table before setting NOT NULL, is
//! not reported: the front end does not say what the validated check says, and reporting the
//! path the help recommends would teach people to ignore the rule.

use std::collections::HashSet;

use crate::lint::{FileCx, Finding, RuleId};
use crate::sql::{AlterAction, Dialect, StmtKind};

pub(crate) fn check(cx: &FileCx<'_>, out: &mut Vec<Finding>) {
    if cx.dialect != Dialect::Postgres {
        return;
    }
    // Tables (unqualified) with a VALIDATE CONSTRAINT so far in this file.
    let mut validated: HashSet<&str> = HashSet::new();
    for (index, stmt, _) in cx.statements() {
        let StmtKind::AlterTable { table, actions } = &stmt.kind else {
            continue;
        };
        let existing = cx.is_existing_large_table(index, table);
        for action in actions {
            let column = match action {
                AlterAction::ValidateConstraint { .. } => {
                    validated.insert(&table.name);
                    continue;
                }
                AlterAction::SetNotNull { column } => column,
                _ => continue,
            };
            if !existing || validated.contains(table.name.as_str()) {
                continue;
            }
            out.push(Finding::at(
                RuleId::SetNotNull,
                stmt,
                format!("SET NOT NULL on `{table}.{column}` scans every row of `{table}`, an existing table, under an ACCESS EXCLUSIVE lock: reads and writes wait until the scan finishes"),
                format!("add `CHECK ({column} IS NOT NULL) NOT VALID`, VALIDATE it in a later migration, then SET NOT NULL (PostgreSQL 12+ uses the validated check and skips the scan) and drop the check"),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::lint::RuleId::SetNotNull as RULE;
    use crate::lint::rules::test_support::{lint_errors, lint_ok};
    use crate::sql::Dialect::Postgres;

    #[test]
    fn err_set_not_null() {
        let sql = "ALTER TABLE users ALTER COLUMN display_name SET NOT NULL;\n";
        insta::assert_yaml_snapshot!(lint_errors(sql, Postgres, RULE));
    }

    #[test]
    fn err_set_not_null_after_adding_unvalidated_check() {
        let sql = "ALTER TABLE users ADD CONSTRAINT dn_not_null CHECK (display_name IS NOT NULL) NOT VALID;\nALTER TABLE users ALTER COLUMN display_name SET NOT NULL;\n";
        insta::assert_yaml_snapshot!(lint_errors(sql, Postgres, RULE));
    }

    #[test]
    fn ok_after_validated_check() {
        lint_ok(
            "ALTER TABLE users VALIDATE CONSTRAINT dn_not_null;\nALTER TABLE users ALTER COLUMN display_name SET NOT NULL;\nALTER TABLE users DROP CONSTRAINT dn_not_null;\n",
            Postgres,
            RULE,
        );
    }

    #[test]
    fn ok_table_created_in_same_file() {
        lint_ok(
            "CREATE TABLE t (id int);\nALTER TABLE t ALTER COLUMN id SET NOT NULL;\n",
            Postgres,
            RULE,
        );
    }

    #[test]
    fn ok_drop_not_null() {
        lint_ok(
            "ALTER TABLE users ALTER COLUMN display_name DROP NOT NULL;\n",
            Postgres,
            RULE,
        );
    }
}
