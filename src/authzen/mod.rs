//! The HTTP JSON face for clients without gRPC: the OpenID AuthZEN Authorization API 1.0
//! access evaluation endpoints, deciding through the same [`Authorizer`] pipeline as
//! `CheckAccess` and Envoy's `Check` (docs/authzen.md has the mapping).
//!
//! - `POST /access/v1/evaluation`: one evaluation (§6);
//! - `POST /access/v1/evaluations`: several, with the request's subject, action, resource
//!   and context as defaults and `options.evaluations_semantic` (§7);
//! - `GET /.well-known/authzen-configuration`: the PDP metadata (§9);
//! - `POST /smart-authz/v1/filter-resources`: a FHIR server's answer filtered on the way
//!   back, the service's own endpoint ([`filter`]).
//!
//! Bodies are read by the engine's strict JSON parser (a member named twice, or nesting
//! past 128 levels, is a 400), as `application/json` only, within `max_request_bytes`;
//! requests count against `max_concurrent_calls` with the gRPC faces' calls (503 beyond).
//! Connections are bounded and timed by the service's HTTP listener (`app::http_listener`).

mod answer;
mod filter;
mod request;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::{Map, Value, json};

use self::answer::Answer;
use self::request::Evaluation;
use crate::authorize::{
    Authorizer, Call, Caller, Capacity, Check, FhirServer, HttpLine, IF_NONE_EXIST_HEADER,
    OVER_BUDGET, TreeBudget, Unread, add_search_body_only, between_entries, parse_off_runtime,
    request_id,
};
use crate::config::AuthzenConfig;
use crate::fhir::{FhirRequest, Resource, parse_strict_within};
use crate::telemetry::{self, Rpc, traces};

/// Most evaluations in one `evaluations` request (the limit of a gRPC batch).
pub const MAX_EVALUATIONS: usize = crate::authorize::MAX_BATCH_ENTRIES;

/// The face's shared state.
#[derive(Clone)]
struct Face {
    authorizer: Arc<Authorizer>,
    base_url: Arc<str>,
}

/// The routes of the face, bodies bounded by `max_request_bytes`.
pub fn router(
    authorizer: Arc<Authorizer>,
    config: &AuthzenConfig,
    max_request_bytes: usize,
    capacity: Capacity,
) -> Router {
    let face = Face {
        authorizer,
        base_url: Arc::from(config.base_url.as_str()),
    };
    Router::new()
        .route("/access/v1/evaluation", post(evaluation))
        .route("/access/v1/evaluations", post(evaluations))
        .route("/.well-known/authzen-configuration", get(configuration))
        .route(
            "/smart-authz/v1/filter-resources",
            post(filter::filter_resources),
        )
        .layer(DefaultBodyLimit::max(max_request_bytes))
        .layer(middleware::from_fn_with_state(
            Admission {
                capacity,
                max_request_bytes,
            },
            admit,
        ))
        .with_state(face)
}

/// How long a client may take to send a request's body once its headers are in.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// What [`admit`] needs: the slots shared with the gRPC faces, and the body limit.
#[derive(Clone)]
struct Admission {
    capacity: Capacity,
    max_request_bytes: usize,
}

/// Every request takes a slot of the calls in flight the gRPC faces count too; one beyond
/// `max_concurrent_calls` is answered 503 with `Retry-After` at once. The body is read
/// first, within [`BODY_READ_TIMEOUT`]: a client that sends headers and then nothing would
/// otherwise hold a slot for as long as it likes, and a thousand of them every slot.
async fn admit(State(admission): State<Admission>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let limit = admission.max_request_bytes;
    let capacity = &admission.capacity;
    let read = tokio::time::timeout(BODY_READ_TIMEOUT, capacity.read_whole(body, limit)).await;
    let refused = |status: StatusCode, message: &str| {
        // Echoed as the handler would, when it is one the service accepts.
        let id = parts
            .headers
            .get("x-request-id")
            .and_then(|value| value.to_str().ok())
            .and_then(|id| request_id(id).ok().flatten());
        answer::failure(status, message, id)
    };
    let read = match read {
        Ok(Ok(read)) => read,
        Ok(Err(Unread::TooLarge)) => {
            return refused(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the request is larger than max_request_bytes",
            );
        }
        Ok(Err(Unread::OverBudget)) => return overloaded(OVER_BUDGET),
        Ok(Err(Unread::CutOff)) => {
            return refused(StatusCode::BAD_REQUEST, "the body was cut off");
        }
        Err(_) => {
            let message = format!(
                "the body did not arrive within {} s",
                BODY_READ_TIMEOUT.as_secs()
            );
            return refused(StatusCode::REQUEST_TIMEOUT, &message);
        }
    };
    let request = Request::from_parts(parts, axum::body::Body::from(read.bytes));
    let Some(slot) = capacity.enter() else {
        return overloaded(&capacity.refusal_message());
    };
    let response = next.run(request).await;
    drop((slot, read.held));
    response
}

