//! The plaintext health listener the kubelet probes, and a shutdown that turns health
//! NOT_SERVING before it drains, so a pod leaves its Service before it stops answering.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a panic is a failed test"
)]

mod common;

use std::time::Duration;

use common::tls::Pki;
use common::{RSA_1, TestIssuer};
use tokio::net::TcpListener;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

/// The service on a loopback API port alone, with no shutdown delay and the issuer of
/// `issuer_toml`, until the sender is used.
async fn serve_api_alone(
    issuer_toml: &str,
) -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), smart_authz::app::AppError>>,
) {
    let config = format!("shutdown_delay_secs = 0\n{issuer_toml}");
    let config = smart_authz::config::Config::from_toml(&config).unwrap();
    let api = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api_address = api.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(smart_authz::app::serve(
        smart_authz::app::Listeners {
            api,
            metrics: None,
            health: None,
            authzen: None,
            unix: None,
        },
        config,
        async {
            let _ = stopped.await;
        },
    ));
    (api_address, stop, server)
}

async fn health(address: std::net::SocketAddr, service: &str) -> HealthCheckResponse {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await
        .expect("the health port is plaintext");
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_see_not_serving_before_the_drain_while_the_api_speaks_tls() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let pki = Pki::new("CA");
    let config = format!(
        "shutdown_delay_secs = 2\n{}{}",
        issuer.issuer_toml(),
        pki.tls_toml(&pki.server(), None)
    );
    let config = smart_authz::config::Config::from_toml(&config).unwrap();
    let api = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api_address = api.local_addr().unwrap();
    let health_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let health_address = health_listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(smart_authz::app::serve(
        smart_authz::app::Listeners {
            api,
            metrics: None,
            health: Some(health_listener),
            authzen: None,
            unix: None,
        },
        config,
        async {
            let _ = stopped.await;
        },
    ));

    // The API speaks TLS only; the health port answers a plaintext probe.
    let api = common::connect_tls(api_address, &pki.ca_pem(), None).await;
    for service in [
        "",
        "smartauthz.v1.AuthzService",
        "envoy.service.auth.v3.Authorization",
    ] {
        assert_eq!(
            health(health_address, service).await.status,
            ServingStatus::Serving as i32,
            "{service:?}"
        );
    }
    // A probe over health's decoding limit is told so as on the API's listener.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{health_address}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let oversized = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: "x".repeat(smart_authz::app::SMALL_MESSAGE_BYTES + 1),
        })
        .await
        .expect_err("over health's limit");
    assert_eq!(
        oversized.code(),
        tonic::Code::ResourceExhausted,
        "{oversized:?}"
    );

    let started = std::time::Instant::now();
    stop.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // During the delay: probes see NOT_SERVING, calls are still answered.
    for service in [
        "",
        "smartauthz.v1.AuthzService",
        "envoy.service.auth.v3.Authorization",
    ] {
        assert_eq!(
            health(health_address, service).await.status,
            ServingStatus::NotServing as i32,
            "{service:?}"
        );
    }
    let still = HealthClient::new(api)
        .check(HealthCheckRequest::default())
        .await
        .expect("the API still answers during the delay");
    assert_eq!(still.into_inner().status, ServingStatus::NotServing as i32);

    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the drain ends")
        .unwrap()
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "the drain waited for shutdown_delay_secs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_is_live_at_once_and_ready_when_its_issuers_keys_load() {
    // The issuer's address is known, but nothing answers there yet.
    let reserved = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let issuer_address = reserved.local_addr().unwrap();
    drop(reserved);
    let config = format!(
        "[[issuers]]\nissuer = \"http://{issuer_address}/issuer\"\naudiences = [\"{}\"]\njwks_uri = \"http://{issuer_address}/jwks\"\njwks_min_refresh_secs = 1\njwks_timeout_ms = 500\n",
        common::AUDIENCE
    );
    let config = smart_authz::config::Config::from_toml(&config).unwrap();
    let health_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let health_address = health_listener.local_addr().unwrap();
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let _server = tokio::spawn(smart_authz::app::serve(
        smart_authz::app::Listeners {
            api: TcpListener::bind("127.0.0.1:0").await.unwrap(),
            metrics: None,
            health: Some(health_listener),
            authzen: None,
            unix: None,
        },
        config,
        async {
            let _ = stopped.await;
        },
    ));
    let status = |service: &'static str| async move {
        for _ in 0..100 {
            if let Ok(channel) =
                tonic::transport::Endpoint::from_shared(format!("http://{health_address}"))
                    .unwrap()
                    .connect()
                    .await
            {
                return HealthClient::new(channel)
                    .check(HealthCheckRequest {
                        service: service.to_owned(),
                    })
                    .await
                    .unwrap()
                    .into_inner()
                    .status;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the health port never answered");
    };
    assert_eq!(status("liveness").await, ServingStatus::Serving as i32);
    assert_eq!(
        status("").await,
        ServingStatus::NotServing as i32,
        "no keys yet"
    );

    // The issuer comes up: the keys load on the next retry, and the pod turns ready.
    let _issuer = TestIssuer::serve(TcpListener::bind(issuer_address).await.unwrap(), &[&RSA_1]);
    let mut ready = false;
    for _ in 0..100 {
        if status("").await == ServingStatus::Serving as i32 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "ready once the keys loaded");
    assert_eq!(status("liveness").await, ServingStatus::Serving as i32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_in_flight_when_the_drain_begins_is_answered_and_new_connections_are_refused() {
    // An issuer whose introspection endpoint holds every request: a call stays in flight
    // for the introspection timeout (2 s), across the start of the drain (0.5 s).
    let mut stuck = common::StuckEndpoint::start().await;
    let (api_address, stop, server) = serve_api_alone(&stuck.issuer_toml(2000)).await;
    let mut client = smart_authz::grpc::pb::authz_service_client::AuthzServiceClient::new(
        common::connect(api_address).await,
    );
    let in_flight = tokio::spawn(async move {
        client
            .check_access(common::check_http("an-opaque-token", "GET", "Patient/1"))
            .await
    });
    tokio::time::timeout(Duration::from_secs(10), &mut stuck.arrived)
        .await
        .unwrap()
        .unwrap();
    let started = std::time::Instant::now();
    stop.send(()).unwrap();

    // The call in flight gets the service's own answer (its issuer timed out), not a cut
    // connection.
    let answer = in_flight
        .await
        .unwrap()
        .expect_err("the issuer never answers");
    assert_eq!(answer.code(), tonic::Code::Unavailable);
    assert!(
        answer.message().contains("slow.example"),
        "the service answered, the transport did not fail: {answer:?}"
    );
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the process exits once the call is answered")
        .unwrap()
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "inside a grace period"
    );
    let endpoint =
        tonic::transport::Endpoint::from_shared(format!("http://{api_address}")).unwrap();
    assert!(
        endpoint.connect().await.is_err(),
        "no new connection after the drain"
    );
}

/// A stream that never ends (a `Health/Watch`) does not hold the drain until Kubernetes
/// kills the process: the drain stops waiting after its time (10 s), and the process ends
/// by itself, its trace flush and all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_never_ends_does_not_hold_the_drain() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let (api_address, stop, server) = serve_api_alone(&issuer.issuer_toml()).await;
    let mut watch = HealthClient::new(common::connect(api_address).await)
        .watch(HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner();
    let first = watch.message().await.unwrap().unwrap();
    assert_eq!(first.status(), ServingStatus::Serving);

    let started = std::time::Instant::now();
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(30), server)
        .await
        .expect("the process stops with the Watch stream still open")
        .unwrap()
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(9),
        "the drain waited"
    );
    drop(watch);
}
