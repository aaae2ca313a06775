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

use std::collections::HashMap;

use crate::lint::rules::{LineIndex, in_do_block};
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
    // Where each name is created, dropped or renamed away (in statement order, one list per
    // step), so that a file of many INSERTs costs one pass instead of one scan per INSERT.
    let mut created: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut dropped: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut renamed: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, stmt) in stmts.iter().enumerate() {
        match &stmt.kind {
            StmtKind::CreateTable { table, .. } => created.entry(&table.name).or_default().push(i),
            StmtKind::AlterTable { table, actions }
                if actions
                    .iter()
                    .any(|a| matches!(a, AlterAction::RenameTable { .. })) =>
            {
                renamed.entry(&table.name).or_default().push(i)
            }
            StmtKind::DropTable { tables } => {
                for table in tables {
                    dropped.entry(&table.name).or_default().push(i);
                }
            }
            _ => {}
        }
    }
    let before = |map: &HashMap<&str, Vec<usize>>,
                  name: &Name,
                  end: usize,
                  pred: &dyn Fn(&StmtKind) -> bool| {
        let list = map.get(name.name.as_str()).map_or(&[][..], Vec::as_slice);
        list[..list.partition_point(|&i| i < end)]
            .iter()
            .rev()
            .copied()
            .find(|&i| pred(&stmts[i].kind))
    };
    let after = |map: &HashMap<&str, Vec<usize>>,
                 name: &Name,
                 start: usize,
                 pred: &dyn Fn(&StmtKind) -> bool| {
        let list = map.get(name.name.as_str()).map_or(&[][..], Vec::as_slice);
        list[list.partition_point(|&i| i <= start)..]
            .iter()
            .copied()
            .find(|&i| pred(&stmts[i].kind))
    };

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
        let Some(create) = before(&created, into, insert, &|k| creates(k, into)) else {
            continue;
        };
        let rebuild = query
            .sources
            .iter()
            .filter(|from| !from.same_object(into) && cx.is_existing_large_table(insert, from))
            .find_map(|from| {
                let drop = after(&dropped, from, insert, &|k| drops(k, from))?;
                let rename_step = |k: &StmtKind| renames(k, into, from);
                // new -> old: the copy takes the old table's name once the old one is gone.
                if let Some(rename) = after(&renamed, into, insert, &rename_step) {
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
                let rename = before(&renamed, into, create, &rename_step)?;
                cx.is_existing_large_table(rename, into).then_some(Rebuild {
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

pub(crate) fn check(cx: &FileCx<'_>, out: &mut Vec<Finding>) {
    if cx.dialect == Dialect::Sqlite {
        drop_column(cx, out);
    }
    let lines = LineIndex::new(cx.text);
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
                    lines.line_of(cx.parsed.statements[*i].span.start)
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

/// SQLite's `ALTER TABLE ... DROP COLUMN` rewrites every row of the table to take the column's
/// data out (it is the rebuild, done by SQLite itself), under the database's write lock.
fn drop_column(cx: &FileCx<'_>, out: &mut Vec<Finding>) {
    for (index, stmt, _) in cx.statements() {
        let StmtKind::AlterTable { table, actions } = &stmt.kind else {
            continue;
        };
        if !cx.is_existing_large_table(index, table) {
            continue;
        }
        for action in actions {
            let AlterAction::DropColumn { column } = action else {
                continue;
            };
            out.push(Finding::at(
                RuleId::BackfillTableRebuild,
                stmt,
                format!("DROP COLUMN `{column}` rewrites every row of `{table}`, an existing table, inside the migration: SQLite takes the column's data out of each row, the database is write-locked until it finishes and the deploy waits"),
                format!("SQLite has no cheaper way to remove a column: stop using it and leave it in place, or drop it when a write lock for the whole rewrite is acceptable and suppress this with a reason that says how many rows `{table}` has in production"),
            ));
        }
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

    #[test]
    fn ok_new_table_seeded_from_constants_is_not_a_rebuild() {
        // The INSERT reads `users` only in its guard: no row of `users` is copied.
        let sql = "CREATE TABLE users_new (id integer PRIMARY KEY);\nINSERT INTO users_new SELECT 1 WHERE EXISTS (SELECT 1 FROM users);\nDROP TABLE users;\nALTER TABLE users_new RENAME TO users;\n";
        lint_ok(sql, Postgres, RULE);
        lint_ok(sql, Sqlite, RULE);
        lint_ok(sql, Postgres, BackfillInsertSelect);
        lint_ok(sql, Sqlite, BackfillInsertSelect);
    }

    #[test]
    fn err_sqlite_drop_column_rewrites_the_table() {
        let sql = "ALTER TABLE users DROP COLUMN legacy_flag;\n";
        insta::assert_yaml_snapshot!(lint_errors(sql, Sqlite, RULE));
    }

    #[test]
    fn ok_drop_column_of_a_new_table_or_in_postgres() {
        lint_ok(
            "CREATE TABLE t (id integer, x integer);\nALTER TABLE t DROP COLUMN x;\n",
            Sqlite,
            RULE,
        );
        // PostgreSQL only marks the column dropped.
        lint_ok(
            "ALTER TABLE users DROP COLUMN legacy_flag;\n",
            Postgres,
            RULE,
        );
    }
}
