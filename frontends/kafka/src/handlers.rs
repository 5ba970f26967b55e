//! Request handling: decoding a frame, checking the version, answering each API.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::future::{FutureExt, select_all};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::find_coordinator_response::Coordinator as CoordinatorEntry;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use strata_batch::PendingBatch;
use strata_frontend::seams::{
    Offsets, Partition, StoreError, StreamInfo, StreamSpec, validate_stream_name,
};

use crate::producers::storage_code;

use crate::acls;
use crate::code;
use crate::groups;
use crate::guard::{self, CreationBudget};
use crate::quota::Kind;
use crate::session::Session;
use crate::state::Kafka;
use strata_frontend::security::kafka_acl::{CLUSTER, Operation, ResourceType};

/// Versions this broker answers, per API: (key, lowest advertised, lowest accepted,
/// highest). Produce is advertised from 0 (older librdkafka turns compression off
/// otherwise) and accepted from 3, as Kafka 4 does; Produce and Fetch stop before topic
/// ids (v13).
const APIS: &[(ApiKey, i16, i16, i16)] = &[
    (ApiKey::Produce, 0, 3, 12),
    (ApiKey::Fetch, 4, 4, 12),
    (ApiKey::ListOffsets, 1, 1, 8),
    (ApiKey::Metadata, 0, 0, 12),
    (ApiKey::OffsetCommit, 2, 2, 9),
    (ApiKey::OffsetFetch, 1, 1, 8),
    (ApiKey::FindCoordinator, 0, 0, 5),
    (ApiKey::JoinGroup, 0, 0, 9),
    (ApiKey::Heartbeat, 0, 0, 4),
    (ApiKey::LeaveGroup, 0, 0, 5),
    (ApiKey::SyncGroup, 0, 0, 5),
    (ApiKey::DescribeGroups, 0, 0, 5),
    (ApiKey::ListGroups, 0, 0, 4),
    (ApiKey::SaslHandshake, 0, 0, 1),
    (ApiKey::ApiVersions, 0, 0, 4),
    (ApiKey::CreateTopics, 2, 2, 7),
    (ApiKey::DeleteTopics, 1, 1, 5),
    (ApiKey::InitProducerId, 0, 0, 5),
    (ApiKey::DescribeConfigs, 1, 1, 4),
    (ApiKey::SaslAuthenticate, 0, 0, 2),
    (ApiKey::CreatePartitions, 0, 0, 3),
    (ApiKey::DeleteGroups, 0, 0, 2),
    (ApiKey::DescribeAcls, 1, 1, 3),
    (ApiKey::CreateAcls, 1, 1, 3),
    (ApiKey::DeleteAcls, 1, 1, 3),
    (ApiKey::OffsetForLeaderEpoch, 2, 2, 4),
    (ApiKey::AlterPartitionReassignments, 0, 0, 1),
    (ApiKey::ListPartitionReassignments, 0, 0, 0),
    (ApiKey::DescribeLogDirs, 1, 1, 4),
];

fn accepted(key: ApiKey, version: i16) -> bool {
    APIS.iter()
        .any(|&(k, _, min, max)| k == key && (min..=max).contains(&version))
}

/// Encodes a response frame: length, header, body.
pub fn respond<R: Encodable + HeaderVersion>(
    correlation_id: i32,
    version: i16,
    body: &R,
) -> anyhow::Result<BytesMut> {
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let hv = R::header_version(version);
    let size = header.compute_size(hv)? + body.compute_size(version)?;
    let mut buf = BytesMut::with_capacity(4 + size);
    buf.put_i32(size as i32);
    header.encode(&mut buf, hv)?;
    body.encode(&mut buf, version)?;
    Ok(buf)
}

fn api_versions(error_code: i16) -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(error_code)
        .with_api_keys(
            APIS.iter()
                .map(|&(k, min, _, max)| {
                    ApiVersion::default()
                        .with_api_key(k as i16)
                        .with_min_version(min)
                        .with_max_version(max)
                })
                .collect(),
        )
}

fn api_name(key: ApiKey) -> String {
    format!("{key:?}")
}

