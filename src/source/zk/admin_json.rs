//! Sources → store → rules…: the first stage, AdminServer side. When the
//! ZooKeeper poller reads a node's AdminServer (Jetty on `admin.serverPort`,
//! `GET /commands/<name>`) instead of four-letter words, these parsers turn
//! each reply (HTTP status + body) into the same typed values as
//! [`super::parse`] ([`Mntr`], [`Srvr`], [`Connection`]s, [`Isro`]) wrapped in
//! the same [`Reply`] states, for the poller to convert to samples.
//!
//! How the AdminServer (3.8.0) differs from the 4lw port:
//! * replies are Jackson-pretty-printed JSON objects ending with `"command"`
//!   and `"error"`; errors are HTTP **200** with an `"error"` string —
//!   [`NOT_SERVING`] on a peer without quorum, `Unknown command: …`,
//!   `server is not initialized` (`leader` on standalone/read-only);
//! * except `/commands/monitor` on a peer without quorum: **HTTP 500**,
//!   `text/html`, a Jetty error page for a `NullPointerException`
//!   (`"zkServer" is null`) — [`parse_monitor`] reads that as
//!   [`Reply::NotServing`];
//! * `ruok` says "not serving" there too (4lw `ruok` says `imok`);
//! * the 4lw whitelist does not apply, so there is no
//!   [`Reply::NotWhitelisted`]; `monitor` works where `mntr` is blocked;
//! * numbers are typed JSON and zxids decimal numbers ([`zxid_from_json`]);
//! * [`Reply::Empty`] is a 2xx reply with an empty body.

use serde_json::{Map, Value};

use super::parse::{
    Connection, Isro, Latency, Mntr, Mode, NOT_SERVING, ParseError, ProposalSizes, Reply, Session, Srvr,
    parse_socket_addr, parse_zxid, short_version,
};

/// The `"error"` of `leader` on a server that is not a quorum peer
/// (standalone, read-only).
pub const NOT_INITIALIZED: &str = "server is not initialized";

/// An AdminServer reply that is none of the [`Reply`] states and not the
/// command's format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    /// A non-2xx status that is not the known "not serving" page.
    #[error("AdminServer replied HTTP {status}: {snippet:?}")]
    Http { status: u16, snippet: String },
    /// The body is not a JSON object.
    #[error("AdminServer reply is not a JSON object: {0}")]
    Json(String),
    /// `"error": "Unknown command: <name>"` (carries the name).
    #[error("AdminServer does not know the command {0:?}")]
    UnknownCommand(String),
    /// Any other `"error"` string, e.g. [`NOT_INITIALIZED`].
    #[error("AdminServer command failed: {0}")]
    Command(String),
    /// A field is missing or has the wrong shape.
    #[error(transparent)]
    Parse(#[from] ParseError),
}

/// At most 80 characters of the body, for error messages.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out: String = text.chars().take(80).collect();
    if text.chars().nth(80).is_some() {
        out.push('…');
    }
    out
}

/// Whether a non-2xx reply is Jetty's error page for the `monitor` command
/// on a peer without a ZooKeeperServer (quorum lost): HTTP 500 with a
/// `NullPointerException` about `zkServer` (JDK 14+ helpful message) or from
/// `MonitorCommand` (stack trace, older JDKs).
fn is_not_serving_page(status: u16, body: &[u8]) -> bool {
    let text = String::from_utf8_lossy(body);
    status == 500
        && text.contains("NullPointerException")
        && (text.contains("zkServer") || text.contains("MonitorCommand"))
}

