//! Compiling a rule's `expr` once per load into the form the evaluator runs.
//!
//! A top-level comparison `A op B` is split: A and B are evaluated and
//! compared natively, with strict types. That gives the alert its value (A,
//! as in Prometheus, where `x > 5` yields x), and lets the commonest rules —
//! `metric op number` — skip the script engine entirely (the fast path the
//! throughput target relies on; equivalence is property-tested).

use super::engine::is_no_data;
use crate::store::{RangeNeed, WindowFn};
use rhai::{AST, Dynamic, Engine, EvalAltResult, Expr, Scope, Stmt};
use std::fmt;
use std::sync::Arc;

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
    Ne,
}

impl CmpOp {
    pub fn from_token(s: &str) -> Option<CmpOp> {
        Some(match s {
            ">" => CmpOp::Gt,
            ">=" => CmpOp::Ge,
            "<" => CmpOp::Lt,
            "<=" => CmpOp::Le,
            "==" => CmpOp::Eq,
            "!=" => CmpOp::Ne,
            _ => return None,
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
        }
    }
    #[inline]
    pub fn apply<T: PartialOrd + ?Sized>(self, a: &T, b: &T) -> bool {
        match self {
            CmpOp::Gt => a > b,
            CmpOp::Ge => a >= b,
            CmpOp::Lt => a < b,
            CmpOp::Le => a <= b,
            CmpOp::Eq => a == b,
            CmpOp::Ne => a != b,
        }
    }
}

impl fmt::Display for CmpOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One side of an expression.
#[derive(Debug, Clone)]
pub enum Operand {
    /// A bare metric name in `per: instance`: read straight from the store.
    Metric(String),
    Number(f64),
    Script(Arc<AST>),
}

#[derive(Debug, Clone)]
pub enum ExprKind {
    Compare { lhs: Operand, op: CmpOp, rhs: Operand },
    Single(Operand),
}

/// A compiled expression.
#[derive(Debug, Clone)]
pub struct CompiledExpr {
    pub source: String,
    pub kind: ExprKind,
    /// Metric names read as variables: an instance lacking any of them
    /// gives no result (as a PromQL selector matching nothing).
    pub metrics: Vec<String>,
    /// What window functions read (for store retention).
    pub ranges: Vec<RangeNeed>,
}

impl CompiledExpr {
    /// The script parts of the expression.
    pub fn scripts(&self) -> impl Iterator<Item = &AST> {
        let operands: Vec<&Operand> = match &self.kind {
            ExprKind::Compare { lhs, rhs, .. } => vec![lhs, rhs],
            ExprKind::Single(o) => vec![o],
        };
        operands.into_iter().filter_map(|o| match o {
            Operand::Script(ast) => Some(ast.as_ref()),
            _ => None,
        })
    }
}

/// A compile error with its position inside the expression text (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExprError {
    pub line: usize,
    pub col: usize,
    pub message: String,
}

/// Names the evaluator provides itself; never treated as metrics.
const CONTEXT_NAMES: [&str; 4] = ["labels", "nodes", "clusters", "cluster"];

/// Compiles an expression. `instance_scope` says whether bare variables are
/// metrics of the instance (`per: instance`).
pub fn compile(engine: &Engine, source: &str, instance_scope: bool) -> Result<CompiledExpr, ExprError> {
    let ast = engine.compile_expression(source).map_err(|e| {
        let pos = e.position();
        ExprError { line: pos.line().unwrap_or(1), col: pos.position().unwrap_or(1), message: e.err_type().to_string() }
    })?;
    let (metrics, ranges) =
        scan(&ast, instance_scope).map_err(|(message, line, col)| ExprError { line, col, message })?;
    let top_call = match ast.statements() {
        [Stmt::FnCall(call, _)] => Some(call.as_ref()),
        [Stmt::Expr(e)] => match e.as_ref() {
            Expr::FnCall(call, _) => Some(call.as_ref()),
            _ => None,
        },
        _ => None,
    };
    let top = match ast.statements() {
        [Stmt::Expr(e)] => Some(e.as_ref()),
        _ => None,
    };
    let kind = match (top_call, top) {
        (Some(call), _) if call.op_token.is_some() && call.args.len() == 2 => {
            match CmpOp::from_token(call.name.as_str()) {
                Some(op) => ExprKind::Compare {
                    lhs: operand(&call.args[0], &ast, instance_scope),
                    op,
                    rhs: operand(&call.args[1], &ast, instance_scope),
                },
                None => ExprKind::Single(Operand::Script(Arc::new(ast.clone()))),
            }
        }
        (_, Some(e)) => ExprKind::Single(operand(e, &ast, instance_scope)),
        _ => ExprKind::Single(Operand::Script(Arc::new(ast.clone()))),
    };
    Ok(CompiledExpr { source: source.to_string(), kind, metrics, ranges })
}

