//! Three replicas of the service, as a Deployment runs them: real `smart-authz` processes
//! sharing one real token issuer (oidc-provider, opaque tokens introspected by RFC 7662),
//! with a client that spreads its calls round robin. Every decision is the same whichever
//! replica answers, each replica introspects a token at most once (its own cache), and
//! killing a replica mid-traffic loses no call that a retry on another cannot answer.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a panic is a failed test"
)]

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use common::check_http;
use common::oauth::{FHIR_RESOURCE, OidcProvider, RS_BASIC_CLIENT_ID, RS_CLIENT_SECRET};
use common::spawned::{self, Served};
use smart_authz::grpc::pb;
use smart_authz::grpc::pb::authz_service_client::AuthzServiceClient;
use tonic::transport::Channel;
use tonic_health::pb::health_client::HealthClient;

const REPLICAS: usize = 3;

/// One `smart-authz serve` process on a loopback port, killed when dropped.
struct Replica {
    served: Served,
    _config: tempfile::NamedTempFile,
}

impl Replica {
    fn start(config: &str) -> Replica {
        let file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        std::fs::write(file.path(), config).unwrap();
        let mut command = spawned::command(env!("CARGO_BIN_EXE_smart-authz"));
        command.args(["serve", "--config"]).arg(file.path());
        Replica {
            served: Served::start(command),
            _config: file,
        }
    }

    fn address(&self) -> SocketAddr {
        self.served.address
    }

    /// A channel once the replica is ready (its issuer discovered).
    async fn ready(&self) -> Channel {
        let endpoint =
            tonic::transport::Endpoint::from_shared(format!("http://{}", self.address())).unwrap();
        for _ in 0..300 {
            if let Ok(channel) = endpoint.connect().await {
                let ready = HealthClient::new(channel.clone())
                    .check(tonic_health::pb::HealthCheckRequest::default())
                    .await
                    .is_ok_and(|response| response.into_inner().status == 1);
                if ready {
                    return channel;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("replica {} did not become ready", self.address());
    }

    fn kill(&mut self) {
        let _ = self.served.child.kill();
        let _ = self.served.child.wait();
    }
}

/// What a client acts on: the answer, its reason and the constraints.
fn verdict(response: &pb::CheckAccessResponse) -> (i32, i32, Vec<String>) {
    (
        response.decision,
        response.reason,
        response
            .grants
            .iter()
            .map(|grant| format!("{} {}", grant.scope, grant.compartment))
            .collect(),
    )
}

async fn check(
    channel: &Channel,
    token: &str,
    path: &str,
) -> Result<pb::CheckAccessResponse, tonic::Status> {
    AuthzServiceClient::new(channel.clone())
        .check_access(check_http(token, "GET", path))
        .await
        .map(tonic::Response::into_inner)
}

const PATHS: [&str; 4] = [
    "Observation?code=x",
    "Patient/123",
    "Observation?subject=Patient/456",
    "Condition?patient=123",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_agree_cache_on_their_own_and_survive_a_lost_peer() {
    let provider = OidcProvider::start().await;
    let config = format!(
        "[telemetry]\nmetrics_listen = \"\"\n[[issuers]]\nissuer = \"{}\"\naudiences = [\"{FHIR_RESOURCE}\"]\nclient_id = \"{RS_BASIC_CLIENT_ID}\"\nclient_secret = \"{RS_CLIENT_SECRET}\"\nintrospection_without_aud = true\n",
        provider.issuer
    );
    let mut replicas: Vec<Replica> = (0..REPLICAS).map(|_| Replica::start(&config)).collect();
    let mut channels = Vec::new();
    for replica in &replicas {
        channels.push(replica.ready().await);
    }

    let mut tokens = Vec::new();
    for (scope, patient) in [
        ("launch/patient patient/*.rs", "123"),
        ("launch/patient patient/Observation.rs", "123"),
        ("launch/patient patient/*.rs", "456"),
        ("system/*.rs", ""),
    ] {
        let patient = (!patient.is_empty()).then_some(patient);
        tokens.push(provider.opaque_token(scope, patient).await);
    }

    // Round robin: every (token, request) pair reaches every replica.
    let introspections_before = provider.introspection_count().await;
    let mut answers: HashMap<(usize, &str), (i32, i32, Vec<String>)> = HashMap::new();
    let mut call = 0_usize;
    for _round in 0..REPLICAS * 2 {
        for (index, token) in tokens.iter().enumerate() {
            for path in PATHS {
                let replica = call % REPLICAS;
                call += 1;
                let response = check(&channels[replica], token, path).await.unwrap();
                let seen = verdict(&response);
                let first = answers.entry((index, path)).or_insert_with(|| seen.clone());
                assert_eq!(
                    *first, seen,
                    "token {index}, {path}: replica {replica} disagrees"
                );
            }
        }
    }
    // The answers are real decisions, not one constant.
    let allowed = answers
        .values()
        .filter(|(decision, _, _)| *decision == pb::Decision::Allow as i32)
        .count();
    assert!(allowed > 0 && allowed < answers.len(), "{answers:?}");
    let introspections = provider.introspection_count().await - introspections_before;
    let tokens_count = u64::try_from(tokens.len()).unwrap();
    let replicas_count = u64::try_from(REPLICAS).unwrap();
    assert!(
        (tokens_count..=tokens_count * replicas_count).contains(&introspections),
        "{introspections} introspections for {tokens_count} tokens on {REPLICAS} replicas"
    );

    // A replica dies mid-traffic: a call it cannot answer is retried on the next one.
    let mut lost = 0;
    let mut retried = 0;
    for call in 0..120_usize {
        if call == 40 {
            replicas[1].kill();
        }
        let (index, path) = (call % tokens.len(), PATHS[call % PATHS.len()]);
        let mut answered = None;
        for attempt in 0..REPLICAS {
            let replica = (call + attempt) % REPLICAS;
            match check(&channels[replica], &tokens[index], path).await {
                Ok(response) => {
                    answered = Some(response);
                    break;
                }
                Err(status) => {
                    assert!(
                        matches!(
                            status.code(),
                            tonic::Code::Unavailable
                                | tonic::Code::Unknown
                                | tonic::Code::Cancelled
                        ),
                        "only a lost replica may fail a call: {status:?}"
                    );
                    retried += 1;
                }
            }
        }
        match answered {
            Some(response) => assert_eq!(
                verdict(&response),
                answers[&(index, path)],
                "token {index}, {path} after the loss"
            ),
            None => lost += 1,
        }
    }
    assert_eq!(lost, 0, "no call lost");
    assert!(
        retried > 0,
        "the dead replica was asked and its calls retried"
    );
}
