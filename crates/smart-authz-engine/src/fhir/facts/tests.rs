use serde_json::json;

use super::filters::{CHOICE_WITHOUT_TYPE_FILTER, SystemFilter, TokenFilter, parse_token};
use super::*;
use crate::fhir::fhirpath::Expression;

const CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|value| (*value).to_owned()).collect()
}

fn lab_observation() -> Resource {
    Resource::Json(json!({
        "resourceType": "Observation",
        "id": "hb-1",
        "meta": {
            "versionId": "3",
            "lastUpdated": "2024-02-01T10:00:00Z",
            "profile": ["http://hl7.org/fhir/us/core/StructureDefinition/us-core-observation-lab"],
            "security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "N"}],
            "tag": [{"system": "http://example.org/tags", "code": "research", "display": "Research"}]
        },
        "status": "final",
        "category": [
            {"coding": [{"system": CATEGORY, "code": "laboratory", "display": "Laboratory"}]},
            {"coding": [{"system": "http://example.org/local-category", "code": "hematology"}], "text": "Hematology"}
        ],
        "code": {
            "coding": [{"system": "http://loinc.org", "code": "718-7", "display": "Hemoglobin [Mass/volume] in Blood"}],
            "text": "Hemoglobin"
        },
        "subject": {"reference": "Patient/123", "display": "Amy Shaw"},
        "encounter": {"reference": "Encounter/e-9"},
        "effectiveDateTime": "2024-02-01T09:30:00Z",
        "issued": "2024-02-01T10:00:00.000Z",
        "performer": [
            {"reference": "Practitioner/pr-1"},
            {"reference": "Patient/456"}
        ],
        "valueQuantity": {"value": 13.2, "unit": "g/dL", "system": "http://unitsofmeasure.org", "code": "g/dL"},
        "interpretation": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": "N"}]}],
        "referenceRange": [{"low": {"value": 12, "unit": "g/dL"}, "high": {"value": 16, "unit": "g/dL"}}]
    }))
}

fn patient() -> Resource {
    Resource::Json(json!({
        "resourceType": "Patient",
        "id": "123",
        "meta": {"profile": ["http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"]},
        "identifier": [
            {
                "use": "usual",
                "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]},
                "system": "urn:oid:1.2.36.146.595.217.0.1",
                "value": "12345"
            },
            {"system": "http://hl7.org/fhir/sid/us-ssn", "value": "444-22-2222"}
        ],
        "active": true,
        "name": [
            {"use": "official", "family": "Chalmers", "given": ["Peter", "James"]},
            {"use": "usual", "given": ["Jim"]}
        ],
        "telecom": [
            {"system": "phone", "value": "(03) 5555 6473", "use": "work"},
            {"system": "email", "value": "jim@example.org"}
        ],
        "gender": "male",
        "birthDate": "1974-12-25",
        "address": [{"use": "home", "line": ["534 Erewhon St"], "city": "PleasantVille", "postalCode": "3999"}],
        "generalPractitioner": [{"reference": "Practitioner/pr-1"}],
        "link": [
            {"other": {"reference": "Patient/999"}, "type": "seealso"},
            {"other": {"reference": "RelatedPerson/rp-1"}, "type": "seealso"}
        ]
    }))
}

fn observation_with(field: &str, reference: &str) -> Resource {
    let mut value = json!({
        "resourceType": "Observation",
        "id": "o-1",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}
    });
    value[field] = json!({"reference": reference});
    Resource::Json(value)
}

fn filter(
    resource: &Resource,
    version: FhirVersion,
    resource_type: &str,
    param: &str,
    values: &[&str],
) -> FilterMatch {
    resource.matches_filter(version, resource_type, param, &strings(values))
}

