//! Discovery: document rules (pure), and startup, fallback, retries and refresh against the
//! in-process test double.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use super::*;
use crate::config::{
    CacheConfig, IntrospectionAuth, IntrospectionConfig, IssuerConfig, KeySource, Secret,
};
use crate::fhir::FhirVersion;
use crate::token::tests::test_double::{Answer, FakeServer};
use crate::token::{AuthError, Authenticator, DiscoveryTiming, TokenSource};

const AUDIENCE: &str = "https://fhir.example/r4";
const OPENID: &str = "/.well-known/openid-configuration";
const SMART: &str = "/.well-known/smart-configuration";

const ALL: Needs = Needs {
    jwks_uri: Need::Required,
    introspection_endpoint: Need::Optional,
};

// ---------------------------------------------------------------- pure rules

#[test]
fn well_known_urls_drop_a_trailing_slash_of_the_issuer() {
    assert_eq!(
        well_known_url("https://as.example/tenant/", OPENID_CONFIGURATION),
        "https://as.example/tenant/.well-known/openid-configuration"
    );
    assert_eq!(
        well_known_url("http://127.0.0.1:9", SMART_CONFIGURATION),
        "http://127.0.0.1:9/.well-known/smart-configuration"
    );
}

#[test]
fn retries_back_off_exponentially_up_to_the_cap() {
    let first = Duration::from_millis(250);
    let cap = Duration::from_secs(300);
    let delays: Vec<u128> = (1..=5)
        .map(|failures| retry_delay(failures, first, cap).as_millis())
        .collect();
    assert_eq!(delays, [250, 500, 1_000, 2_000, 4_000]);
    assert_eq!(retry_delay(20, first, cap), cap);
    assert_eq!(retry_delay(u32::MAX, first, cap), cap);
    assert_eq!(retry_delay(0, first, cap), first);
    // The startup budget of 5 s holds about five attempts.
    let mut elapsed = Duration::ZERO;
    let mut attempts = 1;
    while elapsed + retry_delay(attempts, first, cap) < Duration::from_secs(5) {
        elapsed += retry_delay(attempts, first, cap);
        attempts += 1;
    }
    assert_eq!(attempts, 5);
}

#[test]
fn a_document_must_name_the_configured_issuer() {
    let issuer = "https://as.example";
    let document = |value: serde_json::Value| value.to_string().into_bytes();
    let good = document(json!({"issuer": issuer, "jwks_uri": "https://as.example/jwks"}));
    assert_eq!(
        read_document(OPENID_CONFIGURATION, &good, issuer, ALL)
            .unwrap()
            .jwks_uri
            .as_deref(),
        Some("https://as.example/jwks")
    );
    for wrong in [
        json!({"issuer": "https://evil.example", "jwks_uri": "https://evil.example/jwks"}),
        json!({"issuer": "https://as.example/", "jwks_uri": "https://as.example/jwks"}),
        json!({"jwks_uri": "https://as.example/jwks"}),
        json!({"issuer": 7, "jwks_uri": "https://as.example/jwks"}),
    ] {
        assert!(
            matches!(
                read_document(OPENID_CONFIGURATION, &document(wrong.clone()), issuer, ALL),
                Err(DiscoveryError::IssuerMismatch { .. })
            ),
            "{wrong}"
        );
    }
    // SMART servers without OpenID Connect omit `issuer` (SMART App Launch §2.1).
    let smart = document(json!({"jwks_uri": "https://as.example/jwks"}));
    assert!(read_document(SMART_CONFIGURATION, &smart, issuer, ALL).is_ok());
    assert!(matches!(
        read_document(SMART_CONFIGURATION, b"[]", issuer, ALL),
        Err(DiscoveryError::NotAnObject { .. })
    ));
    // Named twice, `issuer` would pass the check on one value and mean the other.
    let twice = br#"{"issuer": "https://evil.example", "issuer": "https://as.example", "jwks_uri": "https://evil.example/jwks"}"#;
    assert!(matches!(
        read_document(OPENID_CONFIGURATION, twice, issuer, ALL),
        Err(DiscoveryError::NotAnObject { .. })
    ));
}

