//! The RFC 7662 client: asks an issuer's introspection endpoint whether a token is active,
//! and reads the answer strictly.
//!
//! Only `active: true` (the JSON boolean) is active (RFC 7662 §2.2); an `exp` in the past
//! makes a token inactive whatever `active` says. Anything that is not an HTTP 200 JSON
//! object (endpoint down, timeout, 401 for this server's credentials, 500, garbage) is
//! [`AuthError::Unavailable`]: the caller may retry, and it is never an allow. Requests are
//! bounded by a timeout and a semaphore, so a slow endpoint holds at most
//! `max_concurrency` connections and never stalls cached tokens (the cache answers hits
//! before any of this runs).

use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use serde_json::{Map, Value};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tracing::Instrument as _;

use super::metrics::{self, IntrospectionFailure, Upstream};
use super::{AuthError, ContextReader, TokenError, TokenSource, VerifiedToken, jwt};
use crate::config::{IntrospectionAuth, IssuerConfig};

/// Largest introspection response read: real ones are well under a kilobyte or two.
pub const MAX_RESPONSE_BYTES: usize = 256 * 1024;

/// Bytes left as they are in `application/x-www-form-urlencoded` (WHATWG URL §5.2): ASCII
/// alphanumerics and `*-._`; everything else is percent-encoded (a space as `%20`, which
/// every decoder reads like `+`).
const FORM_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'*')
    .remove(b'-')
    .remove(b'.')
    .remove(b'_');

fn form_encode(value: &str) -> percent_encoding::PercentEncode<'_> {
    utf8_percent_encode(value, FORM_VALUE)
}

/// Builds the introspection request body (RFC 7662 §2.1), with the client credentials for
/// `client_secret_post` (RFC 6749 §2.3.1).
pub fn request_body(
    token: &str,
    auth: IntrospectionAuth,
    client_id: Option<&str>,
    secret: &str,
) -> String {
    let mut body = format!("token={}&token_type_hint=access_token", form_encode(token));
    if auth == IntrospectionAuth::ClientSecretPost {
        body.push_str(&format!(
            "&client_id={}&client_secret={}",
            form_encode(client_id.unwrap_or_default()),
            form_encode(secret)
        ));
    }
    body
}

/// The `Authorization` header for `client_secret_basic` (the id and secret form-encoded,
/// then Basic, RFC 6749 §2.3.1) or `bearer`; none for `client_secret_post`.
pub fn authorization_header(
    auth: IntrospectionAuth,
    client_id: Option<&str>,
    secret: &str,
) -> Option<String> {
    match auth {
        IntrospectionAuth::ClientSecretBasic => {
            let pair = format!(
                "{}:{}",
                form_encode(client_id.unwrap_or_default()),
                form_encode(secret)
            );
            Some(format!(
                "Basic {}",
                base64_simd::STANDARD.encode_to_string(pair)
            ))
        }
        IntrospectionAuth::Bearer => Some(format!("Bearer {secret}")),
        IntrospectionAuth::ClientSecretPost => None,
    }
}

/// What a positive answer is checked against: the configured issuer.
#[derive(Clone, Debug)]
pub struct ResponseRules {
    /// The issuer; an `iss` in the answer must equal it.
    pub issuer: String,
    /// The issuer's `audiences`; the answer's `aud` must name one when there are any.
    pub audiences: Vec<String>,
    /// An answer without `aud` is accepted (the issuer's `introspection_without_aud`).
    pub without_aud: bool,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway: Duration,
    /// For reading scopes and launch context.
    pub reader: ContextReader,
}

/// One issuer's introspection endpoint and how to call it.
pub struct Introspector {
    rules: ResponseRules,
    endpoint: RwLock<Option<String>>,
    auth: IntrospectionAuth,
    client_id: Option<String>,
    secret: crate::config::Secret,
    authorization: Option<HeaderValue>,
    http: reqwest::Client,
    timeout: Duration,
    permits: Semaphore,
    calls: AtomicU64,
}

