//! The attacks on the gRPC face, one test each (docs/security.md lists them): hostile
//! tokens, resources, structured requests and batches. Every answer here is a deny, a
//! constraint or INVALID_ARGUMENT, never a silent allow.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a panic is a failed test"
)]

mod common;

use common::answers::binary_of;
use common::*;
use serde_json::json;
use smart_authz::grpc::pb;
use tonic::Code;

/// The rules of HTTP request lines are the pipeline's, the same as on the Envoy face.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_requests_follow_the_same_rules_as_on_the_envoy_face() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(
        &issuer,
        "[envoy]\npublic_paths = [\"Questionnaire/intake\", \"Questionnaire/intake/$populate\"]\n",
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
    // So is the `_method` parameter some web frameworks read as the method.
    let status = client
        .check_access(check_http(&token, "GET", "Observation/1?_method=DELETE"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("_method"), "{status:?}");

    // The configured public paths are public for reads, without a token.
    let public = server.check("", "GET", "Questionnaire/intake").await;
    assert_eq!(decision(&public), pb::Decision::Allow);
    assert_eq!(reason(&public), pb::Reason::PublicEndpoint);
    let write = server.check("", "DELETE", "Questionnaire/intake").await;
    assert_eq!(decision(&write), pb::Decision::Deny);
    assert_eq!(reason(&write), pb::Reason::TokenMissing);
    // The same requests in the structured form are decided alike.
    let structured = |interaction: pb::Interaction| {
        check_fhir(
            "",
            pb::FhirRequest {
                interaction: interaction as i32,
                resource_type: "Questionnaire".into(),
                id: "intake".into(),
                ..Default::default()
            },
        )
    };
    let public = server
        .check_request(structured(pb::Interaction::Read))
        .await;
    assert_eq!(decision(&public), pb::Decision::Allow, "{}", public.message);
    assert_eq!(reason(&public), pb::Reason::PublicEndpoint);
    let write = server
        .check_request(structured(pb::Interaction::Delete))
        .await;
    assert_eq!(decision(&write), pb::Decision::Deny);
    assert_eq!(reason(&write), pb::Reason::TokenMissing);
    // An operation only as a GET line: its structured form does not say whether it is a
    // POST with a body.
    let line = server
        .check("", "GET", "Questionnaire/intake/$populate")
        .await;
    assert_eq!(decision(&line), pb::Decision::Allow);
    let operation = server
        .check_request(check_fhir(
            "",
            pb::FhirRequest {
                interaction: pb::Interaction::Operation as i32,
                resource_type: "Questionnaire".into(),
                id: "intake".into(),
                operation: "populate".into(),
                ..Default::default()
            },
        ))
        .await;
    assert_eq!(decision(&operation), pb::Decision::Deny);
    server.stop().await;
}

