//! Sources → store → rules…: the first stage, Prometheus side. [`PromSource`]
//! scrapes one `/metrics` endpoint (an exporter on a ZooKeeper host, or
//! ZooKeeper's own Prometheus provider) and [`parse_text`] reads its text
//! exposition format 0.0.4 into samples, which become series labelled with
//! the target (`cluster`, `instance`, extra labels), plus `up` and
//! `scrape_duration_seconds` per target, as Prometheus itself records them.

use crate::clock::Clock;
use crate::config::PromSourceConfig;
use crate::model::{Labels, Timestamp};
use crate::source::failures::{FailureLog, POLL_ERROR, Report};
use crate::source::scrape::{fetch, http_client};
use crate::source::zk::client::FetchError;
use crate::source::{PollBatch, SeriesBatch, Source};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One sample line of the text format.
#[derive(Debug, Clone, PartialEq)]
pub struct PromSample {
    pub name: String,
    /// In the order written; names are unique.
    pub labels: Vec<(String, String)>,
    pub value: f64,
    /// Milliseconds since the epoch, when the line carries one.
    pub timestamp_ms: Option<i64>,
}

/// Where and why the text is not the exposition format (1-based line and
/// column; the column counts characters).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{line}:{col}: {message}")]
pub struct PromParseError {
    pub line: usize,
    pub col: usize,
    pub message: String,
}

/// The `# TYPE` values the format defines.
pub const METRIC_TYPES: [&str; 5] = ["counter", "gauge", "histogram", "summary", "untyped"];

/// Parses a scrape body: the bytes must be UTF-8.
pub fn parse_bytes(body: &[u8]) -> Result<Vec<PromSample>, PromParseError> {
    parse_text(as_text(body)?)
}

/// The body as text, or where its first invalid UTF-8 is.
fn as_text(body: &[u8]) -> Result<&str, PromParseError> {
    match std::str::from_utf8(body) {
        Ok(text) => Ok(text),
        Err(e) => {
            let valid = body.get(..e.valid_up_to()).unwrap_or_default();
            let line = valid.iter().filter(|b| **b == b'\n').count() + 1;
            let line_start = valid.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
            let col = String::from_utf8_lossy(valid.get(line_start..).unwrap_or_default()).chars().count() + 1;
            Err(PromParseError { line, col, message: "invalid UTF-8".into() })
        }
    }
}

/// Parses the text exposition format 0.0.4: `# HELP` / `# TYPE` lines
/// (checked), other comments and blank lines (skipped), and sample lines
/// `name{label="value",...} value [timestamp]`. Label values unescape
/// `\\`, `\"` and `\n`; values are floats including `NaN`, `+Inf`, `-Inf`;
/// histogram and summary samples (`_bucket`, `_sum`, `_count`, quantiles)
/// are plain samples. The first problem is an error at its line and column.
pub fn parse_text(text: &str) -> Result<Vec<PromSample>, PromParseError> {
    let mut out = Vec::new();
    parse_each(text, |_, s| {
        out.push(s);
        Ok::<(), PromParseError>(())
    })?;
    Ok(out)
}

/// [`parse_text`] one sample at a time: `each` gets the sample and its
/// line, and may stop the parse with an error (a limit), so a large body
/// is never held as samples all at once.
pub fn parse_each<E: From<PromParseError>>(
    text: &str,
    mut each: impl FnMut(usize, PromSample) -> Result<(), E>,
) -> Result<(), E> {
    for (i, raw) in text.split('\n').enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let mut c = Cursor { line, pos: 0, line_no: i + 1 };
        c.skip_blanks();
        if c.at_end() {
            continue;
        }
        if c.peek() == Some('#') {
            c.comment()?;
            continue;
        }
        each(i + 1, c.sample()?)?;
    }
    Ok(())
}

/// A position in one line. `pos` is a byte offset, always on a char
/// boundary (it only moves by whole chars).
struct Cursor<'a> {
    line: &'a str,
    pos: usize,
    line_no: usize,
}

