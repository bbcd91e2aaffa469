//! The `notifiers` section of `zkalert.yaml`, read into plain settings (the
//! notifiers are built from them in `runner::channels`). Each notifier type
//! takes its own fields (a webhook's flavour and an SMS provider narrow
//! them further): a field of another type is an error at its position,
//! naming the fields the type takes and the types that take it.

use crate::diag::Pos;
use crate::notify::email::{EmailNotifier, EmailSettings, Security};
use crate::notify::http::ProxyUrl;
use crate::notify::sms::{HttpGateway, SmsNotifier, SmsProvider, SmsSettings, Twilio};
use crate::notify::template::Rendering;
use crate::notify::voice::{VoiceNotifier, VoiceSettings};
use crate::notify::webhook::{Flavor, WebhookNotifier, WebhookSettings};
use crate::yaml::{self, Node, Reader};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One configured notifier: its name (what routes name), type and
/// settings, and what its channel allows (timeout, rate limit).
#[derive(Debug, Clone)]
pub struct NotifierConfig {
    pub name: String,
    pub kind: NotifierKind,
    /// One delivery attempt may take this long (default 10 s).
    pub timeout: Duration,
    /// At most one send per this interval (`rate_limit: 20/m`).
    pub min_interval: Option<Duration>,
}

impl NotifierConfig {
    pub fn new(name: impl Into<String>, kind: NotifierKind) -> Self {
        Self { name: name.into(), kind, timeout: Duration::from_secs(10), min_interval: None }
    }
}

/// A notifier's type, with its settings.
#[derive(Debug, Clone)]
pub enum NotifierKind {
    /// Human-readable lines on standard output.
    Console,
    /// One JSON object per notification, appended to a file.
    File { path: PathBuf },
    /// An HTTP POST in one of the webhook flavours (generic, alertmanager,
    /// slack, dingtalk, wecom, feishu).
    Webhook(WebhookSettings),
    /// SMS through a Twilio-compatible Messages API or a generic HTTP gateway.
    Sms(SmsSettings),
    /// Voice calls through a Twilio-compatible Calls API.
    Voice(VoiceSettings),
    /// Email over SMTP (STARTTLS, implicit TLS or plain).
    Email(EmailSettings),
}

impl NotifierKind {
    /// The `type` in the config.
    pub fn as_str(&self) -> &'static str {
        match self {
            NotifierKind::Console => "console",
            NotifierKind::File { .. } => "file",
            NotifierKind::Webhook(_) => "webhook",
            NotifierKind::Sms(_) => "sms",
            NotifierKind::Voice(_) => "voice",
            NotifierKind::Email(_) => "email",
        }
    }
}

/// Fields every notifier takes; each type's own follow.
const COMMON: [&str; 4] = ["name", "type", "timeout", "rate_limit"];
const CONSOLE: &[&str] = &[];
const FILE: &[&str] = &["path"];
const WEBHOOK: &[&str] = &["flavor", "url", "url_env", "url_file", "headers", "proxy_url"];
/// The flavours that sign their requests take a secret too.
const SIGNED_WEBHOOK: &[&str] =
    &["flavor", "url", "url_env", "url_file", "secret_env", "secret_file", "headers", "proxy_url"];
const EMAIL: &[&str] = &[
    "host",
    "port",
    "security",
    "username",
    "password_env",
    "password_file",
    "hello_name",
    "accept_invalid_certs",
    "from",
    "to",
];
const TWILIO_SMS: &[&str] = &[
    "provider",
    "account_sid",
    "auth_token_env",
    "auth_token_file",
    "api_base",
    "from",
    "to",
    "segments",
    "proxy_url",
];
const HTTP_SMS: &[&str] =
    &["provider", "url", "url_env", "url_file", "method", "headers", "body_template", "to", "segments", "proxy_url"];
const VOICE: &[&str] =
    &["account_sid", "auth_token_env", "auth_token_file", "api_base", "from", "to", "repeat", "language", "proxy_url"];

