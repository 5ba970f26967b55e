//! JSON Web Tokens as client credentials: a client sends a token signed by an issuer the
//! node trusts as its password, instead of a password the node stores. The token names the
//! user (a claim, `sub` unless configured otherwise), may carry ACL rules of its own (checked
//! before the node's), and stops being good at its `exp`: a connection it opened is closed
//! then. `nbf`, and `iss`/`aud` when configured, are checked too.
//!
//! Keys come from files (an HMAC secret, a PEM public key, or a JWKS document whose keys are
//! chosen by the token's `kid`) and are read again when the files change, so keys rotate
//! without a restart.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};

use super::acl::AclRule;

/// The `[auth.jwt]` section: which tokens are accepted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// The signature algorithm tokens must use (`HS256`, `RS256`, `ES256`, ...): a token
    /// signed otherwise is refused, whatever its header says.
    pub algorithm: Algorithm,
    /// HMAC algorithms: a file holding the shared secret (a trailing newline is ignored).
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// RSA and EC algorithms: a PEM file with the issuer's public key.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Or a JWKS file (`{"keys": [...]}`): the key is the one whose `kid` the token names.
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// The claim that names the user.
    #[serde(default = "default_username_claim")]
    pub username_claim: String,
    /// The claim that may hold ACL rules (a list, in the form the admin API takes).
    #[serde(default = "default_acl_claim")]
    pub acl_claim: String,
    /// When set, a token's `iss` must be this.
    #[serde(default)]
    pub issuer: Option<String>,
    /// When set, a token's `aud` must include this.
    #[serde(default)]
    pub audience: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    #[serde(default)]
    pub leeway_secs: u64,
    /// Whether a token without `exp` is refused (one without never stops being good).
    #[serde(default = "yes")]
    pub require_exp: bool,
    /// The most ACL rules one token may carry.
    #[serde(default = "default_max_acl_rules")]
    pub max_acl_rules: usize,
}

fn default_username_claim() -> String {
    "sub".into()
}

fn default_acl_claim() -> String {
    "acl".into()
}

fn yes() -> bool {
    true
}

fn default_max_acl_rules() -> usize {
    100
}

/// What a good token grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The user the token names.
    pub username: String,
    /// ACL rules of the token, checked before the node's.
    pub rules: Arc<[AclRule]>,
    /// When the token stops being good (its `exp`), if it says.
    pub expires_at: Option<SystemTime>,
}

/// Why a token was refused.
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    /// Signature, algorithm, time or claim checks failed.
    #[error("token refused: {0}")]
    Invalid(String),
    /// The keys could not be read.
    #[error("token keys: {0}")]
    Keys(String),
}

enum Keys {
    One(DecodingKey),
    /// From a JWKS file: keys by `kid` (a key without one is used for tokens without one).
    Set(Vec<(Option<String>, DecodingKey)>),
}

/// Checks tokens against the configured keys.
pub struct JwtVerifier {
    config: JwtConfig,
    validation: Validation,
    keys: RwLock<Arc<Keys>>,
    /// When the files were last looked at, and their modification times then.
    seen: Mutex<(Instant, Vec<Option<SystemTime>>)>,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("algorithm", &self.config.algorithm)
            .finish()
    }
}

/// How often the key files are looked at for changes (at most, and only while tokens are
/// being checked).
const RELOAD_CHECK: Duration = Duration::from_secs(1);

/// Whether a password has the shape of a compact JWT (three base64url parts): only those
/// are checked as tokens.
pub fn looks_like_token(password: &[u8]) -> bool {
    password.starts_with(b"eyJ")
        && password.iter().filter(|&&b| b == b'.').count() == 2
        && password
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'='))
}

impl JwtVerifier {
    /// Reads the keys; fails when the configuration names none, or they do not load.
    pub fn new(config: JwtConfig) -> Result<Self, JwtError> {
        let sources = [&config.secret_file, &config.key_file, &config.jwks_file]
            .iter()
            .filter(|f| f.is_some())
            .count();
        if sources != 1 {
            return Err(JwtError::Keys(
                "auth.jwt needs exactly one of secret_file, key_file and jwks_file".into(),
            ));
        }
        let keys = load_keys(&config)?;
        if config.audience.is_none() {
            tracing::warn!(
                "auth.jwt has no audience: any token its keys signed is an MQTT credential, \
                 whatever application it was issued for"
            );
        }
        let mut validation = Validation::new(config.algorithm);
        validation.leeway = config.leeway_secs;
        validation.validate_nbf = true;
        validation.validate_exp = true;
        let required: &[&str] = if config.require_exp { &["exp"] } else { &[] };
        validation.set_required_spec_claims(required);
        if let Some(iss) = &config.issuer {
            validation.set_issuer(&[iss]);
        }
        match &config.audience {
            Some(aud) => validation.set_audience(&[aud]),
            // A token meant for some audience is not refused for naming one when the node
            // has none configured.
            None => validation.validate_aud = false,
        }
        let seen = modified(&config);
        Ok(JwtVerifier {
            config,
            validation,
            keys: RwLock::new(Arc::new(keys)),
            seen: Mutex::new((Instant::now(), seen)),
        })
    }

