//! One series' recent samples and the functions rules apply over them
//! (`rate`, `increase`, `delta`, `*_over_time`, `changes`), with
//! Prometheus's semantics: counter resets, extrapolation, stale markers.

use crate::model::STALE_NAN;
use crate::model::Timestamp;
use std::collections::VecDeque;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub ts: Timestamp,
    pub value: f64,
}

impl Point {
    fn is_stale(&self) -> bool {
        self.value.to_bits() == STALE_NAN.to_bits()
    }
}

/// Samples of one series in time order.
#[derive(Debug, Clone, Default)]
pub struct Window {
    points: VecDeque<Point>,
}

/// The functions over a range of samples that rules can call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WindowFn {
    Rate,
    Increase,
    Delta,
    AvgOverTime,
    MinOverTime,
    MaxOverTime,
    SumOverTime,
    CountOverTime,
    LastOverTime,
    Changes,
    Resets,
}

impl WindowFn {
    pub const ALL: [WindowFn; 11] = [
        WindowFn::Rate,
        WindowFn::Increase,
        WindowFn::Delta,
        WindowFn::AvgOverTime,
        WindowFn::MinOverTime,
        WindowFn::MaxOverTime,
        WindowFn::SumOverTime,
        WindowFn::CountOverTime,
        WindowFn::LastOverTime,
        WindowFn::Changes,
        WindowFn::Resets,
    ];

    pub fn name(self) -> &'static str {
        match self {
            WindowFn::Rate => "rate",
            WindowFn::Increase => "increase",
            WindowFn::Delta => "delta",
            WindowFn::AvgOverTime => "avg_over_time",
            WindowFn::MinOverTime => "min_over_time",
            WindowFn::MaxOverTime => "max_over_time",
            WindowFn::SumOverTime => "sum_over_time",
            WindowFn::CountOverTime => "count_over_time",
            WindowFn::LastOverTime => "last_over_time",
            WindowFn::Changes => "changes",
            WindowFn::Resets => "resets",
        }
    }

    pub fn from_name(name: &str) -> Option<WindowFn> {
        WindowFn::ALL.into_iter().find(|f| f.name() == name)
    }
}

impl Window {
    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    pub fn points(&self) -> impl Iterator<Item = &Point> {
        self.points.iter()
    }

    pub(super) fn push(&mut self, p: Point, oldest: Timestamp, max_points: usize) {
        match self.points.back_mut() {
            Some(last) if p.ts < last.ts => return,
            Some(last) if p.ts == last.ts => *last = p,
            _ => self.points.push_back(p),
        }
        self.trim(oldest);
        while self.points.len() > max_points {
            self.points.pop_front();
        }
    }

    pub(super) fn trim(&mut self, oldest: Timestamp) {
        while self.points.front().is_some_and(|p| p.ts < oldest) {
            self.points.pop_front();
        }
    }

    /// The newest sample at or before `now`, within `lookback`, not stale.
    pub fn latest(&self, now: Timestamp, lookback: Duration) -> Option<f64> {
        let p = self.points.iter().rev().find(|p| p.ts <= now)?;
        if p.ts <= now - lookback || p.is_stale() {
            return None;
        }
        Some(p.value)
    }

    /// Samples in the left-open range `(now - range, now]`, stale markers
    /// dropped (Prometheus 3 range-selector semantics).
    pub fn range(&self, now: Timestamp, range: Duration) -> impl Iterator<Item = Point> + '_ {
        let start = now - range;
        // Windows are short; a binary search on the deque would also do.
        let first = self.points.partition_point(|p| p.ts <= start);
        self.points.range(first..).take_while(move |p| p.ts <= now).filter(|p| !p.is_stale()).copied()
    }

    /// Applies a window function; `None` when the range has too few samples
    /// (Prometheus returns no result then).
    pub fn apply(&self, f: WindowFn, now: Timestamp, range: Duration) -> Option<f64> {
        let pts: Vec<Point> = self.range(now, range).collect();
        match f {
            WindowFn::Rate => extrapolated_rate(&pts, now, range, true, true),
            WindowFn::Increase => extrapolated_rate(&pts, now, range, true, false),
            WindowFn::Delta => extrapolated_rate(&pts, now, range, false, false),
            WindowFn::AvgOverTime => {
                (!pts.is_empty()).then(|| pts.iter().map(|p| p.value).sum::<f64>() / pts.len() as f64)
            }
            WindowFn::MinOverTime => pts.iter().map(|p| p.value).reduce(f64::min),
            WindowFn::MaxOverTime => pts.iter().map(|p| p.value).reduce(f64::max),
            WindowFn::SumOverTime => (!pts.is_empty()).then(|| pts.iter().map(|p| p.value).sum()),
            WindowFn::CountOverTime => (!pts.is_empty()).then_some(pts.len() as f64),
            WindowFn::LastOverTime => pts.last().map(|p| p.value),
            WindowFn::Changes => (!pts.is_empty()).then(|| {
                pts.windows(2)
                    .filter(|w| w[0].value != w[1].value && !(w[0].value.is_nan() && w[1].value.is_nan()))
                    .count() as f64
            }),
            WindowFn::Resets => {
                (!pts.is_empty()).then(|| pts.windows(2).filter(|w| w[1].value < w[0].value).count() as f64)
            }
        }
    }
}