fn operand(e: &Expr, whole: &AST, instance_scope: bool) -> Operand {
    match e {
        Expr::Variable(v, ..) if instance_scope && !CONTEXT_NAMES.contains(&v.1.as_str()) => {
            Operand::Metric(v.1.to_string())
        }
        Expr::IntegerConstant(i, _) => Operand::Number(*i as f64),
        Expr::FloatConstant(f, _) => Operand::Number(**f),
        _ => Operand::Script(Arc::new(AST::new([Stmt::Expr(Box::new(e.clone()))], whole.shared_lib().clone()))),
    }
}

type ScanResult = Result<(Vec<String>, Vec<RangeNeed>), (String, usize, usize)>;

/// Finds the metric variables of the main expression and what window
/// functions read anywhere (closures included).
fn scan(ast: &AST, instance_scope: bool) -> ScanResult {
    let mut metrics = Vec::new();
    if instance_scope {
        let mut body_only = ast.clone();
        body_only.clear_functions();
        body_only.walk(&mut |path| {
            if let Some(rhai::ASTNode::Expr(Expr::Variable(v, ..))) = path.last() {
                let name = v.1.to_string();
                if !CONTEXT_NAMES.contains(&name.as_str()) && !metrics.contains(&name) {
                    metrics.push(name);
                }
            }
            true
        });
    }
    Ok((metrics, range_needs(ast)?))
}

/// Every string literal in a script: where a metric name is computed
/// (`n[k[0]]` over a list of names), these are the names it can be.
fn string_literals(ast: &AST) -> Vec<String> {
    fn strings_in(d: &Dynamic, out: &mut Vec<String>) {
        if let Ok(s) = d.clone().into_string() {
            out.push(s);
        } else if let Some(a) = d.read_lock::<rhai::Array>() {
            a.iter().for_each(|x| strings_in(x, out));
        } else if let Some(m) = d.read_lock::<rhai::Map>() {
            m.values().for_each(|x| strings_in(x, out));
        }
    }
    let mut out = Vec::new();
    ast.walk(&mut |path| {
        match path.last() {
            Some(rhai::ASTNode::Expr(Expr::StringConstant(s, _))) => out.push(s.to_string()),
            // Constant arrays and maps are folded into one value at compile time.
            Some(rhai::ASTNode::Expr(Expr::DynamicConstant(d, _))) => strings_in(d, &mut out),
            _ => {}
        }
        true
    });
    out.sort();
    out.dedup();
    out
}

/// Every window-function call in a script: `rate("m", "5m")`,
/// `rate(node, "m", "5m")` and `node.rate("m", "5m")`. A range literal that
/// is not a valid duration is an error at its position. A computed metric
/// name is taken to be one of the script's string literals.
pub fn range_needs(ast: &AST) -> Result<Vec<RangeNeed>, (String, usize, usize)> {
    let literals = std::sync::OnceLock::new();
    let mut needs = Vec::new();
    let mut error = None;
    ast.walk(&mut |path| {
        let (call, pos, method) = match path.last() {
            Some(rhai::ASTNode::Expr(Expr::FnCall(call, pos))) => (call, pos, false),
            // A call as a whole statement (`rate("m", "5m")` alone) is a Stmt.
            Some(rhai::ASTNode::Stmt(Stmt::FnCall(call, pos))) => (call, pos, false),
            Some(rhai::ASTNode::Expr(Expr::MethodCall(call, pos))) => (call, pos, true),
            _ => return true,
        };
        if WindowFn::from_name(call.name.as_str()).is_none() {
            return true;
        }
        let args = &call.args;
        let (metric, range) = match (method, args.len()) {
            (true, 2) | (false, 2) => (args.first(), args.get(1)),
            (false, 3) => (args.get(1), args.get(2)),
            _ => return true,
        };
        let literal = |e: Option<&Expr>| match e {
            Some(Expr::StringConstant(s, p)) => Some((s.to_string(), *p)),
            _ => None,
        };
        let range = match literal(range) {
            Some((text, rpos)) => match crate::duration::parse_window(&text) {
                Ok(d) => Some(d),
                Err(e) => {
                    let p = if rpos.is_none() { *pos } else { rpos };
                    error = Some((format!("{}(): {e}", call.name), p.line().unwrap_or(1), p.position().unwrap_or(1)));
                    return false;
                }
            },
            None => None,
        };
        match literal(metric) {
            Some((m, _)) => needs.push(RangeNeed { metric: Some(m), range }),
            None if range.is_some() => {
                let names: &Vec<String> = literals.get_or_init(|| string_literals(ast));
                needs.extend(names.iter().map(|m| RangeNeed { metric: Some(m.clone()), range }));
            }
            None => needs.push(RangeNeed { metric: None, range }),
        }
        true
    });
    match error {
        Some(e) => Err(e),
        None => Ok(needs),
    }
}

