//! Durations as SREs write them in rule and test files: Prometheus's
//! notation (`30s`, `1m30s`, `1h`, `500ms`, `1d`, `1w`, `1y`).

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason} (examples: 30s, 1m30s, 1h, 500ms)")]
pub struct DurationError {
    pub input: String,
    pub reason: &'static str,
}

/// Parses a Prometheus duration. Units must appear from largest to smallest,
/// each at most once, as Prometheus requires.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let err = |reason| DurationError { input: input.to_string(), reason };
    let s = input.trim();
    if s.is_empty() {
        return Err(err("empty"));
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    const UNITS: [(&str, u64); 8] = [
        ("y", 365 * 24 * 3600 * 1000),
        ("w", 7 * 24 * 3600 * 1000),
        ("d", 24 * 3600 * 1000),
        ("h", 3600 * 1000),
        ("ms", 1),
        ("m", 60 * 1000),
        ("s", 1000),
        ("", 0),
    ];
    // Order in which units may appear (ms after s).
    const ORDER: [&str; 7] = ["y", "w", "d", "h", "m", "s", "ms"];
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut total: u64 = 0;
    let mut last_rank: Option<usize> = None;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if start == i {
            return Err(err("expected a number"));
        }
        let number: u64 = s[start..i].parse().map_err(|_| err("number too large"))?;
        let unit_start = i;
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        let unit = &s[unit_start..i];
        let Some(&(_, millis)) = UNITS.iter().find(|(u, _)| *u == unit && !u.is_empty()) else {
            return Err(err(if unit.is_empty() { "missing unit" } else { "unknown unit" }));
        };
        let rank = ORDER.iter().position(|u| *u == unit).unwrap_or(usize::MAX);
        if last_rank.is_some_and(|r| rank <= r) {
            return Err(err("units must go from largest to smallest, each once"));
        }
        last_rank = Some(rank);
        total = number.checked_mul(millis).and_then(|v| total.checked_add(v)).ok_or_else(|| err("too large"))?;
    }
    Ok(Duration::from_millis(total))
}

/// Longest range a window function may ask for (`rate("m", "7d")`): the
/// store keeps that much history of the series, in memory.
pub const MAX_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);

/// Parses a window function's range: a duration greater than zero and at
/// most [`MAX_WINDOW`].
pub fn parse_window(input: &str) -> Result<Duration, DurationError> {
    let d = parse_duration(input)?;
    let err = |reason| DurationError { input: input.to_string(), reason };
    if d.is_zero() {
        return Err(err("a window must be longer than zero"));
    }
    if d > MAX_WINDOW {
        return Err(err("a window may be at most 7d (its samples are kept in memory)"));
    }
    Ok(d)
}

/// Formats like Prometheus: `1h30m`, `5m`, `0s`, `1s500ms`.
pub fn format_duration(d: Duration) -> String {
    let mut ms = d.as_millis() as u64;
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, size) in [
        ("y", 365 * 24 * 3600 * 1000u64),
        ("w", 7 * 24 * 3600 * 1000),
        ("d", 24 * 3600 * 1000),
        ("h", 3600 * 1000),
        ("m", 60 * 1000),
        ("s", 1000),
        ("ms", 1),
    ] {
        if ms >= size {
            out.push_str(&format!("{}{unit}", ms / size));
            ms %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prometheus_notation() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1s500ms").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(2 * 86400));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
    }

    #[test]
    fn rejects_bad_durations() {
        for bad in ["", "5", "1x", "m", "1m1h", "1s1s", "-1s", "1.5m", "99999999999999999999y"] {
            assert!(parse_duration(bad).is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn formats_round_trip() {
        for s in ["1h30m", "5m", "1s500ms", "1d", "0s"] {
            assert_eq!(format_duration(parse_duration(s).unwrap()), s);
        }
    }
}
