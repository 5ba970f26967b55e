//! Delivery latency and payload bytes sent, gathered per connection and added to the shared
//! metrics once per window: the shared histogram and counters cost several atomic writes
//! per update, more than a small pump's deliveries themselves.

use std::time::{Duration, Instant};

use prometheus::local::LocalHistogram;

use crate::metrics::MqttMetrics;

/// How long deliveries wait at most before they show in the shared metrics.
pub(super) const WINDOW: Duration = Duration::from_millis(50);
/// ... or how many, whichever comes first.
const MAX_PENDING: u32 = 256;

/// The deliveries of the current window. Boxed in the connection and only while a window
/// is open, so idle connections carry one pointer.
pub(super) struct DeliveryStats {
    latency: LocalHistogram,
    payload: [u64; 3],
    pending: u32,
    opened: Instant,
}

impl DeliveryStats {
    fn new(metrics: &MqttMetrics, now: Instant) -> Self {
        DeliveryStats {
            latency: metrics.delivery.local(),
            payload: [0; 3],
            pending: 0,
            opened: now,
        }
    }

    /// When the window must be flushed.
    pub(super) fn due(&self) -> Instant {
        self.opened + WINDOW
    }

    fn flush(self, metrics: &MqttMetrics) {
        self.latency.flush();
        for (counter, bytes) in metrics.payload_out.iter().zip(self.payload) {
            if bytes > 0 {
                counter.inc_by(bytes);
            }
        }
    }
}

/// Records one delivery of `bytes` payload bytes at `qos`, `latency` after its arrival
/// (none: not a live delivery, its latency is not observed); flushes the window when it
/// is full or old.
pub(super) fn record(
    stats: &mut Option<Box<DeliveryStats>>,
    metrics: &MqttMetrics,
    qos: usize,
    bytes: usize,
    latency: Option<Duration>,
    now: Instant,
) {
    let s = stats.get_or_insert_with(|| Box::new(DeliveryStats::new(metrics, now)));
    if let Some(latency) = latency {
        s.latency.observe(latency.as_secs_f64());
    }
    s.payload[qos] += bytes as u64;
    s.pending += 1;
    if s.pending >= MAX_PENDING || now >= s.due() {
        flush(stats, metrics);
    }
}

/// Adds the open window, if any, to the shared metrics.
pub(super) fn flush(stats: &mut Option<Box<DeliveryStats>>, metrics: &MqttMetrics) {
    if let Some(s) = stats.take() {
        s.flush(metrics);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_reach_the_shared_metrics_when_full_old_or_flushed() {
        let metrics = MqttMetrics::new(&prometheus::Registry::new());
        let mut stats = None;
        let t0 = Instant::now();
        for _ in 0..MAX_PENDING - 1 {
            record(
                &mut stats,
                &metrics,
                1,
                10,
                Some(Duration::from_micros(5)),
                t0,
            );
        }
        assert_eq!(metrics.delivery.get_sample_count(), 0, "window still open");
        record(
            &mut stats,
            &metrics,
            1,
            10,
            Some(Duration::from_micros(5)),
            t0,
        );
        assert_eq!(metrics.delivery.get_sample_count(), u64::from(MAX_PENDING));
        assert_eq!(metrics.payload_out[1].get(), u64::from(MAX_PENDING) * 10);
        assert!(stats.is_none());

        record(&mut stats, &metrics, 0, 3, Some(Duration::ZERO), t0);
        record(
            &mut stats,
            &metrics,
            2,
            4,
            Some(Duration::ZERO),
            t0 + WINDOW,
        );
        assert_eq!(
            metrics.delivery.get_sample_count(),
            u64::from(MAX_PENDING) + 2
        );
        record(
            &mut stats,
            &metrics,
            2,
            4,
            Some(Duration::ZERO),
            t0 + WINDOW,
        );
        flush(&mut stats, &metrics);
        assert_eq!(metrics.payload_out[2].get(), 8);
        assert_eq!(
            metrics.delivery.get_sample_count(),
            u64::from(MAX_PENDING) + 3
        );
    }
}
