use super::*;
use proptest::prelude::*;

fn parse(method: &str, path: &str) -> FhirRequest {
    parse_request_line(method, path)
        .unwrap_or_else(|error| panic!("{method} {path:?} should parse: {error}"))
}

fn parse_error(method: &str, path: &str) -> RequestLineError {
    match parse_request_line(method, path) {
        Ok(request) => panic!("{method} {path:?} should fail, got {request:?}"),
        Err(error) => error,
    }
}

fn operation(resource_type: Option<&str>, id: Option<&str>, name: &str) -> FhirRequest {
    FhirRequest {
        resource_type: resource_type.map(str::to_owned),
        id: id.map(str::to_owned),
        operation: Some(name.to_owned()),
        ..FhirRequest::new(Interaction::Operation)
    }
}

fn compartment_search(compartment_type: &str, id: &str, searched_type: &str) -> FhirRequest {
    FhirRequest {
        compartment: Some(CompartmentRef::new(compartment_type, id)),
        ..FhirRequest::new(Interaction::SearchCompartment).with_type(searched_type)
    }
}

fn segment(text: &str) -> String {
    text.to_owned()
}

// ---- GET / HEAD ----

#[test]
fn system_level_search_from_empty_slash_and_query_only_paths() {
    for path in ["", "/"] {
        assert_eq!(
            parse("GET", path),
            FhirRequest::new(Interaction::SearchSystem),
            "{path:?}"
        );
    }
    let expected = FhirRequest::new(Interaction::SearchSystem).with_param("_type", "Observation");
    assert_eq!(parse("GET", "?_type=Observation"), expected);
    assert_eq!(parse("GET", "/?_type=Observation"), expected);
}

#[test]
fn capabilities_only_at_the_first_position() {
    assert_eq!(
        parse("GET", "metadata"),
        FhirRequest::new(Interaction::Capabilities)
    );
    assert_eq!(
        parse("GET", "/metadata?_format=json").interaction,
        Interaction::Capabilities
    );
    assert_eq!(
        parse("GET", "Observation/metadata"),
        FhirRequest::new(Interaction::Read)
            .with_type("Observation")
            .with_id("metadata")
    );
}

#[test]
fn smart_configuration() {
    assert_eq!(
        parse("GET", ".well-known/smart-configuration"),
        FhirRequest::new(Interaction::SmartConfiguration)
    );
    assert_eq!(
        parse("GET", "/.well-known/smart-configuration/").interaction,
        Interaction::SmartConfiguration
    );
}

#[test]
fn history_at_every_level_and_vread() {
    assert_eq!(
        parse("GET", "_history"),
        FhirRequest::new(Interaction::HistorySystem)
    );
    assert_eq!(
        parse("GET", "Observation/_history"),
        FhirRequest::new(Interaction::HistoryType).with_type("Observation")
    );
    assert_eq!(
        parse("GET", "Observation/1/_history"),
        FhirRequest::new(Interaction::HistoryInstance)
            .with_type("Observation")
            .with_id("1")
    );
    assert_eq!(
        parse("GET", "Observation/1/_history/2"),
        FhirRequest {
            version_id: Some("2".to_owned()),
            ..FhirRequest::new(Interaction::Vread)
                .with_type("Observation")
                .with_id("1")
        }
    );
}

#[test]
fn search_type_keeps_modifiers_chains_and_order() {
    let request = parse(
        "GET",
        "Observation?code:in=http%3A%2F%2Fvs&subject.name=peter&_has:Observation:patient:code=1234",
    );
    assert_eq!(
        request,
        FhirRequest::new(Interaction::SearchType)
            .with_type("Observation")
            .with_param("code:in", "http://vs")
            .with_param("subject.name", "peter")
            .with_param("_has:Observation:patient:code", "1234")
    );
}

#[test]
fn read_with_leading_and_trailing_slash() {
    let expected = FhirRequest::new(Interaction::Read)
        .with_type("Observation")
        .with_id("a-1.b");
    for path in [
        "Observation/a-1.b",
        "/Observation/a-1.b",
        "Observation/a-1.b/",
        "/Observation/a-1.b/",
    ] {
        assert_eq!(parse("GET", path), expected, "{path:?}");
    }
}

