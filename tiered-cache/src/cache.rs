//! The block cache in front of object storage: objects are read in fixed-size blocks,
//! kept by foyer in memory and then in a local SSD file, so a block is fetched from
//! object storage once however often it is read. Objects are immutable and their keys
//! never reused, so a cached block is never stale and nothing is ever invalidated.

use std::io::{Read, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use foyer::{
    BlockEngineConfig, Code, DeviceBuilder, FsDeviceBuilder, HybridCache, HybridCacheBuilder,
    HybridCachePolicy, HybridCacheProperties, Location, RecoverMode, Source,
};
use futures_util::future::try_join_all;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use crate::metrics::TierMetrics;
use crate::{ObjectError, ObjectStore};

/// Sizes of the block cache: the `[journal.cache]` section of the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Bytes of blocks kept in memory.
    pub memory_bytes: u64,
    /// Bytes of blocks kept in the local SSD file (0: memory only).
    pub disk_bytes: u64,
    /// Directory of the SSD file (default: `cache` in the data directory).
    pub dir: Option<PathBuf>,
    /// Size of a block, the unit of ranged GETs and of caching.
    pub block_bytes: u64,
    /// Blocks a sequential reader fetches ahead of where it reads.
    pub read_ahead_blocks: u32,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            memory_bytes: 256 * 1024 * 1024,
            disk_bytes: 4 * 1024 * 1024 * 1024,
            dir: None,
            block_bytes: 4 * 1024 * 1024,
            read_ahead_blocks: 16,
        }
    }
}

/// A block of an object.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
struct BlockKey {
    object: String,
    block: u64,
}

impl Code for BlockKey {
    fn encode(&self, w: &mut impl Write) -> foyer::Result<()> {
        self.object.encode(w)?;
        self.block.encode(w)
    }

    fn decode(r: &mut impl Read) -> foyer::Result<Self> {
        Ok(BlockKey {
            object: String::decode(r)?,
            block: u64::decode(r)?,
        })
    }

    fn estimated_size(&self) -> usize {
        self.object.estimated_size() + 8
    }
}

/// Bytes inserted between two waits for the disk tier's writers: foyer drops disk writes
/// that find its queues full, so inserts are paced to what the disk absorbs.
const DISK_PACE_BYTES: u64 = 8 * 1024 * 1024;
/// Write buffers of the SSD tier (foyer keeps two per flusher).
const BUFFER_POOL_BYTES: usize = 64 * 1024 * 1024;
/// GETs issued by read-ahead at once, over all readers.
const PREFETCH_CONCURRENCY: usize = 16;

#[derive(Debug)]
struct Inner {
    store: ObjectStore,
    cache: HybridCache<BlockKey, Bytes>,
    block: u64,
    read_ahead: u32,
    disk: bool,
    inserted_since_wait: AtomicU64,
    prefetch: Arc<Semaphore>,
    /// Blocks read-ahead is fetching, so a block is never fetched ahead twice.
    prefetching: parking_lot::Mutex<std::collections::HashSet<BlockKey>>,
    metrics: TierMetrics,
}

/// Reads of object byte ranges through the cache; cheap to clone.
#[derive(Debug, Clone)]
pub struct BlockCache {
    inner: Arc<Inner>,
}

/// Blocks are put in memory; the one write to the SSD file is queued explicitly.
fn in_memory() -> HybridCacheProperties {
    HybridCacheProperties::default().with_location(Location::InMem)
}

fn cache_error(e: foyer::Error) -> ObjectError {
    ObjectError::Cache(e.to_string())
}

/// Shards of the memory tier: each gets an equal share of its bytes, and a shard whose
/// share is smaller than a block keeps its newest block anyway (the memory tier would then
/// hold up to one block per shard, past its budget). So each shard gets at least eight
/// blocks' worth, up to eight shards (foyer's default, for concurrency).
fn memory_shards(memory_bytes: u64, block_bytes: u64) -> usize {
    (memory_bytes / block_bytes.max(1) / 8).clamp(1, 8) as usize
}

