//! A partition of the `segment` class: appends, group-committed fsyncs, reads across
//! segments, rolls, retention and delete-before.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use parking_lot::Mutex;

use super::file::Segment;
use super::open::{LOG_START_FILE, open_partition};
use super::remote::RemoteSegment;
use super::scan::scan;
use super::tier::Remote;
use crate::batch::{Batch, BatchHeader, PendingBatch, first_offset_at_time};
use crate::config::{FsyncPolicy, StreamConfig};
use crate::epochs::{EpochStart, LeaderEpochs};
use crate::error::{JournalError, Result};
use crate::fs::{FileSystem, JournalFile, read_file, write_file_atomic};
use crate::group_commit::{GroupCommit, SyncOnce};
use crate::log::{
    Appended, OffloadDuty, Offsets, PartitionInfo, PartitionLog, Removed, ReplicaState, SegmentInfo,
};
use crate::metrics::{ClassMetrics, JournalMetrics};
use crate::notify::EndWatch;
use crate::policy;
use crate::tail::TailCache;
use strata_batch::now_ms;

const CLASS: &str = "segment";

/// The leader-epoch cache of a replicated partition (`crate::epochs`).
pub const EPOCHS_FILE: &str = "leader-epochs";

/// A start after what object storage holds ([`PartitionLog::start_after_stored`]) in
/// progress: `<start> <offset>`, written before the new start past the objects
/// (`offset`) is recorded, removed once the log starts at `start`.
const STORED_START_FILE: &str = "stored-start";

/// The marker of a start after what object storage holds that a crash interrupted:
/// `(start, offset)` when the log-start file still records `offset` (the start over
/// happened, or began), and the marker's file. A marker left by a start over that never
/// recorded its new start is removed.
fn stored_start_marker(
    fs: &dyn FileSystem,
    dir: &Path,
    recorded: Option<u64>,
) -> Result<Option<(u64, u64)>> {
    let marker = dir.join(STORED_START_FILE);
    let bytes = match read_file(fs, &marker) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(JournalError::io(&marker, e)),
    };
    let parsed = std::str::from_utf8(&bytes).ok().and_then(|t| {
        let (start, offset) = t.trim().split_once(' ')?;
        Some((start.parse::<u64>().ok()?, offset.parse::<u64>().ok()?))
    });
    match parsed {
        Some((start, offset)) if recorded == Some(offset) && start < offset => {
            Ok(Some((start, offset)))
        }
        _ => {
            fs.remove_file(&marker)
                .map_err(|e| JournalError::io(&marker, e))?;
            Ok(None)
        }
    }
}

#[derive(Debug)]
pub(super) struct State {
    /// Oldest first; the last one is active. Never empty.
    pub(super) segments: Vec<Arc<Segment>>,
    /// Offset the next record gets.
    pub(super) next_offset: u64,
    pub(super) log_start: u64,
    pub(super) tail: TailCache,
    /// Bytes of the active segment known durable (`always` policy).
    pub(super) durable_pos: u64,
    /// Sealed segments not yet fsynced (`interval` policy).
    pub(super) unsynced: Vec<Arc<dyn JournalFile>>,
    /// Appends since the last successful sync.
    pub(super) dirty: bool,
    pub(super) closed: bool,
    /// Segments only in object storage, oldest first, all below the first local one.
    pub(super) remote: Vec<Arc<RemoteSegment>>,
    /// Offsets below this are in object storage (offload on).
    pub(super) uploaded_end: u64,
    /// Appends are refused until then: object storage failed (ack = object).
    pub(super) down_until: Option<(Instant, String)>,
    /// Where each leader epoch's records start (replicated partitions).
    pub(super) epochs: LeaderEpochs,
    /// Appends in epochs older than this are fenced.
    pub(super) fenced_below: i32,
    /// Readers see offsets below this only, when set (replicated partitions).
    pub(super) high_watermark: Option<u64>,
    /// Its part in object storage and retention.
    pub(super) duty: OffloadDuty,
}

impl State {
    /// The offset below which a replicated copy's records are committed: what it may
    /// take from (or leave to) object storage. Everything, for the only copy.
    pub(super) fn committed(&self) -> u64 {
        match self.duty {
            OffloadDuty::Sole => u64::MAX,
            _ => self.high_watermark.unwrap_or(0).min(self.next_offset),
        }
    }

    pub(super) fn active(&self) -> &Arc<Segment> {
        // `segments` is never empty: opening creates a segment when none exists.
        &self.segments[self.segments.len() - 1]
    }
}

/// A partition stored as segment files.
#[derive(Debug)]
pub(crate) struct SegmentLog {
    pub(super) dir: PathBuf,
    pub(super) fs: Arc<dyn FileSystem>,
    pub(super) config: StreamConfig,
    pub(super) state: Mutex<State>,
    commit: GroupCommit,
    pub(super) watch: EndWatch,
    pub(super) metrics: JournalMetrics,
    class: ClassMetrics,
    /// Object storage, when sealed segments are offloaded.
    pub(super) remote: Option<Remote>,
    /// Names the stream and partition in this partition's events.
    span: tracing::Span,
}

