//! Evaluating rules over the series store: each rule, at one instant, gives
//! candidates (label set, value, tier, rendered annotations) for the tracker.
//! `per: instance` rules run once per label group, `per: cluster` once per
//! cluster with `nodes`, `per: global` once with `clusters`.

use super::engine::{FrameGuard, describe_error, labels_map};
use super::expr::{CompiledExpr, EvalFailure, ExprKind, Operand, Value, compare, eval_script};
use super::tracker::{AlertEvent, AlertTracker, RuleState};
use super::{Condition, Per, Rule, RuleSet, SeverityPolicy};
use crate::model::{ALERTNAME, Alert, Annotations, Fingerprint, Labels, SEVERITY, Severity, Timestamp};
use crate::store::{GroupId, MetricId, SeriesStore};
use rhai::{Array, Dynamic, Map, Scope};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One alert a rule produced at one evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// Pending, active from the evaluation time, with the target's info
    /// labels (which are not identity: see [`Alert`]). Its tier (labels,
    /// annotations) is `condition_tier` once that has held for its `for`
    /// (see [`RuleState::tier_step`]).
    pub alert: Alert,
    /// The most severe tier whose condition holds now.
    pub condition_tier: Severity,
    /// The cluster of the target that produced it (an instance's `cluster`
    /// label, a cluster rule's cluster; none for global rules): what a
    /// [`ClusterScope`]d evaluation may touch.
    pub cluster: Option<String>,
}

/// The clusters an evaluation on arrival covers: those whose data just
/// landed. Rules run over their targets only, and alerts of other clusters
/// are left as they are (not resolved, not fired), so the cost of an
/// evaluation follows the polls that landed, not the fleet.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ClusterScope {
    clusters: rustc_hash::FxHashSet<String>,
    /// Targets without a `cluster` label.
    unclustered: bool,
}

impl ClusterScope {
    pub fn insert(&mut self, cluster: Option<&str>) {
        match cluster {
            Some(c) if !self.clusters.contains(c) => {
                self.clusters.insert(c.to_string());
            }
            Some(_) => {}
            None => self.unclustered = true,
        }
    }

    pub fn contains(&self, cluster: Option<&str>) -> bool {
        cluster.map_or(self.unclustered, |c| self.clusters.contains(c))
    }

    pub fn is_empty(&self) -> bool {
        self.clusters.is_empty() && !self.unclustered
    }
}

/// What evaluating one rule once produced.
#[derive(Debug, Default)]
pub struct RuleOutcome {
    pub candidates: Vec<Candidate>,
    /// Alerts whose instance failed to evaluate: kept as they are.
    pub held: Vec<Fingerprint>,
    /// The first error, with how many instances failed.
    pub error: Option<String>,
    pub duration: Duration,
}

/// Runs a rule set against a store, group by group on each group's interval,
/// and keeps the alert tracker.
pub struct Evaluator {
    pub rules: Arc<RuleSet>,
    pub tracker: AlertTracker,
    default_interval: Duration,
    next_due: Vec<Timestamp>,
}

impl Evaluator {
    pub fn new(rules: Arc<RuleSet>, default_interval: Duration) -> Self {
        let tracker = AlertTracker::new(rules.rules());
        let next_due = vec![Timestamp::from_millis(i64::MIN); rules.groups.len()];
        Self { rules, tracker, default_interval, next_due }
    }

    /// The evaluator of `rules` (a reload) with `tracker`'s rule states;
    /// each group keeps its schedule by name, a new group is due at once.
    pub fn reloaded(&self, rules: Arc<RuleSet>, default_interval: Duration, tracker: AlertTracker) -> Self {
        let due_of = |name: &str| self.rules.groups.iter().position(|g| g.name == name).map(|i| self.next_due[i]);
        let next_due =
            rules.groups.iter().map(|g| due_of(&g.name).unwrap_or(Timestamp::from_millis(i64::MIN))).collect();
        Self { rules, tracker, default_interval, next_due }
    }

    /// When `group` is next evaluated whole.
    pub fn next_due_of(&self, group: usize) -> Timestamp {
        self.next_due[group]
    }

    pub fn interval_of(&self, group: usize) -> Duration {
        self.rules.groups[group].interval.unwrap_or(self.default_interval)
    }

