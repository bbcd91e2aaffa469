//! HA through ZooKeeper (issue 12, points 1–4): the election, the fenced
//! shared state and writes through a standby against a real 1-node
//! ensemble. One ensemble, one test function: the checks run in sequence on
//! it (ensembles are slow to start).

use crate::support::ensemble::{Ensemble, Options};
use crate::support::http::free_port;
use crate::support::process::wait_until;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use zkalert::ha::shared::{MULTI_BUDGET, SharedStep};
use zkalert::ha::{Election, HaError, ReplicaInfo, Role, SharedState};
use zkalert::model::{Alert, Labels, Severity, Timestamp};
use zkalert::pipeline::{Ack, GroupKey, GroupState, MatchOp, Matcher, Matchers, Message, Reason, Silence};
use zkalert::state::{DeliveryMark, DeliveryOutcome, StepWrite};

const SESSION: Duration = Duration::from_secs(2);
const ROOT: &str = "/zkalert/it";

fn info(name: &str) -> ReplicaInfo {
    ReplicaInfo { name: name.into(), advertise_url: Some(format!("http://{name}.test:9097")) }
}

/// Waits (bounded) until `election`'s role satisfies `want`.
async fn role_within(election: &Election, timeout: Duration, want: impl Fn(&Role) -> bool) -> Role {
    let mut role = election.role();
    let found = tokio::time::timeout(timeout, role.wait_for(|r| want(r))).await.map(|r| r.map(|r| r.clone()));
    match found {
        Ok(Ok(r)) => r,
        _ => panic!("role {:?} after {timeout:?}", *election.role().borrow()),
    }
}

fn at(ms: i64) -> Timestamp {
    Timestamp::from_millis(ms)
}

fn group(n: usize) -> GroupState {
    let labels = Labels::from_pairs([
        ("alertname".to_string(), "ZkNodeDown".to_string()),
        ("cluster".to_string(), format!("prod-{n}")),
        ("instance".to_string(), format!("zk{n}.example.com:2181")),
    ]);
    let fired = Alert::new(labels.clone(), Severity::P1, 1.0, at(1_000));
    GroupState {
        key: GroupKey { route: 1, labels },
        next_flush: at(400_000),
        notified_firing: BTreeSet::from([fired.fingerprint]),
        notified_tier: Some(Severity::P1),
        last_sent: Some(at(100_000)),
        paged_since: Some(at(90_000)),
        escalated: false,
        ack: n.is_multiple_of(10).then(|| Ack {
            by: "alice".into(),
            comment: "on it".into(),
            at: at(95_000),
            until: None,
        }),
        last_reason: Some(Reason::NewAlerts),
        told: n as u64,
    }
}

fn message(id: &str, group: &GroupState) -> Message {
    let alert = Alert::new(group.key.labels.clone(), Severity::P1, 1.0, at(1_000));
    Message {
        id: id.into(),
        at: at(100_000),
        group: group.key.labels.clone(),
        group_id: group.key.id(),
        tier: Severity::P1,
        channels: vec!["pager".into(), "chat/ops".into()],
        new: vec![alert.fingerprint],
        firing: vec![alert],
        resolved: vec![],
        reason: Reason::NewAlerts,
        escalation: false,
        digest: false,
        test: false,
    }
}

fn silence(id: &str) -> Silence {
    Silence {
        id: id.into(),
        matchers: Matchers(vec![Matcher::new("cluster", MatchOp::Re, "prod-.*").unwrap()]),
        starts_at: at(0),
        ends_at: at(3_600_000),
        created_by: "ops".into(),
        comment: "upgrade".into(),
    }
}

/// A TCP proxy on loopback that can cut its link: while cut it drops its
/// connections and refuses new ones (a partition, as seen by the client).
struct Link {
    addr: String,
    cut: tokio::sync::watch::Sender<bool>,
}

