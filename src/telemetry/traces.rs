//! OpenTelemetry traces: a span per RPC exported over OTLP/gRPC by a batch processor (off
//! the request path), joined to the caller's trace by the W3C `traceparent` of the request.
//!
//! Off unless `[telemetry] otlp_endpoint`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set. When off no OpenTelemetry layer is installed and
//! [`rpc_span`] returns a disabled span without reading the metadata, so a call pays one
//! relaxed atomic load. When on, a call whose trace the sampler drops gets a disabled span
//! too ([`sampling`]).

use std::collections::HashMap;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::propagation::{Extractor, TextMapPropagator as _};
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{WithExportConfig as _, WithTonicConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tonic::metadata::{KeyRef, MetadataMap};
use tracing::Span;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use self::sampling::{GateIds, Kept};
use super::{Environment, Rpc, TelemetryError};
use crate::config::{TelemetryConfig, is_http_url, without_userinfo};
use crate::decision::{Grant, Outcome};
use crate::fhir::FhirRequest;
use crate::token::{Authenticated, TokenSource};

/// The `service.name` unless `OTEL_SERVICE_NAME` says otherwise.
pub const DEFAULT_SERVICE_NAME: &str = "smart-authz";

/// The `tracing` target of RPC spans.
pub const RPC_TARGET: &str = "smart_authz::rpc";

mod sampling;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// The sampler of the one tracer provider a process installs, asked again by [`rpc_span`].
static SAMPLER: OnceLock<Sampler> = OnceLock::new();

/// Whether spans are being exported (the OpenTelemetry layer is installed).
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

pub(super) fn enable(settings: &TraceSettings) {
    SAMPLER.get_or_init(|| settings.sampler.sampler());
    ENABLED.store(true, Ordering::Relaxed);
}

pub(super) fn disable() {
    ENABLED.store(false, Ordering::Relaxed);
}

/// Which spans are sampled.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SamplerChoice {
    AlwaysOn,
    AlwaysOff,
    Ratio(f64),
    ParentBasedAlwaysOn,
    ParentBasedAlwaysOff,
    ParentBasedRatio(f64),
}

impl SamplerChoice {
    fn sampler(self) -> Sampler {
        match self {
            SamplerChoice::AlwaysOn => Sampler::AlwaysOn,
            SamplerChoice::AlwaysOff => Sampler::AlwaysOff,
            SamplerChoice::Ratio(ratio) => Sampler::TraceIdRatioBased(ratio),
            SamplerChoice::ParentBasedAlwaysOn => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
            SamplerChoice::ParentBasedAlwaysOff => {
                Sampler::ParentBased(Box::new(Sampler::AlwaysOff))
            }
            SamplerChoice::ParentBasedRatio(ratio) => {
                Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio)))
            }
        }
    }
}

impl std::fmt::Display for SamplerChoice {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SamplerChoice::AlwaysOn => formatter.write_str("always_on"),
            SamplerChoice::AlwaysOff => formatter.write_str("always_off"),
            SamplerChoice::Ratio(ratio) => write!(formatter, "traceidratio({ratio})"),
            SamplerChoice::ParentBasedAlwaysOn => formatter.write_str("parentbased_always_on"),
            SamplerChoice::ParentBasedAlwaysOff => formatter.write_str("parentbased_always_off"),
            SamplerChoice::ParentBasedRatio(ratio) => {
                write!(formatter, "parentbased_traceidratio({ratio})")
            }
        }
    }
}

/// The trace pipeline's settings, from `[telemetry]` and the standard `OTEL_*` variables.
/// Its `Debug` hides the endpoint's credentials.
#[derive(Clone, PartialEq)]
pub struct TraceSettings {
    pub endpoint: String,
    pub sampler: SamplerChoice,
    pub sampler_name: String,
    pub service_name: String,
}

impl std::fmt::Debug for TraceSettings {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("TraceSettings")
            .field("endpoint", &without_userinfo(&self.endpoint))
            .field("sampler", &self.sampler)
            .field("sampler_name", &self.sampler_name)
            .field("service_name", &self.service_name)
            .finish()
    }
}

