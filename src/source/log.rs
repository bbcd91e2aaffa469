//! The log source, beside the metric sources: follows log files (ZooKeeper's
//! log, its GC log) by path or glob and turns lines that match patterns into
//! counters (`zk_log_matches_total{pattern}`) and, where a pattern captures a
//! number, gauges of it (`zk_log_last_value`, `zk_log_max_value`). Each poll
//! reads what was appended since the last one.
//!
//! Files are followed by identity (device and inode), not by name: a file
//! renamed by rotation is read to its end before the new one is read from
//! its start, and a file truncated in place (copytruncate) is read again
//! from its start. Where each file stands and the counts so far are kept in
//! a small state file, so after a restart reading resumes where it stopped
//! (no line counted twice, none missed); at the very first start, files
//! are read from their end. A line is matched on its first
//! [`MAX_LINE`] bytes and any bytes at all (a binary file) are read
//! without harm.

use crate::clock::Clock;
use crate::model::{Labels, Timestamp};
use crate::source::{PollBatch, SeriesBatch, Source};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::future::Future;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A line longer than this is matched on its first this many bytes.
pub const MAX_LINE: usize = 64 << 10;
/// At most this much of one file is read per poll; the rest waits for the
/// next (a poll stays short when a huge file appears).
pub const MAX_READ_PER_POLL: u64 = 16 << 20;
/// At most this many files followed by one source.
pub const MAX_FILES: usize = 64;
/// At most this many patterns per source.
pub const MAX_PATTERNS: usize = 64;
/// A file's first bytes (up to this many) tell a file truncated and written
/// again past where it was read from the same file grown.
const HEAD: usize = 256;
/// The compiled size a pattern may take.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// What a log source follows and looks for (the `log` source type).
#[derive(Debug, Clone, PartialEq)]
pub struct LogSourceConfig {
    pub cluster: String,
    /// The ZooKeeper node whose logs these are (`host:port`).
    pub instance: String,
    /// Files to follow: paths or globs (`/var/log/zookeeper/*.log`).
    pub paths: Vec<PathBuf>,
    pub interval: Duration,
    pub patterns: Vec<PatternConfig>,
    /// At the very first start, read files from their start rather than their end.
    pub from_start: bool,
    pub labels: Labels,
}

/// One pattern: its name (the `pattern` label) and a regular expression;
/// a first capture group that reads as a number gives the gauges.
#[derive(Debug, Clone, PartialEq)]
pub struct PatternConfig {
    pub name: String,
    pub regex: String,
}

/// The patterns a `log` source looks for unless it lists its own: the
/// operations guide's log checks, as ZooKeeper 3.8 and JDK 9+ GC logging
/// write them.
pub fn zookeeper_patterns() -> Vec<PatternConfig> {
    let p = |name: &str, regex: &str| PatternConfig { name: name.into(), regex: regex.into() };
    vec![
        p("out_of_memory", r"java\.lang\.OutOfMemoryError"),
        p("no_space_left", r"No space left on device"),
        p("too_many_open_files", r"Too many open files"),
        // ZooKeeperServer.expire: "Expiring session 0x…, timeout of …ms exceeded".
        p("session_expired", r"Expiring session 0x[0-9a-fA-F]+"),
        p("connection_reset", r"Connection reset by peer"),
        // QuorumPeer.run logs "LOOKING" each time the node starts an election.
        p("looking", r"\bLOOKING\b"),
        // FileTxnLog: "fsync-ing the write ahead log in <thread> took <n>ms which will adversely effect operation latency".
        p("fsync_slow_ms", r"fsync-ing the write ahead log in \S+ took (\d+)ms"),
        // JDK 9+ unified GC log: "[…][gc] GC(12) Pause Young (Normal) (G1 Evacuation Pause) 24M->4M(256M) 3.456ms".
        p("gc_pause_ms", r"GC\(\d+\) Pause.* (\d+(?:\.\d+)?)ms\s*$"),
    ]
}

/// Why a log source cannot be built.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LogSourceError {
    #[error("pattern {name:?}: {error}")]
    Pattern { name: String, error: String },
    #[error("{0} patterns; at most {MAX_PATTERNS}")]
    TooManyPatterns(usize),
}

