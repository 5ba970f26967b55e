//! The `rocksdb` storage class: many small partitions share one RocksDB instance. Each
//! batch is one key `d | stream | 0 | partition | base offset` (big-endian, so keys sort
//! by offset); `m | stream | 0 | partition` holds the log-start offset.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use parking_lot::Mutex;
use rocksdb::{DB, Options, WriteBatch};

use crate::batch::{Batch, BatchHeader, PendingBatch, first_offset_at_time};
use crate::config::{FsyncPolicy, StreamConfig};
use crate::error::{JournalError, Result};
use crate::group_commit::{GroupCommit, SyncOnce};
use crate::log::{Appended, Offsets, PartitionInfo, PartitionLog, Removed, SegmentInfo};
use crate::metrics::{ClassMetrics, JournalMetrics};
use crate::notify::EndWatch;

const CLASS: &str = "rocksdb";

/// The shared RocksDB instance.
#[derive(Debug)]
pub struct RocksStore {
    db: DB,
    path: PathBuf,
}

impl RocksStore {
    /// Opens (creating) the store at `path`.
    pub fn open(path: &Path) -> Result<Arc<RocksStore>> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        let db = DB::open(&opts, path)?;
        Ok(Arc::new(RocksStore {
            db,
            path: path.to_path_buf(),
        }))
    }

    /// Opens an existing store without writing to it (offline tools).
    pub fn open_read_only(path: &Path) -> Result<Arc<RocksStore>> {
        let db = DB::open_for_read_only(&Options::default(), path, false)?;
        Ok(Arc::new(RocksStore {
            db,
            path: path.to_path_buf(),
        }))
    }

    /// Every stored batch of one partition, in offset order, each as `Ok(batch)` or the
    /// reason it failed its checks.
    pub fn scan_partition(
        &self,
        stream: &str,
        partition: u32,
    ) -> Vec<(u64, std::result::Result<Batch, String>)> {
        let prefix = prefix(b'd', stream, partition);
        let mut it = self.db.raw_iterator();
        it.seek(&prefix);
        let mut out = Vec::new();
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            if !k.starts_with(&prefix) {
                break;
            }
            let base = key_offset(k);
            out.push((base, Batch::from_bytes(bytes::Bytes::copy_from_slice(v))));
            it.next();
        }
        out
    }

    /// Removes every key of one partition (stream deletion).
    pub fn delete_partition(&self, stream: &str, partition: u32) -> Result<()> {
        let data = prefix(b'd', stream, partition);
        let mut wb = WriteBatch::default();
        wb.delete_range(data_key(&data, 0), data_key(&data, u64::MAX));
        wb.delete(prefix_meta(stream, partition));
        self.db.write(wb)?;
        Ok(())
    }

    /// Location string used in errors about this store.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn prefix(kind: u8, stream: &str, partition: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(stream.len() + 6);
    k.push(kind);
    k.extend_from_slice(stream.as_bytes());
    k.push(0);
    k.extend_from_slice(&partition.to_be_bytes());
    k
}

fn data_key(prefix: &[u8], offset: u64) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(&offset.to_be_bytes());
    k
}

fn key_offset(key: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    if key.len() >= 8 {
        b.copy_from_slice(&key[key.len() - 8..]);
    }
    u64::from_be_bytes(b)
}

#[derive(Debug)]
struct State {
    next_offset: u64,
    log_start: u64,
    bytes: u64,
    closed: bool,
}

/// A partition stored in the shared RocksDB instance.
#[derive(Debug)]
pub(crate) struct RocksLog {
    store: Arc<RocksStore>,
    config: StreamConfig,
    prefix: Vec<u8>,
    meta_key: Vec<u8>,
    state: Mutex<State>,
    commit: GroupCommit,
    watch: EndWatch,
    metrics: JournalMetrics,
    class: ClassMetrics,
}

