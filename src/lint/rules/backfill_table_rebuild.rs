//! `backfill-table-rebuild`: the rebuild pattern, in one file: `CREATE TABLE new`,
//! `INSERT INTO new SELECT ... FROM old`, `DROP TABLE old`, `ALTER TABLE new RENAME TO old` (the
//! drop and the rename in either order), or its mirror `ALTER TABLE old RENAME TO tmp`,
//! `CREATE TABLE old`, `INSERT INTO old SELECT ... FROM tmp`, `DROP TABLE tmp`.
//!
//! It copies every row of the table inside the migration: in SQLite the database is write-locked
//! for the whole copy, in PostgreSQL writes made to the old table meanwhile are lost or wait for
//! the DROP. SQLite's ALTER TABLE cannot change a column's type or constraints, so there it is
//! sometimes the only way; reported once, at the INSERT, so a reviewer decides. The INSERT is
//! then not also a `backfill-insert-select` finding ([`find`] is shared with that rule); a
//! partial pattern (no drop or no rename) is left to `backfill-insert-select`.

use crate::lint::rules::in_do_block;
use crate::lint::{FileCx, Finding, RuleId};
use crate::sql::{AlterAction, Dialect, InsertSource, Name, StmtKind};

/// One rebuild found in a file.
pub(crate) struct Rebuild<'a> {
    /// The table that the rest of the application knows by name.
    pub table: &'a Name,
    /// The table the INSERT reads from.
    pub from: &'a Name,
    /// The table the INSERT writes to.
    pub into: &'a Name,
    /// Statement indexes of the four steps.
    pub create: usize,
    pub insert: usize,
    pub drop: usize,
    pub rename: usize,
}

/// Every rebuild in the file, one per INSERT at most.
pub(crate) fn find<'a>(cx: &FileCx<'a>) -> Vec<Rebuild<'a>> {
    let stmts = &cx.parsed.statements;
    let mut found = Vec::new();
    for (insert, stmt) in stmts.iter().enumerate() {
        let StmtKind::Insert {
            table: into,
            source: InsertSource::Query(query),
            ..
        } = &stmt.kind
        else {
            continue;
        };
        if in_do_block(cx, stmt) || !cx.is_new_table(insert, into) {
            continue;
        }
        let Some(create) = (0..insert).rev().find(|&i| creates(&stmts[i].kind, into)) else {
            continue;
        };
        let rebuild = query
            .reads
            .iter()
            .filter(|from| !from.same_object(into) && cx.is_existing_large_table(insert, from))
            .find_map(|from| {
                let drop = (insert + 1..stmts.len()).find(|&i| drops(&stmts[i].kind, from))?;
                // new -> old: the copy takes the old table's name once the old one is gone.
                if let Some(rename) =
                    (insert + 1..stmts.len()).find(|&i| renames(&stmts[i].kind, into, from))
                {
                    return Some(Rebuild {
                        table: from,
                        from,
                        into,
                        create,
                        insert,
                        drop,
                        rename,
                    });
                }
                // old -> tmp first, then a new table under the old name is filled from tmp.
                let rename = (0..create)
                    .rev()
                    .find(|&i| renames(&stmts[i].kind, into, from))?;
                let original = renamed_from(&stmts[rename].kind)?;
                cx.is_existing_large_table(rename, original)
                    .then_some(Rebuild {
                        table: into,
                        from,
                        into,
                        create,
                        insert,
                        drop,
                        rename,
                    })
            });
        found.extend(rebuild);
    }
    found
}

fn creates(kind: &StmtKind, name: &Name) -> bool {
    matches!(kind, StmtKind::CreateTable { table, as_query: None, .. } if table.same_object(name))
}

fn drops(kind: &StmtKind, name: &Name) -> bool {
    matches!(kind, StmtKind::DropTable { tables } if tables.iter().any(|t| t.same_object(name)))
}

/// Whether `kind` renames `from` to `to` (a rename keeps the table's schema).
fn renames(kind: &StmtKind, from: &Name, to: &Name) -> bool {
    let StmtKind::AlterTable { table, actions } = kind else {
        return false;
    };
    table.same_object(from)
        && actions.iter().any(|a| match a {
            AlterAction::RenameTable { new_name } => Name {
                schema: new_name.schema.clone().or_else(|| table.schema.clone()),
                name: new_name.name.clone(),
            }
            .same_object(to),
            _ => false,
        })
}

fn renamed_from(kind: &StmtKind) -> Option<&Name> {
    match kind {
        StmtKind::AlterTable { table, .. } => Some(table),
        _ => None,
    }
}

