//! Tests of the state file: round trips through a reopened file, deliveries, migrations, checkpoints, size.

use super::schema::PAGE_SIZE;
use super::*;
use crate::model::{AlertState, Labels, STALE_NAN, is_stale};
use crate::pipeline::{GroupKey, MatchOp, Matcher, Matchers, Reason};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

fn at(s: i64) -> Timestamp {
    Timestamp::from_millis(s * 1000)
}

fn alert(name: &str, instance: &str, state: AlertState, value: f64) -> Alert {
    let labels =
        Labels::from_pairs([("alertname", name), ("cluster", "prod"), ("instance", instance), ("severity", "P1")]);
    let mut alert = Alert::new(labels, Severity::P1, value, at(10));
    alert.annotations = crate::model::Annotations::from_pairs([
        ("summary", format!("{instance} is down")),
        ("a_second", "é \"q\"\n".into()),
    ]);
    alert.state = state;
    alert.fired_at = (state != AlertState::Pending).then(|| at(70));
    alert.resolved_at = (state == AlertState::Resolved).then(|| at(300));
    alert.runbook = Some("runbooks/node-down.md".into());
    alert
}

/// Alert equality where a NaN value equals a NaN value with the same bits.
fn same_alert(a: &Alert, b: &Alert) -> bool {
    let without_value = |a: &Alert| {
        let mut a = a.clone();
        a.value = 0.0;
        a
    };
    a.value.to_bits() == b.value.to_bits() && without_value(a) == without_value(b)
}

fn group(route: u16, cluster: &str, ack: Option<Ack>, notified: &[&Alert]) -> GroupState {
    GroupState {
        key: GroupKey { route, labels: Labels::from_pairs([("alertname", "ZkNodeDown"), ("cluster", cluster)]) },
        next_flush: at(400),
        notified_firing: notified.iter().map(|a| a.fingerprint).collect::<BTreeSet<_>>(),
        notified_tier: Some(Severity::P1),
        last_sent: Some(at(100)),
        paged_since: Some(at(90)),
        escalated: ack.is_none(),
        ack,
        last_reason: Some(Reason::Repeat),
        told: 7,
    }
}

fn message(id: &str, when: i64, firing: Vec<Alert>, resolved: Vec<Alert>) -> Message {
    Message {
        id: id.into(),
        at: at(when),
        group: Labels::from_pairs([("cluster", "prod")]),
        group_id: "00000000000000aa".into(),
        tier: Severity::P1,
        channels: vec!["pager".into(), "slack".into()],
        new: firing.iter().map(|a| a.fingerprint).collect(),
        firing,
        resolved,
        reason: Reason::NewAlerts,
        escalation: false,
        digest: false,
        test: false,
    }
}

/// A message about zk1:2181 being down, sent at `when` seconds.
fn node_down_message(id: &str, when: i64) -> Message {
    message(id, when, vec![alert("ZkNodeDown", "zk1:2181", AlertState::Firing, 1.0)], vec![])
}

/// A step that writes these messages to the outbox, and nothing else.
fn outbox(messages: &[&Message]) -> StepWrite {
    StepWrite { outbox: messages.iter().map(|m| Arc::new((*m).clone())).collect(), ..Default::default() }
}

fn silence(id: &str) -> Silence {
    Silence {
        id: id.into(),
        matchers: Matchers(vec![
            Matcher::new("cluster", MatchOp::Eq, "prod").unwrap(),
            Matcher::new("instance", MatchOp::Re, "zk[0-9]+:2181").unwrap(),
            Matcher::new("note", MatchOp::Ne, "tab\there \u{1b}").unwrap(),
        ]),
        starts_at: at(0),
        ends_at: at(3600),
        created_by: "ops".into(),
        comment: "upgrade".into(),
    }
}

fn ack(by: &str, when: i64) -> Ack {
    Ack { by: by.into(), comment: "looking".into(), at: at(when), until: Some(at(when + 600)) }
}

fn temp() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub").join("state.db");
    (dir, path)
}

