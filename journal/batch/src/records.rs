//! Decoding the records of a stored batch.

use bytes::Bytes;

use super::varint::{get_varint, get_varlong};
use super::{BatchHeader, Codec, HEADER_LEN, invalid};
use crate::error::{BatchError, Result};
use crate::record::{Record, RecordHeader};

/// Decompressed records larger than this are refused (a guard against zstd bombs).
pub const MAX_DECOMPRESSED_BYTES: usize = 4 * super::MAX_BATCH_BYTES;

/// Iterator over the records of one batch. Yields an error (and then stops) if the records
/// region is malformed.
#[derive(Debug)]
pub struct RecordIter {
    data: Bytes,
    pos: usize,
    remaining: u32,
    base_offset: u64,
    first_timestamp: i64,
    failed: bool,
}

impl RecordIter {
    pub(crate) fn new(header: &BatchHeader, batch: &Bytes) -> Result<RecordIter> {
        let payload = batch.slice(HEADER_LEN..);
        let data = match header.codec {
            Codec::None => payload,
            Codec::Zstd => {
                use std::io::Read;
                let limit = MAX_DECOMPRESSED_BYTES as u64;
                let mut out = Vec::with_capacity((payload.len() * 4).min(1 << 20));
                zstd::stream::Decoder::new(&payload[..])
                    .and_then(|d| d.take(limit + 1).read_to_end(&mut out))
                    .map_err(|e| invalid(format!("zstd records do not decode: {e}")))?;
                if out.len() as u64 > limit {
                    return Err(invalid("zstd records decompress beyond the size limit"));
                }
                Bytes::from(out)
            }
            Codec::Other(n) => return Err(BatchError::UnsupportedCodec(n)),
        };
        Ok(RecordIter {
            data,
            pos: 0,
            remaining: if header.control {
                0
            } else {
                header.record_count
            },
            base_offset: header.base_offset,
            first_timestamp: header.first_timestamp,
            failed: false,
        })
    }

    fn decode_one(&mut self) -> Option<Record> {
        let buf = &self.data[..];
        let mut pos = self.pos;
        let len = usize::try_from(get_varint(buf, &mut pos)?).ok()?;
        let end = pos.checked_add(len).filter(|&e| e <= buf.len())?;
        let rec = &buf[..end];
        pos += 1; // attributes
        let ts_delta = get_varlong(rec, &mut pos)?;
        let offset_delta = u64::try_from(get_varint(rec, &mut pos)?).ok()?;
        let key = self.opt_bytes(rec, &mut pos)?;
        let value = self.opt_bytes(rec, &mut pos)?;
        let count = usize::try_from(get_varint(rec, &mut pos)?).ok()?;
        let mut headers = Vec::with_capacity(count.min(64));
        for _ in 0..count {
            let k = self.opt_bytes(rec, &mut pos)??;
            let key = String::from_utf8(k.to_vec()).ok()?;
            let value = self.opt_bytes(rec, &mut pos)?;
            headers.push(RecordHeader { key, value });
        }
        if pos != end {
            return None;
        }
        self.pos = end;
        Some(Record {
            offset: self.base_offset + offset_delta,
            timestamp: self.first_timestamp.wrapping_add(ts_delta),
            key,
            value,
            headers,
        })
    }

    /// Reads a nullable length-prefixed byte string; the outer `None` means malformed.
    #[allow(clippy::option_option)]
    fn opt_bytes(&self, rec: &[u8], pos: &mut usize) -> Option<Option<Bytes>> {
        let len = get_varint(rec, pos)?;
        if len < 0 {
            return (len == -1).then_some(None);
        }
        let start = *pos;
        let end = start
            .checked_add(len as usize)
            .filter(|&e| e <= rec.len())?;
        *pos = end;
        Some(Some(self.data.slice(start..end)))
    }
}

impl Iterator for RecordIter {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 || self.failed {
            return None;
        }
        self.remaining -= 1;
        match self.decode_one() {
            Some(r) => Some(Ok(r)),
            None => {
                self.failed = true;
                Some(Err(invalid(format!(
                    "malformed record at byte {} of the records of batch {}",
                    self.pos, self.base_offset
                ))))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::{Batch, BatchBuilder, Codec};
    use proptest::prelude::*;

    type Rec = (
        i64,
        Option<Vec<u8>>,
        Option<Vec<u8>>,
        Vec<(String, Option<Vec<u8>>)>,
    );

    fn record_strategy() -> impl Strategy<Value = Rec> {
        (
            -1_000_000i64..2_000_000_000_000,
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..300)),
            proptest::collection::vec(
                (
                    "[a-z]{0,8}",
                    proptest::option::of(proptest::collection::vec(any::<u8>(), 0..8)),
                ),
                0..3,
            ),
        )
    }

    proptest! {
        #[test]
        fn records_round_trip(recs in proptest::collection::vec(record_strategy(), 1..20),
                              zstd in any::<bool>(), base in 0u64..1 << 50) {
            let codec = if zstd { Codec::Zstd } else { Codec::None };
            let mut b = BatchBuilder::with_codec(codec);
            for (ts, k, v, h) in &recs {
                let hs: Vec<(&str, Option<&[u8]>)> =
                    h.iter().map(|(k, v)| (k.as_str(), v.as_deref())).collect();
                b.push(*ts, k.as_deref(), v.as_deref(), &hs);
            }
            let (_, bytes) = b.build().unwrap().seal(base);
            let batch = Batch::from_bytes(bytes).unwrap();
            prop_assert_eq!(batch.base_offset(), base);
            prop_assert_eq!(batch.last_offset(), base + recs.len() as u64 - 1);
            let max_ts = recs.iter().map(|r| r.0).max().unwrap();
            prop_assert_eq!(batch.header().max_timestamp, max_ts);
            let out: Vec<_> = batch.records().unwrap().collect::<Result<_, _>>().unwrap();
            prop_assert_eq!(out.len(), recs.len());
            for (i, (r, (ts, k, v, h))) in out.iter().zip(&recs).enumerate() {
                prop_assert_eq!(r.offset, base + i as u64);
                prop_assert_eq!(r.timestamp, *ts);
                prop_assert_eq!(r.key.as_deref(), k.as_deref());
                prop_assert_eq!(r.value.as_deref(), v.as_deref());
                prop_assert_eq!(r.headers.len(), h.len());
                for (rh, (hk, hv)) in r.headers.iter().zip(h) {
                    prop_assert_eq!(&rh.key, hk);
                    prop_assert_eq!(rh.value.as_deref(), hv.as_deref());
                }
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(batch) = Batch::from_bytes(bytes::Bytes::from(data))
                && let Ok(iter) = batch.records() {
                    for _ in iter {}
                }
        }
    }

    #[test]
    fn kafka_crc32c_covers_attributes_onward() {
        let mut b = BatchBuilder::new();
        b.push(1, None, Some(b"v"), &[]);
        let (_, bytes) = b.build().unwrap().seal(7);
        let kafka = &bytes[8..];
        let stored = u32::from_be_bytes(kafka[17..21].try_into().unwrap());
        assert_eq!(stored, crc32c::crc32c(&kafka[21..]));
    }

    #[test]
    fn a_flipped_byte_fails_the_crc() {
        let mut b = BatchBuilder::new();
        b.push(1, Some(b"k"), Some(b"value"), &[]);
        let (_, bytes) = b.build().unwrap().seal(0);
        for i in 0..bytes.len() {
            let mut copy = bytes.to_vec();
            copy[i] ^= 0x40;
            assert!(
                Batch::from_bytes(copy.into()).is_err(),
                "flip at {i} went unnoticed"
            );
        }
    }
}
