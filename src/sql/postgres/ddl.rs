//! Table definitions for the PostgreSQL front end: `CREATE TABLE [AS]`, `ALTER TABLE` actions,
//! column definitions, constraints and type names.

use squawk_syntax::SyntaxNode;
use squawk_syntax::ast::{self, AstNode, normalize_name_node};

use super::leading_keywords;
use super::query::{self, Scope};
use crate::sql::{
    AlterAction, ColumnDef, Constraint, ConstraintKind, Generated, StmtKind, TypeName,
};

pub(super) fn create_table(it: &ast::CreateTable, scope: &Scope) -> Option<StmtKind> {
    let table = query::path_name(it.table_name()?.path()?.syntax())?;
    let mut columns = Vec::new();
    let mut constraints = Vec::new();
    for arg in it.table_arg_list().into_iter().flat_map(|list| list.args()) {
        match arg {
            ast::TableArg::Column(column) => {
                if let Some(name) = name(column.name().map(|n| n.syntax().clone())) {
                    let constraints = column.syntax().children().filter_map(ast::Constraint::cast);
                    columns.push(column_def(name, column.ty(), constraints, scope));
                }
            }
            ast::TableArg::TableConstraint(c) => {
                if let Some(c) =
                    ast::Constraint::cast(c.syntax().clone()).and_then(|c| constraint(&c))
                {
                    constraints.push(c);
                }
            }
            ast::TableArg::LikeClause(_) => {}
        }
    }
    Some(StmtKind::CreateTable {
        table,
        columns,
        constraints,
        as_query: None,
        with_no_data: false,
        temporary: matches!(it.persistence(), Some(ast::Persistence::Temp(_))),
        if_not_exists: it.if_not_exists().is_some(),
    })
}

pub(super) fn create_table_as(it: &ast::CreateTableAs, scope: &Scope) -> Option<StmtKind> {
    let table = query::path_name(it.table_name()?.path()?.syntax())?;
    let as_query = it
        .query()
        .map(|q| query::with_sources(q.syntax(), Some(q.syntax()), scope))
        .unwrap_or_default();
    Some(StmtKind::CreateTable {
        table,
        columns: Vec::new(),
        constraints: Vec::new(),
        as_query: Some(as_query),
        with_no_data: matches!(it.data_option(), Some(ast::DataOption::WithNoData(_))),
        temporary: matches!(it.persistence(), Some(ast::Persistence::Temp(_))),
        if_not_exists: it.if_not_exists().is_some(),
    })
}

pub(super) fn alter_table(it: &ast::AlterTable, scope: &Scope) -> Option<StmtKind> {
    let table = query::path_name(
        it.table_relation_name()?
            .table_name_ref()?
            .path_ref()?
            .syntax(),
    )?;
    let actions = it
        .actions()
        .map(|action| alter_action(&action, scope))
        .collect();
    Some(StmtKind::AlterTable { table, actions })
}

fn alter_action(action: &ast::AlterTableAction, scope: &Scope) -> AlterAction {
    use ast::AlterTableAction as A;
    let mapped = match action {
        A::AddColumn(add) => {
            name(add.column_name().map(|n| n.syntax().clone())).map(|name| AlterAction::AddColumn {
                column: column_def(name, add.ty(), add.constraints(), scope),
            })
        }
        A::DropColumn(drop) => name(drop.column_name_ref().map(|n| n.syntax().clone()))
            .map(|column| AlterAction::DropColumn { column }),
        A::AlterColumn(alter) => alter_column(alter, scope),
        A::AddConstraint(add) => add
            .constraint()
            .and_then(|c| constraint(&c))
            .map(AlterAction::AddConstraint),
        A::ValidateConstraint(validate) => constraint_ref(validate.constraint_name_ref())
            .map(|name| AlterAction::ValidateConstraint { name }),
        A::DropConstraint(drop) => constraint_ref(drop.constraint_name_ref())
            .map(|name| AlterAction::DropConstraint { name }),
        A::TableRenameTo(rename) => rename
            .table_name()
            .and_then(|t| t.path())
            .and_then(|p| query::path_name(p.syntax()))
            .map(|new_name| AlterAction::RenameTable { new_name }),
        A::RenameColumn(rename) => match (
            name(rename.column_name_ref().map(|n| n.syntax().clone())),
            name(rename.column_name().map(|n| n.syntax().clone())),
        ) {
            (Some(from), Some(to)) => Some(AlterAction::RenameColumn { from, to }),
            _ => None,
        },
        _ => None,
    };
    mapped.unwrap_or_else(|| AlterAction::Other {
        what: leading_keywords(action.syntax()),
    })
}

/// A column or constraint name; `None` when error recovery left it empty.
fn name(node: Option<SyntaxNode>) -> Option<String> {
    let name = normalize_name_node(&node?);
    (!name.is_empty()).then_some(name)
}

