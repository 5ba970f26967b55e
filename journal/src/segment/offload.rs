//! Offload of sealed segments to object storage, and reads of segments that are only
//! there.
//!
//! One background task per offloading partition uploads sealed segments oldest first:
//! object first, then a manifest entry (fsynced), and only then may the local copy go —
//! after the stream's local retention, or at once for the staging segments of the
//! `object` class. A crash between the upload and the manifest entry leaves an orphan
//! object, deleted when the partition next opens; the segment is uploaded again under a
//! new key. Failures back off exponentially; appends of `segment` partitions never wait
//! for object storage, while `object` partitions with `ack = object` wait for their
//! object and fail (with nothing kept) when it cannot be stored.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use strata_tiered::BlockCache;
use strata_tiered::manifest::{Entry, Manifest};
use tokio::sync::{Notify, watch};

use super::file::Segment;
use super::partition::{SegmentLog, State};
use super::remote::{RemoteSegment, encode_trailer};
use crate::config::OffloadSettings;
use crate::error::{JournalError, Result};
use crate::policy::SegmentSummary;
use strata_batch::now_ms;

/// File of a partition's manifest of uploaded segments.
pub const MANIFEST_FILE: &str = "manifest.json";

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// How often an offloading partition looks for work when nothing wakes it.
const IDLE_TICK: Duration = Duration::from_secs(1);
/// Staging segments up to this size are uploaded from memory (and put in the cache);
/// larger segments stream from their file.
const UPLOAD_FROM_MEMORY: u64 = 64 * 1024 * 1024;
/// How many following remote segments a sequential reader's read-ahead may reach into.
const READ_AHEAD_SEGMENTS: usize = 8;

/// What appends waiting for their object watch.
#[derive(Debug, Clone, Copy, Default)]
struct Acks {
    /// Offsets below this are stored in objects.
    uploaded_end: u64,
    /// Bumped each time staged appends are discarded after a failed upload.
    discards: u64,
    closed: bool,
}

/// A partition's link to object storage.
#[derive(Debug)]
pub(crate) struct Remote {
    cache: BlockCache,
    /// Key prefix of the partition's objects, ending in `/`.
    prefix: String,
    manifest: Arc<Mutex<Manifest>>,
    settings: OffloadSettings,
    pub(super) wake: Notify,
    acks: watch::Sender<Acks>,
    /// Where the last remote read ended, to recognise sequential readers.
    next_sequential: AtomicU64,
}

