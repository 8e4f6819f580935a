//! Request bodies read whole before their call starts, within one budget of bytes for the
//! whole process (`max_buffered_request_bytes`). The faces read a message before its call
//! takes a slot (a peer that never sends it must not hold one), so what is being read is
//! bounded by nothing else: one HTTP/2 connection may have hundreds of streams each
//! receiving up to `max_request_bytes`. Each chunk is counted as it arrives, and one that
//! would go beyond the budget refuses its call at once, as a call beyond
//! `max_concurrent_calls` is refused: a quick refusal, never a wait.

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::Body;
use http_body_util::BodyExt as _;
use tokio::sync::OwnedSemaphorePermit;

use super::Capacity;

/// What a call refused for `max_buffered_request_bytes` is told.
pub const OVER_BUDGET: &str = "overloaded: the requests being read hold max_buffered_request_bytes; retry, on another replica if there is one";

/// A body read whole, its bytes counted against the budget until this is dropped.
#[derive(Debug)]
pub struct ReadBody {
    pub bytes: Bytes,
    pub trailers: Option<HeaderMap>,
    /// The body's share of `max_buffered_request_bytes`.
    pub held: Held,
}

/// The bytes of the budget a unary gRPC call holds for its message, read whole and weighed
/// decoded (`app::overload`), handed to its handler in the request's extensions when they
/// are more than half the headroom a call has beside what it declares
/// (`Capacity::headroom`): a tree the handler parses is judged too large with them
/// (`TreeBudget::holding`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MessageHeld(pub usize);

/// Bytes of the budget, given back when dropped.
#[derive(Debug, Default)]
pub struct Held(Option<OwnedSemaphorePermit>);

impl Held {
    /// Holds `more` with these, given back together.
    pub fn add(&mut self, more: OwnedSemaphorePermit) {
        match self.0.as_mut() {
            Some(held) => held.merge(more),
            None => self.0 = Some(more),
        }
    }
}

/// Why a body was not read.
#[derive(Debug, PartialEq, Eq)]
pub enum Unread {
    /// Longer than the limit it was read with.
    TooLarge,
    /// Its bytes would take the bytes being held beyond `max_buffered_request_bytes`.
    OverBudget,
    /// The peer ended or reset the stream before the end of the body.
    CutOff,
}

impl Capacity {
    /// Reads `body` whole, up to `max_bytes`, within the process's budget of buffered bytes.
    pub async fn read_whole<B>(&self, body: B, max_bytes: usize) -> Result<ReadBody, Unread>
    where
        B: Body<Data = Bytes>,
    {
        let mut body = std::pin::pin!(body);
        // One chunk is the usual body (a decision's request is a few kilobytes): kept as it
        // came; more are copied into one buffer.
        let mut first: Option<Bytes> = None;
        let mut more: Option<BytesMut> = None;
        let mut length = 0usize;
        let mut held: Option<OwnedSemaphorePermit> = None;
        let mut trailers = None;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| Unread::CutOff)?;
            let frame = match frame.into_data() {
                Ok(data) => data,
                Err(frame) => {
                    if let Ok(more) = frame.into_trailers() {
                        trailers.get_or_insert_with(HeaderMap::new).extend(more);
                    }
                    continue;
                }
            };
            if frame.is_empty() {
                continue;
            }
            length = length.saturating_add(frame.len());
            if length > max_bytes {
                return Err(Unread::TooLarge);
            }
            let permit = self.hold_bytes(frame.len()).ok_or(Unread::OverBudget)?;
            match held.as_mut() {
                Some(held) => held.merge(permit),
                None => held = Some(permit),
            }
            match (&first, more.as_mut()) {
                (None, _) => first = Some(frame),
                (Some(_), Some(whole)) => whole.extend_from_slice(&frame),
                (Some(earlier), None) => {
                    let mut whole = BytesMut::with_capacity(length);
                    whole.extend_from_slice(earlier);
                    whole.extend_from_slice(&frame);
                    more = Some(whole);
                }
            }
        }
        let bytes = match more {
            Some(whole) => whole.freeze(),
            None => first.unwrap_or_default(),
        };
        Ok(ReadBody {
            bytes,
            trailers,
            held: Held(held),
        })
    }
}

#[cfg(test)]
mod tests;
