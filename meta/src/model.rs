//! The cluster's metadata as the meta service's state machine holds it, and the commands
//! that change it. Pure: [`MetaState::apply`] takes a command and returns its outcome and
//! the objects it touched; the store writes those. Every node applies the same commands
//! in the same order, so every node computes the same placement.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A node's id in the cluster.
pub type NodeId = u64;

/// How to reach a node's meta service (openraft's node type).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAddr {
    /// `host:port` of the node-to-node listener.
    pub rpc: String,
}

impl std::fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.rpc)
    }
}

/// A member of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Its id.
    pub id: NodeId,
    /// Its node-to-node address.
    pub rpc: String,
    /// Each client listener's advertised address, by name (`kafka`, `mqtt`, ...).
    pub listeners: BTreeMap<String, String>,
    /// `active`, or `leaving` once removal started (it gets no new partitions).
    pub state: NodeState,
    /// Its last heartbeat, in milliseconds on the cluster's clock (the meta leader's
    /// monotonic clock continued across leaders, started from wall-clock time: close to
    /// it, but only differences between stamps mean anything).
    pub heartbeat_ms: i64,
}

/// Whether a node takes partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// Takes partitions.
    Active,
    /// Being removed: its partitions move away.
    Leaving,
}

/// A stream as the catalog knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamMeta {
    /// Its name.
    pub name: String,
    /// How many partitions.
    pub partitions: u32,
    /// Storage class (`segment`, `memory`, `rocksdb`, `object`).
    pub storage_class: String,
    /// Copies of each partition (1 until replication exists).
    pub replication_factor: u32,
    /// Bytes kept per partition, if bounded.
    pub retention_bytes: Option<u64>,
    /// Milliseconds kept, if bounded.
    pub retention_ms: Option<u64>,
    /// Kafka's `min.insync.replicas`: writes that wait for every in-sync replica
    /// (acks=all) are refused while fewer replicas are in sync. `None`: 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_in_sync: Option<u32>,
}

/// Where a partition lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionPlacement {
    /// The node that serves it; none while no node is active or while its replicas elect
    /// one.
    pub leader: Option<NodeId>,
    /// Raised each time the leader changes: the partition's Raft term, stamped into every
    /// batch its leader appends.
    pub epoch: u64,
    /// The nodes holding a copy, in assignment order (the first is the preferred leader).
    pub replicas: Vec<NodeId>,
    /// The election of the leader of `epoch`, while it runs (replicated partitions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub election: Option<Election>,
    /// Replicated partitions: the replicas the leader of `epoch` reported in sync (its
    /// own log and the followers that kept up with it lately), in replica order. Empty
    /// until the leader reports; see [`PartitionPlacement::in_sync`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub in_sync: Vec<NodeId>,
    /// Replicated partitions: the replicas it is moving to, while a move runs (empty
    /// otherwise). The nodes in it that are not replicas yet are *learners*: they copy
    /// the leader's log without counting toward commitment or elections. Once each of
    /// them holds the leader's whole log, the leader stops taking appends and begins the
    /// next epoch's election with this set as its replicas
    /// ([`Command::BeginElection`]'s `replicas`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target: Vec<NodeId>,
    /// Set once a move began: copies made since did not exist from the partition's
    /// start, so none is taken as holding every record it ever held for being empty and
    /// new (a learner joins once it caught up).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub moved: bool,
    /// Raised each time `target` changes (a move asked for, changed or cancelled): a
    /// move's end names the move it ends, and a leader's knowledge of learners belongs
    /// to one move.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub move_id: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl PartitionPlacement {
    /// The nodes copying the partition that are not replicas yet (a move under way).
    pub fn learners(&self) -> Vec<NodeId> {
        self.target
            .iter()
            .copied()
            .filter(|n| !self.replicas.contains(n))
            .collect()
    }

    /// The in-sync replicas as clients are told: every copy of an unreplicated partition
    /// (when it has a leader), the leader's report for a replicated one (the leader alone
    /// until it reports), none while there is no leader.
    pub fn in_sync(&self) -> Vec<NodeId> {
        match self.leader {
            None => Vec::new(),
            Some(_) if self.replicas.len() < 2 => self.replicas.clone(),
            Some(leader) if self.in_sync.is_empty() => vec![leader],
            Some(_) => self.in_sync.clone(),
        }
    }

    /// Whether fewer replicas are in sync than hold a copy (offline partitions count too).
    pub fn under_replicated(&self) -> bool {
        self.in_sync().len() < self.replicas.len()
    }
}

/// Where a replica's log ends: what it reports to an election. Logs compare as Raft's
/// do: the newer last epoch wins, then the longer log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ReplicaEnd {
    /// The leader epoch of its last record (`-1` when it holds none).
    pub last_epoch: i32,
    /// The offset after its last record.
    pub end_offset: u64,
}

/// A leader election in progress. Each replica that sees the new epoch fences its log
/// (it accepts nothing from older leaders) and reports where its log ends; once a
/// majority reported, the one with the most up-to-date log leads. Any majority holds a
/// replica with every committed record (a record is committed once a majority has it),
/// so the one chosen has them all.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Election {
    /// Leads when its log is as up to date as the best reported (leader transfer).
    pub preferred: Option<NodeId>,
    /// The reports so far, by replica.
    pub reports: BTreeMap<NodeId, ReplicaEnd>,
}

/// Votes a partition with `replicas` copies needs to elect a leader.
pub fn majority(replicas: usize) -> usize {
    replicas / 2 + 1
}

/// One uploaded segment of a partition (its object and the offsets it holds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// First offset.
    pub base_offset: u64,
    /// Last offset.
    pub last_offset: u64,
    /// The object's key.
    pub key: String,
    /// The object's size in bytes.
    pub size: u64,
    /// Largest record timestamp.
    pub max_timestamp: i64,
    /// Bytes at the end of the object that are its index.
    #[serde(default)]
    pub index_len: u64,
}

/// A change to the metadata, written to the meta service's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Adds a node, or updates its addresses.
    AddNode {
        /// Its id.
        id: NodeId,
        /// Its node-to-node address.
        rpc: String,
        /// Its client listeners.
        listeners: BTreeMap<String, String>,
        /// When it registered (registering counts as a heartbeat), in milliseconds on the
        /// cluster's clock: the meta leader replaces the sender's time as it writes the
        /// command (`meta/src/clock.rs`).
        #[serde(default)]
        at_ms: i64,
    },
    /// Starts removing a node: it takes no partitions and its own move away.
    RemoveNode {
        /// Its id.
        id: NodeId,
    },
    /// A node says it is alive.
    Heartbeat {
        /// Its id.
        id: NodeId,
        /// Milliseconds on the cluster's clock, set by the meta leader as it writes the
        /// command (`meta/src/clock.rs`).
        at_ms: i64,
    },
    /// Creates a stream and places its partitions.
    CreateStream(StreamMeta),
    /// Records a stream that already holds data on node `node` (one that was there before
    /// the node joined a cluster): every partition is placed there. A no-op when the
    /// stream exists.
    AdoptStream {
        /// The stream.
        stream: StreamMeta,
        /// The node holding its data.
        node: NodeId,
    },
    /// Deletes a stream, its placement and its manifest.
    DeleteStream {
        /// Its name.
        name: String,
    },
    /// Grows a stream to `total` partitions.
    AddPartitions {
        /// Its name.
        name: String,
        /// Partitions after the change.
        total: u32,
    },
    /// Recomputes placement so partitions and leaders are spread evenly.
    Rebalance,
    /// Records an uploaded segment, past the last one.
    AppendManifest {
        /// Stream.
        stream: String,
        /// Partition.
        partition: u32,
        /// The segment.
        entry: ManifestEntry,
        /// Written by the leader of this epoch of a replicated partition: refused once
        /// the partition has another leader or is electing one (a deposed leader's
        /// upload is left an orphan, for the new leader's cleanup).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        epoch: Option<u64>,
    },
    /// Forgets the uploaded segments that end below `offset`.
    TrimManifest {
        /// Stream.
        stream: String,
        /// Partition.
        partition: u32,
        /// Entries whose last offset is below it go.
        offset: u64,
        /// As for [`Command::AppendManifest`]: only the leader of this epoch applies
        /// retention.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        epoch: Option<u64>,
    },
    /// Stores a consumer group's committed offsets, all or none.
    CommitOffsets {
        /// The group.
        group: String,
        /// Stream, partition and offset, for each partition committed.
        offsets: Vec<(String, u32, CommittedOffset)>,
        /// Partitions that already have an offset keep it (offsets handed over from a
        /// node's own store must not undo newer commits).
        #[serde(default)]
        if_absent: bool,
    },
    /// Forgets every committed offset of a group.
    DeleteOffsets {
        /// The group.
        group: String,
    },
    /// Starts electing the leader of `epoch` (the next epoch) of a replicated partition:
    /// its leader is gone or is handing over. Stale epochs are refused.
    BeginElection {
        /// Stream.
        stream: String,
        /// Partition.
        partition: u32,
        /// The new epoch: the current one plus one.
        epoch: u64,
        /// A replica to prefer when its log is as up to date as the best.
        preferred: Option<NodeId>,
        /// Ends a move: the partition's replicas from this epoch on, equal to its
        /// `target`. Written only by the leader that stopped taking appends, fenced its
        /// log at the new epoch and saw every one of them hold its whole log, so any
        /// majority of the new replicas holds every committed record.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        replicas: Option<Vec<NodeId>>,
        /// With `replicas`: the move it ends (`PartitionPlacement::move_id`); refused
        /// once the target changed since, even back to the same nodes (their copies may
        /// have been emptied meanwhile).
        #[serde(default, skip_serializing_if = "is_zero")]
        move_id: u64,
    },
    /// Moves a replicated partition to `replicas` (2 to [`MAX_REPLICAS`] distinct active
    /// nodes, the first its preferred leader): the new ones copy the leader's log as
    /// learners, then the leader ends the move with an election. The partition's
    /// current replicas cancel a move; the same nodes in another order only change the
    /// preferred leader.
    MoveReplicas {
        /// Stream.
        stream: String,
        /// Partition.
        partition: u32,
        /// The replicas wanted.
        replicas: Vec<NodeId>,
    },
    /// A replica's answer to the election of `epoch`: it fenced its log at that epoch and
    /// its log ends at `end`.
    ReportReplica {
        /// Stream.
        stream: String,
        /// Partition.
        partition: u32,
        /// The epoch being elected.
        epoch: u64,
        /// The replica.
        node: NodeId,
        /// Where its log ends.
        end: ReplicaEnd,
    },
    /// The leader of `epoch` reports which replicas are in sync with it.
    SetInSync {
        /// Stream.
        stream: String,
        /// Partition.
        partition: u32,
        /// The reporting leader's epoch: a report from an older one is refused.
        epoch: u64,
        /// The replicas in sync, the leader among them.
        in_sync: Vec<NodeId>,
    },
    /// Names the node coordinating a consumer group.
    SetCoordinator {
        /// The group.
        group: String,
        /// The node.
        node: NodeId,
    },
}

