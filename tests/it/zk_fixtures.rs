//! Sources → store → rules…: the ZooKeeper parsers (first stage) against real
//! ZooKeeper 3.8.0 replies. `tests/fixtures/zk/3.8.0/` is a copy of the
//! ground-truth captures (`CAPTURE-INFO.txt` says which node had which role;
//! logs and harness output were left out). Every file there has an expected
//! outcome; then value checks per command; then property tests that no parser
//! panics on arbitrary bytes or on mutated fixtures.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Display;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::sync::OnceLock;

use proptest::prelude::*;
use zkalert::source::zk::admin_json::{self, AdminError};
use zkalert::source::zk::parse::{self, Isro, LearnerType, Mode, Reply};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/zk/3.8.0");

fn read(rel: &str) -> Vec<u8> {
    std::fs::read(Path::new(ROOT).join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Every fixture file, relative to [`ROOT`], sorted (dotfiles skipped).
fn fixture_files() -> Vec<String> {
    fn walk(dir: &Path, rel: &str, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let child = if rel.is_empty() { name } else { format!("{rel}/{name}") };
            if entry.file_type().unwrap().is_dir() {
                walk(&entry.path(), &child, out);
            } else {
                out.push(child);
            }
        }
    }
    let mut out = Vec::new();
    walk(Path::new(ROOT), "", &mut out);
    out.sort();
    out
}

// ---------------------------------------------------------------------------
// Outcomes

/// What a parse came to, comparable with an expectation.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Ok,
    NotWhitelisted,
    NotServing,
    Empty,
    UnknownCommand,
    CommandError(String),
    Error(String),
}

fn reply_outcome<T>(r: &Reply<T>) -> Outcome {
    match r {
        Reply::Ok(_) => Outcome::Ok,
        Reply::NotWhitelisted => Outcome::NotWhitelisted,
        Reply::NotServing => Outcome::NotServing,
        Reply::Empty => Outcome::Empty,
    }
}

fn four<T, E: Display>(r: Result<Reply<T>, E>) -> Outcome {
    match r {
        Ok(reply) => reply_outcome(&reply),
        Err(e) => Outcome::Error(e.to_string()),
    }
}

fn adm<T>(r: Result<Reply<T>, AdminError>) -> Outcome {
    match r {
        Ok(reply) => reply_outcome(&reply),
        Err(AdminError::UnknownCommand(_)) => Outcome::UnknownCommand,
        Err(AdminError::Command(msg)) => Outcome::CommandError(msg),
        Err(e) => Outcome::Error(e.to_string()),
    }
}

/// The role directory of a fixture: `leader`, …, or `extras/<name>`.
fn role_of(rel: &str) -> &str {
    let mut parts = rel.splitn(3, '/');
    match (parts.next(), parts.next()) {
        (Some("extras"), Some(sub)) => &rel[..("extras/".len() + sub.len())],
        (Some(first), _) => first,
        _ => "",
    }
}

/// The 4lw a capture file holds: the last `-` word of the name before the
/// first dot (`mntr.t0.txt` → mntr, `hung-leader-srvr.txt` → srvr,
/// `unknown-command-abcd.txt` → abcd).
fn command_of(file: &str) -> &str {
    let stem = file.split('.').next().unwrap_or(file);
    stem.rsplit('-').next().unwrap_or(stem)
}

fn parse_4lw(cmd: &str, raw: &[u8]) -> Option<Outcome> {
    Some(match cmd {
        "mntr" => four(parse::parse_mntr(raw)),
        "srvr" => four(parse::parse_srvr(raw)),
        "stat" => four(parse::parse_stat(raw)),
        "cons" => four(parse::parse_cons(raw)),
        "conf" => four(parse::parse_conf(raw)),
        "envi" => four(parse::parse_envi(raw)),
        "ruok" => four(parse::parse_ruok(raw)),
        "isro" => four(parse::parse_isro(raw)),
        "gtmk" => four(parse::parse_gtmk(raw)),
        "crst" | "srst" => four(parse::parse_reset(raw)),
        "dirs" => four(parse::parse_dirs(raw)),
        "wchs" => four(parse::parse_wchs(raw)),
        "hash" => four(parse::parse_hash(raw)),
        "dump" | "wchc" | "wchp" | "abcd" => reply_outcome(&parse::parse_text(raw)),
        _ => return None,
    })
}

fn expected_4lw(role: &str, file: &str, cmd: &str) -> Outcome {
    let quorum_lost = matches!(role, "quorum-lost" | "quorum-lost-observer");
    match cmd {
        // Unknown word: the server closes without a byte.
        "abcd" => Outcome::Empty,
        // SIGSTOPped leader: TCP connect succeeds, no byte ever.
        _ if file.starts_with("hung-") => Outcome::Empty,
        // Whitelist `srvr,ruok`.
        "srvr" | "ruok" if role == "not-whitelisted" => Outcome::Ok,
        _ if role == "not-whitelisted" => Outcome::NotWhitelisted,
        // No whitelist line: 3.8.0 enables only `srvr`.
        "srvr" if file.starts_with("default-") => Outcome::Ok,
        _ if file.starts_with("default-") => Outcome::NotWhitelisted,
        // Without quorum: `imok`, `null`, the environment and the trace mask still answer.
        "ruok" | "isro" | "envi" | "gtmk" if quorum_lost => Outcome::Ok,
        _ if quorum_lost => Outcome::NotServing,
        _ => Outcome::Ok,
    }
}

