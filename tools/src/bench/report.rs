//! Latency histograms, process CPU time and the summary table of the benchmarks.

use std::time::Duration;

use hdrhistogram::Histogram;

/// A latency histogram in microseconds.
pub struct Latency(Histogram<u64>);

impl Latency {
    pub fn new() -> Self {
        // Three significant digits from 1 µs to 10 minutes; these bounds are valid.
        Latency(
            Histogram::new_with_bounds(1, 600_000_000, 3).unwrap_or_else(|e| unreachable!("{e}")),
        )
    }

    pub fn record(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros())
            .unwrap_or(u64::MAX)
            .clamp(1, 600_000_000);
        self.0.saturating_record(us);
    }

    pub fn merge(&mut self, other: &Latency) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.0.add(&other.0);
    }

    /// The `q` quantile in microseconds.
    pub fn quantile_us(&self, q: f64) -> u64 {
        self.0.value_at_quantile(q)
    }

    pub fn count(&self) -> u64 {
        self.0.len()
    }
}

/// CPU time (user + system) a process has used, from `/proc/<pid>/stat` (`pid` may be
/// `self`); `None` when it cannot be read.
pub fn cpu_of(pid: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(") ")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    // Linux reports these in USER_HZ, which is 100 on every supported architecture.
    Some(Duration::from_millis((ticks(11)? + ticks(12)?) * 10))
}

/// CPU time this process has used.
pub fn process_cpu() -> Duration {
    cpu_of("self").unwrap_or(Duration::ZERO)
}

/// One row of the summary table.
pub struct Row {
    pub phase: String,
    pub records: u64,
    pub bytes: u64,
    pub elapsed: Duration,
    pub cpu: Duration,
    pub latency: Option<(u64, u64, u64)>,
}

impl Row {
    pub fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn records_per_s(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// CPU-seconds per million records.
    pub fn cpu_per_million(&self) -> f64 {
        self.cpu.as_secs_f64() / (self.records as f64 / 1e6).max(1e-12)
    }

    pub fn json(&self) -> serde_json::Value {
        let (p50, p99, p999) = self.latency.unwrap_or_default();
        serde_json::json!({
            "phase": self.phase,
            "records": self.records,
            "bytes": self.bytes,
            "seconds": self.elapsed.as_secs_f64(),
            "mb_per_s": self.mb_per_s(),
            "records_per_s": self.records_per_s(),
            "cpu_seconds": self.cpu.as_secs_f64(),
            "cpu_seconds_per_million": self.cpu_per_million(),
            "p50_us": p50, "p99_us": p99, "p999_us": p999,
        })
    }
}

/// Prints the rows as an aligned table.
pub fn print_table(rows: &[Row]) {
    println!(
        "{:<8} {:>12} {:>11} {:>12} {:>9} {:>9} {:>9} {:>9} {:>12}",
        "phase",
        "records",
        "MB/s",
        "records/s",
        "p50 µs",
        "p99 µs",
        "p999 µs",
        "seconds",
        "cpu s/M rec"
    );
    for r in rows {
        let lat = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
        println!(
            "{:<8} {:>12} {:>11.1} {:>12.0} {:>9} {:>9} {:>9} {:>9.2} {:>12.2}",
            r.phase,
            r.records,
            r.mb_per_s(),
            r.records_per_s(),
            lat(r.latency.map(|l| l.0)),
            lat(r.latency.map(|l| l.1)),
            lat(r.latency.map(|l| l.2)),
            r.elapsed.as_secs_f64(),
            r.cpu_per_million()
        );
    }
}
