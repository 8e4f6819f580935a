use super::*;
use crate::token::signature::{ASYMMETRIC, SignatureError};

const RSA_1: &str = include_str!("../../../tests/fixtures/keys/rsa-1.jwk.json");
const EC_1: &str = include_str!("../../../tests/fixtures/keys/ec-1.jwk.json");
const ED_1: &str = include_str!("../../../tests/fixtures/keys/ed-1.jwk.json");

fn set_of(keys: &[&str]) -> String {
    format!("{{\"keys\":[{}]}}", keys.join(","))
}

#[test]
fn parses_rsa_ec_and_okp_keys() {
    let keys = parse_jwks(set_of(&[RSA_1, EC_1, ED_1]).as_bytes(), &ASYMMETRIC).unwrap();
    assert_eq!(keys.keys().len(), 3);
    assert!(keys.select(Some("ec-1"), Algorithm::ES256).is_ok());
    assert!(keys.select(Some("ed-1"), Algorithm::EdDSA).is_ok());
}

#[test]
fn skips_unusable_keys_but_keeps_the_rest() {
    let secret = r#"{"kty":"oct","kid":"s","k":"c2VjcmV0"}"#;
    let encryption = RSA_1
        .replace("\"sig\"", "\"enc\"")
        .replace("rsa-1", "rsa-enc");
    let keys = parse_jwks(
        set_of(&[secret, &encryption, r#"{"kty":"XYZ"}"#, RSA_1]).as_bytes(),
        &ASYMMETRIC,
    )
    .unwrap();
    assert_eq!(keys.keys().len(), 1);
    assert_eq!(keys.keys()[0].key_id.as_deref(), Some("rsa-1"));
}

#[test]
fn a_set_without_usable_keys_is_an_error() {
    let secret = r#"{"kty":"oct","kid":"s","k":"c2VjcmV0"}"#;
    assert_eq!(
        parse_jwks(set_of(&[secret]).as_bytes(), &ASYMMETRIC).unwrap_err(),
        JwksError::NoUsableKey
    );
    assert!(matches!(
        parse_jwks(b"[1,2]", &ASYMMETRIC),
        Err(JwksError::NotAJwkSet(_))
    ));
    // A member named twice, in a key or in the set, is read no single way.
    let twice = RSA_1.replacen("\"kty\"", "\"use\": \"enc\", \"kty\"", 1);
    assert!(twice.contains("\"use\": \"enc\"") && twice.contains("\"use\": \"sig\""));
    for set in [
        set_of(&[&twice]),
        format!("{{\"keys\":[],{}", &set_of(&[RSA_1])[1..]),
    ] {
        assert!(
            matches!(
                parse_jwks(set.as_bytes(), &ASYMMETRIC),
                Err(JwksError::NotAJwkSet(_))
            ),
            "{set}"
        );
    }
}

#[test]
fn a_key_with_a_declared_alg_fits_only_that_alg() {
    let keys = parse_jwks(set_of(&[RSA_1]).as_bytes(), &ASYMMETRIC).unwrap();
    assert!(keys.select(Some("rsa-1"), Algorithm::RS256).is_ok());
    assert_eq!(
        keys.select(Some("rsa-1"), Algorithm::PS256).unwrap_err(),
        KeySelectionError::KeyDoesNotFit {
            key_id: "rsa-1".into(),
            algorithm: Algorithm::PS256
        }
    );
    assert_eq!(
        keys.select(Some("rsa-1"), Algorithm::ES256).unwrap_err(),
        KeySelectionError::KeyDoesNotFit {
            key_id: "rsa-1".into(),
            algorithm: Algorithm::ES256
        }
    );
}

#[test]
fn without_kid_the_single_fitting_key_is_used() {
    let keys = parse_jwks(set_of(&[RSA_1, EC_1]).as_bytes(), &ASYMMETRIC).unwrap();
    assert_eq!(
        keys.select(None, Algorithm::ES256)
            .unwrap()
            .key_id
            .as_deref(),
        Some("ec-1")
    );
    assert_eq!(
        keys.select(None, Algorithm::EdDSA).unwrap_err(),
        KeySelectionError::NoKeyForAlgorithm(Algorithm::EdDSA)
    );
    let rsa_2 = include_str!("../../../tests/fixtures/keys/rsa-2.jwk.json");
    let two = parse_jwks(set_of(&[RSA_1, rsa_2]).as_bytes(), &ASYMMETRIC).unwrap();
    assert_eq!(
        two.select(None, Algorithm::RS256).unwrap_err(),
        KeySelectionError::AmbiguousKey {
            count: 2,
            algorithm: Algorithm::RS256
        }
    );
}

#[test]
fn an_ec_key_never_fits_a_different_curve() {
    let without_alg = EC_1.replace("\"alg\": \"ES256\",", "");
    let keys = parse_jwks(set_of(&[&without_alg]).as_bytes(), &ASYMMETRIC).unwrap();
    assert!(keys.keys()[0].key_algorithm.is_none());
    assert!(keys.select(Some("ec-1"), Algorithm::ES256).is_ok());
    assert!(keys.select(Some("ec-1"), Algorithm::ES384).is_err());
}

#[test]
fn a_point_off_its_curve_is_skipped() {
    // The same x with another y: no longer a point of P-256, which aws-lc refuses to parse.
    let off_curve = EC_1
        .replace(
            "1E0b_m3hnuAU8zgl1UP5q8X43qWZVfTtEribrMIrfiI",
            "1E0b_m3hnuAU8zgl1UP5q8X43qWZVfTtEribrMIrfiA",
        )
        .replace("ec-1", "ec-off");
    let keys = parse_jwks(set_of(&[&off_curve, EC_1]).as_bytes(), &ASYMMETRIC).unwrap();
    assert_eq!(keys.keys().len(), 1);
    assert_eq!(keys.keys()[0].key_id.as_deref(), Some("ec-1"));
}

#[test]
fn keys_are_parsed_for_the_issuers_algorithms_only() {
    let without_alg = RSA_1.replace("\"alg\": \"RS256\",", "");
    assert!(!without_alg.contains("RS256"), "{without_alg}");
    let keys = parse_jwks(
        set_of(&[&without_alg, EC_1]).as_bytes(),
        &[Algorithm::PS256, Algorithm::ES256],
    )
    .unwrap();
    let rsa = keys.select(Some("rsa-1"), Algorithm::RS256).unwrap();
    assert_eq!(
        rsa.signature_key.verify(Algorithm::RS256, b"a.b", "c2ln"),
        Err(SignatureError::KeyCannotVerify)
    );
    assert_eq!(
        rsa.signature_key.verify(Algorithm::PS256, b"a.b", "c2ln"),
        Err(SignatureError::Mismatch)
    );
    // A key no allowed algorithm fits stays known, so its `kid` is not "unknown".
    let keys = parse_jwks(set_of(&[EC_1, RSA_1]).as_bytes(), &[Algorithm::ES256]).unwrap();
    assert_eq!(keys.keys().len(), 2);
}
