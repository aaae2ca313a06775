//! `set-not-null` (PostgreSQL): ALTER COLUMN ... SET NOT NULL on an existing table.
//!
//! PostgreSQL scans every row to prove there is no NULL, holding ACCESS EXCLUSIVE the whole time,
//! unless a validated `CHECK (col IS NOT NULL)` already proves it (PostgreSQL 12+), or the column
//! is NOT NULL already (then there is nothing to do). The safe path is that check, added NOT
//! VALID, validated in a later migration, then SET NOT NULL. Not reported, then:
//! - a column an earlier migration declared NOT NULL (or set so);
//! - a column a validated CHECK proves not null: one an earlier migration added without NOT VALID
//!   or validated, or one this file validates (VALIDATE CONSTRAINT) or adds validated before the
//!   SET NOT NULL;
//! - a column of a table this file validated a constraint of, when what that constraint says is
//!   not known (no migration read here added it): reporting the path the help recommends would
//!   teach people to ignore the rule.

use std::collections::HashMap;

use crate::lint::{FileCx, Finding, RuleId};
use crate::sql::{AlterAction, ConstraintKind, Dialect, Name, StmtKind};

/// What this file has shown about a table's columns so far.
#[derive(Default)]
struct Proven<'a> {
    /// Columns a constraint validated in this file proves not null.
    columns: Vec<&'a str>,
    /// A constraint whose content is unknown was validated: any column may be proven.
    unknown: bool,
    /// Constraints this file added NOT VALID: name -> the columns they prove not null.
    pending: HashMap<&'a str, &'a [String]>,
    /// Columns this file made nullable (DROP NOT NULL): what earlier migrations said of them no
    /// longer holds.
    nullable: Vec<&'a str>,
}

pub(crate) fn check(cx: &FileCx<'_>, out: &mut Vec<Finding>) {
    if cx.dialect != Dialect::Postgres {
        return;
    }
    let mut proven: HashMap<Name, Proven<'_>> = HashMap::new();
    for (index, stmt, _) in cx.statements() {
        let StmtKind::AlterTable { table, actions } = &stmt.kind else {
            continue;
        };
        let existing = cx.is_existing_large_table(index, table);
        let qualified = cx.qualify(index, table);
        for action in actions {
            let column = match action {
                AlterAction::AddConstraint(c) if matches!(c.kind, ConstraintKind::Check) => {
                    let table = proven.entry(qualified.clone()).or_default();
                    if !c.not_valid {
                        table
                            .columns
                            .extend(c.not_null_columns.iter().map(String::as_str));
                    } else if let Some(name) = &c.name {
                        table.pending.insert(name, &c.not_null_columns);
                    }
                    continue;
                }
                AlterAction::ValidateConstraint { name } => {
                    let earlier = cx.schema.constraint(&qualified, name);
                    let table = proven.entry(qualified.clone()).or_default();
                    match (table.pending.get(name.as_str()), earlier) {
                        (Some(columns), _) => {
                            table.columns.extend(columns.iter().map(String::as_str))
                        }
                        (None, Some(earlier)) => table
                            .columns
                            .extend(earlier.not_null_columns.iter().map(String::as_str)),
                        (None, None) => table.unknown = true,
                    }
                    continue;
                }
                AlterAction::DropNotNull { column } => {
                    proven
                        .entry(qualified.clone())
                        .or_default()
                        .nullable
                        .push(column);
                    continue;
                }
                AlterAction::SetNotNull { column } => column,
                _ => continue,
            };
            let made_nullable = proven
                .get(&qualified)
                .is_some_and(|p| p.nullable.contains(&column.as_str()));
            if !existing
                || (!made_nullable && cx.schema.is_not_null(&qualified, column))
                || cx.schema.proves_not_null(&qualified, column)
                || proven
                    .get(&qualified)
                    .is_some_and(|p| p.unknown || p.columns.contains(&column.as_str()))
            {
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
    use crate::lint::rules::test_support::{lint_errors, lint_last, lint_ok};
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

    #[test]
    fn ok_check_validated_in_an_earlier_migration() {
        let add = "ALTER TABLE users ADD CONSTRAINT dn_not_null CHECK (display_name IS NOT NULL) NOT VALID;\n";
        let validate = "ALTER TABLE users VALIDATE CONSTRAINT dn_not_null;\n";
        let set = "ALTER TABLE users ALTER COLUMN display_name SET NOT NULL;\n";
        assert_eq!(
            lint_last(&[add, validate, set], Postgres, RULE),
            Vec::<String>::new()
        );
        // Added validated at once, with another condition beside it.
        let added = "ALTER TABLE users ADD CONSTRAINT dn CHECK (display_name IS NOT NULL AND length(display_name) > 0);\n";
        assert_eq!(
            lint_last(&[added, set], Postgres, RULE),
            Vec::<String>::new()
        );
        // Declared NOT NULL already: nothing to scan.
        let created = "CREATE TABLE users (id bigint, display_name text NOT NULL);\n";
        assert_eq!(
            lint_last(&[created, set], Postgres, RULE),
            Vec::<String>::new()
        );
        // Unless this file made it nullable first.
        let dropped = format!("ALTER TABLE users ALTER COLUMN display_name DROP NOT NULL;\n{set}");
        assert_eq!(lint_last(&[created, &dropped], Postgres, RULE).len(), 1);
    }

    #[test]
    fn err_check_an_earlier_migration_left_unvalidated_or_about_another_column() {
        let add = "ALTER TABLE users ADD CONSTRAINT dn_not_null CHECK (display_name IS NOT NULL) NOT VALID;\n";
        let set = "ALTER TABLE users ALTER COLUMN display_name SET NOT NULL;\n";
        assert_eq!(lint_last(&[add, set], Postgres, RULE).len(), 1);
        let other =
            "ALTER TABLE users ADD CONSTRAINT bio_not_null CHECK (bio IS NOT NULL) NOT VALID;\n";
        let validate_other = "ALTER TABLE users VALIDATE CONSTRAINT bio_not_null;\nALTER TABLE users ALTER COLUMN display_name SET NOT NULL;\n";
        assert_eq!(lint_last(&[other, validate_other], Postgres, RULE).len(), 1);
        // An OR proves nothing about either column.
        let or = "ALTER TABLE users ADD CONSTRAINT either CHECK (display_name IS NOT NULL OR bio IS NOT NULL);\n";
        assert_eq!(lint_last(&[or, set], Postgres, RULE).len(), 1);
    }
}
