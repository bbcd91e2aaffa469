//! Scheduled reports (`reports` in the config, docs/reports.md): each cluster's on its crontab. Made on the loop
//! (`report::gather` over the store, the state file and the silences, then rendered), then written as an HTML
//! file and mailed on a task of its own, each retried with backoff until the next report is due; outcomes in
//! `zkalert_reports_total` and the log. When each was last due is in the state file, so a restart neither makes a
//! report twice nor skips one due while zkalert was down (if that was less than a period ago).

use super::Runner;
use crate::config::{Config, ReportConfig};
use crate::metrics::Metrics;
use crate::model::Timestamp;
use crate::notify::SendError;
use crate::notify::email::EmailNotifier;
use crate::notify::template::Links;
use crate::report::Report;
use crate::report::gather::{Inputs, Period, gather};
use crate::report::render::ReportTemplates;
use crate::state::StateError;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Retries of a report's file and emails start this far apart, doubling up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(600);
/// One attempt to mail a report may take this long.
const SEND_TIMEOUT: Duration = Duration::from_secs(60);
/// A report is retried at most this long (or until the next is due, if sooner).
const MAX_RETRYING: Duration = Duration::from_secs(6 * 3600);

/// The scheduled reports of the config in force, and how to send them.
#[derive(Default)]
pub struct DailyPlan {
    reports: Vec<ReportConfig>,
    /// Email notifiers by name (those some report names).
    mailers: HashMap<String, Arc<EmailNotifier>>,
    /// Where HTML files go without a report's own `html_dir`.
    default_dir: PathBuf,
    /// The clusters the config's sources watch: a report of one is asked for before its first poll lands.
    watched: Vec<String>,
    links: Links,
}

impl DailyPlan {
    /// The config's reports, with the email notifiers they name built.
    pub fn from_config(config: &Config) -> Result<Self, String> {
        let names = config.reports.iter().flat_map(|r| &r.email).map(String::as_str);
        let mailers = super::channels::report_mailers(&config.notifiers, names, SEND_TIMEOUT)?;
        Ok(Self {
            reports: config.reports.clone(),
            mailers,
            default_dir: config.data_dir.join("reports"),
            watched: config.sources.iter().map(|s| s.cluster().to_string()).filter(|c| !c.is_empty()).collect(),
            links: config.links.clone(),
        })
    }
}

/// A scheduled report and when it is next due.
struct Scheduled {
    config: ReportConfig,
    next: Option<Timestamp>,
}

/// The runner's scheduled reports.
pub struct DailyReports {
    plan: DailyPlan,
    scheduled: Vec<Scheduled>,
    /// Per cluster, the latest report this process made (done or still being written and mailed): a reload while
    /// one is retried does not make it again.
    made: HashMap<String, Timestamp>,
    /// Each task tells here, by cluster and due time, that its report is done (written and mailed, or given up);
    /// the loop then records it in the state file (`Runner::report_done`).
    done: tokio::sync::mpsc::UnboundedSender<(String, Timestamp)>,
    done_rx: Option<tokio::sync::mpsc::UnboundedReceiver<(String, Timestamp)>>,
}

impl Default for DailyReports {
    fn default() -> Self {
        let (done, done_rx) = tokio::sync::mpsc::unbounded_channel();
        Self { plan: DailyPlan::default(), scheduled: Vec::new(), made: HashMap::new(), done, done_rx: Some(done_rx) }
    }
}

impl DailyReports {
    /// When the next report is due.
    pub fn next_due(&self) -> Option<Timestamp> {
        self.scheduled.iter().filter_map(|s| s.next).min()
    }

    /// Where finished reports are told, for the run loop to take once.
    pub fn take_done(&mut self) -> Option<tokio::sync::mpsc::UnboundedReceiver<(String, Timestamp)>> {
        self.done_rx.take()
    }
}

