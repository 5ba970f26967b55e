//! What the MQTT frontend keeps in the node's key-value store (namespace `mqtt`) so that a
//! restart resumes every persistent session and serves every retained message:
//!
//! - `s/<client id>`: a persistent session (session expiry > 0): its expiry interval, when
//!   its connection ended (wall clock) and its subscriptions, as JSON.
//! - `r/<topic>`: the retained message of a topic, replaced in place (so the store keeps
//!   one per topic): when it was stored (wall clock, for its expiry), its publisher and the
//!   message as an MQTT 5 PUBLISH packet, the frontend's own codec.
//!
//! Every write reaches RocksDB's write-ahead log before the call returns (so it survives
//! a process crash); with the journal's `fsync = always` the log is fsynced as well.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use strata_frontend::seams::{StateError, StateOp, StateSpace};

use crate::codec::{ProtocolVersion, SubscriptionOptions};
use crate::message::Message;
use crate::session::{SessionState, Subscription};
use crate::stored::{decode_due, decode_message, encode_message, key, wall_ms};

/// Namespace of the frontend in the key-value store.
pub const SPACE: &str = "mqtt";

const SESSION: &[u8] = b"s/";
const RETAINED: &[u8] = b"r/";

/// A persistent session as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Session expiry interval in seconds (`u32::MAX`: never).
    pub expiry_secs: u32,
    /// Wall-clock milliseconds when its connection ended; `None` while connected.
    pub disconnected_ms: Option<u64>,
    /// Subscriptions: filter (with any `$share/` prefix), options byte (MQTT 5 layout),
    /// subscription identifier.
    pub subscriptions: Vec<(String, u8, Option<u32>)>,
    /// The user the client id belongs to (the one that created the session), when it was
    /// created by an authenticated client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

impl SessionRecord {
    /// The record of `state`; `disconnected_at` is turned into wall-clock time.
    pub fn of(state: &SessionState) -> Self {
        let disconnected_ms = state.disconnected_at.map(|t| {
            let ago = Instant::now().saturating_duration_since(t);
            wall_ms().saturating_sub(ago.as_millis() as u64)
        });
        let mut subscriptions: Vec<_> = state
            .subscriptions
            .iter()
            .map(|(f, s)| (f.clone(), s.options.byte(ProtocolVersion::V5), s.id))
            .collect();
        subscriptions.sort();
        SessionRecord {
            expiry_secs: state.expiry_secs,
            disconnected_ms,
            subscriptions,
            owner: state.owner.as_deref().map(str::to_string),
        }
    }

    /// The subscriptions, decoded; a damaged entry is skipped.
    pub fn subscriptions(&self) -> Vec<(String, Subscription)> {
        self.subscriptions
            .iter()
            .filter_map(|(f, b, id)| {
                let options = SubscriptionOptions::decode(*b, ProtocolVersion::V5).ok()?;
                Some((f.clone(), Subscription { options, id: *id }))
            })
            .collect()
    }

    /// How long ago its connection ended, as of now; a session that was connected when the
    /// node stopped counts as disconnected from now.
    pub fn disconnected_for(&self) -> Duration {
        self.disconnected_ms
            .map(|ms| Duration::from_millis(wall_ms().saturating_sub(ms)))
            .unwrap_or_default()
    }

    /// True when the session's expiry interval has passed.
    pub fn expired(&self) -> bool {
        self.expiry_secs != u32::MAX
            && self.disconnected_for() >= Duration::from_secs(u64::from(self.expiry_secs))
    }
}

/// The frontend's view of the key-value store.
#[derive(Debug, Clone)]
pub struct Persist {
    space: StateSpace,
}

impl Persist {
    /// Uses `space` (the frontend's namespace).
    pub fn new(space: StateSpace) -> Self {
        Persist { space }
    }

    /// The write that stores the session of `client_id`.
    pub fn save_session(client_id: &str, record: &SessionRecord) -> StateOp {
        StateOp::Put(
            key(SESSION, client_id),
            serde_json::to_vec(record).unwrap_or_default(),
        )
    }

    /// Applies `ops` atomically.
    pub fn write(&self, ops: &[StateOp]) -> Result<(), StateError> {
        self.space.write(ops)
    }

    /// Every key under `prefix` with its value.
    pub fn scan(
        &self,
        prefix: &[u8],
    ) -> Result<Vec<strata_frontend::seams::StatePair>, StateError> {
        self.space.scan_prefix(prefix)
    }

    /// The write that forgets the session of `client_id`.
    pub fn delete_session(client_id: &str) -> StateOp {
        StateOp::Delete(key(SESSION, client_id))
    }

