//! The `[kafka]` section of the node configuration.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// Kafka frontend settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Run the Kafka frontend on this node.
    pub enabled: bool,
    /// TCP listener.
    pub listen: SocketAddr,
    /// Host clients are told to connect to (default: the listener's IP, or `localhost`
    /// when it listens on every address).
    pub advertised_host: Option<String>,
    /// Port clients are told to connect to (default: the bound port).
    pub advertised_port: Option<u16>,
    /// Create a topic when a client asks for metadata of (or produces to) one that does
    /// not exist.
    pub auto_create_topics: bool,
    /// Partitions of an automatically created topic (and of CreateTopics asking for -1).
    pub default_partitions: u32,
    /// Largest request accepted, in bytes; a larger one closes the connection.
    pub max_request_bytes: u32,
    /// Largest record batch accepted in a Produce request (Kafka's `message.max.bytes`);
    /// larger ones get MESSAGE_TOO_LARGE.
    pub max_message_bytes: u32,
    /// How long a group waits for more members after the first join before it completes
    /// a rebalance (Kafka's `group.initial.rebalance.delay.ms`).
    pub group_initial_rebalance_delay_ms: u64,
    /// SASL/PLAIN users (`name = "password"`); when not empty, clients must authenticate.
    pub sasl_plain_users: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            enabled: true,
            listen: SocketAddr::from(([0, 0, 0, 0], 9092)),
            advertised_host: None,
            advertised_port: None,
            auto_create_topics: true,
            default_partitions: 1,
            max_request_bytes: 100 * 1024 * 1024,
            max_message_bytes: 1024 * 1024 + 12,
            group_initial_rebalance_delay_ms: 1000,
            sasl_plain_users: BTreeMap::new(),
        }
    }
}
