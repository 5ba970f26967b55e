//! The catalog: which streams exist, how many partitions each has, and where each
//! partition is led. Reads are answered from what this node knows now (no I/O); changes
//! are asynchronous, since in a cluster they go through the meta service.

use std::fmt::Debug;

use async_trait::async_trait;

use super::error::{StoreError, StoreResult};

/// A node of the cluster, by its configured id.
pub type NodeId = u64;

/// A stream to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSpec {
    /// Name: 1-200 characters of `[A-Za-z0-9._-]`, not starting with a dot.
    pub name: String,
    /// Number of partitions, at least one.
    pub partitions: u32,
    /// Storage class (`memory`, `segment`, `rocksdb`, `object`); `None`: the node's default.
    pub storage_class: Option<String>,
    /// Copies of each partition (a cluster's nodes each keep one); `None`: one.
    pub replication_factor: Option<u32>,
    /// Kafka's `min.insync.replicas`, at most the copies; `None`: 1.
    pub min_in_sync: Option<u32>,
    /// Keep every record until the stream's owner deletes it (`delete_before`): no time
    /// or size retention, whatever the node's defaults (a changelog that compacts itself).
    pub keep_all: bool,
}

impl StreamSpec {
    /// A spec for `name` with `partitions` partitions (at least one), in the node's
    /// default storage class.
    pub fn new(name: impl Into<String>, partitions: u32) -> Self {
        StreamSpec {
            name: name.into(),
            partitions: partitions.max(1),
            storage_class: None,
            replication_factor: None,
            min_in_sync: None,
            keep_all: false,
        }
    }

    /// The same spec, its records kept until deleted (no retention).
    pub fn keeping_all(mut self) -> Self {
        self.keep_all = true;
        self
    }

    /// The same spec, with `copies` copies of each partition.
    pub fn with_replication_factor(mut self, copies: u32) -> Self {
        self.replication_factor = Some(copies);
        self
    }

    /// The same spec, stored in `class`.
    pub fn with_storage_class(mut self, class: impl Into<String>) -> Self {
        self.storage_class = Some(class.into());
        self
    }
}

/// A stream as the catalog holds it. Settings are what the stream was created with (the
/// node's defaults unless the spec said otherwise); protocols report them as they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInfo {
    /// Name.
    pub name: String,
    /// Number of partitions.
    pub partitions: u32,
    /// The storage class (`memory`, `segment`, `rocksdb`, `object`).
    pub storage_class: String,
    /// Durability of appends (`always`, `never`, `interval:<ms>`).
    pub fsync: String,
    /// History kept per partition, in bytes (`None`: unbounded).
    pub retention_bytes: Option<u64>,
    /// History kept, in milliseconds (`None`: unbounded).
    pub retention_ms: Option<u64>,
    /// Segment roll size.
    pub segment_bytes: u64,
    /// Segment roll age.
    pub segment_ms: u64,
    /// Replicas that must be in sync for a write that waits for all of them (Kafka's
    /// acks=all) to be taken: Kafka's `min.insync.replicas`.
    pub min_in_sync: u32,
}

/// Where a partition lives and who leads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The node that accepts appends, if one does now.
    pub leader: Option<NodeId>,
    /// The leader epoch: it grows every time leadership moves.
    pub epoch: u64,
    /// Every node holding a replica, the leader included.
    pub replicas: Vec<NodeId>,
    /// The replicas in sync with the leader (every replica of an unreplicated partition
    /// that has a leader; none while there is no leader).
    pub in_sync: Vec<NodeId>,
    /// The replicas it is moving to while a move runs (Kafka's reassignment); empty
    /// otherwise.
    pub target: Vec<NodeId>,
}

/// A node of the cluster as the catalog knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its id.
    pub id: NodeId,
    /// Each client listener's address (`host:port`) by name (`kafka`, `mqtt`, ...).
    pub listeners: std::collections::BTreeMap<String, String>,
    /// False once it is leaving: it takes no new partitions.
    pub active: bool,
    /// False when its heartbeats stopped: the partitions it leads are unavailable.
    pub alive: bool,
}

