//! Node-to-node RPC of the meta service over gRPC (tonic): Raft's AppendEntries, Vote and
//! InstallSnapshot, and Write, which hands a command to the leader. Each message is one
//! prost [`Frame`] holding the JSON of openraft's request or of the answer (a `Result`, so
//! a Raft error on the far side comes back as that error, not as a transport failure).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::model::{Command, NodeAddr, NodeId, Outcome};
use crate::{MetaRaft, TypeConfig};

/// The one message of the service: a JSON payload.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Frame {
    /// JSON of a request or of a `Result` answer.
    #[prost(bytes = "vec", tag = "1")]
    pub payload: Vec<u8>,
}

#[allow(missing_docs, clippy::all)]
pub(crate) mod rpc {
    include!(concat!(env!("OUT_DIR"), "/strata.meta.Meta.rs"));
}

/// Largest gRPC message either way (tonic's default is 4 MiB).
pub(crate) const MAX_MESSAGE: usize = 16 * 1024 * 1024;
/// Largest snapshot chunk, in bytes before JSON (which may write a byte as four characters).
pub(crate) const SNAPSHOT_CHUNK: u64 = 1024 * 1024;
/// Largest command the meta service takes, as JSON: with [`MAX_ENTRIES`] of them an
/// AppendEntries request stays well below [`MAX_MESSAGE`].
pub const MAX_COMMAND: usize = 256 * 1024;
/// Most log entries in one AppendEntries request.
pub(crate) const MAX_ENTRIES: u64 = 48;

/// How long a node waits to connect to another.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one RPC may take at most (snapshots are small: the metadata).
const RPC_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) fn frame<T: Serialize>(value: &T) -> Result<Frame, tonic::Status> {
    serde_json::to_vec(value)
        .map(|payload| Frame { payload })
        .map_err(|e| tonic::Status::internal(e.to_string()))
}

fn unframe<T: DeserializeOwned>(f: &Frame) -> Result<T, tonic::Status> {
    serde_json::from_slice(&f.payload).map_err(|e| tonic::Status::invalid_argument(e.to_string()))
}

/// The cluster secret every node-to-node request carries (`authorization: Bearer ...`),
/// and checks on the requests it serves; with it, the address this node's own
/// connections leave from (its node-to-node listener's, so that peers and firewall rules
/// see one address per node).
#[derive(Clone)]
pub(crate) struct Secret(Arc<str>, Option<std::net::IpAddr>);

impl Secret {
    pub(crate) fn new(secret: &str) -> Self {
        Secret(Arc::from(secret), None)
    }

    /// The same secret, with connections leaving from `source` (none when unspecified).
    pub(crate) fn leaving_from(self, source: std::net::IpAddr) -> Self {
        Secret(self.0, (!source.is_unspecified()).then_some(source))
    }

    fn header(&self) -> Result<MetadataValue<Ascii>, tonic::Status> {
        format!("Bearer {}", self.0)
            .parse()
            .map_err(|_| tonic::Status::internal("the cluster secret is not ASCII"))
    }
}

/// Adds the secret to a request this node sends.
impl Interceptor for Secret {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert("authorization", self.header()?);
        Ok(request)
    }
}

/// Counts the node-to-node requests this node refused, by reason
/// (`strata_cluster_rpc_refused_total{reason}`), and logs them at most once per
/// [`LOG_EVERY`]: a peer that keeps sending bad requests cannot flood the log.
#[derive(Clone)]
pub(crate) struct Refusals {
    counter: prometheus::IntCounterVec,
    logged: Arc<parking_lot::Mutex<Option<std::time::Instant>>>,
}

/// At most one log line about refused requests per this long.
const LOG_EVERY: Duration = Duration::from_secs(10);

impl Refusals {
    pub(crate) fn new(registry: &prometheus::Registry) -> Self {
        Refusals {
            counter: strata_metrics::counter_vec(
                registry,
                "strata_cluster_rpc_refused_total",
                "Node-to-node requests refused, by reason: secret (wrong or missing cluster \
                 secret), frame (undecodable payload), unknown_node (a vote asked by a node \
                 that is not a voter), not_leader (a partition request for a node that does \
                 not lead it, or with a stale leader epoch)",
                &["reason"],
            ),
            logged: Arc::default(),
        }
    }

