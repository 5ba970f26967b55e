//! `strata journal dump`: records of one partition with key and value previews.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use serde_json::json;
use strata_journal::offline;

use super::format_ms;

/// Arguments of `strata journal dump`.
#[derive(Args)]
pub struct DumpArgs {
    /// A journal directory, or a node data directory holding `journal/`.
    dir: PathBuf,
    /// Stream name.
    #[arg(long)]
    stream: String,
    /// Partition number.
    #[arg(long, default_value_t = 0)]
    partition: u32,
    /// First offset to print.
    #[arg(long, default_value_t = 0)]
    from: u64,
    /// Number of records to print.
    #[arg(long, default_value_t = 20)]
    count: usize,
    /// Bytes of each key and value to show.
    #[arg(long, default_value_t = 64)]
    preview: usize,
    /// One JSON object per line instead of text.
    #[arg(long)]
    json: bool,
}

/// A printable preview: UTF-8 text when it is text, hex otherwise, cut to `max` bytes.
fn preview(bytes: Option<&[u8]>, max: usize) -> String {
    let Some(b) = bytes else { return "null".into() };
    let cut = &b[..b.len().min(max)];
    let more = if b.len() > max {
        format!("…(+{} bytes)", b.len() - max)
    } else {
        String::new()
    };
    match std::str::from_utf8(cut) {
        Ok(s) if !s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') => {
            format!("{s:?}{more}")
        }
        _ => {
            let hex: String = cut.iter().map(|x| format!("{x:02x}")).collect();
            format!("0x{hex}{more}")
        }
    }
}

/// Prints the records.
pub fn run(args: DumpArgs) -> anyhow::Result<ExitCode> {
    let dir = offline::journal_dir(&args.dir)?;
    let records = offline::dump(&dir, &args.stream, args.partition, args.from, args.count)?;
    for r in &records {
        let key = preview(r.key.as_deref(), args.preview);
        let value = preview(r.value.as_deref(), args.preview);
        if args.json {
            let headers: Vec<_> = r
                .headers
                .iter()
                .map(
                    |h| json!({ "key": h.key, "value": preview(h.value.as_deref(), args.preview) }),
                )
                .collect();
            let line = json!({
                "offset": r.offset,
                "timestamp": r.timestamp,
                "key": key,
                "value": value,
                "value_bytes": r.value.as_ref().map_or(0, |v| v.len()),
                "headers": headers,
            });
            println!("{line}");
        } else {
            let headers: Vec<String> = r
                .headers
                .iter()
                .map(|h| format!("{}={}", h.key, preview(h.value.as_deref(), args.preview)))
                .collect();
            println!(
                "offset={} time={} key={key} value={value} headers=[{}]",
                r.offset,
                format_ms(Some(r.timestamp)),
                headers.join(", ")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
