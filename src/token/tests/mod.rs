//! Tests of the whole token path: signing with the fixture keys, verifying through the
//! `Authenticator`, the cache, and key sets served over HTTP on 127.0.0.1.

pub(crate) mod test_double;

use std::sync::Mutex;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use super::*;

const ISSUER: &str = "https://ehr.example/auth";
const AUDIENCE: &str = "https://ehr.example/fhir";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs() as i64)
}

fn public_jwk(name: &str) -> &'static str {
    match name {
        "rsa-1" => include_str!("../../../tests/fixtures/keys/rsa-1.jwk.json"),
        "rsa-2" => include_str!("../../../tests/fixtures/keys/rsa-2.jwk.json"),
        "ec-1" => include_str!("../../../tests/fixtures/keys/ec-1.jwk.json"),
        "ed-1" => include_str!("../../../tests/fixtures/keys/ed-1.jwk.json"),
        other => panic!("no fixture key {other}"),
    }
}

fn private_key(name: &str) -> EncodingKey {
    let key = match name {
        "rsa-1" => {
            EncodingKey::from_rsa_pem(include_bytes!("../../../tests/fixtures/keys/rsa-1.pem"))
        }
        "rsa-2" => {
            EncodingKey::from_rsa_pem(include_bytes!("../../../tests/fixtures/keys/rsa-2.pem"))
        }
        "ec-1" => EncodingKey::from_ec_pem(include_bytes!("../../../tests/fixtures/keys/ec-1.pem")),
        "ed-1" => EncodingKey::from_ed_pem(include_bytes!("../../../tests/fixtures/keys/ed-1.pem")),
        other => panic!("no fixture key {other}"),
    };
    key.unwrap()
}

fn jwks_of(names: &[&str]) -> String {
    let keys: Vec<&str> = names.iter().map(|name| public_jwk(name)).collect();
    format!("{{\"keys\":[{}]}}", keys.join(","))
}

fn issuer_with(keys: KeySource) -> IssuerConfig {
    IssuerConfig {
        leeway: Duration::ZERO,
        refresh_interval: Duration::from_secs(300),
        min_refresh_interval: Duration::ZERO,
        fetch_timeout: Duration::from_secs(2),
        ..IssuerConfig::with_keys(
            ISSUER,
            vec![AUDIENCE.to_owned(), "https://other.example/fhir".to_owned()],
            keys,
        )
    }
}

fn inline_issuer() -> IssuerConfig {
    issuer_with(KeySource::Inline(jwks_of(&["rsa-1", "ec-1", "ed-1"])))
}

async fn authenticator(issuers: Vec<IssuerConfig>) -> Arc<Authenticator> {
    Authenticator::new(&issuers, &CacheConfig::default(), FhirVersion::R4)
        .await
        .unwrap()
}

fn claims() -> Value {
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "exp": now() + 600,
        "iat": now(),
        "sub": "user-1",
        "client_id": "growth-chart",
        "scope": "launch/patient patient/Observation.rs",
        "patient": "Patient/123"
    })
}

fn with(claims: Value, changes: Value) -> Value {
    let (Value::Object(mut claims), Value::Object(changes)) = (claims, changes) else {
        panic!("objects expected");
    };
    for (name, value) in changes {
        if value.is_null() {
            claims.remove(&name);
        } else {
            claims.insert(name, value);
        }
    }
    Value::Object(claims)
}

fn sign_with(key_name: &str, algorithm: Algorithm, key_id: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(algorithm);
    header.kid = key_id.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &private_key(key_name)).unwrap()
}

fn sign(key_name: &str, algorithm: Algorithm, claims: &Value) -> String {
    sign_with(key_name, algorithm, Some(key_name), claims)
}

fn rs256(claims: &Value) -> String {
    sign("rsa-1", Algorithm::RS256, claims)
}