#[test]
fn from_json_bytes_requires_an_object_with_a_resource_type() {
    let resource =
        Resource::from_json_bytes(br#"{"resourceType":"Observation","id":"o1"}"#).unwrap();
    assert_eq!(resource.resource_type(), Some("Observation"));
    assert_eq!(resource.id(), Some("o1"));
    match Resource::from_json_bytes(b"{not json") {
        Err(FactsError::InvalidJson(message)) => {
            assert!(message.contains("line 1"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        Resource::from_json_bytes(b"[1]"),
        Err(FactsError::NotAnObject)
    );
    assert_eq!(
        Resource::from_json_bytes(br#"{"id":"x"}"#),
        Err(FactsError::MissingResourceType)
    );
    assert_eq!(
        Resource::from_json_bytes(br#"{"resourceType":7}"#),
        Err(FactsError::MissingResourceType)
    );
    let facts = Resource::Facts(ResourceFacts::default());
    assert_eq!((facts.resource_type(), facts.id()), (None, None));
}

/// A reference, id or type the rules would read as absent, where a server (HAPI reads an
/// array item by item) reads a value: refused, at any depth.
#[test]
fn members_read_as_strings_must_be_strings() {
    for (json, name) in [
        (
            r#"{"resourceType":"Observation","subject":{"reference":["Patient/456"]}}"#,
            "reference",
        ),
        (
            r#"{"resourceType":"Observation","performer":[{"reference":7}]}"#,
            "reference",
        ),
        (
            r#"{"resourceType":"Observation","subject":{"reference":null}}"#,
            "reference",
        ),
        (r#"{"resourceType":"Observation","id":["o2"]}"#, "id"),
        (
            r#"{"resourceType":"Observation","contained":[{"resourceType":"Patient","id":1}]}"#,
            "id",
        ),
        (
            r#"{"resourceType":"Bundle","entry":[{"resource":{"resourceType":["Patient"]}}]}"#,
            "resourceType",
        ),
        (
            r#"{"resourceType":"Observation","extension":[{"url":"x","valueReference":{"reference":true}}]}"#,
            "reference",
        ),
    ] {
        match Resource::from_json_bytes(json.as_bytes()) {
            Err(FactsError::UnreadableMember { name: refused, .. }) => {
                assert_eq!(refused, name, "{json}")
            }
            other => panic!("{json}: {other:?}"),
        }
    }
    // A string, or an object where R5's CodeableReference holds a Reference.
    for json in [
        r#"{"resourceType":"Observation","id":"o1","subject":{"reference":"Patient/123"}}"#,
        r#"{"resourceType":"MedicationStatement","reason":[{"reference":{"reference":"Condition/c1"}}]}"#,
    ] {
        assert!(Resource::from_json_bytes(json.as_bytes()).is_ok(), "{json}");
    }
}

#[test]
fn observation_is_in_the_compartments_of_subject_and_performer() {
    for version in FhirVersion::ALL {
        assert_eq!(
            lab_observation().patient_compartments(version, "Observation"),
            ["123", "456"]
        );
    }
    // Read as another type, the JSON belongs to nothing.
    assert!(
        lab_observation()
            .patient_compartments(FhirVersion::R4, "Condition")
            .is_empty()
    );
}

#[test]
fn focus_and_group_subjects_do_not_make_members() {
    let focus = observation_with("focus", "Patient/123");
    let group = observation_with("subject", "Group/1");
    for version in FhirVersion::ALL {
        assert!(
            focus
                .patient_compartments(version, "Observation")
                .is_empty()
        );
        assert!(
            group
                .patient_compartments(version, "Observation")
                .is_empty()
        );
    }
    // ...but a focus on a patient is a reference to that patient.
    assert_eq!(
        focus.referenced_patients(FhirVersion::R4, "Observation"),
        ["123"]
    );
    assert!(
        group
            .referenced_patients(FhirVersion::R4, "Observation")
            .is_empty()
    );
}

#[test]
fn only_literal_references_count() {
    let absolute = observation_with("subject", "https://ehr.example/fhir/Patient/123");
    let versioned = observation_with("subject", "Patient/123/_history/2");
    let contained = Resource::Json(json!({
        "resourceType": "Observation",
        "status": "final",
        "contained": [{"resourceType": "Patient", "id": "p1"}],
        "subject": {"reference": "#p1"}
    }));
    let urn = observation_with("subject", "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a");
    let logical = Resource::Json(json!({
        "resourceType": "Observation",
        "subject": {"type": "Patient", "identifier": {"system": "urn:oid:1.2.36", "value": "123"}}
    }));
    for version in FhirVersion::ALL {
        assert_eq!(
            absolute.patient_compartments(version, "Observation"),
            ["123"]
        );
        assert_eq!(
            versioned.patient_compartments(version, "Observation"),
            ["123"]
        );
        for resource in [&contained, &urn, &logical] {
            assert!(
                resource
                    .patient_compartments(version, "Observation")
                    .is_empty()
            );
            assert!(
                resource
                    .referenced_patients(version, "Observation")
                    .is_empty()
            );
        }
    }
}

#[test]
fn encounter_links_through_patient_only() {
    // R4/R4B/R5 list only `patient` (Encounter.subject.where(resolve() is Patient)).
    let encounter = Resource::Json(json!({
        "resourceType": "Encounter",
        "id": "e-9",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": "Patient/123"},
        "participant": [{"individual": {"reference": "Practitioner/pr-1"}}],
        "period": {"start": "2024-02-01T09:00:00Z", "end": "2024-02-01T09:45:00Z"}
    }));
    let group = Resource::Json(json!({
        "resourceType": "Encounter",
        "status": "finished",
        "subject": {"reference": "Group/g-1"}
    }));
    for version in FhirVersion::ALL {
        assert_eq!(
            version.patient_compartment().params("Encounter"),
            Some(&["patient"][..])
        );
        assert_eq!(
            encounter.patient_compartments(version, "Encounter"),
            ["123"]
        );
        assert!(group.patient_compartments(version, "Encounter").is_empty());
    }
}

#[test]
fn condition_links_differ_between_r4_and_r5() {
    let r4 = Resource::Json(json!({
        "resourceType": "Condition",
        "id": "c-1",
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "39065001"}]},
        "subject": {"reference": "Patient/123"},
        "asserter": {"reference": "Patient/456"}
    }));
    assert_eq!(
        r4.patient_compartments(FhirVersion::R4, "Condition"),
        ["123", "456"]
    );
    assert_eq!(
        r4.patient_compartments(FhirVersion::R4B, "Condition"),
        ["123", "456"]
    );
    // R5 has no asserter: its links are patient and participant-actor.
    assert_eq!(
        r4.patient_compartments(FhirVersion::R5, "Condition"),
        ["123"]
    );
    let r5 = Resource::Json(json!({
        "resourceType": "Condition",
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
        "subject": {"reference": "Patient/123"},
        "participant": [
            {"function": {"text": "informant"}, "actor": {"reference": "Patient/456"}},
            {"actor": {"reference": "Practitioner/pr-1"}}
        ]
    }));
    assert_eq!(
        r5.patient_compartments(FhirVersion::R5, "Condition"),
        ["123", "456"]
    );
    assert_eq!(
        r5.patient_compartments(FhirVersion::R4, "Condition"),
        ["123"]
    );
}

#[test]
fn medication_request_links_through_subject() {
    let request = Resource::Json(json!({
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "582620"}]},
        "subject": {"reference": "Patient/123"},
        "requester": {"reference": "Practitioner/pr-1"}
    }));
    for version in FhirVersion::ALL {
        assert_eq!(
            request.patient_compartments(version, "MedicationRequest"),
            ["123"]
        );
    }
}

#[test]
fn patient_is_in_its_own_compartment_and_its_links() {
    for version in FhirVersion::ALL {
        assert_eq!(
            patient().patient_compartments(version, "Patient"),
            ["123", "999"]
        );
    }
    let self_link = Resource::Json(json!({
        "resourceType": "Patient",
        "id": "123",
        "link": [{"other": {"reference": "Patient/123"}, "type": "replaced-by"}]
    }));
    assert_eq!(
        self_link.patient_compartments(FhirVersion::R4, "Patient"),
        ["123"]
    );
    let bad_id = Resource::Json(json!({"resourceType": "Patient", "id": "a/b"}));
    assert!(
        bad_id
            .patient_compartments(FhirVersion::R4, "Patient")
            .is_empty()
    );
}

#[test]
fn device_is_never_a_member_but_references_its_patient() {
    let device = Resource::Json(json!({
        "resourceType": "Device",
        "id": "d-1",
        "status": "active",
        "patient": {"reference": "Patient/123"},
        "owner": {"reference": "Organization/org-1"}
    }));
    assert_eq!(FhirVersion::R4.patient_compartment().params("Device"), None);
    assert!(
        device
            .patient_compartments(FhirVersion::R4, "Device")
            .is_empty()
    );
    assert_eq!(
        device.referenced_patients(FhirVersion::R4, "Device"),
        ["123"]
    );
    // R5 Device has no patient element nor any parameter targeting Patient, but a literal
    // reference to a patient still says whom the resource is about.
    assert_eq!(FhirVersion::R5.patient_compartment().params("Device"), None);
    assert!(
        device
            .patient_compartments(FhirVersion::R5, "Device")
            .is_empty()
    );
    assert_eq!(
        device.referenced_patients(FhirVersion::R5, "Device"),
        ["123"]
    );
}

#[test]
fn every_reference_of_a_resource_outside_the_compartment_counts() {
    let binary = Resource::Json(json!({
        "resourceType": "Binary",
        "id": "b1",
        "contentType": "application/pdf",
        "securityContext": {"reference": "Patient/456"},
        "data": "JVBERi0="
    }));
    let document = Resource::Json(json!({
        "resourceType": "Bundle",
        "id": "d1",
        "type": "document",
        "entry": [
            {"fullUrl": "urn:uuid:c1", "resource": {
                "resourceType": "Composition", "status": "final",
                "subject": {"reference": "Patient/456"}
            }},
            {"fullUrl": "urn:uuid:o1", "resource": {
                "resourceType": "Observation", "status": "final",
                "subject": {"reference": "http://other.example.org/fhir/Patient/789"}
            }}
        ]
    }));
    let carried = Resource::Json(json!({
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": {"resourceType": "Patient", "id": "456"}}]
    }));
    let contained_only = Resource::Json(json!({
        "resourceType": "Binary",
        "contentType": "text/plain",
        "contained": [{"resourceType": "Patient", "id": "p1"}]
    }));
    for version in FhirVersion::ALL {
        assert_eq!(binary.referenced_patients(version, "Binary"), ["456"]);
        assert_eq!(
            document.referenced_patients(version, "Bundle"),
            ["456", "789"]
        );
        assert_eq!(carried.referenced_patients(version, "Bundle"), ["456"]);
        assert!(
            contained_only
                .referenced_patients(version, "Binary")
                .is_empty()
        );
    }
}

#[test]
fn r5_device_association_links_subject_and_operator() {
    let association = Resource::Json(json!({
        "resourceType": "DeviceAssociation",
        "id": "da-1",
        "device": {"reference": "Device/d-1"},
        "status": {"coding": [{"system": "http://hl7.org/fhir/deviceassociation-status", "code": "attached"}]},
        "subject": {"reference": "Patient/123"},
        "operation": [{"status": {"text": "on"}, "operator": [{"reference": "Patient/456"}, {"reference": "Practitioner/pr-1"}]}]
    }));
    assert_eq!(
        FhirVersion::R5
            .patient_compartment()
            .params("DeviceAssociation"),
        Some(&["subject", "operator"][..])
    );
    assert_eq!(
        association.patient_compartments(FhirVersion::R5, "DeviceAssociation"),
        ["123", "456"]
    );
    assert_eq!(
        association.referenced_patients(FhirVersion::R5, "DeviceAssociation"),
        ["123", "456"]
    );
    // Not a resource type before R5.
    assert!(
        association
            .patient_compartments(FhirVersion::R4, "DeviceAssociation")
            .is_empty()
    );
}

#[test]
fn referenced_patients_adds_every_patient_reference() {
    let report = Resource::Json(json!({
        "resourceType": "DiagnosticReport",
        "status": "final",
        "code": {"text": "CBC"},
        "subject": {"reference": "Patient/123"},
        "performer": [{"reference": "Organization/lab"}]
    }));
    assert_eq!(
        report.referenced_patients(FhirVersion::R4, "DiagnosticReport"),
        ["123"]
    );
    // A mislabelled resource reveals the patients of its actual type too.
    let device =
        Resource::Json(json!({"resourceType": "Device", "patient": {"reference": "Patient/7"}}));
    assert_eq!(
        device.referenced_patients(FhirVersion::R4, "Observation"),
        ["7"]
    );
}

#[test]
fn facts_give_patient_compartments_only() {
    let facts = Resource::Facts(ResourceFacts {
        compartments: vec![
            CompartmentRef::new("Patient", "123"),
            CompartmentRef::new("Encounter", "e-9"),
            CompartmentRef::new("Patient", "456"),
            CompartmentRef::new("Patient", "123"),
        ],
        search_values: vec![],
    });
    assert_eq!(
        facts.patient_compartments(FhirVersion::R4, "Observation"),
        ["123", "456"]
    );
    assert_eq!(
        facts.referenced_patients(FhirVersion::R4, "Observation"),
        ["123", "456"]
    );
}

#[test]
fn invented_choice_keys_make_no_member_but_still_name_their_patients() {
    let invented = Resource::Json(json!({
        "resourceType": "Observation",
        "status": "final",
        "subjectReference": {"reference": "Patient/123"},
        "performerReference": [{"reference": "Patient/456"}]
    }));
    for version in FhirVersion::ALL {
        assert!(
            invented
                .patient_compartments(version, "Observation")
                .is_empty()
        );
        // The deny check of resources outside the compartment reads every literal reference.
        assert_eq!(
            invented.referenced_patients(version, "Observation"),
            ["456", "123"]
        );
        assert_eq!(
            filter(
                &invented,
                version,
                "Observation",
                "subject",
                &["Patient/123"]
            ),
            FilterMatch::NoMatch
        );
    }
    let device = Resource::Json(
        json!({"resourceType": "Device", "patientReference": {"reference": "Patient/7"}}),
    );
    assert!(
        device
            .patient_compartments(FhirVersion::R4, "Device")
            .is_empty()
    );
    assert_eq!(device.referenced_patients(FhirVersion::R4, "Device"), ["7"]);
}

#[test]
fn choice_elements_match_only_through_their_type_filter() {
    let invented = Resource::Json(json!({
        "resourceType": "Observation",
        "status": "final",
        "categoryCoding": [{"system": CATEGORY, "code": "laboratory"}],
        "codeCodeableConcept": {"coding": [{"system": "http://loinc.org", "code": "718-7"}]}
    }));
    let concept = Resource::Json(json!({
        "resourceType": "Observation",
        "status": "final",
        "valueCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": "260385009"}]}
    }));
    for version in FhirVersion::ALL {
        for value in ["laboratory", &format!("{CATEGORY}|laboratory")] {
            assert_eq!(
                filter(&invented, version, "Observation", "category", &[value]),
                FilterMatch::NoMatch
            );
        }
        assert_eq!(
            filter(&invented, version, "Observation", "code", &["718-7"]),
            FilterMatch::NoMatch
        );
        assert_eq!(
            filter(
                &concept,
                version,
                "Observation",
                "value-concept",
                &["http://snomed.info/sct|260385009"]
            ),
            FilterMatch::Match,
            "{version}"
        );
        assert_eq!(
            filter(&concept, version, "Observation", "value-concept", &["x"]),
            FilterMatch::NoMatch
        );
    }
    assert_eq!(
        FhirVersion::R4
            .search_param("Observation", "value-concept")
            .unwrap()
            .expression,
        Some("(Observation.value as CodeableConcept)")
    );
}