    /// Evaluates every group now, due or not (one-shot checks, benchmarks).
    pub fn evaluate_all(&mut self, store: &Arc<SeriesStore>, now: Timestamp) -> Vec<AlertEvent> {
        self.due_now();
        self.evaluate_due(store, now)
    }

    /// Makes every group due at the next evaluation (fresh data arrived;
    /// afterwards each keeps its interval grid).
    pub fn due_now(&mut self) {
        self.next_due.iter_mut().for_each(|d| *d = Timestamp::from_millis(i64::MIN));
    }

    /// Evaluates every group whose time has come (intervals aligned to the
    /// epoch, so tests see evaluations at 0, 1m, 2m, ...). Returns the
    /// lifecycle events, in rule order.
    pub fn evaluate_due(&mut self, store: &Arc<SeriesStore>, now: Timestamp) -> Vec<AlertEvent> {
        self.evaluate_due_and_fresh(store, now, None)
    }

    /// [`Self::evaluate_due`], and with `fresh`, the groups that are not due
    /// (global ones aside) over the clusters in `fresh` only: data landed
    /// there. Those groups keep their schedule, and their alerts of other
    /// clusters stay as they are.
    pub fn evaluate_due_and_fresh(
        &mut self,
        store: &Arc<SeriesStore>,
        now: Timestamp,
        fresh: Option<&ClusterScope>,
    ) -> Vec<AlertEvent> {
        let mut events = Vec::new();
        let fresh = fresh.filter(|f| !f.is_empty());
        let scope_of = |gi: usize, per: Per| -> Option<Option<&ClusterScope>> {
            if self.next_due[gi] <= now { Some(None) } else { fresh.filter(|_| per != Per::Global).map(Some) }
        };
        let scopes: Vec<Option<Option<&ClusterScope>>> =
            self.rules.groups.iter().enumerate().map(|(gi, g)| scope_of(gi, g.per)).collect();
        if scopes.iter().all(Option::is_none) {
            return events;
        }
        // Cluster views for the clusters some group reads: all of them if a
        // cluster or global group is due, else only the fresh ones.
        let views_needed = self.rules.groups.iter().zip(&scopes).filter(|(g, s)| g.per != Per::Instance && s.is_some());
        let views_scope = views_needed.map(|(_, s)| s.flatten()).reduce(|a, b| a.and(b));
        let cluster_views = views_scope.map(|scope| cluster_views_of(store, now, scope));
        let fresh_groups = match fresh {
            Some(f) if scopes.iter().any(|s| matches!(s, Some(Some(_)))) => groups_in(store, f),
            _ => Vec::new(),
        };
        let guard = FrameGuard::enter(store.clone(), now, self.rules.limits.time_budget);
        let mut first_rule = 0;
        for (gi, group) in self.rules.groups.iter().enumerate() {
            let rule_range = first_rule..first_rule + group.rules.len();
            first_rule += group.rules.len();
            let Some(scope) = scopes[gi] else { continue };
            if scope.is_none() {
                let interval_ms = group.interval.unwrap_or(self.default_interval).as_millis().max(1) as i64;
                self.next_due[gi] = Timestamp::from_millis((now.as_millis().div_euclid(interval_ms) + 1) * interval_ms);
            }
            for (rule, state) in group.rules.iter().zip(&mut self.tracker.rules[rule_range]) {
                let ctx = RuleCtx {
                    rules: &self.rules,
                    store,
                    now,
                    guard: &guard,
                    clusters: cluster_views.as_deref(),
                    scope,
                    scope_groups: &fresh_groups,
                };
                let outcome = evaluate_rule(&ctx, rule, group.per, state);
                state.apply_in(outcome, now, scope, &mut events);
            }
        }
        events
    }
}

struct RuleCtx<'a> {
    rules: &'a RuleSet,
    store: &'a SeriesStore,
    now: Timestamp,
    guard: &'a FrameGuard,
    clusters: Option<&'a [ClusterView]>,
    /// An evaluation on arrival: only these clusters' targets.
    scope: Option<&'a ClusterScope>,
    /// With `scope`, its label groups.
    scope_groups: &'a [GroupId],
}

