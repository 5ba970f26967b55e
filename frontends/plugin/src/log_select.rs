//! Which clients and topics an operator asked to see per-message log events for: a cheap
//! check for the hot paths, so that an override for one client does not cost every other
//! message a pass through the log filter.
//!
//! The node's log filter decides what is logged; this registry is its summary for the
//! frontends (the client ids and topics of the overrides at `debug` or finer, and whether
//! the base level lets `debug` through at all). A frontend asks [`MessageLogGuard::wanted`]
//! before building a per-message `debug` event: false means the filter would drop it.
//! The registry is process-wide, as the tracing subscriber it summarises is.

use std::collections::BTreeSet;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The registry of the running process.
pub static LOG_SELECTORS: LogSelectors = LogSelectors::new();

/// Client ids and topics selected for per-message events.
#[derive(Debug)]
pub struct LogSelectors {
    /// Bumped on every change, so per-connection caches know to look again.
    generation: AtomicU64,
    /// The base level lets `debug` through: every per-message event is wanted.
    base_debug: AtomicBool,
    /// Some topic is selected (saves the lock on every message when none is).
    any_topic: AtomicBool,
    clients: RwLock<BTreeSet<String>>,
    topics: RwLock<BTreeSet<String>>,
}

impl LogSelectors {
    /// An empty registry.
    pub const fn new() -> Self {
        LogSelectors {
            generation: AtomicU64::new(0),
            base_debug: AtomicBool::new(false),
            any_topic: AtomicBool::new(false),
            clients: RwLock::new(BTreeSet::new()),
            topics: RwLock::new(BTreeSet::new()),
        }
    }

    /// Replaces the selection: the client ids and topics with an override at `debug` or
    /// finer, and whether the base level itself lets `debug` through.
    pub fn set(&self, clients: BTreeSet<String>, topics: BTreeSet<String>, base_debug: bool) {
        self.any_topic.store(!topics.is_empty(), Ordering::Release);
        *self.clients.write().unwrap_or_else(|e| e.into_inner()) = clients;
        *self.topics.write().unwrap_or_else(|e| e.into_inner()) = topics;
        self.base_debug.store(base_debug, Ordering::Release);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    fn client_selected(&self, client_id: &str) -> bool {
        let clients = self.clients.read().unwrap_or_else(|e| e.into_inner());
        clients.contains(client_id)
    }

    fn topic_selected(&self, topic: &str) -> bool {
        if !self.any_topic.load(Ordering::Acquire) {
            return false;
        }
        let topics = self.topics.read().unwrap_or_else(|e| e.into_inner());
        topics.contains(topic)
    }
}

impl Default for LogSelectors {
    fn default() -> Self {
        Self::new()
    }
}

/// One connection's cached answer for its own client id.
#[derive(Debug, Default, Clone, Copy)]
pub struct MessageLogGuard {
    generation: u64,
    client_selected: bool,
}

impl MessageLogGuard {
    /// Whether a per-message `debug` event of `client_id` about `topic` may be logged.
    /// Costs two atomic loads when nothing is selected.
    pub fn wanted(&mut self, selectors: &LogSelectors, client_id: &str, topic: &str) -> bool {
        if selectors.base_debug.load(Ordering::Acquire) {
            return true;
        }
        let generation = selectors.generation.load(Ordering::Acquire);
        if generation == 0 {
            return false;
        }
        if generation != self.generation {
            self.generation = generation;
            self.client_selected = selectors.client_selected(client_id);
        }
        self.client_selected || selectors.topic_selected(topic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set_of(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn guard_follows_every_change() {
        let s = LogSelectors::new();
        let mut g = MessageLogGuard::default();
        assert!(!g.wanted(&s, "a", "t"));
        s.set(set_of(&["a"]), BTreeSet::new(), false);
        assert!(g.wanted(&s, "a", "t"));
        assert!(!MessageLogGuard::default().wanted(&s, "b", "t"));
        s.set(BTreeSet::new(), set_of(&["t"]), false);
        assert!(g.wanted(&s, "a", "t") && !g.wanted(&s, "a", "u"));
        s.set(BTreeSet::new(), BTreeSet::new(), true);
        assert!(g.wanted(&s, "z", "z"));
        s.set(BTreeSet::new(), BTreeSet::new(), false);
        assert!(!g.wanted(&s, "a", "t"));
    }
}
