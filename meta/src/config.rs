//! `[cluster]`: how a node takes part in the cluster. Without the section a node is a
//! cluster of one: it is its own only voter and its node-to-node listener binds an
//! ephemeral port on loopback (nobody else needs to reach it).

use std::net::{Ipv4Addr, SocketAddr};

use serde::{Deserialize, Serialize};

use crate::model::NodeId;

/// `[cluster]` settings.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// This node's id, unique in the cluster (1 or more).
    pub node_id: NodeId,
    /// The node-to-node listener (meta service RPC).
    pub listen: SocketAddr,
    /// The address other nodes reach the node-to-node listener at (`host:port`); the
    /// bound address when unset.
    pub advertised: Option<String>,
    /// The voters the cluster starts with, as `id@host:port`; empty: this node alone.
    pub initial_voters: Vec<String>,
    /// Leader heartbeat interval, milliseconds.
    pub heartbeat_ms: u64,
    /// Election timeout, milliseconds (each election waits between this and twice this).
    pub election_timeout_ms: u64,
    /// The secret node-to-node requests carry, the same on every node (at least 16
    /// characters). Required with `initial_voters`; alone, a node makes up its own.
    pub secret: Option<String>,
}

/// Hides the secret.
impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("node_id", &self.node_id)
            .field("listen", &self.listen)
            .field("advertised", &self.advertised)
            .field("initial_voters", &self.initial_voters)
            .field("heartbeat_ms", &self.heartbeat_ms)
            .field("election_timeout_ms", &self.election_timeout_ms)
            .field("secret", &self.secret.as_ref().map(|_| "***"))
            .finish()
    }
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            node_id: 1,
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            advertised: None,
            initial_voters: Vec::new(),
            heartbeat_ms: 100,
            election_timeout_ms: 300,
            secret: None,
        }
    }
}

impl ClusterConfig {
    /// Checks the settings: a node id from 1 to 2^31-1, voters that parse, a heartbeat well
    /// inside the election timeout.
    pub fn validate(&self) -> Result<(), String> {
        // Kafka clients see node ids as 32-bit broker ids.
        if self.node_id == 0 || self.node_id > i32::MAX as u64 {
            return Err(format!("node_id must be 1 to {}", i32::MAX));
        }
        let voters = self.voters()?;
        match &self.secret {
            Some(s) if s.len() < 16 || !s.bytes().all(|b| b.is_ascii_graphic()) => {
                return Err("secret must be at least 16 visible ASCII characters".into());
            }
            None if !voters.is_empty() => {
                return Err(
                    "secret is required with initial_voters: node-to-node requests must be authenticated"
                        .into(),
                );
            }
            _ => {}
        }
        if self.heartbeat_ms == 0
            || self.election_timeout_ms > 60_000
            || self.heartbeat_ms * 2 > self.election_timeout_ms
        {
            return Err(format!(
                "heartbeat_ms ({}) must be at least 1 and at most half of election_timeout_ms ({})",
                self.heartbeat_ms, self.election_timeout_ms
            ));
        }
        Ok(())
    }

    /// The initial voters by id.
    pub fn voters(&self) -> Result<std::collections::BTreeMap<NodeId, String>, String> {
        let mut out = std::collections::BTreeMap::new();
        for v in &self.initial_voters {
            let (id, addr) = v
                .split_once('@')
                .ok_or_else(|| format!("initial_voters: `{v}` is not id@host:port"))?;
            let id: NodeId = id
                .parse()
                .map_err(|_| format!("initial_voters: `{id}` in `{v}` is not a node id"))?;
            if id == 0
                || addr
                    .rsplit_once(':')
                    .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
            {
                return Err(format!("initial_voters: `{v}` is not id@host:port"));
            }
            if out.insert(id, addr.to_string()).is_some() {
                return Err(format!("initial_voters: node {id} is listed twice"));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn voters_parse_and_bad_ones_are_named() {
        let mut c = ClusterConfig {
            initial_voters: vec!["1@127.0.0.1:7001".into(), "2@n2:7001".into()],
            ..ClusterConfig::default()
        };
        assert!(c.validate().unwrap_err().contains("secret"));
        c.secret = Some("short".into());
        assert!(c.validate().unwrap_err().contains("16"));
        c.secret = Some("a-long-enough-cluster-secret".into());
        assert_eq!(c.voters().unwrap()[&2], "n2:7001");
        assert!(c.validate().is_ok());
        for bad in ["x@a:1", "1@a", "0@a:1", "1a:1", "1@:1"] {
            c.initial_voters = vec![bad.into()];
            assert!(c.validate().unwrap_err().contains(bad), "{bad}");
        }
        c.initial_voters = vec!["1@a:1".into(), "1@b:1".into()];
        assert!(c.validate().is_err());
        c.initial_voters.clear();
        c.heartbeat_ms = 200;
        assert!(c.validate().is_err());
    }
}
