//! The runbooks' commands (rules/runbooks/**/*.md) against a real ZooKeeper
//! 3.8 ensemble from Debian's `zookeeper` package, so they stay true:
//!
//! - Fenced blocks marked ```` ```sh zk ```` are read-only four-letter-word
//!   checks an on-call runs from their own machine. Each runs with `bash -e`
//!   against a three-node ensemble with one follower killed (so loops show
//!   a dead node), and must exit 0 and print what the runbook says: every
//!   `expect="REGEX"` of the info string must match its output (stdout and
//!   stderr, as on a terminal). Host names
//!   are mapped to the test ensemble: `nc NAME 2181` by an `nc` wrapper (the
//!   real nc still talks to the real servers), `NAME:2181` / `NAME:8080`
//!   (zkCli.sh, curl) by substitution. NAME is `HOST`, `FOLLOWER` (a live
//!   follower), `LEADER`, `LEADER_A`, `HEALTHY_NODE`, `zk1`..`zk3` (the
//!   nodes by id; one of them dead), `zk4`, `zk5` (not running).
//! - Every other ```` ```sh ```` block (commands on the ZooKeeper host, or
//!   ones that change something) must pass `bash -n`.
//! - Paths of Debian's package (`/usr/share/zookeeper/...`,
//!   `/etc/zookeeper/...`, `/usr/share/java/...`) named anywhere must exist, and ZooKeeper's
//!   scripts are named by their Debian path (they are not on PATH there).

use crate::support;

use regex::Regex;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::ensemble::{Ensemble, Options};

/// Debian's layout (`dpkg -L zookeeper`).
const DEBIAN_BIN: &str = "/usr/share/zookeeper/bin";
const BLOCK_TIMEOUT: Duration = Duration::from_secs(60);

/// One fenced code block of a markdown file.
#[derive(Debug)]
struct Block {
    file: PathBuf,
    /// Line of the opening fence (1-based).
    line: usize,
    info: String,
    code: String,
}

impl Block {
    fn at(&self) -> String {
        format!("{}:{}", self.file.display(), self.line)
    }

    fn is_zk(&self) -> bool {
        self.info.split_whitespace().nth(1) == Some("zk")
    }

    /// The `expect="REGEX"` attributes of the info string.
    fn expectations(&self) -> Vec<String> {
        let re = Regex::new(r#"expect="([^"]*)""#).expect("valid regex");
        re.captures_iter(&self.info).map(|c| c[1].to_string()).collect()
    }
}

fn runbooks() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/runbooks");
    let mut out = Vec::new();
    let mut dirs = vec![root];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let p = e.expect("dir entry").path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "md") {
                out.push(p);
            }
        }
    }
    out.sort();
    assert!(out.len() >= 20, "expected the shipped runbooks, found {}", out.len());
    out
}

fn blocks(file: &Path) -> Vec<Block> {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let mut out = Vec::new();
    let mut open: Option<Block> = None;
    for (i, line) in text.lines().enumerate() {
        match (open.take(), line.trim_start().strip_prefix("```")) {
            (None, Some(info)) => {
                open =
                    Some(Block { file: file.to_path_buf(), line: i + 1, info: info.trim().into(), code: String::new() })
            }
            (Some(b), Some(_)) => out.push(b),
            (Some(mut b), None) => {
                b.code.push_str(line);
                b.code.push('\n');
                open = Some(b);
            }
            (None, None) => {}
        }
    }
    assert!(open.is_none(), "{}: a code block is not closed", file.display());
    out
}