#[test]
fn official_expressions_reading_a_choice_without_type_filter_are_not_enforceable() {
    // R4 MessageHeader.event is event[x] (Coding | uri), written without a type filter.
    let header = Resource::Json(json!({
        "resourceType": "MessageHeader",
        "eventCoding": {"system": "http://example.org/events", "code": "admit"},
        "source": {"endpoint": "https://ehr.example/fhir"}
    }));
    for version in [FhirVersion::R4, FhirVersion::R4B] {
        assert!(matches!(
            filter(&header, version, "MessageHeader", "event", &["admit"]),
            FilterMatch::NotEnforceable(reason) if reason.contains("choice element")
        ));
    }
    // R5 writes it with ofType(): evaluated.
    assert_eq!(
        filter(
            &header,
            FhirVersion::R5,
            "MessageHeader",
            "event",
            &["admit"]
        ),
        FilterMatch::Match
    );
    for (version, resource_type, param) in CHOICE_WITHOUT_TYPE_FILTER {
        let expression = version
            .search_param(resource_type, param)
            .and_then(|definition| definition.expression)
            .unwrap_or_else(|| panic!("{version} {resource_type}.{param}"));
        assert!(
            !expression.contains(" as ") && !expression.contains("ofType("),
            "{version} {resource_type}.{param}: {expression}"
        );
    }
    // Precomputed facts need no expression.
    let facts = Resource::Facts(ResourceFacts {
        compartments: vec![],
        search_values: vec![SearchParam::new("event", "admit")],
    });
    assert_eq!(
        filter(
            &facts,
            FhirVersion::R4,
            "MessageHeader",
            "event",
            &["admit"]
        ),
        FilterMatch::Match
    );
}

