//! The `console` notifier: each message as human-readable lines on standard
//! output (the built-in default, so a first run shows its pages).

use super::{Delivery, Notifier, SendError, SendFuture, message_lines};
use std::io::Write;

/// Prints each message as lines on standard output.
pub struct ConsoleNotifier {
    pub name: String,
}

impl Notifier for ConsoleNotifier {
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> &'static str {
        "console"
    }
    fn send<'a>(&'a self, d: &'a Delivery) -> SendFuture<'a> {
        let mut out = std::io::stdout().lock();
        let result = writeln!(out, "{}", message_lines(&d.message))
            .and_then(|()| out.flush())
            .map_err(|e| SendError::Retryable(format!("cannot write to standard output: {e}")));
        Box::pin(std::future::ready(result))
    }
}
