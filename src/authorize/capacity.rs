//! The limit on calls in flight, `max_concurrent_calls`, shared by every face: one call
//! beyond it is refused at once (and counted) instead of queueing without bound. A queue
//! only turns an overload into timeouts for everyone, while a quick refusal lets a client
//! retry on another replica. Each face says "refused" in its own wire format.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::telemetry;

/// The slots for calls in flight, across every connection of every face.
#[derive(Clone, Debug)]
pub struct Capacity {
    slots: Arc<Semaphore>,
    limit: usize,
    /// `max_buffered_request_bytes`, one permit a byte (`reading`, `tree_budget`).
    buffered: Arc<Semaphore>,
    buffered_limit: usize,
}

/// What a call holds beside what it says it holds: its token, headers and request line. A
/// call refused within this much of the whole budget (or a thirty-second of it, if less) is
/// too large: the rest of its own request is what it lacks, and no retry finds more.
const HEADROOM: usize = 128 * 1024;

/// One call's slot, given back when dropped.
#[derive(Debug)]
pub struct Slot(#[allow(dead_code, reason = "held for its drop")] OwnedSemaphorePermit);

impl Capacity {
    /// `limit` calls in flight, `max_buffered_bytes` of request bodies held at once.
    pub fn new(limit: usize, max_buffered_bytes: usize) -> Self {
        Capacity {
            slots: Arc::new(Semaphore::new(limit)),
            limit,
            buffered: Arc::new(Semaphore::new(
                max_buffered_bytes.min(Semaphore::MAX_PERMITS),
            )),
            buffered_limit: max_buffered_bytes.min(Semaphore::MAX_PERMITS),
        }
    }

    /// The whole budget of buffered bytes: what no request may go beyond alone.
    pub fn buffered_limit(&self) -> usize {
        self.buffered_limit
    }

    /// Whether a call that would hold `bytes` of the budget in all is too large for it: beyond
    /// the whole budget, or within [`HEADROOM`] of it. Refused less, it is only busy.
    pub fn beyond_whole_budget(&self, bytes: usize) -> bool {
        bytes.saturating_add(self.headroom()) > self.buffered_limit
    }

    /// What a call may hold beside what it declares and still be judged busy, not too
    /// large: [`HEADROOM`], or a thirty-second of the budget if less.
    pub fn headroom(&self) -> usize {
        HEADROOM.min(self.buffered_limit / 32)
    }

    /// `bytes` of the budget of buffered request bytes, or `None` (counted as shed) when
    /// they are not free.
    pub fn hold_bytes(&self, bytes: usize) -> Option<OwnedSemaphorePermit> {
        let held = self.try_hold_bytes(bytes);
        if held.is_none() {
            telemetry::metrics::shed();
        }
        held
    }

    /// [`Capacity::hold_bytes`], a refusal not counted: the caller may ask again for less.
    pub fn try_hold_bytes(&self, bytes: usize) -> Option<OwnedSemaphorePermit> {
        u32::try_from(bytes).ok().and_then(|bytes| {
            Arc::clone(&self.buffered)
                .try_acquire_many_owned(bytes)
                .ok()
        })
    }

    /// A slot for one call, or `None` (counted as shed) when `limit` calls are in flight.
    pub fn enter(&self) -> Option<Slot> {
        match Arc::clone(&self.slots).try_acquire_owned() {
            Ok(permit) => Some(Slot(permit)),
            Err(_) => {
                telemetry::metrics::shed();
                None
            }
        }
    }

    /// What a refused caller is told.
    pub fn refusal_message(&self) -> String {
        format!(
            "overloaded: more than {} calls in flight (max_concurrent_calls); retry, on another replica if there is one",
            self.limit
        )
    }
}

/// How long a caller refused for load is asked to wait: the HTTP face's `Retry-After: 1`.
pub const RETRY_PUSHBACK_MS: &str = "1000";

/// A gRPC refusal for load (too many calls in flight, too many bytes being read): the
/// `RESOURCE_EXHAUSTED` a retry may get past, marked with gRPC's retry pushback
/// (`grpc-retry-pushback-ms`, gRFC A6). A request larger than the service takes is
/// `RESOURCE_EXHAUSTED` too, without it: the clients tell the two apart by it, so that
/// what no retry gets through is not retried.
pub fn busy(message: impl Into<String>) -> tonic::Status {
    let mut status = tonic::Status::resource_exhausted(message);
    status.metadata_mut().insert(
        "grpc-retry-pushback-ms",
        tonic::metadata::MetadataValue::from_static(RETRY_PUSHBACK_MS),
    );
    status
}
