//! Sources → store → rules…: the first stage. The ZooKeeper poller sends
//! four-letter words (`mntr`, `srvr`, `stat`, `cons`, `conf`, `envi`, `ruok`,
//! `isro`, …) and hands each raw reply to these parsers, which turn the bytes
//! into typed values ([`Mntr`], [`Srvr`], [`Connection`]s, [`Conf`], [`Envi`],
//! …); the poller converts those to samples for the series store.
//!
//! Every parser first [`classify`]s the bytes, so each reply becomes exactly
//! one [`Reply`] state — the parsed value, "not in the whitelist", "not
//! serving", or empty — and never an empty set of zeros. Text that is none of
//! these and does not have the command's shape is a [`ParseError`].
//!
//! Formats are ZooKeeper 3.8.0's, byte-exact as captured in
//! `tests/fixtures/zk/3.8.0/` (see that directory's provenance file). No parser
//! panics on any input; `tests/it/zk_fixtures.rs` feeds them arbitrary bytes and
//! mutated fixtures.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

/// The whole reply of a peer that is up but not serving (no quorum: LOOKING /
/// electing). Sent with a trailing newline by every 4lw except `hash`, and as
/// the AdminServer's `"error"` string.
pub const NOT_SERVING: &str = "This ZooKeeper instance is not currently serving requests";

/// Ending of the reply to a 4lw missing from `4lw.commands.whitelist`:
/// `mntr is not executed because it is not in the whitelist.\n`.
pub const NOT_WHITELISTED_SUFFIX: &str = " is not executed because it is not in the whitelist.";

/// `mntr` keys whose values are text, never metrics (even if a value looked
/// numeric). Any other value that is not a Java number is kept as a string too.
pub const MNTR_STRING_KEYS: [&str; 3] = ["zk_version", "zk_server_state", "zk_peer_state"];

/// What a node answered to one command.
///
/// The three non-`Ok` states are distinct operational facts and must not be
/// turned into zero-valued metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply<T> {
    /// The command ran and its reply parsed.
    Ok(T),
    /// `<cmd> is not executed because it is not in the whitelist.` — the
    /// probe is misconfigured (3.8.0's default whitelist is `srvr` only). Never
    /// sent by the AdminServer, which ignores the whitelist.
    NotWhitelisted,
    /// `This ZooKeeper instance is not currently serving requests` (with or
    /// without trailing newline) — the node is up but has no quorum.
    NotServing,
    /// Zero bytes: an unknown word (e.g. `abcd`), or the connection closed
    /// without an answer. A hung (SIGSTOPped) server also yields no bytes —
    /// the poller sees that as a read time-out before it gets here. For `hash`
    /// zero bytes is also the normal answer of a server with fewer than 128
    /// transactions (no digest yet).
    Empty,
}

impl<T> Reply<T> {
    /// Applies `f` to the parsed value, keeping the other states.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Reply<U> {
        match self {
            Reply::Ok(v) => Reply::Ok(f(v)),
            Reply::NotWhitelisted => Reply::NotWhitelisted,
            Reply::NotServing => Reply::NotServing,
            Reply::Empty => Reply::Empty,
        }
    }

    /// Like [`Reply::map`] with a fallible `f`.
    pub fn try_map<U, E>(self, f: impl FnOnce(T) -> Result<U, E>) -> Result<Reply<U>, E> {
        Ok(match self {
            Reply::Ok(v) => Reply::Ok(f(v)?),
            Reply::NotWhitelisted => Reply::NotWhitelisted,
            Reply::NotServing => Reply::NotServing,
            Reply::Empty => Reply::Empty,
        })
    }

    /// The parsed value, if any.
    pub fn ok(self) -> Option<T> {
        match self {
            Reply::Ok(v) => Some(v),
            _ => None,
        }
    }

    /// Borrows the parsed value.
    pub fn as_ref(&self) -> Reply<&T> {
        match self {
            Reply::Ok(v) => Reply::Ok(v),
            Reply::NotWhitelisted => Reply::NotWhitelisted,
            Reply::NotServing => Reply::NotServing,
            Reply::Empty => Reply::Empty,
        }
    }

    /// True for [`Reply::Ok`].
    pub fn is_ok(&self) -> bool {
        matches!(self, Reply::Ok(_))
    }

    /// A stable name of the state (`ok`, `not_whitelisted`, `not_serving`,
    /// `empty`) for logs and labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Reply::Ok(_) => "ok",
            Reply::NotWhitelisted => "not_whitelisted",
            Reply::NotServing => "not_serving",
            Reply::Empty => "empty",
        }
    }
}

/// A reply that is none of the [`Reply`] states and not in the command's format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// A field every reply of `cmd` carries is absent.
    #[error("{cmd}: missing {what}")]
    Missing { cmd: &'static str, what: &'static str },
    /// A field is present but its value has the wrong shape.
    #[error("{cmd}: invalid {what}: {text:?}")]
    Invalid { cmd: &'static str, what: &'static str, text: String },
    /// A line that does not have the command's line format.
    #[error("{cmd}: line {line}: unexpected {text:?}")]
    Line { cmd: &'static str, line: usize, text: String },
}

impl ParseError {
    fn invalid(cmd: &'static str, what: &'static str, text: &str) -> Self {
        ParseError::Invalid { cmd, what, text: snippet(text) }
    }

    fn line(cmd: &'static str, line: usize, text: &str) -> Self {
        ParseError::Line { cmd, line, text: snippet(text) }
    }
}

/// At most 80 characters of `s`, for error messages.
fn snippet(s: &str) -> String {
    const MAX: usize = 80;
    let mut out: String = s.chars().take(MAX).collect();
    if s.chars().nth(MAX).is_some() {
        out.push('…');
    }
    out
}

/// Sorts raw 4lw bytes into one [`Reply`] state; `Ok` carries the bytes for
/// the command's parser.
///
/// * 0 bytes → [`Reply::Empty`];
/// * exactly [`NOT_SERVING`], ignoring surrounding whitespace (most commands
///   add `\n`, `hash` does not) → [`Reply::NotServing`];
/// * one word followed by [`NOT_WHITELISTED_SUFFIX`] → [`Reply::NotWhitelisted`];
/// * anything else → [`Reply::Ok`] (including a lone `\n`: `cons`/`wchc`
///   with no entries).
pub fn classify(raw: &[u8]) -> Reply<&[u8]> {
    if raw.is_empty() {
        return Reply::Empty;
    }
    let trimmed = raw.trim_ascii();
    if trimmed == NOT_SERVING.as_bytes() {
        return Reply::NotServing;
    }
    if let Some(cmd) = trimmed.strip_suffix(NOT_WHITELISTED_SUFFIX.as_bytes())
        && !cmd.is_empty()
        && cmd.len() <= 16
        && cmd.iter().all(u8::is_ascii_alphanumeric)
    {
        return Reply::NotWhitelisted;
    }
    Reply::Ok(raw)
}

/// Classifies, decodes (lossy UTF-8: a stray byte in a path must not cost the
/// whole reply) and parses the `Ok` text with `f`.
fn parse_with<T>(raw: &[u8], f: impl FnOnce(&str) -> Result<T, ParseError>) -> Result<Reply<T>, ParseError> {
    classify(raw).try_map(|bytes| f(&String::from_utf8_lossy(bytes)))
}

/// Lines with their 1-based numbers, `\r` tolerated.
fn numbered_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).enumerate().map(|(i, l)| (i + 1, l))
}

/// Parses a number as Java's `Long.toString` / `Double.toString` print it:
/// `0`, `-1`, `3.6617`, `1981.0`, `1.0E-4`, `1.2E7`, `NaN`, `Infinity`,
/// `-Infinity`. Surrounding whitespace is ignored; anything else (`0x10`,
/// `inf`, `1,5`, `12MB`) is `None`.
pub fn parse_java_number(s: &str) -> Option<f64> {
    let s = s.trim();
    match s {
        "NaN" => return Some(f64::NAN),
        "Infinity" | "+Infinity" => return Some(f64::INFINITY),
        "-Infinity" => return Some(f64::NEG_INFINITY),
        _ => {}
    }
    let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    let unsigned = s.strip_prefix(['-', '+']).unwrap_or(s);
    let (mantissa, exponent) = match unsigned.split_once(['E', 'e']) {
        Some((m, e)) => (m, Some(e)),
        None => (unsigned, None),
    };
    let (int, frac) = match mantissa.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (mantissa, None),
    };
    if !digits(int) || !frac.is_none_or(digits) || (int.is_empty() && frac.is_none_or(str::is_empty)) {
        return None;
    }
    if let Some(e) = exponent {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        if e.is_empty() || !digits(e) {
            return None;
        }
    }
    s.parse().ok()
}

