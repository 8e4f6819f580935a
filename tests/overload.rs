//! Overload: beyond `max_concurrent_calls` in flight, a call is refused at once with
//! RESOURCE_EXHAUSTED and counted, instead of queueing; health checks are never refused.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a panic is a failed test"
)]

mod common;

use std::time::Duration;

use common::{StuckEndpoint, TestServer, check_http};
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_beyond_the_limit_is_refused_at_once_and_counted() {
    // A call that introspects stays in flight until the introspection timeout.
    let mut stuck = StuckEndpoint::start().await;
    let config = format!("max_concurrent_calls = 1\n{}", stuck.issuer_toml(3000));
    let server = TestServer::start_with_metrics(&config).await;

    // Once the slow call is at the issuer it holds the only slot: a fast call (a public
    // endpoint, no token) is shed.
    let slow = stuck.hold_a_call(server.channel.clone()).await;
    let refused = server
        .client
        .clone()
        .check_access(check_http("", "GET", "metadata"))
        .await
        .expect_err("a second call is shed while the first is in flight");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused.message().contains("max_concurrent_calls"),
        "{refused:?}"
    );
    // Marked as a refusal a retry may get past, where a request too large is not.
    assert_eq!(
        refused.metadata().get("grpc-retry-pushback-ms").unwrap(),
        "1000"
    );

    // Health is never shed.
    let health = tonic_health::pb::health_client::HealthClient::new(server.channel.clone())
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .expect("health answers under overload");
    assert_eq!(health.into_inner().status, 1);

    let metrics = reqwest::get(format!(
        "http://{}/metrics",
        server.metrics_address.unwrap()
    ))
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    let shed = metrics
        .lines()
        .find(|line| line.starts_with("smart_authz_shed_calls_total"))
        .expect("the shed counter");
    let count: f64 = shed.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(count >= 1.0, "{shed}");

    // The slow call ends (its issuer is unavailable), and the slot is free again.
    let slow = slow.await.unwrap().expect_err("the issuer never answered");
    assert_eq!(slow.code(), Code::Unavailable);
    let after = server
        .client
        .clone()
        .check_access(check_http("", "GET", "metadata"))
        .await
        .expect("a slot is free once the slow call ended");
    assert_eq!(after.into_inner().decision, 1, "metadata is public");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_json_face_shares_the_limit_with_the_grpc_faces() {
    let mut stuck = StuckEndpoint::start().await;
    let config = format!(
        "max_concurrent_calls = 1\n[authzen]\nlisten = \"127.0.0.1:0\"\n{}",
        stuck.issuer_toml(3000)
    );
    let server = TestServer::start(&config).await;
    let url = format!(
        "http://{}/access/v1/evaluation",
        server.authzen_address.expect("[authzen] is configured")
    );
    let evaluation = |token: &str| {
        serde_json::json!({
            "subject": { "type": "access_token", "id": token },
            "action": { "name": "GET" },
            "resource": { "type": "fhir_request", "id": "Observation/o1" },
        })
    };
    let http = reqwest::Client::new();

    // An evaluation with an opaque token stays in flight at the issuer and holds the slot.
    let slow = tokio::spawn({
        let (http, url, body) = (http.clone(), url.clone(), evaluation("an-opaque-token"));
        async move { http.post(url).json(&body).send().await }
    });
    tokio::time::timeout(Duration::from_secs(10), &mut stuck.arrived)
        .await
        .expect("the slow evaluation reaches the issuer")
        .unwrap();

    // Another evaluation is refused at once: 503, Retry-After, the limit named.
    let shed = http.post(&url).json(&evaluation("")).send().await.unwrap();
    assert_eq!(shed.status().as_u16(), 503);
    assert_eq!(
        shed.headers()
            .get("retry-after")
            .map(|value| value.to_str().unwrap()),
        Some("1")
    );
    let body: serde_json::Value = shed.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("max_concurrent_calls"), "{body}");

    // So is a gRPC call: one limit for every face.
    let refused = server
        .client
        .clone()
        .check_access(check_http("", "GET", "metadata"))
        .await
        .expect_err("the gRPC call is shed while the evaluation is in flight");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");

    // The slow evaluation ends (its issuer is unavailable) and gives its slot back.
    let slow = slow.await.unwrap().unwrap();
    assert_eq!(slow.status().as_u16(), 503);
    assert!(
        slow.headers().get("retry-after").is_none(),
        "not shed: unavailable"
    );
    let after = http.post(&url).json(&evaluation("")).send().await.unwrap();
    assert_eq!(after.status().as_u16(), 200, "a slot is free again");
    let decided: serde_json::Value = after.json().await.unwrap();
    assert_eq!(decided["decision"], false, "no token: a deny, but decided");
}

