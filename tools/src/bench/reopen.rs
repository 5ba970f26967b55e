//! `strata bench reopen`: how long an existing journal (for instance one left by a killed
//! process) takes to open and serve a read and an append again.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use strata_journal::{BatchBuilder, Journal, JournalConfig, JournalOptions, now_ms};

/// Arguments of `strata bench reopen`.
#[derive(Args, Debug)]
pub struct ReopenArgs {
    /// The journal directory.
    #[arg(long)]
    dir: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// Opens the journal, reads the newest batch and the oldest of the largest partition, then
/// appends one record to it; prints each step's time.
pub async fn run(args: ReopenArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let journal = Journal::open(JournalOptions::new(
        args.dir.clone(),
        JournalConfig::default(),
        prometheus::Registry::new(),
    ))?;
    let opened = started.elapsed();
    let mut largest = None;
    for config in journal.list_streams() {
        let stream = journal.stream(&config.name)?;
        for p in stream.partitions() {
            let size = p.describe().size;
            if largest.as_ref().is_none_or(|(s, _, _)| size > *s) {
                largest = Some((size, config.name.clone(), p.clone()));
            }
        }
    }
    let (size, name, partition) =
        largest.ok_or_else(|| anyhow::anyhow!("no partition to reopen"))?;
    let offsets = partition.offsets();
    let tail = partition
        .read(
            offsets.end.saturating_sub(1).max(offsets.log_start),
            1 << 16,
        )
        .await?;
    let head = partition.read(offsets.log_start, 1 << 16).await?;
    let read_done = started.elapsed();
    let mut b = BatchBuilder::new();
    b.push(now_ms(), None, Some(b"reopen"), &[]);
    let appended = partition.append(b.build()?).await?;
    let serving = started.elapsed();
    anyhow::ensure!(
        !tail.is_empty() || offsets.end == offsets.log_start,
        "tail read returned nothing"
    );
    anyhow::ensure!(
        appended.base_offset == offsets.end,
        "append did not continue at the end offset"
    );
    journal.close().await?;
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "stream": name, "partition_bytes": size, "end_offset": offsets.end,
                "open_seconds": opened.as_secs_f64(),
                "first_reads_seconds": read_done.as_secs_f64(),
                "serving_seconds": serving.as_secs_f64(),
                "head_batches": head.len(),
            })
        );
    } else {
        println!("stream {name}: {size} bytes, end offset {}", offsets.end);
        println!(
            "open {:.3} s; first reads done at {:.3} s; first append acknowledged at {:.3} s",
            opened.as_secs_f64(),
            read_done.as_secs_f64(),
            serving.as_secs_f64()
        );
    }
    Ok(())
}
