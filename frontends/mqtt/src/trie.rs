//! The subscription tree: topic filters indexed level by level, so that finding the
//! subscribers of a topic costs time in the topic's depth, not in the number of filters.

use std::collections::HashMap;
use std::hash::Hash;

#[derive(Debug)]
struct Node<K, V> {
    children: HashMap<Box<str>, Node<K, V>>,
    plus: Option<Box<Node<K, V>>>,
    /// Subscribers of `<path>/#`.
    hash: HashMap<K, V>,
    /// Subscribers of exactly `<path>`.
    here: HashMap<K, V>,
}

impl<K, V> Default for Node<K, V> {
    fn default() -> Self {
        Node {
            children: HashMap::new(),
            plus: None,
            hash: HashMap::new(),
            here: HashMap::new(),
        }
    }
}

impl<K, V> Node<K, V> {
    fn is_empty(&self) -> bool {
        self.children.is_empty()
            && self.plus.is_none()
            && self.hash.is_empty()
            && self.here.is_empty()
    }
}

/// Maps topic filters to subscribers (`K`, one value `V` per subscriber and filter).
#[derive(Debug)]
pub struct SubscriptionTree<K, V> {
    root: Node<K, V>,
    len: usize,
}

impl<K, V> Default for SubscriptionTree<K, V> {
    fn default() -> Self {
        SubscriptionTree {
            root: Node::default(),
            len: 0,
        }
    }
}

impl<K: Hash + Eq + Clone, V> SubscriptionTree<K, V> {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of (filter, subscriber) entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds or replaces `key`'s subscription to the (valid) `filter`; returns the old value.
    pub fn insert(&mut self, filter: &str, key: K, value: V) -> Option<V> {
        let mut node = &mut self.root;
        let mut levels = filter.split('/').peekable();
        while let Some(level) = levels.next() {
            if level == "#" && levels.peek().is_none() {
                let old = node.hash.insert(key, value);
                self.len += usize::from(old.is_none());
                return old;
            }
            node = if level == "+" {
                node.plus.get_or_insert_with(Box::default)
            } else {
                node.children.entry(level.into()).or_default()
            };
        }
        let old = node.here.insert(key, value);
        self.len += usize::from(old.is_none());
        old
    }

    /// The value of `key`'s subscription to `filter`, inserted with `make` when absent.
    pub fn get_or_insert_with(&mut self, filter: &str, key: K, make: impl FnOnce() -> V) -> &mut V {
        let mut node = &mut self.root;
        let mut levels = filter.split('/').peekable();
        let map = loop {
            match levels.next() {
                Some("#") if levels.peek().is_none() => break &mut node.hash,
                Some("+") => node = node.plus.get_or_insert_with(Box::default),
                Some(level) => node = node.children.entry(level.into()).or_default(),
                None => break &mut node.here,
            }
        };
        let len = &mut self.len;
        map.entry(key).or_insert_with(|| {
            *len += 1;
            make()
        })
    }

    /// The value of `key`'s subscription to `filter`, if there is one.
    pub fn get_mut(&mut self, filter: &str, key: &K) -> Option<&mut V> {
        let mut node = &mut self.root;
        let mut levels = filter.split('/').peekable();
        while let Some(level) = levels.next() {
            if level == "#" && levels.peek().is_none() {
                return node.hash.get_mut(key);
            }
            node = if level == "+" {
                node.plus.as_deref_mut()?
            } else {
                node.children.get_mut(level)?
            };
        }
        node.here.get_mut(key)
    }

    /// Removes `key`'s subscription to `filter`, pruning empty branches.
    pub fn remove(&mut self, filter: &str, key: &K) -> Option<V> {
        let levels: Vec<&str> = filter.split('/').collect();
        let removed = remove_at(&mut self.root, &levels, key);
        self.len -= usize::from(removed.is_some());
        removed
    }

    /// Calls `f` for every subscriber whose filter matches the topic `name`. A subscriber
    /// with several matching filters is reported once per filter.
    pub fn for_each_match(&self, name: &str, mut f: impl FnMut(&K, &V)) {
        let levels: Vec<&str> = name.split('/').collect();
        let system = name.starts_with('$');
        visit(&self.root, &levels, 0, system, &mut f);
    }
}

