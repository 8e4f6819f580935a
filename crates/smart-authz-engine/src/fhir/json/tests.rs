use serde_json::json;

use super::*;

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
    let written = String::from_utf8(super::to_fhir_json(&bundle)).unwrap();
    assert_eq!(
        written,
        r#"{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Observation","contained":[{"resourceType":"Patient","id":"p"}],"id":"o1"}}],"type":"searchset"}"#
    );
    assert_eq!(parse_strict(written.as_bytes()).unwrap(), bundle);
}

#[test]
fn a_strict_object_is_read_through_serde_by_the_same_rules() {
    let read = |text: &str| serde_json::from_str::<StrictObject>(text);
    let claims = read(r#"{"scope": "patient/*.rs", "aud": ["a", "b"], "n": {"x": 1}}"#).unwrap();
    assert_eq!(claims.0["aud"], serde_json::json!(["a", "b"]));
    assert!(read(r#"{"scope": "patient/Observation.rs", "scope": "user/*.cruds"}"#).is_err());
    assert!(read(r#"{"fhirContext": [{"reference": "a", "reference": "b"}]}"#).is_err());
    assert!(read(r#"["not", "an", "object"]"#).is_err());
}
