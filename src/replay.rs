//! Replay: run rules over recorded samples (JSON lines or Prometheus text
//! with timestamps) on virtual time, and produce the firing timeline.

use crate::diag::{Diagnostic, Diagnostics, Pos};
use crate::model::{Labels, Sample, Severity, Timestamp};
use crate::rule::{AlertEvent, Evaluator, RuleSet};
use crate::store::SeriesStore;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Reads recorded samples: JSON lines (`{"ts", "name", "labels", "value"}`,
/// `ts` RFC 3339 or Unix seconds) or Prometheus text exposition lines with
/// millisecond timestamps. Every bad line is reported.
pub fn read_samples(path: &Path, text: &str) -> Result<Vec<Sample>, Diagnostics> {
    let mut diags = Diagnostics::default();
    let mut out = Vec::new();
    let json = text.trim_start().starts_with('{');
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let parsed = if json { parse_json_line(trimmed) } else { parse_text_line(trimmed) };
        match parsed {
            Ok(s) => out.push(s),
            Err((col, msg)) => diags.items.push(Diagnostic::new(path, Pos::new(i + 1, col), msg)),
        }
    }
    if diags.is_empty() {
        out.sort_by_key(|s| s.timestamp);
        Ok(out)
    } else {
        Err(diags)
    }
}

fn parse_json_line(line: &str) -> Result<Sample, (usize, String)> {
    let v: serde_json::Value =
        serde_json::from_str(line).map_err(|e| (e.column().max(1), format!("invalid JSON: {e}")))?;
    let obj = v.as_object().ok_or((1, "expected a JSON object".to_string()))?;
    let name = obj.get("name").and_then(|n| n.as_str()).ok_or((1, "missing string field `name`".to_string()))?;
    let ts = match obj.get("ts") {
        Some(serde_json::Value::Number(n)) => {
            let secs = n.as_f64().ok_or((1, "bad `ts`".to_string()))?;
            Timestamp::from_millis((secs * 1000.0).round() as i64)
        }
        Some(serde_json::Value::String(s)) => chrono::DateTime::parse_from_rfc3339(s)
            .map(|t| Timestamp::from_millis(t.timestamp_millis()))
            .map_err(|e| (1, format!("`ts` {s:?} is not RFC 3339: {e}")))?,
        _ => return Err((1, "missing `ts` (RFC 3339 string or Unix seconds)".into())),
    };
    let value = match obj.get("value") {
        Some(serde_json::Value::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
        Some(serde_json::Value::String(s)) => {
            crate::yaml::parse_float(s).ok_or((1, format!("`value` {s:?} is not a number")))?
        }
        _ => return Err((1, "missing numeric `value`".into())),
    };
    let mut labels = Labels::new();
    if let Some(l) = obj.get("labels") {
        let map = l.as_object().ok_or((1, "`labels` must be an object".to_string()))?;
        for (k, v) in map {
            let v = v.as_str().ok_or((1, format!("label {k} must be a string")))?;
            labels.insert(k.clone(), v);
        }
    }
    Ok(Sample { name: name.to_string(), labels, timestamp: ts, value })
}

/// `name{labels} value timestamp_ms`, read with the Prometheus source's
/// exposition parser one line at a time, so every bad line is reported.
fn parse_text_line(line: &str) -> Result<Sample, (usize, String)> {
    let mut samples = crate::source::prom::parse_text(line).map_err(|e| (e.col, e.message))?;
    let Some(s) = samples.pop() else { return Err((1, "expected `name value timestamp`".into())) };
    let ts = s.timestamp_ms.ok_or((1, "a recorded sample needs a millisecond timestamp".to_string()))?;
    Ok(Sample {
        name: s.name,
        labels: s.labels.into_iter().collect(),
        timestamp: Timestamp::from_millis(ts),
        value: s.value,
    })
}

/// One stretch of an alert firing at one tier.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Span {
    pub alertname: String,
    pub labels: Labels,
    pub tier: Severity,
    pub from: Timestamp,
    /// `None`: still firing at the end of the input.
    pub to: Option<Timestamp>,
}

/// Runs the rules over the samples, evaluating every `interval` from the
/// first sample to the last, and returns the firing spans in start order.
pub fn replay(rules: Arc<RuleSet>, samples: &[Sample], interval: Duration) -> Vec<Span> {
    let Some(first) = samples.first() else { return Vec::new() };
    let last = samples.last().map_or(first.timestamp, |s| s.timestamp);
    let step = interval.as_millis().max(1) as i64;
    let mut now = Timestamp::from_millis(first.timestamp.as_millis().div_euclid(step) * step);
    let mut store = Arc::new(SeriesStore::for_rules(&rules.retention));
    let mut evaluator = Evaluator::new(rules, interval);
    let mut open: HashMap<crate::model::Fingerprint, Span> = HashMap::new();
    let mut done = Vec::new();
    let mut next = 0;
    while now <= last {
        {
            let st = Arc::make_mut(&mut store);
            while next < samples.len() && samples[next].timestamp <= now {
                let s = &samples[next];
                st.ingest(&s.name, &s.labels, s.timestamp, s.value);
                next += 1;
            }
            st.compact(now);
        }
        for event in evaluator.evaluate_due(&store, now) {
            let a = event.alert();
            let start_span =
                |tier| Span { alertname: a.name().to_string(), labels: a.labels.clone(), tier, from: now, to: None };
            match &event {
                AlertEvent::Firing(_) => {
                    open.insert(a.fingerprint, start_span(a.severity));
                }
                AlertEvent::Escalated { .. } | AlertEvent::Deescalated { .. } => {
                    if let Some(mut s) = open.remove(&a.fingerprint) {
                        s.to = Some(now);
                        done.push(s);
                    }
                    open.insert(a.fingerprint, start_span(a.severity));
                }
                AlertEvent::Resolved(_) => {
                    if let Some(mut s) = open.remove(&a.fingerprint) {
                        s.to = Some(now);
                        done.push(s);
                    }
                }
                AlertEvent::Pending(_) => {}
            }
        }
        now = now + interval;
    }
    done.extend(open.into_values());
    done.sort_by(|a, b| (a.from, &a.alertname, &a.labels).cmp(&(b.from, &b.alertname, &b.labels)));
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_json_lines_and_text() {
        let p = Path::new("x");
        let j = r#"{"ts": "2026-01-01T00:00:00Z", "name": "up", "labels": {"instance": "a"}, "value": 1}
{"ts": 1767225660, "name": "up", "labels": {"instance": "a"}, "value": 0}"#;
        let s = read_samples(p, j).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[1].timestamp.as_millis() - s[0].timestamp.as_millis(), 60_000);
        let t = "# HELP up x\nup{instance=\"a\"} 1 1767225600000\nzk_x 2.5 1767225660000\n";
        let s = read_samples(p, t).unwrap();
        assert_eq!(s[1].value, 2.5);
        let bad = read_samples(p, "up 1\nup{a=\"b\"} x 5\n").unwrap_err();
        assert_eq!(bad.len(), 2);
        assert_eq!(bad.items[0].pos.line, 1);
    }
}
