//! Configuration: a TOML file (or the built-in development configuration) with environment
//! overrides, validated into a [`Config`] before anything starts. Every error names its key.
//!
//! Environment variables use the prefix `SMART_AUTHZ_` and `__` between nested keys, e.g.
//! `SMART_AUTHZ_LISTEN=0.0.0.0:8443`, `SMART_AUTHZ_CACHE__MAX_TTL_SECS=60`,
//! `SMART_AUTHZ_POLICY__STRICT_SCOPES=true`. An unknown key stops the start-up, but for
//! `SMART_AUTHZ_CONFIG` (`--config`) and Kubernetes' service links, which are not read
//! ([`environment_variable_is_read`]) and named in a warning ([`ignored_environment`]).
//!
//! A leaf of the service: every configuration type lives here, one file per section
//! (`issuer`, `cache`, `telemetry`, `envoy`), and this module imports nothing of the
//! service but the engine's [`Policy`] and [`FhirVersion`].

mod authzen;
mod cache;
mod envoy;
mod issuer;
mod response_filter;
mod servers;
mod telemetry;
mod tls;
mod unix_socket;

use std::net::SocketAddr;
use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Json, Serialized, Toml};
use serde::{Deserialize, Serialize};

pub use self::authzen::{AuthzenConfig, AuthzenFile};
pub use self::cache::CacheConfig;
pub use self::envoy::{EnvoyConfig, FhirBase};
pub use self::issuer::{
    DEFAULT_ALGORITHMS, IntrospectionAuth, IntrospectionConfig, IssuerConfig, IssuerFile,
    KeySource, MAX_LEEWAY_SECS, Secret,
};
pub use self::response_filter::{DEFAULT_MAX_BODY_BYTES, ResponseFilterConfig, ResponseFilterFile};
pub use self::servers::{DEFAULT_SERVER, FhirServerConfig, FhirServerFile};
pub use self::telemetry::{
    AuditMode, DEFAULT_METRICS_LISTEN, LogConfig, LogFormat, TelemetryConfig, TelemetryFile,
};
pub use self::tls::{CallerConfig, CallerFile, TlsConfig, TlsFile};
use crate::decision::Policy;
use crate::fhir::FhirVersion;

/// The development configuration used when no file is given: the issuer of
/// `examples/dev/`, whose private key is in the repository. Never use it in production.
pub const DEVELOPMENT_CONFIG: &str = include_str!("../../examples/dev/config.toml");
/// The issuer of the development configuration, whose private key is public.
pub const DEVELOPMENT_ISSUER: &str = "https://smart-authz.dev/issuer";
/// The development issuer's public keys, embedded so the default works from any directory.
pub const DEVELOPMENT_JWKS: &str = include_str!("../../examples/dev/jwks.json");
/// The development issuer's private key, for `smart-authz token`.
pub const DEVELOPMENT_PRIVATE_KEY: &str = include_str!("../../examples/dev/private-key.pem");

/// The file shape, as written by operators.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConfigFile {
    pub listen: String,
    /// A second, plaintext listener serving only `grpc.health.v1`, for probes that cannot
    /// speak TLS (Kubernetes' gRPC probes); empty: none.
    pub health_listen: String,
    /// The gRPC API on a Unix domain socket as well, plaintext, for callers on the same
    /// host or in the same pod (docs/operations.md); empty: none.
    pub unix_listen: String,
    /// On SIGTERM, how long health answers NOT_SERVING before the drain starts, so load
    /// balancers and endpoints stop sending new calls first.
    pub shutdown_delay_secs: u64,
    pub fhir_version: FhirVersion,
    /// Largest accepted gRPC request, in bytes.
    pub max_request_bytes: usize,
    /// Calls in flight at most, over every connection of every face; one more is refused
    /// at once (RESOURCE_EXHAUSTED over gRPC, 503 over HTTP).
    pub max_concurrent_calls: usize,
    /// Bytes of request bodies, of their messages decoded and of the JSON trees parsed from
    /// them, held at once over every connection of every face: read before their call
    /// starts, held until it ends. A call whose body, message or tree would go beyond is
    /// refused at once, as one beyond
    /// `max_concurrent_calls` is. Unset: 24 times `max_request_bytes` (96 MiB for its
    /// default), at least 64 MiB.
    pub max_buffered_request_bytes: Option<usize>,
    /// Connections to the gRPC listener open at once; one more waits in the listen backlog
    /// until another closes.
    pub max_connections: usize,
    /// Close each connection gracefully after this long (0: never), so clients reconnect
    /// and spread over replicas added since.
    pub max_connection_age_secs: u64,
    pub issuers: Vec<IssuerFile>,
    pub cache: CacheConfig,
    pub policy: Policy,
    pub log: LogConfig,
    /// The Envoy ext_authz face (docs/envoy.md).
    pub envoy: EnvoyConfig,
    /// Traces, metrics and the decision audit log.
    pub telemetry: TelemetryFile,
    /// The FHIR servers decided for (docs/servers.md); none means one implicit server.
    pub fhir_servers: Vec<FhirServerFile>,
    /// TLS on the gRPC listener; plaintext when absent.
    pub tls: TlsFile,
    /// Client certificate identities and the servers they may ask for (mutual TLS).
    pub callers: Vec<CallerFile>,
    /// The AuthZEN HTTP JSON face (docs/authzen.md); off unless it has a `listen`.
    pub authzen: AuthzenFile,
    /// Filtering of FHIR servers' answers (docs/response-filtering.md).
    pub response_filter: ResponseFilterFile,
}

