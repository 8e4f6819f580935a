//! Access tokens: local JWT verification against each configured issuer's keys, RFC 7662
//! introspection of opaque tokens (and of JWTs of introspection-only issuers), issuer
//! discovery, and the cache in front of both. I/O lives here, never in the engine.
//!
//! [`Authenticator::authenticate`] takes the `Authorization` header value (or the bare
//! token) and looks the token's SHA-256 up in the [`cache::TokenCache`]. On a miss it routes
//! the token:
//! - a JWT whose `iss` is a configured issuer: verified locally with [`jwt`] against that
//!   issuer's keys ([`jwks`], configured or [`discovery`]-found), or introspected by that
//!   issuer ([`introspect`]) when it is introspection-only or has no keys;
//! - a JWT whose `iss` is not configured: refused (`WrongIssuer`), never sent anywhere;
//! - a JWS whose `iss` cannot be read, or a value with whitespace left (another scheme than
//!   `Bearer`: `Basic ...`): refused as malformed, never sent anywhere;
//! - anything else (an opaque token): introspected by the one issuer configured with
//!   `opaque_tokens`, or refused as malformed when there is none.

mod base64url;
pub mod cache;
mod claims;
pub mod discovery;
pub mod introspect;
pub mod jwks;
pub mod jwt;
pub mod metrics;
mod shared_scopes;
pub mod signature;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Map, Value};

pub use cache::CacheStats;
use cache::CachedVerdict;
pub use claims::IntrospectionClaims;
pub use shared_scopes::ContextReader;

use crate::config::{CacheConfig, IssuerConfig, KeySource};
use crate::fhir::FhirVersion;
use crate::smart::TokenContext;

/// Where a verified token's claims came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenSource {
    /// A JWT whose signature was checked here against the issuer's keys.
    LocalJwt,
    /// An opaque token the issuer vouched for (RFC 7662 token introspection).
    RemoteIntrospection,
}

/// A token that passed verification: its decision context and what introspection answers
/// need besides. It is what the cache keeps per token, so it keeps nothing twice: the scope,
/// launch context, issuer, audiences and expiry are read once into their fields and dropped
/// from `claims`.
#[derive(Clone, Debug)]
pub struct VerifiedToken {
    /// What the engine decides on: granted scopes and launch context.
    pub context: TokenContext,
    /// The claims introspection answers carry beyond the fields here; the others are
    /// dropped once read.
    pub claims: IntrospectionClaims,
    /// `exp`, seconds since the Unix epoch.
    pub expires_at: Option<i64>,
    /// How the token was verified.
    pub source: TokenSource,
    /// The configured issuer that signed it or vouched for it.
    pub issuer: String,
    /// Its `aud` values (RFC 7519 §4.1.3); empty when it has none.
    pub audiences: Vec<String>,
    /// For a JWT, the keys it was verified with: once one of them is withdrawn, the cache
    /// judges it again. `None` for an introspected token, which its issuer vouched for.
    pub keys: Option<jwks::KeysSeen>,
}

impl VerifiedToken {
    /// Whether the keys it was verified with are all still in its issuer's set; always for
    /// an introspected token.
    pub fn keys_still_held(&self) -> bool {
        self.keys.as_ref().is_none_or(jwks::KeysSeen::still_held)
    }

    /// Whether `aud` names one of `audiences`. A trailing `/` is not a difference: both spell
    /// the same FHIR base URL (SMART App Launch 2.2 §"Obtaining authorization", `aud`).
    pub fn is_for(&self, audiences: &[String]) -> bool {
        self.audiences
            .iter()
            .any(|audience| names_one_of(audience, audiences))
    }
}

/// Whether the `aud` value `audience` is one of `ours`, a trailing `/` aside.
fn names_one_of(audience: &str, ours: &[String]) -> bool {
    fn bare(url: &str) -> &str {
        url.strip_suffix('/').unwrap_or(url)
    }
    ours.iter().any(|ours| bare(ours) == bare(audience))
}

