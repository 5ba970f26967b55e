//! `ShutdownSignals`: SIGTERM and SIGINT as an awaitable stream of stop requests.

use tokio::signal::unix::{Signal, SignalKind, signal};

/// The signals that ask a node to stop cleanly.
///
/// Installed first thing in the runtime: once installed, a signal that arrives while the
/// journal is still opening is kept and seen by the next [`ShutdownSignals::recv`], instead
/// of killing the process with the default action.
pub struct ShutdownSignals {
    terminate: Signal,
    interrupt: Signal,
}

impl ShutdownSignals {
    /// Replaces the default actions of SIGTERM and SIGINT. Must be called inside a tokio
    /// runtime; the replacement lasts for the rest of the process.
    pub fn install() -> std::io::Result<Self> {
        Ok(Self {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    /// Waits for the next stop request and returns the signal's name, for the log.
    ///
    /// Can be called again: a second signal during shutdown is how an operator says "stop
    /// waiting".
    pub async fn recv(&mut self) -> &'static str {
        // `recv` yields `None` only once the runtime's signal driver is gone, and then no
        // signal can arrive at all; treating that as a request to stop is the safe reading.
        tokio::select! {
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
        }
    }
}
