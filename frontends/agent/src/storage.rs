//! Where an agent object (queue, mailbox, topic) keeps its messages, chosen per object
//! when it is created: `memory`, `local` (segment files) or `object` (written straight to
//! object storage, the default).

use serde::{Deserialize, Serialize};
use strata_frontend::seams::{Storage, StreamInfo, StreamSpec};

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

/// The classes a node offers: its default, and whether it has object storage at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Classes {
    /// Given to an object created without a class.
    pub default: StorageClass,
    /// Whether the node has object storage (`[journal.object_store]`).
    pub object: bool,
}

impl Default for Classes {
    fn default() -> Self {
        Classes {
            default: StorageClass::Memory,
            object: false,
        }
    }
}

impl Classes {
    /// The class asked for (the default when none), refused when the node cannot offer it.
    pub fn pick(&self, asked: Option<StorageClass>) -> Result<StorageClass, AgentError> {
        let class = asked.unwrap_or(self.default);
        if class == StorageClass::Object && !self.object {
            return Err(AgentError::bad_request(
                "storage_unavailable",
                "this node has no object storage ([journal.object_store]); use memory or local",
            ));
        }
        Ok(class)
    }
}

/// Makes sure stream `stream` (of `partitions` partitions) exists, created in `class` when
/// it does not. When it exists in another class and `class` was asked for explicitly, 409
/// `storage_conflict`. Whether this call created it.
pub async fn ensure_stream(
    storage: &Storage,
    stream: &str,
    partitions: u32,
    class: StorageClass,
    explicit: bool,
) -> Result<bool, AgentError> {
    let existing = storage.catalog.stream(stream);
    let created = existing.is_none();
    let info = match existing {
        Some(info) => info,
        None => {
            storage
                .ensure_stream(
                    StreamSpec::new(stream, partitions).with_storage_class(class.journal_class()),
                )
                .await?
        }
    };
    let kept = StorageClass::of(&info);
    if explicit && kept != Some(class) {
        return Err(conflict(
            &kept.map_or(info.storage_class.clone(), |c| c.name().to_string()),
        ));
    }
    Ok(created)
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