impl Link {
    async fn start(upstream: &str) -> Link {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (cut, cut_rx) = tokio::sync::watch::channel(false);
        let upstream = upstream.to_string();
        tokio::spawn(async move {
            while let Ok((mut down, _)) = listener.accept().await {
                if *cut_rx.borrow() {
                    continue;
                }
                let Ok(mut up) = tokio::net::TcpStream::connect(&upstream).await else { continue };
                let mut cut_rx = cut_rx.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut down, &mut up) => {}
                        _ = cut_rx.wait_for(|cut| *cut) => {}
                    }
                });
            }
        });
        Link { addr, cut }
    }

    fn cut(&self, cut: bool) {
        self.cut.send_replace(cut);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn election_failover_fencing_and_shared_state() {
    let options = Options { tick_time_ms: 500, admin_server: false, ..Options::default() };
    let zk = Ensemble::start(1, options);
    let hosts = zk.client_addrs();
    let join = |name: &'static str| {
        let hosts = hosts.clone();
        async move { Election::join(&hosts, ROOT, SESSION, info(name)).await.expect("join") }
    };
    let settle = SESSION + Duration::from_secs(2);

    // Three candidates: the first is active, the others stand by behind it.
    let a_link = Link::start(&hosts[0]).await;
    let a = Election::join(std::slice::from_ref(&a_link.addr), ROOT, SESSION, info("a")).await.expect("join");
    role_within(&a, settle, |r| *r == Role::Active).await;
    let b = join("b").await;
    let c = join("c").await;
    let standby_of_a = |r: &Role| *r == Role::Standby { active: Some(info("a")) };
    role_within(&b, settle, standby_of_a).await;
    role_within(&c, settle, standby_of_a).await;
    let actives = [&a, &b, &c].iter().filter(|e| *e.role().borrow() == Role::Active).count();
    assert_eq!(actives, 1, "exactly one active");
    assert_eq!(b.active().await.unwrap(), Some(info("a")));
    assert!(b.fence().is_none() && c.fence().is_none(), "standbys hold no fence");

    // The active writes one step: groups (one acked), a silence, a new message for two channels.
    let fence_a = a.fence().expect("active has a fence");
    let client_a = a.client().unwrap();
    let mut shared_a = SharedState::open(&client_a, ROOT).await.unwrap();
    let groups: Vec<GroupState> = (0..3).map(group).collect();
    let sent = message("m-1", &groups[0]);
    let step = StepWrite {
        groups: zkalert::pipeline::GroupChanges { upserted: groups.clone(), removed: vec![] },
        outbox: vec![Arc::new(sent.clone())],
        maintenance: Some(vec![("upgrade".into(), at(0), at(7_200_000))]),
        ..Default::default()
    };
    let silences = [silence("s/1")];
    let write = SharedStep { step: Some(&step), silences_put: &silences, ..Default::default() };
    let stats = shared_a.commit(&client_a, &fence_a, &write).await.expect("active commits");
    // 3 groups, 2 deliveries, maintenance, the silence, and group 0's ack alone (for standbys).
    assert_eq!((stats.transactions, stats.ops), (1, 3 + 2 + 1 + 1 + 1));

    // Any replica reads it back whole.
    let client_b = b.client().unwrap();
    let mut shared_b = SharedState::open(&client_b, ROOT).await.unwrap();
    let loaded = shared_b.load(&client_b).await.unwrap();
    let mut got = loaded.groups.clone();
    got.sort_by_key(|g| g.key.id());
    let mut want = groups.clone();
    want.sort_by_key(|g| g.key.id());
    assert_eq!(got, want);
    assert_eq!(loaded.silences, silences);
    assert_eq!(loaded.maintenance, vec![("upgrade".to_string(), at(0), at(7_200_000))]);
    let pending: Vec<(&str, &str)> =
        loaded.pending.iter().map(|e| (e.message.id.as_str(), e.channel.as_str())).collect();
    assert_eq!(pending, [("m-1", "chat/ops"), ("m-1", "pager")]);
    assert_eq!(loaded.pending[0].message, sent);
    // A standby reads the silences and the acks alone, and again only once they changed.
    let (mut silences_seen, mut acks_seen) = (None, None);
    assert_eq!(shared_b.silences_since(&client_b, &mut silences_seen).await.unwrap(), Some(silences.to_vec()));
    let acks = shared_b.acks_since(&client_b, &mut acks_seen).await.unwrap().expect("read at first");
    assert_eq!(acks.into_iter().collect::<Vec<_>>(), [(groups[0].key.id(), groups[0].ack.clone().unwrap())]);
    assert_eq!(shared_b.silences_since(&client_b, &mut silences_seen).await.unwrap(), None, "unchanged");
    assert!(shared_b.acks_since(&client_b, &mut acks_seen).await.unwrap().is_none(), "unchanged");

    // A is cut off from the ensemble (its proxy drops every connection)
    // until its session expires: B, its successor, takes over; C, watching
    // B, is not woken.
    let c_events = c.predecessor_events();
    let expired_at = Instant::now();
    a_link.cut(true);
    role_within(&a, settle, |r| *r == Role::Disconnected).await;
    role_within(&b, settle, |r| *r == Role::Active).await;
    let failover = expired_at.elapsed();
    assert!(failover <= settle, "B active {failover:?} after A's session ended");
    // The server expires a session a session timeout after it last heard
    // from it (a ping up to a third of it before the cut): B cannot have
    // taken over much sooner.
    assert!(failover >= SESSION / 2, "B took over after {failover:?}, before A's session could expire");
    a_link.cut(false);
    role_within(&a, settle, |r| *r == Role::Expired).await;
    role_within(&a, settle, |r| matches!(r, Role::Standby { .. })).await;
    assert!(a.fence().is_none(), "the deposed A holds no fence");
    assert_eq!(c.predecessor_events(), c_events, "C watches B only, not A");
    assert_eq!(*c.role().borrow(), Role::Standby { active: Some(info("a")) }, "C not re-evaluated");
    assert_eq!(c.active().await.unwrap(), Some(info("b")));

    // The deposed A writes under its old fence through its new session: fenced, nothing written.
    let client_a = a.client().unwrap();
    let late = StepWrite {
        groups: zkalert::pipeline::GroupChanges { upserted: vec![group(99)], removed: vec![groups[1].key.id()] },
        ..Default::default()
    };
    let late_write = SharedStep { step: Some(&late), ..Default::default() };
    match shared_a.commit(&client_a, &fence_a, &late_write).await {
        Err(HaError::Fenced { path, .. }) => assert_eq!(path, fence_a.path),
        other => panic!("deposed write: {other:?}"),
    }
    let after = shared_b.load(&client_b).await.unwrap();
    assert_eq!(after.groups.len(), 3, "nothing of the fenced write applied");
    assert!(!after.groups.iter().any(|g| g.key == group(99).key));

    // B, now active, writes: delivered entries leave the outbox, silences go.
    let fence_b = b.fence().expect("B active");
    let reacked = Ack { by: "carol".into(), ..groups[0].ack.clone().unwrap() };
    let delivered = StepWrite {
        groups: zkalert::pipeline::GroupChanges {
            upserted: vec![GroupState { ack: Some(reacked.clone()), ..groups[0].clone() }],
            removed: vec![],
        },
        deliveries: vec![DeliveryMark {
            message_id: "m-1".into(),
            channel: "pager".into(),
            attempts: 1,
            last_attempt_at: at(101_000),
            last_error: None,
            outcome: DeliveryOutcome::Delivered,
        }],
        ..Default::default()
    };
    let ids = ["s/1".to_string()];
    let step_b = SharedStep { step: Some(&delivered), silences_deleted: &ids, ..Default::default() };
    shared_b.commit(&client_b, &fence_b, &step_b).await.expect("B commits");
    let after = shared_b.load(&client_b).await.unwrap();
    assert_eq!(after.pending.len(), 1);
    assert_eq!(after.pending[0].channel, "chat/ops");
    assert!(after.silences.is_empty());
    assert_eq!(shared_b.silences_since(&client_b, &mut silences_seen).await.unwrap(), Some(vec![]), "deleted");
    let acks = shared_b.acks_since(&client_b, &mut acks_seen).await.unwrap().expect("an ack changed in place");
    assert_eq!(acks.into_iter().collect::<Vec<_>>(), [(groups[0].key.id(), reacked)]);

    // B leaves (client closed): C, its successor, takes over, woken once.
    let left_at = Instant::now();
    b.leave().await;
    role_within(&c, settle, |r| *r == Role::Active).await;
    eprintln!("failover after a close: {:?}; after an expiry: {failover:?}", left_at.elapsed());
    assert_eq!(c.predecessor_events(), c_events + 1);
    // A, behind C since it re-joined, was not woken either; it reads the new active on demand.
    assert_eq!(*a.role().borrow(), Role::Standby { active: Some(info("b")) });
    assert_eq!(a.active().await.unwrap(), Some(info("c")));

    // 10,000 groups: a first full write in several fenced transactions, each under the budget.
    let fence_c = c.fence().expect("C active");
    let client_c = c.client().unwrap();
    let mut shared_c = SharedState::open(&client_c, ROOT).await.unwrap();
    shared_c.load(&client_c).await.unwrap();
    let many: Vec<GroupState> = (0..10_000).map(group).collect();
    let full = StepWrite {
        groups: zkalert::pipeline::GroupChanges { upserted: many.clone(), removed: vec![] },
        ..Default::default()
    };
    let started = Instant::now();
    let stats = shared_c.commit(&client_c, &fence_c, &SharedStep { step: Some(&full), ..Default::default() }).await;
    let stats = stats.expect("full write");
    let took = started.elapsed();
    assert!(stats.transactions > 1 && stats.body_bytes / stats.transactions <= MULTI_BUDGET, "{stats:?}");
    eprintln!(
        "10,000 groups: {} bytes of bodies ({} per group), {} transactions, {took:?}",
        stats.body_bytes,
        stats.body_bytes / 10_000,
        stats.transactions
    );
    let started = Instant::now();
    let loaded = shared_c.load(&client_c).await.unwrap();
    eprintln!("load of 10,000 groups: {:?}", started.elapsed());
    assert_eq!(loaded.groups.len(), 10_000);
    // A step of 1,000 changed groups.
    let changed: Vec<GroupState> = many[..1_000].iter().map(|g| GroupState { escalated: true, ..g.clone() }).collect();
    let step = StepWrite {
        groups: zkalert::pipeline::GroupChanges { upserted: changed, removed: vec![] },
        ..Default::default()
    };
    let started = Instant::now();
    let stats = shared_c.commit(&client_c, &fence_c, &SharedStep { step: Some(&step), ..Default::default() }).await;
    let stats = stats.expect("1,000-group step");
    eprintln!("step of 1,000 changed groups: {stats:?} in {:?}", started.elapsed());

    a.leave().await;
    c.leave().await;

    fenced_runner_steps_down_and_sends_nothing(&hosts, settle).await;

    // Two `zkalert run` replicas on the same ensemble (their own root).
    let hosts = hosts.clone();
    tokio::task::spawn_blocking(move || {
        two_replicas_page_once_and_fail_over(&hosts);
        a_silence_and_an_ack_through_a_standby_reach_the_active_one(&hosts);
    })
    .await
    .unwrap();
    drop(zk);
}

