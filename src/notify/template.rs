//! Message templates (minijinja, strict undefined) and the one context they
//! all render: what notifiers turn a message into text with. The defaults
//! are `notifiers/*.j2`, compiled into the binary; a config may override
//! any of them by path. `zkalert check` renders every template against
//! sample messages and reports errors at `file:line`.

use super::Delivery;
use crate::model::{Alert, Timestamp};
use crate::pipeline::Message;
use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The templates every notifier can use, with the built-in text of each.
pub const BUILTIN: [(&str, &str); 6] = [
    ("subject", include_str!("../../notifiers/subject.j2")),
    ("text", include_str!("../../notifiers/text.j2")),
    ("html", include_str!("../../notifiers/html.j2")),
    ("markdown", include_str!("../../notifiers/markdown.j2")),
    ("sms", include_str!("../../notifiers/sms.j2")),
    ("voice", include_str!("../../notifiers/voice.j2")),
];

/// Where links in messages point.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Links {
    /// zkalert's own URL, as seen by the people paged: the ack link is
    /// `{external_url}/ack/{group_id}`.
    pub external_url: Option<String>,
    /// Where relative runbook paths live: `zookeeper/node-down` becomes
    /// `{runbook_base_url}/zookeeper/node-down.md`.
    pub runbook_base_url: Option<String>,
    /// What the printed ack command needs after the group id (` --url …`
    /// when zkalert's API is not where the CLI looks by default).
    pub ack_args: String,
    /// Signs each ack link with a capability for its group (`zkalert run`
    /// sets it from the state file); without it the link carries none and
    /// the ack page refuses it.
    pub ack_key: Option<crate::capability::Secret>,
}

impl Links {
    /// The alert's runbook as a URL: the runbook itself when it is already
    /// an `http(s)` URL; a relative path joined to `runbook_base_url` with
    /// `.md` appended (unless it already ends in `.md`); `None` without a
    /// runbook, or for a relative path without a base URL.
    pub fn runbook_url(&self, a: &Alert) -> Option<String> {
        let r = a.runbook.as_deref()?.trim();
        if r.is_empty() {
            return None;
        }
        if super::http::is_http_url(r) {
            return Some(r.to_string());
        }
        let base = self.runbook_base_url.as_deref()?.trim_end_matches('/');
        let path = r.trim_start_matches('/');
        let md = if path.ends_with(".md") { "" } else { ".md" };
        Some(format!("{base}/{path}{md}"))
    }

    /// The runbook URL, or else the runbook reference itself, for people.
    pub fn runbook_text(&self, a: &Alert) -> Option<String> {
        self.runbook_url(a).or_else(|| a.runbook.as_deref().filter(|r| !r.trim().is_empty()).map(str::to_string))
    }

    /// The group's acknowledgement page, `{external_url}/ack/{group_id}`,
    /// with the capability of a message sent `at` (`?exp=…&sig=…`) when
    /// there is a key; `None` without an external URL.
    pub fn ack_url(&self, group_id: &str, at: Timestamp) -> Option<String> {
        let base = self.external_url.as_deref()?.trim_end_matches('/');
        let page = format!("{base}/ack/{}", super::percent_encode(group_id));
        Some(match &self.ack_key {
            Some(key) => format!("{page}?{}", key.ack_query(group_id, at)),
            None => page,
        })
    }
}

/// One alert as templates see it.
#[derive(Debug, Clone, Serialize)]
pub struct AlertContext {
    pub name: String,
    /// firing, resolved.
    pub status: String,
    /// Not told before in this group.
    pub new: bool,
    pub severity: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// The `summary` annotation ("" without one).
    pub summary: String,
    pub value: String,
    pub cluster: String,
    pub instance: String,
    /// RFC 3339: when it fired (or became active).
    pub since: String,
    pub resolved_at: Option<String>,
    pub runbook: Option<String>,
    /// The runbook's URL (see [`Links::runbook_url`]), or the runbook
    /// reference itself when there is no base URL to make one.
    pub runbook_url: Option<String>,
    pub fingerprint: String,
}

