use envoy_types::pb::envoy::config::core::v3::{HeaderMap, HeaderValue};
use envoy_types::pb::envoy::service::ext_proc::v3::HttpHeaders;

use super::{header_map, is_json};

fn headers(pairs: &[(&str, &str)]) -> HttpHeaders {
    HttpHeaders {
        headers: Some(HeaderMap {
            headers: pairs
                .iter()
                .map(|(key, value)| HeaderValue {
                    key: (*key).to_owned(),
                    raw_value: value.as_bytes().to_vec(),
                    ..HeaderValue::default()
                })
                .collect(),
        }),
        ..HttpHeaders::default()
    }
}

#[test]
fn headers_are_read_by_lower_case_name_from_either_field() {
    let mut given = headers(&[
        (":path", "/fhir/R4/Observation"),
        ("Authorization", "Bearer x"),
    ]);
    if let Some(map) = given.headers.as_mut() {
        map.headers.push(HeaderValue {
            key: "x-request-id".to_owned(),
            value: "r-1".to_owned(),
            ..HeaderValue::default()
        });
    }
    let map = header_map(&given).unwrap();
    assert_eq!(map["authorization"], "Bearer x");
    assert_eq!(map[":path"], "/fhir/R4/Observation");
    assert_eq!(map["x-request-id"], "r-1");
}

#[test]
fn a_header_read_here_given_twice_is_refused() {
    for name in [
        "authorization",
        ":path",
        "content-encoding",
        "x-http-method-override",
    ] {
        let given = headers(&[(name, "a"), (&name.to_ascii_uppercase(), "b")]);
        assert!(header_map(&given).is_err(), "{name}");
    }
    // Others may repeat.
    let given = headers(&[("accept", "a"), ("accept", "b")]);
    assert!(header_map(&given).is_ok());
}

#[test]
fn only_json_answers_are_read() {
    for json in [
        "application/fhir+json",
        "application/fhir+json; charset=utf-8",
        "application/json",
        "Application/JSON",
    ] {
        assert!(is_json(json), "{json}");
    }
    for other in [
        "application/fhir+xml",
        "text/html",
        "",
        "application/jsonx",
        "text/json",
    ] {
        assert!(!is_json(other), "{other}");
    }
}