impl Default for ConfigFile {
    fn default() -> Self {
        ConfigFile {
            listen: "0.0.0.0:50051".to_owned(),
            health_listen: String::new(),
            unix_listen: String::new(),
            shutdown_delay_secs: 0,
            fhir_version: FhirVersion::R4,
            max_request_bytes: 4 * 1024 * 1024,
            max_concurrent_calls: 1024,
            max_buffered_request_bytes: None,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connection_age_secs: 0,
            issuers: Vec::new(),
            cache: CacheConfig::default(),
            policy: Policy::default(),
            log: LogConfig::default(),
            envoy: EnvoyConfig::default(),
            telemetry: TelemetryFile::default(),
            fhir_servers: Vec::new(),
            tls: TlsFile::default(),
            callers: Vec::new(),
            authzen: AuthzenFile::default(),
            response_filter: ResponseFilterFile::default(),
        }
    }
}

/// The validated configuration the service runs on.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub max_concurrent_calls: usize,
    pub max_buffered_request_bytes: usize,
    /// Connections to the gRPC listener (TCP) open at once.
    pub max_connections: usize,
    /// `None`: connections live as long as their clients keep them.
    pub max_connection_age: Option<std::time::Duration>,
    pub health_listen: Option<SocketAddr>,
    /// The socket file of the gRPC API's Unix listener; `None`: TCP only.
    pub unix_listen: Option<std::path::PathBuf>,
    pub shutdown_delay: std::time::Duration,
    pub max_request_bytes: usize,
    pub issuers: Vec<IssuerConfig>,
    pub cache: CacheConfig,
    /// The top-level policy, with the configured FHIR version; each server has its own.
    pub policy: Policy,
    pub log: LogConfig,
    pub envoy: EnvoyConfig,
    pub telemetry: TelemetryConfig,
    /// At least one: the implicit [`DEFAULT_SERVER`] when the file lists none.
    pub fhir_servers: Vec<FhirServerConfig>,
    pub tls: Option<TlsConfig>,
    pub callers: Vec<CallerConfig>,
    /// The AuthZEN HTTP face, when configured.
    pub authzen: Option<AuthzenConfig>,
    pub response_filter: ResponseFilterConfig,
    /// True when running on [`DEVELOPMENT_CONFIG`].
    pub development: bool,
}

/// The prefix of the environment variables that override the file.
pub const ENV_PREFIX: &str = "SMART_AUTHZ_";

/// Whether the environment variable `name` is read as configuration: every
/// `SMART_AUTHZ_*` variable (case aside, as figment matches the prefix) but the command
/// line's `SMART_AUTHZ_CONFIG` and the variables Kubernetes sets for a Service whose name
/// starts `smart-authz` (service links: `SMART_AUTHZ_SERVICE_HOST`,
/// `SMART_AUTHZ_PORT_50051_TCP`, ...). Those are not ours, and refused as unknown keys
/// they stopped every pod beside such a Service from starting; any other unknown variable
/// still does, so a misspelt override never passes unnoticed.
pub fn environment_variable_is_read(name: &str) -> bool {
    let Some(key) = strip_prefix_ignoring_case(name, ENV_PREFIX) else {
        return false;
    };
    !key.eq_ignore_ascii_case("CONFIG") && !is_service_link(key)
}

