//! Suppression comments: a reviewed exception, written next to the statement it excuses.
//!
//! ```sql
//! -- migrate-lint: allow(backfill-update) roles has five rows in every environment
//! UPDATE roles SET name = lower(name);
//!
//! -- migrate-lint: allow-file(require-lock-timeout, index-not-concurrent) runs before launch
//! ```
//!
//! `allow(...)` covers the next statement (all of it, including a DO block's body); `allow-file(...)`
//! covers the whole file, wherever it appears. The reason is the rest of the comment and is
//! mandatory: an exception nobody can explain later is not reviewed. A missing reason, an unknown
//! rule id, or a directive that is neither form is itself a finding, and so is a suppression that
//! suppressed nothing (a warning: the exception outlived its cause).

use std::collections::HashSet;

use super::{Finding, RuleId};
use crate::sql::{Comment, ParsedFile, Span};

/// The prefix that marks a comment as meant for the linter.
pub const PREFIX: &str = "migrate-lint:";

#[derive(Debug)]
struct Directive {
    comment: Span,
    file_level: bool,
    rules: Vec<RuleId>,
    /// Where the statement it covers starts (`None` for file-level, or nothing follows).
    target: Option<usize>,
}

/// Removes suppressed findings and adds findings about the suppression comments themselves.
pub fn apply(parsed: &ParsedFile, findings: Vec<Finding>) -> Vec<Finding> {
    let mut problems = Vec::new();
    let mut directives = Vec::new();

    // Where statements (and unparsable stretches) start: a directive covers the first one after it.
    let mut starts: Vec<usize> = parsed
        .statements
        .iter()
        .map(|s| s.anchor.start)
        .chain(parsed.syntax_errors.iter().map(|e| e.span.start))
        .collect();
    starts.sort_unstable();
    starts.dedup();

    for comment in &parsed.comments {
        let Some(directive) = parse_directive(comment, &mut problems) else {
            continue;
        };
        let target = if directive.0 {
            None
        } else {
            let i = starts.partition_point(|&s| s < comment.span.end);
            starts.get(i).copied()
        };
        directives.push(Directive {
            comment: comment.span.clone(),
            file_level: directive.0,
            rules: directive.1,
            target,
        });
    }

    let mut used: HashSet<(usize, RuleId)> = HashSet::new();
    let mut kept = Vec::with_capacity(findings.len());
    'findings: for finding in findings {
        for (i, d) in directives.iter().enumerate() {
            if !d.rules.contains(&finding.rule) {
                continue;
            }
            let covers = d.file_level
                || match (&finding.anchor, d.target) {
                    (Some(anchor), Some(target)) => anchor.start == target,
                    _ => false,
                };
            if covers {
                used.insert((i, finding.rule));
                continue 'findings;
            }
        }
        kept.push(finding);
    }

    for (i, d) in directives.iter().enumerate() {
        for rule in &d.rules {
            if !used.contains(&(i, *rule)) {
                let scope = if d.file_level {
                    "this file"
                } else {
                    "the next statement"
                };
                problems.push(suppression_finding(
                    RuleId::SuppressionUnused,
                    &d.comment,
                    format!("this comment allows `{rule}`, but {scope} has no `{rule}` finding"),
                    "remove the rule from the comment (or the whole comment) so that the exception does not outlive its cause",
                ));
            }
        }
    }

    kept.extend(problems);
    kept
}