/// What every template renders (documented in docs/notifications.md).
#[derive(Debug, Clone, Serialize)]
pub struct Context {
    pub id: String,
    pub idempotency_key: String,
    pub channel: String,
    pub at: String,
    pub tier: String,
    /// firing if anything fires, else resolved.
    pub status: String,
    pub escalation: bool,
    pub digest: bool,
    /// A sample from `zkalert notify test`, not a real alert.
    pub test: bool,
    /// "ZkNodeDown: 2 firing (1 new) in cluster prod".
    pub title: String,
    pub group: BTreeMap<String, String>,
    pub group_id: String,
    pub firing: Vec<AlertContext>,
    pub resolved: Vec<AlertContext>,
    pub ack_command: String,
    pub ack_url: Option<String>,
    pub external_url: Option<String>,
}

fn alert_context(a: &Alert, new: bool, links: &Links) -> AlertContext {
    let labels: BTreeMap<String, String> = a.labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    AlertContext {
        name: a.name().to_string(),
        status: a.state.as_str().to_string(),
        new,
        severity: a.severity.as_str().to_string(),
        summary: a.annotation("summary").unwrap_or_default().to_string(),
        annotations: a.annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        value: crate::model::format_value(a.value),
        cluster: a.labels.get("cluster").unwrap_or_default().to_string(),
        instance: a.labels.get("instance").unwrap_or_default().to_string(),
        since: a.fired_at.unwrap_or(a.active_at).to_rfc3339(),
        resolved_at: a.resolved_at.map(Timestamp::to_rfc3339),
        runbook: a.runbook.as_deref().map(str::to_string),
        runbook_url: links.runbook_text(a),
        fingerprint: a.fingerprint.to_string(),
        labels,
    }
}

impl Context {
    pub fn new(m: &Message, channel: &str, links: &Links) -> Context {
        let firing: Vec<AlertContext> =
            m.firing.iter().map(|a| alert_context(a, m.is_new(a.fingerprint), links)).collect();
        let resolved: Vec<AlertContext> = m.resolved.iter().map(|a| alert_context(a, false, links)).collect();
        let mut names: Vec<&str> = m.firing.iter().chain(&m.resolved).map(|a| a.name()).collect();
        names.sort();
        names.dedup();
        let what = match names.as_slice() {
            [] => "no alerts".to_string(),
            [one] => one.to_string(),
            [first, rest @ ..] => format!("{first} and {} more", rest.len()),
        };
        let mut counts = Vec::new();
        if !m.firing.is_empty() {
            counts.push(if m.new.is_empty() {
                format!("{} firing", m.firing.len())
            } else {
                format!("{} firing ({} new)", m.firing.len(), m.new.len())
            });
        }
        if !m.resolved.is_empty() {
            counts.push(format!("{} resolved", m.resolved.len()));
        }
        let mut title = format!("{what}: {}", counts.join(", "));
        if let Some(c) = m.group.get("cluster") {
            title.push_str(&format!(" in cluster {c}"));
        }
        let external_url = links.external_url.as_ref().map(|u| u.trim_end_matches('/').to_string());
        Context {
            id: m.id.clone(),
            idempotency_key: format!("{}-{channel}", m.id),
            channel: channel.to_string(),
            at: m.at.to_rfc3339(),
            tier: m.tier.as_str().to_string(),
            status: if m.firing.is_empty() { "resolved" } else { "firing" }.to_string(),
            escalation: m.escalation,
            digest: m.digest,
            test: m.test,
            title,
            group: m.group.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            group_id: m.group_id.clone(),
            firing,
            resolved,
            ack_command: format!("zkalert ack {}{}", m.group_id, links.ack_args),
            ack_url: links.ack_url(&m.group_id, m.at),
            external_url,
        }
    }
}

/// A template that does not compile or render.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct TemplateError {
    /// The template's file, or `built-in NAME`.
    pub file: String,
    pub line: usize,
    pub message: String,
}

/// The compiled templates: built-in ones, some replaced by files.
#[derive(Debug)]
pub struct Templates {
    set: TemplateSet,
}

/// A set of compiled templates and the file each came from (for errors): the notifiers' ([`Templates`]) and the
/// report's (`report::render`).
pub(crate) struct TemplateSet {
    pub(crate) env: Environment<'static>,
    files: BTreeMap<String, String>,
}

impl std::fmt::Debug for TemplateSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TemplateSet").field("files", &self.files).finish()
    }
}

