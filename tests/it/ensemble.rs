//! The real `zkalert` binary against a real three-node ZooKeeper ensemble
//! (Debian's `zookeeper` package, started by `support::ensemble`): `zkalert
//! run` with the rules in tests/fixtures/ensemble/ and a file notifier, and
//! `zkalert probe`. Each test starts its own ensemble on its own ports, so
//! they run in parallel.
//!
//! zkalert polls every 2 s (timeout 1 s) and evaluates every 1 s. Latency
//! bounds below are "two poll intervals + the rule's `for` + 1 s" from the
//! fault to the notification's `at`; measured values are printed (run with
//! `-- --nocapture` to see them).

use crate::support;
use crate::support::http::free_port;

use std::time::{Duration, Instant, SystemTime};
use support::ensemble::{Ensemble, Options};
use support::zkalert::{Event, RunConfig, ZkalertRun, active, epoch_ms, probe, render};

const POLL: Duration = Duration::from_secs(2);
const POLL_TIMEOUT: Duration = Duration::from_secs(1);
/// `for` of the rules in tests/fixtures/ensemble/rules.yaml.
const NODE_DOWN_FOR: Duration = Duration::ZERO;
const QUORUM_LOST_FOR: Duration = Duration::from_secs(4);
const SLACK: Duration = Duration::from_secs(1);
/// The heartbeat rule of tests/fixtures/ensemble/heartbeat.yaml.
const HEARTBEAT: &str = "ZkalertPipelineUp";
const RUNBOOKS: &str = "https://example.invalid/runbooks/";

fn ms(d: Duration) -> i64 {
    d.as_millis() as i64
}

/// Prints a step with the time since the test began.
struct Steps {
    name: &'static str,
    t0: Instant,
}

impl Steps {
    fn new(name: &'static str) -> Steps {
        Steps { name, t0: Instant::now() }
    }
    fn log(&self, msg: impl AsRef<str>) {
        eprintln!("[{} +{:>5.1}s] {}", self.name, self.t0.elapsed().as_secs_f64(), msg.as_ref());
    }
}

/// An ensemble, `zkalert run` against it with the test rules (+ `extra`
/// rule files), and the heartbeat notification that shows the first poll
/// went through the whole pipeline.
fn setup(steps: &Steps, options: Options, extra: &[&str]) -> (Ensemble, ZkalertRun, Event) {
    let zk = Ensemble::start(3, options);
    steps.log(format!("ensemble ready: {} — {}", zk.client_addrs().join(","), zk.describe()));
    let mut rules = vec!["rules.yaml", "heartbeat.yaml"];
    rules.extend_from_slice(extra);
    let mut run = ZkalertRun::start(RunConfig::new(zk.client_addrs(), &rules));
    let (hb, _) =
        run.wait_event("the heartbeat (first poll evaluated)", Duration::from_secs(30), |e| e.is("firing", HEARTBEAT));
    assert_eq!(hb.value, Some(3.0), "the first poll should see 3 configured nodes: {hb}");
    steps.log(format!("zkalert run polling: {hb}"));
    (zk, run, hb)
}

fn is_alert(e: &Event) -> bool {
    e.alertname != HEARTBEAT
}

/// Asserts a notification carries the tier and a runbook URL.
fn assert_notification(e: &Event, severity: &str) {
    assert_eq!(e.severity, severity, "{e}");
    assert_eq!(e.labels.get("severity").map(String::as_str), Some(severity), "{e}");
    assert_eq!(e.labels.get("cluster").map(String::as_str), Some("test"), "{e}");
    assert!(e.runbook.as_deref().is_some_and(|r| r.starts_with(RUNBOOKS)), "no runbook URL: {:?}", e.raw);
    assert!(e.annotations.get("summary").is_some_and(|s| !s.is_empty()), "no summary: {:?}", e.raw);
}

/// Sleeps until `t` (no-op if past).
fn sleep_until(t: Instant) {
    if let Some(d) = t.checked_duration_since(Instant::now()) {
        std::thread::sleep(d);
    }
}

/// (a) A healthy ensemble: nothing but the heartbeat fires for 8 s after the
/// first poll.
#[test]
fn healthy_ensemble_fires_nothing() {
    let steps = Steps::new("healthy");
    let (zk, mut run, hb) = setup(&steps, Options::default(), &[]);
    assert_notification(&hb, "P3");
    sleep_until(Instant::now() + Duration::from_secs(8));
    run.assert_running();
    let events = run.events();
    let alerts: Vec<Event> = events.iter().filter(|e| is_alert(e)).cloned().collect();
    assert!(alerts.is_empty(), "a healthy ensemble fired:\n{}", render(&alerts));
    assert_eq!(events.len(), 1, "the heartbeat fires once and stays firing:\n{}", render(&events));
    assert!(zk.leader().is_some(), "the ensemble is no longer healthy: {}", zk.describe());
    steps.log("8 s after the first poll: no alert");
}

/// (b) SIGKILL a follower: ZkNodeDown (P1) for that instance within two poll
/// intervals + `for` + 1 s; quorum holds, so nothing else fires.
#[test]
fn killed_follower_fires_node_down() {
    let steps = Steps::new("follower-kill");
    let (mut zk, mut run, _) = setup(&steps, Options::default(), &[]);
    let follower = *zk.followers().first().expect("a follower");
    let instance = zk.client_addr(follower);
    let killed_at = SystemTime::now();
    let t_kill = Instant::now();
    zk.kill(follower);
    steps.log(format!("SIGKILLed follower {follower} ({instance})"));

    let (down, seen) = run.wait_event("ZkNodeDown firing for the killed follower", Duration::from_secs(30), |e| {
        e.is("firing", "ZkNodeDown") && e.instance() == Some(&instance)
    });
    let latency = down.ms_after(killed_at);
    // The acceptance bound: within two poll intervals of the SIGKILL.
    let bound = ms(2 * POLL);
    steps.log(format!(
        "ZkNodeDown fired {latency} ms after the kill (seen in the file after {} ms; bound {bound} ms): {down}",
        seen.duration_since(t_kill).as_millis()
    ));
    assert_notification(&down, "P1");
    assert_eq!(down.value, Some(0.0), "value is `up`: {down}");
    assert!(latency <= bound, "ZkNodeDown took {latency} ms > {bound} ms");

    // Long enough for ZkQuorumLost to have fired had the cluster seen a loss.
    sleep_until(t_kill + 2 * POLL + QUORUM_LOST_FOR + 2 * SLACK);
    run.assert_running();
    let events = run.events();
    let unexpected: Vec<Event> = events
        .iter()
        .filter(|e| is_alert(e) && !(e.alertname == "ZkNodeDown" && e.instance() == Some(&instance)))
        .cloned()
        .collect();
    assert!(unexpected.is_empty(), "only the follower's ZkNodeDown should fire, got:\n{}", render(&unexpected));
    assert!(zk.leader().is_some(), "the two survivors lost their leader: {}", zk.describe());
    steps.log("no quorum loss, nothing else fired");
}

