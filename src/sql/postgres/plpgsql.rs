//! PL/pgSQL for the PostgreSQL front end: the statements of `DO` bodies (listed, they run now),
//! SQL text run by `EXECUTE` (parsed again), and routine definitions: the statements of function
//! and procedure bodies (kept with the definition, they run when called), their declared
//! volatility and language, and the expression PostgreSQL would inline a call to.

use rowan::{TextRange, WalkEvent};
use squawk_syntax::ast::{self, AstNode, BinOp};
use squawk_syntax::plpgsql::Plpgsql;
use squawk_syntax::sql_body::SqlBody;
use squawk_syntax::{SourceFile, SyntaxKind, SyntaxNode, SyntaxToken};

use super::{Coords, Cx, MAX_BODY_DEPTH, STAND_IN, emit, stmt_range};
use crate::sql::{Expr, Name, Origin, Statement, StmtKind, TransactionControl, Volatility};

/// Lists the statements of a `DO` block's body after it. `cx` is the context of the body's
/// statements. Returns whether the whole body was understood (`body_parsed`).
pub(super) fn walk_do(block: &ast::Do, cx: &Cx<'_>, out: &mut Vec<Statement>) -> bool {
    if cx.depth >= MAX_BODY_DEPTH {
        return false;
    }
    let Some(body) = block.plpgsql() else {
        return false;
    };
    let coords = Coords::Body(&body, cx.coords);
    let body_cx = Cx {
        coords: &coords,
        plpgsql: true,
        depth: cx.depth + 1,
        ..*cx
    };
    let recovered = walk_body(&body.syntax(), &body_cx, out);
    // Every error must sit in a statement that was recovered from its tokens.
    let recovered: Vec<TextRange> = recovered
        .into_iter()
        .map(|r| body.source_range(r))
        .collect();
    body.errors()
        .iter()
        .all(|error| recovered.iter().any(|r| r.contains_range(error.range())))
}

/// Walks a PL/pgSQL tree in source order, emitting the SQL statements it runs. Returns the ranges
/// of the error nodes that were recovered.
fn walk_body(root: &SyntaxNode, cx: &Cx<'_>, out: &mut Vec<Statement>) -> Vec<TextRange> {
    let mut recovered = Vec::new();
    let mut walk = root.preorder();
    while let Some(event) = walk.next() {
        let WalkEvent::Enter(node) = event else {
            continue;
        };
        match node.kind() {
            // Statements that are one SQL statement; a FOR loop's query runs before its body.
            SyntaxKind::PLPGSQL_EXEC_SQL_STMT
            | SyntaxKind::PLPGSQL_PERFORM_STMT
            | SyntaxKind::PLPGSQL_CALL_STMT
            | SyntaxKind::PLPGSQL_DO_STMT
            | SyntaxKind::PLPGSQL_RETURN_QUERY_STMT
            | SyntaxKind::PLPGSQL_OPEN_QUERY
            | SyntaxKind::PLPGSQL_CURSOR_DECL
            | SyntaxKind::PLPGSQL_FOR_QUERY_STMT => {
                if let Some(stmt) = node.children().find(|c| ast::Stmt::can_cast(c.kind())) {
                    emit(&stmt, cx, out);
                }
            }
            SyntaxKind::PLPGSQL_COMMIT_STMT | SyntaxKind::PLPGSQL_ROLLBACK_STMT => {
                if let Some(range) = stmt_range(&node) {
                    let span = cx.coords.map(range);
                    out.push(Statement {
                        anchor: cx.anchor.map_or_else(|| span.clone(), |(s, e)| s..e),
                        span,
                        origin: cx.origin,
                        kind: StmtKind::Transaction(
                            if node.kind() == SyntaxKind::PLPGSQL_COMMIT_STMT {
                                TransactionControl::Commit
                            } else {
                                TransactionControl::Rollback
                            },
                        ),
                    });
                }
            }
            SyntaxKind::PLPGSQL_DYN_EXECUTE_STMT
            | SyntaxKind::PLPGSQL_FOR_DYN_STMT
            | SyntaxKind::PLPGSQL_RETURN_QUERY_EXECUTE_STMT
            | SyntaxKind::PLPGSQL_OPEN_EXECUTE => execute(&node, cx, out),
            SyntaxKind::ERROR
                if node.parent().map(|p| p.kind()) == Some(SyntaxKind::PLPGSQL_BODY) =>
            {
                if recover(&node, cx, out) {
                    recovered.push(node.text_range());
                }
                walk.skip_subtree();
            }
            // Expressions and SQL statements hold no PL/pgSQL statements.
            kind if kind == SyntaxKind::PLPGSQL_EXPR || ast::Stmt::can_cast(kind) => {
                walk.skip_subtree()
            }
            _ => {}
        }
    }
    recovered
}

