//! §3: the union of scopes, and the patient/, user/ and system/ contexts.

use serde_json::json;

use super::fixtures::*;
use super::harness::*;
use crate::decision::{NonCompartmentAccess, Obligation, Reason};

pub fn cases() -> Vec<Case> {
    let mut cases = union();
    cases.extend(patient_context());
    cases.extend(patient_instances());
    cases.extend(patient_writes());
    cases.extend(patient_searches());
    cases.extend(patient_resource_itself());
    cases.extend(never_in_compartment());
    cases.extend(user());
    cases.extend(system());
    cases
}

fn union() -> Vec<Case> {
    vec![
        case(S3, "union: read from one scope, search from another")
            .scopes("patient/Observation.r patient/Observation.s")
            .patient("123")
            .line("GET", "Observation?code=2345-7")
            .allow()
            .grant_scopes(&["patient/Observation.s"]),
        case(
            S3,
            "union across contexts: user/ search beside patient/ read",
        )
        .scopes("patient/Observation.r user/Observation.s")
        .patient("123")
        .fhir_user("Practitioner/7")
        .line("GET", "Observation?code=2345-7")
        .allow()
        .grant_scopes(&["user/Observation.s"])
        .obligation(Obligation::UserPermissions),
        case(S3, "union: a patient/ refusal does not hide a user/ grant")
            .scopes("patient/Observation.rs user/Observation.rs")
            .patient("123")
            .fhir_user("Practitioner/7")
            .line("GET", "Observation/1")
            .stored(obs_of("456"))
            .allow()
            .grant_scopes(&["user/Observation.rs"]),
        case(
            S3,
            "union: a scope lacking context does not hide a system/ grant",
        )
        .scopes("patient/Observation.rs system/Observation.rs")
        .line("GET", "Observation/1")
        .allow()
        .grant_scopes(&["system/Observation.rs"]),
        case(S3, "each granting scope reported (equal constraints)")
            .scopes("user/Observation.rs user/*.rs")
            .fhir_user("Practitioner/7")
            .line("GET", "Observation?code=2345-7")
            .allow()
            .grant_scopes(&["user/Observation.rs", "user/*.rs"]),
        case(
            S3,
            "each granting patient/ scope reported (same compartment)",
        )
        .scopes("patient/Observation.rs patient/*.rs")
        .patient("123")
        .line("GET", "Observation?code=2345-7")
        .allow()
        .grant_scopes(&["patient/Observation.rs", "patient/*.rs"])
        .compartment("Patient/123"),
        case(S3, "system/*.rs makes patient/*.rs irrelevant on a search")
            .scopes("system/*.rs patient/*.rs")
            .patient("123")
            .line("GET", "Observation?code=2345-7")
            .allow()
            .grant_scopes(&["system/*.rs"])
            .no_compartment(),
        case(
            S3,
            "system/*.rs makes patient/*.rs irrelevant on an unverified read",
        )
        .scopes("patient/*.rs system/*.rs")
        .patient("123")
        .line("GET", "Observation/1")
        .allow()
        .grant_scopes(&["system/*.rs"])
        .no_compartment(),
        case(
            S3,
            "plain scope makes a granular one on the same type irrelevant",
        )
        .scopes("patient/Observation.rs patient/Observation.rs?category=laboratory")
        .patient("123")
        .line("GET", "Observation?code=2345-7")
        .allow()
        .grant_scopes(&["patient/Observation.rs"])
        .no_filters(),
        case(
            S3,
            "user/ and patient/ grants both kept (neither less constrained)",
        )
        .scopes("user/*.rs patient/*.rs")
        .patient("123")
        .fhir_user("Practitioner/7")
        .line("GET", "Observation?code=2345-7")
        .allow()
        .grant_scopes(&["user/*.rs", "patient/*.rs"]),
        case(
            S3,
            "policy: system/ grant makes a user/ grant irrelevant (client policy is no narrower)",
        )
        .scopes("user/*.rs system/*.rs")
        .fhir_user("Practitioner/7")
        .line("GET", "Observation?code=2345-7")
        .allow()
        .grant_scopes(&["system/*.rs"]),
        case(
            S3,
            "patient/*.rs makes a granular patient/ scope irrelevant",
        )
        .scopes("patient/Observation.rs?category=laboratory patient/*.rs")
        .patient("123")
        .line("GET", "Observation?code=2345-7")
        .allow()
        .grant_scopes(&["patient/*.rs"]),
        case(
            S3,
            "system/ grant on one type does not drop a patient/ grant on all types",
        )
        .scopes("system/Observation.rs patient/*.rs")
        .patient("123")
        .line("GET", "?_lastUpdated=gt2024-01-01")
        .allow()
        .grant_scopes(&["system/Observation.rs", "patient/*.rs"]),
        case(
            S3,
            "granular grants on one type with different filters are both kept",
        )
        .scopes(
            "system/Observation.rs?category=laboratory system/Observation.rs?category=vital-signs",
        )
        .line("GET", "Observation?code=2345-7")
        .allow()
        .grant_scopes(&[
            "system/Observation.rs?category=laboratory",
            "system/Observation.rs?category=vital-signs",
        ]),
    ]
}