/// The AdminServer command of a JSON capture (`admin/monitor.json`,
/// `extras/read-only/admin-monitor.json`, `extras/quota/leader-monitor.json`).
fn admin_command_of(file: &str) -> &str {
    let stem = file.strip_suffix(".json").unwrap_or(file);
    stem.strip_prefix("admin-").or_else(|| stem.strip_prefix("leader-")).unwrap_or(stem)
}

fn parse_admin(name: &str, status: u16, body: &[u8]) -> Outcome {
    match name {
        "monitor" => adm(admin_json::parse_monitor(status, body)),
        "stats" | "stat" | "srvr" | "server_stats" => adm(admin_json::parse_stats(status, body)),
        "is_read_only" => adm(admin_json::parse_is_read_only(status, body)),
        "connections" => adm(admin_json::parse_connections(status, body)),
        _ => adm(admin_json::parse_envelope(status, body)),
    }
}

fn expected_admin(role: &str, name: &str) -> Outcome {
    let quorum_lost = role.starts_with("quorum-lost");
    match name {
        "no_such_command" => Outcome::UnknownCommand,
        // Without quorum only these still work (zabstate says `"voting": false`).
        "environment" | "system_properties" | "get_trace_mask" | "zabstate" if quorum_lost => Outcome::Ok,
        _ if quorum_lost => Outcome::NotServing,
        "leader" if matches!(role, "standalone" | "not-whitelisted" | "extras/read-only") => {
            Outcome::CommandError(admin_json::NOT_INITIALIZED.to_string())
        }
        _ => Outcome::Ok,
    }
}

/// `_http_status.txt` of a role's `admin/` directory: command → status. Roles
/// without one (the extras) were all HTTP 200.
fn http_statuses(admin_dir: &str) -> BTreeMap<String, u16> {
    let path = Path::new(ROOT).join(admin_dir).join("_http_status.txt");
    let Ok(text) = std::fs::read_to_string(path) else {
        return BTreeMap::new();
    };
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let url = w.next()?;
            let status = w.next()?.parse().ok()?;
            Some((url.strip_prefix("/commands/")?.to_string(), status))
        })
        .collect()
}

fn dir_of(rel: &str) -> &str {
    rel.rsplit_once('/').map_or("", |(d, _)| d)
}

/// Parses a `key\tbefore\tafter\tdelta` table and checks both columns
/// against the two `mntr` captures.
fn check_delta_table(rel: &str, before: &str, after: &str) -> Result<String, String> {
    let dir = dir_of(rel);
    let load = |f: &str| -> Result<parse::Mntr, String> {
        parse::parse_mntr(&read(&format!("{dir}/{f}")))
            .map_err(|e| e.to_string())?
            .ok()
            .ok_or_else(|| format!("{f}: not Ok"))
    };
    let (m0, m1) = (load(before)?, load(after)?);
    let text = String::from_utf8(read(rel)).map_err(|e| e.to_string())?;
    let mut rows = 0;
    for line in text.lines().filter(|l| !l.is_empty()) {
        let cols: Vec<&str> = line.split('\t').collect();
        let [key, v0, v1, _delta] = cols.as_slice() else {
            return Err(format!("bad row {line:?}"));
        };
        for (m, v) in [(&m0, v0), (&m1, v1)] {
            let want = parse::parse_java_number(v).ok_or(format!("{key}: {v:?} is not a number"))?;
            if m.get(key) != Some(want) {
                return Err(format!("{key}: table says {v}, mntr parsed {:?}", m.get(key)));
            }
        }
        rows += 1;
    }
    if rows == 0 {
        return Err("empty table".into());
    }
    Ok(format!("{rows} rows match"))
}

/// Checks one fixture file against its expectation; `Ok` describes what held.
fn check_file(rel: &str) -> Result<String, String> {
    let bytes = read(rel);
    let role = role_of(rel);
    let file = rel.rsplit('/').next().unwrap_or(rel);
    let compare = |got: Outcome, want: Outcome| {
        if got == want { Ok(format!("{got:?}")) } else { Err(format!("expected {want:?}, got {got:?}")) }
    };

    if rel == "CAPTURE-INFO.txt" {
        let text = String::from_utf8_lossy(&bytes);
        return if text.contains("leader=node3") && text.contains("3.8.0") {
            Ok("provenance".into())
        } else {
            Err("provenance changed".into())
        };
    }
    if file == "mntr.delta-10s.tsv" {
        return check_delta_table(rel, "mntr.t0.txt", "mntr.t10.txt");
    }
    if rel == "extras/srst/mntr.changed.tsv" {
        return check_delta_table(rel, "mntr.before.txt", "mntr.after.txt");
    }
    if file == "_http_status.txt" {
        let statuses = http_statuses(dir_of(rel));
        for (name, status) in &statuses {
            let json = format!("{}/{name}.json", dir_of(rel));
            if !Path::new(ROOT).join(&json).exists() {
                return Err(format!("no capture {json}"));
            }
            if *status != 200 && !(*status == 500 && name == "monitor" && role.starts_with("quorum-lost")) {
                return Err(format!("unexpected status {status} for {name}"));
            }
        }
        return if statuses.len() == 25 {
            Ok("25 statuses".into())
        } else {
            Err(format!("{} statuses", statuses.len()))
        };
    }
    if file == "commands.html" {
        let names = admin_json::parse_command_list(&bytes);
        return if names.len() == 26 && names.iter().any(|n| n == "monitor") && names.iter().any(|n| n == "zabstate") {
            Ok("26 commands".into())
        } else {
            Err(format!("commands: {names:?}"))
        };
    }
    if file == "monitor.with-headers.txt" {
        let (status, body) = admin_json::split_http_response(&bytes).ok_or("no HTTP response")?;
        let want_status = http_statuses(dir_of(rel)).get("monitor").copied().unwrap_or(200);
        if status != want_status {
            return Err(format!("status {status}, _http_status.txt says {want_status}"));
        }
        return compare(adm(admin_json::parse_monitor(status, body)), expected_admin(role, "monitor"));
    }
    if file.ends_with(".json") {
        let name = admin_command_of(file);
        let status = http_statuses(dir_of(rel)).get(name).copied().unwrap_or(200);
        return compare(parse_admin(name, status, &bytes), expected_admin(role, name));
    }
    if file.ends_with(".txt") {
        let cmd = command_of(file);
        let got = parse_4lw(cmd, &bytes).ok_or_else(|| format!("no parser for command {cmd:?}"))?;
        return compare(got, expected_4lw(role, file, cmd));
    }
    Err("no expectation for this file".into())
}

