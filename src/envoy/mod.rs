//! The service-mesh face: Envoy's `envoy.service.auth.v3.Authorization/Check` (ext_authz),
//! served on the same port and deciding with the same engine and token cache as
//! `CheckAccess`. Envoy or Istio forward each HTTP request's attributes; the answer lets the
//! request through with `x-smart-*` headers, or denies it with 401/403 and a FHIR
//! `OperationOutcome`. See docs/envoy.md for proxy configuration.

mod response;

use std::borrow::Cow;
use std::sync::Arc;

use envoy_types::ext_authz::v3::pb::{Authorization, CheckRequest, CheckResponse};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::HttpRequest;
use serde_json::Value;
use tonic::{Request, Response, Status};
use tracing::Span;

pub use self::response::{
    CLIENT_ID_HEADER, CONSTRAINTS_HEADER, FHIR_USER_HEADER, PATIENT_HEADER, SCOPES_HEADER,
};
use crate::config::EnvoyConfig;
use crate::decision::{Decision, Engine, Grant, Outcome, Policy, Reason, bundle_entries};
use crate::fhir::request_line::parse_query;
use crate::fhir::{FhirRequest, FhirVersion, Interaction, Resource, parse_request_line};
use crate::smart::TokenContext;
use crate::telemetry::{self, DecisionEvent, Observer, Rpc, traces};
use crate::token::{AuthError, Authenticator, TokenError, VerifiedToken};

/// Headers some frameworks read as the real method of a `POST`.
const METHOD_OVERRIDE_HEADERS: [&str; 3] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// Bodies larger than this are parsed off the async runtime.
const BLOCKING_PARSE_BYTES: usize = 64 * 1024;

/// The ext_authz service.
#[derive(Clone)]
pub struct EnvoyAuthz {
    config: Arc<EnvoyConfig>,
    default_version: FhirVersion,
    /// One engine per FHIR version served behind the proxy.
    engines: Arc<Vec<(FhirVersion, Engine)>>,
    authenticator: Arc<Authenticator>,
    observer: Observer,
}

/// What one answer decided, for the [`Observer`].
#[derive(Clone, Copy)]
struct Judged<'a> {
    outcome: Outcome,
    reason: &'static str,
    request: Option<&'a FhirRequest>,
    grants: &'a [Grant],
    token: Option<&'a TokenContext>,
}

impl<'a> Judged<'a> {
    fn deny(reason: &'static str, request: Option<&'a FhirRequest>) -> Self {
        Judged {
            outcome: Outcome::Deny,
            reason,
            request,
            grants: &[],
            token: None,
        }
    }
}

impl EnvoyAuthz {
    pub fn new(config: EnvoyConfig, policy: &Policy, authenticator: Arc<Authenticator>) -> Self {
        let mut versions = vec![policy.fhir_version];
        for version in config.bases.iter().filter_map(|base| base.fhir_version) {
            if !versions.contains(&version) {
                versions.push(version);
            }
        }
        let engines = versions
            .into_iter()
            .map(|fhir_version| {
                (
                    fhir_version,
                    Engine::new(Policy {
                        fhir_version,
                        ..policy.clone()
                    }),
                )
            })
            .collect();
        EnvoyAuthz {
            config: Arc::new(config),
            default_version: policy.fhir_version,
            engines: Arc::new(engines),
            authenticator,
            observer: Observer::default(),
        }
    }

    /// Reports decisions to `observer` (metrics, audit lines, span attributes).
    pub fn with_observer(mut self, observer: Observer) -> Self {
        self.observer = observer;
        self
    }

    fn report(&self, judged: Judged<'_>, raw_token: &str, span: &Span) {
        self.observer.decided(
            &DecisionEvent {
                rpc: Rpc::EnvoyCheck,
                outcome: judged.outcome,
                reason: judged.reason,
                request: judged.request,
                grants: judged.grants,
                token: judged.token,
                raw_token,
                entry: None,
            },
            span,
        );
    }

    fn engine(&self, version: FhirVersion) -> &Engine {
        self.engines
            .iter()
            .find(|(candidate, _)| *candidate == version)
            .map(|(_, engine)| engine)
            .expect("an engine exists for every configured version")
    }

