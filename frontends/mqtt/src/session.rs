//! Session state: subscriptions, the queue of messages not yet sent, the messages in
//! flight, inbound QoS 2 state and packet identifiers. Plain data and decisions, no I/O.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU8;
use std::time::{Instant, SystemTime};

use parking_lot::Mutex;
use tokio::sync::Notify;

use strata_frontend::seams::StateOp;
use strata_frontend::security::acl::AclRule;

use crate::codec::{QoS, SubscriptionOptions};
use crate::message::Outgoing;
use crate::stored::{self, EntryPhase, QueueEntry};

/// One subscription of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscription {
    /// Its options.
    pub options: SubscriptionOptions,
    /// Its subscription identifier (MQTT 5).
    pub id: Option<u32>,
}

/// Where an outbound QoS 1/2 message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// QoS 1 PUBLISH sent, PUBACK awaited.
    AwaitAck,
    /// QoS 2 PUBLISH sent, PUBREC awaited.
    AwaitRec,
    /// PUBREL sent, PUBCOMP awaited.
    AwaitComp,
}

/// A message in flight towards the client.
#[derive(Debug, Clone)]
pub struct Inflight {
    /// Packet identifier used.
    pub packet_id: u16,
    /// The delivery.
    pub out: Outgoing,
    /// Its phase.
    pub phase: Phase,
}

/// The messages in flight towards the client, oldest first, with an index of their packet
/// identifiers so that allocating a free identifier costs O(1).
#[derive(Debug, Default)]
pub struct InflightWindow {
    entries: VecDeque<Inflight>,
    ids: HashSet<u16>,
}

impl InflightWindow {
    /// Number of messages in flight.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &Inflight> {
        self.entries.iter()
    }

    fn contains(&self, id: u16) -> bool {
        self.ids.contains(&id)
    }

    fn push(&mut self, f: Inflight) {
        self.ids.insert(f.packet_id);
        self.entries.push_back(f);
    }

    fn position(&self, id: u16, phase: Phase) -> Option<usize> {
        if !self.contains(id) {
            return None;
        }
        self.entries
            .iter()
            .position(|f| f.packet_id == id && f.phase == phase)
    }

    fn remove(&mut self, i: usize) -> Option<Inflight> {
        let f = self.entries.remove(i)?;
        self.ids.remove(&f.packet_id);
        Some(f)
    }

    fn set_phase(&mut self, i: usize, phase: Phase) {
        if let Some(f) = self.entries.get_mut(i) {
            f.phase = phase;
        }
    }

    fn get(&self, i: usize) -> Option<&Inflight> {
        self.entries.get(i)
    }

    /// Puts back an in-flight message recovered from the store.
    pub fn restore(&mut self, f: Inflight) {
        self.push(f);
    }

    fn retain(&mut self, mut keep: impl FnMut(&Inflight) -> bool) {
        let ids = &mut self.ids;
        self.entries.retain(|f| {
            let k = keep(f);
            if !k {
                ids.remove(&f.packet_id);
            }
            k
        });
    }
}

/// What happened to a message offered to a full queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// Queued.
    Queued,
    /// Queued after dropping this many of the oldest queued messages.
    DroppedOldest(u64),
    /// Not queued: the queue is full.
    Refused,
}

/// Bounds of one session's queue.
#[derive(Debug, Clone, Copy)]
pub struct QueueLimits {
    /// Most messages queued.
    pub messages: usize,
    /// Most bytes (topics and payloads) queued.
    pub bytes: u64,
    /// Drop the oldest to make room, instead of refusing the new message.
    pub drop_oldest: bool,
}

fn size_of(out: &Outgoing) -> u64 {
    (out.message.topic.len() + out.message.payload.len()) as u64
}

/// The live connection of a session, so a takeover can close it.
#[derive(Debug, Clone)]
pub struct ConnectionLink {
    /// Distinguishes successive connections of one client id.
    pub generation: u64,
    /// Notified to make that connection close.
    pub kick: Arc<Notify>,
    /// Who is connected, for the admin API.
    pub info: Arc<ConnectionInfo>,
}

