//! Read-only access to a journal directory for the offline tools (`strata journal
//! inspect | dump | verify`). Nothing here writes, so it is safe on a directory left by a
//! crashed process: torn tails are reported, not cut.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
#[cfg(feature = "rocksdb")]
use std::sync::Arc;

use crate::batch::{Batch, BatchHeader, HEADER_LEN};
use crate::config::{StorageClass, StreamConfig};
use crate::error::{JournalError, Result};
use crate::fs::{FileSystem, StdFs, read_file};
#[cfg(feature = "rocksdb")]
use crate::journal::ROCKSDB_DIR;
use crate::journal::{STREAMS_DIR, list_definitions};
#[cfg(feature = "rocksdb")]
use crate::rocks::RocksStore;
use crate::segment::scan::{ScanStop, read_header, scan};
use crate::segment::{MANIFEST_FILE, SegmentIndex, index_path, log_path, time_index_path};
use strata_batch::Record;
use strata_tiered::manifest::{Entry, parse as parse_manifest};

/// What a header scan found in one segment file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentSummary {
    /// Base offset from the file name.
    pub base_offset: u64,
    /// The file.
    pub path: PathBuf,
    /// File size in bytes.
    pub file_size: u64,
    /// Offset after the last readable batch.
    pub end_offset: u64,
    /// Readable batches.
    pub batches: u64,
    /// Records in them.
    pub records: u64,
    /// Smallest first-timestamp, if any batch.
    pub min_timestamp: Option<i64>,
    /// Largest timestamp, if any batch.
    pub max_timestamp: Option<i64>,
    /// How the scan ended.
    pub stop: ScanStop,
}

impl SegmentSummary {
    /// Counts one readable batch.
    fn add(&mut self, h: &BatchHeader) {
        self.end_offset = h.next_offset();
        self.batches += 1;
        self.records += u64::from(h.record_count);
        let first = h.first_timestamp;
        self.min_timestamp = Some(self.min_timestamp.map_or(first, |m| m.min(first)));
        let max = h.max_timestamp;
        self.max_timestamp = Some(self.max_timestamp.map_or(max, |m| m.max(max)));
    }
}

/// One partition's layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionSummary {
    /// Partition number.
    pub partition: u32,
    /// Recorded log-start checkpoint, if any.
    pub log_start: Option<u64>,
    /// Segments oldest first (one pseudo-segment for RocksDB partitions).
    pub segments: Vec<SegmentSummary>,
    /// Segments uploaded to object storage, from the partition's manifest.
    pub remote: Vec<Entry>,
}

impl PartitionSummary {
    /// Where the segment starting at `base` lives: `local`, `remote` or `both`.
    pub fn location(&self, base: u64) -> &'static str {
        let local = self.segments.iter().any(|s| s.base_offset == base);
        let remote = self.remote.iter().any(|e| e.base_offset == base);
        match (local, remote) {
            (true, true) => "both",
            (false, true) => "remote",
            _ => "local",
        }
    }
}

/// One stream's definition and layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSummary {
    /// The definition.
    pub config: StreamConfig,
    /// Partitions in order.
    pub partitions: Vec<PartitionSummary>,
}

/// Resolves a node data directory or a journal directory to the journal directory.
pub fn journal_dir(dir: &Path) -> Result<PathBuf> {
    for candidate in [dir.to_path_buf(), dir.join("journal")] {
        if candidate.join(STREAMS_DIR).is_dir() {
            return Ok(candidate);
        }
    }
    Err(JournalError::InvalidConfig(format!(
        "{} is not a journal directory (no {STREAMS_DIR}/ inside it or in journal/)",
        dir.display()
    )))
}

/// Stream definitions found in a journal directory, by name.
pub fn definitions(dir: &Path) -> Result<BTreeMap<String, StreamConfig>> {
    Ok(list_definitions(&StdFs, dir)?
        .into_iter()
        .map(|c| (c.name.clone(), c))
        .collect())
}

fn partition_dir(dir: &Path, stream: &str, partition: u32) -> PathBuf {
    dir.join(STREAMS_DIR)
        .join(stream)
        .join(partition.to_string())
}

/// Summarizes one segment file by scanning its batch headers (CRCs are not checked).
pub fn summarize_segment(path: &Path, base_offset: u64) -> Result<SegmentSummary> {
    let file = StdFs
        .open(path, false)
        .map_err(|e| JournalError::io(path, e))?;
    let file_size = file.len().map_err(|e| JournalError::io(path, e))?;
    let mut s = SegmentSummary {
        base_offset,
        path: path.to_path_buf(),
        file_size,
        end_offset: base_offset,
        batches: 0,
        records: 0,
        min_timestamp: None,
        max_timestamp: None,
        stop: ScanStop::Clean,
    };
    s.stop = scan(&*file, 0, file_size, false, |b| s.add(&b.header))
        .map_err(|e| JournalError::io(path, e))?;
    Ok(s)
}

