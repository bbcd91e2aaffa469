//! The host source's look at ZooKeeper's own files: from its config file
//! (`zoo.cfg`), where dataDir and dataLogDir are and whether autopurge runs;
//! from those directories' `version-2`, how many transaction logs
//! (`log.*`) and snapshots (`snapshot.*`) there are, their total size and
//! the age of the newest. Feeds the housekeeping rules (files piling up
//! without autopurge, no recent snapshot, logs sharing the snapshots' disk).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// A config file larger than this is not ZooKeeper's.
const MAX_CONFIG: u64 = 1 << 20;
/// At most this many entries of a `version-2` directory are looked at.
const MAX_ENTRIES: usize = 100_000;

/// What zoo.cfg says about where data goes and how it is purged.
#[derive(Debug, Clone, PartialEq)]
pub struct ZooCfg {
    pub data_dir: PathBuf,
    /// `dataLogDir` when it is set (to a directory other than dataDir).
    pub data_log_dir: Option<PathBuf>,
    /// `autopurge.purgeInterval` in hours; 0 (the default): autopurge off.
    pub purge_interval_hours: f64,
    /// `autopurge.snapRetainCount` (default 3, at least 3).
    pub snap_retain_count: f64,
    /// `snapCount` (default 100,000): transactions between snapshots.
    pub snap_count: f64,
}

/// Why zoo.cfg could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ZooCfgError {
    #[error("cannot read {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("{path} is larger than {MAX_CONFIG} bytes: not a ZooKeeper config")]
    TooLarge { path: String },
    #[error("{path} sets no dataDir")]
    NoDataDir { path: String },
}

impl ZooCfg {
    /// Reads a zoo.cfg (Java properties: `key=value` or `key: value`,
    /// `#`/`!` comments).
    pub fn read(path: &Path) -> Result<ZooCfg, ZooCfgError> {
        let shown = path.display().to_string();
        let meta = std::fs::metadata(path).map_err(|error| ZooCfgError::Read { path: shown.clone(), error })?;
        if meta.len() > MAX_CONFIG {
            return Err(ZooCfgError::TooLarge { path: shown });
        }
        let text = std::fs::read(path).map_err(|error| ZooCfgError::Read { path: shown.clone(), error })?;
        Self::parse(&String::from_utf8_lossy(&text)).ok_or(ZooCfgError::NoDataDir { path: shown })
    }

    /// `None` without a dataDir.
    pub fn parse(text: &str) -> Option<ZooCfg> {
        let mut get = std::collections::HashMap::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                continue;
            }
            let Some(at) = line.find(['=', ':']) else { continue };
            get.insert(line[..at].trim(), line[at + 1..].trim());
        }
        let number = |key: &str, default: f64| get.get(key).and_then(|v| v.parse::<f64>().ok()).unwrap_or(default);
        let data_dir = PathBuf::from(get.get("dataDir").filter(|d| !d.is_empty())?);
        let data_log_dir =
            get.get("dataLogDir").filter(|d| !d.is_empty()).map(PathBuf::from).filter(|d| *d != data_dir);
        Some(ZooCfg {
            data_dir,
            data_log_dir,
            purge_interval_hours: number("autopurge.purgeInterval", 0.0).max(0.0),
            // ZooKeeper raises a smaller count to 3.
            snap_retain_count: number("autopurge.snapRetainCount", 3.0).max(3.0),
            snap_count: number("snapCount", 100_000.0),
        })
    }
}

/// Count, total bytes and newest modification time of the files in `dir`
/// whose names start with `prefix`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Files {
    pub count: usize,
    pub bytes: u64,
    pub newest: Option<SystemTime>,
}

pub fn files(dir: &Path, prefix: &str) -> Option<Files> {
    let entries = std::fs::read_dir(dir).ok()?;
    let mut out = Files::default();
    for e in entries.flatten().take(MAX_ENTRIES) {
        if !e.file_name().to_string_lossy().starts_with(prefix) {
            continue;
        }
        let Ok(meta) = e.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        out.count += 1;
        out.bytes += meta.len();
        out.newest = out.newest.max(meta.modified().ok());
    }
    Some(out)
}

