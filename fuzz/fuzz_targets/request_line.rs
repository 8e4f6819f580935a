//! The request-line parser, and the differential of the two request forms: whatever the
//! `http` form accepts, its structured form reads back as the same request, except that a
//! structured request carries every parameter itself (`params_in_body` is false: a POST
//! search or operation lists the parameters of its body in `params`).
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
    assert!(
        !request.params_in_body || method.eq_ignore_ascii_case("POST"),
        "{method} {path}: only a POST carries parameters in a body"
    );
    let structured = smart_authz_engine::fhir::FhirRequest {
        params_in_body: false,
        ..request
    };
    assert_eq!(
        validate_structured(&structured),
        Ok(structured.clone()),
        "{method} {path}"
    );
});
