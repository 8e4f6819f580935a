//! One issuer's public keys (a JWK Set, RFC 7517 §5): loaded from inline JSON, a file, a
//! configured `jwks_uri` or one found by discovery ([`super::discovery`]), refreshed in the
//! background and on demand when a token names an unknown `kid` (the usual sign of a key
//! rotation, RFC 7517 §4.5), or has no `kid` and no loaded key verifies it.
//!
//! Readers take a cheap `Arc` snapshot of the keys under a `std::sync::RwLock` that is never
//! held across an `.await`; reloads are serialised by a `tokio::sync::Mutex` so that many
//! requests naming one new `kid` cause one fetch, and rate-limited by `min_refresh_interval`
//! so that tokens with made-up `kid`s or forged signatures cannot turn the service into a
//! fetch amplifier.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, KeyOperations, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use serde::Deserialize;
use serde_json::Value;
use tokio::time::Instant;
use tracing::{Instrument as _, Span};

use super::metrics::{self, Upstream};
use super::signature::SignatureKey;
use crate::config::{IssuerConfig, KeySource};

/// Largest JWK Set accepted from a `jwks_uri`: real sets are a few kilobytes, and an
/// unbounded body would let a broken or hostile endpoint exhaust memory.
pub const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// Why a key set could not be loaded. The last good keys stay in use.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    /// The `jwks_file` could not be read.
    #[error("cannot read {path}: {message}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        message: String,
    },
    /// The `jwks_uri` could not be reached or the transfer failed (or timed out).
    #[error("cannot fetch the key set: {0}")]
    Fetch(String),
    /// The `jwks_uri` answered with a non-2xx status.
    #[error("the key set endpoint answered HTTP {0}")]
    Status(u16),
    /// The body exceeded [`MAX_JWKS_BYTES`].
    #[error("the key set is larger than {MAX_JWKS_BYTES} bytes")]
    TooLarge,
    /// The text is not a JSON object with a `keys` array.
    #[error("the key set is not a JWK Set (RFC 7517 §5): {0}")]
    NotAJwkSet(String),
    /// Every key was skipped (see [`parse_jwks`]).
    #[error("the key set has no usable signature verification key")]
    NoUsableKey,
    /// The keys come from a discovered `jwks_uri`, and discovery has not found it yet.
    #[error("the jwks_uri is not discovered yet")]
    NotDiscovered,
}

/// A public key ready for verification, with what the JWK says about its use.
pub struct VerificationKey {
    /// The JWK `kid` (RFC 7517 §4.5), matched against the JWS header `kid`.
    pub key_id: Option<String>,
    /// The JWK `alg` (RFC 7517 §4.4): when present, the only algorithm the key may verify.
    pub key_algorithm: Option<KeyAlgorithm>,
    /// The curve of an EC or OKP key, so an ES384 token is never checked with a P-256 key.
    pub curve: Option<EllipticCurve>,
    /// The key as the JWK gives it.
    pub decoding_key: DecodingKey,
    /// The same key parsed for each algorithm it fits, which is what verifies signatures.
    pub signature_key: SignatureKey,
}

impl VerificationKey {
    /// Whether `other` is this key: the same `kid` and the same key material.
    pub fn is_same_key(&self, other: &VerificationKey) -> bool {
        use jsonwebtoken::DecodingKeyKind;
        let same_material = match (self.decoding_key.kind(), other.decoding_key.kind()) {
            (DecodingKeyKind::SecretOrDer(mine), DecodingKeyKind::SecretOrDer(theirs)) => {
                mine == theirs
            }
            (
                DecodingKeyKind::RsaModulusExponent { n, e },
                DecodingKeyKind::RsaModulusExponent {
                    n: other_n,
                    e: other_e,
                },
            ) => n == other_n && e == other_e,
            _ => false,
        };
        self.key_id == other.key_id && same_material
    }

    /// Whether this key may verify a signature made with `algorithm`: same family, the
    /// JWK `alg` (if any) equal to it, and the matching curve (RFC 8725 §3.1: the key, not
    /// the token, decides the algorithm).
    pub fn fits(&self, algorithm: Algorithm) -> bool {
        if self.decoding_key.family() != algorithm.family() {
            return false;
        }
        if self
            .key_algorithm
            .is_some_and(|declared| declared != KeyAlgorithm::from(algorithm))
        {
            return false;
        }
        match (&self.curve, algorithm) {
            (Some(curve), Algorithm::ES256) => *curve == EllipticCurve::P256,
            (Some(curve), Algorithm::ES384) => *curve == EllipticCurve::P384,
            (Some(curve), Algorithm::EdDSA) => *curve == EllipticCurve::Ed25519,
            _ => true,
        }
    }
}