#[test]
fn facts_reference_patients_through_patient_reference_parameters() {
    let facts = |search_values: Vec<SearchParam>| {
        Resource::Facts(ResourceFacts {
            compartments: vec![],
            search_values,
        })
    };
    let device = facts(vec![SearchParam::new("patient", "Patient/456")]);
    assert!(
        device
            .patient_compartments(FhirVersion::R4, "Device")
            .is_empty()
    );
    assert_eq!(
        device.referenced_patients(FhirVersion::R4, "Device"),
        ["456"]
    );
    // R5 Device has no parameter targeting Patient.
    assert!(
        device
            .referenced_patients(FhirVersion::R5, "Device")
            .is_empty()
    );
    let observation = Resource::Facts(ResourceFacts {
        compartments: vec![CompartmentRef::new("Patient", "123")],
        search_values: vec![
            SearchParam::new("subject", "Patient/123"),
            SearchParam::new("focus", "https://ehr.example/fhir/Patient/7/_history/2"),
            SearchParam::new("performer", "789"),
            SearchParam::new("performer", "Practitioner/pr-1"),
            SearchParam::new("subject", "Group/1"),
            SearchParam::new("encounter", "Encounter/e-9"),
            SearchParam::new("specimen", "55"),
            SearchParam::new("code", "http://loinc.org|1234"),
            SearchParam::new("performer", "Group/1/Patient/8"),
            SearchParam::new("performer", "1,2"),
            SearchParam::new("patient:Patient", "Patient/9"),
        ],
    });
    assert_eq!(
        observation.referenced_patients(FhirVersion::R4, "Observation"),
        ["123", "7", "789"]
    );
    assert_eq!(
        observation.patient_compartments(FhirVersion::R4, "Observation"),
        ["123"]
    );
}

