//! Progress of a run: an indicatif bar (rows done, rate, ETA) when stderr is a terminal, plain
//! log lines every few seconds otherwise (CI logs, `kubectl logs`, files).
//!
//! Numbers are the run's, not the worker's: rows done come from the tracking tables, so every
//! worker of a scaled-out run shows the same total. The rate is measured over the last ten
//! seconds of those totals, so it follows pace changes quickly.

use std::collections::VecDeque;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::backfill::display::thousands;
use crate::backfill::display::{count, format_duration};
use crate::backfill::run::tracking::Control;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressMode {
    /// A bar on a terminal, lines otherwise.
    Auto,
    Bar,
    Lines,
    /// Only the final summary.
    Quiet,
}

pub struct Progress {
    mode: ProgressMode,
    bar: Option<ProgressBar>,
    name: String,
    total: Option<u64>,
    interval: Duration,
    last_line: Option<Instant>,
    samples: VecDeque<(Instant, u64)>,
    state: String,
    size: u64,
    workers: u64,
    ranges: (u64, u64),
}

const WINDOW: Duration = Duration::from_secs(10);

impl Progress {
    /// `interval`: time between two plain lines.
    pub fn new(mode: ProgressMode, interval: Duration) -> Progress {
        let mode = match mode {
            ProgressMode::Auto if std::io::stderr().is_terminal() => ProgressMode::Bar,
            ProgressMode::Auto => ProgressMode::Lines,
            other => other,
        };
        Progress {
            mode,
            bar: None,
            name: String::new(),
            total: None,
            interval,
            last_line: None,
            samples: VecDeque::new(),
            state: String::new(),
            size: 0,
            workers: 0,
            ranges: (0, 0),
        }
    }

    pub fn start(&mut self, name: &str, estimated_rows: Option<u64>) {
        self.name = name.to_string();
        self.total = estimated_rows.filter(|t| *t > 0);
        if self.mode == ProgressMode::Bar {
            let bar = match self.total {
                Some(t) => ProgressBar::new(t),
                None => ProgressBar::new_spinner(),
            };
            bar.set_draw_target(ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "{prefix} [{bar:30}] {human_pos}/~{human_len} rows · {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(name.to_string());
            bar.enable_steady_tick(Duration::from_millis(200));
            self.bar = Some(bar);
        }
    }

    /// Rows per second over the last [`WINDOW`] of run-wide totals.
    fn rate(&self) -> Option<f64> {
        let (first, last) = (self.samples.front()?, self.samples.back()?);
        let dt = last.0.duration_since(first.0).as_secs_f64();
        (dt >= 0.5).then(|| last.1.saturating_sub(first.1) as f64 / dt)
    }

    pub fn update(&mut self, control: &Control, size: u64) {
        let now = Instant::now();
        self.samples.push_back((now, control.rows_done));
        while self
            .samples
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > WINDOW)
            && self.samples.len() > 2
        {
            self.samples.pop_front();
        }
        self.size = control.pace.batch_size.unwrap_or(size);
        self.workers = control.workers;
        self.ranges = (control.ranges_done, control.ranges);
        self.state = control.state.to_string();
        // The estimate is the catalog's: when the run passes it, the total is what is done.
        if let Some(total) = self.total
            && control.rows_done > total
        {
            self.total = Some(control.rows_done);
        }
        if let Some(bar) = &self.bar {
            if let Some(total) = self.total {
                bar.set_length(total);
            }
            bar.set_position(control.rows_done);
            // The rate and ETA are the run's (over the last seconds), not indicatif's, which
            // would count from this worker's start.
            let rate = match self.rate() {
                Some(rate) => {
                    let mut text = format!("{} rows/s", thousands(rate.round() as u64));
                    if let Some(total) = self.total
                        && rate > 0.0
                    {
                        let eta = total.saturating_sub(control.rows_done) as f64 / rate;
                        text.push_str(&format!(
                            " · ETA {}",
                            format_duration(Duration::from_secs_f64(eta.min(1e7)))
                        ));
                    }
                    text
                }
                None => "measuring rate".into(),
            };
            bar.set_message(format!(
                "{rate} · batch {} · {} · ranges {}/{}",
                thousands(self.size),
                count(self.workers, "worker", "workers"),
                self.ranges.0,
                self.ranges.1
            ));
        } else if self.mode == ProgressMode::Lines
            && self.last_line.is_none_or(|t| t.elapsed() >= self.interval)
        {
            self.last_line = Some(now);
            let line = self.line(control.rows_done);
            eprintln!("{line}");
        }
    }

