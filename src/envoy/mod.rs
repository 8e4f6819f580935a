//! The service-mesh face: Envoy's `envoy.service.auth.v3.Authorization/Check` (ext_authz),
//! served on the same port and deciding through the same [`Authorizer`] pipeline as
//! `CheckAccess`. Envoy or Istio forward each HTTP request's attributes; the answer lets the
//! request through with `x-smart-*` headers, or denies it with 401/403 and a FHIR
//! `OperationOutcome`. See docs/envoy.md for proxy configuration.
//!
//! This face only decodes: the path into a FHIR base and request, the forwarded body into a
//! resource, a Bundle's entries or search parameters; and encodes the verdict.
//!
//! [`EnvoyProcessor`] is Envoy's other filter on the same port, ext_proc: it filters the
//! FHIR server's answers on their way back (docs/response-filtering.md).

mod processor;
mod response;

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use envoy_types::ext_authz::v3::pb::{Authorization, CheckRequest, CheckResponse};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::HttpRequest;
use serde_json::Value;
use tonic::{Request, Response, Status};
use tracing::Span;

pub use self::processor::{EnvoyProcessor, WITHHELD_HEADER};
pub use self::response::{
    CLIENT_ID_HEADER, CONSTRAINTS_HEADER, FHIR_USER_HEADER, PATIENT_HEADER, SCOPES_HEADER,
    SUB_HEADER,
};
use crate::authorize::{
    Admission, Admitted, Authorizer, Call, Caller, HttpLine, IF_NONE_EXIST_HEADER, MessageHeld,
    Refusal, TreeBudget, Verdict, add_search_body, batch_size_refusal, between_entries,
    headers_by_name, parse_off_runtime, request_id,
};
use crate::config::EnvoyConfig;
use crate::decision::{Decision, open_bundle, read_entry};
use crate::fhir::{FhirRequest, FhirVersion, Interaction, Resource, parse_strict_within};
use crate::telemetry::{self, Rpc, traces};

/// The ext_authz service.
#[derive(Clone)]
pub struct EnvoyAuthz {
    narrow_searches: bool,
    server_checks_writes: bool,
    authorizer: Arc<Authorizer>,
}

impl EnvoyAuthz {
    /// The face of `authorizer`, whose servers' `envoy_prefixes` (or `[envoy] bases`) route
    /// each request.
    pub fn new(config: &EnvoyConfig, authorizer: Arc<Authorizer>) -> Self {
        EnvoyAuthz {
            narrow_searches: config.narrow_searches,
            server_checks_writes: config.server_checks_writes,
            authorizer,
        }
    }

