//! The binary as CI runs it: `check`, `test` (with JUnit), `replay`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn zkalert(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_zkalert"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run zkalert")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn check_shipped_rules_passes() {
    let o = zkalert(&["check", "rules/"]);
    assert!(o.status.success(), "{}{}", stdout(&o), String::from_utf8_lossy(&o.stderr));
    assert!(stdout(&o).starts_with("OK:"), "{}", stdout(&o));
}

#[test]
fn check_validates_config_files() {
    let o = zkalert(&["check", "examples/zkalert.yaml"]);
    assert!(o.status.success(), "{}", stdout(&o));
    assert!(stdout(&o).contains("1 config file(s)"), "{}", stdout(&o));
    // The summary counts the rule files the config names (the shipped pack).
    let pack = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/zookeeper");
    let files = std::fs::read_dir(pack)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".yaml") && !n.ends_with(".test.yaml"))
        .count();
    assert!(files > 5);
    assert!(stdout(&o).starts_with(&format!("OK: {files} rule file(s), ")), "{}", stdout(&o));
    assert!(!stdout(&o).contains(" 0 rule(s)"), "{}", stdout(&o));
    let dir = tempfile::tempdir().unwrap();
    let bad = write(
        dir.path(),
        "z.yaml",
        "sources:\n  - type: zookeeper\n    cluster: c\n    nodes: [nohost]\n    timeout: 5x\n",
    );
    let o = zkalert(&["check", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(out.contains(":4:13: node \"nohost\" must be host:port"), "{out}");
    assert!(out.contains(":5:14: timeout: invalid duration"), "{out}");
}

/// Each notifier type takes its own fields: `to:` on a webhook was
/// silently ignored; now `check` fails at the field, naming the fields a
/// webhook takes.
#[test]
fn check_refuses_a_field_of_another_notifier_type_at_its_position() {
    let (file, o) = check_config(
        "sources:\n  - {type: zookeeper, cluster: c, nodes: ['a:2181']}\nnotifiers:\n  - name: hook\n    type: webhook\n    url: 'http://127.0.0.1:9/x'\n    to: [oncall@example.com]\n",
    );
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let out = stdout(&o);
    let want = format!(
        "{file}:7:5: unknown field \"to\" in webhook notifier (email, sms and voice notifiers take it); expected one of: name, type, timeout, rate_limit, flavor, url, url_env, url_file, headers, proxy_url"
    );
    assert!(out.contains(&want), "missing {want:?} in:\n{out}");
    assert!(out.contains("FAILED: 1 problem(s)"), "{out}");
}

/// `zkalert check` on a config file holding `text`: the file's path, and the run.
fn check_config(text: &str) -> (String, Output) {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "z.yaml", text);
    let o = zkalert(&["check", file.to_str().unwrap()]);
    (file.display().to_string(), o)
}

#[test]
fn check_reports_every_problem_with_positions() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("runbooks")).unwrap();
    std::fs::write(dir.path().join("runbooks/x.md"), "# x\n").unwrap();
    let file = write(
        dir.path(),
        "bad.yaml",
        r#"groups:
  - name: g
    rules:
      - alert: A
        expr: up == 0
        for: 5 minutes
        runbook: x
      - alert: B
        expr: zk_avg_latency > 100 )
        runbook: x
      - alert: C
        expr: up == 0
        severty: P1
        runbook: x
"#,
    );
    let o = zkalert(&["check", file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    let f = file.display();
    assert!(out.contains(&format!("{f}:6:14: for: invalid duration")), "{out}");
    assert!(out.contains(&format!("{f}:9:36: expression: Unexpected ')'")), "{out}");
    assert!(
        out.contains(&format!("{f}:13:9: unknown field \"severty\" in rule (did you mean \"severity\"?)")),
        "{out}"
    );
    assert!(out.contains("FAILED: 3 problem(s)"), "{out}");
}

#[test]
fn check_requires_runbooks_and_known_tiers() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "r.yaml",
        "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: x\n        tiers: { P5: \"> 1\" }\n      - alert: B\n        expr: up == 0\n        runbook: nowhere/missing\n",
    );
    let out = stdout(&zkalert(&["check", file.to_str().unwrap()]));
    assert!(out.contains(":4:9: rule A has no `runbook`"), "{out}");
    assert!(out.contains(":6:18: unknown tier \"P5\""), "{out}");
    assert!(out.contains(":9:18: runbook \"nowhere/missing\" not found"), "{out}");
}

#[test]
fn test_command_passes_the_latency_example() {
    let o = zkalert(&["test", "rules/examples/latency.test.yaml"]);
    assert!(o.status.success(), "{}", stdout(&o));
    assert!(stdout(&o).contains("zkalert test: 1 passed, 0 failed"), "{}", stdout(&o));
}

