//! Walking the batches of a segment file: recovery, index rebuilds and offline
//! verification all use this one scanner.

use std::io;

use crate::batch::{BatchHeader, HEADER_LEN, frame_crc};
use crate::fs::JournalFile;

const CHUNK: usize = 4 * 1024 * 1024;

/// A batch found by a scan.
#[derive(Debug, Clone, Copy)]
pub struct ScannedBatch {
    /// Byte position in the file.
    pub position: u64,
    /// Its parsed header.
    pub header: BatchHeader,
}

/// Why a scan stopped before the end of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanStop {
    /// Reached the end exactly on a batch boundary.
    Clean,
    /// The bytes at `position` are an incomplete batch (a torn write).
    Torn {
        /// Where the incomplete batch starts.
        position: u64,
        /// What was wrong.
        reason: String,
    },
    /// A complete batch at `position` fails its checks.
    Corrupt {
        /// Where the damaged batch starts.
        position: u64,
        /// What was wrong.
        reason: String,
    },
}

/// Sequential reader with a large window, so scanning costs few system calls.
struct Window<'a> {
    file: &'a dyn JournalFile,
    len: u64,
    start: u64,
    buf: Vec<u8>,
}

impl Window<'_> {
    /// Makes `[pos, pos + need)` available (clamped to the file end) and returns it.
    fn get(&mut self, pos: u64, need: usize) -> io::Result<&[u8]> {
        let end = self.start + self.buf.len() as u64;
        if pos < self.start || pos + need as u64 > end {
            let size = need.max(CHUNK).min((self.len - pos) as usize);
            self.buf.resize(size, 0);
            self.file.read_exact_at(&mut self.buf, pos)?;
            self.start = pos;
        }
        let from = (pos - self.start) as usize;
        let to = (from + need).min(self.buf.len());
        Ok(&self.buf[from..to])
    }
}

/// Scans batches from byte `start` up to `len`, calling `on_batch` for each good one.
/// With `verify_crc` every batch is read whole and its CRC checked; otherwise only headers
/// are checked (for index rebuilds of sealed segments).
pub fn scan(
    file: &dyn JournalFile,
    start: u64,
    len: u64,
    verify_crc: bool,
    mut on_batch: impl FnMut(ScannedBatch),
) -> io::Result<ScanStop> {
    let mut win = Window {
        file,
        len,
        start: 0,
        buf: Vec::new(),
    };
    let mut pos = start;
    let mut prev_next: Option<u64> = None;
    while pos < len {
        let head = win.get(pos, HEADER_LEN)?;
        if head.len() < HEADER_LEN {
            return Ok(ScanStop::Torn {
                position: pos,
                reason: format!(
                    "{} trailing bytes are shorter than a batch header",
                    head.len()
                ),
            });
        }
        let header = match BatchHeader::parse(head) {
            Ok(h) => h,
            Err(reason) => {
                return Ok(ScanStop::Corrupt {
                    position: pos,
                    reason,
                });
            }
        };
        let total = header.total_len as u64;
        if pos + total > len {
            return Ok(ScanStop::Torn {
                position: pos,
                reason: format!("batch of {total} bytes runs past the end of the file"),
            });
        }
        if verify_crc {
            let bytes = win.get(pos, header.total_len)?;
            let actual = frame_crc(bytes);
            if actual != header.crc {
                return Ok(ScanStop::Corrupt {
                    position: pos,
                    reason: format!(
                        "crc mismatch: stored {:#010x}, computed {actual:#010x}",
                        header.crc
                    ),
                });
            }
        }
        if prev_next.is_some_and(|n| header.base_offset < n) {
            return Ok(ScanStop::Corrupt {
                position: pos,
                reason: format!("base offset {} goes backwards", header.base_offset),
            });
        }
        prev_next = Some(header.next_offset());
        on_batch(ScannedBatch {
            position: pos,
            header,
        });
        pos += total;
    }
    Ok(ScanStop::Clean)
}

/// Reads the header of the batch at `pos`.
pub fn read_header(file: &dyn JournalFile, pos: u64) -> io::Result<Result<BatchHeader, String>> {
    let mut head = [0u8; HEADER_LEN];
    file.read_exact_at(&mut head, pos)?;
    Ok(BatchHeader::parse(&head))
}
