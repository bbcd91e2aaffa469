//! The one hardened Rhai engine every rule expression and script runs on,
//! and the per-evaluation frame its native functions read.
//!
//! Limits: operations, call depth, expression depth, string/array/map sizes,
//! a wall-clock budget per evaluation; no `eval`, no modules (the crate is
//! built with `no_module`, so `import` does not even parse), `print` goes to
//! tracing. Type mismatches in comparisons (`"abc" > 100`) are errors, not
//! Rhai's silent `false`.

use crate::model::Timestamp;
use crate::store::{GroupId, SeriesStore, WindowFn};
use rhai::{Array, Dynamic, Engine, EvalAltResult, FLOAT, INT, ImmutableString, Map, Position};
use std::cell::RefCell;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Limits for one evaluation. Defaults stop `loop {}` in tens of ms.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_operations: u64,
    pub max_call_levels: usize,
    pub max_expr_depth: usize,
    pub max_string_size: usize,
    pub max_array_size: usize,
    pub max_map_size: usize,
    pub time_budget: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_operations: 2_000_000,
            max_call_levels: 32,
            max_expr_depth: 64,
            max_string_size: 64 * 1024,
            max_array_size: 10_000,
            max_map_size: 10_000,
            time_budget: Duration::from_millis(250),
        }
    }
}

/// Marker thrown by window functions when the range has too little data:
/// the instance produces no result (like an empty PromQL vector), which is
/// not an error.
pub const NO_DATA: &str = "zkalert:no-data";
/// Marker thrown by `on_progress` when the time budget is spent.
const DEADLINE: &str = "zkalert:deadline";

/// What native functions can see during one evaluation.
pub(crate) struct Frame {
    pub store: Arc<SeriesStore>,
    pub now: Timestamp,
    /// The instance being evaluated (`per: instance`).
    pub group: Option<GroupId>,
    pub budget: Duration,
    started: Option<Instant>,
    /// Alerts emitted by `alert(#{...})` in scripts.
    pub emitted: Vec<Map>,
}

thread_local! {
    static FRAME: RefCell<Option<Frame>> = const { RefCell::new(None) };
}

/// Installs the frame for evaluations on this thread; removed on drop, so
/// the store's `Arc` goes back to a single owner between rounds.
pub(crate) struct FrameGuard(());

impl FrameGuard {
    pub fn enter(store: Arc<SeriesStore>, now: Timestamp, budget: Duration) -> Self {
        FRAME.with(|f| {
            *f.borrow_mut() = Some(Frame { store, now, group: None, budget, started: None, emitted: Vec::new() })
        });
        FrameGuard(())
    }

    /// Points the frame at one instance and restarts the time budget.
    pub fn set_group(&self, group: Option<GroupId>) {
        with_frame(|f| {
            f.group = group;
            f.started = None;
        });
    }

    pub fn take_emitted(&self) -> Vec<Map> {
        with_frame(|f| std::mem::take(&mut f.emitted))
    }
}

impl Drop for FrameGuard {
    fn drop(&mut self) {
        FRAME.with(|f| f.borrow_mut().take());
    }
}

fn with_frame<R: Default>(body: impl FnOnce(&mut Frame) -> R) -> R {
    FRAME.with(|f| f.borrow_mut().as_mut().map(body).unwrap_or_default())
}

fn runtime_error(msg: impl Into<String>) -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorRuntime(Dynamic::from(msg.into()), Position::NONE))
}

/// True if an evaluation error is the "no data" marker.
pub fn is_no_data(err: &EvalAltResult) -> bool {
    matches!(err, EvalAltResult::ErrorRuntime(v, _) if v.clone().into_string().is_ok_and(|s| s == NO_DATA))
}