fn alter_column(alter: &ast::AlterColumn, scope: &Scope) -> Option<AlterAction> {
    use ast::AlterColumnOption as O;
    let column = name(alter.column_name_ref().map(|n| n.syntax().clone()))?;
    let option = alter.option()?;
    Some(match option {
        O::SetType(set) => AlterAction::AlterColumnType {
            column,
            data_type: type_name(set.ty().as_ref()),
            using: set
                .using_expr()
                .and_then(|u| u.expr())
                .map(|e| query::expr(&e, scope)),
        },
        O::SetNotNull(_) => AlterAction::SetNotNull { column },
        O::DropNotNull(_) => AlterAction::DropNotNull { column },
        O::SetDefault(set) => AlterAction::SetDefault {
            column,
            default: query::expr(&set.expr()?, scope),
        },
        O::DropDefault(_) => AlterAction::DropDefault { column },
        other => AlterAction::Other {
            what: format!("ALTER COLUMN {}", leading_keywords(other.syntax())),
        },
    })
}

fn constraint_ref(name: Option<ast::ConstraintNameRef>) -> Option<String> {
    let name = name?;
    match name.path_ref() {
        Some(path) => query::path_name(path.syntax()).map(|n| n.name),
        None => self::name(Some(name.syntax().clone())),
    }
}

fn column_def(
    name: String,
    ty: Option<ast::Type>,
    constraints: impl Iterator<Item = ast::Constraint>,
    scope: &Scope,
) -> ColumnDef {
    let mut column = ColumnDef {
        name,
        data_type: type_name(ty.as_ref()),
        default: None,
        generated: None,
        not_null: false,
        constraints: Vec::new(),
    };
    for c in constraints {
        match &c {
            ast::Constraint::DefaultConstraint(default) => {
                column.default = default.expr().map(|e| query::expr(&e, scope));
            }
            ast::Constraint::GeneratedConstraint(generated) => {
                column.generated = generated.generated_as().map(|kind| match kind {
                    ast::GeneratedAs::GeneratedIdentity(_) => Generated::Identity,
                    ast::GeneratedAs::GeneratedStored(stored) => match stored.generated_kind() {
                        Some(ast::GeneratedKind::Stored(_)) => Generated::Stored,
                        // Without STORED, PostgreSQL 18 makes the column virtual (earlier
                        // versions reject it).
                        Some(ast::GeneratedKind::Virtual(_)) | None => Generated::Virtual,
                    },
                });
            }
            ast::Constraint::NotNullConstraint(_) => column.not_null = true,
            ast::Constraint::NullConstraint(_) => {}
            _ => column.constraints.extend(constraint(&c)),
        }
    }
    column
}

/// A constraint that says something about existing rows. `DEFAULT`, `GENERATED` and `NULL`
/// column clauses are not constraints of the view (they are fields of [`ColumnDef`]).
pub(super) fn constraint(c: &ast::Constraint) -> Option<Constraint> {
    use ast::Constraint as C;
    let kind = match c {
        C::CheckConstraint(_) => ConstraintKind::Check,
        C::ForeignKeyConstraint(fk) => ConstraintKind::ForeignKey {
            references: query::path_name(fk.table_name_ref()?.path_ref()?.syntax())?,
        },
        C::ReferencesConstraint(fk) => ConstraintKind::ForeignKey {
            references: query::path_name(fk.table()?.path_ref()?.syntax())?,
        },
        C::UniqueConstraint(unique) => ConstraintKind::Unique {
            using_index: unique.using_index().is_some(),
        },
        C::PrimaryKeyConstraint(pk) => ConstraintKind::PrimaryKey {
            using_index: pk.using_index().is_some(),
        },
        C::ExcludeConstraint(_) => ConstraintKind::Exclude,
        C::NotNullConstraint(_) => ConstraintKind::NotNull,
        C::DefaultConstraint(_) | C::GeneratedConstraint(_) | C::NullConstraint(_) => return None,
    };
    let not_null_columns = match c {
        C::CheckConstraint(check) => check
            .expr()
            .map(|e| not_null_columns(e.syntax()))
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    Some(Constraint {
        name: c
            .constraint_name()
            .map(|n| normalize_name_node(n.syntax()))
            .filter(|n| !n.is_empty()),
        kind,
        not_valid: c.is_not_valid(),
        not_null_columns,
    })
}

/// The columns a CHECK expression proves not null: the conjuncts (`AND`, at any parenthesis
/// depth) that are `col IS NOT NULL` or `col NOTNULL`. Read from the tokens, with a work list.
fn not_null_columns(expr: &SyntaxNode) -> Vec<String> {
    use squawk_syntax::SyntaxKind as K;
    let tokens: Vec<squawk_syntax::SyntaxToken> = expr
        .descendants_with_tokens()
        .filter_map(|e| e.into_token())
        .filter(|t| !t.kind().is_trivia())
        .collect();
    let mut columns: Vec<String> = Vec::new();
    let mut pending: Vec<&[squawk_syntax::SyntaxToken]> = vec![&tokens];
    while let Some(mut part) = pending.pop() {
        // Strip parentheses around the whole part.
        while part.len() >= 2
            && part[0].kind() == K::L_PAREN
            && part[part.len() - 1].kind() == K::R_PAREN
            && closes_at_end(part)
        {
            part = &part[1..part.len() - 1];
        }
        let mut depth = 0i32;
        let mut start = 0;
        let mut split = false;
        for (i, token) in part.iter().enumerate() {
            match token.kind() {
                K::L_PAREN => depth += 1,
                K::R_PAREN => depth -= 1,
                K::AND_KW if depth == 0 => {
                    pending.push(&part[start..i]);
                    start = i + 1;
                    split = true;
                }
                _ => {}
            }
        }
        if split {
            pending.push(&part[start..]);
            continue;
        }
        let kinds: Vec<K> = part.iter().map(|t| t.kind()).collect();
        let column = match kinds.as_slice() {
            [_, K::IS_KW, K::NOT_KW, K::NULL_KW] | [_, K::NOTNULL_KW] => &part[0],
            _ => continue,
        };
        let name = column_token_name(column);
        if !name.is_empty() && !columns.contains(&name) {
            columns.push(name);
        }
    }
    columns
}

/// Whether the `(` that starts `part` is closed by its last token.
fn closes_at_end(part: &[squawk_syntax::SyntaxToken]) -> bool {
    use squawk_syntax::SyntaxKind as K;
    let mut depth = 0i32;
    for (i, token) in part.iter().enumerate() {
        match token.kind() {
            K::L_PAREN => depth += 1,
            K::R_PAREN => {
                depth -= 1;
                if depth == 0 {
                    return i == part.len() - 1;
                }
            }
            _ => {}
        }
    }
    false
}

/// An identifier token as the database compares it: quoted ones as written, others lower-cased.
fn column_token_name(token: &squawk_syntax::SyntaxToken) -> String {
    let text = token.text();
    match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        Some(quoted) => quoted.replace("\"\"", "\""),
        None => text.to_lowercase(),
    }
}