impl RuleCtx<'_> {
    fn covers(&self, cluster: Option<&str>) -> bool {
        self.scope.is_none_or(|s| s.contains(cluster))
    }

    /// The label groups a per-instance rule runs over.
    fn instances(&self) -> Box<dyn Iterator<Item = (GroupId, &crate::store::Group)> + '_> {
        match self.scope {
            None => Box::new(self.store.groups()),
            Some(_) => Box::new(self.scope_groups.iter().filter_map(|id| Some((*id, self.store.group(*id)?)))),
        }
    }

    /// The clusters a per-cluster rule runs over.
    fn cluster_views(&self) -> impl Iterator<Item = &ClusterView> {
        self.clusters.unwrap_or_default().iter().filter(|c| self.covers(Some(&c.name)))
    }
}

/// One cluster as `per: cluster` rules see it.
struct ClusterView {
    name: String,
    labels: Labels,
    /// Shared, so each rule gets it without a deep copy.
    nodes: Dynamic,
    labels_map: Dynamic,
}

/// The label groups of `scope`'s clusters, in store order.
fn groups_in(store: &SeriesStore, scope: &ClusterScope) -> Vec<GroupId> {
    let mut groups: Vec<GroupId> = store
        .clusters()
        .filter(|(name, _)| scope.contains(Some(name)))
        .flat_map(|(_, members)| members.iter().copied())
        .collect();
    if scope.contains(None) {
        groups.extend(store.groups().filter(|(_, g)| g.cluster().is_none()).map(|(id, _)| id));
    }
    groups.sort_unstable();
    groups.dedup();
    groups
}

/// The clusters and their nodes. A node is a label group of the cluster
/// that reports `up` (a target); groups of extra series such as per-client
/// connection counts are not nodes.
fn cluster_views_of(store: &SeriesStore, now: Timestamp, scope: Option<&ClusterScope>) -> Vec<ClusterView> {
    let up = store.lookup_metric("up");
    store
        .clusters()
        .filter(|(name, _)| scope.is_none_or(|s| s.contains(Some(name))))
        .map(|(name, members)| {
            let nodes: Array = members
                .iter()
                .filter(|g| up.is_some_and(|up| store.group(**g).is_some_and(|g| g.window(up).is_some())))
                .filter_map(|g| node_map(store, *g, now))
                .map(Dynamic::from_map)
                .collect();
            let labels = Labels::from_pairs([("cluster", name)]);
            ClusterView {
                name: name.to_string(),
                labels_map: Dynamic::from_map(labels_map(labels.iter())).into_shared(),
                labels,
                nodes: Dynamic::from_array(nodes).into_shared(),
            }
        })
        .collect()
}

/// A node as a map: its labels (info labels too) as strings, its metrics'
/// latest values, `labels` as a map, and a hidden `_group` for window
/// functions.
fn node_map(store: &SeriesStore, gid: GroupId, now: Timestamp) -> Option<Map> {
    let g = store.group(gid)?;
    let mut m = Map::new();
    for (k, v) in g.labels.iter().chain(g.info.iter()) {
        m.insert(k.into(), Dynamic::from(v.to_string()));
    }
    for (metric, w) in g.metrics() {
        if let Some(v) = w.latest(now, store.lookback()) {
            m.insert(store.metric_name(metric).into(), Dynamic::from_float(v));
        }
    }
    m.insert("labels".into(), Dynamic::from_map(labels_map(g.labels.iter().chain(g.info.iter()))));
    m.insert("_group".into(), Dynamic::from_int(i64::from(gid.0)));
    Some(m)
}

