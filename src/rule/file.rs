//! Rule files: YAML in Prometheus's shape (`groups[].rules[]`) plus tiers,
//! hysteresis, runbooks and scripts, read with every problem reported at
//! `path:line:col`.

use super::annotation::AnnotationTemplates;
use super::engine::{Limits, build_engine};
use super::expr::{CompiledExpr, ExprError, compile};
use super::{Condition, Location, Per, Rule, RuleGroup, RuleSet, Runbook, SeverityPolicy, Tier};
use crate::diag::{Diagnostics, Pos};
use crate::model::{ALERTNAME, Labels, SEVERITY, Severity};
use crate::pipeline::InhibitRule;
use crate::store::Retention;
use crate::yaml::{self, Node, Reader, Style};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How strict loading is.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadOptions {
    /// A rule without a runbook is an error (`check`), not a warning.
    pub require_runbooks: bool,
    pub limits: Limits,
}

const GROUP_FIELDS: &[&str] = &["name", "interval", "per", "labels", "rules", "limit", "query_offset"];
/// A tier given as a mapping: `P1: { when: "> 1000", for: 5m }`.
const TIER_FIELDS: &[&str] = &["when", "for"];
const RULE_FIELDS: &[&str] = &[
    "alert",
    "expr",
    "script",
    "for",
    "keep_firing_for",
    "severity",
    "tiers",
    "labels",
    "annotations",
    "runbook",
    "resolve_when",
    "record",
];

/// Lists rule files under the given paths: files as given, directories
/// searched recursively for `*.yaml`/`*.yml` that are not tests
/// (`*.test.yaml`), in sorted order.
pub fn find_rule_files(paths: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    find_files(paths, is_rule_file_name)
}

/// Lists rule test files: files as given, directories searched recursively
/// for `*.test.yaml`/`*.test.yml`, in sorted order.
pub fn find_test_files(paths: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    find_files(paths, is_test_file_name)
}

fn find_files(paths: &[PathBuf], wanted: fn(&Path) -> bool) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            walk(p, wanted, &mut out)?;
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

fn walk(dir: &Path, wanted: fn(&Path) -> bool, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.path());
    for e in entries {
        let p = e.path();
        if p.is_dir() {
            walk(&p, wanted, out)?;
        } else if wanted(&p) {
            out.push(p);
        }
    }
    Ok(())
}

fn is_rule_file_name(p: &Path) -> bool {
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
    (name.ends_with(".yaml") || name.ends_with(".yml")) && !is_test_file_name(p)
}

/// `*.test.yaml` / `*.test.yml` are rule tests, not rules.
pub fn is_test_file_name(p: &Path) -> bool {
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.ends_with(".test.yaml") || name.ends_with(".test.yml")
}

/// Loads and compiles rule files. All problems in all files are returned
/// together.
pub fn load_rules(files: &[PathBuf], options: LoadOptions) -> Result<RuleSet, Diagnostics> {
    let engine = Arc::new(build_engine(&options.limits));
    let mut loader = Loader {
        engine: &engine,
        templates: AnnotationTemplates::new(),
        diags: Diagnostics::default(),
        warnings: Diagnostics::default(),
        options,
        retention: Retention::default(),
        metric_reads: Vec::new(),
    };
    let mut groups = Vec::new();
    let mut inhibit_rules = Vec::new();
    for file in files {
        loader.file(file, &mut groups, &mut inhibit_rules);
    }
    if inhibit_rules.len() > crate::pipeline::inhibit::MAX_RULES {
        let (path, pos, _) = &inhibit_rules[crate::pipeline::inhibit::MAX_RULES];
        loader.diags.push(
            path,
            *pos,
            format!(
                "at most {} inhibit rules in all rule files (these have {})",
                crate::pipeline::inhibit::MAX_RULES,
                inhibit_rules.len()
            ),
        );
    }
    if !loader.diags.is_empty() {
        return Err(loader.diags.sorted());
    }
    warn_unknown_alertnames(&groups, &inhibit_rules, &mut loader.warnings);
    Ok(RuleSet {
        groups,
        templates: loader.templates,
        engine: engine.clone(),
        limits: options.limits,
        retention: loader.retention,
        warnings: loader.warnings.sorted(),
        metric_reads: loader.metric_reads,
        inhibit_rules: inhibit_rules.into_iter().map(|(_, _, rule)| rule).collect(),
    })
}