/// A compiled pattern.
struct Pattern {
    name: String,
    regex: regex::bytes::Regex,
    /// It has a capture group: its number feeds the gauges.
    captures: bool,
}

/// Whether one pattern compiles within the size allowed.
pub fn check_pattern(pattern: &PatternConfig) -> Result<(), LogSourceError> {
    compile(std::slice::from_ref(pattern)).map(|_| ())
}

/// Compiles patterns once, bounded in size.
fn compile(patterns: &[PatternConfig]) -> Result<(Vec<Pattern>, regex::bytes::RegexSet), LogSourceError> {
    if patterns.len() > MAX_PATTERNS {
        return Err(LogSourceError::TooManyPatterns(patterns.len()));
    }
    let compiled = patterns
        .iter()
        .map(|p| {
            let regex = regex::bytes::RegexBuilder::new(&p.regex)
                .size_limit(REGEX_SIZE_LIMIT)
                .build()
                .map_err(|e| LogSourceError::Pattern { name: p.name.clone(), error: e.to_string() })?;
            Ok(Pattern { name: p.name.clone(), captures: regex.captures_len() > 1, regex })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let set = regex::bytes::RegexSetBuilder::new(patterns.iter().map(|p| &p.regex))
        .size_limit(REGEX_SIZE_LIMIT * MAX_PATTERNS)
        .build()
        .map_err(|e| LogSourceError::Pattern { name: "(all)".into(), error: e.to_string() })?;
    Ok((compiled, set))
}

/// Where one followed file stands, as saved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct FileState {
    dev: u64,
    ino: u64,
    /// Its name when last seen (for the logs; it is followed by identity).
    path: PathBuf,
    /// Bytes read and counted: the next line starts here.
    offset: u64,
    /// Hash of the file's first `min(offset, HEAD)` bytes (`None`: not yet taken).
    head: Option<u64>,
    /// Within a line longer than [`MAX_LINE`], already counted: the rest up
    /// to its newline is skipped.
    skipping: bool,
}

/// What a source has counted, as saved between runs.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct Saved {
    files: Vec<FileState>,
    /// Per pattern name: matches so far, and the last number captured.
    counts: Vec<(String, u64, Option<f64>)>,
}

/// Per pattern: matches so far, the last number captured, and the largest
/// captured in this poll.
struct Counts {
    matches: Vec<u64>,
    last: Vec<Option<f64>>,
    poll_max: Vec<Option<f64>>,
}

/// The mutable side of a source: files followed and counts.
struct Follower {
    files: Vec<(FileState, Option<File>)>,
    counts: Counts,
    /// Whether it ever saved where it stands (false: the very first start,
    /// when files are read from their end).
    started: bool,
    /// Why the last save failed, if it did (logged when it starts or changes).
    save_failed: Option<String>,
    /// The last poll's problems reading files (logged when they change).
    problems: Vec<String>,
}

/// A log source; cheap to clone (its poll runs on a blocking thread).
#[derive(Clone)]
pub struct LogSource {
    inner: Arc<Inner>,
}

struct Inner {
    config: LogSourceConfig,
    patterns: Vec<Pattern>,
    any: regex::bytes::RegexSet,
    state_file: PathBuf,
    follower: Mutex<Follower>,
}