impl std::fmt::Debug for VerificationKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("VerificationKey")
            .field("key_id", &self.key_id)
            .field("key_algorithm", &self.key_algorithm)
            .field("curve", &self.curve)
            .finish_non_exhaustive()
    }
}

/// Why no key could be chosen for a token.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeySelectionError {
    /// No key has the header's `kid`; a reload may bring it.
    #[error("unknown key id {0:?}")]
    UnknownKeyId(String),
    /// The `kid` names a key of another type, curve or declared `alg`.
    #[error("key {key_id:?} is not a {algorithm:?} key")]
    KeyDoesNotFit {
        /// The header's `kid`.
        key_id: String,
        /// The header's `alg`.
        algorithm: Algorithm,
    },
    /// No `kid`, and no key fits the algorithm.
    #[error("the token has no kid and no {0:?} key is known")]
    NoKeyForAlgorithm(Algorithm),
    /// No `kid`, and several keys fit: guessing would mean trying keys until one works.
    #[error("the token has no kid and {count} {algorithm:?} keys are known")]
    AmbiguousKey {
        /// How many keys fit.
        count: usize,
        /// The header's `alg`.
        algorithm: Algorithm,
    },
}

/// An immutable snapshot of an issuer's usable keys.
#[derive(Debug, Default)]
pub struct KeyMap {
    keys: Vec<VerificationKey>,
}

impl KeyMap {
    /// The usable keys, in JWK Set order.
    pub fn keys(&self) -> &[VerificationKey] {
        &self.keys
    }

    /// The key for a token's header: by `kid` when the header has one (RFC 7515 §4.1.4),
    /// otherwise the only key that fits `algorithm`.
    pub fn select(
        &self,
        key_id: Option<&str>,
        algorithm: Algorithm,
    ) -> Result<&VerificationKey, KeySelectionError> {
        match key_id {
            Some(key_id) => self.select_by_id(key_id, algorithm),
            None => self.select_by_algorithm(algorithm),
        }
    }

    /// The keys named `key_id` that fit `algorithm`, in the set's order: the first is the
    /// one [`KeyMap::select`] picks. An issuer should name each key once (RFC 7517 §4.5);
    /// one that names two alike (a rotation that reused its `kid`) signs with either.
    pub fn named<'k>(
        &'k self,
        key_id: &'k str,
        algorithm: Algorithm,
    ) -> impl Iterator<Item = &'k VerificationKey> {
        self.keys
            .iter()
            .filter(move |key| key.key_id.as_deref() == Some(key_id) && key.fits(algorithm))
    }

    fn select_by_id(
        &self,
        key_id: &str,
        algorithm: Algorithm,
    ) -> Result<&VerificationKey, KeySelectionError> {
        let mut named = self
            .keys
            .iter()
            .filter(|key| key.key_id.as_deref() == Some(key_id))
            .peekable();
        if named.peek().is_none() {
            return Err(KeySelectionError::UnknownKeyId(
                super::quotable(key_id).into_owned(),
            ));
        }
        named
            .find(|key| key.fits(algorithm))
            .ok_or_else(|| KeySelectionError::KeyDoesNotFit {
                key_id: super::quotable(key_id).into_owned(),
                algorithm,
            })
    }

    fn select_by_algorithm(
        &self,
        algorithm: Algorithm,
    ) -> Result<&VerificationKey, KeySelectionError> {
        let mut fitting = self.keys.iter().filter(|key| key.fits(algorithm));
        let first = fitting
            .next()
            .ok_or(KeySelectionError::NoKeyForAlgorithm(algorithm))?;
        let others = fitting.count();
        if others > 0 {
            return Err(KeySelectionError::AmbiguousKey {
                count: others + 1,
                algorithm,
            });
        }
        Ok(first)
    }
}