impl SegmentLog {
    /// Opens (recovering) or creates the partition in `dir`.
    pub(crate) fn open(
        fs: Arc<dyn FileSystem>,
        dir: PathBuf,
        mut config: StreamConfig,
        tail_cache_bytes: u64,
        metrics: JournalMetrics,
        remote: Option<Remote>,
        span: tracing::Span,
    ) -> Result<SegmentLog> {
        if config.offloads() && remote.is_none() {
            return Err(JournalError::InvalidConfig(format!(
                "stream {:?} keeps data in object storage but [journal.object_store] is not configured",
                config.name
            )));
        }
        // An `object`-class partition stages one object per segment.
        config.segment = config.effective_segment();
        let uploaded = remote.as_ref().map_or(0, Remote::end);
        let opened = open_partition(
            &*fs,
            &dir,
            config.segment.index_interval_bytes,
            now_ms(),
            uploaded,
        )?;
        metrics.recovery_truncated_bytes.inc_by(opened.truncated);
        let mut opened = opened;
        // A recorded start past the log's end is a `start_at` that a crash interrupted
        // before the segment at the new start existed: finished here (the log begins,
        // empty, at the recorded start; what lies below goes with the older segments).
        let end = opened.segments[opened.segments.len() - 1]
            .meta
            .read()
            .end_offset;
        if let Some(start) = opened.log_start.filter(|s| *s > end) {
            opened
                .segments
                .push(Arc::new(Segment::create(&*fs, &dir, start)?));
            fs.sync_dir(&dir).map_err(|e| JournalError::io(&dir, e))?;
            tracing::warn!(parent: &span, start, end, "finishing a start over cut short by a crash");
        }
        // A start after what object storage holds that a crash interrupted: its older
        // segments go (their records are in the objects), and the log starts where the
        // objects' records do, further down.
        let stored_start = match &remote {
            Some(_) => stored_start_marker(&*fs, &dir, opened.log_start)?,
            None => None,
        };
        if let Some((_, offset)) = stored_start {
            for seg in opened.segments.iter().filter(|s| s.base_offset < offset) {
                seg.remove_files(&*fs)?;
            }
            opened.segments.retain(|s| s.base_offset >= offset);
            tracing::warn!(parent: &span, offset, "finishing a start after object storage cut short by a crash");
        }
        metrics.segments.add(opened.segments.len() as i64);
        let first_base = opened.segments[0].base_offset;
        let active = &opened.segments[opened.segments.len() - 1];
        let (next_offset, durable_pos) = {
            let m = active.meta.read();
            (m.end_offset, m.size)
        };
        let remote_segments = remote
            .as_ref()
            .map(|r| r.remote_below(first_base))
            .unwrap_or_default();
        let first_stored = remote_segments
            .first()
            .map_or(first_base, |s| s.entry.base_offset);
        let log_start = opened
            .log_start
            .unwrap_or(0)
            .max(first_stored)
            .min(next_offset);
        let log_start = match stored_start {
            Some((start, _)) => {
                let start = start.max(first_stored).min(log_start);
                let path = dir.join(LOG_START_FILE);
                write_file_atomic(&*fs, &path, start.to_string().as_bytes())
                    .map_err(|e| JournalError::io(&path, e))?;
                let marker = dir.join(STORED_START_FILE);
                fs.remove_file(&marker)
                    .map_err(|e| JournalError::io(&marker, e))?;
                start
            }
            None => log_start,
        };
        let uploaded_end = remote
            .as_ref()
            .map_or(first_base, |r| r.uploaded_end(first_base));
        let epochs = load_epochs(
            &*fs,
            &dir,
            &opened.segments,
            log_start,
            next_offset,
            &metrics,
        )?;
        let fenced_below = epochs.latest().map_or(0, |e| e.epoch);
        let log = SegmentLog {
            dir,
            fs,
            state: Mutex::new(State {
                segments: opened.segments,
                next_offset,
                log_start,
                tail: TailCache::new(tail_cache_bytes),
                durable_pos,
                unsynced: Vec::new(),
                dirty: false,
                closed: false,
                remote: remote_segments,
                uploaded_end,
                down_until: None,
                epochs,
                fenced_below,
                high_watermark: None,
                duty: OffloadDuty::Sole,
            }),
            commit: GroupCommit::new(next_offset),
            watch: EndWatch::new(next_offset),
            class: metrics.class(if config.class == crate::config::StorageClass::Object {
                "object"
            } else {
                CLASS
            }),
            config,
            metrics,
            remote,
            span,
        };
        if log.config.acks_on_object() {
            // Staged appends beyond the last stored object were never acknowledged.
            let mut st = log.state.lock();
            log.discard_unuploaded(&mut st)?;
        }
        {
            let st = log.state.lock();
            log.watch.publish(log.visible_end(&st));
        }
        Ok(log)
    }

    /// True when appends wait for an fsync (never for staging segments of objects).
    fn always(&self) -> bool {
        self.config.fsync == FsyncPolicy::Always && !self.config.acks_on_object()
    }

    /// True for the staging segments of the `object` class: they exist only until
    /// uploaded, so their index files are never written.
    pub(super) fn staging(&self) -> bool {
        self.config.class == crate::config::StorageClass::Object
    }

    pub(super) fn visible_end(&self, st: &State) -> u64 {
        self.durable_end(st)
            .min(st.high_watermark.unwrap_or(u64::MAX))
    }

    /// The end of what a crash cannot take back (what readers see, before any high
    /// watermark).
    fn durable_end(&self, st: &State) -> u64 {
        if self.config.acks_on_object() {
            st.uploaded_end.min(st.next_offset)
        } else if self.always() {
            self.commit.durable().min(st.next_offset)
        } else {
            st.next_offset
        }
    }

    /// Caps an end offset at the high watermark, for publishing to waiters.
    pub(super) fn capped(st: &State, end: u64) -> u64 {
        end.min(st.high_watermark.unwrap_or(u64::MAX))
    }

    /// Rolls the active segment first when a batch of `len` bytes spanning `span` offsets
    /// should go to a new one.
    fn roll_if_due(&self, st: &mut State, len: u64, span: u64, now: i64) -> Result<()> {
        let summary = st.active().summary();
        if policy::should_roll(&summary, len, span, now, &self.config.segment) {
            self.roll(st)?;
        }
        Ok(())
    }

    /// Writes a sealed batch at the end of the active segment, under the partition lock. A
    /// failed write is cut off, so the next one goes to the same position.
    fn write_sealed(
        &self,
        st: &mut State,
        header: BatchHeader,
        bytes: bytes::Bytes,
        now: i64,
    ) -> Result<()> {
        let active = st.active().clone();
        let pos = active.meta.read().size;
        if let Err(e) = active.file.write_all_at(&bytes, pos) {
            if let Err(e2) = active.file.set_len(pos) {
                tracing::warn!(parent: &self.span, error = %e2, "could not truncate a failed write");
            }
            return Err(self.io(&active.path, e));
        }
        active.on_append(&header, now, self.config.segment.index_interval_bytes);
        st.next_offset = header.next_offset();
        st.dirty = true;
        self.class.append_bytes.inc_by(bytes.len() as u64);
        st.tail.push(Batch::trusted(header, bytes));
        if !self.always() {
            self.watch.publish(self.visible_end(st));
        }
        Ok(())
    }

