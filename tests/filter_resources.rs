//! `FilterResources` over real gRPC: a FHIR server's answer judged before it goes back to
//! the app, every resource as a read of it (docs/response-filtering.md).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a panic is a failed test"
)]

mod common;

use common::answers::*;
use common::*;
use serde_json::{Value, json};
use smart_authz::grpc::pb;
use tonic::Code;

fn filter_request(token: &str, line: &str, answer: &[u8]) -> pb::FilterResourcesRequest {
    let (method, path) = line.split_once(' ').unwrap();
    pb::FilterResourcesRequest {
        access_token: token.to_owned(),
        request: Some(pb::filter_resources_request::Request::Http(
            pb::HttpRequest {
                method: method.to_owned(),
                path: path.to_owned(),
                ..Default::default()
            },
        )),
        response: answer.to_vec(),
        request_id: "req-7".to_owned(),
        ..Default::default()
    }
}

async fn filter(
    server: &TestServer,
    request: pb::FilterResourcesRequest,
) -> Result<pb::FilterResourcesResponse, tonic::Status> {
    server
        .client
        .clone()
        .filter_resources(request)
        .await
        .map(tonic::Response::into_inner)
}

fn body(response: &pb::FilterResourcesResponse) -> Value {
    serde_json::from_slice(&response.body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_answer_keeps_only_what_the_token_may_read() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, "").await;
    let token = issuer.patient_token("patient/Observation.rs patient/Patient.r", "123");
    let answer = serde_json::to_vec(&mixed_search()).unwrap();
    let line = "GET Observation?_include=Observation:subject";
    let response = filter(&server, filter_request(&token, line, &answer))
        .await
        .unwrap();
    assert_eq!(response.decision, pb::Decision::Allow as i32);
    assert!(response.filtered);
    assert_eq!(response.withheld, 2);
    assert_eq!(response.request_id, "req-7");
    assert_eq!(response.subject.as_ref().unwrap().patient, "123");
    let filtered = body(&response);
    assert_eq!(
        references(&filtered),
        ["Observation/o1", "Patient/123", "OperationOutcome/-"]
    );
    assert_eq!(patients_named(&filtered), ["Patient/123"]);
    assert!(filtered.get("total").is_none());
    let verdicts: Vec<(String, bool, i32, i32)> = response
        .entries
        .iter()
        .map(|entry| {
            (
                entry.reference.clone(),
                entry.kept,
                entry.mode,
                entry.reason,
            )
        })
        .collect();
    assert_eq!(
        verdicts,
        [
            (
                "Observation/o1".to_owned(),
                true,
                pb::EntryMode::Match as i32,
                pb::Reason::Granted as i32
            ),
            (
                "Observation/o2".to_owned(),
                false,
                pb::EntryMode::Match as i32,
                pb::Reason::OutsideCompartment as i32
            ),
            (
                "Patient/123".to_owned(),
                true,
                pb::EntryMode::Include as i32,
                pb::Reason::Granted as i32
            ),
            (
                "Patient/456".to_owned(),
                false,
                pb::EntryMode::Include as i32,
                pb::Reason::OutsideCompartment as i32
            ),
        ]
    );

    // The structured form of the same request filters alike.
    let mut structured = filter_request(&token, line, &answer);
    let mut search = fhir(pb::Interaction::SearchType, "Observation", "");
    search.params.push(pb::SearchParam {
        name: "_include".to_owned(),
        value: "Observation:subject".to_owned(),
    });
    structured.request = Some(pb::filter_resources_request::Request::Fhir(search));
    let response = filter(&server, structured).await.unwrap();
    assert_eq!(response.withheld, 2);
    server.stop().await;
}

