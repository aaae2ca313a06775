//! Directives in a schema migration's comments, read by `migrate run` and by the linter:
//!
//! ```sql
//! -- migrate: no-transaction
//! -- migrate: after-backfill V1__backfill_counter_caches
//! CREATE INDEX CONCURRENTLY users_email ON users (email);
//! ```
//!
//! - `no-transaction`: `migrate run` runs the file's statements one by one outside a transaction
//!   (what `CREATE INDEX CONCURRENTLY` needs), then records it in refinery's history exactly as
//!   refinery would; the linter does not ask for it to run in a transaction.
//! - `after-backfill NAME[, NAME...]`: the data migrations (by id, `V1` or its full name) that must
//!   be done on a database before this schema migration may be applied there: `migrate run`
//!   stops before it until they are.
//!
//! Directives are line comments starting with `migrate:`, anywhere before the file's first
//! statement; they are found with sqlparser's tokenizer, so text in strings is never mistaken
//! for one. Anything else after `migrate:` is an error naming the line.

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::tokenizer::{Token, Tokenizer, Whitespace};

/// The prefix that marks a comment as a directive for `migrate run`.
pub const PREFIX: &str = "migrate:";

/// What a schema migration's directives say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Markers {
    /// Run outside a transaction (and the line that says so).
    pub no_transaction: Option<usize>,
    /// Data migrations that must be done first, with the line naming each.
    pub after_backfill: Vec<(String, usize)>,
}

/// A malformed directive: the 1-based line and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkerError {
    pub line: usize,
    pub message: String,
}

/// Reads the directives of a schema migration's text.
pub fn parse(sql: &str) -> Result<Markers, MarkerError> {
    // Text the tokenizer cannot read has no directives it could vouch for; the database (or the
    // linter) reports the text itself.
    let Ok(tokens) = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize_with_location() else {
        return Ok(Markers::default());
    };
    let mut header = Vec::new();
    for token in tokens {
        match &token.token {
            Token::Whitespace(Whitespace::SingleLineComment { comment, prefix })
                if prefix == "--" =>
            {
                header.push((comment.clone(), token.span.start.line as usize));
            }
            Token::Whitespace(_) => continue,
            // The first statement ends the header.
            _ => break,
        }
    }
    from_comments(header)
}

/// Reads the directives of the line comments of a migration's header: each comment's text after
/// its `--`, with its 1-based line. The linter hands over the comments its parser already found.
pub fn from_comments(
    comments: impl IntoIterator<Item = (String, usize)>,
) -> Result<Markers, MarkerError> {
    let mut markers = Markers::default();
    for (comment, line) in comments {
        let Some(directive) = comment.trim().strip_prefix(PREFIX) else {
            continue;
        };
        let directive = directive.trim();
        let (word, rest) = directive
            .split_once(char::is_whitespace)
            .map_or((directive, ""), |(w, r)| (w, r.trim()));
        match word {
            "no-transaction" if rest.is_empty() => markers.no_transaction = Some(line),
            "after-backfill" if !rest.is_empty() => {
                for name in rest.split(',').map(str::trim) {
                    if name.is_empty() || name.contains(char::is_whitespace) {
                        return Err(MarkerError {
                            line,
                            message: format!(
                                "`-- {PREFIX} after-backfill` takes data migration names separated by commas, got `{rest}`"
                            ),
                        });
                    }
                    markers.after_backfill.push((name.to_string(), line));
                }
            }
            "after-backfill" => {
                return Err(MarkerError {
                    line,
                    message: format!(
                        "`-- {PREFIX} after-backfill` needs the data migration it waits for, e.g. `-- {PREFIX} after-backfill V1`"
                    ),
                });
            }
            _ => {
                return Err(MarkerError {
                    line,
                    message: format!(
                        "unknown directive `-- {PREFIX} {directive}`: use `no-transaction` or `after-backfill NAME`"
                    ),
                });
            }
        }
    }
    Ok(markers)
}

/// Splits `sql` into its statements at top-level semicolons (strings, dollar quotes and
/// comments are tokens of their own, so a `;` inside them does not split), without the empty
/// ones: what a migration run outside a transaction sends one at a time.
pub fn statements(sql: &str) -> Vec<String> {
    let Ok(tokens) = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize_with_location() else {
        return vec![sql.trim().to_string()];
    };
    let line_starts: Vec<usize> = std::iter::once(0)
        .chain(sql.match_indices('\n').map(|(i, _)| i + 1))
        .collect();
    // A location (1-based line and character column) as a byte offset into `sql`.
    let offset = |line: u64, column: u64| -> usize {
        let start = line_starts
            .get((line as usize).saturating_sub(1))
            .copied()
            .unwrap_or(sql.len());
        sql[start..]
            .char_indices()
            .nth((column as usize).saturating_sub(1))
            .map_or(sql.len(), |(i, _)| start + i)
    };
    let mut out = Vec::new();
    let mut start = 0;
    let mut substantive = false;
    for token in &tokens {
        match &token.token {
            Token::SemiColon => {
                let end = offset(token.span.start.line, token.span.start.column);
                if substantive {
                    out.push(sql[start..end].trim().to_string());
                }
                start = offset(token.span.end.line, token.span.end.column);
                substantive = false;
            }
            Token::Whitespace(_) => {}
            _ => substantive = true,
        }
    }
    if substantive {
        out.push(sql[start..].trim().to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_directives_in_the_header() {
        let sql = "-- Add an index without blocking writes.\n-- migrate: no-transaction\n--migrate:after-backfill V1, V2__fill\nCREATE INDEX CONCURRENTLY i ON t (c);\n-- migrate: after-backfill V9\n";
        let m = parse(sql).unwrap();
        assert_eq!(m.no_transaction, Some(2));
        assert_eq!(
            m.after_backfill,
            vec![("V1".to_string(), 3), ("V2__fill".to_string(), 3)]
        );
    }

    #[test]
    fn text_in_strings_and_after_the_first_statement_is_not_a_directive() {
        let sql = "SELECT '-- migrate: no-transaction';\n-- migrate: no-transaction\n";
        assert_eq!(parse(sql).unwrap(), Markers::default());
    }

    #[test]
    fn malformed_directives_name_their_line() {
        let e = parse("-- ok\n-- migrate: no-transactions\nSELECT 1;").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("unknown directive"), "{}", e.message);
        let e = parse("-- migrate: after-backfill\n").unwrap_err();
        assert!(
            e.message.contains("needs the data migration"),
            "{}",
            e.message
        );
        let e = parse("-- migrate: after-backfill V1 V2\n").unwrap_err();
        assert!(e.message.contains("separated by commas"), "{}", e.message);
        let e = parse("-- migrate: no-transaction please\n").unwrap_err();
        assert!(e.message.contains("unknown directive"), "{}", e.message);
    }

    #[test]
    fn statements_split_at_top_level_semicolons_only() {
        let sql = "-- header\nCREATE INDEX CONCURRENTLY a ON t (x);\n\nDO $$ BEGIN PERFORM 1; END $$;\nSELECT ';';\n;\n";
        assert_eq!(
            statements(sql),
            vec![
                "-- header\nCREATE INDEX CONCURRENTLY a ON t (x)".to_string(),
                "DO $$ BEGIN PERFORM 1; END $$".to_string(),
                "SELECT ';'".to_string(),
            ]
        );
    }
}