/// Handles one request frame (without its length prefix). `Ok(None)`: no response
/// (Produce with acks = 0). An error closes the connection, as Kafka does for requests it
/// cannot parse or versions it does not support.
pub async fn handle(
    k: &Arc<Kafka>,
    session: &mut Session,
    mut frame: Bytes,
) -> anyhow::Result<Option<BytesMut>> {
    if frame.len() < 8 {
        bail!("request of {} bytes", frame.len());
    }
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let key = ApiKey::try_from(raw_key).map_err(|()| anyhow!("unknown api key {raw_key}"))?;
    let header = RequestHeader::decode(&mut frame, key.request_header_version(version))
        .context("request header")?;
    let corr = header.correlation_id;
    if let Some(id) = &header.client_id
        && session.client_id != id.as_str()
    {
        session.client_id = id.to_string();
        // The connection's span: every event of this connection carries the client id.
        tracing::Span::current().record("client_id", id.as_str());
    }
    let api = api_name(key);
    // The version label only for versions this broker accepts: a client cannot grow the
    // series by sending made-up versions.
    let version_label = if accepted(key, version) {
        version.to_string()
    } else {
        "unsupported".to_string()
    };
    k.metrics
        .requests
        .with_label_values(&[&api, &version_label])
        .inc();
    if !accepted(key, version) {
        k.metrics.error(&api, code::UNSUPPORTED_VERSION);
        if key == ApiKey::ApiVersions {
            // Answered in version 0, which every client reads, with the versions we do.
            return Ok(Some(respond(
                corr,
                0,
                &api_versions(code::UNSUPPORTED_VERSION),
            )?));
        }
        bail!("{api} version {version} is not supported");
    }
    if !session.authenticated
        && !matches!(
            key,
            ApiKey::ApiVersions | ApiKey::SaslHandshake | ApiKey::SaslAuthenticate
        )
    {
        k.metrics.error(&api, code::SASL_AUTHENTICATION_FAILED);
        bail!("{api} before SASL authentication");
    }
    let request = RequestKind::decode(key, &mut frame, version).inspect_err(|_| {
        k.metrics
            .errors
            .with_label_values(&[&api, "malformed"])
            .inc();
    })?;
    let out = match request {
        RequestKind::ApiVersions(_) => respond(corr, version, &api_versions(code::NONE))?,
        RequestKind::Metadata(r) => {
            respond(corr, version, &metadata(k, session, r, version).await)?
        }
        RequestKind::Produce(r) => {
            let acks = r.acks;
            let bytes: usize = r
                .topic_data
                .iter()
                .flat_map(|t| &t.partition_data)
                .map(|p| p.records.as_ref().map_or(0, Bytes::len))
                .sum();
            let mut resp = produce(k, session, r).await;
            resp.throttle_time_ms = throttle(k, session, Kind::Produce, bytes);
            if acks == 0 {
                return Ok(None);
            }
            respond(corr, version, &resp)?
        }
        RequestKind::Fetch(r) => {
            let mut resp = fetch(k, session, r).await;
            let bytes: usize = resp
                .responses
                .iter()
                .flat_map(|t| &t.partitions)
                .map(|p| p.records.as_ref().map_or(0, Bytes::len))
                .sum();
            resp.throttle_time_ms = throttle(k, session, Kind::Fetch, bytes);
            respond(corr, version, &resp)?
        }
        RequestKind::ListOffsets(r) => respond(corr, version, &list_offsets(k, session, r).await)?,
        RequestKind::OffsetForLeaderEpoch(r) => {
            respond(corr, version, &offset_for_leader_epoch(k, session, r).await)?
        }
        RequestKind::FindCoordinator(r) => {
            respond(corr, version, &find_coordinator(k, session, r, version))?
        }
        RequestKind::InitProducerId(r) => respond(corr, version, &init_producer_id(k, session, r))?,
        RequestKind::CreateTopics(r) => {
            respond(corr, version, &create_topics(k, session, r).await)?
        }
        RequestKind::DeleteTopics(r) => {
            respond(corr, version, &delete_topics(k, session, r).await)?
        }
        RequestKind::CreatePartitions(r) => {
            respond(corr, version, &create_partitions(k, session, r).await)?
        }
        RequestKind::DeleteGroups(r) => respond(
            corr,
            version,
            &groups::api::delete_groups(k, session, r).await,
        )?,
        RequestKind::DescribeAcls(r) => respond(corr, version, &acls::describe(k, session, r))?,
        RequestKind::CreateAcls(r) => respond(corr, version, &acls::create(k, session, r).await)?,
        RequestKind::DeleteAcls(r) => respond(corr, version, &acls::delete(k, session, r).await)?,
        RequestKind::AlterPartitionReassignments(r) => {
            respond(corr, version, &crate::reassign::alter(k, session, r).await)?
        }
        RequestKind::DescribeLogDirs(r) => {
            respond(corr, version, &crate::reassign::log_dirs(k, session, r))?
        }
        RequestKind::ListPartitionReassignments(r) => {
            respond(corr, version, &crate::reassign::list(k, session, r))?
        }
        RequestKind::DescribeConfigs(r) => {
            respond(corr, version, &describe_configs(k, session, r))?
        }
        RequestKind::SaslHandshake(r) => {
            respond(corr, version, &crate::sasl::handshake(session, r))?
        }
        RequestKind::SaslAuthenticate(r) => respond(
            corr,
            version,
            &crate::sasl::authenticate(k, session, r).await,
        )?,
        RequestKind::JoinGroup(r) => respond(
            corr,
            version,
            &groups::api::join(k, session, r, version).await,
        )?,
        RequestKind::SyncGroup(r) => {
            respond(corr, version, &groups::api::sync(k, session, r).await)?
        }
        RequestKind::Heartbeat(r) => {
            respond(corr, version, &groups::api::heartbeat(k, session, r))?
        }
        RequestKind::LeaveGroup(r) => respond(corr, version, &groups::api::leave(k, session, r))?,
        RequestKind::OffsetCommit(r) => respond(
            corr,
            version,
            &groups::api::offset_commit(k, session, r).await,
        )?,
        RequestKind::OffsetFetch(r) => respond(
            corr,
            version,
            &groups::api::offset_fetch(k, session, r, version),
        )?,
        RequestKind::ListGroups(_) => respond(corr, version, &groups::api::list(k, session))?,
        RequestKind::DescribeGroups(r) => {
            respond(corr, version, &groups::api::describe(k, session, r))?
        }
        _ => bail!("{api} is not handled"),
    };
    Ok(Some(out))
}

/// Charges a quota; the throttle time to answer with (counted).
fn throttle(k: &Kafka, session: &mut Session, kind: Kind, bytes: usize) -> i32 {
    let Some(q) = session.quotas.as_mut() else {
        return 0;
    };
    // Per SASL user, or per address without SASL, as Kafka keys quotas.
    let principal = match (&session.user, session.peer) {
        (Some(user), _) => format!("User:{user}"),
        (None, Some(peer)) => format!("ip:{}", peer.ip().to_canonical()),
        (None, None) => "User:ANONYMOUS".to_string(),
    };
    let ms = q.charge(
        &k.quotas,
        &k.config,
        &principal,
        kind,
        bytes,
        Instant::now(),
    );
    if ms > 0 {
        let api = match kind {
            Kind::Produce => "Produce",
            Kind::Fetch => "Fetch",
        };
        k.metrics
            .throttle_ms
            .with_label_values(&[api])
            .inc_by(ms as u64);
    }
    ms
}

