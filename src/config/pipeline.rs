//! The notification half of `zkalert.yaml`: `routing` (tiers, grouping,
//! sub-routes, digest), `inhibit_rules` and `maintenance` windows, read into
//! the pipeline's types with every problem at `path:line:col`.

use crate::diag::Pos;
use crate::model::Severity;
use crate::pipeline::{
    InhibitRule, MaintenanceError, MaintenanceWindow, Matchers, PipelineConfig, Policy, Route, Schedule, ScheduleError,
    TierPolicy, inhibit,
};
use crate::yaml::{Node, NodeKind, Reader};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The raw sections, read before the notifiers are known.
#[derive(Default)]
pub(super) struct Sections<'n> {
    pub routing: Option<&'n Node>,
    pub inhibit_rules: Option<&'n Node>,
    pub maintenance: Option<&'n Node>,
}

/// Builds the pipeline config; `notifiers` are the configured channel names.
pub(super) fn read(r: &mut Reader, s: &Sections, notifiers: &[String]) -> PipelineConfig {
    let policy = match s.routing {
        Some(n) => routing(r, n, notifiers),
        None => Policy::seed_defaults_to(notifiers),
    };
    let (inhibit_rules, inhibit_from_rule_files) = match s.inhibit_rules {
        Some(n) => inhibit_rules(r, n),
        None => (inhibit::default_rules(), true),
    };
    let maintenance = s.maintenance.map(|n| maintenance(r, n)).unwrap_or_default();
    PipelineConfig { policy: Arc::new(policy), inhibit_rules, inhibit_from_rule_files, maintenance, watchdog: false }
}

fn matchers(r: &mut Reader, n: &Node, what: &str) -> Option<Matchers> {
    let text = r.string(n, what)?;
    match Matchers::parse(&text) {
        Ok(m) => Some(m),
        Err(e) => {
            r.error(n.pos, format!("{what}: {e}"));
            None
        }
    }
}

fn names(r: &mut Reader, n: &Node, what: &str, notifiers: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for item in r.seq(n, what) {
        if let Some(name) = r.string(item, what) {
            if !notifiers.contains(&name) {
                r.error(item.pos, format!("{what}: no notifier named {name:?} (configured: {})", notifiers.join(", ")));
            }
            out.push(name);
        }
    }
    out
}

fn tier_key(r: &mut Reader, key: &str, pos: Pos) -> Option<Severity> {
    match key.parse() {
        Ok(t) => Some(t),
        Err(e) => {
            r.error(pos, format!("{e}"));
            None
        }
    }
}

fn routing(r: &mut Reader, n: &Node, notifiers: &[String]) -> Policy {
    let mut policy = Policy::seed_defaults_to(notifiers);
    for (key, value) in r.map(n, "routing", &["group_by", "tiers", "routes"]) {
        match key {
            "group_by" => {
                policy.group_by = r.seq(value, "group_by").iter().filter_map(|l| r.string(l, "group_by")).collect();
            }
            "tiers" => {
                for (tier, body) in r.map(value, "tiers", &["P0", "P1", "P2", "P3"]) {
                    if let Some(t) = tier_key(r, tier, body.pos) {
                        tier_policy(r, body, &mut policy.tiers[t as usize], notifiers);
                    }
                }
            }
            _ => {
                for item in r.seq(value, "routes") {
                    if let Some(route) = route(r, item, notifiers) {
                        policy.routes.push(route);
                    }
                }
            }
        }
    }
    policy
}

