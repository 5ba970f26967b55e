//! The catalog and router of a node in a cluster: streams, partitions and placement are
//! the meta service's, and a partition's records are on the node that leads it. A node
//! keeps in its journal the streams it leads a partition of (created when first used) and
//! removes those the meta service no longer has.
//!
//! Streams kept per node ([`OwnedStreams::keep_per_node`]: the audit log) stay in the
//! local journal and out of the meta service. A frontend's own state is the cluster's
//! otherwise: the MQTT message store is placed and replicated like any stream, with three
//! copies once the meta service has three voters (see `frontend_copies`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use strata_batch::{Batch, PendingBatch};
use strata_frontend::owned::{OwnedStreams, Ownership};
use strata_frontend::seams::{
    Appended, Catalog, Member, NodeId, Offsets, Partition, PartitionRouter, Placement, StoreError,
    StoreResult, StreamInfo, StreamSpec, validate_stream_name,
};
use strata_journal::{Journal, StorageClass, StreamConfig};
use strata_meta::MetaNode;
use strata_meta::model::{Command, MetaState, NodeState, Outcome, StreamMeta};
use strata_meta::partitions::{
    MAX_READ_BYTES, MAX_WAIT_MS, Op, PartitionHost, PartitionReply, PartitionRequest,
};
use tracing::{info, warn};

use crate::errors::store_error;
use crate::streams::LocalStreams;

/// How long a change waits to be applied on this node after the leader committed it.
const APPLY_DEADLINE: Duration = Duration::from_secs(15);
/// How long a call to another node's partition watches for the partition moving (longer
/// than any call takes).
const MOVED_WATCH: Duration = Duration::from_secs(60);
/// How long a call goes before it watches for that, and how long it still waits for an
/// answer once the partition moved.
const MOVED_GRACE: Duration = Duration::from_millis(250);
/// How often the journal is brought in line with the meta service.
const RECONCILE_EVERY: Duration = Duration::from_millis(500);
/// The file, in the meta store's directory, that says this node's journal was adopted.
const ADOPTED: &str = "adopted";

/// Catalog and router of a node in a cluster. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ClusterStreams {
    local: LocalStreams,
    meta: Arc<MetaNode>,
    owned: OwnedStreams,
    node: NodeId,
    /// Streams of the journal this node has seen in the meta service (or created in the
    /// journal from it): the only ones the reconciler may delete once they are gone.
    seen: Arc<parking_lot::Mutex<std::collections::HashSet<String>>>,
    /// Set once this node applied everything the meta service committed before it
    /// started ([`ClusterStreams::caught_up`]).
    caught_up: Arc<tokio::sync::OnceCell<()>>,
    /// The replicated partitions this node holds a copy of.
    replicas: Arc<crate::replica::Replicas>,
}

impl ClusterStreams {
    /// Serves the streams of `meta` as node `meta.id()`, with the records of the
    /// partitions it leads in `journal`. Streams `owned` as internal stay local.
    pub fn new(journal: Journal, meta: Arc<MetaNode>, owned: OwnedStreams) -> Self {
        let node = meta.id();
        ClusterStreams {
            local: LocalStreams::new(journal, node),
            meta,
            owned,
            node,
            seen: Arc::default(),
            caught_up: Arc::default(),
            replicas: Arc::default(),
        }
    }

    /// Copies of each partition of a new stream of `class` that asks for no number:
    /// three once three or more active nodes are up, for the class that can be
    /// replicated (`segment`); one otherwise.
    fn default_copies(&self, class: StorageClass) -> u32 {
        if class != StorageClass::Segment {
            return 1;
        }
        if self.nodes_up() >= 3 { 3 } else { 1 }
    }

    /// Active nodes whose heartbeats arrive.
    fn nodes_up(&self) -> usize {
        self.meta.read(|s| {
            s.nodes
                .values()
                .filter(|n| n.state == NodeState::Active && s.is_live(n.id))
                .count()
        })
    }

    /// The meta service, shared.
    pub(crate) fn meta_arc(&self) -> &Arc<MetaNode> {
        &self.meta
    }

    /// The replicated partitions this node holds a copy of.
    pub fn replicas(&self) -> &Arc<crate::replica::Replicas> {
        &self.replicas
    }

    /// Makes sure the local journal holds `stream` with at least `partitions` partitions,
    /// created or grown from the meta service's record (once caught up with it).
    async fn ensure_local(&self, stream: &str, partitions: u32) -> StoreResult<()> {
        let here = self
            .journal()
            .stream(stream)
            .is_ok_and(|s| s.config().partitions >= partitions);
        if !here {
            self.caught_up().await?;
            let m = self
                .stream_meta(stream)
                .ok_or_else(|| StoreError::UnknownStream(stream.to_string()))?;
            self.materialize(&m).await?;
        }
        Ok(())
    }

