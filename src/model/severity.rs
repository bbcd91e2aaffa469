//! Severity tiers P0–P3, ordered: P0 is the most severe.

use std::fmt;
use std::str::FromStr;

/// A severity tier. `Ord` sorts the most severe first (`P0 < P1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    P0,
    P1,
    P2,
    P3,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown tier {0:?}: expected P0, P1, P2 or P3")]
pub struct SeverityError(pub String);

impl Severity {
    pub const ALL: [Severity; 4] = [Severity::P0, Severity::P1, Severity::P2, Severity::P3];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::P0 => "P0",
            Severity::P1 => "P1",
            Severity::P2 => "P2",
            Severity::P3 => "P3",
        }
    }

    /// True if `self` pages harder than `other`.
    pub fn is_more_severe_than(self, other: Severity) -> bool {
        self < other
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Severity {
    type Err = SeverityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "P0" => Ok(Severity::P0),
            "P1" => Ok(Severity::P1),
            "P2" => Ok(Severity::P2),
            "P3" => Ok(Severity::P3),
            other => Err(SeverityError(other.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p0_is_most_severe() {
        assert!(Severity::P0.is_more_severe_than(Severity::P1));
        assert!(!Severity::P3.is_more_severe_than(Severity::P2));
        assert_eq!(Severity::ALL.iter().min(), Some(&Severity::P0));
        assert_eq!("P2".parse::<Severity>(), Ok(Severity::P2));
        assert!("p2".parse::<Severity>().is_err());
    }
}
