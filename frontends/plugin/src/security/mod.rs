//! Who may connect and what they may do, shared by every frontend: users with argon2id
//! password hashes, the ACL, the ban list and flapping detection. Users, ACL rules and bans
//! come from the configuration (`[auth]`, fixed) and from the admin API (kept in the node's
//! key-value store, applied at once, no restart).

pub mod acl;
pub mod bans;
pub mod cache;
pub mod jwt;
pub mod kafka_acl;
pub mod password;
pub mod scram;
pub mod tokens;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::seams::{StateError, StateOp, StateSpace};
use acl::{Access, Acl, AclRule, Who};
use bans::{Ban, BanKind, BanList, FlappingConfig, FlappingDetector};
use password::PasswordVerifier;

/// Namespace of the security state in the node's key-value store.
pub const SPACE: &str = "security";
const USER_PREFIX: &[u8] = b"u/";
const BAN_PREFIX: &[u8] = b"b/";
const ACL_KEY: &[u8] = b"acl";
const TOKEN_PREFIX: &[u8] = b"t/";
const KAFKA_ACL_KEY: &[u8] = b"kafka_acl";
/// The most Kafka ACL bindings a node keeps.
pub const MAX_KAFKA_ACLS: usize = 100_000;

/// When anonymous clients (no username) may connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnonymousPolicy {
    /// As long as no user exists.
    #[default]
    Auto,
    /// Always.
    Allow,
    /// Never.
    Deny,
}

/// A user given in the configuration: a name and an argon2 hash (`strata admin users
/// hash` makes one), never a password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfiguredUser {
    /// The username.
    pub name: String,
    /// The argon2 PHC hash of the password.
    pub password_hash: String,
}

/// The `[auth]` section of the node configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// When clients without a username may connect.
    pub anonymous: AnonymousPolicy,
    /// What the ACL decides when no rule applies.
    pub acl_default: acl::Permission,
    /// Users from the configuration (the admin API adds others).
    pub users: Vec<ConfiguredUser>,
    /// ACL rules from the configuration, checked before those of the admin API.
    pub acl: Vec<AclRule>,
    /// Password verifications (argon2) running at once; more wait their turn.
    pub password_verifications: usize,
    /// Flapping detection.
    pub flapping: FlappingConfig,
    /// JSON Web Tokens accepted as passwords (`[auth.jwt]`), if any.
    pub jwt: Option<jwt::JwtConfig>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            anonymous: AnonymousPolicy::Auto,
            acl_default: acl::Permission::Allow,
            users: Vec::new(),
            acl: Vec::new(),
            password_verifications: 2,
            flapping: FlappingConfig::default(),
            jwt: None,
        }
    }
}

/// A stored user (the admin API's view never carries the hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredUser {
    /// The username.
    pub name: String,
    /// The argon2 PHC hash of the password.
    pub password_hash: String,
    /// Where it comes from: `config` or `api`.
    pub source: String,
    /// SCRAM credentials (Kafka SASL/SCRAM), derived when the password is set through the
    /// admin API: salt, iterations, StoredKey and ServerKey, never the password.
    #[serde(default)]
    pub scram: Vec<scram::ScramCredential>,
}

/// A user as the admin API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UserView {
    /// The username.
    pub name: String,
    /// `config` (fixed) or `api`.
    pub source: String,
}

/// The outcome of authenticating a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authenticated {
    /// A known user with the right password.
    User(String),
    /// A good token (`[auth.jwt]`): its user, its own ACL rules and its expiry.
    Token(jwt::Grant),
    /// No username, and anonymous clients are allowed.
    Anonymous,
    /// Unknown user or wrong password (MQTT 5 0x86, 3.1.1 0x04).
    BadCredentials,
    /// No username while anonymous clients are refused (MQTT 5 0x87, 3.1.1 0x05).
    NotAuthorized,
}