/// Refuses a sender-constrained token (a `cnf` claim: DPoP, RFC 9449 §6; mutual-TLS bound,
/// RFC 8705 §3): its holder must prove possession of a key, a proof this service never sees,
/// so accepting it as a bearer token would turn a stolen bound token into a working one.
fn refuse_sender_constrained(claims: &Map<String, Value>) -> Result<(), TokenError> {
    match claims.get("cnf") {
        None | Some(Value::Null) => Ok(()),
        Some(_) => Err(TokenError::Malformed(
            "a sender-constrained token (cnf) needs a proof of possession this service cannot check"
                .to_owned(),
        )),
    }
}

/// The `aud` claim as a list: a string, or an array of strings (RFC 7519 §4.1.3).
fn audiences_of(claims: &Map<String, Value>) -> Result<Vec<String>, TokenError> {
    match claims.get("aud") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(audience)) => Ok(vec![audience.clone()]),
        Some(Value::Array(audiences)) => audiences
            .iter()
            .map(|audience| match audience {
                Value::String(audience) => Ok(audience.clone()),
                _ => Err(TokenError::Malformed(
                    "claim aud is not a string array".to_owned(),
                )),
            })
            .collect(),
        Some(_) => Err(TokenError::Malformed(
            "claim aud has the wrong type".to_owned(),
        )),
    }
}

/// Why a token is refused. Each is a deny, never an error of the service.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No token, or an `Authorization` value with the scheme only.
    #[error("no access token")]
    Missing,
    /// Not a JWS, undecodable segments, or a missing or mistyped claim.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// The signature does not verify, or the algorithm or key may not be used (RFC 8725 §3.1).
    #[error("bad signature: {0}")]
    BadSignature(String),
    /// `iss` names no configured issuer (RFC 7519 §4.1.1).
    #[error("issuer {0:?} is not trusted")]
    WrongIssuer(String),
    /// `aud` names none of the asking FHIR server's audiences (RFC 7519 §4.1.3, RFC 8707).
    #[error("token audience is not this server")]
    WrongAudience,
    /// `exp` has passed, beyond the leeway (RFC 7519 §4.1.4).
    #[error("token expired")]
    Expired,
    /// `nbf` is still ahead, beyond the leeway (RFC 7519 §4.1.5).
    #[error("token not valid yet")]
    NotYetValid,
    /// Introspection answered `active: false` (RFC 7662 §2.2).
    #[error("token is not active")]
    Inactive,
}

/// A value a token names (`iss`, `kid`, `typ`, `alg`), cut to 128 characters for quoting
/// in a refusal: it is attacker-chosen text bound for answers, headers, logs and the
/// refusal cache.
pub(crate) fn quotable(text: &str) -> std::borrow::Cow<'_, str> {
    const MAX_QUOTED_CHARS: usize = 128;
    match text.char_indices().nth(MAX_QUOTED_CHARS) {
        Some((end, _)) => format!("{}...", &text[..end]).into(),
        None => text.into(),
    }
}

impl TokenError {
    /// [`TokenError::WrongIssuer`] for an `iss` a token names: cut to 128 characters, since
    /// it is attacker-chosen text bound for answers, logs and the refusal cache.
    pub fn wrong_issuer(issuer: &str) -> Self {
        TokenError::WrongIssuer(quotable(issuer).into_owned())
    }

    /// The refusal's code, as the API's `Reason` names it (`TOKEN_EXPIRED` is
    /// `token_expired`): the `reason` of metrics, audit lines and spans.
    pub fn as_str(&self) -> &'static str {
        match self {
            TokenError::Missing => "token_missing",
            TokenError::Malformed(_) => "token_malformed",
            TokenError::BadSignature(_) => "token_bad_signature",
            TokenError::WrongIssuer(_) => "token_wrong_issuer",
            TokenError::WrongAudience => "token_wrong_audience",
            TokenError::Expired => "token_expired",
            TokenError::NotYetValid => "token_not_yet_valid",
            TokenError::Inactive => "token_inactive",
        }
    }
}

/// A token read from its `Authorization` value and hashed once: the hash is both its cache
/// key and, cut short, the fingerprint that correlates its log and audit lines.
#[derive(Clone, Copy)]
pub struct BearerToken<'a> {
    text: &'a str,
    key: cache::TokenKey,
}

impl<'a> BearerToken<'a> {
    /// Reads the token of an `Authorization` header value (or a bare token); see
    /// [`bearer_token`].
    pub fn from_header(raw_token: &'a str) -> Result<Self, TokenError> {
        let text = bearer_token(raw_token)?;
        Ok(BearerToken {
            text,
            key: cache::token_key(text),
        })
    }

