//! The host source, for zkalert running as an agent on a ZooKeeper host:
//! free space and inodes of the dataDir/dataLogDir filesystems, age of the
//! newest backup, whether the ZooKeeper process in the pid file lives, and
//! (given ZooKeeper's config file) its transaction logs and snapshots.

pub mod snapshots;

use crate::clock::Clock;
use crate::config::HostSourceConfig;
use crate::model::{Labels, Timestamp};
use crate::source::{PollBatch, SeriesBatch, Source};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub struct HostSource {
    pub config: HostSourceConfig,
    /// The last problem reading zoo.cfg, logged when it changes.
    zoo_cfg_problem: std::sync::Mutex<Option<String>>,
}

impl HostSource {
    pub fn new(config: HostSourceConfig) -> Self {
        Self { config, zoo_cfg_problem: Default::default() }
    }

    /// zoo.cfg as it is now, if one is configured and reads.
    fn zoo_cfg(&self) -> Option<snapshots::ZooCfg> {
        let path = self.config.zoo_cfg.as_ref()?;
        let read = snapshots::ZooCfg::read(path);
        let problem = read.as_ref().err().map(ToString::to_string);
        let mut last = self.zoo_cfg_problem.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if *last != problem {
            match &problem {
                Some(p) => tracing::warn!(problem = %p, "host source: cannot use ZooKeeper's config file"),
                None => tracing::info!(file = %path.display(), "host source: ZooKeeper's config file reads again"),
            }
            *last = problem;
        }
        read.ok()
    }

    fn target(&self) -> Labels {
        let mut l = self.config.labels.clone();
        l.insert("cluster", self.config.cluster.clone());
        l.insert("instance", self.config.instance.clone());
        l
    }

    /// One poll, synchronously (file system calls; cheap and bounded).
    pub fn collect(&self, ts: Timestamp) -> PollBatch {
        let mut out = PollBatch::default();
        let series =
            |labels: Labels, values: Vec<(String, f64)>| SeriesBatch { labels, info: None, timestamp: ts, values };
        let zoo_cfg = self.zoo_cfg();
        // dataDir and dataLogDir from zoo.cfg are watched as `paths` are.
        let mut dirs: Vec<&Path> = self.config.paths.iter().map(PathBuf::as_path).collect();
        if let Some(cfg) = &zoo_cfg {
            for dir in std::iter::once(&cfg.data_dir).chain(&cfg.data_log_dir) {
                if !dirs.contains(&dir.as_path()) {
                    dirs.push(dir);
                }
            }
        }
        for (dir, backup) in
            dirs.into_iter().map(|p| (p, false)).chain(self.config.backup_dirs.iter().map(|p| (p.as_path(), true)))
        {
            let mut labels = self.target();
            labels.insert("path", dir.display().to_string());
            let mut values = disk_metrics(dir);
            if backup && let Some(age) = newest_file_age(dir, SystemTime::now()) {
                values.push(("host_newest_file_age_seconds".into(), age.as_secs_f64()));
            }
            if values.is_empty() {
                tracing::warn!(path = %dir.display(), "host source: cannot read this directory's filesystem");
            }
            out.series.push(series(labels, values));
        }
        if let Some(cfg) = &zoo_cfg {
            out.series.push(series(self.target(), snapshots::metrics(cfg, SystemTime::now())));
        }
        if let Some(pid_file) = &self.config.pid_file {
            let up = process_alive(pid_file);
            out.series.push(series(self.target(), vec![("host_zk_process_up".into(), f64::from(u8::from(up)))]));
        }
        out
    }
}

impl Source for HostSource {
    fn name(&self) -> String {
        format!("host/{}/{}", self.config.cluster, self.config.instance)
    }
    fn interval(&self) -> Duration {
        self.config.interval
    }
    fn poll(&self, clock: Arc<dyn Clock>) -> Pin<Box<dyn Future<Output = PollBatch> + Send + '_>> {
        Box::pin(async move { self.collect(clock.now()) })
    }
}

