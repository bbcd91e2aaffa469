//! promtool's series notation: `up{job="api", instance="a:1"}` and value
//! strings like `0 1+1x3 _x2 stale 5x2 -2+4x3`.

use crate::model::{Labels, STALE_NAN};

/// One step of an input series: a value, a stale marker or nothing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Step {
    Value(f64),
    Missing,
}

impl Step {
    pub fn stale() -> Step {
        Step::Value(STALE_NAN)
    }
}

/// Parses `name{label="value", ...}` (the name may be omitted if
/// `__name__` is given). Returns the metric name and the other labels.
pub fn parse_series(text: &str) -> Result<(String, Labels), String> {
    let s = text.trim();
    let (name, rest) = match s.find('{') {
        Some(i) => (s[..i].trim(), &s[i..]),
        None => (s, ""),
    };
    let mut labels: Vec<(String, String)> = Vec::new();
    let mut name = name.to_string();
    if !rest.is_empty() {
        let inner = rest
            .strip_prefix('{')
            .and_then(|r| r.trim_end().strip_suffix('}'))
            .ok_or_else(|| format!("series {text:?}: unbalanced braces"))?;
        let mut chars = inner.chars().peekable();
        loop {
            while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
                chars.next();
            }
            if chars.peek().is_none() {
                break;
            }
            let mut key = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_ascii_alphanumeric() || c == '_' {
                    key.push(c);
                    chars.next();
                } else {
                    break;
                }
            }
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
            if key.is_empty() || chars.next() != Some('=') {
                return Err(format!("series {text:?}: expected label=\"value\""));
            }
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
            let quote = chars.next().filter(|c| *c == '"' || *c == '\'' || *c == '`');
            let Some(quote) = quote else {
                return Err(format!("series {text:?}: label {key} needs a quoted value"));
            };
            let mut value = String::new();
            loop {
                match chars.next() {
                    None => return Err(format!("series {text:?}: unterminated value for {key}")),
                    Some(c) if c == quote => break,
                    Some('\\') if quote != '`' => match chars.next() {
                        Some('n') => value.push('\n'),
                        Some('t') => value.push('\t'),
                        Some(c) => value.push(c),
                        None => return Err(format!("series {text:?}: dangling escape")),
                    },
                    Some(c) => value.push(c),
                }
            }
            if key == "__name__" {
                name = value;
            } else {
                labels.push((key, value));
            }
        }
    }
    if name.is_empty() {
        return Err(format!("series {text:?} has no metric name"));
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        || name.starts_with(|c: char| c.is_ascii_digit())
    {
        return Err(format!("series {text:?}: invalid metric name {name:?}"));
    }
    Ok((name, Labels::from_pairs(labels)))
}

/// Most values one series may expand to (`0+1x1000000`), so a few bytes
/// of a test file cannot ask for gigabytes.
pub const MAX_VALUES: usize = 1_000_000;

/// Expands a values string into at most `limit` steps (at most
/// [`MAX_VALUES`]).
pub fn parse_values(text: &str, limit: usize) -> Result<Vec<Step>, String> {
    let limit = limit.min(MAX_VALUES);
    let mut out = Vec::new();
    for token in text.split_whitespace() {
        expand(token, &mut out, limit).map_err(|e| format!("values: {token:?}: {e}"))?;
        if out.len() > limit {
            return Err(format!("values: more than {limit} values"));
        }
    }
    Ok(out)
}

fn expand(token: &str, out: &mut Vec<Step>, limit: usize) -> Result<(), String> {
    match token {
        "_" => {
            out.push(Step::Missing);
            return Ok(());
        }
        "stale" => {
            out.push(Step::stale());
            return Ok(());
        }
        _ => {}
    }
    let (head, times) = match token.rsplit_once('x') {
        Some((h, n)) if !h.is_empty() => {
            let n: usize = n.parse().map_err(|_| "the count after 'x' must be a whole number".to_string())?;
            (h, Some(n))
        }
        _ => (token, None),
    };
    // Counted before expanding: the values never exist past the limit.
    if times.is_some_and(|n| n.saturating_add(out.len()) > limit) {
        return Err(format!("more than {limit} values"));
    }
    if head == "_" {
        let n = times.ok_or("expected _xN")?;
        out.extend(std::iter::repeat_n(Step::Missing, n));
        return Ok(());
    }
    if head == "stale" {
        return Err("stale cannot be repeated".into());
    }
    // Split "a+b" / "a-b" at an operator that is neither the leading sign nor
    // part of an exponent.
    let bytes = head.as_bytes();
    let split =
        (1..bytes.len()).find(|&i| (bytes[i] == b'+' || bytes[i] == b'-') && !matches!(bytes[i - 1], b'e' | b'E'));
    let (start, step) = match split {
        Some(i) => {
            let start = number(&head[..i])?;
            let step = number(&head[i + 1..])?;
            (start, if bytes[i] == b'-' { -step } else { step })
        }
        None => (number(head)?, 0.0),
    };
    match times {
        None if split.is_some() => Err("a+b needs a count: a+bxN".into()),
        None => {
            out.push(Step::Value(start));
            Ok(())
        }
        Some(n) => {
            out.extend((0..=n).map(|i| Step::Value(start + step * i as f64)));
            Ok(())
        }
    }
}

fn number(s: &str) -> Result<f64, String> {
    crate::yaml::parse_float(s).ok_or_else(|| format!("{s:?} is not a number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vals(s: &str) -> Vec<Option<f64>> {
        parse_values(s, MAX_VALUES)
            .unwrap()
            .into_iter()
            .map(|st| match st {
                Step::Value(v) if v.is_nan() => Some(-999.0),
                Step::Value(v) => Some(v),
                Step::Missing => None,
            })
            .collect()
    }

    #[test]
    fn promtool_documented_examples() {
        assert_eq!(vals("-2+4x3"), vec![Some(-2.0), Some(2.0), Some(6.0), Some(10.0)]);
        assert_eq!(vals(" 1-2x4"), vec![Some(1.0), Some(-1.0), Some(-3.0), Some(-5.0), Some(-7.0)]);
        assert_eq!(vals(" 1x4"), vec![Some(1.0); 5]);
        assert_eq!(vals(" 1 _x3 stale"), vec![Some(1.0), None, None, None, Some(-999.0)]);
        assert_eq!(vals("10+10x2 30+20x5").len(), 9);
        assert_eq!(vals("1e3 1e-1+1e-1x1"), vec![Some(1000.0), Some(0.1), Some(0.2)]);
    }

    #[test]
    fn bad_values() {
        for bad in ["abc", "1+x3", "1+2", "_x", "stalex3", "1x-1"] {
            assert!(parse_values(bad, MAX_VALUES).is_err(), "{bad}");
        }
    }

    #[test]
    fn series_selectors() {
        let (n, l) = parse_series(r#"up{job="prometheus", instance="localhost:9090"}"#).unwrap();
        assert_eq!(n, "up");
        assert_eq!(l.get("instance"), Some("localhost:9090"));
        let (n, l) = parse_series(r#"{__name__="x", a="q\"uote"}"#).unwrap();
        assert_eq!((n.as_str(), l.get("a")), ("x", Some("q\"uote")));
        assert_eq!(parse_series("zk_up").unwrap().1.len(), 0);
        assert!(parse_series("up{a=1}").is_err());
        assert!(parse_series("up{a=\"1\"").is_err());
    }
}
