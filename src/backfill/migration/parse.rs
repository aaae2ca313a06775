//! One file's text into a [`DataMigration`]: the directives give the settings and mark where
//! each section starts, each section's statement is cut out of the text with its line, and the
//! batch statement's `:lower`/`:upper` are rewritten for each database.
//!
//! Everything works on sqlparser's tokens, with their lines, so a `--`, a `;` or a `:lower`
//! inside a string literal or a comment is never mistaken for a directive, the end of a
//! statement or a placeholder, and every error names the line to fix. The steps, in the order
//! their errors are reported: the file name (`V{n}__{name}.sql`); the tokens; one walk over the
//! directives, which fills the settings and the sections' token ranges; the settings and
//! sections every file needs; then the batch, each check, the snapshot and the verification's
//! two queries, each cut out and handed to the `validate` step before the next one.

use std::path::Path;
use std::time::Duration;

use sqlparser::ast::Query;
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer, Whitespace};

use super::identity::{checksum, version_and_name};
use super::validate;
use super::{
    BatchStatement, Check, DEFAULT_BATCH_SIZE, DataMigration, Located, MAX_BATCH_SIZE, RangeQuery,
    Section, Verification,
};
use crate::backfill::error::{Error, ErrorKind, Result};

/// Parses the text of the data migration at `path` (the path names it in errors and gives its
/// version and name).
pub fn parse(path: &Path, text: &str) -> Result<DataMigration> {
    let (version, name) = version_and_name(path)?;
    let parser = Parser::new(path, text)?;
    let outline = parser.outline()?;
    let batch = parser.batch(&outline.batch, &outline.table.value, &outline.key.value)?;
    let checks = outline
        .checks
        .iter()
        .map(|raw| parser.check(raw))
        .collect::<Result<Vec<_>>>()?;
    let snapshot = parser.snapshot(&outline.snapshot)?;
    let verify = match (&outline.expected, &outline.actual) {
        (Some(expected), Some(actual)) => {
            Some(parser.verification(expected, actual, &outline.key.value)?)
        }
        _ => None,
    };
    Ok(DataMigration {
        version,
        name,
        path: path.to_path_buf(),
        checksum: checksum(text.as_bytes()),
        requires: outline.requires,
        table: outline.table,
        key: outline.key,
        batch_size: outline.batch_size,
        pause: outline.pause,
        batch,
        checks,
        snapshot,
        verify,
    })
}

/// One file's text, its tokens and where each token starts: each step reads the sections
/// from it, and reports its errors at a line of `path`.
struct Parser<'a> {
    path: &'a Path,
    text: &'a str,
    tokens: Vec<TokenWithSpan>,
    /// The byte offset of each token, plus the text's length (see [`token_offsets`]).
    offsets: Vec<usize>,
}

/// A placeholder of the batch statement: its token range and which bound it is.
struct Placeholder {
    start: usize,
    end: usize,
    upper: bool,
}

impl<'a> Parser<'a> {
    /// Tokenizes `text`; an unterminated string or comment is an error at its line.
    fn new(path: &'a Path, text: &'a str) -> Result<Self> {
        let tokens = Tokenizer::new(&PostgreSqlDialect {}, text)
            .tokenize_with_location()
            .map_err(|e| {
                Error::at(
                    ErrorKind::Format,
                    path,
                    e.location.line as usize,
                    format!("cannot tokenize: {}", e.message),
                )
            })?;
        let offsets = token_offsets(text, &tokens);
        Ok(Parser {
            path,
            text,
            tokens,
            offsets,
        })
    }

    fn err(&self, line: usize, message: impl Into<String>) -> Error {
        Error::at(ErrorKind::Format, self.path, line, message)
    }

