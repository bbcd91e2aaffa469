//! The metric catalogue: every metric name docs/metrics.md lists, read from
//! that file as compiled in (`include_str!`), so the doc stays the one
//! source of truth. `zkalert check` warns on names rules read that no
//! source produces, with the closest catalogue name.

use crate::diag::{Diagnostics, Pos};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::OnceLock;

const METRICS_DOC: &str = include_str!("../../docs/metrics.md");

/// A metric name a rule's expression or script reads, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricRead {
    pub name: String,
    pub path: PathBuf,
    pub pos: Pos,
    /// Read as a metric for sure: an instance variable, or the literal
    /// name of a window function, `value` or `absent`. Otherwise a
    /// property or a script's name, which may as well be a label or a
    /// local variable.
    pub certain: bool,
}

/// The names docs/metrics.md lists, and the prefixes several of them share
/// (`zk_`, `host_`): names that look like ZooKeeper's or the host agent's.
#[derive(Debug, Clone, Default)]
pub struct Catalogue {
    pub names: BTreeSet<String>,
    pub prefixes: BTreeSet<String>,
}

/// The catalogue of docs/metrics.md as compiled in.
pub fn catalogue() -> &'static Catalogue {
    static CATALOGUE: OnceLock<Catalogue> = OnceLock::new();
    CATALOGUE.get_or_init(|| Catalogue::parse(METRICS_DOC))
}

fn is_metric_name(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// The `backticked` words of a table cell.
fn backticked(cell: &str) -> impl Iterator<Item = &str> {
    cell.split('`').skip(1).step_by(2)
}

impl Catalogue {
    /// Reads the tables whose first column is headed `metric`: the names
    /// in that column; in a row whose first cell is prose ("every numeric
    /// `mntr` key"), the names its other cells list.
    pub fn parse(doc: &str) -> Catalogue {
        let mut names = BTreeSet::new();
        let mut in_metric_table = false;
        let mut header_next = true;
        for line in doc.lines() {
            let line = line.trim();
            if !line.starts_with('|') {
                header_next = true;
                in_metric_table = false;
                continue;
            }
            let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
            if header_next {
                header_next = false;
                in_metric_table = cells.first().is_some_and(|c| c.eq_ignore_ascii_case("metric"));
                continue;
            }
            if !in_metric_table || cells.iter().all(|c| c.chars().all(|ch| matches!(ch, '-' | ':'))) {
                continue;
            }
            let first = cells.first().copied().unwrap_or_default();
            if first.starts_with('`') {
                for (i, word) in backticked(first).enumerate() {
                    // `up`; then only names (the cell may mention commands).
                    if is_metric_name(word) && (i == 0 || word.contains('_')) {
                        names.insert(word.to_string());
                    }
                }
            } else {
                for cell in &cells[1..] {
                    names.extend(backticked(cell).filter(|w| is_metric_name(w) && w.contains('_')).map(String::from));
                }
            }
        }
        let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
        for n in &names {
            if let Some(i) = n.find('_') {
                *counts.entry(&n[..=i]).or_default() += 1;
            }
        }
        let prefixes = counts.into_iter().filter(|(_, c)| *c >= 3).map(|(p, _)| p.to_string()).collect();
        Catalogue { names, prefixes }
    }

    pub fn has_prefix(&self, name: &str) -> bool {
        self.prefixes.iter().any(|p| name.starts_with(p.as_str()))
    }

    /// The catalogue name closest to `name`, if reasonably close.
    pub fn closest(&self, name: &str) -> Option<&str> {
        self.names
            .iter()
            .map(|k| (crate::diag::edit_distance(name, k), k.as_str()))
            .filter(|(d, k)| *d <= 2.max(k.len() / 5))
            .min_by_key(|(d, _)| *d)
            .map(|(_, k)| k)
    }

    /// Warnings for the names in `reads` no source produces. `any_name`
    /// says the configured sources can produce any name (a `prometheus`
    /// source, or no config to tell): then only names with a catalogue
    /// prefix, or read for sure as metrics, are judged. One warning per
    /// file and name, at its first read.
    pub fn check(&self, reads: &[MetricRead], any_name: bool) -> Diagnostics {
        let mut out = Diagnostics::default();
        let mut seen = BTreeSet::new();
        for r in reads {
            if self.names.contains(&r.name) || !seen.insert((&r.path, &r.name)) {
                continue;
            }
            let judged = if any_name || !r.certain { self.has_prefix(&r.name) } else { true };
            if !judged {
                continue;
            }
            let hint = self.closest(&r.name).map(|c| format!("; did you mean {c:?}?")).unwrap_or_default();
            out.push(&r.path, r.pos, format!("no source produces metric {:?} (docs/metrics.md){hint}", r.name));
        }
        out
    }
}

/// Where `name` first appears in `text` as a whole word: (line, col), 1-based.
pub fn find_word(text: &str, name: &str) -> Option<(usize, usize)> {
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut from = 0;
    while let Some(i) = text[from..].find(name).map(|i| i + from) {
        let before = text[..i].chars().next_back();
        let after = text[i + name.len()..].chars().next();
        if !before.is_some_and(is_word) && !after.is_some_and(is_word) {
            let line = text[..i].matches('\n').count() + 1;
            let col = text[..i].rfind('\n').map_or(i, |nl| i - nl - 1) + 1;
            return Some((line, col));
        }
        from = i + name.len();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalogue_is_read_from_the_metric_tables() {
        let c = catalogue();
        for name in [
            "up",
            "scrape_duration_seconds",
            "zk_avg_latency",
            "zk_outstanding_requests",
            "zk_jvm_heap_max_bytes",
            "zk_client_connections",
            "zk_cluster_quorum",
            "host_disk_used_percent",
            "host_disk_inodes_used_percent",
        ] {
            assert!(c.names.contains(name), "{name} missing: {:?}", c.names);
        }
        // Source types, commands and labels are not metrics.
        for not in ["zookeeper", "prometheus", "conf", "envi", "mntr", "cluster", "instance", "path"] {
            assert!(!c.names.contains(not), "{not} is not a metric");
        }
        assert_eq!(c.prefixes.iter().map(String::as_str).collect::<Vec<_>>(), ["host_", "zk_"]);
        assert_eq!(c.closest("zk_outstanding_request"), Some("zk_outstanding_requests"));
        assert_eq!(c.closest("completely_different"), None);
    }

    #[test]
    fn a_new_row_in_the_doc_is_a_new_name() {
        let doc = "| metric | value |\n|---|---|\n| `zk_new_thing`, `zk_other` (from `mntr`) | x |\n\n| `type` | what |\n|---|---|\n| `zookeeper` | x |\n";
        let c = Catalogue::parse(doc);
        assert_eq!(c.names.iter().map(String::as_str).collect::<Vec<_>>(), ["zk_new_thing", "zk_other"]);
    }

    #[test]
    fn words_are_found_whole() {
        assert_eq!(find_word("zk_ab > 1 && zk_a == 0", "zk_a"), Some((1, 14)));
        assert_eq!(find_word("x &&\n  zk_a", "zk_a"), Some((2, 3)));
        assert_eq!(find_word("zk_ab", "zk_a"), None);
    }
}
