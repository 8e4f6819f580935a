//! The ext_proc face, driven as Envoy drives it: request headers, then the FHIR server's
//! answer (headers, buffered body), over real gRPC with the `envoy-types` client.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a panic is a failed test"
)]

mod common;

use common::answers::*;
use common::envoy::ENVOY_CONFIG;
use common::ext_proc::*;
use common::*;
use envoy_types::pb::envoy::extensions::filters::http::ext_proc::v3::processing_mode::BodySendMode;
use envoy_types::pb::envoy::service::ext_proc::v3::processing_request::Request as Phase;
use envoy_types::pb::envoy::service::ext_proc::v3::processing_response::Response as Reply;
use envoy_types::pb::envoy::service::ext_proc::v3::{
    HttpBody, ProcessingRequest, ProcessingResponse, ProtocolConfiguration,
};
use serde_json::{Value, json};
use tonic::Code;

const FHIR_JSON: &str = "application/fhir+json;charset=utf-8";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_answer_loses_what_the_token_may_not_read() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, ENVOY_CONFIG).await;
    let token = issuer.patient_token("patient/Observation.rs patient/Patient.r", "123");
    let mut stream = ProcessStream::open(&server.channel).await;

    let path = "/fhir/R4/Observation?_include=Observation:subject";
    let reply = stream
        .send(request_headers(
            "GET",
            path,
            Some(&token),
            &[("accept-encoding", "gzip")],
        ))
        .await;
    assert!(
        matches!(reply.response, Some(Reply::RequestHeaders(_))),
        "{reply:?}"
    );
    assert_eq!(set_headers(&reply)["accept-encoding"], "identity");
    let removed = removed_headers(&reply);
    assert_eq!(
        removed,
        &["if-none-match", "if-modified-since", "range", "if-range"],
        "no 304 without a body to judge, no part of one"
    );
    assert!(
        asks_for_the_whole_answer(&reply),
        "the whole answer is asked for (BUFFERED), whatever the filter's mode: {reply:?}"
    );

    let reply = stream
        .send(response_headers(
            "200",
            FHIR_JSON,
            &[("content-length", "1234")],
        ))
        .await;
    let removed = removed_headers(&reply);
    // The length changes with the body; the withheld flag is the filter's own.
    assert_eq!(removed, &["content-length", "x-smart-authz-withheld"]);

    let answer = serde_json::to_vec(&mixed_search()).unwrap();
    let reply = stream.send(response_body(&answer)).await;
    assert!(immediate(&reply).is_none(), "{reply:?}");
    let filtered: Value = serde_json::from_slice(replaced_body(&reply).unwrap()).unwrap();
    assert_eq!(
        references(&filtered),
        ["Observation/o1", "Patient/123", "OperationOutcome/-"]
    );
    assert_eq!(patients_named(&filtered), ["Patient/123"]);
    assert_eq!(set_headers(&reply)["x-smart-authz-withheld"], "true");
    let outcome = String::from_utf8_lossy(replaced_body(&reply).unwrap()).into_owned();
    assert!(
        !outcome.contains("2 entries"),
        "no count reaches the client: {outcome}"
    );
    stream.close().await.unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_with_nothing_to_withhold_passes_as_it_was() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, ENVOY_CONFIG).await;
    let token = issuer.patient_token("patient/Observation.rs", "123");
    let mut stream = ProcessStream::open(&server.channel).await;
    stream
        .send(request_headers(
            "GET",
            "/fhir/R4/Observation/o1",
            Some(&token),
            &[],
        ))
        .await;
    stream.send(response_headers("200", FHIR_JSON, &[])).await;
    let mine = serde_json::to_vec(&observation_of("o1", "123")).unwrap();
    let reply = stream.send(response_body(&mine)).await;
    assert!(
        matches!(reply.response, Some(Reply::ResponseBody(_))),
        "{reply:?}"
    );
    assert!(replaced_body(&reply).is_none());
    assert!(immediate(&reply).is_none());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_resource_of_another_patient_becomes_a_403() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, ENVOY_CONFIG).await;
    let token = issuer.patient_token("patient/Observation.rs", "123");
    let mut stream = ProcessStream::open(&server.channel).await;
    stream
        .send(request_headers(
            "GET",
            "/fhir/R4/Observation/o2",
            Some(&token),
            &[],
        ))
        .await;
    stream.send(response_headers("200", FHIR_JSON, &[])).await;
    let theirs = serde_json::to_vec(&observation_of("o2", "456")).unwrap();
    let reply = stream.send(response_body(&theirs)).await;
    assert_eq!(immediate_status(&reply), Some(403));
    let outcome: Value = serde_json::from_slice(&immediate(&reply).unwrap().body).unwrap();
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    assert!(!String::from_utf8_lossy(&immediate(&reply).unwrap().body).contains("456"));

    // One the filter cannot judge (no id) is withheld the same way: the request was sound.
    let mut stream = filtering_stream(&server, &issuer, "/fhir/R4/Observation/o1").await;
    stream.send(response_headers("200", FHIR_JSON, &[])).await;
    let mut no_id = observation_of("o1", "123");
    no_id.as_object_mut().unwrap().remove("id");
    let reply = stream
        .send(response_body(&serde_json::to_vec(&no_id).unwrap()))
        .await;
    assert_eq!(immediate_status(&reply), Some(403), "{reply:?}");
    server.stop().await;
}

