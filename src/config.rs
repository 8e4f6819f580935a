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
use crate::fhir::FhirVersion;

/// The development configuration used when no file is given: the issuer of
/// `examples/dev/`, whose private key is in the repository. Never use it in production.
pub const DEVELOPMENT_CONFIG: &str = include_str!("../examples/dev/config.toml");
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
    /// Where its keys are: exactly one of these three.
    pub jwks_uri: Option<String>,
    pub jwks_file: Option<PathBuf>,
    /// The JWK Set itself, as JSON text.
    pub jwks: Option<String>,
    /// Allowed signing algorithms; empty means [`DEFAULT_ALGORITHMS`].
    pub algorithms: Vec<String>,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway_secs: u64,
    /// How often keys from `jwks_uri` (or `jwks_file`) are reloaded.
    pub jwks_refresh_secs: u64,
    /// Least time between two reloads caused by an unknown `kid`.
    pub jwks_min_refresh_secs: u64,
    /// Timeout of one `jwks_uri` fetch.
    pub jwks_timeout_ms: u64,
}

/// The verified-token cache.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Most tokens kept.
    pub max_entries: u64,
    /// Longest a verified token is kept, even if its `exp` is later.
    pub max_ttl_secs: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            max_entries: 100_000,
            max_ttl_secs: 300,
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
    /// True when running on [`DEVELOPMENT_CONFIG`].
    pub development: bool,
}

/// A validated issuer.
#[derive(Clone, Debug)]
pub struct IssuerConfig {
    pub issuer: String,
    pub audiences: Vec<String>,
    pub keys: KeySource,
    pub algorithms: Vec<Algorithm>,
    pub leeway: Duration,
    pub refresh_interval: Duration,
    pub min_refresh_interval: Duration,
    pub fetch_timeout: Duration,
}

/// Where an issuer's public keys come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySource {
    Uri(String),
    File(PathBuf),
    Inline(String),
}

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
        let listen = shape.listen.parse().map_err(|_| {
            invalid(
                "listen",
                format!("{:?} is not an address like 0.0.0.0:50051", shape.listen),
            )
        })?;
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
        if shape.cache.max_entries == 0 {
            return Err(invalid("cache.max_entries", "must be at least 1"));
        }
        if shape.cache.max_ttl_secs == 0 {
            return Err(invalid("cache.max_ttl_secs", "must be at least 1"));
        }
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
            development,
        })
    }
}

fn validate_issuer(
    index: usize,
    file: IssuerFile,
    development: bool,
) -> Result<IssuerConfig, ConfigError> {
    let key = |name: &str| format!("issuers[{index}].{name}");
    if file.issuer.is_empty() {
        return Err(invalid(key("issuer"), "missing"));
    }
    if file.audiences.is_empty() || file.audiences.iter().any(String::is_empty) {
        return Err(invalid(
            key("audiences"),
            "list the FHIR base URL(s) tokens must be issued for",
        ));
    }
    let keys = match (file.jwks_uri, file.jwks_file, file.jwks) {
        (Some(uri), None, None) => {
            if !(uri.starts_with("https://") || uri.starts_with("http://")) {
                return Err(invalid(key("jwks_uri"), "must be an http(s) URL"));
            }
            KeySource::Uri(uri)
        }
        (None, Some(path), None) => KeySource::File(path),
        (None, None, Some(jwks)) => KeySource::Inline(jwks),
        (None, None, None) if development => KeySource::Inline(DEVELOPMENT_JWKS.to_owned()),
        _ => {
            return Err(invalid(
                key("jwks_uri"),
                "set exactly one of jwks_uri, jwks_file, jwks",
            ));
        }
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
        algorithms,
        leeway: Duration::from_secs(file.leeway_secs),
        refresh_interval: seconds(file.jwks_refresh_secs, 300),
        min_refresh_interval: seconds(file.jwks_min_refresh_secs, 10),
        fetch_timeout: Duration::from_millis(if file.jwks_timeout_ms == 0 {
            5_000
        } else {
            file.jwks_timeout_ms
        }),
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