    /// The local journal's log of `stream`/`partition` and its directory, the stream
    /// created or grown first when needed.
    pub(crate) async fn local_log(
        &self,
        stream: &str,
        partition: u32,
    ) -> StoreResult<(Arc<dyn strata_journal::PartitionLog>, PathBuf)> {
        self.ensure_local(stream, partition + 1).await?;
        let s = self.journal().stream(stream).map_err(store_error)?;
        let log = s.partition(partition).map_err(store_error)?.clone();
        Ok((log, self.journal().partition_dir(stream, partition)))
    }

    /// Waits until this node applied what the meta service committed before it started
    /// (once per process: a heartbeat written and applied here proves it, whatever its
    /// outcome). A node that lost its disk starts with an empty copy: a partition created
    /// in its journal from it would miss the segments uploaded to object storage and
    /// start again at offset 0.
    pub(crate) async fn caught_up(&self) -> StoreResult<()> {
        self.caught_up
            .get_or_try_init(|| async {
                let beat = Command::Heartbeat {
                    id: self.node,
                    at_ms: now_ms(),
                };
                match self.meta.write_applied(beat).await {
                    Ok(_) => Ok(()),
                    Err(e) => Err(StoreError::Unavailable(format!(
                        "not caught up with the meta service yet: {e}"
                    ))),
                }
            })
            .await
            .map(|_| ())
    }

    /// The meta service this node runs.
    pub(crate) fn meta(&self) -> &MetaNode {
        &self.meta
    }

    fn journal(&self) -> &Journal {
        self.local.journal()
    }

    /// Whether `name` is a node's own stream, kept out of the meta service.
    fn node_local(&self, name: &str) -> bool {
        self.owned.is_per_node(name)
    }

    /// Copies of each partition of a frontend's own stream of `class` (the MQTT message
    /// store): three when the meta service has three or more voters and the class can be
    /// replicated (`segment`), one otherwise, whichever nodes happen to be up at the first
    /// start. Until three nodes are up, creating it is `Unavailable` (the frontend waits).
    fn frontend_copies(&self, class: StorageClass) -> StoreResult<u32> {
        let voters = self.meta.voters().len();
        if voters == 0 {
            // A node being added learns the group's voters from its leader.
            return Err(StoreError::Unavailable(
                "this node does not know the meta service's voters yet".into(),
            ));
        }
        if voters < 3 {
            return Ok(1);
        }
        match self.default_copies(class) {
            1 if class == StorageClass::Segment => Err(StoreError::Unavailable(format!(
                "a frontend's stream is kept in 3 copies: {} of the {voters} nodes are up",
                self.nodes_up()
            ))),
            copies => Ok(copies),
        }
    }

    fn info(&self, m: &StreamMeta) -> StreamInfo {
        let mut c = match self.journal().stream(&m.name) {
            Ok(s) => s.config().clone(),
            Err(_) => self.journal().stream_config(&m.name, m.partitions),
        };
        c.partitions = m.partitions;
        c.class = class(&m.storage_class).unwrap_or(c.class);
        c.retention.max_bytes = m.retention_bytes;
        c.retention.max_age_ms = m.retention_ms;
        let mut info = crate::streams::info(&c);
        info.min_in_sync = m.min_in_sync.unwrap_or(1);
        info
    }

    /// The config the local journal creates `m` with.
    fn local_config(&self, m: &StreamMeta) -> StreamConfig {
        let mut c = self.journal().stream_config(&m.name, m.partitions);
        c.class = class(&m.storage_class).unwrap_or(c.class);
        c.retention.max_bytes = m.retention_bytes;
        c.retention.max_age_ms = m.retention_ms;
        c
    }

    /// Makes sure the local journal holds `m` with all its partitions.
    async fn materialize(&self, m: &StreamMeta) -> StoreResult<()> {
        self.seen.lock().insert(m.name.clone());
        match self.journal().stream(&m.name) {
            Ok(s) if s.config().partitions >= m.partitions => Ok(()),
            Ok(_) => match self.journal().add_partitions(&m.name, m.partitions).await {
                Ok(_) => Ok(()),
                // A racing caller grew it first.
                Err(_)
                    if self
                        .journal()
                        .stream(&m.name)
                        .is_ok_and(|s| s.config().partitions >= m.partitions) =>
                {
                    Ok(())
                }
                Err(e) => Err(store_error(e)),
            },
            Err(_) => match self.journal().create_stream(self.local_config(m)).await {
                Ok(_) | Err(strata_journal::JournalError::StreamExists(_)) => Ok(()),
                Err(e) => Err(store_error(e)),
            },
        }
    }

