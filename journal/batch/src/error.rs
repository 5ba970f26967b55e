//! Why a batch cannot be built or decoded.

/// Result alias of the batch codec.
pub type Result<T, E = BatchError> = std::result::Result<T, E>;

/// A batch that cannot be built or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// The bytes are not a well-formed batch (the reason says which check failed).
    #[error("invalid batch: {0}")]
    Invalid(String),
    /// The batch uses a compression codec this build cannot encode or decode.
    #[error("unsupported compression codec {0}")]
    UnsupportedCodec(u8),
}
