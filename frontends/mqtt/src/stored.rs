//! The stored forms the MQTT frontend shares between a session's operations and the
//! store that applies them: messages (a wall-clock stamp, the publisher and an MQTT 5
//! PUBLISH), queue and in-flight entries, and the keys they live under in the `mqtt`
//! space:
//!
//! - `q/<client id>\0<seq>`: a queued or in-flight delivery ([`QueueEntry`]).
//! - `i/<client id>\0<packet id>`: a QoS 2 PUBLISH received and not yet released.
//! - `w/<client id>`: a pending will, with its due time.
//! - `d/<due ms><seq>`: a delayed publish.

use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use strata_batch::now_ms;

use crate::codec::{self, Packet, ProtocolVersion, PublishRef};
use crate::message::Message;

/// Wall-clock milliseconds since the Unix epoch.
pub(crate) fn wall_ms() -> u64 {
    u64::try_from(now_ms()).unwrap_or(0)
}

/// `prefix` followed by `name`.
pub(crate) fn key(prefix: &[u8], name: &str) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(name.as_bytes());
    k
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