    /// Writes `command` through the meta leader; an unreachable meta service is
    /// `Unavailable`.
    async fn write(&self, command: Command) -> StoreResult<Outcome> {
        self.meta
            .write(command)
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))
    }

    /// Waits until this node has applied what `ready` checks.
    async fn applied(&self, ready: impl Fn(&MetaState) -> bool) -> StoreResult<()> {
        if self.meta.applied(ready, APPLY_DEADLINE).await {
            Ok(())
        } else {
            Err(StoreError::Unavailable(format!(
                "the change was committed but node {} has not applied it within {APPLY_DEADLINE:?}",
                self.node
            )))
        }
    }

    fn stream_meta(&self, name: &str) -> Option<StreamMeta> {
        self.meta.read(|s| s.streams.get(name).cloned())
    }

    /// Records in the meta service every stream of the local journal it does not know
    /// (the node held them before it ran in a cluster), placed on this node; done once per
    /// meta store (a marker file in `meta_dir` says it was). Until it is, the journal is
    /// not reconciled.
    pub async fn adopt(&self, meta_dir: &std::path::Path) -> StoreResult<()> {
        let marker = meta_dir.join(ADOPTED);
        if marker.exists() {
            return Ok(());
        }
        for c in self.journal().list_streams() {
            if self.node_local(&c.name) || self.stream_meta(&c.name).is_some() {
                continue;
            }
            let stream = stream_meta(&c);
            match self
                .write(Command::AdoptStream {
                    stream,
                    node: self.node,
                })
                .await?
            {
                Outcome::Stream { existed: false, .. } => {
                    info!(stream = c.name, "stream recorded in the meta service");
                }
                Outcome::Stream { existed: true, .. } => {}
                // Not registered yet, or refused: tried again later, marker not written.
                other => {
                    return Err(StoreError::Unavailable(format!(
                        "stream {} not adopted yet: {other:?}",
                        c.name
                    )));
                }
            }
            self.applied(|s| s.streams.contains_key(&c.name)).await?;
        }
        std::fs::write(&marker, b"")
            .and_then(|()| std::fs::File::open(meta_dir)?.sync_all())
            .map_err(|e| StoreError::Storage(format!("{}: {e}", marker.display())))
    }

    /// Removes from the local journal the streams the meta service no longer has (deleted
    /// through another node), until dropped: a stream this node saw in the meta service
    /// and then saw go. Runs only after [`ClusterStreams::adopt`] succeeded.
    pub async fn reconcile(self, meta_dir: PathBuf) {
        // Replicated partitions follow placement for as long as the journal is kept.
        tokio::select! {
            () = crate::replica::drive(self.clone()) => {}
            () = self.reconcile_journal(meta_dir) => {}
        }
    }

    async fn reconcile_journal(self, meta_dir: PathBuf) {
        loop {
            match self.adopt(&meta_dir).await {
                Ok(()) => break,
                Err(e) => {
                    warn!(error = %e, "cannot record this node's streams in the meta service yet")
                }
            }
            tokio::time::sleep(RECONCILE_EVERY * 4).await;
        }
        let mut every = tokio::time::interval(RECONCILE_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Only a stream this node has seen in the meta service and then seen go is deleted:
        // one never seen there (a node whose metadata is still catching up, or was wiped)
        // keeps its records and is reported instead.
        let mut reported: std::collections::HashSet<String> = std::collections::HashSet::new();
        loop {
            every.tick().await;
            let mut gone = Vec::new();
            for c in self.journal().list_streams() {
                if self.node_local(&c.name) {
                    continue;
                }
                if self.meta.read(|s| s.streams.contains_key(&c.name)) {
                    self.seen.lock().insert(c.name);
                } else if self.seen.lock().remove(&c.name) {
                    gone.push(c.name);
                } else if reported.insert(c.name.clone()) {
                    warn!(
                        stream = c.name,
                        "stream in the journal but not in the meta service: kept, not served"
                    );
                }
            }
            for name in gone {
                match self.journal().delete_stream(&name).await {
                    Ok(()) => info!(
                        stream = name,
                        "stream deleted: the meta service no longer has it"
                    ),
                    Err(strata_journal::JournalError::UnknownStream(_)) => {}
                    Err(strata_journal::JournalError::Closed) => return,
                    Err(e) => {
                        warn!(stream = name, error = %e, "cannot delete a stream the meta service no longer has")
                    }
                }
            }
        }
    }
}

