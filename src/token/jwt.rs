//! Verification of one JWT access token (RFC 7519, a JWS in compact form, RFC 7515 §7.1)
//! against the keys of the issuer named in it, following the JWT best practices of RFC 8725:
//! the algorithm comes from an allow-list and must fit the key (§3.1), `none` and HMAC are
//! never accepted (§3.2), and `iss`, `aud`, `exp` and `nbf` are all checked (§3.8, §3.9).
//!
//! The header and the payload are read once, before the signature is checked, because the
//! header and `iss` choose the issuer and the key; a payload that is no strict JSON object
//! is refused there, and nothing else unverified is used.
//! The signature is checked with keys parsed when the key set loads ([`super::signature`]),
//! and the claims against the issuer's rules after it.

use std::borrow::Cow;
use std::str::FromStr;
use std::sync::Arc;

use jsonwebtoken::{Algorithm, AlgorithmFamily};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::jwks::{KeyMap, KeySelectionError, KeySet, KeysSeen, VerificationKey};
use super::signature::SignatureError;
use super::{AuthError, ContextReader, Rejection, TokenError, TokenSource, VerifiedToken};
use crate::config::IssuerConfig;
use crate::fhir::parse_strict;

/// The three base64url segments of a compact JWS (RFC 7515 §7.1), still encoded.
#[derive(Clone, Copy, Debug)]
pub struct CompactJws<'a> {
    /// The JOSE header (RFC 7515 §4).
    pub header: &'a str,
    /// The claims set (RFC 7519 §4).
    pub payload: &'a str,
    /// The signature; empty for an unsecured JWS, which is always refused.
    pub signature: &'a str,
    /// What the signature signs: the header and payload segments and the dot between them
    /// (RFC 7515 §5.1 step 5).
    pub signing_input: &'a str,
}

/// Splits a token into its three segments; anything else (a JWE has five, RFC 7516 §7.1)
/// is not a token this service can verify. The dots are found with `memchr`, many bytes at
/// a time: every new token is searched end to end.
pub fn split_compact(token: &str) -> Result<CompactJws<'_>, TokenError> {
    let mut dots = memchr::memchr_iter(b'.', token.as_bytes());
    match (dots.next(), dots.next(), dots.next()) {
        (Some(first), Some(second), None) if first > 0 && second > first + 1 => Ok(CompactJws {
            header: &token[..first],
            payload: &token[first + 1..second],
            signature: &token[second + 1..],
            signing_input: &token[..second],
        }),
        _ => Err(TokenError::Malformed(
            "not a compact JWS (three dot-separated parts)".to_owned(),
        )),
    }
}

/// The JOSE header fields this service acts on (RFC 7515 §4.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JwsHeader {
    /// The signing algorithm, already known to be asymmetric.
    pub algorithm: Algorithm,
    /// The key id, to pick the key from the issuer's JWK Set (RFC 7515 §4.1.4).
    pub key_id: Option<String>,
}

#[derive(Deserialize)]
struct RawHeader<'a> {
    #[serde(borrow)]
    alg: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    kid: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    typ: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "present")]
    b64: Option<Value>,
    #[serde(borrow, default)]
    crit: Option<Vec<Cow<'a, str>>>,
}

