//! `strata bench ...`: load generators that measure the node's components in-process.

mod journal;
mod mqtt;
mod reopen;
mod report;
mod tiered;

use std::process::ExitCode;

use clap::{Args, Subcommand};

/// Benchmarks.
#[derive(Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Append and read throughput and append latency of the journal.
    Journal(journal::JournalBenchArgs),
    /// Time to reopen an existing journal and serve a read and an append.
    Reopen(reopen::ReopenArgs),
    /// Load on an MQTT broker (Strata's or another): throughput, latency, losses.
    Mqtt(mqtt::MqttBenchArgs),
    /// The object storage tier against an S3-compatible server: replay and object appends.
    Tiered(tiered::TieredBenchArgs),
}

/// Runs a benchmark.
pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match args.command {
            BenchCommand::Journal(a) => journal::run(a).await,
            BenchCommand::Reopen(a) => reopen::run(a).await,
            BenchCommand::Mqtt(a) => mqtt::run(a).await,
            BenchCommand::Tiered(a) => tiered::run(a).await,
        }
    })?;
    Ok(ExitCode::SUCCESS)
}
