//! The RFC 7662 client and the routing and caching of introspected tokens, against the
//! in-process test double (faults real servers cannot produce easily).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use super::*;
use crate::config::{CacheConfig, IntrospectionConfig, KeySource, Secret};
use crate::fhir::FhirVersion;
use crate::token::tests::test_double::{Answer, FakeServer};
use crate::token::{AuthError, Authenticator, TokenError};

const AS: &str = "https://as.example";
const AUDIENCE: &str = "https://fhir.example/r4";
const LOCAL: &str = "https://local.example";
const PATH: &str = "/introspect";

fn now() -> i64 {
    crate::token::unix_now()
}

fn rules() -> ResponseRules {
    ResponseRules {
        issuer: AS.to_owned(),
        audiences: vec![AUDIENCE.to_owned()],
        without_aud: false,
        leeway: Duration::ZERO,
        reader: ContextReader::new(FhirVersion::R4),
    }
}

fn judge(body: &serde_json::Value) -> Result<VerifiedToken, AuthError> {
    judge_response(
        body.to_string().as_bytes(),
        &rules(),
        crate::token::unix_time(),
    )
}

fn refusal_of(body: &serde_json::Value) -> TokenError {
    match judge(body) {
        Err(AuthError::Rejected(error)) => error,
        other => panic!("expected a refusal for {body}, got {other:?}"),
    }
}

fn active(extra: serde_json::Value) -> serde_json::Value {
    let mut body = json!({
        "active": true,
        "aud": AUDIENCE,
        "scope": "launch/patient patient/Observation.rs",
        "client_id": "growth-chart",
        "sub": "user-1",
        "exp": now() + 600,
        "iat": now(),
        "patient": "Patient/123",
    });
    for (name, value) in extra.as_object().unwrap() {
        body[name] = value.clone();
    }
    body
}

// ---------------------------------------------------------------- request shape (pure)

#[test]
fn the_body_is_form_encoded_with_the_hint() {
    let body = request_body("a b+c/d=é", IntrospectionAuth::ClientSecretBasic, None, "x");
    assert_eq!(
        body,
        "token=a%20b%2Bc%2Fd%3D%C3%A9&token_type_hint=access_token"
    );
    let post = request_body(
        "t",
        IntrospectionAuth::ClientSecretPost,
        Some("rs post"),
        "s&=1",
    );
    assert_eq!(
        post,
        "token=t&token_type_hint=access_token&client_id=rs%20post&client_secret=s%26%3D1"
    );
}

#[test]
fn basic_credentials_are_form_encoded_before_base64() {
    let header =
        authorization_header(IntrospectionAuth::ClientSecretBasic, Some("rs:1"), "pa ss").unwrap();
    let encoded = header.strip_prefix("Basic ").unwrap();
    let decoded = STANDARD.decode(encoded).unwrap();
    assert_eq!(decoded, b"rs%3A1:pa%20ss");
    assert_eq!(
        authorization_header(IntrospectionAuth::Bearer, None, "tok").as_deref(),
        Some("Bearer tok")
    );
    assert_eq!(
        authorization_header(IntrospectionAuth::ClientSecretPost, Some("a"), "b"),
        None
    );
}

// ---------------------------------------------------------------- response parsing (pure)

#[test]
fn an_active_answer_becomes_a_remote_token_with_its_smart_context() {
    let token = judge(&active(json!({
        "fhirUser": "Practitioner/7",
        "encounter": "Encounter/9",
        "fhirContext": ["PractitionerRole/1", {"reference": "Group/2", "role": "x"}],
        "need_patient_banner": true,
        "intent": "reconcile-medications",
        "tenant": "t1",
        "smart_style_url": "https://ehr.example/style.json",
        "aud": [AUDIENCE, "https://other.example"],
        "token_type": "Bearer",
        "jti": "j-1",
    })))
    .unwrap();
    assert_eq!(token.source, TokenSource::RemoteIntrospection);
    assert_eq!(token.context.patient.as_deref(), Some("123"));
    assert_eq!(token.context.encounter.as_deref(), Some("9"));
    assert_eq!(token.context.fhir_user.as_deref(), Some("Practitioner/7"));
    assert_eq!(token.context.client_id.as_deref(), Some("growth-chart"));
    assert_eq!(token.context.scopes.entries().len(), 2);
    assert!(token.expires_at.is_some());
    // The issuer vouched for the token: it is the token's issuer in introspection answers.
    assert_eq!(token.issuer, AS);
}

