//! What a verified token says about who is asking and in which launch context
//! (App Launch 2.2 §3.0.3 "launch context", token-introspection.html).

use serde_json::Value;

use super::scope_set::ScopeSet;
use crate::fhir::FhirVersion;
use crate::fhir::reference::id_of;

/// The decision-relevant content of a verified access token.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenContext {
    /// The *granted* scopes (never what the client asked for).
    pub scopes: ScopeSet,
    /// The patient in context, as a bare id (`Patient/123` is normalised to `123`).
    pub patient: Option<String>,
    pub encounter: Option<String>,
    /// The user's FHIR resource, e.g. `Practitioner/7` or an absolute URL.
    pub fhir_user: Option<String>,
    pub client_id: Option<String>,
    pub sub: Option<String>,
}

/// A claim with the wrong JSON type; a token carrying one is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimsError {
    #[error("token claims are not a JSON object")]
    NotAnObject,
    #[error("claim {0} has the wrong type")]
    WrongType(&'static str),
    #[error("claim patient {0:?} is not a Patient id or reference")]
    BadPatient(String),
}

impl TokenContext {
    /// A context with scopes only, as for a backend-services token.
    pub fn with_scopes(scopes: ScopeSet) -> Self {
        TokenContext {
            scopes,
            ..TokenContext::default()
        }
    }

    /// Reads the context from verified claims: `scope` (space-separated string) or `scp`
    /// (array, or string), `patient`, `encounter`, `fhirUser`, `client_id` (or `azp`), `sub`.
    pub fn from_claims(claims: &Value, version: FhirVersion) -> Result<Self, ClaimsError> {
        let claims = claims.as_object().ok_or(ClaimsError::NotAnObject)?;
        let scopes = match (claims.get("scope"), claims.get("scp")) {
            (Some(Value::String(scope)), _) => ScopeSet::parse(scope, version),
            (Some(_), _) => return Err(ClaimsError::WrongType("scope")),
            (None, Some(Value::Array(items))) => {
                let texts: Option<Vec<&str>> = items.iter().map(Value::as_str).collect();
                ScopeSet::from_list(texts.ok_or(ClaimsError::WrongType("scp"))?, version)
            }
            (None, Some(Value::String(scope))) => ScopeSet::parse(scope, version),
            (None, Some(_)) => return Err(ClaimsError::WrongType("scp")),
            (None, None) => ScopeSet::default(),
        };
        let text = |name: &'static str| -> Result<Option<String>, ClaimsError> {
            match claims.get(name) {
                None | Some(Value::Null) => Ok(None),
                // An empty claim is an absent claim: it must never stand for an identity.
                Some(Value::String(value)) if value.trim().is_empty() => Ok(None),
                Some(Value::String(value)) => Ok(Some(value.clone())),
                Some(_) => Err(ClaimsError::WrongType(name)),
            }
        };
        let patient = match text("patient")? {
            None => None,
            Some(patient) => Some(
                id_of("Patient", &patient)
                    .ok_or_else(|| ClaimsError::BadPatient(patient.clone()))?
                    .to_owned(),
            ),
        };
        Ok(TokenContext {
            scopes,
            patient,
            encounter: text("encounter")?.map(|encounter| {
                id_of("Encounter", &encounter)
                    .unwrap_or(&encounter)
                    .to_owned()
            }),
            fhir_user: text("fhirUser")?,
            client_id: text("client_id")?.or(text("azp")?),
            sub: text("sub")?,
        })
    }
}

#[cfg(test)]
mod tests {
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
        assert_eq!(context.scopes.entries.len(), 4);
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
}
