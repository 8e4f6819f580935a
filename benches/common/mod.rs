//! What the in-process benchmarks share: an issuer configured with the test RSA and EC
//! keys, a patient app's token of about 1 KB signed by either, and the runtime they run on.

#![allow(dead_code, reason = "each benchmark uses part of it")]

use std::ops::Range;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use smart_authz::config::Config;

pub const ISSUER: &str = "https://issuer.bench";
pub const AUDIENCE: &str = "https://fhir.bench/r4";
pub const RSA_PEM: &str = include_str!("../../tests/fixtures/keys/rsa-1.pem");
pub const EC_PEM: &str = include_str!("../../tests/fixtures/keys/ec-1.pem");

/// The stride through a working set: a prime, so every token of 100 or 10,000 comes in
/// turn; scattered, as a server's clients send their tokens, so that no prefetcher walks
/// the cache's entries in the order they were allocated.
pub const SCATTER: usize = 7_919;

/// The distinct tokens a working-set benchmark steps through: as many as the perf tool's
/// `check_10k_tokens` (docs/performance.md) sends, though ES256 where that scenario's
/// are RS256 (ES256 is quick to mint), with the claims of
/// [`token`]; under `cargo test` (a debug build, each benchmark run once) a hundred show
/// that it works.
pub fn working_set() -> Vec<String> {
    let size = if measuring() { 10_000 } else { 100 };
    signed_tokens(Algorithm::ES256, "ec-1", EC_PEM, 0..size)
}

/// Whether this run measures: `cargo bench` passes `--bench`, while `cargo test` runs a
/// bench target without it, as a smoke test of a debug build.
pub fn measuring() -> bool {
    std::env::args().any(|arg| arg == "--bench")
}

/// The issuer with the test keys (`rsa-1`, `ec-1`), then `extra` TOML.
pub fn config(extra: &str) -> Config {
    let keys: Vec<Value> = [
        include_str!("../../tests/fixtures/keys/rsa-1.jwk.json"),
        include_str!("../../tests/fixtures/keys/ec-1.jwk.json"),
    ]
    .iter()
    .map(|jwk| serde_json::from_str(jwk).unwrap())
    .collect();
    let jwks = json!({ "keys": keys }).to_string().replace('\'', "");
    Config::from_toml(&format!(
        "[[issuers]]\nissuer = \"{ISSUER}\"\naudiences = [\"{AUDIENCE}\"]\njwks = '{jwks}'\n{extra}"
    ))
    .unwrap()
}

/// The RS256 token of about 1 KB: a realistic SMART scope string and launch context.
pub fn token() -> String {
    signed_token(Algorithm::RS256, "rsa-1", RSA_PEM, 0)
}

/// The same claims signed with `private_pem`, `serial` in the `jti`: every serial is a
/// distinct token.
pub fn signed_token(algorithm: Algorithm, kid: &str, private_pem: &str, serial: usize) -> String {
    signed_tokens(algorithm, kid, private_pem, serial..serial + 1).remove(0)
}

/// [`signed_token`] for each of `serials`, the key parsed once.
pub fn signed_tokens(
    algorithm: Algorithm,
    kid: &str,
    private_pem: &str,
    serials: Range<usize>,
) -> Vec<String> {
    let key = match algorithm {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(private_pem.as_bytes()),
        _ => EncodingKey::from_ec_pem(private_pem.as_bytes()),
    }
    .unwrap();
    let mut header = Header::new(algorithm);
    header.kid = Some(kid.to_owned());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    serials
        .map(|serial| {
            let claims = json!({
                "iss": ISSUER, "aud": AUDIENCE, "sub": "practitioner-7", "client_id": "growth-chart",
                "iat": now, "exp": now + 3600, "jti": format!("c2f1d2b0-5b8e-4c5e-9d44-{serial:012}"),
                "scope": "openid fhirUser launch/patient offline_access patient/Patient.rs patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory patient/Condition.rs patient/MedicationRequest.rs patient/AllergyIntolerance.rs patient/Immunization.rs",
                "patient": "123", "encounter": "enc-1", "fhirUser": "https://ehr.example.org/fhir/Practitioner/7",
                "need_patient_banner": true
            });
            jsonwebtoken::encode(&header, &claims, &key).unwrap()
        })
        .collect()
}

/// Two workers, as the 2-core machine the figures come from.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}