#[cfg(feature = "rocksdb")]
fn rocks_store(dir: &Path) -> Result<Arc<RocksStore>> {
    RocksStore::open_read_only(&dir.join(ROCKSDB_DIR))
}

#[cfg(feature = "rocksdb")]
fn rocks_summary(store: &RocksStore, config: &StreamConfig, partition: u32) -> PartitionSummary {
    let batches = store.scan_partition(&config.name, partition);
    let mut s = SegmentSummary {
        base_offset: batches.first().map_or(0, |b| b.0),
        path: store.path().to_path_buf(),
        file_size: 0,
        end_offset: 0,
        batches: 0,
        records: 0,
        min_timestamp: None,
        max_timestamp: None,
        stop: ScanStop::Clean,
    };
    for (base, batch) in batches {
        match batch {
            Ok(b) => {
                s.file_size += b.len() as u64;
                s.add(b.header());
            }
            Err(reason) => {
                s.stop = ScanStop::Corrupt {
                    position: base,
                    reason,
                };
                break;
            }
        }
    }
    PartitionSummary {
        partition,
        log_start: None,
        segments: vec![s],
        remote: Vec::new(),
    }
}

/// Layout of every stream in a journal directory.
pub fn inspect(dir: &Path) -> Result<Vec<StreamSummary>> {
    let defs = definitions(dir)?;
    #[cfg(feature = "rocksdb")]
    let mut rocks = None;
    let mut out = Vec::new();
    for config in defs.into_values() {
        let mut partitions = Vec::new();
        for p in 0..config.partitions {
            partitions.push(match config.class {
                StorageClass::Memory => PartitionSummary {
                    partition: p,
                    log_start: None,
                    segments: Vec::new(),
                    remote: Vec::new(),
                },
                StorageClass::Segment | StorageClass::Object => {
                    segment_partition(dir, &config.name, p)?
                }
                #[cfg(not(feature = "rocksdb"))]
                StorageClass::Rocksdb => return Err(crate::journal::no_rocksdb()),
                #[cfg(feature = "rocksdb")]
                StorageClass::Rocksdb => {
                    if rocks.is_none() {
                        rocks = Some(rocks_store(dir)?);
                    }
                    let store = rocks.as_ref().map(Arc::clone).ok_or(JournalError::Closed)?;
                    rocks_summary(&store, &config, p)
                }
            });
        }
        out.push(StreamSummary { config, partitions });
    }
    Ok(out)
}

fn segment_partition(dir: &Path, stream: &str, partition: u32) -> Result<PartitionSummary> {
    let pdir = partition_dir(dir, stream, partition);
    if !pdir.is_dir() {
        return Ok(PartitionSummary {
            partition,
            log_start: None,
            segments: Vec::new(),
            remote: Vec::new(),
        });
    }
    let log_start = read_file(&StdFs, &pdir.join(crate::segment::LOG_START_FILE))
        .ok()
        .and_then(|b| String::from_utf8_lossy(&b).trim().parse().ok());
    let mut segments = Vec::new();
    for base in list_segments_read_only(&pdir)? {
        segments.push(summarize_segment(&log_path(&pdir, base), base)?);
    }
    let manifest = pdir.join(MANIFEST_FILE);
    let remote = match std::fs::read(&manifest) {
        Ok(bytes) => parse_manifest(&bytes)
            .map_err(|reason| JournalError::Corruption {
                file: manifest.clone(),
                position: 0,
                reason,
            })?
            .0
            .into_values()
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(JournalError::io(&manifest, e)),
    };
    Ok(PartitionSummary {
        partition,
        log_start,
        segments,
        remote,
    })
}