/// Wall-clock milliseconds.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The storage class named `s`.
pub(crate) fn class(s: &str) -> Option<StorageClass> {
    match s {
        "memory" => Some(StorageClass::Memory),
        "segment" => Some(StorageClass::Segment),
        "rocksdb" => Some(StorageClass::Rocksdb),
        "object" => Some(StorageClass::Object),
        _ => None,
    }
}

fn stream_meta(c: &StreamConfig) -> StreamMeta {
    StreamMeta {
        name: c.name.clone(),
        partitions: c.partitions,
        storage_class: c.class.to_string(),
        replication_factor: 1,
        retention_bytes: c.retention.max_bytes,
        retention_ms: c.retention.max_age_ms,
        min_in_sync: None,
    }
}

/// What a meta outcome means for a catalog call on `name`.
fn outcome_error(name: &str, outcome: Outcome) -> StoreError {
    match outcome {
        Outcome::NotFound(_) => StoreError::UnknownStream(name.to_string()),
        Outcome::Invalid(why) => StoreError::Invalid(why),
        other => StoreError::Storage(format!("unexpected meta outcome {other:?}")),
    }
}

#[async_trait]
impl Catalog for ClusterStreams {
    fn node_id(&self) -> NodeId {
        self.node
    }

    fn stream(&self, name: &str) -> Option<StreamInfo> {
        if self.node_local(name) {
            return self.local.stream(name);
        }
        self.stream_meta(name).map(|m| self.info(&m))
    }

    fn streams(&self) -> Vec<StreamInfo> {
        let metas: Vec<StreamMeta> = self.meta.read(|s| s.streams.values().cloned().collect());
        let mut all: Vec<StreamInfo> = metas.iter().map(|m| self.info(m)).collect();
        all.extend(
            self.local
                .streams()
                .into_iter()
                .filter(|s| self.node_local(&s.name)),
        );
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    async fn create_stream(&self, spec: StreamSpec) -> StoreResult<StreamInfo> {
        if self.node_local(&spec.name) {
            return self.local.create_stream(spec).await;
        }
        validate_stream_name(&spec.name)?;
        // The journal's own checks (partition count, class), before anything is recorded.
        let config = crate::streams::spec_config(self.journal(), &spec)?;
        config.validate().map_err(store_error)?;
        let mut m = stream_meta(&config);
        let internal = self.owned.get(&spec.name).map(|(_, o)| o) == Some(Ownership::Internal);
        m.replication_factor = if internal {
            self.frontend_copies(config.class)?
        } else {
            self.default_copies(config.class)
        };
        if let Some(copies) = spec.replication_factor {
            if copies > 1 && config.class != StorageClass::Segment {
                return Err(StoreError::Invalid(format!(
                    "only `segment` streams are replicated yet; `{}` has one copy",
                    config.class
                )));
            }
            m.replication_factor = copies;
        }
        m.min_in_sync = spec.min_in_sync;
        match self.write(Command::CreateStream(m)).await? {
            // Created meanwhile through another node: visible here too before the answer,
            // so a caller that then asks for it (get-or-create) finds it.
            Outcome::Stream { existed: true, .. } => {
                self.applied(|s| s.streams.contains_key(&spec.name)).await?;
                Err(StoreError::StreamExists(spec.name))
            }
            Outcome::Stream {
                existed: false,
                stream,
            } => {
                self.applied(|s| s.streams.contains_key(&stream.name))
                    .await?;
                Ok(self.info(&stream))
            }
            // A frontend's own stream asks for what its node saw up: fewer nodes may be up
            // by the time the meta service places it. It is tried again.
            Outcome::Invalid(why) if internal => Err(StoreError::Unavailable(why)),
            other => Err(outcome_error(&spec.name, other)),
        }
    }

    async fn delete_stream(&self, name: &str) -> StoreResult<()> {
        if self.node_local(name) {
            return self.local.delete_stream(name).await;
        }
        match self
            .write(Command::DeleteStream {
                name: name.to_string(),
            })
            .await?
        {
            Outcome::Done => {}
            other => return Err(outcome_error(name, other)),
        }
        self.applied(|s| !s.streams.contains_key(name)).await?;
        match self.journal().delete_stream(name).await {
            Ok(()) | Err(strata_journal::JournalError::UnknownStream(_)) => Ok(()),
            Err(e) => Err(store_error(e)),
        }
    }

    async fn add_partitions(&self, name: &str, partitions: u32) -> StoreResult<StreamInfo> {
        if self.node_local(name) {
            return self.local.add_partitions(name, partitions).await;
        }
        let command = Command::AddPartitions {
            name: name.to_string(),
            total: partitions,
        };
        match self.write(command).await? {
            Outcome::Done => {}
            other => return Err(outcome_error(name, other)),
        }
        self.applied(|s| {
            s.streams
                .get(name)
                .is_some_and(|m| m.partitions >= partitions)
        })
        .await?;
        self.stream(name)
            .ok_or_else(|| StoreError::UnknownStream(name.to_string()))
    }

    fn placement(&self, stream: &str, partition: u32) -> Option<Placement> {
        if self.node_local(stream) {
            return self.local.placement(stream, partition);
        }
        self.meta.read(|s| {
            let p = s.placement.get(stream)?.get(partition as usize)?;
            Some(Placement {
                leader: p.leader,
                epoch: p.epoch,
                replicas: p.replicas.clone(),
                in_sync: p.in_sync(),
                target: p.target.clone(),
            })
        })
    }

    fn copies_dir(&self) -> String {
        self.journal().dir().display().to_string()
    }

    fn copy_bytes(&self, stream: &str, partition: u32) -> Option<u64> {
        let here = self.node_local(stream)
            || self.meta.read(|s| {
                s.placement
                    .get(stream)
                    .and_then(|ps| ps.get(partition as usize))
                    .is_some_and(|p| {
                        p.replicas.contains(&self.node) || p.target.contains(&self.node)
                    })
            });
        if !here {
            return None;
        }
        let s = self.journal().stream(stream).ok()?;
        Some(s.partition(partition).ok()?.describe().size)
    }

    async fn move_replicas(
        &self,
        stream: &str,
        partition: u32,
        replicas: Vec<NodeId>,
    ) -> StoreResult<()> {
        if self.node_local(stream) {
            return self.local.move_replicas(stream, partition, replicas).await;
        }
        let command = Command::MoveReplicas {
            stream: stream.to_string(),
            partition,
            replicas: replicas.clone(),
        };
        match self.write(command).await? {
            Outcome::Done => {}
            other => return Err(outcome_error(stream, other)),
        }
        // Visible to this node's readers on return.
        self.applied(|s| {
            s.placement
                .get(stream)
                .and_then(|ps| ps.get(partition as usize))
                .is_some_and(|p| p.target == replicas || p.replicas == replicas)
        })
        .await
    }

    fn is_member(&self, id: NodeId) -> bool {
        id == self.node || self.meta.read(|s| s.nodes.contains_key(&id))
    }

    fn members(&self) -> Vec<Member> {
        self.meta.read(|s| {
            s.nodes
                .values()
                .map(|n| Member {
                    id: n.id,
                    listeners: n.listeners.clone(),
                    active: n.state == NodeState::Active,
                    alive: n.id == self.node || s.is_live(n.id),
                })
                .collect()
        })
    }
}

#[async_trait]
impl PartitionRouter for ClusterStreams {
    /// A handle that finds the partition's leader at each operation: it stays valid as
    /// placement changes (a node registering, a leader moving).
    async fn partition(&self, stream: &str, partition: u32) -> StoreResult<Arc<dyn Partition>> {
        self.routed(stream, partition, false).await
    }

