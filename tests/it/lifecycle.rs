//! Alert lifecycle on virtual time: every rule of Prometheus's state machine
//! plus what zkalert adds (tiers, hysteresis, scopes, scripts, limits).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use zkalert::model::{AlertState, Labels, Severity, Timestamp};
use zkalert::rule::{AlertEvent, Evaluator, LoadOptions, RuleHealth, RuleSet, load_rules};
use zkalert::store::SeriesStore;

/// A rule set loaded from YAML text (and optional scripts) in a temp dir.
fn rules(yaml: &str, scripts: &[(&str, &str)]) -> Arc<RuleSet> {
    let dir = tempfile::tempdir().unwrap();
    for (name, src) in scripts {
        std::fs::write(dir.path().join(name), src).unwrap();
    }
    let p: PathBuf = dir.path().join("rules.yaml");
    std::fs::write(&p, yaml).unwrap();
    let set = load_rules(&[p], LoadOptions::default()).unwrap_or_else(|d| panic!("{d}"));
    Arc::new(set)
}

/// Drives an evaluator on virtual time, one evaluation per call.
struct Harness {
    store: Arc<SeriesStore>,
    eval: Evaluator,
}

impl Harness {
    fn new(rules: Arc<RuleSet>) -> Self {
        let store = Arc::new(SeriesStore::for_rules(&rules.retention));
        Self { store, eval: Evaluator::new(rules, Duration::from_secs(60)) }
    }
    fn set(&mut self, secs: i64, name: &str, labels: &[(&str, &str)], value: f64) {
        let labels = Labels::from_pairs(labels.iter().copied());
        Arc::make_mut(&mut self.store).ingest(name, &labels, ts(secs), value);
    }
    fn eval(&mut self, secs: i64) -> Vec<AlertEvent> {
        self.eval.evaluate_due(&self.store, ts(secs))
    }
    fn firing(&self) -> Vec<(String, Severity, f64)> {
        let mut v: Vec<_> = self.eval.tracker.firing().map(|a| (a.labels.to_string(), a.severity, a.value)).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
    fn health(&self, rule: usize) -> &RuleHealth {
        &self.eval.tracker.rules[rule].health
    }
}

fn ts(secs: i64) -> Timestamp {
    Timestamp::from_millis(secs * 1000)
}

fn kinds(events: &[AlertEvent]) -> Vec<&'static str> {
    events.iter().map(AlertEvent::kind).collect()
}

const NODE_DOWN: &str = r#"
groups:
  - name: g
    rules:
      - alert: Down
        expr: up == 0
        for: 2m
        keep_firing_for: 0s
        severity: P1
"#;

#[test]
fn pending_then_firing_after_for() {
    let mut h = Harness::new(rules(NODE_DOWN, &[]));
    let l = [("instance", "a")];
    let mut step = |t, v| {
        h.set(t, "up", &l, v);
        kinds(&h.eval(t))
    };
    assert!(step(0, 1.0).is_empty());
    assert_eq!(step(60, 0.0), ["pending"]);
    assert!(step(120, 0.0).is_empty(), "1m < for: still pending");
    assert!(h.firing().is_empty());
    h.set(180, "up", &l, 0.0);
    assert_eq!(kinds(&h.eval(180)), ["firing"]);
    let alert = h.eval.tracker.firing().next().unwrap();
    assert_eq!(alert.active_at, ts(60));
    assert_eq!(alert.fired_at, Some(ts(180)));
}

#[test]
fn pending_alert_that_clears_is_dropped_unsent() {
    let mut h = Harness::new(rules(NODE_DOWN, &[]));
    let l = [("instance", "a")];
    h.set(0, "up", &l, 0.0);
    assert_eq!(kinds(&h.eval(0)), ["pending"]);
    h.set(60, "up", &l, 1.0);
    assert!(h.eval(60).is_empty(), "no resolved event for an alert that never fired");
    assert_eq!(h.eval.tracker.alerts().count(), 0);
}

