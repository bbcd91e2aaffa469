//! Rule unit tests (`zkalert test`): promtool's `test rules` format, run on
//! virtual time through the same store, evaluator and tracker as `run`.

pub mod junit;
pub mod notation;
pub mod notification;

use crate::diag::{Diagnostics, Pos};
use crate::model::{ALERTNAME, Labels, Timestamp};
use crate::rule::{Evaluator, LoadOptions, RuleSet, load_rules};
use crate::store::SeriesStore;
use crate::yaml::{self, Node, Reader};
use notation::{Step, parse_series, parse_values};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A parsed test file.
#[derive(Debug, Clone)]
pub struct TestFile {
    pub path: PathBuf,
    pub rule_files: Vec<PathBuf>,
    pub evaluation_interval: Duration,
    pub groups: Vec<TestGroup>,
}

#[derive(Debug, Clone)]
pub struct TestGroup {
    pub name: String,
    pub pos: Pos,
    pub interval: Duration,
    pub input_series: Vec<InputSeries>,
    pub alert_tests: Vec<AlertTest>,
    pub notification_test: Option<notification::NotificationTest>,
}

#[derive(Debug, Clone)]
pub struct InputSeries {
    pub name: String,
    pub labels: Labels,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone)]
pub struct AlertTest {
    pub pos: Pos,
    pub eval_time: Duration,
    pub alertname: String,
    pub expected: Vec<ExpectedAlert>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ExpectedAlert {
    /// Includes `alertname`, added from the test.
    pub labels: Labels,
    pub annotations: Vec<(String, String)>,
    pub runbook: Option<String>,
}

const FILE_FIELDS: &[&str] = &["rule_files", "evaluation_interval", "group_eval_order", "tests", "fuzzy_compare"];
const GROUP_FIELDS: &[&str] = &[
    "name",
    "interval",
    "input_series",
    "alert_rule_test",
    "notification_test",
    "promql_expr_test",
    "external_labels",
    "external_url",
];

/// Most evaluations one test may ask for (its last `eval_time` or `until`
/// over `evaluation_interval`): a few seconds of work, where `eval_time:
/// 1000y` ran for minutes.
pub const MAX_EVAL_STEPS: u64 = 100_000;

/// Most input values one test group may give, all series together.
pub const MAX_INPUT_VALUES: usize = notation::MAX_VALUES;

/// Longest duration a test file may give (virtual time stays far from the
/// edge of `Timestamp`).
pub const MAX_TEST_DURATION: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// A duration of a test file, at most [`MAX_TEST_DURATION`].
pub(crate) fn test_duration(r: &mut Reader, node: &Node, what: &str) -> Option<Duration> {
    let d = r.duration(node, what)?;
    if d > MAX_TEST_DURATION {
        r.error(
            node.pos,
            format!(
                "{what}: {} is longer than the limit of {}",
                crate::duration::format_duration(d),
                crate::duration::format_duration(MAX_TEST_DURATION)
            ),
        );
        return None;
    }
    Some(d)
}

/// Checks that running a test until `until` takes at most
/// [`MAX_EVAL_STEPS`] evaluations.
fn check_eval_steps(r: &mut Reader, pos: Pos, what: &str, until: Duration, evaluation_interval: Duration) {
    if evaluation_interval.is_zero() {
        return; // reported on its own
    }
    let steps = (until.as_millis() / evaluation_interval.as_millis()) as u64 + 1;
    if steps > MAX_EVAL_STEPS {
        let fmt = crate::duration::format_duration;
        r.error(
            pos,
            format!(
                "{what}: {} is {steps} evaluations at evaluation_interval {}; at most {MAX_EVAL_STEPS} ({})",
                fmt(until),
                fmt(evaluation_interval),
                fmt(evaluation_interval * (MAX_EVAL_STEPS - 1) as u32)
            ),
        );
    }
}

/// Reads a test file; every problem is reported with `path:line:col`.
pub fn parse_test_file(path: &Path) -> Result<TestFile, Diagnostics> {
    let mut diags = Diagnostics::default();
    let source = yaml::read_file(path).map_err(|e| {
        let mut d = Diagnostics::default();
        d.push(path, Pos::new(1, 1), format!("cannot read test file: {e}"));
        d
    })?;
    let root = yaml::parse(&source, path)?;
    let mut r = Reader::new(path, &mut diags);
    let base = path.parent().unwrap_or(Path::new("."));
    let mut file = TestFile {
        path: path.to_path_buf(),
        rule_files: Vec::new(),
        evaluation_interval: Duration::from_secs(60),
        groups: Vec::new(),
    };
    let mut tests_node = None;
    for (key, value) in r.map(&root, "test file", FILE_FIELDS) {
        match key {
            "rule_files" => {
                for f in r.seq(value, "rule_files") {
                    if let Some(s) = r.string(f, "rule file") {
                        let p = base.join(&s);
                        if !p.exists() {
                            r.error(f.pos, format!("rule file {} does not exist", p.display()));
                        }
                        file.rule_files.push(p);
                    }
                }
            }
            "evaluation_interval" => {
                if let Some(d) = test_duration(&mut r, value, "evaluation_interval") {
                    if d.is_zero() {
                        r.error(value.pos, "evaluation_interval must be greater than zero");
                    }
                    file.evaluation_interval = d;
                }
            }
            "tests" => tests_node = Some(value),
            _ => {}
        }
    }
    match tests_node {
        None => r.error(root.pos, "test file has no `tests`"),
        Some(node) => {
            for (i, g) in r.seq(node, "tests").iter().enumerate() {
                if let Some(group) = parse_group(&mut r, g, i, file.evaluation_interval, base) {
                    file.groups.push(group);
                }
            }
        }
    }
    if diags.is_empty() { Ok(file) } else { Err(diags.sorted()) }
}

fn parse_group(
    r: &mut Reader,
    node: &Node,
    index: usize,
    default_interval: Duration,
    base: &Path,
) -> Option<TestGroup> {
    let mut group = TestGroup {
        name: format!("test #{}", index + 1),
        pos: node.pos,
        interval: default_interval,
        input_series: Vec::new(),
        alert_tests: Vec::new(),
        notification_test: None,
    };
    for (key, value) in r.map(node, "test", GROUP_FIELDS) {
        match key {
            "name" => {
                if let Some(s) = r.string(value, "name") {
                    group.name = s;
                }
            }
            "interval" => {
                if let Some(d) = test_duration(r, value, "interval") {
                    if d.is_zero() {
                        r.error(value.pos, "interval must be greater than zero");
                    } else {
                        group.interval = d;
                    }
                }
            }
            "input_series" => {
                let mut values_left = MAX_INPUT_VALUES;
                for s in r.seq(value, "input_series") {
                    let mut series = None;
                    let mut values = None;
                    for (k, v) in r.map(s, "input series", &["series", "values"]) {
                        match k {
                            "series" => series = r.string(v, "series").map(|t| (t, v.pos)),
                            _ => values = r.string(v, "values").map(|t| (t, v.pos)),
                        }
                    }
                    let (Some((series, spos)), Some((values, vpos))) = (series, values) else {
                        r.error(s.pos, "input series needs `series` and `values`");
                        continue;
                    };
                    let parsed = parse_series(&series).map_err(|e| r.error(spos, e)).ok();
                    let steps = parse_values(&values, values_left)
                        .map_err(|e| match values_left < MAX_INPUT_VALUES {
                            true => r.error(vpos, format!("{e} (a test's series hold {MAX_INPUT_VALUES} in all)")),
                            false => r.error(vpos, e),
                        })
                        .ok();
                    values_left -= steps.as_ref().map_or(0, Vec::len);
                    if let (Some((name, labels)), Some(steps)) = (parsed, steps) {
                        group.input_series.push(InputSeries { name, labels, steps });
                    }
                }
            }
            "alert_rule_test" => {
                for t in r.seq(value, "alert_rule_test") {
                    if let Some(test) = parse_alert_test(r, t) {
                        if let Some((pos, _)) = t.get("eval_time").map(|v| (v.pos, ())) {
                            check_eval_steps(r, pos, "eval_time", test.eval_time, default_interval);
                        }
                        group.alert_tests.push(test);
                    }
                }
            }
            "notification_test" => {
                group.notification_test = notification::parse(r, value, base);
                if let (Some(t), Some(until)) = (&group.notification_test, value.get("until")) {
                    check_eval_steps(r, until.pos, "until", t.until, default_interval);
                }
            }
            "promql_expr_test" => r.error(
                value.pos,
                "promql_expr_test is not supported: zkalert rules are not PromQL; use alert_rule_test",
            ),
            _ => {} // external_labels, external_url: no effect on alert rules here
        }
    }
    Some(group)
}

fn parse_alert_test(r: &mut Reader, node: &Node) -> Option<AlertTest> {
    let mut eval_time = None;
    let mut alertname = None;
    let mut expected = Vec::new();
    let fields = r.map(node, "alert_rule_test", &["eval_time", "alertname", "exp_alerts"]);
    for (key, value) in &fields {
        match *key {
            "eval_time" => eval_time = test_duration(r, value, "eval_time"),
            "alertname" => alertname = r.string(value, "alertname"),
            _ => {}
        }
    }
    let alertname = alertname.or_else(|| {
        r.error(node.pos, "alert_rule_test needs `alertname`");
        None
    })?;
    for (key, value) in &fields {
        if *key != "exp_alerts" {
            continue;
        }
        for e in r.seq(value, "exp_alerts") {
            let mut labels = Labels::new();
            let mut annotations = Vec::new();
            let mut runbook = None;
            for (k, v) in r.map(e, "expected alert", &["exp_labels", "exp_annotations", "exp_runbook"]) {
                match k {
                    "exp_labels" => {
                        let given = r.string_map(v, "exp_labels");
                        if let Some((_, _, pos)) = given.iter().find(|(k, _, _)| k == ALERTNAME) {
                            r.error(*pos, "exp_labels must not include alertname (it comes from the test's alertname)");
                        }
                        labels = given.into_iter().map(|(k, v, _)| (k, v)).collect();
                    }
                    "exp_annotations" => {
                        annotations = r.string_map(v, "exp_annotations").into_iter().map(|(k, v, _)| (k, v)).collect()
                    }
                    _ => runbook = r.string(v, "exp_runbook"),
                }
            }
            labels.insert(ALERTNAME, alertname.clone());
            annotations.sort();
            expected.push(ExpectedAlert { labels, annotations, runbook });
        }
    }
    Some(AlertTest { pos: node.pos, eval_time: eval_time.unwrap_or_default(), alertname, expected })
}

/// The result of one test group.
#[derive(Debug, Clone)]
pub struct GroupResult {
    pub name: String,
    pub failures: Vec<String>,
    pub duration: Duration,
}

/// The result of one test file.
#[derive(Debug, Clone)]
pub struct FileResult {
    pub path: PathBuf,
    /// Problems loading the file or its rules: every group fails.
    pub load_error: Option<String>,
    pub groups: Vec<GroupResult>,
    pub duration: Duration,
}

impl FileResult {
    pub fn passed(&self) -> bool {
        self.load_error.is_none() && self.groups.iter().all(|g| g.failures.is_empty())
    }
}

/// Parses and runs one test file.
pub fn run_test_file(path: &Path) -> FileResult {
    let started = Instant::now();
    let loaded = parse_test_file(path)
        .and_then(|file| load_rules(&file.rule_files, LoadOptions::default()).map(|rules| (file, Arc::new(rules))));
    let (load_error, groups) = match loaded {
        Ok((file, rules)) => {
            (None, file.groups.iter().map(|g| run_group(&rules, g, file.evaluation_interval)).collect())
        }
        Err(d) => (Some(d.to_string()), Vec::new()),
    };
    FileResult { path: path.to_path_buf(), load_error, groups, duration: started.elapsed() }
}

/// Runs one test group: feeds the input series step by step and evaluates
/// at every evaluation interval up to the last `eval_time`.
pub fn run_group(rules: &Arc<RuleSet>, group: &TestGroup, evaluation_interval: Duration) -> GroupResult {
    let started = Instant::now();
    let mut store = SeriesStore::for_rules(&rules.retention);
    // (time, group, metric, value) for every sample, in time order.
    let mut samples = Vec::new();
    for s in &group.input_series {
        let gid = store.group_id(&s.labels);
        let mid = store.metric_id(&s.name);
        for (i, step) in s.steps.iter().enumerate() {
            if let Step::Value(v) = step {
                let ts = Timestamp::from_millis(0) + group.interval * i as u32;
                samples.push((ts, gid, mid, *v));
            }
        }
    }
    samples.sort_by_key(|s| s.0);
    let mut store = Arc::new(store);
    let mut evaluator = Evaluator::new(rules.clone(), evaluation_interval);
    let mut tests: Vec<&AlertTest> = group.alert_tests.iter().collect();
    tests.sort_by_key(|t| t.eval_time);
    let mut failures = Vec::new();
    let notification_config = match &group.notification_test {
        None => None,
        Some(t) => {
            // Without `config`: the built-in one (`zkalert run` without -c).
            let config = match &t.config_path {
                Some(path) => crate::config::Config::load(path)
                    .map_err(|d| format!("notification_test (line {}): invalid config:\n{d}", t.pos.line)),
                None => Ok(crate::config::Config::builtin()),
            };
            match config.and_then(|c| {
                c.pipeline
                    .with_rule_file_inhibitions(&rules.inhibit_rules)
                    .map_err(|e| format!("notification_test (line {}): {e}", t.pos.line))
            }) {
                Ok(p) => Some(p),
                Err(e) => {
                    failures.push(e);
                    None
                }
            }
        }
    };
    let mut notifications =
        group.notification_test.as_ref().zip(notification_config).map(|(t, c)| notification::Run::new(t, c));
    let end = tests
        .last()
        .map(|t| t.eval_time)
        .unwrap_or_default()
        .max(group.notification_test.as_ref().map(|t| t.until).unwrap_or_default());
    let mut failed_rules: Vec<String> = Vec::new();
    let mut next_sample = 0;
    let mut next_test = 0;
    let mut ts = Duration::ZERO;
    while ts <= end {
        let now = Timestamp::from_millis(ts.as_millis() as i64);
        {
            let st = Arc::make_mut(&mut store);
            while next_sample < samples.len() && samples[next_sample].0 <= now {
                let (t, g, m, v) = samples[next_sample];
                st.append(g, m, t, v);
                next_sample += 1;
            }
            st.compact(now);
        }
        evaluator.evaluate_due(&store, now);
        if let Some(n) = &mut notifications {
            let alerts: Vec<&crate::model::Alert> = evaluator.tracker.alerts().collect();
            n.step(&alerts, ts);
        }
        // A rule that fails to evaluate fails the test: otherwise a broken
        // rule passes every "no alert expected" case.
        for state in &evaluator.tracker.rules {
            if let crate::rule::RuleHealth::Err(e) = &state.health
                && !failed_rules.contains(&state.name)
            {
                failures.push(format!(
                    "rule {} failed to evaluate at {}: {e}",
                    state.name,
                    crate::duration::format_duration(ts)
                ));
                failed_rules.push(state.name.clone());
            }
        }
        let next_ts = ts + evaluation_interval;
        while next_test < tests.len() && tests[next_test].eval_time < next_ts {
            if let Some(f) = check_alerts(&evaluator, tests[next_test]) {
                failures.push(f);
            }
            next_test += 1;
        }
        ts = next_ts;
    }
    if let Some(f) = notifications.and_then(notification::Run::check) {
        failures.push(f);
    }
    GroupResult { name: group.name.clone(), failures, duration: started.elapsed() }
}

/// Compares firing alerts with the expectation; `Some(report)` on mismatch.
fn check_alerts(evaluator: &Evaluator, test: &AlertTest) -> Option<String> {
    let mut got: Vec<ExpectedAlert> = evaluator
        .tracker
        .firing()
        .filter(|a| a.name() == test.alertname)
        .map(|a| {
            let mut annotations: Vec<(String, String)> =
                a.annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            annotations.sort();
            ExpectedAlert { labels: a.labels.clone(), annotations, runbook: a.runbook.as_deref().map(str::to_string) }
        })
        .collect();
    got.sort_by(|a, b| a.labels.cmp(&b.labels));
    let mut expected = test.expected.clone();
    expected.sort_by(|a, b| a.labels.cmp(&b.labels));

    let mut lines = Vec::new();
    let mut unmatched_got: Vec<&ExpectedAlert> = got.iter().collect();
    for exp in &expected {
        match unmatched_got.iter().position(|g| g.labels == exp.labels) {
            Some(i) => {
                let g = unmatched_got.remove(i);
                if g.annotations != exp.annotations {
                    lines.push(format!("  ~ {} annotations differ:", exp.labels));
                    lines.extend(annotation_diff(&exp.annotations, &g.annotations));
                }
                if let Some(rb) = &exp.runbook
                    && g.runbook.as_deref() != Some(rb.as_str())
                {
                    lines.push(format!(
                        "  ~ {} runbook: expected {rb:?}, got {:?}",
                        exp.labels,
                        g.runbook.as_deref().unwrap_or("(none)")
                    ));
                }
            }
            None => lines.push(format!("  - missing:    {}{}", exp.labels, fmt_annotations(&exp.annotations))),
        }
    }
    for g in unmatched_got {
        lines.push(format!("  + unexpected: {}{}", g.labels, fmt_annotations(&g.annotations)));
    }
    if lines.is_empty() {
        return None;
    }
    let mut out = format!(
        "alertname {} at {} (line {}): expected {} firing, got {}\n",
        test.alertname,
        crate::duration::format_duration(test.eval_time),
        test.pos.line,
        expected.len(),
        got.len()
    );
    out.push_str(&lines.join("\n"));
    Some(out)
}

fn fmt_annotations(a: &[(String, String)]) -> String {
    if a.is_empty() {
        return String::new();
    }
    let mut s = String::from(" annotations {");
    for (i, (k, v)) in a.iter().enumerate() {
        let _ = write!(s, "{}{k}={v:?}", if i > 0 { ", " } else { "" });
    }
    s.push('}');
    s
}

fn annotation_diff(exp: &[(String, String)], got: &[(String, String)]) -> Vec<String> {
    let mut keys: Vec<&str> = exp.iter().chain(got).map(|(k, _)| k.as_str()).collect();
    keys.sort();
    keys.dedup();
    let find = |set: &[(String, String)], k: &str| set.iter().find(|(kk, _)| kk == k).map(|(_, v)| v.clone());
    keys.into_iter()
        .filter_map(|k| {
            let (e, g) = (find(exp, k), find(got, k));
            (e != g).then(|| {
                format!(
                    "      {k}: expected {}, got {}",
                    e.map_or("(absent)".into(), |v| format!("{v:?}")),
                    g.map_or("(absent)".into(), |v| format!("{v:?}"))
                )
            })
        })
        .collect()
}