/// A Binary names its patient only in `securityContext`, which no constraint can ask the
/// FHIR server to check: under patient/ scopes its answer is always read, and another
/// patient's is a 403.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binary_of_another_patient_is_read_back_and_becomes_a_403() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, ENVOY_CONFIG).await;
    let token = issuer.patient_token("patient/Binary.r", "123");
    let mut stream = ProcessStream::open(&server.channel).await;
    let reply = stream
        .send(request_headers(
            "GET",
            "/fhir/R4/Binary/b1",
            Some(&token),
            &[],
        ))
        .await;
    assert!(
        asks_for_the_whole_answer(&reply),
        "the answer is asked for: {reply:?}"
    );
    stream.send(response_headers("200", FHIR_JSON, &[])).await;
    let theirs = serde_json::to_vec(&binary_of("456")).unwrap();
    let reply = stream.send(response_body(&theirs)).await;
    assert_eq!(immediate_status(&reply), Some(403));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_that_need_no_filtering_are_not_asked_for() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, ENVOY_CONFIG).await;
    let system = sign(&RSA_1, &issuer.claims("system/*.rs"));
    for (path, token) in [
        (
            "/fhir/R4/Observation?_include=Observation:subject",
            Some(system.as_str()),
        ),
        ("/fhir/R4/metadata", None),
    ] {
        let mut stream = ProcessStream::open(&server.channel).await;
        let reply = stream.send(request_headers("GET", path, token, &[])).await;
        assert!(skips_the_answer(&reply), "the answer is skipped: {reply:?}");
        // And the stream ends cleanly: Envoy goes on without sending the answer.
        stream.close().await.unwrap();
    }
    server.stop().await;
}

/// A search by POST carries its parameters in a body the answer's face never sees (an
/// `_include` among them): its answer is asked for and read, even under a grant that would
/// let a plain search of the type pass unread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_answer_to_a_search_by_post_is_read() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, ENVOY_CONFIG).await;
    let mut claims = issuer.claims("user/Observation.rs");
    claims["fhirUser"] = "Practitioner/7".into();
    let user = sign(&RSA_1, &claims);
    let mut stream = ProcessStream::open(&server.channel).await;
    let reply = stream
        .send(request_headers(
            "POST",
            "/fhir/R4/Observation/_search",
            Some(&user),
            &[],
        ))
        .await;
    assert!(
        asks_for_the_whole_answer(&reply),
        "the answer is asked for: {reply:?}"
    );
    stream.send(response_headers("200", FHIR_JSON, &[])).await;
    let answer = serde_json::to_vec(&mixed_search()).unwrap();
    let reply = stream.send(response_body(&answer)).await;
    let filtered: Value = serde_json::from_slice(replaced_body(&reply).unwrap()).unwrap();
    assert_eq!(
        references(&filtered),
        ["Observation/o1", "Observation/o2", "OperationOutcome/-"]
    );
    stream.close().await.unwrap();
    server.stop().await;
}

