//! Protobuf <-> domain conversions. Malformed input becomes a [`Refusal`] here (the service
//! reports it and answers `INVALID_ARGUMENT`), before any decision; nothing in this file
//! decides anything.

use tonic::Status;

use super::pb;
use crate::authorize::{
    HttpLine, IF_NONE_EXIST_HEADER, Refusal, TreeBudget, Verdict, add_search_body_only, busy,
    headers_by_name, parse_off_runtime,
};
use crate::decision::{BundleDecision, BundleKind, Decision, Obligation, Outcome, Reason};
use crate::fhir::request_line::MAX_QUERY_PARAMS;
use crate::fhir::{
    CompartmentRef, FhirRequest, Interaction, Resource, ResourceFacts, SearchParam,
    validate_structured,
};
use crate::smart::{Scope, ScopeContext, ScopeSet};
use crate::token::{Authenticated, TokenError, TokenSource, VerifiedToken};

/// The FHIR request of a `CheckAccessRequest`, and its HTTP line when it came as one.
pub fn check_request(
    request: Option<&pb::check_access_request::Request>,
) -> Result<(FhirRequest, Option<HttpLine<'_>>), Refusal> {
    match request {
        Some(pb::check_access_request::Request::Fhir(fhir)) => {
            Ok((structured_request(fhir, "request")?, None))
        }
        Some(pb::check_access_request::Request::Http(http)) => http_request(http, "request"),
        None => Err(invalid("request: set exactly one of fhir or http")),
    }
}

/// The FHIR request of a `FilterResourcesRequest`, and its HTTP line when it came as one.
pub fn answered_request(
    request: Option<&pb::filter_resources_request::Request>,
) -> Result<(FhirRequest, Option<HttpLine<'_>>), Refusal> {
    match request {
        Some(pb::filter_resources_request::Request::Fhir(fhir)) => {
            Ok((structured_request(fhir, "request")?, None))
        }
        Some(pb::filter_resources_request::Request::Http(http)) => http_request(http, "request"),
        None => Err(invalid("request: set exactly one of fhir or http")),
    }
}

/// The FHIR request of a batch entry, and its HTTP line when it came as one.
pub fn entry_request<'m>(
    request: Option<&'m pb::batch_entry::Request>,
    field: &str,
) -> Result<(FhirRequest, Option<HttpLine<'m>>), Refusal> {
    match request {
        Some(pb::batch_entry::Request::Fhir(fhir)) => Ok((structured_request(fhir, field)?, None)),
        // A batch entry has no form body (FHIR R4 http.html §3.1.0.11): its POST search
        // is denied by the engine.
        // Nor a length of one: `content-length: 0` would have its POST search decided on the
        // query alone, where the engine denies a search whose parameters it cannot see.
        Some(pb::batch_entry::Request::Http(http))
            if !http.body.is_empty()
                || http
                    .headers
                    .keys()
                    .any(|name| name.eq_ignore_ascii_case("content-length")) =>
        {
            Err(invalid(format!(
                "{field}.http: a batch entry has no body (nor a content-length); search with GET"
            )))
        }
        Some(pb::batch_entry::Request::Http(http)) => http_request(http, field),
        None => Err(invalid(format!("{field}: set exactly one of fhir or http"))),
    }
}

/// An HTTP request line, read by the pipeline's rules, with the parameters of a `POST`
/// search's body. Header names are matched without case, as HTTP does; a name given twice
/// (in any case) is refused rather than guessed at.
pub(super) fn http_request<'m>(
    http: &'m pb::HttpRequest,
    field: &str,
) -> Result<(FhirRequest, Option<HttpLine<'m>>), Refusal> {
    let headers = headers_by_name(&http.headers)
        .map_err(|refusal| refusal.in_field(&format!("{field}.http.headers")))?;
    let line = HttpLine {
        method: &http.method,
        path: &http.path,
    };
    let named = headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()));
    let mut request = line
        .read(named)
        .map_err(|refusal| refusal.in_field(&format!("{field}.http")))?;
    add_search_body_only(&mut request, &http.body, |name| {
        headers.get(name).map(String::as_str)
    })
    .map_err(|refusal| refusal.in_field(&format!("{field}.http.body")))?;
    Ok((request, Some(line)))
}

