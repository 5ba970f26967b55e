//! Opening a partition directory: sealed segments load (or rebuild) their indexes, the
//! last segment is verified batch by batch and its damaged tail cut off.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::file::{Segment, SegmentMeta, index_path, log_path, time_index_path};
use super::index::SegmentIndex;
use super::scan::{ScanStop, read_header, scan};
use crate::error::{JournalError, Result};
use crate::fs::{FileSystem, read_file};

/// Name of the file holding a partition's log-start offset when it lies inside a segment.
pub const LOG_START_FILE: &str = "log-start";

/// What a partition directory held.
#[derive(Debug)]
pub struct Opened {
    /// Segments, oldest first; never empty.
    pub segments: Vec<Arc<Segment>>,
    /// Recorded log-start offset (from the checkpoint), if any.
    pub log_start: Option<u64>,
    /// Bytes cut from the last segment's tail.
    pub truncated: u64,
}

/// Base offsets of the segment files in `dir`, sorted; leftover temporary files removed.
pub fn list_segments(fs: &dyn FileSystem, dir: &Path) -> Result<Vec<u64>> {
    let entries = fs.read_dir(dir).map_err(|e| JournalError::io(dir, e))?;
    let mut bases = Vec::new();
    for path in entries {
        let (Some(stem), Some(ext)) = (
            path.file_stem().and_then(|s| s.to_str()),
            path.extension().and_then(|s| s.to_str()),
        ) else {
            continue;
        };
        if ext == "tmp" {
            let _ = fs.remove_file(&path);
        } else if ext == "log"
            && let Ok(base) = stem.parse::<u64>()
        {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

/// Opens every segment of a partition directory, creating the first one when empty (at
/// its recorded log start, and no lower than `first_base`: where the partition's uploaded
/// objects end, for a directory lost after they were uploaded).
pub fn open_partition(
    fs: &dyn FileSystem,
    dir: &Path,
    interval: u32,
    now_ms: i64,
    first_base: u64,
) -> Result<Opened> {
    fs.create_dir_all(dir)
        .map_err(|e| JournalError::io(dir, e))?;
    let log_start = read_log_start(fs, dir)?;
    let bases = list_segments(fs, dir)?;
    let mut segments = Vec::with_capacity(bases.len().max(1));
    let mut truncated = 0;
    if let Some((&last, sealed)) = bases.split_last() {
        for &base in sealed {
            segments.push(Arc::new(open_sealed(fs, dir, base, interval)?));
        }
        let (segment, cut) = Segment::recover(fs, dir, last, interval, now_ms)?;
        truncated = cut;
        segments.push(Arc::new(segment));
    } else {
        let base = log_start.unwrap_or(0).max(first_base);
        segments.push(Arc::new(Segment::create(fs, dir, base)?));
        fs.sync_dir(dir).map_err(|e| JournalError::io(dir, e))?;
    }
    Ok(Opened {
        segments,
        log_start,
        truncated,
    })
}

fn read_log_start(fs: &dyn FileSystem, dir: &Path) -> Result<Option<u64>> {
    let path = dir.join(LOG_START_FILE);
    if !fs.exists(&path) {
        return Ok(None);
    }
    let raw = read_file(fs, &path).map_err(|e| JournalError::io(&path, e))?;
    let text = String::from_utf8_lossy(&raw);
    text.trim()
        .parse::<u64>()
        .map(Some)
        .map_err(|_| JournalError::Corruption {
            file: path.clone(),
            position: 0,
            reason: format!("log-start checkpoint holds {text:?}"),
        })
}

/// Opens a sealed segment, loading its index files or rebuilding them from a header scan.
pub fn open_sealed(fs: &dyn FileSystem, dir: &Path, base: u64, interval: u32) -> Result<Segment> {
    let path = log_path(dir, base);
    let file = fs
        .open(&path, false)
        .map_err(|e| JournalError::io(&path, e))?;
    let len = file.len().map_err(|e| JournalError::io(&path, e))?;
    let loaded = load_index(fs, dir, base, &*file, len);
    let (mut index, scan_from, rebuilt) = match loaded {
        Ok(idx) => {
            let from = idx.last_entry().map_or(0, |e| u64::from(e.position));
            (idx, from, false)
        }
        Err(reason) => {
            tracing::info!(file = %path.display(), %reason, "rebuilding segment index");
            (SegmentIndex::default(), 0, true)
        }
    };
    let mut meta = SegmentMeta {
        end_offset: base,
        size: scan_from,
        ..SegmentMeta::default()
    };
    let mut trailing = Vec::new();
    let stop = scan(&*file, scan_from, len, false, |b| {
        let blen = b.header.total_len as u64;
        if rebuilt {
            let rel = b
                .header
                .base_offset
                .saturating_sub(base)
                .min(u64::from(u32::MAX)) as u32;
            index.on_append(
                rel,
                b.position as u32,
                blen,
                b.header.max_timestamp,
                interval,
            );
        } else {
            trailing.push((blen, b.header.max_timestamp));
        }
        meta.size = b.position + blen;
        meta.end_offset = b.header.next_offset();
        meta.first_append_ms.get_or_insert(b.header.max_timestamp);
    })
    .map_err(|e| JournalError::io(&path, e))?;
    if let ScanStop::Torn { position, reason } | ScanStop::Corrupt { position, reason } = stop {
        tracing::error!(file = %path.display(), position, %reason,
            "sealed segment is damaged; records after this position are unreadable");
    }
    index.resume(trailing);
    meta.index = index;
    let segment = Segment::from_parts(base, path, file, meta);
    if rebuilt {
        segment.write_indexes(fs)?;
    }
    Ok(segment)
}

fn load_index(
    fs: &dyn FileSystem,
    dir: &Path,
    base: u64,
    file: &dyn crate::fs::JournalFile,
    len: u64,
) -> std::result::Result<SegmentIndex, String> {
    let read = |p: PathBuf| read_file(fs, &p).map_err(|e| format!("{}: {e}", p.display()));
    let offsets = read(index_path(dir, base))?;
    let times = read(time_index_path(dir, base))?;
    let index = SegmentIndex::decode(&offsets, &times, len)?;
    if len > 0 && index.is_empty() {
        return Err("index is empty but the segment is not".into());
    }
    if let Some(last) = index.last_entry() {
        let header = read_header(file, u64::from(last.position))
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("last index entry does not point at a batch: {e}"))?;
        if header.base_offset != base + u64::from(last.rel_offset) {
            return Err(format!(
                "last index entry names offset {} but the batch there starts at {}",
                base + u64::from(last.rel_offset),
                header.base_offset
            ));
        }
    }
    Ok(index)
}