#[test]
fn every_fixture_file_has_its_expected_outcome() {
    let files = fixture_files();
    assert!(files.len() >= 360, "fixture tree incomplete: {} files", files.len());
    let mut failures = Vec::new();
    let mut tally: BTreeMap<String, usize> = BTreeMap::new();
    for rel in &files {
        match check_file(rel) {
            Ok(what) => *tally.entry(what).or_default() += 1,
            Err(why) => failures.push(format!("{rel}: {why}")),
        }
    }
    assert!(failures.is_empty(), "{} of {} fixtures failed:\n{}", failures.len(), files.len(), failures.join("\n"));
    // Every state occurs in the captures.
    for state in ["Ok", "NotWhitelisted", "NotServing", "Empty", "UnknownCommand"] {
        assert!(tally.contains_key(state), "no fixture is {state}: {tally:?}");
    }
}

#[test]
fn the_state_rules_agree_with_the_readme_table() {
    // Spot checks of the walker's expectation table, so a wrong table cannot pass silently.
    let cases = [
        ("not-whitelisted/mntr.txt", Outcome::NotWhitelisted),
        ("not-whitelisted/srvr.txt", Outcome::Ok),
        ("quorum-lost/mntr.txt", Outcome::NotServing),
        ("quorum-lost/hash.txt", Outcome::NotServing),
        ("quorum-lost-observer/srvr.txt", Outcome::NotServing),
        ("quorum-lost/ruok.txt", Outcome::Ok),
        ("extras/sigstop/hung-leader-srvr.txt", Outcome::Empty),
        ("leader/unknown-command-abcd.txt", Outcome::Empty),
        ("extras/default-whitelist-ipv6/default-ruok.txt", Outcome::NotWhitelisted),
        ("extras/default-whitelist-ipv6/ipv6-wchc.txt", Outcome::Ok),
    ];
    for (rel, want) in cases {
        let file = rel.rsplit('/').next().unwrap();
        let got = parse_4lw(command_of(file), &read(rel)).unwrap();
        assert_eq!(got, want, "{rel}");
    }
    assert_eq!(
        adm(admin_json::parse_monitor(500, &read("quorum-lost/admin/monitor.json"))),
        Outcome::NotServing,
        "HTTP 500 Jetty NPE page"
    );
    assert_eq!(adm(admin_json::parse_monitor(200, &read("not-whitelisted/admin/monitor.json"))), Outcome::Ok);
}

// ---------------------------------------------------------------------------
// Values

fn ok<T, E: std::fmt::Debug>(r: Result<Reply<T>, E>) -> T {
    match r {
        Ok(Reply::Ok(v)) => v,
        Ok(other) => panic!("expected Ok, got {}", other.kind()),
        Err(e) => panic!("expected Ok, got {e:?}"),
    }
}

