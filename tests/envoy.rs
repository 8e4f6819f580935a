//! The ext_authz face, called as Envoy calls it: a tonic client of
//! `envoy.service.auth.v3.Authorization/Check` built from the same `envoy-types` crate,
//! sending realistic `CheckRequest`s and asserting the whole answer.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a panic is a failed test"
)]

mod common;

use std::collections::HashMap;

use common::*;
use envoy_types::ext_authz::v3::pb::{CheckRequest, CheckResponse, HttpResponse};
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use serde_json::{Value, json};
use tonic::Code;

const ENVOY_CONFIG: &str = r#"
[envoy]
narrow_searches = true
bases = [
  { prefix = "/fhir/R4/" },
  { prefix = "/fhir/R5/", fhir_version = "r5" },
]
"#;

fn check_request(
    method: &str,
    path: &str,
    token: Option<&str>,
    extra_headers: &[(&str, &str)],
    body: Option<&Value>,
) -> CheckRequest {
    let mut headers: HashMap<String, String> = extra_headers
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    headers.insert(":authority".into(), "fhir.example".into());
    if let Some(token) = token {
        headers.insert("authorization".into(), format!("Bearer {token}"));
    }
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                http: Some(HttpRequest {
                    method: method.into(),
                    path: path.into(),
                    headers,
                    body: body.map(Value::to_string).unwrap_or_default(),
                    ..HttpRequest::default()
                }),
                ..Request::default()
            }),
            ..AttributeContext::default()
        }),
    }
}

async fn envoy_check(server: &TestServer, request: CheckRequest) -> CheckResponse {
    AuthorizationClient::new(server.channel.clone())
        .check(request)
        .await
        .expect("Check answers")
        .into_inner()
}

struct Allowed<'a> {
    set: HashMap<&'a str, &'a str>,
    removed: Vec<&'a str>,
    query: Vec<(&'a str, &'a str)>,
}

fn ok_response(response: &CheckResponse) -> Allowed<'_> {
    assert_eq!(
        response.status.as_ref().unwrap().code,
        Code::Ok as i32,
        "{response:?}"
    );
    let Some(HttpResponse::OkResponse(ok)) = &response.http_response else {
        panic!("expected an OkHttpResponse: {response:?}");
    };
    Allowed {
        set: ok
            .headers
            .iter()
            .map(|option| {
                let header = option.header.as_ref().unwrap();
                (header.key.as_str(), header.value.as_str())
            })
            .collect(),
        removed: ok.headers_to_remove.iter().map(String::as_str).collect(),
        query: ok
            .query_parameters_to_set
            .iter()
            .map(|param| (param.key.as_str(), param.value.as_str()))
            .collect(),
    }
}