#[test]
fn many_distinct_patient_references_are_collected_once_each_in_order() {
    let performers: Vec<Value> = (0..20_000)
        .map(|index| json!({"reference": format!("Patient/p{}", index / 2)}))
        .chain((0..20_000).map(|index| json!({"reference": format!("Patient/q{index}")})))
        .collect();
    let observation = Resource::Json(json!({
        "resourceType": "Observation",
        "status": "final",
        "subject": {"reference": "Patient/q5"},
        "performer": performers
    }));
    let members = observation.patient_compartments(FhirVersion::R4, "Observation");
    assert_eq!(members.len(), 30_000);
    assert_eq!(members[..3], ["q5", "p0", "p1"]);
    assert_eq!(members.last().map(String::as_str), Some("q19999"));
    let referenced = observation.referenced_patients(FhirVersion::R4, "Observation");
    assert_eq!(referenced, members);
}

#[test]
fn every_patient_compartment_expression_parses() {
    for version in FhirVersion::ALL {
        for (resource_type, params) in version.patient_compartment().members {
            for param in *params {
                let definition = version
                    .search_param(resource_type, param)
                    .unwrap_or_else(|| panic!("{version} {resource_type}.{param} undefined"));
                let expression = definition.expression.unwrap_or_else(|| {
                    panic!("{version} {resource_type}.{param} has no expression")
                });
                Expression::parse(expression)
                    .unwrap_or_else(|error| panic!("{version} {resource_type}.{param}: {error}"));
            }
        }
    }
}

#[test]
fn reference_parameters_targeting_patient_parse_but_one() {
    let mut refused = Vec::new();
    for version in FhirVersion::ALL {
        for (resource_type, params) in version.tables().search_params {
            for param in params.iter().filter(|param| param.targets_type("Patient")) {
                let Some(expression) = param.expression else {
                    continue;
                };
                if Expression::parse(expression).is_err() {
                    refused.push(format!("{version} {resource_type}.{}", param.code));
                }
            }
        }
    }
    assert_eq!(refused, ["R5 QuestionnaireResponse.item-subject"]);
}

#[test]
fn an_unsupported_patient_parameter_falls_back_to_every_patient_reference() {
    let response = Resource::Json(json!({
        "resourceType": "QuestionnaireResponse",
        "status": "completed",
        "subject": {"reference": "Patient/123"},
        "author": {"reference": "Practitioner/pr-1"},
        "item": [{
            "linkId": "who",
            "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/questionnaireresponse-isSubject", "valueBoolean": true}],
            "answer": [{"valueReference": {"reference": "Patient/456"}}]
        }]
    }));
    assert_eq!(
        response.patient_compartments(FhirVersion::R5, "QuestionnaireResponse"),
        ["123"]
    );
    assert_eq!(
        response.referenced_patients(FhirVersion::R5, "QuestionnaireResponse"),
        ["123", "456"]
    );
}

