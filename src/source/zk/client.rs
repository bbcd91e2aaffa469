//! The four-letter-word client: one TCP connection per command, each with
//! its own connect and read deadline, so a hung server (accepts, never
//! answers) costs at most the timeout and never delays other polls.

use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Why a command got no reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("connect to {addr}: {reason}")]
    Connect {
        addr: String,
        reason: String,
        /// Actively refused (nothing listens), as opposed to unreachable.
        refused: bool,
    },
    #[error("no reply from {addr} within {timeout:?}")]
    Timeout { addr: String, timeout: Duration },
    #[error("reading from {addr}: {reason}")]
    Read { addr: String, reason: String },
    #[error("reply from {addr} exceeds {limit} bytes")]
    TooLarge { addr: String, limit: usize },
}

impl FetchError {
    /// The class of the failure, as the `poll_error` label shows it:
    /// `refused`, `unreachable`, `timeout`, `too_large` or `read_error`.
    pub fn reason(&self) -> &'static str {
        match self {
            FetchError::Connect { refused: true, .. } => "refused",
            FetchError::Connect { .. } => "unreachable",
            FetchError::Timeout { .. } => "timeout",
            FetchError::TooLarge { .. } => "too_large",
            FetchError::Read { .. } => "read_error",
        }
    }
}

/// Replies larger than this are cut off (a `cons` of a very busy server is
/// a few hundred KiB; nothing we poll needs more).
pub const MAX_REPLY: usize = 8 * 1024 * 1024;

/// A reply and how long the round trip took.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub bytes: Vec<u8>,
    pub elapsed: Duration,
}

/// Sends one four-letter word and reads the reply until the server closes.
/// `timeout` bounds connect and read together.
pub async fn four_letter(addr: &str, command: &str, timeout: Duration) -> Result<Fetched, FetchError> {
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + timeout;
    let mut stream = match tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await {
        Err(_) => return Err(FetchError::Timeout { addr: addr.into(), timeout }),
        Ok(Err(e)) => {
            let refused = e.kind() == std::io::ErrorKind::ConnectionRefused;
            return Err(FetchError::Connect { addr: addr.into(), reason: e.to_string(), refused });
        }
        Ok(Ok(s)) => s,
    };
    // Read straight into the reply: no per-connection buffer in the future,
    // which matters with thousands of polls in flight.
    let exchange = async {
        stream.write_all(command.as_bytes()).await?;
        let mut bytes = Vec::new();
        (&mut stream).take(MAX_REPLY as u64 + 1).read_to_end(&mut bytes).await?;
        Ok::<_, std::io::Error>(if bytes.len() > MAX_REPLY { Err(()) } else { Ok(bytes) })
    };
    match tokio::time::timeout_at(deadline, exchange).await {
        Err(_) => Err(FetchError::Timeout { addr: addr.into(), timeout }),
        Ok(Err(e)) => Err(FetchError::Read { addr: addr.into(), reason: e.to_string() }),
        Ok(Ok(Err(()))) => Err(FetchError::TooLarge { addr: addr.into(), limit: MAX_REPLY }),
        Ok(Ok(Ok(bytes))) => Ok(Fetched { bytes, elapsed: started.elapsed() }),
    }
}
