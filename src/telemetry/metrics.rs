//! Prometheus metrics: the names, the recorder (`metrics` + `metrics-exporter-prometheus`)
//! and the `/metrics` listener, separate from the API port.
//!
//! Every label value comes from an enum of the crate (`&'static str` only), never from a
//! request or a token, so the number of series is bounded. Until the recorder is installed
//! (metrics disabled) every function here returns after one atomic load.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::header::CONTENT_TYPE;
use axum::routing::get;
use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use super::{DecisionEvent, Face, Rpc};
use crate::decision::Outcome;
use crate::token::Authenticator;
use crate::token::metrics::{INTROSPECTION_DURATION, TOKEN_VERIFICATIONS};

/// Decisions, by `face`, `decision`, `reason`, `interaction` and `context`.
pub const DECISIONS: &str = "smart_authz_decisions_total";
/// Latency of each RPC, by `rpc`.
pub const RPC_DURATION: &str = "smart_authz_rpc_duration_seconds";
/// RPCs answered with a gRPC error, by `rpc` and `code`.
pub const RPC_ERRORS: &str = "smart_authz_rpc_errors_total";
/// RPCs being served, by `rpc`.
pub const REQUESTS_IN_FLIGHT: &str = "smart_authz_requests_in_flight";
pub const CACHE_HITS: &str = "smart_authz_token_cache_hits_total";
pub const CACHE_NEGATIVE_HITS: &str = "smart_authz_token_cache_negative_hits_total";
pub const CACHE_MISSES: &str = "smart_authz_token_cache_misses_total";
pub const CACHE_EVICTIONS: &str = "smart_authz_token_cache_evictions_total";
pub const CACHE_EXPIRATIONS: &str = "smart_authz_token_cache_expirations_total";
pub const CACHE_ENTRIES: &str = "smart_authz_token_cache_entries";
pub const CACHE_SIZE: &str = "smart_authz_token_cache_size_bytes";
/// Calls refused at once because too many were in flight (`max_concurrent_calls`).
pub const SHED_CALLS: &str = "smart_authz_shed_calls_total";
/// Entries removed from FHIR servers' answers, by `face` (docs/response-filtering.md).
pub const WITHHELD_ENTRIES: &str = "smart_authz_withheld_entries_total";
/// Always 1, labelled with the `version`.
pub const BUILD_INFO: &str = "smart_authz_build_info";

/// Bounds of the RPC latency buckets: a cached decision takes tens of microseconds, a cold
/// one with introspection up to the introspection timeout.
const RPC_BUCKETS: [f64; 16] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0,
];
const UPSTREAM_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

static ENABLED: AtomicBool = AtomicBool::new(false);
static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Counts the entries withheld from one answer.
pub fn record_withheld(rpc: Rpc, withheld: usize) {
    if enabled() && withheld > 0 {
        counter!(WITHHELD_ENTRIES, "face" => rpc.face().as_str())
            .increment(u64::try_from(withheld).unwrap_or(u64::MAX));
    }
}

/// Counts a call shed by the overload limit.
pub fn shed() {
    if enabled() {
        metrics::counter!(SHED_CALLS).increment(1);
    }
}

/// Whether metrics are recorded. Acquire, as the store is Release: a thread that sees
/// metrics enabled sees the recorder installed, so the handles it keeps (per RPC, per
/// decision's labels) are the recorder's, never the no-op handles of no recorder.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Acquire)
}

