//! Envoy's `envoy.service.ext_proc.v3.ExternalProcessor` (ext_proc): enforcement on the way
//! back, on the same port and through the same [`Authorizer`] as everything else
//! (docs/response-filtering.md).
//!
//! One gRPC stream per HTTP request. On the request headers the request is decided again
//! from its own attributes (the token is a cache hit by then), rather than trusted from
//! ext_authz's `dynamic_metadata`: nothing has to be forwarded between the filters, and a
//! route where ext_authz is missing or disabled still refuses what the token may not do.
//! Then:
//! - a request that needs no filtering (public endpoint, a grant with nothing to check)
//!   asks Envoy to skip the answer (`mode_override`, honoured with `allow_mode_override`)
//!   and ends the stream, so Envoy goes on without sending the answer either way;
//! - a refused or denied request is answered at once (401/403/400);
//! - otherwise the upstream is asked for an uncompressed answer (`accept-encoding:
//!   identity`), and the buffered answer is filtered: withheld entries removed, a single
//!   resource the token may not read turned into a 403 `OperationOutcome`.
//!
//! Fail closed everywhere: a compressed or non-JSON answer, one over the size limit, a body
//! sent in pieces (`STREAMED` mode) or a stream that ends before the body it was asked for
//! never passes unread. Where Envoy's first message says the body will not come whole
//! (`protocol_config`, a `response_body_mode` other than `BUFFERED` or `BUFFERED_PARTIAL`),
//! an answer that must be read is refused before the upstream; a filter in
//! `observability_mode`, whose replies Envoy ignores, has its stream refused.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use envoy_types::pb::envoy::config::core::v3::{HeaderValue, HeaderValueOption};
use envoy_types::pb::envoy::extensions::filters::http::ext_proc::v3::ProcessingMode;
use envoy_types::pb::envoy::extensions::filters::http::ext_proc::v3::processing_mode::{
    BodySendMode, HeaderSendMode,
};
use envoy_types::pb::envoy::service::ext_proc::v3::external_processor_server::ExternalProcessor;
use envoy_types::pb::envoy::service::ext_proc::v3::processing_request::Request as Phase;
use envoy_types::pb::envoy::service::ext_proc::v3::processing_response::Response as Reply;
use envoy_types::pb::envoy::service::ext_proc::v3::{
    BodyMutation, BodyResponse, CommonResponse, HeaderMutation, HeadersResponse, HttpBody,
    HttpHeaders, ImmediateResponse, ProcessingRequest, ProcessingResponse, TrailersResponse,
    body_mutation,
};
use envoy_types::pb::envoy::r#type::v3::{HttpStatus, StatusCode};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::Span;

use super::response::{operation_outcome, token_challenge};
use crate::authorize::{
    AnswerAhead, AnswerCheck, AnswerPlan, AnswerProblem, Authorizer, Call, Caller, Capacity,
    FhirServer, HttpLine, IF_NONE_EXIST_HEADER, METHOD_OVERRIDE_HEADERS, Refusal, Unavailable,
    Verdict, busy, decision_status, filtered_body_off_runtime, request_id,
};
use crate::decision::{Decision, FilteredResponse};
use crate::fhir::{FhirRequest, Interaction};
use crate::telemetry::{self, Rpc, traces};

/// The response header that says entries were withheld (`true`), never how many.
pub const WITHHELD_HEADER: &str = "x-smart-authz-withheld";

/// Request headers read here: given twice, the upstream might read the other one.
const SINGLE_HEADERS: [&str; 7] = [
    ":method",
    ":path",
    ":authority",
    "authorization",
    "x-request-id",
    "host",
    IF_NONE_EXIST_HEADER,
];

/// The ext_proc service.
#[derive(Clone)]
pub struct EnvoyProcessor {
    authorizer: Arc<Authorizer>,
    capacity: Capacity,
    hide_existence: bool,
}

impl EnvoyProcessor {
    /// Each request's decision is taken in a slot of `capacity`, as any face's call: a
    /// stream holds one only while it opens. With `hide_existence` (`[response_filter]`), a
    /// read the token may not see and the server's own "not found" get one `404`.
    pub fn new(authorizer: Arc<Authorizer>, capacity: Capacity, hide_existence: bool) -> Self {
        EnvoyProcessor {
            authorizer,
            capacity,
            hide_existence,
        }
    }
}

#[tonic::async_trait]
impl ExternalProcessor for EnvoyProcessor {
    type ProcessStream = ReceiverStream<Result<ProcessingResponse, Status>>;