/// What applying a command gave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// Done.
    Done,
    /// The stream as created (or as it already was: `existed`).
    Stream {
        /// The stream.
        stream: StreamMeta,
        /// It existed before this command.
        existed: bool,
    },
    /// Nothing by that name.
    NotFound(String),
    /// The node was removed from the cluster.
    Removed,
    /// The node takes no new partitions but still leads `partitions`, which stay until
    /// they can move with their data.
    Leaving {
        /// How many partitions it leads.
        partitions: u64,
        /// How many replicated partitions still hold a copy on it (each moving off it
        /// when another active node can take its copy).
        #[serde(default)]
        copies: u64,
    },
    /// The command cannot apply as asked.
    Invalid(String),
}

/// An object a command changed, for the store to write (or delete when gone).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Touched {
    /// A node.
    Node(NodeId),
    /// A stream and its placement.
    Stream(String),
    /// A partition's manifest.
    Manifest(String, u32),
    /// A group's coordinator.
    Coordinator(String),
    /// A group's committed offset in one partition of a stream.
    Offset(String, String, u32),
}

/// The whole metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaState {
    /// Members by id.
    pub nodes: BTreeMap<NodeId, NodeInfo>,
    /// Streams by name.
    pub streams: BTreeMap<String, StreamMeta>,
    /// Each stream's partitions, in partition order.
    pub placement: BTreeMap<String, Vec<PartitionPlacement>>,
    /// Uploaded segments per stream and partition.
    pub manifests: BTreeMap<String, BTreeMap<u32, Vec<ManifestEntry>>>,
    /// Consumer group coordinators.
    pub coordinators: BTreeMap<String, NodeId>,
    /// Committed offsets: by group, stream and partition.
    #[serde(default)]
    pub offsets: BTreeMap<String, BTreeMap<String, BTreeMap<u32, CommittedOffset>>>,
    /// How many committed offsets `offsets` holds (bounded by [`MAX_COMMITTED_OFFSETS`]).
    #[serde(default)]
    pub offset_count: usize,
    /// The bytes of metadata they carry (bounded by [`MAX_OFFSET_METADATA_TOTAL`]).
    #[serde(default)]
    pub offset_metadata_bytes: usize,
}

/// The bytes of metadata kept with a committed offset.
pub fn metadata_len(c: &CommittedOffset) -> usize {
    c.metadata.as_ref().map_or(0, String::len)
}

/// Where a consumer group has got to in one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedOffset {
    /// The next offset to read.
    pub offset: i64,
    /// The leader epoch the consumer last read under (`-1` when unknown).
    pub leader_epoch: i32,
    /// The consumer's note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<String>,
}

impl MetaState {
    /// Applies `command`: its outcome and what it changed.
    pub fn apply(&mut self, command: &Command) -> (Outcome, Vec<Touched>) {
        match command {
            Command::AddNode {
                id,
                rpc,
                listeners,
                at_ms,
            } => {
                // A node that registers again (every start does) keeps its state: one
                // that is leaving stays leaving.
                let (heartbeat_ms, state, fresh) = match self.nodes.get(id) {
                    Some(n) => (n.heartbeat_ms.max(*at_ms), n.state, false),
                    None => (*at_ms, NodeState::Active, true),
                };
                self.nodes.insert(
                    *id,
                    NodeInfo {
                        id: *id,
                        rpc: rpc.clone(),
                        listeners: listeners.clone(),
                        state,
                        heartbeat_ms,
                    },
                );
                let mut touched = vec![Touched::Node(*id)];
                if fresh {
                    touched.extend(self.rebalance());
                }
                (Outcome::Done, touched)
            }
            Command::RemoveNode { id } => {
                if !self.nodes.contains_key(id) {
                    return (Outcome::NotFound(format!("no node {id}")), Vec::new());
                }
                if self.active() == [*id] {
                    return (
                        Outcome::Invalid(format!(
                            "node {id} is the last active node: the cluster would have none"
                        )),
                        Vec::new(),
                    );
                }
                let led = self.led_by(*id);
                if led == 0 && self.held_by(*id) == 0 {
                    self.nodes.remove(id);
                    return (Outcome::Removed, vec![Touched::Node(*id)]);
                }
                // A partition with one copy moves only with its data: the node stays,
                // leading it, and takes nothing new. The copies of replicated partitions
                // move to other nodes (each ends with an election); the node is removed
                // when asked again once it holds none.
                if let Some(n) = self.nodes.get_mut(id) {
                    n.state = NodeState::Leaving;
                }
                let mut touched = vec![Touched::Node(*id)];
                touched.extend(self.move_off(*id));
                (
                    Outcome::Leaving {
                        partitions: led,
                        copies: self.held_by(*id),
                    },
                    touched,
                )
            }
            Command::Heartbeat { id, at_ms } => match self.nodes.get_mut(id) {
                None => (Outcome::NotFound(format!("no node {id}")), Vec::new()),
                Some(n) => {
                    n.heartbeat_ms = n.heartbeat_ms.max(*at_ms);
                    (Outcome::Done, vec![Touched::Node(*id)])
                }
            },
            Command::CreateStream(spec) => self.create(spec, None),
            Command::AdoptStream { stream, node } => {
                // Placed only on a member: another node joining would move it off an
                // unknown node, away from its records.
                if !self.nodes.contains_key(node) && !self.streams.contains_key(&stream.name) {
                    return (
                        Outcome::Invalid(format!("node {node} is not registered yet")),
                        Vec::new(),
                    );
                }
                self.create(stream, Some(*node))
            }
            Command::DeleteStream { name } => {
                if self.streams.remove(name).is_none() {
                    return (Outcome::NotFound(format!("no stream `{name}`")), Vec::new());
                }
                self.placement.remove(name);
                let mut touched = vec![Touched::Stream(name.clone())];
                touched.extend(self.forget_offsets_of_stream(name));
                if let Some(parts) = self.manifests.remove(name) {
                    touched.extend(
                        parts
                            .into_keys()
                            .map(|p| Touched::Manifest(name.clone(), p)),
                    );
                }
                (Outcome::Done, touched)
            }
            Command::AddPartitions { name, total } => {
                let Some(stream) = self.streams.get(name) else {
                    return (Outcome::NotFound(format!("no stream `{name}`")), Vec::new());
                };
                if *total > MAX_PARTITIONS {
                    return (
                        Outcome::Invalid(format!("at most {MAX_PARTITIONS} partitions per stream")),
                        Vec::new(),
                    );
                }
                if *total <= stream.partitions {
                    return (
                        Outcome::Invalid(format!(
                            "`{name}` has {} partitions; a stream only grows",
                            stream.partitions
                        )),
                        Vec::new(),
                    );
                }
                let more = (*total - stream.partitions) as usize;
                let placed = self.place_new(more, stream.replication_factor as usize);
                if let Some(s) = self.streams.get_mut(name) {
                    s.partitions = *total;
                }
                self.placement
                    .entry(name.clone())
                    .or_default()
                    .extend(placed);
                (Outcome::Done, vec![Touched::Stream(name.clone())])
            }
            Command::Rebalance => (Outcome::Done, self.rebalance()),
            Command::CommitOffsets {
                group,
                offsets,
                if_absent,
            } => self.commit_offsets(group, offsets, *if_absent),
            Command::DeleteOffsets { group } => {
                let Some(streams) = self.offsets.remove(group) else {
                    return (Outcome::Done, Vec::new());
                };
                let mut touched = Vec::new();
                for (stream, parts) in streams {
                    self.offset_count -= parts.len();
                    self.offset_metadata_bytes -= parts.values().map(metadata_len).sum::<usize>();
                    touched.extend(
                        parts
                            .into_keys()
                            .map(|p| Touched::Offset(group.clone(), stream.clone(), p)),
                    );
                }
                (Outcome::Done, touched)
            }
            Command::AppendManifest {
                stream,
                partition,
                entry,
                epoch,
            } => {
                if let Err(refused) = self
                    .has_partition(stream, *partition)
                    .and_then(|()| self.led_in(stream, *partition, *epoch))
                {
                    return (refused, Vec::new());
                }
                let entries = self
                    .manifests
                    .entry(stream.clone())
                    .or_default()
                    .entry(*partition)
                    .or_default();
                // The same segment uploaded again (a retry after the first upload was
                // recorded but not acknowledged): the newer object replaces the older.
                if let Some(last) = entries.last_mut()
                    && last.base_offset == entry.base_offset
                    && last.last_offset == entry.last_offset
                {
                    *last = entry.clone();
                    return (
                        Outcome::Done,
                        vec![Touched::Manifest(stream.clone(), *partition)],
                    );
                }
                if entries
                    .last()
                    .is_some_and(|e| e.last_offset >= entry.base_offset)
                {
                    return (
                        Outcome::Invalid(format!(
                            "segment at {} overlaps the manifest of {stream}/{partition}",
                            entry.base_offset
                        )),
                        Vec::new(),
                    );
                }
                entries.push(entry.clone());
                (
                    Outcome::Done,
                    vec![Touched::Manifest(stream.clone(), *partition)],
                )
            }
            Command::TrimManifest {
                stream,
                partition,
                offset,
                epoch,
            } => {
                if let Err(refused) = self.led_in(stream, *partition, *epoch) {
                    return (refused, Vec::new());
                }
                if let Some(entries) = self
                    .manifests
                    .get_mut(stream)
                    .and_then(|m| m.get_mut(partition))
                {
                    entries.retain(|e| e.last_offset >= *offset);
                }
                (
                    Outcome::Done,
                    vec![Touched::Manifest(stream.clone(), *partition)],
                )
            }
            Command::SetCoordinator { group, node } => {
                self.coordinators.insert(group.clone(), *node);
                (Outcome::Done, vec![Touched::Coordinator(group.clone())])
            }
            Command::BeginElection {
                stream,
                partition,
                epoch,
                preferred,
                replicas,
                move_id,
            } => {
                let ending = replicas.as_deref().map(|r| (r, *move_id));
                self.begin_election(stream, *partition, *epoch, *preferred, ending)
            }
            Command::MoveReplicas {
                stream,
                partition,
                replicas,
            } => self.move_replicas(stream, *partition, replicas),
            Command::ReportReplica {
                stream,
                partition,
                epoch,
                node,
                end,
            } => self.report_replica(stream, *partition, *epoch, *node, *end),
            Command::SetInSync {
                stream,
                partition,
                epoch,
                in_sync,
            } => self.set_in_sync(stream, *partition, *epoch, in_sync),
        }
    }