fn str(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// The journal stream behind `topic`, created when allowed (a budget is given), missing,
/// and within the request's and the node's bounds.
async fn topic_stream(
    k: &Kafka,
    topic: &str,
    create: Option<&mut CreationBudget>,
) -> Result<StreamInfo, i16> {
    match k.storage.catalog.stream(topic) {
        Some(s) => Ok(s),
        None if k.config.auto_create_topics && create.is_some() => {
            let partitions = k.config.default_partitions;
            if let Some(budget) = create
                && let Err(why) = budget.take(k, partitions)
            {
                tracing::debug!(topic, why, "topic not created automatically");
                return Err(code::UNKNOWN_TOPIC_OR_PARTITION);
            }
            create_topic(k, topic, partitions, None, None).await
        }
        None => Err(code::UNKNOWN_TOPIC_OR_PARTITION),
    }
}

/// Creates `topic` (or finds it created meanwhile) with `copies` copies of each
/// partition (`None`: the cluster's default) and `min_in_sync` as its
/// `min.insync.replicas` (`None`: 1).
async fn create_topic(
    k: &Kafka,
    topic: &str,
    partitions: u32,
    copies: Option<u32>,
    min_in_sync: Option<u32>,
) -> Result<StreamInfo, i16> {
    if validate_stream_name(topic).is_err() || topic.len() > 249 {
        return Err(code::INVALID_TOPIC);
    }
    let mut spec = StreamSpec::new(topic, partitions);
    spec.replication_factor = copies;
    spec.min_in_sync = min_in_sync;
    // Created meanwhile by another request: that topic is the answer.
    match k.storage.ensure_stream(spec).await {
        Ok(s) => Ok(s),
        Err(StoreError::Invalid(why)) if copies.is_some() => {
            tracing::warn!(
                topic,
                why,
                "cannot create topic with that replication factor"
            );
            Err(code::INVALID_REPLICATION_FACTOR)
        }
        Err(e) => {
            tracing::warn!(topic, error = %e, "cannot create topic");
            Err(code::UNKNOWN_SERVER_ERROR)
        }
    }
}

/// A topic's Metadata entry. A partition whose leader is one of `down` (its heartbeats
/// stopped, or it has no listener for this client) is reported LEADER_NOT_AVAILABLE,
/// without a leader, as Kafka reports an offline partition.
fn metadata_topic(
    k: &Kafka,
    down: &[u64],
    name: &str,
    stream: Result<StreamInfo, i16>,
) -> MetadataResponseTopic {
    let t = MetadataResponseTopic::default().with_name(Some(TopicName(str(name))));
    match stream {
        Ok(s) => t.with_partitions(
            (0..s.partitions)
                .map(|p| {
                    let placed = k.storage.catalog.placement(name, p);
                    let leader = placed
                        .as_ref()
                        .and_then(|pl| pl.leader)
                        .filter(|l| !down.contains(l))
                        .map_or(-1, |l| i32::try_from(l).unwrap_or(i32::MAX));
                    let epoch = placed
                        .as_ref()
                        .map_or(0, |pl| i32::try_from(pl.epoch).unwrap_or(i32::MAX));
                    let brokers = |ids: Vec<u64>| -> Vec<BrokerId> {
                        ids.into_iter()
                            .map(|r| BrokerId(i32::try_from(r).unwrap_or(i32::MAX)))
                            .collect()
                    };
                    let (replicas, in_sync) = placed
                        .map(|pl| (brokers(pl.replicas), brokers(pl.in_sync)))
                        .unwrap_or_default();
                    let partition = MetadataResponsePartition::default()
                        .with_partition_index(p as i32)
                        .with_leader_id(BrokerId(leader))
                        .with_leader_epoch(epoch)
                        .with_replica_nodes(replicas)
                        .with_isr_nodes(in_sync);
                    if leader < 0 {
                        partition.with_error_code(code::LEADER_NOT_AVAILABLE)
                    } else {
                        partition
                    }
                })
                .collect(),
        ),
        Err(code) => t.with_error_code(code),
    }
}

async fn metadata(
    k: &Kafka,
    session: &Session,
    r: MetadataRequest,
    version: i16,
) -> MetadataResponse {
    let all = match &r.topics {
        None => true,
        Some(t) => t.is_empty() && version == 0,
    };
    // Leaders a client cannot reach through this listener: down, or without it.
    let brokers = k.brokers(session);
    let down: Vec<u64> = k
        .storage
        .catalog
        .members()
        .into_iter()
        .map(|m| m.id)
        .filter(|id| !brokers.iter().any(|b| i64::from(b.0) == *id as i64))
        .collect();
    let mut topics = Vec::new();
    if all {
        for c in k.storage.catalog.streams() {
            // Topics the principal may not describe are not listed, as Kafka does.
            if guard::may_describe(k, session, &c.name).is_err() {
                continue;
            }
            topics.push(metadata_topic(k, &down, &c.name.clone(), Ok(c)));
        }
    } else {
        let create = version < 4 || r.allow_auto_topic_creation;
        let mut budget = CreationBudget::new(k);
        for t in r.topics.iter().flatten() {
            let Some(name) = &t.name else { continue };
            let stream = match guard::may_describe(k, session, name) {
                Ok(()) => {
                    // Creating a missing topic takes Create on the cluster or the topic;
                    // without it the topic is reported unknown, as Kafka does.
                    let create = create && guard::may_create(k, session, name);
                    topic_stream(k, name, create.then_some(&mut budget)).await
                }
                Err(c) => Err(c),
            };
            if let Err(c) = stream {
                k.metrics.error("Metadata", c);
            }
            topics.push(metadata_topic(k, &down, name, stream));
        }
    }
    MetadataResponse::default()
        .with_brokers(
            brokers
                .into_iter()
                .map(|(id, host, port)| {
                    MetadataResponseBroker::default()
                        .with_node_id(BrokerId(id))
                        .with_host(str(&host))
                        .with_port(port)
                })
                .collect(),
        )
        .with_cluster_id(Some(str("strata")))
        // Admin requests (topics, ACLs) are served by every node.
        .with_controller_id(BrokerId(k.node_id()))
        .with_topics(topics)
}

/// Stores the batches of one partition; returns (error, base offset of the first).
/// `acks` -1 (all) is refused with NOT_ENOUGH_REPLICAS while fewer replicas are in sync
/// than the topic's `min.insync.replicas`, as Kafka does.
async fn produce_partition(
    k: &Kafka,
    stream: &StreamInfo,
    partition: i32,
    records: Option<Bytes>,
    acks: i16,
) -> (i16, i64, i64) {
    let log = match partition_log(k, &stream.name, partition, -1).await {
        Ok(log) => log,
        Err(c) => return (c, -1, -1),
    };
    if acks == -1
        && stream.min_in_sync > 1
        && k.storage
            .catalog
            .placement(&stream.name, partition as u32)
            .is_some_and(|p| (p.in_sync.len() as u32) < stream.min_in_sync)
    {
        return (code::NOT_ENOUGH_REPLICAS, -1, -1);
    }
    let Ok(batches) = crate::record_batches::split(&records.unwrap_or_default()) else {
        return (code::CORRUPT_MESSAGE, -1, -1);
    };
    if batches.is_empty() {
        return (code::CORRUPT_MESSAGE, -1, -1);
    }
    // Everything is checked before anything is stored: nothing of a bad request is kept.
    let mut pending = Vec::with_capacity(batches.len());
    for b in &batches {
        if b.len() > k.config.max_message_bytes as usize {
            return (code::MESSAGE_TOO_LARGE, -1, -1);
        }
        match PendingBatch::from_kafka(b) {
            Ok(p) => pending.push(p),
            Err(_) => return (code::CORRUPT_MESSAGE, -1, -1),
        }
    }
    let mut first = -1;
    for p in pending {
        let records = u64::from(p.record_count());
        let bytes = p.len() as u64;
        let member = |node| k.storage.catalog.is_member(node);
        let leader_epoch = k
            .storage
            .catalog
            .placement(&stream.name, partition as u32)
            .map_or(0, |pl| pl.epoch);
        let result = k
            .producers
            .append(&stream.name, partition, &log, p, member, leader_epoch)
            .await;
        match result {
            Ok(base) => {
                if first < 0 {
                    first = base;
                }
                k.metrics.produced_records.inc_by(records);
                k.metrics.produced_bytes.inc_by(bytes);
                tracing::debug!(
                    topic = stream.name,
                    partition,
                    base,
                    records,
                    bytes,
                    "batch stored"
                );
            }
            Err(code) => {
                tracing::debug!(topic = stream.name, partition, code, "produce refused");
                return (code, -1, -1);
            }
        }
    }
    let log_start = log.offsets().await.map_or(-1, |o| o.log_start as i64);
    (code::NONE, first, log_start)
}

async fn produce(k: &Kafka, session: &Session, r: ProduceRequest) -> ProduceResponse {
    let mut responses = Vec::new();
    let mut budget = CreationBudget::new(k);
    if let Some(id) = &r.transactional_id
        && !guard::allowed(
            k,
            session,
            Operation::Write,
            ResourceType::TransactionalId,
            id,
        )
    {
        return refuse_produce(k, r, code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
    }
    for t in r.topic_data {
        let stream = match guard::may_write(k, session, &t.name) {
            Ok(()) => {
                let create = guard::may_create(k, session, &t.name);
                topic_stream(k, &t.name, create.then_some(&mut budget)).await
            }
            Err(c) => Err(c),
        };
        let mut partitions = Vec::new();
        for p in t.partition_data {
            let (error, base, log_start) = match &stream {
                Ok(s) => produce_partition(k, s, p.index, p.records, r.acks).await,
                Err(c) => (*c, -1, -1),
            };
            k.metrics.error("Produce", error);
            partitions.push(
                PartitionProduceResponse::default()
                    .with_index(p.index)
                    .with_error_code(error)
                    .with_base_offset(base)
                    .with_log_start_offset(log_start),
            );
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(t.name)
                .with_partition_responses(partitions),
        );
    }
    ProduceResponse::default().with_responses(responses)
}

/// Every partition of a Produce answered with `error`.
fn refuse_produce(k: &Kafka, r: ProduceRequest, error: i16) -> ProduceResponse {
    k.metrics.error("Produce", error);
    ProduceResponse::default().with_responses(
        r.topic_data
            .into_iter()
            .map(|t| {
                TopicProduceResponse::default()
                    .with_partition_responses(
                        t.partition_data
                            .iter()
                            .map(|p| {
                                PartitionProduceResponse::default()
                                    .with_index(p.index)
                                    .with_error_code(error)
                                    .with_base_offset(-1)
                                    .with_log_start_offset(-1)
                            })
                            .collect(),
                    )
                    .with_name(t.name)
            })
            .collect(),
    )
}

/// InitProducerId: idempotence takes IdempotentWrite on the cluster or Write on some
/// topic (as Kafka 3 allows), a transactional id Write on that id.
fn init_producer_id(
    k: &Kafka,
    session: &Session,
    r: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let refused = match &r.transactional_id {
        Some(id) => (!guard::allowed(
            k,
            session,
            Operation::Write,
            ResourceType::TransactionalId,
            id,
        ))
        .then_some(code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED),
        None => (!guard::allowed(
            k,
            session,
            Operation::IdempotentWrite,
            ResourceType::Cluster,
            CLUSTER,
        ) && !guard::writes_some_topic(k, session))
        .then_some(code::CLUSTER_AUTHORIZATION_FAILED),
    };
    match refused {
        Some(c) => {
            k.metrics.error("InitProducerId", c);
            InitProducerIdResponse::default()
                .with_error_code(c)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1)
        }
        None => k.producers.init(),
    }
}

/// The partition log of `topic`/`partition`, or the Kafka error code: a partition this
/// node does not lead is NOT_LEADER_OR_FOLLOWER (the client refreshes its metadata and
/// goes to the leader), one no node leads now LEADER_NOT_AVAILABLE. A client naming the
/// leader epoch it knows (`current_leader_epoch`, -1: none) is told FENCED_LEADER_EPOCH
/// when the partition moved on since, UNKNOWN_LEADER_EPOCH when this node has not
/// learnt of that epoch yet.
async fn partition_log(
    k: &Kafka,
    topic: &str,
    partition: i32,
    current_leader_epoch: i32,
) -> Result<Arc<dyn Partition>, i16> {
    let partition = u32::try_from(partition).map_err(|_| code::UNKNOWN_TOPIC_OR_PARTITION)?;
    if let Some(placed) = k.storage.catalog.placement(topic, partition) {
        match placed.leader {
            None => return Err(code::LEADER_NOT_AVAILABLE),
            Some(l) if l != k.storage.catalog.node_id() => {
                return Err(code::NOT_LEADER_OR_FOLLOWER);
            }
            Some(_) => {}
        }
        if let Ok(known) = u64::try_from(current_leader_epoch) {
            match known.cmp(&placed.epoch) {
                std::cmp::Ordering::Less => return Err(code::FENCED_LEADER_EPOCH),
                std::cmp::Ordering::Greater => return Err(code::UNKNOWN_LEADER_EPOCH),
                std::cmp::Ordering::Equal => {}
            }
        }
    }
    // Only while this node leads: a write forwarded to a new leader would bypass the
    // producer sequences kept there.
    k.storage
        .partition_led_here(topic, partition)
        .await
        .map_err(|e| storage_code(&e))
}

/// The partition a fetch may read (`readable`: the ACL's answer for its topic), with its
/// offsets now, or the Kafka error code.
async fn fetchable(
    k: &Kafka,
    readable: Result<(), i16>,
    topic: &str,
    p: &kafka_protocol::messages::fetch_request::FetchPartition,
) -> Result<(Arc<dyn Partition>, Offsets), i16> {
    readable?;
    let log = partition_log(k, topic, p.partition, p.current_leader_epoch).await?;
    let offsets = log.offsets().await.map_err(|e| storage_code(&e))?;
    Ok((log, offsets))
}

struct FetchSlot {
    topic: usize,
    log: Option<Arc<dyn Partition>>,
    data: PartitionData,
}

async fn fetch(k: &Kafka, session: &Session, r: FetchRequest) -> FetchResponse {
    let wait = (r.max_wait_ms.max(0) as u64).min(k.config.max_fetch_wait_ms);
    let deadline = Instant::now() + Duration::from_millis(wait);
    // The response's size is the server's to bound, whatever the client asks for.
    let cap = k.config.max_fetch_bytes.max(1) as usize;
    let max_bytes = if r.max_bytes > 0 {
        (r.max_bytes as usize).min(cap)
    } else {
        cap
    };
    let min_bytes = r.min_bytes.max(0) as usize;
    loop {
        let mut slots = Vec::new();
        let mut total = 0usize;
        for (ti, t) in r.topics.iter().enumerate() {
            let readable = guard::may_read(k, session, &t.topic);
            for p in &t.partitions {
                let mut data = PartitionData::default().with_partition_index(p.partition);
                let (log, offsets) = match fetchable(k, readable, &t.topic, p).await {
                    Ok(found) => found,
                    Err(c) => {
                        k.metrics.error("Fetch", c);
                        slots.push(FetchSlot {
                            topic: ti,
                            log: None,
                            data: data.with_error_code(c).with_high_watermark(-1),
                        });
                        continue;
                    }
                };
                data = data
                    .with_high_watermark(offsets.end as i64)
                    .with_last_stable_offset(offsets.end as i64)
                    .with_log_start_offset(offsets.log_start as i64);
                let from = p.fetch_offset;
                if from < offsets.log_start as i64 || from > offsets.end as i64 {
                    k.metrics.error("Fetch", code::OFFSET_OUT_OF_RANGE);
                    data = data.with_error_code(code::OFFSET_OUT_OF_RANGE);
                } else if (from as u64) < offsets.end && total < max_bytes {
                    let budget = (p.partition_max_bytes.max(1) as usize).min(max_bytes - total);
                    match log.read(from as u64, budget).await {
                        Ok(batches) => {
                            // One batch is sent as the stored bytes; several are joined.
                            let records = match batches.as_slice() {
                                [one] => one.kafka_bytes(),
                                many => {
                                    let mut joined = BytesMut::new();
                                    for b in many {
                                        joined.extend_from_slice(&b.kafka_bytes());
                                    }
                                    joined.freeze()
                                }
                            };
                            total += records.len();
                            k.metrics.fetched_bytes.inc_by(records.len() as u64);
                            tracing::debug!(
                                topic = t.topic.as_str(),
                                partition = p.partition,
                                from,
                                bytes = records.len(),
                                "fetched"
                            );
                            data = data.with_records(Some(records));
                        }
                        Err(StoreError::OffsetOutOfRange { .. }) => {
                            data = data.with_error_code(code::OFFSET_OUT_OF_RANGE);
                        }
                        Err(e) => {
                            tracing::warn!(topic = %t.topic.0, partition = p.partition, error = %e, "fetch read failed");
                            let c = storage_code(&e);
                            k.metrics.error("Fetch", c);
                            data = data.with_error_code(c);
                        }
                    }
                }
                slots.push(FetchSlot {
                    topic: ti,
                    log: Some(log),
                    data,
                });
            }
        }
        let now = Instant::now();
        if total >= min_bytes.max(1) || now >= deadline || slots.iter().all(|s| s.log.is_none()) {
            let mut responses: Vec<FetchableTopicResponse> = r
                .topics
                .iter()
                .map(|t| FetchableTopicResponse::default().with_topic(t.topic.clone()))
                .collect();
            for s in slots {
                responses[s.topic].partitions.push(s.data);
            }
            return FetchResponse::default().with_responses(responses);
        }
        // Long poll: wait for any partition to grow past what was seen, or the deadline.
        let waits: Vec<_> = slots
            .iter()
            .filter_map(|s| {
                let log = s.log.clone()?;
                let end = s.data.high_watermark.max(0) as u64;
                Some(async move { log.wait_for(end).await }.boxed())
            })
            .collect();
        if waits.is_empty() {
            tokio::time::sleep_until(deadline.into()).await;
        } else {
            let _ = tokio::time::timeout_at(deadline.into(), select_all(waits)).await;
        }
    }
}

async fn list_offsets(k: &Kafka, session: &Session, r: ListOffsetsRequest) -> ListOffsetsResponse {
    let mut topics = Vec::new();
    for t in r.topics {
        let mut partitions = Vec::new();
        for p in t.partitions {
            let mut out = ListOffsetsPartitionResponse::default()
                .with_partition_index(p.partition_index)
                .with_timestamp(-1)
                .with_offset(-1);
            let log = match guard::may_describe(k, session, &t.name) {
                Ok(()) => {
                    partition_log(k, &t.name, p.partition_index, p.current_leader_epoch).await
                }
                Err(c) => Err(c),
            };
            match log {
                Err(c) => {
                    k.metrics.error("ListOffsets", c);
                    out = out.with_error_code(c);
                }
                Ok(log) => match p.timestamp {
                    -1 | -2 => match log.offsets().await {
                        Ok(o) if p.timestamp == -1 => out = out.with_offset(o.end as i64),
                        Ok(o) => out = out.with_offset(o.log_start as i64),
                        Err(e) => out = out.with_error_code(storage_code(&e)),
                    },
                    ts => match log.offset_for_timestamp(ts).await {
                        Ok(Some(o)) => {
                            out = out
                                .with_offset(o as i64)
                                .with_timestamp(record_timestamp(&log, o).await.unwrap_or(ts))
                        }
                        Ok(None) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "offset for timestamp failed");
                            out = out.with_error_code(storage_code(&e));
                        }
                    },
                },
            }
            partitions.push(out);
        }
        topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions),
        );
    }
    ListOffsetsResponse::default().with_topics(topics)
}

