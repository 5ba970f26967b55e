//! `strata bench tiered`: the object storage tier against a real S3-compatible server.
//!
//! - `replay`: writes a partition whose sealed segments are offloaded and dropped
//!   locally, then replays it from object storage with a cold block cache and again with
//!   the cache warm; prints the objects so a plain client can GET the same bytes.
//! - `object`: appends to an `object`-class partition with a batching setting and reports
//!   throughput, acknowledgement latency and PUT requests per GB.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Args, Subcommand};
use serde_json::json;
use strata_journal::{
    BatchBuilder, CacheConfig, Codec, FsyncPolicy, Journal, JournalConfig, JournalOptions,
    ObjectAck, ObjectStoreConfig, OffloadSettings, PartitionLog, StorageClass, now_ms,
};

use super::report::{Latency, process_cpu};

/// Where the S3-compatible server is.
#[derive(Args, Debug, Clone)]
pub struct S3Args {
    /// Endpoint URL.
    #[arg(long)]
    endpoint: String,
    /// Bucket (must exist).
    #[arg(long, default_value = "strata")]
    bucket: String,
    /// Access key id.
    #[arg(long, default_value = "AK")]
    access_key: String,
    /// Secret access key.
    #[arg(long, default_value = "SK")]
    secret_key: String,
    /// Key prefix inside the bucket.
    #[arg(long, default_value = "bench")]
    prefix: String,
    /// Working directory (journal and cache; emptied first).
    #[arg(long, default_value = "./bench-tiered")]
    dir: PathBuf,
}

impl S3Args {
    fn store(&self) -> ObjectStoreConfig {
        ObjectStoreConfig::S3 {
            endpoint: self.endpoint.clone(),
            bucket: self.bucket.clone(),
            region: "us-east-1".into(),
            access_key_id: self.access_key.clone(),
            secret_access_key: self.secret_key.clone(),
            path_style: true,
            prefix: self.prefix.clone(),
        }
    }
}

/// Arguments of `strata bench tiered`.
#[derive(Args, Debug)]
pub struct TieredBenchArgs {
    #[command(subcommand)]
    command: TieredCommand,
}

#[derive(Subcommand, Debug)]
enum TieredCommand {
    /// Replay of a partition held in object storage, cold and warm.
    Replay(ReplayArgs),
    /// `object`-class appends with one batching setting.
    Object(ObjectArgs),
}

/// Arguments of `strata bench tiered replay`.
#[derive(Args, Debug)]
pub struct ReplayArgs {
    #[command(flatten)]
    s3: S3Args,
    /// Megabytes to write and replay.
    #[arg(long, default_value_t = 512)]
    mb: u64,
    /// Segment (object) size in MiB.
    #[arg(long, default_value_t = 64)]
    segment_mb: u64,
    /// Block size of the cache and of ranged GETs, in KiB.
    #[arg(long, default_value_t = 4096)]
    block_kb: u64,
    /// Blocks fetched ahead of a sequential reader.
    #[arg(long, default_value_t = 16)]
    read_ahead: u32,
    /// Memory tier of the block cache, in MiB.
    #[arg(long, default_value_t = 256)]
    memory_mb: u64,
    /// SSD tier of the block cache, in MiB.
    #[arg(long, default_value_t = 2048)]
    disk_mb: u64,
    /// Leave the objects in the bucket (for a plain client to read the same bytes).
    #[arg(long)]
    keep_objects: bool,
    /// Drop the page cache before each replay (needs root), so the warm replay reads the
    /// SSD file from the disk and the server reads its files from the disk too.
    #[arg(long)]
    drop_caches: bool,
}

/// Arguments of `strata bench tiered object`.
#[derive(Args, Debug)]
pub struct ObjectArgs {
    #[command(flatten)]
    s3: S3Args,
    /// Bytes gathered into one object.
    #[arg(long, default_value_t = 4 * 1024 * 1024)]
    batch_bytes: u64,
    /// Age bound of an object in ms.
    #[arg(long, default_value_t = 50)]
    batch_ms: u64,
    /// When appends are acknowledged: object or local.
    #[arg(long, default_value = "object")]
    ack: String,
    /// Concurrent appenders.
    #[arg(long, default_value_t = 16)]
    producers: u32,
    /// Records per append.
    #[arg(long, default_value_t = 16)]
    records: usize,
    /// Bytes per record value.
    #[arg(long, default_value_t = 1024)]
    record_size: usize,
    /// Seconds of appending.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

/// Runs a tiered benchmark; prints one JSON object.
pub async fn run(args: TieredBenchArgs) -> anyhow::Result<()> {
    match args.command {
        TieredCommand::Replay(a) => replay(a).await,
        TieredCommand::Object(a) => object(a).await,
    }
}

async fn open(
    dir: &Path,
    store: ObjectStoreConfig,
    cache: CacheConfig,
    registry: &prometheus::Registry,
) -> anyhow::Result<Journal> {
    let options = JournalOptions::new(
        dir.join("journal"),
        JournalConfig {
            object_store: Some(store),
            cache,
            ..JournalConfig::default()
        },
        registry.clone(),
    )
    .with_object_store()
    .await?;
    Ok(tokio::task::spawn_blocking(move || Journal::open(options)).await??)
}

fn fresh_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    Ok(())
}