/// A runner that is the only replica: active, it sends once the (empty)
/// step is written. Its session expires and it re-joins (active again under
/// a new fence) without having looked: its next write, under the old
/// fence, is refused, so it steps down and sends nothing; following the
/// election it takes over again.
async fn fenced_runner_steps_down_and_sends_nothing(hosts: &[String], settle: Duration) {
    use zkalert::runner::{Replica, Runner};
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.yaml"), "groups: []\n").unwrap();
    let rules = zkalert::rule::load_rules(&[dir.path().join("rules.yaml")], Default::default()).unwrap();
    let pages = dir.path().join("pages.jsonl");
    let notifier =
        zkalert::config::NotifierConfig::new("pages", zkalert::config::NotifierKind::File { path: pages.clone() });
    let channels = zkalert::runner::channels::of(&[notifier], &zkalert::notify::template::Rendering::builtin());
    let routing = zkalert::pipeline::PipelineConfig::defaults_to(&["pages".into()]);
    let mut runner = Runner::new(Arc::new(rules), Duration::from_secs(1), routing, channels);
    let link = Link::start(&hosts[0]).await;
    let config = zkalert::config::HaConfig {
        zookeeper: vec![link.addr.clone()],
        root: "/zkalert/fenced".into(),
        session_timeout: SESSION,
        replica: "only".into(),
        advertise_url: None,
        on_coordination_loss: Default::default(),
        hold_for: Duration::from_secs(60),
    };
    runner.replica = Some(Replica::join(&config).await.expect("join"));
    role_within(election(&runner), settle, |r| *r == Role::Active).await;
    runner.follow_role(zkalert::clock::Clock::now(&zkalert::clock::SystemClock)).await;
    assert!(runner.replica.as_ref().unwrap().is_active() && runner.liveness.is_active());
    fn election(r: &Runner) -> &Election {
        &r.replica.as_ref().unwrap().election
    }
    let lines = || std::fs::read_to_string(&pages).unwrap_or_default().lines().count();
    let page = |id: &str| {
        (Arc::new(Message { channels: vec!["pages".into()], ..message(id, &group(1)) }), "pages".to_string())
    };
    runner.pending.push(page("m-a"));
    runner.commit_shared(at(1_000)).await;
    let t0 = Instant::now();
    while lines() < 1 {
        assert!(t0.elapsed() < settle, "the active runner's page was not delivered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    link.cut(true);
    role_within(election(&runner), settle, |r| *r != Role::Active).await;
    // Cut for longer than the session timeout: the server expires the session.
    tokio::time::sleep(settle).await;
    link.cut(false);
    role_within(election(&runner), settle * 2, |r| *r == Role::Active).await;
    runner.pending.push(page("m-b"));
    runner.commit_shared(at(2_000)).await;
    let replica = runner.replica.as_ref().unwrap();
    assert!(!replica.is_active() && !runner.liveness.is_active(), "stepped down");
    assert!(runner.pending.is_empty(), "its pending deliveries dropped");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(lines(), 1, "nothing sent after the fenced write");
    runner.follow_role(zkalert::clock::Clock::now(&zkalert::clock::SystemClock)).await;
    assert!(runner.replica.as_ref().unwrap().is_active(), "active again under its new fence");
}

/// The API token every replica's `token.txt` holds.
const TOKEN: &str = "ha-test-token-0123456789abcdef0123";

/// A replica's config: scrapes `source_port`, its API on `api_port` (writes
/// with [`TOKEN`]), pages `hook` (repeats every 4 s), `ha:` on `hosts` as
/// `name` under `root`, with `ha_extra` lines (indented) added to `ha:`.
fn replica_config(
    name: &str,
    source_port: u16,
    api_port: u16,
    hook: &str,
    hosts: &[String],
    (root, ha_extra): (&str, &str),
) -> String {
    let hosts = hosts.iter().map(|h| format!("'{h}'")).collect::<Vec<_>>().join(", ");
    let mut y = crate::support::zkalert::svc_config(
        source_port,
        &format!(
            "  - {{name: hook, type: webhook, url: '{hook}'}}
server: {{listen: '127.0.0.1:{api_port}', token_file: token.txt}}
ha:
  zookeeper: [{hosts}]
  root: {root}
  session_timeout: 2s
  replica: {name}
  advertise_url: 'http://127.0.0.1:{api_port}'
{ha_extra}routing:
  tiers:
"
        ),
    );
    y.push_str(&crate::support::zkalert::tiers_to("hook", "4s"));
    y
}

/// `GET /api/v1/status`'s `replica`, or null.
fn replica_status(api_port: u16) -> serde_json::Value {
    crate::support::http::get(api_port, "/api/v1/status", Duration::from_secs(2))
        .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
        .map_or(serde_json::Value::Null, |s| s["replica"].clone())
}

/// Replica a is active, b stands by; an alert fires: only a pages, and its
/// repeats keep distinct keys. a is SIGKILLed and a second node goes down
/// at once: b takes over within the session timeout + 2 s and pages it;
/// the first alert is not paged again as new; no key arrives twice.
fn two_replicas_page_once_and_fail_over(hosts: &[String]) {
    use crate::support::http::{Answer, MetricsServer, Receiver};
    use crate::support::zkalert::{RunConfig, ZkalertRun, svc_down_rules};
    let metrics = MetricsServer::start();
    metrics.set(&[false, false]);
    let hook = Receiver::start(vec![], Answer::Status(200));
    let rules = svc_down_rules("");
    let (api_a, api_b) = (free_port(), free_port());
    let start = |name: &str, api: u16| {
        let yaml = replica_config(name, metrics.port, api, &hook.url(), hosts, ("/zkalert/run", ""));
        ZkalertRun::start_yaml(RunConfig::new(vec![], &[]), &yaml, &[("rules.yaml", &rules), ("token.txt", TOKEN)])
    };
    let mut a = start("a", api_a);
    let logs = |a: &ZkalertRun, b: Option<&ZkalertRun>| {
        format!("a:\n{}\nb:\n{}", a.log_tail(30), b.map(|b| b.log_tail(30)).unwrap_or_default())
    };
    wait_until("a active", Duration::from_secs(20), || replica_status(api_a)["role"] == "active", || logs(&a, None));
    let mut b = start("b", api_b);
    wait_until(
        "b standing by behind a",
        Duration::from_secs(20),
        || {
            let s = replica_status(api_b);
            s["role"] == "standby" && s["active"]["name"] == "a"
        },
        || logs(&a, Some(&b)),
    );
    let status = replica_status(api_b);
    assert_eq!(status["active"]["advertise_url"], format!("http://127.0.0.1:{api_a}"), "{status}");
    assert_eq!(status["session"], "SyncConnected", "{status}");
    let metrics_b = crate::support::http::get(api_b, "/metrics", Duration::from_secs(2)).unwrap().1;
    assert!(metrics_b.lines().any(|l| l == "zkalert_replica_role{role=\"standby\"} 1"), "{metrics_b}");

    // n0 goes down: one page, then repeats every 4 s, each with its own key, from a only.
    metrics.set(&[true, false]);
    let keys = |hook: &Receiver| hook.received().iter().map(|r| r.idempotency_key.clone()).collect::<Vec<_>>();
    wait_until("the first page", Duration::from_secs(15), || !hook.received().is_empty(), || logs(&a, Some(&b)));
    wait_until("a repeat", Duration::from_secs(10), || hook.received().len() >= 2, || logs(&a, Some(&b)));
    a.assert_running();
    b.assert_running();
    let b_log = std::fs::read_to_string(&b.log).unwrap_or_default();
    assert!(!b_log.contains("notifying"), "the standby sends nothing:\n{b_log}");
    let first = hook.received();
    assert_eq!(first[0].body["firing"][0]["new"], true, "{:#?}", first[0].body);
    assert!(first[1..].iter().all(|r| r.body["firing"][0]["new"] == false), "repeats: {first:#?}");

    // a's next repeat hangs at the receiver: a is killed while sending it,
    // so it is still pending in the shared outbox.
    hook.set_default(Answer::Hang(Duration::from_secs(20)));
    let sent = hook.received().len();
    wait_until("a repeat that hangs", Duration::from_secs(10), || hook.received().len() > sent, || logs(&a, Some(&b)));
    hook.set_default(Answer::Status(200));
    let in_flight = hook.received()[sent].idempotency_key.clone();

    // a dies; n1 goes down at the same moment: b sends a's pending repeat
    // with its key, and pages n1, each within the session timeout + 2 s.
    crate::support::process::signal(a.pid(), "KILL");
    let killed = Instant::now();
    metrics.set(&[true, true]);
    let resent = |hook: &Receiver| {
        hook.received().into_iter().find(|r| r.idempotency_key == in_flight && r.answered == Some(200))
    };
    wait_until(
        "b resends a's pending repeat",
        SESSION + Duration::from_secs(6),
        || resent(&hook).is_some(),
        || logs(&a, Some(&b)),
    );
    let took = resent(&hook).unwrap().at.duration_since(killed);
    eprintln!("kill -> b resends the pending delivery: {took:?}");
    assert!(took <= SESSION + Duration::from_secs(2), "b resent {took:?} after the kill");
    let n1_paged = |hook: &Receiver| {
        hook.received().into_iter().find(|r| {
            r.body["firing"]
                .as_array()
                .is_some_and(|f| f.iter().any(|x| x.to_string().contains("\"n1\"") && x["new"] == true))
        })
    };
    wait_until("b pages n1", SESSION + Duration::from_secs(6), || n1_paged(&hook).is_some(), || logs(&a, Some(&b)));
    let took = n1_paged(&hook).unwrap().at.duration_since(killed);
    eprintln!("kill -> b's first page: {took:?}");
    assert!(took <= SESSION + Duration::from_secs(2), "b paged {took:?} after the kill");
    assert_eq!(replica_status(api_b)["role"], "active");
    // b continues a's log: n0 is not new again, repeats keep coming.
    let before = hook.received().len();
    wait_until("a repeat from b", Duration::from_secs(10), || hook.received().len() > before, || logs(&a, Some(&b)));
    let all = hook.received();
    let n0_new = all.iter().filter(|r| {
        r.body["firing"]
            .as_array()
            .is_some_and(|f| f.iter().any(|x| x.to_string().contains("\"n0\"") && x["new"] == true))
    });
    assert_eq!(n0_new.count(), 1, "n0 paged as new once, by a only: {all:#?}");
    // Every answer was 200: a key arrives twice only as b's resend of a
    // delivery a made but had not yet recorded as done when it died.
    let keys = keys(&hook);
    for (i, key) in keys.iter().enumerate() {
        let again = keys[..i].contains(key);
        assert!(
            !again || all[i].at >= killed && all[..i].iter().all(|r| &r.idempotency_key != key || r.at < killed),
            "key {key} arrived twice, not as a resend after the kill: {all:#?}"
        );
    }
    let repeated = keys.iter().filter(|k| keys.iter().filter(|x| x == k).count() > 1).count();
    assert!(repeated <= 2, "at most the one delivery in flight at the kill is resent: {all:#?}");
    b.assert_running();
}

/// Sets the ACL of `<root>/state/beat` to `permission` for anyone.
fn set_beat_acl(hosts: &[String], root: &str, permission: zookeeper_client::Permission) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let client = zookeeper_client::Client::connect(&hosts.join(",")).await.expect("connect");
        let acl = [zookeeper_client::Acl::new(permission, zookeeper_client::AuthId::anyone())];
        client.set_acl(&format!("{root}/state/beat"), &acl, None).await.expect("set the beat's ACL");
    });
}