/// A batch was decided entry by entry by ext_authz, which reads its body; ext_proc reads its
/// answer entry by entry, and another patient's resource in it does not get through. The
/// entry keeps its place: the app pairs answers with its requests by position.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_answer_is_read_entry_by_entry() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, ENVOY_CONFIG).await;
    let token = issuer.patient_token("patient/Observation.rs", "123");
    let mut stream = ProcessStream::open(&server.channel).await;
    let reply = stream
        .send(request_headers("POST", "/fhir/R4/", Some(&token), &[]))
        .await;
    assert!(immediate(&reply).is_none(), "not refused: {reply:?}");
    stream.send(response_headers("200", FHIR_JSON, &[])).await;
    let entry = |resource: Value| serde_json::json!({"resource": resource, "response": {"status": "200 OK"}});
    let answer = serde_json::json!({
        "resourceType": "Bundle",
        "type": "batch-response",
        "entry": [entry(observation_of("o1", "123")), entry(observation_of("o2", "456"))]
    });
    let reply = stream
        .send(response_body(&serde_json::to_vec(&answer).unwrap()))
        .await;
    let filtered: Value = serde_json::from_slice(replaced_body(&reply).unwrap()).unwrap();
    assert_eq!(references(&filtered), ["Observation/o1", "?/-"]);
    let withheld = &filtered["entry"][1]["response"];
    assert_eq!(withheld["status"], "200 OK");
    assert_eq!(withheld["outcome"]["issue"][0]["code"], "suppressed");
    stream.close().await.unwrap();
    server.stop().await;
}

/// A create under `c` without `r`, answered with the created resource (`Prefer:
/// return=representation`): the write is done and its status stands; only the resource is
/// kept back, so the app does not take it for a failure and write again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_whose_returned_resource_may_not_be_read_keeps_its_status() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, ENVOY_CONFIG).await;
    let token = issuer.patient_token("patient/Observation.c", "123");
    let mut stream = ProcessStream::open(&server.channel).await;
    let reply = stream
        .send(request_headers(
            "POST",
            "/fhir/R4/Observation",
            Some(&token),
            &[("prefer", "return=representation")],
        ))
        .await;
    assert!(immediate(&reply).is_none(), "not refused: {reply:?}");
    stream.send(response_headers("201", FHIR_JSON, &[])).await;
    let created = serde_json::to_vec(&observation_of("o9", "123")).unwrap();
    let reply = stream.send(response_body(&created)).await;
    assert!(
        immediate(&reply).is_none(),
        "no 403 after a done write: {reply:?}"
    );
    let shown: Value = serde_json::from_slice(replaced_body(&reply).unwrap()).unwrap();
    assert_eq!(shown["resourceType"], "OperationOutcome");
    assert_eq!(shown["issue"][0]["code"], "suppressed");
    stream.close().await.unwrap();
    server.stop().await;
}

