//! The ext_authz answers: an `OkHttpResponse` that tells the FHIR server who is asking and
//! what it must still enforce, or a `DeniedHttpResponse` with a FHIR `OperationOutcome`.
//! Either way the answer carries `dynamic_metadata` (see [`metadata`]), which Envoy keeps
//! under the filter's name (`envoy.filters.http.ext_authz`) for its access log and the
//! filters after it.

use std::collections::HashMap;

use envoy_types::ext_authz::v3::pb::{CheckResponse, HeaderAppendAction, HttpStatusCode};
use envoy_types::ext_authz::v3::{
    CheckResponseExt, DeniedHttpResponseBuilder, OkHttpResponseBuilder,
};
use envoy_types::pb::google::protobuf::{Struct, Value as ProtoValue, value::Kind};
use serde::Serialize;
use serde_json::json;

use crate::authorize::{GRANTS_NOT_ENFORCED, Refusal, Status, decision_status};
use crate::decision::Outcome;
use crate::decision::{BundleDecision, Decision, Grant, Reason};
use crate::token::{TokenError, VerifiedToken};

/// Headers the service sets for the FHIR server; a client may never send them itself.
pub const PATIENT_HEADER: &str = "x-smart-patient";
pub const CLIENT_ID_HEADER: &str = "x-smart-client-id";
pub const FHIR_USER_HEADER: &str = "x-smart-fhir-user";
/// The token's `sub`: whose permissions a `user/` grant names when the policy reads the user
/// from `sub` (`user_from_sub`, no `fhirUser`).
pub const SUB_HEADER: &str = "x-smart-sub";
pub const SCOPES_HEADER: &str = "x-smart-scopes";
/// The decision's grants (the constraints) as compact JSON.
pub const CONSTRAINTS_HEADER: &str = "x-smart-constraints";
/// The headers the service always sets or removes.
const FIXED_HEADERS: [&str; 6] = [
    PATIENT_HEADER,
    CLIENT_ID_HEADER,
    FHIR_USER_HEADER,
    SUB_HEADER,
    SCOPES_HEADER,
    CONSTRAINTS_HEADER,
];
/// Every header starting with this prefix is the service's to set.
pub const SMART_HEADER_PREFIX: &str = "x-smart-";

/// An allow: set the `x-smart-*` headers from the token and decision, overwriting and
/// removing whatever the client sent under that prefix, and narrow the query if asked.
pub fn allowed(
    decision: &Decision,
    token: Option<&VerifiedToken>,
    client_headers: &HashMap<String, String>,
    narrowing: Option<(&str, String)>,
) -> CheckResponse {
    let constraints = Constraints {
        reason: decision.reason,
        grants: &decision.grants,
        include_readable_types: decision
            .included_resources
            .as_ref()
            .map(|included| included.readable_types.as_slice()),
    };
    let Some(constraints) = compact_json(&constraints) else {
        return unwritable_constraints();
    };
    let mut response = allowed_with(constraints, token, client_headers, narrowing);
    response.dynamic_metadata = Some(metadata(Outcome::Allow, decision.reason.as_str(), token));
    response
}

/// An allowed batch or transaction: the constraints header lists each entry's grants.
pub fn allowed_bundle(
    decision: &BundleDecision,
    token: &VerifiedToken,
    client_headers: &HashMap<String, String>,
) -> CheckResponse {
    #[derive(Serialize)]
    struct Entry<'a> {
        grants: &'a [Grant],
    }
    #[derive(Serialize)]
    struct BundleConstraints<'a> {
        reason: Reason,
        entries: Vec<Entry<'a>>,
    }
    let constraints = BundleConstraints {
        reason: decision.reason,
        entries: decision
            .entries
            .iter()
            .map(|entry| Entry {
                grants: &entry.grants,
            })
            .collect(),
    };
    let Some(constraints) = compact_json(&constraints) else {
        return unwritable_constraints();
    };
    let mut response = allowed_with(constraints, Some(token), client_headers, None);
    response.dynamic_metadata = Some(metadata(
        Outcome::Allow,
        decision.reason.as_str(),
        Some(token),
    ));
    response
}

