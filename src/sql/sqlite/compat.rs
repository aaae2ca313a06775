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
use crate::sql::{Name, ReindexTarget, StmtKind};

/// The outcome of a statement checked here: what it is, or what is wrong and where.
pub(super) enum Own {
    Ok(StmtKind),
    Err { at: usize, message: String },
}

/// Checks the statements whose grammar is handled here; `None` for all others.
pub(super) fn own_grammar(sig: &[&Tok]) -> Option<Own> {
    let first = sig.first()?.keyword()?;
    let mut p = Cursor { sig, at: 1 };
    let other = |what: &str| StmtKind::Other { what: what.into() };
    let result = match first {
        // PRAGMA [schema.]name [= value | (value)]
        Keyword::PRAGMA => p
            .qualified_name("a pragma name")
            .and_then(|_| {
                if p.eat(&Token::Eq) {
                    p.pragma_value()
                } else if p.eat(&Token::LParen) {
                    p.pragma_value()
                        .and_then(|()| p.expect(&Token::RParen, "`)`"))
                } else {
                    Ok(())
                }
            })
            .map(|()| other("PRAGMA")),
        // REINDEX [collation | [schema.]table-or-index]
        Keyword::REINDEX => if p.peek().is_some() {
            p.qualified_name("a table, index or collation name")
                .map(ReindexTarget::Named)
        } else {
            Ok(ReindexTarget::Many("DATABASE".into()))
        }
        .map(|target| StmtKind::Reindex {
            target,
            concurrently: false,
        }),
        // DETACH [DATABASE] schema
        Keyword::DETACH => {
            if p.peek_keyword() == Some(Keyword::DATABASE) && sig.len() > 2 {
                p.at += 1;
            }
            p.name("a schema name").map(|_| other("DETACH"))
        }
        // VACUUM [schema] [INTO file]
        Keyword::VACUUM => {
            if p.peek().is_some() && p.peek_keyword() != Some(Keyword::INTO) {
                p.at += 1;
            }
            if p.eat_keyword(Keyword::INTO) {
                p.pragma_value()
            } else {
                Ok(())
            }
            .map(|()| other("VACUUM"))
        }
        // CREATE VIRTUAL TABLE [IF NOT EXISTS] [schema.]name USING module [(arguments)]: the
        // arguments are the module's business, any tokens in balanced parentheses.
        Keyword::CREATE if p.peek_keyword() == Some(Keyword::VIRTUAL) => {
            p.at += 1;
            p.expect_keyword(Keyword::TABLE)
                .and_then(|()| {
                    if p.peek_keyword() == Some(Keyword::IF) {
                        p.at += 1;
                        p.expect_keyword(Keyword::NOT)?;
                        p.expect_keyword(Keyword::EXISTS)?;
                    }
                    let table = p.qualified_name("a table name")?;
                    p.expect_keyword(Keyword::USING)?;
                    p.name("a module name")?;
                    if p.eat(&Token::LParen) {
                        p.balanced()?;
                    }
                    Ok(table)
                })
                .map(|table| StmtKind::CreateTable {
                    table,
                    columns: Vec::new(),
                    constraints: Vec::new(),
                    as_query: None,
                    with_no_data: false,
                    temporary: false,
                    if_not_exists: false,
                })
        }
        _ => return None,
    };
    Some(match result.and_then(|kind| p.end().map(|()| kind)) {
        Ok(kind) => Own::Ok(kind),
        Err((at, message)) => Own::Err { at, message },
    })
}

struct Cursor<'t, 'a> {
    sig: &'t [&'a Tok],
    at: usize,
}

type Step = Result<(), (usize, String)>;