fn denied_response(response: &CheckResponse, http_status: u16) -> (HashMap<&str, &str>, Value) {
    let Some(HttpResponse::DeniedResponse(denied)) = &response.http_response else {
        panic!("expected a DeniedHttpResponse: {response:?}");
    };
    assert_eq!(denied.status.as_ref().unwrap().code, http_status as i32);
    assert_ne!(response.status.as_ref().unwrap().code, Code::Ok as i32);
    let headers = denied
        .headers
        .iter()
        .map(|option| {
            let header = option.header.as_ref().unwrap();
            (header.key.as_str(), header.value.as_str())
        })
        .collect();
    let body: Value = serde_json::from_str(&denied.body).expect("an OperationOutcome");
    assert_eq!(body["resourceType"], "OperationOutcome");
    (headers, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_and_searches_pass_with_the_smart_headers() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, ENVOY_CONFIG).await;
    let token = issuer.patient_token("patient/Observation.rs launch/patient", "123");

    let read = envoy_check(
        &server,
        check_request("GET", "/fhir/R4/Observation/1", Some(&token), &[], None),
    )
    .await;
    let ok = ok_response(&read);
    assert_eq!(ok.set["x-smart-patient"], "123");
    assert_eq!(ok.set["x-smart-client-id"], "test-client");
    assert_eq!(
        ok.set["x-smart-scopes"],
        "patient/Observation.rs launch/patient"
    );
    let constraints: Value = serde_json::from_str(ok.set["x-smart-constraints"]).unwrap();
    assert_eq!(constraints["grants"][0]["compartment"], "Patient/123");
    assert_eq!(
        constraints["grants"][0]["compartment_params"],
        json!(["subject", "performer"])
    );
    assert!(ok.query.is_empty(), "reads are never narrowed");

    let search = envoy_check(
        &server,
        check_request(
            "GET",
            "/fhir/R4/Observation?code=2345-7",
            Some(&token),
            &[],
            None,
        ),
    )
    .await;
    assert_eq!(ok_response(&search).query, [("patient", "Patient/123")]);

    let compartment = envoy_check(
        &server,
        check_request(
            "GET",
            "/fhir/R4/Patient/123/Observation",
            Some(&token),
            &[],
            None,
        ),
    )
    .await;
    assert!(
        ok_response(&compartment).query.is_empty(),
        "a compartment search is already narrowed"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scope_denials_are_403_with_an_operation_outcome() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, ENVOY_CONFIG).await;
    let token = issuer.patient_token("patient/Observation.rs", "123");
    for path in [
        "/fhir/R4/Patient/456/Observation",
        "/fhir/R4/Observation?subject=Patient/456",
        "/fhir/R4/Condition/1",
    ] {
        let response =
            envoy_check(&server, check_request("GET", path, Some(&token), &[], None)).await;
        let (headers, body) = denied_response(&response, 403);
        assert!(
            headers["www-authenticate"].starts_with("Bearer error=\"insufficient_scope\""),
            "{path}"
        );
        assert_eq!(headers["content-type"], "application/fhir+json");
        assert!(
            !body.to_string().contains(&token),
            "the body never contains the token"
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_problems_are_401() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, ENVOY_CONFIG).await;
    let missing = envoy_check(
        &server,
        check_request("GET", "/fhir/R4/Observation/1", None, &[], None),
    )
    .await;
    let (headers, _) = denied_response(&missing, 401);
    assert_eq!(headers["www-authenticate"], "Bearer");

    let mut claims = issuer.claims("patient/*.rs");
    claims["patient"] = json!("123");
    claims["exp"] = json!(now() - 3600);
    let expired = sign(&RSA_1, &claims);
    let response = envoy_check(
        &server,
        check_request("GET", "/fhir/R4/Observation/1", Some(&expired), &[], None),
    )
    .await;
    let (headers, body) = denied_response(&response, 401);
    assert!(headers["www-authenticate"].starts_with("Bearer error=\"invalid_token\""));
    assert_eq!(body["issue"][0]["diagnostics"], "token expired");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_endpoints_pass_without_a_token() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, ENVOY_CONFIG).await;
    for path in [
        "/fhir/R4/metadata",
        "/fhir/R5/.well-known/smart-configuration",
    ] {
        let response = envoy_check(
            &server,
            check_request("GET", path, None, &[("x-smart-patient", "999")], None),
        )
        .await;
        let ok = ok_response(&response);
        assert!(!ok.set.contains_key("x-smart-patient"), "{path}");
        assert!(
            ok.removed.contains(&"x-smart-patient"),
            "{path}: a spoofed header is removed"
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_are_checked_against_the_forwarded_body() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, ENVOY_CONFIG).await;
    let token = issuer.patient_token("patient/Observation.c", "123");
    let own = envoy_check(
        &server,
        check_request(
            "POST",
            "/fhir/R4/Observation",
            Some(&token),
            &[],
            Some(&observation("123")),
        ),
    )
    .await;
    let constraints: Value =
        serde_json::from_str(ok_response(&own).set["x-smart-constraints"]).unwrap();
    assert_eq!(
        constraints["grants"][0].get("compartment"),
        None,
        "membership was verified on the body"
    );

    let other = envoy_check(
        &server,
        check_request(
            "POST",
            "/fhir/R4/Observation",
            Some(&token),
            &[],
            Some(&observation("456")),
        ),
    )
    .await;
    denied_response(&other, 403);

    let garbage = envoy_check(
        &server,
        check_request(
            "POST",
            "/fhir/R4/Observation",
            Some(&token),
            &[],
            Some(&json!("not a resource")),
        ),
    )
    .await;
    denied_response(&garbage, 400);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_sent_smart_headers_are_replaced_or_removed() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, ENVOY_CONFIG).await;
    let token = issuer.patient_token("patient/Observation.rs", "123");
    let spoofed = [
        ("x-smart-patient", "999"),
        ("x-smart-fhir-user", "Practitioner/1"),
        ("x-smart-role", "admin"),
    ];
    let response = envoy_check(
        &server,
        check_request(
            "GET",
            "/fhir/R4/Observation/1",
            Some(&token),
            &spoofed,
            None,
        ),
    )
    .await;
    let ok = ok_response(&response);
    assert_eq!(
        ok.set["x-smart-patient"], "123",
        "overwritten with the token's patient"
    );
    let mut removed = ok.removed.clone();
    removed.sort_unstable();
    assert_eq!(
        removed,
        ["x-smart-fhir-user", "x-smart-role"],
        "the token has no fhirUser: the spoofed one goes"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bases_choose_the_fhir_version_and_other_paths_are_refused() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, ENVOY_CONFIG).await;
    let token = issuer.patient_token(
        "patient/DeviceUsage.rs patient/DeviceUseStatement.rs",
        "123",
    );
    ok_response(
        &envoy_check(
            &server,
            check_request(
                "GET",
                "/fhir/R5/DeviceUsage?code=x",
                Some(&token),
                &[],
                None,
            ),
        )
        .await,
    );
    ok_response(
        &envoy_check(
            &server,
            check_request(
                "GET",
                "/fhir/R4/DeviceUseStatement?code=x",
                Some(&token),
                &[],
                None,
            ),
        )
        .await,
    );
    denied_response(
        &envoy_check(
            &server,
            check_request(
                "GET",
                "/fhir/R4/DeviceUsage?code=x",
                Some(&token),
                &[],
                None,
            ),
        )
        .await,
        400,
    );
    denied_response(
        &envoy_check(
            &server,
            check_request("GET", "/admin/users", Some(&token), &[], None),
        )
        .await,
        403,
    );
    denied_response(
        &envoy_check(
            &server,
            check_request(
                "GET",
                "/fhir/R4/Observation/1/2/3/4/5",
                Some(&token),
                &[],
                None,
            ),
        )
        .await,
        400,
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_are_decided_from_the_forwarded_bundle() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, ENVOY_CONFIG).await;
    let token = issuer.patient_token("patient/Observation.c", "123");
    let bundle = |patient: &str| {
        json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": observation("123"), "request": {"method": "POST", "url": "Observation"}},
            {"resource": observation(patient), "request": {"method": "POST", "url": "Observation"}}
        ]})
    };
    ok_response(
        &envoy_check(
            &server,
            check_request("POST", "/fhir/R4/", Some(&token), &[], Some(&bundle("123"))),
        )
        .await,
    );
    denied_response(
        &envoy_check(
            &server,
            check_request("POST", "/fhir/R4/", Some(&token), &[], Some(&bundle("456"))),
        )
        .await,
        403,
    );
    denied_response(
        &envoy_check(
            &server,
            check_request("POST", "/fhir/R4/", Some(&token), &[], None),
        )
        .await,
        403,
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authorizer_that_cannot_decide_answers_with_a_grpc_error() {
    let config = format!("{ENVOY_CONFIG}\n{}", unreachable_issuer_toml());
    let server = TestServer::start(&config).await;
    let claims = json!({"iss": UNREACHABLE_ISSUER, "aud": AUDIENCE, "exp": now() + 600, "scope": "patient/*.rs", "patient": "123"});
    let request = check_request(
        "GET",
        "/fhir/R4/Observation/1",
        Some(&sign(&RSA_1, &claims)),
        &[],
        None,
    );
    let status = AuthorizationClient::new(server.channel.clone())
        .check(request)
        .await
        .expect_err("cannot decide");
    // Envoy's failure_mode_allow (keep it false) decides what a failed Check means.
    assert_eq!(status.code(), Code::Unavailable, "{}", status.message());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_searches_are_decided_on_their_body_parameters() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, ENVOY_CONFIG).await;
    let token = issuer.patient_token("patient/Observation.rs", "123");
    let search = |body: Option<&str>, headers: &[(&str, &str)]| {
        let mut request = check_request(
            "POST",
            "/fhir/R4/Observation/_search",
            Some(&token),
            headers,
            None,
        );
        let http = request
            .attributes
            .as_mut()
            .unwrap()
            .request
            .as_mut()
            .unwrap()
            .http
            .as_mut()
            .unwrap();
        http.body = body.unwrap_or_default().to_owned();
        request
    };
    ok_response(
        &envoy_check(
            &server,
            search(Some("code=2345-7&patient=Patient%2F123"), &[]),
        )
        .await,
    );
    denied_response(
        &envoy_check(&server, search(Some("patient=Patient%2F999"), &[])).await,
        403,
    );
    // Not forwarded (or truncated): cannot be judged.
    denied_response(&envoy_check(&server, search(None, &[])).await, 403);
    ok_response(&envoy_check(&server, search(None, &[("content-length", "0")])).await);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_paths_are_public_for_reads_only_and_dot_segments_never_pass() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let config = ENVOY_CONFIG.replace(
        "narrow_searches = true",
        "narrow_searches = true\npublic_paths = [\"Questionnaire\"]",
    );
    let server = TestServer::for_issuer(&issuer, &config).await;
    ok_response(
        &envoy_check(
            &server,
            check_request("GET", "/fhir/R4/Questionnaire", None, &[], None),
        )
        .await,
    );
    denied_response(
        &envoy_check(
            &server,
            check_request("POST", "/fhir/R4/Questionnaire", None, &[], None),
        )
        .await,
        401,
    );
    denied_response(
        &envoy_check(
            &server,
            check_request(
                "DELETE",
                "/fhir/R4/Questionnaire?status=active",
                None,
                &[],
                None,
            ),
        )
        .await,
        401,
    );

    let token = issuer.patient_token("user/Observation.r", "123");
    for path in [
        "/fhir/R4/Observation/..?_type=Patient",
        "/fhir/R4/Observation/../_history",
        "/fhir/R4/metadata/../Patient/1",
    ] {
        denied_response(
            &envoy_check(&server, check_request("GET", path, Some(&token), &[], None)).await,
            400,
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_method_override_is_refused_rather_than_misjudged() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, ENVOY_CONFIG).await;
    let token = issuer.patient_token("patient/Observation.rs", "123");
    let overridden = check_request(
        "GET",
        "/fhir/R4/Observation/1",
        Some(&token),
        &[("x-http-method-override", "DELETE")],
        None,
    );
    denied_response(&envoy_check(&server, overridden).await, 400);
    let same = check_request(
        "GET",
        "/fhir/R4/Observation/1",
        Some(&token),
        &[("x-http-method-override", "get")],
        None,
    );
    ok_response(&envoy_check(&server, same).await);
    server.stop().await;
}

/// The token is judged before the body is read: a caller without a valid token learns
/// nothing about its body, and costs no parsing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_is_answered_before_the_body_is_read() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, ENVOY_CONFIG).await;
    let garbage = json!("not a resource");
    for (method, path) in [
        ("POST", "/fhir/R4/Observation"),
        ("POST", "/fhir/R4/"),
        ("POST", "/fhir/R4/Observation/_search"),
    ] {
        let response = envoy_check(
            &server,
            check_request(method, path, Some("not-a-token"), &[], Some(&garbage)),
        )
        .await;
        denied_response(&response, 401);
    }
    // With a valid token the same body is what is refused.
    let token = issuer.patient_token("patient/Observation.cruds", "123");
    let response = envoy_check(
        &server,
        check_request(
            "POST",
            "/fhir/R4/Observation",
            Some(&token),
            &[],
            Some(&garbage),
        ),
    )
    .await;
    denied_response(&response, 400);
    server.stop().await;
}