impl<'a> Cursor<'a> {
    fn rest(&self) -> &'a str {
        self.line.get(self.pos..).unwrap_or_default()
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let ch = self.peek()?;
        self.pos += ch.len_utf8();
        Some(ch)
    }

    fn at_end(&self) -> bool {
        self.rest().is_empty()
    }

    fn skip_blanks(&mut self) -> bool {
        let start = self.pos;
        while matches!(self.peek(), Some(' ' | '\t')) {
            self.pos += 1;
        }
        self.pos > start
    }

    fn error_at(&self, pos: usize, message: impl Into<String>) -> PromParseError {
        let col = self.line.get(..pos).map_or(pos, |p| p.chars().count()) + 1;
        PromParseError { line: self.line_no, col, message: message.into() }
    }

    fn error(&self, message: impl Into<String>) -> PromParseError {
        self.error_at(self.pos, message)
    }

    /// A run of chars that are not blanks (a token).
    fn token(&mut self) -> &'a str {
        let start = self.pos;
        while let Some(ch) = self.peek() {
            if ch == ' ' || ch == '\t' {
                break;
            }
            self.pos += ch.len_utf8();
        }
        self.line.get(start..self.pos).unwrap_or_default()
    }

    /// `[a-zA-Z_:][a-zA-Z0-9_:]*` (metric) or without `:` (label).
    fn name(&mut self, colon: bool, what: &str) -> Result<String, PromParseError> {
        let start = self.pos;
        let ok_first = |ch: char| ch.is_ascii_alphabetic() || ch == '_' || (colon && ch == ':');
        match self.peek() {
            Some(ch) if ok_first(ch) => self.pos += 1,
            Some(ch) => return Err(self.error(format!("expected a {what}, found {ch:?}"))),
            None => return Err(self.error(format!("expected a {what}, found the end of the line"))),
        }
        while let Some(ch) = self.peek() {
            if ch.is_ascii_alphanumeric() || ch == '_' || (colon && ch == ':') {
                self.pos += 1;
            } else {
                break;
            }
        }
        Ok(self.line.get(start..self.pos).unwrap_or_default().to_string())
    }

    /// `# HELP name text`, `# TYPE name type`, or any other comment.
    fn comment(&mut self) -> Result<(), PromParseError> {
        self.bump(); // '#'
        if !self.skip_blanks() {
            return Ok(());
        }
        let keyword = self.token().to_string();
        if keyword != "HELP" && keyword != "TYPE" {
            return Ok(());
        }
        if !self.skip_blanks() {
            return Err(self.error(format!("expected a metric name after # {keyword}")));
        }
        self.name(true, "metric name")?;
        if keyword == "HELP" {
            // Docstring: anything; `\\` and `\n` escapes need no checking.
            if !self.at_end() && !self.skip_blanks() {
                return Err(self.error("expected a blank after the metric name"));
            }
            return Ok(());
        }
        if !self.skip_blanks() {
            return Err(self.error("expected a blank and a type after the metric name"));
        }
        let type_at = self.pos;
        let kind = self.token();
        if !METRIC_TYPES.contains(&kind) {
            let kind = kind.to_string();
            return Err(
                self.error_at(type_at, format!("unknown metric type {kind:?} (expected one of {METRIC_TYPES:?})"))
            );
        }
        self.skip_blanks();
        if !self.at_end() {
            return Err(self.error("unexpected text after the metric type"));
        }
        Ok(())
    }

    fn sample(&mut self) -> Result<PromSample, PromParseError> {
        let name = self.name(true, "metric name")?;
        let mut blank = self.skip_blanks();
        let mut labels: Vec<(String, String)> = Vec::new();
        if self.peek() == Some('{') {
            self.bump();
            loop {
                self.skip_blanks();
                if self.peek() == Some('}') {
                    self.bump();
                    break;
                }
                let at = self.pos;
                let label = self.name(false, "label name")?;
                if labels.iter().any(|(l, _)| *l == label) {
                    return Err(self.error_at(at, format!("duplicate label {label:?}")));
                }
                self.skip_blanks();
                let eq_at = self.pos;
                if self.bump() != Some('=') {
                    return Err(self.error_at(eq_at, "expected '=' after the label name"));
                }
                self.skip_blanks();
                let value = self.label_value()?;
                labels.push((label, value));
                self.skip_blanks();
                match self.bump() {
                    Some(',') => {}
                    Some('}') => break,
                    Some(ch) => {
                        let at = self.pos - ch.len_utf8();
                        return Err(self.error_at(at, format!("expected ',' or '}}', found {ch:?}")));
                    }
                    None => return Err(self.error("unterminated label set")),
                }
            }
            blank = self.skip_blanks();
        }
        if self.at_end() {
            return Err(self.error("expected a value"));
        }
        if !blank {
            return Err(self.error("expected a blank before the value"));
        }
        let value_at = self.pos;
        let token = self.token();
        let value = parse_value(token).ok_or_else(|| self.error_at(value_at, format!("invalid value {token:?}")))?;
        self.skip_blanks();
        let mut timestamp_ms = None;
        if !self.at_end() {
            let ts_at = self.pos;
            let token = self.token();
            timestamp_ms =
                Some(token.parse::<i64>().map_err(|_| self.error_at(ts_at, format!("invalid timestamp {token:?}")))?);
            self.skip_blanks();
            if !self.at_end() {
                return Err(self.error("unexpected text after the timestamp"));
            }
        }
        Ok(PromSample { name, labels, value, timestamp_ms })
    }

    /// `"..."` with `\\`, `\"`, `\n`.
    fn label_value(&mut self) -> Result<String, PromParseError> {
        if self.peek() != Some('"') {
            return Err(self.error("expected '\"' to open the label value"));
        }
        self.bump();
        let mut value = String::new();
        loop {
            match self.bump() {
                None => return Err(self.error("unterminated label value")),
                Some('"') => return Ok(value),
                Some('\\') => {
                    let at = self.pos - 1;
                    match self.bump() {
                        Some('\\') => value.push('\\'),
                        Some('"') => value.push('"'),
                        Some('n') => value.push('\n'),
                        Some(ch) => return Err(self.error_at(at, format!("invalid escape \\{ch} in a label value"))),
                        None => return Err(self.error("unterminated label value")),
                    }
                }
                Some(ch) => value.push(ch),
            }
        }
    }
}