    pub(crate) fn count(&self, reason: &'static str, detail: &str) {
        self.counter.with_label_values(&[reason]).inc();
        let mut logged = self.logged.lock();
        if logged.is_none_or(|at| at.elapsed() >= LOG_EVERY) {
            *logged = Some(std::time::Instant::now());
            let total = self.counter.with_label_values(&[reason]).get();
            tracing::warn!(reason, detail, total, "node-to-node request refused");
        }
    }
}

/// Checks the secret of a request this node serves; a request without it, or with
/// another, is refused (UNAUTHENTICATED) before it reaches Raft.
#[derive(Clone)]
pub(crate) struct Check(pub(crate) Secret, pub(crate) Refusals);

impl Interceptor for Check {
    fn call(&mut self, request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let expected = self.0.header()?;
        let given = request.metadata().get("authorization");
        let same = given.is_some_and(|g| {
            let (a, b) = (g.as_bytes(), expected.as_bytes());
            a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
        });
        if same {
            Ok(request)
        } else {
            self.1.count("secret", "wrong or missing cluster secret");
            Err(tonic::Status::unauthenticated(
                "wrong or missing cluster secret",
            ))
        }
    }
}

/// A client of another node's meta service.
pub(crate) type Client = rpc::meta_client::MetaClient<InterceptedService<Channel, Secret>>;

pub(crate) fn client(addr: &str, secret: &Secret) -> Option<Client> {
    channel(addr, secret).ok().map(|c| {
        rpc::meta_client::MetaClient::with_interceptor(c, secret.clone())
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE)
    })
}

/// A lazily connected channel to `addr` (reconnects by itself), leaving from the
/// secret's source address.
pub(crate) fn channel(addr: &str, secret: &Secret) -> Result<Channel, tonic::transport::Error> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))?
        .local_address(secret.1)
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(RPC_TIMEOUT)
        .connect_lazy())
}

/// The server side: requests for this node's Raft.
pub(crate) struct Service {
    pub(crate) raft: MetaRaft,
    pub(crate) refusals: Refusals,
    pub(crate) clock: crate::clock::LeaderClock,
    /// Whether this node may vote yet (it may have lost its store).
    pub(crate) amnesia: Arc<Amnesia>,
}

/// What a node that started with an empty store (a new node, or one whose data directory
/// was wiped) must see before it votes for a candidate that did not start empty itself
/// (candidates say so: [`STARTED_EMPTY`]) in a group that already has a history (the
/// candidate's log goes past the initial membership, index 0). Nodes that started empty
/// and have not caught up vote only for each other (a new group, where nobody wrote yet),
/// and the others never for them.
///
/// - It may have voted before losing its disk, in a term still being decided, and no
///   longer knows for whom: voting again in that term could elect a second leader.
///   Candidates give up on a vote request after the election timeout, so it waits
///   [`Amnesia::QUIET`] election timeouts since it started.
/// - Its log may lack entries committed with its help before the wipe: granting a vote
///   by comparing an empty log would let a candidate without them win, and lose them.
///   So it first waits until it applied a write of its own committed after it started
///   (a node's heartbeats are such writes): its log then holds everything committed
///   before.
#[derive(Debug)]
pub(crate) struct Amnesia {
    /// Whether the store was empty at start (set before the node serves or asks votes).
    started_empty: AtomicBool,
    until: tokio::time::Instant,
    /// The log index of this node's first write committed after it started (0: none yet).
    barrier: AtomicU64,
    /// Set once both conditions held: checked no more.
    votes: AtomicBool,
}

impl Amnesia {
    /// Election timeouts a node that started empty sits out.
    const QUIET: u32 = 4;