impl Runner {
    /// Takes the config's reports (at start-up and on reload). A report due since the last one done (as the state
    /// file says) or made by this process, and less than its period ago, is made at once: it was due while zkalert
    /// was down, or zkalert was stopped while it was written and mailed.
    pub fn set_daily(&mut self, plan: DailyPlan, now: Timestamp) {
        let mut scheduled = Vec::new();
        for config in &plan.reports {
            let recorded = self.durable.as_ref().and_then(|d| match d.db.report_due(&config.cluster) {
                Ok(t) => t,
                Err(e) => {
                    tracing::error!(cluster = %config.cluster, error = %e, "cannot read when the report was last due");
                    None
                }
            });
            let last_due = recorded.max(self.daily.made.get(&config.cluster).copied());
            let missed = config
                .schedule
                .latest_until(now)
                .filter(|due| last_due.is_some_and(|last| last < *due) && now.since(*due) < config.period);
            let next = missed.or_else(|| config.schedule.next_after(now));
            scheduled.push(Scheduled { config: config.clone(), next });
        }
        self.daily.plan = plan;
        self.daily.scheduled = scheduled;
    }

    /// One cluster's report over `period` up to `now`, its times in `time_zone`.
    pub fn report(
        &self,
        cluster: &str,
        period: Duration,
        time_zone: chrono_tz::Tz,
        now: Timestamp,
    ) -> Result<Report, StateError> {
        let inputs = Inputs {
            store: &self.store,
            db: self.durable.as_ref().map(|d| &d.db),
            silences: &self.pipeline.silences,
            links: &self.daily.plan.links,
        };
        gather(&inputs, &Period { cluster: cluster.to_string(), until: now, length: period, time_zone })
    }

    /// One cluster's report now, for the API (`zkalert report`): over `period`, its times in `time_zone` (default:
    /// the zone of the cluster's scheduled report, else UTC), with the templates to render it with (its scheduled
    /// report's, else the built-in ones): the API renders it, off the loop.
    pub fn report_now(
        &self,
        cluster: &str,
        period: Duration,
        time_zone: Option<chrono_tz::Tz>,
        now: Timestamp,
    ) -> Result<crate::api::ReportReply, crate::api::CommandError> {
        let scheduled = self.daily.plan.reports.iter().find(|r| r.cluster == cluster);
        let plan = &self.daily.plan;
        if scheduled.is_none()
            && !plan.watched.iter().any(|c| c == cluster)
            && !self.store.clusters().any(|(c, _)| c == cluster)
        {
            let mut known: Vec<&str> = self.store.clusters().map(|(c, _)| c).filter(|c| !c.is_empty()).collect();
            known.extend(plan.watched.iter().map(String::as_str));
            known.sort_unstable();
            known.dedup();
            return Err(crate::api::CommandError::NotFound(format!(
                "no cluster named {cluster:?} (known: {})",
                if known.is_empty() { "none yet".to_string() } else { known.join(", ") }
            )));
        }
        let tz = time_zone.or(scheduled.map(|s| s.schedule.time_zone())).unwrap_or(chrono_tz::UTC);
        let report = self
            .report(cluster, period, tz, now)
            .map_err(|e| crate::api::CommandError::Failed(format!("cannot read the state file: {e}")))?;
        let templates =
            scheduled.map_or_else(crate::report::render::ReportTemplates::shared_builtin, |s| s.templates.clone());
        Ok((Box::new(report), templates))
    }

    /// Records that `cluster`'s report due at `due` is done (written and mailed, or given up): it is not made again
    /// after a restart. Until then a restart makes it again, so a report is never lost to a stop mid-way (its
    /// mails carry the same Message-ID). A failure to record is logged; a restart then makes it again.
    pub fn report_done(&mut self, cluster: &str, due: Timestamp) {
        if let Some(d) = &mut self.durable
            && let Err(e) = d.db.set_report_due(cluster, due)
        {
            tracing::error!(cluster, error = %e, "cannot record that the report is done: a restart makes it again");
        }
    }

