//! Encoding records into a batch that is ready to append once it is given a base offset.

use bytes::{BufMut, Bytes, BytesMut};

use super::varint::{put_varint, put_varlong, varlong_len};
use super::{
    ATTR_CONTROL, BatchHeader, Codec, FRAME_MAGIC, FRAME_VERSION, HEADER_LEN, KAFKA_MAGIC, invalid,
};
use crate::error::{BatchError, Result};

/// Collects records and encodes them in the stored batch format.
#[derive(Debug)]
pub struct BatchBuilder {
    codec: Codec,
    /// The batch being built: [`HEADER_LEN`] bytes of header space, then the records.
    records: Vec<u8>,
    count: u32,
    first_timestamp: Option<i64>,
    max_timestamp: i64,
    /// A control batch (Kafka's attribute bit 5): markers, not data.
    control: bool,
}

impl Default for BatchBuilder {
    fn default() -> Self {
        Self::with_codec(Codec::None)
    }
}

impl BatchBuilder {
    /// An empty, uncompressed batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty batch whose records will be compressed with `codec` (`None` or `Zstd`).
    pub fn with_codec(codec: Codec) -> Self {
        Self::with_capacity(codec, 0)
    }

    /// Like [`BatchBuilder::with_codec`], with room for `records_bytes` of encoded records
    /// so that pushing them does not reallocate.
    pub fn with_capacity(codec: Codec, records_bytes: usize) -> Self {
        let mut records = Vec::with_capacity(HEADER_LEN + records_bytes);
        records.resize(HEADER_LEN, 0);
        BatchBuilder {
            codec,
            records,
            count: 0,
            first_timestamp: None,
            max_timestamp: 0,
            control: false,
        }
    }

    /// The marker a replicated partition's new leader appends when it takes over, so that
    /// committing it commits every earlier record (Raft commits earlier terms' entries
    /// only through one of the current term): a control batch holding one Kafka
    /// `LEADER_CHANGE` control record (key: version 0, type 2), which Kafka consumers skip.
    pub fn leader_change_marker(leader: u64, now_ms: i64) -> PendingBatch {
        let mut b = BatchBuilder::new();
        b.control = true;
        let key = [0u8, 0, 0, 2];
        let value = leader.to_be_bytes();
        b.push(now_ms, Some(&key), Some(&value), &[]);
        match b.build() {
            Ok(p) => p,
            Err(e) => unreachable!("a one-record marker is a valid batch: {e}"),
        }
    }

    /// Number of records pushed so far.
    pub fn len(&self) -> u32 {
        self.count
    }

    /// True when no record has been pushed.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Uncompressed size of the records pushed so far, header excluded.
    pub fn records_size(&self) -> usize {
        self.records.len() - HEADER_LEN
    }

    /// Appends one record with a null-able key and value and `headers`.
    pub fn push(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&str, Option<&[u8]>)],
    ) {
        let first = *self.first_timestamp.get_or_insert(timestamp);
        self.max_timestamp = if self.count == 0 {
            timestamp
        } else {
            self.max_timestamp.max(timestamp)
        };
        let ts_delta = timestamp.wrapping_sub(first);
        let offset_delta = i64::from(self.count);
        let opt_len = |b: Option<&[u8]>| b.map_or(1, |b| varlong_len(b.len() as i64) + b.len());
        let mut body = 1 + varlong_len(ts_delta) + varlong_len(offset_delta);
        body += opt_len(key) + opt_len(value) + varlong_len(headers.len() as i64);
        for (k, v) in headers {
            body += varlong_len(k.len() as i64) + k.len() + opt_len(*v);
        }
        self.records.reserve(body + 5);
        put_varlong(&mut self.records, body as i64);
        self.records.push(0); // record attributes, unused
        put_varlong(&mut self.records, ts_delta);
        put_varlong(&mut self.records, offset_delta);
        put_bytes(&mut self.records, key);
        put_bytes(&mut self.records, value);
        put_varint(&mut self.records, headers.len() as i32);
        for (k, v) in headers {
            put_bytes(&mut self.records, Some(k.as_bytes()));
            put_bytes(&mut self.records, *v);
        }
        self.count += 1;
    }

    /// Finishes the batch: compresses, writes the header and Kafka's crc32c.
    pub fn build(self) -> Result<PendingBatch> {
        if self.count == 0 {
            return Err(invalid("a batch needs at least one record"));
        }
        let mut buf = match self.codec {
            // The records are already in place after the header space: no copy.
            Codec::None => self.records,
            Codec::Zstd => {
                let compressed = zstd::bulk::compress(&self.records[HEADER_LEN..], 1)
                    .map_err(|e| invalid(format!("zstd: {e}")))?;
                let mut buf = Vec::with_capacity(HEADER_LEN + compressed.len());
                buf.resize(HEADER_LEN, 0);
                buf.extend_from_slice(&compressed);
                buf
            }
            Codec::Other(n) => return Err(BatchError::UnsupportedCodec(n)),
        };
        let total = buf.len();
        if total > super::MAX_BATCH_BYTES {
            return Err(invalid(format!("batch of {total} bytes is too large")));
        }
        let first_timestamp = self.first_timestamp.unwrap_or(0);
        let mut h = &mut buf[..HEADER_LEN];
        h.put_u32(0); // frame crc, set at append
        h.put_u16(FRAME_MAGIC);
        h.put_u8(FRAME_VERSION);
        h.put_u8(0);
        h.put_i64(0); // base offset, set at append
        h.put_i32((total - super::LENGTH_PREFIX) as i32);
        h.put_i32(0); // partition leader epoch
        h.put_u8(KAFKA_MAGIC);
        h.put_u32(0); // crc32c, below
        h.put_i16(self.codec.attribute_bits() | if self.control { ATTR_CONTROL } else { 0 });
        h.put_i32(self.count as i32 - 1);
        h.put_i64(first_timestamp);
        h.put_i64(self.max_timestamp);
        h.put_i64(-1); // producer id
        h.put_i16(-1); // producer epoch
        h.put_i32(-1); // base sequence
        h.put_i32(self.count as i32);
        let crc32c = crc32c::crc32c(&buf[29..]);
        buf[25..29].copy_from_slice(&crc32c.to_be_bytes());
        Ok(PendingBatch::new(BytesMut::from(Bytes::from(buf))))
    }
}