/// (c) SIGKILL the leader: the election is noticed (ZkLeaderElection on the
/// survivors, ZkNodeDown for the old leader); after the old leader is
/// restarted every alert resolves.
#[test]
fn killed_leader_election_is_noticed_and_everything_resolves() {
    let steps = Steps::new("leader-kill");
    let (mut zk, mut run, _) = setup(&steps, Options::default(), &[]);
    let leader = zk.leader().expect("a leader");
    let old = zk.client_addr(leader);
    let killed_at = SystemTime::now();
    let t_kill = Instant::now();
    zk.kill(leader);
    steps.log(format!("SIGKILLed leader {leader} ({old})"));

    // Both survivors noticed: the new leader and the follower that re-synced.
    for id in zk.ids().filter(|id| *id != leader) {
        let survivor = zk.client_addr(id);
        let (election, _) = run.wait_event("ZkLeaderElection firing on each survivor", Duration::from_secs(30), |e| {
            e.is("firing", "ZkLeaderElection") && e.instance() == Some(&survivor)
        });
        let latency = election.ms_after(killed_at);
        steps.log(format!("election noticed on node {id} {latency} ms after the kill: {election}"));
        assert_notification(&election, "P3");
        // An election takes ~0.5-2 s, then one poll and one evaluation.
        assert!(latency <= ms(3 * POLL + SLACK), "election noticed late: {election}");
    }

    let (down, _) = run.wait_event("ZkNodeDown firing for the old leader", Duration::from_secs(30), |e| {
        e.is("firing", "ZkNodeDown") && e.instance() == Some(&old)
    });
    let latency = down.ms_after(killed_at);
    steps.log(format!("ZkNodeDown for the old leader after {latency} ms: {down}"));
    assert!(latency <= ms(2 * POLL + NODE_DOWN_FOR + SLACK), "ZkNodeDown took {latency} ms");

    let waited = zk.wait_ready(Duration::from_secs(30)).unwrap_or_else(|e| panic!("no new leader: {e}"));
    let new_leader = zk.leader().expect("a new leader");
    assert_ne!(new_leader, leader);
    steps.log(format!(
        "new leader {new_leader} (ready {} ms after the kill, waited {} ms)",
        t_kill.elapsed().as_millis(),
        waited.as_millis()
    ));

    let restarted = zk.restart(leader);
    zk.wait_ready(Duration::from_secs(30)).unwrap_or_else(|e| panic!("not ready after the restart: {e}"));
    let t_restart = Instant::now();
    steps.log(format!("node {leader} restarted in {} ms: {}", restarted.as_millis(), zk.describe()));

    let events = run.wait_quiet(Duration::from_secs(90), Duration::from_secs(5), |e| !is_alert(e));
    steps.log(format!(
        "recovered: no alert active {} ms after the restart (incl. 5 s quiet); timeline:\n{}",
        t_restart.elapsed().as_millis(),
        render(&events)
    ));
    for (i, e) in events.iter().enumerate().filter(|(_, e)| e.event == "firing" && is_alert(e)) {
        assert!(
            events[i + 1..].iter().any(|r| r.event == "resolved" && r.fingerprint == e.fingerprint),
            "{e} was never resolved:\n{}",
            render(&events)
        );
    }
    let resolved_down = events.iter().any(|e| e.is("resolved", "ZkNodeDown") && e.instance() == Some(&old));
    assert!(resolved_down, "ZkNodeDown for {old} not resolved:\n{}", render(&events));
    assert!(active(&events).values().all(|e| !is_alert(e)));
}

/// (d) SIGKILL two of three: ZkQuorumLost (P0) fires for the cluster, and
/// `zkalert probe` says critical (exit 2).
#[test]
fn two_of_three_killed_fires_quorum_lost() {
    let steps = Steps::new("quorum-loss");
    let (mut zk, mut run, _) = setup(&steps, Options::default(), &[]);
    let leader = zk.leader().expect("a leader");
    let follower = *zk.followers().first().expect("a follower");
    let survivor = zk.ids().find(|id| *id != leader && *id != follower).expect("a survivor");
    zk.kill(leader);
    zk.kill(follower);
    let killed_at = SystemTime::now();
    steps.log(format!("SIGKILLed leader {leader} and follower {follower}; survivor {survivor}"));

    let (lost, _) = run.wait_event("ZkQuorumLost firing", Duration::from_secs(30), |e| e.is("firing", "ZkQuorumLost"));
    let latency = lost.ms_after(killed_at);
    let bound = ms(2 * POLL + QUORUM_LOST_FOR + SLACK);
    steps.log(format!("ZkQuorumLost fired {latency} ms after the kills (bound {bound} ms): {lost}"));
    assert_notification(&lost, "P0");
    assert_eq!(lost.instance(), None, "a cluster alert has no instance: {lost}");
    assert!(lost.value.is_some_and(|v| v < 2.0), "value is the serving voters (< quorum 2): {lost}");
    assert!(latency <= bound, "ZkQuorumLost took {latency} ms > {bound} ms");

    for id in [leader, follower] {
        let instance = zk.client_addr(id);
        run.wait_event("ZkNodeDown for each killed node", Duration::from_secs(15), |e| {
            e.is("firing", "ZkNodeDown") && e.instance() == Some(&instance)
        });
    }
    let p = probe(&zk.client_addrs(), "1s");
    steps.log(format!("probe with 2 of 3 down: {p}"));
    assert_eq!(p.code, Some(2), "quorum lost is critical:\n{p}");
    assert!(p.stdout.lines().any(|l| l.starts_with("CRIT") && l.contains("quorum")), "{p}");
}