    async fn partition_led_here(
        &self,
        stream: &str,
        partition: u32,
    ) -> StoreResult<Arc<dyn Partition>> {
        self.routed(stream, partition, true).await
    }
}

impl ClusterStreams {
    /// A handle on the partition: following its leader, or (`here_only`) only while this
    /// node leads it.
    async fn routed(
        &self,
        stream: &str,
        partition: u32,
        here_only: bool,
    ) -> StoreResult<Arc<dyn Partition>> {
        if self.node_local(stream) {
            return self.local.partition(stream, partition).await;
        }
        self.placed(stream, partition)?;
        Ok(Arc::new(Routed {
            stream: stream.to_string(),
            partition,
            streams: self.clone(),
            here_only,
            target: parking_lot::Mutex::new(None),
        }))
    }

    /// The partition's (leader, epoch) and its stream's partition count, read without
    /// copying the stream's record.
    fn placed(&self, stream: &str, partition: u32) -> StoreResult<((Option<NodeId>, u64), u32)> {
        let placed = self
            .meta
            .read(|s| {
                let m = s.streams.get(stream)?;
                let p = s
                    .placement
                    .get(stream)
                    .and_then(|v| v.get(partition as usize))
                    .map(|p| (p.leader, p.epoch));
                Some((p, m.partitions))
            })
            .ok_or_else(|| StoreError::UnknownStream(stream.to_string()))?;
        let p = placed.0.ok_or_else(|| StoreError::UnknownPartition {
            stream: stream.to_string(),
            partition,
        })?;
        Ok((p, placed.1))
    }

