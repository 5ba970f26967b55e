//! `strata journal inspect | dump | verify`: offline tools over a journal directory. They
//! never write, so they are safe on a directory left by a crashed process.

mod dump;
mod inspect;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

/// Offline journal tools.
#[derive(Args)]
pub struct JournalArgs {
    #[command(subcommand)]
    command: JournalCommand,
}

#[derive(Subcommand)]
enum JournalCommand {
    /// Streams, partitions and segments with offset ranges, time ranges and sizes.
    Inspect {
        /// A journal directory, or a node data directory holding `journal/`.
        dir: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Records of one partition with key and value previews.
    Dump(dump::DumpArgs),
    /// Check every batch CRC and every index entry; exit 1 listing each problem.
    Verify {
        /// A journal directory, or a node data directory holding `journal/`.
        dir: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a journal subcommand.
pub fn run(args: JournalArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        JournalCommand::Inspect { dir, json } => inspect::run(&dir, json),
        JournalCommand::Dump(args) => dump::run(args),
        JournalCommand::Verify { dir, json } => verify::run(&dir, json),
    }
}

/// Formats a millisecond timestamp as RFC 3339 (UTC), or `-`.
pub(crate) fn format_ms(ms: Option<i64>) -> String {
    ms.map_or_else(|| "-".into(), strata_journal::batch::rfc3339_ms)
}

#[cfg(test)]
mod tests {
    use super::format_ms;

    #[test]
    fn timestamps_format_as_utc() {
        assert_eq!(format_ms(Some(0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_ms(Some(1_700_000_000_123)),
            "2023-11-14T22:13:20.123Z"
        );
        assert_eq!(format_ms(Some(951_782_400_000)), "2000-02-29T00:00:00.000Z");
        assert_eq!(format_ms(None), "-");
    }
}
