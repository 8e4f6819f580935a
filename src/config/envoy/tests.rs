use super::*;

#[test]
fn a_path_is_relative_to_its_base() {
    let base = FhirBase {
        prefix: "/fhir/R5/".into(),
        fhir_version: Some(FhirVersion::R5),
    };
    assert_eq!(
        base.relative_path("/fhir/R5/Observation?code=x"),
        Some("Observation?code=x")
    );
    assert_eq!(base.relative_path("/fhir/R5"), Some(""));
    assert_eq!(
        base.relative_path("/fhir/R5?_type=Patient"),
        Some("?_type=Patient")
    );
    assert_eq!(base.relative_path("/fhir/R5x/Patient"), None);
    assert_eq!(base.relative_path("/admin/users"), None);
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

/// Two bases with one prefix: the FHIR version a request gets would follow their order.
#[test]
fn a_prefix_is_given_once() {
    let config = EnvoyConfig {
        bases: vec![
            FhirBase {
                prefix: "/fhir/".into(),
                fhir_version: None,
            },
            FhirBase {
                prefix: "/fhir/".into(),
                fhir_version: Some(FhirVersion::R5),
            },
        ],
        ..EnvoyConfig::default()
    };
    let (key, message) = config.validate().unwrap_err();
    assert_eq!(key, "envoy.bases[1].prefix");
    assert!(message.contains("twice"), "{message}");
}
