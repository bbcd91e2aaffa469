//! YAML as a tree of nodes that remember where they came from, so every
//! problem in a rule, test or config file is reported at `path:line:col`,
//! all of them at once (a serde error would stop at the first).
//!
//! Built on `saphyr-parser` events: duplicate keys are errors at the second
//! key's position, aliases are resolved, and plain scalars keep their text so
//! `"1"` (a string) and `1` (a number) stay distinguishable.

use crate::diag::{Diagnostics, Pos};
use crate::duration::parse_duration;
use saphyr_parser::{Event, Parser, ScalarStyle};
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    Scalar { text: String, style: Style },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

/// How a scalar was written; block scalars need it to map positions inside
/// the text back to the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Plain,
    SingleQuoted,
    DoubleQuoted,
    Literal,
    Folded,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub kind: NodeKind,
    pub pos: Pos,
}

impl Node {
    pub fn kind_name(&self) -> &'static str {
        match &self.kind {
            NodeKind::Scalar { text, style: Style::Plain } if is_null(text) => "null",
            NodeKind::Scalar { .. } => "a scalar",
            NodeKind::Seq(_) => "a list",
            NodeKind::Map(_) => "a mapping",
        }
    }
    pub fn is_null(&self) -> bool {
        matches!(&self.kind, NodeKind::Scalar { text, style: Style::Plain } if is_null(text))
    }
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }
    pub fn style(&self) -> Option<Style> {
        match &self.kind {
            NodeKind::Scalar { style, .. } => Some(*style),
            _ => None,
        }
    }
    /// Looks up a key in a mapping node.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.kind {
            NodeKind::Map(entries) => entries.iter().find(|(k, _)| k.as_str() == Some(key)).map(|(_, v)| v),
            _ => None,
        }
    }
}

fn is_null(text: &str) -> bool {
    matches!(text, "" | "~" | "null" | "Null" | "NULL")
}

/// Parses one YAML document. An empty document is a null node.
pub fn parse(source: &str, path: &Path) -> Result<Node, Diagnostics> {
    let mut builder = Builder { path, anchors: HashMap::new(), diags: Diagnostics::default() };
    let mut parser = Parser::new_from_str(source);
    let mut events = std::iter::from_fn(|| parser.next_event());
    let root = builder.document(&mut events);
    match root {
        Some(node) if builder.diags.is_empty() => Ok(node),
        _ => Err(builder.diags),
    }
}

struct Builder<'p> {
    path: &'p Path,
    anchors: HashMap<usize, Node>,
    diags: Diagnostics,
}

type EventResult<'i> = Result<(Event<'i>, saphyr_parser::Span), saphyr_parser::ScanError>;