impl TraceSettings {
    /// `None` when traces are off: no endpoint anywhere, `OTEL_SDK_DISABLED=true` or
    /// `OTEL_TRACES_EXPORTER=none`.
    ///
    /// The configuration file wins over the environment (it is the more specific);
    /// `OTEL_TRACES_SAMPLER` values this SDK does not know fall back to the default, as the
    /// OpenTelemetry specification asks, while a malformed endpoint stops start-up.
    pub fn resolve(
        config: &TelemetryConfig,
        environment: Environment<'_>,
    ) -> Result<Option<TraceSettings>, TelemetryError> {
        let variable = |name: &str| {
            environment(name)
                .map(|value| value.trim().to_owned())
                .filter(|value| !value.is_empty())
        };
        if variable("OTEL_SDK_DISABLED").is_some_and(|value| value.eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        if variable("OTEL_TRACES_EXPORTER").is_some_and(|value| {
            value
                .split(',')
                .any(|exporter| exporter.trim().eq_ignore_ascii_case("none"))
        }) {
            return Ok(None);
        }
        let endpoint = match &config.otlp_endpoint {
            Some(endpoint) => endpoint.clone(),
            None => {
                let found = [
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                    "OTEL_EXPORTER_OTLP_ENDPOINT",
                ]
                .into_iter()
                .find_map(|name| variable(name).map(|value| (name, value)));
                let Some((name, endpoint)) = found else {
                    return Ok(None);
                };
                if !is_http_url(&endpoint) {
                    return Err(TelemetryError::Invalid {
                        key: name.to_owned(),
                        message: format!("{:?} is not an http(s) URL", without_userinfo(&endpoint)),
                    });
                }
                endpoint
            }
        };
        let sampler = match config.trace_sampling_ratio {
            Some(ratio) => SamplerChoice::ParentBasedRatio(ratio),
            None => sampler_from_environment(
                variable("OTEL_TRACES_SAMPLER").as_deref(),
                variable("OTEL_TRACES_SAMPLER_ARG").as_deref(),
            ),
        };
        Ok(Some(TraceSettings {
            endpoint,
            sampler_name: sampler.to_string(),
            sampler,
            service_name: variable("OTEL_SERVICE_NAME")
                .unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_owned()),
        }))
    }
}

/// The sampler named by `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG` (OpenTelemetry
/// SDK environment variables); parent-based always-on when unset or unknown, ratio 1.0
/// when the argument is missing or not in 0..=1.
pub fn sampler_from_environment(name: Option<&str>, argument: Option<&str>) -> SamplerChoice {
    let ratio = || {
        argument
            .and_then(|text| text.parse::<f64>().ok())
            .filter(|ratio| (0.0..=1.0).contains(ratio))
            .unwrap_or(1.0)
    };
    match name.map(str::to_ascii_lowercase).as_deref() {
        Some("always_on") => SamplerChoice::AlwaysOn,
        Some("always_off") => SamplerChoice::AlwaysOff,
        Some("traceidratio") => SamplerChoice::Ratio(ratio()),
        Some("parentbased_always_off") => SamplerChoice::ParentBasedAlwaysOff,
        Some("parentbased_traceidratio") => SamplerChoice::ParentBasedRatio(ratio()),
        _ => SamplerChoice::ParentBasedAlwaysOn,
    }
}

/// The tracer provider: OTLP/gRPC exporter behind the SDK's batch processor, which exports
/// from its own thread, so no request waits for the collector. Needs a tokio runtime
/// context (the exporter's channel runs on it).
pub(super) fn build_provider(
    settings: &TraceSettings,
) -> Result<SdkTracerProvider, TelemetryError> {
    let mut builder = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(settings.endpoint.clone());
    if settings.endpoint.starts_with("https://") {
        builder =
            builder.with_tls_config(tonic::transport::ClientTlsConfig::new().with_enabled_roots());
    }
    let exporter = builder
        .build()
        // The exporter's errors quote the endpoint, credentials and all.
        .map_err(|error| {
            TelemetryError::Exporter(
                error
                    .to_string()
                    .replace(&settings.endpoint, &without_userinfo(&settings.endpoint)),
            )
        })?;
    let resource = Resource::builder()
        .with_service_name(settings.service_name.clone())
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(settings.sampler.sampler())
        .with_id_generator(GateIds::default())
        .with_resource(resource)
        .build())
}

/// The `tracing` layer that turns this crate's spans into OpenTelemetry spans.
pub(super) fn layer<S>(
    provider: &SdkTracerProvider,
) -> tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::SdkTracer>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("smart-authz"))
        // Source locations, thread names, targets and busy/idle times say nothing about a
        // decision and cost on every span; nothing here reads `opentelemetry::Context::current`
        // (parents are explicit), so entering a span need not activate its context.
        .with_location(false)
        .with_threads(false)
        .with_target(false)
        .with_tracked_inactivity(false)
        .with_context_activation(false)
}

/// Reads W3C trace context from gRPC metadata.
struct MetadataExtractor<'a>(&'a MetadataMap);

impl Extractor for MetadataExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0
            .keys()
            .filter_map(|key| match key {
                KeyRef::Ascii(key) => Some(key.as_str()),
                KeyRef::Binary(_) => None,
            })
            .collect()
    }
}

/// The span of one RPC, a child of the caller's span when the metadata carries a valid
/// `traceparent` (W3C Trace Context); disabled when traces are off or the sampler drops
/// the call.
pub fn rpc_span(rpc: Rpc, metadata: &MetadataMap) -> Span {
    rpc_span_with_headers(rpc, metadata, None)
}

