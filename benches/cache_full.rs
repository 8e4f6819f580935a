//! What a new token costs once the token cache is full, in process: RS256 misses into the
//! shipped cache (64 MiB) filled past its bound, beside the same misses into a cache of 4 KB
//! (three tokens, every entry hot in the processor's caches) and the raw
//! `jsonwebtoken::decode` of the same tokens, the cold path's yardstick. Under a steady
//! stream of new tokens a server's cache is full, and each new token evicts another or is
//! refused by the cache's admission: this is the in-process half of the perf tool's
//! `--paired-cold` (docs/performance-log.md, "A new token into a full cache").
//!
//! Rounds of three batches, one per case, their order turning from round to round, so the
//! machine's drift falls on each alike; a line per round, then the medians.
//! `cargo bench --bench cache_full` (about a minute, most of it minting and filling the
//! cache); run by `cargo test` it is a smoke run (a 64 KiB cache, a few tokens).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a benchmark or example stops on a broken set-up"
)]

mod common;
#[path = "../tests/common/median.rs"]
mod median;

use std::sync::Arc;
use std::time::Instant;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use smart_authz::config::CacheConfig;
use smart_authz::fhir::FhirVersion;
use smart_authz::token::Authenticator;

use self::median::median;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The sizes of one run: the measured one, or the smoke run of `cargo test`.
struct Plan {
    cache_bytes: u64,
    rounds: usize,
    per_batch: usize,
}

/// What the cache's weigher counts for one of these tokens, in bytes (its `weighted_size`
/// over its entries, once full).
const ENTRY_WEIGHT: u64 = 1_174;

fn main() {
    let plan = if common::measuring() {
        Plan {
            cache_bytes: CacheConfig::default().max_bytes,
            rounds: 16,
            per_batch: 2_000,
        }
    } else {
        Plan {
            cache_bytes: 64 * 1024,
            rounds: 2,
            per_batch: 20,
        }
    };
    // The server's runtime on a pod of one CPU.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let authenticator = |max_bytes: u64| {
        let mut config = common::config("");
        config.cache.max_bytes = max_bytes;
        runtime
            .block_on(Authenticator::new(
                &config.issuers,
                &config.cache,
                FhirVersion::R4,
            ))
            .unwrap()
    };
    let full = authenticator(plan.cache_bytes);
    let near_empty = authenticator(4096);

    let started = Instant::now();
    // Half as many again as the cache holds.
    let fill_count = usize::try_from(plan.cache_bytes * 3 / 2 / ENTRY_WEIGHT).unwrap();
    let fill = common::signed_tokens(Algorithm::ES256, "ec-1", common::EC_PEM, 1..fill_count + 1);
    let fresh = common::signed_tokens(
        Algorithm::RS256,
        "rsa-1",
        common::RSA_PEM,
        1..plan.rounds * plan.per_batch + 1,
    );
    runtime.block_on(async {
        for token in &fill {
            full.authenticate(token).await.unwrap();
        }
    });
    let filled = full.cache_stats();
    assert!(filled.evictions > 0, "the cache is full: {filled:?}");
    eprintln!(
        "{} tokens minted and {} sent in {:.1} s: {} cached weighing {} KiB, {} evicted or refused",
        fill.len() + fresh.len(),
        fill.len(),
        started.elapsed().as_secs_f64(),
        filled.entry_count,
        filled.weighted_size / 1024,
        filled.evictions
    );
    drop(fill);

    let jwk: jsonwebtoken::jwk::Jwk =
        serde_json::from_str(include_str!("../tests/fixtures/keys/rsa-1.jwk.json")).unwrap();
    let raw_key = DecodingKey::from_jwk(&jwk).unwrap();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[common::AUDIENCE]);

    let miss = |authenticator: &Arc<Authenticator>, tokens: &[String]| {
        runtime.block_on(async {
            for token in tokens {
                let authenticated = authenticator.authenticate(token).await.unwrap();
                assert!(!authenticated.cached, "every token is new to the cache");
            }
        });
    };
    let raw = |tokens: &[String]| {
        for token in tokens {
            jsonwebtoken::decode::<serde_json::Value>(token, &raw_key, &validation).unwrap();
        }
    };

    const CASES: [&str; 3] = ["full cache", "4 KB cache", "raw decode"];
    let mut per_case: [Vec<f64>; 3] = Default::default();
    println!("µs per RS256 token, {} new tokens a batch", plan.per_batch);
    println!(
        "{:>5} {:>12} {:>12} {:>12}",
        "round", CASES[0], CASES[1], CASES[2]
    );
    for (round, tokens) in fresh.chunks(plan.per_batch).enumerate() {
        let mut line = [0.0; 3];
        for step in 0..3 {
            let case = (round + step) % 3;
            let started = Instant::now();
            match case {
                0 => miss(&full, tokens),
                1 => miss(&near_empty, tokens),
                _ => raw(tokens),
            }
            let micros = started.elapsed().as_secs_f64() * 1e6 / tokens.len() as f64;
            line[case] = micros;
            per_case[case].push(micros);
        }
        println!(
            "{round:>5} {:>12.1} {:>12.1} {:>12.1}",
            line[0], line[1], line[2]
        );
    }
    let [full_us, near_empty_us, raw_us] = per_case.map(|mut values| median(&mut values));
    println!(
        "{:>5} {full_us:>12.1} {near_empty_us:>12.1} {raw_us:>12.1}",
        "median"
    );
    println!(
        "over the raw decode: full cache {:.2}x, 4 KB cache {:.2}x",
        full_us / raw_us,
        near_empty_us / raw_us
    );
}
