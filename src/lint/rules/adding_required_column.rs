//! `adding-required-column` (PostgreSQL and SQLite): ADD COLUMN ... NOT NULL without a DEFAULT
//! on a table that existed before the migration.
//!
//! Every existing row gets the column's default, NULL when there is none, and the NOT NULL
//! constraint refuses it: PostgreSQL fails with "column ... contains null values", SQLite with
//! "Cannot add a NOT NULL column with default value NULL". On an empty table both accept it, so
//! the migration passes on a fresh CI database and fails on production's rows. An inline PRIMARY
//! KEY implies NOT NULL in PostgreSQL and fails the same way.
//!
//! The rule is in the backfill category: what the column needs is a value for every existing
//! row, which is either a constant default (stored in the catalog, instant since PostgreSQL 11)
//! or a backfill (add the column nullable, fill it with a data migration, then SET NOT NULL
//! behind `-- migrate: after-backfill`). It is not about how long a lock is held: the statement
//! fails outright.
//!
//! A generated column (STORED or IDENTITY) and a `serial` column compute a value for each row,
//! so they are not reported. Small tables count too: a five-row table has rows. A table created
//! earlier in the file is empty.

use crate::lint::{FileCx, Finding, RuleId};
use crate::sql::{AlterAction, ColumnDef, ConstraintKind, Dialect, StmtKind};

/// Types that carry an implicit `nextval` default.
const SERIAL: &[&str] = &[
    "serial",
    "serial4",
    "bigserial",
    "serial8",
    "smallserial",
    "serial2",
];

pub(crate) fn check(cx: &FileCx<'_>, out: &mut Vec<Finding>) {
    for (index, stmt, _) in cx.statements() {
        let StmtKind::AlterTable { table, actions } = &stmt.kind else {
            continue;
        };
        if cx.is_new_table(index, table) {
            continue;
        }
        for action in actions {
            let AlterAction::AddColumn { column } = action else {
                continue;
            };
            let Some(why) = required_without_value(column, cx.dialect) else {
                continue;
            };
            let name = &column.name;
            out.push(Finding::at(
                RuleId::AddingRequiredColumn,
                stmt,
                format!("ADD COLUMN `{name}` is {why} with no DEFAULT: every existing row of `{table}` gets NULL, so the statement fails on a table that has rows (it passes on an empty CI database)"),
                format!("give `{name}` a constant DEFAULT, or add it nullable, fill it with a data migration, and SET NOT NULL in a later migration gated with `-- migrate: after-backfill`"),
            ));
        }
    }
}

/// Why the column refuses NULL ("NOT NULL", "a PRIMARY KEY"), when nothing gives existing rows a
/// value.
fn required_without_value(column: &ColumnDef, dialect: Dialect) -> Option<&'static str> {
    let has_default = column
        .default
        .as_ref()
        .is_some_and(|d| !d.text.trim().eq_ignore_ascii_case("null"));
    let type_name = column.data_type.name.trim_start_matches("pg_catalog.");
    let serial =
        dialect == Dialect::Postgres && SERIAL.contains(&type_name) && !column.data_type.array;
    if has_default || column.generated.is_some() || serial {
        return None;
    }
    if column.not_null
        || column
            .constraints
            .iter()
            .any(|c| matches!(c.kind, ConstraintKind::NotNull))
    {
        return Some("NOT NULL");
    }
    // SQLite refuses ADD COLUMN ... PRIMARY KEY outright (a syntax-level error of its own).
    let primary_key = column
        .constraints
        .iter()
        .any(|c| matches!(c.kind, ConstraintKind::PrimaryKey { .. }));
    (primary_key && dialect == Dialect::Postgres).then_some("a PRIMARY KEY (NOT NULL)")
}

#[cfg(test)]
mod tests {
    use crate::lint::RuleId::AddingRequiredColumn as RULE;
    use crate::lint::rules::test_support::{lint_errors, lint_ok};
    use crate::sql::Dialect::{Postgres, Sqlite};

    #[test]
    fn err_not_null_without_default() {
        let sql = "ALTER TABLE users ADD COLUMN tenant_id bigint NOT NULL;\n";
        insta::assert_yaml_snapshot!(lint_errors(sql, Postgres, RULE));
    }

    #[test]
    fn err_default_null_is_no_default() {
        let sql = "ALTER TABLE users ADD COLUMN plan text NOT NULL DEFAULT NULL;\n";
        assert_eq!(lint_errors(sql, Postgres, RULE).len(), 1);
    }

    #[test]
    fn err_inline_primary_key() {
        let sql = "ALTER TABLE legacy_events ADD COLUMN id bigint PRIMARY KEY;\n";
        insta::assert_yaml_snapshot!(lint_errors(sql, Postgres, RULE));
    }

    #[test]
    fn err_small_table_has_rows_too() {
        let sql = "ALTER TABLE roles ADD COLUMN label text NOT NULL;\n";
        assert_eq!(lint_errors(sql, Postgres, RULE).len(), 1);
    }

    #[test]
    fn err_sqlite() {
        let sql = "ALTER TABLE users ADD COLUMN tenant_id INTEGER NOT NULL;\n";
        insta::assert_yaml_snapshot!(lint_errors(sql, Sqlite, RULE));
    }

    #[test]
    fn ok_with_default() {
        lint_ok(
            "ALTER TABLE users ADD COLUMN plan text NOT NULL DEFAULT 'free';\n",
            Postgres,
            RULE,
        );
        lint_ok(
            "ALTER TABLE users ADD COLUMN plan TEXT NOT NULL DEFAULT 'free';\n",
            Sqlite,
            RULE,
        );
    }

    #[test]
    fn ok_nullable_generated_serial() {
        let sql = "ALTER TABLE users ADD COLUMN bio text;\nALTER TABLE users ADD COLUMN n bigint GENERATED ALWAYS AS IDENTITY NOT NULL;\nALTER TABLE users ADD COLUMN seq bigserial NOT NULL;\n";
        lint_ok(sql, Postgres, RULE);
    }

    #[test]
    fn ok_table_created_in_same_file() {
        let sql = "CREATE TABLE t (id int);\nALTER TABLE t ADD COLUMN name text NOT NULL;\n";
        lint_ok(sql, Postgres, RULE);
        lint_ok(sql, Sqlite, RULE);
    }
}