/// Alerts zkalert raises itself, besides those of rule files.
const BUILTIN_ALERTS: &[&str] = &["NotifierFailing"];

/// An inhibit rule whose `alertname` matcher matches no alert of the loaded
/// rules is most likely a typo that silently disables the relation: warn.
fn warn_unknown_alertnames(
    groups: &[RuleGroup],
    inhibit_rules: &[(PathBuf, Pos, InhibitRule)],
    warnings: &mut Diagnostics,
) {
    use crate::pipeline::MatchOp;
    let names: Vec<&str> = groups
        .iter()
        .flat_map(|g| g.rules.iter().map(|r| r.name.as_str()))
        .chain(BUILTIN_ALERTS.iter().copied())
        .collect();
    let is_name = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    for (path, pos, rule) in inhibit_rules {
        for (side, matchers) in [("source", &rule.source), ("target", &rule.target)] {
            for m in matchers.0.iter().filter(|m| m.name == ALERTNAME && matches!(m.op, MatchOp::Eq | MatchOp::Re)) {
                // `A|B|C` is checked name by name: one typo disables one relation.
                let alternatives: Vec<&str> = m.value.split('|').collect();
                if m.op == MatchOp::Re && alternatives.iter().all(|a| is_name(a)) {
                    for a in alternatives.iter().filter(|a| !names.contains(a)) {
                        warnings.push(
                            path,
                            *pos,
                            format!("inhibit rule {side}: {a} in {m} is no alert of the loaded rules"),
                        );
                    }
                } else if !names.iter().any(|n| m.matches(&Labels::from_pairs([(ALERTNAME, *n)]))) {
                    warnings.push(path, *pos, format!("inhibit rule {side}: {m} matches no alert of the loaded rules"));
                }
            }
        }
    }
}

struct Loader<'e> {
    engine: &'e rhai::Engine,
    templates: AnnotationTemplates,
    diags: Diagnostics,
    warnings: Diagnostics,
    options: LoadOptions,
    retention: Retention,
    metric_reads: Vec<super::catalogue::MetricRead>,
}