#[test]
fn srvr_values_per_role() {
    let leader = ok(parse::parse_srvr(&read("leader/srvr.txt")));
    assert_eq!(leader.zxid, 0x1_0000_0344);
    assert_eq!((leader.epoch(), leader.counter()), (1, 0x344));
    assert_eq!((parse::epoch(leader.zxid), parse::counter(leader.zxid)), (1, 0x344));
    assert_eq!(leader.mode, Mode::Leader);
    assert_eq!(
        (leader.version.as_str(), leader.build.as_str()),
        ("3.8.0", "3.8.0-${mvngit.commit.id}, built on 2024-12-29 17:54 UTC")
    );
    assert_eq!(leader.latency, parse::Latency { min: 0, avg: 2.6683, max: 65 });
    assert_eq!((leader.received, leader.sent, leader.connections, leader.outstanding), (1045, 1547, 3, 0));
    assert_eq!(leader.node_count, 459);
    assert_eq!(leader.proposal_sizes, Some(parse::ProposalSizes { last: 174, min: 48, max: 16480 }));
    assert!(!leader.read_only && leader.clients.is_none());

    for (rel, mode, zxid) in [
        ("follower/srvr.txt", Mode::Follower, 0x1_0000_0382),
        ("observer/srvr.txt", Mode::Observer, 0x1_0000_03b2),
        ("standalone/srvr.txt", Mode::Standalone, 0x184),
        ("not-whitelisted/srvr.txt", Mode::Standalone, 0),
        ("extras/default-whitelist-ipv6/default-srvr.txt", Mode::Standalone, 0),
        ("extras/read-only/srvr.txt", Mode::ReadOnly, 0),
        ("extras/sigstop/survivor-1-srvr.txt", Mode::Follower, 0x1_0000_0029),
        ("extras/sigstop/old-leader-after-sigcont-srvr.txt", Mode::Follower, 0x1_0000_0029),
        ("extras/srst/srvr.before.txt", Mode::Follower, 0x1_0000_0029),
    ] {
        let s = ok(parse::parse_srvr(&read(rel)));
        assert_eq!((s.mode, s.zxid), (mode, zxid), "{rel}");
        assert_eq!(s.proposal_sizes, None, "{rel}: proposal sizes are leader-only");
        assert_eq!(s.read_only, mode == Mode::ReadOnly, "{rel}");
    }
    // A freshly elected leader: new epoch, counter 0, no proposal yet.
    let new_leader = ok(parse::parse_srvr(&read("extras/sigstop/survivor-2-srvr.txt")));
    assert_eq!((new_leader.mode, new_leader.epoch(), new_leader.counter()), (Mode::Leader, 2, 0));
    assert_eq!(new_leader.proposal_sizes, Some(parse::ProposalSizes { last: -1, min: -1, max: -1 }));
    // srst zeroes the packet counters and latency.
    let after = ok(parse::parse_srvr(&read("extras/srst/srvr.after.txt")));
    assert_eq!((after.latency.avg, after.latency.max, after.received), (0.0, 0, 2));
}

#[test]
fn stat_clients_and_probe() {
    let stat = ok(parse::parse_stat(&read("leader/stat.txt")));
    assert_eq!((stat.mode, stat.zxid), (Mode::Leader, 0x1_0000_0344));
    let clients = stat.clients.expect("stat has a Clients block");
    assert_eq!(clients.len(), 3);
    assert_eq!(clients.iter().filter(|c| c.is_probe()).count(), 1);
    assert_eq!((clients[0].port, clients[0].interest_ops, clients[0].recved, clients[0].sent), (41620, 0, 1, 0));
    assert!(clients.iter().all(|c| c.session.is_none()), "stat prints no session fields");

    let ro = ok(parse::parse_stat(&read("extras/read-only/stat.txt")));
    assert!(ro.read_only);
    assert_eq!(ro.clients.as_deref().map(<[_]>::len), Some(1));

    let v6 = ok(parse::parse_stat(&read("extras/default-whitelist-ipv6/ipv6-stat.txt")));
    let v6_clients = v6.clients.unwrap();
    assert!(v6_clients.iter().all(|c| c.ip == IpAddr::V6(Ipv6Addr::LOCALHOST)));
    assert_eq!(v6_clients.iter().map(|c| c.port).collect::<Vec<_>>(), [57718, 57736]);
    assert_eq!(v6.latency.avg, 9.5);
}

#[test]
fn cons_values() {
    let cons = ok(parse::parse_cons(&read("leader/cons.txt")));
    assert_eq!(cons.len(), 3);
    let clients: Vec<_> = parse::client_connections(&cons).collect();
    assert_eq!(clients.len(), 2, "the probe's own [0] connection is excluded");
    let first = clients[0].session.as_ref().unwrap();
    assert_eq!(first.sid, 0x30000163eb10001);
    assert_eq!((first.lop.as_str(), first.est, first.to), ("GETC", 1_795_622_323_247, 10_000));
    assert_eq!((first.lcxid, first.lzxid, first.lresp), (Some(0x1e5), Some(0x1_0000_0340), 1_479_051));
    assert_eq!((first.llat, first.minlat, first.avglat, first.maxlat), (2, 0, 2.0, 65));
    let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
    assert_eq!(parse::connections_per_ip(parse::client_connections(&cons)), vec![(localhost, 2)]);
    assert_eq!(parse::connections_per_ip(&cons), vec![(localhost, 3)]);

    // After crst: lop=NA, lcxid omitted, lzxid 0xffffffffffffffff (none), lresp 0.
    let after = ok(parse::parse_cons(&read("leader/cons.after-crst.txt")));
    let reset = after[0].session.as_ref().unwrap();
    assert_eq!((reset.lop.as_str(), reset.lcxid, reset.lzxid, reset.lresp), ("NA", None, None, 0));
    let busy = after[1].session.as_ref().unwrap();
    assert_eq!((busy.lcxid, busy.lzxid), (Some(0x3d6), Some(0x1_0000_04f9)));
    let observer_after = ok(parse::parse_cons(&read("observer/cons.after-crst.txt")));
    assert_eq!(observer_after[0].session.as_ref().unwrap().lzxid, None);

    // Every cons capture has exactly one probe line.
    for rel in fixture_files().iter().filter(|f| f.ends_with("cons.txt") || f.ends_with("cons.after-crst.txt")) {
        if let Reply::Ok(c) = parse::parse_cons(&read(rel)).unwrap() {
            assert_eq!(c.iter().filter(|c| c.is_probe()).count(), 1, "{rel}");
        }
    }

    let v6 = ok(parse::parse_cons(&read("extras/default-whitelist-ipv6/ipv6-cons.txt")));
    assert_eq!(v6.len(), 2);
    assert_eq!((v6[0].ip, v6[0].port), (IpAddr::V6(Ipv6Addr::LOCALHOST), 57718));
    assert_eq!((v6[1].ip, v6[1].port, v6[1].is_probe()), (IpAddr::V6(Ipv6Addr::LOCALHOST), 57720, true));
    assert_eq!(v6[0].session.as_ref().map(|s| (s.lop.as_str(), s.lzxid)), Some(("PING", Some(2))));
    assert_eq!(parse::connections_per_ip(parse::client_connections(&v6)), vec![(IpAddr::V6(Ipv6Addr::LOCALHOST), 1)]);
}

