//! Whether a resource matches a granular scope's filter (SMART App Launch 2.2 §3.5): token,
//! string and reference search semantics (FHIR R4 search.html) on the values the parameter's
//! expression selects.

use serde_json::{Map, Value};

use super::super::fhirpath::{CONTACT_POINT_SYSTEMS, Node};
use super::super::reference::{Locality, parse_reference};
use super::super::tables::SearchParamKind;
use super::super::version::FhirVersion;
use super::{FilterMatch, ResourceFacts};

/// The lower-case name FHIR gives a parameter kind, for messages.
pub(super) fn kind_name(kind: SearchParamKind) -> &'static str {
    match kind {
        SearchParamKind::Number => "number",
        SearchParamKind::Date => "date",
        SearchParamKind::String => "string",
        SearchParamKind::Token => "token",
        SearchParamKind::Reference => "reference",
        SearchParamKind::Composite => "composite",
        SearchParamKind::Quantity => "quantity",
        SearchParamKind::Uri => "uri",
        SearchParamKind::Special => "special",
    }
}

/// The official token/string/reference/uri expressions that name a choice element without a
/// type filter (checked against the FHIR R4 and R5 element definitions; R4B as R4 plus its
/// own resources): `MessageHeader.event` is `event[x]` (Coding or uri), and so on. R5 writes
/// each with `ofType()`.
pub(super) const CHOICE_WITHOUT_TYPE_FILTER: &[(FhirVersion, &str, &str)] = &[
    (FhirVersion::R4, "Consent", "source-reference"),
    (FhirVersion::R4, "MessageDefinition", "event"),
    (FhirVersion::R4, "MessageHeader", "event"),
    (FhirVersion::R4, "PlanDefinition", "definition"),
    (FhirVersion::R4B, "Consent", "source-reference"),
    (
        FhirVersion::R4B,
        "MedicinalProductDefinition",
        "characteristic",
    ),
    (FhirVersion::R4B, "MessageDefinition", "event"),
    (FhirVersion::R4B, "MessageHeader", "event"),
    (FhirVersion::R4B, "PlanDefinition", "definition"),
];

pub(super) fn reads_choice_without_type_filter(
    version: FhirVersion,
    resource_type: &str,
    param: &str,
) -> bool {
    CHOICE_WITHOUT_TYPE_FILTER.contains(&(version, resource_type, param))
}

// ---------------------------------------------------------------------------------------
// Compartments

pub(super) fn match_facts(
    facts: &ResourceFacts,
    kind: SearchParamKind,
    param: &str,
    values: &[String],
) -> FilterMatch {
    let matched = facts
        .search_values
        .iter()
        .filter(|entry| entry.name == param)
        .any(|entry| {
            values.iter().any(|value| {
                if kind != SearchParamKind::Token {
                    return !value.is_empty() && entry.value == *value;
                }
                let (Some(filter), Some(fact)) = (parse_token(value), parse_token(&entry.value))
                else {
                    return false;
                };
                let fact_system = match &fact.system {
                    SystemFilter::Exact(system) => Some(system.as_str()),
                    SystemFilter::Any | SystemFilter::Absent => None,
                };
                filter.matches(fact_system, fact.code.as_deref())
            })
        });
    if matched {
        FilterMatch::Match
    } else {
        FilterMatch::NoMatch
    }
}

/// The system part of a token filter.
#[derive(Debug, PartialEq)]
pub(super) enum SystemFilter {
    /// `code`: any system, or none.
    Any,
    /// `|code`: no system.
    Absent,
    /// `system|code` or `system|`.
    Exact(String),
}

/// A token filter value (FHIR R4 search.html §3.1.1.4.9).
#[derive(Debug, PartialEq)]
pub(super) struct TokenFilter {
    pub(super) system: SystemFilter,
    /// `None` for `system|`: any code of the system.
    pub(super) code: Option<String>,
}

impl TokenFilter {
    fn matches(&self, system: Option<&str>, code: Option<&str>) -> bool {
        let Some(code) = code else {
            return false;
        };
        let code_ok = self.code.as_deref().is_none_or(|wanted| wanted == code);
        let system_ok = match &self.system {
            SystemFilter::Any => true,
            SystemFilter::Absent => system.is_none(),
            SystemFilter::Exact(wanted) => system == Some(wanted.as_str()),
        };
        code_ok && system_ok
    }
}

