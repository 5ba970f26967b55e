//! The group APIs: JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit,
//! OffsetFetch, ListGroups, DescribeGroups and DeleteGroups, each checked against the ACL
//! and answered from the [`Coordinator`].

use super::*;
use crate::guard;
use crate::session::Session;
use crate::state::Kafka;
use strata_frontend::security::kafka_acl::{Operation, ResourceType};

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

pub async fn offset_commit(
    k: &Kafka,
    session: &Session,
    r: OffsetCommitRequest,
) -> OffsetCommitResponse {
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
    let mut offsets = Vec::new();
    if check.is_ok() {
        for (t, refused) in r.topics.iter().zip(&refusals) {
            for (p, _) in t
                .partitions
                .iter()
                .zip(refused)
                .filter(|(_, r)| r.is_none())
            {
                let value = Committed {
                    offset: p.committed_offset,
                    leader_epoch: p.committed_leader_epoch,
                    metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
                };
                offsets.push((t.name.to_string(), p.partition_index, value));
            }
        }
    }
    // One atomic, durable write for the whole request (a request too large for one meta
    // command is written in parts, each atomic).
    let stored = match check {
        Err(code) => Err(code),
        Ok(()) => c.store_offsets(&group, offsets).await,
    };
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
        return committed(k.groups.positions(), group, None)
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
        k.groups.positions(),
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
    // Refused groups keep their own code: GROUP_AUTHORIZATION_FAILED, or NOT_COORDINATOR
    // when the group is coordinated elsewhere (the client asks FindCoordinator again).
    let refused: Vec<Option<i16>> = r
        .groups
        .iter()
        .map(|id| guard::on_group(k, session, Operation::Describe, id).err())
        .collect();
    let groups = k.groups.groups.lock();
    DescribeGroupsResponse::default().with_groups(
        r.groups
            .into_iter()
            .zip(refused)
            .map(|(id, refused)| match (refused, groups.get(id.as_str())) {
                (Some(code), _) => {
                    k.metrics.error("DescribeGroups", code);
                    DescribedGroup::default()
                        .with_group_id(id)
                        .with_error_code(code)
                }
                (None, None) => DescribedGroup::default()
                    .with_group_id(id)
                    .with_group_state(s("Dead")),
                (None, Some(g)) => DescribedGroup::default()
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
pub async fn delete_groups(
    k: &Kafka,
    session: &Session,
    r: DeleteGroupsRequest,
) -> DeleteGroupsResponse {
    let c = &k.groups;
    let mut results = Vec::with_capacity(r.groups_names.len());
    for id in r.groups_names {
        let code = if let Err(e) = guard::on_group(k, session, Operation::Delete, &id) {
            e
        } else {
            c.delete_group(&id).await
        };
        k.metrics.error("DeleteGroups", code);
        results.push(
            DeletableGroupResult::default()
                .with_group_id(id)
                .with_error_code(code),
        );
    }
    DeleteGroupsResponse::default().with_results(results)
}