fn patient_context() -> Vec<Case> {
    vec![
        case(S3P, "patient claim Patient/123 is normalised to 123")
            .scopes("patient/Observation.rs")
            .patient("Patient/123")
            .line("GET", "Observation?code=2345-7")
            .allow()
            .compartment("Patient/123"),
        case(S3P, "patient claim as a bare id")
            .scopes("patient/Observation.rs")
            .patient("123")
            .line("GET", "Observation?code=2345-7")
            .allow()
            .compartment("Patient/123")
            .obligation(Obligation::None),
        case(S3P, "normalised patient claim matches the stored resource")
            .scopes("patient/Observation.rs")
            .patient("Patient/123")
            .line("GET", "Observation/1")
            .stored(obs_of("123"))
            .allow(),
        case(
            S3P,
            "fhirUser Patient/123 supplies the patient when patient is absent",
        )
        .scopes("patient/Observation.rs")
        .fhir_user("Patient/123")
        .line("GET", "Observation/1")
        .stored(obs_of("123"))
        .allow(),
        case(S3P, "absolute fhirUser Patient URL supplies the patient")
            .scopes("patient/Observation.rs")
            .fhir_user("https://ehr.example.org/fhir/Patient/123")
            .line("GET", "Observation?code=2345-7")
            .allow()
            .compartment("Patient/123"),
        case(
            S3P,
            "fhirUser fallback for another patient's resource still denies",
        )
        .scopes("patient/Observation.rs")
        .fhir_user("Patient/123")
        .line("GET", "Observation/1")
        .stored(obs_of("456"))
        .deny(Reason::OutsideCompartment),
        case(
            S3P,
            "fhirUser fallback switched off: missing patient context",
        )
        .policy(|policy| policy.patient_from_fhir_user = false)
        .scopes("patient/Observation.rs")
        .fhir_user("Patient/123")
        .line("GET", "Observation/1")
        .stored(obs_of("123"))
        .deny(Reason::MissingPatientContext),
        case(S3P, "a Practitioner fhirUser supplies no patient")
            .scopes("patient/Observation.rs")
            .fhir_user("Practitioner/7")
            .line("GET", "Observation?code=2345-7")
            .deny(Reason::MissingPatientContext),
        case(S3P, "no patient id at all: missing patient context")
            .scopes("patient/*.rs")
            .line("GET", "Observation/1")
            .stored(obs_of("123"))
            .deny(Reason::MissingPatientContext)
            .ignored(&["patient/*.rs"]),
        case(S3P, "no patient id: searches too")
            .scopes("patient/Observation.rs")
            .line("GET", "Observation?code=2345-7")
            .deny(Reason::MissingPatientContext),
        case(S3P, "the patient claim wins over a Patient fhirUser")
            .scopes("patient/Observation.rs")
            .patient("123")
            .fhir_user("Patient/456")
            .line("GET", "Observation?code=2345-7")
            .allow()
            .compartment("Patient/123"),
    ]
}