/// Parses `code`, `|code`, `system|` or `system|code`, splitting at the first `|` not
/// escaped as `\|`; `None` for a value that selects nothing (empty, `|`).
pub(super) fn parse_token(value: &str) -> Option<TokenFilter> {
    let mut first = String::new();
    let mut second: Option<String> = None;
    let mut characters = value.chars();
    while let Some(character) = characters.next() {
        if character == '|' && second.is_none() {
            second = Some(String::new());
            continue;
        }
        let part = second.as_mut().unwrap_or(&mut first);
        match character {
            '\\' => match characters.next() {
                Some(escaped @ ('|' | ',' | '$' | '\\')) => part.push(escaped),
                Some(other) => {
                    part.push('\\');
                    part.push(other);
                }
                None => part.push('\\'),
            },
            _ => part.push(character),
        }
    }
    let non_empty = |text: String| (!text.is_empty()).then_some(text);
    match second {
        None => non_empty(first).map(|code| TokenFilter {
            system: SystemFilter::Any,
            code: Some(code),
        }),
        Some(code) => match (non_empty(first), non_empty(code)) {
            (None, None) => None,
            (None, Some(code)) => Some(TokenFilter {
                system: SystemFilter::Absent,
                code: Some(code),
            }),
            (Some(system), code) => Some(TokenFilter {
                system: SystemFilter::Exact(system),
                code,
            }),
        },
    }
}

/// What a token parameter reads from an object node.
enum TokenShape {
    CodeableConcept,
    Coding,
    Identifier,
    ContactPoint,
}

fn token_shape(node: Node<'_>, object: &Map<String, Value>) -> Option<TokenShape> {
    if let Some(type_name) = node.type_name {
        return match type_name {
            "CodeableConcept" => Some(TokenShape::CodeableConcept),
            "Coding" => Some(TokenShape::Coding),
            "Identifier" => Some(TokenShape::Identifier),
            "ContactPoint" => Some(TokenShape::ContactPoint),
            _ => None,
        };
    }
    if object.contains_key("coding") {
        return Some(TokenShape::CodeableConcept);
    }
    if object.contains_key("value") {
        if !object.get("value").is_some_and(Value::is_string) || object.contains_key("code") {
            return None;
        }
        let contact_point = object
            .get("system")
            .and_then(Value::as_str)
            .is_some_and(|system| CONTACT_POINT_SYSTEMS.contains(&system));
        return Some(if contact_point {
            TokenShape::ContactPoint
        } else {
            TokenShape::Identifier
        });
    }
    (object.contains_key("code") || object.contains_key("system")).then_some(TokenShape::Coding)
}

fn coding_matches(coding: &Value, filter: &TokenFilter) -> bool {
    system_and(coding, "code", filter)
}

/// Matches `filter` on the `system` and `code_key` members of `object`. A `system` given but
/// not as a string matches nothing: read as absent it would pass `|code`, where a server
/// that reads it anyway (HAPI reads an array's item) sees a system.
fn system_and(object: &Value, code_key: &str, filter: &TokenFilter) -> bool {
    let system = match object.get("system") {
        None => None,
        Some(Value::String(system)) => Some(system.as_str()),
        Some(_) => return false,
    };
    filter.matches(system, object.get(code_key).and_then(Value::as_str))
}

