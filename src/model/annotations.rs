//! An alert's annotations (summary, description, links): what the tracker
//! and the intake attach to an alert and the notifiers render.

use super::labels::PairText;
use std::fmt;

/// Names and texts in the order they were given, names unique, held as
/// [`Labels`](super::Labels) are: back to back in one string, two exactly
/// sized allocations per alert however many there are. A hundred thousand
/// posted alerts otherwise hold a vector and four strings each.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Annotations(PairText);

impl Annotations {
    pub fn new() -> Self {
        Self::default()
    }

    /// From pairs in order; of a repeated name the last text is kept, at
    /// the first one's place.
    pub fn from_pairs<K: AsRef<str>, V: AsRef<str>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        let pairs: Vec<(K, V)> = pairs.into_iter().collect();
        let name = |i: usize| pairs[i].0.as_ref();
        // Names sorted with their places: repeats are neighbours, so a
        // hostile list of thousands costs n log n, not n².
        let mut order: Vec<usize> = (0..pairs.len()).collect();
        order.sort_by(|&a, &b| name(a).cmp(name(b)).then(a.cmp(&b)));
        let mut text_of: Vec<Option<usize>> = (0..pairs.len()).map(Some).collect();
        for run in order.chunk_by(|&a, &b| name(a) == name(b)) {
            text_of[run[0]] = run.last().copied();
            for &repeat in &run[1..] {
                text_of[repeat] = None;
            }
        }
        let kept = text_of.iter().enumerate().filter_map(|(i, t)| t.map(|t| (name(i), pairs[t].1.as_ref())));
        Self(PairText::from_pairs(kept))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == name).map(|(_, v)| v)
    }

    /// Sets `name` to `text`: in its place if it is there, else last.
    pub fn set(&mut self, name: &str, text: &str) {
        let replaced = self.iter().map(|(k, v)| if k == name { (k, text) } else { (k, v) });
        let added = self.get(name).is_none().then_some((name, text));
        *self = Self(PairText::from_pairs(replaced.chain(added)));
    }

    /// Removes `name`; its text, if it was there.
    pub fn remove(&mut self, name: &str) -> Option<String> {
        let text = self.get(name)?.to_string();
        *self = Self(PairText::from_pairs(self.iter().filter(|(k, _)| *k != name)));
        Some(text)
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
}

impl fmt::Debug for Annotations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K: AsRef<str>, V: AsRef<str>> FromIterator<(K, V)> for Annotations {
    fn from_iter<T: IntoIterator<Item = (K, V)>>(iter: T) -> Self {
        Self::from_pairs(iter)
    }
}

/// Stored (state file, replica messages) as a list of `[name, text]`
/// pairs, as the `Vec<(String, String)>` it once was: files written
/// before read the same.
impl serde::Serialize for Annotations {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'de> serde::Deserialize<'de> for Annotations {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let pairs: Vec<(std::borrow::Cow<'de, str>, std::borrow::Cow<'de, str>)> = serde::Deserialize::deserialize(d)?;
        Ok(Self::from_pairs(pairs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn stored_as_the_list_of_pairs_it_was() {
        let a = Annotations::from_pairs([("summary", "down"), ("runbook", "r/x.md")]);
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(json, r#"[["summary","down"],["runbook","r/x.md"]]"#);
        let old: Vec<(String, String)> = vec![("summary".into(), "down".into()), ("runbook".into(), "r/x.md".into())];
        assert_eq!(serde_json::from_str::<Annotations>(&serde_json::to_string(&old).unwrap()).unwrap(), a);
        assert_eq!(serde_json::from_str::<Annotations>(r#"[["a","x\"y"]]"#).unwrap().get("a"), Some("x\"y"));
    }

    proptest! {
        /// They behave as a list of unique names in first-given order,
        /// each with its last text: what `get`, `iter`, `set` and `remove`
        /// say is what such a list says.
        #[test]
        fn behave_as_an_ordered_list_of_unique_names(
            pairs in proptest::collection::vec(("[a-d]{0,3}", ".{0,4}"), 0..8),
            more in proptest::collection::vec(("[a-d]{0,3}", ".{0,4}"), 0..8),
            removed in "[a-d]{0,3}",
        ) {
            let mut model: Vec<(String, String)> = Vec::new();
            let set = |model: &mut Vec<(String, String)>, k: &str, v: &str| match model.iter_mut().find(|(n, _)| n == k) {
                Some(slot) => slot.1 = v.to_string(),
                None => model.push((k.to_string(), v.to_string())),
            };
            for (k, v) in &pairs {
                set(&mut model, k, v);
            }
            let listed = |a: &Annotations| a.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>();
            let mut annotations = Annotations::from_pairs(pairs.clone());
            prop_assert_eq!(listed(&annotations), model.clone());
            for (k, v) in &more {
                annotations.set(k, v);
                set(&mut model, k, v);
                prop_assert_eq!(annotations.get(k), Some(v.as_str()));
            }
            prop_assert_eq!(listed(&annotations), model.clone());
            let expected = model.iter().position(|(k, _)| *k == removed).map(|i| model.remove(i).1);
            prop_assert_eq!(annotations.remove(&removed), expected);
            prop_assert_eq!(listed(&annotations), model);
            prop_assert_eq!(annotations.len(), annotations.iter().count());
        }
    }
}