/// Runs `script` with bash (killed after [`BLOCK_TIMEOUT`]): (exit code,
/// stdout, stderr).
fn bash(args: &[&str], script: &str) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (out, err) = (dir.path().join("out"), dir.path().join("err"));
    let mut child = Command::new("bash")
        .args(args)
        .arg(script)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).expect("stdout file"))
        .stderr(std::fs::File::create(&err).expect("stderr file"))
        .spawn()
        .expect("run bash");
    let t0 = Instant::now();
    let status = loop {
        match child.try_wait().expect("wait for bash") {
            Some(s) => break s.code(),
            None if t0.elapsed() > BLOCK_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    (status, read(&out), read(&err))
}

/// Words a read-only block must not contain (a block that logs in
/// elsewhere, changes, stops or resets something is not run by tests).
const NOT_READ_ONLY: &str =
    r"\b(ssh|rm|mv|kill|pkill|systemctl|zkServer\.sh|zkCleanup\.sh|delete|deleteall|set|setquota|create|srst|crst)\b";

#[test]
fn runbook_commands_work_on_a_real_ensemble() {
    let files = runbooks();
    let all: Vec<Block> = files.iter().flat_map(|f| blocks(f)).collect();

    // Static checks first: they need no ensemble.
    let mut problems = Vec::new();
    let not_read_only = Regex::new(NOT_READ_ONLY).expect("valid regex");
    let redirect = Regex::new(r">>?\s*(/[^\s)]*)").expect("valid regex");
    for b in &all {
        if b.info.is_empty() {
            problems.push(format!("{}: say what the block is (```sh, ```sh zk, ```properties)", b.at()));
            continue;
        }
        if b.info.split_whitespace().next() != Some("sh") {
            continue;
        }
        if b.is_zk() {
            let code: String =
                b.code.lines().map(|l| l.split(" #").next().unwrap_or("")).collect::<Vec<_>>().join("\n");
            for m in not_read_only.find_iter(&code) {
                problems.push(format!("{}: a ```sh zk block is run by tests, it must not {:?}", b.at(), m.as_str()));
            }
            for c in redirect.captures_iter(&code).filter(|c| &c[1] != "/dev/null") {
                problems.push(format!("{}: a ```sh zk block must not write files ({})", b.at(), &c[0]));
            }
        } else if !b.expectations().is_empty() {
            problems.push(format!("{}: expect=\"...\" only means something on ```sh zk blocks", b.at()));
        }
        let (code, _, err) = bash(&["-n", "-c"], &b.code);
        if code != Some(0) {
            problems.push(format!("{}: bash -n: {err}", b.at()));
        }
    }
    let script = Regex::new(r"\b(zkServer|zkCli|zkCleanup|zkEnv)\.sh").expect("valid regex");
    let inline_code = Regex::new(r"`[^`]+`").expect("valid regex");
    let debian_path =
        Regex::new(r#"/(?:usr/share/zookeeper|etc/zookeeper|usr/share/java)/[^\s`'")\]:]*[^\s`'")\].,;:]"#)
            .expect("valid regex");
    let relative_conf = Regex::new(r#"(?:^|[\s`'"(])conf/[A-Za-z]"#).expect("valid regex");
    for f in &files {
        let text = std::fs::read_to_string(f).expect("runbook");
        let mut in_block = false;
        for (i, line) in text.lines().enumerate() {
            let at = format!("{}:{}", f.display(), i + 1);
            if line.trim_start().starts_with("```") {
                in_block = !in_block;
                continue;
            }
            // Commands (code blocks and `code` spans) name ZooKeeper's
            // scripts by their path; prose may name them.
            let code: Vec<&str> =
                if in_block { vec![line] } else { inline_code.find_iter(line).map(|m| m.as_str()).collect() };
            for part in code {
                for m in script.find_iter(part) {
                    if !part[..m.start()].ends_with(&format!("{DEBIAN_BIN}/")) {
                        problems.push(format!(
                            "{at}: name ZooKeeper's scripts by their Debian path ({DEBIAN_BIN}/{}; not on PATH): {line}",
                            m.as_str()
                        ));
                    }
                }
            }
            for m in debian_path.find_iter(line) {
                if Path::new("/usr/share/zookeeper").is_dir() && !Path::new(m.as_str()).exists() {
                    problems.push(format!("{at}: {} does not exist in Debian's zookeeper package", m.as_str()));
                }
            }
            if relative_conf.is_match(line) {
                problems.push(format!("{at}: say where conf/ is (Debian: /etc/zookeeper/conf/): {line}"));
            }
        }
    }
    assert!(problems.is_empty(), "runbook problems:\n{}", problems.join("\n"));

    // The ensemble: node ids 1..3; a follower killed so loops meet a dead node.
    let mut zk = Ensemble::start(3, Options::default());
    let leader = zk.leader().expect("a leader");
    let followers = zk.followers();
    let (dead, alive) = (followers[0], followers[1]);
    zk.kill(dead);
    zk.wait_ready(Duration::from_secs(30)).unwrap_or_else(|e| panic!("not ready with one node killed: {e}"));
    let client = |id: usize| zk.ports(id).client;
    let admin = |id: usize| zk.ports(id).admin;
    let names: Vec<(String, u16, u16)> = [
        ("HOST", alive),
        ("FOLLOWER", alive),
        ("LEADER", leader),
        ("LEADER_A", leader),
        ("HEALTHY_NODE", leader),
        ("zk1", 1),
        ("zk2", 2),
        ("zk3", 3),
        ("zk4", dead),
        ("zk5", dead),
    ]
    .into_iter()
    .map(|(name, id)| (name.to_string(), client(id), admin(id)))
    .collect();
    let map: String = names.iter().map(|(n, p, _)| format!("[{n}]={p} ")).collect();
    let shim = format!(
        r#"declare -A ZK_PORT=({map})
nc() {{
  local args=()
  while (($#)); do
    if [[ -n "${{ZK_PORT[$1]:-}}" && "${{2:-}}" == 2181 ]]; then args+=(127.0.0.1 "${{ZK_PORT[$1]}}"); shift 2
    else args+=("$1"); shift; fi
  done
  command nc "${{args[@]}}"
}}
"#
    );
    let mut ran = 0;
    for b in all.iter().filter(|b| b.is_zk()) {
        let mut code = b.code.clone();
        for (name, client, admin) in &names {
            for (port, to) in [("2181", client), ("8080", admin)] {
                let re = Regex::new(&format!(r"\b{name}:{port}\b")).expect("valid regex");
                code = re.replace_all(&code, format!("127.0.0.1:{to}").as_str()).into_owned();
            }
        }
        let t0 = Instant::now();
        let (status, out, err) = bash(&["-e", "-c"], &format!("{shim}{code}"));
        let took = t0.elapsed();
        let shown = format!("{}:\n{}--- stdout:\n{out}--- stderr:\n{err}", b.at(), b.code);
        if status != Some(0) {
            problems.push(format!("exit {status:?} after {took:?}: {shown}"));
            continue;
        }
        // What the on-call sees: stdout and stderr (`nc -v`, `time`).
        let seen = format!("{out}\n{err}");
        for e in b.expectations() {
            let re = Regex::new(&format!("(?m){e}")).unwrap_or_else(|x| panic!("{}: bad expect regex: {x}", b.at()));
            if !re.is_match(&seen) {
                problems.push(format!("expected /{e}/ in the output of {shown}"));
            }
        }
        eprintln!("ran {} in {} ms", b.at(), took.as_millis());
        ran += 1;
    }
    assert!(problems.is_empty(), "{} runbook block(s) failed:\n\n{}", problems.len(), problems.join("\n\n"));
    assert!(ran >= 20, "only {ran} ```sh zk blocks: the runbooks' read-only checks should be marked");
}
