//! One service, two FHIR servers: a token is honoured only by the server its `aud` names,
//! from an issuer that server trusts, on every face (CheckAccess, BatchCheckAccess,
//! IntrospectToken, Envoy's Check). The confused deputy of a shared authorizer, closed.
//! Over real TLS, as a shared service is deployed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a panic is a failed test"
)]

mod common;

use common::envoy::{check_request, denied_response, envoy_check, ok_response};
use common::tls::Pki;
use common::{RSA_1, TestIssuer, TestServer, check_http, decision, reason, sign};
use serde_json::json;
use smart_authz::grpc::pb;
use tonic::Code;

const SERVER_A: &str = "https://a.example/fhir";
const SERVER_B: &str = "https://b.example/fhir";

/// Issuer `shared` is trusted by both servers, issuer `only_a` by A alone.
struct Tenants {
    shared: TestIssuer,
    only_a: TestIssuer,
    server: TestServer,
    _pki: Pki,
}

impl Tenants {
    async fn start() -> Self {
        let shared = TestIssuer::start(&[&RSA_1]).await;
        let only_a = TestIssuer::start(&[&RSA_1]).await;
        let config = format!(
            r#"
[[issuers]]
issuer = "{shared_issuer}"
jwks_uri = "{shared_jwks}"

[[issuers]]
issuer = "{only_a_issuer}"
jwks_uri = "{only_a_jwks}"

[[fhir_servers]]
name = "a"
base_urls = ["{SERVER_A}"]
issuers = ["{shared_issuer}", "{only_a_issuer}"]
envoy_prefixes = ["/a/fhir/"]
public_paths = ["Questionnaire"]

[[fhir_servers]]
name = "b"
base_urls = ["{SERVER_B}"]
issuers = ["{shared_issuer}"]
envoy_prefixes = ["/b/fhir/"]
"#,
            shared_issuer = shared.issuer,
            shared_jwks = shared.jwks_uri,
            only_a_issuer = only_a.issuer,
            only_a_jwks = only_a.jwks_uri,
        );
        let pki = Pki::new("tenants CA");
        let config = format!("{config}{}", pki.tls_toml(&pki.server(), None));
        let server = TestServer::start_tls(&config, &pki.ca_pem(), None).await;
        Tenants {
            shared,
            only_a,
            server,
            _pki: pki,
        }
    }
}

fn asking(mut request: pb::CheckAccessRequest, server: &str) -> pb::CheckAccessRequest {
    request.fhir_server = server.to_owned();
    request
}

#[tokio::test]
async fn a_token_for_one_server_is_refused_when_the_other_asks() {
    let tenants = Tenants::start().await;
    let for_a = tenants.shared.token_for(SERVER_A);
    let read = check_http(&for_a, "GET", "Patient/123");

    let allowed = tenants
        .server
        .check_request(asking(read.clone(), "a"))
        .await;
    assert_eq!(decision(&allowed), pb::Decision::Allow);
    // Named by its base URL, with or without the trailing slash.
    let by_url = asking(read.clone(), "https://a.example/fhir/");
    assert_eq!(
        decision(&tenants.server.check_request(by_url).await),
        pb::Decision::Allow
    );

    let refused = tenants
        .server
        .check_request(asking(read.clone(), "b"))
        .await;
    assert_eq!(decision(&refused), pb::Decision::Deny);
    assert_eq!(reason(&refused), pb::Reason::TokenWrongAudience);

    let for_b = tenants.shared.token_for(SERVER_B);
    let refused = tenants
        .server
        .check_request(asking(check_http(&for_b, "GET", "Patient/123"), "a"))
        .await;
    assert_eq!(reason(&refused), pb::Reason::TokenWrongAudience);
}