#[test]
fn round_trip_through_a_reopened_file() {
    let (_dir, path) = temp();
    let nan = alert("ZkNodeDown", "zk1:2181", AlertState::Firing, f64::NAN);
    let resolved = alert("ZkNodeDown", "zk2:2181", AlertState::Resolved, -0.0);
    let mut pending = alert("ZkLatencyHigh", "zk3:2181", AlertState::Pending, 1.0 / 3.0);
    pending.keep_firing_since = Some(at(50));
    pending.runbook = None;
    let inf = alert("ZkLatencyHigh", "zk4:2181", AlertState::Firing, f64::INFINITY);
    let stale = alert("ZkLatencyHigh", "zk5:2181", AlertState::Firing, STALE_NAN);
    let alerts: Vec<(String, Alert)> =
        [("node-down", &nan), ("node-down", &resolved), ("latency", &pending), ("latency", &inf), ("latency", &stale)]
            .into_iter()
            .map(|(r, a)| (r.to_string(), a.clone()))
            .collect();
    let acked = group(0, "prod", Some(ack("alice", 200)), &[&nan, &inf]);
    let plain = group(1, "dev", None, &[]);
    let m1 = message("m1", 100, vec![inf.clone()], vec![resolved.clone()]);
    let mut m2 = message("m2", 200, vec![inf.clone()], vec![]);
    m2.escalation = true;
    m2.tier = Severity::P0;
    let windows = vec![("upgrade".to_string(), at(0), at(7200)), ("upgrade".to_string(), at(10), at(20))];
    {
        let mut db = StateDb::open(&path).unwrap();
        db.commit(&StepWrite {
            alerts_upsert: alerts.iter().map(|(rule, a)| (rule.clone().into(), Arc::new(a.clone()))).collect(),
            groups: GroupChanges { upserted: vec![acked.clone(), plain.clone()], removed: vec![] },
            outbox: vec![Arc::new(m1.clone()), Arc::new(m2.clone())],
            maintenance: Some(windows.clone()),
            ..Default::default()
        })
        .unwrap();
        db.put_silence(&silence("s1")).unwrap();
        db.put_silence(&silence("s2")).unwrap();
    }
    let db = StateDb::open(&path).unwrap();
    assert_eq!(db.path(), path);
    let mut p = db.load().unwrap();

    // Alerts and groups come back in no particular order.
    let by_key = |a: &(String, Alert), b: &(String, Alert)| (&a.0, a.1.fingerprint).cmp(&(&b.0, b.1.fingerprint));
    p.alerts.sort_by(by_key);
    let mut want = alerts.clone();
    want.sort_by(by_key);
    assert_eq!(p.alerts.len(), want.len());
    for ((rule, got), (want_rule, want)) in p.alerts.iter().zip(&want) {
        assert_eq!(rule, want_rule);
        assert!(same_alert(got, want), "{got:?} != {want:?}");
    }
    assert!(p.alerts.iter().any(|(_, a)| is_stale(a.value)));
    assert!(p.alerts.iter().any(|(_, a)| a.value == 0.0 && a.value.is_sign_negative()));

    p.groups.sort_by_key(|g| g.key.id());
    let mut want_groups = vec![acked, plain];
    want_groups.sort_by_key(|g| g.key.id());
    assert_eq!(p.groups, want_groups);
    assert_eq!(p.silences, vec![silence("s1"), silence("s2")]);
    assert_eq!(p.maintenance, windows);

    let pending: Vec<(&str, &str, u32, Timestamp)> =
        p.pending.iter().map(|e| (e.message.id.as_str(), e.channel.as_str(), e.attempts, e.created_at)).collect();
    assert_eq!(
        pending,
        vec![
            ("m1", "pager", 0, at(100)),
            ("m1", "slack", 0, at(100)),
            ("m2", "pager", 0, at(200)),
            ("m2", "slack", 0, at(200))
        ]
    );
    assert_eq!(p.pending[0].message, m1);
    assert_eq!(p.pending[1].message, m1);
    assert_eq!(p.pending[3].message, m2);
    assert_eq!(db.pending_count().unwrap(), 4);
}

#[test]
fn updates_and_deletes() {
    let (_dir, path) = temp();
    let mut db = StateDb::open(&path).unwrap();
    let a = alert("ZkNodeDown", "zk1:2181", AlertState::Pending, 1.0);
    let b = alert("ZkNodeDown", "zk2:2181", AlertState::Firing, 2.0);
    let g1 = group(0, "prod", None, &[&a]);
    let g2 = group(0, "dev", None, &[]);
    db.commit(&StepWrite {
        alerts_upsert: vec![("r".into(), Arc::new(a.clone())), ("r".into(), Arc::new(b.clone()))],
        groups: GroupChanges { upserted: vec![g1.clone(), g2.clone()], removed: vec![] },
        maintenance: Some(vec![("w".into(), at(0), at(10))]),
        ..Default::default()
    })
    .unwrap();
    let mut fired = a.clone();
    fired.fire(at(60));
    let mut g1b = g1.clone();
    g1b.next_flush = at(900);
    db.commit(&StepWrite {
        alerts_upsert: vec![("r".into(), Arc::new(fired.clone()))],
        alerts_delete: vec![("r".into(), b.fingerprint)],
        groups: GroupChanges { upserted: vec![g1b.clone()], removed: vec![g2.key.id()] },
        maintenance: Some(vec![]),
        ..Default::default()
    })
    .unwrap();
    db.put_silence(&silence("s1")).unwrap();
    let mut s1 = silence("s1");
    s1.comment = "longer".into();
    s1.ends_at = at(7200);
    db.put_silence(&s1).unwrap();
    db.put_silence(&silence("s2")).unwrap();
    db.delete_silence("s2").unwrap();
    db.delete_silence("never-was").unwrap();

    let p = StateDb::open(&path).unwrap().load().unwrap();
    assert_eq!(p.alerts, vec![("r".to_string(), fired)]);
    assert_eq!(p.groups, vec![g1b]);
    assert_eq!(p.silences, vec![s1]);
    assert!(p.maintenance.is_empty());
}

#[test]
fn no_op_commit_writes_nothing() {
    let (_dir, path) = temp();
    let mut db = StateDb::open(&path).unwrap();
    let before = db.conn.total_changes();
    db.commit(&StepWrite::default()).unwrap();
    assert_eq!(db.conn.total_changes(), before);
    assert!(db.conn.is_autocommit());
}