fn counter(registry: &prometheus::Registry, name: &str, label: Option<&str>) -> f64 {
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric().iter())
        .filter(|m| label.is_none_or(|l| m.get_label().iter().any(|p| p.value() == l)))
        .map(|m| m.get_counter().get_value())
        .sum()
}

fn batch(value: &Bytes, n: usize) -> anyhow::Result<strata_journal::PendingBatch> {
    let mut b = BatchBuilder::with_capacity(Codec::None, n * (value.len() + 16));
    let ts = now_ms();
    for _ in 0..n {
        b.push(ts, None, Some(value), &[]);
    }
    Ok(b.build()?)
}

fn value(size: usize) -> Bytes {
    (0..size)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .into()
}

/// Reads `[from, to)` sequentially, 1 MiB at a time; returns the bytes read.
async fn read_range(p: &Arc<dyn PartitionLog>, from: u64, to: u64) -> anyhow::Result<u64> {
    let mut next = from;
    let mut bytes = 0u64;
    while next < to {
        let batches = p.read(next, 1 << 20).await?;
        let Some(last) = batches.last() else { break };
        next = last.last_offset() + 1;
        bytes += batches.iter().map(|b| b.len() as u64).sum::<u64>();
    }
    Ok(bytes)
}

fn tier_reads(registry: &prometheus::Registry) -> serde_json::Value {
    json!({
        "memory": counter(registry, "strata_tier_block_reads_total", Some("memory")),
        "disk": counter(registry, "strata_tier_block_reads_total", Some("disk")),
        "object": counter(registry, "strata_tier_block_reads_total", Some("object")),
        "gets": counter(registry, "strata_tier_object_gets_total", None),
    })
}

async fn replay(args: ReplayArgs) -> anyhow::Result<()> {
    fresh_dir(&args.s3.dir)?;
    let cache = CacheConfig {
        memory_bytes: args.memory_mb << 20,
        disk_bytes: args.disk_mb << 20,
        block_bytes: args.block_kb << 10,
        read_ahead_blocks: args.read_ahead,
        dir: Some(args.s3.dir.join("cache")),
    };
    // Write: 1 KiB records in 64 KiB batches; sealed segments go to object storage.
    let registry = prometheus::Registry::new();
    let j = open(&args.s3.dir, args.s3.store(), cache.clone(), &registry).await?;
    let name = format!("replay-{}", std::process::id());
    let mut c = j.stream_config(&name, 1);
    c.segment.segment_bytes = args.segment_mb << 20;
    c.fsync = FsyncPolicy::Never;
    c.retention.max_age_ms = None;
    c.offload = Some(OffloadSettings {
        local_retention_ms: 0,
        local_retention_bytes: Some(0),
    });
    let stream = j.create_stream(c).await?;
    let v = value(1024);
    let write_started = Instant::now();
    let mut written = 0u64;
    while written < args.mb << 20 {
        let b = batch(&v, 64)?;
        written += b.len() as u64;
        stream.append(0, b).await?;
    }
    let p = stream.partition(0)?.clone();
    let sealed = p.describe().segments.len() - 1;
    let deadline = Instant::now() + Duration::from_secs(3600);
    loop {
        let remote = p
            .describe()
            .segments
            .iter()
            .filter(|s| s.remote.is_some() && s.location.as_os_str().is_empty())
            .count();
        if remote >= sealed {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "offload did not finish");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let offload_seconds = write_started.elapsed().as_secs_f64();
    let info = p.describe();
    let objects: Vec<(String, u64)> = info
        .segments
        .iter()
        .filter_map(|s| s.remote.clone().map(|k| (k, s.size)))
        .collect();
    let remote_end = info
        .segments
        .iter()
        .find(|s| s.remote.is_none())
        .map_or(info.offsets.end, |s| s.base_offset);
    let uploads = counter(&registry, "strata_tier_uploads_total", None);
    let upload_bytes = counter(&registry, "strata_tier_upload_bytes_total", None);
    drop((stream, p));
    j.close().await?;

    // Cold: a new process view (fresh registry) and an empty cache directory.
    match std::fs::remove_dir_all(args.s3.dir.join("cache")) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
        _ => {}
    }
    let registry = prometheus::Registry::new();
    let j = open(&args.s3.dir, args.s3.store(), cache, &registry).await?;
    let p = j.stream(&name)?.partition(0)?.clone();
    let mut phases = Vec::new();
    for phase in ["cold", "warm"] {
        if args.drop_caches {
            drop_page_cache()?;
        }
        let before = tier_reads(&registry);
        let cpu0 = process_cpu();
        let started = Instant::now();
        let bytes = read_range(&p, 0, remote_end).await?;
        let elapsed = started.elapsed().as_secs_f64();
        let cpu = process_cpu().saturating_sub(cpu0).as_secs_f64();
        let after = tier_reads(&registry);
        let delta = |k: &str| after[k].as_f64().unwrap_or(0.0) - before[k].as_f64().unwrap_or(0.0);
        phases.push(json!({
            "phase": phase,
            "bytes": bytes,
            "seconds": elapsed,
            "mb_per_s": bytes as f64 / elapsed / 1e6,
            "cpu_seconds": cpu,
            "block_reads": { "memory": delta("memory"), "disk": delta("disk"), "object": delta("object") },
            "gets": delta("gets"),
            "disk_written_bytes": j.tier().map_or(0, |c| c.disk_written_bytes()),
        }));
        if phase == "cold"
            && let Some(cache) = j.tier()
        {
            // Blocks still queued for the SSD file land before the warm pass.
            cache.flush().await;
        }
    }
    drop(p);
    if !args.keep_objects {
        j.delete_stream(&name).await?;
    }
    j.close().await?;
    let prefix = args.s3.prefix.trim_matches('/');
    println!(
        "{}",
        json!({
            "mb": args.mb,
            "segment_mb": args.segment_mb,
            "block_kb": args.block_kb,
            "read_ahead": args.read_ahead,
            "offload": { "seconds": offload_seconds, "puts": uploads, "bytes": upload_bytes,
                         "puts_per_gb": uploads / (upload_bytes / 1e9) },
            "objects": objects.iter().map(|(k, size)| json!({"key": format!("{prefix}/{k}"), "bytes": size})).collect::<Vec<_>>(),
            "phases": phases,
        })
    );
    Ok(())
}

