//! A fetched message whose lease a background task keeps extending until it is settled.

use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::{Error, Message, Queue};

/// What the keeper tells its message.
#[derive(Debug)]
struct Kept {
    /// When the lease lapses now, milliseconds since the epoch (the node's clock).
    until_ms: AtomicI64,
    /// The node refused an extension: the lease is gone (lapsed, or settled elsewhere).
    lost: AtomicBool,
}

/// A message on a lease that is extended in the background (by a tokio task, every third
/// of the lease's length, by that length) until it is acked, nacked, released or dropped.
///
/// Dropping it stops the extensions: the lease then lapses and the message is delivered
/// again. It derefs to its [`Message`].
#[derive(Debug)]
pub struct Leased {
    message: Message,
    queue: Queue,
    kept: Arc<Kept>,
    keeper: Option<JoinHandle<()>>,
}

impl Leased {
    /// Starts extending `message`'s lease on `queue` by `lease` every third of it.
    pub(crate) fn start(queue: Queue, message: Message, lease: Duration) -> Leased {
        let kept = Arc::new(Kept {
            until_ms: AtomicI64::new(message.lease_until_ms),
            lost: AtomicBool::new(false),
        });
        let keeper = tokio::spawn({
            let (queue, lease_id, kept) = (queue.clone(), message.lease.clone(), kept.clone());
            let every = (lease / 3).max(Duration::from_millis(20));
            async move {
                loop {
                    tokio::time::sleep(every).await;
                    match queue.extend(&lease_id, lease).await {
                        Ok(until) => kept.until_ms.store(until, Ordering::Release),
                        // Tried again at the next turn, while the lease still holds.
                        Err(e) if e.is_retryable() => {}
                        Err(_) => {
                            kept.lost.store(true, Ordering::Release);
                            return;
                        }
                    }
                }
            }
        });
        Leased {
            message,
            queue,
            kept,
            keeper: Some(keeper),
        }
    }

    /// The message.
    pub fn message(&self) -> &Message {
        &self.message
    }

    /// When the lease lapses unless extended again, milliseconds since the epoch.
    pub fn lease_until_ms(&self) -> i64 {
        self.kept.until_ms.load(Ordering::Acquire)
    }

    /// Whether the node refused to extend the lease (it lapsed, or was settled through
    /// another handle): an ack would fail, and the message may be with another consumer.
    pub fn is_lost(&self) -> bool {
        self.kept.lost.load(Ordering::Acquire)
    }

    /// Acknowledges the message: it is done. Its id.
    pub async fn ack(mut self) -> Result<String, Error> {
        self.stop();
        self.queue.ack(&self.message.lease).await
    }

    /// Gives the message back, deliverable again after `delay` (at most 12 h). Its id.
    pub async fn nack(mut self, delay: Duration) -> Result<String, Error> {
        self.stop();
        self.queue.nack(&self.message.lease, delay).await
    }

    /// Stops extending the lease and hands the message over: its lease lapses at
    /// [`Message::lease_until_ms`] as last extended (unless acked or nacked through
    /// [`Queue::ack`] and [`Queue::nack`]).
    pub fn release(mut self) -> Message {
        self.stop();
        let mut message = self.message.clone();
        message.lease_until_ms = self.lease_until_ms();
        message
    }

    fn stop(&mut self) {
        if let Some(keeper) = self.keeper.take() {
            keeper.abort();
        }
    }
}

impl Deref for Leased {
    type Target = Message;

    fn deref(&self) -> &Message {
        &self.message
    }
}

impl Drop for Leased {
    fn drop(&mut self) {
        self.stop();
    }
}