#[tokio::test]
async fn an_issuer_trusted_by_one_server_only_is_refused_by_the_other() {
    let tenants = Tenants::start().await;
    let a_issuer_for_a = tenants.only_a.token_for(SERVER_A);
    let allowed = tenants
        .server
        .check_request(asking(
            check_http(&a_issuer_for_a, "GET", "Patient/123"),
            "a",
        ))
        .await;
    assert_eq!(decision(&allowed), pb::Decision::Allow);

    // Even with B's audience, B does not trust this issuer.
    let a_issuer_for_b = tenants.only_a.token_for(SERVER_B);
    let refused = tenants
        .server
        .check_request(asking(
            check_http(&a_issuer_for_b, "GET", "Patient/123"),
            "b",
        ))
        .await;
    assert_eq!(decision(&refused), pb::Decision::Deny);
    assert_eq!(reason(&refused), pb::Reason::TokenWrongIssuer);
}

#[tokio::test]
async fn a_request_must_name_a_configured_server() {
    let tenants = Tenants::start().await;
    let for_a = tenants.shared.token_for(SERVER_A);
    for named in ["", "c", "https://c.example/fhir"] {
        let error = tenants
            .server
            .client
            .clone()
            .check_access(asking(check_http(&for_a, "GET", "Patient/123"), named))
            .await
            .expect_err("no such server");
        assert_eq!(error.code(), Code::InvalidArgument, "{named:?}");
        assert!(error.message().contains("fhir_server"), "{error:?}");
    }
}

