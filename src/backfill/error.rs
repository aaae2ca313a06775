//! The typed error of the backfill library: one line, naming the file and line that caused it.
//!
//! Every mistake a person can make in a data migration or a fixture, and every statement the
//! database refuses, ends up here with the place to fix it. The CLI prints `Display` as is, so
//! the text never spans lines: database messages are folded onto one line when the error is made.

use std::fmt;
use std::path::{Path, PathBuf};

/// What kind of thing went wrong, for people and for callers that branch on it. Whether a retry
/// may help is [`Retry`], classified once where the database's error is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A data-migration file is malformed: names, directives, sections, placeholders, SQL shape.
    Format,
    /// A fixture file is malformed or does not fit the schema it is loaded into.
    Fixture,
    /// The schema migrations could not be read or applied, or lack the version asked for.
    Schema,
    /// The database refused a statement of a data migration (batch, check or snapshot query),
    /// or the data migration names a table or key the schema does not have.
    Statement,
    /// The connection or the database itself failed, outside any one statement of the user's.
    Database,
    /// Reading or writing a file (directories, snapshots).
    Io,
}

/// An error with the place it comes from. `Display`: `path:line: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    pub path: Option<PathBuf>,
    /// 1-based line in `path`.
    pub line: Option<usize>,
    /// One line, lower-case start, no trailing period.
    pub message: String,
    /// Whether and how retrying may succeed. Set only where a database's error is classified
    /// (`db::postgres::classify`, `db::sqlite::classify`); everything else is [`Retry::Never`].
    pub retry: Retry,
}

/// Whether and how an error may be retried: the one classification every caller uses (the
/// batch loop, connecting, the control commands).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// The connection is gone (or the server is shutting down or starting): reconnect, then
    /// retry.
    Reconnect,
    /// Lock timeout, deadlock, serialization failure, a busy SQLite file: back off and retry the
    /// same work.
    Backoff,
    /// Statement timeout: retry with a smaller batch.
    Split,
    /// Retrying will not help.
    Never,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            path: None,
            line: None,
            message: one_line(&crate::secrets::scrub(&message.into())),
            retry: Retry::Never,
        }
    }

    /// An error at `path:line`.
    pub fn at(kind: ErrorKind, path: &Path, line: usize, message: impl Into<String>) -> Error {
        Error::new(kind, message).in_file(path).at_line(line)
    }

    /// An error about the file `path` as a whole.
    pub fn file(kind: ErrorKind, path: &Path, message: impl Into<String>) -> Error {
        Error::new(kind, message).in_file(path)
    }

    pub fn in_file(mut self, path: &Path) -> Error {
        self.path = Some(path.to_path_buf());
        self
    }

    pub fn at_line(mut self, line: usize) -> Error {
        self.line = Some(line);
        self
    }

    pub fn with_kind(mut self, kind: ErrorKind) -> Error {
        self.kind = kind;
        self
    }

    pub fn with_retry(mut self, retry: Retry) -> Error {
        self.retry = retry;
        self
    }

    /// Whether a retry may succeed.
    pub fn is_transient(&self) -> bool {
        self.retry != Retry::Never
    }

    /// Puts `context` in front of the message: `path:line: context: message`.
    pub fn context(mut self, context: impl fmt::Display) -> Error {
        self.message = one_line(&crate::secrets::scrub(&format!(
            "{context}: {}",
            self.message
        )));
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(path) = &self.path {
            write!(f, "{}:", display_path(path))?;
            if let Some(line) = self.line {
                write!(f, "{line}:")?;
            }
            f.write_str(" ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `path` relative to the current directory when it is inside it: error messages name files
/// the way the person typed them, not as long absolute paths.
pub fn display_path(path: &Path) -> String {
    if let Ok(cwd) = std::env::current_dir()
        && let Ok(relative) = path.strip_prefix(&cwd)
    {
        return relative.display().to_string();
    }
    path.display().to_string()
}

/// Folds a multi-line message (PostgreSQL's DETAIL and HINT, SQLite's context) onto one line.
fn one_line(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for (i, part) in message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .enumerate()
    {
        if i > 0 {
            out.push_str("; ");
        }
        out.push_str(part);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_file_and_line() {
        let e = Error::at(
            ErrorKind::Format,
            Path::new("/nowhere/V1__a.sql"),
            7,
            "bad value",
        );
        assert_eq!(e.to_string(), "/nowhere/V1__a.sql:7: bad value");
        let e = Error::file(
            ErrorKind::Fixture,
            Path::new("/nowhere/users.csv"),
            "no such table",
        );
        assert_eq!(e.to_string(), "/nowhere/users.csv: no such table");
    }

    #[test]
    fn messages_are_folded_onto_one_line() {
        let e = Error::new(
            ErrorKind::Statement,
            "duplicate key\nDETAIL:  Key (id)=(1) exists.\n",
        );
        assert_eq!(e.message, "duplicate key; DETAIL:  Key (id)=(1) exists.");
        let e = e.context("batch (0, 10]");
        assert!(!e.to_string().contains('\n'));
        assert!(e.to_string().starts_with("batch (0, 10]: duplicate key"));
    }
}