/// The names a script may read as metrics: variables, map properties
/// (`n.zk_avg_latency`), literal indexes (`n["zk_x"]`) and literal arguments
/// of `value`/`absent`. Where a name is computed (`n[k[0]]`), every string
/// literal of the script counts; the second value says whether that
/// happened.
pub fn read_names(ast: &AST) -> (Vec<String>, bool) {
    let mut names = Vec::new();
    let mut dynamic = false;
    ast.walk(&mut |path| {
        match path.last() {
            Some(rhai::ASTNode::Expr(Expr::Variable(v, ..))) => names.push(v.1.to_string()),
            Some(rhai::ASTNode::Expr(Expr::Property(p, _))) => names.push(p.2.to_string()),
            Some(rhai::ASTNode::Expr(Expr::Index(b, ..))) => match &b.rhs {
                Expr::StringConstant(s, _) => names.push(s.to_string()),
                Expr::IntegerConstant(..) => {}
                _ => dynamic = true,
            },
            Some(
                rhai::ASTNode::Expr(Expr::FnCall(call, _) | Expr::MethodCall(call, _))
                | rhai::ASTNode::Stmt(Stmt::FnCall(call, _)),
            ) if matches!(call.name.as_str(), "value" | "absent") => {
                match call.args.iter().find(|a| !matches!(a, Expr::Variable(..))) {
                    Some(Expr::StringConstant(s, _)) => names.push(s.to_string()),
                    _ => dynamic = true,
                }
            }
            _ => {}
        }
        true
    });
    if dynamic {
        names.extend(string_literals(ast));
    }
    names.sort();
    names.dedup();
    (names, dynamic)
}

/// Metric names given literally to window functions, `value` and `absent`:
/// names read as metrics for sure (`check` judges them against the
/// metric catalogue). A computed name is not here.
pub fn literal_metric_args(ast: &AST) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    ast.walk(&mut |path| {
        let (call, method) = match path.last() {
            Some(rhai::ASTNode::Expr(Expr::FnCall(call, _)) | rhai::ASTNode::Stmt(Stmt::FnCall(call, _))) => {
                (call, false)
            }
            Some(rhai::ASTNode::Expr(Expr::MethodCall(call, _))) => (call, true),
            _ => return true,
        };
        let name = call.name.as_str();
        let arg = if WindowFn::from_name(name).is_some() {
            match (method, call.args.len()) {
                (_, 2) => call.args.first(),
                (false, 3) => call.args.get(1),
                _ => None,
            }
        } else if matches!(name, "value" | "absent") {
            call.args.iter().find(|a| !matches!(a, Expr::Variable(..)))
        } else {
            None
        };
        if let Some(Expr::StringConstant(s, _)) = arg
            && !names.iter().any(|n| n == s.as_str())
        {
            names.push(s.to_string());
        }
        true
    });
    names
}

/// A value produced by an operand.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Number(f64),
    Bool(bool),
    Str(String),
}

impl Value {
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Number(_) => "a number",
            Value::Bool(_) => "a bool",
            Value::Str(_) => "a string",
        }
    }
}

/// Why an evaluation produced no value.
#[derive(Debug)]
pub enum EvalFailure {
    /// Missing data: the instance yields no result. Not an error.
    NoData,
    Error(Box<EvalAltResult>),
    Type(String),
}