impl LogSource {
    /// Builds the source; where it stands is kept in `state_dir` (created
    /// when first written), in a file named after its cluster, instance and
    /// paths.
    pub fn new(config: LogSourceConfig, state_dir: &Path) -> Result<Self, LogSourceError> {
        let (patterns, any) = compile(&config.patterns)?;
        let paths: Vec<String> = config.paths.iter().map(|p| p.display().to_string()).collect();
        let key = Labels::from_pairs([
            ("cluster", config.cluster.as_str()),
            ("instance", config.instance.as_str()),
            ("paths", paths.join("\n").as_str()),
        ]);
        let state_file = state_dir.join(format!("log-{}.json", crate::model::Alert::fingerprint_of(&key)));
        let saved = read_saved(&state_file);
        let count_of = |name: &str| saved.as_ref().and_then(|s| s.counts.iter().find(|(n, ..)| n == name));
        let counts = Counts {
            matches: patterns.iter().map(|p| count_of(&p.name).map_or(0, |c| c.1)).collect(),
            last: patterns.iter().map(|p| count_of(&p.name).and_then(|c| c.2)).collect(),
            poll_max: vec![None; patterns.len()],
        };
        let follower = Follower {
            files: saved.as_ref().map(|s| s.files.iter().map(|f| (f.clone(), None)).collect()).unwrap_or_default(),
            counts,
            started: saved.is_some(),
            save_failed: None,
            problems: Vec::new(),
        };
        let inner = Inner { config, patterns, any, state_file, follower: Mutex::new(follower) };
        Ok(Self { inner: Arc::new(inner) })
    }

    /// One poll, synchronously: reads what was appended, saves where it
    /// stands, and returns the counters and gauges at `ts`.
    pub fn collect(&self, ts: Timestamp) -> PollBatch {
        self.inner.collect(ts, &self.name())
    }
}

impl Inner {
    fn target(&self) -> Labels {
        let mut l = self.config.labels.clone();
        l.insert("cluster", self.config.cluster.as_str());
        l.insert("instance", self.config.instance.as_str());
        l
    }

    fn collect(&self, ts: Timestamp, name: &str) -> PollBatch {
        let (paths, too_many) = expand(&self.config.paths);
        let mut problems = Vec::new();
        if too_many {
            problems.push(format!("more than {MAX_FILES} files match; the first {MAX_FILES} by name are followed"));
        }
        let mut guard = self.follower.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let follower = &mut *guard;
        let counts = &mut follower.counts;
        counts.poll_max.iter_mut().for_each(|m| *m = None);
        let mut matched = |line: &[u8]| {
            for i in self.any.matches(line).iter() {
                counts.matches[i] += 1;
                let p = &self.patterns[i];
                if !p.captures {
                    continue;
                }
                let number = p.regex.captures(line).and_then(|c| c.get(1)).and_then(|m| parse_number(m.as_bytes()));
                if let Some(v) = number {
                    counts.last[i] = Some(v);
                    counts.poll_max[i] = Some(counts.poll_max[i].map_or(v, |m| m.max(v)));
                }
            }
        };
        let first_start = !follower.started;
        let from_end = first_start && !self.config.from_start;
        let changed = follow(&mut follower.files, &paths, from_end, &mut matched, &mut problems);
        if problems != follower.problems {
            for p in problems.iter().filter(|p| !follower.problems.contains(p)) {
                tracing::warn!(source = %name, problem = %p, "log source");
            }
            if problems.is_empty() {
                tracing::info!(source = %name, "log source: every file reads again");
            }
            follower.problems = problems;
        }
        if changed || first_start || follower.save_failed.is_some() {
            follower.started = true;
            let saved = Saved {
                files: follower.files.iter().map(|(s, _)| s.clone()).collect(),
                counts: (self.patterns.iter().zip(&follower.counts.matches).zip(&follower.counts.last))
                    .map(|((p, c), l)| (p.name.clone(), *c, *l))
                    .collect(),
            };
            // Not saved: retried at the next poll; a restart meanwhile
            // reads again from the last place saved.
            let failed = write_saved(&self.state_file, &saved).err().map(|e| e.to_string());
            if failed != follower.save_failed {
                match &failed {
                    Some(e) => {
                        tracing::warn!(file = %self.state_file.display(), error = %e, "log source: cannot save where it stands")
                    }
                    None => {
                        tracing::info!(file = %self.state_file.display(), "log source: saved where it stands again")
                    }
                }
                follower.save_failed = failed;
            }
        }
        let counts = &follower.counts;
        let mut out = PollBatch::default();
        for (i, p) in self.patterns.iter().enumerate() {
            let mut labels = self.target();
            labels.insert("pattern", p.name.as_str());
            let mut values = vec![("zk_log_matches_total".to_string(), counts.matches[i] as f64)];
            if let Some(v) = counts.last[i] {
                values.push(("zk_log_last_value".into(), v));
            }
            if let Some(v) = counts.poll_max[i] {
                values.push(("zk_log_max_value".into(), v));
            }
            out.series.push(SeriesBatch { labels, info: None, timestamp: ts, values });
        }
        let files = follower.files.iter().filter(|(_, f)| f.is_some()).count();
        let values = vec![
            ("zk_log_files_followed".into(), files as f64),
            ("zk_log_state_save_failed".into(), f64::from(u8::from(follower.save_failed.is_some()))),
            ("zk_log_read_problems".into(), follower.problems.len() as f64),
        ];
        out.series.push(SeriesBatch { labels: self.target(), info: None, timestamp: ts, values });
        out
    }
}

