//! Kafka client quotas: byte rates per connection for Produce (the record bytes sent) and
//! Fetch (the record bytes returned). A client ahead of its rate gets `throttle_time_ms` in
//! the response, and its connection is muted that long (its next request is read only
//! then), as Kafka brokers do since KIP-219; nothing is refused or dropped.

use std::time::{Duration, Instant};

use strata_frontend::rate::TokenBucket;

use crate::config::KafkaConfig;

/// The longest a single response throttles a client.
const MAX_THROTTLE: Duration = Duration::from_secs(30);

/// What a charge is for.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// Produce: record bytes received.
    Produce,
    /// Fetch: record bytes sent.
    Fetch,
}

/// The quotas of one connection.
#[derive(Debug)]
pub struct Quotas {
    produce: TokenBucket,
    fetch: TokenBucket,
    at: Instant,
    /// The next request is read only after this.
    pub mute_until: Option<Instant>,
}

impl Quotas {
    /// The configured quotas, or none when no rate is set.
    pub fn new(config: &KafkaConfig) -> Option<Box<Self>> {
        let produce = TokenBucket::new(config.producer_byte_rate);
        let fetch = TokenBucket::new(config.consumer_byte_rate);
        (produce.is_on() || fetch.is_on()).then(|| {
            Box::new(Quotas {
                produce,
                fetch,
                at: Instant::now(),
                mute_until: None,
            })
        })
    }

    /// Charges `bytes`; the throttle time to answer with, in milliseconds (0: none). The
    /// connection is muted as long.
    pub fn charge(&mut self, kind: Kind, bytes: usize, now: Instant) -> i32 {
        let secs = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        // Both buckets refill with time; only the one charged takes bytes.
        let (charged, other) = match kind {
            Kind::Produce => (&mut self.produce, &mut self.fetch),
            Kind::Fetch => (&mut self.fetch, &mut self.produce),
        };
        other.charge(secs, 0.0);
        let debt = Duration::from_secs_f64(charged.charge(secs, bytes as f64)).min(MAX_THROTTLE);
        if debt.is_zero() {
            return 0;
        }
        self.mute_until = Some(now + debt);
        debt.as_millis().max(1) as i32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_ahead_of_its_rate_is_throttled() {
        let config = KafkaConfig {
            producer_byte_rate: 1000.0,
            ..KafkaConfig::default()
        };
        let mut q = Quotas::new(&config).expect("a rate is set");
        let now = Instant::now();
        assert_eq!(q.charge(Kind::Produce, 1000, now), 0);
        assert_eq!(q.charge(Kind::Produce, 500, now), 500);
        assert!(q.mute_until.is_some());
        assert_eq!(q.charge(Kind::Fetch, 1 << 20, now), 0, "no fetch quota");
        assert!(Quotas::new(&KafkaConfig::default()).is_none());
    }
}