/// (e) SIGSTOP one node (it accepts connections, never answers): `zkalert
/// probe --timeout 1s` is done in about the timeout and reports it down
/// (exit 1) and the others healthy; in `run`, ZkNodeDown fires for it, its
/// poll costs one timeout and the other nodes' polls never hit the timeout.
/// After SIGCONT the alert resolves.
#[test]
fn sigstopped_node_is_down_and_does_not_delay_the_others() {
    let steps = Steps::new("sigstop");
    let (mut zk, mut run, _) = setup(&steps, Options::default(), &["poll-timing.yaml"]);
    let hung = *zk.followers().first().expect("a follower");
    let instance = zk.client_addr(hung);
    let stopped_at = SystemTime::now();
    zk.stop_signal(hung);
    steps.log(format!("SIGSTOPped follower {hung} ({instance})"));

    let p = probe(&zk.client_addrs(), "1s");
    steps.log(format!("probe: {p}"));
    assert_eq!(p.code, Some(1), "one node down is a warning:\n{p}");
    assert!(p.elapsed < POLL_TIMEOUT + Duration::from_secs(1), "probe took {:?} with --timeout 1s", p.elapsed);
    let row = p.row(&instance).unwrap_or_else(|| panic!("no row for {instance}:\n{p}"));
    assert_eq!(row[1], "down", "{p}");
    for id in zk.ids().filter(|id| *id != hung) {
        let other = zk.client_addr(id);
        let row = p.row(&other).unwrap_or_else(|| panic!("no row for {other}:\n{p}"));
        assert!(row[1] == "leader" || row[1] == "follower", "{other} should serve:\n{p}");
        let probe_ms: f64 = row[3].parse().unwrap_or_else(|_| panic!("PROBE ms of {other} is {:?}:\n{p}", row[3]));
        assert!(probe_ms < ms(POLL_TIMEOUT) as f64, "{other} answered in {probe_ms} ms:\n{p}");
    }
    assert!(p.stdout.lines().any(|l| l.starts_with("WARN") && l.contains(&instance)), "{p}");

    let (down, _) = run.wait_event("ZkNodeDown firing for the hung node", Duration::from_secs(30), |e| {
        e.is("firing", "ZkNodeDown") && e.instance() == Some(&instance)
    });
    let latency = down.ms_after(stopped_at);
    let bound = ms(2 * POLL + POLL_TIMEOUT + NODE_DOWN_FOR + SLACK);
    steps.log(format!("ZkNodeDown fired {latency} ms after SIGSTOP (bound {bound} ms): {down}"));
    assert_notification(&down, "P1");
    assert!(latency <= bound, "ZkNodeDown took {latency} ms > {bound} ms");

    let (slow, _) = run.wait_event("ZkPollHitTimeout for the hung node", Duration::from_secs(15), |e| {
        e.is("firing", "ZkPollHitTimeout") && e.instance() == Some(&instance)
    });
    let poll_s = slow.value.expect("a value");
    steps.log(format!("the hung node's poll took {poll_s:.3} s (timeout 1 s)"));
    assert!(poll_s < 1.5, "one hung node's poll must cost one timeout, not one per command: {slow}");

    // Two more polls of the others while the node hangs.
    std::thread::sleep(2 * POLL);
    let events = run.events();
    let others: Vec<Event> =
        events.iter().filter(|e| is_alert(e) && e.instance().is_some_and(|i| i != instance)).cloned().collect();
    assert!(others.is_empty(), "the healthy nodes were affected:\n{}", render(&others));

    zk.cont(hung);
    let t_cont = Instant::now();
    let mode = zk.wait_serving(hung, Duration::from_secs(30)).unwrap_or_else(|e| panic!("{e}"));
    steps.log(format!("SIGCONT: node {hung} serving as {mode} after {} ms", t_cont.elapsed().as_millis()));
    let (resolved, _) = run.wait_event("ZkNodeDown resolved after SIGCONT", Duration::from_secs(30), |e| {
        e.is("resolved", "ZkNodeDown") && e.instance() == Some(&instance)
    });
    steps.log(format!("resolved {} ms after SIGCONT: {resolved}", t_cont.elapsed().as_millis()));
}

/// (f) A node whose 4lw whitelist lacks `mntr`: ZkMntrBlocked (P2) fires for
/// it — a blind spot, not a healthy-looking node — and for no other node.
#[test]
fn node_without_mntr_whitelisted_fires_mntr_blocked() {
    let steps = Steps::new("mntr-blocked");
    let options = Options::default().node_whitelist(2, "srvr,ruok,cons,conf,isro,envi");
    let (zk, mut run, hb) = setup(&steps, options, &[]);
    let blind = zk.client_addr(2);
    let reply = zk.four_letter(2, "mntr", Duration::from_secs(2)).expect("mntr reply");
    assert!(reply.contains("not in the whitelist"), "node 2 answers mntr: {reply}");

    let (blocked, _) = run.wait_event("ZkMntrBlocked firing for node 2", Duration::from_secs(30), |e| {
        e.is("firing", "ZkMntrBlocked") && e.instance() == Some(&blind)
    });
    steps.log(format!("ZkMntrBlocked fired {} ms after the first poll: {blocked}", blocked.at_ms - hb.at_ms));
    assert_notification(&blocked, "P2");
    assert_eq!(blocked.value, Some(1.0), "{blocked}");

    std::thread::sleep(2 * POLL);
    let events = run.events();
    let unexpected: Vec<Event> = events
        .iter()
        .filter(|e| is_alert(e) && !(e.alertname == "ZkMntrBlocked" && e.instance() == Some(&blind)))
        .cloned()
        .collect();
    assert!(unexpected.is_empty(), "only node 2's ZkMntrBlocked should fire:\n{}", render(&unexpected));

    let p = probe(&zk.client_addrs(), "2s");
    steps.log(format!("probe: {p}"));
    assert_eq!(p.code, Some(1), "a whitelist gap is a warning:\n{p}");
    assert!(p.stdout.lines().any(|l| l.starts_with("WARN") && l.contains(&blind) && l.contains("mntr")), "{p}");
}

