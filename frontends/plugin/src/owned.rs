//! Streams a frontend owns: its own state (`mqtt.messages`) or the streams it bridges to
//! and from. Other frontends must not delete or reshape them, and may read or write only
//! what the owner shares. Claims are made before any frontend serves, so no request can
//! come between a frontend's start and its claim.
//!
//! In a cluster an owned stream is the cluster's, like any other (the MQTT message store
//! is replicated, so a node's death loses none of what MQTT acknowledged), unless it is
//! also kept per node ([`OwnedStreams::keep_per_node`]: the audit log of what this node
//! was asked to do).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use parking_lot::RwLock;

/// What other frontends may do with an owned stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership {
    /// The owner's private state: others may not write it, and read it only when their
    /// configuration allows it explicitly.
    Internal,
    /// Meant to be read and written by other protocols (a bridge): others may not delete
    /// it or change its partitions.
    Shared,
}

/// Owned streams by name, with their owner. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct OwnedStreams {
    claims: Arc<RwLock<BTreeMap<String, (&'static str, Ownership)>>>,
    per_node: Arc<RwLock<BTreeSet<String>>>,
}

impl OwnedStreams {
    /// Records that frontend `owner` owns `stream`. An internal claim is never weakened
    /// by a shared one.
    pub fn claim(&self, stream: &str, owner: &'static str, ownership: Ownership) {
        let mut map = self.claims.write();
        let entry = map.entry(stream.to_string()).or_insert((owner, ownership));
        if ownership == Ownership::Internal {
            *entry = (owner, ownership);
        }
    }

    /// The owner of `stream` and what it shares, if a frontend owns it.
    pub fn get(&self, stream: &str) -> Option<(&'static str, Ownership)> {
        self.claims.read().get(stream).copied()
    }

    /// Records that `stream` is each node's own: in a cluster it stays in the node's
    /// journal, out of the meta service, and is never served to other nodes.
    pub fn keep_per_node(&self, stream: &str) {
        self.per_node.write().insert(stream.to_string());
    }

    /// Whether `stream` is each node's own.
    pub fn is_per_node(&self, stream: &str) -> bool {
        self.per_node.read().contains(stream)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn internal_claims_win() {
        let owned = OwnedStreams::default();
        owned.claim("s", "mqtt", Ownership::Shared);
        owned.claim("s", "mqtt", Ownership::Internal);
        owned.claim("s", "mqtt", Ownership::Shared);
        assert_eq!(owned.get("s"), Some(("mqtt", Ownership::Internal)));
        assert_eq!(owned.get("t"), None);
    }
}
