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
//! stream, so a pair of bridges cannot loop. This module is the way to a stream and what
//! both ways share; the way from a stream, which publishes through the broker, is in
//! `bridge_from.rs`.

use strata_frontend::seams::{Storage, StoreError, StreamHandles, StreamSpec};

use crate::config::ToStream;
use crate::message::Message;
use crate::store;
use crate::topic;

/// Publisher name of messages that came from a stream.
pub const BRIDGE_PUBLISHER: &str = "$bridge";

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