    /// Where the partition is now: the local partition, the leader through RPC, or a
    /// handle that says it is unavailable.
    async fn resolve(&self, stream: &str, partition: u32) -> StoreResult<Arc<dyn Partition>> {
        let ((leader, epoch), partitions) = self.placed(stream, partition)?;
        match leader {
            Some(leader) if leader == self.node => {
                self.led_here(stream, partition, partitions).await
            }
            leader => match leader {
                Some(leader) if self.is_up(leader) => Ok(Arc::new(Remote {
                    stream: stream.to_string(),
                    partition,
                    leader,
                    epoch,
                    meta: self.meta.clone(),
                })),
                leader => Ok(Arc::new(Elsewhere {
                    stream: stream.to_string(),
                    partition,
                    leader,
                })),
            },
        }
    }
    /// Whether node `id`'s heartbeats arrive (a node never heard from counts as down).
    pub(crate) fn is_up(&self, id: NodeId) -> bool {
        self.meta.read(|s| s.is_live(id))
    }

    /// The local handle on a partition this node leads (the stream has `partitions`
    /// partitions), the stream created or grown in the journal first when needed.
    async fn led_here(
        &self,
        stream: &str,
        partition: u32,
        partitions: u32,
    ) -> StoreResult<Arc<dyn Partition>> {
        let replicated = self.meta.read(|s| {
            s.placement
                .get(stream)
                .and_then(|v| v.get(partition as usize))
                .is_some_and(|p| p.replicas.len() > 1)
        });
        if replicated {
            // Served once this node has taken over (its marker written).
            return match self.replicas.get(stream, partition) {
                Some(r) => Ok(Arc::new(crate::replica::ReplicatedPartition(r))),
                None => Err(StoreError::Unavailable(format!(
                    "node {} is taking over {stream}/{partition}",
                    self.node
                ))),
            };
        }
        self.ensure_local(stream, partitions).await?;
        self.local.partition(stream, partition).await
    }

    /// The partition of `request` if this node leads it at the epoch the caller found.
    async fn hosted(&self, request: &PartitionRequest) -> StoreResult<Arc<dyn Partition>> {
        let (stream, partition) = (request.stream.as_str(), request.partition);
        // A node's own streams are never served to others.
        if self.node_local(stream) {
            return Err(StoreError::UnknownStream(stream.to_string()));
        }
        let ((leader, epoch), partitions) = self.placed(stream, partition)?;
        if leader != Some(self.node) || epoch != request.epoch {
            return Err(StoreError::NotLeader {
                stream: stream.to_string(),
                partition,
                leader,
                epoch,
            });
        }
        self.led_here(stream, partition, partitions).await
    }

    async fn serve(&self, request: PartitionRequest) -> StoreResult<PartitionReply> {
        if request.op == Op::ReplicaFetch as i32 {
            let replica = self
                .replicas
                .get(&request.stream, request.partition)
                .ok_or_else(|| StoreError::NotLeader {
                    stream: request.stream.clone(),
                    partition: request.partition,
                    leader: None,
                    epoch: request.epoch,
                })?;
            return replica.fetch(&request, self.node).await;
        }
        let handle = self.hosted(&request).await?;
        let mut reply = PartitionReply::default();
        match Op::try_from(request.op).unwrap_or(Op::Unspecified) {
            Op::Append => {
                let batch = PendingBatch::from_stored(&request.batch)?;
                let appended = handle.append(batch).await?;
                reply.first = appended.base_offset;
                reply.last = appended.last_offset;
            }
            Op::Read => {
                let max = request.max_bytes.min(MAX_READ_BYTES) as usize;
                reply.batches = handle
                    .read(request.offset, max)
                    .await?
                    .iter()
                    .map(|b| b.as_bytes().clone())
                    .collect();
            }
            Op::Offsets => {
                let o = handle.offsets().await?;
                reply.first = o.log_start;
                reply.last = o.end;
            }
            Op::WaitFor => {
                let wait = Duration::from_millis(request.wait_ms.min(MAX_WAIT_MS));
                reply.last = match tokio::time::timeout(wait, handle.wait_for(request.offset)).await
                {
                    Ok(end) => end?,
                    // Not yet: the end as it is; the caller asks again.
                    Err(_) => handle.offsets().await?.end,
                };
            }
            Op::OffsetForTimestamp => {
                if let Some(o) = handle.offset_for_timestamp(request.timestamp_ms).await? {
                    reply.found = true;
                    reply.first = o;
                }
            }
            Op::ReplicaFetch | Op::Unspecified => {
                return Err(StoreError::Invalid(format!(
                    "unknown partition operation {}",
                    request.op
                )));
            }
        }
        Ok(reply)
    }
}

#[async_trait]
impl PartitionHost for ClusterStreams {
    async fn call(&self, request: PartitionRequest) -> PartitionReply {
        match self.serve(request).await {
            Ok(reply) => reply,
            Err(e) => {
                PartitionReply::error(serde_json::to_string(&e).unwrap_or_else(|_| e.to_string()))
            }
        }
    }
}

/// A partition wherever it is: each operation finds the leader (the handle found last is
/// kept while the leader and its epoch stay the same).
#[derive(Debug)]
struct Routed {
    stream: String,
    partition: u32,
    streams: ClusterStreams,
    /// Whether it answers `NotLeader` once another node leads, instead of reaching it.
    here_only: bool,
    /// The leader and epoch the kept handle was found for, and the handle.
    target: parking_lot::Mutex<Option<Target>>,
}

/// A leader, its epoch, and the handle found for them.
type Target = (NodeId, u64, Arc<dyn Partition>);

impl Routed {
    async fn target(&self) -> StoreResult<Arc<dyn Partition>> {
        let ((leader, epoch), _) = self.streams.placed(&self.stream, self.partition)?;
        if self.here_only && leader != Some(self.streams.node) {
            return Err(StoreError::NotLeader {
                stream: self.stream.clone(),
                partition: self.partition,
                leader,
                epoch,
            });
        }
        if let Some((l, e, handle)) = self.target.lock().as_ref()
            && Some(*l) == leader
            && *e == epoch
        {
            return Ok(handle.clone());
        }
        let handle = self.streams.resolve(&self.stream, self.partition).await?;
        // Kept only for a leader that serves it: a node taken for down may come back.
        if let Some(l) = leader
            && (l == self.streams.node || self.streams.is_up(l))
        {
            *self.target.lock() = Some((l, epoch, handle.clone()));
        }
        Ok(handle)
    }
}

#[async_trait]
impl Partition for Routed {
    fn stream(&self) -> &str {
        &self.stream
    }