fn allowed_with(
    constraints: String,
    token: Option<&VerifiedToken>,
    client_headers: &HashMap<String, String>,
    narrowing: Option<(&str, String)>,
) -> CheckResponse {
    let mut ok = OkHttpResponseBuilder::new();
    let context = token.map(|token| &token.context);
    let values = [
        (
            PATIENT_HEADER,
            context.and_then(|context| context.patient.clone()),
        ),
        (
            CLIENT_ID_HEADER,
            context.and_then(|context| context.client_id.clone()),
        ),
        (
            FHIR_USER_HEADER,
            context.and_then(|context| context.fhir_user.clone()),
        ),
        (SUB_HEADER, context.and_then(|context| context.sub.clone())),
        (
            SCOPES_HEADER,
            context.map(|context| context.scopes.to_scope_string()),
        ),
        (CONSTRAINTS_HEADER, Some(constraints)),
    ];
    for (name, value) in values {
        match value.filter(|value| !value.is_empty()) {
            Some(value) => {
                ok.add_header(
                    name,
                    value,
                    Some(HeaderAppendAction::OverwriteIfExistsOrAdd),
                    false,
                );
            }
            // Removed whether or not Envoy forwarded it to us (`allowed_headers` may hide
            // it): a client can never supply a header the service leaves unset.
            None => {
                ok.remove_header(name);
            }
        }
    }
    // No spoofing: drop every other `x-smart-*` header the client sent (the fixed ones are
    // set or removed above).
    for name in client_headers.keys() {
        let is_fixed = FIXED_HEADERS
            .iter()
            .any(|fixed| fixed.eq_ignore_ascii_case(name));
        if reads_as_smart_header(name) && !is_fixed {
            ok.remove_header(name.clone());
        }
    }
    if let Some((name, value)) = narrowing {
        ok.set_query_parameter(name, value);
    }
    let mut response = CheckResponse::with_status(tonic::Status::ok(""));
    response.set_http_response(ok);
    response
}

/// Whether a server may read `name` as an `x-smart-*` header: without case (names arrive
/// lower-cased from Envoy; compared without case anyway), and with `_` as `-`, as CGI, WSGI
/// and PHP servers read it (`x_smart_patient` is `x-smart-patient` to them). Checked byte by
/// byte: this runs for every header of every allowed request.
fn reads_as_smart_header(name: &str) -> bool {
    name.len() >= SMART_HEADER_PREFIX.len()
        && name
            .bytes()
            .zip(SMART_HEADER_PREFIX.bytes())
            .all(|(given, prefix)| {
                given.to_ascii_lowercase() == prefix || (given == b'_' && prefix == b'-')
            })
}

/// The grants and the include rule: the `x-smart-constraints` header, written straight
/// from the decision rather than through a `serde_json::Value` tree (which `json!` builds
/// and unwraps: a panic path on every allow).
#[derive(Serialize)]
struct Constraints<'a> {
    reason: Reason,
    grants: &'a [Grant],
    #[serde(skip_serializing_if = "Option::is_none")]
    include_readable_types: Option<&'a [String]>,
}

fn compact_json(value: &impl Serialize) -> Option<String> {
    serde_json::to_string(value).ok()
}

/// Never an allow without its constraints: the FHIR server would not know to apply them.
/// (Unreachable with the engine's types, which always serialize.)
fn unwritable_constraints() -> CheckResponse {
    let message = "the constraints of the allow could not be written";
    tracing::error!(message);
    let mut response = denied(
        Status {
            http: 403,
            grpc: tonic::Code::Internal,
        },
        None,
        "exception",
        message,
    );
    response.dynamic_metadata = Some(metadata(Outcome::Deny, "internal", None));
    response
}

/// A refusal of the pipeline: a refused token, or a request that cannot be judged.
pub fn refused(refusal: &Refusal) -> CheckResponse {
    let mut response = refused_without_metadata(refusal);
    response.dynamic_metadata = Some(metadata(Outcome::Deny, refusal.as_str(), None));
    response
}

fn refused_without_metadata(refusal: &Refusal) -> CheckResponse {
    match refusal {
        Refusal::Token(error) => token_denied(error),
        // The proxy's certificate, not the app's request, is refused: the app is told no
        // more than that (the details are logged and audited).
        Refusal::CallerUnauthenticated | Refusal::CallerNotAllowed(_) => denied(
            refusal.status(),
            None,
            "forbidden",
            "the proxy may not ask for decisions about this request",
        ),
        other => {
            let status = other.status();
            // FHIR R4 valueset-issue-type.html.
            let issue_code = match status.http {
                400 => "invalid",
                413 => "too-costly",
                503 => "transient",
                _ => "forbidden",
            };
            denied(status, None, issue_code, &other.to_string())
        }
    }
}

/// The `WWW-Authenticate` challenge of a refused token, on both Envoy faces (RFC 6750 §3: no
/// error code when no token was sent, `invalid_token` otherwise).
pub(super) fn token_challenge(error: &TokenError) -> String {
    match error {
        TokenError::Missing => "Bearer".to_owned(),
        other => format!(
            "Bearer error=\"invalid_token\", error_description=\"{}\"",
            quoted(&other.to_string())
        ),
    }
}

