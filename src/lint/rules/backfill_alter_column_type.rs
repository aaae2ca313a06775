//! `backfill-alter-column-type` (PostgreSQL): ALTER COLUMN ... TYPE that rewrites the table.
//!
//! Unless the new type is binary-coercible from the old one, PostgreSQL rewrites every row and
//! rebuilds every index of the table under an ACCESS EXCLUSIVE lock: no reads, no writes, for as
//! long as the table is large. Which changes are free is PostgreSQL's rule, checked against a
//! PostgreSQL 15 server (relfilenode unchanged): see [`binary_coercible`]. The old type comes
//! from the migrations linted before this file, or from an earlier statement of this file. When
//! it is unknown, only a new type that is not one of the usual free targets (text, varchar,
//! unconstrained numeric, citext) is reported. SQLite has no such statement.

use crate::lint::{FileCx, Finding, RuleId};
use std::collections::HashMap;

use crate::sql::{AlterAction, Dialect, Name, StmtKind, TypeName};

pub(crate) fn check(cx: &FileCx<'_>, out: &mut Vec<Finding>) {
    if cx.dialect != Dialect::Postgres {
        return;
    }
    // Column types declared by this file so far, by (table with its schema, column), in one
    // forward pass; `None` for a column this file dropped. Earlier files are `cx.schema`'s.
    let mut in_file: HashMap<(Name, &str), Option<&TypeName>> = HashMap::new();
    for (index, stmt, _) in cx.statements() {
        let StmtKind::AlterTable { table, actions } = &stmt.kind else {
            continue;
        };
        let existing = cx.is_existing_large_table(index, table);
        let qualified = cx.qualify(index, table);
        for action in actions {
            let (column, data_type, using) = match action {
                AlterAction::AlterColumnType {
                    column,
                    data_type,
                    using,
                } => (column, data_type, using),
                AlterAction::AddColumn { column } => {
                    in_file.insert((qualified.clone(), &column.name), Some(&column.data_type));
                    continue;
                }
                AlterAction::DropColumn { column } => {
                    in_file.insert((qualified.clone(), column), None);
                    continue;
                }
                AlterAction::RenameColumn { from, to } => {
                    let ty = match in_file.get(&(qualified.clone(), from.as_str())) {
                        Some(ty) => *ty,
                        None => cx.schema.column_type(&qualified, from),
                    };
                    in_file.insert((qualified.clone(), from), None);
                    in_file.insert((qualified.clone(), to), ty);
                    continue;
                }
                _ => continue,
            };
            let old = match in_file.insert((qualified.clone(), column), Some(data_type)) {
                Some(ty) => ty,
                None => cx.schema.column_type(&qualified, column),
            };
            if !existing {
                continue;
            }
            let change = match &old {
                Some(old) => format!("from `{old}` to `{data_type}`"),
                None => format!("to `{data_type}`"),
            };
            let why = match (&old, using) {
                (_, Some(_)) => "with USING",
                (Some(old), None) if binary_coercible(old, data_type) => continue,
                (Some(_), None) => "not binary-coercible",
                (None, None) if free_target(data_type) => continue,
                (None, None) => "its current type is unknown",
            };
            let mut finding = Finding::at(
                RuleId::BackfillAlterColumnType,
                stmt,
                format!(
                    "changing `{table}.{column}` {change} ({why}) rewrites every row of `{table}`, an existing table, and rebuilds its indexes under an ACCESS EXCLUSIVE lock: reads and writes wait until it finishes"
                ),
                "add a column of the new type instead, fill it with a batched data migration in `data-migrations/` (a trigger keeps new writes in sync meanwhile), then switch readers over and drop the old column",
            );
            if old.is_none() {
                finding = finding.with_note(format!("no earlier linted migration declares `{table}.{column}`; if its current type is binary-coercible to `{data_type}`, suppress this with that reason"));
            }
            out.push(finding);
        }
    }
}

/// New types that are free from the types columns usually start as (varchar(n), text), or at
/// least common enough as targets that reporting them without knowing the old type would mostly
/// be noise.
fn free_target(ty: &TypeName) -> bool {
    if ty.array {
        return false;
    }
    match ty.canonical() {
        "text" | "citext" => ty.modifiers.is_empty(),
        "varchar" => true,
        "numeric" => ty.modifiers.is_empty(),
        _ => false,
    }
}

