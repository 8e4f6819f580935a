//! tonic alone: the gRPC services of `smart-authz serve`, with a `CheckAccess` that answers at
//! once, before any of the service's work (no layers, no admission, no decision), with the
//! answer the service gives the load generator's cached call. Measured by `examples/perf` in
//! place of the service, it shows what carrying `CheckAccess`'s messages costs beyond
//! `Health/Check` with nothing of smart-authz in between: the ratio to the floor no handler
//! can pass on this transport.
//!
//! `cargo build --release --examples && AUTHZ_BIN=target/release/examples/tonic_alone
//! target/release/examples/perf --paired 4 --seconds 2` (the working set's column measures
//! nothing here: there is no cache). The figures are in docs/performance-log.md, "tonic
//! alone".
//!
//! It reads the one option of `smart-authz serve`'s command line the load generator relies
//! on, `--listen`, ignores the rest, and announces its address as the service does. Like the
//! service it allocates with mimalloc, runs on the service's runtime ([`app::runtime`], one
//! thread when it is given one CPU), turns
//! Nagle's algorithm off on its connections (with it on, small answers wait for delayed
//! acknowledgements: tens of milliseconds at the tail) and writes an answer with its
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
/// Observations), field for field: 384 bytes encoded, as the service's own at 95e2467.
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
    let mut args = std::env::args().skip_while(|arg| arg != "--listen").skip(1);
    let listen: SocketAddr = args
        .next()
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