impl std::fmt::Debug for Introspector {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Introspector")
            .field("issuer", &self.rules.issuer)
            .field("endpoint", &self.endpoint())
            .field("auth", &self.auth)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// Why an introspector could not be built.
#[derive(Debug, thiserror::Error)]
pub enum IntrospectorSetupError {
    /// The issuer has no `introspection` settings.
    #[error("the issuer has no introspection settings")]
    NotConfigured,
    /// The client secret cannot be sent in an HTTP header.
    #[error("the client secret cannot be sent in an HTTP header")]
    BadSecret,
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

impl Introspector {
    /// The introspector of `issuer` (which must have `introspection` settings); its
    /// endpoint is `None` until discovery sets it when none is configured.
    pub fn new(
        issuer: &IssuerConfig,
        reader: ContextReader,
    ) -> Result<Self, IntrospectorSetupError> {
        let settings = issuer
            .introspection
            .as_ref()
            .ok_or(IntrospectorSetupError::NotConfigured)?;
        let authorization = authorization_header(
            settings.auth,
            settings.client_id.as_deref(),
            settings.client_secret.expose(),
        )
        .map(|value| {
            HeaderValue::from_str(&value).map(|mut value| {
                value.set_sensitive(true);
                value
            })
        })
        .transpose()
        .map_err(|_| IntrospectorSetupError::BadSecret)?;
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            // Never follow redirects: a redirect could carry the token and client credentials
            // to another host (RFC 7662 §4, RFC 9700 §4.11).
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Introspector {
            rules: ResponseRules {
                issuer: issuer.issuer.clone(),
                audiences: issuer.audiences.clone(),
                without_aud: settings.without_aud,
                leeway: issuer.leeway,
                reader,
            },
            endpoint: RwLock::new(settings.endpoint.clone()),
            auth: settings.auth,
            client_id: settings.client_id.clone(),
            secret: settings.client_secret.clone(),
            authorization,
            http,
            timeout: settings.timeout,
            permits: Semaphore::new(settings.max_concurrency.max(1)),
            calls: AtomicU64::new(0),
        })
    }

    /// The endpoint, configured or discovered.
    pub fn endpoint(&self) -> Option<String> {
        match self.endpoint.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Sets the endpoint found by discovery.
    pub fn set_endpoint(&self, endpoint: &str) {
        let mut guard = match self.endpoint.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if guard.as_deref() != Some(endpoint) {
            *guard = Some(endpoint.to_owned());
        }
    }

    /// Requests sent to the endpoint, for metrics and tests.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Asks the endpoint about `token` and judges the answer ([`judge_response`]).
    pub async fn introspect(&self, token: &str) -> Result<VerifiedToken, AuthError> {
        let span = metrics::upstream_span(Upstream::Introspection, &self.rules.issuer);
        let result = self.introspect_once(token).instrument(span.clone()).await;
        if let Err(Failure(Some(kind), _)) = &result {
            metrics::record_introspection_failure(*kind);
            metrics::record_upstream_error(&span, kind.as_str());
        }
        result.map_err(|failure| failure.1)
    }

    async fn introspect_once(&self, token: &str) -> Result<VerifiedToken, Failure> {
        let Some(endpoint) = self.endpoint() else {
            return Err(self.unavailable(
                IntrospectionFailure::NoEndpoint,
                "the introspection endpoint is not known yet",
            ));
        };
        // Waiting for a slot counts against the timeout too: a saturated endpoint answers
        // UNAVAILABLE instead of queueing requests without bound.
        let _permit = match tokio::time::timeout(self.timeout, self.permits.acquire()).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) | Err(_) => {
                return Err(self.unavailable(
                    IntrospectionFailure::Saturated,
                    format!(
                        "no free introspection slot within {} ms: the endpoint is saturated",
                        self.timeout.as_millis()
                    ),
                ));
            }
        };
        self.calls.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let mut request = self
            .http
            .post(&endpoint)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "application/json")
            .body(request_body(
                token,
                self.auth,
                self.client_id.as_deref(),
                self.secret.expose(),
            ));
        if let Some(authorization) = &self.authorization {
            request = request.header(AUTHORIZATION, authorization.clone());
        }
        let response = request.send().await.map_err(|error| {
            metrics::record_introspection(started.elapsed());
            if error.is_timeout() {
                self.unavailable(
                    IntrospectionFailure::Timeout,
                    format!(
                        "the introspection endpoint did not answer within {} ms",
                        self.timeout.as_millis()
                    ),
                )
            } else {
                self.unavailable(
                    IntrospectionFailure::Unreachable,
                    format!(
                        "cannot reach the introspection endpoint: {}",
                        error.without_url()
                    ),
                )
            }
        })?;
        let status = response.status().as_u16();
        let body = read_limited(response, MAX_RESPONSE_BYTES).await;
        metrics::record_introspection(started.elapsed());
        let body = body.map_err(|error| {
            self.unavailable(
                IntrospectionFailure::InvalidResponse,
                format!("reading the introspection response: {error}"),
            )
        })?;
        if status != 200 {
            return Err(self.unavailable(
                IntrospectionFailure::HttpStatus,
                self.status_detail(status, &body),
            ));
        }
        judge_response(&body, &self.rules, super::unix_time()).map_err(|error| match error {
            AuthError::Unavailable { .. } => {
                Failure(Some(IntrospectionFailure::InvalidResponse), error)
            }
            // A refusal (inactive token) is an answer, not a failure of the endpoint.
            refused => Failure(None, refused),
        })
    }

    /// Why a non-200 answer is not an answer, naming the likely cause for client errors.
    fn status_detail(&self, status: u16, body: &[u8]) -> String {
        let code = oauth_error_code(body);
        let shown = code.map(|code| format!(" ({code})")).unwrap_or_default();
        if matches!(status, 401 | 403) || code == Some("invalid_client") {
            return format!(
                "the introspection endpoint refused this server's client authentication (HTTP {status}{shown}, {} as client_id {:?}): check client_id and client_secret",
                self.auth.name(),
                self.client_id.as_deref().unwrap_or_default()
            );
        }
        format!("the introspection endpoint answered HTTP {status}{shown}")
    }

    fn unavailable(&self, kind: IntrospectionFailure, detail: impl Into<String>) -> Failure {
        let detail = detail.into();
        tracing::warn!(issuer = %self.rules.issuer, %detail, "token introspection failed");
        Failure(
            Some(kind),
            AuthError::Unavailable {
                issuer: self.rules.issuer.clone(),
                detail,
            },
        )
    }
}