/// `EXECUTE <text>` (also `FOR ... IN EXECUTE`, `RETURN QUERY EXECUTE`, `OPEN ... FOR EXECUTE`):
/// when the text is known, lists its statements with the span of the PL/pgSQL statement.
fn execute(node: &SyntaxNode, cx: &Cx<'_>, out: &mut Vec<Statement>) {
    if cx.depth >= MAX_BODY_DEPTH {
        return;
    }
    let Some(query) = node.children().find_map(ast::PlpgsqlExpr::cast) else {
        return;
    };
    let Some(sql) = dynamic_sql(&query) else {
        return;
    };
    // `OPEN c FOR EXECUTE` is part of the OPEN statement; a dynamic FOR loop ends where its query
    // (and USING list) ends, not after its body.
    let statement = match node.kind() {
        SyntaxKind::PLPGSQL_OPEN_EXECUTE => node.parent().unwrap_or_else(|| node.clone()),
        _ => node.clone(),
    };
    let Some(mut range) = stmt_range(&statement) else {
        return;
    };
    if node.kind() == SyntaxKind::PLPGSQL_FOR_DYN_STMT {
        let end = node
            .children()
            .filter(|c| {
                matches!(
                    c.kind(),
                    SyntaxKind::PLPGSQL_EXPR | SyntaxKind::PLPGSQL_USING_CLAUSE
                )
            })
            .map(|c| c.text_range().end())
            .max()
            .unwrap_or(range.end());
        range = TextRange::new(range.start(), end.max(range.start()));
    }
    let parse = SourceFile::parse(&sql);
    // Dynamic SQL that does not parse is a fragment assembled at run time: nothing to list.
    if !parse.errors().is_empty() {
        return;
    }
    let coords = Coords::Fixed(cx.coords.map(range));
    let inner = Cx {
        coords: &coords,
        origin: Origin::DoExecute,
        plpgsql: false,
        depth: cx.depth + 1,
        ..*cx
    };
    for stmt in parse.syntax_node().children() {
        emit(&stmt, &inner, out);
    }
}

/// The SQL an `EXECUTE` expression runs, when it can be read: a string literal, `format()` with a
/// literal format string, or a `||` chain with at least one literal. Run-time values become
/// [`STAND_IN`].
fn dynamic_sql(query: &ast::PlpgsqlExpr) -> Option<String> {
    let mut targets = query.target_list()?.targets();
    let expr = targets.next()?.expr()?;
    if targets.next().is_some() || query.from_clause().is_some() {
        return None;
    }
    // A `||` chain nests to the left; flatten it with a stack, never by recursion.
    let mut pieces = Vec::new();
    let mut pending = vec![expr];
    let mut literal_seen = false;
    while let Some(expr) = pending.pop() {
        match expr {
            ast::Expr::BinExpr(ref bin) if is_concat(bin) => {
                if let (Some(lhs), Some(rhs)) = (bin.lhs(), bin.rhs()) {
                    pending.push(rhs);
                    pending.push(lhs);
                }
            }
            ast::Expr::ParenExpr(ref paren) if paren.expr().is_some() => {
                pending.extend(paren.expr());
            }
            ast::Expr::Literal(ref literal) if is_string(literal) => {
                pieces.push(literal.string_value()?);
                literal_seen = true;
            }
            ast::Expr::CallExpr(ref call) if format_string(call).is_some() => {
                pieces.push(expand_format(&format_string(call)?)?);
                literal_seen = true;
            }
            _ => pieces.push(STAND_IN.to_owned()),
        }
    }
    literal_seen.then(|| pieces.concat())
}