    /// Makes the reports due at `now` (their data, here on the loop) and hands each to a task that renders, writes
    /// and mails it. Returns them.
    pub fn run_due_reports(&mut self, now: Timestamp) -> Vec<Report> {
        let mut made = Vec::new();
        for i in 0..self.daily.scheduled.len() {
            let Some(due) = self.daily.scheduled[i].next.filter(|t| *t <= now) else { continue };
            let config = self.daily.scheduled[i].config.clone();
            self.daily.scheduled[i].next = config.schedule.next_after(now);
            self.daily.made.insert(config.cluster.clone(), due);
            if !self.sends() {
                // With `ha:`, the replica that pages is the one that reports.
                tracing::info!(cluster = %config.cluster, "report due: the sending replica makes it");
                self.report_done(&config.cluster, due);
                continue;
            }
            let report = match self.report(&config.cluster, config.period, config.schedule.time_zone(), now) {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(cluster = %config.cluster, error = %e, "cannot read the report's history");
                    self.metrics.observe_daily_report(&config.cluster, "failed");
                    self.metrics.observe_daily_report(&config.cluster, "gave_up");
                    self.report_done(&config.cluster, due);
                    continue;
                }
            };
            let job = Job {
                id: format!("report-{}-{}", config.cluster, due.as_millis()),
                file: config.html_dir.clone().unwrap_or_else(|| self.daily.plan.default_dir.clone()).join(file_name(
                    &config.cluster,
                    due,
                    config.schedule.time_zone(),
                )),
                keep: config.keep,
                mailers: config.email.iter().filter_map(|n| self.daily.plan.mailers.get(n).cloned()).collect(),
                cluster: config.cluster.clone(),
                report: report.clone(),
                templates: config.templates.clone(),
                retry_until: self.daily.scheduled[i].next.map_or(now + MAX_RETRYING, |n| n.min(now + MAX_RETRYING)),
                started: now,
                metrics: self.metrics.clone(),
                due,
                done: self.daily.done.clone(),
            };
            tracing::info!(cluster = %config.cluster, file = %job.file.display(), mailed_to = ?config.email, "report due");
            tokio::spawn(job.deliver());
            made.push(report);
        }
        made
    }
}

/// `CLUSTER-YYYY-MM-DD-HHMM.html`, the local time it was due (files sort by date).
fn file_name(cluster: &str, due: Timestamp, tz: chrono_tz::Tz) -> String {
    let safe: String =
        cluster.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect();
    let when = chrono::DateTime::from_timestamp_millis(due.as_millis())
        .map(|d| d.with_timezone(&tz).format("%Y-%m-%d-%H%M").to_string())
        .unwrap_or_else(|| due.as_millis().to_string());
    format!("{safe}-{when}.html")
}

/// One report to write and mail.
struct Job {
    id: String,
    cluster: String,
    file: PathBuf,
    keep: usize,
    mailers: Vec<Arc<EmailNotifier>>,
    report: Report,
    templates: Arc<ReportTemplates>,
    retry_until: Timestamp,
    started: Timestamp,
    metrics: Arc<Metrics>,
    due: Timestamp,
    done: tokio::sync::mpsc::UnboundedSender<(String, Timestamp)>,
}

impl Job {
    /// Renders the report, writes the file and sends each email, then tells the loop it is done.
    async fn deliver(self) {
        let (done, cluster, due) = (self.done.clone(), self.cluster.clone(), self.due);
        self.attempt().await;
        // The loop is gone only when zkalert stops: the report is then made again at the next start.
        let _ = done.send((cluster, due));
    }