    pub(crate) fn new(election_timeout: Duration) -> Arc<Amnesia> {
        Arc::new(Amnesia {
            started_empty: AtomicBool::new(false),
            until: tokio::time::Instant::now() + election_timeout * Self::QUIET,
            barrier: AtomicU64::new(0),
            votes: AtomicBool::new(false),
        })
    }

    /// The store was empty at start.
    pub(crate) fn started_empty(&self) {
        self.started_empty.store(true, Ordering::SeqCst);
    }

    /// A write of this node's was committed at `index`.
    pub(crate) fn wrote(&self, index: u64) {
        let _ = self
            .barrier
            .compare_exchange(0, index.max(1), Ordering::SeqCst, Ordering::SeqCst);
    }

    /// Whether this node, as a candidate, says it started empty: it did, and no write of
    /// its own was committed since. (The quiet time is about this node's own votes, not
    /// about its log: a candidate that caught up does not claim to have forgotten.)
    pub(crate) fn forgetful(&self) -> bool {
        self.started_empty.load(Ordering::SeqCst) && self.barrier.load(Ordering::SeqCst) == 0
    }

    /// Whether this node may vote, having applied the log up to `applied`.
    fn may_vote(&self, applied: Option<u64>) -> bool {
        if !self.started_empty.load(Ordering::SeqCst) || self.votes.load(Ordering::Relaxed) {
            return true;
        }
        let barrier = self.barrier.load(Ordering::SeqCst);
        let ok = tokio::time::Instant::now() >= self.until
            && barrier != 0
            && applied.is_some_and(|a| a >= barrier);
        if ok {
            self.votes.store(true, Ordering::Relaxed);
        }
        ok
    }
}

impl Service {
    /// The request's payload, counted as refused when it does not decode.
    fn payload<T: DeserializeOwned>(
        &self,
        request: &tonic::Request<Frame>,
    ) -> Result<T, tonic::Status> {
        unframe(request.get_ref()).inspect_err(|e| self.refusals.count("frame", e.message()))
    }

    /// Refuses (and counts as `unknown_node`) a vote asked by a node that is not a voter of
    /// the group as this node knows it: a removed node, or one of another cluster that has
    /// this one's secret, cannot disrupt it with elections. A node that knows no group yet
    /// (one being added) refuses nobody. Other Raft requests are not checked here: a
    /// leader this node does not know yet (added while it was down) must reach it, and
    /// Raft's terms refuse stale ones.
    fn voter(&self, candidate: Option<NodeId>) -> Result<(), tonic::Status> {
        let Some(candidate) = candidate else {
            return Ok(());
        };
        let known = {
            let m = self.raft.metrics();
            let m = m.borrow();
            let members = m.membership_config.membership();
            members.nodes().next().is_none() || members.voter_ids().any(|v| v == candidate)
        };
        if known {
            return Ok(());
        }
        let why = format!("node {candidate} is not a voter of this meta group");
        self.refusals.count("unknown_node", &why);
        Err(tonic::Status::permission_denied(why))
    }
}

/// A change to the meta group's voters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub enum VoterChange {
    /// Node `id`, reachable at `rpc`, becomes a voter (a learner first, until it caught up).
    Add {
        /// Its id.
        id: NodeId,
        /// Its node-to-node address.
        rpc: String,
    },
    /// Node `id` stops being a voter.
    Remove {
        /// Its id.
        id: NodeId,
    },
}

/// How long a node being added gets to catch up as a learner before it may vote.
const CATCH_UP: Duration = Duration::from_secs(20);

/// What a node that does not lead answers a voter change with: the caller retries at the
/// leader.
pub(crate) const NOT_LEADER: &str = "not the meta leader";