/// Reads, vread, history-instance, delete: the stored resource must be in the compartment.
fn patient_instances() -> Vec<Case> {
    vec![
        case(S3P, "read own Observation (subject)")
            .scopes("patient/Observation.rs")
            .patient("123")
            .line("GET", "Observation/1")
            .stored(obs_of("123"))
            .allow()
            .no_compartment(),
        case(S3P, "read another patient's Observation")
            .scopes("patient/Observation.rs")
            .patient("123")
            .line("GET", "Observation/1")
            .stored(obs_of("456"))
            .deny(Reason::OutsideCompartment),
        case(
            S3P,
            "performer counts: Observation performed by the patient",
        )
        .scopes("patient/Observation.rs")
        .patient("123")
        .line("GET", "Observation/1")
        .stored(with(
            observation("Group/9"),
            "performer",
            json!([reference("Patient/123")]),
        ))
        .allow(),
        case(S3P, "focus does not count")
            .scopes("patient/Observation.rs")
            .patient("123")
            .line("GET", "Observation/1")
            .stored(with(
                observation("Group/9"),
                "focus",
                json!([reference("Patient/123")]),
            ))
            .deny(Reason::OutsideCompartment),
        case(
            S3P,
            "focus on the patient does not rescue another patient's Observation",
        )
        .scopes("patient/Observation.rs")
        .patient("123")
        .line("GET", "Observation/1")
        .stored(with(
            obs_of("456"),
            "focus",
            json!([reference("Patient/123")]),
        ))
        .deny(Reason::OutsideCompartment),
        case(S3P, "vread of another patient's version")
            .scopes("patient/Observation.rs")
            .patient("123")
            .line("GET", "Observation/1/_history/2")
            .stored(obs_of("456"))
            .deny(Reason::OutsideCompartment),
        case(S3P, "vread of an own version")
            .scopes("patient/Observation.r")
            .patient("123")
            .line("GET", "Observation/1/_history/2")
            .stored(obs_of("123"))
            .allow(),
        case(S3P, "history-instance of an own Observation")
            .scopes("patient/Observation.r")
            .patient("123")
            .line("GET", "Observation/1/_history")
            .stored(obs_of("123"))
            .allow(),
        case(S3P, "history-instance of another patient's Observation")
            .scopes("patient/Observation.r")
            .patient("123")
            .line("GET", "Observation/1/_history")
            .stored(obs_of("456"))
            .deny(Reason::OutsideCompartment),
        case(S3P, "delete own Observation")
            .scopes("patient/Observation.d")
            .patient("123")
            .line("DELETE", "Observation/1")
            .stored(obs_of("123"))
            .allow(),
        case(S3P, "delete another patient's Observation")
            .scopes("patient/Observation.d")
            .patient("123")
            .line("DELETE", "Observation/1")
            .stored(obs_of("456"))
            .deny(Reason::OutsideCompartment),
        case(S3P, "read own Condition (R4 patient parameter)")
            .scopes("patient/Condition.rs")
            .patient("123")
            .line("GET", "Condition/1")
            .stored(condition("Patient/123"))
            .allow(),
        case(
            S3P,
            "R4 Condition asserted by the patient is in the compartment",
        )
        .scopes("patient/Condition.rs")
        .patient("123")
        .line("GET", "Condition/1")
        .stored(with(
            condition("Patient/456"),
            "asserter",
            reference("Patient/123"),
        ))
        .allow(),
        case(S3P, "Condition of a Group is in nobody's compartment")
            .scopes("patient/Condition.rs")
            .patient("123")
            .line("GET", "Condition/1")
            .stored(condition("Group/9"))
            .deny(Reason::OutsideCompartment),
        case(S3P, "read own Encounter")
            .scopes("patient/Encounter.rs")
            .patient("123")
            .line("GET", "Encounter/1")
            .stored(encounter("Patient/123"))
            .allow(),
        case(S3P, "read another patient's Encounter")
            .scopes("patient/Encounter.rs")
            .patient("123")
            .line("GET", "Encounter/1")
            .stored(encounter("Patient/456"))
            .deny(Reason::OutsideCompartment),
        case(S3P, "read own MedicationRequest")
            .scopes("patient/MedicationRequest.rs")
            .patient("123")
            .line("GET", "MedicationRequest/1")
            .stored(medication_request("Patient/123"))
            .allow(),
        case(S3P, "read own AllergyIntolerance")
            .scopes("patient/AllergyIntolerance.rs")
            .patient("123")
            .line("GET", "AllergyIntolerance/1")
            .stored(allergy("Patient/123", "Practitioner/7"))
            .allow(),
        case(
            S3P,
            "AllergyIntolerance recorded by the patient (recorder counts)",
        )
        .scopes("patient/AllergyIntolerance.rs")
        .patient("123")
        .line("GET", "AllergyIntolerance/1")
        .stored(allergy("Patient/456", "Patient/123"))
        .allow(),
        case(S3P, "read another patient's DiagnosticReport")
            .scopes("patient/DiagnosticReport.rs")
            .patient("123")
            .line("GET", "DiagnosticReport/1")
            .stored(diagnostic_report("Patient/456"))
            .deny(Reason::OutsideCompartment),
        case(S3P, "absolute reference to the patient")
            .scopes("patient/Observation.rs")
            .patient("123")
            .line("GET", "Observation/1")
            .stored(observation("https://ehr.example.org/fhir/Patient/123"))
            .allow(),
        case(S3P, "absolute reference to another patient")
            .scopes("patient/Observation.rs")
            .patient("123")
            .line("GET", "Observation/1")
            .stored(observation("https://ehr.example.org/fhir/Patient/456"))
            .deny(Reason::OutsideCompartment),
        case(S3P, "versioned reference to the patient")
            .scopes("patient/Observation.rs")
            .patient("123")
            .line("GET", "Observation/1")
            .stored(observation("Patient/123/_history/3"))
            .allow(),
        case(S3P, "contained reference proves nothing")
            .scopes("patient/Observation.rs")
            .patient("123")
            .line("GET", "Observation/1")
            .stored(with(
                observation("#p1"),
                "contained",
                json!([{ "resourceType": "Patient", "id": "p1", "link": [{
                    "other": reference("Patient/123"), "type": "seealso"
                }] }]),
            ))
            .deny(Reason::OutsideCompartment),
        case(S3P, "identifier-only (logical) reference proves nothing")
            .scopes("patient/Observation.rs")
            .patient("123")
            .line("GET", "Observation/1")
            .stored(with(
                obs_of("123"),
                "subject",
                json!({ "type": "Patient", "identifier": { "system": "urn:mrn", "value": "123" } }),
            ))
            .deny(Reason::OutsideCompartment),
        case(S3P, "an id that merely starts with the patient id")
            .scopes("patient/Observation.rs")
            .patient("123")
            .line("GET", "Observation/1")
            .stored(obs_of("1234"))
            .deny(Reason::OutsideCompartment),
        case(S3P, "Observation with no subject nor performer")
            .scopes("patient/Observation.rs")
            .patient("123")
            .line("GET", "Observation/1")
            .stored(without(without(obs_of("123"), "subject"), "performer"))
            .deny(Reason::OutsideCompartment),
    ]
}

