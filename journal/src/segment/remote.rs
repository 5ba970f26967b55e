//! Segments held in object storage: an uploaded segment is one object, the segment's
//! bytes followed by its offset and time indexes, so a reader finds a batch with one
//! small ranged read of the index and then reads blocks through the block cache.
//!
//! ```text
//! [batches (data_len bytes)][offset index][time index][offset index length: u32 LE]
//! ```

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use strata_tiered::BlockCache;
use strata_tiered::manifest::Entry;
use tokio::sync::OnceCell;

use super::index::SegmentIndex;
use crate::batch::{Batch, BatchHeader, LENGTH_PREFIX, first_offset_at_time};
use crate::error::{JournalError, Result};

/// Bytes read past a reader's budget so one read usually covers the walk from an index
/// entry to the wanted batch.
const READ_SLACK: u64 = 64 * 1024;

/// The index trailer of an uploaded segment.
pub fn encode_trailer(index: &SegmentIndex) -> Bytes {
    let offsets = index.encode_offsets();
    let times = index.encode_times();
    let mut out = Vec::with_capacity(offsets.len() + times.len() + 4);
    out.extend_from_slice(&offsets);
    out.extend_from_slice(&times);
    out.extend_from_slice(&(offsets.len() as u32).to_le_bytes());
    Bytes::from(out)
}

/// Decodes an index trailer for a segment of `data_len` bytes.
pub fn decode_trailer(trailer: &[u8], data_len: u64) -> std::result::Result<SegmentIndex, String> {
    let Some(split) = trailer.len().checked_sub(4) else {
        return Err("index trailer shorter than its length field".into());
    };
    let mut n = [0u8; 4];
    n.copy_from_slice(&trailer[split..]);
    let n = u32::from_le_bytes(n) as usize;
    if n > split {
        return Err("index trailer length runs past the trailer".into());
    }
    SegmentIndex::decode(&trailer[..n], &trailer[n..split], data_len)
}

/// A segment that lives in object storage.
#[derive(Debug)]
pub struct RemoteSegment {
    /// Its manifest entry.
    pub entry: Entry,
    index: OnceCell<Arc<SegmentIndex>>,
}

impl RemoteSegment {
    /// Wraps a manifest entry; the index is fetched on first use.
    pub fn new(entry: Entry) -> Self {
        RemoteSegment {
            entry,
            index: OnceCell::new(),
        }
    }

    /// Offset after its last batch.
    pub fn end_offset(&self) -> u64 {
        self.entry.last_offset + 1
    }

    fn corruption(&self, position: u64, reason: String) -> JournalError {
        JournalError::Corruption {
            file: PathBuf::from(&self.entry.key),
            position,
            reason,
        }
    }

    async fn index(&self, cache: &BlockCache) -> Result<Arc<SegmentIndex>> {
        let e = &self.entry;
        self.index
            .get_or_try_init(|| async {
                if e.index_len == 0 {
                    return Ok(Arc::new(SegmentIndex::default()));
                }
                let trailer = cache.read(&e.key, e.size, e.data_len()..e.size).await?;
                decode_trailer(&trailer, e.data_len())
                    .map(Arc::new)
                    .map_err(|r| self.corruption(e.data_len(), r))
            })
            .await
            .cloned()
    }

    /// Byte position to start reading at for `from`.
    pub async fn position_for(&self, cache: &BlockCache, from: u64) -> Result<u64> {
        let rel = from
            .saturating_sub(self.entry.base_offset)
            .min(u64::from(u32::MAX)) as u32;
        Ok(u64::from(self.index(cache).await?.position_for(rel)))
    }

    /// Appends to `out` the batches holding offsets from `from` (below `visible_end`), up
    /// to `budget` bytes (at least one batch when `out` is empty). Returns the bytes added
    /// and the byte position after the last batch read.
    pub async fn read_into(
        &self,
        cache: &BlockCache,
        from: u64,
        visible_end: u64,
        budget: usize,
        out: &mut Vec<Batch>,
    ) -> Result<(usize, u64)> {
        let e = &self.entry;
        let size = e.data_len();
        let mut pos = self.position_for(cache, from).await?;
        let mut used = 0usize;
        let mut chunk = Bytes::new();
        let mut chunk_start = pos;
        while pos < size {
            let want = (budget.saturating_sub(used) as u64 + READ_SLACK).min(size - pos);
            if pos + LENGTH_PREFIX as u64 > chunk_start + chunk.len() as u64 {
                chunk = cache.read(&e.key, e.size, pos..pos + want).await?;
                chunk_start = pos;
            }
            let at = (pos - chunk_start) as usize;
            if chunk.len() - at < LENGTH_PREFIX {
                return Err(self.corruption(pos, "truncated batch header".into()));
            }
            let total =
                BatchHeader::peek_len(&chunk[at..]).map_err(|r| self.corruption(pos, r))? as u64;
            if pos + total > size {
                return Err(self.corruption(pos, "batch runs past the segment end".into()));
            }
            if pos + total > chunk_start + chunk.len() as u64 {
                chunk = cache
                    .read(&e.key, e.size, pos..pos + total.max(want))
                    .await?;
                chunk_start = pos;
            }
            let at = (pos - chunk_start) as usize;
            let bytes = chunk.slice(at..at + total as usize);
            let header = BatchHeader::parse(&bytes).map_err(|r| self.corruption(pos, r))?;
            if header.next_offset() <= from {
                pos += total;
                continue;
            }
            if header.base_offset >= visible_end
                || (!out.is_empty() && used + total as usize > budget)
            {
                break;
            }
            out.push(Batch::from_bytes(bytes).map_err(|r| self.corruption(pos, r))?);
            used += total as usize;
            pos += total;
            if used >= budget {
                break;
            }
        }
        Ok((used, pos))
    }

    /// The earliest offset in this segment with a timestamp of at least `ts`.
    pub async fn offset_for_timestamp(&self, cache: &BlockCache, ts: i64) -> Result<Option<u64>> {
        if self.entry.max_timestamp < ts {
            return Ok(None);
        }
        let index = self.index(cache).await?;
        let mut from = self.entry.base_offset + u64::from(index.rel_offset_for_time(ts));
        let end = self.end_offset();
        while from < end {
            let mut batches = Vec::new();
            self.read_into(cache, from, end, 1 << 20, &mut batches)
                .await?;
            let Some(last) = batches.last() else { break };
            from = last.last_offset() + 1;
            if let Some(found) = first_offset_at_time(&batches, ts, 0)? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn trailers_round_trip_and_bad_ones_are_refused() {
        let mut index = SegmentIndex::default();
        index.on_append(0, 0, 100, 5, 50);
        index.on_append(10, 100, 100, 7, 50);
        let t = encode_trailer(&index);
        let back = decode_trailer(&t, 200).unwrap();
        assert_eq!(back.position_for(12), 100);
        assert_eq!(back.max_timestamp(), Some(7));
        assert!(decode_trailer(&t[..3], 200).is_err());
        assert!(decode_trailer(&[0xff, 0xff, 0xff, 0x7f], 200).is_err());
    }
}