/// An entry url is relative when its path is: URLs in its query are ordinary FHIR.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundle_entries_whose_query_holds_a_url_are_decided() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, ENVOY_CONFIG).await;
    let token = issuer.patient_token("patient/Observation.rus", "123");
    let bundle = |kind: &str, entries: Value| json!({"resourceType": "Bundle", "type": kind, "entry": entries});
    let searches = bundle(
        "batch",
        json!([
            {"request": {"method": "GET", "url": "Observation?code=http://loinc.org|8867-4"}},
            {"request": {"method": "GET", "url": "Observation?code=http%3A%2F%2Floinc.org%7C8867-4"}}
        ]),
    );
    ok_response(
        &envoy_check(
            &server,
            check_request("POST", "/fhir/R4/", Some(&token), &[], Some(&searches)),
        )
        .await,
    );
    let conditional = bundle(
        "transaction",
        json!([{
            "resource": {
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": "weight"},
                "subject": {"reference": "Patient/123"}
            },
            "request": {"method": "PUT", "url": "Observation?identifier=http://hospital.example/obs|6323"}
        }]),
    );
    ok_response(
        &envoy_check(
            &server,
            check_request("POST", "/fhir/R4/", Some(&token), &[], Some(&conditional)),
        )
        .await,
    );
    let absolute = bundle(
        "batch",
        json!([{"request": {"method": "GET", "url": "http://other.example.org/fhir/Observation/1"}}]),
    );
    let response = envoy_check(
        &server,
        check_request("POST", "/fhir/R4/", Some(&token), &[], Some(&absolute)),
    )
    .await;
    let (_, body) = denied_response(&response, 400);
    assert!(
        body["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("absolute URL"),
        "{body}"
    );
    server.stop().await;
}

