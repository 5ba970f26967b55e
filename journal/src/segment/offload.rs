//! Offload of sealed segments to object storage.
//!
//! One background task per offloading partition uploads sealed segments oldest first:
//! object first, then a manifest entry (fsynced), and only then may the local copy go —
//! after the stream's local retention, or at once for the staging segments of the
//! `object` class. A crash between the upload and the manifest entry leaves an orphan
//! object, deleted when the partition next opens; the segment is uploaded again under a
//! new key. Failures back off exponentially; appends of `segment` partitions never wait
//! for object storage, while `object` partitions with `ack = object` wait for their
//! object and fail (with nothing kept) when it cannot be stored.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use strata_tiered::manifest::Entry;

use super::file::Segment;
use super::index::SegmentIndex;
use super::partition::SegmentLog;
use super::partition::State;
use super::remote::{RemoteSegment, encode_trailer};
use super::scan::{ScanStop, scan};
use super::tier::{Remote, holds, manifest_error};
use crate::error::{JournalError, Result};
use crate::fs::JournalFile;
use crate::log::OffloadDuty;
use strata_batch::now_ms;

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// How often an offloading partition looks for work when nothing wakes it.
const IDLE_TICK: Duration = Duration::from_secs(1);
/// Staging segments up to this size are uploaded from memory (and put in the cache);
/// larger segments stream from their file.
const UPLOAD_FROM_MEMORY: u64 = 64 * 1024 * 1024;

/// A sealed segment picked for upload.
struct Upload {
    segment: Arc<Segment>,
    /// The leader epoch its catalog entry is fenced by (replicated partitions).
    epoch: Option<i32>,
    /// Its first offset to upload: past its base when the last upload (a former leader's,
    /// whose copy rolled elsewhere) ended inside it.
    from: u64,
    size: u64,
    end_offset: u64,
    max_timestamp: Option<i64>,
    trailer: Bytes,
}

impl SegmentLog {
    /// The oldest sealed segment not wholly uploaded yet: none for a follower, and only
    /// committed ones for a leader. A new leader's segment may hold where the previous
    /// leader's last upload ended (the copies roll at different offsets): only its records
    /// from there are uploaded, so the catalog's entries never overlap.
    fn next_upload(&self, r: &Remote) -> Option<Upload> {
        let st = self.state.lock();
        if st.duty == OffloadDuty::Follower {
            return None;
        }
        let n = st.segments.len();
        let uploaded = st.uploaded_end.max(r.end());
        let segment = st.segments[..n - 1]
            .iter()
            .find(|s| s.meta.read().end_offset > uploaded)?
            .clone();
        if segment.meta.read().end_offset > st.committed() {
            return None;
        }
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
            from: segment.base_offset.max(uploaded),
            segment,
            epoch: st.duty.epoch(),
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
            up.from,
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        );
        let started = Instant::now();
        // The object's size, its index trailer's and its newest timestamp.
        let stored: Result<(u64, u64, Option<i64>)> = if up.from > seg.base_offset {
            self.put_slice(r, &key, &up).await
        } else if up.size <= UPLOAD_FROM_MEMORY {
            let file = seg.file.clone();
            let (size, path) = (up.size, seg.path.clone());
            let body = tokio::task::spawn_blocking(move || {
                let mut buf = vec![0u8; size as usize];
                file.read_exact_at(&mut buf, 0).map(|()| buf)
            })
            .await
            .map_err(|e| JournalError::io(&path, std::io::Error::other(e.to_string())))?
            .map_err(|e| JournalError::io(&path, e))?;
            store_in_memory(r, &key, body, &up.trailer)
                .await
                .map(|len| (len, up.trailer.len() as u64, up.max_timestamp))
        } else {
            r.cache
                .store()
                .put_file(&key, &seg.path, up.size, up.trailer.clone())
                .await
                .map(|len| (len, up.trailer.len() as u64, up.max_timestamp))
                .map_err(Into::into)
        };
        let metrics = r.cache.metrics();
        let (size, index_len, max_timestamp) = match stored {
            Ok(stored) => stored,
            Err(e) => {
                metrics.observe_upload(started, 0, false);
                return Err(e);
            }
        };
        let entry = Entry {
            base_offset: up.from,
            last_offset: up.end_offset - 1,
            key,
            size,
            max_timestamp: max_timestamp.unwrap_or(i64::MIN),
            index_len,
        };
        if let Some(recorded) = &r.recorded {
            // In the catalog first: a local copy is only deleted once the local manifest
            // names its object, so the catalog never misses an object whose copy is gone.
            let local: Vec<_> = r.manifest.lock().entries().cloned().collect();
            if let Err(e) = recorded.record(&local, entry.clone(), up.epoch).await {
                metrics.observe_upload(started, 0, false);
                return Err(e);
            }
        }
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

    /// Stores the records of `up`'s segment from `up.from` on, with an index of their
    /// own, as object `key` (always from memory: this happens once per leader change).
    async fn put_slice(
        &self,
        r: &Remote,
        key: &str,
        up: &Upload,
    ) -> Result<(u64, u64, Option<i64>)> {
        let seg = &up.segment;
        let (file, path, base, size) =
            (seg.file.clone(), seg.path.clone(), seg.base_offset, up.size);
        let (from, interval) = (up.from, self.config.segment.index_interval_bytes);
        let hint = u64::from(
            seg.meta
                .read()
                .index
                .position_for((from - base).min(u64::from(u32::MAX)) as u32),
        );
        let (body, index) = tokio::task::spawn_blocking(move || {
            slice_from(&*file, hint, size, from, interval).map_err(|e| JournalError::io(&path, e))
        })
        .await
        .map_err(|e| JournalError::io(&self.dir, std::io::Error::other(e.to_string())))??;
        let trailer = encode_trailer(&index);
        let len = store_in_memory(r, key, body, &trailer).await?;
        Ok((len, trailer.len() as u64, index.max_timestamp()))
    }

