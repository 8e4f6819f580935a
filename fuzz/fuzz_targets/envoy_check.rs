//! The Envoy `CheckRequest` decoder: protobuf bytes as Envoy sends them, then the request
//! line, its method override headers and the forwarded body read as the face reads them.
#![no_main]

use envoy_types::ext_authz::v3::pb::CheckRequest;
use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use smart_authz::authorize::HttpLine;
use smart_authz_engine::decision::bundle_entries;
use smart_authz_engine::fhir::request_line::parse_query;
use smart_authz_engine::fhir::{Resource, parse_strict};

fuzz_target!(|data: &[u8]| {
    let Ok(check) = CheckRequest::decode(data) else {
        return;
    };
    let Some(http) = check
        .attributes
        .as_ref()
        .and_then(|attributes| attributes.request.as_ref())
        .and_then(|request| request.http.as_ref())
    else {
        return;
    };
    let line = HttpLine {
        method: &http.method,
        path: &http.path,
    };
    let _ = line.read(|name| http.headers.get(name).map(String::as_str));
    let body = if http.raw_body.is_empty() {
        http.body.as_bytes()
    } else {
        http.raw_body.as_slice()
    };
    if let Ok(form) = std::str::from_utf8(body) {
        let _ = parse_query(form.trim());
    }
    let _ = Resource::from_json_bytes(body);
    if let Ok(bundle) = parse_strict(body) {
        let _ = bundle_entries(&bundle);
    }
});