/// A user-facing message for an evaluation error.
pub fn describe_error(err: &EvalAltResult, limits: &Limits) -> String {
    match err {
        EvalAltResult::ErrorTerminated(v, _) if v.clone().into_string().is_ok_and(|s| s == DEADLINE) => {
            format!("evaluation exceeded its time budget of {:?} (runaway loop?)", limits.time_budget)
        }
        EvalAltResult::ErrorTooManyOperations(_) => {
            format!("evaluation exceeded {} operations (runaway loop?)", limits.max_operations)
        }
        EvalAltResult::ErrorStackOverflow(_) => {
            format!("call depth exceeded {} (runaway recursion?)", limits.max_call_levels)
        }
        EvalAltResult::ErrorDataTooLarge(what, _) => format!("{what} exceeds its size limit"),
        EvalAltResult::ErrorRuntime(v, pos) => {
            let msg = v.clone().into_string().unwrap_or_else(|_| v.to_string());
            if pos.is_none() { msg } else { format!("{msg} ({pos})") }
        }
        other => other.to_string(),
    }
}

/// Builds the engine with every limit and function. Call once per rule set
/// load; compile every expression with it, evaluate with it.
pub fn build_engine(limits: &Limits) -> Engine {
    let mut engine = Engine::new();
    engine
        .set_max_operations(limits.max_operations)
        .set_max_call_levels(limits.max_call_levels)
        .set_max_expr_depths(limits.max_expr_depth, limits.max_expr_depth / 2)
        .set_max_string_size(limits.max_string_size)
        .set_max_array_size(limits.max_array_size)
        .set_max_map_size(limits.max_map_size)
        .set_fail_on_invalid_map_property(true)
        // Lets the mismatch overloads below win over Rhai's built-in "different
        // types compare false" fallback.
        .set_fast_operators(false);
    engine.disable_symbol("eval");
    engine.on_print(|s| tracing::info!(target: "zkalert::script", "{s}"));
    engine.on_debug(|s, src, pos| tracing::debug!(target: "zkalert::script", source = src.unwrap_or(""), %pos, "{s}"));
    engine.on_progress(|ops| {
        if ops % 4096 != 0 {
            return None;
        }
        with_frame(|f| {
            let started = *f.started.get_or_insert_with(Instant::now);
            (started.elapsed() > f.budget).then(|| Dynamic::from(DEADLINE))
        })
    });
    #[allow(deprecated)] // `on_var` is stable in practice; Rhai marks it volatile.
    engine.on_var(|name, _index, _ctx| Ok(resolve_instance_var(name)));

    register_type_checks(&mut engine);
    register_window_functions(&mut engine);
    register_helpers(&mut engine);
    engine
}

/// In `per: instance` evaluation, a metric name resolves to the instance's
/// latest value and `labels` to its labels.
fn resolve_instance_var(name: &str) -> Option<Dynamic> {
    FRAME.with(|f| {
        let frame = f.borrow();
        let frame = frame.as_ref()?;
        let group = frame.group?;
        if name == "labels" {
            let g = frame.store.group(group)?;
            return Some(Dynamic::from_map(labels_map(g.labels.iter().chain(g.info.iter()))));
        }
        let metric = frame.store.lookup_metric(name)?;
        frame.store.latest(group, metric, frame.now).map(Dynamic::from_float)
    })
}

pub(crate) fn labels_map<'a>(labels: impl Iterator<Item = (&'a str, &'a str)>) -> Map {
    labels.map(|(k, v)| (k.into(), Dynamic::from(v.to_string()))).collect()
}

fn register_type_checks(engine: &mut Engine) {
    macro_rules! mismatch {
        ($a:ty, $b:ty, $an:literal, $bn:literal) => {
            for op in ["==", "!=", ">", ">=", "<", "<="] {
                engine.register_fn(op, move |_: $a, _: $b| -> Result<bool, Box<EvalAltResult>> {
                    Err(runtime_error(format!("type mismatch: cannot compare {} {op} {}", $an, $bn)))
                });
            }
        };
    }
    mismatch!(ImmutableString, INT, "a string", "a number");
    mismatch!(INT, ImmutableString, "a number", "a string");
    mismatch!(ImmutableString, FLOAT, "a string", "a number");
    mismatch!(FLOAT, ImmutableString, "a number", "a string");
    mismatch!(bool, INT, "a bool", "a number");
    mismatch!(INT, bool, "a number", "a bool");
    mismatch!(bool, FLOAT, "a bool", "a number");
    mismatch!(FLOAT, bool, "a number", "a bool");
    mismatch!(bool, ImmutableString, "a bool", "a string");
    mismatch!(ImmutableString, bool, "a string", "a bool");
    mismatch!((), INT, "nothing (())", "a number");
    mismatch!(INT, (), "a number", "nothing (())");
    mismatch!((), FLOAT, "nothing (())", "a number");
    mismatch!(FLOAT, (), "a number", "nothing (())");
    mismatch!((), ImmutableString, "nothing (())", "a string");
    mismatch!(ImmutableString, (), "a string", "nothing (())");
}

