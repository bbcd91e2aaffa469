//! The API's accept loop: at most so many connections at once (a quarter of
//! the process's file-descriptor limit, so sources, the state file and
//! notifiers always have descriptors left), a short deadline for a request's
//! headers, and a rate-limited log line when connections are refused or
//! cannot be accepted. Slow or idle clients cannot starve the engine.

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// How long a client may take to send a request's headers (hyper's default
/// is 30 s: a slow client held a connection that long).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// At most one log line per this long about refused connections.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// How long to wait after `accept` failed for a reason other than the
/// connection itself (out of file descriptors): a retry at once would spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// How many API connections at once, and how long headers may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits { max_connections: 256, header_read_timeout: HEADER_READ_TIMEOUT }
    }
}

impl ConnectionLimits {
    /// A quarter of the file-descriptor limit, between 8 and 1,024: the rest
    /// is the reserve for sources, the state file, notifiers and logs.
    pub fn for_fd_limit(fd_limit: u64) -> Self {
        let max_connections = usize::try_from(fd_limit / 4).unwrap_or(usize::MAX).clamp(8, 1024);
        ConnectionLimits { max_connections, ..Self::default() }
    }
}

/// Raises the soft limit on open files to the hard limit (as servers
/// commonly do: many systems default to 1,024 soft) and returns the limit
/// now in force; `None` if it cannot be read.
pub fn raise_fd_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
        let limit = getrlimit(Resource::Nofile);
        // No hard limit: the kernel still caps open files (nr_open); ask
        // for a generous number rather than infinity, which it refuses.
        let target = limit.maximum.unwrap_or(1 << 20);
        if limit.current.is_some_and(|c| c < target) {
            let raised = Rlimit { current: Some(target), maximum: limit.maximum };
            match setrlimit(Resource::Nofile, raised) {
                Ok(()) => tracing::info!(from = ?limit.current, to = target, "raised the open-files limit"),
                Err(e) => {
                    tracing::warn!(error = %e, soft = ?limit.current, hard = ?limit.maximum, "cannot raise the open-files limit")
                }
            }
        }
        getrlimit(Resource::Nofile).current.or(Some(target))
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Counts events and logs at most once per [`LOG_EVERY`] with the count
/// since the last line.
struct RateLimitedLog {
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimitedLog {
    fn new() -> Self {
        RateLimitedLog { last: None, suppressed: 0 }
    }

    /// `Some(count)` when a line is due: the events since the last line.
    fn due(&mut self) -> Option<u64> {
        self.suppressed += 1;
        if self.last.is_some_and(|t| t.elapsed() < LOG_EVERY) {
            return None;
        }
        self.last = Some(Instant::now());
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// The most a connection buffers of what it reads (headers included).
pub(super) const READ_BUFFER: usize = 64 << 10;

/// Serves `app` on `listener` within `limits` until `shutdown` completes.
/// Over the cap a connection is accepted and closed at once, so a client
/// learns at once instead of waiting in the backlog. Connections in flight
/// at shutdown finish on their own tasks.
pub async fn serve_connections(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut refused_log = RateLimitedLog::new();
    let mut accept_log = RateLimitedLog::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    // hyper keeps a connection's read buffer for the connection's life, as
    // large as the largest read: a kept-alive Prometheus posting 1,000
    // alerts at a time held ~400 KiB per connection. Capped, a body is read
    // in more pieces; a request's headers must still fit.
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout).max_buf_size(READ_BUFFER);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(conn) => conn,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                if let Some(count) = accept_log.due() {
                    tracing::error!(error = %e, count, "cannot accept API connections (out of file descriptors?)");
                }
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            drop(stream);
            if let Some(count) = refused_log.due() {
                tracing::warn!(
                    max_connections = limits.max_connections,
                    count,
                    last_peer = %peer,
                    "API connection limit reached: refusing connections"
                );
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        // The peer, for handlers that trust some networks (the intake).
        let app = app.clone().layer(axum::Extension(axum::extract::ConnectInfo(peer)));
        let connection = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
        tokio::spawn(async move {
            // Errors are the client's (reset, header timeout): nothing to do.
            let _ = connection.await;
            drop(permit);
        });
    }
}

/// Serves the API's routes over `state` within `limits`.
pub async fn serve_limited(
    listener: tokio::net::TcpListener,
    state: super::ApiState,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_connections(listener, super::router(state), limits, shutdown).await
}

/// Errors of one connection that `accept` reports (the listener is fine).
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), ConnectionRefused | ConnectionAborted | ConnectionReset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_is_a_quarter_of_the_fd_limit_within_bounds() {
        assert_eq!(ConnectionLimits::for_fd_limit(1024).max_connections, 256);
        assert_eq!(ConnectionLimits::for_fd_limit(16).max_connections, 8);
        assert_eq!(ConnectionLimits::for_fd_limit(1 << 20).max_connections, 1024);
    }

    #[test]
    fn the_log_is_rate_limited_and_counts_what_it_skipped() {
        let mut log = RateLimitedLog::new();
        assert_eq!(log.due(), Some(1));
        assert_eq!(log.due(), None);
        assert_eq!(log.due(), None);
        log.last = Some(Instant::now() - LOG_EVERY);
        assert_eq!(log.due(), Some(3));
    }
}
