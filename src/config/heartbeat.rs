//! The `heartbeat` section of `zkalert.yaml`: the dead man's switch. A ping
//! URL of an external service that pages when the pings stop, how often
//! and how to ping it, and optionally the always-firing `ZkalertWatchdog`
//! alert routed to one chosen notifier (docs/heartbeat.md).

use super::notifiers::{proxy_url, secret};
use crate::diag::Pos;
use crate::notify::http::ProxyUrl;
use crate::yaml::{Node, Reader};
use std::path::Path;
use std::time::Duration;

/// The heartbeat's settings. The URL may hold the service's token, so
/// `Debug` shows its scheme, host and port only.
#[derive(Clone, PartialEq)]
pub struct HeartbeatConfig {
    pub url: String,
    /// One ping per interval while the loop is healthy (default 60 s).
    pub interval: Duration,
    pub method: PingMethod,
    /// One ping may take this long, answer included (default 10 s, at most
    /// the interval, so pings never overlap).
    pub timeout: Duration,
    pub proxy_url: Option<ProxyUrl>,
    /// The notifier the `ZkalertWatchdog` alert goes to, when enabled.
    pub watchdog_channel: Option<String>,
}

impl std::fmt::Debug for HeartbeatConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeartbeatConfig")
            .field("url", &crate::notify::http::redact_url(&self.url))
            .field("interval", &self.interval)
            .field("method", &self.method)
            .field("timeout", &self.timeout)
            .field("proxy_url", &self.proxy_url)
            .field("watchdog_channel", &self.watchdog_channel)
            .finish()
    }
}

/// How a ping is sent: most services take either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PingMethod {
    Get,
    Post,
}

impl PingMethod {
    pub fn as_reqwest(self) -> reqwest::Method {
        match self {
            PingMethod::Get => reqwest::Method::GET,
            PingMethod::Post => reqwest::Method::POST,
        }
    }
}

/// The shortest interval: a ping a second is already more than any
/// dead-man's-switch service wants.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The `heartbeat` mapping, and where its `watchdog.channel` stands (checked
/// against the notifiers once every section is read).
pub(super) fn read(r: &mut Reader, n: &Node, base: &Path) -> Option<(HeartbeatConfig, Pos)> {
    let known = ["url", "url_env", "url_file", "interval", "method", "timeout", "proxy_url", "watchdog"];
    let fields = r.map(n, "heartbeat", &known);
    let get = |k: &str| fields.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
    let url = match get("url") {
        Some(v) => r.string(v, "url"),
        None => secret(r, &fields, "url", base),
    };
    if url.is_none() && get("url_env").is_none() && get("url_file").is_none() {
        r.error(n.pos, "heartbeat needs `url` (or `url_env` / `url_file` when it holds a token): the ping URL");
    }
    if let Some(u) = &url
        && !crate::notify::http::is_http_url(u)
    {
        let pos = get("url").map_or(n.pos, |v| v.pos);
        r.error(
            pos,
            format!("heartbeat url {} must start with http:// or https://", crate::notify::http::redact_url(u)),
        );
    }
    let interval = get("interval").and_then(|v| {
        let d = super::positive_duration(r, v, "interval")?;
        if d < MIN_INTERVAL {
            r.error(v.pos, "interval must be at least 1s");
            return None;
        }
        Some(d)
    });
    let interval = interval.unwrap_or(DEFAULT_INTERVAL);
    let timeout = match get("timeout") {
        Some(v) => {
            let t = super::positive_duration(r, v, "timeout");
            if t.is_some_and(|t| t > interval) {
                r.error(v.pos, "timeout must not be longer than interval (pings never overlap)");
            }
            t.unwrap_or(DEFAULT_TIMEOUT)
        }
        None => DEFAULT_TIMEOUT.min(interval),
    };
    let method = match get("method").map(|v| (v, r.string(v, "method"))) {
        None => PingMethod::Get,
        Some((v, text)) => match text.as_deref().map(str::to_ascii_uppercase).as_deref() {
            Some("GET") => PingMethod::Get,
            Some("POST") => PingMethod::Post,
            Some(_) => {
                r.error(v.pos, format!("method: {:?}; expected GET or POST", text.unwrap_or_default()));
                PingMethod::Get
            }
            None => PingMethod::Get,
        },
    };
    let proxy_url = get("proxy_url").and_then(|v| proxy_url(r, v));
    let mut watchdog = None;
    if let Some(w) = get("watchdog") {
        let fields = r.map(w, "heartbeat watchdog", &["channel"]);
        match fields.first().and_then(|(_, v)| r.string(v, "channel").map(|c| (c, v.pos))) {
            Some(found) => watchdog = Some(found),
            None if fields.is_empty() => {
                r.error(w.pos, "watchdog needs `channel`: the notifier the ZkalertWatchdog alert goes to")
            }
            None => {}
        }
    }
    let channel_pos = watchdog.as_ref().map_or(n.pos, |(_, pos)| *pos);
    let config =
        HeartbeatConfig { url: url?, interval, method, timeout, proxy_url, watchdog_channel: watchdog.map(|(c, _)| c) };
    Some((config, channel_pos))
}

