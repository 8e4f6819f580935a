use proptest::prelude::*;
use serde_json::json;

use super::*;

fn values<'a>(expression: &str, resource: &'a Value) -> Vec<&'a Value> {
    Expression::parse(expression)
        .unwrap()
        .evaluate(resource)
        .into_iter()
        .map(|node| node.value)
        .collect()
}

fn detail(expression: &str) -> String {
    match Expression::parse(expression) {
        Err(FhirPathError::Unsupported {
            expression: echoed,
            detail,
        }) => {
            assert_eq!(echoed, expression);
            detail
        }
        Ok(parsed) => panic!("{expression} parsed: {parsed:?}"),
    }
}

fn observation() -> Value {
    json!({
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "category": [
            {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]},
            {"coding": [{"system": "http://example.org/cat", "code": "x"}], "text": "X"}
        ],
        "subject": {"reference": "Patient/123"},
        "performer": [
            {"reference": "Practitioner/9"},
            {"reference": "https://ehr.example/fhir/Patient/456"},
            {"reference": "#p1"},
            {"identifier": {"system": "urn:mrn", "value": "77"}},
            {"reference": "urn:uuid:0f6a1b2c-0000-4000-8000-000000000000"}
        ],
        "valueCodeableConcept": {"text": "positive"},
        "component": [
            {"valueString": "a"},
            {"valueQuantity": {"value": 5, "unit": "mg"}}
        ]
    })
}

#[test]
fn paths_flatten_arrays_and_check_the_root_type() {
    let resource = observation();
    assert_eq!(values("Observation.status", &resource), [&json!("final")]);
    assert_eq!(
        values("Observation.category.coding.code", &resource),
        [&json!("laboratory"), &json!("x")]
    );
    assert_eq!(values("Observation.performer", &resource).len(), 5);
    assert!(values("Patient.status", &resource).is_empty());
    assert!(values("Observation.missing.deeper", &resource).is_empty());
    assert_eq!(values("Observation", &resource), [&resource]);
    assert_eq!(values("Resource.id", &resource), [&json!("o1")]);
    assert_eq!(values("DomainResource.id", &resource), [&json!("o1")]);
    assert_eq!(values("status", &resource), [&json!("final")]);
    assert!(values("Observation.status", &json!({"status": "final"})).is_empty());
}

#[test]
fn unions_and_parentheses() {
    let resource = observation();
    assert_eq!(
        values(
            "Observation.status | Observation.id | Patient.id",
            &resource
        ),
        [&json!("final"), &json!("o1")]
    );
    assert_eq!(
        values("(Observation.value as CodeableConcept).text", &resource),
        [&json!("positive")]
    );
    assert_eq!(
        values("(Observation.value.ofType(CodeableConcept))", &resource).len(),
        1
    );
    assert_eq!(
        values(
            "((Observation.status) | (Observation.id)) | Observation.subject.reference",
            &resource
        )
        .len(),
        3
    );
}

#[test]
fn choice_elements_record_their_type() {
    let resource = observation();
    let nodes = Expression::parse("(Observation.component.value).ofType(string)")
        .unwrap()
        .evaluate(&resource);
    let types: Vec<_> = nodes.iter().map(|node| node.type_name).collect();
    assert_eq!(types, [Some("String")]);
    let nodes = Expression::parse("Observation.component.value.ofType(Quantity)")
        .unwrap()
        .evaluate(&resource);
    let types: Vec<_> = nodes.iter().map(|node| node.type_name).collect();
    assert_eq!(types, [Some("Quantity")]);
    assert_eq!(
        values("Observation.component.value as string", &resource),
        [&json!("a")]
    );
    assert_eq!(
        values("Observation.component.value.as(Quantity).unit", &resource),
        [&json!("mg")]
    );
    assert_eq!(
        values("Observation.component.value.ofType(String)", &resource),
        [&json!("a")]
    );
    assert!(values("Observation.value as string", &resource).is_empty());
    assert!(values("Observation.value.ofType(Quantity)", &resource).is_empty());
    // Only FHIR type names make a choice element.
    let encounter =
        json!({"resourceType": "Encounter", "classHistory": [{"class": {"code": "AMB"}}]});
    assert!(values("Encounter.class", &encounter).is_empty());
    // Without a type filter only the element itself is read.
    let odd = json!({"resourceType": "Basic", "value": "plain", "valueString": "choice"});
    assert_eq!(values("Basic.value", &odd), [&json!("plain")]);
}

