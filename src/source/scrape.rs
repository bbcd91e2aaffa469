//! The HTTP plumbing both HTTP sources (AdminServer, Prometheus) share:
//! one client per source, rustls on the ring provider, a per-request
//! timeout, bounded bodies, and no panics on any response.

use crate::source::zk::client::FetchError;
use std::time::{Duration, Instant};

/// The HTTP client of one source: every request (connect + headers + body)
/// is bounded by `timeout`; environment proxies are ignored (as Prometheus
/// does: monitoring traffic goes straight to the target).
pub fn http_client(timeout: Duration) -> anyhow::Result<reqwest::Client> {
    crate::notify::http::install_crypto_provider();
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .no_proxy()
        .user_agent(concat!("zkalert/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| anyhow::anyhow!("cannot build the HTTP client: {e}"))
}

/// One HTTP answer: status, body (at most the limit) and round-trip time.
#[derive(Debug, Clone)]
pub struct HttpReply {
    pub status: u16,
    pub body: Vec<u8>,
    pub elapsed: Duration,
}

/// GETs `url`, reading at most `limit` body bytes. Any HTTP status is an
/// answer; transport failures (refused, timed out, reset, oversized body)
/// are errors in the 4lw client's terms.
pub async fn fetch(
    client: &reqwest::Client,
    url: &str,
    accept: Option<&str>,
    limit: usize,
) -> Result<HttpReply, FetchError> {
    let started = Instant::now();
    let mut req = client.get(url);
    if let Some(a) = accept {
        req = req.header(reqwest::header::ACCEPT, a);
    }
    let mut resp = req.send().await.map_err(|e| transport_error(url, &e))?;
    let status = resp.status().as_u16();
    let mut body = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > limit {
                    return Err(FetchError::TooLarge { addr: url.to_string(), limit });
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) => return Err(transport_error(url, &e)),
        }
    }
    Ok(HttpReply { status, body, elapsed: started.elapsed() })
}

fn transport_error(url: &str, e: &reqwest::Error) -> FetchError {
    // The source chain carries the useful part ("Connection refused").
    let reason = crate::notify::http::error_chain(e);
    let refused = std::iter::successors(std::error::Error::source(e), |s| s.source()).any(|s| {
        s.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
    });
    if e.is_timeout() {
        FetchError::Timeout { addr: url.to_string(), timeout: Duration::ZERO }
    } else if e.is_connect() {
        FetchError::Connect { addr: url.to_string(), reason, refused }
    } else {
        FetchError::Read { addr: url.to_string(), reason }
    }
}
