//! The `intake` section of `zkalert.yaml`: how alerts posted to the
//! Alertmanager API (`POST /api/v2/alerts`, e.g. by Prometheus) become
//! zkalert alerts, and who may post them without the API token
//! (docs/alertmanager.md).

use crate::intake::{IntakePolicy, MissingRunbook};
use crate::model::Severity;
use crate::yaml::{Node, Reader};
use ipnet::IpNet;
use std::net::IpAddr;

/// The intake's settings; without an `intake` section, the defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct IntakeConfig {
    pub policy: IntakePolicy,
    /// Posts from these networks need no bearer token (default: loopback
    /// only); posts from elsewhere need it, as every other write.
    pub allow_from: Vec<IpNet>,
}

impl Default for IntakeConfig {
    fn default() -> Self {
        let loopback = ["127.0.0.0/8", "::1/128"].map(|n| n.parse().expect("a network"));
        Self { policy: IntakePolicy::default(), allow_from: loopback.to_vec() }
    }
}

impl IntakeConfig {
    /// Whether a post from `peer` may skip the token.
    pub fn trusts(&self, peer: IpAddr) -> bool {
        let peer = match peer {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer, IpAddr::V4),
            v4 => v4,
        };
        self.allow_from.iter().any(|n| n.contains(&peer))
    }
}

pub(super) fn read(r: &mut Reader, n: &Node) -> IntakeConfig {
    let known = ["resolve_timeout", "allow_from", "severities", "default_tier", "runbooks", "default_runbook"];
    let mut config = IntakeConfig::default();
    let fields = r.map(n, "intake", &known);
    let get = |k: &str| fields.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
    if let Some(v) = get("resolve_timeout")
        && let Some(d) = super::positive_duration(r, v, "resolve_timeout")
    {
        config.policy.resolve_timeout = d;
    }
    if let Some(v) = get("allow_from") {
        config.allow_from = r
            .seq(v, "allow_from")
            .iter()
            .filter_map(|item| {
                let text = r.string(item, "allow_from entry")?;
                // A bare address is a network of one.
                let parsed = text.parse::<IpNet>().or_else(|_| text.parse::<IpAddr>().map(IpNet::from));
                parsed
                    .map_err(|_| {
                        r.error(item.pos, format!("allow_from: {text:?} is not a network (10.0.0.0/8) or an address"))
                    })
                    .ok()
            })
            .collect();
    }
    let tier = |r: &mut Reader, v: &Node, what: &str| -> Option<Severity> {
        let text = r.string(v, what)?;
        text.parse::<Severity>().map_err(|_| r.error(v.pos, format!("{what}: {text:?} is not a tier (P0-P3)"))).ok()
    };
    if let Some(v) = get("severities") {
        for (name, value) in r.map(v, "severities", &[]) {
            if let Some(t) = tier(r, value, &format!("severities.{name}")) {
                config.policy.severities.insert(name.to_ascii_lowercase(), t);
            }
        }
    }
    if let Some(v) = get("default_tier")
        && let Some(t) = tier(r, v, "default_tier")
    {
        config.policy.default_tier = t;
    }
    let default_runbook = get("default_runbook").and_then(|v| r.string(v, "default_runbook"));
    match get("runbooks").map(|v| (v, r.string(v, "runbooks"))) {
        None => {}
        Some((_, Some(mode))) if mode == "mark" => {}
        Some((_, Some(mode))) if mode == "accept" => config.policy.missing_runbook = MissingRunbook::Accept,
        Some((v, Some(mode))) => r.error(v.pos, format!("runbooks: {mode:?}; expected mark or accept")),
        Some((_, None)) => {}
    }
    if let Some(runbook) = default_runbook {
        match &mut config.policy.missing_runbook {
            MissingRunbook::Mark { runbook: r } => *r = runbook.into(),
            MissingRunbook::Accept => {
                let pos = get("default_runbook").map_or(n.pos, |v| v.pos);
                r.error(pos, "default_runbook is for `runbooks: mark`; with `accept` alerts keep no runbook");
            }
        }
    }
    config
}

#[cfg(test)]
mod tests {
    use super::super::tests::{SOURCES, problems};
    use crate::config::Config;
    use crate::intake::{DEFAULT_RUNBOOK, MissingRunbook};
    use crate::model::Severity;
    use crate::test_support::assert_contains_all;
    use std::path::Path;
    use std::time::Duration;

