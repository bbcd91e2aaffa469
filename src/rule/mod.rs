//! Rules: loading rule files (YAML + Rhai), the hardened script engine,
//! evaluation of rules over the series store into candidates, and the alert
//! tracker that turns candidates into alerts with a lifecycle.

pub mod annotation;
pub mod catalogue;
pub mod engine;
pub mod eval;
pub mod expr;
mod file;
pub mod tracker;

pub use eval::{Candidate, ClusterScope, Evaluator, RuleOutcome};
pub use file::{LoadOptions, find_rule_files, find_test_files, is_test_file_name, load_rules, resolve_runbook};
pub use tracker::{AlertEvent, AlertTracker, RuleHealth};

use crate::diag::{Diagnostics, Pos};
use crate::model::{Labels, Severity};
use annotation::{AnnotationTemplates, TemplateId};
use expr::{CmpOp, CompiledExpr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// What one evaluation of a rule sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Per {
    /// One label set (one target) at a time: its metrics as variables.
    #[default]
    Instance,
    /// One cluster at a time: `nodes`, `labels`.
    Cluster,
    /// Everything at once: `clusters`.
    Global,
}

impl Per {
    pub fn as_str(self) -> &'static str {
        match self {
            Per::Instance => "instance",
            Per::Cluster => "cluster",
            Per::Global => "global",
        }
    }
}

/// Everything loaded from a set of rule files, compiled and ready.
pub struct RuleSet {
    pub groups: Vec<RuleGroup>,
    pub templates: AnnotationTemplates,
    pub engine: Arc<rhai::Engine>,
    pub limits: engine::Limits,
    /// How much history the store must keep, per metric.
    pub retention: crate::store::Retention,
    /// Problems that don't stop loading (e.g. a rule without a runbook).
    pub warnings: Diagnostics,
    /// The metric names expressions and scripts read, with positions
    /// (`check` compares them with the metric catalogue).
    pub metric_reads: Vec<catalogue::MetricRead>,
    /// The rule files' `inhibit_rules`: which of their alerts explain which
    /// (added to the pipeline's unless the config leaves them out).
    pub inhibit_rules: Vec<crate::pipeline::InhibitRule>,
}

impl std::fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleSet").field("groups", &self.groups).finish_non_exhaustive()
    }
}

impl RuleSet {
    pub fn rules(&self) -> impl Iterator<Item = &Rule> {
        self.groups.iter().flat_map(|g| g.rules.iter())
    }
    pub fn rule_count(&self) -> usize {
        self.groups.iter().map(|g| g.rules.len()).sum()
    }
}

#[derive(Debug)]
pub struct RuleGroup {
    pub name: String,
    pub file: PathBuf,
    /// `None`: the caller's default evaluation interval.
    pub interval: Option<Duration>,
    pub per: Per,
    pub labels: Labels,
    pub rules: Vec<Rule>,
}

/// Where a rule was defined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    pub pos: Pos,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.pos.line, self.pos.col)
    }
}

#[derive(Debug)]
pub struct Rule {
    pub name: String,
    pub condition: Condition,
    pub hold_for: Duration,
    pub keep_firing_for: Duration,
    pub severity: SeverityPolicy,
    /// Rule labels, including the group's.
    pub labels: Labels,
    pub annotations: Vec<(String, TemplateId)>,
    pub runbook: Option<Runbook>,
    /// Hysteresis: a firing alert stays firing until this holds.
    pub resolve_when: Option<CompiledExpr>,
    pub location: Location,
}

impl Rule {
    /// The longest window the rule reads (an unknown range counts as an
    /// hour): how long a fresh store needs before the rule sees what it saw.
    pub fn longest_range(&self) -> Duration {
        let needs = match &self.condition {
            Condition::Expr(c) => c.ranges.clone(),
            Condition::Script { ast, .. } => expr::range_needs(ast).unwrap_or_default(),
        };
        needs.iter().map(|n| n.range.unwrap_or(Duration::from_secs(3600))).max().unwrap_or_default()
    }
}

#[derive(Debug)]
pub enum Condition {
    Expr(CompiledExpr),
    /// A Rhai script that emits alerts with `alert(#{...})`.
    Script {
        ast: Arc<rhai::AST>,
        path: PathBuf,
    },
}

/// How a rule's tier is chosen.
#[derive(Debug, Clone, PartialEq)]
pub enum SeverityPolicy {
    Fixed(Severity),
    /// Thresholds, most severe first: the first that holds sets the tier.
    Tiers(Vec<Tier>),
}

impl SeverityPolicy {
    /// The least severe tier the rule can raise (for alerts held by hysteresis).
    pub fn least_severe(&self) -> Severity {
        match self {
            SeverityPolicy::Fixed(s) => *s,
            SeverityPolicy::Tiers(t) => t.iter().map(|t| t.severity).max().unwrap_or(Severity::P3),
        }
    }
}

impl Rule {
    /// Per tier (indexed P0..P3): how long an alert's tier must be at least
    /// that severe before the alert is at it; `None` for tiers the rule
    /// never raises. Scripts may emit any tier.
    pub fn tier_holds(&self) -> [Option<Duration>; 4] {
        let mut holds = [None; 4];
        match (&self.condition, &self.severity) {
            (Condition::Script { .. }, _) => holds = [Some(self.hold_for); 4],
            (_, SeverityPolicy::Fixed(s)) => holds[*s as usize] = Some(self.hold_for),
            (_, SeverityPolicy::Tiers(tiers)) => {
                for t in tiers {
                    holds[t.severity as usize] = Some(t.hold_for.unwrap_or(self.hold_for));
                }
            }
        }
        holds
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tier {
    pub severity: Severity,
    pub op: CmpOp,
    pub threshold: f64,
    /// How long the tier's condition must hold before the alert is at this
    /// tier; `None`: the rule's `for`.
    pub hold_for: Option<Duration>,
}

impl Tier {
    /// Parses a threshold such as `> 100` or `>=0.7`.
    pub fn parse_threshold(text: &str) -> Option<(CmpOp, f64)> {
        let t = text.trim();
        let (op, rest) = [">=", "<=", "==", "!=", ">", "<"]
            .iter()
            .find_map(|op| t.strip_prefix(op).map(|rest| (CmpOp::from_token(op), rest)))?;
        Some((op?, crate::yaml::parse_float(rest)?))
    }
}

/// A runbook reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Runbook {
    Url(String),
    /// A shipped runbook: `reference` as written (`zookeeper/node-down`),
    /// `path` the Markdown file it names.
    Local {
        reference: String,
        path: PathBuf,
    },
}

impl Runbook {
    /// The link carried by alerts.
    pub fn link(&self) -> &str {
        match self {
            Runbook::Url(u) => u,
            Runbook::Local { reference, .. } => reference,
        }
    }
}
