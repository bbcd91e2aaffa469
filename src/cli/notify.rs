//! `zkalert notify test --notifier NAME [--tier P1]`: sends a sample
//! message through one configured channel, for real, and reports what
//! happened (delivered, or the error and whether it would be retried).

use super::{EXIT_FAIL, EXIT_OK, outln};
use crate::config::Config;
use crate::model::Severity;
use crate::notify::Delivery;
use crate::notify::template::samples;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

pub async fn test(config_path: &Path, notifier: &str, tier: Severity) -> anyhow::Result<i32> {
    let config = Config::load(config_path).map_err(|d| anyhow::anyhow!("invalid config:\n{d}"))?;
    let channels = crate::runner::channels::build(&config);
    let Some(channel) = channels.iter().find(|c| c.name == notifier) else {
        let names: Vec<&str> = channels.iter().map(|c| c.name.as_str()).collect();
        anyhow::bail!("no notifier named {notifier:?}; configured: {}", names.join(", "));
    };
    let mut message = samples().remove(0);
    message.tier = tier;
    for a in &mut message.firing {
        a.severity = tier;
        a.labels.insert("severity", tier.as_str());
    }
    message.id = format!("test-{}", crate::clock::Clock::now(&crate::clock::SystemClock).as_millis());
    message.channels = vec![notifier.to_string()];
    // Every format says so, so nobody takes the sample for an outage.
    message.test = true;
    let delivery = Delivery { message: Arc::new(message), channel: notifier.to_string() };
    match tokio::time::timeout(channel.timeout, channel.notifier.health()).await {
        Ok(Ok(())) => outln!("health: {notifier} ({}) reachable", channel.kind),
        Ok(Err(e)) => outln!("health: {notifier} ({}) NOT reachable: {e}", channel.kind),
        Err(_) => outln!("health: {notifier} ({}) no answer within {:?}", channel.kind, channel.timeout),
    }
    let started_send = Instant::now();
    let result = match tokio::time::timeout(channel.timeout, channel.notifier.send(&delivery)).await {
        Ok(r) => r,
        Err(_) => Err(crate::notify::SendError::Retryable(format!("timed out after {:?}", channel.timeout))),
    };
    let took = started_send.elapsed().as_millis();
    match result {
        Ok(()) => {
            outln!(
                "delivered a sample {tier} message through {notifier} ({}) in {took} ms (idempotency key {})",
                channel.kind,
                delivery.idempotency_key()
            );
            Ok(EXIT_OK)
        }
        Err(e) => {
            let class = if e.is_retryable() { "retryable: zkalert would try again" } else { "permanent" };
            outln!("FAILED through {notifier} ({}) after {took} ms: {e} ({class})", channel.kind);
            Ok(EXIT_FAIL)
        }
    }
}