    async fn process(
        &self,
        request: Request<Streaming<ProcessingRequest>>,
    ) -> Result<Response<Self::ProcessStream>, Status> {
        let span = traces::rpc_span(Rpc::EnvoyProcess, request.metadata());
        let caller = Caller::of(request.extensions());
        let inbound = request.into_inner();
        let (replies, outbound) = mpsc::channel(4);
        let exchange = Exchange {
            authorizer: Arc::clone(&self.authorizer),
            capacity: self.capacity.clone(),
            hide_existence: self.hide_existence,
            caller,
            span,
            replies,
            state: State::Start,
            unfit_body_mode: None,
        };
        tokio::spawn(exchange.run(inbound));
        Ok(Response::new(ReceiverStream::new(outbound)))
    }
}

/// Where one HTTP request is in its exchange.
enum State {
    /// Waiting for the request headers.
    Start,
    /// The answer goes through unread.
    PassThrough,
    /// The answer must be filtered: what it is an answer to.
    Filter(Box<Asked>),
    /// The answer's headers are checked; its body is due.
    AwaitingBody(Box<Asked>),
    /// The answer to a write cannot be read: its status passes, its body is replaced by an
    /// `OperationOutcome` saying why ([`written_not_shown`]).
    Suppress { why: String, status: Option<u16> },
    /// Answered: nothing more to judge.
    Done,
}

/// The request an answer will be judged against.
struct Asked {
    server: Arc<FhirServer>,
    raw_token: String,
    method: String,
    /// The path relative to the server's FHIR base.
    path: String,
    request: FhirRequest,
    request_id: Option<String>,
    /// A read whose answer hides whether the resource exists (`hide_existence`).
    hidden: bool,
    /// The answer's status, once its headers came.
    status: Option<u16>,
}

struct Exchange {
    authorizer: Arc<Authorizer>,
    capacity: Capacity,
    hide_existence: bool,
    caller: Caller,
    span: Span,
    replies: mpsc::Sender<Result<ProcessingResponse, Status>>,
    state: State,
    /// The response body mode Envoy reported in its first message (`protocol_config`), when
    /// answers cannot be judged under it.
    unfit_body_mode: Option<&'static str>,
}

impl Exchange {
    async fn run(mut self, mut inbound: Streaming<ProcessingRequest>) {
        let span = self.span.clone();
        let result = telemetry::observe(Rpc::EnvoyProcess, &span, async {
            loop {
                let message = match inbound.message().await {
                    Ok(Some(message)) => message,
                    Ok(None) => return self.ended(),
                    // Envoy reset the stream: it will not forward the answer without us.
                    Err(status) => return Err(status),
                };
                if message.observability_mode {
                    return Err(observability_mode());
                }
                if let Some(protocol) = message.protocol_config {
                    self.unfit_body_mode = unfit_body_mode(protocol.response_body_mode);
                }
                let Some(phase) = message.request else {
                    continue;
                };
                // The request's decision, before the upstream, is shed like a unary call:
                // the stream ends and Envoy, failing closed (`failure_mode_allow: false`),
                // answers 500. The answer of a request let through is judged whatever the
                // load: the upstream has done its work (a write, maybe), and a 500 now would
                // have the app retry it.
                let slot = match phase {
                    Phase::RequestHeaders(_) => match self.capacity.enter() {
                        Some(slot) => Some(slot),
                        None => {
                            return Err(busy(self.capacity.refusal_message()));
                        }
                    },
                    _ => None,
                };
                let reply = self.answer(phase).await?;
                drop(slot);
                if self.replies.send(Ok(reply)).await.is_err() {
                    return Ok(());
                }
                // Nothing more to judge: a clean end lets Envoy go on without asking (and
                // without buffering an answer that passes unread anyway).
                if matches!(self.state, State::PassThrough | State::Done) {
                    return Ok(());
                }
            }
        })
        .await;
        if let Err(status) = result {
            let _ = self.replies.send(Err(status)).await;
        }
    }

    /// The stream ended: fine unless the body it asked for never came.
    fn ended(&self) -> Result<(), Status> {
        let State::AwaitingBody(asked) = &self.state else {
            return Ok(());
        };
        let refusal = Refusal::Answer(
            AnswerProblem::Missing,
            "the stream ended before the answer's body".to_owned(),
        );
        let call = self
            .call(asked.request_id.as_deref())
            .for_server(&asked.server);
        self.authorizer
            .refused(call, &asked.raw_token, Some(&asked.request), &refusal);
        Err(Status::aborted(refusal.to_string()))
    }

    fn call<'a>(&'a self, request_id: Option<&'a str>) -> Call<'a> {
        let call = Call::new(Rpc::EnvoyProcess, &self.span);
        // The id was checked when the request headers were read.
        call.with_request_id(request_id)
    }

