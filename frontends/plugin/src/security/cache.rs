//! A connection's memory of ACL decisions, so that a client publishing to the same topics
//! pays the rule list once per topic, not once per message, however many rules there are.
//! Forgotten whenever the ACL changes (its generation moves) and when it fills.

use std::collections::HashMap;
use std::sync::Arc;

use super::Security;
use super::acl::{Access, AclRule, Who};

/// Decisions remembered per connection before the memory starts over, and the longest
/// topic remembered: at most 16 KiB of keys per connection.
const REMEMBERED: usize = 64;
const LONGEST: usize = 256;

/// Remembered decisions of one connection, by topic or filter.
#[derive(Debug, Default)]
pub struct DecisionCache {
    /// The client's own rules (a token's), checked before the node's.
    own: Option<Arc<[AclRule]>>,
    generation: u64,
    /// Per topic: publish, publish with retain, subscribe (None: not asked yet).
    decisions: HashMap<String, [Option<bool>; 3]>,
}

impl DecisionCache {
    /// A memory for a client with rules of its own (a token's), checked before the node's.
    pub fn with_rules(own: Arc<[AclRule]>) -> Self {
        DecisionCache {
            own: (!own.is_empty()).then_some(own),
            ..Self::default()
        }
    }

    /// Whether the client has rules of its own (then even an open ACL is consulted).
    pub fn has_own_rules(&self) -> bool {
        self.own.is_some()
    }

    /// Whether `who` may do `access`, from memory when the ACL has not changed since.
    pub fn allows(&mut self, security: &Security, who: &Who, access: Access) -> bool {
        let own = self.own.as_deref().unwrap_or_default();
        if own.is_empty() && security.acl_is_open() {
            return true;
        }
        let generation = security.acl_generation();
        if generation != self.generation {
            self.decisions.clear();
            self.generation = generation;
        }
        let (key, slot) = match access {
            Access::Publish { topic, retain } => (topic, usize::from(retain)),
            Access::Subscribe(filter) => (filter, 2),
        };
        if let Some(known) = self.decisions.get(key).and_then(|d| d[slot]) {
            if !known {
                security.count_denied(access);
            }
            return known;
        }
        let allowed = security.allows_with(own, who, access);
        if key.len() > LONGEST {
            return allowed;
        }
        if self.decisions.len() >= REMEMBERED && !self.decisions.contains_key(key) {
            self.decisions.clear();
        }
        self.decisions.entry(key.to_string()).or_default()[slot] = Some(allowed);
        allowed
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::security::acl::{AclAction, AclRule, Permission};

    #[test]
    fn decisions_follow_acl_changes() {
        let s = Security::open_everything();
        let who = Who {
            username: None,
            client_id: "c",
            ip: None,
        };
        let mut cache = DecisionCache::default();
        let publish = Access::Publish {
            topic: "a",
            retain: false,
        };
        assert!(cache.allows(&s, &who, publish));
        s.set_acl_rules(vec![AclRule {
            permission: Permission::Deny,
            action: AclAction::Publish,
            topic: "a".into(),
            username: None,
            client_id: None,
            ip: None,
        }])
        .unwrap();
        assert!(!cache.allows(&s, &who, publish));
        assert!(!cache.allows(&s, &who, publish), "remembered");
        assert!(cache.allows(&s, &who, Access::Subscribe("a")));
        s.set_acl_rules(Vec::new()).unwrap();
        assert!(cache.allows(&s, &who, publish));
    }
}