/// Classifies any `/commands/*` reply into a [`Reply`] of its JSON object:
/// * 2xx, empty body → [`Reply::Empty`];
/// * 2xx, `"error": null` or absent → [`Reply::Ok`];
/// * 2xx, `"error": "This ZooKeeper instance is not currently serving requests"`,
///   or the HTTP 500 `NullPointerException` page of `monitor` → [`Reply::NotServing`];
/// * 2xx, `"error": "Unknown command: x"` → [`AdminError::UnknownCommand`];
///   another error string → [`AdminError::Command`];
/// * any other status → [`AdminError::Http`].
pub fn parse_envelope(status: u16, body: &[u8]) -> Result<Reply<Map<String, Value>>, AdminError> {
    if !(200..300).contains(&status) {
        if is_not_serving_page(status, body) {
            return Ok(Reply::NotServing);
        }
        return Err(AdminError::Http { status, snippet: snippet(body) });
    }
    if body.trim_ascii().is_empty() {
        return Ok(Reply::Empty);
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| AdminError::Json(e.to_string()))?;
    let Value::Object(map) = value else {
        return Err(AdminError::Json(format!("expected an object, got {}", snippet(body))));
    };
    match map.get("error") {
        None | Some(Value::Null) => Ok(Reply::Ok(map)),
        Some(Value::String(e)) if e.trim() == NOT_SERVING => Ok(Reply::NotServing),
        Some(Value::String(e)) => match e.strip_prefix("Unknown command:") {
            Some(name) => Err(AdminError::UnknownCommand(name.trim().to_string())),
            None => Err(AdminError::Command(e.clone())),
        },
        Some(other) => Err(AdminError::Json(format!("unexpected \"error\": {other}"))),
    }
}

/// A zxid from a JSON value: a number is decimal (`stats`
/// `last_processed_zxid`, `connections`/`observers` `last_zxid`, `hash`
/// `digests[].zxid`), a string is hex with or without `0x` (`zabstate`
/// `last_zxid` `"0x10000037c"`, `last_snapshot` `zxid` `"100000000"`), see
/// [`parse_zxid`]. Negative numbers (Java's -1, "none") are `None`.
pub fn zxid_from_json(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => parse_zxid(s),
        _ => None,
    }
}

/// Parses `/commands/monitor` (alias `mntr`) into the 4lw [`Mntr`] type.
///
/// Differences from 4lw `mntr`: keys lack the `zk_` prefix (added here, so
/// `get("zk_avg_latency")` works for both); values are typed JSON (numbers go
/// to the numeric metrics, strings to the text metrics, booleans to text as
/// `true`/`false` like 4lw would print them; `"command"`, `"error"`, nulls,
/// arrays and objects are dropped); `num_alive_connections` does not count
/// the HTTP request (an idle server says 0 here, 1 via 4lw); it answers where
/// `mntr` is not whitelisted; and on a peer without quorum it is an HTTP 500
/// HTML page, read as [`Reply::NotServing`]. Otherwise the key set is the same.
pub fn parse_monitor(status: u16, body: &[u8]) -> Result<Reply<Mntr>, AdminError> {
    parse_envelope(status, body)?.try_map(|map| {
        let mut m = Mntr::default();
        for (k, v) in map {
            if k == "command" || k == "error" {
                continue;
            }
            let key = if k.starts_with("zk_") { k } else { format!("zk_{k}") };
            match v {
                Value::Number(n) => {
                    if let Some(f) = n.as_f64() {
                        m.insert_number(key, f);
                    }
                }
                Value::String(s) => m.insert_string(key, s),
                Value::Bool(b) => m.insert_string(key, b.to_string()),
                Value::Null | Value::Array(_) | Value::Object(_) => {}
            }
        }
        if m.is_empty() {
            return Err(AdminError::Parse(ParseError::Missing { cmd: "monitor", what: "metrics" }));
        }
        Ok(m)
    })
}