#[test]
fn keep_firing_for_holds_then_resolves_once_with_last_value() {
    let yaml = r#"
groups:
  - name: g
    rules:
      - alert: High
        expr: load > 5
        keep_firing_for: 3m
"#;
    let mut h = Harness::new(rules(yaml, &[]));
    let l = [("instance", "a")];
    let mut step = |t, v| {
        h.set(t, "load", &l, v);
        kinds(&h.eval(t))
    };
    assert_eq!(step(0, 7.0), ["pending", "firing"], "for: 0 fires at once");
    assert!(step(60, 9.0).is_empty());
    assert!(step(120, 1.0).is_empty(), "cleared at 2m, held");
    assert!(step(180, 1.0).is_empty());
    assert!(step(240, 1.0).is_empty(), "2m < keep_firing_for");
    assert_eq!(h.firing().len(), 1);
    h.set(300, "load", &l, 1.0);
    let ev = h.eval(300);
    assert_eq!(kinds(&ev), ["resolved"]);
    assert_eq!(ev[0].alert().value, 9.0, "value at resolution is the last value that held");
    assert_eq!(ev[0].alert().resolved_at, Some(ts(300)));
    h.set(360, "load", &l, 1.0);
    assert!(h.eval(360).is_empty(), "resolved is reported once");
    assert_eq!(h.eval.tracker.alerts().next().map(|a| a.state), Some(AlertState::Resolved));
}

#[test]
fn one_alert_per_label_set() {
    let mut h = Harness::new(rules(NODE_DOWN, &[]));
    h.set(0, "up", &[("instance", "a"), ("cluster", "c")], 0.0);
    h.set(0, "up", &[("cluster", "c"), ("instance", "b")], 0.0);
    assert_eq!(kinds(&h.eval(0)), ["pending", "pending"]);
    h.set(60, "up", &[("cluster", "c"), ("instance", "a")], 0.0);
    h.set(60, "up", &[("instance", "b"), ("cluster", "c")], 0.0);
    assert!(h.eval(60).is_empty(), "same label sets in another order: same alerts");
    assert_eq!(h.eval.tracker.alerts().count(), 2);
}

#[test]
fn erroring_rule_reports_health_and_keeps_firing_alerts() {
    let yaml = r#"
groups:
  - name: g
    rules:
      - alert: Flaky
        expr: (if broken == 1.0 { "oops" } else { x }) > 5
        severity: P2
      - alert: Other
        expr: x > 5
        severity: P3
"#;
    let mut h = Harness::new(rules(yaml, &[]));
    let l = [("instance", "a")];
    let feed = |h: &mut Harness, t, broken, x| {
        h.set(t, "broken", &l, broken);
        h.set(t, "x", &l, x);
    };
    feed(&mut h, 0, 0.0, 10.0);
    h.eval(0);
    assert_eq!(h.firing().len(), 2);
    assert_eq!(h.health(0), &RuleHealth::Ok);
    feed(&mut h, 60, 1.0, 10.0);
    let ev = h.eval(60);
    assert!(ev.is_empty(), "an erroring rule resolves nothing: {ev:?}");
    match h.health(0) {
        RuleHealth::Err(msg) => assert!(msg.contains("type mismatch"), "{msg}"),
        other => panic!("expected err, got {other:?}"),
    }
    assert_eq!(h.health(1), &RuleHealth::Ok, "other rules are unaffected");
    assert_eq!(h.firing().len(), 2);
    feed(&mut h, 120, 0.0, 0.0);
    assert_eq!(kinds(&h.eval(120)), ["resolved", "resolved"]);
    assert_eq!(h.health(0), &RuleHealth::Ok);
}

#[test]
fn tiers_escalate_within_one_alert() {
    let yaml = r#"
groups:
  - name: g
    rules:
      - alert: Mem
        expr: mem_used / mem_total * 100
        tiers: { P2: "> 70", P1: "> 85", P0: "> 95" }
"#;
    let mut h = Harness::new(rules(yaml, &[]));
    let l = [("instance", "a")];
    let mut fps = Vec::new();
    for (t, used, expect) in
        [(0, 75.0, Severity::P2), (60, 90.0, Severity::P1), (120, 99.0, Severity::P0), (180, 80.0, Severity::P2)]
    {
        h.set(t, "mem_used", &l, used);
        h.set(t, "mem_total", &l, 100.0);
        let ev = h.eval(t);
        match t {
            0 => assert_eq!(kinds(&ev), ["pending", "firing"]),
            60 | 120 => {
                assert_eq!(kinds(&ev), ["escalated"]);
                let AlertEvent::Escalated { from, alert } = &ev[0] else { unreachable!() };
                assert!(from > &alert.severity);
            }
            _ => assert_eq!(kinds(&ev), ["deescalated"]),
        }
        let a = h.eval.tracker.firing().next().unwrap();
        assert_eq!(a.severity, expect);
        assert_eq!(a.labels.get("severity"), Some(expect.as_str()));
        fps.push(a.fingerprint);
    }
    fps.dedup();
    assert_eq!(fps.len(), 1, "the same alert throughout");
    assert_eq!(h.eval.tracker.alerts().count(), 1);
}

