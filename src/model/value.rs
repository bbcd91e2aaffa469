//! Sample values: the stale marker and how numbers render in annotations.

/// Prometheus's staleness marker: a NaN with a reserved bit pattern, written
/// when a series disappears. Distinct from an ordinary NaN sample.
pub const STALE_NAN: f64 = f64::from_bits(0x7ff0_0000_0000_0002);

pub fn is_stale(v: f64) -> bool {
    v.to_bits() == STALE_NAN.to_bits()
}

/// Renders a number as Prometheus templates render `$value` (Go's `%v` on a
/// float64): `250`, `0.25`, `1e+06`, `1.5e-05`, `NaN`, `+Inf`.
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf".into() } else { "-Inf".into() };
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0".into() } else { "0".into() };
    }
    // Shortest round-trip digits, then Go's %v layout: exponent form when the
    // decimal exponent is < -4 or >= 21.
    let sci = format!("{v:e}"); // e.g. "2.5e2", "-1.5e-5"
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..21).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{mantissa}e{sign}{:02}", exp.abs());
    }
    let s = format!("{v}");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_prometheus() {
        assert_eq!(format_value(250.0), "250");
        assert_eq!(format_value(0.25), "0.25");
        assert_eq!(format_value(-3.5), "-3.5");
        assert_eq!(format_value(1e6), "1000000");
        assert_eq!(format_value(1e21), "1e+21");
        assert_eq!(format_value(0.00001), "1e-05");
        assert_eq!(format_value(0.000015), "1.5e-05");
        assert_eq!(format_value(0.0001), "0.0001");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(1.0 / 3.0), "0.3333333333333333");
    }

    #[test]
    fn stale_marker_is_distinct_nan() {
        assert!(is_stale(STALE_NAN));
        assert!(!is_stale(f64::NAN));
        assert!(STALE_NAN.is_nan());
    }
}
