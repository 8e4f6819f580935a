//! The token hot paths: a cache hit (token bytes in, cached context out), with one token
//! cached and with 10,000, and a cold JWT verification (RS256, ES256). Run with `cargo bench
//! --bench token`; medians in README.md.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a benchmark or example stops on a broken set-up"
)]

mod common;

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::Algorithm;
use smart_authz::fhir::FhirVersion;
use smart_authz::token::jwks::KeySet;
use smart_authz::token::jwt::{IssuerVerifier, parse_header, read_claims, split_compact};
use smart_authz::token::{Authenticator, ContextReader};

use common::SCATTER;

fn benchmarks(criterion: &mut Criterion) {
    let runtime = common::runtime();
    let config = common::config("");
    let rs256 = common::token();
    let es256 = common::signed_token(Algorithm::ES256, "ec-1", common::EC_PEM, 0);
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

    // The working set of `check_10k_tokens` (docs/performance.md): every hit reads another
    // token's entry and context, so the cost is the processor's caches, not instructions.
    // The tokens come in a scattered order (`common::SCATTER`).
    let working_set = common::working_set();
    runtime.block_on(async {
        for token in &working_set {
            authenticator.authenticate(token).await.unwrap();
        }
    });
    authenticate_in_turn(
        criterion,
        &runtime,
        "cache hit, 10,000 tokens in turn",
        &authenticator,
        (&working_set, SCATTER),
        true,
    );

    criterion.bench_function("sha-256 of the 1 KB token", |bench| {
        bench.iter(|| smart_authz::token::cache::token_key(black_box(&rs256)))
    });
    // The part of the working set's hit that is reading each token's bytes: the service
    // reads them from a request just received, hot in the caches, so the difference between
    // this and the hit above is what the cache's memory costs a server.
    let mut next = 0;
    criterion.bench_function("sha-256, 10,000 tokens in turn", |bench| {
        bench.iter(|| {
            next = (next + SCATTER) % working_set.len();
            smart_authz::token::cache::token_key(black_box(&working_set[next]))
        })
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
    let pool = common::signed_tokens(Algorithm::ES256, "ec-1", common::EC_PEM, 1..20_001);
    let rsa_pool = common::signed_tokens(Algorithm::RS256, "rsa-1", common::RSA_PEM, 1..2_001);
    for (name, pool) in [
        ("cache miss, authenticate ES256", &pool),
        ("cache miss, authenticate RS256", &rsa_pool),
    ] {
        authenticate_in_turn(criterion, &runtime, name, &cold, (pool, 1), false);
    }

    let issuer = config.issuers[0].clone();
    let keys = Arc::new(KeySet::new(&issuer).unwrap());
    runtime.block_on(keys.refresh()).unwrap();
    let verifier = IssuerVerifier::new(issuer, keys);
    let reader = ContextReader::new(FhirVersion::R4);
    let key_map = runtime.block_on(verifier.keys().current()).unwrap();
    for (algorithm, token) in [(Algorithm::RS256, &rs256), (Algorithm::ES256, &es256)] {
        let header = parse_header(split_compact(token).unwrap().header).unwrap();
        // What a miss does before the cache: the segments, the header, the claims read
        // once, the signature, the claim rules and the context.
        criterion.bench_function(&format!("cold verify {algorithm:?}"), |bench| {
            bench.to_async(&runtime).iter(|| async {
                let jws = split_compact(black_box(token)).unwrap();
                let header = parse_header(jws.header).unwrap();
                let claims = read_claims(jws.payload).unwrap();
                verifier.verify(&jws, &header, claims, &reader).await
            })
        });
        // The yardstick of the cold path (docs/performance.md): the crate's own decode of
        // the same token, the key already parsed, claims into a JSON value.
        let key = &key_map
            .select(header.key_id.as_deref(), algorithm)
            .unwrap()
            .decoding_key;
        let mut validation = jsonwebtoken::Validation::new(algorithm);
        validation.set_audience(&[common::AUDIENCE]);
        criterion.bench_function(
            &format!("raw jsonwebtoken::decode {algorithm:?}"),
            |bench| {
                bench.iter(|| {
                    jsonwebtoken::decode::<serde_json::Value>(black_box(token), key, &validation)
                        .unwrap()
                })
            },
        );
    }
}

/// Benchmarks `authenticator` on the tokens of `pool`, one per iteration, stepping through
/// them by `stride` (coprime with the pool's length, so that every token comes in turn);
/// each answer must come from the cache, or not, as `cached` says.
fn authenticate_in_turn(
    criterion: &mut Criterion,
    runtime: &tokio::runtime::Runtime,
    name: &str,
    authenticator: &Authenticator,
    (pool, stride): (&[String], usize),
    cached: bool,
) {
    let mut next = 0;
    criterion.bench_function(name, |bench| {
        bench.to_async(runtime).iter(|| {
            next = (next + stride) % pool.len();
            let token = &pool[next];
            async move {
                let authenticated = authenticator.authenticate(black_box(token)).await.unwrap();
                assert_eq!(authenticated.cached, cached);
                authenticated
            }
        })
    });
}

criterion_group!(benches, benchmarks);
criterion_main!(benches);
