//! sqlparser's statements to [`StmtKind`]: one match over the statement types SQLite has, each
//! mapped field by field; anything else is `Other` with its leading keywords.

use sqlparser::ast::{
    AlterColumnOperation, AlterTableOperation, BinaryOperator, ColumnDef as AstColumn,
    ColumnOption, Expr as AstExpr, FromTable, GeneratedAs, GeneratedExpressionMode, ObjectType,
    RenameTableNameKind, SetExpr, SqliteOnConflict, Statement as Ast, TableConstraint, TableFactor,
    TableObject, UnaryOperator, UpdateTableFromKind, Value,
};
use sqlparser::keywords::Keyword;

use super::names::{ident, object_name, type_name};
use super::walk::Walker;
use crate::sql::{
    AlterAction, ColumnDef, Constraint, ConstraintKind, Expr, Filter, Generated, InsertSource,
    Name, StmtKind, TransactionControl,
};

/// Converts a top-level statement; `walker` collects reads, calls and nested statements.
pub(super) fn statement(ast: &Ast, w: &mut Walker<'_, '_>) -> StmtKind {
    match ast {
        Ast::Query(q) => {
            // `WITH ... INSERT/UPDATE/DELETE`: the statement is the DML, with the CTEs in scope.
            if let SetExpr::Insert(s)
            | SetExpr::Update(s)
            | SetExpr::Delete(s)
            | SetExpr::Merge(s) = q.body.as_ref()
            {
                let pushed = w.enter_with(q.with.as_ref());
                let kind = dml(s, w);
                w.leave_with(pushed);
                return kind;
            }
            w.source_query(q);
            // `SELECT ... INTO t` (not SQLite, but the parser knows it).
            let into = match q.body.as_ref() {
                SetExpr::Select(select) => select.into.as_ref().and_then(|i| i.targets.first()),
                _ => None,
            }
            .and_then(|target| match target {
                AstExpr::Identifier(i) => Some(Name::new(ident(i))),
                AstExpr::CompoundIdentifier(parts) => match parts.as_slice() {
                    [schema, name] => Some(Name::qualified(ident(schema), ident(name))),
                    _ => None,
                },
                _ => None,
            });
            let query = w.take_found().into_query();
            match into {
                Some(table) => StmtKind::SelectInto { table, query },
                None => StmtKind::Select { query },
            }
        }
        Ast::Insert(_) | Ast::Update(_) | Ast::Delete(_) | Ast::Merge(_) => dml(ast, w),
        Ast::CreateTable(ct) => {
            let columns = ct.columns.iter().map(|c| column(c, w)).collect();
            let constraints = ct.constraints.iter().filter_map(table_constraint).collect();
            let as_query = ct.query.as_ref().map(|q| {
                w.source_query(q);
                w.take_found().into_query()
            });
            StmtKind::CreateTable {
                table: object_name(&ct.name),
                columns,
                constraints,
                as_query,
                with_no_data: ct.with_data.as_ref().is_some_and(|d| !d.data),
                temporary: ct.temporary,
                if_not_exists: ct.if_not_exists,
            }
        }
        // A virtual table is a table the migration creates, whatever module stores it.
        Ast::CreateVirtualTable { name, .. } => StmtKind::CreateTable {
            table: object_name(name),
            columns: Vec::new(),
            constraints: Vec::new(),
            as_query: None,
            with_no_data: false,
            temporary: false,
            if_not_exists: false,
        },
        Ast::CreateView(v) => {
            w.source_query(&v.query);
            StmtKind::CreateView {
                name: object_name(&v.name),
                materialized: v.materialized,
                or_replace: v.or_replace,
                query: w.take_found().into_query(),
                with_no_data: false,
            }
        }
        Ast::CreateIndex(ci) => StmtKind::CreateIndex {
            name: ci.name.as_ref().map(object_name),
            table: object_name(&ci.table_name),
            concurrently: ci.concurrently,
            unique: ci.unique,
        },
        Ast::Drop {
            object_type, names, ..
        } => {
            let names = names.iter().map(object_name).collect();
            match object_type {
                ObjectType::Table => StmtKind::DropTable { tables: names },
                ObjectType::Index => StmtKind::DropIndex {
                    names,
                    concurrently: false,
                },
                other => StmtKind::Other {
                    what: format!("DROP {other}"),
                },
            }
        }
        Ast::Truncate(t) => StmtKind::Truncate {
            tables: t.table_names.iter().map(|t| object_name(&t.name)).collect(),
        },
        Ast::AlterTable(at) => StmtKind::AlterTable {
            table: object_name(&at.name),
            actions: at
                .operations
                .iter()
                .flat_map(|op| alter_action(op, w))
                .collect(),
        },
        Ast::StartTransaction { .. } => StmtKind::Transaction(TransactionControl::Begin),
        Ast::Commit { .. } => StmtKind::Transaction(TransactionControl::Commit),
        Ast::Rollback {
            savepoint: None, ..
        } => StmtKind::Transaction(TransactionControl::Rollback),
        // Rolls back to a savepoint: the transaction goes on.
        Ast::Rollback { .. } => StmtKind::Other {
            what: "ROLLBACK TO".to_string(),
        },
        Ast::CreateTrigger(t) => StmtKind::CreateTrigger {
            name: object_name(&t.name),
            table: object_name(&t.table_name),
        },
        Ast::Call(f) => StmtKind::Call {
            name: object_name(&f.name),
        },
        _ => StmtKind::Other {
            what: String::new(), // filled in from the tokens by the caller
        },
    }
}

