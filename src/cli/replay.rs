//! `zkalert replay`: backtest rules against recorded samples and print the
//! firing timeline.

use super::outln;
use crate::rule::{LoadOptions, find_rule_files, load_rules};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub fn run(rule_paths: &[PathBuf], input: &Path, interval: Duration, json: bool) -> anyhow::Result<i32> {
    let files = find_rule_files(rule_paths)?;
    let rules = load_rules(&files, LoadOptions::default()).map_err(|d| anyhow::anyhow!("{d}"))?;
    for w in &rules.warnings.items {
        eprintln!("{w} (warning)");
    }
    let text = std::fs::read_to_string(input).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", input.display()))?;
    let samples = crate::replay::read_samples(input, &text).map_err(|d| anyhow::anyhow!("{d}"))?;
    let spans = crate::replay::replay(Arc::new(rules), &samples, interval);
    if json {
        for s in &spans {
            outln!("{}", serde_json::to_string(s)?);
        }
        return Ok(super::EXIT_OK);
    }
    if spans.is_empty() {
        outln!("no alert fired over {} samples", samples.len());
        return Ok(super::EXIT_OK);
    }
    for s in &spans {
        let to = s.to.map_or_else(|| "(still firing)".to_string(), |t| t.to_rfc3339());
        let mut labels = s.labels.clone();
        labels.remove(crate::model::ALERTNAME);
        labels.remove(crate::model::SEVERITY);
        outln!("{} → {}  {}  {} {}", s.from.to_rfc3339(), to, s.tier, s.alertname, labels);
    }
    Ok(super::EXIT_OK)
}
