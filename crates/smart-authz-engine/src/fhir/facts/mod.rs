//! Facts the engine reads from a resource: the Patient compartments it belongs to, the
//! patients it references, and whether it matches a granular scope's filter.
//!
//! A caller gives either the resource JSON, from which the facts are computed with the
//! official CompartmentDefinition parameters and search parameter expressions, or the
//! facts precomputed (docs/semantics.md §5).
//!
//! This file reads a resource and answers the engine's questions; [`compartments`] finds the
//! patients a resource belongs to or references, [`filters`] matches granular filters.

mod compartments;
mod filters;
mod shape;

use serde_json::Value;

use self::compartments::{
    PatientIds, push_compartment_patients, push_every_patient_reference,
    push_fact_patient_references, push_fact_patients,
};
use self::filters::{
    kind_name, match_facts, parse_token, reads_choice_without_type_filter, reference_node_matches,
    string_node_matches, token_node_matches,
};
use super::fhirpath::AmbiguousElement;
use super::interaction::{CompartmentRef, SearchParam};
use super::json::{TreeMemory, parse_strict_within};
use super::reference::Locality;
use super::tables::SearchParamKind;
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

/// A Patient compartment link of a resource that a FHIR server may read as a patient where
/// this service sees none.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UnreadableLink<'r> {
    /// A reference that mentions a patient but that no rule reads (`/Patient/456`,
    /// `patient/456`, `Patient/456/`).
    #[error("the reference {0:?}, which this service cannot read")]
    Reference(&'r str),
    /// A link given twice (`reported` beside `reportedReference`): servers keep one or the
    /// other.
    #[error("a link given twice ({0})")]
    Ambiguous(AmbiguousElement<'r>),
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
    /// A member every rule reads as a string given as something else, which a server may
    /// still read ([`shape`]).
    #[error(
        "resource member {name:?} is {kind}, which this service cannot read and a server might"
    )]
    UnreadableMember { name: String, kind: &'static str },
}

impl Resource {
    /// Parses resource JSON, requiring an object with a `resourceType`.
    pub fn from_json_bytes(bytes: &[u8]) -> Result<Self, FactsError> {
        Resource::from_json_bytes_within(bytes, &mut |_| true)
    }

    /// [`Resource::from_json_bytes`], the memory of the parsed tree asked of `memory` as it
    /// grows ([`parse_strict_within`]).
    pub fn from_json_bytes_within(
        bytes: &[u8],
        memory: &mut dyn TreeMemory,
    ) -> Result<Self, FactsError> {
        let value = parse_strict_within(bytes, memory)
            .map_err(|error| FactsError::InvalidJson(error.to_string()))?;
        Resource::from_json(value)
    }

    /// Wraps parsed resource JSON, requiring an object with a `resourceType` and every
    /// reference, id and type a string ([`Resource::check_shape`]).
    pub fn from_json(value: Value) -> Result<Self, FactsError> {
        let Value::Object(object) = &value else {
            return Err(FactsError::NotAnObject);
        };
        match object.get("resourceType").and_then(Value::as_str) {
            Some(resource_type) if !resource_type.is_empty() => {
                Resource::check_shape(&value)?;
                Ok(Resource::Json(value))
            }
            _ => Err(FactsError::MissingResourceType),
        }
    }

    /// Refuses JSON in which a `reference` is neither a string nor an object, or an `id` or
    /// `resourceType` is not a string, at any depth: the rules would read no value where a
    /// server may read one ([`shape`]).
    pub fn check_shape(value: &Value) -> Result<(), FactsError> {
        shape::check_shape(value)
    }

    /// The JSON's `resourceType`; `None` for precomputed facts.
    pub fn resource_type(&self) -> Option<&str> {
        match self {
            Resource::Json(value) => value.get("resourceType").and_then(Value::as_str),
            Resource::Facts(_) => None,
        }
    }

    /// The JSON's `id`; `None` for precomputed facts.
    pub fn id(&self) -> Option<&str> {
        match self {
            Resource::Json(value) => value.get("id").and_then(Value::as_str),
            Resource::Facts(_) => None,
        }
    }

