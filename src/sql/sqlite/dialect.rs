//! sqlparser's SQLite dialect with the parts of SQLite's expression grammar it lacks.
//!
//! [`Sqlite`] wraps [`SQLiteDialect`] the way sqlparser documents for wrapped dialects: it reports
//! the SQLite dialect's type id (so the parser's own `dialect_of!(SQLiteDialect)` checks still
//! hold), forwards every method the SQLite dialect overrides, and adds:
//! - `NOT GLOB`, `NOT REGEXP`, `NOT MATCH`;
//! - `<<` and `>>`, and `INSERT INTO t AS alias` (for upserts).

use std::any::TypeId;

use sqlparser::ast::{Expr, Statement, UnaryOperator};
use sqlparser::dialect::{Dialect, SQLiteDialect};
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::Token;

#[derive(Debug, Clone, Copy)]
pub(super) struct Sqlite {
    inner: SQLiteDialect,
}

pub(super) const SQLITE: Sqlite = Sqlite {
    inner: SQLiteDialect {},
};

fn keyword(token: &Token) -> Option<Keyword> {
    match token {
        Token::Word(w) if w.quote_style.is_none() => Some(w.keyword),
        _ => None,
    }
}

impl Dialect for Sqlite {
    fn dialect(&self) -> TypeId {
        TypeId::of::<SQLiteDialect>()
    }

    // Forwarded: everything `SQLiteDialect` overrides in sqlparser 0.63.
    fn is_delimited_identifier_start(&self, ch: char) -> bool {
        self.inner.is_delimited_identifier_start(ch)
    }
    fn identifier_quote_style(&self, identifier: &str) -> Option<char> {
        self.inner.identifier_quote_style(identifier)
    }
    fn is_identifier_start(&self, ch: char) -> bool {
        self.inner.is_identifier_start(ch)
    }
    fn is_identifier_part(&self, ch: char) -> bool {
        self.inner.is_identifier_part(ch)
    }
    fn supports_filter_during_aggregation(&self) -> bool {
        self.inner.supports_filter_during_aggregation()
    }
    fn supports_start_transaction_modifier(&self) -> bool {
        self.inner.supports_start_transaction_modifier()
    }
    fn parse_statement(&self, parser: &mut Parser) -> Option<Result<Statement, ParserError>> {
        self.inner.parse_statement(parser)
    }
    fn supports_in_empty_list(&self) -> bool {
        self.inner.supports_in_empty_list()
    }
    fn supports_limit_comma(&self) -> bool {
        self.inner.supports_limit_comma()
    }
    fn supports_asc_desc_in_column_definition(&self) -> bool {
        self.inner.supports_asc_desc_in_column_definition()
    }
    fn supports_dollar_placeholder(&self) -> bool {
        self.inner.supports_dollar_placeholder()
    }
    fn supports_notnull_operator(&self) -> bool {
        self.inner.supports_notnull_operator()
    }
    fn supports_comma_separated_trim(&self) -> bool {
        self.inner.supports_comma_separated_trim()
    }
    fn supports_numeric_literal_underscores(&self) -> bool {
        self.inner.supports_numeric_literal_underscores()
    }

    // Added: SQLite has these, sqlparser's SQLite dialect does not say so.
    fn supports_bitwise_shift_operators(&self) -> bool {
        true
    }
    fn supports_insert_table_alias(&self) -> bool {
        true
    }
    fn supports_window_clause_named_window_reference(&self) -> bool {
        true
    }

    fn parse_infix(
        &self,
        parser: &mut Parser,
        expr: &Expr,
        precedence: u8,
    ) -> Option<Result<Expr, ParserError>> {
        match keyword(&parser.peek_token_ref().token) {
            Some(Keyword::NOT)
                if matches!(
                    keyword(&parser.peek_nth_token_ref(1).token),
                    Some(Keyword::GLOB | Keyword::REGEXP | Keyword::MATCH)
                ) =>
            {
                parser.advance_token();
                let positive = self.inner.parse_infix(parser, expr, precedence)?;
                Some(positive.map(|e| Expr::UnaryOp {
                    op: UnaryOperator::Not,
                    expr: Box::new(e),
                }))
            }
            _ => self.inner.parse_infix(parser, expr, precedence),
        }
    }
}
