//! Passwords: argon2id hashes in PHC form (never the password itself), verified off the
//! async workers with a bound on verifications running at once, so a flood of CONNECTs with
//! guessed passwords costs a queue, not every core and gigabytes of argon2 memory.
//!
//! Successful verifications are remembered (a keyed SHA-256 of hash and password, a key
//! drawn per process) so that a reconnect storm of good clients does not pay argon2 again;
//! a failed one is never remembered.

use std::collections::HashSet;
use std::sync::Arc;

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier as _};
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

/// Verifications remembered at most; the memory is cleared when it fills.
const REMEMBERED: usize = 100_000;

/// Hashes `password` with argon2id (OWASP parameters: 19 MiB, 2 passes) and a random salt.
pub fn hash(password: &str) -> Result<String, String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| format!("cannot hash the password: {e}"))
}

/// A hash of a random password, verified in place of an unknown user's: same cost, never a
/// match.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        let random: [u8; 16] = rand::random();
        let text: String = random.iter().map(|b| format!("{b:02x}")).collect();
        hash(&text).unwrap_or_default()
    })
}

/// Whether `phc` is an argon2 hash this build can verify.
pub fn is_valid_hash(phc: &str) -> bool {
    phc.starts_with("$argon2") && argon2::password_hash::phc::PasswordHash::new(phc).is_ok()
}

/// Verifies passwords against hashes, a bounded number at once.
#[derive(Debug, Clone)]
pub struct PasswordVerifier {
    permits: Arc<Semaphore>,
    key: [u8; 32],
    verified: Arc<Mutex<HashSet<[u8; 32]>>>,
}

impl PasswordVerifier {
    /// A verifier running at most `concurrency` argon2 verifications at once.
    pub fn new(concurrency: usize) -> Self {
        PasswordVerifier {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            key: rand::random(),
            verified: Arc::new(Mutex::new(HashSet::new())),
        }
    }

    fn fingerprint(&self, phc: &str, password: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.key);
        h.update((phc.len() as u64).to_be_bytes());
        h.update(phc.as_bytes());
        h.update(password.as_bytes());
        h.finalize().into()
    }

    /// Whether `password` matches the PHC hash `phc`.
    pub async fn verify(&self, phc: &str, password: &str) -> bool {
        let print = self.fingerprint(phc, password);
        if self.verified.lock().contains(&print) {
            return true;
        }
        let Ok(_permit) = self.permits.acquire().await else {
            return false;
        };
        let (phc_owned, pw) = (phc.to_string(), password.to_string());
        let ok = tokio::task::spawn_blocking(move || {
            Argon2::default()
                .verify_password(pw.as_bytes(), phc_owned.as_str())
                .is_ok()
        })
        .await
        .unwrap_or(false);
        if ok {
            let mut verified = self.verified.lock();
            if verified.len() >= REMEMBERED {
                verified.clear();
            }
            verified.insert(print);
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let phc = hash("correct horse").unwrap();
        assert!(phc.starts_with("$argon2id$"), "{phc}");
        assert!(is_valid_hash(&phc));
        assert!(!is_valid_hash("plain"));
        let v = PasswordVerifier::new(2);
        assert!(v.verify(&phc, "correct horse").await);
        assert!(v.verify(&phc, "correct horse").await, "remembered");
        assert!(!v.verify(&phc, "wrong").await);
        assert!(!v.verify("not a hash", "x").await);
    }
}
