//! Observability: log output, OpenTelemetry traces, Prometheus metrics and the decision
//! audit log. Everything here watches decisions and never takes part in them: a failing
//! exporter is logged, and the answer of a call stays the same whether telemetry is on or off.
//!
//! - [`install`] sets the process-wide `tracing` subscriber once: logs to stderr (text or
//!   JSON), the audit target as JSON lines to stdout, and, when an OTLP endpoint is
//!   configured, the OpenTelemetry layer ([`traces`]).
//! - [`metrics`]: the Prometheus recorder and the `/metrics` listener.
//! - [`audit`]: one JSON line per decision on the [`AUDIT_TARGET`] target, written to stdout
//!   in batches by a thread of its own ([`audit::batched`]).
//! - [`Observer`]: what the authorization pipeline calls for every answer.
//!
//! Label values of metrics and span attributes that name a category come from enums
//! ([`Rpc`], [`Face`], `Outcome`, `Reason`, `Interaction`, `ScopeContext`), never from
//! request text; the token is never recorded anywhere, only its
//! [`TokenFingerprint`] in audit lines.

pub mod audit;
pub mod metrics;
mod observed;
pub mod traces;

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tracing::Span;
use tracing_subscriber::filter::{Directive, LevelFilter, Targets};
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

pub use self::audit::{AUDIT_TARGET, AuditLayer};
pub use self::observed::{Observed, observe};
use crate::config::{AuditMode, LogConfig, LogFormat, TelemetryConfig};
use crate::decision::{Grant, Outcome};
use crate::fhir::FhirRequest;
use crate::smart::TokenContext;
use crate::token::TokenFingerprint;
use crate::token::metrics::UPSTREAM_TARGET;

/// Why telemetry could not be installed: the message names the key or variable.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
    #[error("OTLP trace exporter: {0}")]
    Exporter(String),
}

/// Where the outputs go; [`Outputs::standard`] in production, injectable for tests and
/// benchmarks.
pub struct Outputs {
    /// Ordinary logs.
    pub logs: BoxMakeWriter,
    /// Audit lines.
    pub audit: BoxMakeWriter,
    /// Writes the batches of `audit` when it is [`audit::batched`]: the guard keeps it, and
    /// the lines still pending are written when it goes.
    pub audit_flusher: Option<audit::batched::Flusher>,
}

impl Outputs {
    /// Logs to stderr, audit lines to stdout in batches: a log shipper can route the two
    /// apart whatever the log format.
    pub fn standard() -> Self {
        let (audit, flusher) = audit::batched::batched(io::stdout());
        Outputs {
            logs: BoxMakeWriter::new(io::stderr),
            audit: BoxMakeWriter::new(audit),
            audit_flusher: Some(flusher),
        }
    }
}

