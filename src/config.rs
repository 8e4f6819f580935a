//! Configuration: a TOML file (or the built-in development configuration) with environment
//! overrides, validated into a [`Config`] before anything starts. Every error names its key.
//!
//! Environment variables use the prefix `SMART_AUTHZ_` and `__` between nested keys, e.g.
//! `SMART_AUTHZ_LISTEN=0.0.0.0:8443`, `SMART_AUTHZ_CACHE__MAX_TTL_SECS=60`,
//! `SMART_AUTHZ_POLICY__STRICT_SCOPES=true`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use jsonwebtoken::Algorithm;
use serde::{Deserialize, Serialize};

use crate::decision::Policy;
use crate::envoy::EnvoyConfig;
use crate::fhir::FhirVersion;
use crate::telemetry::AuditMode;

/// The development configuration used when no file is given: the issuer of
/// `examples/dev/`, whose private key is in the repository. Never use it in production.
pub const DEVELOPMENT_CONFIG: &str = include_str!("../examples/dev/config.toml");
/// The issuer of the development configuration, whose private key is public.
pub const DEVELOPMENT_ISSUER: &str = "https://smart-authz.dev/issuer";
/// The development issuer's public keys, embedded so the default works from any directory.
pub const DEVELOPMENT_JWKS: &str = include_str!("../examples/dev/jwks.json");
/// The development issuer's private key, for `smart-authz token`.
pub const DEVELOPMENT_PRIVATE_KEY: &str = include_str!("../examples/dev/private-key.pem");

/// Algorithms accepted when an issuer lists none: asymmetric only, never `none` or HMAC.
pub const DEFAULT_ALGORITHMS: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::PS256,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// The file shape, as written by operators.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConfigFile {
    pub listen: String,
    pub fhir_version: FhirVersion,
    /// Largest accepted gRPC request, in bytes.
    pub max_request_bytes: usize,
    pub issuers: Vec<IssuerFile>,
    pub cache: CacheConfig,
    pub policy: Policy,
    pub log: LogConfig,
    /// The Envoy ext_authz face (docs/envoy.md).
    pub envoy: EnvoyConfig,
    /// Traces, metrics and the decision audit log.
    pub telemetry: TelemetryFile,
}

impl Default for ConfigFile {
    fn default() -> Self {
        ConfigFile {
            listen: "0.0.0.0:50051".to_owned(),
            fhir_version: FhirVersion::R4,
            max_request_bytes: 4 * 1024 * 1024,
            issuers: Vec::new(),
            cache: CacheConfig::default(),
            policy: Policy::default(),
            log: LogConfig::default(),
            envoy: EnvoyConfig::default(),
            telemetry: TelemetryFile::default(),
        }
    }
}

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

/// The validated `[telemetry]` section.
#[derive(Clone, Debug, PartialEq)]
pub struct TelemetryConfig {
    /// The configured OTLP endpoint; the standard `OTEL_*` variables are read at install.
    pub otlp_endpoint: Option<String>,
    /// `None` when metrics are disabled.
    pub metrics_listen: Option<SocketAddr>,
    pub audit: AuditMode,
    pub trace_sampling_ratio: Option<f64>,
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

/// One trusted token issuer, as written in the file.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IssuerFile {
    /// The exact `iss` of its tokens.
    pub issuer: String,
    /// Accepted `aud` values: the FHIR base URL(s) of this server.
    pub audiences: Vec<String>,
    /// Where its keys are: at most one of these three. With none of them and no
    /// `introspection_endpoint`, they are discovered.
    pub jwks_uri: Option<String>,
    pub jwks_file: Option<PathBuf>,
    /// The JWK Set itself, as JSON text.
    pub jwks: Option<String>,
    /// Allowed signing algorithms; empty means [`DEFAULT_ALGORITHMS`].
    pub algorithms: Vec<String>,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway_secs: u64,
    /// How often keys from `jwks_uri` (or `jwks_file`) and the discovery document are
    /// reloaded.
    pub jwks_refresh_secs: u64,
    /// Least time between two reloads caused by an unknown `kid`.
    pub jwks_min_refresh_secs: u64,
    /// Timeout of one `jwks_uri` or discovery fetch.
    pub jwks_timeout_ms: u64,
    /// Forces (`true`) or disables (`false`) OpenID Connect discovery of `jwks_uri` and
    /// `introspection_endpoint`; by default an issuer with neither a key source nor an
    /// `introspection_endpoint` is discovered.
    pub discovery: Option<bool>,
    /// The issuer's RFC 7662 token introspection endpoint.
    pub introspection_endpoint: Option<String>,
    /// Introspect this issuer's JWTs too, never verify them locally.
    pub introspection_only: bool,
    /// Send tokens that are not JWTs of a configured issuer to this issuer's introspection
    /// endpoint; default: true when the issuer has introspection. At most one issuer may.
    pub opaque_tokens: Option<bool>,
    /// `client_secret_basic` (default), `client_secret_post` or `bearer`.
    pub introspection_auth: Option<String>,
    /// This server's client id at the issuer, for introspection.
    pub client_id: Option<String>,
    /// Its client secret (or, for `bearer`, the bearer token); or `client_secret_file`.
    pub client_secret: Option<Secret>,
    /// A file holding the client secret, read at startup (surrounding whitespace ignored).
    pub client_secret_file: Option<PathBuf>,
    /// Timeout of one introspection request (default 3000).
    pub introspection_timeout_ms: u64,
    /// Most introspection requests in flight to this issuer at once (default 32).
    pub introspection_max_concurrency: usize,
}

