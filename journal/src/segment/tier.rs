//! A partition's link to object storage: its manifest of uploaded segments, the block
//! cache in front of the objects, reads of segments that are only there, and what appends
//! waiting for their object (`ack = object`) watch. The upload work itself is in
//! `offload.rs`.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use prometheus::IntCounter;
use strata_tiered::BlockCache;
use strata_tiered::manifest::Manifest;
use tokio::sync::{Notify, watch};

use super::remote::RemoteSegment;
use crate::batch::Batch;
use crate::config::OffloadSettings;
use crate::error::{JournalError, Result};
use crate::log::OffloadDuty;
use crate::manifests::{ObjectEntry, Recorded};
use crate::policy::SegmentSummary;

/// File of a partition's manifest of uploaded segments.
pub const MANIFEST_FILE: &str = "manifest.json";

/// How many following remote segments a sequential reader's read-ahead may reach into.
const READ_AHEAD_SEGMENTS: usize = 8;

/// What appends waiting for their object watch.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Acks {
    /// Offsets below this are stored in objects.
    pub(super) uploaded_end: u64,
    /// Bumped each time staged appends are discarded after a failed upload.
    pub(super) discards: u64,
    pub(super) closed: bool,
}

/// A partition's link to object storage.
#[derive(Debug)]
pub(crate) struct Remote {
    pub(super) cache: BlockCache,
    /// Key prefix of the partition's objects, ending in `/`.
    pub(super) prefix: String,
    pub(super) manifest: Arc<Mutex<Manifest>>,
    pub(super) settings: OffloadSettings,
    pub(super) wake: Notify,
    pub(super) acks: watch::Sender<Acks>,
    /// Where the last remote read ended, to recognise sequential readers.
    next_sequential: AtomicU64,
    /// The partition's entries in the journal's manifest catalog, if it has one.
    pub(super) recorded: Option<Recorded>,
}

impl Remote {
    /// Loads the manifest of the partition in `dir`, completed with what `recorded` has
    /// past its end (all of it when the directory was lost with the node's disk; an upload
    /// a crash kept out of the file otherwise).
    pub(crate) fn open(
        cache: BlockCache,
        prefix: String,
        dir: &Path,
        settings: OffloadSettings,
        recorded: Option<Recorded>,
    ) -> Result<Remote> {
        std::fs::create_dir_all(dir).map_err(|e| JournalError::io(dir, e))?;
        let path = dir.join(MANIFEST_FILE);
        let mut manifest = Manifest::load(&path).map_err(|e| manifest_error(&path, e))?;
        if let Some(r) = &recorded {
            let end = manifest.end();
            let behind: Vec<_> = r
                .entries()
                .into_iter()
                .filter(|e| e.base_offset >= end)
                .collect();
            if !behind.is_empty() {
                tracing::info!(
                    entries = behind.len(),
                    "manifest completed from the manifest catalog"
                );
            }
            for e in behind {
                manifest.add(e).map_err(|e| manifest_error(&path, e))?;
            }
        }
        let uploaded_end = manifest.end();
        Ok(Remote {
            cache,
            prefix,
            manifest: Arc::new(Mutex::new(manifest)),
            settings,
            wake: Notify::new(),
            acks: watch::Sender::new(Acks {
                uploaded_end,
                ..Acks::default()
            }),
            next_sequential: AtomicU64::new(u64::MAX),
            recorded,
        })
    }

    /// Where the manifest's entries start when they hold every offset from there up to
    /// `offset` (none when they do not).
    pub(super) fn held_below(&self, offset: u64) -> Option<u64> {
        let m = self.manifest.lock();
        let first = m.entries().next()?.base_offset;
        holds(&m, first, offset).then_some(first)
    }

    /// One past the last uploaded offset (0 when nothing is).
    pub(super) fn end(&self) -> u64 {
        self.manifest.lock().end()
    }

    /// Segments recorded in the manifest that lie below the first local segment.
    pub(super) fn remote_below(&self, first_local: u64) -> Vec<Arc<RemoteSegment>> {
        self.entries_below(first_local)
            .into_iter()
            .map(|e| Arc::new(RemoteSegment::new(e)))
            .collect()
    }