/// Parses a zxid in any spelling ZooKeeper 3.8.0 prints as text. Found in the
/// fixtures:
///
/// | where | spelling |
/// | --- | --- |
/// | `srvr`/`stat` `Zxid:` | `0x100000344`, `0x0`, `0x184` (lower-case hex, no padding) |
/// | `cons` `lzxid=` | `0x100000340`; `0xffffffffffffffff` after `crst` (Java's `-1`: none) |
/// | `hash` lines | `100000080` (hex **without** `0x`, before the `:`) |
/// | AdminServer `zabstate` `last_zxid` | `"0x10000037c"` (JSON string with `0x`) |
/// | AdminServer `last_snapshot` `zxid` | `"100000000"`, `"0"` (JSON string, hex without `0x`) |
/// | AdminServer `stats`/`server_stats` `last_processed_zxid`, `connections` `last_zxid`, `observers` `last_zxid`, `hash` `digests[].zxid` | `4294968174` (JSON **number**, decimal) |
/// | `conf` `version=` (dynamic-config version, a zxid) | `0` (hex without `0x`) |
///
/// Every *text* spelling is hexadecimal: with or without `0x`/`0X`, any case,
/// optionally wrapped in JSON double quotes. A bare digit string is therefore
/// read as hex (`"100000000"` is 2^32, as `last_snapshot` means it); decimal
/// zxids only ever appear as JSON numbers — use
/// [`super::admin_json::zxid_from_json`] for JSON values. `0xffffffffffffffff`
/// parses to `u64::MAX`; fields that mean "none" by it map it to `None`.
pub fn parse_zxid(s: &str) -> Option<u64> {
    let s = s.trim();
    let s = s.strip_prefix('"').and_then(|t| t.strip_suffix('"')).unwrap_or(s);
    let hex = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")).unwrap_or(s);
    if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// The election epoch of a zxid: its high 32 bits (`zxid >> 32`).
pub const fn epoch(zxid: u64) -> u32 {
    (zxid >> 32) as u32
}

/// The transaction counter within the epoch: the low 32 bits (`zxid & 0xffff_ffff`).
pub const fn counter(zxid: u64) -> u32 {
    (zxid & 0xffff_ffff) as u32
}

/// The short version: the text before the first `-` or `,`, trimmed
/// (`3.8.0-${mvngit.commit.id}, built on …` → `3.8.0`). Debian's build has
/// an unexpanded Maven placeholder where a git hash would be, so nothing after
/// the dash is reliable.
pub fn short_version(full: &str) -> &str {
    full.split(['-', ',']).next().unwrap_or(full).trim()
}

fn parse_u64(cmd: &'static str, what: &'static str, s: &str) -> Result<u64, ParseError> {
    s.trim().parse().map_err(|_| ParseError::invalid(cmd, what, s))
}

fn parse_i64(cmd: &'static str, what: &'static str, s: &str) -> Result<i64, ParseError> {
    s.trim().parse().map_err(|_| ParseError::invalid(cmd, what, s))
}

fn parse_u32(cmd: &'static str, what: &'static str, s: &str) -> Result<u32, ParseError> {
    s.trim().parse().map_err(|_| ParseError::invalid(cmd, what, s))
}

fn parse_f64(cmd: &'static str, what: &'static str, s: &str) -> Result<f64, ParseError> {
    parse_java_number(s).ok_or_else(|| ParseError::invalid(cmd, what, s))
}

fn required<T>(cmd: &'static str, what: &'static str, v: Option<T>) -> Result<T, ParseError> {
    v.ok_or(ParseError::Missing { cmd, what })
}

// ---------------------------------------------------------------------------
// mntr

/// `mntr` (or AdminServer `/commands/monitor`): numeric metrics and text
/// metrics, kept apart.
///
/// Keys are stored as `mntr` prints them (`zk_avg_latency`); the AdminServer
/// parser adds the `zk_` prefix its JSON lacks. Numbers are `f64` (Java longs
/// above 2^53 lose precision, which metrics tolerate). The key set is open:
/// per-namespace (`zk_cnt_<ns>_write_per_namespace`), per-learner-sid
/// (`zk_avg_4_learner_handler_qp_size`) and quota keys come and go.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Mntr {
    numbers: BTreeMap<String, f64>,
    strings: BTreeMap<String, String>,
}

impl Mntr {
    /// A numeric metric by its `mntr` name (`zk_avg_latency`).
    pub fn get(&self, key: &str) -> Option<f64> {
        self.numbers.get(key).copied()
    }

    /// A text metric (`zk_version`, `zk_server_state`, `zk_peer_state`, or any
    /// value that was not a number).
    pub fn string(&self, key: &str) -> Option<&str> {
        self.strings.get(key).map(String::as_str)
    }

    /// All numeric metrics, sorted by name.
    pub fn numbers(&self) -> impl Iterator<Item = (&str, f64)> + '_ {
        self.numbers.iter().map(|(k, v)| (k.as_str(), *v))
    }

    /// All text metrics, sorted by name.
    pub fn strings(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.strings.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Number of numeric metrics.
    pub fn number_count(&self) -> usize {
        self.numbers.len()
    }

    /// Number of text metrics.
    pub fn string_count(&self) -> usize {
        self.strings.len()
    }

    /// Number of metrics of both kinds.
    pub fn len(&self) -> usize {
        self.numbers.len() + self.strings.len()
    }

    /// True if there is no metric at all (never the result of a successful parse).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `zk_server_state` as a [`Mode`] (`None` if absent or unknown).
    pub fn server_state(&self) -> Option<Mode> {
        self.string("zk_server_state").and_then(|s| s.parse().ok())
    }

    /// The short version from `zk_version` (`3.8.0`).
    pub fn version(&self) -> Option<&str> {
        self.string("zk_version").map(short_version)
    }

    /// Adds a number, replacing a text metric of the same name.
    pub(crate) fn insert_number(&mut self, key: String, value: f64) {
        self.strings.remove(&key);
        self.numbers.insert(key, value);
    }

    /// Adds a text metric, replacing a number of the same name.
    pub(crate) fn insert_string(&mut self, key: String, value: String) {
        self.numbers.remove(&key);
        self.strings.insert(key, value);
    }
}

/// Parses `mntr`: `zk_<name>\t<value>` lines (a space separator is accepted
/// too), trailing newline optional, blank lines ignored. A value is a number
/// if it is spelled as Java prints numbers ([`parse_java_number`]) and the key
/// is not in [`MNTR_STRING_KEYS`]; otherwise it is text. A line whose key does
/// not start with `zk_` or that has no value is an error (a truncated reply or
/// another command's reply), as is a reply with no metric.
pub fn parse_mntr(raw: &[u8]) -> Result<Reply<Mntr>, ParseError> {
    parse_with(raw, |text| mntr_text(text, &|_| true))
}

/// [`parse_mntr`] keeping only the numeric keys `keep` accepts (and every
/// text key): the poller stores only what rules read, and a reply has ~550
/// keys, so this saves most of the parse's allocations.
pub fn parse_mntr_keeping(raw: &[u8], keep: &dyn Fn(&str) -> bool) -> Result<Reply<Mntr>, ParseError> {
    parse_with(raw, |text| mntr_text(text, keep))
}