#[test]
fn deliveries_pending_failed_delivered_and_pruned() {
    let (_dir, path) = temp();
    let mut db = StateDb::open(&path).unwrap();
    let (m1, m2) = (node_down_message("m1", 100), node_down_message("m2", 200));
    db.commit(&outbox(&[&m1, &m2])).unwrap();
    // Writing the same messages again adds nothing.
    db.commit(&outbox(&[&m1])).unwrap();
    assert_eq!(db.pending_count().unwrap(), 4);

    db.mark_failed("m1", "pager", at(101), "connection refused", false).unwrap();
    db.mark_failed("m1", "pager", at(102), "HTTP 503", false).unwrap();
    db.mark_delivered("m1", "slack", at(103)).unwrap();
    db.mark_delivered_many(&[("m2".into(), "pager".into()), ("m2".into(), "slack".into())], at(201)).unwrap();
    // Already delivered: keeps its first time.
    db.mark_delivered("m1", "slack", at(999)).unwrap();

    let p = StateDb::open(&path).unwrap().load().unwrap();
    assert_eq!(p.pending.len(), 1);
    assert_eq!(
        (p.pending[0].message.clone(), p.pending[0].channel.as_str(), p.pending[0].attempts),
        (m1.clone(), "pager", 2)
    );
    assert_eq!(db.pending_count().unwrap(), 1);

    let d = db.deliveries(10).unwrap();
    let brief: Vec<_> = d
        .iter()
        .map(|r| (r.message_id.as_str(), r.channel.as_str(), r.attempts, r.delivered_at, r.last_error.as_deref()))
        .collect();
    assert_eq!(
        brief,
        vec![
            ("m2", "slack", 1, Some(at(201)), None),
            ("m2", "pager", 1, Some(at(201)), None),
            ("m1", "slack", 1, Some(at(103)), None),
            ("m1", "pager", 2, None, Some("HTTP 503")),
        ]
    );
    assert_eq!(d[3].group_id, m1.group_id);
    assert_eq!((d[3].tier, d[3].created_at, d[3].escalation), (Severity::P1, at(100), false));
    assert_eq!(db.deliveries(1).unwrap().len(), 1);

    // m1/slack goes (m1 stays: m1/pager is pending); m2's rows go, then m2 itself.
    assert_eq!(db.prune_delivered(at(300)).unwrap(), 3);
    let d = db.deliveries(10).unwrap();
    assert_eq!(d.len(), 1);
    assert_eq!((d[0].message_id.as_str(), d[0].channel.as_str()), ("m1", "pager"));
    let messages: i64 = db.conn.query_row("SELECT count(*) FROM messages", [], |r| r.get(0)).unwrap();
    assert_eq!(messages, 1);
    assert_eq!(db.load().unwrap().pending[0].message, m1);
}

#[test]
fn a_delivery_that_gave_up_is_failed_never_pending_again() {
    let (_dir, path) = temp();
    let mut db = StateDb::open(&path).unwrap();
    db.commit(&outbox(&[&node_down_message("m1", 100)])).unwrap();
    db.mark_failed("m1", "pager", at(101), "HTTP 503", false).unwrap();
    db.mark_failed("m1", "pager", at(102), "HTTP 400", true).unwrap();
    // A report after giving up changes nothing.
    db.mark_delivered("m1", "pager", at(103)).unwrap();
    let p = StateDb::open(&path).unwrap().load().unwrap();
    let pending: Vec<&str> = p.pending.iter().map(|e| e.channel.as_str()).collect();
    assert_eq!(pending, ["slack"], "the given-up delivery is not pending");
    assert_eq!(db.pending_count().unwrap(), 1);
    let d = db.deliveries(10).unwrap();
    let pager = d.iter().find(|r| r.channel == "pager").unwrap();
    assert_eq!(
        (pager.attempts, pager.delivered_at, pager.failed_at, pager.last_error.as_deref()),
        (2, None, Some(at(102)), Some("HTTP 400"))
    );
    // Given-up rows are history, pruned like delivered ones.
    assert_eq!(db.prune_delivered(at(200)).unwrap(), 1);
    assert_eq!(db.deliveries(10).unwrap().len(), 1);
}

#[test]
fn marks_in_the_same_commit_as_their_outbox_rows_apply_to_them() {
    let (_dir, path) = temp();
    let mut db = StateDb::open(&path).unwrap();
    let m1 = node_down_message("m1", 100);
    let mark = |channel: &str, outcome, error: Option<&str>| DeliveryMark {
        message_id: "m1".into(),
        channel: channel.into(),
        attempts: 1,
        last_attempt_at: at(101),
        last_error: error.map(str::to_string),
        outcome,
    };
    let mut pager = mark("pager", DeliveryOutcome::Retrying, Some("timeout"));
    pager.merge(mark("pager", DeliveryOutcome::Delivered, None));
    db.commit(&StepWrite {
        outbox: vec![Arc::new(m1)],
        deliveries: vec![pager, mark("slack", DeliveryOutcome::GaveUp, Some("HTTP 404"))],
        ..Default::default()
    })
    .unwrap();
    assert_eq!(db.pending_count().unwrap(), 0);
    let d = db.deliveries(10).unwrap();
    let brief: Vec<_> = d
        .iter()
        .map(|r| (r.channel.as_str(), r.attempts, r.delivered_at, r.failed_at, r.last_error.as_deref()))
        .collect();
    assert_eq!(
        brief,
        [("slack", 1, None, Some(at(101)), Some("HTTP 404")), ("pager", 2, Some(at(101)), None, Some("timeout"))]
    );
}

