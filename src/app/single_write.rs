//! Connections that answer a unary call in one write.
//!
//! h2 copies a DATA frame's payload into its write buffer only up to a threshold, and chains
//! a larger one as a separate buffer that must be flushed before any other frame is
//! buffered. The threshold is 256 bytes on a connection with vectored writes and 1 KB on one
//! without. A `CheckAccess` answer is a few hundred bytes: chained, its trailers went out in
//! a second write of their own, which doubled the kernel time per call (docs/performance-log.md:
//! 2.0 writes per call against 0.96 for `Health/Check`). Declaring the connection without
//! vectored writes keeps answers up to 1 KB in the buffer with their trailers; writing one
//! buffer instead of two costs nothing.
//!
//! The performance report's load generator (`tests/common/perf/preencoded.rs`) wraps its own
//! connections in it for the same reason on the other side: a 1 KB request carrying a
//! token left in a system call and a TCP segment of its own.

use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

/// A connection that reports no vectored writes; everything else passes through.
#[derive(Debug)]
pub struct SingleWrite<T>(pub T);

impl<T: AsyncRead + Unpin> AsyncRead for SingleWrite<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(context, buffer)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for SingleWrite<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(context, buffer)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffers: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let first = buffers
            .iter()
            .find(|buffer| !buffer.is_empty())
            .map_or(&[][..], |buffer| &**buffer);
        Pin::new(&mut self.0).poll_write(context, first)
    }

    fn is_write_vectored(&self) -> bool {
        false
    }

    fn poll_flush(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(context)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(context)
    }
}

impl<T: Connected> Connected for SingleWrite<T> {
    type ConnectInfo = T::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.0.connect_info()
    }
}

#[cfg(test)]
mod tests;