impl TemplateSet {
    /// Renders template `name` with `ctx`, trimmed; errors at the template's file and line.
    pub(crate) fn render(&self, name: &str, ctx: &impl Serialize) -> Result<String, TemplateError> {
        let file = self.files.get(name).cloned().unwrap_or_else(|| name.to_string());
        let t = self.env.get_template(name).map_err(|e| error(&file, &e))?;
        t.render(minijinja::value::Serde(ctx)).map(|s| s.trim().to_string()).map_err(|e| error(&file, &e))
    }
}

impl Templates {
    /// The built-in templates, each replaced by the file given for its name.
    pub fn load(overrides: &[(String, PathBuf)]) -> Result<Templates, Vec<TemplateError>> {
        Ok(Templates { set: compile(&BUILTIN, "notifiers", overrides)? })
    }

    pub fn builtin() -> Templates {
        // The built-in templates are checked by tests; they always compile.
        Self::load(&[]).unwrap_or_else(|e| panic!("built-in templates: {e:?}"))
    }

    /// Renders template `name` ("subject", "text", …) with `ctx`.
    pub fn render(&self, name: &str, ctx: &Context) -> Result<String, TemplateError> {
        self.set.render(name, ctx)
    }

    /// Renders every template against sample messages (firing, resolved,
    /// escalation, digest): every problem, at `file:line`.
    pub fn check(&self) -> Vec<TemplateError> {
        let links = Links { external_url: Some("http://zkalert.example:9097".into()), ..Links::default() };
        let mut errors = Vec::new();
        for m in samples() {
            let ctx = Context::new(&m, "check", &links);
            for (name, _) in BUILTIN {
                if let Err(e) = self.render(name, &ctx)
                    && !errors.contains(&e)
                {
                    errors.push(e);
                }
            }
        }
        errors
    }
}

/// What a notifier renders messages with, given when it is built (not part
/// of its settings): the config's templates and where their links point.
#[derive(Debug, Clone)]
pub struct Rendering {
    pub templates: Arc<Templates>,
    pub links: Links,
}

impl Rendering {
    pub fn new(templates: Arc<Templates>, links: Links) -> Self {
        Self { templates, links }
    }

    /// The built-in templates and no links.
    pub fn builtin() -> Self {
        Self::new(Arc::new(Templates::builtin()), Links::default())
    }

    /// Renders template `name` for one delivery.
    pub fn render(&self, name: &str, d: &Delivery) -> Result<String, TemplateError> {
        self.templates.render(name, &Context::new(&d.message, &d.channel, &self.links))
    }
}

/// Compiles a set of built-in templates (`dir/NAME.j2`), each replaced by the file given for its name: strict
/// undefined, HTML escaping in the one named `html`, fuel bounded; or every problem.
pub(crate) fn compile(
    builtin: &[(&str, &'static str)],
    dir: &str,
    overrides: &[(String, PathBuf)],
) -> Result<TemplateSet, Vec<TemplateError>> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|name| if name == "html" { AutoEscape::Html } else { AutoEscape::None });
    env.set_fuel(Some(200_000));
    let mut files = BTreeMap::new();
    let mut errors = Vec::new();
    for (name, builtin) in builtin {
        let (file, source) = match overrides.iter().find(|(n, _)| n == name) {
            Some((_, path)) => match crate::yaml::read_file(path) {
                Ok(text) => (path.display().to_string(), text),
                Err(e) => {
                    errors.push(TemplateError {
                        file: path.display().to_string(),
                        line: 1,
                        message: format!("cannot read template: {e}"),
                    });
                    continue;
                }
            },
            None => (format!("built-in {dir}/{name}.j2"), builtin.to_string()),
        };
        if let Err(e) = env.add_template_owned(name.to_string(), source) {
            errors.push(error(&file, &e));
        }
        files.insert(name.to_string(), file);
    }
    for (name, path) in overrides {
        if !builtin.iter().any(|(n, _)| n == name) {
            let names: Vec<&str> = builtin.iter().map(|(n, _)| *n).collect();
            errors.push(TemplateError {
                file: path.display().to_string(),
                line: 1,
                message: format!("no template named {name:?}; expected one of {}", names.join(", ")),
            });
        }
    }
    if errors.is_empty() { Ok(TemplateSet { env, files }) } else { Err(errors) }
}

fn error(file: &str, e: &minijinja::Error) -> TemplateError {
    TemplateError {
        file: file.to_string(),
        line: e.line().unwrap_or(1),
        message: e.detail().map_or_else(|| e.kind().to_string(), |d| format!("{}: {d}", e.kind())),
    }
}

