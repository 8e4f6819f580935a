//! The `[telemetry]` and `[log]` sections: traces, metrics, the audit log and log output.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::{ConfigError, invalid, is_http_url, without_userinfo};
use crate::decision::Outcome;

/// The `[telemetry]` section, as written by operators.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryFile {
    /// OTLP/gRPC collector for traces, e.g. `http://otel-collector:4317`; empty: traces are
    /// exported only when `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` is set, and are off otherwise.
    pub otlp_endpoint: String,
    /// Address of the Prometheus `/metrics` listener; empty disables it.
    pub metrics_listen: String,
    /// Which decisions get an audit line on stdout: `off`, `denies` (default) or `all`.
    pub audit: AuditMode,
    /// Share of new traces sampled, 0 to 1, as `parentbased_traceidratio` (a caller's
    /// sampled flag still wins); unset: `OTEL_TRACES_SAMPLER`, else parent-based always-on.
    pub trace_sampling_ratio: Option<f64>,
}

impl Default for TelemetryFile {
    fn default() -> Self {
        TelemetryFile {
            otlp_endpoint: String::new(),
            metrics_listen: DEFAULT_METRICS_LISTEN.to_owned(),
            audit: AuditMode::default(),
            trace_sampling_ratio: None,
        }
    }
}

/// Where `/metrics` is served unless configured: 9464 is the port OpenTelemetry and most
/// exporters use for Prometheus.
pub const DEFAULT_METRICS_LISTEN: &str = "0.0.0.0:9464";

/// The validated `[telemetry]` section. Its `Debug` hides the OTLP endpoint's credentials.
#[derive(Clone, PartialEq)]
pub struct TelemetryConfig {
    /// The configured OTLP endpoint; the standard `OTEL_*` variables are read at install.
    pub otlp_endpoint: Option<String>,
    /// `None` when metrics are disabled.
    pub metrics_listen: Option<SocketAddr>,
    pub audit: AuditMode,
    pub trace_sampling_ratio: Option<f64>,
}

impl std::fmt::Debug for TelemetryConfig {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let endpoint = self.otlp_endpoint.as_deref().map(without_userinfo);
        formatter
            .debug_struct("TelemetryConfig")
            .field("otlp_endpoint", &endpoint)
            .field("metrics_listen", &self.metrics_listen)
            .field("audit", &self.audit)
            .field("trace_sampling_ratio", &self.trace_sampling_ratio)
            .finish()
    }
}

impl Default for TelemetryConfig {
    /// Everything off but the audit of denies: what tests and tools get.
    fn default() -> Self {
        TelemetryConfig {
            otlp_endpoint: None,
            metrics_listen: None,
            audit: AuditMode::default(),
            trace_sampling_ratio: None,
        }
    }
}

/// Which decisions are audited (`[telemetry] audit`).
///
/// The default is `denies`: a deny is the security signal (a probing client, a stolen or
/// expired token, a misconfigured app) and rare, while allows are the bulk of the traffic,
/// are already in the FHIR server's own access log, and would cost an output line per FHIR
/// request. Set `all` where every access must be traceable from here.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditMode {
    Off,
    #[default]
    Denies,
    All,
}

impl AuditMode {
    /// Whether a decision with `outcome` gets an audit line.
    pub fn covers(self, outcome: Outcome) -> bool {
        match self {
            AuditMode::Off => false,
            AuditMode::Denies => outcome == Outcome::Deny,
            AuditMode::All => true,
        }
    }
}

/// Log output.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: LogFormat,
    /// A `tracing` filter, e.g. `info` or `smart_authz=debug`; `RUST_LOG` overrides it.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            filter: "info".to_owned(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

pub(super) fn validate_telemetry(file: &TelemetryFile) -> Result<TelemetryConfig, ConfigError> {
    let otlp_endpoint = match file.otlp_endpoint.trim() {
        "" => None,
        endpoint if is_http_url(endpoint) => Some(endpoint.to_owned()),
        _ => {
            return Err(invalid(
                "telemetry.otlp_endpoint",
                "must be an http(s) URL of an OTLP/gRPC collector, e.g. http://otel-collector:4317, or empty",
            ));
        }
    };
    let metrics_listen = match file.metrics_listen.trim() {
        "" => None,
        address => {
            let address: SocketAddr = address.parse().map_err(|_| {
                invalid(
                    "telemetry.metrics_listen",
                    format!(
                        "{address:?} is not an address like {DEFAULT_METRICS_LISTEN}; empty disables metrics"
                    ),
                )
            })?;
            Some(address)
        }
    };
    if let Some(ratio) = file.trace_sampling_ratio
        && !(0.0..=1.0).contains(&ratio)
    {
        return Err(invalid(
            "telemetry.trace_sampling_ratio",
            "must be between 0 and 1",
        ));
    }
    Ok(TelemetryConfig {
        otlp_endpoint,
        metrics_listen,
        audit: file.audit,
        trace_sampling_ratio: file.trace_sampling_ratio,
    })
}