/// A peer that opens a call and sends its headers but never its message holds no slot, and
/// is answered DEADLINE_EXCEEDED once the message's time is up: streams of that kind on a
/// few connections would otherwise hold every slot of the process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_whose_message_never_arrives_holds_no_slot() {
    let issuer = common::TestIssuer::start(&[&common::RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, "max_concurrent_calls = 1\n").await;
    let io = tokio::net::TcpStream::connect(server.address)
        .await
        .unwrap();
    let (send, connection) = h2::client::handshake(io).await.unwrap();
    tokio::spawn(connection);
    let request = http::Request::post(format!(
        "http://{}/smartauthz.v1.AuthzService/CheckAccess",
        server.address
    ))
    .header("content-type", "application/grpc")
    .header("te", "trailers")
    .body(())
    .unwrap();
    let mut send = send.ready().await.unwrap();
    let (answer, _stalled) = send.send_request(request, false).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let public = server
        .client
        .clone()
        .check_access(check_http("", "GET", "metadata"))
        .await
        .expect("the only slot is free while the stalled call waits for its message");
    assert_eq!(public.into_inner().decision, 1);

    let answer = tokio::time::timeout(Duration::from_secs(20), answer)
        .await
        .expect("an answer within 20 s")
        .unwrap();
    let status = answer
        .headers()
        .get("grpc-status")
        .map(|value| value.to_str().unwrap().to_owned());
    assert_eq!(
        status.as_deref(),
        Some("4"),
        "DEADLINE_EXCEEDED: {answer:?}"
    );
}

/// An ext_proc stream takes no slot to open, but each request's decision takes one, as a
/// unary call does: beyond the limit the stream is refused RESOURCE_EXHAUSTED
/// before the upstream is asked (Envoy, failing closed, answers 500). The answer of a
/// request already let through is judged whatever the load: the upstream has done its work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ext_proc_decides_each_request_in_a_slot() {
    use common::ext_proc::*;

    let issuer = common::TestIssuer::start(&[&common::RSA_1]).await;
    let mut stuck = StuckEndpoint::start().await;
    let config = format!(
        "max_concurrent_calls = 1\n{}\n{}\n{}",
        common::envoy::ENVOY_CONFIG,
        issuer.issuer_toml(),
        stuck.issuer_toml(3000)
    );
    let server = TestServer::start(&config).await;
    let metadata = || request_headers("GET", "/fhir/R4/metadata", None, &[]);

    // A read let through before the slow call took the only slot.
    let mut admitted = filtering_stream(&server, &issuer, "/fhir/R4/Observation/o2").await;
    let mut open = ProcessStream::open(&server.channel).await;

    let slow = stuck.hold_a_call(server.channel.clone()).await;
    let refused = open
        .try_send(metadata())
        .await
        .expect("the stream's end")
        .expect_err("its decision is shed while the slow call holds the only slot");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("max_concurrent_calls"));
    // The admitted read's answer is still judged: another patient's resource becomes a 403.
    admitted
        .send(response_headers("200", "application/fhir+json", &[]))
        .await;
    let theirs = serde_json::to_vec(&common::answers::observation_of("o2", "456")).unwrap();
    let reply = admitted.send(response_body(&theirs)).await;
    assert_eq!(immediate_status(&reply), Some(403), "{reply:?}");

    // A stream still opens while the slot is taken: only its decisions count, so its
    // opening cannot hold the slot its own first decision needs.
    let mut opened = ProcessStream::open(&server.channel).await;
    let refused = opened
        .try_send(metadata())
        .await
        .expect("the stream's end")
        .expect_err("its first decision is shed, not its opening");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");

    slow.await.unwrap().expect_err("the issuer never answered");
    let mut stream = ProcessStream::open(&server.channel).await;
    let reply = stream.send(metadata()).await;
    assert!(skips_the_answer(&reply), "{reply:?}");
}

