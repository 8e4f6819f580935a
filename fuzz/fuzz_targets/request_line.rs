//! The request-line parser, and the differential of the two request forms: whatever the
//! `http` form accepts, its structured form reads back as the same request.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smart_authz_engine::fhir::{parse_request_line, validate_structured};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (method, path) = text.split_once(' ').unwrap_or(("GET", text));
    let Ok(request) = parse_request_line(method, path) else {
        return;
    };
    if matches!(
        request.interaction,
        smart_authz_engine::fhir::Interaction::Batch
            | smart_authz_engine::fhir::Interaction::Transaction
    ) {
        return;
    }
    assert_eq!(
        validate_structured(&request),
        Ok(request.clone()),
        "{method} {path}"
    );
});
