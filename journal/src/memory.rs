//! The `memory` storage class: a partition bounded in bytes, kept only in memory.

use std::collections::VecDeque;
use std::path::PathBuf;

use async_trait::async_trait;
use parking_lot::Mutex;

use crate::batch::{Batch, PendingBatch, first_offset_at_time};
use crate::config::StreamConfig;
use crate::error::{JournalError, Result};
use crate::log::{Appended, Offsets, PartitionInfo, PartitionLog, Removed, SegmentInfo};
use crate::metrics::{ClassMetrics, JournalMetrics};
use crate::notify::EndWatch;

const CLASS: &str = "memory";

#[derive(Debug, Default)]
struct State {
    batches: VecDeque<Batch>,
    bytes: u64,
    next_offset: u64,
    log_start: u64,
    closed: bool,
}

impl State {
    fn pop_oldest(&mut self, removed: &mut Removed) {
        if let Some(b) = self.batches.pop_front() {
            self.bytes -= b.len() as u64;
            removed.units += 1;
            removed.bytes += b.len() as u64;
            self.log_start = self.log_start.max(b.last_offset() + 1);
        }
    }
}

/// A partition held in memory. When the byte bound is reached the oldest batches are
/// dropped and the log-start offset advances.
#[derive(Debug)]
pub(crate) struct MemoryLog {
    config: StreamConfig,
    state: Mutex<State>,
    watch: EndWatch,
    metrics: JournalMetrics,
    class: ClassMetrics,
    label: PathBuf,
}

impl MemoryLog {
    pub(crate) fn new(config: StreamConfig, partition: u32, metrics: JournalMetrics) -> Self {
        MemoryLog {
            label: PathBuf::from(format!("memory:{}/{partition}", config.name)),
            config,
            state: Mutex::new(State::default()),
            watch: EndWatch::new(0),
            class: metrics.class(CLASS),
            metrics,
        }
    }

    fn removed(&self, r: Removed) -> Removed {
        self.metrics.retention_removed.inc_by(r.units);
        self.metrics.retention_removed_bytes.inc_by(r.bytes);
        r
    }
}

#[async_trait]
impl PartitionLog for MemoryLog {
    async fn append(&self, batch: PendingBatch) -> Result<Appended> {
        let limit = self.config.memory_max_bytes;
        if batch.len() as u64 > limit {
            self.class.append_errors.inc();
            return Err(JournalError::Full {
                size: batch.len(),
                limit,
            });
        }
        let records = batch.record_count();
        let mut st = self.state.lock();
        if st.closed {
            return Err(JournalError::Closed);
        }
        let (header, bytes) = batch.seal(st.next_offset);
        let len = bytes.len() as u64;
        st.batches.push_back(Batch::trusted(header, bytes));
        st.bytes += len;
        st.next_offset = header.next_offset();
        let mut removed = Removed::default();
        while st.bytes > limit {
            st.pop_oldest(&mut removed);
        }
        self.removed(removed);
        self.watch.publish(st.next_offset);
        self.class.appends.inc();
        self.class.append_bytes.inc_by(len);
        self.class.append_records.inc_by(u64::from(records));
        Ok(Appended {
            base_offset: header.base_offset,
            last_offset: header.last_offset(),
        })
    }

    async fn read(&self, from: u64, max_bytes: usize) -> Result<Vec<Batch>> {
        let st = self.state.lock();
        if from < st.log_start || from > st.next_offset {
            return Err(JournalError::OffsetOutOfRange {
                offset: from,
                log_start: st.log_start,
                end: st.next_offset,
            });
        }
        let start = st.batches.partition_point(|b| b.last_offset() < from);
        let mut out = Vec::new();
        let mut used = 0;
        for b in st.batches.range(start..) {
            if !out.is_empty() && used + b.len() > max_bytes {
                break;
            }
            used += b.len();
            out.push(b.clone());
        }
        self.class.reads.inc_by(out.len() as u64);
        self.class.read_bytes.inc_by(used as u64);
        Ok(out)
    }

    fn offsets(&self) -> Offsets {
        let st = self.state.lock();
        Offsets {
            log_start: st.log_start,
            end: st.next_offset,
        }
    }

    fn end_watch(&self) -> &EndWatch {
        &self.watch
    }

    async fn offset_for_timestamp(&self, timestamp_ms: i64) -> Result<Option<u64>> {
        let (batches, log_start) = {
            let st = self.state.lock();
            (
                st.batches.iter().cloned().collect::<Vec<Batch>>(),
                st.log_start,
            )
        };
        Ok(first_offset_at_time(&batches, timestamp_ms, log_start)?)
    }

    async fn delete_before(&self, offset: u64) -> Result<u64> {
        let mut st = self.state.lock();
        let target = offset.min(st.next_offset);
        let mut removed = Removed::default();
        while st.batches.front().is_some_and(|b| b.last_offset() < target) {
            st.pop_oldest(&mut removed);
        }
        st.log_start = st.log_start.max(target);
        self.removed(removed);
        Ok(st.log_start)
    }

    async fn enforce_retention(&self, now_ms: i64) -> Result<Removed> {
        let retention = self.config.retention;
        let mut st = self.state.lock();
        let mut removed = Removed::default();
        while let Some(front) = st.batches.front() {
            let too_old = retention.max_age_ms.is_some_and(|age| {
                front.header().max_timestamp < now_ms.saturating_sub(age as i64)
            });
            let over = retention
                .max_bytes
                .is_some_and(|max| st.bytes.saturating_sub(front.len() as u64) >= max);
            if !(too_old || over) {
                break;
            }
            st.pop_oldest(&mut removed);
        }
        Ok(self.removed(removed))
    }

    async fn sync(&self) -> Result<()> {
        Ok(())
    }

    async fn close(&self) -> Result<()> {
        self.state.lock().closed = true;
        self.watch.close();
        Ok(())
    }

    fn describe(&self) -> PartitionInfo {
        let st = self.state.lock();
        PartitionInfo {
            offsets: Offsets {
                log_start: st.log_start,
                end: st.next_offset,
            },
            size: st.bytes,
            segments: vec![SegmentInfo {
                base_offset: st
                    .batches
                    .front()
                    .map_or(st.next_offset, Batch::base_offset),
                end_offset: st.next_offset,
                size: st.bytes,
                max_timestamp: st.batches.iter().map(|b| b.header().max_timestamp).max(),
                location: self.label.clone(),
                remote: None,
            }],
        }
    }
}
