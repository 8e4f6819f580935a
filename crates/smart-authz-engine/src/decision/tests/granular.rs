//! §4 granular filters and §5 what a decision needs from the caller.

use serde_json::json;

use super::fixtures::*;
use super::harness::*;
use crate::decision::{Obligation, Reason};

const LAB_SCOPE: &str = "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory";
const VITALS_SCOPE: &str = "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|vital-signs";

pub fn cases() -> Vec<Case> {
    let mut cases = granular();
    cases.extend(parameter_kinds());
    cases.extend(caller_input());
    cases
}

fn granular() -> Vec<Case> {
    vec![
        case(S4, "read: stored matches system|code")
            .scopes(LAB_SCOPE)
            .patient("123")
            .line("GET", "Observation/1")
            .stored(obs_of("123"))
            .allow()
            .no_filters()
            .no_compartment(),
        case(S4, "read: stored does not match")
            .scopes(LAB_SCOPE)
            .patient("123")
            .line("GET", "Observation/1")
            .stored(vital_signs_of("123"))
            .deny(Reason::FilterMismatch),
        case(S4, "read: one of several categories matches")
            .scopes(LAB_SCOPE)
            .patient("123")
            .line("GET", "Observation/1")
            .stored(obs_two_categories("123"))
            .allow(),
        case(S4, "read: several categories, none matches")
            .scopes(VITALS_SCOPE)
            .patient("123")
            .line("GET", "Observation/1")
            .stored(obs_two_categories("123"))
            .deny(Reason::FilterMismatch),
        case(S4, "code alone matches any system")
            .scopes("patient/Observation.rs?category=laboratory")
            .patient("123")
            .line("GET", "Observation/1")
            .stored(obs_of("123"))
            .allow(),
        case(S4, "code alone does not match another code")
            .scopes("patient/Observation.rs?category=vital-signs")
            .patient("123")
            .line("GET", "Observation/1")
            .stored(obs_of("123"))
            .deny(Reason::FilterMismatch),
        case(S4, "system|code with the right code in another system does not match")
            .scopes("patient/Observation.rs?category=http://example.org/local-categories|laboratory")
            .patient("123")
            .line("GET", "Observation/1")
            .stored(obs_of("123"))
            .deny(Reason::FilterMismatch),
        case(S4, "system| matches any code of the system")
            .scopes("patient/Observation.rs?code=http://loinc.org|")
            .patient("123")
            .line("GET", "Observation/1")
            .stored(obs_of("123"))
            .allow(),
        case(S4, "system| does not match codes of another system")
            .scopes("patient/Observation.rs?code=http://loinc.org|")
            .patient("123")
            .line("GET", "Observation/1")
            .stored(obs_snomed_only("123"))
            .deny(Reason::FilterMismatch),
        case(S4, "two granular scopes are alternatives: the second matches")
            .scopes(&format!("{LAB_SCOPE} {VITALS_SCOPE}"))
            .patient("123")
            .line("GET", "Observation/1")
            .stored(vital_signs_of("123"))
            .allow()
            .grant_scopes(&[VITALS_SCOPE]),
        case(S4, "two granular scopes, neither matches")
            .scopes(&format!("{LAB_SCOPE} {VITALS_SCOPE}"))
            .patient("123")
            .line("GET", "Observation/1")
            .stored(with(
                obs_of("123"),
                "category",
                json!([{ "coding": [{ "system": OBS_CATEGORY, "code": "social-history" }] }]),
            ))
            .deny(Reason::FilterMismatch),
        case(S4, "items are ANDed: category matches, status does not")
            .scopes("patient/Observation.rs?category=laboratory&status=final")
            .patient("123")
            .line("GET", "Observation/1")
            .stored(with(obs_of("123"), "status", json!("preliminary")))
            .deny(Reason::FilterMismatch),
        case(S4, "items are ANDed: both match")
            .scopes("patient/Observation.rs?category=laboratory&status=final")
            .patient("123")
            .line("GET", "Observation/1")
            .stored(obs_of("123"))
            .allow(),
        case(S4, "values of one item are ORed")
            .scopes("patient/Observation.rs?category=laboratory,vital-signs")
            .patient("123")
            .line("GET", "Observation/1")
            .stored(vital_signs_of("123"))
            .allow(),
        case(S4, "create: the new version matches")
            .scopes("patient/Observation.c?category=laboratory")
            .patient("123")
            .line("POST", "Observation")
            .proposed(obs_of("123"))
            .allow()
            .no_filters(),
        case(S4, "create: the new version does not match")
            .scopes("patient/Observation.c?category=laboratory")
            .patient("123")
            .line("POST", "Observation")
            .proposed(vital_signs_of("123"))
            .deny(Reason::FilterMismatch),
        case(S4, "update: stored does not match, new does")
            .scopes("patient/Observation.u?category=laboratory")
            .patient("123")
            .line("PUT", "Observation/1")
            .stored(vital_signs_of("123"))
            .proposed(obs_of("123"))
            .deny(Reason::FilterMismatch),
        case(S4, "update: stored matches, new does not")
            .scopes("patient/Observation.u?category=laboratory")
            .patient("123")
            .line("PUT", "Observation/1")
            .stored(obs_of("123"))
            .proposed(vital_signs_of("123"))
            .deny(Reason::FilterMismatch),
        case(S4, "update: both match")
            .scopes("patient/Observation.u?category=laboratory")
            .patient("123")
            .line("PUT", "Observation/1")
            .stored(obs_of("123"))
            .proposed(with(obs_of("123"), "status", json!("amended")))
            .allow()
            .no_filters()
            .no_compartment(),
        case(S4, "patch: new version leaves the filter")
            .scopes("user/Observation.u?category=laboratory")
            .fhir_user("Practitioner/7")
            .line("PATCH", "Observation/1")
            .stored(obs_of("123"))
            .proposed(vital_signs_of("123"))
            .deny(Reason::FilterMismatch),
        case(S4, "delete: stored does not match")
            .scopes("patient/Observation.d?category=laboratory")
            .patient("123")
            .line("DELETE", "Observation/1")
            .stored(vital_signs_of("123"))
            .deny(Reason::FilterMismatch),
        case(S4, "search: the filter becomes a constraint beside the compartment")
            .scopes(LAB_SCOPE)
            .patient("123")
            .line("GET", "Observation?code=2345-7")
            .allow()
            .compartment("Patient/123")
            .filters(&[("category", &[LAB])]),
        case(S4, "search with two granular scopes: one filter per grant")
            .scopes(&format!("{LAB_SCOPE} {VITALS_SCOPE}"))
            .patient("123")
            .line("GET", "Observation?date=ge2024-01-01")
            .allow()
            .filters_of(LAB_SCOPE, &[("category", &[LAB])])
            .filters_of(VITALS_SCOPE, &[("category", &[VITALS])]),
        case(S4, "search under user/ keeps the filter")
            .scopes("user/Observation.rs?status=final")
            .fhir_user("Practitioner/7")
            .line("GET", "Observation?code=2345-7")
            .allow()
            .filters(&[("status", &["final"])])
            .obligation(Obligation::UserPermissions),
        case(S4, "read: a date filter cannot be enforced on the stored resource")
            .scopes("patient/Observation.rs?date=ge2024-01-01")
            .patient("123")
            .line("GET", "Observation/1")
            .stored(obs_of("123"))
            .deny(Reason::FilterMismatch),
        case(S4, "search: a date filter is passed on as a constraint")
            .scopes("patient/Observation.rs?date=ge2024-01-01")
            .patient("123")
            .line("GET", "Observation?code=2345-7")
            .allow()
            .filters(&[("date", &["ge2024-01-01"])]),
        case(S4, "* with _security: the stored resource carries the label")
            .scopes(&format!("patient/*.rs?_security={CONFIDENTIALITY}|N"))
            .patient("123")
            .line("GET", "Condition/1")
            .stored(with(
                condition("Patient/123"),
                "meta",
                json!({ "security": [{ "system": CONFIDENTIALITY, "code": "N" }] }),
            ))
            .allow(),
        case(S4, "* with _security: another label")
            .scopes(&format!("patient/*.rs?_security={CONFIDENTIALITY}|N"))
            .patient("123")
            .line("GET", "Condition/1")
            .stored(with(
                condition("Patient/123"),
                "meta",
                json!({ "security": [{ "system": CONFIDENTIALITY, "code": "R" }] }),
            ))
            .deny(Reason::FilterMismatch),
        case(S4, "* with _security: no label at all")
            .scopes(&format!("system/*.rs?_security={CONFIDENTIALITY}|N"))
            .line("GET", "Observation/1")
            .stored(obs_of("123"))
            .deny(Reason::FilterMismatch),
        case(S4, "* with _tag: the tag is present")
            .scopes("patient/*.rs?_tag=http://example.org/tags|research")
            .patient("123")
            .line("GET", "Observation/1")
            .stored(with(
                obs_of("123"),
                "meta",
                json!({ "tag": [{ "system": "http://example.org/tags", "code": "research" }] }),
            ))
            .allow(),
        case(S4, "* with _tag: search gets the filter")
            .scopes("patient/*.rs?_tag=http://example.org/tags|research")
            .patient("123")
            .line("GET", "?_type=Observation,Condition")
            .allow()
            .filters(&[("_tag", &["http://example.org/tags|research"])])
            .compartment("Patient/123"),
        case(S4, "a plain scope subsumes a granular one on a non-matching read")
            .scopes(&format!("{LAB_SCOPE} patient/Observation.rs"))
            .patient("123")
            .line("GET", "Observation/1")
            .stored(vital_signs_of("123"))
            .allow()
            .grant_scopes(&["patient/Observation.rs"]),
        case(S4, "system/ granular read does not match")
            .scopes("system/Observation.rs?category=laboratory")
            .line("GET", "Observation/1")
            .stored(vital_signs_of("456"))
            .deny(Reason::FilterMismatch),
        case(S4, "filter matches but the resource is another patient's")
            .scopes(LAB_SCOPE)
            .patient("123")
            .line("GET", "Observation/1")
            .stored(obs_of("456"))
            .deny(Reason::OutsideCompartment),
        case(S4, "Condition category filter")
            .scopes(
                "patient/Condition.rs?category=http://terminology.hl7.org/CodeSystem/condition-category|problem-list-item",
            )
            .patient("123")
            .line("GET", "Condition/1")
            .stored(condition("Patient/123"))
            .allow(),
        case(S4, "Condition code filter does not match")
            .scopes("patient/Condition.rs?code=http://snomed.info/sct|73211009")
            .patient("123")
            .line("GET", "Condition/1")
            .stored(condition("Patient/123"))
            .deny(Reason::FilterMismatch),
    ]
}

