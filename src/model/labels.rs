//! Label sets and their fingerprint: the identity of a series and an alert.

use std::fmt;

pub const ALERTNAME: &str = "alertname";
pub const SEVERITY: &str = "severity";

/// A set of labels, kept sorted by name with unique names, so equality,
/// ordering and hashing never depend on the order labels were given in.
///
/// Names and values live back to back in one string, with where each ends
/// beside it ([`PairText`]): two exactly sized allocations per set, not two
/// per label. An alert's labels are held for as long as it fires, a
/// series' for as long as it is kept, and a hundred thousand of them would
/// otherwise be a million small strings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Labels(PairText);

/// Pairs of strings back to back in one boxed string, with where each
/// name and value ends beside it: the storage of [`Labels`] and
/// [`super::Annotations`]. A set is rebuilt, not edited, on a change:
/// sets are small and read far more often than written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(crate) struct PairText {
    /// `name0 value0 name1 value1 …` without separators.
    text: Box<str>,
    /// Per pair, where its name ends and where its value ends in `text`.
    /// `u32`: every input that makes pairs is bounded far below 4 GiB
    /// (API bodies at 64 MiB, script strings at 64 KiB, scraped lines).
    ends: Box<[(u32, u32)]>,
}

impl PairText {
    pub(crate) fn from_pairs<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)> + Clone) -> Self {
        let len = pairs.clone().map(|(k, v)| k.len() + v.len()).sum();
        let mut text = String::with_capacity(len);
        let mut ends = Vec::with_capacity(pairs.size_hint().0);
        let offset = |text: &String| u32::try_from(text.len()).expect("a set of pairs is far below 4 GiB");
        for (k, v) in pairs {
            text.push_str(k);
            let name_end = offset(&text);
            text.push_str(v);
            ends.push((name_end, offset(&text)));
        }
        Self { text: text.into_boxed_str(), ends: ends.into_boxed_slice() }
    }

    /// The `i`th pair.
    pub(crate) fn pair(&self, i: usize) -> (&str, &str) {
        let start = if i == 0 { 0 } else { self.ends[i - 1].1 as usize };
        let (name_end, value_end) = (self.ends[i].0 as usize, self.ends[i].1 as usize);
        (&self.text[start..name_end], &self.text[name_end..value_end])
    }

    pub(crate) fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + Clone {
        (0..self.ends.len()).map(|i| self.pair(i))
    }

    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }
}

