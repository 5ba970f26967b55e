//! The catalog and router of a node on its own: every stream is in the local journal and
//! this node leads every partition, at epoch 0.

use std::sync::Arc;

use async_trait::async_trait;
use strata_frontend::seams::{
    Catalog, NodeId, Partition, PartitionRouter, Placement, StoreError, StoreResult, StreamInfo,
    StreamSpec,
};
use strata_journal::{Journal, StreamConfig};

use crate::errors::store_error;
use crate::partition::LocalPartition;

/// The local journal as catalog and router. Cheap to clone.
#[derive(Debug, Clone)]
pub struct LocalStreams {
    journal: Journal,
    node: NodeId,
}

impl LocalStreams {
    /// Serves `journal`'s streams as node `node`.
    pub fn new(journal: Journal, node: NodeId) -> Self {
        LocalStreams { journal, node }
    }

    /// The journal behind it.
    pub fn journal(&self) -> &Journal {
        &self.journal
    }
}

pub(crate) fn info(c: &StreamConfig) -> StreamInfo {
    StreamInfo {
        name: c.name.clone(),
        partitions: c.partitions,
        storage_class: c.class.to_string(),
        fsync: c.fsync.to_string(),
        retention_bytes: c.retention.max_bytes,
        retention_ms: c.retention.max_age_ms,
        segment_bytes: c.segment.segment_bytes,
        segment_ms: c.segment.segment_ms,
        min_in_sync: 1,
    }
}

#[async_trait]
impl Catalog for LocalStreams {
    fn node_id(&self) -> NodeId {
        self.node
    }

    fn stream(&self, name: &str) -> Option<StreamInfo> {
        self.journal.stream(name).ok().map(|s| info(s.config()))
    }

    fn streams(&self) -> Vec<StreamInfo> {
        self.journal.list_streams().iter().map(info).collect()
    }

    async fn create_stream(&self, spec: StreamSpec) -> StoreResult<StreamInfo> {
        if spec.replication_factor.is_some_and(|n| n > 1) || spec.min_in_sync.is_some_and(|n| n > 1)
        {
            return Err(StoreError::Invalid(
                "a node alone keeps one copy of each partition".into(),
            ));
        }
        // The journal checks the name and the count (`Invalid` when either is bad).
        let config = spec_config(&self.journal, &spec)?;
        let stream = self
            .journal
            .create_stream(config)
            .await
            .map_err(store_error)?;
        Ok(info(stream.config()))
    }

    async fn delete_stream(&self, name: &str) -> StoreResult<()> {
        self.journal.delete_stream(name).await.map_err(store_error)
    }

    async fn add_partitions(&self, name: &str, partitions: u32) -> StoreResult<StreamInfo> {
        let stream = self
            .journal
            .add_partitions(name, partitions)
            .await
            .map_err(store_error)?;
        Ok(info(stream.config()))
    }

    fn placement(&self, stream: &str, partition: u32) -> Option<Placement> {
        let s = self.journal.stream(stream).ok()?;
        (partition < s.config().partitions).then(|| Placement {
            leader: Some(self.node),
            epoch: 0,
            replicas: vec![self.node],
            in_sync: vec![self.node],
            target: Vec::new(),
        })
    }
}

#[async_trait]
impl PartitionRouter for LocalStreams {
    async fn partition(&self, stream: &str, partition: u32) -> StoreResult<Arc<dyn Partition>> {
        let s = self.journal.stream(stream).map_err(store_error)?;
        let log =
            s.partitions()
                .get(partition as usize)
                .ok_or_else(|| StoreError::UnknownPartition {
                    stream: stream.to_string(),
                    partition,
                })?;
        Ok(Arc::new(LocalPartition::new(
            stream,
            partition,
            log.clone(),
        )))
    }
}

/// The journal definition of the stream `spec` asks for: the journal's defaults, in the
/// storage class the spec names (`Invalid` when it names none the journal knows).
pub(crate) fn spec_config(journal: &Journal, spec: &StreamSpec) -> StoreResult<StreamConfig> {
    let mut config = journal.stream_config(&spec.name, spec.partitions);
    if spec.keep_all {
        config.retention.max_bytes = None;
        config.retention.max_age_ms = None;
    }
    if let Some(name) = &spec.storage_class {
        config.class = crate::cluster::class(name).ok_or_else(|| {
            StoreError::Invalid(format!(
                "unknown storage class {name:?} (memory, segment, rocksdb or object)"
            ))
        })?;
    }
    Ok(config)
}
