//! A client's message and byte rates (`max_messages_per_sec`, `max_bytes_per_sec`): token
//! buckets charged after each socket read. A client ahead of its rate is throttled by
//! reading its socket later (TCP then slows it down); one that gets further ahead than
//! `rate_hard_cap_secs` in a single burst is disconnected (MQTT 5: 0x96, message rate too
//! high). Decided here without I/O; the connection sleeps or disconnects.

use std::time::{Duration, Instant};

use strata_frontend::rate::TokenBucket;

use crate::config::MqttConfig;

/// What to do after a read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Verdict {
    /// Within the rates: read on.
    Go,
    /// Ahead of a rate: read again only after this long.
    Wait(Duration),
    /// Too far ahead: disconnect.
    Cut,
}

/// The buckets of one connection.
#[derive(Debug)]
pub(super) struct RateLimiter {
    /// No socket read before this (the client is ahead of its rates).
    pub(super) until: Option<Instant>,
    messages: TokenBucket,
    bytes: TokenBucket,
    hard_cap_secs: f64,
    at: Instant,
}

impl RateLimiter {
    /// A limiter for the configured rates, or none when neither is set.
    pub(super) fn new(config: &MqttConfig, now: Instant) -> Option<Box<Self>> {
        if config.max_messages_per_sec <= 0.0 && config.max_bytes_per_sec <= 0.0 {
            return None;
        }
        Some(Box::new(RateLimiter {
            until: None,
            messages: TokenBucket::new(config.max_messages_per_sec),
            bytes: TokenBucket::new(config.max_bytes_per_sec),
            hard_cap_secs: config.rate_hard_cap_secs.max(0.001),
            at: now,
        }))
    }

    /// Charges the PUBLISH messages and payload bytes of one read.
    pub(super) fn charge(&mut self, messages: u64, bytes: u64, now: Instant) -> Verdict {
        let secs = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        let debt = self
            .messages
            .charge(secs, messages as f64)
            .max(self.bytes.charge(secs, bytes as f64));
        if debt > self.hard_cap_secs {
            Verdict::Cut
        } else if debt > 0.0 {
            let wait = Duration::from_secs_f64(debt);
            self.until = Some(now + wait);
            Verdict::Wait(wait)
        } else {
            Verdict::Go
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn limiter(messages: f64, bytes: f64) -> Box<RateLimiter> {
        let config = MqttConfig {
            max_messages_per_sec: messages,
            max_bytes_per_sec: bytes,
            rate_hard_cap_secs: 5.0,
            ..MqttConfig::default()
        };
        RateLimiter::new(&config, Instant::now()).unwrap()
    }

    #[test]
    fn within_the_rate_reads_on_beyond_it_waits_far_beyond_it_is_cut() {
        assert!(RateLimiter::new(&MqttConfig::default(), Instant::now()).is_none());
        let mut l = limiter(10.0, 0.0);
        let t0 = l.at;
        assert_eq!(l.charge(10, 0, t0), Verdict::Go, "a second of burst");
        match l.charge(5, 0, t0) {
            Verdict::Wait(d) => assert!((d.as_secs_f64() - 0.5).abs() < 1e-6, "{d:?}"),
            v => panic!("{v:?}"),
        }
        // After waiting it out, the next message is within the rate again.
        let t1 = t0 + Duration::from_millis(600);
        assert_eq!(l.charge(1, 0, t1), Verdict::Go);
        assert_eq!(
            l.charge(100, 0, t1),
            Verdict::Cut,
            "ten seconds ahead in one burst"
        );
    }

    #[test]
    fn bytes_are_limited_too() {
        let mut l = limiter(0.0, 1000.0);
        let t0 = l.at;
        assert_eq!(l.charge(1, 1000, t0), Verdict::Go);
        assert!(matches!(l.charge(1, 2000, t0), Verdict::Wait(_)));
    }
}