fn evaluate_rule(ctx: &RuleCtx, rule: &Rule, per: Per, state: &RuleState) -> RuleOutcome {
    let started = Instant::now();
    let mut out = RuleOutcome::default();
    let mut failures = 0usize;
    let mut record_failure = |out: &mut RuleOutcome, err: String, held: Option<Fingerprint>| {
        failures += 1;
        if out.error.is_none() {
            out.error = Some(err);
        }
        if let Some(fp) = held {
            out.held.push(fp);
        }
    };
    match per {
        Per::Instance => {
            let resolved = ResolvedMetrics::of(ctx.store, rule);
            if let Some(fast) = resolved.as_ref().and_then(|r| NativeThreshold::of(rule, r)) {
                fast.evaluate(ctx, rule, state, &mut out);
            } else if let Some(resolved) = resolved {
                let mut scope = Scope::new();
                for (gid, group) in ctx.instances() {
                    if !resolved.metrics.iter().all(|m| ctx.store.latest(gid, *m, ctx.now).is_some()) {
                        continue;
                    }
                    ctx.guard.set_group(Some(gid));
                    let scope_labels = &group.labels;
                    scope.clear();
                    if let Err(e) = evaluate_in(
                        ctx,
                        rule,
                        &resolved,
                        Some(gid),
                        Target { labels: scope_labels, info: &group.info },
                        &mut scope,
                        state,
                        &mut out,
                    ) {
                        let fp = Alert::fingerprint_of(&base_labels(rule, scope_labels));
                        record_failure(&mut out, e, Some(fp));
                    }
                }
                ctx.guard.set_group(None);
            }
        }
        Per::Cluster => {
            let mut scope = Scope::new();
            for cluster in ctx.cluster_views() {
                scope.clear();
                scope.push_constant_dynamic("nodes", cluster.nodes.clone());
                scope.push_constant_dynamic("labels", cluster.labels_map.clone());
                scope.push_constant("cluster", cluster.name.clone());
                ctx.guard.set_group(None);
                let resolved = ResolvedMetrics::default();
                if let Err(e) =
                    evaluate_in(ctx, rule, &resolved, None, Target::of(&cluster.labels), &mut scope, state, &mut out)
                {
                    let fp = Alert::fingerprint_of(&base_labels(rule, &cluster.labels));
                    record_failure(&mut out, e, Some(fp));
                }
            }
        }
        Per::Global => {
            let clusters: Array = ctx
                .clusters
                .unwrap_or_default()
                .iter()
                .map(|c| {
                    let mut m = Map::new();
                    m.insert("name".into(), Dynamic::from(c.name.clone()));
                    m.insert("labels".into(), c.labels_map.clone());
                    m.insert("nodes".into(), c.nodes.clone());
                    Dynamic::from_map(m)
                })
                .collect();
            let mut scope = Scope::new();
            scope.push_constant("clusters", clusters);
            ctx.guard.set_group(None);
            let resolved = ResolvedMetrics::default();
            if let Err(e) = evaluate_in(ctx, rule, &resolved, None, Target::of(&NO_LABELS), &mut scope, state, &mut out)
            {
                // A global rule has one label set; failing keeps all its alerts.
                record_failure(&mut out, e, None);
                out.held.extend(state.active.keys().copied());
            }
        }
    }
    if failures > 1
        && let Some(e) = &mut out.error
    {
        *e = format!("{e} (and {} more instances failed)", failures - 1);
    }
    out.duration = started.elapsed();
    out
}

/// The commonest rule, `metric op number` (or a bare metric with tiers),
/// with no hysteresis: evaluated without the script engine. Equivalence with
/// the general path is property-tested.
struct NativeThreshold<'r> {
    metric: MetricId,
    test: NativeTest<'r>,
}

enum NativeTest<'r> {
    Compare { op: super::expr::CmpOp, threshold: f64, severity: Severity },
    Tiers(&'r [super::Tier]),
}

impl<'r> NativeThreshold<'r> {
    fn of(rule: &'r Rule, resolved: &ResolvedMetrics) -> Option<Self> {
        let Condition::Expr(expr) = &rule.condition else { return None };
        if rule.resolve_when.is_some() {
            return None;
        }
        let test = match (&expr.kind, &rule.severity) {
            (ExprKind::Compare { lhs: Operand::Metric(_), op, rhs: Operand::Number(n) }, SeverityPolicy::Fixed(s)) => {
                NativeTest::Compare { op: *op, threshold: *n, severity: *s }
            }
            (ExprKind::Single(Operand::Metric(_)), SeverityPolicy::Tiers(t)) => NativeTest::Tiers(t),
            _ => return None,
        };
        Some(Self { metric: resolved.lhs?, test })
    }

