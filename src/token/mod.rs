//! Access tokens: local JWT verification against each configured issuer's keys, and the
//! cache of verified tokens. I/O lives here (key fetching), never in the engine.
//!
//! [`Authenticator::authenticate`] takes the `Authorization` header value (or the bare
//! token), looks the token's SHA-256 up in the [`cache::TokenCache`], and on a miss verifies
//! it with [`jwt`] against the keys of the issuer named by its `iss` ([`jwks`]).

pub mod cache;
pub mod jwks;
pub mod jwt;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Map, Value};

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

/// A token that passed verification: its decision context and its claims.
#[derive(Clone, Debug)]
pub struct VerifiedToken {
    /// What the engine decides on: granted scopes and launch context.
    pub context: TokenContext,
    /// Every claim of the token, for introspection answers.
    pub claims: Map<String, Value>,
    /// `exp`, seconds since the Unix epoch.
    pub expires_at: Option<i64>,
    /// How the token was verified.
    pub source: TokenSource,
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
    /// `aud` names none of this server's FHIR base URLs (RFC 7519 §4.1.3).
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

/// Why a token could not be judged: the caller must not allow, and may retry.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The token was judged and refused.
    #[error(transparent)]
    Rejected(#[from] TokenError),
    /// The issuer's keys never loaded (e.g. its `jwks_uri` is down); retrying may help.
    #[error("keys of issuer {issuer} are unavailable: {detail}")]
    Unavailable {
        /// The configured issuer.
        issuer: String,
        /// Why its keys are missing, without any token content.
        detail: String,
    },
}

/// The answer for one token, and whether it came from the cache.
#[derive(Clone, Debug)]
pub struct Authenticated {
    /// The verified token, shared with the cache.
    pub token: Arc<VerifiedToken>,
    /// True when this call did not verify the token itself (a cache hit, or a concurrent
    /// call's verification).
    pub cached: bool,
}

/// Startup failure of the key sets (a bad `jwks_file` or inline JWKS).
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

/// Verifies tokens of the configured issuers, with a cache in front.
///
/// Dropping it stops the background key reloads.
pub struct Authenticator {
    issuers: Vec<jwt::IssuerVerifier>,
    cache: cache::TokenCache,
    fhir_version: FhirVersion,
    verifications: AtomicU64,
    refresh_tasks: Vec<tokio::task::AbortHandle>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Authenticator")
            .field("issuers", &self.issuers)
            .field("fhir_version", &self.fhir_version)
            .finish_non_exhaustive()
    }
}

impl Drop for Authenticator {
    fn drop(&mut self) {
        for task in &self.refresh_tasks {
            task.abort();
        }
    }
}

impl Authenticator {
    /// Loads every issuer's keys and starts their background reloads (needs a tokio
    /// runtime). A bad inline or file JWK Set is a startup error; an unreachable
    /// `jwks_uri` is only logged, and that issuer's tokens are `Unavailable` until its
    /// keys arrive.
    pub async fn new(
        issuers: &[IssuerConfig],
        cache: &CacheConfig,
        fhir_version: FhirVersion,
    ) -> Result<Arc<Self>, KeySetupError> {
        let mut verifiers = Vec::with_capacity(issuers.len());
        let mut refresh_tasks = Vec::new();
        for (index, issuer) in issuers.iter().enumerate() {
            let keys = Arc::new(load_key_set(index, issuer).await?);
            if keys.is_reloadable() {
                let task = tokio::spawn(jwks::refresh_periodically(
                    Arc::downgrade(&keys),
                    issuer.refresh_interval,
                    issuer.min_refresh_interval,
                ));
                refresh_tasks.push(task.abort_handle());
            }
            verifiers.push(jwt::IssuerVerifier::new(issuer.clone(), keys));
        }
        Ok(Arc::new(Authenticator {
            issuers: verifiers,
            cache: cache::TokenCache::new(cache),
            fhir_version,
            verifications: AtomicU64::new(0),
            refresh_tasks,
        }))
    }

    /// Judges one token: `raw_token` is the `Authorization` header value (`Bearer ` is
    /// optional, RFC 6750 §2.1) or the bare token. A cached verification is reused until the
    /// token's `exp` or the cache TTL; refusals are not cached.
    pub async fn authenticate(&self, raw_token: &str) -> Result<Authenticated, AuthError> {
        let token = bearer_token(raw_token)?;
        let key = cache::token_key(token);
        let result = self.cache.get_or_verify(&key, self.verify(token)).await;
        match result {
            Ok((token, cached)) => Ok(Authenticated { token, cached }),
            Err(error) => {
                tracing::debug!(token = %cache::token_fingerprint(&key), %error, "token refused");
                Err(error)
            }
        }
    }

    /// Full verifications performed (cache misses), for metrics and tests.
    pub fn verifications(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }

    /// Approximate number of cached tokens, for metrics.
    pub fn entry_count(&self) -> u64 {
        self.cache.entry_count()
    }

    /// The verified-token cache.
    pub fn cache(&self) -> &cache::TokenCache {
        &self.cache
    }

    /// The key set of `issuer`, if it is configured (for readiness checks).
    pub fn key_set(&self, issuer: &str) -> Option<&Arc<jwks::KeySet>> {
        self.issuer(issuer).map(jwt::IssuerVerifier::keys)
    }

    fn issuer(&self, issuer: &str) -> Option<&jwt::IssuerVerifier> {
        self.issuers
            .iter()
            .find(|verifier| verifier.config().issuer == issuer)
    }

    async fn verify(&self, token: &str) -> Result<Arc<VerifiedToken>, AuthError> {
        self.verifications.fetch_add(1, Ordering::Relaxed);
        let parts = jwt::split_compact(token)?;
        let header = jwt::parse_header(parts.header)?;
        let issuer = jwt::peek_issuer(parts.payload)?;
        let verifier = self
            .issuer(&issuer)
            .ok_or(TokenError::WrongIssuer(issuer))?;
        let verified = verifier.verify(token, &header, self.fhir_version).await?;
        Ok(Arc::new(verified))
    }
}

/// The token of an `Authorization` header value: without the case-insensitive `Bearer`
/// scheme (RFC 6750 §2.1, RFC 9110 §11.1) and surrounding whitespace.
pub fn bearer_token(raw_token: &str) -> Result<&str, TokenError> {
    let trimmed = raw_token.trim();
    let token = match trimmed.split_once(char::is_whitespace) {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim_start(),
        _ if trimmed.eq_ignore_ascii_case("bearer") => "",
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

/// Creates an issuer's key set and loads it once: inline and file sets must load, a
/// `jwks_uri` may fail (the service starts and retries).
async fn load_key_set(index: usize, issuer: &IssuerConfig) -> Result<jwks::KeySet, KeySetupError> {
    let setup_error = |name: &str, message: String| KeySetupError {
        key: format!("issuers[{index}].{name}"),
        message,
    };
    let keys =
        jwks::KeySet::new(issuer).map_err(|error| setup_error("jwks_uri", error.to_string()))?;
    let loaded = keys.refresh().await;
    match (&issuer.keys, loaded) {
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
