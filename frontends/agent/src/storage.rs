//! Where an agent object (queue, mailbox, topic) keeps its messages, chosen per object
//! when it is created: `memory`, `local` (segment files) or `object` (written straight to
//! object storage, the default).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use strata_frontend::seams::{Partition, Storage, StoreError, StreamInfo, StreamSpec};

use crate::error::AgentError;

/// The durability of one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageClass {
    /// Held in the node's memory: acknowledged at once, lost when the node stops.
    Memory,
    /// Segment files on the node's disk, with the journal's fsync policy.
    Local,
    /// Written to object storage (S3): acknowledged once the object holding it is stored.
    Object,
}

impl StorageClass {
    /// The journal class that stores it.
    pub fn journal_class(self) -> &'static str {
        match self {
            StorageClass::Memory => "memory",
            StorageClass::Local => "segment",
            StorageClass::Object => "object",
        }
    }

    /// The journal class that stores stream `stream` of this class: a `local` mailbox goes
    /// to the journal's `rocksdb` class (one shared store: an agent's mailbox costs no files
    /// of its own, so a node holds many thousands), any other `local` queue or topic to
    /// segment files. In a cluster every `local` stream is of segment files, the class
    /// whose partitions are replicated.
    pub fn journal_class_for(self, stream: &str, clustered: bool) -> &'static str {
        match self {
            StorageClass::Local if !clustered && stream.starts_with("agent.queue._mbx-") => {
                "rocksdb"
            }
            other => other.journal_class(),
        }
    }

    /// The class of an existing stream, as the catalog reports it.
    pub fn of(info: &StreamInfo) -> Option<StorageClass> {
        match info.storage_class.as_str() {
            "memory" => Some(StorageClass::Memory),
            "segment" | "rocksdb" => Some(StorageClass::Local),
            "object" => Some(StorageClass::Object),
            _ => None,
        }
    }

    /// Its name in the API.
    pub fn name(self) -> &'static str {
        match self {
            StorageClass::Memory => "memory",
            StorageClass::Local => "local",
            StorageClass::Object => "object",
        }
    }
}

/// The classes a node offers: its default, whether it has object storage at all, which
/// classes clients may ask for, and how many memory-class objects it keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classes {
    /// Given to an object created without a class.
    pub default: StorageClass,
    /// Whether the node is in a cluster: its `local` objects are then replicated.
    pub clustered: bool,
    /// Whether the node has object storage (`[journal.object_store]`).
    pub object: bool,
    /// The classes a client may ask for.
    pub allowed: Vec<StorageClass>,
    /// Agent streams of class `memory` the node keeps.
    pub max_memory: usize,
}

impl Default for Classes {
    fn default() -> Self {
        Classes {
            default: StorageClass::Local,
            clustered: false,
            object: false,
            allowed: vec![StorageClass::Memory, StorageClass::Local],
            max_memory: 16,
        }
    }
}

impl Classes {
    /// The class asked for (the default when none), refused when the node cannot offer it
    /// or does not let clients ask for it.
    pub fn pick(&self, asked: Option<StorageClass>) -> Result<StorageClass, AgentError> {
        let class = asked.unwrap_or(self.default);
        if asked.is_some() && !self.allowed.contains(&class) {
            return Err(AgentError::bad_request(
                "storage_not_allowed",
                format!(
                    "this node does not let clients ask for {} ([agent] storage_classes)",
                    class.name()
                ),
            ));
        }
        self.usable(class)?;
        Ok(class)
    }

    /// Refuses an object of `class` the node cannot serve: `object` without object
    /// storage (its sends would be kept nowhere).
    pub fn usable(&self, class: StorageClass) -> Result<(), AgentError> {
        if class == StorageClass::Object && !self.object {
            return Err(AgentError::bad_request(
                "storage_unavailable",
                "this node has no object storage ([journal.object_store]); use memory or local",
            ));
        }
        Ok(())
    }

    /// [`ensure_stream`], refused (429 `max_memory_objects`) when it would create one more
    /// memory-class agent stream than the node keeps.
    pub async fn ensure(
        &self,
        storage: &Storage,
        stream: &str,
        partitions: u32,
        class: StorageClass,
    ) -> Result<bool, AgentError> {
        if class == StorageClass::Memory && storage.catalog.stream(stream).is_none() {
            let held = storage
                .catalog
                .streams()
                .iter()
                .filter(|s| s.name.starts_with("agent.") && s.storage_class == "memory")
                .count();
            if held >= self.max_memory {
                return Err(AgentError::full(
                    "max_memory_objects",
                    format!(
                        "this node keeps at most {} memory-class queues and topics",
                        self.max_memory
                    ),
                ));
            }
        }
        ensure_stream_in(storage, stream, partitions, class, self.clustered).await
    }
}

/// Makes sure stream `stream` (of `partitions` partitions) exists, created in `class` when
/// it does not: whether this call created it.
pub async fn ensure_stream(
    storage: &Storage,
    stream: &str,
    partitions: u32,
    class: StorageClass,
) -> Result<bool, AgentError> {
    ensure_stream_in(storage, stream, partitions, class, false).await
}

/// [`ensure_stream`] on a node in a cluster (`clustered`) or not.
async fn ensure_stream_in(
    storage: &Storage,
    stream: &str,
    partitions: u32,
    class: StorageClass,
    clustered: bool,
) -> Result<bool, AgentError> {
    if storage.catalog.stream(stream).is_some() {
        return Ok(false);
    }
    let spec = StreamSpec::new(stream, partitions)
        .with_storage_class(class.journal_class_for(stream, clustered));
    storage.ensure_stream(spec).await?;
    // Used at once by the caller: a new stream's leaders serve it first (all of them
    // within one wait).
    let until = tokio::time::Instant::now() + OPEN_WAIT;
    for p in 0..partitions {
        serving_offsets(storage.partition(stream, p).await?.as_ref(), until).await?;
    }
    Ok(true)
}

/// How long a new stream's partitions are waited for, until served (in a cluster their
/// leaders take over within a second or so).
const OPEN_WAIT: Duration = Duration::from_secs(5);

/// The offsets of `partition`, waiting until `until` while it has no leader serving it
/// yet.
async fn serving_offsets(
    partition: &dyn Partition,
    until: tokio::time::Instant,
) -> Result<strata_frontend::seams::Offsets, StoreError> {
    loop {
        match partition.offsets().await {
            Err(StoreError::Unavailable(_) | StoreError::NotLeader { .. })
                if tokio::time::Instant::now() < until =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => return other,
        }
    }
}

/// 409 `storage_conflict`: the object exists, stored as `kept`.
pub fn conflict(kept: &str) -> AgentError {
    AgentError {
        status: axum::http::StatusCode::CONFLICT,
        code: "storage_conflict",
        message: format!("it exists already, stored as {kept}"),
        retry_after: None,
    }
}

#[cfg(test)]
mod tests {
    use super::StorageClass;

    #[test]
    fn local_mailboxes_share_one_store() {
        let mailbox = "agent.queue._mbx-alice-0a1b";
        assert_eq!(
            StorageClass::Local.journal_class_for(mailbox, false),
            "rocksdb"
        );
        assert_eq!(
            StorageClass::Local.journal_class_for("agent.queue.jobs", false),
            "segment"
        );
        assert_eq!(
            StorageClass::Object.journal_class_for(mailbox, false),
            "object"
        );
        assert_eq!(
            StorageClass::Memory.journal_class_for(mailbox, false),
            "memory"
        );
        // Replicated in a cluster.
        assert_eq!(
            StorageClass::Local.journal_class_for(mailbox, true),
            "segment"
        );
    }
}
