//! What the in-process benchmarks share: an issuer configured with the test RSA key, and
//! a patient app's token of about 1 KB signed by it.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use smart_authz::config::Config;

pub const ISSUER: &str = "https://issuer.bench";
pub const AUDIENCE: &str = "https://fhir.bench/r4";

/// The issuer with the test key, then `extra` TOML.
pub fn config(extra: &str) -> Config {
    let key: Value =
        serde_json::from_str(include_str!("../../tests/fixtures/keys/rsa-1.jwk.json")).unwrap();
    let jwks = json!({ "keys": [key] }).to_string().replace('\'', "");
    Config::from_toml(&format!(
        "[[issuers]]\nissuer = \"{ISSUER}\"\naudiences = [\"{AUDIENCE}\"]\njwks = '{jwks}'\n{extra}"
    ))
    .unwrap()
}

/// A token of about 1 KB, as in the `token` benchmark.
pub fn token() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "practitioner-7", "client_id": "growth-chart",
        "iat": now, "exp": now + 3600, "jti": "c2f1d2b0-5b8e-4c5e-9d44-0a6d1b1e8f11",
        "scope": "openid fhirUser launch/patient offline_access patient/Patient.rs patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory patient/Condition.rs patient/MedicationRequest.rs patient/AllergyIntolerance.rs patient/Immunization.rs",
        "patient": "123", "encounter": "enc-1", "fhirUser": "https://ehr.example.org/fhir/Practitioner/7",
        "need_patient_banner": true
    });
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("rsa-1".to_owned());
    let key =
        EncodingKey::from_rsa_pem(include_bytes!("../../tests/fixtures/keys/rsa-1.pem")).unwrap();
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}
