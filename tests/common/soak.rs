//! A bounded soak: the real `smart-authz` binary under steady load with rotating tokens (a
//! new token every few calls, so the token cache fills, evicts and keeps turning over), its
//! resident memory and the errors recorded every second. Shared by `tests/soak.rs` (a short
//! smoke) and `examples/soak.rs` (10 minutes by default).

#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use smart_authz::grpc::pb;
use smart_authz::grpc::pb::authz_service_client::AuthzServiceClient;

const ISSUER: &str = "https://issuer.soak";
const AUDIENCE: &str = "https://fhir.soak/r4";
/// Calls made with one token before the next one.
const CALLS_PER_TOKEN: u64 = 10;
/// Concurrent callers.
const WORKERS: u64 = 8;
/// The token cache's bound: small, so it is full within seconds and every later token
/// evicts an older one.
const CACHE_BYTES: u64 = 256 * 1024;

/// One second of the soak.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub second: u64,
    pub rss_kib: u64,
    pub calls: u64,
    pub errors: u64,
}

#[derive(Debug)]
pub struct Report {
    pub samples: Vec<Sample>,
}

impl Report {
    pub fn errors(&self) -> u64 {
        self.samples.last().map_or(0, |sample| sample.errors)
    }

    pub fn calls(&self) -> u64 {
        self.samples.last().map_or(0, |sample| sample.calls)
    }

    /// The highest resident memory over the first half (warm-up: the cache fills) and over
    /// the second half (steady state).
    pub fn rss_halves(&self) -> (u64, u64) {
        let half = self.samples.len() / 2;
        let max = |samples: &[Sample]| samples.iter().map(|s| s.rss_kib).max().unwrap_or(0);
        (max(&self.samples[..half]), max(&self.samples[half..]))
    }

    pub fn json(&self) -> serde_json::Value {
        let (warm, steady) = self.rss_halves();
        json!({
            "seconds": self.samples.len(),
            "calls": self.calls(),
            "errors": self.errors(),
            "rss_kib_max_first_half": warm,
            "rss_kib_max_second_half": steady,
            "rss_kib": self.samples.iter().map(|s| s.rss_kib).collect::<Vec<_>>(),
        })
    }
}

/// Runs `binary` for `seconds` at about `rate` calls per second.
pub async fn run(binary: &Path, keys_dir: &Path, seconds: u64, rate: u64) -> Report {
    let jwk = std::fs::read_to_string(keys_dir.join("rsa-1.jwk.json"))
        .unwrap()
        .replace('\n', "");
    let pem = std::fs::read(keys_dir.join("rsa-1.pem")).unwrap();
    let key = Arc::new(EncodingKey::from_rsa_pem(&pem).unwrap());
    let config = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::fs::write(
        config.path(),
        format!(
            "[[issuers]]\nissuer = \"{ISSUER}\"\naudiences = [\"{AUDIENCE}\"]\njwks = '{{\"keys\": [{jwk}]}}'\n[cache]\nmax_bytes = {CACHE_BYTES}\n[telemetry]\nmetrics_listen = \"\"\naudit = \"off\"\n"
        ),
    )
    .unwrap();
    let mut command = super::spawned::command(binary);
    command.args(["serve", "--config"]).arg(config.path());
    let server = super::spawned::Served::start(command);
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.address))
        .unwrap()
        .connect()
        .await
        .expect("the server answers");

    let calls = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..WORKERS {
        let mut client = AuthzServiceClient::new(channel.clone());
        let (calls, errors, key) = (Arc::clone(&calls), Arc::clone(&errors), Arc::clone(&key));
        let period = Duration::from_micros(1_000_000 * WORKERS / rate.max(1));
        workers.spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut made = 0_u64;
            let mut token = String::new();
            while Instant::now() < deadline {
                tick.tick().await;
                if made.is_multiple_of(CALLS_PER_TOKEN) {
                    token = mint(&key, worker, made / CALLS_PER_TOKEN);
                }
                made += 1;
                let request = pb::CheckAccessRequest {
                    access_token: token.clone(),
                    request: Some(pb::check_access_request::Request::Http(pb::HttpRequest {
                        method: "GET".into(),
                        path: "Observation?code=http://loinc.org|8867-4".into(),
                        ..Default::default()
                    })),
                    ..Default::default()
                };
                let allowed = client.check_access(request).await.is_ok_and(|response| {
                    response.into_inner().decision == pb::Decision::Allow as i32
                });
                calls.fetch_add(1, Ordering::Relaxed);
                if !allowed {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    let mut samples = Vec::new();
    let mut second = tokio::time::interval(Duration::from_secs(1));
    second.tick().await;
    for elapsed in 1..=seconds {
        second.tick().await;
        samples.push(Sample {
            second: elapsed,
            rss_kib: server.rss_kib(),
            calls: calls.load(Ordering::Relaxed),
            errors: errors.load(Ordering::Relaxed),
        });
    }
    while workers.join_next().await.is_some() {}
    drop(server);
    Report { samples }
}

/// A distinct patient-context token of about 1 KB, signed with the test key `rsa-1`.
fn mint(key: &EncodingKey, worker: u64, serial: u64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": format!("user-{worker}-{serial}"),
        "client_id": "soak", "iat": now, "exp": now + 3600, "patient": "123",
        "jti": format!("{worker}-{serial}-{now}"),
        "scope": "openid fhirUser launch/patient patient/Patient.rs patient/Observation.rs patient/Condition.rs patient/MedicationRequest.rs"
    });
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("rsa-1".into());
    jsonwebtoken::encode(&header, &claims, key).unwrap()
}