    async fn decide(
        &self,
        caller: &Caller,
        held: MessageHeld,
        http: &HttpRequest,
        span: &Span,
    ) -> Result<CheckResponse, Status> {
        let call = Call::new(Rpc::EnvoyCheck, span);
        let raw_token = http
            .headers
            .get("authorization")
            .map(String::as_str)
            .unwrap_or_default();
        // `x-request-id`, which Envoy generates or keeps; its `request.http.id` attribute is
        // the same value, and stands in when `allowed_headers` hides the header.
        let id = http
            .headers
            .get("x-request-id")
            .map_or(http.id.as_str(), String::as_str);
        let call = match request_id(id) {
            Ok(id) => call.with_request_id(id),
            Err(refusal) => return Ok(self.refuse(call, raw_token, None, refusal)),
        };
        let (server, relative) = match self.authorizer.server_routed(
            call,
            caller,
            authority(http),
            &http.path,
            raw_token,
        ) {
            Ok(routed) => routed,
            Err(refusal) => return Ok(response::refused(&refusal)),
        };
        let call = call.for_server(server);
        let line = HttpLine {
            method: &http.method,
            path: relative,
        };
        let headers = http
            .headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()));
        let mut request = match line.read(headers) {
            Ok(request) => request,
            Err(refusal) => return Ok(self.refuse(call, raw_token, None, refusal)),
        };
        // The token first: no body is parsed for a caller without a valid one.
        let admission = self
            .authorizer
            .admit(call, server, raw_token, Some(&request), Some(line))
            .await?;
        let admitted = match admission {
            Admission::Public(decision) => {
                return Ok(response::allowed(&decision, None, &http.headers, None));
            }
            Admission::Refused(refusal) => return Ok(response::refused(&refusal)),
            Admission::Admitted(admitted) => admitted,
        };
        let body = request_body(http);
        // The trees parsed from the body, held until the call is answered.
        let mut tree = self.authorizer.tree_budget();
        tree.holding(held.0.max(body.map_or(0, <[u8]>::len)));
        // `POST [type]/_search` carries its parameters in the body: read after the token.
        // Only with its length declared: a form Envoy cut at exactly `max_request_bytes`
        // looks whole without one ([`body_truncated`]), and the rest of it (`&patient=...`)
        // would reach the server unjudged.
        let declared = http.headers.contains_key("content-length");
        // A form cut short is no empty one, whatever length it declares.
        if request.has_unread_search_body() && body_truncated(http) {
            let refusal = Refusal::BodyRequired(
                "a search is decided on its whole form body: raise with_request_body.max_request_bytes".to_owned(),
            );
            return Ok(answer_refusal(admitted, &request, refusal));
        }
        if request.has_unread_search_body() && body.is_some() && !declared {
            let refusal = Refusal::BodyRequired(
                "a search's form body must declare its content-length: without one, a body cut at with_request_body.max_request_bytes cannot be told from a whole one".to_owned(),
            );
            return Ok(answer_refusal(admitted, &request, refusal));
        }
        let search_body = add_search_body(&mut request, body.unwrap_or_default(), |name| {
            http.headers.get(name).map(String::as_str)
        });
        if let Err(refusal) = search_body {
            return Ok(answer_refusal(admitted, &request, refusal));
        }
        if request.interaction == Interaction::Batch {
            let checked = self.server_checks_writes;
            return Ok(decide_bundle(admitted, &request, body, http, checked, &mut tree).await);
        }
        // A write is decided on its whole body: a truncated one cannot show a second
        // patient or a conditional reference, which no constraint can stand in for.
        if body_truncated(http)
            && matches!(
                request.interaction,
                Interaction::Create | Interaction::Update | Interaction::Patch
            )
        {
            let refusal = Refusal::BodyRequired(
                "a write is decided on its whole body: raise with_request_body.max_request_bytes"
                    .to_owned(),
            );
            return Ok(answer_refusal(admitted, &request, refusal));
        }
        let proposed = match (request.interaction, body) {
            (Interaction::Create | Interaction::Update, Some(body)) => {
                match parse_resource(body, &mut tree).await {
                    Ok(resource) => Some(resource),
                    Err(refusal) => return Ok(answer_refusal(admitted, &request, refusal)),
                }
            }
            _ => None,
        };
        // A patch's document may write a conditional reference (docs/semantics.md): read as
        // a create's resource is. One that is not JSON (an XML patch) cannot be read.
        let patch = match (request.interaction, body) {
            (Interaction::Patch, Some(body)) => {
                let what = "a patch is decided on its JSON document (JSON Patch or FHIRPath Patch)";
                match parse_json(body, &mut tree, what).await {
                    Ok(document) => Some(document),
                    Err(refusal) => return Ok(answer_refusal(admitted, &request, refusal)),
                }
            }
            _ => None,
        };
        let if_none_exist = http.headers.get(IF_NONE_EXIST_HEADER).map(String::as_str);
        let verdict = admitted.decide(
            &request,
            None,
            proposed.as_ref(),
            patch.as_ref(),
            if_none_exist,
        );
        Ok(match verdict {
            Verdict::Decided { decision, token }
                if self.leaves_a_write_unchecked(&request, &decision) =>
            {
                response::write_unchecked(&decision, Some(&token))
            }
            Verdict::Decided { decision, token } if decision.is_allowed() => {
                let narrowing = self.narrowing(&request, &decision, server.engine().fhir_version());
                response::allowed(&decision, Some(&token), &http.headers, narrowing)
            }
            Verdict::Decided { decision, token } => {
                response::decision_denied(&decision, Some(&token))
            }
            Verdict::Public(decision) => response::allowed(&decision, None, &http.headers, None),
            Verdict::Refused(refusal) => response::refused(&refusal),
        })
    }

    /// Whether `decision` allows a write only under constraints on the resource that the FHIR
    /// server would have to check, and it does not (`[envoy] server_checks_writes`).
    fn leaves_a_write_unchecked(&self, request: &FhirRequest, decision: &Decision) -> bool {
        !self.server_checks_writes
            && request.interaction.is_write()
            && decision.is_constrained_allow()
    }

    /// Reports a refusal found while decoding, and answers it.
    fn refuse(
        &self,
        call: Call<'_>,
        raw_token: &str,
        request: Option<&FhirRequest>,
        refusal: Refusal,
    ) -> CheckResponse {
        self.authorizer.refused(call, raw_token, request, &refusal);
        response::refused(&refusal)
    }

    /// For a type search whose every grant carries one Patient compartment: the query
    /// parameter that limits the search to it (`patient=123`, or `_id=123` on Patient).
    fn narrowing(
        &self,
        request: &FhirRequest,
        decision: &Decision,
        version: FhirVersion,
    ) -> Option<(&'static str, String)> {
        if !self.narrow_searches || request.interaction != Interaction::SearchType {
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

    /// An `async move` block, not an `async fn`, so the request is held once
    /// (rust-lang/rust#62958).
    #[allow(
        clippy::manual_async_fn,
        reason = "an `async fn` would hold its argument twice"
    )]
    fn check_observed(
        &self,
        caller: Caller,
        held: MessageHeld,
        check: CheckRequest,
        span: Span,
    ) -> impl Future<Output = Result<Response<CheckResponse>, Status>> + Send + '_ {
        async move {
            let call = || Call::new(Rpc::EnvoyCheck, &span);
            let Some(given) = http_of(&check) else {
                let refusal =
                    Refusal::InvalidRequest("the CheckRequest carries no HTTP request".to_owned());
                return Ok(Response::new(self.refuse(call(), "", None, refusal)));
            };
            let folded = match headers_by_name(&given.headers) {
                Ok(Cow::Borrowed(_)) => None,
                // Not as Envoy sends them (a caller of its API): read as every face reads them.
                Ok(Cow::Owned(headers)) => Some(Box::new(HttpRequest {
                    headers,
                    ..given.clone()
                })),
                Err(refusal) => return Ok(Response::new(self.refuse(call(), "", None, refusal))),
            };
            let http = folded.as_deref().unwrap_or(given);
            let response = self.decide(&caller, held, http, &span).await?;
            Ok(Response::new(response))
        }
    }
}

