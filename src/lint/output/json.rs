//! One JSON document for the whole run: `{"files": N, "findings": [...]}`, each finding with its
//! path, 1-based start and (exclusive) end, rule, category, severity, message, help, a note
//! only when there is one, and with `--estimate` an `estimate` object (`lint::estimate::Estimate`).

use serde::Serialize;

use super::located;
use crate::lint::estimate::Estimate;
use crate::lint::{Report, Severity};

#[derive(Serialize)]
struct Document<'a> {
    files: usize,
    findings: Vec<JsonFinding<'a>>,
}

#[derive(Serialize)]
struct JsonFinding<'a> {
    path: std::borrow::Cow<'a, str>,
    line: usize,
    column: usize,
    end_line: usize,
    end_column: usize,
    rule: &'static str,
    /// `Category::as_str` (`data-migration`), not its serde name (`datamigration`).
    category: &'static str,
    severity: Severity,
    message: &'a str,
    help: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<&'a str>,
    /// With `--estimate`: what the statement costs on the target database.
    #[serde(skip_serializing_if = "Option::is_none")]
    estimate: Option<&'a Estimate>,
}

pub(super) fn render(report: &Report) -> String {
    let findings = located(report)
        .into_iter()
        .map(|(file, finding, location)| JsonFinding {
            path: file.path.to_string_lossy(),
            line: location.start.line,
            column: location.start.column,
            end_line: location.end.line,
            end_column: location.end.column,
            rule: finding.rule.as_str(),
            category: finding.rule.category().as_str(),
            severity: finding.severity,
            message: &finding.message,
            help: &finding.help,
            note: finding.note.as_deref(),
            estimate: finding.estimate.as_deref(),
        })
        .collect();
    let document = Document {
        files: report.files.len(),
        findings,
    };
    // Sized for the usual finding (its message and help make most of it), so the output does
    // not move as it grows.
    let mut out = Vec::with_capacity(64 + document.findings.len() * 768);
    // Plain data (strings and integers) into memory: serializing it cannot fail, and serde_json
    // writes UTF-8.
    serde_json::to_writer_pretty(&mut out, &document).unwrap_or_default();
    out.push(b'\n');
    String::from_utf8(out).unwrap_or_default()
}
