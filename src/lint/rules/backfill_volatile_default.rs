//! `backfill-volatile-default` (PostgreSQL): ADD COLUMN on an existing table with a volatile
//! default.
//!
//! Since PostgreSQL 11 a constant (or stable: `now()`) default is stored in the catalog and
//! ADD COLUMN is instant. A volatile default must be evaluated once per row, so PostgreSQL
//! rewrites the whole table under an ACCESS EXCLUSIVE lock; `serial` types are an implicit
//! `nextval` default. Only functions known to be volatile are reported (pg_proc's `provolatile`
//! on PostgreSQL 15, plus the uuid generators of uuid-ossp, pgcrypto and PostgreSQL 16-18): a
//! user-defined function's volatility is not known here, and crying wolf on it would teach people
//! to ignore the rule. `txid_current()` and `statement_timestamp()` are stable, not volatile.

use crate::lint::{FileCx, Finding, RuleId};
use crate::sql::{AlterAction, Dialect, StmtKind};

/// Volatile functions that make sense as a column default.
const VOLATILE: &[&str] = &[
    "gen_random_uuid",
    "uuid_generate_v1",
    "uuid_generate_v1mc",
    "uuid_generate_v4",
    "uuidv4",
    "uuidv7",
    "gen_random_bytes",
    "random",
    "random_normal",
    "setseed",
    "clock_timestamp",
    "timeofday",
    "nextval",
    "currval",
    "lastval",
];

/// Types that are a column plus an implicit `nextval` default.
const SERIAL: &[&str] = &[
    "serial",
    "serial4",
    "bigserial",
    "serial8",
    "smallserial",
    "serial2",
];

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
            let AlterAction::AddColumn { column } = action else {
                continue;
            };
            let type_name = column.data_type.name.trim_start_matches("pg_catalog.");
            let default = if SERIAL.contains(&type_name) && !column.data_type.array {
                format!("the implicit `nextval` default of `{type_name}`")
            } else {
                match column
                    .default
                    .as_ref()
                    .and_then(|d| d.calls.iter().find(|c| VOLATILE.contains(&c.as_str())))
                {
                    Some(call) => format!("the volatile default `{call}()`"),
                    None => continue,
                }
            };
            out.push(Finding::at(
                RuleId::BackfillVolatileDefault,
                stmt,
                format!("adding `{}` to `{table}`, an existing table, with {default} rewrites every row under an ACCESS EXCLUSIVE lock: reads and writes wait until it finishes", column.name),
                "add the column without a default (or with a constant one), set the default in a separate statement afterwards (it then applies to new rows only), and fill existing rows with a batched data migration in `data-migrations/`",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::lint::RuleId::BackfillVolatileDefault as RULE;
    use crate::lint::rules::test_support::{lint_errors, lint_ok};
    use crate::sql::Dialect::{Postgres, Sqlite};

    #[test]
    fn err_uuid_default() {
        let sql =
            "ALTER TABLE users ADD COLUMN public_id uuid NOT NULL DEFAULT gen_random_uuid();\n";
        insta::assert_yaml_snapshot!(lint_errors(sql, Postgres, RULE));
    }

    #[test]
    fn err_clock_timestamp_inside_an_expression() {
        let sql = "ALTER TABLE users ADD COLUMN seen_at timestamptz DEFAULT date_trunc('day', clock_timestamp());\n";
        insta::assert_yaml_snapshot!(lint_errors(sql, Postgres, RULE));
    }

    #[test]
    fn err_bigserial_column() {
        let sql = "ALTER TABLE follows ADD COLUMN id bigserial;\n";
        insta::assert_yaml_snapshot!(lint_errors(sql, Postgres, RULE));
    }

    #[test]
    fn ok_stable_or_constant_defaults() {
        let sql = "ALTER TABLE users ADD COLUMN created_on timestamptz NOT NULL DEFAULT now();\nALTER TABLE users ADD COLUMN seen_at timestamptz DEFAULT CURRENT_TIMESTAMP;\nALTER TABLE users ADD COLUMN n bigint NOT NULL DEFAULT 0;\nALTER TABLE users ADD COLUMN state text DEFAULT 'new'::text;\nALTER TABLE users ADD COLUMN xid bigint DEFAULT txid_current();\n";
        lint_ok(sql, Postgres, RULE);
    }

    #[test]
    fn ok_volatile_default_set_afterwards() {
        lint_ok(
            "ALTER TABLE users ADD COLUMN public_id uuid;\nALTER TABLE users ALTER COLUMN public_id SET DEFAULT gen_random_uuid();\n",
            Postgres,
            RULE,
        );
    }

    #[test]
    fn ok_table_created_in_same_file() {
        lint_ok(
            "CREATE TABLE t (id int);\nALTER TABLE t ADD COLUMN public_id uuid DEFAULT gen_random_uuid();\nALTER TABLE t ADD COLUMN n bigserial;\n",
            Postgres,
            RULE,
        );
    }

    #[test]
    fn ok_sqlite_is_not_postgres() {
        // SQLite refuses non-constant defaults in ADD COLUMN outright; nothing to rewrite.
        lint_ok(
            "ALTER TABLE users ADD COLUMN n integer DEFAULT (random());\n",
            Sqlite,
            RULE,
        );
    }
}
