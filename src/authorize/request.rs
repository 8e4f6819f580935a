//! HTTP request lines read the same way on every face: the method and path a FHIR server
//! sees, with the headers that could make it run something else.

use std::borrow::Cow;
use std::collections::HashMap;

use crate::fhir::request_line::{
    MAX_QUERY_PARAMS, MAX_REQUEST_LINE_BYTES, parse_query, refuse_method_override,
    refuse_unjudged_parameters,
};
use crate::fhir::{FhirRequest, parse_request_line};

use super::Refusal;

/// Headers some frameworks read as the real method of a `POST`.
pub const METHOD_OVERRIDE_HEADERS: [&str; 3] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// The header of a conditional create's search (FHIR R4 http.html, "Conditional create"),
/// decided as the search it is on every face.
pub const IF_NONE_EXIST_HEADER: &str = "if-none-exist";

/// The header that asks HAPI FHIR for a cascading delete (`_cascade` is its parameter twin).
pub const CASCADE_HEADER: &str = "x-cascade";

/// Whether a server may read the header named `given` as `name` (lower case, `-`
/// separated): without case, and with `_` as `-`, as CGI, WSGI, Rack and PHP servers read it
/// (`X_HTTP_Method_Override` is their `HTTP_X_HTTP_METHOD_OVERRIDE`).
pub fn reads_as(given: &str, name: &str) -> bool {
    given.len() == name.len()
        && given.bytes().zip(name.bytes()).all(|(given, name)| {
            given.to_ascii_lowercase() == name || (given == b'_' && name == b'-')
        })
}

/// A request's headers by lower-case name, as every face reads them: header names have no
/// case (RFC 9110 §5.1), so a name given twice in two cases is refused rather than one of
/// them picked, which the FHIR server might not pick. Borrowed as given when every name is
/// already lower case, as Envoy sends them.
pub fn headers_by_name(
    headers: &HashMap<String, String>,
) -> Result<Cow<'_, HashMap<String, String>>, Refusal> {
    if !headers
        .keys()
        .any(|name| name.bytes().any(|byte| byte.is_ascii_uppercase()))
    {
        return Ok(Cow::Borrowed(headers));
    }
    let mut folded = HashMap::with_capacity(headers.len());
    for (name, value) in headers {
        if folded
            .insert(name.to_ascii_lowercase(), value.clone())
            .is_some()
        {
            return Err(Refusal::InvalidRequest(format!(
                "header {name:?} is given twice"
            )));
        }
    }
    Ok(Cow::Owned(folded))
}

/// An HTTP request as the FHIR server receives it, relative to its FHIR base.
#[derive(Clone, Copy)]
pub struct HttpLine<'a> {
    /// `GET`, `POST`, ...
    pub method: &'a str,
    /// The path relative to the FHIR base, with its query string.
    pub path: &'a str,
}

/// Without the query, which may carry a token (`access_token=`, RFC 6750 §2.3) or a
/// patient's details: its length only.
impl std::fmt::Debug for HttpLine<'_> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (path, query) = self.path.split_once('?').unwrap_or((self.path, ""));
        formatter
            .debug_struct("HttpLine")
            .field("method", &self.method)
            .field("path", &path)
            .field("query_bytes", &query.len())
            .finish()
    }
}

