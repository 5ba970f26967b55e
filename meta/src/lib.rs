//! The meta service: the cluster's metadata (nodes, streams, partition placement with
//! leaders and epochs, manifests of offloaded segments, consumer-group coordinators) in an
//! openraft group whose log and state machine live in RocksDB, with node-to-node RPC over
//! gRPC. A single node runs the same code as a cluster of one.

// openraft's storage and network traits return its error types, which are large by
// design; the helpers here return what those traits need.
#![allow(clippy::result_large_err)]

pub mod config;
pub mod model;
mod network;
pub mod store;

use std::collections::BTreeMap;
use std::io::Cursor;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, RaftError};
use openraft::{Config, Raft};
use parking_lot::RwLock;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::model::{Command, MetaState, NodeAddr, NodeId, Outcome};
use crate::store::{Applied, LogStore, StateMachine};

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

/// This node's part of the meta service.
pub struct MetaNode {
    id: NodeId,
    secret: network::Secret,
    advertised: String,
    raft: MetaRaft,
    view: Arc<RwLock<Applied>>,
    addr: SocketAddr,
    stop: parking_lot::Mutex<Option<oneshot::Sender<()>>>,
    server: parking_lot::Mutex<Option<JoinHandle<()>>>,
    /// Rises once the store is closed.
    closed: Arc<std::sync::atomic::AtomicBool>,
}

impl std::fmt::Debug for MetaNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetaNode")
            .field("id", &self.id)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// How long stopping waits for the store to close.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a write keeps looking for a leader.
const WRITE_DEADLINE: Duration = Duration::from_secs(30);