    /// The placement of `stream`/`partition`, or the NotFound outcome.
    fn placement_mut(
        &mut self,
        stream: &str,
        partition: u32,
    ) -> Result<&mut PartitionPlacement, Outcome> {
        self.has_partition(stream, partition)?;
        self.placement
            .get_mut(stream)
            .and_then(|ps| ps.get_mut(partition as usize))
            .ok_or_else(|| Outcome::NotFound(format!("no placement for {stream}/{partition}")))
    }

    fn begin_election(
        &mut self,
        stream: &str,
        partition: u32,
        epoch: u64,
        preferred: Option<NodeId>,
        ending: Option<(&[NodeId], u64)>,
    ) -> (Outcome, Vec<Touched>) {
        let p = match self.placement_mut(stream, partition) {
            Ok(p) => p,
            Err(missing) => return (missing, Vec::new()),
        };
        if epoch != p.epoch + 1 || epoch > MAX_EPOCH {
            return (
                Outcome::Invalid(format!(
                    "{stream}/{partition} is in epoch {}: {epoch} is not the next",
                    p.epoch
                )),
                Vec::new(),
            );
        }
        if p.replicas.len() < 2 {
            return (
                Outcome::Invalid(format!(
                    "{stream}/{partition} has one copy: it is never elected away from its records"
                )),
                Vec::new(),
            );
        }
        let replicas = ending.map(|(r, _)| r);
        if ending.is_some_and(|(r, id)| {
            p.target.is_empty() || r != p.target.as_slice() || id != p.move_id
        }) {
            return (
                Outcome::Invalid(format!(
                    "{stream}/{partition} is not moving to those replicas"
                )),
                Vec::new(),
            );
        }
        let members = replicas.unwrap_or(&p.replicas);
        if preferred.is_some_and(|n| !members.contains(&n)) {
            return (
                Outcome::Invalid(format!(
                    "the preferred node is not a replica of {stream}/{partition}"
                )),
                Vec::new(),
            );
        }
        if let Some(r) = replicas {
            p.replicas = r.to_vec();
            p.target.clear();
        }
        p.epoch = epoch;
        p.leader = None;
        p.in_sync.clear();
        p.election = Some(Election {
            preferred,
            reports: BTreeMap::new(),
        });
        (Outcome::Done, vec![Touched::Stream(stream.to_string())])
    }

    fn report_replica(
        &mut self,
        stream: &str,
        partition: u32,
        epoch: u64,
        node: NodeId,
        end: ReplicaEnd,
    ) -> (Outcome, Vec<Touched>) {
        let p = match self.placement_mut(stream, partition) {
            Ok(p) => p,
            Err(missing) => return (missing, Vec::new()),
        };
        if !p.replicas.contains(&node) {
            return (
                Outcome::Invalid(format!(
                    "node {node} is not a replica of {stream}/{partition}"
                )),
                Vec::new(),
            );
        }
        let replicas = p.replicas.clone();
        let current = p.epoch == epoch;
        let Some(election) = p.election.as_mut().filter(|_| current) else {
            // A late report (the election ended, or a newer one began): nothing to do.
            return (
                Outcome::Invalid(format!(
                    "no election of epoch {epoch} in {stream}/{partition}"
                )),
                Vec::new(),
            );
        };
        election.reports.insert(node, end);
        if election.reports.len() < majority(replicas.len()) {
            return (Outcome::Done, vec![Touched::Stream(stream.to_string())]);
        }
        let best = election.reports.values().max().copied();
        let up_to_date = |n: &NodeId| election.reports.get(n).copied() == best;
        let leader = election
            .preferred
            .filter(&up_to_date)
            .or_else(|| replicas.iter().copied().find(&up_to_date));
        p.leader = leader;
        p.election = None;
        p.in_sync.clear();
        (Outcome::Done, vec![Touched::Stream(stream.to_string())])
    }

    fn move_replicas(
        &mut self,
        stream: &str,
        partition: u32,
        wanted: &[NodeId],
    ) -> (Outcome, Vec<Touched>) {
        let active = self.active();
        let p = match self.placement_mut(stream, partition) {
            Ok(p) => p,
            Err(missing) => return (missing, Vec::new()),
        };
        let invalid = |why: String| (Outcome::Invalid(why), Vec::new());
        if p.replicas.len() < 2 {
            return invalid(format!(
                "{stream}/{partition} has one copy: only replicated partitions move"
            ));
        }
        let mut distinct = wanted.to_vec();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() != wanted.len() || !(2..=MAX_REPLICAS as usize).contains(&wanted.len()) {
            return invalid(format!(
                "a replicated partition has 2 to {MAX_REPLICAS} distinct replicas"
            ));
        }
        let mut now = p.replicas.clone();
        now.sort_unstable();
        if now == distinct {
            // The same nodes: a move is cancelled, or the preferred leader changes.
            p.replicas = wanted.to_vec();
            if !p.target.is_empty() {
                p.target.clear();
                p.move_id += 1;
            }
            p.in_sync.retain(|n| wanted.contains(n));
            let order = p.replicas.clone();
            p.in_sync.sort_by_key(|n| order.iter().position(|r| r == n));
            return (Outcome::Done, vec![Touched::Stream(stream.to_string())]);
        }
        if let Some(n) = wanted
            .iter()
            .find(|n| !p.replicas.contains(n) && !active.contains(n))
        {
            return invalid(format!(
                "node {n} is not an active member: replicas move to active nodes"
            ));
        }
        if p.target != wanted {
            p.target = wanted.to_vec();
            p.move_id += 1;
        }
        p.moved = true;
        (Outcome::Done, vec![Touched::Stream(stream.to_string())])
    }

    /// Starts moving every replicated partition's copy off node `id` (a node being
    /// removed), to the active node holding fewest copies among those not holding one
    /// already. Partitions already moving, and those for which no node is left, stay.
    fn move_off(&mut self, id: NodeId) -> Vec<Touched> {
        let mut held = self.count_by(|p| {
            let mut all = p.replicas.clone();
            all.extend(p.learners());
            all
        });
        held.remove(&id);
        let mut touched = std::collections::BTreeSet::new();
        for (name, parts) in &mut self.placement {
            for p in parts.iter_mut() {
                // A move under way that keeps (or brings) the node: its target changes.
                let from = if p.target.is_empty() {
                    &p.replicas
                } else {
                    &p.target
                };
                if p.replicas.len() < 2 || !from.contains(&id) {
                    continue;
                }
                let to = held
                    .iter()
                    .filter(|(n, _)| !p.replicas.contains(n) && !p.target.contains(n))
                    .min_by_key(|(n, count)| (**count, **n))
                    .map(|(n, _)| *n);
                let Some(to) = to else {
                    if !p.replicas.contains(&id) {
                        // A move to the node, with nowhere else to go: cancelled.
                        p.target.clear();
                        p.move_id += 1;
                        touched.insert(Touched::Stream(name.clone()));
                    }
                    continue;
                };
                *held.entry(to).or_default() += 1;
                p.target = from
                    .iter()
                    .map(|n| if *n == id { to } else { *n })
                    .collect();
                p.moved = true;
                p.move_id += 1;
                touched.insert(Touched::Stream(name.clone()));
            }
        }
        touched.into_iter().collect()
    }