/// Parses a JWK Set (RFC 7517 §5), each key for those of `algorithms` (the issuer's
/// allow-list) it fits. Keys that cannot verify signatures (encryption keys, symmetric `oct`
/// keys, unsupported types, key material no algorithm accepts) are skipped with a warning,
/// so one odd key in an issuer's set does not lock every token out; a set with no usable
/// key is an error. A member named twice (`"use": "enc", "use": "sig"`) is refused with the
/// set: which one the issuer meant is not this service's to guess.
pub fn parse_jwks(text: &[u8], algorithms: &[Algorithm]) -> Result<KeyMap, JwksError> {
    #[derive(Deserialize)]
    struct RawJwkSet {
        keys: Vec<Value>,
    }
    let set: RawJwkSet = crate::fhir::parse_strict(text)
        .map_err(|error| error.to_string())
        .and_then(|value| serde_json::from_value(value).map_err(|error| error.to_string()))
        .map_err(JwksError::NotAJwkSet)?;
    let keys: Vec<VerificationKey> = set
        .keys
        .into_iter()
        .enumerate()
        .filter_map(|(index, raw)| match verification_key(raw, algorithms) {
            Ok(key) => Some(key),
            Err(reason) => {
                tracing::warn!(
                    index,
                    reason,
                    "skipping a JWK that cannot verify signatures"
                );
                None
            }
        })
        .collect();
    if keys.is_empty() {
        return Err(JwksError::NoUsableKey);
    }
    Ok(KeyMap { keys })
}

/// One JWK as a verification key, or why it cannot be one.
fn verification_key(raw: Value, algorithms: &[Algorithm]) -> Result<VerificationKey, String> {
    let jwk: Jwk = serde_json::from_value(raw).map_err(|error| format!("not a JWK: {error}"))?;
    if matches!(jwk.common.public_key_use, Some(ref key_use) if *key_use != PublicKeyUse::Signature)
    {
        return Err("its use is not sig (RFC 7517 §4.2)".to_owned());
    }
    if let Some(operations) = &jwk.common.key_operations
        && !operations.contains(&KeyOperations::Verify)
    {
        return Err("its key_ops lack verify (RFC 7517 §4.3)".to_owned());
    }
    if let Some(declared) = jwk.common.key_algorithm
        && Algorithm::try_from(declared).is_err()
    {
        return Err(format!(
            "its alg {declared} is not a supported signature algorithm"
        ));
    }
    let curve = match &jwk.algorithm {
        AlgorithmParameters::OctetKey(_) => {
            return Err("it is a symmetric key; public key sets must not carry secrets".to_owned());
        }
        AlgorithmParameters::EllipticCurve(parameters) => Some(parameters.curve.clone()),
        AlgorithmParameters::OctetKeyPair(parameters) => Some(parameters.curve.clone()),
        _ => None,
    };
    let decoding_key =
        DecodingKey::from_jwk(&jwk).map_err(|error| format!("unusable key material: {error}"))?;
    if decoding_key.family() == AlgorithmFamily::Hmac {
        return Err("it is a symmetric key".to_owned());
    }
    let mut key = VerificationKey {
        key_id: jwk.common.key_id,
        key_algorithm: jwk.common.key_algorithm,
        curve,
        decoding_key,
        signature_key: SignatureKey::default(),
    };
    let fitting: Vec<Algorithm> = algorithms
        .iter()
        .copied()
        .filter(|algorithm| key.fits(*algorithm))
        .collect();
    // A key no allowed algorithm fits stays, so that a token naming it is refused as
    // "not a key of this algorithm", not sent to reload the set for an unknown `kid`.
    if !fitting.is_empty() {
        key.signature_key = SignatureKey::parse(&key.decoding_key, fitting).ok_or_else(|| {
            "unusable key material: no algorithm it fits accepts it (a point off its curve, \
             or a malformed RSA key)"
                .to_owned()
        })?;
    }
    Ok(key)
}

/// The keys of an issuer could not be obtained; its tokens cannot be judged.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KeysUnavailable(pub String);

/// Bookkeeping of reloads, guarded by the refresh mutex.
#[derive(Debug, Default)]
struct RefreshState {
    last_attempt: Option<Instant>,
    last_error: Option<JwksError>,
}

/// Where a key set loads from.
#[derive(Debug)]
enum KeyOrigin {
    /// A configured source.
    Configured(KeySource),
    /// The `jwks_uri` of the issuer's discovery document, once known.
    Discovered(RwLock<Option<String>>),
}

/// One issuer's key set: the current keys, where they come from and how they are reloaded.
pub struct KeySet {
    issuer: String,
    /// The issuer's allowed algorithms, which each key is parsed for.
    algorithms: Vec<Algorithm>,
    source: KeyOrigin,
    http: Option<reqwest::Client>,
    min_refresh_interval: Duration,
    current: RwLock<Option<Arc<KeyMap>>>,
    refresh: tokio::sync::Mutex<RefreshState>,
    fetches: std::sync::atomic::AtomicU64,
    /// How many reloads dropped a key the set held ([`KeysSeen`]).
    withdrawals: Arc<AtomicU64>,
}

