//! The bridge from a journal stream to MQTT: every record appended to a configured stream
//! is published to MQTT topic `prefix` + record key, at least once, with the position
//! read up to kept per partition as a consumer position (see `bridge.rs`).

use std::sync::Arc;
use std::time::Instant;

use strata_frontend::Shutdown;
use strata_frontend::seams::positions::{self, Position};
use strata_frontend::seams::{Partition, StateSpace, StreamHandles};
use strata_frontend::security::acl::{Access, Who};

use crate::bridge::BRIDGE_PUBLISHER;
use crate::broker::Broker;
use crate::codec::QoS;
use crate::config::FromStream;
use crate::message::Message;
use crate::store;

/// The consumer whose [`positions`] record how far the bridge has read each stream.
const CONSUMER: &str = "$mqtt-bridge";

/// Where the bridge stopped in a partition: its consumer position, or, from a node that
/// kept it under the older key `b/{stream}\0{partition}` (8 big-endian bytes), that one.
fn stored_position(kv: &StateSpace, stream: &str, partition: usize) -> Option<u64> {
    let p = i32::try_from(partition).ok()?;
    if let Ok(Some(at)) = positions::get(kv, CONSUMER, stream, p) {
        return u64::try_from(at.offset).ok();
    }
    let legacy = kv
        .get(format!("b/{stream}\0{partition}").as_bytes())
        .ok()??;
    Some(u64::from_be_bytes(
        <[u8; 8]>::try_from(legacy.as_slice()).ok()?,
    ))
}

fn store_position(kv: &StateSpace, stream: &str, partition: usize, next: u64) {
    let (Ok(p), Ok(offset)) = (i32::try_from(partition), i64::try_from(next)) else {
        return;
    };
    if let Err(e) = positions::put(kv, CONSUMER, stream, p, &Position::at(offset)) {
        tracing::warn!(error = %e, "cannot store the bridge position");
    }
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
    let mut next = match stored_position(&kv, &from.stream, partition) {
        Some(at) => at,
        None => {
            // First start: from the end, and remember it.
            let end = match log.offsets().await {
                Ok(o) => o.end,
                Err(e) => {
                    tracing::warn!(stream = from.stream, partition, error = %e, "bridge cannot start");
                    return;
                }
            };
            store_position(&kv, &from.stream, partition, end);
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
        store_position(&kv, &from.stream, partition, next);
    }
}
