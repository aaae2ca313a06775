//! Tokenizing a file with sqlparser's tokenizer and cutting it into statements.
//!
//! sqlparser's own `parse_sql` gives up on the whole file at the first statement it cannot parse,
//! and loses the position of many statements. So the file is tokenized here, every token gets its
//! byte range, and the token stream is cut at the `;` that end statements; each piece is then
//! parsed on its own (see the parent module), one after the other, so that only one statement's
//! tokens are held at a time. Cutting follows SQLite's own rule
//! (`sqlite3_complete`): parentheses do not matter (an unbalanced `(` must not swallow the rest of
//! the file), and only the body of a `CREATE TRIGGER ... BEGIN ... END` holds `;` of its own.

use std::collections::VecDeque;

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

/// One statement's tokens.
#[derive(Debug, Clone)]
pub(super) struct Piece {
    /// From the first to the last significant token, trivia in between included, the
    /// terminating `;` excluded.
    pub toks: Vec<Tok>,
    /// From the first significant token's start to the last one's end.
    pub span: Span,
    /// The tokenizer failed inside this statement; it was already reported and is not parsed.
    pub broken: bool,
}

/// How much text one tokenizer run starts with. The tokenizer only works on whole inputs and
/// keeps every token; running it window by window keeps memory to about one window's tokens (a
/// token costs about 90 bytes, whatever its length) instead of the whole file's.
const WINDOW: usize = 64 * 1024;
/// A tokenizer error this far before the end of its window cannot have been caused by the cut.
const LOOKAHEAD: usize = 16;

/// Tokenizes a file and hands out its statements one by one. Never fails: a tokenizer error
/// becomes an issue, and tokenizing resumes after it where that makes sense.
pub(super) struct Lexer<'t> {
    text: &'t str,
    /// Where the next tokenizer run starts.
    offset: usize,
    window: usize,
    /// Tokens read and not handed out yet.
    queue: VecDeque<Tok>,
    /// Positions where the tokenizer failed; the statements holding them are not parsed.
    broken_at: VecDeque<usize>,
    pub comments: Vec<Comment>,
    pub issues: Vec<SyntaxIssue>,
}

impl<'t> Lexer<'t> {
    pub fn new(text: &'t str) -> Self {
        Lexer {
            text,
            offset: 0,
            window: WINDOW,
            queue: VecDeque::new(),
            broken_at: VecDeque::new(),
            comments: Vec::new(),
            issues: Vec::new(),
        }
    }

    fn next_token(&mut self) -> Option<Tok> {
        while self.queue.is_empty() && self.offset < self.text.len() {
            self.refill();
        }
        self.queue.pop_front()
    }

    /// The next statement, cut where SQLite cuts it.
    pub fn next_piece(&mut self) -> Option<Piece> {
        let mut splitter = Splitter::default();
        let mut toks: Vec<Tok> = Vec::new();
        let mut significant = 0; // length of `toks` up to its last significant token
        while let Some(tok) = self.next_token() {
            if let Token::Whitespace(ws) = &tok.token {
                if let Some(comment) = comment(ws, &tok, self.text) {
                    self.comments.push(comment);
                }
                if !toks.is_empty() {
                    toks.push(tok);
                }
                continue;
            }
            if tok.token == Token::SemiColon && splitter.at_end() {
                if toks.is_empty() {
                    // An empty statement; a tokenizer error in it (`1_;`) is reported already.
                    while self.broken_at.pop_front_if(|b| *b < tok.start).is_some() {}
                    continue;
                }
                toks.truncate(significant);
                return Some(self.piece(toks, tok.start));
            }
            splitter.push(tok.keyword());
            toks.push(tok);
            significant = toks.len();
        }
        toks.truncate(significant);
        (!toks.is_empty()).then(|| self.piece(toks, usize::MAX))
    }

    /// The statement made of `toks`, ended by a `;` at `limit` (or the end of input). It is
    /// broken when the tokenizer failed anywhere before `limit` since the previous statement.
    fn piece(&mut self, toks: Vec<Tok>, limit: usize) -> Piece {
        let mut broken = false;
        while self.broken_at.pop_front_if(|b| *b < limit).is_some() {
            broken = true;
        }
        let span = toks[0].start..toks[toks.len() - 1].end;
        Piece { toks, span, broken }
    }