#[tokio::test]
async fn batches_are_decided_for_the_server_that_asks() {
    let tenants = Tenants::start().await;
    let for_a = tenants.shared.token_for(SERVER_A);
    let batch = |server: &str| pb::BatchCheckAccessRequest {
        access_token: for_a.clone(),
        bundle_type: pb::BundleType::Batch as i32,
        entries: vec![pb::BatchEntry {
            request: Some(pb::batch_entry::Request::Http(pb::HttpRequest {
                method: "GET".into(),
                path: "Observation?patient=123".into(),
                ..Default::default()
            })),
            ..Default::default()
        }],
        fhir_server: server.to_owned(),
        ..Default::default()
    };
    let mut client = tenants.server.client.clone();
    let allowed = client
        .batch_check_access(batch("a"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(allowed.decision, pb::Decision::Allow as i32);
    let refused = client
        .batch_check_access(batch("b"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(refused.decision, pb::Decision::Deny as i32);
    assert_eq!(refused.reason, pb::Reason::TokenWrongAudience as i32);
    let error = client.batch_check_access(batch("")).await.unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn introspection_answers_for_the_server_that_asks() {
    let tenants = Tenants::start().await;
    let for_a = tenants.shared.token_for(SERVER_A);
    let introspect = |server: &str| pb::IntrospectTokenRequest {
        token: for_a.clone(),
        fhir_server: server.to_owned(),
        ..Default::default()
    };
    let mut client = tenants.server.client.clone();
    let active = client
        .introspect_token(introspect("a"))
        .await
        .unwrap()
        .into_inner();
    assert!(active.active);
    let inactive = client
        .introspect_token(introspect("b"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        inactive,
        pb::IntrospectTokenResponse::default(),
        "active: false alone"
    );
    let error = client.introspect_token(introspect("")).await.unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn envoy_requests_are_decided_for_the_server_of_their_prefix() {
    let tenants = Tenants::start().await;
    let for_a = tenants.shared.token_for(SERVER_A);
    let server = &tenants.server;

    let allowed = envoy_check(
        server,
        check_request("GET", "/a/fhir/Patient/123", Some(&for_a), &[], None),
    )
    .await;
    ok_response(&allowed);

    let refused = envoy_check(
        server,
        check_request("GET", "/b/fhir/Patient/123", Some(&for_a), &[], None),
    )
    .await;
    let (headers, outcome) = denied_response(&refused, 401);
    assert!(
        headers["www-authenticate"].contains("audience"),
        "{headers:?}"
    );
    assert!(
        outcome["issue"][0]["diagnostics"]
            .as_str()
            .is_some_and(|message| message.contains("audience")),
        "{outcome}"
    );

    let nowhere = envoy_check(
        server,
        check_request("GET", "/c/fhir/Patient/123", Some(&for_a), &[], None),
    )
    .await;
    denied_response(&nowhere, 403);
}

/// A server's own public paths are public on it alone.
#[tokio::test]
async fn public_paths_of_one_server_are_not_public_on_another() {
    let tenants = Tenants::start().await;
    let server = &tenants.server;
    let public = envoy_check(
        server,
        check_request("GET", "/a/fhir/Questionnaire", None, &[], None),
    )
    .await;
    ok_response(&public);
    let elsewhere = envoy_check(
        server,
        check_request("GET", "/b/fhir/Questionnaire", None, &[], None),
    )
    .await;
    denied_response(&elsewhere, 401);
    let mut grpc = check_http("", "GET", "Questionnaire");
    grpc.fhir_server = "b".to_owned();
    assert_eq!(
        decision(&server.check_request(grpc).await),
        pb::Decision::Deny
    );
}

#[tokio::test]
async fn absolute_references_are_local_only_under_the_servers_base_url() {
    let tenants = Tenants::start().await;
    let for_a = tenants.shared.token_for(SERVER_A);
    let read_with_subject = |subject: &str| {
        let mut observation = common::observation("123");
        observation["subject"] = json!({ "reference": subject });
        let mut request = asking(check_http(&for_a, "GET", "Observation/obs-1"), "a");
        request.stored = common::json_resource(&observation);
        request
    };
    let ours = tenants
        .server
        .check_request(read_with_subject(&format!("{SERVER_A}/Patient/123")))
        .await;
    assert_eq!(decision(&ours), pb::Decision::Allow);
    let theirs = tenants
        .server
        .check_request(read_with_subject(&format!("{SERVER_B}/Patient/123")))
        .await;
    assert_eq!(decision(&theirs), pb::Decision::Deny);
    assert_eq!(reason(&theirs), pb::Reason::OutsideCompartment);
}

/// A `patient` claim written as an absolute URL names a patient of the server at that base:
/// for server A, B's `Patient/123` is no patient in context, on either face; the patient
/// header and the introspection answer name none (a grant from another scope still allows,
/// without it).
#[tokio::test]
async fn a_patient_claim_under_another_base_is_no_patient_of_this_server() {
    let tenants = Tenants::start().await;
    let token_with_patient = |patient: &str| {
        let mut claims = tenants
            .shared
            .claims("patient/Observation.rs system/Patient.rs");
        claims["aud"] = json!(SERVER_A);
        claims["patient"] = json!(patient);
        common::sign(&RSA_1, &claims)
    };
    let foreign = token_with_patient(&format!("{SERVER_B}/Patient/123"));
    let local = token_with_patient(&format!("{SERVER_A}/Patient/123"));

    let search = |token: &str| asking(check_http(token, "GET", "Observation?code=1234-5"), "a");
    let allowed = tenants.server.check_request(search(&local)).await;
    assert_eq!(decision(&allowed), pb::Decision::Allow);
    let refused = tenants.server.check_request(search(&foreign)).await;
    assert_eq!(decision(&refused), pb::Decision::Deny);
    assert_eq!(reason(&refused), pb::Reason::MissingPatientContext);

    let envoy = |token: &str, path: &str| {
        check_request(
            "GET",
            path,
            Some(token),
            &[("x-smart-patient", "999")],
            None,
        )
    };
    let read = envoy_check(
        &tenants.server,
        envoy(&local, "/a/fhir/Observation?code=1234-5"),
    )
    .await;
    assert_eq!(ok_response(&read).set["x-smart-patient"], "123");
    let refused = envoy_check(
        &tenants.server,
        envoy(&foreign, "/a/fhir/Observation?code=1234-5"),
    )
    .await;
    denied_response(&refused, 403);
    let by_system_scope =
        envoy_check(&tenants.server, envoy(&foreign, "/a/fhir/Patient/123")).await;
    let allowed = ok_response(&by_system_scope);
    assert!(
        !allowed.set.contains_key("x-smart-patient"),
        "{:?}",
        allowed.set
    );
    assert!(allowed.removed.contains(&"x-smart-patient"));

    let mut client = tenants.server.client.clone();
    for (token, patient) in [(&local, "123"), (&foreign, "")] {
        let answer = client
            .introspect_token(pb::IntrospectTokenRequest {
                token: token.clone(),
                fhir_server: "a".to_owned(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(answer.active);
        assert_eq!(answer.patient, patient);
    }
}

/// The implicit server behind Envoy bases of two FHIR releases. gRPC names no base, so each
/// request names its release (`fhir_version`) and is decided in it, as Envoy's request under
/// that release's base is: `NutritionIntake` exists in R5 only.
#[tokio::test]
async fn a_server_of_two_releases_decides_each_request_in_the_one_it_names() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(
        &issuer,
        "fhir_version = \"r4\"\n[envoy]\nbases = [{ prefix = \"/fhir/R4/\" }, { prefix = \"/fhir/R5/\", fhir_version = \"r5\" }]\n",
    )
    .await;
    let mut claims = issuer.claims("user/*.rs");
    claims["fhirUser"] = json!("Practitioner/p1");
    let token = sign(&RSA_1, &claims);
    let read = |release: &str| pb::CheckAccessRequest {
        fhir_version: release.to_owned(),
        ..check_http(&token, "GET", "NutritionIntake/n1")
    };
    let mut client = server.client.clone();

    let error = client.check_access(read("")).await.unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    assert!(
        error.message().contains("fhir_version: required"),
        "{error:?}"
    );
    assert_eq!(
        decision(&server.check_request(read("R5")).await),
        pb::Decision::Allow
    );
    assert_eq!(
        decision(&server.check_request(read("5.0.0")).await),
        pb::Decision::Allow
    );
    let in_r4 = server.check_request(read("r4")).await;
    assert_eq!(reason(&in_r4), pb::Reason::UnsupportedRequest);
    assert!(in_r4.message.contains("in FHIR R4"), "{in_r4:?}");
    for refused in ["R4B", "R6"] {
        let error = client.check_access(read(refused)).await.unwrap_err();
        assert_eq!(error.code(), Code::InvalidArgument, "{refused}");
        assert!(error.message().contains("fhir_version"), "{error:?}");
    }

    // Envoy's request says its release by its base.
    let allowed = envoy_check(
        &server,
        check_request(
            "GET",
            "/fhir/R5/NutritionIntake/n1",
            Some(&token),
            &[],
            None,
        ),
    )
    .await;
    ok_response(&allowed);
    let refused = envoy_check(
        &server,
        check_request(
            "GET",
            "/fhir/R4/NutritionIntake/n1",
            Some(&token),
            &[],
            None,
        ),
    )
    .await;
    assert_ne!(refused.status.unwrap().code, Code::Ok as i32);

    let batch = |release: &str| pb::BatchCheckAccessRequest {
        access_token: token.clone(),
        bundle_type: pb::BundleType::Batch as i32,
        entries: vec![pb::BatchEntry {
            request: Some(pb::batch_entry::Request::Http(pb::HttpRequest {
                method: "GET".into(),
                path: "NutritionIntake/n1".into(),
                ..Default::default()
            })),
            ..Default::default()
        }],
        fhir_version: release.to_owned(),
        ..Default::default()
    };
    let error = client.batch_check_access(batch("")).await.unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    let allowed = client.batch_check_access(batch("r5")).await.unwrap();
    assert_eq!(allowed.get_ref().decision, pb::Decision::Allow as i32);

    let filter = |release: &str| pb::FilterResourcesRequest {
        access_token: token.clone(),
        request: Some(pb::filter_resources_request::Request::Http(
            pb::HttpRequest {
                method: "GET".into(),
                path: "NutritionIntake/n1".into(),
                ..Default::default()
            },
        )),
        response: json!({ "resourceType": "NutritionIntake", "id": "n1" })
            .to_string()
            .into_bytes(),
        fhir_version: release.to_owned(),
        ..Default::default()
    };
    let error = client.filter_resources(filter("")).await.unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    assert!(client.filter_resources(filter("R5")).await.is_ok());

    // Introspection decides nothing, so needs no release.
    let active = client
        .introspect_token(pb::IntrospectTokenRequest {
            token: token.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(active.get_ref().active);
    server.stop().await;
}