fn list_segments_read_only(pdir: &Path) -> Result<Vec<u64>> {
    // Unlike opening a partition, this removes no leftover temporary files: offline tools
    // never write.
    let mut bases: Vec<u64> = std::fs::read_dir(pdir)
        .map_err(|e| JournalError::io(pdir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .filter_map(|p| p.file_stem()?.to_str()?.parse().ok())
        .collect();
    bases.sort_unstable();
    Ok(bases)
}

/// Up to `count` records of one partition from offset `from`, CRC-checked.
pub fn dump(
    dir: &Path,
    stream: &str,
    partition: u32,
    from: u64,
    count: usize,
) -> Result<Vec<Record>> {
    let defs = definitions(dir)?;
    let config = defs
        .get(stream)
        .ok_or_else(|| JournalError::UnknownStream(stream.into()))?;
    if partition >= config.partitions {
        return Err(JournalError::UnknownPartition {
            stream: stream.into(),
            partition,
        });
    }
    let mut out = Vec::new();
    let mut take = |batch: &Batch| -> Result<bool> {
        for r in batch.records()? {
            let r = r?;
            if r.offset >= from {
                out.push(r);
                if out.len() >= count {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    };
    match config.class {
        StorageClass::Memory => {}
        #[cfg(not(feature = "rocksdb"))]
        StorageClass::Rocksdb => return Err(crate::journal::no_rocksdb()),
        #[cfg(feature = "rocksdb")]
        StorageClass::Rocksdb => {
            let store = rocks_store(dir)?;
            for (base, batch) in store.scan_partition(stream, partition) {
                let batch = batch.map_err(|reason| JournalError::Corruption {
                    file: store.path().to_path_buf(),
                    position: base,
                    reason,
                })?;
                if batch.last_offset() >= from && !take(&batch)? {
                    break;
                }
            }
        }
        // Offline tools read local segments only; uploaded-only segments need the node.
        StorageClass::Segment | StorageClass::Object => {
            let pdir = partition_dir(dir, stream, partition);
            'segments: for base in list_segments_read_only(&pdir)? {
                let path = log_path(&pdir, base);
                let bytes = std::fs::read(&path).map_err(|e| JournalError::io(&path, e))?;
                let mut pos = 0usize;
                while pos + HEADER_LEN <= bytes.len() {
                    let Ok(len) = BatchHeader::peek_len(&bytes[pos..]) else {
                        break;
                    };
                    if pos + len > bytes.len() {
                        break;
                    }
                    let batch =
                        Batch::from_bytes(bytes::Bytes::copy_from_slice(&bytes[pos..pos + len]))
                            .map_err(|reason| JournalError::Corruption {
                                file: path.clone(),
                                position: pos as u64,
                                reason,
                            })?;
                    if batch.last_offset() >= from && !take(&batch)? {
                        break 'segments;
                    }
                    pos += len;
                }
            }
        }
    }
    Ok(out)
}

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Stored data is damaged or inconsistent.
    Error,
    /// Recoverable at the next open (a torn tail, a missing index).
    Warning,
}

/// One finding of `verify`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Error or warning.
    pub severity: Severity,
    /// The file concerned.
    pub file: PathBuf,
    /// Byte position (or offset, for RocksDB batches).
    pub position: u64,
    /// What is wrong.
    pub message: String,
}

/// What `verify` checked and found.
#[derive(Debug, Default, Clone)]
pub struct VerifyReport {
    /// Batches whose CRC was checked.
    pub batches: u64,
    /// Bytes checked.
    pub bytes: u64,
    /// Index entries checked.
    pub index_entries: u64,
    /// Findings.
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    /// True when no finding is an error.
    pub fn is_clean(&self) -> bool {
        self.problems.iter().all(|p| p.severity != Severity::Error)
    }

    fn push(&mut self, severity: Severity, file: &Path, position: u64, message: impl Into<String>) {
        self.problems.push(Problem {
            severity,
            file: file.to_path_buf(),
            position,
            message: message.into(),
        });
    }
}

/// Checks every batch CRC and every index entry of every stream.
pub fn verify(dir: &Path) -> Result<VerifyReport> {
    let mut report = VerifyReport::default();
    let defs = definitions(dir)?;
    for config in defs.values() {
        for p in 0..config.partitions {
            match config.class {
                StorageClass::Memory => {}
                StorageClass::Segment | StorageClass::Object => {
                    verify_partition(&partition_dir(dir, &config.name, p), &mut report)?
                }
                #[cfg(not(feature = "rocksdb"))]
                StorageClass::Rocksdb => return Err(crate::journal::no_rocksdb()),
                #[cfg(feature = "rocksdb")]
                StorageClass::Rocksdb => {
                    let store = rocks_store(dir)?;
                    for (base, batch) in store.scan_partition(&config.name, p) {
                        match batch {
                            Ok(b) => {
                                report.batches += 1;
                                report.bytes += b.len() as u64;
                            }
                            Err(reason) => report.push(Severity::Error, store.path(), base, reason),
                        }
                    }
                }
            }
        }
    }
    Ok(report)
}

fn verify_partition(pdir: &Path, report: &mut VerifyReport) -> Result<()> {
    if !pdir.is_dir() {
        return Ok(());
    }
    let bases = list_segments_read_only(pdir)?;
    let mut prev_end: Option<u64> = None;
    for (i, &base) in bases.iter().enumerate() {
        let last = i + 1 == bases.len();
        let path = log_path(pdir, base);
        let file = StdFs
            .open(&path, false)
            .map_err(|e| JournalError::io(&path, e))?;
        let len = file.len().map_err(|e| JournalError::io(&path, e))?;
        let mut batches: Vec<(u64, BatchHeader)> = Vec::new();
        let mut start = 0;
        loop {
            let stop = scan(&*file, start, len, true, |b| {
                batches.push((b.position, b.header))
            })
            .map_err(|e| JournalError::io(&path, e))?;
            match stop {
                ScanStop::Clean => break,
                ScanStop::Torn { position, reason } => {
                    let severity = if last {
                        Severity::Warning
                    } else {
                        Severity::Error
                    };
                    let note = if last {
                        " (a torn write; cut off at the next open)"
                    } else {
                        ""
                    };
                    report.push(severity, &path, position, format!("{reason}{note}"));
                    break;
                }
                ScanStop::Corrupt { position, reason } => {
                    report.push(Severity::Error, &path, position, reason);
                    // Resume after the damaged batch when its length is still believable.
                    match read_header(&*file, position) {
                        Ok(Ok(h)) if position + h.total_len as u64 <= len => {
                            start = position + h.total_len as u64;
                        }
                        _ => break,
                    }
                }
            }
        }
        for (_, h) in &batches {
            report.batches += 1;
            report.bytes += h.total_len as u64;
        }
        if let (Some(end), Some((_, first))) = (prev_end, batches.first())
            && first.base_offset < end
        {
            report.push(
                Severity::Error,
                &path,
                0,
                format!(
                    "segment starts at offset {} below the previous segment's end {end}",
                    first.base_offset
                ),
            );
        }
        prev_end = batches.last().map(|(_, h)| h.next_offset()).or(prev_end);
        verify_indexes(pdir, base, len, last, &batches, report);
    }
    Ok(())
}

fn verify_indexes(
    pdir: &Path,
    base: u64,
    len: u64,
    last: bool,
    batches: &[(u64, BatchHeader)],
    report: &mut VerifyReport,
) {
    let ipath = index_path(pdir, base);
    let tpath = time_index_path(pdir, base);
    let (Ok(offsets), Ok(times)) = (std::fs::read(&ipath), std::fs::read(&tpath)) else {
        if !last {
            report.push(
                Severity::Warning,
                &ipath,
                0,
                "index files missing (rebuilt at the next open)",
            );
        }
        return;
    };
    if let Err(reason) = SegmentIndex::decode(&offsets, &times, len) {
        report.push(Severity::Error, &ipath, 0, reason);
        return;
    }
    let by_position: BTreeMap<u64, &BatchHeader> = batches.iter().map(|(p, h)| (*p, h)).collect();
    for (n, chunk) in offsets.chunks_exact(8).enumerate() {
        report.index_entries += 1;
        let rel = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        let pos = u64::from(u32::from_be_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]));
        match by_position.get(&pos) {
            Some(h) if h.base_offset == base + u64::from(rel) => {}
            Some(h) => report.push(
                Severity::Error,
                &ipath,
                (n * 8) as u64,
                format!(
                    "entry names offset {} but the batch at byte {pos} starts at {}",
                    base + u64::from(rel),
                    h.base_offset
                ),
            ),
            None => report.push(
                Severity::Error,
                &ipath,
                (n * 8) as u64,
                format!("entry points at byte {pos}, which is not the start of a batch"),
            ),
        }
    }
    let mut max_so_far: Option<i64> = None;
    let max_at: BTreeMap<u64, i64> = batches
        .iter()
        .map(|(_, h)| {
            max_so_far = Some(max_so_far.map_or(h.max_timestamp, |m| m.max(h.max_timestamp)));
            (h.base_offset, max_so_far.unwrap_or(h.max_timestamp))
        })
        .collect();
    for (n, chunk) in times.chunks_exact(12).enumerate() {
        report.index_entries += 1;
        let ts = i64::from_be_bytes([
            chunk[0], chunk[1], chunk[2], chunk[3], chunk[4], chunk[5], chunk[6], chunk[7],
        ]);
        let rel = u32::from_be_bytes([chunk[8], chunk[9], chunk[10], chunk[11]]);
        if max_at.get(&(base + u64::from(rel))) != Some(&ts) {
            report.push(
                Severity::Error,
                &tpath,
                (n * 12) as u64,
                format!(
                    "time entry ({ts}, offset {}) does not match the batches",
                    base + u64::from(rel)
                ),
            );
        }
    }
}