/// Create checks the new version; update and patch both, and never move a resource.
fn patient_writes() -> Vec<Case> {
    vec![
        case(S3P, "create own Observation")
            .scopes("patient/Observation.c")
            .patient("123")
            .line("POST", "Observation")
            .proposed(without(obs_of("123"), "id"))
            .allow()
            .no_compartment(),
        case(S3P, "create an Observation for another patient")
            .scopes("patient/Observation.c")
            .patient("123")
            .line("POST", "Observation")
            .proposed(obs_of("456"))
            .deny(Reason::OutsideCompartment),
        case(S3P, "create an Observation linked to nobody")
            .scopes("patient/Observation.c")
            .patient("123")
            .line("POST", "Observation")
            .proposed(without(obs_of("123"), "subject"))
            .deny(Reason::OutsideCompartment),
        case(S3P, "create checks the new version, not a stored one")
            .scopes("patient/Condition.c")
            .patient("123")
            .line("POST", "Condition")
            .proposed(condition("Patient/123"))
            .allow(),
        case(S3P, "a Patient cannot be created under patient/ scopes")
            .scopes("patient/Patient.c")
            .patient("123")
            .line("POST", "Patient")
            .proposed(without(patient("x"), "id"))
            .deny(Reason::OutsideCompartment),
        case(
            S3P,
            "a Patient linked to the patient cannot be created either",
        )
        .scopes("patient/*.cruds")
        .patient("123")
        .line("POST", "Patient")
        .proposed(without(patient_linked("x", "123"), "id"))
        .deny(Reason::OutsideCompartment),
        case(S3P, "update own Observation, staying in the compartment")
            .scopes("patient/Observation.u")
            .patient("123")
            .line("PUT", "Observation/1")
            .stored(obs_of("123"))
            .proposed(with(obs_of("123"), "status", json!("amended")))
            .allow()
            .no_compartment(),
        case(S3P, "update moving a resource out of the compartment")
            .scopes("patient/Observation.u")
            .patient("123")
            .line("PUT", "Observation/1")
            .stored(obs_of("123"))
            .proposed(obs_of("456"))
            .deny(Reason::OutsideCompartment),
        case(S3P, "update moving a resource into the compartment")
            .scopes("patient/Observation.u")
            .patient("123")
            .line("PUT", "Observation/1")
            .stored(obs_of("456"))
            .proposed(obs_of("123"))
            .deny(Reason::OutsideCompartment),
        case(S3P, "patch moving a resource out of the compartment")
            .scopes("patient/Observation.u")
            .patient("123")
            .line("PATCH", "Observation/1")
            .stored(obs_of("123"))
            .proposed(obs_of("456"))
            .deny(Reason::OutsideCompartment),
        case(S3P, "patch of an own Observation")
            .scopes("patient/Observation.u")
            .patient("123")
            .line("PATCH", "Observation/1")
            .stored(obs_of("123"))
            .proposed(with(obs_of("123"), "status", json!("corrected")))
            .allow(),
        case(
            S3P,
            "update dropping every link to the patient moves it out",
        )
        .scopes("patient/Observation.u")
        .patient("123")
        .line("PUT", "Observation/1")
        .stored(obs_of("123"))
        .proposed(with(obs_of("123"), "subject", reference("Group/9")))
        .deny(Reason::OutsideCompartment),
        case(
            S3P,
            "update of another patient's resource staying with them",
        )
        .scopes("patient/Observation.u")
        .patient("123")
        .line("PUT", "Observation/1")
        .stored(obs_of("456"))
        .proposed(obs_of("456"))
        .deny(Reason::OutsideCompartment),
        case(S3P, "conditional update: new version own, stored unknown")
            .scopes("patient/Observation.u")
            .patient("123")
            .line("PUT", "Observation?identifier=http://acme.org/obs|6323")
            .proposed(without(obs_of("123"), "id"))
            .allow()
            .compartment("Patient/123"),
        case(S3P, "conditional delete is limited to the compartment")
            .scopes("patient/Observation.d")
            .patient("123")
            .line("DELETE", "Observation?identifier=http://acme.org/obs|6323")
            .allow()
            .compartment("Patient/123"),
    ]
}