/// `stats`/`server_stats` (aliases `stat`, `srvr`): the [`Srvr`] equivalent
/// plus what only the AdminServer reports.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerStats {
    /// Mapped from JSON: `version`, `read_only`, `server_stats.{min,avg,max}_latency`,
    /// `packets_received`/`packets_sent`, `num_alive_client_connections`
    /// (→ `connections`; **excludes** the HTTP request, unlike 4lw), `outstanding_requests`,
    /// `last_processed_zxid` (decimal → `zxid`), `server_state` (→ `mode`),
    /// `node_count`, `proposal_stats.{last,min,max}_buffer_size` (leader),
    /// and `connections` (→ `clients`; `stats` only, no session fields).
    pub srvr: Srvr,
    /// `server_stats.uptime` ms — per role, like `zk_uptime`.
    pub uptime_ms: Option<u64>,
    /// `server_stats.fsync_threshold_exceed_count` (not in `mntr`).
    pub fsync_threshold_exceed_count: Option<u64>,
    /// `server_stats.data_dir_size` bytes.
    pub data_dir_size: Option<u64>,
    /// `server_stats.log_dir_size` bytes.
    pub log_dir_size: Option<u64>,
}

fn field<'a>(cmd: &'static str, map: &'a Map<String, Value>, key: &'static str) -> Result<&'a Value, ParseError> {
    map.get(key).ok_or(ParseError::Missing { cmd, what: key })
}

fn invalid(cmd: &'static str, what: &'static str, v: &Value) -> ParseError {
    ParseError::Invalid { cmd, what, text: v.to_string().chars().take(80).collect() }
}

fn u64_field(cmd: &'static str, map: &Map<String, Value>, key: &'static str) -> Result<u64, ParseError> {
    let v = field(cmd, map, key)?;
    v.as_u64().ok_or_else(|| invalid(cmd, key, v))
}

fn i64_field(cmd: &'static str, map: &Map<String, Value>, key: &'static str) -> Result<i64, ParseError> {
    let v = field(cmd, map, key)?;
    v.as_i64().ok_or_else(|| invalid(cmd, key, v))
}

fn f64_field(cmd: &'static str, map: &Map<String, Value>, key: &'static str) -> Result<f64, ParseError> {
    let v = field(cmd, map, key)?;
    v.as_f64().ok_or_else(|| invalid(cmd, key, v))
}

fn str_field<'a>(cmd: &'static str, map: &'a Map<String, Value>, key: &'static str) -> Result<&'a str, ParseError> {
    let v = field(cmd, map, key)?;
    v.as_str().ok_or_else(|| invalid(cmd, key, v))
}

fn obj_field<'a>(
    cmd: &'static str,
    map: &'a Map<String, Value>,
    key: &'static str,
) -> Result<&'a Map<String, Value>, ParseError> {
    let v = field(cmd, map, key)?;
    v.as_object().ok_or_else(|| invalid(cmd, key, v))
}

