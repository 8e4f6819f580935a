use super::*;

fn encoded(json: &str) -> String {
    URL_SAFE_NO_PAD.encode(json)
}

#[test]
fn splits_exactly_three_parts() {
    assert!(split_compact("a.b.c").is_ok());
    assert!(split_compact("a.b.").is_ok());
    for bad in ["", "a", "a.b", "a.b.c.d", "a.b.c.d.e", ".b.c", "a..c"] {
        assert!(
            matches!(split_compact(bad), Err(TokenError::Malformed(_))),
            "{bad}"
        );
    }
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
fn peeks_only_a_string_iss() {
    assert_eq!(
        peek_issuer(&encoded(r#"{"iss":"https://a","x":[1]}"#)),
        Ok("https://a".into())
    );
    assert!(matches!(
        peek_issuer(&encoded(r#"{"sub":"x"}"#)),
        Err(TokenError::Malformed(_))
    ));
    assert!(matches!(
        peek_issuer(&encoded(r#"{"iss":7}"#)),
        Err(TokenError::Malformed(_))
    ));
    assert!(matches!(
        peek_issuer(&encoded("[]")),
        Err(TokenError::Malformed(_))
    ));
}

#[test]
fn numeric_dates_may_be_fractional() {
    assert_eq!(numeric_date(&serde_json::json!(10)), Some(10));
    assert_eq!(numeric_date(&serde_json::json!(10.7)), Some(10));
    assert_eq!(numeric_date(&serde_json::json!("10")), None);
}
