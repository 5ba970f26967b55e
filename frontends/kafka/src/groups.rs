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
use serde::{Deserialize, Serialize};
use strata_frontend::Shutdown;
use strata_frontend::seams::{StateOp, StateSpace};
use tokio::sync::oneshot;

use crate::frontend::Kafka;
use crate::guard;
use crate::handlers::{Session, code};
use strata_frontend::security::kafka_acl::{Operation, ResourceType};

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

/// Stored committed offset.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Committed {
    pub offset: i64,
    leader_epoch: i32,
    pub metadata: Option<String>,
}

/// The coordinator of every group.
#[derive(Debug)]
pub struct Coordinator {
    kv: StateSpace,
    initial_delay: Duration,
    groups: Mutex<HashMap<String, Group>>,
    next_member: AtomicU64,
    /// Groups with committed offsets (read from the store at first use): bounded like
    /// the groups themselves.
    offset_groups: Mutex<Option<std::collections::HashSet<String>>>,
    /// Bytes of protocol metadata all members hold.
    metadata_bytes: Arc<AtomicUsize>,
}

/// The longest group id kept (Kafka bounds it by its storage format; 255 is plenty).
const MAX_GROUP_ID: usize = 255;
/// Whether a group id may name a group: not empty, at most [`MAX_GROUP_ID`] bytes, and
/// without NUL (which separates the parts of the keys its offsets are stored under; a
/// group `a\0b` would read as group `a` after a restart).
fn valid_group_id(group: &str) -> bool {
    !group.is_empty() && group.len() <= MAX_GROUP_ID && !group.contains('\0')
}
/// The longest metadata kept with a committed offset (Kafka's
/// `offset.metadata.max.bytes`).
const MAX_OFFSET_METADATA: usize = 4096;

/// The prefix of every offset `group` has committed, or `None` for an id no group can have
/// (a NUL in it would make it the prefix of another group's keys: `a\0topic` is group
/// `a`'s offsets of `topic`).
fn offsets_prefix(group: &str) -> Option<Vec<u8>> {
    valid_group_id(group).then(|| format!("o/{group}\0").into_bytes())
}

