//! The group coordinator: consumer groups with generations and rebalances (on join, leave
//! and session timeout; assignment by the clients' own assignors through the leader), and
//! committed offsets stored durably in the node's key-value store.
//!
//! Group membership lives in memory: after a restart members rejoin (their heartbeats get
//! UNKNOWN_MEMBER_ID), and their committed offsets are where they were.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use parking_lot::Mutex;
use strata_frontend::Shutdown;
use strata_frontend::seams::positions::{self, Position, PositionStore};
use strata_frontend::seams::{StoreError, StreamPosition};
use tokio::sync::oneshot;

use crate::code;

pub mod api;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl State {
    fn name(self) -> &'static str {
        match self {
            State::Empty => "Empty",
            State::PreparingRebalance => "PreparingRebalance",
            State::CompletingRebalance => "CompletingRebalance",
            State::Stable => "Stable",
        }
    }
}

#[derive(Debug)]
struct Member {
    client_id: String,
    /// The client's IP address, as Kafka shows it (`/10.0.0.1`).
    client_host: String,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    last_seen: Instant,
    pending_join: Option<oneshot::Sender<JoinGroupResponse>>,
    pending_sync: Option<oneshot::Sender<(i16, Bytes)>>,
    /// Its protocol names and metadata, counted in the coordinator's total while it exists.
    metered: Metered,
}

/// Bytes counted in a shared total while this exists.
#[derive(Debug)]
struct Metered {
    bytes: usize,
    total: Arc<AtomicUsize>,
}

impl Metered {
    fn set(&mut self, bytes: usize) {
        self.total.fetch_add(bytes, Ordering::Relaxed);
        self.total.fetch_sub(self.bytes, Ordering::Relaxed);
        self.bytes = bytes;
    }
}

