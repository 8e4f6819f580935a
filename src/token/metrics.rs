//! The token layer's own instrumentation: the metric names and spans of its upstream calls
//! (key set loads, discovery, introspection), emitted through the `metrics` and `tracing`
//! facades. Whether and where they are exported is the telemetry layer's business; without a
//! recorder or subscriber each call here is a no-op.
//!
//! Label values come from enums ([`Upstream`], [`IntrospectionFailure`]), never from a token
//! or a response.

use std::cell::Cell;
use std::time::Duration;

use metrics::{counter, histogram};
use tracing::Span;
use tracing::field::Empty;

/// The `tracing` target of the spans of upstream calls.
pub const UPSTREAM_TARGET: &str = "smart_authz::upstream";

/// Full verifications and introspections (cache misses that judged a token).
pub const TOKEN_VERIFICATIONS: &str = "smart_authz_token_verifications_total";
/// JWK Set loads attempted, and those that failed.
pub const JWKS_REFRESHES: &str = "smart_authz_jwks_refreshes_total";
pub const JWKS_REFRESH_FAILURES: &str = "smart_authz_jwks_refresh_failures_total";
/// Discovery attempts that failed.
pub const DISCOVERY_FAILURES: &str = "smart_authz_discovery_failures_total";
/// Round trip of one introspection request.
pub const INTROSPECTION_DURATION: &str = "smart_authz_introspection_duration_seconds";
/// Introspections that could not judge the token, by `kind`.
pub const INTROSPECTION_ERRORS: &str = "smart_authz_introspection_errors_total";

/// Describes this layer's metrics to the installed recorder.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_histogram};
    describe_counter!(TOKEN_VERIFICATIONS, "Full verifications and introspections");
    describe_counter!(JWKS_REFRESHES, "JWK Set loads attempted");
    describe_counter!(JWKS_REFRESH_FAILURES, "JWK Set loads that failed");
    describe_counter!(DISCOVERY_FAILURES, "Issuer discovery attempts that failed");
    describe_histogram!(
        INTROSPECTION_DURATION,
        Unit::Seconds,
        "Round trip of one token introspection request"
    );
    describe_counter!(
        INTROSPECTION_ERRORS,
        "Introspections that could not judge the token, by kind"
    );
}

/// Counts one JWK Set load.
pub(crate) fn record_jwks_refresh(succeeded: bool) {
    counter!(JWKS_REFRESHES).increment(1);
    if !succeeded {
        counter!(JWKS_REFRESH_FAILURES).increment(1);
    }
}

/// Counts a failed discovery attempt.
pub(crate) fn record_discovery_failure() {
    counter!(DISCOVERY_FAILURES).increment(1);
}

/// Why an introspection could not judge a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntrospectionFailure {
    /// The endpoint is not known yet (discovery pending).
    NoEndpoint,
    /// Every concurrency slot stayed busy for the whole timeout.
    Saturated,
    /// No answer within the timeout.
    Timeout,
    /// Connection refused, DNS, TLS.
    Unreachable,
    /// A non-200 answer.
    HttpStatus,
    /// An answer that is not an RFC 7662 response (or could not be read).
    InvalidResponse,
}

impl IntrospectionFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            IntrospectionFailure::NoEndpoint => "no_endpoint",
            IntrospectionFailure::Saturated => "saturated",
            IntrospectionFailure::Timeout => "timeout",
            IntrospectionFailure::Unreachable => "unreachable",
            IntrospectionFailure::HttpStatus => "http_status",
            IntrospectionFailure::InvalidResponse => "invalid_response",
        }
    }
}

/// Records the round trip of one introspection request.
pub(crate) fn record_introspection(elapsed: Duration) {
    histogram!(INTROSPECTION_DURATION).record(elapsed.as_secs_f64());
}

/// Counts an introspection that could not judge the token.
pub(crate) fn record_introspection_failure(kind: IntrospectionFailure) {
    counter!(INTROSPECTION_ERRORS, "kind" => kind.as_str()).increment(1);
}

/// An outgoing call of the token layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Upstream {
    /// RFC 7662 token introspection.
    Introspection,
    /// A JWK Set load.
    JwksFetch,
    /// OpenID Connect / OAuth metadata discovery.
    Discovery,
}

impl Upstream {
    pub fn as_str(self) -> &'static str {
        match self {
            Upstream::Introspection => "token introspection",
            Upstream::JwksFetch => "jwks fetch",
            Upstream::Discovery => "issuer discovery",
        }
    }
}

tokio::task_local! {
    /// Upstream calls made while serving the current RPC.
    static UPSTREAM_CALLS: Cell<u64>;
}

/// The client span of an upstream call of `issuer` (disabled unless a subscriber wants
/// [`UPSTREAM_TARGET`]), counted for the enclosing [`counting_upstream_calls`].
///
/// Inside an RPC whose trace the sampler dropped (no current span), the call gets none
/// either: as a root it would start a trace of its own, apart from the call that made it.
pub(crate) fn upstream_span(kind: Upstream, issuer: &str) -> Span {
    let in_rpc = UPSTREAM_CALLS
        .try_with(|calls| calls.set(calls.get() + 1))
        .is_ok();
    if in_rpc && Span::current().is_disabled() {
        return Span::none();
    }
    tracing::info_span!(
        target: UPSTREAM_TARGET,
        "upstream",
        otel.name = kind.as_str(),
        otel.kind = "client",
        otel.status_code = Empty,
        issuer = issuer,
        error.type = Empty,
    )
}

/// Marks an upstream span failed, with a category (an enum's label, never free text).
pub(crate) fn record_upstream_error(span: &Span, kind: &'static str) {
    span.record("otel.status_code", "ERROR");
    span.record("error.type", kind);
}

/// Runs `poll` (one poll of an RPC's future) with the `calls` counted so far for that RPC,
/// and returns its result with the new count. Counted per poll, not per task: the upstream
/// calls happen inside the polls of the RPC that needed them.
pub fn counting_upstream_calls<R>(calls: u64, poll: impl FnOnce() -> R) -> (R, u64) {
    UPSTREAM_CALLS.sync_scope(Cell::new(calls), || {
        let result = poll();
        (result, UPSTREAM_CALLS.with(Cell::get))
    })
}