#[test]
fn compartment_search_for_one_type_and_for_all() {
    assert_eq!(
        parse("GET", "Patient/123/Observation"),
        compartment_search("Patient", "123", "Observation")
    );
    assert_eq!(
        parse("GET", "Patient/123/*"),
        compartment_search("Patient", "123", "*")
    );
    assert_eq!(
        parse("GET", "Patient/123/Observation?code=1").params,
        vec![SearchParam::new("code", "1")]
    );
}

#[test]
fn operations_at_system_type_and_instance_level() {
    assert_eq!(parse("GET", "$export"), operation(None, None, "export"));
    assert_eq!(
        parse("GET", "Patient/$export"),
        operation(Some("Patient"), None, "export")
    );
    assert_eq!(
        parse("GET", "Group/g1/$export?_type=Patient"),
        FhirRequest {
            params: vec![SearchParam::new("_type", "Patient")],
            ..operation(Some("Group"), Some("g1"), "export")
        }
    );
    assert_eq!(
        parse("GET", "Patient/123/$everything"),
        operation(Some("Patient"), Some("123"), "everything")
    );
    assert_eq!(
        parse("GET", "$get-resource-counts"),
        operation(None, None, "get-resource-counts")
    );
}

#[test]
fn head_and_method_case_behave_as_get() {
    let expected = FhirRequest::new(Interaction::Read)
        .with_type("Patient")
        .with_id("1");
    for method in ["HEAD", "head", "get", "Get", "GET"] {
        assert_eq!(parse(method, "Patient/1"), expected, "{method}");
    }
}

#[test]
fn a_token_in_the_query_is_refused() {
    for (method, path) in [
        ("GET", "Observation?access_token=eyJ.x.y"),
        ("GET", "Patient/1?_format=json&ACCESS_TOKEN=abc"),
        ("POST", "Observation/_search?access_token="),
        ("DELETE", "Observation?subject=Patient/1&access_token=abc"),
    ] {
        assert!(
            matches!(
                parse_error(method, path),
                RequestLineError::AccessTokenParameter
            ),
            "{method} {path}"
        );
    }
}

#[test]
fn a_cascading_delete_is_refused() {
    for (method, path) in [
        ("DELETE", "Observation/o1?_cascade=delete"),
        ("DELETE", "Observation?subject=Patient/1&_CASCADE=delete"),
        ("GET", "Observation/o1?_cascade="),
    ] {
        assert!(
            matches!(
                parse_error(method, path),
                RequestLineError::CascadeParameter
            ),
            "{method} {path}"
        );
    }
}

#[test]
fn a_method_parameter_naming_another_method_is_refused() {
    for (method, path) in [
        ("GET", "Observation/1?_method=DELETE"),
        ("GET", "Observation?patient=123&_method=delete"),
        ("POST", "Observation/_search?_METHOD=PUT"),
        ("HEAD", "Observation/1?_method=GET"),
        ("GET", "Observation/1?_method="),
    ] {
        assert!(
            matches!(
                parse_error(method, path),
                RequestLineError::MethodOverride { .. }
            ),
            "{method} {path}"
        );
    }
    // Naming the request's own method changes nothing.
    assert_eq!(
        parse("GET", "Patient/1?_method=get"),
        FhirRequest::new(Interaction::Read)
            .with_type("Patient")
            .with_id("1")
            .with_param("_method", "get")
    );
}

// ---- POST ----