    /// Persists the epoch cache (atomically: the old or the new file survives a crash).
    fn save_epochs(&self, st: &State) -> Result<()> {
        let path = self.dir.join(EPOCHS_FILE);
        write_file_atomic(&*self.fs, &path, st.epochs.encode().as_bytes())
            .map_err(|e| self.io(&path, e))
    }

    fn io(&self, path: &Path, e: std::io::Error) -> JournalError {
        JournalError::io(path, e)
    }

    fn timed_sync(&self, file: &dyn JournalFile, path: &Path) -> Result<()> {
        let started = Instant::now();
        let r = file.sync();
        self.metrics
            .fsync_seconds
            .observe(started.elapsed().as_secs_f64());
        r.map_err(|e| {
            self.metrics.fsync_errors.inc();
            self.io(path, e)
        })
    }

    /// Seals the active segment and starts a new one at the next offset.
    pub(super) fn roll(&self, st: &mut State) -> Result<()> {
        let old = st.active().clone();
        match self.config.fsync {
            FsyncPolicy::Never => {}
            FsyncPolicy::Interval(_) => st.unsynced.push(old.file.clone()),
            FsyncPolicy::Always => {
                if let Err(e) = self.timed_sync(&*old.file, &old.path) {
                    self.rollback(st);
                    return Err(e);
                }
                self.commit.mark_durable(st.next_offset);
            }
        }
        if !self.staging() {
            old.write_indexes(&*self.fs)?;
        }
        let new = Segment::create(&*self.fs, &self.dir, st.next_offset)?;
        if self.config.fsync != FsyncPolicy::Never && !self.staging() {
            self.fs
                .sync_dir(&self.dir)
                .map_err(|e| self.io(&self.dir, e))?;
        }
        st.segments.push(Arc::new(new));
        st.durable_pos = 0;
        self.metrics.rolls.inc();
        self.metrics.segments.inc();
        if let Some(r) = &self.remote {
            r.wake.notify_one();
        }
        Ok(())
    }

    /// Discards undurable bytes of the active segment after a failed fsync (`always`).
    fn rollback(&self, st: &mut State) {
        let active = st.active().clone();
        let durable = self.commit.durable();
        tracing::error!(parent: &self.span, file = %active.path.display(), durable,
            "fsync failed; rolling back appends that were not durable");
        let recovered = active
            .file
            .set_len(st.durable_pos)
            .map_err(|e| self.io(&active.path, e))
            .and_then(|()| {
                Segment::recover(
                    &*self.fs,
                    &self.dir,
                    active.base_offset,
                    self.config.segment.index_interval_bytes,
                    now_ms(),
                )
            });
        match recovered {
            Ok((segment, _)) => {
                let end = segment.meta.read().end_offset;
                if end != durable {
                    tracing::warn!(
                        parent: &self.span,
                        end,
                        durable,
                        "rolled-back segment ends away from the durable offset"
                    );
                }
                let n = st.segments.len();
                st.segments[n - 1] = Arc::new(segment);
                st.next_offset = end;
            }
            Err(e) => {
                tracing::error!(parent: &self.span, error = %e, "rollback failed; closing the partition");
                st.closed = true;
            }
        }
        st.tail.truncate(durable);
        self.commit.rollback();
    }

    /// Removes the `n` oldest units: remote-only segments first, then local ones.
    fn remove_oldest(&self, st: &mut State, n: usize) -> Result<Removed> {
        let mut removed = Removed::default();
        let from_remote = n.min(st.remote.len());
        let first_kept = st.remote.get(from_remote).map_or_else(
            || st.segments[n - from_remote].base_offset,
            |r| r.entry.base_offset,
        );
        if let Some(r) = &self.remote {
            // Forget the objects first: a crash then leaves orphans, never a manifest
            // naming deleted objects.
            r.forget_before(first_kept, st.duty)?;
        }
        for seg in st.remote.drain(..from_remote) {
            removed.units += 1;
            removed.bytes += seg.entry.size;
        }
        for seg in st.segments.drain(..n - from_remote).collect::<Vec<_>>() {
            removed.units += 1;
            removed.bytes += seg.meta.read().size;
            seg.remove_files(&*self.fs)?;
            self.metrics.segments.dec();
        }
        st.log_start = st.log_start.max(first_kept);
        st.uploaded_end = st.uploaded_end.max(first_kept);
        if st.epochs.truncate_before(st.log_start) {
            self.save_epochs(st)?;
        }
        self.metrics.retention_removed.inc_by(removed.units);
        self.metrics.retention_removed_bytes.inc_by(removed.bytes);
        Ok(removed)
    }

    fn apply_removals(&self, st: &mut State, now: i64) -> Result<Removed> {
        let summaries: Vec<_> = st
            .remote
            .iter()
            .map(|r| r.summary())
            .chain(st.segments.iter().map(|s| s.summary()))
            .collect();
        // A follower drops only what lies below its log start (the leader's): retention
        // is the leader's decision.
        let retention = if st.duty == OffloadDuty::Follower {
            crate::config::Retention::default()
        } else {
            self.config.retention
        };
        let n = policy::segments_to_remove(&summaries, st.log_start, &retention, now);
        if n == 0 {
            return Ok(Removed::default());
        }
        self.remove_oldest(st, n)
    }