    /// The manifest's entries that start below the first local segment.
    pub(super) fn entries_below(&self, first_local: u64) -> Vec<ObjectEntry> {
        self.manifest
            .lock()
            .entries()
            .filter(|e| e.base_offset < first_local)
            .cloned()
            .collect()
    }

    /// Offset below which everything is uploaded, given the first local segment.
    pub(super) fn uploaded_end(&self, first_local: u64) -> u64 {
        let m = self.manifest.lock();
        if m.is_empty() { first_local } else { m.end() }
    }

    /// The object holding the uploaded segment starting at `base`.
    pub(super) fn key_of(&self, base: u64) -> Option<String> {
        self.manifest
            .lock()
            .find(base)
            .filter(|e| e.base_offset == base)
            .map(|e| e.key.clone())
    }

    /// Drops the manifest entries below `offset` durably and deletes their objects in
    /// the background (a failed delete leaves an orphan for the next cleanup), once the
    /// manifest catalog no longer names them (when it cannot be trimmed now, the objects
    /// stay until the next upload trims it and the orphan cleanup finds them). A follower
    /// of a replicated partition only drops its own entries: the objects are the leader's
    /// to delete.
    pub(super) fn forget_before(&self, offset: u64, duty: OffloadDuty) -> Result<()> {
        let gone = {
            let mut m = self.manifest.lock();
            let path = m.path().to_path_buf();
            m.remove_before(offset)
                .map_err(|e| manifest_error(&path, e))?
        };
        if gone.is_empty() || duty == OffloadDuty::Follower {
            return Ok(());
        }
        let epoch = duty.epoch();
        let cache = self.cache.clone();
        let recorded = self.recorded.clone();
        tokio::spawn(async move {
            if let Some(r) = recorded
                && let Err(e) = r.trim(offset, epoch).await
            {
                tracing::warn!(error = %e, "expired objects kept: the manifest catalog still names them");
                return;
            }
            for e in gone {
                match cache.store().delete(&e.key).await {
                    Ok(()) => cache.metrics().objects_deleted.inc(),
                    Err(err) => {
                        tracing::warn!(object = e.key, error = %err, "could not delete an expired object")
                    }
                }
            }
        });
        Ok(())
    }

    /// Brings the manifest in line with the catalog (a replicated partition's only
    /// truth about its objects, written by its leaders): entries the catalog trimmed go,
    /// entries it has past the manifest's end, or in place of one the manifest has (an
    /// upload retried after its first record's answer was lost), are added. Returns the
    /// manifest's end and whether it changed.
    pub(super) fn follow_catalog(&self) -> Result<(u64, bool)> {
        let Some(r) = &self.recorded else {
            return Ok((self.end(), false));
        };
        let catalog = r.entries();
        let mut m = self.manifest.lock();
        let path = m.path().to_path_buf();
        let mut changed = false;
        if let Some(first) = catalog.first() {
            changed |= !m
                .remove_before(first.base_offset)
                .map_err(|e| manifest_error(&path, e))?
                .is_empty();
        }
        let end = m.end();
        let new: Vec<ObjectEntry> = catalog
            .into_iter()
            .filter(|e| e.base_offset >= end || m.find(e.base_offset) != Some(e))
            .collect();
        changed |= !new.is_empty();
        for e in new {
            m.add(e).map_err(|e| manifest_error(&path, e))?;
        }
        Ok((m.end(), changed))
    }

    /// Waits until the object holding `last_offset` is stored; fails when the staged
    /// append was discarded after a failed upload.
    pub(super) async fn wait_uploaded(&self, last_offset: u64) -> Result<()> {
        let mut rx = self.acks.subscribe();
        let discards = rx.borrow().discards;
        let acks = *rx
            .wait_for(|a| a.uploaded_end > last_offset || a.discards != discards || a.closed)
            .await
            .map_err(|_| JournalError::Closed)?;
        if acks.uploaded_end > last_offset {
            Ok(())
        } else if acks.closed {
            Err(JournalError::Closed)
        } else {
            Err(JournalError::Unavailable(
                "the object holding this append could not be stored; nothing was kept, retry"
                    .into(),
            ))
        }
    }