/// A sample value: Go's `ParseFloat` forms as Prometheus writes them
/// (`1`, `-1.5e-3`, `NaN`, `+Inf`, `-Inf`, any case of `nan`/`inf`).
pub fn parse_value(token: &str) -> Option<f64> {
    let unsigned = token.strip_prefix(['+', '-']).unwrap_or(token);
    if unsigned.is_empty() {
        return None;
    }
    // Rust also accepts "infinity"; Go does too. Nothing else non-numeric.
    let first = unsigned.as_bytes().first().copied()?;
    if !(first.is_ascii_digit() || first == b'.' || matches!(first.to_ascii_lowercase(), b'n' | b'i')) {
        return None;
    }
    token.parse::<f64>().ok()
}

/// What one scrape may bring, per source (Prometheus's scrape-config
/// limits of the same names, with defaults instead of "unlimited"). Over a
/// limit the scrape fails as a whole: `up` 0, and the info label
/// `poll_error` names the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScrapeLimits {
    /// Samples kept per scrape (those of metrics the rules read, as
    /// Prometheus counts after relabelling).
    pub sample_limit: usize,
    /// Bytes of body read (uncompressed).
    pub body_size_limit: usize,
    /// Labels per kept sample, the target's included.
    pub label_limit: usize,
    /// Bytes per label name of a kept sample.
    pub label_name_length_limit: usize,
    /// Bytes per label value of a kept sample.
    pub label_value_length_limit: usize,
}

