//! The data-migration file format: one `.sql` file per data migration, settings and sections as
//! directive comments, so an editor highlights it as SQL and a reviewer reads it top to bottom.
//!
//! ```sql
//! -- Fill the counter caches that V4 added (free comments like this one are fine).
//! -- @requires 4                    schema version (refinery) the data migration needs
//! -- @table users                   the table walked in key order
//! -- @key id                        its batch key: one integer or text column, unique
//! -- @batch-size 500                rows per batch in production (default 1000)
//! -- @pause 10ms                    sleep between batches in production (default 0)
//!
//! -- @batch
//! UPDATE users SET posts_count = (SELECT count(*) FROM posts WHERE posts.author_id = users.id)
//! WHERE id > :lower AND id <= :upper;
//!
//! -- @check every user's posts_count matches the posts table
//! SELECT id FROM users WHERE posts_count <> (SELECT count(*) FROM posts WHERE author_id = users.id);
//!
//! -- @snapshot
//! SELECT id, posts_count FROM users ORDER BY id;
//! ```
//!
//! Files are named like refinery's migrations, `V{n}__{name}.sql` with `name` in `\w+`, in their
//! own version sequence. A directive is a `--` comment whose text starts with `@`. Settings come
//! first; then the sections: exactly one `-- @batch`, any number of `-- @check <description>`,
//! exactly one `-- @snapshot`, each holding one statement. The batch statement selects its rows
//! with `key > :lower AND key <= :upper`: the engine binds the bounds of each batch, `(lower,
//! upper]`. A check is a query that must return no rows once the data migration has run. The
//! snapshot query's rows are what reviewers approve, so it must have a deterministic order
//! (`ORDER BY` a unique key, or a single row of aggregates).
//!
//! Statement boundaries, directives and placeholders are found with sqlparser's tokenizer, so a
//! `;` or `:lower` inside a string literal or a comment is never mistaken for one; the sections
//! are then parsed with sqlparser to check their shape. Every mistake is an [`Error`] naming
//! `file:line`. The checksum is the SHA-256 of the file's exact bytes (what `sha256sum` prints).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};
use sqlparser::ast::{
    BinaryOperator, Expr, FromTable, GroupByExpr, ObjectName, ObjectNamePart, OrderByKind, Query,
    SelectItem, SetExpr, Statement, TableFactor, TableWithJoins, Value,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer, Whitespace};

use crate::backfill::error::{Error, ErrorKind, Result};
use crate::sql::Dialect;

/// Rows per batch when a data migration does not say.
pub const DEFAULT_BATCH_SIZE: u64 = 1000;
/// The largest `@batch-size` accepted: one batch is one transaction, and a transaction this big
/// is the long lock the whole tool exists to avoid.
pub const MAX_BATCH_SIZE: u64 = 1_000_000;

/// A parsed, validated data migration.
#[derive(Debug, Clone, PartialEq)]
pub struct DataMigration {
    /// `n` of `V{n}__{name}.sql`.
    pub version: u64,
    /// `name` of `V{n}__{name}.sql`.
    pub name: String,
    pub path: PathBuf,
    /// SHA-256 of the file's bytes, lower-case hex.
    pub checksum: String,
    /// The schema version (refinery) this data migration needs.
    pub requires: Located<u64>,
    /// The table walked in key order, normalized like an SQL identifier (unquoted names are
    /// lower-cased, quoted ones kept as written).
    pub table: Located<String>,
    /// The batch key column, normalized the same way.
    pub key: Located<String>,
    pub batch_size: Located<u64>,
    pub pause: Located<Duration>,
    pub batch: BatchStatement,
    pub checks: Vec<Check>,
    pub snapshot: Section,
}

/// A value and the line it was declared on (0 for a default).
#[derive(Debug, Clone, PartialEq)]
pub struct Located<T> {
    pub value: T,
    pub line: usize,
}

/// One statement of a section, as written (comments inside it kept, no trailing `;`).
#[derive(Debug, Clone, PartialEq)]
pub struct Section {
    /// Line of the directive that opens the section.
    pub directive_line: usize,
    /// Line where the statement starts.
    pub line: usize,
    pub sql: String,
}