/// Streams, partitions, placement and leaders.
///
/// Contract (checked by [`super::conformance::catalog`]):
/// - `create_stream` makes a stream visible to `stream`, `streams` and the router before it
///   returns; `StreamExists` when the name is taken, `Invalid` for a bad name or count.
/// - `delete_stream` removes it (`UnknownStream` when absent); handles on its partitions
///   then answer `Closed` or `UnknownStream`.
/// - `add_partitions` only grows a stream (`Invalid` otherwise).
/// - `placement` names a leader and epoch for every partition of every stream.
#[async_trait]
pub trait Catalog: Send + Sync + Debug {
    /// This node's id.
    fn node_id(&self) -> NodeId;

    /// One stream.
    fn stream(&self, name: &str) -> Option<StreamInfo>;

    /// Every stream, by name.
    fn streams(&self) -> Vec<StreamInfo>;

    /// Creates a stream.
    async fn create_stream(&self, spec: StreamSpec) -> StoreResult<StreamInfo>;

    /// Deletes a stream and its data.
    async fn delete_stream(&self, name: &str) -> StoreResult<()>;

    /// Grows a stream to `partitions` partitions.
    async fn add_partitions(&self, name: &str, partitions: u32) -> StoreResult<StreamInfo>;

    /// Where a partition lives; `None` for an unknown stream or partition.
    fn placement(&self, stream: &str, partition: u32) -> Option<Placement>;

    /// Moves a replicated partition to `replicas` (the first the preferred leader): the
    /// new nodes copy it, then the leader ends the move with an election among them. The
    /// partition's current replicas cancel a move. Returns once the move is recorded, not
    /// done. `Invalid` when it cannot move so (one copy, unknown or leaving nodes, a bad
    /// count); a node on its own has nowhere to move to.
    async fn move_replicas(
        &self,
        stream: &str,
        partition: u32,
        replicas: Vec<NodeId>,
    ) -> StoreResult<()> {
        let _ = (partition, replicas);
        Err(StoreError::Invalid(format!(
            "`{stream}` has one copy on this node: there is nowhere to move it"
        )))
    }

    /// Where this node keeps its copies of partitions (a directory), for Kafka's
    /// DescribeLogDirs.
    fn copies_dir(&self) -> String {
        "memory".to_string()
    }

    /// The bytes this node's copy of a partition holds, if it holds one (a replica, or a
    /// learner of a move).
    fn copy_bytes(&self, stream: &str, partition: u32) -> Option<u64> {
        let _ = (stream, partition);
        None
    }

    /// The cluster's nodes, by id. Empty for a node on its own that knows no other.
    fn members(&self) -> Vec<Member> {
        Vec::new()
    }

    /// Whether node `id` is a member of the cluster (this node always is).
    fn is_member(&self, id: NodeId) -> bool {
        id == self.node_id()
    }
}

/// The stream named in `spec`, created when it does not exist yet (racing creators both
/// get it). The one get-or-create every frontend uses.
pub async fn ensure_stream(catalog: &dyn Catalog, spec: StreamSpec) -> StoreResult<StreamInfo> {
    if let Some(info) = catalog.stream(&spec.name) {
        return Ok(info);
    }
    let name = spec.name.clone();
    match catalog.create_stream(spec).await {
        Err(StoreError::StreamExists(_)) => {
            catalog.stream(&name).ok_or(StoreError::UnknownStream(name))
        }
        other => other,
    }
}

/// Checks that `name` can name a stream: 1-200 characters of `[A-Za-z0-9._-]`, not starting
/// with a dot (it becomes a directory and an object-store prefix).
pub fn validate_stream_name(name: &str) -> StoreResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "stream name {name:?} must be 1-200 characters of [A-Za-z0-9._-] and not start with '.'"
        )))
    }
}