/// 503 with `Retry-After`: the service is busy, another try (or replica) may not be.
fn overloaded(message: &str) -> Response {
    answer::failure(StatusCode::SERVICE_UNAVAILABLE, message, None)
}

async fn configuration(State(face): State<Face>) -> Response {
    let base = &face.base_url;
    let metadata = json!({
        "policy_decision_point": &**base,
        "access_evaluation_endpoint": format!("{base}/access/v1/evaluation"),
        "access_evaluations_endpoint": format!("{base}/access/v1/evaluations"),
    });
    answer::http(StatusCode::OK, &metadata, None)
}

/// What every POST shares: the request id, the content type, the body as strict JSON.
struct Posted {
    request_id: Option<String>,
    body: Map<String, Value>,
    /// The body's length in bytes: what writing it again, or dropping it, costs.
    size: usize,
    /// The memory of `body`'s tree, held with it.
    tree: TreeBudget,
}

/// A POST refused before it is read: its status, why, and the request id to echo.
struct Rejected {
    status: StatusCode,
    message: String,
    request_id: Option<String>,
}

impl Rejected {
    fn response(&self) -> Response {
        answer::failure(self.status, &self.message, self.request_id.as_deref())
    }
}

/// Reads a POST's JSON body, its tree counted in `tree`.
async fn read_post(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    mut tree: TreeBudget,
) -> Result<Posted, Rejected> {
    let fail = |status: StatusCode, message: &str, id: Option<&str>| Rejected {
        status,
        message: message.to_owned(),
        request_id: id.map(str::to_owned),
    };
    let id = headers
        .get("x-request-id")
        .map(|value| value.to_str().unwrap_or("\u{0}"))
        .unwrap_or_default();
    let request_id = match request_id(id) {
        Ok(id) => id.map(str::to_owned),
        Err(refusal) => return Err(fail(StatusCode::BAD_REQUEST, &refusal.to_string(), None)),
    };
    let echo = request_id.as_deref();
    let json = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        let status = StatusCode::UNSUPPORTED_MEDIA_TYPE;
        return Err(fail(status, "send Content-Type: application/json", echo));
    }
    let bytes = match body {
        Ok(bytes) => bytes,
        Err(rejection) => {
            let status = rejection.status();
            let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
                "the request is larger than max_request_bytes".to_owned()
            } else {
                rejection.body_text()
            };
            return Err(fail(status, &message, echo));
        }
    };
    // A large body is parsed on the blocking pool, as on every face.
    tree.holding(bytes.len());
    let parsed = match parse_off_runtime(&bytes, &mut tree, parse_strict_within).await {
        Ok(parsed) => parsed,
        Err(refusal) => {
            let status = StatusCode::from_u16(refusal.status().http)
                .unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            return Err(fail(status, &refusal.to_string(), echo));
        }
    };
    match parsed {
        Ok(Value::Object(body)) => Ok(Posted {
            request_id,
            body,
            size: bytes.len(),
            tree,
        }),
        Ok(_) => Err(fail(
            StatusCode::BAD_REQUEST,
            "the body must be a JSON object",
            echo,
        )),
        Err(error) => Err(fail(
            StatusCode::BAD_REQUEST,
            &format!("the body is not JSON: {error}"),
            echo,
        )),
    }
}

async fn evaluation(
    State(face): State<Face>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let posted = match read_post(&headers, body, face.authorizer.tree_budget()).await {
        Ok(posted) => posted,
        Err(rejected) => return rejected.response(),
    };
    let rpc = Rpc::AuthzenEvaluation;
    let span = traces::rpc_span(rpc, &tonic::metadata::MetadataMap::from_headers(headers));
    let id = posted.request_id.as_deref();
    let body = &posted.body;
    let call = async {
        let call = Call::new(rpc, &span).with_request_id(id);
        face.decide(call, |name| body.get(name), None).await
    };
    respond(telemetry::observe(rpc, &span, call).await, id)
}