impl MetaNode {
    /// Opens the store, serves node-to-node RPC on `listener` and joins the group: a node
    /// among the initial voters whose store is empty initializes it (each voter may; the
    /// first to reach the others wins and the rest find the group initialized).
    pub async fn start(config: MetaConfig, listener: TcpListener) -> Result<MetaNode, MetaError> {
        let dir = config.dir.clone();
        let (db, closed) = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            store::open(&dir).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| MetaError::Store(e.to_string()))?
        .map_err(MetaError::Store)?;
        let log = LogStore::new(db.clone());
        let sm = StateMachine::open(db).map_err(|e| MetaError::Store(e.to_string()))?;
        let view = sm.view();
        let timeout = config.election_timeout.as_millis() as u64;
        let raft_config = Config {
            cluster_name: "strata-meta".into(),
            heartbeat_interval: config.heartbeat.as_millis() as u64,
            election_timeout_min: timeout,
            election_timeout_max: timeout * 2,
            // Snapshot chunks travel as JSON (a byte may take four characters) in one
            // gRPC message each: kept far below the message limit.
            snapshot_max_chunk_size: network::SNAPSHOT_CHUNK,
            install_snapshot_timeout: 5_000,
            ..Config::default()
        }
        .validate()
        .map_err(|e| MetaError::Store(e.to_string()))?;
        let secret = network::Secret::new(&config.secret);
        let raft = Raft::new(
            config.id,
            Arc::new(raft_config),
            network::Network(secret.clone()),
            log,
            sm,
        )
        .await
        .map_err(|e| MetaError::Store(e.to_string()))?;
        let addr = listener
            .local_addr()
            .map_err(|e| MetaError::Listener(e.to_string()))?;
        let (stop, stopped) = oneshot::channel::<()>();
        let service =
            network::rpc::meta_server::MetaServer::new(network::Service { raft: raft.clone() })
                .max_decoding_message_size(network::MAX_MESSAGE)
                .max_encoding_message_size(network::MAX_MESSAGE);
        let service = tonic::service::interceptor::InterceptedService::new(
            service,
            network::Check(secret.clone()),
        );
        let server = tokio::spawn(async move {
            let incoming = tonic::transport::server::TcpIncoming::from(listener);
            let served = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "meta RPC server stopped");
            }
        });
        let node = MetaNode {
            id: config.id,
            secret,
            advertised: config.advertised.clone(),
            raft,
            view,
            addr,
            stop: parking_lot::Mutex::new(Some(stop)),
            server: parking_lot::Mutex::new(Some(server)),
            closed,
        };
        let initialized = node
            .raft
            .is_initialized()
            .await
            .map_err(|e| MetaError::Stopped(e.to_string()))?;
        if !initialized && config.voters.contains_key(&config.id) {
            let members: BTreeMap<NodeId, NodeAddr> = config
                .voters
                .iter()
                .map(|(&id, rpc)| (id, NodeAddr { rpc: rpc.clone() }))
                .collect();
            if let Err(e) = node.raft.initialize(members).await {
                // Another voter got there first: this node learns the group from it.
                tracing::debug!(error = %e, "meta group already initialized");
            }
        }
        Ok(node)
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The address other nodes reach this one at.
    pub fn advertised(&self) -> &str {
        &self.advertised
    }

    /// Where this node serves node-to-node RPC.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The leader this node knows of, if any.
    pub fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }

    /// The Raft term this node is in.
    pub fn term(&self) -> u64 {
        self.raft.metrics().borrow().current_term
    }

    /// The metadata as this node has applied it (it may trail the leader).
    pub fn state(&self) -> MetaState {
        self.view.read().state.clone()
    }

    /// The index of the last entry this node applied.
    pub fn applied_index(&self) -> Option<u64> {
        self.view.read().log_id.map(|l| l.index)
    }

    /// Applies `command` through the leader, wherever it is: written locally when this
    /// node leads, handed to the leader otherwise, retried while an election runs.
    pub async fn write(&self, command: Command) -> Result<Outcome, MetaError> {
        let started = Instant::now();
        let mut last = String::from("no leader yet");
        while started.elapsed() < WRITE_DEADLINE {
            match self.raft.client_write(command.clone()).await {
                Ok(r) => return Ok(r.data),
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                    match f.leader_node {
                        Some(node) if f.leader_id != Some(self.id) => {
                            match network::forward(&node.rpc, &self.secret, &command).await {
                                Ok(outcome) => return Ok(outcome),
                                Err(e) => last = e,
                            }
                        }
                        _ => last = "no leader yet".into(),
                    }
                }
                Err(RaftError::APIError(e)) => last = e.to_string(),
                Err(RaftError::Fatal(e)) => return Err(MetaError::Stopped(e.to_string())),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(MetaError::NoLeader(WRITE_DEADLINE, last))
    }

    /// Adds node `id` (reachable at `rpc`) to the group as a voter: first as a learner
    /// that catches up, then in the membership. Must run where a leader can be reached.
    pub async fn add_voter(&self, id: NodeId, rpc: String) -> Result<(), MetaError> {
        self.raft
            .add_learner(id, NodeAddr { rpc }, true)
            .await
            .map_err(|e| MetaError::Stopped(e.to_string()))?;
        let mut voters: std::collections::BTreeSet<NodeId> = self
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .collect();
        voters.insert(id);
        self.raft
            .change_membership(voters, false)
            .await
            .map(|_| ())
            .map_err(|e| MetaError::Stopped(e.to_string()))
    }

    /// Stops serving and leaves the group's work to the others. Returns once the store
    /// is closed (so the node may open it again), or after [`STOP_TIMEOUT`] with a warning.
    pub async fn shutdown(&self) {
        if let Some(stop) = self.stop.lock().take() {
            let _ = stop.send(());
        }
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "meta Raft did not stop cleanly");
        }
        // Raft has stopped: nothing is left to answer. Peers hold their connections open,
        // so a graceful stop would only wait for them.
        if let Some(server) = self.server.lock().take() {
            server.abort();
        }
        let started = Instant::now();
        while !self.closed.load(std::sync::atomic::Ordering::Acquire) {
            if started.elapsed() > STOP_TIMEOUT {
                tracing::warn!("the meta store is still open after shutdown");
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn requests_without_the_cluster_secret_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let mut config = MetaConfig::single(1, dir.path().join("meta"), addr.clone());
        config.secret = "the-right-secret-0123".into();
        let node = MetaNode::start(config, listener).await.unwrap();
        let command = Command::Heartbeat { id: 1, at_ms: 1 };
        for wrong in ["the-wrong-secret-0123", ""] {
            let refused = network::forward(&addr, &network::Secret::new(wrong), &command).await;
            assert!(refused.unwrap_err().contains("cluster secret"));
        }
        // With the secret the request reaches Raft (no node 1 registered yet: NotFound).
        let right = network::Secret::new("the-right-secret-0123");
        let started = Instant::now();
        let answered = loop {
            match network::forward(&addr, &right, &command).await {
                Ok(outcome) => break outcome,
                // Until the node has elected itself, the write is refused as not the leader's.
                Err(e) if !e.contains("cluster secret") && started.elapsed() < WRITE_DEADLINE => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("{e}"),
            }
        };
        assert!(matches!(answered, Outcome::NotFound(_)));
        node.shutdown().await;
    }
}
