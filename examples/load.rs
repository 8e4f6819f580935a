//! A load generator: starts the service in-process on 127.0.0.1 (an issuer with the test
//! keys, inline JWKS), then drives `CheckAccess` over real gRPC from concurrent clients and
//! prints throughput and latency percentiles. Client and server share the machine, so the
//! figures are a floor for a dedicated pod.
//!
//! `cargo run --release --example load -- [SECONDS] [CONCURRENCY] [CHANNELS]`
//! (defaults: 10 s, 64 calls in flight, 4 HTTP/2 connections).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a benchmark or example stops on a broken set-up"
)]

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use smart_authz::config::Config;
use smart_authz::grpc::pb;
use smart_authz::grpc::pb::authz_service_client::AuthzServiceClient;
use tokio::sync::oneshot;

const ISSUER: &str = "https://issuer.load";
const AUDIENCE: &str = "https://fhir.load/r4";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args()
        .skip(1)
        .map(|arg| arg.parse::<u64>().expect("numbers"));
    let seconds = args.next().unwrap_or(10);
    let concurrency = args.next().unwrap_or(64) as usize;
    let channels = args.next().unwrap_or(4) as usize;

    let jwk = include_str!("../tests/fixtures/keys/rsa-1.jwk.json").replace('\n', "");
    let config = Config::from_toml(&format!(
        "[[issuers]]\nissuer = \"{ISSUER}\"\naudiences = [\"{AUDIENCE}\"]\njwks = '{{\"keys\": [{jwk}]}}'\n[telemetry]\nmetrics_listen = \"\"\naudit = \"off\"\n"
    ))
    .expect("load configuration");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(smart_authz::app::run(listener, config, async {
        let _ = stopped.await;
    }));

    let token = token();
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{address}")).unwrap();
    let mut clients = Vec::new();
    for _ in 0..channels {
        let channel = loop {
            match endpoint.connect().await {
                Ok(channel) => break channel,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        clients.push(AuthzServiceClient::new(channel));
    }
    let request = pb::CheckAccessRequest {
        access_token: token,
        request: Some(pb::check_access_request::Request::Http(pb::HttpRequest {
            method: "GET".into(),
            path: "Observation?code=http://loinc.org|8867-4&_count=50".into(),
            ..Default::default()
        })),
        ..pb::CheckAccessRequest::default()
    };

    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..concurrency {
        let mut client = clients[worker % channels].clone();
        let request = request.clone();
        workers.spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let sent = Instant::now();
                let response = client
                    .check_access(request.clone())
                    .await
                    .expect("CheckAccess answers");
                assert_eq!(response.into_inner().decision, pb::Decision::Allow as i32);
                latencies.push(sent.elapsed().as_micros() as u32);
            }
            latencies
        });
    }
    let mut latencies = Vec::new();
    while let Some(worker) = workers.join_next().await {
        latencies.extend(worker.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let percentile = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize];
    println!(
        "{} CheckAccess calls in {elapsed:.1} s: {:.0} req/s; latency p50 {} µs, p90 {} µs, p99 {} µs, max {} µs ({concurrency} in flight over {channels} connections)",
        latencies.len(),
        latencies.len() as f64 / elapsed,
        percentile(0.50),
        percentile(0.90),
        percentile(0.99),
        latencies.last().copied().unwrap_or_default(),
    );
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

/// A patient-context token of about 1 KB, signed with the test key `rsa-1`.
fn token() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "user-1", "client_id": "load",
        "iat": now, "exp": now + 3600, "patient": "123",
        "scope": "openid fhirUser launch/patient patient/Patient.rs patient/Observation.rs patient/Condition.rs patient/MedicationRequest.rs"
    });
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("rsa-1".into());
    let key =
        EncodingKey::from_rsa_pem(include_bytes!("../tests/fixtures/keys/rsa-1.pem")).unwrap();
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}