    fn index(&self) -> u32 {
        self.partition
    }

    async fn append(&self, batch: PendingBatch) -> StoreResult<Appended> {
        self.target().await?.append(batch).await
    }

    async fn read(&self, from: u64, max_bytes: usize) -> StoreResult<Vec<Batch>> {
        self.target().await?.read(from, max_bytes).await
    }

    async fn offsets(&self) -> StoreResult<Offsets> {
        self.target().await?.offsets().await
    }

    async fn wait_for(&self, offset: u64) -> StoreResult<u64> {
        self.target().await?.wait_for(offset).await
    }

    async fn offset_for_timestamp(&self, timestamp_ms: i64) -> StoreResult<Option<u64>> {
        self.target()
            .await?
            .offset_for_timestamp(timestamp_ms)
            .await
    }

    async fn end_offset_for_epoch(&self, epoch: i32) -> StoreResult<Option<(i32, u64)>> {
        self.target().await?.end_offset_for_epoch(epoch).await
    }

    async fn read_written(&self, from: u64, max_bytes: usize) -> StoreResult<Vec<Batch>> {
        self.target().await?.read_written(from, max_bytes).await
    }

    async fn delete_before(&self, offset: u64) -> StoreResult<()> {
        self.target().await?.delete_before(offset).await
    }
}

/// A partition another node leads, reached through it.
#[derive(Debug)]
struct Remote {
    stream: String,
    partition: u32,
    leader: NodeId,
    epoch: u64,
    meta: Arc<MetaNode>,
}

impl Remote {
    async fn call(&self, mut request: PartitionRequest) -> StoreResult<PartitionReply> {
        request.stream.clone_from(&self.stream);
        request.partition = self.partition;
        request.epoch = self.epoch;
        // A leader that is cut off may not answer before the RPC times out; once the
        // partition has another leader (or epoch) the caller is told, to try again there,
        // after a short grace for an answer on its way. What was sent may or may not have
        // been carried out. Calls answered within the grace never watch the placement.
        let placed = (Some(self.leader), self.epoch);
        let moved = async {
            tokio::time::sleep(MOVED_GRACE).await;
            self.meta
                .applied(
                    |s| {
                        s.placement
                            .get(&self.stream)
                            .and_then(|v| v.get(self.partition as usize))
                            .is_none_or(|p| (p.leader, p.epoch) != placed)
                    },
                    MOVED_WATCH,
                )
                .await
        };
        let call = self.meta.partition_call(self.leader, request);
        tokio::pin!(call);
        let reply = tokio::select! {
            biased;
            reply = &mut call => reply,
            true = moved => match tokio::time::timeout(MOVED_GRACE, &mut call).await {
                Ok(reply) => reply,
                Err(_) => {
                    return Err(StoreError::Unavailable(format!(
                        "{}/{} moved from node {} (epoch {}) while a call to it was under way",
                        self.stream, self.partition, self.leader, self.epoch
                    )));
                }
            },
        }
        .map_err(|e| {
            StoreError::Unavailable(format!(
                "node {} leading {}/{}: {e}",
                self.leader, self.stream, self.partition
            ))
        })?;
        if reply.error.is_empty() {
            Ok(reply)
        } else {
            Err(serde_json::from_str(&reply.error).unwrap_or(StoreError::Storage(reply.error)))
        }
    }

