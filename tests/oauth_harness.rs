//! Smoke tests of the OAuth test harness: real `oidc-provider` and `oauth2-mock-server`
//! (Node.js, 127.0.0.1), and the stoppable TCP proxy.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a panic is a failed test"
)]

mod common;

use std::time::Duration;

use common::oauth::*;
use common::proxy::TcpProxy;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};

/// Verifies `token`'s signature with the key of its `kid` in `jwks`, returning the claims.
fn verify(token: &str, jwks: &Value, audience: Option<&str>) -> Value {
    let header = jsonwebtoken::decode_header(token).expect("a JWT header");
    let set: JwkSet = serde_json::from_value(jwks.clone()).expect("a JWKS");
    let kid = header.kid.as_deref().expect("a kid");
    let jwk = set.find(kid).expect("the kid is in the JWKS");
    let key = DecodingKey::from_jwk(jwk).expect("a decoding key");
    let mut validation = Validation::new(header.alg);
    match audience {
        Some(audience) => validation.set_audience(&[audience]),
        None => validation.validate_aud = false,
    }
    validation.set_required_spec_claims(&["exp"]);
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .expect("a valid signature")
        .claims
}

#[tokio::test]
async fn provider_discovery_advertises_the_endpoints() {
    let provider = OidcProvider::start().await;
    assert_eq!(
        provider.issuer,
        format!("http://127.0.0.1:{}", provider.port)
    );
    let discovery = provider.discovery().await;
    assert_eq!(discovery["issuer"], json!(provider.issuer));
    assert_eq!(
        discovery["introspection_endpoint"],
        json!(provider.introspection_endpoint())
    );
    assert_eq!(
        discovery["revocation_endpoint"],
        json!(provider.revocation_endpoint())
    );
    assert_eq!(
        discovery["token_endpoint"],
        json!(provider.token_endpoint())
    );
    assert_eq!(discovery["jwks_uri"], json!(provider.jwks_uri()));
    let scopes = discovery["scopes_supported"].as_array().unwrap();
    assert!(scopes.contains(&json!("patient/*.rs")), "{discovery}");
}

#[tokio::test]
async fn opaque_token_is_introspected_with_basic_and_post_credentials_then_revoked() {
    let provider = OidcProvider::start().await;
    let token = provider.opaque_token("patient/*.rs", Some("123")).await;
    assert_eq!(token.split('.').count(), 1, "opaque, not a JWT: {token}");
    let before = provider.introspection_count().await;

    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    // rs-basic: HTTP Basic.
    let response = http
        .post(provider.introspection_endpoint())
        .basic_auth(RS_BASIC_CLIENT_ID, Some(RS_CLIENT_SECRET))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("token", &token)]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let basic: Value = response.json().await.unwrap();
    assert_eq!(basic["active"], json!(true), "{basic}");
    assert_eq!(basic["scope"], json!("patient/*.rs"), "{basic}");
    assert_eq!(basic["client_id"], json!(APP_CLIENT_ID), "{basic}");
    assert_eq!(basic["patient"], json!("123"), "{basic}");
    assert_eq!(basic["iss"], json!(provider.issuer), "{basic}");
    assert_eq!(basic["token_type"], json!("Bearer"), "{basic}");
    assert!(basic["exp"].as_i64().unwrap() > common::now(), "{basic}");

    // rs-post: form credentials.
    let response = http
        .post(provider.introspection_endpoint())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("token", &token),
            ("client_id", RS_POST_CLIENT_ID),
            ("client_secret", RS_CLIENT_SECRET),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let post: Value = response.json().await.unwrap();
    assert_eq!(post, basic);

    // A wrong resource-server secret: 401 invalid_client, with either method.
    let (status, body) = provider
        .introspect_as(RS_BASIC_CLIENT_ID, "wrong", true, &token)
        .await;
    assert_eq!(
        (status, body["error"].clone()),
        (401, json!("invalid_client"))
    );
    let (status, _) = provider
        .introspect_as(RS_POST_CLIENT_ID, "wrong", false, &token)
        .await;
    assert_eq!(status, 401);
    // oidc-provider treats client_secret_basic and client_secret_post as interchangeable:
    // rs-post may present its secret with HTTP Basic too.
    let (status, body) = provider
        .introspect_as(RS_POST_CLIENT_ID, RS_CLIENT_SECRET, true, &token)
        .await;
    assert_eq!((status, body["active"].clone()), (200, json!(true)));

    assert_eq!(provider.introspection_count().await, before + 5);

    provider.revoke(&token).await;
    assert_eq!(
        provider.introspect(&token).await,
        json!({ "active": false })
    );
    // Unknown tokens are inactive too.
    assert_eq!(
        provider.introspect("not-a-token").await,
        json!({ "active": false })
    );
    assert_eq!(provider.introspection_count().await, before + 7);
}

