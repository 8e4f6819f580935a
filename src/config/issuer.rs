//! The `[[issuers]]` entries: trusted token issuers, where their keys are, and how their
//! opaque tokens are introspected (RFC 7662).

use std::path::PathBuf;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde::{Deserialize, Serialize};

use super::{ConfigError, DEVELOPMENT_ISSUER, DEVELOPMENT_JWKS, invalid, is_http_url};

/// Algorithms accepted when an issuer lists none: asymmetric only, never `none` or HMAC.
pub const DEFAULT_ALGORITHMS: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::PS256,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// One trusted token issuer, as written in the file.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IssuerFile {
    /// The exact `iss` of its tokens.
    pub issuer: String,
    /// Accepted `aud` values: the FHIR base URL(s) of this server. Optional with
    /// `[[fhir_servers]]`, whose `audiences` are checked per request; when given there too,
    /// a token must name one of these as well.
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
    /// Accept an introspection answer without `aud` (RFC 7662 §2.2 makes it optional), as
    /// some authorization servers give for opaque tokens issued without a resource indicator
    /// (RFC 8707). This trusts the issuer to answer only for tokens meant for this server
    /// (RFC 7662 §4). Without it such an answer is refused, as a JWT without `aud` is; under
    /// `[[fhir_servers]]` a token must name its server whatever this says.
    pub introspection_without_aud: bool,
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
    /// An answer without `aud` is accepted (`introspection_without_aud`).
    pub without_aud: bool,
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
/// Largest accepted `leeway_secs`.
pub const MAX_LEEWAY_SECS: u64 = 300;

pub(super) fn validate_issuer(
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
    // Required unless `[[fhir_servers]]` name the audiences (checked with the servers).
    if file.audiences.iter().any(String::is_empty) {
        return Err(invalid(key("audiences"), "an audience may not be empty"));
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
        without_aud: file.introspection_without_aud,
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