/// Whether `r` tells `node` firing as new.
fn pages_new(r: &crate::support::http::Received, node: &str) -> bool {
    let new = |x: &serde_json::Value| x["labels"]["node"] == node && x["new"] == true;
    r.body["firing"].as_array().is_some_and(|f| f.iter().any(new))
}

/// Whether `r` tells `node` resolved.
fn tells_resolved(r: &crate::support::http::Received, node: &str) -> bool {
    r.body["resolved"].as_array().is_some_and(|f| f.iter().any(|x| x["labels"]["node"] == node))
}

/// Whether `r` tells the named alert firing.
fn tells_firing(r: &crate::support::http::Received, alertname: &str) -> bool {
    r.body["firing"].as_array().is_some_and(|f| f.iter().any(|x| x["alertname"] == alertname))
}

/// Which replica sent `r` (each posts to `/hook/<name>`).
fn sender(r: &crate::support::http::Received) -> String {
    r.head.split_whitespace().nth(1).and_then(|p| p.strip_prefix("/hook/")).unwrap_or("?").to_string()
}

/// Three replicas (a, b, c) of one deployment, each with its API port and
/// its own webhook path, started in that order.
struct Replicas {
    runs: Vec<(String, crate::support::zkalert::ZkalertRun, u16)>,
}