/// Where each asked-for leader epoch ends in the partition's log: the largest epoch at most
/// the one asked for and the offset after its records (the log's end for the newest), so
/// a consumer that read records of that epoch sees whether the log it reads was truncated
/// below its position.
async fn offset_for_leader_epoch(
    k: &Kafka,
    session: &Session,
    r: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    use kafka_protocol::messages::offset_for_leader_epoch_response::{
        EpochEndOffset, OffsetForLeaderTopicResult,
    };
    let mut topics = Vec::new();
    for t in r.topics {
        let mut partitions = Vec::new();
        for p in t.partitions {
            let out = EpochEndOffset::default()
                .with_partition(p.partition)
                .with_leader_epoch(-1)
                .with_end_offset(-1);
            let log = match guard::may_describe(k, session, &t.topic) {
                Ok(()) => partition_log(k, &t.topic, p.partition, p.current_leader_epoch).await,
                Err(c) => Err(c),
            };
            let answer = match log {
                Ok(log) => log
                    .end_offset_for_epoch(p.leader_epoch)
                    .await
                    .map_err(|e| storage_code(&e)),
                Err(c) => Err(c),
            };
            partitions.push(match answer {
                Ok(Some((epoch, end))) => out
                    .with_leader_epoch(epoch)
                    .with_end_offset(i64::try_from(end).unwrap_or(i64::MAX)),
                // No epoch that old is held: Kafka's UNDEFINED answer, -1 and -1.
                Ok(None) => out,
                Err(c) => {
                    k.metrics.error("OffsetForLeaderEpoch", c);
                    out.with_error_code(c)
                }
            });
        }
        topics.push(
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic)
                .with_partitions(partitions),
        );
    }
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}