    fn read_segments(
        segments: &[Arc<Segment>],
        from: u64,
        visible: u64,
        max_bytes: usize,
    ) -> Result<Vec<Batch>> {
        let first = segments
            .partition_point(|s| s.base_offset <= from)
            .saturating_sub(1);
        let mut out = Vec::new();
        let mut used = 0usize;
        for seg in &segments[first..] {
            if seg.base_offset >= visible {
                break;
            }
            let budget = max_bytes.saturating_sub(used);
            let (n, reached_end) =
                seg.read_into(from.max(seg.base_offset), visible, budget, &mut out)?;
            used += n;
            if !reached_end || (used >= max_bytes && !out.is_empty()) {
                break;
            }
        }
        Ok(out)
    }

    fn find_timestamp(segments: &[Arc<Segment>], ts: i64, visible: u64) -> Result<Option<u64>> {
        for seg in segments {
            let (max, start_rel, end) = {
                let m = seg.meta.read();
                (
                    m.index.max_timestamp(),
                    m.index.rel_offset_for_time(ts),
                    m.end_offset,
                )
            };
            if max.is_none_or(|m| m < ts) {
                continue;
            }
            let mut from = seg.base_offset + u64::from(start_rel);
            while from < end.min(visible) {
                let mut batches = Vec::new();
                seg.read_into(from, visible, 1 << 20, &mut batches)?;
                // Only this segment's batches: the loop stops at its end offset.
                let Some(last) = batches.last() else { break };
                from = last.last_offset() + 1;
                if let Some(found) = first_offset_at_time(&batches, ts, 0)? {
                    return Ok(Some(found));
                }
            }
        }
        Ok(None)
    }
}

impl SyncOnce for SegmentLog {
    async fn sync_once(&self) -> Result<u64> {
        let (files, target, target_pos, epoch, active_base) = {
            let mut st = self.state.lock();
            let mut files = std::mem::take(&mut st.unsynced);
            files.push(st.active().file.clone());
            st.dirty = false;
            (
                files,
                st.next_offset,
                st.active().meta.read().size,
                self.commit.epoch(),
                st.active().base_offset,
            )
        };
        let path = self.dir.clone();
        let this_metrics = self.metrics.clone();
        let result = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let r = files.iter().try_for_each(|f| f.sync());
            this_metrics
                .fsync_seconds
                .observe(started.elapsed().as_secs_f64());
            r
        })
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))
        .and_then(|r| r);
        let mut st = self.state.lock();
        match result {
            Ok(()) => {
                if self.always()
                    && st.active().base_offset == active_base
                    && self.commit.epoch() == epoch
                {
                    st.durable_pos = st.durable_pos.max(target_pos);
                    self.watch
                        .publish(Self::capped(&st, target.max(self.watch.end())));
                }
                Ok(target)
            }
            Err(e) => {
                self.metrics.fsync_errors.inc();
                st.dirty = true;
                if self.always() && self.commit.epoch() == epoch {
                    self.rollback(&mut st);
                    self.watch.publish(self.visible_end(&st));
                }
                Err(self.io(&path, e))
            }
        }
    }
}

impl SegmentLog {
    /// Enters `epoch` for an append at `base`: fenced when older than the newest known,
    /// recorded in the epoch cache (durably, before the batch) when newer.
    fn enter_epoch(&self, st: &mut State, epoch: i32, base: u64) -> Result<()> {
        let current = st
            .fenced_below
            .max(st.epochs.latest().map_or(0, |e| e.epoch));
        if epoch < current {
            return Err(JournalError::Fenced { epoch, current });
        }
        match st.epochs.assign(epoch, base) {
            Ok(true) => self.save_epochs(st)?,
            Ok(false) => {}
            Err(current) => return Err(JournalError::Fenced { epoch, current }),
        }
        st.fenced_below = st.fenced_below.max(epoch);
        Ok(())
    }

    /// Appends one batch copied from the leader, under the partition lock.
    fn copy_one(&self, st: &mut State, h: BatchHeader, b: &Batch, now: i64) -> Result<()> {
        if h.base_offset != st.next_offset {
            return Err(JournalError::InvalidBatch(format!(
                "a copy starting at {} does not continue the log ending at {}",
                h.base_offset, st.next_offset
            )));
        }
        if h.leader_epoch < 0 {
            return Err(JournalError::InvalidBatch(format!(
                "a copy in leader epoch {} (negative)",
                h.leader_epoch
            )));
        }
        match st.epochs.assign(h.leader_epoch, h.base_offset) {
            Ok(true) => self.save_epochs(st)?,
            Ok(false) => {}
            Err(newest) => {
                return Err(JournalError::InvalidBatch(format!(
                    "a copy in leader epoch {} follows epoch {newest}",
                    h.leader_epoch
                )));
            }
        }
        st.fenced_below = st.fenced_below.max(h.leader_epoch);
        self.roll_if_due(
            st,
            h.total_len as u64,
            u64::from(h.last_offset_delta) + 1,
            now,
        )?;
        self.write_sealed(st, h, b.as_bytes().clone(), now)
    }

    async fn append_sealing(&self, batch: PendingBatch, epoch_in: Option<i32>) -> Result<Appended> {
        let records = batch.record_count();
        let now = now_ms();
        let (appended, end, epoch) = {
            let mut st = self.state.lock();
            if st.closed {
                return Err(JournalError::Closed);
            }
            if let Some((until, why)) = &st.down_until {
                if Instant::now() < *until {
                    self.class.append_errors.inc();
                    return Err(JournalError::Unavailable(why.clone()));
                }
                st.down_until = None;
            }
            let span = u64::from(batch.last_offset_delta()) + 1;
            let base = st.next_offset;
            let written = self
                .roll_if_due(&mut st, batch.len() as u64, span, now)
                .and_then(|()| {
                    let (header, bytes) = match epoch_in {
                        Some(epoch) => {
                            self.enter_epoch(&mut st, epoch, base)?;
                            batch.seal_in_epoch(base, epoch)
                        }
                        None => batch.seal(base),
                    };
                    self.write_sealed(&mut st, header, bytes, now)
                        .map(|()| header)
                });
            let header = match written {
                Ok(h) => h,
                Err(e) => {
                    self.class.append_errors.inc();
                    return Err(e);
                }
            };
            let appended = Appended {
                base_offset: header.base_offset,
                last_offset: header.last_offset(),
            };
            if self.staging() && st.active().meta.read().size >= self.config.segment.segment_bytes {
                // A full object goes now rather than with the next append.
                if let Err(e) = self.roll(&mut st) {
                    tracing::warn!(parent: &self.span, error = %e, "could not seal a full staging segment");
                }
            }
            (appended, st.next_offset, self.commit.epoch())
        };
        self.commit
            .acknowledge(self.always(), end, epoch, self, &self.class, records)
            .await?;
        if self.config.acks_on_object()
            && let Some(r) = &self.remote
        {
            r.wait_uploaded(appended.last_offset).await?;
        }
        Ok(appended)
    }