/// Reads the header. Refuses `none` (RFC 7518 §3.6: an unsecured JWS is no proof at all),
/// HMAC (a public key must never be usable as a shared secret, RFC 8725 §3.2), unknown
/// algorithms, a `typ` that marks another kind of JWT (RFC 8725 §3.11, RFC 9068 §2.1), an
/// unencoded payload (`b64: false`, RFC 7797 §3) and any critical extension but `b64`
/// (RFC 7515 §4.1.11), as jsonwebtoken's own header check does.
pub fn parse_header(encoded: &str) -> Result<JwsHeader, TokenError> {
    let bytes = decode_segment(encoded, "header")?;
    let raw: RawHeader<'_> = serde_json::from_slice(&bytes)
        .map_err(|_| TokenError::Malformed("the header is not a JSON object".to_owned()))?;
    let Some(name) = raw.alg else {
        return Err(TokenError::Malformed("the header has no alg".to_owned()));
    };
    let algorithm = parse_algorithm(&name)?;
    if !matches!(raw.b64, None | Some(Value::Bool(true))) {
        return Err(TokenError::Malformed(
            "only an encoded payload (b64 absent or true) is accepted".to_owned(),
        ));
    }
    if let Some(critical) = &raw.crit
        && !(critical.len() == 1 && critical[0] == "b64" && raw.b64.is_some())
    {
        return Err(TokenError::Malformed(
            "the header names a critical extension this service does not know".to_owned(),
        ));
    }
    if let Some(typ) = raw.typ.as_deref()
        && !is_access_token_type(typ)
    {
        return Err(TokenError::Malformed(format!(
            "header typ {:?} is not an access token type",
            super::quotable(typ)
        )));
    }
    Ok(JwsHeader {
        algorithm,
        key_id: raw.kid.map(Cow::into_owned),
    })
}

/// A member that is present, `null` included (a plain `Option` reads `null` as absent).
fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

fn parse_algorithm(name: &str) -> Result<Algorithm, TokenError> {
    if name.eq_ignore_ascii_case("none") {
        return Err(TokenError::BadSignature(
            "alg none is never accepted (RFC 8725 §3.1)".to_owned(),
        ));
    }
    let algorithm = Algorithm::from_str(name).map_err(|_| {
        TokenError::BadSignature(format!("unknown algorithm {:?}", super::quotable(name)))
    })?;
    if algorithm.family() == AlgorithmFamily::Hmac {
        return Err(TokenError::BadSignature(format!(
            "{name} is an HMAC algorithm; only asymmetric signatures are accepted (RFC 8725 §3.2)"
        )));
    }
    Ok(algorithm)
}

/// `JWT` (RFC 7519 §5.1) and `at+jwt` (RFC 9068 §2.1), with or without `application/`.
fn is_access_token_type(typ: &str) -> bool {
    let typ = strip_prefix_ignore_case(typ, "application/").unwrap_or(typ);
    typ.eq_ignore_ascii_case("jwt") || typ.eq_ignore_ascii_case("at+jwt")
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// Whether `token` is a compact JWS: three parts, the first a base64url JSON object naming an
/// `alg` (RFC 7515 §7.1, §4.1.1). An opaque token is never one by accident. Read leniently
/// (a member named twice counts): a JWS this service refuses to read must still be known
/// as one, and never go to the opaque tokens' issuer.
pub fn is_jws(token: &str) -> bool {
    split_compact(token)
        .and_then(|parts| decode_segment(parts.header, "header"))
        .is_ok_and(|header| {
            matches!(serde_json::from_slice::<Value>(&header), Ok(Value::Object(header)) if header.contains_key("alg"))
        })
}

/// The claims of a JWS, read once and not yet verified: only [`UnverifiedClaims::issuer`]
/// is read before the signature is checked, to choose which issuer's keys and rules apply;
/// [`IssuerVerifier::verify`] checks the signature, then the rest.
#[derive(Clone, Debug)]
pub struct UnverifiedClaims(Map<String, Value>);

impl UnverifiedClaims {
    /// The unverified `iss`.
    pub fn issuer(&self) -> &str {
        self.0
            .get("iss")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }
}

/// Reads a payload: a JSON object naming no member twice (as any JSON this service reads),
/// with a string `iss` (RFC 7519 §4.1.1).
pub fn read_claims(encoded_payload: &str) -> Result<UnverifiedClaims, TokenError> {
    let bytes = decode_segment(encoded_payload, "payload")?;
    let Ok(Value::Object(claims)) = parse_strict(&bytes) else {
        return Err(TokenError::Malformed(
            "the payload is not a JSON object with each member named once".to_owned(),
        ));
    };
    match claims.get("iss") {
        Some(Value::String(_)) => Ok(UnverifiedClaims(claims)),
        None | Some(Value::Null) => Err(TokenError::Malformed(
            "the token has no iss claim".to_owned(),
        )),
        Some(_) => Err(TokenError::Malformed(
            "claim iss is not a string".to_owned(),
        )),
    }
}

fn decode_segment(encoded: &str, what: &str) -> Result<Vec<u8>, TokenError> {
    super::base64url::decode(encoded)
        .ok_or_else(|| TokenError::Malformed(format!("the {what} is not base64url")))
}

/// One trusted issuer: its configuration and its keys.
#[derive(Debug)]
pub struct IssuerVerifier {
    config: IssuerConfig,
    keys: std::sync::Arc<KeySet>,
}

/// Whether a reload of the key set may bring the key a token needs: an unknown `kid`; or,
/// without `kid`, no key of its algorithm yet, or two of them mid-rotation (the old one soon
/// leaves the set).
fn reload_may_help(error: &KeySelectionError) -> bool {
    match error {
        KeySelectionError::UnknownKeyId(_)
        | KeySelectionError::NoKeyForAlgorithm(_)
        | KeySelectionError::AmbiguousKey { .. } => true,
        KeySelectionError::KeyDoesNotFit { .. } => false,
    }
}

/// The key for a token's header, or its refusal: not cached when a reload may bring the key.
fn select_key<'k>(
    keys: &'k KeyMap,
    key_id: Option<&str>,
    algorithm: Algorithm,
) -> Result<&'k VerificationKey, Rejection> {
    keys.select(key_id, algorithm).map_err(|error| {
        let refusal = TokenError::BadSignature(error.to_string());
        if reload_may_help(&error) {
            Rejection::RefusedForNow(refusal)
        } else {
            Rejection::Refused(refusal)
        }
    })
}

