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

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use serde::{Deserialize, Serialize};
use strata_batch::now_ms;
use strata_frontend::seams::{StateError, StateOp, StateSpace};

use crate::codec::{self, Packet, ProtocolVersion, PublishRef, SubscriptionOptions};
use crate::message::Message;
use crate::session::{SessionState, Subscription};

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

/// Wall-clock milliseconds since the Unix epoch.
fn wall_ms() -> u64 {
    u64::try_from(now_ms()).unwrap_or(0)
}

fn key(prefix: &[u8], name: &str) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(name.as_bytes());
    k
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

/// `m` as stored: 8 bytes of wall-clock milliseconds, the publisher (2-byte length, then
/// UTF-8; length 0xFFFF for none) and the message as an MQTT 5 PUBLISH packet whose
/// message expiry interval is what remained at `now`.
pub fn encode_message(m: &Message, now: Instant) -> Vec<u8> {
    let mut out = BytesMut::new();
    out.extend_from_slice(&wall_ms().to_be_bytes());
    match &m.publisher {
        Some(p) if p.len() < 0xFFFF => {
            out.extend_from_slice(&(p.len() as u16).to_be_bytes());
            out.extend_from_slice(p.as_bytes());
        }
        _ => out.extend_from_slice(&0xFFFFu16.to_be_bytes()),
    }
    let mut properties = (*m.properties).clone();
    properties.message_expiry_interval = m.remaining_expiry(now);
    let p = PublishRef {
        dup: false,
        qos: m.qos,
        retain: m.retain,
        topic: &m.topic,
        packet_id: (m.qos != codec::QoS::AtMostOnce).then_some(1),
        properties: &properties,
        payload: &m.payload,
    };
    // Only a message too large for any MQTT packet fails, and such a message was never
    // accepted.
    let _ = codec::encode_publish(&p, ProtocolVersion::V5, usize::MAX, &mut out);
    out.to_vec()
}

/// A message stored by [`encode_message`]; `None` when it is damaged or has expired.
pub fn decode_message(bytes: &[u8], now: Instant) -> Option<Message> {
    let stored_ms = u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?);
    let len = u16::from_be_bytes(bytes.get(8..10)?.try_into().ok()?);
    let (publisher, rest) = if len == 0xFFFF {
        (None, bytes.get(10..)?)
    } else {
        let end = 10 + usize::from(len);
        let p = std::str::from_utf8(bytes.get(10..end)?).ok()?;
        (Some(Arc::from(p)), bytes.get(end..)?)
    };
    let mut buf = BytesMut::from(rest);
    let Ok(Some(Packet::Publish(p))) =
        codec::decode(&mut buf, Some(ProtocolVersion::V5), usize::MAX)
    else {
        return None;
    };
    let elapsed = wall_ms().saturating_sub(stored_ms) / 1000;
    let mut p = p;
    if let Some(e) = p.properties.message_expiry_interval {
        let left = u64::from(e).checked_sub(elapsed).filter(|l| *l > 0)?;
        p.properties.message_expiry_interval = Some(left as u32);
    }
    let topic = p.topic.clone();
    Some(Message::from_publish(p, topic, publisher, now))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Properties, QoS, RetainHandling};
    use bytes::Bytes;

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

/// Where a stored delivery stands (the `phase` byte of a [`QueueEntry`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryPhase {
    /// Queued, not sent yet.
    Queued = 0,
    /// QoS 1 PUBLISH sent with the entry's packet id, PUBACK awaited.
    AwaitAck = 1,
    /// QoS 2 PUBLISH sent, PUBREC awaited.
    AwaitRec = 2,
    /// PUBREL sent, PUBCOMP awaited.
    AwaitComp = 3,
}

/// A delivery kept for a durable session: a reference to the message in the journal and
/// what the subscription decided, never a copy of the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueEntry {
    /// Where it stands.
    pub phase: EntryPhase,
    /// Packet id it was sent with (0 while queued).
    pub packet_id: u16,
    /// QoS of the delivery.
    pub qos: codec::QoS,
    /// Retain flag of the delivery.
    pub retain: bool,
    /// Came through a shared subscription.
    pub shared: bool,
    /// Journal partition of the message.
    pub partition: u32,
    /// Journal offset of the message.
    pub offset: u64,
    /// Subscription identifiers.
    pub subscription_ids: Vec<u32>,
}