/// The answer to a write that cannot be read (compressed, not JSON, over `max_body_bytes`,
/// in pieces) is never refused: the write is done, and a 502 would have the app write
/// again. Its status passes and its body is replaced by an `OperationOutcome` saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_whose_answer_cannot_be_read_keeps_its_status() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let config = format!("{ENVOY_CONFIG}\n[response_filter]\nmax_body_bytes = 2048\n");
    let server = TestServer::for_issuer(&issuer, &config).await;
    let token = issuer.patient_token("patient/Observation.c", "123");
    let create = || {
        request_headers(
            "POST",
            "/fhir/R4/Observation",
            Some(&token),
            &[("prefer", "return=representation")],
        )
    };
    let not_shown = |reply: &ProcessingResponse| {
        assert!(
            immediate(reply).is_none(),
            "no refusal after a done write: {reply:?}"
        );
        let shown: Value = serde_json::from_slice(replaced_body(reply).unwrap()).unwrap();
        assert_eq!(shown["issue"][0]["code"], "suppressed", "{shown}");
    };
    let created = serde_json::to_vec(&observation_of("o9", "123")).unwrap();

    // Unreadable on its headers: they pass, bar those that describe the body replaced.
    for (content_type, extra) in [
        (FHIR_JSON, [("content-encoding", "gzip")]),
        ("application/fhir+xml", [("x-any", "1")]),
    ] {
        let mut stream = ProcessStream::open(&server.channel).await;
        stream.send(create()).await;
        let reply = stream
            .send(response_headers("201", content_type, &extra))
            .await;
        assert!(immediate(&reply).is_none(), "{content_type}: {reply:?}");
        assert_eq!(set_headers(&reply)["content-type"], "application/fhir+json");
        let removed = removed_headers(&reply);
        assert!(
            removed.iter().any(|name| name == "content-encoding"),
            "{removed:?}"
        );
        not_shown(&stream.send(response_body(b"\x1f\x8b<Observation/>")).await);
    }

    // Over the limit.
    let mut stream = ProcessStream::open(&server.channel).await;
    stream.send(create()).await;
    stream.send(response_headers("201", FHIR_JSON, &[])).await;
    let mut large = observation_of("o9", "123");
    large["note"] = json!([{ "text": "x".repeat(4096) }]);
    not_shown(
        &stream
            .send(response_body(&serde_json::to_vec(&large).unwrap()))
            .await,
    );

    // In pieces (a body over Envoy's buffer under BUFFERED_PARTIAL, whose rest would go to
    // the app unread): answered at once, with the write's own status.
    let mut stream = ProcessStream::open(&server.channel).await;
    stream.send(create()).await;
    stream.send(response_headers("201", FHIR_JSON, &[])).await;
    let piece = stream
        .send(Phase::ResponseBody(HttpBody {
            body: created[..10].to_vec(),
            end_of_stream: false,
            ..HttpBody::default()
        }))
        .await;
    assert_eq!(immediate_status(&piece), Some(201), "{piece:?}");
    let shown: Value = serde_json::from_slice(&immediate(&piece).unwrap().body).unwrap();
    assert_eq!(shown["issue"][0]["code"], "suppressed", "{shown}");
    // So is a compressed one, once its first piece comes.
    let mut stream = ProcessStream::open(&server.channel).await;
    stream.send(create()).await;
    stream
        .send(response_headers(
            "201",
            FHIR_JSON,
            &[("content-encoding", "gzip")],
        ))
        .await;
    let piece = stream
        .send(Phase::ResponseBody(HttpBody {
            body: b"\x1f\x8b".to_vec(),
            end_of_stream: false,
            ..HttpBody::default()
        }))
        .await;
    assert_eq!(immediate_status(&piece), Some(201), "{piece:?}");
    server.stop().await;
}

