//! A sample of the rule book on FHIR R5 (`Policy::for_version(R5)`, scopes parsed for R5).

use serde_json::json;

use super::fixtures::*;
use super::harness::*;
use crate::decision::{Obligation, Reason};

pub fn cases() -> Vec<Case> {
    vec![
        case(S3P, "R5 Condition: the patient as participant actor counts")
            .r5()
            .scopes("patient/Condition.rs")
            .patient("123")
            .line("GET", "Condition/1")
            .stored(condition_r5("Patient/456", "Patient/123"))
            .allow(),
        case(S3P, "R5 Condition: own subject")
            .r5()
            .scopes("patient/Condition.rs")
            .patient("123")
            .line("GET", "Condition/1")
            .stored(condition_r5("Patient/123", "Practitioner/7"))
            .allow(),
        case(S3P, "R5 Condition: neither subject nor participant")
            .r5()
            .scopes("patient/Condition.rs")
            .patient("123")
            .line("GET", "Condition/1")
            .stored(condition_r5("Patient/456", "Practitioner/7"))
            .deny(Reason::OutsideCompartment),
        case(
            S3P,
            "R5 Condition search: compartment parameters patient, participant-actor",
        )
        .r5()
        .scopes("patient/Condition.rs")
        .patient("123")
        .line("GET", "Condition?clinical-status=active")
        .allow()
        .compartment("Patient/123")
        .compartment_params(&["patient", "participant-actor"]),
        case(S3P, "R5 Encounter: own subject")
            .r5()
            .scopes("patient/Encounter.rs")
            .patient("123")
            .line("GET", "Encounter/1")
            .stored(encounter_r5("Patient/123"))
            .allow(),
        case(S3P, "R5 Encounter: another patient's")
            .r5()
            .scopes("patient/Encounter.rs")
            .patient("123")
            .line("GET", "Encounter/1")
            .stored(encounter_r5("Patient/456"))
            .deny(Reason::OutsideCompartment),
        case(S3P, "R5 DeviceAssociation: own subject")
            .r5()
            .scopes("patient/DeviceAssociation.rs")
            .patient("123")
            .line("GET", "DeviceAssociation/1")
            .stored(device_association_r5("Patient/123", None))
            .allow(),
        case(S3P, "R5 DeviceAssociation: the patient as operator counts")
            .r5()
            .scopes("patient/DeviceAssociation.rs")
            .patient("123")
            .line("GET", "DeviceAssociation/1")
            .stored(device_association_r5("Patient/456", Some("Patient/123")))
            .allow(),
        case(S3P, "R5 DeviceAssociation: another patient's")
            .r5()
            .scopes("patient/DeviceAssociation.rs")
            .patient("123")
            .line("GET", "DeviceAssociation/1")
            .stored(device_association_r5("Patient/456", Some("Practitioner/7")))
            .deny(Reason::OutsideCompartment),
        case(S3P, "R5 DeviceUsage: own patient")
            .r5()
            .scopes("patient/DeviceUsage.rs")
            .patient("123")
            .line("GET", "DeviceUsage/1")
            .stored(device_usage_r5("Patient/123"))
            .allow(),
        case(S3P, "R5 DeviceUsage search naming another patient")
            .r5()
            .scopes("patient/DeviceUsage.rs")
            .patient("123")
            .line("GET", "DeviceUsage?patient=Patient/456")
            .deny(Reason::OutsideCompartment),
        case(
            S1,
            "R5 patient/*.rs covers DeviceUsage (all types, now and future)",
        )
        .r5()
        .scopes("patient/*.rs")
        .patient("123")
        .line("GET", "DeviceUsage/1")
        .stored(device_usage_r5("Patient/123"))
        .allow(),
        case(S1, "R5 DeviceUseStatement scope is invalid in R5")
            .r5()
            .scopes("patient/DeviceUseStatement.rs patient/DeviceUsage.rs")
            .patient("123")
            .line("GET", "DeviceUsage?status=active")
            .allow()
            .ignored(&["patient/DeviceUseStatement.rs"])
            .grant_scopes(&["patient/DeviceUsage.rs"]),
        case(S0, "R5 request for DeviceUseStatement is an unknown type")
            .r5()
            .scopes("system/*.rs")
            .line("GET", "DeviceUseStatement/1")
            .deny(Reason::UnsupportedRequest),
        case(
            S3P,
            "R5 Device is never in the compartment: read without constraint",
        )
        .r5()
        .scopes("patient/Device.rs")
        .patient("123")
        .line("GET", "Device/1")
        .stored(device_r5())
        .allow()
        .no_compartment(),
        case(S3P, "R5 Device cannot be created under patient/ scopes")
            .r5()
            .scopes("patient/Device.c")
            .patient("123")
            .line("POST", "Device")
            .proposed(without(device_r5(), "id"))
            .deny(Reason::OutsideCompartment),
        case(
            S3P,
            "R5 AllergyIntolerance: the patient as participant counts",
        )
        .r5()
        .scopes("patient/AllergyIntolerance.rs")
        .patient("123")
        .line("GET", "AllergyIntolerance/1")
        .stored(allergy_r5("Patient/456", "Patient/123"))
        .allow(),
        case(S3P, "R5 Patient cannot be created under patient/ scopes")
            .r5()
            .scopes("patient/Patient.c")
            .patient("123")
            .line("POST", "Patient")
            .proposed(without(patient("x"), "id"))
            .deny(Reason::OutsideCompartment),
        case(S3P, "R5 system search over Observation and DeviceUsage")
            .r5()
            .scopes("patient/Observation.rs patient/DeviceUsage.rs")
            .patient("123")
            .line("GET", "?_type=Observation,DeviceUsage")
            .allow()
            .types(&["Observation", "DeviceUsage"])
            .compartment("Patient/123"),
        case(S2, "R5 $everything on the patient in context")
            .r5()
            .scopes("patient/*.rs")
            .patient("123")
            .line("GET", "Patient/123/$everything")
            .allow()
            .compartment("Patient/123"),
        case(S1, "R5 _filter in a granular scope is unsupported")
            .r5()
            .scopes("patient/*.rs?_filter=code%20eq%20x")
            .patient("123")
            .line("GET", "Observation?code=x")
            .deny(Reason::NoMatchingScope)
            .ignored(&["patient/*.rs?_filter=code%20eq%20x"]),
        case(
            S1,
            "R5 R4-only parameter asserter on a Condition scope is unsupported",
        )
        .r5()
        .scopes("patient/Condition.rs?asserter=Practitioner/7")
        .patient("123")
        .line("GET", "Condition/1")
        .stored(condition_r5("Patient/123", "Practitioner/7"))
        .deny(Reason::NoMatchingScope)
        .ignored(&["patient/Condition.rs?asserter=Practitioner/7"]),
        case(S1, "R5 participant-actor is a valid Condition filter")
            .r5()
            .scopes("patient/Condition.rs?participant-actor=Practitioner/7")
            .patient("123")
            .line("GET", "Condition/1")
            .stored(condition_r5("Patient/123", "Practitioner/7"))
            .allow(),
        case(S1, "R5 _has in a granular scope is unsupported")
            .r5()
            .scopes("patient/Patient.rs?_has:Observation:patient:code=1234")
            .patient("123")
            .line("GET", "Patient/123")
            .deny(Reason::NoMatchingScope),
        case(S4, "R5 granular category on an R5 Observation")
            .r5()
            .scopes("patient/Observation.rs?category=laboratory")
            .patient("123")
            .line("GET", "Observation/1")
            .stored(vital_signs_of("123"))
            .deny(Reason::FilterMismatch),
        case(S4, "R5 _in filter (membership) cannot be checked on a read")
            .r5()
            .scopes("patient/*.rs?_in=List/1")
            .patient("123")
            .line("GET", "Observation/1")
            .stored(obs_of("123"))
            .deny(Reason::FilterMismatch),
        case(
            S1,
            "R5 _type is no filter: a server may ignore it on a type search",
        )
        .r5()
        .scopes("patient/*.rs?_type=Observation")
        .patient("123")
        .line("GET", "Condition")
        .deny(Reason::NoMatchingScope)
        .ignored(&["patient/*.rs?_type=Observation"]),
        case(S1, "R5 _query is no filter: it runs a named query")
            .r5()
            .scopes("patient/Observation.rs?_query=mine")
            .patient("123")
            .line("GET", "Observation")
            .deny(Reason::NoMatchingScope)
            .ignored(&["patient/Observation.rs?_query=mine"]),
        case(S4, "R5 _in filter passed on to a search")
            .r5()
            .scopes("patient/*.rs?_in=List/1")
            .patient("123")
            .line("GET", "Observation?code=x")
            .allow()
            .filters(&[("_in", &["List/1"])]),
        case(S3U, "R5 user/ read of an R5 Encounter")
            .r5()
            .scopes("user/Encounter.rs")
            .fhir_user("Practitioner/7")
            .line("GET", "Encounter/1")
            .stored(encounter_r5("Patient/456"))
            .allow()
            .obligation(Obligation::UserPermissions),
        case(
            S5,
            "R5 DeviceAssociation read without the resource: constraint",
        )
        .r5()
        .scopes("patient/DeviceAssociation.rs")
        .patient("123")
        .line("GET", "DeviceAssociation/1")
        .allow()
        .compartment("Patient/123")
        .compartment_params(&["subject", "operator"]),
        case(S3P, "R5 update moving an Encounter out of the compartment")
            .r5()
            .scopes("patient/Encounter.u")
            .patient("123")
            .line("PUT", "Encounter/1")
            .stored(encounter_r5("Patient/123"))
            .proposed(with(
                encounter_r5("Patient/123"),
                "subject",
                json!({ "reference": "Patient/456" }),
            ))
            .deny(Reason::OutsideCompartment),
    ]
}