/// The timestamp of the record at `offset` (when its batch can be decoded here).
async fn record_timestamp(log: &Arc<dyn Partition>, offset: u64) -> Option<i64> {
    let batches = log.read(offset, 1).await.ok()?;
    let batch = batches.first()?;
    batch
        .records()
        .ok()?
        .filter_map(Result::ok)
        .find(|r| r.offset == offset)
        .map(|r| r.timestamp)
}

fn find_coordinator(
    k: &Kafka,
    session: &Session,
    r: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    // Finding a group's coordinator takes Describe on the group; a transaction's, Describe
    // on its transactional id.
    let refused = |key: &str| {
        let (resource, error) = match r.key_type {
            1 => (
                ResourceType::TransactionalId,
                code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
            ),
            _ => (ResourceType::Group, code::GROUP_AUTHORIZATION_FAILED),
        };
        let refused = !guard::allowed(k, session, Operation::Describe, resource, key);
        if refused {
            k.metrics.error("FindCoordinator", error);
        }
        refused.then_some(error)
    };
    if version >= 4 {
        FindCoordinatorResponse::default().with_coordinators(
            r.coordinator_keys
                .iter()
                .map(|key| {
                    let entry = CoordinatorEntry::default().with_key(key.clone());
                    match refused(key) {
                        Some(error) => entry.with_error_code(error).with_node_id(BrokerId(-1)),
                        None => {
                            let (id, host, port) = k.coordinator(session, key);
                            entry
                                .with_node_id(BrokerId(id))
                                .with_host(str(&host))
                                .with_port(port)
                        }
                    }
                })
                .collect(),
        )
    } else {
        match refused(&r.key) {
            Some(error) => FindCoordinatorResponse::default()
                .with_error_code(error)
                .with_node_id(BrokerId(-1)),
            None => {
                let (id, host, port) = k.coordinator(session, &r.key);
                FindCoordinatorResponse::default()
                    .with_node_id(BrokerId(id))
                    .with_host(str(&host))
                    .with_port(port)
            }
        }
    }
}