    /// The short, non-reversible name of the token for logs.
    pub fn fingerprint(&self) -> TokenFingerprint {
        TokenFingerprint::of(&self.key)
    }
}

impl std::fmt::Debug for BearerToken<'_> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "BearerToken({})", self.fingerprint())
    }
}

/// The first 4 bytes of a token's SHA-256, shown as 8 hex digits: enough to correlate the
/// lines about one token, useless for replaying it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenFingerprint([u8; 4]);

impl TokenFingerprint {
    fn of(key: &cache::TokenKey) -> Self {
        TokenFingerprint([key[0], key[1], key[2], key[3]])
    }
}

impl std::fmt::Display for TokenFingerprint {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for byte in self.0 {
            write!(formatter, "{byte:02x}")?;
        }
        Ok(())
    }
}

/// Why a token could not be judged: the caller must not allow, and may retry.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The token was judged and refused.
    #[error(transparent)]
    Rejected(#[from] TokenError),
    /// The token could not be judged: the issuer's keys never loaded (e.g. its `jwks_uri`
    /// is down), its discovery has not succeeded, or its introspection endpoint failed
    /// (down, slow, HTTP error, garbage). Retrying may help; it is never an allow.
    #[error("issuer {issuer} is unavailable: {detail}")]
    Unavailable {
        /// The configured issuer.
        issuer: String,
        /// What failed, without any token content.
        detail: String,
    },
}

/// Why a cache miss did not accept a token, and so whether the answer may be cached.
#[derive(Clone, Debug)]
pub(crate) enum Rejection {
    /// Judged and refused: cached for the negative TTL.
    Refused(TokenError),
    /// Refused for now: a key reload may bring the key the token needs (a `kid` its issuer
    /// has not published yet, or a token without `kid` that no loaded key verifies). Not
    /// cached, so a key rotation is picked up by the next call's (rate-limited) key reload.
    RefusedForNow(TokenError),
    /// Could not judge: never cached.
    Unavailable(AuthError),
}

impl Rejection {
    /// The error the caller sees.
    pub(crate) fn into_auth_error(self) -> AuthError {
        match self {
            Rejection::Refused(error) | Rejection::RefusedForNow(error) => error.into(),
            Rejection::Unavailable(error) => error,
        }
    }
}

impl From<TokenError> for Rejection {
    fn from(error: TokenError) -> Self {
        Rejection::Refused(error)
    }
}

impl From<AuthError> for Rejection {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::Rejected(error) => Rejection::Refused(error),
            unavailable => Rejection::Unavailable(unavailable),
        }
    }
}

/// The answer for one token, and whether it came from the cache.
#[derive(Clone, Debug)]
pub struct Authenticated {
    /// The verified token, shared with the cache; its `source` tells local from remote.
    pub token: Arc<VerifiedToken>,
    /// True when this call did not verify or introspect the token itself (a cache hit, or
    /// a concurrent call's verification).
    pub cached: bool,
}

/// Startup failure of the key sets (a bad `jwks_file` or inline JWKS) or of an HTTP client.
#[derive(Debug, thiserror::Error)]
#[error("configuration key `{key}`: {message}")]
pub struct KeySetupError {
    /// The configuration key, e.g. `issuers[0].jwks_file`.
    pub key: String,
    /// What is wrong with it.
    pub message: String,
}

/// Longest token accepted, in bytes. Real access tokens are a few kilobytes; the cap keeps
/// hashing and parsing of hostile input bounded.
pub const MAX_TOKEN_BYTES: usize = 32 * 1024;

/// Startup timing of discovery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiscoveryTiming {
    /// Pause after the first failed attempt; doubled after each further failure, up to the
    /// issuer's refresh interval.
    pub first_retry: Duration,
    /// How long startup waits for every discovery to succeed before serving anyway.
    pub startup_budget: Duration,
}

impl Default for DiscoveryTiming {
    /// Attempts at about 0, 0.25, 0.75, 1.75 and 3.75 s within a 5 s startup budget.
    fn default() -> Self {
        DiscoveryTiming {
            first_retry: Duration::from_millis(250),
            startup_budget: Duration::from_secs(5),
        }
    }
}

