//! Work queues one frontend keeps and another reaches: the agent frontend's queues, which
//! MQTT clients publish to and consume from under a topic prefix (`queues/<name>`).
//!
//! The node makes one [`QueueLink`] per node and gives it to every frontend; the frontend
//! that keeps the queues attaches them ([`QueueLink::attach`]) once it serves, the others
//! reach them through it. A message taken from a queue travels with a [`Receipt`]: marked
//! done when the consumer acknowledged it, and acknowledged or handed back to the queue
//! when the last reference to it goes.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;

/// A message put in a work queue from another protocol.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueItem {
    /// The payload as the client sent it.
    pub payload: Vec<u8>,
    /// Priority level: 0 most urgent; `None` for the queue's normal level.
    pub priority: Option<u8>,
    /// Key, if the client gave one.
    pub key: Option<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Milliseconds the message may wait unread before it expires.
    pub ttl_ms: Option<i64>,
    /// A retried send with the same key is stored once.
    pub idempotency_key: Option<String>,
}

/// A message handed out on a lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leased {
    /// The message's id in its queue.
    pub id: String,
    /// What acknowledges, hands back or extends it.
    pub lease: String,
    /// How many times it has been handed out, this one included.
    pub attempt: u32,
    /// Priority level (0 most urgent).
    pub priority: u8,
    /// Key, if it has one.
    pub key: Option<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// The payload.
    pub payload: Vec<u8>,
}

/// Why a queue operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueErrorKind {
    /// A name no client may use.
    BadName,
    /// No such queue (yet: a send creates it).
    Unknown,
    /// The payload or a property is not acceptable.
    BadInput,
    /// Larger than the queue takes.
    TooLarge,
    /// The queue or the node is at a limit: try later.
    Full,
    /// The lease is unknown, lapsed or settled already.
    Lease,
    /// Storage failed.
    Unavailable,
}

/// A failed queue operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct QueueError {
    /// What kind of failure.
    pub kind: QueueErrorKind,
    /// What to tell the client.
    pub message: String,
}

/// The queues, as the frontend keeping them offers them.
#[async_trait]
pub trait WorkQueues: Send + Sync {
    /// Stores `item` in queue `queue` (created when missing); returns once it is kept.
    async fn send(&self, queue: &str, item: QueueItem) -> Result<(), QueueError>;
    /// Up to `max` messages on leases of `lease_ms`, waiting up to `wait_ms` for one.
    async fn fetch(
        &self,
        queue: &str,
        max: usize,
        lease_ms: i64,
        wait_ms: i64,
    ) -> Result<Vec<Leased>, QueueError>;
    /// The message is done.
    async fn ack(&self, queue: &str, lease: &str) -> Result<(), QueueError>;
    /// Back to the queue, for another consumer, now: its delivery counted.
    async fn nack(&self, queue: &str, lease: &str) -> Result<(), QueueError>;
    /// Back to the queue as if never handed out (it never reached the consumer): its
    /// delivery not counted.
    async fn release(&self, queue: &str, lease: &str) -> Result<(), QueueError>;
    /// The lease runs `lease_ms` from now.
    async fn extend(&self, queue: &str, lease: &str, lease_ms: i64) -> Result<(), QueueError>;
}

/// Where the queues are reached: the topic prefix they appear under and, once the frontend
/// keeping them serves, the queues. Cheap to clone.
#[derive(Clone, Default)]
pub struct QueueLink {
    prefix: Option<Arc<str>>,
    queues: Arc<OnceLock<Arc<dyn WorkQueues>>>,
}

impl fmt::Debug for QueueLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueLink")
            .field("prefix", &self.prefix)
            .field("attached", &self.queues.get().is_some())
            .finish()
    }
}

impl QueueLink {
    /// A link for queues that appear under topic `prefix` (ending in `/`).
    pub fn new(prefix: &str) -> Self {
        QueueLink {
            prefix: Some(Arc::from(prefix)),
            queues: Arc::default(),
        }
    }

    /// The prefix, when queues are linked at all.
    pub fn prefix(&self) -> Option<&str> {
        self.prefix.as_deref()
    }

