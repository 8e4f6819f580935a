//! Facts the engine reads from a resource: the Patient compartments it belongs to, the
//! patients it references, and whether it matches a granular scope's filter.
//!
//! A caller gives either the resource JSON, from which the facts are computed with the
//! official CompartmentDefinition parameters and search parameter expressions, or the
//! facts precomputed (smart-semantics.md §5).

use serde_json::Value;

use super::interaction::{CompartmentRef, SearchParam};
use super::version::FhirVersion;

/// One version of a resource, as JSON or as precomputed facts.
#[derive(Clone, Debug, PartialEq)]
pub enum Resource {
    Json(Value),
    Facts(ResourceFacts),
}

/// Facts about a resource computed by the caller.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResourceFacts {
    /// Every compartment the resource belongs to, e.g. `Patient/123`.
    pub compartments: Vec<CompartmentRef>,
    /// Values of the search parameters a granular scope filters on; tokens as `system|code`
    /// or `code`.
    pub search_values: Vec<SearchParam>,
}

/// Whether a resource satisfies one filter item of a granular scope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FilterMatch {
    Match,
    NoMatch,
    /// The parameter's type or expression cannot be evaluated here; the engine denies.
    NotEnforceable(String),
}

/// Why resource JSON cannot be used for a decision.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FactsError {
    #[error("resource is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("resource is not a JSON object")]
    NotAnObject,
    #[error("resource has no resourceType")]
    MissingResourceType,
}

impl Resource {
    /// Parses resource JSON, requiring an object with a `resourceType`.
    pub fn from_json_bytes(bytes: &[u8]) -> Result<Self, FactsError> {
        todo!()
    }

    /// The JSON's `resourceType`; `None` for precomputed facts.
    pub fn resource_type(&self) -> Option<&str> {
        todo!()
    }

    /// The JSON's `id`; `None` for precomputed facts.
    pub fn id(&self) -> Option<&str> {
        todo!()
    }

    /// Ids of the Patient compartments this resource of `resource_type` belongs to.
    pub fn patient_compartments(&self, version: FhirVersion, resource_type: &str) -> Vec<String> {
        todo!()
    }

    /// Ids of every Patient this resource references through any reference search parameter
    /// of its type that can target Patient.
    pub fn referenced_patients(&self, version: FhirVersion, resource_type: &str) -> Vec<String> {
        todo!()
    }

    /// Whether this resource matches the filter item `param=values[0],values[1],...`.
    pub fn matches_filter(
        &self,
        version: FhirVersion,
        resource_type: &str,
        param: &str,
        values: &[String],
    ) -> FilterMatch {
        todo!()
    }
}
