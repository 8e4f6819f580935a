//! Parsed keys give jsonwebtoken's verdict on every signature, good or bad, for every
//! algorithm: the signature check moved out of jsonwebtoken, not its rules.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair,
    KeyPair, RSA_PKCS1_SHA256, RSA_PKCS1_SHA384, RSA_PKCS1_SHA512, RSA_PSS_SHA256, RSA_PSS_SHA384,
    RSA_PSS_SHA512, RsaEncoding, RsaKeyPair,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use std::sync::{Arc, OnceLock};

use super::*;

/// Signs a message, returning the signature's bytes.
type Sign = Box<dyn Fn(&[u8]) -> Vec<u8>>;

/// A key pair of one algorithm: its public half as a JWK gives it, and a signer.
struct Signer {
    public: DecodingKey,
    sign: Sign,
}

fn encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// RSA key generation is slow (a second or more in a debug build): two keys serve every RSA
/// algorithm.
fn rsa_pair(which: usize) -> Arc<RsaKeyPair> {
    static PAIRS: OnceLock<[Arc<RsaKeyPair>; 2]> = OnceLock::new();
    let pairs = PAIRS.get_or_init(|| {
        [(); 2].map(|()| Arc::new(RsaKeyPair::generate(KeySize::Rsa2048).unwrap()))
    });
    Arc::clone(&pairs[which])
}

fn rsa(encoding: &'static dyn RsaEncoding, which: usize) -> Signer {
    let pair = rsa_pair(which);
    let components = PublicKeyComponents::<Vec<u8>>::from(pair.public_key());
    let public = DecodingKey::from_rsa_raw_components(&components.n, &components.e);
    Signer {
        public,
        sign: Box::new(move |message| {
            let mut signature = vec![0; pair.public_modulus_len()];
            pair.sign(encoding, &SystemRandom::new(), message, &mut signature)
                .unwrap();
            signature
        }),
    }
}

fn ecdsa(algorithm: &'static aws_lc_rs::signature::EcdsaSigningAlgorithm) -> Signer {
    let pair = EcdsaKeyPair::generate(algorithm).unwrap();
    let point = pair.public_key().as_ref().to_vec();
    let half = (point.len() - 1) / 2;
    let public =
        DecodingKey::from_ec_components(&encode(&point[1..=half]), &encode(&point[1 + half..]))
            .unwrap();
    Signer {
        public,
        sign: Box::new(move |message| {
            pair.sign(&SystemRandom::new(), message)
                .unwrap()
                .as_ref()
                .to_vec()
        }),
    }
}

fn ed25519() -> Signer {
    let pair = Ed25519KeyPair::generate().unwrap();
    let public = DecodingKey::from_ed_components(&encode(pair.public_key().as_ref())).unwrap();
    Signer {
        public,
        sign: Box::new(move |message| pair.sign(message).as_ref().to_vec()),
    }
}

/// A signer of `algorithm`; `which` picks one of two keys.
fn signer(algorithm: Algorithm, which: usize) -> Signer {
    match algorithm {
        Algorithm::RS256 => rsa(&RSA_PKCS1_SHA256, which),
        Algorithm::RS384 => rsa(&RSA_PKCS1_SHA384, which),
        Algorithm::RS512 => rsa(&RSA_PKCS1_SHA512, which),
        Algorithm::PS256 => rsa(&RSA_PSS_SHA256, which),
        Algorithm::PS384 => rsa(&RSA_PSS_SHA384, which),
        Algorithm::PS512 => rsa(&RSA_PSS_SHA512, which),
        Algorithm::ES256 => ecdsa(&ECDSA_P256_SHA256_FIXED_SIGNING),
        Algorithm::ES384 => ecdsa(&ECDSA_P384_SHA384_FIXED_SIGNING),
        Algorithm::EdDSA => ed25519(),
        other => panic!("{other:?} is not asymmetric"),
    }
}

#[test]
fn parsed_keys_give_jsonwebtokens_verdicts() {
    let message = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJodHRwczovL2lzc3VlciJ9";
    let tampered = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJodHRwczovL2lzc3VlcyJ9";
    for algorithm in ASYMMETRIC {
        let ours = signer(algorithm, 0);
        let other = signer(algorithm, 1);
        let key = SignatureKey::parse(&ours.public, [algorithm]).unwrap();
        let good = (ours.sign)(message.as_bytes());
        let mut flipped = good.clone();
        flipped[good.len() / 2] ^= 1;
        let cases = [
            (message, encode(&good), true),
            (tampered, encode(&good), false),
            (message, encode(&flipped), false),
            (message, encode(&good[..good.len() - 1]), false),
            (message, encode(&(other.sign)(message.as_bytes())), false),
            (message, String::new(), false),
        ];
        for (index, (signed, signature, valid)) in cases.iter().enumerate() {
            let theirs =
                jsonwebtoken::crypto::verify(signature, signed.as_bytes(), &ours.public, algorithm)
                    .unwrap_or(false);
            let verdict = key.verify(algorithm, signed.as_bytes(), signature);
            assert_eq!(theirs, *valid, "{algorithm:?} case {index}: jsonwebtoken");
            assert_eq!(
                verdict.is_ok(),
                *valid,
                "{algorithm:?} case {index}: {verdict:?}"
            );
            if !valid && !signature.is_empty() {
                assert_eq!(
                    verdict,
                    Err(SignatureError::Mismatch),
                    "{algorithm:?} {index}"
                );
            }
        }
        assert_eq!(
            key.verify(algorithm, message.as_bytes(), "not base64!"),
            Err(SignatureError::NotBase64)
        );
    }
}

