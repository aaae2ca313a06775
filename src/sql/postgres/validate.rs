//! The checks of squawk-syntax's validation pass that the linter reports, run without the pass.
//!
//! squawk-syntax's `Parse::errors()` adds to the parser's errors those of a validation pass that
//! visits every node and token of the tree (about as costly as the parse itself) and re-parses
//! every `LANGUAGE sql` body. Most of its checks catch SQL no migration contains (`SELECT` without
//! a target in a tuple, a `CASE` subject in PL/pgSQL). The ones kept here find mistakes real
//! migrations make, each a statement PostgreSQL rejects: a missing `;` between two statements, a
//! column without a type, `SET name TO` without a value, `UPDATE ... SET` without an assignment,
//! `DO LANGUAGE sql` (or a `DO` given two languages or two bodies); and the syntax errors of `LANGUAGE sql` string bodies. Their messages and ranges are squawk's.
//!
//! The nodes they look at are found by [`super::for_each_of_kind`], a walk of the green tree that
//! gives a cursor only to the nodes found.

use rowan::TextRange;
use squawk_syntax::ast::{self, AstNode};
use squawk_syntax::sql_body::SqlBody;
use squawk_syntax::syntax_error::SyntaxError;
use squawk_syntax::{SyntaxKind, SyntaxNode};

/// The validation errors of the file whose tree is `root`, in squawk's order (then sorted with
/// the parser's by position, as `Parse::errors()` does).
pub(super) fn errors(root: &SyntaxNode) -> Vec<SyntaxError> {
    let mut errors = Vec::new();
    missing_semicolons(root, &mut errors);
    let mut bodies = Vec::new();
    super::for_each_of_kind(
        root,
        &[
            SyntaxKind::CREATE_TABLE,
            SyntaxKind::TO_CONFIG_VALUE,
            SyntaxKind::SET_COLUMN_LIST,
            SyntaxKind::DO,
            SyntaxKind::CREATE_FUNCTION,
            SyntaxKind::CREATE_PROCEDURE,
        ],
        |node| match node.kind() {
            SyntaxKind::CREATE_TABLE => {
                if let Some(table) = ast::CreateTable::cast(node.clone()) {
                    column_types(&table, &mut errors);
                }
            }
            SyntaxKind::TO_CONFIG_VALUE => {
                if let Some(to) = ast::ToConfigValue::cast(node.clone())
                    && to.default_token().is_none()
                    && to.config_values().next().is_none()
                {
                    errors.push(SyntaxError::new(
                        "Expected DEFAULT, string, identifier, number, or list of values",
                        node.text_range(),
                    ));
                }
            }
            SyntaxKind::SET_COLUMN_LIST => {
                if let Some(list) = ast::SetColumnList::cast(node.clone())
                    && list.set_columns().next().is_none()
                {
                    errors.push(SyntaxError::new(
                        "Expected at least one column assignment after SET",
                        node.text_range(),
                    ));
                }
            }
            SyntaxKind::DO => {
                if let Some(block) = ast::Do::cast(node.clone()) {
                    do_options(&block, &mut errors);
                }
            }
            // squawk adds a string body's errors after the whole pass.
            SyntaxKind::CREATE_FUNCTION => {
                bodies.extend(ast::CreateFunction::cast(node.clone()).and_then(|f| f.sql_body()))
            }
            SyntaxKind::CREATE_PROCEDURE => {
                bodies.extend(ast::CreateProcedure::cast(node.clone()).and_then(|p| p.sql_body()))
            }
            _ => {}
        },
    );
    for body in bodies {
        errors.extend(body.errors());
    }
    errors
}

/// Two statements with no `;` between them: PostgreSQL reads them as one and rejects it.
fn missing_semicolons(root: &SyntaxNode, errors: &mut Vec<SyntaxError>) {
    let mut statements = root
        .children()
        .filter(|node| ast::Stmt::can_cast(node.kind()))
        .peekable();
    while let Some(statement) = statements.next() {
        if statement.kind() == SyntaxKind::EMPTY_STMT {
            continue;
        }
        let Some(next) = statements.peek() else {
            continue;
        };
        let ends_with_semicolon = statement
            .last_token()
            .is_some_and(|t| t.kind() == SyntaxKind::SEMICOLON);
        if ends_with_semicolon || next.kind() == SyntaxKind::EMPTY_STMT {
            continue;
        }
        errors.push(SyntaxError::new(
            "Missing semicolon between statements",
            TextRange::empty(statement.text_range().end()),
        ));
    }
}

/// `DO LANGUAGE sql`, and a `DO` with two languages or two bodies.
fn do_options(block: &ast::Do, errors: &mut Vec<SyntaxError>) {
    let mut seen_language = false;
    let mut seen_body = false;
    for part in block.language_and_body() {
        let (seen, range) = part.either(
            |language| {
                if let Some(name) = language.language_name()
                    && name.name == SqlBody::LANGUAGE
                {
                    errors.push(SyntaxError::new(
                        "SQL is not a valid language for DO statements.",
                        name.range,
                    ));
                }
                (&mut seen_language, language.syntax().text_range())
            },
            |body| (&mut seen_body, body.syntax().text_range()),
        );
        if *seen {
            errors.push(SyntaxError::new("Conflicting or redundant options.", range));
        } else {
            *seen = true;
        }
    }
}

/// A column of `CREATE TABLE` without a type (allowed only in `PARTITION OF` and `OF type`).
fn column_types(table: &ast::CreateTable, errors: &mut Vec<SyntaxError>) {
    let Some(args) = table.table_arg_list() else {
        return;
    };
    if table.partition_of().is_some() || table.of_type().is_some() {
        return;
    }
    for arg in args.args() {
        if let ast::TableArg::Column(column) = arg
            && let Some(name) = column.name()
            && column.ty().is_none()
        {
            let end = name.syntax().text_range().end();
            errors.push(SyntaxError::new(
                "Missing column type",
                TextRange::empty(end),
            ));
        }
    }
}