fn drop_page_cache() -> anyhow::Result<()> {
    let synced = std::process::Command::new("sync").status()?;
    anyhow::ensure!(synced.success(), "sync failed");
    std::fs::write("/proc/sys/vm/drop_caches", "3\n")
        .map_err(|e| anyhow::anyhow!("cannot drop the page cache (needs root): {e}"))
}

async fn object(args: ObjectArgs) -> anyhow::Result<()> {
    fresh_dir(&args.s3.dir)?;
    let ack = match args.ack.as_str() {
        "object" => ObjectAck::Object,
        "local" => ObjectAck::Local,
        other => anyhow::bail!("--ack must be object or local, not {other:?}"),
    };
    let registry = prometheus::Registry::new();
    let j = open(
        &args.s3.dir,
        args.s3.store(),
        CacheConfig::default(),
        &registry,
    )
    .await?;
    let name = format!("object-{}", std::process::id());
    let mut c = j.stream_config(&name, 1);
    c.class = StorageClass::Object;
    c.fsync = FsyncPolicy::Interval(100);
    c.retention.max_age_ms = None;
    c.object.batch_bytes = args.batch_bytes;
    c.object.batch_ms = args.batch_ms;
    c.object.ack = ack;
    let stream = j.create_stream(c).await?;
    let v = value(args.record_size);
    let appended = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let cpu0 = process_cpu();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.producers {
        let (stream, v, appended) = (stream.clone(), v.clone(), appended.clone());
        let n = args.records;
        tasks.push(tokio::spawn(async move {
            let mut latency = Latency::new();
            while Instant::now() < deadline {
                let b = batch(&v, n)?;
                let len = b.len() as u64;
                let t = Instant::now();
                stream.append(0, b).await?;
                latency.record(t.elapsed());
                appended.fetch_add(len, Ordering::Relaxed);
            }
            anyhow::Ok(latency)
        }));
    }
    let mut latency = Latency::new();
    for t in tasks {
        latency.merge(&t.await??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = process_cpu().saturating_sub(cpu0).as_secs_f64();
    // Everything appended is uploaded before the PUTs are counted (ack = local uploads
    // after acknowledging).
    let bytes = appended.load(Ordering::Relaxed);
    let p = stream.partition(0)?.clone();
    let end = p.offsets().end;
    let drain = Instant::now() + Duration::from_secs(600);
    while p
        .describe()
        .segments
        .iter()
        .any(|s| s.remote.is_none() && s.end_offset > s.base_offset && s.end_offset <= end)
        && Instant::now() < drain
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let puts = counter(&registry, "strata_tier_uploads_total", None);
    let put_bytes = counter(&registry, "strata_tier_upload_bytes_total", None);
    drop((stream, p));
    j.delete_stream(&name).await?;
    j.close().await?;
    println!(
        "{}",
        json!({
            "batch_bytes": args.batch_bytes,
            "batch_ms": args.batch_ms,
            "ack": args.ack,
            "producers": args.producers,
            "append_bytes": (args.records * args.record_size),
            "appends": latency.count(),
            "seconds": elapsed,
            "appends_per_s": latency.count() as f64 / elapsed,
            "mb_per_s": bytes as f64 / elapsed / 1e6,
            "p50_us": latency.quantile_us(0.5),
            "p99_us": latency.quantile_us(0.99),
            "cpu_seconds": cpu,
            "puts": puts,
            "put_bytes": put_bytes,
            "puts_per_gb": puts / (put_bytes / 1e9),
        })
    );
    Ok(())
}
