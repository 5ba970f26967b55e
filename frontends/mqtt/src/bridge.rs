//! Bridges between MQTT topics and journal streams (which Kafka clients see as topics).
//!
//! - **To a stream**: an MQTT publish whose topic matches a configured filter is appended
//!   to the stream before it is acknowledged (record key = MQTT topic, value = payload,
//!   headers = QoS, retain, publisher and MQTT 5 properties, as in `mqtt.messages`); the
//!   partition follows the MQTT topic, so one topic's messages stay in order.
//! - **From a stream**: every record appended to the stream is published to MQTT topic
//!   `prefix` + record key (the prefix alone when the record has no key), at least once:
//!   the position read up to is kept per partition in the node's key-value store and
//!   starts at the stream's end the first time.
//!
//! Messages published from a stream are marked (publisher `$bridge`) and never go back to a
//! stream, so a pair of bridges cannot loop.

use std::sync::Arc;
use std::time::Instant;
use strata_frontend::security::acl::{Access, Who};

use serde::{Deserialize, Serialize};
use strata_frontend::Shutdown;
use strata_frontend::seams::{
    Partition, StateSpace, Storage, StoreError, StreamHandles, StreamSpec,
};

use crate::broker::Broker;
use crate::codec::QoS;
use crate::message::Message;
use crate::store;
use crate::topic;

/// Publisher name of messages that came from a stream.
pub const BRIDGE_PUBLISHER: &str = "$bridge";

/// MQTT publishes matching `filter` are appended to `stream`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToStream {
    /// MQTT topic filter (wildcards allowed).
    pub filter: String,
    /// Journal stream (Kafka topic); created with one partition when missing.
    pub stream: String,
}

/// Records of `stream` are published to MQTT under `prefix`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FromStream {
    /// Journal stream (Kafka topic); created with one partition when missing.
    pub stream: String,
    /// Prefix of the MQTT topic; the record key follows it.
    pub prefix: String,
    /// QoS of the MQTT publishes (unless the record carries an MQTT QoS header).
    #[serde(default = "one")]
    pub qos: u8,
}

fn one() -> u8 {
    1
}

/// The streams MQTT publishes are copied to.
#[derive(Debug, Default)]
pub struct Bridges {
    to: Vec<(String, StreamHandles)>,
}

/// The partitions of stream `name`, created with one partition when missing.
pub async fn stream(storage: &Storage, name: &str) -> Result<StreamHandles, StoreError> {
    StreamHandles::open(storage, StreamSpec::new(name, 1)).await
}

impl Bridges {
    /// Opens (creating when missing) the streams of the `to` bridges.
    pub async fn open(storage: &Storage, to: &[ToStream]) -> Result<Self, StoreError> {
        let mut out = Vec::new();
        for b in to {
            out.push((b.filter.clone(), stream(storage, &b.stream).await?));
        }
        Ok(Bridges { to: out })
    }

    /// Whether `m` goes to at least one stream.
    pub fn wanted(&self, m: &Message) -> bool {
        !self.to.is_empty()
            && m.publisher.as_deref() != Some(BRIDGE_PUBLISHER)
            && self.to.iter().any(|(f, _)| topic::matches(f, &m.topic))
    }

    /// Appends each of `messages` to every stream whose filter it matches; returns once
    /// all are stored.
    pub async fn forward(&self, messages: &[&Message]) -> Result<(), StoreError> {
        for (filter, stream) in &self.to {
            let mut by_partition: Vec<Vec<&Message>> = vec![Vec::new(); stream.len() as usize];
            for m in messages {
                if m.publisher.as_deref() != Some(BRIDGE_PUBLISHER)
                    && topic::matches(filter, &m.topic)
                {
                    by_partition[stream.partition_for_key(m.topic.as_bytes()) as usize].push(m);
                }
            }
            for (partition, ms) in stream.all().iter().zip(by_partition) {
                if !ms.is_empty() {
                    partition.append(store::batch(ms)?).await?;
                }
            }
        }
        Ok(())
    }
}

fn position_key(stream: &str, partition: usize) -> Vec<u8> {
    format!("b/{stream}\0{partition}").into_bytes()
}