/// The keys a token was verified with, as a count of the withdrawals its issuer's set had
/// seen before they were read. The cache serves a verified token only while no key has been
/// withdrawn since ([`KeysSeen::still_held`]): a rotation retiring a key, or a compromised
/// key withdrawn, must take the tokens it verified with it (RFC 7517 §4.5 leaves the set's
/// contents to the issuer), including a token whose verification was under way when the
/// key went. Counted per issuer, so one issuer's rotation leaves the others' tokens cached.
#[derive(Clone, Debug)]
pub struct KeysSeen {
    withdrawals: Arc<AtomicU64>,
    seen: u64,
}

impl KeysSeen {
    /// Whether no key of the set has been withdrawn since the token's keys were read.
    pub fn still_held(&self) -> bool {
        self.withdrawals.load(Ordering::SeqCst) == self.seen
    }
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("KeySet")
            .field("issuer", &self.issuer)
            .field("source", &self.source)
            .field("loaded", &self.snapshot().is_some())
            .finish_non_exhaustive()
    }
}

impl KeySet {
    /// A key set with nothing loaded yet: from `issuer.keys`, or from a discovered
    /// `jwks_uri` when none is configured. `Uri` and discovered sources get an HTTP client
    /// whose timeout is the issuer's `fetch_timeout`, so a hung endpoint cannot stall
    /// requests for long.
    pub fn new(issuer: &IssuerConfig) -> Result<Self, reqwest::Error> {
        let source = match &issuer.keys {
            Some(keys) => KeyOrigin::Configured(keys.clone()),
            None => KeyOrigin::Discovered(RwLock::new(None)),
        };
        let http = match source {
            KeyOrigin::Configured(KeySource::Uri(_)) | KeyOrigin::Discovered(_) => Some(
                reqwest::Client::builder()
                    .timeout(issuer.fetch_timeout)
                    .connect_timeout(issuer.fetch_timeout)
                    // Never follow redirects: keys and endpoints come only from the configured host,
                    // never from wherever a redirect points (fail closed).
                    .redirect(reqwest::redirect::Policy::none())
                    .build()?,
            ),
            KeyOrigin::Configured(KeySource::File(_) | KeySource::Inline(_)) => None,
        };
        Ok(KeySet {
            issuer: issuer.issuer.clone(),
            algorithms: issuer.algorithms.clone(),
            source,
            http,
            min_refresh_interval: issuer.min_refresh_interval,
            current: RwLock::new(None),
            refresh: tokio::sync::Mutex::new(RefreshState::default()),
            fetches: std::sync::atomic::AtomicU64::new(0),
            withdrawals: Arc::default(),
        })
    }

    /// The issuer these keys belong to.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Whether the source can change after startup (and so is worth reloading).
    pub fn is_reloadable(&self) -> bool {
        !matches!(self.source, KeyOrigin::Configured(KeySource::Inline(_)))
    }

    /// The `jwks_uri` the keys load from, configured or discovered.
    pub fn uri(&self) -> Option<String> {
        match &self.source {
            KeyOrigin::Configured(KeySource::Uri(uri)) => Some(uri.clone()),
            KeyOrigin::Configured(_) => None,
            KeyOrigin::Discovered(uri) => read_lock(uri).clone(),
        }
    }

    /// True for a discovered key set whose `jwks_uri` is not known yet: loading it is
    /// pointless until discovery succeeds.
    pub fn awaiting_discovery(&self) -> bool {
        match &self.source {
            KeyOrigin::Discovered(uri) => read_lock(uri).is_none(),
            KeyOrigin::Configured(_) => false,
        }
    }

    /// Sets the discovered `jwks_uri`; true when it changed (the caller then reloads).
    /// Ignored for configured sources.
    pub fn set_discovered_uri(&self, new_uri: &str) -> bool {
        let KeyOrigin::Discovered(uri) = &self.source else {
            return false;
        };
        let mut guard = match uri.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if guard.as_deref() == Some(new_uri) {
            return false;
        }
        *guard = Some(new_uri.to_owned());
        true
    }