/// A credential: never shown by `Debug`, so it cannot leak into logs.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a credential.
    pub fn new(secret: impl Into<String>) -> Self {
        Secret(secret.into())
    }

    /// The credential itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Secret(<redacted>)")
    }
}

/// The token cache, shared by locally verified JWTs and introspected tokens.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Bound of the cache, in approximate bytes of its entries (claims and strings).
    pub max_bytes: u64,
    /// Longest a locally verified JWT is kept, even if its `exp` is later.
    pub max_ttl_secs: u64,
    /// Longest an introspected token is kept: a revocation at the issuer is seen within
    /// this bound.
    pub introspection_max_ttl_secs: u64,
    /// How long a refused token (invalid, inactive) is remembered, so a flood of bad tokens
    /// does not reach the issuer; 0 disables negative caching.
    pub negative_ttl_secs: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            max_bytes: 64 * 1024 * 1024,
            max_ttl_secs: 300,
            introspection_max_ttl_secs: 300,
            negative_ttl_secs: 10,
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

/// The validated configuration the service runs on.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub max_request_bytes: usize,
    pub issuers: Vec<IssuerConfig>,
    pub cache: CacheConfig,
    /// The engine's policy, with the configured FHIR version.
    pub policy: Policy,
    pub log: LogConfig,
    pub envoy: EnvoyConfig,
    pub telemetry: TelemetryConfig,
    /// True when running on [`DEVELOPMENT_CONFIG`].
    pub development: bool,
}

/// A validated issuer.
#[derive(Clone, Debug)]
pub struct IssuerConfig {
    pub issuer: String,
    pub audiences: Vec<String>,
    /// Configured keys; `None` when they are discovered or the issuer is introspection-only.
    pub keys: Option<KeySource>,
    /// Whether `jwks_uri` / `introspection_endpoint` come from the discovery documents
    /// (for whichever of them is not configured).
    pub discovery: bool,
    /// RFC 7662 introspection of this issuer's tokens, when configured.
    pub introspection: Option<IntrospectionConfig>,
    /// This issuer's JWTs are introspected, never verified locally.
    pub introspection_only: bool,
    /// Tokens that are not JWTs of a configured issuer are introspected by this issuer.
    pub opaque_tokens: bool,
    pub algorithms: Vec<Algorithm>,
    pub leeway: Duration,
    pub refresh_interval: Duration,
    pub min_refresh_interval: Duration,
    pub fetch_timeout: Duration,
}