/// The schema of the previous release, version 1 (`src/state.rs` at commit b5deec3), word for word: frozen data,
/// not the current schema.
const VERSION_1_SCHEMA: &str = include_str!("../../tests/fixtures/state/v1-schema.sql");

/// The body of an alert as version 1 wrote it (the JSON of the bodies has not changed since).
const VERSION_1_ALERT: &str = r#"{"fingerprint":"00c0ffee00c0ffee","labels":{"alertname":"ZkNodeDown","cluster":"prod","instance":"zk1:2181","severity":"P1"},"annotations":[["summary","zk1:2181 is down"]],"severity":"P1","state":"firing","value":"1.0","active_at":10000,"fired_at":70000,"runbook":"runbooks/node-down.md"}"#;

/// Writes a state file as the previous release left it: its schema and settings, and rows of every table with the
/// bodies it wrote. Message m1 went to three channels: slack delivered, pager failing (two attempts), email not tried.
fn write_version_1_file(path: &Path, group_id: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut conn = rusqlite::Connection::open(path).unwrap();
    conn.pragma_update(None, "page_size", 16 * 1024).unwrap();
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).unwrap();
    assert_eq!(mode, "wal");
    let tx = conn.transaction().unwrap();
    tx.execute_batch(VERSION_1_SCHEMA).unwrap();
    tx.pragma_update(None, "user_version", 1).unwrap();
    tx.commit().unwrap();
    let ack = r#"{"by":"ops","comment":"looking","at":120000,"until":720000}"#;
    let group = format!(
        r#"{{"route":0,"labels":{{"alertname":"ZkNodeDown","cluster":"prod"}},"next_flush":400000,"notified_firing":["00c0ffee00c0ffee"],"notified_tier":"P1","last_sent":100000,"paged_since":90000,"escalated":false,"ack":{ack}}}"#
    );
    let silence = r#"{"matchers":[{"name":"cluster","op":"=","value":"prod"},{"name":"instance","op":"=~","value":"zk[0-9]+:2181"}],"starts_at":0,"ends_at":3600000,"created_by":"ops","comment":"upgrade"}"#;
    let message = format!(
        r#"{{"at":100000,"group":{{"alertname":"ZkNodeDown","cluster":"prod"}},"group_id":"{group_id}","tier":"P1","channels":["pager","slack","email"],"firing":[{VERSION_1_ALERT}],"new":["00c0ffee00c0ffee"],"resolved":[],"escalation":false,"digest":false}}"#
    );
    let tx = conn.transaction().unwrap();
    tx.execute(
        "INSERT INTO alerts (rule, fingerprint, state, active_at, body) VALUES ('ZkNodeDown', '00c0ffee00c0ffee', 'firing', 10000, ?1)",
        [VERSION_1_ALERT],
    )
    .unwrap();
    tx.execute("INSERT INTO groups (id, next_flush, body) VALUES (?1, 400000, ?2)", [group_id, &group]).unwrap();
    tx.execute("INSERT INTO acks (group_id, at, body) VALUES (?1, 120000, ?2)", [group_id, ack]).unwrap();
    tx.execute("INSERT INTO silences (id, starts_at, ends_at, body) VALUES ('s1', 0, 3600000, ?1)", [silence]).unwrap();
    tx.execute("INSERT INTO maintenance (name, opened_at, closes_at) VALUES ('upgrade', 0, 3600000)", []).unwrap();
    tx.execute(
        "INSERT INTO messages (id, at, group_id, tier, escalation, digest, body) VALUES ('m1', 100000, ?1, 'P1', 0, 0, ?2)",
        [group_id, &message],
    )
    .unwrap();
    tx.execute_batch(
        "INSERT INTO outbox (message, channel, created_at, attempts, last_attempt_at, last_error, delivered_at)
         VALUES (1, 'pager', 100000, 2, 110000, 'HTTP 503', NULL),
                (1, 'slack', 100000, 1, 101000, NULL, 101000),
                (1, 'email', 100000, 0, NULL, NULL, NULL);",
    )
    .unwrap();
    tx.commit().unwrap();
}

/// Column names of each table and the SQL of each index: what a migrated file must share with a new one.
fn schema_shape(db: &StateDb) -> Vec<String> {
    let mut st = db.conn.prepare("SELECT type, name, sql FROM sqlite_schema ORDER BY type, name").unwrap();
    let objects: Vec<(String, String, Option<String>)> =
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(Result::unwrap).collect();
    let mut shape = Vec::new();
    for (kind, name, sql) in objects {
        if kind == "table" {
            let mut cols =
                db.conn.prepare(&format!("SELECT name, type, \"notnull\" FROM pragma_table_info('{name}')")).unwrap();
            let cols: Vec<String> = cols
                .query_map([], |r| {
                    Ok(format!("{}:{}:{}", r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?))
                })
                .unwrap()
                .map(Result::unwrap)
                .collect();
            shape.push(format!("table {name} ({})", cols.join(", ")));
        } else {
            shape.push(format!("{kind} {name}: {}", sql.unwrap_or_default()));
        }
    }
    shape
}

