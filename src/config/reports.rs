//! The `reports` section of `zkalert.yaml`: a daily inspection report per cluster (docs/reports.md), on a
//! crontab schedule in a time zone, written as an HTML file and mailed through email notifiers.

use crate::diag::Pos;
use crate::pipeline::Schedule;
use crate::report::render::ReportTemplates;
use crate::yaml::{Node, Reader};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// One cluster's scheduled report.
#[derive(Debug, Clone)]
pub struct ReportConfig {
    pub cluster: String,
    /// When it is made (default `0 8 * * *`, in UTC unless `time_zone`); its times are shown in the same zone.
    pub schedule: Schedule,
    /// How far back it looks (default 24h).
    pub period: Duration,
    /// Email notifiers it is sent through (none: the HTML file only).
    pub email: Vec<String>,
    /// Where its HTML files go (default `data_dir/reports`).
    pub html_dir: Option<PathBuf>,
    /// HTML files kept per cluster, the oldest removed (default 31).
    pub keep: usize,
    pub templates: Arc<ReportTemplates>,
}

pub const DEFAULT_SCHEDULE: &str = "0 8 * * *";
pub const DEFAULT_PERIOD: Duration = Duration::from_secs(24 * 3600);
pub const DEFAULT_KEEP: usize = 31;
/// A report looks back at most this far (the history is kept 35 days).
pub const MAX_PERIOD: Duration = Duration::from_secs(31 * 24 * 3600);

/// Reads the `reports` list; `clusters` are the ones sources watch, `email` the email notifiers' names.
pub(super) fn read(r: &mut Reader, n: &Node, base: &Path, clusters: &[&str], email: &[&str]) -> Vec<ReportConfig> {
    let mut out: Vec<ReportConfig> = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for item in r.seq(n, "reports") {
        let known = ["cluster", "schedule", "time_zone", "period", "email", "html_dir", "keep", "templates"];
        let fields = r.map(item, "report", &known);
        let get = |k: &str| fields.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
        let Some(cluster) = get("cluster").and_then(|v| r.string(v, "cluster")) else {
            if get("cluster").is_none() {
                r.error(item.pos, "report needs `cluster`: the cluster it inspects");
            }
            continue;
        };
        let cluster_pos = get("cluster").map_or(item.pos, |v| v.pos);
        if !clusters.contains(&cluster.as_str()) {
            let known = if clusters.is_empty() { "none".to_string() } else { clusters.join(", ") };
            r.error(cluster_pos, format!("report cluster {cluster:?}: no source watches it (sources watch: {known})"));
        }
        if seen.contains(&cluster) {
            r.error(cluster_pos, format!("report cluster {cluster:?} is listed twice"));
        }
        seen.push(cluster.clone());
        let expression =
            get("schedule").and_then(|v| r.string(v, "schedule")).unwrap_or_else(|| DEFAULT_SCHEDULE.into());
        let time_zone = get("time_zone").and_then(|v| r.string(v, "time_zone")).unwrap_or_else(|| "UTC".into());
        let schedule = match Schedule::new(&expression, &time_zone) {
            Ok(s) => Some(s),
            Err(e) => {
                let field =
                    if matches!(e, crate::pipeline::ScheduleError::TimeZone(_)) { "time_zone" } else { "schedule" };
                r.error(get(field).map_or(item.pos, |v| v.pos), e.to_string());
                None
            }
        };
        let period = match get("period") {
            Some(v) => r.duration(v, "period").filter(|d| {
                let ok = !d.is_zero() && *d <= MAX_PERIOD;
                if !ok {
                    r.error(v.pos, "period must be positive and at most 31d (the history kept)");
                }
                ok
            }),
            None => Some(DEFAULT_PERIOD),
        };
        let mut mail = Vec::new();
        if let Some(v) = get("email") {
            for name in r.seq(v, "email") {
                if let Some(s) = r.string(name, "email notifier") {
                    if !email.contains(&s.as_str()) {
                        let known = if email.is_empty() { "none".to_string() } else { email.join(", ") };
                        r.error(
                            name.pos,
                            format!("report email {s:?} is not an email notifier (email notifiers: {known})"),
                        );
                    }
                    mail.push(s);
                }
            }
        }
        let html_dir = get("html_dir").and_then(|v| r.string(v, "html_dir")).map(|d| base.join(d));
        let keep = match get("keep") {
            Some(v) => r.float(v, "keep").and_then(|k| {
                if k >= 1.0 && k.fract() == 0.0 && k <= 10_000.0 {
                    Some(k as usize)
                } else {
                    r.error(v.pos, "keep must be a whole number from 1 to 10000");
                    None
                }
            }),
            None => Some(DEFAULT_KEEP),
        };
        let templates = templates(r, get("templates"), base);
        if let (Some(schedule), Some(period), Some(keep), Some(templates)) = (schedule, period, keep, templates) {
            out.push(ReportConfig { cluster, schedule, period, email: mail, html_dir, keep, templates });
        }
    }
    out
}

