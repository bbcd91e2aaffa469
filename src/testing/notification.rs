//! `notification_test`: whole-pipeline tests in rule test files. The test
//! group's input series go through the rules, the tracker and the pipeline
//! of a real config (routing, inhibition, maintenance) on virtual time, with
//! silences and acks at given times; the test asserts which channels get
//! which alerts (and escalations, digests) at which times.

use crate::diag::Pos;
use crate::model::{Alert, Labels, Timestamp};
use crate::pipeline::{Ack, Matchers, Message, Pipeline, PipelineConfig, Silence, Silences};
use crate::yaml::{Node, Reader};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct NotificationTest {
    pub pos: Pos,
    /// The zkalert.yaml whose pipeline runs; `None`: the built-in config.
    pub config_path: Option<PathBuf>,
    /// The wall-clock time of virtual time zero (maintenance and digest
    /// schedules are read in it).
    pub start: Timestamp,
    /// Run until then (default: the last expectation).
    pub until: Duration,
    pub silences: Vec<Silence>,
    pub acks: Vec<TestAck>,
    pub expect: Vec<ExpectedMessage>,
}

#[derive(Debug, Clone)]
pub struct TestAck {
    pub at: Duration,
    pub matchers: Matchers,
    pub ack: Ack,
}

#[derive(Debug, Clone)]
pub struct ExpectedMessage {
    pub pos: Pos,
    pub at: Duration,
    pub channels: Vec<String>,
    pub escalation: bool,
    pub digest: bool,
    /// One matcher set per alert (an alertname alone, or `{…}`).
    pub firing: Vec<Matchers>,
    pub resolved: Vec<Matchers>,
}

/// One delivery that happened in the test.
#[derive(Debug, Clone)]
struct Delivery {
    at: Duration,
    channel: String,
    escalation: bool,
    digest: bool,
    firing: Vec<Labels>,
    resolved: Vec<Labels>,
}

const FIELDS: &[&str] = &["config", "start", "until", "silences", "acks", "expect"];

pub fn parse(r: &mut Reader, node: &Node, base: &Path) -> Option<NotificationTest> {
    let mut t = NotificationTest {
        pos: node.pos,
        config_path: None,
        start: Timestamp::from_millis(0),
        until: Duration::ZERO,
        silences: Vec::new(),
        acks: Vec::new(),
        expect: Vec::new(),
    };
    let mut until = None;
    for (key, v) in r.map(node, "notification_test", FIELDS) {
        match key {
            "config" => {
                if let Some(p) = r.string(v, "config") {
                    let path = base.join(p);
                    if !path.exists() {
                        r.error(v.pos, format!("config {} does not exist", path.display()));
                    }
                    t.config_path = Some(path);
                }
            }
            "start" => {
                if let Some(s) = r.string(v, "start") {
                    match chrono::DateTime::parse_from_rfc3339(&s) {
                        Ok(d) => t.start = Timestamp::from_millis(d.timestamp_millis()),
                        Err(e) => r.error(v.pos, format!("start: {s:?} is not an RFC 3339 time: {e}")),
                    }
                }
            }
            "until" => until = super::test_duration(r, v, "until"),
            "silences" => {
                for (i, s) in r.seq(v, "silences").iter().enumerate() {
                    if let Some(s) = silence(r, s, i) {
                        t.silences.push(s);
                    }
                }
            }
            "acks" => {
                for a in r.seq(v, "acks") {
                    if let Some(a) = ack(r, a) {
                        t.acks.push(a);
                    }
                }
            }
            _ => {
                for e in r.seq(v, "expect") {
                    if let Some(e) = expected(r, e) {
                        t.expect.push(e);
                    }
                }
            }
        }
    }
    // Silences and acks are given relative to virtual time zero.
    for s in &mut t.silences {
        s.starts_at = t.start + Duration::from_millis(s.starts_at.as_millis() as u64);
        s.ends_at = t.start + Duration::from_millis(s.ends_at.as_millis() as u64);
    }
    t.until = until.unwrap_or_else(|| t.expect.iter().map(|e| e.at).max().unwrap_or_default());
    Some(t)
}