fn patient_searches() -> Vec<Case> {
    let other_patient: [(&str, &str); 9] = [
        ("patient=Patient/456", "Observation?patient=Patient/456"),
        ("subject=Patient/456", "Observation?subject=Patient/456"),
        ("subject=456 (bare id)", "Observation?subject=456"),
        ("subject:Patient=456", "Observation?subject:Patient=456"),
        ("patient=123,456", "Observation?patient=123,456"),
        ("performer=Patient/456", "Observation?performer=Patient/456"),
        (
            "subject as an absolute URL",
            "Observation?subject=https://ehr.example.org/fhir/Patient/456",
        ),
        (
            "the own patient and another, repeated",
            "Observation?subject=Patient/123&subject=Patient/456",
        ),
        (
            "Encounter?patient=456",
            "Encounter?patient=456&status=finished",
        ),
    ];
    let same_patient: [(&str, &str); 4] = [
        ("patient=Patient/123", "Observation?patient=Patient/123"),
        ("subject=123", "Observation?subject=123&code=2345-7"),
        ("subject:Patient=123", "Observation?subject:Patient=123"),
        (
            "patient=123,Patient/123",
            "Observation?patient=123,Patient/123",
        ),
    ];
    let mut cases: Vec<Case> = other_patient
        .into_iter()
        .map(|(label, path)| {
            case(
                S3P,
                format!("search naming another patient ({label}) is denied"),
            )
            .scopes("patient/Observation.rs patient/Encounter.rs")
            .patient("123")
            .line("GET", path)
            .deny(Reason::OutsideCompartment)
        })
        .collect();
    cases.extend(same_patient.into_iter().map(|(label, path)| {
        case(
            S3P,
            format!("search naming the same patient ({label}) is allowed"),
        )
        .scopes("patient/Observation.rs")
        .patient("123")
        .line("GET", path)
        .allow()
        .compartment("Patient/123")
    }));
    cases.extend([
        case(
            S3P,
            "search naming another patient, percent-encoded, is denied",
        )
        .scopes("patient/Observation.rs")
        .patient("123")
        .line("GET", "Observation?subject=Patient%2F456")
        .deny(Reason::OutsideCompartment),
        case(
            S3P,
            "search naming another patient by a versioned reference is denied",
        )
        .scopes("patient/Observation.rs")
        .patient("123")
        .line("GET", "Observation?subject=Patient/456/_history/1")
        .deny(Reason::OutsideCompartment),
        case(
            S3P,
            "compartment search in the own patient naming another one is denied",
        )
        .scopes("patient/Observation.rs")
        .patient("123")
        .line("GET", "Patient/123/Observation?subject=Patient/456")
        .deny(Reason::OutsideCompartment),
        case(S3P, "Patient search by another linked patient is denied")
            .scopes("patient/Patient.rs")
            .patient("123")
            .line("GET", "Patient?link=Patient/456")
            .deny(Reason::OutsideCompartment),
        case(
            S3P,
            "Patient search by _id listing another patient is denied",
        )
        .scopes("patient/Patient.rs")
        .patient("123")
        .line("GET", "Patient?_id=123,456")
        .deny(Reason::OutsideCompartment),
        case(
            S3P,
            "search naming a Group subject still gets the compartment",
        )
        .scopes("patient/Observation.rs")
        .patient("123")
        .line("GET", "Observation?subject=Group/5")
        .allow()
        .compartment("Patient/123"),
        case(
            S3P,
            "compartment search in an Encounter gets the Patient compartment",
        )
        .scopes("patient/Observation.rs")
        .patient("123")
        .line("GET", "Encounter/5/Observation")
        .allow()
        .compartment("Patient/123"),
        case(
            S3P,
            "search gets the compartment constraint and its parameters",
        )
        .scopes("patient/Observation.rs")
        .patient("123")
        .line(
            "GET",
            "Observation?code=http://loinc.org|2345-7&_sort=-date",
        )
        .allow()
        .compartment("Patient/123")
        .compartment_params(&["subject", "performer"])
        .no_included(),
        case(S3P, "Condition search: R4 compartment parameters")
            .scopes("patient/Condition.rs")
            .patient("123")
            .line("GET", "Condition?clinical-status=active")
            .allow()
            .compartment("Patient/123")
            .compartment_params(&["patient", "asserter"]),
        case(S3P, "search via POST _search gets the constraint")
            .scopes("patient/Observation.s")
            .patient("123")
            .line("POST", "Observation/_search")
            .allow()
            .compartment("Patient/123"),
        case(S3P, "compartment search in another patient is denied")
            .scopes("patient/Observation.rs")
            .patient("123")
            .line("GET", "Patient/456/Observation")
            .deny(Reason::OutsideCompartment),
        case(S3P, "compartment search in the own patient is allowed")
            .scopes("patient/Observation.rs")
            .patient("123")
            .line("GET", "Patient/123/Observation?code=2345-7")
            .allow()
            .compartment("Patient/123"),
        case(
            S3P,
            "compartment search of all types in another patient is denied",
        )
        .scopes("patient/*.rs")
        .patient("123")
        .line("GET", "Patient/456/*")
        .deny(Reason::OutsideCompartment),
        case(S3P, "compartment search of all types in the own patient")
            .scopes("patient/*.rs")
            .patient("123")
            .line("GET", "Patient/123/*")
            .allow()
            .compartment("Patient/123"),
        case(S3P, "history-type gets the compartment constraint")
            .scopes("patient/Observation.s")
            .patient("123")
            .line("GET", "Observation/_history?_since=2024-01-01")
            .allow()
            .compartment("Patient/123"),
        case(
            S3P,
            "history-system gets the compartment constraint and types",
        )
        .scopes("patient/Observation.rs patient/Condition.rs")
        .patient("123")
        .line("GET", "_history")
        .allow()
        .compartment("Patient/123")
        .types(&["Observation", "Condition"]),
        case(S3P, "system search: every _type searchable")
            .scopes("patient/Observation.rs patient/Condition.rs")
            .patient("123")
            .line("GET", "?_type=Observation,Condition")
            .allow()
            .compartment("Patient/123")
            .types(&["Observation", "Condition"]),
        case(S3P, "system search: one _type not searchable")
            .scopes("patient/Observation.rs patient/Condition.r")
            .patient("123")
            .line("GET", "?_type=Observation,Condition")
            .deny(Reason::NoMatchingScope),
        case(S3P, "system search: repeated _type parameters all checked")
            .scopes("patient/Observation.rs")
            .patient("123")
            .line("GET", "?_type=Observation&_type=Encounter")
            .deny(Reason::NoMatchingScope),
        case(S3P, "system search without _type under patient/*.rs")
            .scopes("patient/*.rs")
            .patient("123")
            .line("GET", "?_lastUpdated=gt2024-01-01")
            .allow()
            .compartment("Patient/123")
            .types(&["*"]),
        case(
            S3P,
            "system search without _type returns the searchable types",
        )
        .scopes("patient/Observation.rs patient/Condition.rs patient/Encounter.r")
        .patient("123")
        .line("GET", "?_lastUpdated=gt2024-01-01")
        .allow()
        .compartment("Patient/123")
        .types(&["Observation", "Condition"]),
        case(S3P, "system search with _type naming another patient")
            .scopes("patient/*.rs")
            .patient("123")
            .line("GET", "?_type=Observation,Condition&patient=Patient/456")
            .deny(Reason::OutsideCompartment),
        case(S3P, "system search without _type naming another patient")
            .scopes("patient/*.rs")
            .patient("123")
            .line("GET", "?patient=Patient/456")
            .deny(Reason::OutsideCompartment),
        case(
            S3P,
            "_include allowed, included resources must pass a read decision",
        )
        .scopes("patient/Observation.rs patient/Patient.r")
        .patient("123")
        .line(
            "GET",
            "Observation?code=2345-7&_include=Observation:subject",
        )
        .allow()
        .compartment("Patient/123")
        .included(&["Observation", "Patient"]),
        case(S3P, "_revinclude allowed with patient/*.rs")
            .scopes("patient/*.rs")
            .patient("123")
            .line("GET", "Observation?_revinclude=Provenance:target")
            .allow()
            .included(&["*"]),
        case(
            S3P,
            "_include:iterate allowed, readable types exclude search-only scopes",
        )
        .scopes("patient/Encounter.rs patient/Practitioner.s")
        .patient("123")
        .line("GET", "Encounter?_include:iterate=Encounter:participant")
        .allow()
        .included(&["Encounter"]),
        case(
            S3P,
            "$lastn and $stats take a search's parameters: their includes are reported too",
        )
        .scopes("patient/Observation.rs patient/Patient.r")
        .patient("123")
        .line(
            "GET",
            "Observation/$lastn?category=vital-signs&_include=Observation:performer",
        )
        .allow()
        .compartment("Patient/123")
        .included(&["Observation", "Patient"]),
        case(S3P, "an operation that is no search reports no includes")
            .scopes("patient/*.rs")
            .patient("123")
            .line(
                "GET",
                "Patient/123/$everything?_include=Observation:performer",
            )
            .allow()
            .no_included(),
    ]);
    cases
}

