//! The agent frontend's work queues on MQTT (`[agent] mqtt_prefix`, say `queues/`).
//!
//! - **Publish** to `queues/<name>`: the message is sent to queue `<name>` and only there
//!   (it is not routed to MQTT subscribers nor kept in `mqtt.messages`: the queue's log is
//!   where it lives). PUBACK follows once the queue keeps it. MQTT 5 user properties
//!   `priority` (`high`, `normal`, `low`), `key`, `tag` (repeated) and `idempotency-key`,
//!   and the message expiry interval (its time to live), are the send's.
//! - **Subscribe** to `queues/<name>` or `$share/<group>/queues/<name>`: the connection
//!   becomes a consumer competing with every other (HTTP or MQTT) for the queue's messages.
//!   Each message is taken on a lease, delivered at QoS 1 (QoS 0 when the subscription
//!   asked for it: acknowledged as it is sent), kept while the client holds it and
//!   acknowledged by its PUBACK; when the client goes away first, it goes back to the queue
//!   at once for another consumer. User properties `id`, `attempt`, `priority`, `key` and
//!   `tag` describe it. An MQTT 5 client holds as many as its Receive Maximum says (at
//!   most [`MAX_HELD`], over all its queue subscriptions); an MQTT 3 client one at a
//!   time. A lease is renewed for at most [`MAX_HOLD`]: a client that never acknowledges
//!   lets it lapse. A message that never reached the client (its session queue full, too
//!   large for it) goes back uncounted, and the consumer slows down.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use strata_frontend::work_queues::{
    Leased, QueueError, QueueErrorKind, QueueItem, QueueLink, Receipt,
};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::broker::Broker;
use crate::codec::{Properties, QoS, ReasonCode};
use crate::message::{Message, Outgoing, forwarded};
use crate::session::{Session, Subscription};

/// Queue messages one MQTT 5 consumer holds at most.
pub const MAX_HELD: usize = 64;
/// A lease, renewed while the client holds the message.
const LEASE_MS: i64 = 30_000;
/// How long one fetch waits for a message.
const WAIT_MS: i64 = 20_000;
/// Pause before asking again after the queue could not answer (unknown yet, unavailable).
const RETRY: Duration = Duration::from_secs(1);

/// The queue a topic filter consumes (`<prefix><name>`, shared or not), if it names one.
pub fn queue_of_filter<'f>(link: &QueueLink, raw: &'f str) -> Option<&'f str> {
    let filter = match raw.strip_prefix("$share/") {
        Some(rest) => rest.split_once('/')?.1,
        None => raw,
    };
    link.queue_of(filter)
}

/// What an MQTT 5 publish says about its send.
pub fn item_of(message: &Message) -> QueueItem {
    let mut item = QueueItem {
        payload: message.payload.to_vec(),
        ttl_ms: message.expires_at.map(|t| {
            i64::try_from(t.saturating_duration_since(message.received).as_millis())
                .unwrap_or(i64::MAX)
                .max(1)
        }),
        ..QueueItem::default()
    };
    for (name, value) in &message.properties.user_properties {
        match name.as_str() {
            "priority" => {
                item.priority = match value.as_str() {
                    "high" | "0" => Some(0),
                    "normal" | "1" => Some(1),
                    "low" | "2" => Some(2),
                    _ => item.priority,
                }
            }
            "key" => item.key = Some(value.clone()),
            "tag" => item.tags.push(value.clone()),
            "idempotency-key" => item.idempotency_key = Some(value.clone()),
            _ => {}
        }
    }
    item
}

/// The PUBACK (or PUBREC) reason for a send the queue refused.
pub fn reason_for(kind: QueueErrorKind) -> ReasonCode {
    match kind {
        QueueErrorKind::BadName => ReasonCode::TOPIC_NAME_INVALID,
        QueueErrorKind::BadInput | QueueErrorKind::TooLarge => ReasonCode(0x99),
        QueueErrorKind::Full => ReasonCode::QUOTA_EXCEEDED,
        QueueErrorKind::Lease | QueueErrorKind::Unknown | QueueErrorKind::Unavailable => {
            ReasonCode::UNSPECIFIED_ERROR
        }
    }
}

/// Whether a refused send would be refused again, however often it is resent.
pub fn refused_for_good(kind: QueueErrorKind) -> bool {
    matches!(
        kind,
        QueueErrorKind::BadName | QueueErrorKind::BadInput | QueueErrorKind::TooLarge
    )
}