#[tokio::test]
async fn jwt_access_token_with_resource_indicator() {
    let provider = OidcProvider::start().await;
    let token = provider
        .jwt_token("patient/Observation.rs launch/patient", Some("123"))
        .await;
    assert_eq!(token.split('.').count(), 3, "{token}");
    let header = jwt_header(&token);
    assert_eq!(header["alg"], json!("RS256"), "{header}");
    assert_eq!(header["typ"], json!("at+jwt"), "{header}");

    let claims = verify(&token, &provider.jwks().await, Some(FHIR_RESOURCE));
    assert_eq!(claims, jwt_payload(&token));
    assert_eq!(claims["aud"], json!(FHIR_RESOURCE), "{claims}");
    assert_eq!(claims["iss"], json!(provider.issuer), "{claims}");
    assert_eq!(claims["patient"], json!("123"), "{claims}");
    assert_eq!(claims["client_id"], json!(APP_CLIENT_ID), "{claims}");
    assert_eq!(claims["sub"], json!(APP_CLIENT_ID), "{claims}");
    assert_eq!(
        claims["scope"],
        json!("patient/Observation.rs launch/patient"),
        "{claims}"
    );

    // oidc-provider refuses to introspect structured (JWT) tokens.
    let (status, body) = provider
        .introspect_as(RS_BASIC_CLIENT_ID, RS_CLIENT_SECRET, true, &token)
        .await;
    assert_eq!(
        (status, body["error"].clone()),
        (400, json!("unsupported_token_type"))
    );

    // Any other resource is an invalid target.
    let (status, body) = provider
        .token_request(&[("scope", "system/*.rs"), ("resource", "https://other.test")])
        .await;
    assert_eq!(
        (status, body["error"].clone()),
        (400, json!("invalid_target"))
    );
}

#[tokio::test]
async fn proxy_forwards_goes_down_and_comes_back_on_the_same_port() {
    let provider = OidcProvider::start().await;
    let proxy = TcpProxy::start(provider.address()).await;
    let url = format!("{}/.well-known/openid-configuration", proxy.url());
    let http = http_client();

    let discovery: Value = http.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(discovery["issuer"], json!(provider.issuer));
    assert!(proxy.accepted() >= 1);
    assert_eq!(proxy.open_connections(), 1, "the keep-alive connection");

    proxy.stop().await;
    assert!(!proxy.is_running());
    assert_eq!(proxy.open_connections(), 0);
    // Pooled or new, every connection fails now.
    let error = http
        .get(&url)
        .send()
        .await
        .expect_err("the upstream is gone");
    assert!(error.is_connect() || error.is_request(), "{error:?}");
    assert!(
        tokio::net::TcpStream::connect(proxy.address())
            .await
            .is_err()
    );

    proxy.resume().await;
    let address = proxy.address();
    let discovery: Value = http.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(discovery["issuer"], json!(provider.issuer));
    assert_eq!(proxy.address(), address);

    // Through the proxy, introspection reaches the provider (and is counted).
    let token = provider.opaque_token("user/*.rs", None).await;
    let before = provider.introspection_count().await;
    let (status, body) = post_form(
        &http,
        &format!("{}/token/introspection", proxy.url()),
        Some((RS_BASIC_CLIENT_ID, RS_CLIENT_SECRET)),
        &[("token", &token)],
    )
    .await;
    assert_eq!(
        (status, body["active"].clone()),
        (200, json!(true)),
        "{body}"
    );
    assert!(body.get("patient").is_none(), "{body}");
    assert_eq!(provider.introspection_count().await, before + 1);
}

