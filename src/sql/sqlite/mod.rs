//! SQLite front end: sqlparser's SQLite dialect to the neutral view of [`crate::sql`].
//!
//! sqlparser fails a whole input on its first bad statement and leaves many statements without a
//! position, so this front end does the framing itself: [`lex`] tokenizes the file (byte ranges
//! for every token, comments, tokenizer errors as issues) and cuts it into statements; each
//! statement is then parsed on its own, so one bad statement is one [`SyntaxIssue`] and the others
//! still parse with exact spans. Statements are handed over one at a time, so memory follows the
//! largest statement, not the file. [`convert`] and [`walk`] map the parsed statement to
//! [`StmtKind`]; [`names`] says how names are normalized (ASCII-lower-cased, quoted or not, as
//! SQLite compares them).
//!
//! The parser gets the statement's tokens with locations that encode byte offsets
//! (`line 1, column byte + 1`), so any position the parser reports maps straight back to the file.
//!
//! Where sqlparser's grammar is narrower than SQLite's, [`compat`] helps at the token level.

mod compat;
mod convert;
mod dialect;
mod lex;
mod names;
mod walk;

#[cfg(test)]
mod tests;

use std::panic::{AssertUnwindSafe, catch_unwind};

use sqlparser::ast::Statement as Ast;
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Token, TokenWithSpan};

use super::{Origin, ParsedFile, Span, Statement, StmtKind, SyntaxIssue};
use lex::{Piece, Tok};
use walk::{Source, Walker};

/// How deep the parser may recurse. SQLite's own limit on expression depth is 1000; real
/// migrations stay far below either, and deeper input gets an issue instead of a crash.
const RECURSION_LIMIT: usize = 200;

/// Statements with more significant tokens than this are parsed on a thread of their own with a
/// stack sized for them: the trees sqlparser builds for chains (`a + b + c ...`, `UNION`) are as
/// deep as the chain is long, and dropping such a tree recurses that deep.
const INLINE_TOKENS: usize = 2_000;
/// Stack per significant token for such a thread; measured need is under 200 bytes per level in
/// debug builds, and a tree is never deeper than its statement has tokens.
const STACK_PER_TOKEN: usize = 1024;
const MAX_STACK: usize = 1 << 30;
const MAX_COPYING_OPERATORS: usize = 1_000;

/// Parses `text` as SQLite SQL. Never panics, whatever the input.
pub fn parse(text: &str) -> ParsedFile {
    let mut lexer = lex::Lexer::new(text);
    let mut statements = Vec::new();
    let mut issues = Vec::new();
    while let Some(piece) = lexer.next_piece() {
        if piece.broken {
            continue; // the tokenizer already reported it
        }
        match parse_piece(text, &piece) {
            Ok(parsed) => statements.extend(parsed),
            Err(issue) => issues.push(issue),
        }
    }
    issues.append(&mut lexer.issues);
    issues.sort_by_key(|issue| issue.span.start);
    // A statement that does not parse is not listed at all: what the parser recovered in is the
    // issue's own text.
    let mut recovered: Vec<Span> = Vec::with_capacity(issues.len());
    for issue in &issues {
        match recovered.last_mut() {
            Some(last) if issue.span.start <= last.end => last.end = last.end.max(issue.span.end),
            _ => recovered.push(issue.span.clone()),
        }
    }
    ParsedFile {
        statements,
        syntax_errors: issues,
        comments: lexer.comments,
        recovered,
    }
}

fn parse_piece(text: &str, piece: &Piece) -> Result<Vec<Statement>, SyntaxIssue> {
    let toks = piece.toks.as_slice();
    let significant = toks.iter().filter(|t| !t.is_trivia()).count();
    let run = || {
        catch_unwind(AssertUnwindSafe(|| {
            parse_statement(text, toks, &piece.span)
        }))
        .unwrap_or_else(|_| {
            Err(SyntaxIssue {
                span: piece.span.clone(),
                message: "the parser failed on this statement (please report it)".into(),
            })
        })
    };
    if significant <= INLINE_TOKENS {
        return run();
    }
    let stack = significant
        .saturating_mul(STACK_PER_TOKEN)
        .saturating_add(8 << 20)
        .min(MAX_STACK);
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .stack_size(stack)
            .spawn_scoped(scope, run)
            .ok()
            .and_then(|handle| handle.join().ok())
            .unwrap_or_else(|| {
                Err(SyntaxIssue {
                    span: piece.span.clone(),
                    message: "statement too large to analyze".into(),
                })
            })
    })
}