fn check_signature(
    key: &VerificationKey,
    algorithm: Algorithm,
    jws: &CompactJws<'_>,
) -> Result<(), SignatureError> {
    key.signature_key
        .verify(algorithm, jws.signing_input.as_bytes(), jws.signature)
}

fn signature_refusal(error: SignatureError, algorithm: Algorithm) -> TokenError {
    match error {
        SignatureError::Mismatch => TokenError::BadSignature("signature does not match".to_owned()),
        SignatureError::NotBase64 => {
            TokenError::Malformed("the signature is not base64url".to_owned())
        }
        SignatureError::KeyCannotVerify => {
            TokenError::BadSignature(format!("the key cannot verify {algorithm:?}"))
        }
    }
}

impl IssuerVerifier {
    /// The verifier of `config`'s tokens with `keys`.
    pub fn new(config: IssuerConfig, keys: std::sync::Arc<KeySet>) -> Self {
        IssuerVerifier { config, keys }
    }

    /// The configured issuer.
    pub fn config(&self) -> &IssuerConfig {
        &self.config
    }

    /// The issuer's key set.
    pub fn keys(&self) -> &std::sync::Arc<KeySet> {
        &self.keys
    }

    /// Checks the algorithm against the allow-list, picks the key (reloading the key set
    /// once when that may bring it, [`IssuerVerifier::judge`]), verifies the signature, then
    /// the claims, and reads the launch context.
    pub async fn verify(
        &self,
        jws: &CompactJws<'_>,
        header: &JwsHeader,
        claims: UnverifiedClaims,
        reader: &ContextReader,
    ) -> Result<VerifiedToken, AuthError> {
        self.judge(jws, header, claims, reader)
            .await
            .map_err(Rejection::into_auth_error)
    }

