use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::*;

fn encoded(json: &str) -> String {
    URL_SAFE_NO_PAD.encode(json)
}

#[test]
fn splits_exactly_three_parts() {
    assert!(split_compact("a.b.c").is_ok());
    assert!(split_compact("a.b.").is_ok());
    for bad in [
        "",
        "a",
        "a.b",
        "a.b.c.d",
        "a.b.c.d.e",
        ".b.c",
        "a..c",
        "..",
        "...",
        "é.b",
    ] {
        assert!(
            matches!(split_compact(bad), Err(TokenError::Malformed(_))),
            "{bad}"
        );
    }
    // Segments long enough that the dots fall in the searcher's wide steps; a third dot is
    // refused right after the signature or 100 bytes further on.
    let (header, payload, signature) = ("h".repeat(37), "pé".repeat(300), "s".repeat(342));
    let token = format!("{header}.{payload}.{signature}");
    let parts = split_compact(&token).unwrap();
    assert_eq!(
        (parts.header, parts.payload, parts.signature),
        (header.as_str(), payload.as_str(), signature.as_str())
    );
    assert_eq!(
        parts.signing_input,
        &token[..header.len() + 1 + payload.len()]
    );
    assert!(split_compact(&format!("{token}.")).is_err());
    assert!(split_compact(&format!("{token}{}.", "x".repeat(100))).is_err());
}

