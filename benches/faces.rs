//! One cached decision through each face, in process (no network, telemetry off): what each
//! face adds to the shared pipeline in reading its request and writing its answer. The same
//! 1 KB RS256 token and search as `benches/telemetry.rs`. Then `CheckAccess` with one of
//! 10,000 cached tokens against one token of the same kind: what the whole call, not the
//! cache look-up alone (`benches/token.rs`), pays for a token whose entry and context have
//! left the processor's caches. `cargo bench --bench faces`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a benchmark or example stops on a broken set-up"
)]

mod common;

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use envoy_types::ext_authz::v3::pb::CheckRequest;
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_server::Authorization;
use smart_authz::authorize::{Authorizer, Servers};
use smart_authz::config::AuditMode;
use smart_authz::envoy::EnvoyAuthz;
use smart_authz::grpc::AuthzGrpc;
use smart_authz::grpc::pb;
use smart_authz::grpc::pb::authz_service_server::AuthzService;
use smart_authz::telemetry::Observer;
use smart_authz::token::Authenticator;

const SEARCH: &str = "Condition?clinical-status=active&_count=50";

fn check_access(token: &str) -> tonic::Request<pb::CheckAccessRequest> {
    tonic::Request::new(pb::CheckAccessRequest {
        access_token: token.to_owned(),
        request: Some(pb::check_access_request::Request::Http(pb::HttpRequest {
            method: "GET".into(),
            path: SEARCH.into(),
            ..Default::default()
        })),
        ..pb::CheckAccessRequest::default()
    })
}

fn envoy_check(token: &str) -> tonic::Request<CheckRequest> {
    let headers = [
        (":authority", "fhir.bench"),
        ("authorization", &format!("Bearer {token}")),
        ("x-request-id", "0b5f3c52-9a1e-4a86-9d55-2f0c1a7e6b11"),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value.to_owned()))
    .collect();
    tonic::Request::new(CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                http: Some(HttpRequest {
                    method: "GET".into(),
                    path: format!("/fhir/{SEARCH}"),
                    host: "fhir.bench".into(),
                    headers,
                    ..HttpRequest::default()
                }),
                ..Request::default()
            }),
            ..AttributeContext::default()
        }),
    })
}

fn benchmarks(criterion: &mut Criterion) {
    let runtime = common::runtime();
    let config = common::config("[envoy]\nbases = [{ prefix = \"/fhir/\" }]\n");
    let token = common::token();
    let authorizer = runtime.block_on(async {
        let authenticator =
            Authenticator::new(&config.issuers, &config.cache, config.policy.fhir_version)
                .await
                .unwrap();
        Arc::new(Authorizer::new(
            authenticator,
            Observer::new(AuditMode::Denies),
            Vec::new(),
            Servers::from_config(&config),
        ))
    });
    let grpc = AuthzGrpc::new(Arc::clone(&authorizer));
    let envoy = EnvoyAuthz::new(&config.envoy, authorizer);
    // Both allow (and the token is cached from here on).
    let allowed = runtime
        .block_on(grpc.check_access(check_access(&token)))
        .unwrap()
        .into_inner();
    assert_eq!(allowed.decision, pb::Decision::Allow as i32, "{allowed:?}");
    let answer = runtime
        .block_on(envoy.check(envoy_check(&token)))
        .unwrap()
        .into_inner();
    assert_eq!(answer.status.map(|status| status.code), Some(0), "an allow");

    let mut group = criterion.benchmark_group("one cached decision");
    group.bench_function("CheckAccess", |bench| {
        bench
            .to_async(&runtime)
            .iter(|| async { black_box(grpc.check_access(black_box(check_access(&token))).await) })
    });
    group.bench_function("Envoy Check", |bench| {
        bench
            .to_async(&runtime)
            .iter(|| async { black_box(envoy.check(black_box(envoy_check(&token))).await) })
    });
    group.finish();

    // The working set, stepped through in a scattered order; the first of its tokens alone
    // is the yardstick.
    let working_set = common::working_set();
    runtime.block_on(async {
        for token in &working_set {
            let answer = grpc.check_access(check_access(token)).await.unwrap();
            assert_eq!(answer.get_ref().decision, pb::Decision::Allow as i32);
        }
    });
    let mut group = criterion.benchmark_group("CheckAccess, cached ES256 tokens");
    group.bench_function("one token", |bench| {
        bench.to_async(&runtime).iter(|| async {
            black_box(
                grpc.check_access(black_box(check_access(&working_set[0])))
                    .await,
            )
        })
    });
    let mut next = 0;
    group.bench_function("10,000 tokens in turn", |bench| {
        bench.to_async(&runtime).iter(|| {
            next = (next + common::SCATTER) % working_set.len();
            let token = &working_set[next];
            let grpc = &grpc;
            async move { black_box(grpc.check_access(black_box(check_access(token))).await) }
        })
    });
    group.finish();
}

criterion_group!(benches, benchmarks);
criterion_main!(benches);