/// A HEAD's answer has no body to judge, while its status and ETag would say whether
/// another patient's resource exists: refused when the answer would be read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_that_would_need_reading_is_refused() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, ENVOY_CONFIG).await;
    let token = issuer.patient_token("patient/Observation.rs", "123");
    let mut stream = ProcessStream::open(&server.channel).await;
    let reply = stream
        .send(request_headers(
            "HEAD",
            "/fhir/R4/Observation/o2",
            Some(&token),
            &[],
        ))
        .await;
    assert_eq!(immediate_status(&reply), Some(400), "{reply:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_the_token_may_not_make_is_refused_before_the_upstream() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, ENVOY_CONFIG).await;
    let token = issuer.patient_token("patient/Condition.rs", "123");
    let mut stream = ProcessStream::open(&server.channel).await;
    let reply = stream
        .send(request_headers(
            "GET",
            "/fhir/R4/Observation",
            Some(&token),
            &[],
        ))
        .await;
    assert_eq!(immediate_status(&reply), Some(403));

    let mut stream = ProcessStream::open(&server.channel).await;
    let reply = stream
        .send(request_headers("GET", "/fhir/R4/Observation", None, &[]))
        .await;
    assert_eq!(immediate_status(&reply), Some(401));
    // RFC 6750 §3.1: no error code without a token, invalid_token with a bad one.
    let challenge = |reply: &ProcessingResponse| {
        let headers = immediate(reply).unwrap().headers.as_ref().unwrap();
        headers
            .set_headers
            .iter()
            .filter_map(|option| option.header.as_ref())
            .find(|header| header.key == "www-authenticate")
            .map(|header| {
                if header.raw_value.is_empty() {
                    header.value.clone()
                } else {
                    String::from_utf8(header.raw_value.clone()).unwrap()
                }
            })
            .unwrap()
    };
    assert_eq!(challenge(&reply), "Bearer");
    let mut stream = ProcessStream::open(&server.channel).await;
    let reply = stream
        .send(request_headers(
            "GET",
            "/fhir/R4/Observation",
            Some("garbage"),
            &[],
        ))
        .await;
    assert_eq!(immediate_status(&reply), Some(401));
    assert!(
        challenge(&reply).starts_with("Bearer error=\"invalid_token\""),
        "{reply:?}"
    );

    // Two Authorization headers: the upstream might read the other one.
    let mut stream = ProcessStream::open(&server.channel).await;
    let reply = stream
        .send(request_headers(
            "GET",
            "/fhir/R4/Observation",
            Some(&token),
            &[("authorization", "Bearer other")],
        ))
        .await;
    assert_eq!(immediate_status(&reply), Some(400));
    server.stop().await;
}

/// A conditional create's `If-None-Exist` is the search the server runs first: decided here
/// as on ext_authz, so a route without ext_authz does not let it look for another patient's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conditional_create_is_decided_on_its_search() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, ENVOY_CONFIG).await;
    let token = issuer.patient_token("patient/Observation.crs", "123");
    // The reply to `POST Observation` with `headers`, on a stream of its own.
    let create = |headers: &'static [(&'static str, &'static str)]| {
        let (channel, token) = (server.channel.clone(), token.clone());
        async move {
            let mut stream = ProcessStream::open(&channel).await;
            let phase = request_headers("POST", "/fhir/R4/Observation", Some(&token), headers);
            stream.send(phase).await
        }
    };
    let reply = create(&[("if-none-exist", "subject=Patient/456&code=x")]).await;
    assert_eq!(immediate_status(&reply), Some(403), "{reply:?}");
    // Given twice, the server might run the other one.
    let reply = create(&[
        ("if-none-exist", "subject=Patient/123"),
        ("if-none-exist", "subject=Patient/456"),
    ])
    .await;
    assert_eq!(immediate_status(&reply), Some(400), "{reply:?}");
    // So is a header given twice in two spellings a server reads as one (CGI: `_` is `-`),
    // even naming the request's own method both times.
    let reply = create(&[
        ("x-http-method-override", "POST"),
        ("x_http_method_override", "POST"),
    ])
    .await;
    assert_eq!(immediate_status(&reply), Some(400), "{reply:?}");
    server.stop().await;
}