/// A type as the view spells it (see [`TypeName`]). A missing type (a parse error, a column of a
/// typed table) is the empty name.
pub(super) fn type_name(ty: Option<&ast::Type>) -> TypeName {
    let Some(ty) = ty else {
        return TypeName::new("");
    };
    let mut array = false;
    let mut ty = ty.clone();
    // `int[][]` nests array types; unwrap them in a loop, never by recursion.
    while let ast::Type::ArrayType(inner) = &ty {
        array = true;
        match inner.ty() {
            Some(element) => ty = element,
            None => return TypeName::new(""),
        }
    }
    let (name, modifiers) = match &ty {
        ast::Type::ArrayType(_) => (String::new(), Vec::new()),
        ast::Type::PathType(path) => (
            path.path_ref()
                .and_then(|p| query::dotted(p.syntax()))
                .unwrap_or_default(),
            args(path.arg_list()),
        ),
        ast::Type::VarcharType(varchar) => ("varchar".to_owned(), args(varchar.arg_list())),
        ast::Type::CharacterType(character) => (
            // `character`, `char`, `national character` and `nchar` are all `bpchar`.
            if first_keyword_is(character.syntax(), "character") {
                "character".to_owned()
            } else {
                "char".to_owned()
            },
            args(character.arg_list()),
        ),
        ast::Type::BitType(bit) => ("bit".to_owned(), args(bit.arg_list())),
        ast::Type::BitVaryingType(bit) => ("varbit".to_owned(), args(bit.arg_list())),
        ast::Type::DoubleType(_) => ("double precision".to_owned(), Vec::new()),
        ast::Type::TimeType(time) => (
            match time.timezone() {
                Some(ast::Timezone::WithTimezone(_)) => "timetz",
                _ => "time",
            }
            .to_owned(),
            time.literal()
                .map(|l| l.syntax().text().to_string())
                .into_iter()
                .collect(),
        ),
        ast::Type::TimestampType(timestamp) => (
            match timestamp.timezone() {
                Some(ast::Timezone::WithTimezone(_)) => "timestamptz",
                _ => "timestamp",
            }
            .to_owned(),
            timestamp
                .literal()
                .map(|l| l.syntax().text().to_string())
                .into_iter()
                .collect(),
        ),
        ast::Type::IntervalType(interval) => (
            "interval".to_owned(),
            interval
                .literal()
                .map(|l| l.syntax().text().to_string())
                .into_iter()
                .collect(),
        ),
    };
    TypeName {
        name,
        modifiers,
        array,
    }
}

fn first_keyword_is(node: &SyntaxNode, word: &str) -> bool {
    node.children_with_tokens()
        .filter_map(|e| e.into_token())
        .filter(|t| t.kind().is_keyword())
        .find(|t| {
            !t.text().eq_ignore_ascii_case("setof") && !t.text().eq_ignore_ascii_case("national")
        })
        .is_some_and(|t| t.text().eq_ignore_ascii_case(word))
}

/// A type's modifiers (`numeric(10, 2)` has `["10", "2"]`), as written.
fn args(list: Option<ast::ArgList>) -> Vec<String> {
    list.into_iter()
        .flat_map(|list| list.args())
        .map(|arg| arg.syntax().text().to_string().trim().to_owned())
        .collect()
}