    async fn read_upto(&self, from: u64, max_bytes: usize, written: bool) -> Result<Vec<Batch>> {
        let local = {
            let st = self.state.lock();
            let visible = if written {
                st.next_offset
            } else {
                self.visible_end(&st)
            };
            // A replica's readers may stand past its high watermark (they read up to an
            // earlier leader's, which this one has not heard of yet): nothing to read yet,
            // as long as the records are written here.
            let written_here = st.high_watermark.is_some() && from <= st.next_offset;
            if from < st.log_start || (from > visible && !written_here) {
                return Err(JournalError::OffsetOutOfRange {
                    offset: from,
                    log_start: st.log_start,
                    end: visible,
                });
            }
            if from >= visible {
                return Ok(Vec::new());
            }
            if let Some(batches) = st.tail.read(from, visible, max_bytes) {
                self.count_read(&batches);
                return Ok(batches);
            }
            (from >= st.segments[0].base_offset).then(|| (st.segments.clone(), visible))
        };
        let Some((segments, visible)) = local else {
            return self.read_remote(from, max_bytes, written).await;
        };
        let result = tokio::task::spawn_blocking(move || {
            Self::read_segments(&segments, from, visible, max_bytes)
        })
        .await
        .map_err(|e| JournalError::io("read", std::io::Error::other(e.to_string())))?;
        match result {
            Ok(batches) => {
                self.count_read(&batches);
                Ok(batches)
            }
            Err(e) => {
                if matches!(e, JournalError::Corruption { .. }) {
                    self.metrics.corruptions.inc();
                }
                Err(e)
            }
        }
    }

    /// [`PartitionLog::start_at`] (`keep_stored`: [`PartitionLog::start_after_stored`]).
    /// Cuts the log from `offset` (a divergent tail: never below the high watermark), or,
    /// given none, every record it can: a copy that is no longer a replica forgets its
    /// high watermark and keeps only its start (and what object storage holds).
    fn cut_tail(&self, offset: Option<u64>) -> Result<u64> {
        self.replica_capable()?;
        let mut st = self.state.lock();
        if st.closed {
            return Err(JournalError::Closed);
        }
        let floor = st
            .log_start
            .max(st.segments[0].base_offset)
            .max(if self.remote.is_some() {
                st.uploaded_end
            } else {
                0
            });
        let offset = match offset {
            Some(offset) => {
                if offset >= st.next_offset {
                    return Ok(st.next_offset);
                }
                // Committed records are never taken back: below the high watermark, refuse.
                let floor = floor.max(st.high_watermark.unwrap_or(0));
                if offset < floor {
                    return Err(JournalError::OffsetOutOfRange {
                        offset,
                        log_start: floor,
                        end: st.next_offset,
                    });
                }
                offset
            }
            None => {
                st.high_watermark = None;
                if floor >= st.next_offset {
                    return Ok(st.next_offset);
                }
                // From a batch's start at or past the floor: a batch that holds the log
                // start past its first record stays (the end never goes below the start).
                let i = st.segments.partition_point(|s| s.base_offset <= floor) - 1;
                let seg = st.segments[i].clone();
                let (_, base, next) = self.batch_around(&seg, floor)?;
                let from = if base < floor { next } else { base };
                if from >= st.next_offset {
                    return Ok(st.next_offset);
                }
                from
            }
        };
        let i = st.segments.partition_point(|s| s.base_offset <= offset) - 1;
        let seg = st.segments[i].clone();
        let (pos, cut_at) = self.batch_holding(&seg, offset)?;
        // From the first change to the files on, a failure leaves the partition's state
        // unknown: it is closed, and reopening recovers it from the files.
        let cut = self.cut_files(&mut st, i, &seg, pos);
        if let Err(e) = cut {
            tracing::error!(parent: &self.span, error = %e, "truncation failed; closing the partition");
            st.closed = true;
            self.watch.close();
            return Err(e);
        }
        st.next_offset = cut_at;
        st.tail.truncate(cut_at);
        if st.epochs.truncate_from(cut_at) {
            self.save_epochs(&st)?;
        }
        // Everything below the cut is durable: earlier segments were synced when they
        // rolled (or are synced by the interval task), this one just now.
        self.commit.truncate(cut_at);
        self.metrics.replica_truncations.inc();
        tracing::info!(parent: &self.span, offset = cut_at, "truncated a divergent tail");
        self.watch.publish(self.visible_end(&st));
        Ok(cut_at)
    }

