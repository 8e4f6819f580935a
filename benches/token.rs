//! The token hot paths: a cache hit (token bytes in, cached context out) and a cold JWT
//! verification (RS256, ES256). Run with `cargo bench --bench token`; medians in README.md.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a benchmark or example stops on a broken set-up"
)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use smart_authz::config::Config;
use smart_authz::fhir::FhirVersion;
use smart_authz::token::jwks::KeySet;
use smart_authz::token::jwt::{IssuerVerifier, parse_header, split_compact};
use smart_authz::token::{Authenticator, ContextReader};

const ISSUER: &str = "https://issuer.bench";
const AUDIENCE: &str = "https://fhir.bench/r4";

fn config() -> Config {
    let keys: Vec<Value> = [
        include_str!("../tests/fixtures/keys/rsa-1.jwk.json"),
        include_str!("../tests/fixtures/keys/ec-1.jwk.json"),
    ]
    .iter()
    .map(|jwk| serde_json::from_str(jwk).unwrap())
    .collect();
    let jwks = json!({ "keys": keys }).to_string().replace('\'', "");
    Config::from_toml(&format!(
        "[[issuers]]\nissuer = \"{ISSUER}\"\naudiences = [\"{AUDIENCE}\"]\njwks = '{jwks}'\n"
    ))
    .unwrap()
}

/// A token of about 1 KB: a realistic SMART scope string and launch context.
fn token(algorithm: Algorithm, kid: &str, private_pem: &str) -> String {
    token_numbered(algorithm, kid, private_pem, 0)
}

/// [`token`] with `serial` in its `jti`, so every serial is a distinct token.
fn token_numbered(algorithm: Algorithm, kid: &str, private_pem: &str, serial: usize) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "practitioner-7", "client_id": "growth-chart",
        "iat": now, "exp": now + 3600, "jti": format!("c2f1d2b0-5b8e-4c5e-9d44-{serial:012}"),
        "scope": "openid fhirUser launch/patient offline_access patient/Patient.rs patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory patient/Condition.rs patient/MedicationRequest.rs patient/AllergyIntolerance.rs patient/Immunization.rs",
        "patient": "123", "encounter": "enc-1", "fhirUser": "https://ehr.example.org/fhir/Practitioner/7",
        "need_patient_banner": true
    });
    let mut header = Header::new(algorithm);
    header.kid = Some(kid.to_owned());
    let key = match algorithm {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(private_pem.as_bytes()),
        _ => EncodingKey::from_ec_pem(private_pem.as_bytes()),
    }
    .unwrap();
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

fn benchmarks(criterion: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let config = config();
    let rs256 = token(
        Algorithm::RS256,
        "rsa-1",
        include_str!("../tests/fixtures/keys/rsa-1.pem"),
    );
    let es256 = token(
        Algorithm::ES256,
        "ec-1",
        include_str!("../tests/fixtures/keys/ec-1.pem"),
    );
    assert!(
        (900..1_300).contains(&rs256.len()),
        "the RS256 token is {} bytes",
        rs256.len()
    );

    let authenticator: Arc<Authenticator> = runtime.block_on(async {
        Authenticator::new(&config.issuers, &config.cache, FhirVersion::R4)
            .await
            .unwrap()
    });
    runtime
        .block_on(authenticator.authenticate(&rs256))
        .unwrap();
    criterion.bench_function("cache hit (1 KB token)", |bench| {
        bench.to_async(&runtime).iter(|| async {
            let authenticated = authenticator.authenticate(black_box(&rs256)).await.unwrap();
            assert!(authenticated.cached);
            authenticated
        })
    });

    criterion.bench_function("sha-256 of the 1 KB token", |bench| {
        bench.iter(|| smart_authz::token::cache::token_key(black_box(&rs256)))
    });

    // Every call a token the cache has not seen (the cache holds a few entries, the pool is
    // far larger): verification, claims, scopes and the insertion, without the transport.
    let mut small = config.clone();
    small.cache.max_bytes = 4096;
    let cold: Arc<Authenticator> = runtime.block_on(async {
        Authenticator::new(&small.issuers, &small.cache, FhirVersion::R4)
            .await
            .unwrap()
    });
    let pool: Vec<String> = (0..20_000)
        .map(|serial| {
            token_numbered(
                Algorithm::ES256,
                "ec-1",
                include_str!("../tests/fixtures/keys/ec-1.pem"),
                serial + 1,
            )
        })
        .collect();
    let mut next = 0;
    criterion.bench_function("cache miss, authenticate ES256", |bench| {
        bench.to_async(&runtime).iter(|| {
            next = (next + 1) % pool.len();
            let token = &pool[next];
            let cold = &cold;
            async move {
                let authenticated = cold.authenticate(black_box(token)).await.unwrap();
                assert!(!authenticated.cached);
                authenticated
            }
        })
    });

    let issuer = config.issuers[0].clone();
    let keys = Arc::new(KeySet::new(&issuer).unwrap());
    runtime.block_on(keys.refresh()).unwrap();
    let verifier = IssuerVerifier::new(issuer, keys);
    let reader = ContextReader::new(FhirVersion::R4);
    for (name, token) in [("cold verify RS256", &rs256), ("cold verify ES256", &es256)] {
        let header = parse_header(split_compact(token).unwrap().header).unwrap();
        criterion.bench_function(name, |bench| {
            bench
                .to_async(&runtime)
                .iter(|| verifier.verify(black_box(token), &header, &reader))
        });
    }
}

criterion_group!(benches, benchmarks);
criterion_main!(benches);
