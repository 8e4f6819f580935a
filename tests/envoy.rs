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

use std::collections::BTreeMap;

use common::envoy::*;
use common::*;
use envoy_types::ext_authz::v3::pb::CheckResponse;
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::google::protobuf::value::Kind;
use serde_json::{Value, json};
use tonic::Code;

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

/// The Envoy configuration of a FHIR server that checks an allowed write against the
/// constraints it is sent.
static CHECKING_WRITES: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    ENVOY_CONFIG.replace(
        "narrow_searches = true",
        "narrow_searches = true\nserver_checks_writes = true",
    )
});

/// An update, patch or delete is allowed under patient/ scopes only with the compartment
/// its stored version must be in, which Envoy never has: the FHIR server would carry it out
/// unchecked, so it is denied unless the server checks writes (`server_checks_writes`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_left_to_check_are_denied_unless_the_server_checks_them() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, ENVOY_CONFIG).await;
    let checking = TestServer::for_issuer(&issuer, &CHECKING_WRITES).await;
    let token = issuer.patient_token("patient/Observation.ud", "123");
    let write = |method: &str| {
        let request = check_request(method, "/fhir/R4/Observation/o1", Some(&token), &[], None);
        with_raw_body(
            request,
            r#"[{"op":"replace","path":"/status","value":"amended"}]"#,
        )
    };
    for method in ["PATCH", "DELETE"] {
        let (_, outcome) = denied_response(&envoy_check(&server, write(method)).await, 403);
        assert!(
            outcome.to_string().contains("server_checks_writes"),
            "{method}: {outcome}"
        );
        let ok = envoy_check(&checking, write(method)).await;
        let constraints: Value =
            serde_json::from_str(ok_response(&ok).set["x-smart-constraints"]).unwrap();
        assert_eq!(
            constraints["grants"][0]["compartment"], "Patient/123",
            "{method}"
        );
    }
    // A create judged on its forwarded body leaves nothing to check.
    let token = issuer.patient_token("patient/Observation.c", "123");
    let create = check_request(
        "POST",
        "/fhir/R4/Observation",
        Some(&token),
        &[],
        Some(&observation("123")),
    );
    ok_response(&envoy_check(&server, create).await);
    checking.stop().await;
    server.stop().await;
}