/// What the admin API shows about a live connection.
#[derive(Debug)]
pub struct ConnectionInfo {
    /// The client's address, when the transport has one.
    pub peer: Option<SocketAddr>,
    /// `tcp` or `websocket`.
    pub transport: &'static str,
    /// Protocol level: 3 (MQTT 3.1), 4 (3.1.1) or 5.
    pub protocol_level: u8,
    /// User name from CONNECT.
    pub username: Option<String>,
    /// Keep alive in effect, in seconds (0: none).
    pub keep_alive_secs: u16,
    /// When CONNECT was accepted.
    pub connected_at: SystemTime,
    /// The authenticated user (none for anonymous clients, whatever CONNECT's username).
    pub principal: Option<Arc<str>>,
    /// Whether the principal is one of the node's users (a password or SCRAM): deleting
    /// the user closes the connection.
    pub account: bool,
    /// ACL rules of the client's own (a token's), checked before the node's.
    pub acl_rules: Option<Arc<[AclRule]>>,
    /// When the credentials it connected with (a token) stop being good, if they do: the
    /// connection is closed then.
    pub expires_at: Option<SystemTime>,
    /// Set (to the MQTT 5 reason code to end with) before `kick` is notified when the
    /// node closes the connection: an operator's "administrative action" (0x98), a ban,
    /// expired credentials ("not authorized", 0x87). 0 when another connection took the
    /// session over.
    pub evicted: AtomicU8,
}

impl Default for ConnectionInfo {
    fn default() -> Self {
        ConnectionInfo {
            peer: None,
            transport: "tcp",
            protocol_level: 4,
            username: None,
            keep_alive_secs: 0,
            connected_at: SystemTime::now(),
            principal: None,
            account: false,
            acl_rules: None,
            expires_at: None,
            evicted: AtomicU8::new(0),
        }
    }
}

/// The state of one session.
#[derive(Debug, Default)]
pub struct SessionState {
    /// Subscriptions by raw filter (including `$share/...`).
    pub subscriptions: HashMap<String, Subscription>,
    /// Messages waiting to be sent.
    pub queue: VecDeque<Outgoing>,
    /// Messages sent and not yet fully acknowledged, oldest first.
    pub inflight: InflightWindow,
    /// Inbound QoS 2 packet identifiers whose PUBREL is awaited.
    pub incoming_qos2: HashSet<u16>,
    next_id: u16,
    /// Session expiry interval in seconds (u32::MAX: never).
    pub expiry_secs: u32,
    /// When the last connection ended (None while connected).
    pub disconnected_at: Option<Instant>,
    /// The connection currently attached.
    pub connection: Option<ConnectionLink>,
    /// Messages dropped because the queue was full.
    pub dropped: u64,
    /// Bytes (topics and payloads) of the messages in `queue`.
    pub queued_bytes: u64,
    /// The client id when this session is kept in the store (it outlives its connection
    /// and the broker persists); its QoS 1/2 deliveries and inbound QoS 2 state are then
    /// recorded as store writes in `ops`.
    pub durable: Option<Arc<str>>,
    /// Number of the next durable delivery.
    pub next_seq: u64,
    /// Store writes that the changes so far need, in order. The broker moves them to its
    /// pending writes under this state's lock, so writes of one key keep their order.
    pub ops: Vec<StateOp>,
    /// The user the client id belongs to: only that user may take the session over.
    pub owner: Option<Arc<str>>,
    /// Who its last connection was (user, address, a token's rules): an ACL change judges
    /// the subscriptions of a session without a connection as made by it.
    pub last_connection: Option<Arc<ConnectionInfo>>,
}

impl SessionState {
    /// Records where delivery `out` stands, when it is kept in the store.
    fn record(&mut self, out: &Outgoing, packet_id: u16, phase: EntryPhase) {
        let (Some(client), Some((partition, offset))) = (&self.durable, out.message.stored) else {
            return;
        };
        if out.seq == 0 {
            return;
        }
        let entry = QueueEntry {
            phase,
            packet_id,
            qos: out.qos,
            retain: out.retain,
            shared: out.shared,
            partition,
            offset,
            subscription_ids: out.subscription_ids.clone(),
        };
        self.ops.push(StateOp::Put(
            stored::queue_key(client, out.seq),
            entry.encode(),
        ));
    }

    /// Removes delivery number `seq` from the store.
    fn unrecord(&mut self, seq: u64) {
        if let Some(client) = &self.durable
            && seq != 0
        {
            self.ops
                .push(StateOp::Delete(stored::queue_key(client, seq)));
        }
    }

    /// Numbers a QoS 1/2 delivery of a stored message for a durable session.
    fn number(&mut self, out: &mut Outgoing) {
        if self.durable.is_some() && out.qos != QoS::AtMostOnce && out.message.stored.is_some() {
            self.next_seq += 1;
            out.seq = self.next_seq;
            self.record(out, 0, EntryPhase::Queued);
        }
    }