#[test]
fn a_version_1_file_is_migrated_and_keeps_its_pending_deliveries() {
    let (_dir, path) = temp();
    let key = GroupKey { route: 0, labels: Labels::from_pairs([("alertname", "ZkNodeDown"), ("cluster", "prod")]) };
    let group_id = key.id();
    write_version_1_file(&path, &group_id);

    let mut db = StateDb::open(&path).unwrap();
    let version: i64 = db.conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    let (_fresh_dir, fresh_path) = temp();
    assert_eq!(schema_shape(&db), schema_shape(&StateDb::open(&fresh_path).unwrap()));

    let loaded = db.load().unwrap();
    let fp = Fingerprint(0x00c0_ffee_00c0_ffee);
    let [(rule, alert)] = &loaded.alerts[..] else { panic!("alerts: {:?}", loaded.alerts) };
    assert_eq!(rule, "ZkNodeDown");
    assert_eq!(alert.fingerprint, fp);
    assert_eq!(alert.labels.get("instance"), Some("zk1:2181"));
    assert_eq!(alert.annotations, crate::model::Annotations::from_pairs([("summary", "zk1:2181 is down")]));
    assert_eq!((alert.severity, alert.state, alert.value), (Severity::P1, AlertState::Firing, 1.0));
    assert_eq!((alert.active_at, alert.fired_at, alert.resolved_at), (at(10), Some(at(70)), None));
    assert_eq!(alert.runbook.as_deref(), Some("runbooks/node-down.md"));

    let [group] = &loaded.groups[..] else { panic!("groups: {:?}", loaded.groups) };
    assert_eq!(group.key, key);
    assert_eq!(group.notified_firing, BTreeSet::from([fp]));
    assert_eq!((group.next_flush, group.last_sent, group.paged_since), (at(400), Some(at(100)), Some(at(90))));
    assert_eq!(group.ack, Some(ack("ops", 120)));
    assert_eq!(group.told, 0, "written before groups counted their messages");
    assert_eq!(db.ack_history(10).unwrap(), [(group_id.clone(), ack("ops", 120))]);

    let [silence] = &loaded.silences[..] else { panic!("silences: {:?}", loaded.silences) };
    assert_eq!(silence.id, "s1");
    assert_eq!(silence.matchers.to_string(), r#"{cluster="prod", instance=~"zk[0-9]+:2181"}"#);
    assert_eq!((silence.starts_at, silence.ends_at), (at(0), at(3600)));
    assert_eq!(loaded.maintenance, [("upgrade".to_string(), at(0), at(3600))]);

    let pending: Vec<_> = loaded.pending.iter().map(|e| (e.channel.as_str(), e.attempts, e.created_at)).collect();
    assert_eq!(pending, [("pager", 2, at(100)), ("email", 0, at(100))]);
    let message = &loaded.pending[0].message;
    assert_eq!((message.id.as_str(), message.group_id.as_str()), ("m1", group_id.as_str()));
    assert_eq!(message.channels, ["pager", "slack", "email"]);
    assert_eq!(message.new, [fp]);
    assert!(same_alert(&message.firing[0], alert));

    // The new column works on the migrated rows: a delivery that gives up leaves the pending ones.
    db.mark_failed("m1", "pager", at(111), "HTTP 400", true).unwrap();
    let pending: Vec<_> = db.load().unwrap().pending.into_iter().map(|e| e.channel).collect();
    assert_eq!(pending, ["email"]);
    assert_eq!(db.pending_count().unwrap(), 1);
    let history: Vec<_> =
        db.deliveries(10).unwrap().into_iter().map(|d| (d.channel, d.attempts, d.delivered_at, d.failed_at)).collect();
    assert_eq!(
        history,
        [
            ("email".to_string(), 0, None, None),
            ("slack".to_string(), 1, Some(at(101)), None),
            ("pager".to_string(), 3, None, Some(at(111)))
        ]
    );
    drop(db);
    // Opened again, it is a version 2 file like any other.
    let db = StateDb::open(&path).unwrap();
    assert_eq!(db.load().unwrap().pending.len(), 1);
}

#[test]
fn acks_update_the_log_and_the_history() {
    let (_dir, path) = temp();
    let mut db = StateDb::open(&path).unwrap();
    let a = alert("ZkNodeDown", "zk1:2181", AlertState::Firing, 1.0);
    let g = group(0, "prod", None, &[&a]);
    db.commit(&StepWrite { groups: GroupChanges { upserted: vec![g.clone()], removed: vec![] }, ..Default::default() })
        .unwrap();
    let acked = GroupState { ack: Some(ack("alice", 500)), ..g.clone() };
    db.record_ack(&acked).unwrap();
    let mut again = acked.clone();
    again.ack = Some(Ack { until: None, ..ack("bob", 600) });
    db.record_ack(&again).unwrap();
    // A group not in the log: history only.
    let other = GroupState { ack: Some(ack("carol", 700)), ..group(3, "dev", None, &[]) };
    db.record_ack(&other).unwrap();

    let p = StateDb::open(&path).unwrap().load().unwrap();
    assert_eq!(p.groups, vec![again.clone()]);
    let history = db.ack_history(10).unwrap();
    assert_eq!(
        history,
        vec![
            (other.key.id(), other.ack.clone().unwrap()),
            (g.key.id(), again.ack.clone().unwrap()),
            (g.key.id(), acked.ack.clone().unwrap()),
        ]
    );
    assert_eq!(db.ack_history(1).unwrap().len(), 1);
}

#[test]
fn pragmas_are_set() {
    let (_dir, path) = temp();
    let db = StateDb::open(&path).unwrap();
    let mode: String = db.conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
    assert_eq!(mode, "wal");
    let sync: i64 = db.conn.query_row("PRAGMA synchronous", [], |r| r.get(0)).unwrap();
    assert_eq!(sync, 2);
    let fk: i64 = db.conn.query_row("PRAGMA foreign_keys", [], |r| r.get(0)).unwrap();
    assert_eq!(fk, 1);
    let version: i64 = db.conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    let busy: i64 = db.conn.query_row("PRAGMA busy_timeout", [], |r| r.get(0)).unwrap();
    assert_eq!(busy, 5000);
}

#[test]
fn garbage_file_is_an_error() {
    let (_dir, path) = temp();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let bytes: Vec<u8> = (0..8192)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(&path, &bytes).unwrap();
    let err = StateDb::open(&path).and_then(|db| db.load()).unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with(&format!("state {}: ", path.display())), "{msg}");
}

