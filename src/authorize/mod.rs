//! The one authorization pipeline every face calls: public check, authenticate, decide, and
//! one event reported per decision.
//!
//! A face (the gRPC API, Envoy's ext_authz) decodes its wire format into domain types, hands
//! them to the [`Authorizer`], and encodes the [`Verdict`] it gets back. Every rule that is not
//! about a wire format lives here or below, once, so the faces cannot drift apart:
//! - public endpoints ([`Interaction::is_public`](crate::fhir::Interaction::is_public) and the
//!   configured public paths) need no token;
//! - HTTP request lines, and their method override headers, are read by [`HttpLine`];
//! - the limits of a request ([`MAX_BATCH_ENTRIES`]);
//! - a token is judged once, its fingerprint computed where it is hashed;
//! - a token verified for one FHIR version is re-read for an engine of another;
//! - the deny vocabulary ([`Refusal`]) and its statuses.
//!
//! An issuer that cannot be reached is [`Unavailable`]: never an allow.

mod refusal;
mod request;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::sync::Arc;

use serde_json::Value;
use tracing::Span;

pub use self::refusal::{Refusal, Status, decision_status};
pub use self::request::HttpLine;
use crate::decision::{BundleDecision, BundleEntry, BundleKind, Decision, Engine, Outcome};
use crate::fhir::{FhirRequest, Resource};
use crate::smart::TokenContext;
use crate::telemetry::{DecisionEvent, Observer, Rpc, traces};
use crate::token::{
    AuthError, Authenticated, Authenticator, BearerToken, TokenError, TokenFingerprint,
    VerifiedToken,
};

/// Most entries accepted in one batch or transaction.
pub const MAX_BATCH_ENTRIES: usize = 10_000;

/// The refusal of a batch or transaction of `entries` entries, when it has too many: a face
/// may ask before it decodes them.
pub fn batch_size_refusal(entries: usize) -> Option<Refusal> {
    (entries > MAX_BATCH_ENTRIES).then(|| {
        Refusal::InvalidRequest(format!(
            "entries: at most {MAX_BATCH_ENTRIES} in one batch or transaction"
        ))
    })
}

/// The token could not be judged (an issuer's keys, discovery or introspection endpoint
/// are unreachable). Never an allow: the faces answer gRPC `UNAVAILABLE`, and Envoy's
/// `failure_mode_allow` must stay false.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("issuer {issuer} is unavailable: {detail}")]
pub struct Unavailable {
    pub issuer: String,
    pub detail: String,
}

/// The gRPC error of every face.
impl From<Unavailable> for tonic::Status {
    fn from(unavailable: Unavailable) -> Self {
        tonic::Status::unavailable(unavailable.to_string())
    }
}

/// The answer of the pipeline.
#[derive(Debug)]
pub enum Verdict<D> {
    /// A public endpoint: allowed without a token.
    Public(D),
    /// Refused before the engine decided (today: a refused token, a batch over the limit).
    Refused(Refusal),
    /// The engine's decision for a verified token.
    Decided {
        decision: D,
        token: Arc<VerifiedToken>,
    },
}

/// One call of a face: the RPC it serves and its span.
#[derive(Clone, Copy, Debug)]
pub struct Call<'a> {
    pub rpc: Rpc,
    pub span: &'a Span,
}

/// One request to decide, as the face decoded it.
#[derive(Clone, Copy, Debug)]
pub struct Check<'a> {
    /// The `Authorization` value or bare token.
    pub raw_token: &'a str,
    pub request: &'a FhirRequest,
    /// The HTTP line the request was read from, when it came as one (public paths are
    /// matched on it).
    pub line: Option<HttpLine<'a>>,
    /// The resource as stored now.
    pub stored: Option<&'a Resource>,
    /// The new version of the resource.
    pub proposed: Option<&'a Resource>,
}

/// A batch or transaction to decide, entry by entry.
#[derive(Clone, Copy, Debug)]
pub struct BundleCheck<'a> {
    pub raw_token: &'a str,
    /// The request that carried the Bundle (`POST [base]`), when there was one.
    pub request: Option<&'a FhirRequest>,
    pub kind: BundleKind,
    pub entries: &'a [BundleEntry],
}