impl BlockCache {
    /// Opens the cache; its SSD file lives in `config.dir` or else `default_dir`. Blocks
    /// cached by an earlier run are found again.
    pub async fn open(
        store: ObjectStore,
        config: &CacheConfig,
        default_dir: &Path,
        metrics: TierMetrics,
    ) -> Result<Self, ObjectError> {
        if config.block_bytes < 4096 || config.block_bytes > 64 * 1024 * 1024 {
            return Err(ObjectError::Config(format!(
                "cache.block_bytes must be 4096..=67108864, got {}",
                config.block_bytes
            )));
        }
        let builder = HybridCacheBuilder::new()
            .with_name("strata-blocks")
            .with_policy(HybridCachePolicy::WriteOnInsertion)
            .memory(config.memory_bytes as usize)
            .with_shards(memory_shards(config.memory_bytes, config.block_bytes))
            .with_weighter(|_k: &BlockKey, v: &Bytes| v.len())
            .storage();
        let disk = config.disk_bytes > 0;
        let cache = if disk {
            let dir = config
                .dir
                .clone()
                .unwrap_or_else(|| default_dir.to_path_buf());
            std::fs::create_dir_all(&dir).map_err(|e| {
                ObjectError::Config(format!("cache directory {}: {e}", dir.display()))
            })?;
            let device = FsDeviceBuilder::new(&dir)
                .with_capacity(config.disk_bytes as usize)
                .build()
                .map_err(cache_error)?;
            // Regions of four blocks (plus room for their headers and the region index),
            // buffers big enough for a burst of read-ahead between two paced waits.
            let region = (4 * config.block_bytes + (64 << 10))
                .clamp(4 << 20, (64 << 20) + (64 << 10)) as usize;
            builder
                .with_engine_config(
                    BlockEngineConfig::new(device)
                        .with_block_size(region)
                        .with_flushers(2)
                        .with_buffer_pool_size(BUFFER_POOL_BYTES)
                        .with_submit_queue_size_threshold(2 * BUFFER_POOL_BYTES),
                )
                .with_recover_mode(RecoverMode::Quiet)
                .build()
                .await
        } else {
            builder.build().await
        }
        .map_err(cache_error)?;
        Ok(BlockCache {
            inner: Arc::new(Inner {
                store,
                cache,
                block: config.block_bytes,
                read_ahead: config.read_ahead_blocks,
                disk,
                inserted_since_wait: AtomicU64::new(0),
                prefetch: Arc::new(Semaphore::new(PREFETCH_CONCURRENCY)),
                prefetching: parking_lot::Mutex::new(std::collections::HashSet::new()),
                metrics,
            }),
        })
    }

    /// The object store behind the cache.
    pub fn store(&self) -> &ObjectStore {
        &self.inner.store
    }

    /// The tier's metrics.
    pub fn metrics(&self) -> &TierMetrics {
        &self.inner.metrics
    }

    /// Block size in bytes.
    pub fn block_bytes(&self) -> u64 {
        self.inner.block
    }

    /// How far ahead of a sequential reader blocks are fetched, in bytes.
    pub fn read_ahead_bytes(&self) -> u64 {
        self.inner.block * u64::from(self.inner.read_ahead)
    }

    /// Bytes `range` of object `key`, which is `len` bytes long.
    pub async fn read(&self, key: &str, len: u64, range: Range<u64>) -> Result<Bytes, ObjectError> {
        let end = range.end.min(len);
        if range.start >= end {
            return Ok(Bytes::new());
        }
        let b = self.inner.block;
        let blocks = range.start / b..=(end - 1) / b;
        let first = *blocks.start();
        let fetched = try_join_all(blocks.map(|n| self.inner.clone().block(key, len, n))).await?;
        let start = (range.start - first * b) as usize;
        let want = (end - range.start) as usize;
        if let [one] = fetched.as_slice() {
            return Ok(one.slice(start..start + want));
        }
        let mut out = BytesMut::with_capacity(want);
        let mut skip = start;
        for block in &fetched {
            let take = (block.len() - skip).min(want - out.len());
            out.extend_from_slice(&block[skip..skip + take]);
            skip = 0;
        }
        Ok(out.freeze())
    }

    /// Starts fetching the blocks of `range` of object `key` into the cache without
    /// waiting for them (read-ahead). Blocks already cached or being fetched cost nothing.
    pub fn prefetch(&self, key: &str, len: u64, range: Range<u64>) {
        let end = range.end.min(len);
        if range.start >= end {
            return;
        }
        let b = self.inner.block;
        for n in range.start / b..=(end - 1) / b {
            let probe = BlockKey {
                object: key.to_string(),
                block: n,
            };
            if self.inner.cache.memory().contains(&probe)
                || !self.inner.prefetching.lock().insert(probe.clone())
            {
                continue;
            }
            let inner = self.inner.clone();
            let key = key.to_string();
            tokio::spawn(async move {
                if let Ok(_permit) = inner.prefetch.clone().acquire_owned().await
                    && let Err(e) = inner.clone().block(&key, len, n).await
                {
                    tracing::debug!(object = key, block = n, error = %e, "read-ahead failed");
                }
                inner.prefetching.lock().remove(&probe);
            });
        }
    }

    /// Puts the blocks of a just-uploaded object into the memory tier, so readers of
    /// recent data do not go back to object storage for it.
    pub fn insert_object(&self, key: &str, bytes: &Bytes) {
        let b = self.inner.block as usize;
        for (n, start) in (0..bytes.len()).step_by(b).enumerate() {
            let block = bytes.slice(start..(start + b).min(bytes.len()));
            let entry = self.inner.cache.insert_with_properties(
                BlockKey {
                    object: key.to_string(),
                    block: n as u64,
                },
                block,
                in_memory(),
            );
            if self.inner.disk {
                self.inner.cache.storage().enqueue(entry.piece(), false);
            }
        }
    }

    /// Bytes written to the SSD file so far.
    pub fn disk_written_bytes(&self) -> u64 {
        self.inner.cache.statistics().disk_write_bytes() as u64
    }