    /// The queue topic `topic` names (`<prefix><name>`, the name non-empty and without
    /// `/`), if it names one.
    pub fn queue_of<'t>(&self, topic: &'t str) -> Option<&'t str> {
        let name = topic.strip_prefix(self.prefix.as_deref()?)?;
        (!name.is_empty() && !name.contains(['/', '+', '#'])).then_some(name)
    }

    /// Attaches the queues; a second attach is ignored.
    pub fn attach(&self, queues: Arc<dyn WorkQueues>) {
        let _ = self.queues.set(queues);
    }

    /// The queues, once attached.
    pub fn get(&self) -> Option<Arc<dyn WorkQueues>> {
        self.queues.get().cloned()
    }
}

/// A message taken from a queue, for as long as it is referenced. When the last reference
/// goes, the message is acknowledged if its consumer acknowledged it ([`done`]), handed
/// back with its delivery counted if it was sent to the consumer ([`sent`]), and handed
/// back as if never handed out otherwise (it never left the node: a full session queue, a
/// client that went away first), which also sets the consumer's `returned` flag.
///
/// [`done`]: Receipt::done
/// [`sent`]: Receipt::sent
pub struct Receipt {
    queues: Arc<dyn WorkQueues>,
    queue: String,
    lease: String,
    done: AtomicBool,
    sent: AtomicBool,
    returned: Option<Arc<AtomicBool>>,
    // Held while the message is out: bounds how many one consumer has at once.
    permit: parking_lot::Mutex<Option<tokio::sync::OwnedSemaphorePermit>>,
}

impl fmt::Debug for Receipt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receipt")
            .field("queue", &self.queue)
            .field("lease", &self.lease)
            .field("done", &self.done.load(Ordering::Relaxed))
            .field("sent", &self.sent.load(Ordering::Relaxed))
            .finish()
    }
}

impl Receipt {
    /// The receipt of lease `lease` of queue `queue`; `returned` is set if it goes back
    /// unsent.
    pub fn new(
        queues: Arc<dyn WorkQueues>,
        queue: &str,
        lease: &str,
        returned: Option<Arc<AtomicBool>>,
    ) -> Self {
        Receipt {
            queues,
            queue: queue.to_string(),
            lease: lease.to_string(),
            done: AtomicBool::new(false),
            sent: AtomicBool::new(false),
            returned,
            permit: parking_lot::Mutex::new(None),
        }
    }

    /// Holds `permit` for as long as the message is out.
    pub fn hold(&self, permit: tokio::sync::OwnedSemaphorePermit) {
        *self.permit.lock() = Some(permit);
    }

    /// The message went to the consumer; `done` too when nothing will acknowledge it
    /// (at most once).
    pub fn sent(&self, done: bool) {
        self.sent.store(true, Ordering::Relaxed);
        if done {
            self.done();
        }
    }

    /// The consumer acknowledged the message.
    pub fn done(&self) {
        self.done.store(true, Ordering::Relaxed);
    }

    /// Extends the lease to `lease_ms` from now.
    pub async fn extend(&self, lease_ms: i64) -> Result<(), QueueError> {
        self.queues.extend(&self.queue, &self.lease, lease_ms).await
    }
}

impl Drop for Receipt {
    fn drop(&mut self) {
        let (done, sent) = (
            self.done.load(Ordering::Relaxed),
            self.sent.load(Ordering::Relaxed),
        );
        if !sent && let Some(flag) = &self.returned {
            flag.store(true, Ordering::Relaxed);
        }
        // Outside a runtime (a test dropping it, a node going down) the lease lapses and
        // the queue hands the message out again: nothing is lost either way.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (queues, queue, lease) = (
            self.queues.clone(),
            std::mem::take(&mut self.queue),
            std::mem::take(&mut self.lease),
        );
        runtime.spawn(async move {
            let settled = match (done, sent) {
                (true, _) => queues.ack(&queue, &lease).await,
                (false, true) => queues.nack(&queue, &lease).await,
                (false, false) => queues.release(&queue, &lease).await,
            };
            if let Err(e) = settled {
                tracing::debug!(queue, error = %e, done, "queue delivery not settled");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_topic_is_the_prefix_and_one_level() {
        let link = QueueLink::new("queues/");
        assert_eq!(link.queue_of("queues/jobs"), Some("jobs"));
        assert_eq!(link.queue_of("queues/"), None);
        assert_eq!(link.queue_of("queues/a/b"), None);
        assert_eq!(link.queue_of("other/jobs"), None);
        assert_eq!(link.queue_of("queues/+"), None);
        assert_eq!(QueueLink::default().queue_of("queues/jobs"), None);
    }
}
