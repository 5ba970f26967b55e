//! Kafka client quotas: byte rates for Produce (the record bytes sent) and Fetch (the record
//! bytes returned), per principal as Kafka keeps them: every connection of one SASL user
//! (or, without SASL, of one address) draws from the same buckets, and the buckets outlive
//! the connections for a while, so reconnecting or opening more connections gains nothing.
//! A client ahead of its rate gets `throttle_time_ms` in the response, and its connection is
//! muted that long (its next request is read only then), as Kafka brokers do since
//! KIP-219; nothing is refused or dropped.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use strata_frontend::rate::TokenBucket;

use crate::config::KafkaConfig;

/// The longest a single response throttles a client.
const MAX_THROTTLE: Duration = Duration::from_secs(30);
/// Principals whose buckets are kept before idle ones are forgotten.
const KEPT: usize = 4096;
/// How long an unused principal's buckets are kept (past it, they are full again anyway).
const IDLE: Duration = Duration::from_secs(60);

/// What a charge is for.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// Produce: record bytes received.
    Produce,
    /// Fetch: record bytes sent.
    Fetch,
}

/// The buckets of one principal.
#[derive(Debug)]
struct Buckets {
    produce: TokenBucket,
    fetch: TokenBucket,
    at: Instant,
}

/// Every principal's buckets, shared by the node's Kafka connections.
#[derive(Debug, Default)]
pub struct QuotaBook {
    by_principal: Mutex<HashMap<String, Arc<Mutex<Buckets>>>>,
}

impl QuotaBook {
    fn buckets(&self, config: &KafkaConfig, key: &str) -> Arc<Mutex<Buckets>> {
        let mut book = self.by_principal.lock();
        if let Some(b) = book.get(key) {
            return b.clone();
        }
        if book.len() >= KEPT {
            // Forget principals no connection uses that have been idle a while.
            book.retain(|_, b| Arc::strong_count(b) > 1 || b.lock().at.elapsed() < IDLE);
        }
        let b = Arc::new(Mutex::new(Buckets {
            produce: TokenBucket::new(config.producer_byte_rate),
            fetch: TokenBucket::new(config.consumer_byte_rate),
            at: Instant::now(),
        }));
        if book.len() < KEPT * 2 {
            book.insert(key.to_string(), b.clone());
        }
        b
    }
}

/// A connection's hold on its principal's buckets.
#[derive(Debug)]
pub struct Quotas {
    key: String,
    buckets: Option<Arc<Mutex<Buckets>>>,
    /// The next request is read only after this.
    pub mute_until: Option<Instant>,
}

impl Quotas {
    /// Quotas for a connection, or none when no rate is configured.
    pub fn new(config: &KafkaConfig) -> Option<Box<Self>> {
        (config.producer_byte_rate > 0.0 || config.consumer_byte_rate > 0.0).then(|| {
            Box::new(Quotas {
                key: String::new(),
                buckets: None,
                mute_until: None,
            })
        })
    }

    /// Charges `bytes` to `principal`'s buckets; the throttle time to answer with, in
    /// milliseconds (0: none). The connection is muted as long.
    pub fn charge(
        &mut self,
        book: &QuotaBook,
        config: &KafkaConfig,
        principal: &str,
        kind: Kind,
        bytes: usize,
        now: Instant,
    ) -> i32 {
        if self.buckets.is_none() || self.key != principal {
            self.key = principal.to_string();
            self.buckets = Some(book.buckets(config, principal));
        }
        let Some(shared) = &self.buckets else {
            return 0;
        };
        let mut b = shared.lock();
        let secs = now.saturating_duration_since(b.at).as_secs_f64();
        b.at = b.at.max(now);
        // Both buckets refill with time; only the one charged takes bytes.
        let Buckets { produce, fetch, .. } = &mut *b;
        let (charged, other) = match kind {
            Kind::Produce => (produce, fetch),
            Kind::Fetch => (fetch, produce),
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
    fn connections_of_one_principal_share_their_quota() {
        let config = KafkaConfig {
            producer_byte_rate: 1000.0,
            ..KafkaConfig::default()
        };
        let book = QuotaBook::default();
        let mut first = Quotas::new(&config).expect("a rate is set");
        let mut second = Quotas::new(&config).expect("a rate is set");
        let now = Instant::now();
        assert_eq!(
            first.charge(&book, &config, "User:a", Kind::Produce, 1000, now),
            0
        );
        assert_eq!(
            second.charge(&book, &config, "User:a", Kind::Produce, 500, now),
            500,
            "the second connection draws from the same bucket"
        );
        assert!(second.mute_until.is_some());
        assert_eq!(
            second.charge(&book, &config, "User:b", Kind::Produce, 500, now),
            0
        );
        assert_eq!(
            first.charge(&book, &config, "User:a", Kind::Fetch, 1 << 20, now),
            0
        );
        assert!(Quotas::new(&KafkaConfig::default()).is_none());
    }
}