/// Parses `/commands/stats`, `/commands/server_stats` and their aliases
/// `stat`/`srvr` (which answer `"command": "stats"` / `"server_stats"`).
pub fn parse_stats(status: u16, body: &[u8]) -> Result<Reply<ServerStats>, AdminError> {
    const CMD: &str = "stats";
    parse_envelope(status, body)?.try_map(|map| {
        let ss = obj_field(CMD, &map, "server_stats")?;
        let build = str_field(CMD, &map, "version")?.trim().to_string();
        let mode: Mode = str_field(CMD, ss, "server_state")?.parse()?;
        let zxid_value = field(CMD, ss, "last_processed_zxid")?;
        let zxid = zxid_from_json(zxid_value).ok_or_else(|| invalid(CMD, "last_processed_zxid", zxid_value))?;
        let proposal_sizes = match map.get("proposal_stats") {
            None | Some(Value::Null) => None,
            Some(_) => {
                let p = obj_field(CMD, &map, "proposal_stats")?;
                Some(ProposalSizes {
                    last: i64_field(CMD, p, "last_buffer_size")?,
                    min: i64_field(CMD, p, "min_buffer_size")?,
                    max: i64_field(CMD, p, "max_buffer_size")?,
                })
            }
        };
        let clients = match map.get("connections") {
            None | Some(Value::Null) => None,
            Some(v) => Some(connection_list(CMD, v)?),
        };
        let opt_u64 = |k: &str| ss.get(k).and_then(Value::as_u64);
        Ok(ServerStats {
            srvr: Srvr {
                version: short_version(&build).to_string(),
                build,
                read_only: map.get("read_only").and_then(Value::as_bool).unwrap_or(mode == Mode::ReadOnly),
                clients,
                latency: Latency {
                    min: i64_field(CMD, ss, "min_latency")?,
                    avg: f64_field(CMD, ss, "avg_latency")?,
                    max: i64_field(CMD, ss, "max_latency")?,
                },
                received: u64_field(CMD, ss, "packets_received")?,
                sent: u64_field(CMD, ss, "packets_sent")?,
                connections: u64_field(CMD, ss, "num_alive_client_connections")?,
                outstanding: u64_field(CMD, ss, "outstanding_requests")?,
                zxid,
                mode,
                node_count: u64_field(CMD, &map, "node_count")?,
                proposal_sizes,
            },
            uptime_ms: opt_u64("uptime"),
            fsync_threshold_exceed_count: opt_u64("fsync_threshold_exceed_count"),
            data_dir_size: opt_u64("data_dir_size"),
            log_dir_size: opt_u64("log_dir_size"),
        })
    })
}

/// A JSON array of connection objects (`stats` and `connections`).
fn connection_list(cmd: &'static str, v: &Value) -> Result<Vec<Connection>, ParseError> {
    let items = v.as_array().ok_or_else(|| invalid(cmd, "connections", v))?;
    items
        .iter()
        .map(|item| {
            let c = item.as_object().ok_or_else(|| invalid(cmd, "connection", item))?;
            json_connection(cmd, c)
        })
        .collect()
}

fn json_connection(cmd: &'static str, c: &Map<String, Value>) -> Result<Connection, ParseError> {
    let addr = str_field(cmd, c, "remote_socket_address")?;
    let (ip, port) = parse_socket_addr(addr).ok_or_else(|| ParseError::Invalid {
        cmd,
        what: "remote_socket_address",
        text: addr.chars().take(80).collect(),
    })?;
    let interest_ops = u64_field(cmd, c, "interest_ops")?;
    let session = match c.get("session_id") {
        None | Some(Value::Null) => None,
        Some(_) => Some(Session {
            sid: u64_field(cmd, c, "session_id")?,
            lop: str_field(cmd, c, "last_operation")?.to_string(),
            est: u64_field(cmd, c, "established")?,
            to: u64_field(cmd, c, "session_timeout")?,
            // -1 (none, after a stats reset) → None.
            lcxid: c.get("last_cxid").and_then(Value::as_u64),
            lzxid: c.get("last_zxid").and_then(zxid_from_json).filter(|z| *z != u64::MAX),
            lresp: u64_field(cmd, c, "last_response_time")?,
            llat: u64_field(cmd, c, "last_latency")?,
            minlat: u64_field(cmd, c, "min_latency")?,
            avglat: f64_field(cmd, c, "avg_latency")?,
            maxlat: u64_field(cmd, c, "max_latency")?,
        }),
    };
    Ok(Connection {
        ip,
        port,
        interest_ops: u32::try_from(interest_ops).map_err(|_| ParseError::Invalid {
            cmd,
            what: "interest_ops",
            text: interest_ops.to_string(),
        })?,
        queued: u64_field(cmd, c, "outstanding_requests")?,
        recved: u64_field(cmd, c, "packets_received")?,
        sent: u64_field(cmd, c, "packets_sent")?,
        session,
    })
}

