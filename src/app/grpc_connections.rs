//! The gRPC listener's connections, bounded in number and in how long one may stay silent.
//!
//! tonic accepts every connection and waits for its HTTP/2 preface as long as the peer
//! likes: a peer that opens connections and sends nothing holds a file descriptor and a task
//! each, without end (HTTP/2 keepalive pings start only after the preface, and TCP
//! keepalive only notices peers that are gone). So:
//! - at most `max_connections` are open at once; one more waits in the listen backlog
//!   until another closes ([`Bounded`]; with TLS, the slot is taken before the handshake,
//!   `tls::incoming`);
//! - a connection whose first 24 bytes (the HTTP/2 client preface, RFC 9113 §3.4) have not
//!   arrived within [`PREFACE_TIMEOUT`] is closed ([`Admitted`]). After the preface, HTTP/2
//!   keepalive finds the peers that stopped answering.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use tokio_stream::Stream;
use tokio_util::sync::PollSemaphore;
use tonic::transport::server::Connected;

/// How long a new connection has to send the HTTP/2 preface.
pub const PREFACE_TIMEOUT: Duration = Duration::from_secs(10);

/// The client preface's length (RFC 9113 §3.4: `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`).
const PREFACE_BYTES: usize = 24;

/// Accepted connections, at most `limit` open at once: the listener is not polled while
/// every slot is taken, so one more waits in the kernel's backlog.
pub struct Bounded<S> {
    accepted: S,
    slots: PollSemaphore,
    slot: Option<OwnedSemaphorePermit>,
    preface_timeout: Duration,
    /// Set after a failed `accept`.
    pause: Option<Pin<Box<Sleep>>>,
}

impl<S> Bounded<S> {
    pub fn new(accepted: S, limit: usize) -> Self {
        Self::with_preface_timeout(accepted, limit, PREFACE_TIMEOUT)
    }

    fn with_preface_timeout(accepted: S, limit: usize, preface_timeout: Duration) -> Self {
        Bounded {
            accepted,
            slots: PollSemaphore::new(Arc::new(Semaphore::new(limit))),
            slot: None,
            preface_timeout,
            pause: None,
        }
    }
}

impl<S, T> Stream for Bounded<S>
where
    S: Stream<Item = std::io::Result<T>> + Unpin,
{
    type Item = std::io::Result<Admitted<T>>;

    /// Failed accepts are logged and paused on here, not handed to tonic, which would poll
    /// again at once.
    fn poll_next(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(pause) = &mut this.pause {
                ready!(pause.as_mut().poll(context));
                this.pause = None;
            }
            let slot = match this.slot.take() {
                Some(slot) => slot,
                // The semaphore is never closed: `None` cannot come.
                None => match ready!(this.slots.poll_acquire(context)) {
                    Some(slot) => slot,
                    None => return Poll::Ready(None),
                },
            };
            let polled = Pin::new(&mut this.accepted).poll_next(context);
            let Poll::Ready(Some(Ok(io))) = polled else {
                // The slot waits for the next connection.
                this.slot = Some(slot);
                match polled {
                    Poll::Ready(Some(Err(error))) => {
                        this.pause = super::accept_pause(&error)
                            .map(|pause| Box::pin(tokio::time::sleep(pause)));
                        continue;
                    }
                    Poll::Ready(None) => return Poll::Ready(None),
                    _ => return Poll::Pending,
                }
            };
            return Poll::Ready(Some(Ok(Admitted::timed(io, slot, this.preface_timeout))));
        }
    }
}

/// A connection under the limit: holds its slot while open, and fails its reads once the
/// preface is overdue.
pub struct Admitted<T> {
    io: T,
    _slot: OwnedSemaphorePermit,
    /// `None` once the preface has arrived.
    preface: Option<Preface>,
}

struct Preface {
    missing: usize,
    deadline: Pin<Box<Sleep>>,
}

impl<T> Admitted<T> {
    /// `io`, accepted in `slot` (a TLS connection, whose slot was taken before its
    /// handshake), with its preface due within [`PREFACE_TIMEOUT`] from now.
    pub fn new(io: T, slot: OwnedSemaphorePermit) -> Self {
        Self::timed(io, slot, PREFACE_TIMEOUT)
    }

    fn timed(io: T, slot: OwnedSemaphorePermit, preface_timeout: Duration) -> Self {
        Admitted {
            io,
            _slot: slot,
            preface: Some(Preface {
                missing: PREFACE_BYTES,
                deadline: Box::pin(tokio::time::sleep(preface_timeout)),
            }),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Admitted<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let before = buffer.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(context, buffer);
        let Some(preface) = &mut this.preface else {
            return polled;
        };
        preface.missing = preface
            .missing
            .saturating_sub(buffer.filled().len() - before);
        if preface.missing == 0 {
            this.preface = None;
        } else if polled.is_pending() && preface.deadline.as_mut().poll(context).is_ready() {
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no HTTP/2 preface in time",
            )));
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Admitted<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(context, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffers: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(context, buffers)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(context)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(context)
    }
}

impl<T: Connected> Connected for Admitted<T> {
    type ConnectInfo = T::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

#[cfg(test)]
mod tests;
