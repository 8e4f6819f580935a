//! `unix_listen`: the same gRPC API on a Unix domain socket, for a sidecar or a co-located
//! FHIR server. Every service answers there as on TCP, under the same limit on calls in
//! flight, and the socket file goes when the server has drained.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a panic is a failed test"
)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::ext_proc::{ProcessStream, immediate_status, request_headers};
use common::*;
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use smart_authz::app::AppError;
use smart_authz::config::Config;
use smart_authz::grpc::pb;
use smart_authz::grpc::pb::authz_service_client::AuthzServiceClient;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// `smart_authz::app::run` on `config` (TOML), a loopback port and `socket`, until the
/// sender is dropped.
async fn run(
    config: &str,
    socket: &Path,
) -> (
    std::net::SocketAddr,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), AppError>>,
) {
    let config =
        Config::from_toml(&format!("unix_listen = \"{}\"\n{config}", socket.display())).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(smart_authz::app::run(listener, config, async {
        let _ = stopped.await;
    }));
    (address, stop, server)
}

async fn connect_unix(socket: &Path) -> Channel {
    let endpoint =
        tonic::transport::Endpoint::from_shared(format!("unix:{}", socket.display())).unwrap();
    for _ in 0..100 {
        if let Ok(channel) = endpoint.connect().await {
            return channel;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("nothing answers on {}", socket.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_face_answers_on_the_socket_as_on_tcp_and_the_file_goes_at_the_end() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("grpc.sock");
    let (address, stop, server) = run(&issuer.issuer_toml(), &socket).await;
    let local = AuthzServiceClient::new(connect_unix(&socket).await);
    let remote = AuthzServiceClient::new(connect(address).await);
    let token = issuer.patient_token("patient/Observation.rs", "123");

    for (path, expected) in [
        ("Observation?code=x", pb::Decision::Allow),
        ("Observation?patient=456", pb::Decision::Deny),
        ("Patient/123", pb::Decision::Deny),
    ] {
        let request = check_http(&token, "GET", path);
        let over_unix = local.clone().check_access(request.clone()).await.unwrap();
        let over_tcp = remote.clone().check_access(request).await.unwrap();
        let over_unix = over_unix.into_inner();
        assert_eq!(decision(&over_unix), expected, "{path}");
        if expected == pb::Decision::Allow {
            assert_eq!(over_unix.grants[0].compartment, "Patient/123");
        }
        assert_eq!(
            over_unix,
            over_tcp.into_inner(),
            "the same answer for {path}"
        );
    }

    // Envoy's ext_authz on the same socket (a sidecar's `pipe` cluster).
    let envoy = AuthorizationClient::new(connect_unix(&socket).await);
    for (path, code) in [
        ("/Observation?code=x", tonic::Code::Ok),
        ("/Observation?patient=456", tonic::Code::PermissionDenied),
    ] {
        let answer = envoy
            .clone()
            .check(common::envoy::check_request(
                "GET",
                path,
                Some(&token),
                &[],
                None,
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(answer.status.unwrap().code, code as i32, "{path}");
    }

    // ext_proc and health too.
    let mut stream = ProcessStream::open(&connect_unix(&socket).await).await;
    let refused = stream
        .send(request_headers(
            "GET",
            "/Observation?patient=456",
            Some(&token),
            &[],
        ))
        .await;
    assert_eq!(immediate_status(&refused), Some(403), "{refused:?}");
    stream.close().await.unwrap();
    let health = HealthClient::new(connect_unix(&socket).await)
        .check(HealthCheckRequest::default())
        .await
        .unwrap();
    assert_eq!(health.into_inner().status, ServingStatus::Serving as i32);

    drop(stop);
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the drain ends")
        .unwrap()
        .expect("a clean stop");
    assert!(!socket.exists(), "the socket file is removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_another_server_answers_on_stops_the_start_up() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("grpc.sock");
    let (_, stop, first) = run(&issuer.issuer_toml(), &socket).await;
    connect_unix(&socket).await;

    let (_, _second_stop, second) = run(&issuer.issuer_toml(), &socket).await;
    let error = tokio::time::timeout(Duration::from_secs(10), second)
        .await
        .expect("the second server gives up")
        .unwrap()
        .expect_err("the socket is taken");
    let message = error.to_string();
    assert!(
        message.contains("unix_listen") && message.contains("another process answers"),
        "{message}"
    );
    // The first one still answers on its socket.
    let token = issuer.patient_token("patient/Observation.rs", "123");
    let still = AuthzServiceClient::new(connect_unix(&socket).await)
        .check_access(check_http(&token, "GET", "Observation?code=x"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(decision(&still), pb::Decision::Allow);
    drop(stop);
    tokio::time::timeout(Duration::from_secs(10), first)
        .await
        .expect("the drain ends")
        .unwrap()
        .unwrap();
}

/// One `max_concurrent_calls` for both listeners, and a call in flight on the socket when
/// the drain starts still gets its answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_socket_shares_the_call_limit_and_drains_its_calls() {
    // An introspection stays in flight until its timeout.
    let mut stuck = StuckEndpoint::start().await;
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("grpc.sock");
    let config = format!("max_concurrent_calls = 1\n{}", stuck.issuer_toml(2000));
    let (address, stop, server) = run(&config, &socket).await;
    let slow = stuck.hold_a_call(connect_unix(&socket).await).await;

    let shed = AuthzServiceClient::new(connect(address).await)
        .check_access(check_http("", "GET", "metadata"))
        .await
        .expect_err("the only slot is taken on the socket");
    assert_eq!(shed.code(), Code::ResourceExhausted, "{shed:?}");

    drop(stop);
    let answered = tokio::time::timeout(Duration::from_secs(10), slow)
        .await
        .expect("the slow call ends")
        .unwrap()
        .expect_err("its issuer never answered");
    assert_eq!(answered.code(), Code::Unavailable, "{answered:?}");
    assert!(
        answered.message().contains("introspection"),
        "the service's answer, not a broken connection: {answered:?}"
    );
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the drain ends")
        .unwrap()
        .unwrap();
    assert!(!socket.exists());
}

/// The socket's connections are held to the TCP listener's rules: at most `max_connections`
/// at once (one more waits), and one that never sends the HTTP/2 preface is closed after
/// 10 s, which lets the waiting one in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_socket_bounds_its_connections_and_closes_silent_ones() {
    use tokio::io::AsyncReadExt as _;

    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("grpc.sock");
    let config = format!("max_connections = 1\n{}", issuer.issuer_toml());
    let (_, _stop, _server) = run(&config, &socket).await;
    let _ready = connect_unix(&socket).await;
    drop(_ready);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut silent = tokio::net::UnixStream::connect(&socket).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    // The only slot is the silent connection's: a call waits until it is closed.
    let started = std::time::Instant::now();
    let waiting = tokio::spawn({
        let socket = socket.clone();
        async move {
            HealthClient::new(connect_unix(&socket).await)
                .check(HealthCheckRequest::default())
                .await
        }
    });
    // The server's own SETTINGS, then the end.
    let mut received = Vec::new();
    let closed =
        tokio::time::timeout(Duration::from_secs(15), silent.read_to_end(&mut received)).await;
    assert!(closed.is_ok(), "closed within 15 s");
    let answered = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the waiting call is answered once the slot is free")
        .unwrap()
        .unwrap();
    assert_eq!(answered.into_inner().status(), ServingStatus::Serving);
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "the call waited for the silent connection's slot"
    );
}