/// Envoy says in its first message how the filter sends the answer's body
/// (`protocol_config`). Under `response_body_mode: NONE` the service's request for the body
/// is honoured only with `allow_mode_override`, which Envoy does not report, and under
/// `STREAMED` the answer's headers reach the client before its body is judged: a request
/// whose answer must be read is refused before the upstream, not let through unjudged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_that_does_not_buffer_the_answer_refuses_what_must_be_read() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, ENVOY_CONFIG).await;
    let token = issuer.patient_token("patient/Observation.rs", "123");
    let system = sign(&RSA_1, &issuer.claims("system/*.rs"));
    let first = |phase: Phase, mode: BodySendMode| ProcessingRequest {
        request: Some(phase),
        protocol_config: Some(ProtocolConfiguration {
            response_body_mode: mode as i32,
            ..ProtocolConfiguration::default()
        }),
        ..ProcessingRequest::default()
    };
    let reply_to = |message: ProcessingRequest| {
        let channel = server.channel.clone();
        async move {
            let mut stream = ProcessStream::open(&channel).await;
            let reply = stream.try_send_message(message).await;
            (stream, reply.expect("a reply").expect("no stream error"))
        }
    };

    // A search and a batch: their answers must be read.
    for (method, path, mode) in [
        ("GET", "/fhir/R4/Observation", BodySendMode::None),
        ("POST", "/fhir/R4/", BodySendMode::None),
        ("GET", "/fhir/R4/Observation", BodySendMode::Streamed),
        (
            "GET",
            "/fhir/R4/Observation",
            BodySendMode::FullDuplexStreamed,
        ),
    ] {
        let headers = request_headers(method, path, Some(&token), &[]);
        let (_, reply) = reply_to(first(headers, mode)).await;
        assert_eq!(
            immediate_status(&reply),
            Some(502),
            "{method} {path} {mode:?}"
        );
        let body = String::from_utf8_lossy(&immediate(&reply).unwrap().body).into_owned();
        assert!(body.contains(mode.as_str_name()), "{body}");
        assert_eq!(immediate_reason(&reply), Some("processing_mode"));
    }

    // An answer that needs no reading goes on, as under any mode.
    let headers = request_headers(
        "GET",
        "/fhir/R4/Observation?_include=Observation:subject",
        Some(&system),
        &[],
    );
    let (stream, reply) = reply_to(first(headers, BodySendMode::None)).await;
    assert!(skips_the_answer(&reply), "{reply:?}");
    stream.close().await.unwrap();

    // BUFFERED (or BUFFERED_PARTIAL): asked for and filtered as ever.
    for mode in [BodySendMode::Buffered, BodySendMode::BufferedPartial] {
        let headers = request_headers("GET", "/fhir/R4/Observation", Some(&token), &[]);
        let (mut stream, reply) = reply_to(first(headers, mode)).await;
        assert!(asks_for_the_whole_answer(&reply), "{reply:?}");
        stream.send(response_headers("200", FHIR_JSON, &[])).await;
        let theirs = serde_json::to_vec(&observation_of("o2", "456")).unwrap();
        let reply = stream.send(response_body(&theirs)).await;
        assert_eq!(immediate_status(&reply), Some(403), "{mode:?}");
    }
    server.stop().await;
}

