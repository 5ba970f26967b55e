//! Work queues over journal streams: queue `q` is stream `agent.queue.q`, one partition
//! per priority level, one record per message (its key the message's key, its value the
//! JSON [`Envelope`]). Competing consumers fetch messages on leases ([`crate::queue`]);
//! what each level has finished is kept in the node's state store, so a restart delivers
//! again only what was not acknowledged.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use strata_batch::{BatchBuilder, now_ms};
use strata_frontend::seams::{Partition, StateOp, Storage, StoreError};
use tokio::sync::Notify;

use crate::error::AgentError;
use crate::metrics::AgentMetrics;
use crate::queue::{Delivery, LEVELS, LeaseError, Mark, Queue, Slot};
use crate::space::Space;
use crate::storage::{Classes, StorageClass, conflict};
use crate::topics::Topics;

/// Shortest lease, in milliseconds: a shorter one would hand a message to a second
/// consumer while the first still works on it.
pub const MIN_LEASE_MS: i64 = 100;

/// Limits and defaults of the queues of a node.
#[derive(Debug, Clone)]
pub struct QueueLimits {
    /// Most queues a node keeps open.
    pub max_queues: usize,
    /// Most messages one queue spans, from the oldest not done to the newest; a send past
    /// it is refused (429).
    pub max_depth: u64,
    /// Deliveries after which a message is dead-lettered.
    pub max_deliveries: u32,
    /// Lease of a fetch that names none, in milliseconds.
    pub default_lease_ms: i64,
    /// Longest lease, in milliseconds.
    pub max_lease_ms: i64,
    /// Longest long-poll, in milliseconds.
    pub max_wait_ms: i64,
    /// How long an idempotency key is remembered, in milliseconds.
    pub dedup_window_ms: i64,
}

impl Default for QueueLimits {
    fn default() -> Self {
        QueueLimits {
            max_queues: 100_000,
            max_depth: 100_000,
            max_deliveries: 5,
            default_lease_ms: 30_000,
            max_lease_ms: 12 * 3600 * 1000,
            max_wait_ms: 50_000,
            dedup_window_ms: 5 * 60 * 1000,
        }
    }
}

/// A message as stored: the record's value.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    /// What the sender sent.
    pub body: serde_json::Value,
    /// Tags, for consumers that route on them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// When it was sent, milliseconds since the epoch.
    pub sent_ms: i64,
    /// When it expires unread, if it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_ms: Option<i64>,
    /// Not delivered before this time (delayed delivery), if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before_ms: Option<i64>,
    /// Where the body is when it was too large to keep in the message (claim-check); the
    /// body is then null.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<crate::blobs::Claim>,
}

/// A message handed to a consumer.
#[derive(Debug, Clone, Serialize)]
pub struct Fetched {
    /// The message's id: `<priority level>-<offset>`.
    pub id: String,
    /// The lease: what acknowledges, rejects or extends it.
    pub lease: String,
    /// When the lease lapses, milliseconds since the epoch.
    pub lease_until_ms: i64,
    /// How many times it has been handed out, this one included.
    pub attempt: u32,
    /// Priority level (0 most urgent).
    pub priority: u8,
    /// The message's key, if it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// What was stored.
    #[serde(flatten)]
    pub envelope: Envelope,
}

/// The dead-letter queue of queue `name`.
pub fn dead_letter_queue(name: &str) -> String {
    format!("_dlq-{name}")
}

fn is_dead_letter_queue(name: &str) -> bool {
    name.starts_with("_dlq-")
}

/// Bytes read ahead at once when a fetch reads the messages it hands out (consecutive ones
/// come from one read: one request, when the partition is led by another node).
const READ_AHEAD: usize = 256 * 1024;

/// Batches one fetch read, per level: the messages it hands out are mostly consecutive.
#[derive(Default)]
struct ReadAhead([Vec<strata_batch::Batch>; LEVELS]);