    /// One walk over the tokens: each directive sets a setting or opens a section (which runs
    /// to the next section's directive), and no SQL may come before the first section. Then
    /// every required setting and section must be there.
    fn outline(&self) -> Result<Outline> {
        let mut directives = Directives::new(self.tokens.len());
        for (i, tok) in self.tokens.iter().enumerate() {
            let line = tok.span.start.line as usize;
            if let Some((name, argument)) = directive(&tok.token) {
                directives
                    .add(name, argument, line, i)
                    .map_err(|m| self.err(line, m))?;
            } else if !is_trivia(&tok.token) && directives.sections.is_empty() {
                return Err(self.err(
                    line,
                    "SQL before the first section: start it with `-- @batch`, `-- @check <description>`, `-- @snapshot`, `-- @expected` or `-- @actual`",
                ));
            }
        }
        directives.complete().map_err(|m| self.err(1, m))
    }

    /// The batch section: one statement that uses both bounds, rewritten for each database,
    /// and of the shape a batch must have.
    fn batch(&self, raw: &RawSection, table: &str, key: &str) -> Result<BatchStatement> {
        let (first, last) = self.statement(raw, "@batch")?;
        let section = self.section(raw, first, last);
        let placeholders = self.placeholders(first, last, true, "@batch")?;
        let uses = |upper: bool| placeholders.iter().any(|p| p.upper == upper);
        validate::both_bounds_used(uses(false), uses(true), key)
            .map_err(|m| self.err(section.line, m))?;
        let postgres = self.rewrite(first, last, &placeholders, "$1", "$2");
        let sqlite = self.rewrite(first, last, &placeholders, "?1", "?2");
        validate::batch_statement(&postgres, table, key).map_err(|m| self.err(section.line, m))?;
        Ok(BatchStatement {
            section,
            postgres,
            sqlite,
        })
    }

    /// A `-- @check <description>` section: one query.
    fn check(&self, raw: &RawSection) -> Result<Check> {
        let (section, _) = self.query_section(raw, "@check")?;
        Ok(Check {
            description: raw.argument.clone(),
            section,
        })
    }

    /// The snapshot section: one query whose rows come in a deterministic order.
    fn snapshot(&self, raw: &RawSection) -> Result<Section> {
        let (section, query) = self.query_section(raw, "@snapshot")?;
        validate::deterministic_order(&query).map_err(|m| self.err(section.line, m))?;
        Ok(section)
    }

    /// The verification: `-- @expected` and `-- @actual`, each one query over `(:lower, :upper]`,
    /// returning the key and the same compared columns.
    fn verification(
        &self,
        expected: &RawSection,
        actual: &RawSection,
        key: &str,
    ) -> Result<Verification> {
        let (expected, expected_query) = self.range_query(expected, "@expected", key)?;
        let (actual, actual_query) = self.range_query(actual, "@actual", key)?;
        let ordered = validate::verification_pair(&expected_query, &actual_query).map_err(
            |(on_actual, m)| {
                let line = if on_actual {
                    actual.section.line
                } else {
                    expected.section.line
                };
                self.err(line, m)
            },
        )?;
        Ok(Verification {
            expected,
            actual,
            ordered,
        })
    }

    /// A query of the verification: both bounds used, rewritten for each database.
    fn range_query(
        &self,
        raw: &RawSection,
        name: &str,
        key: &str,
    ) -> Result<(RangeQuery, Box<Query>)> {
        let (first, last) = self.statement(raw, name)?;
        let section = self.section(raw, first, last);
        let placeholders = self.placeholders(first, last, true, name)?;
        let uses = |upper: bool| placeholders.iter().any(|p| p.upper == upper);
        validate::range_bounds_used(uses(false), uses(true), name, key)
            .map_err(|m| self.err(section.line, m))?;
        let postgres = self.rewrite(first, last, &placeholders, "$1", "$2");
        let sqlite = self.rewrite(first, last, &placeholders, "?1", "?2");
        let query =
            validate::verification_query(&postgres, name).map_err(|m| self.err(section.line, m))?;
        Ok((
            RangeQuery {
                section,
                postgres,
                sqlite,
            },
            query,
        ))
    }

    /// A section that holds one query, without placeholders.
    fn query_section(&self, raw: &RawSection, name: &str) -> Result<(Section, Box<Query>)> {
        let (first, last) = self.statement(raw, name)?;
        let section = self.section(raw, first, last);
        self.placeholders(first, last, false, name)?;
        let query = validate::query(&section.sql, name).map_err(|m| self.err(section.line, m))?;
        Ok((section, query))
    }