fn tier_policy(r: &mut Reader, n: &Node, t: &mut TierPolicy, notifiers: &[String]) {
    const FIELDS: &[&str] = &[
        "channels",
        "group_wait",
        "group_interval",
        "repeat_interval",
        "respond_within",
        "escalate_to",
        "digest",
        "time_zone",
        "delivery_deadline",
    ];
    let fields = r.map(n, "tier", FIELDS);
    let mut digest_schedule = t.digest.as_ref().map(|d| (d.expression().to_string(), n.pos));
    let mut time_zone = t.digest.as_ref().map_or_else(|| "UTC".to_string(), |d| d.time_zone().name().to_string());
    for (key, v) in fields {
        match key {
            "channels" => t.channels = names(r, v, "channels", notifiers),
            "escalate_to" => t.escalate_to = names(r, v, "escalate_to", notifiers),
            "group_wait" => t.group_wait = r.duration(v, key).unwrap_or(t.group_wait),
            "group_interval" => t.group_interval = r.duration(v, key).unwrap_or(t.group_interval),
            "repeat_interval" => t.repeat_interval = r.duration(v, key).unwrap_or(t.repeat_interval),
            "respond_within" => t.respond_within = r.duration(v, key).or(t.respond_within),
            "time_zone" => time_zone = r.string(v, key).unwrap_or(time_zone),
            "delivery_deadline" => t.delivery_deadline = r.duration(v, key).unwrap_or(t.delivery_deadline),
            _ => {
                digest_schedule = match r.string(v, "digest") {
                    Some(s) if s == "off" => None,
                    Some(s) => Some((s, v.pos)),
                    None => digest_schedule,
                }
            }
        }
    }
    t.digest = digest_schedule.and_then(|(s, pos)| match Schedule::new(&s, &time_zone) {
        Ok(d) => Some(d),
        Err(e) => {
            r.error(pos, format!("digest: {e}"));
            None
        }
    });
    if t.group_interval.is_zero() {
        r.error(n.pos, "group_interval must be greater than zero");
    }
    if t.repeat_interval.is_zero() {
        r.error(n.pos, "repeat_interval must be greater than zero");
    }
    if t.respond_within.is_some() && t.escalate_to.is_empty() {
        r.error(n.pos, "respond_within needs escalate_to (who is told when nobody acknowledges)");
    }
}

fn route(r: &mut Reader, n: &Node, notifiers: &[String]) -> Option<Route> {
    let fields = r.map(n, "route", &["matchers", "channels", "escalate_to"]);
    let mut route = Route { matchers: Matchers::default(), channels: BTreeMap::new(), escalate_to: None };
    let mut has_matchers = false;
    for (key, v) in fields {
        match key {
            "matchers" => {
                route.matchers = matchers(r, v, "matchers")?;
                has_matchers = true;
            }
            "escalate_to" => route.escalate_to = Some(names(r, v, "escalate_to", notifiers)),
            _ if matches!(v.kind, NodeKind::Seq(_)) => {
                // A list: the same channels for every tier.
                let all = names(r, v, "channels", notifiers);
                route.channels = Severity::ALL.iter().map(|t| (*t, all.clone())).collect();
            }
            _ => {
                for (tier, list) in r.map(v, "channels", &["P0", "P1", "P2", "P3"]) {
                    if let Some(t) = tier_key(r, tier, list.pos) {
                        route.channels.insert(t, names(r, list, "channels", notifiers));
                    }
                }
            }
        }
    }
    if !has_matchers {
        r.error(n.pos, "route needs `matchers` (which alerts take it)");
        return None;
    }
    Some(route)
}

/// The `inhibit_rules` section: rules, and the keywords `defaults` (=
/// `tiers` + `rule_files`), `tiers` (a higher tier of the same alert mutes
/// the lower) and `rule_files` (the `inhibit_rules` of the loaded rule
/// files, e.g. the pack's rules/zookeeper/inhibit.yaml). Returns the rules
/// and whether the rule files' are added.
fn inhibit_rules(r: &mut Reader, n: &Node) -> (Vec<InhibitRule>, bool) {
    let mut out = Vec::new();
    let mut from_rule_files = false;
    for item in r.seq(n, "inhibit_rules") {
        if let Some(keyword) = item.as_str() {
            match keyword {
                "defaults" => {
                    out.extend(inhibit::default_rules());
                    from_rule_files = true;
                }
                "tiers" => out.extend(inhibit::default_rules()),
                "rule_files" => from_rule_files = true,
                other => r.error(
                    item.pos,
                    format!("unknown inhibit_rules entry {other:?}: expected defaults, tiers, rule_files or a rule"),
                ),
            }
            continue;
        }
        if let Some(rule) = inhibit_rule(r, item) {
            out.push(rule);
        }
    }
    if out.len() > inhibit::MAX_RULES {
        r.error(n.pos, format!("at most {} inhibit rules (with the defaults: {})", inhibit::MAX_RULES, out.len()));
    }
    (out, from_rule_files)
}

