//! Re-reads of differences: each waits a delay after it was found (a write that raced the read
//! has committed by then), and re-reads are rate limited in fixed windows, so a table full of
//! differences cannot turn re-reads into load.

use std::time::{Duration, Instant};

/// At most `limit` re-reads per `window`, in fixed windows: the first re-read opens a window, and
/// the first one after it ends opens the next.
#[derive(Debug, Clone)]
pub struct RateLimit {
    pub limit: u32,
    pub window: Duration,
    opened: Option<Instant>,
    used: u32,
}

impl RateLimit {
    pub fn new(limit: u32, window: Duration) -> RateLimit {
        RateLimit {
            limit: limit.max(1),
            window: window.max(Duration::from_millis(1)),
            opened: None,
            used: 0,
        }
    }

    /// Takes one re-read at `now`: `Err(wait)` when this window's are used up, with the time
    /// until the next window opens.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        match self.opened {
            Some(opened) if now.duration_since(opened) < self.window => {
                if self.used >= self.limit {
                    return Err(self.window - now.duration_since(opened));
                }
                self.used += 1;
            }
            _ => {
                self.opened = Some(now);
                self.used = 1;
            }
        }
        Ok(())
    }
}

/// `N/DURATION` (`60/1m`, `5/10s`): at most N re-reads per DURATION.
pub fn parse_limit(text: &str) -> Result<(u32, Duration), String> {
    let bad = || format!("`{text}` is not a rate: write N/DURATION, e.g. `60/1m` or `5/10s`");
    let (n, window) = text.split_once('/').ok_or_else(bad)?;
    let n: u32 = n.trim().parse().ok().filter(|n| *n > 0).ok_or_else(bad)?;
    let window = crate::backfill::migration::parse_duration(window.trim()).map_err(|_| bad())?;
    if window.is_zero() {
        return Err(bad());
    }
    Ok((n, window))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_limit_per_fixed_window() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut rate = RateLimit::new(3, s(60));
        assert_eq!(rate.take(t0), Ok(()));
        assert_eq!(rate.take(t0 + s(1)), Ok(()));
        assert_eq!(rate.take(t0 + s(2)), Ok(()));
        // The fourth waits for the window opened at t0 to end.
        assert_eq!(rate.take(t0 + s(10)), Err(s(50)));
        assert_eq!(rate.take(t0 + s(59)), Err(s(1)));
        // A new window: three more.
        assert_eq!(rate.take(t0 + s(60)), Ok(()));
        assert_eq!(rate.take(t0 + s(61)), Ok(()));
        assert_eq!(rate.take(t0 + s(62)), Ok(()));
        assert_eq!(rate.take(t0 + s(63)), Err(s(57)));
    }

    #[test]
    fn limits_parse() {
        assert_eq!(parse_limit("60/1m"), Ok((60, Duration::from_secs(60))));
        assert_eq!(parse_limit("5/10s"), Ok((5, Duration::from_secs(10))));
        for bad in ["60", "0/1m", "x/1m", "5/0", "5/10"] {
            assert!(parse_limit(bad).is_err(), "{bad}");
        }
    }
}
