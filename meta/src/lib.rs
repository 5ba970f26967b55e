//! The meta service: the cluster's metadata (nodes, streams, partition placement with
//! leaders and epochs, manifests of offloaded segments, consumer-group coordinators) in an
//! openraft group whose log and state machine live in RocksDB, with node-to-node RPC over
//! gRPC. A single node runs the same code as a cluster of one.

// openraft's storage and network traits return its error types, which are large by
// design; the helpers here return what those traits need.
#![allow(clippy::result_large_err)]

mod clock;
pub mod config;
pub mod model;
mod network;
#[cfg(feature = "node")]
mod node;
pub mod partitions;
#[cfg(feature = "node")]
pub mod store;

pub use network::{MAX_COMMAND, VoterChange, decode_frame};
#[cfg(feature = "node")]
pub use node::{MetaNode, STOP_TIMEOUT};

use std::collections::BTreeMap;
use std::io::Cursor;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use openraft::Raft;

use crate::model::{Command, NodeAddr, NodeId, Outcome};

openraft::declare_raft_types!(
    /// The meta service's Raft types: commands in, outcomes out, nodes by address.
    pub TypeConfig:
        D = Command,
        R = Outcome,
        NodeId = NodeId,
        Node = NodeAddr,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The Raft instance of the meta service.
pub type MetaRaft = Raft<TypeConfig>;

/// Why the meta service failed.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// Its store could not be opened or written.
    #[error("meta store: {0}")]
    Store(String),
    /// Its listener could not be bound or served.
    #[error("meta listener: {0}")]
    Listener(String),
    /// No leader could take the command in time.
    #[error("no meta leader answered within {0:?}: {1}")]
    NoLeader(Duration, String),
    /// Raft stopped.
    #[error("meta service stopped: {0}")]
    Stopped(String),
    /// The leader refused the change.
    #[error("refused: {0}")]
    Refused(String),
    /// The leader took the command and its answer was lost: it may have been applied.
    #[error("the meta leader did not answer ({0}); the change may have been applied")]
    Unanswered(String),
}

/// How a node takes part in the meta service.
#[derive(Clone)]
pub struct MetaConfig {
    /// This node's id.
    pub id: NodeId,
    /// Where the store lives (`<data_dir>/meta`).
    pub dir: PathBuf,
    /// The address other nodes reach this one at (`host:port`).
    pub advertised: String,
    /// The voters the cluster starts with (this node among them, or not if it joins
    /// later), with their node-to-node addresses.
    pub voters: BTreeMap<NodeId, String>,
    /// Leader heartbeat interval.
    pub heartbeat: Duration,
    /// Election timeout; each election waits between this and twice this.
    pub election_timeout: Duration,
    /// The secret every node-to-node request carries and every node checks.
    pub secret: String,
    /// Where the service's metrics go.
    pub registry: prometheus::Registry,
}

/// Hides the secret.
impl std::fmt::Debug for MetaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetaConfig")
            .field("id", &self.id)
            .field("dir", &self.dir)
            .field("advertised", &self.advertised)
            .field("voters", &self.voters)
            .field("heartbeat", &self.heartbeat)
            .field("election_timeout", &self.election_timeout)
            .field("secret", &"***")
            .finish()
    }
}

impl MetaConfig {
    /// The settings of `[cluster]` for a node whose data is in `data_dir` and whose
    /// node-to-node listener is bound at `bound`.
    pub fn from_cluster(
        cluster: &config::ClusterConfig,
        data_dir: &std::path::Path,
        bound: SocketAddr,
    ) -> Result<Self, String> {
        let advertised = cluster
            .advertised
            .clone()
            .unwrap_or_else(|| bound.to_string());
        let mut voters = cluster.voters()?;
        if voters.is_empty() {
            voters.insert(cluster.node_id, advertised.clone());
        }
        Ok(MetaConfig {
            id: cluster.node_id,
            dir: data_dir.join("meta"),
            advertised,
            voters,
            heartbeat: Duration::from_millis(cluster.heartbeat_ms),
            election_timeout: Duration::from_millis(cluster.election_timeout_ms),
            // Alone, the node makes one up: nobody else needs to reach it.
            secret: cluster.secret.clone().unwrap_or_else(random_secret),
            registry: prometheus::Registry::new(),
        })
    }

    /// A single node: its own only voter.
    pub fn single(id: NodeId, dir: PathBuf, advertised: String) -> Self {
        MetaConfig {
            id,
            dir,
            voters: BTreeMap::from([(id, advertised.clone())]),
            advertised,
            heartbeat: Duration::from_millis(100),
            election_timeout: Duration::from_millis(300),
            secret: random_secret(),
            registry: prometheus::Registry::new(),
        }
    }
}

/// 32 random bytes as hex: the secret of a node that has no peers to share one with.
pub fn random_secret() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