/// The `min.insync.replicas` a CreateTopics request sets for a topic, if it sets one;
/// `Err` with the reason for a value that is not a positive number. Other configs are
/// not applied (the node's stream defaults hold).
fn min_in_sync_config(
    configs: &[kafka_protocol::messages::create_topics_request::CreatableTopicConfig],
) -> Result<Option<u32>, String> {
    let Some(c) = configs.iter().find(|c| &*c.name == "min.insync.replicas") else {
        return Ok(None);
    };
    let value = c.value.as_deref().unwrap_or("");
    match value.parse::<u32>() {
        Ok(n) if n >= 1 => Ok(Some(n)),
        _ => Err(format!(
            "min.insync.replicas must be a positive number, not {value:?}"
        )),
    }
}

async fn create_topics(
    k: &Kafka,
    session: &Session,
    r: CreateTopicsRequest,
) -> CreateTopicsResponse {
    let mut topics = Vec::new();
    let mut budget = CreationBudget::new(k);
    for t in r.topics {
        let partitions = if t.num_partitions < 0 {
            k.config.default_partitions as i32
        } else {
            t.num_partitions
        };
        // -1: the cluster's default (one copy); otherwise 1 to 7 copies.
        let copies = u32::try_from(t.replication_factor).ok();
        let min_in_sync = min_in_sync_config(&t.configs);
        let mut result = CreatableTopicResult::default()
            .with_name(t.name.clone())
            .with_num_partitions(partitions)
            .with_replication_factor(t.replication_factor.max(1));
        let mut message = None;
        let code = if k.owned.get(&t.name).is_some() {
            message = Some("a name another frontend owns".to_string());
            code::TOPIC_AUTHORIZATION_FAILED
        } else if !guard::may_create(k, session, &t.name) {
            code::TOPIC_AUTHORIZATION_FAILED
        } else if k.storage.catalog.stream(&t.name).is_some() {
            code::TOPIC_ALREADY_EXISTS
        } else if partitions == 0 || partitions > 65536 {
            code::INVALID_PARTITIONS
        } else if t.replication_factor == 0 || t.replication_factor < -1 || t.replication_factor > 7
        {
            code::INVALID_REPLICATION_FACTOR
        } else if validate_stream_name(&t.name).is_err() || t.name.len() > 249 {
            code::INVALID_TOPIC
        } else if let Err(why) = &min_in_sync {
            message = Some(why.clone());
            code::INVALID_CONFIG
        } else if let Ok(Some(min)) = min_in_sync
            && copies.is_some_and(|c| min > c)
        {
            message = Some(format!(
                "min.insync.replicas {min} is more than the topic's {} copies",
                t.replication_factor
            ));
            code::INVALID_CONFIG
        } else if let Err(why) = budget.take(k, partitions as u32) {
            message = Some(why);
            code::POLICY_VIOLATION
        } else if r.validate_only {
            code::NONE
        } else {
            match create_topic(
                k,
                &t.name,
                partitions as u32,
                copies,
                min_in_sync.unwrap_or(None),
            )
            .await
            {
                Ok(_) => code::NONE,
                Err(c) => c,
            }
        };
        k.metrics.error("CreateTopics", code);
        if code != code::NONE {
            result = result
                .with_error_code(code)
                .with_error_message(message.map(StrBytes::from_string))
                .with_num_partitions(-1)
                .with_replication_factor(-1);
        }
        topics.push(result);
    }
    CreateTopicsResponse::default().with_topics(topics)
}