fn is_concat(bin: &ast::BinExpr) -> bool {
    match bin.op() {
        Some(BinOp::CustomOp(op)) => op.syntax().text() == "||",
        _ => false,
    }
}

fn is_string(literal: &ast::Literal) -> bool {
    literal.syntax().children_with_tokens().any(|t| {
        matches!(
            t.kind(),
            SyntaxKind::STRING | SyntaxKind::ESC_STRING | SyntaxKind::DOLLAR_QUOTED_STRING
        )
    })
}

/// The format string of `format('...', ...)`.
fn format_string(call: &ast::CallExpr) -> Option<String> {
    let ast::Expr::NameRef(name) = call.expr()? else {
        return None;
    };
    if name.text() != "format" {
        return None;
    }
    let first = call.arg_list()?.args().next()?;
    let literal = first
        .syntax()
        .descendants()
        .find_map(ast::Literal::cast)
        .filter(|l| l.syntax().text_range() == first.syntax().text_range())?;
    is_string(&literal)
        .then(|| literal.string_value())
        .flatten()
}

/// `format()`'s specifiers (`%I`, `%s`, `%L`, `%1$I`, `%-10s`, `%*s`) become [`STAND_IN`];
/// `%%` is `%`. `None` for a format string PostgreSQL would reject.
pub(super) fn expand_format(format: &str) -> Option<String> {
    let mut out = String::with_capacity(format.len());
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'%') {
            chars.next();
            out.push('%');
            continue;
        }
        // [position$][flags][width]type, where width is digits, `*` or `*position$`.
        loop {
            match chars.next()? {
                '0'..='9' | '$' | '-' | '*' => continue,
                's' | 'I' | 'L' => break,
                _ => return None,
            }
        }
        out.push_str(STAND_IN);
    }
    Some(out)
}

/// Recovers a statement squawk's PL/pgSQL grammar rejected because of its `INTO` clause
/// (`SELECT a INTO v FROM t`, `UPDATE ... RETURNING id INTO v`), as PostgreSQL's PL/pgSQL does
/// it: the `INTO [STRICT] target` tokens are taken out and the rest is parsed as SQL. The clause
/// is blanked with spaces so offsets do not move. Returns whether statements were recovered
/// (the rest parsed as SQL without errors).
fn recover(error: &SyntaxNode, cx: &Cx<'_>, out: &mut Vec<Statement>) -> bool {
    let tokens: Vec<SyntaxToken> = error
        .descendants_with_tokens()
        .filter_map(|e| e.into_token())
        .filter(|t| !t.kind().is_trivia())
        .collect();
    let start = error.text_range().start();
    let mut text = error.text().to_string();
    // Without an INTO clause, the statement may still be SQL that squawk's PL/pgSQL grammar does
    // not expect there; parsing it as SQL decides.
    if let Some(clause) = into_clause(&tokens) {
        let blank_from = usize::from(clause.start() - start);
        let blank_to = usize::from(clause.end() - start);
        if blank_to > text.len()
            || !text.is_char_boundary(blank_from)
            || !text.is_char_boundary(blank_to)
        {
            return false;
        }
        text.replace_range(blank_from..blank_to, &" ".repeat(blank_to - blank_from));
    }
    let parse = SourceFile::parse(&text);
    if !parse.errors().is_empty() {
        return false;
    }
    let coords = Coords::Shift(start, cx.coords);
    let inner = Cx {
        coords: &coords,
        ..*cx
    };
    let before = out.len();
    let mut statements = 0;
    for stmt in parse.syntax_node().children() {
        statements += usize::from(ast::Stmt::can_cast(stmt.kind()));
        emit(&stmt, &inner, out);
    }
    // The statement, as written, includes the INTO clause.
    if statements == 1
        && out.len() > before
        && let Some(range) = stmt_range(error)
    {
        out[before].span = cx.coords.map(range);
    }
    out.len() > before
}