#[test]
fn an_element_given_twice_is_ambiguous() {
    let parse = |text: &str| Expression::parse(text).unwrap();
    // As itself and as a choice element: both are read, and the checked evaluation refuses.
    let both = json!({
        "resourceType": "NutritionIntake",
        "reported": {"reference": "Patient/123"},
        "reportedReference": {"reference": "Patient/456"}
    });
    let source = parse("(NutritionIntake.reported as Reference)");
    assert_eq!(source.evaluate(&both).len(), 2);
    let ambiguous = source.evaluate_checked(&both).unwrap_err();
    assert_eq!(
        (ambiguous.first, ambiguous.second),
        ("reported", "reportedReference")
    );
    // As two choice elements.
    let two = json!({
        "resourceType": "Observation",
        "valueString": "a",
        "valueCodeableConcept": {"text": "b"}
    });
    assert!(
        parse("Observation.value.ofType(string)")
            .evaluate_checked(&two)
            .is_err()
    );
    // Inside an array element too.
    let component = json!({
        "resourceType": "Observation",
        "component": [{"valueString": "a"}, {"value": "b", "valueBoolean": true}]
    });
    assert!(
        parse("Observation.component.value.ofType(string)")
            .evaluate_checked(&component)
            .is_err()
    );
    // One spelling, or a key that only looks like one, is fine.
    assert!(
        parse("Observation.value.ofType(string)")
            .evaluate_checked(&json!({"resourceType": "Observation", "valueString": "a"}))
            .is_ok()
    );
    let history =
        json!({"resourceType": "Encounter", "classCoding": {"code": "AMB"}, "classHistory": []});
    assert!(
        parse("Encounter.class.ofType(Coding)")
            .evaluate_checked(&history)
            .is_ok()
    );
    // A choice element given without its type: read, and refused by the checked evaluation
    // (FHIR JSON names the type; a server drops the bare key or reads it its own way).
    let bare = json!({"resourceType": "Observation", "value": {"coding": [{"code": "x"}]}});
    let source = parse("(Observation.value as CodeableConcept)");
    assert_eq!(source.evaluate(&bare).len(), 1);
    let untyped = source.evaluate_checked(&bare).unwrap_err();
    assert_eq!((untyped.first, untyped.second), ("value", "value"));
    assert!(
        untyped.to_string().contains("without its type"),
        "{untyped}"
    );
    // Without a type filter the choice spellings are not this element.
    assert!(
        parse("Basic.value")
            .evaluate_checked(
                &json!({"resourceType": "Basic", "value": "plain", "valueString": "choice"})
            )
            .is_ok()
    );
}

#[test]
fn choice_elements_are_read_only_right_before_a_type_filter() {
    let resource = observation();
    // Without a type filter, `value` is the element `value`, never `value[x]`.
    assert!(values("Observation.value", &resource).is_empty());
    assert!(values("Observation.component.value", &resource).is_empty());
    assert!(values("(Observation.value)", &resource).is_empty());
    // ...nor a filter further down the path.
    assert!(values("Observation.value.text.ofType(string)", &resource).is_empty());
    assert!(values("Observation.value.where(text = 'positive')", &resource).is_empty());
    // Every form of type filter right after the step reads it.
    for expression in [
        "Observation.value as CodeableConcept",
        "Observation.value.as(CodeableConcept)",
        "Observation.value.ofType(CodeableConcept)",
        "(Observation.value).ofType(CodeableConcept)",
        "(Observation.status | (Observation.value)) as CodeableConcept",
    ] {
        assert_eq!(
            values(expression, &resource),
            [&json!({"text": "positive"})],
            "{expression}"
        );
    }
    // Made-up keys never stand for a non-choice element.
    let invented = json!({
        "resourceType": "Observation",
        "subjectReference": {"reference": "Patient/123"},
        "categoryCoding": [{"code": "laboratory"}],
        "telecom": [{"systemCode": "email", "value": "a@b.example"}]
    });
    assert!(values("Observation.subject", &invented).is_empty());
    assert!(values("Observation.subject.where(resolve() is Patient)", &invented).is_empty());
    assert!(values("Observation.category", &invented).is_empty());
    assert!(values("subject", &invented).is_empty());
    assert!(values("Observation.telecom.where(system = 'email')", &invented).is_empty());
}

