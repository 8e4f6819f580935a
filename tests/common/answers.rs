//! FHIR servers' answers to filter: searchsets with matches and includes of several
//! patients, and the references left in a filtered one.

use serde_json::{Value, json};

/// Observation `id` about `Patient/<patient>`.
pub fn observation_of(id: &str, patient: &str) -> Value {
    let mut observation = super::observation(patient);
    observation["id"] = json!(id);
    observation
}

/// Binary `b1` (a PDF) whose `securityContext` is `Patient/<patient>`: a resource outside the
/// Patient compartment that names its patient only there.
pub fn binary_of(patient: &str) -> Value {
    json!({
        "resourceType": "Binary", "id": "b1", "contentType": "application/pdf", "data": "JVBERi0=",
        "securityContext": { "reference": format!("Patient/{patient}") }
    })
}

/// A searchset of `(resource, search mode)` entries, with `total` and a `self` link.
pub fn searchset(entries: &[(Value, &str)]) -> Value {
    json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "total": entries.len(),
        "link": [{ "relation": "self", "url": "https://fhir.test/r4/Observation" }],
        "entry": entries.iter().map(|(resource, mode)| json!({
            "fullUrl": format!(
                "https://fhir.test/r4/{}/{}",
                resource["resourceType"].as_str().unwrap_or_default(),
                resource["id"].as_str().unwrap_or_default()
            ),
            "resource": resource,
            "search": { "mode": mode },
        })).collect::<Vec<_>>(),
    })
}

/// Observations o1 (Patient/123) and o2 (Patient/456), with Patient/123 and Patient/456
/// included.
pub fn mixed_search() -> Value {
    searchset(&[
        (observation_of("o1", "123"), "match"),
        (observation_of("o2", "456"), "match"),
        (json!({ "resourceType": "Patient", "id": "123" }), "include"),
        (json!({ "resourceType": "Patient", "id": "456" }), "include"),
    ])
}

/// `Type/id` of every entry's resource in a Bundle, in order (`OperationOutcome/-` for the
/// withheld-entries outcome, which has no id).
pub fn references(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .map(|entry| {
                    let resource = &entry["resource"];
                    format!(
                        "{}/{}",
                        resource["resourceType"].as_str().unwrap_or("?"),
                        resource["id"].as_str().unwrap_or("-")
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Every `Patient/<id>` named anywhere in `value`: as a reference, or as a Patient's id.
pub fn patients_named(value: &Value) -> Vec<String> {
    let mut found = Vec::new();
    collect_patients(value, &mut found);
    found.sort();
    found.dedup();
    found
}

fn collect_patients(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(object) => {
            if object.get("resourceType").and_then(Value::as_str) == Some("Patient")
                && let Some(id) = object.get("id").and_then(Value::as_str)
            {
                found.push(format!("Patient/{id}"));
            }
            for member in object.values() {
                collect_patients(member, found);
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_patients(item, found)),
        Value::String(text) => {
            if let Some(at) = text.find("Patient/") {
                let id: String = text[at + 8..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.')
                    .collect();
                if !id.is_empty() {
                    found.push(format!("Patient/{id}"));
                }
            }
        }
        _ => {}
    }
}