#[test]
fn post_batch_and_searches() {
    assert_eq!(parse("POST", ""), FhirRequest::new(Interaction::Batch));
    assert_eq!(parse("POST", "/"), FhirRequest::new(Interaction::Batch));
    // A search by POST may carry more parameters in its body than the line shows.
    let in_body = |request: FhirRequest| FhirRequest {
        params_in_body: true,
        ..request
    };
    assert_eq!(
        parse("POST", "_search"),
        in_body(FhirRequest::new(Interaction::SearchSystem))
    );
    assert_eq!(
        parse("POST", "Observation/_search"),
        in_body(FhirRequest::new(Interaction::SearchType).with_type("Observation"))
    );
    assert_eq!(
        parse("POST", "Patient/123/Observation/_search"),
        in_body(compartment_search("Patient", "123", "Observation"))
    );
    assert_eq!(
        parse("POST", "Patient/123/*/_search"),
        in_body(compartment_search("Patient", "123", "*"))
    );
    assert!(!parse("GET", "Observation?code=x").params_in_body);
    assert!(!parse("POST", "Observation").params_in_body);
}

#[test]
fn post_create_keeps_conditional_query() {
    assert_eq!(
        parse("POST", "Observation"),
        FhirRequest::new(Interaction::Create).with_type("Observation")
    );
    assert_eq!(
        parse("POST", "Patient?identifier=http%3A%2F%2Fmrn%7C42"),
        FhirRequest::new(Interaction::Create)
            .with_type("Patient")
            .with_param("identifier", "http://mrn|42")
    );
}

/// A POST operation's parameters come in its body: marked as unread.
#[test]
fn post_operations_at_every_level() {
    let in_body = |request: FhirRequest| FhirRequest {
        params_in_body: true,
        ..request
    };
    assert_eq!(
        parse("POST", "$export"),
        in_body(operation(None, None, "export"))
    );
    assert_eq!(
        parse("POST", "Patient/$match"),
        in_body(operation(Some("Patient"), None, "match"))
    );
    assert_eq!(
        parse("POST", "Patient/1/$everything"),
        in_body(operation(Some("Patient"), Some("1"), "everything"))
    );
    assert!(!parse("GET", "Patient/1/$everything").params_in_body);
}

#[test]
fn post_rejects_non_post_shapes() {
    assert_eq!(
        parse_error("POST", "Observation/1"),
        RequestLineError::UnexpectedSegment {
            segment: segment("1"),
            position: 1
        }
    );
    assert_eq!(
        parse_error("POST", "Observation/1/_history"),
        RequestLineError::UnexpectedSegment {
            segment: segment("_history"),
            position: 2
        }
    );
    assert_eq!(
        parse_error("POST", "Patient/1/Observation/x"),
        RequestLineError::UnexpectedSegment {
            segment: segment("x"),
            position: 3
        }
    );
    assert_eq!(
        parse_error("POST", "metadata"),
        RequestLineError::ReservedWord {
            segment: segment("metadata")
        }
    );
    assert_eq!(
        parse_error("POST", "a/b/c/d/e"),
        RequestLineError::TooManySegments {
            method: "POST",
            count: 5,
            max: 4
        }
    );
}

// ---- PUT / PATCH / DELETE ----

#[test]
fn writes_on_an_instance() {
    for (method, interaction) in [
        ("PUT", Interaction::Update),
        ("PATCH", Interaction::Patch),
        ("DELETE", Interaction::Delete),
    ] {
        assert_eq!(
            parse(method, "Observation/1"),
            FhirRequest::new(interaction)
                .with_type("Observation")
                .with_id("1"),
            "{method}"
        );
    }
}

#[test]
fn conditional_writes_need_a_query() {
    for (method, interaction) in [
        ("PUT", Interaction::Update),
        ("PATCH", Interaction::Patch),
        ("DELETE", Interaction::Delete),
    ] {
        assert_eq!(
            parse(method, "Patient?identifier=42"),
            FhirRequest::new(interaction)
                .with_type("Patient")
                .with_param("identifier", "42"),
            "{method}"
        );
        let canonical = Method::parse(method)
            .map(Method::as_str)
            .unwrap_or_default();
        for path in ["Patient", "Patient?", "Patient?&&"] {
            assert_eq!(
                parse_error(method, path),
                RequestLineError::MissingConditionalQuery { method: canonical },
                "{method} {path:?}"
            );
        }
    }
    assert_eq!(
        parse_error("PUT", "Observation"),
        RequestLineError::MissingConditionalQuery { method: "PUT" }
    );
}