    fn start_over(&self, offset: u64, keep_stored: bool) -> Result<u64> {
        self.replica_capable()?;
        match &self.remote {
            Some(r) => {
                if self.state.lock().duty == OffloadDuty::Sole {
                    return Err(JournalError::Unsupported(
                        "only a copy of a replicated partition starts over at another offset"
                            .into(),
                    ));
                }
                // What the leaders uploaded up to now.
                r.follow_catalog()?;
                if keep_stored && r.held_below(offset).is_none() {
                    return Err(JournalError::Unavailable(format!(
                        "the manifest catalog seen here does not hold every offset below {offset} yet"
                    )));
                }
            }
            None if keep_stored => {
                return Err(JournalError::Unsupported(
                    "only a tiered partition starts after what object storage holds".into(),
                ));
            }
            None => {}
        }
        // Where the log starts after all: where the objects' records do, when they are kept.
        let stored_start = match &self.remote {
            Some(r) if keep_stored => r.held_below(offset).filter(|s| *s < offset),
            _ => None,
        };
        let mut st = self.state.lock();
        if st.closed {
            return Err(JournalError::Closed);
        }
        if offset <= st.next_offset {
            return Err(JournalError::OffsetOutOfRange {
                offset,
                log_start: st.next_offset + 1,
                end: st.next_offset,
            });
        }
        // The order makes a crash at any point safe: the new start is recorded first and
        // an open that finds it past the log's end finishes the job (a segment there);
        // then the epochs emptied, the segment at the new start, and the older segments
        // removed (left over by a crash, they are below the start and removed later).
        // Before all that, where the log starts in the end when the objects keep what lies
        // below (never below where it starts now): an open that finds it there starts the
        // log there.
        let stored_start = stored_start
            .map(|s| s.max(st.log_start))
            .filter(|s| *s < offset);
        if let Some(start) = stored_start {
            let marker = self.dir.join(STORED_START_FILE);
            write_file_atomic(&*self.fs, &marker, format!("{start} {offset}").as_bytes())
                .map_err(|e| self.io(&marker, e))?;
        }
        let path = self.dir.join(LOG_START_FILE);
        write_file_atomic(&*self.fs, &path, offset.to_string().as_bytes())
            .map_err(|e| self.io(&path, e))?;
        if st.epochs.truncate_from(0) {
            self.save_epochs(&st)?;
        }
        let dropped_from = st.next_offset;
        st.next_offset = offset;
        if let Err(e) = self.roll(&mut st) {
            st.next_offset = dropped_from;
            return Err(e);
        }
        st.log_start = offset;
        st.tail.clear();
        st.high_watermark = st.high_watermark.map(|hw| hw.max(offset));
        self.commit.mark_durable(offset);
        let n = st.segments.len() - 1;
        match &self.remote {
            None => {
                self.remove_oldest(&mut st, n)?;
            }
            Some(r) => self.start_over_stored(&mut st, r, n, offset, stored_start)?,
        }
        tracing::info!(parent: &self.span, offset, dropped_from, "log starts over at the leader's log start");
        self.watch.publish(self.visible_end(&st));
        Ok(offset)
    }

    /// The end of [`Self::start_over`] for a copy of a tiered partition: its `n` older
    /// local segments go. With `stored_start`, the objects keep what lies below the new
    /// start readable and the log starts there (recorded, then the marker written first
    /// removed); otherwise (the leader's log starts at `offset`) the entries below go too.
    fn start_over_stored(
        &self,
        st: &mut State,
        r: &Remote,
        n: usize,
        offset: u64,
        stored_start: Option<u64>,
    ) -> Result<()> {
        for seg in st.segments.drain(..n).collect::<Vec<_>>() {
            seg.remove_files(&*self.fs)?;
            self.metrics.segments.dec();
        }
        match stored_start {
            Some(start) => {
                let path = self.dir.join(LOG_START_FILE);
                write_file_atomic(&*self.fs, &path, start.to_string().as_bytes())
                    .map_err(|e| self.io(&path, e))?;
                let marker = self.dir.join(STORED_START_FILE);
                self.fs
                    .remove_file(&marker)
                    .map_err(|e| self.io(&marker, e))?;
                st.log_start = start;
            }
            None => r.forget_before(offset, OffloadDuty::Follower)?,
        }
        st.uploaded_end = st.uploaded_end.max(r.end().min(offset));
        self.reload_remote(st, r);
        Ok(())
    }

    /// Refuses replica operations on the staging segments of the `object` class.
    fn replica_capable(&self) -> Result<()> {
        if self.staging() {
            return Err(JournalError::Unsupported(
                "an object-class partition cannot be a replica".into(),
            ));
        }
        Ok(())
    }

    /// Cuts segment `i` at byte `pos` and removes the later segments, durably, then
    /// reloads segment `i`.
    fn cut_files(&self, st: &mut State, i: usize, seg: &Segment, pos: u64) -> Result<()> {
        // Newest first, then the cut: a crash midway leaves a shorter log without a gap
        // (segments after a cut one would otherwise follow a hole in the offsets).
        for later in st.segments.drain(i + 1..).rev().collect::<Vec<_>>() {
            later.remove_files(&*self.fs)?;
            self.metrics.segments.dec();
        }
        seg.file
            .set_len(pos)
            .and_then(|()| seg.file.sync())
            .map_err(|e| self.io(&seg.path, e))?;
        let (kept, _) = Segment::recover(
            &*self.fs,
            &self.dir,
            seg.base_offset,
            self.config.segment.index_interval_bytes,
            now_ms(),
        )?;
        self.fs
            .sync_dir(&self.dir)
            .map_err(|e| self.io(&self.dir, e))?;
        st.durable_pos = kept.meta.read().size;
        st.segments[i] = Arc::new(kept);
        Ok(())
    }

    /// The byte position and base offset of the batch holding `offset` in `seg`.
    fn batch_holding(&self, seg: &Segment, offset: u64) -> Result<(u64, u64)> {
        self.batch_around(seg, offset)
            .map(|(position, base, _)| (position, base))
    }

    /// The batch of `seg` holding `offset`: its position, base offset and the offset
    /// after it.
    fn batch_around(&self, seg: &Segment, offset: u64) -> Result<(u64, u64, u64)> {
        let (start, size) = {
            let m = seg.meta.read();
            let rel = (offset - seg.base_offset).min(u64::from(u32::MAX)) as u32;
            (u64::from(m.index.position_for(rel)), m.size)
        };
        let mut found = None;
        scan(&*seg.file, start, size, false, |b| {
            if found.is_none() && b.header.next_offset() > offset {
                found = Some((b.position, b.header.base_offset, b.header.next_offset()));
            }
        })
        .map_err(|e| self.io(&seg.path, e))?;
        found.ok_or_else(|| JournalError::Corruption {
            file: seg.path.clone(),
            position: start,
            reason: format!("no batch holds offset {offset}"),
        })
    }
}