    /// The single statement of a section: token range `[first, last]` of its non-trivia tokens,
    /// without the terminating `;`.
    fn statement(&self, raw: &RawSection, name: &str) -> Result<(usize, usize)> {
        let mut first = None;
        let mut last = None;
        let mut ended = false;
        for i in raw.start..raw.end {
            let tok = &self.tokens[i];
            if is_trivia(&tok.token) {
                continue;
            }
            if tok.token == Token::SemiColon {
                if first.is_some() {
                    ended = true;
                }
                continue;
            }
            if ended {
                return Err(self.err(
                    tok.span.start.line as usize,
                    format!(
                        "a second statement in the `-- {name}` section of line {}; a section holds one statement",
                        raw.line
                    ),
                ));
            }
            first.get_or_insert(i);
            last = Some(i);
        }
        match (first, last) {
            (Some(f), Some(l)) => Ok((f, l)),
            _ => Err(self.err(
                raw.line,
                format!("the `-- {name}` section has no statement"),
            )),
        }
    }

    /// The statement of tokens `[first, last]` as written.
    fn section(&self, raw: &RawSection, first: usize, last: usize) -> Section {
        Section {
            directive_line: raw.line,
            line: self.tokens[first].span.start.line as usize,
            sql: self.text[self.offsets[first]..self.offsets[last + 1]].to_string(),
        }
    }

    /// Placeholders in `[first, last]`: `:lower`/`:upper` are returned (an error where they are
    /// not `allowed`), anything else that looks like a parameter is an error.
    fn placeholders(
        &self,
        first: usize,
        last: usize,
        allowed: bool,
        name: &str,
    ) -> Result<Vec<Placeholder>> {
        let mut found = Vec::new();
        for i in first..=last {
            let line = self.tokens[i].span.start.line as usize;
            if let Token::Placeholder(p) = &self.tokens[i].token {
                return Err(self.err(
                    line,
                    format!("`{p}`: write the batch bounds as `:lower` and `:upper` (they are rewritten for each database)"),
                ));
            }
            let Some(word) = self.named_placeholder(i) else {
                continue;
            };
            let upper = match word {
                "lower" => false,
                "upper" => true,
                other => {
                    return Err(self.err(
                        line,
                        format!("unknown placeholder `:{other}`; the batch bounds are `:lower` and `:upper`"),
                    ));
                }
            };
            if !allowed {
                return Err(self.err(
                    line,
                    format!(
                        "`:{word}` in the `-- {name}` section: placeholders belong to the `-- @batch`, `-- @expected` and `-- @actual` statements only"
                    ),
                ));
            }
            found.push(Placeholder {
                start: i,
                end: i + 1,
                upper,
            });
        }
        Ok(found)
    }

    /// The name of the placeholder `:name` that starts at token `i`, if one does: a colon
    /// followed at once by an unquoted word.
    fn named_placeholder(&self, i: usize) -> Option<&str> {
        if self.tokens[i].token != Token::Colon {
            return None;
        }
        let Token::Word(word) = &self.tokens.get(i + 1)?.token else {
            return None;
        };
        // Adjacent only: `a[1 : n]` slices and `x :: int` casts are not placeholders.
        if self.offsets[i + 1] != self.offsets[i] + 1 || word.quote_style.is_some() {
            return None;
        }
        Some(word.value.as_str())
    }

    /// The statement text from token `first` to `last` with each placeholder replaced.
    fn rewrite(
        &self,
        first: usize,
        last: usize,
        placeholders: &[Placeholder],
        lower: &str,
        upper: &str,
    ) -> String {
        let mut out = String::new();
        let mut at = self.offsets[first];
        for p in placeholders {
            out.push_str(&self.text[at..self.offsets[p.start]]);
            out.push_str(if p.upper { upper } else { lower });
            at = self.offsets[p.end + 1];
        }
        out.push_str(&self.text[at..self.offsets[last + 1]]);
        out
    }
}

