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

/// The most a socket read takes while its client is behind its rates: one turn of the
/// runtime then handles at most a few hundred minimal publishes (a few dozen of typical
/// size), not a whole socket buffer (which would stall the other connections on that
/// worker for milliseconds every throttle). A read before the client first falls behind
/// is not capped: the charge comes after the read's packets are handled.
pub(super) const BEHIND_READ: usize = 2 * 1024;

/// The buckets of one connection.
#[derive(Debug)]
pub(super) struct RateLimiter {
    /// No socket read before this (the client is ahead of its rates).
    pub(super) until: Option<Instant>,
    /// The last charge put the client behind its rates: read in small pieces until a read
    /// that drained the socket (shorter than the cap) finds it within them.
    behind: bool,
    /// The last read took less than it had room for: the socket had no more then.
    drained: bool,
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
            behind: false,
            drained: false,
            messages: TokenBucket::new(config.max_messages_per_sec),
            bytes: TokenBucket::new(config.max_bytes_per_sec),
            // The node refuses other values; kept finite here whoever configures it.
            hard_cap_secs: if config.rate_hard_cap_secs.is_nan() {
                3600.0
            } else {
                config.rate_hard_cap_secs.clamp(0.001, 3600.0)
            },
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
        // Only a read that drained the socket ends the small reads: a full capped read says
        // more is waiting, whatever it completed (a client could otherwise put one small
        // PUBLISH first and have the rest of its backlog read whole).
        self.behind = debt > 0.0 || (self.behind && !self.drained);
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

    /// Notes a socket read of `n` bytes into `room` free bytes (at most [`Self::read_cap`]),
    /// before the packets it completed are charged.
    pub(super) fn read(&mut self, n: usize, room: usize) {
        self.drained = n < room;
    }

    /// The most the next socket read may take ([`BEHIND_READ`] while the client is behind
    /// its rates, otherwise no bound beyond the connection's own).
    pub(super) fn read_cap(&self) -> usize {
        if self.behind { BEHIND_READ } else { usize::MAX }
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

    #[test]
    fn reads_are_small_while_behind_and_whole_again_after() {
        let mut l = limiter(10.0, 0.0);
        let t0 = l.at;
        assert_eq!(l.read_cap(), usize::MAX);
        assert_eq!(
            l.charge(15, 0, t0),
            Verdict::Wait(Duration::from_millis(500))
        );
        assert_eq!(l.read_cap(), BEHIND_READ);
        // A full capped read, even one within the rates, says more is waiting: still small.
        l.read(BEHIND_READ, BEHIND_READ);
        assert_eq!(l.charge(1, 0, t0 + Duration::from_secs(2)), Verdict::Go);
        assert_eq!(l.read_cap(), BEHIND_READ);
        // So is a read that filled a smaller buffer.
        l.read(512, 512);
        assert_eq!(l.charge(1, 0, t0 + Duration::from_secs(2)), Verdict::Go);
        assert_eq!(l.read_cap(), BEHIND_READ);
        // A read that drained the socket within the rates ends it.
        l.read(100, BEHIND_READ);
        assert_eq!(l.charge(0, 0, t0 + Duration::from_secs(2)), Verdict::Go);
        assert_eq!(l.read_cap(), usize::MAX);
    }
}