/// The range of `INTO [STRICT] target [, target ...]` among a statement's tokens, found the way
/// PL/pgSQL's `make_execsql_stmt` finds it: the first `INTO` that does not follow `INSERT` or
/// `MERGE`, in a statement that does not start with `IMPORT`.
fn into_clause(tokens: &[SyntaxToken]) -> Option<TextRange> {
    if tokens.first()?.kind() == SyntaxKind::IMPORT_KW {
        return None;
    }
    let at = (0..tokens.len()).find(|&i| {
        tokens[i].kind() == SyntaxKind::INTO_KW
            && !(i > 0
                && matches!(
                    tokens[i - 1].kind(),
                    SyntaxKind::INSERT_KW | SyntaxKind::MERGE_KW
                ))
    })?;
    let mut i = at + 1;
    if tokens.get(i)?.kind() == SyntaxKind::STRICT_KW {
        i += 1;
    }
    // One or more (possibly qualified) variable names separated by commas.
    let mut end;
    loop {
        let name = tokens.get(i).filter(|t| is_variable(t))?;
        end = name.text_range().end();
        i += 1;
        while tokens.get(i).map(|t| t.kind()) == Some(SyntaxKind::DOT)
            && tokens.get(i + 1).is_some_and(is_variable)
        {
            end = tokens[i + 1].text_range().end();
            i += 2;
        }
        if tokens.get(i).map(|t| t.kind()) == Some(SyntaxKind::COMMA)
            && tokens.get(i + 1).is_some_and(is_variable)
        {
            i += 1;
            continue;
        }
        break;
    }
    Some(TextRange::new(tokens[at].text_range().start(), end))
}

/// A token that can name a variable. Keywords are accepted: a reserved one would be an error in
/// PostgreSQL too, and what follows a target (`FROM`, `;`, an expression) is never consumed
/// unless a comma asks for another target.
fn is_variable(token: &SyntaxToken) -> bool {
    let kind = token.kind();
    kind == SyntaxKind::IDENT || kind == SyntaxKind::POSITIONAL_PARAM || kind.is_keyword()
}

/// The parts of a `CREATE FUNCTION` / `CREATE PROCEDURE` that say what a call runs.
pub(super) struct RoutineParts {
    pub options: Option<ast::FuncOptionList>,
    pub returns: Option<ast::RetType>,
    pub plpgsql: Option<Plpgsql>,
    pub sql: Option<SqlBody>,
    pub body: Option<ast::RoutineBody>,
}

/// A routine's definition: its body's statements (listed as a DO block's would be, with file
/// spans and the `CREATE` statement as anchor), its declared volatility and language, and the
/// expression a call inlines to, if PostgreSQL would inline it.
pub(super) fn routine(name: Name, procedure: bool, parts: RoutineParts, cx: &Cx<'_>) -> StmtKind {
    let mut volatility = Volatility::Volatile;
    let mut language = None;
    // What stops PostgreSQL's `inline_function`: SECURITY DEFINER, a SET clause.
    let mut not_inlinable = false;
    for option in parts.options.iter().flat_map(|list| list.options()) {
        match option {
            ast::FuncOption::VolatilityFuncOption(v) => {
                volatility = match v {
                    ast::VolatilityFuncOption::Immutable(_) => Volatility::Immutable,
                    ast::VolatilityFuncOption::Stable(_) => Volatility::Stable,
                    ast::VolatilityFuncOption::Volatile(_) => Volatility::Volatile,
                }
            }
            ast::FuncOption::LanguageFuncOption(l) => {
                language = l.language_name().map(|l| l.name.to_ascii_lowercase())
            }
            ast::FuncOption::SecurityDefinerFuncOption(_) | ast::FuncOption::SetFuncOption(_) => {
                not_inlinable = true
            }
            _ => {}
        }
    }
    let language = language.unwrap_or_else(|| "sql".to_owned());
    let returns_set = parts.returns.as_ref().is_some_and(|r| {
        r.table_token().is_some()
            || r.syntax()
                .descendants_with_tokens()
                .any(|t| t.kind() == SyntaxKind::SETOF_KW)
    });
    let inline = (language == "sql" && !not_inlinable && !returns_set && !procedure)
        .then(|| inline_expr(parts.sql.as_ref(), parts.body.as_ref()))
        .flatten();
    StmtKind::CreateFunction {
        name,
        procedure,
        body: routine_body(parts.plpgsql, parts.sql, parts.body, cx),
        volatility,
        language,
        inline,
        returns_set,
    }
}