#[test]
fn writes_reject_system_level_and_deep_paths() {
    assert_eq!(
        parse_error("PUT", ""),
        RequestLineError::MissingResourceType { method: "PUT" }
    );
    assert_eq!(
        parse_error("delete", "/?x=1"),
        RequestLineError::MissingResourceType { method: "DELETE" }
    );
    assert_eq!(
        parse_error("PUT", "Observation/1/_history/2"),
        RequestLineError::TooManySegments {
            method: "PUT",
            count: 4,
            max: 2
        }
    );
    assert_eq!(
        parse_error("PATCH", "Observation/$validate"),
        RequestLineError::ReservedWord {
            segment: segment("$validate")
        }
    );
}

// ---- query ----

#[test]
fn query_values_are_percent_decoded_and_plus_is_kept() {
    assert_eq!(
        parse_query("code=http%3A%2F%2Floinc.org%7C1234-5"),
        Ok(vec![SearchParam::new("code", "http://loinc.org|1234-5")])
    );
    assert_eq!(
        parse_query("date=ge2020-01-01T00:00:00+01:00&name=a%2Bb"),
        Ok(vec![
            SearchParam::new("date", "ge2020-01-01T00:00:00+01:00"),
            SearchParam::new("name", "a+b"),
        ])
    );
    assert_eq!(
        parse_query("name=J%C3%BCrgen%20M"),
        Ok(vec![SearchParam::new("name", "Jürgen M")])
    );
    assert_eq!(
        parse_query("code%3Ain=x"),
        Ok(vec![SearchParam::new("code:in", "x")])
    );
}

#[test]
fn query_items_split_at_first_equals_and_skip_empty_items() {
    assert_eq!(
        parse_query("a=1&&b=2&flag&c=x=y&d=&"),
        Ok(vec![
            SearchParam::new("a", "1"),
            SearchParam::new("b", "2"),
            SearchParam::new("flag", ""),
            SearchParam::new("c", "x=y"),
            SearchParam::new("d", ""),
        ])
    );
    assert_eq!(parse_query(""), Ok(vec![]));
    assert_eq!(parse_query("&&&"), Ok(vec![]));
}

#[test]
fn query_rejects_names_servers_read_differently() {
    for query in [
        "_elements+=id",
        "_summary%20=text",
        "%20code=x",
        "co%C2%A0de=1",
        "a+b=1",
        "_include[]=Observation:subject",
        "_elements%5B%5D=id",
        "[elements=id",
        "?patient=456",
        "na%2Fme=1",
        "codé=1",
    ] {
        assert!(
            matches!(
                parse_query(query),
                Err(RequestLineError::UnreadableParameterName { .. })
            ),
            "{query}"
        );
    }
    // A value keeps its `+` (a timezone offset).
    assert!(parse_query("date=2020-01-01T00:00:00+01:00").is_ok());
    // The names FHIR has: modifiers, chains, reverse chains, composites.
    assert!(
        parse_query("code:not=x&subject.name=y&_has:Observation:patient:code=z&code-value-quantity=a&_include:iterate=b")
            .is_ok()
    );
}

#[test]
fn query_rejects_a_semicolon_as_sent_but_not_encoded() {
    for query in [
        "code=x;_has:MedicationRequest:medication:patient=456",
        "a;b=1",
    ] {
        assert_eq!(
            parse_query(query),
            Err(RequestLineError::Semicolon),
            "{query}"
        );
    }
    assert_eq!(parse_query("code=x%3By").unwrap()[0].value, "x;y");
}

#[test]
fn query_rejects_empty_names_and_bad_encoding() {
    assert_eq!(
        parse_query("a=1&=2"),
        Err(RequestLineError::EmptyParameterName {
            item: segment("=2")
        })
    );
    for (query, component) in [
        ("code=%zz", "%zz"),
        ("code=%4", "%4"),
        ("code=abc%", "abc%"),
        ("co%g1de=1", "co%g1de"),
        ("code=%C3%28", "%C3%28"),
        ("code=%FF", "%FF"),
    ] {
        assert_eq!(
            parse_query(query),
            Err(RequestLineError::InvalidPercentEncoding {
                text: segment(component)
            }),
            "{query}"
        );
    }
    assert_eq!(
        parse_error("GET", "Observation?code=%zz"),
        RequestLineError::InvalidPercentEncoding {
            text: segment("%zz")
        }
    );
}

