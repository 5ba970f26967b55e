//! The journal's error type: one enum whose variants a caller can act on.

use std::io;
use std::path::PathBuf;

/// Result alias used throughout the journal.
pub type Result<T, E = JournalError> = std::result::Result<T, E>;

/// Everything that can go wrong in the journal.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// Stored bytes failed a CRC or structural check. The damaged bytes are never returned.
    #[error("corruption in {file} at byte {position}: {reason}")]
    Corruption {
        /// The file holding the damaged bytes (or a store-specific location).
        file: PathBuf,
        /// Byte position of the damaged batch inside that file.
        position: u64,
        /// What check failed.
        reason: String,
    },
    /// A batch handed to the journal is malformed.
    #[error("invalid batch: {0}")]
    InvalidBatch(String),
    /// The requested offset is below the log-start offset or above the end offset.
    #[error("offset {offset} out of range [{log_start}, {end}]")]
    OffsetOutOfRange {
        /// The offset that was asked for.
        offset: u64,
        /// First offset still stored.
        log_start: u64,
        /// Offset the next appended record will get.
        end: u64,
    },
    /// No stream with that name exists.
    #[error("unknown stream {0:?}")]
    UnknownStream(String),
    /// The stream exists but has no such partition.
    #[error("stream {stream:?} has no partition {partition}")]
    UnknownPartition {
        /// Stream name.
        stream: String,
        /// Partition asked for.
        partition: u32,
    },
    /// A stream with that name already exists.
    #[error("stream {0:?} already exists")]
    StreamExists(String),
    /// A stream definition or journal setting is invalid.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// A bounded store (the `memory` class) cannot take a batch this large.
    #[error("batch of {size} bytes exceeds the partition bound of {limit} bytes")]
    Full {
        /// Size of the batch.
        size: usize,
        /// The configured bound.
        limit: u64,
    },
    /// The batch uses a compression codec this build cannot decode.
    #[error("unsupported compression codec {0}")]
    UnsupportedCodec(u8),
    /// The journal (or this partition) has been closed.
    #[error("journal is closed")]
    Closed,
    /// A write or fsync failed; nothing from the failed append was acknowledged.
    #[error("i/o error on {path}: {source}")]
    Io {
        /// The file or directory the operation touched.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The RocksDB store failed.
    #[error("rocksdb: {0}")]
    RocksDb(String),
    /// Object storage failed or is unreachable; nothing of a failed append was
    /// acknowledged or kept, so it can be retried.
    #[error("object storage unavailable: {0}")]
    Unavailable(String),
    /// An append in a leader epoch older than the newest this replica knows: its writer
    /// is no longer the partition's leader.
    #[error("leader epoch {epoch} is fenced: this replica knows epoch {current}")]
    Fenced {
        /// The epoch the append came in.
        epoch: i32,
        /// The newest epoch this replica knows.
        current: i32,
    },
    /// The storage class cannot do this (replica operations on a class that cannot be a
    /// replica yet).
    #[error("not supported: {0}")]
    Unsupported(String),
}

impl JournalError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        JournalError::Io {
            path: path.into(),
            source,
        }
    }

    /// True when retrying the same operation later may succeed (I/O faults, full disk).
    pub fn is_retriable(&self) -> bool {
        matches!(
            self,
            JournalError::Io { .. } | JournalError::RocksDb(_) | JournalError::Unavailable(_)
        )
    }
}

impl From<strata_tiered::ObjectError> for JournalError {
    fn from(e: strata_tiered::ObjectError) -> Self {
        JournalError::Unavailable(e.to_string())
    }
}

#[cfg(feature = "rocksdb")]
impl From<rocksdb::Error> for JournalError {
    fn from(e: rocksdb::Error) -> Self {
        JournalError::RocksDb(e.into_string())
    }
}

impl From<strata_batch::BatchError> for JournalError {
    fn from(e: strata_batch::BatchError) -> Self {
        match e {
            strata_batch::BatchError::Invalid(reason) => JournalError::InvalidBatch(reason),
            strata_batch::BatchError::UnsupportedCodec(codec) => {
                JournalError::UnsupportedCodec(codec)
            }
        }
    }
}