/// Looks an environment variable up; production passes the process environment, tests a
/// map (they never mutate the process environment).
pub type Environment<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment, for [`install`].
pub fn process_environment(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

static INSTALLED: AtomicBool = AtomicBool::new(false);

/// Keeps the trace pipeline and the audit output alive; [`TelemetryGuard::shutdown`]
/// flushes both.
#[must_use = "dropping the guard does not flush pending spans: call shutdown"]
#[derive(Debug, Default)]
pub struct TelemetryGuard {
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
    /// The audit lines still pending are written when it is dropped.
    audit_flusher: Option<audit::batched::Flusher>,
}

impl TelemetryGuard {
    /// Whether spans are exported.
    pub fn exports_traces(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports the spans ended so far, waiting for the collector (at most its timeout).
    pub fn force_flush(&self) {
        if let Some(provider) = &self.provider
            && let Err(error) = provider.force_flush()
        {
            tracing::warn!(%error, "flushing traces failed");
        }
    }

    /// Flushes and stops the trace pipeline and writes the pending audit lines, waiting at
    /// most `timeout` for both. It blocks its thread, and the exporter's channel is a task
    /// on the runtime: call it where another thread drives the runtime meanwhile (the
    /// blocking pool, with `block_on` on the main thread).
    pub fn shutdown(self, timeout: Duration) {
        // The audit writer writes what is left on its own thread meanwhile, within the same
        // `timeout`.
        let deadline = std::time::Instant::now() + timeout;
        if let Some(audit) = &self.audit_flusher {
            audit.close();
        }
        if let Some(provider) = self.provider {
            traces::disable();
            if let Err(error) = provider.shutdown_with_timeout(timeout) {
                tracing::warn!(%error, "stopping the trace exporter failed; some spans may be lost");
            }
        }
        if let Some(audit) = self.audit_flusher {
            audit.finish_by(deadline);
        }
    }
}

/// Installs logging, the audit output and (when configured) trace export for the process,
/// with the standard outputs.
///
/// Needs a tokio runtime context when traces are exported (the gRPC exporter's channel is
/// created on it). Only the first call in a process installs anything; later calls return
/// an inert guard, so tests may call it freely.
pub fn install(
    log: &LogConfig,
    telemetry: &TelemetryConfig,
    environment: Environment<'_>,
) -> Result<TelemetryGuard, TelemetryError> {
    install_with(log, telemetry, environment, Outputs::standard())
}

/// [`install`] with the outputs given.
pub fn install_with(
    log: &LogConfig,
    telemetry: &TelemetryConfig,
    environment: Environment<'_>,
    outputs: Outputs,
) -> Result<TelemetryGuard, TelemetryError> {
    // Resolved before claiming the installation, so a bad variable is reported every time.
    let trace_settings = traces::TraceSettings::resolve(telemetry, environment)?;
    if INSTALLED.swap(true, Ordering::SeqCst) {
        return Ok(TelemetryGuard::default());
    }
    let provider = match &trace_settings {
        Some(settings) => match traces::build_provider(settings) {
            Ok(provider) => Some(provider),
            Err(error) => {
                INSTALLED.store(false, Ordering::SeqCst);
                return Err(error);
            }
        },
        None => None,
    };

    // Audit events have their own output; the RPC and upstream spans exist for trace
    // export only (formatting their fields for log lines would double their cost).
    let log_filter = [AUDIT_TARGET, traces::RPC_TARGET, UPSTREAM_TARGET]
        .into_iter()
        .fold(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&log.filter)),
            // The targets are constants of this crate, so each directive parses.
            |filter, target| match format!("{target}=off").parse::<Directive>() {
                Ok(directive) => filter.add_directive(directive),
                Err(_) => filter,
            },
        );
    let log_layer = match log.format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_writer(outputs.logs)
            .with_filter(log_filter)
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(outputs.logs)
            .with_filter(log_filter)
            .boxed(),
    };
    let audit_layer = AuditLayer::new(outputs.audit)
        .with_filter(Targets::new().with_target(AUDIT_TARGET, LevelFilter::INFO));
    // Only this crate's spans are exported (not the exporter's own, which would loop), and
    // never the audit events: they stay in the audit output.
    let trace_layer = provider.as_ref().map(|provider| {
        traces::layer(provider).with_filter(
            Targets::new()
                .with_target("smart_authz", LevelFilter::INFO)
                .with_target(AUDIT_TARGET, LevelFilter::OFF),
        )
    });
    let installed = tracing_subscriber::registry()
        .with(log_layer)
        .with(audit_layer)
        .with(trace_layer)
        .try_init();
    if installed.is_err() {
        // Another subscriber was set (a test harness): leave it, export nothing.
        if let Some(provider) = provider {
            let _ = provider.shutdown();
        }
        return Ok(TelemetryGuard::default());
    }
    let audit_flusher = outputs.audit_flusher;
    if let Some(settings) = &trace_settings {
        traces::enable(settings);
        tracing::info!(endpoint = %crate::config::without_userinfo(&settings.endpoint), sampler = %settings.sampler_name, service = %settings.service_name, "exporting traces over OTLP/gRPC");
    }
    Ok(TelemetryGuard {
        provider,
        audit_flusher,
    })
}

