//! A real ZooKeeper ensemble on loopback for integration tests: Debian's
//! `zookeeper` package (3.8, jars in /usr/share/java), one JVM per node,
//! started directly (no zkServer.sh), in a temporary directory.
//!
//! ```ignore
//! let mut zk = Ensemble::start(3, Options::default());
//! let leader = zk.leader().unwrap();
//! zk.kill(leader);                                 // SIGKILL
//! zk.wait_ready(Duration::from_secs(30)).unwrap(); // a new leader
//! zk.restart(leader);
//! ```
//!
//! Ports: each node needs four (client, peer, election, AdminServer). An
//! ensemble takes a block of 40 consecutive ports in 12000..32000 (below
//! Linux's ephemeral range 32768-60999, so outgoing connections never take
//! them). The block is chosen from the pid plus a process-wide counter, so
//! tests running in parallel in one process get distinct blocks, and every
//! port of the block is bind-checked before use.
//!
//! Every JVM started is killed when the `Ensemble` is dropped (also when a
//! test panics): SIGCONT, then SIGKILL. A watchdog per JVM kills it should
//! the test process die without unwinding.
//!
//! Environment: `JAVA` (the java binary, default `java` on PATH);
//! `ZKALERT_KEEP_ENSEMBLE=1` keeps the directory (configs, data, server
//! logs) of an ensemble whose test failed.
//!
//! The JVM command line and zoo.cfg follow what is known to work with the
//! Debian package (the AdminServer needs servlet-api.jar on the classpath,
//! server logs need the SLF4J log4j binding; myid must exist in dataDir).

use super::process::{Watchdog, is_running, kill_and_reap, signal, tail, wait_exit};
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The classpath: zookeeper.jar's manifest pulls in jetty, jackson, netty and
/// slf4j-api, but neither the servlet API (without it the AdminServer
/// silently does not start) nor an SLF4J binding (without it there is no
/// server log at all).
pub const CLASSPATH: [&str; 4] = [
    "/usr/share/java/zookeeper.jar",
    "/usr/share/java/servlet-api.jar",
    "/usr/share/java/slf4j-log4j12.jar",
    "/usr/share/java/log4j-1.2.jar",
];
pub const MAIN_CLASS: &str = "org.apache.zookeeper.server.quorum.QuorumPeerMain";
const LOOPBACK: &str = "127.0.0.1";

/// Ports 12000..32000 in blocks of 40 (ten nodes of four ports each).
const PORT_LOW: u32 = 12000;
const PORT_HIGH: u32 = 32000;
const PORT_BLOCK: u32 = 40;
pub const MAX_NODES: usize = (PORT_BLOCK / 4) as usize;
static NEXT_BLOCK: AtomicU32 = AtomicU32::new(0);

/// How to build the ensemble.
#[derive(Debug, Clone)]
pub struct Options {
    /// `4lw.commands.whitelist` of every node (`*`: all).
    pub whitelist: String,
    /// Per-node overrides of the whitelist: (node id, list). Must keep
    /// `srvr`: readiness is judged by it.
    pub node_whitelists: Vec<(usize, String)>,
    pub tick_time_ms: u32,
    pub init_limit: u32,
    pub sync_limit: u32,
    /// `-Xmx`.
    pub heap: String,
    /// Run the AdminServer (Jetty) on its own port.
    pub admin_server: bool,
    /// Extra JVM options, before `-cp`.
    pub jvm_opts: Vec<String>,
    /// Extra zoo.cfg lines for every node.
    pub extra_cfg: Vec<String>,
    /// How long `start` and `restart` wait for the nodes to serve.
    pub start_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            whitelist: "*".into(),
            node_whitelists: Vec::new(),
            tick_time_ms: 2000,
            init_limit: 10,
            sync_limit: 5,
            heap: "256m".into(),
            admin_server: true,
            // Faster start-up on small machines; no /tmp/hsperfdata files.
            jvm_opts: vec!["-XX:TieredStopAtLevel=1".into(), "-XX:+UseSerialGC".into(), "-XX:-UsePerfData".into()],
            extra_cfg: Vec::new(),
            start_timeout: Duration::from_secs(90),
        }
    }
}

impl Options {
    /// Node `id` gets its own 4lw whitelist (e.g. one without `mntr`).
    pub fn node_whitelist(mut self, id: usize, list: &str) -> Self {
        self.node_whitelists.push((id, list.to_string()));
        self
    }