#[test]
fn conf_values() {
    let leader = ok(parse::parse_conf(&read("leader/conf.txt")));
    assert_eq!((leader.client_port, leader.secure_client_port), (Some(21813), None));
    assert_eq!(leader.data_dir, "/var/lib/zk-fixture/ensemble/node3/data/version-2");
    assert_eq!((leader.data_dir_size, leader.data_log_size), (Some(67_109_517), Some(67_109_517)));
    assert_eq!((leader.tick_time, leader.max_client_cnxns), (2000, 200));
    assert_eq!((leader.min_session_timeout, leader.max_session_timeout), (4000, 40000));
    assert_eq!((leader.server_id, leader.init_limit, leader.sync_limit), (3, Some(10), Some(5)));
    assert_eq!((leader.election_alg, leader.peer_type), (Some(3), Some(LearnerType::Participant)));
    assert_eq!(leader.config_version, Some(0), "`version=0` without newline");
    let servers: Vec<_> = leader
        .servers
        .iter()
        .map(|s| (s.id, s.host.as_str(), s.peer_port, s.election_port, s.role, s.client_addr.clone()))
        .collect();
    assert_eq!(
        servers,
        vec![
            (1, "127.0.0.1", 22881, 23881, LearnerType::Participant, None),
            (2, "127.0.0.1", 22882, 23882, LearnerType::Participant, None),
            (3, "127.0.0.1", 22883, 23883, LearnerType::Participant, None),
            (4, "127.0.0.1", 22884, 23884, LearnerType::Observer, None),
        ]
    );
    assert_eq!((leader.voters(), leader.observers()), (3, 1));
    assert_eq!(leader.raw.get("electionPort").map(String::as_str), Some("23883"));
    assert!(!leader.raw.contains_key("membership"), "`membership: ` is not a key=value line");

    let observer = ok(parse::parse_conf(&read("observer/conf.txt")));
    assert_eq!((observer.server_id, observer.peer_type), (4, Some(LearnerType::Observer)));
    assert_eq!(observer.servers, leader.servers);

    let standalone = ok(parse::parse_conf(&read("standalone/conf.txt")));
    assert_eq!((standalone.server_id, standalone.client_port), (0, Some(21911)));
    assert_eq!((standalone.init_limit, standalone.sync_limit, standalone.peer_type), (None, None, None));
    assert!(standalone.servers.is_empty() && standalone.config_version.is_none());

    // Surprise: a read-only server's conf has the quorum block but no membership.
    let ro = ok(parse::parse_conf(&read("extras/read-only/conf.txt")));
    assert_eq!((ro.init_limit, ro.peer_type), (Some(10), Some(LearnerType::Participant)));
    assert!(ro.servers.is_empty() && ro.config_version.is_none());
}

#[test]
fn envi_values() {
    const MIB: u64 = 1024 * 1024;
    let e = ok(parse::parse_envi(&read("leader/envi.txt")));
    assert_eq!(
        (e.version.as_str(), e.host_name.as_deref(), e.java_version.as_deref()),
        ("3.8.0", Some("localhost"), Some("17.0.15"))
    );
    assert_eq!((e.memory_free, e.memory_max, e.memory_total), (Some(13 * MIB), Some(256 * MIB), Some(34 * MIB)));
    assert_eq!(e.heap_used(), Some(21 * MIB));
    assert_eq!(e.raw.get("java.compiler").map(String::as_str), Some("<NA>"));
    assert_eq!(e.raw.len(), 18);
    // envi works without quorum.
    let lost = ok(parse::parse_envi(&read("quorum-lost/envi.txt")));
    assert_eq!(lost.memory_free, Some(17 * MIB));
}

#[test]
fn mntr_values_per_role() {
    // (file, lines, text keys, zk_server_state)
    for (rel, lines, strings, state) in [
        ("leader/mntr.txt", 571, 3, Mode::Leader),
        ("follower/mntr.txt", 502, 3, Mode::Follower),
        ("observer/mntr.txt", 503, 3, Mode::Observer),
        ("standalone/mntr.txt", 495, 2, Mode::Standalone),
        ("extras/read-only/mntr.txt", 490, 2, Mode::ReadOnly),
    ] {
        let m = ok(parse::parse_mntr(&read(rel)));
        assert_eq!((m.len(), m.string_count(), m.number_count()), (lines, strings, lines - strings), "{rel}");
        assert_eq!(m.server_state(), Some(state), "{rel}");
        assert_eq!(m.version(), Some("3.8.0"), "{rel}");
        assert_eq!(m.string("zk_peer_state").is_some(), strings == 3, "{rel}: peer state only on quorum members");
    }
    let leader = ok(parse::parse_mntr(&read("leader/mntr.txt")));
    assert_eq!(leader.string("zk_peer_state"), Some("leading - broadcast"));
    assert_eq!(leader.get("zk_quorum_size"), Some(3.0));
    assert_eq!(leader.get("zk_synced_followers"), Some(2.0));
    assert_eq!(leader.get("zk_synced_observers"), Some(1.0));
    // Dynamic keys: per learner sid and per namespace.
    assert!(leader.get("zk_p999_4_learner_handler_qp_time_ms").is_some());
    assert!(leader.numbers().any(|(k, _)| k.ends_with("_zkalert_write_per_namespace")));

    let srst = ok(parse::parse_mntr(&read("extras/srst/mntr.after.txt")));
    assert_eq!(srst.get("zk_last_client_response_size"), Some(-1.0), "Java's -1 for none");

    let quota = ok(parse::parse_mntr(&read("extras/quota/leader-mntr.txt")));
    assert_eq!(quota.get("zk_zkalert_quota_count_limit_per_namespace"), Some(20.0));
    assert_eq!(quota.get("zk_zkalert_quota_bytes_limit_per_namespace"), Some(2000.0));
    assert_eq!(quota.get("zk_zkalert_quota_exceeded_error_per_namespace"), Some(11.0));
}

