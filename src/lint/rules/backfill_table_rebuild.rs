//! `backfill-table-rebuild`: the rebuild pattern: `CREATE TABLE new`,
//! `INSERT INTO new SELECT ... FROM old`, `DROP TABLE old`, `ALTER TABLE new RENAME TO old` (the
//! drop and the rename in either order), or its mirror `ALTER TABLE old RENAME TO tmp`,
//! `CREATE TABLE old`, `INSERT INTO old SELECT ... FROM tmp`, `DROP TABLE tmp`. In one file, or
//! split over neighbouring migrations of one directory (one statement per file, as popx's
//! projects write them): the steps before the INSERT are looked for in up to
//! [`NEIGHBOURS`](crate::lint::NEIGHBOURS) files before it, the steps after it in as many after.
//!
//! It copies every row of the table inside the migration: in SQLite the database is write-locked
//! for the whole copy, in PostgreSQL writes made to the old table meanwhile are lost or wait for
//! the DROP. SQLite's ALTER TABLE cannot change a column's type or constraints, so there it is
//! sometimes the only way; reported once, at the INSERT, so a reviewer decides. The INSERT is
//! then not also a `backfill-insert-select` finding ([`find`] is shared with that rule); a
//! partial pattern (no drop or no rename) is left to `backfill-insert-select`.

use std::collections::HashMap;
use std::path::Path;

use crate::lint::rules::{LineIndex, in_do_block};
use crate::lint::{FileCx, Finding, RuleId};
use crate::sql::{AlterAction, Dialect, InsertSource, Name, Statement, StmtKind};

/// Where a step of a rebuild is: its file, as an offset from the linted one (`-1`: the migration
/// just before it in its directory, `0`: the file itself, `1`: the one just after), and the
/// statement's index in that file. Ordered as the statements run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct At {
    pub file: isize,
    pub index: usize,
}

impl At {
    fn here(index: usize) -> At {
        At { file: 0, index }
    }
}

/// One rebuild found in a file.
pub(crate) struct Rebuild<'a> {
    /// The table that the rest of the application knows by name.
    pub table: &'a Name,
    /// The table the INSERT reads from.
    pub from: &'a Name,
    /// The table the INSERT writes to.
    pub into: &'a Name,
    /// Where the four steps are; the INSERT is always in the linted file.
    pub create: At,
    pub insert: usize,
    pub drop: At,
    pub rename: At,
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
        if in_do_block(cx, stmt) {
            continue;
        }
        let create = cx
            .is_new_table(insert, into)
            .then(|| before(&created, into, insert, &|k| creates(k, into)))
            .flatten();
        let rebuild = create.and_then(|create| {
            query
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
                            create: At::here(create),
                            insert,
                            drop: At::here(drop),
                            rename: At::here(rename),
                        });
                    }
                    // old -> tmp first, then a new table under the old name is filled from tmp.
                    let rename = before(&renamed, into, create, &rename_step)?;
                    cx.is_existing_large_table(rename, into).then_some(Rebuild {
                        table: into,
                        from,
                        into,
                        create: At::here(create),
                        insert,
                        drop: At::here(drop),
                        rename: At::here(rename),
                    })
                })
        });
        found.extend(rebuild.or_else(|| find_split(cx, insert, into, &query.sources)));
    }
    found
}

/// The statements of the file at `file` (see [`At`]), if the linted file has that neighbour.
fn statements_of<'a>(cx: &FileCx<'a>, file: isize) -> Option<&'a [Statement]> {
    let parsed = match file {
        0 => cx.parsed,
        f if f < 0 => {
            cx.before
                .get(cx.before.len().checked_sub(f.unsigned_abs())?)?
                .parsed
        }
        f => cx.after.get(f.unsigned_abs() - 1)?.parsed,
    };
    Some(&parsed.statements)
}

/// The first statement after `from` (in this file, then in the migrations after it) that `pred`
/// holds for.
fn next_where<'a>(cx: &FileCx<'a>, from: At, pred: impl Fn(&StmtKind) -> bool) -> Option<At> {
    let mut file = from.file;
    let mut start = from.index + 1;
    while let Some(stmts) = statements_of(cx, file) {
        if let Some(i) = (start..stmts.len()).find(|&i| pred(&stmts[i].kind)) {
            return Some(At { file, index: i });
        }
        file += 1;
        start = 0;
    }
    None
}

/// The last statement before `to` (in this file, then in the migrations before it) that `pred`
/// holds for.
fn last_where<'a>(cx: &FileCx<'a>, to: At, pred: impl Fn(&StmtKind) -> bool) -> Option<At> {
    let mut file = to.file;
    let mut end = Some(to.index);
    while let Some(stmts) = statements_of(cx, file) {
        let end_here = end.unwrap_or(stmts.len()).min(stmts.len());
        if let Some(i) = (0..end_here).rev().find(|&i| pred(&stmts[i].kind)) {
            return Some(At { file, index: i });
        }
        file -= 1;
        end = None;
    }
    None
}

