//! YAML as a tree of nodes that remember where they came from, so every
//! problem in a rule, test or config file is reported at `path:line:col`,
//! all of them at once (a serde error would stop at the first).
//!
//! Built on `saphyr-parser` events: duplicate keys are errors at the second
//! key's position, aliases are resolved, and plain scalars keep their text so
//! `"1"` (a string) and `1` (a number) stay distinguishable.
//!
//! Bounded, because these files come from users. An alias shares the
//! anchored subtree instead of copying it, but whoever reads the tree walks
//! it expanded, so the limits are on the expanded document: at most
//! [`MAX_NODES`] nodes holding at most [`MAX_TEXT_BYTES`] of scalar text,
//! nested at most [`MAX_DEPTH`] deep; a "billion laughs" file of nested
//! aliases is refused at the alias that crosses a limit. [`read_file`]
//! refuses files over [`MAX_FILE_BYTES`].

use crate::diag::{Diagnostics, Pos};
use crate::duration::parse_duration;
use saphyr_parser::{Event, Parser, ScalarStyle};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    Scalar {
        text: String,
        style: Style,
    },
    /// Shared, so an alias costs a pointer, not a copy.
    Seq(Arc<Vec<Node>>),
    Map(Arc<Vec<(Node, Node)>>),
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

/// Most nodes a document may have, each alias counted as the nodes it
/// expands to. The shipped rule pack's largest file has a few thousand;
/// the bound keeps a hostile file's tree (and every walk over it) small.
pub const MAX_NODES: usize = 1_000_000;

/// Most scalar text a document may hold, aliases expanded.
pub const MAX_TEXT_BYTES: usize = 16 * 1024 * 1024;

/// Deepest nesting of lists and mappings, aliases expanded (rule files nest
/// about 8 deep). Building and dropping the tree recurse, so this also
/// bounds the stack.
pub const MAX_DEPTH: usize = 64;

/// Largest rule, script, config, test, template or secret file read: 25
/// times the largest shipped file (21 KiB), and small enough that the tree
/// of any file within it stays well under 100 MB (a tree takes up to ~100
/// times its text: a 512 KiB list of 262,000 numbers is ~50 MB).
pub const MAX_FILE_BYTES: u64 = 512 * 1024;

/// Why a user's file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{size} bytes is larger than the limit of {limit} bytes", limit = MAX_FILE_BYTES)]
    TooLarge { size: u64 },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Reads a user's file (rule, script, config, test, template) as text,
/// refusing files over [`MAX_FILE_BYTES`] before reading them.
pub fn read_file(path: &Path) -> Result<String, ReadError> {
    use std::io::Read as _;
    let file = std::fs::File::open(path)?;
    let size = file.metadata()?.len();
    if size > MAX_FILE_BYTES {
        return Err(ReadError::TooLarge { size });
    }
    // The size can change between the check and the read (a growing
    // file, a FIFO): never read more than the limit.
    let mut text = String::new();
    file.take(MAX_FILE_BYTES + 1).read_to_string(&mut text)?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(ReadError::TooLarge { size: text.len() as u64 });
    }
    Ok(text)
}

