//! Shared helpers for the black-box tests: a token issuer whose JWKS is served over real
//! HTTP on loopback, and the real server on an ephemeral loopback port.

#![allow(dead_code)]

pub mod answers;
pub mod envoy;
pub mod example_fhir;
pub mod ext_proc;
pub mod oauth;
pub mod otlp;
pub mod proxy;
pub mod spawned;
pub mod tls;

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::routing::get;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use smart_authz::config::Config;
use smart_authz::grpc::pb;
use smart_authz::grpc::pb::authz_service_client::AuthzServiceClient;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

/// The audience every test token is issued for: this FHIR server's base URL.
pub const AUDIENCE: &str = "https://fhir.test/r4";

/// A test key: its private PEM, algorithm, and public JWK.
pub struct TestKey {
    pub kid: &'static str,
    pub algorithm: Algorithm,
    pub private_pem: &'static str,
    pub public_pem: &'static str,
    pub jwk: &'static str,
}

pub const RSA_1: TestKey = TestKey {
    kid: "rsa-1",
    algorithm: Algorithm::RS256,
    private_pem: include_str!("../fixtures/keys/rsa-1.pem"),
    public_pem: include_str!("../fixtures/keys/rsa-1.public.pem"),
    jwk: include_str!("../fixtures/keys/rsa-1.jwk.json"),
};
pub const RSA_2: TestKey = TestKey {
    kid: "rsa-2",
    algorithm: Algorithm::RS256,
    private_pem: include_str!("../fixtures/keys/rsa-2.pem"),
    public_pem: include_str!("../fixtures/keys/rsa-2.public.pem"),
    jwk: include_str!("../fixtures/keys/rsa-2.jwk.json"),
};
pub const EC_1: TestKey = TestKey {
    kid: "ec-1",
    algorithm: Algorithm::ES256,
    private_pem: include_str!("../fixtures/keys/ec-1.pem"),
    public_pem: include_str!("../fixtures/keys/ec-1.public.pem"),
    jwk: include_str!("../fixtures/keys/ec-1.jwk.json"),
};
pub const ED_1: TestKey = TestKey {
    kid: "ed-1",
    algorithm: Algorithm::EdDSA,
    private_pem: include_str!("../fixtures/keys/ed-1.pem"),
    public_pem: include_str!("../fixtures/keys/ed-1.public.pem"),
    jwk: include_str!("../fixtures/keys/ed-1.jwk.json"),
};

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A token issuer: signs tokens with the test keys and serves its JWKS on loopback HTTP.
pub struct TestIssuer {
    pub issuer: String,
    pub jwks_uri: String,
    published: Arc<RwLock<Value>>,
    server: JoinHandle<()>,
}

impl TestIssuer {
    /// Starts the JWKS server publishing `keys`.
    pub async fn start(keys: &[&TestKey]) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        TestIssuer::serve(listener, keys)
    }

    /// The issuer on a listener the test bound (e.g. a port the service already knows).
    pub fn serve(listener: tokio::net::TcpListener, keys: &[&TestKey]) -> Self {
        let published = Arc::new(RwLock::new(jwks(keys)));
        let shared = published.clone();
        let router = Router::new().route(
            "/jwks",
            get(move || {
                let shared = shared.clone();
                async move { axum::Json(shared.read().unwrap().clone()) }
            }),
        );
        let address = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        TestIssuer {
            issuer: format!("http://{address}/issuer"),
            jwks_uri: format!("http://{address}/jwks"),
            published,
            server,
        }
    }

    /// Replaces the published key set (key rotation).
    pub fn publish(&self, keys: &[&TestKey]) {
        *self.published.write().unwrap() = jwks(keys);
    }

    /// Claims of a valid token with `scope`, for `patient` when given.
    pub fn claims(&self, scope: &str) -> Value {
        json!({
            "iss": self.issuer,
            "aud": AUDIENCE,
            "sub": "user-1",
            "client_id": "test-client",
            "scope": scope,
            "iat": now(),
            "exp": now() + 600,
        })
    }

    /// A patient-context token with `scope`.
    pub fn patient_token(&self, scope: &str, patient: &str) -> String {
        let mut claims = self.claims(scope);
        claims["patient"] = json!(patient);
        sign(&RSA_1, &claims)
    }

    /// A token with `patient/*.rs` for Patient/123, issued for the FHIR server `audience`.
    pub fn token_for(&self, audience: &str) -> String {
        let mut claims = self.claims("patient/*.rs");
        claims["aud"] = json!(audience);
        claims["patient"] = json!("123");
        sign(&RSA_1, &claims)
    }

    /// The `[[issuers]]` TOML of this issuer.
    pub fn issuer_toml(&self) -> String {
        format!(
            "[[issuers]]\nissuer = \"{}\"\naudiences = [\"{AUDIENCE}\"]\njwks_uri = \"{}\"\njwks_min_refresh_secs = 1\n",
            self.issuer, self.jwks_uri
        )
    }
}

