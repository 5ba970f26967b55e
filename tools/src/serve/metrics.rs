//! `NodeMetrics`: the node's Prometheus registry (shared with the journal) and node-level gauges.

use std::time::{Duration, Instant};

use prometheus::{Gauge, IntGaugeVec, Opts, Registry, TextEncoder};

/// The version reported by `/health` and `strata_build_info`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The content type of Prometheus' text exposition format 0.0.4.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One registry for the whole node: the journal and, later, every frontend register into it,
/// and `/metrics` renders all of it.
pub struct NodeMetrics {
    registry: Registry,
    uptime: Gauge,
    started: Instant,
}

impl NodeMetrics {
    /// Creates the registry with the process collector, `strata_build_info` and
    /// `strata_uptime_seconds`. The clock for uptime starts now.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();

        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;

        let build_info = IntGaugeVec::new(
            Opts::new(
                "strata_build_info",
                "Build of this node; the value is always 1",
            ),
            &["version"],
        )?;
        build_info.with_label_values(&[VERSION]).set(1);
        registry.register(Box::new(build_info))?;

        let uptime = Gauge::new("strata_uptime_seconds", "Seconds since this node started")?;
        registry.register(Box::new(uptime.clone()))?;

        Ok(Self {
            registry,
            uptime,
            started: Instant::now(),
        })
    }

    /// The registry to hand to components that export metrics. Clones share the same metrics.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Time since [`NodeMetrics::new`].
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Every registered metric in the text exposition format.
    pub fn render(&self) -> Result<String, prometheus::Error> {
        self.uptime.set(self.uptime().as_secs_f64());
        TextEncoder::new().encode_to_string(&self.registry.gather())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_includes_node_metrics() {
        let metrics = NodeMetrics::new().expect("metrics register once");
        let text = metrics.render().expect("renders");
        assert!(
            text.contains(&format!("strata_build_info{{version=\"{VERSION}\"}} 1")),
            "{text}"
        );
        assert!(text.contains("strata_uptime_seconds "), "{text}");
        #[cfg(target_os = "linux")]
        assert!(text.contains("process_cpu_seconds_total"), "{text}");
    }

    #[test]
    fn registry_clones_share_metrics() {
        let metrics = NodeMetrics::new().expect("metrics register once");
        let counter = prometheus::IntCounter::new("component_events_total", "test").expect("valid");
        metrics
            .registry()
            .clone()
            .register(Box::new(counter.clone()))
            .expect("registers");
        counter.inc();
        let text = metrics.render().expect("renders");
        assert!(text.contains("component_events_total 1"), "{text}");
    }
}