/// Applies `change` on this node's Raft, which must lead the group.
pub(crate) async fn change_voters(raft: &MetaRaft, change: &VoterChange) -> Result<(), String> {
    let (me, leader, voters, caught_up) = {
        let m = raft.metrics();
        let m = m.borrow();
        let voters: BTreeSet<NodeId> = m.membership_config.membership().voter_ids().collect();
        // Voters whose log is within reach of the leader's: those that answer now.
        let last = m.last_log_index.unwrap_or(0);
        let caught_up: BTreeSet<NodeId> = m
            .replication
            .as_ref()
            .map(|r| {
                r.iter()
                    .filter(|(_, matched)| matched.is_some_and(|l| l.index + LAGGING >= last))
                    .map(|(id, _)| *id)
                    .collect()
            })
            .unwrap_or_default();
        (m.id, m.current_leader, voters, caught_up)
    };
    if leader != Some(me) {
        return Err(NOT_LEADER.into());
    }
    // Only the one voter named changes: two changes at once cannot undo each other.
    let members = match change {
        VoterChange::Add { id, rpc } => {
            if voters.contains(id) {
                return Err(format!("node {id} is already a voter"));
            }
            // A voter that cannot be reached would count towards the quorum without
            // voting: it becomes one only once it has caught up as a learner.
            let node = NodeAddr { rpc: rpc.clone() };
            match tokio::time::timeout(CATCH_UP, raft.add_learner(*id, node, true)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e.to_string()),
                Err(_) => {
                    let stop = openraft::ChangeMembers::RemoveNodes(BTreeSet::from([*id]));
                    if let Err(e) = raft.change_membership(stop, false).await {
                        tracing::warn!(node = id, error = %e, "cannot drop a learner that did not catch up");
                    }
                    return Err(format!(
                        "node {id} at {rpc} did not catch up within {CATCH_UP:?}: is it running, with this cluster's secret?"
                    ));
                }
            }
            openraft::ChangeMembers::AddVoterIds(BTreeSet::from([*id]))
        }
        VoterChange::Remove { id } => {
            if !voters.contains(id) {
                return Ok(());
            }
            let rest: Vec<NodeId> = voters.iter().copied().filter(|v| v != id).collect();
            if rest.is_empty() {
                return Err("the last voter cannot be removed".into());
            }
            // The change commits only with a majority of the voters that remain: refused
            // while they are not up, rather than leaving the group unable to write.
            let up = rest
                .iter()
                .filter(|v| **v == me || caught_up.contains(v))
                .count();
            if up * 2 <= rest.len() {
                return Err(format!(
                    "only {up} of the {} voters that would remain are up: removing node {id} \
                     now would leave the meta service without a quorum",
                    rest.len()
                ));
            }
            openraft::ChangeMembers::RemoveVoters(BTreeSet::from([*id]))
        }
    };
    match tokio::time::timeout(CATCH_UP, raft.change_membership(members, false)).await {
        Ok(changed) => changed.map(|_| ()).map_err(|e| e.to_string()),
        Err(_) => Err(format!(
            "the voter change did not commit within {CATCH_UP:?}"
        )),
    }
}

/// How far behind the leader's log a voter may be and still count as up.
const LAGGING: u64 = 1000;

#[tonic::async_trait]
impl rpc::meta_server::Meta for Service {
    async fn append_entries(
        &self,
        request: tonic::Request<Frame>,
    ) -> Result<tonic::Response<Frame>, tonic::Status> {
        let req: AppendEntriesRequest<TypeConfig> = self.payload(&request)?;
        frame(&self.raft.append_entries(req).await).map(tonic::Response::new)
    }

    async fn vote(
        &self,
        request: tonic::Request<Frame>,
    ) -> Result<tonic::Response<Frame>, tonic::Status> {
        let req: VoteRequest<NodeId> = self.payload(&request)?;
        self.voter(req.vote.leader_id().voted_for())?;
        if req.last_log_id.is_some_and(|l| l.index > 0) {
            let candidate_forgot = request.metadata().get(STARTED_EMPTY).is_some();
            let applied = self.raft.metrics().borrow().last_applied.map(|l| l.index);
            if candidate_forgot && !self.amnesia.forgetful() {
                // Its log may lack entries committed with its help before it lost them.
                return Err(tonic::Status::unavailable(
                    "the candidate started with an empty meta store and has not caught up",
                ));
            }
            if !candidate_forgot && !self.amnesia.may_vote(applied) {
                return Err(tonic::Status::unavailable(
                    "this node started with an empty meta store: it votes once it caught \
                     up with the group and any vote it cast before has expired",
                ));
            }
        }
        frame(&self.raft.vote(req).await).map(tonic::Response::new)
    }