impl Loader<'_> {
    fn file(&mut self, path: &Path, groups: &mut Vec<RuleGroup>, inhibit_rules: &mut Vec<(PathBuf, Pos, InhibitRule)>) {
        let source = match yaml::read_file(path) {
            Ok(s) => s,
            Err(e) => {
                self.diags.push(path, Pos::new(1, 1), format!("cannot read rule file: {e}"));
                return;
            }
        };
        let root = match yaml::parse(&source, path) {
            Ok(n) => n,
            Err(d) => {
                self.diags.extend(d);
                return;
            }
        };
        let mut diags = Diagnostics::default();
        let mut r = Reader::new(path, &mut diags);
        let top = r.map(&root, "rule file", &["groups", "inhibit_rules"]);
        // A pack's cause → symptom relations may live in a rule file (alone,
        // or beside groups): `inhibit_rules` as in zkalert.yaml, rules only.
        if let Some((_, list)) = top.iter().find(|(k, _)| *k == "inhibit_rules") {
            for item in r.seq(list, "inhibit_rules") {
                if item.as_str().is_some() {
                    r.error(item.pos, "inhibit_rules in a rule file hold rules (source, target, equal), not keywords");
                } else if let Some(rule) = crate::config::inhibit_rule(&mut r, item) {
                    inhibit_rules.push((path.to_path_buf(), item.pos, rule));
                }
            }
        }
        let Some((_, groups_node)) = top.iter().find(|(k, _)| *k == "groups") else {
            if top.is_empty() && (!root.is_null() || source.trim().is_empty()) {
                r.error(root.pos, "rule file has no `groups` (or `inhibit_rules`)");
            }
            self.diags.extend(diags);
            return;
        };
        let groups_node = *groups_node;
        let mut names: std::collections::HashSet<String> = std::collections::HashSet::new();
        for group_node in r.seq(groups_node, "groups") {
            let ctx = FileCtx { path, source: &source };
            if let Some(g) = self.group(&mut r, &ctx, group_node) {
                if !names.insert(g.name.clone()) {
                    r.error(group_node.pos, format!("group name {:?} is used twice in this file", g.name));
                }
                groups.push(g);
            }
        }
        self.diags.extend(diags);
    }

    fn group(&mut self, r: &mut Reader, ctx: &FileCtx, node: &Node) -> Option<RuleGroup> {
        let fields = r.map(node, "group", GROUP_FIELDS);
        let mut name = None;
        let mut interval = None;
        let mut per = Per::Instance;
        let mut labels = Labels::new();
        let mut rule_nodes: &[Node] = &[];
        for (key, value) in &fields {
            match *key {
                "name" => name = r.string(value, "group name"),
                "interval" => {
                    interval = r.duration(value, "interval");
                    let fmt = crate::duration::format_duration;
                    match interval {
                        Some(d) if d.is_zero() => r.error(value.pos, "interval must be greater than zero"),
                        Some(d) if d > crate::config::MAX_INTERVAL => r.error(
                            value.pos,
                            format!(
                                "interval: {} is longer than the limit of {}",
                                fmt(d),
                                fmt(crate::config::MAX_INTERVAL)
                            ),
                        ),
                        _ => {}
                    }
                }
                "per" => match value.as_str() {
                    Some("instance") => per = Per::Instance,
                    Some("cluster") => per = Per::Cluster,
                    Some("global") => per = Per::Global,
                    _ => r.error(value.pos, "per: expected instance, cluster or global"),
                },
                "labels" => labels = r.string_map(value, "labels").into_iter().map(|(k, v, _)| (k, v)).collect(),
                "rules" => rule_nodes = r.seq(value, "rules"),
                _ => {} // limit, query_offset: accepted for Prometheus compatibility
            }
        }
        let Some(name) = name else {
            r.error(node.pos, "group has no `name`");
            return None;
        };
        let mut rules = Vec::new();
        for rule_node in rule_nodes {
            if let Some(rule) = self.rule(r, ctx, rule_node, per, &labels) {
                rules.push(rule);
            }
        }
        Some(RuleGroup { name, file: ctx.path.to_path_buf(), interval, per, labels, rules })
    }

    fn rule(&mut self, r: &mut Reader, ctx: &FileCtx, node: &Node, per: Per, group_labels: &Labels) -> Option<Rule> {
        let fields = r.map(node, "rule", RULE_FIELDS);
        let get = |k: &str| fields.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
        let errors_before = r.diags.len();
        if let Some(n) = get("record") {
            r.error(n.pos, "recording rules are not supported; zkalert rules are alerting rules (`alert:`)");
        }
        let name = match get("alert") {
            Some(n) => r.string(n, "alert")?,
            None => {
                if get("record").is_none() {
                    r.error(node.pos, "rule has no `alert` name");
                }
                return None;
            }
        };
        if !is_valid_label_value_name(&name) {
            r.error(
                get("alert").map_or(node.pos, |n| n.pos),
                format!("alert name {name:?} must match [a-zA-Z_][a-zA-Z0-9_]*"),
            );
        }
        let instance_scope = per == Per::Instance;
        let condition = match (get("expr"), get("script")) {
            (Some(_), Some(s)) => {
                r.error(s.pos, "a rule has either `expr` or `script`, not both");
                None
            }
            (None, None) => {
                r.error(node.pos, "rule has neither `expr` nor `script`");
                None
            }
            (Some(e), None) => self.expr(r, ctx, e, instance_scope).map(Condition::Expr),
            (None, Some(s)) => self.script(r, ctx, s),
        };
        let hold_for = get("for").and_then(|n| r.duration(n, "for")).unwrap_or_default();
        let keep_firing_for = get("keep_firing_for").and_then(|n| r.duration(n, "keep_firing_for")).unwrap_or_default();

        let mut labels = group_labels.clone();
        if let Some(n) = get("labels") {
            let own = r.string_map(n, "labels");
            if let Some((_, _, pos)) = own.iter().find(|(k, _, _)| k == ALERTNAME) {
                r.error(*pos, "label `alertname` is set from `alert`");
            }
            let group = group_labels.iter().map(|(k, v)| (k.to_string(), v.to_string()));
            labels = group.chain(own.into_iter().map(|(k, v, _)| (k, v))).collect();
        }
        let severity = match (get("severity"), get("tiers")) {
            (Some(_), Some(t)) => {
                r.error(t.pos, "a rule has either `severity` or `tiers`, not both");
                None
            }
            (Some(s), None) => {
                let text = r.string(s, "severity")?;
                match text.parse::<Severity>() {
                    Ok(sev) => Some(SeverityPolicy::Fixed(sev)),
                    Err(e) => {
                        r.error(s.pos, format!("severity: {e}"));
                        None
                    }
                }
            }
            (None, Some(t)) => self.tiers(r, t),
            (None, None) => {
                // A Prometheus rule ported as-is: `labels.severity` if it names a
                // tier, else P2, keeping its own label value.
                let from_label = labels.get(SEVERITY).and_then(|s| s.parse::<Severity>().ok());
                Some(SeverityPolicy::Fixed(from_label.unwrap_or(Severity::P2)))
            }
        };
        if matches!(severity, Some(SeverityPolicy::Tiers(_)))
            && let Some(Condition::Expr(CompiledExpr { kind: super::expr::ExprKind::Compare { .. }, .. })) = &condition
            && let Some(e) = get("expr")
        {
            r.error(e.pos, "with `tiers`, `expr` must be a number (e.g. `zk_avg_latency`), not a comparison");
        }
        let mut annotations = Vec::new();
        if let Some(n) = get("annotations") {
            for (k, v, pos) in r.string_map(n, "annotations") {
                match self.templates.add(&v) {
                    Ok(id) => annotations.push((k, id)),
                    Err(e) => {
                        let p = ctx.inner_pos(r_node_style(n.get(&k)), pos, e.line, 1);
                        r.error(p, format!("annotation {k}: template error: {}{}", e.message, go_template_hint(&v)));
                    }
                }
            }
        }
        let runbook = match get("runbook") {
            Some(n) => r.string(n, "runbook").and_then(|text| self.runbook(r, ctx.path, n.pos, &text)),
            None => {
                let msg = format!("rule {name} has no `runbook` (a URL or a path under runbooks/)");
                if self.options.require_runbooks {
                    r.error(node.pos, msg);
                } else {
                    self.warnings.push(ctx.path, node.pos, msg);
                }
                None
            }
        };
        let resolve_when = get("resolve_when").and_then(|n| self.expr(r, ctx, n, instance_scope));
        if r.diags.len() > errors_before {
            return None;
        }
        Some(Rule {
            name,
            condition: condition?,
            hold_for,
            keep_firing_for,
            severity: severity?,
            labels,
            annotations,
            runbook,
            resolve_when,
            location: Location { file: ctx.path.to_path_buf(), pos: node.pos },
        })
    }

    fn expr(&mut self, r: &mut Reader, ctx: &FileCtx, node: &Node, instance_scope: bool) -> Option<CompiledExpr> {
        let text = r.string(node, "expr")?;
        match compile(self.engine, &text, instance_scope) {
            Ok(c) => {
                let (certain, maybe) = names_read(&c.metrics, c.scripts());
                for (name, certain) in
                    certain.into_iter().map(|n| (n, true)).chain(maybe.into_iter().map(|n| (n, false)))
                {
                    let pos = super::catalogue::find_word(&text, &name)
                        .map_or(node.pos, |(line, col)| ctx.inner_pos(node.style(), node.pos, line, col));
                    self.metric_reads.push(super::catalogue::MetricRead {
                        name,
                        path: ctx.path.to_path_buf(),
                        pos,
                        certain,
                    });
                }
                self.retention.add(&c.ranges);
                for ast in c.scripts() {
                    self.retention.add_reads(super::expr::read_names(ast).0);
                }
                self.retention.read.extend(c.metrics.iter().cloned());
                Some(c)
            }
            Err(ExprError { line, col, message }) => {
                let pos = ctx.inner_pos(node.style(), node.pos, line, col);
                r.error(pos, format!("expression: {message}{}", promql_hint(&text)));
                None
            }
        }
    }

    fn script(&mut self, r: &mut Reader, ctx: &FileCtx, node: &Node) -> Option<Condition> {
        let rel = r.string(node, "script")?;
        let path = ctx.path.parent().unwrap_or(Path::new(".")).join(&rel);
        let source = match yaml::read_file(&path) {
            Ok(s) => s,
            Err(e) => {
                r.error(node.pos, format!("cannot read script {}: {e}", path.display()));
                return None;
            }
        };
        match self.engine.compile(&source) {
            Ok(ast) => {
                self.retention.add_reads(super::expr::read_names(&ast).0);
                match super::expr::range_needs(&ast) {
                    Ok(needs) => {
                        let (certain, maybe) = names_read(&[], std::iter::once(&ast));
                        for (name, certain) in
                            certain.into_iter().map(|n| (n, true)).chain(maybe.into_iter().map(|n| (n, false)))
                        {
                            let pos = super::catalogue::find_word(&source, &name)
                                .map_or(Pos::new(1, 1), |(line, col)| Pos::new(line, col));
                            self.metric_reads.push(super::catalogue::MetricRead {
                                name,
                                path: path.clone(),
                                pos,
                                certain,
                            });
                        }
                        self.retention.add(&needs)
                    }
                    Err((msg, line, col)) => self.diags.push(&path, Pos::new(line, col), format!("script: {msg}")),
                }
                Some(Condition::Script { ast: Arc::new(ast), path })
            }
            Err(e) => {
                let p = e.position();
                self.diags.push(
                    &path,
                    Pos::new(p.line().unwrap_or(1), p.position().unwrap_or(1)),
                    format!("script: {}", e.err_type()),
                );
                None
            }
        }
    }

    /// `tiers: { P2: "> 100", P1: "> 1000" }`; a tier may hold for its own
    /// time: `P1: { when: "> 1000", for: 5m }`.
    fn tiers(&mut self, r: &mut Reader, node: &Node) -> Option<SeverityPolicy> {
        let yaml::NodeKind::Map(entries) = &node.kind else {
            r.error(node.pos, "tiers must be a mapping like { P2: \"> 100\", P1: { when: \"> 1000\", for: 5m } }");
            return None;
        };
        let mut tiers = Vec::new();
        let mut ok = true;
        for (k, v) in entries.iter() {
            let key = k.as_str().unwrap_or("");
            let Ok(severity) = key.parse::<Severity>() else {
                r.error(k.pos, format!("unknown tier {key:?} in tiers: expected P0, P1, P2 or P3"));
                ok = false;
                continue;
            };
            let (when, hold_for) = match &v.kind {
                yaml::NodeKind::Map(_) => {
                    let errors_before = r.diags.len();
                    let fields = r.map(v, &format!("tier {key}"), TIER_FIELDS);
                    let get = |k: &str| fields.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
                    let hold_for = get("for").and_then(|n| r.duration(n, &format!("tier {key}: for")));
                    ok &= r.diags.len() == errors_before;
                    match get("when") {
                        Some(w) => (w, hold_for),
                        None => {
                            r.error(v.pos, format!("tier {key} needs `when`, like {{ when: \"> 1000\", for: 5m }}"));
                            ok = false;
                            continue;
                        }
                    }
                }
                _ => (v, None),
            };
            let text = when.as_str().unwrap_or("");
            match Tier::parse_threshold(text) {
                Some((op, threshold)) => tiers.push(Tier { severity, op, threshold, hold_for }),
                None => {
                    r.error(
                        when.pos,
                        format!("tier {key}: threshold {text:?} must be an operator and a number, like \"> 100\""),
                    );
                    ok = false;
                }
            }
        }
        if tiers.is_empty() && ok {
            r.error(node.pos, "tiers is empty");
            return None;
        }
        tiers.sort_by_key(|t| t.severity);
        ok.then_some(SeverityPolicy::Tiers(tiers))
    }

    fn runbook(&mut self, r: &mut Reader, rule_file: &Path, pos: Pos, text: &str) -> Option<Runbook> {
        if crate::notify::http::is_http_url(text) {
            return Some(Runbook::Url(text.to_string()));
        }
        if text.trim().is_empty() {
            r.error(pos, "runbook is empty");
            return None;
        }
        match resolve_runbook(rule_file, text) {
            Some(path) => Some(Runbook::Local { reference: text.to_string(), path }),
            None => {
                r.error(
                    pos,
                    format!(
                        "runbook {text:?} not found: no runbooks/{text}.md beside this file or in a parent directory"
                    ),
                );
                None
            }
        }
    }
}