#[test]
fn endpoints_must_be_urls_and_https_for_an_https_issuer() {
    let read = |issuer: &str, jwks_uri: serde_json::Value| {
        let body = json!({"issuer": issuer, "jwks_uri": jwks_uri}).to_string();
        read_document(OPENID_CONFIGURATION, body.as_bytes(), issuer, ALL)
    };
    assert!(read("https://as.example", json!("http://as.example/jwks")).is_err());
    assert!(read("https://as.example", json!("ftp://as.example/jwks")).is_err());
    assert!(read("https://as.example", json!(["https://as.example/jwks"])).is_err());
    assert!(read("http://127.0.0.1:1", json!("http://127.0.0.1:1/jwks")).is_ok());
    // Fields that are not needed are not read at all.
    let needs = Needs {
        jwks_uri: Need::No,
        introspection_endpoint: Need::Required,
    };
    let body = json!({"issuer": "https://as.example", "jwks_uri": 5, "introspection_endpoint": "https://as.example/i"});
    let found = read_document(
        OPENID_CONFIGURATION,
        body.to_string().as_bytes(),
        "https://as.example",
        needs,
    )
    .unwrap();
    assert_eq!(found.jwks_uri, None);
    assert_eq!(
        found.introspection_endpoint.as_deref(),
        Some("https://as.example/i")
    );
}

#[test]
fn needs_follow_the_configuration() {
    let base = discovered_issuer("https://as.example");
    assert_eq!(
        Needs::of(&base),
        Needs {
            jwks_uri: Need::Required,
            introspection_endpoint: Need::No
        }
    );
    let with_credentials = with_introspection(base.clone(), None);
    assert_eq!(
        Needs::of(&with_credentials),
        Needs {
            jwks_uri: Need::Optional,
            introspection_endpoint: Need::Required
        }
    );
    let only = IssuerConfig {
        introspection_only: true,
        ..with_credentials.clone()
    };
    assert_eq!(Needs::of(&only).jwks_uri, Need::No);
    let off = IssuerConfig {
        discovery: false,
        ..with_credentials
    };
    assert!(Needs::of(&off).is_empty());
}

// ---------------------------------------------------------------- against the test double

fn discovered_issuer(issuer: &str) -> IssuerConfig {
    IssuerConfig {
        keys: None,
        discovery: true,
        fetch_timeout: Duration::from_secs(1),
        ..IssuerConfig::with_keys(
            issuer,
            vec![AUDIENCE.to_owned()],
            KeySource::Inline(String::new()),
        )
    }
}

fn with_introspection(issuer: IssuerConfig, endpoint: Option<String>) -> IssuerConfig {
    IssuerConfig {
        introspection: Some(IntrospectionConfig {
            endpoint,
            auth: IntrospectionAuth::ClientSecretPost,
            client_id: Some("rs".to_owned()),
            client_secret: Secret::new("s3cret"),
            timeout: Duration::from_secs(1),
            max_concurrency: 4,
            without_aud: false,
        }),
        opaque_tokens: true,
        ..issuer
    }
}

fn jwks_of(name: &str) -> String {
    let key = match name {
        "rsa-1" => include_str!("../../../tests/fixtures/keys/rsa-1.jwk.json"),
        _ => include_str!("../../../tests/fixtures/keys/rsa-2.jwk.json"),
    };
    format!("{{\"keys\":[{key}]}}")
}

fn signed(issuer: &str, key_name: &str) -> String {
    let pem: &[u8] = match key_name {
        "rsa-1" => include_bytes!("../../../tests/fixtures/keys/rsa-1.pem"),
        _ => include_bytes!("../../../tests/fixtures/keys/rsa-2.pem"),
    };
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(key_name.to_owned());
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    // A new jti each time, so each token is verified rather than served from the cache.
    static SERIAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let jti = SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let claims = json!({"iss": issuer, "aud": AUDIENCE, "exp": exp, "scope": "patient/*.rs", "patient": "1", "jti": jti});
    jsonwebtoken::encode(&header, &claims, &EncodingKey::from_rsa_pem(pem).unwrap()).unwrap()
}

fn quick(startup_budget: Duration) -> DiscoveryTiming {
    DiscoveryTiming {
        first_retry: Duration::from_millis(50),
        startup_budget,
    }
}

