//! The rule pack built into the binary (see `build.rs`), written out to a
//! directory so the loader, runbook resolution and `check` work on it like
//! on any rule tree.

use std::path::{Path, PathBuf};

include!(concat!(env!("OUT_DIR"), "/embedded_rules.rs"));

/// Writes the embedded `rules/` tree under `dir` and returns the rule
/// directories to load (the ZooKeeper pack; examples are left out).
pub fn write_rules(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    for (rel, contents) in FILES {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, contents)?;
    }
    let pack = dir.join("zookeeper");
    Ok(if pack.is_dir() { vec![pack] } else { vec![dir.join("examples")] })
}

#[cfg(test)]
mod tests {
    use crate::rule::{LoadOptions, find_rule_files, load_rules};

    /// `zkalert run` without a config gets the pack's cause → symptom
    /// relations with the pack.
    #[test]
    fn the_built_in_pack_carries_its_inhibit_rules() {
        let dir = tempfile::tempdir().unwrap();
        let paths = super::write_rules(dir.path()).unwrap();
        let rules = load_rules(&find_rule_files(&paths).unwrap(), LoadOptions::default()).unwrap();
        assert!(rules.warnings.is_empty(), "{}", rules.warnings);
        let pipeline =
            crate::config::Config::builtin().pipeline.with_rule_file_inhibitions(&rules.inhibit_rules).unwrap();
        let labels = |pairs: &[(&str, &str)]| crate::model::Labels::from_pairs(pairs.iter().copied());
        let quorum = labels(&[("alertname", "ZkQuorumLost"), ("cluster", "local"), ("severity", "P0")]);
        let no_leader = labels(&[("alertname", "ZkNoLeader"), ("cluster", "local"), ("severity", "P0")]);
        let firing = |labels| {
            let mut alert = crate::model::Alert::new(labels, crate::model::Severity::P0, 0.0, Default::default());
            alert.state = crate::model::AlertState::Firing;
            alert
        };
        let (quorum, no_leader) = (firing(quorum), firing(no_leader));
        assert!(crate::pipeline::inhibit::is_inhibited(&pipeline.inhibit_rules, [&quorum], &no_leader));
    }

    /// The console's node sparklines show what the store keeps, and it keeps
    /// only what rules read: with the built-in pack every one of them is kept
    /// (`zk_num_alive_connections`, read by no shipped rule, once showed none).
    #[test]
    fn the_built_in_pack_keeps_every_metric_the_console_charts() {
        let dir = tempfile::tempdir().unwrap();
        let paths = super::write_rules(dir.path()).unwrap();
        let rules = load_rules(&find_rule_files(&paths).unwrap(), LoadOptions::default()).unwrap();
        let dropped: Vec<&str> =
            crate::api::NODE_METRICS.iter().copied().filter(|m| !rules.retention.keeps(m)).collect();
        assert!(dropped.is_empty(), "the pack keeps none of {dropped:?}");
    }
}
