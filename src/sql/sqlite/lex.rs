//! Tokenizing a whole file with sqlparser's tokenizer and cutting it into statements.
//!
//! sqlparser's own `parse_sql` gives up on the whole file at the first statement it cannot parse,
//! and loses the position of many statements. So the file is tokenized once here, every token
//! gets its byte range, and the token stream is cut at the `;` that end statements; each piece is
//! then parsed on its own (see the parent module). Cutting follows SQLite's own rule
//! (`sqlite3_complete`): parentheses do not matter (an unbalanced `(` must not swallow the rest of
//! the file), and only the body of a `CREATE TRIGGER ... BEGIN ... END` holds `;` of its own.

use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::{Location, Token, Tokenizer, Whitespace};

use super::dialect;
use crate::sql::{Comment, Span, SyntaxIssue};

/// A token and where it is in the file, in bytes.
#[derive(Debug, Clone)]
pub(super) struct Tok {
    pub token: Token,
    pub start: usize,
    pub end: usize,
}

impl Tok {
    pub fn is_trivia(&self) -> bool {
        matches!(self.token, Token::Whitespace(_))
    }

    /// The keyword this token is, if it is one written without quotes.
    pub fn keyword(&self) -> Option<Keyword> {
        match &self.token {
            Token::Word(w) if w.quote_style.is_none() && w.keyword != Keyword::NoKeyword => {
                Some(w.keyword)
            }
            _ => None,
        }
    }
}

/// One statement's share of the token stream.
#[derive(Debug, Clone)]
pub(super) struct Piece {
    /// Index range into [`Lexed::toks`]: from the first to the last significant token, trivia in
    /// between included, the terminating `;` excluded.
    pub toks: std::ops::Range<usize>,
    /// From the first significant token's start to the last one's end.
    pub span: Span,
    /// The tokenizer failed inside this statement; it was already reported and is not parsed.
    pub broken: bool,
}

#[derive(Debug, Default)]
pub(super) struct Lexed {
    pub toks: Vec<Tok>,
    pub pieces: Vec<Piece>,
    pub comments: Vec<Comment>,
    pub issues: Vec<SyntaxIssue>,
}

/// Tokenizes `text` and cuts it into statements. Never fails: a tokenizer error becomes an issue,
/// and tokenizing resumes after it where that makes sense.
pub(super) fn lex(text: &str) -> Lexed {
    let mut out = Lexed::default();
    // Byte positions where the tokenizer failed; the statements holding them are not parsed.
    let mut broken_at = Vec::new();
    let dialect = dialect::SQLITE;
    let mut offset = 0;
    while offset < text.len() {
        let rest = &text[offset..];
        let mut buf = Vec::new();
        let result = Tokenizer::new(&dialect, rest).tokenize_with_location_into_buf(&mut buf);
        let mut cursor = Cursor::new(rest);
        for t in buf {
            let start = cursor.byte;
            let end = cursor.advance_to(t.span.end);
            out.toks.push(Tok {
                token: t.token,
                start: offset + start,
                end: offset + end,
            });
        }
        let Err(err) = result else { break };
        // The failing token starts where the last good one ended.
        let bad = offset + cursor.byte;
        let at = offset + cursor.advance_to(err.location).max(cursor.byte);
        let tail = &text[bad..];
        if tail.starts_with("/*") {
            // SQLite reads an unterminated block comment as a comment up to the end of input.
            out.toks.push(Tok {
                token: Token::Whitespace(Whitespace::MultiLineComment(tail[2..].to_string())),
                start: bad,
                end: text.len(),
            });
            break;
        }
        if tail.starts_with(['\'', '"', '`', '[']) || starts_prefixed_literal(tail) {
            // An unterminated literal or quoted name runs to the end of the file: nothing after
            // it can be recovered.
            broken_at.push(bad);
            out.issues.push(SyntaxIssue {
                span: bad..text.len(),
                message: lower_message(&err.message),
            });
            break;
        }
        // Anything else is one bad character: report it and carry on after it.
        let len = text[at..].chars().next().map_or(0, char::len_utf8);
        broken_at.push(at);
        out.issues.push(SyntaxIssue {
            span: bad.min(at)..at + len,
            message: lower_message(&err.message),
        });
        if len == 0 {
            break;
        }
        offset = at + len;
    }
    cut(&mut out, &broken_at, text);
    out
}

/// `X'..'`, `N'..'` and other one-letter prefixes of a string literal.
fn starts_prefixed_literal(tail: &str) -> bool {
    let mut chars = tail.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic()) && chars.next() == Some('\'')
}

/// The tokenizer's messages start upper-case ("Unterminated string literal").
fn lower_message(message: &str) -> String {
    let one_line: String = message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let mut chars = one_line.trim().trim_end_matches('.').chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => "the tokenizer failed here".to_string(),
    }
}