async fn refusal(authenticator: &Authenticator, token: &str) -> TokenError {
    match authenticator.authenticate(token).await {
        Err(AuthError::Rejected(error)) => error,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn is_bad_signature(error: &TokenError, fragment: &str) -> bool {
    matches!(error, TokenError::BadSignature(message) if message.contains(fragment))
}

// ---------------------------------------------------------------- valid tokens

#[tokio::test]
async fn accepts_rs256_es256_and_eddsa_tokens() {
    let authenticator = authenticator(vec![inline_issuer()]).await;
    for (key, algorithm) in [
        ("rsa-1", Algorithm::RS256),
        ("ec-1", Algorithm::ES256),
        ("ed-1", Algorithm::EdDSA),
    ] {
        let claims = claims();
        let answer = authenticator
            .authenticate(&sign(key, algorithm, &claims))
            .await
            .unwrap();
        assert!(!answer.cached, "{key}");
        let token = &answer.token;
        assert_eq!(token.source, TokenSource::LocalJwt);
        assert_eq!(token.context.patient.as_deref(), Some("123"));
        assert_eq!(token.context.client_id.as_deref(), Some("growth-chart"));
        assert_eq!(token.context.scopes.entries().len(), 2);
        assert_eq!(token.expires_at, claims["exp"].as_i64());
        assert_eq!(token.context.sub.as_deref(), Some("user-1"));
        assert_eq!(token.claims.iat, claims["iat"].as_i64());
    }
}

#[tokio::test]
async fn a_token_without_kid_uses_the_single_fitting_key() {
    let authenticator = authenticator(vec![inline_issuer()]).await;
    let token = sign_with("ec-1", Algorithm::ES256, None, &claims());
    assert!(authenticator.authenticate(&token).await.is_ok());
}

#[tokio::test]
async fn accepts_the_bearer_scheme_in_any_case() {
    let authenticator = authenticator(vec![inline_issuer()]).await;
    let token = rs256(&claims());
    for raw in [
        format!("Bearer {token}"),
        format!("  bearer   {token} "),
        format!("BEARER\t{token}"),
        format!(" {token}\n"),
    ] {
        assert!(authenticator.authenticate(&raw).await.is_ok());
    }
}

#[tokio::test]
async fn reads_scp_arrays() {
    let authenticator = authenticator(vec![inline_issuer()]).await;
    let claims = with(
        claims(),
        json!({"scope": null, "scp": ["patient/Observation.rs", "launch/patient", "openid"]}),
    );
    let answer = authenticator.authenticate(&rs256(&claims)).await.unwrap();
    assert_eq!(answer.token.context.scopes.entries().len(), 3);
}

#[tokio::test]
async fn accepts_an_audience_array_containing_this_server() {
    let authenticator = authenticator(vec![inline_issuer()]).await;
    let claims = with(claims(), json!({"aud": ["https://elsewhere", AUDIENCE]}));
    assert!(authenticator.authenticate(&rs256(&claims)).await.is_ok());
}

// ---------------------------------------------------------------- time claims

#[tokio::test]
async fn refuses_expired_and_not_yet_valid_tokens() {
    let authenticator = authenticator(vec![inline_issuer()]).await;
    let expired = with(claims(), json!({"exp": now() - 10}));
    assert_eq!(
        refusal(&authenticator, &rs256(&expired)).await,
        TokenError::Expired
    );
    let early = with(claims(), json!({"nbf": now() + 100}));
    assert_eq!(
        refusal(&authenticator, &rs256(&early)).await,
        TokenError::NotYetValid
    );
}

#[tokio::test]
async fn tolerates_clock_skew_within_the_leeway() {
    let issuer = IssuerConfig {
        leeway: Duration::from_secs(30),
        ..inline_issuer()
    };
    let authenticator = authenticator(vec![issuer]).await;
    let just_expired = with(claims(), json!({"exp": now() - 10}));
    assert!(
        authenticator
            .authenticate(&rs256(&just_expired))
            .await
            .is_ok()
    );
    let almost_valid = with(claims(), json!({"nbf": now() + 10}));
    assert!(
        authenticator
            .authenticate(&rs256(&almost_valid))
            .await
            .is_ok()
    );
    let long_expired = with(claims(), json!({"exp": now() - 60}));
    assert_eq!(
        refusal(&authenticator, &rs256(&long_expired)).await,
        TokenError::Expired
    );
    let far_future = with(claims(), json!({"nbf": now() + 60}));
    assert_eq!(
        refusal(&authenticator, &rs256(&far_future)).await,
        TokenError::NotYetValid
    );
}

#[tokio::test]
async fn a_token_without_exp_is_malformed() {
    let authenticator = authenticator(vec![inline_issuer()]).await;
    let error = refusal(
        &authenticator,
        &rs256(&with(claims(), json!({"exp": null}))),
    )
    .await;
    assert!(
        matches!(error, TokenError::Malformed(ref message) if message.contains("exp")),
        "{error:?}"
    );
    let error = refusal(
        &authenticator,
        &rs256(&with(claims(), json!({"exp": "tomorrow"}))),
    )
    .await;
    assert!(matches!(error, TokenError::Malformed(_)), "{error:?}");
}

// ---------------------------------------------------------------- iss and aud

#[tokio::test]
async fn refuses_a_token_for_another_audience() {
    let authenticator = authenticator(vec![inline_issuer()]).await;
    let claims = with(claims(), json!({"aud": "https://attacker.example/fhir"}));
    assert_eq!(
        refusal(&authenticator, &rs256(&claims)).await,
        TokenError::WrongAudience
    );
    let no_audience = with(self::claims(), json!({"aud": null}));
    assert!(matches!(
        refusal(&authenticator, &rs256(&no_audience)).await,
        TokenError::Malformed(_)
    ));
}

/// A trailing `/` spells the same FHIR base URL (SMART App Launch 2.2, `aud`), for a JWT as
/// for an introspected token and a server's own audiences.
#[tokio::test]
async fn a_trailing_slash_is_no_other_audience() {
    let authenticator = authenticator(vec![inline_issuer()]).await;
    let other_spelling = match AUDIENCE.strip_suffix('/') {
        Some(bare) => bare.to_owned(),
        None => format!("{AUDIENCE}/"),
    };
    let claims = with(claims(), json!({"aud": other_spelling}));
    assert!(authenticator.authenticate(&rs256(&claims)).await.is_ok());
}

#[tokio::test]
async fn refuses_an_unknown_issuer() {
    let authenticator = authenticator(vec![inline_issuer()]).await;
    let claims = with(claims(), json!({"iss": "https://other.example"}));
    assert_eq!(
        refusal(&authenticator, &rs256(&claims)).await,
        TokenError::WrongIssuer("https://other.example".to_owned())
    );
    let no_issuer = with(self::claims(), json!({"iss": null}));
    assert!(matches!(
        refusal(&authenticator, &rs256(&no_issuer)).await,
        TokenError::Malformed(_)
    ));
}

#[tokio::test]
async fn chooses_the_issuer_by_iss() {
    let second = IssuerConfig {
        issuer: "https://second.example".to_owned(),
        keys: Some(KeySource::Inline(jwks_of(&["rsa-2"]))),
        ..inline_issuer()
    };
    let authenticator = authenticator(vec![inline_issuer(), second]).await;
    let claims = with(claims(), json!({"iss": "https://second.example"}));
    assert!(
        authenticator
            .authenticate(&sign("rsa-2", Algorithm::RS256, &claims))
            .await
            .is_ok()
    );
    // The second issuer does not trust the first issuer's keys.
    let error = refusal(&authenticator, &rs256(&claims)).await;
    assert!(is_bad_signature(&error, "unknown key id"), "{error:?}");
}

#[tokio::test]
async fn refuses_invalid_launch_context_claims() {
    let authenticator = authenticator(vec![inline_issuer()]).await;
    let claims = with(claims(), json!({"patient": 123}));
    assert!(matches!(
        refusal(&authenticator, &rs256(&claims)).await,
        TokenError::Malformed(_)
    ));
}

// ---------------------------------------------------------------- signatures and algorithms

/// Two keys of one `kid` (a rotation that reused it): a token of either verifies, a forged
/// one under that `kid` still does not.
#[tokio::test]
async fn a_kid_named_twice_verifies_with_either_key() {
    let second = public_jwk("rsa-2").replace("\"rsa-2\"", "\"rsa-1\"");
    let keys = format!("{{\"keys\":[{},{second}]}}", public_jwk("rsa-1"));
    let authenticator = authenticator(vec![issuer_with(KeySource::Inline(keys))]).await;
    for signer in ["rsa-1", "rsa-2"] {
        let token = sign_with(signer, Algorithm::RS256, Some("rsa-1"), &claims());
        let answer = authenticator.authenticate(&token).await;
        assert!(answer.is_ok(), "{signer}: {answer:?}");
    }
    let signed = sign_with("rsa-2", Algorithm::RS256, Some("rsa-1"), &claims());
    let [header, _, signature] = signed.split('.').collect::<Vec<_>>().try_into().unwrap();
    let other = with(claims(), json!({ "patient": "Patient/456" }));
    let payload = URL_SAFE_NO_PAD.encode(other.to_string());
    let error = refusal(&authenticator, &format!("{header}.{payload}.{signature}")).await;
    assert!(matches!(error, TokenError::BadSignature(_)), "{error:?}");
}

#[tokio::test]
async fn refuses_an_unknown_kid() {
    let authenticator = authenticator(vec![inline_issuer()]).await;
    let token = sign_with("rsa-1", Algorithm::RS256, Some("rsa-9"), &claims());
    let error = refusal(&authenticator, &token).await;
    assert!(is_bad_signature(&error, "unknown key id"), "{error:?}");
}

#[tokio::test]
async fn refuses_a_key_of_another_type() {
    let authenticator = authenticator(vec![inline_issuer()]).await;
    let token = sign_with("rsa-1", Algorithm::RS256, Some("ec-1"), &claims());
    assert!(matches!(
        refusal(&authenticator, &token).await,
        TokenError::BadSignature(_)
    ));
}

#[tokio::test]
async fn refuses_a_tampered_payload() {
    let authenticator = authenticator(vec![inline_issuer()]).await;
    let token = rs256(&claims());
    let parts: Vec<&str> = token.split('.').collect();
    let forged = with(
        claims(),
        json!({"patient": "Patient/999", "scope": "patient/*.cruds"}),
    );
    let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
    let tampered = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
    let error = refusal(&authenticator, &tampered).await;
    assert!(is_bad_signature(&error, "signature"), "{error:?}");
}

#[tokio::test]
async fn refuses_alg_none() {
    let authenticator = authenticator(vec![inline_issuer()]).await;
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims()).unwrap());
    let error = refusal(&authenticator, &format!("{header}.{payload}.")).await;
    assert!(is_bad_signature(&error, "none"), "{error:?}");
}