    async fn answer(&mut self, phase: Phase) -> Result<ProcessingResponse, Status> {
        let state = std::mem::replace(&mut self.state, State::Done);
        let (state, reply) = match (state, phase) {
            (State::Start, Phase::RequestHeaders(headers)) => {
                self.request_headers(&headers).await?
            }
            // An answer whose request was never seen cannot be judged.
            (
                State::Start,
                Phase::ResponseHeaders(_) | Phase::ResponseBody(_) | Phase::ResponseTrailers(_),
            ) => {
                let refusal = Refusal::Answer(
                    AnswerProblem::ProcessingMode,
                    "the request headers never came: configure request_header_mode: SEND"
                        .to_owned(),
                );
                self.authorizer.refused(self.call(None), "", None, &refusal);
                (State::Done, refused(&refusal))
            }
            (State::Filter(asked), Phase::ResponseHeaders(headers)) => {
                self.response_headers(asked, &headers)
            }
            // The body without its headers (response_header_mode: SKIP): its status is not
            // known, so a read whose existence is hidden cannot be answered like a missing
            // one.
            (State::Filter(asked), Phase::ResponseBody(_)) if asked.hidden => {
                let refusal = Refusal::Answer(
                    AnswerProblem::ProcessingMode,
                    "hide_existence needs the answer's status: configure response_header_mode: SEND"
                        .to_owned(),
                );
                (State::Done, self.refuse_answer(&asked, refusal))
            }
            // Otherwise it is filtered all the same, and a compressed one does not parse.
            (State::AwaitingBody(asked) | State::Filter(asked), Phase::ResponseBody(body)) => {
                self.response_body(&asked, &body).await?
            }
            (State::Suppress { why, status }, Phase::ResponseBody(body)) => {
                suppress(&why, status, &body)
            }
            // Whatever else comes (request body or trailers Envoy was configured to send, the
            // answer of a request that needs no filtering) passes as it is.
            (state, phase) => (state, continue_phase(&phase)),
        };
        self.state = state;
        Ok(reply)
    }

