//! `backfill-volatile-default` (PostgreSQL): ADD COLUMN on an existing table with a volatile
//! default.
//!
//! Since PostgreSQL 11 a constant (or stable: `now()`) default is stored in the catalog and
//! ADD COLUMN is instant. A volatile default must be evaluated once per row, so PostgreSQL
//! rewrites the whole table under an ACCESS EXCLUSIVE lock; `serial` types are an implicit
//! `nextval` default. PostgreSQL decides on the default after planning it, so:
//! - a built-in function is volatile when pg_proc says so (PostgreSQL 15's `provolatile`, plus
//!   the uuid generators of uuid-ossp, pgcrypto and PostgreSQL 16-18); `txid_current()` and
//!   `statement_timestamp()` are stable, not volatile;
//! - a function created in this file or an earlier migration is volatile unless declared
//!   IMMUTABLE or STABLE, except that a call of a `LANGUAGE sql` function PostgreSQL inlines (one
//!   `SELECT expr` or `RETURN expr`, no SECURITY DEFINER, no SET) is as volatile as its
//!   expression; PL/pgSQL is never inlined. Checked against a PostgreSQL 15 server (relfilenode
//!   changed or not);
//! - a function nothing here defined (an extension's) is not reported: its volatility is not
//!   known, and crying wolf on it would teach people to ignore the rule.

use std::collections::HashMap;

use crate::lint::{FileCx, Finding, RuleId};
use crate::sql::{AlterAction, Dialect, Expr, StmtKind, Volatility};

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

/// How a function a default calls was defined, where this file or an earlier migration did.
#[derive(Clone, Copy)]
struct Def<'a> {
    volatility: Volatility,
    language: &'a str,
    inline: Option<&'a Expr>,
}

/// How deep inlined functions are followed (a function inlining into a call of another).
const INLINE_DEPTH: usize = 16;

/// Why a call of `name` is volatile, if it is: `None` for a call PostgreSQL plans as stable or
/// immutable (or that nothing here knows).
fn volatile_call(
    cx: &FileCx<'_>,
    defined: &HashMap<&str, Def<'_>>,
    name: &str,
    depth: usize,
) -> Option<String> {
    let def = defined.get(name).copied().or_else(|| {
        cx.schema.function(name).map(|f| Def {
            volatility: f.volatility,
            language: &f.language,
            inline: f.inline.as_ref(),
        })
    });
    let Some(def) = def else {
        return VOLATILE.contains(&name).then(String::new);
    };
    if def.volatility != Volatility::Volatile {
        return None;
    }
    match def.inline {
        Some(expr) if depth < INLINE_DEPTH => expr
            .calls
            .iter()
            .find_map(|call| volatile_call(cx, defined, call, depth + 1).map(|_| call))
            .map(|call| {
                format!(
                    "`{name}` is inlined into its expression, which calls the volatile `{call}()`"
                )
            }),
        Some(_) => Some(String::new()),
        None if def.language == "plpgsql" => Some(format!(
            "`{name}` is declared without IMMUTABLE or STABLE, so it is volatile, and PostgreSQL never inlines a PL/pgSQL function"
        )),
        None => Some(format!(
            "`{name}` is declared without IMMUTABLE or STABLE, so it is volatile, and its body is not one PostgreSQL inlines"
        )),
    }
}