#[test]
fn query_rejects_control_characters_raw_or_encoded() {
    for query in ["a=%0A", "a=%00", "a%09=1", "a=x\ny", "a=%7F", "a=%C2%85"] {
        assert_eq!(
            parse_query(query),
            Err(RequestLineError::ControlCharacter { location: "query" }),
            "{query:?}"
        );
    }
}

#[test]
fn query_parameter_limit() {
    let at_limit = vec!["a=1"; MAX_QUERY_PARAMS].join("&");
    assert_eq!(
        parse_query(&at_limit).map(|params| params.len()),
        Ok(MAX_QUERY_PARAMS)
    );
    let above_limit = format!("{at_limit}&b=2");
    assert_eq!(
        parse_query(&above_limit),
        Err(RequestLineError::TooManyParameters {
            max: MAX_QUERY_PARAMS
        })
    );
    assert_eq!(
        parse_error("GET", &format!("Observation?{above_limit}")),
        RequestLineError::TooManyParameters {
            max: MAX_QUERY_PARAMS
        }
    );
}

// ---- garbage ----

#[test]
fn rejects_unsupported_methods() {
    for method in ["TRACE", "OPTIONS", "CONNECT", "", "GET ", "G\nET"] {
        assert_eq!(
            parse_error(method, "Observation"),
            RequestLineError::UnsupportedMethod {
                method: segment(method)
            },
            "{method:?}"
        );
    }
}

#[test]
fn rejects_too_many_segments() {
    assert_eq!(
        parse_error("GET", "Observation/1/2/3/4/5"),
        RequestLineError::TooManySegments {
            method: "GET",
            count: 6,
            max: 4
        }
    );
    assert_eq!(
        parse_error("HEAD", "Observation/1/_history/2/x"),
        RequestLineError::TooManySegments {
            method: "HEAD",
            count: 5,
            max: 4
        }
    );
}

#[test]
fn rejects_malformed_types_ids_versions_and_operations() {
    let invalid_type = |text: &str| RequestLineError::InvalidResourceType {
        segment: segment(text),
    };
    assert_eq!(
        parse_error("GET", "observation"),
        invalid_type("observation")
    );
    assert_eq!(
        parse_error("GET", "Obsérvation"),
        invalid_type("Obsérvation")
    );
    assert_eq!(parse_error("GET", "Obs1"), invalid_type("Obs1"));
    assert_eq!(
        parse_error("GET", "Observation%2F1"),
        invalid_type("Observation%2F1")
    );
    let long_type = format!("O{}", "b".repeat(64));
    assert_eq!(parse_error("GET", &long_type), invalid_type(&long_type));
    assert_eq!(
        parse_error("GET", "Patient/1/observation"),
        invalid_type("observation")
    );

    let invalid_id = |text: &str| RequestLineError::InvalidId {
        segment: segment(text),
    };
    assert_eq!(
        parse_error("GET", "Observation/bad id"),
        invalid_id("bad id")
    );
    assert_eq!(parse_error("GET", "Observation/ü"), invalid_id("ü"));
    assert_eq!(parse_error("GET", "Observation/a%201"), invalid_id("a%201"));
    let long_id = "1".repeat(65);
    assert_eq!(
        parse_error("GET", &format!("Observation/{long_id}")),
        invalid_id(&long_id)
    );
    assert_eq!(
        parse("GET", &format!("Observation/{}", "1".repeat(64))).interaction,
        Interaction::Read
    );

    assert_eq!(
        parse_error("GET", "Observation/1/_history/v_2"),
        RequestLineError::InvalidVersionId {
            segment: segment("v_2")
        }
    );
    assert_eq!(
        parse_error("GET", "Observation/1/_history/_history"),
        RequestLineError::InvalidVersionId {
            segment: segment("_history")
        }
    );

    let invalid_operation = |text: &str| RequestLineError::InvalidOperationName {
        segment: segment(text),
    };
    assert_eq!(parse_error("GET", "Observation/$"), invalid_operation("$"));
    assert_eq!(parse_error("GET", "$1abc"), invalid_operation("$1abc"));
    assert_eq!(
        parse_error("POST", "Patient/1/$every.thing"),
        invalid_operation("$every.thing")
    );
}

