//! `AuthzService`: authenticate the token, decide with the engine, answer.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::convert;
use super::pb;
use super::pb::authz_service_server::AuthzService;
use crate::decision::{BundleEntry, Engine};
use crate::fhir::Interaction;
use crate::smart::TokenContext;
use crate::token::{AuthError, Authenticated, Authenticator};

/// Most entries accepted in one `BatchCheckAccess`.
pub const MAX_BATCH_ENTRIES: usize = 10_000;

/// The service implementation: shared, cheap to clone.
#[derive(Clone)]
pub struct AuthzGrpc {
    engine: Arc<Engine>,
    authenticator: Arc<Authenticator>,
}

impl AuthzGrpc {
    pub fn new(engine: Engine, authenticator: Arc<Authenticator>) -> Self {
        AuthzGrpc {
            engine: Arc::new(engine),
            authenticator,
        }
    }

    /// The token's verification, with infrastructure failures as `UNAVAILABLE`; a refused
    /// token is `Ok(Err(..))`, which the caller turns into a deny.
    async fn authenticate(
        &self,
        token: &str,
    ) -> Result<Result<Authenticated, crate::token::TokenError>, Status> {
        match self.authenticator.authenticate(token).await {
            Ok(authenticated) => Ok(Ok(authenticated)),
            Err(AuthError::Rejected(error)) => Ok(Err(error)),
            Err(unavailable @ AuthError::Unavailable { .. }) => {
                Err(Status::unavailable(unavailable.to_string()))
            }
        }
    }
}

#[tonic::async_trait]
impl AuthzService for AuthzGrpc {
    async fn check_access(
        &self,
        request: Request<pb::CheckAccessRequest>,
    ) -> Result<Response<pb::CheckAccessResponse>, Status> {
        let message = request.into_inner();
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
            return Ok(Response::new(convert::decision_response(decision)));
        }
        let authenticated = match self.authenticate(&message.access_token).await? {
            Ok(authenticated) => authenticated,
            Err(error) => return Ok(Response::new(convert::token_denied(&error))),
        };
        let token = &authenticated.token;
        let decision = self.engine.decide(
            &token.context,
            &fhir_request,
            stored.as_ref(),
            proposed.as_ref(),
        );
        let mut response = convert::decision_response(decision);
        response.subject = Some(convert::subject(token));
        Ok(Response::new(response))
    }

    async fn batch_check_access(
        &self,
        request: Request<pb::BatchCheckAccessRequest>,
    ) -> Result<Response<pb::BatchCheckAccessResponse>, Status> {
        let message = request.into_inner();
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
        let authenticated = match self.authenticate(&message.access_token).await? {
            Ok(authenticated) => authenticated,
            Err(error) => return Ok(Response::new(convert::bundle_token_denied(&error))),
        };
        let token = &authenticated.token;
        let decision = self.engine.decide_bundle(&token.context, kind, &entries);
        Ok(Response::new(convert::bundle_response(
            decision,
            Some(convert::subject(token)),
        )))
    }

    async fn introspect_token(
        &self,
        request: Request<pb::IntrospectTokenRequest>,
    ) -> Result<Response<pb::IntrospectTokenResponse>, Status> {
        let token = request.into_inner().token;
        if token.trim().is_empty() {
            return Err(Status::invalid_argument("token: required (RFC 7662 §2.1)"));
        }
        let response = match self.authenticate(&token).await? {
            Ok(authenticated) => convert::introspection(&authenticated),
            // RFC 7662 §2.2: an inactive token yields `active: false` and nothing else.
            Err(_) => pb::IntrospectTokenResponse::default(),
        };
        Ok(Response::new(response))
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
