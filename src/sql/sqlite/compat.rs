//! Where sqlparser's SQLite dialect is narrower than SQLite, at the token level.
//!
//! Two kinds of help, both driven by tokens, never by the text:
//! - Statements whose whole grammar is a few tokens and that sqlparser does not know or knows
//!   only in part (`PRAGMA x = OFF`, `PRAGMA table_info(t)`, `REINDEX`, `DETACH`) are checked
//!   here against SQLite's grammar.
//! - When sqlparser refuses a statement, it is tried once more without the SQLite clauses it does
//!   not know and that change nothing the neutral view keeps: `IF NOT EXISTS` in
//!   `CREATE TRIGGER`, `INDEXED BY name` / `NOT INDEXED` after a table, and type names of several
//!   words (`UNSIGNED BIG INT`), which are passed as one word. Statements the parser accepts are
//!   never rewritten.

use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::{Location, Token, TokenWithSpan, Word};

use super::lex::Tok;

/// The outcome of a statement checked here: its `Other` description, or what is wrong and where.
pub(super) enum Own {
    Ok(&'static str),
    Err { at: usize, message: String },
}

/// Checks the statements whose grammar is handled here; `None` for all others.
pub(super) fn own_grammar(sig: &[&Tok]) -> Option<Own> {
    let first = sig.first()?;
    let mut p = Cursor { sig, at: 1 };
    let result = match first.keyword()? {
        // PRAGMA [schema.]name [= value | (value)]
        Keyword::PRAGMA => p.qualified_name("a pragma name").and_then(|()| {
            if p.eat(&Token::Eq) {
                p.pragma_value()
            } else if p.eat(&Token::LParen) {
                p.pragma_value()
                    .and_then(|()| p.expect(&Token::RParen, "`)`"))
            } else {
                Ok(())
            }
        }),
        // REINDEX [collation | [schema.]table-or-index]
        Keyword::REINDEX => {
            if p.peek().is_some() {
                p.qualified_name("a table, index or collation name")
            } else {
                Ok(())
            }
        }
        // DETACH [DATABASE] schema
        Keyword::DETACH => {
            if p.peek().and_then(|t| t.keyword()) == Some(Keyword::DATABASE) && sig.len() > 2 {
                p.at += 1;
            }
            p.name("a schema name")
        }
        _ => return None,
    };
    let what = match first.keyword() {
        Some(Keyword::PRAGMA) => "PRAGMA",
        Some(Keyword::REINDEX) => "REINDEX",
        _ => "DETACH",
    };
    Some(match result.and_then(|()| p.end()) {
        Ok(()) => Own::Ok(what),
        Err((at, message)) => Own::Err { at, message },
    })
}

struct Cursor<'t, 'a> {
    sig: &'t [&'a Tok],
    at: usize,
}

type Step = Result<(), (usize, String)>;

impl Cursor<'_, '_> {
    fn peek(&self) -> Option<&Tok> {
        self.sig.get(self.at).copied()
    }

    fn fail(&self, expected: &str) -> Step {
        match self.peek() {
            Some(t) => Err((
                t.start,
                format!(
                    "expected {expected}, found {}",
                    super::quote(&t.token.to_string())
                ),
            )),
            None => Err((
                self.sig.last().map_or(0, |t| t.start),
                format!("expected {expected}, found end of statement"),
            )),
        }
    }

    fn eat(&mut self, token: &Token) -> bool {
        if self.peek().is_some_and(|t| &t.token == token) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, token: &Token, what: &str) -> Step {
        if self.eat(token) {
            Ok(())
        } else {
            self.fail(what)
        }
    }

    fn name(&mut self, what: &str) -> Step {
        match self.peek().map(|t| &t.token) {
            Some(Token::Word(_) | Token::SingleQuotedString(_)) => {
                self.at += 1;
                Ok(())
            }
            _ => self.fail(what),
        }
    }

    fn qualified_name(&mut self, what: &str) -> Step {
        self.name(what)?;
        if self.eat(&Token::Period) {
            self.name(what)?;
        }
        Ok(())
    }

    /// A signed number, a name or keyword (`ON`, `WAL`), or a string.
    fn pragma_value(&mut self) -> Step {
        if self.eat(&Token::Minus) || self.eat(&Token::Plus) {
            return match self.peek().map(|t| &t.token) {
                Some(Token::Number(..)) => {
                    self.at += 1;
                    Ok(())
                }
                _ => self.fail("a number"),
            };
        }
        match self.peek().map(|t| &t.token) {
            Some(Token::Number(..) | Token::Word(_) | Token::SingleQuotedString(_)) => {
                self.at += 1;
                Ok(())
            }
            _ => self.fail("a pragma value"),
        }
    }

    fn end(&self) -> Step {
        match self.peek() {
            None => Ok(()),
            Some(_) => self.fail("end of statement"),
        }
    }
}

/// The statement's tokens for the parser, locations encoding byte offsets
/// (`line 1, column byte + 1`).
pub(super) fn parser_tokens(toks: &[Tok]) -> Vec<TokenWithSpan> {
    toks.iter()
        .map(|t| with_span(t.token.clone(), t.start, t.end))
        .collect()
}

fn with_span(token: Token, start: usize, end: usize) -> TokenWithSpan {
    TokenWithSpan::at(
        token,
        Location::new(1, start as u64 + 1),
        Location::new(1, end as u64 + 1),
    )
}