impl Replicas {
    fn start(source: u16, hook: &crate::support::http::Receiver, hosts: &[String], ha: (&str, &str)) -> Replicas {
        use crate::support::zkalert::{RunConfig, ZkalertRun, svc_down_rules};
        let rules = svc_down_rules("");
        let mut runs = Vec::new();
        for name in ["a", "b", "c"] {
            let api = free_port();
            let yaml = replica_config(name, source, api, &format!("{}/{name}", hook.url()), hosts, ha);
            let run = ZkalertRun::start_yaml(
                RunConfig::new(vec![], &[]),
                &yaml,
                &[("rules.yaml", &rules), ("token.txt", TOKEN)],
            );
            runs.push((name.to_string(), run, api));
            let r = Replicas { runs };
            wait_until("the replica joined", Duration::from_secs(20), || r.settled(), || r.logs());
            runs = r.runs;
        }
        Replicas { runs }
    }

    fn logs(&self) -> String {
        self.runs.iter().map(|(n, run, _)| format!("{n}:\n{}\n", run.log_tail(25))).collect()
    }

    fn statuses(&self) -> Vec<serde_json::Value> {
        self.runs.iter().map(|(_, _, api)| replica_status(*api)).collect()
    }

    /// One replica active, the others standing by behind it (by name).
    fn settled(&self) -> bool {
        let s = self.statuses();
        let active: Vec<&serde_json::Value> = s.iter().filter(|s| s["role"] == "active").collect();
        active.len() == 1
            && s.iter()
                .all(|x| x["role"] == "active" || (x["role"] == "standby" && x["active"]["name"] == active[0]["name"]))
    }

    fn active(&self) -> usize {
        wait_until("one active replica", Duration::from_secs(20), || self.settled(), || self.logs());
        self.statuses().iter().position(|s| s["role"] == "active").unwrap()
    }

    fn name(&self, i: usize) -> &str {
        &self.runs[i].0
    }
}

/// A key that arrived more than once did so only across a kill: the
/// replica that died had sent it without recording it as done.
fn assert_resent_only_across_kills(all: &[crate::support::http::Received], kills: &[Instant]) {
    for (i, r) in all.iter().enumerate() {
        let Some(earlier) = all[..i].iter().rfind(|x| x.idempotency_key == r.idempotency_key) else { continue };
        let across = kills.iter().any(|k| earlier.at < *k + Duration::from_millis(500) && r.at >= *k);
        assert!(across, "key {} arrived twice, not across a kill: {:#?}", r.idempotency_key, (earlier, r));
    }
}

