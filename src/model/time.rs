//! Timestamps in milliseconds since the Unix epoch, as Prometheus keeps them.

use std::fmt;
use std::num::NonZeroU64;
use std::ops::{Add, Sub};
use std::time::Duration;

/// Milliseconds held offset by 2⁶³ (so unsigned order is time order) in
/// a `NonZeroU64`: `i64::MIN` ms, 292 million years before the epoch, is
/// the one value it cannot hold (taken as the next), and in exchange an
/// `Option<Timestamp>` is 8 bytes, not 16. An alert holds three.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(NonZeroU64);

const OFFSET: u64 = 1 << 63;

impl Timestamp {
    pub const fn from_millis(ms: i64) -> Self {
        let ms = if ms == i64::MIN { i64::MIN + 1 } else { ms };
        match NonZeroU64::new(ms as u64 ^ OFFSET) {
            Some(held) => Self(held),
            None => Self(NonZeroU64::MIN), // not reached: ms is not i64::MIN
        }
    }
    pub const fn as_millis(self) -> i64 {
        (self.0.get() ^ OFFSET) as i64
    }
    pub fn as_secs_f64(self) -> f64 {
        self.as_millis() as f64 / 1000.0
    }
    /// Time elapsed from `earlier` to `self`, zero if `earlier` is later.
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.as_millis().saturating_sub(earlier.as_millis()).max(0) as u64)
    }
    /// RFC 3339 in UTC, for humans and JSON. RFC 3339 has four-digit years:
    /// a time outside 0000–9999 (only a "never" sentinel could be; user
    /// input is bounded) prints as the nearest time it can name, never as
    /// `+12020-…`.
    pub fn to_rfc3339(self) -> String {
        let ms = self.as_millis().clamp(Self::RFC3339_MIN.as_millis(), Self::RFC3339_MAX.as_millis());
        chrono::DateTime::from_timestamp_millis(ms)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
            .unwrap_or_else(|| "9999-12-31T23:59:59.999Z".to_string())
    }

    /// 0000-01-01T00:00:00Z.
    pub const RFC3339_MIN: Timestamp = Timestamp::from_millis(-62_167_219_200_000);
    /// 9999-12-31T23:59:59.999Z.
    pub const RFC3339_MAX: Timestamp = Timestamp::from_millis(253_402_300_799_999);
}

/// The epoch.
impl Default for Timestamp {
    fn default() -> Self {
        Timestamp::from_millis(0)
    }
}

/// As the milliseconds it holds: `Timestamp(1767225600123)`.
impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Timestamp").field(&self.as_millis()).finish()
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Add<Duration> for Timestamp {
    type Output = Timestamp;
    fn add(self, d: Duration) -> Timestamp {
        Timestamp::from_millis(self.as_millis().saturating_add(millis(d)))
    }
}

impl Sub<Duration> for Timestamp {
    type Output = Timestamp;
    fn sub(self, d: Duration) -> Timestamp {
        Timestamp::from_millis(self.as_millis().saturating_sub(millis(d)))
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
    use proptest::prelude::*;

    proptest! {
        /// Held offset in a NonZero, a time is still its milliseconds and
        /// orders as they do (i64::MIN, which it cannot hold, is the next).
        #[test]
        fn holds_its_millis_in_their_order(a in any::<i64>(), b in any::<i64>()) {
            let held = |ms: i64| if ms == i64::MIN { i64::MIN + 1 } else { ms };
            prop_assert_eq!(Timestamp::from_millis(a).as_millis(), held(a));
            prop_assert_eq!(Timestamp::from_millis(a).cmp(&Timestamp::from_millis(b)), held(a).cmp(&held(b)));
        }
    }

    #[test]
    fn an_optional_time_is_eight_bytes() {
        assert_eq!(std::mem::size_of::<Option<Timestamp>>(), 8);
        assert_eq!(Timestamp::default().as_millis(), 0);
        assert_eq!(format!("{:?}", Timestamp::from_millis(-5)), "Timestamp(-5)");
        for ms in [i64::MIN, i64::MIN + 1, -1, 0, 1, i64::MAX] {
            assert_eq!(Timestamp::from_millis(ms).as_millis(), ms.max(i64::MIN + 1));
        }
    }

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