/// Cuts the token stream into statements and collects comments.
fn cut(out: &mut Lexed, broken_at: &[usize], text: &str) {
    let mut splitter = Splitter::default();
    let mut first: Option<usize> = None;
    let mut last = 0;
    let mut broken = broken_at.iter().copied().peekable();
    for (i, tok) in out.toks.iter().enumerate() {
        if let Token::Whitespace(ws) = &tok.token {
            if let Some(comment) = comment(ws, tok, text) {
                out.comments.push(comment);
            }
            continue;
        }
        if first.is_none() && tok.token == Token::SemiColon {
            // An empty statement; a tokenizer error in it (`1_;`) is reported already.
            while broken.next_if(|&b| b < tok.start).is_some() {}
            continue;
        }
        if first.is_none() {
            splitter = Splitter::default();
        }
        if tok.token == Token::SemiColon && splitter.at_end() {
            if let Some(f) = first.take() {
                out.pieces
                    .push(piece(&out.toks, f, last, tok.start, &mut broken));
            }
            continue;
        }
        splitter.push(tok.keyword());
        first.get_or_insert(i);
        last = i;
    }
    if let Some(f) = first {
        out.pieces
            .push(piece(&out.toks, f, last, usize::MAX, &mut broken));
    }
}

/// The statement from token `first` to token `last`, ended by a `;` at `limit` (or the end of
/// input). It is broken when the tokenizer failed anywhere before `limit` since the previous
/// statement ended.
fn piece(
    toks: &[Tok],
    first: usize,
    last: usize,
    limit: usize,
    broken: &mut std::iter::Peekable<impl Iterator<Item = usize>>,
) -> Piece {
    let mut is_broken = false;
    while broken.next_if(|&b| b < limit).is_some() {
        is_broken = true;
    }
    Piece {
        toks: first..last + 1,
        span: toks[first].start..toks[last].end,
        broken: is_broken,
    }
}

fn comment(ws: &Whitespace, tok: &Tok, text: &str) -> Option<Comment> {
    let source = text.get(tok.start..tok.end)?;
    match ws {
        Whitespace::SingleLineComment { .. } => {
            // The tokenizer keeps a `\r` of a CRLF line end in the comment; it is not part of it.
            let body = source.strip_prefix("--")?.trim_end_matches('\r');
            Some(Comment {
                span: tok.start..tok.start + 2 + body.len(),
                text: body.to_string(),
            })
        }
        Whitespace::MultiLineComment(_) => {
            let body = source.strip_prefix("/*")?;
            let body = body.strip_suffix("*/").unwrap_or(body);
            Some(Comment {
                span: tok.start..tok.end,
                text: body.to_string(),
            })
        }
        _ => None,
    }
}

/// Decides whether a `;` ends the statement it follows. Only `CREATE [TEMP] TRIGGER` bodies
/// hold `;` of their own: from `BEGIN` to the `END` that closes it (a `CASE` has its own `END`).
#[derive(Default)]
struct Splitter {
    /// Leading keywords seen so far (up to three), to recognize `CREATE [TEMP] TRIGGER`.
    seen: usize,
    trigger: bool,
    lead: [Option<Keyword>; 3],
    in_body: bool,
    open_cases: usize,
}

impl Splitter {
    fn push(&mut self, kw: Option<Keyword>) {
        if self.seen < 3 {
            self.lead[self.seen] = kw;
            self.seen += 1;
            self.trigger = matches!(
                self.lead,
                [Some(Keyword::CREATE), Some(Keyword::TRIGGER), _]
                    | [
                        Some(Keyword::CREATE),
                        Some(Keyword::TEMP | Keyword::TEMPORARY),
                        Some(Keyword::TRIGGER)
                    ]
            );
        }
        if !self.trigger {
            return;
        }
        match kw {
            Some(Keyword::CASE) => self.open_cases += 1,
            Some(Keyword::END) if self.open_cases > 0 => self.open_cases -= 1,
            Some(Keyword::END) => self.in_body = false,
            Some(Keyword::BEGIN) if self.open_cases == 0 => self.in_body = true,
            _ => {}
        }
    }

    fn at_end(&self) -> bool {
        !self.in_body
    }
}

/// Converts the tokenizer's line/column locations (columns count chars) into byte offsets, in
/// one pass: locations only move forward.
struct Cursor<'a> {
    text: &'a str,
    byte: usize,
    line: u64,
    column: u64,
}

impl<'a> Cursor<'a> {
    fn new(text: &'a str) -> Self {
        Cursor {
            text,
            byte: 0,
            line: 1,
            column: 1,
        }
    }

    /// Moves to `loc` (never backwards) and returns the byte offset there.
    fn advance_to(&mut self, loc: Location) -> usize {
        let bytes = self.text.as_bytes();
        while self.line < loc.line && self.byte < bytes.len() {
            match memchr_newline(&bytes[self.byte..]) {
                Some(n) => {
                    self.byte += n + 1;
                    self.line += 1;
                    self.column = 1;
                }
                None => {
                    self.byte = bytes.len();
                    break;
                }
            }
        }
        if self.line == loc.line {
            let mut chars = self.text[self.byte..].char_indices();
            let mut moved = 0;
            while self.column < loc.column {
                match chars.next() {
                    Some((_, '\n')) | None => break,
                    Some((i, c)) => {
                        moved = i + c.len_utf8();
                        self.column += 1;
                    }
                }
            }
            self.byte += moved;
        }
        self.byte
    }
}

fn memchr_newline(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == b'\n')
}