/// One configured issuer and the ways its tokens can be judged.
#[derive(Debug)]
struct TrustedIssuer {
    config: IssuerConfig,
    /// Local verification, unless the issuer is introspection-only; its key set may wait for
    /// discovery.
    verifier: Option<jwt::IssuerVerifier>,
    introspector: Option<Arc<introspect::Introspector>>,
    discovery: Option<Arc<discovery::Discovery>>,
}

impl TrustedIssuer {
    /// The verifier, when its keys are usable (configured, or their `jwks_uri` discovered).
    fn local_verifier(&self) -> Option<&jwt::IssuerVerifier> {
        self.verifier
            .as_ref()
            .filter(|verifier| !verifier.keys().awaiting_discovery())
    }

    /// The introspector, when its endpoint is known.
    fn ready_introspector(&self) -> Option<&introspect::Introspector> {
        self.introspector
            .as_deref()
            .filter(|introspector| introspector.endpoint().is_some())
    }

    /// Why no path is usable now: discovery pending, or nothing found.
    fn unavailable(&self, nothing_found: &str) -> AuthError {
        let detail = match &self.discovery {
            Some(discovery) if !discovery.is_ready() => discovery.pending_detail(),
            _ => nothing_found.to_owned(),
        };
        AuthError::Unavailable {
            issuer: self.config.issuer.clone(),
            detail,
        }
    }
}

/// Verifies and introspects tokens of the configured issuers, with a cache in front.
///
/// Dropping it stops the background key reloads and discovery refreshes.
pub struct Authenticator {
    issuers: Vec<TrustedIssuer>,
    /// The index of the issuer that introspects opaque tokens.
    opaque_issuer: Option<usize>,
    cache: cache::TokenCache,
    /// Reads claims for the FHIR version, with one parsed copy of each scope claim however
    /// many cached tokens carry it.
    reader: ContextReader,
    verifications: AtomicU64,
    background_tasks: Vec<tokio::task::AbortHandle>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Authenticator")
            .field("issuers", &self.issuers)
            .field("fhir_version", &self.reader.version())
            .finish_non_exhaustive()
    }
}

impl Drop for Authenticator {
    fn drop(&mut self) {
        for task in &self.background_tasks {
            task.abort();
        }
    }
}

impl Authenticator {
    /// Loads every issuer's keys, starts their background reloads and discoveries (needs a
    /// tokio runtime), and waits up to [`DiscoveryTiming::startup_budget`] for the
    /// discoveries. A bad inline or file JWK Set is a startup error; an unreachable
    /// `jwks_uri` or discovery document is only logged, and that issuer's tokens are
    /// `Unavailable` until its keys or endpoints arrive.
    pub async fn new(
        issuers: &[IssuerConfig],
        cache: &CacheConfig,
        fhir_version: FhirVersion,
    ) -> Result<Arc<Self>, KeySetupError> {
        Self::with_timing(issuers, cache, fhir_version, DiscoveryTiming::default()).await
    }