#[test]
fn newer_schema_version_is_refused() {
    let (_dir, path) = temp();
    drop(StateDb::open(&path).unwrap());
    Connection::open(&path).unwrap().pragma_update(None, "user_version", SCHEMA_VERSION + 1).unwrap();
    let err = StateDb::open(&path).unwrap_err();
    assert!(matches!(err, StateError::TooNew { found, .. } if found == SCHEMA_VERSION + 1), "{err:?}");
    assert!(err.to_string().contains("newer than this zkalert supports"), "{err}");
}

#[test]
fn foreign_database_is_refused() {
    let (_dir, path) = temp();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    Connection::open(&path).unwrap().execute_batch("CREATE TABLE other (x INTEGER)").unwrap();
    let err = StateDb::open(&path).unwrap_err();
    assert!(matches!(err, StateError::Foreign { .. }), "{err:?}");
}

#[test]
fn undecodable_row_names_table_and_key() {
    let (_dir, path) = temp();
    let mut db = StateDb::open(&path).unwrap();
    let a = alert("ZkNodeDown", "zk1:2181", AlertState::Firing, 1.0);
    db.commit(&StepWrite { alerts_upsert: vec![("r".into(), Arc::new(a.clone()))], ..Default::default() }).unwrap();
    db.conn.execute("UPDATE alerts SET body = '{\"fingerprint\": 12'", []).unwrap();
    let err = db.load().unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("table alerts, row r/") && msg.contains(&a.fingerprint.to_string()), "{msg}");

    db.conn.execute("DELETE FROM alerts", []).unwrap();
    db.put_silence(&silence("s1")).unwrap();
    db.conn.execute("UPDATE silences SET body = json_set(body, '$.matchers[0].op', '==')", []).unwrap();
    let msg = db.load().unwrap_err().to_string();
    assert!(msg.contains("table silences, row s1") && msg.contains("operator"), "{msg}");
}

#[test]
fn checkpoints_in_the_background() {
    let (_dir, path) = temp();
    let mut db = StateDb::open(&path).unwrap();
    assert!(db.checkpointer.is_some());
    let size = || std::fs::metadata(&path).unwrap().len();
    let before = size();
    let alerts = (0..2 * CHECKPOINT_ROWS)
        .map(|i| ("r".into(), Arc::new(alert("ZkNodeDown", &format!("zk{i}:2181"), AlertState::Firing, 1.0))))
        .collect();
    db.commit(&StepWrite { alerts_upsert: alerts, ..Default::default() }).unwrap();
    // The rows reach the database file (not only the WAL) without the writer checkpointing.
    let deadline = Instant::now() + Duration::from_secs(20);
    while size() <= before + 16 * PAGE_SIZE as u64 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(size() > before + 16 * PAGE_SIZE as u64, "database file {} bytes", size());
    drop(db);
    assert_eq!(StateDb::open(&path).unwrap().load().unwrap().alerts.len(), 2 * CHECKPOINT_ROWS);
}

/// ZooKeeper-shaped alert, as in the benches: five labels, ~150 bytes of annotations.
fn big_alert(serial: usize) -> Alert {
    let cluster = format!("zk-eu-west-{:05}", serial / 50);
    let instance = format!("zk{serial}.{cluster}.internal:2181");
    let labels = Labels::from_pairs([
        ("alertname", "ZkHighAvgLatency"),
        ("cluster", cluster.as_str()),
        ("instance", instance.as_str()),
        ("severity", "P2"),
        ("team", "zk-platform"),
    ]);
    let value = (serial % 997) as f64 + 0.5;
    let mut alert = Alert::new(labels, Severity::P2, value, at(1_795_597_000));
    alert.annotations = crate::model::Annotations::from_pairs([
        ("summary", format!("ZkHighAvgLatency on {instance} (cluster {cluster}) at {value}")),
        ("description", "Condition held for 2m; see the runbook. Check `echo mntr | nc` first.".into()),
    ]);
    alert.fire(at(1_795_597_120));
    alert.runbook = Some("zookeeper/highavglatency".into());
    alert
}