#[test]
fn hysteresis_holds_until_resolve_when() {
    let yaml = r#"
groups:
  - name: g
    rules:
      - alert: Disk
        expr: disk_used_percent
        tiers: { P2: "> 80", P1: "> 90" }
        resolve_when: disk_used_percent < 70
"#;
    let mut h = Harness::new(rules(yaml, &[]));
    let l = [("instance", "a")];
    let mut states = Vec::new();
    for (t, v) in [(0, 85.0), (60, 92.0), (120, 75.0), (180, 79.0), (240, 69.0)] {
        h.set(t, "disk_used_percent", &l, v);
        let ev = h.eval(t);
        states.push((kinds(&ev), h.firing().first().map(|f| (f.1, f.2))));
    }
    assert_eq!(states[0], (vec!["pending", "firing"], Some((Severity::P2, 85.0))));
    assert_eq!(states[1], (vec!["escalated"], Some((Severity::P1, 92.0))));
    assert_eq!(
        states[2],
        (vec!["deescalated"], Some((Severity::P2, 75.0))),
        "below 80 but above 70: held at the lowest tier"
    );
    assert_eq!(states[3], (vec![], Some((Severity::P2, 79.0))));
    assert_eq!(states[4], (vec!["resolved"], None));
}

#[test]
fn hysteresis_does_not_start_alerts() {
    let yaml = r#"
groups:
  - name: g
    rules:
      - alert: Disk
        expr: disk > 80
        resolve_when: disk < 70
"#;
    let mut h = Harness::new(rules(yaml, &[]));
    h.set(0, "disk", &[("instance", "a")], 75.0);
    assert!(h.eval(0).is_empty());
}

#[test]
fn rate_handles_counter_resets() {
    // A counter growing 60/min, reset to 0 at 4m (a ZooKeeper election resets
    // packet counters): the rate stays ~1/s, never negative.
    let yaml = r#"
groups:
  - name: g
    rules:
      - alert: NegativeRate
        expr: rate("zk_packets_received", "3m") < 0
      - alert: Dropped
        expr: delta("zk_packets_received", "3m") < 0
      - alert: Busy
        expr: rate("zk_packets_received", "3m") > 0.3
"#;
    let mut h = Harness::new(rules(yaml, &[]));
    assert_eq!(h.eval.rules.retention.per_metric.get("zk_packets_received"), Some(&Duration::from_secs(180)));
    let l = [("instance", "a")];
    let values = [0.0, 60.0, 120.0, 180.0, 0.0, 60.0, 120.0, 180.0];
    let mut dropped_seen = false;
    for (i, v) in values.iter().enumerate() {
        let t = i as i64 * 60;
        h.set(t, "zk_packets_received", &l, *v);
        h.eval(t);
        let firing: Vec<(String, f64)> = h.eval.tracker.firing().map(|a| (a.name().to_string(), a.value)).collect();
        assert!(firing.iter().all(|(n, _)| n != "NegativeRate"), "at {t}s: {firing:?}");
        dropped_seen |= firing.iter().any(|(n, _)| n == "Dropped");
        if t >= 120 {
            let rate = firing.iter().find(|(n, _)| n == "Busy").map(|f| f.1);
            assert!(rate.is_some_and(|r| (0.3..=1.5).contains(&r)), "rate {rate:?} at {t}s");
        }
    }
    assert!(dropped_seen, "delta() sees the reset that rate() corrects for");
}