/// Parses a comment: `None` when it is not for the linter; `Some((file_level, rules))` for a
/// well-formed directive. Malformed ones add findings to `problems` and yield the rules that were
/// valid, so one typo does not also make the rest of the comment "unused".
fn parse_directive(comment: &Comment, problems: &mut Vec<Finding>) -> Option<(bool, Vec<RuleId>)> {
    let body = comment.text.trim();
    let rest = body.strip_prefix(PREFIX)?.trim_start();
    let (file_level, rest) = if let Some(r) = rest.strip_prefix("allow-file(") {
        (true, r)
    } else if let Some(r) = rest.strip_prefix("allow(") {
        (false, r)
    } else {
        problems.push(suppression_finding(
            RuleId::SuppressionUnknownRule,
            &comment.span,
            format!("`{PREFIX}` comment is neither `allow(<rules>) <reason>` nor `allow-file(<rules>) <reason>`"),
            "write `-- migrate-lint: allow(rule-id) why this is safe` for the next statement",
        ));
        return None;
    };
    let Some((list, reason)) = rest.split_once(')') else {
        problems.push(suppression_finding(
            RuleId::SuppressionUnknownRule,
            &comment.span,
            "suppression comment has no closing `)` after its rule ids",
            "write `-- migrate-lint: allow(rule-id) why this is safe`",
        ));
        return None;
    };
    let mut rules = Vec::new();
    for id in list.split(',').map(str::trim).filter(|id| !id.is_empty()) {
        match id.parse::<RuleId>() {
            Ok(rule) => rules.push(rule),
            Err(()) => problems.push(suppression_finding(
                RuleId::SuppressionUnknownRule,
                &comment.span,
                format!("`{id}` is not a rule id, so this comment suppresses nothing for it"),
                format!(
                    "use one of the ids `cargo xtask migrate lint --list-rules` prints{}",
                    suggest(id)
                ),
            )),
        }
    }
    if list.trim().is_empty() {
        problems.push(suppression_finding(
            RuleId::SuppressionUnknownRule,
            &comment.span,
            "suppression comment names no rule",
            "name the rule ids to allow, e.g. `allow(backfill-update)`",
        ));
    }
    let reason = reason.trim_start_matches(|c: char| c == ':' || c == '-' || c.is_whitespace());
    if reason.trim().is_empty() {
        problems.push(suppression_finding(
            RuleId::SuppressionMissingReason,
            &comment.span,
            "suppression comment gives no reason",
            "say why this is safe after the rule ids, e.g. `allow(backfill-update) roles has 5 rows everywhere`",
        ));
        // Without a reason the exception is not granted.
        return None;
    }
    Some((file_level, rules))
}

fn suppression_finding(
    rule: RuleId,
    span: &Span,
    message: impl Into<String>,
    help: impl Into<String>,
) -> Finding {
    Finding {
        rule,
        severity: rule.default_severity(),
        span: span.clone(),
        anchor: Some(span.clone()),
        message: message.into(),
        help: help.into(),
        note: None,
        estimate: None,
    }
}

