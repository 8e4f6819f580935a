//! The resource-facts extractor and its FHIRPath subset: any JSON read as a resource of
//! each type yields compartments, referenced patients and filter matches without panicking,
//! and every compartment member is also a referenced patient (the superset the deny check
//! of types outside the compartment relies on).
#![no_main]

use libfuzzer_sys::fuzz_target;
use smart_authz_engine::fhir::{FhirVersion, Resource};

const TYPES: [&str; 6] = [
    "Observation",
    "Patient",
    "Binary",
    "Bundle",
    "Device",
    "Encounter",
];
const FILTERS: [(&str, &[&str]); 4] = [
    (
        "category",
        &[
            "laboratory",
            "http://terminology.hl7.org/CodeSystem/observation-category|vital-signs",
        ],
    ),
    ("subject", &["Patient/123"]),
    ("name", &["Ann"]),
    ("code", &["http://loinc.org|"]),
];

fuzz_target!(|data: &[u8]| {
    let Ok(resource) = Resource::from_json_bytes(data) else {
        return;
    };
    for version in FhirVersion::ALL {
        for resource_type in TYPES {
            let members = resource.patient_compartments(version, resource_type);
            let referenced = resource.referenced_patients(version, resource_type);
            for member in &members {
                assert!(referenced.contains(member), "{member} not referenced");
            }
            for (param, values) in FILTERS {
                let values: Vec<String> = values.iter().map(|value| (*value).to_owned()).collect();
                let _ = resource.matches_filter(version, resource_type, param, &values);
            }
        }
    }
});
