//! Admin API tokens: named, with a role (viewer: reads only; administrator: everything),
//! created with a random secret shown once and kept as its SHA-256 only (a token is 256
//! random bits: a fast hash is enough, and a lookup by hash leaks no timing about it).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Read-only: `GET` requests.
    Viewer,
    /// Every request.
    Administrator,
}

/// A stored token (its secret's hash, never the secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredToken {
    /// Its name, for people and the audit log.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// Hex SHA-256 of the secret.
    pub sha256: String,
}

/// A token as the admin API lists it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TokenView {
    /// Its name.
    pub name: String,
    /// What it may do.
    pub role: Role,
}

/// Hex SHA-256 of a token's secret.
pub fn digest(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A new secret: 256 random bits, hex.
pub fn new_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Tokens by the hash of their secret.
#[derive(Debug, Default)]
pub struct Tokens {
    by_hash: BTreeMap<String, StoredToken>,
}

impl Tokens {
    /// Adds or replaces a token (by name).
    pub fn insert(&mut self, token: StoredToken) {
        self.by_hash.retain(|_, t| t.name != token.name);
        self.by_hash.insert(token.sha256.clone(), token);
    }

    /// Removes the token called `name`; whether there was one.
    pub fn remove(&mut self, name: &str) -> bool {
        let before = self.by_hash.len();
        self.by_hash.retain(|_, t| t.name != name);
        self.by_hash.len() != before
    }

    /// The token whose secret is `secret`.
    pub fn find(&self, secret: &str) -> Option<&StoredToken> {
        self.by_hash.get(&digest(secret))
    }

    /// Every token, without secrets.
    pub fn list(&self) -> Vec<TokenView> {
        let mut v: Vec<TokenView> = self
            .by_hash
            .values()
            .map(|t| TokenView {
                name: t.name.clone(),
                role: t.role,
            })
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn tokens_are_found_by_their_secret_only() {
        let mut t = Tokens::default();
        let secret = new_secret();
        assert_eq!(secret.len(), 64);
        t.insert(StoredToken {
            name: "ops".into(),
            role: Role::Viewer,
            sha256: digest(&secret),
        });
        assert_eq!(t.find(&secret).map(|t| t.role), Some(Role::Viewer));
        assert!(t.find("guess").is_none());
        let again = new_secret();
        t.insert(StoredToken {
            name: "ops".into(),
            role: Role::Administrator,
            sha256: digest(&again),
        });
        assert!(t.find(&secret).is_none(), "replaced by name");
        assert_eq!(t.list().len(), 1);
        assert!(t.remove("ops"));
        assert!(t.is_empty());
    }
}