#[test]
fn token_filters_on_codeable_concepts() {
    let observation = lab_observation();
    for version in FhirVersion::ALL {
        let category =
            |values: &[&str]| filter(&observation, version, "Observation", "category", values);
        assert_eq!(
            category(&[&format!("{CATEGORY}|laboratory")]),
            FilterMatch::Match
        );
        assert_eq!(category(&["laboratory"]), FilterMatch::Match);
        assert_eq!(category(&[&format!("{CATEGORY}|")]), FilterMatch::Match);
        assert_eq!(
            category(&["http://example.org/local-category|hematology"]),
            FilterMatch::Match
        );
        assert_eq!(
            category(&["http://wrong.example|laboratory"]),
            FilterMatch::NoMatch
        );
        assert_eq!(category(&["|laboratory"]), FilterMatch::NoMatch);
        assert_eq!(category(&["Laboratory"]), FilterMatch::NoMatch);
        assert_eq!(category(&["vital-signs"]), FilterMatch::NoMatch);
        assert_eq!(category(&["vital-signs", "laboratory"]), FilterMatch::Match);
        assert_eq!(category(&["", "|"]), FilterMatch::NoMatch);
        // The text is not a code.
        assert_eq!(category(&["Hematology"]), FilterMatch::NoMatch);
        assert_eq!(
            filter(
                &observation,
                version,
                "Observation",
                "code",
                &["http://loinc.org|718-7"]
            ),
            FilterMatch::Match
        );
    }
    let condition = Resource::Json(json!({
        "resourceType": "Condition",
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
        "subject": {"reference": "Patient/123"}
    }));
    let clinical_status = |values: &[&str]| {
        filter(
            &condition,
            FhirVersion::R4,
            "Condition",
            "clinical-status",
            values,
        )
    };
    assert_eq!(clinical_status(&["active"]), FilterMatch::Match);
    assert_eq!(
        clinical_status(&["http://terminology.hl7.org/CodeSystem/condition-clinical|active"]),
        FilterMatch::Match
    );
    assert_eq!(clinical_status(&["resolved"]), FilterMatch::NoMatch);
}

#[test]
fn token_filters_on_identifiers_booleans_codes_and_contact_points() {
    let patient = patient();
    let check =
        |param: &str, values: &[&str]| filter(&patient, FhirVersion::R4, "Patient", param, values);
    assert_eq!(
        check("identifier", &["urn:oid:1.2.36.146.595.217.0.1|12345"]),
        FilterMatch::Match
    );
    assert_eq!(check("identifier", &["12345"]), FilterMatch::Match);
    assert_eq!(
        check("identifier", &["http://hl7.org/fhir/sid/us-ssn|"]),
        FilterMatch::Match
    );
    assert_eq!(
        check("identifier", &["http://hl7.org/fhir/sid/us-ssn|12345"]),
        FilterMatch::NoMatch
    );
    assert_eq!(check("identifier", &["|12345"]), FilterMatch::NoMatch);
    assert_eq!(check("identifier", &["MR"]), FilterMatch::NoMatch);
    assert_eq!(check("active", &["true"]), FilterMatch::Match);
    assert_eq!(check("active", &["false"]), FilterMatch::NoMatch);
    assert_eq!(check("active", &["TRUE"]), FilterMatch::NoMatch);
    assert_eq!(check("gender", &["male"]), FilterMatch::Match);
    assert_eq!(check("gender", &["|male"]), FilterMatch::Match);
    assert_eq!(
        check(
            "gender",
            &["http://hl7.org/fhir/administrative-gender|male"]
        ),
        FilterMatch::NoMatch
    );
    assert_eq!(check("email", &["jim@example.org"]), FilterMatch::Match);
    assert_eq!(check("email", &["(03) 5555 6473"]), FilterMatch::NoMatch);
    assert_eq!(check("telecom", &["(03) 5555 6473"]), FilterMatch::Match);
    assert_eq!(
        check("telecom", &["phone|(03) 5555 6473"]),
        FilterMatch::NoMatch
    );
    // A ContactPoint's shape is guessed: `|value` tests a system it does not have, and an
    // Identifier whose system is `url` looks the same, so it matches nothing.
    assert_eq!(check("telecom", &["|(03) 5555 6473"]), FilterMatch::NoMatch);
    let url_system = Resource::Json(json!({"resourceType": "Patient", "id": "p2",
        "identifier": [{"system": "url", "value": "123"}]}));
    assert_eq!(
        filter(
            &url_system,
            FhirVersion::R4,
            "Patient",
            "identifier",
            &["|123"]
        ),
        FilterMatch::NoMatch
    );
    // A system given as something else than a string is a system, not its absence.
    let odd_identifier = Resource::Json(json!({"resourceType": "Patient", "id": "p3",
        "identifier": [{"system": ["http://other"], "value": "123"}]}));
    assert_eq!(
        filter(
            &odd_identifier,
            FhirVersion::R4,
            "Patient",
            "identifier",
            &["|123"]
        ),
        FilterMatch::NoMatch
    );
    let odd_coding = Resource::Json(json!({"resourceType": "Observation", "id": "o3",
        "category": [{"coding": [{"system": 7, "code": "laboratory"}]}]}));
    assert_eq!(
        filter(
            &odd_coding,
            FhirVersion::R4,
            "Observation",
            "category",
            &["|laboratory"]
        ),
        FilterMatch::NoMatch
    );
    assert_eq!(
        filter(
            &odd_coding,
            FhirVersion::R4,
            "Observation",
            "category",
            &["laboratory"]
        ),
        FilterMatch::NoMatch
    );
    assert_eq!(check("_id", &["123"]), FilterMatch::Match);
    let observation = lab_observation();
    assert_eq!(
        filter(
            &observation,
            FhirVersion::R4,
            "Observation",
            "status",
            &["final"]
        ),
        FilterMatch::Match
    );
    assert_eq!(
        filter(
            &observation,
            FhirVersion::R4,
            "Observation",
            "status",
            &["preliminary", "amended"]
        ),
        FilterMatch::NoMatch
    );
}