/// (g) `zkalert probe` on a healthy ensemble prints the node table and exits
/// 0; with a node killed it exits 1.
#[test]
fn probe_prints_the_table_and_exit_codes() {
    let steps = Steps::new("probe");
    let mut zk = Ensemble::start(3, Options::default());
    let addrs = zk.client_addrs();
    let p = probe(&addrs, "2s");
    steps.log(format!("healthy: {p}"));
    assert_eq!(p.code, Some(0), "healthy ensemble:\n{p}");
    let table = p.table();
    assert_eq!(table.first().map(|h| &h[..2]), Some(&["NODE".to_string(), "ROLE".to_string()][..]), "{p}");
    assert_eq!(table.len(), 4, "header + three rows:\n{p}");
    let rows = &table[1..];
    let mut nodes: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    nodes.sort_unstable();
    let mut expected: Vec<&str> = addrs.iter().map(String::as_str).collect();
    expected.sort_unstable();
    assert_eq!(nodes, expected, "{p}");
    assert_eq!(rows.iter().filter(|r| r[1] == "leader").count(), 1, "{p}");
    assert_eq!(rows.iter().filter(|r| r[1] == "follower").count(), 2, "{p}");
    assert!(p.stdout.contains("ensemble healthy (exit 0)"), "{p}");

    let follower = *zk.followers().first().expect("a follower");
    zk.kill(follower);
    let p = probe(&addrs, "2s");
    steps.log(format!("follower {follower} killed: {p}"));
    assert_eq!(p.code, Some(1), "one node down is a warning:\n{p}");
    assert_eq!(p.row(&zk.client_addr(follower)).map(|r| r[1].clone()).as_deref(), Some("down"), "{p}");
    assert!(p.stdout.lines().any(|l| l.starts_with("WARN") && l.contains("nodes up")), "{p}");
}

/// The shipped rule pack (rules/zookeeper/, with its inhibit rules) and the
/// seed's routing against the real ensemble, one incident after another on
/// one ensemble:
/// 1. healthy: nothing for a minute — every rule's `for` of up to 1m elapsed;
/// 2. a follower killed: ZkNodeDown (P1, shipped runbook) is the one page,
///    while ZkSyncedFollowersLow fires on the leader, inhibited;
/// 3. the leader killed too (quorum lost): ZkQuorumLost is the one page (P0),
///    while ZkNoLeader, the survivor's ZkNodeNotServing and the leader's
///    ZkNodeDown fire, inhibited;
/// 4. both restarted: the P0 resolves and nothing is paged as firing (the
///    node alerts held by keep_firing_for only resolve).
///
/// "Paged" is any message about a P0-P2 alert; P3 goes to the seed's digest
/// (here sent at once, so the heartbeat shows the pipeline runs).
#[test]
fn shipped_rule_pack_one_incident_one_page() {
    let steps = Steps::new("shipped-pack");
    let mut zk = Ensemble::start(3, Options::default());
    let api = free_port();
    let config = RunConfig::new(zk.client_addrs(), &["heartbeat.yaml"]);
    let pack = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/zookeeper");
    let yaml = shipped_pack_config(&config, &pack, api);
    let mut run = ZkalertRun::start_yaml(config, &yaml, &[]);
    run.wait_event("the heartbeat (first poll evaluated)", Duration::from_secs(30), |e| e.is("firing", HEARTBEAT));
    let quiet = run.wait_quiet(Duration::from_secs(70), Duration::from_secs(65), |e| e.alertname == HEARTBEAT);
    let raised: Vec<Event> = quiet.into_iter().filter(|e| e.alertname != HEARTBEAT).collect();
    assert!(raised.is_empty(), "the shipped pack raised alerts on a healthy ensemble:\n{}", render(&raised));
    steps.log("healthy for 65 s: the shipped pack raised nothing");

    // 2. A dead follower.
    let follower = *zk.followers().first().expect("a follower");
    let leader = zk.leader().expect("a leader");
    let survivor = zk.ids().find(|id| *id != leader && *id != follower).expect("a third node");
    let (f_addr, l_addr, s_addr) = (zk.client_addr(follower), zk.client_addr(leader), zk.client_addr(survivor));
    let killed_at = SystemTime::now();
    zk.kill(follower);
    steps.log(format!("SIGKILLed follower {follower} ({f_addr})"));
    let (down, _) = run.wait_event("the pack's ZkNodeDown", Duration::from_secs(100), |e| {
        e.is("firing", "ZkNodeDown") && e.instance() == Some(&f_addr)
    });
    let latency = down.ms_after(killed_at);
    steps.log(format!("pack ZkNodeDown paged after {latency} ms: {down}"));
    assert_eq!(down.severity, "P1", "{down}");
    assert_eq!(down.runbook.as_deref(), Some("zookeeper/node-down"), "{down}");
    // The node group runs every 15 s: pending at the first evaluation after
    // the failed poll, firing 30 s later, paged after P1's 30 s group_wait.
    assert!(latency <= ms(2 * POLL + Duration::from_secs(90) + SLACK), "took {latency} ms");
    wait_inhibited(&mut run, api, "ZkSyncedFollowersLow", Some(&l_addr), Duration::from_secs(100));
    steps.log("ZkSyncedFollowersLow fires on the leader, inhibited");
    std::thread::sleep(Duration::from_secs(3));
    let pages = paged_since(&run.events(), killed_at);
    assert!(
        pages.len() == 1 && pages[0].fingerprint == down.fingerprint,
        "a dead follower must page exactly one alert, paged:\n{}",
        render(&pages)
    );

    // 3. Quorum lost: the leader dies too; the survivor stops serving.
    let lost_at = SystemTime::now();
    zk.kill(leader);
    steps.log(format!("SIGKILLed leader {leader} ({l_addr}); survivor {survivor} ({s_addr})"));
    let (lost, _) = run.wait_event("ZkQuorumLost paged", Duration::from_secs(60), |e| e.is("firing", "ZkQuorumLost"));
    steps.log(format!("ZkQuorumLost paged after {} ms: {lost}", lost.ms_after(lost_at)));
    assert_eq!(lost.severity, "P0", "{lost}");
    for (alertname, instance) in
        [("ZkNodeDown", Some(&l_addr)), ("ZkNoLeader", None), ("ZkNodeNotServing", Some(&s_addr))]
    {
        wait_inhibited(&mut run, api, alertname, instance.map(String::as_str), Duration::from_secs(100));
        steps.log(format!("{alertname} {} fires, inhibited", instance.map_or("", String::as_str)));
    }
    std::thread::sleep(Duration::from_secs(3));
    let pages = paged_since(&run.events(), lost_at);
    assert!(
        pages.len() == 1 && pages[0].fingerprint == lost.fingerprint,
        "losing quorum must page exactly one P0 and nothing else, paged:\n{}",
        render(&pages)
    );

    // 4. Recovery: nothing is paged as firing, the P0 and the told node
    // alert resolve.
    let recovered_at = SystemTime::now();
    zk.restart(leader);
    zk.restart(follower);
    zk.wait_ready(Duration::from_secs(60)).unwrap_or_else(|e| panic!("not ready after the restarts: {e}"));
    steps.log(format!("restarted {leader} and {follower}: {}", zk.describe()));
    let events = run.wait_quiet(Duration::from_secs(240), Duration::from_secs(5), |e| {
        e.alertname == HEARTBEAT || e.severity == "P3"
    });
    wait_api_quiet(&mut run, api, Duration::from_secs(60));
    let events_after = run.events();
    steps.log(format!("recovered; timeline:\n{}", render(&events_after)));
    let since = epoch_ms(recovered_at);
    let after: Vec<Event> = events.iter().filter(|e| e.at_ms >= since).cloned().collect();
    assert!(
        after.iter().any(|e| e.is("resolved", "ZkQuorumLost")),
        "ZkQuorumLost not resolved:\n{}",
        render(&events_after)
    );
    assert!(
        after.iter().any(|e| e.is("resolved", "ZkNodeDown") && e.instance() == Some(&f_addr)),
        "the told ZkNodeDown not resolved:\n{}",
        render(&events_after)
    );
    let pages = paged_since(&events_after, recovered_at);
    assert!(pages.is_empty(), "recovery must page nothing as firing, paged:\n{}", render(&pages));
}

