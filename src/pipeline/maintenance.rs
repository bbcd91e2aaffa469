//! Maintenance windows: a 5-field crontab schedule in a time zone, a
//! duration and matchers. While a window is open, matching alerts are muted
//! (`0 2 * * 6` + `2h` in `Asia/Shanghai`: every Saturday 02:00–04:00 there).

use super::{Matchers, Schedule, ScheduleError};
use crate::model::{Labels, Timestamp};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MaintenanceError {
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    #[error("duration must be greater than zero")]
    Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MaintenanceWindow {
    pub name: String,
    /// When it opens.
    pub schedule: Schedule,
    pub duration: Duration,
    pub matchers: Matchers,
}

impl MaintenanceWindow {
    pub fn new(
        name: impl Into<String>,
        schedule: &str,
        time_zone: &str,
        duration: Duration,
        matchers: Matchers,
    ) -> Result<Self, MaintenanceError> {
        let schedule = Schedule::new(schedule, time_zone)?;
        if duration.is_zero() {
            return Err(MaintenanceError::Duration);
        }
        Ok(Self { name: name.into(), schedule, duration, matchers })
    }

    /// The open window containing `now`, as (start, end), if any.
    pub fn open_at(&self, now: Timestamp) -> Option<(Timestamp, Timestamp)> {
        let start = self.schedule.latest_until(now)?;
        let end = start + self.duration;
        (now < end).then_some((start, end))
    }

    /// When the window next opens after `now`.
    pub fn next_start(&self, now: Timestamp) -> Option<Timestamp> {
        self.schedule.next_after(now)
    }

    pub fn mutes(&self, labels: &Labels, now: Timestamp) -> bool {
        self.matchers.matches(labels) && self.open_at(now).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::schedule::tests::at;

    #[test]
    fn weekly_window_in_a_time_zone() {
        // Saturdays 02:00-04:00 Shanghai time (UTC+8) = Fridays 18:00-20:00 UTC.
        let w = MaintenanceWindow::new(
            "weekly",
            "0 2 * * 6",
            "Asia/Shanghai",
            Duration::from_secs(2 * 3600),
            Matchers::parse(r#"{cluster="prod"}"#).unwrap(),
        )
        .unwrap();
        let prod = Labels::from_pairs([("cluster", "prod")]);
        let dev = Labels::from_pairs([("cluster", "dev")]);
        // 2026-11-27 is a Friday.
        assert!(!w.mutes(&prod, at("2026-11-27T17:59:59Z")));
        assert!(w.mutes(&prod, at("2026-11-27T18:00:00Z")));
        assert!(w.mutes(&prod, at("2026-11-27T19:59:59Z")));
        assert!(!w.mutes(&prod, at("2026-11-27T20:00:00Z")));
        assert!(!w.mutes(&dev, at("2026-11-27T19:00:00Z")), "matchers select what is muted");
        assert_eq!(
            w.open_at(at("2026-11-27T19:00:00Z")),
            Some((at("2026-11-27T18:00:00Z"), at("2026-11-27T20:00:00Z")))
        );
        assert_eq!(w.next_start(at("2026-11-27T20:00:00Z")), Some(at("2026-12-04T18:00:00Z")));
    }

    #[test]
    fn crontab_extras_and_errors() {
        // Last day of the month, 23:00 UTC, one hour.
        let w = MaintenanceWindow::new("monthly", "0 23 L * *", "UTC", Duration::from_secs(3600), Matchers::default())
            .unwrap();
        assert!(w.mutes(&Labels::new(), at("2026-11-30T23:30:00Z")));
        assert!(!w.mutes(&Labels::new(), at("2026-11-29T23:30:00Z")));
        assert!(
            MaintenanceWindow::new("x", "61 * * * *", "UTC", Duration::from_secs(60), Matchers::default()).is_err()
        );
        assert!(matches!(
            MaintenanceWindow::new("x", "0 2 * * *", "Mars/Base", Duration::from_secs(60), Matchers::default()),
            Err(MaintenanceError::Schedule(ScheduleError::TimeZone(_)))
        ));
        assert!(MaintenanceWindow::new("x", "0 2 * * *", "UTC", Duration::ZERO, Matchers::default()).is_err());
    }
}