    fn request(op: Op) -> PartitionRequest {
        PartitionRequest {
            op: op as i32,
            ..PartitionRequest::default()
        }
    }
}

#[async_trait]
impl Partition for Remote {
    fn stream(&self) -> &str {
        &self.stream
    }

    fn index(&self) -> u32 {
        self.partition
    }

    async fn append(&self, batch: PendingBatch) -> StoreResult<Appended> {
        let mut request = Remote::request(Op::Append);
        request.batch = bytes::Bytes::copy_from_slice(batch.as_bytes());
        let reply = self.call(request).await?;
        Ok(Appended {
            base_offset: reply.first,
            last_offset: reply.last,
        })
    }

    async fn read(&self, from: u64, max_bytes: usize) -> StoreResult<Vec<Batch>> {
        let mut request = Remote::request(Op::Read);
        request.offset = from;
        request.max_bytes = max_bytes as u64;
        let reply = self.call(request).await?;
        // Checked again here: the bytes crossed the network.
        reply
            .batches
            .into_iter()
            .map(|b| Batch::from_bytes(b).map_err(StoreError::Corruption))
            .collect()
    }

    async fn offsets(&self) -> StoreResult<Offsets> {
        let reply = self.call(Remote::request(Op::Offsets)).await?;
        Ok(Offsets {
            log_start: reply.first,
            end: reply.last,
        })
    }

    async fn wait_for(&self, offset: u64) -> StoreResult<u64> {
        loop {
            let mut request = Remote::request(Op::WaitFor);
            request.offset = offset;
            request.wait_ms = MAX_WAIT_MS;
            let end = self.call(request).await?.last;
            if end > offset {
                return Ok(end);
            }
        }
    }

    async fn offset_for_timestamp(&self, timestamp_ms: i64) -> StoreResult<Option<u64>> {
        let mut request = Remote::request(Op::OffsetForTimestamp);
        request.timestamp_ms = timestamp_ms;
        let reply = self.call(request).await?;
        Ok(reply.found.then_some(reply.first))
    }

    async fn end_offset_for_epoch(&self, _epoch: i32) -> StoreResult<Option<(i32, u64)>> {
        // Leader epochs are asked of the leader itself (Kafka clients do).
        Err(StoreError::NotLeader {
            stream: self.stream.clone(),
            partition: self.partition,
            leader: Some(self.leader),
            epoch: self.epoch,
        })
    }
}

/// A partition no node serves now: none leads it, or its leader's heartbeats stopped.
#[derive(Debug)]
struct Elsewhere {
    stream: String,
    partition: u32,
    leader: Option<NodeId>,
}

impl Elsewhere {
    fn refuse<T>(&self) -> StoreResult<T> {
        Err(match self.leader {
            Some(leader) => StoreError::Unavailable(format!(
                "node {leader}, which leads {}/{}, is down (its heartbeats stopped)",
                self.stream, self.partition
            )),
            None => StoreError::Unavailable(format!(
                "no node serves {}/{} now",
                self.stream, self.partition
            )),
        })
    }
}

#[async_trait]
impl Partition for Elsewhere {
    fn stream(&self) -> &str {
        &self.stream
    }

    fn index(&self) -> u32 {
        self.partition
    }

    async fn append(&self, _batch: PendingBatch) -> StoreResult<Appended> {
        self.refuse()
    }

    async fn read(&self, _from: u64, _max_bytes: usize) -> StoreResult<Vec<Batch>> {
        self.refuse()
    }

    async fn offsets(&self) -> StoreResult<Offsets> {
        self.refuse()
    }

    async fn wait_for(&self, _offset: u64) -> StoreResult<u64> {
        self.refuse()
    }

    async fn offset_for_timestamp(&self, _timestamp_ms: i64) -> StoreResult<Option<u64>> {
        self.refuse()
    }

    async fn end_offset_for_epoch(&self, _epoch: i32) -> StoreResult<Option<(i32, u64)>> {
        self.refuse()
    }
}
