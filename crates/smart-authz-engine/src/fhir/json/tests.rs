use proptest::prelude::*;
use serde_json::json;

use super::*;

/// The reading before the text was checked whole: serde_json over the bytes, each string
/// checked as UTF-8 where it stands.
fn parse_strict_by_bytes(bytes: &[u8]) -> Result<Value, String> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let mut grow = |_| true;
    let meter = Meter::new(&mut grow);
    let value = StrictValue(&meter)
        .deserialize(&mut deserializer)
        .map_err(|error| error.to_string())?;
    deserializer.end().map_err(|error| error.to_string())?;
    Ok(value)
}

/// A resource with names and values beyond ASCII, escapes and every kind of value.
const WIDE: &str = r#"{"resourceType":"Observation","id":"o-1","status":"final",
 "code":{"text":"Körpergewicht \u00e9 日本語 🩺","coding":[{"system":"http://loinc.org","code":"29463-7"}]},
 "subject":{"reference":"Patient/123","display":"Zoë \"Z\" O’Brien"},
 "valueQuantity":{"value":72.5,"unit":"kg"},"note":[{"text":"line\nbreak\ttab \ud83e\ude7a"}],
 "ñame":true,"n":-3,"none":null}"#;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// Checking the text whole accepts exactly what the byte reader accepted, as the same
    /// value: a document with one byte changed, added or cut anywhere, any byte at all.
    #[test]
    fn the_whole_text_check_reads_as_the_byte_reader_read(
        position in 0..WIDE.len(),
        byte in any::<u8>(),
        edit in 0..3u8,
    ) {
        let mut bytes = WIDE.as_bytes().to_vec();
        match edit {
            0 => bytes[position] = byte,
            1 => bytes.insert(position, byte),
            _ => bytes.truncate(position),
        }
        let text = String::from_utf8_lossy(&bytes).into_owned();
        match (parse_strict(&bytes), parse_strict_by_bytes(&bytes)) {
            (Ok(now), Ok(before)) => prop_assert_eq!(now, before, "{}", text),
            (Err(_), Err(_)) => {}
            (now, before) => prop_assert!(false, "{}: now {:?}, before {:?}", text, now, before),
        }
    }
}

#[test]
fn the_wide_document_reads_as_serde_json_reads_it() {
    let strict = parse_strict(WIDE.as_bytes()).unwrap();
    assert_eq!(strict, serde_json::from_str::<Value>(WIDE).unwrap());
    assert_eq!(strict["code"]["text"], "Körpergewicht é 日本語 🩺");
}

#[test]
fn bytes_that_are_not_utf8_are_refused_inside_a_string_or_out() {
    // A stray continuation byte in a value, a truncated sequence in a name, an overlong
    // slash, a surrogate written as UTF-8, a byte beyond ASCII between members.
    for bytes in [
        &b"{\"a\":\"x\x80\"}"[..],
        b"{\"a\xc3\":1}",
        b"{\"a\":\"\xc0\xaf\"}",
        b"{\"a\":\"\xed\xa0\x80\"}",
        b"{\"a\":1,\xff\"b\":2}",
    ] {
        let error = parse_strict(bytes).unwrap_err();
        assert!(
            error.to_string().contains("not UTF-8"),
            "{}: {error}",
            String::from_utf8_lossy(bytes)
        );
    }
}

#[test]
fn a_duplicate_member_is_refused_at_any_depth() {
    for text in [
        r#"{"resourceType": "Observation", "resourceType": "Patient"}"#,
        r#"{"resourceType": "Observation",
            "subject": {"reference": "Patient/456"},
            "subject": {"reference": "Patient/123"}}"#,
        r#"{"subject": {"reference": "Patient/456", "reference": "Patient/123"}}"#,
        r#"{"entry": [{"request": {"method": "GET", "method": "DELETE"}}]}"#,
        r#"[[{"a": 1, "b": 2, "a": 3}]]"#,
    ] {
        let error = parse_strict(text.as_bytes()).unwrap_err();
        assert!(
            error.to_string().contains("duplicate member"),
            "{text}: {error}"
        );
    }
}

#[test]
fn ordinary_json_reads_as_serde_json_reads_it() {
    let text = r#"{"resourceType": "Observation", "valueQuantity": {"value": 72.5, "unit": "kg"},
        "component": [{"code": {"text": "a"}}, {"code": {"text": "a"}}], "n": -3, "big": 18446744073709551615,
        "flag": true, "none": null, "text": "caf\u00e9"}"#;
    let strict = parse_strict(text.as_bytes()).unwrap();
    let loose: Value = serde_json::from_str(text).unwrap();
    assert_eq!(strict, loose);
    // The same name in sibling objects is no duplicate.
    assert_eq!(
        parse_strict(br#"[{"a": 1}, {"a": 2}]"#).unwrap(),
        json!([{"a": 1}, {"a": 2}])
    );
}