#[test]
fn rejects_reserved_words_outside_their_shapes() {
    let reserved = |text: &str| RequestLineError::ReservedWord {
        segment: segment(text),
    };
    assert_eq!(parse_error("GET", "_search"), reserved("_search"));
    assert_eq!(
        parse_error("GET", "Observation/_search"),
        reserved("_search")
    );
    assert_eq!(parse_error("GET", "metadata/1"), reserved("metadata"));
    assert_eq!(parse_error("GET", "_history/1"), reserved("_history"));
    assert_eq!(parse_error("GET", "$export/1"), reserved("$export"));
    assert_eq!(
        parse_error("GET", "Patient/_history/Observation"),
        reserved("_history")
    );
    assert_eq!(parse_error("GET", "Patient/1/_search"), reserved("_search"));
    assert_eq!(parse_error("PUT", "Patient/_history"), reserved("_history"));
    assert_eq!(
        parse_error("GET", "Patient/1/Observation/_search"),
        RequestLineError::UnexpectedSegment {
            segment: segment("Observation"),
            position: 2
        }
    );
}

#[test]
fn rejects_empty_segments() {
    assert_eq!(
        parse_error("GET", "//"),
        RequestLineError::EmptySegment { position: 0 }
    );
    assert_eq!(
        parse_error("GET", "Observation//1"),
        RequestLineError::EmptySegment { position: 1 }
    );
    // RFC 3986 §4.2 reads `//Observation` as a network-path reference to a host.
    assert_eq!(
        parse_error("GET", "//Observation"),
        RequestLineError::AbsoluteUrl {
            path: "//Observation".to_owned()
        }
    );
    assert_eq!(
        parse_error("GET", "Observation//"),
        RequestLineError::EmptySegment { position: 1 }
    );
}

#[test]
fn rejects_long_request_lines_and_control_characters() {
    let long_path = format!("Observation/{}", "a".repeat(20 * 1024));
    assert_eq!(
        parse_error("GET", &long_path),
        RequestLineError::RequestLineTooLong {
            length: long_path.len(),
            max: MAX_REQUEST_LINE_BYTES
        }
    );
    let long_query = format!("Observation?code={}", "a".repeat(20 * 1024));
    assert!(matches!(
        parse_error("GET", &long_query),
        RequestLineError::RequestLineTooLong { .. }
    ));
    for path in ["Observation/1\n", "Obser\u{0}vation", "Patient/\t1"] {
        assert_eq!(
            parse_error("GET", path),
            RequestLineError::ControlCharacter { location: "path" },
            "{path:?}"
        );
    }
}

#[test]
fn error_messages_are_lower_case_escaped_and_bounded() {
    let message = parse_error("GET", "Observation/a\u{1b}[31m").to_string();
    assert!(message.starts_with("control character"), "{message}");
    let message = parse_error("GET", "Observation/bad id").to_string();
    assert_eq!(
        message,
        "invalid id \"bad id\": must match [A-Za-z0-9\\-.]{1,64}"
    );
    let long_method = "X".repeat(10_000);
    let RequestLineError::UnsupportedMethod { method } = parse_error(&long_method, "") else {
        panic!("expected an unsupported method");
    };
    assert_eq!(method.chars().count(), MAX_ERROR_EXCERPT_CHARS + 1);
    assert!(method.ends_with('…'));
}