/// A `POST` search is decided on the parameters of its body, as on the Envoy face: the
/// server runs them, so a patient or an `_include` there must be seen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_searches_are_decided_on_their_body() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, "").await;
    let token = issuer.patient_token("patient/Observation.rs", "123");
    let mut client = server.client.clone();

    let own = server
        .check_request(post_search(
            &token,
            "Observation/_search",
            "patient=123&code=x",
        ))
        .await;
    assert_eq!(decision(&own), pb::Decision::Allow, "{}", own.message);
    // Without the body the search is not decided: its parameters could name anyone.
    let status = client
        .check_access(check_http(&token, "POST", "Observation/_search?code=x"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(status.message().contains("form body"), "{status:?}");
    // Unless the request says it has none.
    let mut empty = check_http(&token, "POST", "Observation/_search?code=x");
    if let Some(pb::check_access_request::Request::Http(http)) = &mut empty.request {
        http.headers.insert("Content-Length".into(), "0".into());
    }
    let empty = server.check_request(empty).await;
    assert_eq!(decision(&empty), pb::Decision::Allow, "{}", empty.message);

    // What the body asks for is decided as if it were in the query.
    for (body, expected) in [
        ("patient=456", pb::Decision::Deny),
        ("subject=Patient/456&code=x", pb::Decision::Deny),
        ("_include=Observation:performer", pb::Decision::Allow),
    ] {
        let response = server
            .check_request(post_search(&token, "Observation/_search", body))
            .await;
        assert_eq!(
            decision(&response),
            expected,
            "{body}: {}",
            response.message
        );
        let in_query = server
            .check(&token, "GET", &format!("Observation?{body}"))
            .await;
        assert_eq!(reason(&response), reason(&in_query), "{body}");
        assert_eq!(response.grants, in_query.grants, "{body}");
    }
    // A `+` is a space, as the server's form parser reads it.
    let spaced = server
        .check_request(post_search(&token, "Observation/_search", "patient=456+"))
        .await;
    let in_query = server
        .check(&token, "GET", "Observation?patient=456%20")
        .await;
    assert_eq!(decision(&spaced), pb::Decision::Deny, "{}", spaced.message);
    assert_eq!(spaced.message, in_query.message);
    // A body that cannot be read, or could be read otherwise, is refused; so is a body the
    // service would not read, and one longer than a request line may be.
    let long = format!("code={}", "x".repeat(16_384));
    let pluses = format!("code={}", "+".repeat(5_460));
    for (method, path, body, content_type, said) in [
        (
            "POST",
            "Observation/_search",
            &b"code=\xff"[..],
            None,
            "UTF-8",
        ),
        (
            "POST",
            "Observation/_search",
            b"_method=DELETE",
            None,
            "_method",
        ),
        (
            "POST",
            "Observation/_search",
            b"code=%zz",
            None,
            "search body",
        ),
        (
            "POST",
            "Observation/_search",
            b"code=x\t",
            None,
            "search body",
        ),
        (
            "POST",
            "Observation/_search",
            b"{}",
            Some("application/json"),
            "form-urlencoded",
        ),
        (
            "GET",
            "Observation?code=x",
            b"patient=456",
            None,
            "only for a POST search",
        ),
        (
            "POST",
            "Observation/_search",
            long.as_bytes(),
            None,
            "search body: 16389 bytes, at most 16384 allowed",
        ),
        (
            "POST",
            "Observation/_search",
            pluses.as_bytes(),
            None,
            "search body: 16385 bytes, each `+` counted as the `%20` it reads as, at most 16384",
        ),
    ] {
        let mut request = check_http(&token, method, path);
        if let Some(pb::check_access_request::Request::Http(http)) = &mut request.request {
            http.body = body.to_vec();
            if let Some(content_type) = content_type {
                http.headers
                    .insert("content-type".into(), content_type.into());
            }
        }
        let status = client
            .check_access(request)
            .await
            .expect_err(&String::from_utf8_lossy(body));
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains(said), "{status:?}");
    }
    let form = server
        .check_request({
            let mut request = post_search(&token, "Observation/_search", "code=x\r\n");
            if let Some(pb::check_access_request::Request::Http(http)) = &mut request.request {
                http.headers.insert(
                    "Content-Type".into(),
                    "application/x-www-form-urlencoded; charset=UTF-8".into(),
                );
            }
            request
        })
        .await;
    assert_eq!(decision(&form), pb::Decision::Allow, "{}", form.message);
    // A batch entry carries no form body: a POST search in it is denied.
    let batch_search = |path: &str, body: &[u8]| pb::BatchCheckAccessRequest {
        access_token: token.clone(),
        bundle_type: pb::BundleType::Batch.into(),
        entries: vec![pb::BatchEntry {
            request: Some(pb::batch_entry::Request::Http(pb::HttpRequest {
                method: "POST".into(),
                path: path.into(),
                body: body.to_vec(),
                ..Default::default()
            })),
            ..Default::default()
        }],
        ..Default::default()
    };
    let batch = client
        .batch_check_access(batch_search("Observation/_search?code=x", b""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(batch.entries[0].decision(), pb::Decision::Deny);
    assert!(batch.entries[0].message.contains("GET"), "{batch:?}");
    // Nor is one read from the entry.
    let status = client
        .batch_check_access(batch_search("Observation/_search", b"code=x"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    // Nor said to be empty: its search would be decided on the query alone.
    let mut empty = batch_search("Observation/_search?code=x", b"");
    if let Some(pb::batch_entry::Request::Http(http)) = &mut empty.entries[0].request {
        http.headers.insert("Content-Length".into(), "0".into());
    }
    let status = client.batch_check_access(empty).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    server.stop().await;
}

/// The same refusals as on the Envoy face: a conditional update of a Patient (it may create
/// one), a trimmed answer of a type outside the compartment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_that_may_create_a_patient_and_trimmed_answers_are_denied() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, "").await;
    let token = issuer.patient_token("patient/Patient.cru patient/*.rs", "123");
    let update = server
        .check(
            &token,
            "PUT",
            "Patient?identifier=http://hospital.example/mrn|new",
        )
        .await;
    assert_eq!(decision(&update), pb::Decision::Deny);
    assert_eq!(reason(&update), pb::Reason::OutsideCompartment);
    for path in [
        "Task?_elements=description,status",
        "Binary/b1?_summary=true",
        "?_elements=id",
    ] {
        let trimmed = server.check(&token, "GET", path).await;
        assert_eq!(decision(&trimmed), pb::Decision::Deny, "{path}");
        assert_eq!(reason(&trimmed), pb::Reason::UnsupportedRequest, "{path}");
    }
    let counted = server.check(&token, "GET", "Task?_summary=count").await;
    assert_eq!(decision(&counted), pb::Decision::Allow);
    server.stop().await;
}

/// Under patient/ scopes a search parameter that reads other resources is refused where the
/// compartment confines nothing (a type outside it, every type), and a reverse chain naming
/// another patient is denied anywhere: the answer would not show whose records it asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn searches_reaching_other_patients_through_other_resources_are_denied() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, "").await;
    let token = issuer.patient_token("patient/*.rs", "123");
    for (path, expected) in [
        (
            "Medication?_has:MedicationRequest:medication:patient=Patient/456",
            pb::Reason::UnsupportedRequest,
        ),
        (
            "?_has:Encounter:location:patient=456",
            pb::Reason::UnsupportedRequest,
        ),
        ("Medication?_list=List/l9", pb::Reason::UnsupportedRequest),
        ("Device?patient.name=Smith", pb::Reason::UnsupportedRequest),
        (
            "Observation?_filter=subject%20eq%20Patient/456",
            pb::Reason::UnsupportedRequest,
        ),
        (
            "Observation?_has:Provenance:target:agent=Patient/456",
            pb::Reason::OutsideCompartment,
        ),
    ] {
        let answer = server.check(&token, "GET", path).await;
        assert_eq!(decision(&answer), pb::Decision::Deny, "{path}");
        assert_eq!(reason(&answer), expected, "{path}");
    }
    let own = server
        .check(
            &token,
            "GET",
            "Patient?_has:Observation:patient:code=1234-5",
        )
        .await;
    assert_eq!(decision(&own), pb::Decision::Allow);
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
        ("Binary/b1", binary_of("456"), pb::Decision::Deny),
        ("Binary/b1", binary_of("123"), pb::Decision::Allow),
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
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.decision, pb::Decision::Deny as i32);
    server.stop().await;
}

/// A message whose fields would take far more memory than its bytes (an empty parameter or
/// batch entry is 2 bytes on the wire, 50 to 270 in memory) is refused before it is
/// decoded, with no token needed to send it; a batch of more entries than one may have, by
/// their count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_that_would_cost_far_more_than_their_bytes_are_refused_unread() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, "").await;
    let mut client = server.client.clone();
    let params = pb::CheckAccessRequest {
        request: Some(pb::check_access_request::Request::Fhir(pb::FhirRequest {
            interaction: pb::Interaction::SearchType as i32,
            resource_type: "Observation".into(),
            params: vec![pb::SearchParam::default(); 300_000],
            ..Default::default()
        })),
        ..Default::default()
    };
    let refused = client.check_access(params).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("fields"), "{refused:?}");
    assert!(
        refused.metadata().get("grpc-retry-pushback-ms").is_none(),
        "no retry gets it through"
    );

    let entries = pb::BatchCheckAccessRequest {
        bundle_type: pb::BundleType::Batch as i32,
        entries: vec![pb::BatchEntry::default(); 10_001],
        ..Default::default()
    };
    let refused = client.batch_check_access(entries).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(refused.message().contains("at most 10000"), "{refused:?}");
    server.stop().await;
}

