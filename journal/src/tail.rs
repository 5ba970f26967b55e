//! The in-memory tail: the most recently appended batches of a partition, so that readers
//! keeping up with writers are served without touching storage.

use std::collections::VecDeque;

use crate::batch::Batch;

/// Recent batches, bounded in bytes (the newest batch is always kept).
#[derive(Debug, Default)]
pub struct TailCache {
    batches: VecDeque<Batch>,
    bytes: u64,
    capacity: u64,
}

impl TailCache {
    /// An empty cache holding up to `capacity` bytes (0 disables it).
    pub fn new(capacity: u64) -> Self {
        TailCache {
            capacity,
            ..TailCache::default()
        }
    }

    /// Adds the newest batch, evicting the oldest beyond the bound.
    pub fn push(&mut self, batch: Batch) {
        if self.capacity == 0 {
            return;
        }
        self.bytes += batch.len() as u64;
        self.batches.push_back(batch);
        while self.bytes > self.capacity && self.batches.len() > 1 {
            if let Some(old) = self.batches.pop_front() {
                self.bytes -= old.len() as u64;
            }
        }
    }

    /// Drops batches at or after `end` (after a rollback).
    pub fn truncate(&mut self, end: u64) {
        while self.batches.back().is_some_and(|b| b.last_offset() >= end) {
            if let Some(b) = self.batches.pop_back() {
                self.bytes -= b.len() as u64;
            }
        }
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.batches.clear();
        self.bytes = 0;
    }

    /// Serves `from..visible_end` when the cache holds `from`; `None` when it starts later.
    pub fn read(&self, from: u64, visible_end: u64, max_bytes: usize) -> Option<Vec<Batch>> {
        let first = self.batches.front()?;
        if first.base_offset() > from {
            return None;
        }
        let start = self.batches.partition_point(|b| b.last_offset() < from);
        let mut out = Vec::new();
        let mut used = 0usize;
        for b in self.batches.range(start..) {
            if b.base_offset() >= visible_end || (!out.is_empty() && used + b.len() > max_bytes) {
                break;
            }
            used += b.len();
            out.push(b.clone());
        }
        Some(out)
    }
}