    async fn request_headers(
        &self,
        headers: &HttpHeaders,
    ) -> Result<(State, ProcessingResponse), Status> {
        let headers = match header_map(headers) {
            Ok(headers) => headers,
            Err(refusal) => {
                self.authorizer.refused(self.call(None), "", None, &refusal);
                return Ok((State::Done, refused(&refusal)));
            }
        };
        let header = |name: &str| headers.get(name).map(String::as_str);
        let raw_token = header("authorization").unwrap_or_default();
        let call = Call::new(Rpc::EnvoyProcess, &self.span);
        let request_id = match request_id(header("x-request-id").unwrap_or_default()) {
            Ok(id) => id,
            Err(refusal) => {
                self.authorizer.refused(call, raw_token, None, &refusal);
                return Ok((State::Done, refused(&refusal)));
            }
        };
        let call = call.with_request_id(request_id);
        let authority = header(":authority")
            .or_else(|| header("host"))
            .unwrap_or_default();
        let (method, path) = (
            header(":method").unwrap_or_default(),
            header(":path").unwrap_or_default(),
        );
        let (server, relative) =
            match self
                .authorizer
                .server_routed(call, &self.caller, authority, path, raw_token)
            {
                Ok(routed) => routed,
                Err(refusal) => return Ok((State::Done, refused(&refusal))),
            };
        let call = call.for_server(server);
        let line = HttpLine {
            method,
            path: relative,
        };
        let request = match line.read(
            headers
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_str())),
        ) {
            Ok(request) => request,
            Err(refusal) => {
                self.authorizer.refused(call, raw_token, None, &refusal);
                return Ok((State::Done, refused(&refusal)));
            }
        };
        // An answer in another format is refused once it comes (502), a missing one is a
        // 404 whatever its format: refused before the upstream, the two look alike.
        if self.hides(&request) && asks_for_another_format(&request) {
            let refusal = Refusal::InvalidRequest(
                "reads are answered in JSON only (hide_existence): ask with _format=json"
                    .to_owned(),
            );
            self.authorizer
                .refused(call, raw_token, Some(&request), &refusal);
            return Ok((State::Done, refused(&refusal)));
        }
        let plan = self
            .authorizer
            .plan_answer(
                call,
                server,
                AnswerAhead {
                    raw_token,
                    request: &request,
                    line: Some(line),
                    if_none_exist: header(IF_NONE_EXIST_HEADER),
                    unfit_body_mode: self.unfit_body_mode,
                },
            )
            .await
            .map_err(unavailable)?;
        Ok(match plan {
            AnswerPlan::PassThrough => (State::PassThrough, skip_the_answer()),
            AnswerPlan::Refuse(verdict) => (State::Done, refused_verdict(verdict)),
            AnswerPlan::Filter => {
                let asked = Asked {
                    server: Arc::clone(server),
                    raw_token: raw_token.to_owned(),
                    method: method.to_owned(),
                    path: relative.to_owned(),
                    request_id: request_id.map(str::to_owned),
                    hidden: self.hides(&request),
                    request,
                    status: None,
                };
                let reply = ask_for_identity(asked.hidden);
                (State::Filter(Box::new(asked)), reply)
            }
        })
    }

    /// Whether `request` is a read whose answer must not say if the resource exists.
    fn hides(&self, request: &FhirRequest) -> bool {
        self.hide_existence && matches!(request.interaction, Interaction::Read | Interaction::Vread)
    }

    /// The answer's headers: only an uncompressed FHIR JSON body can be read.
    fn response_headers(
        &self,
        mut asked: Box<Asked>,
        headers: &HttpHeaders,
    ) -> (State, ProcessingResponse) {
        asked.status = answer_status(headers);
        match read_answer_headers(&asked, headers) {
            Ok(AnswerHeaders::LikeMissing) => (State::Done, not_found()),
            // No body (204, 304, a HEAD): nothing to read, nothing to leak.
            Ok(AnswerHeaders::Bodiless) => (
                State::Done,
                reply(Reply::ResponseHeaders(HeadersResponse::default())),
            ),
            Ok(AnswerHeaders::BodyDue) => (State::AwaitingBody(asked), body_due()),
            // The write is done and its status on the way: a refusal would tell the app it
            // failed, and a retry would write again. Only the body is withheld.
            Err(refusal) if asked.request.interaction.is_write() => {
                let call = self
                    .call(asked.request_id.as_deref())
                    .for_server(&asked.server);
                self.authorizer
                    .refused(call, &asked.raw_token, Some(&asked.request), &refusal);
                let state = State::Suppress {
                    why: refusal.to_string(),
                    status: asked.status,
                };
                (state, body_replaced())
            }
            Err(refusal) => (State::Done, self.refuse_answer(&asked, refusal)),
        }
    }

    async fn response_body(
        &self,
        asked: &Asked,
        body: &HttpBody,
    ) -> Result<(State, ProcessingResponse), Status> {
        // A write's answer keeps its status whatever becomes of its body: a refusal would tell
        // the app the write failed, and a retry would write again (a second create, a second
        // transaction).
        let write = asked.request.interaction.is_write();
        if !body.end_of_stream {
            let refusal = Refusal::Answer(
                AnswerProblem::Encoded,
                "the answer came in pieces: configure response_body_mode: BUFFERED".to_owned(),
            );
            if write {
                let call = self
                    .call(asked.request_id.as_deref())
                    .for_server(&asked.server);
                self.authorizer
                    .refused(call, &asked.raw_token, Some(&asked.request), &refusal);
                return Ok(suppress(&refusal.to_string(), asked.status, body));
            }
            return Ok((State::Done, self.refuse_answer(asked, refusal)));
        }
        let call = self
            .call(asked.request_id.as_deref())
            .for_server(&asked.server);
        let check = AnswerCheck {
            raw_token: &asked.raw_token,
            request: &asked.request,
            line: Some(HttpLine {
                method: &asked.method,
                path: &asked.path,
            }),
            body: &body.body,
        };
        // The answer's tree, held until the filtered answer is written, beside the weight of
        // the message that brought it, twice its bytes (`app::counted_messages`).
        let mut tree = self.authorizer.tree_budget();
        tree.holding(2 * body.body.len());
        let verdict = match self
            .authorizer
            .filter_answer(call, &asked.server, check, &mut tree)
            .await
        {
            Ok(verdict) => verdict,
            // The write's answer says it was done, not what it returned. The issuer's own
            // words stay in the log: they may name its endpoints.
            Err(unavailable) if write => {
                tracing::warn!(%unavailable, "the answer to a write is not shown: its token could not be judged");
                let why = "its token could not be judged: an issuer is unavailable";
                return Ok(suppress(why, asked.status, body));
            }
            Err(unavailable) => return Err(self::unavailable(unavailable)),
        };
        let reply = match verdict {
            Verdict::Refused(refusal) if write => replaced_body(&refusal.to_string()),
            Verdict::Refused(refusal) => refused(&refusal),
            Verdict::Public(_) => body_reply(None, 0),
            Verdict::Decided { mut decision, .. } if decision.is_allowed() => {
                match filtered_body_off_runtime(&mut decision, &body.body).await {
                    Some(written) => body_reply(written, decision.withheld),
                    None => return Err(Status::unavailable("the service is stopping")),
                }
            }
            // The write is done (its status went out with the headers); only the resource it
            // returned is kept back. A 403 would tell the app it failed, and a retry would
            // write again.
            Verdict::Decided { decision, .. } if write => replaced_body(&decision.message),
            // Audited with its reason all the same.
            Verdict::Decided { .. } if asked.hidden => not_found(),
            Verdict::Decided { decision, .. } => answer_denied(&decision),
        };
        Ok((State::Done, reply))
    }

    /// Refuses an answer that cannot be read; one event.
    fn refuse_answer(&self, asked: &Asked, refusal: Refusal) -> ProcessingResponse {
        let call = self
            .call(asked.request_id.as_deref())
            .for_server(&asked.server);
        self.authorizer
            .refused(call, &asked.raw_token, Some(&asked.request), &refusal);
        refused(&refusal)
    }
}