/// A request header by its lower-case name, whatever the case it was given in.
fn header<'m>(http: &'m pb::HttpRequest, name: &str) -> Option<&'m str> {
    http.headers
        .iter()
        .find(|(given, _)| given.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}

/// The `If-None-Exist` header of a `CheckAccess` request given as an HTTP line.
pub fn if_none_exist(request: Option<&pb::check_access_request::Request>) -> Option<&str> {
    match request {
        Some(pb::check_access_request::Request::Http(http)) => header(http, IF_NONE_EXIST_HEADER),
        Some(pb::check_access_request::Request::Fhir(fhir)) => structured_if_none_exist(fhir),
        None => None,
    }
}

/// The `If-None-Exist` of a batch entry, as a header of its HTTP line or a field of its
/// structured request.
pub fn entry_if_none_exist(request: Option<&pb::batch_entry::Request>) -> Option<String> {
    match request {
        Some(pb::batch_entry::Request::Http(http)) => {
            header(http, IF_NONE_EXIST_HEADER).map(str::to_owned)
        }
        Some(pb::batch_entry::Request::Fhir(fhir)) => {
            structured_if_none_exist(fhir).map(str::to_owned)
        }
        None => None,
    }
}

/// A structured request's `if_none_exist`, when set. The pipeline decides it as the search
/// it is, as the header of an HTTP line: for a create only (a batch entry carrying one beside
/// another interaction is denied).
fn structured_if_none_exist(fhir: &pb::FhirRequest) -> Option<&str> {
    Some(fhir.if_none_exist.as_str()).filter(|query| !query.is_empty())
}

fn structured_request(fhir: &pb::FhirRequest, field: &str) -> Result<FhirRequest, Refusal> {
    let interaction = pb::Interaction::try_from(fhir.interaction)
        .ok()
        .and_then(interaction)
        .ok_or_else(|| invalid(format!("{field}.fhir.interaction: set a valid interaction")))?;
    // Checked before the request line is written out, so its size stays bounded.
    if fhir.params.len() > MAX_QUERY_PARAMS {
        return Err(invalid(format!(
            "{field}.fhir.params: at most {MAX_QUERY_PARAMS} parameters"
        )));
    }
    let compartment = match non_empty(&fhir.compartment) {
        None => None,
        Some(text) => Some(CompartmentRef::parse(&text).ok_or_else(|| {
            invalid(format!(
                "{field}.fhir.compartment: expected Type/id, got {text:?}"
            ))
        })?),
    };
    let request = FhirRequest {
        interaction,
        resource_type: non_empty(&fhir.resource_type),
        id: non_empty(&fhir.id),
        version_id: non_empty(&fhir.version_id),
        compartment,
        // One `$`, as in a request line: `$$everything` is no operation name.
        operation: non_empty(fhir.operation.strip_prefix('$').unwrap_or(&fhir.operation)),
        params: fhir
            .params
            .iter()
            .map(|param| SearchParam::new(param.name.clone(), param.value.clone()))
            .collect(),
        params_in_body: false,
    };
    // The same rules as the request line it stands for: the engine's one parser decides.
    validate_structured(&request).map_err(|error| invalid(format!("{field}.fhir: {error}")))
}

fn interaction(interaction: pb::Interaction) -> Option<Interaction> {
    use pb::Interaction as P;
    Some(match interaction {
        P::Unspecified => return None,
        P::Read => Interaction::Read,
        P::Vread => Interaction::Vread,
        P::Update => Interaction::Update,
        P::Patch => Interaction::Patch,
        P::Delete => Interaction::Delete,
        P::HistoryInstance => Interaction::HistoryInstance,
        P::HistoryType => Interaction::HistoryType,
        P::HistorySystem => Interaction::HistorySystem,
        P::Create => Interaction::Create,
        P::SearchType => Interaction::SearchType,
        P::SearchSystem => Interaction::SearchSystem,
        P::SearchCompartment => Interaction::SearchCompartment,
        P::Capabilities => Interaction::Capabilities,
        P::SmartConfiguration => Interaction::SmartConfiguration,
        P::Operation => Interaction::Operation,
    })
}

fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_owned())
}

/// A resource version: JSON (parsed off the runtime when large, its tree counted in
/// `budget`) or precomputed facts.
pub async fn resource(
    resource: Option<pb::Resource>,
    field: &str,
    budget: &mut TreeBudget,
) -> Result<Option<Resource>, Refusal> {
    let Some(resource) = resource else {
        return Ok(None);
    };
    // A `Resource` with neither member is what a client sends when it meant to give the
    // version and set the oneof wrong: deciding as if none were given would allow with
    // constraints what the version might deny.
    let Some(content) = resource.content else {
        return Err(invalid(format!("{field}: set json or facts")));
    };
    let resource = match content {
        pb::resource::Content::Json(bytes) => {
            parse_off_runtime(&bytes, budget, Resource::from_json_bytes_within).await?
        }
        pb::resource::Content::Facts(facts) => return facts_resource(facts, field).map(Some),
    };
    resource
        .map(Some)
        .map_err(|error| invalid(format!("{field}.json: {error}")))
}

/// The bytes of JSON a resource version carries (none for facts).
pub fn json_bytes(resource: Option<&pb::Resource>) -> usize {
    match resource.and_then(|resource| resource.content.as_ref()) {
        Some(pb::resource::Content::Json(bytes)) => bytes.len(),
        _ => 0,
    }
}

/// A request that cannot be read: `INVALID_ARGUMENT`.
fn invalid(message: impl Into<String>) -> Refusal {
    Refusal::InvalidRequest(message.into())
}

