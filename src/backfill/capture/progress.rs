//! A capture's progress on stderr, only when stderr is a terminal: while selecting, the keys
//! found and their rate; while streaming, the rows written against the rows selected, the rate
//! and the table. Elsewhere (CI logs, files, tests) nothing is drawn and the output is the
//! step lines alone.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::backfill::display::thousands;

/// The bar, or nothing when stderr is not a terminal.
pub struct CaptureProgress {
    bar: Option<ProgressBar>,
}

impl CaptureProgress {
    /// A bar when stderr is a terminal.
    pub fn new() -> CaptureProgress {
        CaptureProgress::with(std::io::stderr().is_terminal())
    }

    fn with(draw: bool) -> CaptureProgress {
        let bar = draw.then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_draw_target(ProgressDrawTarget::stderr());
            bar.set_style(style(
                "{prefix} {spinner} {human_pos} keys · {rate} · {msg}",
            ));
            bar.set_prefix("capture: select");
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        CaptureProgress { bar }
    }

    /// Selecting: what the keys come from now.
    pub fn selecting(&self, what: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(what.to_string());
        }
    }

    /// Keys or rows done since the last call.
    pub fn add(&self, n: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(n);
        }
    }

    /// Streaming starts: `rows` to write.
    pub fn streaming(&self, rows: u64) {
        if let Some(bar) = &self.bar {
            bar.set_style(style(
                "{prefix} [{bar:30}] {human_pos}/{human_len} rows · {rate} · {msg}",
            ));
            bar.set_prefix("capture: write");
            bar.reset();
            bar.set_length(rows);
        }
    }

    /// Streaming: the table being written.
    pub fn table(&self, name: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(name.to_string());
        }
    }

    /// Runs `print` (which writes a step line) with the bar hidden, so the two do not mix.
    pub fn suspend<R>(&self, print: impl FnOnce() -> R) -> R {
        match &self.bar {
            Some(bar) => bar.suspend(print),
            None => print(),
        }
    }

    /// Whether a bar is drawn.
    pub fn is_drawn(&self) -> bool {
        self.bar.is_some()
    }
}

impl Default for CaptureProgress {
    fn default() -> CaptureProgress {
        CaptureProgress::new()
    }
}

impl Drop for CaptureProgress {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// A style with `{rate}`: whole keys or rows per second, with thousands separators.
fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .with_key(
            "rate",
            |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{}/s", thousands(state.per_sec().round() as u64));
            },
        )
        .progress_chars("=> ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_drawn_without_a_terminal() {
        let progress = CaptureProgress::with(false);
        progress.selecting("users");
        progress.add(3);
        progress.streaming(10);
        assert!(!progress.is_drawn());
        assert_eq!(progress.suspend(|| 7), 7);
    }

    #[test]
    fn the_bar_counts_keys_then_rows() {
        let progress = CaptureProgress::with(true);
        let bar = progress.bar.clone().unwrap();
        bar.set_draw_target(ProgressDrawTarget::hidden());
        progress.add(5);
        assert_eq!(bar.position(), 5);
        progress.streaming(40);
        progress.add(12);
        assert_eq!((bar.position(), bar.length()), (12, Some(40)));
    }
}