/// Messages covering every shape a template meets.
pub fn samples() -> Vec<Message> {
    use crate::model::{AlertState, Labels, Severity};
    let at = Timestamp::from_millis(1_795_593_600_000);
    let alert = |instance: &str, state: AlertState| {
        let labels = Labels::from_pairs([
            ("alertname", "ZkNodeDown"),
            ("cluster", "prod"),
            ("instance", instance),
            ("severity", "P1"),
        ]);
        let mut alert = Alert::new(labels, Severity::P1, 0.0, at);
        alert.annotations = crate::model::Annotations::from_pairs([(
            "summary",
            format!("ZooKeeper node {instance} (cluster prod) is not answering"),
        )]);
        alert.fire(at);
        alert.state = state;
        alert.resolved_at = (state == AlertState::Resolved).then_some(at);
        alert.runbook = Some("zookeeper/node-down".into());
        alert
    };
    let firing = vec![alert("zk1:2181", AlertState::Firing), alert("zk2:2181", AlertState::Firing)];
    let resolved = vec![alert("zk3:2181", AlertState::Resolved)];
    let base = Message {
        id: "0123456789abcdef".into(),
        at,
        group: Labels::from_pairs([("alertname", "ZkNodeDown"), ("cluster", "prod")]),
        group_id: "fedcba9876543210".into(),
        tier: Severity::P1,
        channels: vec!["check".into()],
        new: vec![firing[0].fingerprint],
        firing: firing.clone(),
        resolved: resolved.clone(),
        reason: crate::pipeline::Reason::NewAlerts,
        escalation: false,
        digest: false,
        test: false,
    };
    vec![
        base.clone(),
        Message { firing: Vec::new(), new: Vec::new(), reason: crate::pipeline::Reason::Resolved, ..base.clone() },
        Message { escalation: true, resolved: Vec::new(), reason: crate::pipeline::Reason::Escalation, ..base.clone() },
        Message {
            digest: true,
            group: Labels::new(),
            tier: Severity::P3,
            reason: crate::pipeline::Reason::Digest,
            ..base
        },
    ]
}