#[test]
fn per_cluster_sees_nodes_and_labels() {
    let yaml = r#"
groups:
  - name: c
    per: cluster
    rules:
      - alert: QuorumLost
        expr: nodes.filter(|n| n.up == 1.0).len() < nodes.len() / 2 + 1
        severity: P0
        annotations:
          summary: "{{ labels.cluster }}: only {{ value }} of the voters answer"
      - alert: EpochMismatch
        expr: nodes.map(|n| n.zk_epoch).distinct().len() > 1
        severity: P0
"#;
    let mut h = Harness::new(rules(yaml, &[]));
    for (c, i, up, epoch) in
        [("a", "1", 1.0, 5.0), ("a", "2", 0.0, 5.0), ("a", "3", 0.0, 5.0), ("b", "1", 1.0, 5.0), ("b", "2", 1.0, 6.0)]
    {
        h.set(0, "up", &[("cluster", c), ("instance", i)], up);
        h.set(0, "zk_epoch", &[("cluster", c), ("instance", i)], epoch);
    }
    h.eval(0);
    assert_eq!(h.health(1), &RuleHealth::Ok);
    let firing: Vec<_> =
        h.eval.tracker.firing().map(|a| (a.name().to_string(), a.labels.get("cluster").unwrap().to_string())).collect();
    assert!(firing.contains(&("QuorumLost".into(), "a".into())), "{firing:?}");
    assert!(firing.contains(&("EpochMismatch".into(), "b".into())), "{firing:?}");
    assert_eq!(firing.len(), 2, "{firing:?}");
    let q = h.eval.tracker.firing().find(|a| a.name() == "QuorumLost").unwrap();
    assert_eq!(q.annotation("summary"), Some("a: only 1 of the voters answer"));
    assert_eq!(q.labels.get("instance"), None, "a cluster alert has cluster labels only");
}

#[test]
fn info_labels_show_on_alerts_but_do_not_change_identity() {
    let yaml = r#"
groups:
  - name: g
    rules:
      - alert: Slow
        expr: zk_avg_latency > 100
        annotations:
          summary: "{{ labels.role }} {{ labels.instance }} is slow"
"#;
    let mut h = Harness::new(rules(yaml, &[]));
    let l = Labels::from_pairs([("cluster", "c"), ("instance", "a")]);
    for (t, role) in [(0, "follower"), (60, "leader")] {
        let st = Arc::make_mut(&mut h.store);
        st.ingest("zk_avg_latency", &l, ts(t), 500.0);
        let g = st.group_id(&l);
        st.set_info(g, Labels::from_pairs([("role", role)]));
        let ev = h.eval(t);
        assert_eq!(
            kinds(&ev),
            if t == 0 { vec!["pending", "firing"] } else { vec![] },
            "an election is not a new alert"
        );
        let a = h.eval.tracker.firing().next().unwrap();
        assert_eq!(a.labels.get("role"), Some(role));
        assert_eq!(a.annotation("summary").unwrap(), format!("{role} a is slow"));
    }
}

#[test]
fn script_rules_emit_many_alerts() {
    let yaml = r#"
groups:
  - name: s
    per: global
    rules:
      - alert: TooManyConnectionsFromOneIp
        script: conns.rhai
        severity: P2
        annotations:
          summary: "{{ labels.client_ip }} holds {{ value }} connections"
"#;
    let script = r#"
for c in clusters {
    for n in c.nodes {
        if n.zk_num_alive_connections > 50.0 {
            alert(#{ labels: #{ cluster: c.name, instance: n.instance, client_ip: "10.0.0." + n.instance },
                     value: n.zk_num_alive_connections });
        }
    }
}
"#;
    let mut h = Harness::new(rules(yaml, &[("conns.rhai", script)]));
    for (i, conns) in [("1", 80.0), ("2", 10.0), ("3", 120.0)] {
        h.set(0, "up", &[("cluster", "prod"), ("instance", i)], 1.0);
        h.set(0, "zk_num_alive_connections", &[("cluster", "prod"), ("instance", i)], conns);
    }
    // Not a node (no `up`): a per-client group of the same cluster.
    h.set(0, "zk_num_alive_connections", &[("cluster", "prod"), ("instance", "1"), ("client_ip", "x")], 500.0);
    h.eval(0);
    let mut got: Vec<_> = h.eval.tracker.firing().map(|a| a.annotation("summary").unwrap().to_string()).collect();
    got.sort();
    assert_eq!(got, vec!["10.0.0.1 holds 80 connections", "10.0.0.3 holds 120 connections"]);
}

