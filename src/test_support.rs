//! Helpers the unit tests of several modules share (built for tests only).

use crate::diag::Diagnostics;
use crate::model::{Labels, Timestamp};
use crate::rule::{LoadOptions, RuleSet, load_rules};
use crate::source::{PollBatch, SeriesBatch};
use std::sync::{Arc, Mutex};

/// Loads a rule file's YAML text, from a temporary file as `zkalert`
/// reads rule files.
pub fn rules_from_yaml(yaml: &str) -> Result<RuleSet, Diagnostics> {
    rules_with_scripts(yaml, &[])
}

/// [`rules_from_yaml`] with script files beside the rule file: (name, text).
pub fn rules_with_scripts(yaml: &str, scripts: &[(&str, &str)]) -> Result<RuleSet, Diagnostics> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rules.yaml");
    std::fs::write(&path, yaml).unwrap();
    for (name, text) in scripts {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    load_rules(&[path], LoadOptions::default())
}

/// One poll of `instance` at `secs` seconds: these values, one series.
pub fn poll(instance: &str, secs: i64, values: &[(&str, f64)]) -> PollBatch {
    PollBatch {
        series: vec![SeriesBatch {
            labels: Labels::from_pairs([("instance", instance)]),
            info: None,
            timestamp: Timestamp::from_millis(secs * 1000),
            values: values.iter().map(|(name, value)| (name.to_string(), *value)).collect(),
        }],
    }
}

/// Runs `f` with a `tracing` subscriber that keeps what is logged (plain
/// text): what `f` returned, and the log's lines.
pub fn logged<T>(f: impl FnOnce() -> T) -> (T, Vec<String>) {
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let shared = Shared::default();
    let writer = shared.clone();
    let subscriber = tracing_subscriber::fmt().with_ansi(false).with_writer(move || writer.clone()).finish();
    let result = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8(shared.0.lock().unwrap().clone()).unwrap();
    (result, text.lines().map(str::to_string).collect())
}

/// Fails unless `text` contains each of `wanted`, naming the one missing.
pub fn assert_contains_all(text: &str, wanted: &[&str]) {
    for want in wanted {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
}

/// The JSON lines a file notifier wrote to `path` (none if it is not there).
pub fn json_lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path).unwrap_or_default().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Hands the runner every delivery report until none comes for 300 ms.
pub async fn settle(
    runner: &mut crate::runner::Runner,
    reports: &mut tokio::sync::mpsc::UnboundedReceiver<crate::notify::delivery::Report>,
) {
    while let Ok(Some(r)) = tokio::time::timeout(std::time::Duration::from_millis(300), reports.recv()).await {
        runner.on_report(r);
    }
}
