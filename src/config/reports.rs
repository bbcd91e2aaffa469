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
        if out.iter().any(|o| o.cluster == cluster) {
            r.error(cluster_pos, format!("report cluster {cluster:?} is listed twice"));
        }
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