fn mntr_text(text: &str, keep: &dyn Fn(&str) -> bool) -> Result<Mntr, ParseError> {
    const CMD: &str = "mntr";
    let mut m = Mntr::default();
    let mut seen = 0usize;
    for (n, line) in numbered_lines(text) {
        if line.trim().is_empty() {
            continue;
        }
        let Some((key, value)) = line.split_once(['\t', ' ']) else {
            return Err(ParseError::line(CMD, n, line));
        };
        if !key.starts_with("zk_") || key.len() <= 3 {
            return Err(ParseError::line(CMD, n, line));
        }
        let value = value.trim();
        seen += 1;
        match parse_java_number(value) {
            Some(v) if !MNTR_STRING_KEYS.contains(&key) => {
                if keep(key) {
                    m.insert_number(key.to_string(), v);
                }
            }
            _ => m.insert_string(key.to_string(), value.to_string()),
        }
    }
    if seen == 0 {
        return Err(ParseError::Missing { cmd: CMD, what: "metrics" });
    }
    Ok(m)
}

// ---------------------------------------------------------------------------
// srvr / stat

/// A serving node's role, from `srvr`'s `Mode:`, `mntr`'s `zk_server_state`
/// or the AdminServer's `server_state`. There is no "looking": a peer without
/// quorum answers [`Reply::NotServing`] instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mode {
    Leader,
    Follower,
    Observer,
    Standalone,
    /// `read-only` (`readonlymode.enabled=true` and quorum lost).
    ReadOnly,
}

impl Mode {
    /// The spelling ZooKeeper uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Leader => "leader",
            Mode::Follower => "follower",
            Mode::Observer => "observer",
            Mode::Standalone => "standalone",
            Mode::ReadOnly => "read-only",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Mode {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.trim() {
            "leader" => Mode::Leader,
            "follower" => Mode::Follower,
            "observer" => Mode::Observer,
            "standalone" => Mode::Standalone,
            "read-only" => Mode::ReadOnly,
            other => return Err(ParseError::invalid("srvr", "mode", other)),
        })
    }
}

/// `Latency min/avg/max:` in ms. min and max are Java longs, avg a double
/// (`2.6683`, `0.0`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    pub min: i64,
    pub avg: f64,
    pub max: i64,
}

/// `Proposal sizes last/min/max:` in bytes (leader only; `-1/-1/-1` before
/// the first proposal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProposalSizes {
    pub last: i64,
    pub min: i64,
    pub max: i64,
}

/// `srvr` (and `stat`, which adds the client list).
#[derive(Debug, Clone, PartialEq)]
pub struct Srvr {
    /// Short version (`3.8.0`), see [`short_version`].
    pub version: String,
    /// The full version text (`3.8.0-${mvngit.commit.id}, built on 2024-12-29 17:54 UTC`).
    pub build: String,
    /// The `READ-ONLY mode; serving only read-only clients` line was present
    /// (AdminServer: `"read_only": true`).
    pub read_only: bool,
    /// `stat`'s `Clients:` block (AdminServer `stats`: `connections`); `None` for `srvr`.
    pub clients: Option<Vec<Connection>>,
    pub latency: Latency,
    /// `Received:` packets since the last `srst` or role change.
    pub received: u64,
    /// `Sent:` packets since the last `srst` or role change.
    pub sent: u64,
    /// `Connections:` — includes the 4lw connection asking (an idle server says 1).
    /// The AdminServer's `num_alive_client_connections` does not count the HTTP request.
    pub connections: u64,
    /// `Outstanding:` requests.
    pub outstanding: u64,
    /// `Zxid:` — the last zxid this node processed.
    pub zxid: u64,
    pub mode: Mode,
    /// `Node count:` znodes.
    pub node_count: u64,
    /// Leader only.
    pub proposal_sizes: Option<ProposalSizes>,
}

impl Srvr {
    /// [`epoch`] of [`Srvr::zxid`].
    pub fn epoch(&self) -> u32 {
        epoch(self.zxid)
    }

    /// [`counter`] of [`Srvr::zxid`].
    pub fn counter(&self) -> u32 {
        counter(self.zxid)
    }
}

/// Parses `srvr`. Same as [`parse_stat`]; a `Clients:` block, if present,
/// fills [`Srvr::clients`].
pub fn parse_srvr(raw: &[u8]) -> Result<Reply<Srvr>, ParseError> {
    parse_with(raw, |t| srvr_text("srvr", t))
}

/// Parses `stat`: `srvr`'s lines plus, after the version (and `READ-ONLY`)
/// line, `Clients:`, one ` /ip:port[ops](queued=…,recved=…,sent=…)` line per
/// connection and an empty line.
pub fn parse_stat(raw: &[u8]) -> Result<Reply<Srvr>, ParseError> {
    parse_with(raw, |t| srvr_text("stat", t))
}

fn split_triple<'a>(cmd: &'static str, what: &'static str, v: &'a str) -> Result<[&'a str; 3], ParseError> {
    let mut it = v.trim().split('/');
    match (it.next(), it.next(), it.next(), it.next()) {
        (Some(a), Some(b), Some(c), None) => Ok([a, b, c]),
        _ => Err(ParseError::invalid(cmd, what, v)),
    }
}

fn srvr_text(cmd: &'static str, text: &str) -> Result<Srvr, ParseError> {
    let mut build = None;
    let mut read_only = false;
    let mut clients: Option<Vec<Connection>> = None;
    let mut latency = None;
    let (mut received, mut sent, mut connections, mut outstanding) = (None, None, None, None);
    let (mut zxid, mut mode, mut node_count, mut proposal_sizes) = (None, None, None, None);
    let mut in_clients = false;
    for (n, line) in numbered_lines(text) {
        if in_clients {
            if line.trim().is_empty() {
                in_clients = false;
            } else {
                let c = parse_connection_line(cmd, n, line)?;
                clients.get_or_insert_with(Vec::new).extend(c);
            }
            continue;
        }
        if line.trim() == "Clients:" {
            in_clients = true;
            clients.get_or_insert_with(Vec::new);
            continue;
        }
        if line.starts_with("READ-ONLY mode") {
            read_only = true;
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            continue; // blank or unknown line: the required fields decide
        };
        match key.trim() {
            "Zookeeper version" => build = Some(value.trim().to_string()),
            "Latency min/avg/max" => {
                let [a, b, c] = split_triple(cmd, "latency", value)?;
                latency = Some(Latency {
                    min: parse_i64(cmd, "latency", a)?,
                    avg: parse_f64(cmd, "latency", b)?,
                    max: parse_i64(cmd, "latency", c)?,
                });
            }
            "Received" => received = Some(parse_u64(cmd, "received", value)?),
            "Sent" => sent = Some(parse_u64(cmd, "sent", value)?),
            "Connections" => connections = Some(parse_u64(cmd, "connections", value)?),
            "Outstanding" => outstanding = Some(parse_u64(cmd, "outstanding", value)?),
            "Zxid" => zxid = Some(parse_zxid(value).ok_or_else(|| ParseError::invalid(cmd, "zxid", value))?),
            "Mode" => mode = Some(value.parse::<Mode>().map_err(|_| ParseError::invalid(cmd, "mode", value))?),
            "Node count" => node_count = Some(parse_u64(cmd, "node count", value)?),
            "Proposal sizes last/min/max" => {
                let [a, b, c] = split_triple(cmd, "proposal sizes", value)?;
                proposal_sizes = Some(ProposalSizes {
                    last: parse_i64(cmd, "proposal sizes", a)?,
                    min: parse_i64(cmd, "proposal sizes", b)?,
                    max: parse_i64(cmd, "proposal sizes", c)?,
                });
            }
            _ => {}
        }
    }
    let build = required(cmd, "Zookeeper version", build)?;
    Ok(Srvr {
        version: short_version(&build).to_string(),
        build,
        read_only,
        clients,
        latency: required(cmd, "Latency min/avg/max", latency)?,
        received: required(cmd, "Received", received)?,
        sent: required(cmd, "Sent", sent)?,
        connections: required(cmd, "Connections", connections)?,
        outstanding: required(cmd, "Outstanding", outstanding)?,
        zxid: required(cmd, "Zxid", zxid)?,
        mode: required(cmd, "Mode", mode)?,
        node_count: required(cmd, "Node count", node_count)?,
        proposal_sizes,
    })
}

// ---------------------------------------------------------------------------
// cons

