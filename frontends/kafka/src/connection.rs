//! One client connection: length-prefixed requests answered in order, as Kafka does.

use std::sync::Arc;

use bytes::BytesMut;
use strata_frontend::Shutdown;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::Instrument;

use crate::frontend::Kafka;
use crate::handlers::{self, Session};

/// Serves requests until the client closes, sends something unparseable, or the node stops.
/// Its events carry the client's address and, once a request names it, its client id.
pub async fn serve(stream: TcpStream, k: Arc<Kafka>, shutdown: Shutdown) {
    let peer = stream.peer_addr().ok();
    let span = tracing::info_span!(
        "kafka",
        client_id = tracing::field::Empty,
        peer = tracing::field::debug(peer)
    );
    serve_requests(stream, peer, k, shutdown)
        .instrument(span)
        .await;
}

async fn serve_requests(
    stream: TcpStream,
    peer: Option<std::net::SocketAddr>,
    k: Arc<Kafka>,
    mut shutdown: Shutdown,
) {
    k.metrics.connections.inc();
    let (mut rd, mut wr) = stream.into_split();
    let mut session = Session {
        authenticated: k.config.sasl_plain_users.is_empty(),
        peer,
        ..Session::default()
    };
    loop {
        let size = tokio::select! {
            size = rd.read_i32() => size,
            _ = shutdown.wait() => break,
        };
        let Ok(size) = size else { break };
        if size < 8 || size as u32 > k.config.max_request_bytes {
            k.metrics
                .errors
                .with_label_values(&["request", "size"])
                .inc();
            tracing::debug!(size, "request size out of bounds; closing");
            break;
        }
        let mut frame = BytesMut::zeroed(size as usize);
        if rd.read_exact(&mut frame).await.is_err() {
            break;
        }
        match handlers::handle(&k, &mut session, frame.freeze()).await {
            Ok(Some(response)) => {
                if wr.write_all(&response).await.is_err() {
                    break;
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(error = %e, "closing the connection");
                break;
            }
        }
    }
    k.metrics.connections.dec();
}
