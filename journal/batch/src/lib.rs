//! The stored batch format: a 8-byte Strata frame around a Kafka v2 `RecordBatch`, and its
//! records. Pure code (no I/O): the journal stores these batches, frontends build and read them.
//!
//! ```text
//! frame   0  u32  crc      CRC-32 (IEEE, crc32fast) of every byte after this field
//!         4  u16  magic    0x5354 ("ST")
//!         6  u8   version  1
//!         7  u8   flags    0 (reserved)
//! kafka   8  i64  base offset
//!        16  i32  batch length (bytes after this field)
//!        20  i32  partition leader epoch
//!        24  i8   magic = 2
//!        25  u32  crc32c of bytes 29.. (Kafka's own checksum)
//!        29  i16  attributes (bits 0-2 codec: 0 none, 4 zstd; bit 3 timestamp type)
//!        31  i32  last offset delta
//!        35  i64  first timestamp
//!        43  i64  max timestamp
//!        51  i64  producer id
//!        59  i16  producer epoch
//!        61  i32  base sequence
//!        65  i32  record count
//!        69  ...  records (Kafka v2 record layout, possibly compressed)
//! ```
//! All integers are big-endian. Bytes 8.. are a valid Kafka v2 batch, so a Kafka fetch can
//! be answered by slicing stored bytes.

mod builder;
mod error;
mod record;
mod records;
pub mod varint;

pub use builder::{BatchBuilder, PendingBatch};
pub use error::{BatchError, Result};
pub use record::{Record, RecordHeader, now_ms, rfc3339_ms};
pub use records::RecordIter;

use bytes::Bytes;

/// Size of the Strata frame before the Kafka batch.
pub const FRAME_PREFIX: usize = 8;
/// Size of the complete batch header (frame + Kafka v2 header).
pub const HEADER_LEN: usize = 69;
/// Bytes that must be read to learn a batch's total length.
pub const LENGTH_PREFIX: usize = 20;
/// Frame magic number.
pub const FRAME_MAGIC: u16 = 0x5354;
/// Frame format version.
pub const FRAME_VERSION: u8 = 1;
/// Kafka record batch magic this format embeds.
pub const KAFKA_MAGIC: u8 = 2;
/// Largest batch the journal accepts (frame included).
pub const MAX_BATCH_BYTES: usize = 64 * 1024 * 1024;

const ATTR_CODEC_MASK: i16 = 0x07;
/// Kafka's control-batch attribute: the batch holds markers, not data.
const ATTR_CONTROL: i16 = 0x20;

/// Compression codec of a batch's records, with Kafka's attribute numbering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Codec {
    /// Uncompressed records.
    #[default]
    None,
    /// Records compressed as one zstd frame.
    Zstd,
    /// Stored as received from a Kafka producer; not decodable by this build.
    Other(u8),
}

impl Codec {
    fn from_attributes(attributes: i16) -> Self {
        match (attributes & ATTR_CODEC_MASK) as u8 {
            0 => Codec::None,
            4 => Codec::Zstd,
            n => Codec::Other(n),
        }
    }

    fn attribute_bits(self) -> i16 {
        match self {
            Codec::None => 0,
            Codec::Zstd => 4,
            Codec::Other(n) => i16::from(n) & ATTR_CODEC_MASK,
        }
    }
}

/// The fixed header fields of a batch, parsed from its first [`HEADER_LEN`] bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Stored frame CRC.
    pub crc: u32,
    /// Offset of the first record.
    pub base_offset: u64,
    /// Partition leader epoch: the term of the leader that appended it (replicated
    /// partitions); as received, or 0, elsewhere.
    pub leader_epoch: i32,
    /// Total size of the batch including the frame, in bytes.
    pub total_len: usize,
    /// Offset of the last record minus the base offset.
    pub last_offset_delta: u32,
    /// Timestamp (ms) of the first record.
    pub first_timestamp: i64,
    /// Largest record timestamp (ms).
    pub max_timestamp: i64,
    /// Number of records.
    pub record_count: u32,
    /// Compression codec.
    pub codec: Codec,
    /// A control batch (markers such as a replicated partition's leader change), which
    /// consumers skip.
    pub control: bool,
}

impl BatchHeader {
    /// Offset of the last record in the batch.
    pub fn last_offset(&self) -> u64 {
        self.base_offset + u64::from(self.last_offset_delta)
    }

    /// Offset that follows the batch.
    pub fn next_offset(&self) -> u64 {
        self.last_offset() + 1
    }

    /// Reads the total batch length from the first [`LENGTH_PREFIX`] bytes, checking the
    /// frame magic and version. Returns a reason string on malformed input.
    pub fn peek_len(buf: &[u8]) -> std::result::Result<usize, String> {
        if buf.len() < LENGTH_PREFIX {
            return Err(format!("short header: {} bytes", buf.len()));
        }
        let magic = u16::from_be_bytes([buf[4], buf[5]]);
        if magic != FRAME_MAGIC || buf[6] != FRAME_VERSION {
            return Err(format!("bad frame magic {magic:#06x} version {}", buf[6]));
        }
        let batch_len = i32::from_be_bytes(be4(buf, 16));
        let total = usize::try_from(batch_len)
            .ok()
            .map(|l| l + LENGTH_PREFIX)
            .filter(|&t| (HEADER_LEN..=MAX_BATCH_BYTES).contains(&t))
            .ok_or_else(|| format!("bad batch length {batch_len}"))?;
        Ok(total)
    }