    /// Every stored session; records that cannot be read are reported and skipped.
    pub fn sessions(&self) -> Result<Vec<(String, SessionRecord)>, StateError> {
        let mut out = Vec::new();
        for (k, v) in self.space.scan_prefix(SESSION)? {
            let id = String::from_utf8_lossy(&k[SESSION.len()..]).into_owned();
            match serde_json::from_slice(&v) {
                Ok(r) => out.push((id, r)),
                Err(e) => {
                    tracing::warn!(client_id = %id, error = %e, "unreadable session record skipped")
                }
            }
        }
        Ok(out)
    }

    /// Stores `m` as the retained message of its topic, or clears the topic's when its
    /// payload is empty.
    pub fn save_retained(&self, m: &Message) -> Result<(), StateError> {
        if m.payload.is_empty() {
            return self.delete_retained(&m.topic);
        }
        self.space
            .put(&key(RETAINED, &m.topic), &encode_message(m, Instant::now()))
    }

    /// Deletes the stored retained message of `topic`, if any.
    pub fn delete_retained(&self, topic: &str) -> Result<(), StateError> {
        self.space.delete(&key(RETAINED, topic))
    }

    /// Every stored retained message that has not expired.
    pub fn retained(&self) -> Result<Vec<Message>, StateError> {
        let now = Instant::now();
        let mut out = Vec::new();
        for (k, v) in self.space.scan_prefix(RETAINED)? {
            match decode_message(&v, now) {
                Some(m) => out.push(m),
                None => {
                    let topic = String::from_utf8_lossy(&k[RETAINED.len()..]).into_owned();
                    tracing::debug!(topic = %topic, "stored retained message expired or unreadable");
                }
            }
        }
        Ok(out)
    }
}

impl Persist {
    /// Pending wills: client id, due time (wall-clock ms) and message. Unreadable or
    /// expired ones are skipped.
    pub fn wills(&self) -> Result<Vec<(String, u64, Message)>, StateError> {
        Ok(self
            .due(b"w/")?
            .into_iter()
            .map(|(k, due, m)| (String::from_utf8_lossy(&k[2..]).into_owned(), due, m))
            .collect())
    }

    /// Delayed publishes: key, due time (wall-clock ms) and message.
    pub fn delayed(&self) -> Result<Vec<(Vec<u8>, u64, Message)>, StateError> {
        self.due(b"d/")
    }

    /// Every readable, unexpired [`encode_due`] record under `prefix`, with its key.
    fn due(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, u64, Message)>, StateError> {
        let now = Instant::now();
        Ok(self
            .space
            .scan_prefix(prefix)?
            .into_iter()
            .filter_map(|(k, v)| {
                let (due, m) = decode_due(&v, now)?;
                Some((k, due, m))
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Properties, QoS, RetainHandling};
    use bytes::Bytes;
    use std::sync::Arc;

    #[test]
    fn messages_round_trip_with_their_properties() {
        let now = Instant::now();
        let m = Message {
            topic: "a/b".into(),
            payload: Bytes::from_static(b"hello"),
            qos: QoS::ExactlyOnce,
            retain: true,
            properties: Arc::new(Properties {
                content_type: Some("text/plain".into()),
                user_properties: vec![("k".into(), "v".into())],
                ..Properties::default()
            }),
            expires_at: Some(now + Duration::from_secs(100)),
            publisher: Some(Arc::from("pub-1")),
            stored: None,
            received: Instant::now(),
        };
        let back = decode_message(&encode_message(&m, now), now).expect("decodes");
        assert_eq!(back.topic, m.topic);
        assert_eq!(back.payload, m.payload);
        assert_eq!((back.qos, back.retain), (m.qos, m.retain));
        assert_eq!(back.properties.content_type, m.properties.content_type);
        assert_eq!(
            back.properties.user_properties,
            m.properties.user_properties
        );
        assert_eq!(back.publisher.as_deref(), Some("pub-1"));
        let left = back.remaining_expiry(now).expect("keeps its expiry");
        assert!((99..=100).contains(&left), "{left}");
        assert!(decode_message(b"\x00\x01", now).is_none());
    }

    #[test]
    fn session_records_keep_subscriptions_and_expiry() {
        let mut st = SessionState::default();
        st.expiry_secs = 60;
        let options = SubscriptionOptions {
            qos: QoS::AtLeastOnce,
            no_local: true,
            retain_as_published: false,
            retain_handling: RetainHandling::SendIfNew,
        };
        st.subscriptions.insert(
            "x/#".into(),
            Subscription {
                options,
                id: Some(7),
            },
        );
        let r = SessionRecord::of(&st);
        assert_eq!(r.disconnected_ms, None);
        let subs = r.subscriptions();
        assert_eq!(subs.len(), 1);
        assert_eq!(subs[0].0, "x/#");
        assert_eq!(subs[0].1.options, options);
        assert_eq!(subs[0].1.id, Some(7));
        assert!(!r.expired());
        let gone = SessionRecord {
            expiry_secs: 1,
            disconnected_ms: Some(wall_ms() - 5_000),
            subscriptions: Vec::new(),
            owner: None,
        };
        assert!(gone.expired());
    }
}
