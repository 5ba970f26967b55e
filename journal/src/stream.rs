//! A stream: a definition and one log per partition.

use std::sync::Arc;

use crate::batch::{Batch, PendingBatch};
use crate::config::StreamConfig;
use crate::error::{JournalError, Result};
use crate::log::{Appended, PartitionLog};

/// A named, partitioned log.
#[derive(Debug)]
pub struct Stream {
    config: StreamConfig,
    partitions: Vec<Arc<dyn PartitionLog>>,
}

impl Stream {
    pub(crate) fn new(config: StreamConfig, partitions: Vec<Arc<dyn PartitionLog>>) -> Self {
        Stream { config, partitions }
    }

    /// The stream's definition.
    pub fn config(&self) -> &StreamConfig {
        &self.config
    }

    /// Name of the stream.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Every partition, by index.
    pub fn partitions(&self) -> &[Arc<dyn PartitionLog>] {
        &self.partitions
    }

    /// One partition.
    pub fn partition(&self, partition: u32) -> Result<&Arc<dyn PartitionLog>> {
        self.partitions
            .get(partition as usize)
            .ok_or_else(|| JournalError::UnknownPartition {
                stream: self.config.name.clone(),
                partition,
            })
    }

    /// Appends a batch to `partition`.
    pub async fn append(&self, partition: u32, batch: PendingBatch) -> Result<Appended> {
        self.partition(partition)?.append(batch).await
    }

    /// Reads from `partition`.
    pub async fn read(&self, partition: u32, from: u64, max_bytes: usize) -> Result<Vec<Batch>> {
        self.partition(partition)?.read(from, max_bytes).await
    }

    pub(crate) async fn close(&self) -> Result<()> {
        let mut first_err = None;
        for p in &self.partitions {
            if let Err(e) = p.close().await {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}
