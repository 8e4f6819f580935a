//! TLS and mutual TLS on the gRPC listener, over real TLS with certificates made by the test:
//! who can connect, certificate rotation on disk, and which caller may ask for which FHIR
//! server.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a panic is a failed test"
)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::envoy::{check_request, denied_response, ok_response};
use common::tls::{Pem, Pki, connect};
use common::{RSA_1, TestIssuer, TestServer, check_http, decision};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use smart_authz::grpc::pb;
use smart_authz::grpc::pb::authz_service_client::AuthzServiceClient;
use tonic::Code;
use tonic::transport::Channel;

const SERVER_A: &str = "https://a.example/fhir";
const SERVER_B: &str = "https://b.example/fhir";
const FHIR_A: &str = "spiffe://cluster.local/ns/fhir/sa/fhir-a";
const OPS: &str = "spiffe://cluster.local/ns/ops/sa/debugger";

fn servers_toml(issuer: &TestIssuer) -> String {
    format!(
        r#"
[[issuers]]
issuer = "{}"
jwks_uri = "{}"

[[fhir_servers]]
name = "a"
base_urls = ["{SERVER_A}"]
envoy_prefixes = ["/a/"]

[[fhir_servers]]
name = "b"
base_urls = ["{SERVER_B}"]
envoy_prefixes = ["/b/"]
"#,
        issuer.issuer, issuer.jwks_uri
    )
}

const CALLERS: &str = r#"
[[callers]]
identity = "spiffe://cluster.local/ns/fhir/sa/fhir-a"
fhir_servers = ["a"]

[[callers]]
identity = "spiffe://cluster.local/ns/ops/sa/debugger"
fhir_servers = ["*"]
introspect = true
"#;

async fn check(channel: Channel, token: &str, server: &str) -> Result<pb::Decision, tonic::Status> {
    let mut request = check_http(token, "GET", "Patient/123");
    request.fhir_server = server.to_owned();
    let response = AuthzServiceClient::new(channel)
        .check_access(request)
        .await?
        .into_inner();
    Ok(decision(&response))
}

#[tokio::test]
async fn only_clients_that_trust_the_ca_and_speak_tls_are_answered() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let pki = Pki::new("smart-authz test CA");
    let config = format!(
        "{}{}",
        servers_toml(&issuer),
        pki.tls_toml(&pki.server(), None)
    );
    let server = TestServer::start_tls(&config, &pki.ca_pem(), None).await;
    let for_a = issuer.token_for(SERVER_A);

    assert_eq!(
        check(server.channel.clone(), &for_a, "a").await.unwrap(),
        pb::Decision::Allow
    );

    // A plaintext HTTP/2 client gets no answer.
    let plaintext = tonic::transport::Endpoint::from_shared(format!("http://{}", server.address))
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(2));
    match plaintext.connect().await {
        Err(_) => {}
        Ok(channel) => {
            let error = check(channel, &for_a, "a")
                .await
                .expect_err("plaintext refused");
            assert_ne!(error.code(), Code::Ok);
        }
    }

    // A client that trusts another CA refuses the server's certificate.
    let stranger = Pki::new("another CA");
    assert!(
        connect(server.address, &stranger.ca_pem(), None)
            .await
            .is_err(),
        "the handshake fails"
    );
}

