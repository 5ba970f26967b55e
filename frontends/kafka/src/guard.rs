//! What a Kafka client may do with streams other frontends own, and the bounds on creating
//! topics: checked before a request touches the journal.

use strata_frontend::owned::Ownership;
use strata_frontend::security::kafka_acl::{CLUSTER, Operation, ResourceType};

use crate::code;
use crate::session::Session;
use crate::state::Kafka;

/// The principal a Kafka connection acts as: its SASL user, or `ANONYMOUS`.
pub fn principal(session: &Session) -> &str {
    session.user.as_deref().unwrap_or("ANONYMOUS")
}

/// Whether the Kafka ACLs let the connection do `operation` on a resource: always while
/// `[kafka] authorizer` is off, and for the configured super users.
pub fn allowed(
    k: &Kafka,
    session: &Session,
    operation: Operation,
    resource: ResourceType,
    name: &str,
) -> bool {
    decide(
        k,
        session,
        operation,
        resource,
        name,
        k.config.allow_if_no_acl,
    )
}

/// As [`allowed`], but a resource no binding names is refused even with
/// `allow_if_no_acl` (the ACL APIs themselves).
pub fn allowed_strictly(
    k: &Kafka,
    session: &Session,
    operation: Operation,
    resource: ResourceType,
    name: &str,
) -> bool {
    decide(k, session, operation, resource, name, false)
}

fn decide(
    k: &Kafka,
    session: &Session,
    operation: Operation,
    resource: ResourceType,
    name: &str,
    allow_if_no_acl: bool,
) -> bool {
    if !k.config.authorizer {
        return true;
    }
    let user = principal(session);
    if k.config.super_users.iter().any(|u| u == user) {
        return true;
    }
    let ok = k.security.kafka_acl().authorize(
        &format!("User:{user}"),
        &host_of(session),
        operation,
        resource,
        name,
        allow_if_no_acl,
    );
    if !ok {
        k.metrics
            .errors
            .with_label_values(&["authorizer", resource_label(resource)])
            .inc();
    }
    ok
}

/// Whether some ACL binding lets the connection write to some topic.
pub fn writes_some_topic(k: &Kafka, session: &Session) -> bool {
    if !k.config.authorizer {
        return true;
    }
    let user = principal(session);
    if k.config.super_users.iter().any(|u| u == user) {
        return true;
    }
    k.security.kafka_acl().grants_any(
        &format!("User:{user}"),
        &host_of(session),
        Operation::Write,
        ResourceType::Topic,
    )
}

fn host_of(session: &Session) -> String {
    session
        .peer
        .map(|p| p.ip().to_canonical().to_string())
        .unwrap_or_default()
}

fn resource_label(r: ResourceType) -> &'static str {
    match r {
        ResourceType::Topic => "topic",
        ResourceType::Group => "group",
        ResourceType::Cluster => "cluster",
        ResourceType::TransactionalId => "transactional_id",
    }
}

/// `operation` on topic `topic`, or TOPIC_AUTHORIZATION_FAILED.
fn on_topic(k: &Kafka, session: &Session, operation: Operation, topic: &str) -> Result<(), i16> {
    if allowed(k, session, operation, ResourceType::Topic, topic) {
        Ok(())
    } else {
        Err(code::TOPIC_AUTHORIZATION_FAILED)
    }
}

/// Whether the connection may read `topic` (Fetch): the ACL's Read, and not a frontend's
/// internal stream unless the principal is listed in `internal_stream_readers`.
pub fn may_read(k: &Kafka, session: &Session, topic: &str) -> Result<(), i16> {
    internal_readable(k, session, topic)?;
    on_topic(k, session, Operation::Read, topic)
}

/// Whether the connection may see `topic` (Metadata, ListOffsets, configurations): the
/// ACL's Describe, and internal streams as for reading.
pub fn may_describe(k: &Kafka, session: &Session, topic: &str) -> Result<(), i16> {
    internal_readable(k, session, topic)?;
    on_topic(k, session, Operation::Describe, topic)
}

fn internal_readable(k: &Kafka, session: &Session, topic: &str) -> Result<(), i16> {
    match k.owned.get(topic) {
        Some((_, Ownership::Internal)) => {
            let who = principal(session);
            if k.config.internal_stream_readers.iter().any(|p| p == who) {
                Ok(())
            } else {
                Err(code::TOPIC_AUTHORIZATION_FAILED)
            }
        }
        _ => Ok(()),
    }
}

