//! The decision path's cost with telemetry off and on: one `CheckAccess` with a cached
//! 1 KB RS256 token, called on the service in process (no network), so the figures show
//! what telemetry adds to a decision. Run with `cargo bench --bench telemetry`; medians are
//! recorded in README.md.
//!
//! Telemetry is process-wide and installed once, so the variants run in this order:
//! off; metrics only; then metrics + audit + OTLP traces (exported by the batch processor
//! to an in-process OTLP receiver, sampling ratio 0.1) with a sampled `traceparent`, with
//! an unsampled one, without any (the 10% ratio decides), and with every decision audited
//! (under a sampled and an unsampled `traceparent`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a benchmark or example stops on a broken set-up"
)]

#[allow(dead_code)]
#[path = "../tests/common/otlp.rs"]
mod otlp;

mod common;

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use smart_authz::authorize::{Authorizer, Servers};
use smart_authz::config::AuditMode;
use smart_authz::config::{LogConfig, TelemetryConfig};
use smart_authz::grpc::AuthzGrpc;
use smart_authz::grpc::pb;
use smart_authz::grpc::pb::authz_service_server::AuthzService;
use smart_authz::telemetry::{self, Observer, Outputs};
use smart_authz::token::Authenticator;
use tracing_subscriber::fmt::writer::BoxMakeWriter;

fn request(token: &str, traceparent: Option<&str>) -> tonic::Request<pb::CheckAccessRequest> {
    let mut request = tonic::Request::new(pb::CheckAccessRequest {
        access_token: token.to_owned(),
        request: Some(pb::check_access_request::Request::Http(pb::HttpRequest {
            method: "GET".into(),
            path: "Condition?clinical-status=active&_count=50".into(),
            ..Default::default()
        })),
        ..pb::CheckAccessRequest::default()
    });
    if let Some(traceparent) = traceparent {
        request
            .metadata_mut()
            .insert("traceparent", traceparent.parse().unwrap());
    }
    request
}

fn benchmarks(criterion: &mut Criterion) {
    let runtime = common::runtime();
    let config = common::config("");
    let token = common::token();
    let authenticator: Arc<Authenticator> = runtime.block_on(async {
        Authenticator::new(&config.issuers, &config.cache, config.policy.fhir_version)
            .await
            .unwrap()
    });
    let service = |audit| {
        let authorizer = Authorizer::new(
            authenticator.clone(),
            Observer::new(audit),
            Vec::new(),
            Servers::from_config(&config),
        );
        AuthzGrpc::new(Arc::new(authorizer))
    };
    let audits_denies = service(AuditMode::Denies);
    let audits_all = service(AuditMode::All);
    let allowed = runtime
        .block_on(audits_denies.check_access(request(&token, None)))
        .unwrap()
        .into_inner();
    assert_eq!(allowed.decision, pb::Decision::Allow as i32, "{allowed:?}");

    let mut group = criterion.benchmark_group("CheckAccess, cached token");
    let mut measure = |name: &str, service: &AuthzGrpc, traceparent: Option<&str>| {
        group.bench_function(name, |bench| {
            bench.to_async(&runtime).iter(|| async {
                let response = service
                    .check_access(black_box(request(&token, traceparent)))
                    .await
                    .unwrap();
                black_box(response)
            })
        });
    };

    measure("telemetry off", &audits_denies, None);

    telemetry::metrics::install_recorder().expect("the recorder installs");
    measure("metrics", &audits_denies, None);

    let receiver = runtime.block_on(otlp::OtlpReceiver::start());
    let telemetry_config = TelemetryConfig {
        otlp_endpoint: Some(receiver.endpoint()),
        trace_sampling_ratio: Some(0.1),
        ..TelemetryConfig::default()
    };
    let outputs = Outputs {
        logs: BoxMakeWriter::new(std::io::sink),
        audit: BoxMakeWriter::new(std::io::sink),
        audit_flusher: None,
    };
    let guard = {
        let _runtime = runtime.enter();
        telemetry::install_with(&LogConfig::default(), &telemetry_config, &|_| None, outputs)
            .unwrap()
    };
    assert!(guard.exports_traces());
    let sampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
    measure(
        "metrics + traces, sampled parent",
        &audits_denies,
        Some(sampled),
    );
    measure(
        "metrics + traces, unsampled parent",
        &audits_denies,
        Some(unsampled),
    );
    measure(
        "metrics + traces, no parent (ratio 0.1)",
        &audits_denies,
        None,
    );
    measure(
        "metrics + traces, sampled parent + audit all",
        &audits_all,
        Some(sampled),
    );
    measure(
        "metrics + traces, unsampled parent + audit all",
        &audits_all,
        Some(unsampled),
    );
    group.finish();

    guard.force_flush();
    assert!(
        !receiver.spans().is_empty(),
        "the spans reached the OTLP receiver"
    );
    guard.shutdown(std::time::Duration::from_secs(5));
}

criterion_group!(benches, benchmarks);
criterion_main!(benches);