fn facts_resource(facts: pb::ResourceFacts, field: &str) -> Result<Resource, Refusal> {
    let compartments = facts
        .compartments
        .iter()
        .map(|text| {
            CompartmentRef::parse(text).ok_or_else(|| {
                invalid(format!(
                    "{field}.facts.compartments: expected Type/id, got {text:?}"
                ))
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(Resource::Facts(ResourceFacts {
        compartments,
        search_values: facts
            .search_values
            .into_iter()
            .map(|param| SearchParam::new(param.name, param.value))
            .collect(),
    }))
}

pub fn bundle_kind(bundle_type: i32) -> Result<BundleKind, Refusal> {
    match pb::BundleType::try_from(bundle_type) {
        Ok(pb::BundleType::Batch) => Ok(BundleKind::Batch),
        Ok(pb::BundleType::Transaction) => Ok(BundleKind::Transaction),
        _ => Err(invalid("bundle_type: set BATCH or TRANSACTION")),
    }
}

/// The answer of `CheckAccess`: a token refusal is a deny with the token's reason; any
/// other refusal is a gRPC error with the refusal's code.
pub fn check_response(verdict: Verdict<Decision>) -> Result<pb::CheckAccessResponse, Status> {
    match verdict {
        Verdict::Public(decision) => Ok(decision_response(decision)),
        Verdict::Refused(Refusal::Token(error)) => Ok(token_denied(&error)),
        Verdict::Refused(refusal) => Err(refusal_status(&refusal)),
        Verdict::Decided { decision, token } => {
            let mut response = decision_response(decision);
            response.subject = Some(subject(&token));
            Ok(response)
        }
    }
}

/// The answer of `BatchCheckAccess`, as [`check_response`].
pub fn bundle_check_response(
    verdict: Verdict<BundleDecision>,
) -> Result<pb::BatchCheckAccessResponse, Status> {
    match verdict {
        Verdict::Public(decision) => Ok(bundle_response(decision, None)),
        Verdict::Refused(Refusal::Token(error)) => Ok(bundle_token_denied(&error)),
        Verdict::Refused(refusal) => Err(refusal_status(&refusal)),
        Verdict::Decided { decision, token } => {
            Ok(bundle_response(decision, Some(subject(&token))))
        }
    }
}

/// A refusal as the gRPC error of a call.
pub fn refusal_status(refusal: &Refusal) -> Status {
    match refusal {
        // Marked retryable, as every refusal for load is.
        Refusal::Overloaded(message) => busy(message.clone()),
        _ => Status::new(refusal.status().grpc, refusal.to_string()),
    }
}

/// The response for a decision of the engine.
fn decision_response(decision: Decision) -> pb::CheckAccessResponse {
    pb::CheckAccessResponse {
        decision: outcome(decision.outcome) as i32,
        reason: reason(decision.reason) as i32,
        message: decision.message,
        grants: decision.grants.into_iter().map(grant).collect(),
        subject: None,
        ignored_scopes: decision
            .ignored_scopes
            .into_iter()
            .map(|ignored| pb::IgnoredScope {
                scope: ignored.scope,
                reason: ignored.reason,
            })
            .collect(),
        include_readable_types: decision
            .included_resources
            .map(|included| included.readable_types)
            .unwrap_or_default(),
        // Set by the service from the request.
        request_id: String::new(),
    }
}

/// The response for a refused token: a deny with the token's reason, and nothing else.
fn token_denied(error: &TokenError) -> pb::CheckAccessResponse {
    pb::CheckAccessResponse {
        decision: pb::Decision::Deny as i32,
        reason: token_reason(error) as i32,
        message: format!("denied: {error}"),
        ..pb::CheckAccessResponse::default()
    }
}

fn bundle_response(
    decision: BundleDecision,
    subject: Option<pb::Subject>,
) -> pb::BatchCheckAccessResponse {
    pb::BatchCheckAccessResponse {
        decision: outcome(decision.outcome) as i32,
        reason: reason(decision.reason) as i32,
        message: decision.message,
        entries: decision
            .entries
            .into_iter()
            .map(decision_response)
            .collect(),
        subject,
        request_id: String::new(),
    }
}

fn bundle_token_denied(error: &TokenError) -> pb::BatchCheckAccessResponse {
    pb::BatchCheckAccessResponse {
        decision: pb::Decision::Deny as i32,
        reason: token_reason(error) as i32,
        message: format!("denied: {error}"),
        ..pb::BatchCheckAccessResponse::default()
    }
}

pub(super) fn outcome(outcome: Outcome) -> pb::Decision {
    match outcome {
        Outcome::Allow => pb::Decision::Allow,
        Outcome::Deny => pb::Decision::Deny,
    }
}

pub(super) fn reason(reason: Reason) -> pb::Reason {
    match reason {
        Reason::Unspecified => pb::Reason::Unspecified,
        Reason::Granted => pb::Reason::Granted,
        Reason::PublicEndpoint => pb::Reason::PublicEndpoint,
        Reason::NoMatchingScope => pb::Reason::NoMatchingScope,
        Reason::MissingPatientContext => pb::Reason::MissingPatientContext,
        Reason::MissingUserIdentity => pb::Reason::MissingUserIdentity,
        Reason::OutsideCompartment => pb::Reason::OutsideCompartment,
        Reason::FilterMismatch => pb::Reason::FilterMismatch,
        Reason::UnsupportedRequest => pb::Reason::UnsupportedRequest,
    }
}

pub(super) fn token_reason(error: &TokenError) -> pb::Reason {
    match error {
        TokenError::Missing => pb::Reason::TokenMissing,
        TokenError::Malformed(_) => pb::Reason::TokenMalformed,
        TokenError::BadSignature(_) => pb::Reason::TokenBadSignature,
        TokenError::WrongIssuer(_) => pb::Reason::TokenWrongIssuer,
        TokenError::WrongAudience => pb::Reason::TokenWrongAudience,
        TokenError::Expired => pb::Reason::TokenExpired,
        TokenError::NotYetValid => pb::Reason::TokenNotYetValid,
        TokenError::Inactive => pb::Reason::TokenInactive,
    }
}

fn grant(grant: crate::decision::Grant) -> pb::Grant {
    pb::Grant {
        scope: grant.scope,
        context: scope_context(grant.context) as i32,
        compartment: grant.compartment.unwrap_or_default(),
        compartment_params: grant.compartment_params,
        exclude_other_patients_via: grant.exclude_other_patients_via,
        answer_must_be_read: grant.answer_must_be_read,
        filters: grant
            .filters
            .into_iter()
            .map(|item| pb::Filter {
                param: item.param,
                values: item.values,
            })
            .collect(),
        resource_types: grant.resource_types,
        obligation: match grant.obligation {
            Obligation::None => pb::Obligation::None,
            Obligation::UserPermissions => pb::Obligation::UserPermissions,
            Obligation::ClientPolicy => pb::Obligation::ClientPolicy,
        } as i32,
    }
}

fn scope_context(context: ScopeContext) -> pb::ScopeContext {
    match context {
        ScopeContext::Patient => pb::ScopeContext::Patient,
        ScopeContext::User => pb::ScopeContext::User,
        ScopeContext::System => pb::ScopeContext::System,
    }
}

/// Who the verified token speaks for.
pub(super) fn subject(token: &VerifiedToken) -> pb::Subject {
    let context = &token.context;
    pb::Subject {
        client_id: context.client_id.clone().unwrap_or_default(),
        sub: context.sub.clone().unwrap_or_default(),
        fhir_user: context.fhir_user.clone().unwrap_or_default(),
        patient: context.patient.clone().unwrap_or_default(),
        encounter: context.encounter.clone().unwrap_or_default(),
        scope: context.scopes.to_scope_string(),
        expires_at: token.expires_at.unwrap_or_default(),
    }
}

/// RFC 7662 §2.2 and SMART token-introspection fields of an active token.
pub fn introspection(authenticated: &Authenticated) -> pb::IntrospectTokenResponse {
    let token = &authenticated.token;
    let claims = &token.claims;
    let text = |value: &Option<Box<str>>| value.as_deref().unwrap_or_default().to_owned();
    let context = &token.context;
    pb::IntrospectTokenResponse {
        active: true,
        scope: context.scopes.to_scope_string(),
        client_id: context.client_id.clone().unwrap_or_default(),
        sub: context.sub.clone().unwrap_or_default(),
        iss: token.issuer.clone(),
        aud: token.audiences.clone(),
        exp: token.expires_at.unwrap_or_default(),
        iat: claims.iat.unwrap_or_default(),
        nbf: claims.nbf.unwrap_or_default(),
        jti: text(&claims.jti),
        token_type: claims
            .token_type
            .as_deref()
            .filter(|kind| !kind.is_empty())
            .unwrap_or("Bearer")
            .to_owned(),
        patient: context.patient.clone().unwrap_or_default(),
        encounter: context.encounter.clone().unwrap_or_default(),
        fhir_user: context.fhir_user.clone().unwrap_or_default(),
        fhir_context: claims
            .fhir_context
            .iter()
            .map(|item| item.to_string())
            .collect(),
        need_patient_banner: claims.need_patient_banner.unwrap_or_default(),
        intent: text(&claims.intent),
        tenant: text(&claims.tenant),
        smart_style_url: text(&claims.smart_style_url),
        scopes: parsed_scopes(&context.scopes),
        ignored_scopes: context
            .scopes
            .invalid()
            .map(|(scope, error)| pb::IgnoredScope {
                scope: scope.to_owned(),
                reason: error.to_string(),
            })
            .collect(),
        source: match token.source {
            TokenSource::LocalJwt => pb::TokenSource::LocalJwt,
            TokenSource::RemoteIntrospection => pb::TokenSource::RemoteIntrospection,
        } as i32,
        cached: authenticated.cached,
        request_id: String::new(),
    }
}

fn parsed_scopes(scopes: &ScopeSet) -> Vec<pb::ParsedScope> {
    scopes
        .entries()
        .iter()
        .map(|entry| match &entry.parsed {
            Ok(scope) => pb::ParsedScope {
                scope: entry.text.clone(),
                kind: scope.kind().to_owned(),
                canonical: match scope {
                    Scope::Resource(resource) => resource.canonical(),
                    _ => String::new(),
                },
                error: String::new(),
            },
            Err(error) => pb::ParsedScope {
                scope: entry.text.clone(),
                kind: "invalid".to_owned(),
                canonical: String::new(),
                error: error.to_string(),
            },
        })
        .collect()
}