    async fn install_snapshot(
        &self,
        request: tonic::Request<Frame>,
    ) -> Result<tonic::Response<Frame>, tonic::Status> {
        let req: InstallSnapshotRequest<TypeConfig> = self.payload(&request)?;
        frame(&self.raft.install_snapshot(req).await).map(tonic::Response::new)
    }

    /// A command for the leader. Answered with the outcome, or with the error a write to
    /// this node gave (not the leader: the caller asks again, maybe elsewhere).
    async fn write(
        &self,
        request: tonic::Request<Frame>,
    ) -> Result<tonic::Response<Frame>, tonic::Status> {
        let command: Command = self.payload(&request)?;
        let written: Result<(Outcome, u64), String> = self
            .raft
            .client_write(self.clock.stamp(command))
            .await
            .map(|r| (r.data, r.log_id.index))
            .map_err(|e| e.to_string());
        frame(&written).map(tonic::Response::new)
    }

    /// A voter change for the leader; a node that does not lead answers [`NOT_LEADER`].
    async fn change_voters(
        &self,
        request: tonic::Request<Frame>,
    ) -> Result<tonic::Response<Frame>, tonic::Status> {
        let change: VoterChange = self.payload(&request)?;
        frame(&change_voters(&self.raft, &change).await).map(tonic::Response::new)
    }
}

/// Decodes `data` as every message the node-to-node service takes from the network (a
/// prost [`Frame`] holding the JSON of a Raft request, a command, a voter change, or an
/// answer): for the fuzz target. True when one decoding succeeded.
pub fn decode_frame(data: &[u8]) -> bool {
    use prost::Message;
    let Ok(f) = Frame::decode(data) else {
        return false;
    };
    [
        unframe::<AppendEntriesRequest<TypeConfig>>(&f).is_ok(),
        unframe::<VoteRequest<NodeId>>(&f).is_ok(),
        unframe::<InstallSnapshotRequest<TypeConfig>>(&f).is_ok(),
        unframe::<Command>(&f).is_ok(),
        unframe::<VoterChange>(&f).is_ok(),
        unframe::<Result<Outcome, String>>(&f).is_ok(),
        unframe::<Result<(), String>>(&f).is_ok(),
    ]
    .contains(&true)
}

/// Sends a voter change to the meta service on `addr` (the leader, as far as the caller
/// knows).
pub(crate) async fn forward_voters(
    addr: &str,
    secret: &Secret,
    change: &VoterChange,
) -> Result<(), String> {
    let mut client = client(addr, secret).ok_or_else(|| format!("bad address {addr}"))?;
    let request = frame(change).map_err(|e| e.to_string())?;
    let answer = client
        .change_voters(request)
        .await
        .map_err(|e| format!("{addr}: {}", e.message()))?;
    unframe::<Result<(), String>>(answer.get_ref()).map_err(|e| e.to_string())?
}

/// Why a forwarded command has no outcome.
#[derive(Debug)]
pub(crate) enum Unforwarded {
    /// It was not applied: it never reached the leader, or the leader refused it (it no
    /// longer leads, say). Sending it again is safe.
    NotApplied(String),
    /// The answer was lost (a timeout, a broken connection): it may have been applied.
    Unknown(String),
}

/// Whether `status` says the other node's port refused the connection: nothing listens
/// there (its process is gone), as opposed to a connection that timed out.
fn connection_refused(status: &tonic::Status) -> bool {
    use std::error::Error;
    let mut cause: Option<&dyn Error> = status.source();
    while let Some(e) = cause {
        if e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
        {
            return true;
        }
        cause = e.source();
    }
    false
}