/// An election is not an outage: the leader SIGKILLed and started again a
/// few seconds later (a crash and a supervisor's restart), with the shipped
/// pack, held sessions and every tier told at once. Every session drops
/// (followers drop their clients when they lose the leader) and the
/// sources poll at once, but the only alert is the election (P3): no
/// node-down or not-serving page for any node, the restarted one included.
#[test]
fn a_restarted_leader_pages_only_the_election() {
    let steps = Steps::new("leader-restart");
    let mut zk = Ensemble::start(3, Options::default());
    let api = free_port();
    let config = RunConfig::new(zk.client_addrs(), &["heartbeat.yaml"]);
    let pack = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/zookeeper");
    let yaml = shipped_pack_config(&config, &pack, api).replace(
        "routing:\n  tiers:\n",
        "routing:\n  tiers:\n    P0: {group_wait: 0s}\n    P1: {group_wait: 0s}\n    P2: {group_wait: 0s}\n",
    );
    let mut run = ZkalertRun::start_yaml(config, &yaml, &[]);
    run.wait_event("the heartbeat (first poll evaluated)", Duration::from_secs(30), |e| e.is("firing", HEARTBEAT));
    std::thread::sleep(Duration::from_secs(5));
    let leader = zk.leader().expect("a leader");
    let killed_at = SystemTime::now();
    zk.kill(leader);
    steps.log(format!("SIGKILLed leader {leader} ({})", zk.client_addr(leader)));
    std::thread::sleep(Duration::from_secs(3));
    zk.restart(leader);
    zk.wait_ready(Duration::from_secs(30)).unwrap_or_else(|e| panic!("not ready after the restart: {e}"));
    steps.log(format!("restarted: {}", zk.describe()));
    run.wait_event("ZkLeaderElection", Duration::from_secs(30), |e| e.is("firing", "ZkLeaderElection"));
    // ZkNodeDown waits 30 s: past it, and a poll and a step more.
    std::thread::sleep(Duration::from_secs(40).saturating_sub(killed_at.elapsed().unwrap_or_default()));
    let events = run.events();
    steps.log(format!("timeline:\n{}", render(&events)));
    let pages = paged_since(&events, killed_at);
    assert!(pages.is_empty(), "a leader restart must page nothing but the election, paged:\n{}", render(&pages));
    let raised: Vec<&Event> = events
        .iter()
        .filter(|e| e.at_ms >= epoch_ms(killed_at) && e.event == "firing" && e.alertname != HEARTBEAT)
        .filter(|e| e.alertname != "ZkLeaderElection")
        .collect();
    assert!(raised.is_empty(), "only the election alert fired, also: {raised:#?}");
    run.assert_running();
}

/// Messages about P0-P2 alerts still firing (new or repeated) since `t`.
fn paged_since(events: &[Event], t: SystemTime) -> Vec<Event> {
    let since = epoch_ms(t);
    events.iter().filter(|e| e.at_ms >= since && e.event != "resolved" && e.severity != "P3").cloned().collect()
}