/// [`rpc_span`]; when the gRPC metadata carries no `traceparent`, the one among
/// `forwarded` headers (the HTTP request Envoy asks about) is linked to.
///
/// Those headers are the app's own, so the call is not made a child of them: their
/// sampled flag would decide whether it is exported (an app setting it on every request
/// would have every call exported whatever `trace_sampling_ratio` says), and their trace
/// id would be the audit line's. The call starts a trace of its own, sampled as any new
/// trace is, with a link to the app's span (OpenTelemetry's advice for a parent from
/// outside the trust boundary).
pub fn rpc_span_with_headers(
    rpc: Rpc,
    metadata: &MetadataMap,
    forwarded: Option<&HashMap<String, String>>,
) -> Span {
    if !enabled() {
        return Span::none();
    }
    let Some(sampler) = SAMPLER.get() else {
        return Span::none();
    };
    let propagator = TraceContextPropagator::new();
    let parent = propagator.extract(&MetadataExtractor(metadata));
    if parent.span().span_context().is_valid() {
        return sampled_span(rpc, parent, sampler);
    }
    let span = sampled_span(rpc, Context::new(), sampler);
    if let Some(headers) = forwarded
        && !span.is_disabled()
    {
        let app = propagator.extract(headers);
        span.add_link(app.span().span_context().clone());
    }
    span
}

/// The span of `rpc` under `parent` (empty for a new trace), as `sampler` decides.
fn sampled_span(rpc: Rpc, parent: Context, sampler: &Sampler) -> Span {
    let Some(kept) = sampling::verdict(sampler, &parent, rpc.span_name()) else {
        return Span::none();
    };
    let span = tracing::info_span!(
        target: RPC_TARGET,
        "rpc",
        otel.name = rpc.span_name(),
        otel.kind = "server",
        otel.status_code = Empty,
        rpc.system = rpc.system(),
        rpc.service = rpc.service(),
        rpc.method = rpc.method(),
        rpc.grpc.status_code = Empty,
        authz.decision = Empty,
        authz.reason = Empty,
        authz.context = Empty,
        authz.bundle.entries = Empty,
        authz.fhir_server = Empty,
        authz.request_id = Empty,
        fhir.interaction = Empty,
        fhir.resource_type = Empty,
        token.cache = Empty,
        token.source = Empty,
        token.active = Empty,
        upstream.calls = Empty,
    );
    match kept {
        Kept::Child => {
            let _ = span.set_parent(parent);
        }
        Kept::Root(trace_id) => sampling::start_root(&span, trace_id),
    }
    span
}

/// How many upstream calls (key fetches, introspection) serving the RPC took.
pub fn record_upstream_calls(span: &Span, calls: u64) {
    span.record("upstream.calls", calls);
}

/// Puts a decision on the RPC span.
pub fn record_decision(
    span: &Span,
    outcome: Outcome,
    reason: &'static str,
    request: Option<&FhirRequest>,
    grants: &[Grant],
) {
    if span.is_disabled() {
        return;
    }
    span.record("authz.decision", outcome.as_str());
    span.record("authz.reason", reason);
    if let Some(grant) = grants.first() {
        span.record("authz.context", grant.context.as_str());
    }
    if let Some(request) = request {
        span.record("fhir.interaction", request.interaction.as_str());
        if let Some(resource_type) = &request.resource_type {
            span.record("fhir.resource_type", resource_type.as_str());
        }
    }
}

/// Puts the number of entries of a batch or transaction on the RPC span.
pub fn record_bundle_size(span: &Span, entries: usize) {
    span.record("authz.bundle.entries", entries);
}

/// Puts the FHIR server the call is for on the RPC span.
pub fn record_fhir_server(span: &Span, name: &str) {
    span.record("authz.fhir_server", name);
}

/// Puts the caller's request id on the RPC span.
pub fn record_request_id(span: &Span, id: &str) {
    span.record("authz.request_id", id);
}

/// Puts how the token was judged on the RPC span: from the cache or not, locally or by
/// the issuer.
pub fn record_token(span: &Span, authenticated: &Authenticated) {
    if span.is_disabled() {
        return;
    }
    span.record(
        "token.cache",
        if authenticated.cached { "hit" } else { "miss" },
    );
    span.record(
        "token.source",
        match authenticated.token.source {
            TokenSource::LocalJwt => "jwt",
            TokenSource::RemoteIntrospection => "introspection",
        },
    );
}

/// Puts the result of `IntrospectToken` on its span.
pub fn record_token_active(span: &Span, active: bool) {
    span.record("token.active", active);
}

/// Puts the gRPC status on the span; server errors (not a caller's mistakes) mark it
/// failed, as the OpenTelemetry gRPC conventions ask.
pub fn record_status(span: &Span, code: Option<tonic::Code>) {
    if span.is_disabled() {
        return;
    }
    let code = code.unwrap_or(tonic::Code::Ok);
    span.record("rpc.grpc.status_code", code as i64);
    if matches!(
        code,
        tonic::Code::Unknown
            | tonic::Code::DeadlineExceeded
            | tonic::Code::Unimplemented
            | tonic::Code::Internal
            | tonic::Code::Unavailable
            | tonic::Code::DataLoss
    ) {
        span.record("otel.status_code", "ERROR");
    }
}

/// The trace id of `span` as 32 hex digits, when it is exported.
pub fn trace_id(span: &Span) -> Option<String> {
    if span.is_disabled() {
        return None;
    }
    let context: Context = span.context();
    let span_context = context.span().span_context().clone();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}

#[cfg(test)]
mod tests;