/// Token matching on one node: Coding, CodeableConcept (any coding), Identifier, ContactPoint
/// (value only), code/string/uri and boolean.
pub(super) fn token_node_matches(node: Node<'_>, filter: &TokenFilter) -> bool {
    match node.value {
        Value::String(text) => filter.matches(None, Some(text)),
        Value::Bool(flag) => filter.matches(None, Some(if *flag { "true" } else { "false" })),
        Value::Object(object) => match token_shape(node, object) {
            Some(TokenShape::CodeableConcept) => match object.get("coding") {
                Some(Value::Array(codings)) => {
                    codings.iter().any(|coding| coding_matches(coding, filter))
                }
                Some(coding @ Value::Object(_)) => coding_matches(coding, filter),
                _ => false,
            },
            Some(TokenShape::Coding) => coding_matches(node.value, filter),
            Some(TokenShape::Identifier) => system_and(node.value, "value", filter),
            // A ContactPoint's token is its value alone (FHIR R4 search.html, token). Its shape
            // is guessed (an Identifier whose system is `url` or `phone` has it too), so a
            // filter that also tests the system (`|123`, `s|123`) matches nothing here.
            Some(TokenShape::ContactPoint) => {
                matches!(filter.system, SystemFilter::Any)
                    && filter.matches(None, object.get("value").and_then(Value::as_str))
            }
            None => false,
        },
        _ => false,
    }
}

/// String leaves a string parameter searches in a HumanName or an Address.
const NAME_AND_ADDRESS_PARTS: &[&str] = &[
    "text",
    "family",
    "given",
    "prefix",
    "suffix",
    "line",
    "city",
    "district",
    "state",
    "postalCode",
    "country",
];

/// Keys of a HumanName or Address that carry no searchable text.
const NAME_AND_ADDRESS_OTHER_KEYS: &[&str] = &["id", "extension", "use", "type", "period"];

/// String matching (search.html §3.1.1.4.13): case-insensitive "starts with" on a string, or
/// on any part of a HumanName or Address. Other objects never match.
pub(super) fn string_node_matches(node: Node<'_>, prefix: &str) -> bool {
    match node.value {
        Value::String(text) => starts_with_ignoring_case(text, prefix),
        Value::Object(object) => {
            let name_or_address = match node.type_name {
                Some(type_name) => matches!(type_name, "HumanName" | "Address"),
                None => object.keys().all(|key| {
                    let key = key.strip_prefix('_').unwrap_or(key);
                    NAME_AND_ADDRESS_PARTS.contains(&key)
                        || NAME_AND_ADDRESS_OTHER_KEYS.contains(&key)
                }),
            };
            name_or_address
                && NAME_AND_ADDRESS_PARTS
                    .iter()
                    .any(|part| match object.get(*part) {
                        Some(Value::String(text)) => starts_with_ignoring_case(text, prefix),
                        Some(Value::Array(items)) => items
                            .iter()
                            .filter_map(Value::as_str)
                            .any(|text| starts_with_ignoring_case(text, prefix)),
                        _ => false,
                    })
        }
        _ => false,
    }
}

fn starts_with_ignoring_case(text: &str, prefix: &str) -> bool {
    let mut text = text.chars().flat_map(char::to_lowercase);
    prefix
        .chars()
        .flat_map(char::to_lowercase)
        .all(|wanted| text.next() == Some(wanted))
}

/// Reference matching (search.html §3.1.1.4.10): `Type/id` against the type and id of a
/// literal reference (relative, versioned or absolute), a bare `id` against its id, an
/// absolute URL or versioned filter exactly; canonicals by URL, with or without `|version`.
pub(super) fn reference_node_matches(node: Node<'_>, filter: &str, locality: Locality<'_>) -> bool {
    if let Value::String(canonical) = node.value {
        // canonical/uri elements of a reference parameter; a bare id is never a canonical.
        return canonical.contains(':')
            && (canonical == filter || canonical.split('|').next() == Some(filter));
    }
    let Some(reference) = node.value.get("reference").and_then(Value::as_str) else {
        return false;
    };
    if filter.contains(':') {
        return reference == filter;
    }
    if filter.contains("/_history/") {
        if locality.knows_bases() && reference.contains("://") {
            return locality.local_path(reference) == Some(filter);
        }
        return reference == filter
            || (reference.contains("://") && reference.ends_with(&format!("/{filter}")));
    }
    let Some((resource_type, id)) = locality.resolve(reference) else {
        return false;
    };
    if !filter.contains('/') {
        return id == filter;
    }
    match parse_reference(filter) {
        Some(wanted) if filter.len() == wanted.0.len() + 1 + wanted.1.len() => {
            wanted == (resource_type, id)
        }
        _ => false,
    }
}