/// The `SMART_AUTHZ_*` variables of this process that are not read, for a warning.
pub fn ignored_environment() -> Vec<String> {
    let mut ignored: Vec<String> = std::env::vars_os()
        .filter_map(|(name, _)| name.into_string().ok())
        .filter(|name| strip_prefix_ignoring_case(name, ENV_PREFIX).is_some_and(is_service_link))
        .collect();
    ignored.sort();
    ignored
}

fn strip_prefix_ignoring_case<'a>(name: &'a str, prefix: &str) -> Option<&'a str> {
    let head = name.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &name[prefix.len()..])
}

/// Whether `key` (after the prefix) is a Kubernetes service link of a Service named
/// `smart-authz[-...]`: `[<rest of the name>_]SERVICE_HOST`, `...SERVICE_PORT[_<port>]`,
/// `...PORT`, `...PORT_<n>_<TCP|UDP|SCTP>[_PROTO|_PORT|_ADDR]`.
fn is_service_link(key: &str) -> bool {
    let words: Vec<String> = key.split('_').map(str::to_ascii_uppercase).collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let ends_with = |tail: &[&str]| words.ends_with(tail);
    if ends_with(&["SERVICE", "HOST"]) || ends_with(&["PORT"]) {
        return true;
    }
    if words.windows(2).any(|pair| pair == ["SERVICE", "PORT"]) {
        return true;
    }
    // `PORT_<n>_<protocol>`, and one of its three parts after it.
    let protocol = |word: &str| matches!(word, "TCP" | "UDP" | "SCTP");
    let tail = match words.last() {
        Some(&("PROTO" | "PORT" | "ADDR")) => &words[..words.len() - 1],
        _ => &words[..],
    };
    matches!(
        tail,
        [.., "PORT", number, last] if number.bytes().all(|b| b.is_ascii_digit()) && !number.is_empty() && protocol(last)
    )
}

/// A configuration that cannot be used; the message names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    #[error("configuration key `{key}`: {message}")]
    Invalid { key: String, message: String },
}

pub(super) fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

impl Config {
    /// Loads `file` (or the development configuration when `None`) with the process
    /// environment's `SMART_AUTHZ_*` overrides.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let env = Env::prefixed(ENV_PREFIX)
            .filter(|name| environment_variable_is_read(&format!("{ENV_PREFIX}{name}")))
            .split("__");
        Config::load_with_env(file, env)
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
                // JSON too: what a Helm chart renders from YAML values (`toJson`) keeps
                // integers integers, where its `toToml` writes `300.0`.
                if path
                    .extension()
                    .is_some_and(|extension| extension == "json")
                {
                    figment.merge(Json::file(path))
                } else {
                    figment.merge(Toml::file(path))
                }
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

