//! Partition reassignment (`kafka-reassign-partitions.sh`, `Admin.alterPartitionReassignments`):
//! a replicated partition moves to other nodes. The catalog records the target; the new
//! nodes copy the partition as learners and its leader ends the move with an election
//! among them (docs/architecture.md, "Moving replicas"). DescribeLogDirs, which the
//! tool asks each replica, lists the copies a node holds and their sizes.

use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId,
    DescribeLogDirsRequest, DescribeLogDirsResponse, ListPartitionReassignmentsRequest,
    ListPartitionReassignmentsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use strata_frontend::seams::{NodeId, Placement, StoreError};
use strata_frontend::security::kafka_acl::Operation;

use crate::code;
use crate::guard;
use crate::session::Session;
use crate::state::Kafka;

/// Most partitions one request moves (each is one write to the meta service); those past
/// it are answered POLICY_VIOLATION.
pub const MAX_MOVES_PER_REQUEST: usize = 4096;
/// Most replicas a partition is moved to (the meta service's `MAX_REPLICAS`).
const MAX_REPLICAS: usize = 7;
/// Most partitions one DescribeLogDirs or ListPartitionReassignments request names; those
/// past it are left out of the answer.
pub const MAX_LISTED_PER_REQUEST: usize = 65_536;

/// AlterPartitionReassignments: starts (or, with null replicas, cancels) each move.
pub async fn alter(
    k: &Kafka,
    session: &Session,
    r: AlterPartitionReassignmentsRequest,
) -> AlterPartitionReassignmentsResponse {
    let denied = guard::on_cluster(k, session, Operation::Alter).err();
    let mut seen = 0usize;
    let mut responses = Vec::new();
    for t in r.topics {
        let mut partitions = Vec::new();
        for p in t.partitions {
            seen += 1;
            let (error, message) = match denied {
                Some(code) => (code, None),
                None if seen > MAX_MOVES_PER_REQUEST => (
                    code::POLICY_VIOLATION,
                    Some(format!(
                        "at most {MAX_MOVES_PER_REQUEST} partitions move per request"
                    )),
                ),
                None => match move_one(
                    k,
                    &t.name,
                    p.partition_index,
                    p.replicas,
                    r.allow_replication_factor_change,
                )
                .await
                {
                    Ok(()) => (code::NONE, None),
                    Err((code, why)) => (code, Some(why)),
                },
            };
            k.metrics.error("AlterPartitionReassignments", error);
            partitions.push(
                ReassignablePartitionResponse::default()
                    .with_partition_index(p.partition_index)
                    .with_error_code(error)
                    .with_error_message(message.map(StrBytes::from_string)),
            );
        }
        responses.push(
            ReassignableTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions),
        );
    }
    AlterPartitionReassignmentsResponse::default()
        .with_error_code(denied.unwrap_or(code::NONE))
        .with_allow_replication_factor_change(r.allow_replication_factor_change)
        .with_responses(responses)
}

