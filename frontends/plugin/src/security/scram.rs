//! SCRAM (RFC 5802, RFC 7677) on the server side, for SASL SCRAM-SHA-256 and SCRAM-SHA-512:
//! credentials derived once from a password and kept as Kafka keeps them (salt, iterations,
//! StoredKey, ServerKey; never the password), and the two-round exchange checked against
//! them. Pure: messages in, messages out.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};

/// The two hash functions SCRAM is offered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Mechanism {
    /// SCRAM-SHA-256.
    Sha256,
    /// SCRAM-SHA-512.
    Sha512,
}

impl Mechanism {
    /// The SASL name.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Sha256 => "SCRAM-SHA-256",
            Mechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    /// The mechanism a SASL name stands for.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "SCRAM-SHA-256" => Some(Mechanism::Sha256),
            "SCRAM-SHA-512" => Some(Mechanism::Sha512),
            _ => None,
        }
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            Mechanism::Sha256 => {
                let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
                    .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
            Mechanism::Sha512 => {
                let mut m = <Hmac<Sha512> as KeyInit>::new_from_slice(key)
                    .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
        }
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            Mechanism::Sha256 => Sha256::digest(data).to_vec(),
            Mechanism::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    fn salted(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            Mechanism::Sha256 => {
                let mut out = vec![0u8; 32];
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out);
                out
            }
            Mechanism::Sha512 => {
                let mut out = vec![0u8; 64];
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out);
                out
            }
        }
    }
}

/// What the server keeps for one user and mechanism.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredential {
    /// The mechanism.
    pub mechanism: Mechanism,
    /// Base64 salt.
    pub salt: String,
    /// PBKDF2 iterations.
    pub iterations: u32,
    /// Base64 StoredKey = H(HMAC(SaltedPassword, "Client Key")).
    pub stored_key: String,
    /// Base64 ServerKey = HMAC(SaltedPassword, "Server Key").
    pub server_key: String,
}

/// Iterations of new credentials (Kafka's minimum is 4096).
pub const ITERATIONS: u32 = 8192;

impl ScramCredential {
    /// Derives the credential of `password` with a random salt.
    pub fn derive(mechanism: Mechanism, password: &str) -> Self {
        let salt: [u8; 24] = rand::random();
        let salted = mechanism.salted(password.as_bytes(), &salt, ITERATIONS);
        let client_key = mechanism.hmac(&salted, b"Client Key");
        ScramCredential {
            mechanism,
            salt: B64.encode(salt),
            iterations: ITERATIONS,
            stored_key: B64.encode(mechanism.hash(&client_key)),
            server_key: B64.encode(mechanism.hmac(&salted, b"Server Key")),
        }
    }
}

/// Why an exchange failed (the client is told only that authentication failed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("scram: {0}")]
pub struct ScramError(pub String);

fn err(m: &str) -> ScramError {
    ScramError(m.to_string())
}

/// The server's side of one exchange, after the client's first message.
#[derive(Debug)]
pub struct ServerExchange {
    credential: Option<ScramCredential>,
    username: String,
    client_first_bare: String,
    server_first: String,
    nonce: String,
}

/// Parses `client-first-message`: `gs2-header` (no channel binding, no authzid other than
/// the user) then `n=user,r=nonce`. Returns the username and the exchange's start.
pub fn client_first(message: &[u8]) -> Result<(String, String, String), ScramError> {
    let text = std::str::from_utf8(message).map_err(|_| err("not UTF-8"))?;
    let rest = text
        .strip_prefix("n,")
        .or_else(|| text.strip_prefix("y,"))
        .ok_or_else(|| err("channel binding is not supported"))?;
    let (_authzid, bare) = rest.split_once(',').ok_or_else(|| err("no gs2 header"))?;
    let mut user = None;
    let mut nonce = None;
    for attr in bare.split(',') {
        match attr.split_once('=') {
            Some(("n", v)) => user = Some(v.replace("=2C", ",").replace("=3D", "=")),
            Some(("r", v)) => nonce = Some(v.to_string()),
            Some(("m", _)) => return Err(err("extensions are not supported")),
            _ => {}
        }
    }
    let user = user
        .filter(|u| !u.is_empty())
        .ok_or_else(|| err("no user"))?;
    let nonce = nonce
        .filter(|n| !n.is_empty())
        .ok_or_else(|| err("no nonce"))?;
    Ok((user, nonce, bare.to_string()))
}

impl ServerExchange {
    /// Answers a client's first message for `username` (whose credential may be unknown:
    /// the exchange then goes on with made-up values and fails at the proof, so a client
    /// cannot tell unknown users from wrong passwords).
    pub fn start(
        mechanism: Mechanism,
        username: String,
        client_nonce: &str,
        client_first_bare: String,
        credential: Option<ScramCredential>,
    ) -> (Self, Vec<u8>) {
        // Hex: only characters every client's nonce parser takes.
        let server_part: [u8; 18] = rand::random();
        let hex: String = server_part.iter().map(|b| format!("{b:02x}")).collect();
        let nonce = format!("{client_nonce}{hex}");
        let (salt, iterations) = match &credential {
            Some(c) => (c.salt.clone(), c.iterations),
            // Looks like a real salt (24 bytes), stays the same for the same name, and
            // cannot be computed by the client (keyed with a secret of this process).
            None => {
                static KEY: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
                let key = KEY.get_or_init(rand::random);
                let made_up = mechanism.hmac(key, username.as_bytes());
                (B64.encode(&made_up[..24]), ITERATIONS)
            }
        };
        let credential = credential.filter(|c| c.mechanism == mechanism);
        let server_first = format!("r={nonce},s={salt},i={iterations}");
        let first = server_first.clone().into_bytes();
        (
            ServerExchange {
                credential,
                username,
                client_first_bare,
                server_first,
                nonce,
            },
            first,
        )
    }

