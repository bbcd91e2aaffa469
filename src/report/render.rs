//! A report's subject, text and HTML from templates: the built-in `reports/*.j2` (compiled into the binary), any of
//! them replaced by a file a report's config names; with the filters `bytes`, `num` and `pct`.

use super::*;
use crate::notify::template::{TemplateError, TemplateSet, compile};
use minijinja::Value;
use std::path::PathBuf;

/// The report's templates, with the built-in text of each.
pub const BUILTIN: [(&str, &str); 3] = [
    ("subject", include_str!("../../reports/subject.j2")),
    ("text", include_str!("../../reports/text.j2")),
    ("html", include_str!("../../reports/html.j2")),
];

/// Template steps one rendering may take: a report of `gather::MAX_ROWS` alerts and failures takes about a
/// quarter of it.
const FUEL: u64 = 5_000_000;

/// A report rendered.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// The compiled report templates.
#[derive(Debug)]
pub struct ReportTemplates {
    set: TemplateSet,
}

impl ReportTemplates {
    /// The built-in templates, each replaced by the file given for its name (`subject`, `text`, `html`).
    pub fn load(overrides: &[(String, PathBuf)]) -> Result<Self, Vec<TemplateError>> {
        let mut set = compile(&BUILTIN, "reports", overrides)?;
        // A report lists up to `gather::MAX_ROWS` alerts and as many failures: more steps than a message.
        set.env.set_fuel(Some(FUEL));
        set.env.add_filter("bytes", bytes);
        set.env.add_filter("num", num);
        set.env.add_filter("pct", pct);
        Ok(Self { set })
    }

    pub fn builtin() -> Self {
        // The built-in templates are checked by tests; they always compile.
        Self::load(&[]).unwrap_or_else(|e| panic!("built-in report templates: {e:?}"))
    }

    /// The built-in templates, compiled once per process.
    pub fn shared_builtin() -> std::sync::Arc<Self> {
        static BUILTIN_SET: std::sync::LazyLock<std::sync::Arc<ReportTemplates>> =
            std::sync::LazyLock::new(|| std::sync::Arc::new(ReportTemplates::builtin()));
        BUILTIN_SET.clone()
    }

    /// Renders one template of the set.
    pub fn render_one(&self, name: &str, report: &Report) -> Result<String, TemplateError> {
        self.set.render(name, report)
    }

    /// Renders the subject (one line), text and HTML.
    pub fn render(&self, report: &Report) -> Result<Rendered, TemplateError> {
        Ok(Rendered {
            subject: self.render_one("subject", report)?.split_whitespace().collect::<Vec<_>>().join(" "),
            text: self.render_one("text", report)? + "\n",
            html: self.render_one("html", report)? + "\n",
        })
    }

    /// Renders each template against the sample reports (`zkalert check`): every problem, at `file:line`.
    pub fn check(&self) -> Vec<TemplateError> {
        let mut errors = Vec::new();
        for report in samples() {
            for (name, _) in BUILTIN {
                if let Err(e) = self.render_one(name, &report)
                    && !errors.contains(&e)
                {
                    errors.push(e);
                }
            }
        }
        errors
    }
}

fn number(v: &Value) -> Option<f64> {
    if v.is_none() || v.is_undefined() { None } else { f64::try_from(v.clone()).ok() }
}

/// A byte count for people: `12 B`, `812 KiB`, `1.5 MiB`.
fn bytes(v: Value) -> String {
    let Some(mut n) = number(&v) else { return "—".into() };
    for unit in ["B", "KiB", "MiB", "GiB", "TiB"] {
        if n.abs() < 1024.0 || unit == "TiB" {
            return if unit == "B" || n >= 100.0 { format!("{n:.0} {unit}") } else { format!("{n:.1} {unit}") };
        }
        n /= 1024.0;
    }
    unreachable!("the last unit returns")
}

/// A whole number with thousands separators (`12,345`), else one decimal (`3.5`).
fn num(v: Value) -> String {
    let Some(n) = number(&v) else { return "—".into() };
    if n.fract() != 0.0 || !n.is_finite() {
        return format!("{n:.1}");
    }
    let digits = format!("{}", n.abs() as u64);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0.0 { format!("-{out}") } else { out }
}