#[test]
fn what_is_not_one_json_document_is_refused() {
    for text in ["", "{", r#"{"a": 1} {"b": 2}"#, r#"{"a": 1,}"#, "nul"] {
        assert!(parse_strict(text.as_bytes()).is_err(), "{text:?}");
    }
    // Nesting beyond serde_json's recursion limit is an error, never a stack overflow.
    let deep = "[".repeat(100_000);
    assert!(parse_strict(deep.as_bytes()).is_err());
}

#[test]
fn resources_are_written_with_their_type_first_at_every_level() {
    let bundle = parse_strict(
        br#"{"type":"searchset","entry":[{"resource":{"id":"o1","resourceType":"Observation","contained":[{"id":"p","resourceType":"Patient"}]}}],"resourceType":"Bundle"}"#,
    )
    .unwrap();
    let written = String::from_utf8(super::to_fhir_json(&bundle, 0)).unwrap();
    assert_eq!(
        written,
        r#"{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Observation","contained":[{"resourceType":"Patient","id":"p"}],"id":"o1"}}],"type":"searchset"}"#
    );
    assert_eq!(parse_strict(written.as_bytes()).unwrap(), bundle);
}

#[test]
fn token_claims_are_read_by_the_same_rules() {
    let read = |text: &str| parse_strict(text.as_bytes());
    let claims = read(r#"{"scope": "patient/*.rs", "aud": ["a", "b"], "n": {"x": 1}}"#).unwrap();
    assert_eq!(claims["aud"], serde_json::json!(["a", "b"]));
    assert!(read(r#"{"scope": "patient/Observation.rs", "scope": "user/*.cruds"}"#).is_err());
    assert!(read(r#"{"fhirContext": [{"reference": "a", "reference": "b"}]}"#).is_err());
    // Not an object: JSON all the same, which the claims' reader refuses by its type.
    assert!(!read(r#"["not", "an", "object"]"#).unwrap().is_object());
}

#[test]
fn the_tree_is_asked_for_ahead_and_a_refusal_stops_the_parse() {
    let text = format!(r#"[{}0]"#, r#"{"a":"b"},"#.repeat(1_000));
    let mut asks = Vec::new();
    let mut grow = |bytes| {
        asks.push(bytes);
        true
    };
    assert!(parse_strict_within(text.as_bytes(), &mut grow).is_ok());
    assert!(asks.iter().all(|ask| *ask >= 16 * 1024), "{asks:?}");
    // About 700 bytes a member's object: some 700 KB, asked for in a dozen steps or so.
    let asked: usize = asks.iter().sum();
    assert!((700_000..1_400_000).contains(&asked), "{asked}");
    assert!(asks.len() < 20, "{asks:?}");

    let mut given = 0;
    let mut grow = |bytes| {
        given += bytes;
        given <= 100_000
    };
    let refused = parse_strict_within(text.as_bytes(), &mut grow).unwrap_err();
    assert!(refused.to_string().contains("memory"), "{refused}");

    // A small resource asks once, and parse_strict never refuses.
    let mut asks = 0;
    let mut grow = |_| {
        asks += 1;
        true
    };
    assert!(parse_strict_within(WIDE.as_bytes(), &mut grow).is_ok());
    assert_eq!(asks, 1);
    assert!(parse_strict(text.as_bytes()).is_ok());
}

#[test]
fn a_refused_step_ahead_is_asked_again_for_what_is_needed() {
    // Some 700 KB of tree, from a grower that gives at most 40 KiB at a time: the steps
    // ahead outgrow that past 160 KB (a quarter of what was granted), and are asked again
    // for what the next value needs.
    let text = format!(r#"[{}0]"#, r#"{"a":"b"},"#.repeat(1_000));
    let mut refused = 0;
    let mut given = 0;
    let mut grow = |bytes| {
        if bytes > 40 * 1024 {
            refused += 1;
            return false;
        }
        given += bytes;
        true
    };
    assert!(parse_strict_within(text.as_bytes(), &mut grow).is_ok());
    assert!(refused > 0);
    assert!((600_000..1_400_000).contains(&given), "{given}");
}
