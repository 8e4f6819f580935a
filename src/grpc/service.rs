//! `AuthzService`: authenticate the token, decide with the engine, answer.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use tracing::Span;

use super::convert;
use super::pb;
use super::pb::authz_service_server::AuthzService;
use crate::decision::{BundleEntry, Engine, Outcome};
use crate::fhir::Interaction;
use crate::smart::TokenContext;
use crate::telemetry::{self, DecisionEvent, Observer, Rpc, traces};
use crate::token::{AuthError, Authenticated, Authenticator, TokenError};

/// Most entries accepted in one `BatchCheckAccess`.
pub const MAX_BATCH_ENTRIES: usize = 10_000;

/// The service implementation: shared, cheap to clone.
#[derive(Clone)]
pub struct AuthzGrpc {
    engine: Arc<Engine>,
    authenticator: Arc<Authenticator>,
    observer: Observer,
}

impl AuthzGrpc {
    pub fn new(engine: Engine, authenticator: Arc<Authenticator>) -> Self {
        AuthzGrpc {
            engine: Arc::new(engine),
            authenticator,
            observer: Observer::default(),
        }
    }

    /// Reports decisions to `observer` (metrics, audit lines, span attributes).
    pub fn with_observer(mut self, observer: Observer) -> Self {
        self.observer = observer;
        self
    }

    /// The token's verification, with infrastructure failures as `UNAVAILABLE`; a refused
    /// token is `Ok(Err(..))`, which the caller turns into a deny.
    async fn authenticate(
        &self,
        token: &str,
        span: &Span,
    ) -> Result<Result<Authenticated, TokenError>, Status> {
        match self.authenticator.authenticate(token).await {
            Ok(authenticated) => {
                traces::record_token(span, &authenticated);
                Ok(Ok(authenticated))
            }
            Err(AuthError::Rejected(error)) => Ok(Err(error)),
            Err(unavailable @ AuthError::Unavailable { .. }) => {
                Err(Status::unavailable(unavailable.to_string()))
            }
        }
    }

    /// Reports a refused token: a deny with the token's reason.
    fn token_refused(
        &self,
        rpc: Rpc,
        error: &TokenError,
        request: Option<&crate::fhir::FhirRequest>,
        raw_token: &str,
        span: &Span,
    ) {
        self.observer.decided(
            &DecisionEvent {
                rpc,
                outcome: Outcome::Deny,
                reason: telemetry::token_reason(error),
                request,
                grants: &[],
                token: None,
                raw_token,
                entry: None,
            },
            span,
        );
    }

    async fn check_access_observed(
        &self,
        message: pb::CheckAccessRequest,
        span: &Span,
    ) -> Result<Response<pb::CheckAccessResponse>, Status> {
        let (fhir, http) = split_request(message.request);
        let fhir_request = convert::fhir_request(fhir, http, "request")?;
        let stored = convert::resource(message.stored, "stored").await?;
        let proposed = convert::resource(message.proposed, "proposed").await?;

        // Public endpoints (SMART §2 table) need no token at all.
        if matches!(
            fhir_request.interaction,
            Interaction::Capabilities | Interaction::SmartConfiguration
        ) {
            let decision = self
                .engine
                .decide(&TokenContext::default(), &fhir_request, None, None);
            self.observer.decided(
                &DecisionEvent {
                    rpc: Rpc::CheckAccess,
                    outcome: decision.outcome,
                    reason: decision.reason.as_str(),
                    request: Some(&fhir_request),
                    grants: &decision.grants,
                    token: None,
                    raw_token: "",
                    entry: None,
                },
                span,
            );
            return Ok(Response::new(convert::decision_response(decision)));
        }
        let authenticated = match self.authenticate(&message.access_token, span).await? {
            Ok(authenticated) => authenticated,
            Err(error) => {
                self.token_refused(
                    Rpc::CheckAccess,
                    &error,
                    Some(&fhir_request),
                    &message.access_token,
                    span,
                );
                return Ok(Response::new(convert::token_denied(&error)));
            }
        };
        let token = &authenticated.token;
        let decision = self.engine.decide(
            &token.context,
            &fhir_request,
            stored.as_ref(),
            proposed.as_ref(),
        );
        self.observer.decided(
            &DecisionEvent {
                rpc: Rpc::CheckAccess,
                outcome: decision.outcome,
                reason: decision.reason.as_str(),
                request: Some(&fhir_request),
                grants: &decision.grants,
                token: Some(&token.context),
                raw_token: &message.access_token,
                entry: None,
            },
            span,
        );
        let mut response = convert::decision_response(decision);
        response.subject = Some(convert::subject(token));
        Ok(Response::new(response))
    }