/// An introspection that did not accept the token: why, for metrics (`None` for a
/// refusal, which is an answer), and the error the caller sees.
struct Failure(Option<IntrospectionFailure>, AuthError);

/// The OAuth `error` code of an error body (RFC 6749 §5.2), when it is a short plain code
/// (it is shown in messages, so nothing else from the body is).
fn oauth_error_code(body: &[u8]) -> Option<&str> {
    #[derive(serde::Deserialize)]
    struct ErrorBody<'a> {
        #[serde(borrow)]
        error: &'a str,
    }
    let parsed: ErrorBody<'_> = serde_json::from_slice(body).ok()?;
    let plain = !parsed.error.is_empty()
        && parsed.error.len() <= 64
        && parsed
            .error
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte == b'_');
    plain.then_some(parsed.error)
}

/// Reads a response body of at most `limit` bytes.
pub(super) async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, String> {
    if response
        .content_length()
        .is_some_and(|length| length > limit as u64)
    {
        return Err(format!("larger than {limit} bytes"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|error| error.without_url().to_string())?
    {
        if body.len() + chunk.len() > limit {
            return Err(format!("larger than {limit} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Judges an HTTP 200 introspection answer at `now` (seconds since the epoch).
///
/// Not a JSON object: `Unavailable` (the endpoint is broken, the token is not judged).
/// `active` other than the boolean `true`, or an `exp` at or before `now - leeway`:
/// [`TokenError::Inactive`]. Then, as for a JWT: an `nbf` ahead, an `iss` other than the
/// issuer, an `aud` naming none of this server's audiences, a `token_type` other than
/// `Bearer`, or a SMART claim of the wrong type refuse the token. Otherwise every claim
/// except `active` is kept (with `iss` filled in when absent) and read by
/// [`ContextReader::read`] (the engine's `TokenContext::from_claims`).
pub fn judge_response(
    body: &[u8],
    rules: &ResponseRules,
    now: f64,
) -> Result<VerifiedToken, AuthError> {
    // A member named twice (`"active": false, "active": true`) is read no single way.
    let Ok(Value::Object(mut claims)) = crate::fhir::parse_strict(body) else {
        return Err(AuthError::Unavailable {
            issuer: rules.issuer.clone(),
            detail: "the introspection response is not a JSON object, or names a member twice"
                .to_owned(),
        });
    };
    if claims.get("active") != Some(&Value::Bool(true)) {
        return Err(TokenError::Inactive.into());
    }
    claims.remove("active");
    // Compared with their fractions, as a JWT's are (`jwt::check_registered_claims`).
    let leeway = rules.leeway.as_secs_f64();
    if numeric_claim(&claims, "exp")?.is_some_and(|exp| exp <= now - leeway) {
        return Err(TokenError::Inactive.into());
    }
    if numeric_claim(&claims, "nbf")?.is_some_and(|nbf| nbf > now + leeway) {
        return Err(TokenError::NotYetValid.into());
    }
    if numeric_claim(&claims, "iat")?.is_some_and(|iat| iat > now + leeway) {
        return Err(TokenError::NotYetValid.into());
    }
    let expires_at = claims.get("exp").and_then(jwt::numeric_date);
    check_issuer(&mut claims, rules)?;
    check_audience(&claims, rules)?;
    let audiences = super::audiences_of(&claims)?;
    check_smart_claims(&claims)?;
    super::refuse_sender_constrained(&claims)?;
    let claims = Value::Object(claims);
    let context = rules
        .reader
        .read(&claims)
        .map_err(|error| TokenError::Malformed(error.to_string()))?;
    let Value::Object(claims) = claims else {
        return Err(TokenError::Malformed("claims are not a JSON object".to_owned()).into());
    };
    Ok(VerifiedToken {
        context,
        claims: super::IntrospectionClaims::read(&claims),
        expires_at,
        source: TokenSource::RemoteIntrospection,
        issuer: rules.issuer.clone(),
        audiences,
        keys: None,
    })
}

/// A NumericDate claim (RFC 7519 §2), fraction and all.
fn numeric_claim(claims: &Map<String, Value>, name: &str) -> Result<Option<f64>, TokenError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_f64()
            .filter(|seconds| seconds.is_finite())
            .map(Some)
            .ok_or_else(|| {
                TokenError::Malformed(format!("introspection claim {name} is not a NumericDate"))
            }),
    }
}

fn check_issuer(claims: &mut Map<String, Value>, rules: &ResponseRules) -> Result<(), TokenError> {
    match claims.get("iss") {
        None | Some(Value::Null) => {
            // The issuer vouched for the token: name it, for introspection answers.
            claims.insert("iss".to_owned(), Value::String(rules.issuer.clone()));
            Ok(())
        }
        Some(Value::String(issuer)) if *issuer == rules.issuer => Ok(()),
        Some(Value::String(issuer)) => Err(TokenError::wrong_issuer(issuer)),
        Some(_) => Err(TokenError::Malformed(
            "introspection claim iss is not a string".to_owned(),
        )),
    }
}

/// `aud` must name one of the issuer's audiences when it lists any, as a JWT's must
/// (docs/semantics.md §6). RFC 7662 §2.2 makes `aud` optional, but an answer without it says
/// nothing of which resource server the token was issued for, and an authorization server
/// serving several would vouch here for a token meant for another, so it is refused unless
/// the issuer is configured with `introspection_without_aud`; a `[[fhir_servers]]` entry's
/// audiences refuse such a token anyway (`Server::accepts`). A trailing `/` is no difference
/// (`VerifiedToken::is_for`).
fn check_audience(claims: &Map<String, Value>, rules: &ResponseRules) -> Result<(), TokenError> {
    if rules.audiences.is_empty() {
        return Ok(());
    }
    let ours = |audience: &str| super::names_one_of(audience, &rules.audiences);
    match claims.get("aud") {
        None | Some(Value::Null) if rules.without_aud => Ok(()),
        None | Some(Value::Null) => Err(TokenError::WrongAudience),
        Some(Value::String(audience)) if ours(audience) => Ok(()),
        Some(Value::String(_)) => Err(TokenError::WrongAudience),
        Some(Value::Array(audiences)) => {
            let mut named = false;
            for audience in audiences {
                let Value::String(audience) = audience else {
                    return Err(TokenError::Malformed(
                        "introspection claim aud is not a string array".to_owned(),
                    ));
                };
                named |= ours(audience);
            }
            if named {
                Ok(())
            } else {
                Err(TokenError::WrongAudience)
            }
        }
        Some(_) => Err(TokenError::Malformed(
            "introspection claim aud is not a string or array".to_owned(),
        )),
    }
}

/// The types of the SMART token-introspection fields (SMART App Launch 2.2
/// token-introspection.html) and `token_type`; `scope`, `patient`, `encounter`, `fhirUser`,
/// `client_id` and `sub` are checked by [`ContextReader::read`].
fn check_smart_claims(claims: &Map<String, Value>) -> Result<(), TokenError> {
    let wrong = |name: &str| TokenError::Malformed(format!("claim {name} has the wrong type"));
    for name in ["intent", "tenant", "smart_style_url", "jti"] {
        if !matches!(
            claims.get(name),
            None | Some(Value::Null | Value::String(_))
        ) {
            return Err(wrong(name));
        }
    }
    if !matches!(
        claims.get("need_patient_banner"),
        None | Some(Value::Null | Value::Bool(_))
    ) {
        return Err(wrong("need_patient_banner"));
    }
    match claims.get("fhirContext") {
        None | Some(Value::Null) => {}
        // SMART 2.0: references as strings; 2.2: objects with reference/canonical/identifier.
        Some(Value::Array(items))
            if items
                .iter()
                .all(|item| matches!(item, Value::String(_) | Value::Object(_))) => {}
        Some(_) => return Err(wrong("fhirContext")),
    }
    match claims.get("token_type") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(kind)) if kind.eq_ignore_ascii_case("bearer") => Ok(()),
        // A DPoP- or otherwise sender-constrained token needs a proof this service does not
        // see; accepting it as a bearer token would defeat the binding (RFC 9449 §7.2).
        Some(Value::String(kind)) => Err(TokenError::Malformed(format!(
            "token_type {kind:?} is not a bearer access token"
        ))),
        Some(_) => Err(wrong("token_type")),
    }
}

#[cfg(test)]
mod tests;
