//! Journal errors as the seams report them.

use strata_frontend::seams::StoreError;
use strata_journal::JournalError;

/// The seam error for a journal error.
pub fn store_error(e: JournalError) -> StoreError {
    match e {
        JournalError::Corruption {
            file,
            position,
            reason,
        } => StoreError::Corruption(format!("{} at byte {position}: {reason}", file.display())),
        JournalError::InvalidBatch(reason) => StoreError::InvalidBatch(reason),
        JournalError::OffsetOutOfRange {
            offset,
            log_start,
            end,
        } => StoreError::OffsetOutOfRange {
            offset,
            log_start,
            end,
        },
        JournalError::UnknownStream(name) => StoreError::UnknownStream(name),
        JournalError::UnknownPartition { stream, partition } => {
            StoreError::UnknownPartition { stream, partition }
        }
        JournalError::StreamExists(name) => StoreError::StreamExists(name),
        JournalError::InvalidConfig(reason) => StoreError::Invalid(reason),
        JournalError::Full { size, limit } => StoreError::Full { size, limit },
        JournalError::UnsupportedCodec(codec) => StoreError::UnsupportedCodec(codec),
        JournalError::Closed => StoreError::Closed,
        JournalError::Unavailable(reason) => StoreError::Unavailable(reason),
        // A fenced append lost its leadership while it ran: retriable, and the retry
        // finds the new leader.
        e @ JournalError::Fenced { .. } => StoreError::Unavailable(e.to_string()),
        JournalError::Unsupported(reason) => StoreError::Invalid(reason),
        e @ (JournalError::Io { .. } | JournalError::RocksDb(_)) => {
            StoreError::Storage(e.to_string())
        }
    }
}
