//! The `[mqtt]` section of the node configuration.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// A configured rule refusing subscriptions or publishes to topics matching `filter`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicRule {
    /// Topic filter the rule applies to (wildcards allowed).
    pub filter: String,
    /// Refuse SUBSCRIBE to filters matching it.
    #[serde(default)]
    pub deny_subscribe: bool,
    /// Refuse PUBLISH to topics matching it.
    #[serde(default)]
    pub deny_publish: bool,
    /// MQTT 5 reason code sent when the rule refuses (default 0x87 not authorized).
    #[serde(default = "default_rule_reason")]
    pub reason_code: u8,
}

fn default_rule_reason() -> u8 {
    0x87
}

/// What happens to a message for a session whose queue is full (by count or bytes). Every
/// message dropped or refused is counted in `strata_mqtt_dropped_messages_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueFullPolicy {
    /// The oldest queued messages make room for the new one.
    DropOldest,
    /// The new message is not queued for that session.
    DropNewest,
    /// A QoS 1/2 publish is refused for every subscriber: MQTT 5 publishers get 0x97
    /// (quota exceeded) in PUBACK/PUBREC; MQTT 3 publishers cannot be told and the message
    /// is dropped. QoS 0 messages are dropped for the full sessions only.
    Refuse,
}

/// MQTT frontend settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// Run the MQTT frontend on this node.
    pub enabled: bool,
    /// TCP listener.
    pub listen: SocketAddr,
    /// Serve MQTT over WebSocket too.
    pub ws_enabled: bool,
    /// WebSocket listener (subprotocol `mqtt`).
    pub ws_listen: SocketAddr,
    /// TLS: when set, MQTT over TLS on `tls_listen` and (with `ws_enabled`) WebSocket over
    /// TLS on `wss_listen`, beside the plaintext listeners.
    pub tls: Option<strata_frontend::tls::TlsSettings>,
    /// MQTT over TLS listener.
    pub tls_listen: SocketAddr,
    /// WebSocket over TLS listener.
    pub wss_listen: SocketAddr,
    /// Run the plaintext listeners (`listen`, `ws_listen`); turn off to serve TLS only.
    pub plaintext: bool,
    /// Largest packet accepted from clients, in bytes (announced to MQTT 5 clients).
    pub max_packet_size: u32,
    /// Receive maximum announced to MQTT 5 clients: QoS 1/2 publishes a client may have
    /// unacknowledged towards the server.
    pub receive_maximum: u16,
    /// QoS 1/2 messages in flight towards one client (MQTT 3; the client's receive maximum
    /// caps it further in MQTT 5).
    pub max_inflight: u16,
    /// Messages queued for one session beyond those in flight.
    pub max_queued_messages: usize,
    /// Bytes (topics and payloads) queued for one session beyond those in flight.
    pub max_queued_bytes: u64,
    /// What happens to a message for a session whose queue is full.
    pub queue_full: QueueFullPolicy,
    /// Topic alias maximum announced to MQTT 5 clients.
    pub topic_alias_maximum: u16,
    /// Server keep alive: the most a client may ask for, and what a client asking for
    /// none (0) gets (0 keeps the client's value).
    pub max_keep_alive: u16,
    /// Session expiry ceiling in seconds, for MQTT 5 expiry intervals and for MQTT 3
    /// persistent sessions (which ask for no expiry).
    pub max_session_expiry: u32,
    /// Seconds a client id whose owned session ended stays reserved for its owner (the
    /// authenticated user that created it), so another user cannot take it meanwhile.
    /// 0: not reserved.
    pub client_id_reservation_secs: u64,
    /// Concurrent connections accepted (CONNACK 0x89 / 0x03 beyond).
    pub max_connections: usize,
    /// Sockets that have not completed CONNECT, on top of `max_connections`: beyond
    /// `max_connections + max_pending_connects` open sockets a new one is closed at once.
    pub max_pending_connects: usize,
    /// Open sockets from one IP address (0: no bound but `max_connections`).
    pub max_connections_per_ip: usize,
    /// New connections per second from one IP address (0: no bound).
    pub max_connection_rate_per_ip: f64,
    /// New connections one IP address may open in a burst above that rate (default: the
    /// rate itself).
    pub connection_burst_per_ip: f64,
    /// Seconds a new connection has to send its CONNECT.
    pub connect_timeout_secs: u64,
    /// Largest CONNECT packet (will included): the bytes one connection may make the server
    /// buffer before it is authenticated.
    pub max_connect_bytes: u32,
    /// Seconds a write to a client may stay blocked (a client that stopped reading) before
    /// the connection is closed.
    pub write_timeout_secs: u64,
    /// Topic filters in one SUBSCRIBE; more ends the connection (MQTT 5: 0x97).
    pub max_subscribe_filters: usize,
    /// Subscriptions one session may hold; more are refused (SUBACK 0x97 / 0x80).
    pub max_subscriptions_per_session: usize,
    /// Sessions the node keeps (connected or not); a new one beyond is refused at
    /// CONNECT (0x97 / 0x03).
    pub max_sessions: usize,
    /// Retained messages the node keeps; a new retained topic beyond is not retained.
    pub max_retained_messages: usize,
    /// Bytes (topics and payloads) of retained messages the node keeps.
    pub max_retained_bytes: u64,
    /// Retained messages sent for one SUBSCRIBE packet, over all its filters.
    pub max_retained_per_subscribe: usize,
    /// Delayed publishes (`$delayed/...`) waiting at once; more are refused (0x97).
    pub max_delayed_messages: usize,
    /// Bytes (topics and payloads) of the delayed publishes waiting at once.
    pub max_delayed_bytes: u64,
    /// Longest delay a `$delayed/{seconds}/...` publish may ask for.
    pub max_delay_secs: u32,
    /// Longest client identifier accepted (bytes); longer gets CONNACK 0x85 / 0x02.
    pub max_client_id_length: usize,
    /// PUBLISH packets per second one client may send (0: no bound); a client ahead of it
    /// is read more slowly.
    pub max_messages_per_sec: f64,
    /// Payload bytes per second one client may send (0: no bound).
    pub max_bytes_per_sec: f64,
    /// How many seconds ahead of its rates a client may get in one burst before it is
    /// disconnected (MQTT 5: 0x96).
    pub rate_hard_cap_secs: f64,
    /// Maximum topic levels.
    pub max_topic_levels: usize,
    /// Maximum topic length in bytes.
    pub max_topic_length: usize,
    /// Seconds between `$SYS/broker/...` updates (0 disables them).
    pub sys_interval_secs: u64,
    /// Rules refusing subscriptions or publishes.
    pub rules: Vec<TopicRule>,
    /// Partitions of the `mqtt.messages` journal stream (used when the stream is created).
    pub journal_partitions: u32,
    /// MQTT publishes matching a filter are also appended to a journal stream (a Kafka
    /// topic): record key = MQTT topic, value = payload, headers = QoS, retain, publisher
    /// and MQTT 5 properties.
    pub bridge_to_stream: Vec<ToStream>,
    /// Records appended to a journal stream (a Kafka topic) are published to MQTT topic
    /// `prefix` + record key.
    pub bridge_from_stream: Vec<FromStream>,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            enabled: true,
            listen: SocketAddr::from(([0, 0, 0, 0], 1883)),
            ws_enabled: true,
            ws_listen: SocketAddr::from(([0, 0, 0, 0], 8083)),
            tls: None,
            tls_listen: SocketAddr::from(([0, 0, 0, 0], 8883)),
            wss_listen: SocketAddr::from(([0, 0, 0, 0], 8084)),
            plaintext: true,
            max_packet_size: 1024 * 1024,
            receive_maximum: 1024,
            max_inflight: 1024,
            max_queued_messages: 10_000,
            max_queued_bytes: 64 * 1024 * 1024,
            queue_full: QueueFullPolicy::DropNewest,
            topic_alias_maximum: 64,
            max_keep_alive: u16::MAX,
            max_session_expiry: 7 * 24 * 3600,
            client_id_reservation_secs: 24 * 3600,
            max_connections: 100_000,
            max_pending_connects: 1000,
            max_connections_per_ip: 0,
            max_connection_rate_per_ip: 0.0,
            connection_burst_per_ip: 0.0,
            connect_timeout_secs: 5,
            max_connect_bytes: 128 * 1024,
            write_timeout_secs: 30,
            max_subscribe_filters: 100,
            max_subscriptions_per_session: 1000,
            max_sessions: 1_000_000,
            max_retained_messages: 100_000,
            max_retained_bytes: 256 * 1024 * 1024,
            max_retained_per_subscribe: 10_000,
            max_delayed_messages: 100_000,
            max_delayed_bytes: 256 * 1024 * 1024,
            max_delay_secs: 7 * 24 * 3600,
            max_client_id_length: 1024,
            max_messages_per_sec: 0.0,
            max_bytes_per_sec: 0.0,
            rate_hard_cap_secs: 10.0,
            max_topic_levels: 32,
            max_topic_length: 4096,
            sys_interval_secs: 10,
            rules: Vec::new(),
            journal_partitions: 4,
            bridge_to_stream: Vec::new(),
            bridge_from_stream: Vec::new(),
        }
    }
}

impl MqttConfig {
    /// The admission limits of the MQTT listeners (TCP and WebSocket together).
    pub fn connection_limits(&self) -> strata_frontend::admission::ConnectionLimits {
        strata_frontend::admission::ConnectionLimits::new(
            self.max_connections
                .saturating_add(self.max_pending_connects),
            self.max_connections_per_ip,
            self.max_connection_rate_per_ip,
            self.connection_burst_per_ip,
        )
    }
}

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
