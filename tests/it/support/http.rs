//! HTTP servers on loopback for tests of the real binary: a `/metrics`
//! endpoint whose body the test sets, and a webhook receiver that records
//! every request and answers as the test scripts it (a status, or hanging).

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Reads one HTTP/1.1 request: (request line and headers, body).
fn read_request(conn: &mut std::net::TcpStream) -> Option<(String, Vec<u8>)> {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    };
    let head = String::from_utf8_lossy(&data[..head_end]).to_string();
    let length = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
        .unwrap_or(0usize);
    while data.len() < head_end + length {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    }
    Some((head, data[head_end..].to_vec()))
}

fn respond(conn: &mut std::net::TcpStream, status: u16, body: &str) {
    let _ = write!(
        conn,
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// A loopback port nothing listens on (bound a moment ago, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// `GET path` on a loopback port as HTTP/1.0 (so never chunked): the
/// status and body; `None` if nothing answers within `timeout`.
pub fn get(port: u16, path: &str, timeout: Duration) -> Option<(u16, String)> {
    exchange(port, &format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"), timeout)
}

/// A write (`method` POST, DELETE…) with a JSON body and a bearer token,
/// as [`get`].
pub fn send_json(
    port: u16,
    method: &str,
    path: &str,
    token: &str,
    body: &serde_json::Value,
    timeout: Duration,
) -> Option<(u16, String)> {
    let body = body.to_string();
    let head = format!(
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    exchange(port, &(head + body.as_str()), timeout)
}

/// Sends one HTTP/1.0 request; the reply's status and body.
fn exchange(port: u16, request: &str, timeout: Duration) -> Option<(u16, String)> {
    let mut conn = std::net::TcpStream::connect_timeout(&(std::net::Ipv4Addr::LOCALHOST, port).into(), timeout).ok()?;
    conn.set_read_timeout(Some(timeout)).ok()?;
    conn.write_all(request.as_bytes()).ok()?;
    let mut reply = Vec::new();
    conn.read_to_end(&mut reply).ok()?;
    let reply = String::from_utf8_lossy(&reply);
    let (head, body) = reply.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// A `/metrics` endpoint whose body the test sets.
pub struct MetricsServer {
    pub port: u16,
    body: Arc<Mutex<String>>,
    stop: Arc<AtomicBool>,
}

impl MetricsServer {
    pub fn start() -> MetricsServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind metrics server");
        let port = listener.local_addr().unwrap().port();
        let body = Arc::new(Mutex::new(String::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (b, s) = (body.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut conn) = conn else { continue };
                let _ = read_request(&mut conn);
                let text = b.lock().unwrap().clone();
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                    text.len()
                );
            }
        });
        MetricsServer { port, body, stop }
    }

    /// Serves `text` from now on.
    pub fn set_text(&self, text: String) {
        *self.body.lock().unwrap() = text;
    }

    /// `svc_up{node="nI"}` for each node: 1 up, 0 down.
    pub fn set(&self, down: &[bool]) {
        let mut text = String::from("# TYPE svc_up gauge\n");
        for (i, d) in down.iter().enumerate() {
            text.push_str(&format!("svc_up{{node=\"n{i}\"}} {}\n", if *d { 0 } else { 1 }));
        }
        *self.body.lock().unwrap() = text;
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// What the receiver does with a request.
#[derive(Debug, Clone, Copy)]
pub enum Answer {
    Status(u16),
    /// Answers nothing for this long, then closes.
    Hang(Duration),
}

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub head: String,
    pub body: serde_json::Value,
    /// The body as text (forms, TwiML).
    pub raw: String,
    pub idempotency_key: String,
    pub answered: Option<u16>,
    /// When its request had been read.
    pub at: std::time::Instant,
}

/// A webhook receiver: answers the scripted answers in order, then the
/// default; records every request.
pub struct Receiver {
    pub port: u16,
    script: Arc<Mutex<(VecDeque<Answer>, Answer)>>,
    pub requests: Arc<Mutex<Vec<Received>>>,
    stop: Arc<AtomicBool>,
}

impl Receiver {
    pub fn start(script: Vec<Answer>, default: Answer) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind receiver");
        let port = listener.local_addr().unwrap().port();
        let script = Arc::new(Mutex::new((VecDeque::from(script), default)));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (sc, rq, st) = (script.clone(), requests.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut conn) = conn else { continue };
                let (sc, rq) = (sc.clone(), rq.clone());
                std::thread::spawn(move || {
                    let Some((head, body)) = read_request(&mut conn) else { return };
                    let answer = {
                        let mut s = sc.lock().unwrap();
                        let default = s.1;
                        s.0.pop_front().unwrap_or(default)
                    };
                    let idempotency_key = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase().starts_with("idempotency-key:").then(|| l[16..].trim().to_string())
                        })
                        .unwrap_or_default();
                    let raw = String::from_utf8_lossy(&body).into_owned();
                    let body = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
                    let index = {
                        let mut r = rq.lock().unwrap();
                        r.push(Received {
                            head,
                            body,
                            raw,
                            idempotency_key,
                            answered: None,
                            at: std::time::Instant::now(),
                        });
                        r.len() - 1
                    };
                    match answer {
                        Answer::Status(code) => {
                            respond(&mut conn, code, if code < 300 { "{}" } else { "{\"error\":\"scripted\"}" });
                            rq.lock().unwrap()[index].answered = Some(code);
                        }
                        Answer::Hang(d) => std::thread::sleep(d),
                    }
                });
            }
        });
        Receiver { port, script, requests, stop }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    /// From now on, answer this to everything not scripted.
    pub fn set_default(&self, answer: Answer) {
        self.script.lock().unwrap().1 = answer;
    }

    pub fn received(&self) -> Vec<Received> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// A forward HTTP proxy on loopback, as `HTTP_PROXY` or `proxy_url` names:
