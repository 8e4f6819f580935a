//! Sampling decided when an RPC arrives, so a call whose trace is dropped builds no span.
//!
//! `tracing-opentelemetry` gathers a span's attributes from the moment it opens and asks the
//! SDK's sampler only when the span starts, at its end (or when its context is first read).
//! An RPC whose trace was then dropped had paid for all of it: about 4 µs, as much as the
//! rest of a cached `CheckAccess` in process (docs/performance-log.md, "Traces sampled when the
//! call arrives"). So [`verdict`] asks the same sampler first, with what the SDK will give
//! it:
//! - under the caller's `traceparent`, the parent context and its trace id: the SDK's
//!   answer will be the same;
//! - for a new trace, a trace id drawn here. The SDK draws its own at start, so a ratio
//!   sampler would decide twice (a ratio of r would keep r²) unless the span gets this
//!   one: [`start_root`] starts the span at once with it, handed over by [`GateIds`].

use std::cell::Cell;

use opentelemetry::Context;
use opentelemetry::trace::{SpanId, SpanKind, TraceContextExt as _, TraceId};
use opentelemetry_sdk::trace::{
    IdGenerator, RandomIdGenerator, Sampler, SamplingDecision, ShouldSample as _,
};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// How a span the sampler keeps is exported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kept {
    /// As a child of the caller's span.
    Child,
    /// As the root of a new trace, under this trace id.
    Root(TraceId),
}

/// The verdict of `sampler` on a span named `name` under `parent` (the caller's context,
/// empty for a new trace): `None` when it is not exported. `RecordOnly` counts as a drop:
/// the only processor is the exporter, which takes sampled spans alone.
pub(super) fn verdict(sampler: &Sampler, parent: &Context, name: &str) -> Option<Kept> {
    let remote = parent.span().span_context().clone();
    let trace_id = if remote.is_valid() {
        remote.trace_id()
    } else {
        RandomIdGenerator::default().new_trace_id()
    };
    let sampled = sampler.should_sample(Some(parent), trace_id, name, &SpanKind::Server, &[], &[]);
    match sampled.decision {
        SamplingDecision::RecordAndSample if remote.is_valid() => Some(Kept::Child),
        SamplingDecision::RecordAndSample => Some(Kept::Root(trace_id)),
        SamplingDecision::RecordOnly | SamplingDecision::Drop => None,
    }
}

thread_local! {
    /// The trace id [`start_root`] hands to the span it is starting on this thread.
    static PRESET: Cell<Option<TraceId>> = const { Cell::new(None) };
}

/// Starts `span` now, as the root of the trace `trace_id`, the one its sampling was decided
/// on. The SDK starts a span synchronously when its context is first read, and takes its
/// trace id from [`GateIds`] then; a span without an OpenTelemetry layer leaves the id
/// untaken, and it is cleared.
pub(super) fn start_root(span: &Span, trace_id: TraceId) {
    PRESET.set(Some(trace_id));
    let _ = span.context();
    PRESET.set(None);
}

/// The tracer provider's id generator: the SDK's random one, except for the trace id
/// [`start_root`] has set for the span it starts.
#[derive(Debug, Default)]
pub(super) struct GateIds(RandomIdGenerator);

impl IdGenerator for GateIds {
    fn new_trace_id(&self) -> TraceId {
        PRESET.take().unwrap_or_else(|| self.0.new_trace_id())
    }

    fn new_span_id(&self) -> SpanId {
        self.0.new_span_id()
    }
}

#[cfg(test)]
mod tests;
