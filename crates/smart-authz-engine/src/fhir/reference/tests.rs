use super::*;

#[test]
fn resolves_relative_versioned_and_absolute_references() {
    assert_eq!(parse_reference("Patient/123"), Some(("Patient", "123")));
    assert_eq!(
        parse_reference("Patient/123/_history/4"),
        Some(("Patient", "123"))
    );
    assert_eq!(
        parse_reference("https://ehr.example.org/fhir/R4/Patient/abc-1"),
        Some(("Patient", "abc-1"))
    );
    assert_eq!(
        parse_reference("http://ehr.example.org:8080/Patient/1/_history/2"),
        Some(("Patient", "1"))
    );
    assert_eq!(
        parse_reference("HTTPS://ehr.example.org/Patient/1"),
        Some(("Patient", "1"))
    );
    // Any server's base: the engine does not know the base URL (docs/semantics.md).
    assert_eq!(
        parse_reference("https://ehr.example.org/Group/1/Patient/123"),
        Some(("Patient", "123"))
    );
}

#[test]
fn contained_logical_and_malformed_references_never_resolve() {
    for reference in [
        "#p1",
        "urn:uuid:1234",
        "urn:oid:1.2.3/Patient/1",
        "Patient",
        "",
        "Patient/",
        "patient/1",
        "/1",
        "Patient/123/_history/",
        "Patient/123/_history",
        "Patient/a b",
        "Patient/123?_format=json",
        "Patient/123#x",
    ] {
        assert_eq!(parse_reference(reference), None, "{reference}");
    }
}

#[test]
fn a_relative_reference_is_exactly_type_and_id() {
    for reference in [
        "Group/1/Patient/123",
        "Patient/456/Patient/123",
        "Patient/../Patient/123",
        "./Patient/123",
        "/Patient/123",
        "fhir/Patient/123",
        "Patient/123/",
        "Patient//123",
        "Patient/123/_history/2/x",
        "Patient/123/history/2",
        "Patient/123/_history/a|b",
        "Patient/.",
        "Patient/..",
    ] {
        assert_eq!(parse_reference(reference), None, "{reference}");
    }
}

#[test]
fn an_absolute_reference_needs_a_plausible_base_without_dot_segments() {
    for reference in [
        "https://ehr.example/fhir/../Patient/123",
        "https://ehr.example/fhir/./Patient/123",
        "https://ehr.example/fhir/%2e%2e/Patient/123",
        "https://ehr.example/fhir/.%2E/Patient/123",
        "https://ehr.example//Patient/123",
        "https://ehr.example/Patient/123/",
        "https://ehr.example/Patient/../Patient/123",
        "https:///Patient/123",
        "https://user@/Patient/123",
        "https://:443/Patient/123",
        "https://ehr.example",
        "https://ehr.example/123",
        "ftp://ehr.example/Patient/123",
        "file://host/Patient/123",
        "javascript://x/Patient/123",
        "urn://x/Patient/123",
        "https://ehr.example/fhir\\Patient/123",
        "https://ehr.example/Patient/123?x=1",
        "https://ehr.example/Bundle/1#Patient/123",
        "https://ehr example/Patient/123",
    ] {
        assert_eq!(parse_reference(reference), None, "{reference}");
    }
}

#[test]
fn id_of_accepts_bare_ids_and_checks_the_type() {
    assert_eq!(id_of("Patient", "123"), Some("123"));
    assert_eq!(id_of("Patient", "a-b.C9"), Some("a-b.C9"));
    assert_eq!(id_of("Patient", "Patient/123"), Some("123"));
    assert_eq!(
        id_of("Patient", "https://ehr.example/Patient/123"),
        Some("123")
    );
    assert_eq!(id_of("Patient", "Practitioner/123"), None);
    assert_eq!(id_of("Patient", "Group/1/Patient/123"), None);
    assert_eq!(id_of("Patient", ""), None);
}

#[test]
fn id_of_requires_the_fhir_id_grammar_for_bare_ids() {
    let longest = "a".repeat(64);
    assert_eq!(id_of("Patient", &longest), Some(longest.as_str()));
    for text in [
        "123,456",
        "a|b",
        "123 456",
        " 123",
        "",
        "urn:uuid:1",
        "a_b",
        "é",
        ".",
        "..",
        &"a".repeat(65),
    ] {
        assert_eq!(id_of("Patient", text), None, "{text:?}");
    }
}

#[test]
fn a_known_base_makes_only_its_own_absolute_references_local() {
    let bases = [
        "https://a.example/fhir".to_owned(),
        "http://a.internal/r4".to_owned(),
    ];
    let locality = Locality::of(&bases);
    assert!(locality.knows_bases());
    assert_eq!(locality.resolve("Patient/123"), Some(("Patient", "123")));
    assert_eq!(
        locality.resolve("https://a.example/fhir/Patient/123"),
        Some(("Patient", "123"))
    );
    assert_eq!(
        locality.resolve("http://a.internal/r4/Patient/123/_history/2"),
        Some(("Patient", "123"))
    );
    for foreign in [
        "https://b.example/fhir/Patient/123",
        // Another spelling of the base, a longer base, a deeper path: never guessed.
        "HTTPS://a.example/fhir/Patient/123",
        "https://a.example/fhir2/Patient/123",
        "https://a.example/fhir/Group/1/Patient/123",
        "https://a.example/fhir/https://b.example/Patient/123",
        "https://a.example/fhirPatient/123",
    ] {
        assert_eq!(locality.resolve(foreign), None, "{foreign}");
    }
    assert_eq!(
        locality.local_path("https://a.example/fhir/Patient/1/_history/2"),
        Some("Patient/1/_history/2")
    );
    assert_eq!(
        Locality::ANY_BASE.local_path("https://a.example/fhir/Patient/1"),
        None
    );
    assert_eq!(
        Locality::ANY_BASE.resolve("https://b.example/fhir/Patient/123"),
        Some(("Patient", "123")),
        "an unknown base reads every base"
    );
}

#[test]
fn a_dot_segment_is_found_in_every_spelling_of_its_dots() {
    // The definition: with every `%2e` and `%2E` decoded, the segment is `.` or `..`.
    let decoded_is_dots = |segment: &str| {
        let decoded = segment.replace("%2e", ".").replace("%2E", ".");
        decoded == "." || decoded == ".."
    };
    let pieces = [".", "%2e", "%2E", "%2", "%", "e", "a", "é", "%2%2e", ""];
    let mut segments = 0;
    for first in pieces {
        for second in pieces {
            for third in pieces {
                let segment = format!("{first}{second}{third}");
                assert_eq!(
                    is_plain_segment(&segment),
                    !segment.is_empty() && !decoded_is_dots(&segment),
                    "{segment:?}"
                );
                segments += 1;
            }
        }
    }
    assert_eq!(segments, 1000);
    for dots in [".", "..", "%2e", "%2E", ".%2e", "%2E.", "%2e%2E", "%2E%2E"] {
        assert!(!is_valid_id(dots), "{dots}");
    }
    for plain in ["...", "%2e%2e%2e", ".a", "a.", "1.2"] {
        assert!(is_plain_segment(plain), "{plain}");
    }
}