/// What an answer's headers say of its body.
enum AnswerHeaders {
    /// A read whose existence is hidden, answered with anything but a success or the
    /// server's own failure: answered as a missing resource is.
    LikeMissing,
    /// No body (204, 304, a HEAD): nothing to read, nothing to leak.
    Bodiless,
    /// A body that can be read is due.
    BodyDue,
}

/// Reads an answer's headers: only an uncompressed FHIR JSON body can be read.
fn read_answer_headers(asked: &Asked, headers: &HttpHeaders) -> Result<AnswerHeaders, Refusal> {
    // The FHIR server's headers, not the app's request, could not be read: the gateway's
    // fault (502), as any other answer it cannot read.
    let map = header_map(headers).map_err(|refusal| {
        Refusal::Answer(AnswerProblem::Unreadable, format!("the answer's {refusal}"))
    })?;
    // The server's own "not found" (or "gone": it existed) looks exactly like a withheld
    // read's, and so does any answer but a success or the server's own failure that could
    // differ between an id it has and one it does not: a redirect, a 403 of its own, a 412.
    // Those about the request as a whole pass (its token, its size, the rate of requests).
    if asked.hidden
        && map.get(":status").is_some_and(|status| {
            status.starts_with(['3', '4'])
                && !["401", "408", "413", "414", "429", "431"].contains(&status.as_str())
        })
    {
        return Ok(AnswerHeaders::LikeMissing);
    }
    if headers.end_of_stream {
        return Ok(AnswerHeaders::Bodiless);
    }
    if let Some(encoding) = map
        .get("content-encoding")
        .filter(|encoding| !encoding.trim().eq_ignore_ascii_case("identity"))
    {
        return Err(Refusal::Answer(
            AnswerProblem::Encoded,
            format!(
                "the answer is {encoding}-encoded and cannot be read: the upstream must honour accept-encoding: identity"
            ),
        ));
    }
    let content_type = map
        .get("content-type")
        .map(String::as_str)
        .unwrap_or_default();
    if !is_json(content_type) {
        return Err(Refusal::Answer(
            AnswerProblem::Encoded,
            format!(
                "the answer is {content_type:?}, not FHIR JSON: only JSON is filtered (ask with _format=json)"
            ),
        ));
    }
    Ok(AnswerHeaders::BodyDue)
}

/// The answer's headers pass, its body is asked for. The body may shrink: Envoy recomputes
/// the length it sends. Whether entries were withheld is this filter's to say, not the
/// server's.
fn body_due() -> ProcessingResponse {
    headers_reply(HeaderMutation {
        remove_headers: vec!["content-length".to_owned(), WITHHELD_HEADER.to_owned()],
        ..HeaderMutation::default()
    })
}

/// The headers of a write's answer that cannot be read: its status passes, and the headers
/// that describe its body go, since an `OperationOutcome` in JSON replaces it.
fn body_replaced() -> ProcessingResponse {
    headers_reply(describing_an_outcome())
}

/// The headers of a body replaced by a JSON `OperationOutcome`: the server's described
/// another (gzip, XML, its length).
fn describing_an_outcome() -> HeaderMutation {
    HeaderMutation {
        set_headers: vec![header_option("content-type", "application/fhir+json")],
        remove_headers: ["content-length", "content-encoding", WITHHELD_HEADER]
            .map(str::to_owned)
            .into(),
    }
}

fn headers_reply(mutation: HeaderMutation) -> ProcessingResponse {
    reply(Reply::ResponseHeaders(HeadersResponse {
        response: Some(CommonResponse {
            header_mutation: Some(mutation),
            ..CommonResponse::default()
        }),
    }))
}

/// The answer to a write that is not shown, from its first piece of body. Whole, the body
/// is replaced by the `OperationOutcome` that says why ([`written_not_shown`]). In pieces
/// (a body over Envoy's buffer under `BUFFERED_PARTIAL`, or trailers after it), the rest
/// would never come here but go to the app unread: answered at once instead, with the
/// write's own status; without it (`response_header_mode: SKIP`), refused.
fn suppress(why: &str, status: Option<u16>, body: &HttpBody) -> (State, ProcessingResponse) {
    let reply = if body.end_of_stream {
        replaced_body(why)
    } else if let Some(status) = status {
        written_at_once(status, why)
    } else {
        let refusal = Refusal::Answer(
            AnswerProblem::ProcessingMode,
            format!(
                "the answer to a write came in pieces without its status, and is not shown ({why}): configure response_header_mode: SEND"
            ),
        );
        refused(&refusal)
    };
    (State::Done, reply)
}