impl<'a> HttpLine<'a> {
    /// Reads the line into a FHIR request, with every request header (`headers`: name and
    /// value, as given).
    ///
    /// A method override header that names another method is refused: some servers execute
    /// the overriding method rather than the request's own, so deciding on either could
    /// allow what the server then does not run. Every header a server may read as one of
    /// these counts ([`reads_as`]: `X_HTTP_Method_Override` too), each of them: servers
    /// differ in which one they honour.
    pub fn read<'h>(
        &self,
        headers: impl IntoIterator<Item = (&'h str, &'h str)>,
    ) -> Result<FhirRequest, Refusal> {
        for (name, value) in headers {
            if METHOD_OVERRIDE_HEADERS
                .iter()
                .any(|method| reads_as(name, method))
                && !value.eq_ignore_ascii_case(self.method)
            {
                return Err(Refusal::InvalidRequest(format!(
                    "method override to {value:?} is not accepted: send the method itself"
                )));
            }
            // HAPI's cascading deletes (`X-Cascade: delete`) remove every resource that
            // references the one deleted, another patient's among them, unseen by the
            // decision.
            if reads_as(name, CASCADE_HEADER) {
                return Err(Refusal::InvalidRequest(
                    "x-cascade is not accepted: a cascading delete removes resources this service did not decide on".to_owned(),
                ));
            }
            // The faces read `If-None-Exist` by its name: a spelling only some servers read
            // as it would hide a conditional create's search.
            if reads_as(name, IF_NONE_EXIST_HEADER)
                && !name.eq_ignore_ascii_case(IF_NONE_EXIST_HEADER)
            {
                return Err(Refusal::InvalidRequest(format!(
                    "header {name} is not accepted: send If-None-Exist"
                )));
            }
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

/// Adds the form-encoded parameters of a `POST [type]/_search` body (FHIR R4 http.html
/// §3.1.0.7.1) to `request`. A search whose body did not come (`body` empty) keeps them
/// unread, and [`super::Admitted::decide`] refuses it: the server runs the body's
/// parameters too, and `patient=456` there would otherwise pass unseen. Only
/// `content-length: 0` (looked up by `header`) says there is none. Other requests are left
/// as they are. One rule for every face.
///
/// The body is read as a form parser reads it (a `+` is a space, WHATWG URL §5.1); what it
/// could read otherwise is refused: another content type, whitespace other than a final
/// line break.
pub fn add_search_body<'h>(
    request: &mut FhirRequest,
    body: &[u8],
    header: impl Fn(&str) -> Option<&'h str>,
) -> Result<(), Refusal> {
    if !request.has_unread_search_body() {
        return Ok(());
    }
    if body.is_empty() {
        if header("content-length").is_some_and(|length| length.trim() == "0") {
            request.params_in_body = false;
        }
        return Ok(());
    }
    let refused = |why: &str| Refusal::InvalidRequest(format!("the search body: {why}"));
    if let Some(content_type) = header("content-type") {
        let media_type = content_type.split(';').next().unwrap_or_default().trim();
        if !media_type.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
            return Err(refused("not application/x-www-form-urlencoded"));
        }
    }
    let form = std::str::from_utf8(body).map_err(|_| refused("not UTF-8"))?;
    let form = form
        .strip_suffix("\r\n")
        .or_else(|| form.strip_suffix('\n'))
        .unwrap_or(form);
    // The limit of a request line, measured here (that of `parse_query` would speak of a
    // request line) and before the copy below, as the `%20` each `+` becomes.
    let pluses = form.bytes().filter(|byte| *byte == b'+').count();
    let length = form.len() + 2 * pluses;
    if length > MAX_REQUEST_LINE_BYTES {
        let counted = if pluses == 0 {
            ""
        } else {
            ", each `+` counted as the `%20` it reads as"
        };
        return Err(refused(&format!(
            "{length} bytes{counted}, at most {MAX_REQUEST_LINE_BYTES} allowed"
        )));
    }
    // In a form a `+` is a space (what the server's form parser reads); in a FHIR query,
    // which `parse_query` reads, it is a plus.
    let form = form.replace('+', "%20");
    let params = parse_query(&form)
        .and_then(|params| refuse_method_override("POST", &params).map(|()| params))
        .and_then(|params| refuse_unjudged_parameters(&params).map(|()| params))
        .map_err(|error| refused(&error.to_string()))?;
    if request.params.len() + params.len() > MAX_QUERY_PARAMS {
        return Err(refused(&format!(
            "more than {MAX_QUERY_PARAMS} parameters in the query and the body"
        )));
    }
    request.params.extend(params);
    request.params_in_body = false;
    Ok(())
}

/// [`add_search_body`] on the faces where a body is given only for a `POST` search: one
/// beside any other request is refused, since left unread it would be ignored.
pub fn add_search_body_only<'h>(
    request: &mut FhirRequest,
    body: &[u8],
    header: impl Fn(&str) -> Option<&'h str>,
) -> Result<(), Refusal> {
    if !body.is_empty() && !request.has_unread_search_body() {
        return Err(Refusal::InvalidRequest(
            "a body is read only for a POST search (its form-encoded parameters)".to_owned(),
        ));
    }
    add_search_body(request, body, header)
}

/// The refusal of a search decided without the parameters of its body
/// ([`add_search_body`]).
pub(super) fn unread_search_body(request: &FhirRequest) -> Option<Refusal> {
    request.has_unread_search_body().then(|| {
        Refusal::BodyRequired(
            "a POST search is decided on the parameters of its form body, which did not come with the request (Envoy: with_request_body; gRPC: http.body; AuthZEN: resource.properties.body)"
                .to_owned(),
        )
    })
}

/// Search parameters that return or filter by resources other than those the path names
/// (FHIR R4 search.html §3.1.1.5.5 chaining, §3.1.1.5.6 `_has`, §3.2.1.5.5 includes).
fn reaches_other_resources(name: &str) -> bool {
    ["_include", "_revinclude", "_has", "_contained"]
        .iter()
        .any(|prefix| name.starts_with(prefix))
        || name.contains('.')
}
