//! What a verified token says about who is asking and in which launch context
//! (App Launch 2.2 §3.0.3 "launch context", token-introspection.html).

use std::sync::Arc;

use serde_json::{Map, Value};

use super::scope_set::ScopeSet;
use crate::fhir::FhirVersion;
use crate::fhir::reference::id_of;

/// The decision-relevant content of a verified access token.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenContext {
    /// The *granted* scopes (never what the client asked for). Shared: the tokens of one
    /// app carry the same scopes, and a service caching many of them keeps one parsed copy.
    pub scopes: Arc<ScopeSet>,
    /// The patient in context, as a bare id (`Patient/123` is normalised to `123`).
    pub patient: Option<String>,
    /// The `patient` claim as written, when it is an absolute URL
    /// (`https://ehr.example/fhir/Patient/123`): it names a patient of the server at that
    /// base, so the engine takes it as the context only on a server with that base URL.
    pub patient_url: Option<String>,
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
    /// An identity claim with a control character: such a value must never reach an HTTP
    /// header (`x-smart-fhir-user`, ...) or a log line, so the claims are refused.
    #[error("claim {0} holds a control character")]
    ControlCharacter(&'static str),
    /// `scope` and `scp` both present, granting different scopes: which one an issuer meant
    /// (and a FHIR server reads) is not this service's to guess.
    #[error("claims scope and scp grant different scopes")]
    ConflictingScopes,
}

/// The granted scopes as a token carries them: `scope`, a space-separated string (RFC 9068
/// §2.2.3, App Launch 2.2 §2.0.6), or `scp`, a list (or a string) as some issuers write it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ScopeClaim<'a> {
    Text(&'a str),
    List(Vec<&'a str>),
}

impl ScopeClaim<'_> {
    pub fn parse(&self, version: FhirVersion) -> ScopeSet {
        match self {
            ScopeClaim::Text(text) => ScopeSet::parse(text, version),
            ScopeClaim::List(items) => ScopeSet::from_list(items.iter().copied(), version),
        }
    }
}

/// The members [`TokenContext::from_claims_with`] reads, found in one pass over the claims:
/// a look-up of each would compare its name with every member's, and a cold token's claims
/// are read on every verification.
#[derive(Default)]
struct LaunchClaims<'a> {
    scope: Option<&'a Value>,
    scp: Option<&'a Value>,
    patient: Option<&'a Value>,
    encounter: Option<&'a Value>,
    fhir_user: Option<&'a Value>,
    client_id: Option<&'a Value>,
    azp: Option<&'a Value>,
    sub: Option<&'a Value>,
}

impl<'a> LaunchClaims<'a> {
    fn of(claims: &'a Map<String, Value>) -> Self {
        let mut read = LaunchClaims::default();
        for (name, value) in claims {
            let slot = match name.as_str() {
                "scope" => &mut read.scope,
                "scp" => &mut read.scp,
                "patient" => &mut read.patient,
                "encounter" => &mut read.encounter,
                "fhirUser" => &mut read.fhir_user,
                "client_id" => &mut read.client_id,
                "azp" => &mut read.azp,
                "sub" => &mut read.sub,
                _ => continue,
            };
            *slot = Some(value);
        }
        read
    }
}

impl TokenContext {
    /// A context with scopes only, as for a backend-services token.
    pub fn with_scopes(scopes: ScopeSet) -> Self {
        TokenContext {
            scopes: Arc::new(scopes),
            ..TokenContext::default()
        }
    }

    /// Reads the context from verified claims: `scope` (space-separated string) or `scp`
    /// (array, or string), `patient`, `encounter`, `fhirUser`, `client_id` (or `azp`), `sub`.
    pub fn from_claims(claims: &Value, version: FhirVersion) -> Result<Self, ClaimsError> {
        Self::from_claims_with(claims, |claim| Arc::new(claim.parse(version)))
    }

