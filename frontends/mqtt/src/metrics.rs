//! The MQTT frontend's Prometheus metrics.

use prometheus::{Histogram, IntCounter, IntCounterVec, IntGauge, Registry, exponential_buckets};
use strata_metrics::{counter, counter_vec, gauge, histogram};

/// Counters and gauges of the MQTT frontend.
#[derive(Debug, Clone)]
#[allow(missing_docs)]
pub struct MqttMetrics {
    pub connections: IntGauge,
    /// Sockets open on the MQTT listeners, with or without a completed CONNECT.
    pub sockets: IntGauge,
    pub connects: IntCounter,
    pub sessions: IntGauge,
    pub subscriptions: IntGauge,
    pub retained: IntGauge,
    /// Bytes (topics and payloads) of the retained messages.
    pub retained_bytes: IntGauge,
    /// PUBLISH packets received, indexed by QoS.
    pub messages_in: [IntCounter; 3],
    /// PUBLISH packets sent, indexed by QoS.
    pub messages_out: [IntCounter; 3],
    pub bytes_in: IntCounter,
    pub bytes_out: IntCounter,
    /// Payload bytes of the PUBLISH packets received, indexed by QoS.
    pub payload_in: [IntCounter; 3],
    /// Payload bytes of the PUBLISH packets sent, indexed by QoS.
    pub payload_out: [IntCounter; 3],
    /// Seconds from a message's arrival to its PUBLISH being written to a subscriber.
    pub delivery: Histogram,
    pub dropped: IntCounterVec,
    pub errors: IntCounterVec,
    /// QoS 1/2 messages sent and not yet acknowledged, over all sessions.
    pub inflight: IntGauge,
    /// Packets received, indexed by packet type (1-15).
    pub packets_in: Vec<IntCounter>,
    /// Packets sent, indexed by packet type (1-15).
    pub packets_out: Vec<IntCounter>,
}

/// Every reason a message is dropped for, so each series exists from the start.
const DROP_REASONS: [&str; 13] = [
    "acl",
    "delayed_full",
    "expired",
    "queue_full",
    "queue_full_oldest",
    "queue_full_refused",
    "queue_refused",
    "retained_bytes",
    "retained_count",
    "retained_per_subscribe",
    "rule",
    "store_failed",
    "too_large_for_client",
];

/// Packet type names by type number, for the `type` label.
const PACKET_TYPES: [&str; 16] = [
    "reserved",
    "connect",
    "connack",
    "publish",
    "puback",
    "pubrec",
    "pubrel",
    "pubcomp",
    "subscribe",
    "suback",
    "unsubscribe",
    "unsuback",
    "pingreq",
    "pingresp",
    "disconnect",
    "auth",
];

/// The counters of a `qos`-labelled vector, resolved once: looking a label up hashes it,
/// which costs more than the increment on the delivery path.
fn by_qos(v: IntCounterVec) -> [IntCounter; 3] {
    ["0", "1", "2"].map(|q| v.with_label_values(&[q]))
}

impl MqttMetrics {
    /// Creates the metrics in `r`.
    pub fn new(r: &Registry) -> Self {
        let counter = |n: &str, h: &str| counter(r, n, h);
        let gauge = |n: &str, h: &str| gauge(r, n, h);
        let vec = |n: &str, h: &str, l: &str| counter_vec(r, n, h, &[l]);
        MqttMetrics {
            connections: gauge("strata_mqtt_connections", "Open MQTT connections."),
            sockets: gauge(
                "strata_mqtt_sockets",
                "Sockets open on the MQTT listeners, CONNECT completed or not.",
            ),
            connects: counter("strata_mqtt_connects_total", "Accepted CONNECTs."),
            sessions: gauge("strata_mqtt_sessions", "MQTT sessions, connected or not."),
            subscriptions: gauge("strata_mqtt_subscriptions", "MQTT subscriptions."),
            retained: gauge("strata_mqtt_retained_messages", "Retained messages."),
            retained_bytes: gauge(
                "strata_mqtt_retained_bytes",
                "Bytes (topics and payloads) of the retained messages.",
            ),
            messages_in: by_qos(vec(
                "strata_mqtt_messages_received_total",
                "PUBLISH packets received.",
                "qos",
            )),
            messages_out: by_qos(vec(
                "strata_mqtt_messages_sent_total",
                "PUBLISH packets sent.",
                "qos",
            )),
            bytes_in: counter(
                "strata_mqtt_received_bytes_total",
                "Bytes received from MQTT clients.",
            ),
            bytes_out: counter(
                "strata_mqtt_sent_bytes_total",
                "Bytes sent to MQTT clients.",
            ),
            payload_in: by_qos(vec(
                "strata_mqtt_received_payload_bytes_total",
                "Payload bytes of the PUBLISH packets received.",
                "qos",
            )),
            payload_out: by_qos(vec(
                "strata_mqtt_sent_payload_bytes_total",
                "Payload bytes of the PUBLISH packets sent.",
                "qos",
            )),
            delivery: histogram(
                r,
                "strata_mqtt_delivery_seconds",
                "Time from a message's arrival (a will's or delayed publish's \
                 release) to its PUBLISH being written to a subscriber's connection; \
                 deliveries with the retain flag are not counted.",
                // 10 µs to about 84 s.
                exponential_buckets(0.000_01, 4.0, 12).unwrap_or_default(),
            ),
            dropped: vec(
                "strata_mqtt_dropped_messages_total",
                "Messages dropped, by reason.",
                "reason",
            ),
            errors: vec(
                "strata_mqtt_errors_total",
                "Connections ended, or requests refused, by an error or a bound: by reason \
                 code or bound.",
                "reason",
            ),
            inflight: gauge(
                "strata_mqtt_inflight_messages",
                "QoS 1/2 messages sent and not yet acknowledged.",
            ),
            packets_in: Vec::new(),
            packets_out: Vec::new(),
        }
        .with_packet_counters(r)
        .with_drop_reasons()
    }

    fn with_drop_reasons(self) -> Self {
        for reason in DROP_REASONS {
            self.dropped.with_label_values(&[reason]);
        }
        self
    }

    fn with_packet_counters(mut self, r: &Registry) -> Self {
        let packets = counter_vec(
            r,
            "strata_mqtt_packets_total",
            "MQTT packets by direction and type.",
            &["direction", "type"],
        );
        self.packets_in = PACKET_TYPES
            .iter()
            .map(|t| packets.with_label_values(&["in", t]))
            .collect();
        self.packets_out = PACKET_TYPES
            .iter()
            .map(|t| packets.with_label_values(&["out", t]))
            .collect();
        self
    }
}