/// `max_connections` bounds the gRPC listener's connections: one more waits in the listen
/// backlog. A connection that never sends the HTTP/2 preface is closed after 10 s, so
/// silent peers cannot hold the slots: the waiting one is served then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_closed_and_the_rest_wait_for_a_slot() {
    let issuer = common::TestIssuer::start(&[&common::RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, "max_connections = 2\n").await;
    // The test's own client holds one slot, a silent peer the other.
    let public = || check_http("", "GET", "metadata");
    server.client.clone().check_access(public()).await.unwrap();
    let _silent = tokio::net::TcpStream::connect(server.address)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut third = smart_authz::grpc::pb::authz_service_client::AuthzServiceClient::new(
        common::connect(server.address).await,
    );
    let waiting = tokio::time::timeout(Duration::from_secs(2), third.check_access(public())).await;
    assert!(waiting.is_err(), "served beside two open connections");
    let served = tokio::time::timeout(Duration::from_secs(20), third.check_access(public()))
        .await
        .expect("served once the silent connection was closed")
        .unwrap();
    assert_eq!(served.into_inner().decision, 1, "metadata is public");
}

/// Messages being read hold no slot, so they are bounded by bytes instead: beyond
/// `max_buffered_request_bytes` held over every connection, a call is refused
/// RESOURCE_EXHAUSTED at once, and the bytes come back when the streams holding them end.
/// A unary call's message counts, and so does a message an ext_proc stream has not wholly
/// sent. Without it, one connection's hundreds of streams, each sent up to
/// `max_request_bytes` and then left, could take the process's memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_being_read_are_bounded_by_bytes() {
    let issuer = common::TestIssuer::start(&[&common::RSA_1]).await;
    let server = TestServer::for_issuer(
        &issuer,
        "max_request_bytes = 4096\nmax_buffered_request_bytes = 8192\n",
    )
    .await;
    let io = tokio::net::TcpStream::connect(server.address)
        .await
        .unwrap();
    let (send, connection) = h2::client::handshake(io).await.unwrap();
    tokio::spawn(connection);
    // A stream announcing a message of 4,000 bytes, and 3,995 of them: the rest never
    // comes. ext_proc's message is counted three times (tonic's bytes, and the copy it is
    // weighed from once whole, as its vector grows): 1,334 bytes of it hold as much.
    let open_stalled = |path: &'static str| {
        let length = if path.contains("ext_proc") {
            1334
        } else {
            4000
        };
        Stalled::open(&send, server.address, path, length)
    };
    let paths = [
        "/smartauthz.v1.AuthzService/CheckAccess",
        "/envoy.service.ext_proc.v3.ExternalProcessor/Process",
    ];
    let mut stalled = Vec::new();
    for path in paths {
        stalled.push(open_stalled(path).await);
    }

    // 8,002 of the 8,192 bytes are held (once the server has read them): a call of a few
    // hundred bytes is refused. A call in reading while a stalled stream's bytes arrive
    // may take their place instead (that stream is then refused): it is opened again.
    let padded = check_http("", "GET", &format!("Observation?code={}", "x".repeat(400)));
    let call = || {
        let mut client = server.client.clone();
        let padded = padded.clone();
        async move { client.check_access(padded).await }
    };
    let mut refused = None;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        for (index, path) in paths.into_iter().enumerate() {
            if stalled[index].ended().await {
                stalled[index] = open_stalled(path).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        if let Err(status) = call().await {
            refused = Some(status);
            break;
        }
    }
    let refused = refused.expect("refused while the stalled messages hold the budget");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused.metadata().get("grpc-retry-pushback-ms").is_some(),
        "{refused:?}"
    );
    assert!(
        refused.message().contains("max_buffered_request_bytes"),
        "{refused:?}"
    );

    // The stalled streams end: their bytes come back.
    for mut stream in stalled {
        stream.body.send_reset(h2::Reason::CANCEL);
    }
    let mut answered = call().await;
    for _ in 0..100 {
        if answered.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        answered = call().await;
    }
    assert!(answered.is_ok(), "{answered:?}");
}