/// A patch's document is read for the conditional references it writes, which the FHIR
/// server resolves (to any patient) when it stores the patched resource.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patches_are_checked_against_the_forwarded_document() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, &CHECKING_WRITES).await;
    let token = issuer.patient_token("patient/Observation.u patient/Patient.rs", "123");
    let patch = |document: &str| {
        let request = check_request(
            "PATCH",
            "/fhir/R4/Observation/o1",
            Some(&token),
            &[("content-type", "application/json-patch+json")],
            None,
        );
        with_raw_body(request, document)
    };
    let plain = envoy_check(
        &server,
        patch(r#"[{"op":"replace","path":"/status","value":"amended"}]"#),
    )
    .await;
    ok_response(&plain);
    let conditional = envoy_check(
        &server,
        patch(
            r#"[{"op":"add","path":"/focus","value":[{"reference":"Patient?identifier=urn:mrn|456"}]}]"#,
        ),
    )
    .await;
    denied_response(&conditional, 403);
    let xml = envoy_check(
        &server,
        patch(r#"<diff><add sel="Observation"><focus/></add></diff>"#),
    )
    .await;
    denied_response(&xml, 400);
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
        let request = check_request(
            "POST",
            "/fhir/R4/Observation/_search",
            Some(&token),
            headers,
            None,
        );
        match body {
            Some(body) => with_raw_body(request, body),
            None => request,
        }
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
    // Cut at max_request_bytes with nothing more arrived yet, Envoy marks it whole: the
    // declared length tells the rest (`&patient=Patient%2F456`) is still to come.
    let first_part = "code=2345-7&patient=Patient%2F123";
    let whole = first_part.len().to_string();
    let longer = (first_part.len() + 25).to_string();
    ok_response(
        &envoy_check(
            &server,
            search(Some(first_part), &[("content-length", whole.as_str())]),
        )
        .await,
    );
    denied_response(
        &envoy_check(
            &server,
            search(Some(first_part), &[("content-length", longer.as_str())]),
        )
        .await,
        403,
    );
    // Without a declared length (chunked, or HTTP/2 without one) the cut cannot be seen.
    let mut undeclared = search(Some(first_part), &[]);
    http_of(&mut undeclared).headers.remove("content-length");
    denied_response(&envoy_check(&server, undeclared).await, 403);
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
    // Allowed under the compartment its matches must be in, which the server must check:
    // only when it says it does (`server_checks_writes`).
    let (_, outcome) = denied_response(
        &envoy_check(
            &server,
            check_request("POST", "/fhir/R4/", Some(&token), &[], Some(&conditional)),
        )
        .await,
        403,
    );
    assert!(
        outcome.to_string().contains("server_checks_writes"),
        "{outcome}"
    );
    let checking = TestServer::for_issuer(&issuer, &CHECKING_WRITES).await;
    ok_response(
        &envoy_check(
            &checking,
            check_request("POST", "/fhir/R4/", Some(&token), &[], Some(&conditional)),
        )
        .await,
    );
    checking.stop().await;
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

/// The `dynamic_metadata` Envoy's access log reads
/// (`%DYNAMIC_METADATA(envoy.filters.http.ext_authz:reason)%`), on allows and denies alike.
fn metadata(response: &CheckResponse) -> BTreeMap<String, String> {
    response
        .dynamic_metadata
        .as_ref()
        .expect("every answer carries dynamic_metadata")
        .fields
        .iter()
        .map(|(name, value)| match &value.kind {
            Some(Kind::StringValue(text)) => (name.clone(), text.clone()),
            other => panic!("{name}: {other:?}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_names_its_decision_in_dynamic_metadata() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, ENVOY_CONFIG).await;
    let token = issuer.patient_token("patient/Observation.rs", "123");
    let expected = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect()
    };

    let read = envoy_check(
        &server,
        check_request("GET", "/fhir/R4/Observation/1", Some(&token), &[], None),
    )
    .await;
    ok_response(&read);
    assert_eq!(
        metadata(&read),
        expected(&[
            ("decision", "allow"),
            ("reason", "granted"),
            ("patient", "123"),
            ("client_id", "test-client"),
        ])
    );

    let other_type = envoy_check(
        &server,
        check_request("GET", "/fhir/R4/Condition/1", Some(&token), &[], None),
    )
    .await;
    denied_response(&other_type, 403);
    assert_eq!(
        metadata(&other_type),
        expected(&[
            ("decision", "deny"),
            ("reason", "no_matching_scope"),
            ("patient", "123"),
            ("client_id", "test-client"),
        ])
    );

    let no_token = envoy_check(
        &server,
        check_request("GET", "/fhir/R4/Observation/1", None, &[], None),
    )
    .await;
    denied_response(&no_token, 401);
    assert_eq!(
        metadata(&no_token),
        expected(&[("decision", "deny"), ("reason", "token_missing")])
    );

    let public = envoy_check(
        &server,
        check_request("GET", "/fhir/R4/metadata", None, &[], None),
    )
    .await;
    ok_response(&public);
    assert_eq!(
        metadata(&public),
        expected(&[("decision", "allow"), ("reason", "public_endpoint")])
    );
    server.stop().await;
}

/// `x-request-id` is echoed into the audit line and the span (tests/telemetry_audit.rs); one
/// that could forge a log line or overflow it is refused, not cleaned up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_id_that_is_not_visible_ascii_is_refused() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, ENVOY_CONFIG).await;
    let token = issuer.patient_token("patient/Observation.rs", "123");
    let long = "r".repeat(129);
    for bad in ["two words", "quote\"d", long.as_str()] {
        let response = envoy_check(
            &server,
            check_request(
                "GET",
                "/fhir/R4/Observation/1",
                Some(&token),
                &[("x-request-id", bad)],
                None,
            ),
        )
        .await;
        let (_, body) = denied_response(&response, 400);
        assert!(
            body["issue"][0]["diagnostics"]
                .as_str()
                .unwrap()
                .contains("request id"),
            "{body}"
        );
    }
    let fine = envoy_check(
        &server,
        check_request(
            "GET",
            "/fhir/R4/Observation/1",
            Some(&token),
            &[("x-request-id", "9e4c1f0a-5d3b-4b7e-8f21-6a0c2d9e7b34")],
            None,
        ),
    )
    .await;
    ok_response(&fine);
    server.stop().await;
}

/// The identities a grant refers to reach the FHIR server whichever claim they came from: a
/// patient read from a Patient `fhirUser` (`patient_from_fhir_user`), a user read from `sub`
/// (`user_from_sub`). Without them the server would have no patient to exclude others
/// against, no user whose permissions to apply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identities_read_from_other_claims_are_sent() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let config =
        format!("{ENVOY_CONFIG}\n[policy]\npatient_from_fhir_user = true\nuser_from_sub = true\n");
    let server = TestServer::for_issuer(&issuer, &config).await;

    let mut claims = issuer.claims("patient/Device.rs");
    claims["fhirUser"] = json!("Patient/123");
    let token = sign(&RSA_1, &claims);
    let response = envoy_check(
        &server,
        check_request("GET", "/fhir/R4/Device", Some(&token), &[], None),
    )
    .await;
    let allowed = ok_response(&response);
    assert_eq!(
        allowed.set.get("x-smart-patient"),
        Some(&"123"),
        "{response:?}"
    );

    let token = sign(&RSA_1, &issuer.claims("user/Observation.rs"));
    let response = envoy_check(
        &server,
        check_request(
            "GET",
            "/fhir/R4/Observation",
            Some(&token),
            &[("x-smart-sub", "someone-else")],
            None,
        ),
    )
    .await;
    let allowed = ok_response(&response);
    assert_eq!(
        allowed.set.get("x-smart-sub"),
        Some(&"user-1"),
        "{response:?}"
    );
    server.stop().await;
}
