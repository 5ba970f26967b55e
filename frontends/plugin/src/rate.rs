//! A token bucket for per-client rates (MQTT message and byte rates, Kafka quotas): it
//! refills at `rate` per second up to one second's worth, and tells how far in debt a
//! charge leaves it, in seconds — how long the client must wait to be back within its rate.

/// One rate. A rate of 0 or less never charges.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    tokens: f64,
}

impl TokenBucket {
    /// A full bucket for `rate` units per second.
    pub fn new(rate: f64) -> Self {
        TokenBucket { rate, tokens: rate }
    }

    /// Whether the bucket limits anything.
    pub fn is_on(&self) -> bool {
        self.rate > 0.0
    }

    /// Refills for `secs`, takes `n`; the seconds of debt afterwards (0 when none).
    pub fn charge(&mut self, secs: f64, n: f64) -> f64 {
        if self.rate <= 0.0 {
            return 0.0;
        }
        // One second of burst at most.
        self.tokens = (self.tokens + secs * self.rate).min(self.rate) - n;
        (-self.tokens / self.rate).max(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debt_is_the_wait_back_to_the_rate() {
        let mut b = TokenBucket::new(100.0);
        assert_eq!(b.charge(0.0, 100.0), 0.0, "one second of burst");
        assert!((b.charge(0.0, 50.0) - 0.5).abs() < 1e-9);
        assert!((b.charge(1.0, 0.0) - 0.0).abs() < 1e-9, "refilled");
        let mut off = TokenBucket::new(0.0);
        assert_eq!(off.charge(0.0, 1e9), 0.0);
        assert!(!off.is_on());
    }
}