/// Key of a durable session's delivery number `seq`: client ids cannot contain U+0000
/// [MQTT-1.5.4-2], so `\0` ends the id and one client's keys never share a prefix with
/// another's.
pub fn queue_key(client_id: &str, seq: u64) -> Vec<u8> {
    let mut k = queue_prefix(client_id);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// Prefix of every delivery key of `client_id`.
pub fn queue_prefix(client_id: &str) -> Vec<u8> {
    client_prefix(b"q/", client_id)
}

fn client_prefix(tag: &[u8], client_id: &str) -> Vec<u8> {
    let mut k = tag.to_vec();
    k.extend_from_slice(client_id.as_bytes());
    k.push(0);
    k
}

/// Key of an inbound QoS 2 packet id whose PUBREL is awaited.
pub fn incoming_key(client_id: &str, packet_id: u16) -> Vec<u8> {
    let mut k = incoming_prefix(client_id);
    k.extend_from_slice(&packet_id.to_be_bytes());
    k
}

/// Prefix of every inbound QoS 2 key of `client_id`.
pub fn incoming_prefix(client_id: &str) -> Vec<u8> {
    client_prefix(b"i/", client_id)
}

impl QueueEntry {
    /// Version byte, phase, QoS, flags (1 retain, 2 shared), packet id, partition, offset,
    /// count of subscription ids, the ids; integers big-endian.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(20 + 4 * self.subscription_ids.len());
        out.push(1);
        out.push(self.phase as u8);
        out.push(self.qos as u8);
        out.push(u8::from(self.retain) | u8::from(self.shared) << 1);
        out.extend_from_slice(&self.packet_id.to_be_bytes());
        out.extend_from_slice(&self.partition.to_be_bytes());
        out.extend_from_slice(&self.offset.to_be_bytes());
        let ids = &self.subscription_ids[..self.subscription_ids.len().min(255)];
        out.push(ids.len() as u8);
        for id in ids {
            out.extend_from_slice(&id.to_be_bytes());
        }
        out
    }

    /// An entry written by [`QueueEntry::encode`]; `None` when damaged.
    pub fn decode(b: &[u8]) -> Option<Self> {
        if *b.first()? != 1 {
            return None;
        }
        let phase = match *b.get(1)? {
            0 => EntryPhase::Queued,
            1 => EntryPhase::AwaitAck,
            2 => EntryPhase::AwaitRec,
            3 => EntryPhase::AwaitComp,
            _ => return None,
        };
        let qos = codec::QoS::from_bits(*b.get(2)?).ok()?;
        let flags = *b.get(3)?;
        let packet_id = u16::from_be_bytes(b.get(4..6)?.try_into().ok()?);
        let partition = u32::from_be_bytes(b.get(6..10)?.try_into().ok()?);
        let offset = u64::from_be_bytes(b.get(10..18)?.try_into().ok()?);
        let n = usize::from(*b.get(18)?);
        let ids = b.get(19..19 + 4 * n)?;
        Some(QueueEntry {
            phase,
            packet_id,
            qos,
            retain: flags & 1 != 0,
            shared: flags & 2 != 0,
            partition,
            offset,
            subscription_ids: ids
                .chunks_exact(4)
                .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        })
    }
}

/// The sequence number in a key made by [`queue_key`].
pub fn seq_of(key: &[u8]) -> Option<u64> {
    let tail = key.len().checked_sub(8)?;
    Some(u64::from_be_bytes(key[tail..].try_into().ok()?))
}

#[cfg(test)]
mod entry_tests {
    use super::*;

    #[test]
    fn queue_entries_round_trip_and_keys_do_not_collide() {
        let e = QueueEntry {
            phase: EntryPhase::AwaitRec,
            packet_id: 513,
            qos: codec::QoS::ExactlyOnce,
            retain: true,
            shared: true,
            partition: 3,
            offset: 1 << 40,
            subscription_ids: vec![1, 70000],
        };
        assert_eq!(QueueEntry::decode(&e.encode()), Some(e.clone()));
        assert_eq!(QueueEntry::decode(&e.encode()[..10]), None);
        assert!(!queue_key("a/b", 1).starts_with(&queue_prefix("a")));
        assert_eq!(seq_of(&queue_key("c", 77)), Some(77));
    }
}

/// Key of the pending will of `client_id` (a will with a delay, not yet published).
pub fn will_key(client_id: &str) -> Vec<u8> {
    key(b"w/", client_id)
}

/// Key of a delayed publish due at `due_ms` (wall clock), `seq` keeping keys unique:
/// keys sort by due time.
pub fn delayed_key(due_ms: u64, seq: u64) -> Vec<u8> {
    let mut k = b"d/".to_vec();
    k.extend_from_slice(&due_ms.to_be_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// A message due at `due_ms` (wall clock) as stored: the due time, then
/// [`encode_message`].
pub fn encode_due(due_ms: u64, m: &Message, now: Instant) -> Vec<u8> {
    let mut out = due_ms.to_be_bytes().to_vec();
    out.extend_from_slice(&encode_message(m, now));
    out
}

/// A message stored by [`encode_due`] with its due time; `None` when damaged or expired.
pub fn decode_due(b: &[u8], now: Instant) -> Option<(u64, Message)> {
    let due = u64::from_be_bytes(b.get(..8)?.try_into().ok()?);
    Some((due, decode_message(b.get(8..)?, now)?))
}

/// Wall-clock milliseconds now, for due times.
pub fn now_wall_ms() -> u64 {
    wall_ms()
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