/// The Patient resource itself: in its own compartment by id, or through `link`.
fn patient_resource_itself() -> Vec<Case> {
    vec![
        case(S3P, "read own Patient without a stored resource")
            .scopes("patient/Patient.r")
            .patient("123")
            .line("GET", "Patient/123")
            .allow(),
        case(S3P, "read own Patient with the stored resource")
            .scopes("patient/Patient.r")
            .patient("123")
            .line("GET", "Patient/123")
            .stored(patient("123"))
            .allow()
            .no_compartment(),
        case(S3P, "read another Patient without a stored resource")
            .scopes("patient/Patient.r")
            .patient("123")
            .line("GET", "Patient/456")
            .deny(Reason::OutsideCompartment),
        case(
            S3P,
            "read another Patient whose stored resource links to the patient",
        )
        .scopes("patient/Patient.r")
        .patient("123")
        .line("GET", "Patient/456")
        .stored(patient_linked("456", "123"))
        .allow(),
        case(
            S3P,
            "read another Patient whose stored resource links elsewhere",
        )
        .scopes("patient/Patient.r")
        .patient("123")
        .line("GET", "Patient/456")
        .stored(patient_linked("456", "789"))
        .deny(Reason::OutsideCompartment),
        case(S3P, "search Patient by the own _id")
            .scopes("patient/Patient.rs")
            .patient("123")
            .line("GET", "Patient?_id=123")
            .allow()
            .compartment("Patient/123"),
        case(S3P, "search Patient by another _id")
            .scopes("patient/Patient.rs")
            .patient("123")
            .line("GET", "Patient?_id=456")
            .deny(Reason::OutsideCompartment),
        case(S3P, "Patient search constraint: own id or link")
            .scopes("patient/Patient.rs")
            .patient("123")
            .line("GET", "Patient?family=chalmers")
            .allow()
            .compartment("Patient/123")
            .compartment_params(&["_id", "link"]),
        case(S3P, "update own Patient")
            .scopes("patient/Patient.u")
            .patient("123")
            .line("PUT", "Patient/123")
            .stored(patient("123"))
            .proposed(with(patient("123"), "gender", json!("other")))
            .allow(),
        case(
            S3P,
            "update own Patient removing its link keeps it in the compartment",
        )
        .scopes("patient/Patient.u")
        .patient("123")
        .line("PUT", "Patient/123")
        .stored(patient_linked("123", "456"))
        .proposed(patient("123"))
        .allow(),
        case(
            S3P,
            "update a linked Patient so that it no longer links (moves out)",
        )
        .scopes("patient/Patient.u")
        .patient("123")
        .line("PUT", "Patient/456")
        .stored(patient_linked("456", "123"))
        .proposed(patient("456"))
        .deny(Reason::OutsideCompartment),
        case(S3P, "delete another, unlinked Patient")
            .scopes("patient/Patient.d")
            .patient("123")
            .line("DELETE", "Patient/456")
            .stored(patient("456"))
            .deny(Reason::OutsideCompartment),
    ]
}