impl From<Box<EvalAltResult>> for EvalFailure {
    fn from(e: Box<EvalAltResult>) -> Self {
        if is_no_data(&e) { EvalFailure::NoData } else { EvalFailure::Error(e) }
    }
}

pub fn to_value(d: Dynamic) -> Result<Value, EvalFailure> {
    if let Ok(f) = d.as_float() {
        return Ok(Value::Number(f));
    }
    if let Ok(i) = d.as_int() {
        return Ok(Value::Number(i as f64));
    }
    if let Ok(b) = d.as_bool() {
        return Ok(Value::Bool(b));
    }
    if d.is_unit() {
        return Err(EvalFailure::Type("expression produced nothing (())".into()));
    }
    match d.into_immutable_string() {
        Ok(s) => Ok(Value::Str(s.to_string())),
        Err(t) => Err(EvalFailure::Type(format!("expression produced {t}, expected a number or a bool"))),
    }
}

/// Evaluates a script operand in `scope`.
pub fn eval_script(engine: &Engine, ast: &AST, scope: &mut Scope) -> Result<Value, EvalFailure> {
    let d = engine.eval_ast_with_scope::<Dynamic>(scope, ast)?;
    to_value(d)
}

/// Compares two values with strict types.
pub fn compare(lhs: &Value, op: CmpOp, rhs: &Value) -> Result<bool, EvalFailure> {
    match (lhs, rhs) {
        (Value::Number(a), Value::Number(b)) => Ok(op.apply(a, b)),
        (Value::Str(a), Value::Str(b)) => Ok(op.apply(a, b)),
        (Value::Bool(a), Value::Bool(b)) if matches!(op, CmpOp::Eq | CmpOp::Ne) => Ok((a == b) == (op == CmpOp::Eq)),
        _ => Err(EvalFailure::Type(format!(
            "type mismatch: cannot compare {} {op} {}",
            lhs.type_name(),
            rhs.type_name()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::engine::{Limits, build_engine};
    use std::time::Duration;

    fn c(src: &str) -> CompiledExpr {
        compile(&build_engine(&Limits::default()), src, true).unwrap()
    }

    #[test]
    fn simple_comparison_is_native() {
        let e = c("zk_avg_latency > 100");
        assert!(
            matches!(e.kind, ExprKind::Compare { lhs: Operand::Metric(ref m), op: CmpOp::Gt, rhs: Operand::Number(v) } if m == "zk_avg_latency" && v == 100.0)
        );
        assert_eq!(e.metrics, vec!["zk_avg_latency".to_string()]);
    }

    #[test]
    fn complex_sides_become_scripts() {
        let e = c(r#"rate("zk_packets_received", "1m") + zk_x > 2 * 3"#);
        assert!(matches!(e.kind, ExprKind::Compare { lhs: Operand::Script(_), rhs: _, .. }));
        assert_eq!(
            e.ranges,
            vec![RangeNeed { metric: Some("zk_packets_received".into()), range: Some(Duration::from_secs(60)) }]
        );
        assert_eq!(e.metrics, vec!["zk_x".to_string()]);
        let e = compile(&build_engine(&Limits::default()), r#"nodes.filter(|n| n.rate("m", "2m") > 1).len()"#, false)
            .unwrap();
        assert_eq!(e.ranges, vec![RangeNeed { metric: Some("m".into()), range: Some(Duration::from_secs(120)) }]);
        let e = c("a > 1 && b < 2");
        assert!(matches!(e.kind, ExprKind::Single(Operand::Script(_))));
    }

    #[test]
    fn errors_have_positions() {
        let engine = build_engine(&Limits::default());
        let e = compile(&engine, "up == ", true).unwrap_err();
        assert_eq!((e.line, e.col), (1, 7), "{e:?}");
        let e = compile(&engine, r#"rate("x", "5q") > 1"#, true).unwrap_err();
        assert!(e.message.contains("invalid duration"), "{e:?}");
        assert_eq!((e.line, e.col), (1, 11));
    }

    #[test]
    fn strict_comparison() {
        assert!(compare(&Value::Str("abc".into()), CmpOp::Gt, &Value::Number(100.0)).is_err());
        assert!(compare(&Value::Number(1.0), CmpOp::Lt, &Value::Number(2.0)).unwrap());
    }
}