impl ReadAhead {
    /// What `slot` of `q` holds, reading ahead when the batches read so far do not hold
    /// it: `None` when it is no longer stored, `Some(None)` for a marker (a replicated
    /// partition's leader change takes an offset: never a message), the record otherwise.
    async fn record_at(
        &mut self,
        q: &Open,
        slot: Slot,
    ) -> Result<Option<Option<strata_batch::Record>>, StoreError> {
        let level = usize::from(slot.level);
        let held = &mut self.0[level];
        let holds = |b: &strata_batch::Batch| {
            b.base_offset() <= slot.offset && slot.offset <= b.last_offset()
        };
        if !held.iter().any(holds) {
            *held = match q.levels[level].read(slot.offset, READ_AHEAD).await {
                Ok(batches) if batches.is_empty() => {
                    // At or past the end: the ends known were ahead of the partition (it
                    // is not what it was). Not taken for gone: read again.
                    *q.known_ends.lock() = None;
                    return Err(StoreError::Unavailable(format!(
                        "{}/{level}: offset {} is not readable yet",
                        q.name, slot.offset
                    )));
                }
                Ok(batches) => batches,
                Err(StoreError::OffsetOutOfRange { .. }) => return Ok(None),
                Err(e) => return Err(e),
            };
        }
        if held.iter().any(|b| holds(b) && b.header().control) {
            return Ok(Some(None));
        }
        Ok(held
            .iter()
            .filter(|b| holds(b))
            .filter_map(|b| b.records().ok())
            .flatten()
            .filter_map(Result::ok)
            .find(|r| r.offset == slot.offset)
            .map(Some))
    }
}