/// Parses `/commands/connections` (alias `cons`): the 4lw `cons` list with
/// decimal ids. `secure_connections` (TLS port) are appended. The HTTP request
/// itself is not a ZooKeeper connection and is not listed.
pub fn parse_connections(status: u16, body: &[u8]) -> Result<Reply<Vec<Connection>>, AdminError> {
    const CMD: &str = "connections";
    parse_envelope(status, body)?.try_map(|map| {
        let mut all = connection_list(CMD, field(CMD, &map, "connections")?)?;
        if let Some(secure) = map.get("secure_connections") {
            all.extend(connection_list(CMD, secure)?);
        }
        Ok(all)
    })
}

/// Parses `/commands/is_read_only` (alias `isro`): `"read_only": true|false`
/// → [`Isro::ReadOnly`] / [`Isro::ReadWrite`]; without quorum it says
/// [`NOT_SERVING`] → [`Reply::NotServing`] (4lw says `null`).
pub fn parse_is_read_only(status: u16, body: &[u8]) -> Result<Reply<Isro>, AdminError> {
    parse_envelope(status, body)?.try_map(|map| {
        let v = field("is_read_only", &map, "read_only")?;
        match v.as_bool() {
            Some(true) => Ok(Isro::ReadOnly),
            Some(false) => Ok(Isro::ReadWrite),
            None => Err(AdminError::Parse(invalid("is_read_only", "read_only", v))),
        }
    })
}