#[test]
fn runaway_script_fails_its_rule_alone_and_fast() {
    let yaml = r#"
groups:
  - name: s
    per: global
    rules:
      - alert: Runaway
        script: loop.rhai
      - alert: HugeString
        script: huge.rhai
      - alert: DeepRecursion
        script: deep.rhai
  - name: i
    rules:
      - alert: StillEvaluated
        expr: up == 0
"#;
    let mut h = Harness::new(rules(
        yaml,
        &[
            ("loop.rhai", "loop { }"),
            ("huge.rhai", r#"let s = "x"; loop { s += s; }"#),
            ("deep.rhai", "fn f(n) { f(n + 1) } f(0);"),
        ],
    ));
    h.set(0, "up", &[("instance", "a")], 0.0);
    let started = Instant::now();
    h.eval(0);
    assert!(started.elapsed() < Duration::from_secs(1), "three runaway scripts took {:?}", started.elapsed());
    let msg = |i| match h.health(i) {
        RuleHealth::Err(m) => m.clone(),
        other => panic!("rule {i}: {other:?}"),
    };
    assert!(msg(0).contains("runaway loop"), "{}", msg(0));
    assert!(msg(0).contains("loop.rhai"), "the error names the script: {}", msg(0));
    assert!(msg(1).contains("size limit"), "{}", msg(1));
    assert!(msg(2).contains("call depth"), "{}", msg(2));
    assert_eq!(h.health(3), &RuleHealth::Ok);
    assert_eq!(h.firing().len(), 1, "the healthy rule still fires");
}

#[test]
fn import_and_eval_are_rejected_at_load() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("imp.rhai"), "import \"os\" as os;\nalert(#{});").unwrap();
    let p = dir.path().join("r.yaml");
    std::fs::write(
        &p,
        "groups:\n- name: g\n  rules:\n  - alert: A\n    script: imp.rhai\n  - alert: B\n    expr: eval(\"1\") == 1\n",
    )
    .unwrap();
    let err = load_rules(&[p], LoadOptions::default()).unwrap_err().to_string();
    assert!(err.contains("imp.rhai:1:1: script:"), "{err}");
    assert!(err.contains("r.yaml:7:11: expression:"), "{err}");
}

