//! The ban list (client ids, usernames and addresses, each until a time or for good) and
//! the flapping detector that adds to it: a client id or an address that connects more
//! than `max_connects` times within `window_secs` is banned for `ban_secs`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What a ban is on.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum BanKind {
    /// A client id.
    ClientId,
    /// A username.
    Username,
    /// An address or a network (`10.0.0.0/8`).
    Ip,
}

/// One ban.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Ban {
    /// What it is on.
    pub kind: BanKind,
    /// The client id, username, address or network.
    pub value: String,
    /// Until when (Unix milliseconds); none: until removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_ms: Option<u64>,
    /// Why (shown in the admin API).
    #[serde(default)]
    pub reason: String,
}

/// A new ban as the admin API takes it: what it is on decides what its value may be.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BanRequest {
    /// A client id.
    ClientId {
        /// The client id.
        #[schema(min_length = 1)]
        value: String,
        /// Until when (Unix milliseconds); none: until removed.
        #[serde(default, deserialize_with = "crate::admin::whole_number")]
        #[schema(minimum = 0, maximum = 9223372036854775807_i64)]
        until_ms: Option<u64>,
        /// Why.
        #[serde(default)]
        reason: String,
    },
    /// A username.
    Username {
        /// The username.
        #[schema(min_length = 1)]
        value: String,
        /// Until when (Unix milliseconds); none: until removed.
        #[serde(default, deserialize_with = "crate::admin::whole_number")]
        #[schema(minimum = 0, maximum = 9223372036854775807_i64)]
        until_ms: Option<u64>,
        /// Why.
        #[serde(default)]
        reason: String,
    },
    /// An address or a network.
    Ip {
        /// `10.1.2.3`, `10.0.0.0/8`, `::1`.
        #[schema(value_type = super::acl::IpText)]
        value: String,
        /// Until when (Unix milliseconds); none: until removed.
        #[serde(default, deserialize_with = "crate::admin::whole_number")]
        #[schema(minimum = 0, maximum = 9223372036854775807_i64)]
        until_ms: Option<u64>,
        /// Why.
        #[serde(default)]
        reason: String,
    },
}

impl TryFrom<BanRequest> for Ban {
    type Error = String;

    fn try_from(r: BanRequest) -> Result<Ban, String> {
        let (kind, value, until_ms, reason) = match r {
            BanRequest::ClientId {
                value,
                until_ms,
                reason,
            } => (BanKind::ClientId, value, until_ms, reason),
            BanRequest::Username {
                value,
                until_ms,
                reason,
            } => (BanKind::Username, value, until_ms, reason),
            BanRequest::Ip {
                value,
                until_ms,
                reason,
            } => (BanKind::Ip, value, until_ms, reason),
        };
        if value.is_empty() {
            return Err("a ban needs a value".into());
        }
        if until_ms.is_some_and(|t| t > i64::MAX as u64) {
            return Err("until_ms is beyond the largest time".into());
        }
        Ok(Ban {
            kind,
            value,
            until_ms,
            reason,
        })
    }
}

impl Ban {
    /// Whether it is still in force at `now_ms`.
    pub fn active(&self, now_ms: u64) -> bool {
        self.until_ms.is_none_or(|t| now_ms < t)
    }

    /// The key it is stored under.
    pub fn key(&self) -> (BanKind, String) {
        (self.kind, self.value.clone())
    }
}

/// Bans by kind and value; address bans may be networks.
#[derive(Debug, Default, Clone)]
pub struct BanList {
    bans: BTreeMap<(BanKind, String), Ban>,
    networks: Vec<(IpNet, String)>,
}

impl BanList {
    /// Adds or replaces a ban. An address ban must parse as an address or a network.
    pub fn insert(&mut self, ban: Ban) -> Result<(), String> {
        if ban.kind == BanKind::Ip {
            let net = parse_net(&ban.value)?;
            self.networks.retain(|(_, v)| v != &ban.value);
            self.networks.push((net, ban.value.clone()));
        }
        self.bans.insert(ban.key(), ban);
        Ok(())
    }

    /// Removes a ban; whether there was one.
    pub fn remove(&mut self, kind: BanKind, value: &str) -> bool {
        if kind == BanKind::Ip {
            self.networks.retain(|(_, v)| v != value);
        }
        self.bans.remove(&(kind, value.to_string())).is_some()
    }

    /// Every ban, expired ones included until pruned.
    pub fn list(&self) -> Vec<Ban> {
        self.bans.values().cloned().collect()
    }

    /// Forgets expired bans; returns them.
    pub fn prune(&mut self, now_ms: u64) -> Vec<Ban> {
        let gone: Vec<Ban> = self
            .bans
            .values()
            .filter(|b| !b.active(now_ms))
            .cloned()
            .collect();
        for b in &gone {
            self.remove(b.kind, &b.value);
        }
        gone
    }