/// The body of a write's answer replaced by the `OperationOutcome` that says why it is not
/// shown, with the headers that describe it (the server's may say gzip or XML).
fn replaced_body(why: &str) -> ProcessingResponse {
    ProcessingResponse {
        response: Some(Reply::ResponseBody(BodyResponse {
            response: Some(CommonResponse {
                header_mutation: Some(describing_an_outcome()),
                body_mutation: Some(BodyMutation {
                    mutation: Some(body_mutation::Mutation::Body(written_not_shown(why))),
                }),
                ..CommonResponse::default()
            }),
        })),
        ..ProcessingResponse::default()
    }
}

/// A write's answer, in pieces, answered at once with its own status and the
/// `OperationOutcome` that says why its body is not shown.
fn written_at_once(status: u16, why: &str) -> ProcessingResponse {
    let code = StatusCode::try_from(i32::from(status)).unwrap_or(StatusCode::Ok);
    ProcessingResponse {
        response: Some(Reply::ImmediateResponse(ImmediateResponse {
            status: Some(HttpStatus { code: code as i32 }),
            headers: Some(HeaderMutation {
                set_headers: vec![header_option("content-type", "application/fhir+json")],
                ..HeaderMutation::default()
            }),
            body: written_not_shown(why),
            details: "smart_authz_answer_not_shown".to_owned(),
            ..ImmediateResponse::default()
        })),
        ..ProcessingResponse::default()
    }
}

/// The `:status` of an answer's headers.
fn answer_status(headers: &HttpHeaders) -> Option<u16> {
    let header = headers
        .headers
        .as_ref()?
        .headers
        .iter()
        .find(|header| header.key == ":status")?;
    let value = if header.raw_value.is_empty() {
        header.value.as_bytes()
    } else {
        header.raw_value.as_slice()
    };
    std::str::from_utf8(value).ok()?.trim().parse().ok()
}

/// The headers by lower-case name; a header this face reads, given twice, is refused, in
/// whatever spellings a server may read as it ([`crate::authorize::reads_as`]:
/// `x_http_method_override` beside `x-http-method-override`).
fn header_map(headers: &HttpHeaders) -> Result<HashMap<String, String>, Refusal> {
    let mut map = HashMap::new();
    let mut read = std::collections::HashSet::new();
    let values = headers
        .headers
        .as_ref()
        .map(|map| map.headers.as_slice())
        .unwrap_or_default();
    for header in values {
        let name = header.key.to_ascii_lowercase();
        // Envoy sends `raw_value` (bytes); `value` is the older field.
        let value = if header.raw_value.is_empty() {
            header.value.clone()
        } else {
            String::from_utf8(header.raw_value.clone())
                .map_err(|_| Refusal::InvalidRequest(format!("header {name} is not UTF-8")))?
        };
        let spelled = name.replace('_', "-");
        let read_once = SINGLE_HEADERS.contains(&spelled.as_str())
            || METHOD_OVERRIDE_HEADERS.contains(&spelled.as_str())
            || spelled == "content-type"
            || spelled == "content-encoding";
        if read_once && !read.insert(spelled) {
            return Err(Refusal::InvalidRequest(format!(
                "header {name} is given twice"
            )));
        }
        map.insert(name, value);
    }
    Ok(map)
}

/// `application/fhir+json`, `application/json` and other `+json` types, any parameters.
fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// `mode` unless an answer can be judged under it before the client sees any of it:
/// `BUFFERED` and `BUFFERED_PARTIAL` hold the answer's headers until its body is judged.
/// Under `NONE` the body passes unread (unless Envoy honours the service's `mode_override`,
/// which it does not say); under the streamed modes the headers (a `200`, an `ETag`) go to
/// the client first, so a refusal shows as a reset after them. A zero mode is `NONE`, and an
/// unknown one is refused too.
fn unfit_body_mode(mode: i32) -> Option<&'static str> {
    match BodySendMode::try_from(mode) {
        Ok(BodySendMode::Buffered | BodySendMode::BufferedPartial) => None,
        Ok(mode) => Some(mode.as_str_name()),
        Err(_) => Some("an unknown mode"),
    }
}