/// INSERT, UPDATE, DELETE (and MERGE, which SQLite lacks but the parser knows), at the top level
/// or in a `WITH` clause.
pub(super) fn dml(ast: &Ast, w: &mut Walker<'_, '_>) -> StmtKind {
    match ast {
        Ast::Insert(i) => {
            let table = match &i.table {
                TableObject::TableName(n) => object_name(n),
                TableObject::TableFunction(f) => object_name(&f.name),
                TableObject::TableQuery(q) => {
                    w.query(q);
                    Name::new("")
                }
            };
            let replace = i.replace_into || matches!(i.or, Some(SqliteOnConflict::Replace));
            let plain_values = i.source.as_ref().and_then(|q| match q.body.as_ref() {
                SetExpr::Values(v)
                    if q.with.is_none() && q.order_by.is_none() && q.limit_clause.is_none() =>
                {
                    Some(v)
                }
                _ => None,
            });
            let rows = match (plain_values, &i.source) {
                (Some(values), _) => {
                    for row in &values.rows {
                        w.exprs(row);
                    }
                    Some(values.rows.len())
                }
                (None, Some(q)) => {
                    w.source_query(q);
                    None
                }
                // MySQL's `INSERT ... SET a = 1` is one row.
                (None, None) if !i.assignments.is_empty() => {
                    w.assignments(&i.assignments);
                    Some(1)
                }
                (None, None) => None,
            };
            w.on_insert(i.on.as_ref());
            w.returning(i.returning.as_ref());
            let found = w.take_found();
            let source = match (rows, &i.source) {
                (Some(rows), _) => InsertSource::Values {
                    rows,
                    reads: found.reads,
                },
                (None, Some(_)) => InsertSource::Query(found.into_query()),
                (None, None) => InsertSource::DefaultValues,
            };
            StmtKind::Insert {
                table,
                source,
                replace,
            }
        }
        Ast::Update(u) => {
            let table = target(&u.table.relation, w);
            for join in &u.table.joins {
                w.join(join);
            }
            if let Some(UpdateTableFromKind::BeforeSet(t) | UpdateTableFromKind::AfterSet(t)) =
                &u.from
            {
                w.from(t);
            }
            w.assignments(&u.assignments);
            w.opt_expr(u.selection.as_ref());
            w.returning(u.returning.as_ref());
            w.order_by(&u.order_by);
            w.opt_expr(u.limit.as_ref());
            let filter = u.selection.as_ref().map(|e| filter(e, w.filter_text(ast)));
            StmtKind::Update {
                table,
                reads: w.take_found().reads,
                filter,
            }
        }
        Ast::Delete(d) => {
            let tables = match &d.from {
                FromTable::WithFromKeyword(t) | FromTable::WithoutKeyword(t) => t,
            };
            let table = match (d.tables.first(), tables.first()) {
                (Some(name), _) => object_name(name),
                (None, Some(first)) => target(&first.relation, w),
                (None, None) => Name::new(""),
            };
            w.delete_sources(&d.from, d.using.as_ref());
            w.opt_expr(d.selection.as_ref());
            w.returning(d.returning.as_ref());
            w.order_by(&d.order_by);
            w.opt_expr(d.limit.as_ref());
            let filter = d.selection.as_ref().map(|e| filter(e, w.filter_text(ast)));
            StmtKind::Delete {
                table,
                reads: w.take_found().reads,
                filter,
            }
        }
        Ast::Merge(m) => {
            let table = target(&m.table, w);
            w.source_table_factor(&m.source);
            w.expr(&m.on);
            StmtKind::Merge {
                table,
                source: w.take_found().into_query(),
                by_source: false,
            }
        }
        _ => StmtKind::Other {
            what: String::new(),
        },
    }
}

/// The table a DML writes: a plain name, or (for odd input) whatever the factor reads.
fn target(tf: &TableFactor, w: &mut Walker<'_, '_>) -> Name {
    match tf {
        TableFactor::Table { name, .. } => object_name(name),
        other => {
            w.table_factor(other);
            Name::new("")
        }
    }
}

