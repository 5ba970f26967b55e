//! Registering metrics, the one way every Strata crate does it. Definitions are static
//! (names, help, labels written in the code), so a bad one is a bug and panics with its
//! name; registering the same series twice in one registry (two journals in a test, a
//! frontend restarted) keeps the first and logs it at debug.

use prometheus::core::Collector;
use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// Registers `metric` in `registry` and returns it.
pub fn register<C: Collector + Clone + 'static>(registry: &Registry, metric: C) -> C {
    register_collector(registry, Box::new(metric.clone()));
    metric
}

/// Registers a collector that is not itself a metric (one that gathers at scrape time).
pub fn register_collector(registry: &Registry, collector: Box<dyn Collector>) {
    if let Err(e) = registry.register(collector) {
        tracing::debug!(error = %e, "metric already registered");
    }
}

/// A registered counter.
pub fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    register(
        registry,
        IntCounter::new(name, help).unwrap_or_else(|e| unreachable!("metric {name}: {e}")),
    )
}

/// A registered gauge.
pub fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    register(
        registry,
        IntGauge::new(name, help).unwrap_or_else(|e| unreachable!("metric {name}: {e}")),
    )
}

/// A registered counter with these labels.
pub fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(
        registry,
        IntCounterVec::new(Opts::new(name, help), labels)
            .unwrap_or_else(|e| unreachable!("metric {name}: {e}")),
    )
}

/// A registered gauge with these labels.
pub fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    register(
        registry,
        IntGaugeVec::new(Opts::new(name, help), labels)
            .unwrap_or_else(|e| unreachable!("metric {name}: {e}")),
    )
}

/// A registered histogram with these bucket bounds.
pub fn histogram(registry: &Registry, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    register(
        registry,
        Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
            .unwrap_or_else(|e| unreachable!("metric {name}: {e}")),
    )
}

/// `count` bucket bounds from `start`, each twice the last.
pub fn doubling(start: f64, count: usize) -> Vec<f64> {
    prometheus::exponential_buckets(start, 2.0, count).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_registration_keeps_the_first_series() {
        let r = Registry::new();
        let a = counter(&r, "strata_test_total", "A test counter.");
        let b = counter(&r, "strata_test_total", "A test counter.");
        a.inc();
        b.inc();
        let families = r.gather();
        assert_eq!(families.len(), 1);
        assert_eq!(families[0].get_metric()[0].get_counter().get_value(), 1.0);
    }
}
