//! Snapshots of every format for one small hand-built report, the location rules they share,
//! and a check of the SARIF output against the OASIS schema.

use std::path::PathBuf;

use super::{Format, LineIndex, Position, render};
use crate::lint::{FileReport, Finding, Report, RuleId, Severity};

const V4: &str = "\
-- Compteurs dénormalisés « followers »
ALTER TABLE users ADD COLUMN followers_count bigint NOT NULL DEFAULT 0;
UPDATE users
   SET followers_count = (SELECT count(*) FROM follows
                          WHERE follows.followee_id = users.id);
/* ünïcödé ✓ */ CREATE INDEX users_followers_idx ON users (followers_count);
";

fn span_of(text: &str, needle: &str) -> std::ops::Range<usize> {
    let start = text.find(needle).expect("needle in text");
    start..start + needle.len()
}

fn finding(
    rule: RuleId,
    severity: Severity,
    span: std::ops::Range<usize>,
    message: &str,
    help: &str,
) -> Finding {
    Finding {
        rule,
        severity,
        anchor: Some(span.clone()),
        span,
        message: message.into(),
        help: help.into(),
        note: None,
        estimate: None,
    }
}

/// Two files with findings and one without: an error and a warning, a multi-line statement,
/// non-ASCII text before a span on its line, a note, and a finding about a file's name.
fn sample() -> Report {
    let update = span_of(
        V4,
        "UPDATE users\n   SET followers_count = (SELECT count(*) FROM follows\n                          WHERE follows.followee_id = users.id)",
    );
    let index = span_of(
        V4,
        "CREATE INDEX users_followers_idx ON users (followers_count)",
    );
    let alter = span_of(
        V4,
        "ALTER TABLE users ADD COLUMN followers_count bigint NOT NULL DEFAULT 0",
    );
    Report {
        files: vec![
            FileReport {
                path: PathBuf::from("migrations/V1__create_users.sql"),
                text: "CREATE TABLE users (id bigint PRIMARY KEY);\n".into(),
                findings: vec![],
            },
            FileReport {
                path: PathBuf::from("migrations/V4__add_counter_caches.sql"),
                text: V4.into(),
                findings: vec![
                    finding(
                        RuleId::RequireLockTimeout,
                        Severity::Warning,
                        alter,
                        "ALTER TABLE takes an ACCESS EXCLUSIVE lock on `users` with no lock_timeout set",
                        "start the migration with `SET lock_timeout = '2s';`",
                    ),
                    finding(
                        RuleId::BackfillUpdate,
                        Severity::Error,
                        update,
                        "this UPDATE rewrites every row of `users` inside the migration",
                        "move it to `data-migrations/` as a batched data migration",
                    )
                    .with_note("`users` existed before this migration"),
                    finding(
                        RuleId::IndexNotConcurrent,
                        Severity::Error,
                        index,
                        "CREATE INDEX blocks writes to `users` while it builds",
                        "use CREATE INDEX CONCURRENTLY, in a migration of its own",
                    ),
                ],
            },
            FileReport {
                path: PathBuf::from("migrations/V5-rename, 100%: done.sql"),
                text: "ALTER TABLE posts RENAME TO articles;\n".into(),
                findings: vec![Finding::file(
                    RuleId::MigrationNameSkipped,
                    "refinery skips this file without running it",
                    "rename it to `V5__rename_100_done.sql`",
                )],
            },
        ],
    }
}

#[test]
fn human_plain() {
    insta::assert_snapshot!(render(&sample(), Format::Human, false));
}

#[test]
fn human_styled_has_colors_and_the_same_text() {
    let styled = render(&sample(), Format::Human, true);
    assert!(
        styled.contains("\u{1b}["),
        "styled output has no escape codes"
    );
    assert!(styled.contains("migrations/V4__add_counter_caches.sql:6:17"));
    assert!(!render(&sample(), Format::Human, false).contains('\u{1b}'));
}

#[test]
fn human_summary_lines() {
    let empty = Report::default();
    assert_eq!(
        render(&empty, Format::Human, false),
        "no findings in 0 files\n"
    );
    let mut one = sample();
    one.files.truncate(1);
    assert_eq!(
        render(&one, Format::Human, false),
        "no findings in 1 file\n"
    );
    let mut single = sample();
    single.files.remove(1);
    assert!(
        render(&single, Format::Human, false).ends_with(
            "\n1 error, 0 warnings in 2 files\n`cargo xtask migrate lint --explain RULE` prints a rule's documentation\n"
        ),
        "{}",
        render(&single, Format::Human, false)
    );
}

