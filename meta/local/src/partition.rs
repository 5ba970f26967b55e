//! A partition of the local journal behind the router's handle.

use std::sync::Arc;

use async_trait::async_trait;
use strata_batch::{Batch, PendingBatch};
use strata_frontend::seams::{Appended, Offsets, Partition, StoreResult};
use strata_journal::PartitionLog;

use crate::errors::store_error;

/// A handle on one local partition: every call goes straight to its log.
#[derive(Debug)]
pub struct LocalPartition {
    stream: String,
    index: u32,
    log: Arc<dyn PartitionLog>,
}

impl LocalPartition {
    /// A handle on `log`, partition `index` of `stream`.
    pub fn new(stream: &str, index: u32, log: Arc<dyn PartitionLog>) -> Self {
        LocalPartition {
            stream: stream.to_string(),
            index,
            log,
        }
    }
}

#[async_trait]
impl Partition for LocalPartition {
    fn stream(&self) -> &str {
        &self.stream
    }

    fn index(&self) -> u32 {
        self.index
    }

    async fn append(&self, batch: PendingBatch) -> StoreResult<Appended> {
        let a = self.log.append(batch).await.map_err(store_error)?;
        Ok(Appended {
            base_offset: a.base_offset,
            last_offset: a.last_offset,
        })
    }

    async fn read(&self, from: u64, max_bytes: usize) -> StoreResult<Vec<Batch>> {
        self.log.read(from, max_bytes).await.map_err(store_error)
    }

    async fn offsets(&self) -> StoreResult<Offsets> {
        let o = self.log.offsets();
        Ok(Offsets {
            log_start: o.log_start,
            end: o.end,
        })
    }

    async fn wait_for(&self, offset: u64) -> StoreResult<u64> {
        self.log.wait_for(offset).await.map_err(store_error)
    }

    async fn offset_for_timestamp(&self, timestamp_ms: i64) -> StoreResult<Option<u64>> {
        self.log
            .offset_for_timestamp(timestamp_ms)
            .await
            .map_err(store_error)
    }

    async fn delete_before(&self, offset: u64) -> StoreResult<()> {
        self.log.delete_before(offset).await.map_err(store_error)?;
        Ok(())
    }
}