/// Why a security change was refused.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    /// Bad input.
    #[error("{0}")]
    Invalid(String),
    /// Not there.
    #[error("{0}")]
    NotFound(String),
    /// A configured entry, which only the configuration changes.
    #[error("{0}")]
    Fixed(String),
    /// The store failed; nothing changed.
    #[error("store: {0}")]
    Store(#[from] StateError),
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Counters of the security decisions, by outcome.
#[derive(Debug, Clone)]
pub struct SecurityMetrics {
    /// Authentications by result (`ok`, `anonymous`, `bad_credentials`, `not_authorized`).
    pub authentications: prometheus::IntCounterVec,
    /// ACL refusals by action (`publish`, `subscribe`).
    pub acl_denied: prometheus::IntCounterVec,
    /// Connections refused by a ban, by kind (`client_id`, `username`, `ip`).
    pub banned: prometheus::IntCounterVec,
    /// Bans added by flapping detection.
    pub flapping_bans: prometheus::IntCounter,
}

impl SecurityMetrics {
    fn new(registry: &prometheus::Registry) -> Self {
        let vec = |name: &str, help: &str, label: &str| {
            strata_metrics::counter_vec(registry, name, help, &[label])
        };
        let flapping_bans = strata_metrics::counter(
            registry,
            "strata_security_flapping_bans_total",
            "Bans added by flapping detection.",
        );
        let m = SecurityMetrics {
            authentications: vec(
                "strata_security_authentications_total",
                "Client authentications by result.",
                "result",
            ),
            acl_denied: vec(
                "strata_security_acl_denied_total",
                "Actions the ACL refused, by action.",
                "action",
            ),
            banned: vec(
                "strata_security_banned_total",
                "Connections refused by a ban, by what was banned.",
                "kind",
            ),
            flapping_bans,
        };
        for r in [
            "ok",
            "token",
            "anonymous",
            "bad_credentials",
            "not_authorized",
        ] {
            m.authentications.with_label_values(&[r]);
        }
        for a in ["publish", "subscribe"] {
            m.acl_denied.with_label_values(&[a]);
        }
        for k in ["client_id", "username", "ip"] {
            m.banned.with_label_values(&[k]);
        }
        m
    }
}

struct Inner {
    config: AuthConfig,
    store: Option<StateSpace>,
    users: RwLock<BTreeMap<String, StoredUser>>,
    /// Configured rules, then the admin API's, with the default: swapped whole.
    acl: RwLock<Arc<Acl>>,
    api_rules: RwLock<Vec<AclRule>>,
    bans: RwLock<BanList>,
    kafka_acl: RwLock<Arc<kafka_acl::KafkaAcl>>,
    tokens: RwLock<tokens::Tokens>,
    flapping: Mutex<FlappingDetector>,
    /// Bumped at every change of the ACL, so callers can cache decisions.
    generation: AtomicU64,
    /// No rule and a default of allow: every check is skipped.
    open: std::sync::atomic::AtomicBool,
    /// Bumped whenever a ban is added: connected clients are then checked again.
    bans_generation: AtomicU64,
    /// Bumped whenever a user is deleted.
    users_generation: AtomicU64,
    passwords: PasswordVerifier,
    jwt: Option<jwt::JwtVerifier>,
    metrics: SecurityMetrics,
    /// Serializes changes, so the store and memory agree.
    changes: Mutex<()>,
}

/// The node's security state. Cheap to clone.
#[derive(Clone)]
pub struct Security(Arc<Inner>);

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Security")
            .field("users", &self.0.users.read().len())
            .finish()
    }
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, SecurityError> {
    serde_json::to_vec(v).map_err(|e| SecurityError::Invalid(e.to_string()))
}