impl Source for LogSource {
    fn name(&self) -> String {
        format!("log/{}/{}", self.inner.config.cluster, self.inner.config.instance)
    }
    fn interval(&self) -> Duration {
        self.inner.config.interval
    }
    fn poll(&self, clock: Arc<dyn Clock>) -> Pin<Box<dyn Future<Output = PollBatch> + Send + '_>> {
        // File reads block: bounded (MAX_READ_PER_POLL a file), but off the async workers.
        let source = self.clone();
        Box::pin(async move {
            let now = clock.now();
            tokio::task::spawn_blocking(move || source.collect(now)).await.unwrap_or_else(|e| {
                tracing::error!(error = %e, "log source: a poll failed");
                PollBatch::default()
            })
        })
    }
}

/// The files `paths` name now, each globbed, sorted, at most [`MAX_FILES`];
/// and whether more matched.
fn expand(paths: &[PathBuf]) -> (Vec<PathBuf>, bool) {
    let mut out = Vec::new();
    for p in paths {
        let text = p.to_string_lossy();
        if !text.contains(['*', '?', '[']) {
            out.push(p.clone());
            continue;
        }
        if let Ok(matches) = glob::glob(&text) {
            // Lazily, and no further than one past the bound: a glob that
            // matches a whole tree does not walk all of it every poll.
            out.extend(matches.flatten().filter(|m| m.is_file()).take(MAX_FILES + 1));
        }
    }
    out.sort();
    out.dedup();
    let too_many = out.len() > MAX_FILES;
    out.truncate(MAX_FILES);
    (out, too_many)
}

/// Reads the new lines of the files at `paths` (and of those followed
/// that were renamed away) into `matched`; new files start at their end if
/// `from_end`, else at their start. Returns whether any file's place changed.
fn follow(
    files: &mut Vec<(FileState, Option<File>)>,
    paths: &[PathBuf],
    from_end: bool,
    matched: &mut impl FnMut(&[u8]),
    problems: &mut Vec<String>,
) -> bool {
    let mut changed = false;
    // The files there now, by identity.
    // A path not there yet is normal (a log not yet written); one that is
    // not a file is a problem.
    let mut present: Vec<(PathBuf, u64, u64, u64)> = Vec::new();
    for p in paths {
        match std::fs::metadata(p) {
            Ok(m) if m.is_file() => present.push((p.clone(), m.dev(), m.ino(), m.len())),
            Ok(_) => problems.push(format!("{} is not a file", p.display())),
            Err(_) => {}
        }
    }
    // A file followed but renamed away (rotated) or deleted: read what it
    // still has through the handle held, then let it go.
    files.retain_mut(|(state, handle)| {
        if present.iter().any(|(_, dev, ino, _)| (*dev, *ino) == (state.dev, state.ino)) {
            return true;
        }
        if let Some(file) = handle {
            read_new(file, state, matched, problems);
        }
        changed = true;
        false
    });
    for (path, dev, ino, len) in present {
        let i = match files.iter().position(|(s, _)| (s.dev, s.ino) == (dev, ino)) {
            Some(i) => i,
            None => {
                // New: at the very first start, from its end; later (it
                // appeared since, or while zkalert was down), from its start.
                let offset = if from_end { len } else { 0 };
                let state = FileState { dev, ino, path: path.clone(), offset, head: None, skipping: false };
                files.push((state, None));
                changed = true;
                files.len() - 1
            }
        };
        let (state, handle) = &mut files[i];
        if state.path != path {
            state.path = path.clone();
            changed = true;
        }
        if handle.is_none() {
            match File::open(&path) {
                // Opened by name: make sure it is the file followed.
                Ok(file) if file.metadata().is_ok_and(|m| (m.dev(), m.ino()) == (dev, ino)) => *handle = Some(file),
                Ok(_) => continue,
                Err(e) => {
                    problems.push(format!("cannot open {}: {e}", path.display()));
                    continue;
                }
            }
        }
        let Some(file) = handle.as_mut() else { continue };
        // Truncated in place (copytruncate), or truncated and written again
        // past where it was read: read again from its start.
        let rewritten = state.head.is_some_and(|h| state.offset > 0 && head_hash(file, state.offset) != Some(h));
        if len < state.offset || rewritten {
            (state.offset, state.head, state.skipping) = (0, None, false);
            changed = true;
        }
        changed |= read_new(file, state, matched, problems);
    }
    changed
}

