//! The journal: a data directory of streams, their definitions and maintenance.
//!
//! ```text
//! <dir>/streams/<name>/stream.json       the definition
//! <dir>/streams/<name>/<partition>/      segment files (segment class)
//! <dir>/rocksdb/                         the shared store of the rocksdb class
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[cfg(feature = "rocksdb")]
use parking_lot::Mutex;
use parking_lot::RwLock;
use tokio::sync::watch;
use tracing::Instrument;

use crate::config::{FsyncPolicy, JournalConfig, StorageClass, StreamConfig};
use crate::error::{JournalError, Result};
use crate::fs::{FileSystem, StdFs, read_file, write_file_atomic};
use crate::log::PartitionLog;
use crate::manifests::{ManifestCatalog, Recorded};
use crate::memory::MemoryLog;
use crate::metrics::JournalMetrics;
#[cfg(feature = "rocksdb")]
use crate::rocks::{RocksLog, RocksStore};
use crate::segment::{Remote, SegmentLog};
use crate::stream::Stream;
use strata_batch::now_ms;
use strata_tiered::{BlockCache, ObjectStore, TierMetrics};

/// File name of a stream definition.
pub const STREAM_FILE: &str = "stream.json";
/// Directory of stream directories.
pub const STREAMS_DIR: &str = "streams";
/// Directory of the shared RocksDB store.
pub const ROCKSDB_DIR: &str = "rocksdb";
/// Default directory of the block cache's SSD file.
pub const CACHE_DIR: &str = "cache";

/// How to open a journal.
#[derive(Debug, Clone)]
pub struct JournalOptions {
    /// Data directory.
    pub dir: PathBuf,
    /// Defaults and cache sizes.
    pub config: JournalConfig,
    /// Registry the metrics go to.
    pub registry: prometheus::Registry,
    /// The file-system seam (the real one unless a test injects faults).
    pub fs: Arc<dyn FileSystem>,
    /// Object storage behind its block cache (see [`JournalOptions::with_object_store`]).
    pub tier: Option<BlockCache>,
    /// Where uploads are recorded besides each partition's manifest file, to outlive this
    /// node's disk (none: the files are all there is).
    pub manifests: Option<Arc<dyn ManifestCatalog>>,
}

impl JournalOptions {
    /// Options with the real file system.
    pub fn new(dir: PathBuf, config: JournalConfig, registry: prometheus::Registry) -> Self {
        JournalOptions {
            dir,
            config,
            registry,
            fs: Arc::new(StdFs),
            tier: None,
            manifests: None,
        }
    }

    /// Connects the object storage the configuration names (if any) and opens the block
    /// cache in front of it.
    pub async fn with_object_store(mut self) -> Result<Self> {
        let Some(store_config) = &self.config.object_store else {
            return Ok(self);
        };
        let store = ObjectStore::open(store_config)
            .map_err(|e| JournalError::InvalidConfig(e.to_string()))?;
        let cache = BlockCache::open(
            store,
            &self.config.cache,
            &self.dir.join(CACHE_DIR),
            TierMetrics::new(&self.registry),
        )
        .await
        .map_err(|e| JournalError::InvalidConfig(e.to_string()))?;
        self.tier = Some(cache);
        Ok(self)
    }
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    fs: Arc<dyn FileSystem>,
    config: JournalConfig,
    metrics: JournalMetrics,
    tier: Option<BlockCache>,
    manifests: Option<Arc<dyn ManifestCatalog>>,
    streams: RwLock<BTreeMap<String, Arc<Stream>>>,
    /// Streams found on disk that could not be opened, with the reason: reported, not
    /// served, and never created anew over what is there.
    failed: RwLock<BTreeMap<String, String>>,
    #[cfg(feature = "rocksdb")]
    rocks: Mutex<Option<Arc<RocksStore>>>,
    /// Serializes stream creation and deletion.
    ddl: tokio::sync::Mutex<()>,
    shutdown: watch::Sender<bool>,
}

/// The storage engine. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Journal {
    inner: Arc<Inner>,
}