/// Parses one YAML document. An empty document is a null node.
pub fn parse(source: &str, path: &Path) -> Result<Node, Diagnostics> {
    let mut builder = Builder {
        path,
        anchors: HashMap::new(),
        size: Expanded::default(),
        depth: 0,
        last_height: 0,
        diags: Diagnostics::default(),
    };
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
    /// Anchored nodes with what each stands for expanded.
    anchors: HashMap<usize, (Node, Expanded)>,
    /// The document so far, aliases expanded.
    size: Expanded,
    /// Lists and mappings open around the current event.
    depth: usize,
    /// Levels of lists and mappings in the node `node` returned last,
    /// aliases expanded.
    last_height: usize,
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
        if let Event::Alias(id) = event {
            let Some((anchored, expanded)) = self.anchors.get(&id).cloned() else {
                self.diags.push(self.path, pos, "alias refers to an unknown anchor");
                return None;
            };
            self.grow(expanded, pos, true)?;
            self.last_height = expanded.height;
            return Some(Node { kind: anchored.kind, pos });
        }
        let before = self.size;
        let (node, anchor) = match event {
            Event::Scalar(text, style, anchor, _tag) => {
                self.grow(Expanded { nodes: 1, text_bytes: text.len(), height: 0 }, pos, false)?;
                self.last_height = 0;
                let style = match style {
                    ScalarStyle::Plain => Style::Plain,
                    ScalarStyle::SingleQuoted => Style::SingleQuoted,
                    ScalarStyle::DoubleQuoted => Style::DoubleQuoted,
                    ScalarStyle::Literal => Style::Literal,
                    ScalarStyle::Folded => Style::Folded,
                };
                // The parser's buffer is often larger than the text.
                let mut text = text.into_owned();
                text.shrink_to_fit();
                (Node { kind: NodeKind::Scalar { text, style }, pos }, anchor)
            }
            Event::SequenceStart(anchor, _) => {
                self.enter(pos)?;
                let mut items = Vec::new();
                let mut height = 0;
                loop {
                    match self.next(events)? {
                        (Event::SequenceEnd, _) => break,
                        (ev, sp) => items.push(self.node(ev, sp, events)?),
                    }
                    height = height.max(self.last_height);
                }
                self.depth -= 1;
                self.last_height = height + 1;
                items.shrink_to_fit();
                (Node { kind: NodeKind::Seq(Arc::new(items)), pos }, anchor)
            }
            Event::MappingStart(anchor, _) => {
                self.enter(pos)?;
                let mut entries: Vec<(Node, Node)> = Vec::new();
                let mut height = 0;
                loop {
                    let key = match self.next(events)? {
                        (Event::MappingEnd, _) => break,
                        (ev, sp) => self.node(ev, sp, events)?,
                    };
                    height = height.max(self.last_height);
                    let (ev, sp) = self.next(events)?;
                    let value = self.node(ev, sp, events)?;
                    height = height.max(self.last_height);
                    entries.push((key, value));
                }
                // One set lookup per key, not a scan of the keys before it.
                let mut seen: HashSet<&str> = HashSet::with_capacity(entries.len());
                for (key, _) in &entries {
                    if let Some(k) = key.as_str()
                        && !seen.insert(k)
                    {
                        self.diags.push(self.path, key.pos, format!("duplicate key {k:?}"));
                    }
                }
                self.depth -= 1;
                self.last_height = height + 1;
                entries.shrink_to_fit();
                (Node { kind: NodeKind::Map(Arc::new(entries)), pos }, anchor)
            }
            other => {
                self.diags.push(self.path, pos, format!("unexpected YAML event {other:?}"));
                return None;
            }
        };
        if anchor > 0 {
            let expanded = Expanded {
                nodes: self.size.nodes - before.nodes,
                text_bytes: self.size.text_bytes - before.text_bytes,
                height: self.last_height,
            };
            self.anchors.insert(anchor, (node.clone(), expanded));
        }
        Some(node)
    }

    /// Adds a subtree (a node, or an alias's whole expansion) at the current
    /// depth; past a limit, an error at `pos` and `None`.
    fn grow(&mut self, add: Expanded, pos: Pos, alias: bool) -> Option<()> {
        let nodes = self.size.nodes.saturating_add(add.nodes);
        let text_bytes = self.size.text_bytes.saturating_add(add.text_bytes);
        let depth = self.depth + add.height;
        let problem = if nodes > MAX_NODES {
            format!("more than {MAX_NODES} nodes")
        } else if text_bytes > MAX_TEXT_BYTES {
            format!("more than {MAX_TEXT_BYTES} bytes of text")
        } else if depth > MAX_DEPTH {
            format!("nested deeper than {MAX_DEPTH} levels")
        } else {
            self.size = Expanded { nodes, text_bytes, height: 0 };
            return Some(());
        };
        let message = if alias {
            format!("document too large with aliases expanded: {problem} (this alias stands for {} nodes)", add.nodes)
        } else if depth > MAX_DEPTH {
            problem
        } else {
            format!("document too large: {problem}")
        };
        self.diags.push(self.path, pos, message);
        None
    }

    /// Opens a list or mapping (itself one node); past [`MAX_DEPTH`], an
    /// error at `pos`.
    fn enter(&mut self, pos: Pos) -> Option<()> {
        self.grow(Expanded { nodes: 1, text_bytes: 0, height: 1 }, pos, false)?;
        self.depth += 1;
        Some(())
    }
}

