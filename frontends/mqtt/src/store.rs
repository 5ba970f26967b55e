//! MQTT messages as journal records: every message that must be kept (QoS 1 and 2, and
//! retained ones) is appended once to the `mqtt.messages` stream before it is acknowledged.
//! The record key is the topic and the value the payload; headers carry QoS, retain, the
//! publisher and the MQTT 5 properties, so other frontends can read the same records.

use std::sync::Arc;

use strata_batch::{BatchBuilder, PendingBatch, Result as BatchResult, now_ms};
use strata_frontend::seams::{Appended, Partition, StoreError, StoreResult};

use crate::message::Message;

/// Name of the journal stream MQTT messages are stored in.
pub const STREAM: &str = "mqtt.messages";

/// Header names.
pub mod header {
    pub const QOS: &str = "mqtt.qos";
    pub const RETAIN: &str = "mqtt.retain";
    pub const CLIENT: &str = "mqtt.client";
    pub const PAYLOAD_FORMAT: &str = "mqtt.payload_format";
    pub const CONTENT_TYPE: &str = "mqtt.content_type";
    pub const RESPONSE_TOPIC: &str = "mqtt.response_topic";
    pub const CORRELATION_DATA: &str = "mqtt.correlation_data";
    pub const EXPIRY: &str = "mqtt.message_expiry_interval";
    /// Prefix of a user property's header name.
    pub const USER: &str = "mqtt.user:";
}

/// How long an append is tried again while its partition has no leader.
const RETRY_FOR: std::time::Duration = std::time::Duration::from_secs(5);
/// How long between those tries.
const RETRY_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// Appends the batch `build` makes to `partition`. While the partition has no leader to
/// take it (in a cluster, an election: about a second) the batch is made again and the
/// append tried again every 100 ms for up to 5 s: a message then stored twice is what
/// QoS 1 allows, and a QoS 2 one is still routed once.
pub async fn append(
    partition: &Arc<dyn Partition>,
    build: impl Fn() -> StoreResult<PendingBatch>,
) -> StoreResult<Appended> {
    let until = std::time::Instant::now() + RETRY_FOR;
    loop {
        match partition.append(build()?).await {
            Err(StoreError::Unavailable(_) | StoreError::NotLeader { .. })
                if std::time::Instant::now() < until =>
            {
                tokio::time::sleep(RETRY_EVERY).await;
            }
            other => return other,
        }
    }
}

/// Builds one journal batch holding `messages`.
pub fn batch<'a>(messages: impl IntoIterator<Item = &'a Message>) -> BatchResult<PendingBatch> {
    let mut b = BatchBuilder::new();
    let now = now_ms();
    let now_instant = std::time::Instant::now();
    for m in messages {
        let qos = [m.qos as u8];
        let retain = [u8::from(m.retain)];
        let format = m.properties.payload_format_indicator.map(|f| [f]);
        let expiry = m.remaining_expiry(now_instant).map(u32::to_be_bytes);
        let user: Vec<(String, &str)> = m
            .properties
            .user_properties
            .iter()
            .map(|(k, v)| (format!("{}{k}", header::USER), v.as_str()))
            .collect();
        let mut headers: Vec<(&str, Option<&[u8]>)> = vec![
            (header::QOS, Some(&qos[..])),
            (header::RETAIN, Some(&retain[..])),
        ];
        if let Some(c) = &m.publisher {
            headers.push((header::CLIENT, Some(c.as_bytes())));
        }
        if let Some(f) = &format {
            headers.push((header::PAYLOAD_FORMAT, Some(&f[..])));
        }
        if let Some(ct) = &m.properties.content_type {
            headers.push((header::CONTENT_TYPE, Some(ct.as_bytes())));
        }
        if let Some(rt) = &m.properties.response_topic {
            headers.push((header::RESPONSE_TOPIC, Some(rt.as_bytes())));
        }
        if let Some(cd) = &m.properties.correlation_data {
            headers.push((header::CORRELATION_DATA, Some(&cd[..])));
        }
        if let Some(e) = &expiry {
            headers.push((header::EXPIRY, Some(&e[..])));
        }
        for (k, v) in &user {
            headers.push((k.as_str(), Some(v.as_bytes())));
        }
        b.push(now, Some(m.topic.as_bytes()), Some(&m.payload), &headers);
    }
    b.build()
}

/// The message a record of this stream holds, as of `now`: `None` when the record is not
/// an MQTT message or its message expiry interval has passed since it was stored.
pub fn message_of(r: &strata_batch::Record, now: std::time::Instant) -> Option<Message> {
    use crate::codec::{Properties, QoS};
    let topic = std::str::from_utf8(r.key.as_deref()?).ok()?.to_string();
    let mut qos = QoS::AtMostOnce;
    let mut retain = false;
    let mut publisher = None;
    let mut properties = Properties::default();
    let mut expires_at = None;
    for h in &r.headers {
        let v = h.value.as_deref().unwrap_or_default();
        let text = || std::str::from_utf8(v).ok().map(str::to_string);
        match h.key.as_str() {
            header::QOS => qos = QoS::from_bits(*v.first()?).ok()?,
            header::RETAIN => retain = v.first() == Some(&1),
            header::CLIENT => publisher = text().map(|c| std::sync::Arc::from(c.as_str())),
            header::PAYLOAD_FORMAT => properties.payload_format_indicator = v.first().copied(),
            header::CONTENT_TYPE => properties.content_type = text(),
            header::RESPONSE_TOPIC => properties.response_topic = text(),
            header::CORRELATION_DATA => {
                properties.correlation_data = Some(bytes::Bytes::copy_from_slice(v));
            }
            header::EXPIRY => {
                let secs = u64::from(u32::from_be_bytes(v.try_into().ok()?));
                let age = u64::try_from(now_ms().saturating_sub(r.timestamp)).unwrap_or(0);
                let left = (secs * 1000).checked_sub(age).filter(|l| *l > 0)?;
                expires_at = Some(now + std::time::Duration::from_millis(left));
            }
            k => {
                if let Some(name) = k.strip_prefix(header::USER) {
                    properties.user_properties.push((name.to_string(), text()?));
                }
            }
        }
    }
    Some(Message {
        topic,
        payload: r.value.clone().unwrap_or_default(),
        qos,
        retain,
        properties: crate::message::forwarded(properties),
        expires_at,
        publisher,
        stored: Some((0, r.offset)),
        received: now,
    })
}
