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
