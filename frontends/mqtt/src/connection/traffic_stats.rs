//! A connection's traffic counters, gathered locally and added to the shared metrics in
//! bulk: the shared histogram and counters cost atomic writes on cache lines every
//! connection shares, more than a message's own handling on the hot paths. Inbound
//! PUBLISH counts go in once per socket read; delivery latency and payload bytes sent once
//! per window.

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

/// PUBLISH packets and their payload bytes received during one socket read, by QoS.
#[derive(Debug, Default)]
pub(super) struct Inbound {
    packets: [u32; 3],
    bytes: [u64; 3],
}

impl Inbound {
    /// Counts one PUBLISH.
    pub(super) fn record(&mut self, qos: usize, bytes: usize) {
        self.packets[qos] += 1;
        self.bytes[qos] += bytes as u64;
    }

    /// PUBLISH packets and payload bytes counted since the last flush.
    pub(super) fn totals(&self) -> (u64, u64) {
        let packets: u32 = self.packets.iter().sum();
        (u64::from(packets), self.bytes.iter().sum())
    }

    /// Adds what was counted to the shared metrics and starts again.
    pub(super) fn flush(&mut self, metrics: &MqttMetrics) {
        let Inbound { packets, bytes } = std::mem::take(self);
        let total: u32 = packets.iter().sum();
        if total == 0 {
            return;
        }
        metrics.packets_in[3].inc_by(u64::from(total));
        for q in 0..3 {
            if packets[q] > 0 {
                metrics.messages_in[q].inc_by(u64::from(packets[q]));
                metrics.payload_in[q].inc_by(bytes[q]);
            }
        }
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
        let deliver = |stats: &mut _, qos, bytes, at| {
            record(
                stats,
                &metrics,
                qos,
                bytes,
                Some(Duration::from_micros(5)),
                at,
            );
        };
        for _ in 0..MAX_PENDING - 1 {
            deliver(&mut stats, 1, 10, t0);
        }
        assert_eq!(metrics.delivery.get_sample_count(), 0, "window still open");
        deliver(&mut stats, 1, 10, t0);
        assert_eq!(metrics.delivery.get_sample_count(), u64::from(MAX_PENDING));
        assert_eq!(metrics.payload_out[1].get(), u64::from(MAX_PENDING) * 10);
        assert!(stats.is_none());

        deliver(&mut stats, 0, 3, t0);
        deliver(&mut stats, 2, 4, t0 + WINDOW);
        assert_eq!(
            metrics.delivery.get_sample_count(),
            u64::from(MAX_PENDING) + 2
        );
        deliver(&mut stats, 2, 4, t0 + WINDOW);
        flush(&mut stats, &metrics);
        assert_eq!(metrics.payload_out[2].get(), 8);
        assert_eq!(
            metrics.delivery.get_sample_count(),
            u64::from(MAX_PENDING) + 3
        );
        // A delivery without a latency counts its bytes only.
        record(&mut stats, &metrics, 0, 5, None, t0);
        flush(&mut stats, &metrics);
        assert_eq!(metrics.payload_out[0].get(), 8);
        assert_eq!(
            metrics.delivery.get_sample_count(),
            u64::from(MAX_PENDING) + 3
        );
    }

    #[test]
    fn inbound_counts_reach_the_shared_counters_once_flushed() {
        let metrics = MqttMetrics::new(&prometheus::Registry::new());
        let mut inbound = Inbound::default();
        inbound.record(1, 10);
        inbound.record(1, 5);
        inbound.record(2, 7);
        assert_eq!(metrics.messages_in[1].get(), 0);
        inbound.flush(&metrics);
        assert_eq!(metrics.packets_in[3].get(), 3);
        assert_eq!(
            (metrics.messages_in[1].get(), metrics.payload_in[1].get()),
            (2, 15)
        );
        assert_eq!(
            (metrics.messages_in[2].get(), metrics.payload_in[2].get()),
            (1, 7)
        );
        inbound.flush(&metrics);
        assert_eq!(
            metrics.packets_in[3].get(),
            3,
            "a flush starts again from zero"
        );
    }
}