    /// [`TokenContext::from_claims`] with the scopes read by `scopes`: a service that has
    /// already parsed the same claim for another token hands back that set (parsing is a
    /// pure function of the claim and the FHIR version).
    pub fn from_claims_with(
        claims: &Value,
        scopes: impl FnOnce(ScopeClaim<'_>) -> Arc<ScopeSet>,
    ) -> Result<Self, ClaimsError> {
        let claims = LaunchClaims::of(claims.as_object().ok_or(ClaimsError::NotAnObject)?);
        let claim = match (claims.scope, claims.scp) {
            (Some(Value::String(scope)), _) => ScopeClaim::Text(scope),
            (Some(_), _) => return Err(ClaimsError::WrongType("scope")),
            (None, Some(Value::Array(items))) => ScopeClaim::List(
                items
                    .iter()
                    .map(Value::as_str)
                    .collect::<Option<Vec<&str>>>()
                    .ok_or(ClaimsError::WrongType("scp"))?,
            ),
            (None, Some(Value::String(scope))) => ScopeClaim::Text(scope),
            (None, Some(_)) => return Err(ClaimsError::WrongType("scp")),
            (None, None) => ScopeClaim::List(Vec::new()),
        };
        // Compared as the scope parser reads them (split at U+0020 only, empty items
        // skipped): `"a\tb"` beside `["a", "b"]` is one invalid scope here and two scopes to
        // a server reading `scp`, a conflict.
        if let (ScopeClaim::Text(scope), Some(scp)) = (&claim, claims.scp) {
            fn items(text: &str) -> impl Iterator<Item = &str> {
                text.split(' ').filter(|item| !item.is_empty())
            }
            let mut granted: Vec<&str> = items(scope).collect();
            let mut also: Vec<&str> = match scp {
                Value::Null => granted.clone(),
                Value::String(text) => items(text).collect(),
                Value::Array(items) => items
                    .iter()
                    .map(Value::as_str)
                    .collect::<Option<Vec<&str>>>()
                    .ok_or(ClaimsError::WrongType("scp"))?
                    .into_iter()
                    .filter(|item| !item.is_empty())
                    .collect(),
                _ => return Err(ClaimsError::WrongType("scp")),
            };
            granted.sort_unstable();
            granted.dedup();
            also.sort_unstable();
            also.dedup();
            if granted != also {
                return Err(ClaimsError::ConflictingScopes);
            }
        }
        let text =
            |value: Option<&Value>, name: &'static str| -> Result<Option<String>, ClaimsError> {
                match value {
                    None | Some(Value::Null) => Ok(None),
                    // An empty claim is an absent claim: it must never stand for an identity.
                    Some(Value::String(value)) if value.trim().is_empty() => Ok(None),
                    Some(Value::String(value)) if value.chars().any(char::is_control) => {
                        Err(ClaimsError::ControlCharacter(name))
                    }
                    Some(Value::String(value)) => Ok(Some(value.clone())),
                    Some(_) => Err(ClaimsError::WrongType(name)),
                }
            };
        let (patient, patient_url) = match text(claims.patient, "patient")? {
            None => (None, None),
            Some(patient) => {
                let id = id_of("Patient", &patient)
                    .ok_or_else(|| ClaimsError::BadPatient(patient.clone()))?
                    .to_owned();
                let url = patient.contains("://").then_some(patient);
                (Some(id), url)
            }
        };
        Ok(TokenContext {
            scopes: scopes(claim),
            patient,
            patient_url,
            encounter: text(claims.encounter, "encounter")?.map(|encounter| {
                id_of("Encounter", &encounter)
                    .unwrap_or(&encounter)
                    .to_owned()
            }),
            fhir_user: text(claims.fhir_user, "fhirUser")?,
            client_id: text(claims.client_id, "client_id")?.or(text(claims.azp, "azp")?),
            sub: text(claims.sub, "sub")?,
        })
    }

    /// The same context read for a server of another FHIR version: the scopes parsed again
    /// from their texts (which resource types exist depends on the version), the launch
    /// context unchanged.
    pub fn for_version(&self, version: FhirVersion) -> TokenContext {
        TokenContext {
            scopes: Arc::new(ScopeSet::from_list(
                self.scopes
                    .entries()
                    .iter()
                    .map(|entry| entry.text.as_str()),
                version,
            )),
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests;