/// Whether PostgreSQL changes `old` to `new` without rewriting the table. Conservative: anything
/// not known to be free is a rewrite. Verified on PostgreSQL 15 (relfilenode before and after);
/// notably `timestamp` <-> `timestamptz` is free only when the session time zone is UTC, and
/// arrays rewrite whenever anything but nothing changes (even `varchar(10)[]` -> `text[]`).
pub(crate) fn binary_coercible(old: &TypeName, new: &TypeName) -> bool {
    let (o, n) = (old.canonical(), new.canonical());
    let old_mods = modifiers(old);
    let new_mods = modifiers(new);
    if o == n && old.array == new.array && same_modifiers(o, &old_mods, &new_mods) {
        return true;
    }
    if old.array || new.array {
        return false;
    }
    match (o, n) {
        // Widening or dropping a length limit; adding or shrinking one checks every row.
        ("varchar", "varchar") | ("varbit", "varbit") => widens(&old_mods, &new_mods),
        ("varchar" | "text" | "citext", "text" | "citext") | ("xml", "text") => new_mods.is_empty(),
        ("text" | "citext" | "xml", "varchar") => new_mods.is_empty(),
        ("bit", "varbit") => new_mods.is_empty(),
        ("cidr", "inet") => true,
        // Same scale, no less precision; or no constraint at all.
        ("numeric", "numeric") => match (numeric_mods(&old_mods), numeric_mods(&new_mods)) {
            (_, None) if new_mods.is_empty() => true,
            (Some((p, s)), Some((p2, s2))) => s2 == s && p2 >= p,
            _ => false,
        },
        // Fractional-second precision: raising or dropping it is free.
        ("timestamp", "timestamp")
        | ("timestamptz", "timestamptz")
        | ("time", "time")
        | ("timetz", "timetz")
        | ("interval", "interval") => widens(&old_mods, &new_mods),
        _ => false,
    }
}

fn modifiers(ty: &TypeName) -> Vec<String> {
    ty.modifiers
        .iter()
        .map(|m| m.trim().to_ascii_lowercase())
        .collect()
}

fn same_modifiers(canonical: &str, a: &[String], b: &[String]) -> bool {
    if canonical == "numeric" {
        // numeric(10) is numeric(10,0).
        if let (Some(x), Some(y)) = (numeric_mods(a), numeric_mods(b)) {
            return x == y;
        }
    }
    a == b
}

/// A single numeric length that does not shrink, or no length any more.
fn widens(old: &[String], new: &[String]) -> bool {
    match (old, new) {
        (_, []) => true,
        ([o], [n]) => matches!((o.parse::<u64>(), n.parse::<u64>()), (Ok(o), Ok(n)) if n >= o),
        _ => false,
    }
}

