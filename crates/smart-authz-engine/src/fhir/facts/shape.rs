//! The members every rule reads as strings, checked to be strings before any rule runs.
//!
//! The engine reads a reference, an id and a type with `as_str`, so a value of another JSON
//! type is, to it, no value at all. A FHIR server's parser may read it anyway: HAPI reads an
//! array item by item whatever the element's cardinality, so
//! `"subject": {"reference": ["Patient/456"]}` is, to HAPI, a subject the compartment check
//! never saw. Such a resource is refused rather than decided without the member.

use serde_json::{Map, Value};

use super::FactsError;

/// Refuses a resource in which `reference` is neither a string (`Reference.reference`) nor an
/// object (R5 `CodeableReference.reference`, R4 `ImplementationGuide...reference`), or in
/// which `id` or `resourceType` is not a string, at any depth: contained resources, Bundle
/// entries and extensions included.
pub(super) fn check_shape(resource: &Value) -> Result<(), FactsError> {
    // An explicit stack, not recursion: nesting is bounded by the JSON reader, but a deep
    // document should not cost stack here either.
    let mut pending: Vec<&Value> = vec![resource];
    while let Some(value) = pending.pop() {
        match value {
            Value::Object(object) => {
                check_members(object)?;
                pending.extend(object.values());
            }
            Value::Array(items) => pending.extend(items),
            _ => {}
        }
    }
    Ok(())
}

fn check_members(object: &Map<String, Value>) -> Result<(), FactsError> {
    for (name, value) in object {
        let readable = match name.as_str() {
            "reference" => matches!(value, Value::String(_) | Value::Object(_)),
            "id" | "resourceType" => value.is_string(),
            _ => true,
        };
        if !readable {
            return Err(FactsError::UnreadableMember {
                name: name.clone(),
                kind: kind_of(value),
            });
        }
    }
    Ok(())
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