/// Whether the connection may append to `topic`: the ACL's Write, never to an internal
/// stream.
pub fn may_write(k: &Kafka, session: &Session, topic: &str) -> Result<(), i16> {
    match k.owned.get(topic) {
        Some((_, Ownership::Internal)) => Err(code::TOPIC_AUTHORIZATION_FAILED),
        _ => on_topic(k, session, Operation::Write, topic),
    }
}

/// Whether the connection may delete `topic` or change it (`operation`: Delete or Alter):
/// never a stream a frontend owns.
pub fn may_alter(
    k: &Kafka,
    session: &Session,
    topic: &str,
    operation: Operation,
) -> Result<(), i16> {
    match k.owned.get(topic) {
        Some(_) => Err(code::TOPIC_AUTHORIZATION_FAILED),
        None => on_topic(k, session, operation, topic),
    }
}

/// Whether the connection may create `topic`: Create on the cluster or on the topic.
pub fn may_create(k: &Kafka, session: &Session, topic: &str) -> bool {
    !k.config.authorizer
        || allowed(
            k,
            session,
            Operation::Create,
            ResourceType::Cluster,
            CLUSTER,
        )
        || allowed(k, session, Operation::Create, ResourceType::Topic, topic)
}

/// `operation` on consumer group `group`, coordinated here: GROUP_AUTHORIZATION_FAILED or
/// NOT_COORDINATOR otherwise.
pub fn on_group(
    k: &Kafka,
    session: &Session,
    operation: Operation,
    group: &str,
) -> Result<(), i16> {
    if !allowed(k, session, operation, ResourceType::Group, group) {
        Err(code::GROUP_AUTHORIZATION_FAILED)
    } else if !k.coordinates(session, group) {
        // Another node coordinates it: the client asks FindCoordinator again.
        Err(code::NOT_COORDINATOR)
    } else {
        Ok(())
    }
}

/// `operation` on the cluster, or CLUSTER_AUTHORIZATION_FAILED.
pub fn on_cluster(k: &Kafka, session: &Session, operation: Operation) -> Result<(), i16> {
    if allowed(k, session, operation, ResourceType::Cluster, CLUSTER) {
        Ok(())
    } else {
        Err(code::CLUSTER_AUTHORIZATION_FAILED)
    }
}

/// Topics one request may still create, counted down as it creates them.
#[derive(Debug)]
pub struct CreationBudget(usize);

impl CreationBudget {
    /// The budget of one request.
    pub fn new(k: &Kafka) -> Self {
        CreationBudget(k.config.max_topics_created_per_request)
    }

    /// Takes one creation of a topic with `partitions` partitions from the request's
    /// budget and checks the node's bounds on topics and partitions. The error says why,
    /// for CreateTopics' error message.
    pub fn take(&mut self, k: &Kafka, partitions: u32) -> Result<(), String> {
        if self.0 == 0 {
            k.metrics
                .errors
                .with_label_values(&["create", "per_request"])
                .inc();
            return Err(format!(
                "one request may create at most {} topics",
                k.config.max_topics_created_per_request
            ));
        }
        node_room(k, u64::from(partitions), true)?;
        self.0 -= 1;
        Ok(())
    }
}

/// Checks that `partitions` more partitions (in a new stream when `new_stream`) fit the
/// node's bounds.
pub fn node_room(k: &Kafka, partitions: u64, new_stream: bool) -> Result<(), String> {
    let streams = k.storage.catalog.streams();
    if new_stream && streams.len() >= k.config.max_topics {
        k.metrics
            .errors
            .with_label_values(&["create", "max_topics"])
            .inc();
        return Err(format!(
            "the node holds its maximum of {} topics",
            k.config.max_topics
        ));
    }
    let held: u64 = streams.iter().map(|s| u64::from(s.partitions)).sum();
    if held + partitions > k.config.max_partitions {
        k.metrics
            .errors
            .with_label_values(&["create", "max_partitions"])
            .inc();
        return Err(format!(
            "the node holds {held} partitions of at most {}",
            k.config.max_partitions
        ));
    }
    Ok(())
}