/// Issue 12's whole-system checks: a real 3-node coordination ensemble,
/// three real replicas, a source whose alerts the test sets, a receiver
/// recording keys, times and which replica sent (`/hook/<replica>`).
/// 1. The ensemble stopped (`page`): every replica pages on its own, the
///    same key for the same message, and raises ZkalertCoordinationLost;
///    the ensemble back: one active again.
/// 2. The active replica SIGSTOPped for twice the session timeout, then
///    SIGCONT: it sends nothing after resuming; the new active pages.
/// 3. Ten SIGKILLs of the active replica while alerts fire and resolve:
///    every message arrives, keys repeat only across a kill, and the next
///    due page comes within the session timeout + 2 s of each kill
///    (printed: median and max, for BENCHMARKS.md).
/// 4. `hold`: the ensemble stopped, the active replica keeps paging alone
///    for `hold_for`, then the others page too, with the same keys.
#[test]
fn three_replicas_on_a_three_node_ensemble() {
    use crate::support::http::{Answer, MetricsServer, Receiver};
    use crate::support::process::signal;
    let options = Options { tick_time_ms: 500, admin_server: false, ..Options::default() };
    let mut zk = Ensemble::start(3, options);
    let hosts = zk.client_addrs();
    let source = MetricsServer::start();
    let nodes = 16;
    let mut down = vec![false; nodes];
    source.set(&down);
    let hook = Receiver::start(vec![], Answer::Status(200));
    let mut replicas = Replicas::start(source.port, &hook, &hosts, ("/zkalert/three", ""));
    let received_after = |t: Instant| hook.received().into_iter().filter(|r| r.at >= t).collect::<Vec<_>>();

    // 1. The coordination ensemble stops: each replica pages on its own after
    // a session timeout, with the same keys, and says so.
    for id in zk.ids() {
        zk.kill(id);
    }
    let stopped = Instant::now();
    down[0] = true;
    source.set(&down);
    let by_all = |node: &str| {
        let pages: Vec<_> = received_after(stopped).into_iter().filter(|r| pages_new(r, node)).collect();
        let senders: BTreeSet<String> = pages.iter().map(sender).collect();
        (senders.len() == 3).then_some(pages)
    };
    wait_until("n0 paged by every replica", Duration::from_secs(15), || by_all("n0").is_some(), || replicas.logs());
    let pages = by_all("n0").unwrap();
    let keys: BTreeSet<&str> = pages.iter().map(|r| r.idempotency_key.as_str()).collect();
    assert_eq!(keys.len(), 1, "one key for one message: {pages:#?}");
    let lost = |hook: &Receiver| {
        let pages: Vec<_> =
            received_after(stopped).into_iter().filter(|r| tells_firing(r, "ZkalertCoordinationLost")).collect();
        let senders: BTreeSet<String> = pages.iter().map(sender).collect();
        let keys: BTreeSet<String> = pages.iter().map(|r| r.idempotency_key.clone()).collect();
        (senders, keys, hook.received().len())
    };
    wait_until(
        "ZkalertCoordinationLost from every replica",
        Duration::from_secs(10),
        || lost(&hook).0.len() == 3,
        || replicas.logs(),
    );
    assert_eq!(lost(&hook).1.len(), 1, "ZkalertCoordinationLost: one key from the three replicas");

    for s in replicas.statuses() {
        assert_eq!(s["sending"], "alone", "{s}");
        assert!(s["cut_off_since"].is_string(), "{s}");
    }
    let revived = zk.revive_all();
    eprintln!("coordination ensemble back after {revived:?}");
    wait_until("one active again", Duration::from_secs(30), || replicas.settled(), || replicas.logs());
    let s = replicas.statuses();
    assert!(s.iter().all(|s| s["sending"] == "shared" || s["sending"] == "standby"), "{s:?}");

    // 2. SIGSTOP the active replica for twice the session timeout: another
    // takes over and pages n1; after SIGCONT the paused one sends nothing.
    let paused = replicas.active();
    let paused_name = replicas.name(paused).to_string();
    signal(replicas.runs[paused].1.pid(), "STOP");
    down[1] = true;
    source.set(&down);
    std::thread::sleep(SESSION * 2);
    signal(replicas.runs[paused].1.pid(), "CONT");
    let resumed = Instant::now();
    let n1 = |hook: &Receiver| hook.received().into_iter().find(|r| pages_new(r, "n1"));
    wait_until("n1 paged", Duration::from_secs(10), || n1(&hook).is_some(), || replicas.logs());
    assert_ne!(sender(&n1(&hook).unwrap()), paused_name, "the paused replica paged n1");
    wait_until("settled after the pause", Duration::from_secs(20), || replicas.settled(), || replicas.logs());
    std::thread::sleep(Duration::from_secs(2));
    let after: Vec<_> = received_after(resumed).into_iter().filter(|r| sender(r) == paused_name).collect();
    assert!(after.is_empty(), "{paused_name} sent after SIGCONT: {after:#?}");
    for (_, run, _) in &mut replicas.runs {
        run.assert_running();
    }

    // 3. Ten SIGKILLs: kill the active, then a node goes down (and, from
    // the fourth, one comes back); the next active pages it.
    let mut kills = Vec::new();
    let mut took = Vec::new();
    let first_kill_at = hook.received().len();
    for i in 0..10 {
        let victim = replicas.active();
        let node = 2 + i;
        signal(replicas.runs[victim].1.pid(), "KILL");
        let killed = Instant::now();
        kills.push(killed);
        down[node] = true;
        if i >= 3 {
            down[node - 3] = false;
        }
        source.set(&down);
        let name = format!("n{node}");
        let paged = |hook: &Receiver| hook.received().into_iter().find(|r| pages_new(r, &name));
        wait_until(
            &format!("{name} paged"),
            SESSION + Duration::from_secs(8),
            || paged(&hook).is_some(),
            || replicas.logs(),
        );
        took.push(paged(&hook).unwrap().at.duration_since(killed));
        replicas.runs[victim].1.kill9_and_restart();
        wait_until(
            "the killed replica back as a standby",
            Duration::from_secs(20),
            || replicas.settled(),
            || replicas.logs(),
        );
    }
    let mut sorted = took.clone();
    sorted.sort();
    eprintln!(
        "failover (kill -> next due page) over {} kills: median {:?}, max {:?}, all {took:?}",
        sorted.len(),
        sorted[sorted.len() / 2],
        sorted.last().unwrap()
    );
    let over: Vec<_> = took.iter().filter(|t| **t > SESSION + Duration::from_secs(2)).collect();
    assert!(over.is_empty(), "pages later than the session timeout + 2 s after a kill: {took:?}");
    // Every message arrived: each node's page, and each resolution.
    std::thread::sleep(Duration::from_secs(3));
    let all = hook.received();
    for i in 0..10 {
        let node = format!("n{}", 2 + i);
        assert!(all.iter().any(|r| pages_new(r, &node)), "{node} never paged");
        if i < 7 {
            assert!(all[first_kill_at..].iter().any(|r| tells_resolved(r, &node)), "{node}'s resolution never told");
        }
    }
    assert_resent_only_across_kills(&all[first_kill_at..], &kills);

    // 3b. The active replica cannot write the shared state (its beat made
    // read-only in the coordination ensemble): it holds its pages, its
    // session lives, so nobody takes over. After two session timeouts
    // (and two steps) without a beat the standbys page on their own, with
    // ZkalertNoActiveReplica; writable again, they stand by.
    let stuck = replicas.name(replicas.active()).to_string();
    let standbys: BTreeSet<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).filter(|n| *n != stuck).collect();
    set_beat_acl(&hosts, "/zkalert/three", zookeeper_client::Permission::READ | zookeeper_client::Permission::ADMIN);
    let blocked = Instant::now();
    down[13] = true;
    source.set(&down);
    let from_standbys = |what: &dyn Fn(&crate::support::http::Received) -> bool| {
        received_after(blocked).iter().filter(|r| what(r)).map(sender).collect::<BTreeSet<_>>() == standbys
    };
    wait_until(
        "ZkalertNoActiveReplica and n13 from the standbys",
        SESSION * 2 + Duration::from_secs(10),
        || from_standbys(&|r| tells_firing(r, "ZkalertNoActiveReplica")) && from_standbys(&|r| pages_new(r, "n13")),
        || replicas.logs(),
    );
    let late = received_after(blocked).into_iter().find(|r| pages_new(r, "n13")).unwrap().at.duration_since(blocked);
    // Counted from the last beat change a standby saw, up to a step before the ACL.
    let wait = zkalert::runner::no_active_after(SESSION) - Duration::from_secs(1);
    assert!(late >= wait, "the standbys paged {late:?} after the beat stopped, before {wait:?}");
    let stuck_sent: Vec<_> = received_after(blocked).into_iter().filter(|r| sender(r) == stuck).collect();
    assert!(stuck_sent.is_empty(), "{stuck} could not write the shared state, yet sent: {stuck_sent:#?}");
    set_beat_acl(&hosts, "/zkalert/three", zookeeper_client::Permission::ALL);
    wait_until(
        "the standbys stand by again",
        Duration::from_secs(15),
        || {
            replicas.settled()
                && replicas.statuses().iter().all(|s| s["sending"] == "shared" || s["sending"] == "standby")
        },
        || replicas.logs(),
    );
    drop(replicas);

    // 4. hold: fresh replicas under another root, hold_for 6 s.
    let hold_for = Duration::from_secs(6);
    let replicas = Replicas::start(
        source.port,
        &hook,
        &hosts,
        ("/zkalert/hold", "  on_coordination_loss: hold\n  hold_for: 6s\n"),
    );
    let active = replicas.name(replicas.active()).to_string();
    // From the first kill on, a replica may be cut off.
    let stopped = Instant::now();
    for id in zk.ids() {
        zk.kill(id);
    }
    down[15] = true;
    source.set(&down);
    let n15 = |hook: &Receiver| {
        hook.received().into_iter().filter(|r| r.at >= stopped && pages_new(r, "n15")).collect::<Vec<_>>()
    };
    wait_until("n15 paged", Duration::from_secs(10), || !n15(&hook).is_empty(), || replicas.logs());
    let first = n15(&hook);
    assert!(first[0].at < stopped + hold_for, "the active replica pages at once: {first:#?}");
    assert!(
        first.iter().filter(|r| r.at < stopped + hold_for).all(|r| sender(r) == active),
        "only {active} within hold_for: {first:#?}"
    );
    wait_until(
        "every replica pages after hold_for",
        hold_for + Duration::from_secs(8),
        || n15(&hook).iter().map(sender).collect::<BTreeSet<_>>().len() == 3,
        || replicas.logs(),
    );
    let all = n15(&hook);
    let keys: BTreeSet<&str> = all.iter().map(|r| r.idempotency_key.as_str()).collect();
    assert_eq!(keys.len(), 1, "one key for n15's page: {all:#?}");
    assert!(all.iter().filter(|r| sender(r) != active).all(|r| r.at >= stopped + hold_for), "{all:#?}");
}

