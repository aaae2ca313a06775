//! The rules, one per file. Each file has a `check` function that reads a [`FileCx`] and pushes
//! [`Finding`]s, and ends with its `err`/`ok` tests (snapshots beside it in `snapshots/`).
//!
//! Rules report with the rule's default severity; configuration and suppression comments are
//! applied afterwards by the driver, so a rule never looks at either.

use super::{FileCx, Finding};

mod backfill_update;

type Check = fn(&FileCx<'_>, &mut Vec<Finding>);

/// Every rule's check, in the order findings are produced (the driver sorts them by position).
const CHECKS: &[Check] = &[backfill_update::check];

pub(crate) fn check_all(cx: &FileCx<'_>, out: &mut Vec<Finding>) {
    for check in CHECKS {
        check(cx, out);
    }
}

/// The help shared by the backfill rules: where the statement belongs instead.
pub(crate) const MOVE_TO_DATA_MIGRATION: &str = "move it to `data-migrations/` as a batched data migration, try it with `cargo xtask backfill sample`, and keep only the structure change here";

#[cfg(test)]
pub(crate) mod test_support {
    //! Helpers for rule tests. Each failure message points to the other helper.

    use std::path::Path;

    use crate::lint::{LintOptions, RuleId, lint_text};
    use crate::sql::Dialect;

    /// Lints `sql` and renders the findings of `rule` as plain text (for snapshots).
    fn render(sql: &str, dialect: Dialect, rule: RuleId) -> Vec<String> {
        let options = LintOptions {
            dialect,
            ..LintOptions::default()
        };
        lint_text(Path::new("test.sql"), sql, &options)
            .into_iter()
            .filter(|f| f.rule == rule)
            .map(|f| {
                let mut s = format!(
                    "{}: {} [{:?}]\n  help: {}",
                    f.rule,
                    f.message,
                    &sql[f.span.clone()],
                    f.help
                );
                if let Some(note) = f.note {
                    s.push_str(&format!("\n  note: {note}"));
                }
                s
            })
            .collect()
    }

    /// The findings of `rule` for `sql`; fails when there are none.
    #[track_caller]
    pub fn lint_errors(sql: &str, dialect: Dialect, rule: RuleId) -> Vec<String> {
        let found = render(sql, dialect, rule);
        assert!(
            !found.is_empty(),
            "expected `{rule}` findings in:\n{sql}\nuse `lint_ok` to assert there are none"
        );
        found
    }

    /// Asserts that `sql` has no finding of `rule`.
    #[track_caller]
    pub fn lint_ok(sql: &str, dialect: Dialect, rule: RuleId) {
        let found = render(sql, dialect, rule);
        assert!(
            found.is_empty(),
            "expected no `{rule}` findings in:\n{sql}\nfound:\n{}\nuse `lint_errors` to assert there are some",
            found.join("\n")
        );
    }
}
