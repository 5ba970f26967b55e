//! Where the journal records, besides each partition's manifest file, the objects its
//! partitions uploaded: a store that outlives this node's disk (in a cluster, the meta
//! service). A node that loses its disk finds there which objects hold a partition's
//! records, and reads them again.
//!
//! Order of writes, so that the catalog never names an object that is not there and never
//! misses one a local copy was dropped for: an upload is recorded in the catalog before the
//! local manifest (and a local segment is only deleted once the local manifest has it);
//! retention trims the catalog before the objects are deleted.

use std::fmt::Debug;

use async_trait::async_trait;
pub use strata_tiered::manifest::Entry as ObjectEntry;

/// A store of every partition's uploaded segments.
#[async_trait]
pub trait ManifestCatalog: Send + Sync + Debug {
    /// The entries recorded for a partition, in offset order (none when it has none, or
    /// when the catalog does not keep this stream: then the local manifest is all there is).
    fn entries(&self, stream: &str, partition: u32) -> Vec<ObjectEntry>;

    /// Whether the partition has several copies: its leader alone then uploads and applies
    /// retention ([`crate::OffloadDuty`]), and a copy opened before its role is known
    /// starts as a follower.
    fn replicated(&self, stream: &str, partition: u32) -> bool {
        let _ = (stream, partition);
        false
    }

    /// Records an uploaded segment. Recording an entry it already has is not an error.
    /// With `epoch`, refused unless the partition's leader is still of that epoch.
    async fn append(
        &self,
        stream: &str,
        partition: u32,
        entry: ObjectEntry,
        epoch: Option<i32>,
    ) -> Result<(), String>;

    /// Forgets the entries whose last offset is below `offset`. With `epoch`, refused
    /// unless the partition's leader is still of that epoch.
    async fn trim(
        &self,
        stream: &str,
        partition: u32,
        offset: u64,
        epoch: Option<i32>,
    ) -> Result<(), String>;
}

/// One partition's entries in a [`ManifestCatalog`].
#[derive(Debug, Clone)]
pub(crate) struct Recorded {
    catalog: std::sync::Arc<dyn ManifestCatalog>,
    stream: String,
    partition: u32,
}

fn unavailable(e: String) -> crate::JournalError {
    crate::JournalError::Unavailable(format!("manifest catalog: {e}"))
}

impl Recorded {
    pub(crate) fn new(
        catalog: std::sync::Arc<dyn ManifestCatalog>,
        stream: &str,
        partition: u32,
    ) -> Self {
        Recorded {
            catalog,
            stream: stream.to_string(),
            partition,
        }
    }

    /// The entries the catalog has.
    pub(crate) fn entries(&self) -> Vec<ObjectEntry> {
        self.catalog.entries(&self.stream, self.partition)
    }

    /// Records `entry` after bringing the catalog in line with `local` (the local manifest's
    /// entries: those it lacks, uploaded before it was kept or while it could not be
    /// written, are added; those retention dropped here are trimmed), each write fenced by
    /// `epoch` when given.
    pub(crate) async fn record(
        &self,
        local: &[ObjectEntry],
        entry: ObjectEntry,
        epoch: Option<i32>,
    ) -> crate::Result<()> {
        let (s, p) = (self.stream.as_str(), self.partition);
        let recorded = self.entries();
        if let (Some(first), Some(kept)) = (recorded.first(), local.first())
            && first.base_offset < kept.base_offset
        {
            self.catalog
                .trim(s, p, kept.base_offset, epoch)
                .await
                .map_err(unavailable)?;
        }
        let end = recorded.last().map_or(0, |e| e.last_offset + 1);
        for missing in local.iter().filter(|e| e.base_offset >= end) {
            self.catalog
                .append(s, p, missing.clone(), epoch)
                .await
                .map_err(unavailable)?;
        }
        self.catalog
            .append(s, p, entry, epoch)
            .await
            .map_err(unavailable)
    }

    /// Forgets the entries below `offset`, fenced by `epoch` when given.
    pub(crate) async fn trim(&self, offset: u64, epoch: Option<i32>) -> crate::Result<()> {
        self.catalog
            .trim(&self.stream, self.partition, offset, epoch)
            .await
            .map_err(unavailable)
    }
}