impl IssuerConfig {
    /// An issuer whose JWTs are verified locally with `keys`, with the defaults of the file.
    pub fn with_keys(issuer: impl Into<String>, audiences: Vec<String>, keys: KeySource) -> Self {
        IssuerConfig {
            issuer: issuer.into(),
            audiences,
            keys: Some(keys),
            discovery: false,
            introspection: None,
            introspection_only: false,
            opaque_tokens: false,
            algorithms: DEFAULT_ALGORITHMS.to_vec(),
            leeway: Duration::ZERO,
            refresh_interval: Duration::from_secs(DEFAULT_REFRESH_SECS),
            min_refresh_interval: Duration::from_secs(DEFAULT_MIN_REFRESH_SECS),
            fetch_timeout: Duration::from_millis(DEFAULT_FETCH_TIMEOUT_MS),
        }
    }
}

/// How this server introspects an issuer's tokens (RFC 7662 §2).
#[derive(Clone, Debug)]
pub struct IntrospectionConfig {
    /// The endpoint; `None` until discovery finds it.
    pub endpoint: Option<String>,
    /// How this server authenticates to the endpoint.
    pub auth: IntrospectionAuth,
    /// The client id (optional for `bearer`).
    pub client_id: Option<String>,
    /// The client secret, or the bearer token.
    pub client_secret: Secret,
    /// Timeout of one request (and of the wait for a free slot).
    pub timeout: Duration,
    /// Most requests in flight at once.
    pub max_concurrency: usize,
}

/// Client authentication at the introspection endpoint (RFC 7662 §2.1, RFC 6749 §2.3.1;
/// SMART 2.2 token introspection also allows a bearer token).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntrospectionAuth {
    /// HTTP Basic with the form-encoded client id and secret.
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost,
    /// `Authorization: Bearer <client_secret>`.
    Bearer,
}

impl IntrospectionAuth {
    /// The configuration spelling.
    pub fn name(self) -> &'static str {
        match self {
            IntrospectionAuth::ClientSecretBasic => "client_secret_basic",
            IntrospectionAuth::ClientSecretPost => "client_secret_post",
            IntrospectionAuth::Bearer => "bearer",
        }
    }
}

/// Where an issuer's public keys come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySource {
    Uri(String),
    File(PathBuf),
    Inline(String),
}

const DEFAULT_REFRESH_SECS: u64 = 300;
const DEFAULT_MIN_REFRESH_SECS: u64 = 10;
const DEFAULT_FETCH_TIMEOUT_MS: u64 = 5_000;
const DEFAULT_INTROSPECTION_TIMEOUT_MS: u64 = 3_000;
const DEFAULT_INTROSPECTION_MAX_CONCURRENCY: usize = 32;
/// Least cache size accepted: a few entries.
const MIN_CACHE_BYTES: u64 = 4096;

/// A configuration that cannot be used; the message names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    #[error("configuration key `{key}`: {message}")]
    Invalid { key: String, message: String },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