/// The config for the shipped-pack test: the pack and the heartbeat, the
/// seed's routing (P3 sent at once instead of in a digest), the API on
/// `api`, no `inhibit_rules` (the defaults: tiers and the pack's).
fn shipped_pack_config(c: &RunConfig, pack: &std::path::Path, api: u16) -> String {
    let mut y = format!("evaluation_interval: 1s\ndata_dir: zkalert-data\nrules:\n  - '{}'\n", pack.display());
    for r in &c.rules {
        y.push_str(&format!("  - '{}'\n", r.display()));
    }
    y.push_str(&format!("sources:\n  - type: zookeeper\n    cluster: {}\n    nodes:\n", c.cluster));
    for n in &c.nodes {
        y.push_str(&format!("      - '{n}'\n"));
    }
    y.push_str("    interval: 2s\n    timeout: 1s\n");
    y.push_str("notifiers:\n  - name: events\n    type: file\n    path: notifications.jsonl\n");
    y.push_str("routing:\n  tiers:\n    P3: {group_wait: 0s, group_interval: 1s, digest: 'off'}\n");
    y.push_str(&format!("server:\n  listen: 127.0.0.1:{api}\n"));
    y
}

/// `GET /api/v1/alerts` of the zkalert under test (`None` while it does
/// not answer 200).
fn api_alerts(port: u16) -> Option<Vec<serde_json::Value>> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET /api/v1/alerts HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").ok()?;
    let mut reply = String::new();
    s.read_to_string(&mut reply).ok()?;
    let (head, body) = reply.split_once("\r\n\r\n")?;
    if !head.starts_with("HTTP/1.1 200") {
        return None;
    }
    let json: serde_json::Value = serde_json::from_str(body).ok()?;
    json.get("alerts")?.as_array().cloned()
}

fn label<'a>(alert: &'a serde_json::Value, name: &str) -> Option<&'a str> {
    alert.get("labels")?.get(name)?.as_str()
}

