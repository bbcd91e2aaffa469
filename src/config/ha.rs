//! The `ha:` section: replicas coordinated through a ZooKeeper ensemble
//! (leader election, shared notification state; docs/ha.md).

use super::is_host_port;
use crate::yaml::{Node, Reader};
use std::time::Duration;

/// How replicas find each other and who sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaConfig {
    /// `host:port` of each coordination server.
    pub zookeeper: Vec<String>,
    /// Absolute znode path under which this deployment's replicas meet
    /// (`<root>/election`, `<root>/state`).
    pub root: String,
    pub session_timeout: Duration,
    /// This replica's name (default: the host name).
    pub replica: String,
    /// This replica's API URL, shown to the other replicas.
    pub advertise_url: Option<String>,
    pub on_coordination_loss: CoordinationLoss,
    /// With `hold`: how long a replica cut off from the coordination
    /// ensemble keeps its last role before every replica pages on its own.
    pub hold_for: Duration,
}

/// What a replica does when it cannot reach the coordination ensemble.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CoordinationLoss {
    /// Fail open: every replica that lost coordination sends on its own.
    #[default]
    Page,
    /// Keep the last role for a grace period, then page.
    Hold,
}

/// ZooKeeper servers negotiate the session timeout into
/// [2, 20] × tickTime; below 2 s a replica would flap on every GC pause,
/// above 60 s a dead active replica would leave everyone unpaged too long.
pub const MIN_SESSION_TIMEOUT: Duration = Duration::from_secs(2);
pub const MAX_SESSION_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(10);

/// `hold_for`: at least the session timeout (sooner, the replica's session
/// may still be alive), at most an hour of pages held by a lost ensemble.
pub const DEFAULT_HOLD_FOR: Duration = Duration::from_secs(60);
pub const MAX_HOLD_FOR: Duration = Duration::from_secs(3600);

/// Longest replica name: it is stored in every election znode.
const MAX_REPLICA_NAME: usize = 128;

const KEYS: &[&str] =
    &["zookeeper", "root", "session_timeout", "replica", "advertise_url", "on_coordination_loss", "hold_for"];

pub(super) fn read(r: &mut Reader, n: &Node) -> Option<HaConfig> {
    let mut zookeeper = Vec::new();
    let mut root = None;
    let mut session_timeout = DEFAULT_SESSION_TIMEOUT;
    let mut replica = None;
    let mut advertise_url = None;
    let mut on_coordination_loss = CoordinationLoss::default();
    let mut hold_for = (DEFAULT_HOLD_FOR, None);
    let mut ok = true;
    for (key, v) in r.map(n, "ha", KEYS) {
        match key {
            "zookeeper" => {
                for host in r.seq(v, "ha.zookeeper") {
                    let Some(addr) = r.string(host, "ha.zookeeper entry") else { continue };
                    if !is_host_port(&addr) {
                        r.error(host.pos, format!("ha.zookeeper: {addr:?} must be host:port"));
                        ok = false;
                    }
                    zookeeper.push(addr);
                }
            }
            "root" => {
                let Some(path) = r.string(v, "ha.root") else { continue };
                if let Err(why) = check_znode_path(&path) {
                    r.error(v.pos, format!("ha.root: {path:?} {why}"));
                    ok = false;
                }
                root = Some(path);
            }
            "session_timeout" => {
                let Some(d) = r.duration(v, "ha.session_timeout") else { continue };
                if !(MIN_SESSION_TIMEOUT..=MAX_SESSION_TIMEOUT).contains(&d) {
                    let fmt = crate::duration::format_duration;
                    let (lo, hi) = (fmt(MIN_SESSION_TIMEOUT), fmt(MAX_SESSION_TIMEOUT));
                    r.error(v.pos, format!("ha.session_timeout: {} must be from {lo} to {hi}", fmt(d)));
                    ok = false;
                }
                session_timeout = d;
            }
            "replica" => {
                let Some(name) = r.string(v, "ha.replica") else { continue };
                if name.is_empty() || name.len() > MAX_REPLICA_NAME || name.chars().any(char::is_control) {
                    r.error(
                        v.pos,
                        format!("ha.replica: {name:?} must be 1 to {MAX_REPLICA_NAME} printable characters"),
                    );
                    ok = false;
                }
                replica = Some(name);
            }
            "advertise_url" => advertise_url = super::url(r, v, "ha.advertise_url"),
            "hold_for" => {
                if let Some(d) = r.duration(v, "ha.hold_for") {
                    hold_for = (d, Some(v.pos));
                }
            }
            _ => match r.string(v, "ha.on_coordination_loss").as_deref() {
                Some("page") => on_coordination_loss = CoordinationLoss::Page,
                Some("hold") => on_coordination_loss = CoordinationLoss::Hold,
                Some(other) => {
                    r.error(v.pos, format!("ha.on_coordination_loss: {other:?} must be page or hold"));
                    ok = false;
                }
                None => {}
            },
        }
    }
    if zookeeper.is_empty() {
        r.error(n.pos, "ha needs `zookeeper` (host:port of each coordination server)");
        ok = false;
    }
    if root.is_none() {
        r.error(n.pos, "ha needs `root` (a znode path like /zkalert/prod)");
        ok = false;
    }
    if let (d, Some(pos)) = hold_for
        && !(session_timeout..=MAX_HOLD_FOR).contains(&d)
    {
        let fmt = crate::duration::format_duration;
        let why = format!("must be from the session timeout ({}) to {}", fmt(session_timeout), fmt(MAX_HOLD_FOR));
        r.error(pos, format!("ha.hold_for: {} {why}", fmt(d)));
        ok = false;
    }
    let replica = replica.unwrap_or_else(default_replica_name);
    ok.then(|| HaConfig {
        zookeeper,
        root: root.unwrap_or_default(),
        session_timeout,
        replica,
        advertise_url,
        on_coordination_loss,
        hold_for: hold_for.0,
    })
}

