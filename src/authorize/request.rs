//! HTTP request lines read the same way on every face: the method and path a FHIR server
//! sees, with the headers that could make it run something else.

use crate::fhir::request_line::parse_query;
use crate::fhir::{FhirRequest, parse_request_line};

use super::Refusal;

/// Headers some frameworks read as the real method of a `POST`.
pub const METHOD_OVERRIDE_HEADERS: [&str; 3] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// An HTTP request as the FHIR server receives it, relative to its FHIR base.
#[derive(Clone, Copy, Debug)]
pub struct HttpLine<'a> {
    /// `GET`, `POST`, ...
    pub method: &'a str,
    /// The path relative to the FHIR base, with its query string.
    pub path: &'a str,
}

impl<'a> HttpLine<'a> {
    /// Reads the line into a FHIR request. `header` looks a request header up by its
    /// lower-case name.
    ///
    /// A method override header that names another method is refused: some servers execute
    /// the overriding method rather than the request's own, so deciding on either could
    /// allow what the server then does not run.
    pub fn read<'h>(
        &self,
        header: impl Fn(&str) -> Option<&'h str>,
    ) -> Result<FhirRequest, Refusal> {
        // Every override header counts: servers differ in which one they honour.
        if let Some(other) = METHOD_OVERRIDE_HEADERS
            .iter()
            .filter_map(|name| header(name))
            .find(|method| !method.eq_ignore_ascii_case(self.method))
        {
            return Err(Refusal::InvalidRequest(format!(
                "method override to {other:?} is not accepted: send the method itself"
            )));
        }
        parse_request_line(self.method, self.path)
            .map_err(|error| Refusal::InvalidRequest(format!("invalid FHIR request: {error}")))
    }

    /// Whether the line is a `GET` (or `HEAD`) of one of `public_paths`: only a read can be
    /// public (`POST Questionnaire` never is), and only of what the path names: a query that
    /// brings in other resources (`_include`, `_revinclude`, `_has`, `_contained`, a chain)
    /// or cannot be read is never public.
    pub fn is_public_path(&self, public_paths: &[String]) -> bool {
        if !(self.method.eq_ignore_ascii_case("GET") || self.method.eq_ignore_ascii_case("HEAD")) {
            return false;
        }
        let (path, query) = self.path.split_once('?').unwrap_or((self.path, ""));
        let path = path.trim_matches('/');
        if path.is_empty()
            || !public_paths
                .iter()
                .any(|public| public.trim_matches('/') == path)
        {
            return false;
        }
        let Ok(params) = parse_query(query) else {
            return false;
        };
        !params
            .iter()
            .any(|param| reaches_other_resources(&param.name))
    }
}

/// Search parameters that return or filter by resources other than those the path names
/// (FHIR R4 search.html §3.1.1.5.5 chaining, §3.1.1.5.6 `_has`, §3.2.1.5.5 includes).
fn reaches_other_resources(name: &str) -> bool {
    ["_include", "_revinclude", "_has", "_contained"]
        .iter()
        .any(|prefix| name.starts_with(prefix))
        || name.contains('.')
}
