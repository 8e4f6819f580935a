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

fn fhir(interaction: pb::Interaction, resource_type: &str, id: &str) -> pb::FhirRequest {
    pb::FhirRequest {
        interaction: interaction as i32,
        resource_type: resource_type.to_owned(),
        id: id.to_owned(),
        ..pb::FhirRequest::default()
    }
}

fn check_fhir(token: &str, request: pb::FhirRequest) -> pb::CheckAccessRequest {
    pb::CheckAccessRequest {
        access_token: token.to_owned(),
        request: Some(pb::check_access_request::Request::Fhir(request)),
        ..pb::CheckAccessRequest::default()
    }
}

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
        (&reader, "POST", "Observation/_search", pb::Decision::Allow),
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
    assert_eq!(status.code(), Code::OutOfRange, "{}", status.message());
    server.stop().await;
}

/// The rules of HTTP request lines are the pipeline's, the same as on the Envoy face.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_requests_follow_the_same_rules_as_on_the_envoy_face() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(
        &issuer,
        "[envoy]\npublic_paths = [\"Questionnaire/intake\"]\n",
    )
    .await;
    let token = issuer.patient_token("patient/Observation.rs", "123");
    let mut client = server.client.clone();

    // A method override naming another method: refused, as Envoy refuses it.
    let mut overridden = check_http(&token, "POST", "Observation/_search");
    if let Some(pb::check_access_request::Request::Http(http)) = &mut overridden.request {
        http.headers
            .insert("x-http-method-override".into(), "DELETE".into());
    }
    let status = client.check_access(overridden).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("method override"), "{status:?}");

    // The configured public paths are public for reads, without a token.
    let public = server.check("", "GET", "Questionnaire/intake").await;
    assert_eq!(decision(&public), pb::Decision::Allow);
    assert_eq!(reason(&public), pb::Reason::PublicEndpoint);
    let write = server.check("", "DELETE", "Questionnaire/intake").await;
    assert_eq!(decision(&write), pb::Decision::Deny);
    assert_eq!(reason(&write), pb::Reason::TokenMissing);
    server.stop().await;
}

/// A resource outside the Patient compartment is denied under patient/ scopes when any
/// reference it carries names another patient: a Binary's securityContext, the Composition
/// of a document Bundle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_resources_outside_the_compartment_about_another_patient_are_denied() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, "").await;
    let token = issuer.patient_token("patient/*.rs", "123");
    let binary = |patient: &str| {
        json!({
            "resourceType": "Binary", "id": "b1", "contentType": "application/pdf",
            "securityContext": {"reference": format!("Patient/{patient}")}
        })
    };
    let document = |patient: &str| {
        json!({
            "resourceType": "Bundle", "id": "d1", "type": "document",
            "entry": [{"resource": {
                "resourceType": "Composition", "status": "final",
                "subject": {"reference": format!("Patient/{patient}")}
            }}]
        })
    };
    for (path, stored, expected) in [
        ("Binary/b1", binary("456"), pb::Decision::Deny),
        ("Binary/b1", binary("123"), pb::Decision::Allow),
        ("Bundle/d1", document("456"), pb::Decision::Deny),
        ("Bundle/d1", document("123"), pb::Decision::Allow),
    ] {
        let mut request = check_http(&token, "GET", path);
        request.stored = json_resource(&stored);
        let response = server.check_request(request).await;
        assert_eq!(
            decision(&response),
            expected,
            "{path}: {}",
            response.message
        );
        if expected == pb::Decision::Deny {
            assert_eq!(reason(&response), pb::Reason::OutsideCompartment);
        }
    }
    server.stop().await;
}

/// The gRPC twin of the Envoy test: a batch with no entry is a deny, never an allow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_batch_is_denied() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, "").await;
    let token = issuer.patient_token("patient/*.cruds", "123");
    let response = server
        .client
        .clone()
        .batch_check_access(pb::BatchCheckAccessRequest {
            access_token: token,
            bundle_type: pb::BundleType::Transaction as i32,
            entries: Vec::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.decision, pb::Decision::Deny as i32);
    server.stop().await;
}

