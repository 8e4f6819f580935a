//! CheckAccess over real gRPC: allow and deny for each interaction family, both request
//! forms, resources as JSON and as facts, and bad requests.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a panic is a failed test"
)]

mod common;

use common::*;
use serde_json::json;
use smart_authz::grpc::pb;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_interaction_family_is_allowed_or_denied_by_its_letter() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, "").await;
    let reader = issuer.patient_token("patient/Observation.rs launch/patient openid", "123");
    let writer = issuer.patient_token("patient/Observation.cud", "123");
    let cases = [
        (&reader, "GET", "Observation/1", pb::Decision::Allow),
        (
            &reader,
            "GET",
            "Observation/1/_history/2",
            pb::Decision::Allow,
        ),
        (
            &reader,
            "GET",
            "Observation/1/_history",
            pb::Decision::Allow,
        ),
        (&reader, "GET", "Observation?code=x", pb::Decision::Allow),
        (
            &reader,
            "GET",
            "Patient/123/Observation",
            pb::Decision::Allow,
        ),
        (&reader, "GET", "?_type=Observation", pb::Decision::Allow),
        (&reader, "POST", "Observation", pb::Decision::Deny),
        (&reader, "PUT", "Observation/1", pb::Decision::Deny),
        (&reader, "DELETE", "Observation/1", pb::Decision::Deny),
        (&reader, "GET", "Condition/1", pb::Decision::Deny),
        (&writer, "POST", "Observation", pb::Decision::Allow),
        (&writer, "PUT", "Observation/1", pb::Decision::Allow),
        (&writer, "PATCH", "Observation/1", pb::Decision::Allow),
        (&writer, "DELETE", "Observation/1", pb::Decision::Allow),
        (&writer, "GET", "Observation/1", pb::Decision::Deny),
        (&writer, "GET", "Observation?code=x", pb::Decision::Deny),
    ];
    for (token, method, path, expected) in cases {
        let response = server.check(token, method, path).await;
        assert_eq!(
            decision(&response),
            expected,
            "{method} {path}: {}",
            response.message
        );
    }
    // A search by POST, with its parameters in the body.
    let search = server
        .check_request(post_search(&reader, "Observation/_search", "code=x"))
        .await;
    assert_eq!(decision(&search), pb::Decision::Allow, "{}", search.message);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allow_carries_grants_constraints_and_subject() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, "").await;
    let token = issuer.patient_token(
        "patient/Observation.rs?category=laboratory patient/Observation.sr",
        "123",
    );
    let response = server
        .check(&format!("Bearer {token}"), "GET", "Observation?code=x")
        .await;
    assert_eq!(decision(&response), pb::Decision::Allow);
    assert_eq!(reason(&response), pb::Reason::Granted);
    let grant = &response.grants[0];
    assert_eq!(grant.scope, "patient/Observation.rs?category=laboratory");
    assert_eq!(grant.context, pb::ScopeContext::Patient as i32);
    assert_eq!(grant.compartment, "Patient/123");
    assert_eq!(grant.compartment_params, ["subject", "performer"]);
    assert_eq!(
        grant.filters,
        [pb::Filter {
            param: "category".into(),
            values: vec!["laboratory".into()]
        }]
    );
    assert_eq!(grant.obligation, pb::Obligation::None as i32);
    assert_eq!(response.ignored_scopes[0].scope, "patient/Observation.sr");
    let subject = response.subject.expect("subject");
    assert_eq!(subject.patient, "123");
    assert_eq!(subject.client_id, "test-client");
    assert!(subject.expires_at > now());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_and_proposed_resources_are_checked_as_json_or_facts() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, "").await;
    let token = issuer.patient_token("patient/Observation.rus", "123");

    let mut own = check_http(&token, "GET", "Observation/obs-1");
    own.stored = json_resource(&observation("123"));
    let response = server.check_request(own).await;
    assert_eq!(decision(&response), pb::Decision::Allow);
    assert_eq!(
        response.grants[0].compartment, "",
        "membership was verified"
    );

    let mut other = check_http(&token, "GET", "Observation/obs-1");
    other.stored = json_resource(&observation("456"));
    assert_eq!(
        reason(&server.check_request(other).await),
        pb::Reason::OutsideCompartment
    );

    let mut moved = check_http(&token, "PUT", "Observation/obs-1");
    moved.stored = json_resource(&observation("123"));
    moved.proposed = json_resource(&observation("456"));
    assert_eq!(
        reason(&server.check_request(moved).await),
        pb::Reason::OutsideCompartment
    );

    let facts = |compartment: &str| {
        Some(pb::Resource {
            content: Some(pb::resource::Content::Facts(pb::ResourceFacts {
                compartments: vec![compartment.to_owned()],
                search_values: vec![],
            })),
        })
    };
    let mut by_facts = check_fhir(&token, fhir(pb::Interaction::Read, "Observation", "obs-1"));
    by_facts.stored = facts("Patient/123");
    assert_eq!(
        decision(&server.check_request(by_facts).await),
        pb::Decision::Allow
    );
    let mut other_facts = check_fhir(&token, fhir(pb::Interaction::Read, "Observation", "obs-1"));
    other_facts.stored = facts("Patient/456");
    assert_eq!(
        reason(&server.check_request(other_facts).await),
        pb::Reason::OutsideCompartment
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn structured_requests_decide_like_request_lines() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, "").await;
    let token = issuer.patient_token("patient/*.rs", "123");
    let mut search = fhir(pb::Interaction::SearchType, "Observation", "");
    search.params = vec![pb::SearchParam {
        name: "subject".into(),
        value: "Patient/456".into(),
    }];
    let response = server.check_request(check_fhir(&token, search)).await;
    assert_eq!(reason(&response), pb::Reason::OutsideCompartment);

    let mut compartment = fhir(pb::Interaction::SearchCompartment, "Observation", "");
    compartment.compartment = "Patient/123".into();
    assert_eq!(
        decision(&server.check_request(check_fhir(&token, compartment)).await),
        pb::Decision::Allow
    );

    let mut everything = fhir(pb::Interaction::Operation, "Patient", "123");
    everything.operation = "$everything".into();
    assert_eq!(
        decision(&server.check_request(check_fhir(&token, everything)).await),
        pb::Decision::Allow
    );

    let mut unknown = fhir(pb::Interaction::Operation, "Patient", "123");
    unknown.operation = "closure".into();
    assert_eq!(
        reason(&server.check_request(check_fhir(&token, unknown)).await),
        pb::Reason::UnsupportedRequest
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_endpoints_need_no_token() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, "").await;
    for path in ["metadata", ".well-known/smart-configuration"] {
        let response = server.check("", "GET", path).await;
        assert_eq!(decision(&response), pb::Decision::Allow, "{path}");
        assert_eq!(reason(&response), pb::Reason::PublicEndpoint);
    }
    let response = server.check("", "GET", "Observation/1").await;
    assert_eq!(decision(&response), pb::Decision::Deny);
    assert_eq!(reason(&response), pb::Reason::TokenMissing);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_invalid_argument_never_a_decision() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, "max_request_bytes = 65536").await;
    let token = issuer.patient_token("patient/*.rs", "123");
    let mut client = server.client.clone();

    let mut bad_json = check_http(&token, "GET", "Observation/1");
    bad_json.stored = Some(pb::Resource {
        content: Some(pb::resource::Content::Json(b"{not json".to_vec())),
    });
    let mut bad_facts = check_http(&token, "GET", "Observation/1");
    bad_facts.stored = Some(pb::Resource {
        content: Some(pb::resource::Content::Facts(pb::ResourceFacts {
            compartments: vec!["Patient".into()],
            search_values: vec![],
        })),
    });
    let unspecified = check_fhir(&token, pb::FhirRequest::default());
    let no_request = pb::CheckAccessRequest {
        access_token: token.clone(),
        ..Default::default()
    };
    let mut huge = check_http(&token, "POST", "Observation");
    huge.proposed = json_resource(
        &json!({"resourceType": "Observation", "note": [{"text": "x".repeat(100_000)}]}),
    );
    let cases = [
        (
            check_http(&token, "GET", "Observation/1/2/3/4/5"),
            "request.http",
        ),
        (
            check_http(&token, "TRACE", "Observation"),
            "unsupported http method",
        ),
        (check_http(&token, "GET", "Observation?code=%zz"), "percent"),
        (bad_json, "stored.json"),
        (bad_facts, "stored.facts.compartments"),
        (unspecified, "interaction"),
        (no_request, "set exactly one of fhir or http"),
    ];
    for (request, expected) in cases {
        let status = client.check_access(request).await.expect_err("invalid");
        assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
        assert!(
            status.message().contains(expected),
            "{expected}: {}",
            status.message()
        );
    }
    let status = client.check_access(huge).await.expect_err("too large");
    assert_eq!(
        status.code(),
        Code::ResourceExhausted,
        "{}",
        status.message()
    );
    assert!(
        status.message().contains("max_request_bytes"),
        "the message names the limit: {}",
        status.message()
    );
    // No retry gets it through: it carries no retry pushback, as a refusal for load does.
    assert!(
        status.metadata().get("grpc-retry-pushback-ms").is_none(),
        "{status:?}"
    );
    server.stop().await;
}