/// The calls served, as metric labels and span names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rpc {
    CheckAccess,
    BatchCheckAccess,
    IntrospectToken,
    /// Envoy's `Authorization/Check` (ext_authz).
    EnvoyCheck,
    /// AuthZEN's `POST /access/v1/evaluation`.
    AuthzenEvaluation,
    /// AuthZEN's `POST /access/v1/evaluations`.
    AuthzenEvaluations,
    FilterResources,
    /// `POST /smart-authz/v1/filter-resources` on the HTTP face.
    AuthzenFilterResources,
    /// Envoy's `ExternalProcessor/Process` (ext_proc): one stream per HTTP request.
    EnvoyProcess,
}

impl Rpc {
    /// The `rpc` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Rpc::CheckAccess => "CheckAccess",
            Rpc::BatchCheckAccess => "BatchCheckAccess",
            Rpc::IntrospectToken => "IntrospectToken",
            Rpc::EnvoyCheck => "ext_authz.Check",
            Rpc::AuthzenEvaluation => "authzen.evaluation",
            Rpc::AuthzenEvaluations => "authzen.evaluations",
            Rpc::FilterResources => "FilterResources",
            Rpc::AuthzenFilterResources => "http.filter_resources",
            Rpc::EnvoyProcess => "ext_proc.Process",
        }
    }

    /// The fully qualified gRPC service (OpenTelemetry `rpc.service`); for the HTTP face,
    /// the API.
    pub fn service(self) -> &'static str {
        match self {
            Rpc::EnvoyCheck => "envoy.service.auth.v3.Authorization",
            Rpc::EnvoyProcess => "envoy.service.ext_proc.v3.ExternalProcessor",
            Rpc::AuthzenEvaluation | Rpc::AuthzenEvaluations => "authzen.access.v1",
            Rpc::AuthzenFilterResources => "smart-authz.v1",
            _ => "smartauthz.v1.AuthzService",
        }
    }

    /// OpenTelemetry's `rpc.system`: `grpc`, or `http` for the AuthZEN face.
    pub fn system(self) -> &'static str {
        match self.face() {
            Face::Authzen => "http",
            Face::Grpc | Face::Envoy => "grpc",
        }
    }

    /// The gRPC method (OpenTelemetry `rpc.method`).
    pub fn method(self) -> &'static str {
        match self {
            Rpc::CheckAccess => "CheckAccess",
            Rpc::BatchCheckAccess => "BatchCheckAccess",
            Rpc::IntrospectToken => "IntrospectToken",
            Rpc::EnvoyCheck => "Check",
            Rpc::AuthzenEvaluation => "evaluation",
            Rpc::AuthzenEvaluations => "evaluations",
            Rpc::FilterResources => "FilterResources",
            Rpc::AuthzenFilterResources => "filter-resources",
            Rpc::EnvoyProcess => "Process",
        }
    }

    /// The span name, `service/method` as the OpenTelemetry gRPC conventions have it.
    pub fn span_name(self) -> &'static str {
        match self {
            Rpc::CheckAccess => "smartauthz.v1.AuthzService/CheckAccess",
            Rpc::BatchCheckAccess => "smartauthz.v1.AuthzService/BatchCheckAccess",
            Rpc::IntrospectToken => "smartauthz.v1.AuthzService/IntrospectToken",
            Rpc::EnvoyCheck => "envoy.service.auth.v3.Authorization/Check",
            Rpc::AuthzenEvaluation => "POST /access/v1/evaluation",
            Rpc::AuthzenEvaluations => "POST /access/v1/evaluations",
            Rpc::FilterResources => "smartauthz.v1.AuthzService/FilterResources",
            Rpc::AuthzenFilterResources => "POST /smart-authz/v1/filter-resources",
            Rpc::EnvoyProcess => "envoy.service.ext_proc.v3.ExternalProcessor/Process",
        }
    }

    /// The face the RPC belongs to.
    pub fn face(self) -> Face {
        match self {
            Rpc::EnvoyCheck | Rpc::EnvoyProcess => Face::Envoy,
            Rpc::AuthzenEvaluation | Rpc::AuthzenEvaluations | Rpc::AuthzenFilterResources => {
                Face::Authzen
            }
            Rpc::CheckAccess
            | Rpc::BatchCheckAccess
            | Rpc::IntrospectToken
            | Rpc::FilterResources => Face::Grpc,
        }
    }
}