/// Parses one statement (its tokens, trivia included) and converts it, with any statements
/// nested in it after it.
fn parse_statement(text: &str, toks: &[Tok], span: &Span) -> Result<Vec<Statement>, SyntaxIssue> {
    let significant: Vec<&Tok> = toks.iter().filter(|t| !t.is_trivia()).collect();
    let top = |kind| Statement {
        span: span.clone(),
        anchor: span.clone(),
        origin: Origin::TopLevel,
        kind,
    };
    match compat::own_grammar(&significant) {
        Some(compat::Own::Ok(kind)) => return Ok(vec![top(kind)]),
        Some(compat::Own::Err { at, message }) => {
            return Err(SyntaxIssue {
                span: at.max(span.start)..span.end,
                message,
            });
        }
        None => {}
    }
    // sqlparser's SQLite dialect copies the left operand of each of these operators, which is
    // quadratic on a chain of them: far beyond anything a migration holds, but not a reason to
    // hang.
    let copying = significant
        .iter()
        .filter(|t| {
            matches!(
                t.keyword(),
                Some(Keyword::GLOB | Keyword::REGEXP | Keyword::MATCH)
            )
        })
        .count();
    if copying > MAX_COPYING_OPERATORS {
        return Err(SyntaxIssue {
            span: span.clone(),
            message: format!(
                "more than {MAX_COPYING_OPERATORS} GLOB, REGEXP or MATCH operators in one statement; it was not analyzed"
            ),
        });
    }
    let ast = match parse_tokens(compat::parser_tokens(toks), span) {
        Ok(ast) => ast,
        // Once more without the SQLite clauses sqlparser does not know; the first error stands
        // if that does not help.
        Err(issue) => match compat::rewritten(toks).map(|tokens| parse_tokens(tokens, span)) {
            Some(Ok(ast)) => ast,
            _ => return Err(issue),
        },
    };
    let source = Source {
        text,
        toks: significant,
        span: span.clone(),
    };
    let mut walker = Walker::new(&source);
    let mut kind = convert::statement(&ast, &mut walker);
    if let StmtKind::Other { what } = &mut kind
        && what.is_empty()
    {
        *what = convert::leading_keywords(source.toks.iter().map(|t| t.keyword()));
    }
    let mut statements = vec![top(kind)];
    statements.extend(walker.nested.into_iter().map(|n| Statement {
        span: n.span,
        anchor: span.clone(),
        origin: Origin::Cte,
        kind: n.kind,
    }));
    Ok(statements)
}

/// Parses exactly one statement from `tokens`.
fn parse_tokens(tokens: Vec<TokenWithSpan>, span: &Span) -> Result<Ast, SyntaxIssue> {
    let mut parser = Parser::new(&dialect::SQLITE)
        .with_recursion_limit(RECURSION_LIMIT)
        .with_tokens_with_locations(tokens);
    let ast = parser
        .parse_statement()
        .map_err(|e| parser_issue(&e, span))?;
    let rest = parser.peek_token_ref();
    if rest.token != Token::EOF {
        let at = walk::location_byte(rest.span.start).unwrap_or(span.start);
        return Err(SyntaxIssue {
            span: at.max(span.start)..span.end,
            message: format!(
                "expected end of statement, found {}",
                quote(&rest.token.to_string())
            ),
        });
    }
    Ok(ast)
}

/// A parser error as an issue: positioned at the token the parser stopped at (to the end of the
/// statement), one line, lower-case, no location in the text (the span has it).
fn parser_issue(e: &ParserError, span: &Span) -> SyntaxIssue {
    let raw = match e {
        ParserError::ParserError(s) | ParserError::TokenizerError(s) => s.as_str(),
        ParserError::RecursionLimitExceeded => {
            return SyntaxIssue {
                span: span.clone(),
                message: "statement nested too deeply to parse".into(),
            };
        }
    };
    // sqlparser appends " at Line: L, Column: C"; our locations are line 1, column byte + 1.
    let (message, at) = match raw.rsplit_once(" at Line: ") {
        Some((message, loc)) => {
            let column = loc
                .split_once(", Column: ")
                .and_then(|(_, c)| c.trim().parse::<usize>().ok());
            (message, column.and_then(|c| c.checked_sub(1)))
        }
        None => (raw, None),
    };
    // "Expected: an expression, found: FROM" reads "expected an expression, found `FROM`".
    let message = lower_first(message);
    let message = match message.rsplit_once(", found: ") {
        Some((expected, found)) => format!("{expected}, found {}", quote(found)),
        None => message,
    };
    let message = match message.strip_prefix("expected: ") {
        Some(rest) => format!("expected {rest}"),
        None => message,
    };
    let start = at
        .filter(|at| (span.start..span.end).contains(at))
        .unwrap_or(span.start);
    SyntaxIssue {
        span: start..span.end,
        message: one_line(&message),
    }
}

/// A token in a message: in backticks, cut short, control characters escaped (a NUL byte shows
/// as `\0`, a line break as `\n`).
pub(super) fn quote(token: &str) -> String {
    if token == "EOF" {
        return "end of statement".into();
    }
    let mut short = String::new();
    for (n, c) in token.chars().enumerate() {
        if n == 40 {
            short.push('…');
            break;
        }
        if c.is_control() {
            short.extend(c.escape_debug());
        } else {
            short.push(c);
        }
    }
    format!("`{short}`")
}

fn one_line(s: &str) -> String {
    let s: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    s.trim().trim_end_matches('.').to_string()
}

fn lower_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => "syntax error".into(),
    }
}