#[test]
fn human_caps_a_long_statement() {
    let body: String = (0..500)
        .map(|i| format!("  UPDATE users SET n = {i} WHERE id = {i};\n"))
        .collect();
    let text = format!("DO $$\nBEGIN\n{body}END $$;\n");
    let report = Report {
        files: vec![FileReport {
            path: PathBuf::from("V9__do.sql"),
            findings: vec![finding(
                RuleId::BackfillDoBlock,
                Severity::Error,
                0..text.len() - 2,
                "the DO block updates `users`",
                "move it to a data migration",
            )],
            text,
        }],
    };
    let out = render(&report, Format::Human, false);
    assert!(
        out.lines().count() < 20,
        "a 503-line statement should be folded:\n{out}"
    );
    assert!(out.contains("V9__do.sql:1:1"), "{out}");
    assert!(
        out.contains("END $$"),
        "the statement's last line is shown:\n{out}"
    );
}

#[test]
fn json() {
    insta::assert_snapshot!(render(&sample(), Format::Json, false));
}

#[test]
fn json_has_note_only_when_present() {
    let value: serde_json::Value =
        serde_json::from_str(&render(&sample(), Format::Json, false)).unwrap();
    assert_eq!(value["files"], 3);
    let findings = value["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 4);
    let with_note: Vec<_> = findings
        .iter()
        .filter(|f| f.get("note").is_some())
        .collect();
    assert_eq!(with_note.len(), 1);
    assert_eq!(with_note[0]["rule"], "backfill-update");
}

#[test]
fn github() {
    insta::assert_snapshot!(render(&sample(), Format::Github, false));
}

#[test]
fn github_is_one_line_per_finding() {
    let mut report = sample();
    report.files[1].findings[0].message = "two\nlines".into();
    let out = render(&report, Format::Github, false);
    assert_eq!(out.lines().count(), 4);
    assert!(out.contains("::two%0Alines. help: "), "{out}");
    assert!(
        out.starts_with("::warning file=migrations/V4__add_counter_caches.sql,line=2,col=1,"),
        "{out}"
    );
}

#[test]
fn sarif() {
    let mut value: serde_json::Value =
        serde_json::from_str(&render(&sample(), Format::Sarif, false)).unwrap();
    // The version changes with every release, the rule list and indexes with every new rule
    // (checked below, rule by rule); the rest is the format.
    let driver = &mut value["runs"][0]["tool"]["driver"];
    driver["version"] = "[version]".into();
    driver["rules"] = "[every rule, see sarif_lists_every_rule]".into();
    for result in value["runs"][0]["results"].as_array_mut().unwrap() {
        result["ruleIndex"] = "[index]".into();
    }
    insta::assert_json_snapshot!(value);
}

#[test]
fn sarif_lists_every_rule_and_indexes_results_into_them() {
    let value: serde_json::Value =
        serde_json::from_str(&render(&sample(), Format::Sarif, false)).unwrap();
    let driver = &value["runs"][0]["tool"]["driver"];
    let rules = driver["rules"].as_array().unwrap();
    assert_eq!(rules.len(), RuleId::ALL.len());
    for (rule, id) in rules.iter().zip(RuleId::ALL) {
        assert_eq!(rule["id"], id.as_str());
        assert_eq!(rule["shortDescription"]["text"], id.description());
        assert!(!id.description().is_empty(), "{id} has no description");
        assert_eq!(rule["properties"]["category"], id.category().as_str());
        assert_eq!(rule["properties"]["tags"][0], id.category().as_str());
        assert_eq!(
            rule["defaultConfiguration"]["level"],
            id.default_severity().as_str()
        );
    }
    let results = value["runs"][0]["results"].as_array().unwrap();
    assert_eq!(results.len(), 4);
    for result in results {
        let index = result["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(rules[index]["id"], result["ruleId"]);
    }
    assert_eq!(driver["version"], env!("CARGO_PKG_VERSION"));
}

#[test]
fn sarif_is_valid_against_the_oasis_schema() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/sarif-schema-2.1.0.json"
    );
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(path).expect("the vendored SARIF schema (tests/data/)"),
    )
    .expect("the SARIF schema is JSON");
    // Formats are checked too (`uri` for `$schema` and `informationUri`, `uri-reference` for
    // artifact locations).
    let validator = jsonschema::draft7::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("the SARIF schema compiles");
    let mut report = sample();
    // Paths a URI must encode, and an absolute one.
    report.files[2].path = PathBuf::from("migrations/sub dir/V5__é.sql");
    report.files.push(FileReport {
        path: PathBuf::from("/abs/V6__x.sql"),
        text: String::new(),
        findings: vec![Finding::file(RuleId::DuplicateMigrationVersion, "m", "h")],
    });
    for report in [sample(), report, Report::default()] {
        let value: serde_json::Value =
            serde_json::from_str(&render(&report, Format::Sarif, false)).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&value)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "SARIF output is not valid:\n{}",
            errors.join("\n")
        );
    }
    // The validator does reject what the schema forbids.
    let mut broken: serde_json::Value =
        serde_json::from_str(&render(&sample(), Format::Sarif, false)).unwrap();
    broken["runs"][0]["results"][0]["level"] = "fatal".into();
    assert!(!validator.is_valid(&broken));
    broken["runs"][0]["results"][0]["level"] = "error".into();
    broken["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["region"]["startLine"] =
        0.into();
    assert!(!validator.is_valid(&broken));
    let mut broken: serde_json::Value =
        serde_json::from_str(&render(&sample(), Format::Sarif, false)).unwrap();
    broken["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] =
        "a b.sql".into();
    assert!(!validator.is_valid(&broken), "formats are checked");
}

#[test]
fn positions_count_characters_from_one() {
    let text = "ab\ncafé x\r\n\nlast";
    let index = LineIndex::new(text);
    assert_eq!(index.position(0), Position { line: 1, column: 1 });
    assert_eq!(index.position(2), Position { line: 1, column: 3 });
    assert_eq!(index.position(3), Position { line: 2, column: 1 });
    // "café " is 6 bytes and 5 characters.
    assert_eq!(index.position(3 + 6), Position { line: 2, column: 6 });
    assert_eq!(index.position(text.len()), Position { line: 4, column: 5 });
}

#[test]
fn locate_clamps_and_trims() {
    let text = "é\nUPDATE t SET a = 1;\n";
    let index = LineIndex::new(text);
    let at = |span: std::ops::Range<usize>, anchor: Option<std::ops::Range<usize>>| {
        let mut f = finding(RuleId::BackfillUpdate, Severity::Error, span, "m", "h");
        f.anchor = anchor;
        index.locate(&f)
    };
    // A file-level finding.
    let whole = at(0..0, None);
    assert!(whole.whole_file);
    assert_eq!(
        (whole.start, whole.end),
        (
            Position { line: 1, column: 1 },
            Position { line: 1, column: 1 }
        )
    );
    // Offsets inside `é` move to its start; offsets past the end are clamped.
    let inside = at(1..1000, Some(1..1000));
    assert_eq!(
        inside.span,
        0..text.len() - 1,
        "and the trailing newline is dropped"
    );
    assert_eq!(
        inside.end,
        Position {
            line: 2,
            column: 20
        }
    );
    // A span that ends with its line break ends on its own line.
    let update = at(3..text.len(), Some(3..text.len()));
    assert_eq!(update.start, Position { line: 2, column: 1 });
    assert_eq!(
        update.end,
        Position {
            line: 2,
            column: 20
        }
    );
    // Reversed spans (built from values, as a parser bug would) do not underflow.
    let (start, end) = (10, 4);
    let reversed = at(start..end, Some(start..end));
    assert_eq!(reversed.span, 10..10);
}

#[test]
fn lines_of_quotes_whole_lines_without_line_breaks() {
    let text = "a;\r\nSELECT\r\n  1;\r\nb;";
    let index = LineIndex::new(text);
    let select = span_of(text, "SELECT\r\n  1");
    assert_eq!(&text[index.lines_of(&select)], "SELECT\r\n  1;");
    let last = span_of(text, "b");
    assert_eq!(&text[index.lines_of(&last)], "b;");
}

#[test]
fn every_format_survives_hostile_spans_and_text() {
    let text = "\u{1b}[31mé\u{0}\r\n\t✓";
    let mut findings = Vec::new();
    for start in 0..text.len() + 3 {
        for end in [0, start, start + 1, text.len(), text.len() + 5] {
            findings.push(finding(
                RuleId::SyntaxError,
                Severity::Error,
                start..end,
                "m\u{1b}",
                "h\r\n",
            ));
        }
    }
    let report = Report {
        files: vec![FileReport {
            path: PathBuf::from("x.sql"),
            text: text.into(),
            findings,
        }],
    };
    for format in [Format::Human, Format::Json, Format::Github, Format::Sarif] {
        assert!(!render(&report, format, true).is_empty());
    }
}

#[test]
fn positions_agree_with_counting_from_the_line_start_in_any_order() {
    let text = "é✓a\nxyz ünï\n\n✓✓✓ end";
    let index = LineIndex::new(text);
    let naive = |offset: usize| {
        let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
        Position {
            line: text[..offset].matches('\n').count() + 1,
            column: text[line_start..offset].chars().count() + 1,
        }
    };
    let offsets: Vec<usize> = (0..=text.len())
        .filter(|&o| text.is_char_boundary(o))
        .collect();
    for &offset in offsets
        .iter()
        .chain(offsets.iter().rev())
        .chain(offsets.iter().step_by(3))
    {
        assert_eq!(index.position(offset), naive(offset), "offset {offset}");
    }
}

#[test]
fn human_gives_a_huge_statement_its_position_only() {
    let values: String = (0..40_000).map(|i| format!("({i}),")).collect();
    let text = format!("SELECT 1;\nINSERT INTO t SELECT * FROM (VALUES {values} (0)) v;\n");
    let start = text.find("INSERT").unwrap();
    let report = Report {
        files: vec![FileReport {
            path: PathBuf::from("V2__big.sql"),
            findings: vec![finding(
                RuleId::BackfillInsertSelect,
                Severity::Error,
                start..text.len() - 2,
                "m",
                "h",
            )],
            text,
        }],
    };
    let out = render(&report, Format::Human, false);
    assert!(out.contains("V2__big.sql:2:1"), "{out}");
    assert!(out.len() < 500, "{} bytes", out.len());
}
