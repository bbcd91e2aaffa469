//! A real Prometheus (Debian's `prometheus`) for the tests that meet it:
//! scraping zkalert's `/metrics`, or sending its alerts to zkalert's
//! Alertmanager API.

use super::http::{free_port, get};
use super::process::{Watchdog, kill_and_reap, tail};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A real Prometheus (Debian's `prometheus`) on loopback, killed (and its
/// data removed) on drop.
pub struct Prometheus {
    child: Child,
    _watchdog: Option<Watchdog>,
    port: u16,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Scraping zkalert's `/metrics` on `scraped_port` every second.
    pub fn start(scraped_port: u16) -> Prometheus {
        // honor_labels: the re-exported series carry the ZooKeeper node's
        // `instance`, which must win over the scrape target's.
        let config = format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}
scrape_configs:
  - job_name: zkalert
    honor_labels: true
    static_configs: [{{targets: ['127.0.0.1:{scraped_port}']}}]
"
        );
        Self::start_with(&config, &[])
    }

    /// With `config` as `prometheus.yml` and `files` beside it.
    pub fn start_with(config: &str, files: &[(&str, &str)]) -> Prometheus {
        let dir = tempfile::Builder::new().prefix("zkalert-prometheus-").tempdir().expect("temp dir");
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).expect("write a file beside prometheus.yml");
        }
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write prometheus.yml");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("prometheus.log");
        let child = Command::new(prometheus_binary())
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        let watchdog = Watchdog::spawn(child.id(), &config_path.to_string_lossy());
        Prometheus { child, _watchdog: watchdog, port, dir }
    }

    /// The values of an instant query's vector result, by the series'
    /// labels (`None` until Prometheus answers it).
    pub fn query(&self, promql: &str) -> Option<Vec<(serde_json::Value, String)>> {
        let path = format!("/api/v1/query?query={}", percent_encode(promql));
        let (status, body) = get(self.port, &path, Duration::from_secs(5))?;
        let json: serde_json::Value = serde_json::from_str(&body).ok()?;
        if status != 200 || json["status"] != "success" {
            return None;
        }
        let result = json["data"]["result"].as_array()?;
        Some(
            result
                .iter()
                .map(|r| (r["metric"].clone(), r["value"][1].as_str().unwrap_or_default().to_string()))
                .collect(),
        )
    }

    pub fn log(&self) -> String {
        tail(&self.dir.path().join("prometheus.log"), 20)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("prometheus log:\n{}", self.log());
        }
        kill_and_reap(&mut self.child);
    }
}

fn prometheus_binary() -> &'static str {
    let path = "/usr/bin/prometheus";
    assert!(Path::new(path).exists(), "this test needs Debian's prometheus: apt-get install prometheus");
    path
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