    fn whitelist_of(&self, id: usize) -> &str {
        self.node_whitelists.iter().rev().find(|(n, _)| *n == id).map_or(self.whitelist.as_str(), |(_, l)| l.as_str())
    }
}

/// The ports of one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    pub client: u16,
    /// Quorum port: only the leader listens on it.
    pub peer: u16,
    pub election: u16,
    pub admin: u16,
}

/// What the harness did to a node last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    Running,
    /// SIGSTOPped: the JVM exists, the kernel still accepts connections on
    /// its ports, nothing answers.
    Stopped,
    /// Not running (killed, or never restarted).
    Dead,
}

/// A node's answer to `srvr`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Leader,
    Follower,
    Observer,
    Standalone,
    ReadOnly,
    /// "This ZooKeeper instance is not currently serving requests".
    NotServing,
    /// Connected (or not) but no complete reply within the timeout.
    NoReply,
    /// Connection refused: nothing listens.
    Down,
    /// Anything else (another error, an unexpected reply).
    Other(String),
}

impl Mode {
    /// Serving as a voter (leader or follower).
    pub fn is_voter(&self) -> bool {
        matches!(self, Mode::Leader | Mode::Follower)
    }

    pub fn is_serving(&self) -> bool {
        matches!(self, Mode::Leader | Mode::Follower | Mode::Observer | Mode::Standalone | Mode::ReadOnly)
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mode::Leader => f.write_str("leader"),
            Mode::Follower => f.write_str("follower"),
            Mode::Observer => f.write_str("observer"),
            Mode::Standalone => f.write_str("standalone"),
            Mode::ReadOnly => f.write_str("read-only"),
            Mode::NotServing => f.write_str("not-serving"),
            Mode::NoReply => f.write_str("no-reply"),
            Mode::Down => f.write_str("down"),
            Mode::Other(s) => write!(f, "other({s})"),
        }
    }
}

struct Node {
    id: usize,
    dir: PathBuf,
    ports: Ports,
    child: Option<Child>,
    watchdog: Option<Watchdog>,
    state: NodeState,
}

impl Node {
    fn cfg(&self) -> PathBuf {
        self.dir.join("zoo.cfg")
    }
    fn log(&self) -> PathBuf {
        self.dir.join("logs/zookeeper.log")
    }
    fn stdout_log(&self) -> PathBuf {
        self.dir.join("logs/stdout.log")
    }
    fn client_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.ports.client))
    }
}

/// A running ensemble. Node ids are 1..=n (as in `server.N` and `myid`).
pub struct Ensemble {
    nodes: Vec<Node>,
    options: Options,
    dir: tempfile::TempDir,
}