fn offset_key(group: &str, topic: &str, partition: i32) -> Vec<u8> {
    let mut k = format!("o/{group}\0{topic}\0").into_bytes();
    k.extend_from_slice(&partition.to_be_bytes());
    k
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

impl Coordinator {
    pub fn new(kv: StateSpace, initial_delay: Duration) -> Self {
        Coordinator {
            kv,
            initial_delay,
            groups: Mutex::new(HashMap::new()),
            next_member: AtomicU64::new(1),
            offset_groups: Mutex::new(None),
            metadata_bytes: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Whether `group` may keep committed offsets: one that has some may, a new one while
    /// fewer than `max` groups have. The group counts once its offsets are stored
    /// ([`Coordinator::stored_offsets`]).
    fn may_store_offsets(&self, group: &str, max: usize) -> bool {
        let mut known = self.offset_groups.lock();
        let known = self.known_groups(&mut known);
        known.contains(group) || known.len() < max
    }

    /// The groups that have committed offsets in the store (keys `o/{group}\0...`).
    fn offset_group_ids(&self) -> impl Iterator<Item = String> {
        self.kv
            .scan_prefix(b"o/")
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(key, _)| {
                let end = key[2..].iter().position(|&b| b == 0)?;
                Some(String::from_utf8_lossy(&key[2..2 + end]).into_owned())
            })
    }

    /// Counts `group` among the groups with stored offsets.
    fn stored_offsets(&self, group: &str) {
        let mut known = self.offset_groups.lock();
        self.known_groups(&mut known).insert(group.to_string());
    }

    fn known_groups<'a>(
        &self,
        known: &'a mut Option<std::collections::HashSet<String>>,
    ) -> &'a mut std::collections::HashSet<String> {
        known.get_or_insert_with(|| self.offset_group_ids().collect())
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
    pub async fn sweep(k: Arc<Kafka>, mut shutdown: Shutdown) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                _ = shutdown.wait() => return,
            }
            let c = &k.groups;
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

/// Checks a member and generation; the error code when they do not fit.
fn check_member(g: &Group, member: &str, generation: i32) -> Result<(), i16> {
    if !g.members.contains_key(member) {
        return Err(code::UNKNOWN_MEMBER_ID);
    }
    if generation != g.generation {
        return Err(code::ILLEGAL_GENERATION);
    }
    Ok(())
}

pub async fn join(
    k: &Kafka,
    session: &Session,
    r: JoinGroupRequest,
    version: i16,
) -> JoinGroupResponse {
    let c = &k.groups;
    let fail = |code: i16, member: &str| {
        k.metrics.error("JoinGroup", code);
        JoinGroupResponse::default()
            .with_error_code(code)
            .with_generation_id(-1)
            .with_member_id(s(member))
    };
    if let Err(c) = guard::on_group(k, session, Operation::Read, &r.group_id) {
        return fail(c, &r.member_id);
    }
    if r.group_id.is_empty() || r.protocols.is_empty() {
        return fail(code::INCONSISTENT_GROUP_PROTOCOL, &r.member_id);
    }
    let cfg = &k.config;
    if !valid_group_id(&r.group_id) {
        return fail(code::INVALID_GROUP_ID, &r.member_id);
    }
    if !(cfg.group_min_session_timeout_ms..=cfg.group_max_session_timeout_ms)
        .contains(&i64::from(r.session_timeout_ms))
    {
        return fail(code::INVALID_SESSION_TIMEOUT, &r.member_id);
    }
    let metadata: usize = r
        .protocols
        .iter()
        .map(|p| p.name.len() + p.metadata.len())
        .sum();
    if metadata > cfg.max_member_metadata_bytes {
        k.metrics
            .errors
            .with_label_values(&["JoinGroup", "member_metadata"])
            .inc();
        return fail(code::POLICY_VIOLATION, &r.member_id);
    }
    if c.metadata_bytes.load(Ordering::Relaxed) + metadata > cfg.max_group_metadata_bytes {
        k.metrics
            .errors
            .with_label_values(&["JoinGroup", "group_metadata"])
            .inc();
        return fail(code::POLICY_VIOLATION, &r.member_id);
    }
    let rx = {
        let now = Instant::now();
        let mut groups = c.groups.lock();
        if !groups.contains_key(r.group_id.as_str()) && groups.len() >= cfg.max_groups {
            // Groups without members make room; otherwise the node is full.
            let idle = groups
                .iter()
                .find(|(_, g)| g.members.is_empty())
                .map(|(id, _)| id.clone());
            match idle {
                Some(id) => {
                    groups.remove(&id);
                }
                None => {
                    k.metrics
                        .errors
                        .with_label_values(&["JoinGroup", "max_groups"])
                        .inc();
                    return fail(code::POLICY_VIOLATION, &r.member_id);
                }
            }
        }
        if r.member_id.is_empty()
            && groups
                .get(r.group_id.as_str())
                .is_some_and(|g| g.members.len() >= cfg.max_group_members)
        {
            return fail(code::GROUP_MAX_SIZE_REACHED, &r.member_id);
        }
        let g = groups
            .entry(r.group_id.to_string())
            .or_insert_with(Group::new);
        if !g.members.is_empty() && g.protocol_type != r.protocol_type.as_str() {
            return fail(code::INCONSISTENT_GROUP_PROTOCOL, &r.member_id);
        }
        let member_id = if r.member_id.is_empty() {
            format!(
                "{}-{}",
                if r.protocol_type.is_empty() {
                    "member"
                } else {
                    r.protocol_type.as_str()
                },
                c.next_member.fetch_add(1, Ordering::Relaxed)
            )
        } else if g.members.contains_key(r.member_id.as_str()) {
            r.member_id.to_string()
        } else {
            return fail(code::UNKNOWN_MEMBER_ID, &r.member_id);
        };
        g.protocol_type = r.protocol_type.to_string();
        let (tx, rx) = oneshot::channel();
        let member = g
            .members
            .entry(member_id.clone())
            .or_insert_with(|| Member {
                client_id: String::new(),
                client_host: String::new(),
                session_timeout: Duration::ZERO,
                rebalance_timeout: Duration::ZERO,
                protocols: Vec::new(),
                assignment: Bytes::new(),
                last_seen: now,
                pending_join: None,
                pending_sync: None,
                metered: Metered {
                    bytes: 0,
                    total: c.metadata_bytes.clone(),
                },
            });
        member.metered.set(metadata);
        member.client_id.clone_from(&session.client_id);
        member.client_host = session
            .peer
            .map_or_else(String::new, |p| format!("/{}", p.ip()));
        member.session_timeout = Duration::from_millis(r.session_timeout_ms.max(1) as u64);
        member.rebalance_timeout = Duration::from_millis(if version >= 1 {
            r.rebalance_timeout_ms.max(1) as u64
        } else {
            r.session_timeout_ms.max(1) as u64
        });
        member.protocols = r
            .protocols
            .iter()
            .map(|p| (p.name.to_string(), p.metadata.clone()))
            .collect();
        member.last_seen = now;
        member.pending_join = Some(tx);
        if g.state != State::PreparingRebalance {
            c.prepare_rebalance(g, now);
        }
        Coordinator::try_complete_join(g, now);
        rx
    };
    match rx.await {
        Ok(resp) => resp,
        // The member was removed (left, or replaced) before the rebalance completed.
        Err(_) => fail(code::UNKNOWN_MEMBER_ID, &r.member_id),
    }
}

pub async fn sync(k: &Kafka, session: &Session, r: SyncGroupRequest) -> SyncGroupResponse {
    let c = &k.groups;
    let reply = |code: i16, assignment: Bytes, g: Option<(&str, Option<&str>)>| {
        k.metrics.error("SyncGroup", code);
        let mut resp = SyncGroupResponse::default()
            .with_error_code(code)
            .with_assignment(assignment);
        if let Some((ptype, pname)) = g {
            resp = resp
                .with_protocol_type(Some(s(ptype)))
                .with_protocol_name(pname.map(s));
        }
        resp
    };
    if let Err(c) = guard::on_group(k, session, Operation::Read, &r.group_id) {
        return reply(c, Bytes::new(), None);
    }
    let rx = {
        let mut groups = c.groups.lock();
        let Some(g) = groups.get_mut(r.group_id.as_str()) else {
            return reply(code::UNKNOWN_MEMBER_ID, Bytes::new(), None);
        };
        if let Err(code) = check_member(g, &r.member_id, r.generation_id) {
            return reply(code, Bytes::new(), None);
        }
        let ptype = g.protocol_type.clone();
        let pname = g.protocol.clone();
        match g.state {
            State::PreparingRebalance | State::Empty => {
                return reply(code::REBALANCE_IN_PROGRESS, Bytes::new(), None);
            }
            State::Stable => {
                let a = g.members[r.member_id.as_str()].assignment.clone();
                return reply(code::NONE, a, Some((&ptype, pname.as_deref())));
            }
            State::CompletingRebalance => {}
        }
        if g.leader.as_deref() == Some(r.member_id.as_str()) {
            for a in &r.assignments {
                if let Some(m) = g.members.get_mut(a.member_id.as_str()) {
                    m.assignment = a.assignment.clone();
                }
            }
            g.state = State::Stable;
            for m in g.members.values_mut() {
                if let Some(tx) = m.pending_sync.take() {
                    let _ = tx.send((code::NONE, m.assignment.clone()));
                }
            }
            let a = g.members[r.member_id.as_str()].assignment.clone();
            return reply(code::NONE, a, Some((&ptype, pname.as_deref())));
        }
        let (tx, rx) = oneshot::channel();
        if let Some(m) = g.members.get_mut(r.member_id.as_str()) {
            m.pending_sync = Some(tx);
        }
        (rx, ptype, pname)
    };
    let (rx, ptype, pname) = rx;
    match rx.await {
        Ok((code, assignment)) => reply(code, assignment, Some((&ptype, pname.as_deref()))),
        Err(_) => reply(code::REBALANCE_IN_PROGRESS, Bytes::new(), None),
    }
}

pub fn heartbeat(k: &Kafka, session: &Session, r: HeartbeatRequest) -> HeartbeatResponse {
    if let Err(c) = guard::on_group(k, session, Operation::Read, &r.group_id) {
        k.metrics.error("Heartbeat", c);
        return HeartbeatResponse::default().with_error_code(c);
    }
    let mut groups = k.groups.groups.lock();
    let code = match groups.get_mut(r.group_id.as_str()) {
        None => code::UNKNOWN_MEMBER_ID,
        Some(g) => match check_member(g, &r.member_id, r.generation_id) {
            Err(code) => code,
            Ok(()) => {
                if let Some(m) = g.members.get_mut(r.member_id.as_str()) {
                    m.last_seen = Instant::now();
                }
                if g.state == State::PreparingRebalance {
                    code::REBALANCE_IN_PROGRESS
                } else {
                    code::NONE
                }
            }
        },
    };
    k.metrics.error("Heartbeat", code);
    HeartbeatResponse::default().with_error_code(code)
}

pub fn leave(k: &Kafka, session: &Session, r: LeaveGroupRequest) -> LeaveGroupResponse {
    if let Err(c) = guard::on_group(k, session, Operation::Read, &r.group_id) {
        k.metrics.error("LeaveGroup", c);
        return LeaveGroupResponse::default().with_error_code(c);
    }
    let c = &k.groups;
    let ids: Vec<String> = if r.members.is_empty() {
        vec![r.member_id.to_string()]
    } else {
        r.members.iter().map(|m| m.member_id.to_string()).collect()
    };
    let mut groups = c.groups.lock();
    let Some(g) = groups.get_mut(r.group_id.as_str()) else {
        k.metrics.error("LeaveGroup", code::UNKNOWN_MEMBER_ID);
        return LeaveGroupResponse::default().with_error_code(code::UNKNOWN_MEMBER_ID);
    };
    let mut results = Vec::new();
    let mut removed = false;
    for id in &ids {
        let code = if g.members.remove(id).is_some() {
            removed = true;
            code::NONE
        } else {
            code::UNKNOWN_MEMBER_ID
        };
        results.push(
            MemberResponse::default()
                .with_member_id(s(id))
                .with_error_code(code),
        );
    }
    if removed {
        let now = Instant::now();
        if g.members.is_empty() {
            g.state = State::Empty;
            g.generation += 1;
            g.leader = None;
        } else {
            c.prepare_rebalance(g, now);
            Coordinator::try_complete_join(g, now);
        }
    }
    let top = if r.members.is_empty() {
        results.first().map_or(code::NONE, |m| m.error_code)
    } else {
        code::NONE
    };
    k.metrics.error("LeaveGroup", top);
    LeaveGroupResponse::default()
        .with_error_code(top)
        .with_members(if r.members.is_empty() {
            Vec::new()
        } else {
            results
        })
}

pub fn offset_commit(k: &Kafka, session: &Session, r: OffsetCommitRequest) -> OffsetCommitResponse {
    let c = &k.groups;
    let group = r.group_id.to_string();
    // Committing takes Read on the group, and Read on each topic; only partitions that
    // exist are kept, with at most MAX_OFFSET_METADATA bytes of metadata. A partition
    // refused gets its own code; the others are committed.
    let refusals: Vec<Vec<Option<i16>>> = r
        .topics
        .iter()
        .map(|t| {
            let partitions = guard::may_read(k, session, &t.name).and_then(|()| {
                k.storage
                    .catalog
                    .stream(&t.name)
                    .map(|s| s.partitions)
                    .ok_or(code::UNKNOWN_TOPIC_OR_PARTITION)
            });
            t.partitions
                .iter()
                .map(|p| match partitions {
                    Err(c) => Some(c),
                    Ok(n) if p.partition_index < 0 || p.partition_index as u32 >= n => {
                        Some(code::UNKNOWN_TOPIC_OR_PARTITION)
                    }
                    Ok(_)
                        if p.committed_metadata
                            .as_ref()
                            .is_some_and(|m| m.len() > MAX_OFFSET_METADATA) =>
                    {
                        Some(code::OFFSET_METADATA_TOO_LARGE)
                    }
                    Ok(_) => None,
                })
                .collect()
        })
        .collect();
    let check = if let Err(c) = guard::on_group(k, session, Operation::Read, &group) {
        Err(c)
    } else if !valid_group_id(&group) {
        Err(code::INVALID_GROUP_ID)
    } else if !c.may_store_offsets(&group, k.config.max_groups) {
        k.metrics
            .errors
            .with_label_values(&["OffsetCommit", "max_groups"])
            .inc();
        Err(code::POLICY_VIOLATION)
    } else if r.generation_id_or_member_epoch < 0 {
        // A commit from outside the group (an admin tool's, a standalone consumer's), as
        // Kafka: only while the group has no members, so it cannot rewind theirs.
        match c.groups.lock().get(&group) {
            Some(g) if !g.members.is_empty() => Err(code::UNKNOWN_MEMBER_ID),
            _ => Ok(()),
        }
    } else {
        let groups = c.groups.lock();
        match groups.get(&group) {
            None => Err(code::UNKNOWN_MEMBER_ID),
            // As Kafka: members of the current generation may commit while a rebalance is
            // being prepared (their revocation commits), not while it completes.
            Some(g) if g.state == State::CompletingRebalance => Err(code::REBALANCE_IN_PROGRESS),
            Some(g) => check_member(g, &r.member_id, r.generation_id_or_member_epoch),
        }
    };
    let mut ops = Vec::new();
    if check.is_ok() {
        for (t, refused) in r.topics.iter().zip(&refusals) {
            for (p, _) in t
                .partitions
                .iter()
                .zip(refused)
                .filter(|(_, r)| r.is_none())
            {
                let value = serde_json::to_vec(&Committed {
                    offset: p.committed_offset,
                    leader_epoch: p.committed_leader_epoch,
                    metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
                })
                .unwrap_or_default();
                ops.push(StateOp::Put(
                    offset_key(&group, &t.name, p.partition_index),
                    value,
                ));
            }
        }
    }
    // One atomic, durable write for the whole request.
    let any = !ops.is_empty();
    let stored = match check {
        Err(code) => Err(code),
        Ok(()) => c.kv.write(&ops).map_err(|e| {
            tracing::error!(group, error = %e, "cannot store committed offsets");
            code::KAFKA_STORAGE_ERROR
        }),
    };
    if stored.is_ok() && any {
        c.stored_offsets(&group);
    }
    let code = stored.err().unwrap_or(code::NONE);
    k.metrics.error("OffsetCommit", code);
    OffsetCommitResponse::default().with_topics(
        r.topics
            .iter()
            .zip(&refusals)
            .map(|(t, refused)| {
                OffsetCommitResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(
                        t.partitions
                            .iter()
                            .zip(refused)
                            .map(|(p, refused)| {
                                let code = match (code, refused) {
                                    (code::NONE, Some(c)) => {
                                        k.metrics.error("OffsetCommit", *c);
                                        *c
                                    }
                                    (code, _) => code,
                                };
                                OffsetCommitResponsePartition::default()
                                    .with_partition_index(p.partition_index)
                                    .with_error_code(code)
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}

/// A partition and its committed offset, if any.
pub(crate) type PartitionOffset = (i32, Option<Committed>);

/// Committed offsets of `group`: for the listed topics and partitions, or all stored.
pub(crate) fn committed(
    kv: &StateSpace,
    group: &str,
    wanted: Option<Vec<(String, Vec<i32>)>>,
) -> Vec<(String, Vec<PartitionOffset>)> {
    let decode = |v: &[u8]| serde_json::from_slice::<Committed>(v).ok();
    match wanted {
        Some(topics) => topics
            .into_iter()
            .map(|(topic, parts)| {
                let found = parts
                    .into_iter()
                    .map(|p| {
                        let v = kv.get(&offset_key(group, &topic, p)).ok().flatten();
                        (p, v.as_deref().and_then(decode))
                    })
                    .collect();
                (topic, found)
            })
            .collect(),
        None => {
            let Some(prefix) = offsets_prefix(group) else {
                return Vec::new();
            };
            let mut by_topic: BTreeMap<String, Vec<PartitionOffset>> = BTreeMap::new();
            for (key, value) in kv.scan_prefix(&prefix).unwrap_or_default() {
                let rest = &key[prefix.len()..];
                let Some(split) = rest.iter().position(|&b| b == 0) else {
                    continue;
                };
                let topic = String::from_utf8_lossy(&rest[..split]).to_string();
                let Ok(p) = <[u8; 4]>::try_from(&rest[split + 1..]) else {
                    continue;
                };
                by_topic
                    .entry(topic)
                    .or_default()
                    .push((i32::from_be_bytes(p), decode(&value)));
            }
            by_topic.into_iter().collect()
        }
    }
}

/// One topic of an OffsetFetch answer: its partitions' offsets, or the partitions asked for
/// and the error they all get.
type Found = Result<Vec<PartitionOffset>, (Vec<i32>, i16)>;

/// The committed offsets of `group` a connection may see: topics it may not describe are
/// left out of a full listing and refused (`Err`) when asked for by name.
fn visible_offsets(
    k: &Kafka,
    session: &Session,
    group: &str,
    wanted: Option<Vec<(String, Vec<i32>)>>,
) -> Vec<(String, Found)> {
    let Some(wanted) = wanted else {
        return committed(&k.groups.kv, group, None)
            .into_iter()
            .filter(|(t, _)| guard::may_describe(k, session, t).is_ok())
            .map(|(t, parts)| (t, Ok(parts)))
            .collect();
    };
    let (allowed, refused): (Vec<_>, Vec<_>) = wanted
        .into_iter()
        .map(|(t, parts)| (guard::may_describe(k, session, &t), t, parts))
        .partition(|(ok, _, _)| ok.is_ok());
    let mut out: Vec<_> = committed(
        &k.groups.kv,
        group,
        Some(allowed.into_iter().map(|(_, t, p)| (t, p)).collect()),
    )
    .into_iter()
    .map(|(t, parts)| (t, Ok(parts)))
    .collect();
    for (why, t, parts) in refused {
        let error = why.err().unwrap_or(code::TOPIC_AUTHORIZATION_FAILED);
        k.metrics.error("OffsetFetch", error);
        out.push((t, Err((parts, error))));
    }
    out
}

/// A partition of an OffsetFetch answer: its committed offset, or the error.
fn fetched_partition(
    p: i32,
    c: Result<Option<Committed>, i16>,
) -> (i32, i64, i32, Option<StrBytes>, i16) {
    match c {
        Ok(c) => (
            p,
            c.as_ref().map_or(-1, |c| c.offset),
            c.as_ref().map_or(-1, |c| c.leader_epoch),
            c.and_then(|c| c.metadata).map(StrBytes::from_string),
            code::NONE,
        ),
        Err(e) => (p, -1, -1, None, e),
    }
}

/// Every partition of one topic's answer, from what `visible_offsets` found.
fn topic_partitions(found: Found) -> Vec<(i32, i64, i32, Option<StrBytes>, i16)> {
    match found {
        Ok(parts) => parts
            .into_iter()
            .map(|(p, c)| fetched_partition(p, Ok(c)))
            .collect(),
        Err((parts, e)) => parts
            .into_iter()
            .map(|p| fetched_partition(p, Err(e)))
            .collect(),
    }
}

pub fn offset_fetch(
    k: &Kafka,
    session: &Session,
    r: OffsetFetchRequest,
    version: i16,
) -> OffsetFetchResponse {
    if version >= 8 {
        let groups = r
            .groups
            .iter()
            .map(|g| {
                if let Err(c) = guard::on_group(k, session, Operation::Describe, &g.group_id) {
                    k.metrics.error("OffsetFetch", c);
                    return OffsetFetchResponseGroup::default()
                        .with_group_id(g.group_id.clone())
                        .with_error_code(c);
                }
                let wanted = g.topics.as_ref().map(|ts| {
                    ts.iter()
                        .map(|t| (t.name.to_string(), t.partition_indexes.clone()))
                        .collect()
                });
                let topics = visible_offsets(k, session, &g.group_id, wanted)
                    .into_iter()
                    .map(|(topic, found)| {
                        OffsetFetchResponseTopics::default()
                            .with_name(TopicName(s(&topic)))
                            .with_partitions(
                                topic_partitions(found)
                                    .into_iter()
                                    .map(|(p, offset, epoch, metadata, error)| {
                                        OffsetFetchResponsePartitions::default()
                                            .with_partition_index(p)
                                            .with_committed_offset(offset)
                                            .with_committed_leader_epoch(epoch)
                                            .with_metadata(metadata)
                                            .with_error_code(error)
                                    })
                                    .collect(),
                            )
                    })
                    .collect();
                OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id.clone())
                    .with_topics(topics)
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    if let Err(c) = guard::on_group(k, session, Operation::Describe, &r.group_id) {
        k.metrics.error("OffsetFetch", c);
        return OffsetFetchResponse::default().with_error_code(c);
    }
    let wanted = r.topics.as_ref().map(|ts| {
        ts.iter()
            .map(|t| (t.name.to_string(), t.partition_indexes.clone()))
            .collect()
    });
    let topics = visible_offsets(k, session, &r.group_id, wanted)
        .into_iter()
        .map(|(topic, found)| {
            OffsetFetchResponseTopic::default()
                .with_name(TopicName(s(&topic)))
                .with_partitions(
                    topic_partitions(found)
                        .into_iter()
                        .map(|(p, offset, epoch, metadata, error)| {
                            OffsetFetchResponsePartition::default()
                                .with_partition_index(p)
                                .with_committed_offset(offset)
                                .with_committed_leader_epoch(epoch)
                                .with_metadata(metadata)
                                .with_error_code(error)
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetFetchResponse::default().with_topics(topics)
}

/// ListGroups: every group with Describe on the cluster, otherwise those the connection
/// may describe.
pub fn list(k: &Kafka, session: &Session) -> ListGroupsResponse {
    let all = guard::allowed(
        k,
        session,
        Operation::Describe,
        ResourceType::Cluster,
        strata_frontend::security::kafka_acl::CLUSTER,
    );
    // Listed under the coordinator's lock, authorized outside it.
    let listed: Vec<ListedGroup> = k
        .groups
        .groups
        .lock()
        .iter()
        .map(|(id, g)| {
            ListedGroup::default()
                .with_group_id(GroupId(s(id)))
                .with_protocol_type(s(&g.protocol_type))
                .with_group_state(s(g.state.name()))
                .with_group_type(s("classic"))
        })
        .collect();
    ListGroupsResponse::default().with_groups(
        listed
            .into_iter()
            .filter(|g| {
                all || guard::allowed(
                    k,
                    session,
                    Operation::Describe,
                    ResourceType::Group,
                    &g.group_id,
                )
            })
            .collect(),
    )
}

pub fn describe(k: &Kafka, session: &Session, r: DescribeGroupsRequest) -> DescribeGroupsResponse {
    // Authorized before the coordinator's lock is taken.
    let allowed: Vec<bool> = r
        .groups
        .iter()
        .map(|id| guard::on_group(k, session, Operation::Describe, id).is_ok())
        .collect();
    let groups = k.groups.groups.lock();
    DescribeGroupsResponse::default().with_groups(
        r.groups
            .into_iter()
            .zip(allowed)
            .map(|(id, allowed)| match groups.get(id.as_str()) {
                _ if !allowed => {
                    k.metrics
                        .error("DescribeGroups", code::GROUP_AUTHORIZATION_FAILED);
                    DescribedGroup::default()
                        .with_group_id(id)
                        .with_error_code(code::GROUP_AUTHORIZATION_FAILED)
                }
                None => DescribedGroup::default()
                    .with_group_id(id)
                    .with_group_state(s("Dead")),
                Some(g) => DescribedGroup::default()
                    .with_group_id(id)
                    .with_group_state(s(g.state.name()))
                    .with_protocol_type(s(&g.protocol_type))
                    .with_protocol_data(s(g.protocol.as_deref().unwrap_or("")))
                    .with_members(
                        g.members
                            .iter()
                            .map(|(mid, m)| {
                                let metadata = m
                                    .protocols
                                    .iter()
                                    .find(|(n, _)| Some(n) == g.protocol.as_ref())
                                    .map(|(_, md)| md.clone())
                                    .unwrap_or_default();
                                DescribedGroupMember::default()
                                    .with_member_id(s(mid))
                                    .with_client_id(s(&m.client_id))
                                    .with_client_host(s(&m.client_host))
                                    .with_member_metadata(metadata)
                                    .with_member_assignment(m.assignment.clone())
                            })
                            .collect(),
                    ),
            })
            .collect(),
    )
}

/// DeleteGroups: a group without members goes, with its committed offsets (Delete on the
/// group); GROUP_NOT_EMPTY while it has members, GROUP_ID_NOT_FOUND when there is nothing.
pub fn delete_groups(k: &Kafka, session: &Session, r: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let c = &k.groups;
    let results = r
        .groups_names
        .into_iter()
        .map(|id| {
            let code = if let Err(e) = guard::on_group(k, session, Operation::Delete, &id) {
                e
            } else {
                c.delete_group(&id)
            };
            k.metrics.error("DeleteGroups", code);
            DeletableGroupResult::default()
                .with_group_id(id)
                .with_error_code(code)
        })
        .collect();
    DeleteGroupsResponse::default().with_results(results)
}

impl Coordinator {
    fn delete_group(&self, id: &str) -> i16 {
        let Some(prefix) = offsets_prefix(id) else {
            return code::INVALID_GROUP_ID;
        };
        let mut groups = self.groups.lock();
        let in_memory = match groups.get(id) {
            Some(g) if !g.members.is_empty() => return code::GROUP_NOT_EMPTY,
            Some(_) => true,
            None => false,
        };
        let offsets: Vec<StateOp> = match self.kv.scan_prefix(&prefix) {
            Ok(found) => found
                .into_iter()
                .map(|(key, _)| StateOp::Delete(key))
                .collect(),
            Err(e) => {
                tracing::error!(group = id, error = %e, "cannot read committed offsets");
                return code::KAFKA_STORAGE_ERROR;
            }
        };
        if !in_memory && offsets.is_empty() {
            return code::GROUP_ID_NOT_FOUND;
        }
        if let Err(e) = self.kv.write(&offsets) {
            tracing::error!(group = id, error = %e, "cannot delete committed offsets");
            return code::KAFKA_STORAGE_ERROR;
        }
        groups.remove(id);
        if let Some(known) = self.offset_groups.lock().as_mut() {
            known.remove(id);
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
        committed(&self.kv, group, None)
    }
}