#[async_trait]
impl PartitionLog for SegmentLog {
    async fn append(&self, batch: PendingBatch) -> Result<Appended> {
        self.append_sealing(batch, None).await
    }

    async fn read(&self, from: u64, max_bytes: usize) -> Result<Vec<Batch>> {
        self.read_upto(from, max_bytes, false).await
    }

    async fn append_in_epoch(&self, batch: PendingBatch, epoch: i32) -> Result<Appended> {
        self.replica_capable()?;
        if epoch < 0 {
            return Err(JournalError::InvalidBatch(format!(
                "leader epoch {epoch} is negative"
            )));
        }
        self.append_sealing(batch, Some(epoch)).await
    }

    async fn append_copies(&self, batches: Vec<Batch>) -> Result<u64> {
        self.replica_capable()?;
        let records: u32 = batches.iter().map(Batch::record_count).sum();
        let now = now_ms();
        let (end, epoch) = {
            let mut st = self.state.lock();
            if st.closed {
                return Err(JournalError::Closed);
            }
            for b in batches {
                let h = *b.header();
                let written = self.copy_one(&mut st, h, &b, now);
                if let Err(e) = written {
                    self.class.append_errors.inc();
                    return Err(e);
                }
            }
            (st.next_offset, self.commit.epoch())
        };
        self.commit
            .acknowledge(self.always(), end, epoch, self, &self.class, records)
            .await?;
        Ok(end)
    }

    async fn truncate_from(&self, offset: u64) -> Result<u64> {
        self.cut_tail(Some(offset))
    }

    async fn clear_copy(&self) -> Result<u64> {
        self.cut_tail(None)
    }

    async fn start_at(&self, offset: u64) -> Result<u64> {
        self.start_over(offset, false)
    }

    async fn start_after_stored(&self, offset: u64) -> Result<u64> {
        self.start_over(offset, true)
    }

    fn fence(&self, epoch: i32) -> Result<()> {
        self.replica_capable()?;
        let mut st = self.state.lock();
        st.fenced_below = st.fenced_below.max(epoch);
        Ok(())
    }

    fn set_offload_duty(&self, duty: OffloadDuty) {
        let changed = {
            let mut st = self.state.lock();
            let changed = std::mem::replace(&mut st.duty, duty) != duty;
            if duty != OffloadDuty::Sole {
                // What counts as uploaded here is what is also committed (an old leader's
                // uncommitted tail may have to be truncated), as the catalog says again
                // at the next pass.
                st.uploaded_end = st.uploaded_end.min(st.committed());
            }
            changed
        };
        if changed && let Some(r) = &self.remote {
            r.wake.notify_one();
        }
    }

    fn set_high_watermark(&self, hw: u64) -> Result<()> {
        self.replica_capable()?;
        let mut st = self.state.lock();
        st.high_watermark = Some(st.high_watermark.map_or(hw, |old| old.max(hw)));
        self.watch.publish(self.visible_end(&st));
        Ok(())
    }

    fn replica_state(&self) -> Result<ReplicaState> {
        self.replica_capable()?;
        let st = self.state.lock();
        Ok(ReplicaState {
            log_start: st.log_start,
            written_end: st.next_offset,
            durable_end: self.durable_end(&st),
            high_watermark: st.high_watermark,
            latest_epoch: st.epochs.latest(),
            fenced_below: st.fenced_below,
            local_start: st.segments[0].base_offset,
        })
    }

    fn leader_epochs(&self) -> Result<Vec<EpochStart>> {
        self.replica_capable()?;
        Ok(self.state.lock().epochs.entries().to_vec())
    }

    fn end_offset_for_epoch(&self, epoch: i32) -> Result<Option<(i32, u64)>> {
        self.replica_capable()?;
        let st = self.state.lock();
        Ok(st.epochs.end_offset_for(epoch, st.next_offset))
    }

    async fn read_written(&self, from: u64, max_bytes: usize) -> Result<Vec<Batch>> {
        self.replica_capable()?;
        self.read_upto(from, max_bytes, true).await
    }

    fn offsets(&self) -> Offsets {
        let st = self.state.lock();
        Offsets {
            log_start: st.log_start,
            end: self.visible_end(&st),
        }
    }

    fn end_watch(&self) -> &EndWatch {
        &self.watch
    }

    async fn offset_for_timestamp(&self, timestamp_ms: i64) -> Result<Option<u64>> {
        if let Some(found) = self.remote_offset_for_timestamp(timestamp_ms).await? {
            return Ok(Some(found));
        }
        let (segments, visible, log_start) = {
            let st = self.state.lock();
            (st.segments.clone(), self.visible_end(&st), st.log_start)
        };
        let found = tokio::task::spawn_blocking(move || {
            Self::find_timestamp(&segments, timestamp_ms, visible)
        })
        .await
        .map_err(|e| JournalError::io("read", std::io::Error::other(e.to_string())))??;
        Ok(found.map(|o| o.max(log_start)))
    }

    async fn delete_before(&self, offset: u64) -> Result<u64> {
        let mut st = self.state.lock();
        let target = offset.min(st.next_offset);
        if target <= st.log_start {
            return Ok(st.log_start);
        }
        let path = self.dir.join(LOG_START_FILE);
        write_file_atomic(&*self.fs, &path, target.to_string().as_bytes())
            .map_err(|e| self.io(&path, e))?;
        st.log_start = target;
        let active = st.active().summary();
        if active.size > 0 && active.end_offset <= target {
            self.roll(&mut st)?;
        }
        self.apply_removals(&mut st, i64::MIN)?;
        Ok(st.log_start)
    }

    async fn enforce_retention(&self, now_ms: i64) -> Result<Removed> {
        let mut st = self.state.lock();
        if st.closed {
            return Ok(Removed::default());
        }
        let active = st.active().summary();
        if policy::should_roll_idle(
            &active,
            now_ms,
            &self.config.segment,
            &self.config.retention,
        ) {
            self.roll(&mut st)?;
        }
        if st.duty == OffloadDuty::Follower {
            // Retention is the leader's decision: a follower's log starts where the
            // leader's does (its fetches say where).
            return Ok(Removed::default());
        }
        self.apply_removals(&mut st, now_ms)
    }

