//! Node-to-node RPC of the meta service over gRPC (tonic): Raft's AppendEntries, Vote and
//! InstallSnapshot, and Write, which hands a command to the leader. Each message is one
//! prost [`Frame`] holding the JSON of openraft's request or of the answer (a `Result`, so
//! a Raft error on the far side comes back as that error, not as a transport failure).

use std::sync::Arc;
use std::time::Duration;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError};
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

/// How long a node waits to connect to another.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one RPC may take at most (snapshots are small: the metadata).
const RPC_TIMEOUT: Duration = Duration::from_secs(10);

fn frame<T: Serialize>(value: &T) -> Result<Frame, tonic::Status> {
    serde_json::to_vec(value)
        .map(|payload| Frame { payload })
        .map_err(|e| tonic::Status::internal(e.to_string()))
}

fn unframe<T: DeserializeOwned>(f: &Frame) -> Result<T, tonic::Status> {
    serde_json::from_slice(&f.payload).map_err(|e| tonic::Status::invalid_argument(e.to_string()))
}

/// The cluster secret every node-to-node request carries (`authorization: Bearer ...`),
/// and checks on the requests it serves.
#[derive(Clone)]
pub(crate) struct Secret(Arc<str>);

impl Secret {
    pub(crate) fn new(secret: &str) -> Self {
        Secret(Arc::from(secret))
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

/// Checks the secret of a request this node serves; a request without it, or with
/// another, is refused (UNAUTHENTICATED) before it reaches Raft.
#[derive(Clone)]
pub(crate) struct Check(pub(crate) Secret);

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
            tracing::warn!("node-to-node request refused: wrong or missing cluster secret");
            Err(tonic::Status::unauthenticated(
                "wrong or missing cluster secret",
            ))
        }
    }
}

/// A client of another node's meta service.
pub(crate) type Client = rpc::meta_client::MetaClient<InterceptedService<Channel, Secret>>;

fn client(addr: &str, secret: &Secret) -> Option<Client> {
    channel(addr).ok().map(|c| {
        rpc::meta_client::MetaClient::with_interceptor(c, secret.clone())
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE)
    })
}

/// A lazily connected channel to `addr` (reconnects by itself).
pub(crate) fn channel(addr: &str) -> Result<Channel, tonic::transport::Error> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(RPC_TIMEOUT)
        .connect_lazy())
}

/// The server side: requests for this node's Raft.
pub(crate) struct Service {
    pub(crate) raft: MetaRaft,
}

#[tonic::async_trait]
impl rpc::meta_server::Meta for Service {
    async fn append_entries(
        &self,
        request: tonic::Request<Frame>,
    ) -> Result<tonic::Response<Frame>, tonic::Status> {
        let req: AppendEntriesRequest<TypeConfig> = unframe(request.get_ref())?;
        frame(&self.raft.append_entries(req).await).map(tonic::Response::new)
    }

    async fn vote(
        &self,
        request: tonic::Request<Frame>,
    ) -> Result<tonic::Response<Frame>, tonic::Status> {
        let req: VoteRequest<NodeId> = unframe(request.get_ref())?;
        frame(&self.raft.vote(req).await).map(tonic::Response::new)
    }

    async fn install_snapshot(
        &self,
        request: tonic::Request<Frame>,
    ) -> Result<tonic::Response<Frame>, tonic::Status> {
        let req: InstallSnapshotRequest<TypeConfig> = unframe(request.get_ref())?;
        frame(&self.raft.install_snapshot(req).await).map(tonic::Response::new)
    }

    /// A command for the leader. Answered with the outcome, or with the error a write to
    /// this node gave (not the leader: the caller asks again, maybe elsewhere).
    async fn write(
        &self,
        request: tonic::Request<Frame>,
    ) -> Result<tonic::Response<Frame>, tonic::Status> {
        let command: Command = unframe(request.get_ref())?;
        let written: Result<Outcome, String> = self
            .raft
            .client_write(command)
            .await
            .map(|r| r.data)
            .map_err(|e| e.to_string());
        frame(&written).map(tonic::Response::new)
    }
}

/// Sends a command to the meta service on `addr` (the leader, as far as the caller knows).
pub(crate) async fn forward(
    addr: &str,
    secret: &Secret,
    command: &Command,
) -> Result<Outcome, String> {
    let mut client = client(addr, secret).ok_or_else(|| format!("bad address {addr}"))?;
    let request = frame(command).map_err(|e| e.to_string())?;
    let answer = client
        .write(request)
        .await
        .map_err(|e| format!("{addr}: {}", e.message()))?;
    unframe::<Result<Outcome, String>>(answer.get_ref()).map_err(|e| e.to_string())?
}

/// Makes clients for openraft.
pub(crate) struct Network(pub(crate) Secret);

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &NodeAddr) -> Self::Network {
        Connection {
            target,
            client: client(&node.rpc, &self.0),
            addr: node.rpc.clone(),
            secret: self.0.clone(),
        }
    }
}

/// openraft's client of one other node.
pub(crate) struct Connection {
    target: NodeId,
    addr: String,
    client: Option<Client>,
    secret: Secret,
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
        let frame = sent.map_err(|s| network(&s))?;
        let result: Result<T, RaftError<NodeId, E>> =
            serde_json::from_slice(&frame.get_ref().payload).map_err(|e| network(&e))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        req: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Rpc<AppendEntriesResponse<NodeId>, RaftError<NodeId>> {
        let request = frame(&req).map_err(|s| RPCError::Network(NetworkError::new(&s)))?;
        let sent = self.client()?.append_entries(request).await;
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
        let request = frame(&req).map_err(|s| RPCError::Network(NetworkError::new(&s)))?;
        let sent = self.client()?.vote(request).await;
        self.answer(sent)
    }
}
