//! The Kafka frontend's admin surface: consumer groups with their members, assignments,
//! committed offsets and lag, for the node's HTTP API and its `/metrics`.

use futures_util::FutureExt;
use std::sync::{Arc, Weak};

use kafka_protocol::messages::ConsumerProtocolAssignment;
use kafka_protocol::protocol::Decodable;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntGaugeVec, Opts};
use serde::Serialize;
use strata_frontend::admin::{AdminError, Live};
use utoipa::ToSchema;

use crate::groups::GroupSnapshot;
use crate::state::Kafka;

/// A cloneable handle on the running Kafka frontend for the admin API.
#[derive(Debug, Clone)]
pub struct KafkaAdmin {
    kafka: Live<Kafka>,
}

impl Default for KafkaAdmin {
    fn default() -> Self {
        KafkaAdmin {
            kafka: Live::new("Kafka"),
        }
    }
}

/// A consumer group.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct GroupView {
    /// Group id.
    pub group_id: String,
    /// `Empty`, `PreparingRebalance`, `CompletingRebalance` or `Stable`.
    pub state: String,
    /// Generation of the current membership.
    pub generation: i32,
    /// Protocol type (`consumer` for consumer groups).
    pub protocol_type: String,
    /// The assignor the members agreed on.
    pub protocol: Option<String>,
    /// Member id of the leader.
    pub leader: Option<String>,
    /// Number of members.
    pub members: usize,
    /// Records not yet consumed, summed over the partitions with committed offsets.
    pub lag: u64,
}

/// A consumer group with its members and offsets.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct GroupDetail {
    /// The group.
    pub group: GroupView,
    /// Its members, by member id.
    pub members: Vec<MemberView>,
    /// Its committed offsets, by topic and partition.
    pub offsets: Vec<OffsetView>,
}

/// A member of a group.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MemberView {
    /// Member id the coordinator assigned.
    pub member_id: String,
    /// Client id from the member's requests.
    pub client_id: String,
    /// The member's address, as Kafka shows it (`/ip`).
    pub client_host: String,
    /// Session timeout in milliseconds.
    pub session_timeout_ms: u64,
    /// Partitions assigned to it (decoded for consumer groups; empty otherwise).
    pub assignment: Vec<TopicPartitions>,
}

/// Partitions of one topic.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TopicPartitions {
    /// Topic name.
    pub topic: String,
    /// Partition numbers.
    pub partitions: Vec<i32>,
}

/// A committed offset and how far behind it is.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OffsetView {
    /// Topic name.
    pub topic: String,
    /// Partition number.
    pub partition: i32,
    /// Offset committed by the group (the next record it will read).
    pub committed_offset: i64,
    /// Metadata committed with it.
    pub metadata: Option<String>,
    /// The partition's end offset (none when the topic or partition no longer exists).
    pub end_offset: Option<i64>,
    /// `end_offset - committed_offset` (0 when the commit is at or past the end; none when
    /// the commit is negative or the partition is gone).
    pub lag: Option<u64>,
}

impl KafkaAdmin {
    /// Connects the handle to the running frontend (done once by the frontend).
    pub(crate) fn attach(&self, kafka: Arc<Kafka>) {
        self.kafka.attach(kafka);
    }

    fn kafka(&self) -> Result<&Arc<Kafka>, AdminError> {
        self.kafka.get()
    }

    /// Every group with members or committed offsets, by group id.
    pub fn groups(&self) -> Result<Vec<GroupView>, AdminError> {
        let k = self.kafka()?;
        Ok(k.groups
            .group_ids()
            .into_iter()
            .map(|id| group_detail(k, &id).group)
            .collect())
    }

    /// One group with its members, assignments and offsets.
    pub fn group(&self, group_id: &str) -> Result<GroupDetail, AdminError> {
        let k = self.kafka()?;
        if !k.groups.group_ids().contains(group_id) {
            return Err(AdminError::NotFound(format!("no group `{group_id}`")));
        }
        Ok(group_detail(k, group_id))
    }
}

fn group_detail(k: &Kafka, group_id: &str) -> GroupDetail {
    let snapshot: GroupSnapshot = k.groups.snapshot(group_id);
    let offsets = offsets(k, group_id);
    let lag = offsets
        .iter()
        .filter_map(|o| o.lag)
        .fold(0u64, u64::saturating_add);
    let decodes = snapshot.protocol_type == "consumer";
    let members = snapshot
        .members
        .iter()
        .map(|m| MemberView {
            member_id: m.member_id.clone(),
            client_id: m.client_id.clone(),
            client_host: m.client_host.clone(),
            session_timeout_ms: m.session_timeout.as_millis() as u64,
            assignment: if decodes {
                decode_assignment(&m.assignment)
            } else {
                Vec::new()
            },
        })
        .collect();
    GroupDetail {
        group: GroupView {
            group_id: group_id.to_owned(),
            state: snapshot.state.to_owned(),
            generation: snapshot.generation,
            protocol_type: snapshot.protocol_type,
            protocol: snapshot.protocol,
            leader: snapshot.leader,
            members: snapshot.members.len(),
            lag,
        },
        members,
        offsets,
    }
}

