//! HA through ZooKeeper (issue 12, points 1–3): the election and the fenced
//! shared state against a real 1-node ensemble. One ensemble, one test
//! function: the checks run in sequence on it (ensembles are slow to start).

use crate::support::ensemble::{Ensemble, Options};
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
    let write = SharedStep { step: Some(&step), silences_put: &silences, silences_deleted: &[] };
    let stats = shared_a.commit(&client_a, &fence_a, &write).await.expect("active commits");
    assert_eq!((stats.transactions, stats.ops), (1, 3 + 2 + 1 + 1));

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
    let delivered = StepWrite {
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
    let step_b = SharedStep { step: Some(&delivered), silences_put: &[], silences_deleted: &ids };
    shared_b.commit(&client_b, &fence_b, &step_b).await.expect("B commits");
    let after = shared_b.load(&client_b).await.unwrap();
    assert_eq!(after.pending.len(), 1);
    assert_eq!(after.pending[0].channel, "chat/ops");
    assert!(after.silences.is_empty());

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
    drop(zk);
}