/// The command names listed by `GET /commands` (an HTML page of
/// `<a href="/commands/NAME">` links, not JSON), in page order.
pub fn parse_command_list(body: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(body);
    text.split("href=\"/commands/")
        .skip(1)
        .filter_map(|rest| rest.split_once('"').map(|(name, _)| name))
        .filter(|name| !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        .map(str::to_string)
        .collect()
}

/// Splits a raw HTTP/1.x response (as captured with headers, or read by a
/// minimal client) into its status code and body. The body is everything
/// after the blank line, cut to `Content-Length` when that header is present
/// and smaller; chunked encoding is not decoded. `None` if there is no status
/// line or no header end.
pub fn split_http_response(raw: &[u8]) -> Option<(u16, &[u8])> {
    let (head_len, sep_len) = find(raw, b"\r\n\r\n").map(|i| (i, 4)).or_else(|| find(raw, b"\n\n").map(|i| (i, 2)))?;
    let head = String::from_utf8_lossy(raw.get(..head_len)?);
    let body = raw.get(head_len + sep_len..)?;
    let mut lines = head.lines();
    let mut status_line = lines.next()?.split_whitespace();
    if !status_line.next()?.starts_with("HTTP/") {
        return None;
    }
    let status: u16 = status_line.next()?.parse().ok()?;
    let length = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok());
    let body = match length {
        Some(n) => body.get(..n).unwrap_or(body),
        None => body,
    };
    Some((status, body))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NPE_PAGE: &[u8] = b"<html><title>Error 500 java.lang.NullPointerException: Cannot invoke &quot;org.apache.zookeeper.server.ZooKeeperServer.dumpMonitorValues(java.util.function.BiConsumer)&quot; because &quot;zkServer&quot; is null</title></html>";

    #[test]
    fn envelope_states() {
        assert_eq!(parse_envelope(200, b"").unwrap(), Reply::Empty);
        assert!(parse_envelope(200, b"{\"command\" : \"ruok\", \"error\" : null}").unwrap().is_ok());
        assert_eq!(
            parse_envelope(
                200,
                b"{\"command\":\"srvr\",\"error\":\"This ZooKeeper instance is not currently serving requests\"}"
            )
            .unwrap(),
            Reply::NotServing
        );
        assert_eq!(
            parse_envelope(200, b"{\"command\":\"x\",\"error\":\"Unknown command: x\"}"),
            Err(AdminError::UnknownCommand("x".into()))
        );
        assert_eq!(
            parse_envelope(200, b"{\"error\":\"server is not initialized\",\"command\":\"leader\"}"),
            Err(AdminError::Command(NOT_INITIALIZED.into()))
        );
        assert_eq!(parse_envelope(500, NPE_PAGE).unwrap(), Reply::NotServing);
        // An NPE without the stack trace on an old JDK still names MonitorCommand in the trace.
        assert_eq!(
            parse_envelope(
                500,
                b"java.lang.NullPointerException\n\tat org.apache.zookeeper.server.admin.Commands$MonitorCommand.run"
            )
            .unwrap(),
            Reply::NotServing
        );
        assert!(matches!(
            parse_envelope(500, b"<html>Error 500 Out of memory</html>"),
            Err(AdminError::Http { status: 500, .. })
        ));
        assert!(matches!(parse_envelope(404, NPE_PAGE), Err(AdminError::Http { status: 404, .. })));
        assert!(matches!(parse_envelope(200, b"[1,2]"), Err(AdminError::Json(_))));
        assert!(matches!(parse_envelope(200, b"{\"error\": 5}"), Err(AdminError::Json(_))));
        assert!(matches!(parse_envelope(200, b"<html>"), Err(AdminError::Json(_))));
    }

    #[test]
    fn monitor_keys_get_the_mntr_prefix() {
        let body = br#"{ "version" : "3.8.0-x, built on y", "server_state" : "leader", "avg_latency" : 2.6531,
            "num_alive_connections" : 0, "min_client_response_size" : -1, "flag" : true, "nested" : {},
            "command" : "monitor", "error" : null }"#;
        let m = parse_monitor(200, body).unwrap().ok().unwrap();
        assert_eq!(m.get("zk_avg_latency"), Some(2.6531));
        assert_eq!(m.get("zk_min_client_response_size"), Some(-1.0));
        assert_eq!(m.server_state(), Some(Mode::Leader));
        assert_eq!(m.version(), Some("3.8.0"));
        assert_eq!(m.string("zk_flag"), Some("true"));
        assert_eq!((m.number_count(), m.string_count()), (3, 3));
        assert!(parse_monitor(200, br#"{"command":"monitor","error":null}"#).is_err(), "no metric");
    }

    #[test]
    fn zxids_in_json() {
        assert_eq!(zxid_from_json(&serde_json::json!(4294968174u64)), Some(0x1_0000_036e));
        assert_eq!(zxid_from_json(&serde_json::json!("0x10000037c")), Some(0x1_0000_037c));
        assert_eq!(zxid_from_json(&serde_json::json!("100000000")), Some(1 << 32));
        assert_eq!(zxid_from_json(&serde_json::json!("0")), Some(0));
        assert_eq!(zxid_from_json(&serde_json::json!(-1)), None);
        assert_eq!(zxid_from_json(&serde_json::json!(1.5)), None);
        assert_eq!(zxid_from_json(&serde_json::json!(null)), None);
    }

    #[test]
    fn http_split() {
        let raw = b"HTTP/1.1 500 Server Error\r\nContent-Type: text/html\r\nContent-Length: 4\r\n\r\nbodyEXTRA";
        assert_eq!(split_http_response(raw), Some((500, &b"body"[..])));
        assert_eq!(split_http_response(b"HTTP/1.1 200 OK\n\n{}"), Some((200, &b"{}"[..])));
        assert_eq!(split_http_response(b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n{}"), Some((200, &b"{}"[..])));
        assert_eq!(split_http_response(b"garbage\r\n\r\n"), None);
        assert_eq!(split_http_response(b"HTTP/1.1 200 OK"), None);
        assert_eq!(split_http_response(b""), None);
    }

    #[test]
    fn command_list() {
        let html = b"<a href=\"/commands/configuration\">configuration</a>\n<br/>\n<a href=\"/commands/zabstate\">zabstate</a>";
        assert_eq!(parse_command_list(html), vec!["configuration", "zabstate"]);
        assert!(parse_command_list(b"href=\"/commands/").is_empty());
    }
}
