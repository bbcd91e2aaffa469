//! Annotation templates: minijinja over `labels`, `value`, `severity`, with
//! numbers rendered as Prometheus renders them (`250`, `0.25`). Prometheus
//! spellings (`$labels`, `$value`) are accepted so rule files port as-is.

use crate::model::format_value;
use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value};
use std::collections::BTreeMap;

/// All templates of a rule set, compiled once at load.
pub struct AnnotationTemplates {
    env: Environment<'static>,
    count: usize,
}

impl std::fmt::Debug for AnnotationTemplates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnnotationTemplates").field("count", &self.count).finish()
    }
}

/// Handle of one compiled template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateId(String);

/// An annotation template's syntax error; `line` is 1-based inside the
/// template text.
#[derive(Debug, Clone)]
pub struct AnnotationError {
    pub line: usize,
    pub message: String,
}

impl Default for AnnotationTemplates {
    fn default() -> Self {
        Self::new()
    }
}

impl AnnotationTemplates {
    pub fn new() -> Self {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_auto_escape_callback(|_| AutoEscape::None);
        env.set_fuel(Some(100_000));
        env.set_formatter(|out, state, value| {
            if value.kind() == minijinja::value::ValueKind::Number
                && !value.is_integer()
                && let Ok(f) = f64::try_from(value.clone())
            {
                out.write_str(&format_value(f))?;
                return Ok(());
            }
            minijinja::escape_formatter(out, state, value)
        });
        env.add_filter("humanize", |v: f64| humanize(v));
        env.add_filter("humanize_percentage", |v: f64| {
            format!("{}%", format_value((v * 100.0 * 100.0).round() / 100.0))
        });
        env.add_filter("humanize_duration", |v: f64| {
            crate::duration::format_duration(std::time::Duration::from_secs_f64(v.max(0.0)))
        });
        Self { env, count: 0 }
    }

    /// Compiles a template; `$labels`/`$value` become `labels`/`value`.
    pub fn add(&mut self, source: &str) -> Result<TemplateId, AnnotationError> {
        let source = source
            .replace("$labels", "labels")
            .replace("$value", "value")
            .replace("$externalLabels", "external_labels");
        let name = format!("t{}", self.count);
        self.env.add_template_owned(name.clone(), source).map_err(|e| AnnotationError {
            line: e.line().unwrap_or(1),
            message: e.detail().map(str::to_string).unwrap_or_else(|| e.kind().to_string()),
        })?;
        self.count += 1;
        Ok(TemplateId(name))
    }

    /// Renders; a render error becomes the annotation text, as Prometheus
    /// does, so the alert still goes out.
    pub fn render(&self, id: &TemplateId, labels: &crate::model::Labels, value: f64, severity: &str) -> String {
        let labels: BTreeMap<String, String> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let ctx =
            minijinja::context! { labels => labels, value => Value::from(value), severity => severity.to_string() };
        match self.env.get_template(&id.0).and_then(|t| t.render(ctx)) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "annotation template failed");
                format!("<error expanding template: {e}>")
            }
        }
    }
}

/// Prometheus's `humanize`: SI prefixes for large and small numbers.
fn humanize(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format_value(v);
    }
    let abs = v.abs();
    if abs >= 1.0 {
        let prefixes = ["", "k", "M", "G", "T", "P", "E", "Z", "Y"];
        let mut x = v;
        let mut i = 0;
        while x.abs() >= 1000.0 && i < prefixes.len() - 1 {
            x /= 1000.0;
            i += 1;
        }
        return format!("{}{}", trim_float(x), prefixes[i]);
    }
    let prefixes = ["", "m", "u", "n", "p", "f", "a", "z", "y"];
    let mut x = v;
    let mut i = 0;
    while x.abs() < 1.0 && i < prefixes.len() - 1 {
        x *= 1000.0;
        i += 1;
    }
    format!("{}{}", trim_float(x), prefixes[i])
}

fn trim_float(x: f64) -> String {
    let s = format!("{x:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Labels;

    #[test]
    fn renders_values_like_prometheus() {
        let mut t = AnnotationTemplates::new();
        let id = t.add("avg latency {{ value }} ms on {{ labels.instance }} ({{ severity }})").unwrap();
        let l = Labels::from_pairs([("instance", "zk1:2181")]);
        assert_eq!(t.render(&id, &l, 250.0, "P2"), "avg latency 250 ms on zk1:2181 (P2)");
        assert_eq!(t.render(&id, &l, 0.25, "P2"), "avg latency 0.25 ms on zk1:2181 (P2)");
    }

    #[test]
    fn prometheus_spelling_ports() {
        let mut t = AnnotationTemplates::new();
        let id = t.add("Instance {{ $labels.instance }} down ({{ $value }})").unwrap();
        assert_eq!(t.render(&id, &Labels::from_pairs([("instance", "a")]), 0.0, "P1"), "Instance a down (0)");
    }

    #[test]
    fn errors() {
        let mut t = AnnotationTemplates::new();
        assert!(t.add("{{ value ").is_err());
        let id = t.add("{{ labels.nope }}").unwrap();
        assert!(t.render(&id, &Labels::new(), 1.0, "P1").starts_with("<error expanding template"));
    }

    #[test]
    fn humanize_like_prometheus() {
        assert_eq!(humanize(1234567.0), "1.2346M");
        assert_eq!(humanize(0.001), "1m");
        assert_eq!(humanize(12.0), "12");
    }
}
