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
            MissingRunbook::Mark { runbook: r } => *r = runbook,
            MissingRunbook::Accept => {
                let pos = get("default_runbook").map_or(n.pos, |v| v.pos);
                r.error(pos, "default_runbook is for `runbooks: mark`; with `accept` alerts keep no runbook");
            }
        }
    }
    config
}
