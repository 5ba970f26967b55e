//! The journal's manifest catalog in a cluster: every partition's uploaded segments are
//! recorded in the meta service, so a node that lost its disk (or a new leader, once
//! partitions are replicated) finds the objects that hold a partition's records.
//!
//! Streams the meta service does not have (a node's internal streams) are not recorded:
//! their manifest file is all there is.

use std::sync::Arc;

use async_trait::async_trait;
use strata_journal::manifests::{ManifestCatalog, ObjectEntry};
use strata_meta::MetaNode;
use strata_meta::model::{Command, ManifestEntry, Outcome};

/// Manifests kept by the meta service. Cheap to clone.
#[derive(Debug, Clone)]
pub struct MetaManifests {
    meta: Arc<MetaNode>,
}

impl MetaManifests {
    /// Manifests in `meta`.
    pub fn new(meta: Arc<MetaNode>) -> Self {
        MetaManifests { meta }
    }

    /// Writes `command`; a stream or partition the meta service does not have is not
    /// recorded (an internal stream, or one being deleted).
    async fn write(&self, stream: &str, command: Command) -> Result<(), String> {
        // Applied here before the answer: the journal reads the catalog back at once.
        match self.meta.write_applied(command).await {
            Ok(Outcome::Done) => Ok(()),
            Ok(Outcome::NotFound(why)) => {
                tracing::debug!(stream, why, "manifest change not recorded");
                Ok(())
            }
            Ok(other) => Err(format!("{other:?}")),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// A journal leader epoch as the meta service numbers it.
fn epoch_u64(epoch: i32) -> u64 {
    u64::try_from(epoch).unwrap_or(0)
}

fn object_entry(e: &ManifestEntry) -> ObjectEntry {
    ObjectEntry {
        base_offset: e.base_offset,
        last_offset: e.last_offset,
        key: e.key.clone(),
        size: e.size,
        max_timestamp: e.max_timestamp,
        index_len: e.index_len,
    }
}

#[async_trait]
impl ManifestCatalog for MetaManifests {
    fn entries(&self, stream: &str, partition: u32) -> Vec<ObjectEntry> {
        self.meta.read(|s| {
            s.manifests
                .get(stream)
                .and_then(|m| m.get(&partition))
                .map(|entries| entries.iter().map(object_entry).collect())
                .unwrap_or_default()
        })
    }

    fn replicated(&self, stream: &str, partition: u32) -> bool {
        self.meta.read(|s| {
            s.placement
                .get(stream)
                .and_then(|v| v.get(partition as usize))
                .is_some_and(|p| p.replicas.len() > 1)
        })
    }

    async fn append(
        &self,
        stream: &str,
        partition: u32,
        entry: ObjectEntry,
        epoch: Option<i32>,
    ) -> Result<(), String> {
        let entry = ManifestEntry {
            base_offset: entry.base_offset,
            last_offset: entry.last_offset,
            key: entry.key,
            size: entry.size,
            max_timestamp: entry.max_timestamp,
            index_len: entry.index_len,
        };
        let command = Command::AppendManifest {
            stream: stream.to_string(),
            partition,
            entry,
            epoch: epoch.map(epoch_u64),
        };
        self.write(stream, command).await
    }

    async fn trim(
        &self,
        stream: &str,
        partition: u32,
        offset: u64,
        epoch: Option<i32>,
    ) -> Result<(), String> {
        let command = Command::TrimManifest {
            stream: stream.to_string(),
            partition,
            offset,
            epoch: epoch.map(epoch_u64),
        };
        self.write(stream, command).await
    }
}