/// The JSON trees a call parses count against `max_buffered_request_bytes` beside its
/// bytes: a tree larger than the whole budget is refused as too large (no retry gets it
/// through), one larger than what other calls leave free as busy (retry), and a resource
/// of ordinary shape is decided. Counting bytes alone let a 4 MiB array of zeros take
/// 162 MB once parsed (docs/performance-log.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parsed_trees_are_bounded_with_the_bytes_they_came_from() {
    let issuer = common::TestIssuer::start(&[&common::RSA_1]).await;
    let server = TestServer::for_issuer(
        &issuer,
        "max_request_bytes = 1048576\nmax_buffered_request_bytes = 4194304\n",
    )
    .await;
    let token = issuer.patient_token("patient/Observation.rs", "123");
    let with_stored = |json: String| smart_authz::grpc::pb::CheckAccessRequest {
        stored: Some(smart_authz::grpc::pb::Resource {
            content: Some(smart_authz::grpc::pb::resource::Content::Json(
                json.into_bytes(),
            )),
        }),
        ..check_http(&token, "GET", "Observation/o1")
    };
    let observation = |members: String| {
        format!(
            r#"{{"resourceType":"Observation","id":"o1","status":"final","code":{{"text":"x"}},"subject":{{"reference":"Patient/123"}}{members}}}"#
        )
    };
    let mut client = server.client.clone();

    // 900 KB of one-member objects: some 80 MB once parsed, beyond the whole 4 MiB.
    let dense = observation(format!(
        r#","extension":[{}{{"a":0}}]"#,
        r#"{"a":0},"#.repeat(112_000)
    ));
    let refused = client.check_access(with_stored(dense)).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused.message().contains("more memory") && refused.message().contains("4194304"),
        "{refused:?}"
    );
    assert!(
        refused.metadata().get("grpc-retry-pushback-ms").is_none(),
        "too large is not retried: {refused:?}"
    );

    // 250 KB of notes: about 3 MB once parsed, within the budget but not beside three
    // stalled messages of a megabyte each.
    let notes = (0..2_500)
        .map(|index| format!(r#"{{"text":"note {index:05} {}"}}"#, "n".repeat(80)))
        .collect::<Vec<_>>()
        .join(",");
    let ordinary = with_stored(observation(format!(r#","note":[{notes}]"#)));
    busy_while_stalled_then_decided(&server, ordinary, |status| {
        status.message().contains("parsed")
    })
    .await;
}

/// What a message takes once prost has decoded it counts against
/// `max_buffered_request_bytes` too, weighed from its bytes before it is decoded: a
/// `ResourceFacts` of 60,000 compartments (780 KB) takes some 13 MB decoded, beyond the
/// whole 4 MiB budget, and an Envoy `CheckRequest` or ext_proc message of 60,000 empty
/// header values (120 KB) as much: all too large (no retry gets them through). One of 9,000
/// compartments is decoded alone, but not while three stalled messages hold most of the
/// budget (busy, retry).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decoded_messages_are_bounded_with_their_bytes() {
    use envoy_types::pb::envoy::config::core::v3::{HeaderMap, HeaderValue};
    use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
    use smart_authz::grpc::pb;

    let issuer = common::TestIssuer::start(&[&common::RSA_1]).await;
    let server = TestServer::for_issuer(
        &issuer,
        "max_request_bytes = 1048576\nmax_buffered_request_bytes = 4194304\n",
    )
    .await;
    let token = issuer.patient_token("patient/Observation.rs", "123");
    let in_compartments = |count: usize| pb::CheckAccessRequest {
        stored: Some(pb::Resource {
            content: Some(pb::resource::Content::Facts(pb::ResourceFacts {
                compartments: vec!["Patient/123".to_owned(); count],
                search_values: Vec::new(),
            })),
        }),
        ..check_http(&token, "GET", "Observation/o1")
    };
    let too_large = |status: &tonic::Status| {
        status.code() == Code::ResourceExhausted
            && status.message().contains("once decoded")
            && status.message().contains("4194304")
            && status.metadata().get("grpc-retry-pushback-ms").is_none()
    };
    let mut client = server.client.clone();
    let refused = client
        .check_access(in_compartments(60_000))
        .await
        .unwrap_err();
    assert!(too_large(&refused), "{refused:?}");

    let mut envoy = common::envoy::check_request("GET", "/Observation/o1", Some(&token), &[], None);
    common::envoy::http_of(&mut envoy).header_map = Some(HeaderMap {
        headers: vec![HeaderValue::default(); 60_000],
    });
    let refused = AuthorizationClient::new(server.channel.clone())
        .check(envoy)
        .await
        .unwrap_err();
    assert!(too_large(&refused), "{refused:?}");

    // The same header values as ext_proc's request headers end its stream.
    let mut headers =
        common::ext_proc::request_headers("GET", "/Observation/o1", Some(&token), &[]);
    if let envoy_types::pb::envoy::service::ext_proc::v3::processing_request::Request::RequestHeaders(
        http,
    ) = &mut headers
        && let Some(map) = http.headers.as_mut()
    {
        map.headers.extend(vec![HeaderValue::default(); 60_000]);
    }
    let mut stream = common::ext_proc::ProcessStream::open(&server.channel).await;
    let refused = stream
        .try_send(headers)
        .await
        .expect("the stream's end")
        .unwrap_err();
    assert!(too_large(&refused), "{refused:?}");

    busy_while_stalled_then_decided(&server, in_compartments(9_000), |_| true).await;
}

/// `request` is refused busy (its refusal one `is_refusal` accepts, with retry pushback)
/// while three stalled messages of a megabyte hold most of `server`'s 4 MiB budget, and
/// allowed once they end.
async fn busy_while_stalled_then_decided(
    server: &TestServer,
    request: smart_authz::grpc::pb::CheckAccessRequest,
    is_refusal: impl Fn(&tonic::Status) -> bool,
) {
    let mut client = server.client.clone();
    let io = tokio::net::TcpStream::connect(server.address)
        .await
        .unwrap();
    let (send, connection) = h2::client::handshake(io).await.unwrap();
    tokio::spawn(connection);
    let path = "/smartauthz.v1.AuthzService/CheckAccess";
    let mut stalled = Vec::new();
    for _ in 0..3 {
        stalled.push(Stalled::open(&send, server.address, path, 1_000_000).await);
    }
    let mut busy = None;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        match client.check_access(request.clone()).await {
            Err(status) if is_refusal(&status) => {
                busy = Some(status);
                break;
            }
            _ => {}
        }
    }
    let busy = busy.expect("refused while the stalled messages hold most of the budget");
    assert_eq!(busy.code(), Code::ResourceExhausted, "{busy:?}");
    assert!(
        busy.metadata().get("grpc-retry-pushback-ms").is_some(),
        "{busy:?}"
    );

    // Once they end, the same request is decided.
    for mut stream in stalled {
        stream.body.send_reset(h2::Reason::CANCEL);
    }
    let mut answered = client.check_access(request.clone()).await;
    for _ in 0..100 {
        if answered.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        answered = client.check_access(request.clone()).await;
    }
    assert_eq!(answered.unwrap().into_inner().decision, 1);
}

/// The entries of a batch are read and decided between other calls
/// (`authorize::between_entries`), each holding its parsed request and decision until the
/// call answers: the faces hold `DECIDED_ENTRY_BYTES` an entry from the budget before they
/// read them. On a 2 MiB budget a batch of 1,000 searches, its message weighed at 1.6 MB, is
/// too large with its entries, though it fits without them. (Envoy's Bundle and AuthZEN's
/// evaluations take the same hold; their trees, about as large as their decided entries,
/// leave no size that fits alone and not with them.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decided_entries_are_held_from_the_budget() {
    use smart_authz::grpc::pb;

    let issuer = common::TestIssuer::start(&[&common::RSA_1]).await;
    let server = TestServer::for_issuer(
        &issuer,
        "max_request_bytes = 1048576\nmax_buffered_request_bytes = 2097152\n",
    )
    .await;
    let token = issuer.patient_token("patient/Observation.rs", "123");
    let search = "Observation?patient=123";

    let batch = pb::BatchCheckAccessRequest {
        access_token: token,
        bundle_type: pb::BundleType::Batch as i32,
        entries: (0..1_000)
            .map(|_| pb::BatchEntry {
                request: Some(pb::batch_entry::Request::Http(pb::HttpRequest {
                    method: "GET".into(),
                    path: search.into(),
                    ..Default::default()
                })),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let Err(refused) = server.client.clone().batch_check_access(batch).await else {
        panic!("the batch was decided within the budget");
    };
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("2097152"), "{refused:?}");
    assert!(refused.metadata().get("grpc-retry-pushback-ms").is_none());
}

/// Many small resources in one call hold what their trees use, not a step ahead each: a
/// batch of 4,000 entries with their stored JSON (about 1.4 MB of message, some 20 MB of
/// trees) is decided on the chart's budget (48 MiB), where a 16 KiB step kept per entry
/// would have asked for all of it and been refused busy at every retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_many_small_resources_fits_the_budget() {
    use smart_authz::grpc::pb;

    let issuer = common::TestIssuer::start(&[&common::RSA_1]).await;
    let server = TestServer::for_issuer(
        &issuer,
        "max_request_bytes = 2097152\nmax_buffered_request_bytes = 50331648\n",
    )
    .await;
    let token = issuer.patient_token("patient/Observation.rs", "123");
    let entries = (0..4_000)
        .map(|index| pb::BatchEntry {
            request: Some(pb::batch_entry::Request::Http(pb::HttpRequest {
                method: "GET".into(),
                path: format!("Observation/o{index}"),
                ..Default::default()
            })),
            stored: Some(pb::Resource {
                content: Some(pb::resource::Content::Json(
                    serde_json::to_vec(&common::answers::observation_of(
                        &format!("o{index}"),
                        "123",
                    ))
                    .unwrap(),
                )),
            }),
            ..Default::default()
        })
        .collect();
    let batch = pb::BatchCheckAccessRequest {
        access_token: token,
        bundle_type: pb::BundleType::Batch as i32,
        entries,
        ..Default::default()
    };
    let decided = server
        .client
        .clone()
        .batch_check_access(batch)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(decided.entries.len(), 4_000);
    assert!(
        decided
            .entries
            .iter()
            .all(|entry| entry.decision == pb::Decision::Allow as i32),
        "{:?}",
        decided.entries.first()
    );
}

/// A stream whose message never ends, as its client sees it.
struct Stalled {
    answer: Option<h2::client::ResponseFuture>,
    response: Option<http::Response<h2::RecvStream>>,
    body: h2::SendStream<bytes::Bytes>,
}

impl Stalled {
    /// A stream to `path` announcing a message of `length` bytes, of which all but its last
    /// five are sent (the frame's prefix counts in `length`).
    async fn open(
        send: &h2::client::SendRequest<bytes::Bytes>,
        address: std::net::SocketAddr,
        path: &str,
        length: u32,
    ) -> Stalled {
        let request = http::Request::post(format!("http://{address}{path}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .unwrap();
        let mut send = send.clone().ready().await.unwrap();
        let (answer, mut body) = send.send_request(request, false).unwrap();
        let mut message = vec![0u8];
        message.extend_from_slice(&length.to_be_bytes());
        message.resize(length as usize, b'x');
        body.send_data(message.into(), false).unwrap();
        Stalled {
            answer: Some(answer),
            response: None,
            body,
        }
    }

    /// Whether the server has ended the stream (refused it): a stalled unary call has no
    /// answer yet; a stalled ext_proc stream has its headers and no end.
    async fn ended(&mut self) -> bool {
        let soon = Duration::from_millis(1);
        if let Some(answer) = &mut self.answer {
            match tokio::time::timeout(soon, answer).await {
                Err(_) => return false,
                Ok(Err(_)) => return true,
                Ok(Ok(response)) => {
                    self.answer = None;
                    self.response = Some(response);
                }
            }
        }
        let Some(response) = &mut self.response else {
            return true;
        };
        response.headers().contains_key("grpc-status")
            || tokio::time::timeout(soon, response.body_mut().trailers())
                .await
                .is_ok()
    }
}

/// `max_connection_age_secs`: an old connection is told GOAWAY, takes no new call, and the
/// calls it has in flight still finish (tonic's own grace would instead cut it, calls and
/// all, without a GOAWAY).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_connection_is_closed_gracefully() {
    use prost::Message as _;

    let issuer = common::TestIssuer::start(&[&common::RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, "max_connection_age_secs = 1\n").await;
    let io = tokio::net::TcpStream::connect(server.address)
        .await
        .unwrap();
    let (send, connection) = h2::client::handshake(io).await.unwrap();
    let connection = tokio::spawn(connection);
    let request = || {
        http::Request::post(format!(
            "http://{}/smartauthz.v1.AuthzService/CheckAccess",
            server.address
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap()
    };
    let message = check_http("", "GET", "metadata").encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    frame.extend_from_slice(&message);
    let (first, rest) = frame.split_at(3);
    // A call in flight when the connection comes of age: half its message now...
    let mut ready = send.clone().ready().await.unwrap();
    let (answer, mut body) = ready.send_request(request(), false).unwrap();
    body.send_data(first.to_vec().into(), false).unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;

    // ...no new call once the GOAWAY has come (within 10 s on a busy machine)...
    let mut refused = false;
    for _ in 0..100 {
        let ready = tokio::time::timeout(Duration::from_secs(1), send.clone().ready()).await;
        if matches!(ready, Ok(Err(_))) {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(refused, "the GOAWAY refuses new streams");
    // ...and the rest of the message later: the call is answered all the same.
    body.send_data(rest.to_vec().into(), true).unwrap();
    let mut answer = tokio::time::timeout(Duration::from_secs(10), answer)
        .await
        .expect("answered within 10 s")
        .unwrap();
    assert_eq!(answer.status(), 200);
    let received = async {
        let body = answer.body_mut();
        while let Some(data) = body.data().await {
            let data = data.unwrap();
            body.flow_control().release_capacity(data.len()).unwrap();
        }
        body.trailers().await.unwrap().unwrap_or_default()
    };
    let trailers = tokio::time::timeout(Duration::from_secs(10), received)
        .await
        .expect("the answer's body within 10 s");
    let status = answer
        .headers()
        .get("grpc-status")
        .or_else(|| trailers.get("grpc-status"));
    assert_eq!(status.unwrap(), "0", "{answer:?} {trailers:?}");
    // Then the connection ends, cleanly.
    let closed = tokio::time::timeout(Duration::from_secs(10), connection).await;
    assert!(matches!(closed, Ok(Ok(Ok(())))), "{closed:?}");
}

/// A peer whose streams the server must reset, one malformed request after another, is
/// closed with GOAWAY after 1,024 of them (hyper's bound, RUSTSEC-2024-0003, which tonic
/// turns off unless it is set): each reset costs the server work the peer never pays for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_making_the_server_reset_stream_after_stream_is_closed() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let issuer = common::TestIssuer::start(&[&common::RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, "").await;
    let mut io = tokio::net::TcpStream::connect(server.address)
        .await
        .unwrap();
    let frame = |kind: u8, flags: u8, stream: u32, payload: &[u8]| {
        let mut frame = u32::try_from(payload.len()).unwrap().to_be_bytes()[1..].to_vec();
        frame.extend_from_slice(&[kind, flags]);
        frame.extend_from_slice(&stream.to_be_bytes());
        frame.extend_from_slice(payload);
        frame
    };
    let mut sent = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    sent.extend(frame(0x4, 0, 0, &[]));
    // HEADERS, END_STREAM | END_HEADERS: POST, http, `/`, and `connection: x`, a header
    // HTTP/2 forbids (RFC 9113 §8.2.2): a malformed request, which the server resets.
    let mut block = vec![0x83, 0x86, 0x84, 0x00, 10];
    block.extend_from_slice(b"connection");
    block.extend_from_slice(&[1, b'x']);
    for stream in (1..=2 * 1100).step_by(2) {
        sent.extend(frame(0x1, 0x5, stream, &block));
    }
    io.write_all(&sent).await.unwrap();

    // Read frames until a GOAWAY, the end of the connection, or 10 s.
    let mut received = Vec::new();
    let goaway = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buffer = [0u8; 16 * 1024];
        loop {
            let read = io.read(&mut buffer).await.unwrap_or(0);
            if read == 0 {
                return false;
            }
            received.extend_from_slice(&buffer[..read]);
            let mut at = 0;
            while at + 9 <= received.len() {
                let length =
                    u32::from_be_bytes([0, received[at], received[at + 1], received[at + 2]]);
                if received[at + 3] == 0x7 {
                    return true;
                }
                at += 9 + usize::try_from(length).unwrap();
            }
        }
    })
    .await;
    assert_eq!(goaway, Ok(true), "a GOAWAY within 10 s");
}