    async fn decide(&self, http: &HttpRequest, span: &Span) -> Result<CheckResponse, Status> {
        let raw_token = http
            .headers
            .get("authorization")
            .map(String::as_str)
            .unwrap_or_default();
        let unsupported = Reason::UnsupportedRequest.as_str();
        let Some((base, relative)) = self.config.base_of(&http.path) else {
            self.report(
                Judged::deny(telemetry::REASON_NO_FHIR_BASE, None),
                raw_token,
                span,
            );
            return Ok(response::forbidden(
                "the path is under no configured FHIR base",
            ));
        };
        let version = base.fhir_version.unwrap_or(self.default_version);
        // Some servers execute the method named in an override header rather than the
        // request's own: decide on neither, refuse the request.
        if let Some(other) = METHOD_OVERRIDE_HEADERS
            .iter()
            .find_map(|name| http.headers.get(*name))
            .filter(|method| !method.eq_ignore_ascii_case(&http.method))
        {
            self.report(Judged::deny(unsupported, None), raw_token, span);
            return Ok(response::bad_request(&format!(
                "method override to {other:?} is not accepted: send the method itself"
            )));
        }
        let mut request = match parse_request_line(&http.method, relative) {
            Ok(request) => request,
            Err(error) => {
                self.report(Judged::deny(unsupported, None), raw_token, span);
                return Ok(response::bad_request(&format!(
                    "invalid FHIR request: {error}"
                )));
            }
        };
        if self.is_public(&request, &http.method, relative) {
            let decision = Decision::public_endpoint();
            self.report(
                Judged {
                    outcome: decision.outcome,
                    reason: decision.reason.as_str(),
                    request: Some(&request),
                    grants: &[],
                    token: None,
                },
                "",
                span,
            );
            return Ok(response::allowed(&decision, None, &http.headers, None));
        }
        let token = match self.authenticator.authenticate(raw_token).await {
            Ok(authenticated) => {
                traces::record_token(span, &authenticated);
                authenticated.token
            }
            Err(AuthError::Rejected(error)) => {
                let reason = telemetry::token_reason(&error);
                self.report(Judged::deny(reason, Some(&request)), raw_token, span);
                return Ok(response::token_denied(&error));
            }
            Err(unavailable @ AuthError::Unavailable { .. }) => {
                // A gRPC error: Envoy's `failure_mode_allow` decides (keep it false).
                return Err(Status::unavailable(unavailable.to_string()));
            }
        };
        let context = match context_for(&token, version, self.default_version) {
            Ok(context) => context,
            Err(error) => {
                let reason = telemetry::token_reason(&error);
                self.report(Judged::deny(reason, Some(&request)), raw_token, span);
                return Ok(response::token_denied(&error));
            }
        };
        let body = request_body(http);
        if http.method.eq_ignore_ascii_case("POST") && request.interaction.is_search() {
            // `POST [type]/_search` carries its parameters in the body (FHIR R4 http.html
            // §3.1.0.7.1): they must be seen, or a search for another patient would pass.
            if let Err(message) = add_body_params(&mut request, body, http) {
                self.report(Judged::deny(unsupported, Some(&request)), raw_token, span);
                return Ok(response::forbidden(&message));
            }
        }
        if request.interaction == Interaction::Batch {
            return Ok(self
                .decide_bundle(version, &context, &token, body, http, span)
                .await);
        }
        let proposed = match (request.interaction, body) {
            (Interaction::Create | Interaction::Update, Some(body)) => {
                match parse_resource(body).await {
                    Ok(resource) => Some(resource),
                    Err(message) => {
                        let judged = Judged {
                            token: Some(&*context),
                            ..Judged::deny(unsupported, Some(&request))
                        };
                        self.report(judged, raw_token, span);
                        return Ok(response::bad_request(&message));
                    }
                }
            }
            _ => None,
        };
        let decision = self
            .engine(version)
            .decide(&context, &request, None, proposed.as_ref());
        self.report(
            Judged {
                outcome: decision.outcome,
                reason: decision.reason.as_str(),
                request: Some(&request),
                grants: &decision.grants,
                token: Some(&*context),
            },
            raw_token,
            span,
        );
        if !decision.is_allowed() {
            return Ok(response::decision_denied(&decision));
        }
        let narrowing = self.narrowing(&request, &decision, version);
        Ok(response::allowed(
            &decision,
            Some(&token),
            &http.headers,
            narrowing,
        ))
    }

