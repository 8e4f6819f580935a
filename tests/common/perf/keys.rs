//! The test issuer's keys, the tokens they sign, and the raw verification that is the cold
//! path's yardstick.

use std::path::Path;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Value, json};

pub(super) const ISSUER: &str = "https://issuer.perf";
pub(super) const AUDIENCE: &str = "https://fhir.perf/r4";
pub(super) const SCOPE: &str = "openid fhirUser launch/patient patient/Patient.rs patient/Observation.rs patient/Condition.rs patient/MedicationRequest.rs patient/AllergyIntolerance.rs patient/Immunization.rs";
/// The first serial of each set of distinct tokens (each set's tokens differ from every
/// other set's): the 10,000-token working set, the cold calls of each algorithm, and the
/// floods that fill a cache.
pub(super) const WORKING_SET_FIRST: usize = 1_000_000;
pub(super) const COLD_RS256_FIRST: usize = 2_000_000;
pub(super) const COLD_ES256_FIRST: usize = 3_000_000;
pub(super) const FLOOD_FIRST: usize = 5_000_000;
/// Batches of the raw verification measurement, whose median is reported.
pub(super) const RAW_BATCHES: u32 = 9;

/// The signing keys of the test issuer.
pub struct Keys {
    rsa: EncodingKey,
    ec: EncodingKey,
    rsa_public: DecodingKey,
    ec_public: DecodingKey,
    pub(super) jwks: String,
}

impl Keys {
    pub fn load(dir: &Path) -> Keys {
        let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
        let jwk = |name: &str| String::from_utf8(read(name)).unwrap().replace('\n', "");
        Keys {
            rsa: EncodingKey::from_rsa_pem(&read("rsa-1.pem")).unwrap(),
            ec: EncodingKey::from_ec_pem(&read("ec-1.pem")).unwrap(),
            rsa_public: DecodingKey::from_rsa_pem(&read("rsa-1.public.pem")).unwrap(),
            ec_public: DecodingKey::from_ec_pem(&read("ec-1.public.pem")).unwrap(),
            jwks: format!(
                "{{\"keys\": [{}, {}]}}",
                jwk("rsa-1.jwk.json"),
                jwk("ec-1.jwk.json")
            ),
        }
    }

    /// A distinct patient-context token: RS256 (about 850 bytes) or ES256.
    pub fn mint(&self, algorithm: Algorithm, serial: usize) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let claims = json!({
            "iss": ISSUER, "aud": AUDIENCE, "sub": format!("user-{serial}"),
            "client_id": "perf", "iat": now, "exp": now + 3600, "patient": "123",
            "jti": format!("{serial}-{now}"), "scope": SCOPE,
        });
        let (key, kid) = match algorithm {
            Algorithm::ES256 => (&self.ec, "ec-1"),
            _ => (&self.rsa, "rsa-1"),
        };
        let mut header = Header::new(algorithm);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, &claims, key).unwrap()
    }

    /// µs per signature verification (with the claims decoded), over about `rounds`.
    pub(super) fn raw_verify_us(&self, algorithm: Algorithm, rounds: u32) -> f64 {
        let token = self.mint(algorithm, 0);
        let key = match algorithm {
            Algorithm::ES256 => &self.ec_public,
            _ => &self.rsa_public,
        };
        let mut validation = Validation::new(algorithm);
        validation.set_audience(&[AUDIENCE]);
        // The median of nine batches: one pause of the machine (this figure is the cold
        // path's yardstick) moves one batch, not the result.
        let batch = rounds.div_ceil(RAW_BATCHES).max(1);
        let mut per_call: Vec<f64> = (0..RAW_BATCHES)
            .map(|_| {
                let started = Instant::now();
                for _ in 0..batch {
                    jsonwebtoken::decode::<Value>(&token, key, &validation).unwrap();
                }
                started.elapsed().as_secs_f64() * 1e6 / f64::from(batch)
            })
            .collect();
        per_call.sort_by(f64::total_cmp);
        per_call[per_call.len() / 2]
    }
}

/// `count` distinct tokens from serial `first` on. Signed off the runtime's one thread: RS256
/// signing takes a millisecond each, and a runtime busy for seconds answers no HTTP/2 ping,
/// so the server would close the connections on its keepalive timeout.
pub(super) async fn mint_many(
    keys: &Arc<Keys>,
    algorithm: Algorithm,
    first: usize,
    count: usize,
) -> Arc<Vec<String>> {
    let keys = Arc::clone(keys);
    let tokens = tokio::task::spawn_blocking(move || {
        (first..first + count)
            .map(|serial| keys.mint(algorithm, serial))
            .collect()
    });
    Arc::new(tokens.await.unwrap())
}