proptest! {
    #[test]
    fn never_panics_on_arbitrary_unicode(method in any::<String>(), path in any::<String>()) {
        let _ = parse_request_line(&method, &path);
        let _ = parse_query(&path);
    }

    #[test]
    fn never_panics_on_url_like_strings(
        method in prop::sample::select(vec!["GET", "head", "POST", "PUT", "patch", "DELETE", "TRACE"]),
        path in "[/?&=%$*._a-zA-Z0-9-]{0,48}",
    ) {
        let _ = parse_request_line(method, &path);
    }

    #[test]
    fn encoded_names_and_values_round_trip(name in "[A-Za-z0-9_.:-]{1,12}", value in "\\PC{0,12}") {
        use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
        let query = format!(
            "{}={}",
            utf8_percent_encode(&name, NON_ALPHANUMERIC),
            utf8_percent_encode(&value, NON_ALPHANUMERIC)
        );
        prop_assert_eq!(parse_query(&query), Ok(vec![SearchParam::new(name, value)]));
    }

    /// Any other character in a name is refused, however it is sent
    /// (query_rejects_names_servers_read_differently).
    #[test]
    fn names_with_other_characters_are_refused(
        before in "[a-z]{0,4}",
        other in "[^A-Za-z0-9_.:\\-]",
        after in "[a-z]{0,4}",
    ) {
        use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
        let name = format!("{before}{other}{after}");
        let query = format!("{}=1", utf8_percent_encode(&name, NON_ALPHANUMERIC));
        prop_assert!(matches!(
            parse_query(&query),
            Err(RequestLineError::UnreadableParameterName { .. } | RequestLineError::ControlCharacter { .. })
        ), "{:?}: {:?}", name, parse_query(&query));
    }
}

#[test]
fn dot_segments_are_never_ids() {
    for path in [
        "Observation/..?_type=Patient",
        "Observation/.",
        "Observation/../_history",
        "Patient/1/_history/..",
        "Patient/../Observation",
    ] {
        assert!(parse_request_line("GET", path).is_err(), "{path}");
    }
    assert!(parse_request_line("GET", "Observation/a..b").is_ok());
}

#[test]
fn an_absolute_url_is_refused_by_its_path_alone() {
    for path in [
        "http://other.example.org/fhir/Observation/1",
        "https://fhir.example.org/r4/Patient/123",
        "//other.example.org/fhir/Observation/1",
        "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a",
    ] {
        let error = parse_request_line("GET", path).unwrap_err();
        assert!(
            matches!(error, RequestLineError::AbsoluteUrl { .. }),
            "{path}: {error:?}"
        );
        assert!(error.to_string().contains("relative to the FHIR base"));
    }
    // RFC 3986 allows `:` and `/` in a query: token systems and conditional updates.
    for (method, path) in [
        ("GET", "Observation?code=http://loinc.org|8867-4"),
        ("GET", "Observation?code=http%3A%2F%2Floinc.org%7C8867-4"),
        ("PUT", "Patient?identifier=http://hospital.example/mrn|123"),
        (
            "GET",
            "/Observation?subject=https://ehr.example.org/fhir/Patient/123",
        ),
    ] {
        assert!(parse_request_line(method, path).is_ok(), "{method} {path}");
    }
    let request = parse_request_line("GET", "Observation?code=http://loinc.org|8867-4").unwrap();
    assert_eq!(request.params[0].value, "http://loinc.org|8867-4");
}

#[test]
fn dot_segments_are_named_as_such() {
    for path in [
        "Observation/..",
        "Observation/.",
        "Observation/1/_history/..",
    ] {
        let error = parse_request_line("GET", path).unwrap_err();
        assert!(
            matches!(error, RequestLineError::DotSegment { .. }),
            "{path}: {error:?}"
        );
        assert!(error.to_string().contains("dot segment"));
    }
}

/// Everything after a raw `#` is a fragment to a URL parser: a condition or a query there
/// would be decided on while the server never sees it.
#[test]
fn a_raw_hash_is_refused() {
    for (method, path) in [
        ("DELETE", "Observation?#"),
        ("GET", "Observation?patient=123#&patient=456"),
        ("GET", "Observation/1#x"),
    ] {
        assert_eq!(
            parse_error(method, path),
            RequestLineError::Fragment,
            "{path}"
        );
    }
    assert_eq!(
        parse("GET", "Observation?code=a%23b").params[0].value,
        "a#b"
    );
}