impl Default for ScrapeLimits {
    fn default() -> Self {
        Self {
            sample_limit: 50_000,
            body_size_limit: 16 * 1024 * 1024,
            label_limit: 64,
            label_name_length_limit: 256,
            label_value_length_limit: 4096,
        }
    }
}

/// Why a scrape failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScrapeError {
    #[error("{0}")]
    Fetch(FetchError),
    #[error("body larger than body_size_limit ({limit} bytes)")]
    BodySizeLimit { limit: usize },
    #[error("HTTP status {0}, not 200")]
    HttpStatus(u16),
    #[error("not the Prometheus text format: {0}")]
    Format(#[from] PromParseError),
    #[error("more than sample_limit ({limit}) samples")]
    SampleLimit { limit: usize },
    #[error("line {line}: {count} labels, more than label_limit ({limit})")]
    LabelLimit { line: usize, count: usize, limit: usize },
    #[error("line {line}: a label name of {length} bytes, longer than label_name_length_limit ({limit})")]
    LabelNameLength { line: usize, length: usize, limit: usize },
    #[error(
        "line {line}: label {label:?} has a value of {length} bytes, longer than label_value_length_limit ({limit})"
    )]
    LabelValueLength { line: usize, label: String, length: usize, limit: usize },
}

impl ScrapeError {
    /// The class of the failure, as the `poll_error` label shows it.
    pub fn reason(&self) -> &'static str {
        match self {
            ScrapeError::Fetch(e) => e.reason(),
            ScrapeError::BodySizeLimit { .. } => "body_size_limit",
            ScrapeError::HttpStatus(_) => "http_status",
            ScrapeError::Format(_) => "invalid_format",
            ScrapeError::SampleLimit { .. } => "sample_limit",
            ScrapeError::LabelLimit { .. } => "label_limit",
            ScrapeError::LabelNameLength { .. } => "label_name_length_limit",
            ScrapeError::LabelValueLength { .. } => "label_value_length_limit",
        }
    }
}

/// Parses a scrape body keeping only the samples `keep` accepts, within
/// `limits` (`target_labels`: how many labels the target adds to each
/// sample). Returns the kept samples and how many the body had.
pub fn parse_limited(
    body: &[u8],
    limits: &ScrapeLimits,
    target_labels: usize,
    keep: &dyn Fn(&str) -> bool,
) -> Result<(Vec<PromSample>, usize), ScrapeError> {
    let text = as_text(body)?;
    let mut kept = Vec::new();
    let mut scraped = 0;
    parse_each(text, |line, s| {
        scraped += 1;
        if !keep(&s.name) {
            return Ok(());
        }
        if kept.len() == limits.sample_limit {
            return Err(ScrapeError::SampleLimit { limit: limits.sample_limit });
        }
        let count = s.labels.len() + target_labels;
        if count > limits.label_limit {
            return Err(ScrapeError::LabelLimit { line, count, limit: limits.label_limit });
        }
        for (name, value) in &s.labels {
            if name.len() > limits.label_name_length_limit {
                let (length, limit) = (name.len(), limits.label_name_length_limit);
                return Err(ScrapeError::LabelNameLength { line, length, limit });
            }
            if value.len() > limits.label_value_length_limit {
                let (length, limit) = (value.len(), limits.label_value_length_limit);
                return Err(ScrapeError::LabelValueLength { line, label: name.clone(), length, limit });
            }
        }
        kept.push(s);
        Ok(())
    })?;
    Ok((kept, scraped))
}

/// What the scrape asks for: the text format, not OpenMetrics or protobuf.
pub const ACCEPT: &str = "text/plain;version=0.0.4;q=1,*/*;q=0.1";

/// One Prometheus endpoint, scraped.
pub struct PromSource {
    pub config: PromSourceConfig,
    /// Which sample metrics to report; `up` always. `None`: all.
    pub keep: Option<Arc<crate::store::Retention>>,
    client: reqwest::Client,
    /// `cluster` (if configured), `instance` and the extra labels.
    target: Labels,
    failures: FailureLog,
}