/// The report's templates: the built-in ones, some replaced by files; each compiled and rendered against the
/// sample reports, problems reported at the template's file and line.
fn templates(r: &mut Reader, n: Option<&Node>, base: &Path) -> Option<Arc<ReportTemplates>> {
    let files: Vec<(String, PathBuf)> = match n {
        Some(n) => r.string_map(n, "templates").into_iter().map(|(name, path, _)| (name, base.join(path))).collect(),
        None => return Some(Arc::new(ReportTemplates::builtin())),
    };
    let pos = n.map_or(Pos::new(1, 1), |n| n.pos);
    let problems = match ReportTemplates::load(&files) {
        Ok(t) => {
            let problems = t.check();
            if problems.is_empty() {
                return Some(Arc::new(t));
            }
            problems
        }
        Err(problems) => problems,
    };
    for p in problems {
        r.error(pos, format!("report template {}:{}: {}", p.file, p.line, p.message));
    }
    None
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use std::path::Path;

    const HEAD: &str = "sources:\n  - {type: zookeeper, cluster: prod, nodes: ['a:2181']}\nnotifiers:\n  - {name: log, type: file, path: n.jsonl}\n  - {name: mail, type: email, host: smtp.example, from: 'z@example.com', to: ['o@example.com']}\n";

    fn problems(yaml: &str) -> Vec<String> {
        match Config::parse(&format!("{HEAD}{yaml}"), Path::new("z.yaml")) {
            Ok(_) => Vec::new(),
            Err(d) => d.items.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn a_report_is_read_with_its_defaults() {
        let config = Config::parse(
            &format!("{HEAD}reports:\n  - cluster: prod\n    email: [mail]\n"),
            Path::new("/etc/z/z.yaml"),
        )
        .unwrap();
        let r = &config.reports[0];
        assert_eq!(
            (r.cluster.as_str(), r.schedule.expression(), r.schedule.time_zone().name()),
            ("prod", "0 8 * * *", "UTC")
        );
        assert_eq!(
            (r.period, r.keep, r.email.as_slice()),
            (super::DEFAULT_PERIOD, 31, ["mail".to_string()].as_slice())
        );
        assert_eq!(r.html_dir, None, "data_dir/reports, decided by the runner");
        let dir = Config::parse(
            &format!("{HEAD}reports:\n  - {{cluster: prod, html_dir: out}}\n"),
            Path::new("/etc/z/z.yaml"),
        )
        .unwrap();
        assert_eq!(dir.reports[0].html_dir.as_deref(), Some(Path::new("/etc/z/out")), "relative to the config");
    }

    #[test]
    fn every_problem_of_a_report_is_named_where_it_is() {
        let found = problems(
            "reports:
  - {cluster: staging}
  - {cluster: prod, email: [log, pager], schedule: 'at eight', period: 40d, keep: 0}
  - {cluster: prod, time_zone: Mars/Base, colour: red}
  - {schedule: '0 8 * * *'}
",
        );
        let wanted = [
            "z.yaml:7:15: report cluster \"staging\": no source watches it (sources watch: prod)",
            "z.yaml:8:29: report email \"log\" is not an email notifier (email notifiers: mail)",
            "z.yaml:8:34: report email \"pager\" is not an email notifier",
            "z.yaml:8:52: schedule \"at eight\": Invalid pattern",
            "z.yaml:8:72: period must be positive and at most 31d",
            "z.yaml:8:83: keep must be a whole number from 1 to 10000",
            "z.yaml:9:15: report cluster \"prod\" is listed twice",
            "z.yaml:9:32: unknown time zone \"Mars/Base\"",
            "z.yaml:9:43: unknown field \"colour\" in report",
            "z.yaml:10:5: report needs `cluster`",
        ];
        for w in wanted {
            assert!(found.iter().any(|f| f.starts_with(w)), "{w:?} not in {found:#?}");
        }
    }

    #[test]
    fn a_template_that_does_not_render_is_refused_at_its_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("r.j2"), "<h1>{{ cluster }}</h1>\n{{ nodes[0].colour }}\n").unwrap();
        let yaml = format!("{HEAD}reports:\n  - {{cluster: prod, templates: {{html: r.j2}}}}\n");
        let err = Config::parse(&yaml, &dir.path().join("z.yaml")).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("report template") && text.contains("r.j2:2"), "{text}");
    }
}