impl Builder<'_> {
    fn document<'i>(&mut self, events: &mut impl Iterator<Item = EventResult<'i>>) -> Option<Node> {
        let mut root = None;
        loop {
            match self.next(events)? {
                (Event::StreamStart, _) | (Event::DocumentStart(_), _) => continue,
                (Event::DocumentEnd, _) => continue,
                (Event::StreamEnd, span) => {
                    return Some(root.unwrap_or(Node {
                        kind: NodeKind::Scalar { text: String::new(), style: Style::Plain },
                        pos: marker_pos(&span.start),
                    }));
                }
                (event, span) => {
                    if root.is_some() {
                        self.diags.push(
                            self.path,
                            marker_pos(&span.start),
                            "only one YAML document per file is supported",
                        );
                        return None;
                    }
                    root = Some(self.node(event, span, events)?);
                }
            }
        }
    }

    fn next<'i>(
        &mut self,
        events: &mut impl Iterator<Item = EventResult<'i>>,
    ) -> Option<(Event<'i>, saphyr_parser::Span)> {
        match events.next() {
            Some(Ok(ev)) => Some(ev),
            Some(Err(e)) => {
                let m = e.marker();
                self.diags.push(self.path, Pos::new(m.line(), m.col() + 1), format!("YAML syntax error: {}", e.info()));
                None
            }
            None => None,
        }
    }

    fn node<'i>(
        &mut self,
        event: Event<'i>,
        span: saphyr_parser::Span,
        events: &mut impl Iterator<Item = EventResult<'i>>,
    ) -> Option<Node> {
        let pos = marker_pos(&span.start);
        let (node, anchor) = match event {
            Event::Scalar(text, style, anchor, _tag) => {
                let style = match style {
                    ScalarStyle::Plain => Style::Plain,
                    ScalarStyle::SingleQuoted => Style::SingleQuoted,
                    ScalarStyle::DoubleQuoted => Style::DoubleQuoted,
                    ScalarStyle::Literal => Style::Literal,
                    ScalarStyle::Folded => Style::Folded,
                };
                (Node { kind: NodeKind::Scalar { text: text.into_owned(), style }, pos }, anchor)
            }
            Event::Alias(id) => {
                return match self.anchors.get(&id) {
                    Some(n) => Some(Node { kind: n.kind.clone(), pos }),
                    None => {
                        self.diags.push(self.path, pos, "alias refers to an unknown anchor");
                        None
                    }
                };
            }
            Event::SequenceStart(anchor, _) => {
                let mut items = Vec::new();
                loop {
                    match self.next(events)? {
                        (Event::SequenceEnd, _) => break,
                        (ev, sp) => items.push(self.node(ev, sp, events)?),
                    }
                }
                (Node { kind: NodeKind::Seq(items), pos }, anchor)
            }
            Event::MappingStart(anchor, _) => {
                let mut entries: Vec<(Node, Node)> = Vec::new();
                loop {
                    let key = match self.next(events)? {
                        (Event::MappingEnd, _) => break,
                        (ev, sp) => self.node(ev, sp, events)?,
                    };
                    let (ev, sp) = self.next(events)?;
                    let value = self.node(ev, sp, events)?;
                    if let Some(k) = key.as_str()
                        && entries.iter().any(|(existing, _)| existing.as_str() == Some(k))
                    {
                        self.diags.push(self.path, key.pos, format!("duplicate key {k:?}"));
                    }
                    entries.push((key, value));
                }
                (Node { kind: NodeKind::Map(entries), pos }, anchor)
            }
            other => {
                self.diags.push(self.path, pos, format!("unexpected YAML event {other:?}"));
                return None;
            }
        };
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        Some(node)
    }
}

fn marker_pos(m: &saphyr_parser::Marker) -> Pos {
    Pos::new(m.line(), m.col() + 1)
}

/// Typed reading of nodes that records a diagnostic for each problem and
/// carries on, so one pass finds every error in a file.
pub struct Reader<'a> {
    pub path: &'a Path,
    pub diags: &'a mut Diagnostics,
}

impl<'a> Reader<'a> {
    pub fn new(path: &'a Path, diags: &'a mut Diagnostics) -> Self {
        Self { path, diags }
    }

    pub fn error(&mut self, pos: Pos, message: impl Into<String>) {
        self.diags.push(self.path, pos, message);
    }

    /// The entries of a mapping, checking that every key is one of `known`.
    /// Unknown keys are reported (with a suggestion when one is close).
    pub fn map<'n>(&mut self, node: &'n Node, what: &str, known: &[&str]) -> Vec<(&'n str, &'n Node)> {
        let NodeKind::Map(entries) = &node.kind else {
            if !node.is_null() {
                self.error(node.pos, format!("{what} must be a mapping, found {}", node.kind_name()));
            }
            return Vec::new();
        };
        let mut out = Vec::with_capacity(entries.len());
        for (k, v) in entries {
            let Some(key) = k.as_str() else {
                self.error(k.pos, format!("{what}: keys must be scalars"));
                continue;
            };
            if !known.is_empty() && !known.contains(&key) {
                let hint = closest(key, known).map(|c| format!(" (did you mean {c:?}?)")).unwrap_or_default();
                self.error(
                    k.pos,
                    format!("unknown field {key:?} in {what}{hint}; expected one of: {}", known.join(", ")),
                );
                continue;
            }
            out.push((key, v));
        }
        out
    }

    pub fn seq<'n>(&mut self, node: &'n Node, what: &str) -> &'n [Node] {
        match &node.kind {
            NodeKind::Seq(items) => items,
            _ if node.is_null() => &[],
            _ => {
                self.error(node.pos, format!("{what} must be a list, found {}", node.kind_name()));
                &[]
            }
        }
    }

    pub fn string(&mut self, node: &Node, what: &str) -> Option<String> {
        match &node.kind {
            NodeKind::Scalar { text, .. } => Some(text.clone()),
            _ => {
                self.error(node.pos, format!("{what} must be a string, found {}", node.kind_name()));
                None
            }
        }
    }

    pub fn duration(&mut self, node: &Node, what: &str) -> Option<Duration> {
        let text = self.string(node, what)?;
        match parse_duration(&text) {
            Ok(d) => Some(d),
            Err(e) => {
                self.error(node.pos, format!("{what}: {e}"));
                None
            }
        }
    }

    pub fn float(&mut self, node: &Node, what: &str) -> Option<f64> {
        let text = self.string(node, what)?;
        match parse_float(&text) {
            Some(v) => Some(v),
            None => {
                self.error(node.pos, format!("{what}: expected a number, found {text:?}"));
                None
            }
        }
    }

    pub fn boolean(&mut self, node: &Node, what: &str) -> Option<bool> {
        match node.as_str() {
            Some("true" | "True" | "TRUE") => Some(true),
            Some("false" | "False" | "FALSE") => Some(false),
            _ => {
                self.error(node.pos, format!("{what}: expected true or false"));
                None
            }
        }
    }

    /// A mapping of strings to strings (labels, annotations), in file order.
    pub fn string_map(&mut self, node: &Node, what: &str) -> Vec<(String, String, Pos)> {
        let entries = self.map(node, what, &[]);
        let mut out = Vec::with_capacity(entries.len());
        for (k, v) in entries {
            if let Some(s) = self.string(v, &format!("{what}.{k}")) {
                out.push((k.to_string(), s, v.pos));
            }
        }
        out
    }
}