/// One client connection from `cons` (or `stat`'s `Clients:`, or the
/// AdminServer's `connections`/`stats`).
#[derive(Debug, Clone, PartialEq)]
pub struct Connection {
    /// Client address. IPv6 is printed bracketed and uncompressed
    /// (`/[0:0:0:0:0:0:0:1]:57718`).
    pub ip: IpAddr,
    pub port: u16,
    /// `[n]`: selector interest ops (1 = OP_READ). The connection asking a
    /// 4lw shows `[0]`.
    pub interest_ops: u32,
    /// `queued`: outstanding requests.
    pub queued: u64,
    /// `recved`: packets received.
    pub recved: u64,
    /// `sent`: packets sent.
    pub sent: u64,
    /// Present when the connection has a session (`cons` only; `stat` never
    /// prints it).
    pub session: Option<Session>,
}

/// The session part of a `cons` line. Field names are the wire keys.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    /// `sid`: session id (hex on the wire).
    pub sid: u64,
    /// `lop`: last operation (`GETD`, `GETC`, `SETD`, `CREA`, `DELE`, `EXIS`, `PING`, `NA`, …).
    pub lop: String,
    /// `est`: established, epoch milliseconds.
    pub est: u64,
    /// `to`: negotiated session time-out, ms.
    pub to: u64,
    /// `lcxid`: last client xid (hex); omitted after `crst` until the next request.
    pub lcxid: Option<u64>,
    /// `lzxid`: last zxid (hex); `None` for `0xffffffffffffffff` (Java's -1,
    /// printed after `crst`).
    pub lzxid: Option<u64>,
    /// `lresp`: last response time, ms on ZooKeeper's **monotonic** clock
    /// (`System.nanoTime()/1e6`), not epoch; 0 after `crst`.
    pub lresp: u64,
    /// `llat`: last latency, ms.
    pub llat: u64,
    /// `minlat`: ms.
    pub minlat: u64,
    /// `avglat`: ms. An integer in 3.8.0 (long division); parsed as a number
    /// so a fractional spelling does not break `cons`.
    pub avglat: f64,
    /// `maxlat`: ms.
    pub maxlat: u64,
}

impl Connection {
    /// True for the connection of a 4lw probe — zkalert's own, or another
    /// tool's in flight: no session and interest ops `[0]`.
    ///
    /// Why this rule: in every `cons`/`stat` capture exactly one line has no
    /// session fields and `[0]`, always `queued=0,recved=1,sent=0` (the one
    /// packet is the four letters), and it is the only connection the asking
    /// probe can be; it appears at any position (hash order), so position is
    /// no rule. Session-less alone is not enough: a client that has connected
    /// but not yet completed its handshake has no session either, but is
    /// readable (`[1]`). The counters are not part of the rule because `crst`
    /// and other tools' probes make them vary. (Captured on the NIO connection
    /// factory, ZooKeeper's default.)
    pub fn is_probe(&self) -> bool {
        self.session.is_none() && self.interest_ops == 0
    }
}

/// The connections that are clients: all but 4lw probes ([`Connection::is_probe`]).
pub fn client_connections(conns: &[Connection]) -> impl Iterator<Item = &Connection> {
    conns.iter().filter(|c| !c.is_probe())
}

/// Connections per client IP, most connections first, then by IP. Pass
/// [`client_connections`] to leave out the probe: `connections_per_ip(&conns)`
/// or `connections_per_ip(client_connections(&conns))`.
pub fn connections_per_ip<'a>(conns: impl IntoIterator<Item = &'a Connection>) -> Vec<(IpAddr, usize)> {
    let mut counts: BTreeMap<IpAddr, usize> = BTreeMap::new();
    for c in conns {
        *counts.entry(c.ip).or_insert(0) += 1;
    }
    let mut out: Vec<(IpAddr, usize)> = counts.into_iter().collect();
    out.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    out
}

/// Parses `cons`: one line per connection (leading space), then an empty
/// line. A lone `\n` is a valid empty list.
pub fn parse_cons(raw: &[u8]) -> Result<Reply<Vec<Connection>>, ParseError> {
    parse_with(raw, |text| {
        numbered_lines(text)
            .filter(|(_, l)| !l.trim().is_empty())
            .filter_map(|(n, l)| parse_connection_line("cons", n, l).transpose())
            .collect()
    })
}

/// Parses a socket address as Java prints it: `/127.0.0.1:60164`,
/// `/[0:0:0:0:0:0:0:1]:57718`, `host/1.2.3.4:5`, `[fe80:0:0:0:0:0:0:1%lo]:5`,
/// also unbracketed `0:0:0:0:0:0:0:1:5` and without the slash.
pub(crate) fn parse_socket_addr(s: &str) -> Option<(IpAddr, u16)> {
    let s = s.trim();
    let s = s.rsplit_once('/').map_or(s, |(_, a)| a);
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some((sa.ip(), sa.port()));
    }
    let (host, port) = s.rsplit_once(':')?;
    let port = port.parse().ok()?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    let host = host.split_once('%').map_or(host, |(h, _)| h); // IPv6 scope (`%lo`, `%2`)
    Some((host.parse().ok()?, port))
}

/// One connection; `None` for one that closed while the server listed it
/// (its address prints as `null`: gone, so not a client).
fn parse_connection_line(cmd: &'static str, n: usize, line: &str) -> Result<Option<Connection>, ParseError> {
    let bad = || ParseError::line(cmd, n, line);
    let s = line.trim();
    let inner = s.strip_suffix(')').ok_or_else(bad)?;
    let (head, body) = inner.split_once('(').ok_or_else(bad)?;
    let (addr, ops) = head.strip_suffix(']').and_then(|h| h.rsplit_once('[')).ok_or_else(bad)?;
    if addr == "null" {
        return Ok(None);
    }
    let (ip, port) = parse_socket_addr(addr).ok_or_else(|| ParseError::invalid(cmd, "client address", addr))?;
    let interest_ops = parse_u32(cmd, "interest ops", ops)?;
    let mut fields: BTreeMap<&str, &str> = BTreeMap::new();
    for kv in body.split(',') {
        let (k, v) = kv.split_once('=').ok_or_else(bad)?;
        fields.insert(k.trim(), v.trim());
    }
    let num = |k: &'static str| -> Result<u64, ParseError> {
        parse_u64(cmd, k, fields.get(k).ok_or(ParseError::Missing { cmd, what: k })?)
    };
    let hex = |k: &'static str| -> Result<Option<u64>, ParseError> {
        fields.get(k).map(|v| parse_zxid(v).ok_or_else(|| ParseError::invalid(cmd, k, v))).transpose()
    };
    let session = match hex("sid")? {
        None => None,
        Some(sid) => Some(Session {
            sid,
            lop: required(cmd, "lop", fields.get("lop"))?.to_string(),
            est: num("est")?,
            to: num("to")?,
            lcxid: hex("lcxid")?,
            // 0xffffffffffffffff (Java's -1) is "none".
            lzxid: Some(required(cmd, "lzxid", hex("lzxid")?)?).filter(|z| *z != u64::MAX),
            lresp: num("lresp")?,
            llat: num("llat")?,
            minlat: num("minlat")?,
            avglat: parse_f64(cmd, "avglat", required(cmd, "avglat", fields.get("avglat"))?)?,
            maxlat: num("maxlat")?,
        }),
    };
    Ok(Some(Connection {
        ip,
        port,
        interest_ops,
        queued: num("queued")?,
        recved: num("recved")?,
        sent: num("sent")?,
        session,
    }))
}

// ---------------------------------------------------------------------------
// conf

/// A `server.N` role, and `peerType` (0 participant, 1 observer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LearnerType {
    /// A voter.
    Participant,
    /// A non-voting member.
    Observer,
}

/// One `server.N=host:peer:election:participant|observer[;clientaddr]` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerEntry {
    pub id: u64,
    /// Host as printed (IPv6 without brackets). With several addresses
    /// (`a:1:2|b:1:2:participant`) the first one; the raw map has the line.
    pub host: String,
    /// Quorum (peer) port; only the leader listens on it.
    pub peer_port: u16,
    pub election_port: u16,
    pub role: LearnerType,
    /// The `;clientaddr` part, if configured (`127.0.0.1:21811` or `21811`).
    pub client_addr: Option<String>,
}