impl Labels {
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds from pairs in any order; a later duplicate name wins.
    pub fn from_pairs<K: AsRef<str>, V: AsRef<str>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        // Sorted once, not inserted one by one: n log n for a large set
        // from a user's file, not n². Nothing is copied but into the set.
        let mut pairs: Vec<(K, V)> = pairs.into_iter().collect();
        pairs.reverse();
        pairs.sort_by(|a, b| a.0.as_ref().cmp(b.0.as_ref())); // stable: of equal names, the last given comes first
        pairs.dedup_by(|later, first| later.0.as_ref() == first.0.as_ref());
        Self::from_sorted(pairs.iter().map(|(k, v)| (k.as_ref(), v.as_ref())))
    }

    /// Builds from pairs sorted by name with unique names.
    fn from_sorted<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)> + Clone) -> Self {
        Self(PairText::from_pairs(pairs))
    }

    /// The `i`th label's name and value.
    fn pair(&self, i: usize) -> (&str, &str) {
        self.0.pair(i)
    }

    fn position(&self, name: &str) -> Result<usize, usize> {
        let (mut low, mut high) = (0, self.len());
        while low < high {
            let mid = (low + high) / 2;
            match self.pair(mid).0.cmp(name) {
                std::cmp::Ordering::Less => low = mid + 1,
                std::cmp::Ordering::Greater => high = mid,
                std::cmp::Ordering::Equal => return Ok(mid),
            }
        }
        Err(low)
    }

    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let (name, value) = (name.into(), value.into());
        let at = self.position(&name);
        let (before, after) = match at {
            Ok(i) => (i, i + 1),
            Err(i) => (i, i),
        };
        let new = std::iter::once((name.as_str(), value.as_str()));
        let kept = |range: std::ops::Range<usize>| range.map(|i| self.pair(i));
        let inserted = Self::from_sorted(kept(0..before).chain(new).chain(kept(after..self.len())));
        *self = inserted;
    }

    /// Kept for callers that hold a label set long: the set never has spare
    /// capacity.
    pub fn shrink_to_fit(&mut self) {}

    pub fn remove(&mut self, name: &str) -> Option<String> {
        let i = self.position(name).ok()?;
        let value = self.pair(i).1.to_string();
        let removed = Self::from_sorted((0..self.len()).filter(|j| *j != i).map(|j| self.pair(j)));
        *self = removed;
        Some(value)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.position(name).ok().map(|i| self.pair(i).1)
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + Clone {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds every label of `other`, overriding same-named ones.
    pub fn merge(&mut self, other: &Labels) {
        if other.is_empty() {
            return;
        }
        let mut merged: Vec<(&str, &str)> = Vec::with_capacity(self.len() + other.len());
        let (mut mine, mut theirs) = (self.iter().peekable(), other.iter().peekable());
        loop {
            let next = match (mine.peek(), theirs.peek()) {
                (Some(a), Some(b)) if a.0 < b.0 => mine.next(),
                (Some(a), Some(b)) if a.0 == b.0 => {
                    mine.next();
                    theirs.next()
                }
                (Some(_), Some(_)) | (None, Some(_)) => theirs.next(),
                (Some(_), None) => mine.next(),
                (None, None) => break,
            };
            merged.extend(next);
        }
        let merged = Self::from_sorted(merged.into_iter());
        drop((mine, theirs));
        *self = merged;
    }

    /// The fingerprint of this set: see [`Fingerprint`].
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint_without(&[])
    }

    /// The fingerprint of this set with some names left out (an alert's
    /// identity leaves out `severity`, so a tier change is the same alert).
    pub fn fingerprint_without(&self, skip: &[&str]) -> Fingerprint {
        let mut hash = FNV_OFFSET;
        for (name, value) in self.iter() {
            if skip.contains(&name) {
                continue;
            }
            hash = fnv1a(hash, name.as_bytes());
            hash = fnv1a(hash, &[SEPARATOR]);
            hash = fnv1a(hash, value.as_bytes());
            hash = fnv1a(hash, &[SEPARATOR]);
        }
        Fingerprint(hash)
    }
}

/// Label sets order as their (name, value) pairs do, one by one.
impl Ord for Labels {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.iter().cmp(other.iter())
    }
}

impl PartialOrd for Labels {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Labels {
    /// Prometheus notation: `{a="1", b="x\"y"}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, (k, v)) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{k}={v:?}")?;
        }
        f.write_str("}")
    }
}

impl<K: AsRef<str>, V: AsRef<str>> FromIterator<(K, V)> for Labels {
    fn from_iter<T: IntoIterator<Item = (K, V)>>(iter: T) -> Self {
        Self::from_pairs(iter)
    }
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
/// Byte that cannot occur in UTF-8 text, so `{a="bc"}` and `{ab="c"}` differ.
const SEPARATOR: u8 = 0xff;

fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash
}