fn put_bytes(buf: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => put_varint(buf, -1),
        Some(b) => {
            put_varlong(buf, b.len() as i64);
            buf.extend_from_slice(b);
        }
    }
}

/// An encoded batch waiting for its base offset. Most of its frame CRC is computed here,
/// outside any partition lock; [`PendingBatch::seal`] finishes it in constant time.
#[derive(Debug)]
pub struct PendingBatch {
    buf: BytesMut,
    header: BatchHeader,
    tail_crc: crc32fast::Hasher,
}

impl PendingBatch {
    fn new(buf: BytesMut) -> Self {
        // The header was just written by the builder, so it parses.
        let header = match BatchHeader::parse(&buf) {
            Ok(h) => h,
            Err(e) => unreachable!("builder wrote an invalid header: {e}"),
        };
        // Bytes 8..24 (base offset, length, leader epoch) are finished at sealing.
        let mut tail_crc = crc32fast::Hasher::new();
        tail_crc.update(&buf[24..]);
        PendingBatch {
            buf,
            header,
            tail_crc,
        }
    }

    /// The batch in the stored format as it is now (its base offset and frame CRC are set
    /// at append): what [`PendingBatch::from_stored`] takes back on another node.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Takes a complete batch in the stored format (for instance one read from another
    /// journal), checking its structure. Its base offset and frame CRC are replaced at append.
    pub fn from_stored(bytes: &[u8]) -> Result<PendingBatch> {
        let header = BatchHeader::parse(bytes).map_err(invalid)?;
        if header.total_len != bytes.len() {
            return Err(invalid("batch length does not match its bytes"));
        }
        if header.record_count != header.last_offset_delta + 1 {
            return Err(invalid("record count does not match the last offset delta"));
        }
        Ok(PendingBatch::new(BytesMut::from(bytes)))
    }

    /// Takes a Kafka v2 `RecordBatch` as a producer sent it (records possibly compressed
    /// with any codec: stored as received), checking its length, magic, record count and
    /// Kafka's crc32c. Its base offset and the frame are set at append.
    pub fn from_kafka(kafka: &[u8]) -> Result<PendingBatch> {
        const KAFKA_HEADER: usize = HEADER_LEN - super::FRAME_PREFIX;
        if kafka.len() < KAFKA_HEADER {
            return Err(invalid(format!(
                "short record batch: {} bytes",
                kafka.len()
            )));
        }
        let length = i32::from_be_bytes([kafka[8], kafka[9], kafka[10], kafka[11]]);
        if length < 0 || 12 + length as usize != kafka.len() {
            return Err(invalid("record batch length does not match its bytes"));
        }
        if kafka[16] != KAFKA_MAGIC {
            return Err(invalid(format!(
                "record batch magic {} is not 2",
                kafka[16]
            )));
        }
        let crc = u32::from_be_bytes([kafka[17], kafka[18], kafka[19], kafka[20]]);
        if crc32c::crc32c(&kafka[21..]) != crc {
            return Err(invalid("record batch crc32c does not match"));
        }
        if super::FRAME_PREFIX + kafka.len() > super::MAX_BATCH_BYTES {
            return Err(invalid(format!(
                "batch of {} bytes is too large",
                kafka.len()
            )));
        }
        let mut buf = BytesMut::with_capacity(super::FRAME_PREFIX + kafka.len());
        buf.put_u32(0);
        buf.put_u16(FRAME_MAGIC);
        buf.put_u8(FRAME_VERSION);
        buf.put_u8(0);
        buf.extend_from_slice(kafka);
        let header = BatchHeader::parse(&buf).map_err(invalid)?;
        if header.record_count == 0 || header.record_count != header.last_offset_delta + 1 {
            return Err(invalid("record count does not match the last offset delta"));
        }
        Ok(PendingBatch::new(buf))
    }