    /// Reads from `segments` (only in object storage; the first holds `from`), going on
    /// into the following ones while the budget lasts and below `visible`; a sequential
    /// reader's next blocks are fetched ahead. Returns the batches, the bytes they take
    /// and the offset after them.
    pub(super) async fn read(
        &self,
        segments: &[Arc<RemoteSegment>],
        from: u64,
        visible: u64,
        max_bytes: usize,
        corruptions: &IntCounter,
    ) -> Result<(Vec<Batch>, usize, u64)> {
        let mut out = Vec::new();
        let mut used = 0;
        let mut next = from;
        let mut last = (0, 0);
        for (i, segment) in segments.iter().enumerate() {
            let (n, end_pos) = segment
                .read_into(&self.cache, next, visible, max_bytes - used, &mut out)
                .await
                .inspect_err(|e| {
                    if matches!(e, JournalError::Corruption { .. }) {
                        corruptions.inc();
                    }
                })?;
            used += n;
            last = (i, end_pos);
            next = out.last().map_or(next, |b| b.last_offset() + 1);
            if used >= max_bytes || end_pos < segment.entry.data_len() || next >= visible {
                break;
            }
        }
        let sequential = self.next_sequential.load(Ordering::Relaxed) == from;
        self.next_sequential.store(next, Ordering::Relaxed);
        if sequential {
            let mut budget = self.cache.read_ahead_bytes();
            let mut pos = last.1;
            for s in segments[last.0..].iter().take(READ_AHEAD_SEGMENTS) {
                let e = &s.entry;
                let upto = (pos + budget).min(e.data_len());
                self.cache.prefetch(&e.key, e.size, pos..upto);
                budget -= upto.saturating_sub(pos).min(budget);
                pos = 0;
                if budget == 0 {
                    break;
                }
            }
        }
        Ok((out, used, next))
    }

    /// The earliest offset at or after `ts` in `segments` (only in object storage).
    pub(super) async fn offset_for_timestamp(
        &self,
        segments: &[Arc<RemoteSegment>],
        ts: i64,
    ) -> Result<Option<u64>> {
        for s in segments {
            if let Some(found) = s.offset_for_timestamp(&self.cache, ts).await? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    pub(super) fn close(&self) {
        self.acks.send_modify(|a| a.closed = true);
        self.wake.notify_one();
    }

    /// Deletes objects under the partition's prefix that the manifest does not name.
    pub(super) async fn delete_orphans(&self) -> Result<()> {
        let listed = self.cache.store().list(&self.prefix).await?;
        let recorded: std::collections::HashSet<String> = self
            .recorded
            .iter()
            .flat_map(|r| r.entries())
            .map(|e| e.key)
            .collect();
        let orphans: Vec<String> = {
            let m = self.manifest.lock();
            m.orphans(&listed)
                .into_iter()
                .filter(|k| !recorded.contains(*k))
                .map(str::to_string)
                .collect()
        };
        for key in orphans {
            self.cache.store().delete(&key).await?;
            self.cache.metrics().orphans_deleted.inc();
            tracing::info!(object = key, "deleted an orphaned object");
        }
        Ok(())
    }
}

/// Whether `m`'s entries hold every offset from `at` up to `end` (entries may overlap:
/// a copy's segments need not start where the uploaded ones do).
pub(super) fn holds(m: &Manifest, mut at: u64, end: u64) -> bool {
    while at < end {
        match m.find(at) {
            Some(e) => at = e.last_offset + 1,
            None => return false,
        }
    }
    true
}

pub(super) fn manifest_error(
    path: &Path,
    e: strata_tiered::manifest::ManifestError,
) -> JournalError {
    match e {
        strata_tiered::manifest::ManifestError::Io { source, .. } => JournalError::io(path, source),
        strata_tiered::manifest::ManifestError::Damaged { reason, .. } => {
            JournalError::Corruption {
                file: path.to_path_buf(),
                position: 0,
                reason,
            }
        }
    }
}

impl RemoteSegment {
    /// The figures retention needs.
    pub(super) fn summary(&self) -> SegmentSummary {
        SegmentSummary {
            base_offset: self.entry.base_offset,
            end_offset: self.end_offset(),
            size: self.entry.data_len(),
            max_timestamp: Some(self.entry.max_timestamp),
            first_append_ms: None,
        }
    }
}
