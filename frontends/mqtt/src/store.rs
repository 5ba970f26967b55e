//! MQTT messages as journal records: every message that must be kept (QoS 1 and 2, and
//! retained ones) is appended once to the `mqtt.messages` stream before it is acknowledged.
//! The record key is the topic and the value the payload; headers carry QoS, retain, the
//! publisher and the MQTT 5 properties, so other frontends can read the same records.

use strata_journal::{BatchBuilder, PendingBatch, Result as JournalResult, now_ms};

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

/// Builds one journal batch holding `messages`.
pub fn batch<'a>(messages: impl IntoIterator<Item = &'a Message>) -> JournalResult<PendingBatch> {
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