/// The expression of a body PostgreSQL's `inline_function` accepts: `RETURN expr`, or one
/// `SELECT expr` with nothing else (no `FROM`, `WHERE`, grouping, ordering, `DISTINCT`, `WITH`),
/// as a string body or alone in `BEGIN ATOMIC`.
fn inline_expr(sql: Option<&SqlBody>, body: Option<&ast::RoutineBody>) -> Option<Expr> {
    let scope = super::query::Scope::default();
    let simple_select = |node: &SyntaxNode| -> Option<ast::Expr> {
        let ast::Stmt::Select(select) = ast::Stmt::cast(node.clone())? else {
            return None;
        };
        let extra = select
            .syntax()
            .children()
            .any(|c| !matches!(c.kind(), SyntaxKind::SELECT_CLAUSE));
        let clause = select.select_clause()?;
        if extra || clause.select_quantifier().is_some() {
            return None;
        }
        let mut targets = clause.target_list()?.targets();
        let target = targets.next()?;
        if targets.next().is_some() {
            return None;
        }
        target.expr()
    };
    let expr = match (sql, body) {
        (Some(sql), _) => {
            let root = sql.syntax();
            let mut statements = root.children().filter(|c| ast::Stmt::can_cast(c.kind()));
            let only = statements.next()?;
            if statements.next().is_some() || !sql.errors().is_empty() {
                return None;
            }
            simple_select(&only)?
        }
        (None, Some(ast::RoutineBody::ReturnStmt(ret))) => ret.expr()?,
        (None, Some(ast::RoutineBody::AtomicBody(atomic))) => {
            let mut statements = atomic.routine_body_stmts();
            let only = statements.next()?;
            if statements.next().is_some() {
                return None;
            }
            match only {
                ast::RoutineBodyStmt::ReturnStmt(ret) => ret.expr()?,
                ast::RoutineBodyStmt::Stmt(stmt) => simple_select(stmt.syntax())?,
            }
        }
        (None, None) => return None,
    };
    Some(super::query::expr(&expr, &scope))
}

/// The statements a function or procedure body runs, in PL/pgSQL, `LANGUAGE sql` string bodies
/// and `BEGIN ATOMIC` bodies alike, with file spans and the `CREATE` statement as anchor.
fn routine_body(
    plpgsql: Option<Plpgsql>,
    sql: Option<SqlBody>,
    body: Option<ast::RoutineBody>,
    cx: &Cx<'_>,
) -> Vec<Statement> {
    let mut statements = Vec::new();
    if cx.depth >= MAX_BODY_DEPTH {
        return statements;
    }
    let body_cx = Cx {
        origin: Origin::DoBlock,
        plpgsql: false,
        depth: cx.depth + 1,
        ..*cx
    };
    if let Some(body) = plpgsql {
        let coords = Coords::Body(&body, cx.coords);
        let plpgsql_cx = Cx {
            coords: &coords,
            plpgsql: true,
            ..body_cx
        };
        walk_body(&body.syntax(), &plpgsql_cx, &mut statements);
    } else if let Some(body) = sql {
        let coords = Coords::SqlBody(&body, cx.coords);
        let sql_cx = Cx {
            coords: &coords,
            ..body_cx
        };
        for stmt in body.syntax().children() {
            emit(&stmt, &sql_cx, &mut statements);
        }
    } else if let Some(ast::RoutineBody::AtomicBody(atomic)) = body {
        for stmt in atomic.syntax().children() {
            emit(&stmt, &body_cx, &mut statements);
        }
    }
    statements
}
