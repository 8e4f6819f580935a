//! The rest of the API over real gRPC: batches and transactions, IntrospectToken, health,
//! reflection, and graceful shutdown.

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

fn entry(method: &str, path: &str, proposed: Option<serde_json::Value>) -> pb::BatchEntry {
    pb::BatchEntry {
        request: Some(pb::batch_entry::Request::Http(pb::HttpRequest {
            method: method.into(),
            path: path.into(),
            ..Default::default()
        })),
        stored: None,
        proposed: proposed.as_ref().and_then(json_resource),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_are_all_or_nothing_batches_entry_by_entry() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, "").await;
    let token = issuer.patient_token("patient/Observation.crs", "123");
    let entries = vec![
        entry("POST", "Observation", Some(observation("123"))),
        entry("GET", "Observation?code=x", None),
        entry("POST", "Observation", Some(observation("456"))),
    ];
    let mut client = server.client.clone();
    for (bundle_type, expected) in [
        (pb::BundleType::Transaction, pb::Decision::Deny),
        (pb::BundleType::Batch, pb::Decision::Deny),
    ] {
        let response = client
            .batch_check_access(pb::BatchCheckAccessRequest {
                access_token: token.clone(),
                bundle_type: bundle_type as i32,
                entries: entries.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(pb::Decision::try_from(response.decision).unwrap(), expected);
        let per_entry: Vec<i32> = response
            .entries
            .iter()
            .map(|entry| entry.decision)
            .collect();
        assert_eq!(
            per_entry,
            [
                pb::Decision::Allow as i32,
                pb::Decision::Allow as i32,
                pb::Decision::Deny as i32
            ]
        );
        assert_eq!(
            response.entries[2].reason,
            pb::Reason::OutsideCompartment as i32
        );
        assert_eq!(response.subject.unwrap().patient, "123");
    }
    let allowed = client
        .batch_check_access(pb::BatchCheckAccessRequest {
            access_token: token.clone(),
            bundle_type: pb::BundleType::Transaction as i32,
            entries: entries[..2].to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(allowed.decision, pb::Decision::Allow as i32);

    let expired = {
        let mut claims = issuer.claims("patient/*.crs");
        claims["exp"] = json!(now() - 3600);
        sign(&RSA_1, &claims)
    };
    let denied = client
        .batch_check_access(pb::BatchCheckAccessRequest {
            access_token: expired,
            bundle_type: pb::BundleType::Batch as i32,
            entries: entries.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(denied.decision, pb::Decision::Deny as i32);
    assert_eq!(denied.reason, pb::Reason::TokenExpired as i32);

    let status = client
        .batch_check_access(pb::BatchCheckAccessRequest {
            access_token: token,
            bundle_type: 0,
            entries,
            ..Default::default()
        })
        .await
        .expect_err("bundle type is required");
    assert_eq!(status.code(), Code::InvalidArgument);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_reports_claims_scopes_and_the_cache() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, "").await;
    let mut claims = issuer.claims("launch/patient openid patient/Observation.rs patient/Foo.rs");
    claims["patient"] = json!("Patient/123");
    claims["fhirUser"] = json!("Patient/123");
    claims["need_patient_banner"] = json!(true);
    claims["fhirContext"] = json!([{"reference": "Encounter/9"}, "DocumentReference/2"]);
    claims["jti"] = json!("abc");
    let token = sign(&RSA_1, &claims);
    let mut client = server.client.clone();
    let introspect = |token: String| pb::IntrospectTokenRequest {
        token,
        ..Default::default()
    };

    let first = client
        .introspect_token(introspect(token.clone()))
        .await
        .unwrap()
        .into_inner();
    assert!(first.active);
    assert_eq!(first.patient, "123");
    assert_eq!(first.fhir_user, "Patient/123");
    assert_eq!(first.aud, [AUDIENCE]);
    assert_eq!(first.iss, issuer.issuer);
    assert_eq!(first.jti, "abc");
    assert!(first.need_patient_banner);
    assert_eq!(
        first.fhir_context,
        [
            r#"{"reference":"Encounter/9"}"#,
            r#"{"reference":"DocumentReference/2"}"#
        ]
    );
    assert_eq!(first.source, pb::TokenSource::LocalJwt as i32);
    assert!(!first.cached);
    assert_eq!(first.scopes.len(), 4);
    assert_eq!(first.ignored_scopes[0].scope, "patient/Foo.rs");

    let second = client
        .introspect_token(introspect(token))
        .await
        .unwrap()
        .into_inner();
    assert!(second.cached);

    claims["exp"] = json!(now() - 10);
    let expired = client
        .introspect_token(introspect(sign(&RSA_1, &claims)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        expired,
        pb::IntrospectTokenResponse::default(),
        "inactive: active = false and nothing else"
    );

    let status = client
        .introspect_token(introspect(String::new()))
        .await
        .expect_err("token required");
    assert_eq!(status.code(), Code::InvalidArgument);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_reflection_are_served() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, "").await;

    let mut health = tonic_health::pb::health_client::HealthClient::new(server.channel.clone());
    let serving = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
    for service in ["", "smartauthz.v1.AuthzService"] {
        let response = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(response.status, serving, "{service:?}");
    }

    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut reflection = ServerReflectionClient::new(server.channel.clone());
    let request = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.message().await.unwrap().expect("one answer");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer {response:?}");
    };
    let names: Vec<String> = list
        .service
        .into_iter()
        .map(|service| service.name)
        .collect();
    // Every service the listener serves.
    for service in [
        "smartauthz.v1.AuthzService",
        "envoy.service.auth.v3.Authorization",
        "envoy.service.ext_proc.v3.ExternalProcessor",
        "grpc.health.v1.Health",
    ] {
        assert!(names.contains(&service.to_owned()), "{service}: {names:?}");
    }
    server.stop().await;
}

/// A message over a service's decoding limit is `RESOURCE_EXHAUSTED` (the gRPC status code
/// guide's code for a message over the receiver's limit), not tonic's `OUT_OF_RANGE`, and
/// names the limits an operator can read: here health's, which is not `max_request_bytes`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_health_check_over_its_limit_is_resource_exhausted_and_names_the_limits() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, "").await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(server.channel.clone());
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "x".repeat(smart_authz::app::SMALL_MESSAGE_BYTES + 1),
        })
        .await
        .expect_err("over health's limit");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let limit = format!(
        "{} bytes for health and reflection",
        smart_authz::app::SMALL_MESSAGE_BYTES
    );
    assert!(status.message().contains(&limit), "{status:?}");
    assert!(status.message().contains("max_request_bytes"), "{status:?}");
    // An ordinary check still passes through unchanged.
    let serving = health
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .expect("served")
        .into_inner();
    assert_eq!(
        serving.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    server.stop().await;
}

/// grpcurl before 1.8.8, Evans, older grpcui, Postman before 11, Kreya and Insomnia ask
/// the v1alpha reflection service only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_v1alpha_is_served_for_older_clients() {
    use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;

    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, "").await;
    let mut reflection = ServerReflectionClient::new(server.channel.clone());
    let requests = [
        MessageRequest::ListServices(String::new()),
        MessageRequest::FileContainingSymbol("smartauthz.v1.AuthzService".to_owned()),
    ]
    .map(|message| ServerReflectionRequest {
        host: String::new(),
        message_request: Some(message),
    });
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter(requests))
        .await
        .unwrap()
        .into_inner();
    let listed = responses.message().await.unwrap().expect("a list");
    let Some(MessageResponse::ListServicesResponse(list)) = listed.message_response else {
        panic!("unexpected reflection answer {listed:?}");
    };
    for name in [
        "smartauthz.v1.AuthzService",
        "envoy.service.auth.v3.Authorization",
        "grpc.health.v1.Health",
    ] {
        assert!(
            list.service.iter().any(|service| service.name == name),
            "{name}: {list:?}"
        );
    }
    let described = responses.message().await.unwrap().expect("a descriptor");
    let Some(MessageResponse::FileDescriptorResponse(files)) = described.message_response else {
        panic!("unexpected reflection answer {described:?}");
    };
    assert!(!files.file_descriptor_proto.is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_and_stops_listening() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, "").await;
    let address = server.address;
    let token = issuer.patient_token("patient/*.rs", "123");
    assert_eq!(
        decision(&server.check(&token, "GET", "Observation/1").await),
        pb::Decision::Allow
    );
    server.stop().await;
    assert!(
        tokio::net::TcpStream::connect(address).await.is_err(),
        "still listening after shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_calls_finish_during_shutdown() {
    // An introspection endpoint that accepts connections and never answers: the call stays
    // in flight until the introspection timeout.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_address = silent.local_addr().unwrap();
    let holder = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            open.push(socket);
        }
    });
    let config = format!(
        "[[issuers]]\nissuer = \"https://opaque.example\"\naudiences = [\"{AUDIENCE}\"]\nintrospection_endpoint = \"http://{silent_address}/introspect\"\nclient_id = \"rs\"\nclient_secret = \"secret\"\nintrospection_timeout_ms = 1500\n"
    );
    let server = TestServer::start(&config).await;
    let mut client = server.client.clone();
    let in_flight = tokio::spawn(async move {
        client
            .check_access(check_http("an-opaque-token", "GET", "Observation/1"))
            .await
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!in_flight.is_finished(), "the call is in flight");
    let started = std::time::Instant::now();
    server.stop().await;
    let answer = in_flight.await.unwrap();
    // The call ran to its own end (the introspection timeout), answered by the service.
    let status = answer.expect_err("the silent issuer makes it UNAVAILABLE");
    assert_eq!(status.code(), Code::Unavailable, "{}", status.message());
    assert!(
        status.message().contains("opaque.example"),
        "{}",
        status.message()
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    holder.abort();
}

/// Token parameters carry code-system URLs in almost every real query, and conditional
/// updates name identifier systems: only the path decides whether an entry is relative.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_entries_whose_query_holds_a_url_are_decided() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, "").await;
    let token = issuer.patient_token("patient/Observation.rs", "123");
    let mut client = server.client.clone();
    let response = client
        .batch_check_access(pb::BatchCheckAccessRequest {
            access_token: token.clone(),
            bundle_type: pb::BundleType::Batch as i32,
            entries: vec![
                entry("GET", "Observation?code=http://loinc.org|8867-4", None),
                entry(
                    "GET",
                    "Observation?code=http%3A%2F%2Floinc.org%7C8867-4",
                    None,
                ),
            ],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        response.decision,
        pb::Decision::Allow as i32,
        "{response:?}"
    );

    for path in [
        "http://other.example.org/fhir/Observation/1",
        "//other.example.org/fhir/Observation/1",
    ] {
        let status = client
            .batch_check_access(pb::BatchCheckAccessRequest {
                access_token: token.clone(),
                bundle_type: pb::BundleType::Batch as i32,
                entries: vec![entry("GET", path, None)],
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{path}");
        assert!(status.message().contains("absolute URL"), "{status:?}");
    }
    server.stop().await;
}

/// Every RPC echoes the caller's `request_id` (also on a deny and an inactive token); one
/// that could forge a log line is INVALID_ARGUMENT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_echoes_its_request_id() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, "").await;
    let token = issuer.patient_token("patient/Observation.rs", "123");
    let mut client = server.client.clone();
    let check = |request_id: &str| pb::CheckAccessRequest {
        access_token: token.clone(),
        request: Some(pb::check_access_request::Request::Http(pb::HttpRequest {
            method: "GET".into(),
            path: "Condition/1".into(),
            ..Default::default()
        })),
        request_id: request_id.into(),
        ..Default::default()
    };
    let denied = client
        .check_access(check("a-1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(denied.decision(), pb::Decision::Deny);
    assert_eq!(denied.request_id, "a-1");

    let batch = client
        .batch_check_access(pb::BatchCheckAccessRequest {
            access_token: token.clone(),
            bundle_type: pb::BundleType::Batch as i32,
            entries: vec![entry("GET", "Observation/1", None)],
            request_id: "b-2".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(batch.request_id, "b-2");

    let inactive = client
        .introspect_token(pb::IntrospectTokenRequest {
            token: "not-a-token".into(),
            request_id: "c-3".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!inactive.active);
    assert_eq!(inactive.request_id, "c-3");

    for bad in ["with space", "new\nline", &"x".repeat(129)] {
        let error = client.check_access(check(bad)).await.unwrap_err();
        assert_eq!(error.code(), Code::InvalidArgument, "{bad:?}");
        assert!(
            error.message().contains("request id"),
            "{}",
            error.message()
        );
    }
    server.stop().await;
}

/// Reflection is a stream: grpcurl sends a request and waits for its answer before it sends
/// the next or closes, so the service must answer a stream that is still open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_answers_while_the_stream_stays_open() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;

    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, "").await;
    let (requests, stream) = tokio::sync::mpsc::channel(1);
    requests
        .send(ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        })
        .await
        .unwrap();
    let mut reflection = ServerReflectionClient::new(server.channel.clone());
    let answer = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        let mut responses = reflection
            .server_reflection_info(tokio_stream::wrappers::ReceiverStream::new(stream))
            .await
            .unwrap()
            .into_inner();
        responses.message().await
    })
    .await
    .expect("an answer while the request stream is open");
    assert!(answer.unwrap().is_some());
    drop(requests);
    server.stop().await;
}