proptest::proptest! {
    /// The native fast path for `metric op number` agrees with Rhai.
    #[test]
    fn native_fast_path_agrees_with_rhai(
        values in proptest::collection::vec(-1000.0f64..1000.0, 1..20),
        threshold in -1000.0f64..1000.0,
        op in proptest::sample::select(vec![">", ">=", "<", "<=", "==", "!="]),
    ) {
        let threshold = threshold.round();
        let yaml = format!(r#"
groups:
  - name: g
    rules:
      - alert: Native
        expr: x {op} {threshold:.1}
      - alert: Script
        expr: (x {op} {threshold:.1}) == true
"#);
        let mut h = Harness::new(rules(&yaml, &[]));
        for (i, v) in values.iter().enumerate() {
            let v = if i % 3 == 0 { threshold } else { v.round() };
            h.set(i as i64 * 60, "x", &[("instance", "a")], v);
            h.eval(i as i64 * 60);
            let native = h.eval.tracker.firing().filter(|a| a.name() == "Native").count();
            let script = h.eval.tracker.firing().filter(|a| a.name() == "Script").count();
            proptest::prop_assert_eq!(native, script, "x={} {} {}", v, op, threshold);
        }
    }
}

#[test]
fn window_function_alone_feeds_tiers() {
    let yaml = r#"
groups:
  - name: g
    rules:
      - alert: Inc
        expr: increase("m", "10m")
        tiers: { P1: ">= 10", P2: ">= 1" }
"#;
    let mut h = Harness::new(rules(yaml, &[]));
    for (i, v) in [0.0, 0.0, 1.0, 1.0, 1.0].iter().enumerate() {
        h.set(i as i64 * 15, "m", &[("instance", "a")], *v);
        h.eval(i as i64 * 15);
    }
    assert_eq!(h.health(0), &RuleHealth::Ok);
    assert_eq!(h.firing().len(), 1, "{:?}", h.firing());
}

/// Tiers with `for`, as two Prometheus rules with `for` would behave: each
/// tier's condition must hold for `for` before the alert is at that tier.
const TIERED_FOR: &str = r#"
groups:
  - name: g
    rules:
      - alert: Lat
        expr: lat
        tiers: { P2: "> 10", P1: "> 100" }
        for: 2m
        keep_firing_for: 2m
"#;

/// Sets `lat` and evaluates at each (time, value); returns the events' kinds
/// and the alert's tier and state after each step.
/// After one step: its time, the events' kinds, the alert's tier and state.
type Step = (i64, Vec<&'static str>, Option<(Severity, AlertState)>);

fn drive(h: &mut Harness, steps: &[(i64, f64)]) -> Vec<Step> {
    steps
        .iter()
        .map(|&(t, v)| {
            h.set(t, "lat", &[("instance", "a")], v);
            let ev = kinds(&h.eval(t));
            let a = h.eval.tracker.alerts().next().map(|a| (a.severity, a.state));
            (t, ev, a)
        })
        .collect()
}

#[test]
fn a_tier_rise_waits_for_for() {
    let mut h = Harness::new(rules(TIERED_FOR, &[]));
    let got = drive(&mut h, &[(0, 50.0), (60, 50.0), (120, 50.0), (180, 500.0), (240, 500.0), (300, 500.0)]);
    use AlertState::{Firing, Pending};
    use Severity::{P1, P2};
    assert_eq!(
        got,
        [
            (0, vec!["pending"], Some((P2, Pending))),
            (60, vec![], Some((P2, Pending))),
            (120, vec!["firing"], Some((P2, Firing))),
            (180, vec![], Some((P2, Firing))), // above 100 since 180 s: not yet P1
            (240, vec![], Some((P2, Firing))),
            (300, vec!["escalated"], Some((P1, Firing))), // held 2m
        ]
    );
}

#[test]
fn a_pending_alert_fires_at_the_tier_that_held_for_for() {
    use AlertState::{Firing, Pending};
    use Severity::{P1, P2};
    // Above P1 from the start: fires at P1 after `for`.
    let mut h = Harness::new(rules(TIERED_FOR, &[]));
    let got = drive(&mut h, &[(0, 500.0), (60, 500.0), (120, 500.0)]);
    assert_eq!(got[1], (60, vec![], Some((P1, Pending))));
    assert_eq!(got[2], (120, vec!["firing"], Some((P1, Firing))));
    // Above P1 only from 60 s: P2 held 2m first, P1 a minute later.
    let mut h = Harness::new(rules(TIERED_FOR, &[]));
    let got = drive(&mut h, &[(0, 50.0), (60, 500.0), (120, 500.0), (180, 500.0)]);
    assert_eq!(got[2], (120, vec!["firing"], Some((P2, Firing))));
    assert_eq!(got[3], (180, vec!["escalated"], Some((P1, Firing))));
}

#[test]
fn a_falling_tier_follows_keep_firing_for() {
    use AlertState::Firing;
    use Severity::{P1, P2};
    let mut h = Harness::new(rules(TIERED_FOR, &[]));
    let got = drive(
        &mut h,
        &[
            (0, 500.0),
            (120, 500.0), // firing at P1
            (180, 50.0),  // P1's condition stops; P2's holds
            (240, 500.0), // back within keep_firing_for: still P1, nothing said
            (300, 50.0),
            (360, 50.0),
            (420, 50.0), // 2m below P1: down to P2
            (480, 500.0),
            (540, 500.0),
            (600, 500.0), // a new rise waits for `for` again
        ],
    );
    let tiers: Vec<_> = got.iter().map(|(t, ev, a)| (*t, ev.clone(), a.map(|a| a.0))).collect();
    assert_eq!(
        tiers,
        [
            (0, vec!["pending"], Some(P1)),
            (120, vec!["firing"], Some(P1)),
            (180, vec![], Some(P1)),
            (240, vec![], Some(P1)),
            (300, vec![], Some(P1)),
            (360, vec![], Some(P1)),
            (420, vec!["deescalated"], Some(P2)),
            (480, vec![], Some(P2)),
            (540, vec![], Some(P2)),
            (600, vec!["escalated"], Some(P1)),
        ]
    );
    assert!(got.iter().skip(1).all(|(_, _, a)| a.is_some_and(|a| a.1 == Firing)));
    assert!(
        h.eval.tracker.alerts().all(|a| a.keep_firing_since.is_none()),
        "a tier drop is not the condition clearing"
    );
}

#[test]
fn a_tier_may_override_for() {
    let yaml = r#"
groups:
  - name: g
    rules:
      - alert: Lat
        expr: lat
        tiers:
          P2: "> 10"
          P0: { when: "> 1000", for: 0s }
          P1: { when: "> 100", for: 5m }
        for: 2m
"#;
    use AlertState::{Firing, Pending};
    use Severity::{P0, P1, P2};
    let mut h = Harness::new(rules(yaml, &[]));
    let got = drive(&mut h, &[(0, 5000.0)]);
    assert_eq!(got[0], (0, vec!["pending", "firing"], Some((P0, Firing))), "P0 needs no time");
    let mut h = Harness::new(rules(yaml, &[]));
    let got = drive(&mut h, &[(0, 500.0), (60, 500.0), (120, 500.0), (240, 500.0), (300, 500.0)]);
    assert_eq!(got[1], (60, vec![], Some((P1, Pending))));
    assert_eq!(got[2], (120, vec!["firing"], Some((P2, Firing))), "P2 after the rule's 2m");
    assert_eq!(got[3], (240, vec![], Some((P2, Firing))));
    assert_eq!(got[4], (300, vec!["escalated"], Some((P1, Firing))), "P1 after its own 5m");
}

#[test]
fn tiers_with_for_keep_hysteresis() {
    let yaml = r#"
groups:
  - name: g
    rules:
      - alert: Disk
        expr: disk_used_percent
        tiers: { P2: "> 80", P1: "> 90" }
        resolve_when: disk_used_percent < 70
        for: 1m
"#;
    let mut h = Harness::new(rules(yaml, &[]));
    let l = [("instance", "a")];
    let mut states = Vec::new();
    for (t, v) in [(0, 85.0), (60, 92.0), (120, 92.0), (180, 75.0), (240, 79.0), (300, 95.0), (360, 69.0)] {
        h.set(t, "disk_used_percent", &l, v);
        let ev = h.eval(t);
        states.push((t, kinds(&ev), h.firing().first().map(|f| f.1)));
    }
    assert_eq!(
        states,
        [
            (0, vec!["pending"], None),
            (60, vec!["firing"], Some(Severity::P2)),
            (120, vec!["escalated"], Some(Severity::P1)),
            (180, vec!["deescalated"], Some(Severity::P2)), // held by resolve_when at the lowest tier
            (240, vec![], Some(Severity::P2)),
            (300, vec![], Some(Severity::P2)), // above 90 again: P1 after `for`
            (360, vec!["resolved"], None),
        ]
    );
}

#[test]
fn restored_alerts_keep_their_tier_and_time_tier_changes_afresh() {
    use AlertState::Firing;
    use Severity::{P1, P2};
    let restart = |steps: &[(i64, f64)]| {
        let mut before = Harness::new(rules(TIERED_FOR, &[]));
        drive(&mut before, steps);
        let saved: Vec<_> = before.eval.tracker.alerts().cloned().collect();
        let mut after = Harness::new(rules(TIERED_FOR, &[]));
        after.eval.tracker.rules[0].restore(saved, ts(150));
        after
    };
    // Firing at P1 before the restart, at P2's level after it: P1 for keep_firing_for, then P2.
    let mut h = restart(&[(0, 500.0), (120, 500.0)]);
    let got = drive(&mut h, &[(180, 50.0), (240, 50.0), (300, 50.0)]);
    let tiers: Vec<_> = got.iter().map(|(t, ev, a)| (*t, ev.clone(), *a)).collect();
    assert_eq!(
        tiers,
        [
            (180, vec![], Some((P1, Firing))),
            (240, vec![], Some((P1, Firing))),
            (300, vec!["deescalated"], Some((P2, Firing)))
        ]
    );
    // Firing at P2 before, above P1 after: P1 once that held for `for`.
    let mut h = restart(&[(0, 50.0), (120, 50.0)]);
    let got = drive(&mut h, &[(180, 500.0), (240, 500.0), (300, 500.0)]);
    let tiers: Vec<_> = got.iter().map(|(t, ev, a)| (*t, ev.clone(), *a)).collect();
    assert_eq!(
        tiers,
        [
            (180, vec![], Some((P2, Firing))),
            (240, vec![], Some((P2, Firing))),
            (300, vec!["escalated"], Some((P1, Firing)))
        ]
    );
}