fn parse_range(range: &str) -> Result<Duration, Box<EvalAltResult>> {
    crate::duration::parse_window(range).map_err(|e| runtime_error(e.to_string()))
}

fn window_value(group: Option<GroupId>, f: WindowFn, metric: &str, range: &str) -> Result<FLOAT, Box<EvalAltResult>> {
    let range = parse_range(range)?;
    FRAME.with(|cell| {
        let frame = cell.borrow();
        let frame = frame.as_ref().ok_or_else(|| runtime_error("window functions need an evaluation"))?;
        let group = group.or(frame.group).ok_or_else(|| {
            runtime_error(format!("{}() without a node needs `per: instance`; use node.{}(..)", f.name(), f.name()))
        })?;
        let Some(m) = frame.store.lookup_metric(metric) else { return Err(runtime_error(NO_DATA)) };
        let kept = frame.store.retention_of(m).unwrap_or_default();
        if range > kept {
            return Err(runtime_error(format!(
                "{}(\"{metric}\", {range:?}): the store keeps {kept:?} of {metric}; \
                 name metrics and ranges with literals so zkalert knows what to keep",
                f.name()
            )));
        }
        let value = frame.store.group(group).and_then(|g| g.window(m)).and_then(|w| w.apply(f, frame.now, range));
        value.ok_or_else(|| runtime_error(NO_DATA))
    })
}

fn node_group(node: &Map) -> Result<GroupId, Box<EvalAltResult>> {
    node.get("_group")
        .and_then(|g| g.as_int().ok())
        .map(|g| GroupId(g as u32))
        .ok_or_else(|| runtime_error("expected a node map from `nodes`"))
}

fn register_window_functions(engine: &mut Engine) {
    for f in WindowFn::ALL {
        let name = f.name();
        engine.register_fn(name, move |metric: &str, range: &str| window_value(None, f, metric, range));
        engine.register_fn(name, move |node: &mut Map, metric: &str, range: &str| {
            window_value(Some(node_group(node)?), f, metric, range)
        });
    }
}

fn latest_in(group: Option<GroupId>, metric: &str) -> Option<FLOAT> {
    FRAME.with(|cell| {
        let frame = cell.borrow();
        let frame = frame.as_ref()?;
        let group = group.or(frame.group)?;
        let m = frame.store.lookup_metric(metric)?;
        frame.store.latest(group, m, frame.now)
    })
}

fn numbers(a: &Array) -> Result<Vec<FLOAT>, Box<EvalAltResult>> {
    a.iter()
        .map(|v| {
            v.as_float()
                .or_else(|_| v.as_int().map(|i| i as FLOAT))
                .map_err(|t| runtime_error(format!("expected an array of numbers, found {t}")))
        })
        .collect()
}