/// JSON with a member named twice is refused, wherever it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resources_with_duplicate_json_members_are_invalid() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, "").await;
    let token = issuer.patient_token("patient/Observation.crus", "123");
    let mut request = check_http(&token, "POST", "Observation");
    request.proposed = Some(pb::Resource {
        content: Some(pb::resource::Content::Json(
            br#"{"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                "subject": {"reference": "Patient/456"}, "subject": {"reference": "Patient/123"}}"#
                .to_vec(),
        )),
    });
    let status = server
        .client
        .clone()
        .check_access(request)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("duplicate member"), "{status:?}");
    server.stop().await;
}

/// The structured form is held to the request line's grammar: one parser for both forms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn structured_requests_are_held_to_the_request_line_grammar() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, "").await;
    let token = issuer.patient_token("patient/*.rs", "123");
    let mut vread = fhir(pb::Interaction::Vread, "Patient", "123");
    vread.version_id = "../../456".into();
    let mut public_with_type = fhir(pb::Interaction::Capabilities, "Patient", "456");
    public_with_type.compartment = "Patient/456".into();
    let mut smart_with_id = fhir(pb::Interaction::SmartConfiguration, "", "456");
    smart_with_id.params = vec![pb::SearchParam {
        name: "subject".into(),
        value: "Patient/456".into(),
    }];
    let cases = [
        ("version id", vread),
        (
            "id with a slash",
            fhir(pb::Interaction::Read, "Patient", "123/../456"),
        ),
        ("dot id", fhir(pb::Interaction::Read, "Patient", "..")),
        (
            "lower-case type",
            fhir(pb::Interaction::Read, "patient", "123"),
        ),
        ("public with a type", public_with_type),
        ("public with an id", smart_with_id),
    ];
    let mut client = server.client.clone();
    for (name, request) in cases {
        let status = client
            .check_access(check_fhir(&token, request))
            .await
            .expect_err(name);
        assert_eq!(status.code(), Code::InvalidArgument, "{name}: {status:?}");
    }
    server.stop().await;
}

/// A history or a vread is decided on the current version, which says nothing of the
/// versions it returns: the compartment stays a constraint on every one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn histories_keep_the_compartment_for_every_version() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, "").await;
    let token = issuer.patient_token("patient/Observation.rs", "123");
    for path in ["Observation/obs-1/_history", "Observation/obs-1/_history/1"] {
        let mut request = check_http(&token, "GET", path);
        request.stored = json_resource(&observation("123"));
        let response = server.check_request(request).await;
        assert_eq!(decision(&response), pb::Decision::Allow, "{path}");
        assert_eq!(response.grants[0].compartment, "Patient/123", "{path}");
    }
    let mut current = check_http(&token, "GET", "Observation/obs-1");
    current.stored = json_resource(&observation("123"));
    assert_eq!(
        server.check_request(current).await.grants[0].compartment,
        ""
    );
    server.stop().await;
}

/// A conditional reference is a search the server runs for the token before any
/// constraint applies: under patient/ scopes it is denied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_references_are_decided_as_searches() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, "").await;
    let token = issuer.patient_token("patient/Observation.cruds patient/Patient.rs", "123");
    let mut resource = observation("123");
    resource.as_object_mut().unwrap().remove("id");
    resource["performer"] =
        json!([{"reference": "Patient?identifier=http://hospital.example/mrn|999"}]);
    let mut request = check_http(&token, "POST", "Observation");
    request.proposed = json_resource(&resource);
    let response = server.check_request(request).await;
    assert_eq!(
        decision(&response),
        pb::Decision::Deny,
        "{}",
        response.message
    );
    assert_eq!(reason(&response), pb::Reason::OutsideCompartment);
    assert!(
        response.message.contains("conditional reference"),
        "{}",
        response.message
    );
    server.stop().await;
}
