use super::*;

#[test]
fn a_uuid_or_a_trace_id_is_a_request_id() {
    let uuid = "1b4e28ba-2fa1-11d2-883f-0016d3cca427";
    assert_eq!(request_id(uuid).unwrap(), Some(uuid));
    assert_eq!(request_id("req:42/a_b.c").unwrap(), Some("req:42/a_b.c"));
    assert_eq!(request_id("").unwrap(), None);
}

#[test]
fn what_could_forge_a_log_line_or_a_header_is_refused() {
    for bad in [
        "two words",
        "line\nbreak",
        "tab\there",
        "quote\"",
        "back\\slash",
        "é",
        "\u{0}",
    ] {
        assert!(request_id(bad).is_err(), "{bad:?}");
    }
    assert!(request_id(&"a".repeat(MAX_REQUEST_ID_BYTES)).is_ok());
    assert!(request_id(&"a".repeat(MAX_REQUEST_ID_BYTES + 1)).is_err());
}