impl RocksLog {
    pub(crate) fn open(
        store: Arc<RocksStore>,
        config: StreamConfig,
        partition: u32,
        metrics: JournalMetrics,
    ) -> Result<RocksLog> {
        let prefix = prefix(b'd', &config.name, partition);
        let meta_key = prefix_meta(&config.name, partition);
        let mut it = store.db.raw_iterator();
        it.seek(&prefix);
        let mut first = None;
        let mut next_offset = 0;
        let mut bytes = 0;
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            if !k.starts_with(&prefix) {
                break;
            }
            first.get_or_insert(key_offset(k));
            bytes += v.len() as u64;
            next_offset = BatchHeader::parse(v)
                .map(|h| h.next_offset())
                .map_err(|reason| JournalError::Corruption {
                    file: store.path.clone(),
                    position: key_offset(k),
                    reason,
                })?;
            it.next();
        }
        it.status()?;
        drop(it);
        let recorded = store
            .db
            .get(&meta_key)?
            .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
            .map(u64::from_be_bytes);
        let next_offset = next_offset.max(recorded.unwrap_or(0));
        let log_start = recorded.or(first).unwrap_or(next_offset).min(next_offset);
        Ok(RocksLog {
            store,
            prefix,
            meta_key,
            state: Mutex::new(State {
                next_offset,
                log_start,
                bytes,
                closed: false,
            }),
            commit: GroupCommit::new(next_offset),
            watch: EndWatch::new(next_offset),
            config,
            class: metrics.class(CLASS),
            metrics,
        })
    }

    fn always(&self) -> bool {
        self.config.fsync == FsyncPolicy::Always
    }

    fn visible_end(&self, st: &State) -> u64 {
        if self.always() {
            self.commit.durable().min(st.next_offset)
        } else {
            st.next_offset
        }
    }

    /// Deletes batches wholly below `new_start` and records it as the log start.
    fn drop_below(&self, st: &mut State, new_start: u64) -> Result<Removed> {
        let mut removed = Removed::default();
        let mut it = self.store.db.raw_iterator();
        it.seek(&self.prefix);
        let mut keep_from = None;
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            if !k.starts_with(&self.prefix) {
                break;
            }
            let next = BatchHeader::parse(v).map(|h| h.next_offset()).unwrap_or(0);
            if next > new_start {
                keep_from = Some(key_offset(k));
                break;
            }
            removed.units += 1;
            removed.bytes += v.len() as u64;
            it.next();
        }
        let end = keep_from.unwrap_or(u64::MAX);
        let mut wb = WriteBatch::default();
        wb.delete_range(data_key(&self.prefix, 0), data_key(&self.prefix, end));
        wb.put(&self.meta_key, new_start.to_be_bytes());
        self.store.db.write(wb)?;
        st.log_start = st.log_start.max(new_start);
        st.bytes -= removed.bytes.min(st.bytes);
        self.metrics.retention_removed.inc_by(removed.units);
        self.metrics.retention_removed_bytes.inc_by(removed.bytes);
        Ok(removed)
    }

    fn read_blocking(&self, from: u64, visible: u64, max_bytes: usize) -> Result<Vec<Batch>> {
        let mut it = self.store.db.raw_iterator();
        it.seek_for_prev(data_key(&self.prefix, from));
        if !it.key().is_some_and(|k| k.starts_with(&self.prefix)) {
            it.seek(data_key(&self.prefix, from));
        }
        let mut out = Vec::new();
        let mut used = 0;
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            if !k.starts_with(&self.prefix) {
                break;
            }
            let base = key_offset(k);
            if base >= visible || (!out.is_empty() && used + v.len() > max_bytes) {
                break;
            }
            let batch = Batch::from_bytes(bytes::Bytes::copy_from_slice(v)).map_err(|reason| {
                self.metrics.corruptions.inc();
                JournalError::Corruption {
                    file: self.store.path.clone(),
                    position: base,
                    reason,
                }
            })?;
            if batch.last_offset() >= from {
                used += batch.len();
                out.push(batch);
                if used >= max_bytes {
                    break;
                }
            }
            it.next();
        }
        it.status()?;
        Ok(out)
    }
}

fn prefix_meta(stream: &str, partition: u32) -> Vec<u8> {
    prefix(b'm', stream, partition)
}

impl SyncOnce for RocksLog {
    async fn sync_once(&self) -> Result<u64> {
        let target = self.state.lock().next_offset;
        let epoch = self.commit.epoch();
        let store = self.store.clone();
        let started = Instant::now();
        let r = tokio::task::spawn_blocking(move || store.db.flush_wal(true))
            .await
            .map_err(|e| JournalError::RocksDb(e.to_string()))
            .and_then(|r| r.map_err(JournalError::from));
        self.metrics
            .fsync_seconds
            .observe(started.elapsed().as_secs_f64());
        match r {
            Ok(()) => {
                if self.always() {
                    self.watch.publish(target.max(self.watch.end()));
                }
                Ok(target)
            }
            Err(e) => {
                self.metrics.fsync_errors.inc();
                if self.always() && self.commit.epoch() == epoch {
                    let mut st = self.state.lock();
                    let durable = self.commit.durable();
                    let mut wb = WriteBatch::default();
                    wb.delete_range(
                        data_key(&self.prefix, durable),
                        data_key(&self.prefix, u64::MAX),
                    );
                    if let Err(e2) = self.store.db.write(wb) {
                        tracing::error!(error = %e2, "rollback after a failed WAL sync failed");
                        st.closed = true;
                    }
                    st.next_offset = durable;
                    self.commit.rollback();
                }
                Err(e)
            }
        }
    }
}