/// Anything but a well-formed Bundle whose every entry was decided and allowed is a deny:
/// a server that reads a single object as a one-entry list would otherwise run an entry
/// nobody decided.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_whose_entries_were_not_all_decided_is_denied() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, ENVOY_CONFIG).await;
    let token = issuer.patient_token("patient/*.cruds", "123");
    let delete = json!({"request": {"method": "DELETE", "url": "Observation/1"}});
    for (name, bundle, status) in [
        (
            "no entry",
            json!({"resourceType": "Bundle", "type": "transaction"}),
            400,
        ),
        (
            "entry: []",
            json!({"resourceType": "Bundle", "type": "transaction", "entry": []}),
            400,
        ),
        (
            "entry: null",
            json!({"resourceType": "Bundle", "type": "transaction", "entry": null}),
            400,
        ),
        (
            "entry: one object",
            json!({"resourceType": "Bundle", "type": "batch", "entry": delete}),
            400,
        ),
    ] {
        let response = envoy_check(
            &server,
            check_request("POST", "/fhir/R4/", Some(&token), &[], Some(&bundle)),
        )
        .await;
        assert!(
            response.status.as_ref().unwrap().code != 0,
            "{name}: allowed"
        );
        denied_response(&response, status);
    }
    server.stop().await;
}

