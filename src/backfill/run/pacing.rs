//! How fast a worker goes: the batch size adapting toward the target duration, the wait after
//! a batch (pause and rows-per-second cap), backoff between retries, and sleeping that a stop
//! request cuts short. Pure functions of the settings and what the last batch measured; nothing
//! here talks to a database.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::backfill::run::plan::Settings;

/// The share of the target batch duration the adaptation aims at. Batch times vary (the next
/// key range may be denser, a checkpoint may start): aiming at the target itself would put
/// every other batch over it, and the target is a ceiling on how long a batch holds its locks.
const AIM: f64 = 0.7;

/// The next batch size: toward [`AIM`] of the target from how long `size` rows held the
/// transaction. Grows at most by half per batch (one fast batch proves little; a bigger step
/// overshoots when the next keys are denser) and shrinks up to fivefold (a slow batch is a
/// lock held too long).
pub fn adapt(settings: &Settings, size: u64, held: Duration) -> u64 {
    let goal = settings.target_batch_ms as f64 * AIM;
    let held_ms = held.as_secs_f64() * 1000.0;
    let factor = if held_ms <= 0.0 {
        1.5
    } else {
        (goal / held_ms).clamp(0.2, 1.5)
    };
    let next = (size as f64 * factor).round() as u64;
    settings.clamp(next.max(1))
}

/// How long to wait after a batch of `rows` that took `took`: at least `pause`, and long enough
/// that this worker's share of the run's rows-per-second `cap` (split evenly between the
/// `workers` live ones) holds.
pub fn wait_after(
    rows: u64,
    took: Duration,
    pause: Duration,
    cap: Option<u64>,
    workers: u64,
) -> Duration {
    let Some(cap) = cap else {
        return pause;
    };
    let share = cap as f64 / workers.max(1) as f64;
    let minimum = Duration::from_secs_f64(rows as f64 / share.max(0.001));
    pause.max(minimum.saturating_sub(took))
}

/// Exponential backoff with jitter: 100ms, 200ms, ... capped at 10s, each between half and
/// all of it, so workers that failed together do not retry together.
pub fn backoff(attempt: u32) -> Duration {
    let base = 100u64.saturating_mul(1u64 << attempt.min(10)).min(10_000);
    let jitter = fastrand::u64(base / 2..=base);
    Duration::from_millis(jitter)
}

/// Sleeps `d`, waking early when `stop` is set.
pub fn sleep(d: Duration, stop: &AtomicBool) {
    let end = Instant::now() + d;
    while !stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        if now >= end {
            break;
        }
        std::thread::sleep((end - now).min(Duration::from_millis(50)));
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn settings() -> Settings {
        Settings {
            batch_size: 1000,
            adaptive: true,
            min_batch_size: 100,
            max_batch_size: 50_000,
            target_batch_ms: 200,
            pause_ms: 0,
            max_rows_per_second: None,
            lock_timeout_ms: 1000,
            statement_timeout_ms: 5000,
            max_retries: 3,
            ranges: 1,
            claim_timeout_s: 60,
            health: Default::default(),
        }
    }

    #[test]
    fn batch_size_moves_toward_the_target_at_most_twofold() {
        let s = settings();
        // Ten times too fast: grows by half (the cap on growth).
        assert_eq!(adapt(&s, 1000, Duration::from_millis(20)), 1500);
        // Twice too slow: down to 70% of the target, 140ms of 400ms.
        assert_eq!(adapt(&s, 1000, Duration::from_millis(400)), 350);
        // Far too slow: at most fivefold smaller, never below the minimum.
        assert_eq!(adapt(&s, 1000, Duration::from_secs(10)), 200);
        assert_eq!(adapt(&s, 150, Duration::from_secs(10)), 100);
        // Never above the maximum.
        assert_eq!(adapt(&s, 40_000, Duration::ZERO), 50_000);
        assert_eq!(adapt(&s, 20_000, Duration::ZERO), 30_000);
        // At the target: back under it, as the target is a ceiling.
        assert_eq!(adapt(&s, 1000, Duration::from_millis(200)), 700);
    }

    #[test]
    fn the_rate_cap_is_shared_between_live_workers() {
        let ms = Duration::from_millis;
        // No cap: the pause alone.
        assert_eq!(wait_after(1000, ms(10), ms(50), None, 1), ms(50));
        // 1,000 rows at 10,000 rows/s take 100ms; 10ms were spent in the batch.
        assert_eq!(wait_after(1000, ms(10), ms(0), Some(10_000), 1), ms(90));
        // Two workers: each gets 5,000 rows/s.
        assert_eq!(wait_after(1000, ms(10), ms(0), Some(10_000), 2), ms(190));
        // The pause wins when it is longer.
        assert_eq!(wait_after(1000, ms(10), ms(500), Some(10_000), 1), ms(500));
    }

    #[test]
    fn backoff_grows_with_jitter_and_a_cap() {
        for attempt in 0..20 {
            let d = backoff(attempt).as_millis() as u64;
            let base = (100u64 << attempt.min(10)).min(10_000);
            assert!(d >= base / 2 && d <= base, "attempt {attempt}: {d}ms");
        }
    }

    #[test]
    fn sleeping_stops_when_asked() {
        let stop = AtomicBool::new(true);
        let t = Instant::now();
        sleep(Duration::from_secs(5), &stop);
        assert!(t.elapsed() < Duration::from_secs(1));
    }
}
