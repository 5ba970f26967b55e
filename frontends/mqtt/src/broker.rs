//! The broker's shared state: sessions, the subscription trees, retained messages and
//! pending wills; and routing a message to every session that should get it.

use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Maps on the routing path: client ids are hashed for every delivery, so with foldhash
/// (fast, and seeded per process so client-chosen ids cannot force collisions).
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use parking_lot::{Mutex, RwLock};
use strata_frontend::Shutdown;
use strata_frontend::seams::{StoreError, StreamHandles};
use tokio::sync::Notify;

use crate::codec::{QoS, ReasonCode, RetainHandling};
use crate::config::{MqttConfig, QueueFullPolicy};
use crate::message::{Message, Outgoing};
use crate::metrics::MqttMetrics;
use crate::persist::{Persist, SessionRecord};
use crate::retained::{RetainRefused, RetainedMessages};
use crate::rules::TopicRules;
use crate::session::{
    ConnectionInfo, ConnectionLink, Enqueued, Inflight, Phase, QueueLimits, Session, SessionState,
    Subscription,
};
use crate::store;
use crate::stored::{self, EntryPhase, QueueEntry};
use crate::topic::{TopicLimits, matches, parse_filter, validate_name};
use crate::trie::SubscriptionTree;
use strata_frontend::seams::{StateError, StateOp};
use strata_frontend::security::Security;
use strata_frontend::security::acl::{Access, AclRule, Who};

/// Members of one shared subscription (`$share/{group}/{filter}`), served round robin.
#[derive(Debug, Default)]
struct SharedGroup {
    members: Vec<(Arc<str>, Subscription)>,
    next: AtomicUsize,
}

/// A will waiting for its delay: due time and message.
type PendingWill = (Instant, Arc<Message>);

/// What `connect` found.
#[derive(Debug)]
pub struct Attached {
    /// The session, new or resumed.
    pub session: Arc<Session>,
    /// Whether an existing session was resumed.
    pub present: bool,
    /// This connection's generation (to detach only itself later).
    pub generation: u64,
    /// Notified when another connection takes the session over (or an operator closes
    /// this one: `info.evicted` is set then).
    pub kick: Arc<Notify>,
    /// This connection's description, shared with the admin API.
    pub info: Arc<ConnectionInfo>,
}

/// A client id kept for its owner until the instant.
type Reservation = (Arc<str>, Instant);

/// The broker.
#[derive(Debug)]
pub struct Broker {
    /// Settings.
    pub config: MqttConfig,
    /// Topic limits from the settings.
    pub limits: TopicLimits,
    /// Metrics.
    pub metrics: MqttMetrics,
    pub(crate) sessions: Mutex<FastMap<Arc<str>, Arc<Session>>>,
    subs: RwLock<SubscriptionTree<Arc<str>, Subscription>>,
    shared: RwLock<SubscriptionTree<Arc<str>, SharedGroup>>,
    pub(crate) retained: RwLock<RetainedMessages>,
    /// The topic rules, applied to every way a message enters.
    pub rules: TopicRules,
    /// Users, ACL and bans.
    pub security: Security,
    /// Pending wills by client id: when each is due, and the message.
    pub(crate) wills: Mutex<HashMap<Arc<str>, PendingWill>>,
    generation: AtomicU64,
    /// When the broker started.
    pub started: Instant,
    /// Where messages that must be kept are appended before they are acknowledged.
    pub store: Option<Arc<StreamHandles>>,
    /// Streams MQTT publishes are copied to (bridges to Kafka topics).
    pub bridges: crate::bridge::Bridges,
    /// The agent frontend's work queues, under their topic prefix.
    pub queues: strata_frontend::work_queues::QueueLink,
    /// Where persistent sessions and retained messages are kept across restarts.
    pub(crate) persist: Option<Persist>,
    /// Store writes of durable sessions not written yet, in the order they were made, and
    /// how many writes were ever made.
    pending: Mutex<(Vec<StateOp>, u64)>,
    /// How many of the writes ever made are in the store.
    written: AtomicU64,
    /// Held (shared) while one publisher's group of writes is being made: a sync takes it
    /// exclusively to cut the pending writes only between groups, so that a message's
    /// deliveries and its publisher's inbound QoS 2 record reach the store together.
    gate: RwLock<()>,
    /// Serializes syncs, so that batches are written in the order they were cut.
    writer: Mutex<()>,
    /// Delayed publishes (`$delayed/{seconds}/{topic}`) by due time (wall-clock ms) and
    /// number, with their store key.
    delayed: Mutex<BTreeMap<(u64, u64), DelayedPublish>>,
    delayed_seq: AtomicU64,
    /// Bytes (topics and payloads) of the delayed publishes waiting.
    delayed_bytes: AtomicU64,
    /// Connections whose credentials (tokens) stop being good, by when: closed then.
    expiries: Mutex<BTreeSet<(SystemTime, Arc<str>)>>,
    /// Client ids whose owned session ended, kept for their owner until the instant given
    /// (`client_id_reservation_secs`), so nobody else takes them meanwhile.
    reserved: Mutex<HashMap<Arc<str>, Reservation>>,
}

impl Broker {
    /// A broker with no sessions.
    pub fn new(
        config: MqttConfig,
        metrics: MqttMetrics,
        store: Option<Arc<StreamHandles>>,
    ) -> Self {
        let rules = TopicRules::new(config.rules.clone());
        Broker {
            limits: TopicLimits {
                max_levels: config.max_topic_levels,
                max_len: config.max_topic_length,
            },
            config,
            metrics,
            sessions: Mutex::new(FastMap::default()),
            subs: RwLock::new(SubscriptionTree::new()),
            shared: RwLock::new(SubscriptionTree::new()),
            retained: RwLock::new(RetainedMessages::default()),
            rules,
            security: Security::open_everything(),
            wills: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
            started: Instant::now(),
            store,
            bridges: crate::bridge::Bridges::default(),
            queues: strata_frontend::work_queues::QueueLink::default(),
            persist: None,
            pending: Mutex::new((Vec::new(), 0)),
            written: AtomicU64::new(0),
            gate: RwLock::new(()),
            writer: Mutex::new(()),
            delayed: Mutex::new(BTreeMap::new()),
            // Numbers from the clock, so they never repeat those of an earlier run.
            delayed_seq: AtomicU64::new(stored::now_wall_ms() << 16),
            delayed_bytes: AtomicU64::new(0),
            expiries: Mutex::new(BTreeSet::new()),
            reserved: Mutex::new(HashMap::new()),
        }
    }

