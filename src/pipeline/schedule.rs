//! Schedules: a 5-field crontab expression in an IANA time zone, on which
//! P3 digests are sent and maintenance windows open.

use crate::model::Timestamp;
use chrono::TimeZone;
use croner::Cron;
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("schedule {schedule:?}: {reason} (5-field crontab: minute hour day-of-month month day-of-week)")]
    Cron { schedule: String, reason: String },
    #[error("unknown time zone {0:?} (an IANA name such as UTC or Europe/Berlin)")]
    TimeZone(String),
}

/// A crontab schedule in a time zone (`0 9 * * 1-5` in `Europe/Berlin`:
/// weekdays at 09:00 Berlin time, summer or winter).
#[derive(Debug, Clone)]
pub struct Schedule {
    expression: String,
    cron: Cron,
    time_zone: chrono_tz::Tz,
}

impl Schedule {
    /// A 5-field crontab expression (croner's extras such as `L` too) in an
    /// IANA time zone.
    pub fn new(expression: &str, time_zone: &str) -> Result<Self, ScheduleError> {
        let cron = Cron::from_str(expression)
            .map_err(|e| ScheduleError::Cron { schedule: expression.to_string(), reason: e.to_string() })?;
        let time_zone = time_zone.parse().map_err(|_| ScheduleError::TimeZone(time_zone.to_string()))?;
        Ok(Self { expression: expression.to_string(), cron, time_zone })
    }

    /// The crontab expression as given.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    pub fn time_zone(&self) -> chrono_tz::Tz {
        self.time_zone
    }

    /// The first scheduled time strictly after `now`.
    pub fn next_after(&self, now: Timestamp) -> Option<Timestamp> {
        let local = self.time_zone.timestamp_millis_opt(now.as_millis()).single()?;
        let next = self.cron.find_next_occurrence(&local, false).ok()?;
        Some(Timestamp::from_millis(next.timestamp_millis()))
    }

    /// The last scheduled time at or before `now`.
    pub fn latest_until(&self, now: Timestamp) -> Option<Timestamp> {
        let local = self.time_zone.timestamp_millis_opt(now.as_millis()).single()?;
        let previous = self.cron.find_previous_occurrence(&local, true).ok()?;
        Some(Timestamp::from_millis(previous.timestamp_millis()))
    }
}

/// Equal when written the same: the same expression in the same zone.
impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        (&self.expression, self.time_zone) == (&other.expression, other.time_zone)
    }
}

impl fmt::Display for Schedule {
    /// `0 9 * * * in UTC`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} in {}", self.expression, self.time_zone.name())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An RFC 3339 time, as schedules are read by people.
    pub fn at(rfc3339: &str) -> Timestamp {
        Timestamp::from_millis(chrono::DateTime::parse_from_rfc3339(rfc3339).unwrap().timestamp_millis())
    }

    #[test]
    fn next_is_strictly_after_and_latest_includes_now_in_the_zone() {
        // Weekdays 09:00 Berlin: UTC+1 in winter, UTC+2 in summer.
        let s = Schedule::new("0 9 * * 1-5", "Europe/Berlin").unwrap();
        // 2026-11-27 is a Friday, 2026-07-03 too.
        assert_eq!(s.next_after(at("2026-11-27T08:00:00Z")), Some(at("2026-11-30T08:00:00Z")));
        assert_eq!(s.next_after(at("2026-11-27T07:59:59Z")), Some(at("2026-11-27T08:00:00Z")));
        assert_eq!(s.latest_until(at("2026-11-27T08:00:00Z")), Some(at("2026-11-27T08:00:00Z")));
        assert_eq!(s.latest_until(at("2026-11-29T12:00:00Z")), Some(at("2026-11-27T08:00:00Z")));
        assert_eq!(s.next_after(at("2026-07-02T07:00:00Z")), Some(at("2026-07-03T07:00:00Z")));
    }

    #[test]
    fn errors_name_the_bad_part() {
        assert!(matches!(Schedule::new("61 * * * *", "UTC"), Err(ScheduleError::Cron { .. })));
        assert_eq!(
            Schedule::new("0 2 * * *", "Mars/Base").unwrap_err().to_string(),
            "unknown time zone \"Mars/Base\" (an IANA name such as UTC or Europe/Berlin)"
        );
    }

    #[test]
    fn equal_when_written_the_same_and_shown_with_its_zone() {
        let s = Schedule::new("0 9 * * *", "UTC").unwrap();
        assert_eq!(s, Schedule::new("0 9 * * *", "UTC").unwrap());
        assert_ne!(s, Schedule::new("0 9 * * *", "Europe/Berlin").unwrap());
        assert_eq!(s.to_string(), "0 9 * * * in UTC");
    }
}