#[test]
fn type_filters_decide_structurally_without_a_choice_suffix() {
    let resource = json!({
        "resourceType": "Basic",
        "item": [
            {"reference": "Patient/1"},
            {"coding": [{"code": "a"}]},
            {"system": "http://s", "code": "c", "display": "C"},
            {"system": "urn:oid:1.2", "value": "v"},
            {"system": "phone", "value": "555"},
            "text",
            true,
            {"value": 3, "unit": "mg"},
            {"start": "2020"},
            42
        ]
    });
    let count =
        |type_name: &str| values(&format!("Basic.item.ofType({type_name})"), &resource).len();
    assert_eq!(count("Reference"), 1);
    assert_eq!(count("CodeableConcept"), 1);
    assert_eq!(count("Coding"), 1);
    assert_eq!(count("Identifier"), 1);
    assert_eq!(count("ContactPoint"), 1);
    assert_eq!(count("string"), 1);
    assert_eq!(count("uri"), 1);
    assert_eq!(count("boolean"), 1);
    assert_eq!(count("Quantity"), 1);
    assert_eq!(count("Period"), 1);
    assert_eq!(count("integer"), 1);
    assert_eq!(count("Annotation"), 0);
    assert_eq!(values("Basic.item as FHIR.Reference", &resource).len(), 1);
}

#[test]
fn where_resolve_is_uses_literal_references_only() {
    let resource = observation();
    let expression = "Observation.performer.where(resolve() is Patient)";
    assert_eq!(
        values(expression, &resource),
        [&json!({"reference": "https://ehr.example/fhir/Patient/456"})]
    );
    assert_eq!(
        values(
            "Observation.subject.where(resolve() is Patient) | Observation.performer.where(resolve() is Practitioner)",
            &resource
        ),
        [
            &json!({"reference": "Patient/123"}),
            &json!({"reference": "Practitioner/9"})
        ]
    );
    let versioned =
        json!({"resourceType": "Encounter", "subject": {"reference": "Patient/7/_history/2"}});
    assert_eq!(
        values("Encounter.subject.where(resolve() is Patient)", &versioned).len(),
        1
    );
    let group = json!({"resourceType": "Encounter", "subject": {"reference": "Group/7"}});
    assert!(values("Encounter.subject.where(resolve() is Patient)", &group).is_empty());
    let contained = json!({"resourceType": "Encounter", "subject": {"reference": "#p1"},
        "contained": [{"resourceType": "Patient", "id": "p1"}]});
    assert!(values("Encounter.subject.where(resolve() is Patient)", &contained).is_empty());
    let logical = json!({"resourceType": "Encounter", "subject": {"type": "Patient", "identifier": {"value": "1"}}});
    assert!(values("Encounter.subject.where(resolve() is Patient)", &logical).is_empty());
    assert_eq!(
        values(
            "Encounter.subject.where( resolve ( ) is FHIR.Patient )",
            &versioned
        )
        .len(),
        1
    );
}

