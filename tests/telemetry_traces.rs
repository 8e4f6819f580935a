//! Traces end to end: the server exports its spans over OTLP/gRPC to an in-test receiver
//! (a tonic server implementing the collector's `TraceService`), and a CheckAccess span
//! joins the trace of the `traceparent` the caller sent; a call whose `traceparent` is not
//! sampled exports nothing, not even the key fetch it caused.
//!
//! OpenTelemetry pipelines are process-wide, so this file is its own test binary with a
//! single test that installs telemetry once. The others run the binary: confined to one CPU
//! (its current-thread runtime), checking that the spans of its last calls leave at SIGTERM;
//! and under two samplers, checking that an app's own `traceparent` behind Envoy is linked
//! to without forcing export.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a panic is a failed test"
)]

mod common;

use std::time::Duration;

use common::envoy;
use common::otlp::{OtlpReceiver, ReceivedSpan};
use common::spawned::Served;
use common::*;
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use smart_authz::config::{LogConfig, TelemetryConfig};
use smart_authz::grpc::pb;
use smart_authz::telemetry::{self, Outputs};
use tracing_subscriber::fmt::writer::BoxMakeWriter;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN_ID: &str = "00f067aa0ba902b7";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn with_traceparent<T>(message: T, traceparent: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("traceparent", traceparent.parse().unwrap());
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_access_spans_reach_the_collector_in_the_callers_trace() {
    let receiver = OtlpReceiver::start().await;
    let telemetry_config = TelemetryConfig {
        otlp_endpoint: Some(receiver.endpoint()),
        ..TelemetryConfig::default()
    };
    let environment =
        |name: &str| (name == "OTEL_SERVICE_NAME").then(|| "authz-under-test".to_owned());
    let outputs = Outputs {
        logs: BoxMakeWriter::new(std::io::sink),
        audit: BoxMakeWriter::new(std::io::sink),
        audit_flusher: None,
    };
    let guard = telemetry::install_with(
        &LogConfig::default(),
        &telemetry_config,
        &environment,
        outputs,
    )
    .expect("telemetry installs");
    assert!(guard.exports_traces());
    assert!(telemetry::traces::enabled());
    // Installing twice is harmless: the second call is inert.
    let second = telemetry::install(&LogConfig::default(), &telemetry_config, &environment)
        .expect("a second install is accepted");
    assert!(!second.exports_traces());

    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, "").await;
    let token = issuer.patient_token("patient/Observation.rs", "123");
    let traceparent = format!("00-{TRACE_ID}-{PARENT_SPAN_ID}-01");

    let allowed = server
        .client
        .clone()
        .check_access(with_traceparent(
            pb::CheckAccessRequest {
                request_id: "fhir-req-42".into(),
                ..check_http(&token, "GET", "Observation/obs-1")
            },
            &traceparent,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(decision(&allowed), pb::Decision::Allow);
    // A second call without traceparent: served from the cache, a trace of its own.
    let denied = server.check(&token, "DELETE", "Observation/obs-1").await;
    assert_eq!(decision(&denied), pb::Decision::Deny);
    // A token signed by a key published since: verifying it fetches the key set again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    issuer.publish(&[&RSA_1, &RSA_2]);
    let mut claims = issuer.claims("patient/Observation.rs");
    claims["patient"] = serde_json::json!("123");
    let rotated = server
        .check_request(pb::CheckAccessRequest {
            request_id: "after-rotation".into(),
            ..check_http(&sign(&RSA_2, &claims), "GET", "Observation/obs-1")
        })
        .await;
    assert_eq!(decision(&rotated), pb::Decision::Allow);

    let flush = || tokio::task::block_in_place(|| guard.force_flush());
    let is_check_access =
        |span: &ReceivedSpan| span.span.name == "smartauthz.v1.AuthzService/CheckAccess";
    let joined = receiver
        .wait_for(Duration::from_secs(20), flush, |span| {
            is_check_access(span) && hex(&span.span.trace_id) == TRACE_ID
        })
        .await
        .expect("the CheckAccess span of the traced call reaches the collector");
    assert_eq!(hex(&joined.span.parent_span_id), PARENT_SPAN_ID);
    assert_eq!(joined.service_name.as_deref(), Some("authz-under-test"));
    // SPAN_KIND_SERVER
    assert_eq!(joined.span.kind, 2);
    let expected = [
        ("rpc.system", "grpc"),
        ("rpc.service", "smartauthz.v1.AuthzService"),
        ("rpc.method", "CheckAccess"),
        ("rpc.grpc.status_code", "0"),
        ("authz.decision", "allow"),
        ("authz.reason", "granted"),
        ("authz.context", "patient"),
        ("authz.request_id", "fhir-req-42"),
        ("fhir.interaction", "read"),
        ("fhir.resource_type", "Observation"),
        ("token.cache", "miss"),
        ("token.source", "jwt"),
        ("upstream.calls", "0"),
    ];
    for (key, value) in expected {
        assert_eq!(
            joined.attribute(key).as_deref(),
            Some(value),
            "{key} of {:?}",
            joined.span.attributes
        );
    }

    let cached = receiver
        .wait_for(Duration::from_secs(20), flush, |span| {
            is_check_access(span) && span.attribute("authz.decision").as_deref() == Some("deny")
        })
        .await
        .expect("the span of the untraced call reaches the collector");
    assert_ne!(hex(&cached.span.trace_id), TRACE_ID);
    assert!(cached.span.parent_span_id.is_empty());
    assert_eq!(cached.attribute("token.cache").as_deref(), Some("hit"));
    assert_eq!(
        cached.attribute("authz.reason").as_deref(),
        Some("no_matching_scope")
    );
    assert_eq!(
        cached.attribute("fhir.interaction").as_deref(),
        Some("delete")
    );

    let refetched = receiver
        .wait_for(Duration::from_secs(20), flush, |span| {
            span.attribute("authz.request_id").as_deref() == Some("after-rotation")
        })
        .await
        .expect("the span of the call after the rotation reaches the collector");
    assert_eq!(
        refetched.attribute("upstream.calls").as_deref(),
        Some("1"),
        "{:?}",
        refetched.span.attributes
    );

    // A call the caller's trace leaves unsampled, whose token fetches the keys again:
    // neither the call nor the fetch reaches the collector, the fetch not even as a trace
    // of its own.
    let key_fetches = |spans: &[ReceivedSpan]| {
        spans
            .iter()
            .filter(|span| span.span.name == "jwks fetch")
            .count()
    };
    flush();
    let fetched = key_fetches(&receiver.spans());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    issuer.publish(&[&RSA_1, &RSA_2, &EC_1]);
    let unsampled = server
        .client
        .clone()
        .check_access(with_traceparent(
            pb::CheckAccessRequest {
                request_id: "unsampled".into(),
                ..check_http(&sign(&EC_1, &claims), "GET", "Observation/obs-1")
            },
            &format!("00-{TRACE_ID}-{PARENT_SPAN_ID}-00"),
        ))
        .await
        .unwrap()
        .into_inner();
    // Allowed: only the key set published since holds EC_1.
    assert_eq!(decision(&unsampled), pb::Decision::Allow);
    flush();
    let spans = receiver.spans();
    assert_eq!(
        key_fetches(&spans),
        fetched,
        "the unsampled call's key fetch was exported"
    );
    assert!(
        spans
            .iter()
            .all(|span| span.attribute("authz.request_id").as_deref() != Some("unsampled")),
        "the unsampled call's span was exported"
    );

    for span in spans {
        for value in span.attribute_values() {
            assert!(
                !value.contains(&token) && !token.contains(&value) || value.len() < 16,
                "span {} carries the token in {value:?}",
                span.span.name
            );
        }
        assert!(!span.span.name.contains(&token));
    }

    server.stop().await;
    tokio::task::block_in_place(|| guard.shutdown(Duration::from_secs(5)));
    assert!(!telemetry::traces::enabled());
}

/// With one CPU the service runs every task on its main thread, the exporter's channel
/// included: the shutdown flush must keep that thread driving the runtime, or the last spans
/// are lost. The batch's delay is set beyond the test's length, so only that flush can send
/// them. Needs `taskset` (util-linux) and CPU 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_on_one_cpu_sends_its_last_spans_when_it_stops() {
    let taskset = std::process::Command::new("taskset")
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success());
    assert!(
        taskset,
        "this test confines the binary with taskset (util-linux)"
    );
    let receiver = OtlpReceiver::start().await;
    let mut command = common::spawned::command("taskset");
    without_otel_variables(&mut command);
    command
        .args(["-c", "0", env!("CARGO_BIN_EXE_smart-authz"), "serve"])
        .env("SMART_AUTHZ_TELEMETRY__METRICS_LISTEN", "")
        .env("SMART_AUTHZ_TELEMETRY__AUDIT", "off")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint())
        .env("OTEL_BSP_SCHEDULE_DELAY", "600000");
    let mut server = common::spawned::Served::start(command);
    let token = binary_token(&["--scope", "patient/*.rs", "--patient", "123"]);
    let mut client = pb::authz_service_client::AuthzServiceClient::new(server.channel().await);
    let answer = client
        .check_access(check_http(&token, "GET", "Observation?code=x"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(decision(&answer), pb::Decision::Allow);
    assert!(
        receiver.spans().is_empty(),
        "exported before the batch's delay: the test would prove nothing"
    );

    server.stop_with_sigterm().await;
    let spans = receiver.spans();
    assert!(
        spans
            .iter()
            .any(|span| span.span.name == "smartauthz.v1.AuthzService/CheckAccess"),
        "the last call's span was not sent at the stop: {:?}; logs: {:#?}",
        spans.iter().map(|span| &span.span.name).collect::<Vec<_>>(),
        server.logs_after_exit()
    );
    let logs = server.logs_after_exit();
    assert!(
        logs.iter().any(|line| line.contains("smart-authz serving")
            && line.contains(r#""runtime":"CurrentThread""#)),
        "the binary on one CPU runs a current-thread runtime: {logs:#?}"
    );
}

/// The caller's `OTEL_*` variables are configuration to the binary: none reach it.
fn without_otel_variables(command: &mut std::process::Command) {
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("OTEL_") {
            command.env_remove(name);
        }
    }
}

/// `smart-authz serve` exporting traces to `endpoint`, without metrics or audit lines.
fn serve_exporting_to(endpoint: &str) -> std::process::Command {
    let mut command = common::spawned::command(env!("CARGO_BIN_EXE_smart-authz"));
    without_otel_variables(&mut command);
    command
        .arg("serve")
        .env("SMART_AUTHZ_TELEMETRY__METRICS_LISTEN", "")
        .env("SMART_AUTHZ_TELEMETRY__AUDIT", "off")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint);
    command
}

/// The binary under `OTEL_TRACES_SAMPLER=<sampler>` (and `_ARG`), exporting to `receiver`.
fn binary_exporting_to(receiver: &OtlpReceiver, sampler: &str, argument: &str) -> Served {
    let mut command = serve_exporting_to(&receiver.endpoint());
    command
        .env("OTEL_TRACES_SAMPLER", sampler)
        .env("OTEL_TRACES_SAMPLER_ARG", argument);
    Served::start(command)
}

/// An Envoy `Check` whose forwarded request carries `traceparent` (no gRPC metadata):
/// the app's own header.
async fn envoy_check_with_app_traceparent(server: &Served, token: &str, traceparent: &str) {
    let answer = AuthorizationClient::new(server.channel().await)
        .check(envoy::check_request(
            "GET",
            "/Observation?code=x",
            Some(token),
            &[("traceparent", traceparent)],
            None,
        ))
        .await
        .unwrap()
        .into_inner();
    envoy::ok_response(&answer);
}

/// The spans `server` exports until it stops (SIGTERM flushes the exporter).
async fn spans_until_stopped(mut server: Served, receiver: &OtlpReceiver) -> Vec<ReceivedSpan> {
    server.stop_with_sigterm().await;
    receiver.spans()
}

/// The `traceparent` of the request Envoy asks about is the app's: its sampled flag does not
/// override the ratio (an app setting it on every request would have every call exported),
/// and a call the sampler keeps starts a trace of its own, linked to the app's span.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apps_traceparent_is_linked_and_does_not_force_sampling() {
    let token = binary_token(&["--scope", "patient/*.rs", "--patient", "123"]);
    let is_envoy_check =
        |span: &&ReceivedSpan| span.span.name == "envoy.service.auth.v3.Authorization/Check";

    // A ratio of 0: no new trace is kept, and the app's sampled flag changes nothing; a
    // caller's `traceparent` in the gRPC metadata (Envoy's own, when it traces) still is.
    let receiver = OtlpReceiver::start().await;
    let server = binary_exporting_to(&receiver, "parentbased_traceidratio", "0");
    envoy_check_with_app_traceparent(
        &server,
        &token,
        &format!("00-{TRACE_ID}-{PARENT_SPAN_ID}-01"),
    )
    .await;
    let mut client = pb::authz_service_client::AuthzServiceClient::new(server.channel().await);
    client
        .check_access(with_traceparent(
            check_http(&token, "GET", "Observation?code=x"),
            &format!("00-{TRACE_ID}-{PARENT_SPAN_ID}-01"),
        ))
        .await
        .unwrap();
    let spans = spans_until_stopped(server, &receiver).await;
    assert!(
        spans
            .iter()
            .any(|span| span.span.name == "smartauthz.v1.AuthzService/CheckAccess"),
        "the call under Envoy's sampled traceparent is exported: {:?}",
        spans.iter().map(|span| &span.span.name).collect::<Vec<_>>()
    );
    assert_eq!(spans.iter().filter(is_envoy_check).count(), 0);

    // Always on: the call is a trace of its own, linked to the app's span (whose flag,
    // here unsampled, changes nothing).
    let receiver = OtlpReceiver::start().await;
    let server = binary_exporting_to(&receiver, "parentbased_always_on", "");
    envoy_check_with_app_traceparent(
        &server,
        &token,
        &format!("00-{TRACE_ID}-{PARENT_SPAN_ID}-00"),
    )
    .await;
    let spans = spans_until_stopped(server, &receiver).await;
    let linked = spans
        .iter()
        .find(is_envoy_check)
        .expect("the Envoy Check span is exported");
    assert_ne!(hex(&linked.span.trace_id), TRACE_ID);
    assert!(linked.span.parent_span_id.is_empty());
    let [link] = linked.span.links.as_slice() else {
        panic!("one link expected: {:?}", linked.span.links);
    };
    assert_eq!(hex(&link.trace_id), TRACE_ID);
    assert_eq!(hex(&link.span_id), PARENT_SPAN_ID);
}

/// A collector's URL may carry credentials (`user:password@`): the start-up line that names
/// the endpoint shows `***@` in their place, and no log line shows them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_collectors_credentials_stay_out_of_the_logs() {
    let receiver = OtlpReceiver::start().await;
    let endpoint = receiver
        .endpoint()
        .replace("http://", "http://collector:s3cret@");
    let mut command = serve_exporting_to(&endpoint);
    command.env("RUST_LOG", "info");
    let mut server = Served::start(command);
    server.stop_with_sigterm().await;
    let logs = server.logs_after_exit();
    assert!(
        logs.iter()
            .any(|line| line.contains("exporting traces over OTLP/gRPC")
                && line.contains("http://***@127.0.0.1")),
        "{logs:#?}"
    );
    assert!(
        !logs.iter().any(|line| line.contains("s3cret")),
        "{logs:#?}"
    );
}
