//! Records as the journal's users see them: offset, timestamp, key, value, headers.

use bytes::Bytes;

/// One record read back from the journal. Key, value and header values share the batch's
/// bytes when the batch is uncompressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Offset within the partition.
    pub offset: u64,
    /// Timestamp in milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// Optional key.
    pub key: Option<Bytes>,
    /// Value; `None` is a null value (a Kafka tombstone), distinct from an empty one.
    pub value: Option<Bytes>,
    /// Ordered headers; keys may repeat.
    pub headers: Vec<RecordHeader>,
}

/// One record header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordHeader {
    /// Header name.
    pub key: String,
    /// Header value; `None` is null.
    pub value: Option<Bytes>,
}

impl RecordHeader {
    /// Builds a header with a non-null value.
    pub fn new(key: impl Into<String>, value: impl Into<Bytes>) -> Self {
        RecordHeader {
            key: key.into(),
            value: Some(value.into()),
        }
    }
}

/// Current wall-clock time in milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
