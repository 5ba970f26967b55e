//! What a Kafka client may do with streams other frontends own, and the bounds on creating
//! topics: checked before a request touches the journal.

use strata_frontend::owned::Ownership;

use crate::frontend::Kafka;
use crate::handlers::{Session, code};

/// The principal a Kafka connection acts as: its SASL user, or `ANONYMOUS`.
pub fn principal(session: &Session) -> &str {
    session.user.as_deref().unwrap_or("ANONYMOUS")
}

/// Whether the connection may read `topic`: not a frontend's internal stream, unless the
/// principal is listed in `internal_stream_readers`.
pub fn may_read(k: &Kafka, session: &Session, topic: &str) -> Result<(), i16> {
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

/// Whether the connection may append to `topic`: never to an internal stream.
pub fn may_write(k: &Kafka, topic: &str) -> Result<(), i16> {
    match k.owned.get(topic) {
        Some((_, Ownership::Internal)) => Err(code::TOPIC_AUTHORIZATION_FAILED),
        _ => Ok(()),
    }
}

/// Whether the connection may delete `topic` or change its partitions: never a stream a
/// frontend owns.
pub fn may_alter(k: &Kafka, topic: &str) -> Result<(), i16> {
    match k.owned.get(topic) {
        Some(_) => Err(code::TOPIC_AUTHORIZATION_FAILED),
        None => Ok(()),
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
    let streams = k.journal.list_streams();
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