/// Not a benchmark: prints the time of large commits (run with --release --nocapture). 100k in release,
/// 10k in debug builds.
#[test]
fn large_commits() {
    let n = if cfg!(debug_assertions) { 10_000 } else { 100_000 };
    let (dir, _) = temp();
    let outbox = |messages: usize, channels: &[&str]| -> Vec<Arc<Message>> {
        (0..messages)
            .map(|i| {
                let id = Labels::from_pairs([("m", i.to_string())]).fingerprint().to_string();
                let mut m = message(&id, i as i64, vec![big_alert(i)], vec![]);
                m.channels = channels.iter().map(|c| c.to_string()).collect();
                Arc::new(m)
            })
            .collect()
    };
    let mut report = Vec::new();
    for (name, messages) in [("1 channel", outbox(n, &["pager"])), ("2 channels", outbox(n / 2, &["pager", "slack"]))] {
        let mut db = StateDb::open(&dir.path().join(format!("{name}.db"))).unwrap();
        let w = StepWrite { outbox: messages, ..Default::default() };
        let t = Instant::now();
        db.commit(&w).unwrap();
        report.push(format!("{n} outbox rows ({name}) {:?}", t.elapsed()));
        assert_eq!(db.pending_count().unwrap(), n);
    }

    let mut db = StateDb::open(&dir.path().join("alerts.db")).unwrap();
    let w = StepWrite {
        alerts_upsert: (0..n).map(|i| (format!("rule-{}", i % 20).into(), Arc::new(big_alert(i)))).collect(),
        ..Default::default()
    };
    let t = Instant::now();
    db.commit(&w).unwrap();
    report.push(format!("{n} alert inserts {:?}", t.elapsed()));
    let t = Instant::now();
    db.commit(&w).unwrap();
    report.push(format!("{n} alert updates {:?}", t.elapsed()));
    let t = Instant::now();
    let p = db.load().unwrap();
    report.push(format!("load of {n} alerts {:?}", t.elapsed()));
    assert_eq!(p.alerts.len(), n);
    println!("state commits: {}", report.join("; "));
}

#[test]
fn the_server_secret_is_made_once_and_kept_across_reopening() {
    let (_dir, path) = temp();
    let first = StateDb::open(&path).unwrap().server_secret().unwrap();
    let mut db = StateDb::open(&path).unwrap();
    assert_eq!(db.server_secret().unwrap(), first);
    assert_eq!(db.server_secret().unwrap(), first);
    let (_other_dir, other_path) = temp();
    assert_ne!(StateDb::open(&other_path).unwrap().server_secret().unwrap(), first, "each file its own");
}

#[test]
fn alert_spans_keep_the_most_severe_tier_their_end_and_the_first_ack_of_a_group_they_were_told_in() {
    let (_dir, path) = temp();
    let mut db = StateDb::open(&path).unwrap();
    let key = |a: &Alert| ("g.yaml/nodes/ZkNodeDown#0".to_string().into(), Arc::new(a.clone()));
    let mut down = alert("ZkNodeDown", "zk1:2181", AlertState::Pending, 1.0);
    down.fired_at = None;
    // Pending only: not a span.
    db.commit(&StepWrite { alerts_upsert: vec![key(&down)], at: at(10), ..Default::default() }).unwrap();
    assert_eq!(db.alert_spans("prod", at(0), at(1000), 10).unwrap(), []);
    // Fires at P1, rises to P0, is acked in its group, falls back to P1 and resolves.
    down.state = AlertState::Firing;
    down.fired_at = Some(at(70));
    db.commit(&StepWrite { alerts_upsert: vec![key(&down)], at: at(70), ..Default::default() }).unwrap();
    down.severity = Severity::P0;
    db.commit(&StepWrite { alerts_upsert: vec![key(&down)], at: at(80), ..Default::default() }).unwrap();
    db.record_ack(&group(0, "prod", Some(ack("alice", 90)), &[&down])).unwrap();
    db.record_ack(&group(0, "prod", Some(ack("bob", 95)), &[&down])).unwrap();
    down.severity = Severity::P1;
    down.state = AlertState::Resolved;
    down.resolved_at = Some(at(300));
    db.commit(&StepWrite { alerts_upsert: vec![key(&down)], at: at(300), ..Default::default() }).unwrap();
    let spans = db.alert_spans("prod", at(0), at(1000), 10).unwrap();
    assert_eq!(spans.len(), 1, "{spans:?}");
    assert_eq!((spans[0].fired_at, spans[0].resolved_at, spans[0].tier), (at(70), Some(at(300)), Severity::P0));
    assert_eq!(spans[0].acked, Some((at(90), "alice".to_string())), "the first ack");
    assert_eq!(spans[0].alert.annotations.get("summary"), Some("zk1:2181 is down"));
    // Outside the period, or another cluster's: not listed.
    assert_eq!(db.alert_spans("prod", at(301), at(1000), 10).unwrap(), []);
    assert_eq!(db.alert_spans("prod", at(0), at(70), 10).unwrap(), []);
    assert_eq!(db.alert_spans("staging", at(0), at(1000), 10).unwrap(), []);

    // Fires again: a second span. Its rule is removed (the row deleted unresolved): the span ends then.
    let mut again = down.clone();
    again.state = AlertState::Firing;
    again.fired_at = Some(at(400));
    again.resolved_at = None;
    db.commit(&StepWrite { alerts_upsert: vec![key(&again)], at: at(400), ..Default::default() }).unwrap();
    let deleted = vec![("g.yaml/nodes/ZkNodeDown#0".to_string().into(), again.fingerprint)];
    db.commit(&StepWrite { alerts_delete: deleted, at: at(500), ..Default::default() }).unwrap();
    let spans = db.alert_spans("prod", at(0), at(1000), 10).unwrap();
    assert_eq!(
        spans.iter().map(|s| (s.fired_at, s.resolved_at)).collect::<Vec<_>>(),
        [(at(70), Some(at(300))), (at(400), Some(at(500)))]
    );
    assert_eq!(spans[1].acked, None, "acks before it fired are not its");

    // Pruned once resolved before the cut-off.
    assert_eq!(db.prune_history(at(350)).unwrap(), 1);
    assert_eq!(db.alert_spans("prod", at(0), at(1000), 10).unwrap().len(), 1);
}