/// Envoy ignores every reply of a filter in `observability_mode`: nothing decided here
/// would be enforced, and answers would pass unfiltered whatever the service said. The
/// stream is refused so that the misconfiguration shows (the RPC's metrics count it as
/// `FAILED_PRECONDITION`); the error is logged once, not once per request.
fn observability_mode() -> Status {
    static LOGGED: AtomicBool = AtomicBool::new(false);
    let message = "the ext_proc filter runs in observability_mode, where Envoy ignores every \
                   reply: nothing could be filtered. Turn observability_mode off";
    if !LOGGED.swap(true, Ordering::Relaxed) {
        tracing::error!("{message}");
    }
    Status::failed_precondition(message)
}

/// An issuer that cannot be reached: the stream fails, and Envoy (with `failure_mode_allow`
/// false) answers 500 rather than guess.
fn unavailable(unavailable: Unavailable) -> Status {
    Status::from(unavailable)
}

/// Continue the request, and ask the upstream for an answer the service can read. The
/// answer's headers and its whole body are asked for whatever the filter's configured mode:
/// with `response_body_mode: NONE` Envoy would stream the body to the client unread after
/// the headers (`allow_mode_override: true`, which the bootstrap sets, lets this count). The
/// conditions of a conditional read go: a `304 Not Modified` has no body to judge, and
/// would confirm another patient's resource by its ETag; so does a range, whose part of a
/// body cannot be judged either. With `hidden` (a read whose existence is hidden) JSON is
/// asked for too, since an answer in another format is refused once it comes, which a
/// missing resource's 404 would not be; and the read's preconditions go as well, since a
/// server answers `412` to `If-Match: "x"` only for a resource it has (RFC 9110 §13.2.2). A
/// write keeps them: they guard it against lost updates.
fn ask_for_identity(hidden: bool) -> ProcessingResponse {
    let mut set_headers = vec![header_option("accept-encoding", "identity")];
    let mut remove_headers: Vec<String> =
        ["if-none-match", "if-modified-since", "range", "if-range"]
            .map(str::to_owned)
            .into();
    if hidden {
        set_headers.push(header_option("accept", "application/fhir+json"));
        remove_headers.extend(["if-match", "if-unmodified-since"].map(str::to_owned));
    }
    ProcessingResponse {
        response: Some(Reply::RequestHeaders(HeadersResponse {
            response: Some(CommonResponse {
                header_mutation: Some(HeaderMutation {
                    set_headers,
                    remove_headers,
                }),
                ..CommonResponse::default()
            }),
        })),
        mode_override: Some(ProcessingMode {
            response_header_mode: HeaderSendMode::Send as i32,
            response_body_mode: BodySendMode::Buffered as i32,
            response_trailer_mode: HeaderSendMode::Skip as i32,
            ..ProcessingMode::default()
        }),
        ..ProcessingResponse::default()
    }
}

/// Continue the request, and ask Envoy not to send its answer.
fn skip_the_answer() -> ProcessingResponse {
    ProcessingResponse {
        response: Some(Reply::RequestHeaders(HeadersResponse::default())),
        mode_override: Some(ProcessingMode {
            response_header_mode: HeaderSendMode::Skip as i32,
            response_body_mode: BodySendMode::None as i32,
            response_trailer_mode: HeaderSendMode::Skip as i32,
            ..ProcessingMode::default()
        }),
        ..ProcessingResponse::default()
    }
}

/// `CONTINUE` for the phase `phase`, changing nothing.
fn continue_phase(phase: &Phase) -> ProcessingResponse {
    reply(match phase {
        Phase::RequestHeaders(_) => Reply::RequestHeaders(HeadersResponse::default()),
        Phase::ResponseHeaders(_) => Reply::ResponseHeaders(HeadersResponse::default()),
        Phase::RequestBody(_) => Reply::RequestBody(BodyResponse::default()),
        Phase::ResponseBody(_) => Reply::ResponseBody(BodyResponse::default()),
        Phase::RequestTrailers(_) => Reply::RequestTrailers(TrailersResponse::default()),
        Phase::ResponseTrailers(_) => Reply::ResponseTrailers(TrailersResponse::default()),
    })
}

fn reply(reply: Reply) -> ProcessingResponse {
    ProcessingResponse {
        response: Some(reply),
        ..ProcessingResponse::default()
    }
}

/// The answer's body: replaced by `filtered` when it changed, with [`WITHHELD_HEADER`] when
/// entries were withheld (how many is for the metrics and the audit, never the client: see
/// `withheld_outcome` in the engine).
fn body_reply(filtered: Option<Vec<u8>>, withheld: usize) -> ProcessingResponse {
    let response = filtered.map(|body| CommonResponse {
        header_mutation: Some(HeaderMutation {
            set_headers: (withheld > 0)
                .then(|| header_option(WITHHELD_HEADER, "true"))
                .into_iter()
                .collect(),
            ..HeaderMutation::default()
        }),
        body_mutation: Some(BodyMutation {
            mutation: Some(body_mutation::Mutation::Body(body)),
        }),
        ..CommonResponse::default()
    });
    ProcessingResponse {
        response: Some(Reply::ResponseBody(BodyResponse { response })),
        ..ProcessingResponse::default()
    }
}