/// Reads a template override's path relative to the config file.
pub fn override_path(base: &Path, path: &str) -> PathBuf {
    base.join(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `zkalert notify test`'s message says it is a test in every template,
    /// up front (an SMS cut to its segments keeps it), and real ones don't.
    #[test]
    fn test_messages_are_marked_in_every_template() {
        let t = Templates::builtin();
        let links = Links { runbook_base_url: Some("https://git.example.com/runbooks/".into()), ..Links::default() };
        for (i, m) in samples().into_iter().enumerate() {
            let real = Context::new(&m, "x", &links);
            let test = Context::new(&Message { test: true, ..m }, "x", &links);
            for (name, _) in BUILTIN {
                let real = t.render(name, &real).unwrap();
                let text = t.render(name, &test).unwrap();
                assert!(
                    !real.to_lowercase().contains("test"),
                    "sample {i}, {name}: a real message marked as a test:\n{real}"
                );
                // Up front: the first words a phone, a subject line or a
                // listener gets (the HTML's heading).
                let lead = match name {
                    "voice" => "This is a zkalert test call, not a real alert.",
                    "html" => "<h2>TEST, not a real alert:",
                    _ => "TEST, not a real alert:",
                };
                let head = if name == "html" { text.as_str() } else { &text[..text.len().min(lead.len() + 20)] };
                assert!(head.contains(lead), "sample {i}, {name}: no test marker up front:\n{text}");
            }
        }
        let m = Message { test: true, ..samples().remove(0) };
        let sms = t.render("sms", &Context::new(&m, "x", &links)).unwrap();
        assert!(sms.starts_with("TEST, not a real alert: [P1] ZkNodeDown prod"), "{sms}");
        let subject = t.render("subject", &Context::new(&m, "x", &links)).unwrap();
        assert_eq!(subject, "TEST, not a real alert: [P1] ZkNodeDown: 2 firing (1 new), 1 resolved in cluster prod");
    }

    #[test]
    fn built_in_templates_render_every_sample() {
        let t = Templates::builtin();
        assert_eq!(t.check(), Vec::new());
        let links = Links { runbook_base_url: Some("https://git.example.com/runbooks/".into()), ..Links::default() };
        let samples = samples();
        let ctx = Context::new(&samples[0], "email", &links);
        assert_eq!(t.render("subject", &ctx).unwrap(), "[P1] ZkNodeDown: 2 firing (1 new), 1 resolved in cluster prod");
        let text = t.render("text", &ctx).unwrap();
        for want in [
            "FIRING ZkNodeDown cluster=prod instance=zk1:2181",
            "STILL FIRING ZkNodeDown cluster=prod instance=zk2:2181",
            "resolved ZkNodeDown cluster=prod instance=zk3:2181",
            "Runbook: https://git.example.com/runbooks/zookeeper/node-down.md",
            "Acknowledge: zkalert ack fedcba9876543210",
        ] {
            assert!(text.contains(want), "{want:?} missing in:\n{text}");
        }
        let esc = t.render("subject", &Context::new(&samples[2], "x", &links)).unwrap();
        assert!(esc.starts_with("[P1] ESCALATION (not acknowledged): "), "{esc}");
        let sms = t.render("sms", &ctx).unwrap();
        assert!(
            sms.starts_with("[P1] ZkNodeDown prod https://git.example.com/runbooks/zookeeper/node-down.md"),
            "{sms}"
        );
    }

    #[test]
    fn html_is_escaped_and_text_is_not() {
        let t = Templates::builtin();
        let mut m = samples().remove(0);
        m.firing[0].annotations = crate::model::Annotations::from_pairs([("summary", "<b>a & b</b>")]);
        let ctx = Context::new(&m, "email", &Links::default());
        assert!(t.render("html", &ctx).unwrap().contains("&lt;b&gt;a &amp; b&lt;&#x2f;b&gt;"));
        assert!(t.render("text", &ctx).unwrap().contains("<b>a & b</b>"));
    }

    #[test]
    fn overrides_and_their_errors_at_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("subject.j2");
        std::fs::write(&good, "{{ tier }} {{ title }}").unwrap();
        let t = Templates::load(&[("subject".into(), good)]).unwrap();
        let ctx = Context::new(&samples()[0], "x", &Links::default());
        assert_eq!(t.render("subject", &ctx).unwrap(), "P1 ZkNodeDown: 2 firing (1 new), 1 resolved in cluster prod");
        // A syntax error, an undefined field (strict), an unknown name.
        let bad = dir.path().join("text.j2");
        std::fs::write(&bad, "line one\n{{ tier }\n").unwrap();
        let errors = Templates::load(&[("text".into(), bad.clone())]).unwrap_err();
        assert_eq!(errors[0].file, bad.display().to_string());
        assert_eq!(errors[0].line, 2, "{errors:?}");
        let undefined = dir.path().join("sms.j2");
        std::fs::write(&undefined, "ok\n{{ alerts[0].nope }}").unwrap();
        let t = Templates::load(&[("sms".into(), undefined.clone())]).unwrap();
        let errors = t.check();
        assert!(errors.iter().any(|e| e.file == undefined.display().to_string() && e.line == 2), "{errors:?}");
        let errors = Templates::load(&[("pager".into(), dir.path().join("x"))]).unwrap_err();
        assert!(errors.iter().any(|e| e.message.contains("no template named \"pager\"")), "{errors:?}");
    }

    #[test]
    fn an_ack_link_carries_a_capability_for_its_group_that_lasts_a_day() {
        let key = crate::capability::Secret::from_bytes([3; 32]);
        let links = Links {
            external_url: Some("https://zkalert.example/".into()),
            ack_key: Some(key.clone()),
            ..Links::default()
        };
        let m = samples().remove(0);
        let url = Context::new(&m, "sms", &links).ack_url.unwrap();
        let prefix = format!("https://zkalert.example/ack/{}?exp=", m.group_id);
        let (exp, sig) =
            url.strip_prefix(&prefix).and_then(|q| q.split_once("&sig=")).unwrap_or_else(|| panic!("{url}"));
        assert_eq!(key.check_ack(&m.group_id, exp, sig), Ok(m.at + crate::capability::ACK_LINK_LIFETIME));
        assert!(key.check_ack("another-group", exp, sig).is_err());
        let text = Templates::builtin().render("text", &Context::new(&m, "email", &links)).unwrap();
        assert!(text.contains(&url), "{text}");
    }
}
