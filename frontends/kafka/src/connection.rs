//! One client connection: length-prefixed requests answered in order, as Kafka does.
//! Every wait is bounded: for the next request (`connections_max_idle_ms`), for the rest
//! of a request, and for writing a response to a client that stopped reading. A request's
//! buffer grows with the bytes that arrive, never ahead of them, and before SASL
//! authentication a request may be only `max_request_bytes_unauthenticated` long.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use strata_frontend::Shutdown;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::Instrument;

use crate::handlers;
use crate::session::Session;
use crate::state::Kafka;

/// Bytes read into a request's buffer at a time.
const READ_CHUNK: usize = 64 * 1024;

/// Serves requests until the client closes, sends something unparseable, or the node stops.
/// Its events carry the client's address and, once a request names it, its client id.
/// `tls` is set for connections of the SSL listener, with the username a verified client
/// certificate gives, if any.
pub async fn serve<S: AsyncRead + AsyncWrite + Send + 'static>(
    stream: S,
    peer: Option<std::net::SocketAddr>,
    tls: Option<Option<String>>,
    k: Arc<Kafka>,
    shutdown: Shutdown,
) {
    let span = tracing::info_span!(
        "kafka",
        client_id = tracing::field::Empty,
        peer = tracing::field::debug(peer)
    );
    serve_requests(stream, peer, tls, k, shutdown)
        .instrument(span)
        .await;
}

/// Why a connection is closed by the server, as counted in `strata_kafka_errors_total`
/// with api `connection`.
fn count(k: &Kafka, reason: &str) {
    k.metrics
        .errors
        .with_label_values(&["connection", reason])
        .inc();
}

async fn serve_requests<S: AsyncRead + AsyncWrite + Send + 'static>(
    stream: S,
    peer: Option<std::net::SocketAddr>,
    tls: Option<Option<String>>,
    k: Arc<Kafka>,
    mut shutdown: Shutdown,
) {
    k.metrics.connections.inc();
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut session = Session {
        // SASL is required when PLAIN users are configured or the node refuses anonymous
        // clients (users exist, or `[auth] anonymous = "deny"`).
        authenticated: k.config.sasl_plain_users.is_empty() && k.security.anonymous_allowed(),
        peer,
        tls: tls.is_some(),
        quotas: crate::quota::Quotas::new(&k.config),
        ..Session::default()
    };
    // Without SASL, a verified client certificate names the principal.
    if let Some(Some(user)) = tls
        && session.authenticated
    {
        session.user = Some(user);
    }
    let idle = Duration::from_millis(k.config.connections_max_idle_ms.max(1));
    let write_timeout = Duration::from_millis(k.config.write_timeout_ms.max(1));
    loop {
        let size = tokio::select! {
            size = tokio::time::timeout(idle, rd.read_i32()) => size,
            _ = shutdown.wait() => break,
        };
        let size = match size {
            Ok(Ok(size)) => size,
            Ok(Err(_)) => break,
            Err(_) => {
                count(&k, "idle_timeout");
                break;
            }
        };
        let limit = if session.authenticated {
            k.config.max_request_bytes
        } else {
            k.config.max_request_bytes_unauthenticated
        };
        if size < 8 || size as u32 > limit {
            k.metrics
                .errors
                .with_label_values(&["request", "size"])
                .inc();
            tracing::debug!(size, limit, "request size out of bounds; closing");
            break;
        }
        let frame = match tokio::time::timeout(idle, read_frame(&mut rd, size as usize)).await {
            Ok(Ok(frame)) => frame,
            Ok(Err(_)) => break,
            Err(_) => {
                count(&k, "idle_timeout");
                break;
            }
        };
        match handlers::handle(&k, &mut session, frame.freeze()).await {
            Ok(Some(response)) => {
                match tokio::time::timeout(write_timeout, wr.write_all(&response)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => break,
                    Err(_) => {
                        count(&k, "write_timeout");
                        break;
                    }
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(error = %e, "closing the connection");
                break;
            }
        }
        if session.close_after_response {
            count(&k, "authentication_failed");
            break;
        }
        // A client ahead of its quota is muted: its next request is read only later.
        if let Some(until) = session.quotas.as_mut().and_then(|q| q.mute_until.take()) {
            tokio::select! {
                _ = tokio::time::sleep_until(until.into()) => {}
                _ = shutdown.wait() => break,
            }
        }
    }
    k.metrics.connections.dec();
}

/// Reads a request of `size` bytes, growing the buffer as the bytes arrive: a client that
/// announces a large request and sends little of it holds little memory.
async fn read_frame<R: AsyncRead + Unpin>(rd: &mut R, size: usize) -> std::io::Result<BytesMut> {
    let mut frame = BytesMut::new();
    while frame.len() < size {
        let want = (size - frame.len()).min(READ_CHUNK);
        frame.reserve(want);
        let n = (&mut *rd).take(want as u64).read_buf(&mut frame).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(frame)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::read_frame;

    #[tokio::test]
    async fn a_frame_is_read_whole_across_chunks() {
        let data: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let mut rd = &data[..];
        let frame = read_frame(&mut rd, data.len()).await.unwrap();
        assert_eq!(&frame[..], &data[..]);
        let mut short = &data[..10];
        assert!(read_frame(&mut short, 11).await.is_err());
    }
}
