//! The attacks on the Envoy face, one test each (docs/security.md lists them): what a
//! client, a token or a body could make the service read differently from the FHIR server
//! behind the proxy. Every answer here is a deny or a constraint, never a silent allow.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a panic is a failed test"
)]

mod common;

use common::envoy::*;
use common::*;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_method_override_is_refused_rather_than_misjudged() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, ENVOY_CONFIG).await;
    let token = issuer.patient_token("patient/Observation.rs", "123");
    // Spelled with `_` too, as CGI, WSGI and PHP servers read it (Istio forwards such names).
    for name in ["x-http-method-override", "x_http_method_override"] {
        let overridden = check_request(
            "GET",
            "/fhir/R4/Observation/1",
            Some(&token),
            &[(name, "DELETE")],
            None,
        );
        denied_response(&envoy_check(&server, overridden).await, 400);
    }
    let same = check_request(
        "GET",
        "/fhir/R4/Observation/1",
        Some(&token),
        &[("x-http-method-override", "get")],
        None,
    );
    ok_response(&envoy_check(&server, same).await);
    // The `_method` parameter of web frameworks, in the query or in a search's form body.
    let in_query = check_request(
        "GET",
        "/fhir/R4/Observation/1?_method=DELETE",
        Some(&token),
        &[],
        None,
    );
    denied_response(&envoy_check(&server, in_query).await, 400);
    let in_body = with_raw_body(
        check_request(
            "POST",
            "/fhir/R4/Observation/_search",
            Some(&token),
            &[],
            None,
        ),
        "patient=Patient%2F123&_method=DELETE",
    );
    denied_response(&envoy_check(&server, in_body).await, 400);
    // A form said to be empty that came all the same, cut short: not decided as empty.
    let cut = check_request(
        "POST",
        "/fhir/R4/Observation/_search",
        Some(&token),
        &[("content-length", "0")],
        None,
    );
    let cut = with_raw_body(cut, "patient=Patient%2F456");
    denied_response(&envoy_check(&server, cut).await, 403);
    server.stop().await;
}

/// A second token the FHIR server (or a framework before it) could act on instead of the one
/// decided: in the query or a form body (RFC 6750 §2.2, §2.3), or in a repeated
/// `Authorization` header, which Envoy joins to the first with `,`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_token_is_refused() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, ENVOY_CONFIG).await;
    let token = issuer.patient_token("patient/Observation.rs", "123");
    let other = issuer.patient_token("patient/Observation.rs", "456");
    let in_query = check_request(
        "GET",
        &format!("/fhir/R4/Observation?access_token={other}"),
        Some(&token),
        &[],
        None,
    );
    let (_, outcome) = denied_response(&envoy_check(&server, in_query).await, 400);
    assert!(outcome.to_string().contains("access_token"), "{outcome}");
    let in_body = with_raw_body(
        check_request(
            "POST",
            "/fhir/R4/Observation/_search",
            Some(&token),
            &[],
            None,
        ),
        &format!("code=x&access_token={other}"),
    );
    denied_response(&envoy_check(&server, in_body).await, 400);
    let joined = check_request(
        "GET",
        "/fhir/R4/Observation/1",
        None,
        &[("authorization", &format!("Bearer {token},Bearer {other}"))],
        None,
    );
    denied_response(&envoy_check(&server, joined).await, 401);
    server.stop().await;
}