/// Checks that the watchdog's channel names a configured notifier.
pub(super) fn check_channel(r: &mut Reader, config: &HeartbeatConfig, pos: Pos, notifiers: &[String]) {
    let Some(channel) = &config.watchdog_channel else { return };
    if notifiers.contains(channel) {
        return;
    }
    let names: Vec<&str> = notifiers.iter().map(String::as_str).collect();
    let hint = crate::yaml::closest(channel, &names).map(|c| format!(" (did you mean {c:?}?)")).unwrap_or_default();
    r.error(pos, format!("watchdog channel: no notifier named {channel:?}{hint}; configured: {}", names.join(", ")));
}

#[cfg(test)]
mod tests {
    use super::super::tests::{SOURCES, problems};
    use crate::config::Config;
    use crate::config::heartbeat::PingMethod;
    use crate::test_support::assert_contains_all;
    use std::path::Path;
    use std::time::Duration;

    const NOTIFIERS: &str =
        "notifiers:\n  - {name: pager, type: console}\n  - {name: deadman, type: file, path: w.jsonl}\n";

    #[test]
    fn defaults_and_every_field() {
        let text = format!("{SOURCES}{NOTIFIERS}heartbeat: {{url: 'https://hc.example/ping/abc-123'}}\n");
        let c = Config::parse(&text, Path::new("z.yaml")).unwrap();
        let h = c.heartbeat.expect("a heartbeat");
        assert_eq!(
            (h.interval, h.timeout, h.method),
            (Duration::from_secs(60), Duration::from_secs(10), PingMethod::Get)
        );
        assert_eq!(h.watchdog_channel, None);
        assert!(!format!("{h:?}").contains("abc-123"), "the URL's token is never shown");
        let text = format!(
            "{SOURCES}{NOTIFIERS}heartbeat:\n  url: 'http://127.0.0.1:9/p'\n  interval: 5s\n  timeout: 2s\n  method: post\n  proxy_url: 'http://proxy:3128'\n  watchdog: {{channel: deadman}}\n"
        );
        let h = Config::parse(&text, Path::new("z.yaml")).unwrap().heartbeat.unwrap();
        assert_eq!(
            (h.interval, h.timeout, h.method),
            (Duration::from_secs(5), Duration::from_secs(2), PingMethod::Post)
        );
        assert_eq!(h.watchdog_channel.as_deref(), Some("deadman"));
        assert_eq!(h.proxy_url.map(|p| p.as_str().to_string()).as_deref(), Some("http://proxy:3128"));
        let short = format!("{SOURCES}heartbeat: {{url: 'http://127.0.0.1:9/p', interval: 2s}}\n");
        let h = Config::parse(&short, Path::new("z.yaml")).unwrap().heartbeat.unwrap();
        assert_eq!(h.timeout, Duration::from_secs(2), "the default timeout is at most the interval");
    }

    #[test]
    fn problems_at_their_positions() {
        let text = format!(
            "{SOURCES}{NOTIFIERS}heartbeat:\n  url: 'ftp://x/p'\n  interval: 500ms\n  timeout: 2h\n  method: PUT\n  intervall: 1s\n  watchdog: {{channel: deadmen}}\n"
        );
        let err = problems(&text, Path::new("z.yaml"));
        let want = [
            "z.yaml:7:8: heartbeat url ftp://x/… must start with http:// or https://",
            "z.yaml:8:13: interval must be at least 1s",
            "z.yaml:9:12: timeout: 2h is longer than the limit of 5m",
            "z.yaml:10:11: method: \"PUT\"; expected GET or POST",
            "z.yaml:11:3: unknown field \"intervall\" in heartbeat (did you mean \"interval\"?)",
            "z.yaml:12:23: watchdog channel: no notifier named \"deadmen\" (did you mean \"deadman\"?); configured: pager, deadman",
        ];
        assert_contains_all(&err, &want);
        assert_eq!(err.lines().count(), want.len(), "{err}");
        let err = problems(
            &format!("{SOURCES}heartbeat: {{interval: 5s, timeout: 6s, watchdog: {{}}}}\n"),
            Path::new("z.yaml"),
        );
        assert_contains_all(
            &err,
            &[
                "z.yaml:3:12: heartbeat needs `url`",
                "z.yaml:3:36: timeout must not be longer than interval",
                "z.yaml:3:50: watchdog needs `channel`",
            ],
        );
    }

    #[test]
    fn the_url_by_reference_is_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ping-url"), "https://hc.example/ping/SECRET-77\n").unwrap();
        let cfg = dir.path().join("z.yaml");
        let c = Config::parse(&format!("{SOURCES}heartbeat: {{url_file: ping-url}}\n"), &cfg).unwrap();
        let h = c.heartbeat.as_ref().unwrap();
        assert_eq!(h.url, "https://hc.example/ping/SECRET-77");
        assert!(!format!("{c:?}").contains("SECRET-77"));
        let var = "ZKALERT_TEST_HEARTBEAT_URL_4417";
        let err = problems(&format!("{SOURCES}heartbeat: {{url_env: {var}}}\n"), &cfg);
        assert_contains_all(&err, &[&format!("url_env: environment variable {var} is not set")]);
    }
}