/// A copy of the latency example with one expectation broken.
fn broken_latency_test(dir: &Path) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/examples");
    std::fs::copy(root.join("latency.yaml"), dir.join("latency.yaml")).unwrap();
    std::fs::create_dir_all(dir.join("runbooks/examples")).unwrap();
    std::fs::copy(root.join("../runbooks/examples/high-latency.md"), dir.join("runbooks/examples/high-latency.md"))
        .unwrap();
    let text = std::fs::read_to_string(root.join("latency.test.yaml")).unwrap();
    let broken = text.replacen("- eval_time: 15m", "- eval_time: 14m", 1);
    assert_ne!(text, broken);
    write(dir, "latency.test.yaml", &broken)
}

#[test]
fn failing_expectation_prints_a_diff_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let test = broken_latency_test(dir.path());
    let o = zkalert(&["test", test.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(out.contains("alertname HighRequestLatency at 14m"), "{out}");
    assert!(out.contains("expected 0 firing, got 1"), "{out}");
    assert!(out.contains(r#"+ unexpected: {alertname="HighRequestLatency", instance="api-1", job="myjob", severity="P2", team="myteam"}"#), "{out}");
    assert!(out.contains("zkalert test: 0 passed, 1 failed"), "{out}");
}

#[test]
fn junit_output_is_valid_xml() {
    let dir = tempfile::tempdir().unwrap();
    let broken = broken_latency_test(dir.path());
    let junit = dir.path().join("out.xml");
    let o = zkalert(&[
        "test",
        "rules/examples/zookeeper-basics.test.yaml",
        broken.to_str().unwrap(),
        "--junit",
        junit.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let xml = std::fs::read_to_string(&junit).unwrap();
    // Well-formed: every element closes, names are escaped.
    let mut reader = quick_xml::Reader::from_str(&xml);
    let (mut suites, mut cases, mut failures, mut depth) = (0, 0, 0, 0i32);
    let mut count = |name: &[u8]| match name {
        b"testsuite" => suites += 1,
        b"testcase" => cases += 1,
        b"failure" => failures += 1,
        _ => {}
    };
    loop {
        match reader.read_event().expect("well-formed XML") {
            quick_xml::events::Event::Start(e) => {
                depth += 1;
                count(e.name().as_ref().as_bytes());
            }
            quick_xml::events::Event::Empty(e) => count(e.name().as_ref().as_bytes()),
            quick_xml::events::Event::End(_) => depth -= 1,
            quick_xml::events::Event::Eof => break,
            _ => {}
        }
    }
    assert_eq!(depth, 0);
    assert_eq!(suites, 2, "{xml}");
    assert!(cases >= 3, "{xml}");
    assert_eq!(failures, 1, "{xml}");
    assert!(xml.contains(r#"<testsuites name="zkalert" tests="5" failures="1""#), "{xml}");
}

#[test]
fn unparsable_test_file_reports_position() {
    let dir = tempfile::tempdir().unwrap();
    let t = write(
        dir.path(),
        "t.test.yaml",
        "rule_files: []\ntests:\n  - interval: 1m\n    input_series:\n      - series: 'up{a=\"b\"}'\n        valuez: '1 2'\n",
    );
    let o = zkalert(&["test", t.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(out.contains(&format!("{}:6:9: unknown field \"valuez\"", t.display())), "{out}");
}

#[test]
fn replay_prints_the_firing_timeline() {
    let dir = tempfile::tempdir().unwrap();
    let mut lines = String::new();
    for minute in 0..10 {
        let v = if (3..7).contains(&minute) { 0 } else { 1 };
        lines.push_str(&format!(
            "{{\"ts\": {}, \"name\": \"up\", \"labels\": {{\"cluster\": \"prod\", \"instance\": \"zk1:2181\"}}, \"value\": {v}}}\n",
            1_767_225_600 + minute * 60
        ));
    }
    let input = write(dir.path(), "in.jsonl", &lines);
    let o =
        zkalert(&["replay", "--rules", "rules/examples", "--input", input.to_str().unwrap(), "--eval-interval", "1m"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = stdout(&o);
    // Down from 3m, `for: 30s` → firing at the 4m evaluation; up again at 7m.
    let node_down: Vec<&str> = out.lines().filter(|l| l.contains("ZkNodeDown")).collect();
    assert_eq!(
        node_down,
        [r#"2026-01-01T00:04:00Z → 2026-01-01T00:07:00Z  P1  ZkNodeDown {cluster="prod", instance="zk1:2181"}"#],
        "{out}"
    );
}

#[test]
fn a_closed_pipe_ends_output_quietly() {
    let bin = env!("CARGO_BIN_EXE_zkalert");
    let o = Command::new("sh")
        .arg("-c")
        .arg(format!("'{bin}' test rules/ | head -1"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 1);
}

/// `check --json`: one object with the counts, and every problem with its
/// position as fields (the shape is in README.md); the exit code is as
/// without `--json`.
#[test]
fn check_json_reports_diagnostics_as_fields() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "bad.yaml",
        "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up == 0\n        for: 5 minutes\n",
    );
    let o = zkalert(&["check", "--json", file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap_or_else(|e| panic!("{e}: {}", stdout(&o)));
    assert_eq!(v["ok"], false);
    assert_eq!(v["rule_files"], 1);
    let errors = v["errors"].as_array().unwrap();
    let for_error =
        errors.iter().find(|e| e["message"].as_str().unwrap().starts_with("for: invalid duration")).unwrap();
    assert_eq!(for_error["path"], file.to_str().unwrap());
    assert_eq!((for_error["line"].as_u64(), for_error["column"].as_u64()), (Some(6), Some(14)), "{v}");
    assert!(v["warnings"].is_array(), "{v}");

    let o = zkalert(&["check", "--json", "rules/"]);
    assert!(o.status.success(), "{}", stdout(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["ok"], true);
    assert!(v["rules"].as_u64().unwrap() > 10 && v["test_files"].as_u64().unwrap() > 5, "{v}");
    assert_eq!(v["errors"], serde_json::json!([]));
}

/// `test --json`: per file and group, what passed and each failure.
#[test]
fn test_json_reports_results_per_group() {
    let dir = tempfile::tempdir().unwrap();
    let broken = broken_latency_test(dir.path());
    let o = zkalert(&["test", "--json", "rules/examples/zookeeper-basics.test.yaml", broken.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap_or_else(|e| panic!("{e}: {}", stdout(&o)));
    assert_eq!(v["ok"], false);
    assert_eq!(v["failed"], 1, "{v}");
    assert!(v["passed"].as_u64().unwrap() >= 2, "{v}");
    let files = v["files"].as_array().unwrap();
    assert_eq!(files.len(), 2);
    let bad = files.iter().find(|f| f["path"] == broken.to_str().unwrap()).unwrap();
    assert_eq!(bad["load_error"], serde_json::Value::Null);
    let group = &bad["groups"][0];
    assert_eq!(group["ok"], false);
    let failure = group["failures"][0].as_str().unwrap();
    assert!(failure.contains("expected 0 firing, got 1"), "{v}");
    let good = files.iter().find(|f| f["path"] == "rules/examples/zookeeper-basics.test.yaml").unwrap();
    assert!(
        good["groups"].as_array().unwrap().iter().all(|g| g["ok"] == true && g["failures"] == serde_json::json!([]))
    );
}

/// A rule file (with a runbook beside it) in a fresh directory.
fn rule_dir(rules: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("runbooks")).unwrap();
    std::fs::write(dir.path().join("runbooks/x.md"), "# x\n").unwrap();
    let file = write(dir.path(), "r.yaml", rules);
    (dir, file)
}

/// `check` knows the metric names sources produce (docs/metrics.md): a
/// typo warns with "did you mean", at the name's position, and the exit
/// code stays 0. Names a `prometheus` source may produce are not judged
/// unless they look like ZooKeeper's or the host agent's (`zk_`, `host_`).
#[test]
fn check_warns_on_metric_names_no_source_produces() {
    let (dir, file) = rule_dir(
        "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: zk_outstanding_request > 10\n        runbook: x\n      - alert: B\n        expr: rate(\"zk_packets_recieved\", \"1m\") > 5 && my_app_up == 0\n        runbook: x\n      - alert: C\n        expr: zk_outstanding_requests > 10 && up == 0\n        runbook: x\n",
    );
    let o = zkalert(&["check", file.to_str().unwrap()]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "warnings do not fail: {out}");
    let f = file.display();
    assert!(
        out.contains(&format!(
            "{f}:5:15: no source produces metric \"zk_outstanding_request\" (docs/metrics.md); did you mean \"zk_outstanding_requests\"? (warning)"
        )),
        "{out}"
    );
    assert!(out.contains(&format!("{f}:8:21: no source produces metric \"zk_packets_recieved\"")), "{out}");
    assert!(out.contains("did you mean \"zk_packets_received\"?"), "{out}");
    // Without a config a prometheus source may produce my_app_up.
    assert!(!out.contains("my_app_up"), "{out}");
    assert_eq!(out.matches("(warning)").count(), 2, "{out}");

    // A config without a prometheus source: every name is judged.
    let config = write(
        dir.path(),
        "zkalert.yaml",
        "rules: [r.yaml]\nsources:\n  - {type: zookeeper, cluster: c, nodes: ['127.0.0.1:2181']}\n",
    );
    let out = stdout(&zkalert(&["check", config.to_str().unwrap()]));
    assert!(out.contains(&format!("{f}:8:56: no source produces metric \"my_app_up\"")), "{out}");
    assert!(out.contains("zk_outstanding_request\""), "{out}");
    // With one, names outside the catalogue's prefixes are the scrape's business.
    let config = write(
        dir.path(),
        "zkalert.yaml",
        "rules: [r.yaml]\nsources:\n  - {type: zookeeper, cluster: c, nodes: ['127.0.0.1:2181']}\n  - {type: prometheus, url: 'http://127.0.0.1:9100/metrics', cluster: c}\n",
    );
    let out = stdout(&zkalert(&["check", config.to_str().unwrap()]));
    assert!(!out.contains("my_app_up") && out.contains("zk_outstanding_request\""), "{out}");

    // The shipped pack reads only names the catalogue lists.
    let out = stdout(&zkalert(&["check", "rules/", "examples/zkalert.yaml"]));
    assert!(!out.contains("no source produces"), "{out}");
}

/// PromQL habits get a hint at how zkalert spells them.
#[test]
fn check_hints_at_promql_habits() {
    let (_dir, file) = rule_dir(
        "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: zk_packets_received[1m] > 10\n        runbook: x\n      - alert: B\n        expr: up == 0 and zk_serving == 0\n        runbook: x\n      - alert: C\n        expr: up == 0\n        annotations:\n          summary: 'down: {{ .Labels.instance }}'\n        runbook: x\n",
    );
    let o = zkalert(&["check", file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(
        out.contains("PromQL's range `zk_packets_received[1m]` is `rate(\"zk_packets_received\", \"1m\")`"),
        "{out}"
    );
    assert!(out.contains("`and`/`or`/`unless` are `&&`/`||`/`!`"), "{out}");
    assert!(out.contains("`{{ .Labels.instance }}` is `{{ labels.instance }}`"), "{out}");
}

/// Runs zkalert, killing it (and failing) if it takes longer than `limit`:
/// the inputs below once took minutes and gigabytes.
fn zkalert_within(args: &[&str], limit: std::time::Duration) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_zkalert"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run zkalert");
    let started = std::time::Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("zkalert {args:?} still running after {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

/// The classic "billion laughs" (342 bytes): 10^9 strings once expanded.
const ALIAS_BOMB: &str = include_str!("../fixtures/yaml/alias-bomb.yaml");

#[test]
fn an_alias_bomb_is_refused_at_its_alias_by_check_and_run() {
    let dir = tempfile::tempdir().unwrap();
    let bomb = write(dir.path(), "bomb.yaml", ALIAS_BOMB);
    let limit = std::time::Duration::from_secs(20);
    let want = "bomb.yaml:7:8: document too large with aliases expanded: more than 1000000 nodes";
    let o = zkalert_within(&["check", bomb.to_str().unwrap()], limit);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stdout(&o).contains(want), "{}", stdout(&o));
    let o = zkalert_within(&["run", "-c", bomb.to_str().unwrap()], limit);
    assert!(!o.status.success());
    let all = format!("{}{}", stdout(&o), String::from_utf8_lossy(&o.stderr));
    assert!(all.contains(want), "{all}");
}

#[test]
fn large_mappings_are_checked_in_seconds_or_refused_by_size() {
    // Duplicate keys and label sets were checked pairwise: 50,000 keys took
    // 15 s, 200,000 minutes. The largest mapping a file within the size
    // limit can hold is checked in well under the bound (a loaded debug
    // build); 200,000 keys are over the size limit.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("runbooks")).unwrap();
    std::fs::write(dir.path().join("runbooks/x.md"), "# x\n").unwrap();
    let mapping = |keys: usize| -> String {
        let labels: Vec<String> = (0..keys).rev().map(|i| format!("l{i}: v")).collect();
        format!(
            "groups:\n  - name: g\n    labels: {{{}}}\n    rules:\n      - alert: A\n        expr: up == 0\n        runbook: x\n",
            labels.join(", ")
        )
    };
    let text = mapping(48_000);
    assert!(text.len() < 512 << 10, "{} bytes", text.len());
    let rules = write(dir.path(), "wide.yaml", &text);
    let o = zkalert_within(&["check", rules.to_str().unwrap()], std::time::Duration::from_secs(10));
    assert!(o.status.success(), "{}", stdout(&o));
    assert!(stdout(&o).contains("1 rule(s)"), "{}", stdout(&o));
    let rules = write(dir.path(), "wider.yaml", &mapping(200_000));
    let o = zkalert_within(&["check", rules.to_str().unwrap()], std::time::Duration::from_secs(10));
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("is larger than the limit of 524288 bytes"), "{}", stdout(&o));
}

#[test]
fn files_over_the_size_limit_are_refused_with_their_name() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.yaml");
    std::fs::File::create(&big).unwrap().set_len(5 << 20).unwrap();
    let o = zkalert_within(&["check", big.to_str().unwrap()], std::time::Duration::from_secs(20));
    assert_eq!(o.status.code(), Some(1));
    let want =
        format!("{}:1:1: cannot read rule file: 5242880 bytes is larger than the limit of 524288 bytes", big.display());
    assert!(stdout(&o).contains(&want), "{}", stdout(&o));
}

#[test]
fn unbounded_test_times_are_refused_with_positions() {
    // `eval_time: 1000y` ran for minutes printing nothing; `interval: 0s`
    // was accepted.
    let dir = tempfile::tempdir().unwrap();
    let t = write(
        dir.path(),
        "t.test.yaml",
        "rule_files: []\nevaluation_interval: 1m\ntests:\n  - interval: 0s\n    input_series:\n      - series: 'up{a=\"b\"}'\n        values: '1 _x2000000'\n    alert_rule_test:\n      - eval_time: 1000y\n        alertname: A\n        exp_alerts: []\n    notification_test:\n      config: ../nowhere.yaml\n      until: 20y\n",
    );
    let o = zkalert_within(&["test", t.to_str().unwrap()], std::time::Duration::from_secs(20));
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    let at = |pos: &str| format!("{}:{pos}:", t.display());
    for want in [
        format!("{} interval must be greater than zero", at("4:15")),
        format!("{} values: \"_x2000000\": more than 1000000 values", at("7:17")),
        format!("{} eval_time: 1000y is longer than the limit of 10y", at("9:20")),
        format!("{} until: 20y is longer than the limit of 10y", at("14:14")),
    ] {
        assert!(out.contains(&want), "missing {want:?} in:\n{out}");
    }
    let steps = write(
        dir.path(),
        "s.test.yaml",
        "rule_files: []\nevaluation_interval: 1s\ntests:\n  - alert_rule_test:\n      - eval_time: 2d\n        alertname: A\n        exp_alerts: []\n",
    );
    let o = zkalert_within(&["test", steps.to_str().unwrap()], std::time::Duration::from_secs(20));
    assert_eq!(o.status.code(), Some(1));
    let want = format!(
        "{}:5:20: eval_time: 2d is 172801 evaluations at evaluation_interval 1s; at most 100000 (1d3h46m39s)",
        steps.display()
    );
    assert!(stdout(&o).contains(&want), "missing {want:?} in:\n{}", stdout(&o));
}

#[test]
fn version_names_the_commit_built_and_completions_and_the_man_page_come_from_the_same_command_line() {
    let o = zkalert(&["--version"]);
    let head =
        Command::new("git").args(["rev-parse", "--short=12", "HEAD"]).current_dir(env!("CARGO_MANIFEST_DIR")).output();
    let head = head.ok().filter(|h| h.status.success()).map(|h| String::from_utf8_lossy(&h.stdout).trim().to_string());
    let commit = head.unwrap_or_else(|| "unknown commit".into());
    assert_eq!(stdout(&o).trim(), format!("zkalert {} ({commit})", env!("CARGO_PKG_VERSION")));
    for (shell, marker) in
        [("bash", "complete -F _zkalert"), ("zsh", "#compdef zkalert"), ("fish", "complete -c zkalert")]
    {
        let o = zkalert(&["completions", shell]);
        assert!(o.status.success() && stdout(&o).contains(marker), "{shell}: {}", stdout(&o));
        // Every subcommand is completed.
        for sub in ["run", "check", "silence", "completions"] {
            assert!(stdout(&o).contains(sub), "{shell} completion lacks {sub}");
        }
    }
    let o = zkalert(&["man"]);
    let page = stdout(&o);
    assert!(o.status.success() && page.contains(".TH zkalert 1"), "{page}");
    assert!(page.contains("Rule\\-driven alerting") || page.contains("Rule-driven alerting"), "{page}");
    let o = zkalert(&["completions", "tcsh"]);
    assert!(!o.status.success(), "an unknown shell is refused");
}