/// Size, free bytes (for unprivileged users, as `df` shows), used percent
/// (`df`'s formula: used / (used + available)) and inode use.
pub fn disk_metrics(dir: &Path) -> Vec<(String, f64)> {
    let Ok(st) = rustix::fs::statvfs(dir) else { return Vec::new() };
    let frsize = st.f_frsize as f64;
    let used = st.f_blocks.saturating_sub(st.f_bfree) as f64;
    let avail = st.f_bavail as f64;
    let mut v = vec![
        ("host_disk_size_bytes".to_string(), st.f_blocks as f64 * frsize),
        ("host_disk_free_bytes".to_string(), avail * frsize),
    ];
    if used + avail > 0.0 {
        v.push(("host_disk_used_percent".into(), used / (used + avail) * 100.0));
    }
    if st.f_files > 0 {
        let used_inodes = st.f_files.saturating_sub(st.f_ffree) as f64;
        v.push(("host_disk_inodes_used_percent".into(), used_inodes / st.f_files as f64 * 100.0));
    }
    v
}

/// Age of the most recently modified file under `dir` (searched to a
/// bounded depth and count, so a huge tree can't stall the poll).
pub fn newest_file_age(dir: &Path, now: SystemTime) -> Option<Duration> {
    const MAX_DEPTH: usize = 4;
    const MAX_ENTRIES: usize = 100_000;
    let mut newest: Option<SystemTime> = None;
    let mut stack: Vec<(PathBuf, usize)> = vec![(dir.to_path_buf(), 0)];
    let mut seen = 0;
    while let Some((d, depth)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            seen += 1;
            if seen > MAX_ENTRIES {
                break;
            }
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                if depth < MAX_DEPTH {
                    stack.push((e.path(), depth + 1));
                }
            } else if let Ok(m) = meta.modified() {
                newest = newest.max(Some(m));
            }
        }
    }
    newest.map(|t| now.duration_since(t).unwrap_or_default())
}

/// The pid in the file names a live, non-zombie process that is a ZooKeeper
/// server (its command line mentions `zookeeper` or `QuorumPeerMain`), so a
/// recycled pid is not taken for ZooKeeper.
pub fn process_alive(pid_file: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(pid_file) else { return false };
    let Ok(pid) = text.trim().parse::<u32>() else { return false };
    let proc = PathBuf::from(format!("/proc/{pid}"));
    let Ok(stat) = std::fs::read_to_string(proc.join("stat")) else { return false };
    // The state follows the parenthesised command name: "pid (comm) S ...".
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next());
    if matches!(state, Some("Z" | "X")) {
        return false;
    }
    std::fs::read(proc.join("cmdline"))
        .map(|c| String::from_utf8_lossy(&c).to_lowercase())
        .is_ok_and(|c| c.contains("zookeeper") || c.contains("quorumpeermain"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_metrics_of_a_real_filesystem() {
        let dir = tempfile::tempdir().unwrap();
        let m: std::collections::HashMap<String, f64> = disk_metrics(dir.path()).into_iter().collect();
        assert!(m["host_disk_size_bytes"] > 0.0);
        assert!(m["host_disk_free_bytes"] <= m["host_disk_size_bytes"]);
        assert!((0.0..=100.0).contains(&m["host_disk_used_percent"]));
        assert!(disk_metrics(Path::new("/nonexistent/dir")).is_empty());
    }

    #[test]
    fn newest_file_age_finds_the_latest() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/snap.1"), "x").unwrap();
        let later = SystemTime::now() + Duration::from_secs(3600);
        let age = newest_file_age(dir.path(), later).unwrap();
        assert!(age >= Duration::from_secs(3599) && age < Duration::from_secs(3700), "{age:?}");
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(newest_file_age(empty.path(), later), None);
    }

    #[test]
    fn process_alive_checks_pid_state_and_command() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("zk.pid");
        // This test process is alive but is not ZooKeeper.
        std::fs::write(&pid_file, std::process::id().to_string()).unwrap();
        assert!(!process_alive(&pid_file));
        // A live process whose command line names zookeeper.
        let mut child = std::process::Command::new("sh").args(["-c", "sleep 30", "zookeeper-fake"]).spawn().unwrap();
        std::fs::write(&pid_file, child.id().to_string()).unwrap();
        // Between fork and exec the child still shows our command line.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !process_alive(&pid_file) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(process_alive(&pid_file));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!process_alive(&pid_file), "dead process");
        std::fs::write(&pid_file, "garbage").unwrap();
        assert!(!process_alive(&pid_file));
        assert!(!process_alive(&dir.path().join("missing.pid")));
    }
}
