//! An application message as the broker routes it: shared by every subscriber it goes to.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::codec::{Properties, Publish, QoS};

/// A published message. Cheap to share (`Arc`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Topic name.
    pub topic: String,
    /// Payload.
    pub payload: Bytes,
    /// QoS it was published with.
    pub qos: QoS,
    /// Retain flag it was published with.
    pub retain: bool,
    /// Properties forwarded unchanged: payload format, content type, response topic,
    /// correlation data, user properties. Shared, and one shared empty set for the many
    /// messages that carry none: a full `Properties` is larger than most messages.
    pub properties: Arc<Properties>,
    /// When the message expires (from the message expiry interval).
    pub expires_at: Option<Instant>,
    /// Client id of the publisher (for no-local), if a client published it.
    pub publisher: Option<Arc<str>>,
    /// Where it is stored in the journal (partition, offset), once it is.
    pub stored: Option<(u32, u64)>,
    /// When the broker received it (or loaded it from the store): delivery latency is
    /// measured from here.
    pub received: Instant,
}

/// `p` as a message's forwarded properties: the shared empty set when it is empty.
pub fn forwarded(p: Properties) -> Arc<Properties> {
    static EMPTY: std::sync::OnceLock<Arc<Properties>> = std::sync::OnceLock::new();
    if p == Properties::default() {
        EMPTY
            .get_or_init(|| Arc::new(Properties::default()))
            .clone()
    } else {
        Arc::new(p)
    }
}

impl Message {
    /// Builds a message from a received PUBLISH (its topic alias already resolved).
    pub fn from_publish(
        p: Publish,
        topic: String,
        publisher: Option<Arc<str>>,
        now: Instant,
    ) -> Self {
        let src = p.properties;
        let expires_at = src
            .message_expiry_interval
            .map(|s| now + std::time::Duration::from_secs(u64::from(s)));
        Message {
            topic,
            payload: p.payload,
            qos: p.qos,
            retain: p.retain,
            properties: forwarded(Properties {
                payload_format_indicator: src.payload_format_indicator,
                content_type: src.content_type,
                response_topic: src.response_topic,
                correlation_data: src.correlation_data,
                user_properties: src.user_properties,
                ..Properties::default()
            }),
            expires_at,
            publisher,
            stored: None,
            received: now,
        }
    }

    /// True once the message's expiry interval has passed.
    pub fn expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|t| now >= t)
    }

    /// Seconds left before expiry, rounded up (the interval sent on forward).
    pub fn remaining_expiry(&self, now: Instant) -> Option<u32> {
        self.expires_at.map(|t| {
            let left = t.saturating_duration_since(now);
            u32::try_from(left.as_secs() + u64::from(left.subsec_nanos() > 0)).unwrap_or(u32::MAX)
        })
    }
}

/// A message bound for one session, with what that subscription decided.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The message.
    pub message: Arc<Message>,
    /// QoS of this delivery: the lower of the publish and the subscription.
    pub qos: QoS,
    /// Retain flag of this delivery.
    pub retain: bool,
    /// Subscription identifiers of the matching subscriptions.
    pub subscription_ids: Vec<u32>,
    /// Delivered through a shared subscription: handed to another member if this session
    /// disconnects before acknowledging it.
    pub shared: bool,
    /// Its number in a durable session (the key of its reference in the store); 0 when
    /// it is not kept there.
    pub seq: u64,
    /// A work queue's message: its lease, settled when the client acknowledges it or the
    /// delivery is dropped.
    pub receipt: Option<Arc<strata_frontend::work_queues::Receipt>>,
}