fn matchers(r: &mut Reader, n: &Node, what: &str) -> Option<Matchers> {
    let text = r.string(n, what)?;
    // A bare name is an alertname.
    let text = if text.trim_start().starts_with('{') { text } else { format!("{{alertname={text:?}}}") };
    Matchers::parse(&text).map_err(|e| r.error(n.pos, format!("{what}: {e}"))).ok()
}

fn silence(r: &mut Reader, n: &Node, index: usize) -> Option<Silence> {
    let fields = r.map(n, "silence", &["matchers", "starts_at", "ends_at", "created_by", "comment"]);
    let get = |k: &str| fields.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
    let m = get("matchers").and_then(|v| matchers(r, v, "matchers"));
    let starts = get("starts_at").and_then(|v| super::test_duration(r, v, "starts_at")).unwrap_or_default();
    let ends = get("ends_at").and_then(|v| super::test_duration(r, v, "ends_at"));
    let (Some(m), Some(ends)) = (m, ends) else {
        r.error(n.pos, "silence needs `matchers` and `ends_at`");
        return None;
    };
    let rel = |d: Duration| Timestamp::from_millis(d.as_millis() as i64);
    Some(Silence {
        id: format!("test-silence-{}", index + 1),
        matchers: m,
        starts_at: rel(starts),
        ends_at: rel(ends),
        created_by: get("created_by").and_then(|v| r.string(v, "created_by")).unwrap_or_else(|| "test".into()),
        comment: get("comment").and_then(|v| r.string(v, "comment")).unwrap_or_default(),
    })
}

fn ack(r: &mut Reader, n: &Node) -> Option<TestAck> {
    let fields = r.map(n, "ack", &["at", "matchers", "by", "comment", "for"]);
    let get = |k: &str| fields.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
    let at = get("at").and_then(|v| super::test_duration(r, v, "at"));
    let m = get("matchers").and_then(|v| matchers(r, v, "matchers"));
    let (Some(at), Some(m)) = (at, m) else {
        r.error(n.pos, "ack needs `at` and `matchers` (which groups: any with a matching alert)");
        return None;
    };
    let valid_for = get("for").and_then(|v| super::test_duration(r, v, "for"));
    Some(TestAck {
        at,
        matchers: m,
        ack: Ack {
            by: get("by").and_then(|v| r.string(v, "by")).unwrap_or_else(|| "test".into()),
            comment: get("comment").and_then(|v| r.string(v, "comment")).unwrap_or_default(),
            // Made absolute when applied.
            at: Timestamp::from_millis(0),
            until: valid_for.map(|d| Timestamp::from_millis(d.as_millis() as i64)),
        },
    })
}

fn expected(r: &mut Reader, n: &Node) -> Option<ExpectedMessage> {
    let fields =
        r.map(n, "expected message", &["at", "channel", "channels", "escalation", "digest", "firing", "resolved"]);
    let get = |k: &str| fields.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
    let at = get("at").and_then(|v| super::test_duration(r, v, "at"));
    let mut channels: Vec<String> = get("channel").and_then(|v| r.string(v, "channel")).into_iter().collect();
    if let Some(list) = get("channels") {
        channels.extend(r.seq(list, "channels").iter().filter_map(|c| r.string(c, "channels")));
    }
    let Some(at) = at else {
        r.error(n.pos, "expected message needs `at`");
        return None;
    };
    if channels.is_empty() {
        r.error(n.pos, "expected message needs `channel` or `channels`");
        return None;
    }
    let flag = |r: &mut Reader, k: &str| get(k).and_then(|v| r.boolean(v, k)).unwrap_or(false);
    let list = |r: &mut Reader, k: &str| -> Vec<Matchers> {
        get(k).map(|v| r.seq(v, k).iter().filter_map(|m| matchers(r, m, k)).collect()).unwrap_or_default()
    };
    Some(ExpectedMessage {
        pos: n.pos,
        at,
        channels,
        escalation: flag(r, "escalation"),
        digest: flag(r, "digest"),
        firing: list(r, "firing"),
        resolved: list(r, "resolved"),
    })
}

/// The pipeline side of a test group run: fed after every evaluation.
pub struct Run<'t> {
    test: &'t NotificationTest,
    pipeline: Pipeline,
    next_ack: usize,
    deliveries: Vec<Delivery>,
}

