//! Outbound HTTP for the notifiers that speak it (webhook, SMS, voice): the
//! one client they share, the `http(s)` URL check, URL redaction, reqwest
//! error text, and which HTTP answers are worth retrying.
//!
//! The client is built once per process (rustls on the ring provider) and
//! honours `HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY`/`NO_PROXY`, as curl does;
//! a notifier with `proxy_url` set gets a client for that proxy instead
//! (one per distinct proxy). Each request carries its notifier's timeout.

use super::SendError;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// Installs rustls' ring crypto provider as the process default, once.
/// Harmless if another provider was installed first.
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Whether `s` starts with `http://` or `https://`, in any case (URL
/// schemes are case-insensitive: `HTTPS://host/` is a URL).
pub fn is_http_url(s: &str) -> bool {
    let head = s.get(..8).unwrap_or(s);
    head.get(..7).is_some_and(|h| h.eq_ignore_ascii_case("http://")) || head.eq_ignore_ascii_case("https://")
}

/// A URL without what may be secret in it (credentials, path, query):
/// `https://oapi.dingtalk.com/…`.
pub fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => match (u.host_str(), u.port()) {
            (Some(h), Some(p)) => format!("{}://{h}:{p}/…", u.scheme()),
            (Some(h), None) => format!("{}://{h}/…", u.scheme()),
            _ => "<url>".to_string(),
        },
        Err(_) => "<url>".to_string(),
    }
}

/// An error and its causes, each cause once: reqwest's own message alone
/// hides the useful part ("Connection refused").
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// A reqwest error and its causes, without its URL (which may hold a token).
pub fn describe(e: reqwest::Error) -> String {
    error_chain(&e.without_url())
}

/// The class of an HTTP answer that is not a success: 408, 425, 429 and
/// 5xx are worth retrying, other 4xx (and anything else) are not.
pub fn status_error(status: u16, body: &str) -> SendError {
    let body: String = body.chars().take(200).collect();
    let text = format!("HTTP {status}: {}", body.trim());
    if status == 408 || status == 425 || status == 429 || status >= 500 {
        SendError::Retryable(text)
    } else {
        SendError::Permanent(text)
    }
}

/// A notifier's explicit proxy (`proxy_url`). It may carry credentials
/// (`http://user:pass@proxy:3128`), so its `Debug` shows scheme, host and
/// port only.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyUrl(String);

impl ProxyUrl {
    /// Checks that `url` is an `http(s)` URL with a host.
    pub fn parse(url: &str) -> Result<ProxyUrl, String> {
        let url = url.trim();
        if !is_http_url(url) {
            return Err(format!("proxy_url {} must be an http:// or https:// URL", redact_url(url)));
        }
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("proxy_url {} is invalid: {e}", redact_url(url)))?;
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(format!("proxy_url {} has no host", redact_url(url)));
        }
        Ok(ProxyUrl(url.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ProxyUrl").field(&redact_url(&self.0)).finish()
    }
}

/// Largest answer body read from a receiver: enough for any error text
/// (only the first 200 characters are reported) and for a chat robot's
/// JSON reply; the rest is not read.
pub const MAX_ANSWER: usize = 64 * 1024;

/// The client for one proxy choice: `None` is the process-wide client that
/// follows the environment's proxy variables. Built on first use, then shared.
fn client(proxy: Option<&ProxyUrl>) -> Result<reqwest::Client, String> {
    static SYSTEM: OnceLock<Result<reqwest::Client, String>> = OnceLock::new();
    static EXPLICIT: OnceLock<Mutex<HashMap<String, reqwest::Client>>> = OnceLock::new();
    let build = |proxy: Option<&ProxyUrl>| -> Result<reqwest::Client, String> {
        install_crypto_provider();
        let mut b = reqwest::Client::builder().user_agent(concat!("zkalert/", env!("CARGO_PKG_VERSION")));
        if let Some(p) = proxy {
            // Setting a proxy turns reqwest's environment proxies off for this client.
            let proxy = reqwest::Proxy::all(p.as_str())
                .map_err(|e| format!("proxy_url {}: {}", redact_url(p.as_str()), describe(e)))?;
            b = b.proxy(proxy);
        }
        b.build().map_err(|e| format!("cannot build the HTTP client: {}", describe(e)))
    };
    match proxy {
        None => SYSTEM.get_or_init(|| build(None)).clone(),
        Some(p) => {
            let cache = EXPLICIT.get_or_init(Default::default);
            let mut cache = cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Some(c) = cache.get(p.as_str()) {
                return Ok(c.clone());
            }
            let c = build(Some(p))?;
            cache.insert(p.as_str().to_string(), c.clone());
            Ok(c)
        }
    }
}

/// What one notifier sends HTTP requests with: the shared client for its
/// proxy choice, and its timeout (connecting, sending and reading the
/// answer, per request).
#[derive(Clone)]
pub struct Outbound {
    client: reqwest::Client,
    timeout: Duration,
    proxy: Option<ProxyUrl>,
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound").field("timeout", &self.timeout).field("proxy", &self.proxy).finish_non_exhaustive()
    }
}