    /// How many replicated partitions hold a copy on node `id`, or are moving one there.
    pub fn held_by(&self, id: NodeId) -> u64 {
        self.placement
            .values()
            .flatten()
            .filter(|p| {
                p.replicas.len() > 1 && (p.replicas.contains(&id) || p.target.contains(&id))
            })
            .count() as u64
    }

    fn set_in_sync(
        &mut self,
        stream: &str,
        partition: u32,
        epoch: u64,
        in_sync: &[NodeId],
    ) -> (Outcome, Vec<Touched>) {
        let p = match self.placement_mut(stream, partition) {
            Ok(p) => p,
            Err(missing) => return (missing, Vec::new()),
        };
        let Some(leader) = p.leader.filter(|_| p.epoch == epoch) else {
            return (
                Outcome::Invalid(format!(
                    "{stream}/{partition} has no leader in epoch {epoch}"
                )),
                Vec::new(),
            );
        };
        if !in_sync.contains(&leader) || in_sync.iter().any(|n| !p.replicas.contains(n)) {
            return (
                Outcome::Invalid(format!(
                    "the in-sync replicas of {stream}/{partition} are its leader and some of its replicas"
                )),
                Vec::new(),
            );
        }
        let listed: Vec<NodeId> = p
            .replicas
            .iter()
            .copied()
            .filter(|n| in_sync.contains(n))
            .collect();
        if listed == p.in_sync {
            return (Outcome::Done, Vec::new());
        }
        p.in_sync = listed;
        (Outcome::Done, vec![Touched::Stream(stream.to_string())])
    }

    /// Creates `spec` (placed on `on`, or spread when `None`) unless it exists.
    fn create(&mut self, spec: &StreamMeta, on: Option<NodeId>) -> (Outcome, Vec<Touched>) {
        if let Some(existing) = self.streams.get(&spec.name) {
            let stream = existing.clone();
            return (
                Outcome::Stream {
                    stream,
                    existed: true,
                },
                Vec::new(),
            );
        }
        if let Err(why) = check_stream(spec) {
            return (Outcome::Invalid(why), Vec::new());
        }
        let copies = spec.replication_factor as usize;
        let placed = match on {
            None => {
                let up = self.candidates().len();
                if copies > 1 && copies > up {
                    return (
                        Outcome::Invalid(format!(
                            "{copies} copies need {copies} nodes up; {up} are"
                        )),
                        Vec::new(),
                    );
                }
                self.place_new(spec.partitions as usize, copies)
            }
            Some(node) => (0..spec.partitions)
                .map(|_| PartitionPlacement {
                    leader: Some(node),
                    epoch: 0,
                    replicas: vec![node],
                    election: None,
                    in_sync: Vec::new(),
                    target: Vec::new(),
                    moved: false,
                    move_id: 0,
                })
                .collect(),
        };
        self.streams.insert(spec.name.clone(), spec.clone());
        self.placement.insert(spec.name.clone(), placed);
        (
            Outcome::Stream {
                stream: spec.clone(),
                existed: false,
            },
            vec![Touched::Stream(spec.name.clone())],
        )
    }

    /// How many partitions node `id` leads.
    pub fn led_by(&self, id: NodeId) -> u64 {
        self.placement
            .values()
            .flatten()
            .filter(|p| p.leader == Some(id))
            .count() as u64
    }

    /// Whether new partitions may go to node `id` now (see `candidates`).
    pub fn takes_partitions(&self, id: NodeId) -> bool {
        self.candidates().contains(&id)
    }

    /// Nodes that take partitions, by id.
    fn active(&self) -> Vec<NodeId> {
        self.nodes
            .values()
            .filter(|n| n.state == NodeState::Active)
            .map(|n| n.id)
            .collect()
    }

    /// The nodes new partitions may go to: the active ones that are up, taken as those
    /// whose last heartbeat is at most [`LIVENESS_MS`] older than the newest any node
    /// sent (a time every node reads the same from the log, unlike its own clock); every
    /// active node when none is.
    fn candidates(&self) -> Vec<NodeId> {
        let active = self.active();
        let up: Vec<NodeId> = active
            .iter()
            .copied()
            .filter(|id| self.is_live(*id))
            .collect();
        if up.is_empty() { active } else { up }
    }

    /// Whether node `id`'s last heartbeat is at most [`LIVENESS_MS`] older than the
    /// newest any node sent. Measured against the other nodes' heartbeats, not a clock:
    /// when the meta service itself stalls (its leader changes), every node's heartbeats
    /// stall alike and none is taken for down.
    pub fn is_live(&self, id: NodeId) -> bool {
        let newest = self
            .nodes
            .values()
            .map(|n| n.heartbeat_ms)
            .max()
            .unwrap_or(0);
        self.nodes
            .get(&id)
            .is_some_and(|n| n.heartbeat_ms >= newest.saturating_sub(LIVENESS_MS))
    }

    /// How many partitions each node that may take new ones leads.
    fn loads(&self) -> BTreeMap<NodeId, usize> {
        self.count_by(|p| p.leader.into_iter().collect())
    }

    /// For each node that may take new partitions, how many partitions `nodes_of` names it
    /// in.
    fn count_by(
        &self,
        nodes_of: impl Fn(&PartitionPlacement) -> Vec<NodeId>,
    ) -> BTreeMap<NodeId, usize> {
        let mut loads: BTreeMap<NodeId, usize> =
            self.candidates().into_iter().map(|id| (id, 0)).collect();
        for p in self.placement.values().flatten() {
            for node in nodes_of(p) {
                if let Some(n) = loads.get_mut(&node) {
                    *n += 1;
                }
            }
        }
        loads
    }

    /// Places `count` new partitions of `copies` copies each: the leader on the node
    /// leading fewest, the other copies on distinct nodes holding fewest (lowest id first
    /// among equals).
    fn place_new(&self, count: usize, copies: usize) -> Vec<PartitionPlacement> {
        let mut leaders = self.loads();
        let mut held = self.count_by(|p| p.replicas.clone());
        (0..count)
            .map(|_| {
                let leader = least_loaded(&leaders);
                let mut replicas: Vec<NodeId> = leader.into_iter().collect();
                if let Some(l) = leader {
                    *leaders.entry(l).or_default() += 1;
                    *held.entry(l).or_default() += 1;
                }
                while leader.is_some() && replicas.len() < copies {
                    let next = held
                        .iter()
                        .filter(|(id, _)| !replicas.contains(id))
                        .min_by_key(|(id, n)| (**n, **id))
                        .map(|(id, _)| *id);
                    let Some(n) = next else { break };
                    *held.entry(n).or_default() += 1;
                    replicas.push(n);
                }
                PartitionPlacement {
                    leader,
                    epoch: 0,
                    replicas,
                    election: None,
                    in_sync: Vec::new(),
                    target: Vec::new(),
                    moved: false,
                    move_id: 0,
                }
            })
            .collect()
    }

    /// Places every partition that has no leader, or whose leader is no longer a member,
    /// on the least loaded active nodes; each one placed gets a new epoch. A partition whose
    /// node is still a member stays: with one copy per partition its records are on that
    /// node, and moving the partition without them would lose them (moves come with
    /// replication). New partitions go to the least loaded nodes, so leaders even out as
    /// streams are created. Returns the streams whose placement changed.
    fn rebalance(&mut self) -> Vec<Touched> {
        let mut loads = self.loads();
        let mut touched = std::collections::BTreeSet::new();
        for (name, parts) in &mut self.placement {
            for p in parts.iter_mut() {
                // Replicated partitions change leaders by election, among their copies.
                if p.replicas.len() > 1 || p.leader.is_some_and(|l| self.nodes.contains_key(&l)) {
                    continue;
                }
                let leader = least_loaded(&loads);
                let Some(l) = leader else { continue };
                if let Some(n) = loads.get_mut(&l) {
                    *n += 1;
                }
                p.leader = leader;
                p.replicas = vec![l];
                p.epoch += 1;
                touched.insert(Touched::Stream(name.clone()));
            }
        }
        touched.into_iter().collect()
    }
}

impl MetaState {
    /// Whether `stream` has `partition`: the NotFound outcome when it does not.
    /// Whether the partition is led at `epoch`, with no election running (none: an
    /// unreplicated partition's only copy; a replicated one's writer must give its epoch).
    fn led_in(&self, stream: &str, partition: u32, epoch: Option<u64>) -> Result<(), Outcome> {
        let placed = self
            .placement
            .get(stream)
            .and_then(|v| v.get(partition as usize));
        match (epoch, placed) {
            (None, Some(p)) if p.replicas.len() > 1 => Err(Outcome::Invalid(format!(
                "{stream}/{partition} is replicated: only its leader, giving its epoch, \
                 changes its manifest"
            ))),
            (None, _) => Ok(()),
            (Some(epoch), Some(p))
                if p.epoch == epoch && p.leader.is_some() && p.election.is_none() =>
            {
                Ok(())
            }
            (Some(epoch), _) => Err(Outcome::Invalid(format!(
                "{stream}/{partition} is no longer led at epoch {epoch}"
            ))),
        }
    }

