//! The FHIR REST request-line parser: `METHOD path?query` relative to the FHIR base.

use super::interaction::{FhirRequest, SearchParam};

/// Why a request line is not a FHIR interaction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestLineError {
    #[error("placeholder")]
    Placeholder,
}

/// Parses a request line, e.g. `("GET", "Observation?code=x")`.
pub fn parse_request_line(method: &str, path: &str) -> Result<FhirRequest, RequestLineError> {
    todo!()
}

/// Parses a query string (without `?`) into percent-decoded parameters.
pub fn parse_query(query: &str) -> Result<Vec<SearchParam>, RequestLineError> {
    todo!()
}