/// Issue 12: "a silence added through a standby mutes the alert on the
/// active one". Replica a is active, b stands by (their own root); n0 is
/// down and paged. A silence for n1 POSTed to b is answered with its id and
/// listed by a and by b within seconds; then n1 and n2 go down: a pages n2,
/// never n1. An ack of n0 through b shows on a's group and on b's alert;
/// expiring the silence through b ends it on a. A queued write that does
/// not decode is deleted by a.
fn a_silence_and_an_ack_through_a_standby_reach_the_active_one(hosts: &[String]) {
    use crate::support::http::{Answer, MetricsServer, Receiver, get, send_json};
    use crate::support::zkalert::{RunConfig, ZkalertRun, svc_down_rules};
    const ROOT: &str = "/zkalert/writes";
    let metrics = MetricsServer::start();
    metrics.set(&[false, false, false]);
    let hook = Receiver::start(vec![], Answer::Status(200));
    let rules = svc_down_rules("");
    let (api_a, api_b) = (free_port(), free_port());
    let start = |name: &str, api: u16| {
        // A root of its own: the replicas of the test before leave theirs behind.
        let yaml = replica_config(name, metrics.port, api, &hook.url(), hosts, (ROOT, ""));
        ZkalertRun::start_yaml(RunConfig::new(vec![], &[]), &yaml, &[("rules.yaml", &rules), ("token.txt", TOKEN)])
    };
    let mut a = start("a", api_a);
    let logs = |b: Option<&ZkalertRun>| {
        format!("a:\n{}\nb:\n{}", a.log_tail(30), b.map(|b| b.log_tail(30)).unwrap_or_default())
    };
    wait_until("a active", Duration::from_secs(20), || replica_status(api_a)["role"] == "active", || logs(None));
    let mut b = start("b", api_b);
    let logs = || logs(Some(&b));
    wait_until("b standing by", Duration::from_secs(20), || replica_status(api_b)["role"] == "standby", logs);

    // A hostile request znode (not a write): the active one deletes it.
    let zk = tokio::runtime::Handle::current();
    let client = zk.block_on(zookeeper_client::Client::connect(&hosts[0])).expect("connect");
    let options = zookeeper_client::CreateMode::PersistentSequential.with_acls(zookeeper_client::Acls::anyone_all());
    zk.block_on(client.create(
        &format!("{ROOT}/state/requests/r-"),
        b"{\"from\":\"x\",\"write\":{\"reboot\":{}}}",
        &options,
    ))
    .expect("queue a bad request");

    // Whether an item of the list `key` that `GET path` answers is `wanted`.
    let any = |port: u16, path: &str, key: &str, wanted: &dyn Fn(&serde_json::Value) -> bool| {
        let reply = get(port, path, Duration::from_secs(2)).and_then(|(_, body)| serde_json::from_str(&body).ok());
        reply.unwrap_or(serde_json::Value::Null)[key].as_array().is_some_and(|l| l.iter().any(wanted))
    };
    let paged = |node: &str| {
        let node = format!("\"{node}\"");
        move |hook: &Receiver| {
            hook.received()
                .into_iter()
                .any(|r| r.body["firing"].as_array().is_some_and(|f| f.iter().any(|x| x.to_string().contains(&node))))
        }
    };
    metrics.set(&[true, false, false]);
    wait_until("a pages n0", Duration::from_secs(15), || paged("n0")(&hook), logs);

    // Through the standby: answered once ZooKeeper has it.
    let silence = serde_json::json!({
        "matchers": "{node=\"n1\"}", "duration": "1h", "created_by": "ops", "comment": "n1 is being replaced"
    });
    let posted = Instant::now();
    let (status, body) =
        send_json(api_b, "POST", "/api/v1/silences", TOKEN, &silence, Duration::from_secs(12)).expect("b answers");
    assert_eq!(status, 200, "{body}\n{}", logs());
    let answered = posted.elapsed();
    let id = serde_json::from_str::<serde_json::Value>(&body).unwrap()["id"].as_str().expect("an id").to_string();
    let lists = |port: u16| {
        let id = id.clone();
        move || any(port, "/api/v1/silences", "silences", &|s| s["id"] == id.as_str())
    };
    wait_until("a lists the silence sent to b", Duration::from_secs(5), lists(api_a), logs);
    let on_a = posted.elapsed();
    wait_until("b lists it too", Duration::from_secs(5), lists(api_b), logs);
    eprintln!(
        "silence POSTed to the standby: answered in {answered:?}, listed by the active after {on_a:?}, by the standby after {:?}",
        posted.elapsed()
    );

    // n1 (silenced) and n2 go down: a pages n2, never n1.
    metrics.set(&[true, true, true]);
    wait_until("a pages n2", Duration::from_secs(15), || paged("n2")(&hook), logs);
    let n1_muted = |port: u16| {
        move || any(port, "/api/v1/alerts", "alerts", &|x| x.to_string().contains("\"n1\"") && x["muted"] == true)
    };
    wait_until("a shows n1 muted", Duration::from_secs(5), n1_muted(api_a), logs);
    std::thread::sleep(Duration::from_secs(3));
    assert!(!paged("n1")(&hook), "n1 is silenced, yet paged: {:#?}\n{}", hook.received(), logs());
    assert!(n1_muted(api_b)(), "b shows n1 muted as a does\n{}", logs());

    // An ack through the standby: a's group shows it, and b's alert.
    let ack = serde_json::json!({"matchers": "{node=\"n0\"}", "by": "bob", "comment": "on it"});
    let posted = Instant::now();
    let (status, body) =
        send_json(api_b, "POST", "/api/v1/acks", TOKEN, &ack, Duration::from_secs(12)).expect("b answers");
    assert_eq!(status, 200, "{body}\n{}", logs());
    let acked: Vec<String> = serde_json::from_str::<serde_json::Value>(&body).unwrap()["acked"]
        .as_array()
        .map(|ids| ids.iter().filter_map(|i| i.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    assert!(!acked.is_empty(), "{body}");
    wait_until(
        "a's group acked by bob",
        Duration::from_secs(5),
        || any(api_a, "/api/v1/groups", "groups", &|g| g["id"] == acked[0].as_str() && g["ack"]["by"] == "bob"),
        logs,
    );
    let on_a = posted.elapsed();
    wait_until(
        "b shows n0 acked by bob",
        Duration::from_secs(5),
        || any(api_b, "/api/v1/alerts", "alerts", &|x| x.to_string().contains("\"n0\"") && x["acked"]["by"] == "bob"),
        logs,
    );
    eprintln!(
        "ack POSTed to the standby: shown by the active after {on_a:?}, by the standby after {:?}",
        posted.elapsed()
    );

    // Expiring it through the standby ends it on the active one.
    let (status, body) = send_json(
        api_b,
        "DELETE",
        &format!("/api/v1/silences/{id}"),
        TOKEN,
        &serde_json::Value::Null,
        Duration::from_secs(12),
    )
    .expect("b answers");
    assert_eq!(status, 200, "{body}\n{}", logs());
    let expired = |s: &serde_json::Value| s["id"] == id.as_str() && s["state"] == "expired";
    wait_until(
        "a lists the silence expired",
        Duration::from_secs(5),
        || any(api_a, "/api/v1/silences", "silences", &expired),
        logs,
    );
    wait_until("b too", Duration::from_secs(5), || any(api_b, "/api/v1/silences", "silences", &expired), logs);

    let queued = zk.block_on(client.list_children(&format!("{ROOT}/state/requests"))).unwrap();
    assert!(queued.is_empty(), "every queued write applied or dropped: {queued:?}");
    let a_log = std::fs::read_to_string(&a.log).unwrap_or_default();
    assert!(a_log.contains("a queued write does not decode: deleted"), "{a_log}");
    a.assert_running();
    b.assert_running();
}