/// HAPI's cascading delete would also remove whatever references the resource decided on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cascading_delete_is_refused() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, ENVOY_CONFIG).await;
    let token = issuer.patient_token("patient/Observation.crud", "123");
    for (path, headers) in [
        ("/fhir/R4/Observation/o1?_cascade=delete", &[][..]),
        ("/fhir/R4/Observation/o1", &[("x-cascade", "delete")][..]),
    ] {
        let request = check_request("DELETE", path, Some(&token), headers, None);
        let (_, outcome) = denied_response(&envoy_check(&server, request).await, 400);
        assert!(outcome.to_string().contains("cascad"), "{path}: {outcome}");
    }
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
        (
            "10,001 entries",
            json!({"resourceType": "Bundle", "type": "batch", "entry": vec![delete.clone(); 10_001]}),
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

/// An element given twice (`value` beside `valueCodeableConcept`) is the same trick one
/// level up: a lenient server keeps one, the service cannot know which, so a scope filtering
/// on it cannot be enforced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filtered_element_given_twice_is_refused() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, ENVOY_CONFIG).await;
    let token = issuer.patient_token(
        "patient/Observation.c?value-concept=http://snomed.info/sct|260385009",
        "123",
    );
    let concept =
        |code: &str| json!({"coding": [{"system": "http://snomed.info/sct", "code": code}]});
    let mut once = observation("123");
    once.as_object_mut().unwrap().remove("id");
    once["valueCodeableConcept"] = concept("260385009");
    let mut twice = once.clone();
    twice["value"] = concept("260385009");
    twice["valueCodeableConcept"] = concept("10828004");
    let create = |body: &Value| {
        check_request(
            "POST",
            "/fhir/R4/Observation",
            Some(&token),
            &[],
            Some(body),
        )
    };
    ok_response(&envoy_check(&server, create(&once)).await);
    let (_, outcome) = denied_response(&envoy_check(&server, create(&twice)).await, 403);
    assert!(outcome.to_string().contains("also given as"), "{outcome}");
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
    // Removed by name, which has no case in HTTP (Envoy lowercases every name it sends).
    for (name, _) in spoofed {
        assert!(
            ok.removed
                .iter()
                .any(|removed| removed.eq_ignore_ascii_case(name)),
            "{name} survives: {:?}",
            ok.removed
        );
    }
    assert_eq!(ok.set["x-smart-patient"], "123");
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

/// A conditional update that matches nothing creates: for a Patient under patient/ scopes,
/// a creation they may not make. And a trimmed answer of a type outside the compartment
/// could hide whose it is from the check of the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_that_may_create_a_patient_and_trimmed_answers_are_refused() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, ENVOY_CONFIG).await;
    let token = issuer.patient_token("patient/Patient.cru patient/*.rs", "123");
    let new_patient = json!({"resourceType": "Patient",
        "link": [{"other": {"reference": "Patient/123"}, "type": "seealso"}]});
    let response = envoy_check(
        &server,
        check_request(
            "PUT",
            "/fhir/R4/Patient?identifier=http://hospital.example/mrn|new",
            Some(&token),
            &[],
            Some(&new_patient),
        ),
    )
    .await;
    denied_response(&response, 403);
    for path in [
        "/fhir/R4/Task?_elements=description,status",
        "/fhir/R4/Binary/b1?_summary=true",
        "/fhir/R4/?_elements=id",
    ] {
        let response =
            envoy_check(&server, check_request("GET", path, Some(&token), &[], None)).await;
        let (_, outcome) = denied_response(&response, 400);
        assert!(outcome.to_string().contains("trimmed"), "{path}: {outcome}");
    }
    server.stop().await;
}

/// The same pipeline as on the gRPC face: a reverse chain on a type outside the Patient
/// compartment is refused before the FHIR server runs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn searches_reaching_other_patients_through_other_resources_are_refused() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, ENVOY_CONFIG).await;
    let token = issuer.patient_token("patient/*.rs", "123");
    let path = "/fhir/R4/Medication?_has:MedicationRequest:medication:patient=Patient/456";
    let response = envoy_check(&server, check_request("GET", path, Some(&token), &[], None)).await;
    let (_, outcome) = denied_response(&response, 400);
    assert!(outcome.to_string().contains("_has"), "{outcome}");
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