/// One partition's move: its error code and message when refused.
async fn move_one(
    k: &Kafka,
    topic: &TopicName,
    index: i32,
    replicas: Option<Vec<BrokerId>>,
    change_allowed: bool,
) -> Result<(), (i16, String)> {
    let name: &str = topic;
    let unknown = || {
        (
            code::UNKNOWN_TOPIC_OR_PARTITION,
            format!("no partition {index} in `{name}`"),
        )
    };
    if k.owned.get(name).is_some() {
        return Err((
            code::TOPIC_AUTHORIZATION_FAILED,
            format!("`{name}` is owned by another frontend"),
        ));
    }
    let partition = u32::try_from(index).map_err(|_| unknown())?;
    let placed = k
        .storage
        .catalog
        .placement(name, partition)
        .ok_or_else(unknown)?;
    let wanted: Vec<NodeId> = match replicas {
        // Cancelled: the partition stays on its replicas.
        None if placed.target.is_empty() => {
            return Err((
                code::NO_REASSIGNMENT_IN_PROGRESS,
                format!("{name}/{index} is not being moved"),
            ));
        }
        None => placed.replicas.clone(),
        // Checked before anything is written: a list the meta service would refuse is
        // never sent to it (nor its length paid for in the metadata log).
        Some(ids) if ids.len() > MAX_REPLICAS || ids.len() < 2 => {
            return Err((
                code::INVALID_REPLICA_ASSIGNMENT,
                format!("a moved partition has 2 to {MAX_REPLICAS} replicas"),
            ));
        }
        Some(ids) if (1..ids.len()).any(|i| ids[..i].contains(&ids[i])) => {
            return Err((
                code::INVALID_REPLICA_ASSIGNMENT,
                "a broker is named twice".to_string(),
            ));
        }
        Some(ids) => {
            let mut wanted = Vec::with_capacity(ids.len());
            for id in ids {
                let id = u64::try_from(i32::from(id)).map_err(|_| {
                    (
                        code::INVALID_REPLICA_ASSIGNMENT,
                        format!("broker id {} is not a node", i32::from(id)),
                    )
                })?;
                if !k.storage.catalog.is_member(id) {
                    return Err((
                        code::INVALID_REPLICA_ASSIGNMENT,
                        format!("broker {id} is not a member of the cluster"),
                    ));
                }
                wanted.push(id);
            }
            if !change_allowed && wanted.len() != placed.replicas.len() {
                return Err((
                    code::INVALID_REPLICATION_FACTOR,
                    format!(
                        "{name}/{index} has {} replicas, and the request does not allow changing that",
                        placed.replicas.len()
                    ),
                ));
            }
            wanted
        }
    };
    match k
        .storage
        .catalog
        .move_replicas(name, partition, wanted)
        .await
    {
        Ok(()) => Ok(()),
        Err(StoreError::UnknownStream(_)) => Err(unknown()),
        Err(StoreError::Invalid(why)) => Err((code::INVALID_REPLICA_ASSIGNMENT, why)),
        Err(e) => Err((code::REQUEST_TIMED_OUT, e.to_string())),
    }
}

/// ListPartitionReassignments: the partitions being moved (of the topics asked for, or
/// all), with their replicas as Kafka lists them during a move: the target's, then those
/// leaving.
pub fn list(
    k: &Kafka,
    session: &Session,
    r: ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    if let Err(denied) = guard::on_cluster(k, session, Operation::Describe) {
        k.metrics.error("ListPartitionReassignments", denied);
        return ListPartitionReassignmentsResponse::default().with_error_code(denied);
    }
    let catalog = &k.storage.catalog;
    let asked = asked_topics(
        k,
        r.topics.map(|ts| {
            ts.into_iter()
                .map(|t| (t.name.to_string(), t.partition_indexes))
        }),
    );
    let mut topics = Vec::new();
    for (name, indexes) in asked {
        let partitions: Vec<OngoingPartitionReassignment> = indexes
            .into_iter()
            .filter_map(|i| Some((i, catalog.placement(&name, i)?)))
            .filter(|(_, p)| !p.target.is_empty())
            .map(|(i, p)| ongoing(i, &p))
            .collect();
        if !partitions.is_empty() {
            topics.push(
                OngoingTopicReassignment::default()
                    .with_name(TopicName(StrBytes::from_string(name)))
                    .with_partitions(partitions),
            );
        }
    }
    ListPartitionReassignmentsResponse::default().with_topics(topics)
}