    /// Adds a store write that belongs to no session's state (wills, delayed publishes).
    pub(crate) fn push_op(&self, op: StateOp) {
        if self.persist.is_some() {
            let mut pending = self.pending.lock();
            pending.1 += 1;
            pending.0.push(op);
        }
    }

    /// Keeps a `$delayed/{seconds}/{topic}` publish until it is due, durably. Its
    /// acknowledgement follows the store write (the connection syncs before it writes).
    pub fn schedule_delayed(&self, message: &Message) -> Result<(), ReasonCode> {
        if self.delayed.lock().len() >= self.config.max_delayed_messages {
            self.metrics
                .dropped
                .with_label_values(&["delayed_full"])
                .inc();
            return Err(ReasonCode::QUOTA_EXCEEDED);
        }
        let rest = message.topic.strip_prefix("$delayed/").unwrap_or_default();
        let (secs, topic) = rest.split_once('/').ok_or(ReasonCode::TOPIC_NAME_INVALID)?;
        let secs: u32 = secs.parse().map_err(|_| ReasonCode::TOPIC_NAME_INVALID)?;
        if validate_name(topic, &self.limits).is_err() || topic.starts_with('$') {
            return Err(ReasonCode::TOPIC_NAME_INVALID);
        }
        let size = (topic.len() + message.payload.len()) as u64;
        if secs > self.config.max_delay_secs
            || self.delayed_bytes.load(Ordering::Relaxed) + size > self.config.max_delayed_bytes
        {
            self.metrics
                .dropped
                .with_label_values(&["delayed_full"])
                .inc();
            return Err(ReasonCode::QUOTA_EXCEEDED);
        }
        self.delayed_bytes.fetch_add(size, Ordering::Relaxed);
        let mut m = message.clone();
        m.topic = topic.to_string();
        m.stored = None;
        let due = stored::now_wall_ms() + u64::from(secs) * 1000;
        let seq = self.delayed_seq.fetch_add(1, Ordering::Relaxed);
        let key = stored::delayed_key(due, seq);
        self.push_op(StateOp::Put(
            key.clone(),
            stored::encode_due(due, &m, Instant::now()),
        ));
        self.delayed.lock().insert((due, seq), (key, Arc::new(m)));
        Ok(())
    }

    /// Runs `f` on the session's state and moves the store writes it made to the pending
    /// writes, under the same lock (so writes of one key keep their order).
    pub fn with_state<R>(&self, session: &Session, f: impl FnOnce(&mut SessionState) -> R) -> R {
        let mut st = session.state.lock();
        let r = f(&mut st);
        self.collect(&mut st);
        r
    }

    fn collect(&self, st: &mut SessionState) {
        if !st.ops.is_empty() {
            let mut pending = self.pending.lock();
            pending.1 += st.ops.len() as u64;
            pending.0.append(&mut st.ops);
        }
    }

