//! The JWT front end, before any signature check: splitting the compact form, reading the
//! protected header and reading the claims never panic on hostile tokens.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smart_authz::token::jwt::{parse_header, read_claims, split_compact};
use smart_authz::token::{BearerToken, bearer_token};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = BearerToken::from_header(text).map(|bearer| bearer.fingerprint().to_string());
    let Ok(token) = bearer_token(text) else {
        return;
    };
    let Ok(parts) = split_compact(token) else {
        return;
    };
    let _ = parse_header(parts.header);
    let _ = read_claims(parts.payload).map(|claims| claims.issuer().len());
});