impl PromSource {
    pub fn new(config: PromSourceConfig, keep: Option<Arc<crate::store::Retention>>) -> anyhow::Result<Self> {
        let client = http_client(config.timeout)?;
        let instance = match &config.instance {
            Some(i) => i.clone(),
            None => instance_of(&config.url)?,
        };
        let mut target = config.labels.clone();
        if let Some(c) = &config.cluster {
            target.insert("cluster", c.clone());
        }
        target.insert("instance", instance);
        Ok(Self { config, keep, client, target, failures: FailureLog::default() })
    }

    /// The target labels every series of this source carries.
    pub fn target(&self) -> &Labels {
        &self.target
    }

    fn keeps(&self, name: &str) -> bool {
        name == "up" || self.keep.as_ref().is_none_or(|k| k.keeps(name))
    }

    /// Fetches and parses one scrape within the source's limits: the kept
    /// samples and how many the body had.
    pub async fn scrape(&self) -> Result<(Vec<PromSample>, usize), ScrapeError> {
        let limits = &self.config.limits;
        let reply =
            fetch(&self.client, &self.config.url, Some(ACCEPT), limits.body_size_limit).await.map_err(|e| match e {
                FetchError::TooLarge { limit, .. } => ScrapeError::BodySizeLimit { limit },
                other => ScrapeError::Fetch(other),
            })?;
        if reply.status != 200 {
            return Err(ScrapeError::HttpStatus(reply.status));
        }
        parse_limited(&reply.body, limits, self.target.len(), &|name| self.keeps(name))
    }

    /// One scrape as a batch at `ts`. Exposed timestamps are not used: every
    /// sample is at the scrape time.
    pub async fn collect(&self, ts: Timestamp) -> PollBatch {
        let started = Instant::now();
        let scraped = self.scrape().await;
        let duration = started.elapsed();
        let problem = scraped.as_ref().err().map(|e| e.reason());
        match self.failures.note(&self.config.url, problem, ts) {
            Report::Quiet => {}
            Report::Failing { repeated } => {
                if let Err(e) = &scraped {
                    tracing::warn!(url = %self.config.url, reason = e.reason(), error = %e, repeated, "scrape failed");
                }
            }
            Report::Recovered { was } => tracing::info!(url = %self.config.url, was, "scrape succeeds again"),
        }
        let mut out = PollBatch::default();
        let mut target_values = vec![("up".to_string(), f64::from(u8::from(scraped.is_ok())))];
        if self.keeps("scrape_duration_seconds") {
            target_values.push(("scrape_duration_seconds".into(), duration.as_secs_f64()));
        }
        if let Ok((_, count)) = &scraped
            && self.keeps("scrape_samples_scraped")
        {
            target_values.push(("scrape_samples_scraped".into(), *count as f64));
        }
        let mut info = Labels::new();
        if let Err(e) = &scraped {
            info.insert(POLL_ERROR, e.reason());
        }
        out.series.push(SeriesBatch {
            labels: self.target.clone(),
            info: Some(info),
            timestamp: ts,
            values: target_values,
        });
        let mut index: std::collections::HashMap<Labels, usize> = std::collections::HashMap::new();
        for s in scraped.map(|(samples, _)| samples).unwrap_or_default() {
            let labels = self.series_labels(&s.labels);
            let i = *index.entry(labels.clone()).or_insert_with(|| {
                out.series.push(SeriesBatch { labels, info: None, timestamp: ts, values: Vec::new() });
                out.series.len() - 1
            });
            if let Some(series) = out.series.get_mut(i) {
                series.values.push((s.name, s.value));
            }
        }
        out
    }

