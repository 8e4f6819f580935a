//! [`observe`]: one RPC run inside its span, timed, its upstream calls counted, in a future
//! a few words larger than the call it wraps.
//!
//! The span is held by reference, or owned (any `Borrow<Span>`): a face that boxes the
//! observed call as its answer, without an `async` block around it, gives it the span.
//!
//! Written as a future by hand rather than as `async fn`s because an `async fn` that takes
//! a future and awaits it keeps the argument and the awaited copy side by side: the three
//! layers this replaces (the timer, the span, the upstream count) made the 2.4 KB future of
//! a `CheckAccess` handler a 13.3 KB one (`-Zprint-type-sizes`), which every call built on
//! the stack and copied into its box: 2.7% of a cached call's server CPU in `memmove`
//! (docs/performance-log.md, "What the profile shows").

use std::borrow::Borrow;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tracing::Span;

use super::metrics::RpcTimer;
use super::{Rpc, traces};
use crate::token::metrics::counting_upstream_calls;

pin_project! {
    /// The future of [`observe`].
    #[must_use = "futures do nothing unless polled"]
    pub struct Observed<S, F> {
        #[pin]
        call: F,
        span: S,
        timer: Option<RpcTimer>,
        upstream_calls: u64,
    }
}

/// Runs one RPC under its span, with its latency, in-flight count, status and upstream
/// calls recorded. The answer of `call` is returned unchanged.
pub fn observe<S, F, T>(rpc: Rpc, span: S, call: F) -> Observed<S, F>
where
    S: Borrow<Span>,
    F: Future<Output = Result<T, tonic::Status>>,
{
    Observed {
        call,
        span,
        timer: Some(RpcTimer::start(rpc)),
        upstream_calls: 0,
    }
}

impl<S, F, T> Future for Observed<S, F>
where
    S: Borrow<Span>,
    F: Future<Output = Result<T, tonic::Status>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let span: &Span = (*this.span).borrow();
        let result = if span.is_disabled() && !traces::enabled() {
            ready!(this.call.poll(context))
        } else {
            // Counted under a disabled span too when traces are on (a call the sampler
            // dropped), so that an upstream call inside it starts no trace of its own.
            let _entered = span.enter();
            let (poll, calls) =
                counting_upstream_calls(*this.upstream_calls, || this.call.poll(context));
            *this.upstream_calls = calls;
            let result = ready!(poll);
            traces::record_upstream_calls(span, calls);
            result
        };
        let code = result.as_ref().err().map(tonic::Status::code);
        if let Some(timer) = this.timer.take() {
            timer.finish(code);
        }
        traces::record_status(span, code);
        Poll::Ready(result)
    }
}

#[cfg(test)]
mod tests;