/// A resource outside the Patient compartment that is known to be about another patient is
/// never written under patient/ scopes (reads of stored versions are checked through
/// `CheckAccess`, which carries them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binary_of_another_patient_is_not_written_under_patient_scopes() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, ENVOY_CONFIG).await;
    let token = issuer.patient_token("patient/*.cruds", "123");
    let binary = json!({
        "resourceType": "Binary",
        "contentType": "application/pdf",
        "securityContext": {"reference": "Patient/456"}
    });
    let response = envoy_check(
        &server,
        check_request("POST", "/fhir/R4/Binary", Some(&token), &[], Some(&binary)),
    )
    .await;
    denied_response(&response, 403);
    server.stop().await;
}

/// The raw body a client sent, as Envoy forwards it.
fn with_raw_body(mut request: CheckRequest, body: &str) -> CheckRequest {
    if let Some(http) = request
        .attributes
        .as_mut()
        .and_then(|attributes| attributes.request.as_mut())
        .and_then(|request| request.http.as_mut())
    {
        http.body = body.to_owned();
    }
    request
}

/// JSON with a member named twice is refused: a first-wins server behind the proxy would
/// store what the service never decided on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_with_duplicate_json_members_are_refused() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, ENVOY_CONFIG).await;
    let token = issuer.patient_token("patient/Observation.crus", "123");
    let resource = r#"{"resourceType": "Observation", "status": "final", "code": {"text": "x"},
        "subject": {"reference": "Patient/456"}, "subject": {"reference": "Patient/123"}}"#;
    let bundle = r#"{"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "GET", "url": "Observation/1", "method": "DELETE"}}]}"#;
    for (path, body) in [("/fhir/R4/Observation", resource), ("/fhir/R4/", bundle)] {
        let request = with_raw_body(check_request("POST", path, Some(&token), &[], None), body);
        let (_, outcome) = denied_response(&envoy_check(&server, request).await, 400);
        assert!(
            outcome["issue"][0]["diagnostics"]
                .as_str()
                .unwrap()
                .contains("duplicate member"),
            "{path}: {outcome}"
        );
    }
    server.stop().await;
}