/// Looks for `runbooks/<reference>.md` (or the exact path) in the rule
/// file's directory and each parent.
pub fn resolve_runbook(rule_file: &Path, reference: &str) -> Option<PathBuf> {
    let reference = reference.trim_start_matches("runbooks/");
    let start = rule_file.parent().unwrap_or(Path::new("."));
    let start = if start.as_os_str().is_empty() { Path::new(".") } else { start };
    for dir in start.ancestors() {
        let base = dir.join("runbooks");
        for candidate in [base.join(format!("{reference}.md")), base.join(reference)] {
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    None
}

fn is_valid_label_value_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn r_node_style(n: Option<&Node>) -> Option<Style> {
    n.and_then(Node::style)
}

/// The names an expression or script reads: (for sure metrics — instance
/// variables, literal names given to window functions, `value`, `absent`;
/// maybe metrics — the rest of what the scripts read), each once.
fn names_read<'a>(variables: &[String], scripts: impl Iterator<Item = &'a rhai::AST>) -> (Vec<String>, Vec<String>) {
    let scripts: Vec<&rhai::AST> = scripts.collect();
    let mut certain: Vec<String> = variables.to_vec();
    for ast in &scripts {
        for m in super::expr::literal_metric_args(ast) {
            if !certain.contains(&m) {
                certain.push(m);
            }
        }
    }
    let mut maybe: Vec<String> = Vec::new();
    for ast in scripts {
        for n in super::expr::read_names(ast).0 {
            if !certain.contains(&n) && !maybe.contains(&n) {
                maybe.push(n);
            }
        }
    }
    (certain, maybe)
}

/// How zkalert spells what a PromQL habit in a failing expression meant.
fn promql_hint(text: &str) -> String {
    let mut hints = Vec::new();
    // `x[1m]`: a range selector.
    if let Some(open) = text.find('[') {
        let name_start = text[..open].rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).map_or(0, |i| i + 1);
        let name = &text[name_start..open];
        if let Some(close) = text[open..].find(']').map(|c| c + open) {
            let range = text[open + 1..close].trim();
            if !name.is_empty() && crate::duration::parse_duration(range).is_ok() {
                hints.push(format!(
                    "PromQL's range `{name}[{range}]` is `rate(\"{name}\", \"{range}\")` (or another window function: increase, avg_over_time, …)"
                ));
            }
        }
    }
    let words: Vec<&str> = text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).collect();
    if words.iter().any(|w| matches!(*w, "and" | "or" | "unless")) {
        hints.push("`and`/`or`/`unless` are `&&`/`||`/`!` in zkalert expressions".to_string());
    }
    if hints.is_empty() { String::new() } else { format!(" (hint: {})", hints.join("; ")) }
}