fn remove_at<K: Hash + Eq, V>(node: &mut Node<K, V>, levels: &[&str], key: &K) -> Option<V> {
    let Some((&level, rest)) = levels.split_first() else {
        return node.here.remove(key);
    };
    if level == "#" && rest.is_empty() {
        return node.hash.remove(key);
    }
    if level == "+" {
        let child = node.plus.as_deref_mut()?;
        let removed = remove_at(child, rest, key);
        if child.is_empty() {
            node.plus = None;
        }
        return removed;
    }
    let child = node.children.get_mut(level)?;
    let removed = remove_at(child, rest, key);
    if child.is_empty() {
        node.children.remove(level);
    }
    removed
}

fn visit<K, V>(
    node: &Node<K, V>,
    levels: &[&str],
    depth: usize,
    system: bool,
    f: &mut impl FnMut(&K, &V),
) {
    // Wildcards at the first level never match topics starting with '$' [MQTT-4.7.2-1].
    let wildcards = !(depth == 0 && system);
    if wildcards {
        node.hash.iter().for_each(|(k, v)| f(k, v));
    }
    let Some(level) = levels.get(depth) else {
        node.here.iter().for_each(|(k, v)| f(k, v));
        return;
    };
    if let Some(child) = node.children.get(*level) {
        visit(child, levels, depth + 1, system, f);
    }
    if wildcards && let Some(plus) = &node.plus {
        visit(plus, levels, depth + 1, system, f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topic::matches;
    use proptest::prelude::*;

    fn found(t: &SubscriptionTree<String, u8>, name: &str) -> Vec<String> {
        let mut v = Vec::new();
        t.for_each_match(name, |k, _| v.push(k.clone()));
        v.sort();
        v
    }

    #[test]
    fn insert_match_remove() {
        let mut t = SubscriptionTree::new();
        for (i, f) in ["a/b", "a/+", "a/#", "#", "+/b", "$SYS/#", "a/b/c"]
            .iter()
            .enumerate()
        {
            t.insert(f, f.to_string(), i as u8);
        }
        assert_eq!(t.len(), 7);
        assert_eq!(found(&t, "a/b"), ["#", "+/b", "a/#", "a/+", "a/b"]);
        assert_eq!(found(&t, "a"), ["#", "a/#"]);
        assert_eq!(found(&t, "$SYS/x"), ["$SYS/#"]);
        assert_eq!(
            t.insert("a/b", "a/b".into(), 9),
            Some(0),
            "replace keeps one entry"
        );
        assert_eq!(t.get_mut("a/b", &"a/b".to_string()).copied(), Some(9));
        assert_eq!(t.get_mut("a/#", &"a/#".to_string()).copied(), Some(2));
        assert_eq!(t.get_mut("a/+/x", &"a/b".to_string()), None);
        assert_eq!(t.remove("a/#", &"a/#".to_string()), Some(2));
        assert_eq!(t.remove("a/#", &"a/#".to_string()), None);
        assert_eq!(found(&t, "a"), ["#"]);
        for f in ["a/b", "a/+", "#", "+/b", "$SYS/#", "a/b/c"] {
            t.remove(f, &f.to_string());
        }
        assert!(t.is_empty());
        assert!(t.root.is_empty(), "empty branches are pruned");
    }

    fn level() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("a".to_string()),
            Just("b".to_string()),
            Just("$x".to_string()),
            Just(String::new())
        ]
    }

    fn filter() -> impl Strategy<Value = String> {
        (
            proptest::collection::vec(prop_oneof![level(), Just("+".to_string())], 1..4),
            any::<bool>(),
        )
            .prop_map(|(mut levels, hash)| {
                if hash {
                    levels.push("#".into());
                }
                levels.join("/")
            })
    }

    proptest! {
        #[test]
        fn the_tree_agrees_with_plain_matching(filters in proptest::collection::vec(filter(), 1..12),
                                               names in proptest::collection::vec(proptest::collection::vec(level(), 1..5), 1..8)) {
            let mut t = SubscriptionTree::new();
            for f in &filters {
                t.insert(f, f.clone(), 0u8);
            }
            for n in names {
                let name = n.join("/");
                let mut want: Vec<String> = filters.iter().filter(|f| matches(f, &name)).cloned().collect();
                want.sort();
                want.dedup();
                prop_assert_eq!(found(&t, &name), want, "topic {}", name);
            }
        }
    }
}