/// Prometheus's `extrapolatedRate` (promql/functions.go): the increase over
/// the samples in range, corrected for counter resets, extrapolated towards
/// the range edges (but not below zero for counters, and not further than
/// half a sample interval past the data).
fn extrapolated_rate(pts: &[Point], now: Timestamp, range: Duration, is_counter: bool, is_rate: bool) -> Option<f64> {
    if pts.len() < 2 {
        return None;
    }
    let first = pts[0];
    let last = pts[pts.len() - 1];
    let mut result = last.value - first.value;
    if is_counter {
        let mut prev = first.value;
        for p in &pts[1..] {
            if p.value < prev {
                result += prev;
            }
            prev = p.value;
        }
    }
    let range_start = (now - range).as_secs_f64();
    let range_end = now.as_secs_f64();
    let mut to_start = first.ts.as_secs_f64() - range_start;
    let to_end = range_end - last.ts.as_secs_f64();
    let sampled = last.ts.as_secs_f64() - first.ts.as_secs_f64();
    let avg_step = sampled / (pts.len() - 1) as f64;
    if is_counter && result > 0.0 && first.value >= 0.0 {
        let to_zero = sampled * (first.value / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    let threshold = avg_step * 1.1;
    let mut extrapolate_to = sampled;
    extrapolate_to += if to_start >= threshold { avg_step / 2.0 } else { to_start };
    extrapolate_to += if to_end >= threshold { avg_step / 2.0 } else { to_end };
    let mut factor = extrapolate_to / sampled;
    if is_rate {
        factor /= range.as_secs_f64();
    }
    Some(result * factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(values: &[(i64, f64)]) -> Window {
        let mut w = Window::default();
        for (s, v) in values {
            w.push(Point { ts: Timestamp::from_millis(s * 1000), value: *v }, Timestamp::from_millis(i64::MIN), 10_000);
        }
        w
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_millis(s * 1000)
    }

    const MIN5: Duration = Duration::from_secs(300);

    #[test]
    fn rate_of_steady_counter() {
        // 0,60,120,... one per 15s at 4/s: rate 4.
        let w = window(&(0..=20).map(|i| (i * 15, (i * 60) as f64)).collect::<Vec<_>>());
        let r = w.apply(WindowFn::Rate, at(300), MIN5).unwrap();
        assert!((r - 4.0).abs() < 1e-9, "{r}");
    }

    #[test]
    fn rate_handles_counter_reset() {
        // 100,200,300, reset to 0, 100, 200: total increase 500 over the 6 samples.
        let w = window(&[(0, 100.0), (60, 200.0), (120, 300.0), (180, 0.0), (240, 100.0), (300, 200.0)]);
        let inc = w.apply(WindowFn::Increase, at(300), MIN5).unwrap();
        // The range (0s, 300s] holds 200,300,0,100,200: raw increase 0 plus the
        // reset correction 300 = 300 over 240s sampled; the start gap (60s) is
        // under 1.1 x the 60s step, so it extrapolates to 300s: 300 * 300/240.
        assert!((inc - 375.0).abs() < 1e-9, "{inc}");
        let rate = w.apply(WindowFn::Rate, at(300), MIN5).unwrap();
        assert!(rate > 0.0, "a reset never makes a rate negative: {rate}");
    }

    #[test]
    fn delta_and_over_time() {
        let w = window(&[(60, 10.0), (120, 4.0), (180, 7.0)]);
        assert_eq!(w.apply(WindowFn::MinOverTime, at(180), MIN5), Some(4.0));
        assert_eq!(w.apply(WindowFn::MaxOverTime, at(180), MIN5), Some(10.0));
        assert_eq!(w.apply(WindowFn::AvgOverTime, at(180), MIN5), Some(7.0));
        assert_eq!(w.apply(WindowFn::Changes, at(180), MIN5), Some(2.0));
        assert_eq!(w.apply(WindowFn::Resets, at(180), MIN5), Some(1.0));
        // Range (60, 180] excludes the sample at 60.
        assert_eq!(w.apply(WindowFn::MaxOverTime, at(180), Duration::from_secs(120)), Some(7.0));
        assert!(w.apply(WindowFn::Delta, at(180), MIN5).unwrap() < 0.0);
        assert_eq!(w.apply(WindowFn::Rate, at(60), MIN5), None, "one sample: no rate");
    }

    #[test]
    fn stale_markers_are_dropped_from_ranges() {
        let w = window(&[(0, 1.0), (60, STALE_NAN), (120, 3.0)]);
        assert_eq!(w.apply(WindowFn::CountOverTime, at(120), MIN5), Some(2.0));
    }
}