impl Journal {
    /// Opens the journal in `options.dir`, recovering every stream found there.
    pub fn open(options: JournalOptions) -> Result<Journal> {
        let started = Instant::now();
        let JournalOptions {
            dir,
            config,
            registry,
            fs,
            tier,
            manifests,
        } = options;
        let streams_dir = dir.join(STREAMS_DIR);
        fs.create_dir_all(&streams_dir)
            .map_err(|e| JournalError::io(&streams_dir, e))?;
        let metrics = JournalMetrics::new(&registry);
        let journal = Journal {
            inner: Arc::new(Inner {
                dir,
                fs,
                config,
                metrics,
                tier,
                manifests,
                streams: RwLock::new(BTreeMap::new()),
                failed: RwLock::new(BTreeMap::new()),
                #[cfg(feature = "rocksdb")]
                rocks: Mutex::new(None),
                ddl: tokio::sync::Mutex::new(()),
                shutdown: watch::Sender::new(false),
            }),
        };
        let fs = &*journal.inner.fs;
        for path in fs
            .read_dir(&streams_dir)
            .map_err(|e| JournalError::io(&streams_dir, e))?
        {
            // What a crash left of a deletion.
            if path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(".deleted-"))
            {
                let _ = fs.remove_dir_all(&path);
            }
        }
        // One stream that cannot open (a damaged definition, no file descriptors left, an
        // unreadable directory) must not keep the node from serving the others: it is
        // logged, counted and listed by `failed_streams`, and its files are left as they
        // are for an operator to look at.
        for found in scan_definitions(fs, &journal.inner.dir)? {
            let opened = found.config.and_then(|config| journal.open_stream(config));
            match opened {
                Ok(stream) => {
                    journal
                        .inner
                        .streams
                        .write()
                        .insert(stream.name().to_string(), stream);
                }
                Err(e) => {
                    tracing::error!(stream = found.name, error = %e, "stream cannot be opened; serving the others");
                    journal
                        .inner
                        .failed
                        .write()
                        .insert(found.name, e.to_string());
                }
            }
        }
        let m = &journal.inner.metrics;
        m.streams.set(journal.inner.streams.read().len() as i64);
        m.streams_failed
            .set(journal.inner.failed.read().len() as i64);
        m.open_seconds.observe(started.elapsed().as_secs_f64());
        Ok(journal)
    }

    /// The journal's settings.
    pub fn config(&self) -> &JournalConfig {
        &self.inner.config
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The journal's metrics.
    pub fn metrics(&self) -> &JournalMetrics {
        &self.inner.metrics
    }

    /// A stream definition with this journal's defaults.
    pub fn stream_config(&self, name: &str, partitions: u32) -> StreamConfig {
        StreamConfig::new(name, partitions, &self.inner.config)
    }

    fn stream_dir(&self, name: &str) -> PathBuf {
        self.inner.dir.join(STREAMS_DIR).join(name)
    }

    /// The directory of partition `partition` of stream `name` (classes that keep files).
    pub fn partition_dir(&self, name: &str, partition: u32) -> PathBuf {
        self.stream_dir(name).join(partition.to_string())
    }

    #[cfg(feature = "rocksdb")]
    fn rocks(&self) -> Result<Arc<RocksStore>> {
        let mut slot = self.inner.rocks.lock();
        if let Some(store) = &*slot {
            return Ok(store.clone());
        }
        let store = RocksStore::open(&self.inner.dir.join(ROCKSDB_DIR))?;
        *slot = Some(store.clone());
        Ok(store)
    }

    fn open_stream(&self, config: StreamConfig) -> Result<Arc<Stream>> {
        config.validate()?;
        let partitions = (0..config.partitions)
            .map(|p| self.open_partition(&config, p))
            .collect::<Result<Vec<_>>>()?;
        Ok(Arc::new(Stream::new(config, partitions)))
    }

    fn open_partition(&self, config: &StreamConfig, p: u32) -> Result<Arc<dyn PartitionLog>> {
        let inner = &self.inner;
        // Every event about this partition (recovery at open, offload, failed writes)
        // carries its stream and partition. At warn level, so that the span exists
        // whenever its warnings and errors are logged.
        let span = tracing::warn_span!("partition", stream = %config.name, partition = p);
        let _opening = span.enter();
        Ok(match config.class {
            StorageClass::Memory => {
                Arc::new(MemoryLog::new(config.clone(), p, inner.metrics.clone()))
            }
            StorageClass::Segment | StorageClass::Object => {
                let dir = self.partition_dir(&config.name, p);
                let remote = match (&inner.tier, config.offloads()) {
                    (Some(cache), true) => Some(Remote::open(
                        cache.clone(),
                        format!("{}{p}/", remote_prefix(&config.name)),
                        &dir,
                        config.effective_offload(),
                        inner
                            .manifests
                            .clone()
                            .map(|c| Recorded::new(c, &config.name, p)),
                    )?),
                    _ => None,
                };
                let log = Arc::new(SegmentLog::open(
                    inner.fs.clone(),
                    dir,
                    config.clone(),
                    inner.config.tail_cache_bytes,
                    inner.metrics.clone(),
                    remote,
                    span.clone(),
                )?);
                // A copy of a replicated partition follows until its replica says it
                // leads: only the leader uploads and deletes objects.
                if inner
                    .manifests
                    .as_ref()
                    .is_some_and(|c| c.replicated(&config.name, p))
                {
                    log.set_offload_duty(crate::log::OffloadDuty::Follower);
                }
                if config.offloads() {
                    match tokio::runtime::Handle::try_current() {
                        Ok(rt) => {
                            rt.spawn(log.clone().run_offload().instrument(span.clone()));
                        }
                        Err(_) => tracing::warn!(
                            stream = config.name,
                            "no async runtime: offload does not run"
                        ),
                    }
                }
                log
            }
            #[cfg(not(feature = "rocksdb"))]
            StorageClass::Rocksdb => return Err(no_rocksdb()),
            #[cfg(feature = "rocksdb")]
            StorageClass::Rocksdb => Arc::new(RocksLog::open(
                self.rocks()?,
                config.clone(),
                p,
                inner.metrics.clone(),
            )?),
        })
    }

    /// Grows stream `name` to `partitions` partitions (never shrinks it); the new
    /// definition is durable when this returns. Handles to the stream taken earlier keep
    /// the old partition list; [`Journal::stream`] returns the new one.
    pub async fn add_partitions(&self, name: &str, partitions: u32) -> Result<Arc<Stream>> {
        let _ddl = self.inner.ddl.lock().await;
        let old = self.stream(name)?;
        let have = old.config().partitions;
        if partitions <= have {
            return Err(JournalError::InvalidConfig(format!(
                "stream {name:?} has {have} partitions; it can only grow"
            )));
        }
        let mut config = old.config().clone();
        config.partitions = partitions;
        config.validate()?;
        let mut logs: Vec<Arc<dyn PartitionLog>> = old.partitions().to_vec();
        for p in have..partitions {
            logs.push(self.open_partition(&config, p)?);
        }
        let json = serde_json::to_vec_pretty(&config)
            .map_err(|e| JournalError::InvalidConfig(e.to_string()))?;
        let def = self.stream_dir(name).join(STREAM_FILE);
        write_file_atomic(&*self.inner.fs, &def, &json).map_err(|e| JournalError::io(&def, e))?;
        let stream = Arc::new(Stream::new(config, logs));
        self.inner
            .streams
            .write()
            .insert(name.to_string(), stream.clone());
        Ok(stream)
    }

    /// Streams found on disk at open that could not be opened, with the reason.
    pub fn failed_streams(&self) -> Vec<(String, String)> {
        let failed = self.inner.failed.read();
        failed.iter().map(|(n, e)| (n.clone(), e.clone())).collect()
    }

    /// Creates a stream; its definition is durable when this returns.
    pub async fn create_stream(&self, config: StreamConfig) -> Result<Arc<Stream>> {
        config.validate()?;
        let _ddl = self.inner.ddl.lock().await;
        // A stream that failed to open still has its files: never created over them.
        if self.inner.streams.read().contains_key(&config.name)
            || self.inner.failed.read().contains_key(&config.name)
        {
            return Err(JournalError::StreamExists(config.name));
        }
        let dir = self.stream_dir(&config.name);
        let fs = &*self.inner.fs;
        fs.create_dir_all(&dir)
            .map_err(|e| JournalError::io(&dir, e))?;
        let json = serde_json::to_vec_pretty(&config)
            .map_err(|e| JournalError::InvalidConfig(e.to_string()))?;
        let def = dir.join(STREAM_FILE);
        write_file_atomic(fs, &def, &json).map_err(|e| JournalError::io(&def, e))?;
        let parent = self.inner.dir.join(STREAMS_DIR);
        fs.sync_dir(&parent)
            .map_err(|e| JournalError::io(&parent, e))?;
        let stream = self.open_stream(config)?;
        let mut streams = self.inner.streams.write();
        streams.insert(stream.name().to_string(), stream.clone());
        self.inner.metrics.streams.set(streams.len() as i64);
        Ok(stream)
    }

    /// The stream called `name`.
    pub fn stream(&self, name: &str) -> Result<Arc<Stream>> {
        self.inner
            .streams
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| JournalError::UnknownStream(name.to_string()))
    }

    /// Every stream's definition, by name.
    pub fn list_streams(&self) -> Vec<StreamConfig> {
        self.inner
            .streams
            .read()
            .values()
            .map(|s| s.config().clone())
            .collect()
    }

    /// Deletes a stream and all its data.
    pub async fn delete_stream(&self, name: &str) -> Result<()> {
        let _ddl = self.inner.ddl.lock().await;
        let stream = self.stream(name)?;
        self.inner.streams.write().remove(name);
        stream.close().await?;
        #[cfg(feature = "rocksdb")]
        if stream.config().class == StorageClass::Rocksdb {
            for p in 0..stream.config().partitions {
                self.rocks()?.delete_partition(name, p)?;
            }
        }
        if stream.config().offloads()
            && let Some(cache) = &self.inner.tier
        {
            // Best effort: objects left behind are orphans to a stream of the same name
            // and deleted when it opens.
            let prefix = remote_prefix(name);
            match cache.store().list(&prefix).await {
                Ok(keys) => {
                    for key in keys {
                        if let Err(e) = cache.store().delete(&key).await {
                            tracing::warn!(object = key, error = %e, "could not delete an object");
                        }
                    }
                }
                Err(e) => tracing::warn!(stream = name, error = %e, "could not list objects"),
            }
        }
        let fs = &*self.inner.fs;
        let dir = self.stream_dir(name);
        let doomed = self
            .inner
            .dir
            .join(STREAMS_DIR)
            .join(format!(".deleted-{name}-{}", now_ms()));
        fs.rename(&dir, &doomed)
            .map_err(|e| JournalError::io(&dir, e))?;
        let parent = self.inner.dir.join(STREAMS_DIR);
        fs.sync_dir(&parent)
            .map_err(|e| JournalError::io(&parent, e))?;
        fs.remove_dir_all(&doomed)
            .map_err(|e| JournalError::io(&doomed, e))?;
        self.inner
            .metrics
            .streams
            .set(self.inner.streams.read().len() as i64);
        Ok(())
    }

    fn all_streams(&self) -> Vec<Arc<Stream>> {
        self.inner.streams.read().values().cloned().collect()
    }

    /// Applies retention and age-based rolls to every partition as of `now_ms`.
    pub async fn enforce_retention(&self, now_ms: i64) -> Result<()> {
        for stream in self.all_streams() {
            for p in stream.partitions() {
                p.enforce_retention(now_ms).await?;
            }
        }
        Ok(())
    }

    /// fsyncs every partition of every stream with an `interval` policy.
    async fn sync_interval_streams(&self, mut due: impl FnMut(u64) -> bool) {
        for stream in self.all_streams() {
            let FsyncPolicy::Interval(ms) = stream.config().fsync else {
                continue;
            };
            if !due(ms) {
                continue;
            }
            for p in stream.partitions() {
                if let Err(e) = p.sync().await {
                    tracing::error!(stream = stream.name(), error = %e, "interval fsync failed");
                }
            }
        }
    }

    /// Spawns the background tasks: interval fsyncs and retention. They stop at `close`.
    pub fn start_maintenance(&self) -> tokio::task::JoinHandle<()> {
        let journal = self.clone();
        let mut shutdown = self.inner.shutdown.subscribe();
        tokio::spawn(async move {
            let tick = Duration::from_millis(10);
            let retention_every =
                Duration::from_millis(journal.inner.config.maintenance_interval_ms.max(1));
            let started = Instant::now();
            let mut last_retention = Instant::now();
            let mut last_sync: BTreeMap<u64, Instant> = BTreeMap::new();
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(tick) => {}
                    _ = shutdown.wait_for(|s| *s) => break,
                }
                let now = Instant::now();
                journal
                    .sync_interval_streams(|ms| {
                        let last = last_sync.entry(ms).or_insert(started);
                        let due = now.duration_since(*last) >= Duration::from_millis(ms);
                        if due {
                            *last = now;
                        }
                        due
                    })
                    .await;
                if now.duration_since(last_retention) >= retention_every {
                    last_retention = now;
                    if let Err(e) = journal.enforce_retention(now_ms()).await {
                        tracing::error!(error = %e, "retention failed");
                    }
                }
            }
        })
    }

    /// Stops maintenance, then syncs and closes every partition.
    pub async fn close(&self) -> Result<()> {
        self.inner.shutdown.send_replace(true);
        let mut first_err = None;
        for stream in self.all_streams() {
            if let Err(e) = stream.close().await {
                first_err.get_or_insert(e);
            }
        }
        // Dropping the streams and the store handle releases RocksDB's lock once the
        // caller's own stream handles are gone.
        self.inner.streams.write().clear();
        #[cfg(feature = "rocksdb")]
        self.inner.rocks.lock().take();
        if let Some(cache) = &self.inner.tier
            && let Err(e) = cache.close().await
        {
            tracing::warn!(error = %e, "closing the block cache failed");
        }
        first_err.map_or(Ok(()), Err)
    }

    /// The block cache in front of object storage, when one is configured.
    pub fn tier(&self) -> Option<&BlockCache> {
        self.inner.tier.as_ref()
    }
}