    /// Parses and sanity-checks the header (not the CRC) of the batch starting at `buf[0]`.
    pub fn parse(buf: &[u8]) -> std::result::Result<BatchHeader, String> {
        let total_len = Self::peek_len(buf)?;
        if buf.len() < HEADER_LEN {
            return Err(format!("short header: {} bytes", buf.len()));
        }
        if buf[24] != KAFKA_MAGIC {
            return Err(format!("bad record batch magic {}", buf[24]));
        }
        let last_offset_delta = i32::from_be_bytes(be4(buf, 31));
        let record_count = i32::from_be_bytes(be4(buf, 65));
        let (Ok(last_offset_delta), Ok(record_count)) = (
            u32::try_from(last_offset_delta),
            u32::try_from(record_count),
        ) else {
            return Err("negative offset delta or record count".into());
        };
        let base_offset = i64::from_be_bytes(be8(buf, 8));
        let base_offset = u64::try_from(base_offset)
            .map_err(|_| format!("negative base offset {base_offset}"))?;
        Ok(BatchHeader {
            crc: u32::from_be_bytes(be4(buf, 0)),
            base_offset,
            leader_epoch: i32::from_be_bytes(be4(buf, 20)),
            total_len,
            last_offset_delta,
            first_timestamp: i64::from_be_bytes(be8(buf, 35)),
            max_timestamp: i64::from_be_bytes(be8(buf, 43)),
            record_count,
            codec: Codec::from_attributes(i16::from_be_bytes([buf[29], buf[30]])),
            control: i16::from_be_bytes([buf[29], buf[30]]) & ATTR_CONTROL != 0,
        })
    }
}

/// Computes the frame CRC of a complete batch.
pub fn frame_crc(batch: &[u8]) -> u32 {
    frame_crc_of_tail(&batch[4..])
}

/// Computes the frame CRC from the bytes after the CRC field.
pub fn frame_crc_of_tail(tail: &[u8]) -> u32 {
    crc32fast::hash(tail)
}

fn be4(buf: &[u8], at: usize) -> [u8; 4] {
    [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]
}

fn be8(buf: &[u8], at: usize) -> [u8; 8] {
    let mut out = [0u8; 8];
    out.copy_from_slice(&buf[at..at + 8]);
    out
}

/// A stored, CRC-verified batch. Cloning is cheap; the bytes are shared.
#[derive(Clone, PartialEq, Eq)]
pub struct Batch {
    header: BatchHeader,
    bytes: Bytes,
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("base_offset", &self.header.base_offset)
            .field("records", &self.header.record_count)
            .field("len", &self.bytes.len())
            .finish()
    }
}

impl Batch {
    /// Wraps bytes holding exactly one batch, verifying structure and CRC. On failure the
    /// reason is returned; callers attach file and position.
    pub fn from_bytes(bytes: Bytes) -> std::result::Result<Batch, String> {
        let header = BatchHeader::parse(&bytes)?;
        if header.total_len != bytes.len() {
            return Err(format!(
                "batch length {} does not match {} available bytes",
                header.total_len,
                bytes.len()
            ));
        }
        let actual = frame_crc(&bytes);
        if actual != header.crc {
            return Err(format!(
                "crc mismatch: stored {:#010x}, computed {actual:#010x}",
                header.crc
            ));
        }
        Ok(Batch { header, bytes })
    }

    /// Wraps bytes the journal itself produced and already trusts.
    #[doc(hidden)]
    pub fn trusted(header: BatchHeader, bytes: Bytes) -> Batch {
        Batch { header, bytes }
    }

    /// The parsed header.
    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    /// Offset of the first record.
    pub fn base_offset(&self) -> u64 {
        self.header.base_offset
    }

    /// Offset of the last record.
    pub fn last_offset(&self) -> u64 {
        self.header.last_offset()
    }

    /// Number of records in the batch.
    pub fn record_count(&self) -> u32 {
        self.header.record_count
    }

    /// The whole stored batch, frame included.
    pub fn as_bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// Size of the stored batch in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Always false: a batch holds at least its header.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Producer id, epoch and base sequence (Kafka idempotence); -1s when none.
    pub fn producer(&self) -> (i64, i16, i32) {
        let b = &self.bytes;
        (
            i64::from_be_bytes(be8(b, 51)),
            i16::from_be_bytes([b[59], b[60]]),
            i32::from_be_bytes(be4(b, 61)),
        )
    }

    /// The embedded Kafka v2 record batch, ready to send in a Fetch response.
    pub fn kafka_bytes(&self) -> Bytes {
        self.bytes.slice(FRAME_PREFIX..)
    }

    /// Decodes the records (decompressing when needed). A control batch (a replicated
    /// partition's leader-change marker) yields none: its offsets hold no data, and
    /// readers step past it by the batch's last offset.
    pub fn records(&self) -> Result<RecordIter> {
        RecordIter::new(&self.header, &self.bytes)
    }
}

/// The offset of the first record, at or after `min_offset`, whose timestamp is at least
/// `timestamp_ms`, searching `batches` in order and decoding only batches whose largest
/// timestamp can qualify.
pub fn first_offset_at_time(
    batches: &[Batch],
    timestamp_ms: i64,
    min_offset: u64,
) -> Result<Option<u64>> {
    for b in batches
        .iter()
        .filter(|b| b.header().max_timestamp >= timestamp_ms)
    {
        for r in b.records()? {
            let r = r?;
            if r.timestamp >= timestamp_ms && r.offset >= min_offset {
                return Ok(Some(r.offset));
            }
        }
    }
    Ok(None)
}

pub(crate) fn invalid(reason: impl Into<String>) -> BatchError {
    BatchError::Invalid(reason.into())
}