async fn start(issuer: IssuerConfig, timing: DiscoveryTiming) -> Arc<Authenticator> {
    Authenticator::with_timing(&[issuer], &CacheConfig::default(), FhirVersion::R4, timing)
        .await
        .unwrap()
}

/// Serves an OpenID document for `server` naming `/jwks` (rsa-1 keys).
fn serve_openid(server: &FakeServer) {
    let document = json!({"issuer": server.base, "jwks_uri": server.url("/jwks")});
    server.set(OPENID, StatusCode::OK, document.to_string());
    server.set("/jwks", StatusCode::OK, jwks_of("rsa-1"));
}

#[tokio::test]
async fn the_issuer_alone_is_enough() {
    let server = FakeServer::start().await;
    serve_openid(&server);
    let authenticator = start(
        discovered_issuer(&server.base),
        quick(Duration::from_secs(2)),
    )
    .await;
    assert_eq!(authenticator.is_discovered(&server.base), Some(true));
    // The keys were loaded before startup finished.
    assert!(
        authenticator
            .key_set(&server.base)
            .unwrap()
            .snapshot()
            .is_some()
    );
    let answer = authenticator
        .authenticate(&signed(&server.base, "rsa-1"))
        .await
        .unwrap();
    assert_eq!(answer.token.source, TokenSource::LocalJwt);
    assert_eq!(server.hits(SMART), 0);
}