/// The statement's tokens with the SQLite-only clauses left out or joined, or `None` when there
/// is nothing to change.
pub(super) fn rewritten(toks: &[Tok]) -> Option<Vec<TokenWithSpan>> {
    let sig: Vec<usize> = (0..toks.len()).filter(|&i| !toks[i].is_trivia()).collect();
    let mut skip = vec![false; toks.len()];
    // Runs of type-name words (indexes into `sig`) to pass as one word.
    let mut merges: Vec<(usize, usize)> = Vec::new();
    let kw = |n: usize| sig.get(n).and_then(|&i| toks[i].keyword());
    let word = |n: usize, w: &str| {
        sig.get(n).is_some_and(|&i| match &toks[i].token {
            Token::Word(x) => x.quote_style.is_none() && x.value.eq_ignore_ascii_case(w),
            _ => false,
        })
    };

    // CREATE [TEMP] TRIGGER IF NOT EXISTS
    let trigger_at = match (kw(0), kw(1), kw(2)) {
        (Some(Keyword::CREATE), Some(Keyword::TRIGGER), _) => Some(2),
        (
            Some(Keyword::CREATE),
            Some(Keyword::TEMP | Keyword::TEMPORARY),
            Some(Keyword::TRIGGER),
        ) => Some(3),
        _ => None,
    };
    if let Some(at) = trigger_at
        && (kw(at), kw(at + 1), kw(at + 2))
            == (Some(Keyword::IF), Some(Keyword::NOT), Some(Keyword::EXISTS))
    {
        for n in at..at + 3 {
            skip[sig[n]] = true;
        }
    }

    // `INDEXED BY name` and `NOT INDEXED` after a table name: index hints.
    for n in 0..sig.len() {
        if word(n, "INDEXED") && kw(n + 1) == Some(Keyword::BY) && n + 2 < sig.len() {
            for m in n..n + 3 {
                skip[sig[m]] = true;
            }
        } else if kw(n) == Some(Keyword::NOT) && word(n + 1, "INDEXED") {
            skip[sig[n]] = true;
            skip[sig[n + 1]] = true;
        }
    }

    type_name_runs(toks, &sig, &mut merges);

    if !skip.iter().any(|&s| s) && merges.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(toks.len());
    let mut merges = merges.into_iter().peekable();
    let mut i = 0;
    while i < toks.len() {
        if let Some(&(from, to)) = merges.peek()
            && sig[from] == i
        {
            merges.next();
            let words: Vec<&str> = sig[from..=to]
                .iter()
                .filter_map(|&j| match &toks[j].token {
                    Token::Word(w) => Some(w.value.as_str()),
                    _ => None,
                })
                .collect();
            let merged = Token::Word(Word {
                value: words.join(" "),
                quote_style: None,
                keyword: Keyword::NoKeyword,
            });
            out.push(with_span(merged, toks[i].start, toks[sig[to]].end));
            i = sig[to] + 1;
            continue;
        }
        if !skip[i] {
            out.push(with_span(toks[i].token.clone(), toks[i].start, toks[i].end));
        }
        i += 1;
    }
    Some(out)
}

/// Finds type names of two or more words in column definitions of `CREATE TABLE (...)` and
/// `ALTER TABLE ... ADD [COLUMN]`: SQLite takes any run of names as a type.
fn type_name_runs(toks: &[Tok], sig: &[usize], merges: &mut Vec<(usize, usize)>) {
    let kw = |n: usize| sig.get(n).and_then(|&i| toks[i].keyword());
    let tok = |n: usize| sig.get(n).map(|&i| &toks[i].token);
    let mut starts = Vec::new(); // indexes into `sig` where a column name stands
    match (kw(0), kw(1), kw(2)) {
        (Some(Keyword::CREATE), ..) => {
            let table = (1..4).find(|&n| kw(n) == Some(Keyword::TABLE));
            let open =
                table.and_then(|t| (t + 1..sig.len()).find(|&n| tok(n) == Some(&Token::LParen)));
            if let Some(open) = open {
                let mut depth = 0usize;
                for n in open..sig.len() {
                    match tok(n) {
                        Some(Token::LParen) => {
                            depth += 1;
                            if depth == 1 {
                                starts.push(n + 1);
                            }
                        }
                        Some(Token::RParen) => {
                            depth = depth.saturating_sub(1);
                            if depth == 0 {
                                break;
                            }
                        }
                        Some(Token::Comma) if depth == 1 => starts.push(n + 1),
                        _ => {}
                    }
                }
            }
        }
        (Some(Keyword::ALTER), Some(Keyword::TABLE), _) => {
            if let Some(add) = (3..sig.len()).find(|&n| kw(n) == Some(Keyword::ADD)) {
                let name = if kw(add + 1) == Some(Keyword::COLUMN) {
                    add + 2
                } else {
                    add + 1
                };
                starts.push(name);
            }
        }
        _ => {}
    }
    for name in starts {
        // A table constraint, not a column.
        if matches!(
            kw(name),
            Some(
                Keyword::CONSTRAINT
                    | Keyword::PRIMARY
                    | Keyword::UNIQUE
                    | Keyword::CHECK
                    | Keyword::FOREIGN
            )
        ) {
            continue;
        }
        let first = name + 1;
        let mut last = first;
        while matches!(tok(last), Some(Token::Word(_)))
            && !matches!(
                kw(last),
                Some(
                    Keyword::CONSTRAINT
                        | Keyword::PRIMARY
                        | Keyword::NOT
                        | Keyword::NULL
                        | Keyword::UNIQUE
                        | Keyword::CHECK
                        | Keyword::DEFAULT
                        | Keyword::COLLATE
                        | Keyword::REFERENCES
                        | Keyword::GENERATED
                        | Keyword::AS
                )
            )
        {
            last += 1;
        }
        if last >= first + 2 {
            merges.push((first, last - 1));
        }
    }
}