/// Parses a number the way YAML and Prometheus write them (`1e3`, `.5`,
/// `+Inf`, `NaN`, `0x1f`).
pub fn parse_float(text: &str) -> Option<f64> {
    let t = text.trim();
    match t {
        ".inf" | ".Inf" | "+.inf" | "Inf" | "+Inf" | "inf" => return Some(f64::INFINITY),
        "-.inf" | "-.Inf" | "-Inf" | "-inf" => return Some(f64::NEG_INFINITY),
        ".nan" | ".NaN" | "NaN" | "nan" => return Some(f64::NAN),
        _ => {}
    }
    if let Some(hex) = t.strip_prefix("0x") {
        return i64::from_str_radix(hex, 16).ok().map(|v| v as f64);
    }
    if t.chars().any(|c| c.is_ascii_alphabetic() && c != 'e' && c != 'E') {
        return None;
    }
    t.parse::<f64>().ok()
}

/// The known name closest to `word` by edit distance, if reasonably close.
fn closest<'k>(word: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| (edit_distance(word, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn p() -> PathBuf {
        PathBuf::from("t.yaml")
    }

    #[test]
    fn positions_are_one_based() {
        let n = parse("a:\n  b: 1\n", &p()).unwrap();
        let b = n.get("a").unwrap().get("b").unwrap();
        assert_eq!(b.pos, Pos::new(2, 6));
        assert_eq!(b.as_str(), Some("1"));
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let err = parse("a: 1\nb: 2\na: 3\n", &p()).unwrap_err();
        assert_eq!(err.items[0].to_string(), "t.yaml:3:1: duplicate key \"a\"");
    }

    #[test]
    fn syntax_errors_have_positions() {
        let err = parse("a: [1, 2\nb: 3\n", &p()).unwrap_err();
        assert!(err.items[0].message.contains("YAML syntax error"), "{err}");
    }

    #[test]
    fn aliases_resolve() {
        let n = parse("x: &v {k: 1}\ny: *v\n", &p()).unwrap();
        assert_eq!(n.get("y").unwrap().get("k").unwrap().as_str(), Some("1"));
    }

    #[test]
    fn unknown_fields_suggest() {
        let n = parse("alrt: x\n", &p()).unwrap();
        let mut d = Diagnostics::default();
        Reader::new(&p(), &mut d).map(&n, "rule", &["alert", "expr"]);
        assert!(d.items[0].message.contains("did you mean \"alert\""), "{d}");
    }

    #[test]
    fn floats() {
        assert_eq!(parse_float("1e3"), Some(1000.0));
        assert_eq!(parse_float("-2.5"), Some(-2.5));
        assert_eq!(parse_float("+Inf"), Some(f64::INFINITY));
        assert_eq!(parse_float("abc"), None);
        assert_eq!(parse_float("0x10"), Some(16.0));
    }
}