#[tokio::test]
async fn a_document_naming_another_issuer_is_rejected() {
    let server = FakeServer::start().await;
    serve_openid(&server);
    let evil = json!({"issuer": "https://evil.example", "jwks_uri": server.url("/jwks")});
    server.set(OPENID, StatusCode::OK, evil.to_string());
    server.set(
        SMART,
        StatusCode::OK,
        json!({"jwks_uri": server.url("/jwks")}).to_string(),
    );
    let authenticator = start(
        discovered_issuer(&server.base),
        quick(Duration::from_millis(200)),
    )
    .await;
    assert_eq!(authenticator.is_discovered(&server.base), Some(false));
    match authenticator
        .authenticate(&signed(&server.base, "rsa-1"))
        .await
    {
        Err(AuthError::Unavailable { detail, .. }) => {
            assert!(detail.contains("not the configured issuer"), "{detail}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    // The SMART document cannot paper over a wrong issuer, and no keys were fetched.
    assert_eq!(server.hits(SMART), 0);
    assert_eq!(server.hits("/jwks"), 0);
}

#[tokio::test]
async fn the_smart_configuration_fills_what_the_openid_one_lacks() {
    let server = FakeServer::start().await;
    server.set("/jwks", StatusCode::OK, jwks_of("rsa-1"));
    server.set(
        SMART,
        StatusCode::OK,
        json!({"jwks_uri": server.url("/jwks")}).to_string(),
    );
    // Missing entirely.
    let authenticator = start(
        discovered_issuer(&server.base),
        quick(Duration::from_secs(2)),
    )
    .await;
    assert!(
        authenticator
            .authenticate(&signed(&server.base, "rsa-1"))
            .await
            .is_ok()
    );
    // Present, without jwks_uri but with the introspection endpoint.
    let openid =
        json!({"issuer": server.base, "introspection_endpoint": server.url("/introspect")});
    server.set(OPENID, StatusCode::OK, openid.to_string());
    server.set(
        "/introspect",
        StatusCode::OK,
        json!({"active": true, "aud": AUDIENCE, "scope": "patient/*.rs"}).to_string(),
    );
    let issuer = with_introspection(discovered_issuer(&server.base), None);
    let authenticator = start(issuer, quick(Duration::from_secs(2))).await;
    let local = authenticator
        .authenticate(&signed(&server.base, "rsa-1"))
        .await
        .unwrap();
    assert_eq!(local.token.source, TokenSource::LocalJwt);
    let remote = authenticator.authenticate("opaque").await.unwrap();
    assert_eq!(remote.token.source, TokenSource::RemoteIntrospection);
    assert_eq!(server.hits("/introspect"), 1);
}

#[tokio::test]
async fn startup_retries_with_backoff_until_discovery_succeeds() {
    let server = FakeServer::start().await;
    serve_openid(&server);
    let document = json!({"issuer": server.base, "jwks_uri": server.url("/jwks")}).to_string();
    server.respond(OPENID, move |_, nth| Answer {
        status: if nth < 2 {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::OK
        },
        body: document.clone(),
        delay: Duration::ZERO,
    });
    let started = Instant::now();
    let authenticator = start(
        discovered_issuer(&server.base),
        quick(Duration::from_secs(2)),
    )
    .await;
    // Failures after 0 and ~50 ms, success after another ~100 ms.
    assert!(started.elapsed() >= Duration::from_millis(140));
    assert_eq!(authenticator.is_discovered(&server.base), Some(true));
    assert_eq!(server.hits(OPENID), 3);
    assert!(
        authenticator
            .authenticate(&signed(&server.base, "rsa-1"))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn after_the_startup_budget_the_background_task_keeps_trying() {
    let server = FakeServer::start().await;
    serve_openid(&server);
    let document = json!({"issuer": server.base, "jwks_uri": server.url("/jwks")}).to_string();
    server.respond(OPENID, move |_, nth| Answer {
        status: if nth < 4 {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::OK
        },
        body: document.clone(),
        delay: Duration::ZERO,
    });
    // The start returns after its budget, not after discovery: its tokens are unavailable
    // until the background task succeeds (no wall-clock bound: CI machines are loaded).
    let authenticator = start(
        discovered_issuer(&server.base),
        quick(Duration::from_millis(120)),
    )
    .await;
    let token = signed(&server.base, "rsa-1");
    match authenticator.authenticate(&token).await {
        Err(AuthError::Unavailable { detail, .. }) => {
            assert!(detail.contains("discovery has not succeeded"), "{detail}");
            assert!(detail.contains("HTTP 500"), "{detail}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    // Attempts at about 0, 50, 150, 350 (failures) and 750 ms (success).
    let deadline = Instant::now() + Duration::from_secs(2);
    while authenticator.is_discovered(&server.base) != Some(true) {
        assert!(Instant::now() < deadline, "discovery never succeeded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(authenticator.authenticate(&token).await.is_ok());
    assert_eq!(server.hits(OPENID), 5);
}

#[tokio::test]
async fn refreshes_follow_a_moved_jwks_uri_and_survive_failures() {
    let server = FakeServer::start().await;
    serve_openid(&server);
    server.set("/jwks2", StatusCode::OK, jwks_of("rsa-2"));
    let issuer = IssuerConfig {
        refresh_interval: Duration::from_millis(100),
        ..discovered_issuer(&server.base)
    };
    let authenticator = start(issuer, quick(Duration::from_secs(2))).await;
    assert!(
        authenticator
            .authenticate(&signed(&server.base, "rsa-1"))
            .await
            .is_ok()
    );
    let moved = json!({"issuer": server.base, "jwks_uri": server.url("/jwks2")});
    server.set(OPENID, StatusCode::OK, moved.to_string());
    let keys = authenticator.key_set(&server.base).unwrap().clone();
    let deadline = Instant::now() + Duration::from_secs(2);
    while keys.uri().as_deref() != Some(server.url("/jwks2").as_str()) {
        assert!(
            Instant::now() < deadline,
            "the new jwks_uri was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    while server.hits("/jwks2") == 0 {
        assert!(Instant::now() < deadline, "the new keys were not loaded");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        authenticator
            .authenticate(&signed(&server.base, "rsa-2"))
            .await
            .is_ok()
    );
    // The discovery documents go away: the last good endpoints and keys stay in use.
    server.set(OPENID, StatusCode::NOT_FOUND, "{}");
    let hits = server.hits(OPENID);
    while server.hits(OPENID) < hits + 2 {
        assert!(Instant::now() < deadline + Duration::from_secs(1));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(authenticator.is_discovered(&server.base), Some(true));
    assert_eq!(keys.uri().as_deref(), Some(server.url("/jwks2").as_str()));
    let fresh = authenticator
        .authenticate(&signed(&server.base, "rsa-2"))
        .await
        .unwrap();
    assert!(!fresh.cached);
}