/// Each type, and its variants with the fields each takes besides the
/// common ones (docs/notifications.md lists them).
/// A variant of a type (`twilio sms`), and the fields it takes besides the common ones.
type Variant = (&'static str, &'static [&'static str]);

const TYPES: [(&str, &[Variant]); 6] = [
    ("console", &[("console", CONSOLE)]),
    ("file", &[("file", FILE)]),
    ("webhook", &[("webhook", WEBHOOK), ("dingtalk and feishu webhook", SIGNED_WEBHOOK)]),
    ("email", &[("email", EMAIL)]),
    ("sms", &[("twilio sms", TWILIO_SMS), ("http sms", HTTP_SMS)]),
    ("voice", &[("voice", VOICE)]),
];

const NOTIFIER_TYPES: &str = "console, file, webhook, email, sms, voice";

/// What a notifier mapping is called in errors, and the fields it takes:
/// those of its type (and flavour or provider); every field when the type
/// is missing or unknown (that error is reported on its own).
fn shape(n: &Node) -> (String, Vec<&'static str>) {
    let text = |key: &str| n.get(key).and_then(Node::as_str);
    let (what, own) = match text("type") {
        Some("console") => ("console notifier".to_string(), CONSOLE),
        Some("file") => ("file notifier".into(), FILE),
        Some("webhook") => match text("flavor").and_then(Flavor::parse) {
            None | Some(Flavor::Generic) => ("webhook notifier".into(), WEBHOOK),
            Some(f) => (format!("{f} webhook notifier"), if f.signs() { SIGNED_WEBHOOK } else { WEBHOOK }),
        },
        Some("email") => ("email notifier".into(), EMAIL),
        Some("sms") if text("provider") == Some("http") => ("http sms notifier".into(), HTTP_SMS),
        Some("sms") => ("sms notifier".into(), TWILIO_SMS),
        Some("voice") => ("voice notifier".into(), VOICE),
        _ => {
            let mut all = COMMON.to_vec();
            for field in TYPES.iter().flat_map(|(_, variants)| variants.iter()).flat_map(|(_, f)| f.iter()) {
                if !all.contains(field) {
                    all.push(field);
                }
            }
            return ("notifier".into(), all);
        }
    };
    (what, COMMON.iter().chain(own).copied().collect())
}

/// The notifier types (or variants, when only some of a type's take it)
/// that take `key`.
fn takers(key: &str) -> Vec<&'static str> {
    let mut out = Vec::new();
    for (kind, variants) in TYPES {
        let taking: Vec<&str> = variants.iter().filter(|(_, f)| f.contains(&key)).map(|(label, _)| *label).collect();
        if taking.len() == variants.len() {
            out.push(kind);
        } else {
            out.extend(taking);
        }
    }
    out
}

/// `a`, `a and b`, `a, b and c`.
fn and_list(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => one.to_string(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// The `notifiers` list; names are unique.
pub(super) fn read(r: &mut Reader, n: &Node, base: &Path) -> Vec<NotifierConfig> {
    // Settings are checked by building their notifier once, with the
    // built-in templates (the config's are checked on their own).
    let check = Rendering::builtin();
    let mut out: Vec<NotifierConfig> = Vec::new();
    for item in r.seq(n, "notifiers") {
        if let Some(nc) = notifier(r, item, base, &check) {
            if out.iter().any(|x| x.name == nc.name) {
                r.error(item.pos, format!("notifier name {:?} is used twice", nc.name));
            }
            out.push(nc);
        }
    }
    out
}

fn notifier(r: &mut Reader, n: &Node, base: &Path, check: &Rendering) -> Option<NotifierConfig> {
    let (what, known) = shape(n);
    let fields = r.map_noting(n, &what, &known, |key| {
        let takers = takers(key);
        (!takers.is_empty()).then(|| format!("{} notifiers take it", and_list(&takers)))
    });
    let get = |k: &str| fields.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
    let name = get("name").and_then(|v| r.string(v, "name"));
    let kind = get("type").and_then(|v| r.string(v, "type"));
    let Some(name) = name else {
        r.error(n.pos, "notifier needs a `name`");
        return None;
    };
    let timeout =
        get("timeout").and_then(|v| super::positive_duration(r, v, "timeout")).unwrap_or(Duration::from_secs(10));
    let proxy_url = get("proxy_url").and_then(|v| proxy_url(r, v));
    let kind = match kind.as_deref() {
        Some("console") => NotifierKind::Console,
        Some("file") => match get("path").and_then(|p| r.string(p, "path")) {
            Some(p) => NotifierKind::File { path: base.join(p) },
            None => {
                r.error(n.pos, "file notifier needs a `path`");
                return None;
            }
        },
        Some("webhook") => {
            let flavor_text = get("flavor").and_then(|v| r.string(v, "flavor")).unwrap_or_else(|| "generic".into());
            let Some(flavor) = Flavor::parse(&flavor_text) else {
                r.error(
                    get("flavor").map_or(n.pos, |f| f.pos),
                    format!(
                        "unknown webhook flavor {flavor_text:?}; expected generic, alertmanager, slack, dingtalk, wecom or feishu"
                    ),
                );
                return None;
            };
            let url = match get("url") {
                Some(v) => r.string(v, "url"),
                None => secret(r, &fields, "url", base),
            };
            let Some(url) = url else {
                if get("url_env").is_none() && get("url_file").is_none() {
                    r.error(n.pos, "webhook notifier needs `url` (or `url_env` / `url_file` when it holds a token)");
                }
                return None;
            };
            let mut settings = WebhookSettings::new(name.clone(), flavor, url);
            settings.secret = secret(r, &fields, "secret", base);
            settings.headers = get("headers")
                .map(|h| r.string_map(h, "headers").into_iter().map(|(k, v, _)| (k, v)).collect())
                .unwrap_or_default();
            settings.timeout = timeout;
            settings.proxy_url = proxy_url;
            // Checked now, so `check` reports it; built again at run time.
            if let Err(e) = WebhookNotifier::new(settings.clone(), check.clone()) {
                r.error(n.pos, e);
            }
            NotifierKind::Webhook(settings)
        }
        Some("email") => {
            let host = get("host").and_then(|v| r.string(v, "host"));
            let from = get("from").and_then(|v| r.string(v, "from"));
            let to: Vec<String> = get("to")
                .map(|t| r.seq(t, "to").iter().filter_map(|x| r.string(x, "to")).collect())
                .unwrap_or_default();
            let (Some(host), Some(from)) = (host, from) else {
                r.error(n.pos, "email notifier needs `host`, `from` and `to`");
                return None;
            };
            let mut e = EmailSettings::new(name.clone(), host, from, to);
            if let Some(v) = get("security") {
                let text = r.string(v, "security").unwrap_or_default();
                match Security::parse(&text) {
                    Some(sec) => {
                        e.security = sec;
                        e.port = sec.default_port();
                    }
                    None => r.error(v.pos, format!("security: {text:?}; expected starttls, tls or plain")),
                }
            }
            if let Some(p) = get("port").and_then(|v| r.float(v, "port")) {
                e.port = p.clamp(0.0, 65535.0) as u16;
            }
            e.username = get("username").and_then(|v| r.string(v, "username"));
            e.password = secret(r, &fields, "password", base);
            e.hello_name = get("hello_name").and_then(|v| r.string(v, "hello_name"));
            e.accept_invalid_certs =
                get("accept_invalid_certs").and_then(|v| r.boolean(v, "accept_invalid_certs")).unwrap_or(false);
            e.timeout = timeout;
            if let Err(err) = EmailNotifier::new(e.clone(), check.clone()) {
                r.error(n.pos, err);
                return None;
            }
            NotifierKind::Email(e)
        }
        Some(kind @ ("sms" | "voice")) => {
            let to: Vec<String> = get("to")
                .map(|t| r.seq(t, "to").iter().filter_map(|x| r.string(x, "to")).collect())
                .unwrap_or_default();
            let twilio = |r: &mut Reader| -> Option<Twilio> {
                let sid = get("account_sid").and_then(|v| r.string(v, "account_sid"));
                let token = secret(r, &fields, "auth_token", base);
                let from = get("from").and_then(|v| r.string(v, "from"));
                let (Some(sid), Some(token), Some(from)) = (sid, token, from) else {
                    r.error(n.pos, format!("{kind} notifier (twilio) needs `account_sid`, `auth_token_env` or `auth_token_file`, and `from`"));
                    return None;
                };
                let mut t = Twilio::new(sid, token, from);
                if let Some(b) = get("api_base").and_then(|v| r.string(v, "api_base")) {
                    t.api_base = b;
                }
                Some(t)
            };
            let built = if kind == "voice" {
                let mut v = VoiceSettings::new(name.clone(), twilio(r)?, to);
                v.timeout = timeout;
                v.proxy_url = proxy_url;
                v.repeat = get("repeat").and_then(|x| r.boolean(x, "repeat")).unwrap_or(true);
                v.language = get("language").and_then(|x| r.string(x, "language"));
                VoiceNotifier::new(v.clone(), check.clone()).map(|_| NotifierKind::Voice(v))
            } else {
                let provider = match get("provider").and_then(|v| r.string(v, "provider")).as_deref() {
                    Some("twilio") | None => SmsProvider::Twilio(twilio(r)?),
                    Some("http") => {
                        let url = match get("url") {
                            Some(v) => r.string(v, "url"),
                            None => secret(r, &fields, "url", base),
                        };
                        let body = get("body_template").and_then(|v| r.string(v, "body_template"));
                        let (Some(url), Some(body)) = (url, body) else {
                            r.error(
                                n.pos,
                                "sms notifier (http) needs `url` (or `url_env`/`url_file`) and `body_template`",
                            );
                            return None;
                        };
                        let mut g = HttpGateway::new(url, body);
                        if let Some(m) = get("method").and_then(|v| r.string(v, "method")) {
                            g.method = m;
                        }
                        g.headers = get("headers")
                            .map(|h| r.string_map(h, "headers").into_iter().map(|(k, v, _)| (k, v)).collect())
                            .unwrap_or_default();
                        SmsProvider::Http(g)
                    }
                    Some(other) => {
                        r.error(
                            get("provider").map_or(n.pos, |p| p.pos),
                            format!("unknown sms provider {other:?}; expected twilio or http"),
                        );
                        return None;
                    }
                };
                let mut sms = SmsSettings::new(name.clone(), provider, to);
                sms.timeout = timeout;
                sms.proxy_url = proxy_url;
                if let Some(seg) = get("segments").and_then(|v| r.float(v, "segments")) {
                    sms.segments = seg.max(0.0) as usize;
                }
                SmsNotifier::new(sms.clone(), check.clone()).map(|_| NotifierKind::Sms(sms))
            };
            match built {
                Ok(k) => k,
                Err(e) => {
                    r.error(n.pos, e);
                    return None;
                }
            }
        }
        Some(other) => {
            r.error(
                get("type").map_or(n.pos, |t| t.pos),
                format!("unknown notifier type {other:?}; expected {NOTIFIER_TYPES}"),
            );
            return None;
        }
        None => {
            r.error(n.pos, format!("notifier needs a `type` ({NOTIFIER_TYPES})"));
            return None;
        }
    };
    let mut config = NotifierConfig::new(name, kind);
    config.timeout = timeout;
    if let Some(v) = get("rate_limit")
        && let Some(text) = r.string(v, "rate_limit")
    {
        match parse_rate(&text) {
            Some(every) => config.min_interval = Some(every),
            None => r.error(v.pos, format!("rate_limit: {text:?} is not a rate like 20/m (per s, m or h)")),
        }
    }
    Some(config)
}

/// A notifier's `proxy_url`, checked where it stands: an `http(s)` URL with
/// a host (only notifiers that send over HTTP take the field).
pub(super) fn proxy_url(r: &mut Reader, n: &Node) -> Option<ProxyUrl> {
    let text = r.string(n, "proxy_url")?;
    match ProxyUrl::parse(&text) {
        Ok(p) => Some(p),
        Err(e) => {
            r.error(n.pos, e);
            None
        }
    }
}

/// A secret from `<key>_env` (an environment variable) or `<key>_file` (a
/// file's contents, trimmed), never from the config text; errors name the
/// variable or file, never the value.
pub(super) fn secret(r: &mut Reader, fields: &[(&str, &Node)], key: &str, base: &Path) -> Option<String> {
    let get = |k: String| fields.iter().find(|(f, _)| *f == k).map(|(_, v)| *v);
    let (env, file) = (get(format!("{key}_env")), get(format!("{key}_file")));
    if env.is_some() && file.is_some() {
        r.error(env.map_or(Pos::new(1, 1), |n| n.pos), format!("give {key}_env or {key}_file, not both"));
        return None;
    }
    if let Some(n) = env {
        let var = r.string(n, &format!("{key}_env"))?;
        return match std::env::var(&var) {
            Ok(v) if !v.trim().is_empty() => Some(v.trim().to_string()),
            _ => {
                r.error(n.pos, format!("{key}_env: environment variable {var} is not set"));
                None
            }
        };
    }
    let n = file?;
    let path = base.join(r.string(n, &format!("{key}_file"))?);
    match yaml::read_file(&path) {
        Ok(v) if !v.trim().is_empty() => Some(v.trim().to_string()),
        Ok(_) => {
            r.error(n.pos, format!("{key}_file: {} is empty", path.display()));
            None
        }
        Err(e) => {
            r.error(n.pos, format!("{key}_file: cannot read {}: {e}", path.display()));
            None
        }
    }
}

/// `N/s`, `N/m`, `N/h` → the interval between two sends.
fn parse_rate(text: &str) -> Option<Duration> {
    let (count, unit) = text.trim().split_once('/')?;
    let count: u32 = count.trim().parse().ok().filter(|c| *c > 0)?;
    let unit = match unit.trim() {
        "s" => Duration::from_secs(1),
        "m" => Duration::from_secs(60),
        "h" => Duration::from_secs(3600),
        _ => return None,
    };
    Some(unit / count)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{SOURCES, problems};
    use super::*;
    use crate::config::Config;
    use crate::test_support::assert_contains_all;

    #[test]
    fn each_notifier_type_takes_only_its_own_fields() {
        let text = format!(
            "{SOURCES}notifiers:\n  - name: hook\n    type: webhook\n    url: 'http://127.0.0.1:9/x'\n    to: [oncall@example.com]\n  - name: mail\n    type: email\n    host: smtp.example.com\n    from: a@example.com\n    to: [c@example.com]\n    flavor: slack\n  - {{name: chat, type: webhook, flavour: slack, url: 'http://127.0.0.1:9/y'}}\n  - {{name: slack, type: webhook, flavor: slack, url: 'http://127.0.0.1:9/z', secret_env: HOME}}\n  - {{name: gw, type: sms, provider: http, url: 'http://127.0.0.1:9/s', body_template: '{{{{ text }}}}', to: ['+8613800138000'], account_sid: AC1}}\n"
        );
        let err = problems(&text, Path::new("z.yaml"));
        let want = [
            "z.yaml:7:5: unknown field \"to\" in webhook notifier (email, sms and voice notifiers take it); expected one of: name, type, timeout, rate_limit, flavor, url, url_env, url_file, headers, proxy_url",
            "z.yaml:13:5: unknown field \"flavor\" in email notifier (webhook notifiers take it); expected one of: name, type, timeout, rate_limit, host, port, security, username, password_env, password_file, hello_name, accept_invalid_certs, from, to",
            "z.yaml:14:33: unknown field \"flavour\" in webhook notifier (did you mean \"flavor\"?)",
            "z.yaml:15:78: unknown field \"secret_env\" in slack webhook notifier (dingtalk and feishu webhook notifiers take it)",
            "z.yaml:16:125: unknown field \"account_sid\" in http sms notifier (twilio sms and voice notifiers take it)",
        ];
        assert_contains_all(&err, &want);
        assert_eq!(err.lines().count(), want.len(), "{err}");
    }

    #[test]
    fn timeout_and_rate_limit() {
        let c = Config::parse(
            &format!("{SOURCES}notifiers:\n  - {{name: f, type: file, path: x, timeout: 3s, rate_limit: 20/m}}\n"),
            Path::new("z.yaml"),
        )
        .unwrap();
        assert_eq!(c.notifiers[0].timeout, Duration::from_secs(3));
        assert_eq!(c.notifiers[0].min_interval, Some(Duration::from_secs(3)));
        let err = problems(
            &format!("{SOURCES}notifiers:\n  - {{name: f, type: console, rate_limit: fast}}\n"),
            Path::new("z.yaml"),
        );
        assert_contains_all(&err, &["rate_limit: \"fast\" is not a rate"]);
    }

    #[test]
    fn webhook_secrets_come_from_env_or_file_and_are_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("secret.txt"), "SEC-file-4242\n").unwrap();
        let cfg = dir.path().join("z.yaml");
        let var = "ZKALERT_TEST_WEBHOOK_URL_7731";
        let text = format!(
            "{SOURCES}notifiers:\n  - {{name: ding, type: webhook, flavor: dingtalk, url_env: {var}, secret_file: secret.txt}}\n"
        );
        assert_contains_all(&problems(&text, &cfg), &[&format!("url_env: environment variable {var} is not set")]);
        let with_url = text
            .replace(&format!("url_env: {var}"), "url: 'https://oapi.dingtalk.com/robot/send?access_token=TOKEN-9911'");
        let c = Config::parse(&with_url, &cfg).unwrap();
        let NotifierKind::Webhook(w) = &c.notifiers[0].kind else { panic!("a webhook") };
        assert_eq!(w.secret.as_deref(), Some("SEC-file-4242"));
        let shown = format!("{c:?}");
        assert!(!shown.contains("SEC-file-4242") && !shown.contains("TOKEN-9911"), "{shown}");
        assert_contains_all(
            &problems(&with_url.replace("dingtalk", "teams"), &cfg),
            &["unknown webhook flavor \"teams\""],
        );
        let both = with_url.replace("secret_file: secret.txt", "secret_file: secret.txt, secret_env: X");
        assert_contains_all(&problems(&both, &cfg), &["not both"]);
    }

    /// A config with `notifiers` (their YAML lines), in a directory beside a
    /// Twilio token file (`token`): the directory, the config's path and text.
    fn beside_a_token(notifiers: &str) -> (tempfile::TempDir, std::path::PathBuf, String) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "tw-secret-5150").unwrap();
        let cfg = dir.path().join("z.yaml");
        (dir, cfg, format!("{SOURCES}notifiers:\n{notifiers}"))
    }

    #[test]
    fn sms_and_voice_notifiers() {
        let (_dir, cfg, text) = beside_a_token(
            "  - {name: sms, type: sms, account_sid: AC1, auth_token_file: token, from: '+15550001111', to: ['+8613800138000'], segments: 2}\n  - {name: gw, type: sms, provider: http, url: 'http://127.0.0.1:9/send', body_template: '{\"to\": {{ to | tojson }}, \"text\": {{ text | tojson }}}', to: ['+8613800138000']}\n  - {name: call, type: voice, account_sid: AC1, auth_token_file: token, from: '+15550001111', to: ['+8613800138000'], language: zh-CN}\n",
        );
        let c = Config::parse(&text, &cfg).unwrap();
        assert!(matches!(&c.notifiers[0].kind, NotifierKind::Sms(s) if s.segments == 2));
        assert!(matches!(&c.notifiers[1].kind, NotifierKind::Sms(_)));
        assert!(matches!(&c.notifiers[2].kind, NotifierKind::Voice(v) if v.language.as_deref() == Some("zh-CN")));
        assert!(!format!("{c:?}").contains("tw-secret-5150"), "the token is never shown");
        let bad = text.replace("'+8613800138000'], segments", "'13800138000'], segments");
        assert_contains_all(&problems(&bad, &cfg), &["E.164"]);
    }

    #[test]
    fn proxy_url_is_checked_where_it_stands_and_never_shown() {
        let (_dir, cfg, text) = beside_a_token(
            "  - {name: hook, type: webhook, url: 'http://127.0.0.1:9/x', proxy_url: 'HTTP://user:pr0xy-pass@proxy.example:3128'}\n  - {name: sms, type: sms, account_sid: AC1, auth_token_file: token, from: '+15550001111', to: ['+8613800138000'], proxy_url: 'http://proxy.example:3128'}\n  - {name: call, type: voice, account_sid: AC1, auth_token_file: token, from: '+15550001111', to: ['+8613800138000'], proxy_url: 'https://proxy.example:3129'}\n",
        );
        let c = Config::parse(&text, &cfg).unwrap();
        let proxies: Vec<_> = c
            .notifiers
            .iter()
            .map(|n| match &n.kind {
                NotifierKind::Webhook(w) => w.proxy_url.clone(),
                NotifierKind::Sms(s) => s.proxy_url.clone(),
                NotifierKind::Voice(v) => v.proxy_url.clone(),
                _ => None,
            })
            .map(|p| p.map(|p| p.as_str().to_string()))
            .collect();
        assert_eq!(
            proxies,
            [
                Some("HTTP://user:pr0xy-pass@proxy.example:3128".to_string()),
                Some("http://proxy.example:3128".into()),
                Some("https://proxy.example:3129".into())
            ]
        );
        assert!(!format!("{c:?}").contains("pr0xy-pass"), "the proxy's credentials are never shown");
        let bad = format!(
            "{SOURCES}notifiers:\n  - {{name: hook, type: webhook, url: 'http://127.0.0.1:9/x', proxy_url: 'socks5://u:pr0xy-pass@p:1080'}}\n  - {{name: mail, type: email, host: smtp, from: a@b, to: [c@d], proxy_url: 'http://p:3128'}}\n"
        );
        let err = problems(&bad, &cfg);
        let want = [
            "z.yaml:4:73: proxy_url socks5://p:1080/… must be an http:// or https:// URL",
            "z.yaml:5:65: unknown field \"proxy_url\" in email notifier (webhook, sms and voice notifiers take it)",
        ];
        assert_contains_all(&err, &want);
        assert!(!err.contains("pr0xy-pass"), "{err}");
    }
}