impl Config {
    /// Loads `file` (or the development configuration when `None`) with the process
    /// environment's `SMART_AUTHZ_*` overrides.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        Config::load_with_env(file, Env::prefixed("SMART_AUTHZ_").split("__"))
    }

    /// Like [`Config::load`], with the environment source given, so tests need not touch
    /// the process environment.
    pub fn load_with_env(
        file: Option<&Path>,
        env: impl figment::Provider,
    ) -> Result<Config, ConfigError> {
        let figment = Figment::from(Serialized::defaults(ConfigFile::default()));
        let figment = match file {
            Some(path) => {
                if !path.is_file() {
                    return Err(invalid(
                        "--config",
                        format!("{} is not a readable file", path.display()),
                    ));
                }
                figment.merge(Toml::file(path))
            }
            None => figment.merge(Toml::string(DEVELOPMENT_CONFIG)),
        };
        let shape: ConfigFile = figment.merge(env).extract().map_err(Box::new)?;
        Config::validate(shape, file.is_none())
    }

    /// The built-in development configuration alone, without the environment.
    pub fn from_development() -> Result<Config, ConfigError> {
        let shape: ConfigFile = Figment::from(Serialized::defaults(ConfigFile::default()))
            .merge(Toml::string(DEVELOPMENT_CONFIG))
            .extract()
            .map_err(Box::new)?;
        Config::validate(shape, true)
    }

    /// Parses a TOML document (no environment), for tests and tools.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let shape: ConfigFile = Figment::from(Serialized::defaults(ConfigFile::default()))
            .merge(Toml::string(text))
            .extract()
            .map_err(Box::new)?;
        Config::validate(shape, false)
    }

    fn validate(shape: ConfigFile, development: bool) -> Result<Config, ConfigError> {
        shape
            .envoy
            .validate()
            .map_err(|(key, message)| invalid(key, message))?;
        let listen = shape.listen.parse().map_err(|_| {
            invalid(
                "listen",
                format!("{:?} is not an address like 0.0.0.0:50051", shape.listen),
            )
        })?;
        if development && !listen_is_loopback(&listen) {
            return Err(invalid(
                "listen",
                "the development configuration's signing key is public: listen on a loopback address, or pass --config",
            ));
        }
        if shape.max_request_bytes < 1024 {
            return Err(invalid("max_request_bytes", "must be at least 1024"));
        }
        if shape.issuers.is_empty() {
            return Err(invalid(
                "issuers",
                "at least one [[issuers]] entry is needed",
            ));
        }
        let issuers = shape
            .issuers
            .into_iter()
            .enumerate()
            .map(|(index, issuer)| validate_issuer(index, issuer, development))
            .collect::<Result<Vec<_>, _>>()?;
        for (index, issuer) in issuers.iter().enumerate() {
            if issuers[..index]
                .iter()
                .any(|earlier| earlier.issuer == issuer.issuer)
            {
                return Err(invalid(format!("issuers[{index}].issuer"), "listed twice"));
            }
        }
        if let Some((index, _)) = issuers
            .iter()
            .enumerate()
            .filter(|(_, issuer)| issuer.opaque_tokens)
            .nth(1)
        {
            let first = issuers
                .iter()
                .position(|issuer| issuer.opaque_tokens)
                .unwrap_or_default();
            return Err(invalid(
                format!("issuers[{index}].opaque_tokens"),
                format!(
                    "issuers[{first}] already accepts opaque tokens; an opaque token names no issuer, so only one issuer may receive them (never send a token to the wrong authorization server): set opaque_tokens = false on all but one"
                ),
            ));
        }
        validate_cache(&shape.cache)?;
        let telemetry = validate_telemetry(&shape.telemetry, listen)?;
        for (name, rule) in &shape.policy.operations {
            if matches!(rule, crate::decision::OperationRule::Permissions { .. })
                && rule.letters().is_none()
            {
                return Err(invalid(
                    format!("policy.operations.{name}.letters"),
                    "must be letters of cruds",
                ));
            }
        }
        let policy = Policy {
            fhir_version: shape.fhir_version,
            ..shape.policy
        };
        Ok(Config {
            listen,
            max_request_bytes: shape.max_request_bytes,
            issuers,
            cache: shape.cache,
            policy,
            log: shape.log,
            envoy: shape.envoy,
            telemetry,
            development,
        })
    }
}

fn validate_cache(cache: &CacheConfig) -> Result<(), ConfigError> {
    if cache.max_bytes < MIN_CACHE_BYTES {
        return Err(invalid(
            "cache.max_bytes",
            format!("must be at least {MIN_CACHE_BYTES}"),
        ));
    }
    if cache.max_ttl_secs == 0 {
        return Err(invalid("cache.max_ttl_secs", "must be at least 1"));
    }
    if cache.introspection_max_ttl_secs == 0 {
        return Err(invalid(
            "cache.introspection_max_ttl_secs",
            "must be at least 1",
        ));
    }
    Ok(())
}