    /// Deletes local copies of uploaded segments past the local retention, oldest first.
    /// A copy's segment is uploaded when the manifest's entries hold all its offsets
    /// (a replicated partition's copies roll at different offsets than the leader that
    /// uploaded), and, for a replica, when it is committed.
    fn apply_local_retention(&self, r: &Remote, now: i64) -> Result<()> {
        let mut st = self.state.lock();
        let n = st.segments.len();
        let committed = st.committed();
        let uploaded: Vec<(u64, u64, Option<i64>)> = {
            let m = r.manifest.lock();
            st.segments[..n - 1]
                .iter()
                .map(|s| {
                    let meta = s.meta.read();
                    (
                        s.base_offset,
                        meta.end_offset,
                        meta.size,
                        meta.index.max_timestamp(),
                    )
                })
                .take_while(|(base, end, _, _)| *end <= committed && holds(&m, *base, *end))
                .map(|(_, end, size, ts)| (end, size, ts))
                .collect()
        };
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
        if drop == 0 {
            return Ok(());
        }
        for seg in st.segments.drain(..drop).collect::<Vec<_>>() {
            seg.remove_files(&*self.fs)?;
            self.metrics.segments.dec();
            r.cache.metrics().local_deleted.inc();
        }
        self.reload_remote(&mut st, r);
        Ok(())
    }

    /// The segments only in object storage: the manifest's entries below the first
    /// local segment, from the log start on.
    /// Those already known are kept as they are, with the index they fetched.
    pub(super) fn reload_remote(&self, st: &mut State, r: &Remote) {
        let log_start = st.log_start;
        let known: std::collections::HashMap<String, Arc<RemoteSegment>> = st
            .remote
            .drain(..)
            .map(|s| (s.entry.key.clone(), s))
            .collect();
        st.remote = r
            .entries_below(st.segments[0].base_offset)
            .into_iter()
            .filter(|e| e.last_offset >= log_start)
            .map(|e| match known.get(&e.key) {
                Some(s) if s.entry == e => s.clone(),
                _ => Arc::new(RemoteSegment::new(e)),
            })
            .collect();
    }

    /// A replicated copy's manifest follows the catalog its leaders write; what is in
    /// object storage and committed counts as uploaded.
    fn follow_catalog(&self, r: &Remote) -> Result<()> {
        let (end, changed) = r.follow_catalog()?;
        let mut st = self.state.lock();
        let uploaded = end.min(st.committed());
        st.uploaded_end = st.uploaded_end.max(uploaded);
        if changed {
            self.reload_remote(&mut st, r);
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
        while let Some(up) = self.next_upload(r) {
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
        // The duty the orphans were last looked for under: the only copy once, a replicated
        // partition's leader at each epoch (never a follower: the objects are the leader's).
        let mut orphans_checked: Option<OffloadDuty> = None;
        let mut backoff = BACKOFF_MIN;
        let mut counted = (0i64, 0i64);
        loop {
            if self.is_closed() {
                break;
            }
            let duty = self.state.lock().duty;
            let result = async {
                if duty != OffloadDuty::Sole {
                    self.follow_catalog(r)?;
                }
                if duty != OffloadDuty::Follower && orphans_checked != Some(duty) {
                    match r.delete_orphans().await {
                        Ok(()) => orphans_checked = Some(duty),
                        Err(e) => tracing::warn!(error = %e, "orphan cleanup failed; will retry"),
                    }
                }
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

/// Stores `body` with `trailer` after it as object `key`, and puts its blocks in the
/// cache; returns the object's size.
async fn store_in_memory(r: &Remote, key: &str, mut body: Vec<u8>, trailer: &[u8]) -> Result<u64> {
    body.extend_from_slice(trailer);
    let body = Bytes::from(body);
    r.cache.store().put(key, body.clone()).await?;
    r.cache.insert_object(key, &body);
    Ok(body.len() as u64)
}

/// The bytes of a segment file of `size` bytes from the batch starting at offset `from`
/// on (scanning from byte `hint`, at or before that batch), with an index of those bytes
/// alone. `from` must start a batch: committed batches are the same on every copy, and
/// an upload ends at a batch's end.
fn slice_from(
    file: &dyn JournalFile,
    hint: u64,
    size: u64,
    from: u64,
    interval: u32,
) -> std::io::Result<(Vec<u8>, SegmentIndex)> {
    let mut batches = Vec::new();
    let stop = scan(file, hint, size, false, |b| {
        if b.header.base_offset >= from {
            batches.push((b.position, b.header));
        }
    })?;
    if stop != ScanStop::Clean {
        // A sealed segment ends on a batch boundary: its bytes are damaged.
        return Err(std::io::Error::other(format!(
            "the segment does not scan to its end: {stop:?}"
        )));
    }
    let Some(&(start, first)) = batches.first() else {
        return Err(std::io::Error::other(format!(
            "no batch at or after offset {from}"
        )));
    };
    if first.base_offset != from {
        return Err(std::io::Error::other(format!(
            "offset {from} is inside a batch here (the next starts at {})",
            first.base_offset
        )));
    }
    let mut index = SegmentIndex::default();
    for (position, h) in &batches {
        index.on_append(
            (h.base_offset - from).min(u64::from(u32::MAX)) as u32,
            (position - start) as u32,
            h.total_len as u64,
            h.max_timestamp,
            interval,
        );
    }
    let mut body = vec![0u8; (size - start) as usize];
    file.read_exact_at(&mut body, start)?;
    Ok((body, index))
}