pub(crate) fn check(cx: &FileCx<'_>, out: &mut Vec<Finding>) {
    for rebuild in find(cx) {
        let Rebuild {
            table, from, into, ..
        } = rebuild;
        let stmt = &cx.parsed.statements[rebuild.insert];
        let help = match cx.dialect {
            Dialect::Sqlite => format!(
                "SQLite's ALTER TABLE cannot change a column's type or constraints, so this is sometimes the only way: then suppress it with a reason that says how many rows `{table}` has in production, or do the copy as a batched data migration in `data-migrations/`"
            ),
            Dialect::Postgres => format!(
                "change `{table}` in place with ALTER TABLE (ADD COLUMN, ALTER COLUMN ... TYPE, ADD CONSTRAINT ... NOT VALID) and move any change to its data to a batched data migration in `data-migrations/`"
            ),
        };
        let mut steps = [
            (rebuild.create, "CREATE TABLE"),
            (rebuild.insert, "INSERT"),
            (rebuild.drop, "DROP TABLE"),
            (rebuild.rename, "RENAME"),
        ];
        steps.sort_unstable();
        let steps: Vec<String> = steps
            .iter()
            .map(|(i, what)| {
                format!(
                    "{what} at line {}",
                    cx.line_of(cx.parsed.statements[*i].span.start)
                )
            })
            .collect();
        out.push(
            Finding::at(
                RuleId::BackfillTableRebuild,
                stmt,
                format!("rebuilding `{table}` copies every row of `{from}` into `{into}` inside the migration: it runs as long as the table is large and the deploy waits until it finishes"),
                help,
            )
            .with_note(format!("the rebuild: {}", steps.join(", "))),
        );
    }
}

#[cfg(test)]
mod tests {
    use crate::lint::RuleId::{BackfillInsertSelect, BackfillTableRebuild as RULE};
    use crate::lint::rules::test_support::{lint_errors, lint_ok};
    use crate::sql::Dialect::{Postgres, Sqlite};

    const REBUILD: &str = "CREATE TABLE users_new (id integer PRIMARY KEY, handle text NOT NULL);\nINSERT INTO users_new (id, handle) SELECT id, handle FROM users;\nDROP TABLE users;\nALTER TABLE users_new RENAME TO users;\n";

    #[test]
    fn err_rebuild() {
        insta::assert_yaml_snapshot!(lint_errors(REBUILD, Postgres, RULE));
        insta::assert_yaml_snapshot!("err_rebuild_sqlite", lint_errors(REBUILD, Sqlite, RULE));
    }

    #[test]
    fn ok_rebuild_insert_is_not_also_insert_select() {
        lint_ok(REBUILD, Postgres, BackfillInsertSelect);
        lint_ok(REBUILD, Sqlite, BackfillInsertSelect);
    }

    #[test]
    fn err_rebuild_rename_before_drop() {
        // The order SQLite's documentation uses with foreign keys off: rename the old table away
        // first, create the new one under the old name, copy, drop.
        let sql = "ALTER TABLE users RENAME TO users_old;\nCREATE TABLE users (id integer PRIMARY KEY, handle text NOT NULL);\nINSERT INTO users SELECT id, handle FROM users_old;\nDROP TABLE users_old;\n";
        insta::assert_yaml_snapshot!(lint_errors(sql, Sqlite, RULE));
        insta::assert_yaml_snapshot!(
            "err_rebuild_rename_before_drop_postgres",
            lint_errors(sql, Postgres, RULE)
        );
        lint_ok(sql, Sqlite, BackfillInsertSelect);
    }

    #[test]
    fn err_rebuild_with_schema_and_rename_before_drop() {
        let sql = "CREATE TABLE app.posts_new (id bigint);\nINSERT INTO app.posts_new SELECT id FROM app.posts;\nALTER TABLE app.posts_new RENAME TO posts;\nDROP TABLE app.posts;\n";
        insta::assert_yaml_snapshot!(lint_errors(sql, Postgres, RULE));
    }

    #[test]
    fn ok_rebuild_without_rename_is_insert_select() {
        let sql = "CREATE TABLE users_new (id integer);\nINSERT INTO users_new SELECT id FROM users;\nDROP TABLE users;\n";
        lint_ok(sql, Sqlite, RULE);
        lint_errors(sql, Sqlite, BackfillInsertSelect);
    }

    #[test]
    fn ok_rebuild_of_table_created_in_same_file() {
        let sql = "CREATE TABLE t (id integer);\nCREATE TABLE t_new (id integer);\nINSERT INTO t_new SELECT id FROM t;\nDROP TABLE t;\nALTER TABLE t_new RENAME TO t;\n";
        lint_ok(sql, Postgres, RULE);
        lint_ok(sql, Sqlite, RULE);
    }
}