#[test]
fn a_key_verifies_only_the_algorithms_it_was_parsed_for() {
    let rs256 = signer(Algorithm::RS256, 0);
    let key = SignatureKey::parse(&rs256.public, [Algorithm::RS256]).unwrap();
    let signature = encode(&(rs256.sign)(b"a.b"));
    assert!(key.verify(Algorithm::RS256, b"a.b", &signature).is_ok());
    for elsewhere in [Algorithm::PS256, Algorithm::RS384, Algorithm::ES256] {
        assert_eq!(
            key.verify(elsewhere, b"a.b", &signature),
            Err(SignatureError::KeyCannotVerify),
            "{elsewhere:?}"
        );
    }
    // One RSA key may serve several RSA algorithms, each with its own padding and digest.
    let both = SignatureKey::parse(&rs256.public, [Algorithm::RS256, Algorithm::PS256]).unwrap();
    assert!(both.verify(Algorithm::RS256, b"a.b", &signature).is_ok());
    assert_eq!(
        both.verify(Algorithm::PS256, b"a.b", &signature),
        Err(SignatureError::Mismatch)
    );
}

#[test]
fn keys_of_another_family_or_curve_are_not_parsed() {
    let p256 = signer(Algorithm::ES256, 0).public;
    assert!(SignatureKey::parse(&p256, [Algorithm::ES384]).is_none());
    assert!(SignatureKey::parse(&p256, [Algorithm::RS256, Algorithm::EdDSA]).is_none());
    let rsa = signer(Algorithm::RS256, 0).public;
    assert!(SignatureKey::parse(&rsa, [Algorithm::ES256, Algorithm::HS256]).is_none());
    // 32 bytes, which aws-lc would take as an Ed25519 key: the family decides first.
    let secret = DecodingKey::from_secret(&[7; 32]).unwrap();
    assert!(ParsedPublicKey::new(&ED25519, [7; 32]).is_ok());
    assert!(SignatureKey::parse(&secret, ASYMMETRIC).is_none());
}

/// RFC 7518 §3.3: "A key of size 2048 bits or larger MUST be used". A 1024-bit key made with
/// `openssl genrsa 1024`, and its RS256 signature of `a.b` (`openssl dgst -sha256 -sign`).
#[test]
fn an_rsa_key_under_2048_bits_verifies_nothing() {
    const N: &str = "x8MvJVkWeynw3MYvpreCRz3yc7hhYhDm07azvIFKT9vhkCGIem7H3p7XpJ4-hO8nbm-JaBETIjBYO9AoUSMym8KOrvR-ZrsySPVGX-Pn2x2whN-8D0sdDUi4l4QFwDUxSw14EZDT9XjhOCd-qAViE-SQ_hJwG2CA7LECCflShG0";
    const SIGNATURE: &str = "o-tezGiLL3Pzh7H_Ck3CZ9IJxdcrgZ2K4gURcMpXQ7ePhF4j5rxCb2KTmkz1o0cQ-cV6Yyz82uuUn3xCsYrErbzcB_orUVnlbGP3xWWlroEZBYoRUJW8U1dd-dmpfgiYXhQl_a6UAhfO3cHakAJdX0aGhdEDj2znuKRrRHCfudk";
    let n = URL_SAFE_NO_PAD.decode(N).unwrap();
    let signature = URL_SAFE_NO_PAD.decode(SIGNATURE).unwrap();
    // The signature is good: the legacy parameters accept it.
    RsaPublicKeyComponents {
        n: n.as_slice(),
        e: [1, 0, 1].as_slice(),
    }
    .verify(
        &aws_lc_rs::signature::RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY,
        b"a.b",
        &signature,
    )
    .unwrap();
    let small = DecodingKey::from_rsa_raw_components(&n, &[1, 0, 1]);
    let verdict = SignatureKey::parse(&small, [Algorithm::RS256])
        .map(|key| key.verify(Algorithm::RS256, b"a.b", SIGNATURE));
    assert!(
        matches!(verdict, None | Some(Err(SignatureError::Mismatch))),
        "{verdict:?}"
    );
    assert!(
        !jsonwebtoken::crypto::verify(SIGNATURE, b"a.b", &small, Algorithm::RS256).unwrap_or(false)
    );
}