    /// A sample's labels plus the target's; a sample label that clashes
    /// with a target label is kept as `exported_<name>` (Prometheus's
    /// `honor_labels: false`).
    fn series_labels(&self, sample: &[(String, String)]) -> Labels {
        let target = self.target.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        let sample = sample.iter().map(|(k, v)| match self.target.get(k) {
            Some(_) => (format!("exported_{k}"), v.clone()),
            None => (k.clone(), v.clone()),
        });
        Labels::from_pairs(target.chain(sample))
    }
}

/// `host:port` of a URL (the scheme's default port when none is given).
pub fn instance_of(url: &str) -> anyhow::Result<String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| anyhow::anyhow!("invalid scrape URL {url:?}: {e}"))?;
    let host = parsed.host_str().ok_or_else(|| anyhow::anyhow!("scrape URL {url:?} has no host"))?;
    Ok(match parsed.port_or_known_default() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    })
}

impl Source for PromSource {
    fn name(&self) -> String {
        format!("prometheus/{}", self.config.url)
    }

    fn interval(&self) -> Duration {
        self.config.interval
    }

    fn poll(&self, clock: Arc<dyn Clock>) -> Pin<Box<dyn Future<Output = PollBatch> + Send + '_>> {
        Box::pin(async move { self.collect(clock.now()).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample(name: &str, labels: &[(&str, &str)], value: f64, ts: Option<i64>) -> PromSample {
        PromSample {
            name: name.into(),
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            value,
            timestamp_ms: ts,
        }
    }

    /// The example of the exposition format documentation
    /// (prometheus.io/docs/instrumenting/exposition_formats/).
    const DOC_EXAMPLE: &str = include_str!("../../tests/fixtures/prom/exposition-doc-example.txt");

    #[test]
    fn the_documented_example() {
        let s = parse_text(DOC_EXAMPLE).unwrap();
        assert_eq!(s.len(), 20);
        assert_eq!(
            s[0],
            sample("http_requests_total", &[("method", "post"), ("code", "200")], 1027.0, Some(1395066363000))
        );
        assert_eq!(s[1].value, 3.0);
        assert_eq!(
            s[2],
            sample(
                "msdos_file_access_time_seconds",
                &[("path", r"C:\DIR\FILE.TXT"), ("error", "Cannot find file:\n\"FILE.TXT\"")],
                1.458255915e9,
                None
            )
        );
        assert_eq!(s[3], sample("metric_without_timestamp_and_labels", &[], 12.47, None));
        assert_eq!(s[4], sample("something_weird", &[("problem", "division by zero")], f64::INFINITY, Some(-3982045)));
        assert_eq!(s[10], sample("http_request_duration_seconds_bucket", &[("le", "+Inf")], 144320.0, None));
        assert_eq!(s[11].name, "http_request_duration_seconds_sum");
        assert_eq!(s[13], sample("rpc_duration_seconds", &[("quantile", "0.01")], 3102.0, None));
        assert_eq!(s[18], sample("rpc_duration_seconds_sum", &[], 1.7560473e7, None));
    }

    #[test]
    fn special_values_and_forms() {
        let s = parse_text("a NaN\nb -Inf\nc +Inf\nd 1e-3\ne{} 2\nf{x=\"1\",} 3\r\n  g 4 \n:h:i 5\n").unwrap();
        assert!(s[0].value.is_nan());
        assert_eq!(s[1].value, f64::NEG_INFINITY);
        assert_eq!(s[2].value, f64::INFINITY);
        assert_eq!(s[3].value, 0.001);
        assert_eq!(s[4], sample("e", &[], 2.0, None));
        assert_eq!(s[5], sample("f", &[("x", "1")], 3.0, None));
        assert_eq!(s[6], sample("g", &[], 4.0, None));
        assert_eq!(s[7].name, ":h:i");
        assert!(parse_text("").unwrap().is_empty());
        assert!(parse_text("\n\n# just a comment\n#\n").unwrap().is_empty());
    }

    #[test]
    fn errors_have_positions() {
        let err = |t: &str| parse_text(t).unwrap_err();
        assert_eq!(err("ok 1\nbad{x=1} 2").to_string(), "2:7: expected '\"' to open the label value");
        assert_eq!(err("m{x=\"a\\q\"} 1").to_string(), "1:7: invalid escape \\q in a label value");
        assert_eq!(err("m{x=\"a\",x=\"b\"} 1").to_string(), "1:9: duplicate label \"x\"");
        assert_eq!(err("m abc").to_string(), "1:3: invalid value \"abc\"");
        assert_eq!(err("m 1 2.5").to_string(), "1:5: invalid timestamp \"2.5\"");
        assert_eq!(err("m 1 2 3").to_string(), "1:7: unexpected text after the timestamp");
        assert_eq!(err("m").to_string(), "1:2: expected a value");
        assert_eq!(err("m{x=\"v").to_string(), "1:7: unterminated label value");
        assert_eq!(err("m{x=\"v\"").to_string(), "1:8: unterminated label set");
        assert_eq!(err("1m 2").to_string(), "1:1: expected a metric name, found '1'");
        assert_eq!(
            err("# TYPE m countr").to_string(),
            "1:10: unknown metric type \"countr\" (expected one of [\"counter\", \"gauge\", \"histogram\", \"summary\", \"untyped\"])"
        );
        assert_eq!(err("é{ü=\"\"} 1").to_string(), "1:1: expected a metric name, found 'é'");
        assert_eq!(err("m{ü=\"\"} 1").to_string(), "1:3: expected a label name, found 'ü'");
        assert_eq!(err("m{a=\"ü\" b=\"\"} 1").to_string(), "1:9: expected ',' or '}', found 'b'");
        assert_eq!(parse_bytes(b"a 1\nb\xff 2").unwrap_err().to_string(), "2:2: invalid UTF-8");
    }

    #[test]
    fn instance_from_url() {
        assert_eq!(instance_of("http://127.0.0.1:9100/metrics").unwrap(), "127.0.0.1:9100");
        assert_eq!(instance_of("http://zk1/metrics").unwrap(), "zk1:80");
        assert_eq!(instance_of("https://[::1]/metrics").unwrap(), "[::1]:443");
        assert!(instance_of("not a url").is_err());
    }

    fn escape(v: &str) -> String {
        v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn never_panics_on_arbitrary_text(text in any::<String>()) {
            let _ = parse_text(&text);
        }

        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_bytes(&bytes);
        }

        #[test]
        fn never_panics_on_format_like_text(text in "[a-z_{}=\",\\\\ \\t#\\nHELPTYP0-9.+eEIfNa\\r]{0,80}") {
            if let Err(e) = parse_text(&text) {
                prop_assert!(e.line >= 1 && e.col >= 1);
                prop_assert!(e.line <= text.split('\n').count());
            }
        }

        #[test]
        fn written_samples_read_back(
            name in "[a-zA-Z_:][a-zA-Z0-9_:]{0,12}",
            labels in proptest::collection::btree_map("[a-zA-Z_][a-zA-Z0-9_]{0,8}", any::<String>(), 0..4),
            value in any::<f64>(),
            ts in proptest::option::of(any::<i64>()),
        ) {
            let body: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
            let mut line = format!("{name}{{{}}} {value:?}", body.join(","));
            if let Some(ts) = ts {
                line.push_str(&format!(" {ts}"));
            }
            let parsed = parse_text(&line).map_err(|e| TestCaseError::fail(format!("{line:?}: {e}")))?;
            prop_assert_eq!(parsed.len(), 1);
            let s = &parsed[0];
            prop_assert_eq!(&s.name, &name);
            let got: std::collections::BTreeMap<String, String> = s.labels.iter().cloned().collect();
            prop_assert_eq!(got, labels);
            prop_assert!(s.value == value || (s.value.is_nan() && value.is_nan()));
            prop_assert_eq!(s.timestamp_ms, ts);
        }
    }
}
