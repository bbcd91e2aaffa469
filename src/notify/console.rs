//! The `console` notifier: each message rendered with the `text` template
//! on standard output (the built-in default, so a first run shows its pages).

use super::template::Rendering;
use super::{Delivery, Notifier, SendError, SendFuture};
use std::io::Write;

/// Prints each message on standard output, with a blank line after it.
pub struct ConsoleNotifier {
    rendering: Rendering,
}

impl ConsoleNotifier {
    pub fn new(rendering: Rendering) -> Self {
        Self { rendering }
    }
}

impl Notifier for ConsoleNotifier {
    fn send<'a>(&'a self, d: &'a Delivery) -> SendFuture<'a> {
        let result = match self.rendering.render("text", d) {
            // A broken template is a config error: retrying cannot fix it.
            Err(e) => Err(SendError::Permanent(e.to_string())),
            Ok(text) => {
                let mut out = std::io::stdout().lock();
                writeln!(out, "{text}\n")
                    .and_then(|()| out.flush())
                    .map_err(|e| SendError::Retryable(format!("cannot write to standard output: {e}")))
            }
        };
        Box::pin(std::future::ready(result))
    }
}