    /// True when `out` fits in the queue without dropping anything.
    pub fn has_room(&self, out: &Outgoing, limits: &QueueLimits) -> bool {
        self.queue.len() < limits.messages && self.queued_bytes + size_of(out) <= limits.bytes
    }

    fn push_queued(&mut self, mut out: Outgoing) {
        self.number(&mut out);
        self.queued_bytes += size_of(&out);
        self.queue.push_back(out);
    }

    /// Puts back a queued delivery recovered from the store (already numbered).
    pub fn restore_queued(&mut self, out: Outgoing) {
        self.queued_bytes += size_of(&out);
        self.queue.push_back(out);
    }

    fn pop_queued(&mut self) -> Option<Outgoing> {
        let o = self.queue.pop_front()?;
        self.queued_bytes = self.queued_bytes.saturating_sub(size_of(&o));
        Some(o)
    }

    /// Offers a delivery, keeping the queue within `limits`.
    pub fn enqueue(&mut self, out: Outgoing, limits: &QueueLimits) -> Enqueued {
        if self.has_room(&out, limits) {
            self.push_queued(out);
            return Enqueued::Queued;
        }
        let fits_alone = size_of(&out) <= limits.bytes && limits.messages > 0;
        if !limits.drop_oldest || !fits_alone {
            self.dropped += 1;
            return Enqueued::Refused;
        }
        let mut dropped = 0;
        while !self.has_room(&out, limits) {
            let Some(old) = self.pop_queued() else { break };
            self.unrecord(old.seq);
            dropped += 1;
        }
        self.dropped += dropped;
        self.push_queued(out);
        Enqueued::DroppedOldest(dropped)
    }

    /// The next free packet identifier (never 0).
    pub fn next_packet_id(&mut self) -> u16 {
        loop {
            self.next_id = self.next_id.wrapping_add(1).max(1);
            if !self.inflight.contains(self.next_id) {
                return self.next_id;
            }
        }
    }