    /// [`Authenticator::new`] with the discovery timing given (tests shorten it).
    pub async fn with_timing(
        issuers: &[IssuerConfig],
        cache: &CacheConfig,
        fhir_version: FhirVersion,
        timing: DiscoveryTiming,
    ) -> Result<Arc<Self>, KeySetupError> {
        let reader = ContextReader::new(fhir_version);
        let token_cache = cache::TokenCache::new(cache);
        let mut trusted = Vec::with_capacity(issuers.len());
        let mut background_tasks = Vec::new();
        for (index, issuer) in issuers.iter().enumerate() {
            let setup_error = |name: &str, message: String| KeySetupError {
                key: format!("issuers[{index}].{name}"),
                message,
            };
            let needs = discovery::Needs::of(issuer);
            let verifier = if issuer.introspection_only
                || (issuer.keys.is_none() && needs.jwks_uri == discovery::Need::No)
            {
                None
            } else {
                let keys = Arc::new(load_key_set(index, issuer).await?);
                if keys.is_reloadable() {
                    let task = tokio::spawn(jwks::refresh_periodically(
                        Arc::downgrade(&keys),
                        issuer.refresh_interval,
                        issuer.min_refresh_interval,
                    ));
                    background_tasks.push(task.abort_handle());
                }
                Some(jwt::IssuerVerifier::new(issuer.clone(), keys))
            };
            let introspector = match &issuer.introspection {
                Some(_) => Some(Arc::new(
                    introspect::Introspector::new(issuer, reader.clone()).map_err(|error| {
                        setup_error("introspection_endpoint", error.to_string())
                    })?,
                )),
                None => None,
            };
            let discovery = if needs.is_empty() {
                None
            } else {
                let keys = verifier
                    .as_ref()
                    .filter(|_| issuer.keys.is_none())
                    .map(|verifier| Arc::clone(verifier.keys()));
                let discovery = Arc::new(
                    discovery::Discovery::new(issuer, keys, introspector.clone())
                        .map_err(|error| setup_error("discovery", error.to_string()))?,
                );
                let task = tokio::spawn(discovery::run(
                    Arc::downgrade(&discovery),
                    timing.first_retry,
                ));
                background_tasks.push(task.abort_handle());
                Some(discovery)
            };
            trusted.push(TrustedIssuer {
                config: issuer.clone(),
                verifier,
                introspector,
                discovery,
            });
        }
        wait_for_discovery(&trusted, timing.startup_budget).await;
        Ok(Arc::new(Authenticator {
            opaque_issuer: trusted
                .iter()
                .position(|issuer| issuer.config.opaque_tokens && issuer.introspector.is_some()),
            issuers: trusted,
            cache: token_cache,
            reader,
            verifications: AtomicU64::new(0),
            background_tasks,
        }))
    }

    /// Judges one token: `raw_token` is the `Authorization` header value (`Bearer ` is
    /// optional, RFC 6750 §2.1) or the bare token. A cached verdict is reused until the
    /// token's `exp` or the cache TTL of its path (a refusal for the negative TTL); an
    /// `Unavailable` answer is never cached.
    pub async fn authenticate(&self, raw_token: &str) -> Result<Authenticated, AuthError> {
        let bearer = BearerToken::from_header(raw_token)?;
        self.authenticate_bearer(&bearer).await
    }

    /// [`Authenticator::authenticate`] for a token already read from its header.
    pub async fn authenticate_bearer(
        &self,
        bearer: &BearerToken<'_>,
    ) -> Result<Authenticated, AuthError> {
        let result = self
            .cache
            .get_or_verify(&bearer.key, || self.verify(bearer.text))
            .await;
        match result {
            Ok((token, cached)) => Ok(Authenticated { token, cached }),
            Err(error) => {
                tracing::debug!(token = %bearer.fingerprint(), %error, "token refused");
                Err(error)
            }
        }
    }

    /// The issuers whose tokens cannot be judged yet: keys not loaded, or discovery not yet
    /// successful. Empty once every issuer has what it needs; an issuer that later becomes
    /// unreachable keeps its last good keys and endpoints, so it stays out of this list.
    pub fn pending_issuers(&self) -> Vec<&str> {
        self.issuers
            .iter()
            .filter(|issuer| {
                let keys_pending = issuer
                    .verifier
                    .as_ref()
                    .is_some_and(|verifier| verifier.keys().snapshot().is_none());
                let discovery_pending = issuer
                    .discovery
                    .as_ref()
                    .is_some_and(|discovery| !discovery.is_ready());
                keys_pending || discovery_pending
            })
            .map(|issuer| issuer.config.issuer.as_str())
            .collect()
    }

    /// The FHIR version token contexts are read for.
    pub fn fhir_version(&self) -> FhirVersion {
        self.reader.version()
    }

    /// Full verifications and introspections started (cache misses), for metrics and tests.
    pub fn verifications(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }

    /// Requests sent to introspection endpoints, for tests.
    #[cfg(test)]
    pub(crate) fn introspection_calls(&self) -> u64 {
        self.issuers
            .iter()
            .filter_map(|issuer| issuer.introspector.as_ref())
            .map(|introspector| introspector.calls())
            .sum()
    }

    /// Approximate number of cached tokens, for tests (metrics read `cache_stats`).
    #[cfg(test)]
    pub(crate) fn entry_count(&self) -> u64 {
        self.cache.entry_count()
    }

    /// Hits, misses, evictions and sizes of the token cache, for metrics.
    pub fn cache_stats(&self) -> CacheStats {
        self.cache.stats()
    }

    /// The token cache, for tests.
    #[cfg(test)]
    pub(crate) fn cache(&self) -> &cache::TokenCache {
        &self.cache
    }