impl Outbound {
    /// The shared client for `proxy` (the environment's proxies when `None`).
    pub fn new(timeout: Duration, proxy: Option<&ProxyUrl>) -> Result<Outbound, String> {
        if timeout.is_zero() {
            return Err("timeout must be positive".into());
        }
        Ok(Outbound { client: client(proxy)?, timeout, proxy: proxy.cloned() })
    }

    /// Where a request to `url` connects first: the notifier's proxy, else
    /// the environment's proxy for `url` (decided as reqwest decides, so
    /// `NO_PROXY` counts), else `url` itself.
    pub fn first_hop(&self, url: &str) -> String {
        if let Some(p) = &self.proxy {
            return p.as_str().to_string();
        }
        let via_env = url
            .parse::<hyper::Uri>()
            .ok()
            .and_then(|uri| hyper_util::client::proxy::matcher::Matcher::from_system().intercept(&uri))
            .map(|i| i.uri().to_string());
        via_env.unwrap_or_else(|| url.to_string())
    }

    /// Whether a request to `url` could start: a TCP connection to its
    /// first hop (the proxy, when one is used) within 5 s.
    pub async fn reachable(&self, url: &str) -> Result<(), SendError> {
        super::reachable(&self.first_hop(url), Duration::from_secs(5)).await
    }

    /// A request bounded by the notifier's timeout.
    pub fn request(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        self.client.request(method, url).timeout(self.timeout)
    }

    pub fn post(&self, url: &str) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::POST, url)
    }
}

/// Sends a request and reads (at most [`MAX_ANSWER`] bytes of) the answer:
/// a 2xx answer is its body; other statuses are classed by
/// [`status_error`]; transport errors and timeouts are retryable, a request
/// that cannot be built is not.
pub async fn send(req: reqwest::RequestBuilder) -> Result<String, SendError> {
    let mut resp = req.send().await.map_err(|e| {
        let builder = e.is_builder();
        let text = describe(e);
        if builder { SendError::Permanent(text) } else { SendError::Retryable(text) }
    })?;
    let status = resp.status().as_u16();
    let mut body = Vec::new();
    while body.len() < MAX_ANSWER {
        match resp.chunk().await.map_err(|e| SendError::Retryable(describe(e)))? {
            Some(chunk) => body.extend_from_slice(&chunk[..chunk.len().min(MAX_ANSWER - body.len())]),
            None => break,
        }
    }
    let text = String::from_utf8_lossy(&body).into_owned();
    if (200..300).contains(&status) { Ok(text) } else { Err(status_error(status, &text)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_urls_in_any_case() {
        for yes in ["http://a", "https://a/b", "HTTP://a", "HTTPS://A/b", "Https://x"] {
            assert!(is_http_url(yes), "{yes}");
        }
        for no in ["", "http", "http:/a", "ftp://a", "httpx://a", "zookeeper/node-down", "https:a", "日本語https://"]
        {
            assert!(!is_http_url(no), "{no}");
        }
    }

    #[test]
    fn redaction_keeps_scheme_host_and_port_only() {
        assert_eq!(redact_url("https://oapi.dingtalk.com/robot/send?access_token=T"), "https://oapi.dingtalk.com/…");
        assert_eq!(redact_url("http://user:pass@proxy:3128"), "http://proxy:3128/…");
        assert_eq!(redact_url("not a url"), "<url>");
    }

    #[test]
    fn proxy_url_is_checked_and_hides_credentials() {
        let p = ProxyUrl::parse(" http://user:s3cret@proxy.example:3128 ").unwrap();
        assert_eq!(p.as_str(), "http://user:s3cret@proxy.example:3128");
        let shown = format!("{p:?}");
        assert!(!shown.contains("s3cret") && !shown.contains("user"), "{shown}");
        assert!(shown.contains("proxy.example:3128"), "{shown}");
        let err = ProxyUrl::parse("socks5://user:s3cret@proxy:1080").unwrap_err();
        assert!(err.contains("must be an http:// or https:// URL") && !err.contains("s3cret"), "{err}");
        assert!(ProxyUrl::parse("http://").is_err());
    }

    #[test]
    fn statuses_worth_retrying() {
        for s in [408, 425, 429, 500, 502, 503, 504] {
            assert!(status_error(s, "").is_retryable(), "{s}");
        }
        for s in [300, 400, 401, 403, 404, 410, 413, 422] {
            assert!(!status_error(s, "").is_retryable(), "{s}");
        }
        assert_eq!(
            status_error(400, &format!("  {}", "x".repeat(500))).to_string(),
            format!("HTTP 400: {}", "x".repeat(198))
        );
    }

    #[test]
    fn error_chain_names_each_cause_once() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("error sending request")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let e = Outer(std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused"));
        assert_eq!(error_chain(&e), "error sending request: Connection refused");
    }

    #[test]
    fn outbound_needs_a_timeout_and_a_usable_proxy() {
        assert!(Outbound::new(Duration::from_secs(1), None).is_ok());
        assert!(Outbound::new(Duration::ZERO, None).is_err());
        let p = ProxyUrl::parse("http://127.0.0.1:9").unwrap();
        let via = Outbound::new(Duration::from_secs(1), Some(&p)).unwrap();
        assert_eq!(via.first_hop("https://api.twilio.com/x"), "http://127.0.0.1:9", "health checks the proxy");
    }
}
