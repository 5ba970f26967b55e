//! The journal's Prometheus metrics.

use prometheus::{Histogram, IntCounter, IntCounterVec, IntGauge, Registry};
use strata_metrics::{counter, counter_vec, doubling, gauge};

/// Counters, gauges and histograms for every journal operation. Labels are the storage
/// class only, so cardinality stays fixed however many streams exist.
#[derive(Debug, Clone)]
pub struct JournalMetrics {
    /// Appended batches by class.
    pub appends: IntCounterVec,
    /// Appended bytes by class.
    pub append_bytes: IntCounterVec,
    /// Appended records by class.
    pub append_records: IntCounterVec,
    /// Failed appends by class.
    pub append_errors: IntCounterVec,
    /// Batches read by class.
    pub reads: IntCounterVec,
    /// Bytes read by class.
    pub read_bytes: IntCounterVec,
    /// fsync latency.
    pub fsync_seconds: Histogram,
    /// Failed fsyncs.
    pub fsync_errors: IntCounter,
    /// Corrupt batches met by readers.
    pub corruptions: IntCounter,
    /// Segment files currently open.
    pub segments: IntGauge,
    /// Segment rolls.
    pub rolls: IntCounter,
    /// Segments (or batches) removed by retention or delete-before.
    pub retention_removed: IntCounter,
    /// Bytes removed by retention or delete-before.
    pub retention_removed_bytes: IntCounter,
    /// Bytes cut from damaged tails at open.
    pub recovery_truncated_bytes: IntCounter,
    /// Divergent tails a replica removed (`truncate_from`).
    pub replica_truncations: IntCounter,
    /// Time to open the journal.
    pub open_seconds: Histogram,
    /// Streams defined.
    pub streams: IntGauge,
    /// Streams found on disk at open that could not be opened (not served).
    pub streams_failed: IntGauge,
}

fn by_class(registry: &Registry, name: &str, help: &str) -> IntCounterVec {
    counter_vec(registry, name, help, &["class"])
}

fn histogram(registry: &Registry, name: &str, help: &str, start: f64) -> Histogram {
    strata_metrics::histogram(registry, name, help, doubling(start, 20))
}

/// The per-class counters of one storage class, resolved once so hot paths skip the
/// label lookup.
#[derive(Debug, Clone)]
pub struct ClassMetrics {
    /// Appended batches.
    pub appends: IntCounter,
    /// Appended bytes.
    pub append_bytes: IntCounter,
    /// Appended records.
    pub append_records: IntCounter,
    /// Failed appends.
    pub append_errors: IntCounter,
    /// Batches read.
    pub reads: IntCounter,
    /// Bytes read.
    pub read_bytes: IntCounter,
}

impl JournalMetrics {
    /// The counters of storage class `class`.
    pub fn class(&self, class: &str) -> ClassMetrics {
        ClassMetrics {
            appends: self.appends.with_label_values(&[class]),
            append_bytes: self.append_bytes.with_label_values(&[class]),
            append_records: self.append_records.with_label_values(&[class]),
            append_errors: self.append_errors.with_label_values(&[class]),
            reads: self.reads.with_label_values(&[class]),
            read_bytes: self.read_bytes.with_label_values(&[class]),
        }
    }

    /// Creates the metrics and registers them in `registry`.
    pub fn new(registry: &Registry) -> Self {
        let r = registry;
        JournalMetrics {
            appends: by_class(r, "strata_journal_appends_total", "Batches appended."),
            append_bytes: by_class(r, "strata_journal_append_bytes_total", "Bytes appended."),
            append_records: by_class(
                r,
                "strata_journal_append_records_total",
                "Records appended.",
            ),
            append_errors: by_class(
                r,
                "strata_journal_append_errors_total",
                "Appends that failed.",
            ),
            reads: by_class(
                r,
                "strata_journal_read_batches_total",
                "Batches returned to readers.",
            ),
            read_bytes: by_class(
                r,
                "strata_journal_read_bytes_total",
                "Bytes returned to readers.",
            ),
            fsync_seconds: histogram(
                r,
                "strata_journal_fsync_seconds",
                "fsync latency.",
                0.000_05,
            ),
            fsync_errors: counter(
                r,
                "strata_journal_fsync_errors_total",
                "fsyncs that failed.",
            ),
            corruptions: counter(
                r,
                "strata_journal_corruptions_total",
                "Corrupt batches met while reading.",
            ),
            segments: gauge(r, "strata_journal_segments", "Segment files open."),
            replica_truncations: counter(
                r,
                "strata_journal_replica_truncations_total",
                "Divergent tails removed by replicas.",
            ),
            rolls: counter(r, "strata_journal_segment_rolls_total", "Segment rolls."),
            retention_removed: counter(
                r,
                "strata_journal_retention_removed_segments_total",
                "Segments (or batches) removed by retention or delete-before.",
            ),
            retention_removed_bytes: counter(
                r,
                "strata_journal_retention_removed_bytes_total",
                "Bytes removed by retention or delete-before.",
            ),
            recovery_truncated_bytes: counter(
                r,
                "strata_journal_recovery_truncated_bytes_total",
                "Bytes cut from torn or corrupt segment tails at open.",
            ),
            open_seconds: histogram(
                r,
                "strata_journal_open_seconds",
                "Time to open the journal.",
                0.001,
            ),
            streams: gauge(r, "strata_journal_streams", "Streams defined."),
            streams_failed: gauge(
                r,
                "strata_journal_streams_failed",
                "Streams found at open that could not be opened and are not served.",
            ),
        }
    }
}