    fn active(&self, kind: BanKind, value: &str, now_ms: u64) -> bool {
        self.bans
            .get(&(kind, value.to_string()))
            .is_some_and(|b| b.active(now_ms))
    }

    /// Whether an address is banned (directly or by a network).
    pub fn ip_banned(&self, ip: IpAddr, now_ms: u64) -> bool {
        self.networks
            .iter()
            .any(|(net, v)| net.contains(&ip) && self.active(BanKind::Ip, v, now_ms))
    }

    /// Whether a client id or username is banned.
    pub fn client_banned(&self, client_id: &str, username: Option<&str>, now_ms: u64) -> bool {
        self.active(BanKind::ClientId, client_id, now_ms)
            || username.is_some_and(|u| self.active(BanKind::Username, u, now_ms))
    }
}

fn parse_net(value: &str) -> Result<IpNet, String> {
    value
        .parse::<IpNet>()
        .or_else(|_| value.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("`{value}` is not an address or a network"))
}

/// Flapping detection settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlappingConfig {
    /// Detect flapping at all.
    pub enabled: bool,
    /// Connections allowed within the window; one more bans.
    pub max_connects: usize,
    /// The window, in seconds.
    pub window_secs: u64,
    /// How long a flapping client id or address is banned, in seconds.
    pub ban_secs: u64,
}

impl Default for FlappingConfig {
    fn default() -> Self {
        FlappingConfig {
            enabled: true,
            max_connects: 30,
            window_secs: 60,
            ban_secs: 300,
        }
    }
}

/// Recent connection times per client id and per address. Bounded: at most `max_connects`
/// times per key, and keys whose newest time left the window are forgotten.
#[derive(Debug, Default)]
pub struct FlappingDetector {
    recent: HashMap<(BanKind, String), VecDeque<u64>>,
    last_prune_ms: u64,
}

impl FlappingDetector {
    /// Records a connection of `key` at `now_ms`; true when it is one too many.
    pub fn record(&mut self, config: &FlappingConfig, key: (BanKind, String), now_ms: u64) -> bool {
        let window = config.window_secs * 1000;
        if now_ms.saturating_sub(self.last_prune_ms) >= window.max(1000) {
            self.last_prune_ms = now_ms;
            self.recent.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|t| now_ms.saturating_sub(*t) < window)
            });
        }
        let times = self.recent.entry(key).or_default();
        while times
            .front()
            .is_some_and(|t| now_ms.saturating_sub(*t) >= window)
        {
            times.pop_front();
        }
        times.push_back(now_ms);
        if times.len() > config.max_connects {
            times.clear();
            return true;
        }
        false
    }

    /// Keys tracked (for the bound's tests).
    #[cfg(test)]
    pub fn tracked(&self) -> usize {
        self.recent.len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn bans_by_kind_network_and_expiry() {
        let mut list = BanList::default();
        list.insert(Ban {
            kind: BanKind::Ip,
            value: "10.0.0.0/8".into(),
            until_ms: Some(100),
            reason: String::new(),
        })
        .unwrap();
        list.insert(Ban {
            kind: BanKind::ClientId,
            value: "bad".into(),
            until_ms: None,
            reason: String::new(),
        })
        .unwrap();
        assert!(
            list.insert(Ban {
                kind: BanKind::Ip,
                value: "nonsense".into(),
                until_ms: None,
                reason: String::new()
            })
            .is_err()
        );
        assert!(list.ip_banned(IpAddr::from([10, 9, 9, 9]), 50));
        assert!(!list.ip_banned(IpAddr::from([10, 9, 9, 9]), 100), "expired");
        assert!(!list.ip_banned(IpAddr::from([11, 0, 0, 1]), 50));
        assert!(list.client_banned("bad", None, 1_000_000));
        assert!(!list.client_banned("good", Some("u"), 0));
        assert_eq!(list.prune(200).len(), 1);
        assert!(list.remove(BanKind::ClientId, "bad"));
        assert!(list.list().is_empty());
    }

    #[test]
    fn flapping_is_more_connects_than_allowed_in_the_window() {
        let config = FlappingConfig {
            enabled: true,
            max_connects: 3,
            window_secs: 10,
            ban_secs: 60,
        };
        let mut d = FlappingDetector::default();
        let key = || (BanKind::ClientId, "c".to_string());
        assert!(!d.record(&config, key(), 0));
        assert!(!d.record(&config, key(), 1000));
        assert!(!d.record(&config, key(), 2000));
        assert!(d.record(&config, key(), 3000));
        // Spread out, never.
        for i in 0..10 {
            assert!(!d.record(
                &config,
                (BanKind::ClientId, "slow".into()),
                20_000 + i * 5000
            ));
        }
        // Old keys are forgotten.
        d.record(&config, (BanKind::Ip, "x".into()), 1_000_000);
        assert_eq!(d.tracked(), 1);
    }
}