/// Envoy ignores every reply of a filter in `observability_mode`: nothing could be filtered,
/// so the stream is refused rather than answered as if it counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_in_observability_mode_has_its_stream_refused() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, ENVOY_CONFIG).await;
    let token = issuer.patient_token("patient/Observation.rs", "123");
    let mut stream = ProcessStream::open(&server.channel).await;
    let status = stream
        .try_send_message(ProcessingRequest {
            request: Some(request_headers(
                "GET",
                "/fhir/R4/Observation",
                Some(&token),
                &[],
            )),
            observability_mode: true,
            ..ProcessingRequest::default()
        })
        .await
        .expect("the stream's end")
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(
        status.message().contains("observability_mode"),
        "{status:?}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_that_cannot_be_read_never_pass() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let config = format!("{ENVOY_CONFIG}\n[response_filter]\nmax_body_bytes = 2048\n");
    let server = TestServer::for_issuer(&issuer, &config).await;
    let search = "/fhir/R4/Observation";

    // Compressed, or not JSON: refused on the headers, before any body.
    for (content_type, extra) in [
        (FHIR_JSON, [("content-encoding", "gzip")]),
        ("application/fhir+xml", [("x-any", "1")]),
    ] {
        let mut stream = filtering_stream(&server, &issuer, search).await;
        let reply = stream
            .send(response_headers("200", content_type, &extra))
            .await;
        assert_eq!(immediate_status(&reply), Some(502), "{content_type}");
    }
    // A content type given twice, which the app's client might read the other way: the
    // server's answer is at fault, not the app's request.
    let mut stream = filtering_stream(&server, &issuer, search).await;
    let reply = stream
        .send(response_headers(
            "200",
            FHIR_JSON,
            &[("content-type", "text/html")],
        ))
        .await;
    assert_eq!(immediate_status(&reply), Some(502), "{reply:?}");
    assert_eq!(
        immediate_reason(&reply),
        Some("answer_unreadable"),
        "{reply:?}"
    );

    // Over the limit, not JSON, a duplicate member, an entry object for an array.
    let large = serde_json::to_vec(&searchset(
        &(0..20)
            .map(|index| (observation_of(&format!("o{index}"), "123"), "match"))
            .collect::<Vec<_>>(),
    ))
    .unwrap();
    let duplicate = br#"{"resourceType":"Bundle","type":"searchset","entry":[],"entry":[]}"#;
    let object = br#"{"resourceType":"Bundle","type":"searchset","entry":{"resource":{}}}"#;
    for body in [&large[..], b"<Bundle/>", &duplicate[..], &object[..]] {
        let mut stream = filtering_stream(&server, &issuer, search).await;
        stream.send(response_headers("200", FHIR_JSON, &[])).await;
        let reply = stream.send(response_body(body)).await;
        assert_eq!(immediate_status(&reply), Some(502), "{}", body.len());
    }

    // A body in pieces (STREAMED mode) cannot be judged piece by piece.
    let mut stream = filtering_stream(&server, &issuer, search).await;
    stream.send(response_headers("200", FHIR_JSON, &[])).await;
    let piece = Phase::ResponseBody(envoy_types::pb::envoy::service::ext_proc::v3::HttpBody {
        body: b"{\"resourceType\":".to_vec(),
        end_of_stream: false,
        ..Default::default()
    });
    let reply = stream.send(piece).await;
    assert_eq!(immediate_status(&reply), Some(502));

    // The stream ends after the headers: the body asked for never came.
    let mut stream = filtering_stream(&server, &issuer, search).await;
    stream.send(response_headers("200", FHIR_JSON, &[])).await;
    let status = stream.close().await.unwrap_err();
    assert_eq!(status.code(), Code::Aborted);

    // An answer whose request headers never came.
    let mut stream = ProcessStream::open(&server.channel).await;
    let reply = stream.send(response_headers("200", FHIR_JSON, &[])).await;
    assert_eq!(immediate_status(&reply), Some(502));
    assert_eq!(immediate_reason(&reply), Some("processing_mode"));
    server.stop().await;
}