    /// How many loads were attempted (fetches or file reads), for metrics and tests.
    pub fn load_attempts(&self) -> u64 {
        self.fetches.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The current keys, if any were ever loaded.
    pub fn snapshot(&self) -> Option<Arc<KeyMap>> {
        match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Read before the keys a token is verified with: whether they are still held when the
    /// token is next served from the cache ([`KeysSeen`]).
    pub fn seen(&self) -> KeysSeen {
        KeysSeen {
            withdrawals: Arc::clone(&self.withdrawals),
            seen: self.withdrawals.load(Ordering::SeqCst),
        }
    }

    /// Stores `keys` in place of the current ones; a key of those that `keys` lacks is
    /// withdrawn, and the tokens it verified with it ([`KeysSeen`]). The count moves after
    /// the keys are replaced, so a token that read the count before the new keys were
    /// stored is never taken for one verified with them.
    fn store(&self, keys: Arc<KeyMap>) {
        let previous = match self.current.write() {
            Ok(mut guard) => guard.replace(keys.clone()),
            Err(poisoned) => poisoned.into_inner().replace(keys.clone()),
        };
        let withdrawn = previous.is_some_and(|previous| {
            previous
                .keys()
                .iter()
                .any(|held| !keys.keys().iter().any(|kept| kept.is_same_key(held)))
        });
        if withdrawn {
            self.withdrawals.fetch_add(1, Ordering::SeqCst);
            tracing::info!(issuer = %self.issuer, "a key was withdrawn: the tokens it verified are judged again");
        }
    }

    /// Loads the keys now, whatever the rate limit; used at startup and by the periodic
    /// reload. When the set cannot be had (the issuer unreachable, an answer that is no JWK
    /// Set) the last good keys stay in use; a set that has no usable key is the issuer
    /// withdrawing them all, and is taken at its word.
    pub async fn refresh(&self) -> Result<Arc<KeyMap>, JwksError> {
        let mut state = self.refresh.lock().await;
        self.refresh_locked(&mut state).await
    }

    /// The current keys; when none were ever loaded, one rate-limited load attempt first,
    /// so an issuer whose `jwks_uri` was down at startup recovers without waiting for the
    /// periodic reload.
    pub async fn current(&self) -> Result<Arc<KeyMap>, KeysUnavailable> {
        if let Some(keys) = self.snapshot() {
            return Ok(keys);
        }
        self.refresh_if_due(None).await
    }

    /// Called when a token names a `kid` missing from `seen`: reloads unless another caller
    /// already did after `seen` was taken, or the last attempt is more recent than
    /// `min_refresh_interval`. Returns the keys to retry with.
    pub async fn refresh_for_unknown_key(
        &self,
        seen: &Arc<KeyMap>,
    ) -> Result<Arc<KeyMap>, KeysUnavailable> {
        self.refresh_if_due(Some(seen)).await
    }

    async fn refresh_if_due(
        &self,
        seen: Option<&Arc<KeyMap>>,
    ) -> Result<Arc<KeyMap>, KeysUnavailable> {
        let mut state = self.refresh.lock().await;
        let current = self.snapshot();
        if let Some(current) = &current {
            let replaced_while_waiting = seen.is_none_or(|seen| !Arc::ptr_eq(seen, current));
            if replaced_while_waiting {
                return Ok(Arc::clone(current));
            }
        }
        let recently_tried = state
            .last_attempt
            .is_some_and(|last| last.elapsed() < self.min_refresh_interval);
        if recently_tried || !self.is_reloadable() {
            return current.ok_or_else(|| unavailable(&state));
        }
        match self.refresh_locked(&mut state).await {
            Ok(keys) => Ok(keys),
            // The keys may have been withdrawn by the attempt.
            Err(_) => self.snapshot().ok_or_else(|| unavailable(&state)),
        }
    }

    async fn refresh_locked(&self, state: &mut RefreshState) -> Result<Arc<KeyMap>, JwksError> {
        state.last_attempt = Some(Instant::now());
        self.fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let fetched = matches!(
            self.source,
            KeyOrigin::Configured(KeySource::Uri(_)) | KeyOrigin::Discovered(_)
        );
        let span = if fetched {
            metrics::upstream_span(Upstream::JwksFetch, &self.issuer)
        } else {
            Span::none()
        };
        let loaded = self.load().instrument(span.clone()).await;
        metrics::record_jwks_refresh(loaded.is_ok());
        match loaded {
            Ok(keys) => {
                let keys = Arc::new(keys);
                self.store(Arc::clone(&keys));
                state.last_error = None;
                tracing::debug!(issuer = %self.issuer, keys = keys.keys().len(), "issuer keys loaded");
                Ok(keys)
            }
            // A compromised key is withdrawn by publishing a set without it, and with it
            // perhaps the last one this service can use: keeping the last good keys would
            // trust it until a restart (RFC 7517 §5: the set is the issuer's keys). Before
            // any key loaded there is nothing to withdraw, and the issuer stays unready.
            Err(JwksError::NoUsableKey) => {
                metrics::record_upstream_error(&span, "jwks_no_usable_key");
                tracing::warn!(issuer = %self.issuer, "the issuer's key set has no usable key: its tokens are refused until it has one");
                if self.snapshot().is_some() {
                    self.store(Arc::new(KeyMap { keys: Vec::new() }));
                }
                state.last_error = Some(JwksError::NoUsableKey);
                Err(JwksError::NoUsableKey)
            }
            Err(error) => {
                metrics::record_upstream_error(&span, "jwks_unavailable");
                tracing::warn!(issuer = %self.issuer, %error, "loading issuer keys failed; keeping the last good keys");
                state.last_error = Some(error.clone());
                Err(error)
            }
        }
    }

    async fn load(&self) -> Result<KeyMap, JwksError> {
        let source = match &self.source {
            KeyOrigin::Configured(source) => source,
            KeyOrigin::Discovered(uri) => {
                let uri = read_lock(uri).clone().ok_or(JwksError::NotDiscovered)?;
                return match &self.http {
                    Some(http) => parse_jwks(&fetch(http, &uri).await?, &self.algorithms),
                    None => Err(JwksError::Fetch("no HTTP client".to_owned())),
                };
            }
        };
        match source {
            KeySource::Inline(text) => parse_jwks(text.as_bytes(), &self.algorithms),
            KeySource::File(path) => {
                let path = path.clone();
                let read = tokio::task::spawn_blocking(move || {
                    std::fs::read(&path).map_err(|error| JwksError::Read {
                        path: path.display().to_string(),
                        message: error.to_string(),
                    })
                })
                .await
                .map_err(|error| JwksError::Fetch(format!("file read task failed: {error}")))??;
                parse_jwks(&read, &self.algorithms)
            }
            KeySource::Uri(uri) => match &self.http {
                Some(http) => parse_jwks(&fetch(http, uri).await?, &self.algorithms),
                None => Err(JwksError::Fetch("no HTTP client".to_owned())),
            },
        }
    }
}

/// Reads a lock that is never held across an `.await`; a poisoned lock still holds a
/// consistent value (every writer replaces it whole).
fn read_lock<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    match lock.read() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

fn unavailable(state: &RefreshState) -> KeysUnavailable {
    KeysUnavailable(match &state.last_error {
        Some(error) => error.to_string(),
        None => "keys not loaded yet".to_owned(),
    })
}

/// GETs a JWK Set; any non-2xx answer is a failure, and the body is capped at
/// [`MAX_JWKS_BYTES`].
async fn fetch(http: &reqwest::Client, uri: &str) -> Result<Vec<u8>, JwksError> {
    let fetch_error = |error: reqwest::Error| JwksError::Fetch(error.without_url().to_string());
    let mut response = http
        .get(uri)
        .header(
            reqwest::header::ACCEPT,
            "application/jwk-set+json, application/json",
        )
        .send()
        .await
        .map_err(fetch_error)?;
    if !response.status().is_success() {
        return Err(JwksError::Status(response.status().as_u16()));
    }
    if response
        .content_length()
        .is_some_and(|length| length > MAX_JWKS_BYTES as u64)
    {
        return Err(JwksError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(fetch_error)? {
        if body.len() + chunk.len() > MAX_JWKS_BYTES {
            return Err(JwksError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Reloads `keys` every `interval` until the key set is dropped. While nothing was ever
/// loaded it retries every `retry_interval` instead, so a `jwks_uri` that was down at startup
/// is picked up quickly. Holding only a `Weak` lets the `Authenticator` own the keys alone.
pub async fn refresh_periodically(
    keys: Weak<KeySet>,
    interval: Duration,
    retry_interval: Duration,
) {
    loop {
        let loaded = match keys.upgrade() {
            Some(keys) => keys.snapshot().is_some(),
            None => return,
        };
        let pause = if loaded {
            interval
        } else {
            retry_interval.max(Duration::from_secs(1))
        };
        tokio::time::sleep(pause).await;
        let Some(keys) = keys.upgrade() else { return };
        if keys.awaiting_discovery() {
            // Discovery loads the keys as soon as it finds the jwks_uri.
            continue;
        }
        // A failure is logged and keeps the last good keys.
        let _ = keys.refresh().await;
    }
}

#[cfg(test)]
mod tests;
