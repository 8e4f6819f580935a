//! Envoy's side of the ext_proc face: one `ExternalProcessor/Process` stream per HTTP
//! request, driven message by message as Envoy drives it (request headers, then the
//! answer's headers and buffered body), with a tonic client from the same `envoy-types`
//! crate.

use std::collections::HashMap;

use envoy_types::pb::envoy::config::core::v3::{HeaderMap, HeaderValue};
use envoy_types::pb::envoy::extensions::filters::http::ext_proc::v3::processing_mode::{
    BodySendMode, HeaderSendMode,
};
use envoy_types::pb::envoy::service::ext_proc::v3::external_processor_client::ExternalProcessorClient;
use envoy_types::pb::envoy::service::ext_proc::v3::processing_request::Request as Phase;
use envoy_types::pb::envoy::service::ext_proc::v3::processing_response::Response as Reply;
use envoy_types::pb::envoy::service::ext_proc::v3::{
    CommonResponse, HttpBody, HttpHeaders, ImmediateResponse, ProcessingRequest,
    ProcessingResponse, body_mutation,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Status, Streaming};

/// Longest wait for one reply: a reply that never comes fails the test, not the suite.
const REPLY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// One HTTP request's stream.
pub struct ProcessStream {
    sender: Option<mpsc::Sender<ProcessingRequest>>,
    replies: Streaming<ProcessingResponse>,
}

impl ProcessStream {
    pub async fn open(channel: &Channel) -> Self {
        let (sender, receiver) = mpsc::channel(4);
        let replies = ExternalProcessorClient::new(channel.clone())
            .process(ReceiverStream::new(receiver))
            .await
            .expect("the stream opens")
            .into_inner();
        ProcessStream {
            sender: Some(sender),
            replies,
        }
    }

    /// Sends one phase and waits for its reply.
    pub async fn send(&mut self, phase: Phase) -> ProcessingResponse {
        self.try_send(phase)
            .await
            .expect("a reply")
            .expect("no stream error")
    }

    pub async fn try_send(&mut self, phase: Phase) -> Option<Result<ProcessingResponse, Status>> {
        self.try_send_message(ProcessingRequest {
            request: Some(phase),
            ..ProcessingRequest::default()
        })
        .await
    }

    /// Sends a whole message (with Envoy's `protocol_config` or `observability_mode`, say)
    /// and waits for its reply, or for the end of the stream (`None`).
    pub async fn try_send_message(
        &mut self,
        message: ProcessingRequest,
    ) -> Option<Result<ProcessingResponse, Status>> {
        self.sender.as_ref()?.send(message).await.ok()?;
        tokio::time::timeout(REPLY_TIMEOUT, self.replies.message())
            .await
            .expect("the service replies to every message")
            .transpose()
    }

    /// Closes Envoy's side and returns how the service ended the stream.
    pub async fn close(mut self) -> Result<(), Status> {
        self.sender.take();
        while self.replies.message().await?.is_some() {}
        Ok(())
    }
}

fn header_map(pairs: &[(&str, &str)]) -> HeaderMap {
    HeaderMap {
        headers: pairs
            .iter()
            .map(|(key, value)| HeaderValue {
                key: (*key).to_owned(),
                raw_value: value.as_bytes().to_vec(),
                ..HeaderValue::default()
            })
            .collect(),
    }
}

/// The request headers Envoy sends: pseudo-headers, then `authorization` when a token is
/// given, then `extra`.
pub fn request_headers(
    method: &str,
    path: &str,
    token: Option<&str>,
    extra: &[(&str, &str)],
) -> Phase {
    let authorization = token.map(|token| format!("Bearer {token}"));
    let mut pairs = vec![
        (":method", method),
        (":path", path),
        (":authority", "fhir.example"),
        (":scheme", "https"),
        ("x-request-id", "ext-proc-1"),
    ];
    if let Some(authorization) = &authorization {
        pairs.push(("authorization", authorization));
    }
    pairs.extend_from_slice(extra);
    Phase::RequestHeaders(HttpHeaders {
        headers: Some(header_map(&pairs)),
        end_of_stream: method == "GET",
        ..HttpHeaders::default()
    })
}

