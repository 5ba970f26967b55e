//! The Kafka frontend's Prometheus metrics.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

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

fn register<C: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: C) -> C {
    if let Err(e) = r.register(Box::new(c.clone())) {
        tracing::debug!(error = %e, "kafka metric already registered");
    }
    c
}

impl KafkaMetrics {
    /// Registers the metrics in `r`.
    pub fn new(r: &Registry) -> Self {
        let vec = |name: &str, help: &str, labels: &[&str]| {
            register(
                r,
                IntCounterVec::new(Opts::new(name, help), labels)
                    .unwrap_or_else(|e| unreachable!("metric {name}: {e}")),
            )
        };
        KafkaMetrics {
            requests: vec(
                "strata_kafka_requests_total",
                "Kafka requests by API and version",
                &["api", "version"],
            ),
            produced_bytes: register(
                r,
                IntCounter::new(
                    "strata_kafka_produced_bytes_total",
                    "Bytes of record batches stored by Produce requests",
                )
                .unwrap_or_else(|e| unreachable!("metric produced bytes: {e}")),
            ),
            errors: vec(
                "strata_kafka_errors_total",
                "Kafka error codes returned, by API and code (and malformed requests as code \"malformed\")",
                &["api", "code"],
            ),
            connections: register(
                r,
                IntGauge::new("strata_kafka_connections", "Open Kafka connections")
                    .unwrap_or_else(|e| unreachable!("metric connections: {e}")),
            ),
            produced_records: register(
                r,
                IntCounter::new(
                    "strata_kafka_produced_records_total",
                    "Records stored by Produce requests",
                )
                .unwrap_or_else(|e| unreachable!("metric produced: {e}")),
            ),
            fetched_bytes: register(
                r,
                IntCounter::new(
                    "strata_kafka_fetched_bytes_total",
                    "Record bytes returned by Fetch requests",
                )
                .unwrap_or_else(|e| unreachable!("metric fetched: {e}")),
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
