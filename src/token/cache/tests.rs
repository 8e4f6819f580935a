use serde_json::Value;

use super::*;

const MAX: Duration = Duration::from_secs(300);

#[test]
fn keeps_until_exp_capped_by_max_ttl() {
    let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
    assert_eq!(
        time_to_keep(Some(1_000_002), now, MAX),
        Duration::from_secs(2)
    );
    assert_eq!(time_to_keep(Some(1_000_000 + 10_000), now, MAX), MAX);
    assert_eq!(time_to_keep(Some(999_990), now, MAX), Duration::ZERO);
    assert_eq!(time_to_keep(Some(-1), now, MAX), Duration::ZERO);
    assert_eq!(time_to_keep(None, now, MAX), MAX);
    let between_seconds = now + Duration::from_millis(400);
    assert_eq!(
        time_to_keep(Some(1_000_001), between_seconds, MAX),
        Duration::from_millis(600)
    );
}

fn token(source: TokenSource, expires_at: Option<i64>, scope: &str) -> Arc<VerifiedToken> {
    let claims = serde_json::json!({"scope": scope, "sub": "user-1"});
    let context = TokenContext::from_claims(&claims, crate::fhir::FhirVersion::R4).unwrap();
    let Value::Object(claims) = claims else {
        unreachable!()
    };
    Arc::new(VerifiedToken {
        context,
        claims: crate::token::IntrospectionClaims::read(&claims),
        expires_at,
        source,
        issuer: "https://issuer.example".to_owned(),
        audiences: Vec::new(),
        keys: None,
    })
}

#[test]
fn each_path_has_its_maximum_ttl_and_refusals_the_negative_ttl() {
    let expiry = TokenExpiry {
        local_max_ttl: Duration::from_secs(300),
        introspection_max_ttl: Duration::from_secs(60),
        negative_ttl: Duration::from_secs(10),
    };
    let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
    let later = Some(1_000_000 + 3_600);
    let local = CachedVerdict::Active(token(TokenSource::LocalJwt, later, "a"));
    let remote = CachedVerdict::Active(token(TokenSource::RemoteIntrospection, later, "a"));
    assert_eq!(expiry.time_to_live(&local, now), Duration::from_secs(300));
    assert_eq!(expiry.time_to_live(&remote, now), Duration::from_secs(60));
    let soon = CachedVerdict::Active(token(
        TokenSource::RemoteIntrospection,
        Some(1_000_005),
        "a",
    ));
    assert_eq!(expiry.time_to_live(&soon, now), Duration::from_secs(5));
    let refused = CachedVerdict::Refused(TokenError::Inactive);
    assert_eq!(expiry.time_to_live(&refused, now), Duration::from_secs(10));
}

#[test]
fn the_weight_grows_with_the_claims() {
    let small = verdict_weight(&CachedVerdict::Active(token(
        TokenSource::LocalJwt,
        None,
        "patient/*.rs",
    )));
    let scopes: Vec<String> = (0..100)
        .map(|index| format!("patient/Observation.rs?category=c{index}"))
        .collect();
    let scopes = scopes.join(" ");
    let large = verdict_weight(&CachedVerdict::Active(token(
        TokenSource::LocalJwt,
        None,
        &scopes,
    )));
    assert!(small > ENTRY_OVERHEAD as u32);
    // The scope text is held in the claims and in the parsed context.
    assert!(large >= small + 3 * scopes.len() as u32, "{small} {large}");
    let refused = verdict_weight(&CachedVerdict::Refused(TokenError::Malformed(
        "x".repeat(1000),
    )));
    assert!(refused > 1000 && refused < small + 1000);
}

#[tokio::test]
async fn the_cache_is_bounded_by_bytes_and_counts_evictions() {
    let config = CacheConfig {
        max_bytes: 64 * 1024,
        ..CacheConfig::default()
    };
    let cache = TokenCache::new(&config);
    let scopes: Vec<String> = (0..40)
        .map(|index| format!("patient/Observation.rs?category=c{index}"))
        .collect();
    let scopes = scopes.join(" ");
    let entry = token(TokenSource::LocalJwt, None, &scopes);
    let weight = u64::from(verdict_weight(&CachedVerdict::Active(entry.clone())));
    for index in 0..200 {
        let verdict = CachedVerdict::Active(entry.clone());
        let key = token_key(&format!("token-{index}"));
        let answer = cache
            .get_or_verify(&key, || async { Ok::<_, TokenError>(verdict.clone()) })
            .await;
        assert!(answer.is_ok());
    }
    cache.run_pending_tasks().await;
    let stats = cache.stats();
    assert!(stats.weighted_size <= config.max_bytes, "{stats:?}");
    assert!(stats.entry_count <= config.max_bytes / weight, "{stats:?}");
    assert!(stats.evictions > 0, "{stats:?}");
    assert_eq!(stats.misses, 200);
}

#[tokio::test]
async fn a_refusal_is_cached_and_an_error_is_not() {
    let cache = TokenCache::new(&CacheConfig::default());
    let key = token_key("bad");
    for _ in 0..2 {
        let answer = cache
            .get_or_verify(&key, || async {
                Ok::<_, TokenError>(CachedVerdict::Refused(TokenError::Inactive))
            })
            .await;
        assert_eq!(answer.unwrap_err(), TokenError::Inactive);
    }
    let flaky = token_key("flaky");
    for _ in 0..2 {
        let answer = cache
            .get_or_verify(&flaky, || async {
                Err::<CachedVerdict, _>(TokenError::Missing)
            })
            .await;
        assert!(answer.is_err());
    }
    cache.run_pending_tasks().await;
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.negative_hits, stats.misses), (1, 1, 3));
    assert_eq!(stats.entry_count, 1);
}

