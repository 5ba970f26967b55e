//! The storage-class trait: what every partition offers, whatever keeps its bytes.

use std::fmt::Debug;
use std::path::PathBuf;

use async_trait::async_trait;

use crate::batch::{Batch, PendingBatch};
use crate::error::Result;
use crate::notify::EndWatch;

/// Offsets assigned to an appended batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Offset of the first record.
    pub base_offset: u64,
    /// Offset of the last record.
    pub last_offset: u64,
}

/// A partition's offset range: `[log_start, end)` is readable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offsets {
    /// First offset still stored.
    pub log_start: u64,
    /// Offset the next appended record will get, among records visible to readers.
    pub end: u64,
}

/// What retention or delete-before removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Removed {
    /// Segments (or batches, for classes without segments) removed.
    pub units: u64,
    /// Bytes removed.
    pub bytes: u64,
}

/// Where one unit of a partition's data lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    /// Offset of the first batch.
    pub base_offset: u64,
    /// Offset after the last batch.
    pub end_offset: u64,
    /// Size in bytes.
    pub size: u64,
    /// Largest record timestamp, if any record is stored.
    pub max_timestamp: Option<i64>,
    /// The local file (or store) holding it; empty when it is only in object storage.
    pub location: PathBuf,
    /// The object holding a copy in object storage, if it was uploaded.
    pub remote: Option<String>,
}

/// A snapshot of a partition's layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    /// Offsets.
    pub offsets: Offsets,
    /// Bytes stored.
    pub size: u64,
    /// Segments, oldest first (one entry for classes without segments).
    pub segments: Vec<SegmentInfo>,
}

/// Where a replica of a partition stands (see the replica operations of [`PartitionLog`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaState {
    /// First offset still stored.
    pub log_start: u64,
    /// Offset the next record gets: the end of what is written, durable or not.
    pub written_end: u64,
    /// Every offset below this is durable (under `fsync = always`; the written end
    /// otherwise).
    pub durable_end: u64,
    /// Readers see offsets below this only, when set (replicated partitions).
    pub high_watermark: Option<u64>,
    /// The newest leader epoch with records, if any.
    pub latest_epoch: Option<crate::epochs::EpochStart>,
    /// The newest epoch the replica was told of (appends in older ones are fenced).
    pub fenced_below: i32,
    /// Where its local files start: below, its records are only in object storage.
    pub local_start: u64,
}

fn unsupported(what: &str) -> crate::error::JournalError {
    crate::error::JournalError::Unsupported(format!(
        "{what}: this storage class cannot be a replica"
    ))
}

/// One partition of a stream: a log of batches with dense offsets.
///
/// Contract shared by every storage class (and checked by the conformance suite):
/// - `append` assigns offsets `end .. end + n` and returns only once the batch is written
///   (and, under `fsync = always`, fsynced); on error nothing of the batch is visible.
/// - `read(from, max)` returns whole batches starting with the one holding `from`; at least
///   one batch when `from < end` even if it exceeds `max`; none when `from == end`; an
///   `OffsetOutOfRange` error when `from < log_start` or `from > end`.
/// - Readers never see records that a later failure could take back.
#[async_trait]
pub trait PartitionLog: Send + Sync + Debug {
    /// Appends a batch.
    async fn append(&self, batch: PendingBatch) -> Result<Appended>;

    /// Reads batches from `from`, up to about `max_bytes`.
    async fn read(&self, from: u64, max_bytes: usize) -> Result<Vec<Batch>>;

    /// Current offsets.
    fn offsets(&self) -> Offsets;

    /// The visible-end notifier.
    fn end_watch(&self) -> &EndWatch;

    /// The earliest offset whose record timestamp is at least `timestamp_ms`.
    async fn offset_for_timestamp(&self, timestamp_ms: i64) -> Result<Option<u64>>;

    /// Makes `offset` the log-start offset (clamped to the end), dropping whole units that
    /// fall below it. Returns the new log-start offset.
    async fn delete_before(&self, offset: u64) -> Result<u64>;

    /// Applies the retention bounds and age-based rolls as of `now_ms`.
    async fn enforce_retention(&self, now_ms: i64) -> Result<Removed>;

    /// Forces written bytes to stable storage.
    async fn sync(&self) -> Result<()>;

    /// Syncs and stops accepting appends; waiters are woken with `Closed`.
    async fn close(&self) -> Result<()>;

    /// Layout snapshot.
    fn describe(&self) -> PartitionInfo;

    /// Waits until a record with an offset of at least `offset` is visible; returns the end.
    async fn wait_for(&self, offset: u64) -> Result<u64> {
        self.end_watch().wait_beyond(offset).await
    }

    // Replica operations: what a replicated partition's consensus layer needs. The log is
    // the Raft log: a batch's leader-epoch field is the term of the leader that appended
    // it, the high watermark is the commit index. Classes that cannot be replicas answer
    // `Unsupported`.