/// The HTTP answer of one evaluation (or filter): 200 with the decision, the status of a
/// failure, or 503 when an issuer could not be reached.
fn respond(result: Result<Answer, tonic::Status>, id: Option<&str>) -> Response {
    match result {
        Ok(Answer::Decided(value)) => answer::http(StatusCode::OK, &value, id),
        Ok(Answer::Failed { status, message }) => answer::failure(status, &message, id),
        Err(unavailable) => unavailable_answer(&unavailable, id),
    }
}

async fn evaluations(
    State(face): State<Face>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let mut posted = match read_post(&headers, body, face.authorizer.tree_budget()).await {
        Ok(posted) => posted,
        Err(rejected) => return rejected.response(),
    };
    let id = posted.request_id.as_deref();
    let body = &posted.body;
    let fail = |status: StatusCode, message: &str| answer::failure(status, message, id);
    let items = match body.get("evaluations") {
        None => &[][..],
        Some(Value::Array(items)) => items.as_slice(),
        Some(_) => return fail(StatusCode::BAD_REQUEST, "evaluations: must be an array"),
    };
    if items.len() > MAX_EVALUATIONS {
        return fail(
            StatusCode::BAD_REQUEST,
            &format!("evaluations: at most {MAX_EVALUATIONS}"),
        );
    }
    if let Err(refusal) = posted.tree.take_entries(items.len()) {
        return respond(Ok(answer::refused(&refusal)), id);
    }
    let semantic = match Semantic::read(body.get("options")) {
        Ok(semantic) => semantic,
        Err(message) => return fail(StatusCode::BAD_REQUEST, &message),
    };
    // Every item that takes a default part reads it again (its headers, body, token; the
    // resource's versions are read once, but decided on per item): a 4 MB default and
    // 10,000 empty items would cost minutes of one core for one request.
    let shared = shared_work(body, items);
    if shared > MAX_SHARED_WORK {
        return fail(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!(
                "evaluations: the items that take the request's default subject, action, resource or context would read {shared} bytes of them in all, more than {MAX_SHARED_WORK}: give the large parts to fewer items, or split the request"
            ),
        );
    }
    let tokens = distinct_tokens(body, items);
    if tokens > MAX_EVALUATION_TOKENS {
        return fail(
            StatusCode::BAD_REQUEST,
            &format!(
                "evaluations: more than {MAX_EVALUATION_TOKENS} distinct subject tokens; each is verified or introspected on its own: split the request"
            ),
        );
    }
    let rpc = Rpc::AuthzenEvaluations;
    let span = traces::rpc_span(rpc, &tonic::metadata::MetadataMap::from_headers(headers));
    let call = async {
        let call = Call::new(rpc, &span).with_request_id(id);
        // AuthZEN 1.0 §7.1: without evaluations, the request is one evaluation.
        if items.is_empty() {
            return Ok(Err(face.decide(call, |name| body.get(name), None).await?));
        }
        // The default resource's versions, read once for every item that takes it: read
        // again per item, a 4 MB `stored` would cost 10,000 readings of one request.
        let default_resources = body.get("resource").map(resources_of);
        let mut answers = Vec::with_capacity(items.len());
        for (index, item) in items.iter().enumerate() {
            between_entries().await;
            let Some(item) = item.as_object() else {
                answers.push(Answer::failed(
                    StatusCode::BAD_REQUEST,
                    "evaluations[]: must be an object",
                ));
                if semantic.stops_at(false) {
                    break;
                }
                continue;
            };
            // Each part of an item replaces the request's default whole.
            let shared = match item.get("resource") {
                Some(_) => None,
                None => default_resources.as_ref(),
            };
            let answer = face
                .decide(
                    call.for_entry(index),
                    |name| item.get(name).or_else(|| body.get(name)),
                    shared,
                )
                .await?;
            let allowed = answer.is_allow();
            answers.push(answer);
            if semantic.stops_at(allowed) {
                break;
            }
        }
        Ok(Ok(answers))
    };
    match telemetry::observe(rpc, &span, call).await {
        Ok(Ok(answers)) => {
            let items: Vec<Value> = answers.into_iter().map(Answer::into_item).collect();
            answer::http(StatusCode::OK, &json!({ "evaluations": items }), id)
        }
        Ok(Err(Answer::Decided(value))) => answer::http(StatusCode::OK, &value, id),
        Ok(Err(Answer::Failed { status, message })) => fail(status, &message),
        Err(unavailable) => unavailable_answer(&unavailable, id),
    }
}

