//! The `console` notifier: each message rendered with the `text` template
//! on standard output (the built-in default, so a first run shows its pages).

use super::template::{Context, Links, Templates};
use super::{Delivery, Notifier, SendError, SendFuture};
use std::io::Write;
use std::sync::Arc;

/// Prints each message on standard output, with a blank line after it.
pub struct ConsoleNotifier {
    pub name: String,
    pub templates: Arc<Templates>,
    pub links: Links,
}

impl Notifier for ConsoleNotifier {
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> &'static str {
        "console"
    }
    fn send<'a>(&'a self, d: &'a Delivery) -> SendFuture<'a> {
        let ctx = Context::new(&d.message, &d.channel, &self.links);
        let result = match self.templates.render("text", &ctx) {
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
