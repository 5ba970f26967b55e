//! What a router or catalog call can fail with: each variant is something a caller acts
//! on (answer with a protocol error code, forward to the leader, retry later).

/// Result alias of the router and the catalog.
pub type StoreResult<T> = Result<T, StoreError>;

/// Why a router or catalog operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum StoreError {
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
    /// A stream name or setting is not acceptable.
    #[error("invalid: {0}")]
    Invalid(String),
    /// This node does not lead the partition. `leader` is the node that does, when known,
    /// and `epoch` its leader epoch: retry there (Kafka answers NOT_LEADER_OR_FOLLOWER).
    #[error("not the leader of {stream}/{partition}: leader {leader:?}, epoch {epoch}")]
    NotLeader {
        /// Stream name.
        stream: String,
        /// Partition.
        partition: u32,
        /// The node leading it, if one is known.
        leader: Option<u64>,
        /// The leader's epoch.
        epoch: u64,
    },
    /// The partition (or the store behind it) cannot be reached now: its node is down,
    /// object storage is unreachable. Nothing of a failed append was kept; retry later.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The offset is below the log start or beyond the end.
    #[error("offset {offset} out of range [{log_start}, {end}]")]
    OffsetOutOfRange {
        /// The offset that was asked for.
        offset: u64,
        /// First offset still stored.
        log_start: u64,
        /// Offset the next appended record will get.
        end: u64,
    },
    /// The batch is malformed.
    #[error("invalid batch: {0}")]
    InvalidBatch(String),
    /// The batch uses a compression codec the store cannot decode.
    #[error("unsupported compression codec {0}")]
    UnsupportedCodec(u8),
    /// A bounded partition cannot take a batch this large.
    #[error("batch of {size} bytes exceeds the partition bound of {limit} bytes")]
    Full {
        /// Size of the batch.
        size: usize,
        /// The bound.
        limit: u64,
    },
    /// The partition or the store is closed (the node is stopping, the stream was deleted).
    #[error("closed")]
    Closed,
    /// Stored bytes failed a check; they are never returned.
    #[error("corruption: {0}")]
    Corruption(String),
    /// A write, read or fsync failed; nothing of a failed append was acknowledged.
    #[error("storage: {0}")]
    Storage(String),
}

impl From<strata_batch::BatchError> for StoreError {
    fn from(e: strata_batch::BatchError) -> Self {
        match e {
            strata_batch::BatchError::Invalid(reason) => StoreError::InvalidBatch(reason),
            strata_batch::BatchError::UnsupportedCodec(c) => StoreError::UnsupportedCodec(c),
        }
    }
}
