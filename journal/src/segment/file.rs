//! One segment: a file of batches named by its base offset, with its two indexes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::RwLock;

use super::index::SegmentIndex;
use super::scan::{ScanStop, scan};
use crate::batch::{Batch, BatchHeader, LENGTH_PREFIX};
use crate::error::{JournalError, Result};
use crate::fs::{self, FileSystem, JournalFile};
use crate::policy::SegmentSummary;

/// Extra bytes read past a reader's budget so that one read usually covers the walk from
/// an index entry to the wanted batch.
const READ_SLACK: usize = 64 * 1024;

/// Path of the segment file with base offset `base` in `dir`.
pub fn log_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.log"))
}

/// Path of its offset index.
pub fn index_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.index"))
}

/// Path of its time index.
pub fn time_index_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.timeindex"))
}

/// The mutable state of a segment; only the active segment changes.
#[derive(Debug, Default)]
pub struct SegmentMeta {
    /// Bytes of complete batches.
    pub size: u64,
    /// Offset after the last batch.
    pub end_offset: u64,
    /// The indexes.
    pub index: SegmentIndex,
    /// When the first batch was appended (ms).
    pub first_append_ms: Option<i64>,
}

/// A segment file and what is known about it.
#[derive(Debug)]
pub struct Segment {
    /// Offset of its first batch.
    pub base_offset: u64,
    /// The `.log` file path.
    pub path: PathBuf,
    /// The open file.
    pub file: Arc<dyn JournalFile>,
    /// Size, end offset and indexes.
    pub meta: RwLock<SegmentMeta>,
}

impl Segment {
    /// Creates an empty segment file.
    pub fn create(fs: &dyn FileSystem, dir: &Path, base: u64) -> Result<Segment> {
        let path = log_path(dir, base);
        let file = fs
            .open(&path, true)
            .map_err(|e| JournalError::io(&path, e))?;
        file.set_len(0).map_err(|e| JournalError::io(&path, e))?;
        Ok(Segment {
            base_offset: base,
            path,
            file,
            meta: RwLock::new(SegmentMeta {
                end_offset: base,
                ..SegmentMeta::default()
            }),
        })
    }

    /// Wraps an opened file with recovered metadata.
    pub fn from_parts(
        base: u64,
        path: PathBuf,
        file: Arc<dyn JournalFile>,
        meta: SegmentMeta,
    ) -> Self {
        Segment {
            base_offset: base,
            path,
            file,
            meta: RwLock::new(meta),
        }
    }

    /// The figures retention and roll decisions need.
    pub fn summary(&self) -> SegmentSummary {
        let m = self.meta.read();
        SegmentSummary {
            base_offset: self.base_offset,
            end_offset: m.end_offset,
            size: m.size,
            max_timestamp: m.index.max_timestamp(),
            first_append_ms: m.first_append_ms,
        }
    }

    /// Records a batch just written at the current end.
    pub fn on_append(&self, header: &BatchHeader, now_ms: i64, interval: u32) {
        let mut m = self.meta.write();
        let rel = (header.base_offset - self.base_offset) as u32;
        let len = header.total_len as u64;
        let position = m.size as u32;
        m.index
            .on_append(rel, position, len, header.max_timestamp, interval);
        m.size += len;
        m.end_offset = header.next_offset();
        m.first_append_ms.get_or_insert(now_ms);
    }