    /// The key set of `issuer`, if it is configured and verifies locally, for tests.
    #[cfg(test)]
    pub(crate) fn key_set(&self, issuer: &str) -> Option<&Arc<jwks::KeySet>> {
        self.issuer(issuer)?
            .verifier
            .as_ref()
            .map(jwt::IssuerVerifier::keys)
    }

    /// Whether `issuer`'s discovery has succeeded; `None` when it is not discovered. For
    /// tests.
    #[cfg(test)]
    pub(crate) fn is_discovered(&self, issuer: &str) -> Option<bool> {
        let discovery = self.issuer(issuer)?.discovery.as_ref()?;
        Some(discovery.is_ready())
    }

    fn issuer(&self, issuer: &str) -> Option<&TrustedIssuer> {
        self.issuers
            .iter()
            .find(|trusted| trusted.config.issuer == issuer)
    }

    /// A cache miss: judges the token; a refusal becomes a cached verdict, "could not
    /// judge" and "refused for now" stay errors (not cached).
    async fn verify(&self, token: &str) -> Result<CachedVerdict, AuthError> {
        self.verifications.fetch_add(1, Ordering::Relaxed);
        match self.judge(token).await {
            Ok(verified) => Ok(CachedVerdict::Active(Arc::new(verified))),
            // A token not yet valid becomes valid with time (at its `nbf`, or a moment after
            // an `iat` from an issuer whose clock is a little ahead): its refusal is not kept
            // for the negative TTL past that moment. Its signature (or its issuer's answer)
            // was good, so no forger can flood the verifier with such tokens.
            Err(Rejection::Refused(TokenError::NotYetValid)) => Err(TokenError::NotYetValid.into()),
            Err(Rejection::Refused(error)) => Ok(CachedVerdict::Refused(error)),
            Err(uncached) => Err(uncached.into_auth_error()),
        }
    }

    /// Routes the token (see the module documentation) and judges it.
    async fn judge(&self, token: &str) -> Result<VerifiedToken, Rejection> {
        // What is left of another scheme (`Basic dXNlcjpwYXNz`, `DPoP eyJ...`) once no
        // `Bearer` was found, or two `Authorization` headers a proxy joined with `,` (Envoy
        // does): a credential, a bound token or two tokens, never to be introspected as one
        // bearer token.
        if !is_b64token(token) {
            return Err(TokenError::Malformed(
                "not a bearer token: only the Bearer scheme and one token of RFC 6750 b64token characters are accepted".to_owned(),
            )
            .into());
        }
        let jwt = jwt::split_compact(token)
            .and_then(|parts| jwt::read_claims(parts.payload).map(|claims| (parts, claims)));
        let (parts, claims) = match jwt {
            Ok(jwt) => jwt,
            // A JWS without a usable `iss` is no opaque token: sending it to the opaque
            // tokens' issuer would hand another authorization server's token to it.
            Err(error) if jwt::is_jws(token) => return Err(error.into()),
            Err(not_a_jwt) => {
                let Some(opaque) = self.opaque_issuer.map(|index| &self.issuers[index]) else {
                    return Err(not_a_jwt.into());
                };
                return match opaque.ready_introspector() {
                    Some(introspector) => Ok(introspector.introspect(token).await?),
                    None => Err(opaque
                        .unavailable("no introspection endpoint is known")
                        .into()),
                };
            }
        };
        let issuer = claims.issuer();
        let trusted = self
            .issuer(issuer)
            .ok_or_else(|| TokenError::wrong_issuer(issuer))?;
        if !trusted.config.introspection_only
            && let Some(verifier) = trusted.local_verifier()
        {
            let header = jwt::parse_header(parts.header)?;
            return verifier.judge(&parts, &header, claims, &self.reader).await;
        }
        match trusted.ready_introspector() {
            Some(introspector) => Ok(introspector.introspect(token).await?),
            None => Err(trusted
                .unavailable("neither keys nor an introspection endpoint are known")
                .into()),
        }
    }
}