    async fn sync(&self) -> Result<()> {
        let (dirty, end, epoch) = {
            let st = self.state.lock();
            (
                st.dirty || !st.unsynced.is_empty(),
                st.next_offset,
                self.commit.epoch(),
            )
        };
        if !dirty {
            return Ok(());
        }
        if self.always() {
            return self.commit.wait_durable(end, epoch, self).await;
        }
        self.sync_once().await.map(|_| ())
    }

    async fn close(&self) -> Result<()> {
        if self.state.lock().closed {
            return Ok(());
        }
        let synced = self.sync().await;
        let indexed = {
            let mut st = self.state.lock();
            st.closed = true;
            st.tail.clear();
            if self.staging() {
                Ok(())
            } else {
                st.active().write_indexes(&*self.fs)
            }
        };
        self.watch.close();
        if let Some(r) = &self.remote {
            r.close();
        }
        synced.and(indexed)
    }

    fn describe(&self) -> PartitionInfo {
        let st = self.state.lock();
        let remote_key = |base: u64| self.remote.as_ref().and_then(|r| r.key_of(base));
        let segments: Vec<SegmentInfo> = st
            .remote
            .iter()
            .map(|r| SegmentInfo {
                base_offset: r.entry.base_offset,
                end_offset: r.end_offset(),
                size: r.entry.data_len(),
                max_timestamp: Some(r.entry.max_timestamp),
                location: PathBuf::new(),
                remote: Some(r.entry.key.clone()),
            })
            .chain(st.segments.iter().map(|s| {
                let m = s.meta.read();
                SegmentInfo {
                    base_offset: s.base_offset,
                    end_offset: m.end_offset,
                    size: m.size,
                    max_timestamp: m.index.max_timestamp(),
                    location: s.path.clone(),
                    remote: remote_key(s.base_offset),
                }
            }))
            .collect();
        PartitionInfo {
            offsets: Offsets {
                log_start: st.log_start,
                end: self.visible_end(&st),
            },
            size: segments.iter().map(|s| s.size).sum(),
            segments,
        }
    }
}

impl SegmentLog {
    pub(super) fn count_read(&self, batches: &[Batch]) {
        let bytes: usize = batches.iter().map(Batch::len).sum();
        self.class.reads.inc_by(batches.len() as u64);
        self.class.read_bytes.inc_by(bytes as u64);
    }
}

impl SegmentLog {
    fn remote_ref(&self) -> Result<&Remote> {
        self.remote
            .as_ref()
            .ok_or_else(|| JournalError::InvalidConfig("partition has no object storage".into()))
    }

    /// Reads from segments that are only in object storage, going on into the following
    /// ones (and the local segments) while the budget lasts.
    async fn read_remote(&self, from: u64, max_bytes: usize, written: bool) -> Result<Vec<Batch>> {
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
            let visible = if written {
                st.next_offset
            } else {
                self.visible_end(&st)
            };
            (st.remote[i..].to_vec(), visible, st.segments[0].base_offset)
        };
        let (mut out, used, next) = r
            .read(
                &segments,
                from,
                visible,
                max_bytes,
                &self.metrics.corruptions,
            )
            .await?;
        self.count_read(&out);
        if used < max_bytes && next == first_local && next < visible {
            match Box::pin(self.read_upto(next, max_bytes - used, written)).await {
                Ok(more) => out.extend(more),
                // What was read stands; the caller reads on from where it ends.
                Err(e) => tracing::debug!(error = %e, "read past the remote segments failed"),
            }
        }
        Ok(out)
    }

    /// The earliest offset at or after `ts` among segments only in object storage.
    async fn remote_offset_for_timestamp(&self, ts: i64) -> Result<Option<u64>> {
        let Some(r) = &self.remote else {
            return Ok(None);
        };
        let (segments, log_start) = {
            let st = self.state.lock();
            (st.remote.clone(), st.log_start)
        };
        Ok(r.offset_for_timestamp(&segments, ts)
            .await?
            .map(|found| found.max(log_start)))
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
}

/// Loads the leader-epoch cache, rebuilding it from the batches when the file is damaged,
/// and drops the epochs the log no longer holds (a torn tail cut at open).
fn load_epochs(
    fs: &dyn FileSystem,
    dir: &Path,
    segments: &[Arc<Segment>],
    log_start: u64,
    end: u64,
    metrics: &JournalMetrics,
) -> Result<LeaderEpochs> {
    let path = dir.join(EPOCHS_FILE);
    let bytes = match read_file(fs, &path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(LeaderEpochs::default()),
        Err(e) => return Err(JournalError::io(&path, e)),
    };
    let parsed = std::str::from_utf8(&bytes)
        .map_err(|e| e.to_string())
        .and_then(LeaderEpochs::parse);
    let mut epochs = match parsed {
        Ok(e) => e,
        Err(reason) => {
            tracing::warn!(file = %path.display(), %reason,
                "rebuilding a damaged leader-epoch cache from the stored batches");
            metrics.corruptions.inc();
            let mut rebuilt = LeaderEpochs::default();
            for seg in segments {
                let size = seg.meta.read().size;
                scan(&*seg.file, 0, size, false, |b| {
                    // Epochs never go backwards in a replica's log; a batch that would is
                    // left to the divergence check with the leader.
                    let _ = rebuilt.assign(b.header.leader_epoch.max(0), b.header.base_offset);
                })
                .map_err(|e| JournalError::io(&seg.path, e))?;
            }
            rebuilt.truncate_from(end);
            write_file_atomic(fs, &path, rebuilt.encode().as_bytes())
                .map_err(|e| JournalError::io(&path, e))?;
            return Ok(rebuilt);
        }
    };
    if epochs.truncate_from(end) | epochs.truncate_before(log_start) {
        write_file_atomic(fs, &path, epochs.encode().as_bytes())
            .map_err(|e| JournalError::io(&path, e))?;
    }
    Ok(epochs)
}
