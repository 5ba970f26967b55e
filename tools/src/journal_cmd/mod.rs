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
    let Some(ms) = ms else { return "-".into() };
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms.rem_euclid(1000)
    )
}

/// Days since 1970-01-01 to a (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
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