    /// Writes the file and sends each email, each retried with backoff until it works, fails for good or
    /// `retry_until` passes.
    async fn attempt(self) {
        let (report, templates) = (self.report.clone(), self.templates.clone());
        let rendered = match tokio::task::spawn_blocking(move || templates.render(&report)).await {
            Ok(Ok(r)) => r,
            failed => {
                // A template `zkalert check` passed that fails on this report's data: retrying will not help.
                let error =
                    failed.map_or_else(|e| e.to_string(), |r| r.err().map(|e| e.to_string()).unwrap_or_default());
                tracing::error!(cluster = %self.cluster, error = %error, "cannot render the report");
                self.metrics.observe_daily_report(&self.cluster, "failed");
                self.metrics.observe_daily_report(&self.cluster, "gave_up");
                return;
            }
        };
        self.metrics.observe_daily_report(&self.cluster, "made");
        let mut pending_file = true;
        let mut pending_mail: Vec<Arc<EmailNotifier>> = self.mailers.clone();
        let mut backoff = FIRST_BACKOFF;
        let mut elapsed = Duration::ZERO;
        let mut gave_up = false;
        loop {
            if pending_file {
                let (file, html, keep) = (self.file.clone(), rendered.html.clone(), self.keep);
                let written = tokio::task::spawn_blocking(move || write_file(&file, &html, keep))
                    .await
                    .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
                match written {
                    Ok(()) => {
                        pending_file = false;
                        self.metrics.observe_daily_report(&self.cluster, "written");
                    }
                    Err(e) => {
                        tracing::error!(cluster = %self.cluster, file = %self.file.display(), error = %e, "cannot write the report");
                        self.metrics.observe_daily_report(&self.cluster, "failed");
                    }
                }
            }
            let mut still = Vec::new();
            for mailer in pending_mail {
                let sent = tokio::time::timeout(SEND_TIMEOUT, mailer.send_report(&self.id, &rendered))
                    .await
                    .unwrap_or_else(|_| Err(SendError::Retryable(format!("no answer in {SEND_TIMEOUT:?}"))));
                match sent {
                    Ok(()) => self.metrics.observe_daily_report(&self.cluster, "mailed"),
                    Err(e) => {
                        tracing::error!(cluster = %self.cluster, notifier = %mailer.name(), error = %e, "cannot mail the report");
                        self.metrics.observe_daily_report(&self.cluster, "failed");
                        if e.is_retryable() {
                            still.push(mailer);
                        } else {
                            gave_up = true;
                            self.metrics.observe_daily_report(&self.cluster, "gave_up");
                        }
                    }
                }
            }
            pending_mail = still;
            if !pending_file && pending_mail.is_empty() {
                break;
            }
            if self.started + elapsed + backoff > self.retry_until {
                tracing::error!(cluster = %self.cluster, "giving up on the report: still failing when the next is due");
                self.metrics.observe_daily_report(&self.cluster, "gave_up");
                return;
            }
            tokio::time::sleep(backoff).await;
            elapsed += backoff;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
        if !gave_up {
            self.metrics.report_succeeded(&self.cluster, self.started + elapsed);
            tracing::info!(cluster = %self.cluster, file = %self.file.display(), "report written and mailed");
        }
    }
}

/// Writes `html` to `file` whole (a temporary file renamed over it), then removes the oldest reports of the same
/// cluster in the directory past `keep`.
fn write_file(file: &Path, html: &str, keep: usize) -> std::io::Result<()> {
    let dir = file.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = file.with_extension("html.tmp");
    std::fs::write(&tmp, html)?;
    std::fs::rename(&tmp, file)?;
    // The cluster's files share the name up to the date: `CLUSTER-YYYY-MM-DD-HHMM.html`.
    let name = file.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let prefix = &name[..name.len().saturating_sub("YYYY-MM-DD-HHMM.html".len())];
    let mut ours: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.len() == name.len() && n.starts_with(prefix) && n.ends_with(".html"))
        })
        .collect();
    ours.sort();
    let excess = ours.len().saturating_sub(keep);
    for old in &ours[..excess] {
        std::fs::remove_file(old)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Command;
    use crate::clock::ManualClock;
    use crate::config::{NotifierConfig, NotifierKind};
    use crate::model::Labels;
    use crate::notify::template::Rendering;
    use crate::pipeline::{Ack, Matchers, PipelineConfig, Silence};
    use crate::source::{PollBatch, SeriesBatch};
    use crate::state::StateDb;
    use crate::test_support::rules_from_yaml;

    const NODES: [&str; 3] = ["zk1:2181", "zk2:2181", "zk3:2181"];

    use crate::pipeline::schedule::tests::at;

    /// One poll of the ensemble `prod` as the ZooKeeper source gives it: per node `up` and, when up, its role and
    /// numbers; the cluster's leader count.
    fn ensemble(t: Timestamp, up: [bool; 3], leader: Option<usize>) -> PollBatch {
        let mut series: Vec<SeriesBatch> = NODES
            .iter()
            .enumerate()
            .map(|(i, node)| {
                let mut values = vec![("up".to_string(), f64::from(u8::from(up[i])))];
                if up[i] {
                    let is_leader = leader == Some(i);
                    values.extend(
                        [
                            ("zk_is_leader", f64::from(u8::from(is_leader))),
                            ("zk_avg_latency", if i == 2 { 150.0 } else { 1.5 }),
                            ("zk_max_latency", 40.0),
                            ("zk_num_alive_connections", 12.0 + i as f64),
                            ("zk_outstanding_requests", 0.0),
                            ("zk_znode_count", 1_234.0),
                            ("zk_watch_count", 56.0),
                            ("zk_approximate_data_size", 98_765.0),
                            ("zk_jvm_heap_used_bytes", 300e6),
                            ("zk_jvm_heap_max_bytes", 1e9),
                            ("zk_jvm_heap_used_percent", 30.0),
                        ]
                        .map(|(n, v)| (n.to_string(), v)),
                    );
                }
                let role = match (up[i], leader == Some(i)) {
                    (false, _) => None,
                    (true, true) => Some("leader"),
                    (true, false) => Some("follower"),
                };
                let mut info = Labels::new();
                if let Some(role) = role {
                    info.insert("role", role);
                    info.insert("version", "3.8.0");
                } else {
                    info.insert(crate::source::failures::POLL_ERROR, "connection refused");
                }
                SeriesBatch {
                    labels: Labels::from_pairs([("cluster", "prod"), ("instance", *node)]),
                    info: Some(info),
                    timestamp: t,
                    values,
                }
            })
            .collect();
        series.push(SeriesBatch {
            labels: Labels::from_pairs([("cluster", "prod")]),
            info: None,
            timestamp: t,
            values: vec![("zk_cluster_leaders".into(), f64::from(u8::from(leader.is_some())))],
        });
        series.push(SeriesBatch {
            labels: Labels::from_pairs([("cluster", "prod"), ("instance", "zk1:2181"), ("path", "/var/lib/zookeeper")]),
            info: None,
            timestamp: t,
            values: vec![("host_disk_used_percent".into(), 82.0), ("host_disk_free_bytes".into(), 1.5e9)],
        });
        PollBatch { series }
    }

    const CONFIG: &str = "
sources:
  - {type: zookeeper, cluster: prod, nodes: ['zk1:2181', 'zk2:2181', 'zk3:2181']}
notifiers:
  - {name: pages, type: file, path: pages.jsonl}
reports:
  - cluster: prod
    schedule: '0 8 * * *'
    time_zone: Asia/Shanghai
    html_dir: reports
    keep: 2
";

    /// A day of `prod` on virtual time: zk1, the leader, dies at 09:00 (Shanghai) and zk2 takes over 5 s later;
    /// the page is acked; zk1 comes back at 09:30; zk3 is silenced. The 08:00 report the next day tells all of it.
    #[tokio::test(start_paused = true)]
    async fn the_scheduled_report_tells_the_day_from_the_store_and_the_state_file() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::parse(CONFIG, &dir.path().join("zkalert.yaml")).unwrap();
        let rules = rules_from_yaml(
            "groups:\n- name: g\n  rules:\n  - alert: ZkNodeDown\n    expr: up == 0\n    for: 10s\n    severity: P1\n    annotations: {summary: '{{ $labels.instance }} is down'}\n    runbook: https://runbooks.example/zk/node-down\n",
        )
        .unwrap();
        let pages = NotifierConfig::new("pages", NotifierKind::File { path: dir.path().join("pages.jsonl") });
        let channels = crate::runner::channels::of(&[pages], &Rendering::builtin());
        let mut runner = Runner::new(
            Arc::new(rules),
            Duration::from_secs(5),
            PipelineConfig::defaults_to(&["pages".into()]),
            channels,
        );
        let start = at("2026-12-05T00:30:00Z");
        let clock = Arc::new(ManualClock::new(start));
        runner.deliverer.set_clock(clock.clone());
        runner
            .restore_from(StateDb::open(&dir.path().join("state.db")).unwrap(), start, Duration::from_secs(10))
            .unwrap();
        runner.set_daily(DailyPlan::from_config(&config).unwrap(), start);
        assert_eq!(runner.daily.next_due(), Some(at("2026-12-06T00:00:00Z")), "08:00 in Shanghai");

        let step = |runner: &mut Runner, t: Timestamp, up: [bool; 3], leader: Option<usize>| {
            clock.set(t);
            runner.on_batch(0, ensemble(t, up, leader), false);
            runner.evaluate(clock.as_ref());
        };
        step(&mut runner, start, [true; 3], Some(0));
        let died = at("2026-12-05T01:00:00Z");
        step(&mut runner, died, [false, true, true], None);
        step(&mut runner, died + Duration::from_secs(5), [false, true, true], Some(1));
        let mut t = died + Duration::from_secs(5);
        while t < died + Duration::from_secs(1800) {
            t = t + Duration::from_secs(15);
            step(&mut runner, t, [false, true, true], Some(1));
            if t == died + Duration::from_secs(65) {
                let (reply, answer) = tokio::sync::oneshot::channel();
                let ack = Ack { by: "alice".into(), comment: "on it".into(), at: t, until: None };
                let matchers = Some(Matchers::parse("{alertname=\"ZkNodeDown\"}").unwrap());
                runner.write(Command::Ack { group_id: None, matchers, ack, reply }, t).await;
                answer.await.unwrap().unwrap();
            }
        }
        let back = t + Duration::from_secs(15);
        step(&mut runner, back, [true; 3], Some(1));
        step(&mut runner, back + Duration::from_secs(15), [true; 3], Some(1));
        let (reply, answer) = tokio::sync::oneshot::channel();
        let silence = Silence {
            id: String::new(),
            matchers: Matchers::parse("{cluster=\"prod\", instance=\"zk3:2181\"}").unwrap(),
            starts_at: back,
            ends_at: at("2026-12-06T06:00:00Z"),
            created_by: "bob".into(),
            comment: "disk swap".into(),
        };
        runner.write(Command::AddSilence { silence, reply }, back).await;
        answer.await.unwrap().unwrap();

        // The next morning, a last poll just before the report is due.
        let due = at("2026-12-06T00:00:00Z");
        step(&mut runner, due - Duration::from_secs(10), [true; 3], Some(1));
        clock.set(due);
        let mut done = runner.daily.take_done().unwrap();
        let made = runner.run_due_reports(due);
        let recorded = |runner: &Runner| runner.durable.as_ref().unwrap().db.report_due("prod").unwrap();
        assert_eq!(recorded(&runner), None, "not done until written (and mailed)");
        // A reload meanwhile does not make it again.
        runner.set_daily(DailyPlan::from_config(&config).unwrap(), due + Duration::from_secs(1));
        assert_eq!(runner.daily.next_due(), Some(at("2026-12-07T00:00:00Z")));
        assert_eq!(made.len(), 1);
        assert_eq!(runner.daily.next_due(), Some(at("2026-12-07T00:00:00Z")));
        let report = runner.report("prod", Duration::from_secs(24 * 3600), chrono_tz::Asia::Shanghai, due).unwrap();
        assert_eq!(report, made[0], "the scheduled report is the one gathered now");

        assert_eq!(
            (report.from.as_str(), report.until.as_str()),
            ("2026-12-05 08:00:00 CST", "2026-12-06 08:00:00 CST")
        );
        let roles: Vec<(&str, &str, bool)> =
            report.nodes.iter().map(|n| (n.instance.as_str(), n.role.as_str(), n.up)).collect();
        assert_eq!(
            roles,
            [("zk1:2181", "follower", true), ("zk2:2181", "leader", true), ("zk3:2181", "follower", true)]
        );
        assert_eq!(report.nodes[0].version.as_deref(), Some("3.8.0"));
        assert_eq!(report.nodes[0].znodes, Some(1_234.0));
        assert_eq!(report.nodes[1].connections, Some(13.0));
        assert_eq!(report.nodes[2].over, ["latency_avg_ms"].into(), "150 ms average is over 100 ms");
        assert_eq!(report.disks.len(), 1);
        assert!(report.disks[0].over, "82 % is over the daily checklist's 70 %");

        assert_eq!(report.elections.len(), 1, "{:?}", report.elections);
        let e = &report.elections[0];
        assert_eq!((e.from.as_deref(), e.to.as_deref()), (Some("zk1:2181"), Some("zk2:2181")));
        assert_eq!((e.at.as_str(), e.leaderless_for.as_deref()), ("2026-12-05 09:00:00", Some("5s")));

        assert_eq!(report.alerts.len(), 1, "{:?}", report.alerts);
        let a = &report.alerts[0];
        assert_eq!(
            (a.alertname.as_str(), a.tier.as_str(), a.instance.as_deref()),
            ("ZkNodeDown", "P1", Some("zk1:2181"))
        );
        assert_eq!(a.summary.as_deref(), Some("zk1:2181 is down"));
        assert_eq!(a.acked_by.as_deref(), Some("alice"));
        assert!(!a.firing && a.resolved_at.is_some(), "{a:?}");
        assert!(a.duration.starts_with("30m"), "fired 10 s after the death, resolved 30 min later: {}", a.duration);

        assert_eq!(report.silences.len(), 1);
        assert_eq!(report.silences[0].created_by, "bob");
        assert_eq!(report.summary.status, "warning", "{:?}", report.summary.findings);
        assert_eq!(report.summary.leader.as_deref(), Some("zk2:2181"));
        assert_eq!(report.summary.alerts_by_tier, [0, 1, 0, 0]);

        // The task renders and writes the file.
        let file = dir.path().join("reports/prod-2026-12-06-0800.html");
        for _ in 0..100 {
            if file.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let html = std::fs::read_to_string(&file).unwrap();
        let (cluster, when) = tokio::time::timeout(Duration::from_secs(5), done.recv()).await.unwrap().unwrap();
        runner.report_done(&cluster, when);
        assert_eq!(recorded(&runner), Some(due), "done: a restart does not make it again");
        assert_eq!(html.trim_end(), config.reports[0].templates.render(&made[0]).unwrap().html.trim_end());
        for needle in ["ZkNodeDown", "alice", "zk2:2181", "disk swap", "CST"] {
            assert!(html.contains(needle), "{needle} not in the HTML");
        }
    }
}