/// Which API answered: the service's own gRPC API, Envoy's ext_authz, or AuthZEN's HTTP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Face {
    Grpc,
    Envoy,
    Authzen,
}

impl Face {
    pub fn as_str(self) -> &'static str {
        match self {
            Face::Grpc => "grpc",
            Face::Envoy => "envoy",
            Face::Authzen => "authzen",
        }
    }
}

/// One answer, as the authorization pipeline reports it to the [`Observer`].
#[derive(Clone, Copy, Debug)]
pub struct DecisionEvent<'a> {
    pub rpc: Rpc,
    pub outcome: Outcome,
    /// From `Reason::as_str` or `authorize::Refusal::as_str`.
    pub reason: &'static str,
    /// The request decided on, when it could be read.
    pub request: Option<&'a FhirRequest>,
    /// The grants of an allow.
    pub grants: &'a [Grant],
    /// The verified token, when its signature and claims were accepted.
    pub token: Option<EventToken<'a>>,
    /// The token's fingerprint, when a token was sent (the token itself is never recorded).
    pub token_fingerprint: Option<TokenFingerprint>,
    /// The entry's index, for the entries of a batch or transaction.
    pub entry: Option<usize>,
    /// The FHIR server the decision is for, once known.
    pub fhir_server: Option<&'a str>,
    /// The caller's request id, when it sent one.
    pub request_id: Option<&'a str>,
    /// For the check of a FHIR server's answer, how many of its entries were withheld.
    pub withheld: Option<usize>,
}

/// Who a decision was for: the verified token's context, and the patient the engine decided
/// for, which is not always the token's `patient` claim (a Patient `fhirUser` under the
/// fallback, or none for another server's patient: docs/semantics.md, "Launch context").
#[derive(Clone, Copy, Debug)]
pub struct EventToken<'a> {
    pub context: &'a TokenContext,
    pub patient: Option<&'a str>,
}

impl DecisionEvent<'_> {
    /// The `context` label: the SMART context (`patient`, `user`, `system`) of the first
    /// grant of an allow; `none` for a deny or a public endpoint.
    pub fn context(&self) -> &'static str {
        self.grants
            .first()
            .map(|grant| grant.context.as_str())
            .unwrap_or("none")
    }

    /// The `interaction` label.
    pub fn interaction(&self) -> &'static str {
        self.request
            .map(|request| request.interaction.as_str())
            .unwrap_or("unknown")
    }
}

/// What a face does with each decision: count it, write its audit line, and put it on the
/// call's span. Cheap to copy; one per server, from `[telemetry]`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Observer {
    audit: AuditMode,
}

impl Observer {
    pub fn new(audit: AuditMode) -> Self {
        Observer { audit }
    }

    /// Whether a decision with `outcome` gets an audit line.
    pub fn audits(&self, outcome: Outcome) -> bool {
        self.audit.covers(outcome)
    }

    /// Whether `event` gets an audit line: an answer with withheld entries is allowed, but
    /// what was withheld is a deny of those reads, so `denies` covers it too.
    fn audits_event(&self, event: &DecisionEvent<'_>) -> bool {
        let outcome = match event.withheld {
            Some(withheld) if withheld > 0 => Outcome::Deny,
            _ => event.outcome,
        };
        self.audit.covers(outcome)
    }

    /// Records one decision: the decisions counter, the audit line when the mode asks for
    /// it, and (unless it is a bundle entry) the attributes of `span`.
    pub fn decided(&self, event: &DecisionEvent<'_>, span: &Span) {
        metrics::record_decision(event);
        if self.audits_event(event) {
            audit::write(event, span);
        }
        if event.entry.is_none() {
            traces::record_decision(
                span,
                event.outcome,
                event.reason,
                event.request,
                event.grants,
            );
        }
    }
}