/// Practitioner, Organization, Medication, Location, R4 Device: never in the compartment.
fn never_in_compartment() -> Vec<Case> {
    vec![
        case(S3P, "read a Practitioner without compartment constraint")
            .scopes("patient/*.rs")
            .patient("123")
            .line("GET", "Practitioner/1")
            .stored(practitioner())
            .allow()
            .no_compartment(),
        case(S3P, "read a Practitioner not given: still no constraint")
            .scopes("patient/Practitioner.r")
            .patient("123")
            .line("GET", "Practitioner/1")
            .allow()
            .no_compartment(),
        case(S3P, "search Practitioners without compartment constraint")
            .scopes("patient/Practitioner.s")
            .patient("123")
            .line("GET", "Practitioner?family=careful")
            .allow()
            .no_compartment(),
        case(S3P, "read an Organization")
            .scopes("patient/Organization.rs")
            .patient("123")
            .line("GET", "Organization/1")
            .stored(organization())
            .allow()
            .no_compartment(),
        case(S3P, "read a Medication")
            .scopes("patient/*.rs")
            .patient("123")
            .line("GET", "Medication/1")
            .stored(medication())
            .allow()
            .no_compartment(),
        case(S3P, "search Locations")
            .scopes("patient/Location.rs")
            .patient("123")
            .line("GET", "Location?name=south")
            .allow()
            .no_compartment(),
        case(S3P, "R4 Device of the patient")
            .scopes("patient/Device.rs")
            .patient("123")
            .line("GET", "Device/1")
            .stored(device_r4(Some("Patient/123")))
            .allow()
            .no_compartment(),
        case(S3P, "R4 Device of no patient")
            .scopes("patient/Device.rs")
            .patient("123")
            .line("GET", "Device/1")
            .stored(device_r4(None))
            .allow(),
        case(S3P, "R4 Device referencing another patient is denied")
            .scopes("patient/Device.rs")
            .patient("123")
            .line("GET", "Device/1")
            .stored(device_r4(Some("Patient/456")))
            .deny(Reason::OutsideCompartment),
        case(S3P, "R4 Device search naming the own patient")
            .scopes("patient/Device.rs")
            .patient("123")
            .line("GET", "Device?patient=Patient/123")
            .allow()
            .no_compartment(),
        case(S3P, "read a Location")
            .scopes("patient/Location.r")
            .patient("123")
            .line("GET", "Location/1")
            .stored(location())
            .allow()
            .no_compartment(),
        case(S3P, "R4 Device search naming another patient is denied")
            .scopes("patient/Device.rs")
            .patient("123")
            .line("GET", "Device?patient=Patient/456")
            .deny(Reason::OutsideCompartment),
        case(S3P, "create a Practitioner is denied")
            .scopes("patient/*.cruds")
            .patient("123")
            .line("POST", "Practitioner")
            .proposed(without(practitioner(), "id"))
            .deny(Reason::OutsideCompartment),
        case(S3P, "update an Organization is denied")
            .scopes("patient/Organization.u")
            .patient("123")
            .line("PUT", "Organization/1")
            .stored(organization())
            .proposed(organization())
            .deny(Reason::OutsideCompartment),
        case(S3P, "patch a Device of the patient is denied")
            .scopes("patient/Device.u")
            .patient("123")
            .line("PATCH", "Device/1")
            .stored(device_r4(Some("Patient/123")))
            .proposed(device_r4(Some("Patient/123")))
            .deny(Reason::OutsideCompartment),
        case(S3P, "delete a Medication is denied")
            .scopes("patient/Medication.d")
            .patient("123")
            .line("DELETE", "Medication/1")
            .stored(medication())
            .deny(Reason::OutsideCompartment),
        case(S3P, "policy Deny: read a Practitioner")
            .policy(|policy| policy.non_compartment_types = NonCompartmentAccess::Deny)
            .scopes("patient/*.rs")
            .patient("123")
            .line("GET", "Practitioner/1")
            .stored(practitioner())
            .deny(Reason::OutsideCompartment),
        case(S3P, "policy Deny: search Organizations")
            .policy(|policy| policy.non_compartment_types = NonCompartmentAccess::Deny)
            .scopes("patient/Organization.rs")
            .patient("123")
            .line("GET", "Organization?name=burgers")
            .deny(Reason::OutsideCompartment),
        case(S3P, "policy Deny leaves compartment types alone")
            .policy(|policy| policy.non_compartment_types = NonCompartmentAccess::Deny)
            .scopes("patient/*.rs")
            .patient("123")
            .line("GET", "Observation/1")
            .stored(obs_of("123"))
            .allow(),
        case(S3P, "policy Deny does not affect user/ scopes")
            .policy(|policy| policy.non_compartment_types = NonCompartmentAccess::Deny)
            .scopes("user/Practitioner.rs")
            .fhir_user("Practitioner/7")
            .line("GET", "Practitioner/1")
            .allow(),
    ]
}