    /// [`IssuerVerifier::verify`], telling apart a refusal that may be cached from one that
    /// a key reload may soon turn around: the issuer may be rotating keys and publish the
    /// new one in a moment (RFC 7517 §4.5). That is an unknown `kid`; and for a token
    /// without `kid`, no key of its algorithm, two of them, or a signature the one key that
    /// fits does not verify (the issuer now signs with a key not loaded yet). Each reloads
    /// the key set once, within `min_refresh_interval`, and is not cached.
    pub(super) async fn judge(
        &self,
        jws: &CompactJws<'_>,
        header: &JwsHeader,
        claims: UnverifiedClaims,
        reader: &ContextReader,
    ) -> Result<VerifiedToken, Rejection> {
        self.allow(header.algorithm)?;
        // Before the keys: a withdrawal from here on makes the cached token judged again.
        let seen = self.keys.seen();
        let keys = self
            .keys
            .current()
            .await
            .map_err(|error| self.unavailable(error))?;
        let key_id = header.key_id.as_deref();
        let keys = match keys.select(key_id, header.algorithm) {
            Err(error) if reload_may_help(&error) => self.reload(&keys).await?,
            _ => keys,
        };
        let key = select_key(&keys, key_id, header.algorithm)?;
        let refusal = |error| signature_refusal(error, header.algorithm);
        match check_signature(key, header.algorithm, jws) {
            Ok(()) => {}
            // A token without `kid` signed by a key not loaded yet: reload once, not cached.
            Err(SignatureError::Mismatch) if key_id.is_none() => {
                let reloaded = self.reload(&keys).await?;
                let mismatch = || Rejection::RefusedForNow(refusal(SignatureError::Mismatch));
                if Arc::ptr_eq(&reloaded, &keys) {
                    return Err(mismatch());
                }
                let key = select_key(&reloaded, None, header.algorithm)?;
                match check_signature(key, header.algorithm, jws) {
                    Ok(()) => {}
                    Err(SignatureError::Mismatch) => return Err(mismatch()),
                    Err(error) => return Err(refusal(error).into()),
                }
            }
            // Another key under the same `kid` may have signed it.
            Err(SignatureError::Mismatch)
                if key_id.is_some_and(|key_id| {
                    keys.named(key_id, header.algorithm)
                        .skip(1)
                        .any(|other| check_signature(other, header.algorithm, jws).is_ok())
                }) => {}
            Err(error) => return Err(refusal(error).into()),
        }
        Ok(self.accept(claims, reader, seen)?)
    }

    /// The key set again, unless it was reloaded within `min_refresh_interval`.
    async fn reload(&self, seen: &Arc<KeyMap>) -> Result<Arc<KeyMap>, Rejection> {
        self.keys
            .refresh_for_unknown_key(seen)
            .await
            .map_err(|error| self.unavailable(error))
    }

    fn unavailable(&self, error: super::jwks::KeysUnavailable) -> Rejection {
        Rejection::Unavailable(AuthError::Unavailable {
            issuer: self.config.issuer.clone(),
            detail: error.0,
        })
    }

    /// Whether the issuer's allow-list has `algorithm` (RFC 8725 §3.1).
    fn allow(&self, algorithm: Algorithm) -> Result<(), TokenError> {
        if self.config.algorithms.contains(&algorithm) {
            return Ok(());
        }
        Err(TokenError::BadSignature(format!(
            "algorithm {algorithm:?} is not allowed for issuer {}",
            self.config.issuer
        )))
    }

    /// The claim rules, once the signature is known good, and the verified token.
    fn accept(
        &self,
        claims: UnverifiedClaims,
        reader: &ContextReader,
        keys: KeysSeen,
    ) -> Result<VerifiedToken, TokenError> {
        let UnverifiedClaims(claims) = claims;
        let audiences = check_registered_claims(&claims, &self.config, super::unix_time())?;
        super::refuse_sender_constrained(&claims)?;
        verified_token(claims, audiences, &self.config.issuer, reader, keys)
    }
}