/// The end offset of a partition when it is known without waiting: a partition served
/// here answers at once; one that would need a round trip is left out (no lag reported)
/// rather than holding up a metrics scrape or an admin page.
fn known_end(k: &Kafka, topic: &str, partition: i32) -> Option<i64> {
    let partition = u32::try_from(partition).ok()?;
    let log = k.storage.partition(topic, partition).now_or_never()?.ok()?;
    let offsets = log.offsets().now_or_never()?.ok()?;
    i64::try_from(offsets.end).ok()
}

fn offsets(k: &Kafka, group_id: &str) -> Vec<OffsetView> {
    let mut out = Vec::new();
    for (topic, partitions) in k.groups.committed_offsets(group_id) {
        for (partition, committed) in partitions {
            let Some(c) = committed else { continue };
            let end = known_end(k, &topic, partition);
            out.push(OffsetView {
                topic: topic.clone(),
                partition,
                committed_offset: c.offset,
                metadata: c.metadata,
                end_offset: end,
                // A negative commit (-1: "no offset") has no lag to speak of.
                lag: end
                    .filter(|_| c.offset >= 0)
                    .map(|e| e.saturating_sub(c.offset).max(0) as u64),
            });
        }
    }
    out
}

/// The topics and partitions of a consumer protocol assignment (its first two bytes are
/// its version); nothing when it does not decode.
fn decode_assignment(bytes: &bytes::Bytes) -> Vec<TopicPartitions> {
    let mut buf = bytes.clone();
    if buf.len() < 2 {
        return Vec::new();
    }
    let version = i16::from_be_bytes([buf[0], buf[1]]).clamp(0, 3);
    let _ = bytes::Buf::get_i16(&mut buf);
    match ConsumerProtocolAssignment::decode(&mut buf, version) {
        Ok(a) => a
            .assigned_partitions
            .into_iter()
            .map(|tp| TopicPartitions {
                topic: tp.topic.to_string(),
                partitions: tp.partitions,
            })
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Consumer group gauges computed at scrape time: groups by state, members by group, and
/// lag by group, topic and partition.
#[derive(Debug)]
pub(crate) struct GroupCollector {
    kafka: Weak<Kafka>,
    descs: Vec<Desc>,
}

const GROUPS: (&str, &str) = (
    "strata_kafka_consumer_groups",
    "Consumer groups by state (groups with members or committed offsets).",
);
const MEMBERS: (&str, &str) = (
    "strata_kafka_consumer_group_members",
    "Members of each consumer group.",
);
const LAG: (&str, &str) = (
    "strata_kafka_consumer_group_lag",
    "Records between a group's committed offset and the partition's end.",
);

fn gauges() -> [IntGaugeVec; 3] {
    let vec = |(name, help): (&str, &str), labels: &[&str]| {
        IntGaugeVec::new(Opts::new(name, help), labels)
            .unwrap_or_else(|e| unreachable!("metric {name}: {e}"))
    };
    [
        vec(GROUPS, &["state"]),
        vec(MEMBERS, &["group"]),
        vec(LAG, &["group", "topic", "partition"]),
    ]
}

impl GroupCollector {
    pub(crate) fn new(kafka: &Arc<Kafka>) -> Self {
        let descs = gauges()
            .iter()
            .flat_map(|g| g.desc().into_iter().cloned())
            .collect();
        GroupCollector {
            kafka: Arc::downgrade(kafka),
            descs,
        }
    }
}

impl Collector for GroupCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let [groups, members, lag] = gauges();
        if let Some(k) = self.kafka.upgrade() {
            for state in [
                "Empty",
                "PreparingRebalance",
                "CompletingRebalance",
                "Stable",
            ] {
                groups.with_label_values(&[state]).set(0);
            }
            for id in k
                .groups
                .group_ids()
                .into_iter()
                .take(k.config.max_group_metrics)
            {
                let detail = group_detail(&k, &id);
                groups.with_label_values(&[&detail.group.state]).inc();
                members
                    .with_label_values(&[&id])
                    .set(detail.group.members as i64);
                for o in detail.offsets {
                    if let Some(l) = o.lag {
                        lag.with_label_values(&[&id, &o.topic, &o.partition.to_string()])
                            .set(l.min(i64::MAX as u64) as i64);
                    }
                }
            }
        }
        [groups, members, lag]
            .iter()
            .flat_map(|g| g.collect())
            .collect()
    }
}
