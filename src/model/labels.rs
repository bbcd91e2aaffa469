//! Label sets and their fingerprint: the identity of a series and an alert.

use std::fmt;

pub const ALERTNAME: &str = "alertname";
pub const SEVERITY: &str = "severity";

/// A set of labels, kept sorted by name with unique names, so equality,
/// ordering and hashing never depend on the order labels were given in.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Labels {
    pairs: Vec<(String, String)>,
}

impl Labels {
    pub const fn new() -> Self {
        Self { pairs: Vec::new() }
    }

    /// Builds from pairs in any order; a later duplicate name wins.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        // Sorted once, not inserted one by one: n log n for a large set
        // from a user's file, not n².
        let mut pairs: Vec<(String, String)> = pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
        pairs.reverse();
        pairs.sort_by(|a, b| a.0.cmp(&b.0)); // stable: of equal names, the last given comes first
        pairs.dedup_by(|later, first| later.0 == first.0);
        Self { pairs }
    }

    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into();
        let value = value.into();
        match self.pairs.binary_search_by(|(n, _)| n.as_str().cmp(&name)) {
            Ok(i) => self.pairs[i].1 = value,
            Err(i) => self.pairs.insert(i, (name, value)),
        }
    }

    /// Frees spare capacity (a long-lived label set, such as an alert's).
    pub fn shrink_to_fit(&mut self) {
        self.pairs.shrink_to_fit();
    }

    pub fn remove(&mut self, name: &str) -> Option<String> {
        let i = self.pairs.binary_search_by(|(n, _)| n.as_str().cmp(name)).ok()?;
        Some(self.pairs.remove(i).1)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        let i = self.pairs.binary_search_by(|(n, _)| n.as_str().cmp(name)).ok()?;
        Some(&self.pairs[i].1)
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// Adds every label of `other`, overriding same-named ones.
    pub fn merge(&mut self, other: &Labels) {
        for (k, v) in other.iter() {
            self.insert(k, v);
        }
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

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Labels {
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

        #[test]
        fn fingerprint_distinguishes_values(k in "[a-z]{1,5}", v1 in ".{0,6}", v2 in ".{0,6}") {
            prop_assume!(v1 != v2);
            let a = Labels::from_pairs([(k.clone(), v1)]);
            let b = Labels::from_pairs([(k, v2)]);
            prop_assert_ne!(a.fingerprint(), b.fingerprint());
        }
    }
}
