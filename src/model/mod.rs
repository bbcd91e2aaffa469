//! The values that flow between stages: labels and their fingerprint,
//! timestamps, samples, severity tiers, alerts.

mod alert;
mod labels;
mod severity;
mod time;
mod value;

pub use alert::{Alert, AlertState};
pub use labels::{Fingerprint, Labels, ALERTNAME, SEVERITY};
pub use severity::{Severity, SeverityError};
pub use time::Timestamp;
pub use value::{format_value, is_stale, STALE_NAN};

/// One observation of one series.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Labels,
    pub timestamp: Timestamp,
    pub value: f64,
}