/// The rebuild around the INSERT at `insert` when some of its steps are in neighbouring
/// migrations: the CREATE of `into` is the last statement before the INSERT that creates or
/// drops it, the DROP and the RENAME the first ones after it.
fn find_split<'a>(
    cx: &FileCx<'a>,
    insert: usize,
    into: &'a Name,
    sources: &'a [Name],
) -> Option<Rebuild<'a>> {
    if cx.before.is_empty() && cx.after.is_empty() {
        return None;
    }
    let at_insert = At::here(insert);
    let create = last_where(cx, at_insert, |k| creates_or_drops(k, into))?;
    let create_kind = &statements_of(cx, create.file)?[create.index].kind;
    if !creates(create_kind, into) {
        return None;
    }
    sources
        .iter()
        .filter(|from| !from.same_object(into) && cx.is_existing_large_table(insert, from))
        .find_map(|from| {
            let drop = next_where(cx, at_insert, |k| drops(k, from))?;
            let rebuild =
                if let Some(rename) = next_where(cx, at_insert, |k| renames(k, into, from)) {
                    Rebuild {
                        table: from,
                        from,
                        into,
                        create,
                        insert,
                        drop,
                        rename,
                    }
                } else {
                    let rename = last_where(cx, create, |k| renames(k, into, from))?;
                    let existing = if rename.file == 0 {
                        cx.is_existing_large_table(rename.index, into)
                    } else {
                        !cx.options.is_small_table(into)
                    };
                    if !existing {
                        return None;
                    }
                    Rebuild {
                        table: into,
                        from,
                        into,
                        create,
                        insert,
                        drop,
                        rename,
                    }
                };
            // All in this file is the one-file pattern, which was not there.
            [rebuild.create, rebuild.drop, rebuild.rename]
                .iter()
                .any(|at| at.file != 0)
                .then_some(rebuild)
        })
}