/// `conf`. Standalone prints only the first block (up to `serverId=0`);
/// quorum members add limits, ports, `peerType`, a `membership: ` line
/// (trailing space), `server.N` lines and `version=<hex>` without a newline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conf {
    /// `clientPort`; `None` when printed as -1 (no plain-text port).
    pub client_port: Option<u16>,
    /// `secureClientPort`; `None` when -1.
    pub secure_client_port: Option<u16>,
    /// `dataDir` (with `/version-2` appended by ZooKeeper).
    pub data_dir: String,
    /// `dataDirSize` bytes — includes the 64 MiB preallocated txn log.
    pub data_dir_size: Option<u64>,
    /// `dataLogDir` (with `/version-2`).
    pub data_log_dir: String,
    /// `dataLogSize` bytes.
    pub data_log_size: Option<u64>,
    /// `tickTime` ms.
    pub tick_time: u32,
    /// `maxClientCnxns` per client IP (0 = unlimited).
    pub max_client_cnxns: u32,
    /// `minSessionTimeout` ms.
    pub min_session_timeout: u32,
    /// `maxSessionTimeout` ms.
    pub max_session_timeout: u32,
    /// `serverId` (`myid`; 0 on standalone).
    pub server_id: u64,
    /// `initLimit` ticks (quorum members only).
    pub init_limit: Option<u32>,
    /// `syncLimit` ticks (quorum members only).
    pub sync_limit: Option<u32>,
    /// `electionAlg` (3).
    pub election_alg: Option<u32>,
    /// `peerType` of this node.
    pub peer_type: Option<LearnerType>,
    /// `server.N` lines, in printed order. Empty on standalone — and on a
    /// read-only server, whose `conf` stops after `peerType`.
    pub servers: Vec<ServerEntry>,
    /// `version=` of the dynamic configuration (hex, a zxid).
    pub config_version: Option<u64>,
    /// Every `key=value` line as printed (including `server.N` and `version`).
    pub raw: BTreeMap<String, String>,
}

impl Conf {
    /// Number of `server.N` participants.
    pub fn voters(&self) -> usize {
        self.servers.iter().filter(|s| s.role == LearnerType::Participant).count()
    }

    /// Number of `server.N` observers.
    pub fn observers(&self) -> usize {
        self.servers.iter().filter(|s| s.role == LearnerType::Observer).count()
    }
}

/// Parses `conf` (see [`Conf`]). Lines without `=` (`membership: `) are skipped.
pub fn parse_conf(raw: &[u8]) -> Result<Reply<Conf>, ParseError> {
    parse_with(raw, conf_text)
}

fn parse_port(cmd: &'static str, what: &'static str, v: &str) -> Result<Option<u16>, ParseError> {
    match v.trim() {
        "-1" => Ok(None),
        p => p.parse().map(Some).map_err(|_| ParseError::invalid(cmd, what, v)),
    }
}

fn parse_server_entry(id: u64, v: &str) -> Option<ServerEntry> {
    let (main, client) = match v.split_once(';') {
        Some((m, c)) => (m, Some(c.trim()).filter(|c| !c.is_empty()).map(str::to_string)),
        None => (v.trim(), None),
    };
    let (addrs, role) = match main.rsplit_once(':') {
        Some((a, "participant")) => (a, LearnerType::Participant),
        Some((a, "observer")) => (a, LearnerType::Observer),
        // No type printed: ZooKeeper's default is participant.
        Some((_, last)) if !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()) => {
            (main, LearnerType::Participant)
        }
        _ => return None,
    };
    let first = addrs.split('|').next()?;
    let (rest, election) = first.rsplit_once(':')?;
    let (host, peer) = rest.rsplit_once(':')?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    if host.is_empty() {
        return None;
    }
    Some(ServerEntry {
        id,
        host: host.to_string(),
        peer_port: peer.parse().ok()?,
        election_port: election.parse().ok()?,
        role,
        client_addr: client,
    })
}

fn conf_text(text: &str) -> Result<Conf, ParseError> {
    const CMD: &str = "conf";
    let mut raw = BTreeMap::new();
    let mut servers = Vec::new();
    for (_, line) in numbered_lines(text) {
        let Some((k, v)) = line.split_once('=') else {
            continue; // `membership: `, blank lines
        };
        let k = k.trim();
        if let Some(id) = k.strip_prefix("server.") {
            let id = parse_u64(CMD, "server id", id)?;
            servers.push(parse_server_entry(id, v).ok_or_else(|| ParseError::invalid(CMD, "server line", line))?);
        }
        raw.insert(k.to_string(), v.to_string());
    }
    let get = |k: &'static str| raw.get(k).map(String::as_str);
    let req = |k: &'static str| required(CMD, k, get(k));
    let opt_u32 = |k: &'static str| get(k).map(|v| parse_u32(CMD, k, v)).transpose();
    let opt_u64 = |k: &'static str| get(k).map(|v| parse_u64(CMD, k, v)).transpose();
    let peer_type = match get("peerType").map(str::trim) {
        None => None,
        Some("0") => Some(LearnerType::Participant),
        Some("1") => Some(LearnerType::Observer),
        Some(other) => return Err(ParseError::invalid(CMD, "peerType", other)),
    };
    Ok(Conf {
        client_port: parse_port(CMD, "clientPort", req("clientPort")?)?,
        secure_client_port: get("secureClientPort")
            .map(|v| parse_port(CMD, "secureClientPort", v))
            .transpose()?
            .flatten(),
        data_dir: req("dataDir")?.to_string(),
        data_dir_size: opt_u64("dataDirSize")?,
        data_log_dir: req("dataLogDir")?.to_string(),
        data_log_size: opt_u64("dataLogSize")?,
        tick_time: parse_u32(CMD, "tickTime", req("tickTime")?)?,
        max_client_cnxns: parse_u32(CMD, "maxClientCnxns", req("maxClientCnxns")?)?,
        min_session_timeout: parse_u32(CMD, "minSessionTimeout", req("minSessionTimeout")?)?,
        max_session_timeout: parse_u32(CMD, "maxSessionTimeout", req("maxSessionTimeout")?)?,
        server_id: parse_u64(CMD, "serverId", req("serverId")?)?,
        init_limit: opt_u32("initLimit")?,
        sync_limit: opt_u32("syncLimit")?,
        election_alg: opt_u32("electionAlg")?,
        peer_type,
        config_version: get("version")
            .map(|v| parse_zxid(v).ok_or_else(|| ParseError::invalid(CMD, "version", v)))
            .transpose()?,
        servers,
        raw,
    })
}

// ---------------------------------------------------------------------------
// envi

/// `envi`: the JVM environment. Works even when the node is not serving.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envi {
    /// Short version from `zookeeper.version` (`3.8.0`).
    pub version: String,
    /// Full `zookeeper.version`.
    pub build: String,
    /// `host.name`.
    pub host_name: Option<String>,
    /// `java.version`.
    pub java_version: Option<String>,
    /// `os.memory.free` in bytes (printed in whole MiB: `14MB`).
    pub memory_free: Option<u64>,
    /// `os.memory.max` in bytes (the heap limit, `-Xmx`).
    pub memory_max: Option<u64>,
    /// `os.memory.total` in bytes (heap committed).
    pub memory_total: Option<u64>,
    /// Every `key=value` line.
    pub raw: BTreeMap<String, String>,
}

impl Envi {
    /// Heap in use: `os.memory.total - os.memory.free` (MiB granularity).
    pub fn heap_used(&self) -> Option<u64> {
        Some(self.memory_total?.saturating_sub(self.memory_free?))
    }
}