/// How zkalert spells a Go-template habit (`{{ .Labels.x }}`,
/// `{{ .Value }}`) in an annotation that does not compile.
fn go_template_hint(text: &str) -> String {
    let mut hints = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else { break };
        let inner = after[..close].trim();
        let ours = match inner.strip_prefix('.') {
            Some(path) if path.starts_with("Labels.") => Some(format!("labels.{}", &path["Labels.".len()..])),
            Some("Value") => Some("value".to_string()),
            _ => None,
        };
        if let Some(ours) = ours {
            hints.push(format!("`{{{{ {inner} }}}}` is `{{{{ {ours} }}}}`"));
        }
        rest = &after[close + 2..];
    }
    if hints.is_empty() { String::new() } else { format!(" (hint: {})", hints.join("; ")) }
}

/// The file being read, for mapping positions inside scalars to the file.
struct FileCtx<'a> {
    path: &'a Path,
    source: &'a str,
}

impl FileCtx<'_> {
    /// Maps (line, col) inside a scalar's text to the file.
    fn inner_pos(&self, style: Option<Style>, node_pos: Pos, line: usize, col: usize) -> Pos {
        match style {
            Some(Style::Literal | Style::Folded) => {
                // The scalar's position is its first content line; content is
                // indented by that line's indentation.
                let file_line = node_pos.line + line - 1;
                let indent =
                    self.source.lines().nth(node_pos.line - 1).map(|l| l.len() - l.trim_start().len()).unwrap_or(0);
                let indent_here = self
                    .source
                    .lines()
                    .nth(file_line - 1)
                    .map(|l| (l.len() - l.trim_start().len()).min(indent))
                    .unwrap_or(indent);
                Pos::new(file_line, indent_here + col)
            }
            Some(Style::SingleQuoted | Style::DoubleQuoted) if line == 1 => Pos::new(node_pos.line, node_pos.col + col),
            _ if line == 1 => Pos::new(node_pos.line, node_pos.col + col - 1),
            _ => Pos::new(node_pos.line + line - 1, col),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{assert_contains_all, rules_from_yaml};

    /// Loading `yaml` fails, and its errors include each of `wanted`.
    fn assert_errors(yaml: &str, wanted: &[&str]) {
        assert_contains_all(&rules_from_yaml(yaml).unwrap_err().to_string(), wanted);
    }

    #[test]
    fn a_runbook_url_in_any_case_is_a_url_not_a_file() {
        let rs = rules_from_yaml(
            "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: x\n    runbook: HTTPS://wiki.example/ZK\n",
        )
        .unwrap();
        let rule = rs.rules().next().unwrap();
        assert!(matches!(&rule.runbook, Some(Runbook::Url(u)) if u == "HTTPS://wiki.example/ZK"), "{:?}", rule.runbook);
    }

    #[test]
    fn tiers_are_sorted_most_severe_first() {
        let rs = rules_from_yaml("groups:\n- name: g\n  rules:\n  - alert: A\n    expr: x\n    tiers: { P2: \"> 100\", P0: \"> 1000\", P1: \">= 500\" }\n").unwrap();
        let rule = rs.rules().next().unwrap();
        let SeverityPolicy::Tiers(t) = &rule.severity else { panic!() };
        assert_eq!(t.iter().map(|t| t.severity).collect::<Vec<_>>(), vec![Severity::P0, Severity::P1, Severity::P2]);
    }

    #[test]
    fn reports_every_error_with_positions() {
        let yaml = "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: up == \n    for: 5x\n    colour: red\n    tiers: { P9: \"> 1\" }\n";
        assert_errors(
            yaml,
            &[
                ":5:16: expression:",
                ":6:10: for: invalid duration",
                ":7:5: unknown field \"colour\"",
                ":8:14: unknown tier \"P9\"",
            ],
        );
    }

    #[test]
    fn a_tier_may_set_its_own_for() {
        let yaml = "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: x\n    for: 1m\n    tiers:\n      P2: \"> 10\"\n      P1: { when: \"> 100\", for: 5m }\n      P0: { when: \">= 1000\" }\n";
        let rs = rules_from_yaml(yaml).unwrap();
        let rule = rs.rules().next().unwrap();
        let SeverityPolicy::Tiers(t) = &rule.severity else { panic!() };
        let minutes = |m: u64| Some(std::time::Duration::from_secs(m * 60));
        assert_eq!(
            t.iter().map(|t| (t.severity, t.threshold, t.hold_for)).collect::<Vec<_>>(),
            [(Severity::P0, 1000.0, None), (Severity::P1, 100.0, minutes(5)), (Severity::P2, 10.0, None)]
        );
        assert_eq!(rule.tier_holds(), [minutes(1), minutes(5), minutes(1), None], "the rule's `for` by default");
    }

    #[test]
    fn bad_tier_mappings_are_reported_with_positions() {
        let yaml = "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: x\n    tiers:\n      P3: { when: \"> 1\", for: 5x }\n      P2: { for: 5m }\n      P1: { when: \"> 100\", hold: 5m }\n      P0: { when: \"lots\" }\n";
        assert_errors(
            yaml,
            &[
                ":7:31: tier P3: for: invalid duration",
                ":8:11: tier P2 needs `when`",
                ":9:28: unknown field \"hold\" in tier P1",
                ":10:19: tier P0: threshold \"lots\"",
            ],
        );
    }

    #[test]
    fn inhibit_rules_in_rule_files_load_with_positions_and_warn_on_unknown_alertnames() {
        let dir = tempfile::tempdir().unwrap();
        let rules = dir.path().join("rules.yaml");
        std::fs::write(
            &rules,
            "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: up == 0\n  - alert: B\n    expr: up == 0\n",
        )
        .unwrap();
        let inhibit = dir.path().join("inhibit.yaml");
        std::fs::write(
            &inhibit,
            "inhibit_rules:\n  - source: '{alertname=\"A\"}'\n    target: '{alertname=~\"B|NotifierFailing\"}'\n    equal: [cluster]\n  - source: '{alertname=\"Typo\"}'\n    target: '{alertname=~\"B|Bee\"}'\n",
        )
        .unwrap();
        let set = load_rules(&[rules.clone(), inhibit.clone()], LoadOptions::default()).unwrap();
        assert_eq!(set.inhibit_rules.len(), 2);
        assert_eq!(set.inhibit_rules[0].equal, ["cluster"]);
        let warnings = set.warnings.to_string();
        assert!(
            warnings.contains(&format!(
                "{}:5:5: inhibit rule source: alertname=\"Typo\" matches no alert",
                inhibit.display()
            )),
            "{warnings}"
        );
        assert!(warnings.contains(":5:5: inhibit rule target: Bee in alertname=~\"B|Bee\" is no alert"), "{warnings}");
        assert!(!warnings.contains("NotifierFailing"), "a built-in alert is known: {warnings}");

        std::fs::write(&inhibit, "inhibit_rules:\n  - defaults\n  - source: '{a=~\"(\"}'\n    target: '{b=\"c\"}'\n  - {target: '{b=\"c\"}'}\n")
            .unwrap();
        let err = load_rules(std::slice::from_ref(&inhibit), LoadOptions::default()).unwrap_err().to_string();
        assert_contains_all(
            &err,
            &[
                ":2:5: inhibit_rules in a rule file hold rules",
                ":3:13: source: invalid regex",
                ":5:5: inhibit rule needs `source` and `target`",
            ],
        );
    }

    #[test]
    fn window_ranges_are_bounded() {
        let yaml = "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: rate(\"m\", \"1000y\") > 1\n  - alert: B\n    expr: rate(\"m\", \"0s\") > 1\n  - alert: C\n    expr: rate(\"m\", \"7d\") > 1\n";
        let err = rules_from_yaml(yaml).unwrap_err().to_string();
        assert!(
            err.contains(":5:21: expression: rate(): invalid duration \"1000y\": a window may be at most 7d"),
            "{err}"
        );
        assert!(
            err.contains(":7:21: expression: rate(): invalid duration \"0s\": a window must be longer than zero"),
            "{err}"
        );
        assert!(!err.contains(":9:"), "7d is allowed: {err}");
    }

    #[test]
    fn group_intervals_are_bounded() {
        let yaml = "groups:\n- name: a\n  interval: 0s\n  rules: []\n- name: b\n  interval: 1000y\n  rules: []\n";
        assert_errors(
            yaml,
            &[":3:13: interval must be greater than zero", ":6:13: interval: 1000y is longer than the limit of 1h"],
        );
    }

    #[test]
    fn block_scalar_positions() {
        let yaml = "groups:\n- name: g\n  per: cluster\n  rules:\n  - alert: A\n    expr: |\n      nodes.filter(|n| n.role == \"leader\")\n        .len() > > 1\n";
        let err = rules_from_yaml(yaml).unwrap_err();
        assert!(err.to_string().contains(":8:18:"), "{err}");
    }
}
