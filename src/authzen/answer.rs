//! AuthZEN answers: `{"decision": bool, "context": {...}}`, with the constraints of an
//! allow in `context` (the same JSON as Envoy's `x-smart-constraints`), and errors.

use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::authorize::{GRANTS_NOT_ENFORCED, Refusal, Verdict};
use crate::decision::Decision;
use crate::token::VerifiedToken;

/// The answer to one evaluation, or why there is none.
pub enum Answer {
    /// A decision: `decision` and its `context`.
    Decided(Value),
    /// No decision: the request could not be read, or the pipeline refused it before the
    /// token mattered (an unknown FHIR server).
    Failed { status: StatusCode, message: String },
}

impl Answer {
    pub fn failed(status: StatusCode, message: impl Into<String>) -> Self {
        Answer::Failed {
            status,
            message: message.into(),
        }
    }

    /// No answer: the blocking pool is gone, the service is stopping.
    pub fn stopping() -> Self {
        Answer::failed(StatusCode::SERVICE_UNAVAILABLE, "the service is stopping")
    }

    /// The item of an `evaluations` answer: a failure is a deny with the error in its
    /// context (it decided nothing, so it can never read as an allow).
    pub fn into_item(self) -> Value {
        match self {
            Answer::Decided(value) => value,
            Answer::Failed { status, message } => json!({
                "decision": false,
                "context": { "error": { "status": status.as_u16(), "message": message } },
            }),
        }
    }

    /// Whether this is an allow (for the short-circuit semantics of `evaluations`).
    pub fn is_allow(&self) -> bool {
        matches!(self, Answer::Decided(value) if value["decision"] == Value::Bool(true))
    }
}

/// The answer for a verdict of the pipeline, to a caller that applies an allow's grants
/// (`enforces_grants`) or not.
pub fn verdict(verdict: Verdict<Decision>, enforces_grants: bool) -> Answer {
    match verdict {
        Verdict::Public(decision) => Answer::Decided(decided(&decision, None, enforces_grants)),
        Verdict::Decided { decision, token } => {
            Answer::Decided(decided(&decision, Some(&token), enforces_grants))
        }
        // A refused token is a deny with its reason, as on the gRPC API.
        Verdict::Refused(Refusal::Token(error)) => Answer::Decided(json!({
            "decision": false,
            "context": { "reason": error.as_str(), "message": format!("denied: {error}") },
        })),
        Verdict::Refused(refusal) => refused(&refusal),
    }
}

/// A refusal that is not a decision: answered with its HTTP status.
pub fn refused(refusal: &Refusal) -> Answer {
    let status = StatusCode::from_u16(refusal.status().http).unwrap_or(StatusCode::FORBIDDEN);
    Answer::failed(status, refusal.to_string())
}

/// AuthZEN's `decision` is a yes or a no (§6.2), and a generic enforcement point acts on it
/// alone: an allow that still leaves it something to apply (a compartment to narrow a
/// search to, a filter, an obligation) is `true` only to a caller that says it applies
/// them (`context.enforces_grants`); to any other it is `false`, reason
/// `grants_not_enforced`, with the grants it would have had to apply.
fn decided(decision: &Decision, token: Option<&VerifiedToken>, enforces_grants: bool) -> Value {
    let conditional = decision.is_allowed() && !decision.is_allowed_outright();
    if conditional && !enforces_grants {
        let mut context = json!({
            "reason": GRANTS_NOT_ENFORCED,
            "message": "allowed only under grants the caller must apply (compartment, filters, exclusions, obligations): send context.enforces_grants = true if it applies them",
            "grants": decision.grants,
        });
        if let Some(token) = token {
            context["subject"] = subject(token);
        }
        return json!({ "decision": false, "context": context });
    }
    let mut context = json!({
        "reason": decision.reason,
        "message": decision.message,
    });
    if decision.is_allowed() {
        context["grants"] = json!(decision.grants);
        if let Some(included) = &decision.included_resources {
            context["include_readable_types"] = json!(included.readable_types);
        }
    }
    if let Some(token) = token {
        context["subject"] = subject(token);
    }
    json!({ "decision": decision.is_allowed(), "context": context })
}

/// Who is asking, from the verified token.
pub fn subject(token: &VerifiedToken) -> Value {
    let subject = &token.context;
    json!({
        "client_id": subject.client_id,
        "sub": subject.sub,
        "fhir_user": subject.fhir_user,
        "patient": subject.patient,
    })
}

/// An HTTP answer: JSON, with the caller's `X-Request-ID` echoed (AuthZEN 1.0, request
/// identification).
pub fn http(status: StatusCode, body: &Value, request_id: Option<&str>) -> Response {
    let mut response = (
        status,
        [(
            axum::http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body.to_string(),
    )
        .into_response();
    if let Some(value) = request_id.and_then(|id| HeaderValue::from_str(id).ok()) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

/// A failure's answer: its status and the error body. A 503 here is a refusal for load (or
/// the service stopping), which a retry may get past: it carries `Retry-After: 1` (RFC 9110
/// §10.2.3), as gRPC's carry retry pushback. An issuer out of reach is 503 without it, and
/// is not answered here.
pub fn failure(status: StatusCode, message: &str, request_id: Option<&str>) -> Response {
    let mut response = http(status, &error_body(status, message), request_id);
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

/// The body of an HTTP error.
pub fn error_body(status: StatusCode, message: &str) -> Value {
    json!({ "error": { "status": status.as_u16(), "message": message } })
}