/// The body that replaces what a write returned when it may not be shown: a resource the
/// token may not read (`Prefer: return=representation` under `patient/Observation.c`), or an
/// answer that cannot be read at all.
fn written_not_shown(why: &str) -> Vec<u8> {
    let message = format!(
        "the request was carried out; what it returned is not shown: {}",
        why.trim_start_matches("denied: ")
    );
    serde_json::to_vec(&serde_json::json!({
        "resourceType": "OperationOutcome",
        "issue": [{ "severity": "information", "code": "suppressed", "diagnostics": message }]
    }))
    .unwrap_or_default()
}

/// A single resource the token may not read: 403 with the engine's reason. A resource the
/// filter cannot judge (a Bundle read as a resource, one without an id) is withheld all the
/// same: the request was sound, so not the 400 the reason would have for a request.
fn answer_denied(filtered: &FilteredResponse) -> ProcessingResponse {
    immediate(
        403,
        "forbidden",
        &filtered.message,
        filtered.reason.as_str(),
        None,
    )
}

/// Whether `request` names a `_format` other than JSON.
fn asks_for_another_format(request: &FhirRequest) -> bool {
    request
        .params
        .iter()
        .filter(|param| param.name == "_format")
        .any(|param| param.value != "json" && !is_json(&param.value))
}

/// The one answer, with `hide_existence`, to a read of a resource the server does not have
/// and to one the token may not see: the same status, headers and body, so neither says
/// whether the resource exists.
fn not_found() -> ProcessingResponse {
    immediate(
        404,
        "not-found",
        "the resource was not found",
        "not_found",
        None,
    )
}

/// A request the token may not make, answered before it reaches the upstream.
fn refused_verdict(verdict: Verdict<Decision>) -> ProcessingResponse {
    match verdict {
        Verdict::Refused(refusal) => refused(&refusal),
        Verdict::Decided { decision, .. } | Verdict::Public(decision) => immediate(
            decision_status(decision.reason).http,
            "forbidden",
            &decision.message,
            decision.reason.as_str(),
            None,
        ),
    }
}

fn refused(refusal: &Refusal) -> ProcessingResponse {
    let status = refusal.status().http;
    let (code, challenge) = match refusal {
        Refusal::Token(error) => ("login", Some(token_challenge(error))),
        Refusal::Answer(..) => ("exception", None),
        Refusal::TooLarge(_) => ("too-costly", None),
        Refusal::Overloaded(_) => ("transient", None),
        _ if status == 400 => ("invalid", None),
        _ => ("forbidden", None),
    };
    immediate(
        status,
        code,
        &refusal.to_string(),
        refusal.as_str(),
        challenge.as_deref(),
    )
}

/// A local answer with a FHIR `OperationOutcome`; Envoy sends nothing of the upstream's.
fn immediate(
    status: u16,
    issue_code: &str,
    message: &str,
    reason: &str,
    challenge: Option<&str>,
) -> ProcessingResponse {
    let code = match status {
        400 => StatusCode::BadRequest,
        401 => StatusCode::Unauthorized,
        404 => StatusCode::NotFound,
        413 => StatusCode::PayloadTooLarge,
        502 => StatusCode::BadGateway,
        503 => StatusCode::ServiceUnavailable,
        _ => StatusCode::Forbidden,
    };
    let mut set_headers = vec![header_option("content-type", "application/fhir+json")];
    if let Some(challenge) = challenge {
        set_headers.push(header_option("www-authenticate", challenge));
    }
    // Busy: the memory of the requests being read is held; a retry may get through.
    if status == 503 {
        set_headers.push(header_option("retry-after", "1"));
    }
    ProcessingResponse {
        response: Some(Reply::ImmediateResponse(ImmediateResponse {
            status: Some(HttpStatus { code: code as i32 }),
            headers: Some(HeaderMutation {
                set_headers,
                ..HeaderMutation::default()
            }),
            body: operation_outcome(issue_code, message).into_bytes(),
            details: format!("smart_authz_{reason}"),
            ..ImmediateResponse::default()
        })),
        ..ProcessingResponse::default()
    }
}

fn header_option(name: &str, value: &str) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key: name.to_owned(),
            raw_value: value.as_bytes().to_vec(),
            ..HeaderValue::default()
        }),
        ..HeaderValueOption::default()
    }
}

#[cfg(test)]
mod tests;
