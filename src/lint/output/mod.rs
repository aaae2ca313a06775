//! Output formats for a lint [`Report`]: human (rustc-style), JSON, GitHub annotations, SARIF.
//!
//! Every format locates a finding the same way ([`Location`]): lines and columns are 1-based,
//! columns count characters (not bytes), the end is exclusive (the column just after the last
//! character, as SARIF defines it), and a finding about the whole file points at line 1,
//! column 1. Each file's line index is built once, so locating is never quadratic.

mod github;
mod human;
mod json;
mod sarif;

use std::cell::Cell;
use std::path::{Component, Path};

use super::{FileReport, Finding, Report};
use crate::sql::Span;

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// rustc-style diagnostics with the source line, a caret under the statement, and a help line.
    Human,
    /// One JSON document: `{"files": N, "findings": [...]}`.
    Json,
    /// GitHub Actions workflow commands (`::error file=...,line=...::...`).
    Github,
    /// SARIF 2.1.0, for code-scanning dashboards.
    Sarif,
}

/// Renders `report`. `color` styles human output (for a terminal); the machine formats ignore it.
pub fn render(report: &Report, format: Format, color: bool) -> String {
    match format {
        Format::Human => human::render(report, color),
        Format::Json => json::render(report),
        Format::Github => github::render(report),
        Format::Sarif => sarif::render(report),
    }
}

/// A 1-based line and character column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Position {
    pub line: usize,
    pub column: usize,
}

/// Where a finding points, in the terms every format uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Location {
    /// The span clamped to the text and to character boundaries, without a trailing line break.
    pub span: Span,
    pub start: Position,
    /// Exclusive: the position just after the last character of the span.
    pub end: Position,
    /// A finding about the whole file (no statement): there is no source to quote.
    pub whole_file: bool,
}

/// Byte offsets of line starts in one file's text.
pub(crate) struct LineIndex<'a> {
    text: &'a str,
    starts: Vec<usize>,
    /// The last position computed (line index, byte offset, column). Findings come in order, so
    /// the next column on the same line is counted from there: many findings on one long line
    /// (a minified migration) cost one pass over it, not one pass each.
    last: Cell<(usize, usize, usize)>,
}

impl<'a> LineIndex<'a> {
    pub fn new(text: &'a str) -> Self {
        let mut starts = vec![0];
        // `match_indices` of one ASCII character searches with memchr.
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex {
            text,
            starts,
            last: Cell::new((0, 0, 1)),
        }
    }

    /// The 0-based line holding byte `offset` (a character boundary within the text).
    fn line_index(&self, offset: usize) -> usize {
        // `starts[0] == 0`, so at least one start is `<= offset`.
        self.starts.partition_point(|&start| start <= offset) - 1
    }

    /// The position of byte `offset` (a character boundary within the text).
    pub fn position(&self, offset: usize) -> Position {
        let line = self.line_index(offset);
        let (last_line, last_offset, last_column) = self.last.get();
        let (from, column) = if last_line == line && last_offset <= offset {
            (last_offset, last_column)
        } else {
            (self.starts[line], 1)
        };
        let column = column + self.text[from..offset].chars().count();
        self.last.set((line, offset, column));
        Position {
            line: line + 1,
            column,
        }
    }

    /// Byte range of the lines that `span` touches, without the final line break: what a
    /// renderer quotes.
    pub fn lines_of(&self, span: &Span) -> Span {
        let first = self.line_index(span.start);
        let last = self.line_index(span.end);
        let end = self
            .starts
            .get(last + 1)
            .map_or(self.text.len(), |&next| next - 1);
        let end = if end > self.starts[first] && self.text.as_bytes().get(end - 1) == Some(&b'\r') {
            end - 1
        } else {
            end
        };
        self.starts[first]..end.max(self.starts[first])
    }

    /// Locates `finding`. Spans come from parsers and are trusted only this far: out-of-range
    /// offsets are clamped and offsets inside a character move to its start, so no input can make
    /// a renderer slice off a character boundary.
    pub fn locate(&self, finding: &Finding) -> Location {
        let whole_file = finding.anchor.is_none() && finding.span == (0..0);
        let start = floor_char_boundary(self.text, finding.span.start);
        let mut end = floor_char_boundary(self.text, finding.span.end).max(start);
        // A span that ends with its line break would point at the start of the next line.
        let bytes = self.text.as_bytes();
        while end > start && matches!(bytes[end - 1], b'\n' | b'\r') {
            end -= 1;
        }
        Location {
            span: start..end,
            start: self.position(start),
            end: self.position(end),
            whole_file,
        }
    }
}

fn floor_char_boundary(text: &str, offset: usize) -> usize {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

/// Each finding of `report` with its file and location, in report order. One line index per
/// file.
pub(crate) fn located(report: &Report) -> Vec<(&FileReport, &Finding, Location)> {
    let mut out = Vec::new();
    for file in &report.files {
        if file.findings.is_empty() {
            continue;
        }
        let index = LineIndex::new(&file.text);
        for finding in &file.findings {
            out.push((file, finding, index.locate(finding)));
        }
    }
    out
}

/// The path with `/` between components whatever the platform: what GitHub and SARIF expect.
pub(crate) fn slash_path(path: &Path) -> String {
    let mut out = String::new();
    for component in path.components() {
        match component {
            Component::RootDir => out.push('/'),
            Component::Prefix(prefix) => out.push_str(&prefix.as_os_str().to_string_lossy()),
            Component::CurDir => {}
            Component::ParentDir | Component::Normal(_) => {
                if !out.is_empty() && !out.ends_with('/') {
                    out.push('/');
                }
                out.push_str(&component.as_os_str().to_string_lossy());
            }
        }
    }
    out
}

/// The message with its note, estimate and help, for formats that have one text field (GitHub,
/// SARIF).
pub(crate) fn full_message(finding: &Finding) -> String {
    let mut text = finding.message.clone();
    if let Some(note) = &finding.note {
        text.push_str(". note: ");
        text.push_str(note);
    }
    if let Some(estimate) = &finding.estimate {
        text.push_str(". estimate: ");
        text.push_str(&estimate.text);
    }
    text.push_str(". help: ");
    text.push_str(&finding.help);
    text
}

#[cfg(test)]
mod tests;
