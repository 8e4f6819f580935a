use proptest::prelude::*;

use super::*;
use crate::fhir::interaction::{CompartmentRef, SearchParam};

/// Every shape of request line reads back to itself through the structured form.
#[test]
fn every_request_line_round_trips_through_the_structured_form() {
    for (method, path) in [
        ("GET", "Observation/o1"),
        ("GET", "Observation/o1/_history/2"),
        ("PUT", "Observation/o1"),
        ("PUT", "Observation?identifier=http://acme.org/obs|6323"),
        ("PATCH", "Observation/o1"),
        ("DELETE", "Observation?code=x"),
        ("GET", "Observation/o1/_history"),
        (
            "GET",
            "Observation/_history?_since=2020-01-01T00:00:00%2B01:00",
        ),
        ("GET", "_history"),
        ("POST", "Observation"),
        (
            "GET",
            "Observation?code=http://loinc.org|8867-4&subject:Patient=123&_count=10",
        ),
        ("GET", "?_type=Observation,Condition"),
        ("GET", "Patient/123/Observation?code=x"),
        ("GET", "Patient/123/*"),
        ("GET", "metadata"),
        ("GET", ".well-known/smart-configuration"),
        ("GET", "$export?_type=Observation"),
        ("GET", "Patient/$match"),
        ("GET", "Patient/123/$everything"),
    ] {
        let parsed = parse_request_line(method, path).unwrap();
        assert_eq!(
            validate_structured(&parsed),
            Ok(parsed.clone()),
            "{method} {path}"
        );
    }
}

#[test]
fn fields_are_held_to_the_request_line_grammar() {
    let vread = FhirRequest {
        version_id: Some("../../456".to_owned()),
        ..FhirRequest::new(Interaction::Vread)
            .with_type("Patient")
            .with_id("123")
    };
    assert!(validate_structured(&vread).is_err());
    for id in ["..", ".", "1/2", "a?b", "", "x".repeat(65).as_str()] {
        let read = FhirRequest::new(Interaction::Read)
            .with_type("Observation")
            .with_id(id);
        assert!(validate_structured(&read).is_err(), "{id:?}");
    }
    for resource_type in [
        "observation",
        "Observation/1",
        "_history",
        "Observation?x=y",
    ] {
        let search = FhirRequest::new(Interaction::SearchType).with_type(resource_type);
        assert!(validate_structured(&search).is_err(), "{resource_type:?}");
    }
    let operation = FhirRequest {
        operation: Some("everything/../../x".to_owned()),
        ..FhirRequest::new(Interaction::Operation).with_type("Patient")
    };
    assert!(validate_structured(&operation).is_err());
}

#[test]
fn a_public_endpoint_carries_nothing_else() {
    for interaction in [Interaction::Capabilities, Interaction::SmartConfiguration] {
        let with_type = FhirRequest::new(interaction).with_type("Patient");
        assert_eq!(
            validate_structured(&with_type),
            Err(StructuredError::UnusedField {
                field: "resource_type",
                interaction
            })
        );
        let with_id = FhirRequest::new(interaction).with_id("123");
        assert!(validate_structured(&with_id).is_err());
        let with_compartment = FhirRequest {
            compartment: Some(CompartmentRef::new("Patient", "456")),
            ..FhirRequest::new(interaction)
        };
        assert!(validate_structured(&with_compartment).is_err());
    }
    let read_with_operation = FhirRequest {
        operation: Some("everything".to_owned()),
        ..FhirRequest::new(Interaction::Read)
            .with_type("Patient")
            .with_id("123")
    };
    assert_eq!(
        validate_structured(&read_with_operation),
        Err(StructuredError::UnusedField {
            field: "operation",
            interaction: Interaction::Read
        })
    );
    assert!(validate_structured(&FhirRequest::new(Interaction::Batch)).is_err());
}

proptest! {
    /// Any parameter value without control characters reads back exactly.
    #[test]
    fn parameter_values_round_trip(name in "[a-z_][a-z:-]{0,12}", value in "[^\\p{Cc}]{0,40}") {
        let search = FhirRequest {
            params: vec![SearchParam::new(name, value)],
            ..FhirRequest::new(Interaction::SearchType).with_type("Observation")
        };
        prop_assert_eq!(validate_structured(&search), Ok(search.clone()));
    }
}