/// A resource's JSON is read only once the token is admitted, as the Envoy face reads a
/// body: without a valid token, megabytes of it are never parsed, and the answer is the
/// token's deny, not the JSON's error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resources_are_read_only_for_an_admitted_token() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, "").await;
    let unreadable = Some(pb::Resource {
        content: Some(pb::resource::Content::Json(b"{\"a\":1,\"a\":2}".to_vec())),
    });
    let request = |token: &str| pb::CheckAccessRequest {
        stored: unreadable.clone(),
        ..check_http(token, "GET", "Observation/o1")
    };
    let denied = server.check_request(request("not.a.jwt")).await;
    assert_eq!(reason(&denied), pb::Reason::TokenMalformed);
    let batch = |token: &str| pb::BatchCheckAccessRequest {
        access_token: token.to_owned(),
        bundle_type: pb::BundleType::Batch as i32,
        entries: vec![pb::BatchEntry {
            request: Some(pb::batch_entry::Request::Http(pb::HttpRequest {
                method: "GET".into(),
                path: "Observation/o1".into(),
                ..Default::default()
            })),
            stored: unreadable.clone(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut client = server.client.clone();
    let denied = client.batch_check_access(batch("not.a.jwt")).await.unwrap();
    assert_eq!(
        denied.get_ref().reason,
        pb::Reason::TokenMalformed as i32,
        "{denied:?}"
    );
    // With a valid token it is read, and refused.
    let token = issuer.patient_token("patient/Observation.rs", "123");
    let refused = client.check_access(request(&token)).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    let refused = client.batch_check_access(batch(&token)).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
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

/// A reference given as an array is no reference to the engine, and one to a server that
/// reads arrays item by item (HAPI): refused, never decided without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resources_with_a_reference_that_is_not_a_string_are_invalid() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, "").await;
    let token = issuer.patient_token("patient/Observation.crus", "123");
    let mut request = check_http(&token, "POST", "Observation");
    request.proposed = json_resource(&json!({
        "resourceType": "Observation", "status": "final", "code": {"text": "x"},
        "performer": [{"reference": "Patient/123"}],
        "subject": {"reference": ["Patient/456"]}
    }));
    let status = server
        .client
        .clone()
        .check_access(request)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("reference"), "{status:?}");
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
    let mut double_dollar = fhir(pb::Interaction::Operation, "Patient", "123");
    double_dollar.operation = "$$everything".into();
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
        ("two $ before an operation", double_dollar),
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

/// A `Resource` with neither `json` nor `facts` (a oneof set wrong, or `{}` from a JSON
/// client) is an error, not "no version given": that would allow with constraints what the
/// version might deny.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_resource_message_is_an_error() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, "").await;
    let token = issuer.patient_token("patient/Observation.cruds", "123");
    let mut client = server.client.clone();
    for field in ["stored", "proposed"] {
        let mut request = check_http(&token, "PUT", "Observation/obs-1");
        let empty = Some(pb::Resource { content: None });
        match field {
            "stored" => request.stored = empty,
            _ => request.proposed = empty,
        }
        let status = client.check_access(request).await.expect_err(field);
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
        assert!(status.message().contains(field), "{status:?}");
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

/// Hostile claims are refused, never copied: a control character in an identity claim, a
/// look-alike scope, an `iat` from the future.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_claims_are_refused_or_grant_nothing() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, "").await;

    let mut injected = issuer.claims("patient/*.rs");
    injected["patient"] = json!("123");
    injected["fhirUser"] = json!("Patient/123\r\nx-smart-role: admin");
    let response = server
        .check(&sign(&RSA_1, &injected), "GET", "Observation?code=x")
        .await;
    assert_eq!(decision(&response), pb::Decision::Deny);
    assert_eq!(reason(&response), pb::Reason::TokenMalformed);

    for scope in [
        "system/*.rs\u{a0}",
        "system/*.rs\tpatient/*.rs",
        "system/*.rs\n",
    ] {
        let claims = issuer.claims(scope);
        let response = server
            .check(&sign(&RSA_1, &claims), "GET", "Observation?code=x")
            .await;
        assert_eq!(decision(&response), pb::Decision::Deny, "{scope:?}");
        assert_eq!(response.ignored_scopes.len(), 1, "{scope:?}");
        assert_eq!(response.ignored_scopes[0].scope, scope);
    }

    let mut future = issuer.claims("system/*.rs");
    future["iat"] = json!(now() + 10 * 365 * 24 * 3600);
    future["exp"] = json!(now() + 10 * 365 * 24 * 3600 + 600);
    let response = server
        .check(&sign(&RSA_1, &future), "GET", "Observation?code=x")
        .await;
    assert_eq!(reason(&response), pb::Reason::TokenNotYetValid);
    server.stop().await;
}

/// The headers of an HTTP line are read as HTTP reads them: without case, a name given twice
/// refused, every override header and `If-None-Exist` taken into account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_line_headers_are_read_as_http_reads_them() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, "").await;
    let token = issuer.patient_token("patient/Observation.crs", "123");
    let mut client = server.client.clone();
    let with_headers = |method: &str, path: &str, headers: &[(&str, &str)]| {
        let mut request = check_http(&token, method, path);
        if let Some(pb::check_access_request::Request::Http(http)) = &mut request.request {
            for (name, value) in headers {
                http.headers.insert((*name).into(), (*value).into());
            }
        }
        request
    };
    for headers in [
        vec![("X-HTTP-Method-Override", "DELETE")],
        vec![
            ("x-http-method-override", "GET"),
            ("x-http-method", "DELETE"),
        ],
        vec![
            ("x-http-method-override", "GET"),
            ("X-Http-Method-Override", "DELETE"),
        ],
    ] {
        let status = client
            .check_access(with_headers("GET", "Observation/1", &headers))
            .await
            .expect_err("refused");
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "{headers:?}: {status:?}"
        );
    }
    let mut own = observation("123");
    own.as_object_mut().unwrap().remove("id");
    let mut conditional = with_headers(
        "POST",
        "Observation",
        &[("If-None-Exist", "subject=Patient/456")],
    );
    conditional.proposed = json_resource(&own);
    let response = server.check_request(conditional).await;
    assert_eq!(
        decision(&response),
        pb::Decision::Deny,
        "{}",
        response.message
    );
    // The same search given to a structured create.
    let mut structured = check_fhir(
        &token,
        pb::FhirRequest {
            if_none_exist: "subject=Patient/456".into(),
            ..fhir(pb::Interaction::Create, "Observation", "")
        },
    );
    structured.proposed = json_resource(&own);
    let response = server.check_request(structured.clone()).await;
    assert_eq!(
        decision(&response),
        pb::Decision::Deny,
        "{}",
        response.message
    );
    if let Some(pb::check_access_request::Request::Fhir(request)) = &mut structured.request {
        request.if_none_exist = "subject=Patient/123".into();
    }
    let response = server.check_request(structured).await;
    assert_eq!(
        decision(&response),
        pb::Decision::Deny,
        "{}",
        response.message
    );
    // On anything but a create the header is ignored, as servers ignore it.
    let read = with_headers(
        "GET",
        "Observation?code=x",
        &[("If-None-Exist", "subject=Patient/456")],
    );
    let response = server.check_request(read).await;
    assert_eq!(
        decision(&response),
        pb::Decision::Allow,
        "{}",
        response.message
    );
    server.stop().await;
}