#[test]
fn meta_filters_tag_security_and_profile() {
    let observation = lab_observation();
    let profile = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-observation-lab";
    for version in FhirVersion::ALL {
        let check = |param: &str, values: &[&str]| {
            filter(&observation, version, "Observation", param, values)
        };
        assert_eq!(
            check("_tag", &["http://example.org/tags|research"]),
            FilterMatch::Match
        );
        assert_eq!(check("_tag", &["research"]), FilterMatch::Match);
        assert_eq!(
            check("_tag", &["http://example.org/other|research"]),
            FilterMatch::NoMatch
        );
        assert_eq!(
            check(
                "_security",
                &["http://terminology.hl7.org/CodeSystem/v3-Confidentiality|N"]
            ),
            FilterMatch::Match
        );
        assert_eq!(check("_security", &["R"]), FilterMatch::NoMatch);
        // R4/R4B: uri; R5: reference to a StructureDefinition (canonical).
        assert_eq!(check("_profile", &[profile]), FilterMatch::Match);
        assert_eq!(
            check(
                "_profile",
                &["http://hl7.org/fhir/us/core/StructureDefinition/us-core"]
            ),
            FilterMatch::NoMatch
        );
        assert_eq!(
            check("_profile", &["us-core-observation-lab"]),
            FilterMatch::NoMatch
        );
    }
    assert_eq!(
        FhirVersion::R4
            .search_param("Observation", "_profile")
            .unwrap()
            .kind,
        SearchParamKind::Uri
    );
    assert_eq!(
        FhirVersion::R5
            .search_param("Observation", "_profile")
            .unwrap()
            .kind,
        SearchParamKind::Reference
    );
}

#[test]
fn string_filters_are_case_insensitive_prefixes() {
    let patient = patient();
    let check =
        |param: &str, values: &[&str]| filter(&patient, FhirVersion::R4, "Patient", param, values);
    assert_eq!(check("name", &["chal"]), FilterMatch::Match);
    assert_eq!(check("name", &["JIM"]), FilterMatch::Match);
    assert_eq!(check("name", &["james"]), FilterMatch::Match);
    assert_eq!(check("name", &["halmers"]), FilterMatch::NoMatch);
    assert_eq!(check("name", &["official"]), FilterMatch::NoMatch);
    assert_eq!(check("family", &["Chalmers"]), FilterMatch::Match);
    assert_eq!(check("family", &["Peter"]), FilterMatch::NoMatch);
    assert_eq!(check("address", &["pleasant"]), FilterMatch::Match);
    assert_eq!(check("address", &["534 ere"]), FilterMatch::Match);
    assert_eq!(check("address", &["home"]), FilterMatch::NoMatch);
    assert_eq!(
        check("address-city", &["PleasantVille"]),
        FilterMatch::Match
    );
    assert_eq!(check("name", &[""]), FilterMatch::NoMatch);
}

#[test]
fn reference_filters() {
    let observation = lab_observation();
    let check = |param: &str, values: &[&str]| {
        filter(&observation, FhirVersion::R4, "Observation", param, values)
    };
    assert_eq!(check("subject", &["Patient/123"]), FilterMatch::Match);
    assert_eq!(check("subject", &["123"]), FilterMatch::Match);
    assert_eq!(check("subject", &["Group/123"]), FilterMatch::NoMatch);
    assert_eq!(check("patient", &["Patient/123"]), FilterMatch::Match);
    assert_eq!(
        check("performer", &["Patient/456", "Patient/1"]),
        FilterMatch::Match
    );
    assert_eq!(check("performer", &["Patient/123"]), FilterMatch::NoMatch);
    assert_eq!(
        check("subject", &["https://ehr.example/fhir/Patient/123"]),
        FilterMatch::NoMatch
    );
    let absolute = observation_with("subject", "https://ehr.example/fhir/Patient/123");
    assert_eq!(
        filter(
            &absolute,
            FhirVersion::R4,
            "Observation",
            "subject",
            &["https://ehr.example/fhir/Patient/123"]
        ),
        FilterMatch::Match
    );
    assert_eq!(
        filter(
            &absolute,
            FhirVersion::R4,
            "Observation",
            "subject",
            &["Patient/123"]
        ),
        FilterMatch::Match
    );
    let versioned = observation_with("subject", "https://ehr.example/fhir/Patient/123/_history/2");
    let subject = |values: &[&str]| {
        filter(
            &versioned,
            FhirVersion::R4,
            "Observation",
            "subject",
            values,
        )
    };
    assert_eq!(subject(&["Patient/123/_history/2"]), FilterMatch::Match);
    assert_eq!(subject(&["Patient/123/_history/3"]), FilterMatch::NoMatch);
    assert_eq!(subject(&["Patient/123"]), FilterMatch::Match);
    assert_eq!(
        subject(&["https://other.example/Patient/123"]),
        FilterMatch::NoMatch
    );
    // R5 `_in` is about List/Group membership, which the resource cannot show.
    assert!(matches!(
        filter(
            &observation,
            FhirVersion::R5,
            "Observation",
            "_in",
            &["List/1"]
        ),
        FilterMatch::NotEnforceable(_)
    ));
}

