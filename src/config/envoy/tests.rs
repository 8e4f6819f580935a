use super::*;

#[test]
fn the_longest_prefix_wins() {
    let config = EnvoyConfig {
        bases: vec![
            FhirBase {
                prefix: "/fhir/".into(),
                fhir_version: None,
            },
            FhirBase {
                prefix: "/fhir/R5/".into(),
                fhir_version: Some(FhirVersion::R5),
            },
        ],
        ..EnvoyConfig::default()
    };
    let (base, rest) = config.base_of("/fhir/R5/Observation?code=x").unwrap();
    assert_eq!(base.fhir_version, Some(FhirVersion::R5));
    assert_eq!(rest, "Observation?code=x");
    assert_eq!(config.base_of("/fhir/Patient/1").unwrap().1, "Patient/1");
    assert_eq!(config.base_of("/fhir/R5").unwrap().1, "");
    assert_eq!(
        config.base_of("/fhir/R5?_type=Patient").unwrap().1,
        "?_type=Patient"
    );
    assert!(config.base_of("/admin/users").is_none());
    assert!(config.base_of("/fhirish/Patient").is_none());
}

#[test]
fn prefixes_must_be_slash_delimited() {
    let config = EnvoyConfig {
        bases: vec![FhirBase {
            prefix: "/fhir".into(),
            fhir_version: None,
        }],
        ..EnvoyConfig::default()
    };
    assert_eq!(config.validate().unwrap_err().0, "envoy.bases[0].prefix");
}