impl Drop for Metered {
    fn drop(&mut self) {
        self.total.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

#[derive(Debug)]
struct Group {
    state: State,
    generation: i32,
    protocol_type: String,
    protocol: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// A rebalance completes at the latest then (members that did not rejoin leave).
    rebalance_deadline: Instant,
    /// ... and not before then when the group was empty (more members may come).
    initial_until: Instant,
}

impl Group {
    fn new() -> Self {
        let now = Instant::now();
        Group {
            state: State::Empty,
            generation: 0,
            protocol_type: String::new(),
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            rebalance_deadline: now,
            initial_until: now,
        }
    }
}

/// A stored committed offset: a consumer position as every frontend keeps them.
pub(crate) type Committed = Position;

/// The coordinator of every group.
#[derive(Debug)]
pub struct Coordinator {
    /// Committed offsets, served alike by every node (the coordinator may move).
    positions: Arc<dyn PositionStore>,
    initial_delay: Duration,
    groups: Mutex<HashMap<String, Group>>,
    next_member: AtomicU64,
    /// Bytes of protocol metadata all members hold.
    metadata_bytes: Arc<AtomicUsize>,
}

/// The longest group id kept (Kafka bounds it by its storage format; 255 is plenty).
const MAX_GROUP_ID: usize = 255;
/// Whether a group id may name a group: at most [`MAX_GROUP_ID`] bytes, and a valid
/// consumer of [`positions`] (not empty, no NUL).
fn valid_group_id(group: &str) -> bool {
    group.len() <= MAX_GROUP_ID && positions::valid_consumer(group)
}
/// The longest metadata kept with a committed offset (Kafka's
/// `offset.metadata.max.bytes`).
const MAX_OFFSET_METADATA: usize = 4096;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

impl Coordinator {
    pub fn new(positions: Arc<dyn PositionStore>, initial_delay: Duration) -> Self {
        Coordinator {
            positions,
            initial_delay,
            groups: Mutex::new(HashMap::new()),
            next_member: AtomicU64::new(1),
            metadata_bytes: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Whether `group` may keep committed offsets: one that has some may, a new one while
    /// fewer than `max` groups of the whole cluster have. (Two new groups committing at
    /// once on different nodes may both pass at `max - 1`: the store's own bound on
    /// offsets holds regardless.)
    fn may_store_offsets(&self, group: &str, max: usize) -> bool {
        self.positions.has_consumer(group) || self.positions.consumer_count() < max
    }

    /// Where committed offsets are kept.
    pub(crate) fn positions(&self) -> &dyn PositionStore {
        self.positions.as_ref()
    }

    /// The groups that have committed offsets in the store.
    fn offset_group_ids(&self) -> impl Iterator<Item = String> {
        self.positions.consumers().into_iter()
    }

    /// Stores `offsets` of `group` durably, atomically while they fit in one meta command;
    /// the Kafka error code when it fails.
    pub(crate) async fn store_offsets(
        &self,
        group: &str,
        offsets: Vec<StreamPosition>,
    ) -> Result<(), i16> {
        if offsets.is_empty() {
            return Ok(());
        }
        match self.positions.commit(group, offsets).await {
            Ok(()) => Ok(()),
            Err(e) => {
                tracing::warn!(group, error = %e, "cannot store committed offsets");
                Err(offsets_error(&e))
            }
        }
    }

    /// Starts a rebalance: every member must join again.
    fn prepare_rebalance(&self, g: &mut Group, now: Instant) {
        let was_empty = g.state == State::Empty || g.members.is_empty();
        let longest = g
            .members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or(Duration::from_secs(60));
        g.state = State::PreparingRebalance;
        g.rebalance_deadline = now + longest;
        g.initial_until = if was_empty {
            now + self.initial_delay
        } else {
            now
        };
        for m in g.members.values_mut() {
            // Followers waiting in SyncGroup learn that a new rebalance started.
            if let Some(tx) = m.pending_sync.take() {
                let _ = tx.send((code::REBALANCE_IN_PROGRESS, Bytes::new()));
            }
        }
    }

    /// Completes the join phase when every member has rejoined (after the initial delay),
    /// or when the rebalance timeout has passed (members that did not rejoin are removed).
    fn try_complete_join(g: &mut Group, now: Instant) {
        if g.state != State::PreparingRebalance {
            return;
        }
        let all = g.members.values().all(|m| m.pending_join.is_some());
        if !((all && now >= g.initial_until) || now >= g.rebalance_deadline) {
            return;
        }
        g.members.retain(|_, m| m.pending_join.is_some());
        g.generation += 1;
        if g.members.is_empty() {
            g.state = State::Empty;
            g.leader = None;
            g.protocol = None;
            return;
        }
        // The first protocol of the leader's list that every member supports.
        if g.leader.as_ref().is_none_or(|l| !g.members.contains_key(l)) {
            g.leader = g.members.keys().next().cloned();
        }
        let leader = g.leader.clone().unwrap_or_default();
        let protocol = g.members.get(&leader).and_then(|m| {
            m.protocols
                .iter()
                .map(|(name, _)| name)
                .find(|name| {
                    g.members
                        .values()
                        .all(|o| o.protocols.iter().any(|(n, _)| n == *name))
                })
                .cloned()
        });
        g.protocol = protocol.clone();
        g.state = State::CompletingRebalance;
        let all_members: Vec<JoinGroupResponseMember> = g
            .members
            .iter()
            .map(|(id, m)| {
                let metadata = m
                    .protocols
                    .iter()
                    .find(|(n, _)| Some(n) == protocol.as_ref())
                    .map(|(_, md)| md.clone())
                    .unwrap_or_default();
                JoinGroupResponseMember::default()
                    .with_member_id(s(id))
                    .with_metadata(metadata)
            })
            .collect();
        let generation = g.generation;
        let protocol_type = g.protocol_type.clone();
        for (id, m) in g.members.iter_mut() {
            m.assignment = Bytes::new();
            m.last_seen = now;
            let Some(tx) = m.pending_join.take() else {
                continue;
            };
            let mut resp = JoinGroupResponse::default()
                .with_generation_id(generation)
                .with_protocol_type(Some(s(&protocol_type)))
                .with_protocol_name(protocol.as_deref().map(s))
                .with_leader(s(&leader))
                .with_member_id(s(id));
            if *id == leader {
                resp = resp.with_members(all_members.clone());
            }
            let _ = tx.send(resp);
        }
    }

    /// Background work: session timeouts and rebalance deadlines, until shutdown.
    pub async fn sweep(&self, mut shutdown: Shutdown) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                _ = shutdown.wait() => return,
            }
            let c = self;
            let now = Instant::now();
            let mut groups = c.groups.lock();
            for g in groups.values_mut() {
                let expired: Vec<String> = g
                    .members
                    .iter()
                    .filter(|(_, m)| {
                        m.pending_join.is_none()
                            && now.duration_since(m.last_seen) > m.session_timeout
                    })
                    .map(|(id, _)| id.clone())
                    .collect();
                if !expired.is_empty() {
                    for id in &expired {
                        tracing::info!(member = id, "group member session expired");
                        g.members.remove(id);
                    }
                    if g.members.is_empty() {
                        g.state = State::Empty;
                        g.generation += 1;
                    } else {
                        c.prepare_rebalance(g, now);
                    }
                }
                Self::try_complete_join(g, now);
            }
        }
    }
}

/// The Kafka error for a failed change of committed offsets: retriable while the cluster's
/// store cannot take writes (the client retries, as after a coordinator move).
fn offsets_error(e: &StoreError) -> i16 {
    match e {
        StoreError::Unavailable(_) => code::COORDINATOR_NOT_AVAILABLE,
        StoreError::UnknownStream(_) => code::UNKNOWN_TOPIC_OR_PARTITION,
        // The cluster-wide bound on committed offsets.
        StoreError::Invalid(_) => code::POLICY_VIOLATION,
        _ => code::KAFKA_STORAGE_ERROR,
    }
}

/// A partition and its committed offset, if any.
pub(crate) type PartitionOffset = (i32, Option<Committed>);

/// Committed offsets of `group`: for the listed topics and partitions, or all stored.
pub(crate) fn committed(
    store: &dyn PositionStore,
    group: &str,
    wanted: Option<Vec<(String, Vec<i32>)>>,
) -> Vec<(String, Vec<PartitionOffset>)> {
    if !positions::valid_consumer(group) {
        return Vec::new();
    }
    match wanted {
        Some(topics) => topics
            .into_iter()
            .map(|(topic, parts)| {
                let found = parts
                    .into_iter()
                    .map(|p| (p, store.get(group, &topic, p)))
                    .collect();
                (topic, found)
            })
            .collect(),
        None => {
            let mut by_topic: BTreeMap<String, Vec<PartitionOffset>> = BTreeMap::new();
            for (topic, p, position) in store.scan(group) {
                by_topic.entry(topic).or_default().push((p, Some(position)));
            }
            by_topic.into_iter().collect()
        }
    }
}

impl Coordinator {
    async fn delete_group(&self, id: &str) -> i16 {
        if !valid_group_id(id) {
            return code::INVALID_GROUP_ID;
        }
        let in_memory = match self.groups.lock().get(id) {
            Some(g) if !g.members.is_empty() => return code::GROUP_NOT_EMPTY,
            Some(_) => true,
            None => false,
        };
        if !in_memory && !self.positions.has_consumer(id) {
            return code::GROUP_ID_NOT_FOUND;
        }
        if let Err(e) = self.positions.forget(id).await {
            tracing::warn!(group = id, error = %e, "cannot delete committed offsets");
            return offsets_error(&e);
        }
        // A member that joined meanwhile keeps the group (its offsets are gone, as they
        // would be had it joined just after).
        {
            let mut groups = self.groups.lock();
            if groups.get(id).is_some_and(|g| g.members.is_empty()) {
                groups.remove(id);
            }
        }
        tracing::info!(group = id, "group deleted");
        code::NONE
    }
}

/// A group as the admin API shows it.
#[derive(Debug, Clone)]
pub(crate) struct GroupSnapshot {
    pub state: &'static str,
    pub generation: i32,
    pub protocol_type: String,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub members: Vec<MemberSnapshot>,
}

/// A member as the admin API shows it.
#[derive(Debug, Clone)]
pub(crate) struct MemberSnapshot {
    pub member_id: String,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub assignment: Bytes,
}

impl Coordinator {
    /// Every group with members or committed offsets, by name.
    pub(crate) fn group_ids(&self) -> std::collections::BTreeSet<String> {
        let mut ids: std::collections::BTreeSet<String> =
            self.groups.lock().keys().cloned().collect();
        ids.extend(self.offset_group_ids());
        ids
    }

    /// The membership of `group`; an `Empty` one when only its offsets are stored.
    pub(crate) fn snapshot(&self, group: &str) -> GroupSnapshot {
        let groups = self.groups.lock();
        let Some(g) = groups.get(group) else {
            return GroupSnapshot {
                state: State::Empty.name(),
                generation: 0,
                protocol_type: String::new(),
                protocol: None,
                leader: None,
                members: Vec::new(),
            };
        };
        GroupSnapshot {
            state: g.state.name(),
            generation: g.generation,
            protocol_type: g.protocol_type.clone(),
            protocol: g.protocol.clone(),
            leader: g.leader.clone(),
            members: g
                .members
                .iter()
                .map(|(id, m)| MemberSnapshot {
                    member_id: id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    session_timeout: m.session_timeout,
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    /// Committed offsets of `group`, every topic and partition stored.
    pub(crate) fn committed_offsets(&self, group: &str) -> Vec<(String, Vec<PartitionOffset>)> {
        committed(self.positions.as_ref(), group, None)
    }
}