    async fn batch_check_access_observed(
        &self,
        message: pb::BatchCheckAccessRequest,
        span: &Span,
    ) -> Result<Response<pb::BatchCheckAccessResponse>, Status> {
        traces::record_bundle_size(span, message.entries.len());
        let kind = convert::bundle_kind(message.bundle_type)?;
        if message.entries.len() > MAX_BATCH_ENTRIES {
            return Err(Status::invalid_argument(format!(
                "entries: at most {MAX_BATCH_ENTRIES}"
            )));
        }
        let mut entries = Vec::with_capacity(message.entries.len());
        for (index, entry) in message.entries.into_iter().enumerate() {
            let field = format!("entries[{index}]");
            let (fhir, http) = match entry.request {
                Some(pb::batch_entry::Request::Fhir(fhir)) => (Some(fhir), None),
                Some(pb::batch_entry::Request::Http(http)) => (None, Some(http)),
                None => (None, None),
            };
            entries.push(BundleEntry {
                request: Ok(convert::fhir_request(fhir, http, &field)?),
                stored: convert::resource(entry.stored, &format!("{field}.stored")).await?,
                proposed: convert::resource(entry.proposed, &format!("{field}.proposed")).await?,
            });
        }
        let authenticated = match self.authenticate(&message.access_token, span).await? {
            Ok(authenticated) => authenticated,
            Err(error) => {
                self.token_refused(
                    Rpc::BatchCheckAccess,
                    &error,
                    None,
                    &message.access_token,
                    span,
                );
                return Ok(Response::new(convert::bundle_token_denied(&error)));
            }
        };
        let token = &authenticated.token;
        let decision = self.engine.decide_bundle(&token.context, kind, &entries);
        for (index, (entry, entry_decision)) in entries.iter().zip(&decision.entries).enumerate() {
            self.observer.decided(
                &DecisionEvent {
                    rpc: Rpc::BatchCheckAccess,
                    outcome: entry_decision.outcome,
                    reason: entry_decision.reason.as_str(),
                    request: entry.request.as_ref().ok(),
                    grants: &entry_decision.grants,
                    token: Some(&token.context),
                    raw_token: &message.access_token,
                    entry: Some(index),
                },
                span,
            );
        }
        traces::record_decision(span, decision.outcome, decision.reason.as_str(), None, &[]);
        Ok(Response::new(convert::bundle_response(
            decision,
            Some(convert::subject(token)),
        )))
    }

    async fn introspect_token_observed(
        &self,
        token: String,
        span: &Span,
    ) -> Result<Response<pb::IntrospectTokenResponse>, Status> {
        if token.trim().is_empty() {
            return Err(Status::invalid_argument("token: required (RFC 7662 §2.1)"));
        }
        let response = match self.authenticate(&token, span).await? {
            Ok(authenticated) => convert::introspection(&authenticated),
            // RFC 7662 §2.2: an inactive token yields `active: false` and nothing else.
            Err(_) => pb::IntrospectTokenResponse::default(),
        };
        traces::record_token_active(span, response.active);
        Ok(Response::new(response))
    }
}

#[tonic::async_trait]
impl AuthzService for AuthzGrpc {
    async fn check_access(
        &self,
        request: Request<pb::CheckAccessRequest>,
    ) -> Result<Response<pb::CheckAccessResponse>, Status> {
        let span = traces::rpc_span(Rpc::CheckAccess, request.metadata());
        let call = self.check_access_observed(request.into_inner(), &span);
        telemetry::observe(Rpc::CheckAccess, &span, call).await
    }

    async fn batch_check_access(
        &self,
        request: Request<pb::BatchCheckAccessRequest>,
    ) -> Result<Response<pb::BatchCheckAccessResponse>, Status> {
        let span = traces::rpc_span(Rpc::BatchCheckAccess, request.metadata());
        let call = self.batch_check_access_observed(request.into_inner(), &span);
        telemetry::observe(Rpc::BatchCheckAccess, &span, call).await
    }

    async fn introspect_token(
        &self,
        request: Request<pb::IntrospectTokenRequest>,
    ) -> Result<Response<pb::IntrospectTokenResponse>, Status> {
        let span = traces::rpc_span(Rpc::IntrospectToken, request.metadata());
        let call = self.introspect_token_observed(request.into_inner().token, &span);
        telemetry::observe(Rpc::IntrospectToken, &span, call).await
    }
}

fn split_request(
    request: Option<pb::check_access_request::Request>,
) -> (Option<pb::FhirRequest>, Option<pb::HttpRequest>) {
    match request {
        Some(pb::check_access_request::Request::Fhir(fhir)) => (Some(fhir), None),
        Some(pb::check_access_request::Request::Http(http)) => (None, Some(http)),
        None => (None, None),
    }
}
