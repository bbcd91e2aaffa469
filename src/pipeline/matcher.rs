//! Label matchers, as silences, inhibition rules, routes and maintenance
//! windows select alerts: `name="value"`, `!=`, `=~` and `!~` with
//! Alertmanager's semantics (regexes anchored at both ends; a missing label
//! matches as the empty string).

use crate::model::Labels;
use regex::Regex;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    Eq,
    Ne,
    Re,
    NotRe,
}

impl MatchOp {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchOp::Eq => "=",
            MatchOp::Ne => "!=",
            MatchOp::Re => "=~",
            MatchOp::NotRe => "!~",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatcherError {
    #[error("invalid label name {0:?}")]
    Name(String),
    #[error("invalid regex {value:?}: {reason}")]
    Regex { value: String, reason: String },
    #[error("cannot parse matcher {0:?}: expected name=\"value\", name!=\"value\", name=~\"regex\" or name!~\"regex\"")]
    Syntax(String),
}

/// One matcher.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    /// Compiled, anchored, for `=~` and `!~`.
    regex: Option<Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        (&self.name, self.op, &self.value) == (&other.name, other.op, &other.value)
    }
}

impl Matcher {
    pub fn new(name: impl Into<String>, op: MatchOp, value: impl Into<String>) -> Result<Self, MatcherError> {
        let name = name.into();
        let value = value.into();
        let valid_name = {
            let mut c = name.chars();
            matches!(c.next(), Some(f) if f.is_ascii_alphabetic() || f == '_')
                && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
        };
        if !valid_name {
            return Err(MatcherError::Name(name));
        }
        let regex = match op {
            MatchOp::Re | MatchOp::NotRe => Some(
                Regex::new(&format!("^(?:{value})$"))
                    .map_err(|e| MatcherError::Regex { value: value.clone(), reason: e.to_string() })?,
            ),
            _ => None,
        };
        Ok(Self { name, op, value, regex })
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        let v = labels.get(&self.name).unwrap_or("");
        match (self.op, &self.regex) {
            (MatchOp::Eq, _) => v == self.value,
            (MatchOp::Ne, _) => v != self.value,
            (MatchOp::Re, Some(re)) => re.is_match(v),
            (MatchOp::NotRe, Some(re)) => !re.is_match(v),
            (_, None) => false,
        }
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{:?}", self.name, self.op.as_str(), self.value)
    }
}

/// A conjunction of matchers: all must match.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Matchers(pub Vec<Matcher>);

impl Matchers {
    pub fn matches(&self, labels: &Labels) -> bool {
        self.0.iter().all(|m| m.matches(labels))
    }

    /// Parses `{a="b", c=~"d.*"}` or the brace-less `a=b,c!=d` that amtool
    /// users type (values may then be unquoted).
    pub fn parse(text: &str) -> Result<Matchers, MatcherError> {
        let t = text.trim();
        let inner = t.strip_prefix('{').and_then(|r| r.strip_suffix('}')).unwrap_or(t);
        let mut out = Vec::new();
        let mut rest = inner.trim();
        while !rest.is_empty() {
            let name_end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
            let name = &rest[..name_end];
            let after = rest[name_end..].trim_start();
            let (op, after) = [("=~", MatchOp::Re), ("!~", MatchOp::NotRe), ("!=", MatchOp::Ne), ("=", MatchOp::Eq)]
                .iter()
                .find_map(|(s, op)| after.strip_prefix(s).map(|a| (*op, a.trim_start())))
                .ok_or_else(|| MatcherError::Syntax(rest.to_string()))?;
            let (value, after) = if let Some(q) = after.strip_prefix('"') {
                let mut value = String::new();
                let mut chars = q.char_indices();
                let end = loop {
                    match chars.next() {
                        None => return Err(MatcherError::Syntax(rest.to_string())),
                        Some((i, '"')) => break i + 1,
                        Some((_, '\\')) => match chars.next() {
                            Some((_, 'n')) => value.push('\n'),
                            Some((_, c)) => value.push(c),
                            None => return Err(MatcherError::Syntax(rest.to_string())),
                        },
                        Some((_, c)) => value.push(c),
                    }
                };
                (value, &q[end..])
            } else {
                let end = after.find(',').unwrap_or(after.len());
                (after[..end].trim().to_string(), &after[end..])
            };
            out.push(Matcher::new(name, op, value)?);
            rest = after.trim_start();
            rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
        }
        Ok(Matchers(out))
    }
}

impl fmt::Display for Matchers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, m) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{m}")?;
        }
        f.write_str("}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn labels() -> Labels {
        Labels::from_pairs([("alertname", "ZkNodeDown"), ("cluster", "prod-eu"), ("instance", "zk1:2181")])
    }

    #[test]
    fn operators_with_alertmanager_semantics() {
        let l = labels();
        let m = |t: &str| Matchers::parse(t).unwrap().matches(&l);
        assert!(m(r#"{alertname="ZkNodeDown"}"#));
        assert!(m(r#"{cluster=~"prod-.*", instance!="zk2:2181"}"#));
        assert!(!m(r#"{cluster=~"prod"}"#), "regexes are anchored");
        assert!(m(r#"{cluster!~"staging.*"}"#));
        assert!(m(r#"{team=""}"#), "a missing label matches the empty string");
        assert!(!m(r#"{team=~".+"}"#));
        assert!(m("alertname=ZkNodeDown, cluster=~prod.*"), "amtool style");
        assert!(m(""), "no matchers match everything");
    }

    #[test]
    fn errors() {
        assert!(matches!(Matchers::parse(r#"{a=~"("}"#), Err(MatcherError::Regex { .. })));
        assert!(matches!(Matchers::parse(r#"{1a="x"}"#), Err(MatcherError::Name(_))));
        assert!(matches!(Matchers::parse(r#"{a "x"}"#), Err(MatcherError::Syntax(_))));
        assert!(matches!(Matchers::parse(r#"{a="x}"#), Err(MatcherError::Syntax(_))));
    }

    #[test]
    fn display_round_trips() {
        let m = Matchers::parse(r#"{a="x\"y", b=~"c|d"}"#).unwrap();
        assert_eq!(Matchers::parse(&m.to_string()).unwrap(), m);
    }

    proptest! {
        #[test]
        fn parse_never_panics(text in "\\PC{0,60}") {
            let _ = Matchers::parse(&text);
        }
    }
}
