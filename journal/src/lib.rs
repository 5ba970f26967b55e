//! Strata's storage engine: streams of partitioned, append-only logs of CRC-checked record
//! batches, kept in memory, in segment files or in RocksDB.
//!
//! The journal knows nothing of any protocol: it speaks streams, offsets and bytes.

mod config;
pub mod epochs;
mod error;
pub mod fs;
mod group_commit;
mod journal;
mod log;
pub mod manifests;
mod memory;
mod metrics;
mod notify;
pub mod offline;
pub mod policy;
#[cfg(feature = "rocksdb")]
mod rocks;
pub mod segment;
mod stream;
mod tail;

pub use config::{
    CacheConfig, FsyncPolicy, JournalConfig, ObjectAck, ObjectSettings, ObjectStoreConfig,
    OffloadSettings, Retention, SegmentSettings, StorageClass, StreamConfig, validate_name,
};
pub use epochs::{EpochStart, LeaderEpochs};
pub use error::{JournalError, Result};
pub use journal::{
    CACHE_DIR, Journal, JournalOptions, ROCKSDB_DIR, STREAM_FILE, STREAMS_DIR, read_definition,
    remote_prefix,
};
pub use log::{
    Appended, OffloadDuty, Offsets, PartitionInfo, PartitionLog, Removed, ReplicaState, SegmentInfo,
};
pub use metrics::JournalMetrics;
pub use notify::EndWatch;
#[cfg(feature = "rocksdb")]
pub use rocks::RocksStore;
/// The stored batch format (its own crate, so frontends and tools can build and read
/// batches without the storage engine).
pub use strata_batch as batch;
pub use strata_batch::{Batch, BatchBuilder, BatchHeader, Codec, PendingBatch};
pub use strata_batch::{Record, RecordHeader, now_ms};
pub use stream::Stream;