/// Most distinct subject tokens one `evaluations` request may carry. Each new token is a
/// signature verification or an introspection: without a bound, one request of 10,000
/// items could ask for 10,000 of them, where a gRPC batch carries one token.
pub const MAX_EVALUATION_TOKENS: usize = 100;

/// How many distinct `subject.id`s the items of an `evaluations` request decide with (an
/// item without a subject takes the request's), counting no further than one past
/// [`MAX_EVALUATION_TOKENS`].
fn distinct_tokens(body: &serde_json::Map<String, Value>, items: &[Value]) -> usize {
    fn token_of(subject: Option<&Value>) -> Option<&str> {
        subject?.get("id")?.as_str()
    }
    let default = token_of(body.get("subject"));
    let mut seen = std::collections::HashSet::new();
    for item in items {
        let token = match item.get("subject") {
            Some(subject) => token_of(Some(subject)),
            None => default,
        };
        if let Some(token) = token {
            seen.insert(token);
            if seen.len() > MAX_EVALUATION_TOKENS {
                break;
            }
        }
    }
    seen.len()
}

/// Most bytes of the request's default parts the items of one `evaluations` request may
/// read together (for each part, the items taking it × its bytes).
pub const MAX_SHARED_WORK: usize = 64 * 1024 * 1024;

/// The bytes of the default parts (AuthZEN 1.0 §7.1) that the items taking them read, in
/// all: for each of subject, action, resource and context, the items without their own
/// times the default's bytes as compact JSON.
fn shared_work(body: &serde_json::Map<String, Value>, items: &[Value]) -> usize {
    ["subject", "action", "resource", "context"]
        .iter()
        .filter_map(|part| Some((part, body.get(*part)?)))
        .map(|(part, default)| {
            let taking = items
                .iter()
                .filter(|item| item.get(*part).is_none())
                .count();
            if taking == 0 {
                return 0;
            }
            taking.saturating_mul(json_bytes(default))
        })
        .fold(0, usize::saturating_add)
}

/// The bytes of a value as compact JSON.
fn json_bytes(value: &Value) -> usize {
    /// Counts what is written to it.
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    let _ = serde_json::to_writer(&mut counter, value);
    counter.0
}

/// The stored and proposed versions of an evaluation's resource, read; or why one cannot be.
type Versions = Result<[Option<Resource>; 2], String>;

fn read_versions(stored: Option<&Value>, proposed: Option<&Value>) -> Versions {
    let read = |field: &str, json: Option<&Value>| {
        json.map(|json| {
            Resource::from_json(json.clone())
                .map_err(|error| format!("resource.properties.{field}: {error}"))
        })
        .transpose()
    };
    Ok([read("stored", stored)?, read("proposed", proposed)?])
}

/// The versions a `resource` part carries in its `properties` (none when it is not an
/// object: reading the evaluation refuses it then).
fn resources_of(resource: &Value) -> Versions {
    let properties = resource.get("properties");
    read_versions(
        properties.and_then(|properties| properties.get("stored")),
        properties.and_then(|properties| properties.get("proposed")),
    )
}

/// An issuer could not be reached: no decision, a 503 (retry), never an allow.
fn unavailable_answer(status: &tonic::Status, id: Option<&str>) -> Response {
    let code = StatusCode::SERVICE_UNAVAILABLE;
    answer::http(code, &answer::error_body(code, status.message()), id)
}

/// `options.evaluations_semantic` (AuthZEN 1.0 §7.1.2.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Semantic {
    ExecuteAll,
    DenyOnFirstDeny,
    PermitOnFirstPermit,
}