fn user() -> Vec<Case> {
    vec![
        case(
            S3U,
            "read with the obligation to apply the user's permissions",
        )
        .scopes("user/Observation.rs")
        .fhir_user("Practitioner/7")
        .line("GET", "Observation/1")
        .stored(obs_of("456"))
        .allow()
        .obligation(Obligation::UserPermissions)
        .no_compartment(),
        case(S3U, "search with no compartment, even naming a patient")
            .scopes("user/Observation.rs")
            .fhir_user("Practitioner/7")
            .line("GET", "Observation?patient=Patient/456")
            .allow()
            .obligation(Obligation::UserPermissions)
            .no_compartment(),
        case(S3U, "absolute fhirUser URL is a user identity")
            .scopes("user/*.rs")
            .fhir_user("https://ehr.example.org/fhir/Practitioner/7")
            .line("GET", "Condition?clinical-status=active")
            .allow(),
        case(
            S3U,
            "a patient in context does not turn user/ into a compartment",
        )
        .scopes("user/Observation.rs")
        .patient("123")
        .fhir_user("Practitioner/7")
        .line("GET", "Observation?code=2345-7")
        .allow()
        .no_compartment(),
        case(
            S3U,
            "a Patient fhirUser under user/ scopes still gets the user obligation",
        )
        .scopes("user/Observation.rs")
        .fhir_user("Patient/123")
        .line("GET", "Observation?code=2345-7")
        .allow()
        .obligation(Obligation::UserPermissions),
        case(S3U, "create under user/ scopes")
            .scopes("user/Observation.c")
            .fhir_user("Practitioner/7")
            .line("POST", "Observation")
            .proposed(obs_of("456"))
            .allow(),
        case(S3U, "without fhirUser user/ scopes grant nothing")
            .scopes("user/Observation.rs")
            .line("GET", "Observation/1")
            .deny(Reason::MissingUserIdentity),
        case(S3U, "sub is not a user identity by default")
            .scopes("user/Observation.rs")
            .sub("b2c3d4")
            .line("GET", "Observation?code=2345-7")
            .deny(Reason::MissingUserIdentity),
        case(S3U, "policy user_from_sub accepts sub")
            .policy(|policy| policy.user_from_sub = true)
            .scopes("user/Observation.rs")
            .sub("b2c3d4")
            .line("GET", "Observation?code=2345-7")
            .allow()
            .obligation(Obligation::UserPermissions),
        case(S3U, "policy user_from_sub without sub nor fhirUser")
            .policy(|policy| policy.user_from_sub = true)
            .scopes("user/Observation.rs")
            .line("GET", "Observation?code=2345-7")
            .deny(Reason::MissingUserIdentity),
    ]
}

fn system() -> Vec<Case> {
    vec![
        case(S3S, "read with the client's policy, no compartment")
            .scopes("system/Observation.rs")
            .line("GET", "Observation/1")
            .stored(obs_of("456"))
            .allow()
            .obligation(Obligation::ClientPolicy)
            .no_compartment(),
        case(
            S3S,
            "search with a patient in the token: still no compartment",
        )
        .scopes("system/Observation.rs")
        .patient("123")
        .line("GET", "Observation?patient=Patient/456")
        .allow()
        .no_compartment(),
        case(S3S, "update of any patient's resource")
            .scopes("system/Observation.u")
            .line("PUT", "Observation/1")
            .stored(obs_of("123"))
            .proposed(obs_of("456"))
            .allow()
            .obligation(Obligation::ClientPolicy),
        case(S3S, "create a Patient")
            .scopes("system/Patient.c")
            .line("POST", "Patient")
            .proposed(without(patient("x"), "id"))
            .allow(),
        case(S3S, "system search without _type covers all types")
            .scopes("system/*.rs")
            .line("GET", "?_lastUpdated=gt2024-01-01")
            .allow()
            .types(&["*"])
            .no_compartment(),
        case(S3S, "write a Practitioner (never in a patient compartment)")
            .scopes("system/Practitioner.cu")
            .line("POST", "Practitioner")
            .proposed(without(practitioner(), "id"))
            .allow(),
    ]
}