    #[test]
    fn defaults_and_every_field() {
        let c = Config::parse(SOURCES, Path::new("z.yaml")).unwrap().intake;
        assert_eq!(c.policy.resolve_timeout, Duration::from_secs(300));
        assert_eq!(c.policy.missing_runbook, MissingRunbook::Mark { runbook: DEFAULT_RUNBOOK.into() });
        assert!(c.trusts("127.0.0.1".parse().unwrap()) && c.trusts("::1".parse().unwrap()));
        assert!(c.trusts("::ffff:127.0.0.1".parse().unwrap()), "an IPv4 peer on a dual-stack socket");
        assert!(!c.trusts("10.1.2.3".parse().unwrap()));
        let text = format!(
            "{SOURCES}intake:\n  resolve_timeout: 10m\n  allow_from: [10.0.0.0/8, 192.168.1.7]\n  severities: {{Disaster: P0, critical: P0}}\n  default_tier: P3\n  default_runbook: https://wiki/unknown\n"
        );
        let c = Config::parse(&text, Path::new("z.yaml")).unwrap().intake;
        assert_eq!(c.policy.resolve_timeout, Duration::from_secs(600));
        assert!(c.trusts("10.1.2.3".parse().unwrap()) && c.trusts("192.168.1.7".parse().unwrap()));
        assert!(!c.trusts("127.0.0.1".parse().unwrap()), "allow_from replaces the default");
        assert_eq!(c.policy.tier_of(Some("disaster")), (Severity::P0, true));
        assert_eq!(c.policy.tier_of(Some("critical")), (Severity::P0, true));
        assert_eq!(c.policy.tier_of(Some("warning")), (Severity::P2, true), "merged over the defaults");
        assert_eq!(c.policy.tier_of(Some("sev9")), (Severity::P3, false));
        assert_eq!(c.policy.missing_runbook, MissingRunbook::Mark { runbook: "https://wiki/unknown".into() });
        let accept = format!("{SOURCES}intake: {{runbooks: accept}}\n");
        let c = Config::parse(&accept, Path::new("z.yaml")).unwrap().intake;
        assert_eq!(c.policy.missing_runbook, MissingRunbook::Accept);
        // Intake only: a server and no sources.
        let intake_only = "server: {listen: '127.0.0.1:9097'}\n";
        assert!(Config::parse(intake_only, Path::new("z.yaml")).unwrap().sources.is_empty());
    }

    #[test]
    fn problems_at_their_positions() {
        let text = format!(
            "{SOURCES}intake:\n  resolve_timeout: 0s\n  allow_from: [10.0.0.0/33, nowhere]\n  severities: {{critical: P5}}\n  default_tier: high\n  runbooks: maybe\n  resolve_timout: 1m\n"
        );
        let err = problems(&text, Path::new("z.yaml"));
        let want = [
            "z.yaml:4:20: resolve_timeout must be greater than zero",
            "z.yaml:5:16: allow_from: \"10.0.0.0/33\" is not a network (10.0.0.0/8) or an address",
            "z.yaml:5:29: allow_from: \"nowhere\" is not a network (10.0.0.0/8) or an address",
            "z.yaml:6:26: severities.critical: \"P5\" is not a tier (P0-P3)",
            "z.yaml:7:17: default_tier: \"high\" is not a tier (P0-P3)",
            "z.yaml:8:13: runbooks: \"maybe\"; expected mark or accept",
            "z.yaml:9:3: unknown field \"resolve_timout\" in intake (did you mean \"resolve_timeout\"?)",
        ];
        assert_contains_all(&err, &want);
        assert_eq!(err.lines().count(), want.len(), "{err}");
        let both = format!("{SOURCES}intake: {{runbooks: accept, default_runbook: x}}\n");
        assert_contains_all(&problems(&both, Path::new("z.yaml")), &["default_runbook is for `runbooks: mark`"]);
        assert_contains_all(
            &problems("notifiers: []\n", Path::new("z.yaml")),
            &["config has no `sources` and no `server`: nothing to watch, nowhere to take alerts from"],
        );
    }
}
