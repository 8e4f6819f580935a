//! The Patient compartments of a resource, and the patients it references: from the official
//! CompartmentDefinition parameters, or from facts the caller computed.

use std::borrow::Cow;
use std::collections::HashSet;

use serde_json::Value;

use super::super::fhirpath::Expression;
use super::super::reference::{Locality, id_of, is_valid_id, parse_reference};
use super::super::version::FhirVersion;
use super::ResourceFacts;
use super::UnreadableLink;

/// Patient ids in first-seen order, without duplicates; linear in the number pushed.
#[derive(Default)]
pub(super) struct PatientIds {
    ordered: Vec<String>,
    seen: HashSet<String>,
}

impl PatientIds {
    pub(super) fn push(&mut self, id: &str) {
        if !self.seen.contains(id) {
            self.seen.insert(id.to_owned());
            self.ordered.push(id.to_owned());
        }
    }

    pub(super) fn into_vec(self) -> Vec<String> {
        self.ordered
    }
}

pub(super) fn push_fact_patients(facts: &ResourceFacts, ids: &mut PatientIds) {
    for compartment in &facts.compartments {
        if compartment.compartment_type == "Patient" {
            ids.push(&compartment.id);
        }
    }
}

/// Pushes the Patients named by the facts' values of reference parameters of `resource_type`
/// that can target Patient: `Patient/456` (relative, versioned or absolute) or a bare id.
pub(super) fn push_fact_patient_references(
    version: FhirVersion,
    resource_type: &str,
    facts: &ResourceFacts,
    ids: &mut PatientIds,
) {
    for entry in &facts.search_values {
        let targets_patient = version
            .search_param(resource_type, &entry.name)
            .is_some_and(|definition| definition.targets_type("Patient"));
        if targets_patient && let Some(id) = id_of("Patient", &entry.value) {
            ids.push(id);
        }
    }
}

/// Pushes the Patient compartments of `resource`, read as a `resource_type`: its references
/// to Patients local to `locality`.
pub(super) fn push_compartment_patients(
    version: FhirVersion,
    locality: Locality<'_>,
    resource_type: &str,
    resource: &Value,
    ids: &mut PatientIds,
) {
    if resource_type == "Patient"
        && resource.get("resourceType").and_then(Value::as_str) == Some(resource_type)
        && let Some(id) = resource.get("id").and_then(Value::as_str)
        && is_valid_patient_id(id)
    {
        ids.push(id);
    }
    for value in compartment_links(version, resource_type, resource) {
        push_patient_reference(value, locality, ids);
    }
}

/// The values the Patient compartment parameters of `resource_type` select in `resource`
/// (the CompartmentDefinition's FHIRPath expressions); none for JSON of another type, for a
/// type never in the compartment, or through an expression outside the supported subset.
fn compartment_links<'r>(
    version: FhirVersion,
    resource_type: &str,
    resource: &'r Value,
) -> Vec<&'r Value> {
    link_expressions(version, resource_type, resource)
        .flat_map(|expression| {
            expression
                .evaluate(resource)
                .into_iter()
                .map(|node| node.value)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The expressions of [`compartment_links`].
fn link_expressions(
    version: FhirVersion,
    resource_type: &str,
    resource: &Value,
) -> impl Iterator<Item = Cow<'static, Expression>> {
    let params = if resource.get("resourceType").and_then(Value::as_str) == Some(resource_type) {
        version.patient_compartment_params(resource_type)
    } else {
        None
    };
    params
        .unwrap_or_default()
        .iter()
        .filter_map(move |param| version.search_param(resource_type, param)?.expression)
        .filter_map(move |expression| version.expression(expression).ok())
}

/// The first Patient compartment link of `resource` that a FHIR server may read as a patient
/// where this service sees none (see [`UnreadableLink`]). Contained references (`#p1`) name
/// nobody; conditional ones (`Patient?identifier=x`) are searches, refused by their own rule.
pub(super) fn unreadable_patient_link<'r>(
    version: FhirVersion,
    resource_type: &str,
    resource: &'r Value,
) -> Option<UnreadableLink<'r>> {
    for expression in link_expressions(version, resource_type, resource) {
        // Past `where(resolve() is Patient)` too, which drops the very references this
        // looks for (`Condition.subject.where(resolve() is Patient)` holding `patient/456`).
        let nodes = match expression.evaluate_unresolved(resource) {
            Ok(nodes) => nodes,
            Err(ambiguous) => return Some(UnreadableLink::Ambiguous(ambiguous)),
        };
        let unreadable = nodes.iter().find_map(|node| {
            let reference = node.value.get("reference")?.as_str()?;
            names_patient_unreadably(reference).then_some(reference)
        });
        if let Some(reference) = unreadable {
            return Some(UnreadableLink::Reference(reference));
        }
    }
    None
}