impl Drop for TestIssuer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn jwks(keys: &[&TestKey]) -> Value {
    let keys: Vec<Value> = keys
        .iter()
        .map(|key| serde_json::from_str(key.jwk).unwrap())
        .collect();
    json!({ "keys": keys })
}

/// A token from this build's `smart-authz token ARGS` (signed with the development key
/// unless the arguments say otherwise).
pub fn binary_token(args: &[&str]) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_smart-authz"))
        .arg("token")
        .args(args)
        .output()
        .expect("token runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("a token is text")
        .trim()
        .to_owned()
}

/// Signs `claims` with `key`, with its `kid`.
pub fn sign(key: &TestKey, claims: &Value) -> String {
    let mut header = Header::new(key.algorithm);
    header.kid = Some(key.kid.to_owned());
    let encoding = match key.algorithm {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(key.private_pem.as_bytes()),
        Algorithm::ES256 => EncodingKey::from_ec_pem(key.private_pem.as_bytes()),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(key.private_pem.as_bytes()),
        other => panic!("no test key for {other:?}"),
    }
    .unwrap();
    jsonwebtoken::encode(&header, claims, &encoding).unwrap()
}

/// The real server on 127.0.0.1, an ephemeral port, and a connected client.
pub struct TestServer {
    pub address: SocketAddr,
    /// Where `/metrics` is served, for servers started with [`TestServer::start_with_metrics`].
    pub metrics_address: Option<SocketAddr>,
    /// Where the AuthZEN HTTP face listens, when the configuration has `[authzen]` (its
    /// `listen` is ignored: an ephemeral loopback port).
    pub authzen_address: Option<SocketAddr>,
    pub channel: Channel,
    pub client: AuthzServiceClient<Channel>,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<()>>,
}

impl TestServer {
    /// Starts the server on `config_toml` (its `listen` and `metrics_listen` are ignored:
    /// no metrics listener).
    pub async fn start(config_toml: &str) -> Self {
        TestServer::start_serving(config_toml, false, None).await
    }

    /// Starts the server with `/metrics` on an ephemeral loopback port.
    pub async fn start_with_metrics(config_toml: &str) -> Self {
        TestServer::start_serving(config_toml, true, None).await
    }

    /// Starts a server whose `[tls]` is set, with a client that trusts `ca_pem` and presents
    /// `identity` when given.
    pub async fn start_tls(
        config_toml: &str,
        ca_pem: &str,
        identity: Option<tonic::transport::Identity>,
    ) -> Self {
        TestServer::start_serving(config_toml, false, Some((ca_pem, identity))).await
    }