impl<'a> Cursor<'_, 'a> {
    fn peek(&self) -> Option<&'a Tok> {
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

    fn peek_keyword(&self) -> Option<Keyword> {
        self.peek().and_then(|t| t.keyword())
    }

    fn eat_keyword(&mut self, kw: Keyword) -> bool {
        if self.peek_keyword() == Some(kw) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn expect_keyword(&mut self, kw: Keyword) -> Step {
        if self.eat_keyword(kw) {
            Ok(())
        } else {
            self.fail(&format!("{kw:?}"))
        }
    }

    /// Skips to the `)` closing a `(` just eaten, and past it.
    fn balanced(&mut self) -> Step {
        let mut depth = 1usize;
        while let Some(t) = self.peek() {
            self.at += 1;
            match t.token {
                Token::LParen => depth += 1,
                Token::RParen => {
                    depth -= 1;
                    if depth == 0 {
                        return Ok(());
                    }
                }
                _ => {}
            }
        }
        self.fail("`)`")
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

    /// A name (SQLite also takes a string literal where a name goes), normalized.
    fn name(&mut self, what: &str) -> Result<String, (usize, String)> {
        let name = match self.peek().map(|t| &t.token) {
            Some(Token::Word(w)) => w.value.to_ascii_lowercase(),
            Some(Token::SingleQuotedString(s)) => s.to_ascii_lowercase(),
            _ => return self.fail(what).map(|()| String::new()),
        };
        self.at += 1;
        Ok(name)
    }

    fn qualified_name(&mut self, what: &str) -> Result<Name, (usize, String)> {
        let first = self.name(what)?;
        if self.eat(&Token::Period) {
            Ok(Name::qualified(first, self.name(what)?))
        } else {
            Ok(Name::new(first))
        }
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
/// (`line 1, column byte + 1`), with SQLite's spellings of two operators put the way sqlparser
/// spells them: `x ISNULL` as `x IS NULL`, and `a IS [NOT] b` (any `b`: SQLite's null-safe
/// comparison) as `a IS [NOT] DISTINCT FROM b` with the negation flipped. sqlparser's dialect hooks
/// could parse both, but only by copying the left operand, which is quadratic on chains.
///
/// Whitespace and comments are left out: the parser skips them anyway, and only MySQL and
/// Snowflake syntax looks at them.
pub(super) fn parser_tokens(toks: &[Tok]) -> Vec<TokenWithSpan> {
    let mut out = Vec::with_capacity(toks.len());
    let next_sig = |from: usize| (from..toks.len()).find(|&j| !toks[j].is_trivia());
    let mut i = 0;
    while i < toks.len() {
        let t = &toks[i];
        if t.is_trivia() {
            i += 1;
            continue;
        }
        let at_end = |token| with_span(token, t.end, t.end);
        match t.keyword() {
            _ if is_word(&t.token, "ISNULL") => {
                out.push(with_span(Token::make_keyword("IS"), t.start, t.end));
                out.push(at_end(Token::make_keyword("NULL")));
                i += 1;
                continue;
            }
            Some(Keyword::IS) => {
                let after = next_sig(i + 1);
                let negated = after.is_some_and(|j| toks[j].keyword() == Some(Keyword::NOT));
                let operand = if negated {
                    after.and_then(|j| next_sig(j + 1))
                } else {
                    after
                };
                let known = operand.is_some_and(|j| {
                    matches!(
                        toks[j].keyword(),
                        Some(
                            Keyword::NULL
                                | Keyword::TRUE
                                | Keyword::FALSE
                                | Keyword::UNKNOWN
                                | Keyword::DISTINCT
                                | Keyword::JSON
                                | Keyword::NORMALIZED
                                | Keyword::NFC
                                | Keyword::NFD
                                | Keyword::NFKC
                                | Keyword::NFKD
                        )
                    )
                });
                if let (false, Some(operand)) = (known, operand) {
                    let end = if negated {
                        toks[after.unwrap_or(i)].end
                    } else {
                        t.end
                    };
                    out.push(with_span(t.token.clone(), t.start, t.end));
                    if !negated {
                        out.push(with_span(Token::make_keyword("NOT"), end, end));
                    }
                    out.push(with_span(Token::make_keyword("DISTINCT"), end, end));
                    out.push(with_span(Token::make_keyword("FROM"), end, end));
                    i = operand;
                    continue;
                }
            }
            _ => {}
        }
        out.push(with_span(t.token.clone(), t.start, t.end));
        i += 1;
    }
    out
}

fn is_word(token: &Token, word: &str) -> bool {
    matches!(token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word))
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

    // `AS [NOT] MATERIALIZED (` in a CTE: a planner hint.
    for n in 0..sig.len() {
        if kw(n) != Some(Keyword::AS) {
            continue;
        }
        let hint = match (kw(n + 1), kw(n + 2)) {
            (Some(Keyword::MATERIALIZED), _) => 1,
            (Some(Keyword::NOT), Some(Keyword::MATERIALIZED)) => 2,
            _ => 0,
        };
        if hint > 0
            && sig
                .get(n + 1 + hint)
                .is_some_and(|&i| toks[i].token == Token::LParen)
        {
            for m in n + 1..=n + hint {
                skip[sig[m]] = true;
            }
        }
    }

    if kw(0) == Some(Keyword::CREATE) && (1..4).any(|n| kw(n) == Some(Keyword::TABLE)) {
        create_table_clauses(toks, &sig, &mut skip);
    }

    type_name_runs(toks, &sig, &mut merges);

    // `x IN table` is `x IN (SELECT * FROM table)`; the table is read either way.
    let mut wrap: Vec<(usize, usize)> = Vec::new(); // first and last token of the table name
    for n in 0..sig.len() {
        let is_name = |m: usize| {
            sig.get(m)
                .is_some_and(|&i| matches!(toks[i].token, Token::Word(_)))
        };
        let tok = |m: usize| sig.get(m).map(|&i| &toks[i].token);
        if kw(n) == Some(Keyword::IN) && is_name(n + 1) && tok(n + 2) != Some(&Token::LParen) {
            let last = if tok(n + 2) == Some(&Token::Period) && is_name(n + 3) {
                n + 3
            } else {
                n + 1
            };
            if tok(last + 1) != Some(&Token::LParen) {
                wrap.push((sig[n + 1], sig[last]));
            }
        }
    }

    if !skip.iter().any(|&s| s) && merges.is_empty() && wrap.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(toks.len());
    let mut merges = merges.into_iter().peekable();
    let mut wrap = wrap.into_iter().peekable();
    let mut i = 0;
    while i < toks.len() {
        if let Some(&(first, last)) = wrap.peek()
            && first == i
        {
            wrap.next();
            let at = toks[first].start;
            let synthetic = |token| Tok {
                token,
                start: at,
                end: at,
            };
            out.push(synthetic(Token::LParen));
            out.push(synthetic(Token::make_keyword("SELECT")));
            out.push(synthetic(Token::Mul));
            out.push(synthetic(Token::make_keyword("FROM")));
            out.extend(toks[first..=last].iter().cloned());
            let end = toks[last].end;
            out.push(Tok {
                token: Token::RParen,
                start: end,
                end,
            });
            i = last + 1;
            continue;
        }
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
            out.push(Tok {
                token: merged,
                start: toks[i].start,
                end: toks[sig[to]].end,
            });
            i = sig[to] + 1;
            continue;
        }
        if !skip[i] {
            out.push(toks[i].clone());
        }
        i += 1;
    }
    Some(parser_tokens(&out))
}

/// In `CREATE TABLE`: conflict clauses (`ON CONFLICT REPLACE`), which sqlparser takes on columns
/// but not on table constraints, and the table options after the column list (`WITHOUT ROWID,
/// STRICT`), which it takes one at a time but not as a list.
fn create_table_clauses(toks: &[Tok], sig: &[usize], skip: &mut [bool]) {
    let kw = |n: usize| sig.get(n).and_then(|&i| toks[i].keyword());
    let mut depth = 0usize;
    let mut closed = false;
    for n in 0..sig.len() {
        match &toks[sig[n]].token {
            Token::LParen => depth += 1,
            Token::RParen => {
                depth = depth.saturating_sub(1);
                closed |= depth == 0;
            }
            _ => {}
        }
        if kw(n) == Some(Keyword::ON)
            && kw(n + 1) == Some(Keyword::CONFLICT)
            && matches!(
                kw(n + 2),
                Some(
                    Keyword::ROLLBACK
                        | Keyword::ABORT
                        | Keyword::FAIL
                        | Keyword::IGNORE
                        | Keyword::REPLACE
                )
            )
        {
            for m in n..n + 3 {
                skip[sig[m]] = true;
            }
        }
        if closed && depth == 0 && n + 1 < sig.len() {
            let rest = &sig[n + 1..];
            let options = rest.iter().all(|&i| {
                toks[i].token == Token::Comma
                    || matches!(toks[i].keyword(), Some(Keyword::WITHOUT | Keyword::STRICT))
                    || matches!(&toks[i].token, Token::Word(w) if w.value.eq_ignore_ascii_case("ROWID"))
            });
            if options {
                for &i in rest {
                    skip[i] = true;
                }
            }
            break;
        }
    }
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