/// `(precision, scale)` of numeric modifiers, `None` when absent or unreadable.
fn numeric_mods(mods: &[String]) -> Option<(u64, i64)> {
    match mods {
        [p] => Some((p.parse().ok()?, 0)),
        [p, s] => Some((p.parse().ok()?, s.parse().ok()?)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::binary_coercible;
    use crate::lint::RuleId::BackfillAlterColumnType as RULE;
    use crate::lint::rules::test_support::{lint_errors, lint_ok};
    use crate::sql::Dialect::Postgres;
    use crate::sql::TypeName;

    fn ty(name: &str, mods: &[&str]) -> TypeName {
        TypeName {
            name: name.into(),
            modifiers: mods.iter().map(|m| m.to_string()).collect(),
            array: false,
        }
    }

    #[test]
    fn binary_coercible_matches_postgres_15() {
        // (old, new, free?) as observed on PostgreSQL 15: relfilenode before and after.
        let cases = [
            (ty("varchar", &["10"]), ty("varchar", &["20"]), true),
            (
                ty("character varying", &["10"]),
                ty("varchar", &["10"]),
                true,
            ),
            (ty("varchar", &["10"]), ty("varchar", &["5"]), false),
            (ty("varchar", &["10"]), ty("varchar", &[]), true),
            (ty("varchar", &["10"]), ty("text", &[]), true),
            (ty("varchar", &[]), ty("varchar", &["10"]), false),
            (ty("text", &[]), ty("varchar", &[]), true),
            (ty("text", &[]), ty("varchar", &["10"]), false),
            (ty("text", &[]), ty("citext", &[]), true),
            (ty("citext", &[]), ty("varchar", &["10"]), false),
            (
                ty("numeric", &["10", "2"]),
                ty("numeric", &["12", "2"]),
                true,
            ),
            (
                ty("numeric", &["10", "2"]),
                ty("numeric", &["12", "3"]),
                false,
            ),
            (
                ty("numeric", &["10", "2"]),
                ty("numeric", &["9", "2"]),
                false,
            ),
            (ty("numeric", &["10", "2"]), ty("numeric", &[]), true),
            (ty("numeric", &["10", "2"]), ty("decimal", &[]), true),
            (ty("numeric", &[]), ty("numeric", &["10", "2"]), false),
            (ty("numeric", &["10"]), ty("numeric", &["12", "0"]), true),
            (ty("varbit", &["5"]), ty("varbit", &["8"]), true),
            (ty("varbit", &["5"]), ty("varbit", &["3"]), false),
            (ty("bit", &["5"]), ty("varbit", &[]), true),
            (ty("bit", &["5"]), ty("varbit", &["5"]), false),
            (ty("cidr", &[]), ty("inet", &[]), true),
            (ty("inet", &[]), ty("cidr", &[]), false),
            (ty("xml", &[]), ty("text", &[]), true),
            (ty("bpchar", &["5"]), ty("text", &[]), false),
            (ty("char", &["5"]), ty("char", &["10"]), false),
            (ty("int", &[]), ty("bigint", &[]), false),
            (ty("integer", &[]), ty("int4", &[]), true),
            (ty("json", &[]), ty("jsonb", &[]), false),
            (ty("timestamp", &["3"]), ty("timestamp", &[]), true),
            (ty("timestamp", &["3"]), ty("timestamp", &["6"]), true),
            (ty("timestamp", &[]), ty("timestamp", &["3"]), false),
            (ty("timestamp", &[]), ty("timestamptz", &[]), false),
            (ty("interval", &[]), ty("interval", &["3"]), false),
            (ty("float4", &[]), ty("double precision", &[]), false),
        ];
        for (old, new, free) in cases {
            assert_eq!(binary_coercible(&old, &new), free, "{old} -> {new}");
        }
        let mut text_array = ty("text", &[]);
        text_array.array = true;
        let mut varchar_array = ty("varchar", &["10"]);
        varchar_array.array = true;
        assert!(!binary_coercible(&varchar_array, &text_array));
        assert!(binary_coercible(&text_array, &text_array));
    }

    #[test]
    fn err_int_to_bigint_with_type_from_same_file() {
        let sql = "ALTER TABLE users ADD COLUMN score integer;\nALTER TABLE users ALTER COLUMN score TYPE bigint;\n";
        insta::assert_yaml_snapshot!(lint_errors(sql, Postgres, RULE));
    }

    #[test]
    fn err_old_type_unknown_and_new_type_not_a_usual_free_target() {
        let sql = "ALTER TABLE users ALTER COLUMN id TYPE bigint;\n";
        insta::assert_yaml_snapshot!(lint_errors(sql, Postgres, RULE));
    }

    #[test]
    fn err_using_clause_always_rewrites() {
        let sql = "ALTER TABLE users ALTER COLUMN handle SET DATA TYPE varchar(50) USING substr(handle, 1, 50);\n";
        insta::assert_yaml_snapshot!(lint_errors(sql, Postgres, RULE));
    }

    #[test]
    fn err_shrinking_varchar_in_same_statement() {
        let sql =
            "ALTER TABLE users ADD COLUMN bio varchar(200), ALTER COLUMN bio TYPE varchar(100);\n";
        insta::assert_yaml_snapshot!(lint_errors(sql, Postgres, RULE));
    }

    #[test]
    fn ok_binary_coercible_changes() {
        let sql = "ALTER TABLE users ADD COLUMN bio varchar(100);\nALTER TABLE users ALTER COLUMN bio TYPE varchar(200);\nALTER TABLE users ALTER COLUMN bio TYPE text;\n";
        lint_ok(sql, Postgres, RULE);
    }

    #[test]
    fn ok_unknown_old_type_to_usual_free_target() {
        let sql = "ALTER TABLE users ALTER COLUMN handle TYPE text;\nALTER TABLE users ALTER COLUMN bio TYPE varchar(255);\nALTER TABLE accounts ALTER COLUMN balance TYPE numeric;\n";
        lint_ok(sql, Postgres, RULE);
    }

    #[test]
    fn err_type_known_from_earlier_statement_of_same_file() {
        // text -> varchar(255) checks every row's length: a rewrite, unlike the first change.
        let sql = "ALTER TABLE users ALTER COLUMN handle TYPE text;\nALTER TABLE users ALTER COLUMN handle TYPE varchar(255);\n";
        let found = lint_errors(sql, Postgres, RULE);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].contains("from `text` to `varchar(255)`"),
            "{found:?}"
        );
    }

    #[test]
    fn ok_column_of_table_created_in_same_file() {
        lint_ok(
            "CREATE TABLE t (id int);\nALTER TABLE t ALTER COLUMN id TYPE bigint;\n",
            Postgres,
            RULE,
        );
    }
}