/// Publishes the records of every partition of `from.stream` to MQTT until shutdown.
pub async fn run_from_stream(
    broker: Arc<Broker>,
    kv: StateSpace,
    from: FromStream,
    stream: StreamHandles,
    shutdown: Shutdown,
) {
    let mut tasks = Vec::new();
    for (p, log) in stream.all().iter().enumerate() {
        tasks.push(tokio::spawn(follow_partition(
            broker.clone(),
            kv.clone(),
            from.clone(),
            p,
            log.clone(),
            shutdown.clone(),
        )));
    }
    for t in tasks {
        let _ = t.await;
    }
}

async fn follow_partition(
    broker: Arc<Broker>,
    kv: StateSpace,
    from: FromStream,
    partition: usize,
    log: Arc<dyn Partition>,
    mut shutdown: Shutdown,
) {
    let key = position_key(&from.stream, partition);
    let mut next = match kv.get(&key) {
        Ok(Some(v)) if v.len() == 8 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&v);
            u64::from_be_bytes(b)
        }
        _ => {
            // First start: from the end, and remember it.
            let end = match log.offsets().await {
                Ok(o) => o.end,
                Err(e) => {
                    tracing::warn!(stream = from.stream, partition, error = %e, "bridge cannot start");
                    return;
                }
            };
            let _ = kv.put(&key, &end.to_be_bytes());
            end
        }
    };
    let qos = QoS::from_bits(from.qos.min(2)).unwrap_or(QoS::AtLeastOnce);
    loop {
        let next_batch = tokio::select! {
            r = log.wait_for(next) => r,
            _ = shutdown.wait() => return,
        };
        if next_batch.is_err() {
            return;
        }
        if let Ok(o) = log.offsets().await {
            next = next.max(o.log_start);
        }
        let batches = match log.read(next, 1 << 20).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(stream = from.stream, partition, error = %e, "bridge read failed");
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                continue;
            }
        };
        for batch in &batches {
            let Ok(records) = batch.records() else {
                // A codec this build cannot decode (Kafka producers' gzip, snappy, lz4).
                broker
                    .metrics
                    .errors
                    .with_label_values(&["bridge_undecodable"])
                    .inc();
                next = batch.last_offset() + 1;
                continue;
            };
            for r in records.flatten() {
                if r.offset < next {
                    continue;
                }
                let key = r
                    .key
                    .as_deref()
                    .and_then(|k| std::str::from_utf8(k).ok())
                    .unwrap_or("");
                let topic = if key.is_empty() {
                    from.prefix.trim_end_matches('/').to_string()
                } else {
                    format!("{}{key}", from.prefix)
                };
                let mut message =
                    store::message_of(&r, Instant::now()).unwrap_or_else(|| Message {
                        topic: topic.clone(),
                        payload: r.value.clone().unwrap_or_default(),
                        qos,
                        retain: false,
                        properties: crate::message::forwarded(Default::default()),
                        expires_at: None,
                        publisher: None,
                        stored: None,
                        received: Instant::now(),
                    });
                if !r.headers.iter().any(|h| h.key == store::header::QOS) {
                    message.qos = qos;
                }
                message.topic = topic;
                message.publisher = Some(Arc::from(BRIDGE_PUBLISHER));
                message.stored = None;
                if crate::topic::validate_name(&message.topic, &broker.limits).is_err() {
                    broker
                        .metrics
                        .errors
                        .with_label_values(&["bridge_bad_topic"])
                        .inc();
                } else if message.topic.starts_with('$')
                    || broker.rules.publish_refused(&message.topic).is_some()
                {
                    // A record is a publish like any other: the topic rules apply (and `$`
                    // topics are the broker's).
                    broker.metrics.dropped.with_label_values(&["rule"]).inc();
                } else if !broker.security.allows(
                    &Who {
                        username: None,
                        client_id: BRIDGE_PUBLISHER,
                        ip: None,
                    },
                    Access::Publish {
                        topic: &message.topic,
                        retain: message.retain,
                    },
                ) {
                    // The ACL judges bridged records as published by client id `$bridge`.
                    broker.metrics.dropped.with_label_values(&["acl"]).inc();
                } else {
                    broker.publish_stored(Arc::new(message)).await;
                }
                next = r.offset + 1;
            }
            next = next.max(batch.last_offset() + 1);
        }
        if let Err(e) = kv.put(&key, &next.to_be_bytes()) {
            tracing::warn!(error = %e, "cannot store the bridge position");
        }
    }
}
