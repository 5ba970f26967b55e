//! A node's part of the meta service: the Raft instance over the RocksDB store, the
//! node-to-node server, writes and voter changes through whichever node leads.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, RaftError};
use openraft::{Config, Raft};
use parking_lot::RwLock;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::clock::LeaderClock;
use crate::model::{Command, MetaState, NodeAddr, NodeId, Outcome};
use crate::network::{self, VoterChange};
use crate::store::{self, Applied, LogStore, StateMachine};
use crate::{MetaConfig, MetaError, MetaRaft, partitions};

/// This node's part of the meta service.
pub struct MetaNode {
    id: NodeId,
    secret: network::Secret,
    advertised: String,
    raft: MetaRaft,
    view: Arc<RwLock<Applied>>,
    /// Stamps heartbeats with the leader's time.
    clock: LeaderClock,
    addr: SocketAddr,
    stop: parking_lot::Mutex<Option<oneshot::Sender<()>>>,
    server: parking_lot::Mutex<Option<JoinHandle<()>>>,
    /// Rises once the store is closed.
    closed: Arc<std::sync::atomic::AtomicBool>,
    /// What serves this node's partitions to the others, once set.
    host: partitions::HostSlot,
    /// Connections to other nodes' partitions.
    clients: partitions::Clients,
    /// Nodes whose port refused the meta service's last connection.
    refusing: network::Refusing,
    /// When this node may vote, if its store was empty at start.
    amnesia: Arc<network::Amnesia>,
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

/// Requests (HTTP/2 streams) one node-to-node connection may have in flight. A follower
/// keeps one long-polling fetch open per partition it follows from that leader (5 s while
/// caught up), all on one connection: 1,000 partitions with three copies on three nodes
/// are about 667 per node pair. A limit below that would queue a partition's fetch behind
/// idle polls, and its acks=all writes with it.
const MAX_IN_FLIGHT: usize = 4_096;

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
            max_payload_entries: network::MAX_ENTRIES,
            ..Config::default()
        }
        .validate()
        .map_err(|e| MetaError::Store(e.to_string()))?;
        // This node's connections leave from the address it listens at.
        let bound = listener
            .local_addr()
            .map_err(|e| MetaError::Listener(e.to_string()))?;
        let secret = network::Secret::new(&config.secret).leaving_from(bound.ip());
        let refusals = network::Refusals::new(&config.registry);
        let refusing = network::Refusing::default();
        let amnesia = network::Amnesia::new(config.election_timeout);
        let raft = Raft::new(
            config.id,
            Arc::new(raft_config),
            network::Network(secret.clone(), refusing.clone(), amnesia.clone()),
            log,
            sm,
        )
        .await
        .map_err(|e| MetaError::Store(e.to_string()))?;
        // A store with nothing in it is a new node's, or one that lost its disk.
        if !raft
            .is_initialized()
            .await
            .map_err(|e| MetaError::Stopped(e.to_string()))?
        {
            amnesia.started_empty();
        }
        let addr = bound;
        let (stop, stopped) = oneshot::channel::<()>();
        let clock = LeaderClock::new(raft.clone(), view.clone());
        let service = network::rpc::meta_server::MetaServer::new(network::Service {
            raft: raft.clone(),
            refusals: refusals.clone(),
            clock: clock.clone(),
            amnesia: amnesia.clone(),
        })
        .max_decoding_message_size(network::MAX_MESSAGE)
        .max_encoding_message_size(network::MAX_MESSAGE);
        let service = tonic::service::interceptor::InterceptedService::new(
            service,
            network::Check(secret.clone(), refusals.clone()),
        );
        let host = partitions::HostSlot::default();
        let data = tonic::service::interceptor::InterceptedService::new(
            partitions::rpc::partitions_server::PartitionsServer::new(partitions::Service(
                host.clone(),
                refusals.clone(),
            ))
            .max_decoding_message_size(partitions::MAX_MESSAGE)
            .max_encoding_message_size(partitions::MAX_MESSAGE),
            network::Check(secret.clone(), refusals),
        );
        let server = tokio::spawn(async move {
            // No Nagle: an answer written in several frames (a fetch's headers, data and
            // trailers) would wait for the peer's delayed ACK, 40 ms on Linux, on every
            // replication round trip.
            let incoming =
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
            // Bounded: requests in flight per connection; idle and dead peers are found by
            // HTTP/2 keepalive and dropped.
            let served = tonic::transport::Server::builder()
                .concurrency_limit_per_connection(MAX_IN_FLIGHT)
                .max_concurrent_streams(Some(MAX_IN_FLIGHT as u32))
                .http2_keepalive_interval(Some(Duration::from_secs(10)))
                .http2_keepalive_timeout(Some(Duration::from_secs(20)))
                .tcp_keepalive(Some(Duration::from_secs(30)))
                .add_service(service)
                .add_service(data)
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
            clock,
            addr,
            stop: parking_lot::Mutex::new(Some(stop)),
            server: parking_lot::Mutex::new(Some(server)),
            closed,
            host,
            clients: partitions::Clients::default(),
            refusing,
            amnesia,
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

    /// Whether node `id` refused this node's last connection to it, within the last 2 s
    /// (nothing listens on its node-to-node port: its process is gone). Known of the
    /// voters this node replicates to while it leads the meta service.
    pub fn refuses_connections(&self, id: NodeId) -> bool {
        self.refusing.refuses(id)
    }

    /// The Raft term this node is in.
    pub fn term(&self) -> u64 {
        self.raft.metrics().borrow().current_term
    }

    /// The metadata as this node has applied it (it may trail the leader).
    pub fn state(&self) -> MetaState {
        self.view.read().state.clone()
    }

    /// Reads the metadata as this node has applied it, without copying it. `f` runs under
    /// a read lock: keep it short.
    pub fn read<R>(&self, f: impl FnOnce(&MetaState) -> R) -> R {
        f(&self.view.read().state)
    }

    /// Waits until `ready` holds for the metadata this node has applied (a write made
    /// through another node is committed before this one applies it). False once
    /// `deadline` passes first.
    pub async fn applied(&self, ready: impl Fn(&MetaState) -> bool, deadline: Duration) -> bool {
        let until = tokio::time::Instant::now() + deadline;
        let mut metrics = self.raft.metrics();
        loop {
            if self.read(&ready) {
                return true;
            }
            // Applying updates the metrics; the short sleep covers an update that landed
            // between the check and the wait.
            let changed = tokio::time::timeout_at(
                until.min(tokio::time::Instant::now() + Duration::from_millis(20)),
                metrics.changed(),
            )
            .await;
            if matches!(changed, Ok(Err(_))) || tokio::time::Instant::now() >= until {
                return self.read(&ready);
            }
        }
    }

    /// The voters of the meta group now.
    pub fn voters(&self) -> Vec<NodeId> {
        self.raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .collect()
    }

    /// The index of the last entry this node applied.
    pub fn applied_index(&self) -> Option<u64> {
        self.view.read().log_id.map(|l| l.index)
    }

    /// Applies `command` through the leader, wherever it is: written locally when this
    /// node leads, handed to the leader otherwise, retried while an election runs.
    pub async fn write(&self, command: Command) -> Result<Outcome, MetaError> {
        self.write_at(command).await.map(|(outcome, _)| outcome)
    }

    /// Like [`MetaNode::write`], and returns once this node has applied the change too:
    /// a read here after it sees the change (and every change committed before it).
    pub async fn write_applied(&self, command: Command) -> Result<Outcome, MetaError> {
        let (outcome, index) = self.write_at(command).await?;
        let until = tokio::time::Instant::now() + WRITE_DEADLINE;
        let mut metrics = self.raft.metrics();
        loop {
            if self.applied_index().is_some_and(|i| i >= index) {
                return Ok(outcome);
            }
            // Applying updates the metrics; the short bound covers an update that landed
            // between the check and the wait.
            let changed = tokio::time::timeout_at(
                until.min(tokio::time::Instant::now() + Duration::from_millis(20)),
                metrics.changed(),
            )
            .await;
            if matches!(changed, Ok(Err(_))) {
                return Err(MetaError::Stopped("the meta service stopped".into()));
            }
            if tokio::time::Instant::now() >= until {
                return Err(MetaError::NoLeader(
                    WRITE_DEADLINE,
                    format!("this node did not apply entry {index} in time"),
                ));
            }
        }
    }

    /// Applies `command` through the leader: its outcome and the index of its log entry.
    async fn write_at(&self, command: Command) -> Result<(Outcome, u64), MetaError> {
        // Every entry travels to every node, MAX_ENTRIES at a time, in one message.
        let size = serde_json::to_vec(&command).map_or(usize::MAX, |j| j.len());
        if size > network::MAX_COMMAND {
            return Err(MetaError::Refused(format!(
                "a meta command is at most {} bytes, this one is {size}",
                network::MAX_COMMAND
            )));
        }
        let started = Instant::now();
        let mut last = String::from("no leader yet");
        while started.elapsed() < WRITE_DEADLINE {
            let left = WRITE_DEADLINE.saturating_sub(started.elapsed());
            // A leader cut off from the others does not step down by itself: the wait for
            // its commit is bounded here.
            let Ok(written) = tokio::time::timeout(
                left,
                self.raft.client_write(self.clock.stamp(command.clone())),
            )
            .await
            else {
                last = "the leader did not commit the write in time".into();
                break;
            };
            match written {
                Ok(r) => return Ok(self.committed((r.data, r.log_id.index))),
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                    match f.leader_node {
                        Some(node) if f.leader_id != Some(self.id) => {
                            match network::forward(&node.rpc, &self.secret, &command).await {
                                Ok(outcome) => return Ok(self.committed(outcome)),
                                Err(network::Unforwarded::NotApplied(e)) => last = e,
                                // Sent again, it could be applied twice (and undo what
                                // was written in between): the caller decides.
                                Err(network::Unforwarded::Unknown(e)) => {
                                    return Err(MetaError::Unanswered(e));
                                }
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

    /// Notes a write of this node's committed at the returned index.
    fn committed(&self, written: (Outcome, u64)) -> (Outcome, u64) {
        self.amnesia.wrote(written.1);
        written
    }

    /// Serves this node's partitions to the other nodes through `host`. Until then, and
    /// after [`MetaNode::shutdown`], they are answered UNAVAILABLE.
    pub fn serve_partitions(&self, host: Arc<dyn partitions::PartitionHost>) {
        *self.host.write() = Some(host);
    }

    /// Sends `request` to node `node`, the leader of its partition; `Err` when the node is
    /// unknown, unreachable or did not answer.
    pub async fn partition_call(
        &self,
        node: NodeId,
        request: partitions::PartitionRequest,
    ) -> Result<partitions::PartitionReply, String> {
        // A node that is stopping calls no other (its replicas' fetches end with it).
        if self.stop.lock().is_none() {
            return Err(format!("node {} is stopping", self.id));
        }
        let addr = self
            .read(|s| s.nodes.get(&node).map(|n| n.rpc.clone()))
            .ok_or_else(|| format!("node {node} is not a member"))?;
        self.clients.call(&addr, &self.secret, request).await
    }

    /// Changes the group's voters through the leader, wherever it is (see
    /// [`VoterChange`]); retried while an election runs.
    pub async fn change_voters(&self, change: VoterChange) -> Result<(), MetaError> {
        let started = Instant::now();
        let mut last = String::from("no leader yet");
        while started.elapsed() < WRITE_DEADLINE {
            let leader = self.leader();
            let tried = if leader == Some(self.id) {
                network::change_voters(&self.raft, &change).await
            } else if let Some(rpc) = leader.and_then(|l| self.rpc_of(l)) {
                network::forward_voters(&rpc, &self.secret, &change).await
            } else {
                Err("no leader yet".into())
            };
            match tried {
                Ok(()) => return Ok(()),
                // Leadership moved under the request, or no leader is known yet: ask again.
                Err(e) if e.contains(network::NOT_LEADER) || e == "no leader yet" => last = e,
                Err(e) => return Err(MetaError::Refused(e)),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(MetaError::NoLeader(WRITE_DEADLINE, last))
    }

    /// Node `id`'s node-to-node address, as the group's membership has it.
    fn rpc_of(&self, id: NodeId) -> Option<String> {
        self.raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .get_node(&id)
            .map(|n| n.rpc.clone())
    }

    /// Stops serving and leaves the group's work to the others. Returns once the store
    /// is closed (so the node may open it again), or after [`STOP_TIMEOUT`] with a warning.
    pub async fn shutdown(&self) {
        self.host.write().take();
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

    /// A node alone in its group, with the secret `the-right-secret-0123`: its data
    /// directory (kept while the test runs), the node, its address and its metrics.
    async fn secret_node() -> (tempfile::TempDir, MetaNode, String, prometheus::Registry) {
        let dir = tempfile::tempdir().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let mut config = MetaConfig::single(1, dir.path().join("meta"), addr.clone());
        config.secret = "the-right-secret-0123".into();
        let registry = config.registry.clone();
        let node = MetaNode::start(config, listener).await.unwrap();
        (dir, node, addr, registry)
    }

    /// Node-to-node requests refused for `reason`.
    fn refused(registry: &prometheus::Registry, reason: &str) -> u64 {
        registry
            .gather()
            .iter()
            .filter(|f| f.name() == "strata_cluster_rpc_refused_total")
            .flat_map(|f| f.get_metric().iter())
            .filter(|m| m.get_label().iter().any(|l| l.value() == reason))
            .map(|m| m.get_counter().get_value() as u64)
            .sum()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_vote_asked_by_a_node_outside_the_group_is_refused_and_counted() {
        use openraft::Vote;
        use openraft::raft::VoteRequest;
        let (_dir, node, addr, registry) = secret_node().await;
        assert!(node.applied(|_| true, WRITE_DEADLINE).await);
        let mut client =
            network::client(&addr, &network::Secret::new("the-right-secret-0123")).unwrap();
        let ask = |from: NodeId| {
            let request: VoteRequest<NodeId> = VoteRequest::new(Vote::new(1_000, from), None);
            network::frame(&request).unwrap()
        };
        let started = Instant::now();
        loop {
            match client.vote(ask(99)).await {
                Err(s) if s.code() == tonic::Code::PermissionDenied => break,
                // Until the node has its membership (just after start) it refuses nobody.
                _ if started.elapsed() < WRITE_DEADLINE => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(refused(&registry, "unknown_node"), 1);
        // The group's own voter is answered (its vote is judged by Raft, not refused).
        assert!(client.vote(ask(1)).await.is_ok());
        node.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn requests_without_the_cluster_secret_are_refused() {
        let (_dir, node, addr, registry) = secret_node().await;
        let command = Command::Heartbeat { id: 1, at_ms: 1 };
        for wrong in ["the-wrong-secret-0123", ""] {
            let refused = network::forward(&addr, &network::Secret::new(wrong), &command).await;
            assert!(
                matches!(&refused, Err(network::Unforwarded::NotApplied(m)) if m.contains("cluster secret")),
                "{refused:?}"
            );
        }
        assert_eq!(refused(&registry, "secret"), 2);
        // With the secret the request reaches Raft (no node 1 registered yet: NotFound).
        let right = network::Secret::new("the-right-secret-0123");
        let started = Instant::now();
        let answered = loop {
            match network::forward(&addr, &right, &command).await {
                Ok((outcome, _)) => break outcome,
                // Until the node has elected itself, the write is refused as not the leader's.
                Err(network::Unforwarded::NotApplied(e))
                    if !e.contains("cluster secret") && started.elapsed() < WRITE_DEADLINE =>
                {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("{e:?}"),
            }
        };
        assert!(matches!(answered, Outcome::NotFound(_)));
        node.shutdown().await;
    }
}