fn filter(e: &AstExpr, text: Option<String>) -> Filter {
    Filter {
        text: text.unwrap_or_else(|| e.to_string()),
        point_lookup: point_lookup(e),
    }
}

/// `col = constant` / `col IN (constants)` joined by `AND`, and nothing else.
fn point_lookup(e: &AstExpr) -> bool {
    // Walks the `AND` chain with a work list: it is as long as the input.
    let mut work = vec![e];
    while let Some(e) = work.pop() {
        match e {
            AstExpr::BinaryOp {
                left,
                op: BinaryOperator::And,
                right,
            } => {
                work.push(left);
                work.push(right);
            }
            AstExpr::Nested(inner) => work.push(inner),
            AstExpr::BinaryOp {
                left,
                op: BinaryOperator::Eq,
                right,
            } => {
                let ok = (is_column(left) && is_constant(right))
                    || (is_constant(left) && is_column(right));
                if !ok {
                    return false;
                }
            }
            AstExpr::InList {
                expr,
                list,
                negated: false,
            } => {
                if !is_column(expr) || list.is_empty() || !list.iter().all(is_constant) {
                    return false;
                }
            }
            _ => return false,
        }
    }
    true
}

fn is_column(e: &AstExpr) -> bool {
    match e {
        AstExpr::Identifier(_) | AstExpr::CompoundIdentifier(_) => true,
        AstExpr::Nested(inner) => is_column(inner),
        _ => false,
    }
}

fn is_constant(e: &AstExpr) -> bool {
    match e {
        AstExpr::Value(v) => !matches!(v.value, Value::Placeholder(_)),
        AstExpr::UnaryOp {
            op: UnaryOperator::Minus | UnaryOperator::Plus,
            expr,
        } => matches!(expr.as_ref(), AstExpr::Value(_)),
        AstExpr::Nested(inner) => is_constant(inner),
        _ => false,
    }
}

fn column(c: &AstColumn, w: &Walker<'_, '_>) -> ColumnDef {
    let mut def = ColumnDef {
        name: ident(&c.name),
        data_type: type_name(&c.data_type),
        default: None,
        generated: None,
        not_null: false,
        constraints: Vec::new(),
    };
    for opt in &c.options {
        let name = opt.name.as_ref().map(ident);
        match &opt.option {
            ColumnOption::NotNull => def.not_null = true,
            ColumnOption::Default(e) => def.default = Some(expr(e, w)),
            ColumnOption::Generated {
                generated_as,
                generation_expr,
                generation_expr_mode,
                ..
            } => {
                def.generated = Some(match (generation_expr, generation_expr_mode) {
                    (None, _) => Generated::Identity,
                    (Some(_), Some(GeneratedExpressionMode::Stored)) => Generated::Stored,
                    (Some(_), _) if matches!(generated_as, GeneratedAs::ExpStored) => {
                        Generated::Stored
                    }
                    // SQLite's default for a generated column is VIRTUAL.
                    (Some(_), _) => Generated::Virtual,
                })
            }
            ColumnOption::Identity(_) => def.generated = Some(Generated::Identity),
            ColumnOption::PrimaryKey(p) => def.constraints.push(Constraint {
                name: name.or_else(|| p.name.as_ref().map(ident)),
                kind: ConstraintKind::PrimaryKey { using_index: false },
                not_valid: false,
                not_null_columns: Vec::new(),
            }),
            ColumnOption::Unique(u) => def.constraints.push(Constraint {
                name: name.or_else(|| u.name.as_ref().map(ident)),
                kind: ConstraintKind::Unique { using_index: false },
                not_valid: false,
                not_null_columns: Vec::new(),
            }),
            ColumnOption::ForeignKey(f) => def.constraints.push(Constraint {
                name: name.or_else(|| f.name.as_ref().map(ident)),
                kind: ConstraintKind::ForeignKey {
                    references: object_name(&f.foreign_table),
                },
                not_valid: false,
                not_null_columns: Vec::new(),
            }),
            ColumnOption::Check(c) => def.constraints.push(Constraint {
                name: name.or_else(|| c.name.as_ref().map(ident)),
                kind: ConstraintKind::Check,
                not_valid: false,
                not_null_columns: Vec::new(),
            }),
            _ => {}
        }
    }
    def
}

/// An expression summarized on its own (a default, a `USING`): its text as the parser prints it,
/// and what it calls and reads.
fn expr(e: &AstExpr, w: &Walker<'_, '_>) -> Expr {
    let mut sub = w.child();
    sub.expr(e);
    let found = sub.take_found();
    Expr {
        text: e.to_string(),
        calls: found.calls,
        reads: found.reads,
    }
}

