//! Accepting sockets, the same way on every listener of every frontend: one task per
//! listener accepts, closes banned addresses and sockets beyond the [`ConnectionGate`]'s
//! bounds at once (counting why), and hands the rest, with their place in the gate, to
//! the frontend's loop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::admission::{Admitted, ConnectionGate};
use crate::security::Security;

/// How long an accept task waits after `accept` fails (out of file descriptors, say),
/// instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Sockets admitted but not yet taken by the frontend's loop.
const QUEUE: usize = 1024;

/// A socket past admission: the listener it came in on (`kind`), its peer, and its
/// place in the gate (released when dropped).
#[derive(Debug)]
pub struct Accepted<K> {
    /// Which listener.
    pub kind: K,
    /// The socket, with `TCP_NODELAY` set.
    pub stream: TcpStream,
    /// The peer's address.
    pub addr: SocketAddr,
    /// Its place in the gate.
    pub admitted: Admitted,
}

/// The accept tasks of a frontend's listeners; dropping it stops them.
#[derive(Debug)]
pub struct Acceptor<K> {
    ready: mpsc::Receiver<Accepted<K>>,
    tasks: Vec<JoinHandle<()>>,
}

impl<K> Drop for Acceptor<K> {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl<K: Copy + Send + 'static> Acceptor<K> {
    /// Starts accepting on every listener. `refused(why)` counts each socket closed at
    /// once: `accept` for a failed accept, otherwise the gate's or the ban list's reason.
    pub fn start(
        listeners: Vec<(K, TcpListener)>,
        gate: ConnectionGate,
        security: Security,
        refused: impl Fn(&'static str) + Send + Sync + 'static,
    ) -> Self {
        let (tx, ready) = mpsc::channel(QUEUE);
        let refused = Arc::new(refused);
        let tasks = listeners
            .into_iter()
            .map(|(kind, listener)| {
                let (gate, security, refused, tx) =
                    (gate.clone(), security.clone(), refused.clone(), tx.clone());
                tokio::spawn(async move {
                    loop {
                        let (stream, addr) = match listener.accept().await {
                            Ok(accepted) => accepted,
                            Err(e) => {
                                tracing::warn!(error = %e, "accept failed");
                                refused("accept");
                                tokio::time::sleep(ACCEPT_BACKOFF).await;
                                continue;
                            }
                        };
                        let Some(admitted) =
                            gate.admit_unbanned(&security, addr, |why| refused(why))
                        else {
                            continue;
                        };
                        let _ = stream.set_nodelay(true);
                        let socket = Accepted {
                            kind,
                            stream,
                            addr,
                            admitted,
                        };
                        if tx.send(socket).await.is_err() {
                            return;
                        }
                    }
                })
            })
            .collect();
        Acceptor { ready, tasks }
    }

    /// The next admitted socket; pending forever once every listener has stopped.
    pub async fn next(&mut self) -> Accepted<K> {
        match self.ready.recv().await {
            Some(socket) => socket,
            None => std::future::pending().await,
        }
    }
}
