//! The scope grammar: any `scope` claim parses without panicking, grants nothing through a
//! scope holding a character RFC 6749 forbids, and never puts one in the header string.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smart_authz_engine::fhir::FhirVersion;
use smart_authz_engine::smart::{ScopeSet, TokenContext};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for version in FhirVersion::ALL {
        let set = ScopeSet::parse(text, version);
        let header = set.to_scope_string();
        assert!(!header.chars().any(char::is_control), "{header:?}");
        for (scope, _) in set.resource_scopes() {
            assert!(scope.chars().all(|c| c.is_ascii_graphic()), "{scope:?}");
        }
        let claims = serde_json::json!({ "scope": text, "patient": "123" });
        let _ = TokenContext::from_claims(&claims, version);
    }
});