#[test]
fn admin_monitor_is_mntr_with_the_same_keys() {
    for role in ["leader", "follower", "observer", "standalone"] {
        let four = ok(parse::parse_mntr(&read(&format!("{role}/mntr.txt"))));
        let json = ok(admin_json::parse_monitor(200, &read(&format!("{role}/admin/monitor.json"))));
        let keys = |m: &parse::Mntr| -> (BTreeSet<String>, BTreeSet<String>) {
            (m.numbers().map(|(k, _)| k.to_string()).collect(), m.strings().map(|(k, _)| k.to_string()).collect())
        };
        assert_eq!(keys(&four), keys(&json), "{role}: same numeric and text keys");
        assert_eq!(json.server_state(), four.server_state());
    }
    let ro = ok(admin_json::parse_monitor(200, &read("extras/read-only/admin-monitor.json")));
    assert_eq!(ro.server_state(), Some(Mode::ReadOnly));
    // The HTTP request is not a ZooKeeper connection.
    assert_eq!(ro.get("zk_num_alive_connections"), Some(0.0));
    // monitor works where mntr is not whitelisted.
    let nw = ok(admin_json::parse_monitor(200, &read("not-whitelisted/admin/monitor.json")));
    assert_eq!(nw.server_state(), Some(Mode::Standalone));
    let quota = ok(admin_json::parse_monitor(200, &read("extras/quota/leader-monitor.json")));
    assert_eq!(quota.get("zk_zkalert_quota_count_limit_per_namespace"), Some(20.0));
    // Status and body from the raw HTTP capture.
    let raw = read("quorum-lost-observer/admin/monitor.with-headers.txt");
    let (status, body) = admin_json::split_http_response(&raw).unwrap();
    assert_eq!(status, 500);
    assert_eq!(admin_json::parse_monitor(status, body), Ok(Reply::NotServing));
}

#[test]
fn admin_stats_values() {
    let stat = ok(admin_json::parse_stats(200, &read("leader/admin/stat.json")));
    let s = &stat.srvr;
    assert_eq!((s.mode, s.zxid, s.epoch(), s.version.as_str()), (Mode::Leader, 4_294_968_174, 1, "3.8.0"));
    assert_eq!(s.latency, parse::Latency { min: 0, avg: 2.695, max: 65 });
    assert_eq!((s.received, s.sent, s.connections, s.node_count), (1138, 1695, 2, 459));
    assert_eq!(s.proposal_sizes, Some(parse::ProposalSizes { last: 174, min: 48, max: 16480 }));
    assert_eq!(s.clients.as_ref().map(|c| parse::client_connections(c).count()), Some(2), "no probe via HTTP");
    assert_eq!((stat.uptime_ms, stat.fsync_threshold_exceed_count), (Some(22905), Some(0)));

    let srvr = ok(admin_json::parse_stats(200, &read("leader/admin/srvr.json")));
    assert!(srvr.srvr.clients.is_none(), "server_stats has no connection list");

    let standalone = ok(admin_json::parse_stats(200, &read("standalone/admin/stats.json")));
    assert_eq!(
        (standalone.srvr.mode, standalone.srvr.zxid, standalone.srvr.proposal_sizes),
        (Mode::Standalone, 391, None)
    );

    let ro = ok(admin_json::parse_stats(200, &read("extras/read-only/admin-stats.json")));
    assert_eq!((ro.srvr.mode, ro.srvr.read_only), (Mode::ReadOnly, true));

    assert_eq!(admin_json::parse_stats(200, &read("quorum-lost/admin/stats.json")), Ok(Reply::NotServing));
}