/// The metrics of one poll: `host_zk_*` (docs/metrics.md).
pub fn metrics(cfg: &ZooCfg, now: SystemTime) -> Vec<(String, f64)> {
    let snapshot_dir = cfg.data_dir.join("version-2");
    let log_dir = cfg.data_log_dir.as_ref().unwrap_or(&cfg.data_dir).join("version-2");
    let age = |t: SystemTime| now.duration_since(t).unwrap_or_default().as_secs_f64();
    let mut out = vec![
        ("host_zk_autopurge_interval_hours".to_string(), cfg.purge_interval_hours),
        ("host_zk_autopurge_snap_retain_count".into(), cfg.snap_retain_count),
        ("host_zk_snap_count".into(), cfg.snap_count),
        ("host_zk_txn_log_dir_separate".into(), f64::from(u8::from(cfg.data_log_dir.is_some()))),
    ];
    if let Some(s) = files(&snapshot_dir, "snapshot.") {
        out.push(("host_zk_snapshots".into(), s.count as f64));
        out.push(("host_zk_snapshots_bytes".into(), s.bytes as f64));
        if let Some(t) = s.newest {
            out.push(("host_zk_newest_snapshot_age_seconds".into(), age(t)));
        }
    }
    if let Some(l) = files(&log_dir, "log.") {
        out.push(("host_zk_txn_logs".into(), l.count as f64));
        out.push(("host_zk_txn_logs_bytes".into(), l.bytes as f64));
        if let Some(t) = l.newest {
            out.push(("host_zk_newest_txn_log_age_seconds".into(), age(t)));
        }
    }
    // A dataLogDir of its own, on the snapshots' filesystem anyway.
    if let Some(log_dir) = &cfg.data_log_dir
        && let (Ok(a), Ok(b)) = (std::fs::metadata(&cfg.data_dir), std::fs::metadata(log_dir))
    {
        out.push(("host_zk_txn_log_same_filesystem".into(), f64::from(u8::from(a.dev() == b.dev()))));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn zoo_cfg_is_read_as_zookeeper_reads_it() {
        let cfg = ZooCfg::parse(
            "# a comment\ntickTime=2000\ndataDir = /var/lib/zookeeper\ndataLogDir: /var/lib/zookeeper-log\n\
             autopurge.purgeInterval=24\nautopurge.snapRetainCount=1\n! another\nsnapCount=5000\n",
        )
        .unwrap();
        assert_eq!(cfg.data_dir, PathBuf::from("/var/lib/zookeeper"));
        assert_eq!(cfg.data_log_dir, Some(PathBuf::from("/var/lib/zookeeper-log")));
        assert_eq!((cfg.purge_interval_hours, cfg.snap_retain_count, cfg.snap_count), (24.0, 3.0, 5000.0));
        let defaults = ZooCfg::parse("dataDir=/d\ndataLogDir=/d\n").unwrap();
        assert_eq!(defaults.data_log_dir, None, "the same directory is not a dataLogDir of its own");
        assert_eq!(
            (defaults.purge_interval_hours, defaults.snap_retain_count, defaults.snap_count),
            (0.0, 3.0, 100_000.0)
        );
        assert_eq!(ZooCfg::parse("tickTime=2000\n"), None);
    }

    #[test]
    fn snapshots_and_logs_are_counted_with_their_size_and_newest_age() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let logs = dir.path().join("logs");
        std::fs::create_dir_all(data.join("version-2")).unwrap();
        std::fs::create_dir_all(logs.join("version-2")).unwrap();
        for (name, size) in [("snapshot.0", 10), ("snapshot.1a", 20), ("acceptedEpoch", 2)] {
            std::fs::write(data.join("version-2").join(name), vec![0u8; size]).unwrap();
        }
        for (name, size) in [("log.1", 100), ("log.1b", 50)] {
            std::fs::write(logs.join("version-2").join(name), vec![0u8; size]).unwrap();
        }
        let cfg = ZooCfg {
            data_dir: data,
            data_log_dir: Some(logs),
            purge_interval_hours: 0.0,
            snap_retain_count: 3.0,
            snap_count: 100_000.0,
        };
        let m: std::collections::HashMap<String, f64> =
            metrics(&cfg, SystemTime::now() + Duration::from_secs(600)).into_iter().collect();
        assert_eq!((m["host_zk_snapshots"], m["host_zk_snapshots_bytes"]), (2.0, 30.0));
        assert_eq!((m["host_zk_txn_logs"], m["host_zk_txn_logs_bytes"]), (2.0, 150.0));
        assert!((599.0..700.0).contains(&m["host_zk_newest_snapshot_age_seconds"]));
        assert!((599.0..700.0).contains(&m["host_zk_newest_txn_log_age_seconds"]));
        assert_eq!(m["host_zk_txn_log_same_filesystem"], 1.0, "two directories of one filesystem");
        assert_eq!(m["host_zk_autopurge_interval_hours"], 0.0);
    }
}
