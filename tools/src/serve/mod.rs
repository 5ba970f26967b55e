//! `strata serve`: load the configuration, start logging, and run one node until it is stopped.

mod admin;
mod config;
// Visible to the crate because `ServeError::Config` carries its type.
pub(crate) mod config_error;
mod log_filter;
mod logging;
mod metrics;
mod node;
mod shutdown;

use std::fmt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use self::config::NodeConfig;
use self::config_error::ConfigError;

/// How long the runtime gets, after the node has stopped, for tasks that did not notice.
const RUNTIME_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Arguments of `strata serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// TOML configuration file. Keys it leaves out keep their built-in defaults, and
    /// `STRATA_<SECTION>__<KEY>` environment variables override both
    /// (see docs/configuration.md).
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
}

/// Why `strata serve` stopped with a failure.
#[derive(Debug)]
pub enum ServeError {
    /// The configuration was refused before anything started.
    Config(ConfigError),
    /// The node failed while starting, running or stopping.
    Runtime(anyhow::Error),
}

impl ServeError {
    /// 2 for configuration errors (as for command-line usage errors), 1 for everything else.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Self::Config(_) => ExitCode::from(2),
            Self::Runtime(_) => ExitCode::FAILURE,
        }
    }
}

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config(err) => write!(f, "{err}"),
            Self::Runtime(err) => write!(f, "{err:#}"),
        }
    }
}

/// Runs `strata serve` to completion: `Ok` means the node stopped cleanly on a signal.
pub fn run(args: ServeArgs) -> Result<(), ServeError> {
    let config = NodeConfig::load(args.config.as_deref()).map_err(ServeError::Config)?;
    let log = logging::filter(&config.log).map_err(ServeError::Config)?;
    logging::install(config.log.format, &log).map_err(ServeError::Runtime)?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("strata-worker")
        .build()
        .context("cannot start the async runtime")
        .map_err(ServeError::Runtime)?;
    let result = runtime.block_on(node::run(config, log));
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN_TIMEOUT);

    result.map_err(|err| {
        // Also in the log, so that log collectors see why the node went away; the caller
        // prints the same cause as the process's last line on stderr.
        let cause = format!("{err:#}");
        tracing::error!(error = %cause, "node stopped with an error");
        ServeError::Runtime(err)
    })
}