    /// Takes queued messages to send now, with at most `limit` QoS 1/2 messages in flight
    /// and about `budget` bytes of topics and payloads (at least one message). Expired
    /// messages are dropped. Returns `(packet id, delivery)` pairs.
    pub fn take_sendable(
        &mut self,
        limit: usize,
        now: Instant,
        budget: usize,
    ) -> Vec<(Option<u16>, Outgoing)> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        while let Some(front) = self.queue.front() {
            if front.message.expired(now) {
                if let Some(o) = self.pop_queued() {
                    self.unrecord(o.seq);
                }
                continue;
            }
            if front.qos != QoS::AtMostOnce && self.inflight.len() >= limit {
                break;
            }
            if bytes >= budget {
                break;
            }
            bytes += front.message.topic.len() + front.message.payload.len();
            let Some(o) = self.pop_queued() else {
                break;
            };
            if o.qos == QoS::AtMostOnce {
                out.push((None, o));
                continue;
            }
            let id = self.next_packet_id();
            let (phase, entry_phase) = if o.qos == QoS::AtLeastOnce {
                (Phase::AwaitAck, EntryPhase::AwaitAck)
            } else {
                (Phase::AwaitRec, EntryPhase::AwaitRec)
            };
            self.record(&o, id, entry_phase);
            self.inflight.push(Inflight {
                packet_id: id,
                out: o.clone(),
                phase,
            });
            out.push((Some(id), o));
        }
        out
    }

    /// True when `take_sendable` with the same `limit` would return something.
    pub fn can_send(&self, limit: usize) -> bool {
        self.queue
            .front()
            .is_some_and(|f| f.qos == QoS::AtMostOnce || self.inflight.len() < limit)
    }

    /// PUBACK received: true when it matched a QoS 1 message in flight.
    pub fn on_puback(&mut self, id: u16) -> bool {
        let done = self
            .inflight
            .position(id, Phase::AwaitAck)
            .and_then(|i| self.inflight.remove(i));
        done.map(|f| {
            if let Some(receipt) = &f.out.receipt {
                receipt.done();
            }
            self.unrecord(f.out.seq)
        })
        .is_some()
    }

    /// PUBREC received: true when it matched; the caller answers PUBREL either way. A
    /// PUBREC with an error code ends the flow instead.
    pub fn on_pubrec(&mut self, id: u16, error: bool) -> bool {
        let Some(i) = self.inflight.position(id, Phase::AwaitRec) else {
            return self.inflight.position(id, Phase::AwaitComp).is_some();
        };
        if error {
            if let Some(f) = self.inflight.remove(i) {
                self.unrecord(f.out.seq);
            }
        } else {
            self.inflight.set_phase(i, Phase::AwaitComp);
            if let Some(f) = self.inflight.get(i).cloned() {
                self.record(&f.out, id, EntryPhase::AwaitComp);
            }
        }
        true
    }

    /// PUBCOMP received: true when it matched.
    pub fn on_pubcomp(&mut self, id: u16) -> bool {
        let done = self
            .inflight
            .position(id, Phase::AwaitComp)
            .and_then(|i| self.inflight.remove(i));
        done.map(|f| {
            if let Some(receipt) = &f.out.receipt {
                receipt.done();
            }
            self.unrecord(f.out.seq)
        })
        .is_some()
    }

    /// Forgets an in-flight message that could not be sent (too large for the client).
    pub fn forget(&mut self, id: u16) {
        let mut gone = Vec::new();
        self.inflight.retain(|f| {
            if f.packet_id == id {
                gone.push(f.out.seq);
            }
            f.packet_id != id
        });
        for seq in gone {
            self.unrecord(seq);
        }
    }

    /// Records that inbound QoS 2 packet `id` was received and answered with PUBREC (it is
    /// in `incoming_qos2` already); for a durable session the record goes to the store.
    pub fn record_incoming(&mut self, id: u16) {
        if let Some(client) = &self.durable {
            self.ops
                .push(StateOp::Put(stored::incoming_key(client, id), Vec::new()));
        }
    }

    /// PUBREL received, or the exchange failed: forgets inbound packet `id`. True when it
    /// was known.
    pub fn release_incoming(&mut self, id: u16) -> bool {
        let known = self.incoming_qos2.remove(&id);
        if known && let Some(client) = &self.durable {
            self.ops
                .push(StateOp::Delete(stored::incoming_key(client, id)));
        }
        known
    }

    /// Removes and returns the queued and in-flight deliveries that came through shared
    /// subscriptions, so other members of their groups can get them.
    pub fn take_shared(&mut self) -> Vec<Outgoing> {
        self.take_where(|o| o.shared)
    }

    /// Removes and returns the queued and in-flight deliveries of work queues: their
    /// consumer is gone, so they go back to their queues.
    pub fn take_receipts(&mut self) -> Vec<Outgoing> {
        self.take_where(|o| o.receipt.is_some())
    }

    fn take_where(&mut self, taken: impl Fn(&Outgoing) -> bool) -> Vec<Outgoing> {
        let mut out: Vec<Outgoing> = Vec::new();
        self.inflight.retain(|f| {
            let keep = !taken(&f.out) || f.phase == Phase::AwaitComp;
            if !keep {
                out.push(f.out.clone());
            }
            keep
        });
        let mut moved = 0;
        self.queue.retain(|o| {
            let take = taken(o);
            if take {
                moved += size_of(o);
                out.push(o.clone());
            }
            !take
        });
        self.queued_bytes = self.queued_bytes.saturating_sub(moved);
        for o in &out {
            self.unrecord(o.seq);
        }
        out
    }

    /// Drops every subscription, queued and in-flight message (clean start). The attached
    /// connection stays, so that a takeover can still close it.
    pub fn clear(&mut self) {
        self.forget_stored();
        *self = SessionState {
            expiry_secs: self.expiry_secs,
            connection: self.connection.take(),
            durable: self.durable.take(),
            next_seq: self.next_seq,
            ops: std::mem::take(&mut self.ops),
            ..SessionState::default()
        };
    }

    /// Removes from the store every delivery and inbound QoS 2 record of this session (it
    /// is ending or starting clean). Later changes are not recorded until `durable` is set
    /// again.
    pub fn forget_stored(&mut self) {
        let seqs: Vec<u64> = self
            .queue
            .iter()
            .map(|o| o.seq)
            .chain(self.inflight.iter().map(|f| f.out.seq))
            .collect();
        for seq in seqs {
            self.unrecord(seq);
        }
        let ids: Vec<u16> = self.incoming_qos2.iter().copied().collect();
        for id in ids {
            self.release_incoming(id);
        }
    }
}

