//! GitHub Actions workflow commands: one `::error` or `::warning` line per finding, which the
//! Actions runner turns into an annotation on the file and line in the pull request.
//!
//! GitHub's escaping: in the message, `%`, `\r` and `\n` become `%25`, `%0D` and `%0A`; in a
//! property value, `:` and `,` (which delimit properties) become `%3A` and `%2C` as well.

use super::{full_message, located, slash_path};
use crate::lint::{Report, Severity};

pub(super) fn render(report: &Report) -> String {
    let mut out = String::new();
    for (file, finding, location) in located(report) {
        let command = match finding.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        out.push_str(&format!(
            "::{command} file={},line={},col={},endLine={},endColumn={},title={}::{}\n",
            escape_property(&slash_path(&file.path)),
            location.start.line,
            location.start.column,
            location.end.line,
            location.end.column,
            escape_property(finding.rule.as_str()),
            escape_data(&full_message(finding)),
        ));
    }
    out
}

fn escape_data(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '%' => out.push_str("%25"),
            '\r' => out.push_str("%0D"),
            '\n' => out.push_str("%0A"),
            c => out.push(c),
        }
    }
    out
}

fn escape_property(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '%' => out.push_str("%25"),
            '\r' => out.push_str("%0D"),
            '\n' => out.push_str("%0A"),
            ':' => out.push_str("%3A"),
            ',' => out.push_str("%2C"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{escape_data, escape_property};

    #[test]
    fn escapes_data_as_github_does() {
        assert_eq!(
            escape_data("100% done\r\nnext: a, b"),
            "100%25 done%0D%0Anext: a, b"
        );
    }

    #[test]
    fn escapes_properties_as_github_does() {
        assert_eq!(
            escape_property("dir,x/a:b%\n.sql"),
            "dir%2Cx/a%3Ab%25%0A.sql"
        );
    }
}