/// Parses a JVM memory figure as `envi` prints it (`14MB`: whole MiB, Java's
/// `bytes / (1024*1024) + "MB"`) into bytes. `B`, `KB`, `GB`, `TB` (binary
/// multiples) are accepted too; overflow is `None`.
pub fn parse_memory(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at_checked(split)?;
    let n: u64 = digits.parse().ok()?;
    let mult: u64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" => 1 << 10,
        "M" | "MB" => 1 << 20,
        "G" | "GB" => 1 << 30,
        "T" | "TB" => 1 << 40,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// Parses `envi`: an `Environment:` line, then `key=value` lines.
pub fn parse_envi(raw: &[u8]) -> Result<Reply<Envi>, ParseError> {
    parse_with(raw, |text| {
        const CMD: &str = "envi";
        let map: BTreeMap<String, String> = numbered_lines(text)
            .filter_map(|(_, l)| l.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.to_string()))
            .collect();
        let build = required(CMD, "zookeeper.version", map.get("zookeeper.version"))?.trim().to_string();
        let memory = |k: &'static str| -> Result<Option<u64>, ParseError> {
            map.get(k).map(|v| parse_memory(v).ok_or_else(|| ParseError::invalid(CMD, k, v))).transpose()
        };
        Ok(Envi {
            version: short_version(&build).to_string(),
            build,
            host_name: map.get("host.name").cloned(),
            java_version: map.get("java.version").cloned(),
            memory_free: memory("os.memory.free")?,
            memory_max: memory("os.memory.max")?,
            memory_total: memory("os.memory.total")?,
            raw: map,
        })
    })
}

// ---------------------------------------------------------------------------
// short replies

/// Parses `ruok`: `true` for `imok` (no newline), `false` for any other text.
/// `imok` is liveness only: a node without quorum still says it.
pub fn parse_ruok(raw: &[u8]) -> Result<Reply<bool>, ParseError> {
    parse_with(raw, |t| Ok(t.trim() == "imok"))
}

/// `isro`'s answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Isro {
    /// `rw`.
    ReadWrite,
    /// `ro`: read-only mode (`readonlymode.enabled=true`, quorum lost).
    ReadOnly,
    /// `null`: not serving. `isro` never sends the [`NOT_SERVING`] sentence;
    /// this is its way of saying it (kept as a value so the parse is lossless).
    NotServing,
}

/// Parses `isro`: `rw`, `ro` or `null`, no newline.
pub fn parse_isro(raw: &[u8]) -> Result<Reply<Isro>, ParseError> {
    parse_with(raw, |t| match t.trim() {
        "rw" => Ok(Isro::ReadWrite),
        "ro" => Ok(Isro::ReadOnly),
        "null" => Ok(Isro::NotServing),
        other => Err(ParseError::invalid("isro", "answer", other)),
    })
}

/// Parses `gtmk`: the trace mask in decimal (`306`), no newline.
pub fn parse_gtmk(raw: &[u8]) -> Result<Reply<u64>, ParseError> {
    parse_with(raw, |t| parse_u64("gtmk", "trace mask", t))
}

/// Parses the acknowledgement of `crst` (`Connection stats reset.`) or
/// `srst` (`Server stats reset.`).
pub fn parse_reset(raw: &[u8]) -> Result<Reply<()>, ParseError> {
    parse_with(raw, |t| match t.trim() {
        "Connection stats reset." | "Server stats reset." => Ok(()),
        other => Err(ParseError::invalid("crst/srst", "acknowledgement", other)),
    })
}

/// `dirs`, in bytes (the data size includes the 64 MiB preallocated txn log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dirs {
    pub datadir_size: u64,
    pub logdir_size: u64,
}

/// Parses `dirs`: `datadir_size: <bytes>\nlogdir_size: <bytes>\n`.
pub fn parse_dirs(raw: &[u8]) -> Result<Reply<Dirs>, ParseError> {
    parse_with(raw, |text| {
        const CMD: &str = "dirs";
        let (mut data, mut log) = (None, None);
        for (_, line) in numbered_lines(text) {
            match line.split_once(':') {
                Some(("datadir_size", v)) => data = Some(parse_u64(CMD, "datadir_size", v)?),
                Some(("logdir_size", v)) => log = Some(parse_u64(CMD, "logdir_size", v)?),
                _ => {}
            }
        }
        Ok(Dirs { datadir_size: required(CMD, "datadir_size", data)?, logdir_size: required(CMD, "logdir_size", log)? })
    })
}

/// `wchs`: watch summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wchs {
    pub connections: u64,
    pub paths: u64,
    pub total_watches: u64,
}

/// Parses `wchs`: `2 connections watching 109 paths\nTotal watches:120\n`.
pub fn parse_wchs(raw: &[u8]) -> Result<Reply<Wchs>, ParseError> {
    parse_with(raw, |text| {
        const CMD: &str = "wchs";
        let (mut counts, mut total) = (None, None);
        for (_, line) in numbered_lines(text) {
            let words: Vec<&str> = line.split_whitespace().collect();
            if let [c, "connections", "watching", p, "paths"] = words.as_slice() {
                counts = Some((parse_u64(CMD, "connections", c)?, parse_u64(CMD, "paths", p)?));
            } else if let Some(v) = line.strip_prefix("Total watches:") {
                total = Some(parse_u64(CMD, "total watches", v)?);
            }
        }
        let (connections, paths) = required(CMD, "connections/paths line", counts)?;
        Ok(Wchs { connections, paths, total_watches: required(CMD, "Total watches", total)? })
    })
}

/// One `hash` line: the data-tree digest at a zxid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digest {
    pub zxid: u64,
    pub digest: u64,
}

/// Parses `hash`: `<zxid hex without 0x>: <digest decimal>` lines (one per
/// 128 txns). Zero bytes — [`Reply::Empty`] — is also what a server with
/// fewer than 128 txns sends.
pub fn parse_hash(raw: &[u8]) -> Result<Reply<Vec<Digest>>, ParseError> {
    parse_with(raw, |text| {
        numbered_lines(text)
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(n, line)| {
                let (z, d) = line.split_once(':').ok_or_else(|| ParseError::line("hash", n, line))?;
                Ok(Digest {
                    zxid: parse_zxid(z).ok_or_else(|| ParseError::invalid("hash", "zxid", z))?,
                    digest: parse_u64("hash", "digest", d)?,
                })
            })
            .collect()
    })
}