    /// Appends as the leader of `epoch`, stamping the epoch into the batch. An epoch older
    /// than the newest this replica knows (from its records or [`PartitionLog::fence`])
    /// is refused with `Fenced`; a newer one starts an entry in the epoch cache.
    async fn append_in_epoch(&self, batch: PendingBatch, epoch: i32) -> Result<Appended> {
        let _ = (batch, epoch);
        Err(unsupported("append_in_epoch"))
    }

    /// Appends batches copied from the leader as they are (offsets and epochs kept). The
    /// first must start at the written end and their epochs must not go backwards;
    /// returns the new written end once they are written (and durable under `always`).
    async fn append_copies(&self, batches: Vec<Batch>) -> Result<u64> {
        let _ = batches;
        Err(unsupported("append_copies"))
    }

    /// Removes every record at or after `offset` (a divergent tail), from the start of the
    /// batch holding it, durably; returns the new written end. Never below the log start
    /// or the high watermark (`OffsetOutOfRange`).
    async fn truncate_from(&self, offset: u64) -> Result<u64> {
        let _ = offset;
        Err(unsupported("truncate_from"))
    }

    /// Removes every record a copy that is no longer a replica holds (its partition moved
    /// to other nodes): the log keeps its start (and what object storage holds) and ends
    /// there, and forgets its high watermark. Returns the new end.
    async fn clear_copy(&self) -> Result<u64> {
        Err(unsupported("clear_copy"))
    }

    /// Drops the whole log and makes it begin, empty, at `offset`, beyond its end: a
    /// follower whose log ends below its leader's log start (retention removed what it
    /// would copy next, or its disk was wiped) starts again where the leader's log does,
    /// as Kafka's followers do. Crash-safe: the new log start is recorded first. Returns
    /// the new end (`offset`).
    async fn start_at(&self, offset: u64) -> Result<u64> {
        let _ = offset;
        Err(unsupported("start_at"))
    }

    /// Like [`PartitionLog::start_at`], for a copy of a tiered partition whose leader's
    /// local files start at `offset`: what lies below stays readable from the objects.
    /// Refused (`Unavailable`, to try again) while the catalog this copy has seen does
    /// not hold every offset below `offset`.
    async fn start_after_stored(&self, offset: u64) -> Result<u64> {
        let _ = offset;
        Err(unsupported("start_after_stored"))
    }

    /// Refuses later appends in epochs older than `epoch` (a newer leader exists).
    fn fence(&self, epoch: i32) -> Result<()> {
        let _ = epoch;
        Err(unsupported("fence"))
    }

    /// Sets the high watermark (the replicated partition's commit point): from now on
    /// readers see offsets below it only, and waiters wake as it moves.
    fn set_high_watermark(&self, hw: u64) -> Result<()> {
        let _ = hw;
        Err(unsupported("set_high_watermark"))
    }

    /// Where the replica stands.
    fn replica_state(&self) -> Result<ReplicaState> {
        Err(unsupported("replica_state"))
    }

    /// The leader epochs of the stored records, oldest first.
    fn leader_epochs(&self) -> Result<Vec<crate::epochs::EpochStart>> {
        Err(unsupported("leader_epochs"))
    }

    /// Kafka's OffsetForLeaderEpoch over the written log (see
    /// [`crate::LeaderEpochs::end_offset_for`]).
    fn end_offset_for_epoch(&self, epoch: i32) -> Result<Option<(i32, u64)>> {
        let _ = epoch;
        Err(unsupported("end_offset_for_epoch"))
    }

    /// Reads like [`PartitionLog::read`] but up to the written end, past the high
    /// watermark: what a leader sends its followers.
    async fn read_written(&self, from: u64, max_bytes: usize) -> Result<Vec<Batch>> {
        let _ = (from, max_bytes);
        Err(unsupported("read_written"))
    }

    /// Who does this partition's object-storage work and decides its retention (see
    /// [`OffloadDuty`]). Classes without either ignore it.
    fn set_offload_duty(&self, duty: OffloadDuty) {
        let _ = duty;
    }
}

/// A partition's part in its object storage and retention. A replicated partition's
/// copies share one set of objects and one manifest (the cluster's catalog), so one of
/// them, its leader, uploads, deletes objects and applies retention; the others follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OffloadDuty {
    /// The only copy: it does it all (an unreplicated partition).
    #[default]
    Sole,
    /// The leader of `epoch`: uploads committed segments (its catalog writes carry the
    /// epoch, so a deposed leader's are refused), applies retention, cleans up orphans.
    Leader {
        /// The leader epoch.
        epoch: i32,
    },
    /// A follower (or a copy between roles): never uploads, never deletes an object nor
    /// trims the catalog; takes the uploaded segments from the catalog, drops its local
    /// copies of them after the local retention, and starts its log where the leader's
    /// does.
    Follower,
}

impl OffloadDuty {
    /// The epoch a catalog write is fenced by (none: not replicated).
    pub fn epoch(self) -> Option<i32> {
        match self {
            OffloadDuty::Leader { epoch } => Some(epoch),
            _ => None,
        }
    }
}