    fn has_partition(&self, stream: &str, partition: u32) -> Result<(), Outcome> {
        match self.streams.get(stream) {
            None => Err(Outcome::NotFound(format!("no stream `{stream}`"))),
            Some(s) if partition >= s.partitions => Err(Outcome::NotFound(format!(
                "no partition {partition} in `{stream}`"
            ))),
            Some(_) => Ok(()),
        }
    }

    /// Stores `offsets` of `group` if every one of them may be stored (with `if_absent`,
    /// only those of partitions without one).
    fn commit_offsets(
        &mut self,
        group: &str,
        offsets: &[(String, u32, CommittedOffset)],
        if_absent: bool,
    ) -> (Outcome, Vec<Touched>) {
        if group.is_empty() || group.len() > MAX_GROUP || group.contains('\0') {
            return (
                Outcome::Invalid(format!("a group id is 1 to {MAX_GROUP} bytes without NUL")),
                Vec::new(),
            );
        }
        let (mut fresh, mut bytes) = (0, self.offset_metadata_bytes);
        for (stream, partition, c) in offsets {
            if let Err(missing) = self.has_partition(stream, *partition) {
                return (missing, Vec::new());
            }
            if c.metadata
                .as_ref()
                .is_some_and(|m| m.len() > MAX_OFFSET_METADATA)
            {
                return (
                    Outcome::Invalid(format!(
                        "offset metadata is at most {MAX_OFFSET_METADATA} bytes"
                    )),
                    Vec::new(),
                );
            }
            let known = self
                .offsets
                .get(group)
                .and_then(|g| g.get(stream))
                .and_then(|ps| ps.get(partition));
            match known {
                None => fresh += 1,
                Some(_) if if_absent => continue,
                Some(old) => bytes -= metadata_len(old).min(bytes),
            }
            bytes += metadata_len(c);
        }
        if self.offset_count + fresh > MAX_COMMITTED_OFFSETS {
            return (
                Outcome::Invalid(format!(
                    "the cluster keeps at most {MAX_COMMITTED_OFFSETS} committed offsets"
                )),
                Vec::new(),
            );
        }
        // Repeated partitions in one command count their metadata twice: an overestimate.
        if bytes > MAX_OFFSET_METADATA_TOTAL {
            return (
                Outcome::Invalid(format!(
                    "the cluster keeps at most {MAX_OFFSET_METADATA_TOTAL} bytes of offset metadata"
                )),
                Vec::new(),
            );
        }
        let mut touched = Vec::with_capacity(offsets.len());
        let g = self.offsets.entry(group.to_string()).or_default();
        for (stream, partition, c) in offsets {
            let parts = g.entry(stream.clone()).or_default();
            if if_absent && parts.contains_key(partition) {
                continue;
            }
            self.offset_metadata_bytes += metadata_len(c);
            match parts.insert(*partition, c.clone()) {
                None => self.offset_count += 1,
                Some(old) => self.offset_metadata_bytes -= metadata_len(&old),
            }
            touched.push(Touched::Offset(
                group.to_string(),
                stream.clone(),
                *partition,
            ));
        }
        g.retain(|_, parts| !parts.is_empty());
        if g.is_empty() {
            self.offsets.remove(group);
        }
        (Outcome::Done, touched)
    }

    /// Drops every group's offsets in `stream` (a deleted stream): what changed.
    fn forget_offsets_of_stream(&mut self, stream: &str) -> Vec<Touched> {
        let mut touched = Vec::new();
        let mut bytes = 0;
        self.offsets.retain(|group, streams| {
            if let Some(parts) = streams.remove(stream) {
                bytes += parts.values().map(metadata_len).sum::<usize>();
                touched.extend(
                    parts
                        .into_keys()
                        .map(|p| Touched::Offset(group.clone(), stream.to_string(), p)),
                );
            }
            !streams.is_empty()
        });
        self.offset_count -= touched.len();
        self.offset_metadata_bytes -= bytes;
        touched
    }

    /// The committed offset of `group` in a partition.
    pub fn committed(&self, group: &str, stream: &str, partition: u32) -> Option<&CommittedOffset> {
        self.offsets.get(group)?.get(stream)?.get(&partition)
    }
}

/// Longest consumer group id, in bytes.
pub const MAX_GROUP: usize = 255;
/// Longest note kept with a committed offset (Kafka's `offset.metadata.max.bytes`).
pub const MAX_OFFSET_METADATA: usize = 4096;
/// Most committed offsets the cluster keeps, over every group: each node holds them all in
/// memory (about 150 bytes each without metadata, so 40 MiB at the bound).
pub const MAX_COMMITTED_OFFSETS: usize = 262_144;
/// Most bytes of metadata kept with committed offsets, over every group (Kafka clients
/// usually send none).
pub const MAX_OFFSET_METADATA_TOTAL: usize = 32 * 1024 * 1024;

/// A node whose last heartbeat is this much older than the newest is taken for down: new
/// partitions avoid it, and the replicated partitions it leads elect another leader. Nodes
/// send one every 250 ms, so this is six missed in a row.
pub const LIVENESS_MS: i64 = 1_500;

/// Most partitions one stream may have. Checked when a command applies, so every node
/// refuses the same commands (a command that allocated without bound would take down every
/// node that replays it).
pub const MAX_PARTITIONS: u32 = 65_536;
/// Longest stream name, in bytes.
pub const MAX_NAME: usize = 249;
/// Most copies of a partition.
pub const MAX_REPLICAS: u32 = 7;
/// Largest leader epoch: the journal stores it as a Kafka leader epoch (`i32`).
pub const MAX_EPOCH: u64 = i32::MAX as u64;

/// Why a new stream cannot be created as asked.
fn check_stream(spec: &StreamMeta) -> Result<(), String> {
    if spec.name.is_empty() || spec.name.len() > MAX_NAME || spec.name.contains('\0') {
        return Err(format!(
            "a stream name is 1 to {MAX_NAME} bytes without NUL"
        ));
    }
    if spec.partitions == 0 || spec.partitions > MAX_PARTITIONS {
        return Err(format!("a stream has 1 to {MAX_PARTITIONS} partitions"));
    }
    if spec.replication_factor == 0 || spec.replication_factor > MAX_REPLICAS {
        return Err(format!("a stream has 1 to {MAX_REPLICAS} copies"));
    }
    if let Some(min) = spec.min_in_sync
        && (min == 0 || min > spec.replication_factor)
    {
        return Err(format!(
            "min.insync.replicas is 1 to the stream's {} copies, not {min}",
            spec.replication_factor
        ));
    }
    Ok(())
}