/// The record of the message at `slot` of `q`, if it is still stored.
async fn record_at(q: &Open, slot: Slot) -> Result<Option<strata_batch::Record>, StoreError> {
    // The batch holding the offset (a read returns at least one whole batch): not the
    // 64 KiB after it.
    match q.levels[usize::from(slot.level)].read(slot.offset, 1).await {
        Ok(batches) => Ok(batches
            .iter()
            .filter_map(|b| b.records().ok())
            .flatten()
            .filter_map(Result::ok)
            .find(|r| r.offset == slot.offset)),
        Err(StoreError::OffsetOutOfRange { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// How long the ends a queue read serve: what another writer appends to its streams (a
/// Kafka client) is seen within this, its own sends at once.
const ENDS_FRESH: Duration = Duration::from_millis(200);

/// The stream of queue `name`.
pub fn stream_name(name: &str) -> String {
    format!("agent.queue.{name}")
}

/// Whether `name` may name a queue: 1 to 160 characters of `[A-Za-z0-9_-]` (clients'
/// names are at most 128: the frontend's own add a prefix).
pub fn valid_name(name: &str) -> bool {
    (1..=160).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Key of a level's mark in the state space.
fn mark_key(queue: &str, level: usize) -> Vec<u8> {
    format!("m/{queue}/{level}").into_bytes()
}

/// Key of an idempotency key of a queue.
fn dedup_key(queue: &str, key: &str) -> Vec<u8> {
    format!("i/{queue}/{key}").into_bytes()
}

fn bad_name() -> AgentError {
    AgentError::bad_request(
        "bad_name",
        "a queue name is 1 to 128 characters of [A-Za-z0-9_-]",
    )
}

/// One open queue.
struct Open {
    name: String,
    levels: Vec<Arc<dyn Partition>>,
    state: Mutex<Queue>,
    /// Idempotency keys seen: the message id they stored and when.
    dedup: Mutex<HashMap<String, (String, i64)>>,
    /// Held by sends with an idempotency key, so two with the same key store one message.
    sending: tokio::sync::Mutex<()>,
    /// Held while marks are written, so a later write never carries an older mark.
    marking: tokio::sync::Mutex<()>,
    /// Each level's end as last read, and when ([`Open::ends`]).
    known_ends: Mutex<Option<([u64; LEVELS], std::time::Instant)>>,
    /// Woken when a message may be ready: sent, nacked, or its lease lapsed.
    wake: Notify,
}

impl std::fmt::Debug for Open {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Open").field("name", &self.name).finish()
    }
}

impl Open {
    /// Where each level ends: as last read, for [`ENDS_FRESH`], moved by this node's own
    /// sends at once (in a cluster each read of another node's partition is a request).
    async fn ends(&self) -> Result<[u64; LEVELS], AgentError> {
        if let Some((ends, at)) = *self.known_ends.lock()
            && at.elapsed() < ENDS_FRESH
        {
            return Ok(ends);
        }
        let mut ends = [0; LEVELS];
        for (end, level) in ends.iter_mut().zip(&self.levels) {
            *end = level.offsets().await?.end;
        }
        let mut known = self.known_ends.lock();
        if let Some((sent, _)) = *known {
            // A send answered meanwhile may not be in what was read.
            for (end, sent) in ends.iter_mut().zip(sent) {
                *end = (*end).max(sent);
            }
        }
        *known = Some((ends, std::time::Instant::now()));
        Ok(ends)
    }

    /// This node appended to `level` up to `end`.
    fn appended(&self, level: usize, end: u64) {
        if let Some((ends, _)) = self.known_ends.lock().as_mut() {
            ends[level] = ends[level].max(end);
        }
    }
}

/// The work queues of a node.
#[derive(Debug)]
pub struct Queues {
    storage: Storage,
    space: Space,
    limits: QueueLimits,
    open: Mutex<HashMap<String, Arc<Open>>>,
    opening: tokio::sync::Mutex<()>,
    metrics: AgentMetrics,
    /// Where `delivery_failed` events go (topic `_failed-<queue>`).
    topics: Arc<Topics>,
    /// The storage classes new queues may be created in.
    classes: Classes,
}

impl Queues {
    /// Queues in `storage`, their marks in `space`, their failures told on `topics`.
    pub fn new(
        storage: Storage,
        space: Space,
        limits: QueueLimits,
        metrics: AgentMetrics,
        topics: Arc<Topics>,
        classes: Classes,
    ) -> Self {
        Queues {
            storage,
            space,
            limits,
            open: Mutex::new(HashMap::new()),
            opening: tokio::sync::Mutex::new(()),
            metrics,
            topics,
            classes,
        }
    }

    /// The storage classes new queues may be created in.
    pub fn classes(&self) -> &Classes {
        &self.classes
    }

    /// The limits in force.
    pub fn limits(&self) -> &QueueLimits {
        &self.limits
    }

    /// Queue `name`, opened when needed; its stream is created (in class `create`) only
    /// when `create` is set (a send): other requests for a queue that does not exist
    /// answer 404.
    async fn queue(
        &self,
        name: &str,
        create: Option<StorageClass>,
    ) -> Result<Arc<Open>, AgentError> {
        if !valid_name(name) {
            return Err(bad_name());
        }
        if let Some(q) = self.open.lock().get(name) {
            return Ok(q.clone());
        }
        let _one = self.opening.lock().await;
        if let Some(q) = self.open.lock().get(name) {
            return Ok(q.clone());
        }
        if self.open.lock().len() >= self.limits.max_queues {
            return Err(AgentError::full(
                "max_queues",
                format!("this node keeps at most {} queues", self.limits.max_queues),
            ));
        }
        let stream = stream_name(name);
        if create.is_none() && self.storage.catalog.stream(&stream).is_none() {
            return Err(AgentError::not_found(
                "unknown_queue",
                format!("no queue {name}: a send creates it"),
            ));
        }
        if let Some(class) = create {
            self.classes
                .ensure(&self.storage, &stream, LEVELS as u32, class)
                .await?;
        }
        if let Some(class) = self.class(name) {
            self.classes.usable(class)?;
        }
        let mut levels = Vec::with_capacity(LEVELS);
        for level in 0..LEVELS {
            levels.push(self.storage.partition(&stream, level as u32).await?);
        }
        let mut marks: [Mark; LEVELS] = Default::default();
        for (level, mark) in marks.iter_mut().enumerate() {
            if let Some(bytes) = self.space.get(&mark_key(name, level))? {
                *mark = serde_json::from_slice(&bytes).map_err(|e| {
                    AgentError::unavailable(format!("the state of queue {name} is corrupt: {e}"))
                })?;
            }
        }
        // A log that starts again below what the state remembers (a memory-class queue
        // after a restart of the node holding it) reuses offsets: marks past its end and
        // idempotency keys naming messages past it are of messages that are gone.
        let mut ends = [0u64; LEVELS];
        let mut stale = Vec::new();
        for (level, mark) in marks.iter_mut().enumerate() {
            ends[level] = levels[level].offsets().await?.end;
            let past = mark.floor > ends[level]
                || mark
                    .done
                    .last()
                    .is_some_and(|&(_, last)| last >= ends[level]);
            if past {
                tracing::warn!(
                    queue = name,
                    level,
                    "the queue's log starts again: its marks are reset"
                );
                *mark = Mark::default();
                stale.push(StateOp::Delete(mark_key(name, level)));
            }
        }
        let gone = |id: &str| {
            id.split_once('-')
                .and_then(|(l, o)| Some((l.parse::<usize>().ok()?, o.parse::<u64>().ok()?)))
                .is_some_and(|(l, o)| l < LEVELS && o >= ends[l])
        };
        let now = now_ms();
        let mut dedup = HashMap::new();
        let prefix = format!("i/{name}/").into_bytes();
        for (key, value) in self.space.scan_prefix(&prefix)? {
            let Ok((id, at)) = serde_json::from_slice::<(String, i64)>(&value) else {
                stale.push(StateOp::Delete(key));
                continue;
            };
            if now - at > self.limits.dedup_window_ms || gone(&id) {
                stale.push(StateOp::Delete(key));
            } else {
                let k = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
                dedup.insert(k, (id, at));
            }
        }
        if let Err(e) = self.space.write(stale).await {
            tracing::warn!(queue = name, error = %e.message, "cannot forget a queue's stale state");
        }
        let q = Arc::new(Open {
            name: name.to_string(),
            levels,
            state: Mutex::new(Queue::restore(marks, self.limits.max_deliveries)),
            dedup: Mutex::new(dedup),
            sending: tokio::sync::Mutex::new(()),
            marking: tokio::sync::Mutex::new(()),
            known_ends: Mutex::new(Some((ends, std::time::Instant::now()))),
            wake: Notify::new(),
        });
        self.open.lock().insert(name.to_string(), q.clone());
        self.metrics.queues.set(self.open.lock().len() as i64);
        Ok(q)
    }

    /// Creates queue `name` in `class` (the node's default when none) unless it exists:
    /// whether this call created it. A queue that exists in another class than the one
    /// asked for answers 409 `storage_conflict`.
    pub async fn create(
        &self,
        name: &str,
        class: Option<StorageClass>,
    ) -> Result<bool, AgentError> {
        if !valid_name(name) {
            return Err(bad_name());
        }
        if class.is_none() && self.open.lock().contains_key(name) {
            return Ok(false);
        }
        let picked = self.classes.pick(class)?;
        let existed = self.storage.catalog.stream(&stream_name(name)).is_some();
        // Opened (the node's bound on queues checked) before anything is created.
        self.queue(name, Some(picked)).await?;
        match self.class(name) {
            Some(kept) if class.is_some() && kept != picked => Err(conflict(kept.name())),
            _ => Ok(!existed),
        }
    }

    /// The class a send creates queue `name` in: a dead-letter queue's is its queue's,
    /// any other's the node's default.
    fn class_for_new(&self, name: &str) -> Result<StorageClass, AgentError> {
        match name.strip_prefix("_dlq-").and_then(|q| self.class(q)) {
            Some(class) => self.classes.usable(class).map(|()| class),
            None => self.classes.pick(None),
        }
    }

    /// The storage class queue `name` keeps its messages in (`None`: no such queue).
    pub fn class(&self, name: &str) -> Option<StorageClass> {
        let info = self.storage.catalog.stream(&stream_name(name))?;
        StorageClass::of(&info)
    }

    /// Stores a message in queue `name` at priority `level`: its id, and whether an
    /// earlier send with the same idempotency key stored it already.
    pub async fn send(
        &self,
        name: &str,
        level: u8,
        key: Option<&str>,
        envelope: Envelope,
        idempotency_key: Option<&str>,
    ) -> Result<(String, bool), AgentError> {
        self.send_large(name, level, key, envelope, idempotency_key, None)
            .await
    }

    /// [`Queues::send`] of a message whose body, `large.1`, is kept on its own in
    /// `large.0` (claim-check) once the queue has room for it: a refused send stores no
    /// body.
    pub async fn send_large(
        &self,
        name: &str,
        level: u8,
        key: Option<&str>,
        mut envelope: Envelope,
        idempotency_key: Option<&str>,
        large: Option<(&crate::blobs::Blobs, &[u8])>,
    ) -> Result<(String, bool), AgentError> {
        let level = usize::from(level).min(LEVELS - 1);
        let q = self.queue(name, Some(self.class_for_new(name)?)).await?;
        let _one = match idempotency_key {
            Some(k) => {
                let held = q.sending.lock().await;
                let seen = q.dedup.lock().get(k).cloned();
                if let Some((id, at)) = seen
                    && now_ms() - at <= self.limits.dedup_window_ms
                {
                    self.metrics.duplicates.inc();
                    return Ok((id, true));
                }
                Some(held)
            }
            None => None,
        };
        let ends = q.ends().await?;
        // The span from the oldest message not done bounds what the queue's state holds.
        let window = q.state.lock().window(ends);
        if window >= self.limits.max_depth {
            return Err(AgentError::too_many(
                "queue_full",
                format!(
                    "queue {name} spans {window} messages from its oldest not done, its limit \
                     is {}",
                    self.limits.max_depth
                ),
            ));
        }
        if idempotency_key.is_some() {
            let now = now_ms();
            let window_ms = self.limits.dedup_window_ms;
            let mut dedup = q.dedup.lock();
            dedup.retain(|_, (_, seen)| now - *seen <= window_ms);
            let keys = dedup.len() as u64;
            if keys >= self.limits.max_depth {
                return Err(AgentError::too_many(
                    "dedup_full",
                    format!("queue {name} remembers {keys} idempotency keys already"),
                ));
            }
        }
        if let Some((blobs, body)) = large {
            envelope.claim = Some(blobs.put(body).await?);
            envelope.body = serde_json::Value::Null;
            self.metrics.claims.inc();
        }
        let value = serde_json::to_vec(&envelope)
            .map_err(|e| AgentError::bad_request("bad_body", e.to_string()))?;
        let mut batch = BatchBuilder::new();
        batch.push(envelope.sent_ms, key.map(str::as_bytes), Some(&value), &[]);
        let batch = batch
            .build()
            .map_err(|e| AgentError::bad_request("bad_body", e.to_string()))?;
        let appended = q.levels[level].append(batch).await?;
        q.appended(level, appended.last_offset + 1);
        let id = format!("{level}-{}", appended.base_offset);
        if let Some(k) = idempotency_key {
            let at = now_ms();
            let stored = serde_json::to_vec(&(&id, at)).unwrap_or_default();
            self.space.put(dedup_key(name, k), stored).await?;
            let mut dedup = q.dedup.lock();
            dedup.retain(|_, (_, seen)| at - *seen <= self.limits.dedup_window_ms);
            dedup.insert(k.to_string(), (id.clone(), at));
        }
        self.metrics.sends.inc();
        // One message: one waiting consumer (a woken fetch that gives up passes the
        // notification on), not every consumer waiting on the queue.
        q.wake.notify_one();
        Ok((id, false))
    }

    /// Hands out up to `max` messages of queue `name` on leases of `lease_ms`, waiting up
    /// to `wait_ms` for one when none is ready.
    pub async fn fetch(
        &self,
        name: &str,
        max: usize,
        lease_ms: Option<i64>,
        wait_ms: i64,
    ) -> Result<Vec<Fetched>, AgentError> {
        let lease_ms = lease_ms
            .unwrap_or(self.limits.default_lease_ms)
            .clamp(MIN_LEASE_MS, self.limits.max_lease_ms);
        let wait_ms = wait_ms.clamp(0, self.limits.max_wait_ms);
        let q = self.queue(name, None).await?;
        let deadline = tokio::time::Instant::now() + Duration::from_millis(wait_ms as u64);
        loop {
            let woken = q.wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let ends = q.ends().await?;
            let now = now_ms();
            let given = {
                let mut state = q.state.lock();
                self.expire(&q, &mut state, now);
                state.fetch(ends, max.max(1), now, lease_ms)
            };
            if !given.is_empty() {
                let fetched = self.read(&q, given, now).await?;
                if !fetched.is_empty() {
                    return Ok(fetched);
                }
                // Every one expired or was gone: look again.
                continue;
            }
            let next_due = q.state.lock().next_due_ms();
            let now_instant = tokio::time::Instant::now();
            if now_instant >= deadline {
                return Ok(Vec::new());
            }
            let until = match next_due {
                Some(due) => deadline.min(
                    now_instant + Duration::from_millis(due.saturating_sub(now).max(1) as u64),
                ),
                None => deadline,
            };
            tokio::select! {
                _ = &mut woken => {}
                _ = tokio::time::sleep_until(until) => {}
            }
        }
    }

    /// Ends the lapsed leases of every open queue, waking the consumers waiting on a
    /// queue whose messages came back: run every second or so.
    pub async fn sweep(&self) {
        let open: Vec<Arc<Open>> = self.open.lock().values().cloned().collect();
        let now = now_ms();
        for q in open {
            let due = {
                let mut state = q.state.lock();
                self.expire(&q, &mut state, now);
                state.next_due_ms().is_some_and(|at| at <= now)
            };
            if due {
                // A delayed or nacked message fell due: a send wakes one waiting
                // consumer, which may have gone since, so every waiter looks again.
                q.wake.notify_waiters();
            }
            // Idempotency keys past their window go, from memory and from the store.
            let window_ms = self.limits.dedup_window_ms;
            let stale: Vec<StateOp> = {
                let mut dedup = q.dedup.lock();
                let gone: Vec<String> = dedup
                    .iter()
                    .filter(|(_, (_, seen))| now - *seen > window_ms)
                    .map(|(k, _)| k.clone())
                    .collect();
                gone.iter()
                    .map(|k| {
                        dedup.remove(k);
                        StateOp::Delete(dedup_key(&q.name, k))
                    })
                    .collect()
            };
            if let Err(e) = self.space.write(stale).await {
                tracing::warn!(queue = q.name, error = %e.message, "cannot forget idempotency keys");
            }
        }
    }

    /// Ends the lapsed leases of `q` (under its state's lock): whether messages went back
    /// to the queue.
    fn expire(&self, q: &Open, state: &mut Queue, now: i64) -> bool {
        let expired = state.expire(now);
        let lapsed = expired.redelivered.len() + expired.dead.len();
        if lapsed == 0 {
            return false;
        }
        self.metrics.lease_expiries.inc_by(lapsed as u64);
        // A dead-letter queue's own messages never die: they go back to it.
        if is_dead_letter_queue(&q.name) {
            for slot in state.take_dying() {
                state.requeue(slot, now);
            }
            q.wake.notify_waiters();
            return true;
        }
        let redelivered = !expired.redelivered.is_empty();
        if redelivered {
            q.wake.notify_waiters();
        }
        redelivered
    }

    /// Moves the messages that died in every open queue (handed out `max_deliveries`
    /// times) to the queue's dead-letter queue, `_dlq-<queue>`, and tells their sender
    /// with a `delivery_failed` event on topic `_failed-<queue>`; each is done in its queue
    /// only once stored there (a crash in between delivers it again, then it dies again:
    /// the copy is sent with an idempotency key, so it is stored once within the window).
    /// Run by the sweeper.
    pub async fn drain_dead(&self) {
        let open: Vec<Arc<Open>> = self.open.lock().values().cloned().collect();
        for q in open {
            let dying = q.state.lock().take_dying();
            for slot in dying {
                match self.dead_letter(&q, slot).await {
                    Ok(()) => {
                        q.state.lock().finish(slot);
                        if let Err(e) = self.keep_marks(&q, &[usize::from(slot.level)]).await {
                            tracing::warn!(queue = q.name, error = %e.message, "cannot keep a queue's mark");
                        }
                        self.metrics.dead_letters.inc();
                    }
                    Err(e) => {
                        tracing::warn!(queue = q.name, error = %e.message, "cannot dead-letter a message yet");
                        q.state.lock().retry(slot);
                    }
                }
            }
        }
    }

    /// Stores the message at `slot` of `q` in its dead-letter queue and publishes its
    /// `delivery_failed` event.
    async fn dead_letter(&self, q: &Open, slot: Slot) -> Result<(), AgentError> {
        let id = format!("{}-{}", slot.level, slot.offset);
        let record = record_at(q, slot).await?;
        let key = record
            .as_ref()
            .and_then(|r| r.key.as_ref())
            .map(|k| String::from_utf8_lossy(k).into_owned());
        let message = record
            .as_ref()
            .and_then(|r| r.value.as_deref())
            .and_then(|v| serde_json::from_slice::<Envelope>(v).ok());
        let Some(message) = message else {
            // Gone with retention, or not a message: nothing to keep.
            return Ok(());
        };
        let body = serde_json::json!({
            "queue": q.name, "id": id, "priority": slot.level, "key": key,
            "reason": "max_deliveries", "deliveries": self.limits.max_deliveries,
            "message": message,
        });
        let envelope = Envelope {
            body: body.clone(),
            tags: vec!["dead-letter".into()],
            sent_ms: now_ms(),
            expires_ms: None,
            not_before_ms: None,
            claim: None,
        };
        let dedup = format!("{}:{id}", q.name);
        self.send(
            &dead_letter_queue(&q.name),
            1,
            key.as_deref(),
            envelope,
            Some(&dedup),
        )
        .await?;
        self.failed(&q.name, body).await
    }

    /// Publishes a `delivery_failed` event about a message of queue `queue`.
    async fn failed(&self, queue: &str, data: serde_json::Value) -> Result<(), AgentError> {
        let event = crate::topics::Event {
            kind: Some("delivery_failed".into()),
            data,
            sent_ms: now_ms(),
        };
        let class = self.class(queue).unwrap_or(self.classes.default);
        self.topics
            .publish_in(&format!("_failed-{queue}"), &event, Some(class))
            .await
            .map(|_| ())
    }

    /// Up to `max` messages waiting in queue `name`'s dead-letter queue (not taken off it).
    pub async fn dead_letters(
        &self,
        name: &str,
        max: usize,
    ) -> Result<Vec<serde_json::Value>, AgentError> {
        let dlq = dead_letter_queue(name);
        if self.storage.catalog.stream(&stream_name(&dlq)).is_none() {
            return Ok(Vec::new());
        }
        let q = self.queue(&dlq, None).await?;
        let ends = q.ends().await?;
        let slots = q.state.lock().pending(ends, max);
        let mut out = Vec::with_capacity(slots.len());
        for slot in slots {
            let record = record_at(&q, slot).await?;
            if let Some(e) = record
                .and_then(|r| r.value)
                .and_then(|v| serde_json::from_slice::<Envelope>(&v).ok())
            {
                out.push(e.body);
            }
        }
        Ok(out)
    }

    /// Sends up to `max` messages of queue `name`'s dead-letter queue back to it, with
    /// their priority and key: how many.
    pub async fn redrive(&self, name: &str, max: usize) -> Result<usize, AgentError> {
        let dlq = dead_letter_queue(name);
        if self.storage.catalog.stream(&stream_name(&dlq)).is_none() {
            return Ok(0);
        }
        let taken = self.fetch(&dlq, max, Some(60_000), 0).await?;
        let mut moved = 0;
        for m in taken {
            let body = &m.envelope.body;
            let original = body
                .get("message")
                .cloned()
                .and_then(|v| serde_json::from_value::<Envelope>(v).ok());
            let Some(original) = original else {
                self.settle(&dlq, &m.lease, None).await?;
                continue;
            };
            let level = body
                .get("priority")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(1);
            let key = body.get("key").and_then(serde_json::Value::as_str);
            self.send(
                name,
                level.min(LEVELS as u64 - 1) as u8,
                key,
                original,
                None,
            )
            .await?;
            self.settle(&dlq, &m.lease, None).await?;
            moved += 1;
        }
        Ok(moved)
    }

    /// Reads the messages of `given`; those expired or no longer stored are finished.
    async fn read(
        &self,
        q: &Open,
        given: Vec<Delivery>,
        now: i64,
    ) -> Result<Vec<Fetched>, AgentError> {
        let mut out: Vec<Fetched> = Vec::with_capacity(given.len());
        let mut given = given.into_iter();
        let mut ahead = ReadAhead::default();
        while let Some(d) = given.next() {
            let level = usize::from(d.slot.level);
            let record = match ahead.record_at(q, d.slot).await {
                Ok(Some(None)) => {
                    // A leader's marker: done, as if never a slot of the queue.
                    if q.state.lock().ack(&d.lease).is_ok() {
                        let _ = self.keep_marks(q, &[level]).await;
                    }
                    continue;
                }
                Ok(record) => record.flatten(),
                Err(e) => {
                    // Nothing reaches the client: every lease of this fetch is given up.
                    let mut state = q.state.lock();
                    let leases = std::iter::once(d.lease)
                        .chain(given.map(|d| d.lease))
                        .chain(out.into_iter().map(|f| f.lease));
                    for lease in leases {
                        let _ = state.nack(&lease, now, 0);
                    }
                    q.wake.notify_waiters();
                    return Err(AgentError::from(e));
                }
            };
            let envelope = record.as_ref().and_then(|r| {
                serde_json::from_slice::<Envelope>(r.value.as_deref().unwrap_or_default()).ok()
            });
            let reason = match (&record, &envelope) {
                (None, _) => Some("gone"),
                (Some(_), Some(e)) if e.expires_ms.is_some_and(|t| t <= now) => Some("expired"),
                _ => None,
            };
            let id = format!("{level}-{}", d.slot.offset);
            if let Some(reason) = reason {
                // Expired, or gone with retention: its sender hears of it before it is
                // done here (a failure to tell gives it back, to try again).
                let data = serde_json::json!({"queue": q.name, "id": id, "reason": reason});
                if self.failed(&q.name, data).await.is_err() {
                    let _ = q.state.lock().nack(&d.lease, now, 1000);
                    continue;
                }
            }
            let Some(envelope) = envelope.filter(|_| reason.is_none()) else {
                // Expired, gone, or not a message: done, counted.
                let acked = q.state.lock().ack(&d.lease).is_ok();
                if acked {
                    self.metrics.expired.inc();
                    let _ = self.keep_marks(q, &[level]).await;
                }
                continue;
            };
            if let Some(at) = envelope.not_before_ms.filter(|&at| at > now) {
                // Delayed: back until its time, this delivery not counted.
                let _ = q.state.lock().defer(&d.lease, at);
                continue;
            }
            if d.attempt > 1 {
                self.metrics.redeliveries.inc();
            }
            self.metrics.deliveries.inc();
            out.push(Fetched {
                id: format!("{level}-{}", d.slot.offset),
                lease: d.lease,
                lease_until_ms: d.until_ms,
                attempt: d.attempt,
                priority: d.slot.level,
                key: record
                    .and_then(|r| r.key)
                    .map(|k| String::from_utf8_lossy(&k).into_owned()),
                envelope,
            });
        }
        Ok(out)
    }

    /// Stores what levels `levels` of `q` have finished, as its state says now: one write,
    /// after every earlier one of this queue.
    async fn keep_marks(&self, q: &Open, levels: &[usize]) -> Result<(), AgentError> {
        let _one = q.marking.lock().await;
        let marks: Vec<StateOp> = {
            let state = q.state.lock();
            levels
                .iter()
                .map(|&l| {
                    let mark = serde_json::to_vec(&state.mark(l)).unwrap_or_default();
                    StateOp::Put(mark_key(&q.name, l), mark)
                })
                .collect()
        };
        self.space.write(marks).await
    }

    /// Acknowledges every lease of `leases` (of queue `name`) at once, their marks kept in
    /// one write: the ids of the messages done, and the leases that were not (unknown,
    /// lapsed or settled already).
    pub async fn ack_many(
        &self,
        name: &str,
        leases: &[String],
    ) -> Result<(Vec<String>, Vec<String>), AgentError> {
        let q = self.queue(name, None).await?;
        let now = now_ms();
        let (mut done, mut refused) = (Vec::new(), Vec::new());
        let mut levels = [false; LEVELS];
        {
            let mut state = q.state.lock();
            self.expire(&q, &mut state, now);
            for lease in leases {
                match state.ack(lease) {
                    Ok(slot) => {
                        levels[usize::from(slot.level)] = true;
                        done.push(format!("{}-{}", slot.level, slot.offset));
                    }
                    Err(_) => refused.push(lease.clone()),
                }
            }
        }
        let levels: Vec<usize> = (0..LEVELS).filter(|&l| levels[l]).collect();
        if !levels.is_empty() {
            self.keep_marks(&q, &levels).await?;
        }
        self.metrics.acks.inc_by(done.len() as u64);
        Ok((done, refused))
    }

    /// Settles lease `lease` of queue `name`: acknowledged (done), or back to the queue
    /// after `delay_ms` (`nack`).
    pub async fn settle(
        &self,
        name: &str,
        lease: &str,
        nack: Option<i64>,
    ) -> Result<String, AgentError> {
        let q = self.queue(name, None).await?;
        let now = now_ms();
        let slot = {
            let mut state = q.state.lock();
            self.expire(&q, &mut state, now);
            let settled = match nack {
                None => state.ack(lease),
                Some(delay) => state.nack(lease, now, delay),
            };
            settled.map_err(lease_error)?
        };
        if nack.is_none() {
            self.keep_marks(&q, &[usize::from(slot.level)]).await?;
        }
        match nack {
            None => self.metrics.acks.inc(),
            Some(_) => {
                self.metrics.nacks.inc();
                q.wake.notify_one();
            }
        }
        Ok(format!("{}-{}", slot.level, slot.offset))
    }

    /// Takes back the message of lease `lease` of queue `name` as if it had not been
    /// handed out (it never reached its consumer): due again now, its delivery not
    /// counted.
    pub async fn release(&self, name: &str, lease: &str) -> Result<(), AgentError> {
        let q = self.queue(name, None).await?;
        let now = now_ms();
        q.state.lock().defer(lease, now).map_err(lease_error)?;
        q.wake.notify_one();
        Ok(())
    }

    /// Extends lease `lease` of queue `name` to `lease_ms` from now: its new end.
    pub async fn extend(&self, name: &str, lease: &str, lease_ms: i64) -> Result<i64, AgentError> {
        let q = self.queue(name, None).await?;
        let now = now_ms();
        let lease_ms = lease_ms.clamp(MIN_LEASE_MS, self.limits.max_lease_ms);
        let mut state = q.state.lock();
        self.expire(&q, &mut state, now);
        state.extend(lease, now, lease_ms).map_err(lease_error)
    }

    /// The queues open on this node, by name.
    pub fn open_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.open.lock().keys().cloned().collect();
        names.sort();
        names
    }

    /// Every queue the catalog knows (mailboxes and dead-letter queues included), with its
    /// storage class.
    pub fn catalog_queues(&self) -> Vec<(String, Option<String>)> {
        self.storage
            .catalog
            .streams()
            .into_iter()
            .filter_map(|info| {
                let name = info.name.strip_prefix("agent.queue.")?.to_string();
                let class = StorageClass::of(&info).map(|c| c.name().to_string());
                (stream_name(&name) == info.name).then_some((name, class))
            })
            .collect()
    }

    /// Whether queue `name` is open on this node.
    pub fn is_open(&self, name: &str) -> bool {
        self.open.lock().contains_key(name)
    }

    /// Messages not done and messages on a lease in queue `name`.
    pub async fn depth(&self, name: &str) -> Result<(u64, usize), AgentError> {
        let q = self.queue(name, None).await?;
        let ends = q.ends().await?;
        let mut state = q.state.lock();
        self.expire(&q, &mut state, now_ms());
        Ok((state.depth(ends), state.in_flight()))
    }
}

fn lease_error(e: LeaseError) -> AgentError {
    match e {
        LeaseError::Unknown => AgentError::not_found(
            "unknown_lease",
            "no such lease: never given, settled already, or lapsed (the message went back to \
             the queue)",
        ),
    }
}