fn ongoing(index: u32, p: &Placement) -> OngoingPartitionReassignment {
    let broker = |n: &NodeId| BrokerId(i32::try_from(*n).unwrap_or(i32::MAX));
    let mut all = p.target.clone();
    all.extend(p.replicas.iter().filter(|n| !p.target.contains(n)));
    OngoingPartitionReassignment::default()
        .with_partition_index(index as i32)
        .with_replicas(all.iter().map(broker).collect())
        .with_adding_replicas(
            p.target
                .iter()
                .filter(|n| !p.replicas.contains(n))
                .map(broker)
                .collect(),
        )
        .with_removing_replicas(
            p.replicas
                .iter()
                .filter(|n| !p.target.contains(n))
                .map(broker)
                .collect(),
        )
}

/// DescribeLogDirs: this node's one directory of copies, with each copy it holds of the
/// topics asked for (all when none are named) and its bytes. Offset lag is not tracked
/// per copy here: 0.
pub fn log_dirs(
    k: &Kafka,
    session: &Session,
    r: DescribeLogDirsRequest,
) -> DescribeLogDirsResponse {
    if let Err(denied) = guard::on_cluster(k, session, Operation::Describe) {
        k.metrics.error("DescribeLogDirs", denied);
        return DescribeLogDirsResponse::default().with_error_code(denied);
    }
    let catalog = &k.storage.catalog;
    let asked = asked_topics(
        k,
        r.topics
            .map(|ts| ts.into_iter().map(|t| (t.topic.to_string(), t.partitions))),
    );
    let mut topics = Vec::new();
    for (name, indexes) in asked {
        let partitions: Vec<DescribeLogDirsPartition> = indexes
            .into_iter()
            .filter_map(|i| {
                let bytes = catalog.copy_bytes(&name, i)?;
                Some(
                    DescribeLogDirsPartition::default()
                        .with_partition_index(i as i32)
                        .with_partition_size(i64::try_from(bytes).unwrap_or(i64::MAX)),
                )
            })
            .collect();
        if !partitions.is_empty() {
            topics.push(
                DescribeLogDirsTopic::default()
                    .with_name(TopicName(StrBytes::from_string(name)))
                    .with_partitions(partitions),
            );
        }
    }
    let dir = DescribeLogDirsResult::default()
        .with_log_dir(StrBytes::from_string(catalog.copies_dir()))
        .with_topics(topics)
        .with_total_bytes(-1)
        .with_usable_bytes(-1);
    DescribeLogDirsResponse::default().with_results(vec![dir])
}

/// The topics a listing asks for (all the Kafka frontend's when none are named), each
/// named once with its partitions named once (all of them when the topic is not named),
/// unknown topics and those of other frontends left out, at most
/// [`MAX_LISTED_PER_REQUEST`] partitions in all.
fn asked_topics(
    k: &Kafka,
    named: Option<impl Iterator<Item = (String, Vec<i32>)>>,
) -> Vec<(String, Vec<u32>)> {
    let mut asked: std::collections::BTreeMap<String, Option<std::collections::BTreeSet<u32>>> =
        std::collections::BTreeMap::new();
    let mut budget = MAX_LISTED_PER_REQUEST;
    match named {
        Some(topics) => {
            for (name, indexes) in topics {
                if k.owned.get(&name).is_some() {
                    continue;
                }
                let set = asked
                    .entry(name)
                    .or_insert_with(|| Some(Default::default()));
                for i in indexes {
                    if budget == 0 {
                        break;
                    }
                    if let (Some(set), Ok(i)) = (set.as_mut(), u32::try_from(i))
                        && set.insert(i)
                    {
                        budget -= 1;
                    }
                }
            }
        }
        None => {
            for s in k.storage.catalog.streams() {
                if k.owned.get(&s.name).is_none() && budget > 0 {
                    budget = budget.saturating_sub(s.partitions as usize);
                    asked.insert(s.name, None);
                }
            }
        }
    }
    asked
        .into_iter()
        .filter_map(|(name, indexes)| {
            let stream = k.storage.catalog.stream(&name)?;
            let indexes = match indexes {
                Some(set) => set.into_iter().collect(),
                None => (0..stream.partitions).collect(),
            };
            Some((name, indexes))
        })
        .collect()
}
