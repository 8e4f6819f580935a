//! `POST /smart-authz/v1/filter-resources`: `FilterResources` on the HTTP JSON face
//! (docs/response-filtering.md). AuthZEN defines no such endpoint, so it lives under the
//! service's own prefix; the request that produced the answer is given as an evaluation
//! (`subject`, `action`, `resource`, `context`, read by the same rules), and the FHIR
//! server's answer as `response`.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::answer::{self, Answer};
use super::{Face, Posted, read_post, request, respond};
use crate::authorize::{
    AnswerCheck, AnswerProblem, Call, Refusal, TreeBudget, Verdict, off_runtime_if_large,
};
use crate::decision::FilteredResponse;
use crate::telemetry::{self, Rpc, traces};

pub(super) async fn filter_resources(
    State(face): State<Face>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let posted = match read_post(&headers, body, face.authorizer.tree_budget()).await {
        Ok(posted) => posted,
        Err(rejected) => return rejected.response(),
    };
    let rpc = Rpc::AuthzenFilterResources;
    let span = traces::rpc_span(rpc, &tonic::metadata::MetadataMap::from_headers(headers));
    let Posted {
        request_id,
        body,
        size,
        mut tree,
    } = posted;
    let id = request_id.as_deref();
    let call = async {
        let call = Call::new(rpc, &span).with_request_id(id);
        face.filter(call, body, size, &mut tree).await
    };
    let result = telemetry::observe(rpc, &span, call).await;
    // The answer embeds the (filtered) FHIR answer: as large to write as it was to read.
    let echo = request_id.clone();
    off_runtime_if_large(size, move || respond(result, echo.as_deref()))
        .await
        .unwrap_or_else(|| respond(Ok(Answer::stopping()), id))
}

impl Face {
    /// Filters `body.response`, the answer to the request the evaluation in `body`
    /// describes, its tree counted in `tree` beside the request's (keep it until the answer
    /// is written). `Err` only when an issuer is unavailable.
    async fn filter(
        &self,
        call: Call<'_>,
        mut body: Map<String, Value>,
        size: usize,
        tree: &mut TreeBudget,
    ) -> Result<Answer, tonic::Status> {
        // Owned, so it is written out and dropped off the runtime when large.
        let response = body.remove("response");
        let read = request::read(
            body.get("subject"),
            body.get("action"),
            body.get("resource"),
            body.get("context"),
        );
        let evaluation = match read {
            Ok(evaluation) => evaluation,
            Err(unreadable) => {
                return Ok(Answer::failed(StatusCode::BAD_REQUEST, unreadable.0));
            }
        };
        if evaluation.stored.is_some() || evaluation.proposed.is_some() {
            return Ok(Answer::failed(
                StatusCode::BAD_REQUEST,
                "resource.properties: no stored or proposed version here: the answer goes in response",
            ));
        }
        let Some(original) = response else {
            return Ok(Answer::failed(
                StatusCode::BAD_REQUEST,
                "response: the FHIR server's answer is required",
            ));
        };
        let (server, request, line) = match self.route(call, &evaluation) {
            Ok(routed) => routed,
            Err(answer) => return Ok(answer),
        };
        let call = call.for_server(server);
        // Read strictly with the rest of the body already; written out again for the
        // pipeline, which reads every answer from its bytes.
        let written = off_runtime_if_large(size, move || {
            (serde_json::to_vec(&original).unwrap_or_default(), original)
        });
        let Some((bytes, original)) = written.await else {
            return Ok(Answer::stopping());
        };
        tree.holding(bytes.len());
        let check = AnswerCheck {
            raw_token: &evaluation.token,
            request: &request,
            line: Some(line),
            body: &bytes,
        };
        let verdict = self
            .authorizer
            .filter_answer(call, server, check, tree)
            .await?;
        // Off the runtime too when large: where the filtered body replaces the original,
        // the original's tree is dropped here.
        let answer = off_runtime_if_large(size, move || filtered(verdict, original)).await;
        Ok(answer.unwrap_or_else(Answer::stopping))
    }
}

/// The answer: `decision`, the verdicts in `context`, and on an allow the `body` to send.
fn filtered(verdict: Verdict<FilteredResponse>, original: Value) -> Answer {
    let (filtered, subject) = match verdict {
        Verdict::Public(filtered) => (filtered, None),
        Verdict::Decided { decision, token } => (decision, Some(token)),
        Verdict::Refused(Refusal::Answer(problem, message)) => {
            // An API caller sent it: a 413 or a 400, not the gateway's 502.
            let status = if problem == AnswerProblem::TooLarge {
                StatusCode::PAYLOAD_TOO_LARGE
            } else {
                StatusCode::BAD_REQUEST
            };
            return Answer::failed(status, message);
        }
        Verdict::Refused(refusal) => return answer::verdict(Verdict::Refused(refusal), false),
    };
    let mut context = json!({
        "reason": filtered.reason,
        "message": filtered.message,
        "filtered": filtered.filtered,
        "withheld": filtered.withheld,
        "entries": filtered.entries,
    });
    if let Some(token) = subject {
        context["subject"] = answer::subject(&token);
    }
    let mut value = json!({ "decision": filtered.is_allowed(), "context": context });
    if filtered.is_allowed() {
        value["body"] = if filtered.rewritten {
            filtered.body
        } else {
            original
        };
    }
    Answer::Decided(value)
}
