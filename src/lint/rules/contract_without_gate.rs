//! `contract-without-gate`: a schema migration that contracts what a data migration fills or
//! reads, without waiting for it (`-- migrate: after-backfill NAME`).
//!
//! A contract step (SET NOT NULL or a validated CHECK on the table a backfill fills, dropping or
//! renaming a column it fills, dropping or renaming a table it reads) belongs after the backfill
//! is done on that database. Without the gate, a deploy applies it as soon as the structure is
//! there: on production, where the backfill has not run yet, the SET NOT NULL fails on the rows
//! still NULL (or the backfill fails on the column that is gone). Only data migrations whose
//! `@requires` is below this migration's version count: the contract comes after their
//! structure. The data migrations are the workspace's (`LintOptions::backfills`).

use crate::lint::{BackfillFacts, FileCx, Finding, RuleId};
use crate::sql::{AlterAction, ConstraintKind, StmtKind};

pub(crate) fn check(cx: &FileCx<'_>, out: &mut Vec<Finding>) {
    if cx.options.backfills.is_empty() {
        return;
    }
    let version = crate::lint::layout::version(cx.options.layout, cx.path);
    let gated: Vec<&String> = cx
        .markers
        .after_backfill
        .iter()
        .map(|(name, _)| name)
        .collect();
    let relevant: Vec<&BackfillFacts> = cx
        .options
        .backfills
        .iter()
        .filter(|b| version.is_none_or(|v| b.requires < v))
        .filter(|b| !gated.iter().any(|g| b.is_named(g)))
        .collect();
    if relevant.is_empty() {
        return;
    }
    for (_, stmt, _) in cx.statements() {
        let mut report = |b: &BackfillFacts, what: String| {
            out.push(Finding::at(
                RuleId::ContractWithoutGate,
                stmt,
                format!("{what}, which data migration {} fills or reads, before it is done: where the backfill has not run yet, this fails or breaks it", b.id),
                format!("add `-- migrate: after-backfill {}` to this migration's header: `cargo xtask migrate run` then applies it once the backfill is done", b.id),
            ));
        };
        match &stmt.kind {
            StmtKind::AlterTable { table, actions } => {
                let name = table.name.as_str();
                for b in &relevant {
                    let fills = b.table == name;
                    let reads = fills || b.reads.iter().any(|r| r == name);
                    for action in actions {
                        match action {
                            AlterAction::SetNotNull { column }
                                if fills && b.writes.contains(column) =>
                            {
                                report(b, format!("SET NOT NULL on `{name}.{column}`"));
                            }
                            AlterAction::AddConstraint(c)
                                if fills && c.kind == ConstraintKind::Check && !c.not_valid =>
                            {
                                report(b, format!("a validated CHECK on `{name}`"));
                            }
                            AlterAction::DropColumn { column }
                                if fills && b.writes.contains(column) =>
                            {
                                report(b, format!("dropping `{name}.{column}`"));
                            }
                            AlterAction::RenameColumn { from, .. }
                                if fills && b.writes.contains(from) =>
                            {
                                report(b, format!("renaming `{name}.{from}`"));
                            }
                            AlterAction::RenameTable { .. } if reads => {
                                report(b, format!("renaming `{name}`"));
                            }
                            _ => {}
                        }
                    }
                }
            }
            StmtKind::DropTable { tables } => {
                for table in tables {
                    let name = table.name.as_str();
                    for b in &relevant {
                        if b.table == name || b.reads.iter().any(|r| r == name) {
                            report(b, format!("dropping `{name}`"));
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::lint::{BackfillFacts, LintOptions, RuleId, lint_text};

    fn options() -> LintOptions {
        LintOptions {
            backfills: vec![BackfillFacts {
                id: "V1__backfill_counter_caches".into(),
                version: 1,
                requires: 4,
                table: "users".into(),
                writes: vec!["followers_count".into(), "posts_count".into()],
                reads: vec!["follows".into(), "posts".into()],
            }],
            ..LintOptions::default()
        }
    }

    fn found(file: &str, sql: &str) -> Vec<String> {
        lint_text(Path::new(file), sql, &options())
            .into_iter()
            .filter(|f| f.rule == RuleId::ContractWithoutGate)
            .map(|f| format!("{} | {}", f.message, f.help))
            .collect()
    }

    #[test]
    fn err_set_not_null_on_a_filled_column() {
        let f = found(
            "migrations/V5__contract.sql",
            "ALTER TABLE users ALTER COLUMN posts_count SET NOT NULL;\n",
        );
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].starts_with("SET NOT NULL on `users.posts_count`, which data migration V1__backfill_counter_caches fills or reads"), "{f:?}");
        assert!(
            f[0].contains("add `-- migrate: after-backfill V1__backfill_counter_caches`"),
            "{f:?}"
        );
    }

    #[test]
    fn err_validated_check_drops_and_renames() {
        let f = found(
            "migrations/V5__contract.sql",
            "ALTER TABLE users ADD CONSTRAINT c CHECK (posts_count >= 0);\nALTER TABLE users DROP COLUMN followers_count;\nALTER TABLE users RENAME COLUMN posts_count TO n_posts;\nDROP TABLE follows;\nALTER TABLE posts RENAME TO articles;\n",
        );
        assert_eq!(f.len(), 5, "{f:?}");
    }

    #[test]
    fn ok_with_the_gate() {
        for gate in ["V1__backfill_counter_caches", "V1"] {
            let sql = format!(
                "-- migrate: after-backfill {gate}\nALTER TABLE users ALTER COLUMN posts_count SET NOT NULL;\nDROP TABLE follows;\n"
            );
            assert!(
                found("migrations/V5__contract.sql", &sql).is_empty(),
                "{gate}"
            );
        }
    }

    #[test]
    fn ok_unrelated_or_before_the_backfill_s_structure() {
        // Another column, a NOT VALID check, another table.
        assert!(
            found(
                "migrations/V5__other.sql",
                "ALTER TABLE users ALTER COLUMN email SET NOT NULL;\nALTER TABLE users ADD CONSTRAINT c CHECK (posts_count >= 0) NOT VALID;\nDROP TABLE sessions;\n",
            )
            .is_empty()
        );
        // At or below the version the data migration requires: its structure, not a contract.
        assert!(
            found(
                "migrations/V3__early.sql",
                "ALTER TABLE users ALTER COLUMN posts_count SET NOT NULL;\n",
            )
            .is_empty()
        );
    }
}