#[tokio::test]
async fn a_rotated_certificate_is_served_without_harming_calls_in_flight() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let old_ca = Pki::new("old CA");
    let config = format!(
        "{}{}",
        servers_toml(&issuer),
        old_ca.tls_toml(&old_ca.server(), None)
    );
    let server = TestServer::start_tls(&config, &old_ca.ca_pem(), None).await;
    let for_a = issuer.token_for(SERVER_A);

    // Calls keep flowing on the connection made before the rotation.
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let traffic = {
        let (channel, token) = (server.channel.clone(), for_a.clone());
        let (stop, answered) = (Arc::clone(&stop), Arc::clone(&answered));
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let decision = check(channel.clone(), &token, "a").await;
                assert_eq!(
                    decision.unwrap(),
                    pb::Decision::Allow,
                    "a call in flight failed"
                );
                answered.fetch_add(1, Ordering::Relaxed);
            }
        })
    };

    // Kubernetes swaps the mounted Secret: a certificate from a new CA, in the same files.
    let new_ca = Pki::new("new CA");
    let rotated = new_ca.server();
    old_ca.write("server.key", &rotated.key);
    old_ca.write("server.pem", &rotated.cert);

    let mut served = None;
    for _ in 0..100 {
        if let Ok(channel) = connect(server.address, &new_ca.ca_pem(), None).await {
            served = Some(channel);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let new_channel = served.expect("the rotated certificate is served within 10 s");
    assert_eq!(
        check(new_channel, &for_a, "a").await.unwrap(),
        pb::Decision::Allow
    );
    assert!(
        connect(server.address, &old_ca.ca_pem(), None)
            .await
            .is_err(),
        "new connections no longer get the old certificate"
    );

    let before = answered.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    traffic.await.expect("no call on the old connection failed");
    assert!(
        answered.load(Ordering::Relaxed) > before,
        "the old connection still answers"
    );
}

/// A server with mutual TLS and the [[callers]] bindings, and the PKI of its clients.
struct MutualTls {
    issuer: TestIssuer,
    pki: Pki,
    fhir_a: Pem,
    ops: Pem,
    server: TestServer,
}

impl MutualTls {
    async fn start() -> Self {
        let issuer = TestIssuer::start(&[&RSA_1]).await;
        let pki = Pki::new("mesh CA");
        let fhir_a = pki.client(FHIR_A, "fhir-a.fhir.svc");
        let ops = pki.client(OPS, "debugger.ops.svc");
        let config = format!(
            "{}{}{CALLERS}",
            servers_toml(&issuer),
            pki.tls_toml(&pki.server(), Some(&pki.ca_pem()))
        );
        let server = TestServer::start_tls(&config, &pki.ca_pem(), Some(fhir_a.identity())).await;
        MutualTls {
            issuer,
            pki,
            fhir_a,
            ops,
            server,
        }
    }

    async fn client(&self, identity: Option<&Pem>) -> Channel {
        connect(
            self.server.address,
            &self.pki.ca_pem(),
            identity.map(Pem::identity),
        )
        .await
        .expect("the handshake succeeds")
    }
}

#[tokio::test]
async fn a_caller_without_a_certificate_is_unauthenticated() {
    let mtls = MutualTls::start().await;
    let for_a = mtls.issuer.token_for(SERVER_A);
    let anonymous = mtls.client(None).await;
    let error = check(anonymous.clone(), &for_a, "a")
        .await
        .expect_err("no certificate");
    assert_eq!(error.code(), Code::Unauthenticated);
    assert!(error.message().contains("client certificate"), "{error:?}");

    // The Envoy face too; the app behind the proxy learns no more than a refusal.
    let refused = AuthorizationClient::new(anonymous.clone())
        .check(check_request(
            "GET",
            "/a/Patient/123",
            Some(&for_a),
            &[],
            None,
        ))
        .await
        .unwrap()
        .into_inner();
    let (_, outcome) = denied_response(&refused, 403);
    assert!(
        outcome.to_string().contains("the proxy may not ask"),
        "{outcome}"
    );

    // Health stays reachable for probes that present no certificate.
    let health = tonic_health::pb::health_client::HealthClient::new(anonymous)
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(health.status, 1, "SERVING");
}

#[tokio::test]
async fn a_certificate_from_an_unknown_ca_fails_the_handshake() {
    let mtls = MutualTls::start().await;
    let rogue = Pki::new("rogue CA").client(FHIR_A, "fhir-a.fhir.svc");
    let result = connect(
        mtls.server.address,
        &mtls.pki.ca_pem(),
        Some(rogue.identity()),
    )
    .await;
    match result {
        Err(_) => {}
        // Under TLS 1.3 the client finishes its side first and learns of the server's alert
        // on the first call: a transport error, not an answer of the service.
        Ok(channel) => {
            let error = check(channel, &mtls.issuer.token_for(SERVER_A), "a")
                .await
                .expect_err("a certificate that does not chain to the client CA");
            assert!(
                !matches!(
                    error.code(),
                    Code::Unauthenticated | Code::PermissionDenied | Code::Ok
                ),
                "the handshake, not the service, refuses it: {error:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_bound_caller_asks_only_for_its_own_server() {
    let mtls = MutualTls::start().await;
    let for_a = mtls.issuer.token_for(SERVER_A);
    let for_b = mtls.issuer.token_for(SERVER_B);
    let fhir_a = mtls.server.channel.clone();

    assert_eq!(
        check(fhir_a.clone(), &for_a, "a").await.unwrap(),
        pb::Decision::Allow
    );
    let error = check(fhir_a.clone(), &for_b, "b")
        .await
        .expect_err("fhir-a may not ask for b");
    assert_eq!(error.code(), Code::PermissionDenied);
    assert!(error.message().contains("\"b\""), "{error:?}");

    // BatchCheckAccess and IntrospectToken too.
    let mut client = AuthzServiceClient::new(fhir_a.clone());
    let batch = client
        .batch_check_access(pb::BatchCheckAccessRequest {
            access_token: for_b.clone(),
            bundle_type: pb::BundleType::Batch as i32,
            fhir_server: "b".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(batch.code(), Code::PermissionDenied);
    let introspect = client
        .introspect_token(pb::IntrospectTokenRequest {
            token: for_a.clone(),
            fhir_server: "a".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        introspect.code(),
        Code::PermissionDenied,
        "not an introspecting caller"
    );

    // The Envoy face routes by prefix, under the same binding.
    let mut envoy = AuthorizationClient::new(fhir_a);
    let allowed = envoy
        .check(check_request(
            "GET",
            "/a/Patient/123",
            Some(&for_a),
            &[],
            None,
        ))
        .await
        .unwrap()
        .into_inner();
    ok_response(&allowed);
    let refused = envoy
        .check(check_request(
            "GET",
            "/b/Patient/123",
            Some(&for_b),
            &[],
            None,
        ))
        .await
        .unwrap()
        .into_inner();
    let (_, outcome) = denied_response(&refused, 403);
    assert!(
        outcome.to_string().contains("the proxy may not ask"),
        "{outcome}"
    );
    assert!(
        !outcome.to_string().contains("spiffe"),
        "the app learns nothing of the proxy's identity: {outcome}"
    );

    // A caller bound to every server, allowed to introspect.
    let ops = mtls.client(Some(&mtls.ops)).await;
    assert_eq!(
        check(ops.clone(), &for_b, "b").await.unwrap(),
        pb::Decision::Allow
    );
    let active = AuthzServiceClient::new(ops)
        .introspect_token(pb::IntrospectTokenRequest {
            token: for_a,
            fhir_server: "a".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(active.active);
    let _ = &mtls.fhir_a;
}

#[tokio::test]
async fn a_certified_caller_in_no_binding_is_refused() {
    let mtls = MutualTls::start().await;
    let stranger = mtls
        .pki
        .client("spiffe://cluster.local/ns/x/sa/y", "y.x.svc");
    let channel = mtls.client(Some(&stranger)).await;
    let error = check(channel, &mtls.issuer.token_for(SERVER_A), "a")
        .await
        .expect_err("not in [[callers]]");
    assert_eq!(error.code(), Code::PermissionDenied);
    assert!(error.message().contains("[[callers]]"), "{error:?}");
}

async fn listeners() -> smart_authz::app::Listeners {
    smart_authz::app::Listeners {
        api: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        metrics: None,
        health: None,
        authzen: None,
        unix: None,
    }
}

#[tokio::test]
async fn an_unreadable_certificate_stops_the_start_up_naming_the_key() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let pki = Pki::new("CA");
    let mut tls = pki.tls_toml(&pki.server(), None);
    tls = tls.replace("server.pem", "missing.pem");
    let config =
        smart_authz::config::Config::from_toml(&format!("{}{tls}", servers_toml(&issuer))).unwrap();
    let error = smart_authz::app::serve(listeners().await, config, std::future::pending())
        .await
        .expect_err("no certificate, no start");
    assert!(error.to_string().contains("`tls.cert_file`"), "{error}");

    pki.write("garbage.key", "not a key");
    let tls = pki
        .tls_toml(&pki.server(), None)
        .replace("server.key", "garbage.key");
    let config =
        smart_authz::config::Config::from_toml(&format!("{}{tls}", servers_toml(&issuer))).unwrap();
    let error = smart_authz::app::serve(listeners().await, config, std::future::pending())
        .await
        .expect_err("no key, no start");
    assert!(error.to_string().contains("`tls.key_file`"), "{error}");
}

#[tokio::test]
async fn a_broken_rotation_keeps_the_last_good_certificate() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let pki = Pki::new("CA");
    let config = format!(
        "{}{}",
        servers_toml(&issuer),
        pki.tls_toml(&pki.server(), None)
    );
    let server = TestServer::start_tls(&config, &pki.ca_pem(), None).await;
    // A half-written Secret: a key that does not parse.
    pki.write(
        "server.key",
        "-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n",
    );
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let channel = connect(server.address, &pki.ca_pem(), None)
        .await
        .expect("new connections still get the last good certificate");
    assert_eq!(
        check(channel, &issuer.token_for(SERVER_A), "a")
            .await
            .unwrap(),
        pb::Decision::Allow
    );
}

/// With TLS, a connection's slot of `max_connections` is taken before its handshake: one
/// more client waits in the listen backlog, its handshake not even begun, until another
/// connection closes.
#[tokio::test]
async fn handshakes_wait_for_a_connection_slot() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let pki = Pki::new("smart-authz test CA");
    let config = format!(
        "max_connections = 2\n{}{}",
        servers_toml(&issuer),
        pki.tls_toml(&pki.server(), None)
    );
    // The test's own channel holds one slot.
    let server = TestServer::start_tls(&config, &pki.ca_pem(), None).await;
    let (address, connector) = (server.address, pki.h2_connector());
    let handshake = move || {
        let connector = connector.clone();
        async move {
            let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
            let name = tokio_rustls::rustls::pki_types::ServerName::try_from("localhost").unwrap();
            connector.connect(name, tcp).await
        }
    };
    let second = tokio::time::timeout(Duration::from_secs(5), handshake())
        .await
        .expect("a free slot: the handshake completes")
        .unwrap();
    // Within 5 s of the other's closing, well before the 10 s a silent connection has.
    let third = tokio::spawn(tokio::time::timeout(Duration::from_secs(5), handshake()));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !third.is_finished(),
        "handshaken beside two open connections"
    );
    drop(second);
    third
        .await
        .unwrap()
        .expect("handshaken once a connection closed")
        .unwrap();
}