    fn evaluate(&self, ctx: &RuleCtx, rule: &Rule, state: &RuleState, out: &mut RuleOutcome) {
        let lookback = ctx.store.lookback();
        for (_, group) in ctx.instances() {
            let Some(v) = group.window(self.metric).and_then(|w| w.latest(ctx.now, lookback)) else { continue };
            let fires_at = match &self.test {
                NativeTest::Compare { op, threshold, severity } => op.apply(&v, threshold).then_some(*severity),
                NativeTest::Tiers(tiers) => tiers.iter().find(|t| t.op.apply(&v, &t.threshold)).map(|t| t.severity),
            };
            if let Some(severity) = fires_at {
                out.candidates.push(make_candidate(
                    ctx,
                    rule,
                    state,
                    base_labels(rule, &group.labels),
                    Target { labels: &group.labels, info: &group.info },
                    v,
                    severity,
                ));
            }
        }
    }
}

/// The rule's metric names resolved to store ids for this round.
#[derive(Default)]
struct ResolvedMetrics {
    /// Every variable of the expression: an instance needs all of them.
    metrics: Vec<MetricId>,
    lhs: Option<MetricId>,
    rhs: Option<MetricId>,
}

impl ResolvedMetrics {
    /// `None` when some metric does not exist at all: no instance qualifies.
    fn of(store: &SeriesStore, rule: &Rule) -> Option<Self> {
        let Condition::Expr(e) = &rule.condition else { return Some(Self::default()) };
        let metrics = e.metrics.iter().map(|m| store.lookup_metric(m)).collect::<Option<Vec<_>>>()?;
        let side = |o: &Operand| match o {
            Operand::Metric(m) => store.lookup_metric(m),
            _ => None,
        };
        let (lhs, rhs) = match &e.kind {
            ExprKind::Compare { lhs, rhs, .. } => (side(lhs), side(rhs)),
            ExprKind::Single(o) => (side(o), None),
        };
        Some(Self { metrics, lhs, rhs })
    }
}

/// The labels of what a rule is evaluated for: identity labels, and info
/// labels shown on alerts but not part of their identity.
#[derive(Clone, Copy)]
struct Target<'a> {
    labels: &'a Labels,
    info: &'a Labels,
}

static NO_LABELS: std::sync::LazyLock<Labels> = std::sync::LazyLock::new(Labels::new);

impl<'a> Target<'a> {
    fn of(labels: &'a Labels) -> Self {
        Self { labels, info: &*NO_LABELS }
    }
}

/// Labels every alert of this rule in this scope carries, before tier.
fn base_labels(rule: &Rule, scope_labels: &Labels) -> Labels {
    let mut labels = scope_labels.clone();
    labels.merge(&rule.labels);
    labels.insert(ALERTNAME, rule.name.clone());
    labels
}

#[allow(clippy::too_many_arguments)]
fn evaluate_in(
    ctx: &RuleCtx,
    rule: &Rule,
    resolved: &ResolvedMetrics,
    gid: Option<GroupId>,
    target: Target,
    scope: &mut Scope,
    state: &RuleState,
    out: &mut RuleOutcome,
) -> Result<(), String> {
    let engine = &ctx.rules.engine;
    let limits = &ctx.rules.limits;
    let fail = |f: EvalFailure| -> Option<String> {
        match f {
            EvalFailure::NoData => None,
            EvalFailure::Error(e) => Some(describe_error(&e, limits)),
            EvalFailure::Type(t) => Some(t),
        }
    };
    match &rule.condition {
        Condition::Expr(expr) => {
            let outcome = match evaluate_expr(ctx, expr, resolved, gid, scope, &rule.severity) {
                Ok(r) => r,
                Err(f) => return fail(f).map_or(Ok(()), |e| Err(format!("{}: {e}", rule.location))),
            };
            let severity = match outcome.fires_at {
                Some(tier) => Some(tier),
                None => held_by_hysteresis(ctx, rule, gid, scope, target.labels, state)
                    .map_err(|f| fail(f).unwrap_or_default())?
                    .then(|| rule.severity.least_severe()),
            };
            if let Some(severity) = severity {
                out.candidates.push(make_candidate(
                    ctx,
                    rule,
                    state,
                    base_labels(rule, target.labels),
                    target,
                    outcome.value,
                    severity,
                ));
            }
            Ok(())
        }
        Condition::Script { ast, path } => {
            ctx.guard.take_emitted();
            if let Err(e) = engine.run_ast_with_scope(scope, ast) {
                let f = EvalFailure::from(e);
                return fail(f).map_or(Ok(()), |e| Err(format!("{}: {e}", path.display())));
            }
            for emitted in ctx.guard.take_emitted() {
                let c = candidate_from_map(ctx, rule, state, target, emitted)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                out.candidates.push(c);
            }
            Ok(())
        }
    }
}

