//! tonic alone: the gRPC services of `smart-authz serve`, with a `CheckAccess` that answers at
//! once, before any of the service's work (no layers, no admission, no decision), with the
//! answer the service gives the load generator's cached call. Measured by `examples/perf` in
//! place of the service, it shows what carrying `CheckAccess`'s messages costs beyond
//! `Health/Check` with nothing of smart-authz in between: where the transport itself stands
//! against the floor.
//!
//! `cargo build --release --examples && AUTHZ_BIN=target/release/examples/tonic_alone
//! target/release/examples/perf --paired 4 --seconds 2`, or `--h2load`; the full report's
//! cached and working-set rows too (the working set measures only the transport of 10,000
//! distinct requests: there is no cache). It serves plaintext TCP only, without metrics, and
//! allows every `CheckAccess`: the TLS, Unix-socket and cold-path modes, and the other rows
//! of the full report, do not apply. The figures are in docs/performance-log.md, "tonic
//! alone".
//!
//! Of `smart-authz serve`'s command line it reads `--listen` alone (the rest is ignored) and
//! announces its address as the service does. Like the service it allocates with mimalloc,
//! runs on the service's runtime ([`app::runtime()`], one thread when it is given one CPU),
//! turns Nagle's algorithm off on its connections (with it on, small answers wait for
//! delayed acknowledgements: tens of milliseconds at the tail) and writes an answer with its
//! trailers in one system call ([`SingleWrite`]; with tonic's default, vectored writes, an
//! answer over 256 bytes takes two).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a measuring instrument stops on a broken set-up"
)]

use std::net::SocketAddr;

use smart_authz::app::{self, SingleWrite};
use smart_authz::grpc::pb;
use tokio_stream::StreamExt;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `CheckAccess` answered with a copy of one answer; every other method refused.
struct AnswerAtOnce(pb::CheckAccessResponse);

#[tonic::async_trait]
impl pb::authz_service_server::AuthzService for AnswerAtOnce {
    async fn check_access(
        &self,
        request: Request<pb::CheckAccessRequest>,
    ) -> Result<Response<pb::CheckAccessResponse>, Status> {
        let mut answer = self.0.clone();
        answer.request_id = request.into_inner().request_id;
        Ok(Response::new(answer))
    }

    async fn batch_check_access(
        &self,
        _: Request<pb::BatchCheckAccessRequest>,
    ) -> Result<Response<pb::BatchCheckAccessResponse>, Status> {
        Err(Status::unimplemented(
            "tonic alone answers CheckAccess only",
        ))
    }

    async fn introspect_token(
        &self,
        _: Request<pb::IntrospectTokenRequest>,
    ) -> Result<Response<pb::IntrospectTokenResponse>, Status> {
        Err(Status::unimplemented(
            "tonic alone answers CheckAccess only",
        ))
    }

    async fn filter_resources(
        &self,
        _: Request<pb::FilterResourcesRequest>,
    ) -> Result<Response<pb::FilterResourcesResponse>, Status> {
        Err(Status::unimplemented(
            "tonic alone answers CheckAccess only",
        ))
    }
}

/// The service's answer to the load generator's cached call (a search of the patient's
/// Observations), as the service's own at 95e2467: the same fields and length (384 bytes),
/// `expires_at` fixed where the generator's tokens expire an hour after they are minted.
fn cached_call_answer() -> pb::CheckAccessResponse {
    pb::CheckAccessResponse {
        decision: pb::Decision::Allow.into(),
        reason: pb::Reason::Granted.into(),
        message: "allowed: search-type Observation by patient/Observation.rs; \
                  the server must apply the constraints"
            .to_owned(),
        grants: vec![pb::Grant {
            scope: "patient/Observation.rs".to_owned(),
            context: pb::ScopeContext::Patient.into(),
            compartment: "Patient/123".to_owned(),
            compartment_params: vec!["subject".to_owned(), "performer".to_owned()],
            resource_types: vec!["Observation".to_owned()],
            ..Default::default()
        }],
        subject: Some(pb::Subject {
            client_id: "perf".to_owned(),
            sub: "user-0".to_owned(),
            patient: "123".to_owned(),
            scope: "openid fhirUser launch/patient patient/Patient.rs patient/Observation.rs \
                    patient/Condition.rs patient/MedicationRequest.rs \
                    patient/AllergyIntolerance.rs patient/Immunization.rs"
                .to_owned(),
            expires_at: 1_796_483_963,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn main() {
    let listen: SocketAddr = listen_option(std::env::args().skip(1))
        .expect("--listen ADDRESS")
        .parse()
        .expect("an address");
    app::runtime().unwrap().block_on(async move {
        let incoming = TcpIncoming::bind(listen).unwrap().with_nodelay(Some(true));
        let address = incoming.local_addr().unwrap();
        let incoming = incoming.map(|accepted| accepted.map(SingleWrite));
        let (reporter, health) = tonic_health::server::health_reporter();
        reporter
            .set_service_status("", tonic_health::ServingStatus::Serving)
            .await;
        eprintln!(r#"{{"message":"smart-authz serving","listen":"{address}"}}"#);
        tonic::transport::Server::builder()
            .add_service(health)
            .add_service(pb::authz_service_server::AuthzServiceServer::new(
                AnswerAtOnce(cached_call_answer()),
            ))
            .serve_with_incoming(incoming)
            .await
            .unwrap();
    });
}

/// The value of `--listen ADDRESS` or `--listen=ADDRESS`.
fn listen_option(mut args: impl Iterator<Item = String>) -> Option<String> {
    let mut listen = None;
    while let Some(arg) = args.next() {
        if arg == "--listen" {
            listen = args.next();
        } else if let Some(value) = arg.strip_prefix("--listen=") {
            listen = Some(value.to_owned());
        }
    }
    listen
}
