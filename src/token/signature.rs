//! The signature check of a JWS (RFC 7515 §5.2 step 8) with public keys parsed once, when
//! the key set loads, instead of on every token.
//!
//! A JWK's RSA key is its modulus and exponent; checking a signature with them means
//! building and checking the key, and its Montgomery context, first. aws-lc keeps them in a
//! parsed key: a cold RS256 token costs 6 to 7 µs less through the authenticator, a fifth of
//! it (docs/performance-log.md, "Keys parsed once"). The algorithms and their aws-lc
//! parameters are those jsonwebtoken's own aws-lc provider uses (RSA keys of 2048 to 8192
//! bits, RFC 7518 §3.3, checked at each verification), and a test holds the two to the same
//! verdicts.

use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P384_SHA384_FIXED, ED25519, ParsedPublicKey,
    RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_2048_8192_SHA384, RSA_PKCS1_2048_8192_SHA512,
    RSA_PSS_2048_8192_SHA256, RSA_PSS_2048_8192_SHA384, RSA_PSS_2048_8192_SHA512, RsaParameters,
    RsaPublicKeyComponents, VerificationAlgorithm,
};
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind};

/// Every asymmetric JWS algorithm (RFC 7518 §3.1, RFC 8037 §3.1); HMAC is never accepted.
pub const ASYMMETRIC: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Why a signature was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignatureError {
    /// The key does not verify it: forged, tampered with, or signed by another key.
    Mismatch,
    /// The signature segment is not base64url (RFC 7515 §2).
    NotBase64,
    /// The key was not parsed for this algorithm: the issuer does not allow it, or the key
    /// does not fit it (another family or curve, another declared `alg`).
    KeyCannotVerify,
}

/// One JWK's public key, parsed for each algorithm it may verify; empty (the default) for a
/// key none of the issuer's algorithms fits.
#[derive(Clone, Default)]
pub struct SignatureKey {
    parsed: Vec<(Algorithm, ParsedPublicKey)>,
}

impl SignatureKey {
    /// Parses `key` for each of `algorithms` that aws-lc accepts it for; `None` if none.
    pub fn parse(
        key: &DecodingKey,
        algorithms: impl IntoIterator<Item = Algorithm>,
    ) -> Option<Self> {
        let parsed: Vec<(Algorithm, ParsedPublicKey)> = algorithms
            .into_iter()
            .filter_map(|algorithm| Some((algorithm, parse_for(key, algorithm)?)))
            .collect();
        (!parsed.is_empty()).then_some(SignatureKey { parsed })
    }

    /// Checks `signature` (base64url, as in the token) over `signing_input` (the header and
    /// payload segments and the dot between them, RFC 7515 §5.2 step 8).
    pub fn verify(
        &self,
        algorithm: Algorithm,
        signing_input: &[u8],
        signature: &str,
    ) -> Result<(), SignatureError> {
        let key = self
            .parsed
            .iter()
            .find(|(parsed_for, _)| *parsed_for == algorithm)
            .map(|(_, key)| key)
            .ok_or(SignatureError::KeyCannotVerify)?;
        let signature = super::base64url::decode(signature).ok_or(SignatureError::NotBase64)?;
        key.verify_sig(signing_input, &signature)
            .map_err(|_| SignatureError::Mismatch)
    }
}

/// `key` as aws-lc's parsed key for `algorithm`, if it is one of that algorithm's keys.
fn parse_for(key: &DecodingKey, algorithm: Algorithm) -> Option<ParsedPublicKey> {
    match (key.kind(), verification(algorithm)?) {
        (DecodingKeyKind::RsaModulusExponent { n, e }, Verification::Rsa(parameters)) => {
            RsaPublicKeyComponents { n, e }
                .to_parsed_public_key(parameters)
                .ok()
        }
        // An EC point (0x04 ‖ x ‖ y, SEC 1 §2.3.3) or an Ed25519 key's 32 bytes, as
        // jsonwebtoken reads them from a JWK's `x` and `y`.
        (DecodingKeyKind::SecretOrDer(bytes), Verification::Other(parameters))
            if key.family() == algorithm.family() =>
        {
            ParsedPublicKey::new(parameters, bytes).ok()
        }
        _ => None,
    }
}

enum Verification {
    Rsa(&'static RsaParameters),
    Other(&'static dyn VerificationAlgorithm),
}

/// aws-lc's verification parameters for a JWS algorithm (RFC 7518 §3.3 to §3.5, RFC 8037).
fn verification(algorithm: Algorithm) -> Option<Verification> {
    Some(match algorithm {
        Algorithm::RS256 => Verification::Rsa(&RSA_PKCS1_2048_8192_SHA256),
        Algorithm::RS384 => Verification::Rsa(&RSA_PKCS1_2048_8192_SHA384),
        Algorithm::RS512 => Verification::Rsa(&RSA_PKCS1_2048_8192_SHA512),
        Algorithm::PS256 => Verification::Rsa(&RSA_PSS_2048_8192_SHA256),
        Algorithm::PS384 => Verification::Rsa(&RSA_PSS_2048_8192_SHA384),
        Algorithm::PS512 => Verification::Rsa(&RSA_PSS_2048_8192_SHA512),
        Algorithm::ES256 => Verification::Other(&ECDSA_P256_SHA256_FIXED),
        Algorithm::ES384 => Verification::Other(&ECDSA_P384_SHA384_FIXED),
        Algorithm::EdDSA => Verification::Other(&ED25519),
        // HMAC (RFC 8725 §3.2), and whatever a later jsonwebtoken adds before it is known here.
        _ => return None,
    })
}

#[cfg(test)]
mod tests;