async fn delete_topics(
    k: &Kafka,
    session: &Session,
    r: DeleteTopicsRequest,
) -> DeleteTopicsResponse {
    let names: Vec<TopicName> = r
        .topic_names
        .into_iter()
        .chain(r.topics.into_iter().filter_map(|t| t.name))
        .collect();
    let mut responses = Vec::new();
    for name in names {
        let deleted = match guard::may_alter(k, session, &name, Operation::Delete) {
            Ok(()) => k.storage.catalog.delete_stream(&name).await,
            Err(c) => {
                k.metrics.error("DeleteTopics", c);
                let why = if k.owned.get(&name).is_some() {
                    "owned by another frontend"
                } else {
                    "not authorized"
                };
                responses.push(
                    DeletableTopicResult::default()
                        .with_name(Some(name))
                        .with_error_code(c)
                        .with_error_message(Some(str(why))),
                );
                continue;
            }
        };
        let code = match deleted {
            Ok(()) => code::NONE,
            Err(StoreError::UnknownStream(_)) => code::UNKNOWN_TOPIC_OR_PARTITION,
            Err(e) => {
                tracing::warn!(topic = %name.0, error = %e, "cannot delete topic");
                code::UNKNOWN_SERVER_ERROR
            }
        };
        k.metrics.error("DeleteTopics", code);
        responses.push(
            DeletableTopicResult::default()
                .with_name(Some(name))
                .with_error_code(code),
        );
    }
    DeleteTopicsResponse::default().with_responses(responses)
}

