use super::*;

#[test]
fn resource_type_counts_match_the_compartment_definitions() {
    assert_eq!(FhirVersion::R4.tables().resource_types.len(), 145);
    assert_eq!(FhirVersion::R4B.tables().resource_types.len(), 140);
    assert_eq!(FhirVersion::R5.tables().resource_types.len(), 157);
}

#[test]
fn resource_types_are_case_sensitive_and_versioned() {
    assert!(FhirVersion::R4.is_resource_type("Observation"));
    assert!(!FhirVersion::R4.is_resource_type("observation"));
    assert!(FhirVersion::R4.is_resource_type("DeviceUseStatement"));
    assert!(!FhirVersion::R5.is_resource_type("DeviceUseStatement"));
    assert!(FhirVersion::R5.is_resource_type("DeviceUsage"));
}

#[test]
fn search_params_include_inherited_ones() {
    let code = FhirVersion::R4.search_param("Observation", "code").unwrap();
    assert_eq!(code.expression, Some("Observation.code"));
    assert!(
        FhirVersion::R4
            .search_param("Observation", "_tag")
            .is_some()
    );
    assert!(
        FhirVersion::R4
            .search_param("Observation", "nonsense")
            .is_none()
    );
}

#[test]
fn patient_compartment_uses_the_official_parameters() {
    let compartment = FhirVersion::R4.patient_compartment();
    assert_eq!(
        compartment.params("Observation"),
        Some(&["subject", "performer"][..])
    );
    assert_eq!(compartment.params("Patient"), Some(&["link"][..]));
    assert_eq!(compartment.params("Practitioner"), None);
    assert_eq!(compartment.params("Device"), None);
    assert_eq!(
        FhirVersion::R5.patient_compartment().params("Patient"),
        Some(&["link"][..])
    );
}

#[test]
fn parses_version_names() {
    assert_eq!("r4b".parse(), Ok(FhirVersion::R4B));
    assert_eq!("R5".parse(), Ok(FhirVersion::R5));
    assert!("r6".parse::<FhirVersion>().is_err());
}