/// `[response_filter] hide_existence`: a read of another patient's resource and a read the
/// server answers "not found" get the same answer, status, headers and body, so the app
/// cannot tell which ids exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_hide_existence_a_withheld_read_looks_like_a_missing_one() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let config = format!("{ENVOY_CONFIG}\n[response_filter]\nhide_existence = true\n");
    let server = TestServer::for_issuer(&issuer, &config).await;

    // Another patient's Observation, read back.
    let mut theirs = filtering_stream(&server, &issuer, "/fhir/R4/Observation/o2").await;
    theirs.send(response_headers("200", FHIR_JSON, &[])).await;
    let body = serde_json::to_vec(&observation_of("o2", "456")).unwrap();
    let withheld = theirs.send(response_body(&body)).await;
    assert_eq!(immediate_status(&withheld), Some(404), "{withheld:?}");

    // An id the server does not have: its own 404, with its own words.
    let mut missing = filtering_stream(&server, &issuer, "/fhir/R4/Observation/o9").await;
    let not_found = missing
        .send(response_headers(
            "404",
            FHIR_JSON,
            &[("x-powered-by", "HAPI")],
        ))
        .await;
    assert_eq!(withheld, not_found, "the two answers must not differ");

    // Gone (it existed, HAPI says 410): the same; and any other answer that could tell an
    // id the server has from one it has not: a failed precondition, a redirect, its own 403.
    for status in ["410", "412", "301", "403"] {
        let mut other = filtering_stream(&server, &issuer, "/fhir/R4/Observation/o8").await;
        let reply = other.send(response_headers(status, FHIR_JSON, &[])).await;
        assert_eq!(withheld, reply, "{status}");
    }
    // One about the request as a whole, whatever the id, passes as the server said it.
    let mut limited = filtering_stream(&server, &issuer, "/fhir/R4/Observation/o8").await;
    let reply = limited.send(response_headers("429", FHIR_JSON, &[])).await;
    assert!(immediate(&reply).is_none(), "{reply:?}");
    // A read's preconditions do not reach the server.
    let token = issuer.patient_token("patient/Observation.rs", "123");
    let mut conditional = ProcessStream::open(&server.channel).await;
    let asked = conditional
        .send(request_headers(
            "GET",
            "/fhir/R4/Observation/o2",
            Some(&token),
            &[("if-match", "W/\"999\""), ("range", "bytes=0-0")],
        ))
        .await;
    let removed = removed_headers(&asked);
    for header in ["if-match", "if-unmodified-since", "range", "if-range"] {
        assert!(
            removed.iter().any(|name| name == header),
            "{header}: {removed:?}"
        );
    }

    // The patient's own resource passes as it was, asked for in JSON.
    let mut own = ProcessStream::open(&server.channel).await;
    let asked = own
        .send(request_headers(
            "GET",
            "/fhir/R4/Observation/o1",
            Some(&token),
            &[],
        ))
        .await;
    assert_eq!(
        set_headers(&asked).get("accept").map(String::as_str),
        Some("application/fhir+json")
    );
    own.send(response_headers("200", FHIR_JSON, &[])).await;
    let body = serde_json::to_vec(&observation_of("o1", "123")).unwrap();
    let reply = own.send(response_body(&body)).await;
    assert!(immediate(&reply).is_none(), "{reply:?}");

    // Another format would be refused once it came (502) where a missing id is a 404:
    // refused before the upstream, whatever the id.
    for id in ["o2", "o9"] {
        let mut xml = ProcessStream::open(&server.channel).await;
        let path = format!("/fhir/R4/Observation/{id}?_format=xml");
        let reply = xml
            .send(request_headers("GET", &path, Some(&token), &[]))
            .await;
        assert_eq!(immediate_status(&reply), Some(400), "{reply:?}");
    }

    // Without the answer's status (response_header_mode: SKIP) a read cannot be hidden.
    let mut skipped = filtering_stream(&server, &issuer, "/fhir/R4/Observation/o1").await;
    let body = serde_json::to_vec(&observation_of("o1", "123")).unwrap();
    let reply = skipped.send(response_body(&body)).await;
    assert_eq!(immediate_status(&reply), Some(502), "{reply:?}");
    assert_eq!(immediate_reason(&reply), Some("processing_mode"));

    // Only reads: a search's own 404 (an unknown parameter, say) passes as the server said.
    let mut search = filtering_stream(&server, &issuer, "/fhir/R4/Observation?code=x").await;
    let reply = search.send(response_headers("404", FHIR_JSON, &[])).await;
    assert!(immediate(&reply).is_none(), "{reply:?}");
    drop(search);
    server.stop().await;
}
