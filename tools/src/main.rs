//! The `strata` binary: parses the command line and hands each subcommand to its module.

mod admin_cmd;
mod bench;
mod journal_cmd;
mod serve;

use std::fmt::Display;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc keeps freed memory for reuse instead of returning it to the kernel at once: the
/// broker's short-lived message buffers otherwise cost a page fault and a page clear each.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Strata: a messaging and streaming broker built around one journal.
#[derive(Parser)]
#[command(name = "strata", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node: the journal, the frontends and the admin HTTP API.
    Serve(serve::ServeArgs),
    /// Inspect, dump and verify journal files.
    Journal(journal_cmd::JournalArgs),
    /// Measure the journal's throughput and latency.
    Bench(bench::BenchArgs),
    /// Query and manage a running node through its admin API.
    Admin(admin_cmd::AdminArgs),
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Serve(args) => match serve::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => fail(&err, err.exit_code()),
        },
        Command::Journal(args) => finish(journal_cmd::run(args)),
        Command::Bench(args) => finish(bench::run(args)),
        Command::Admin(args) => finish(admin_cmd::run(args)),
    }
}

/// Exit code of a tool subcommand; an error is reported on one line and exits 1.
fn finish(result: anyhow::Result<ExitCode>) -> ExitCode {
    result.unwrap_or_else(|err| fail(&format!("{err:#}"), ExitCode::FAILURE))
}

/// Prints `strata: <error>` as one line on stderr and returns `code`. No backtrace and no
/// debug dump: whoever reads it (a person, a supervisor, a test) gets the cause and its
/// context on a single line.
fn fail(err: &dyn Display, code: ExitCode) -> ExitCode {
    let text = err.to_string();
    let line: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .collect();
    eprintln!("strata: {}", line.join(" "));
    code
}