#[test]
fn unenforceable_filters() {
    let observation = lab_observation();
    assert_eq!(
        filter(
            &observation,
            FhirVersion::R4,
            "Observation",
            "date",
            &["2024-02-01"]
        ),
        FilterMatch::NotEnforceable("cannot evaluate date parameter date locally".into())
    );
    for (param, value) in [
        ("value-quantity", "13.2"),
        ("code-value-concept", "x$y"),
        ("_lastUpdated", "2024"),
    ] {
        assert!(matches!(
            filter(
                &observation,
                FhirVersion::R4,
                "Observation",
                param,
                &[value]
            ),
            FilterMatch::NotEnforceable(_)
        ));
    }
    assert!(matches!(
        filter(&observation, FhirVersion::R4, "Observation", "nonsense", &["x"]),
        FilterMatch::NotEnforceable(reason) if reason.contains("unknown")
    ));
    assert!(matches!(
        filter(
            &observation,
            FhirVersion::R4,
            "Observation",
            "code:in",
            &["http://vs"]
        ),
        FilterMatch::NotEnforceable(_)
    ));
    // Patient.deceased uses exists() and != : outside the subset.
    assert!(matches!(
        filter(&patient(), FhirVersion::R4, "Patient", "deceased", &["true"]),
        FilterMatch::NotEnforceable(reason) if reason.contains("unsupported FHIRPath")
    ));
    // _content has no expression.
    assert!(matches!(
        filter(
            &observation,
            FhirVersion::R4,
            "Observation",
            "_content",
            &["x"]
        ),
        FilterMatch::NotEnforceable(_)
    ));
    // A resource of another type never matches.
    assert_eq!(
        filter(
            &patient(),
            FhirVersion::R4,
            "Observation",
            "status",
            &["final"]
        ),
        FilterMatch::NoMatch
    );
}

#[test]
fn filters_on_precomputed_facts() {
    let facts = Resource::Facts(ResourceFacts {
        compartments: vec![CompartmentRef::new("Patient", "123")],
        search_values: vec![
            SearchParam::new("code", "http://loinc.org|1234"),
            SearchParam::new("category", "laboratory"),
            SearchParam::new("subject", "Patient/123"),
        ],
    });
    let check = |param: &str, values: &[&str]| {
        filter(&facts, FhirVersion::R4, "Observation", param, values)
    };
    assert_eq!(check("code", &["1234"]), FilterMatch::Match);
    assert_eq!(check("code", &["http://loinc.org|"]), FilterMatch::Match);
    assert_eq!(
        check("code", &["http://loinc.org|1234"]),
        FilterMatch::Match
    );
    assert_eq!(
        check("code", &["http://snomed.info/sct|1234"]),
        FilterMatch::NoMatch
    );
    assert_eq!(check("code", &["|1234"]), FilterMatch::NoMatch);
    assert_eq!(check("code", &["9999", "1234"]), FilterMatch::Match);
    assert_eq!(check("category", &["laboratory"]), FilterMatch::Match);
    assert_eq!(check("category", &["|laboratory"]), FilterMatch::Match);
    assert_eq!(
        check("category", &["http://x|laboratory"]),
        FilterMatch::NoMatch
    );
    assert_eq!(check("subject", &["Patient/123"]), FilterMatch::Match);
    assert_eq!(check("subject", &["Patient/12"]), FilterMatch::NoMatch);
    // No fact for the parameter: fail closed.
    assert_eq!(check("status", &["final"]), FilterMatch::NoMatch);
    assert!(matches!(
        check("date", &["2024"]),
        FilterMatch::NotEnforceable(_)
    ));
    assert!(matches!(
        check("nonsense", &["x"]),
        FilterMatch::NotEnforceable(_)
    ));
}

#[test]
fn token_values_split_at_the_first_unescaped_bar() {
    assert_eq!(
        parse_token(r"a\|b|c"),
        Some(TokenFilter {
            system: SystemFilter::Exact("a|b".into()),
            code: Some("c".into())
        })
    );
    assert_eq!(
        parse_token("s|c|d"),
        Some(TokenFilter {
            system: SystemFilter::Exact("s".into()),
            code: Some("c|d".into())
        })
    );
    assert_eq!(parse_token(""), None);
    assert_eq!(parse_token("|"), None);
}

#[test]
fn a_known_base_limits_membership_and_reference_filters_to_its_own_references() {
    let bases = ["https://a.example/fhir".to_owned()];
    let local = Locality::of(&bases);
    let ours = observation_with("subject", "https://a.example/fhir/Patient/123");
    let theirs = observation_with("subject", "https://b.example/fhir/Patient/123");
    let version = FhirVersion::R4;
    assert_eq!(
        ours.patient_compartments_at(version, local, "Observation"),
        ["123"]
    );
    assert!(
        theirs
            .patient_compartments_at(version, local, "Observation")
            .is_empty()
    );
    assert_eq!(
        theirs.patient_compartments(version, "Observation"),
        ["123"],
        "an unknown base reads every base"
    );
    // Mentions count under any base: the superset that catches another patient.
    assert_eq!(theirs.referenced_patients(version, "Observation"), ["123"]);
    let filter = |resource: &Resource, locality| {
        resource.matches_filter_at(
            version,
            locality,
            "Observation",
            "subject",
            &strings(&["Patient/123"]),
        )
    };
    assert_eq!(filter(&ours, local), FilterMatch::Match);
    assert_eq!(filter(&theirs, local), FilterMatch::NoMatch);
    assert_eq!(filter(&theirs, Locality::ANY_BASE), FilterMatch::Match);
}