/// A filtered answer is written anew, but what it keeps is the server's own text: a
/// decimal's precision is part of its value in FHIR (`2.50` is not `2.5`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_resource_leaves_as_the_server_wrote_it() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, "").await;
    let token = issuer.patient_token("patient/Observation.rs", "123");
    let kept = r#"{"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "K"}, "subject": {"reference": "Patient/123"}, "valueQuantity": {"value": 4.50, "unit": "mmol/L"}}"#;
    let answer = format!(
        r#"{{"resourceType": "Bundle", "type": "searchset", "total": 2, "entry": [
            {{"resource": {kept}, "search": {{"mode": "match"}}}},
            {{"resource": {{"resourceType": "Observation", "id": "o2", "status": "final", "code": {{"text": "K"}}, "subject": {{"reference": "Patient/456"}}, "valueQuantity": {{"value": 3.10}}}}, "search": {{"mode": "match"}}}}
        ]}}"#
    );
    let response = filter(
        &server,
        filter_request(&token, "GET Observation", answer.as_bytes()),
    )
    .await
    .unwrap();
    assert_eq!(response.withheld, 1);
    let written = String::from_utf8(response.body).unwrap();
    assert!(written.contains(kept), "{written}");

    // A large answer (judged and written on the blocking pool) the same.
    let entries: Vec<String> = (0..600)
        .map(|index| {
            let patient = if index % 2 == 0 { "123" } else { "456" };
            format!(
                r#"{{"resource": {{"resourceType": "Observation", "id": "o{index}", "status": "final", "code": {{"text": "K"}}, "subject": {{"reference": "Patient/{patient}"}}, "valueQuantity": {{"value": 4.50}}}}, "search": {{"mode": "match"}}}}"#
            )
        })
        .collect();
    let large = format!(
        r#"{{"resourceType": "Bundle", "type": "searchset", "entry": [{}]}}"#,
        entries.join(",")
    );
    assert!(large.len() > 64 * 1024);
    let request = filter_request(&token, "GET Observation", large.as_bytes());
    let response = filter(&server, request).await.unwrap();
    assert_eq!(response.withheld, 300);
    let written = String::from_utf8(response.body).unwrap();
    assert_eq!(written.matches(r#""value": 4.50"#).count(), 300);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_resource_of_another_patient_is_a_deny_with_no_body() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, "").await;
    let token = issuer.patient_token("patient/Observation.rs", "123");
    let theirs = serde_json::to_vec(&observation_of("o2", "456")).unwrap();
    let response = filter(
        &server,
        filter_request(&token, "GET Observation/o2", &theirs),
    )
    .await
    .unwrap();
    assert_eq!(response.decision, pb::Decision::Deny as i32);
    assert_eq!(response.reason, pb::Reason::OutsideCompartment as i32);
    assert!(response.body.is_empty());

    let mine = serde_json::to_vec(&observation_of("o1", "123")).unwrap();
    let response = filter(&server, filter_request(&token, "GET Observation/o1", &mine))
        .await
        .unwrap();
    assert_eq!(response.decision, pb::Decision::Allow as i32);
    // Nothing withheld: the server's bytes, as they were.
    assert_eq!(response.body, mine);
    server.stop().await;
}

/// A POST search's answer: with its body the parameters are decided; without it the answer
/// is read, and a type outside the compartment is refused (the body may trim it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_search_answer_is_judged_with_or_without_its_body() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, "").await;
    let token = issuer.patient_token("patient/*.rs", "123");
    let answer = serde_json::to_vec(&mixed_search()).unwrap();
    // An empty body is none.
    let judge = |line: &str, body: &str| {
        let mut request = filter_request(&token, line, &answer);
        if let Some(pb::filter_resources_request::Request::Http(http)) = &mut request.request {
            http.body = body.as_bytes().to_vec();
        }
        let server = &server;
        async move { filter(server, request).await.unwrap() }
    };
    let mine = judge("POST Observation/_search", "patient=123").await;
    assert_eq!(mine.decision, pb::Decision::Allow as i32);
    let theirs = judge("POST Observation/_search", "patient=456").await;
    assert_eq!(theirs.decision, pb::Decision::Deny as i32);
    // Without the body: decided on the query, the answer read.
    let unread = judge("POST Observation/_search", "").await;
    assert_eq!(unread.decision, pb::Decision::Allow as i32);
    assert_ne!(
        unread.body, answer,
        "the other patient's entries are withheld"
    );
    let outside = judge("POST Task/_search", "").await;
    assert_eq!(outside.decision, pb::Decision::Deny as i32);
    assert_eq!(outside.reason, pb::Reason::UnsupportedRequest as i32);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_that_need_no_filtering_pass_unread() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, "").await;
    let system = sign(&RSA_1, &issuer.claims("system/*.rs"));
    // Not even JSON: a grant with nothing to check never reads the answer.
    let answer = b"{\"resourceType\":\"Bundle\",  \"type\":\"searchset\"}".to_vec();
    let line = "GET Observation?_include=Observation:subject";
    let response = filter(&server, filter_request(&system, line, &answer))
        .await
        .unwrap();
    assert_eq!(response.decision, pb::Decision::Allow as i32);
    assert!(!response.filtered);
    assert!(response.entries.is_empty());
    assert_eq!(response.body, answer);

    let capabilities = br#"{"resourceType":"CapabilityStatement"}"#.to_vec();
    let response = filter(&server, filter_request("", "GET metadata", &capabilities))
        .await
        .unwrap();
    assert_eq!(response.decision, pb::Decision::Allow as i32);
    assert_eq!(response.reason, pb::Reason::PublicEndpoint as i32);
    assert_eq!(response.body, capabilities);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_a_binary_of_another_patient_is_read_back_and_denied() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, "").await;
    let token = issuer.patient_token("patient/Binary.r", "123");
    let binary = |patient: &str| serde_json::to_vec(&binary_of(patient)).unwrap();
    let theirs = filter(
        &server,
        filter_request(&token, "GET Binary/b1", &binary("456")),
    )
    .await
    .unwrap();
    assert_eq!(theirs.decision, pb::Decision::Deny as i32);
    assert_eq!(theirs.reason, pb::Reason::OutsideCompartment as i32);
    assert!(theirs.filtered && theirs.body.is_empty());
    let mine = filter(
        &server,
        filter_request(&token, "GET Binary/b1", &binary("123")),
    )
    .await
    .unwrap();
    assert_eq!(mine.decision, pb::Decision::Allow as i32);
    assert!(mine.filtered);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_a_count_of_the_servers_matches_is_removed() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, "").await;
    let token = issuer.patient_token("patient/Patient.rs", "123");
    let count = br#"{"resourceType":"Bundle","type":"searchset","total":7}"#;
    let line = "GET Patient?identifier=http://hospital.example/mrn|999&_summary=count";
    let response = filter(&server, filter_request(&token, line, count))
        .await
        .unwrap();
    assert_eq!(response.decision, pb::Decision::Allow as i32);
    assert_eq!(response.withheld, 0);
    assert_eq!(body(&response).get("total"), None, "{}", body(&response));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_cannot_be_filtered_is_never_an_allow() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server =
        TestServer::for_issuer(&issuer, "[response_filter]\nmax_body_bytes = 2048\n").await;
    let token = issuer.patient_token("patient/Observation.rs", "123");
    let line = "GET Observation";

    let refused = filter(&server, filter_request("not-a-jwt", line, b"{}"))
        .await
        .unwrap();
    assert_eq!(refused.decision, pb::Decision::Deny as i32);
    assert_eq!(refused.reason, pb::Reason::TokenMalformed as i32);
    assert!(refused.body.is_empty());

    let duplicate = br#"{"resourceType":"Bundle","type":"searchset","entry":[],"entry":[{"resource":{"resourceType":"Observation","id":"o2","subject":{"reference":"Patient/456"}}}]}"#;
    for answer in [&b"<Bundle/>"[..], &duplicate[..], b"[]", br#"{"id":"x"}"#] {
        let status = filter(&server, filter_request(&token, line, answer))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    }
    let single_object = json!({ "resourceType": "Bundle", "type": "searchset",
        "entry": { "resource": observation_of("o2", "456") } });
    let status = filter(
        &server,
        filter_request(&token, line, &serde_json::to_vec(&single_object).unwrap()),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("must be an array"), "{status:?}");

    let large = searchset(
        &(0..20)
            .map(|index| (observation_of(&format!("o{index}"), "123"), "match"))
            .collect::<Vec<_>>(),
    );
    let status = filter(
        &server,
        filter_request(&token, line, &serde_json::to_vec(&large).unwrap()),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(status.message().contains("max_body_bytes"), "{status:?}");
    server.stop().await;
}