    /// The user the exchange is for.
    pub fn username(&self) -> &str {
        &self.username
    }

    /// Checks the client's final message; on success, the server's final message.
    pub fn finish(&self, message: &[u8]) -> Result<Vec<u8>, ScramError> {
        let text = std::str::from_utf8(message).map_err(|_| err("not UTF-8"))?;
        let (without_proof, proof) = text.rsplit_once(",p=").ok_or_else(|| err("no proof"))?;
        let mut nonce = None;
        for attr in without_proof.split(',') {
            if let Some(v) = attr.strip_prefix("r=") {
                nonce = Some(v);
            }
        }
        if nonce != Some(self.nonce.as_str()) {
            return Err(err("nonce mismatch"));
        }
        let credential = self
            .credential
            .as_ref()
            .ok_or_else(|| err("unknown user"))?;
        let mechanism = credential.mechanism;
        let stored_key = B64
            .decode(&credential.stored_key)
            .map_err(|_| err("bad stored key"))?;
        let server_key = B64
            .decode(&credential.server_key)
            .map_err(|_| err("bad server key"))?;
        let proof = B64.decode(proof).map_err(|_| err("proof is not base64"))?;
        let auth_message = format!(
            "{},{},{}",
            self.client_first_bare, self.server_first, without_proof
        );
        let signature = mechanism.hmac(&stored_key, auth_message.as_bytes());
        if proof.len() != signature.len() {
            return Err(err("bad proof"));
        }
        let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(p, s)| p ^ s).collect();
        let computed = mechanism.hash(&client_key);
        let same = computed.len() == stored_key.len()
            && computed
                .iter()
                .zip(&stored_key)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if !same {
            return Err(err("bad proof"));
        }
        let server_signature = mechanism.hmac(&server_key, auth_message.as_bytes());
        Ok(format!("v={}", B64.encode(server_signature)).into_bytes())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The client's side, as RFC 5802 describes it.
    fn client_final(
        mechanism: Mechanism,
        password: &str,
        client_first_bare: &str,
        server_first: &str,
    ) -> (String, String) {
        let mut nonce = "";
        let mut salt = "";
        let mut iterations = 0;
        for attr in server_first.split(',') {
            match attr.split_once('=') {
                Some(("r", v)) => nonce = v,
                Some(("s", v)) => salt = v,
                Some(("i", v)) => iterations = v.parse().unwrap(),
                _ => {}
            }
        }
        let salted = mechanism.salted(password.as_bytes(), &B64.decode(salt).unwrap(), iterations);
        let client_key = mechanism.hmac(&salted, b"Client Key");
        let stored = mechanism.hash(&client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth = format!("{client_first_bare},{server_first},{without_proof}");
        let signature = mechanism.hmac(&stored, auth.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let server_key = mechanism.hmac(&salted, b"Server Key");
        let expected = format!(
            "v={}",
            B64.encode(mechanism.hmac(&server_key, auth.as_bytes()))
        );
        (format!("{without_proof},p={}", B64.encode(proof)), expected)
    }

    #[test]
    fn an_exchange_succeeds_with_the_password_only() {
        for mechanism in [Mechanism::Sha256, Mechanism::Sha512] {
            let credential = ScramCredential::derive(mechanism, "pencil");
            let first = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
            let (user, nonce, bare) = client_first(first).unwrap();
            assert_eq!(user, "user");
            let (ex, server_first) = ServerExchange::start(
                mechanism,
                user,
                &nonce,
                bare.clone(),
                Some(credential.clone()),
            );
            let server_first = String::from_utf8(server_first).unwrap();
            let (good, expected) = client_final(mechanism, "pencil", &bare, &server_first);
            assert_eq!(ex.finish(good.as_bytes()).unwrap(), expected.into_bytes());
            let (bad, _) = client_final(mechanism, "wrong", &bare, &server_first);
            assert!(ex.finish(bad.as_bytes()).is_err());
            // An unknown user fails at the proof, after a normal-looking first answer.
            let (unknown, first) =
                ServerExchange::start(mechanism, "nobody".into(), &nonce, bare.clone(), None);
            let first = String::from_utf8(first).unwrap();
            assert!(first.contains(",s="));
            let (attempt, _) = client_final(mechanism, "pencil", &bare, &first);
            assert!(unknown.finish(attempt.as_bytes()).is_err());
        }
        assert!(client_first(b"p=tls-unique,,n=u,r=x").is_err());
        assert!(client_first(b"n,,n=,r=x").is_err());
    }
}