/// The value of a rule's expression at one instance, and the tier it fires
/// at, if any.
struct ExprOutcome {
    value: f64,
    fires_at: Option<Severity>,
}

fn evaluate_expr(
    ctx: &RuleCtx,
    expr: &CompiledExpr,
    resolved: &ResolvedMetrics,
    gid: Option<GroupId>,
    scope: &mut Scope,
    policy: &SeverityPolicy,
) -> Result<ExprOutcome, EvalFailure> {
    let operand = |o: &Operand, id: Option<MetricId>, scope: &mut Scope| -> Result<Value, EvalFailure> {
        match o {
            Operand::Number(v) => Ok(Value::Number(*v)),
            Operand::Metric(_) => {
                let (Some(g), Some(m)) = (gid, id) else { return Err(EvalFailure::NoData) };
                ctx.store.latest(g, m, ctx.now).map(Value::Number).ok_or(EvalFailure::NoData)
            }
            Operand::Script(ast) => eval_script(&ctx.rules.engine, ast, scope),
        }
    };
    match (&expr.kind, policy) {
        (ExprKind::Compare { lhs, op, rhs }, SeverityPolicy::Fixed(sev)) => {
            let a = operand(lhs, resolved.lhs, scope)?;
            let b = operand(rhs, resolved.rhs, scope)?;
            let holds = compare(&a, *op, &b)?;
            let value = match a {
                Value::Number(v) => v,
                _ => f64::from(u8::from(holds)),
            };
            Ok(ExprOutcome { value, fires_at: holds.then_some(*sev) })
        }
        (ExprKind::Single(o), SeverityPolicy::Fixed(sev)) => match operand(o, resolved.lhs, scope)? {
            Value::Bool(b) => Ok(ExprOutcome { value: f64::from(u8::from(b)), fires_at: b.then_some(*sev) }),
            other => Err(EvalFailure::Type(format!(
                "expression produced {}, expected a bool (use `tiers` for a number)",
                other.type_name()
            ))),
        },
        (ExprKind::Single(o), SeverityPolicy::Tiers(tiers)) => match operand(o, resolved.lhs, scope)? {
            Value::Number(v) => Ok(ExprOutcome {
                value: v,
                fires_at: tiers.iter().find(|t| t.op.apply(&v, &t.threshold)).map(|t| t.severity),
            }),
            other => {
                Err(EvalFailure::Type(format!("expression produced {}, `tiers` needs a number", other.type_name())))
            }
        },
        (ExprKind::Compare { .. }, SeverityPolicy::Tiers(_)) => {
            Err(EvalFailure::Type("with `tiers`, `expr` must be a number, not a comparison".into()))
        }
    }
}

/// With `resolve_when`, a firing alert whose condition no longer holds stays
/// firing (at the rule's least severe tier) until `resolve_when` is true.
/// Returns whether the alert is held.
fn held_by_hysteresis(
    ctx: &RuleCtx,
    rule: &Rule,
    gid: Option<GroupId>,
    scope: &mut Scope,
    scope_labels: &Labels,
    state: &RuleState,
) -> Result<bool, EvalFailure> {
    let Some(resolve_when) = &rule.resolve_when else { return Ok(false) };
    if state.firing_count() == 0 || !state.is_firing(Alert::fingerprint_of(&base_labels(rule, scope_labels))) {
        return Ok(false);
    }
    let metric = |o: &Operand| match o {
        Operand::Metric(m) => ctx.store.lookup_metric(m),
        _ => None,
    };
    let resolve_metrics = match &resolve_when.kind {
        ExprKind::Compare { lhs, rhs, .. } => ResolvedMetrics { metrics: vec![], lhs: metric(lhs), rhs: metric(rhs) },
        ExprKind::Single(o) => ResolvedMetrics { metrics: vec![], lhs: metric(o), rhs: None },
    };
    // Fixed(P3) only to read "holds or not"; the tier is not used.
    match evaluate_expr(ctx, resolve_when, &resolve_metrics, gid, scope, &SeverityPolicy::Fixed(Severity::P3)) {
        Ok(o) => Ok(o.fires_at.is_none()),
        // No data for the resolve condition: stay as is rather than resolve.
        Err(EvalFailure::NoData) => Ok(true),
        Err(e) => Err(e),
    }
}