#[test]
fn refuses_none_hmac_and_unknown_algorithms() {
    for alg in ["none", "NONE", "HS256", "HS512", "XS999"] {
        let header = encoded(&format!(r#"{{"alg":"{alg}"}}"#));
        assert!(
            matches!(parse_header(&header), Err(TokenError::BadSignature(_))),
            "{alg}"
        );
    }
    assert!(matches!(
        parse_header(&encoded("{}")),
        Err(TokenError::Malformed(_))
    ));
    assert!(matches!(parse_header("!!"), Err(TokenError::Malformed(_))));
}

#[test]
fn reads_alg_kid_and_accepts_access_token_types() {
    for typ in ["JWT", "jwt", "at+jwt", "application/at+JWT"] {
        let header = encoded(&format!(r#"{{"alg":"ES256","kid":"k1","typ":"{typ}"}}"#));
        assert_eq!(
            parse_header(&header),
            Ok(JwsHeader {
                algorithm: Algorithm::ES256,
                key_id: Some("k1".into())
            })
        );
    }
    let logout = encoded(r#"{"alg":"RS256","typ":"logout+jwt"}"#);
    assert!(matches!(
        parse_header(&logout),
        Err(TokenError::Malformed(_))
    ));
}

#[test]
fn reads_claims_with_a_string_iss_named_once() {
    let claims = read_claims(&encoded(r#"{"iss":"https://a","x":[1]}"#)).unwrap();
    assert_eq!(claims.issuer(), "https://a");
    for bad in [
        r#"{"sub":"x"}"#,
        r#"{"iss":null}"#,
        r#"{"iss":7}"#,
        r#"{"iss":["https://a"]}"#,
        r#"{"iss":"https://a","iss":"https://b"}"#,
        r#"{"iss":"https://a","x":1,"x":2}"#,
        "[]",
    ] {
        assert!(
            matches!(read_claims(&encoded(bad)), Err(TokenError::Malformed(_))),
            "{bad}"
        );
    }
    assert!(matches!(read_claims("!!"), Err(TokenError::Malformed(_))));
}

#[test]
fn a_payload_that_is_not_utf8_is_malformed() {
    let good = r#"{"iss":"https://a","name":"café 日本","x":"\u00e9"}"#;
    assert!(read_claims(&encoded(good)).is_ok());
    // A stray continuation byte in a value, a truncated sequence in a name, an overlong
    // slash, a surrogate written as UTF-8, a byte beyond ASCII outside any string.
    for bad in [
        &b"{\"iss\":\"https://a\x80\"}"[..],
        b"{\"iss\":\"https://a\",\"n\xc3\":1}",
        b"{\"iss\":\"https://a\xc0\xaf\"}",
        b"{\"iss\":\"https://a\xed\xa0\x80\"}",
        b"{\"iss\":\"https://a\"}\xff",
    ] {
        assert!(
            matches!(
                read_claims(&URL_SAFE_NO_PAD.encode(bad)),
                Err(TokenError::Malformed(_))
            ),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn the_signing_input_is_the_first_two_segments() {
    let parts = split_compact("aGVhZA.cGF5.c2ln").unwrap();
    assert_eq!(parts.signing_input, "aGVhZA.cGF5");
    assert_eq!(parts.signature, "c2ln");
}

#[test]
fn refuses_unencoded_payloads_and_unknown_critical_extensions() {
    for refused in [
        r#"{"alg":"RS256","b64":false}"#,
        r#"{"alg":"RS256","b64":false,"crit":["b64"]}"#,
        r#"{"alg":"RS256","crit":["exp"]}"#,
        r#"{"alg":"RS256","crit":[]}"#,
        r#"{"alg":"RS256","crit":["b64"]}"#,
        r#"{"alg":"RS256","b64":true,"crit":["b64","b64"]}"#,
        r#"{"alg":"RS256","b64":"yes"}"#,
        r#"{"alg":"RS256","b64":null}"#,
        r#"{"alg":"RS256","b64":null,"crit":["b64"]}"#,
    ] {
        assert!(
            matches!(
                parse_header(&encoded(refused)),
                Err(TokenError::Malformed(_))
            ),
            "{refused}"
        );
    }
    for accepted in [
        r#"{"alg":"RS256","b64":true}"#,
        r#"{"alg":"RS256","b64":true,"crit":["b64"]}"#,
    ] {
        assert!(parse_header(&encoded(accepted)).is_ok(), "{accepted}");
    }
}

#[test]
fn numeric_dates_may_be_fractional() {
    assert_eq!(numeric_date(&serde_json::json!(10)), Some(10));
    assert_eq!(numeric_date(&serde_json::json!(10.7)), Some(10));
    assert_eq!(numeric_date(&serde_json::json!("10")), None);
}

/// The claim rules jsonwebtoken's `validate` applied before the signature check moved here,
/// and where they are stricter: `nbf: null` and a fractional `nbf` ahead are refused.
#[test]
fn registered_claims_follow_the_issuers_rules() {
    use std::time::Duration;

    use crate::config::KeySource;

    let now = 1_800_000_000;
    let mut config = IssuerConfig::with_keys(
        "https://issuer.example",
        vec!["https://fhir.example/r4".to_owned()],
        KeySource::Inline(r#"{"keys":[]}"#.to_owned()),
    );
    config.leeway = Duration::from_secs(30);
    let valid = serde_json::json!({
        "iss": "https://issuer.example",
        "aud": "https://fhir.example/r4",
        "exp": now + 600,
    });
    let check = |config: &IssuerConfig, changes: serde_json::Value| {
        let mut claims = valid.as_object().unwrap().clone();
        for (name, value) in changes.as_object().unwrap() {
            if value == "<absent>" {
                claims.remove(name);
            } else {
                claims.insert(name.clone(), value.clone());
            }
        }
        check_registered_claims(&claims, config, 1_800_000_000.0)
    };
    let malformed = |result: Result<Vec<String>, TokenError>, about: &str| matches!(result, Err(TokenError::Malformed(ref message)) if message.contains(about));

    assert_eq!(
        check(&config, serde_json::json!({})),
        Ok(vec!["https://fhir.example/r4".to_owned()])
    );
    for required in ["exp", "iss", "aud"] {
        for missing in [serde_json::json!("<absent>"), serde_json::Value::Null] {
            let result = check(&config, serde_json::json!({ required: missing }));
            assert!(
                malformed(result.clone(), required),
                "{required}: {result:?}"
            );
        }
    }
    assert!(malformed(
        check(&config, serde_json::json!({"nbf": "soon"})),
        "nbf"
    ));
    assert!(malformed(
        check(&config, serde_json::json!({"aud": 7})),
        "aud"
    ));
    assert!(malformed(
        check(
            &config,
            serde_json::json!({"aud": ["https://fhir.example/r4", 7]})
        ),
        "aud"
    ));
    assert_eq!(
        check(&config, serde_json::json!({"nbf": now + 31})),
        Err(TokenError::NotYetValid)
    );
    assert!(check(&config, serde_json::json!({"nbf": now + 30})).is_ok());
    // A NumericDate or nothing: `null` is neither (RFC 7519 §2), for `nbf` as for `iat`.
    assert!(malformed(
        check(&config, serde_json::json!({"nbf": null})),
        "nbf"
    ));
    assert!(malformed(
        check(&config, serde_json::json!({"iat": null})),
        "iat"
    ));
    assert_eq!(
        check(&config, serde_json::json!({"exp": now - 30})),
        Err(TokenError::Expired)
    );
    assert!(check(&config, serde_json::json!({"exp": now - 29})).is_ok());
    assert_eq!(
        check(&config, serde_json::json!({"iat": now + 31})),
        Err(TokenError::NotYetValid)
    );
    assert!(check(&config, serde_json::json!({"iat": now + 30})).is_ok());
    assert_eq!(
        check(
            &config,
            serde_json::json!({"iss": "https://issuer.example/"})
        ),
        Err(TokenError::WrongIssuer("https://issuer.example".to_owned()))
    );
    // A trailing `/` spells the same base URL (`names_one_of`, as for introspection).
    assert!(
        check(
            &config,
            serde_json::json!({"aud": "https://fhir.example/r4/"})
        )
        .is_ok()
    );
    for elsewhere in [
        serde_json::json!("https://fhir.example/r4x"),
        serde_json::json!(["https://attacker.example"]),
        serde_json::json!([]),
    ] {
        assert_eq!(
            check(&config, serde_json::json!({ "aud": elsewhere })),
            Err(TokenError::WrongAudience)
        );
    }
    assert!(
        check(
            &config,
            serde_json::json!({"aud": ["https://x", "https://fhir.example/r4"]})
        )
        .is_ok()
    );
    // Without issuer audiences `aud` is still required, and the asking FHIR server checks it.
    config.audiences.clear();
    assert!(check(&config, serde_json::json!({"aud": "https://anywhere"})).is_ok());
    assert!(check(&config, serde_json::json!({"aud": []})).is_ok());
    assert!(malformed(
        check(&config, serde_json::json!({"aud": null})),
        "aud"
    ));
}
