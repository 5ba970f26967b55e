//! The agent API's connections, bounded: accepted through the node's shared admission
//! ([`Acceptor`]: banned addresses, `max_connections`, per-address count and rate, each
//! refusal counted), and closed after `idle_timeout_ms` without a byte either way (a long
//! poll answers within `max_wait_ms`, an event stream writes a keepalive every 15 s, so
//! only dead or stalled connections reach it).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use strata_frontend::accept::Acceptor;
use strata_frontend::admission::Admitted;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// The agent API's listener for `axum::serve`.
pub struct Gated {
    acceptor: Acceptor<()>,
    local: SocketAddr,
    idle: Duration,
}

impl Gated {
    /// Connections from `acceptor` (bound at `local`), closed after `idle` without traffic.
    pub fn new(acceptor: Acceptor<()>, local: SocketAddr, idle: Duration) -> Self {
        Gated {
            acceptor,
            local,
            idle,
        }
    }
}

impl axum::serve::Listener for Gated {
    type Io = Connection;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let socket = self.acceptor.next().await;
        let connection = Connection {
            stream: socket.stream,
            _admitted: socket.admitted,
            idle: self.idle,
            deadline: Box::pin(tokio::time::sleep(self.idle)),
            preface: 0,
        };
        (connection, socket.addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// An admitted connection: its place in the gate is given back when it closes.
pub struct Connection {
    stream: TcpStream,
    _admitted: Admitted,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
    /// How much of HTTP/2's connection preface the first bytes matched; `u8::MAX` once
    /// they are known not to be one.
    preface: u8,
}

/// How an HTTP/2 connection starts. The API speaks HTTP/1.1 only: over HTTP/2 one
/// connection would carry many long polls, past what `max_connections` bounds.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

impl Connection {
    /// `polled`, an I/O step's outcome: traffic starts the idle deadline again; a step that
    /// waits fails once the connection has been idle too long.
    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match polled {
            Poll::Ready(r) => {
                let next = Instant::now() + self.idle;
                self.deadline.as_mut().reset(next);
                Poll::Ready(r)
            }
            Poll::Pending if self.deadline.as_mut().poll(cx).is_ready() => {
                Poll::Ready(Err(timed_out()))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

fn timed_out() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "agent API connection idle too long",
    )
}

impl AsyncRead for Connection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.stream).poll_read(cx, buf);
        if this.preface != u8::MAX && matches!(polled, Poll::Ready(Ok(()))) {
            for &b in &buf.filled()[before..] {
                if b != H2_PREFACE[usize::from(this.preface)] {
                    this.preface = u8::MAX;
                    break;
                }
                this.preface += 1;
                if usize::from(this.preface) == H2_PREFACE.len() {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "the agent API speaks HTTP/1.1 only",
                    )));
                }
            }
        }
        this.watch(cx, polled)
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.watch(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.watch(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