impl<'t> Run<'t> {
    pub fn new(test: &'t NotificationTest, config: PipelineConfig) -> Self {
        let mut pipeline = Pipeline::new(config);
        pipeline.silences = Silences::new(test.silences.clone());
        Self { test, pipeline, next_ack: 0, deliveries: Vec::new() }
    }

    /// One pipeline step at virtual time `t` with the tracker's alerts.
    pub fn step(&mut self, alerts: &[&Alert], t: Duration) {
        let now = self.test.start + t;
        while let Some(a) = self.test.acks.get(self.next_ack).filter(|a| a.at <= t) {
            let mut ack = a.ack.clone();
            ack.at = now;
            ack.until = ack.until.map(|d| now + Duration::from_millis(d.as_millis() as u64));
            let policy = self.pipeline.config.policy.clone();
            let mut ids: Vec<String> =
                alerts.iter().filter(|x| a.matchers.matches(&x.labels)).map(|x| policy.group_key(x).id()).collect();
            ids.dedup();
            for id in ids {
                self.pipeline.dispatcher.ack(&id, ack.clone());
            }
            self.next_ack += 1;
        }
        for m in self.pipeline.step(alerts, now) {
            self.record(&m, t);
        }
    }

    fn record(&mut self, m: &Message, t: Duration) {
        for channel in &m.channels {
            self.deliveries.push(Delivery {
                at: t,
                channel: channel.clone(),
                escalation: m.escalation,
                digest: m.digest,
                firing: m.firing.iter().map(|a| a.labels.clone()).collect(),
                resolved: m.resolved.iter().map(|a| a.labels.clone()).collect(),
            });
        }
    }

    /// Compares what was delivered with what was expected: every expected
    /// delivery must happen, and nothing else.
    pub fn check(self) -> Option<String> {
        let all: Vec<String> = self.deliveries.iter().map(|d| format!("    {}", describe(d))).collect();
        let mut got = self.deliveries;
        let mut lines = Vec::new();
        for e in &self.test.expect {
            for channel in &e.channels {
                let found = got.iter().position(|d| {
                    d.at == e.at
                        && &d.channel == channel
                        && d.escalation == e.escalation
                        && d.digest == e.digest
                        && same_alerts(&e.firing, &d.firing)
                        && same_alerts(&e.resolved, &d.resolved)
                });
                match found {
                    Some(i) => {
                        got.remove(i);
                    }
                    None => {
                        lines.push(format!("  - missing (line {}):    {}", e.pos.line, describe_expected(e, channel)))
                    }
                }
            }
        }
        for d in &got {
            lines.push(format!("  + unexpected: {}", describe(d)));
        }
        if lines.is_empty() {
            return None;
        }
        let all = if all.is_empty() { "    (none)".to_string() } else { all.join("\n") };
        Some(format!(
            "notification_test (line {}):\n{}\n  all deliveries:\n{all}",
            self.test.pos.line,
            lines.join("\n")
        ))
    }
}

fn same_alerts(expected: &[Matchers], got: &[Labels]) -> bool {
    if expected.len() != got.len() {
        return false;
    }
    let mut left: Vec<&Labels> = got.iter().collect();
    expected.iter().all(|m| match left.iter().position(|l| m.matches(l)) {
        Some(i) => {
            left.remove(i);
            true
        }
        None => false,
    })
}

fn flags(escalation: bool, digest: bool) -> &'static str {
    match (escalation, digest) {
        (true, _) => " escalation",
        (_, true) => " digest",
        _ => "",
    }
}

fn describe_expected(e: &ExpectedMessage, channel: &str) -> String {
    let list = |m: &[Matchers]| m.iter().map(|m| m.to_string()).collect::<Vec<_>>().join(" ");
    format!(
        "at {} {channel}{} firing [{}] resolved [{}]",
        crate::duration::format_duration(e.at),
        flags(e.escalation, e.digest),
        list(&e.firing),
        list(&e.resolved)
    )
}

fn describe(d: &Delivery) -> String {
    let list = |l: &[Labels]| l.iter().map(|l| l.to_string()).collect::<Vec<_>>().join(" ");
    format!(
        "at {} {}{} firing [{}] resolved [{}]",
        crate::duration::format_duration(d.at),
        d.channel,
        flags(d.escalation, d.digest),
        list(&d.firing),
        list(&d.resolved)
    )
}