    /// Tokenizes the next window of text and queues the tokens known to be final: up to the last
    /// `;` (a one-character token: everything before it was read without looking past the
    /// window), or all of them when the window reaches the end of input.
    fn refill(&mut self) {
        let text = self.text;
        let mut end = (self.offset + self.window).min(text.len());
        while !text.is_char_boundary(end) {
            end += 1;
        }
        let at_eof = end == text.len();
        let rest = &text[self.offset..end];
        let mut buf = Vec::new();
        let result =
            Tokenizer::new(&dialect::SQLITE, rest).tokenize_with_location_into_buf(&mut buf);
        let mut cursor = Cursor::new(rest);
        let base = self.offset;
        let mut toks: Vec<Tok> = buf
            .into_iter()
            .map(|t| {
                let start = base + cursor.byte;
                let end = base + cursor.advance_to(t.span.end);
                Tok {
                    token: t.token,
                    start,
                    end,
                }
            })
            .collect();
        // Where the failing token starts (the end of the last good one), and where it failed.
        let failure = result.err().map(|err| {
            (
                base + cursor.byte,
                base + cursor.advance_to(err.location),
                err.message,
            )
        });
        if !at_eof {
            let last_semicolon = toks.iter().rposition(|t| t.token == Token::SemiColon);
            let real_error = failure
                .as_ref()
                .filter(|(bad, at, _)| !runs_to_end(&text[*bad..]) && at + LOOKAHEAD < end);
            match (last_semicolon, real_error) {
                (Some(k), _) => {
                    toks.truncate(k + 1);
                    self.offset = toks[k].end;
                    self.queue.extend(toks);
                    self.window = WINDOW;
                }
                (None, Some(_)) => self.fail(toks, failure),
                (None, None) => self.window = self.window.saturating_mul(2), // read on
            }
            return;
        }
        match failure {
            None => {
                self.offset = text.len();
                self.queue.extend(toks);
            }
            failure => self.fail(toks, failure),
        }
    }

    /// Queues the tokens before a tokenizer error and reports it: the rest of the input when the
    /// failing token runs to the end, or one bad character, after which tokenizing goes on.
    fn fail(&mut self, toks: Vec<Tok>, failure: Option<(usize, usize, String)>) {
        let text = self.text;
        self.queue.extend(toks);
        let Some((bad, at, message)) = failure else {
            return;
        };
        let at = at.max(bad);
        let tail = &text[bad..];
        if let Some(body) = tail.strip_prefix("/*") {
            // SQLite reads an unterminated block comment as a comment up to the end of input.
            self.queue.push_back(Tok {
                token: Token::Whitespace(Whitespace::MultiLineComment(body.to_string())),
                start: bad,
                end: text.len(),
            });
            self.offset = text.len();
            return;
        }
        if runs_to_end(tail) {
            // An unterminated literal or quoted name: nothing after it can be recovered.
            self.broken_at.push_back(bad);
            self.issues.push(SyntaxIssue {
                span: bad..text.len(),
                message: lower_message(&message),
            });
            self.offset = text.len();
            return;
        }
        let len = text[at..].chars().next().map_or(0, char::len_utf8);
        self.broken_at.push_back(at);
        self.issues.push(SyntaxIssue {
            span: bad..at + len,
            message: lower_message(&message),
        });
        self.offset = if len == 0 { text.len() } else { at + len };
    }
}

/// Whether a token starting here runs to the end of input when it is not closed: a string, a
/// quoted name, a block comment, a prefixed literal (`X'..'`).
fn runs_to_end(tail: &str) -> bool {
    let mut chars = tail.chars();
    match chars.next() {
        Some('\'' | '"' | '`' | '[') => true,
        Some('/') => chars.next() == Some('*'),
        Some(c) if c.is_ascii_alphabetic() => chars.next() == Some('\''),
        _ => false,
    }
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