/// A document or subtree as its readers see it, aliases expanded.
#[derive(Debug, Clone, Copy, Default)]
struct Expanded {
    nodes: usize,
    text_bytes: usize,
    /// Levels of lists and mappings in an anchored subtree (unused for the
    /// whole document: `Builder::depth` is checked as it goes).
    height: usize,
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
        self.map_noting(node, what, known, |_| None)
    }

    /// [`Reader::map`], with `note(key)` added to an unknown key's message
    /// (e.g. which other kinds of thing take that key).
    pub fn map_noting<'n>(
        &mut self,
        node: &'n Node,
        what: &str,
        known: &[&str],
        note: impl Fn(&str) -> Option<String>,
    ) -> Vec<(&'n str, &'n Node)> {
        let NodeKind::Map(entries) = &node.kind else {
            if !node.is_null() {
                self.error(node.pos, format!("{what} must be a mapping, found {}", node.kind_name()));
            }
            return Vec::new();
        };
        let mut out = Vec::with_capacity(entries.len());
        for (k, v) in entries.iter() {
            let Some(key) = k.as_str() else {
                self.error(k.pos, format!("{what}: keys must be scalars"));
                continue;
            };
            if !known.is_empty() && !known.contains(&key) {
                let hint = closest(key, known)
                    .map(|c| format!(" (did you mean {c:?}?)"))
                    .or_else(|| note(key).map(|n| format!(" ({n})")))
                    .unwrap_or_default();
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
pub(crate) fn closest<'k>(word: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| (crate::diag::edit_distance(word, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
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

    /// The classic "billion laughs" (342 bytes): 10^9 strings once expanded.
    const ALIAS_BOMB: &str = include_str!("../tests/fixtures/yaml/alias-bomb.yaml");

    #[test]
    fn alias_expansion_is_bounded_and_refused_at_the_alias() {
        // Seven levels (4.8 M strings) would still fit in memory unbounded;
        // refused all the same, at the alias that crosses the limit.
        let bomb: String = ALIAS_BOMB.lines().take(7).map(|l| format!("{l}\n")).collect();
        let err = parse(&bomb, &p()).unwrap_err();
        assert_eq!(err.len(), 1, "{err}");
        let d = &err.items[0];
        assert!(d.message.contains("document too large with aliases expanded: more than 1000000 nodes"), "{d}");
        assert_eq!(d.pos.line, 7, "{d}");
        assert!(d.pos.col > 7, "at an alias of line 7: {d}");
        let err = parse(ALIAS_BOMB, &p()).unwrap_err();
        assert!(err.items[0].message.contains("with aliases expanded"), "{err}");
        // Ordinary use of anchors still works.
        let n = parse("l: &l {team: zk}\nr: [*l, *l, *l]\n", &p()).unwrap();
        assert_eq!(n.get("r").map(|r| r.kind_name()), Some("a list"));
    }

    #[test]
    fn anchored_subtrees_are_shared_not_copied() {
        // 40 anchors around one list: no copies, so no growth.
        let list = format!("[{}]", vec!["1"; 50_000].join(","));
        let mut doc = list.clone();
        for i in 0..40 {
            doc = format!("&a{i} [{doc}]");
        }
        assert!(parse(&format!("x: {doc}\n"), &p()).is_ok());
        // Text counts as read: a 1 MiB string used 20 times is 20 MiB.
        let big = "x".repeat(1 << 20);
        let doc = format!("s: &s {big}\nl: [{}]\n", vec!["*s"; 20].join(", "));
        let err = parse(&doc, &p()).unwrap_err();
        assert!(err.items[0].message.contains("more than 16777216 bytes of text"), "{err}");
    }

    #[test]
    fn aliases_cannot_nest_past_the_depth_limit() {
        let mut doc = String::from("a0: &a0 [[[[[[[[[[1]]]]]]]]]]\n");
        for i in 1..10 {
            doc.push_str(&format!("a{i}: &a{i} [[[[[[[[[[*a{}]]]]]]]]]]\n", i - 1));
        }
        let err = parse(&doc, &p()).unwrap_err();
        assert!(err.items[0].message.contains("nested deeper than 64 levels"), "{err}");
        assert_eq!(err.items[0].pos.line, 7, "{err}");
    }

    #[test]
    fn nesting_depth_is_bounded() {
        let deep = format!("{}1\n", "- ".repeat(10_000));
        let err = parse(&deep, &p()).unwrap_err();
        assert!(err.items[0].message.contains("nested deeper than 64 levels"), "{err}");
        let ok = format!("{}1\n", "- ".repeat(60));
        assert!(parse(&ok, &p()).is_ok());
    }

    #[test]
    fn duplicate_key_check_is_linear() {
        // 200,000 keys: minutes with a pairwise check, well under a second
        // with a set (5 s allows for a loaded debug build).
        let mut doc = String::new();
        for i in 0..200_000 {
            doc.push_str(&format!("k{i}: {i}\n"));
        }
        doc.push_str("k17: again\n");
        let started = std::time::Instant::now();
        let err = parse(&doc, &p()).unwrap_err();
        let took = started.elapsed();
        assert_eq!(err.items[0].to_string(), "t.yaml:200001:1: duplicate key \"k17\"");
        assert!(took < Duration::from_secs(5), "200,000 keys took {took:?}");
    }

    #[test]
    fn files_over_the_size_limit_are_refused_unread() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.yaml");
        let f = std::fs::File::create(&big).unwrap();
        f.set_len(MAX_FILE_BYTES + 1).unwrap();
        let err = read_file(&big).unwrap_err().to_string();
        assert_eq!(err, format!("{} bytes is larger than the limit of {MAX_FILE_BYTES} bytes", MAX_FILE_BYTES + 1));
        let ok = dir.path().join("ok.yaml");
        std::fs::write(&ok, "a: 1\n").unwrap();
        assert_eq!(read_file(&ok).unwrap(), "a: 1\n");
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