/// One inhibit rule (`source`, `target`, `equal`), in a config or a rule file.
pub(crate) fn inhibit_rule(r: &mut Reader, item: &Node) -> Option<InhibitRule> {
    let fields = r.map(item, "inhibit rule", &["source", "target", "equal"]);
    let get = |k: &str| fields.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
    let (Some(source), Some(target)) = (get("source"), get("target")) else {
        r.error(item.pos, "inhibit rule needs `source` and `target` matchers");
        return None;
    };
    let source = matchers(r, source, "source");
    let target = matchers(r, target, "target");
    let equal = get("equal")
        .map(|e| r.seq(e, "equal").iter().filter_map(|l| r.string(l, "equal")).collect())
        .unwrap_or_default();
    Some(InhibitRule { source: source?, target: target?, equal })
}

fn maintenance(r: &mut Reader, n: &Node) -> Vec<MaintenanceWindow> {
    let mut out: Vec<MaintenanceWindow> = Vec::new();
    for item in r.seq(n, "maintenance") {
        let fields = r.map(item, "maintenance window", &["name", "schedule", "time_zone", "duration", "matchers"]);
        let get = |k: &str| fields.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
        let name = get("name").and_then(|v| r.string(v, "name"));
        let schedule = get("schedule").and_then(|v| r.string(v, "schedule"));
        let duration = get("duration").and_then(|v| r.duration(v, "duration"));
        let time_zone = get("time_zone").and_then(|v| r.string(v, "time_zone")).unwrap_or_else(|| "UTC".into());
        let m = match get("matchers") {
            Some(v) => matchers(r, v, "matchers"),
            None => Some(Matchers::default()),
        };
        let (Some(name), Some(schedule), Some(duration), Some(m)) = (name, schedule, duration, m) else {
            if get("name").is_none() || get("schedule").is_none() || get("duration").is_none() {
                r.error(item.pos, "maintenance window needs `name`, `schedule` (crontab) and `duration`");
            }
            continue;
        };
        if out.iter().any(|w| w.name == name) {
            r.error(item.pos, format!("maintenance window name {name:?} is used twice"));
        }
        match MaintenanceWindow::new(name, &schedule, &time_zone, duration, m) {
            Ok(w) => out.push(w),
            Err(e) => {
                let field = if matches!(e, MaintenanceError::Schedule(ScheduleError::TimeZone(_))) {
                    "time_zone"
                } else {
                    "schedule"
                };
                r.error(get(field).map_or(item.pos, |s| s.pos), e.to_string())
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::model::Severity;
    use std::path::Path;
    use std::time::Duration;

    const SOURCES: &str = "sources:\n  - {type: zookeeper, cluster: prod, nodes: ['a:2181']}\nnotifiers:\n  - {name: sms, type: console}\n  - {name: lead, type: console}\n  - {name: log, type: file, path: n.jsonl}\n";

    #[test]
    fn routing_overrides_the_seed_table_field_by_field() {
        let text = format!(
            "{SOURCES}routing:\n  group_by: [cluster]\n  tiers:\n    P1: {{channels: [sms], group_wait: 10s, escalate_to: [lead], delivery_deadline: 2h}}\n    P3: {{digest: '30 8 * * 1-5', time_zone: Europe/Berlin}}\n  routes:\n    - matchers: '{{team=\"storage\"}}'\n      channels: [log]\n    - matchers: 'alertname=ZkNodeDown'\n      channels: {{P0: [sms]}}\ninhibit_rules: [defaults, {{source: '{{a=\"b\"}}', target: '{{c=\"d\"}}', equal: [cluster]}}]\nmaintenance:\n  - {{name: w, schedule: '0 2 * * 6', time_zone: Asia/Shanghai, duration: 2h, matchers: '{{cluster=\"prod\"}}'}}\n"
        );
        let c = Config::parse(&text, Path::new("z.yaml")).unwrap();
        let p = &c.pipeline.policy;
        assert_eq!(p.group_by, ["cluster"]);
        let p1 = p.tier(Severity::P1);
        assert_eq!((p1.channels.clone(), p1.group_wait), (vec!["sms".to_string()], Duration::from_secs(10)));
        assert_eq!(p1.repeat_interval, Duration::from_secs(900), "unset fields keep the seed's");
        assert_eq!(p1.delivery_deadline, Duration::from_secs(7200));
        assert_eq!(p.tier(Severity::P0).delivery_deadline, Duration::from_secs(1800));
        assert_eq!(p.tier(Severity::P0).channels, ["sms", "lead", "log"], "unset tiers go to every notifier");
        assert_eq!(p.tier(Severity::P3).digest.as_ref().map(|d| d.expression()), Some("30 8 * * 1-5"));
        assert_eq!(p.routes.len(), 2);
        assert_eq!(p.routes[0].channels[&Severity::P2], ["log"], "a list is every tier");
        assert_eq!(p.routes[1].channels.len(), 1);
        assert_eq!(c.pipeline.inhibit_rules.len(), crate::pipeline::inhibit::default_rules().len() + 1);
        assert_eq!(c.pipeline.maintenance[0].name, "w");
    }

    #[test]
    fn inhibit_keywords_choose_the_built_in_and_the_rule_files_rules() {
        let rule_file = crate::pipeline::InhibitRule {
            source: crate::pipeline::Matchers::parse(r#"{alertname="ZkQuorumLost"}"#).unwrap(),
            target: crate::pipeline::Matchers::parse(r#"{instance=~".+"}"#).unwrap(),
            equal: vec!["cluster".into()],
        };
        let tiers = crate::pipeline::inhibit::default_rules().len();
        for (section, want) in [
            ("", tiers + 1),
            ("inhibit_rules: [defaults]\n", tiers + 1),
            ("inhibit_rules: [tiers]\n", tiers),
            ("inhibit_rules: [rule_files]\n", 1),
            ("inhibit_rules: []\n", 0),
        ] {
            let c = Config::parse(&format!("{SOURCES}{section}"), Path::new("z.yaml")).unwrap();
            let p = c.pipeline.with_rule_file_inhibitions(std::slice::from_ref(&rule_file)).unwrap();
            assert_eq!(p.inhibit_rules.len(), want, "{section:?}");
        }
        let err = Config::parse(&format!("{SOURCES}inhibit_rules: [default]\n"), Path::new("z.yaml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("z.yaml:7:17: unknown inhibit_rules entry \"default\""), "{err}");
        let many = vec![rule_file; crate::pipeline::inhibit::MAX_RULES];
        let c = Config::parse(SOURCES, Path::new("z.yaml")).unwrap();
        let e = c.pipeline.with_rule_file_inhibitions(&many).unwrap_err();
        assert_eq!((e.config, e.rule_files), (tiers, crate::pipeline::inhibit::MAX_RULES));
    }

    #[test]
    fn every_problem_with_its_position() {
        let text = format!(
            "{SOURCES}routing:\n  tiers:\n    P5: {{channels: [sms]}}\n    P0: {{channels: [pager], respond_within: 5m, escalate_to: []}}\n    P3: {{digest: 'every day'}}\n  routes:\n    - channels: [sms]\n    - matchers: '{{a=~\"(\"}}'\ninhibit_rules:\n  - {{source: '{{a=\"b\"}}'}}\nmaintenance:\n  - {{name: w, schedule: '0 2 * * 6', time_zone: Mars/Base, duration: 2h}}\n  - {{name: x}}\n"
        );
        let err = Config::parse(&text, Path::new("z.yaml")).unwrap_err().to_string();
        for want in [
            "z.yaml:9:5: unknown field \"P5\"",
            "z.yaml:10:21: channels: no notifier named \"pager\" (configured: sms, lead, log)",
            "z.yaml:10:9: respond_within needs escalate_to",
            "z.yaml:11:18: digest: schedule \"every day\"",
            "z.yaml:13:7: route needs `matchers`",
            "z.yaml:14:17: matchers: invalid regex",
            "z.yaml:16:5: inhibit rule needs `source` and `target`",
            "z.yaml:18:49: unknown time zone \"Mars/Base\"",
            "z.yaml:19:5: maintenance window needs `name`, `schedule` (crontab) and `duration`",
        ] {
            assert!(err.contains(want), "missing {want:?} in:\n{err}");
        }
    }
}