/// How long a client may hold one message: its lease is not renewed beyond, so a client
/// that never acknowledges lets it lapse (counted, and dead-lettered in the end).
const MAX_HOLD: Duration = Duration::from_secs(300);
/// Longest pause between two tries when the queue keeps refusing or taking messages back.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The queue consumers of one connection, by subscription filter, sharing one bound on the
/// messages the client holds and one task renewing their leases. Dropping it stops them.
#[derive(Debug)]
pub struct Consumers {
    running: HashMap<String, (Subscription, JoinHandle<()>)>,
    out: Arc<Out>,
    renewer: Option<JoinHandle<()>>,
}

/// What a connection's consumers share.
#[derive(Debug)]
struct Out {
    /// Messages the client may hold at once, over all its queue subscriptions.
    room: Arc<Semaphore>,
    /// The messages out, with when they were taken, for the renewer.
    held: Mutex<Vec<(Weak<Receipt>, Instant)>>,
    /// Set when a message went back to its queue unsent: the consumers slow down.
    returned: Arc<AtomicBool>,
}

impl Drop for Consumers {
    fn drop(&mut self) {
        for (_, (_, task)) in self.running.drain() {
            task.abort();
        }
        if let Some(renewer) = self.renewer.take() {
            renewer.abort();
        }
    }
}

impl Consumers {
    /// Consumers for a client holding at most `held` messages at once.
    pub fn new(held: usize) -> Self {
        let out = Arc::new(Out {
            room: Arc::new(Semaphore::new(held.clamp(1, MAX_HELD))),
            held: Mutex::new(Vec::new()),
            returned: Arc::new(AtomicBool::new(false)),
        });
        Consumers {
            running: HashMap::new(),
            renewer: Some(tokio::spawn(renew(out.clone()))),
            out,
        }
    }

    /// Starts consuming for subscription `raw` (again, when its options changed).
    pub fn start(
        &mut self,
        broker: &Arc<Broker>,
        session: &Arc<Session>,
        raw: &str,
        sub: Subscription,
    ) {
        let Some(queue) = queue_of_filter(&broker.queues, raw) else {
            return;
        };
        if let Some((running, task)) = self.running.get(raw) {
            if *running == sub && !task.is_finished() {
                return;
            }
            task.abort();
        }
        let generation = session
            .state
            .lock()
            .connection
            .as_ref()
            .map(|c| c.generation);
        let consumer = Consumer {
            broker: broker.clone(),
            session: session.clone(),
            generation,
            queue: queue.to_string(),
            raw: raw.to_string(),
            topic: raw
                .strip_prefix("$share/")
                .and_then(|r| r.split_once('/'))
                .map_or(raw, |(_, f)| f)
                .to_string(),
            sub,
            out: self.out.clone(),
        };
        self.running
            .insert(raw.to_string(), (sub, tokio::spawn(consumer.run())));
    }

    /// Stops consuming for subscription `raw`; the messages out stay with the client (their
    /// leases renewed) until it acknowledges them or goes.
    pub fn stop(&mut self, raw: &str) {
        if let Some((_, task)) = self.running.remove(raw) {
            task.abort();
        }
    }

    /// Stops every consumer and waits until none can deliver any more.
    pub async fn stop_all(&mut self) {
        for (_, (_, task)) in self.running.drain() {
            task.abort();
            let _ = task.await;
        }
    }
}

struct Consumer {
    broker: Arc<Broker>,
    session: Arc<Session>,
    /// The connection it consumes for: it stops once another has the session.
    generation: Option<u64>,
    queue: String,
    raw: String,
    topic: String,
    sub: Subscription,
    out: Arc<Out>,
}

impl Consumer {
    /// Whether the client still has this subscription (an ACL change may have removed
    /// it) on this connection.
    fn current(&self) -> bool {
        let st = self.session.state.lock();
        st.connection.as_ref().map(|c| c.generation) == self.generation
            && st.subscriptions.get(&self.raw) == Some(&self.sub)
    }