/// Waits until every discovery succeeded, or `budget` passed (then the service starts
/// anyway and the background tasks keep trying).
async fn wait_for_discovery(issuers: &[TrustedIssuer], budget: Duration) {
    let discoveries: Vec<&Arc<discovery::Discovery>> = issuers
        .iter()
        .filter_map(|issuer| issuer.discovery.as_ref())
        .collect();
    if discoveries.is_empty() {
        return;
    }
    let all_ready = async {
        for discovery in &discoveries {
            discovery.wait_ready().await;
        }
    };
    if tokio::time::timeout(budget, all_ready).await.is_err() {
        for issuer in issuers {
            if let Some(discovery) = issuer.discovery.as_ref().filter(|d| !d.is_ready()) {
                tracing::warn!(issuer = %issuer.config.issuer, detail = %discovery.pending_detail(), "starting without this issuer's discovery; its tokens are unavailable until it succeeds");
            }
        }
    }
}

/// The token of an `Authorization` header value: without the case-insensitive `Bearer`
/// scheme (RFC 6750 §2.1, RFC 9110 §11.1) and surrounding whitespace.
pub fn bearer_token(raw_token: &str) -> Result<&str, TokenError> {
    let trimmed = raw_token.trim();
    // Only the first six bytes are looked at: this runs on every request, on ~1 KB tokens.
    let token = match (trimmed.get(..6), trimmed.get(6..)) {
        (Some(scheme), Some(rest))
            if scheme.eq_ignore_ascii_case("bearer")
                && (rest.is_empty() || rest.starts_with(|c: char| c.is_ascii_whitespace())) =>
        {
            rest.trim_start()
        }
        _ => trimmed,
    };
    if token.is_empty() {
        return Err(TokenError::Missing);
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::Malformed(format!(
            "longer than {MAX_TOKEN_BYTES} bytes"
        )));
    }
    Ok(token)
}

/// Whether `text` is one RFC 6750 §2.1 `b64token`: `1*( ALPHA / DIGIT / "-" / "." / "_" /
/// "~" / "+" / "/" ) *"="`, which every JWS, JWE and opaque bearer token is. Every new token
/// is scanned whole, so the scan reads bytes through a table (a byte of a longer UTF-8
/// sequence is never in it) and does not stop at the first miss, which lets the compiler
/// test many bytes at once: a scan of `char`s took ten times the instructions
/// (docs/performance-log.md, "Fewer instructions around a new token's signature").
fn is_b64token(text: &str) -> bool {
    let body = text.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .fold(true, |all, byte| all & B64TOKEN[usize::from(byte)])
}

/// The bytes of a `b64token` before its trailing `=`.
const B64TOKEN: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte: u8 = 0;
    loop {
        table[byte as usize] =
            byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
        if byte == u8::MAX {
            break table;
        }
        byte += 1;
    }
};

/// Seconds since the Unix epoch, with their fraction: the unit of `exp`, `nbf` and `iat`
/// (RFC 7519 §2), which may be fractional. Read to the whole second, the clock runs up to a
/// second behind: long enough to keep a token past its `exp`, or to refuse one that an
/// issuer whose clock is a little ahead has just issued.
pub(crate) fn unix_time() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |elapsed| elapsed.as_secs_f64())
}

/// Whole seconds since the Unix epoch, the unit of a certificate's validity.
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        })
}

/// Creates an issuer's key set and loads it once: inline and file sets must load, a
/// `jwks_uri` may fail (the service starts and retries); a discovered set waits for its
/// discovery.
async fn load_key_set(index: usize, issuer: &IssuerConfig) -> Result<jwks::KeySet, KeySetupError> {
    let setup_error = |name: &str, message: String| KeySetupError {
        key: format!("issuers[{index}].{name}"),
        message,
    };
    let keys =
        jwks::KeySet::new(issuer).map_err(|error| setup_error("jwks_uri", error.to_string()))?;
    let Some(source) = &issuer.keys else {
        return Ok(keys);
    };
    match (source, keys.refresh().await) {
        (_, Ok(_)) => Ok(keys),
        (KeySource::Uri(_), Err(error)) => {
            tracing::warn!(issuer = %issuer.issuer, %error, "issuer keys unavailable at startup; its tokens are refused until they load");
            Ok(keys)
        }
        (KeySource::File(_), Err(error)) => Err(setup_error("jwks_file", error.to_string())),
        (KeySource::Inline(_), Err(error)) => Err(setup_error("jwks", error.to_string())),
    }
}

#[cfg(test)]
mod tests;