/// The batch statement, with its placeholders rewritten for each dialect.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchStatement {
    pub section: Section,
    /// `:lower`/`:upper` as `$1`/`$2`.
    pub postgres: String,
    /// `:lower`/`:upper` as `?1`/`?2`.
    pub sqlite: String,
}

impl BatchStatement {
    pub fn sql(&self, dialect: Dialect) -> &str {
        match dialect {
            Dialect::Postgres => &self.postgres,
            Dialect::Sqlite => &self.sqlite,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub description: String,
    pub section: Section,
}

impl DataMigration {
    /// `V{n}__{name}`: the file name without `.sql`, which is also the snapshot's name.
    pub fn id(&self) -> String {
        format!("V{}__{}", self.version, self.name)
    }

    /// An error at `line` of this data migration's file.
    pub fn error_at(&self, kind: ErrorKind, line: usize, message: impl Into<String>) -> Error {
        Error::at(kind, &self.path, line, message)
    }
}

/// `V{n}__{name}.sql` → `(n, name)`, refinery's rule (`name` in `\w+`).
pub fn parse_file_name(file_name: &str) -> Option<(u64, String)> {
    let stem = file_name.strip_suffix(".sql")?;
    let rest = stem.strip_prefix('V')?;
    let (version, name) = rest.split_once("__")?;
    if version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let version = version.parse().ok()?;
    let word = |c: char| c.is_alphanumeric() || c == '_';
    if name.is_empty() || !name.chars().all(word) {
        return None;
    }
    Some((version, name.to_string()))
}

/// Every data migration in `dir`, in version order. Files not ending in `.sql` are ignored
/// (a README, the `snapshots/` folder); a `.sql` file whose name refinery would skip, or two
/// files with one version, are errors rather than silent surprises.
pub fn load_dir(dir: &Path) -> Result<Vec<DataMigration>> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        Error::file(
            ErrorKind::Io,
            dir,
            format!("cannot read the data-migrations directory: {e}"),
        )
    })?;
    let mut by_version: BTreeMap<u64, DataMigration> = BTreeMap::new();
    let mut paths = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::file(ErrorKind::Io, dir, e.to_string()))?;
        let path = entry.path();
        if path.is_file() && path.extension().is_some_and(|e| e == "sql") {
            paths.push(path);
        }
    }
    paths.sort();
    for path in paths {
        let migration = load_file(&path)?;
        if let Some(other) = by_version.get(&migration.version) {
            return Err(Error::file(
                ErrorKind::Format,
                &path,
                format!(
                    "version {} is also used by {}; each data migration needs its own version",
                    migration.version,
                    other.path.file_name().unwrap_or_default().to_string_lossy()
                ),
            ));
        }
        by_version.insert(migration.version, migration);
    }
    Ok(by_version.into_values().collect())
}

/// Every mistake in the data migrations of `dir`, one error per file at most (the first one
/// found), without stopping at the first file: what `migrate lint` reports for data migrations
/// (placeholders present and bounding the key, one target table, no DDL, a deterministic
/// snapshot query, names refinery accepts, unique versions).
pub fn check_dir(dir: &Path) -> Vec<Error> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            return vec![Error::file(
                ErrorKind::Io,
                dir,
                format!("cannot read the data-migrations directory: {e}"),
            )];
        }
    };
    let mut paths: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "sql"))
        .collect();
    paths.sort();
    let mut errors = Vec::new();
    let mut versions: BTreeMap<u64, PathBuf> = BTreeMap::new();
    for path in paths {
        match load_file(&path) {
            Ok(m) => {
                if let Some(other) = versions.get(&m.version) {
                    errors.push(Error::file(
                        ErrorKind::Format,
                        &path,
                        format!(
                            "version {} is also used by {}; each data migration needs its own version",
                            m.version,
                            other.file_name().unwrap_or_default().to_string_lossy()
                        ),
                    ));
                } else {
                    versions.insert(m.version, path);
                }
            }
            Err(e) => errors.push(e),
        }
    }
    errors
}