impl Security {
    /// Loads the configured users and rules and what the store holds (`None`: memory only).
    pub fn open(
        config: AuthConfig,
        store: Option<StateSpace>,
        registry: &prometheus::Registry,
    ) -> Result<Self, SecurityError> {
        let mut users = BTreeMap::new();
        for u in &config.users {
            if !password::is_valid_hash(&u.password_hash) {
                return Err(SecurityError::Invalid(format!(
                    "auth.users: the password_hash of `{}` is not an argon2 hash",
                    u.name
                )));
            }
            users.insert(
                u.name.clone(),
                StoredUser {
                    name: u.name.clone(),
                    password_hash: u.password_hash.clone(),
                    source: "config".into(),
                    scram: Vec::new(),
                },
            );
        }
        let mut api_rules = Vec::new();
        let mut bans = BanList::default();
        let mut admin_tokens = tokens::Tokens::default();
        if let Some(kv) = &store {
            for (_, value) in kv.scan_prefix(TOKEN_PREFIX)? {
                match serde_json::from_slice::<tokens::StoredToken>(&value) {
                    Ok(t) => admin_tokens.insert(t),
                    Err(e) => {
                        tracing::error!(error = %e, "stored admin token does not parse; skipped")
                    }
                }
            }
            for (_, value) in kv.scan_prefix(USER_PREFIX)? {
                match serde_json::from_slice::<StoredUser>(&value) {
                    Ok(u) if !users.contains_key(&u.name) => {
                        users.insert(u.name.clone(), u);
                    }
                    Ok(_) => {}
                    Err(e) => tracing::error!(error = %e, "stored user does not parse; skipped"),
                }
            }
            if let Some(raw) = kv.get(ACL_KEY)? {
                api_rules = serde_json::from_slice(&raw).map_err(|e| {
                    SecurityError::Invalid(format!("stored ACL does not parse: {e}"))
                })?;
            }
            for (_, value) in kv.scan_prefix(BAN_PREFIX)? {
                match serde_json::from_slice::<Ban>(&value) {
                    Ok(b) => {
                        if let Err(e) = bans.insert(b) {
                            tracing::error!(error = %e, "stored ban refused; skipped");
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "stored ban does not parse; skipped"),
                }
            }
        }
        let mut kafka_bindings = Vec::new();
        if let Some(kv) = &store
            && let Some(raw) = kv.get(KAFKA_ACL_KEY)?
        {
            kafka_bindings = serde_json::from_slice(&raw).map_err(|e| {
                SecurityError::Invalid(format!("stored Kafka ACLs do not parse: {e}"))
            })?;
        }
        let jwt = config
            .jwt
            .clone()
            .map(jwt::JwtVerifier::new)
            .transpose()
            .map_err(|e| SecurityError::Invalid(format!("auth.jwt: {e}")))?;
        let security = Security(Arc::new(Inner {
            jwt,
            passwords: PasswordVerifier::new(config.password_verifications),
            metrics: SecurityMetrics::new(registry),
            config,
            store,
            users: RwLock::new(users),
            acl: RwLock::new(Arc::new(Acl::default())),
            api_rules: RwLock::new(api_rules),
            bans: RwLock::new(bans),
            kafka_acl: RwLock::new(Arc::new(kafka_acl::KafkaAcl::new(kafka_bindings))),
            tokens: RwLock::new(admin_tokens),
            flapping: Mutex::new(FlappingDetector::default()),
            generation: AtomicU64::new(0),
            open: std::sync::atomic::AtomicBool::new(false),
            bans_generation: AtomicU64::new(0),
            users_generation: AtomicU64::new(0),
            changes: Mutex::new(()),
        }));
        security.rebuild_acl();
        Ok(security)
    }

    /// Everything allowed, nothing stored: for brokers built outside a node (tests, tools).
    pub fn open_everything() -> Self {
        Self::open(AuthConfig::default(), None, &prometheus::Registry::new())
            .unwrap_or_else(|e| unreachable!("the default configuration is valid: {e}"))
    }

    fn rebuild_acl(&self) {
        let i = &self.0;
        let mut rules = i.config.acl.clone();
        rules.extend(i.api_rules.read().iter().cloned());
        let default_allow = i.config.acl_default == acl::Permission::Allow;
        i.open
            .store(rules.is_empty() && default_allow, Ordering::Release);
        *i.acl.write() = Arc::new(Acl {
            rules,
            default_allow,
        });
        i.generation.fetch_add(1, Ordering::Release);
    }

    /// True when the ACL allows everything (no rule, default allow).
    pub fn acl_is_open(&self) -> bool {
        self.0.open.load(Ordering::Acquire)
    }

    /// Whether anonymous clients may connect now.
    pub fn anonymous_allowed(&self) -> bool {
        match self.0.config.anonymous {
            AnonymousPolicy::Allow => true,
            AnonymousPolicy::Deny => false,
            AnonymousPolicy::Auto => self.0.users.read().is_empty() && self.0.jwt.is_none(),
        }
    }

    /// Checks a username and password. The password is never logged or kept.
    pub async fn authenticate(
        &self,
        username: Option<&str>,
        password: Option<&[u8]>,
    ) -> Authenticated {
        let outcome = self.check_password(username, password).await;
        self.record(&outcome);
        outcome
    }

    /// Counts an authentication's outcome (for exchanges decided elsewhere, like SCRAM).
    pub fn record(&self, outcome: &Authenticated) {
        let label = match outcome {
            Authenticated::User(_) => "ok",
            Authenticated::Token(_) => "token",
            Authenticated::Anonymous => "anonymous",
            Authenticated::BadCredentials => "bad_credentials",
            Authenticated::NotAuthorized => "not_authorized",
        };
        self.0
            .metrics
            .authentications
            .with_label_values(&[label])
            .inc();
    }

    async fn check_password(
        &self,
        username: Option<&str>,
        password: Option<&[u8]>,
    ) -> Authenticated {
        if let Some(jwt) = &self.0.jwt
            && let Some(token) = password.filter(|p| jwt::looks_like_token(p))
        {
            let token = std::str::from_utf8(token).unwrap_or_default();
            return match jwt.verify(token, username) {
                Ok(grant) => Authenticated::Token(grant),
                Err(e) => {
                    tracing::debug!(error = %e, "token refused");
                    Authenticated::BadCredentials
                }
            };
        }
        // Without users there is nothing to check a name against: while anonymous
        // clients are allowed, a client naming itself is one of them.
        if self.0.users.read().is_empty() && self.anonymous_allowed() {
            return Authenticated::Anonymous;
        }
        let Some(name) = username else {
            return if self.anonymous_allowed() {
                Authenticated::Anonymous
            } else {
                Authenticated::NotAuthorized
            };
        };
        let hash = self
            .0
            .users
            .read()
            .get(name)
            .map(|u| u.password_hash.clone());
        let known = hash.is_some();
        // An unknown user costs the same verification as a known one, so timing does not
        // tell which usernames exist.
        let hash = hash.unwrap_or_else(|| password::dummy_hash().to_string());
        let password = password
            .and_then(|p| std::str::from_utf8(p).ok())
            .unwrap_or("");
        if self.0.passwords.verify(&hash, password).await && known {
            Authenticated::User(name.to_string())
        } else {
            Authenticated::BadCredentials
        }
    }

    /// The SCRAM credential of `name` for `mechanism`, if the user has one.
    pub fn scram_credential(
        &self,
        name: &str,
        mechanism: scram::Mechanism,
    ) -> Option<scram::ScramCredential> {
        let users = self.0.users.read();
        let user = users.get(name)?;
        user.scram
            .iter()
            .find(|c| c.mechanism == mechanism)
            .cloned()
    }

    /// The generation of the ACL: a cached decision is good while it has not moved.
    pub fn acl_generation(&self) -> u64 {
        self.0.generation.load(Ordering::Acquire)
    }

    /// Whether `who` may do `access`, counting refusals.
    pub fn allows(&self, who: &Who, access: Access) -> bool {
        self.allows_with(&[], who, access)
    }

    /// Whether `who`, with rules of its own (a token's) checked first, may do `access`,
    /// counting refusals.
    pub fn allows_with(&self, own: &[AclRule], who: &Who, access: Access) -> bool {
        if own.is_empty() && self.acl_is_open() {
            return true;
        }
        let allowed = self.0.acl.read().allows_with(own, who, access);
        if !allowed {
            self.count_denied(access);
        }
        allowed
    }

    /// Counts an ACL refusal (for callers deciding from a cached ACL).
    pub fn count_denied(&self, access: Access) {
        let action = match access {
            Access::Publish { .. } => "publish",
            Access::Subscribe(_) => "subscribe",
        };
        self.0.metrics.acl_denied.with_label_values(&[action]).inc();
    }

    /// The Kafka ACL bindings now.
    pub fn kafka_acl(&self) -> Arc<kafka_acl::KafkaAcl> {
        self.0.kafka_acl.read().clone()
    }

    /// Adds Kafka ACL bindings (one already there is not added twice), kept in the store.
    pub fn add_kafka_acls(&self, new: &[kafka_acl::AclBinding]) -> Result<(), SecurityError> {
        let _change = self.0.changes.lock();
        let mut bindings = self.kafka_acl().bindings().to_vec();
        if bindings.len() + new.len() > MAX_KAFKA_ACLS {
            return Err(SecurityError::Invalid(format!(
                "at most {MAX_KAFKA_ACLS} Kafka ACL bindings"
            )));
        }
        let mut known: std::collections::HashSet<kafka_acl::AclBinding> =
            bindings.iter().cloned().collect();
        for b in new {
            b.validate().map_err(SecurityError::Invalid)?;
            let b = b.clone().normalized();
            if known.insert(b.clone()) {
                bindings.push(b);
            }
        }
        self.store_kafka_acls(bindings)
    }

    /// Removes the Kafka ACL bindings `filter` matches; returns them.
    pub fn delete_kafka_acls(
        &self,
        filter: &kafka_acl::BindingFilter,
    ) -> Result<Vec<kafka_acl::AclBinding>, SecurityError> {
        let _change = self.0.changes.lock();
        let (gone, kept): (Vec<_>, Vec<_>) = self
            .kafka_acl()
            .bindings()
            .iter()
            .cloned()
            .partition(|b| filter.matches(b));
        if !gone.is_empty() {
            self.store_kafka_acls(kept)?;
        }
        Ok(gone)
    }

    fn store_kafka_acls(&self, bindings: Vec<kafka_acl::AclBinding>) -> Result<(), SecurityError> {
        if let Some(kv) = &self.0.store {
            kv.write(&[StateOp::Put(KAFKA_ACL_KEY.to_vec(), encode(&bindings)?)])?;
        }
        *self.0.kafka_acl.write() = Arc::new(kafka_acl::KafkaAcl::new(bindings));
        Ok(())
    }

    /// Every user, without hashes.
    pub fn users(&self) -> Vec<UserView> {
        self.0
            .users
            .read()
            .values()
            .map(|u| UserView {
                name: u.name.clone(),
                source: u.source.clone(),
            })
            .collect()
    }

    /// Creates a user or sets its password (hashed here; the password is not kept).
    pub async fn put_user(&self, name: &str, password: &str) -> Result<bool, SecurityError> {
        if name.is_empty() || name.chars().count() > 256 || name.chars().any(char::is_control) {
            return Err(SecurityError::Invalid(
                "a username is 1 to 256 characters, none of them control characters".into(),
            ));
        }
        if !(8..=1024).contains(&password.chars().count()) {
            return Err(SecurityError::Invalid(
                "a password is 8 to 1024 characters".into(),
            ));
        }
        let pw = password.to_string();
        let (hash, scram) = tokio::task::spawn_blocking(move || {
            let scram = [scram::Mechanism::Sha256, scram::Mechanism::Sha512]
                .map(|m| scram::ScramCredential::derive(m, &pw));
            password::hash(&pw).map(|h| (h, scram.to_vec()))
        })
        .await
        .map_err(|e| SecurityError::Invalid(e.to_string()))?
        .map_err(SecurityError::Invalid)?;
        let _change = self.0.changes.lock();
        if self
            .0
            .users
            .read()
            .get(name)
            .is_some_and(|u| u.source == "config")
        {
            return Err(SecurityError::Fixed(format!(
                "user `{name}` is defined in the configuration"
            )));
        }
        let user = StoredUser {
            name: name.to_string(),
            password_hash: hash,
            source: "api".into(),
            scram,
        };
        if let Some(kv) = &self.0.store {
            kv.write(&[StateOp::Put(user_key(name), encode(&user)?)])?;
        }
        Ok(self
            .0
            .users
            .write()
            .insert(name.to_string(), user)
            .is_none())
    }

    /// Removes a user created through the admin API.
    pub fn delete_user(&self, name: &str) -> Result<(), SecurityError> {
        let _change = self.0.changes.lock();
        match self.0.users.read().get(name) {
            None => return Err(SecurityError::NotFound(format!("no user `{name}`"))),
            Some(u) if u.source == "config" => {
                return Err(SecurityError::Fixed(format!(
                    "user `{name}` is defined in the configuration"
                )));
            }
            Some(_) => {}
        }
        if let Some(kv) = &self.0.store {
            kv.write(&[StateOp::Delete(user_key(name))])?;
        }
        self.0.users.write().remove(name);
        self.0.users_generation.fetch_add(1, Ordering::Release);
        Ok(())
    }

    /// Bumped whenever a user is deleted: connections of deleted users are then closed.
    pub fn users_generation(&self) -> u64 {
        self.0.users_generation.load(Ordering::Acquire)
    }

    /// Whether `name` is one of the node's users.
    pub fn has_user(&self, name: &str) -> bool {
        self.0.users.read().contains_key(name)
    }

    /// The configured rules and the admin API's, in evaluation order.
    pub fn acl_rules(&self) -> (Vec<AclRule>, Vec<AclRule>) {
        (self.0.config.acl.clone(), self.0.api_rules.read().clone())
    }

    /// Replaces the admin API's rules (checked after the configured ones).
    pub fn set_acl_rules(&self, rules: Vec<AclRule>) -> Result<(), SecurityError> {
        let _change = self.0.changes.lock();
        if let Some(kv) = &self.0.store {
            kv.write(&[StateOp::Put(ACL_KEY.to_vec(), encode(&rules)?)])?;
        }
        *self.0.api_rules.write() = rules;
        self.rebuild_acl();
        Ok(())
    }

    /// Every ban in force.
    pub fn bans(&self) -> Vec<Ban> {
        let now = now_ms();
        let _change = self.0.changes.lock();
        let mut list = self.0.bans.write();
        let gone = list.prune(now);
        drop(list);
        if !gone.is_empty()
            && let Some(kv) = &self.0.store
        {
            let ops: Vec<StateOp> = gone
                .iter()
                .map(|b| StateOp::Delete(ban_key(b.kind, &b.value)))
                .collect();
            if let Err(e) = kv.write(&ops) {
                tracing::warn!(error = %e, "expired bans not removed from the store");
            }
        }
        self.0.bans.read().list()
    }

    /// Adds or replaces a ban.
    pub fn add_ban(&self, ban: Ban) -> Result<(), SecurityError> {
        let _change = self.0.changes.lock();
        let mut trial = BanList::default();
        trial.insert(ban.clone()).map_err(SecurityError::Invalid)?;
        if let Some(kv) = &self.0.store {
            kv.write(&[StateOp::Put(ban_key(ban.kind, &ban.value), encode(&ban)?)])?;
        }
        self.0
            .bans
            .write()
            .insert(ban)
            .map_err(SecurityError::Invalid)?;
        self.0.bans_generation.fetch_add(1, Ordering::Release);
        Ok(())
    }

    /// Changes whenever a ban is added: frontends then close the connections it covers.
    pub fn bans_generation(&self) -> u64 {
        self.0.bans_generation.load(Ordering::Acquire)
    }

    /// Whether a connection of `client_id`, user `username`, from `ip` is covered by a ban
    /// now (not counted: for re-checking connections already open).
    pub fn connection_banned(
        &self,
        client_id: &str,
        username: Option<&str>,
        ip: Option<IpAddr>,
    ) -> bool {
        let now = now_ms();
        let bans = self.0.bans.read();
        bans.client_banned(client_id, username, now)
            || ip.is_some_and(|ip| bans.ip_banned(ip.to_canonical(), now))
    }

    /// Lifts a ban.
    pub fn remove_ban(&self, kind: BanKind, value: &str) -> Result<(), SecurityError> {
        let _change = self.0.changes.lock();
        if let Some(kv) = &self.0.store {
            kv.write(&[StateOp::Delete(ban_key(kind, value))])?;
        }
        if self.0.bans.write().remove(kind, value) {
            Ok(())
        } else {
            Err(SecurityError::NotFound(format!("no ban on `{value}`")))
        }
    }

    /// Whether connections from `ip` are refused; counted.
    pub fn ip_banned(&self, ip: IpAddr) -> bool {
        let banned = self.0.bans.read().ip_banned(ip, now_ms());
        if banned {
            self.0.metrics.banned.with_label_values(&["ip"]).inc();
        }
        banned
    }

    /// Whether a client id or username is banned; counted by what is banned.
    pub fn client_banned(&self, client_id: &str, username: Option<&str>) -> bool {
        let now = now_ms();
        let kind = {
            let bans = self.0.bans.read();
            if bans.client_banned(client_id, None, now) {
                "client_id"
            } else if bans.client_banned(client_id, username, now) {
                "username"
            } else {
                return false;
            }
        };
        self.0.metrics.banned.with_label_values(&[kind]).inc();
        true
    }

    /// Records a connection of `kind`/`value` for flapping detection; bans it (for
    /// `ban_secs`) when it connects too often. True when it was banned now.
    pub fn record_connect(&self, kind: BanKind, value: &str) -> bool {
        let config = self.0.config.flapping;
        if !config.enabled {
            return false;
        }
        let now = now_ms();
        let flapping = self
            .0
            .flapping
            .lock()
            .record(&config, (kind, value.to_string()), now);
        if !flapping {
            return false;
        }
        self.0.metrics.flapping_bans.inc();
        tracing::warn!(?kind, value, "flapping: banned for {} s", config.ban_secs);
        let ban = Ban {
            kind,
            value: value.to_string(),
            until_ms: Some(now + config.ban_secs * 1000),
            reason: format!(
                "flapping: more than {} connections in {} s",
                config.max_connects, config.window_secs
            ),
        };
        if let Err(e) = self.add_ban(ban) {
            tracing::warn!(error = %e, "flapping ban not stored");
        }
        true
    }
}

impl Security {
    /// Creates (or replaces, by name) an admin API token; returns its secret, which is not
    /// kept and cannot be shown again.
    pub fn create_token(&self, name: &str, role: tokens::Role) -> Result<String, SecurityError> {
        if name.is_empty() || name.chars().count() > 128 || name.chars().any(char::is_control) {
            return Err(SecurityError::Invalid(
                "a token name is 1 to 128 characters, none of them control characters".into(),
            ));
        }
        let secret = tokens::new_secret();
        let token = tokens::StoredToken {
            name: name.to_string(),
            role,
            sha256: tokens::digest(&secret),
        };
        let _change = self.0.changes.lock();
        if let Some(kv) = &self.0.store {
            kv.write(&[StateOp::Put(token_key(name), encode(&token)?)])?;
        }
        self.0.tokens.write().insert(token);
        Ok(secret)
    }