#[tokio::test]
async fn refuses_hs256_signed_with_the_public_key() {
    // The classic key-confusion attack (RFC 8725 §2.1): HMAC with the RSA public key as secret.
    let authenticator = authenticator(vec![inline_issuer()]).await;
    let secret = EncodingKey::from_secret(include_bytes!(
        "../../../tests/fixtures/keys/rsa-1.public.pem"
    ))
    .unwrap();
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("rsa-1".to_owned());
    let token = jsonwebtoken::encode(&header, &claims(), &secret).unwrap();
    let error = refusal(&authenticator, &token).await;
    assert!(is_bad_signature(&error, "HMAC"), "{error:?}");
}

#[tokio::test]
async fn refuses_an_algorithm_outside_the_allow_list() {
    let issuer = IssuerConfig {
        algorithms: vec![Algorithm::ES256],
        ..inline_issuer()
    };
    let authenticator = authenticator(vec![issuer]).await;
    let error = refusal(&authenticator, &rs256(&claims())).await;
    assert!(is_bad_signature(&error, "not allowed"), "{error:?}");
    assert!(
        authenticator
            .authenticate(&sign("ec-1", Algorithm::ES256, &claims()))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn refuses_garbage() {
    let authenticator = authenticator(vec![inline_issuer()]).await;
    assert_eq!(refusal(&authenticator, "").await, TokenError::Missing);
    assert_eq!(
        refusal(&authenticator, "Bearer ").await,
        TokenError::Missing
    );
    assert_eq!(refusal(&authenticator, "   ").await, TokenError::Missing);
    let oversized = "a".repeat(MAX_TOKEN_BYTES + 1);
    for garbage in [
        "garbage",
        "two.parts",
        "a.b.c",
        "a.b.c.d.e",
        "....",
        "é.é.é",
        oversized.as_str(),
    ] {
        assert!(
            matches!(
                refusal(&authenticator, garbage).await,
                TokenError::Malformed(_)
            ),
            "{garbage:.20}"
        );
    }
}

#[test]
fn strips_the_bearer_scheme() {
    assert_eq!(bearer_token("Bearer abc"), Ok("abc"));
    assert_eq!(bearer_token("bearer\t abc "), Ok("abc"));
    assert_eq!(bearer_token("abc"), Ok("abc"));
    assert_eq!(bearer_token("Bearerabc"), Ok("Bearerabc"));
    assert_eq!(bearer_token("Bearer"), Err(TokenError::Missing));
    assert_eq!(bearer_token(""), Err(TokenError::Missing));
}

// ---------------------------------------------------------------- cache

#[tokio::test]
async fn the_second_call_is_a_cache_hit() {
    let authenticator = authenticator(vec![inline_issuer()]).await;
    let token = rs256(&claims());
    let first = authenticator.authenticate(&token).await.unwrap();
    let second = authenticator
        .authenticate(&format!("Bearer {token}"))
        .await
        .unwrap();
    assert!(!first.cached);
    assert!(second.cached);
    assert!(Arc::ptr_eq(&first.token, &second.token));
    assert_eq!(authenticator.verifications(), 1);
    authenticator.cache().run_pending_tasks().await;
    assert_eq!(authenticator.entry_count(), 1);
}

#[tokio::test]
async fn refusals_are_cached_for_the_negative_ttl() {
    let authenticator = authenticator(vec![inline_issuer()]).await;
    let token = rs256(&with(claims(), json!({"aud": "https://attacker.example"})));
    for _ in 0..2 {
        assert_eq!(
            refusal(&authenticator, &token).await,
            TokenError::WrongAudience
        );
    }
    assert_eq!(authenticator.verifications(), 1);
    let stats = authenticator.cache_stats();
    assert_eq!((stats.misses, stats.hits, stats.negative_hits), (1, 1, 1));
}

#[tokio::test]
async fn without_negative_ttl_refusals_are_judged_again() {
    let cache = CacheConfig {
        negative_ttl_secs: 0,
        ..CacheConfig::default()
    };
    let authenticator = Authenticator::new(&[inline_issuer()], &cache, FhirVersion::R4)
        .await
        .unwrap();
    let token = rs256(&with(claims(), json!({"aud": "https://attacker.example"})));
    for _ in 0..2 {
        assert_eq!(
            refusal(&authenticator, &token).await,
            TokenError::WrongAudience
        );
    }
    assert_eq!(authenticator.verifications(), 2);
}

#[tokio::test]
async fn a_cached_token_expires_with_its_exp() {
    let authenticator = authenticator(vec![inline_issuer()]).await;
    // Two seconds ahead: one second left too little on a loaded machine to mint and verify.
    let expires_at = now() + 2;
    let token = rs256(&with(claims(), json!({"exp": expires_at})));
    let first = authenticator.authenticate(&token).await;
    assert!(first.is_ok(), "{first:?}");
    // Wait until the second after `exp` has begun: the cached entry is gone by then, and
    // the verifier refuses `exp` on or after it.
    let refused_from =
        UNIX_EPOCH + Duration::from_secs(expires_at as u64 + 1) + Duration::from_millis(50);
    let wait = refused_from
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    assert!(wait <= Duration::from_millis(3_100));
    tokio::time::sleep(wait).await;
    assert_eq!(refusal(&authenticator, &token).await, TokenError::Expired);
    assert_eq!(authenticator.verifications(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_identical_calls_verify_once() {
    let authenticator = authenticator(vec![inline_issuer()]).await;
    let token = Arc::new(sign("ec-1", Algorithm::ES256, &claims()));
    let barrier = Arc::new(tokio::sync::Barrier::new(16));
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (authenticator, token, barrier) =
                (authenticator.clone(), token.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                authenticator.authenticate(&token).await
            })
        })
        .collect();
    let mut fresh = 0;
    for task in tasks {
        fresh += usize::from(!task.await.unwrap().unwrap().cached);
    }
    assert_eq!(authenticator.verifications(), 1);
    assert_eq!(fresh, 1);
}

// ---------------------------------------------------------------- key sources

#[tokio::test]
async fn a_bad_inline_or_file_key_set_is_a_setup_error() {
    let bad_inline = issuer_with(KeySource::Inline("{\"keys\": 5}".to_owned()));
    let error = Authenticator::new(&[bad_inline], &CacheConfig::default(), FhirVersion::R4)
        .await
        .unwrap_err();
    assert_eq!(error.key, "issuers[0].jwks");
    let no_usable_key = issuer_with(KeySource::Inline(
        r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#.to_owned(),
    ));
    let error = Authenticator::new(
        &[inline_issuer(), no_usable_key],
        &CacheConfig::default(),
        FhirVersion::R4,
    )
    .await
    .unwrap_err();
    assert_eq!(error.key, "issuers[1].jwks");
    let missing_file = issuer_with(KeySource::File("/nonexistent/jwks.json".into()));
    let error = Authenticator::new(&[missing_file], &CacheConfig::default(), FhirVersion::R4)
        .await
        .unwrap_err();
    assert_eq!(error.key, "issuers[0].jwks_file");
    assert!(error.message.contains("/nonexistent/jwks.json"));
}

#[tokio::test]
async fn a_file_key_set_is_reloaded_on_an_unknown_kid() {
    let path = std::env::temp_dir().join(format!(
        "smart-authz-jwks-{}-{}.json",
        std::process::id(),
        now()
    ));
    std::fs::write(&path, jwks_of(&["rsa-1"])).unwrap();
    let authenticator = authenticator(vec![issuer_with(KeySource::File(path.clone()))]).await;
    assert!(authenticator.authenticate(&rs256(&claims())).await.is_ok());
    std::fs::write(&path, jwks_of(&["rsa-2"])).unwrap();
    let rotated = sign("rsa-2", Algorithm::RS256, &claims());
    let result = authenticator.authenticate(&rotated).await;
    let _ = std::fs::remove_file(&path);
    assert!(result.is_ok(), "{result:?}");
}

/// A JWK Set endpoint whose answer the test changes.
struct JwksEndpoint {
    answer: Mutex<(StatusCode, String)>,
    delay: Mutex<Duration>,
    hits: AtomicUsize,
}

impl JwksEndpoint {
    fn set(&self, status: StatusCode, body: String) {
        *self.answer.lock().unwrap() = (status, body);
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

async fn answer_jwks(State(endpoint): State<Arc<JwksEndpoint>>) -> (StatusCode, String) {
    endpoint.hits.fetch_add(1, Ordering::SeqCst);
    let delay = *endpoint.delay.lock().unwrap();
    tokio::time::sleep(delay).await;
    endpoint.answer.lock().unwrap().clone()
}

/// Serves `body` at `http://127.0.0.1:<port>/jwks` until the runtime ends.
async fn serve_jwks(status: StatusCode, body: String) -> (String, Arc<JwksEndpoint>) {
    let endpoint = Arc::new(JwksEndpoint {
        answer: Mutex::new((status, body)),
        delay: Mutex::new(Duration::ZERO),
        hits: AtomicUsize::new(0),
    });
    let router = axum::Router::new()
        .route("/jwks", axum::routing::get(answer_jwks))
        .with_state(endpoint.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (format!("http://{address}/jwks"), endpoint)
}

#[tokio::test]
async fn follows_a_key_rotation_at_the_jwks_uri() {
    let (uri, endpoint) = serve_jwks(StatusCode::OK, jwks_of(&["rsa-1"])).await;
    let authenticator = authenticator(vec![issuer_with(KeySource::Uri(uri))]).await;
    assert!(authenticator.authenticate(&rs256(&claims())).await.is_ok());
    assert_eq!(endpoint.hits(), 1);

    endpoint.set(StatusCode::OK, jwks_of(&["rsa-2"]));
    let rotated = sign("rsa-2", Algorithm::RS256, &claims());
    let answer = authenticator.authenticate(&rotated).await.unwrap();
    assert!(!answer.cached);
    assert_eq!(endpoint.hits(), 2);
    // The retired key is gone: a new rsa-1 token is refused after one more (allowed) refresh.
    let old = rs256(&with(claims(), json!({"jti": "new"})));
    let error = refusal(&authenticator, &old).await;
    assert!(is_bad_signature(&error, "unknown key id"), "{error:?}");
}

/// An answer that is no key set keeps the last good keys (the issuer is down, not changing
/// its mind); a set without a usable key withdraws them all, as one without the compromised
/// key withdraws that one.
#[tokio::test]
async fn a_key_set_without_usable_keys_withdraws_the_keys() {
    let (uri, endpoint) = serve_jwks(StatusCode::OK, jwks_of(&["rsa-1"])).await;
    let authenticator = authenticator(vec![issuer_with(KeySource::Uri(uri))]).await;
    let fresh = |jti: &str| rs256(&with(claims(), json!({ "jti": jti })));
    // A token of an unknown key has the keys loaded again.
    let reload = |jti: &str| {
        sign(
            "rsa-2",
            Algorithm::RS256,
            &with(claims(), json!({ "jti": jti })),
        )
    };

    endpoint.set(StatusCode::INTERNAL_SERVER_ERROR, "{}".to_owned());
    refusal(&authenticator, &reload("r1")).await;
    endpoint.set(StatusCode::OK, "<html>maintenance</html>".to_owned());
    refusal(&authenticator, &reload("r2")).await;
    assert_eq!(endpoint.hits(), 3);
    assert!(authenticator.authenticate(&fresh("a")).await.is_ok());

    // No key, or only one this service cannot verify with (a secret under the old kid).
    let secret = r#"{"keys":[{"kty":"oct","kid":"rsa-1","k":"c2VjcmV0"}]}"#;
    for withdrawn in [r#"{"keys":[]}"#, secret] {
        endpoint.set(StatusCode::OK, withdrawn.to_owned());
        refusal(&authenticator, &reload("r3")).await;
        let error = refusal(&authenticator, &fresh("b")).await;
        assert!(is_bad_signature(&error, "unknown key id"), "{error:?}");
        // The issuer publishes a usable key again.
        endpoint.set(StatusCode::OK, jwks_of(&["rsa-1"]));
        refusal(&authenticator, &reload("r4")).await;
        assert!(authenticator.authenticate(&fresh("c")).await.is_ok());
    }
}

/// A withdrawn key takes the tokens it verified with it, cached ones included; a key added
/// beside the others leaves them cached, and so does a withdrawal from another issuer's set.
#[tokio::test]
async fn a_withdrawn_key_takes_its_cached_tokens_with_it() {
    let (uri, endpoint) = serve_jwks(StatusCode::OK, jwks_of(&["rsa-1", "rsa-2"])).await;
    let other = IssuerConfig {
        issuer: "https://other-issuer.example".to_owned(),
        ..inline_issuer()
    };
    let authenticator = authenticator(vec![issuer_with(KeySource::Uri(uri)), other]).await;
    let token = rs256(&claims());
    authenticator.authenticate(&token).await.unwrap();
    let of_other = rs256(&with(
        claims(),
        json!({ "iss": "https://other-issuer.example" }),
    ));
    authenticator.authenticate(&of_other).await.unwrap();
    // A token of a kid the set lacks has the keys loaded again.
    let reload = |jti: &str| {
        let claims = with(claims(), json!({ "jti": jti }));
        sign_with("rsa-2", Algorithm::RS256, Some("rsa-new"), &claims)
    };

    endpoint.set(StatusCode::OK, jwks_of(&["rsa-2", "rsa-1"]));
    refusal(&authenticator, &reload("r1")).await;
    assert!(authenticator.authenticate(&token).await.unwrap().cached);

    endpoint.set(StatusCode::OK, jwks_of(&["rsa-2"]));
    refusal(&authenticator, &reload("r2")).await;
    let error = refusal(&authenticator, &token).await;
    assert!(is_bad_signature(&error, "unknown key id"), "{error:?}");
    assert!(authenticator.authenticate(&of_other).await.unwrap().cached);
}

#[tokio::test]
async fn a_token_of_a_key_published_late_is_not_negatively_cached() {
    let (uri, endpoint) = serve_jwks(StatusCode::OK, jwks_of(&["rsa-1"])).await;
    let authenticator = authenticator(vec![issuer_with(KeySource::Uri(uri))]).await;
    let rotated = sign("rsa-2", Algorithm::RS256, &claims());
    let error = refusal(&authenticator, &rotated).await;
    assert!(is_bad_signature(&error, "unknown key id"), "{error:?}");
    // The issuer publishes the new key a moment later: the same token now passes.
    endpoint.set(StatusCode::OK, jwks_of(&["rsa-1", "rsa-2"]));
    assert!(authenticator.authenticate(&rotated).await.is_ok());
    assert_eq!(authenticator.verifications(), 2);
}

/// Without `kid` the one key that fits is tried; after a rotation the issuer signs with a
/// key not loaded yet, so a mismatch reloads the key set once, as an unknown `kid` does.
#[tokio::test]
async fn a_token_without_kid_signed_by_a_new_key_reloads_the_keys() {
    let (uri, endpoint) = serve_jwks(StatusCode::OK, jwks_of(&["rsa-1"])).await;
    let authenticator = authenticator(vec![issuer_with(KeySource::Uri(uri))]).await;
    let old = sign_with("rsa-1", Algorithm::RS256, None, &claims());
    assert!(authenticator.authenticate(&old).await.is_ok());
    endpoint.set(StatusCode::OK, jwks_of(&["rsa-2"]));
    let rotated = sign_with("rsa-2", Algorithm::RS256, None, &claims());
    let answer = authenticator.authenticate(&rotated).await;
    assert!(answer.is_ok(), "{answer:?}");
    assert_eq!(endpoint.hits(), 2);
    // The first key for another algorithm, too.
    endpoint.set(StatusCode::OK, jwks_of(&["rsa-2", "ec-1"]));
    let es256 = sign_with("ec-1", Algorithm::ES256, None, &claims());
    let answer = authenticator.authenticate(&es256).await;
    assert!(answer.is_ok(), "{answer:?}");
    assert_eq!(endpoint.hits(), 3);
}

/// Mid-rotation the reloaded set may hold two keys of the algorithm: a token without
/// `kid` is then refused as ambiguous, and not cached (the old key may soon go).
#[tokio::test]
async fn a_token_without_kid_during_a_rotation_is_ambiguous_for_now() {
    let (uri, endpoint) = serve_jwks(StatusCode::OK, jwks_of(&["rsa-1"])).await;
    let authenticator = authenticator(vec![issuer_with(KeySource::Uri(uri))]).await;
    endpoint.set(StatusCode::OK, jwks_of(&["rsa-1", "rsa-2"]));
    let rotated = sign_with("rsa-2", Algorithm::RS256, None, &claims());
    let error = refusal(&authenticator, &rotated).await;
    assert!(is_bad_signature(&error, "no kid"), "{error:?}");
    endpoint.set(StatusCode::OK, jwks_of(&["rsa-2"]));
    let answer = authenticator.authenticate(&rotated).await;
    assert!(answer.is_ok(), "{answer:?}");
}

#[tokio::test]
async fn a_forged_token_without_kid_is_refused_without_a_fetch_per_call() {
    let (uri, endpoint) = serve_jwks(StatusCode::OK, jwks_of(&["rsa-1"])).await;
    let issuer = IssuerConfig {
        min_refresh_interval: Duration::from_secs(60),
        ..issuer_with(KeySource::Uri(uri))
    };
    let authenticator = authenticator(vec![issuer]).await;
    let forged = sign_with("rsa-2", Algorithm::RS256, None, &claims());
    for _ in 0..3 {
        let error = refusal(&authenticator, &forged).await;
        assert!(is_bad_signature(&error, "does not match"), "{error:?}");
    }
    // Not cached (a reload may turn it around), and the key set fetched only at start.
    assert_eq!(authenticator.verifications(), 3);
    assert_eq!(endpoint.hits(), 1);
}

#[tokio::test]
async fn unknown_kids_do_not_refetch_within_the_minimum_interval() {
    let (uri, endpoint) = serve_jwks(StatusCode::OK, jwks_of(&["rsa-1"])).await;
    let issuer = IssuerConfig {
        min_refresh_interval: Duration::from_secs(60),
        ..issuer_with(KeySource::Uri(uri))
    };
    let authenticator = authenticator(vec![issuer]).await;
    endpoint.set(StatusCode::OK, jwks_of(&["rsa-2"]));
    for index in 0..3 {
        let token = sign(
            "rsa-2",
            Algorithm::RS256,
            &with(claims(), json!({"jti": index})),
        );
        let error = refusal(&authenticator, &token).await;
        assert!(is_bad_signature(&error, "unknown key id"), "{error:?}");
    }
    assert_eq!(endpoint.hits(), 1);
}

/// The issuer's allow-list is read before its keys (RFC 8725 §3.1, `IssuerVerifier::judge`):
/// a token of an algorithm it does not allow is refused without a key set fetched for it,
/// whatever `kid` it names, so a forged header cannot make the service call the issuer.
#[tokio::test]
async fn an_algorithm_outside_the_allow_list_fetches_no_keys() {
    let (uri, endpoint) = serve_jwks(StatusCode::OK, jwks_of(&["rsa-1", "ec-1"])).await;
    let issuer = IssuerConfig {
        algorithms: vec![Algorithm::ES256],
        ..issuer_with(KeySource::Uri(uri))
    };
    let authenticator = authenticator(vec![issuer]).await;
    let fetched = endpoint.hits();
    for index in 0..3 {
        let token = sign_with(
            "rsa-2",
            Algorithm::RS256,
            Some("not-published"),
            &with(claims(), json!({ "jti": index })),
        );
        let error = refusal(&authenticator, &token).await;
        assert!(is_bad_signature(&error, "not allowed"), "{error:?}");
    }
    assert_eq!(endpoint.hits(), fetched, "no key set fetched for them");
    // The keys it allows still work.
    assert!(
        authenticator
            .authenticate(&sign("ec-1", Algorithm::ES256, &claims()))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn an_unreachable_jwks_uri_makes_tokens_unavailable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let issuer = issuer_with(KeySource::Uri(format!("http://{address}/jwks")));
    let authenticator = authenticator(vec![issuer]).await;
    match authenticator.authenticate(&rs256(&claims())).await {
        Err(AuthError::Unavailable { issuer, detail }) => {
            assert_eq!(issuer, ISSUER);
            assert!(!detail.is_empty());
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_that_arrive_late_are_fetched_once_for_concurrent_calls() {
    let (uri, endpoint) = serve_jwks(StatusCode::INTERNAL_SERVER_ERROR, "down".to_owned()).await;
    let authenticator = authenticator(vec![issuer_with(KeySource::Uri(uri))]).await;
    let token = Arc::new(rs256(&claims()));
    let error = authenticator.authenticate(&token).await.unwrap_err();
    assert!(
        matches!(error, AuthError::Unavailable { ref detail, .. } if detail.contains("500")),
        "{error:?}"
    );
    assert_eq!(endpoint.hits(), 2);

    endpoint.set(StatusCode::OK, jwks_of(&["rsa-1"]));
    *endpoint.delay.lock().unwrap() = Duration::from_millis(200);
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (authenticator, token) = (authenticator.clone(), token.clone());
            tokio::spawn(async move { authenticator.authenticate(&token).await })
        })
        .collect();
    let mut fresh = 0;
    for task in tasks {
        fresh += usize::from(!task.await.unwrap().unwrap().cached);
    }
    assert_eq!(fresh, 1);
    assert_eq!(authenticator.verifications(), 2);
    assert_eq!(endpoint.hits(), 3);
}

#[tokio::test]
async fn background_reloads_run_until_the_authenticator_is_dropped() {
    let (uri, endpoint) = serve_jwks(StatusCode::OK, jwks_of(&["rsa-1"])).await;
    let issuer = IssuerConfig {
        refresh_interval: Duration::from_millis(50),
        ..issuer_with(KeySource::Uri(uri))
    };
    let authenticator = authenticator(vec![issuer]).await;
    let keys = Arc::downgrade(authenticator.key_set(ISSUER).unwrap());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(endpoint.hits() >= 3, "{}", endpoint.hits());

    drop(authenticator);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let hits = endpoint.hits();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(endpoint.hits(), hits);
    assert!(keys.upgrade().is_none());
}

#[test]
fn an_iat_ahead_beyond_the_leeway_is_refused() {
    use crate::token::jwt::check_not_ahead;
    let claims = |iat: Value| -> Map<String, Value> {
        let mut claims = Map::new();
        claims.insert("iat".to_owned(), iat);
        claims
    };
    let leeway = Duration::from_secs(30);
    let now = 1_800_000_000;
    let at = 1_800_000_000.0;
    assert_eq!(
        check_not_ahead(&claims(json!(now)), "iat", leeway, at),
        Ok(())
    );
    assert_eq!(
        check_not_ahead(&claims(json!(now + 30)), "iat", leeway, at),
        Ok(())
    );
    assert_eq!(
        check_not_ahead(&claims(json!(now + 31)), "iat", leeway, at),
        Err(TokenError::NotYetValid)
    );
    assert!(matches!(
        check_not_ahead(&claims(json!("yesterday")), "iat", leeway, at),
        Err(TokenError::Malformed(_))
    ));
    assert_eq!(check_not_ahead(&Map::new(), "iat", leeway, at), Ok(()));
    // Fractions count, on both sides.
    assert_eq!(
        check_not_ahead(&claims(json!(1_800_000_030.25)), "iat", leeway, at),
        Err(TokenError::NotYetValid)
    );
    assert_eq!(
        check_not_ahead(&claims(json!(1_800_000_030.25)), "iat", leeway, at + 0.5),
        Ok(())
    );
}

/// The clock is read with its fraction: a token issued (`iat`, `nbf`) a moment ago, in the
/// same second, is valid; a clock read to the second would put it up to a second ahead.
#[tokio::test]
async fn a_token_issued_a_moment_ago_is_valid() {
    let authenticator = authenticator(vec![inline_issuer()]).await;
    let issued = crate::token::unix_time();
    let token = rs256(&with(claims(), json!({ "iat": issued, "nbf": issued })));
    authenticator.authenticate(&token).await.unwrap();
}

/// A token not yet valid is refused, but not for the negative TTL: once its `nbf` comes,
/// it is accepted.
#[tokio::test]
async fn a_token_not_yet_valid_is_accepted_once_its_time_comes() {
    let authenticator = authenticator(vec![inline_issuer()]).await;
    let valid_from = crate::token::unix_time() + 1.0;
    let token = rs256(&with(claims(), json!({ "nbf": valid_from })));
    assert_eq!(
        refusal(&authenticator, &token).await,
        TokenError::NotYetValid
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    authenticator.authenticate(&token).await.unwrap();
}

// ---------------------------------------------------------------- what is read no single way

#[tokio::test]
async fn a_token_at_its_exp_is_expired() {
    let authenticator = authenticator(vec![inline_issuer()]).await;
    // jsonwebtoken alone accepts `exp == now`; RFC 7519 §4.1.4 says "on or after".
    let at_exp = with(claims(), json!({"exp": now()}));
    assert_eq!(
        refusal(&authenticator, &rs256(&at_exp)).await,
        TokenError::Expired
    );
    let fractional = with(claims(), json!({"exp": now() as f64 - 0.4}));
    assert_eq!(
        refusal(&authenticator, &rs256(&fractional)).await,
        TokenError::Expired
    );
}

#[tokio::test]
async fn a_sender_constrained_token_is_refused() {
    let authenticator = authenticator(vec![inline_issuer()]).await;
    for binding in [
        json!({"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}),
        json!({"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"}),
    ] {
        let bound = with(claims(), json!({ "cnf": binding }));
        let error = refusal(&authenticator, &rs256(&bound)).await;
        assert!(
            matches!(error, TokenError::Malformed(ref message) if message.contains("cnf")),
            "{error:?}"
        );
    }
}

/// Signs `payload` as written, so it may name a member twice.
fn rs256_raw(payload: &str) -> String {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","kid":"rsa-1","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(payload);
    let signing_input = format!("{header}.{payload}");
    let signature = jsonwebtoken::crypto::sign(
        signing_input.as_bytes(),
        &private_key("rsa-1"),
        Algorithm::RS256,
    )
    .unwrap();
    format!("{signing_input}.{signature}")
}

#[tokio::test]
async fn claims_naming_a_member_twice_are_refused() {
    let authenticator = authenticator(vec![inline_issuer()]).await;
    let exp = now() + 600;
    let good = format!(
        r#"{{"iss":"{ISSUER}","aud":"{AUDIENCE}","exp":{exp},"scope":"patient/Observation.rs","patient":"123"}}"#
    );
    assert!(authenticator.authenticate(&rs256_raw(&good)).await.is_ok());
    for twice in [
        r#""scope":"patient/Observation.rs","scope":"user/*.cruds""#,
        r#""patient":"123","patient":"456""#,
    ] {
        let payload = format!(r#"{{"iss":"{ISSUER}","aud":"{AUDIENCE}","exp":{exp},{twice}}}"#);
        assert!(
            matches!(
                refusal(&authenticator, &rs256_raw(&payload)).await,
                TokenError::Malformed(_)
            ),
            "{payload}"
        );
    }
}

#[tokio::test]
async fn scope_and_scp_must_agree() {
    let authenticator = authenticator(vec![inline_issuer()]).await;
    let agreeing = with(
        claims(),
        json!({"scp": ["patient/Observation.rs", "launch/patient"]}),
    );
    assert!(authenticator.authenticate(&rs256(&agreeing)).await.is_ok());
    let differing = with(claims(), json!({"scp": ["user/*.cruds"]}));
    assert!(matches!(
        refusal(&authenticator, &rs256(&differing)).await,
        TokenError::Malformed(_)
    ));
    // Compared as the scope parser reads `scope` (split at spaces only): a tab makes one
    // invalid scope here, where a server reading `scp` sees two.
    let tabbed = with(
        claims(),
        json!({"scope": "launch/patient\tpatient/Observation.rs",
               "scp": ["launch/patient", "patient/Observation.rs"]}),
    );
    assert!(matches!(
        refusal(&authenticator, &rs256(&tabbed)).await,
        TokenError::Malformed(_)
    ));
    let spaced = with(
        claims(),
        json!({"scope": "launch/patient  patient/Observation.rs",
               "scp": "patient/Observation.rs launch/patient"}),
    );
    assert!(authenticator.authenticate(&rs256(&spaced)).await.is_ok());
}

#[tokio::test]
async fn only_the_bearer_scheme_carries_a_token() {
    let authenticator = authenticator(vec![inline_issuer()]).await;
    let token = rs256(&claims());
    for header in [
        "Basic dXNlcjpwYXNz".to_owned(),
        format!("DPoP {token}"),
        format!("Bearer {token} extra"),
    ] {
        assert!(
            matches!(
                refusal(&authenticator, &header).await,
                TokenError::Malformed(ref message) if message.contains("Bearer")
            ),
            "{header}"
        );
    }
}

#[test]
fn a_token_is_one_b64token_and_any_other_byte_anywhere_is_found() {
    let token = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJodHRwczovL2lzc3VlciJ9.c2ln-_~+/".repeat(20);
    assert!(is_b64token(&token));
    assert!(is_b64token(&format!("{token}==")));
    assert!(is_b64token("0123456789abcdefABCDEF"));
    for refused in ["", "==", "a=b", "=a"] {
        assert!(!is_b64token(refused), "{refused:?}");
    }
    // Whitespace left by another scheme, the `,` of two joined headers, quotes, controls,
    // non-ASCII (whose UTF-8 bytes never look like a token byte).
    for other in [
        ' ', '\t', '\n', '\x0B', '\x0C', '\r', ',', ';', '"', ':', '\0', '\u{7F}', '\u{A0}',
        '\u{2003}',
    ] {
        for at in [0, 1, 31, 32, 33, token.len() / 2, token.len()] {
            let mut spoiled = token.clone();
            spoiled.insert(at, other);
            assert!(!is_b64token(&spoiled), "{other:?} at {at}");
        }
    }
}

#[tokio::test]
async fn two_joined_authorization_headers_are_no_token() {
    let authenticator = authenticator(vec![inline_issuer()]).await;
    let token = rs256(&claims());
    // Envoy joins repeated headers with `,`: ext_authz sees one value holding both.
    for header in [
        format!("Bearer {token},{token}"),
        format!("Bearer {token},Bearer {token}"),
    ] {
        assert!(
            matches!(
                refusal(&authenticator, &header).await,
                TokenError::Malformed(ref message) if message.contains("b64token")
            ),
            "{header}"
        );
    }
}

/// `kid`, `typ` and `alg` are the token's own text, quoted in a refusal that reaches
/// answers, headers and logs: at most 128 characters of each.
#[tokio::test]
async fn header_values_are_quoted_short() {
    let authenticator = authenticator(vec![inline_issuer()]).await;
    let long = "k".repeat(20_000);
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims()).unwrap());
    let signed = sign_with("rsa-1", Algorithm::RS256, Some(&long), &claims());
    let forged = |header: Value| {
        let header = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap());
        format!("{header}.{payload}.c2ln")
    };
    for token in [
        signed,
        forged(json!({"alg": "RS256", "kid": "rsa-1", "typ": long})),
        forged(json!({"alg": long, "kid": "rsa-1"})),
    ] {
        let error = refusal(&authenticator, &token).await;
        let message = error.to_string();
        assert!(message.contains("kkk..."), "{message:.200}");
        assert!(
            message.len() < 300,
            "{} bytes: {message:.200}",
            message.len()
        );
    }
}

#[test]
fn an_untrusted_issuer_is_named_short() {
    let long = "x".repeat(40_000);
    let TokenError::WrongIssuer(named) = TokenError::wrong_issuer(&long) else {
        panic!("WrongIssuer expected");
    };
    assert_eq!(named.chars().count(), 131);
    assert_eq!(
        TokenError::wrong_issuer("https://other.example"),
        TokenError::WrongIssuer("https://other.example".to_owned())
    );
}