/// ZooKeeper's own path rules (PathUtils.validatePath), plus: not `/`
/// itself (replicas' znodes would mix with everything else).
fn check_znode_path(path: &str) -> Result<(), &'static str> {
    if !path.starts_with('/') {
        return Err("must be an absolute znode path (start with /)");
    }
    if path == "/" {
        return Err("must not be / itself: give this deployment its own node, like /zkalert/prod");
    }
    if path.ends_with('/') {
        return Err("must not end with /");
    }
    if path.split('/').skip(1).any(|c| c.is_empty() || c == "." || c == "..") {
        return Err("has an empty, . or .. component");
    }
    if path.chars().any(|c| c.is_control() || c == '\u{fffe}' || c == '\u{ffff}') {
        return Err("has a control character");
    }
    if path == "/zookeeper" || path.starts_with("/zookeeper/") {
        return Err("is under ZooKeeper's reserved /zookeeper");
    }
    Ok(())
}

/// The host name (`/proc/sys/kernel/hostname`, `HOSTNAME`), else
/// `zkalert`: a replica needs some name, and two replicas on one host
/// must be told apart by `ha.replica` anyway.
fn default_replica_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "zkalert".to_string())
}

#[cfg(test)]
mod tests {
    use super::super::{Config, tests::SOURCES, tests::problems};
    use super::*;
    use crate::test_support::assert_contains_all;
    use std::path::Path;

    #[test]
    fn reads_every_field_and_defaults() {
        let text = format!(
            "{SOURCES}ha:\n  zookeeper: ['c1:2181', 'c2:2181']\n  root: /zkalert/prod\n  session_timeout: 6s\n  replica: r1\n  advertise_url: 'http://r1:9097'\n  on_coordination_loss: hold\n  hold_for: 2m\n"
        );
        let c = Config::parse(&text, Path::new("z.yaml")).unwrap();
        let want = HaConfig {
            zookeeper: vec!["c1:2181".into(), "c2:2181".into()],
            root: "/zkalert/prod".into(),
            session_timeout: Duration::from_secs(6),
            replica: "r1".into(),
            advertise_url: Some("http://r1:9097".into()),
            on_coordination_loss: CoordinationLoss::Hold,
            hold_for: Duration::from_secs(120),
        };
        assert_eq!(c.ha, Some(want));
        let text = format!("{SOURCES}ha: {{zookeeper: ['c1:2181'], root: /z}}\n");
        let ha = Config::parse(&text, Path::new("z.yaml")).unwrap().ha.unwrap();
        assert_eq!(ha.session_timeout, DEFAULT_SESSION_TIMEOUT);
        assert_eq!(ha.on_coordination_loss, CoordinationLoss::Page);
        assert_eq!(ha.hold_for, DEFAULT_HOLD_FOR);
        assert!(!ha.replica.is_empty());
        assert!(Config::parse(SOURCES, Path::new("z.yaml")).unwrap().ha.is_none());
    }

    #[test]
    fn every_problem_at_its_position() {
        let text = format!(
            "{SOURCES}ha:\n  zookeeper: [c1, 'c2:2181']\n  root: zkalert//x\n  session_timeout: 1s\n  replica: ''\n  advertise_url: ftp://r1\n  on_coordination_loss: panic\n  sesion_timeout: 5s\n  hold_for: 2h\n"
        );
        let want = [
            "z.yaml:4:15: ha.zookeeper: \"c1\" must be host:port",
            "z.yaml:5:9: ha.root: \"zkalert//x\" must be an absolute znode path",
            "z.yaml:6:20: ha.session_timeout: 1s must be from 2s to 1m",
            "z.yaml:7:12: ha.replica: \"\" must be 1 to 128 printable characters",
            "z.yaml:8:18: ha.advertise_url: \"ftp://r1\" must start with http://",
            "z.yaml:9:25: ha.on_coordination_loss: \"panic\" must be page or hold",
            "z.yaml:10:3: unknown field \"sesion_timeout\" in ha (did you mean \"session_timeout\"?)",
            "z.yaml:11:13: ha.hold_for: 2h must be from the session timeout (1s) to 1h",
        ];
        assert_contains_all(&problems(&text, Path::new("z.yaml")), &want);
        let text = format!("{SOURCES}ha: {{session_timeout: 2m, hold_for: 30s}}\n");
        let want = [
            "z.yaml:3:5: ha needs `zookeeper`",
            "z.yaml:3:5: ha needs `root`",
            "ha.session_timeout: 2m must be from 2s to 1m",
            "ha.hold_for: 30s must be from the session timeout (2m) to 1h",
        ];
        assert_contains_all(&problems(&text, Path::new("z.yaml")), &want);
    }

    #[test]
    fn root_paths() {
        for bad in ["/", "/a/", "/a//b", "/a/./b", "/a/../b", "/zookeeper/x", "/a\u{1}"] {
            assert!(check_znode_path(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["/zkalert", "/zkalert/prod-1", "/a.b/c..d"] {
            assert_eq!(check_znode_path(good), Ok(()), "{good:?}");
        }
    }
}