    /// Checks `token`; `username`, when the client gave one, must be the user it names.
    pub fn verify(&self, token: &str, username: Option<&str>) -> Result<Grant, JwtError> {
        self.reload_if_changed();
        let keys = self.keys.read().clone();
        let key = match &*keys {
            Keys::One(k) => k,
            Keys::Set(set) => {
                let header = jsonwebtoken::decode_header(token)
                    .map_err(|e| JwtError::Invalid(e.to_string()))?;
                set.iter()
                    .find(|(kid, _)| *kid == header.kid)
                    .map(|(_, k)| k)
                    .ok_or_else(|| JwtError::Invalid("no key for the token's kid".into()))?
            }
        };
        let data = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
            token,
            key,
            &self.validation,
        )
        .map_err(|e| JwtError::Invalid(e.to_string()))?;
        let claims = data.claims;
        let name = claims
            .get(&self.config.username_claim)
            .and_then(|v| v.as_str())
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                JwtError::Invalid(format!(
                    "no `{}` claim naming the user",
                    self.config.username_claim
                ))
            })?;
        if username.is_some_and(|u| u != name) {
            return Err(JwtError::Invalid(
                "the username is not the one the token names".into(),
            ));
        }
        let rules: Vec<AclRule> = match claims.get(&self.config.acl_claim) {
            None => Vec::new(),
            Some(v) => serde_json::from_value(v.clone()).map_err(|e| {
                JwtError::Invalid(format!("the `{}` claim: {e}", self.config.acl_claim))
            })?,
        };
        if rules.len() > self.config.max_acl_rules {
            return Err(JwtError::Invalid(format!(
                "the token carries {} ACL rules, more than {}",
                rules.len(),
                self.config.max_acl_rules
            )));
        }
        let expires_at = match claims.get("exp").and_then(serde_json::Value::as_u64) {
            None => None,
            Some(exp) => Some(
                SystemTime::UNIX_EPOCH
                    .checked_add(Duration::from_secs(
                        exp.saturating_add(self.config.leeway_secs),
                    ))
                    .ok_or_else(|| JwtError::Invalid("exp out of range".into()))?,
            ),
        };
        Ok(Grant {
            username: name.to_string(),
            rules: rules.into(),
            expires_at,
        })
    }

    /// Reads the key files again when they changed since they were last read (looked at
    /// once a second at most). Keys that do not load leave the previous ones in use.
    fn reload_if_changed(&self) {
        let mut seen = self.seen.lock();
        if seen.0.elapsed() < RELOAD_CHECK {
            return;
        }
        seen.0 = Instant::now();
        let now = modified(&self.config);
        if now == seen.1 {
            return;
        }
        match load_keys(&self.config) {
            Ok(keys) => {
                *self.keys.write() = Arc::new(keys);
                seen.1 = now;
                tracing::info!("JWT keys reloaded");
            }
            Err(e) => {
                tracing::error!(error = %e, "JWT keys changed but do not load; the previous ones stay")
            }
        }
    }
}

fn modified(config: &JwtConfig) -> Vec<Option<SystemTime>> {
    [&config.secret_file, &config.key_file, &config.jwks_file]
        .into_iter()
        .flatten()
        .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .collect()
}

fn read(path: &Path) -> Result<Vec<u8>, JwtError> {
    std::fs::read(path).map_err(|e| JwtError::Keys(format!("{}: {e}", path.display())))
}