/// A single conditional create's `If-None-Exist` is a search the server runs for the token;
/// a write whose body Envoy truncated cannot be judged; every override header counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_writes_are_decided_on_everything_the_server_will_use() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, ENVOY_CONFIG).await;
    let token = issuer.patient_token("patient/Observation.crs", "123");
    let mut own = observation("123");
    own.as_object_mut().unwrap().remove("id");
    let conditional = check_request(
        "POST",
        "/fhir/R4/Observation",
        Some(&token),
        &[(
            "if-none-exist",
            "subject=Patient/456&code=http://loinc.org|1234-5",
        )],
        Some(&own),
    );
    denied_response(&envoy_check(&server, conditional).await, 403);
    // A caller of Envoy's API other than Envoy may send names in any case: they are read
    // as HTTP reads them, and one given in two cases is refused.
    let spelled = check_request(
        "POST",
        "/fhir/R4/Observation",
        Some(&token),
        &[("If-None-Exist", "subject=Patient/456")],
        Some(&own),
    );
    denied_response(&envoy_check(&server, spelled).await, 403);
    let twice = check_request(
        "POST",
        "/fhir/R4/Observation",
        Some(&token),
        &[
            ("if-none-exist", "subject=Patient/123"),
            ("If-None-Exist", "subject=Patient/456"),
        ],
        Some(&own),
    );
    denied_response(&envoy_check(&server, twice).await, 400);
    let truncated = check_request(
        "POST",
        "/fhir/R4/Observation",
        Some(&token),
        &[("x-envoy-auth-partial-body", "true")],
        Some(&own),
    );
    denied_response(&envoy_check(&server, truncated).await, 403);
    // Cut where Envoy did not say so: the declared length tells.
    let declared_longer = check_request(
        "POST",
        "/fhir/R4/Observation",
        Some(&token),
        &[("content-length", "100000")],
        Some(&own),
    );
    denied_response(&envoy_check(&server, declared_longer).await, 403);
    let second_override = check_request(
        "GET",
        "/fhir/R4/Observation/1",
        Some(&token),
        &[
            ("x-http-method-override", "GET"),
            ("x-http-method", "DELETE"),
        ],
        None,
    );
    denied_response(&envoy_check(&server, second_override).await, 400);
    server.stop().await;
}

/// A body whose JSON would take more memory once parsed than the whole of
/// `max_buffered_request_bytes` is refused 413 as it is parsed, not held: a resource or
/// Bundle of 900 KB of one-member objects is some 80 MB as a tree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_that_parse_into_more_than_the_budget_are_refused() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let config = format!(
        "max_request_bytes = 1048576\nmax_buffered_request_bytes = 4194304\n{ENVOY_CONFIG}"
    );
    let server = TestServer::for_issuer(&issuer, &config).await;
    let token = issuer.patient_token("patient/Observation.crus", "123");
    let dense = format!(r#"[{}{{"a":0}}]"#, r#"{"a":0},"#.repeat(112_000));
    let resource = format!(
        r#"{{"resourceType":"Observation","status":"final","code":{{"text":"x"}},"subject":{{"reference":"Patient/123"}},"extension":{dense}}}"#
    );
    let bundle = format!(r#"{{"resourceType":"Bundle","type":"batch","entry":{dense}}}"#);
    // A JSON Patch in a Binary, in base64: its tree is parsed from the decoded bytes, which
    // no count of the Bundle's own tree saw. 600 KB of one-member objects is some 50 MB.
    let patch = {
        use base64::Engine as _;
        let dense = format!(r#"[{}{{"a":0}}]"#, r#"{"a":0},"#.repeat(75_000));
        base64::engine::general_purpose::STANDARD.encode(dense)
    };
    let patched = format!(
        r#"{{"resourceType":"Bundle","type":"batch","entry":[{{"request":{{"method":"PATCH","url":"Observation/o1"}},"resource":{{"resourceType":"Binary","contentType":"application/json-patch+json","data":"{patch}"}}}}]}}"#
    );
    for (path, body) in [
        ("/fhir/R4/Observation", resource),
        ("/fhir/R4/", bundle),
        ("/fhir/R4/", patched),
    ] {
        let request = with_raw_body(check_request("POST", path, Some(&token), &[], None), &body);
        let response = envoy_check(&server, request).await;
        let (_, outcome) = denied_response(&response, 413);
        assert!(
            outcome["issue"][0]["diagnostics"]
                .as_str()
                .unwrap()
                .contains("max_buffered_request_bytes (4194304 bytes)"),
            "{path}: {outcome}"
        );
    }
    server.stop().await;
}
