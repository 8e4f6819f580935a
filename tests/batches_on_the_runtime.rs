//! A batch or transaction of the most entries is read and decided on the async runtime, but
//! hands it back between entries (`authorize::between_entries`), so the calls beside it
//! are served while it is: on a pod of one CPU the runtime has one thread.
//!
//! Each face is called in process, on a runtime of one thread, beside a task that counts
//! its turns: a face that held the thread from the start of the call to its answer would
//! let that task turn a few times at most (while the token is judged). A transport would
//! add turns of its own, so no socket is involved here; the latency beside real batches is
//! measured by `benches/beside_batches.py` (docs/performance-log.md).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a panic is a failed test"
)]

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use envoy_types::ext_authz::v3::pb::CheckRequest;
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_server::Authorization;
use serde_json::json;
use smart_authz::authorize::{Authorizer, Capacity, MAX_BATCH_ENTRIES, Servers};
use smart_authz::config::{AuthzenConfig, Config};
use smart_authz::envoy::EnvoyAuthz;
use smart_authz::explain::LaunchArgs;
use smart_authz::grpc::AuthzGrpc;
use smart_authz::grpc::pb;
use smart_authz::grpc::pb::authz_service_server::AuthzService;
use smart_authz::mint::{MintArgs, mint};
use smart_authz::telemetry::Observer;
use smart_authz::token::Authenticator;
use tower::ServiceExt;

/// tokio's cooperative budget: a task yields once it has spent this many units in one turn.
const BUDGET: usize = 128;

/// At least this many turns beside a call that reads and then decides `entries` entries,
/// each loop yielding every [`BUDGET`] of them: three quarters of the two loops' turns,
/// where a call with one loop that yields gives half of them.
fn turns_of_two_loops(entries: usize) -> usize {
    2 * entries / BUDGET * 3 / 4
}

/// The development configuration's authorizer, and a patient token of its issuer.
async fn authorizer() -> (Config, Arc<Authorizer>, String) {
    let config = Config::from_development().unwrap();
    let authenticator =
        Authenticator::new(&config.issuers, &config.cache, config.policy.fhir_version)
            .await
            .unwrap();
    let authorizer = Authorizer::new(
        authenticator,
        Observer::new(config.telemetry.audit),
        Vec::new(),
        Servers::from_config(&config),
    );
    let token = mint(&MintArgs {
        scope: "patient/*.rs launch/patient".to_owned(),
        launch: LaunchArgs {
            patient: Some("123".to_owned()),
            fhir_user: None,
            encounter: None,
        },
        client_id: "dev-client".to_owned(),
        sub: "dev-user".to_owned(),
        expires_in: 600,
    })
    .unwrap();
    (config, Arc::new(authorizer), token)
}

/// `call`'s output, and how many turns a task spawned beside it took until it ended.
async fn turns_beside<F: Future>(call: F) -> (F::Output, usize) {
    let turns = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let beside = tokio::spawn({
        let (turns, done) = (Arc::clone(&turns), Arc::clone(&done));
        async move {
            while !done.load(Ordering::Relaxed) {
                turns.fetch_add(1, Ordering::Relaxed);
                tokio::task::yield_now().await;
            }
        }
    });
    let output = call.await;
    let taken = turns.load(Ordering::Relaxed);
    done.store(true, Ordering::Relaxed);
    beside.await.unwrap();
    (output, taken)
}

#[tokio::test(flavor = "current_thread")]
async fn a_grpc_batch_is_read_and_decided_beside_other_calls() {
    let (_, authorizer, token) = authorizer().await;
    let service = AuthzGrpc::new(authorizer);
    let entries = (0..MAX_BATCH_ENTRIES)
        .map(|index| pb::BatchEntry {
            request: Some(pb::batch_entry::Request::Http(pb::HttpRequest {
                method: "GET".to_owned(),
                path: format!("Observation?patient=123&code=c{index}"),
                ..pb::HttpRequest::default()
            })),
            ..pb::BatchEntry::default()
        })
        .collect();
    let request = tonic::Request::new(pb::BatchCheckAccessRequest {
        access_token: token,
        bundle_type: pb::BundleType::Batch as i32,
        entries,
        ..pb::BatchCheckAccessRequest::default()
    });

    let (answer, turns) = turns_beside(service.batch_check_access(request)).await;

    let answer = answer.unwrap().into_inner();
    assert_eq!(
        answer.decision,
        pb::Decision::Allow as i32,
        "{}",
        answer.message
    );
    assert_eq!(answer.entries.len(), MAX_BATCH_ENTRIES);
    assert!(
        turns >= turns_of_two_loops(MAX_BATCH_ENTRIES),
        "the task beside the batch took {turns} turns while it was read and decided"
    );
}

