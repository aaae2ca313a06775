//! SARIF 2.1.0: one run whose driver lists every rule the linter knows (so dashboards can show
//! rules that found nothing), and one result per finding with its physical location.
//!
//! Columns count Unicode code points, which SARIF calls `unicodeCodePoints`; the run says so,
//! because SARIF's default is UTF-16 code units. Artifact URIs are relative references with
//! forward slashes (percent-encoded), resolved by code-scanning tools against the repository root.

use serde::Serialize;

use super::{full_message, located, slash_path};
use crate::lint::{Report, RuleId, Severity};

/// The OASIS schema location for SARIF 2.1.0 (errata 01, the current text of the standard).
const SCHEMA: &str =
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json";

/// Where to read about the tool: the package's repository or homepage. SARIF makes the field
/// optional, and an empty string would not be a URI, so it is left out when neither is set.
fn information_uri() -> Option<&'static str> {
    [env!("CARGO_PKG_REPOSITORY"), env!("CARGO_PKG_HOMEPAGE")]
        .into_iter()
        .find(|uri| !uri.is_empty())
}

#[derive(Serialize)]
struct Log<'a> {
    #[serde(rename = "$schema")]
    schema: &'static str,
    version: &'static str,
    runs: [Run<'a>; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Run<'a> {
    tool: Tool,
    column_kind: &'static str,
    results: Vec<SarifResult<'a>>,
}

#[derive(Serialize)]
struct Tool {
    driver: Driver,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Driver {
    name: &'static str,
    version: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    information_uri: Option<&'static str>,
    rules: Vec<Rule>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    id: &'static str,
    short_description: Message<'static>,
    default_configuration: Configuration,
    properties: RuleProperties,
}

#[derive(Serialize)]
struct Configuration {
    level: &'static str,
}

#[derive(Serialize)]
struct RuleProperties {
    category: &'static str,
    /// GitHub code scanning filters alerts by these.
    tags: [&'static str; 1],
}

#[derive(Serialize)]
struct Message<'a> {
    text: std::borrow::Cow<'a, str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SarifResult<'a> {
    rule_id: &'static str,
    rule_index: usize,
    level: &'static str,
    message: Message<'a>,
    locations: [SarifLocation; 1],
    /// With `--estimate`: `{"estimate": {...}}`, the object the JSON format has.
    #[serde(skip_serializing_if = "Option::is_none")]
    properties: Option<ResultProperties<'a>>,
}

#[derive(Serialize)]
struct ResultProperties<'a> {
    estimate: &'a crate::lint::estimate::Estimate,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SarifLocation {
    physical_location: PhysicalLocation,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PhysicalLocation {
    artifact_location: ArtifactLocation,
    region: Region,
}

#[derive(Serialize)]
struct ArtifactLocation {
    uri: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Region {
    start_line: usize,
    start_column: usize,
    end_line: usize,
    end_column: usize,
}

fn level(severity: Severity) -> &'static str {
    match severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    }
}

pub(super) fn render(report: &Report) -> String {
    let rules = RuleId::ALL
        .iter()
        .map(|&rule| Rule {
            id: rule.as_str(),
            short_description: Message {
                text: rule.description().into(),
            },
            default_configuration: Configuration {
                level: level(rule.default_severity()),
            },
            properties: RuleProperties {
                category: rule.category().as_str(),
                tags: [rule.category().as_str()],
            },
        })
        .collect();
    let results = located(report)
        .into_iter()
        .map(|(file, finding, location)| SarifResult {
            rule_id: finding.rule.as_str(),
            rule_index: RuleId::ALL
                .iter()
                .position(|&rule| rule == finding.rule)
                .unwrap_or_default(),
            level: level(finding.severity),
            message: Message {
                text: full_message(finding).into(),
            },
            locations: [SarifLocation {
                physical_location: PhysicalLocation {
                    artifact_location: ArtifactLocation {
                        uri: artifact_uri(&file.path),
                    },
                    region: Region {
                        start_line: location.start.line,
                        start_column: location.start.column,
                        end_line: location.end.line,
                        end_column: location.end.column,
                    },
                },
            }],
            properties: finding
                .estimate
                .as_deref()
                .map(|estimate| ResultProperties { estimate }),
        })
        .collect();
    let log = Log {
        schema: SCHEMA,
        version: "2.1.0",
        runs: [Run {
            tool: Tool {
                driver: Driver {
                    name: env!("CARGO_PKG_NAME"),
                    version: env!("CARGO_PKG_VERSION"),
                    information_uri: information_uri(),
                    rules,
                },
            },
            column_kind: "unicodeCodePoints",
            results,
        }],
    };
    // Plain data (strings and integers): serializing it cannot fail.
    let mut out = serde_json::to_string_pretty(&log).unwrap_or_default();
    out.push('\n');
    out
}

/// A URI reference for `path`: relative paths stay relative, absolute ones become `file:` URIs.
/// Every byte outside RFC 3986's unreserved set (and `/`) is percent-encoded, which also keeps a
/// `:` in a file name from reading as a URI scheme.
fn artifact_uri(path: &std::path::Path) -> String {
    let slashed = slash_path(path);
    let mut out = String::new();
    if path.is_absolute() {
        out.push_str("file://");
        if !slashed.starts_with('/') {
            out.push('/');
        }
    }
    for &byte in slashed.as_bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::artifact_uri;

    #[test]
    fn relative_paths_stay_relative_and_are_percent_encoded() {
        assert_eq!(
            artifact_uri(Path::new("migrations/V1__a.sql")),
            "migrations/V1__a.sql"
        );
        assert_eq!(
            artifact_uri(Path::new("./m/V1__é b.sql")),
            "m/V1__%C3%A9%20b.sql"
        );
        assert_eq!(artifact_uri(Path::new("a:b.sql")), "a%3Ab.sql");
    }

    #[cfg(unix)]
    #[test]
    fn absolute_paths_become_file_uris() {
        assert_eq!(
            artifact_uri(Path::new("/repo/m/V1__a.sql")),
            "file:///repo/m/V1__a.sql"
        );
    }
}