/// The HTTP request a `CheckRequest` asks about, if it carries one.
fn http_of(check: &CheckRequest) -> Option<&HttpRequest> {
    check
        .attributes
        .as_ref()
        .and_then(|attributes| attributes.request.as_ref())
        .and_then(|request| request.http.as_ref())
}

/// Written without `#[async_trait]`, as the gRPC face's methods are (`grpc::service`): the
/// observed call is boxed directly, not inside an `async` block that holds it beside the
/// request.
impl Authorization for EnvoyAuthz {
    fn check<'s, 'f>(
        &'s self,
        request: Request<CheckRequest>,
    ) -> Pin<Box<dyn Future<Output = Result<Response<CheckResponse>, Status>> + Send + 'f>>
    where
        's: 'f,
        Self: 'f,
    {
        let (metadata, extensions, check) = request.into_parts();
        let caller = Caller::of(&extensions);
        let held = extensions.get::<MessageHeld>().copied().unwrap_or_default();
        let span = traces::rpc_span_with_headers(
            Rpc::EnvoyCheck,
            &metadata,
            http_of(&check).map(|http| &http.headers),
        );
        let call = self.check_observed(caller, held, check, span.clone());
        Box::pin(telemetry::observe(Rpc::EnvoyCheck, span, call))
    }
}

/// A request the face could not read once the token was known: reported with the token's
/// context, answered with the refusal's status.
fn answer_refusal(
    admitted: Admitted<'_>,
    request: &FhirRequest,
    refusal: Refusal,
) -> CheckResponse {
    let answer = response::refused(&refusal);
    admitted.refuse(Some(request), refusal);
    answer
}

