//! FHIR references (`Patient/123`, `https://host/fhir/Patient/123/_history/2`) reduced to the
//! type and id that compartment membership compares.

/// The resource type and id a literal reference points to.
///
/// Relative (`Patient/123`), versioned (`Patient/123/_history/2`) and absolute URLs ending in
/// `/Patient/123` resolve; contained (`#p1`), `urn:` and logical (identifier-only) references
/// do not, because nothing proves which resource they denote (FHIR R4 references.html §2.3.0).
pub fn parse_reference(reference: &str) -> Option<(&str, &str)> {
    if reference.starts_with('#') || reference.starts_with("urn:") {
        return None;
    }
    let without_query = reference.split(['?', '#']).next().unwrap_or_default();
    let mut segments: Vec<&str> = without_query.split('/').collect();
    if segments.len() >= 4 && segments[segments.len() - 2] == "_history" {
        segments.truncate(segments.len() - 2);
    }
    let [.., resource_type, id] = segments[..] else {
        return None;
    };
    let type_ok = resource_type.starts_with(|first: char| first.is_ascii_uppercase())
        && resource_type.chars().all(|c| c.is_ascii_alphabetic());
    let id_ok = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    (type_ok && id_ok).then_some((resource_type, id))
}

/// The id of a `Patient` (or of a `Type/id` reference of `expected_type`), accepting a bare
/// id too: `123`, `Patient/123`, or an absolute URL ending in `/Patient/123`.
pub fn id_of<'a>(expected_type: &str, text: &'a str) -> Option<&'a str> {
    if !text.contains('/') {
        return (!text.is_empty()).then_some(text);
    }
    match parse_reference(text) {
        Some((resource_type, id)) if resource_type == expected_type => Some(id),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
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
    }

    #[test]
    fn contained_logical_and_malformed_references_never_resolve() {
        for reference in [
            "#p1",
            "urn:uuid:1234",
            "Patient",
            "",
            "Patient/",
            "patient/1",
            "/1",
        ] {
            assert_eq!(parse_reference(reference), None, "{reference}");
        }
    }

    #[test]
    fn id_of_accepts_bare_ids_and_checks_the_type() {
        assert_eq!(id_of("Patient", "123"), Some("123"));
        assert_eq!(id_of("Patient", "Patient/123"), Some("123"));
        assert_eq!(id_of("Patient", "Practitioner/123"), None);
        assert_eq!(id_of("Patient", ""), None);
    }
}