/// A session shared between the broker (which routes into it) and its connection.
#[derive(Debug)]
pub struct Session {
    /// Client identifier.
    pub client_id: Arc<str>,
    /// Its state.
    pub state: Mutex<SessionState>,
    /// Wakes the connection when messages are queued.
    pub wake: Notify,
}

impl Session {
    /// A new, empty session.
    pub fn new(client_id: Arc<str>) -> Self {
        Session {
            client_id,
            state: Mutex::new(SessionState::default()),
            wake: Notify::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Message;
    use bytes::Bytes;

    fn out(qos: QoS) -> Outgoing {
        Outgoing {
            message: Arc::new(Message {
                topic: "t".into(),
                payload: Bytes::new(),
                qos,
                retain: false,
                properties: Default::default(),
                expires_at: None,
                publisher: None,
                stored: None,
                received: Instant::now(),
            }),
            qos,
            retain: false,
            subscription_ids: Vec::new(),
            shared: false,
            seq: 0,
            receipt: None,
        }
    }

    #[test]
    fn inflight_is_bounded_and_acks_free_it() {
        let mut s = SessionState::default();
        for _ in 0..5 {
            s.enqueue(out(QoS::AtLeastOnce), &limits(100, u64::MAX, false));
        }
        let now = Instant::now();
        let sent = s.take_sendable(2, now, usize::MAX);
        assert_eq!(sent.len(), 2);
        assert_eq!(s.queue.len(), 3);
        let id = sent[0].0.unwrap_or(0);
        assert!(s.on_puback(id));
        assert!(!s.on_puback(id), "a second PUBACK matches nothing");
        assert_eq!(s.take_sendable(2, now, usize::MAX).len(), 1);
    }

    #[test]
    fn qos2_flow() {
        let mut s = SessionState::default();
        s.enqueue(out(QoS::ExactlyOnce), &limits(10, u64::MAX, false));
        let id = s.take_sendable(10, Instant::now(), usize::MAX)[0]
            .0
            .unwrap_or(0);
        assert!(!s.on_pubcomp(id), "PUBCOMP before PUBREC");
        assert!(s.on_pubrec(id, false));
        assert!(
            s.on_pubrec(id, false),
            "a repeated PUBREC is answered again"
        );
        assert!(s.on_pubcomp(id));
        assert!(s.inflight.is_empty());
    }

    fn limits(messages: usize, bytes: u64, drop_oldest: bool) -> QueueLimits {
        QueueLimits {
            messages,
            bytes,
            drop_oldest,
        }
    }

    #[test]
    fn a_full_queue_refuses_or_drops_the_oldest_by_count_and_bytes() {
        let newest = limits(2, 1 << 20, false);
        let mut s = SessionState::default();
        s.enqueue(out(QoS::AtMostOnce), &newest);
        s.enqueue(out(QoS::AtLeastOnce), &newest);
        assert_eq!(s.enqueue(out(QoS::AtLeastOnce), &newest), Enqueued::Refused);
        let oldest = limits(2, 1 << 20, true);
        assert_eq!(
            s.enqueue(out(QoS::ExactlyOnce), &oldest),
            Enqueued::DroppedOldest(1)
        );
        assert_eq!(s.queue.len(), 2);
        assert_eq!(s.queue[0].qos, QoS::AtLeastOnce);
        assert_eq!(s.dropped, 2);
        // By bytes: each test message is one byte of topic.
        let two_bytes = limits(100, 2, true);
        assert_eq!(s.queued_bytes, 2);
        assert_eq!(
            s.enqueue(out(QoS::AtLeastOnce), &two_bytes),
            Enqueued::DroppedOldest(1)
        );
        assert_eq!(s.queued_bytes, 2);
        let refuse = limits(100, 2, false);
        assert_eq!(s.enqueue(out(QoS::AtLeastOnce), &refuse), Enqueued::Refused);
        assert_eq!(s.queued_bytes, 2);
    }

    #[test]
    fn packet_ids_skip_zero_and_ids_in_use() {
        let mut s = SessionState {
            next_id: u16::MAX - 1,
            ..SessionState::default()
        };
        s.enqueue(out(QoS::AtLeastOnce), &limits(10, u64::MAX, false));
        s.enqueue(out(QoS::AtLeastOnce), &limits(10, u64::MAX, false));
        let ids: Vec<_> = s
            .take_sendable(10, Instant::now(), usize::MAX)
            .into_iter()
            .map(|x| x.0)
            .collect();
        assert_eq!(ids, [Some(u16::MAX), Some(1)]);
    }
}