/// The nodes whose node-to-node port refused this node's last connection (the meta
/// leader reaches every voter several times a second): a node that refuses connections
/// is down at once, without waiting for its heartbeats to lapse.
#[derive(Clone, Default)]
pub(crate) struct Refusing(Arc<parking_lot::Mutex<std::collections::HashMap<NodeId, Instant>>>);

impl Refusing {
    /// How long a refusal counts when no request got through since.
    const FOR: Duration = Duration::from_secs(2);

    fn saw(&self, node: NodeId, sent: &Result<tonic::Response<Frame>, tonic::Status>) {
        match sent {
            Err(status) if connection_refused(status) => {
                self.0.lock().insert(node, Instant::now());
            }
            Ok(_) => {
                self.0.lock().remove(&node);
            }
            Err(_) => {}
        }
    }

    /// Whether `node` refused a connection within the last 2 s, none getting through since.
    pub(crate) fn refuses(&self, node: NodeId) -> bool {
        self.0
            .lock()
            .get(&node)
            .is_some_and(|at| at.elapsed() < Self::FOR)
    }
}

/// Whether `status` says the request never reached the service: the connection could not
/// be made, or the service turned it away before handling it.
fn never_handled(status: &tonic::Status) -> bool {
    use std::error::Error;
    use tonic::Code;
    if matches!(
        status.code(),
        Code::Unauthenticated | Code::PermissionDenied | Code::InvalidArgument
    ) {
        return true;
    }
    let mut cause: Option<&dyn Error> = status.source();
    while let Some(e) = cause {
        let refused = e.downcast_ref::<std::io::Error>().is_some_and(|io| {
            matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::AddrNotAvailable
                    | std::io::ErrorKind::HostUnreachable
                    | std::io::ErrorKind::NetworkUnreachable
            )
        });
        if refused || e.to_string().contains("tcp connect error") {
            return true;
        }
        cause = e.source();
    }
    false
}

/// Sends a command to the meta service on `addr` (the leader, as far as the caller knows):
/// its outcome and the index of its log entry.
pub(crate) async fn forward(
    addr: &str,
    secret: &Secret,
    command: &Command,
) -> Result<(Outcome, u64), Unforwarded> {
    let mut client = client(addr, secret)
        .ok_or_else(|| Unforwarded::NotApplied(format!("bad address {addr}")))?;
    let request = frame(command).map_err(|e| Unforwarded::NotApplied(e.to_string()))?;
    let answer = client.write(request).await.map_err(|e| {
        let why = format!("{addr}: {}", e.message());
        if never_handled(&e) {
            Unforwarded::NotApplied(why)
        } else {
            Unforwarded::Unknown(why)
        }
    })?;
    unframe::<Result<(Outcome, u64), String>>(answer.get_ref())
        .map_err(|e| Unforwarded::Unknown(format!("{addr}: {e}")))?
        .map_err(Unforwarded::NotApplied)
}

/// Makes clients for openraft.
pub(crate) struct Network(
    pub(crate) Secret,
    pub(crate) Refusing,
    pub(crate) Arc<Amnesia>,
);

/// Metadata of a vote request from a candidate that started with an empty store and has
/// not caught up since (see [`Amnesia`]).
const STARTED_EMPTY: &str = "strata-started-empty";

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &NodeAddr) -> Self::Network {
        Connection {
            target,
            client: client(&node.rpc, &self.0),
            addr: node.rpc.clone(),
            secret: self.0.clone(),
            refusing: self.1.clone(),
            amnesia: self.2.clone(),
        }
    }
}

/// openraft's client of one other node.
pub(crate) struct Connection {
    target: NodeId,
    addr: String,
    client: Option<Client>,
    secret: Secret,
    refusing: Refusing,
    amnesia: Arc<Amnesia>,
}

type Rpc<T, E> = Result<T, RPCError<NodeId, NodeAddr, E>>;

impl Connection {
    fn client<E: std::error::Error>(&mut self) -> Rpc<Client, E> {
        if self.client.is_none() {
            self.client = client(&self.addr, &self.secret);
        }
        self.client.clone().ok_or_else(|| {
            RPCError::Network(NetworkError::new(&std::io::Error::other(format!(
                "bad address {}",
                self.addr
            ))))
        })
    }