/// Whether `kind` makes a table `name` (CREATE TABLE of any kind, a rename to it) or drops it.
fn creates_or_drops(kind: &StmtKind, name: &Name) -> bool {
    match kind {
        StmtKind::CreateTable { table, .. } => table.same_object(name),
        StmtKind::DropTable { tables } => tables.iter().any(|t| t.same_object(name)),
        StmtKind::AlterTable { table, actions } => actions.iter().any(|a| match a {
            AlterAction::RenameTable { new_name } => Name {
                schema: new_name.schema.clone().or_else(|| table.schema.clone()),
                name: new_name.name.clone(),
            }
            .same_object(name),
            _ => false,
        }),
        _ => false,
    }
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
    let mut other_lines: HashMap<isize, (&Path, LineIndex<'_>)> = HashMap::new();
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
            (At::here(rebuild.insert), "INSERT"),
            (rebuild.drop, "DROP TABLE"),
            (rebuild.rename, "RENAME"),
        ];
        steps.sort_unstable();
        let files = steps.iter().filter(|(at, _)| at.file != 0).count();
        let steps: Vec<String> = steps
            .iter()
            .map(|(at, what)| {
                let Some(stmts) = statements_of(cx, at.file) else {
                    return what.to_string();
                };
                let offset = stmts[at.index].span.start;
                if at.file == 0 {
                    return format!("{what} at line {}", lines.line_of(offset));
                }
                let (path, index) = other_lines.entry(at.file).or_insert_with(|| {
                    let n = if at.file < 0 {
                        &cx.before[cx.before.len() - at.file.unsigned_abs()]
                    } else {
                        &cx.after[at.file.unsigned_abs() - 1]
                    };
                    (n.path, LineIndex::new(n.text))
                });
                let name = path.file_name().unwrap_or(path.as_os_str());
                format!(
                    "{what} at line {} of `{}`",
                    index.line_of(offset),
                    name.to_string_lossy()
                )
            })
            .collect();
        let split = if files == 0 {
            String::new()
        } else {
            " (split over migrations of this directory)".to_owned()
        };
        out.push(
            Finding::at(
                RuleId::BackfillTableRebuild,
                stmt,
                format!("rebuilding `{table}` copies every row of `{from}` into `{into}` inside the migration: it runs as long as the table is large and the deploy waits until it finishes"),
                help,
            )
            .with_note(format!("the rebuild{split}: {}", steps.join(", "))),
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
    use crate::lint::rules::test_support::{lint_dir, lint_errors, lint_ok};
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

    /// The rebuild of `users`, one statement per migration.
    const SPLIT: [&str; 4] = [
        "CREATE TABLE users_new (id integer PRIMARY KEY, handle text NOT NULL);\n",
        "INSERT INTO users_new (id, handle) SELECT id, handle FROM users;\n",
        "DROP TABLE users;\n",
        "ALTER TABLE users_new RENAME TO users;\n",
    ];

    #[test]
    fn err_rebuild_split_over_migrations() {
        for dialect in [Sqlite, Postgres] {
            let found = lint_dir(&SPLIT, dialect, RULE);
            // Reported once, on the file of the INSERT, and not also as a plain INSERT ... SELECT.
            assert!(found[0].is_empty() && found[2].is_empty() && found[3].is_empty());
            assert_eq!(found[1].len(), 1, "{found:?}");
            let name = format!("err_rebuild_split_over_migrations_{dialect:?}").to_lowercase();
            insta::assert_snapshot!(name, found[1][0]);
            assert!(
                lint_dir(&SPLIT, dialect, BackfillInsertSelect)
                    .iter()
                    .all(Vec::is_empty)
            );
        }
    }

    #[test]
    fn err_rebuild_split_with_other_migrations_between() {
        // popx's layout: an index on the copy between its CREATE and the INSERT, the drop and the
        // rename in the INSERT's file and the next.
        let files = [
            SPLIT[0],
            "CREATE INDEX users_new_handle ON users_new (handle);\n",
            SPLIT[1],
            "DROP TABLE users;\nALTER TABLE users_new RENAME TO users;\n",
        ];
        let found = lint_dir(&files, Sqlite, RULE);
        assert_eq!(found[2].len(), 1, "{found:?}");
        assert!(
            found[2][0].contains("CREATE TABLE at line 1 of `V1__m.sql`, INSERT at line 1, DROP TABLE at line 1 of `V4__m.sql`, RENAME at line 2 of `V4__m.sql`"),
            "{found:?}"
        );
        // The mirror: rename the old table away, create the new one under its name, copy, drop.
        let mirror = [
            "ALTER TABLE users RENAME TO users_old;\n",
            "CREATE TABLE users (id integer PRIMARY KEY, handle text NOT NULL);\n",
            "INSERT INTO users SELECT id, handle FROM users_old;\n",
            "DROP TABLE users_old;\n",
        ];
        let found = lint_dir(&mirror, Sqlite, RULE);
        assert_eq!(found[2].len(), 1, "{found:?}");
        assert!(found[2][0].contains("rebuilding `users`"), "{found:?}");
    }

    #[test]
    fn ok_copy_into_a_new_table_never_swapped_in() {
        for dialect in [Sqlite, Postgres] {
            // Copied and kept beside the old table: no rebuild (the copy is an INSERT ... SELECT).
            let found = lint_dir(&SPLIT[..2], dialect, RULE);
            assert!(found.iter().all(Vec::is_empty), "{found:?}");
            assert_eq!(
                lint_dir(&SPLIT[..2], dialect, BackfillInsertSelect)[1].len(),
                1
            );
            // The old table dropped, but the copy keeps its own name.
            let found = lint_dir(&SPLIT[..3], dialect, RULE);
            assert!(found.iter().all(Vec::is_empty), "{found:?}");
        }
        // The copy was dropped and made again from another table before the INSERT: the CREATE
        // that counts is not an empty new table's.
        let files = [
            SPLIT[0],
            "DROP TABLE users_new;\nALTER TABLE accounts RENAME TO users_new;\n",
            SPLIT[1],
            SPLIT[2],
            SPLIT[3],
        ];
        let found = lint_dir(&files, Sqlite, RULE);
        assert!(found.iter().all(Vec::is_empty), "{found:?}");
    }

    #[test]
    fn ok_rebuild_split_over_directories_or_beyond_the_neighbours() {
        // Another directory's migrations are not this one's neighbours.
        let options = crate::lint::LintOptions {
            dialect: Sqlite,
            ..Default::default()
        };
        let paths: Vec<std::path::PathBuf> =
            ["a/V1__m.sql", "b/V2__m.sql", "a/V3__m.sql", "b/V4__m.sql"]
                .iter()
                .map(Into::into)
                .collect();
        let contents = paths
            .iter()
            .zip(SPLIT)
            .map(|(p, sql)| (p.clone(), sql.as_bytes().to_vec()))
            .collect();
        let report =
            crate::lint::lint_files(paths, &contents, &options, &mut Default::default()).unwrap();
        assert!(report.findings().all(|(_, f)| f.rule != RULE));
        // Too far apart to be one change.
        let filler = "CREATE TABLE other (id integer);\n";
        let mut files = vec![SPLIT[0], SPLIT[1]];
        files.extend([filler; crate::lint::NEIGHBOURS]);
        files.extend([SPLIT[2], SPLIT[3]]);
        let found = lint_dir(&files, Sqlite, RULE);
        assert!(found.iter().all(Vec::is_empty), "{found:?}");
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