    async fn run(self) {
        let queues = loop {
            // The agent frontend attaches its queues once it serves.
            match self.broker.queues.get() {
                Some(q) => break q,
                None => tokio::time::sleep(RETRY / 5).await,
            }
        };
        let mut backoff = Duration::ZERO;
        let slow_down = |backoff: &mut Duration| {
            *backoff = (*backoff * 2).clamp(RETRY / 5, MAX_BACKOFF);
            *backoff
        };
        loop {
            if self.out.returned.swap(false, Ordering::Relaxed) {
                // Messages went back unsent (a full session queue, too large for the
                // client): taking them again at once would only spin.
                tokio::time::sleep(slow_down(&mut backoff)).await;
            }
            let Ok(permit) = self.out.room.clone().acquire_owned().await else {
                return;
            };
            if !self.current() {
                return;
            }
            let asked = Instant::now();
            // In a task of its own, so a consumer stopped while it waits leaves no lease
            // unheld: what it took comes back with the receipts, uncounted.
            let fetch = tokio::spawn({
                let (queues, queue, returned) = (
                    queues.clone(),
                    self.queue.clone(),
                    self.out.returned.clone(),
                );
                async move {
                    let leased = queues.fetch(&queue, 1, LEASE_MS, WAIT_MS).await?;
                    Ok::<_, QueueError>(
                        leased
                            .into_iter()
                            .map(|m| {
                                let r = Receipt::new(
                                    queues.clone(),
                                    &queue,
                                    &m.lease,
                                    Some(returned.clone()),
                                );
                                (m, Arc::new(r))
                            })
                            .collect::<Vec<_>>(),
                    )
                }
            });
            let leased = match fetch.await {
                Ok(Ok(leased)) => leased,
                Ok(Err(e)) if e.kind == QueueErrorKind::BadName => {
                    tracing::debug!(queue = self.queue, error = %e, "not a queue MQTT may consume");
                    return;
                }
                Ok(Err(e)) => {
                    tracing::debug!(queue = self.queue, error = %e, "queue fetch failed; retrying");
                    tokio::time::sleep(slow_down(&mut backoff)).await;
                    continue;
                }
                Err(_) => continue,
            };
            let Some((m, receipt)) = leased.into_iter().next() else {
                if asked.elapsed() < RETRY {
                    // An empty answer long before the wait: do not ask in a tight loop.
                    tokio::time::sleep(RETRY / 5).await;
                }
                continue;
            };
            if !self.current() {
                return;
            }
            backoff = Duration::ZERO;
            receipt.hold(permit);
            self.out
                .held
                .lock()
                .push((Arc::downgrade(&receipt), Instant::now()));
            self.broker.deliver(
                &self.session,
                Outgoing {
                    message: Arc::new(self.message(m)),
                    qos: self.sub.options.qos.min(QoS::AtLeastOnce),
                    retain: false,
                    subscription_ids: self.sub.id.into_iter().collect(),
                    shared: true,
                    seq: 0,
                    receipt: Some(receipt),
                },
            );
        }
    }

    fn message(&self, m: Leased) -> Message {
        let mut user = vec![
            ("id".to_string(), m.id),
            ("attempt".to_string(), m.attempt.to_string()),
            ("priority".to_string(), m.priority.to_string()),
        ];
        if let Some(key) = m.key {
            user.push(("key".to_string(), key));
        }
        user.extend(m.tags.into_iter().map(|t| ("tag".to_string(), t)));
        Message {
            topic: self.topic.clone(),
            payload: m.payload.into(),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: forwarded(Properties {
                user_properties: user,
                ..Properties::default()
            }),
            expires_at: None,
            publisher: None,
            stored: None,
            received: Instant::now(),
        }
    }
}

/// Renews the leases of the messages a connection's client holds, well before they lapse,
/// for at most [`MAX_HOLD`] each.
async fn renew(out: Arc<Out>) {
    let mut every = tokio::time::interval(Duration::from_millis((LEASE_MS / 3) as u64));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let live: Vec<Arc<Receipt>> = {
            let mut held = out.held.lock();
            held.retain(|(r, taken)| r.strong_count() > 0 && taken.elapsed() < MAX_HOLD);
            held.iter().filter_map(|(r, _)| r.upgrade()).collect()
        };
        for receipt in live {
            if let Err(e) = receipt.extend(LEASE_MS).await {
                tracing::debug!(error = %e, "queue lease not renewed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_and_plain_filters_name_their_queue() {
        let link = QueueLink::new("queues/");
        assert_eq!(queue_of_filter(&link, "queues/jobs"), Some("jobs"));
        assert_eq!(queue_of_filter(&link, "$share/w/queues/jobs"), Some("jobs"));
        assert_eq!(queue_of_filter(&link, "$share/w/queues/+"), None);
        assert_eq!(queue_of_filter(&link, "queues/#"), None);
        assert_eq!(queue_of_filter(&link, "$share/queues/jobs"), None);
    }
}