/// `identity` are the labels that make the alert (target, rule, alertname);
/// `info` labels of the target are shown but don't take part in identity.
/// `condition_tier` is the tier whose condition holds; the alert's tier
/// (labels, annotations) is what the tracker's tier clock makes of it.
#[allow(clippy::too_many_arguments)]
fn make_candidate(
    ctx: &RuleCtx,
    rule: &Rule,
    state: &RuleState,
    identity: Labels,
    target: Target,
    value: f64,
    condition_tier: Severity,
) -> Candidate {
    let rules = ctx.rules;
    let mut alert = Alert::new(identity, condition_tier, value, ctx.now);
    let (severity, _) = state.tier_step(alert.fingerprint, condition_tier, ctx.now);
    alert.severity = severity;
    // A label `severity` given by the rule (ported Prometheus rules) stays;
    // otherwise the label is the tier. Set before the info labels, so a
    // target's `severity` never shows.
    if rule.labels.get(SEVERITY).is_none_or(|s| s.parse::<Severity>().is_ok()) {
        alert.labels.insert(SEVERITY, severity.as_str());
    }
    let mut alert = alert.with_info_labels(target.info);
    alert.annotations = rule
        .annotations
        .iter()
        .map(|(k, t)| (k.clone(), rules.templates.render(t, &alert.labels, value, severity.as_str())))
        .collect();
    alert.runbook = rule.runbook.as_ref().map(|r| r.link().into());
    Candidate { alert, condition_tier, cluster: target.labels.get("cluster").map(str::to_owned) }
}

/// Turns `alert(#{...})` from a script into a candidate. Fields: `labels`
/// (map), `severity` (tier), `value` (number), `annotations` (map, merged
/// over the rule's rendered ones), `summary`/`description` shorthands.
fn candidate_from_map(
    ctx: &RuleCtx,
    rule: &Rule,
    state: &RuleState,
    target: Target,
    map: Map,
) -> Result<Candidate, String> {
    let mut labels = base_labels(rule, target.labels);
    let mut severity = rule.severity.least_severe();
    let mut value = 1.0;
    let mut extra = Vec::new();
    for (k, v) in map {
        match k.as_str() {
            "labels" => {
                let m = v.try_cast::<Map>().ok_or("alert(): `labels` must be a map")?;
                for (lk, lv) in m {
                    labels.insert(lk.to_string(), lv.to_string());
                }
            }
            "severity" => {
                let s = v.into_string().map_err(|t| format!("alert(): `severity` must be a string, found {t}"))?;
                severity = s.parse().map_err(|e| format!("alert(): {e}"))?;
            }
            "value" => {
                value = v
                    .as_float()
                    .or_else(|_| v.as_int().map(|i| i as f64))
                    .map_err(|t| format!("alert(): `value` must be a number, found {t}"))?;
            }
            "annotations" => {
                let m = v.try_cast::<Map>().ok_or("alert(): `annotations` must be a map")?;
                extra.extend(m.into_iter().map(|(k, v)| (k.to_string(), v.to_string())));
            }
            "summary" | "description" => extra.push((k.to_string(), v.to_string())),
            other => {
                return Err(format!(
                    "alert(): unknown field `{other}` (labels, severity, value, annotations, summary, description)"
                ));
            }
        }
    }
    let mut c = make_candidate(ctx, rule, state, labels, target, value, severity);
    if !extra.is_empty() {
        let given = extra.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        c.alert.annotations = Annotations::from_pairs(c.alert.annotations.iter().chain(given));
    }
    Ok(c)
}
