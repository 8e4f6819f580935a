use serde_json::json;

use super::*;

#[test]
fn reads_launch_context_claims() {
    let claims = json!({
        "scope": "launch/patient patient/*.rs openid fhirUser",
        "patient": "Patient/123",
        "encounter": "enc-1",
        "fhirUser": "https://ehr.example/fhir/Practitioner/7",
        "azp": "growth-chart",
        "sub": "u-1"
    });
    let context = TokenContext::from_claims(&claims, FhirVersion::R4).unwrap();
    assert_eq!(context.patient.as_deref(), Some("123"));
    assert_eq!(context.encounter.as_deref(), Some("enc-1"));
    assert_eq!(context.client_id.as_deref(), Some("growth-chart"));
    assert_eq!(context.scopes.entries().len(), 4);
    assert_eq!(context.patient_url, None);
}

#[test]
fn keeps_an_absolute_patient_claim_for_its_base() {
    let claims =
        json!({"scope": "patient/*.rs", "patient": "https://ehr.example/fhir/Patient/123"});
    let context = TokenContext::from_claims(&claims, FhirVersion::R4).unwrap();
    assert_eq!(context.patient.as_deref(), Some("123"));
    assert_eq!(
        context.patient_url.as_deref(),
        Some("https://ehr.example/fhir/Patient/123")
    );
}

#[test]
fn accepts_scp_as_an_array() {
    let claims = json!({"scp": ["system/*.rs", "system/Patient.c"], "client_id": "bulk"});
    let context = TokenContext::from_claims(&claims, FhirVersion::R4).unwrap();
    assert_eq!(context.scopes.resource_scopes().count(), 2);
    assert_eq!(context.client_id.as_deref(), Some("bulk"));
}

#[test]
fn rejects_claims_of_the_wrong_type() {
    let wrong = [
        (json!({"scope": ["a"]}), ClaimsError::WrongType("scope")),
        (json!({"scp": [1]}), ClaimsError::WrongType("scp")),
        (json!({"patient": 123}), ClaimsError::WrongType("patient")),
        (
            json!({"patient": "Practitioner/1"}),
            ClaimsError::BadPatient("Practitioner/1".into()),
        ),
        (json!("x"), ClaimsError::NotAnObject),
    ];
    for (claims, expected) in wrong {
        assert_eq!(
            TokenContext::from_claims(&claims, FhirVersion::R4),
            Err(expected)
        );
    }
}

#[test]
fn identity_claims_with_control_characters_are_refused() {
    for name in [
        "fhirUser",
        "client_id",
        "azp",
        "sub",
        "patient",
        "encounter",
    ] {
        let mut claims = json!({"scope": "patient/*.rs", "patient": "123"});
        claims[name] = json!("Patient/123\r\nx-smart-role: admin");
        assert_eq!(
            TokenContext::from_claims(&claims, FhirVersion::R4),
            Err(ClaimsError::ControlCharacter(name)),
            "{name}"
        );
    }
}

/// A server of another FHIR version re-reads the scopes (R5's `DeviceUsage` is no R4 type);
/// the launch context stays as it was.
#[test]
fn a_context_is_read_again_for_another_fhir_version() {
    let claims = json!({
        "scope": "patient/DeviceUsage.rs patient/Observation.rs",
        "patient": "123",
        "client_id": "app",
    });
    let r4 = TokenContext::from_claims(&claims, FhirVersion::R4).unwrap();
    assert!(r4.scopes.entries()[0].parsed.is_err());
    let r5 = r4.for_version(FhirVersion::R5);
    assert!(r5.scopes.entries()[0].parsed.is_ok());
    assert!(r5.scopes.entries()[1].parsed.is_ok());
    assert_eq!(r5.patient.as_deref(), Some("123"));
    assert_eq!(r5.client_id.as_deref(), Some("app"));
    assert_eq!(
        r5.for_version(FhirVersion::R4).scopes.entries()[0].parsed,
        r4.scopes.entries()[0].parsed
    );
}