#[async_trait]
impl PartitionLog for RocksLog {
    async fn append(&self, batch: PendingBatch) -> Result<Appended> {
        let records = batch.record_count();
        let (appended, end, epoch) = {
            let mut st = self.state.lock();
            if st.closed {
                return Err(JournalError::Closed);
            }
            let (header, bytes) = batch.seal(st.next_offset);
            if let Err(e) = self
                .store
                .db
                .put(data_key(&self.prefix, header.base_offset), &bytes)
            {
                self.class.append_errors.inc();
                return Err(e.into());
            }
            st.next_offset = header.next_offset();
            st.bytes += bytes.len() as u64;
            self.class.append_bytes.inc_by(bytes.len() as u64);
            if !self.always() {
                self.watch.publish(st.next_offset);
            }
            let a = Appended {
                base_offset: header.base_offset,
                last_offset: header.last_offset(),
            };
            (a, st.next_offset, self.commit.epoch())
        };
        self.commit
            .acknowledge(self.always(), end, epoch, self, &self.class, records)
            .await?;
        Ok(appended)
    }

    async fn read(&self, from: u64, max_bytes: usize) -> Result<Vec<Batch>> {
        let visible = {
            let st = self.state.lock();
            let visible = self.visible_end(&st);
            if from < st.log_start || from > visible {
                return Err(JournalError::OffsetOutOfRange {
                    offset: from,
                    log_start: st.log_start,
                    end: visible,
                });
            }
            visible
        };
        if from == visible {
            return Ok(Vec::new());
        }
        // RocksDB reads are served from its block cache or a few block reads; done inline.
        let out = self.read_blocking(from, visible, max_bytes)?;
        let bytes: usize = out.iter().map(Batch::len).sum();
        self.class.reads.inc_by(out.len() as u64);
        self.class.read_bytes.inc_by(bytes as u64);
        Ok(out)
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
        let Offsets { log_start, end } = self.offsets();
        let mut from = log_start;
        while from < end {
            let batches = self.read(from, 1 << 20).await?;
            let Some(last) = batches.last() else { break };
            from = last.last_offset() + 1;
            if let Some(found) = first_offset_at_time(&batches, timestamp_ms, log_start)? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    async fn delete_before(&self, offset: u64) -> Result<u64> {
        let mut st = self.state.lock();
        let target = offset.min(st.next_offset);
        if target > st.log_start {
            self.drop_below(&mut st, target)?;
        }
        Ok(st.log_start)
    }

    async fn enforce_retention(&self, now_ms: i64) -> Result<Removed> {
        let retention = self.config.retention;
        if retention.max_age_ms.is_none() && retention.max_bytes.is_none() {
            return Ok(Removed::default());
        }
        let mut st = self.state.lock();
        let cutoff = retention
            .max_age_ms
            .map(|a| now_ms.saturating_sub(a as i64));
        let mut new_start = st.log_start;
        let mut total = st.bytes;
        let mut it = self.store.db.raw_iterator();
        it.seek(&self.prefix);
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            if !k.starts_with(&self.prefix) {
                break;
            }
            let Ok(h) = BatchHeader::parse(v) else { break };
            let too_old = cutoff.is_some_and(|c| h.max_timestamp < c);
            let over = retention
                .max_bytes
                .is_some_and(|m| total.saturating_sub(v.len() as u64) >= m);
            if !(too_old || over) || h.next_offset() >= st.next_offset {
                break;
            }
            total -= v.len() as u64;
            new_start = new_start.max(h.next_offset());
            it.next();
        }
        drop(it);
        if new_start > st.log_start {
            return self.drop_below(&mut st, new_start);
        }
        Ok(Removed::default())
    }

    async fn sync(&self) -> Result<()> {
        let (end, epoch) = (self.state.lock().next_offset, self.commit.epoch());
        if self.always() {
            return self.commit.wait_durable(end, epoch, self).await;
        }
        self.sync_once().await.map(|_| ())
    }

    async fn close(&self) -> Result<()> {
        if self.state.lock().closed {
            return Ok(());
        }
        let r = self.sync().await;
        self.state.lock().closed = true;
        self.watch.close();
        r
    }

    fn describe(&self) -> PartitionInfo {
        let st = self.state.lock();
        let offsets = Offsets {
            log_start: st.log_start,
            end: self.visible_end(&st),
        };
        PartitionInfo {
            offsets,
            size: st.bytes,
            segments: vec![SegmentInfo {
                base_offset: st.log_start,
                end_offset: st.next_offset,
                size: st.bytes,
                max_timestamp: None,
                location: self.store.path.clone(),
                remote: None,
            }],
        }
    }
}