/// A batch or transaction: its entries come from the forwarded body.
async fn decide_bundle(
    admitted: Admitted<'_>,
    request: &FhirRequest,
    body: Option<&[u8]>,
    http: &HttpRequest,
    server_checks_writes: bool,
    tree: &mut TreeBudget,
) -> CheckResponse {
    let Some(body) = body else {
        let refusal = Refusal::BodyRequired(
            "a batch or transaction is decided entry by entry: forward the body (with_request_body)"
                .to_owned(),
        );
        return answer_refusal(admitted, request, refusal);
    };
    let bundle = match parse_json(body, tree, "the Bundle is not JSON").await {
        Ok(bundle) => bundle,
        Err(refusal) => return answer_refusal(admitted, request, refusal),
    };
    let (kind, unread) = match open_bundle(bundle) {
        Ok(opened) => opened,
        Err(error) => {
            return answer_refusal(
                admitted,
                request,
                Refusal::InvalidRequest(error.to_string()),
            );
        }
    };
    // Counted before the entries are read: 10,000 is the limit, a 4 MB body holds a million.
    if let Some(refusal) =
        batch_size_refusal(unread.len()).or_else(|| tree.take_entries(unread.len()).err())
    {
        return answer_refusal(admitted, request, refusal);
    }
    let mut entries = Vec::with_capacity(unread.len());
    for entry in unread {
        entries.push(read_entry(entry, tree));
        between_entries().await;
    }
    // A patch document the budget refused is the call's refusal, not its entry's.
    if let Some(refusal) = tree.refusal() {
        return answer_refusal(admitted, request, refusal);
    }
    let (decision, token) = match admitted.decide_bundle(Some(request), kind, &entries).await {
        Verdict::Decided { decision, token } => (decision, token),
        Verdict::Refused(refusal) => return response::refused(&refusal),
        // A Bundle is never public: fail closed should that ever change.
        Verdict::Public(_) => {
            let refusal = Refusal::InvalidRequest("a batch is never public".to_owned());
            return response::refused(&refusal);
        }
    };
    // Allowed only as the engine's whole answer: every entry decided and allowed (an empty
    // Bundle is a deny).
    let every_entry_allowed =
        !decision.entries.is_empty() && decision.entries.iter().all(Decision::is_allowed);
    // A write entry allowed only under constraints the server does not check.
    let unchecked = entries
        .iter()
        .zip(&decision.entries)
        .find(|(entry, decided)| {
            entry
                .request
                .as_ref()
                .is_ok_and(|request| request.interaction.is_write())
                && decided.is_constrained_allow()
        });
    if let Some((_, decided)) = unchecked.filter(|_| !server_checks_writes) {
        return response::write_unchecked(decided, Some(&token));
    }
    if decision.is_allowed() && every_entry_allowed {
        return response::allowed_bundle(&decision, &token, &http.headers);
    }
    let mut denied = decision
        .entries
        .iter()
        .find(|entry| !entry.is_allowed())
        .cloned()
        .unwrap_or_else(|| Decision::deny(decision.reason, decision.message.clone()));
    denied.message = decision.message.clone();
    response::decision_denied(&denied, Some(&token))
}

/// The request's `:authority`: Envoy's `host` attribute, or the header when a client of the
/// face left the attribute out.
fn authority(http: &HttpRequest) -> &str {
    if http.host.is_empty() {
        http.headers
            .get(":authority")
            .map(String::as_str)
            .unwrap_or_default()
    } else {
        &http.host
    }
}

/// The forwarded body, unless Envoy truncated it (`allow_partial_message`): a partial
/// resource proves nothing, so the decision then carries the constraints instead.
fn request_body(http: &HttpRequest) -> Option<&[u8]> {
    let body = forwarded_body(http);
    (!body.is_empty() && !body_truncated(http)).then_some(body)
}

fn forwarded_body(http: &HttpRequest) -> &[u8] {
    if http.raw_body.is_empty() {
        http.body.as_bytes()
    } else {
        http.raw_body.as_slice()
    }
}

/// Whether Envoy forwarded less than the whole body: it says so (`allow_partial_message`
/// sets `x-envoy-auth-partial-body: true`), or the length the request declares
/// (`content-length`) is not what came. Envoy asks as soon as `max_request_bytes` have
/// arrived, and marks a body cut there as whole when nothing more had arrived yet: the rest
/// of a search's form (`&patient=Patient%2F456`) would reach the server unjudged. With no
/// body forwarded at all (`with_request_body` unset) there is nothing to be partial.
fn body_truncated(http: &HttpRequest) -> bool {
    let flagged = http
        .headers
        .get("x-envoy-auth-partial-body")
        .is_some_and(|value| value == "true");
    let forwarded = forwarded_body(http).len();
    let declared = http
        .headers
        .get("content-length")
        .map(|length| length.trim().parse::<usize>());
    flagged || (forwarded > 0 && declared.is_some_and(|declared| declared != Ok(forwarded)))
}

/// Parses forwarded JSON (a Bundle may be large), its tree counted in `tree`; `what` leads
/// the refusal of a body that is not JSON.
async fn parse_json(body: &[u8], tree: &mut TreeBudget, what: &str) -> Result<Value, Refusal> {
    parse_off_runtime(body, tree, parse_strict_within)
        .await?
        .map_err(|error| Refusal::InvalidRequest(format!("{what}: {error}")))
}

/// Parses a forwarded resource, its tree counted in `tree`.
async fn parse_resource(body: &[u8], tree: &mut TreeBudget) -> Result<Resource, Refusal> {
    parse_off_runtime(body, tree, Resource::from_json_bytes_within)
        .await?
        .map_err(|error| Refusal::InvalidRequest(format!("the request body: {error}")))
}