/// Installs the process-wide recorder once (later calls return the same handle); `None`
/// when another recorder was installed first.
pub fn install_recorder() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(RPC_DURATION.to_owned()), &RPC_BUCKETS)
                .and_then(|builder| {
                    builder.set_buckets_for_metric(
                        Matcher::Full(INTROSPECTION_DURATION.to_owned()),
                        &UPSTREAM_BUCKETS,
                    )
                });
            let installed = builder.and_then(PrometheusBuilder::install_recorder);
            match installed {
                Ok(handle) => {
                    describe();
                    ENABLED.store(true, Ordering::Release);
                    gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
                    Some(handle)
                }
                Err(error) => {
                    tracing::error!(%error, "metrics recorder not installed; /metrics stays empty");
                    None
                }
            }
        })
        .clone()
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        DECISIONS,
        "Authorization decisions by face, decision, reason, interaction and SMART context"
    );
    describe_histogram!(RPC_DURATION, Unit::Seconds, "Latency of each RPC");
    describe_counter!(RPC_ERRORS, "RPCs answered with a gRPC error, by code");
    describe_counter!(
        WITHHELD_ENTRIES,
        "Entries removed from FHIR servers' answers: a read of them is denied"
    );
    describe_gauge!(REQUESTS_IN_FLIGHT, "RPCs being served");
    describe_counter!(
        SHED_CALLS,
        "Calls answered RESOURCE_EXHAUSTED at once because max_concurrent_calls were in flight"
    );
    describe_counter!(
        CACHE_HITS,
        "Tokens answered from the cache (or a concurrent call's verification)"
    );
    describe_counter!(CACHE_NEGATIVE_HITS, "Cache hits that were a cached refusal");
    describe_counter!(
        CACHE_MISSES,
        "Tokens that needed a verification or introspection"
    );
    describe_counter!(
        CACHE_EVICTIONS,
        "Cache entries evicted to stay within max_bytes"
    );
    describe_counter!(CACHE_EXPIRATIONS, "Cache entries dropped at their expiry");
    describe_gauge!(CACHE_ENTRIES, "Tokens in the cache");
    describe_gauge!(
        CACHE_SIZE,
        Unit::Bytes,
        "Approximate size of the token cache"
    );
    crate::token::metrics::describe();
    describe_gauge!(BUILD_INFO, "Always 1; the version label names the build");
}

/// The labels of one decision counter: `face`, `decision`, `reason`, `interaction` and
/// `context`.
type DecisionLabels = (Face, Outcome, &'static str, &'static str, &'static str);

thread_local! {
    /// This thread's handles of the decision counters, one per label set it has met. The
    /// registry's look-up built a key (an allocation) and hashed the labels under its lock on
    /// every decision; it now runs once per set and thread. As bounded as the label sets.
    static DECISION_COUNTERS: RefCell<HashMap<DecisionLabels, Counter, foldhash::fast::RandomState>> =
        RefCell::default();
}

/// Counts one decision.
pub fn record_decision(event: &DecisionEvent<'_>) {
    if !enabled() {
        return;
    }
    let labels = (
        event.rpc.face(),
        event.outcome,
        event.reason,
        event.interaction(),
        event.context(),
    );
    DECISION_COUNTERS.with_borrow_mut(|counters| {
        counters
            .entry(labels)
            .or_insert_with(|| {
                let (face, outcome, reason, interaction, context) = labels;
                counter!(
                    DECISIONS,
                    "face" => face.as_str(),
                    "decision" => outcome.as_str(),
                    "reason" => reason,
                    "interaction" => interaction,
                    "context" => context,
                )
            })
            .increment(1);
    });
}

/// The per-RPC handles, looked up once: the hot path then only touches atomics.
struct RpcHandles {
    in_flight: Gauge,
    duration: Histogram,
}

fn rpc_handles(rpc: Rpc) -> &'static RpcHandles {
    static HANDLES: [OnceLock<RpcHandles>; 9] = [const { OnceLock::new() }; 9];
    let index = match rpc {
        Rpc::CheckAccess => 0,
        Rpc::BatchCheckAccess => 1,
        Rpc::IntrospectToken => 2,
        Rpc::EnvoyCheck => 3,
        Rpc::AuthzenEvaluation => 4,
        Rpc::AuthzenEvaluations => 5,
        Rpc::FilterResources => 6,
        Rpc::EnvoyProcess => 7,
        Rpc::AuthzenFilterResources => 8,
    };
    HANDLES[index].get_or_init(|| RpcHandles {
        in_flight: gauge!(REQUESTS_IN_FLIGHT, "rpc" => rpc.as_str()),
        duration: histogram!(RPC_DURATION, "rpc" => rpc.as_str()),
    })
}