impl Ensemble {
    /// Starts `n` voters and waits until exactly one leads, every node serves
    /// and a majority of voters serves. Panics (with the tail of every
    /// node's logs) if that does not happen within `options.start_timeout`.
    pub fn start(n: usize, options: Options) -> Ensemble {
        assert!((1..=MAX_NODES).contains(&n), "an ensemble has 1..={MAX_NODES} nodes, not {n}");
        preflight();
        for id in 1..=n {
            let list = options.whitelist_of(id);
            assert!(
                list.trim() == "*" || list.split(',').any(|c| c.trim() == "srvr"),
                "node {id}: the 4lw whitelist {list:?} must contain srvr (readiness is judged by it)"
            );
        }
        // Ports are bind-checked, but another process may take one between
        // the check and the JVM's bind: then start over on other ports.
        const ATTEMPTS: usize = 3;
        for attempt in 1..=ATTEMPTS {
            let t0 = Instant::now();
            let mut ens = Ensemble::launch(n, options.clone());
            match ens.wait_ready(ens.options.start_timeout) {
                Ok(_) => {
                    eprintln!(
                        "ensemble: {n} node(s) ready in {} ms (client ports {}): {}",
                        t0.elapsed().as_millis(),
                        ens.client_addrs().join(","),
                        ens.describe()
                    );
                    return ens;
                }
                Err(e) if attempt < ATTEMPTS && ens.port_clash() => {
                    eprintln!("ensemble: a port was taken after all ({e}); retrying on other ports");
                }
                Err(e) => panic!("ensemble did not start: {e}\n{}", ens.log_tails(20)),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// Allocates ports, writes every node's config and launches the JVMs.
    fn launch(n: usize, options: Options) -> Ensemble {
        let dir = tempfile::Builder::new().prefix("zkalert-ensemble-").tempdir().expect("create temp dir");
        let base = allocate_ports(n);
        let nodes = (1..=n)
            .map(|id| {
                let i = (id - 1) as u16;
                let n16 = n as u16;
                Node {
                    id,
                    dir: dir.path().join(format!("node{id}")),
                    ports: Ports {
                        client: base + i,
                        peer: base + n16 + i,
                        election: base + 2 * n16 + i,
                        admin: base + 3 * n16 + i,
                    },
                    child: None,
                    watchdog: None,
                    state: NodeState::Dead,
                }
            })
            .collect();
        let mut ens = Ensemble { nodes, options, dir };
        for id in 1..=n {
            ens.write_config(id);
            ens.spawn(id);
        }
        ens
    }

    /// Whether a node's log says it could not bind a port.
    fn port_clash(&self) -> bool {
        self.nodes.iter().any(|n| {
            [n.log(), n.stdout_log()]
                .iter()
                .any(|p| std::fs::read(p).is_ok_and(|b| String::from_utf8_lossy(&b).contains("Address already in use")))
        })
    }

    /// Number of configured nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn ids(&self) -> std::ops::RangeInclusive<usize> {
        1..=self.nodes.len()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn ports(&self, id: usize) -> Ports {
        self.node(id).ports
    }

    /// `127.0.0.1:PORT` of node `id`'s client port.
    /// Node `id`'s own log (log4j's file, as ZooKeeper writes it).
    pub fn log_file(&self, id: usize) -> PathBuf {
        self.node(id).log()
    }

    pub fn client_addr(&self, id: usize) -> String {
        format!("{LOOPBACK}:{}", self.node(id).ports.client)
    }

    /// Every node's client address, in id order.
    pub fn client_addrs(&self) -> Vec<String> {
        self.ids().map(|id| self.client_addr(id)).collect()
    }

    pub fn state(&self, id: usize) -> NodeState {
        self.node(id).state
    }

    /// The JVM's pid, while it exists.
    pub fn pid(&self, id: usize) -> Option<u32> {
        let n = self.node(id);
        n.child.as_ref().filter(|_| n.state != NodeState::Dead).map(Child::id)
    }

    /// SIGKILL (a crash: no shutdown hooks) and reap. Returns once the
    /// process is gone, so its ports refuse connections.
    pub fn kill(&mut self, id: usize) {
        let node = self.node_mut(id);
        let mut child = node.child.take().unwrap_or_else(|| panic!("node {id} is not running"));
        signal(child.id(), "KILL");
        assert!(wait_exit(&mut child, Duration::from_secs(10)), "node {id} (pid {}) survived SIGKILL", child.id());
        node.watchdog = None;
        node.state = NodeState::Dead;
    }

    /// SIGSTOP: the node hangs (accepts TCP connections, never answers).
    pub fn stop_signal(&mut self, id: usize) {
        let pid = self.live_pid(id);
        assert!(signal(pid, "STOP"), "kill -STOP {pid} failed");
        self.node_mut(id).state = NodeState::Stopped;
    }

    /// SIGCONT after `stop_signal`.
    pub fn cont(&mut self, id: usize) {
        let pid = self.live_pid(id);
        assert!(signal(pid, "CONT"), "kill -CONT {pid} failed");
        self.node_mut(id).state = NodeState::Running;
    }

    /// Stops node `id` if it runs (SIGCONT + SIGTERM, SIGKILL after 10 s),
    /// starts it again on its data and waits until it serves. Returns how
    /// long it took from launching the JVM.
    pub fn restart(&mut self, id: usize) -> Duration {
        let node = self.node_mut(id);
        if let Some(mut child) = node.child.take() {
            if is_running(&mut child) {
                signal(child.id(), "CONT");
                signal(child.id(), "TERM");
                if !wait_exit(&mut child, Duration::from_secs(10)) {
                    kill_and_reap(&mut child);
                }
            }
            node.watchdog = None;
            node.state = NodeState::Dead;
        }
        let t0 = Instant::now();
        self.spawn(id);
        match self.wait_serving(id, self.options.start_timeout) {
            Ok(mode) => {
                eprintln!("ensemble: node {id} restarted, serving as {mode} after {} ms", t0.elapsed().as_millis());
                t0.elapsed()
            }
            Err(e) => panic!("node {id} did not come back: {e}\n{}", self.log_tails(20)),
        }
    }

    /// Starts every killed node again on its data, all at once (a whole
    /// ensemble that was down needs a quorum back before any serves), and
    /// waits until the ensemble serves. Returns how long that took.
    pub fn revive_all(&mut self) -> Duration {
        let dead: Vec<usize> = self.nodes.iter().filter(|n| n.child.is_none()).map(|n| n.id).collect();
        let t0 = Instant::now();
        for id in dead {
            self.spawn(id);
        }
        match self.wait_ready(self.options.start_timeout) {
            Ok(_) => t0.elapsed(),
            Err(e) => panic!("the ensemble did not come back: {e}\n{}", self.log_tails(20)),
        }
    }

    /// Node `id`'s answer to `srvr` (within `timeout`).
    pub fn mode_within(&self, id: usize, timeout: Duration) -> Mode {
        match four_letter(self.node(id).client_addr(), "srvr", timeout) {
            Ok(reply) => parse_mode(&reply),
            Err(e) => match e.kind() {
                io::ErrorKind::ConnectionRefused => Mode::Down,
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => Mode::NoReply,
                _ => Mode::Other(e.to_string()),
            },
        }
    }

    /// Node `id`'s answer to `srvr`, waiting at most 2 s.
    pub fn mode(&self, id: usize) -> Mode {
        self.mode_within(id, Duration::from_secs(2))
    }

    /// A raw 4lw reply from node `id`.
    pub fn four_letter(&self, id: usize, cmd: &str, timeout: Duration) -> io::Result<String> {
        four_letter(self.node(id).client_addr(), cmd, timeout)
    }

    /// The one running node that says `Mode: leader`; `None` if none or
    /// several do.
    pub fn leader(&self) -> Option<usize> {
        let leaders: Vec<usize> = self.running().filter(|id| self.mode(*id) == Mode::Leader).collect();
        (leaders.len() == 1).then(|| leaders[0])
    }

    /// The running nodes that say `Mode: follower`.
    pub fn followers(&self) -> Vec<usize> {
        self.running().filter(|id| self.mode(*id) == Mode::Follower).collect()
    }

    /// Waits until exactly one running node says `Mode: leader`, every
    /// running node serves, and a majority of all voters serves (right after
    /// both followers die the old leader still says `leader` for up to 2 s).
    /// SIGSTOPped and dead nodes are not waited for. Fails at once if a node
    /// that should run has exited. Returns the time waited.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<Duration, String> {
        let t0 = Instant::now();
        let majority = self.nodes.len() / 2 + 1;
        let mut last = String::new();
        loop {
            self.check_alive()?;
            let (mut leaders, mut voters, mut all_serving) = (0, 0, true);
            last.clear();
            for id in self.running().collect::<Vec<_>>() {
                let mode = self.mode_within(id, Duration::from_secs(1));
                last.push_str(&format!(" {id}={mode}"));
                match mode {
                    Mode::Leader => {
                        leaders += 1;
                        voters += 1;
                    }
                    Mode::Follower => voters += 1,
                    Mode::Observer => {}
                    Mode::Standalone if self.nodes.len() == 1 => {
                        leaders += 1;
                        voters += 1;
                    }
                    _ => all_serving = false,
                }
            }
            if all_serving && leaders == 1 && voters >= majority {
                return Ok(t0.elapsed());
            }
            if t0.elapsed() >= timeout {
                return Err(format!("no ready quorum within {timeout:?}; last modes:{last}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until node `id` serves (any serving mode). Returns its mode.
    pub fn wait_serving(&mut self, id: usize, timeout: Duration) -> Result<Mode, String> {
        let t0 = Instant::now();
        loop {
            self.check_alive()?;
            let mode = self.mode_within(id, Duration::from_secs(1));
            if mode.is_serving() {
                return Ok(mode);
            }
            if t0.elapsed() >= timeout {
                return Err(format!("node {id} not serving within {timeout:?} (last: {mode})"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// One line: every node's state and mode.
    pub fn describe(&self) -> String {
        self.ids()
            .map(|id| match self.state(id) {
                NodeState::Running => format!("{id}={}", self.mode_within(id, Duration::from_secs(1))),
                NodeState::Stopped => format!("{id}=SIGSTOPPED"),
                NodeState::Dead => format!("{id}=dead"),
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The last `lines` lines of every node's server log and JVM output.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            for path in [n.log(), n.stdout_log()] {
                let t = tail(&path, lines);
                if !t.is_empty() {
                    out.push_str(&format!("---- node {} {} (last {lines} lines)\n{t}\n", n.id, path.display()));
                }
            }
        }
        out
    }

    fn node(&self, id: usize) -> &Node {
        assert!((1..=self.nodes.len()).contains(&id), "no node {id} (nodes 1..={})", self.nodes.len());
        &self.nodes[id - 1]
    }

    fn node_mut(&mut self, id: usize) -> &mut Node {
        assert!((1..=self.nodes.len()).contains(&id), "no node {id} (nodes 1..={})", self.nodes.len());
        &mut self.nodes[id - 1]
    }

    fn running(&self) -> impl Iterator<Item = usize> + '_ {
        self.nodes.iter().filter(|n| n.state == NodeState::Running).map(|n| n.id)
    }

    /// The pid of a node whose JVM exists (running or stopped).
    fn live_pid(&mut self, id: usize) -> u32 {
        let child = self.node_mut(id).child.as_mut().unwrap_or_else(|| panic!("node {id} is not running"));
        assert!(is_running(child), "node {id} (pid {}) has exited", child.id());
        child.id()
    }

    /// Fails if a node that should be running has exited by itself.
    fn check_alive(&mut self) -> Result<(), String> {
        let mut dead = Vec::new();
        for n in &mut self.nodes {
            if n.state == NodeState::Dead {
                continue;
            }
            if let Some(c) = n.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                dead.push(format!("node {} (pid {}) exited on its own: {status}", n.id, c.id()));
                n.child = None;
                n.watchdog = None;
                n.state = NodeState::Dead;
            }
        }
        if dead.is_empty() { Ok(()) } else { Err(format!("{}\n{}", dead.join("\n"), self.log_tails(20))) }
    }

    fn write_config(&self, id: usize) {
        let n = self.node(id);
        let o = &self.options;
        std::fs::create_dir_all(n.dir.join("data")).expect("create dataDir");
        std::fs::create_dir_all(n.dir.join("logs")).expect("create log dir");
        let mut cfg = format!(
            "# generated by tests/it/support/ensemble.rs -- node {id}\n\
             tickTime={}\ninitLimit={}\nsyncLimit={}\ndataDir={}\n\
             clientPort={}\nclientPortAddress={LOOPBACK}\nmaxClientCnxns=200\n\
             admin.enableServer={}\nadmin.serverAddress={LOOPBACK}\nadmin.serverPort={}\n\
             4lw.commands.whitelist={}\n",
            o.tick_time_ms,
            o.init_limit,
            o.sync_limit,
            n.dir.join("data").display(),
            n.ports.client,
            o.admin_server,
            n.ports.admin,
            o.whitelist_of(id),
        );
        // One node: no server.N lines, so ZooKeeper runs standalone.
        if self.nodes.len() > 1 {
            for m in &self.nodes {
                cfg.push_str(&format!("server.{}={LOOPBACK}:{}:{}\n", m.id, m.ports.peer, m.ports.election));
            }
        }
        for line in &o.extra_cfg {
            cfg.push_str(line);
            cfg.push('\n');
        }
        std::fs::write(n.cfg(), cfg).expect("write zoo.cfg");
        // Quorum mode reads dataDir/myid; it must match the server.N line.
        std::fs::write(n.dir.join("data/myid"), format!("{id}\n")).expect("write myid");
        let log4j = format!(
            "log4j.rootLogger=INFO, ROLLINGFILE\n\
             log4j.appender.ROLLINGFILE=org.apache.log4j.RollingFileAppender\n\
             log4j.appender.ROLLINGFILE.File={}\n\
             log4j.appender.ROLLINGFILE.MaxFileSize=10MB\n\
             log4j.appender.ROLLINGFILE.MaxBackupIndex=1\n\
             log4j.appender.ROLLINGFILE.layout=org.apache.log4j.PatternLayout\n\
             log4j.appender.ROLLINGFILE.layout.ConversionPattern=%d{{ISO8601}} [myid:%X{{myid}}] - %-5p [%t:%C{{1}}@%L] - %m%n\n",
            n.log().display()
        );
        std::fs::write(n.dir.join("log4j.properties"), log4j).expect("write log4j.properties");
    }

    /// Launches node `id`'s JVM (its config must exist).
    fn spawn(&mut self, id: usize) {
        let java = std::env::var("JAVA").unwrap_or_else(|_| "java".into());
        let heap = self.options.heap.clone();
        let jvm_opts = self.options.jvm_opts.clone();
        let node = self.node_mut(id);
        assert!(node.child.is_none(), "node {id} already has a process");
        let stdout = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(node.stdout_log())
            .expect("open the node's stdout.log");
        let stderr = stdout.try_clone().expect("clone stdout.log handle");
        let child = Command::new(&java)
            .current_dir(&node.dir)
            .arg("-Xms32m")
            .arg(format!("-Xmx{heap}"))
            .arg("-XX:+ExitOnOutOfMemoryError")
            .arg(format!("-Dlog4j.configuration=file:{}", node.dir.join("log4j.properties").display()))
            .arg(format!("-Dzookeeper.log.dir={}", node.dir.join("logs").display()))
            .args(&jvm_opts)
            .arg("-cp")
            .arg(CLASSPATH.join(":"))
            .arg(MAIN_CLASS)
            .arg(node.cfg())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {java} for node {id}: {e}"));
        node.watchdog = Watchdog::spawn(child.id(), &node.cfg().to_string_lossy());
        node.child = Some(child);
        node.state = NodeState::Running;
    }
}

impl Drop for Ensemble {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("ensemble at failure: {}\n{}", self.describe(), self.log_tails(15));
            if std::env::var_os("ZKALERT_KEEP_ENSEMBLE").is_some() {
                self.dir.disable_cleanup(true);
                eprintln!("ensemble: keeping {}", self.dir.path().display());
            }
        }
        for n in &mut self.nodes {
            if let Some(mut child) = n.child.take() {
                kill_and_reap(&mut child);
            }
            n.watchdog = None;
            n.state = NodeState::Dead;
        }
    }
}

/// Fails early, with what to do, when java or the jars are missing.
fn preflight() {
    let missing: Vec<&str> = CLASSPATH.iter().copied().filter(|j| !Path::new(j).is_file()).collect();
    assert!(
        missing.is_empty(),
        "ZooKeeper is not installed (missing {}): install the Debian package `zookeeper` \
         (scripts/test.sh does)",
        missing.join(", ")
    );
}

/// The first port of a free block of `PORT_BLOCK` ports.
fn allocate_ports(n: usize) -> u16 {
    let blocks = (PORT_HIGH - PORT_LOW) / PORT_BLOCK;
    let first = std::process::id().wrapping_mul(7919) % blocks;
    let needed = 4 * n as u32;
    for _ in 0..blocks {
        let k = NEXT_BLOCK.fetch_add(1, Ordering::Relaxed);
        let base = PORT_LOW + (first + k) % blocks * PORT_BLOCK;
        if (base..base + needed).all(|p| port_free(p as u16)) {
            return base as u16;
        }
    }
    panic!("no free block of {needed} ports in {PORT_LOW}..{PORT_HIGH}");
}

fn port_free(port: u16) -> bool {
    TcpListener::bind((LOOPBACK, port)).is_ok()
}

/// Sends a four-letter word and reads until the server closes; `timeout`
/// bounds connect, write and read together.
pub fn four_letter(addr: SocketAddr, cmd: &str, timeout: Duration) -> io::Result<String> {
    let deadline = Instant::now() + timeout;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(cmd.as_bytes())?;
    let mut reply = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, format!("{cmd}: no complete reply in {timeout:?}")));
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut buf) {
            Ok(0) => return Ok(String::from_utf8_lossy(&reply).into_owned()),
            Ok(n) => reply.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Err(io::Error::new(io::ErrorKind::TimedOut, format!("{cmd}: no reply in {timeout:?}")));
            }
            Err(e) => return Err(e),
        }
    }
}

fn parse_mode(reply: &str) -> Mode {
    if reply.contains("not currently serving requests") {
        return Mode::NotServing;
    }
    match reply.lines().find_map(|l| l.strip_prefix("Mode: ")).map(str::trim) {
        Some("leader") => Mode::Leader,
        Some("follower") => Mode::Follower,
        Some("observer") => Mode::Observer,
        Some("standalone") => Mode::Standalone,
        Some("read-only") => Mode::ReadOnly,
        _ => Mode::Other(reply.chars().take(200).collect()),
    }
}