fn load_keys(config: &JwtConfig) -> Result<Keys, JwtError> {
    let bad = |path: &Path, e: jsonwebtoken::errors::Error| {
        JwtError::Keys(format!("{}: {e}", path.display()))
    };
    if let Some(path) = &config.secret_file {
        let mut secret = read(path)?;
        while secret.last().is_some_and(|b| matches!(b, b'\n' | b'\r')) {
            secret.pop();
        }
        if secret.len() < 32 {
            return Err(JwtError::Keys(format!(
                "{}: an HMAC secret must be at least 32 bytes",
                path.display()
            )));
        }
        return Ok(Keys::One(DecodingKey::from_secret(&secret)));
    }
    if let Some(path) = &config.key_file {
        let pem = read(path)?;
        let key = match config.algorithm {
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => DecodingKey::from_rsa_pem(&pem),
            Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(&pem),
            Algorithm::EdDSA => DecodingKey::from_ed_pem(&pem),
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
                return Err(JwtError::Keys(
                    "HMAC algorithms take a secret_file, not a key_file".into(),
                ));
            }
        }
        .map_err(|e| bad(path, e))?;
        return Ok(Keys::One(key));
    }
    let Some(path) = &config.jwks_file else {
        return Err(JwtError::Keys("no key configured".into()));
    };
    let set: JwkSet = serde_json::from_slice(&read(path)?)
        .map_err(|e| JwtError::Keys(format!("{}: {e}", path.display())))?;
    let mut keys = Vec::new();
    for jwk in &set.keys {
        // A key made for another algorithm is not used for this one.
        if jwk
            .common
            .key_algorithm
            .and_then(|a| format!("{a:?}").parse::<Algorithm>().ok())
            .is_some_and(|a| a != config.algorithm)
        {
            continue;
        }
        let key = DecodingKey::from_jwk(jwk).map_err(|e| bad(path, e))?;
        keys.push((jwk.common.key_id.clone(), key));
    }
    if keys.is_empty() {
        return Err(JwtError::Keys(format!(
            "{}: no key for {:?}",
            path.display(),
            config.algorithm
        )));
    }
    Ok(Keys::Set(keys))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn config(dir: &Path) -> JwtConfig {
        let path = dir.join("secret");
        std::fs::write(&path, [SECRET, b"\n"].concat()).unwrap();
        JwtConfig {
            algorithm: Algorithm::HS256,
            secret_file: Some(path),
            key_file: None,
            jwks_file: None,
            username_claim: default_username_claim(),
            acl_claim: default_acl_claim(),
            issuer: None,
            audience: None,
            leeway_secs: 0,
            require_exp: true,
            max_acl_rules: 2,
        }
    }

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    fn token(claims: serde_json::Value) -> String {
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap()
    }

    #[test]
    fn good_tokens_name_the_user_and_carry_rules() {
        let dir = tempfile::tempdir().unwrap();
        let v = JwtVerifier::new(config(dir.path())).unwrap();
        let t = token(json!({"sub": "ann", "exp": now() + 60,
            "acl": [{"permission": "allow", "action": "publish", "topic": "a/#"}]}));
        assert!(looks_like_token(t.as_bytes()));
        let g = v.verify(&t, None).unwrap();
        assert_eq!(g.username, "ann");
        assert_eq!(g.rules.len(), 1);
        assert!(g.expires_at.is_some());
        assert!(v.verify(&t, Some("ann")).is_ok());
        assert!(v.verify(&t, Some("bob")).is_err(), "another user's name");
    }

    #[test]
    fn bad_tokens_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let v = JwtVerifier::new(config(dir.path())).unwrap();
        for claims in [
            json!({"sub": "ann", "exp": now() - 10}),
            json!({"sub": "ann", "exp": now() + 60, "nbf": now() + 30}),
            json!({"sub": "ann"}),
            json!({"exp": now() + 60}),
            json!({"sub": "ann", "exp": now() + 60, "acl": "everything"}),
            json!({"sub": "ann", "exp": now() + 60, "acl": [
                {"permission": "allow", "action": "all", "topic": "a"},
                {"permission": "allow", "action": "all", "topic": "b"},
                {"permission": "allow", "action": "all", "topic": "c"}]}),
        ] {
            assert!(v.verify(&token(claims.clone()), None).is_err(), "{claims}");
        }
        let other = encode(
            &Header::default(),
            &json!({"sub": "ann", "exp": now() + 60}),
            &EncodingKey::from_secret(b"another secret, 32 bytes or more.."),
        )
        .unwrap();
        assert!(v.verify(&other, None).is_err(), "signed with another key");
        let none_alg = format!(
            "{}.{}.",
            base64_url(br#"{"alg":"none","typ":"JWT"}"#),
            base64_url(format!(r#"{{"sub":"ann","exp":{}}}"#, now() + 60).as_bytes())
        );
        assert!(v.verify(&none_alg, None).is_err(), "alg none");
    }

    fn base64_url(b: &[u8]) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    }

    #[test]
    fn short_secrets_and_missing_keys_do_not_load() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = config(dir.path());
        std::fs::write(c.secret_file.as_ref().unwrap(), b"short").unwrap();
        assert!(JwtVerifier::new(c.clone()).is_err());
        c.secret_file = None;
        assert!(JwtVerifier::new(c).is_err());
    }
}