    /// A batch or transaction: its entries come from the forwarded body.
    async fn decide_bundle(
        &self,
        version: FhirVersion,
        context: &TokenContext,
        token: &VerifiedToken,
        body: Option<&[u8]>,
        http: &HttpRequest,
        span: &Span,
    ) -> CheckResponse {
        let raw_token = http
            .headers
            .get("authorization")
            .map(String::as_str)
            .unwrap_or_default();
        let unsupported = Judged {
            token: Some(context),
            ..Judged::deny(Reason::UnsupportedRequest.as_str(), None)
        };
        let Some(body) = body else {
            self.report(unsupported, raw_token, span);
            return response::forbidden(
                "a batch or transaction is decided entry by entry: forward the body (with_request_body)",
            );
        };
        let bundle: Value = match parse_json(body).await {
            Ok(bundle) => bundle,
            Err(error) => {
                self.report(unsupported, raw_token, span);
                return response::bad_request(&format!("the Bundle is not JSON: {error}"));
            }
        };
        let (kind, entries) = match bundle_entries(&bundle) {
            Ok(read) => read,
            Err(error) => {
                self.report(unsupported, raw_token, span);
                return response::bad_request(&error.to_string());
            }
        };
        traces::record_bundle_size(span, entries.len());
        let decision = self.engine(version).decide_bundle(context, kind, &entries);
        for (index, (entry, entry_decision)) in entries.iter().zip(&decision.entries).enumerate() {
            self.observer.decided(
                &DecisionEvent {
                    rpc: Rpc::EnvoyCheck,
                    outcome: entry_decision.outcome,
                    reason: entry_decision.reason.as_str(),
                    request: entry.request.as_ref().ok(),
                    grants: &entry_decision.grants,
                    token: Some(context),
                    raw_token,
                    entry: Some(index),
                },
                span,
            );
        }
        traces::record_decision(span, decision.outcome, decision.reason.as_str(), None, &[]);
        let Some(denied) = decision.entries.iter().find(|entry| !entry.is_allowed()) else {
            return response::allowed_bundle(&decision, token, &http.headers);
        };
        let mut denied = denied.clone();
        denied.message = decision.message.clone();
        response::decision_denied(&denied)
    }

    /// `metadata`, `.well-known/smart-configuration` and the configured public paths.
    fn is_public(&self, request: &FhirRequest, method: &str, relative: &str) -> bool {
        if matches!(
            request.interaction,
            Interaction::Capabilities | Interaction::SmartConfiguration
        ) {
            return true;
        }
        // Only a GET (or HEAD) can be public: `POST Questionnaire` never is.
        if !(method.eq_ignore_ascii_case("GET") || method.eq_ignore_ascii_case("HEAD")) {
            return false;
        }
        let path = relative
            .split('?')
            .next()
            .unwrap_or_default()
            .trim_matches('/');
        self.config
            .public_paths
            .iter()
            .any(|public| public.trim_matches('/') == path)
    }

    /// For a type search whose every grant carries one Patient compartment: the query
    /// parameter that limits the search to it (`patient=123`, or `_id=123` on Patient).
    fn narrowing(
        &self,
        request: &FhirRequest,
        decision: &Decision,
        version: FhirVersion,
    ) -> Option<(&'static str, String)> {
        if !self.config.narrow_searches || request.interaction != Interaction::SearchType {
            return None;
        }
        let compartment = decision.grants.first()?.compartment.as_deref()?;
        if decision
            .grants
            .iter()
            .any(|grant| grant.compartment.as_deref() != Some(compartment))
        {
            return None;
        }
        let id = compartment.strip_prefix("Patient/")?;
        let resource_type = request.resource_type.as_deref()?;
        if resource_type == "Patient" {
            return Some(("_id", id.to_owned()));
        }
        let param = version.search_param(resource_type, "patient")?;
        param
            .targets_type("Patient")
            .then(|| ("patient", format!("Patient/{id}")))
    }
}

