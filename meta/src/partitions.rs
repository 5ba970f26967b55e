//! The data plane between nodes: an operation on a partition sent to the node that leads
//! it (append, read, offsets, wait for data, find by timestamp), on the same listener and
//! behind the same cluster secret as the meta service. Batches travel as the stored
//! format's bytes in prost `bytes` fields, never re-encoded; what a node does with them is
//! its [`PartitionHost`]'s business (the meta crate knows nothing of journals).

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::network::{self, Secret};

pub(crate) mod rpc {
    include!(concat!(env!("OUT_DIR"), "/strata.meta.Partitions.rs"));
}

/// Largest request or answer: a read answers at most [`MAX_READ_BYTES`] of batches plus
/// one batch that may be larger, and a batch is at most this (checked by each frontend far
/// below it).
pub const MAX_MESSAGE: usize = 64 * 1024 * 1024;
/// Most bytes of batches a read asks for.
pub const MAX_READ_BYTES: u64 = 8 * 1024 * 1024;
/// Longest a wait for data is held before it answers with the end as it is then (well
/// inside the RPC timeout).
pub const MAX_WAIT_MS: u64 = 5_000;

/// What to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, prost::Enumeration)]
#[repr(i32)]
pub enum Op {
    /// Nothing: refused.
    Unspecified = 0,
    /// Append `batch`.
    Append = 1,
    /// Read from `offset`, about `max_bytes`.
    Read = 2,
    /// The readable range.
    Offsets = 3,
    /// Wait until `offset` is readable, at most `wait_ms`.
    WaitFor = 4,
    /// The first offset whose timestamp is at least `timestamp_ms`.
    OffsetForTimestamp = 5,
    /// A follower (`replica`) of a replicated partition fetches from `offset`, its log's
    /// last record being of epoch `last_epoch`: the leader answers batches written past
    /// `offset` (waiting up to `wait_ms` for some) and its high watermark, or where the
    /// follower's log leaves its own (`diverged`). The fetch offset says the follower has
    /// everything below it durable.
    ReplicaFetch = 6,
}

/// An operation on one partition.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PartitionRequest {
    /// What to do.
    #[prost(enumeration = "Op", tag = "1")]
    pub op: i32,
    /// Stream.
    #[prost(string, tag = "2")]
    pub stream: String,
    /// Partition.
    #[prost(uint32, tag = "3")]
    pub partition: u32,
    /// The leader epoch the caller found: a node whose placement says otherwise refuses.
    #[prost(uint64, tag = "4")]
    pub epoch: u64,
    /// Read from / wait for this offset.
    #[prost(uint64, tag = "5")]
    pub offset: u64,
    /// Read about this many bytes.
    #[prost(uint64, tag = "6")]
    pub max_bytes: u64,
    /// Wait at most this long.
    #[prost(uint64, tag = "7")]
    pub wait_ms: u64,
    /// Find by this timestamp.
    #[prost(int64, tag = "8")]
    pub timestamp_ms: i64,
    /// The batch to append, in the stored format.
    #[prost(bytes = "bytes", tag = "9")]
    pub batch: Bytes,
    /// Replica fetch: the follower asking.
    #[prost(uint64, tag = "10")]
    pub replica: u64,
    /// Replica fetch: the epoch of the follower's last record (`-1`: it holds none).
    #[prost(int32, tag = "11")]
    pub last_epoch: i32,
    /// Replica fetch: the move the follower knows of (`PartitionPlacement::move_id`); a
    /// learner's fetch from an earlier move is refused (its copy may have been emptied
    /// since it asked).
    #[prost(uint64, tag = "12")]
    pub move_id: u64,
}