#[test]
fn admin_is_read_only_and_connections() {
    assert_eq!(
        admin_json::parse_is_read_only(200, &read("leader/admin/is_read_only.json")),
        Ok(Reply::Ok(Isro::ReadWrite))
    );
    assert_eq!(
        admin_json::parse_is_read_only(200, &read("extras/read-only/admin-is_read_only.json")),
        Ok(Reply::Ok(Isro::ReadOnly))
    );
    assert_eq!(
        admin_json::parse_is_read_only(200, &read("quorum-lost/admin/is_read_only.json")),
        Ok(Reply::NotServing)
    );
    // 4lw isro says `null` instead.
    assert_eq!(parse::parse_isro(&read("quorum-lost/isro.txt")), Ok(Reply::Ok(Isro::NotServing)));
    assert_eq!(parse::parse_isro(&read("extras/read-only/isro.txt")), Ok(Reply::Ok(Isro::ReadOnly)));
    // 4lw ruok says imok without quorum; the AdminServer's ruok does not.
    assert_eq!(parse::parse_ruok(&read("quorum-lost/ruok.txt")), Ok(Reply::Ok(true)));
    assert_eq!(admin_json::parse_envelope(200, &read("quorum-lost/admin/ruok.json")), Ok(Reply::NotServing));

    let conns = ok(admin_json::parse_connections(200, &read("leader/admin/connections.json")));
    assert_eq!(conns.len(), 2);
    let s = conns[0].session.as_ref().unwrap();
    // The same session as in 4lw cons, decimal here.
    assert_eq!((s.sid, s.lop.as_str(), s.lcxid, s.lzxid), (0x30000163eb10001, "GETC", Some(536), Some(4_294_968_177)));
    assert_eq!((conns[0].ip, conns[0].port), (IpAddr::V4(Ipv4Addr::LOCALHOST), 60164));
}

#[test]
fn zxid_spellings_across_the_fixtures() {
    // hash lines (hex without 0x) and admin hash (decimal numbers) name the same zxids.
    let four = ok(parse::parse_hash(&read("leader/hash.txt")));
    assert_eq!(four.len(), 6);
    assert_eq!(four[0], parse::Digest { zxid: 0x1_0000_0080, digest: 271_558_066_191 });
    let json = ok(admin_json::parse_envelope(200, &read("leader/admin/hash.json")));
    let digests = json["digests"].as_array().unwrap();
    let from_json: Vec<parse::Digest> = digests
        .iter()
        .map(|d| parse::Digest {
            zxid: admin_json::zxid_from_json(&d["zxid"]).unwrap(),
            digest: d["digest"].as_u64().unwrap(),
        })
        .collect();
    assert_eq!(four, from_json);
    assert_eq!(ok(parse::parse_hash(&read("standalone/hash.txt")))[0].zxid, 0x80);

    // zabstate: "0x…" string; last_snapshot: hex string without 0x; stats: decimal number.
    let zab = ok(admin_json::parse_envelope(200, &read("leader/admin/zabstate.json")));
    let last = admin_json::zxid_from_json(&zab["last_zxid"]).unwrap();
    assert_eq!(last, 0x1_0000_037c);
    assert_eq!(
        (u64::from(parse::epoch(last)), u64::from(parse::counter(last))),
        (zab["zab_epoch"].as_u64().unwrap(), zab["zab_counter"].as_u64().unwrap())
    );
    let snap = ok(admin_json::parse_envelope(200, &read("leader/admin/last_snapshot.json")));
    assert_eq!(admin_json::zxid_from_json(&snap["zxid"]), Some(0));
    assert_eq!(parse::parse_zxid("100000000"), Some(0x1_0000_0000), "last_snapshot's spelling is hex");
    let stats = ok(admin_json::parse_envelope(200, &read("follower/admin/stats.json")));
    assert_eq!(admin_json::zxid_from_json(&stats["server_stats"]["last_processed_zxid"]).map(parse::epoch), Some(1));
    let observers = ok(admin_json::parse_envelope(200, &read("leader/admin/observers.json")));
    let obs_zxid = admin_json::zxid_from_json(&observers["observers"][0]["last_zxid"]).unwrap();
    assert_eq!(parse::epoch(obs_zxid), 1);
}

#[test]
fn small_replies() {
    assert_eq!(parse::parse_gtmk(&read("leader/gtmk.txt")), Ok(Reply::Ok(306)));
    assert_eq!(parse::parse_reset(&read("leader/crst.txt")), Ok(Reply::Ok(())));
    assert_eq!(parse::parse_reset(&read("standalone/srst.txt")), Ok(Reply::Ok(())));
    assert_eq!(
        parse::parse_dirs(&read("leader/dirs.txt")),
        Ok(Reply::Ok(parse::Dirs { datadir_size: 67_109_517, logdir_size: 67_109_517 }))
    );
    assert_eq!(
        parse::parse_wchs(&read("leader/wchs.txt")),
        Ok(Reply::Ok(parse::Wchs { connections: 2, paths: 109, total_watches: 120 }))
    );
    assert_eq!(
        parse::parse_wchs(&read("extras/read-only/wchs.txt")).map(|r| r.ok().map(|w| w.total_watches)),
        Ok(Some(0))
    );
    assert_eq!(parse::parse_text(&read("extras/default-whitelist-ipv6/ipv6-wchc.txt")), Reply::Ok("\n".into()));
}

// ---------------------------------------------------------------------------
// No panics