/// The answer's headers: `:status`, `content-type`, then `extra`.
pub fn response_headers(status: &str, content_type: &str, extra: &[(&str, &str)]) -> Phase {
    let mut pairs = vec![(":status", status), ("content-type", content_type)];
    pairs.extend_from_slice(extra);
    Phase::ResponseHeaders(HttpHeaders {
        headers: Some(header_map(&pairs)),
        ..HttpHeaders::default()
    })
}

/// The buffered answer (`end_of_stream`: the whole body in one message).
pub fn response_body(body: &[u8]) -> Phase {
    Phase::ResponseBody(HttpBody {
        body: body.to_vec(),
        end_of_stream: true,
        ..HttpBody::default()
    })
}

/// The common part of a headers or body reply; `None` for another kind of reply.
pub fn common(reply: &ProcessingResponse) -> Option<&CommonResponse> {
    match reply.response.as_ref()? {
        Reply::RequestHeaders(headers) | Reply::ResponseHeaders(headers) => {
            headers.response.as_ref()
        }
        Reply::RequestBody(body) | Reply::ResponseBody(body) => body.response.as_ref(),
        _ => None,
    }
}

/// Headers a reply sets, by name.
pub fn set_headers(reply: &ProcessingResponse) -> HashMap<String, String> {
    common(reply)
        .and_then(|common| common.header_mutation.as_ref())
        .map(|mutation| {
            mutation
                .set_headers
                .iter()
                .filter_map(|option| option.header.as_ref())
                .map(|header| {
                    (
                        header.key.clone(),
                        String::from_utf8_lossy(&header.raw_value).into_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The headers a reply removes; the reply must carry a header mutation.
pub fn removed_headers(reply: &ProcessingResponse) -> &Vec<String> {
    &common(reply)
        .and_then(|common| common.header_mutation.as_ref())
        .expect("a header mutation")
        .remove_headers
}

/// The body a reply puts in place of the answer's, if any.
pub fn replaced_body(reply: &ProcessingResponse) -> Option<&[u8]> {
    match common(reply)?.body_mutation.as_ref()?.mutation.as_ref()? {
        body_mutation::Mutation::Body(body) => Some(body),
        _ => None,
    }
}

/// The local answer a reply asks Envoy to send instead, if any.
pub fn immediate(reply: &ProcessingResponse) -> Option<&ImmediateResponse> {
    match reply.response.as_ref()? {
        Reply::ImmediateResponse(immediate) => Some(immediate),
        _ => None,
    }
}

/// The reason label of a local answer (its `details`, `smart_authz_<reason>`).
pub fn immediate_reason(reply: &ProcessingResponse) -> Option<&str> {
    immediate(reply)?.details.strip_prefix("smart_authz_")
}

/// The HTTP status of a local answer.
pub fn immediate_status(reply: &ProcessingResponse) -> Option<i32> {
    immediate(reply)?.status.as_ref().map(|status| status.code)
}

/// Whether the reply asks Envoy for the answer's headers and its whole body (`mode_override`:
/// response headers SEND, body BUFFERED), whatever the filter's own mode.
pub fn asks_for_the_whole_answer(reply: &ProcessingResponse) -> bool {
    reply.mode_override.as_ref().is_some_and(|mode| {
        mode.response_header_mode == HeaderSendMode::Send as i32
            && mode.response_body_mode == BodySendMode::Buffered as i32
    })
}

/// Whether the reply tells Envoy to go on without the answer (`mode_override`: response
/// headers SKIP, body NONE), as Envoy reads it.
pub fn skips_the_answer(reply: &ProcessingResponse) -> bool {
    reply.mode_override.as_ref().is_some_and(|mode| {
        mode.response_header_mode == HeaderSendMode::Skip as i32
            && mode.response_body_mode == BodySendMode::None as i32
    })
}

/// A stream past the request headers of `GET path` with a patient/Observation.rs token for
/// Patient/123: not refused, and the whole answer asked for.
pub async fn filtering_stream(
    server: &super::TestServer,
    issuer: &super::TestIssuer,
    path: &str,
) -> ProcessStream {
    let token = issuer.patient_token("patient/Observation.rs", "123");
    let mut stream = ProcessStream::open(&server.channel).await;
    let reply = stream
        .send(request_headers("GET", path, Some(&token), &[]))
        .await;
    assert!(immediate(&reply).is_none(), "{reply:?}");
    assert!(asks_for_the_whole_answer(&reply), "{reply:?}");
    stream
}