/// Decodes a reply whose content zkalert does not interpret (`dump`, `wchc`,
/// `wchp`, which can be huge): classified, lossy UTF-8.
pub fn parse_text(raw: &[u8]) -> Reply<Cow<'_, str>> {
    classify(raw).map(String::from_utf8_lossy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn classify_states() {
        assert_eq!(classify(b""), Reply::Empty);
        assert_eq!(classify(b"This ZooKeeper instance is not currently serving requests\n"), Reply::NotServing);
        assert_eq!(classify(b"This ZooKeeper instance is not currently serving requests"), Reply::NotServing);
        assert_eq!(classify(b"mntr is not executed because it is not in the whitelist.\n"), Reply::NotWhitelisted);
        assert_eq!(classify(b"isro is not executed because it is not in the whitelist."), Reply::NotWhitelisted);
        // Not a single word before the suffix: not the whitelist message.
        assert!(classify(b"a b is not executed because it is not in the whitelist.").is_ok());
        assert!(classify(b" is not executed because it is not in the whitelist.").is_ok());
        assert_eq!(classify(b"\n"), Reply::Ok(&b"\n"[..]));
        assert_eq!(classify(b"imok"), Reply::Ok(&b"imok"[..]));
        // The sentence inside a longer reply is content, not a state.
        assert!(classify(b"zk_x\t1\nThis ZooKeeper instance is not currently serving requests\n").is_ok());
    }

    #[test]
    fn states_are_not_zeros() {
        for raw in [&b""[..], b"This ZooKeeper instance is not currently serving requests\n"] {
            assert!(parse_mntr(raw).unwrap().ok().is_none());
            assert!(parse_srvr(raw).unwrap().ok().is_none());
            assert!(parse_cons(raw).unwrap().ok().is_none());
        }
        assert_eq!(parse_hash(b"This ZooKeeper instance is not currently serving requests"), Ok(Reply::NotServing));
    }

    #[test]
    fn java_numbers() {
        for (s, v) in [
            ("0", 0.0),
            ("-1", -1.0),
            ("3.6617", 3.6617),
            ("1981.0", 1981.0),
            ("1.0E-4", 1.0e-4),
            ("1.2E7", 1.2e7),
            ("-2.5E+3", -2500.0),
            (" 42 ", 42.0),
            ("9223372036854775807", 9.223_372_036_854_776e18),
        ] {
            assert_eq!(parse_java_number(s), Some(v), "{s}");
        }
        assert!(parse_java_number("NaN").is_some_and(f64::is_nan));
        assert_eq!(parse_java_number("-Infinity"), Some(f64::NEG_INFINITY));
        for s in
            ["", "-", ".", "E5", "1E", "1e+", "inf", "infinity", "nan", "0x10", "1,5", "12MB", "1.2.3", "--1", "leader"]
        {
            assert_eq!(parse_java_number(s), None, "{s}");
        }
    }

    #[test]
    fn mntr_tricky_values() {
        let raw = b"zk_version\t3.8.0-${mvngit.commit.id}, built on 2024-12-29 17:54 UTC\n\
zk_server_state\tleader\nzk_peer_state\tleading - broadcast\nzk_avg_latency\t1.0E-4\n\
zk_min_client_response_size\t-1\nzk_avg_x\t3.6617\nzk_sum_zkalert_write_per_namespace\t12\n\
zk_avg_3_ack_latency\t0.0\nzk_last_one\t7";
        let m = parse_mntr(raw).unwrap().ok().unwrap();
        assert_eq!(m.get("zk_avg_latency"), Some(1.0e-4));
        assert_eq!(m.get("zk_min_client_response_size"), Some(-1.0));
        assert_eq!(m.get("zk_avg_x"), Some(3.6617));
        assert_eq!(m.get("zk_sum_zkalert_write_per_namespace"), Some(12.0));
        assert_eq!(m.get("zk_avg_3_ack_latency"), Some(0.0));
        assert_eq!(m.get("zk_last_one"), Some(7.0), "no trailing newline");
        assert_eq!(m.string("zk_peer_state"), Some("leading - broadcast"));
        assert_eq!(m.version(), Some("3.8.0"));
        assert_eq!(m.server_state(), Some(Mode::Leader));
        assert_eq!((m.number_count(), m.string_count()), (6, 3));
        assert_eq!(m.get("zk_server_state"), None);
    }

    #[test]
    fn mntr_string_keys_stay_strings_even_if_numeric() {
        let m = parse_mntr(b"zk_version\t3\nzk_x\t1\n").unwrap().ok().unwrap();
        assert_eq!(m.string("zk_version"), Some("3"));
        assert_eq!(m.get("zk_version"), None);
    }

    #[test]
    fn mntr_rejects_other_shapes() {
        assert!(parse_mntr(b"\n").is_err(), "no metric");
        assert!(parse_mntr(b"zk_x\t1\nzk_trunc").is_err(), "truncated line");
        assert!(parse_mntr(b"Zookeeper version: 3.8.0\nMode: leader\n").is_err(), "srvr is not mntr");
        assert!(parse_mntr(b"zk_\t1\n").is_err());
        // Windows line ends and a space separator are tolerated.
        let m = parse_mntr(b"zk_a 1\r\nzk_b\t\t2\r\n").unwrap().ok().unwrap();
        assert_eq!((m.get("zk_a"), m.get("zk_b")), (Some(1.0), Some(2.0)));
    }

    #[test]
    fn zxid_spellings() {
        assert_eq!(parse_zxid("0x100000344"), Some(0x1_0000_0344));
        assert_eq!(parse_zxid("0x0"), Some(0));
        assert_eq!(parse_zxid("0xffffffffffffffff"), Some(u64::MAX));
        assert_eq!(parse_zxid("100000080"), Some(0x1_0000_0080));
        assert_eq!(parse_zxid("\"0x10000037c\""), Some(0x1_0000_037c));
        assert_eq!(parse_zxid("\"100000000\""), Some(1 << 32));
        assert_eq!(parse_zxid(" 0X1A "), Some(0x1a));
        for bad in ["", "0x", "0x-1", "+5", "-1", "0x1g", "0x10000000000000000", "\"", "0x 1", "1_0"] {
            assert_eq!(parse_zxid(bad), None, "{bad}");
        }
        let z = 0x1_0000_0344;
        assert_eq!((epoch(z), counter(z)), (1, 0x344));
        assert_eq!((epoch(u64::MAX), counter(u64::MAX)), (u32::MAX, u32::MAX));
    }

    #[test]
    fn versions() {
        assert_eq!(short_version("3.8.0-${mvngit.commit.id}, built on 2024-12-29 17:54 UTC"), "3.8.0");
        assert_eq!(short_version("3.9.2, built on x"), "3.9.2");
        assert_eq!(short_version("3.7.1"), "3.7.1");
        assert_eq!(short_version(""), "");
    }

    const LEADER_SRVR: &[u8] = b"Zookeeper version: 3.8.0-${mvngit.commit.id}, built on 2024-12-29 17:54 UTC
Latency min/avg/max: 0/2.6683/65
Received: 1045
Sent: 1547
Connections: 3
Outstanding: 0
Zxid: 0x100000344
Mode: leader
Node count: 459
Proposal sizes last/min/max: 174/48/16480
";

    #[test]
    fn srvr_leader() {
        let s = parse_srvr(LEADER_SRVR).unwrap().ok().unwrap();
        assert_eq!(s.version, "3.8.0");
        assert_eq!(s.latency, Latency { min: 0, avg: 2.6683, max: 65 });
        assert_eq!((s.received, s.sent, s.connections, s.outstanding, s.node_count), (1045, 1547, 3, 0, 459));
        assert_eq!((s.zxid, s.epoch(), s.counter()), (0x1_0000_0344, 1, 0x344));
        assert_eq!(s.mode, Mode::Leader);
        assert_eq!(s.proposal_sizes, Some(ProposalSizes { last: 174, min: 48, max: 16480 }));
        assert!(!s.read_only && s.clients.is_none());
    }

    #[test]
    fn srvr_truncated_is_an_error() {
        // A prefix parses only once every required line is in, i.e. from the
        // first digit of `Node count:` on (a cut number is undetectable).
        let text = std::str::from_utf8(LEADER_SRVR).unwrap();
        let first_ok = text.find("Node count: ").unwrap() + "Node count: ".len() + 1;
        for cut in 0..LEADER_SRVR.len() {
            let parsed = parse_srvr(&LEADER_SRVR[..cut]);
            assert_eq!(matches!(parsed, Ok(Reply::Ok(_))), cut >= first_ok && partial_line_ok(text, cut), "cut {cut}");
        }
    }

    /// Whether the last (partial) line of `text[..cut]` still parses: any line
    /// but a `Proposal sizes` line cut after its colon and before its third number.
    fn partial_line_ok(text: &str, cut: usize) -> bool {
        let last = text[..cut].rsplit('\n').next().unwrap();
        match last.split_once(':') {
            Some((k, v)) if k.starts_with("Proposal") => {
                let parts: Vec<&str> = v.trim().split('/').collect();
                parts.len() == 3 && parts.iter().all(|p| !p.is_empty())
            }
            _ => true,
        }
    }

    #[test]
    fn stat_read_only_with_clients() {
        let raw = b"Zookeeper version: 3.8.0-x, built on y
READ-ONLY mode; serving only read-only clients
Clients:
 /127.0.0.1:52750[0](queued=0,recved=1,sent=0)
 /[0:0:0:0:0:0:0:1]:57718[1](queued=0,recved=4,sent=4)

Latency min/avg/max: 0/1.0E-4/0
Received: 3
Sent: 2
Connections: 1
Outstanding: 0
Zxid: 0x0
Mode: read-only
Node count: 5
";
        let s = parse_stat(raw).unwrap().ok().unwrap();
        assert!(s.read_only);
        assert_eq!(s.mode, Mode::ReadOnly);
        assert_eq!(s.latency.avg, 1.0e-4);
        let clients = s.clients.unwrap();
        assert_eq!(clients.len(), 2);
        assert!(clients[0].is_probe() && !clients[1].is_probe());
        assert_eq!(clients[1].ip, IpAddr::V6(Ipv6Addr::LOCALHOST));
    }

    #[test]
    fn cons_lines() {
        let raw = b" /127.0.0.1:60164[1](queued=0,recved=0,sent=2,sid=0x30000163eb10001,lop=NA,est=1795622323247,to=10000,lzxid=0xffffffffffffffff,lresp=0,llat=0,minlat=0,avglat=0,maxlat=0)
 /127.0.0.1:60154[1](queued=0,recved=539,sent=812,sid=0x30000163eb10000,lop=GETC,est=1795622322154,to=10000,lcxid=0x21a,lzxid=0x100000340,lresp=1479053,llat=2,minlat=0,avglat=2,maxlat=62)
 /[fe80:0:0:0:0:0:0:1%lo]:41554[0](queued=0,recved=1,sent=0)
 localhost/127.0.0.1:1[1](queued=0,recved=0,sent=0)
 null[0](queued=0,recved=1,sent=1)

";
        // `null`: a connection that closed as `cons` listed it (seen with a
        // thousand sessions on a real 3.8 node): not a client.
        let c = parse_cons(raw).unwrap().ok().unwrap();
        assert_eq!(c.len(), 4);
        let s0 = c[0].session.as_ref().unwrap();
        assert_eq!((s0.sid, s0.lop.as_str(), s0.lcxid, s0.lzxid, s0.lresp), (0x30000163eb10001, "NA", None, None, 0));
        let s1 = c[1].session.as_ref().unwrap();
        assert_eq!((s1.lcxid, s1.lzxid, s1.maxlat, s1.avglat), (Some(0x21a), Some(0x1_0000_0340), 62, 2.0));
        assert_eq!(c[2].ip, "fe80::1".parse::<IpAddr>().unwrap());
        assert!(c[2].is_probe());
        assert_eq!((c[3].ip, c[3].port), (IpAddr::V4(Ipv4Addr::LOCALHOST), 1));
        assert_eq!(client_connections(&c).count(), 3);
        assert_eq!(parse_cons(b"\n"), Ok(Reply::Ok(vec![])));
    }

    #[test]
    fn cons_rejects_broken_lines() {
        for bad in [
            &b" /127.0.0.1:1[1](queued=0,recved=1)\n"[..], // sent missing
            b" /127.0.0.1:1[1](queued=0,recved=1,sent=0\n",
            b" /127.0.0.1[1](queued=0,recved=1,sent=0)\n",
            b" /127.0.0.1:1(queued=0,recved=1,sent=0)\n",
            b" /127.0.0.1:1[x](queued=0,recved=1,sent=0)\n",
            b" /127.0.0.1:1[1](queued=0,recved=1,sent=0,sid=0x1)\n", // session without its fields
            b" /127.0.0.1:1[1](queued=0,recved=1,sent=0,sid=zz,lop=NA)\n",
        ] {
            assert!(parse_cons(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn per_ip_counts() {
        let conn = |ip: &str, ops| Connection {
            ip: ip.parse().unwrap(),
            port: 1,
            interest_ops: ops,
            queued: 0,
            recved: 0,
            sent: 0,
            session: None,
        };
        let conns =
            [conn("10.0.0.2", 1), conn("10.0.0.1", 1), conn("::1", 1), conn("10.0.0.2", 1), conn("10.0.0.3", 0)];
        let all = connections_per_ip(&conns);
        assert_eq!(all[0], ("10.0.0.2".parse().unwrap(), 2));
        assert_eq!(all[1], ("10.0.0.1".parse().unwrap(), 1));
        assert_eq!(all[2], ("10.0.0.3".parse().unwrap(), 1));
        assert_eq!(all[3], ("::1".parse().unwrap(), 1));
        assert_eq!(connections_per_ip(client_connections(&conns)).len(), 3);
    }

    #[test]
    fn conf_quirks() {
        let raw = b"clientPort=-1\nsecureClientPort=2281\ndataDir=/d/version-2\ndataLogDir=/l/version-2\n\
tickTime=2000\nmaxClientCnxns=0\nminSessionTimeout=4000\nmaxSessionTimeout=40000\nserverId=2\n\
initLimit=10\nsyncLimit=5\npeerType=1\nmembership: \n\
server.1=127.0.0.1:22881:23881:participant;127.0.0.1:21811\n\
server.2=[0:0:0:0:0:0:0:1]:22882:23882:observer\n\
server.3=a:1:2|b:3:4:participant;2181\n\
server.4=h:5:6\n\
version=100000000";
        let c = parse_conf(raw).unwrap().ok().unwrap();
        assert_eq!((c.client_port, c.secure_client_port), (None, Some(2281)));
        assert_eq!((c.init_limit, c.sync_limit, c.peer_type), (Some(10), Some(5), Some(LearnerType::Observer)));
        assert_eq!(c.config_version, Some(1 << 32), "dynamic config version is hex");
        assert_eq!(c.servers.len(), 4);
        assert_eq!(c.servers[0].client_addr.as_deref(), Some("127.0.0.1:21811"));
        assert_eq!((c.servers[1].host.as_str(), c.servers[1].role), ("0:0:0:0:0:0:0:1", LearnerType::Observer));
        assert_eq!((c.servers[2].host.as_str(), c.servers[2].peer_port, c.servers[2].election_port), ("a", 1, 2));
        assert_eq!(c.servers[3].role, LearnerType::Participant);
        assert_eq!((c.voters(), c.observers()), (3, 1));
        assert_eq!(c.raw.get("version").map(String::as_str), Some("100000000"));
        assert!(parse_conf(b"clientPort=1\n").is_err(), "required keys");
        assert!(parse_conf(b"server.x=a:1:2:participant\n").is_err());
    }

    #[test]
    fn memory_units() {
        assert_eq!(parse_memory("14MB"), Some(14 * 1024 * 1024));
        assert_eq!(parse_memory("0MB"), Some(0));
        assert_eq!(parse_memory("2GB"), Some(2 << 30));
        assert_eq!(parse_memory("512"), Some(512));
        assert_eq!(parse_memory("99999999999999999MB"), None, "overflow");
        for bad in ["", "MB", "1.5MB", "-1MB", "12XB"] {
            assert_eq!(parse_memory(bad), None, "{bad}");
        }
    }

    #[test]
    fn short_replies() {
        assert_eq!(parse_ruok(b"imok"), Ok(Reply::Ok(true)));
        assert_eq!(parse_ruok(b"huh"), Ok(Reply::Ok(false)));
        assert_eq!(parse_ruok(b""), Ok(Reply::Empty));
        assert_eq!(parse_isro(b"null"), Ok(Reply::Ok(Isro::NotServing)));
        assert_eq!(parse_isro(b"ro"), Ok(Reply::Ok(Isro::ReadOnly)));
        assert!(parse_isro(b"maybe").is_err());
        assert_eq!(parse_gtmk(b"306"), Ok(Reply::Ok(306)));
        assert_eq!(parse_reset(b"Server stats reset.\n"), Ok(Reply::Ok(())));
        assert_eq!(
            parse_dirs(b"datadir_size: 5\nlogdir_size: 6\n"),
            Ok(Reply::Ok(Dirs { datadir_size: 5, logdir_size: 6 }))
        );
        assert_eq!(
            parse_wchs(b"2 connections watching 109 paths\nTotal watches:120\n"),
            Ok(Reply::Ok(Wchs { connections: 2, paths: 109, total_watches: 120 }))
        );
        assert_eq!(
            parse_hash(b"80: 269083976789\n100: 5\n"),
            Ok(Reply::Ok(vec![Digest { zxid: 0x80, digest: 269_083_976_789 }, Digest { zxid: 0x100, digest: 5 }]))
        );
    }

    proptest::proptest! {
        #[test]
        fn zxid_round_trips(z in proptest::prelude::any::<u64>()) {
            proptest::prop_assert_eq!(parse_zxid(&format!("0x{z:x}")), Some(z));
            proptest::prop_assert_eq!(parse_zxid(&format!("{z:x}")), Some(z));
            proptest::prop_assert_eq!(parse_zxid(&format!("\"0x{z:X}\"")), Some(z));
            proptest::prop_assert_eq!((u64::from(epoch(z)) << 32) | u64::from(counter(z)), z);
        }

        #[test]
        fn java_doubles_round_trip(v in proptest::prelude::any::<f64>()) {
            // Rust's `{:?}` / `{:e}` spellings are a superset of Java's digits-and-E forms.
            let spelled = format!("{v:E}");
            if v.is_finite() {
                proptest::prop_assert_eq!(parse_java_number(&spelled), Some(v));
            }
        }
    }
}