fn least_loaded(loads: &BTreeMap<NodeId, usize>) -> Option<NodeId> {
    loads
        .iter()
        .min_by_key(|&(id, n)| (*n, *id))
        .map(|(&id, _)| id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: NodeId) -> Command {
        Command::AddNode {
            id,
            rpc: format!("127.0.0.1:{}", 9000 + id),
            listeners: BTreeMap::new(),
            at_ms: 0,
        }
    }

    fn stream(name: &str, partitions: u32) -> Command {
        Command::CreateStream(StreamMeta {
            name: name.into(),
            partitions,
            storage_class: "segment".into(),
            replication_factor: 1,
            retention_bytes: None,
            retention_ms: None,
            min_in_sync: None,
        })
    }

    fn leaders(s: &MetaState) -> BTreeMap<NodeId, usize> {
        let mut out = BTreeMap::new();
        for p in s.placement.values().flatten() {
            *out.entry(p.leader.unwrap_or(u64::MAX)).or_default() += 1;
        }
        out
    }

    #[test]
    fn partitions_spread_evenly_and_never_leave_a_member_holding_their_data() {
        let mut s = MetaState::default();
        // Created before any node registered: no leader until one does.
        s.apply(&stream("early", 2));
        assert_eq!(leaders(&s), BTreeMap::from([(u64::MAX, 2)]));
        s.apply(&node(1));
        assert_eq!(leaders(&s), BTreeMap::from([(1, 2)]));
        assert!(s.placement["early"].iter().all(|p| p.epoch == 1));
        s.apply(&node(2));
        s.apply(&node(3));
        // Joining moves nothing: the partitions' records are on node 1.
        assert_eq!(leaders(&s), BTreeMap::from([(1, 2)]));
        for i in 0..10 {
            s.apply(&stream(&format!("t{i}"), 3));
        }
        assert_eq!(leaders(&s), BTreeMap::from([(1, 11), (2, 11), (3, 10)]));
        // A node that leads partitions is only marked leaving: it keeps them, gets none
        // new, and stays leaving when it registers again.
        let (outcome, _) = s.apply(&Command::RemoveNode { id: 2 });
        assert_eq!(
            outcome,
            Outcome::Leaving {
                partitions: 11,
                copies: 0
            }
        );
        s.apply(&node(2));
        assert_eq!(s.nodes[&2].state, NodeState::Leaving);
        s.apply(&stream("late", 4));
        assert_eq!(leaders(&s), BTreeMap::from([(1, 13), (2, 11), (3, 12)]));
        // The last active node stays.
        let mut alone = MetaState::default();
        alone.apply(&node(9));
        assert!(matches!(
            alone.apply(&Command::RemoveNode { id: 9 }).0,
            Outcome::Invalid(_)
        ));
        // A node leading nothing is removed at once.
        s.apply(&node(4));
        assert_eq!(s.apply(&Command::RemoveNode { id: 4 }).0, Outcome::Removed);
        assert!(!s.nodes.contains_key(&4));
        // Adopted streams stay on the node that holds them.
        let adopt = Command::AdoptStream {
            stream: match stream("old", 3) {
                Command::CreateStream(m) => m,
                _ => unreachable!(),
            },
            node: 3,
        };
        s.apply(&adopt);
        assert!(s.placement["old"].iter().all(|p| p.leader == Some(3)));
    }

    fn replicated(name: &str, partitions: u32, copies: u32) -> Command {
        match stream(name, partitions) {
            Command::CreateStream(mut m) => {
                m.replication_factor = copies;
                Command::CreateStream(m)
            }
            _ => unreachable!(),
        }
    }

    fn report(epoch: u64, node: NodeId, last_epoch: i32, end_offset: u64) -> Command {
        Command::ReportReplica {
            stream: "r".into(),
            partition: 0,
            epoch,
            node,
            end: ReplicaEnd {
                last_epoch,
                end_offset,
            },
        }
    }

    fn begin(epoch: u64, preferred: Option<NodeId>) -> Command {
        Command::BeginElection {
            stream: "r".into(),
            partition: 0,
            epoch,
            preferred,
            replicas: None,
            move_id: 0,
        }
    }

    #[test]
    fn replicated_partitions_spread_copies_over_distinct_nodes() {
        let mut s = MetaState::default();
        for id in 1..=3 {
            s.apply(&node(id));
        }
        assert!(matches!(
            s.apply(&replicated("big", 1, 4)).0,
            Outcome::Invalid(_)
        ));
        s.apply(&replicated("r3", 6, 3));
        let mut copies: BTreeMap<NodeId, usize> = BTreeMap::new();
        for p in &s.placement["r3"] {
            let mut distinct = p.replicas.clone();
            distinct.sort_unstable();
            distinct.dedup();
            assert_eq!(distinct.len(), 3, "three copies on three nodes: {p:?}");
            assert_eq!(p.leader, Some(p.replicas[0]));
            for r in &p.replicas {
                *copies.entry(*r).or_default() += 1;
            }
        }
        assert_eq!(copies, BTreeMap::from([(1, 6), (2, 6), (3, 6)]));
        assert_eq!(leaders(&s), BTreeMap::from([(1, 2), (2, 2), (3, 2)]));
        // Two copies of each: spread too.
        s.apply(&replicated("r2", 3, 2));
        for p in &s.placement["r2"] {
            assert_eq!(p.replicas.len(), 2);
            assert_ne!(p.replicas[0], p.replicas[1]);
        }
        // A member leaving does not take a replicated partition's records away by
        // placement: leaders change by election only.
        let before = s.placement["r3"].clone();
        s.apply(&Command::Rebalance);
        assert_eq!(s.placement["r3"], before);
    }

    #[test]
    fn the_leader_of_the_current_epoch_reports_the_in_sync_replicas() {
        let mut s = MetaState::default();
        for id in 1..=3 {
            s.apply(&node(id));
        }
        s.apply(&replicated("r", 1, 3));
        let set = |epoch, in_sync: &[NodeId]| Command::SetInSync {
            stream: "r".into(),
            partition: 0,
            epoch,
            in_sync: in_sync.to_vec(),
        };
        let p = &s.placement["r"][0];
        assert_eq!(
            (p.leader, p.in_sync()),
            (Some(1), vec![1]),
            "the leader alone at first"
        );
        assert!(p.under_replicated());
        assert_eq!(s.apply(&set(0, &[3, 1, 2])).0, Outcome::Done);
        assert_eq!(
            s.placement["r"][0].in_sync(),
            vec![1, 2, 3],
            "in replica order"
        );
        assert!(!s.placement["r"][0].under_replicated());
        for (bad, why) in [
            (set(1, &[1]), "no leader in epoch 1"),
            (set(0, &[2, 3]), "without the leader"),
            (set(0, &[1, 9]), "not a replica"),
        ] {
            assert!(matches!(s.apply(&bad).0, Outcome::Invalid(_)), "{why}");
        }
        assert_eq!(s.placement["r"][0].in_sync(), vec![1, 2, 3]);
        // An election forgets the report: no leader, none in sync; the new leader alone.
        s.apply(&begin(1, None));
        assert!(s.placement["r"][0].in_sync().is_empty());
        s.apply(&report(1, 2, 0, 10));
        s.apply(&report(1, 3, 0, 10));
        let p = &s.placement["r"][0];
        assert_eq!((p.leader, p.in_sync()), (Some(2), vec![2]));
        assert!(
            matches!(s.apply(&set(0, &[1, 2])).0, Outcome::Invalid(_)),
            "the old leader's report is stale"
        );
    }

    #[test]
    fn elections_pick_the_most_up_to_date_log_of_a_majority() {
        let mut s = MetaState::default();
        for id in 1..=3 {
            s.apply(&node(id));
        }
        s.apply(&replicated("r", 1, 3));
        let first = s.placement["r"][0].clone();
        assert_eq!((first.epoch, first.leader), (0, Some(1)));
        // Only the next epoch may begin.
        assert!(matches!(s.apply(&begin(2, None)).0, Outcome::Invalid(_)));
        assert_eq!(s.apply(&begin(1, None)).0, Outcome::Done);
        assert_eq!(s.placement["r"][0].leader, None, "no leader while electing");
        assert!(
            matches!(s.apply(&report(0, 2, 0, 10)).0, Outcome::Invalid(_)),
            "stale epoch"
        );
        assert!(
            matches!(s.apply(&report(1, 7, 0, 10)).0, Outcome::Invalid(_)),
            "not a replica"
        );
        s.apply(&report(1, 2, 0, 10));
        assert_eq!(
            s.placement["r"][0].leader, None,
            "one of three is no majority"
        );
        // Node 3 has a longer log of the same epoch: it leads.
        s.apply(&report(1, 3, 0, 12));
        let p = &s.placement["r"][0];
        assert_eq!((p.epoch, p.leader, p.election.clone()), (1, Some(3), None));
        // A late report changes nothing.
        assert!(matches!(
            s.apply(&report(1, 1, 0, 99)).0,
            Outcome::Invalid(_)
        ));
        assert_eq!(s.placement["r"][0].leader, Some(3));
        // A newer last epoch beats a longer log; the preferred replica wins ties only.
        s.apply(&begin(2, Some(1)));
        s.apply(&report(2, 1, 0, 50));
        s.apply(&report(2, 2, 1, 20));
        assert_eq!(s.placement["r"][0].leader, Some(2));
        s.apply(&begin(3, Some(1)));
        s.apply(&report(3, 2, 2, 30));
        s.apply(&report(3, 1, 2, 30));
        assert_eq!(
            s.placement["r"][0].leader,
            Some(1),
            "preferred and as up to date"
        );
        // One copy: never elected away from its records.
        s.apply(&replicated("one", 1, 1));
        assert!(matches!(
            s.apply(&Command::BeginElection {
                stream: "one".into(),
                partition: 0,
                epoch: 1,
                preferred: None,
                replicas: None,
                move_id: 0,
            })
            .0,
            Outcome::Invalid(_)
        ));
    }

    fn move_to(replicas: &[NodeId]) -> Command {
        Command::MoveReplicas {
            stream: "r".into(),
            partition: 0,
            replicas: replicas.to_vec(),
        }
    }

    #[test]
    fn a_move_adds_learners_and_ends_with_the_election_of_its_replicas() {
        let mut s = MetaState::default();
        for id in 1..=5 {
            s.apply(&node(id));
        }
        s.apply(&replicated("r", 1, 3));
        let before = s.placement["r"][0].clone();
        assert_eq!(before.replicas, vec![1, 2, 3]);
        // Refused: a duplicate, one copy, too many, an unknown node.
        for bad in [
            &[1, 1, 2][..],
            &[4][..],
            &[1, 2, 3, 4, 5, 6, 7, 8][..],
            &[1, 2, 9][..],
        ] {
            assert!(
                matches!(s.apply(&move_to(bad)).0, Outcome::Invalid(_)),
                "{bad:?}"
            );
        }
        assert_eq!(s.placement["r"][0], before);
        // Nodes 4 and 5 copy the log as learners; the replicas (and majority) stay.
        assert_eq!(s.apply(&move_to(&[4, 2, 5])).0, Outcome::Done);
        let p = &s.placement["r"][0];
        assert_eq!(p.replicas, vec![1, 2, 3]);
        assert_eq!(p.learners(), vec![4, 5]);
        assert_eq!(s.held_by(4), 1);
        // A learner does not vote.
        assert!(matches!(
            s.apply(&report(1, 4, 0, 10)).0,
            Outcome::Invalid(_)
        ));
        // Only the target ends the move; an ordinary election keeps the replicas and the
        // move.
        let ending = |replicas: Vec<NodeId>, move_id: u64| Command::BeginElection {
            stream: "r".into(),
            partition: 0,
            epoch: 1,
            preferred: Some(4),
            replicas: Some(replicas),
            move_id,
        };
        let first = s.placement["r"][0].move_id;
        assert!(matches!(
            s.apply(&ending(vec![4, 5, 2], first)).0,
            Outcome::Invalid(_)
        ));
        // Cancelled and asked for again: the same target, another move; the end of the
        // first is refused (its learners' copies may have been emptied meanwhile).
        s.apply(&move_to(&[1, 2, 3]));
        s.apply(&move_to(&[4, 2, 5]));
        let again = s.placement["r"][0].move_id;
        assert_eq!(again, first + 2);
        assert!(matches!(
            s.apply(&ending(vec![4, 2, 5], first)).0,
            Outcome::Invalid(_)
        ));
        assert_eq!(s.apply(&ending(vec![4, 2, 5], again)).0, Outcome::Done);
        let p = &s.placement["r"][0];
        assert_eq!((p.replicas.clone(), p.epoch), (vec![4, 2, 5], 1));
        assert!(p.target.is_empty() && p.leader.is_none());
        // The old replicas 1 and 3 no longer vote; two of the new three elect.
        assert!(matches!(
            s.apply(&report(1, 1, 0, 10)).0,
            Outcome::Invalid(_)
        ));
        s.apply(&report(1, 2, 0, 10));
        s.apply(&report(1, 4, 0, 10));
        assert_eq!(s.placement["r"][0].leader, Some(4));
        // The same nodes in another order change the preferred leader only; the current
        // replicas cancel a move.
        assert_eq!(s.apply(&move_to(&[2, 4, 5])).0, Outcome::Done);
        assert_eq!(s.placement["r"][0].replicas, vec![2, 4, 5]);
        assert_eq!(s.placement["r"][0].leader, Some(4));
        s.apply(&move_to(&[2, 4, 1]));
        assert_eq!(s.placement["r"][0].learners(), vec![1]);
        s.apply(&move_to(&[2, 4, 5]));
        assert!(s.placement["r"][0].target.is_empty());
        // A partition with one copy does not move.
        s.apply(&stream("single", 1));
        let single = Command::MoveReplicas {
            stream: "single".into(),
            partition: 0,
            replicas: vec![1, 2],
        };
        assert!(matches!(s.apply(&single).0, Outcome::Invalid(_)));
    }

    #[test]
    fn removing_a_node_moves_its_copies_to_the_others() {
        let mut s = MetaState::default();
        for id in 1..=4 {
            s.apply(&node(id));
        }
        s.apply(&replicated("r", 4, 3));
        let on_3 = s.held_by(3);
        assert!(on_3 > 0);
        let led = s.led_by(3);
        let (outcome, _) = s.apply(&Command::RemoveNode { id: 3 });
        assert_eq!(
            outcome,
            Outcome::Leaving {
                partitions: led,
                copies: on_3
            }
        );
        for p in &s.placement["r"] {
            if p.replicas.contains(&3) {
                // Node 3's place goes to the only other node without a copy.
                let spare = (1..=4)
                    .find(|n| !p.replicas.contains(n))
                    .expect("four nodes, three copies");
                let want: Vec<NodeId> = p
                    .replicas
                    .iter()
                    .map(|n| if *n == 3 { spare } else { *n })
                    .collect();
                assert_eq!(p.target, want);
            } else {
                assert!(p.target.is_empty());
            }
        }
        // Each move ends with its election; then the node holds nothing and goes.
        for i in 0..4 {
            let p = s.placement["r"][i].clone();
            if p.target.is_empty() {
                continue;
            }
            let end = Command::BeginElection {
                stream: "r".into(),
                partition: i as u32,
                epoch: p.epoch + 1,
                preferred: None,
                replicas: Some(p.target.clone()),
                move_id: p.move_id,
            };
            assert_eq!(s.apply(&end).0, Outcome::Done);
        }
        assert_eq!(s.held_by(3), 0);
        assert_eq!(s.apply(&Command::RemoveNode { id: 3 }).0, Outcome::Removed);
        // A node in a move's target is replaced in it.
        s.apply(&node(5));
        let p = s.placement["r"][0].clone();
        let outsider = (1..=5)
            .find(|n| *n != 3 && !p.replicas.contains(n))
            .expect("a node without a copy");
        let mut target = p.replicas.clone();
        target[1] = outsider;
        s.apply(&Command::MoveReplicas {
            stream: "r".into(),
            partition: 0,
            replicas: target.clone(),
        });
        assert!(matches!(
            s.apply(&Command::RemoveNode { id: outsider }).0,
            Outcome::Leaving { .. }
        ));
        // No node is left without a copy: the move to the leaving node is cancelled.
        let now = &s.placement["r"][0];
        assert!(now.target.is_empty(), "{now:?}");
        assert_eq!(s.held_by(outsider), 0);
        // With no node left to take them, copies stay and the node stays leaving.
        let mut three = MetaState::default();
        for id in 1..=3 {
            three.apply(&node(id));
        }
        three.apply(&replicated("r", 1, 3));
        assert!(matches!(
            three.apply(&Command::RemoveNode { id: 2 }).0,
            Outcome::Leaving { copies: 1, .. }
        ));
        assert!(three.placement["r"][0].target.is_empty());
    }

    #[test]
    fn new_partitions_avoid_a_node_whose_heartbeats_stopped() {
        let mut s = MetaState::default();
        for id in 1..=3 {
            s.apply(&node(id));
            s.apply(&Command::Heartbeat { id, at_ms: 100_000 });
        }
        s.apply(&stream("a", 3));
        assert_eq!(leaders(&s), BTreeMap::from([(1, 1), (2, 1), (3, 1)]));
        // Nodes 1 and 2 beat on; node 3 stopped 11 s ago.
        for id in 1..=2 {
            s.apply(&Command::Heartbeat { id, at_ms: 111_000 });
        }
        s.apply(&stream("b", 4));
        assert_eq!(leaders(&s), BTreeMap::from([(1, 3), (2, 3), (3, 1)]));
        // It beats again: it takes partitions again.
        s.apply(&Command::Heartbeat {
            id: 3,
            at_ms: 112_000,
        });
        s.apply(&stream("c", 1));
        assert_eq!(leaders(&s), BTreeMap::from([(1, 3), (2, 3), (3, 2)]));
    }

    #[test]
    fn creating_twice_answers_the_first_and_streams_only_grow() {
        let mut s = MetaState::default();
        s.apply(&node(1));
        let (first, touched) = s.apply(&stream("a", 2));
        assert!(matches!(first, Outcome::Stream { existed: false, .. }));
        assert_eq!(touched, vec![Touched::Stream("a".into())]);
        let (again, touched) = s.apply(&stream("a", 5));
        assert!(
            matches!(again, Outcome::Stream { existed: true, ref stream } if stream.partitions == 2)
        );
        assert!(touched.is_empty());
        let shrink = Command::AddPartitions {
            name: "a".into(),
            total: 1,
        };
        assert!(matches!(s.apply(&shrink).0, Outcome::Invalid(_)));
        let grow = Command::AddPartitions {
            name: "a".into(),
            total: 4,
        };
        assert_eq!(s.apply(&grow).0, Outcome::Done);
        assert_eq!(s.placement["a"].len(), 4);
        assert_eq!(
            s.apply(&Command::DeleteStream { name: "a".into() }).0,
            Outcome::Done
        );
        assert!(s.placement.is_empty());
    }

    #[test]
    fn oversized_or_badly_named_streams_are_refused_by_every_node_alike() {
        let mut s = MetaState::default();
        s.apply(&node(1));
        for bad in [stream("huge", u32::MAX), stream("a\0b", 1), stream("", 1)] {
            assert!(matches!(s.apply(&bad).0, Outcome::Invalid(_)), "{bad:?}");
        }
        s.apply(&stream("a", 1));
        let grow = Command::AddPartitions {
            name: "a".into(),
            total: u32::MAX,
        };
        assert!(matches!(s.apply(&grow).0, Outcome::Invalid(_)));
        let outside = Command::AppendManifest {
            stream: "a".into(),
            partition: 5,
            entry: ManifestEntry {
                base_offset: 0,
                last_offset: 1,
                key: "k".into(),
                size: 1,
                max_timestamp: 0,
                index_len: 0,
            },
            epoch: None,
        };
        assert!(matches!(s.apply(&outside).0, Outcome::NotFound(_)));
        assert_eq!(s.streams.len(), 1);
    }

    #[test]
    fn manifests_only_grow_forward_and_trim_from_the_start() {
        let mut s = MetaState::default();
        s.apply(&node(1));
        s.apply(&stream("a", 1));
        let entry = |base, last| ManifestEntry {
            base_offset: base,
            last_offset: last,
            key: format!("a/0/{base}"),
            size: 10,
            max_timestamp: 0,
            index_len: 2,
        };
        let append = |e| Command::AppendManifest {
            stream: "a".into(),
            partition: 0,
            entry: e,
            epoch: None,
        };
        assert_eq!(s.apply(&append(entry(0, 9))).0, Outcome::Done);
        assert_eq!(s.apply(&append(entry(10, 19))).0, Outcome::Done);
        for refused in [entry(12, 19), entry(5, 30), entry(15, 30)] {
            assert!(matches!(s.apply(&append(refused)).0, Outcome::Invalid(_)));
        }
        // The last segment uploaded again replaces its entry (the newer object).
        let again = ManifestEntry {
            key: "a/0/10-again".into(),
            ..entry(10, 19)
        };
        assert_eq!(s.apply(&append(again.clone())).0, Outcome::Done);
        assert_eq!(s.manifests["a"][&0], vec![entry(0, 9), again.clone()]);
        assert!(matches!(
            s.apply(&append(entry(0, 9))).0,
            Outcome::Invalid(_)
        ));
        s.apply(&Command::TrimManifest {
            stream: "a".into(),
            partition: 0,
            offset: 10,
            epoch: None,
        });
        assert_eq!(s.manifests["a"][&0], vec![again]);
    }

    #[test]
    fn only_the_leader_of_the_current_epoch_writes_a_manifest() {
        let mut s = MetaState::default();
        s.apply(&node(1));
        s.apply(&stream("a", 1));
        let epoch = s.placement["a"][0].epoch;
        let entry = ManifestEntry {
            base_offset: 0,
            last_offset: 9,
            key: "a/0/0".into(),
            size: 10,
            max_timestamp: 0,
            index_len: 2,
        };
        let append = |epoch| Command::AppendManifest {
            stream: "a".into(),
            partition: 0,
            entry: entry.clone(),
            epoch: Some(epoch),
        };
        let trim = |epoch| Command::TrimManifest {
            stream: "a".into(),
            partition: 0,
            offset: 10,
            epoch: Some(epoch),
        };
        assert!(matches!(s.apply(&append(epoch + 1)).0, Outcome::Invalid(_)));
        assert!(!s.manifests.contains_key("a"));
        assert_eq!(s.apply(&append(epoch)).0, Outcome::Done);
        assert!(matches!(s.apply(&trim(epoch + 1)).0, Outcome::Invalid(_)));
        assert_eq!(s.manifests["a"][&0].len(), 1);
        // While an election runs, nobody leads: the old leader's writes are refused.
        s.placement.get_mut("a").expect("placed")[0].election = Some(Election::default());
        assert!(matches!(s.apply(&trim(epoch)).0, Outcome::Invalid(_)));
        s.placement.get_mut("a").expect("placed")[0].election = None;
        assert_eq!(s.apply(&trim(epoch)).0, Outcome::Done);
        assert!(s.manifests["a"][&0].is_empty());
        // A replicated partition's manifest is never written without an epoch (a copy
        // that took itself for the only one).
        s.placement.get_mut("a").expect("placed")[0].replicas = vec![1, 2, 3];
        let unfenced = Command::AppendManifest {
            stream: "a".into(),
            partition: 0,
            entry: entry.clone(),
            epoch: None,
        };
        assert!(matches!(s.apply(&unfenced).0, Outcome::Invalid(_)));
        assert_eq!(s.apply(&append(epoch)).0, Outcome::Done);
    }

    fn at(offset: i64) -> CommittedOffset {
        CommittedOffset {
            offset,
            leader_epoch: -1,
            metadata: None,
        }
    }

    fn commit(group: &str, offsets: &[(&str, u32, i64)]) -> Command {
        Command::CommitOffsets {
            group: group.into(),
            offsets: offsets
                .iter()
                .map(|&(s, p, o)| (s.to_string(), p, at(o)))
                .collect(),
            if_absent: false,
        }
    }

    #[test]
    fn committed_offsets_apply_whole_or_not_at_all_and_go_with_their_stream() {
        let mut s = MetaState::default();
        s.apply(&node(1));
        s.apply(&stream("a", 2));
        s.apply(&stream("b", 1));
        let (o, t) = s.apply(&commit("g", &[("a", 0, 5), ("a", 1, 7), ("b", 0, 1)]));
        assert_eq!(o, Outcome::Done);
        assert_eq!(t.len(), 3);
        assert_eq!(s.committed("g", "a", 1), Some(&at(7)));
        assert_eq!(s.offset_count, 3);
        // One partition that does not exist refuses the whole commit.
        let (o, _) = s.apply(&commit("g", &[("a", 0, 9), ("a", 2, 1)]));
        assert!(matches!(o, Outcome::NotFound(_)), "{o:?}");
        assert_eq!(s.committed("g", "a", 0), Some(&at(5)));
        let (o, _) = s.apply(&commit("g\0x", &[("a", 0, 9)]));
        assert!(matches!(o, Outcome::Invalid(_)), "{o:?}");
        let long = CommittedOffset {
            metadata: Some("m".repeat(MAX_OFFSET_METADATA + 1)),
            ..at(1)
        };
        let (o, _) = s.apply(&Command::CommitOffsets {
            group: "g".into(),
            offsets: vec![("a".into(), 0, long)],
            if_absent: false,
        });
        assert!(matches!(o, Outcome::Invalid(_)), "{o:?}");
        // Overwriting does not count twice; a deleted stream takes its offsets along.
        s.apply(&commit("g", &[("a", 0, 6)]));
        s.apply(&commit("h", &[("a", 0, 2)]));
        assert_eq!(s.offset_count, 4);
        let (_, t) = s.apply(&Command::DeleteStream { name: "a".into() });
        assert!(t.contains(&Touched::Offset("h".into(), "a".into(), 0)));
        assert_eq!(s.offset_count, 1);
        assert!(!s.offsets.contains_key("h"));
        let (_, t) = s.apply(&Command::DeleteOffsets { group: "g".into() });
        assert_eq!(t, vec![Touched::Offset("g".into(), "b".into(), 0)]);
        assert_eq!(s.offset_count, 0);
        assert!(s.offsets.is_empty());
    }

    #[test]
    fn offsets_handed_over_leave_newer_commits_alone() {
        let mut s = MetaState::default();
        s.apply(&node(1));
        s.apply(&stream("a", 2));
        s.apply(&commit("g", &[("a", 0, 500)]));
        let Command::CommitOffsets { group, offsets, .. } =
            commit("g", &[("a", 0, 400), ("a", 1, 3)])
        else {
            unreachable!()
        };
        let (o, t) = s.apply(&Command::CommitOffsets {
            group,
            offsets,
            if_absent: true,
        });
        assert_eq!(o, Outcome::Done);
        assert_eq!(t, vec![Touched::Offset("g".into(), "a".into(), 1)]);
        assert_eq!(s.committed("g", "a", 0), Some(&at(500)));
        assert_eq!(s.committed("g", "a", 1), Some(&at(3)));
        assert_eq!(s.offset_count, 2);
    }

    #[test]
    fn offset_metadata_is_bounded_in_bytes_over_the_whole_cluster() {
        let mut s = MetaState::default();
        s.apply(&node(1));
        s.apply(&stream("a", MAX_PARTITIONS));
        let noted = CommittedOffset {
            metadata: Some("m".repeat(MAX_OFFSET_METADATA)),
            ..at(1)
        };
        let fits = MAX_OFFSET_METADATA_TOTAL / MAX_OFFSET_METADATA;
        let mut group = 0;
        let mut left = fits;
        while left > 0 {
            let n = left.min(MAX_PARTITIONS as usize);
            let offsets = (0..n as u32)
                .map(|p| ("a".to_string(), p, noted.clone()))
                .collect();
            let (o, _) = s.apply(&Command::CommitOffsets {
                group: format!("g{group}"),
                offsets,
                if_absent: false,
            });
            assert_eq!(o, Outcome::Done);
            left -= n;
            group += 1;
        }
        assert_eq!(s.offset_metadata_bytes, MAX_OFFSET_METADATA_TOTAL);
        let one_more = vec![("a".to_string(), 0, noted.clone())];
        let (o, _) = s.apply(&Command::CommitOffsets {
            group: "full".into(),
            offsets: one_more.clone(),
            if_absent: false,
        });
        assert!(matches!(o, Outcome::Invalid(_)), "{o:?}");
        // Replacing a note with one of the same size still fits; dropping a group frees.
        let (o, _) = s.apply(&Command::CommitOffsets {
            group: "g0".into(),
            offsets: one_more.clone(),
            if_absent: false,
        });
        assert_eq!(o, Outcome::Done);
        s.apply(&Command::DeleteOffsets { group: "g0".into() });
        assert!(s.offset_metadata_bytes < MAX_OFFSET_METADATA_TOTAL);
        let (o, _) = s.apply(&Command::CommitOffsets {
            group: "full".into(),
            offsets: one_more,
            if_absent: false,
        });
        assert_eq!(o, Outcome::Done);
        s.apply(&Command::DeleteStream { name: "a".into() });
        assert_eq!((s.offset_count, s.offset_metadata_bytes), (0, 0));
    }

    #[test]
    fn committed_offsets_are_bounded_over_the_whole_cluster() {
        let mut s = MetaState::default();
        s.apply(&node(1));
        s.apply(&stream("a", MAX_PARTITIONS));
        let groups = MAX_COMMITTED_OFFSETS / MAX_PARTITIONS as usize;
        let all: Vec<(String, u32, CommittedOffset)> = (0..MAX_PARTITIONS)
            .map(|p| ("a".to_string(), p, at(1)))
            .collect();
        for g in 0..groups {
            let (o, _) = s.apply(&Command::CommitOffsets {
                group: format!("g{g}"),
                offsets: all.clone(),
                if_absent: false,
            });
            assert_eq!(o, Outcome::Done);
        }
        assert_eq!(s.offset_count, MAX_COMMITTED_OFFSETS);
        let (o, _) = s.apply(&commit("one-more", &[("a", 0, 1)]));
        assert!(matches!(o, Outcome::Invalid(_)), "{o:?}");
        // Moving an offset already kept is still allowed at the bound.
        let (o, _) = s.apply(&commit("g0", &[("a", 0, 2)]));
        assert_eq!(o, Outcome::Done);
    }
}