/// Times one RPC and counts it in flight until [`RpcTimer::finish`] or drop (a call the
/// client cancelled is recorded as `cancelled`).
pub struct RpcTimer {
    rpc: Rpc,
    started: Option<Instant>,
}

impl RpcTimer {
    pub fn start(rpc: Rpc) -> Self {
        if !enabled() {
            return RpcTimer { rpc, started: None };
        }
        rpc_handles(rpc).in_flight.increment(1.0);
        RpcTimer {
            rpc,
            started: Some(Instant::now()),
        }
    }

    /// Records the latency and, for an error, its code.
    pub fn finish(mut self, code: Option<tonic::Code>) {
        self.record(code);
    }

    fn record(&mut self, code: Option<tonic::Code>) {
        let Some(started) = self.started.take() else {
            return;
        };
        let handles = rpc_handles(self.rpc);
        handles.duration.record(started.elapsed().as_secs_f64());
        handles.in_flight.decrement(1.0);
        if let Some(code) = code.filter(|code| *code != tonic::Code::Ok) {
            counter!(RPC_ERRORS, "rpc" => self.rpc.as_str(), "code" => code_label(code))
                .increment(1);
        }
    }
}

impl Drop for RpcTimer {
    fn drop(&mut self) {
        self.record(Some(tonic::Code::Cancelled));
    }
}

/// The gRPC status code as its canonical lower-case name.
pub fn code_label(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid_argument",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::PermissionDenied => "permission_denied",
        Code::ResourceExhausted => "resource_exhausted",
        Code::FailedPrecondition => "failed_precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out_of_range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data_loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

/// Copies the token cache's counters into the registry (they are kept by the cache itself,
/// so the hot path does not count twice).
pub fn publish_cache_stats(authenticator: &Authenticator) {
    if !enabled() {
        return;
    }
    let stats = authenticator.cache_stats();
    counter!(CACHE_HITS).absolute(stats.hits);
    counter!(CACHE_NEGATIVE_HITS).absolute(stats.negative_hits);
    counter!(CACHE_MISSES).absolute(stats.misses);
    counter!(CACHE_EVICTIONS).absolute(stats.evictions);
    counter!(CACHE_EXPIRATIONS).absolute(stats.expirations);
    gauge!(CACHE_ENTRIES).set(stats.entry_count as f64);
    gauge!(CACHE_SIZE).set(stats.weighted_size as f64);
    counter!(TOKEN_VERIFICATIONS).absolute(authenticator.verifications());
}

/// The recorder's upkeep every few seconds, so histograms stay bounded when nobody
/// scrapes; runs until aborted.
pub async fn upkeep(handle: PrometheusHandle) {
    let mut interval = tokio::time::interval(Duration::from_secs(5));
    loop {
        interval.tick().await;
        handle.run_upkeep();
    }
}

/// `GET /metrics`, in Prometheus text format 0.0.4.
pub fn router(handle: PrometheusHandle, authenticator: Arc<Authenticator>) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let handle = handle.clone();
            let authenticator = Arc::clone(&authenticator);
            async move {
                // The cache figures are absolute values of this server's cache: publish and
                // render together, so two servers of one process (tests) cannot interleave.
                static SCRAPE: Mutex<()> = Mutex::new(());
                let text = {
                    let _scrape = SCRAPE.lock().unwrap_or_else(PoisonError::into_inner);
                    publish_cache_stats(&authenticator);
                    handle.run_upkeep();
                    handle.render()
                };
                (
                    [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
                    text,
                )
            }
        }),
    )
}
