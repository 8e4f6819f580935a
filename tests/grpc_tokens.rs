//! Every way a token can fail, over real gRPC: each is a DENY with its reason, never an
//! error and never an allow. Keys come from a JWKS served over HTTP on loopback.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a panic is a failed test"
)]

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::json;
use smart_authz::grpc::pb;
use tonic::Code;

const SCOPE: &str = "patient/*.rs";

async fn reason_for(server: &TestServer, token: &str) -> pb::Reason {
    let response = server.check(token, "GET", "Observation?code=x").await;
    assert_eq!(
        decision(&response),
        pb::Decision::Deny,
        "{}",
        response.message
    );
    assert!(response.grants.is_empty() && response.subject.is_none());
    assert!(
        !response.message.contains(token) || token.is_empty(),
        "a message never quotes the token"
    );
    reason(&response)
}

fn with_claim(issuer: &TestIssuer, name: &str, value: serde_json::Value) -> String {
    let mut claims = issuer.claims(SCOPE);
    claims["patient"] = json!("123");
    claims[name] = value;
    sign(&RSA_1, &claims)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_token_failure_is_a_deny_with_its_reason() {
    let issuer = TestIssuer::start(&[&RSA_1, &EC_1, &ED_1]).await;
    let server = TestServer::for_issuer(&issuer, "").await;
    let good = issuer.patient_token(SCOPE, "123");
    let (header, rest) = good.split_once('.').unwrap();
    let (payload, signature) = rest.split_once('.').unwrap();

    let tampered_payload = {
        let mut claims = issuer.claims(SCOPE);
        claims["patient"] = json!("456");
        URL_SAFE_NO_PAD.encode(claims.to_string())
    };
    let tampered = format!("{header}.{tampered_payload}.{signature}");
    let alg_none = format!(
        "{}.{payload}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#)
    );
    let hs256_with_public_key = {
        let mut header = Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = Some("rsa-1".into());
        let mut claims = issuer.claims(SCOPE);
        claims["patient"] = json!("123");
        jsonwebtoken::encode(
            &header,
            &claims,
            &EncodingKey::from_secret(RSA_1.public_pem.as_bytes()).unwrap(),
        )
        .unwrap()
    };
    let unknown_kid = {
        let mut header = Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some("retired-key".into());
        let claims = issuer.claims(SCOPE);
        jsonwebtoken::encode(
            &header,
            &claims,
            &EncodingKey::from_rsa_pem(RSA_2.private_pem.as_bytes()).unwrap(),
        )
        .unwrap()
    };
    let other_issuer = with_claim(&issuer, "iss", json!("https://evil.example/issuer"));
    let cases = [
        (String::new(), pb::Reason::TokenMissing),
        ("Bearer ".to_owned(), pb::Reason::TokenMissing),
        ("garbage".to_owned(), pb::Reason::TokenMalformed),
        ("a.b.c".to_owned(), pb::Reason::TokenMalformed),
        (
            with_claim(&issuer, "exp", json!(now() - 3600)),
            pb::Reason::TokenExpired,
        ),
        (
            with_claim(&issuer, "nbf", json!(now() + 3600)),
            pb::Reason::TokenNotYetValid,
        ),
        (
            with_claim(&issuer, "aud", json!("https://other-fhir.example")),
            pb::Reason::TokenWrongAudience,
        ),
        (other_issuer, pb::Reason::TokenWrongIssuer),
        (unknown_kid, pb::Reason::TokenBadSignature),
        (tampered, pb::Reason::TokenBadSignature),
        (alg_none, pb::Reason::TokenBadSignature),
        (hs256_with_public_key, pb::Reason::TokenBadSignature),
        (
            with_claim(&issuer, "patient", json!(123)),
            pb::Reason::TokenMalformed,
        ),
    ];
    for (token, expected) in cases {
        assert_eq!(reason_for(&server, &token).await, expected, "{token:.40}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rs256_es256_and_eddsa_tokens_are_accepted() {
    let issuer = TestIssuer::start(&[&RSA_1, &EC_1, &ED_1]).await;
    let server = TestServer::for_issuer(&issuer, "").await;
    for key in [&RSA_1, &EC_1, &ED_1] {
        let mut claims = issuer.claims(SCOPE);
        claims["patient"] = json!("123");
        let response = server
            .check(&sign(key, &claims), "GET", "Observation?code=x")
            .await;
        assert_eq!(
            decision(&response),
            pb::Decision::Allow,
            "{}: {}",
            key.kid,
            response.message
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_is_picked_up_from_the_jwks_uri() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, "").await;
    let mut claims = issuer.claims(SCOPE);
    claims["patient"] = json!("123");
    let rotated = sign(&RSA_2, &claims);
    assert_eq!(
        reason_for(&server, &rotated).await,
        pb::Reason::TokenBadSignature
    );

    issuer.publish(&[&RSA_1, &RSA_2]);
    // The unknown kid triggers a rate-limited refresh (1 s minimum interval in the tests).
    let mut allowed = false;
    for _ in 0..30 {
        let response = server.check(&rotated, "GET", "Observation?code=x").await;
        if decision(&response) == pb::Decision::Allow {
            allowed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(allowed, "the new kid was never picked up");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_keys_are_unavailable_never_an_allow() {
    let config = unreachable_issuer_toml();
    let server = TestServer::start(&config).await;
    let claims = json!({"iss": UNREACHABLE_ISSUER, "aud": AUDIENCE, "exp": now() + 600, "scope": SCOPE, "patient": "123"});
    let status = server
        .client
        .clone()
        .check_access(check_http(&sign(&RSA_1, &claims), "GET", "Observation/1"))
        .await
        .expect_err("keys are unavailable");
    assert_eq!(status.code(), Code::Unavailable, "{}", status.message());
    server.stop().await;
}
