//! The request body of a streaming call (ext_proc, reflection), each gRPC message's bytes
//! counted against `max_buffered_request_bytes` while it arrives. tonic's decoder keeps a
//! message it has not wholly received in memory, up to the service's decoding limit, and
//! reads on while the handler waits for it: a peer that opens many streams, sends most of
//! a large message on each and stops would hold that much per stream. A message's bytes
//! are given back once its last byte has passed (the handler then takes it); one that
//! would go beyond the budget ends the call `RESOURCE_EXHAUSTED`, as a unary call is
//! refused (`overload`).
//!
//! ext_proc's messages are also weighed as they will be decoded (`grpc::wire`), as a unary
//! call's are: a message that arrives in one chunk is weighed in it, one that spans chunks
//! is copied (and the copy counted) while it arrives, and once it is whole its weight is
//! held in place of its bytes until the stream next reads its body. tonic reads the body
//! only once it has handed the handler every whole message it holds, and the handler asks
//! for a message only once done with the one before.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::sync::OwnedSemaphorePermit;
use tonic::body::Body;

use crate::authorize::{Capacity, OVER_BUDGET, busy};
use crate::grpc::wire::{self, Schema};

use super::overload::{undecodable, wire_refusal};

/// The 5-byte prefix of a gRPC message: a compression flag and a big-endian length.
const PREFIX: usize = 5;

pub struct CountedMessages {
    inner: Body,
    capacity: Capacity,
    /// How the messages are weighed decoded; `None`: by their bytes alone.
    schema: Option<Schema>,
    prefix: [u8; PREFIX],
    prefix_read: usize,
    /// Bytes of the current message still to come, once its prefix is read.
    remaining: usize,
    /// The current message's bytes so far, prefix included (three times, with a schema:
    /// tonic's, and the copy to weigh as its vector grows).
    held: Option<OwnedSemaphorePermit>,
    /// With a schema, the current message so far when it spans chunks, to be weighed once
    /// whole.
    message: Vec<u8>,
    /// The weight of the whole messages read since the handler last asked for one.
    decoded: Option<OwnedSemaphorePermit>,
}

impl CountedMessages {
    /// `inner`'s messages counted by their bytes.
    pub fn new(inner: Body, capacity: Capacity) -> Self {
        CountedMessages {
            inner,
            capacity,
            schema: None,
            prefix: [0; PREFIX],
            prefix_read: 0,
            remaining: 0,
            held: None,
            message: Vec::new(),
            decoded: None,
        }
    }

    /// `inner`'s messages counted by their bytes while they arrive, then weighed as
    /// `schema`'s are decoded.
    pub fn weighed(inner: Body, capacity: Capacity, schema: Schema) -> Self {
        CountedMessages {
            schema: Some(schema),
            ..CountedMessages::new(inner, capacity)
        }
    }

    /// Counts `data`; the refusal that ends the call when its bytes would go beyond the
    /// budget, or a whole message's weight would.
    fn count(&mut self, mut data: &[u8]) -> Result<(), tonic::Status> {
        while !data.is_empty() {
            if self.prefix_read == 0
                && let Some(length) = self.whole_message_at(data)
            {
                // A whole message at the start of the chunk: weighed where it lies.
                let (message, after) = data.split_at(PREFIX + length);
                self.hold_weight(message)?;
                data = after;
                continue;
            }
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
            // With a schema, the copy too, at up to twice its length as its vector grows.
            let copies = if self.schema.is_some() { 3 } else { 1 };
            let Some(permit) = self.capacity.hold_bytes(take * copies) else {
                return Err(busy(OVER_BUDGET));
            };
            match self.held.as_mut() {
                Some(held) => held.merge(permit),
                None => self.held = Some(permit),
            }
            if self.schema.is_some() {
                self.message.extend_from_slice(&data[..take]);
            }
            data = &data[take..];
            if self.prefix_read == PREFIX && self.remaining == 0 {
                // The message is whole: the decoder hands it to the handler.
                self.held = None;
                self.prefix_read = 0;
                let message = std::mem::take(&mut self.message);
                self.hold_weight(&message)?;
            }
        }
        Ok(())
    }

    /// The length of the message whose prefix starts `data` when all of it is in `data`
    /// and it is to be weighed.
    fn whole_message_at(&self, data: &[u8]) -> Option<usize> {
        self.schema?;
        let (prefix, rest) = data.split_first_chunk::<PREFIX>()?;
        let [_, length @ ..] = *prefix;
        let length = usize::try_from(u32::from_be_bytes(length)).ok()?;
        (rest.len() >= length).then_some(length)
    }

    /// Holds the weight of `framed`, a whole message with its prefix, until the handler asks
    /// for the message after it: what it takes decoded, and its bytes in tonic's buffer
    /// while it is decoded. Without a schema, or compressed (tonic refuses it), nothing.
    fn hold_weight(&mut self, framed: &[u8]) -> Result<(), tonic::Status> {
        let Some(schema) = self.schema else {
            return Ok(());
        };
        let Some((&[0, ..], message)) = framed.split_first_chunk::<PREFIX>() else {
            return Ok(());
        };
        let weight = wire::weigh(message, schema)
            .map_err(|costly| wire_refusal(&costly))?
            .saturating_add(framed.len());
        let permit = self
            .capacity
            .try_hold_bytes(weight)
            .ok_or_else(|| undecodable(&self.capacity, weight))?;
        match self.decoded.as_mut() {
            Some(decoded) => decoded.merge(permit),
            None => self.decoded = Some(permit),
        }
        Ok(())
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
        // tonic reads the body only once the messages it has are handed to the handler,
        // and the handler asks for the next one only once done with the one before.
        this.decoded = None;
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(context));
        if let Some(Ok(frame)) = &frame
            && let Some(data) = frame.data_ref()
            && let Err(refusal) = this.count(data)
        {
            this.held = None;
            this.message = Vec::new();
            return Poll::Ready(Some(Err(refusal)));
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