#[cfg(test)]
mod schedule_tests {
    use super::*;
    use crate::pipeline::PipelineConfig;
    use crate::state::StateDb;

    use crate::pipeline::schedule::tests::at;

    /// A runner with a state file and the daily report of `prod` at 08:00 Shanghai (00:00 UTC).
    fn runner(dir: &Path, last_due: Option<&str>, now: Timestamp) -> Runner {
        let yaml = "sources: [{type: zookeeper, cluster: prod, nodes: ['a:2181']}]\nreports:\n  - {cluster: prod, time_zone: Asia/Shanghai}\n";
        let config = Config::parse(yaml, &dir.join("zkalert.yaml")).unwrap();
        let rules = Arc::new(crate::test_support::rules_from_yaml("groups: []\n").unwrap());
        let mut runner = Runner::new(rules, Duration::from_secs(5), PipelineConfig::defaults_to(&[]), Vec::new());
        let mut db = StateDb::open(&dir.join("state.db")).unwrap();
        if let Some(due) = last_due {
            db.set_report_due("prod", at(due)).unwrap();
        }
        runner.restore_from(db, now, Duration::from_secs(10)).unwrap();
        runner.set_daily(DailyPlan::from_config(&config).unwrap(), now);
        runner
    }

    #[test]
    fn a_report_due_while_zkalert_was_down_is_made_at_start_up_and_one_made_is_not_made_again() {
        let now = at("2026-12-06T03:00:00Z");
        let today = at("2026-12-06T00:00:00Z");
        let tomorrow = Some(at("2026-12-07T00:00:00Z"));
        let dir = tempfile::tempdir().unwrap();
        // Yesterday's was the last made: today's was missed, and is made now.
        assert_eq!(runner(&dir.path().join("a"), Some("2026-12-05T00:00:00Z"), now).daily.next_due(), Some(today));
        // Today's was made (or begun) before the restart.
        assert_eq!(runner(&dir.path().join("b"), Some("2026-12-06T00:00:00Z"), now).daily.next_due(), tomorrow);
        // A new install has no report owed.
        assert_eq!(runner(&dir.path().join("c"), None, now).daily.next_due(), tomorrow);
        // Down for two days: the latest one missed is made, not each.
        let late = at("2026-12-07T01:00:00Z");
        assert_eq!(
            runner(&dir.path().join("d"), Some("2026-12-05T00:00:00Z"), late).daily.next_due(),
            Some(at("2026-12-07T00:00:00Z"))
        );
    }