    /// Ids of the Patient compartments this resource of `resource_type` belongs to.
    ///
    /// Uses exactly the parameters of the version's Patient CompartmentDefinition
    /// (docs/semantics.md §3): a parameter that is absent, has no expression or an
    /// unsupported one makes nobody a member. JSON whose `resourceType` is not
    /// `resource_type` belongs to no compartment.
    pub fn patient_compartments(&self, version: FhirVersion, resource_type: &str) -> Vec<String> {
        self.patient_compartments_at(version, Locality::ANY_BASE, resource_type)
    }

    /// [`Resource::patient_compartments`] on the server of `locality`: an absolute reference
    /// under another base makes nobody a member.
    pub fn patient_compartments_at(
        &self,
        version: FhirVersion,
        locality: Locality<'_>,
        resource_type: &str,
    ) -> Vec<String> {
        let mut ids = PatientIds::default();
        match self {
            Resource::Json(resource) => {
                push_compartment_patients(version, locality, resource_type, resource, &mut ids);
            }
            Resource::Facts(facts) => push_fact_patients(facts, &mut ids),
        }
        ids.into_vec()
    }

    /// A link of the resource's Patient compartment parameters that a server may resolve to
    /// a patient where [`Resource::patient_compartments`] sees none. Facts hold no links.
    pub fn unreadable_patient_link(
        &self,
        version: FhirVersion,
        resource_type: &str,
    ) -> Option<UnreadableLink<'_>> {
        match self {
            Resource::Json(resource) => {
                compartments::unreadable_patient_link(version, resource_type, resource)
            }
            Resource::Facts(_) => None,
        }
    }

    /// Whether the resource is marked trimmed: a `meta.tag` with the code `SUBSETTED`
    /// (R4 search.html#summary, its system `v3-ObservationValue`), which a server sets on a
    /// resource `_summary` or `_elements` left incomplete.
    pub fn is_subsetted(&self) -> bool {
        let Resource::Json(resource) = self else {
            return false;
        };
        resource
            .get("meta")
            .and_then(|meta| meta.get("tag"))
            .and_then(Value::as_array)
            .is_some_and(|tags| {
                tags.iter()
                    .any(|tag| tag.get("code").and_then(Value::as_str) == Some("SUBSETTED"))
            })
    }

    /// A mention of a patient this resource makes without naming one this service can
    /// identify (a contained Patient, an `identifier`-only reference, a `urn:` one), read as
    /// a `resource_type`; none from precomputed facts, which give only what they name.
    pub fn unidentified_patient(
        &self,
        version: FhirVersion,
        resource_type: &str,
    ) -> Option<&'static str> {
        match self {
            Resource::Json(resource) => {
                compartments::unidentified_patient(version, resource_type, resource)
            }
            Resource::Facts(_) => None,
        }
    }

    /// Ids of every Patient this resource is known to be about: its Patient compartments (as
    /// `resource_type` and as its own `resourceType`), every literal Patient reference
    /// anywhere in it (contained resources and the resources of a Bundle included), and the
    /// Patients a Bundle or Parameters carries as resources.
    ///
    /// A superset of [`Resource::patient_compartments`], used to deny patient-scoped access to
    /// a resource outside the compartment that belongs to another patient: a Binary whose
    /// `securityContext` is another patient, a document Bundle about another patient, an R4
    /// Device of another patient (docs/semantics.md, part 2, patient/ scopes). Precomputed
    /// facts give their Patient compartments and the values of the reference parameters of
    /// `resource_type` that can target Patient (`Patient/456`, an absolute URL ending in
    /// `/Patient/456`, or a bare id).
    pub fn referenced_patients(&self, version: FhirVersion, resource_type: &str) -> Vec<String> {
        let mut ids = PatientIds::default();
        let resource = match self {
            Resource::Json(resource) => resource,
            Resource::Facts(facts) => {
                push_fact_patients(facts, &mut ids);
                push_fact_patient_references(version, resource_type, facts, &mut ids);
                return ids.into_vec();
            }
        };
        // Any base, as every mention below: this is the superset that must catch another
        // patient even under a base spelling the configuration does not list.
        push_compartment_patients(
            version,
            Locality::ANY_BASE,
            resource_type,
            resource,
            &mut ids,
        );
        if let Some(actual_type) = resource
            .get("resourceType")
            .and_then(Value::as_str)
            .filter(|actual| *actual != resource_type)
        {
            push_compartment_patients(version, Locality::ANY_BASE, actual_type, resource, &mut ids);
        }
        push_every_patient_reference(resource, &mut ids);
        ids.into_vec()
    }

    /// Whether this resource matches the filter item `param=values[0],values[1],...`.
    ///
    /// FHIR search semantics (R4 search.html §3.1.1.4) for token, string, uri and reference
    /// parameters; every other kind, an unknown parameter, or an expression outside the
    /// supported FHIRPath subset is [`FilterMatch::NotEnforceable`]. Precomputed facts are
    /// compared with the token rules for token parameters and exactly for the others; a
    /// parameter without facts does not match.
    pub fn matches_filter(
        &self,
        version: FhirVersion,
        resource_type: &str,
        param: &str,
        values: &[String],
    ) -> FilterMatch {
        self.matches_filter_at(version, Locality::ANY_BASE, resource_type, param, values)
    }

    /// [`Resource::matches_filter`] on the server of `locality`: a reference parameter
    /// matches only references local to it.
    pub fn matches_filter_at(
        &self,
        version: FhirVersion,
        locality: Locality<'_>,
        resource_type: &str,
        param: &str,
        values: &[String],
    ) -> FilterMatch {
        let Some(definition) = version.search_param(resource_type, param) else {
            return FilterMatch::NotEnforceable(format!(
                "unknown search parameter {param} for {resource_type} in FHIR {version}"
            ));
        };
        let kind = definition.kind;
        if !matches!(
            kind,
            SearchParamKind::Token
                | SearchParamKind::String
                | SearchParamKind::Uri
                | SearchParamKind::Reference
        ) {
            return FilterMatch::NotEnforceable(format!(
                "cannot evaluate {} parameter {param} locally",
                kind_name(kind)
            ));
        }
        let resource = match self {
            Resource::Facts(facts) => return match_facts(facts, kind, param, values),
            Resource::Json(resource) => resource,
        };
        let Some(expression_text) = definition.expression else {
            return FilterMatch::NotEnforceable(format!(
                "search parameter {param} of {resource_type} has no expression"
            ));
        };
        if reads_choice_without_type_filter(version, resource_type, param) {
            // The expression names a choice element `name[x]` without a type filter; the
            // evaluator reads `name[x]` only before one (fhirpath.rs), so it would select
            // nothing here.
            return FilterMatch::NotEnforceable(format!(
                "search parameter {param} of {resource_type} reads a choice element without a type filter"
            ));
        }
        if kind == SearchParamKind::Reference && expression_text == "Resource.id" {
            // R5 `_in`: membership in a List, Group or CareTeam, which the resource's own id
            // cannot show.
            return FilterMatch::NotEnforceable(format!(
                "search parameter {param} tests membership in another resource"
            ));
        }
        let expression = match version.expression(expression_text) {
            Ok(expression) => expression,
            Err(error) => return FilterMatch::NotEnforceable(error.to_string()),
        };
        if resource.get("resourceType").and_then(Value::as_str) != Some(resource_type) {
            return FilterMatch::NoMatch;
        }
        let nodes = match expression.evaluate_checked(resource) {
            Ok(nodes) => nodes,
            Err(ambiguous) => {
                return FilterMatch::NotEnforceable(format!(
                    "search parameter {param} of {resource_type} is ambiguous here: {ambiguous}"
                ));
            }
        };
        let matched = values.iter().any(|value| match kind {
            SearchParamKind::Token => parse_token(value)
                .is_some_and(|filter| nodes.iter().any(|node| token_node_matches(*node, &filter))),
            SearchParamKind::String => {
                !value.is_empty() && nodes.iter().any(|node| string_node_matches(*node, value))
            }
            SearchParamKind::Uri => {
                !value.is_empty() && nodes.iter().any(|node| node.value.as_str() == Some(value))
            }
            SearchParamKind::Reference => {
                !value.is_empty()
                    && nodes
                        .iter()
                        .any(|node| reference_node_matches(*node, value, locality))
            }
            _ => false,
        });
        if matched {
            FilterMatch::Match
        } else {
            FilterMatch::NoMatch
        }
    }
}

#[cfg(test)]
mod tests;