#[test]
fn only_the_boolean_true_is_active() {
    for active in [
        json!(false),
        json!("true"),
        json!(1),
        json!(null),
        json!({}),
    ] {
        let body = json!({"active": active, "scope": "patient/*.rs"});
        assert_eq!(refusal_of(&body), TokenError::Inactive, "{body}");
    }
    assert_eq!(
        refusal_of(&json!({"scope": "patient/*.rs"})),
        TokenError::Inactive
    );
}

#[test]
fn an_exp_in_the_past_is_inactive_whatever_active_says() {
    for exp in [now() - 1, now()] {
        assert_eq!(
            refusal_of(&active(json!({ "exp": exp }))),
            TokenError::Inactive
        );
    }
    let lenient = ResponseRules {
        leeway: Duration::from_secs(30),
        ..rules()
    };
    let body = active(json!({"exp": now() - 10}));
    assert!(
        judge_response(
            body.to_string().as_bytes(),
            &lenient,
            crate::token::unix_time()
        )
        .is_ok()
    );
    // Without exp, the cache's maximum TTL bounds the token.
    let mut no_exp = active(json!({}));
    no_exp.as_object_mut().unwrap().remove("exp");
    assert_eq!(judge(&no_exp).unwrap().expires_at, None);
}

#[test]
fn garbage_is_unavailable_never_an_answer() {
    for body in [
        &b"not json"[..],
        b"[true]",
        b"\"active\"",
        b"",
        b"{\"active\": tru",
    ] {
        assert!(
            matches!(
                judge_response(body, &rules(), crate::token::unix_time()),
                Err(AuthError::Unavailable { ref issuer, ref detail })
                    if issuer == AS && detail.contains("not a JSON object")
            ),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn active_answers_are_checked_like_tokens() {
    assert_eq!(
        refusal_of(&active(json!({"iss": "https://evil.example"}))),
        TokenError::WrongIssuer("https://evil.example".into())
    );
    assert_eq!(
        refusal_of(&active(json!({"aud": "https://other.example"}))),
        TokenError::WrongAudience
    );
    assert_eq!(
        refusal_of(&active(json!({"nbf": now() + 60}))),
        TokenError::NotYetValid
    );
    assert_eq!(
        refusal_of(&active(json!({"iat": now() + 10 * 365 * 24 * 3600}))),
        TokenError::NotYetValid
    );
    for wrong in [
        json!({"exp": "soon"}),
        json!({"iat": true}),
        json!({"aud": 5}),
        json!({"scope": ["patient/*.rs"]}),
        json!({"patient": 123}),
        json!({"fhirContext": "Group/1"}),
        json!({"fhirContext": [1]}),
        json!({"need_patient_banner": "yes"}),
        json!({"intent": 1}),
        json!({"token_type": "DPoP"}),
        json!({"cnf": {"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"}}),
        json!({"scp": ["user/*.cruds"]}),
    ] {
        assert!(
            matches!(refusal_of(&active(wrong.clone())), TokenError::Malformed(_)),
            "{wrong}"
        );
    }
}

#[test]
fn an_answer_must_name_this_server_unless_configured_otherwise() {
    let mut unnamed = active(json!({}));
    unnamed.as_object_mut().unwrap().remove("aud");
    assert_eq!(refusal_of(&unnamed), TokenError::WrongAudience);
    let lenient = ResponseRules {
        without_aud: true,
        ..rules()
    };
    let body = unnamed.to_string();
    assert!(judge_response(body.as_bytes(), &lenient, crate::token::unix_time()).is_ok());
    // Named, it must still be this server, with or without a trailing `/`.
    let slash = active(json!({"aud": format!("{AUDIENCE}/")}));
    assert!(judge(&slash).is_ok());
    let other = active(json!({"aud": "https://other.example"})).to_string();
    assert!(judge_response(other.as_bytes(), &lenient, crate::token::unix_time()).is_err());
}

#[test]
fn an_answer_naming_a_member_twice_is_no_answer() {
    let body = format!(
        r#"{{"active": false, "aud": "{AUDIENCE}", "scope": "patient/*.rs", "active": true}}"#
    );
    assert!(matches!(
        judge_response(body.as_bytes(), &rules(), crate::token::unix_time()),
        Err(AuthError::Unavailable { .. })
    ));
}

// ---------------------------------------------------------------- the authenticator

fn introspecting_issuer(
    server: &FakeServer,
    auth: IntrospectionAuth,
    secret: &str,
) -> IssuerConfig {
    IssuerConfig {
        keys: None,
        introspection: Some(IntrospectionConfig {
            endpoint: Some(server.url(PATH)),
            auth,
            client_id: Some("rs".to_owned()),
            client_secret: Secret::new(secret),
            timeout: Duration::from_millis(500),
            max_concurrency: 4,
            without_aud: false,
        }),
        opaque_tokens: true,
        ..IssuerConfig::with_keys(
            AS,
            vec![AUDIENCE.to_owned()],
            KeySource::Inline(String::new()),
        )
    }
}

fn local_issuer() -> IssuerConfig {
    let jwks = format!(
        "{{\"keys\":[{}]}}",
        include_str!("../../../tests/fixtures/keys/rsa-1.jwk.json")
    );
    IssuerConfig::with_keys(LOCAL, vec![AUDIENCE.to_owned()], KeySource::Inline(jwks))
}

fn signed_jwt(issuer: &str) -> String {
    let key = EncodingKey::from_rsa_pem(include_bytes!("../../../tests/fixtures/keys/rsa-1.pem"))
        .unwrap();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("rsa-1".to_owned());
    let claims = json!({"iss": issuer, "aud": AUDIENCE, "exp": now() + 600, "scope": "patient/*.rs", "patient": "123"});
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

async fn authenticator_for(issuers: Vec<IssuerConfig>) -> Arc<Authenticator> {
    Authenticator::new(&issuers, &CacheConfig::default(), FhirVersion::R4)
        .await
        .unwrap()
}

/// An endpoint that checks this server's credentials as `auth` with client `rs` and secret
/// `s3cret`, and answers `body` when they are right, 401 `invalid_client` otherwise.
fn serve_checking_credentials(
    server: &FakeServer,
    auth: IntrospectionAuth,
    body: serde_json::Value,
) {
    server.respond(PATH, move |request, _| {
        let authorized = match auth {
            IntrospectionAuth::ClientSecretBasic => {
                request.authorization.as_deref()
                    == Some(&format!("Basic {}", STANDARD.encode("rs:s3cret")))
            }
            IntrospectionAuth::ClientSecretPost => {
                request.authorization.is_none()
                    && request.form("client_id").as_deref() == Some("rs")
                    && request.form("client_secret").as_deref() == Some("s3cret")
            }
            IntrospectionAuth::Bearer => {
                request.authorization.as_deref() == Some("Bearer s3cret")
                    && request.form("client_secret").is_none()
            }
        };
        let well_formed = request.content_type.as_deref()
            == Some("application/x-www-form-urlencoded")
            && request.form("token_type_hint").as_deref() == Some("access_token")
            && request.form("token").is_some();
        match (authorized, well_formed) {
            (true, true) => answer(StatusCode::OK, body.to_string()),
            (true, false) => answer(StatusCode::BAD_REQUEST, r#"{"error":"invalid_request"}"#),
            (false, _) => answer(StatusCode::UNAUTHORIZED, r#"{"error":"invalid_client"}"#),
        }
    });
}

fn answer(status: StatusCode, body: impl Into<String>) -> Answer {
    Answer {
        status,
        body: body.into(),
        delay: Duration::ZERO,
    }
}

fn unavailable_detail(result: Result<crate::token::Authenticated, AuthError>) -> String {
    match result {
        Err(AuthError::Unavailable { issuer, detail }) => {
            assert_eq!(issuer, AS);
            detail
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn each_client_authentication_is_sent_as_configured() {
    for auth in [
        IntrospectionAuth::ClientSecretBasic,
        IntrospectionAuth::ClientSecretPost,
        IntrospectionAuth::Bearer,
    ] {
        let server = FakeServer::start().await;
        serve_checking_credentials(&server, auth, active(json!({})));
        let authenticator =
            authenticator_for(vec![introspecting_issuer(&server, auth, "s3cret")]).await;
        let answer = authenticator
            .authenticate("Bearer opaque-token-1")
            .await
            .unwrap_or_else(|error| panic!("{auth:?}: {error}"));
        assert_eq!(answer.token.source, TokenSource::RemoteIntrospection);
        assert!(!answer.cached);
        assert_eq!(
            server.received(PATH)[0].form("token").as_deref(),
            Some("opaque-token-1")
        );
    }
}

#[tokio::test]
async fn a_wrong_client_secret_is_a_clear_unavailable() {
    for auth in [
        IntrospectionAuth::ClientSecretBasic,
        IntrospectionAuth::ClientSecretPost,
        IntrospectionAuth::Bearer,
    ] {
        let server = FakeServer::start().await;
        serve_checking_credentials(&server, auth, active(json!({})));
        let authenticator =
            authenticator_for(vec![introspecting_issuer(&server, auth, "wrong")]).await;
        for _ in 0..2 {
            let detail = unavailable_detail(authenticator.authenticate("opaque").await);
            assert!(detail.contains("client authentication"), "{detail}");
            assert!(detail.contains("HTTP 401 (invalid_client)"), "{detail}");
            assert!(detail.contains(auth.name()), "{detail}");
            assert!(!detail.contains("wrong"), "the secret leaked: {detail}");
        }
        // Unavailable is never cached: the second call asked again.
        assert_eq!(server.hits(PATH), 2);
    }
}

#[tokio::test]
async fn a_cached_introspection_is_served_without_asking_again() {
    let server = FakeServer::start().await;
    server.set(PATH, StatusCode::OK, active(json!({})).to_string());
    let authenticator = authenticator_for(vec![introspecting_issuer(
        &server,
        IntrospectionAuth::ClientSecretBasic,
        "s3cret",
    )])
    .await;
    let first = authenticator.authenticate("opaque").await.unwrap();
    let second = authenticator.authenticate("Bearer opaque").await.unwrap();
    assert!(!first.cached && second.cached);
    assert!(Arc::ptr_eq(&first.token, &second.token));
    assert_eq!(server.hits(PATH), 1);
    assert_eq!(authenticator.introspection_calls(), 1);
    let stats = authenticator.cache_stats();
    assert_eq!((stats.hits, stats.misses), (1, 1));
}

#[tokio::test]
async fn server_errors_garbage_and_a_dead_endpoint_are_unavailable() {
    let server = FakeServer::start().await;
    let issuer = introspecting_issuer(&server, IntrospectionAuth::ClientSecretBasic, "s3cret");
    let authenticator = authenticator_for(vec![issuer]).await;
    server.set(PATH, StatusCode::INTERNAL_SERVER_ERROR, "oops");
    let detail = unavailable_detail(authenticator.authenticate("opaque").await);
    assert!(detail.contains("HTTP 500"), "{detail}");
    server.set(PATH, StatusCode::OK, "<html>not json</html>");
    let detail = unavailable_detail(authenticator.authenticate("opaque").await);
    assert!(detail.contains("not a JSON object"), "{detail}");
    // Recovers as soon as the endpoint does.
    server.set(PATH, StatusCode::OK, active(json!({})).to_string());
    assert!(authenticator.authenticate("opaque").await.is_ok());

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut dead = introspecting_issuer(&server, IntrospectionAuth::ClientSecretBasic, "s3cret");
    dead.introspection.as_mut().unwrap().endpoint = Some(format!("http://127.0.0.1:{port}{PATH}"));
    let authenticator = authenticator_for(vec![dead]).await;
    let detail = unavailable_detail(authenticator.authenticate("opaque").await);
    assert!(detail.contains("cannot reach"), "{detail}");
}

#[tokio::test]
async fn a_slow_endpoint_times_out_as_unavailable() {
    let server = FakeServer::start().await;
    server.respond(PATH, |_, _| Answer {
        delay: Duration::from_secs(2),
        ..answer(StatusCode::OK, active(json!({})).to_string())
    });
    let mut issuer = introspecting_issuer(&server, IntrospectionAuth::ClientSecretBasic, "s3cret");
    issuer.introspection.as_mut().unwrap().timeout = Duration::from_millis(200);
    let authenticator = authenticator_for(vec![issuer]).await;
    let started = Instant::now();
    let detail = unavailable_detail(authenticator.authenticate("opaque").await);
    assert!(detail.contains("did not answer within 200 ms"), "{detail}");
    assert!(started.elapsed() < Duration::from_millis(1_500));
}

#[tokio::test]
async fn inactive_and_expired_answers_are_negatively_cached() {
    let server = FakeServer::start().await;
    let authenticator = authenticator_for(vec![introspecting_issuer(
        &server,
        IntrospectionAuth::ClientSecretBasic,
        "s3cret",
    )])
    .await;
    server.set(PATH, StatusCode::OK, r#"{"active": false}"#);
    for _ in 0..3 {
        assert_eq!(
            authenticator.authenticate("bad-token").await.unwrap_err(),
            AuthError::Rejected(TokenError::Inactive)
        );
    }
    server.set(
        PATH,
        StatusCode::OK,
        active(json!({"exp": now() - 5})).to_string(),
    );
    for _ in 0..3 {
        assert_eq!(
            authenticator
                .authenticate("expired-token")
                .await
                .unwrap_err(),
            AuthError::Rejected(TokenError::Inactive)
        );
    }
    assert_eq!(server.hits(PATH), 2);
    let stats = authenticator.cache_stats();
    assert_eq!(stats.negative_hits, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_identical_tokens_cause_one_upstream_call() {
    let server = FakeServer::start().await;
    server.respond(PATH, |_, _| Answer {
        delay: Duration::from_millis(200),
        ..answer(StatusCode::OK, active(json!({})).to_string())
    });
    let authenticator = authenticator_for(vec![introspecting_issuer(
        &server,
        IntrospectionAuth::ClientSecretBasic,
        "s3cret",
    )])
    .await;
    let barrier = Arc::new(tokio::sync::Barrier::new(100));
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let (authenticator, barrier) = (authenticator.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                authenticator.authenticate("same-opaque-token").await
            })
        })
        .collect();
    let mut fresh = 0;
    for task in tasks {
        fresh += usize::from(!task.await.unwrap().unwrap().cached);
    }
    assert_eq!(server.hits(PATH), 1);
    assert_eq!(fresh, 1);
    let stats = authenticator.cache_stats();
    assert_eq!((stats.hits, stats.misses), (99, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upstream_does_not_stall_cached_tokens() {
    let server = FakeServer::start().await;
    server.respond(PATH, |request, _| {
        let slow = request.form("token").as_deref() == Some("slow");
        Answer {
            delay: if slow {
                Duration::from_millis(1_500)
            } else {
                Duration::ZERO
            },
            ..answer(StatusCode::OK, active(json!({})).to_string())
        }
    });
    let mut issuer = introspecting_issuer(&server, IntrospectionAuth::ClientSecretBasic, "s3cret");
    let settings = issuer.introspection.as_mut().unwrap();
    settings.timeout = Duration::from_secs(2);
    settings.max_concurrency = 1;
    let authenticator = authenticator_for(vec![issuer]).await;
    authenticator.authenticate("cached").await.unwrap();
    let slow = {
        let authenticator = authenticator.clone();
        tokio::spawn(async move { authenticator.authenticate("slow").await })
    };
    // Wait until the slow call holds the only introspection slot.
    while server.hits(PATH) < 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let started = Instant::now();
    for _ in 0..100 {
        assert!(authenticator.authenticate("cached").await.unwrap().cached);
    }
    // Well under the upstream's 1.5 s, however loaded the machine: none waited for it.
    assert!(
        started.elapsed() < Duration::from_millis(1_000),
        "{:?}",
        started.elapsed()
    );
    assert!(!slow.is_finished());
    assert!(slow.await.unwrap().is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_semaphore_bounds_requests_in_flight() {
    let server = FakeServer::start().await;
    let arrivals = Arc::new(std::sync::Mutex::new(Vec::new()));
    let recorded = arrivals.clone();
    server.respond(PATH, move |_, _| {
        recorded.lock().unwrap().push(Instant::now());
        Answer {
            delay: Duration::from_millis(500),
            ..answer(StatusCode::OK, active(json!({})).to_string())
        }
    });
    let mut issuer = introspecting_issuer(&server, IntrospectionAuth::ClientSecretBasic, "s3cret");
    let settings = issuer.introspection.as_mut().unwrap();
    settings.timeout = Duration::from_secs(2);
    settings.max_concurrency = 2;
    let authenticator = authenticator_for(vec![issuer]).await;
    let (a, b, c, d) = tokio::join!(
        authenticator.authenticate("one"),
        authenticator.authenticate("two"),
        authenticator.authenticate("three"),
        authenticator.authenticate("four"),
    );
    assert!(a.is_ok() && b.is_ok() && c.is_ok() && d.is_ok());
    let mut arrivals = arrivals.lock().unwrap().clone();
    arrivals.sort();
    assert_eq!(arrivals.len(), 4);
    // Two waves of two: the third request only left when a slot was free again.
    assert!(arrivals[1] - arrivals[0] < Duration::from_millis(250));
    assert!(arrivals[2] - arrivals[0] >= Duration::from_millis(450));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturated_endpoint_answers_unavailable_instead_of_queueing() {
    let server = FakeServer::start().await;
    server.respond(PATH, |_, _| Answer {
        delay: Duration::from_secs(2),
        ..answer(StatusCode::OK, active(json!({})).to_string())
    });
    let mut issuer = introspecting_issuer(&server, IntrospectionAuth::ClientSecretBasic, "s3cret");
    let settings = issuer.introspection.as_mut().unwrap();
    settings.timeout = Duration::from_millis(300);
    settings.max_concurrency = 1;
    let authenticator = authenticator_for(vec![issuer]).await;
    let started = Instant::now();
    let (first, second, third) = tokio::join!(
        authenticator.authenticate("one"),
        authenticator.authenticate("two"),
        authenticator.authenticate("three"),
    );
    let details = [
        unavailable_detail(first),
        unavailable_detail(second),
        unavailable_detail(third),
    ];
    // One slot and a 300 ms bound on waiting for it: at least one caller gives up waiting.
    assert!(
        details
            .iter()
            .any(|detail| detail.contains("no free introspection slot")),
        "{details:?}"
    );
    assert!(server.hits(PATH) <= 2);
    assert!(started.elapsed() < Duration::from_millis(1_500));
}

#[tokio::test]
async fn routing_sends_each_token_to_the_right_place() {
    let server = FakeServer::start().await;
    server.set(PATH, StatusCode::OK, active(json!({})).to_string());
    let introspecting =
        introspecting_issuer(&server, IntrospectionAuth::ClientSecretBasic, "s3cret");
    let authenticator = authenticator_for(vec![local_issuer(), introspecting.clone()]).await;

    // A JWT of an issuer with keys: verified locally.
    let local = authenticator
        .authenticate(&signed_jwt(LOCAL))
        .await
        .unwrap();
    assert_eq!(local.token.source, TokenSource::LocalJwt);
    // A JWT naming an unknown issuer: refused, never sent to the opaque-token issuer.
    assert_eq!(
        authenticator
            .authenticate(&signed_jwt("https://unknown.example"))
            .await
            .unwrap_err(),
        AuthError::Rejected(TokenError::WrongIssuer("https://unknown.example".into()))
    );
    assert_eq!(server.hits(PATH), 0);
    // Anything else: the opaque-token issuer.
    for opaque in ["opaque", "a.b.c", "x.e30.y"] {
        let remote = authenticator.authenticate(opaque).await.unwrap();
        assert_eq!(remote.token.source, TokenSource::RemoteIntrospection);
    }
    assert_eq!(server.hits(PATH), 3);
    // A JWS whose `iss` cannot be read (none, an array, named twice) is no opaque token:
    // refused, never sent to the opaque-token issuer; nor is one whose header names `alg`
    // twice.
    for (header, payload) in [
        (r#"{"alg":"RS256"}"#, r#"{}"#),
        (r#"{"alg":"RS256"}"#, r#"{"iss":["a","b"]}"#),
        (r#"{"alg":"RS256"}"#, r#"{"iss":"a","iss":"b"}"#),
        (r#"{"alg":"RS256","alg":"RS256"}"#, r#"{}"#),
    ] {
        use base64::Engine;
        let encode = |text: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text);
        let token = format!("{}.{}.c2ln", encode(header), encode(payload));
        assert!(
            matches!(
                authenticator.authenticate(&token).await,
                Err(AuthError::Rejected(TokenError::Malformed(_)))
            ),
            "{header} {payload}"
        );
    }
    assert_eq!(server.hits(PATH), 3);

    // An introspection-only issuer: its JWTs go to its endpoint too.
    let only = IssuerConfig {
        introspection_only: true,
        ..introspecting
    };
    let authenticator = authenticator_for(vec![local_issuer(), only]).await;
    let remote = authenticator.authenticate(&signed_jwt(AS)).await.unwrap();
    assert_eq!(remote.token.source, TokenSource::RemoteIntrospection);
    assert_eq!(server.hits(PATH), 4);

    // Without an opaque-token issuer, an opaque token is malformed, as before.
    let authenticator = authenticator_for(vec![local_issuer()]).await;
    assert!(matches!(
        authenticator.authenticate("opaque").await,
        Err(AuthError::Rejected(TokenError::Malformed(_)))
    ));
}