/// The first mention in `resource` of a patient this service cannot identify, described:
/// a contained Patient (a copy of some patient's record, `#p1` naming no patient of the
/// server), a reference typed `Patient` without a literal `reference` (by `identifier` or
/// `display` alone), or, in a reference parameter of `resource_type` that can target Patient, a reference with
/// no literal target or a `urn:` one. On a resource outside the compartment each may be
/// another patient's, and [`super::Resource::referenced_patients`] cannot tell.
pub(super) fn unidentified_patient(
    version: FhirVersion,
    resource_type: &str,
    resource: &Value,
) -> Option<&'static str> {
    let mut pending = vec![resource];
    while let Some(value) = pending.pop() {
        match value {
            Value::Object(object) => {
                let is_patient = |value: &Value| value.as_str() == Some("Patient");
                if object
                    .get("contained")
                    .and_then(Value::as_array)
                    .is_some_and(|contained| {
                        contained
                            .iter()
                            .any(|resource| resource.get("resourceType").is_some_and(is_patient))
                    })
                {
                    return Some("a contained Patient");
                }
                if is_identifier_reference(object) && object.get("type").is_some_and(is_patient) {
                    return Some("a Patient reference without a literal reference");
                }
                pending.extend(object.values());
            }
            Value::Array(items) => pending.extend(items),
            _ => {}
        }
    }
    let typed = resource.get("resourceType").and_then(Value::as_str) == Some(resource_type);
    let links = version
        .tables()
        .own_search_params(resource_type)
        .iter()
        .filter(|param| typed && param.targets_type("Patient"))
        .filter_map(|param| version.expression(param.expression?).ok());
    for expression in links {
        // Past `where(resolve() is Patient)`, which drops a reference it cannot read.
        let Ok(nodes) = expression.evaluate_unresolved(resource) else {
            return Some("a reference element given twice");
        };
        for node in nodes {
            let Value::Object(link) = node.value else {
                continue;
            };
            let reference = link.get("reference").and_then(Value::as_str);
            let typed_other = link
                .get("type")
                .and_then(Value::as_str)
                .is_some_and(|named| named != "Patient");
            match reference {
                None if !typed_other => return Some("a reference without a literal target"),
                Some(reference) if reference.starts_with("urn:") => {
                    return Some("a urn: reference");
                }
                // `patient/456`, `/Patient/456`, `Patient/456/`: a server may read it as
                // Patient/456 where this service reads no patient at all.
                Some(reference) if names_patient_unreadably(reference) => {
                    return Some("a patient reference this service cannot read");
                }
                _ => {}
            }
        }
    }
    None
}

/// A reference that mentions a patient but is no reference this service reads: not
/// contained (`#p1`), not a search (`Patient?identifier=x`, refused by its own rule).
fn names_patient_unreadably(reference: &str) -> bool {
    !reference.starts_with('#')
        && !reference.contains('?')
        && parse_reference(reference).is_none()
        && reference.to_ascii_lowercase().contains("patient")
}

/// Whether `object` is a Reference (FHIR R4 references.html) naming its target without a
/// literal `reference`, by an `identifier` or a `display`: only Reference's own members
/// (their primitive extensions, `_display`, included). A profile's or a requirement's
/// `type: "Patient"` (StructureDefinition, CapabilityStatement, a Library's
/// `dataRequirement`) is no such reference.
fn is_identifier_reference(object: &serde_json::Map<String, Value>) -> bool {
    let names_someone = ["identifier", "display", "_display"]
        .iter()
        .any(|name| object.contains_key(*name));
    names_someone
        && !object.contains_key("reference")
        && object.keys().all(|name| {
            matches!(
                name.trim_start_matches('_'),
                "type" | "identifier" | "display" | "id" | "extension"
            )
        })
}

/// A Patient's own id is a member only when it could be referenced as `Patient/<id>`.
fn is_valid_patient_id(id: &str) -> bool {
    is_valid_id(id)
}

fn push_patient_reference(value: &Value, locality: Locality<'_>, ids: &mut PatientIds) {
    let target = value
        .get("reference")
        .and_then(Value::as_str)
        .and_then(|reference| locality.resolve(reference));
    if let Some(("Patient", id)) = target {
        ids.push(id);
    }
}

/// Pushes every literal Patient reference anywhere in `resource`, contained resources and
/// the resources of a Bundle included, and the id of every Patient a Bundle entry or a
/// Parameters parameter carries as its `resource` (a contained Patient's id is local to its
/// container, `#p1`, and names no patient of the server).
pub(super) fn push_every_patient_reference(resource: &Value, ids: &mut PatientIds) {
    let mut pending = vec![resource];
    while let Some(value) = pending.pop() {
        match value {
            Value::Object(object) => {
                // Any base: a mention of another server's Patient may still be one of this
                // server's, under a base spelling it does not list (fail closed).
                push_patient_reference(value, Locality::ANY_BASE, ids);
                if let Some(carried) = object.get("resource")
                    && carried.get("resourceType").and_then(Value::as_str) == Some("Patient")
                    && let Some(id) = carried.get("id").and_then(Value::as_str)
                    && is_valid_patient_id(id)
                {
                    ids.push(id);
                }
                pending.extend(object.values().rev());
            }
            Value::Array(items) => pending.extend(items.iter().rev()),
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------------------
// Filters
