//! Applying the workspace's schema migrations (refinery) to the database a sample runs on.
//!
//! The schema migrations are written for production, usually PostgreSQL. On SQLite they run
//! with the few PostgreSQL-only statements that do not change the schema taken out: session
//! settings (`SET`, `RESET`, e.g. `SET lock_timeout = '2s'`, which only guard production locks)
//! and the `CONCURRENTLY` of index statements (SQLite builds an index the same way without it).
//! Those are found with sqlparser's tokenizer and blanked with spaces, so every other byte, and
//! so every line number, stays where it is in the file. Anything else must be SQL both databases
//! understand; otherwise sample on PostgreSQL (`--engine postgres-local`). When SQLite refuses a
//! migration, [`postgres_only`] finds the PostgreSQL-only construct in it (sqlparser's
//! PostgreSQL grammar, the statement's syntax tree), so the error can say so and how to switch.
//!
//! A migration that fails is reported as `migrations/V4__name.sql:LINE: message`, the line taken
//! from the database's error position when it gives one.

use std::path::Path;

use refinery::{Migration, Runner, Target};
use sqlparser::ast::{
    AlterTableOperation, ColumnDef, ColumnOption, DataType, Expr, FunctionArguments, GeneratedAs,
    Statement, UserDefinedTypeRepresentation,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

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

/// The token index ranges of the statements in `tokens`, from each statement's first token to
/// its last before the `;`, comments and whitespace around them left out.
fn statement_tokens(tokens: &[TokenWithSpan]) -> Vec<std::ops::Range<usize>> {
    let mut statements = Vec::new();
    let mut start: Option<usize> = None;
    let mut last = 0;
    for (i, tok) in tokens.iter().enumerate() {
        match &tok.token {
            Token::Whitespace(_) | Token::EOF => {}
            Token::SemiColon => {
                if let Some(s) = start.take() {
                    statements.push(s..last);
                }
            }
            _ => {
                start.get_or_insert(i);
                last = i + 1;
            }
        }
    }
    if let Some(s) = start {
        statements.push(s..last);
    }
    statements
}

/// The byte ranges of the statements of `sql` (without their `;`), split with sqlparser's
/// tokenizer for PostgreSQL: a `;` in a string, a dollar quote or a comment ends none. `None`
/// when the text does not tokenize.
pub fn statements(sql: &str) -> Option<Vec<std::ops::Range<usize>>> {
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
        .tokenize_with_location()
        .ok()?;
    let offsets = byte_offsets(sql, &tokens);
    Some(
        statement_tokens(&tokens)
            .into_iter()
            .map(|r| offsets[r.start]..offsets[r.end])
            .collect(),
    )
}

/// 1-based line of byte `offset` of `text`.
pub fn line_at(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// A construct of a schema migration that PostgreSQL has and SQLite does not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresOnly {
    /// 1-based line of the construct (of its statement, for a whole statement).
    pub line: usize,
    /// What it is, as people write it: `CREATE EXTENSION`, `a \`::\` cast`.
    pub what: String,
}

/// The first PostgreSQL-only construct of `sql`, in the statement at `line` when a line is given
/// (where SQLite reported its error), else in any statement. Statements are split with
/// sqlparser's tokenizer (strings, dollar quotes and comments stay whole) and each is parsed with
/// sqlparser's PostgreSQL grammar; the syntax tree says what it is. Text that does not tokenize
/// has none.
pub fn postgres_only(sql: &str, line: Option<usize>) -> Option<PostgresOnly> {
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
        .tokenize_with_location()
        .ok()?;
    let offsets = byte_offsets(sql, &tokens);
    let statements = statement_tokens(&tokens);
    let line_of = |t: &TokenWithSpan| t.span.start.line as usize;
    let candidates: Vec<std::ops::Range<usize>> = match line {
        None => statements,
        Some(line) => {
            let containing = statements.iter().find(|r| {
                line_of(&tokens[r.start]) <= line
                    && tokens[r.end - 1].span.end.line as usize >= line
            });
            // An error at the end of the text belongs to the statement before it.
            let before = || {
                statements
                    .iter()
                    .rev()
                    .find(|r| line_of(&tokens[r.start]) <= line)
            };
            containing.or_else(before).cloned().into_iter().collect()
        }
    };
    for range in candidates {
        let first = &tokens[range.start];
        let at = |what: &str| PostgresOnly {
            line: line_of(first),
            what: what.to_string(),
        };
        if let Token::Word(w) = &first.token
            && w.quote_style.is_none()
            && w.value.eq_ignore_ascii_case("do")
        {
            return Some(at("a DO block"));
        }
        if let Some(cast) = tokens[range.clone()]
            .iter()
            .find(|t| t.token == Token::DoubleColon)
        {
            return Some(PostgresOnly {
                line: line_of(cast),
                what: "a `::` cast".into(),
            });
        }
        let text = &sql[offsets[range.start]..offsets[range.end]];
        let parsed = Parser::new(&PostgreSqlDialect {})
            .try_with_sql(text)
            .and_then(|mut p| p.parse_statements());
        if let Ok(parsed) = parsed
            && let Some(what) = parsed.iter().find_map(statement_postgres_only)
        {
            return Some(at(&what));
        }
    }
    None
}

/// What in a parsed statement SQLite cannot run.
fn statement_postgres_only(statement: &Statement) -> Option<String> {
    Some(match statement {
        Statement::CreateExtension(_) => "CREATE EXTENSION".into(),
        Statement::CreateType {
            representation: Some(UserDefinedTypeRepresentation::Enum { .. }),
            ..
        } => "CREATE TYPE ... AS ENUM".into(),
        Statement::CreateType { .. } => "CREATE TYPE".into(),
        Statement::CreateDomain(_) => "CREATE DOMAIN".into(),
        Statement::CreateFunction(_) => "CREATE FUNCTION".into(),
        Statement::CreateSchema { .. } => "CREATE SCHEMA".into(),
        Statement::CreateSequence { .. } => "CREATE SEQUENCE".into(),
        Statement::CreateIndex(index) if index.using.is_some() => {
            "CREATE INDEX ... USING (an index method)".into()
        }
        Statement::CreateIndex(index) if !index.include.is_empty() => {
            "CREATE INDEX ... INCLUDE".into()
        }
        Statement::CreateTable(table) => {
            return table.columns.iter().find_map(column_postgres_only);
        }
        Statement::AlterTable(alter) => {
            return alter.operations.iter().find_map(|op| match op {
                AlterTableOperation::AddConstraint {
                    not_valid: true, ..
                } => Some("ADD CONSTRAINT ... NOT VALID".into()),
                AlterTableOperation::AddConstraint { .. } => {
                    Some("ALTER TABLE ... ADD CONSTRAINT".into())
                }
                AlterTableOperation::ValidateConstraint { .. } => {
                    Some("ALTER TABLE ... VALIDATE CONSTRAINT".into())
                }
                AlterTableOperation::AlterColumn { .. } => {
                    Some("ALTER TABLE ... ALTER COLUMN".into())
                }
                AlterTableOperation::AddColumn { column_def, .. } => {
                    column_postgres_only(column_def)
                }
                _ => None,
            });
        }
        _ => return None,
    })
}

/// What in a column definition SQLite cannot run: a function call as a default without the
/// parentheses SQLite requires, an array type, an identity column.
fn column_postgres_only(column: &ColumnDef) -> Option<String> {
    if matches!(column.data_type, DataType::Array(_)) {
        return Some(format!("the array type of column {}", column.name));
    }
    column
        .options
        .iter()
        .find_map(|option| match &option.option {
            // `CURRENT_TIMESTAMP` parses as a function without arguments; SQLite has it.
            ColumnOption::Default(Expr::Function(f))
                if !matches!(f.args, FunctionArguments::None) =>
            {
                Some(format!("DEFAULT {}()", f.name))
            }
            ColumnOption::Generated {
                generated_as: GeneratedAs::Always | GeneratedAs::ByDefault,
                generation_expr: None,
                ..
            } => Some("GENERATED ... AS IDENTITY".into()),
            _ => None,
        })
}

fn byte_offsets(text: &str, tokens: &[TokenWithSpan]) -> Vec<usize> {
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

/// The schema migrations of `dir`, read with refinery, for `what` (`backfill sample`, `migrate
/// run`, `backfill capture`): refinery applies and records them, so another layout is refused in
/// one line.
pub fn load_migrations(
    dir: &Path,
    layout: crate::config::MigrationLayout,
    what: &str,
) -> Result<Vec<Migration>> {
    layout
        .require_refinery(what)
        .map_err(|e| Error::file(ErrorKind::Schema, dir, e))?;
    refinery::load_sql_migrations(dir).map_err(|e| {
        Error::file(
            ErrorKind::Schema,
            dir,
            format!("refinery cannot load the migrations: {e}"),
        )
    })
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
                    error = error.at_line(line_at(sql, offset));
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
    fn finds_postgres_only_constructs() {
        let what = |sql: &str| postgres_only(sql, None).map(|p| p.what);
        for (sql, expected) in [
            ("CREATE EXTENSION IF NOT EXISTS citext;", "CREATE EXTENSION"),
            (
                "CREATE TYPE mood AS ENUM ('sad', 'ok');",
                "CREATE TYPE ... AS ENUM",
            ),
            (
                "CREATE TABLE t (id bigint, at timestamptz NOT NULL DEFAULT now());",
                "DEFAULT now()",
            ),
            (
                "CREATE TABLE t (id bigint, doc jsonb DEFAULT '{}'::jsonb);",
                "a `::` cast",
            ),
            (
                "ALTER TABLE t ADD CONSTRAINT c CHECK (n >= 0) NOT VALID;",
                "ADD CONSTRAINT ... NOT VALID",
            ),
            (
                "ALTER TABLE t ALTER COLUMN n SET NOT NULL;",
                "ALTER TABLE ... ALTER COLUMN",
            ),
            (
                "CREATE INDEX i ON t USING gin (doc);",
                "CREATE INDEX ... USING (an index method)",
            ),
            (
                "CREATE TABLE t (tags text[]);",
                "the array type of column tags",
            ),
            (
                "CREATE TABLE t (id bigint GENERATED ALWAYS AS IDENTITY);",
                "GENERATED ... AS IDENTITY",
            ),
            ("DO $$ BEGIN PERFORM 1; END $$;", "a DO block"),
        ] {
            assert_eq!(what(sql).as_deref(), Some(expected), "{sql}");
        }
        for portable in [
            "CREATE TABLE t (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0, at timestamp DEFAULT CURRENT_TIMESTAMP);",
            "CREATE INDEX i ON t (n);",
            "ALTER TABLE t ADD COLUMN m bigint NOT NULL DEFAULT 0;",
            "CREATE TABLE t (id bigint, doc text DEFAULT '::jsonb');",
            "-- CREATE EXTENSION x;\nCREATE TABLE t (id bigint);",
        ] {
            assert_eq!(what(portable), None, "{portable}");
        }
    }

    #[test]
    fn the_postgres_only_construct_of_the_failing_statement() {
        let sql = "CREATE TABLE a (id bigint);\n\nCREATE TABLE b (\n  id bigint,\n  at timestamptz DEFAULT now()\n);\nCREATE EXTENSION citext;\n";
        assert_eq!(
            postgres_only(sql, Some(5)),
            Some(PostgresOnly {
                line: 3,
                what: "DEFAULT now()".into()
            })
        );
        assert_eq!(postgres_only(sql, Some(1)), None);
        assert_eq!(postgres_only(sql, Some(7)).map(|p| p.line), Some(7));
        assert_eq!(postgres_only(sql, None).map(|p| p.line), Some(3));
    }

    #[test]
    fn splits_statements_at_semicolons_outside_strings_and_bodies() {
        let sql = "-- one\nCREATE TABLE a (s text DEFAULT ';');\n\nCREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql;\nDROP TABLE a";
        let parts: Vec<&str> = statements(sql)
            .unwrap()
            .into_iter()
            .map(|r| &sql[r])
            .collect();
        assert_eq!(
            parts,
            vec![
                "CREATE TABLE a (s text DEFAULT ';')",
                "CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql",
                "DROP TABLE a"
            ]
        );
        assert_eq!(line_at(sql, sql.find("DROP").unwrap()), 5);
    }

    #[test]
    fn settings_in_strings_and_columns_are_kept() {
        let sql = "UPDATE t SET concurrently_x = 'SET a = 1; concurrently';";
        assert_eq!(adapt_for_sqlite(sql), sql);
    }
}