/// it takes absolute-form requests (`POST http://127.0.0.1:PORT/hook
/// HTTP/1.1`), records their request lines, and forwards each (in origin
/// form, `Connection: close`) to the host and port in its URL, relaying
/// the answer back.
pub struct ForwardProxy {
    pub port: u16,
    pub seen: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl ForwardProxy {
    pub fn start() -> ForwardProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (sn, st) = (seen.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut conn) = conn else { continue };
                let sn = sn.clone();
                std::thread::spawn(move || {
                    let Some((head, body)) = read_request(&mut conn) else { return };
                    let request_line = head.lines().next().unwrap_or_default().to_string();
                    sn.lock().unwrap().push(request_line.clone());
                    let mut parts = request_line.split(' ');
                    let (method, target) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
                    // Only absolute-form http:// targets: anything else is not a proxy request.
                    let Some(rest) = target.strip_prefix("http://") else {
                        respond(&mut conn, 400, "{\"error\":\"not absolute-form\"}");
                        return;
                    };
                    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
                    let path = if path.is_empty() { "/" } else { path };
                    let Ok(mut upstream) = std::net::TcpStream::connect(authority) else {
                        respond(&mut conn, 502, "{\"error\":\"upstream down\"}");
                        return;
                    };
                    let headers: Vec<&str> = head
                        .lines()
                        .skip(1)
                        .filter(|l| !l.is_empty())
                        .filter(|l| {
                            let l = l.to_ascii_lowercase();
                            !l.starts_with("connection:") && !l.starts_with("proxy-")
                        })
                        .collect();
                    let mut out =
                        format!("{method} {path} HTTP/1.1\r\n{}\r\nConnection: close\r\n\r\n", headers.join("\r\n"))
                            .into_bytes();
                    out.extend_from_slice(&body);
                    if upstream.write_all(&out).is_err() {
                        return;
                    }
                    let _ = upstream.set_read_timeout(Some(Duration::from_secs(10)));
                    let mut answer = Vec::new();
                    let _ = upstream.read_to_end(&mut answer);
                    let _ = conn.write_all(&answer);
                });
            }
        });
        ForwardProxy { port, seen, stop }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The request lines the proxy was sent.
    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for ForwardProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
    }
}