fn register_helpers(engine: &mut Engine) {
    // absent("m"): the instance has no current value for m.
    engine.register_fn("absent", |metric: &str| latest_in(None, metric).is_none());
    engine.register_fn("absent", |node: &mut Map, metric: &str| {
        Ok::<_, Box<EvalAltResult>>(latest_in(Some(node_group(node)?), metric).is_none())
    });
    // value("m", default): the latest value or the default.
    engine.register_fn("value", |metric: &str, default: FLOAT| latest_in(None, metric).unwrap_or(default));
    engine.register_fn("value", |metric: &str, default: INT| latest_in(None, metric).unwrap_or(default as FLOAT));
    // time(): evaluation time in Unix seconds, as PromQL's time().
    engine.register_fn("time", || with_frame(|f| Some(f.now.as_secs_f64())).unwrap_or(0.0));
    // Aggregates over arrays, for cluster rules: `nodes.map(|n| n.x).max()`.
    engine.register_fn("sum", |a: Array| numbers(&a).map(|v| v.iter().sum::<FLOAT>()));
    engine.register_fn("max", |a: Array| {
        numbers(&a).map(|v| v.into_iter().reduce(FLOAT::max).map_or(Dynamic::UNIT, Dynamic::from_float))
    });
    engine.register_fn("min", |a: Array| {
        numbers(&a).map(|v| v.into_iter().reduce(FLOAT::min).map_or(Dynamic::UNIT, Dynamic::from_float))
    });
    engine.register_fn("avg", |a: Array| {
        numbers(&a).map(|v| {
            if v.is_empty() { Dynamic::UNIT } else { Dynamic::from_float(v.iter().sum::<FLOAT>() / v.len() as FLOAT) }
        })
    });
    // distinct(): the values without repeats, in first-seen order.
    engine.register_fn("distinct", |a: Array| {
        let mut seen: Vec<String> = Vec::new();
        a.into_iter()
            .filter(|v| {
                let key = format!("{}:{v}", v.type_name());
                let new = !seen.contains(&key);
                if new {
                    seen.push(key);
                }
                new
            })
            .collect::<Array>()
    });
    // alert(#{...}): a script rule emits one alert.
    engine.register_fn("alert", |map: Map| {
        with_frame(|f| {
            f.emitted.push(map);
        })
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(src: &str) -> Result<Dynamic, String> {
        let limits = Limits::default();
        let engine = build_engine(&limits);
        let _g = FrameGuard::enter(Arc::new(SeriesStore::default()), Timestamp::default(), limits.time_budget);
        engine.eval::<Dynamic>(src).map_err(|e| describe_error(&e, &limits))
    }

    #[test]
    fn type_mismatch_is_an_error() {
        let e = eval(r#"let s = "abc"; s > 100"#).unwrap_err();
        assert!(e.contains("type mismatch"), "{e}");
        assert!(eval(r#"let x = 1.5; x == "x""#).is_err());
        let e = eval(r#""abc" > 100"#).unwrap_err();
        assert!(e.contains("type mismatch"), "constants too: {e}");
        assert_eq!(eval("1 == 1.0").unwrap().as_bool(), Ok(true), "mixed int/float still works");
    }

    #[test]
    fn runaway_loop_stops_fast() {
        let t = Instant::now();
        let e = eval("loop {}").unwrap_err();
        assert!(e.contains("runaway loop"), "{e}");
        assert!(t.elapsed() < Duration::from_millis(900), "{:?}", t.elapsed());
    }

    #[test]
    fn limits_hold() {
        assert!(eval(r#"let s = "x"; loop { s += s; }"#).unwrap_err().contains("size limit"));
        assert!(eval("fn f(n) { f(n + 1) } f(0)").unwrap_err().contains("call depth"));
        assert!(eval(r#"eval("1")"#).is_err(), "eval is disabled");
        assert!(eval(r#"import "x" as y; 1"#).is_err(), "import does not exist");
        assert!(eval("let m = #{a: 1}; m.b").is_err(), "missing map property is an error");
    }

    #[test]
    fn array_aggregates() {
        assert_eq!(eval("[1, 2.5, 3].max()").unwrap().as_float(), Ok(3.0));
        assert_eq!(eval("[1, 2, 3].sum()").unwrap().as_float(), Ok(6.0));
        assert_eq!(eval("[5, 5, 6, 5].distinct().len()").unwrap().as_int(), Ok(2));
        assert!(eval("[].max() == ()").is_ok());
        assert!(eval(r#"["a"].sum()"#).is_err());
    }
}
