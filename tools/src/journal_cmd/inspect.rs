//! `strata journal inspect`: the layout of every stream.

use std::path::Path;
use std::process::ExitCode;

use serde_json::json;
use strata_journal::offline::{self, PartitionSummary, SegmentSummary};
use strata_journal::segment::scan::ScanStop;

use super::format_ms;

fn tail_note(stop: &ScanStop) -> String {
    match stop {
        ScanStop::Clean => String::new(),
        ScanStop::Torn { position, .. } => format!("torn tail at byte {position}"),
        ScanStop::Corrupt { position, .. } => format!("unreadable from byte {position}"),
    }
}

fn segment_json(p: &PartitionSummary, s: &SegmentSummary) -> serde_json::Value {
    json!({
        "location": p.location(s.base_offset),
        "base_offset": s.base_offset,
        "end_offset": s.end_offset,
        "batches": s.batches,
        "records": s.records,
        "bytes": s.file_size,
        "min_timestamp": s.min_timestamp,
        "max_timestamp": s.max_timestamp,
        "file": s.path,
        "note": tail_note(&s.stop),
    })
}

/// Prints streams, partitions and segments.
pub fn run(dir: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let dir = offline::journal_dir(dir)?;
    let streams = offline::inspect(&dir)?;
    if json {
        let out: Vec<_> = streams
            .iter()
            .map(|s| {
                json!({
                    "stream": s.config.name,
                    "class": s.config.class.to_string(),
                    "fsync": s.config.fsync.to_string(),
                    "retention": { "max_bytes": s.config.retention.max_bytes, "max_age_ms": s.config.retention.max_age_ms },
                    "partitions": s.partitions.iter().map(|p| json!({
                        "partition": p.partition,
                        "log_start": p.log_start,
                        "segments": p.segments.iter().map(|s| segment_json(p, s)).collect::<Vec<_>>(),
                        "remote_only": p.remote.iter().filter(|e| p.location(e.base_offset) == "remote").map(|e| json!({
                            "base_offset": e.base_offset,
                            "end_offset": e.last_offset + 1,
                            "bytes": e.data_len(),
                            "max_timestamp": e.max_timestamp,
                            "object": e.key,
                        })).collect::<Vec<_>>(),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("journal {}: {} stream(s)", dir.display(), streams.len());
    for s in &streams {
        let c = &s.config;
        println!(
            "\nstream {}  class={} partitions={} fsync={} retention.bytes={} retention.ms={}",
            c.name,
            c.class,
            c.partitions,
            c.fsync,
            c.retention.max_bytes.map_or("-".into(), |v| v.to_string()),
            c.retention.max_age_ms.map_or("-".into(), |v| v.to_string()),
        );
        for p in &s.partitions {
            let remote: Vec<_> = p
                .remote
                .iter()
                .filter(|e| p.location(e.base_offset) == "remote")
                .collect();
            let bytes: u64 = p.segments.iter().map(|s| s.file_size).sum::<u64>()
                + remote.iter().map(|e| e.data_len()).sum::<u64>();
            let start = p
                .log_start
                .or(remote.first().map(|e| e.base_offset))
                .or(p.segments.first().map(|s| s.base_offset))
                .unwrap_or(0);
            let end = p.segments.last().map_or(start, |s| s.end_offset);
            println!(
                "  partition {}  offsets [{start}, {end})  {bytes} bytes  {} segment(s)",
                p.partition,
                p.segments.len() + remote.len()
            );
            if !p.segments.is_empty() || !remote.is_empty() {
                println!(
                    "    {:>20} {:>20} {:>9} {:>12} {:>24} {:>24}  {:<6}  note",
                    "base", "end", "batches", "bytes", "first time", "last time", "where"
                );
            }
            for e in &remote {
                println!(
                    "    {:>20} {:>20} {:>9} {:>12} {:>24} {:>24}  {:<6}  {}",
                    e.base_offset,
                    e.last_offset + 1,
                    "-",
                    e.data_len(),
                    "-",
                    format_ms(Some(e.max_timestamp)),
                    "remote",
                    e.key
                );
            }
            for seg in &p.segments {
                println!(
                    "    {:>20} {:>20} {:>9} {:>12} {:>24} {:>24}  {:<6}  {}",
                    seg.base_offset,
                    seg.end_offset,
                    seg.batches,
                    seg.file_size,
                    format_ms(seg.min_timestamp),
                    format_ms(seg.max_timestamp),
                    p.location(seg.base_offset),
                    tail_note(&seg.stop)
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
