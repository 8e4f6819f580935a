//! Opaque tokens, discovery and the token cache against real authorization servers from the
//! npm registry (oidc-provider, oauth2-mock-server), started on loopback by the tests.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a panic is a failed test"
)]

mod common;

use std::time::Duration;

use common::oauth::{
    FHIR_RESOURCE, MockServer, OidcProvider, RS_BASIC_CLIENT_ID, RS_CLIENT_SECRET,
    RS_POST_CLIENT_ID,
};
use common::proxy::TcpProxy;
use common::*;
use serde_json::json;
use smart_authz::grpc::pb;
use tonic::Code;

const SCOPE: &str = "launch/patient patient/*.rs";

/// An issuer discovered from `issuer` alone, introspecting as `client_id`. oidc-provider
/// issues its opaque tokens without a resource indicator, so its introspection answers name
/// no `aud`: accepted only with `introspection_without_aud`.
fn discovered(issuer: &str, client_id: &str, extra: &str) -> String {
    format!(
        "[[issuers]]\nissuer = \"{issuer}\"\naudiences = [\"{FHIR_RESOURCE}\"]\nclient_id = \"{client_id}\"\nclient_secret = \"{RS_CLIENT_SECRET}\"\njwks_min_refresh_secs = 1\nintrospection_without_aud = true\n{extra}"
    )
}