    /// Producer id, epoch and base sequence (Kafka idempotence); -1s when none.
    pub fn producer(&self) -> (i64, i16, i32) {
        let b = &self.buf;
        (
            i64::from_be_bytes([b[51], b[52], b[53], b[54], b[55], b[56], b[57], b[58]]),
            i16::from_be_bytes([b[59], b[60]]),
            i32::from_be_bytes([b[61], b[62], b[63], b[64]]),
        )
    }

    /// Size of the batch in bytes.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Always false: a batch holds at least one record.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Number of records.
    pub fn record_count(&self) -> u32 {
        self.header.record_count
    }

    /// Offset span of the batch minus one (the last record's offset delta).
    pub fn last_offset_delta(&self) -> u32 {
        self.header.last_offset_delta
    }

    /// Largest record timestamp.
    pub fn max_timestamp(&self) -> i64 {
        self.header.max_timestamp
    }

    /// Assigns the base offset and completes the frame CRC, keeping the partition leader
    /// epoch the batch came with.
    pub fn seal(self, base_offset: u64) -> (BatchHeader, Bytes) {
        let epoch = self.header.leader_epoch;
        self.seal_in_epoch(base_offset, epoch)
    }

    /// Assigns the base offset and the partition leader epoch (the replicated partition's
    /// Raft term) and completes the frame CRC, in constant time.
    pub fn seal_in_epoch(self, base_offset: u64, leader_epoch: i32) -> (BatchHeader, Bytes) {
        let PendingBatch {
            mut buf,
            mut header,
            tail_crc,
        } = self;
        buf[8..16].copy_from_slice(&(base_offset as i64).to_be_bytes());
        buf[20..24].copy_from_slice(&leader_epoch.to_be_bytes());
        let mut crc = crc32fast::Hasher::new();
        crc.update(&buf[4..24]);
        crc.combine(&tail_crc);
        let crc = crc.finalize();
        buf[0..4].copy_from_slice(&crc.to_be_bytes());
        header.base_offset = base_offset;
        header.leader_epoch = leader_epoch;
        header.crc = crc;
        (header, buf.freeze())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::Batch;

    #[test]
    fn kafka_batches_are_taken_as_received_and_checked() {
        let mut b = BatchBuilder::new();
        b.push(5, Some(b"k"), Some(b"v1"), &[]);
        b.push(6, None, Some(b"v2"), &[]);
        let (_, stored) = b.build().unwrap().seal(40);
        let kafka = Batch::from_bytes(stored.clone()).unwrap().kafka_bytes();
        let again = PendingBatch::from_kafka(&kafka).unwrap();
        assert_eq!(again.record_count(), 2);
        assert_eq!(again.producer(), (-1, -1, -1));
        let (h, bytes) = again.seal(40);
        assert_eq!(h.next_offset(), 42);
        assert_eq!(bytes, stored, "the same stored bytes as the original");
        let (h, stamped) = PendingBatch::from_kafka(&kafka)
            .unwrap()
            .seal_in_epoch(40, 7);
        assert_eq!(h.leader_epoch, 7);
        let stamped = Batch::from_bytes(stamped).unwrap();
        assert_eq!(
            stamped.header().leader_epoch,
            7,
            "the epoch is stored and checked"
        );
        assert_eq!(stamped.record_count(), 2);
        let mut bad = kafka.to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(PendingBatch::from_kafka(&bad).is_err(), "crc32c checked");
        assert!(PendingBatch::from_kafka(&kafka[..30]).is_err());
        let mut magic = kafka.to_vec();
        magic[16] = 1;
        assert!(PendingBatch::from_kafka(&magic).is_err());
    }
}
