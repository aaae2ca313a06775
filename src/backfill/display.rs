//! How numbers, durations and checksums read in what the commands print: one spelling
//! everywhere (`1,234,567 rows`, `6m17s`, a checksum's first 12 hex digits).

use std::time::Duration;

use crate::backfill::db::KeyKind;

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A duration in milliseconds for stage timings: `2.5 ms`, `1,500 ms`.
pub fn millis(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{} ms", thousands(ms.round() as u64))
    }
}

/// A duration for people: `350ms`, `42s`, `6m17s`, `2h05m`.
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 3600 {
        format!("{}h{:02}m", secs / 3600, secs % 3600 / 60)
    } else if secs >= 60 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else if d.as_millis() >= 1000 || d.is_zero() {
        format!("{secs}s")
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// The first 12 hex digits of a checksum, enough to tell two versions apart.
pub fn short(checksum: &str) -> &str {
    checksum.get(..12).unwrap_or(checksum)
}

/// `1 row`, `2 rows`: `count` followed by `one` or `many`, with thousands separators.
pub fn count(n: u64, one: &str, many: &str) -> String {
    format!("{} {}", thousands(n), if n == 1 { one } else { many })
}

/// The name of a key type as the tracking tables and plans spell it.
pub fn kind_name(kind: KeyKind) -> &'static str {
    match kind {
        KeyKind::Integer => "integer",
        KeyKind::Text => "text",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_numbers() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(millis(Duration::from_micros(2500)), "2.5 ms");
        assert_eq!(millis(Duration::from_millis(1500)), "1,500 ms");
        assert_eq!(count(1, "row", "rows"), "1 row");
        assert_eq!(count(1200, "row", "rows"), "1,200 rows");
        assert_eq!(format_duration(Duration::from_millis(350)), "350ms");
        assert_eq!(format_duration(Duration::from_secs(377)), "6m17s");
        assert_eq!(short("0123456789abcdef"), "0123456789ab");
    }
}