    /// What a valid configuration may still get wrong, one sentence each, for the log at
    /// start-up.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        for (index, issuer) in self.issuers.iter().enumerate() {
            let keys = match &issuer.keys {
                Some(KeySource::Uri(uri)) => Some(uri.as_str()),
                _ => None,
            };
            let introspection = issuer
                .introspection
                .as_ref()
                .and_then(|introspection| introspection.endpoint.as_deref());
            let discovered = issuer.discovery.then_some(issuer.issuer.as_str());
            for url in [keys, introspection, discovered].into_iter().flatten() {
                if is_plain_http_beyond_this_host(url) {
                    warnings.push(format!(
                        "issuers[{index}]: {} is plain HTTP: anyone on the way to it can put in keys of their own (and forge every token) or read the introspection secret and tokens; use https, unless a mesh encrypts the hop",
                        without_userinfo(url)
                    ));
                }
            }
        }
        let mutual_tls = self
            .tls
            .as_ref()
            .is_some_and(|tls| tls.client_ca_file.is_some());
        if mutual_tls && self.callers.is_empty() {
            warnings.push(
                "mutual TLS without [[callers]]: every certificate of the client CA may ask for every FHIR server and call IntrospectToken; list the callers (a mesh CA signs every workload)"
                    .to_owned(),
            );
        }
        warnings
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
        let health_listen = match shape.health_listen.trim() {
            "" => None,
            address => {
                let address: SocketAddr = address.parse().map_err(|_| {
                    invalid(
                        "health_listen",
                        format!("{address:?} is not an address like 0.0.0.0:8081; empty: none"),
                    )
                })?;
                Some(address)
            }
        };
        if shape.shutdown_delay_secs > MAX_SHUTDOWN_DELAY_SECS {
            return Err(invalid(
                "shutdown_delay_secs",
                format!("at most {MAX_SHUTDOWN_DELAY_SECS}"),
            ));
        }
        for (key, limit) in [
            ("max_concurrent_calls", shape.max_concurrent_calls),
            ("max_connections", shape.max_connections),
        ] {
            if !(1..=MAX_LIMIT).contains(&limit) {
                return Err(invalid(key, format!("must be between 1 and {MAX_LIMIT}")));
            }
        }
        if shape.max_request_bytes < 1024 {
            return Err(invalid("max_request_bytes", "must be at least 1024"));
        }
        let max_buffered_request_bytes = match shape.max_buffered_request_bytes {
            None => DEFAULT_MAX_BUFFERED_REQUEST_BYTES.max(
                shape
                    .max_request_bytes
                    .saturating_mul(BUFFERED_PER_REQUEST_BYTE),
            ),
            Some(bytes) if bytes < shape.max_request_bytes.saturating_mul(2) => {
                return Err(invalid(
                    "max_buffered_request_bytes",
                    "must be at least twice max_request_bytes: two requests of the largest size must be readable at once",
                ));
            }
            Some(bytes) => bytes,
        };
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
            .map(|(index, issuer)| issuer::validate_issuer(index, issuer, development))
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
        cache::validate_cache(&shape.cache)?;
        let response_filter = response_filter::validate_response_filter(
            &shape.response_filter,
            shape.max_request_bytes,
        )?;
        let telemetry = telemetry::validate_telemetry(&shape.telemetry)?;
        check_operation_letters(&shape.policy, "policy")?;
        let fhir_servers = servers::validate_servers(
            shape.fhir_servers,
            &issuers,
            shape.fhir_version,
            &shape.policy,
            &shape.envoy,
        )?;
        let tls = tls::validate_tls(shape.tls)?;
        let unix_listen = unix_socket::validate_unix_listen(&shape.unix_listen, tls.as_ref())?;
        let callers = tls::validate_callers(shape.callers, tls.as_ref(), &fhir_servers)?;
        let authzen = authzen::validate_authzen(shape.authzen, tls.as_ref(), development)?;
        let policy = Policy {
            fhir_version: shape.fhir_version,
            ..shape.policy
        };
        let config = Config {
            listen,
            max_concurrent_calls: shape.max_concurrent_calls,
            max_buffered_request_bytes,
            max_connections: shape.max_connections,
            max_connection_age: (shape.max_connection_age_secs > 0)
                .then(|| std::time::Duration::from_secs(shape.max_connection_age_secs)),
            health_listen,
            unix_listen,
            shutdown_delay: std::time::Duration::from_secs(shape.shutdown_delay_secs),
            max_request_bytes: shape.max_request_bytes,
            issuers,
            cache: shape.cache,
            policy,
            log: shape.log,
            envoy: shape.envoy,
            telemetry,
            fhir_servers,
            tls,
            callers,
            authzen,
            response_filter,
            development,
        };
        config.check_listeners()?;
        Ok(config)
    }

    /// Listens on `listen` instead (`serve --listen`), held to the rules of the file's.
    pub fn listen_on(&mut self, listen: SocketAddr) -> Result<(), ConfigError> {
        if self.development && !listen_is_loopback(&listen) {
            return Err(invalid(
                "--listen",
                "the development configuration's signing key is public: listen on a loopback address, or pass --config",
            ));
        }
        self.listen = listen;
        self.check_listeners()
    }

    /// Every listener on its own address: two on one port would fail to bind, or one would
    /// be dropped, long after the file was read. Port 0 (any free port) never clashes.
    fn check_listeners(&self) -> Result<(), ConfigError> {
        let listeners = [
            ("listen", Some(self.listen)),
            ("health_listen", self.health_listen),
            ("telemetry.metrics_listen", self.telemetry.metrics_listen),
            (
                "authzen.listen",
                self.authzen.as_ref().map(|authzen| authzen.listen),
            ),
        ];
        let bound: Vec<(&str, SocketAddr)> = listeners
            .into_iter()
            .filter_map(|(key, address)| Some((key, address?)))
            .filter(|(_, address)| address.port() != 0)
            .collect();
        for (index, (key, address)) in bound.iter().enumerate() {
            // A wildcard address (`0.0.0.0`, `[::]`) takes the port on every address.
            let clashes = |earlier: &SocketAddr| {
                earlier.port() == address.port()
                    && (earlier.ip() == address.ip()
                        || earlier.ip().is_unspecified()
                        || address.ip().is_unspecified())
            };
            if let Some((other, _)) = bound[..index].iter().find(|(_, earlier)| clashes(earlier)) {
                return Err(invalid(
                    *key,
                    format!(
                        "must differ from `{other}` ({address}): each listener needs its own address"
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Largest `shutdown_delay_secs`: Kubernetes' default grace period is 30 s, and the drain
/// needs its share of it.
pub const MAX_SHUTDOWN_DELAY_SECS: u64 = 60;

/// The largest `max_concurrent_calls` and `max_connections` (and `[authzen]
/// max_connections`): far beyond what one process serves, and within what a semaphore
/// holds.
pub const MAX_LIMIT: usize = 1_000_000;

/// Least default of `max_buffered_request_bytes`, which is otherwise
/// [`BUFFERED_PER_REQUEST_BYTE`] times `max_request_bytes`.
pub const DEFAULT_MAX_BUFFERED_REQUEST_BYTES: usize = 64 * 1024 * 1024;

/// The budget an unset `max_buffered_request_bytes` gives each byte of the largest
/// request: its bytes, its message decoded (twice its bytes, `grpc::wire`), the copy a
/// parse on the blocking pool reads, and the tree its JSON is parsed into, which is up to
/// 18 times its bytes for a Bundle of small resources (docs/performance-log.md, "Parsed
/// trees counted against the budget"). 96 MiB for the
/// default 4 MiB `max_request_bytes`: the largest request is read whole, alone.
pub const BUFFERED_PER_REQUEST_BYTE: usize = 24;

/// Default of `max_connections`: a few per FHIR server replica or Envoy is the usual load;
/// an idle HTTP/2 connection costs tens of kilobytes.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;

/// An `http://` URL to a host other than this one's loopback (`localhost`, `127.0.0.0/8`,
/// `[::1]`), where a development issuer may run.
fn is_plain_http_beyond_this_host(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    let host = match host.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
        None => host.split(':').next().unwrap_or_default(),
    };
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host == "::1"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|address| address.is_loopback());
    !loopback
}

pub(crate) fn is_http_url(text: &str) -> bool {
    let rest = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"));
    rest.is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'))
}

/// `url` with its credentials (`user:password@`) replaced by `***@`, for logs and error
/// messages: an OTLP collector's URL may carry them (RFC 3986 §3.2.1 deprecates it, some
/// collectors' proxies still take it).
pub(crate) fn without_userinfo(url: &str) -> std::borrow::Cow<'_, str> {
    let start = url.find("://").map_or(0, |scheme_end| scheme_end + 3);
    let authority = &url[start..];
    let authority = &authority[..authority.find(['/', '?', '#']).unwrap_or(authority.len())];
    match authority.rfind('@') {
        Some(at) => format!("{}***@{}", &url[..start], &url[start + at + 1..]).into(),
        None => url.into(),
    }
}

/// Whether a listen address accepts connections from this machine only.
pub fn listen_is_loopback(listen: &SocketAddr) -> bool {
    listen.ip().is_loopback()
}

/// Refuses an operation rule of `policy` (under `key`) whose letters are not of `cruds`: it
/// would deny every call at run time, where the operator expects it to grant.
pub(super) fn check_operation_letters(
    policy: &crate::decision::Policy,
    key: &str,
) -> Result<(), ConfigError> {
    for (name, rule) in &policy.operations {
        if matches!(rule, crate::decision::OperationRule::Permissions { .. })
            && rule.letters().is_none()
        {
            return Err(invalid(
                format!("{key}.operations.{name}.letters"),
                "must be letters of cruds",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