/// The claim rules of one issuer (RFC 7519 §4.1; RFC 8725 §3.8, §3.9): `exp`, `iss` and
/// `aud` required; `exp` in the future and `nbf` (when present) in the past, both with the
/// configured leeway; `iat` not in the future; `iss` the issuer; `aud` one of the issuer's
/// audiences when it lists any (without them the asking FHIR server checks it). Returns the
/// `aud` values.
fn check_registered_claims(
    claims: &Map<String, Value>,
    config: &IssuerConfig,
    now: f64,
) -> Result<Vec<String>, TokenError> {
    for required in ["exp", "iss", "aud"] {
        if matches!(claims.get(required), None | Some(Value::Null)) {
            return Err(TokenError::Malformed(format!(
                "missing required claim {required}"
            )));
        }
    }
    check_not_expired(claims, config.leeway, now)?;
    check_not_ahead(claims, "nbf", config.leeway, now)?;
    check_not_ahead(claims, "iat", config.leeway, now)?;
    if claims.get("iss").and_then(Value::as_str) != Some(config.issuer.as_str()) {
        return Err(TokenError::WrongIssuer(config.issuer.clone()));
    }
    let audiences = super::audiences_of(claims)?;
    // A trailing `/` is no difference, as for introspected tokens and the servers' own
    // audiences (`VerifiedToken::is_for`).
    if !config.audiences.is_empty()
        && !audiences
            .iter()
            .any(|audience| super::names_one_of(audience, &config.audiences))
    {
        return Err(TokenError::WrongAudience);
    }
    Ok(audiences)
}

/// Builds the verified token from claims whose signature and rules were checked with
/// `keys`.
fn verified_token(
    claims: Map<String, Value>,
    audiences: Vec<String>,
    issuer: &str,
    reader: &ContextReader,
    keys: KeysSeen,
) -> Result<VerifiedToken, TokenError> {
    let claims = Value::Object(claims);
    let context = reader
        .read(&claims)
        .map_err(|error| TokenError::Malformed(error.to_string()))?;
    let Value::Object(claims) = claims else {
        return Err(TokenError::Malformed(
            "token claims are not a JSON object".to_owned(),
        ));
    };
    let expires_at = claims.get("exp").and_then(numeric_date);
    Ok(VerifiedToken {
        context,
        claims: super::IntrospectionClaims::read(&claims),
        expires_at,
        source: TokenSource::LocalJwt,
        issuer: issuer.to_owned(),
        audiences,
        keys: Some(keys),
    })
}

/// Refuses a token at or after its `exp` (RFC 7519 §4.1.4: "on or after"), beyond the
/// leeway; a fractional `exp` is compared as it is, the boundary introspection answers are
/// held to as well (`introspect::judge_response`).
fn check_not_expired(
    claims: &Map<String, Value>,
    leeway: std::time::Duration,
    now: f64,
) -> Result<(), TokenError> {
    let Some(expires_at) = claims.get("exp").and_then(Value::as_f64) else {
        return Err(TokenError::Malformed(
            "claim exp has the wrong type".to_owned(),
        ));
    };
    if expires_at <= now - leeway.as_secs_f64() {
        return Err(TokenError::Expired);
    }
    Ok(())
}

/// Refuses an `nbf` or `iat` (`claim`) ahead of `now` beyond the leeway: a token is not
/// valid before its `nbf` (RFC 7519 §4.1.5), and cannot have been issued in the future
/// (§4.1.6); one whose `iat` says so was minted with a wrong clock or to outlive its
/// issuer's key. One that is not a NumericDate (`null` included) is malformed; a fractional
/// one is compared as it is.
pub(super) fn check_not_ahead(
    claims: &Map<String, Value>,
    claim: &str,
    leeway: std::time::Duration,
    now: f64,
) -> Result<(), TokenError> {
    let at = match claims.get(claim) {
        None => return Ok(()),
        Some(at) => at
            .as_f64()
            .ok_or_else(|| TokenError::Malformed(format!("claim {claim} has the wrong type")))?,
    };
    if at > now + leeway.as_secs_f64() {
        return Err(TokenError::NotYetValid);
    }
    Ok(())
}

/// A NumericDate (RFC 7519 §2): integer or fractional seconds since the epoch.
pub(super) fn numeric_date(value: &Value) -> Option<i64> {
    value.as_i64().or_else(|| {
        value
            .as_f64()
            .filter(|seconds| seconds.is_finite())
            .map(|seconds| seconds as i64)
    })
}

#[cfg(test)]
mod tests;