/// Hostile tokens and headers: nothing a client or a token says reaches the FHIR server's
/// headers but the values the service checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_claims_and_headers_never_reach_the_fhir_server() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, ENVOY_CONFIG).await;
    let path = "/fhir/R4/Observation?code=x";

    // A signed claim with CR/LF would split the x-smart-fhir-user header.
    let mut injected = issuer.claims("patient/*.rs");
    injected["patient"] = json!("123");
    injected["fhirUser"] = json!("Patient/123\r\nx-smart-role: admin");
    let response = envoy_check(
        &server,
        check_request("GET", path, Some(&sign(&RSA_1, &injected)), &[], None),
    )
    .await;
    let (_, body) = denied_response(&response, 401);
    assert!(body.to_string().contains("control character"), "{body}");

    // A scope ending in a no-break space is not `system/*.rs`.
    let mut look_alike = issuer.claims("system/*.rs\u{a0}");
    look_alike["patient"] = json!("123");
    let response = envoy_check(
        &server,
        check_request("GET", path, Some(&sign(&RSA_1, &look_alike)), &[], None),
    )
    .await;
    denied_response(&response, 403);

    // An iat ten years ahead.
    let mut future = issuer.claims("patient/*.rs");
    future["patient"] = json!("123");
    future["iat"] = json!(now() + 10 * 365 * 24 * 3600);
    future["exp"] = json!(now() + 10 * 365 * 24 * 3600 + 600);
    let response = envoy_check(
        &server,
        check_request("GET", path, Some(&sign(&RSA_1, &future)), &[], None),
    )
    .await;
    denied_response(&response, 401);

    // Underscored names are the same headers to CGI, WSGI and PHP servers.
    let token = issuer.patient_token("patient/*.rs", "123");
    let spoofed = [
        ("x_smart_patient", "456"),
        ("x-smart_fhir_user", "Practitioner/1"),
        ("X_SMART_SCOPES", "system/*.cruds"),
        ("x_smart_role", "admin"),
    ];
    let response = envoy_check(
        &server,
        check_request("GET", path, Some(&token), &spoofed, None),
    )
    .await;
    let ok = ok_response(&response);
    for (name, _) in spoofed {
        assert!(
            ok.removed.contains(&name),
            "{name} survives: {:?}",
            ok.removed
        );
    }
    assert_eq!(ok.set["x-smart-patient"], "123");
    server.stop().await;
}

/// Through Envoy a history is allowed with the compartment in its constraints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn histories_are_allowed_with_the_compartment_constraint() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, ENVOY_CONFIG).await;
    let token = issuer.patient_token("patient/Observation.rs", "123");
    for path in [
        "/fhir/R4/Observation/1/_history",
        "/fhir/R4/Observation/1/_history/2",
    ] {
        let response =
            envoy_check(&server, check_request("GET", path, Some(&token), &[], None)).await;
        let ok = ok_response(&response);
        let constraints: Value = serde_json::from_str(ok.set["x-smart-constraints"]).unwrap();
        assert_eq!(
            constraints["grants"][0]["compartment"], "Patient/123",
            "{path}"
        );
    }
    server.stop().await;
}

/// The searches a server runs on the token's behalf while it writes (ifNoneExist,
/// conditional references, conditional deletes) are decided, not waved through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_parts_of_writes_are_decided_as_searches() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, ENVOY_CONFIG).await;
    let token = issuer.patient_token("patient/Observation.cruds patient/Patient.rs", "123");
    let mut own = observation("123");
    own.as_object_mut().unwrap().remove("id");
    let conditional_create = json!({"resourceType": "Bundle", "type": "transaction", "entry": [{
        "resource": own,
        "request": {"method": "POST", "url": "Observation", "ifNoneExist": "identifier=x|1"}
    }]});
    let mut conditional_reference = own.clone();
    conditional_reference["performer"] =
        json!([{"reference": "Patient?identifier=http://hospital.example/mrn|999"}]);
    for (path, body) in [
        ("/fhir/R4/", conditional_create),
        ("/fhir/R4/Observation", conditional_reference),
    ] {
        let response = envoy_check(
            &server,
            check_request("POST", path, Some(&token), &[], Some(&body)),
        )
        .await;
        denied_response(&response, 403);
    }
    let response = envoy_check(
        &server,
        check_request(
            "DELETE",
            "/fhir/R4/Observation?subject=Patient/456",
            Some(&token),
            &[],
            None,
        ),
    )
    .await;
    denied_response(&response, 403);
    server.stop().await;
}