    /// Writes both index files durably (at seal time and on clean close).
    pub fn write_indexes(&self, fs: &dyn FileSystem) -> Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let (offsets, times) = {
            let m = self.meta.read();
            (m.index.encode_offsets(), m.index.encode_times())
        };
        let ipath = index_path(dir, self.base_offset);
        fs::write_file_atomic(fs, &ipath, &offsets).map_err(|e| JournalError::io(&ipath, e))?;
        let tpath = time_index_path(dir, self.base_offset);
        fs::write_file_atomic(fs, &tpath, &times).map_err(|e| JournalError::io(&tpath, e))
    }

    /// Removes the segment's files.
    pub fn remove_files(&self, fs: &dyn FileSystem) -> Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        for p in [
            index_path(dir, self.base_offset),
            time_index_path(dir, self.base_offset),
            self.path.clone(),
        ] {
            match fs.remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(JournalError::io(&p, e)),
            }
        }
        Ok(())
    }

    fn corruption(&self, position: u64, reason: String) -> JournalError {
        JournalError::Corruption {
            file: self.path.clone(),
            position,
            reason,
        }
    }

    fn read_chunk(&self, pos: u64, len: usize) -> Result<Bytes> {
        let mut buf = vec![0u8; len];
        self.file
            .read_exact_at(&mut buf, pos)
            .map_err(|e| JournalError::io(&self.path, e))?;
        Ok(Bytes::from(buf))
    }

    /// Appends to `out` the batches holding offsets `from..visible_end`, up to `budget`
    /// bytes (at least one batch when `out` is empty). Returns the bytes added and whether
    /// the read reached the end of the segment (only then may a reader go on to the next).
    pub fn read_into(
        &self,
        from: u64,
        visible_end: u64,
        budget: usize,
        out: &mut Vec<Batch>,
    ) -> Result<(usize, bool)> {
        let (size, mut pos) = {
            let m = self.meta.read();
            let rel = from
                .saturating_sub(self.base_offset)
                .min(u64::from(u32::MAX)) as u32;
            (m.size, u64::from(m.index.position_for(rel)))
        };
        let mut used = 0usize;
        let mut chunk = Bytes::new();
        let mut chunk_start = pos;
        while pos < size {
            let chunk_end = chunk_start + chunk.len() as u64;
            let want = (budget.saturating_sub(used) + READ_SLACK).max(LENGTH_PREFIX);
            if pos + LENGTH_PREFIX as u64 > chunk_end {
                chunk = self.read_chunk(pos, want.min((size - pos) as usize))?;
                chunk_start = pos;
            }
            let at = (pos - chunk_start) as usize;
            if chunk.len() - at < LENGTH_PREFIX {
                return Err(self.corruption(pos, "truncated batch header".into()));
            }
            let total = BatchHeader::peek_len(&chunk[at..]).map_err(|r| self.corruption(pos, r))?;
            if pos + total as u64 > size {
                return Err(self.corruption(pos, "batch runs past the segment end".into()));
            }
            if pos + total as u64 > chunk_start + chunk.len() as u64 {
                chunk = self.read_chunk(pos, want.max(total).min((size - pos) as usize))?;
                chunk_start = pos;
            }
            let at = (pos - chunk_start) as usize;
            let bytes = chunk.slice(at..at + total);
            let header = BatchHeader::parse(&bytes).map_err(|r| self.corruption(pos, r))?;
            if header.next_offset() <= from {
                pos += total as u64;
                continue;
            }
            if header.base_offset >= visible_end || (!out.is_empty() && used + total > budget) {
                return Ok((used, false));
            }
            let batch = Batch::from_bytes(bytes).map_err(|r| self.corruption(pos, r))?;
            used += total;
            out.push(batch);
            pos += total as u64;
            if used >= budget {
                return Ok((used, pos >= size));
            }
        }
        Ok((used, true))
    }

    /// Scans the whole file verifying every batch, truncating at the first bad one, and
    /// rebuilds the indexes. Returns the segment and the number of bytes cut off.
    pub fn recover(
        fs: &dyn FileSystem,
        dir: &Path,
        base: u64,
        interval: u32,
        now_ms: i64,
    ) -> Result<(Segment, u64)> {
        let path = log_path(dir, base);
        let file = fs
            .open(&path, false)
            .map_err(|e| JournalError::io(&path, e))?;
        let len = file.len().map_err(|e| JournalError::io(&path, e))?;
        let mut meta = SegmentMeta {
            end_offset: base,
            ..SegmentMeta::default()
        };
        let stop = scan(&*file, 0, len, true, |b| {
            let rel = (b.header.base_offset.saturating_sub(base)).min(u64::from(u32::MAX)) as u32;
            let blen = b.header.total_len as u64;
            meta.index.on_append(
                rel,
                b.position as u32,
                blen,
                b.header.max_timestamp,
                interval,
            );
            meta.size = b.position + blen;
            meta.end_offset = b.header.next_offset();
            meta.first_append_ms
                .get_or_insert(b.header.max_timestamp.min(now_ms));
        })
        .map_err(|e| JournalError::io(&path, e))?;
        let mut cut = 0;
        if let ScanStop::Torn { position, reason } | ScanStop::Corrupt { position, reason } = stop {
            cut = len - position;
            tracing::warn!(file = %path.display(), position, bytes = cut, %reason,
                "truncating the damaged tail of the last segment");
            file.set_len(position)
                .map_err(|e| JournalError::io(&path, e))?;
            file.sync().map_err(|e| JournalError::io(&path, e))?;
        }
        Ok((Segment::from_parts(base, path, file, meta), cut))
    }
}