/// Reads `file` from `state.offset`: each complete line (at most
/// [`MAX_READ_PER_POLL`] bytes this time) goes to `matched`. A last line
/// without its newline waits for the next poll, unless it is already
/// longer than [`MAX_LINE`]. Returns whether the offset moved.
fn read_new(
    file: &mut File,
    state: &mut FileState,
    matched: &mut impl FnMut(&[u8]),
    problems: &mut Vec<String>,
) -> bool {
    let start = state.offset;
    if file.seek(SeekFrom::Start(start)).is_err() {
        return false;
    }
    let mut reader = (&mut *file).take(MAX_READ_PER_POLL);
    let mut chunk = vec![0u8; 64 << 10];
    let mut line: Vec<u8> = Vec::new();
    // Where the line being read started; `at`, the bytes read so far.
    let (mut line_start, mut at) = (start, start);
    loop {
        let n = match reader.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                problems.push(format!("cannot read {}: {e}", state.path.display()));
                break;
            }
        };
        let mut rest = &chunk[..n];
        while !rest.is_empty() {
            let newline = memchr(rest);
            let part = &rest[..newline.unwrap_or(rest.len())];
            let ends = newline.is_some();
            at += part.len() as u64 + u64::from(ends);
            rest = &rest[part.len() + usize::from(ends)..];
            if state.skipping {
                // The rest of an overlong line, already counted.
                if ends {
                    state.skipping = false;
                    line_start = at;
                }
                continue;
            }
            let room = MAX_LINE - line.len();
            line.extend_from_slice(&part[..part.len().min(room)]);
            if ends {
                matched(&line);
                line.clear();
                line_start = at;
            } else if line.len() == MAX_LINE {
                // Overlong: matched on what it has, the rest skipped.
                matched(&line);
                line.clear();
                state.skipping = true;
            }
        }
    }
    // A partial last line is read again next time; a skipped one is not.
    let end = if state.skipping { at } else { line_start };
    state.offset = end;
    if state.head.is_none() || start < HEAD as u64 {
        state.head = head_hash(file, end);
    }
    end != start
}

fn memchr(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|b| *b == b'\n')
}

/// FNV-1a of the file's first `min(upto, HEAD)` bytes.
fn head_hash(file: &mut File, upto: u64) -> Option<u64> {
    let n = upto.min(HEAD as u64) as usize;
    let mut buf = vec![0u8; n];
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_exact(&mut buf).ok()?;
    Some(buf.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)))
}

fn parse_number(bytes: &[u8]) -> Option<f64> {
    std::str::from_utf8(bytes).ok()?.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// The saved state, if there is one that reads.
fn read_saved(path: &Path) -> Option<Saved> {
    let text = std::fs::read(path).ok()?;
    match serde_json::from_slice(&text) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "log source: its saved state does not read; starting anew");
            None
        }
    }
}

/// Writes the state whole or not at all (a temporary file renamed over it).
fn write_saved(path: &Path, saved: &Saved) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec(saved).map_err(std::io::Error::other)?)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests;
