use opentelemetry::trace::{SpanContext, TraceFlags, TraceState};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt as _;

use super::super::{SamplerChoice, layer, sampled_span};
use super::*;
use crate::telemetry::Rpc;

/// Trace ids below every ratio's threshold and above every one short of 1
/// (`TraceIdRatioBased` reads the low 63 bits).
const LOW: TraceId =
    TraceId::from_bytes(0x4bf9_2f35_77b3_4da6_0000_0000_0000_0000_u128.to_be_bytes());
const HIGH: TraceId =
    TraceId::from_bytes(0x4bf9_2f35_77b3_4da6_ffff_ffff_ffff_ffff_u128.to_be_bytes());

fn caller(trace_id: TraceId, sampled: bool) -> Context {
    let flags = if sampled {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    };
    let remote = SpanContext::new(
        trace_id,
        SpanId::from_bytes([7; 8]),
        flags,
        true,
        TraceState::default(),
    );
    Context::new().with_remote_span_context(remote)
}

fn verdict_of(choice: SamplerChoice, parent: &Context) -> Option<Kept> {
    verdict(
        &choice.sampler(),
        parent,
        "smartauthz.v1.AuthzService/CheckAccess",
    )
}

#[test]
fn a_callers_decision_is_followed_by_parent_based_samplers() {
    for choice in [
        SamplerChoice::ParentBasedAlwaysOn,
        SamplerChoice::ParentBasedAlwaysOff,
        SamplerChoice::ParentBasedRatio(0.0),
        SamplerChoice::ParentBasedRatio(1.0),
    ] {
        assert_eq!(
            verdict_of(choice, &caller(HIGH, true)),
            Some(Kept::Child),
            "{choice}"
        );
        assert_eq!(verdict_of(choice, &caller(LOW, false)), None, "{choice}");
    }
}

#[test]
fn a_ratio_sampler_reads_the_callers_trace_id_not_its_flag() {
    let choice = SamplerChoice::Ratio(0.5);
    assert_eq!(verdict_of(choice, &caller(LOW, false)), Some(Kept::Child));
    assert_eq!(verdict_of(choice, &caller(HIGH, true)), None);
}

#[test]
fn new_traces_are_rooted_or_dropped_as_the_root_sampler_says() {
    let none = Context::new();
    for choice in [SamplerChoice::AlwaysOn, SamplerChoice::ParentBasedAlwaysOn] {
        let Some(Kept::Root(trace_id)) = verdict_of(choice, &none) else {
            panic!("{choice} roots a new trace");
        };
        assert_ne!(trace_id, TraceId::INVALID);
    }
    for choice in [
        SamplerChoice::AlwaysOff,
        SamplerChoice::ParentBasedAlwaysOff,
        SamplerChoice::ParentBasedRatio(0.0),
    ] {
        assert_eq!(verdict_of(choice, &none), None, "{choice}");
    }
    assert_eq!(
        verdict_of(SamplerChoice::AlwaysOff, &caller(LOW, true)),
        None
    );
}

/// The SDK, behind the `tracing` layer the service installs, with `choice` and the id
/// generator of the service.
fn with_sdk<R>(choice: SamplerChoice, run: impl FnOnce(&Sampler) -> R) -> R {
    let sampler = choice.sampler();
    let provider = SdkTracerProvider::builder()
        .with_sampler(sampler.clone())
        .with_id_generator(GateIds::default())
        .build();
    let subscriber = tracing_subscriber::registry().with(layer(&provider));
    tracing::subscriber::with_default(subscriber, || run(&sampler))
}

fn started(span: &Span) -> SpanContext {
    span.context().span().span_context().clone()
}

#[test]
fn a_root_span_carries_the_trace_id_it_was_sampled_on() {
    with_sdk(SamplerChoice::AlwaysOn, |_| {
        let span = tracing::info_span!("rpc");
        start_root(&span, LOW);
        assert_eq!(started(&span).trace_id(), LOW);
        // Handed over once: the next span draws its own.
        let next = tracing::info_span!("rpc");
        assert_ne!(started(&next).trace_id(), LOW);
    });
}

/// Were the SDK to draw another trace id at start, a ratio of one half would drop about
/// half of the spans kept here, and keep a quarter of new traces where it means a half.
#[test]
fn the_sdk_samples_every_span_the_verdict_keeps() {
    let (kept, dropped) = with_sdk(SamplerChoice::ParentBasedRatio(0.5), |sampler| {
        let (mut kept, mut dropped) = (0, 0);
        for _ in 0..64 {
            let span = sampled_span(Rpc::CheckAccess, Context::new(), sampler);
            if span.is_disabled() {
                dropped += 1;
            } else {
                assert!(started(&span).is_sampled());
                kept += 1;
            }
        }
        let child = sampled_span(Rpc::CheckAccess, caller(HIGH, true), sampler);
        assert_eq!(started(&child).trace_id(), HIGH);
        assert!(started(&child).is_sampled());
        let unsampled = sampled_span(Rpc::CheckAccess, caller(LOW, false), sampler);
        assert!(unsampled.is_disabled());
        (kept, dropped)
    });
    assert!(kept > 0 && dropped > 0, "kept {kept}, dropped {dropped}");
}