/// FHIR search semantics on other parameter kinds (token on boolean, Identifier, code;
/// string; reference; uri).
fn parameter_kinds() -> Vec<Case> {
    vec![
        case(S4, "token on a boolean: active=true matches")
            .scopes("system/Patient.rs?active=true")
            .line("GET", "Patient/1")
            .stored(patient("1"))
            .allow(),
        case(S4, "token on a boolean: active=true does not match false")
            .scopes("system/Patient.rs?active=true")
            .line("GET", "Patient/1")
            .stored(with(patient("1"), "active", json!(false)))
            .deny(Reason::FilterMismatch),
        case(S4, "token on an Identifier: system|value matches")
            .scopes("system/Observation.rs?identifier=http://acme.org/obs|6323")
            .line("GET", "Observation/1")
            .stored(with(
                obs_of("123"),
                "identifier",
                json!([{ "use": "official", "system": "http://acme.org/obs", "value": "6323" }]),
            ))
            .allow(),
        case(S4, "token on an Identifier: another system does not match")
            .scopes("system/Observation.rs?identifier=http://acme.org/obs|6323")
            .line("GET", "Observation/1")
            .stored(with(
                obs_of("123"),
                "identifier",
                json!([{ "system": "http://other.org/obs", "value": "6323" }]),
            ))
            .deny(Reason::FilterMismatch),
        case(S4, "token on a code: gender=male")
            .scopes("patient/Patient.rs?gender=male")
            .patient("123")
            .line("GET", "Patient/123")
            .stored(patient("123"))
            .allow(),
        case(S4, "string: family matches case-insensitively from the start")
            .scopes("system/Patient.rs?family=chal")
            .line("GET", "Patient/1")
            .stored(patient("1"))
            .allow(),
        case(S4, "string: family does not match")
            .scopes("system/Patient.rs?family=smith")
            .line("GET", "Patient/1")
            .stored(patient("1"))
            .deny(Reason::FilterMismatch),
        case(S4, "reference: subject=Patient/123 matches")
            .scopes("user/Observation.rs?subject=Patient/123")
            .fhir_user("Practitioner/7")
            .line("GET", "Observation/1")
            .stored(obs_of("123"))
            .allow(),
        case(S4, "reference: subject=Patient/123 does not match another subject")
            .scopes("user/Observation.rs?subject=Patient/123")
            .fhir_user("Practitioner/7")
            .line("GET", "Observation/1")
            .stored(obs_of("456"))
            .deny(Reason::FilterMismatch),
        case(S4, "uri: _profile listed in meta.profile")
            .scopes("system/*.rs?_profile=http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient")
            .line("GET", "Patient/1")
            .stored(with(
                patient("1"),
                "meta",
                json!({ "profile": ["http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"] }),
            ))
            .allow(),
        case(S4, "uri: _profile absent")
            .scopes("system/*.rs?_profile=http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient")
            .line("GET", "Patient/1")
            .stored(patient("1"))
            .deny(Reason::FilterMismatch),
        case(S4, "code without system matches the LOINC coding")
            .scopes("patient/Observation.rs?code=2345-7")
            .patient("123")
            .line("GET", "Observation/1")
            .stored(obs_of("123"))
            .allow(),
    ]
}