/// "; did you mean `x`?" for the closest rule id, if one is close.
pub(crate) fn suggest(id: &str) -> String {
    let best = RuleId::ALL
        .iter()
        .map(|r| (edit_distance(id, r.as_str()), r))
        .min_by_key(|(d, _)| *d);
    match best {
        Some((d, rule)) if d <= 3 || rule.as_str().contains(id) => {
            format!("; did you mean `{rule}`?")
        }
        _ => String::new(),
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::lint::{LintOptions, RuleId, Severity, lint_text};
    use crate::sql::Dialect;

    fn rules(sql: &str, dialect: Dialect) -> Vec<(RuleId, Severity, usize)> {
        let options = LintOptions {
            dialect,
            ..LintOptions::default()
        };
        lint_text(Path::new("t.sql"), sql, &options)
            .into_iter()
            .filter(|f| f.rule != RuleId::RequireLockTimeout)
            .map(|f| {
                (
                    f.rule,
                    f.severity,
                    sql[..f.span.start].matches('\n').count() + 1,
                )
            })
            .collect()
    }

    const BOTH: [Dialect; 2] = [Dialect::Postgres, Dialect::Sqlite];

    #[test]
    fn allow_covers_the_next_statement_only() {
        for d in BOTH {
            let sql = "-- migrate-lint: allow(backfill-update) roles has five rows\nUPDATE roles SET n = 1;\nUPDATE users SET n = 1;\n";
            assert_eq!(
                rules(sql, d),
                vec![(RuleId::BackfillUpdate, Severity::Error, 3)],
                "{d}"
            );
        }
    }

    #[test]
    fn allow_covers_a_whole_do_block() {
        let sql = "-- migrate-lint: allow(backfill-do-block) one-off fix, 3 rows\nDO $$\nBEGIN\n  UPDATE users SET n = 1 WHERE id = 7;\n  DELETE FROM posts WHERE id = 9;\nEND $$;\n";
        assert_eq!(rules(sql, Dialect::Postgres), vec![]);
    }

    #[test]
    fn allow_file_covers_every_statement_wherever_it_is() {
        for d in BOTH {
            let sql = "UPDATE users SET n = 1;\nDELETE FROM posts;\n-- migrate-lint: allow-file(backfill-update, backfill-delete) runs before launch, tables empty\n";
            assert_eq!(rules(sql, d), vec![], "{d}");
        }
    }

    #[test]
    fn several_rules_in_one_comment() {
        let sql = "-- migrate-lint: allow(backfill-update, index-not-concurrent) tiny table\nUPDATE users SET n = 1;\n";
        // index-not-concurrent has nothing to suppress on the next statement: reported as unused.
        assert_eq!(
            rules(sql, Dialect::Postgres),
            vec![(RuleId::SuppressionUnused, Severity::Warning, 1)]
        );
    }

    #[test]
    fn missing_reason_is_a_finding_and_suppresses_nothing() {
        for d in BOTH {
            let sql = "-- migrate-lint: allow(backfill-update)\nUPDATE users SET n = 1;\n";
            assert_eq!(
                rules(sql, d),
                vec![
                    (RuleId::SuppressionMissingReason, Severity::Error, 1),
                    (RuleId::BackfillUpdate, Severity::Error, 2)
                ],
                "{d}"
            );
        }
    }

    #[test]
    fn unknown_rule_is_a_finding_with_a_suggestion() {
        let options = LintOptions::default();
        let sql = "-- migrate-lint: allow(backfil-update) typo\nUPDATE users SET n = 1;\n";
        let findings = lint_text(Path::new("t.sql"), sql, &options);
        let unknown = findings
            .iter()
            .find(|f| f.rule == RuleId::SuppressionUnknownRule)
            .expect("an unknown-rule finding");
        assert!(
            unknown.message.contains("backfil-update"),
            "{}",
            unknown.message
        );
        assert!(
            unknown.help.contains("did you mean `backfill-update`"),
            "{}",
            unknown.help
        );
        assert!(findings.iter().any(|f| f.rule == RuleId::BackfillUpdate));
    }

    #[test]
    fn malformed_directive_is_a_finding() {
        for sql in [
            "-- migrate-lint: ignore backfill-update because\nUPDATE users SET n = 1;\n",
            "-- migrate-lint: allow(backfill-update because\nUPDATE users SET n = 1;\n",
            "-- migrate-lint: allow() because\nUPDATE users SET n = 1;\n",
        ] {
            let found = rules(sql, Dialect::Postgres);
            assert!(
                found.contains(&(RuleId::SuppressionUnknownRule, Severity::Error, 1)),
                "{sql}: {found:?}"
            );
            assert!(
                found.iter().any(|f| f.0 == RuleId::BackfillUpdate),
                "{sql}: {found:?}"
            );
        }
    }

    #[test]
    fn ordinary_comments_and_strings_are_not_directives() {
        let sql = "-- allow(backfill-update) not for us\nSELECT '-- migrate-lint: allow(backfill-update) x';\nUPDATE users SET n = 1;\n";
        assert_eq!(
            rules(sql, Dialect::Postgres),
            vec![(RuleId::BackfillUpdate, Severity::Error, 3)]
        );
    }

    #[test]
    fn block_comment_directive() {
        let sql = "/* migrate-lint: allow(backfill-update) five rows */\nUPDATE roles SET n = 1;\n";
        assert_eq!(rules(sql, Dialect::Postgres), vec![]);
    }
}