fn table_constraint(c: &TableConstraint) -> Option<Constraint> {
    let (name, kind) = match c {
        TableConstraint::Unique(u) => (&u.name, ConstraintKind::Unique { using_index: false }),
        TableConstraint::PrimaryKey(p) => {
            (&p.name, ConstraintKind::PrimaryKey { using_index: false })
        }
        TableConstraint::ForeignKey(f) => (
            &f.name,
            ConstraintKind::ForeignKey {
                references: object_name(&f.foreign_table),
            },
        ),
        TableConstraint::Check(c) => (&c.name, ConstraintKind::Check),
        TableConstraint::PrimaryKeyUsingIndex(c) => {
            (&c.name, ConstraintKind::PrimaryKey { using_index: true })
        }
        TableConstraint::UniqueUsingIndex(c) => {
            (&c.name, ConstraintKind::Unique { using_index: true })
        }
        TableConstraint::Exclude(e) => (&e.name, ConstraintKind::Exclude),
        // MySQL's `INDEX`/`KEY` and `FULLTEXT` in a table body are indexes, not constraints.
        TableConstraint::Index(_) | TableConstraint::FulltextOrSpatial(_) => return None,
    };
    Some(Constraint {
        name: name.as_ref().map(ident),
        kind,
        not_valid: false,
        not_null_columns: Vec::new(),
    })
}

fn alter_action(op: &AlterTableOperation, w: &Walker<'_, '_>) -> Vec<AlterAction> {
    let one = match op {
        AlterTableOperation::AddColumn { column_def, .. } => AlterAction::AddColumn {
            column: column(column_def, w),
        },
        AlterTableOperation::DropColumn { column_names, .. } => {
            return column_names
                .iter()
                .map(|c| AlterAction::DropColumn { column: ident(c) })
                .collect();
        }
        AlterTableOperation::RenameTable { table_name } => AlterAction::RenameTable {
            new_name: match table_name {
                RenameTableNameKind::As(n) | RenameTableNameKind::To(n) => object_name(n),
            },
        },
        AlterTableOperation::RenameColumn {
            old_column_name,
            new_column_name,
        } => AlterAction::RenameColumn {
            from: ident(old_column_name),
            to: ident(new_column_name),
        },
        AlterTableOperation::AddConstraint {
            constraint,
            not_valid,
        } => match table_constraint(constraint) {
            Some(mut c) => {
                c.not_valid = *not_valid;
                AlterAction::AddConstraint(c)
            }
            None => other_action(op),
        },
        AlterTableOperation::DropConstraint { name, .. } => {
            AlterAction::DropConstraint { name: ident(name) }
        }
        AlterTableOperation::AlterColumn {
            column_name,
            op: col_op,
        } => {
            let column = ident(column_name);
            match col_op {
                AlterColumnOperation::SetNotNull => AlterAction::SetNotNull { column },
                AlterColumnOperation::DropNotNull => AlterAction::DropNotNull { column },
                AlterColumnOperation::SetDefault { value } => AlterAction::SetDefault {
                    column,
                    default: expr(value, w),
                },
                AlterColumnOperation::DropDefault => AlterAction::DropDefault { column },
                AlterColumnOperation::SetDataType {
                    data_type, using, ..
                } => AlterAction::AlterColumnType {
                    column,
                    data_type: type_name(data_type),
                    using: using.as_ref().map(|u| expr(u, w)),
                },
                AlterColumnOperation::AddGenerated { .. } => other_action(op),
            }
        }
        _ => other_action(op),
    };
    vec![one]
}

/// The leading upper-case words of an action as the parser prints it (`"OWNER TO"`).
fn other_action(op: &AlterTableOperation) -> AlterAction {
    let printed = op.to_string();
    let what: Vec<&str> = printed
        .split_whitespace()
        .take_while(|w| w.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .take(3)
        .collect();
    AlterAction::Other {
        what: what.join(" "),
    }
}

/// `Other`'s description: the statement's first keyword, and for CREATE/DROP/ALTER its object
/// type with the modifiers before it (`CREATE VIRTUAL TABLE`, `DROP TRIGGER`).
pub(super) fn leading_keywords(keywords: impl IntoIterator<Item = Option<Keyword>>) -> String {
    let mut words = Vec::new();
    let mut keywords = keywords.into_iter();
    let Some(Some(first)) = keywords.next() else {
        return String::new();
    };
    words.push(format!("{first:?}"));
    if matches!(first, Keyword::CREATE | Keyword::DROP | Keyword::ALTER) {
        for kw in keywords {
            let Some(kw) = kw else { break };
            words.push(format!("{kw:?}"));
            if !matches!(
                kw,
                Keyword::TEMP
                    | Keyword::TEMPORARY
                    | Keyword::VIRTUAL
                    | Keyword::UNIQUE
                    | Keyword::OR
                    | Keyword::REPLACE
            ) {
                break;
            }
        }
    }
    words.join(" ")
}