    fn line(&self, done: u64) -> String {
        let mut line = format!("{}: {}", self.name, count(done, "row", "rows"));
        if let Some(total) = self.total {
            line.push_str(&format!(
                " of ~{} ({}%)",
                thousands(total),
                (done as f64 * 100.0 / total as f64).min(100.0).round()
            ));
        }
        match self.rate() {
            Some(rate) => {
                line.push_str(&format!(", {} rows/s", thousands(rate.round() as u64)));
                if let Some(total) = self.total
                    && rate > 0.0
                {
                    let eta = total.saturating_sub(done) as f64 / rate;
                    line.push_str(&format!(
                        ", ETA {}",
                        format_duration(Duration::from_secs_f64(eta.min(1e7)))
                    ));
                }
            }
            None => line.push_str(", measuring rate"),
        }
        line.push_str(&format!(
            ", batch size {}, {}, ranges {}/{} done, {}",
            thousands(self.size),
            count(self.workers, "worker", "workers"),
            self.ranges.0,
            self.ranges.1,
            self.state
        ));
        line
    }

    pub fn batch(&mut self, _rows: u64) {}

    /// A worker waiting (paused, or other workers hold the rest).
    pub fn waiting(&mut self, why: &str) {
        match &self.bar {
            Some(bar) => bar.set_message(format!("waiting: {why}")),
            None if self.mode == ProgressMode::Lines
                && self.last_line.is_none_or(|t| t.elapsed() >= self.interval) =>
            {
                self.last_line = Some(Instant::now());
                eprintln!("{}: waiting: {why}", self.name);
            }
            None => {}
        }
    }

    /// Something worth a line of its own (a retry, a reconnect).
    pub fn note(&mut self, message: &str) {
        let message = &crate::secrets::scrub(message);
        match (&self.bar, self.mode) {
            (Some(bar), _) => bar.println(format!("{}: {message}", self.name)),
            (None, ProgressMode::Quiet) => {}
            (None, _) => {
                let mut err = std::io::stderr().lock();
                let _ = writeln!(err, "{}: {message}", name_or(&self.name));
            }
        }
    }

    pub fn finish(&mut self, control: Option<&Control>) {
        if let Some(bar) = self.bar.take() {
            if let Some(c) = control {
                bar.set_position(c.rows_done);
            }
            bar.finish_and_clear();
        } else if self.mode == ProgressMode::Lines
            && let Some(c) = control
        {
            self.state = c.state.to_string();
            self.ranges = (c.ranges_done, c.ranges);
            eprintln!("{}", self.line(c.rows_done));
        }
    }
}

fn name_or(name: &str) -> &str {
    if name.is_empty() { "backfill" } else { name }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backfill::run::tracking::{Pace, RunState};

    #[test]
    fn lines_show_rows_rate_and_eta() {
        let mut p = Progress::new(ProgressMode::Quiet, Duration::from_secs(1));
        p.start("V1__x", Some(1000));
        let control = |rows| Control {
            state: RunState::Running,
            pace: Pace::default(),
            workers: 2,
            rows_done: rows,
            ranges_done: 1,
            ranges: 4,
            health: Default::default(),
        };
        p.update(&control(0), 100);
        let t0 = Instant::now() - Duration::from_secs(2);
        p.samples.front_mut().unwrap().0 = t0;
        p.update(&control(200), 100);
        let line = p.line(200);
        assert!(
            line.starts_with("V1__x: 200 rows of ~1,000 (20%), "),
            "{line}"
        );
        assert!(line.contains(" rows/s, ETA "), "{line}");
        assert!(
            line.ends_with("batch size 100, 2 workers, ranges 1/4 done, running"),
            "{line}"
        );
        // Past the estimate, the total follows the rows done.
        p.update(&control(1500), 100);
        assert!(p.line(1500).contains("of ~1,500 (100%)"));

        let mut one = Progress::new(ProgressMode::Quiet, Duration::from_secs(1));
        one.start("V1__x", Some(1000));
        one.update(
            &Control {
                workers: 1,
                ..control(1)
            },
            100,
        );
        let line = one.line(1);
        assert!(line.starts_with("V1__x: 1 row of ~1,000"), "{line}");
        assert!(line.contains(", 1 worker, "), "{line}");
    }
}