    #[test]
    fn a_watched_cluster_is_reported_before_its_first_poll_and_an_unknown_one_is_named_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let now = at("2026-12-06T03:00:00Z");
        let runner = runner(dir.path(), None, now);
        let (report, _) = runner.report_now("prod", Duration::from_secs(3600), None, now).unwrap();
        assert_eq!((report.time_zone.as_str(), report.summary.status), ("Asia/Shanghai", "warning"));
        assert_eq!(report.summary.findings, ["no node of this cluster has reported (yet)"]);
        let Err(crate::api::CommandError::NotFound(e)) =
            runner.report_now("staging", Duration::from_secs(60), None, now)
        else {
            panic!("a cluster nobody watches")
        };
        assert_eq!(e, "no cluster named \"staging\" (known: prod)");
    }

    #[test]
    fn a_clusters_files_beyond_keep_are_removed_oldest_first_and_others_left() {
        let dir = tempfile::tempdir().unwrap();
        for name in
            ["prod-2026-12-01-0800.html", "prod-2026-12-02-0800.html", "prod-eu-2026-12-01-0800.html", "notes.txt"]
        {
            std::fs::write(dir.path().join(name), "old").unwrap();
        }
        write_file(&dir.path().join("prod-2026-12-03-0800.html"), "<html>", 2).unwrap();
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            ["notes.txt", "prod-2026-12-02-0800.html", "prod-2026-12-03-0800.html", "prod-eu-2026-12-01-0800.html"]
        );
        assert_eq!(std::fs::read_to_string(dir.path().join("prod-2026-12-03-0800.html")).unwrap(), "<html>");
    }

    #[tokio::test(start_paused = true)]
    async fn a_file_that_cannot_be_written_is_retried_with_backoff_until_the_next_report_then_given_up() {
        let dir = tempfile::tempdir().unwrap();
        // A directory that cannot be made: its parent is a file.
        std::fs::write(dir.path().join("blocked"), "").unwrap();
        let metrics = Arc::new(Metrics::new());
        let start = Timestamp::from_millis(1_000_000);
        let job = Job {
            id: "report-prod-1".into(),
            cluster: "prod".into(),
            file: dir.path().join("blocked/reports/prod-2026-12-06-0800.html"),
            keep: 3,
            mailers: Vec::new(),
            report: crate::report::render::samples().remove(0),
            templates: ReportTemplates::shared_builtin(),
            retry_until: start + Duration::from_secs(300),
            started: start,
            metrics: metrics.clone(),
            due: start,
            done: tokio::sync::mpsc::unbounded_channel().0,
        };
        let began = tokio::time::Instant::now();
        job.deliver().await;
        // Tried at 0, 10, 30, 70 and 150 s; the next (310 s) would be past the next report.
        assert_eq!(began.elapsed(), Duration::from_secs(150));
        let text = metrics.render(&crate::api::Snapshot::default(), None, start);
        assert!(text.contains("zkalert_reports_total{cluster=\"prod\",outcome=\"made\"} 1"), "{text}");
        assert!(text.contains("zkalert_reports_total{cluster=\"prod\",outcome=\"failed\"} 5"), "{text}");
        assert!(text.contains("zkalert_reports_total{cluster=\"prod\",outcome=\"gave_up\"} 1"), "{text}");
        assert!(!text.contains("zkalert_report_last_success_timestamp_seconds{"), "never succeeded");
    }
}