#[test]
fn leader_changes_are_read_with_the_leader_before_the_period_and_pruned_but_the_last() {
    let (_dir, path) = temp();
    let mut db = StateDb::open(&path).unwrap();
    let change = |t: i64, leader: Option<&str>| LeaderChange {
        cluster: "prod".into(),
        at: at(t),
        leader: leader.map(str::to_string),
    };
    let leaders = vec![change(10, Some("zk1")), change(100, None), change(102, Some("zk2")), change(500, Some("zk3"))];
    db.commit(&StepWrite { leaders, at: at(500), ..Default::default() }).unwrap();
    let (before, during) = db.leader_changes("prod", at(50), at(200)).unwrap();
    assert_eq!(before, Some(change(10, Some("zk1"))));
    assert_eq!(during, [change(100, None), change(102, Some("zk2"))]);
    assert_eq!(db.leader_changes("staging", at(0), at(1000)).unwrap(), (None, vec![]));
    // Restored at start-up: each cluster's last leader.
    assert_eq!(db.load().unwrap().leaders, [("prod".to_string(), Some("zk3".to_string()))]);
    // Pruning keeps the leader the cluster has.
    db.prune_history(at(10_000)).unwrap();
    assert_eq!(db.load().unwrap().leaders, [("prod".to_string(), Some("zk3".to_string()))]);
    assert_eq!(db.leader_changes("prod", at(0), at(10_000)).unwrap().1, [change(500, Some("zk3"))]);
}

#[test]
fn when_a_report_was_last_due_is_kept() {
    let (_dir, path) = temp();
    let mut db = StateDb::open(&path).unwrap();
    assert_eq!(db.report_due("prod").unwrap(), None);
    db.set_report_due("prod", at(100)).unwrap();
    db.set_report_due("prod", at(200)).unwrap();
    drop(db);
    assert_eq!(StateDb::open(&path).unwrap().report_due("prod").unwrap(), Some(at(200)));
}

#[test]
fn delivery_problems_are_those_given_up_in_the_period_and_those_failing_still() {
    let (_dir, path) = temp();
    let mut db = StateDb::open(&path).unwrap();
    let (m1, m2) = (node_down_message("m1", 100), node_down_message("m2", 200));
    db.commit(&outbox(&[&m1, &m2])).unwrap();
    let mark = |id: &str, channel: &str, t: i64, error: Option<&str>, outcome| DeliveryMark {
        message_id: id.into(),
        channel: channel.into(),
        attempts: 3,
        last_attempt_at: at(t),
        last_error: error.map(str::to_string),
        outcome,
    };
    let deliveries = vec![
        mark("m1", "pager", 150, Some("HTTP 503"), DeliveryOutcome::GaveUp),
        mark("m1", "slack", 110, None, DeliveryOutcome::Delivered),
        mark("m2", "pager", 210, Some("timeout"), DeliveryOutcome::Retrying),
    ];
    db.commit(&StepWrite { deliveries, ..Default::default() }).unwrap();
    let problems = db.delivery_problems(at(0), at(1000), 10, |_| true).unwrap();
    let seen: Vec<(&str, &str, Option<Timestamp>, Option<&str>)> = problems
        .iter()
        .map(|p| (p.message.id.as_str(), p.channel.as_str(), p.failed_at, p.last_error.as_deref()))
        .collect();
    assert_eq!(seen, [("m1", "pager", Some(at(150)), Some("HTTP 503")), ("m2", "pager", None, Some("timeout"))]);
    assert_eq!(problems[0].message.firing[0].labels.get("cluster"), Some("prod"));
    // A give-up before the period is not listed; one failing still always is.
    let later = db.delivery_problems(at(160), at(1000), 10, |_| true).unwrap();
    assert_eq!(later.iter().map(|p| p.message.id.as_str()).collect::<Vec<_>>(), ["m2"]);
    // The limit counts what is kept, not what is read.
    let kept = db.delivery_problems(at(0), at(1000), 1, |p| p.message.id == "m2").unwrap();
    assert_eq!(kept.iter().map(|p| p.message.id.as_str()).collect::<Vec<_>>(), ["m2"]);
}