    /// Holds back syncs while a group of writes that must land together is made.
    pub fn write_group(&self) -> parking_lot::RwLockReadGuard<'_, ()> {
        self.gate.read()
    }

    /// Writes every pending store write of durable sessions, in one atomic batch. Called
    /// before anything is sent to a client, so that what a client is told (PUBACK,
    /// PUBREC, a PUBLISH with its packet id, PUBREL) is never ahead of the store.
    ///
    /// Every write made before the call is in the store when it returns, including writes
    /// that another connection's sync took and is still writing: waiting on the count of
    /// written writes, not on the pending list being empty, covers those.
    pub fn sync_durable(&self) -> Result<(), StateError> {
        let Some(persist) = &self.persist else {
            return Ok(());
        };
        let target = self.pending.lock().1;
        if self.written.load(Ordering::Acquire) >= target {
            return Ok(());
        }
        let _writer = self.writer.lock();
        if self.written.load(Ordering::Acquire) >= target {
            return Ok(());
        }
        let (mut ops, made) = {
            let _between_groups = self.gate.write();
            let mut pending = self.pending.lock();
            (std::mem::take(&mut pending.0), pending.1)
        };
        if let Err(e) = persist.write(&ops) {
            self.metrics.errors.with_label_values(&["kv_write"]).inc();
            tracing::error!(error = %e, "durable session state not written");
            // Back in front of what came since, so the next sync writes them in order
            // (and `written` does not move past writes that never reached the store).
            let mut pending = self.pending.lock();
            ops.append(&mut pending.0);
            pending.0 = ops;
            return Err(e);
        }
        self.written.store(made, Ordering::Release);
        Ok(())
    }

    /// Keeps persistent sessions and retained messages in `persist`, and loads what it
    /// holds: sessions whose expiry has not passed (disconnected, with their
    /// subscriptions) and retained messages that have not expired. Returns how many
    /// sessions and retained messages were loaded. A delivery's message in a partition
    /// without a leader is waited for (an error only once `stopping` is set).
    pub fn recover(
        &mut self,
        persist: Persist,
        stopping: Shutdown,
    ) -> Result<(usize, usize), StateError> {
        let now = Instant::now();
        let mut sessions = 0;
        let mut messages = StoredMessages::new(self.store.clone(), now, stopping);
        for (client_id, record) in persist.sessions()? {
            if record.expired() {
                persist.write(&[Persist::delete_session(&client_id)])?;
                continue;
            }
            let session = Arc::new(Session::new(Arc::from(client_id.as_str())));
            {
                let mut st = session.state.lock();
                // A session kept by a node with a higher cap (or none) gets today's.
                st.expiry_secs = record.expiry_secs.min(self.config.max_session_expiry);
                st.owner = record.owner.as_deref().map(Arc::from);
                st.disconnected_at =
                    Some(now.checked_sub(record.disconnected_for()).unwrap_or(now));
            }
            self.sessions
                .lock()
                .insert(session.client_id.clone(), session.clone());
            for (filter, sub) in record.subscriptions() {
                self.subscribe(&session, &filter, sub);
            }
            self.load_deliveries(&persist, &session, &mut messages)?;
            sessions += 1;
        }
        self.metrics.sessions.set(self.sessions.lock().len() as i64);
        let retained = persist.retained()?;
        let count = retained.len();
        {
            let mut map = self.retained.write();
            for m in retained {
                map.insert(Arc::new(m));
            }
            self.metrics.retained.set(map.len() as i64);
            self.metrics.retained_bytes.set(map.bytes() as i64);
        }
        let now_wall = stored::now_wall_ms();
        let mut due = Vec::new();
        for (client, at, m) in persist.wills()? {
            let m = Arc::new(m);
            if at <= now_wall {
                // Fell due while the node was down: published at start-up.
                due.push((m, client));
            } else {
                let left = Duration::from_millis(at - now_wall);
                self.wills
                    .lock()
                    .insert(Arc::from(client.as_str()), (now + left, m));
            }
        }
        {
            let mut delayed = self.delayed.lock();
            for (key, at, m) in persist.delayed()? {
                let seq = stored::seq_of(&key).unwrap_or(0);
                self.delayed_bytes
                    .fetch_add((m.topic.len() + m.payload.len()) as u64, Ordering::Relaxed);
                delayed.insert((at, seq), (key, Arc::new(m)));
            }
        }
        self.persist = Some(persist);
        // Recovery runs on a blocking thread: wait for each journal append in place.
        let runtime = tokio::runtime::Handle::current();
        for (m, client) in due {
            runtime.block_on(self.publish_stored(m));
            self.push_op(StateOp::Delete(stored::will_key(&client)));
        }
        self.sync_durable()?;
        Ok((sessions, count))
    }

    /// Puts back a recovered session's queued and in-flight deliveries (resolving their
    /// journal references) and its inbound QoS 2 packet ids. A delivery whose message
    /// expired or is no longer in the journal is dropped, counted and removed.
    fn load_deliveries(
        &self,
        persist: &Persist,
        session: &Session,
        messages: &mut StoredMessages,
    ) -> Result<(), StateError> {
        let client = session.client_id.clone();
        let mut st = session.state.lock();
        st.durable = Some(client.clone());
        let mut gone = Vec::new();
        for (key, value) in persist.scan(&stored::queue_prefix(&client))? {
            let (Some(seq), Some(e)) = (stored::seq_of(&key), QueueEntry::decode(&value)) else {
                gone.push(StateOp::Delete(key));
                continue;
            };
            st.next_seq = st.next_seq.max(seq);
            let message = match messages.get(e.partition, e.offset)? {
                Some(m) => m,
                // A PUBREL still owed needs no message.
                None if e.phase == EntryPhase::AwaitComp => messages.placeholder(),
                None => {
                    self.metrics.dropped.with_label_values(&["expired"]).inc();
                    gone.push(StateOp::Delete(key));
                    continue;
                }
            };
            let out = Outgoing {
                message,
                qos: e.qos,
                retain: e.retain,
                subscription_ids: e.subscription_ids,
                shared: e.shared,
                seq,
                receipt: None,
            };
            let phase = match e.phase {
                EntryPhase::Queued => {
                    st.restore_queued(out);
                    continue;
                }
                EntryPhase::AwaitAck => Phase::AwaitAck,
                EntryPhase::AwaitRec => Phase::AwaitRec,
                EntryPhase::AwaitComp => Phase::AwaitComp,
            };
            st.inflight.restore(Inflight {
                packet_id: e.packet_id,
                out,
                phase,
            });
        }
        for (key, _) in persist.scan(&stored::incoming_prefix(&client))? {
            if let Some(id) = key
                .len()
                .checked_sub(2)
                .map(|i| u16::from_be_bytes([key[i], key[i + 1]]))
            {
                st.incoming_qos2.insert(id);
            }
        }
        drop(st);
        if !gone.is_empty() {
            persist.write(&gone)?;
        }
        Ok(())
    }

    /// Records the session's durable part (expiry, subscriptions, when it was left), or
    /// its removal when the session does not outlive its connection, as a pending store
    /// write made under the session's lock: writes of one session keep their order, and
    /// the next sync (before any reply reaches a client) makes it durable.
    pub fn save_session(&self, session: &Session) {
        if self.persist.is_none() {
            return;
        }
        self.with_state(session, |st| {
            let op = if st.expiry_secs > 0 {
                Persist::save_session(&session.client_id, &SessionRecord::of(st))
            } else {
                Persist::delete_session(&session.client_id)
            };
            st.ops.push(op);
        });
    }

    /// Whether `principal` may use `client_id`: no session, a session without owner, or
    /// its owner.
    pub fn may_own(&self, client_id: &str, principal: Option<&str>) -> bool {
        let session = self.sessions.lock().get(client_id).cloned();
        match session {
            Some(s) => {
                let owner = s.state.lock().owner.clone();
                owner.is_none() || owner.as_deref() == principal
            }
            None => {
                let mut reserved = self.reserved.lock();
                match reserved.get(client_id) {
                    Some((owner, until)) if *until > Instant::now() => Some(&**owner) == principal,
                    Some(_) => {
                        reserved.remove(client_id);
                        true
                    }
                    None => true,
                }
            }
        }
    }

    /// Keeps the client id of an ended session for its owner a while (bounded like the
    /// sessions: past `max_sessions` reservations, the oldest make room).
    fn reserve(&self, session: &Session) {
        let secs = self.config.client_id_reservation_secs;
        let Some(owner) = session.state.lock().owner.clone() else {
            return;
        };
        if secs == 0 {
            return;
        }
        let now = Instant::now();
        let mut reserved = self.reserved.lock();
        if reserved.len() >= self.config.max_sessions {
            reserved.retain(|_, (_, until)| *until > now);
            if reserved.len() >= self.config.max_sessions
                && let Some(oldest) = reserved
                    .iter()
                    .min_by_key(|(_, (_, until))| *until)
                    .map(|(id, _)| id.clone())
            {
                reserved.remove(&oldest);
            }
        }
        reserved.insert(
            session.client_id.clone(),
            (owner, now + Duration::from_secs(secs)),
        );
    }

    /// Attaches a connection to the session of `client_id`, creating it or, with
    /// `clean_start`, replacing it. A connection already attached is kicked off. A session
    /// created by an authenticated user belongs to that user: another principal (or an
    /// anonymous client) may neither take it over nor replace it (`NOT_AUTHORIZED`).
    pub fn connect(
        &self,
        client_id: &str,
        clean_start: bool,
        expiry_secs: u32,
        info: Arc<ConnectionInfo>,
        principal: Option<&str>,
    ) -> Result<Attached, ReasonCode> {
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        let kick = Arc::new(Notify::new());
        // Decide under the map's lock, but drop old subscriptions after releasing it: the
        // routing path takes the subscription trees before the map.
        let (session, present, replaced) = {
            let mut sessions = self.sessions.lock();
            match sessions.get(client_id) {
                Some(s) => {
                    let owner = s.state.lock().owner.clone();
                    if owner.is_some() && owner.as_deref() != principal {
                        self.metrics
                            .errors
                            .with_label_values(&["client_id_owned"])
                            .inc();
                        return Err(ReasonCode::NOT_AUTHORIZED);
                    }
                    (s.clone(), !clean_start, clean_start)
                }
                None if sessions.len() >= self.config.max_sessions => {
                    self.metrics
                        .errors
                        .with_label_values(&["max_sessions"])
                        .inc();
                    return Err(ReasonCode::QUOTA_EXCEEDED);
                }
                None => {
                    let s = Arc::new(Session::new(Arc::from(client_id)));
                    sessions.insert(s.client_id.clone(), s.clone());
                    self.metrics.sessions.set(sessions.len() as i64);
                    (s, false, false)
                }
            }
        };
        if replaced {
            self.drop_subscriptions(&session);
            self.with_state(&session, |st| st.clear());
        }
        let old = {
            let mut st = session.state.lock();
            st.expiry_secs = expiry_secs;
            if st.owner.is_none() {
                st.owner = principal.map(Arc::from);
            }
            let durable = self.persist.is_some() && expiry_secs > 0;
            if !durable && st.durable.is_some() {
                st.forget_stored();
                st.durable = None;
            } else if durable && st.durable.is_none() {
                st.durable = Some(session.client_id.clone());
            }
            self.collect(&mut st);
            st.disconnected_at = None;
            st.last_connection = Some(info.clone());
            st.connection.replace(ConnectionLink {
                generation,
                kick: kick.clone(),
                info: info.clone(),
            })
        };
        // After the link changed: an old connection registering its will now would see the
        // new link and register nothing; one that registered before is cancelled here.
        if self.wills.lock().remove(client_id).is_some() {
            self.push_op(StateOp::Delete(stored::will_key(client_id)));
        }
        if let Some(old) = old {
            old.kick.notify_one();
        }
        if let Some(t) = info.expires_at {
            self.expiries.lock().insert((t, session.client_id.clone()));
        }
        self.save_session(&session);
        Ok(Attached {
            session,
            present,
            generation,
            kick,
            info,
        })
    }

    /// Detaches connection `generation` from its session, registering its `will` (message
    /// and delay) if it has one; a session with expiry 0 ends now. Nothing happens when
    /// another connection has already taken the session over: the client is back, so no
    /// will. Checking the connection and registering the will under the session's lock
    /// makes a reconnect either see the will (and cancel it) or win (and leave none).
    pub async fn disconnect(
        &self,
        session: &Arc<Session>,
        generation: u64,
        will: Option<(Arc<Message>, Duration)>,
    ) {
        let (expired, publish_now) = {
            let mut st = session.state.lock();
            if st.connection.as_ref().map(|c| c.generation) != Some(generation) {
                return;
            }
            if let Some(t) = st.connection.take().and_then(|c| c.info.expires_at) {
                self.expiries.lock().remove(&(t, session.client_id.clone()));
            }
            st.disconnected_at = Some(Instant::now());
            let expired = st.expiry_secs == 0;
            let publish_now = match will {
                // Due at its delay or when the session ends, whichever comes first.
                Some((m, delay)) if !delay.is_zero() && !expired => {
                    if self.persist.is_some() {
                        let due = stored::now_wall_ms() + delay.as_millis() as u64;
                        st.ops.push(StateOp::Put(
                            stored::will_key(&session.client_id),
                            stored::encode_due(due, &m, Instant::now()),
                        ));
                        self.collect(&mut st);
                    }
                    self.wills
                        .lock()
                        .insert(session.client_id.clone(), (Instant::now() + delay, m));
                    None
                }
                Some((m, _)) => Some(m),
                None => None,
            };
            (expired, publish_now)
        };
        if let Some(m) = publish_now {
            self.publish_stored(m).await;
        }
        if expired {
            self.end_session(&session.client_id);
        } else {
            self.save_session(session);
        }
        let _ = self.sync_durable();
    }

    fn end_session(&self, client_id: &str) {
        match self.remove_session(client_id) {
            Some(s) => {
                self.reserve(&s);
                self.forget_session(&s);
            }
            None => self.push_op(Persist::delete_session(client_id)),
        }
    }

    /// Takes the session of `client_id` out of the routing table.
    pub(crate) fn remove_session(&self, client_id: &str) -> Option<Arc<Session>> {
        let mut sessions = self.sessions.lock();
        let removed = sessions.remove(client_id);
        self.metrics.sessions.set(sessions.len() as i64);
        removed
    }

    /// Drops a removed session's subscriptions and stored state (its store writes are
    /// queued; `sync_durable` makes them durable).
    pub(crate) fn forget_session(&self, session: &Session) {
        self.drop_subscriptions(session);
        self.with_state(session, |st| {
            st.forget_stored();
            st.durable = None;
        });
        self.push_op(Persist::delete_session(&session.client_id));
    }

    fn drop_subscriptions(&self, session: &Session) {
        let filters: Vec<String> = session.state.lock().subscriptions.keys().cloned().collect();
        for f in filters {
            self.remove_subscription(&session.client_id, &f);
        }
    }

    fn remove_subscription(&self, client: &Arc<str>, raw: &str) -> bool {
        let Ok(parsed) = parse_filter(raw, &self.limits) else {
            return false;
        };
        let removed = match parsed.group {
            None => self.subs.write().remove(parsed.filter, client).is_some(),
            Some(group) => {
                let mut shared = self.shared.write();
                let key: Arc<str> = Arc::from(group);
                let Some(g) = shared.get_mut(parsed.filter, &key) else {
                    return false;
                };
                let before = g.members.len();
                g.members.retain(|(c, _)| c != client);
                let removed = g.members.len() != before;
                if g.members.is_empty() {
                    shared.remove(parsed.filter, &key);
                }
                removed
            }
        };
        if removed {
            self.metrics.subscriptions.dec();
        }
        removed
    }

    /// Adds or replaces a subscription; returns true when it did not exist before.
    pub fn subscribe(&self, session: &Session, raw: &str, sub: Subscription) -> bool {
        let Ok(parsed) = parse_filter(raw, &self.limits) else {
            return false;
        };
        let client = session.client_id.clone();
        let new = match parsed.group {
            None => self
                .subs
                .write()
                .insert(parsed.filter, client, sub)
                .is_none(),
            Some(group) => {
                let mut shared = self.shared.write();
                let g = shared.get_or_insert_with(
                    parsed.filter,
                    Arc::from(group),
                    SharedGroup::default,
                );
                match g.members.iter_mut().find(|(c, _)| *c == client) {
                    Some(m) => {
                        m.1 = sub;
                        false
                    }
                    None => {
                        g.members.push((client, sub));
                        true
                    }
                }
            }
        };
        session
            .state
            .lock()
            .subscriptions
            .insert(raw.to_string(), sub);
        if new {
            self.metrics.subscriptions.inc();
        }
        new
    }

    /// Removes a subscription; returns whether it existed.
    pub fn unsubscribe(&self, session: &Session, raw: &str) -> bool {
        let had = session.state.lock().subscriptions.remove(raw).is_some();
        self.remove_subscription(&session.client_id, raw) || had
    }

    /// Retained messages to send for a new subscription to `raw`, at most `budget` of them
    /// (the budget is what is left for the SUBSCRIBE packet; it shrinks by what is taken).
    /// Those beyond it are not sent, and counted.
    pub fn retained_for(
        &self,
        raw: &str,
        sub: &Subscription,
        new: bool,
        budget: &mut usize,
    ) -> Vec<Outgoing> {
        let Ok(parsed) = parse_filter(raw, &self.limits) else {
            return Vec::new();
        };
        let send = parsed.group.is_none()
            && match sub.options.retain_handling {
                RetainHandling::SendAtSubscribe => true,
                RetainHandling::SendIfNew => new,
                RetainHandling::DoNotSend => false,
            };
        if !send {
            return Vec::new();
        }
        let now = Instant::now();
        let mut out = Vec::new();
        let mut over = 0u64;
        for m in self.retained.read().candidates(parsed.filter) {
            if !matches(parsed.filter, &m.topic) || m.expired(now) {
                continue;
            }
            if *budget == 0 {
                over += 1;
                continue;
            }
            *budget -= 1;
            out.push(Outgoing {
                message: m.clone(),
                qos: m.qos.min(sub.options.qos),
                retain: true,
                subscription_ids: sub.id.into_iter().collect(),
                shared: false,
                seq: 0,
                receipt: None,
            });
        }
        if over > 0 {
            self.metrics
                .dropped
                .with_label_values(&["retained_per_subscribe"])
                .inc_by(over);
        }
        out
    }

    /// Number of retained messages.
    pub fn retained_count(&self) -> usize {
        self.retained.read().len()
    }

    /// Number of sessions and of connected sessions.
    pub fn session_counts(&self) -> (usize, usize) {
        let sessions = self.sessions.lock();
        let connected = sessions
            .values()
            .filter(|s| s.state.lock().connection.is_some())
            .count();
        (sessions.len(), connected)
    }

    /// Routes a message: stores or clears it as retained, then queues it for every
    /// matching session. Returns the number of sessions it was queued for.
    pub fn publish(&self, message: Arc<Message>) -> usize {
        self.publish_checked(message).unwrap_or(0)
    }

    /// [`Broker::publish`], except that with `queue_full = "refuse"` a QoS 1/2 message
    /// that some matching session has no room for is routed nowhere: `Err(0x97)`.
    pub fn publish_checked(&self, message: Arc<Message>) -> Result<usize, ReasonCode> {
        if self.queues.queue_of(&message.topic).is_some() {
            // A work queue's topic carries only its queue's messages: a will, a delayed
            // publish or a bridged record under it is not routed (nor retained).
            self.metrics
                .dropped
                .with_label_values(&["queue_refused"])
                .inc();
            return Err(ReasonCode::TOPIC_NAME_INVALID);
        }
        if message.retain {
            let mut retained = self.retained.write();
            let refused = if message.payload.is_empty() {
                retained.remove(&message.topic);
                None
            } else if message.topic.starts_with("$SYS/") && message.publisher.is_none() {
                // The broker's own, a fixed set of topics: outside the bound.
                retained.insert(message.clone());
                None
            } else {
                retained
                    .insert_bounded(
                        message.clone(),
                        self.config.max_retained_messages,
                        self.config.max_retained_bytes,
                    )
                    .err()
            };
            self.metrics.retained.set(retained.len() as i64);
            self.metrics.retained_bytes.set(retained.bytes() as i64);
            if let Some(why) = refused {
                // Routed all the same, but not kept as the topic's retained message.
                let reason = match why {
                    RetainRefused::Count => "retained_count",
                    RetainRefused::Bytes => "retained_bytes",
                };
                self.metrics.dropped.with_label_values(&[reason]).inc();
                tracing::debug!(topic = %message.topic, reason, "retained message not kept: bound reached");
            }
            // `$SYS` values are the broker's own and rewritten periodically: not kept.
            let kept = self
                .persist
                .as_ref()
                .filter(|_| refused.is_none() && !message.topic.starts_with("$SYS/"));
            if let Some(Err(e)) = kept.map(|p| p.save_retained(&message)) {
                self.metrics.errors.with_label_values(&["kv_write"]).inc();
                tracing::error!(topic = %message.topic, error = %e, "retained message not saved");
            }
        }
        let mut targets: FastMap<Arc<str>, Outgoing> = FastMap::default();
        let mut add = |client: &Arc<str>, sub: &Subscription| {
            if sub.options.no_local && message.publisher.as_deref() == Some(&**client) {
                return;
            }
            let qos = message.qos.min(sub.options.qos);
            let retain = sub.options.retain_as_published && message.retain;
            let t = targets.entry(client.clone()).or_insert_with(|| Outgoing {
                message: message.clone(),
                qos: QoS::AtMostOnce,
                retain: false,
                subscription_ids: Vec::new(),
                shared: false,
                seq: 0,
                receipt: None,
            });
            t.qos = t.qos.max(qos);
            t.retain |= retain;
            t.subscription_ids.extend(sub.id);
        };
        self.subs.read().for_each_match(&message.topic, &mut add);
        let mut sessions: Vec<(Arc<Session>, Outgoing)> = {
            let map = self.sessions.lock();
            targets
                .into_iter()
                .filter_map(|(c, o)| map.get(&c).map(|s| (s.clone(), o)))
                .collect()
        };
        // Shared deliveries stay separate from a client's own subscriptions: they may have
        // to move to another member.
        for (session, sub) in self.shared_targets(&message.topic, None) {
            sessions.push((session, shared_delivery(&message, &sub)));
        }
        if self.config.queue_full == QueueFullPolicy::Refuse && message.qos != QoS::AtMostOnce {
            let limits = self.queue_limits();
            let full = sessions
                .iter()
                .filter(|(s, o)| !s.state.lock().has_room(o, &limits))
                .count();
            if full > 0 {
                self.metrics
                    .dropped
                    .with_label_values(&["queue_full_refused"])
                    .inc();
                return Err(ReasonCode::QUOTA_EXCEEDED);
            }
        }
        let n = sessions.len();
        for (session, out) in sessions {
            self.deliver(&session, out);
        }
        Ok(n)
    }

    /// One member of every shared group whose filter matches `topic`, with its session:
    /// round robin among connected members. With `leaving`, only the groups that client is
    /// in, and never that client (its deliveries move to another connected member).
    fn shared_targets(
        &self,
        topic: &str,
        leaving: Option<&Arc<str>>,
    ) -> Vec<(Arc<Session>, Subscription)> {
        let shared = self.shared.read();
        let sessions = self.sessions.lock();
        let connected = |c: &Arc<str>| {
            sessions
                .get(c)
                .is_some_and(|s| s.state.lock().connection.is_some())
        };
        let mut out = Vec::new();
        shared.for_each_match(topic, |_, g| {
            if leaving.is_some_and(|l| !g.members.iter().any(|(c, _)| c == l)) {
                return;
            }
            let n = g.members.len();
            if n == 0 {
                return;
            }
            let start = g.next.fetch_add(1, Ordering::Relaxed);
            let candidates = (0..n)
                .map(|i| &g.members[(start + i) % n])
                .filter(|(c, _)| Some(c) != leaving);
            let pick = candidates.clone().find(|(c, _)| connected(c));
            // With nobody connected a message still goes to a member's session (queued);
            // a departing member's messages only move to a connected one.
            let pick = if leaving.is_none() {
                pick.or_else(|| candidates.clone().next())
            } else {
                pick
            };
            if let Some((c, sub)) = pick
                && let Some(s) = sessions.get(c)
            {
                out.push((s.clone(), *sub));
            }
        });
        out
    }

    /// Queues one delivery for a session and wakes its connection.
    pub fn deliver(&self, session: &Session, out: Outgoing) {
        let limits = self.queue_limits();
        let result = self.with_state(session, |st| st.enqueue(out, &limits));
        match result {
            Enqueued::Queued => {}
            Enqueued::DroppedOldest(n) => self
                .metrics
                .dropped
                .with_label_values(&["queue_full_oldest"])
                .inc_by(n),
            Enqueued::Refused => self
                .metrics
                .dropped
                .with_label_values(&["queue_full"])
                .inc(),
        }
        session.wake.notify_one();
    }

    fn queue_limits(&self) -> QueueLimits {
        QueueLimits {
            messages: self.config.max_queued_messages,
            bytes: self.config.max_queued_bytes,
            drop_oldest: self.config.queue_full == QueueFullPolicy::DropOldest,
        }
    }

    /// Hands the in-flight messages of a departing shared-subscription member to other
    /// members of its groups.
    pub fn redistribute(&self, session: &Session, pending: Vec<Outgoing>) {
        // A work queue's message goes back to its queue (its receipt dropped here), for
        // any of the queue's consumers.
        for out in pending.into_iter().filter(|o| o.receipt.is_none()) {
            for (target, sub) in self.shared_targets(&out.message.topic, Some(&session.client_id)) {
                self.deliver(&target, shared_delivery(&out.message, &sub));
            }
        }
    }

    /// Ends sessions whose expiry passed, refreshes the in-flight gauge and takes the wills
    /// and delayed publishes that fell due, with their store keys.
    fn tick(&self, now: Instant) -> Vec<(Arc<Message>, Vec<u8>)> {
        let mut due = Vec::new();
        let expired: Vec<Arc<str>> = {
            let sessions = self.sessions.lock();
            let inflight: usize = sessions
                .values()
                .map(|s| s.state.lock().inflight.len())
                .sum();
            self.metrics.inflight.set(inflight as i64);
            sessions
                .values()
                .filter(|s| {
                    let st = s.state.lock();
                    st.connection.is_none()
                        && st.expiry_secs != u32::MAX
                        && st.disconnected_at.is_some_and(|t| {
                            now.duration_since(t) >= Duration::from_secs(u64::from(st.expiry_secs))
                        })
                })
                .map(|s| s.client_id.clone())
                .collect()
        };
        {
            let mut wills = self.wills.lock();
            // A will is due at its delay, or when its session ends, whichever is first.
            let ids: Vec<Arc<str>> = wills
                .iter()
                .filter(|(c, (at, _))| *at <= now || expired.contains(c))
                .map(|(c, _)| c.clone())
                .collect();
            for c in ids {
                if let Some((_, m)) = wills.remove(&c) {
                    due.push((m, stored::will_key(&c)));
                }
            }
        }
        {
            let wall = stored::now_wall_ms();
            let mut delayed = self.delayed.lock();
            while let Some(entry) = delayed.first_entry() {
                if entry.key().0 > wall {
                    break;
                }
                let (key, m) = entry.remove();
                let size = (m.topic.len() + m.payload.len()) as u64;
                self.delayed_bytes.fetch_sub(size, Ordering::Relaxed);
                due.push((m, key));
            }
        }
        for c in expired {
            self.end_session(&c);
        }
        due
    }

    /// Closes the connections a ban added since `seen` covers (as an operator's
    /// disconnect: MQTT 5 DISCONNECT 0x98). Returns the bans' generation now.
    pub fn close_banned(&self, seen: u64) -> u64 {
        let generation = self.security.bans_generation();
        if generation == seen {
            return generation;
        }
        let sessions: Vec<Arc<Session>> = self.sessions.lock().values().cloned().collect();
        for s in sessions {
            let st = s.state.lock();
            let Some(link) = st.connection.as_ref() else {
                continue;
            };
            let info = &link.info;
            let ip = info.peer.map(|p| p.ip());
            if self
                .security
                .connection_banned(&s.client_id, info.username.as_deref(), ip)
            {
                info.evicted
                    .store(ReasonCode::ADMINISTRATIVE_ACTION.0, Ordering::Release);
                link.kick.notify_one();
                self.metrics.errors.with_label_values(&["banned"]).inc();
                tracing::info!(client_id = %s.client_id, "connection closed: banned");
            }
        }
        generation
    }

    /// Drops the subscriptions of `session` that `who` (with its own `rules`) may no longer
    /// make, as the ACL reads now; returns how many. Run when the ACL changes and when a
    /// client resumes a session.
    pub fn recheck_subscriptions(
        &self,
        session: &Session,
        who: &Who,
        rules: Option<&[AclRule]>,
    ) -> usize {
        let own = rules.unwrap_or_default();
        if own.is_empty() && self.security.acl_is_open() {
            return 0;
        }
        let filters: Vec<String> = session.state.lock().subscriptions.keys().cloned().collect();
        let mut dropped = 0;
        for raw in filters {
            let Ok(parsed) = parse_filter(&raw, &self.limits) else {
                continue;
            };
            if !self
                .security
                .allows_with(own, who, Access::Subscribe(parsed.filter))
            {
                self.unsubscribe(session, &raw);
                self.metrics
                    .errors
                    .with_label_values(&["subscription_revoked"])
                    .inc();
                tracing::info!(client_id = %session.client_id, filter = raw, "subscription dropped: the ACL no longer allows it");
                dropped += 1;
            }
        }
        if dropped > 0 {
            self.save_session(session);
        }
        dropped
    }

    /// After an ACL change (its generation moved from `seen.0`), re-checks the
    /// subscriptions of every session (one without a connection as its last connection
    /// made them; again when it is resumed); after a user was deleted (`seen.1`), closes
    /// that user's connections ("not authorized", 0x87). Returns the generations now.
    pub fn revoke(&self, seen: (u64, u64)) -> (u64, u64) {
        let now = (
            self.security.acl_generation(),
            self.security.users_generation(),
        );
        if now == seen {
            return now;
        }
        let sessions: Vec<Arc<Session>> = self.sessions.lock().values().cloned().collect();
        for s in sessions {
            let (link, last, owner) = {
                let st = s.state.lock();
                (
                    st.connection
                        .as_ref()
                        .map(|l| (l.info.clone(), l.kick.clone())),
                    st.last_connection.clone(),
                    st.owner.clone(),
                )
            };
            let Some((info, kick)) = link else {
                if now.0 != seen.0 {
                    // Restored from the store, a session knows only its owner.
                    let who = Who {
                        username: last
                            .as_ref()
                            .and_then(|i| i.principal.as_deref())
                            .or(owner.as_deref()),
                        client_id: &s.client_id,
                        ip: last
                            .as_ref()
                            .and_then(|i| i.peer.map(|p| p.ip().to_canonical())),
                    };
                    let rules = last.as_ref().and_then(|i| i.acl_rules.as_deref());
                    self.recheck_subscriptions(&s, &who, rules);
                }
                continue;
            };
            if now.1 != seen.1
                && info.account
                && info
                    .principal
                    .as_deref()
                    .is_some_and(|p| !self.security.has_user(p))
            {
                info.evicted
                    .store(ReasonCode::NOT_AUTHORIZED.0, Ordering::Release);
                kick.notify_one();
                tracing::info!(client_id = %s.client_id, "connection closed: its user was deleted");
                continue;
            }
            if now.0 != seen.0 {
                let who = Who {
                    username: info.principal.as_deref(),
                    client_id: &s.client_id,
                    ip: info.peer.map(|p| p.ip().to_canonical()),
                };
                self.recheck_subscriptions(&s, &who, info.acl_rules.as_deref());
            }
        }
        now
    }

    /// Closes the connections whose credentials (tokens) stopped being good by `now`,
    /// with "not authorized" (MQTT 5 DISCONNECT 0x87).
    pub fn close_expired(&self, now: SystemTime) {
        let due: Vec<Arc<str>> = {
            let mut expiries = self.expiries.lock();
            let mut due = Vec::new();
            while expiries.first().is_some_and(|(t, _)| *t <= now) {
                due.extend(expiries.pop_first().map(|(_, client)| client));
            }
            due
        };
        for client in due {
            let Some(s) = self.sessions.lock().get(&client).cloned() else {
                continue;
            };
            let st = s.state.lock();
            if let Some(link) = st.connection.as_ref()
                && link.info.expires_at.is_some_and(|t| t <= now)
            {
                link.info
                    .evicted
                    .store(ReasonCode::NOT_AUTHORIZED.0, Ordering::Release);
                link.kick.notify_one();
                tracing::info!(client_id = %client, "connection closed: its token expired");
            }
        }
    }

    /// Publishes wills and delayed publishes that fell due, ends sessions whose expiry
    /// passed and refreshes the in-flight gauge. Called about once a second by the
    /// frontend. A due message leaves the store only once it is routed.
    pub async fn housekeep(&self, now: Instant) {
        for (m, key) in self.tick(now) {
            self.publish_stored(m).await;
            self.push_op(StateOp::Delete(key));
        }
        let _ = self.sync_durable();
    }

    /// Routes a message the broker publishes itself (a will, a delayed publish), first
    /// appending it to the journal when it must be kept, so that deliveries to durable
    /// sessions can refer to it like to any client's message.
    pub async fn publish_stored(&self, mut message: Arc<Message>) -> usize {
        // Wills and delayed publishes were received long before they are released:
        // delivery latency counts from now.
        Arc::make_mut(&mut message).received = Instant::now();
        if let Some(stream) = &self.store
            && (message.qos != QoS::AtMostOnce || message.retain)
        {
            // Like a client's messages, by the same rule: the broker's own publish under
            // one topic stay in one partition, in order.
            let p = stream.partition_for_key(message.topic.as_bytes());
            let appended = match stream.get(p) {
                Some(partition) => {
                    store::append(partition, || Ok(store::batch([&*message])?)).await
                }
                None => Err(StoreError::UnknownPartition {
                    stream: stream.name().to_string(),
                    partition: p,
                }),
            };
            match appended {
                Ok(a) => Arc::make_mut(&mut message).stored = Some((p, a.base_offset)),
                Err(e) => {
                    self.metrics
                        .errors
                        .with_label_values(&["store_failed"])
                        .inc();
                    tracing::error!(topic = %message.topic, error = %e, "broker message not stored; routed anyway");
                }
            }
        }
        self.publish(message)
    }
}