fn validate_telemetry(
    file: &TelemetryFile,
    listen: SocketAddr,
) -> Result<TelemetryConfig, ConfigError> {
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
            if address == listen && address.port() != 0 {
                return Err(invalid(
                    "telemetry.metrics_listen",
                    "must differ from `listen`: metrics are served on their own port",
                ));
            }
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

fn is_http_url(text: &str) -> bool {
    let rest = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"));
    rest.is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'))
}

/// Largest accepted `leeway_secs`.
pub const MAX_LEEWAY_SECS: u64 = 300;

/// Whether a listen address accepts connections from this machine only.
pub fn listen_is_loopback(listen: &SocketAddr) -> bool {
    listen.ip().is_loopback()
}

fn validate_issuer(
    index: usize,
    mut file: IssuerFile,
    development: bool,
) -> Result<IssuerConfig, ConfigError> {
    let key = |name: &str| format!("issuers[{index}].{name}");
    if file.issuer.is_empty() {
        return Err(invalid(key("issuer"), "missing"));
    }
    // A clock skew beyond minutes would let expired tokens through (RFC 7519 §4.1.4).
    if file.leeway_secs > MAX_LEEWAY_SECS {
        return Err(invalid(
            key("leeway_secs"),
            format!("at most {MAX_LEEWAY_SECS}"),
        ));
    }
    if file.audiences.is_empty() || file.audiences.iter().any(String::is_empty) {
        return Err(invalid(
            key("audiences"),
            "list the FHIR base URL(s) tokens must be issued for",
        ));
    }
    let mut keys = match (
        file.jwks_uri.take(),
        file.jwks_file.take(),
        file.jwks.take(),
    ) {
        (Some(uri), None, None) => {
            if !is_http_url(&uri) {
                return Err(invalid(key("jwks_uri"), "must be an http(s) URL"));
            }
            Some(KeySource::Uri(uri))
        }
        (None, Some(path), None) => Some(KeySource::File(path)),
        (None, None, Some(jwks)) => Some(KeySource::Inline(jwks)),
        (None, None, None) => None,
        _ => {
            return Err(invalid(
                key("jwks_uri"),
                "set at most one of jwks_uri, jwks_file, jwks",
            ));
        }
    };
    if let Some(endpoint) = &file.introspection_endpoint
        && !is_http_url(endpoint)
    {
        return Err(invalid(
            key("introspection_endpoint"),
            "must be an http(s) URL",
        ));
    }
    // The public development key belongs to the development issuer alone: an issuer added
    // through the environment on top of the development configuration never gets it.
    if keys.is_none()
        && file.introspection_endpoint.is_none()
        && file.discovery.is_none()
        && development
        && file.issuer == DEVELOPMENT_ISSUER
    {
        keys = Some(KeySource::Inline(DEVELOPMENT_JWKS.to_owned()));
    }
    let discovery = file
        .discovery
        .unwrap_or(keys.is_none() && file.introspection_endpoint.is_none());
    if discovery && !is_http_url(&file.issuer) {
        return Err(invalid(
            key("issuer"),
            "discovery needs an http(s) issuer URL; otherwise set jwks_uri, jwks_file, jwks or introspection_endpoint",
        ));
    }
    let has_credentials = file.client_id.is_some()
        || file.client_secret.is_some()
        || file.client_secret_file.is_some();
    let wants_introspection =
        file.introspection_endpoint.is_some() || (discovery && has_credentials);
    if !wants_introspection {
        if has_credentials {
            return Err(invalid(
                key("introspection_endpoint"),
                "client credentials are set but there is no introspection endpoint: set introspection_endpoint, or discovery = true",
            ));
        }
        if file.introspection_auth.is_some() {
            return Err(invalid(
                key("introspection_auth"),
                "this issuer has no introspection endpoint",
            ));
        }
    }
    if keys.is_none() && !discovery && file.introspection_endpoint.is_none() {
        return Err(invalid(
            key("jwks_uri"),
            "set one of jwks_uri, jwks_file, jwks or introspection_endpoint, or leave discovery enabled",
        ));
    }
    let introspection = if wants_introspection {
        Some(introspection_config(&key, &file)?)
    } else {
        None
    };
    if file.introspection_only {
        if introspection.is_none() {
            return Err(invalid(
                key("introspection_only"),
                "needs an introspection endpoint (introspection_endpoint, or discovery with client credentials)",
            ));
        }
        if keys.is_some() {
            return Err(invalid(
                key("introspection_only"),
                "its JWTs are never verified locally: remove jwks_uri, jwks_file and jwks",
            ));
        }
    }
    let opaque_tokens = match file.opaque_tokens {
        Some(true) if introspection.is_none() => {
            return Err(invalid(
                key("opaque_tokens"),
                "opaque tokens need an introspection endpoint",
            ));
        }
        Some(accepts) => accepts,
        None => introspection.is_some(),
    };
    let algorithms = if file.algorithms.is_empty() {
        DEFAULT_ALGORITHMS.to_vec()
    } else {
        file.algorithms
            .iter()
            .map(|name| {
                parse_algorithm(name).map_err(|message| invalid(key("algorithms"), message))
            })
            .collect::<Result<Vec<_>, _>>()?
    };
    let seconds =
        |value: u64, default: u64| Duration::from_secs(if value == 0 { default } else { value });
    Ok(IssuerConfig {
        issuer: file.issuer,
        audiences: file.audiences,
        keys,
        discovery,
        introspection,
        introspection_only: file.introspection_only,
        opaque_tokens,
        algorithms,
        leeway: Duration::from_secs(file.leeway_secs),
        refresh_interval: seconds(file.jwks_refresh_secs, DEFAULT_REFRESH_SECS),
        min_refresh_interval: seconds(file.jwks_min_refresh_secs, DEFAULT_MIN_REFRESH_SECS),
        fetch_timeout: Duration::from_millis(if file.jwks_timeout_ms == 0 {
            DEFAULT_FETCH_TIMEOUT_MS
        } else {
            file.jwks_timeout_ms
        }),
    })
}

/// The introspection client settings of an issuer; the secret file is read here, at startup.
fn introspection_config(
    key: &dyn Fn(&str) -> String,
    file: &IssuerFile,
) -> Result<IntrospectionConfig, ConfigError> {
    let auth = match file.introspection_auth.as_deref() {
        None | Some("client_secret_basic") => IntrospectionAuth::ClientSecretBasic,
        Some("client_secret_post") => IntrospectionAuth::ClientSecretPost,
        Some("bearer") => IntrospectionAuth::Bearer,
        Some(other) => {
            return Err(invalid(
                key("introspection_auth"),
                format!("{other:?} is not one of client_secret_basic, client_secret_post, bearer"),
            ));
        }
    };
    let client_id = file.client_id.clone().filter(|id| !id.is_empty());
    if client_id.is_none() && auth != IntrospectionAuth::Bearer {
        return Err(invalid(
            key("client_id"),
            format!(
                "introspection with {} needs this server's client id",
                auth.name()
            ),
        ));
    }
    let client_secret = match (&file.client_secret, &file.client_secret_file) {
        (Some(secret), None) => secret.clone(),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path).map_err(|error| {
                invalid(
                    key("client_secret_file"),
                    format!("cannot read {}: {error}", path.display()),
                )
            })?;
            Secret::new(text.trim())
        }
        (Some(_), Some(_)) => {
            return Err(invalid(
                key("client_secret"),
                "set client_secret or client_secret_file, not both",
            ));
        }
        (None, None) => {
            return Err(invalid(
                key("client_secret"),
                "introspection needs a client_secret or client_secret_file",
            ));
        }
    };
    if client_secret.expose().is_empty() {
        let name = if file.client_secret_file.is_some() {
            "client_secret_file"
        } else {
            "client_secret"
        };
        return Err(invalid(key(name), "is empty"));
    }
    Ok(IntrospectionConfig {
        endpoint: file.introspection_endpoint.clone(),
        auth,
        client_id,
        client_secret,
        timeout: Duration::from_millis(if file.introspection_timeout_ms == 0 {
            DEFAULT_INTROSPECTION_TIMEOUT_MS
        } else {
            file.introspection_timeout_ms
        }),
        max_concurrency: if file.introspection_max_concurrency == 0 {
            DEFAULT_INTROSPECTION_MAX_CONCURRENCY
        } else {
            file.introspection_max_concurrency
        },
    })
}

/// An asymmetric JWS algorithm; `none` and the HMAC family are refused because a public key
/// must never be usable as a shared secret (RFC 8725 §3.1, §3.2).
fn parse_algorithm(name: &str) -> Result<Algorithm, String> {
    let algorithm: Algorithm = name
        .parse()
        .map_err(|_| format!("unknown algorithm {name:?}"))?;
    match algorithm {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => Err(format!(
            "{name} is an HMAC algorithm; only asymmetric algorithms are allowed"
        )),
        other => Ok(other),
    }
}

#[cfg(test)]
mod tests;
