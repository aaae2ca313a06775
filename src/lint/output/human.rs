//! rustc-style diagnostics, rendered by annotate-snippets: a title with the rule id, the path
//! and position, the statement's source lines with the statement underlined, then `= note:`,
//! `= estimate:` (with `--estimate`) and `= help:` lines, and a summary line at the end.
//!
//! Only the lines a statement spans are handed to the renderer (not the whole file), and the
//! renderer folds a long statement to its first and last lines, so a 500-line DO block costs a
//! handful of output lines.

use annotate_snippets::{
    AnnotationKind, Group, Level, Origin, Renderer, Snippet, normalize_untrusted_str,
};

use super::{LineIndex, Location};
use crate::lint::{FileReport, Finding, Report, Severity};

/// The most source a diagnostic hands to the renderer (the lines of one statement). The
/// renderer folds long statements and trims long lines for display, but reads them whole.
const MAX_QUOTED_BYTES: usize = 256 * 1024;

pub(super) fn render(report: &Report, color: bool) -> String {
    let renderer = if color {
        Renderer::styled()
    } else {
        Renderer::plain()
    };
    let mut out = String::new();
    let (mut errors, mut warnings) = (0usize, 0usize);
    for file in &report.files {
        if file.findings.is_empty() {
            continue;
        }
        let index = LineIndex::new(&file.text);
        for finding in &file.findings {
            match finding.severity {
                Severity::Error => errors += 1,
                Severity::Warning => warnings += 1,
            }
            let location = index.locate(finding);
            out.push_str(&renderer.render(&[diagnostic(file, finding, &location, &index)]));
            out.push_str("\n\n");
        }
    }
    out.push_str(&summary(errors, warnings, report.files.len()));
    out.push('\n');
    if errors + warnings > 0 {
        out.push_str("`cargo xtask migrate lint --explain RULE` prints a rule's documentation\n");
    }
    out
}

fn diagnostic<'a>(
    file: &'a FileReport,
    finding: &'a Finding,
    location: &Location,
    index: &LineIndex<'a>,
) -> Group<'a> {
    let level = match finding.severity {
        Severity::Error => Level::ERROR,
        Severity::Warning => Level::WARNING,
    };
    let path = file.path.display().to_string();
    let title = level
        .primary_title(finding.message.as_str())
        .id(finding.rule.as_str());
    let lines = index.lines_of(&location.span);
    let mut group = if location.whole_file || lines.is_empty() || lines.len() > MAX_QUOTED_BYTES {
        // Nothing to quote: a finding about the file itself (its name, its encoding), or a
        // position on an empty line. Or too much: the renderer reads every line it is given, so
        // a statement on megabytes of lines gets its position only.
        title.element(
            Origin::path(path)
                .line(location.start.line)
                .char_column(location.start.column),
        )
    } else {
        let source = &file.text[lines.clone()];
        let span = location.span.start - lines.start..location.span.end - lines.start;
        title.element(
            Snippet::source(source)
                .line_start(location.start.line)
                .path(path)
                .annotation(AnnotationKind::Primary.span(span)),
        )
    };
    if let Some(note) = &finding.note {
        group = group.element(Level::NOTE.message(normalize_untrusted_str(note)));
    }
    if let Some(estimate) = &finding.estimate {
        group = group.element(
            Level::NOTE
                .with_name("estimate")
                .message(normalize_untrusted_str(&estimate.text)),
        );
    }
    group.element(Level::HELP.message(normalize_untrusted_str(&finding.help)))
}

fn summary(errors: usize, warnings: usize, files: usize) -> String {
    let files = plural(files, "file");
    if errors == 0 && warnings == 0 {
        format!("no findings in {files}")
    } else {
        format!(
            "{}, {} in {files}",
            plural(errors, "error"),
            plural(warnings, "warning")
        )
    }
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}
