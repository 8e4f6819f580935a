//! The token cache's byte bound is honest: what its weigher counts for an entry is what the
//! entry really holds on the heap. A counting allocator measures the bytes a realistic
//! verified token costs once cached (its claims, its parsed context, the cache's own
//! bookkeeping, and malloc's overhead per allocation), and the weigher's
//! figure must stay within a quarter of it. An operator sizes a pod's memory by
//! `[cache] max_bytes`; a weigher that counts half of an entry doubles the real bound.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a panic is a failed test"
)]

use std::alloc::System;
use std::sync::Arc;

use serde_json::{Value, json};
use smart_authz::config::CacheConfig;
use smart_authz::fhir::FhirVersion;
use smart_authz::smart::TokenContext;
use smart_authz::token::cache::{CachedVerdict, TokenCache, token_key};
use smart_authz::token::{IntrospectionClaims, TokenError, TokenSource, VerifiedToken};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static ALLOCATOR: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// What glibc's malloc spends beyond the bytes asked for, on average per allocation: an
/// 8-byte header and the rounding to 16.
const MALLOC_OVERHEAD: f64 = 16.0;

/// Far enough in the future that no entry expires during the test (2100-01-01).
const NOW: i64 = 4_102_444_800 - 3600;

/// The claims of a patient app's access token, as the performance report mints them.
fn verified(serial: usize, scope: &str) -> VerifiedToken {
    let claims = json!({
        "iss": "https://issuer.perf", "aud": "https://fhir.perf/r4", "sub": format!("user-{serial}"),
        "client_id": "perf", "iat": NOW, "exp": NOW + 3600, "patient": "123",
        "jti": format!("{serial}-{NOW}"),
        "scope": scope,
    });
    let context = TokenContext::from_claims(&claims, FhirVersion::R4).unwrap();
    let Value::Object(claims) = claims else {
        unreachable!()
    };
    VerifiedToken {
        context,
        claims: IntrospectionClaims::read(&claims),
        expires_at: Some(NOW + 3600),
        source: TokenSource::LocalJwt,
        issuer: "https://issuer.perf".to_owned(),
        audiences: vec!["https://fhir.perf/r4".to_owned()],
        keys: None,
    }
}

/// A patient app's scopes, as the performance report's tokens carry them.
const APP_SCOPES: &str = "openid fhirUser launch/patient patient/Patient.rs patient/Observation.rs patient/Condition.rs patient/MedicationRequest.rs patient/AllergyIntolerance.rs patient/Immunization.rs";

/// Bytes per cached entry: (measured by the allocator, counted by the weigher). With
/// `share`, the tokens carry one parsed set of scopes between them, as the service's
/// verification gives them.
async fn per_entry(scope: &str, share: bool) -> (f64, f64) {
    const ENTRIES: usize = 5_000;
    let cache = TokenCache::new(&CacheConfig {
        max_bytes: 1 << 30,
        ..CacheConfig::default()
    });
    cache.run_pending_tasks().await;
    let region = Region::new(ALLOCATOR);
    let mut shared: Option<Arc<smart_authz::smart::ScopeSet>> = None;
    for serial in 0..ENTRIES {
        let mut token = verified(serial, scope);
        if share {
            let scopes = shared.get_or_insert_with(|| Arc::clone(&token.context.scopes));
            token.context.scopes = Arc::clone(scopes);
        }
        let token = Arc::new(token);
        let key = token_key(&format!("token-{serial}"));
        let answer = cache
            .get_or_verify(&key, || async {
                Ok::<_, TokenError>(CachedVerdict::Active(Arc::clone(&token)))
            })
            .await;
        assert!(answer.is_ok());
    }
    cache.run_pending_tasks().await;
    drop(shared);
    let change = region.change();
    // A reallocation is counted in both totals already (its growth or its shrinking).
    let live_bytes = change.bytes_allocated as f64 - change.bytes_deallocated as f64;
    let live_allocations = change.allocations as f64 - change.deallocations as f64;
    let measured = (live_bytes + live_allocations * MALLOC_OVERHEAD) / ENTRIES as f64;
    let stats = cache.stats();
    assert_eq!(stats.entry_count, ENTRIES as u64);
    (measured, stats.weighted_size as f64 / ENTRIES as f64)
}

/// One test in this binary: the allocator's counters are the whole process's.
#[tokio::test(flavor = "current_thread")]
async fn the_weigher_counts_what_an_entry_really_costs() {
    let granular: Vec<String> = (0..40)
        .map(|index| format!("patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|c{index}"))
        .collect();
    for (scope, share) in [
        (APP_SCOPES.to_owned(), false),
        (granular.join(" "), false),
        (APP_SCOPES.to_owned(), true),
    ] {
        let (measured, weighed) = per_entry(&scope, share).await;
        let ratio = weighed / measured;
        eprintln!(
            "per entry: measured {measured:.0} bytes, weighed {weighed:.0} bytes ({ratio:.2})"
        );
        assert!(
            (0.8..=1.25).contains(&ratio),
            "the weigher counts {weighed:.0} bytes for an entry that holds {measured:.0} ({} scopes, shared: {share})",
            scope.split(' ').count()
        );
    }
}