impl Semantic {
    fn read(options: Option<&Value>) -> Result<Self, String> {
        let Some(options) = options else {
            return Ok(Semantic::ExecuteAll);
        };
        let options = options
            .as_object()
            .ok_or_else(|| "options: must be an object".to_owned())?;
        match options.get("evaluations_semantic") {
            None => Ok(Semantic::ExecuteAll),
            Some(Value::String(name)) => match name.as_str() {
                "execute_all" => Ok(Semantic::ExecuteAll),
                "deny_on_first_deny" => Ok(Semantic::DenyOnFirstDeny),
                "permit_on_first_permit" => Ok(Semantic::PermitOnFirstPermit),
                other => Err(format!(
                    "options.evaluations_semantic: {other:?} is not execute_all, deny_on_first_deny or permit_on_first_permit"
                )),
            },
            Some(_) => Err("options.evaluations_semantic: must be a string".to_owned()),
        }
    }

    /// Whether the evaluations stop after one that was (or was not) an allow.
    fn stops_at(self, allowed: bool) -> bool {
        match self {
            Semantic::ExecuteAll => false,
            Semantic::DenyOnFirstDeny => !allowed,
            Semantic::PermitOnFirstPermit => allowed,
        }
    }
}

impl Face {
    /// One evaluation through the pipeline, its subject, action, resource and context read
    /// by `part`; `shared`, the versions of its resource when they were read already (an
    /// `evaluations` default). `Err` only when an issuer is unavailable.
    async fn decide<'b>(
        &self,
        call: Call<'_>,
        part: impl Fn(&str) -> Option<&'b Value>,
        shared: Option<&Versions>,
    ) -> Result<Answer, tonic::Status> {
        let read = request::read(
            part("subject"),
            part("action"),
            part("resource"),
            part("context"),
        );
        let evaluation = match read {
            Ok(evaluation) => evaluation,
            Err(unreadable) => {
                return Ok(Answer::failed(
                    StatusCode::BAD_REQUEST,
                    unreadable.to_string(),
                ));
            }
        };
        let Evaluation {
            token,
            headers,
            stored,
            proposed,
            ..
        } = &evaluation;
        let (server, request, line) = match self.route(call, &evaluation) {
            Ok(routed) => routed,
            Err(answer) => return Ok(answer),
        };
        let call = call.for_server(server);
        let read_here;
        let versions = match shared {
            Some(versions) => versions,
            None => {
                read_here = read_versions(*stored, *proposed);
                &read_here
            }
        };
        let [stored, proposed] = match versions {
            Ok(versions) => versions,
            Err(message) => {
                let refusal = crate::authorize::Refusal::InvalidRequest(message.clone());
                self.authorizer
                    .refused(call, token, Some(&request), &refusal);
                return Ok(answer::refused(&refusal));
            }
        };
        let check = Check {
            raw_token: token,
            request: &request,
            line: Some(line),
            stored: stored.as_ref(),
            proposed: proposed.as_ref(),
            if_none_exist: headers.get(IF_NONE_EXIST_HEADER).map(String::as_str),
        };
        let verdict = self.authorizer.check(call, server, check).await?;
        Ok(answer::verdict(verdict, evaluation.enforces_grants))
    }

    /// The FHIR server an evaluation is for and its request, read from its HTTP line; a
    /// refusal is reported and answered.
    fn route<'e>(
        &self,
        call: Call<'_>,
        evaluation: &'e Evaluation,
    ) -> Result<(&Arc<FhirServer>, FhirRequest, HttpLine<'e>), Answer> {
        let Evaluation {
            token,
            method,
            path,
            headers,
            body,
            fhir_server,
            fhir_version,
            ..
        } = evaluation;
        // No certificate on this face: with mutual TLS configured, it is never started.
        let caller = Caller::default();
        let server = self
            .authorizer
            .server_named(call, &caller, fhir_server, fhir_version, token)
            .map_err(|refusal| answer::refused(&refusal))?;
        let call = call.for_server(server);
        let line = HttpLine { method, path };
        let header = |name: &str| headers.get(name).map(String::as_str);
        let all = headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()));
        let mut request = line.read(all).map_err(|refusal| {
            self.authorizer.refused(call, token, None, &refusal);
            answer::refused(&refusal)
        })?;
        if let Err(refusal) = add_search_body_only(&mut request, body.as_bytes(), header) {
            self.authorizer
                .refused(call, token, Some(&request), &refusal);
            return Err(answer::refused(&refusal));
        }
        Ok((server, request, line))
    }
}
