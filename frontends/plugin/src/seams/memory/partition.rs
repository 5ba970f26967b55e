//! One in-memory partition: batches in a vector, a watch on the end offset.

use async_trait::async_trait;
use parking_lot::Mutex;
use strata_batch::{Batch, PendingBatch, first_offset_at_time};
use tokio::sync::watch;

use crate::seams::error::{StoreError, StoreResult};
use crate::seams::router::{Appended, Offsets, Partition};

#[derive(Debug)]
pub(super) struct MemoryPartition {
    stream: String,
    index: u32,
    batches: Mutex<Vec<Batch>>,
    /// The first offset still held (records below it were deleted).
    start: Mutex<u64>,
    /// The end offset, and whether the partition is closed.
    end: watch::Sender<(u64, bool)>,
}

impl MemoryPartition {
    pub(super) fn new(stream: &str, index: u32) -> Self {
        MemoryPartition {
            stream: stream.to_string(),
            index,
            batches: Mutex::new(Vec::new()),
            start: Mutex::new(0),
            end: watch::Sender::new((0, false)),
        }
    }

    pub(super) fn close(&self) {
        self.end.send_modify(|s| s.1 = true);
    }

    fn closed(&self) -> bool {
        self.end.borrow().1
    }
}

#[async_trait]
impl Partition for MemoryPartition {
    fn stream(&self) -> &str {
        &self.stream
    }

    fn index(&self) -> u32 {
        self.index
    }

    async fn append(&self, batch: PendingBatch) -> StoreResult<Appended> {
        let mut batches = self.batches.lock();
        if self.closed() {
            return Err(StoreError::Closed);
        }
        let base = self.end.borrow().0;
        let count = u64::from(batch.record_count());
        let (header, bytes) = batch.seal(base);
        batches.push(Batch::trusted(header, bytes));
        self.end.send_modify(|s| s.0 = base + count);
        Ok(Appended {
            base_offset: base,
            last_offset: base + count - 1,
        })
    }

    async fn read(&self, from: u64, max_bytes: usize) -> StoreResult<Vec<Batch>> {
        if self.closed() {
            return Err(StoreError::Closed);
        }
        let batches = self.batches.lock();
        let end = self.end.borrow().0;
        let log_start = *self.start.lock();
        if from > end || from < log_start {
            return Err(StoreError::OffsetOutOfRange {
                offset: from,
                log_start,
                end,
            });
        }
        let first = batches.partition_point(|b| b.last_offset() < from);
        let mut out = Vec::new();
        let mut size = 0;
        for b in &batches[first..] {
            if !out.is_empty() && size + b.len() > max_bytes {
                break;
            }
            size += b.len();
            out.push(b.clone());
        }
        Ok(out)
    }

    async fn offsets(&self) -> StoreResult<Offsets> {
        if self.closed() {
            return Err(StoreError::Closed);
        }
        Ok(Offsets {
            log_start: *self.start.lock(),
            end: self.end.borrow().0,
        })
    }

    async fn wait_for(&self, offset: u64) -> StoreResult<u64> {
        let mut rx = self.end.subscribe();
        let state = *rx
            .wait_for(|&(end, closed)| end > offset || closed)
            .await
            .map_err(|_| StoreError::Closed)?;
        if state.0 > offset {
            Ok(state.0)
        } else {
            Err(StoreError::Closed)
        }
    }

    async fn offset_for_timestamp(&self, timestamp_ms: i64) -> StoreResult<Option<u64>> {
        let batches = self.batches.lock().clone();
        Ok(first_offset_at_time(&batches, timestamp_ms, 0)?)
    }

    async fn delete_before(&self, offset: u64) -> StoreResult<()> {
        let mut batches = self.batches.lock();
        if self.closed() {
            return Err(StoreError::Closed);
        }
        let offset = offset.min(self.end.borrow().0);
        let mut start = self.start.lock();
        if offset > *start {
            // Whole batches only: one holding `offset` stays, its records below unread.
            batches.retain(|b| b.last_offset() >= offset);
            *start = offset;
        }
        Ok(())
    }
}