pub(crate) fn check(cx: &FileCx<'_>, out: &mut Vec<Finding>) {
    if cx.dialect != Dialect::Postgres {
        return;
    }
    // Functions created so far in this file: the latest definition counts.
    let mut defined: HashMap<&str, Def<'_>> = HashMap::new();
    for (index, stmt, _) in cx.statements() {
        if let StmtKind::CreateFunction {
            name,
            volatility,
            language,
            inline,
            procedure: false,
            ..
        } = &stmt.kind
        {
            defined.insert(
                &name.name,
                Def {
                    volatility: *volatility,
                    language,
                    inline: inline.as_ref(),
                },
            );
        }
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
            let (default, note) = if SERIAL.contains(&type_name) && !column.data_type.array {
                (
                    format!("the implicit `nextval` default of `{type_name}`"),
                    String::new(),
                )
            } else {
                match column.default.as_ref().and_then(|d| {
                    d.calls
                        .iter()
                        .find_map(|c| volatile_call(cx, &defined, c, 0).map(|why| (c, why)))
                }) {
                    Some((call, why)) => (format!("the volatile default `{call}()`"), why),
                    None => continue,
                }
            };
            let mut finding = Finding::at(
                RuleId::BackfillVolatileDefault,
                stmt,
                format!(
                    "adding `{}` to `{table}`, an existing table, with {default} rewrites every row under an ACCESS EXCLUSIVE lock: reads and writes wait until it finishes",
                    column.name
                ),
                "add the column without a default (or with a constant one), set the default in a separate statement afterwards (it then applies to new rows only), and fill existing rows with a batched data migration in `data-migrations/`",
            );
            if !note.is_empty() {
                finding = finding.with_note(note);
            }
            out.push(finding);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::lint::RuleId::BackfillVolatileDefault as RULE;
    use crate::lint::rules::test_support::{lint_errors, lint_last, lint_ok};
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

    #[test]
    fn err_user_function_volatile_unless_declared() {
        // A PL/pgSQL function is never inlined: volatile unless it says otherwise.
        let sql = "CREATE FUNCTION next_code() RETURNS text LANGUAGE plpgsql AS $$ BEGIN RETURN 'x'; END $$;\nALTER TABLE users ADD COLUMN code text DEFAULT next_code();\n";
        insta::assert_yaml_snapshot!(lint_errors(sql, Postgres, RULE));
        // An inlined SQL function is as volatile as its expression.
        let sql = "CREATE FUNCTION noise() RETURNS float8 LANGUAGE sql AS 'SELECT random()';\nALTER TABLE users ADD COLUMN r float8 DEFAULT noise();\n";
        assert_eq!(lint_errors(sql, Postgres, RULE).len(), 1);
        // A SQL function PostgreSQL does not inline (it reads a table) is volatile as declared.
        let sql = "CREATE FUNCTION first_id() RETURNS bigint LANGUAGE sql AS 'SELECT min(id) FROM users';\nALTER TABLE posts ADD COLUMN owner bigint DEFAULT first_id();\n";
        assert_eq!(lint_errors(sql, Postgres, RULE).len(), 1);
    }

    #[test]
    fn ok_user_function_declared_or_inlined_to_a_constant() {
        let sql = "CREATE FUNCTION one() RETURNS int LANGUAGE sql AS 'SELECT 1';\nCREATE FUNCTION two() RETURNS int LANGUAGE sql RETURN 2;\nCREATE FUNCTION three() RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$ BEGIN RETURN 3; END $$;\nCREATE FUNCTION stamp() RETURNS timestamptz LANGUAGE sql AS 'SELECT now()';\nALTER TABLE users ADD COLUMN a int DEFAULT one();\nALTER TABLE users ADD COLUMN b int DEFAULT two();\nALTER TABLE users ADD COLUMN c int DEFAULT three();\nALTER TABLE users ADD COLUMN d timestamptz DEFAULT stamp();\n";
        lint_ok(sql, Postgres, RULE);
        // A function nothing here defined keeps the benefit of the doubt.
        lint_ok(
            "ALTER TABLE users ADD COLUMN e text DEFAULT ext_code();\n",
            Postgres,
            RULE,
        );
    }

    #[test]
    fn err_user_function_from_an_earlier_migration() {
        let earlier = "CREATE FUNCTION next_code() RETURNS text LANGUAGE plpgsql AS $$ BEGIN RETURN 'x'; END $$;\n";
        let later = "ALTER TABLE users ADD COLUMN code text DEFAULT next_code();\n";
        assert_eq!(lint_last(&[earlier, later], Postgres, RULE).len(), 1);
        let stable = "CREATE FUNCTION next_code() RETURNS text LANGUAGE plpgsql STABLE AS $$ BEGIN RETURN 'x'; END $$;\n";
        assert_eq!(
            lint_last(&[stable, later], Postgres, RULE),
            Vec::<String>::new()
        );
    }
}
