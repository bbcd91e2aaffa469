//! Timestamps in milliseconds since the Unix epoch, as Prometheus keeps them.

use std::fmt;
use std::ops::{Add, Sub};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const fn from_millis(ms: i64) -> Self {
        Self(ms)
    }
    pub const fn as_millis(self) -> i64 {
        self.0
    }
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1000.0
    }
    /// Time elapsed from `earlier` to `self`, zero if `earlier` is later.
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0).max(0) as u64)
    }
    /// RFC 3339 in UTC, for humans and JSON. RFC 3339 has four-digit years:
    /// a time outside 0000–9999 (only a "never" sentinel could be; user
    /// input is bounded) prints as the nearest time it can name, never as
    /// `+12020-…`.
    pub fn to_rfc3339(self) -> String {
        let ms = self.0.clamp(Self::RFC3339_MIN.0, Self::RFC3339_MAX.0);
        chrono::DateTime::from_timestamp_millis(ms)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
            .unwrap_or_else(|| "9999-12-31T23:59:59.999Z".to_string())
    }

    /// 0000-01-01T00:00:00Z.
    pub const RFC3339_MIN: Timestamp = Timestamp(-62_167_219_200_000);
    /// 9999-12-31T23:59:59.999Z.
    pub const RFC3339_MAX: Timestamp = Timestamp(253_402_300_799_999);
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Add<Duration> for Timestamp {
    type Output = Timestamp;
    fn add(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(millis(d)))
    }
}

impl Sub<Duration> for Timestamp {
    type Output = Timestamp;
    fn sub(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_sub(millis(d)))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_rfc3339(text: &str) -> bool {
        chrono::DateTime::parse_from_rfc3339(text).is_ok()
    }

    #[test]
    fn every_timestamp_prints_as_rfc3339() {
        let year_10000 = 253_402_300_800_000;
        for ms in [0, 1_767_225_600_123, year_10000 - 1, year_10000, 318_000_000_000_000, i64::MAX, -1, i64::MIN] {
            let text = Timestamp::from_millis(ms).to_rfc3339();
            assert!(is_rfc3339(&text), "{ms} ms printed as {text:?}");
        }
        assert_eq!(Timestamp::from_millis(1_767_225_600_123).to_rfc3339(), "2026-01-01T00:00:00.123Z");
        // Beyond year 9999 (far from any real time): the last instant RFC 3339 can name.
        assert_eq!(Timestamp::from_millis(i64::MAX).to_rfc3339(), "9999-12-31T23:59:59.999Z");
        assert_eq!(Timestamp::from_millis(i64::MIN).to_rfc3339(), "0000-01-01T00:00:00Z");
        assert_eq!(serde_json::to_string(&Timestamp::from_millis(i64::MAX)).unwrap(), "\"9999-12-31T23:59:59.999Z\"");
    }
}