#[tonic::async_trait]
impl Authorization for EnvoyAuthz {
    async fn check(
        &self,
        request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        let (metadata, _, check) = request.into_parts();
        let http = check
            .attributes
            .as_ref()
            .and_then(|attributes| attributes.request.as_ref())
            .and_then(|request| request.http.as_ref());
        let span = traces::rpc_span_with_headers(
            Rpc::EnvoyCheck,
            &metadata,
            http.map(|http| &http.headers),
        );
        let call = async {
            let response = match http {
                Some(http) => self.decide(http, &span).await?,
                None => {
                    let unsupported = Reason::UnsupportedRequest.as_str();
                    self.report(Judged::deny(unsupported, None), "", &span);
                    response::bad_request("the CheckRequest carries no HTTP request")
                }
            };
            Ok(Response::new(response))
        };
        telemetry::observe(Rpc::EnvoyCheck, &span, call).await
    }
}

/// The token's context for `version`: the cached one, or re-read from the claims for a base
/// of another FHIR version (scopes name version-specific types).
fn context_for(
    token: &VerifiedToken,
    version: FhirVersion,
    default_version: FhirVersion,
) -> Result<Cow<'_, TokenContext>, TokenError> {
    if version == default_version {
        return Ok(Cow::Borrowed(&token.context));
    }
    TokenContext::from_claims(&Value::Object(token.claims.clone()), version)
        .map(Cow::Owned)
        .map_err(|error| TokenError::Malformed(error.to_string()))
}

/// The forwarded body, unless Envoy truncated it (`allow_partial_message`): a partial
/// resource proves nothing, so the decision then carries the constraints instead.
fn request_body(http: &HttpRequest) -> Option<&[u8]> {
    if http
        .headers
        .get("x-envoy-auth-partial-body")
        .is_some_and(|value| value == "true")
    {
        return None;
    }
    let body = if http.raw_body.is_empty() {
        http.body.as_bytes()
    } else {
        http.raw_body.as_slice()
    };
    (!body.is_empty()).then_some(body)
}

/// Adds the form-encoded parameters of a `POST _search` body to `request`. A body Envoy did
/// not forward (or truncated) cannot be judged, unless the request says it has none.
fn add_body_params(
    request: &mut FhirRequest,
    body: Option<&[u8]>,
    http: &HttpRequest,
) -> Result<(), String> {
    let Some(body) = body else {
        let empty = http
            .headers
            .get("content-length")
            .is_some_and(|length| length.trim() == "0");
        return if empty {
            Ok(())
        } else {
            Err(
                "a POST search is decided on its parameters: forward the body (with_request_body)"
                    .to_owned(),
            )
        };
    };
    let form = std::str::from_utf8(body).map_err(|_| "the search body is not UTF-8".to_owned())?;
    let params = parse_query(form.trim()).map_err(|error| format!("the search body: {error}"))?;
    request.params.extend(params);
    Ok(())
}

/// Parses forwarded JSON, off the async runtime when it is large (a Bundle may be).
async fn parse_json(body: &[u8]) -> Result<Value, String> {
    if body.len() <= BLOCKING_PARSE_BYTES {
        return serde_json::from_slice(body).map_err(|error| error.to_string());
    }
    let body = body.to_vec();
    tokio::task::spawn_blocking(move || {
        serde_json::from_slice(&body).map_err(|error| error.to_string())
    })
    .await
    .map_err(|_| "body parsing was cancelled".to_owned())?
}

/// Parses a forwarded resource, off the async runtime when it is large.
async fn parse_resource(body: &[u8]) -> Result<Resource, String> {
    let describe = |error: crate::fhir::facts::FactsError| format!("the request body: {error}");
    if body.len() <= BLOCKING_PARSE_BYTES {
        return Resource::from_json_bytes(body).map_err(describe);
    }
    let body = body.to_vec();
    tokio::task::spawn_blocking(move || Resource::from_json_bytes(&body).map_err(describe))
        .await
        .map_err(|_| "body parsing was cancelled".to_owned())?
}