    /// Waits until blocks queued for the SSD file are written.
    pub async fn flush(&self) {
        self.inner.cache.storage().wait().await;
    }

    /// Waits for pending writes of the SSD file and closes it.
    pub async fn close(&self) -> Result<(), ObjectError> {
        self.inner.cache.close().await.map_err(cache_error)
    }
}

impl Inner {
    /// Block `n` of object `key`: from memory, the SSD file, or one ranged GET; concurrent
    /// requests for one block share a single GET.
    async fn block(self: Arc<Self>, key: &str, len: u64, n: u64) -> Result<Bytes, ObjectError> {
        let started = Instant::now();
        let range = n * self.block..((n + 1) * self.block).min(len);
        let bk = BlockKey {
            object: key.to_string(),
            block: n,
        };
        let store = self.store.clone();
        let object = key.to_string();
        let metrics = self.metrics.clone();
        let fetched = Arc::new(AtomicBool::new(false));
        let loader_ran = fetched.clone();
        let entry = self
            .cache
            .get_or_fetch(&bk, move || async move {
                let r = store.get_range(&object, range).await;
                metrics.observe_get(r.is_ok());
                loader_ran.store(r.is_ok(), Ordering::Relaxed);
                r.map(|v| (v, in_memory()))
            })
            .await
            .map_err(cache_error)?;
        let bytes = entry.value().clone();
        let tier = match entry.source() {
            Source::Memory => "memory",
            Source::Disk => "disk",
            Source::Outer => "object",
        };
        // Exactly one disk write per GET: by the caller whose loader ran (foyer would
        // otherwise queue a write for every caller and every memory hit).
        let write = tier == "object" && self.disk && fetched.load(Ordering::Relaxed);
        if write {
            self.cache.storage().enqueue(entry.piece(), false);
        }
        drop(entry);
        self.metrics.observe_read(tier, started, bytes.len());
        if write {
            let since = self
                .inserted_since_wait
                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
            if since >= DISK_PACE_BYTES {
                self.inserted_since_wait.store(0, Ordering::Relaxed);
                self.cache.storage().wait().await;
            }
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ObjectStoreConfig;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_memory_tier_keeps_to_its_budget_with_blocks_larger_than_a_default_shard()
    -> Result<(), ObjectError> {
        let dir = tempfile::tempdir().map_err(|e| ObjectError::Config(e.to_string()))?;
        let store = ObjectStore::open(&ObjectStoreConfig::Fs {
            root: dir.path().join("objects"),
        })?;
        // 64 KiB of memory in 16 KiB blocks: with eight shards of 8 KiB each, every shard
        // kept its newest block, up to 128 KiB in all.
        let config = CacheConfig {
            memory_bytes: 64 << 10,
            disk_bytes: 0,
            block_bytes: 16 << 10,
            ..CacheConfig::default()
        };
        let registry = prometheus::Registry::new();
        let cache =
            BlockCache::open(store, &config, dir.path(), TierMetrics::new(&registry)).await?;
        let body = Bytes::from(vec![7u8; 128 << 10]);
        for i in 0..16 {
            cache.insert_object(&format!("o/{i}"), &body);
            let used = cache.inner.cache.memory().usage();
            assert!(used <= 64 << 10, "{used} bytes in a 64 KiB memory tier");
        }
        Ok(())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ranges_come_from_blocks_and_blocks_are_fetched_once() -> Result<(), ObjectError> {
        let dir = tempfile::tempdir().map_err(|e| ObjectError::Config(e.to_string()))?;
        let store = ObjectStore::open(&ObjectStoreConfig::Fs {
            root: dir.path().join("objects"),
        })?;
        let body = Bytes::from(
            (0..100_000u32)
                .map(|i| (i % 251) as u8)
                .collect::<Vec<u8>>(),
        );
        store.put("o/a", body.clone()).await?;
        let registry = prometheus::Registry::new();
        let config = CacheConfig {
            memory_bytes: 1 << 20,
            disk_bytes: 16 << 20,
            block_bytes: 4096,
            ..CacheConfig::default()
        };
        let cache = BlockCache::open(
            store,
            &config,
            &dir.path().join("cache"),
            TierMetrics::new(&registry),
        )
        .await?;
        for range in [
            0..10,
            4090..4200,
            5000..100_000,
            99_999..100_000,
            0..100_000,
        ] {
            let got = cache.read("o/a", 100_000, range.clone()).await?;
            assert_eq!(got, body.slice(range.start as usize..range.end as usize));
        }
        // 25 blocks of 4 KiB: each fetched from the store once.
        let m = cache.metrics();
        assert_eq!(m.gets.get(), 25);
        assert!(m.reads.with_label_values(&["memory"]).get() > 0);
        assert_eq!(cache.read("o/a", 100_000, 200_000..300_000).await?.len(), 0);
        assert!(cache.read("o/missing", 10, 0..10).await.is_err());
        cache.close().await
    }
}