/// An answer whose JSON would take more memory once parsed than the whole of
/// `max_buffered_request_bytes` (720 KB of one-member objects, some 65 MB as a tree) is
/// the FHIR server's fault, as one over `max_body_bytes`:
/// refused as it is parsed, never passed unread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_that_parses_into_more_than_the_budget_is_refused() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(
        &issuer,
        "max_request_bytes = 1048576\nmax_buffered_request_bytes = 4194304\n",
    )
    .await;
    let token = issuer.patient_token("patient/Observation.rs", "123");
    let dense = format!(
        r#"{{"resourceType":"Bundle","type":"searchset","entry":[{}{{"a":0}}]}}"#,
        r#"{"a":0},"#.repeat(90_000)
    );
    let status = filter(
        &server,
        filter_request(&token, "GET Observation", dense.as_bytes()),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("max_buffered_request_bytes"),
        "{status:?}"
    );
    assert!(
        status.metadata().get("grpc-retry-pushback-ms").is_none(),
        "{status:?}"
    );
    server.stop().await;
}

/// An answer of the largest size filtered, in the worst ordinary shape (a Bundle of small
/// Observations, about 18 times its bytes once parsed), is filtered within the budget: on
/// the service's defaults (4 MiB requests, a 3 MiB answer, 24 times 4 MiB of memory) and on
/// the chart's (helm/smart-authz/values.yaml: 2 MiB requests, 1.5 MiB answers, 48 MiB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ordinary_answer_of_the_largest_size_fits_the_default_budgets() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let token = issuer.patient_token("patient/Observation.rs", "123");
    let answer_of = |count: usize| {
        let entries: Vec<_> = (0..count)
            .map(|index| (observation_of(&format!("o{index:05}"), "123"), "match"))
            .collect();
        serde_json::to_vec(&searchset(&entries)).unwrap()
    };
    let per_entry = answer_of(101).len() - answer_of(100).len();
    for (config, limit) in [
        ("", 3 * 1024 * 1024),
        (
            "max_request_bytes = 2097152\nmax_buffered_request_bytes = 50331648\n",
            2 * 1024 * 1024 * 3 / 4,
        ),
    ] {
        let server = TestServer::for_issuer(&issuer, config).await;
        let answer = answer_of(limit / per_entry - 2);
        assert!(
            (limit - 4 * per_entry..=limit).contains(&answer.len()),
            "{}",
            answer.len()
        );
        let filtered = filter(&server, filter_request(&token, "GET Observation", &answer))
            .await
            .unwrap_or_else(|status| panic!("{config:?}: {status:?}"));
        assert_eq!(filtered.decision, pb::Decision::Allow as i32, "{config:?}");
        server.stop().await;
    }
}
