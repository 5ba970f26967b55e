//! `strata bench journal`: concurrent appenders, then a sequential read of what they wrote.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use strata_journal::{
    BatchBuilder, Codec, FsyncPolicy, Journal, JournalConfig, JournalOptions, StorageClass, Stream,
    now_ms,
};

use super::report::{Latency, Row, print_table, process_cpu};

/// Arguments of `strata bench journal`.
#[derive(Args, Debug)]
pub struct JournalBenchArgs {
    /// Journal directory to write into (created; the bench stream is deleted afterwards
    /// unless --keep).
    #[arg(long, default_value = "./bench-data")]
    dir: PathBuf,
    /// Bytes of each record's value.
    #[arg(long, default_value_t = 1024)]
    record_size: usize,
    /// Bytes of record values per batch (records per batch = batch-bytes / record-size).
    #[arg(long, default_value_t = 65536)]
    batch_bytes: usize,
    /// Partitions of the bench stream; appenders spread over them.
    #[arg(long, default_value_t = 1)]
    partitions: u32,
    /// Concurrent appenders.
    #[arg(long, default_value_t = 1)]
    concurrency: u32,
    /// fsync policy: always, never or interval:<ms>.
    #[arg(long, default_value = "never")]
    fsync: FsyncPolicy,
    /// Storage class: segment, rocksdb or memory.
    #[arg(long, default_value = "segment")]
    class: String,
    /// Megabytes of record values to append (ignored with --seconds).
    #[arg(long, default_value_t = 1024)]
    total_mb: u64,
    /// Append for this many seconds instead of a fixed volume.
    #[arg(long)]
    seconds: Option<u64>,
    /// Segment size in MiB.
    #[arg(long, default_value_t = 256)]
    segment_mb: u64,
    /// Skip the read phase.
    #[arg(long)]
    no_read: bool,
    /// Keep the written data.
    #[arg(long)]
    keep: bool,
    /// Print a JSON summary instead of a table.
    #[arg(long)]
    json: bool,
}

struct Totals {
    bytes_left: AtomicI64,
    deadline: Option<Instant>,
    records: AtomicU64,
    stored: AtomicU64,
}

impl Totals {
    fn take(&self, n: i64) -> bool {
        match self.deadline {
            Some(d) => Instant::now() < d,
            None => self.bytes_left.fetch_sub(n, Ordering::Relaxed) > 0,
        }
    }
}

async fn appender(
    stream: Arc<Stream>,
    partition: u32,
    value: Bytes,
    per_batch: usize,
    totals: Arc<Totals>,
) -> anyhow::Result<Latency> {
    let mut latency = Latency::new();
    let chunk = (per_batch * value.len()) as i64;
    while totals.take(chunk) {
        // Room for the values plus a few bytes of framing per record.
        let mut b = BatchBuilder::with_capacity(Codec::None, per_batch * (value.len() + 16));
        let ts = now_ms();
        for _ in 0..per_batch {
            b.push(ts, None, Some(&value), &[]);
        }
        let pending = b.build()?;
        let size = pending.len() as u64;
        let started = Instant::now();
        stream.append(partition, pending).await?;
        latency.record(started.elapsed());
        totals
            .records
            .fetch_add(per_batch as u64, Ordering::Relaxed);
        totals.stored.fetch_add(size, Ordering::Relaxed);
    }
    Ok(latency)
}