/// A refused token: 401 with its challenge ([`token_challenge`]).
fn token_denied(error: &TokenError) -> CheckResponse {
    let challenge = token_challenge(error);
    let refusal = Refusal::Token(error.clone());
    denied(
        refusal.status(),
        Some(challenge),
        "login",
        &error.to_string(),
    )
}

/// A deny of the engine: 403 `insufficient_scope` for scope denials, 400 for a request the
/// service cannot read.
/// A write allowed only under constraints the FHIR server does not check (`[envoy]
/// server_checks_writes`): 403, reason `grants_not_enforced`. The decision itself, and its
/// audit line, stay an allow, as on the AuthZEN face.
pub fn write_unchecked(decision: &Decision, token: Option<&VerifiedToken>) -> CheckResponse {
    let message = format!(
        "{}; but it leaves the FHIR server constraints to check on the resource it writes, which it does not: decide it with the stored version, or set [envoy] server_checks_writes if the server applies x-smart-constraints",
        decision.message
    );
    let mut response = denied(Status::FORBIDDEN, None, "forbidden", &message);
    response.dynamic_metadata = Some(metadata(Outcome::Deny, GRANTS_NOT_ENFORCED, token));
    response
}

pub fn decision_denied(decision: &Decision, token: Option<&VerifiedToken>) -> CheckResponse {
    let mut response = engine_denied(decision);
    response.dynamic_metadata = Some(metadata(Outcome::Deny, decision.reason.as_str(), token));
    response
}

fn engine_denied(decision: &Decision) -> CheckResponse {
    let status = decision_status(decision.reason);
    if decision.reason == Reason::UnsupportedRequest {
        return denied(status, None, "invalid", &decision.message);
    }
    let challenge = format!(
        "Bearer error=\"insufficient_scope\", error_description=\"{}\"",
        quoted(&decision.message)
    );
    denied(status, Some(challenge), "forbidden", &decision.message)
}

fn denied(
    status: Status,
    challenge: Option<String>,
    issue_code: &str,
    message: &str,
) -> CheckResponse {
    let mut denied = DeniedHttpResponseBuilder::new();
    denied.set_http_status(http_status(status.http));
    denied.add_header("content-type", "application/fhir+json", None, false);
    if let Some(challenge) = challenge {
        denied.add_header("www-authenticate", challenge, None, false);
    }
    // Busy: the memory of the requests being read is held; a retry may get through.
    if status.http == 503 {
        denied.add_header("retry-after", "1", None, false);
    }
    denied.set_body(operation_outcome(issue_code, message));
    let mut response = CheckResponse::with_status(tonic::Status::new(status.grpc, message));
    response.set_http_response(denied);
    response
}

/// The `dynamic_metadata` of every answer: `decision` (`allow`, `deny`), `reason` (the audit
/// log's reason), and, when the token was verified, `patient` and `client_id`. Never the
/// token or a scope string.
fn metadata(outcome: Outcome, reason: &str, token: Option<&VerifiedToken>) -> Struct {
    let context = token.map(|token| &token.context);
    let values = [
        ("decision", Some(outcome.as_str())),
        ("reason", Some(reason)),
        (
            "patient",
            context.and_then(|context| context.patient.as_deref()),
        ),
        (
            "client_id",
            context.and_then(|context| context.client_id.as_deref()),
        ),
    ];
    // Sized up front: collected from a filter, the map would start empty and be reallocated
    // as it fills, on every answer.
    let mut fields = HashMap::with_capacity(values.len());
    for (name, value) in values {
        if let Some(value) = value {
            let value = ProtoValue {
                kind: Some(Kind::StringValue(value.to_owned())),
            };
            fields.insert(name.to_owned(), value);
        }
    }
    Struct { fields }
}

/// The Envoy code of an HTTP status the service answers with.
fn http_status(status: u16) -> HttpStatusCode {
    match status {
        400 => HttpStatusCode::BadRequest,
        401 => HttpStatusCode::Unauthorized,
        413 => HttpStatusCode::PayloadTooLarge,
        503 => HttpStatusCode::ServiceUnavailable,
        _ => HttpStatusCode::Forbidden,
    }
}

/// A FHIR `OperationOutcome` stating the reason (FHIR R4 operationoutcome.html). The
/// message comes from the engine or the token check and never contains the token.
pub(super) fn operation_outcome(code: &str, message: &str) -> String {
    json!({
        "resourceType": "OperationOutcome",
        "issue": [{ "severity": "error", "code": code, "diagnostics": message }]
    })
    .to_string()
}

/// Makes `text` safe inside a quoted-string of an HTTP header (RFC 9110 §5.6.4).
fn quoted(text: &str) -> String {
    text.chars()
        .filter(|character| !character.is_control())
        .map(|character| {
            if character == '"' || character == '\\' {
                '\''
            } else {
                character
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
