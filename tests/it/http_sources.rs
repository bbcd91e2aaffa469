//! The HTTP sources against real servers, through the library API: the
//! AdminServer source (`zkalert::source::adminserver`) against the AdminServers of
//! a real three-node ZooKeeper ensemble (`support::ensemble`), and the
//! Prometheus source (`zkalert::source::prom`) scraping a real
//! `prometheus-node-exporter` (Debian package). No mocks.

use crate::support;

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::ensemble::{Ensemble, Options};
use support::process::{Watchdog, kill_and_reap};
use zkalert::config::{PromSourceConfig, ZkSourceConfig};
use zkalert::model::{Labels, Sample, Timestamp};
use zkalert::source::adminserver::AdminSource;
use zkalert::source::prom::PromSource;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap()
}

fn now() -> Timestamp {
    Timestamp::from_millis(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis() as i64,
    )
}

/// `metric` per instance (series with an `instance` label and no `client_ip`).
fn per_instance(samples: &[Sample], metric: &str) -> HashMap<String, f64> {
    samples
        .iter()
        .filter(|s| s.name == metric && s.labels.get("client_ip").is_none())
        .filter_map(|s| s.labels.get("instance").map(|i| (i.to_string(), s.value)))
        .collect()
}

#[test]
fn admin_source_polls_a_real_ensemble() {
    let t0 = Instant::now();
    let mut ens = Ensemble::start(3, Options::default());
    eprintln!("ensemble ready after {:?}", t0.elapsed());
    let nodes: Vec<String> = ens.ids().map(|id| format!("127.0.0.1:{}", ens.ports(id).admin)).collect();
    let admin = |id: usize| nodes[id - 1].clone();
    let source = AdminSource::new(
        ZkSourceConfig {
            cluster: "http-test".into(),
            nodes: nodes.clone(),
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(2),
            labels: Labels::from_pairs([("env", "test")]),
            sessions: None,
        },
        None,
    )
    .unwrap();
    let rt = runtime();

    // All up, exactly one leader, latency from `monitor`.
    let deadline = Instant::now() + Duration::from_secs(30);
    let samples = loop {
        let samples = rt.block_on(source.collect(now())).samples();
        let up = per_instance(&samples, "up");
        let leaders = per_instance(&samples, "zk_is_leader");
        let ready = nodes.iter().all(|n| up.get(n) == Some(&1.0))
            && leaders.len() == nodes.len()
            && leaders.values().filter(|v| **v == 1.0).count() == 1;
        if ready || Instant::now() >= deadline {
            break samples;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let up = per_instance(&samples, "up");
    for n in &nodes {
        assert_eq!(up.get(n), Some(&1.0), "up of {n}: {up:?}");
    }
    let leaders = per_instance(&samples, "zk_is_leader");
    assert_eq!(leaders.len(), 3, "{leaders:?}");
    assert_eq!(leaders.values().filter(|v| **v == 1.0).count(), 1, "{leaders:?}");
    let latency = per_instance(&samples, "zk_avg_latency");
    assert_eq!(latency.len(), 3, "zk_avg_latency on every node: {latency:?}");
    let serving = per_instance(&samples, "zk_serving");
    assert!(nodes.iter().all(|n| serving.get(n) == Some(&1.0)), "{serving:?}");
    assert!(
        samples.iter().all(|s| s.labels.get("cluster") == Some("http-test") && s.labels.get("env") == Some("test"))
    );
    let cluster = |metric: &str, samples: &[Sample]| {
        samples.iter().find(|s| s.name == metric && s.labels.get("instance").is_none()).map(|s| s.value)
    };
    assert_eq!(cluster("zk_cluster_leaders", &samples), Some(1.0));
    assert_eq!(cluster("zk_cluster_serving_voters", &samples), Some(3.0));
    assert!(per_instance(&samples, "zk_zxid_epoch").len() == 3);
    eprintln!("healthy ensemble checked after {:?}", t0.elapsed());

    // Kill two nodes: the survivor loses quorum, its `monitor` is HTTP 500.
    let leader = ens.leader().expect("a leader");
    let survivor = ens.followers().into_iter().next().expect("a follower");
    let killed: Vec<usize> = ens.ids().filter(|id| *id != survivor).collect();
    assert!(killed.contains(&leader));
    for id in &killed {
        ens.kill(*id);
    }
    let t_kill = Instant::now();
    let survivor_addr = admin(survivor);
    let deadline = Instant::now() + Duration::from_secs(30);
    let samples = loop {
        let samples = rt.block_on(source.collect(now())).samples();
        if per_instance(&samples, "zk_serving").get(&survivor_addr) == Some(&0.0) || Instant::now() >= deadline {
            break samples;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    eprintln!("survivor not serving {:?} after the kills", t_kill.elapsed());
    let up = per_instance(&samples, "up");
    assert_eq!(up.get(&survivor_addr), Some(&1.0), "{up:?}");
    for id in &killed {
        assert_eq!(up.get(&admin(*id)), Some(&0.0), "node {id} is dead: {up:?}");
    }
    assert_eq!(per_instance(&samples, "zk_serving").get(&survivor_addr), Some(&0.0));
    assert_eq!(cluster("zk_cluster_nodes_up", &samples), Some(1.0));
    // It is the AdminServer's "not serving" answer, not an unreadable reply.
    let obs = rt.block_on(source.observe());
    let lone = obs.iter().find(|o| o.instance == survivor_addr).unwrap();
    assert!(lone.not_serving(), "{lone:?}");
    assert!(matches!(lone.mntr, Some(zkalert::source::zk::parse::Reply::NotServing)), "{:?}", lone.mntr);
    assert!(lone.errors.is_empty(), "{:?}", lone.errors);
    assert_eq!(cluster("zk_cluster_serving_voters", &samples), Some(0.0));
    eprintln!("total {:?}", t0.elapsed());
}

/// A real node exporter on a free loopback port; killed on drop.
struct NodeExporter {
    child: Child,
    port: u16,
    _watchdog: Option<Watchdog>,
}

const NODE_EXPORTER: &str = "/usr/bin/prometheus-node-exporter";

impl NodeExporter {
    fn start() -> NodeExporter {
        assert!(
            std::path::Path::new(NODE_EXPORTER).exists(),
            "{NODE_EXPORTER} is missing: apt-get install prometheus-node-exporter (scripts/test.sh does)"
        );
        for _ in 0..3 {
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let mut child = Command::new(NODE_EXPORTER)
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .args(["--collector.disable-defaults", "--collector.filesystem", "--collector.loadavg"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let watchdog = Watchdog::spawn(child.id(), "prometheus-node-exporter");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && support::process::is_running(&mut child) {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return NodeExporter { child, port, _watchdog: watchdog };
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            kill_and_reap(&mut child);
        }
        panic!("prometheus-node-exporter did not listen");
    }

    fn kill(&mut self) {
        kill_and_reap(&mut self.child);
    }
}

impl Drop for NodeExporter {
    fn drop(&mut self) {
        kill_and_reap(&mut self.child);
    }
}

#[test]
fn prom_source_scrapes_a_real_node_exporter() {
    let t0 = Instant::now();
    let mut exporter = NodeExporter::start();
    let instance = format!("127.0.0.1:{}", exporter.port);
    let source = PromSource::new(
        PromSourceConfig {
            url: format!("http://{instance}/metrics"),
            cluster: Some("prom-test".into()),
            instance: None,
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(3),
            labels: Labels::from_pairs([("env", "test")]),
            limits: Default::default(),
        },
        None,
    )
    .unwrap();
    let mut target = Labels::from_pairs([("cluster", "prom-test"), ("env", "test")]);
    target.insert("instance", instance.clone());
    assert_eq!(source.target(), &target);
    let rt = runtime();
    let samples = rt.block_on(source.collect(now())).samples();
    eprintln!("scraped {} samples in {:?}", samples.len(), t0.elapsed());
    let at_target =
        |name: &str, samples: &[Sample]| samples.iter().find(|s| s.name == name && s.labels == target).map(|s| s.value);
    assert_eq!(at_target("up", &samples), Some(1.0));
    assert!(at_target("scrape_duration_seconds", &samples).is_some_and(|d| d > 0.0 && d < 3.0));
    let fs: Vec<&Sample> = samples.iter().filter(|s| s.name == "node_filesystem_avail_bytes").collect();
    assert!(!fs.is_empty(), "no node_filesystem_avail_bytes");
    for s in &fs {
        assert!(s.labels.get("mountpoint").is_some_and(|m| m.starts_with('/')), "{:?}", s.labels);
        assert_eq!(s.labels.get("instance"), Some(instance.as_str()));
        assert_eq!(s.labels.get("cluster"), Some("prom-test"));
        assert!(s.value >= 0.0);
    }
    assert!(samples.iter().any(|s| s.name == "node_load1"));
    // The exporter's own metrics come along (histogram/summary sample names too).
    assert!(samples.iter().any(|s| s.name.ends_with("_count")));

    // A keep filter drops what the rules don't read, but never `up` nor
    // `scrape_duration_seconds` (the poll durations /metrics reports).
    let mut retention = zkalert::store::Retention::default();
    retention.read.insert("node_load1".into());
    let filtered = PromSource::new(source.config.clone(), Some(std::sync::Arc::new(retention))).unwrap();
    let samples = rt.block_on(filtered.collect(now())).samples();
    let names: std::collections::BTreeSet<&str> = samples.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["node_load1", "scrape_duration_seconds", "up"].into_iter().collect(), "{names:?}");

    exporter.kill();
    let samples = rt.block_on(source.collect(now())).samples();
    assert_eq!(at_target("up", &samples), Some(0.0));
    assert!(!samples.iter().any(|s| s.name.starts_with("node_")));
    eprintln!("total {:?}", t0.elapsed());
}

/// A Prometheus source read from a config, as `run` builds it.
fn prom_source(url: &str, extra: &str) -> PromSource {
    let text = format!("sources:\n  - {{type: prometheus, url: '{url}', cluster: c{extra}}}\n");
    let cfg = zkalert::config::Config::parse(&text, std::path::Path::new("z.yaml")).unwrap();
    let zkalert::config::SourceConfig::Prometheus(p) = cfg.sources[0].clone() else { panic!("a prometheus source") };
    PromSource::new(p, None).unwrap()
}

/// The target's `up` and its `poll_error` info label after one scrape, and
/// how many other series came along.
fn scrape_outcome(rt: &tokio::runtime::Runtime, source: &PromSource) -> (f64, Option<String>, usize) {
    let batch = rt.block_on(source.collect(now()));
    let target = batch.series.iter().find(|s| &s.labels == source.target()).expect("the target's series");
    let up = target.values.iter().find(|(n, _)| n == "up").map(|(_, v)| *v).expect("up");
    let reason = target.info.as_ref().and_then(|i| i.get("poll_error")).map(str::to_string);
    (up, reason, batch.series.len() - 1)
}

#[test]
fn prom_source_limits_what_a_target_may_send() {
    // A target that sends 60,000 series (a 29 MB body with a million took
    // 2.6 GB): over the default sample_limit of 50,000 the scrape fails as
    // a whole, like a Prometheus scrape, and says why.
    let server = support::http::MetricsServer::start();
    let url = format!("http://127.0.0.1:{}/metrics", server.port);
    let mut body = String::from("# TYPE big gauge\n");
    for i in 0..60_000 {
        body.push_str(&format!("big{{i=\"{i}\"}} 1\n"));
    }
    server.set_text(body.clone());
    let rt = runtime();
    assert_eq!(scrape_outcome(&rt, &prom_source(&url, "")), (0.0, Some("sample_limit".into()), 0));
    // Raised per source, the same body is scraped.
    assert_eq!(scrape_outcome(&rt, &prom_source(&url, ", sample_limit: 60000")), (1.0, None, 60_000));
    // The body's size is bounded too (before parsing).
    assert_eq!(
        scrape_outcome(&rt, &prom_source(&url, ", sample_limit: 60000, body_size_limit: 64KiB")),
        (0.0, Some("body_size_limit".into()), 0)
    );
    // Labels: how many, how long.
    server.set_text(format!("m{{long=\"{}\"}} 1\n", "v".repeat(5000)));
    assert_eq!(scrape_outcome(&rt, &prom_source(&url, "")), (0.0, Some("label_value_length_limit".into()), 0));
    server.set_text(format!("m{{{}=\"v\"}} 1\n", "n".repeat(300)));
    assert_eq!(scrape_outcome(&rt, &prom_source(&url, "")), (0.0, Some("label_name_length_limit".into()), 0));
    let many: Vec<String> = (0..70).map(|i| format!("l{i}=\"v\"")).collect();
    server.set_text(format!("m{{{}}} 1\n", many.join(",")));
    assert_eq!(scrape_outcome(&rt, &prom_source(&url, "")), (0.0, Some("label_limit".into()), 0));
    assert_eq!(scrape_outcome(&rt, &prom_source(&url, ", label_limit: 80")), (1.0, None, 1));
    // A well-behaved target again: up, no poll_error.
    server.set_text("m 1\n".into());
    assert_eq!(scrape_outcome(&rt, &prom_source(&url, "")), (1.0, None, 1));
    // Nothing listening: refused.
    drop(server);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(scrape_outcome(&rt, &prom_source(&url, "")).1.as_deref(), Some("refused"));
}
