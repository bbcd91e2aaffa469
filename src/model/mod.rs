//! The values that flow between stages: labels and their fingerprint,
//! timestamps, samples, severity tiers, alerts.

mod alert;
mod annotations;
mod labels;
mod severity;
mod time;
mod value;

pub use alert::{Alert, AlertState};
pub use annotations::Annotations;
pub use labels::{ALERTNAME, Fingerprint, Labels, SEVERITY};
pub use severity::{Severity, SeverityError};
pub use time::Timestamp;
pub use value::{STALE_NAN, format_value, is_stale};

/// One observation of one series.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Labels,
    pub timestamp: Timestamp,
    pub value: f64,
}

// Serialized as JSON output shows them: labels as an object, tiers and
// times as strings.
impl serde::Serialize for Labels {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

impl serde::Serialize for Severity {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}