/// Waits until the API lists `alertname` (on `instance`) firing and
/// inhibited: the symptom did fire, and was muted.
fn wait_inhibited(run: &mut ZkalertRun, api: u16, alertname: &str, instance: Option<&str>, timeout: Duration) {
    let t0 = Instant::now();
    let mut last = Vec::new();
    while t0.elapsed() < timeout {
        run.assert_running();
        last = api_alerts(api).unwrap_or_default();
        let found = last.iter().find(|a| {
            label(a, "alertname") == Some(alertname)
                && instance.is_none_or(|i| label(a, "instance") == Some(i))
                && a.get("state").and_then(|s| s.as_str()) == Some("firing")
        });
        if let Some(a) = found {
            assert_eq!(
                a.get("inhibited"),
                Some(&serde_json::Value::Bool(true)),
                "{alertname} fires, not inhibited: {a}"
            );
            return;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!("{alertname} {instance:?} did not fire within {timeout:?}; the API lists:\n{last:#?}");
}

/// Waits until the API lists no firing P0-P2 alert (nothing left that
/// could still page).
fn wait_api_quiet(run: &mut ZkalertRun, api: u16, timeout: Duration) {
    let t0 = Instant::now();
    loop {
        run.assert_running();
        let firing: Vec<serde_json::Value> = api_alerts(api)
            .unwrap_or_default()
            .into_iter()
            .filter(|a| {
                a.get("state").and_then(|s| s.as_str()) == Some("firing")
                    && a.get("tier").and_then(|t| t.as_str()) != Some("P3")
            })
            .collect();
        if firing.is_empty() {
            return;
        }
        assert!(t0.elapsed() < timeout, "still firing after {timeout:?}: {firing:#?}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// (h) Held sessions (issue 13) at a 15 s poll and evaluation interval,
/// where polling alone pages up to 30 s after a fault:
/// 1. SIGKILL a follower: its session is reset at once, the source polls,
///    the rules see it: ZkNodeDown within 2 s of the kill (the benchmark
///    holds the real target, 250 ms);
/// 2. the follower back, SIGSTOP the other one: its session misses its
///    pings, the poll times out: ZkNodeDown within the session timeout (4 s)
///    + 1 s.
#[test]
fn held_sessions_page_within_seconds_at_a_15s_poll_interval() {
    let steps = Steps::new("sessions");
    let zk = Ensemble::start(3, Options::default());
    let mut zk = zk;
    let mut config = RunConfig::new(zk.client_addrs(), &["rules.yaml", "heartbeat.yaml"]);
    config.interval = Duration::from_secs(15);
    config.evaluation_interval = Duration::from_secs(15);
    let mut run = ZkalertRun::start(config);
    run.wait_event("the heartbeat (first poll evaluated)", Duration::from_secs(45), |e| e.is("firing", HEARTBEAT));
    // Off the poll grid: the sessions, not the schedule, must find it.
    std::thread::sleep(Duration::from_secs(3));
    let followers = zk.followers();
    let (killed, hung) = (followers[0], followers[1]);
    let instance = zk.client_addr(killed);
    let killed_at = SystemTime::now();
    zk.kill(killed);
    steps.log(format!("SIGKILLed follower {killed} ({instance})"));
    let (down, _) = run.wait_event("ZkNodeDown for the killed follower", Duration::from_secs(20), |e| {
        e.is("firing", "ZkNodeDown") && e.instance() == Some(&instance)
    });
    let latency = down.ms_after(killed_at);
    steps.log(format!("ZkNodeDown {latency} ms after the kill (poll interval 15 s): {down}"));
    assert!(latency <= 2_000, "ZkNodeDown took {latency} ms > 2 s with sessions held");

    zk.restart(killed);
    run.wait_event("ZkNodeDown resolved", Duration::from_secs(40), |e| {
        e.is("resolved", "ZkNodeDown") && e.instance() == Some(&instance)
    });
    std::thread::sleep(Duration::from_secs(2));
    let instance = zk.client_addr(hung);
    let stopped_at = SystemTime::now();
    zk.stop_signal(hung);
    steps.log(format!("SIGSTOPped follower {hung} ({instance})"));
    let (down, _) = run.wait_event("ZkNodeDown for the hung follower", Duration::from_secs(20), |e| {
        e.is("firing", "ZkNodeDown") && e.instance() == Some(&instance)
    });
    let latency = down.ms_after(stopped_at);
    let bound = ms(zkalert::config::DEFAULT_NODE_SESSION_TIMEOUT + SLACK);
    steps.log(format!("ZkNodeDown {latency} ms after SIGSTOP (bound {bound} ms): {down}"));
    assert!(latency <= bound, "ZkNodeDown took {latency} ms > {bound} ms after SIGSTOP");
    zk.cont(hung);
    run.assert_running();
}

/// The time-to-page benchmark (issue 13; run by benches/time_to_page.sh, not
/// in CI): a real 3-node ensemble, `zkalert run` polling every
/// `TTP_POLL` (default 15 s) with sessions held, one P0 rule `up == 0`
/// (`for: 0s`) and a quorum rule, routed at once to a webhook receiver on
/// loopback, grouped by instance (as the yardstick's Alertmanager: else a
/// page within `group_interval` of the last resolution waits for it). `TTP_KILLS` (default 10) SIGKILLs of a follower (restarted
/// between), one SIGSTOP, then two of three killed (quorum loss). Prints
/// kill → webhook arrival per trial and the median, p90 and max, split into
/// detection + evaluation (kill → the alert's `fired_at`), pipeline
/// (`fired_at` → the message's `at`) and delivery (`at` → arrival).
#[test]
#[ignore = "a benchmark: benches/time_to_page.sh"]
fn time_to_page_benchmark() {
    use crate::support::http::{Answer, Receiver};
    let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_string());
    let poll = env("TTP_POLL", "15s");
    let kills: usize = env("TTP_KILLS", "10").parse().expect("TTP_KILLS: a number");
    let sessions = env("TTP_SESSIONS", "true");
    let steps = Steps::new("ttp");
    let mut zk = Ensemble::start(3, Options::default());
    let hook = Receiver::start(vec![], Answer::Status(200));
    let nodes = zk.client_addrs().iter().map(|n| format!("'{n}'")).collect::<Vec<_>>().join(", ");
    let rules = "groups:
  - name: ttp
    per: instance
    rules:
      - alert: ZkNodeDown
        expr: up == 0
        severity: P0
        runbook: https://example.invalid/node-down
      - alert: ZkQuorumLost
        expr: zk_cluster_serving_voters < zk_cluster_quorum
        severity: P0
        runbook: https://example.invalid/quorum-lost
";
    let yaml = format!(
        "evaluation_interval: {poll}
data_dir: data
rules: [rules.yaml]
sources:
  - {{type: zookeeper, cluster: ttp, nodes: [{nodes}], interval: {poll}, timeout: 1s, sessions: {sessions}}}
notifiers:
  - {{name: hook, type: webhook, url: '{}'}}
routing:
  group_by: [cluster, alertname, instance]
  tiers:
{}",
        hook.url(),
        crate::support::zkalert::tiers_to("hook", "1h")
    );
    let mut run = ZkalertRun::start_yaml(RunConfig::new(vec![], &[]), &yaml, &[("rules.yaml", rules)]);
    let epoch = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs_f64();
    let iso = |v: &serde_json::Value| {
        v.as_str().and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok()).map(|t| t.timestamp_millis() as f64 / 1e3)
    };
    // The page about `alert` for `instance` (or the cluster) after `since`:
    // (kill → arrival, detection, pipeline, delivery) in seconds.
    let page = |alert: &str, instance: Option<&str>, killed: SystemTime, t_kill: Instant| -> [f64; 4] {
        let found = |hook: &Receiver| {
            hook.received().into_iter().find(|r| {
                r.at >= t_kill
                    && r.body["firing"].as_array().is_some_and(|f| {
                        f.iter()
                            .any(|a| a["alertname"] == alert && instance.is_none_or(|i| a["labels"]["instance"] == i))
                    })
            })
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while found(&hook).is_none() {
            assert!(Instant::now() < deadline, "no {alert} page within 60 s\n{}", run.log_tail(30));
            std::thread::sleep(Duration::from_millis(5));
        }
        let r = found(&hook).unwrap();
        let arrival = r.at.duration_since(t_kill).as_secs_f64();
        let fired = r.body["firing"].as_array().unwrap().iter().find(|a| a["alertname"] == alert).unwrap();
        let kill = epoch(killed);
        let fired_at = iso(&fired["fired_at"]).unwrap_or(kill) - kill;
        let at = iso(&r.body["at"]).unwrap_or(kill) - kill;
        [arrival, fired_at, at - fired_at, arrival - at]
    };
    let wait_resolved = |instance: &str| {
        let deadline = Instant::now() + Duration::from_secs(90);
        let resolved = |hook: &Receiver| {
            hook.received().iter().rev().any(|r| {
                r.body["resolved"].as_array().is_some_and(|f| f.iter().any(|a| a["labels"]["instance"] == instance))
            })
        };
        while !resolved(&hook) {
            assert!(Instant::now() < deadline, "{instance} never resolved");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    std::thread::sleep(Duration::from_secs(3));
    let mut trials: Vec<[f64; 4]> = Vec::new();
    for i in 0..kills {
        let follower = zk.followers()[i % 2.min(zk.followers().len())];
        let instance = zk.client_addr(follower);
        // Off any grid: a pause of 0-3 s.
        std::thread::sleep(Duration::from_millis(((i * 7919) % 3000) as u64));
        let (killed, t_kill) = (SystemTime::now(), Instant::now());
        zk.kill(follower);
        let t = page("ZkNodeDown", Some(&instance), killed, t_kill);
        steps.log(format!(
            "kill {}: {instance} paged after {:.3} s (detect+eval {:.3}, pipeline {:.3}, delivery {:.3})",
            i + 1,
            t[0],
            t[1],
            t[2],
            t[3]
        ));
        trials.push(t);
        zk.restart(follower);
        wait_resolved(&instance);
    }
    let summary = |name: &str, mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        eprintln!("{name}: median {:.3} s, p90 {:.3} s, max {:.3} s (n={})", at(0.5), at(0.9), at(1.0), v.len());
    };
    eprintln!("time to page, poll {poll}, sessions {sessions}:");
    summary("  follower SIGKILL -> P0 webhook", trials.iter().map(|t| t[0]).collect());
    summary("    detection + evaluation", trials.iter().map(|t| t[1]).collect());
    summary("    pipeline", trials.iter().map(|t| t[2]).collect());
    summary("    delivery", trials.iter().map(|t| t[3]).collect());

    // SIGSTOP of a follower.
    std::thread::sleep(Duration::from_secs(2));
    let hung = zk.followers()[0];
    let instance = zk.client_addr(hung);
    let (stopped, t_stop) = (SystemTime::now(), Instant::now());
    zk.stop_signal(hung);
    let t = page("ZkNodeDown", Some(&instance), stopped, t_stop);
    eprintln!("  follower SIGSTOP -> P0 webhook: {:.3} s (detect+eval {:.3})", t[0], t[1]);
    zk.cont(hung);
    zk.wait_serving(hung, Duration::from_secs(30)).expect("back");
    wait_resolved(&instance);

    // Quorum loss: two of three killed.
    std::thread::sleep(Duration::from_secs(2));
    let (first, second) = (zk.followers()[0], zk.leader().expect("a leader"));
    let (killed, t_kill) = (SystemTime::now(), Instant::now());
    zk.kill(first);
    zk.kill(second);
    let t = page("ZkQuorumLost", None, killed, t_kill);
    eprintln!("  two of three SIGKILLed -> ZkQuorumLost webhook: {:.3} s (detect+eval {:.3})", t[0], t[1]);
    run.assert_running();
}

/// What held sessions cost, and that a healthy ensemble pages nothing:
/// `zkalert run` with the built-in pack over SC_SOURCES sources, each the
/// three nodes of a real ensemble (so 3 × SC_SOURCES polled nodes and, with
/// sessions, as many held sessions), for SC_SECONDS, once with sessions and
/// once without (SC_MODES). Prints zkalert's CPU share of one core, its
/// peak RSS and the sessions the ensemble counted, and what paged; with
/// SC_QUIET=1 (the soak), fails on any page.
#[test]
#[ignore = "a benchmark: benches/session_cost.sh"]
fn session_cost_benchmark() {
    let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_string());
    let sources: usize = env("SC_SOURCES", "333").parse().expect("SC_SOURCES: a number");
    let seconds: u64 = env("SC_SECONDS", "120").parse().expect("SC_SECONDS: a number");
    let interval = env("SC_INTERVAL", "10s");
    let modes = env("SC_MODES", "true,false");
    let session_timeout = env("SC_SESSION_TIMEOUT", "4s");
    let options = Options { extra_cfg: vec!["maxClientCnxns=0".into()], ..Options::default() };
    let zk = Ensemble::start(3, options);
    let nodes = zk.client_addrs().iter().map(|n| format!("'{n}'")).collect::<Vec<_>>().join(", ");
    let ticks: f64 = String::from_utf8(std::process::Command::new("getconf").arg("CLK_TCK").output().unwrap().stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let cpu_ticks = |pid: u32| -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
        fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap()
    };
    let rss_kib = |pid: u32| -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let connections = |zk: &Ensemble| -> u64 {
        (1..=3)
            .filter_map(|id| zk.four_letter(id, "mntr", Duration::from_secs(2)).ok())
            .filter_map(|m| {
                m.lines().find_map(|l| {
                    l.strip_prefix("zk_num_alive_connections\t").and_then(|v| v.trim().parse::<u64>().ok())
                })
            })
            .sum()
    };
    for sessions in modes.split(',') {
        let mut yaml = format!("evaluation_interval: {interval}\ndata_dir: data\nsources:\n");
        for i in 0..sources {
            yaml.push_str(&format!(
                "  - {{type: zookeeper, cluster: c{i}, nodes: [{nodes}], interval: {interval}, timeout: 2s, sessions: {sessions}, session_timeout: {session_timeout}}}\n"
            ));
        }
        yaml.push_str("notifiers:\n  - {name: events, type: file, path: notifications.jsonl}\nrouting:\n  tiers:\n");
        yaml.push_str(&crate::support::zkalert::tiers_to("events", "1h"));
        let mut run = ZkalertRun::start_yaml(RunConfig::new(vec![], &[]), &yaml, &[]);
        // Started, every session connected, a poll or two in.
        std::thread::sleep(Duration::from_secs(20));
        run.assert_running();
        let pid = run.pid();
        let (start_cpu, start) = (cpu_ticks(pid), Instant::now());
        let mut peak_rss = 0;
        let mut peak_connections = 0;
        while start.elapsed() < Duration::from_secs(seconds) {
            peak_rss = peak_rss.max(rss_kib(pid));
            if peak_connections == 0 || start.elapsed().as_secs() % 30 == 0 {
                peak_connections = peak_connections.max(connections(&zk));
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        let share = 100.0 * (cpu_ticks(pid) - start_cpu) / ticks / start.elapsed().as_secs_f64();
        run.assert_running();
        let pages = std::fs::read_to_string(&run.notifications).unwrap_or_default();
        eprintln!(
            "sessions {sessions} (timeout {session_timeout}): {} nodes ({sources} sources of 3) for {seconds} s: cpu {share:.2} % of a core, \
             peak rss {} MiB, connections the ensemble counted {peak_connections}, pages {}",
            3 * sources,
            peak_rss / 1024,
            pages.lines().count()
        );
        let mut paged: Vec<String> = pages
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .flat_map(|m| m["firing"].as_array().cloned().unwrap_or_default())
            .map(|a| {
                format!("{} {}", a["alertname"].as_str().unwrap_or("?"), a["labels"]["instance"].as_str().unwrap_or(""))
            })
            .collect();
        paged.sort();
        paged.dedup();
        // A thousand polled nodes load the three JVMs on this machine: their
        // latency spikes are real. Only the soak asserts silence.
        eprintln!("  paged: {paged:?}");
        if std::env::var("SC_QUIET").is_ok_and(|v| v == "1") {
            assert!(pages.is_empty(), "a healthy ensemble paged: {paged:#?}\n{}", run.log_tail(30));
        }
    }
}
