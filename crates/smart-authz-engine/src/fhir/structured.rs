//! A request given as fields (the structured form of the API) is read exactly as its request
//! line would be: it is written out as that line and parsed back by the one request-line
//! parser, so the two forms share every rule (the FHIR id grammar, type and operation names,
//! limits, dot segments) and cannot decide differently.

use std::fmt::Write as _;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::interaction::{FhirRequest, Interaction};
use super::request_line::{RequestLineError, parse_request_line};

/// Query characters written as they are; the parser decodes the rest.
const QUERY_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b':');

/// Why a structured request is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StructuredError {
    /// Its request line breaks a rule of the request-line parser.
    #[error("{0}")]
    RequestLine(#[from] RequestLineError),
    /// A field the interaction does not use is set, or a field does not read back as given
    /// (a `/` or `?` inside an id, say).
    #[error("{field} is not a {interaction} request's")]
    UnusedField {
        field: &'static str,
        interaction: Interaction,
    },
    /// Batches and transactions are decided from their entries.
    #[error("{0} is not a request of the structured form: send its entries")]
    NotStructured(Interaction),
}

/// Validates `request` through its request line: the request the line reads as, which
/// equals `request` whenever it is accepted.
pub fn validate_structured(request: &FhirRequest) -> Result<FhirRequest, StructuredError> {
    let (method, path) = request_line(request)?;
    let parsed = parse_request_line(method, &path)?;
    let mismatch = [
        ("interaction", parsed.interaction != request.interaction),
        (
            "resource_type",
            parsed.resource_type != request.resource_type,
        ),
        ("id", parsed.id != request.id),
        ("version_id", parsed.version_id != request.version_id),
        ("compartment", parsed.compartment != request.compartment),
        ("operation", parsed.operation != request.operation),
        ("params", parsed.params != request.params),
    ]
    .into_iter()
    .find_map(|(field, differs)| differs.then_some(field));
    match mismatch {
        None => Ok(parsed),
        Some(field) => Err(StructuredError::UnusedField {
            field,
            interaction: request.interaction,
        }),
    }
}

/// The method and path (relative to the base, with its query) of `request`: what it stands
/// for wherever a rule reads request lines (public paths). Only the fields the interaction
/// uses are written.
pub fn request_line(request: &FhirRequest) -> Result<(&'static str, String), StructuredError> {
    let resource_type = request.resource_type.as_deref().unwrap_or_default();
    let id = request.id.as_deref().unwrap_or_default();
    let operation = request.operation.as_deref().unwrap_or_default();
    let instance = format!("{resource_type}/{id}");
    let (method, mut path) = match request.interaction {
        Interaction::Read => ("GET", instance),
        Interaction::Vread => (
            "GET",
            format!(
                "{instance}/_history/{}",
                request.version_id.as_deref().unwrap_or_default()
            ),
        ),
        Interaction::Update | Interaction::Patch | Interaction::Delete => {
            let method = match request.interaction {
                Interaction::Update => "PUT",
                Interaction::Patch => "PATCH",
                _ => "DELETE",
            };
            // Without an id, the conditional form: the query says which resource.
            match request.id {
                Some(_) => (method, instance),
                None => (method, resource_type.to_owned()),
            }
        }
        Interaction::HistoryInstance => ("GET", format!("{instance}/_history")),
        Interaction::HistoryType => ("GET", format!("{resource_type}/_history")),
        Interaction::HistorySystem => ("GET", "_history".to_owned()),
        Interaction::Create => ("POST", resource_type.to_owned()),
        Interaction::SearchType => ("GET", resource_type.to_owned()),
        Interaction::SearchSystem => ("GET", String::new()),
        Interaction::SearchCompartment => {
            let compartment = request
                .compartment
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default();
            ("GET", format!("{compartment}/{resource_type}"))
        }
        Interaction::Capabilities => ("GET", "metadata".to_owned()),
        Interaction::SmartConfiguration => ("GET", ".well-known/smart-configuration".to_owned()),
        Interaction::Operation => {
            let target = match (&request.resource_type, &request.id) {
                (Some(_), Some(_)) => format!("{instance}/"),
                (Some(_), None) => format!("{resource_type}/"),
                _ => String::new(),
            };
            ("GET", format!("{target}${operation}"))
        }
        Interaction::Batch | Interaction::Transaction => {
            return Err(StructuredError::NotStructured(request.interaction));
        }
    };
    for (index, param) in request.params.iter().enumerate() {
        path.push(if index == 0 { '?' } else { '&' });
        let _ = write!(
            path,
            "{}={}",
            utf8_percent_encode(&param.name, QUERY_COMPONENT),
            utf8_percent_encode(&param.value, QUERY_COMPONENT)
        );
    }
    Ok((method, path))
}

#[cfg(test)]
mod tests;