    async fn start_serving(
        config_toml: &str,
        metrics: bool,
        tls: Option<(&str, Option<tonic::transport::Identity>)>,
    ) -> Self {
        let config = Config::from_toml(config_toml).expect("valid test configuration");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let metrics_listener = if metrics {
            Some(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap())
        } else {
            None
        };
        let metrics_address = metrics_listener
            .as_ref()
            .map(|listener| listener.local_addr().unwrap());
        let authzen_listener = match config.authzen {
            Some(_) => Some(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()),
            None => None,
        };
        let authzen_address = authzen_listener
            .as_ref()
            .map(|listener| listener.local_addr().unwrap());
        let (shutdown, stop) = oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            let listeners = smart_authz::app::Listeners {
                api: listener,
                metrics: metrics_listener,
                health: None,
                authzen: authzen_listener,
                unix: None,
            };
            smart_authz::app::serve(listeners, config, async {
                let _ = stop.await;
            })
            .await
            .expect("server runs");
        });
        let channel = match tls {
            Some((ca_pem, identity)) => connect_tls(address, ca_pem, identity).await,
            None => connect(address).await,
        };
        TestServer {
            address,
            metrics_address,
            authzen_address,
            client: AuthzServiceClient::new(channel.clone()),
            channel,
            shutdown: Some(shutdown),
            handle: Some(handle),
        }
    }

    /// Starts the server trusting `issuer`, with `extra` top-level TOML before it.
    pub async fn for_issuer(issuer: &TestIssuer, extra: &str) -> Self {
        TestServer::start(&format!("{extra}\n{}", issuer.issuer_toml())).await
    }

    /// Stops the server and waits until it has drained.
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(handle) = self.handle.take() {
            handle.await.unwrap();
        }
    }

    /// `CheckAccess` with an HTTP request line.
    pub async fn check(&self, token: &str, method: &str, path: &str) -> pb::CheckAccessResponse {
        self.check_request(check_http(token, method, path)).await
    }

    pub async fn check_request(&self, request: pb::CheckAccessRequest) -> pb::CheckAccessResponse {
        self.client
            .clone()
            .check_access(request)
            .await
            .expect("CheckAccess answers")
            .into_inner()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

pub async fn connect_tls(
    address: SocketAddr,
    ca_pem: &str,
    identity: Option<tonic::transport::Identity>,
) -> Channel {
    for _ in 0..100 {
        if let Ok(channel) = tls::connect(address, ca_pem, identity.clone()).await {
            return channel;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("the TLS server did not start on {address}");
}

pub async fn connect(address: SocketAddr) -> Channel {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{address}")).unwrap();
    for _ in 0..100 {
        if let Ok(channel) = endpoint.connect().await {
            return channel;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("the server did not start on {address}");
}

/// A structured request of `interaction` on `resource_type` and `id` (empty: unset).
pub fn fhir(interaction: pb::Interaction, resource_type: &str, id: &str) -> pb::FhirRequest {
    pb::FhirRequest {
        interaction: interaction as i32,
        resource_type: resource_type.to_owned(),
        id: id.to_owned(),
        ..pb::FhirRequest::default()
    }
}

/// A `CheckAccessRequest` with a structured request.
pub fn check_fhir(token: &str, request: pb::FhirRequest) -> pb::CheckAccessRequest {
    pb::CheckAccessRequest {
        access_token: token.to_owned(),
        request: Some(pb::check_access_request::Request::Fhir(request)),
        ..pb::CheckAccessRequest::default()
    }
}

/// A `CheckAccessRequest` with an HTTP request line.
pub fn check_http(token: &str, method: &str, path: &str) -> pb::CheckAccessRequest {
    pb::CheckAccessRequest {
        access_token: token.to_owned(),
        request: Some(pb::check_access_request::Request::Http(pb::HttpRequest {
            method: method.to_owned(),
            path: path.to_owned(),
            ..Default::default()
        })),
        ..pb::CheckAccessRequest::default()
    }
}

/// `CheckAccess` of a `POST` search with its form-encoded body.
pub fn post_search(token: &str, path: &str, body: &str) -> pb::CheckAccessRequest {
    let mut request = check_http(token, "POST", path);
    if let Some(pb::check_access_request::Request::Http(http)) = &mut request.request {
        http.body = body.as_bytes().to_vec();
    }
    request
}

/// A resource given as JSON.
pub fn json_resource(resource: &Value) -> Option<pb::Resource> {
    Some(pb::Resource {
        content: Some(pb::resource::Content::Json(
            resource.to_string().into_bytes(),
        )),
    })
}

pub fn decision(response: &pb::CheckAccessResponse) -> pb::Decision {
    pb::Decision::try_from(response.decision).unwrap()
}

pub fn reason(response: &pb::CheckAccessResponse) -> pb::Reason {
    pb::Reason::try_from(response.reason).unwrap()
}

/// An Observation about `Patient/<patient>`.
pub fn observation(patient: &str) -> Value {
    json!({
        "resourceType": "Observation",
        "id": "obs-1",
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}]},
        "subject": {"reference": format!("Patient/{patient}")}
    })
}

/// An introspection endpoint that accepts every connection and never answers, so a call
/// that introspects stays in flight until the introspection timeout.
pub struct StuckEndpoint {
    pub address: SocketAddr,
    /// Resolves when the first request has arrived (the call is in flight).
    pub arrived: oneshot::Receiver<()>,
    holder: JoinHandle<()>,
}

impl StuckEndpoint {
    pub async fn start() -> StuckEndpoint {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (arrived_tx, arrived) = oneshot::channel::<()>();
        let holder = tokio::spawn(async move {
            let mut arrived_tx = Some(arrived_tx);
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
                if let Some(arrived_tx) = arrived_tx.take() {
                    let _ = arrived_tx.send(());
                }
            }
        });
        StuckEndpoint {
            address,
            arrived,
            holder,
        }
    }

    /// Starts an introspection over `channel` that stays in flight, holding a call slot,
    /// until the issuer's timeout; returns once it has reached this endpoint, with its end.
    pub async fn hold_a_call(
        &mut self,
        channel: Channel,
    ) -> JoinHandle<Result<tonic::Response<pb::IntrospectTokenResponse>, tonic::Status>> {
        let slow = tokio::spawn(async move {
            AuthzServiceClient::new(channel)
                .introspect_token(pb::IntrospectTokenRequest {
                    token: "an-opaque-token".into(),
                    ..Default::default()
                })
                .await
        });
        tokio::time::timeout(std::time::Duration::from_secs(10), &mut self.arrived)
            .await
            .expect("the slow call reaches the issuer")
            .unwrap();
        slow
    }

    /// An `[[issuers]]` entry introspecting here, with `timeout_ms`.
    pub fn issuer_toml(&self, timeout_ms: u64) -> String {
        format!(
            "[[issuers]]\nissuer = \"https://slow.example\"\naudiences = [\"{AUDIENCE}\"]\nintrospection_endpoint = \"http://{}/introspect\"\nclient_id = \"rs\"\nclient_secret = \"s\"\nintrospection_timeout_ms = {timeout_ms}\n",
            self.address
        )
    }
}

impl Drop for StuckEndpoint {
    fn drop(&mut self) {
        self.holder.abort();
    }
}

/// The issuer of [`unreachable_issuer_toml`].
pub const UNREACHABLE_ISSUER: &str = "https://down.example";

/// An `[[issuers]]` entry whose `jwks_uri` nobody answers: its tokens cannot be judged.
pub fn unreachable_issuer_toml() -> String {
    // Nothing listens on this port once the probe listener is dropped.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!(
        "[[issuers]]\nissuer = \"{UNREACHABLE_ISSUER}\"\naudiences = [\"{AUDIENCE}\"]\njwks_uri = \"http://127.0.0.1:{port}/jwks\"\njwks_timeout_ms = 500\n"
    )
}