impl Remote {
    /// Loads the manifest of the partition in `dir`.
    pub(crate) fn open(
        cache: BlockCache,
        prefix: String,
        dir: &Path,
        settings: OffloadSettings,
    ) -> Result<Remote> {
        std::fs::create_dir_all(dir).map_err(|e| JournalError::io(dir, e))?;
        let path = dir.join(MANIFEST_FILE);
        let manifest = Manifest::load(&path).map_err(|e| manifest_error(&path, e))?;
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
        })
    }

    /// Segments recorded in the manifest that lie below the first local segment.
    pub(super) fn remote_below(&self, first_local: u64) -> Vec<Arc<RemoteSegment>> {
        self.manifest
            .lock()
            .entries()
            .filter(|e| e.base_offset < first_local)
            .map(|e| Arc::new(RemoteSegment::new(e.clone())))
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
    /// the background (a failed delete leaves an orphan for the next cleanup).
    pub(super) fn forget_before(&self, offset: u64) -> Result<()> {
        let gone = {
            let mut m = self.manifest.lock();
            let path = m.path().to_path_buf();
            m.remove_before(offset)
                .map_err(|e| manifest_error(&path, e))?
        };
        if gone.is_empty() {
            return Ok(());
        }
        let cache = self.cache.clone();
        tokio::spawn(async move {
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

    pub(super) fn close(&self) {
        self.acks.send_modify(|a| a.closed = true);
        self.wake.notify_one();
    }

    /// Deletes objects under the partition's prefix that the manifest does not name.
    async fn delete_orphans(&self) -> Result<()> {
        let listed = self.cache.store().list(&self.prefix).await?;
        let orphans: Vec<String> = {
            let m = self.manifest.lock();
            m.orphans(&listed).into_iter().map(str::to_string).collect()
        };
        for key in orphans {
            self.cache.store().delete(&key).await?;
            self.cache.metrics().orphans_deleted.inc();
            tracing::info!(object = key, "deleted an orphaned object");
        }
        Ok(())
    }
}

fn manifest_error(path: &Path, e: strata_tiered::manifest::ManifestError) -> JournalError {
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

/// A sealed segment picked for upload.
struct Upload {
    segment: Arc<Segment>,
    size: u64,
    end_offset: u64,
    max_timestamp: Option<i64>,
    trailer: Bytes,
}

impl SegmentLog {
    fn remote_ref(&self) -> Result<&Remote> {
        self.remote
            .as_ref()
            .ok_or_else(|| JournalError::InvalidConfig("partition has no object storage".into()))
    }

    /// Reads from segments that are only in object storage, going on into the following
    /// ones (and the local segments) while the budget lasts; a sequential reader's next
    /// blocks are fetched ahead.
    pub(super) async fn read_remote(
        &self,
        from: u64,
        max_bytes: usize,
    ) -> Result<Vec<crate::batch::Batch>> {
        let r = self.remote_ref()?;
        let (segments, visible, first_local) = {
            let st = self.state.lock();
            let i = st
                .remote
                .partition_point(|s| s.entry.base_offset <= from)
                .checked_sub(1)
                .filter(|&i| from <= st.remote[i].entry.last_offset)
                .ok_or_else(|| {
                    JournalError::Unavailable(format!(
                        "offset {from} is neither local nor in the manifest"
                    ))
                })?;
            (
                st.remote[i..].to_vec(),
                self.visible_end(&st),
                st.segments[0].base_offset,
            )
        };
        let mut out = Vec::new();
        let mut used = 0;
        let mut next = from;
        let mut last = (0, 0);
        for (i, segment) in segments.iter().enumerate() {
            let (n, end_pos) = segment
                .read_into(&r.cache, next, visible, max_bytes - used, &mut out)
                .await
                .inspect_err(|e| {
                    if matches!(e, JournalError::Corruption { .. }) {
                        self.metrics.corruptions.inc();
                    }
                })?;
            used += n;
            last = (i, end_pos);
            next = out.last().map_or(next, |b| b.last_offset() + 1);
            if used >= max_bytes || end_pos < segment.entry.data_len() || next >= visible {
                break;
            }
        }
        let sequential = r.next_sequential.load(Ordering::Relaxed) == from;
        r.next_sequential.store(next, Ordering::Relaxed);
        if sequential {
            let mut budget = r.cache.read_ahead_bytes();
            let mut pos = last.1;
            for s in segments[last.0..].iter().take(READ_AHEAD_SEGMENTS) {
                let e = &s.entry;
                let upto = (pos + budget).min(e.data_len());
                r.cache.prefetch(&e.key, e.size, pos..upto);
                budget -= upto.saturating_sub(pos).min(budget);
                pos = 0;
                if budget == 0 {
                    break;
                }
            }
        }
        self.count_read(&out);
        if used < max_bytes && next == first_local && next < visible {
            use crate::log::PartitionLog;
            match self.read(next, max_bytes - used).await {
                Ok(more) => out.extend(more),
                // What was read stands; the caller reads on from where it ends.
                Err(e) => tracing::debug!(error = %e, "read past the remote segments failed"),
            }
        }
        Ok(out)
    }

    /// The earliest offset at or after `ts` among segments only in object storage.
    pub(super) async fn remote_offset_for_timestamp(&self, ts: i64) -> Result<Option<u64>> {
        let Some(r) = &self.remote else {
            return Ok(None);
        };
        let (segments, log_start) = {
            let st = self.state.lock();
            (st.remote.clone(), st.log_start)
        };
        for s in segments {
            if let Some(found) = s.offset_for_timestamp(&r.cache, ts).await? {
                return Ok(Some(found.max(log_start)));
            }
        }
        Ok(None)
    }

    /// Drops every staged segment at or beyond the uploaded end and starts a fresh one
    /// there; their appends fail (`ack = object` after a failed upload, or at open).
    pub(super) fn discard_unuploaded(&self, st: &mut State) -> Result<()> {
        let keep = st.uploaded_end;
        if st.next_offset <= keep && st.active().base_offset >= keep {
            return Ok(());
        }
        let doomed: Vec<Arc<Segment>> = st
            .segments
            .iter()
            .filter(|s| s.base_offset >= keep)
            .cloned()
            .collect();
        st.segments.retain(|s| s.base_offset < keep);
        for s in &doomed {
            s.remove_files(&*self.fs)?;
            self.metrics.segments.dec();
        }
        if !doomed.is_empty() {
            tracing::warn!(
                dir = %self.dir.display(),
                from = keep,
                to = st.next_offset,
                "discarded staged appends that were never stored in an object"
            );
        }
        st.segments
            .push(Arc::new(Segment::create(&*self.fs, &self.dir, keep)?));
        self.metrics.segments.inc();
        st.next_offset = keep;
        st.tail.truncate(keep);
        if let Some(r) = &self.remote {
            r.acks.send_modify(|a| a.discards += 1);
        }
        Ok(())
    }

    /// The oldest sealed segment not yet uploaded.
    fn next_upload(&self) -> Option<Upload> {
        let st = self.state.lock();
        let n = st.segments.len();
        let segment = st.segments[..n - 1]
            .iter()
            .find(|s| s.base_offset >= st.uploaded_end)?
            .clone();
        let (size, end_offset, max_timestamp, trailer) = {
            let m = segment.meta.read();
            (
                m.size,
                m.end_offset,
                m.index.max_timestamp(),
                encode_trailer(&m.index),
            )
        };
        Some(Upload {
            segment,
            size,
            end_offset,
            max_timestamp,
            trailer,
        })
    }

    /// Updates the backlog gauges by this partition's change.
    fn backlog(&self) -> (i64, i64) {
        let st = self.state.lock();
        let n = st.segments.len();
        st.segments[..n - 1]
            .iter()
            .filter(|s| s.base_offset >= st.uploaded_end)
            .fold((0, 0), |(c, b), s| (c + 1, b + s.meta.read().size as i64))
    }

    /// Uploads one segment and records it; returns its object key.
    async fn upload(&self, r: &Remote, up: Upload) -> Result<()> {
        let seg = &up.segment;
        let key = format!(
            "{}{:020}-{:x}.seg",
            r.prefix,
            seg.base_offset,
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        );
        let started = Instant::now();
        let index_len = up.trailer.len() as u64;
        let stored = if up.size <= UPLOAD_FROM_MEMORY {
            let file = seg.file.clone();
            let (size, path) = (up.size, seg.path.clone());
            let mut body = tokio::task::spawn_blocking(move || {
                let mut buf = vec![0u8; size as usize];
                file.read_exact_at(&mut buf, 0).map(|()| buf)
            })
            .await
            .map_err(|e| JournalError::io(&path, std::io::Error::other(e.to_string())))?
            .map_err(|e| JournalError::io(&path, e))?;
            body.extend_from_slice(&up.trailer);
            let body = Bytes::from(body);
            let len = body.len() as u64;
            r.cache.store().put(&key, body.clone()).await.map(|()| {
                r.cache.insert_object(&key, &body);
                len
            })
        } else {
            r.cache
                .store()
                .put_file(&key, &seg.path, up.size, up.trailer)
                .await
        };
        let metrics = r.cache.metrics();
        let size = match stored {
            Ok(size) => size,
            Err(e) => {
                metrics.observe_upload(started, 0, false);
                return Err(e.into());
            }
        };
        let entry = Entry {
            base_offset: seg.base_offset,
            last_offset: up.end_offset - 1,
            key,
            size,
            max_timestamp: up.max_timestamp.unwrap_or(i64::MIN),
            index_len,
        };
        let manifest = r.manifest.clone();
        tokio::task::spawn_blocking(move || {
            let mut m = manifest.lock();
            let path = m.path().to_path_buf();
            m.add(entry).map_err(|e| manifest_error(&path, e))
        })
        .await
        .map_err(|e| JournalError::io(&self.dir, std::io::Error::other(e.to_string())))??;
        metrics.observe_upload(started, size, true);
        let visible = {
            let mut st = self.state.lock();
            st.uploaded_end = st.uploaded_end.max(up.end_offset);
            self.visible_end(&st)
        };
        r.acks
            .send_modify(|a| a.uploaded_end = a.uploaded_end.max(up.end_offset));
        if self.config.acks_on_object() {
            self.watch.publish(visible.max(self.watch.end()));
        }
        Ok(())
    }

    /// Deletes local copies of uploaded segments past the local retention, oldest first.
    fn apply_local_retention(&self, r: &Remote, now: i64) -> Result<()> {
        let mut st = self.state.lock();
        let n = st.segments.len();
        let uploaded: Vec<(u64, u64, Option<i64>)> = st.segments[..n - 1]
            .iter()
            .map(|s| {
                let m = s.meta.read();
                (m.end_offset, m.size, m.index.max_timestamp())
            })
            .take_while(|(end, _, _)| *end <= st.uploaded_end)
            .collect();
        let mut local_bytes: u64 = uploaded.iter().map(|(_, size, _)| size).sum();
        let mut drop = 0;
        for (_, size, max_ts) in &uploaded {
            let old = max_ts
                .is_none_or(|ts| now.saturating_sub(ts) >= r.settings.local_retention_ms as i64);
            let over = r
                .settings
                .local_retention_bytes
                .is_some_and(|max| local_bytes > max);
            if !(old || over) {
                break;
            }
            local_bytes -= size;
            drop += 1;
        }
        for seg in st.segments.drain(..drop).collect::<Vec<_>>() {
            let Some(entry) = r
                .manifest
                .lock()
                .find(seg.base_offset)
                .filter(|e| e.base_offset == seg.base_offset)
                .cloned()
            else {
                // Not in the manifest after all: keep it (put it back in front).
                st.segments.insert(0, seg);
                break;
            };
            seg.remove_files(&*self.fs)?;
            self.metrics.segments.dec();
            r.cache.metrics().local_deleted.inc();
            st.remote.push(Arc::new(RemoteSegment::new(entry)));
        }
        Ok(())
    }

    /// For the `object` class: seals the staging segment once its first append is as
    /// old as the batching bound.
    fn seal_due_object(&self, now: i64) -> Result<()> {
        if !self.staging() {
            return Ok(());
        }
        let mut st = self.state.lock();
        if st.closed {
            return Ok(());
        }
        let active = st.active().summary();
        let due = active.size > 0
            && active
                .first_append_ms
                .is_some_and(|t| now.saturating_sub(t) >= self.config.segment.segment_ms as i64);
        if due {
            self.roll(&mut st)?;
        }
        Ok(())
    }

    fn tick(&self) -> Duration {
        if self.staging() {
            Duration::from_millis((self.config.segment.segment_ms / 4).clamp(1, 1000))
        } else {
            IDLE_TICK
        }
    }

    fn is_closed(&self) -> bool {
        self.state.lock().closed
    }

    /// Uploads everything sealed; on failure backs off (and, with `ack = object`,
    /// discards the staged appends so their callers learn at once).
    async fn offload_pending(&self, r: &Remote) -> Result<()> {
        while let Some(up) = self.next_upload() {
            if self.is_closed() {
                break;
            }
            self.upload(r, up).await?;
        }
        Ok(())
    }

    /// The partition's offload task: runs until the partition closes.
    pub(crate) async fn run_offload(self: Arc<Self>) {
        let Some(r) = &self.remote else { return };
        let metrics = r.cache.metrics().clone();
        let mut orphans_checked = false;
        let mut backoff = BACKOFF_MIN;
        let mut counted = (0i64, 0i64);
        loop {
            if self.is_closed() {
                break;
            }
            if !orphans_checked {
                match r.delete_orphans().await {
                    Ok(()) => orphans_checked = true,
                    Err(e) => tracing::warn!(error = %e, "orphan cleanup failed; will retry"),
                }
            }
            let result = async {
                self.seal_due_object(now_ms())?;
                self.offload_pending(r).await
            }
            .await;
            let mut wait = self.tick();
            match result {
                Ok(()) => backoff = BACKOFF_MIN,
                Err(e) => {
                    tracing::warn!(dir = %self.dir.display(), error = %e, retry_in = ?backoff,
                        "offload failed");
                    if self.config.acks_on_object() {
                        let mut st = self.state.lock();
                        st.down_until = Some((Instant::now() + backoff, e.to_string()));
                        if let Err(e) = self.discard_unuploaded(&mut st) {
                            tracing::error!(error = %e, "could not discard staged appends");
                        }
                    }
                    wait = backoff;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
            if let Err(e) = self.apply_local_retention(r, now_ms()) {
                tracing::warn!(error = %e, "local retention failed");
            }
            let now = self.backlog();
            metrics.upload_backlog_segments.add(now.0 - counted.0);
            metrics.upload_backlog_bytes.add(now.1 - counted.1);
            counted = now;
            if backoff > BACKOFF_MIN {
                // Backing off: rolls do not cut the wait short, closing does.
                let mut acks = r.acks.subscribe();
                tokio::select! {
                    _ = acks.wait_for(|a| a.closed) => {}
                    _ = tokio::time::sleep(wait) => {}
                }
            } else {
                tokio::select! {
                    _ = r.wake.notified() => {}
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
        metrics.upload_backlog_segments.sub(counted.0);
        metrics.upload_backlog_bytes.sub(counted.1);
    }
}
