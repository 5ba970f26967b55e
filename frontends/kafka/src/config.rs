//! The `[kafka]` section of the node configuration.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// Kafka frontend settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// TLS: when set, an SSL listener on `tls_listen` beside the plaintext one (SASL, when
    /// configured, is required on both: SASL_SSL there).
    pub tls: Option<strata_frontend::tls::TlsSettings>,
    /// The SSL listener.
    pub tls_listen: SocketAddr,
    /// Port clients of the SSL listener are told to connect to (default: its bound port).
    pub advertised_tls_port: Option<u16>,
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
    /// Largest request accepted before a client has authenticated (Kafka's
    /// `sasl.server.max.receive.size`), when SASL is on.
    pub max_request_bytes_unauthenticated: u32,
    /// A connection that sends nothing for this long is closed (Kafka's
    /// `connections.max.idle.ms`); also the bound on receiving one request.
    pub connections_max_idle_ms: u64,
    /// How long writing a response may stay blocked (a client that stopped reading)
    /// before the connection is closed.
    pub write_timeout_ms: u64,
    /// Bytes of records in one Fetch response, whatever the request's `max_bytes` (Kafka's
    /// `fetch.max.bytes`); a partition's share is bounded by it too.
    pub max_fetch_bytes: u32,
    /// Longest a Fetch may wait for data, whatever its `max_wait_ms`.
    pub max_fetch_wait_ms: u64,
    /// Journal streams (topics, the MQTT stream included) beyond which no topic is created.
    pub max_topics: usize,
    /// Journal partitions over all streams beyond which no topic or partition is created.
    pub max_partitions: u64,
    /// Topics one request may create (CreateTopics, or Metadata and Produce creating them
    /// automatically); the rest are refused.
    pub max_topics_created_per_request: usize,
    /// Open connections to the Kafka listener.
    pub max_connections: usize,
    /// Open connections from one IP address (0: no bound but `max_connections`).
    pub max_connections_per_ip: usize,
    /// New connections per second from one IP address (0: no bound).
    pub max_connection_rate_per_ip: f64,
    /// New connections one IP address may open in a burst above that rate (default: the
    /// rate itself).
    pub connection_burst_per_ip: f64,
    /// Principals (SASL user names; `ANONYMOUS` without SASL) allowed to read streams a
    /// frontend keeps for itself, such as `mqtt.messages`. Nobody by default.
    pub internal_stream_readers: Vec<String>,
    /// Enforce Kafka ACLs (CreateAcls and friends) on every request. Off: every
    /// authenticated client may do everything but touch internal streams.
    pub authorizer: bool,
    /// Principals (SASL user names; `ANONYMOUS`) the ACLs do not restrict.
    pub super_users: Vec<String>,
    /// With the authorizer on, whether a resource no ACL names is open to everyone
    /// (Kafka's `allow.everyone.if.no.acl.found`). Refused by default.
    pub allow_if_no_acl: bool,
    /// Consumer groups the node keeps (in memory, and with committed offsets); at the
    /// bound a group without members makes room, or JoinGroup/OffsetCommit answer
    /// POLICY_VIOLATION.
    pub max_groups: usize,
    /// Members of one group; more get GROUP_MAX_SIZE_REACHED.
    pub max_group_members: usize,
    /// Protocol names and metadata one member may make the coordinator keep.
    pub max_member_metadata_bytes: usize,
    /// Protocol names and metadata all members of all groups may make the coordinator
    /// keep; a JoinGroup past it answers POLICY_VIOLATION.
    pub max_group_metadata_bytes: usize,
    /// Session timeouts a member may ask for (Kafka's `group.min.session.timeout.ms` and
    /// `group.max.session.timeout.ms`); outside, INVALID_SESSION_TIMEOUT.
    pub group_min_session_timeout_ms: i64,
    /// See `group_min_session_timeout_ms`.
    pub group_max_session_timeout_ms: i64,
    /// Producers whose idempotence state one partition keeps; past it, the producer unseen
    /// the longest is forgotten.
    pub max_producers_per_partition: usize,
    /// Groups whose members and lag are metric series (their ids are labels).
    pub max_group_metrics: usize,
    /// Produce quota: record bytes per second one connection may send (0: none). Ahead
    /// of it, responses carry `throttle_time_ms` and the connection is muted as long.
    pub producer_byte_rate: f64,
    /// Fetch quota: record bytes per second one connection may receive (0: none).
    pub consumer_byte_rate: f64,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            enabled: true,
            listen: SocketAddr::from(([0, 0, 0, 0], 9092)),
            advertised_host: None,
            advertised_port: None,
            tls: None,
            tls_listen: SocketAddr::from(([0, 0, 0, 0], 9093)),
            advertised_tls_port: None,
            auto_create_topics: true,
            default_partitions: 1,
            max_request_bytes: 100 * 1024 * 1024,
            max_message_bytes: 1024 * 1024 + 12,
            group_initial_rebalance_delay_ms: 1000,
            sasl_plain_users: BTreeMap::new(),
            max_request_bytes_unauthenticated: 512 * 1024,
            connections_max_idle_ms: 600_000,
            write_timeout_ms: 30_000,
            max_fetch_bytes: 55 * 1024 * 1024,
            max_fetch_wait_ms: 30_000,
            max_topics: 10_000,
            max_partitions: 50_000,
            max_topics_created_per_request: 100,
            max_connections: 10_000,
            max_connections_per_ip: 0,
            max_connection_rate_per_ip: 0.0,
            connection_burst_per_ip: 0.0,
            internal_stream_readers: Vec::new(),
            authorizer: false,
            super_users: Vec::new(),
            allow_if_no_acl: false,
            max_groups: 10_000,
            max_group_members: 1_000,
            max_member_metadata_bytes: 128 * 1024,
            max_group_metadata_bytes: 256 * 1024 * 1024,
            group_min_session_timeout_ms: 6_000,
            group_max_session_timeout_ms: 1_800_000,
            max_producers_per_partition: 10_000,
            max_group_metrics: 1_000,
            producer_byte_rate: 0.0,
            consumer_byte_rate: 0.0,
        }
    }
}

impl KafkaConfig {
    /// The admission limits of the Kafka listener.
    pub fn connection_limits(&self) -> strata_frontend::admission::ConnectionLimits {
        strata_frontend::admission::ConnectionLimits::new(
            self.max_connections,
            self.max_connections_per_ip,
            self.max_connection_rate_per_ip,
            self.connection_burst_per_ip,
        )
    }
}
