//! What `backfill verify` reports: a summary for people and one JSON document for machines, from
//! the run's recorded differences (every worker's, and those of earlier processes of a resumed
//! run). Keys and column names only; values only when asked, for differences this process
//! re-read.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::backfill::db::TextRow;
use crate::backfill::display::{count, format_duration, thousands};
use crate::backfill::run::tracking::{DiffStatus, Store, StoreResult};
use crate::backfill::run::worker::Finish;
use crate::backfill::verify::compare::Category;
use crate::backfill::verify::{Activity, Verified};

/// The version of the JSON document; it changes only when a field changes meaning or goes away.
pub const FORMAT_VERSION: u32 = 1;

/// The keys listed in the text (the JSON lists them all).
const KEYS_SHOWN: usize = 50;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerifyReport {
    pub format_version: u32,
    /// The data migration (`V1__fill`).
    pub migration: String,
    /// The verification run's name and number in the tracking tables.
    pub run: String,
    pub run_id: i64,
    /// The database verified (and the expected side's, with `--against-url`); never a password.
    pub database: String,
    pub against: Option<String>,
    /// `clean`, `differences`, `stopped` (kill switch), `interrupted` (asked to stop, or
    /// `--max-batches`; verify again to continue) or `cancelled`.
    pub outcome: String,
    /// The kill switch's reason, when it stopped the run.
    pub stopped: Option<String>,
    /// Rows compared by the run (every worker, every process), the larger side's count per range.
    pub rows_compared: u64,
    /// Batches this process ran.
    pub batches: u64,
    pub elapsed_seconds: f64,
    /// Confirmed differences: found, and still there when re-read.
    pub differences: u64,
    /// Confirmed differences per category (every category present).
    pub by_category: BTreeMap<String, u64>,
    /// Found, not re-read yet (the run stopped first): they count as differences until a
    /// re-read clears them.
    pub unconfirmed: u64,
    /// Found, gone when re-read: a write raced the read.
    pub cleared: u64,
    /// Re-reads this process made, and how long it waited for their rate limit.
    pub rechecks: u64,
    pub rate_limited_seconds: f64,
    /// Where this process's time went besides the batches' digests: narrowing differences
    /// down, re-reading them, and waiting at the end for the last ones' re-read delay.
    pub narrowing_seconds: f64,
    pub rechecking_seconds: f64,
    pub delayed_seconds: f64,
    /// Queries this process ran to compare: digests, ranges read row by row, rows read.
    pub digests: u64,
    pub ranges_read: u64,
    pub rows_read: u64,
    /// Whether `expected` and `actual` are filled in (`--show-values`).
    pub values_shown: bool,
    /// Each confirmed or unconfirmed difference, in the order found.
    pub keys: Vec<KeyDifference>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyDifference {
    /// The key as text; null for a NULL key.
    pub key: Option<String>,
    pub category: String,
    /// For `value`: the compared columns whose values differ.
    pub columns: Vec<String>,
    /// `confirmed` or `pending`.
    pub status: String,
    /// The key's rows on each side when re-read, with `--show-values` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<Vec<TextRow>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actual: Option<Vec<TextRow>>,
}

impl VerifyReport {
    /// The report of `verified`, from the run's recorded differences on `store`.
    pub fn build(
        store: &mut dyn Store,
        migration: &str,
        database: String,
        against: Option<String>,
        verified: &Verified,
        show_values: bool,
    ) -> StoreResult<VerifyReport> {
        let run = &verified.run;
        let activity: &Activity = &verified.activity;
        let rows = store.diffs(run.run_id, None)?;
        let mut by_category: BTreeMap<String, u64> = Category::ALL
            .iter()
            .map(|c| (c.as_str().to_string(), 0))
            .collect();
        let (mut differences, mut unconfirmed, mut cleared) = (0, 0, 0);
        let mut keys = Vec::new();
        for row in rows {
            match row.status {
                DiffStatus::Cleared => {
                    cleared += 1;
                    continue;
                }
                DiffStatus::Confirmed => {
                    differences += 1;
                    *by_category.entry(row.diff.category.clone()).or_default() += 1;
                }
                DiffStatus::Pending => unconfirmed += 1,
            }
            let values = show_values.then(|| activity.values.get(&row.id)).flatten();
            keys.push(KeyDifference {
                key: row.diff.key,
                category: row.diff.category,
                columns: row.diff.columns,
                status: row.status.as_str().to_string(),
                expected: values.map(|v| v.expected.clone()),
                actual: values.map(|v| v.actual.clone()),
            });
        }
        let outcome = match (&activity.stopped, &run.finish) {
            (Some(_), _) => "stopped",
            (None, Finish::Cancelled) => "cancelled",
            (None, Finish::Interrupted) => "interrupted",
            (None, Finish::Done | Finish::AlreadyDone) if differences + unconfirmed > 0 => {
                "differences"
            }
            (None, Finish::Done | Finish::AlreadyDone) => "clean",
        };
        Ok(VerifyReport {
            format_version: FORMAT_VERSION,
            migration: migration.to_string(),
            run: run.migration.clone(),
            run_id: run.run_id,
            database,
            against,
            outcome: outcome.to_string(),
            stopped: activity.stopped.clone(),
            rows_compared: run.run_rows,
            batches: run.batches,
            elapsed_seconds: run.elapsed.as_secs_f64(),
            differences,
            by_category,
            unconfirmed,
            cleared,
            rechecks: activity.rechecks,
            rate_limited_seconds: activity.rate_limited.as_secs_f64(),
            narrowing_seconds: activity.cost.narrowing.as_secs_f64(),
            rechecking_seconds: activity.rechecking.as_secs_f64(),
            delayed_seconds: activity.delayed.as_secs_f64(),
            digests: activity.cost.digests,
            ranges_read: activity.cost.leaves,
            rows_read: activity.cost.rows_read,
            values_shown: show_values,
            keys,
        })
    }

    /// Clean: the whole key range compared, nothing differs.
    pub fn is_clean(&self) -> bool {
        self.outcome == "clean"
    }

    pub fn to_json(&self) -> String {
        let mut out = serde_json::to_string_pretty(self).unwrap_or_default();
        out.push('\n');
        out
    }

    /// The summary for people.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let against = self
            .against
            .as_deref()
            .map(|a| format!(" (expected rows from {a})"))
            .unwrap_or_default();
        out.push_str(&format!(
            "verify {} (run {}) on {}{against}: {} compared in {}\n",
            self.migration,
            self.run_id,
            self.database,
            count(self.rows_compared, "row", "rows"),
            format_duration(std::time::Duration::from_secs_f64(self.elapsed_seconds))
        ));
        if self.differences == 0 && self.unconfirmed == 0 {
            out.push_str("no differences");
        } else {
            let categories: Vec<String> = self
                .by_category
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(c, n)| format!("{c} {}", thousands(*n)))
                .collect();
            out.push_str(&count(self.differences, "difference", "differences"));
            if !categories.is_empty() {
                out.push_str(&format!(" ({})", categories.join(", ")));
            }
            if self.unconfirmed > 0 {
                out.push_str(&format!(
                    ", {} not re-read yet",
                    thousands(self.unconfirmed)
                ));
            }
        }
        if self.cleared > 0 {
            out.push_str(&format!(
                "; {} gone when re-read (a write raced the read)",
                count(self.cleared, "difference", "differences")
            ));
        }
        out.push('\n');
        for k in self.keys.iter().take(KEYS_SHOWN) {
            let key = k.key.as_deref().unwrap_or("NULL");
            let mut line = format!("  {:<8} key {key}", k.category);
            if !k.columns.is_empty() {
                line.push_str(&format!(": {}", k.columns.join(", ")));
            }
            if k.status == DiffStatus::Pending.as_str() {
                line.push_str(" (not re-read yet)");
            }
            out.push_str(&line);
            out.push('\n');
            for (side, rows) in [("expected", &k.expected), ("actual", &k.actual)] {
                let Some(rows) = rows else { continue };
                if rows.is_empty() {
                    out.push_str(&format!("    {side:<8} (no row)\n"));
                }
                for row in rows {
                    let cells: Vec<&str> =
                        row.iter().map(|c| c.as_deref().unwrap_or("NULL")).collect();
                    out.push_str(&format!("    {side:<8} {}\n", cells.join(" | ")));
                }
            }
        }
        if self.keys.len() > KEYS_SHOWN {
            out.push_str(&format!(
                "  ... and {} more (all of them with --format json)\n",
                thousands((self.keys.len() - KEYS_SHOWN) as u64)
            ));
        }
        if !self.keys.is_empty() && !self.values_shown {
            out.push_str("values are not shown (they may be personal data): add --show-values to see the rows of the keys re-read by this command\n");
        }
        match self.outcome.as_str() {
            "stopped" => out.push_str(&format!(
                "stopped by the {}; the differences found so far stay recorded: raise the limit and verify again to continue\n",
                self.stopped.as_deref().unwrap_or("kill switch")
            )),
            "interrupted" => out.push_str(
                "stopped before the end of the key range: verify again to continue where it stopped\n",
            ),
            "cancelled" => out.push_str(
                "the verification was cancelled: verify again to start a new one\n",
            ),
            _ => {}
        }
        out
    }
}