/// The data migration of `dir` that `name` designates: its file name (`V1__fill.sql`), its id
/// (`V1__fill`), its name (`fill`) or its version (`V1`, `1`).
pub fn find(dir: &Path, name: &str) -> Result<DataMigration> {
    let all = load_dir(dir)?;
    let wanted = name.trim();
    let version = wanted
        .strip_prefix('V')
        .unwrap_or(wanted)
        .parse::<u64>()
        .ok();
    let found = all.iter().find(|m| {
        m.id() == wanted
            || format!("{}.sql", m.id()) == wanted
            || m.name == wanted
            || version == Some(m.version)
    });
    match found {
        Some(m) => Ok(m.clone()),
        None => {
            let known: Vec<String> = all.iter().map(DataMigration::id).collect();
            Err(Error::file(
                ErrorKind::Format,
                dir,
                format!(
                    "no data migration named `{wanted}` (found: {})",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            ))
        }
    }
}

/// Reads and parses one data-migration file.
pub fn load_file(path: &Path) -> Result<DataMigration> {
    let bytes = std::fs::read(path)
        .map_err(|e| Error::file(ErrorKind::Io, path, format!("cannot read: {e}")))?;
    let text = String::from_utf8(bytes)
        .map_err(|e| Error::file(ErrorKind::Format, path, format!("not UTF-8 text: {e}")))?;
    parse(path, &text)
}

/// SHA-256 of `bytes`, lower-case hex.
pub fn checksum(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Parses the text of the data migration at `path` (the path names it in errors and gives its
/// version and name).
pub fn parse(path: &Path, text: &str) -> Result<DataMigration> {
    let file_name = path.file_name().unwrap_or_default().to_string_lossy();
    let Some((version, name)) = parse_file_name(&file_name) else {
        return Err(Error::file(
            ErrorKind::Format,
            path,
            "not a data-migration name: expected `V{n}__{name}.sql` with `name` made of letters, digits and `_` (refinery's rule)",
        ));
    };
    let err = |line: usize, message: String| Error::at(ErrorKind::Format, path, line, message);

    let tokens = Tokenizer::new(&PostgreSqlDialect {}, text)
        .tokenize_with_location()
        .map_err(|e| {
            err(
                e.location.line as usize,
                format!("cannot tokenize: {}", e.message),
            )
        })?;
    let offsets = token_offsets(text, &tokens);

    let mut settings = Settings::default();
    let mut sections: Vec<RawSection> = Vec::new();
    for (i, tok) in tokens.iter().enumerate() {
        let line = tok.span.start.line as usize;
        if let Some((directive, argument)) = directive(&tok.token) {
            match directive {
                "batch" | "check" | "snapshot" => {
                    if let Some(open) = sections.last_mut() {
                        open.end = i;
                    }
                    let kind = match directive {
                        "batch" => SectionKind::Batch,
                        "check" => SectionKind::Check,
                        _ => SectionKind::Snapshot,
                    };
                    if kind != SectionKind::Check && !argument.is_empty() {
                        return Err(err(
                            line,
                            format!("`-- @{directive}` takes no value, found `{argument}`"),
                        ));
                    }
                    if kind == SectionKind::Check && argument.is_empty() {
                        return Err(err(
                            line,
                            "`-- @check` needs a description of what it verifies, e.g. `-- @check every count matches`".into(),
                        ));
                    }
                    if kind != SectionKind::Check
                        && let Some(previous) = sections.iter().find(|s| s.kind == kind)
                    {
                        return Err(err(
                            line,
                            format!(
                                "a second `-- @{directive}` section (the first is at line {}); a data migration has one",
                                previous.line
                            ),
                        ));
                    }
                    sections.push(RawSection {
                        kind,
                        line,
                        argument: argument.to_string(),
                        start: i + 1,
                        end: tokens.len(),
                    });
                }
                _ if SETTINGS.contains(&directive) => {
                    if let Some(first) = sections.first() {
                        return Err(err(
                            line,
                            format!(
                                "`-- @{directive}` is a setting: settings go at the top, before the first section (line {})",
                                first.line
                            ),
                        ));
                    }
                    settings
                        .set(directive, argument, line)
                        .map_err(|m| err(line, m))?;
                }
                _ => {
                    return Err(err(
                        line,
                        format!(
                            "unknown directive `@{directive}`; known: {}, @batch, @check, @snapshot",
                            SETTINGS
                                .iter()
                                .map(|s| format!("@{s}"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                }
            }
        } else if !is_trivia(&tok.token) && sections.is_empty() {
            return Err(err(
                line,
                "SQL before the first section: start it with `-- @batch`, `-- @check <description>` or `-- @snapshot`".into(),
            ));
        }
    }

    let missing = |what: &str, example: &str| err(1, format!("missing `-- @{what}` ({example})"));
    let requires = settings.requires.ok_or_else(|| {
        missing(
            "requires",
            "the schema version it needs, e.g. `-- @requires 4`",
        )
    })?;
    let table = settings
        .table
        .ok_or_else(|| missing("table", "the table to walk, e.g. `-- @table users`"))?;
    let key = settings
        .key
        .ok_or_else(|| missing("key", "its batch key column, e.g. `-- @key id`"))?;
    let batch_raw = sections
        .iter()
        .find(|s| s.kind == SectionKind::Batch)
        .ok_or_else(|| missing("batch", "followed by the statement run per batch"))?;
    let snapshot_raw = sections
        .iter()
        .find(|s| s.kind == SectionKind::Snapshot)
        .ok_or_else(|| missing("snapshot", "followed by the query whose rows are snapshot"))?;

    let cx = Cx {
        path,
        text,
        tokens: &tokens,
        offsets: &offsets,
    };
    let batch = cx.batch(batch_raw, &table.value, &key.value)?;
    let mut checks = Vec::new();
    for raw in sections.iter().filter(|s| s.kind == SectionKind::Check) {
        let section = cx.query_section(raw, "@check")?;
        checks.push(Check {
            description: raw.argument.clone(),
            section,
        });
    }
    let snapshot = cx.query_section(snapshot_raw, "@snapshot")?;
    let query = parse_query(&snapshot.sql).map_err(|m| err(snapshot.line, m))?;
    if !deterministic(&query) {
        return Err(err(
            snapshot.line,
            "the snapshot query's row order is not deterministic: add `ORDER BY` a unique key (or select one row of aggregates)".into(),
        ));
    }

    Ok(DataMigration {
        version,
        name,
        path: path.to_path_buf(),
        checksum: checksum(text.as_bytes()),
        requires,
        table,
        key,
        batch_size: settings.batch_size.unwrap_or(Located {
            value: DEFAULT_BATCH_SIZE,
            line: 0,
        }),
        pause: settings.pause.unwrap_or(Located {
            value: Duration::ZERO,
            line: 0,
        }),
        batch,
        checks,
        snapshot,
    })
}

const SETTINGS: [&str; 5] = ["requires", "table", "key", "batch-size", "pause"];

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
}

struct RawSection {
    kind: SectionKind,
    line: usize,
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

struct Cx<'a> {
    path: &'a Path,
    text: &'a str,
    tokens: &'a [TokenWithSpan],
    offsets: &'a [usize],
}

/// A placeholder of the batch statement: its token range and which bound it is.
struct Placeholder {
    start: usize,
    end: usize,
    upper: bool,
}

impl Cx<'_> {
    fn err(&self, line: usize, message: impl Into<String>) -> Error {
        Error::at(ErrorKind::Format, self.path, line, message)
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

    fn section(&self, raw: &RawSection, first: usize, last: usize) -> Section {
        Section {
            directive_line: raw.line,
            line: self.tokens[first].span.start.line as usize,
            sql: self.text[self.offsets[first]..self.offsets[last + 1]].to_string(),
        }
    }

    /// Placeholders in `[first, last]`: `:lower`/`:upper` are returned, anything else that
    /// looks like a parameter is an error.
    fn placeholders(
        &self,
        first: usize,
        last: usize,
        allowed: bool,
        name: &str,
    ) -> Result<Vec<Placeholder>> {
        let mut found = Vec::new();
        for i in first..=last {
            let tok = &self.tokens[i];
            let line = tok.span.start.line as usize;
            match &tok.token {
                Token::Placeholder(p) => {
                    return Err(self.err(
                        line,
                        format!("`{p}`: write the batch bounds as `:lower` and `:upper` (they are rewritten for each database)"),
                    ));
                }
                Token::Colon => {
                    let Some(next) = self.tokens.get(i + 1) else {
                        continue;
                    };
                    let Token::Word(word) = &next.token else {
                        continue;
                    };
                    // Adjacent only: `a[1 : n]` slices and `x :: int` casts are not placeholders.
                    if self.offsets[i + 1] != self.offsets[i] + 1 || word.quote_style.is_some() {
                        continue;
                    }
                    let upper = match word.value.as_str() {
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
                                "`:{}` in the `-- {name}` section: placeholders belong to the `-- @batch` statement only",
                                word.value
                            ),
                        ));
                    }
                    found.push(Placeholder {
                        start: i,
                        end: i + 1,
                        upper,
                    });
                }
                _ => {}
            }
        }
        Ok(found)
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

    fn batch(&self, raw: &RawSection, table: &str, key: &str) -> Result<BatchStatement> {
        let (first, last) = self.statement(raw, "@batch")?;
        let section = self.section(raw, first, last);
        let placeholders = self.placeholders(first, last, true, "@batch")?;
        for (upper, name) in [(false, ":lower"), (true, ":upper")] {
            if !placeholders.iter().any(|p| p.upper == upper) {
                return Err(self.err(
                    section.line,
                    format!("the batch statement never uses `{name}`: select the batch's rows with `WHERE {key} > :lower AND {key} <= :upper`"),
                ));
            }
        }
        let postgres = self.rewrite(first, last, &placeholders, "$1", "$2");
        let sqlite = self.rewrite(first, last, &placeholders, "?1", "?2");
        check_batch_shape(&postgres, table, key).map_err(|m| self.err(section.line, m))?;
        Ok(BatchStatement {
            section,
            postgres,
            sqlite,
        })
    }

    fn query_section(&self, raw: &RawSection, name: &str) -> Result<Section> {
        let (first, last) = self.statement(raw, name)?;
        let section = self.section(raw, first, last);
        self.placeholders(first, last, false, name)?;
        parse_query(&section.sql).map_err(|m| {
            self.err(
                section.line,
                format!("the `-- {name}` section must be a query: {m}"),
            )
        })?;
        Ok(section)
    }
}

fn parse_one(sql: &str) -> std::result::Result<Statement, String> {
    let mut statements = Parser::parse_sql(&PostgreSqlDialect {}, sql)
        .map_err(|e| format!("does not parse: {e}"))?;
    match (statements.pop(), statements.is_empty()) {
        (Some(statement), true) => Ok(statement),
        _ => Err("expected exactly one statement".into()),
    }
}

fn parse_query(sql: &str) -> std::result::Result<Box<Query>, String> {
    match parse_one(sql)? {
        Statement::Query(query) => Ok(query),
        other => Err(format!("found `{}`", first_words(&other.to_string()))),
    }
}

fn first_words(sql: &str) -> String {
    sql.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}

/// The batch statement changes rows of one table and selects them by the key bounds.
fn check_batch_shape(sql: &str, table: &str, key: &str) -> std::result::Result<(), String> {
    let bounds_help =
        format!("select the batch's rows with `WHERE {key} > :lower AND {key} <= :upper`");
    match parse_one(sql)? {
        Statement::Update(update) => {
            let target = single_table(std::slice::from_ref(&update.table));
            if target.is_none() {
                return Err("the batch statement must update one table (no joins in the target)".into());
            }
            check_target_and_bounds(target, update.selection.as_ref(), table, key, &bounds_help)
        }
        Statement::Delete(delete) => {
            let tables = match &delete.from {
                FromTable::WithFromKeyword(t) | FromTable::WithoutKeyword(t) => t,
            };
            let target = single_table(tables);
            if target.is_none() || !delete.tables.is_empty() {
                return Err("the batch statement must delete from one table".into());
            }
            check_target_and_bounds(target, delete.selection.as_ref(), table, key, &bounds_help)
        }
        Statement::Insert(insert) => {
            // INSERT ... SELECT copies rows of the batched table somewhere else: the bounds
            // belong to the SELECT that reads it.
            let select = insert.source.as_deref().and_then(|source| match &*source.body {
                SetExpr::Select(select) => Some(select),
                _ => None,
            });
            let Some(select) = select else {
                return Err(format!(
                    "the batch INSERT must read `{table}` with a plain SELECT: `INSERT ... SELECT ... FROM {table} WHERE {key} > :lower AND {key} <= :upper`"
                ));
            };
            check_target_and_bounds(single_table(&select.from), select.selection.as_ref(), table, key, &bounds_help)
        }
        Statement::Query(_) => {
            Err("the batch statement must change rows (UPDATE, DELETE or INSERT ... SELECT), found a query".into())
        }
        other => Err(format!(
            "no DDL or other statements in a data migration (found `{}`): its batch is one UPDATE, DELETE or INSERT ... SELECT; schema changes belong in migrations/",
            first_words(&other.to_string())
        )),
    }
}

fn check_target_and_bounds(
    target: Option<&ObjectName>,
    filter: Option<&Expr>,
    table: &str,
    key: &str,
    bounds_help: &str,
) -> std::result::Result<(), String> {
    let Some(target) = target else {
        return Err(format!("the batch statement must work on `{table}` alone"));
    };
    let name = last_part(target);
    if name.as_deref() != Some(table) {
        return Err(format!(
            "the batch statement works on `{target}`, but `-- @table` is `{table}`: one data migration walks one table"
        ));
    }
    let mut found = (false, false);
    if let Some(filter) = filter {
        bounds(filter, key, &mut found);
    }
    match found {
        (true, true) => Ok(()),
        _ => Err(format!(
            "the key bounds are not both on `{key}` at the top of the WHERE clause; {bounds_help}"
        )),
    }
}

fn single_table(from: &[TableWithJoins]) -> Option<&ObjectName> {
    match from {
        [only] if only.joins.is_empty() => match &only.relation {
            TableFactor::Table { name, .. } => Some(name),
            _ => None,
        },
        _ => None,
    }
}

fn normalize(ident: &sqlparser::ast::Ident) -> String {
    match ident.quote_style {
        None => ident.value.to_lowercase(),
        Some(_) => ident.value.clone(),
    }
}

fn last_part(name: &ObjectName) -> Option<String> {
    match name.0.last()? {
        ObjectNamePart::Identifier(ident) => Some(normalize(ident)),
        _ => None,
    }
}

/// Looks through the `AND`s at the top of `expr` for `key > $1` and `key <= $2` (either way
/// round). Anything under an `OR` or a function does not bound the batch, so it is not looked at.
fn bounds(expr: &Expr, key: &str, found: &mut (bool, bool)) {
    let is_key = |e: &Expr| match e {
        Expr::Identifier(ident) => normalize(ident) == key,
        Expr::CompoundIdentifier(parts) => parts.last().is_some_and(|p| normalize(p) == key),
        _ => false,
    };
    let is_param = |e: &Expr, name: &str| matches!(e, Expr::Value(v) if v.value == Value::Placeholder(name.into()));
    match expr {
        Expr::Nested(inner) => bounds(inner, key, found),
        Expr::BinaryOp { left, op, right } => match op {
            BinaryOperator::And => {
                bounds(left, key, found);
                bounds(right, key, found);
            }
            BinaryOperator::Gt if is_key(left) && is_param(right, "$1") => found.0 = true,
            BinaryOperator::Lt if is_param(left, "$1") && is_key(right) => found.0 = true,
            BinaryOperator::LtEq if is_key(left) && is_param(right, "$2") => found.1 = true,
            BinaryOperator::GtEq if is_param(left, "$2") && is_key(right) => found.1 = true,
            _ => {}
        },
        _ => {}
    }
}

/// Whether a query returns its rows in one order every time: it has an `ORDER BY`, or it returns
/// a single row (aggregates without `GROUP BY`).
fn deterministic(query: &Query) -> bool {
    if let Some(order_by) = &query.order_by {
        return match &order_by.kind {
            OrderByKind::Expressions(exprs) => !exprs.is_empty(),
            OrderByKind::All(_) => true,
        };
    }
    if query.limit_clause.is_some() || query.fetch.is_some() {
        return false;
    }
    match &*query.body {
        SetExpr::Select(select) => {
            let no_group =
                matches!(&select.group_by, GroupByExpr::Expressions(e, _) if e.is_empty());
            no_group
                && select.having.is_none()
                && !select.projection.is_empty()
                && select.projection.iter().all(|item| match item {
                    SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                        single_value(e)
                    }
                    _ => false,
                })
        }
        SetExpr::Query(inner) => deterministic(inner),
        _ => false,
    }
}

/// An expression that has one value over all rows of a `SELECT` without `GROUP BY`: an aggregate
/// whose result does not depend on row order, a constant, a deterministic scalar subquery, or
/// arithmetic of those. A bare column is not: without `GROUP BY` it has one value per row.
fn single_value(expr: &Expr) -> bool {
    const ORDER_FREE_AGGREGATES: [&str; 8] = [
        "count", "sum", "total", "min", "max", "avg", "bool_and", "bool_or",
    ];
    match expr {
        Expr::Value(_) => true,
        Expr::Nested(e) | Expr::Cast { expr: e, .. } | Expr::UnaryOp { expr: e, .. } => {
            single_value(e)
        }
        Expr::BinaryOp { left, right, .. } => single_value(left) && single_value(right),
        Expr::Subquery(q) => deterministic(q),
        Expr::Function(f) => {
            let name = f.name.0.last().and_then(|p| match p {
                ObjectNamePart::Identifier(i) => Some(i.value.to_lowercase()),
                _ => None,
            });
            name.is_some_and(|n| ORDER_FREE_AGGREGATES.contains(&n.as_str())) && f.over.is_none()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "\
-- Fill posts_count.
-- @requires 4
-- @table users
-- @key id
-- @batch-size 500
-- @pause 10ms

-- @batch
UPDATE users SET posts_count = (SELECT count(*) FROM posts WHERE posts.author_id = users.id)
WHERE id > :lower AND id <= :upper;

-- @check every posts_count matches
SELECT id FROM users WHERE posts_count <> (SELECT count(*) FROM posts WHERE author_id = users.id);

-- @snapshot
SELECT id, posts_count FROM users ORDER BY id;
";

    fn parse_text(text: &str) -> Result<DataMigration> {
        parse(Path::new("data-migrations/V3__fill_posts.sql"), text)
    }

    #[track_caller]
    fn error(text: &str) -> String {
        match parse_text(text) {
            Ok(m) => panic!("expected an error; got {m:#?}"),
            Err(e) => {
                let s = e.to_string();
                assert!(!s.contains('\n'), "one line: {s}");
                s
            }
        }
    }

    fn good_with(from: &str, to: &str) -> String {
        assert!(GOOD.contains(from), "{from}");
        GOOD.replacen(from, to, 1)
    }

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
    fn checksum_is_sha256_of_the_bytes() {
        assert_eq!(
            checksum(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
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
    fn bounds_may_be_written_either_way_round_and_qualified() {
        let text = good_with(
            "WHERE id > :lower AND id <= :upper",
            "WHERE (:lower < users.id) AND (:upper >= users.id)",
        );
        parse_text(&text).unwrap();
    }

    #[test]
    fn file_name_rules() {
        assert_eq!(
            parse_file_name("V12__fill_it.sql"),
            Some((12, "fill_it".into()))
        );
        assert_eq!(parse_file_name("V1__fill-it.sql"), None);
        assert_eq!(parse_file_name("V1_fill.sql"), None);
        assert_eq!(parse_file_name("U1__fill.sql"), None);
        assert_eq!(parse_file_name("V__fill.sql"), None);
        assert_eq!(parse_file_name("V1__fill.txt"), None);
        let e = parse(Path::new("dm/V1__fill-it.sql"), GOOD)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("dm/V1__fill-it.sql: not a data-migration name"),
            "{e}"
        );
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
    fn missing_placeholder() {
        let e = error(&good_with("AND id <= :upper", "AND id <= 100"));
        assert!(
            e.contains(":9: the batch statement never uses `:upper`"),
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
            e.contains("placeholders belong to the `-- @batch` statement only"),
            "{e}"
        );
    }

    #[test]
    fn placeholders_not_used_as_key_bounds() {
        let e = error(&good_with(
            "WHERE id > :lower AND id <= :upper",
            "WHERE posts_count > :lower OR id <= :upper",
        ));
        assert!(e.contains(":9: the key bounds are not both on `id`"), "{e}");
        let e = error(&good_with(
            "WHERE id > :lower AND id <= :upper",
            "WHERE id >= :lower AND id <= :upper",
        ));
        assert!(e.contains("the key bounds are not both on `id`"), "{e}");
    }

    #[test]
    fn batch_on_another_table() {
        let e = error(&good_with("UPDATE users SET", "UPDATE posts SET"));
        assert!(
            e.contains("works on `posts`, but `-- @table` is `users`"),
            "{e}"
        );
    }

    #[test]
    fn ddl_is_refused() {
        let text = good_with(
            "UPDATE users SET posts_count = (SELECT count(*) FROM posts WHERE posts.author_id = users.id)\nWHERE id > :lower AND id <= :upper;",
            "ALTER TABLE users ADD COLUMN x int DEFAULT :lower + :upper;",
        );
        let e = error(&text);
        assert!(e.contains("no DDL"), "{e}");
    }

    #[test]
    fn delete_and_insert_select_batches() {
        let delete = good_with(
            "UPDATE users SET posts_count = (SELECT count(*) FROM posts WHERE posts.author_id = users.id)",
            "DELETE FROM users",
        );
        parse_text(&delete).unwrap();
        let insert = good_with(
            "UPDATE users SET posts_count = (SELECT count(*) FROM posts WHERE posts.author_id = users.id)\nWHERE",
            "INSERT INTO archive (id) SELECT id FROM users WHERE",
        );
        parse_text(&insert).unwrap();
    }

    #[test]
    fn check_must_be_a_query() {
        let e = error(&good_with(
            "SELECT id FROM users WHERE posts_count",
            "DELETE FROM users WHERE posts_count",
        ));
        assert!(
            e.contains(":13: the `-- @check` section must be a query: found `DELETE FROM`"),
            "{e}"
        );
        let e = error(&good_with(
            "-- @check every posts_count matches",
            "-- @check",
        ));
        assert!(e.contains(":12: `-- @check` needs a description"), "{e}");
    }

    #[test]
    fn snapshot_must_be_deterministic() {
        let e = error(&good_with("FROM users ORDER BY id", "FROM users"));
        assert!(
            e.contains(":16: the snapshot query's row order is not deterministic"),
            "{e}"
        );
        let e = error(&good_with(
            "SELECT id, posts_count FROM users ORDER BY id",
            "SELECT id FROM users LIMIT 3",
        ));
        assert!(e.contains("not deterministic"), "{e}");
        let e = error(&good_with(
            "SELECT id, posts_count FROM users ORDER BY id",
            "SELECT author_id, count(*) FROM posts GROUP BY author_id",
        ));
        assert!(e.contains("not deterministic"), "{e}");
        let e = error(&good_with(
            "SELECT id, posts_count FROM users ORDER BY id",
            "SELECT string_agg(handle, ',') FROM users",
        ));
        assert!(e.contains("not deterministic"), "{e}");
        for single_row in [
            "SELECT count(*), sum(posts_count) FROM users",
            "SELECT (SELECT count(*) FROM users) AS n, (SELECT max(id) FROM posts) + 1",
            "SELECT sum(posts_count) - count(*) AS excess FROM users WHERE posts_count > 0",
        ] {
            parse_text(&good_with(
                "SELECT id, posts_count FROM users ORDER BY id",
                single_row,
            ))
            .unwrap();
        }
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
    fn check_dir_reports_every_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("V1__good.sql"), GOOD).unwrap();
        std::fs::write(dir.path().join("V1__same_version.sql"), GOOD).unwrap();
        std::fs::write(
            dir.path().join("V2__bad.sql"),
            good_with("-- @key id", "-- @kee id"),
        )
        .unwrap();
        std::fs::write(dir.path().join("v3-misnamed.sql"), GOOD).unwrap();
        std::fs::write(dir.path().join("README.md"), "not SQL").unwrap();
        let errors: Vec<String> = check_dir(dir.path())
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(errors.len(), 3, "{errors:#?}");
        assert!(
            errors.iter().any(|e| e.ends_with("V1__same_version.sql: version 1 is also used by V1__good.sql; each data migration needs its own version")),
            "{errors:#?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.contains("V2__bad.sql:4: unknown directive `@kee`")),
            "{errors:#?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.contains("v3-misnamed.sql: not a data-migration name")),
            "{errors:#?}"
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