async fn introspect(server: &TestServer, token: &str) -> pb::IntrospectTokenResponse {
    server
        .client
        .clone()
        .introspect_token(pb::IntrospectTokenRequest {
            token: token.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

async fn read(server: &TestServer, token: &str) -> Result<pb::CheckAccessResponse, tonic::Status> {
    server
        .client
        .clone()
        .check_access(check_http(token, "GET", "Observation?code=x"))
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_access_tokens_are_verified_locally_with_discovered_keys() {
    let provider = OidcProvider::start().await;
    let server = TestServer::start(&discovered(&provider.issuer, RS_BASIC_CLIENT_ID, "")).await;
    let before = provider.introspection_count().await;
    let token = provider.jwt_token(SCOPE, Some("123")).await;
    let response = read(&server, &token).await.unwrap();
    assert_eq!(
        decision(&response),
        pb::Decision::Allow,
        "{}",
        response.message
    );
    assert_eq!(response.grants[0].compartment, "Patient/123");
    let introspected = introspect(&server, &token).await;
    assert_eq!(introspected.source, pb::TokenSource::LocalJwt as i32);
    assert_eq!(
        provider.introspection_count().await,
        before,
        "a JWT never goes to the issuer"
    );
    server.stop().await;
}

/// By default an introspection answer must name this server in `aud`, as a JWT must: an
/// authorization server serving several resource servers would otherwise vouch here for a
/// token issued for another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_introspection_answer_without_aud_is_refused_unless_configured() {
    let provider = OidcProvider::start().await;
    let strict = discovered(&provider.issuer, RS_BASIC_CLIENT_ID, "")
        .replace("introspection_without_aud = true\n", "");
    let server = TestServer::start(&strict).await;
    let token = provider.opaque_token(SCOPE, Some("123")).await;
    let response = read(&server, &token).await.unwrap();
    assert_eq!(decision(&response), pb::Decision::Deny);
    assert_eq!(reason(&response), pb::Reason::TokenWrongAudience);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opaque_tokens_are_introspected_once_then_served_from_the_cache() {
    let provider = OidcProvider::start().await;
    let server = TestServer::start(&discovered(&provider.issuer, RS_BASIC_CLIENT_ID, "")).await;
    let token = provider.opaque_token(SCOPE, Some("123")).await;
    let before = provider.introspection_count().await;
    for _ in 0..3 {
        let response = read(&server, &token).await.unwrap();
        assert_eq!(
            decision(&response),
            pb::Decision::Allow,
            "{}",
            response.message
        );
        assert_eq!(response.subject.as_ref().unwrap().patient, "123");
    }
    let introspected = introspect(&server, &token).await;
    assert!(introspected.active && introspected.cached);
    assert_eq!(
        introspected.source,
        pb::TokenSource::RemoteIntrospection as i32
    );
    assert_eq!(introspected.patient, "123");
    assert_eq!(introspected.scope, SCOPE);
    assert_eq!(
        provider.introspection_count().await - before,
        1,
        "one upstream call for four uses"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_requests_for_one_token_make_one_upstream_call() {
    let provider = OidcProvider::start().await;
    let server = TestServer::start(&discovered(&provider.issuer, RS_BASIC_CLIENT_ID, "")).await;
    let token = provider.opaque_token(SCOPE, Some("123")).await;
    let before = provider.introspection_count().await;
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let mut client = server.client.clone();
        let request = check_http(&token, "GET", "Observation?code=x");
        calls.spawn(async move {
            client
                .check_access(request)
                .await
                .map(|response| response.into_inner().decision)
        });
    }
    while let Some(result) = calls.join_next().await {
        assert_eq!(result.unwrap().unwrap(), pb::Decision::Allow as i32);
    }
    assert_eq!(provider.introspection_count().await - before, 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_secret_post_authenticates_too() {
    let provider = OidcProvider::start().await;
    let config = discovered(
        &provider.issuer,
        RS_POST_CLIENT_ID,
        "introspection_auth = \"client_secret_post\"\n",
    );
    let server = TestServer::start(&config).await;
    let token = provider.opaque_token(SCOPE, Some("123")).await;
    assert_eq!(
        decision(&read(&server, &token).await.unwrap()),
        pb::Decision::Allow
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_tokens_are_inactive_and_negatively_cached() {
    let provider = OidcProvider::start().await;
    let server = TestServer::start(&discovered(&provider.issuer, RS_BASIC_CLIENT_ID, "")).await;
    let before = provider.introspection_count().await;
    for _ in 0..3 {
        let response = read(&server, "an-opaque-token-the-issuer-never-issued")
            .await
            .unwrap();
        assert_eq!(decision(&response), pb::Decision::Deny);
        assert_eq!(reason(&response), pb::Reason::TokenInactive);
    }
    assert_eq!(
        provider.introspection_count().await - before,
        1,
        "bad tokens do not flood the issuer"
    );
    let inactive = introspect(&server, "an-opaque-token-the-issuer-never-issued").await;
    assert_eq!(inactive, pb::IntrospectTokenResponse::default());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_is_denied_within_the_cache_bound() {
    let provider = OidcProvider::start().await;
    let config = discovered(
        &provider.issuer,
        RS_BASIC_CLIENT_ID,
        "[cache]\nintrospection_max_ttl_secs = 1\n",
    );
    let server = TestServer::start(&config).await;
    let token = provider.opaque_token(SCOPE, Some("123")).await;
    assert_eq!(
        decision(&read(&server, &token).await.unwrap()),
        pb::Decision::Allow
    );
    provider.revoke(&token).await;
    // Within the bound the cached answer may still be served; past it, the revocation shows.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let response = read(&server, &token).await.unwrap();
    assert_eq!(
        reason(&response),
        pb::Reason::TokenInactive,
        "{}",
        response.message
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_outage_fails_closed_without_stalling_cached_tokens() {
    let provider = OidcProvider::start().await;
    let proxy = TcpProxy::start(provider.address()).await;
    let endpoint = provider
        .introspection_endpoint()
        .replace(&provider.issuer, &proxy.url());
    let config = format!(
        "[[issuers]]\nissuer = \"{}\"\naudiences = [\"{FHIR_RESOURCE}\"]\nintrospection_endpoint = \"{endpoint}\"\nclient_id = \"{RS_BASIC_CLIENT_ID}\"\nclient_secret = \"{RS_CLIENT_SECRET}\"\nintrospection_timeout_ms = 1000\nintrospection_without_aud = true\n",
        provider.issuer
    );
    let server = TestServer::start(&config).await;
    let seen = provider.opaque_token(SCOPE, Some("123")).await;
    let fresh = provider.opaque_token(SCOPE, Some("123")).await;
    assert_eq!(
        decision(&read(&server, &seen).await.unwrap()),
        pb::Decision::Allow
    );

    proxy.stop().await;
    let status = read(&server, &fresh)
        .await
        .expect_err("the issuer is unreachable");
    assert_eq!(status.code(), Code::Unavailable, "{}", status.message());
    assert_eq!(
        decision(&read(&server, &seen).await.unwrap()),
        pb::Decision::Allow,
        "cached tokens keep working"
    );

    proxy.resume().await;
    let response = read(&server, &fresh).await.unwrap();
    assert_eq!(
        decision(&response),
        pb::Decision::Allow,
        "recovered: {}",
        response.message
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_client_secret_is_a_clear_unavailable() {
    let provider = OidcProvider::start().await;
    let config = discovered(&provider.issuer, RS_BASIC_CLIENT_ID, "").replace(
        &format!("client_secret = \"{RS_CLIENT_SECRET}\""),
        "client_secret = \"not-the-secret\"",
    );
    let server = TestServer::start(&config).await;
    let token = provider.opaque_token(SCOPE, Some("123")).await;
    let status = read(&server, &token).await.expect_err("fail closed");
    assert_eq!(status.code(), Code::Unavailable);
    assert!(
        status.message().contains("client_secret"),
        "{}",
        status.message()
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_signing_key_is_picked_up() {
    let mut provider = OidcProvider::start().await;
    let server = TestServer::start(&discovered(&provider.issuer, RS_BASIC_CLIENT_ID, "")).await;
    let before = provider.jwt_token(SCOPE, Some("123")).await;
    assert_eq!(
        decision(&read(&server, &before).await.unwrap()),
        pb::Decision::Allow
    );

    // A restart generates a new signing key with a new kid at the same issuer.
    provider.restart().await;
    let after = provider.jwt_token(SCOPE, Some("123")).await;
    assert_ne!(jwt_kid(&before), jwt_kid(&after));
    let mut allowed = false;
    for _ in 0..30 {
        if decision(&read(&server, &after).await.unwrap()) == pb::Decision::Allow {
            allowed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(allowed, "the new key was never fetched");
    server.stop().await;
}

fn jwt_kid(token: &str) -> String {
    common::oauth::jwt_header(token)["kid"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shaped_es256_tokens_from_the_mock_server() {
    let mock = MockServer::start().await;
    let config = format!(
        "[[issuers]]\nissuer = \"{}\"\naudiences = [\"{FHIR_RESOURCE}\"]\ndiscovery = true\n",
        mock.issuer
    );
    let server = TestServer::start(&config).await;
    let claims =
        json!({"aud": FHIR_RESOURCE, "scope": SCOPE, "patient": "123", "client_id": "mock-app"});
    let token = mock.token(claims.clone(), 300).await;
    let response = read(&server, &token).await.unwrap();
    assert_eq!(
        decision(&response),
        pb::Decision::Allow,
        "{}",
        response.message
    );
    assert_eq!(response.subject.unwrap().client_id, "mock-app");

    let expired = mock.token(claims.clone(), -60).await;
    assert_eq!(
        reason(&read(&server, &expired).await.unwrap()),
        pb::Reason::TokenExpired
    );
    let other_patient = mock
        .token(
            json!({"aud": FHIR_RESOURCE, "scope": SCOPE, "patient": "456"}),
            300,
        )
        .await;
    let response = server
        .check(&other_patient, "GET", "Patient/123/Observation")
        .await;
    assert_eq!(reason(&response), pb::Reason::OutsideCompartment);
    server.stop().await;
}