async fn create_partitions(
    k: &Kafka,
    session: &Session,
    r: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut results = Vec::new();
    for t in r.topics {
        let alterable = guard::may_alter(k, session, &t.name, Operation::Alter);
        let (code, message) = match k.storage.catalog.stream(&t.name) {
            _ if alterable.is_err() && k.owned.get(&t.name).is_none() => {
                (code::TOPIC_AUTHORIZATION_FAILED, None)
            }
            None => (code::UNKNOWN_TOPIC_OR_PARTITION, None),
            Some(_) if alterable.is_err() => (
                code::TOPIC_AUTHORIZATION_FAILED,
                Some("owned by another frontend".to_string()),
            ),
            Some(s)
                if t.count > s.partitions as i32
                    && let Err(why) =
                        guard::node_room(k, (t.count as u32 - s.partitions) as u64, false) =>
            {
                (code::POLICY_VIOLATION, Some(why))
            }
            Some(s) if t.count <= s.partitions as i32 => (
                code::INVALID_PARTITIONS,
                Some(format!(
                    "topic has {} partitions; the count can only grow",
                    s.partitions
                )),
            ),
            Some(_) if t.count > 65536 => (
                code::INVALID_PARTITIONS,
                Some("at most 65536 partitions".to_string()),
            ),
            Some(_) if r.validate_only => (code::NONE, None),
            Some(_) => match k
                .storage
                .catalog
                .add_partitions(&t.name, t.count as u32)
                .await
            {
                Ok(_) => (code::NONE, None),
                Err(e) => (code::INVALID_PARTITIONS, Some(e.to_string())),
            },
        };
        k.metrics.error("CreatePartitions", code);
        results.push(
            CreatePartitionsTopicResult::default()
                .with_name(t.name)
                .with_error_code(code)
                .with_error_message(message.map(StrBytes::from_string)),
        );
    }
    CreatePartitionsResponse::default().with_results(results)
}

fn describe_configs(
    k: &Kafka,
    session: &Session,
    r: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    const TOPIC: i8 = 2;
    const BROKER: i8 = 4;
    let results = r
        .resources
        .into_iter()
        .map(|res| {
            let mut result = DescribeConfigsResult::default()
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name.clone());
            let entries: Vec<(String, String)> = match res.resource_type {
                TOPIC => match guard::may_describe(k, session, &res.resource_name)
                    .and_then(|()| {
                        if guard::allowed(
                            k,
                            session,
                            Operation::DescribeConfigs,
                            ResourceType::Topic,
                            &res.resource_name,
                        ) {
                            Ok(())
                        } else {
                            Err(code::TOPIC_AUTHORIZATION_FAILED)
                        }
                    })
                    .and_then(|()| {
                        k.storage
                            .catalog
                            .stream(&res.resource_name)
                            .ok_or(code::UNKNOWN_TOPIC_OR_PARTITION)
                    }) {
                    Ok(c) => {
                        vec![
                            ("cleanup.policy".into(), "delete".into()),
                            (
                                "retention.ms".into(),
                                c.retention_ms.map_or(-1, |v| v as i64).to_string(),
                            ),
                            (
                                "retention.bytes".into(),
                                c.retention_bytes.map_or(-1, |v| v as i64).to_string(),
                            ),
                            ("segment.bytes".into(), c.segment_bytes.to_string()),
                            ("segment.ms".into(), c.segment_ms.to_string()),
                            (
                                "max.message.bytes".into(),
                                k.config.max_message_bytes.to_string(),
                            ),
                            ("min.insync.replicas".into(), c.min_in_sync.to_string()),
                            ("strata.storage.class".into(), c.storage_class.clone()),
                            ("strata.fsync".into(), c.fsync.clone()),
                        ]
                    }
                    Err(c) => {
                        result = result.clone().with_error_code(c);
                        Vec::new()
                    }
                },
                BROKER if guard::on_cluster(k, session, Operation::DescribeConfigs).is_err() => {
                    result = result
                        .clone()
                        .with_error_code(code::CLUSTER_AUTHORIZATION_FAILED);
                    Vec::new()
                }
                BROKER => vec![
                    (
                        "auto.create.topics.enable".into(),
                        k.config.auto_create_topics.to_string(),
                    ),
                    (
                        "num.partitions".into(),
                        k.config.default_partitions.to_string(),
                    ),
                    (
                        "message.max.bytes".into(),
                        k.config.max_message_bytes.to_string(),
                    ),
                ],
                _ => {
                    result = result.clone().with_error_code(code::INVALID_REQUEST);
                    Vec::new()
                }
            };
            k.metrics.error("DescribeConfigs", result.error_code);
            let wanted = res.configuration_keys;
            result.with_configs(
                entries
                    .into_iter()
                    .filter(|(name, _)| {
                        wanted
                            .as_ref()
                            .is_none_or(|w| w.iter().any(|x| x.as_str() == name))
                    })
                    .map(|(name, value)| {
                        DescribeConfigsResourceResult::default()
                            .with_name(StrBytes::from_string(name))
                            .with_value(Some(StrBytes::from_string(value)))
                            .with_read_only(true)
                            .with_config_source(5)
                    })
                    .collect(),
            )
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}
