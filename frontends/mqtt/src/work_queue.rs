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
//!   most [`MAX_HELD`]); an MQTT 3 client one at a time.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use strata_frontend::work_queues::{
    Leased, QueueErrorKind, QueueItem, QueueLink, Receipt, WorkQueues,
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

/// The queue consumers of one connection, by subscription filter. Dropping it stops them.
#[derive(Debug, Default)]
pub struct Consumers {
    running: HashMap<String, JoinHandle<()>>,
}

impl Drop for Consumers {
    fn drop(&mut self) {
        for (_, task) in self.running.drain() {
            task.abort();
        }
    }
}

impl Consumers {
    /// Starts consuming for subscription `raw` (unless it already does).
    pub fn start(
        &mut self,
        broker: &Arc<Broker>,
        session: &Arc<Session>,
        raw: &str,
        sub: Subscription,
        held: usize,
    ) {
        let Some(queue) = queue_of_filter(&broker.queues, raw) else {
            return;
        };
        if self.running.get(raw).is_some_and(|t| !t.is_finished()) {
            return;
        }
        let consumer = Consumer {
            broker: broker.clone(),
            session: session.clone(),
            queue: queue.to_string(),
            topic: raw
                .strip_prefix("$share/")
                .and_then(|r| r.split_once('/'))
                .map_or(raw, |(_, f)| f)
                .to_string(),
            sub,
            held: held.clamp(1, MAX_HELD),
        };
        self.running
            .insert(raw.to_string(), tokio::spawn(consumer.run()));
    }

    /// Stops consuming for subscription `raw`; the messages out stay with the client until
    /// it acknowledges them or goes.
    pub fn stop(&mut self, raw: &str) {
        if let Some(task) = self.running.remove(raw) {
            task.abort();
        }
    }

    /// Stops every consumer and waits until none can deliver any more.
    pub async fn stop_all(&mut self) {
        for (_, task) in self.running.drain() {
            task.abort();
            let _ = task.await;
        }
    }
}

struct Consumer {
    broker: Arc<Broker>,
    session: Arc<Session>,
    queue: String,
    topic: String,
    sub: Subscription,
    held: usize,
}

impl Consumer {
    async fn run(self) {
        let queues = loop {
            // The agent frontend attaches its queues once it serves.
            match self.broker.queues.get() {
                Some(q) => break q,
                None => tokio::time::sleep(RETRY / 5).await,
            }
        };
        let out: Mutex<Vec<Weak<Receipt>>> = Mutex::new(Vec::new());
        tokio::select! {
            _ = self.take(&queues, &out) => {}
            _ = renew(&out) => {}
        }
    }

    /// Takes messages as the client has room for them and hands them to its session.
    async fn take(&self, queues: &Arc<dyn WorkQueues>, out: &Mutex<Vec<Weak<Receipt>>>) {
        let room = Arc::new(Semaphore::new(self.held));
        loop {
            let Ok(permit) = room.clone().acquire_owned().await else {
                return;
            };
            let leased = match queues.fetch(&self.queue, 1, LEASE_MS, WAIT_MS).await {
                Ok(leased) => leased,
                Err(e) if e.kind == QueueErrorKind::BadName => {
                    tracing::debug!(queue = self.queue, error = %e, "not a queue MQTT may consume");
                    return;
                }
                Err(e) => {
                    tracing::debug!(queue = self.queue, error = %e, "queue fetch failed; retrying");
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
            };
            let Some(m) = leased.into_iter().next() else {
                continue;
            };
            let receipt = Arc::new(Receipt::new(
                queues.clone(),
                &self.queue,
                &m.lease,
                Some(permit),
            ));
            out.lock().push(Arc::downgrade(&receipt));
            let qos = self.sub.options.qos.min(QoS::AtLeastOnce);
            if qos == QoS::AtMostOnce {
                // At most once: done as soon as it is sent.
                receipt.done();
            }
            self.broker.deliver(
                &self.session,
                Outgoing {
                    message: Arc::new(self.message(m)),
                    qos,
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

/// Renews the leases of the messages still out, well before they lapse.
async fn renew(out: &Mutex<Vec<Weak<Receipt>>>) {
    let mut every = tokio::time::interval(Duration::from_millis((LEASE_MS / 3) as u64));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let live: Vec<Arc<Receipt>> = {
            let mut out = out.lock();
            out.retain(|r| r.strong_count() > 0);
            out.iter().filter_map(Weak::upgrade).collect()
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