#[tokio::test]
async fn proxy_drops_clients_when_the_target_is_down() {
    let mut provider = OidcProvider::start().await;
    let proxy = TcpProxy::start(provider.address()).await;
    let url = format!("{}/__stats", proxy.url());
    let http = http_client();
    assert_eq!(http.get(&url).send().await.unwrap().status(), 200);

    provider.stop();
    assert!(!provider.is_running());
    assert!(http.get(&url).send().await.is_err(), "the target is down");

    // A provider restarted on the same port is reachable again (with fresh state).
    let token_port = provider.port;
    provider.restart().await;
    assert_eq!(provider.port, token_port);
    assert_eq!(provider.issuer, format!("http://127.0.0.1:{token_port}"));
    let stats: Value = http.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(stats["introspections"], json!(0));
}

#[tokio::test]
async fn fixed_port_provider_forgets_tokens_on_restart() {
    let mut provider = OidcProvider::start().await;
    let token = provider.opaque_token("system/*.rs", None).await;
    assert_eq!(provider.introspect(&token).await["active"], json!(true));
    provider.restart().await;
    assert_eq!(provider.introspect(&token).await["active"], json!(false));
    drop(provider);
}

#[tokio::test]
async fn mock_server_mints_tokens_with_any_claims_and_expiry() {
    let mock = MockServer::start().await;
    assert_eq!(mock.issuer, format!("http://127.0.0.1:{}", mock.port));
    let jwks = mock.jwks().await;
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2, "{jwks}");

    let token = mock
        .token(
            json!({ "aud": FHIR_RESOURCE, "scope": "patient/*.rs", "patient": "p-9", "custom": {"a": 1} }),
            120,
        )
        .await;
    let header = jwt_header(&token);
    assert_eq!(header["alg"], json!("ES256"), "{header}");
    assert_eq!(header["kid"], json!(mock.es256_kid), "{header}");
    let claims = verify(&token, &jwks, Some(FHIR_RESOURCE));
    assert_eq!(claims["iss"], json!(mock.issuer));
    assert_eq!(claims["custom"], json!({"a": 1}));
    assert_eq!(claims["patient"], json!("p-9"));
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        120
    );

    // RS256, already expired, without nbf.
    let token = mock
        .token_with_alg("RS256", json!({ "sub": "u-1", "nbf": null }), -30)
        .await;
    let header = jwt_header(&token);
    assert_eq!(header["alg"], json!("RS256"));
    assert_eq!(header["kid"], json!(mock.rs256_kid));
    let claims = jwt_payload(&token);
    assert!(claims["exp"].as_i64().unwrap() < common::now(), "{claims}");
    assert!(claims.get("nbf").is_none(), "{claims}");
    let set: JwkSet = serde_json::from_value(jwks).unwrap();
    let key = DecodingKey::from_jwk(set.find(&mock.rs256_kid).unwrap()).unwrap();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.validate_aud = false;
    validation.leeway = 0;
    let error = jsonwebtoken::decode::<Value>(&token, &key, &validation).unwrap_err();
    assert_eq!(
        error.kind(),
        &jsonwebtoken::errors::ErrorKind::ExpiredSignature
    );
}

#[tokio::test]
async fn servers_are_killed_on_drop() {
    let provider = OidcProvider::start().await;
    let address = provider.address();
    drop(provider);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(tokio::net::TcpStream::connect(address).await.is_err());
}