#[test]
fn where_field_equals_literal() {
    let patient = json!({
        "resourceType": "Patient",
        "telecom": [
            {"system": "phone", "value": "555"},
            {"system": "email", "value": "a@b.example"}
        ],
        "name": [{"use": ["odd", "array"], "family": "X"}]
    });
    assert_eq!(
        values("Patient.telecom.where(system='email').value", &patient),
        [&json!("a@b.example")]
    );
    assert_eq!(
        values("Patient.telecom.where(system = 'phone')", &patient).len(),
        1
    );
    assert!(values("Patient.telecom.where(system='sms')", &patient).is_empty());
    assert!(values("Patient.name.where(use='odd')", &patient).is_empty());
    let escaped = json!({"resourceType": "Basic", "code": [{"text": "it's"}]});
    assert_eq!(values(r"Basic.code.where(text='it\'s')", &escaped).len(), 1);
}

#[test]
fn unsupported_forms_are_refused_with_a_reason() {
    assert!(detail("Patient.deceased.exists() and Patient.deceased != false").contains("exists"));
    assert!(detail("Bundle.entry[0].resource").contains("indexer"));
    assert!(detail("CareTeam.extension('http://x').value").contains("extension"));
    assert!(detail("Observation.subject.resolve()").contains("resolve"));
    assert!(detail("Observation.a and Observation.b").contains("`and`"));
    assert!(detail("Observation.a is Reference").contains("is"));
    assert!(detail("Observation.a = 'x'").contains("operators"));
    assert!(detail("Observation.a.where(b != 'x')").contains("where()"));
    assert!(detail("Observation.a.where(resolve())").contains("resolve"));
    assert!(detail("Observation.a.where(b.exists())").contains("where()"));
    assert!(detail("Observation.a.where(b='x").contains("unterminated"));
    assert!(detail("(Observation.a").contains("expected ')'"));
    assert!(detail("Observation.a)").contains("end of expression"));
    assert!(detail("").contains("identifier"));
    assert!(detail("Observation.").contains("identifier"));
    assert!(detail("Observation.a |").contains("identifier"));
    assert!(detail("`Observation`.a").contains("identifier"));
    assert!(detail("exists()").contains("exists"));
    assert!(detail("Observation.value as").contains("identifier"));
    assert!(detail("Observation.value as a.b").contains("qualified"));
    assert!(
        detail(&format!(
            "{}Observation.a{}",
            "(".repeat(40),
            ")".repeat(40)
        ))
        .contains("deeply")
    );
}

#[test]
fn every_search_parameter_expression_of_the_relevant_kinds_parses_or_is_refused_cleanly() {
    use crate::fhir::tables::SearchParamKind;
    use crate::fhir::version::FhirVersion;
    let mut refused = Vec::new();
    for version in FhirVersion::ALL {
        for (resource_type, params) in version.tables().search_params {
            for param in *params {
                let Some(expression) = param.expression else {
                    continue;
                };
                if !matches!(
                    param.kind,
                    SearchParamKind::Token
                        | SearchParamKind::String
                        | SearchParamKind::Reference
                        | SearchParamKind::Uri
                ) {
                    continue;
                }
                if Expression::parse(expression).is_err() {
                    refused.push(format!("{version} {resource_type}.{}", param.code));
                }
            }
        }
    }
    // Indexers, exists()/!= and extension(): outside the subset on purpose.
    assert_eq!(refused.len(), 13, "{refused:#?}");
    assert!(
        refused.iter().all(|name| name.contains("Bundle.")
            || name.contains(".deceased")
            || name.contains("CareTeam.name")
            || name.contains("QuestionnaireResponse.item-subject")),
        "{refused:#?}"
    );
}

proptest! {
    #[test]
    fn parse_never_panics(text in "\\PC{0,80}") {
        let _ = Expression::parse(&text);
    }

    #[test]
    fn parse_never_panics_on_expression_like_text(
        text in "[A-Za-z().|' =!\\[\\]0-9\\\\é]{0,60}"
    ) {
        if let Ok(expression) = Expression::parse(&text) {
            let _ = expression.evaluate(&observation());
        }
    }
}
