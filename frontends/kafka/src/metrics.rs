//! The Kafka frontend's Prometheus metrics.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Registry};
use strata_metrics::{counter, counter_vec, gauge};

/// Counters of requests, errors and connections.
#[derive(Debug, Clone)]
pub struct KafkaMetrics {
    /// Requests by API and version.
    pub requests: IntCounterVec,
    /// Bytes of record batches stored by Produce requests.
    pub produced_bytes: IntCounter,
    /// Error codes returned, by API and code.
    pub errors: IntCounterVec,
    /// Open connections.
    pub connections: IntGauge,
    /// Records stored by Produce requests.
    pub produced_records: IntCounter,
    /// Record bytes returned by Fetch requests.
    pub fetched_bytes: IntCounter,
    /// Milliseconds of throttling answered (quotas), by API.
    pub throttle_ms: IntCounterVec,
}

impl KafkaMetrics {
    /// Registers the metrics in `r`.
    pub fn new(r: &Registry) -> Self {
        let vec = |name: &str, help: &str, labels: &[&str]| counter_vec(r, name, help, labels);
        KafkaMetrics {
            requests: vec(
                "strata_kafka_requests_total",
                "Kafka requests by API and version",
                &["api", "version"],
            ),
            produced_bytes: counter(
                r,
                "strata_kafka_produced_bytes_total",
                "Bytes of record batches stored by Produce requests",
            ),
            errors: vec(
                "strata_kafka_errors_total",
                "Kafka error codes returned, by API and code (and malformed requests as code \"malformed\")",
                &["api", "code"],
            ),
            connections: gauge(r, "strata_kafka_connections", "Open Kafka connections"),
            produced_records: counter(
                r,
                "strata_kafka_produced_records_total",
                "Records stored by Produce requests",
            ),
            fetched_bytes: counter(
                r,
                "strata_kafka_fetched_bytes_total",
                "Record bytes returned by Fetch requests",
            ),
            throttle_ms: vec(
                "strata_kafka_throttle_milliseconds_total",
                "Milliseconds of throttle_time_ms answered to clients ahead of their quota, by API",
                &["api"],
            ),
        }
    }

    /// Counts an error code answered to `api`.
    pub fn error(&self, api: &str, code: i16) {
        if code != 0 {
            self.errors
                .with_label_values(&[api, &code.to_string()])
                .inc();
        }
    }
}