/// Key prefix of a stream's objects.
pub fn remote_prefix(stream: &str) -> String {
    format!("{STREAMS_DIR}/{stream}/")
}

/// The error for a `rocksdb`-class stream in a build without the `rocksdb` feature.
#[cfg(not(feature = "rocksdb"))]
pub(crate) fn no_rocksdb() -> JournalError {
    JournalError::InvalidConfig("this build has no rocksdb storage class".into())
}

/// The definitions of every stream in the journal at `dir`, by name. Directories starting
/// with a dot (deleted streams) and directories without a definition are skipped; the
/// first definition that cannot be read is an error.
pub fn list_definitions(fs: &dyn FileSystem, dir: &Path) -> Result<Vec<StreamConfig>> {
    scan_definitions(fs, dir)?
        .into_iter()
        .map(|found| found.config)
        .collect()
}

/// A stream directory found in the journal and what reading its definition gave.
#[derive(Debug)]
pub struct FoundDefinition {
    /// The directory's name (the stream's name when the definition is sound).
    pub name: String,
    /// The definition, or why it could not be read.
    pub config: Result<StreamConfig>,
}

/// Every stream directory of the journal at `dir` with its definition or the error reading
/// it, by name. Only a journal directory that cannot be listed is an error.
pub fn scan_definitions(fs: &dyn FileSystem, dir: &Path) -> Result<Vec<FoundDefinition>> {
    let streams = dir.join(STREAMS_DIR);
    let mut out = Vec::new();
    for path in fs
        .read_dir(&streams)
        .map_err(|e| JournalError::io(&streams, e))?
    {
        let def = path.join(STREAM_FILE);
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.starts_with('.') || !fs.exists(&def) {
            continue;
        }
        out.push(FoundDefinition {
            name,
            config: read_definition(fs, &def),
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Reads a stream definition file.
pub fn read_definition(fs: &dyn FileSystem, path: &Path) -> Result<StreamConfig> {
    let raw = read_file(fs, path).map_err(|e| JournalError::io(path, e))?;
    serde_json::from_slice(&raw).map_err(|e| JournalError::Corruption {
        file: path.to_path_buf(),
        position: 0,
        reason: format!("stream definition does not parse: {e}"),
    })
}
