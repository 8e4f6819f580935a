//! The Bundle reader: strict JSON, then the entries of a batch or transaction, decided with
//! a patient-scoped token. An allowed Bundle has entries, and every one is allowed.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use smart_authz_engine::decision::{Engine, Policy, bundle_entries};
use smart_authz_engine::fhir::{FhirVersion, parse_strict};
use smart_authz_engine::smart::TokenContext;

static TOKEN: LazyLock<TokenContext> = LazyLock::new(|| {
    let claims = serde_json::json!({
        "scope": "patient/*.cruds system/Observation.rs",
        "patient": "123"
    });
    TokenContext::from_claims(&claims, FhirVersion::R4).unwrap_or_default()
});
static ENGINE: LazyLock<Engine> =
    LazyLock::new(|| Engine::new(Policy::for_version(FhirVersion::R4)));

fuzz_target!(|data: &[u8]| {
    let Ok(bundle) = parse_strict(data) else {
        return;
    };
    let Ok((kind, entries)) = bundle_entries(&bundle) else {
        return;
    };
    let decision = ENGINE.decide_bundle(&TOKEN, kind, &entries);
    if decision.is_allowed() {
        assert!(!decision.entries.is_empty());
        assert!(decision.entries.iter().all(|entry| entry.is_allowed()));
    }
});