/// The answer: the fields of the operation asked for, or `error`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PartitionReply {
    /// Why the operation failed (JSON of the caller's error type); empty on success.
    #[prost(string, tag = "1")]
    pub error: String,
    /// Appended: first offset. Offsets: log start.
    #[prost(uint64, tag = "2")]
    pub first: u64,
    /// Appended: last offset. Offsets, wait: the end.
    #[prost(uint64, tag = "3")]
    pub last: u64,
    /// Read: whole stored batches.
    #[prost(bytes = "bytes", repeated, tag = "4")]
    pub batches: Vec<Bytes>,
    /// Offset for timestamp: whether one was found (then in `first`).
    #[prost(bool, tag = "5")]
    pub found: bool,
    /// Replica fetch: the leader's high watermark.
    #[prost(uint64, tag = "6")]
    pub high_watermark: u64,
    /// Replica fetch: the follower's log leaves the leader's; it truncates from
    /// `diverged_at` (the end of its last epoch in the leader's log) and fetches again.
    #[prost(bool, tag = "7")]
    pub diverged: bool,
    /// Replica fetch: where to truncate when `diverged` (the end of `diverged_epoch` in
    /// the leader's log; the follower cuts at its own end of that epoch when sooner).
    #[prost(uint64, tag = "8")]
    pub diverged_at: u64,
    /// Replica fetch: the newest epoch both logs know, when `diverged`.
    #[prost(int32, tag = "9")]
    pub diverged_epoch: i32,
    /// Replica fetch: the follower's log ends below the leader's log start (in `first`):
    /// it drops its log and starts over there.
    #[prost(bool, tag = "10")]
    pub below_start: bool,
    /// Replica fetch: the follower's end is below where the leader's local files start,
    /// here, and everything below is in object storage: the follower starts its log
    /// there instead of copying through the leader what the objects hold.
    #[prost(uint64, tag = "11")]
    pub stored_below: u64,
}

impl PartitionReply {
    /// A refusal.
    pub fn error(error: String) -> Self {
        PartitionReply {
            error,
            ..PartitionReply::default()
        }
    }
}

/// Decodes `data` as the data plane's request (for the fuzz target; the server's decoder).
pub fn decode_request(data: &[u8]) -> Option<PartitionRequest> {
    use prost::Message;
    PartitionRequest::decode(data).ok()
}

/// Serves the partitions this node leads to other nodes.
#[tonic::async_trait]
pub trait PartitionHost: Send + Sync + 'static {
    /// Carries out `request` on a partition this node leads.
    async fn call(&self, request: PartitionRequest) -> PartitionReply;
}

/// Where the server finds the host, set once the node has one (the node's catalog needs
/// the meta service first) and cleared when it stops (the host holds the meta node).
pub(crate) type HostSlot = Arc<parking_lot::RwLock<Option<Arc<dyn PartitionHost>>>>;

pub(crate) struct Service(pub(crate) HostSlot, pub(crate) network::Refusals);

#[tonic::async_trait]
impl rpc::partitions_server::Partitions for Service {
    async fn call(
        &self,
        request: tonic::Request<PartitionRequest>,
    ) -> Result<tonic::Response<PartitionReply>, tonic::Status> {
        let host = self.0.read().clone();
        let Some(host) = host else {
            return Err(tonic::Status::unavailable(
                "this node does not serve partitions yet",
            ));
        };
        let reply = host.call(request.into_inner()).await;
        if reply.error.starts_with("{\"NotLeader\"") {
            self.1.count("not_leader", &reply.error);
        }
        Ok(tonic::Response::new(reply))
    }
}

type Client = rpc::partitions_client::PartitionsClient<InterceptedService<Channel, Secret>>;

/// Clients of other nodes' partitions, one connection per address, kept.
#[derive(Default)]
pub(crate) struct Clients(parking_lot::Mutex<HashMap<String, Client>>);

impl Clients {
    /// Sends `request` to the node at `addr`; `Err` when it could not be reached or did
    /// not answer (the operation may or may not have been carried out).
    pub(crate) async fn call(
        &self,
        addr: &str,
        secret: &Secret,
        request: PartitionRequest,
    ) -> Result<PartitionReply, String> {
        let mut client = {
            let mut clients = self.0.lock();
            match clients.get(addr) {
                Some(c) => c.clone(),
                None => {
                    let channel =
                        network::channel(addr, secret).map_err(|e| format!("{addr}: {e}"))?;
                    let c = rpc::partitions_client::PartitionsClient::with_interceptor(
                        channel,
                        secret.clone(),
                    )
                    .max_decoding_message_size(MAX_MESSAGE)
                    .max_encoding_message_size(MAX_MESSAGE);
                    // Bounded by the number of members (addresses come from the metadata).
                    clients.insert(addr.to_owned(), c.clone());
                    c
                }
            }
        };
        client
            .call(request)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|e| format!("{addr}: {}", e.message()))
    }
}
