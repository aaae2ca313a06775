//! Applying the workspace's schema migrations (refinery) to the database a sample runs on.
//!
//! The schema migrations are written for production, usually PostgreSQL. On SQLite they run
//! with the few PostgreSQL-only statements that do not change the schema taken out: session
//! settings (`SET`, `RESET`, e.g. `SET lock_timeout = '2s'`, which only guard production locks)
//! and the `CONCURRENTLY` of index statements (SQLite builds an index the same way without it).
//! Those are found with sqlparser's tokenizer and blanked with spaces, so every other byte, and
//! so every line number, stays where it is in the file. Anything else must be SQL both databases
//! understand; otherwise sample on PostgreSQL (`--database-url`).
//!
//! A migration that fails is reported as `migrations/V4__name.sql:LINE: message`, the line taken
//! from the database's error position when it gives one.

use std::path::Path;

use refinery::{Migration, Runner, Target};

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::tokenizer::{Token, Tokenizer};

use crate::backfill::error::{Error, ErrorKind, Result};
use crate::sql::Dialect;

/// `sql` with PostgreSQL session settings and `CONCURRENTLY` blanked out (see the module docs).
/// Text that does not tokenize is returned unchanged: the database will report it.
pub fn adapt_for_sqlite(sql: &str) -> String {
    let Ok(tokens) = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize_with_location() else {
        return sql.to_string();
    };
    let offsets = byte_offsets(sql, &tokens);
    let mut blank: Vec<std::ops::Range<usize>> = Vec::new();
    let mut statement_start: Option<usize> = None;
    let mut first_word: Option<String> = None;
    for (i, tok) in tokens.iter().enumerate() {
        match &tok.token {
            Token::Whitespace(_) | Token::EOF => {}
            Token::SemiColon => {
                if let (Some(start), Some(word)) = (statement_start, &first_word)
                    && (word == "SET" || word == "RESET")
                {
                    blank.push(offsets[start]..offsets[i + 1]);
                }
                statement_start = None;
                first_word = None;
            }
            token => {
                if statement_start.is_none() {
                    statement_start = Some(i);
                    first_word = match token {
                        Token::Word(w) if w.quote_style.is_none() => {
                            Some(w.value.to_ascii_uppercase())
                        }
                        _ => Some(String::new()),
                    };
                }
                if let Token::Word(w) = token
                    && w.quote_style.is_none()
                    && w.value.eq_ignore_ascii_case("concurrently")
                {
                    blank.push(offsets[i]..offsets[i + 1]);
                }
            }
        }
    }
    if let (Some(start), Some(word)) = (statement_start, &first_word)
        && (word == "SET" || word == "RESET")
    {
        blank.push(offsets[start]..sql.len());
    }
    let mut out = sql.to_string();
    for range in blank.into_iter().rev() {
        let replacement: String = sql[range.clone()]
            .chars()
            .map(|c| if c == '\n' { '\n' } else { ' ' })
            .collect();
        // Multi-byte characters become one space each: later offsets shift, but earlier ones
        // (processed after, since we go backwards) and every line break stay put.
        out.replace_range(range, &replacement);
    }
    out
}

fn byte_offsets(text: &str, tokens: &[sqlparser::tokenizer::TokenWithSpan]) -> Vec<usize> {
    let mut line_starts = vec![0];
    line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
    let mut offsets: Vec<usize> = tokens
        .iter()
        .map(|t| {
            let loc = t.span.start;
            (loc.line as usize)
                .checked_sub(1)
                .and_then(|l| line_starts.get(l))
                .map_or(text.len(), |&start| {
                    text[start..]
                        .char_indices()
                        .nth((loc.column as usize).saturating_sub(1))
                        .map_or(text.len(), |(i, _)| start + i)
                })
        })
        .collect();
    offsets.push(text.len());
    offsets
}

/// The migrations to apply for `version`, adapted to `dialect`.
pub fn prepare(migrations: &[Migration], version: u64, dialect: Dialect) -> Result<Vec<Migration>> {
    let mut out = Vec::new();
    for m in migrations {
        if u64::try_from(m.version()).is_ok_and(|v| v <= version) {
            let sql = m.sql().unwrap_or("");
            let sql = match dialect {
                Dialect::Sqlite => adapt_for_sqlite(sql),
                Dialect::Postgres => sql.to_string(),
            };
            let migration = Migration::unapplied(&m.to_string(), &sql).map_err(|e| {
                Error::new(
                    ErrorKind::Schema,
                    format!("refinery rejects migration {m}: {e}"),
                )
            })?;
            out.push(migration);
        }
    }
    Ok(out)
}

/// Where in a migration's SQL an error of the database points: `(message, byte offset)`.
pub type Locate<'a> =
    &'a dyn Fn(&(dyn std::error::Error + 'static), &str) -> (String, Option<usize>);

/// Applies `migrations` (already [`prepare`]d) with refinery, one at a time, so a failure names
/// the migration file and, when the database says where, its line.
pub fn apply<C: refinery::Migrate>(
    conn: &mut C,
    migrations: &[Migration],
    version: u64,
    dir: &Path,
    locate: Locate<'_>,
) -> Result<()> {
    let target = version.try_into().map_err(|_| {
        Error::new(
            ErrorKind::Schema,
            format!("schema version {version} is out of range"),
        )
    })?;
    let runner = Runner::new(migrations).set_target(Target::Version(target));
    let mut applied = 0usize;
    for result in runner.run_iter(conn) {
        match result {
            Ok(_) => applied += 1,
            Err(e) => {
                let failed = migrations.get(applied);
                let path =
                    failed.map_or_else(|| dir.to_path_buf(), |m| dir.join(format!("{m}.sql")));
                let (message, offset) = match e.kind() {
                    refinery::error::Kind::Connection(_, source) => {
                        locate(source.as_ref(), failed.and_then(|m| m.sql()).unwrap_or(""))
                    }
                    other => (other.to_string(), None),
                };
                let sql = failed.and_then(|m| m.sql()).unwrap_or("");
                let mut error = Error::file(ErrorKind::Schema, &path, message);
                if let Some(offset) = offset.filter(|o| *o <= sql.len()) {
                    let line = sql.as_bytes()[..offset]
                        .iter()
                        .filter(|b| **b == b'\n')
                        .count()
                        + 1;
                    error = error.at_line(line);
                }
                return Err(error);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blanks_session_settings_and_concurrently_keeping_lines() {
        let sql = "-- note\nSET lock_timeout = '2s';\nALTER TABLE t ADD COLUMN c int;\nCREATE INDEX CONCURRENTLY i ON t (c);\nRESET lock_timeout";
        let out = adapt_for_sqlite(sql);
        assert_eq!(out.lines().count(), sql.lines().count());
        assert_eq!(out.len(), sql.len());
        assert!(!out.contains("SET lock_timeout"), "{out}");
        assert!(!out.contains("RESET"), "{out}");
        assert!(
            out.contains("CREATE INDEX              i ON t (c);"),
            "{out}"
        );
        assert!(out.contains("ALTER TABLE t ADD COLUMN c int;"));
        assert!(out.starts_with("-- note\n"));
    }

    #[test]
    fn settings_in_strings_and_columns_are_kept() {
        let sql = "UPDATE t SET concurrently_x = 'SET a = 1; concurrently';";
        assert_eq!(adapt_for_sqlite(sql), sql);
    }
}