    /// Revokes a token.
    pub fn revoke_token(&self, name: &str) -> Result<(), SecurityError> {
        let _change = self.0.changes.lock();
        if let Some(kv) = &self.0.store {
            kv.write(&[StateOp::Delete(token_key(name))])?;
        }
        if self.0.tokens.write().remove(name) {
            Ok(())
        } else {
            Err(SecurityError::NotFound(format!("no token `{name}`")))
        }
    }

    /// Every admin token (names and roles).
    pub fn tokens(&self) -> Vec<tokens::TokenView> {
        self.0.tokens.read().list()
    }

    /// Whether any admin token was created.
    pub fn has_tokens(&self) -> bool {
        !self.0.tokens.read().is_empty()
    }

    /// The name and role of the token whose secret is `secret`.
    pub fn check_token(&self, secret: &str) -> Option<(String, tokens::Role)> {
        self.0
            .tokens
            .read()
            .find(secret)
            .map(|t| (t.name.clone(), t.role))
    }
}

fn token_key(name: &str) -> Vec<u8> {
    [TOKEN_PREFIX, name.as_bytes()].concat()
}

fn user_key(name: &str) -> Vec<u8> {
    [USER_PREFIX, name.as_bytes()].concat()
}

fn ban_key(kind: BanKind, value: &str) -> Vec<u8> {
    let k = match kind {
        BanKind::ClientId => "c",
        BanKind::Username => "u",
        BanKind::Ip => "i",
    };
    [BAN_PREFIX, k.as_bytes(), b"/", value.as_bytes()].concat()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn users_authenticate_and_anonymous_follows_the_policy() {
        let s = Security::open(AuthConfig::default(), None, &prometheus::Registry::new()).unwrap();
        assert_eq!(s.authenticate(None, None).await, Authenticated::Anonymous);
        assert!(s.put_user("alice", "alice-password").await.unwrap());
        assert_eq!(
            s.authenticate(None, None).await,
            Authenticated::NotAuthorized
        );
        assert_eq!(
            s.authenticate(Some("alice"), Some(b"alice-password")).await,
            Authenticated::User("alice".into())
        );
        assert_eq!(
            s.authenticate(Some("alice"), Some(b"wrong")).await,
            Authenticated::BadCredentials
        );
        assert_eq!(
            s.authenticate(Some("bob"), Some(b"x")).await,
            Authenticated::BadCredentials
        );
        assert!(s.put_user("short", "x").await.is_err());
        s.delete_user("alice").unwrap();
        assert_eq!(s.authenticate(None, None).await, Authenticated::Anonymous);
    }

    #[tokio::test]
    async fn changes_survive_a_reopen() {
        use crate::seams::StateStore;
        let kv = crate::seams::memory::MemoryState::new();
        let space = kv.space(SPACE).unwrap();
        let reg = prometheus::Registry::new();
        {
            let s = Security::open(AuthConfig::default(), Some(space.clone()), &reg).unwrap();
            s.put_user("alice", "alice-password").await.unwrap();
            s.set_acl_rules(vec![AclRule {
                permission: acl::Permission::Deny,
                action: acl::AclAction::All,
                topic: "#".into(),
                username: None,
                client_id: None,
                ip: None,
            }])
            .unwrap();
            s.add_ban(Ban {
                kind: BanKind::Ip,
                value: "10.0.0.0/8".into(),
                until_ms: None,
                reason: "test".into(),
            })
            .unwrap();
        }
        let s = Security::open(AuthConfig::default(), Some(space), &reg).unwrap();
        assert_eq!(s.users().len(), 1);
        assert_eq!(s.acl_rules().1.len(), 1);
        assert!(s.ip_banned(IpAddr::from([10, 0, 0, 1])));
        let who = Who {
            username: None,
            client_id: "c",
            ip: None,
        };
        assert!(!s.allows(&who, Access::Subscribe("a")));
    }
}