/// Entries of the Envoy Bundle: as many as 64 KiB of JSON holds.
const ENVOY_ENTRIES: usize = 1_000;

#[tokio::test(flavor = "current_thread")]
async fn an_envoy_bundle_is_read_and_decided_beside_other_calls() {
    let (config, authorizer, token) = authorizer().await;
    let face = EnvoyAuthz::new(&config.envoy, authorizer);
    // A body over 64 KiB is parsed on the blocking pool, while the task beside it turns
    // freely: this one is parsed on the runtime, as the entries are read and decided.
    let entry = json!({"request": {"method": "GET", "url": "Observation?patient=123"}});
    let bundle =
        json!({"resourceType": "Bundle", "type": "batch", "entry": vec![entry; ENVOY_ENTRIES]});
    assert!(bundle.to_string().len() <= 64 * 1024);
    let headers = [
        (":authority", "fhir.example".to_owned()),
        ("authorization", format!("Bearer {token}")),
        ("content-type", "application/fhir+json".to_owned()),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value))
    .collect();
    let request = tonic::Request::new(CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                http: Some(HttpRequest {
                    method: "POST".to_owned(),
                    path: "/".to_owned(),
                    host: "fhir.example".to_owned(),
                    headers,
                    body: bundle.to_string(),
                    ..HttpRequest::default()
                }),
                ..Request::default()
            }),
            ..AttributeContext::default()
        }),
    });

    let (answer, turns) = turns_beside(face.check(request)).await;

    let answer = answer.unwrap().into_inner();
    assert_eq!(
        answer.status.as_ref().map(|status| status.code),
        Some(0),
        "{answer:?}"
    );
    assert!(
        turns >= turns_of_two_loops(ENVOY_ENTRIES),
        "the task beside the Bundle took {turns} turns while it was read and decided"
    );
}

/// Items of the AuthZEN request: as many as 64 KiB of JSON holds.
const AUTHZEN_ITEMS: usize = 800;

#[tokio::test(flavor = "current_thread")]
async fn authzen_evaluations_are_decided_beside_other_calls() {
    let (config, authorizer, token) = authorizer().await;
    let settings = AuthzenConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        base_url: "https://authz.example.org".to_owned(),
        max_connections: 16,
    };
    let capacity = Capacity::new(
        config.max_concurrent_calls,
        config.max_buffered_request_bytes,
    );
    let router =
        smart_authz::authzen::router(authorizer, &settings, config.max_request_bytes, capacity);
    // As for Envoy: a body of at most 64 KiB is parsed on the runtime.
    let item = json!({"resource": {"type": "fhir_request", "id": "Observation?patient=123"}});
    let body = json!({
        "subject": {"type": "access_token", "id": token},
        "action": {"name": "GET"},
        "context": {"enforces_grants": true},
        "evaluations": vec![item; AUTHZEN_ITEMS],
    })
    .to_string();
    assert!(body.len() <= 64 * 1024);
    let request = http::Request::post("/access/v1/evaluations")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body))
        .unwrap();

    let (answer, turns) = turns_beside(router.oneshot(request)).await;

    let answer = answer.unwrap();
    assert_eq!(answer.status(), 200);
    let answer: serde_json::Value = serde_json::from_slice(
        &axum::body::to_bytes(answer.into_body(), usize::MAX)
            .await
            .unwrap(),
    )
    .unwrap();
    let items = answer["evaluations"].as_array().unwrap();
    assert_eq!(items.len(), AUTHZEN_ITEMS);
    assert!(
        items.iter().all(|item| item["decision"] == true),
        "{answer}"
    );
    // One loop: three quarters of its turns.
    assert!(
        turns >= AUTHZEN_ITEMS / BUDGET * 3 / 4,
        "the task beside the evaluations took {turns} turns while they were decided"
    );
}