/// Runs the pipeline for every face; cheap to share.
#[derive(Debug)]
pub struct Authorizer {
    authenticator: Arc<Authenticator>,
    observer: Observer,
    /// Paths relative to a FHIR base that need no token (`[envoy] public_paths`).
    public_paths: Vec<String>,
}

/// A token that passed, with what the events of its decisions carry.
struct Admitted {
    token: Arc<VerifiedToken>,
    fingerprint: TokenFingerprint,
}

impl Authorizer {
    pub fn new(
        authenticator: Arc<Authenticator>,
        observer: Observer,
        public_paths: Vec<String>,
    ) -> Self {
        Authorizer {
            authenticator,
            observer,
            public_paths,
        }
    }

    /// The authenticator behind the pipeline.
    pub fn authenticator(&self) -> &Arc<Authenticator> {
        &self.authenticator
    }

    /// Decides one request with `engine`.
    pub async fn check(
        &self,
        call: Call<'_>,
        engine: &Engine,
        check: Check<'_>,
    ) -> Result<Verdict<Decision>, Unavailable> {
        let public = check.request.interaction.is_public()
            || check
                .line
                .is_some_and(|line| line.is_public_path(&self.public_paths));
        if public {
            let decision = Decision::public_endpoint();
            self.report_decision(call, &decision, Some(check.request), None, None);
            return Ok(Verdict::Public(decision));
        }
        let admitted = match self.admit(call, check.raw_token).await? {
            Ok(admitted) => admitted,
            Err((error, fingerprint)) => {
                return Ok(self.token_refused(call, error, Some(check.request), fingerprint));
            }
        };
        let context = match context_for(&admitted.token, engine, &self.authenticator) {
            Ok(context) => context,
            Err(error) => {
                let fingerprint = Some(admitted.fingerprint);
                return Ok(self.token_refused(call, error, Some(check.request), fingerprint));
            }
        };
        let decision = engine.decide(&context, check.request, check.stored, check.proposed);
        self.report_decision(
            call,
            &decision,
            Some(check.request),
            Some(&context),
            Some(admitted.fingerprint),
        );
        Ok(Verdict::Decided {
            decision,
            token: admitted.token,
        })
    }

    /// Decides a batch or transaction with `engine`, entry by entry; one event per entry.
    pub async fn check_bundle(
        &self,
        call: Call<'_>,
        engine: &Engine,
        check: BundleCheck<'_>,
    ) -> Result<Verdict<BundleDecision>, Unavailable> {
        traces::record_bundle_size(call.span, check.entries.len());
        if let Some(refusal) = batch_size_refusal(check.entries.len()) {
            self.refused(call, check.raw_token, check.request, &refusal);
            return Ok(Verdict::Refused(refusal));
        }
        let admitted = match self.admit(call, check.raw_token).await? {
            Ok(admitted) => admitted,
            Err((error, fingerprint)) => {
                return Ok(self.token_refused(call, error, check.request, fingerprint));
            }
        };
        let context = match context_for(&admitted.token, engine, &self.authenticator) {
            Ok(context) => context,
            Err(error) => {
                let fingerprint = Some(admitted.fingerprint);
                return Ok(self.token_refused(call, error, check.request, fingerprint));
            }
        };
        let decision = engine.decide_bundle(&context, check.kind, check.entries);
        for (index, (entry, entry_decision)) in
            check.entries.iter().zip(&decision.entries).enumerate()
        {
            self.observer.decided(
                &DecisionEvent {
                    rpc: call.rpc,
                    outcome: entry_decision.outcome,
                    reason: entry_decision.reason.as_str(),
                    request: entry.request.as_ref().ok(),
                    grants: &entry_decision.grants,
                    token: Some(&context),
                    token_fingerprint: Some(admitted.fingerprint),
                    entry: Some(index),
                },
                call.span,
            );
        }
        traces::record_decision(
            call.span,
            decision.outcome,
            decision.reason.as_str(),
            None,
            &[],
        );
        Ok(Verdict::Decided {
            decision,
            token: admitted.token,
        })
    }