/// Runs every parser on `bytes` and checks the invariants that must hold
/// whatever the input.
fn run_every_parser(bytes: &[u8]) -> Result<(), TestCaseError> {
    let state = parse::classify(bytes);
    prop_assert_eq!(matches!(state, Reply::Empty), bytes.is_empty());
    let state = state.kind();
    // Every 4lw parser agrees with the classifier on the non-Ok states.
    let outcomes = [
        parse::parse_mntr(bytes).as_ref().map(Reply::kind).map_err(|e| e.clone()),
        parse::parse_srvr(bytes).as_ref().map(Reply::kind).map_err(|e| e.clone()),
        parse::parse_stat(bytes).as_ref().map(Reply::kind).map_err(|e| e.clone()),
        parse::parse_cons(bytes).as_ref().map(Reply::kind).map_err(|e| e.clone()),
        parse::parse_conf(bytes).as_ref().map(Reply::kind).map_err(|e| e.clone()),
        parse::parse_envi(bytes).as_ref().map(Reply::kind).map_err(|e| e.clone()),
        parse::parse_ruok(bytes).as_ref().map(Reply::kind).map_err(|e| e.clone()),
        parse::parse_isro(bytes).as_ref().map(Reply::kind).map_err(|e| e.clone()),
        parse::parse_gtmk(bytes).as_ref().map(Reply::kind).map_err(|e| e.clone()),
        parse::parse_reset(bytes).as_ref().map(Reply::kind).map_err(|e| e.clone()),
        parse::parse_dirs(bytes).as_ref().map(Reply::kind).map_err(|e| e.clone()),
        parse::parse_wchs(bytes).as_ref().map(Reply::kind).map_err(|e| e.clone()),
        parse::parse_hash(bytes).as_ref().map(Reply::kind).map_err(|e| e.clone()),
        Ok(parse::parse_text(bytes).kind()),
    ];
    for o in &outcomes {
        match o {
            Ok(kind) => prop_assert_eq!(*kind, state),
            Err(e) => prop_assert_eq!(state, "ok", "{}", e),
        }
    }
    if let Ok(Reply::Ok(m)) = parse::parse_mntr(bytes) {
        prop_assert!(!m.is_empty(), "a parsed mntr is never an empty set");
    }
    let text = String::from_utf8_lossy(bytes);
    let _ = parse::parse_zxid(&text);
    let _ = parse::parse_java_number(&text);
    let _ = parse::parse_memory(&text);
    let _ = parse::short_version(&text);
    for status in [200, 500, 404] {
        let _ = admin_json::parse_envelope(status, bytes);
        let _ = admin_json::parse_monitor(status, bytes);
        let _ = admin_json::parse_stats(status, bytes);
        let _ = admin_json::parse_is_read_only(status, bytes);
        let _ = admin_json::parse_connections(status, bytes);
    }
    let _ = admin_json::parse_command_list(bytes);
    let _ = admin_json::split_http_response(bytes);
    Ok(())
}

/// All fixture contents, loaded once.
fn corpus() -> &'static [Vec<u8>] {
    static CORPUS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    CORPUS.get_or_init(|| fixture_files().iter().map(|f| read(f)).collect())
}

/// Text made of the pieces these formats are built from.
fn zk_shaped() -> impl Strategy<Value = Vec<u8>> {
    let atoms = prop::sample::select(vec![
        "zk_avg_latency\t",
        "zk_version\t",
        "1.0E-4",
        "-1",
        "NaN",
        "0x",
        "ffffffffffffffff",
        "\n",
        "\t",
        " ",
        ":",
        "=",
        "/",
        "[",
        "]",
        "(",
        ")",
        ",",
        "%",
        " /127.0.0.1:1[0](queued=0,recved=1,sent=0)",
        " /[0:0:0:0:0:0:0:1]:57718[1](",
        "sid=0x1,lop=NA,est=1,to=1,lzxid=0xffffffffffffffff,lresp=0,llat=0,minlat=0,avglat=0,maxlat=0",
        "Zxid: ",
        "Mode: leader",
        "Latency min/avg/max: 0/1.0E-4/0",
        "Clients:",
        "server.1=127.0.0.1:22881:23881:participant",
        ";",
        "|",
        "membership: ",
        "os.memory.free=14MB",
        "{\"error\" : null, ",
        "\"server_stats\" : {",
        "}",
        "\"",
        "This ZooKeeper instance is not currently serving requests",
        " is not executed because it is not in the whitelist.",
        "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n",
        "é",
        "\u{0}",
        "99999999999999999999999",
    ]);
    prop::collection::vec(atoms, 0..40).prop_map(|v| v.concat().into_bytes())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        run_every_parser(&bytes)?;
    }

    #[test]
    fn zk_shaped_text_never_panics(bytes in zk_shaped()) {
        run_every_parser(&bytes)?;
    }

    #[test]
    fn mutated_fixtures_never_panic(
        file in any::<prop::sample::Index>(),
        kind in 0u8..5,
        at in any::<prop::sample::Index>(),
        len in 0usize..64,
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let corpus = corpus();
        let mut bytes = corpus[file.index(corpus.len())].clone();
        let n = bytes.len().max(1);
        let pos = at.index(n).min(bytes.len());
        match kind {
            // Truncate (a reply cut by a time-out).
            0 => bytes.truncate(pos),
            // Flip bytes.
            1 => {
                for (i, b) in &flips {
                    let i = i.index(n);
                    if let Some(slot) = bytes.get_mut(i) {
                        *slot ^= b | 1;
                    }
                }
            }
            // Insert bytes.
            2 => {
                let insert: Vec<u8> = flips.iter().map(|(_, b)| *b).collect();
                bytes.splice(pos..pos, insert);
            }
            // Delete a range.
            3 => {
                let end = (pos + len).min(bytes.len());
                bytes.drain(pos..end);
            }
            // Duplicate a range (repeated lines / keys).
            _ => {
                let end = (pos + len).min(bytes.len());
                let copy = bytes[pos..end].to_vec();
                bytes.splice(end..end, copy);
            }
        }
        run_every_parser(&bytes)?;
    }
}
