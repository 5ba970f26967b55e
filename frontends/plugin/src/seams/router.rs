//! The partition router: a stream and partition number in, a handle on that partition
//! out. The handle appends, reads, waits for data and answers offset questions; whether
//! the partition is on this node or another is the router's business.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use strata_batch::{Batch, PendingBatch};

use super::error::{StoreError, StoreResult};

/// Offsets given to an appended batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Offset of the first record.
    pub base_offset: u64,
    /// Offset of the last record.
    pub last_offset: u64,
}

/// A partition's readable range, `[log_start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offsets {
    /// First offset still stored.
    pub log_start: u64,
    /// Offset the next appended record will get.
    pub end: u64,
}

/// One partition of a stream, wherever it lives. Cheap to keep: a frontend may hold a
/// handle for a connection's lifetime.
///
/// Contract (checked by [`super::conformance::router`]):
/// - `append` gives the batch offsets `end .. end + n` and returns once the partition's
///   durability policy holds; on error nothing of the batch becomes visible.
/// - `read(from, max)` returns whole batches starting with the one holding `from`: at least
///   one when `from < end` even if larger than `max`, none when `from == end`, and
///   `OffsetOutOfRange` when `from < log_start` or `from > end`.
/// - `wait_for(o)` completes once a record at offset `o` or later is readable and returns
///   the end then; immediately when one already is.
/// - `offset_for_timestamp(t)` is the first offset whose record timestamp is at least `t`,
///   `None` when no stored record is that recent.
/// - A handle on a partition this node cannot serve answers `NotLeader` (with the leader
///   and its epoch) or `Unavailable`, never a wrong answer.
#[async_trait]
pub trait Partition: Send + Sync + Debug {
    /// The stream's name.
    fn stream(&self) -> &str;

    /// The partition's number within its stream.
    fn index(&self) -> u32;

    /// Appends a batch.
    async fn append(&self, batch: PendingBatch) -> StoreResult<Appended>;

    /// Reads whole batches from `from`, up to about `max_bytes`.
    async fn read(&self, from: u64, max_bytes: usize) -> StoreResult<Vec<Batch>>;

    /// The readable range now.
    async fn offsets(&self) -> StoreResult<Offsets>;

    /// Waits until `offset` is readable; returns the end.
    async fn wait_for(&self, offset: u64) -> StoreResult<u64>;

    /// The first offset whose record timestamp is at least `timestamp_ms`.
    async fn offset_for_timestamp(&self, timestamp_ms: i64) -> StoreResult<Option<u64>>;

    /// Kafka's OffsetForLeaderEpoch: the largest leader epoch at most `epoch` that the
    /// log holds records of, and the offset where it ends (where the next epoch starts,
    /// or the log's end for the newest); `None` when `epoch` is older than any held.
    /// This default is for partitions that are never replicated: every record is of
    /// epoch 0.
    async fn end_offset_for_epoch(&self, epoch: i32) -> StoreResult<Option<(i32, u64)>> {
        if epoch < 0 {
            return Ok(None);
        }
        Ok(Some((0, self.offsets().await?.end)))
    }

    /// Reads like [`Partition::read`] but past the high watermark, up to what the leader
    /// has written: what a leader's own bookkeeping of the log (a producer's last
    /// sequences) must cover, since a write it appended and has not had acknowledged yet
    /// is kept if it goes on leading. Never for clients' reads. This default is for
    /// partitions that are never replicated, whose written end is their end.
    async fn read_written(&self, from: u64, max_bytes: usize) -> StoreResult<Vec<Batch>> {
        self.read(from, max_bytes).await
    }

    /// Drops the records below `offset` (at most the end): the log then starts there. For
    /// a stream's owner that compacts it (a changelog whose live keys were written again
    /// above `offset`); a replicated partition's followers follow the leader's start.
    /// Only on a handle this node leads; this default refuses.
    async fn delete_before(&self, offset: u64) -> StoreResult<()> {
        let _ = offset;
        Err(StoreError::Invalid(format!(
            "{}/{}: records cannot be deleted through this handle",
            self.stream(),
            self.index()
        )))
    }
}

/// Finds partitions.
///
/// Contract: `partition` answers `UnknownStream` or `UnknownPartition` for what the catalog
/// does not hold, and a handle otherwise (which may itself answer `NotLeader`).
#[async_trait]
pub trait PartitionRouter: Send + Sync + Debug {
    /// A handle on `stream`'s partition `partition`.
    async fn partition(&self, stream: &str, partition: u32) -> StoreResult<Arc<dyn Partition>>;

    /// A handle on the partition that works only while this node leads it: once the
    /// leadership moves it answers `NotLeader` instead of reaching the new leader. For
    /// frontends whose clients find the leader themselves (Kafka) and that keep state
    /// beside the leader's log (a producer's last sequences), which a write forwarded to
    /// another node would bypass. This default is for routers whose partitions are all
    /// here.
    async fn partition_led_here(
        &self,
        stream: &str,
        partition: u32,
    ) -> StoreResult<Arc<dyn Partition>> {
        self.partition(stream, partition).await
    }
}