/// Stable identity of a label set: 64-bit FNV-1a over the labels sorted by
/// name, each as `name 0xFF value 0xFF`. This is the algorithm of
/// Alertmanager's `model.LabelSet.Fingerprint`, so the same alert has the same
/// fingerprint in both, across versions, processes and machines (unlike
/// `DefaultHasher`, which is randomly seeded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fingerprint(pub u64);

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fingerprint_matches_alertmanager() {
        // Empty set: FNV-1a offset basis, as in prometheus/common emptyLabelSignature.
        assert_eq!(Labels::new().fingerprint().0, 0xcbf2_9ce4_8422_2325);
        // Value computed from the documented algorithm by hand-checked reference
        // (fnv64a of "alertname\xffHigh\xff").
        let labels = Labels::from_pairs([("alertname", "High")]);
        let mut h = FNV_OFFSET;
        for b in b"alertname\xffHigh\xff" {
            h ^= u64::from(*b);
            h = h.wrapping_mul(FNV_PRIME);
        }
        assert_eq!(labels.fingerprint().0, h);
    }

    #[test]
    fn separator_prevents_collisions() {
        let a = Labels::from_pairs([("a", "bc")]);
        let b = Labels::from_pairs([("ab", "c")]);
        assert_ne!(a.fingerprint(), b.fingerprint());
    }

    #[test]
    fn display_is_prometheus_notation() {
        let l = Labels::from_pairs([("job", "zk"), ("instance", "a:1")]);
        assert_eq!(l.to_string(), r#"{instance="a:1", job="zk"}"#);
    }

    proptest! {
        #[test]
        fn fingerprint_ignores_label_order(pairs in proptest::collection::btree_map("[a-z_]{1,8}", ".{0,8}", 0..8), seed in any::<u64>()) {
            let mut shuffled: Vec<_> = pairs.iter().collect();
            // Deterministic shuffle from the seed.
            let mut s = seed;
            for i in (1..shuffled.len()).rev() {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                shuffled.swap(i, (s >> 33) as usize % (i + 1));
            }
            let a = Labels::from_pairs(pairs.iter().map(|(k, v)| (k.clone(), v.clone())));
            let b = Labels::from_pairs(shuffled.into_iter().map(|(k, v)| (k.clone(), v.clone())));
            prop_assert_eq!(a.fingerprint(), b.fingerprint());
            prop_assert_eq!(a, b);
        }

        /// The set behaves as a map sorted by name: what `get`, `iter`,
        /// `insert`, `remove`, `merge`, equality and ordering say is what a
        /// `BTreeMap` of the same pairs says.
        #[test]
        fn behaves_as_a_sorted_map(
            pairs in proptest::collection::vec(("[a-d]{0,3}", ".{0,4}"), 0..8),
            more in proptest::collection::vec(("[a-d]{0,3}", ".{0,4}"), 0..8),
            removed in "[a-d]{0,3}",
        ) {
            let model = |p: &[(String, String)]| p.iter().cloned().collect::<std::collections::BTreeMap<_, _>>();
            let mut labels = Labels::from_pairs(pairs.clone());
            let mut expected = model(&pairs);
            let listed = |l: &Labels| l.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>();
            prop_assert_eq!(listed(&labels), expected.clone().into_iter().collect::<Vec<_>>());
            for (k, v) in &more {
                labels.insert(k.clone(), v.clone());
                expected.insert(k.clone(), v.clone());
                prop_assert_eq!(labels.get(k), Some(v.as_str()));
            }
            prop_assert_eq!(labels.remove(&removed), expected.remove(&removed));
            prop_assert_eq!(labels.get(&removed), None);
            prop_assert_eq!(listed(&labels), expected.clone().into_iter().collect::<Vec<_>>());
            let mut merged = Labels::from_pairs(pairs.clone());
            merged.merge(&Labels::from_pairs(more.clone()));
            let mut expected_merge = model(&pairs);
            expected_merge.extend(model(&more));
            prop_assert_eq!(listed(&merged), expected_merge.into_iter().collect::<Vec<_>>());
            let (a, b) = (Labels::from_pairs(pairs.clone()), Labels::from_pairs(more.clone()));
            prop_assert_eq!(a.cmp(&b), model(&pairs).into_iter().cmp(model(&more)));
            prop_assert_eq!(a == b, model(&pairs) == model(&more));
        }

        #[test]
        fn fingerprint_distinguishes_values(k in "[a-z]{1,5}", v1 in ".{0,6}", v2 in ".{0,6}") {
            prop_assume!(v1 != v2);
            let a = Labels::from_pairs([(k.clone(), v1)]);
            let b = Labels::from_pairs([(k, v2)]);
            prop_assert_ne!(a.fingerprint(), b.fingerprint());
        }
    }
}
