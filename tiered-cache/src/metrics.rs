//! Metrics of the object tier: cache hits per tier, object GETs and PUTs, uploads and
//! their backlog, deletions.

use std::time::Instant;

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Registry,
};
use strata_metrics::{counter, counter_vec, doubling, gauge, histogram, register};

/// Counters, gauges and histograms of the tier; cheap to clone.
#[derive(Debug, Clone)]
pub struct TierMetrics {
    /// Block reads by the tier that served them: `memory`, `disk` or `object`.
    pub reads: IntCounterVec,
    /// Bytes of block reads by tier.
    pub read_bytes: IntCounterVec,
    /// Latency of block reads by tier.
    pub read_seconds: HistogramVec,
    /// Ranged GETs sent to object storage (cache misses and read-ahead).
    pub gets: IntCounter,
    /// Failed GETs.
    pub get_errors: IntCounter,
    /// Objects uploaded.
    pub uploads: IntCounter,
    /// Bytes uploaded.
    pub upload_bytes: IntCounter,
    /// Failed uploads (each retried later).
    pub upload_failures: IntCounter,
    /// Upload latency.
    pub upload_seconds: Histogram,
    /// Bytes of sealed segments waiting for upload.
    pub upload_backlog_bytes: IntGauge,
    /// Sealed segments waiting for upload.
    pub upload_backlog_segments: IntGauge,
    /// Objects deleted by retention.
    pub objects_deleted: IntCounter,
    /// Objects deleted because no manifest names them.
    pub orphans_deleted: IntCounter,
    /// Local segment copies deleted after upload.
    pub local_deleted: IntCounter,
}

fn buckets() -> Vec<f64> {
    doubling(0.000_01, 24)
}

impl TierMetrics {
    /// Registers the tier's metrics in `r`.
    pub fn new(r: &Registry) -> Self {
        let by_tier = |name: &str, help: &str| counter_vec(r, name, help, &["tier"]);
        TierMetrics {
            reads: by_tier(
                "strata_tier_block_reads_total",
                "Block reads by the tier that served them (memory, disk, object)",
            ),
            read_bytes: by_tier(
                "strata_tier_block_read_bytes_total",
                "Bytes of block reads by tier",
            ),
            read_seconds: register(
                r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "strata_tier_block_read_seconds",
                        "Block read latency by tier",
                    )
                    .buckets(buckets()),
                    &["tier"],
                )
                .unwrap_or_else(|e| unreachable!("metric read_seconds: {e}")),
            ),
            gets: counter(
                r,
                "strata_tier_object_gets_total",
                "Ranged GETs sent to object storage",
            ),
            get_errors: counter(
                r,
                "strata_tier_object_get_errors_total",
                "GETs that failed after retries",
            ),
            uploads: counter(r, "strata_tier_uploads_total", "Objects uploaded"),
            upload_bytes: counter(r, "strata_tier_upload_bytes_total", "Bytes uploaded"),
            upload_failures: counter(
                r,
                "strata_tier_upload_failures_total",
                "Uploads that failed (retried with backoff)",
            ),
            upload_seconds: histogram(r, "strata_tier_upload_seconds", "Upload latency", buckets()),
            upload_backlog_bytes: gauge(
                r,
                "strata_tier_upload_backlog_bytes",
                "Bytes of sealed segments waiting for upload",
            ),
            upload_backlog_segments: gauge(
                r,
                "strata_tier_upload_backlog_segments",
                "Sealed segments waiting for upload",
            ),
            objects_deleted: counter(
                r,
                "strata_tier_objects_deleted_total",
                "Objects deleted by retention",
            ),
            orphans_deleted: counter(
                r,
                "strata_tier_orphans_deleted_total",
                "Objects deleted because no manifest names them",
            ),
            local_deleted: counter(
                r,
                "strata_tier_local_segments_deleted_total",
                "Local segment copies deleted after their upload",
            ),
        }
    }

    /// Counts one GET.
    pub fn observe_get(&self, ok: bool) {
        self.gets.inc();
        if !ok {
            self.get_errors.inc();
        }
    }

    /// Counts one block read served by `tier`.
    pub fn observe_read(&self, tier: &str, started: Instant, bytes: usize) {
        self.reads.with_label_values(&[tier]).inc();
        self.read_bytes
            .with_label_values(&[tier])
            .inc_by(bytes as u64);
        self.read_seconds
            .with_label_values(&[tier])
            .observe(started.elapsed().as_secs_f64());
    }

    /// Counts one upload.
    pub fn observe_upload(&self, started: Instant, bytes: u64, ok: bool) {
        if ok {
            self.uploads.inc();
            self.upload_bytes.inc_by(bytes);
            self.upload_seconds.observe(started.elapsed().as_secs_f64());
        } else {
            self.upload_failures.inc();
        }
    }
}