#[test]
fn keys_are_hashes_not_tokens() {
    let key = token_key("abc");
    assert_eq!(token_fingerprint(&key), "ba7816bf");
    assert_ne!(token_key("abd"), key);
}

/// A key set read from a file the test rewrites (`rsa-1` and `ec-1` at first), and a
/// verified token recording the keys it was verified with now.
struct RotatingKeys {
    file: tempfile::NamedTempFile,
    keys: Arc<crate::token::jwks::KeySet>,
}

impl RotatingKeys {
    const RSA_1: &str = include_str!("../../../tests/fixtures/keys/rsa-1.jwk.json");
    const EC_1: &str = include_str!("../../../tests/fixtures/keys/ec-1.jwk.json");

    async fn new() -> Self {
        use crate::config::{IssuerConfig, KeySource};
        let file = tempfile::NamedTempFile::new().unwrap();
        let source = KeySource::File(file.path().to_owned());
        let issuer = IssuerConfig::with_keys("https://issuer.example", Vec::new(), source);
        let keys = Arc::new(crate::token::jwks::KeySet::new(&issuer).unwrap());
        let rotating = RotatingKeys { file, keys };
        rotating.publish(&[Self::RSA_1, Self::EC_1]).await;
        rotating
    }

    /// The issuer publishes `keys`, and the set is reloaded.
    async fn publish(&self, keys: &[&str]) {
        std::fs::write(
            self.file.path(),
            format!("{{\"keys\":[{}]}}", keys.join(",")),
        )
        .unwrap();
        self.keys.refresh().await.unwrap();
    }

    fn verified(&self) -> Result<CachedVerdict, TokenError> {
        let mut verified = Arc::unwrap_or_clone(token(TokenSource::LocalJwt, None, "a"));
        verified.keys = Some(self.keys.seen());
        Ok(CachedVerdict::Active(Arc::new(verified)))
    }
}

/// A token whose verification was under way when a key of its issuer's set went is not
/// served from the cache after it, and the next verification's verdict is.
#[tokio::test]
async fn a_token_verified_with_a_withdrawn_key_is_judged_again() {
    let keys = RotatingKeys::new().await;
    let cache = TokenCache::new(&CacheConfig::default());
    let key = token_key("a");

    let (_, cached) = cache
        .get_or_verify(&key, || async {
            let verdict = keys.verified();
            // The issuer withdraws a key while the token is being verified.
            keys.publish(&[RotatingKeys::EC_1]).await;
            verdict
        })
        .await
        .unwrap();
    assert!(!cached);
    let (_, cached) = cache
        .get_or_verify(&key, || async { keys.verified() })
        .await
        .unwrap();
    assert!(!cached, "served from the cache after its key was withdrawn");
    let (_, cached) = cache
        .get_or_verify(&key, || async { keys.verified() })
        .await
        .unwrap();
    assert!(cached);

    // A key added beside the others withdraws none.
    keys.publish(&[RotatingKeys::EC_1, RotatingKeys::RSA_1])
        .await;
    let (_, cached) = cache
        .get_or_verify(&key, || async { keys.verified() })
        .await
        .unwrap();
    assert!(cached);
}

/// A call that finds another call's verification under way, one that read its issuer's
/// keys before a key of them was withdrawn, does not take its answer: it verifies again.
#[tokio::test]
async fn a_verification_under_way_at_a_withdrawal_is_not_shared_after_it() {
    use std::sync::atomic::AtomicUsize;

    let keys = Arc::new(RotatingKeys::new().await);
    let cache = TokenCache::new(&CacheConfig::default());
    let key = token_key("a");

    // The first call reads the keys, then waits.
    let (started, has_started) = tokio::sync::oneshot::channel::<()>();
    let release = Arc::new(tokio::sync::Notify::new());
    let started = std::sync::Mutex::new(Some(started));
    let first = {
        let (cache, keys, release) = (cache.clone(), Arc::clone(&keys), Arc::clone(&release));
        tokio::spawn(async move {
            cache
                .get_or_verify(&key, || async {
                    let verdict = keys.verified();
                    if let Some(started) = started.lock().unwrap().take() {
                        let _ = started.send(());
                    }
                    release.notified().await;
                    verdict
                })
                .await
        })
    };
    has_started.await.unwrap();
    keys.publish(&[RotatingKeys::EC_1]).await;

    // A second call for the token joins the first's verification, which then completes.
    let polled = Arc::new(AtomicUsize::new(0));
    let second = {
        let (cache, keys, polled) = (cache.clone(), Arc::clone(&keys), Arc::clone(&polled));
        tokio::spawn(async move {
            cache
                .get_or_verify(&key, || async {
                    polled.fetch_add(1, Ordering::SeqCst);
                    keys.verified()
                })
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    release.notify_one();
    let (_, cached) = first.await.unwrap().unwrap();
    assert!(!cached, "the first call's own verification");
    let (token, cached) = second.await.unwrap().unwrap();
    assert!(!cached, "verified again");
    assert_eq!(polled.load(Ordering::SeqCst), 1);
    assert!(token.keys_still_held());
}