    /// Judges a token alone (RFC 7662 introspection of this service): `None` when it is
    /// refused.
    pub async fn introspect(
        &self,
        call: Call<'_>,
        raw_token: &str,
    ) -> Result<Option<Authenticated>, Unavailable> {
        match self.authenticator.authenticate(raw_token).await {
            Ok(authenticated) => {
                traces::record_token(call.span, &authenticated);
                Ok(Some(authenticated))
            }
            Err(AuthError::Rejected(_)) => Ok(None),
            Err(AuthError::Unavailable { issuer, detail }) => Err(Unavailable { issuer, detail }),
        }
    }

    /// Reports a refusal a face found while decoding (a request it cannot read, a body it
    /// was not sent): one deny event, like every other answer.
    pub fn refused(
        &self,
        call: Call<'_>,
        raw_token: &str,
        request: Option<&FhirRequest>,
        refusal: &Refusal,
    ) {
        // The token was not judged, so not hashed yet: hash it only for an audit line.
        let fingerprint = if self.observer.audits(Outcome::Deny) {
            BearerToken::from_header(raw_token)
                .ok()
                .map(|bearer| bearer.fingerprint())
        } else {
            None
        };
        self.report_refusal(call, refusal, request, fingerprint);
    }

    /// Authenticates the token: `Ok(Err(..))` for a refused one.
    async fn admit(
        &self,
        call: Call<'_>,
        raw_token: &str,
    ) -> Result<Result<Admitted, (TokenError, Option<TokenFingerprint>)>, Unavailable> {
        let bearer = match BearerToken::from_header(raw_token) {
            Ok(bearer) => bearer,
            Err(error) => return Ok(Err((error, None))),
        };
        let fingerprint = bearer.fingerprint();
        match self.authenticator.authenticate_bearer(&bearer).await {
            Ok(authenticated) => {
                traces::record_token(call.span, &authenticated);
                Ok(Ok(Admitted {
                    token: authenticated.token,
                    fingerprint,
                }))
            }
            Err(AuthError::Rejected(error)) => Ok(Err((error, Some(fingerprint)))),
            Err(AuthError::Unavailable { issuer, detail }) => Err(Unavailable { issuer, detail }),
        }
    }

    fn token_refused<D>(
        &self,
        call: Call<'_>,
        error: TokenError,
        request: Option<&FhirRequest>,
        fingerprint: Option<TokenFingerprint>,
    ) -> Verdict<D> {
        let refusal = Refusal::Token(error);
        self.report_refusal(call, &refusal, request, fingerprint);
        Verdict::Refused(refusal)
    }

    fn report_refusal(
        &self,
        call: Call<'_>,
        refusal: &Refusal,
        request: Option<&FhirRequest>,
        fingerprint: Option<TokenFingerprint>,
    ) {
        self.observer.decided(
            &DecisionEvent {
                rpc: call.rpc,
                outcome: Outcome::Deny,
                reason: refusal.as_str(),
                request,
                grants: &[],
                token: None,
                token_fingerprint: fingerprint,
                entry: None,
            },
            call.span,
        );
    }

    fn report_decision(
        &self,
        call: Call<'_>,
        decision: &Decision,
        request: Option<&FhirRequest>,
        token: Option<&TokenContext>,
        fingerprint: Option<TokenFingerprint>,
    ) {
        self.observer.decided(
            &DecisionEvent {
                rpc: call.rpc,
                outcome: decision.outcome,
                reason: decision.reason.as_str(),
                request,
                grants: &decision.grants,
                token,
                token_fingerprint: fingerprint,
                entry: None,
            },
            call.span,
        );
    }
}

/// The token's context for `engine`: the cached one, or re-read from the claims for an
/// engine of another FHIR version (scopes name version-specific types).
fn context_for<'t>(
    token: &'t VerifiedToken,
    engine: &Engine,
    authenticator: &Authenticator,
) -> Result<Cow<'t, TokenContext>, TokenError> {
    let version = engine.fhir_version();
    if version == authenticator.fhir_version() {
        return Ok(Cow::Borrowed(&token.context));
    }
    TokenContext::from_claims(&Value::Object(token.claims.clone()), version)
        .map(Cow::Owned)
        .map_err(|error| TokenError::Malformed(error.to_string()))
}