fn progress(total: Option<u64>) -> ProgressBar {
    let bar = match total {
        Some(t) => ProgressBar::new(t),
        None => ProgressBar::new_spinner(),
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {elapsed_precise} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// Runs the benchmark and prints the summary.
pub async fn run(args: JournalBenchArgs) -> anyhow::Result<()> {
    let class: StorageClass = serde_json::from_value(serde_json::Value::String(args.class.clone()))
        .map_err(|_| anyhow::anyhow!("unknown class {:?}", args.class))?;
    anyhow::ensure!(
        args.record_size > 0 && args.batch_bytes >= args.record_size,
        "batch-bytes must be at least record-size"
    );
    let journal = Journal::open(JournalOptions::new(
        args.dir.clone(),
        JournalConfig::default(),
        prometheus::Registry::new(),
    ))?;
    let name = format!("bench-{}", std::process::id());
    let mut config = journal.stream_config(&name, args.partitions);
    config.class = class;
    config.fsync = args.fsync;
    config.segment.segment_bytes = args.segment_mb * 1024 * 1024;
    config.retention.max_age_ms = None;
    config.memory_max_bytes = u64::MAX;
    let stream = journal.create_stream(config).await?;
    let maintenance = journal.start_maintenance();

    let per_batch = args.batch_bytes / args.record_size;
    let value: Bytes = (0..args.record_size)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .into();
    let totals = Arc::new(Totals {
        bytes_left: AtomicI64::new((args.total_mb * 1_000_000) as i64),
        deadline: args
            .seconds
            .map(|s| Instant::now() + Duration::from_secs(s)),
        records: AtomicU64::new(0),
        stored: AtomicU64::new(0),
    });
    let bar = progress(args.seconds.is_none().then_some(args.total_mb * 1_000_000));
    let cpu0 = process_cpu();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..args.concurrency {
        tasks.push(tokio::spawn(appender(
            stream.clone(),
            i % args.partitions,
            value.clone(),
            per_batch,
            totals.clone(),
        )));
    }
    let ticker = {
        let (bar, totals) = (bar.clone(), totals.clone());
        let payload = (per_batch * args.record_size) as u64;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                bar.set_position(
                    totals.records.load(Ordering::Relaxed) / per_batch as u64 * payload,
                );
            }
        })
    };
    let mut latency = Latency::new();
    for t in tasks {
        latency.merge(&t.await??);
    }
    let append_elapsed = started.elapsed();
    let append_cpu = process_cpu().saturating_sub(cpu0);
    ticker.abort();
    bar.finish_and_clear();
    let mut rows = vec![Row {
        phase: "append".into(),
        records: totals.records.load(Ordering::Relaxed),
        bytes: totals.stored.load(Ordering::Relaxed),
        elapsed: append_elapsed,
        cpu: append_cpu,
        latency: Some((
            latency.quantile_us(0.5),
            latency.quantile_us(0.99),
            latency.quantile_us(0.999),
        )),
    }];
    if !args.no_read {
        rows.push(read_back(&stream).await?);
    }
    journal.close().await?;
    maintenance.await?;
    drop(stream);
    if !args.keep {
        let journal = Journal::open(JournalOptions::new(
            args.dir.clone(),
            JournalConfig::default(),
            prometheus::Registry::new(),
        ))?;
        journal.delete_stream(&name).await?;
        journal.close().await?;
    }
    if args.json {
        let out = serde_json::json!({
            "record_size": args.record_size,
            "batch_bytes": args.batch_bytes,
            "partitions": args.partitions,
            "concurrency": args.concurrency,
            "fsync": args.fsync.to_string(),
            "class": args.class,
            "appends": latency.count(),
            "phases": rows.iter().map(Row::json).collect::<Vec<_>>(),
        });
        println!("{out}");
    } else {
        println!(
            "journal bench: {} B records, {} per batch, {} partition(s), {} appender(s), fsync={}, class={}",
            args.record_size, per_batch, args.partitions, args.concurrency, args.fsync, args.class
        );
        print_table(&rows);
    }
    Ok(())
}

/// Reads every partition from its start, one reader per partition, 1 MiB at a time.
async fn read_back(stream: &Arc<Stream>) -> anyhow::Result<Row> {
    let cpu0 = process_cpu();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for p in stream.partitions() {
        let p = p.clone();
        tasks.push(tokio::spawn(async move {
            let end = p.offsets().end;
            let mut from = p.offsets().log_start;
            let (mut bytes, mut records) = (0u64, 0u64);
            while from < end {
                let batches = p.read(from, 1 << 20).await?;
                let Some(last) = batches.last() else { break };
                from = last.last_offset() + 1;
                for b in &batches {
                    bytes += b.len() as u64;
                    records += u64::from(b.record_count());
                }
            }
            anyhow::Ok((bytes, records))
        }));
    }
    let (mut bytes, mut records) = (0, 0);
    for t in tasks {
        let (b, r) = t.await??;
        bytes += b;
        records += r;
    }
    Ok(Row {
        phase: "read".into(),
        records,
        bytes,
        elapsed: started.elapsed(),
        cpu: process_cpu().saturating_sub(cpu0),
        latency: None,
    })
}