const SETTINGS: [&str; 5] = ["requires", "table", "key", "batch-size", "pause"];

/// What the walk over the directives has found so far.
struct Directives {
    settings: Settings,
    sections: Vec<RawSection>,
    /// The number of tokens: where the last section's body ends.
    token_count: usize,
}

/// A file with every required setting and section (defaults filled in), the sections not yet
/// cut out.
struct Outline {
    requires: Located<u64>,
    table: Located<String>,
    key: Located<String>,
    batch_size: Located<u64>,
    pause: Located<Duration>,
    batch: RawSection,
    checks: Vec<RawSection>,
    snapshot: RawSection,
    expected: Option<RawSection>,
    actual: Option<RawSection>,
}

impl Directives {
    fn new(token_count: usize) -> Self {
        Directives {
            settings: Settings::default(),
            sections: Vec::new(),
            token_count,
        }
    }

    /// Takes the directive `-- @{name} {argument}`, token `token` on `line`.
    fn add(
        &mut self,
        name: &str,
        argument: &str,
        line: usize,
        token: usize,
    ) -> std::result::Result<(), String> {
        if let Some(kind) = SectionKind::of_directive(name) {
            self.open_section(kind, name, argument, line, token)
        } else if SETTINGS.contains(&name) {
            if let Some(first) = self.sections.first() {
                return Err(format!(
                    "`-- @{name}` is a setting: settings go at the top, before the first section (line {})",
                    first.line
                ));
            }
            self.settings.set(name, argument, line)
        } else {
            Err(format!(
                "unknown directive `@{name}`; known: {}, @batch, @check, @snapshot, @expected, @actual",
                SETTINGS
                    .iter()
                    .map(|s| format!("@{s}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        }
    }

    /// Ends the open section, if any, at `token` and opens a `kind` section after it. Only a
    /// check takes an argument (its description, required), and only checks may repeat.
    fn open_section(
        &mut self,
        kind: SectionKind,
        name: &str,
        argument: &str,
        line: usize,
        token: usize,
    ) -> std::result::Result<(), String> {
        if let Some(open) = self.sections.last_mut() {
            open.end = token;
        }
        if kind != SectionKind::Check && !argument.is_empty() {
            return Err(format!("`-- @{name}` takes no value, found `{argument}`"));
        }
        if kind == SectionKind::Check && argument.is_empty() {
            return Err(
                "`-- @check` needs a description of what it verifies, e.g. `-- @check every count matches`".into(),
            );
        }
        if kind != SectionKind::Check
            && let Some(previous) = self.sections.iter().find(|s| s.kind == kind)
        {
            return Err(format!(
                "a second `-- @{name}` section (the first is at line {}); a data migration has one",
                previous.line
            ));
        }
        self.sections.push(RawSection {
            kind,
            line,
            argument: argument.to_string(),
            start: token + 1,
            end: self.token_count,
        });
        Ok(())
    }

    /// The outline of a complete file, or what is missing first (settings in their documented
    /// order, then the batch, then the snapshot).
    fn complete(self) -> std::result::Result<Outline, String> {
        let missing = |what: &str, example: &str| format!("missing `-- @{what}` ({example})");
        let Settings {
            requires,
            table,
            key,
            batch_size,
            pause,
        } = self.settings;
        let requires = requires.ok_or_else(|| {
            missing(
                "requires",
                "the schema version it needs, e.g. `-- @requires 4`",
            )
        })?;
        let table =
            table.ok_or_else(|| missing("table", "the table to walk, e.g. `-- @table users`"))?;
        let key = key.ok_or_else(|| missing("key", "its batch key column, e.g. `-- @key id`"))?;
        let mut batch = None;
        let mut checks = Vec::new();
        let mut snapshot = None;
        let (mut expected, mut actual) = (None, None);
        for section in self.sections {
            match section.kind {
                SectionKind::Batch => batch = Some(section),
                SectionKind::Check => checks.push(section),
                SectionKind::Snapshot => snapshot = Some(section),
                SectionKind::Expected => expected = Some(section),
                SectionKind::Actual => actual = Some(section),
            }
        }
        let batch =
            batch.ok_or_else(|| missing("batch", "followed by the statement run per batch"))?;
        let snapshot = snapshot
            .ok_or_else(|| missing("snapshot", "followed by the query whose rows are snapshot"))?;
        match (&expected, &actual) {
            (Some(e), None) => {
                return Err(format!(
                    "`-- @expected` (line {}) has no `-- @actual` section: a verification compares the two queries",
                    e.line
                ));
            }
            (None, Some(a)) => {
                return Err(format!(
                    "`-- @actual` (line {}) has no `-- @expected` section: a verification compares the two queries",
                    a.line
                ));
            }
            _ => {}
        }
        Ok(Outline {
            requires,
            table,
            key,
            batch_size: batch_size.unwrap_or(Located {
                value: DEFAULT_BATCH_SIZE,
                line: 0,
            }),
            pause: pause.unwrap_or(Located {
                value: Duration::ZERO,
                line: 0,
            }),
            batch,
            checks,
            snapshot,
            expected,
            actual,
        })
    }
}

#[derive(Default)]
struct Settings {
    requires: Option<Located<u64>>,
    table: Option<Located<String>>,
    key: Option<Located<String>>,
    batch_size: Option<Located<u64>>,
    pause: Option<Located<Duration>>,
}

impl Settings {
    fn set(
        &mut self,
        directive: &str,
        argument: &str,
        line: usize,
    ) -> std::result::Result<(), String> {
        fn put<T>(
            slot: &mut Option<Located<T>>,
            value: T,
            line: usize,
            directive: &str,
        ) -> std::result::Result<(), String> {
            if let Some(previous) = slot {
                return Err(format!(
                    "`-- @{directive}` is already set at line {}",
                    previous.line
                ));
            }
            *slot = Some(Located { value, line });
            Ok(())
        }
        if argument.is_empty() {
            return Err(format!("`-- @{directive}` needs a value"));
        }
        match directive {
            "requires" => {
                let v = argument
                    .strip_prefix('V')
                    .unwrap_or(argument)
                    .parse::<u64>()
                    .ok()
                    .filter(|v| *v > 0)
                    .ok_or_else(|| format!("`-- @requires` takes a schema version (a positive integer), found `{argument}`"))?;
                put(&mut self.requires, v, line, directive)
            }
            "table" => put(
                &mut self.table,
                identifier(argument, directive)?,
                line,
                directive,
            ),
            "key" => put(
                &mut self.key,
                identifier(argument, directive)?,
                line,
                directive,
            ),
            "batch-size" => {
                let v = argument
                    .replace('_', "")
                    .parse::<u64>()
                    .ok()
                    .filter(|v| (1..=MAX_BATCH_SIZE).contains(v))
                    .ok_or_else(|| {
                        format!("`-- @batch-size` takes a number of rows from 1 to {MAX_BATCH_SIZE}, found `{argument}`")
                    })?;
                put(&mut self.batch_size, v, line, directive)
            }
            "pause" => put(&mut self.pause, parse_duration(argument)?, line, directive),
            _ => Err(format!("unknown setting `@{directive}`")),
        }
    }
}

/// `0`, `250ms`, `1s`, `1.5s`, `2m`: how long to sleep between batches.
pub fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let bad = || format!("`{text}` is not a duration: write e.g. `0`, `10ms`, `1s` or `1.5s`");
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit.trim() {
        "ms" => number / 1000.0,
        "s" => number,
        "m" | "min" => number * 60.0,
        _ => return Err(bad()),
    };
    // An hour between batches is a typo, not pacing; it also keeps the float conversion finite.
    if !(0.0..=3600.0).contains(&seconds) {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// A table or column name as a directive gives it: one identifier, unquoted (folded to lower
/// case, like SQL) or double-quoted (kept as written).
fn identifier(text: &str, directive: &str) -> std::result::Result<String, String> {
    let bad = || {
        format!(
            "`-- @{directive}` takes one name (quote it with \"...\" if needed), found `{text}`"
        )
    };
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, text)
        .tokenize()
        .map_err(|_| bad())?;
    let mut words = tokens.iter().filter(|t| !matches!(t, Token::Whitespace(_)));
    match (words.next(), words.next()) {
        (Some(Token::Word(w)), None) if w.quote_style.is_none() => Ok(w.value.to_lowercase()),
        (Some(Token::Word(w)), None) if w.quote_style == Some('"') && !w.value.is_empty() => {
            Ok(w.value.clone())
        }
        _ => Err(bad()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SectionKind {
    Batch,
    Check,
    Snapshot,
    Expected,
    Actual,
}

impl SectionKind {
    /// The section a directive opens, if it opens one.
    fn of_directive(name: &str) -> Option<Self> {
        match name {
            "batch" => Some(SectionKind::Batch),
            "check" => Some(SectionKind::Check),
            "snapshot" => Some(SectionKind::Snapshot),
            "expected" => Some(SectionKind::Expected),
            "actual" => Some(SectionKind::Actual),
            _ => None,
        }
    }
}

/// A section as the walk over the directives finds it, before its statement is cut out.
struct RawSection {
    kind: SectionKind,
    /// Line of the directive.
    line: usize,
    /// The directive's argument (a check's description).
    argument: String,
    /// Token range of the section's body.
    start: usize,
    end: usize,
}

/// `-- @name value` → `("name", "value")`.
fn directive(token: &Token) -> Option<(&str, &str)> {
    let Token::Whitespace(Whitespace::SingleLineComment { comment, prefix }) = token else {
        return None;
    };
    if prefix != "--" {
        return None;
    }
    let rest = comment.trim().strip_prefix('@')?;
    Some(match rest.split_once(char::is_whitespace) {
        Some((name, argument)) => (name, argument.trim()),
        None => (rest, ""),
    })
}

fn is_trivia(token: &Token) -> bool {
    matches!(token, Token::Whitespace(_) | Token::EOF)
}

/// The byte offset where each token starts, plus the text's length at the end. The tokenizer
/// reports 1-based line and character columns; tokens are contiguous, so a token ends where
/// the next one starts.
fn token_offsets(text: &str, tokens: &[TokenWithSpan]) -> Vec<usize> {
    let mut line_starts = vec![0];
    line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
    let mut offsets = Vec::with_capacity(tokens.len() + 1);
    for tok in tokens {
        let loc = tok.span.start;
        let offset = (loc.line as usize)
            .checked_sub(1)
            .and_then(|l| line_starts.get(l))
            .map(|&start| {
                let column = (loc.column as usize).saturating_sub(1);
                text[start..]
                    .char_indices()
                    .nth(column)
                    .map_or(text.len(), |(i, _)| start + i)
            })
            .unwrap_or(text.len());
        offsets.push(offset);
    }
    offsets.push(text.len());
    offsets
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backfill::migration::example::{GOOD, error, good_with, parse_text};

    #[test]
    fn parses_the_documented_example() {
        let m = parse_text(GOOD).unwrap();
        assert_eq!((m.version, m.name.as_str()), (3, "fill_posts"));
        assert_eq!(m.id(), "V3__fill_posts");
        assert_eq!(m.requires, Located { value: 4, line: 2 });
        assert_eq!(m.table.value, "users");
        assert_eq!(
            m.key,
            Located {
                value: "id".into(),
                line: 4
            }
        );
        assert_eq!(m.batch_size.value, 500);
        assert_eq!(m.pause.value, Duration::from_millis(10));
        assert_eq!(m.batch.section.directive_line, 8);
        assert_eq!(m.batch.section.line, 9);
        assert!(m.batch.section.sql.starts_with("UPDATE users SET"));
        assert!(
            m.batch.section.sql.ends_with(":upper"),
            "{}",
            m.batch.section.sql
        );
        assert!(
            m.batch.postgres.ends_with("WHERE id > $1 AND id <= $2"),
            "{}",
            m.batch.postgres
        );
        assert!(
            m.batch.sqlite.ends_with("WHERE id > ?1 AND id <= ?2"),
            "{}",
            m.batch.sqlite
        );
        assert_eq!(m.checks.len(), 1);
        assert_eq!(m.checks[0].description, "every posts_count matches");
        assert_eq!(m.checks[0].section.line, 13);
        assert_eq!(
            m.snapshot.sql,
            "SELECT id, posts_count FROM users ORDER BY id"
        );
        assert_eq!(m.checksum, checksum(GOOD.as_bytes()));
        assert_eq!(m.checksum.len(), 64);
    }

    #[test]
    fn defaults_and_quoted_names() {
        let text = GOOD
            .replace("-- @batch-size 500\n", "")
            .replace("-- @pause 10ms\n", "")
            .replace("-- @table users", "-- @table \"Users\"")
            .replace("UPDATE users", "UPDATE \"Users\"");
        let m = parse_text(&text).unwrap();
        assert_eq!(
            m.batch_size,
            Located {
                value: DEFAULT_BATCH_SIZE,
                line: 0
            }
        );
        assert_eq!(m.pause.value, Duration::ZERO);
        assert_eq!(m.table.value, "Users");
    }

    #[test]
    fn placeholders_in_strings_and_comments_are_not_placeholders() {
        let text = good_with(
            "WHERE id > :lower AND id <= :upper;",
            "WHERE id > :lower -- :also_not; here\n AND id <= :upper AND ':nope; x' <> 'y';",
        );
        let m = parse_text(&text).unwrap();
        assert!(
            m.batch.postgres.contains("':nope; x'"),
            "{}",
            m.batch.postgres
        );
        assert!(m.batch.postgres.contains("-- :also_not; here"));
        assert!(
            m.batch
                .postgres
                .contains("id > $1 -- :also_not; here\n AND id <= $2"),
            "{}",
            m.batch.postgres
        );
    }

    #[test]
    fn non_ascii_text_keeps_offsets_right() {
        let text = good_with(
            "SET posts_count =",
            "SET /* zählt Beiträge ✓ */ posts_count =",
        );
        let m = parse_text(&text).unwrap();
        assert!(m.batch.postgres.contains("✓ */ posts_count"));
        assert!(
            m.batch.postgres.ends_with("id > $1 AND id <= $2"),
            "{}",
            m.batch.postgres
        );
    }

    #[test]
    fn casts_are_not_placeholders() {
        let text = good_with("SET posts_count = (", "SET posts_count = 0::bigint + (");
        let m = parse_text(&text).unwrap();
        assert!(m.batch.postgres.contains("0::bigint"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("ms").is_err());
        assert!(parse_duration("1..2s").is_err());
        assert!(parse_duration("5h").is_err());
        assert!(parse_duration("99999m").is_err());
    }

    #[test]
    fn unknown_directive() {
        let e = error(&good_with("-- @pause 10ms", "-- @paus 10ms"));
        assert!(
            e.starts_with("data-migrations/V3__fill_posts.sql:6: unknown directive `@paus`"),
            "{e}"
        );
    }

    #[test]
    fn missing_settings_and_sections() {
        let e = error(&good_with("-- @requires 4\n", ""));
        assert!(e.contains(":1: missing `-- @requires`"), "{e}");
        let e = error(&good_with("-- @key id\n", ""));
        assert!(e.contains("missing `-- @key`"), "{e}");
        let e = error(&GOOD.replace(
            "-- @snapshot\nSELECT id, posts_count FROM users ORDER BY id;\n",
            "",
        ));
        assert!(e.contains("missing `-- @snapshot`"), "{e}");
        let e = error(&good_with("-- @batch\n", "-- @check nothing\n"));
        assert!(e.contains("missing `-- @batch`"), "{e}");
    }

    #[test]
    fn bad_values() {
        let e = error(&good_with("-- @batch-size 500", "-- @batch-size many"));
        assert!(
            e.contains(":5: `-- @batch-size` takes a number of rows"),
            "{e}"
        );
        let e = error(&good_with("-- @batch-size 500", "-- @batch-size 0"));
        assert!(e.contains(":5:"), "{e}");
        let e = error(&good_with("-- @requires 4", "-- @requires four"));
        assert!(
            e.contains(":2: `-- @requires` takes a schema version"),
            "{e}"
        );
        let e = error(&good_with("-- @table users", "-- @table users, posts"));
        assert!(e.contains(":3: `-- @table` takes one name"), "{e}");
        let e = error(&good_with("-- @key id", "-- @key"));
        assert!(e.contains(":4: `-- @key` needs a value"), "{e}");
        let e = error(&good_with(
            "-- @pause 10ms",
            "-- @pause 10ms\n-- @pause 20ms",
        ));
        assert!(
            e.contains(":7: `-- @pause` is already set at line 6"),
            "{e}"
        );
    }

    #[test]
    fn setting_after_a_section() {
        let e = error(&good_with(
            "-- @snapshot",
            "-- @batch-size 10\n-- @snapshot",
        ));
        assert!(
            e.contains("`-- @batch-size` is a setting: settings go at the top"),
            "{e}"
        );
    }

    #[test]
    fn sql_before_the_first_section() {
        let e = error(&good_with(
            "-- @pause 10ms\n",
            "-- @pause 10ms\nSELECT 1;\n",
        ));
        assert!(e.contains(":7: SQL before the first section"), "{e}");
    }

    #[test]
    fn two_statements_in_a_section() {
        let e = error(&good_with(
            "id <= :upper;",
            "id <= :upper;\nDELETE FROM posts;",
        ));
        assert!(
            e.contains(":11: a second statement in the `-- @batch` section of line 8"),
            "{e}"
        );
    }

    #[test]
    fn two_batch_sections() {
        let e = error(&good_with(
            "-- @snapshot",
            "-- @batch\nUPDATE users SET x = 1 WHERE id > :lower AND id <= :upper;\n-- @snapshot",
        ));
        assert!(
            e.contains("a second `-- @batch` section (the first is at line 8)"),
            "{e}"
        );
    }

    #[test]
    fn empty_section() {
        let e = error(&good_with(
            "-- @snapshot\nSELECT id, posts_count FROM users ORDER BY id;",
            "-- @snapshot\n;",
        ));
        assert!(
            e.contains(":15: the `-- @snapshot` section has no statement"),
            "{e}"
        );
    }

    #[test]
    fn unknown_and_positional_placeholders() {
        let e = error(&good_with("id <= :upper", "id <= :uper"));
        assert!(e.contains(":10: unknown placeholder `:uper`"), "{e}");
        let e = error(&good_with("id <= :upper", "id <= $2"));
        assert!(
            e.contains("`$2`: write the batch bounds as `:lower` and `:upper`"),
            "{e}"
        );
    }

    #[test]
    fn placeholders_outside_the_batch() {
        let e = error(&good_with(
            "FROM users ORDER BY id",
            "FROM users WHERE id > :lower ORDER BY id",
        ));
        assert!(
            e.contains("placeholders belong to the `-- @batch`, `-- @expected` and `-- @actual` statements only"),
            "{e}"
        );
    }

    #[test]
    fn unterminated_string_is_an_error_with_a_line() {
        let e = error(&good_with(
            "FROM users ORDER BY id;",
            "FROM users WHERE handle = 'oops ORDER BY id;",
        ));
        assert!(e.contains("cannot tokenize"), "{e}");
        assert!(
            e.starts_with("data-migrations/V3__fill_posts.sql:16:"),
            "{e}"
        );
    }

    #[test]
    fn hostile_input_does_not_panic() {
        let deep = format!("{}{}", "(".repeat(5000), ")".repeat(5000));
        for text in [
            String::new(),
            "-- @".into(),
            "-- @batch\n:".into(),
            "-- @batch\n:lower".into(),
            "-- @requires 1\n-- @table t\n-- @key k\n-- @batch\n\u{feff}é:lower :upper".into(),
            format!(
                "-- @requires 1\n-- @table t\n-- @key k\n-- @batch\nUPDATE t SET a = {deep} WHERE k > :lower AND k <= :upper;\n-- @snapshot\nSELECT 1"
            ),
            "\r\n-- @batch\r\n;;;\r\n".into(),
        ] {
            let _ = parse_text(&text);
        }
    }
}
