//! The request body of a streaming call (ext_proc, reflection), each gRPC message's bytes
//! counted against `max_buffered_request_bytes` while it arrives. tonic's decoder keeps a
//! message it has not wholly received in memory, up to the service's decoding limit, and
//! reads on while the handler waits for it: a peer that opens many streams, sends most of
//! a large message on each and stops would hold that much per stream. A message's bytes
//! are given back once its last byte has passed (the handler then takes it); one that
//! would go beyond the budget ends the call `RESOURCE_EXHAUSTED`, as a unary call is
//! refused (`overload`).

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::sync::OwnedSemaphorePermit;
use tonic::body::Body;

use crate::authorize::{Capacity, OVER_BUDGET, busy};

/// The 5-byte prefix of a gRPC message: a compression flag and a big-endian length.
const PREFIX: usize = 5;

pub struct CountedMessages {
    inner: Body,
    capacity: Capacity,
    prefix: [u8; PREFIX],
    prefix_read: usize,
    /// Bytes of the current message still to come, once its prefix is read.
    remaining: usize,
    /// The current message's bytes so far, prefix included.
    held: Option<OwnedSemaphorePermit>,
}

impl CountedMessages {
    pub fn new(inner: Body, capacity: Capacity) -> Self {
        CountedMessages {
            inner,
            capacity,
            prefix: [0; PREFIX],
            prefix_read: 0,
            remaining: 0,
            held: None,
        }
    }

    /// Counts `data`; false when its bytes would go beyond the budget.
    fn count(&mut self, mut data: &[u8]) -> bool {
        while !data.is_empty() {
            let take = if self.prefix_read < PREFIX {
                let take = (PREFIX - self.prefix_read).min(data.len());
                self.prefix[self.prefix_read..self.prefix_read + take]
                    .copy_from_slice(&data[..take]);
                self.prefix_read += take;
                if self.prefix_read == PREFIX {
                    let [_, length @ ..] = self.prefix;
                    self.remaining =
                        usize::try_from(u32::from_be_bytes(length)).unwrap_or(usize::MAX);
                }
                take
            } else {
                let take = self.remaining.min(data.len());
                self.remaining -= take;
                take
            };
            let Some(permit) = self.capacity.hold_bytes(take) else {
                return false;
            };
            match self.held.as_mut() {
                Some(held) => held.merge(permit),
                None => self.held = Some(permit),
            }
            data = &data[take..];
            if self.prefix_read == PREFIX && self.remaining == 0 {
                // The message is whole: the decoder hands it to the handler.
                self.held = None;
                self.prefix_read = 0;
            }
        }
        true
    }
}

impl HttpBody for CountedMessages {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        let this = &mut *self;
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(context));
        if let Some(Ok(frame)) = &frame
            && let Some(data) = frame.data_ref()
            && !this.count(data)
        {
            this.held = None;
            return Poll::Ready(Some(Err(busy(OVER_BUDGET))));
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests;