    /// Reads an answer: the far side's `Result`, its error as a remote error.
    fn answer<T: DeserializeOwned, E: std::error::Error + DeserializeOwned>(
        &self,
        sent: Result<tonic::Response<Frame>, tonic::Status>,
    ) -> Rpc<T, RaftError<NodeId, E>> {
        let network = |e: &dyn std::error::Error| {
            RPCError::Network(NetworkError::new(&std::io::Error::other(e.to_string())))
        };
        // A node that refuses connections (its process is gone) or turns requests away is
        // unreachable: openraft then backs off (500 ms) instead of retrying at once, which
        // logged an error thousands of times a second per dead node.
        let frame = sent.map_err(|s| {
            if never_handled(&s) {
                RPCError::Unreachable(Unreachable::new(&s))
            } else {
                network(&s)
            }
        })?;
        let result: Result<T, RaftError<NodeId, E>> =
            serde_json::from_slice(&frame.get_ref().payload).map_err(|e| network(&e))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for Connection {
    /// After an unreachable node: 250 ms, 500 ms, then a second between attempts, until
    /// one gets through (a node that comes back waits at most a second for the log).
    fn backoff(&self) -> openraft::network::Backoff {
        let waits = [250, 500].into_iter().chain(std::iter::repeat(1_000));
        openraft::network::Backoff::new(waits.map(Duration::from_millis))
    }

    async fn append_entries(
        &mut self,
        req: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Rpc<AppendEntriesResponse<NodeId>, RaftError<NodeId>> {
        let request = frame(&req).map_err(|s| RPCError::Network(NetworkError::new(&s)))?;
        // Too large for one message (entries written before commands were bounded):
        // openraft sends fewer at a time.
        if request.payload.len() > MAX_MESSAGE - 64 * 1024 && req.entries.len() > 1 {
            let fewer = (req.entries.len() / 2) as u64;
            return Err(RPCError::PayloadTooLarge(
                PayloadTooLarge::new_entries_hint(fewer),
            ));
        }
        let sent = self.client()?.append_entries(request).await;
        self.refusing.saw(self.target, &sent);
        self.answer(sent)
    }

    async fn install_snapshot(
        &mut self,
        req: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Rpc<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>> {
        let request = frame(&req).map_err(|s| RPCError::Network(NetworkError::new(&s)))?;
        let sent = self.client()?.install_snapshot(request).await;
        self.answer(sent)
    }

    async fn vote(
        &mut self,
        req: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Rpc<VoteResponse<NodeId>, RaftError<NodeId>> {
        let mut request =
            tonic::Request::new(frame(&req).map_err(|s| RPCError::Network(NetworkError::new(&s)))?);
        if self.amnesia.forgetful() {
            request.metadata_mut().insert(
                STARTED_EMPTY,
                tonic::metadata::MetadataValue::from_static("1"),
            );
        }
        let sent = self.client()?.vote(request).await;
        self.refusing.saw(self.target, &sent);
        self.answer(sent)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn a_command_that_never_reached_a_leader_may_be_sent_again() {
        // A port nothing listens on: the connection is refused, nothing was applied.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = closed.local_addr().unwrap().to_string();
        drop(closed);
        let sent = forward(&addr, &Secret::new("s"), &Command::Rebalance).await;
        assert!(matches!(sent, Err(Unforwarded::NotApplied(_))), "{sent:?}");
    }

    #[tokio::test]
    async fn a_lost_answer_is_not_taken_for_a_refusal() {
        // A peer that takes the request and closes without answering.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let peer = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let _ = tokio::io::AsyncReadExt::read(&mut socket, &mut buf).await;
        });
        let sent = forward(&addr, &Secret::new("s"), &Command::Rebalance).await;
        assert!(matches!(sent, Err(Unforwarded::Unknown(_))), "{sent:?}");
        peer.abort();
    }
}