/// §5: without the resource, allow with constraints; with JSON or facts, decide completely.
fn caller_input() -> Vec<Case> {
    vec![
        case(
            S5,
            "read without the stored resource: compartment constraint",
        )
        .scopes("patient/Observation.rs")
        .patient("123")
        .line("GET", "Observation/1")
        .allow()
        .compartment("Patient/123")
        .compartment_params(&["subject", "performer"]),
        case(
            S5,
            "delete without the stored resource: compartment constraint",
        )
        .scopes("patient/Observation.d")
        .patient("123")
        .line("DELETE", "Observation/1")
        .allow()
        .compartment("Patient/123"),
        case(
            S5,
            "create without the new resource: compartment constraint",
        )
        .scopes("patient/Observation.c")
        .patient("123")
        .line("POST", "Observation")
        .allow()
        .compartment("Patient/123"),
        case(
            S5,
            "update with only the stored version: constraint kept for the new one",
        )
        .scopes("patient/Observation.u")
        .patient("123")
        .line("PUT", "Observation/1")
        .stored(obs_of("123"))
        .allow()
        .compartment("Patient/123"),
        case(
            S5,
            "update with only the new version: constraint kept for the stored one",
        )
        .scopes("patient/Observation.u")
        .patient("123")
        .line("PUT", "Observation/1")
        .proposed(obs_of("123"))
        .allow()
        .compartment("Patient/123"),
        case(
            S5,
            "granular read without the resource: compartment and filters",
        )
        .scopes(LAB_SCOPE)
        .patient("123")
        .line("GET", "Observation/1")
        .allow()
        .compartment("Patient/123")
        .filters(&[("category", &[LAB])]),
        case(
            S5,
            "granular update with only the stored version: filter kept",
        )
        .scopes("patient/Observation.u?category=laboratory")
        .patient("123")
        .line("PUT", "Observation/1")
        .stored(obs_of("123"))
        .allow()
        .filters(&[("category", &["laboratory"])])
        .compartment("Patient/123"),
        case(
            S5,
            "granular system/ read without the resource: filter kept",
        )
        .scopes("system/Observation.rs?category=laboratory")
        .line("GET", "Observation/1")
        .allow()
        .filters(&[("category", &["laboratory"])])
        .no_compartment(),
        case(S5, "facts: in the compartment, decided completely")
            .scopes("patient/Observation.rs")
            .patient("123")
            .line("GET", "Observation/1")
            .stored_facts(facts(&["Patient/123", "Encounter/5"], &[]))
            .allow()
            .no_compartment(),
        case(S5, "facts: another patient's compartment")
            .scopes("patient/Observation.rs")
            .patient("123")
            .line("GET", "Observation/1")
            .stored_facts(facts(&["Patient/456"], &[]))
            .deny(Reason::OutsideCompartment),
        case(S5, "facts: only an Encounter compartment")
            .scopes("patient/Observation.rs")
            .patient("123")
            .line("GET", "Observation/1")
            .stored_facts(facts(&["Encounter/5"], &[]))
            .deny(Reason::OutsideCompartment),
        case(S5, "facts: filter value matches")
            .scopes(LAB_SCOPE)
            .patient("123")
            .line("GET", "Observation/1")
            .stored_facts(facts(&["Patient/123"], &[("category", LAB)]))
            .allow()
            .no_filters()
            .no_compartment(),
        case(S5, "facts: filter value does not match")
            .scopes(LAB_SCOPE)
            .patient("123")
            .line("GET", "Observation/1")
            .stored_facts(facts(&["Patient/123"], &[("category", VITALS)]))
            .deny(Reason::FilterMismatch),
        case(S5, "facts: the filtered parameter is missing")
            .scopes(LAB_SCOPE)
            .patient("123")
            .line("GET", "Observation/1")
            .stored_facts(facts(
                &["Patient/123"],
                &[("code", "http://loinc.org|2345-7")],
            ))
            .deny(Reason::FilterMismatch),
        case(S5, "facts: update with stored facts and new JSON, both in")
            .scopes("patient/Observation.u")
            .patient("123")
            .line("PUT", "Observation/1")
            .stored_facts(facts(&["Patient/123"], &[]))
            .proposed(obs_of("123"))
            .allow()
            .no_compartment(),
        case(S5, "facts: new version facts move the resource out")
            .scopes("patient/Observation.u")
            .patient("123")
            .line("PUT", "Observation/1")
            .stored(obs_of("123"))
            .proposed_facts(facts(&["Patient/456"], &[]))
            .deny(Reason::OutsideCompartment),
        case(S5, "facts: a Device known to belong to another patient")
            .scopes("patient/Device.rs")
            .patient("123")
            .line("GET", "Device/1")
            .stored_facts(facts(&["Patient/456"], &[]))
            .deny(Reason::OutsideCompartment),
        case(S5, "facts: another Patient linked to the patient")
            .scopes("patient/Patient.r")
            .patient("123")
            .line("GET", "Patient/456")
            .stored_facts(facts(&["Patient/123"], &[]))
            .allow(),
    ]
}