/// The delivery of `message` through a shared subscription `sub`.
/// A delayed publish: its store key and the message to publish when due.
type DelayedPublish = (Vec<u8>, Arc<Message>);

/// Messages referenced by recovered deliveries, read from the journal once each.
struct StoredMessages {
    store: Option<Arc<StreamHandles>>,
    now: Instant,
    found: HashMap<(u32, u64), Option<Arc<Message>>>,
    placeholder: Option<Arc<Message>>,
    /// Whether the node is stopping (a wait for a partition's leader then ends).
    stopping: Shutdown,
}

/// How often recovery logs that it still waits for a partition of the message store.
const RECOVERY_WAIT_LOG_EVERY: Duration = Duration::from_secs(10);

impl StoredMessages {
    fn new(store: Option<Arc<StreamHandles>>, now: Instant, stopping: Shutdown) -> Self {
        StoredMessages {
            store,
            now,
            found: HashMap::new(),
            placeholder: None,
            stopping,
        }
    }

    /// The message at `offset` of `partition` (`None`: expired, or no longer in the
    /// journal), reading from there on a miss. Runs on a blocking thread at start-up, so
    /// it waits for the journal read in place: while the partition has no leader (in a
    /// cluster, an election, or a majority of its copies down) it waits for one, as a
    /// publish would, rather than take the delivery for gone; an error only when the node
    /// stops meanwhile.
    fn get(&mut self, partition: u32, offset: u64) -> Result<Option<Arc<Message>>, StateError> {
        if let Some(m) = self.found.get(&(partition, offset)) {
            return Ok(m.clone());
        }
        let Some(log) = self.store.as_ref().and_then(|s| s.get(partition)) else {
            return Ok(None);
        };
        // Deliveries mostly refer to consecutive offsets: one read of about 1 MiB resolves
        // thousands of them.
        let runtime = tokio::runtime::Handle::current();
        let mut told: Option<Instant> = None;
        let read = loop {
            match runtime.block_on(log.read(offset, 1 << 20)) {
                Err(e @ (StoreError::Unavailable(_) | StoreError::NotLeader { .. })) => {
                    if self.stopping.is_set() {
                        return Err(StateError(format!(
                            "stopped while waiting for partition {partition} of the message store: {e}"
                        )));
                    }
                    if told.is_none_or(|at| at.elapsed() >= RECOVERY_WAIT_LOG_EVERY) {
                        told = Some(Instant::now());
                        tracing::warn!(partition, offset, error = %e, "stored deliveries wait for their partition of the message store");
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(StoreError::Closed) => {
                    return Err(StateError("the journal closed during recovery".into()));
                }
                other => break other,
            }
        };
        match read {
            Ok(batches) => {
                for b in batches {
                    let Ok(records) = b.records() else { continue };
                    for r in records.flatten() {
                        let m = store::message_of(&r, self.now).map(|mut m| {
                            m.stored = Some((partition, r.offset));
                            Arc::new(m)
                        });
                        self.found.insert((partition, r.offset), m);
                    }
                }
            }
            Err(e) => {
                tracing::warn!(partition, offset, error = %e, "stored delivery refers to an unreadable message");
            }
        }
        Ok(self
            .found
            .entry((partition, offset))
            .or_insert(None)
            .clone())
    }

    /// A stand-in for a delivery whose PUBREL is all that is left to send.
    fn placeholder(&mut self) -> Arc<Message> {
        self.placeholder
            .get_or_insert_with(|| {
                Arc::new(Message {
                    topic: String::new(),
                    payload: bytes::Bytes::new(),
                    qos: QoS::ExactlyOnce,
                    retain: false,
                    properties: crate::message::forwarded(Default::default()),
                    expires_at: None,
                    publisher: None,
                    stored: None,
                    received: Instant::now(),
                })
            })
            .clone()
    }
}

fn shared_delivery(message: &Arc<Message>, sub: &Subscription) -> Outgoing {
    Outgoing {
        message: message.clone(),
        qos: message.qos.min(sub.options.qos),
        retain: sub.options.retain_as_published && message.retain,
        subscription_ids: sub.id.into_iter().collect(),
        shared: true,
        seq: 0,
        receipt: None,
    }
}