/// A percentage: `72.5 %`.
fn pct(v: Value) -> String {
    number(&v).map_or_else(|| "—".into(), |n| format!("{n:.1} %"))
}

/// Reports for checking templates: a troubled cluster with every section filled, and a quiet one with none.
pub fn samples() -> Vec<Report> {
    let node = |instance: &str, role: &str, up: bool| NodeRow {
        instance: instance.into(),
        up,
        role: role.into(),
        version: up.then(|| "3.8.0".into()),
        problem: (!up).then(|| "connection refused".into()),
        latency_avg_ms: up.then_some(2.5),
        latency_max_ms: up.then_some(180.0),
        connections: up.then_some(1_250.0),
        outstanding: up.then_some(0.0),
        znodes: up.then_some(12_345.0),
        watches: up.then_some(640.0),
        ephemerals: up.then_some(12.0),
        data_size_bytes: up.then_some(3_400_000.0),
        heap_used_bytes: up.then_some(700_000_000.0),
        heap_max_bytes: up.then_some(1_000_000_000.0),
        heap_used_percent: up.then_some(70.0),
        open_fds: up.then_some(120.0),
        max_fds: up.then_some(65_536.0),
        uptime_seconds: up.then_some(86_400.0),
        over: if up { ["connections"].into() } else { BTreeSet::new() },
    };
    let troubled = Report {
        cluster: "prod".into(),
        time_zone: "Asia/Shanghai".into(),
        generated_at: "2026-12-06 08:00:00 CST".into(),
        from: "2026-12-05 08:00:00 CST".into(),
        until: "2026-12-06 08:00:00 CST".into(),
        period: "1d".into(),
        summary: Summary {
            status: "critical",
            nodes_up: 2,
            nodes_total: 3,
            leader: Some("zk1:2181".into()),
            elections: 1,
            alerts: 2,
            alerts_firing: 1,
            alerts_by_tier: [0, 1, 1, 0],
            alerts_unacked: 1,
            silences: 1,
            delivery_failures: 1,
            findings: vec!["zk3:2181 is down (connection refused)".into()],
        },
        nodes: vec![
            node("zk1:2181", "leader", true),
            node("zk2:2181", "follower", true),
            node("zk3:2181", "unknown", false),
        ],
        disks: vec![DiskRow {
            instance: "zk1:2181".into(),
            path: "/var/lib/zookeeper".into(),
            used_percent: Some(72.0),
            free_bytes: Some(2e9),
            size_bytes: Some(8e9),
            over: true,
        }],
        elections: vec![ElectionRow {
            at: "2026-12-05 23:10:04".into(),
            from: Some("zk3:2181".into()),
            to: Some("zk1:2181".into()),
            leaderless_for: Some("2s".into()),
        }],
        alerts: vec![
            AlertRow {
                alertname: "ZkNodeDown".into(),
                tier: "P1".into(),
                instance: Some("zk3:2181".into()),
                summary: Some("zk3:2181 is down <& not answering>".into()),
                fired_at: "2026-12-05 23:10:00".into(),
                resolved_at: None,
                duration: "8h49m".into(),
                firing: true,
                acked_by: None,
                acked_at: None,
                runbook: Some("https://runbooks.example/zookeeper/node-down.md".into()),
            },
            AlertRow {
                alertname: "ZkHighLatency".into(),
                tier: "P2".into(),
                instance: None,
                summary: None,
                fired_at: "2026-12-05 09:00:00".into(),
                resolved_at: Some("2026-12-05 09:20:00".into()),
                duration: "20m".into(),
                firing: false,
                acked_by: Some("alice".into()),
                acked_at: Some("2026-12-05 09:05:00".into()),
                runbook: None,
            },
        ],
        silences: vec![SilenceRow {
            id: "3f2a".into(),
            matchers: r#"{cluster="prod", instance="zk3:2181"}"#.into(),
            created_by: "bob".into(),
            comment: "disk swap".into(),
            ends_at: "2026-12-06 12:00:00".into(),
        }],
        delivery_failures: vec![FailureRow {
            at: "2026-12-05 23:12:00".into(),
            channel: "sms".into(),
            tier: "P1".into(),
            group: r#"{alertname="ZkNodeDown", cluster="prod"}"#.into(),
            attempts: 5,
            error: Some("HTTP 503".into()),
            outcome: "gave up",
        }],
    };
    let quiet = Report {
        cluster: "staging".into(),
        summary: Summary {
            status: "ok",
            nodes_up: 0,
            nodes_total: 0,
            leader: None,
            elections: 0,
            alerts: 0,
            alerts_firing: 0,
            alerts_by_tier: [0; 4],
            alerts_unacked: 0,
            silences: 0,
            delivery_failures: 0,
            findings: Vec::new(),
        },
        nodes: Vec::new(),
        disks: Vec::new(),
        elections: Vec::new(),
        alerts: Vec::new(),
        silences: Vec::new(),
        delivery_failures: Vec::new(),
        ..troubled.clone()
    };
    vec![troubled, quiet]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_show_numbers_for_people_and_a_dash_for_none() {
        assert_eq!(bytes(Value::from(12)), "12 B");
        assert_eq!(bytes(Value::from(1_572_864)), "1.5 MiB");
        assert_eq!(bytes(Value::from(())), "—");
        assert_eq!(num(Value::from(12_345)), "12,345");
        assert_eq!(num(Value::from(3.25)), "3.2");
        assert_eq!(num(Value::from(-1_000_000)), "-1,000,000");
        assert_eq!(pct(Value::from(72.5)), "72.5 %");
        assert_eq!(pct(Value::from(())), "—");
    }

    #[test]
    fn the_built_in_templates_render_every_sample_and_escape_html() {
        let t = ReportTemplates::builtin();
        assert_eq!(t.check(), []);
        let r = t.render(&samples()[0]).unwrap();
        assert!(r.subject.contains("prod") && !r.subject.contains('\n'), "{}", r.subject);
        assert!(r.html.contains("&lt;&amp; not answering&gt;"), "the summary is escaped in HTML");
        assert!(r.text.contains("<& not answering>"), "and not in text");
        for needle in ["zk3:2181", "ZkNodeDown", "alice", "disk swap", "HTTP 503", "3.8.0"] {
            assert!(r.html.contains(needle) && r.text.contains(needle), "{needle} missing");
        }
    }

    #[test]
    fn a_report_as_large_as_gathered_renders() {
        let mut big = samples().remove(0);
        let (alert, failure) = (big.alerts[0].clone(), big.delivery_failures[0].clone());
        big.alerts = vec![alert; super::super::gather::MAX_ROWS];
        big.delivery_failures = vec![failure; super::super::gather::MAX_ROWS];
        big.nodes = (0..20).map(|i| NodeRow { instance: format!("zk{i}:2181"), ..big.nodes[0].clone() }).collect();
        let r = ReportTemplates::builtin().render(&big).unwrap();
        assert!(r.html.matches("<tr class=\"alert").count() >= super::super::gather::MAX_ROWS, "every row");
    }

    #[test]
    fn an_overridden_template_is_used_and_its_errors_name_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("s.j2");
        std::fs::write(&good, "Report {{ cluster }}").unwrap();
        let t = ReportTemplates::load(&[("subject".into(), good)]).unwrap();
        assert_eq!(t.render(&samples()[0]).unwrap().subject, "Report prod");
        let bad = dir.path().join("bad.j2");
        std::fs::write(&bad, "line one\n{{ nodes[0].colour }}").unwrap();
        let t = ReportTemplates::load(&[("text".into(), bad.clone())]).unwrap();
        let errors = t.check();
        assert!(errors.iter().any(|e| e.file == bad.display().to_string() && e.line == 2), "{errors:?}");
        let unknown = ReportTemplates::load(&[("body".into(), dir.path().join("x.j2"))]).unwrap_err();
        assert!(unknown[0].message.contains("expected one of subject, text, html"), "{unknown:?}");
    }
}
