//! A running node: open the journal, serve the admin API, and on a signal stop in order.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use prometheus::Registry;
use strata_journal::{Journal, JournalOptions};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::{JoinError, JoinHandle};
use tracing::{debug, error, info, warn};

use super::admin;
use super::config::NodeConfig;
use super::metrics::NodeMetrics;
use super::shutdown::ShutdownSignals;

/// How long in-flight admin requests get to finish once the node is stopping.
const ADMIN_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the journal's maintenance tasks get to notice `close` and return.
const MAINTENANCE_STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs a node until SIGTERM or SIGINT. Must be called inside a multi-threaded tokio runtime.
///
/// Order: signals, metrics, data directory, journal (open, then maintenance), admin listener.
/// Stopping runs the other way: stop accepting, drain, close the journal. The journal is
/// closed on every path once it has opened, including when the admin port cannot be bound.
pub async fn run(config: NodeConfig) -> anyhow::Result<()> {
    let mut signals =
        ShutdownSignals::install().context("cannot install SIGTERM/SIGINT handlers")?;
    if let Ok(effective) = serde_json::to_string(&config) {
        debug!(config = %effective, "effective configuration");
    }
    let metrics = Arc::new(NodeMetrics::new().context("cannot register node metrics")?);

    let journal = open_journal(&config, metrics.registry().clone()).await?;
    let maintenance = journal.start_maintenance();

    let served = serve_admin(config.admin.listen, metrics, &mut signals).await;
    let closed = close_journal(&journal, maintenance).await;
    match (served, closed) {
        (Ok(()), Ok(())) => {
            info!("stopped cleanly");
            Ok(())
        }
        (Err(err), Ok(())) | (Ok(()), Err(err)) => Err(err),
        (Err(served), Err(closed)) => {
            let closed = format!("{closed:#}");
            error!(error = %closed, "journal did not close cleanly");
            Err(served)
        }
    }
}

async fn open_journal(config: &NodeConfig, registry: Registry) -> anyhow::Result<Journal> {
    let data_dir = &config.node.data_dir;
    let journal_dir = config.node.journal_dir();
    std::fs::create_dir_all(&journal_dir)
        .with_context(|| format!("cannot create data directory {}", journal_dir.display()))?;

    info!(data_dir = %data_dir.display(), "opening journal");
    let options = JournalOptions::new(journal_dir.clone(), config.journal.clone(), registry);
    // Opening recovers and verifies segment tails: synchronous file I/O, kept off the
    // async workers.
    let journal = tokio::task::spawn_blocking(move || Journal::open(options))
        .await
        .context("journal open task failed")?
        .with_context(|| format!("cannot open journal in {}", journal_dir.display()))?;
    info!("journal open");
    Ok(journal)
}

/// Binds the admin listener, serves until a signal, then drains.
async fn serve_admin(
    listen: SocketAddr,
    metrics: Arc<NodeMetrics>,
    signals: &mut ShutdownSignals,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot bind admin listener on {listen}"))?;
    let bound = listener
        .local_addr()
        .context("cannot read the admin listener's address")?;
    info!("admin listening on {bound}");
    announce_admin_address(bound);

    let (stop, stopped) = oneshot::channel::<()>();
    let stopped = async move {
        // Completes on a send or when the sender is dropped; either means stop.
        let _ = stopped.await;
    };
    let mut server = tokio::spawn(admin::serve(listener, admin::router(metrics), stopped));

    tokio::select! {
        signal = signals.recv() => info!(signal, "stopping: no longer accepting admin connections"),
        exited = &mut server => {
            server_result(exited)?;
            return Err(anyhow!("admin server stopped without being asked to"));
        }
    }
    // The receiver is gone only if the server already returned; the select below sees that.
    let _ = stop.send(());

    tokio::select! {
        exited = &mut server => server_result(exited),
        () = tokio::time::sleep(ADMIN_DRAIN_TIMEOUT) => {
            warn!(timeout = ?ADMIN_DRAIN_TIMEOUT, "admin connections still open; closing them");
            server.abort();
            Ok(())
        }
        signal = signals.recv() => {
            warn!(signal, "second signal: not waiting for admin connections");
            server.abort();
            Ok(())
        }
    }
}

/// Tells whoever started the node where the admin API is: with `listen` on port 0 the log
/// line is the only other place the port appears. One line on stdout, flushed at once.
fn announce_admin_address(bound: SocketAddr) {
    let mut stdout = std::io::stdout().lock();
    let written =
        writeln!(stdout, "strata: admin listening on {bound}").and_then(|()| stdout.flush());
    if let Err(err) = written {
        warn!(error = %err, "cannot write the admin address to stdout");
    }
}

fn server_result(exited: Result<std::io::Result<()>, JoinError>) -> anyhow::Result<()> {
    match exited {
        Ok(served) => served.context("admin server failed"),
        Err(err) => Err(anyhow!("admin server task failed: {err}")),
    }
}

/// Flushes and fsyncs the journal, then waits for its maintenance tasks to return.
async fn close_journal(journal: &Journal, maintenance: JoinHandle<()>) -> anyhow::Result<()> {
    info!("closing journal");
    journal
        .close()
        .await
        .context("cannot close the journal cleanly")?;
    match tokio::time::timeout(MAINTENANCE_STOP_TIMEOUT, maintenance).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(err)) => Err(anyhow!("journal maintenance task failed: {err}")),
        Err(_) => Err(anyhow!(
            "journal maintenance did not stop within {MAINTENANCE_STOP_TIMEOUT:?} of close"
        )),
    }
}
