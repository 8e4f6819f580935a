//! The FHIR REST request-line parser: `METHOD path?query` relative to the FHIR base.
//!
//! Maps the URL shapes of the FHIR R4 RESTful API (<https://hl7.org/fhir/R4/http.html>) onto
//! a [`FhirRequest`]. The parser is strict on purpose: an authorization decision is only as
//! sound as the parse it rests on, so anything that is not exactly one of the documented shapes
//! is an error rather than a best guess the FHIR server might read differently. It never
//! panics, and its work is bounded by [`MAX_REQUEST_LINE_BYTES`] and [`MAX_QUERY_PARAMS`].

use percent_encoding::percent_decode_str;

use super::interaction::{CompartmentRef, FhirRequest, Interaction, SearchParam};

/// Longest accepted `path` argument (path and query together), in bytes, so that hostile
/// input cannot make a decision arbitrarily expensive.
pub const MAX_REQUEST_LINE_BYTES: usize = 16_384;

/// Most query parameters accepted, for the same reason as [`MAX_REQUEST_LINE_BYTES`].
pub const MAX_QUERY_PARAMS: usize = 256;

/// FHIR gives no limit for type names; 64 is far above the longest defined type.
const MAX_RESOURCE_TYPE_CHARS: usize = 64;

/// FHIR R4 datatypes.html#id: `[A-Za-z0-9\-\.]{1,64}`.
const MAX_ID_CHARS: usize = 64;

/// Errors echo offending input; this keeps them (and the logs they end up in) small.
const MAX_ERROR_EXCERPT_CHARS: usize = 128;

/// The most segments any shape has: `Type/id/_history/vid` or `Type/id/Type2/_search`.
const MAX_READ_SEGMENTS: usize = 4;

/// The most segments a write has: `Type/id`.
const MAX_WRITE_SEGMENTS: usize = 2;

/// Why a request line is not a FHIR interaction.
///
/// Messages quote user input with `{:?}` so control characters cannot forge log lines.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestLineError {
    /// Only the methods of the FHIR RESTful API (and HEAD) are interactions.
    #[error("unsupported http method {method:?}")]
    UnsupportedMethod { method: String },
    /// The `path` argument exceeds [`MAX_REQUEST_LINE_BYTES`].
    #[error("request line too long: {length} bytes, at most {max} allowed")]
    RequestLineTooLong { length: usize, max: usize },
    /// The query has more than [`MAX_QUERY_PARAMS`] parameters.
    #[error("too many query parameters: at most {max} allowed")]
    TooManyParameters { max: usize },
    /// A control character in the path or in a decoded query name or value.
    #[error("control character in the {location}")]
    ControlCharacter { location: &'static str },
    /// A raw `#`: URL parsers end the request at it (RFC 3986 §3.5), so `DELETE
    /// Observation?#` would reach a server as a `DELETE Observation` without its condition.
    /// A literal `#` is sent as `%23`.
    #[error("a raw '#' in the request line: a fragment is never sent, send a literal '#' as %23")]
    Fragment,
    /// An absolute URL (`http://...`) or a network-path reference (`//host/...`) where a path
    /// relative to the FHIR base belongs (RFC 3986 §4.2). Only the path is looked at: a query
    /// may hold URLs (`code=http://loinc.org|8867-4`).
    #[error("{path:?} is an absolute URL: give the path relative to the FHIR base")]
    AbsoluteUrl { path: String },
    /// `//` inside the path (or only slashes), which servers resolve inconsistently.
    #[error("empty path segment at position {position}")]
    EmptySegment { position: usize },
    /// A type segment that is not `[A-Z][A-Za-z]*` of at most 64 characters.
    #[error(
        "invalid resource type {segment:?}: must match [A-Z][A-Za-z]* and be at most 64 characters"
    )]
    InvalidResourceType { segment: String },
    /// `.` or `..` where an id belongs: a normalising server would read another path.
    #[error("dot segment {segment:?} is never an id: servers resolve it to another path")]
    DotSegment { segment: String },
    /// An id segment that is not a FHIR id.
    #[error("invalid id {segment:?}: must match [A-Za-z0-9\\-.]{{1,64}}")]
    InvalidId { segment: String },
    /// A version segment that is not a FHIR id.
    #[error("invalid version id {segment:?}: must match [A-Za-z0-9\\-.]{{1,64}}")]
    InvalidVersionId { segment: String },
    /// A `$` segment whose name is not `[A-Za-z][A-Za-z0-9_-]*`.
    #[error("invalid operation name {segment:?}: must be `$` followed by [A-Za-z][A-Za-z0-9_-]*")]
    InvalidOperationName { segment: String },
    /// `_history`, `_search`, `metadata` or `$name` where a type or id is expected.
    #[error("reserved word {segment:?} is not allowed at this position")]
    ReservedWord { segment: String },
    /// A well-formed segment that no shape of this method allows at this position.
    #[error("unexpected segment {segment:?} at position {position}")]
    UnexpectedSegment { segment: String, position: usize },
    /// More segments than any shape of this method has.
    #[error("too many path segments for {method}: {count}, at most {max} allowed")]
    TooManySegments {
        method: &'static str,
        count: usize,
        max: usize,
    },
    /// A write or delete at system level.
    #[error("{method} needs a resource type in the path")]
    MissingResourceType { method: &'static str },
    /// `PUT`/`PATCH`/`DELETE [Type]` without search parameters, which would hit every resource.
    #[error("conditional {method} on a resource type needs search parameters in the query")]
    MissingConditionalQuery { method: &'static str },
    /// A `%` not followed by two hex digits, or escapes that do not decode to UTF-8.
    #[error("invalid percent-encoding in query component {text:?}")]
    InvalidPercentEncoding { text: String },
    /// A query item such as `=value`.
    #[error("empty parameter name in query item {item:?}")]
    EmptyParameterName { item: String },
    /// A parameter name with a character no FHIR parameter has (letters, digits and
    /// `_ . : -` only), which servers and the frameworks before them read differently: a
    /// servlet container decodes `+` as a space, some trim what this service would not
    /// (`_elements+=id`), Express, Rack and PHP read `_include[]` as `_include`, and PHP
    /// reads a leading `[` as `_`.
    #[error(
        "parameter name {name:?} holds a character no FHIR parameter has (letters, digits, _ . : - only), which servers read differently"
    )]
    UnreadableParameterName { name: String },
    /// A `;` in the query as it is sent: Rack 2, Python's `parse_qs` before 3.9.2 and Go
    /// before 1.17 split parameters on it, so `code=x;_has:...=456` would be one parameter
    /// here and two there.
    #[error(
        "a ; in the query separates parameters for some servers and not others: send it as %3B"
    )]
    Semicolon,
    /// A `_method` parameter naming another method than the request's.
    #[error("_method={method:?} is not accepted: send the method itself")]
    MethodOverride { method: String },
    /// An `access_token` parameter: a token sent in the query or a form body.
    #[error(
        "access_token is not accepted in the query or a form body: send the token in the Authorization header only"
    )]
    AccessTokenParameter,
    /// A `_cascade` parameter: a delete that would reach resources the decision never saw.
    #[error(
        "_cascade is not accepted: a cascading delete removes resources this service did not decide on"
    )]
    CascadeParameter,
}

/// The HTTP methods the FHIR RESTful API defines interactions for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Method {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    const ALL: [Method; 6] = [
        Method::Get,
        Method::Head,
        Method::Post,
        Method::Put,
        Method::Patch,
        Method::Delete,
    ];

    /// HTTP methods are case-sensitive, but clients and proxies are sloppy; accept any case.
    fn parse(method: &str) -> Result<Self, RequestLineError> {
        Method::ALL
            .into_iter()
            .find(|candidate| candidate.as_str().eq_ignore_ascii_case(method))
            .ok_or_else(|| RequestLineError::UnsupportedMethod {
                method: excerpt(method),
            })
    }

    fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }
}

/// Parses a request line, e.g. `("GET", "Observation?code=x")`, into the interaction it
/// denotes; `path` is relative to the FHIR base and may start with `/`.
pub fn parse_request_line(method: &str, path: &str) -> Result<FhirRequest, RequestLineError> {
    if path.len() > MAX_REQUEST_LINE_BYTES {
        return Err(RequestLineError::RequestLineTooLong {
            length: path.len(),
            max: MAX_REQUEST_LINE_BYTES,
        });
    }
    let method = Method::parse(method)?;
    if path.contains('#') {
        return Err(RequestLineError::Fragment);
    }
    let (path_part, query) = path.split_once('?').unwrap_or((path, ""));
    if contains_control_character(path_part) {
        return Err(RequestLineError::ControlCharacter { location: "path" });
    }
    if is_absolute(path_part) {
        return Err(RequestLineError::AbsoluteUrl {
            path: excerpt(path_part),
        });
    }
    let params = parse_query(query)?;
    refuse_method_override(method.as_str(), &params)?;
    refuse_unjudged_parameters(&params)?;
    let segments = split_path_segments(path_part)?;
    let has_query = !params.is_empty();
    let request = match method {
        Method::Get | Method::Head => parse_read_shape(method, &segments)?,
        Method::Post => parse_post_shape(&segments)?,
        Method::Put => parse_write_shape(Interaction::Update, method, &segments, has_query)?,
        Method::Patch => parse_write_shape(Interaction::Patch, method, &segments, has_query)?,
        Method::Delete => parse_write_shape(Interaction::Delete, method, &segments, has_query)?,
    };
    let params_in_body = method == Method::Post
        && (request.interaction.is_search() || request.interaction == Interaction::Operation);
    Ok(FhirRequest {
        params,
        params_in_body,
        ..request
    })
}

/// Whether the path part of a request line is an absolute URL or a network-path reference
/// rather than a path relative to the FHIR base (RFC 3986 §4.2: a scheme ends at the first
/// `:` before any `/`).
fn is_absolute(path: &str) -> bool {
    // `//host/...`; `//` or `///x` name no host and are only empty segments.
    if let Some(authority) = path.strip_prefix("//") {
        return !authority.is_empty() && !authority.starts_with('/');
    }
    let first_segment = path.split('/').next().unwrap_or_default();
    first_segment.contains(':')
}

/// Parses a query string (without `?`) into percent-decoded parameters, in order.
///
/// `+` is kept as a literal `+`, not turned into a space: FHIR (http.html, search.html)
/// requires a literal `+` to be sent as `%2B`, and form-decoding would silently change values
/// such as timezone offsets (`date=2020-01-01T00:00:00+01:00`).
pub fn parse_query(query: &str) -> Result<Vec<SearchParam>, RequestLineError> {
    if query.len() > MAX_REQUEST_LINE_BYTES {
        return Err(RequestLineError::RequestLineTooLong {
            length: query.len(),
            max: MAX_REQUEST_LINE_BYTES,
        });
    }
    if query.contains(';') {
        return Err(RequestLineError::Semicolon);
    }
    let mut params = Vec::new();
    for item in query.split('&').filter(|item| !item.is_empty()) {
        if params.len() == MAX_QUERY_PARAMS {
            return Err(RequestLineError::TooManyParameters {
                max: MAX_QUERY_PARAMS,
            });
        }
        params.push(parse_query_item(item)?);
    }
    Ok(params)
}

/// Refuses a `_method` parameter (in the query or a form body) that names another method
/// than `method`. FHIR defines no such parameter, but web frameworks (Rails, Express's
/// method-override, Laravel) run the method it names instead of the request's own, so a
/// `GET ...?_method=DELETE` decided as a read could delete. The override headers get the
/// same rule at the faces.
pub fn refuse_method_override(
    method: &str,
    params: &[SearchParam],
) -> Result<(), RequestLineError> {
    let other = params
        .iter()
        .filter(|param| param.name.eq_ignore_ascii_case("_method"))
        .find(|param| !param.value.eq_ignore_ascii_case(method));
    match other {
        Some(param) => Err(RequestLineError::MethodOverride {
            method: excerpt(&param.value),
        }),
        None => Ok(()),
    }
}

/// Refuses parameters (in the query or a form body) a server or a framework before it acts
/// on, which no rule here judges:
/// - `access_token`: the service reads the token of the `Authorization` header only; a
///   server that reads this one (RFC 6750 §2.2, §2.3) would act for another token than the
///   one decided on, and RFC 6750 §2 forbids sending a token more than one way anyway;
/// - `_cascade` (`_cascade=delete`, HAPI's cascading deletes): the delete would also remove
///   every resource that references the one decided on, another patient's among them.
pub fn refuse_unjudged_parameters(params: &[SearchParam]) -> Result<(), RequestLineError> {
    for param in params {
        if param.name.eq_ignore_ascii_case("access_token") {
            return Err(RequestLineError::AccessTokenParameter);
        }
        if param.name.eq_ignore_ascii_case("_cascade") {
            return Err(RequestLineError::CascadeParameter);
        }
    }
    Ok(())
}

/// Splits `name=value` at the first `=`, so values may contain `=`; no `=` means an empty value.
fn parse_query_item(item: &str) -> Result<SearchParam, RequestLineError> {
    let (raw_name, raw_value) = item.split_once('=').unwrap_or((item, ""));
    if raw_name.is_empty() {
        return Err(RequestLineError::EmptyParameterName {
            item: excerpt(item),
        });
    }
    let name = percent_decode_component(raw_name)?;
    if !name
        .bytes()
        .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'.' | b':' | b'-'))
    {
        return Err(RequestLineError::UnreadableParameterName {
            name: excerpt(&name),
        });
    }
    let value = percent_decode_component(raw_value)?;
    Ok(SearchParam { name, value })
}

/// Strict decoding: the `percent-encoding` crate passes malformed escapes through, which would
/// let two spellings of one value reach the server differently, so they are rejected here.
/// Decoded control characters are rejected too, or encoding them would bypass the path check.
fn percent_decode_component(raw: &str) -> Result<String, RequestLineError> {
    let decoded = decode_percent_strict(raw)
        .ok_or_else(|| RequestLineError::InvalidPercentEncoding { text: excerpt(raw) })?;
    if contains_control_character(&decoded) {
        return Err(RequestLineError::ControlCharacter { location: "query" });
    }
    Ok(decoded)
}

/// Percent-decodes `raw` as UTF-8, or `None` for a malformed escape or invalid UTF-8. Shared
/// with the granular scope parser, so a query and a scope decode the same way.
pub(crate) fn decode_percent_strict(raw: &str) -> Option<String> {
    // Most components have no escape at all: already UTF-8, nothing to decode.
    if !raw.contains('%') {
        return Some(raw.to_owned());
    }
    if !has_only_well_formed_escapes(raw) {
        return None;
    }
    percent_decode_str(raw)
        .decode_utf8()
        .ok()
        .map(|decoded| decoded.into_owned())
}

/// Every `%` must be followed by two hex digits.
fn has_only_well_formed_escapes(raw: &str) -> bool {
    raw.split('%').skip(1).all(|after_percent| {
        after_percent
            .as_bytes()
            .get(..2)
            .is_some_and(|hex_digits| hex_digits.iter().all(u8::is_ascii_hexdigit))
    })
}

fn contains_control_character(text: &str) -> bool {
    text.chars().any(char::is_control)
}

/// One leading and one trailing `/` are tolerated; any other empty segment is an error, so
/// `Observation//1` is never silently read as `Observation/1`.
fn split_path_segments(path_part: &str) -> Result<Vec<&str>, RequestLineError> {
    let without_leading_slash = path_part.strip_prefix('/').unwrap_or(path_part);
    if without_leading_slash.is_empty() {
        return Ok(Vec::new());
    }
    let without_trailing_slash = without_leading_slash
        .strip_suffix('/')
        .unwrap_or(without_leading_slash);
    let segments: Vec<&str> = without_trailing_slash.split('/').collect();
    if let Some(position) = segments.iter().position(|segment| segment.is_empty()) {
        return Err(RequestLineError::EmptySegment { position });
    }
    Ok(segments)
}

/// GET and HEAD: reads, searches, histories, operations and the two public endpoints.
fn parse_read_shape(method: Method, segments: &[&str]) -> Result<FhirRequest, RequestLineError> {
    match segments {
        [] => Ok(FhirRequest::new(Interaction::SearchSystem)),
        ["metadata"] => Ok(FhirRequest::new(Interaction::Capabilities)),
        [".well-known", "smart-configuration"] => {
            Ok(FhirRequest::new(Interaction::SmartConfiguration))
        }
        ["_history"] => Ok(FhirRequest::new(Interaction::HistorySystem)),
        [operation] if is_operation_segment(operation) => operation_request(None, None, operation),
        [resource_type] => Ok(FhirRequest::new(Interaction::SearchType)
            .with_type(parse_resource_type(resource_type)?)),
        [resource_type, second] => {
            let resource_type = parse_resource_type(resource_type)?;
            if *second == "_history" {
                return Ok(FhirRequest::new(Interaction::HistoryType).with_type(resource_type));
            }
            if is_operation_segment(second) {
                return operation_request(Some(resource_type), None, second);
            }
            Ok(FhirRequest::new(Interaction::Read)
                .with_type(resource_type)
                .with_id(parse_id(second)?))
        }
        [resource_type, id, third] => {
            let resource_type = parse_resource_type(resource_type)?;
            let id = parse_id(id)?;
            if *third == "_history" {
                return Ok(FhirRequest::new(Interaction::HistoryInstance)
                    .with_type(resource_type)
                    .with_id(id));
            }
            if is_operation_segment(third) {
                return operation_request(Some(resource_type), Some(id), third);
            }
            compartment_search_request(resource_type, id, third)
        }
        [resource_type, id, third, version_id] => {
            let resource_type = parse_resource_type(resource_type)?;
            let id = parse_id(id)?;
            if *third != "_history" {
                return Err(unexpected_segment(third, 2));
            }
            Ok(FhirRequest {
                version_id: Some(parse_version_id(version_id)?),
                ..FhirRequest::new(Interaction::Vread)
                    .with_type(resource_type)
                    .with_id(id)
            })
        }
        _ => Err(too_many_segments(method, segments, MAX_READ_SEGMENTS)),
    }
}

/// POST: batch/transaction, search via POST, create and operations.
fn parse_post_shape(segments: &[&str]) -> Result<FhirRequest, RequestLineError> {
    match segments {
        [] => Ok(FhirRequest::new(Interaction::Batch)),
        ["_search"] => Ok(FhirRequest::new(Interaction::SearchSystem)),
        [operation] if is_operation_segment(operation) => operation_request(None, None, operation),
        [resource_type] => Ok(
            FhirRequest::new(Interaction::Create).with_type(parse_resource_type(resource_type)?)
        ),
        [resource_type, second] => {
            let resource_type = parse_resource_type(resource_type)?;
            if *second == "_search" {
                return Ok(FhirRequest::new(Interaction::SearchType).with_type(resource_type));
            }
            if is_operation_segment(second) {
                return operation_request(Some(resource_type), None, second);
            }
            Err(unexpected_segment(second, 1))
        }
        [resource_type, id, third] => {
            let resource_type = parse_resource_type(resource_type)?;
            let id = parse_id(id)?;
            if is_operation_segment(third) {
                return operation_request(Some(resource_type), Some(id), third);
            }
            Err(unexpected_segment(third, 2))
        }
        [compartment_type, compartment_id, searched_type, fourth] => {
            let compartment_type = parse_resource_type(compartment_type)?;
            let compartment_id = parse_id(compartment_id)?;
            let request =
                compartment_search_request(compartment_type, compartment_id, searched_type)?;
            if *fourth != "_search" {
                return Err(unexpected_segment(fourth, 3));
            }
            Ok(request)
        }
        _ => Err(too_many_segments(Method::Post, segments, MAX_READ_SEGMENTS)),
    }
}

/// PUT, PATCH and DELETE: on an instance, or conditionally on a type when the query says which.
fn parse_write_shape(
    interaction: Interaction,
    method: Method,
    segments: &[&str],
    has_query: bool,
) -> Result<FhirRequest, RequestLineError> {
    match segments {
        [] => Err(RequestLineError::MissingResourceType {
            method: method.as_str(),
        }),
        [resource_type] => {
            let resource_type = parse_resource_type(resource_type)?;
            if !has_query {
                return Err(RequestLineError::MissingConditionalQuery {
                    method: method.as_str(),
                });
            }
            Ok(FhirRequest::new(interaction).with_type(resource_type))
        }
        [resource_type, id] => {
            let resource_type = parse_resource_type(resource_type)?;
            Ok(FhirRequest::new(interaction)
                .with_type(resource_type)
                .with_id(parse_id(id)?))
        }
        _ => Err(too_many_segments(method, segments, MAX_WRITE_SEGMENTS)),
    }
}

/// `Type/id/Type2` or `Type/id/*`: the searched type is validated, the compartment type is
/// left to the engine (only it knows which compartments the FHIR version defines).
fn compartment_search_request(
    compartment_type: String,
    compartment_id: String,
    searched_type: &str,
) -> Result<FhirRequest, RequestLineError> {
    let searched_type = match searched_type {
        "*" => "*".to_owned(),
        _ => parse_resource_type(searched_type)?,
    };
    Ok(FhirRequest {
        compartment: Some(CompartmentRef::new(compartment_type, compartment_id)),
        ..FhirRequest::new(Interaction::SearchCompartment).with_type(searched_type)
    })
}

/// An operation at system (no type), type (no id) or instance level.
fn operation_request(
    resource_type: Option<String>,
    id: Option<String>,
    operation_segment: &str,
) -> Result<FhirRequest, RequestLineError> {
    Ok(FhirRequest {
        resource_type,
        id,
        operation: Some(parse_operation(operation_segment)?),
        ..FhirRequest::new(Interaction::Operation)
    })
}

fn is_operation_segment(segment: &str) -> bool {
    segment.starts_with('$')
}

/// Words FHIR gives a meaning of their own in the path; as a type or id they would be ambiguous.
fn is_reserved_word(segment: &str) -> bool {
    segment == "_history" || segment == "_search" || is_operation_segment(segment)
}

/// `[A-Z][A-Za-z]*`, at most 64 characters, and not a reserved word.
fn parse_resource_type(segment: &str) -> Result<String, RequestLineError> {
    if is_reserved_word(segment) || segment == "metadata" {
        return Err(RequestLineError::ReservedWord {
            segment: excerpt(segment),
        });
    }
    let starts_upper_case = segment.starts_with(|first: char| first.is_ascii_uppercase());
    let is_well_formed = starts_upper_case
        && segment.len() <= MAX_RESOURCE_TYPE_CHARS
        && segment.bytes().all(|byte| byte.is_ascii_alphabetic());
    if !is_well_formed {
        return Err(RequestLineError::InvalidResourceType {
            segment: excerpt(segment),
        });
    }
    Ok(segment.to_owned())
}

/// A FHIR id that is not a reserved word.
fn parse_id(segment: &str) -> Result<String, RequestLineError> {
    if is_dot_segment(segment) {
        return Err(RequestLineError::DotSegment {
            segment: segment.to_owned(),
        });
    }
    if is_reserved_word(segment) {
        return Err(RequestLineError::ReservedWord {
            segment: excerpt(segment),
        });
    }
    if !is_fhir_id(segment) {
        return Err(RequestLineError::InvalidId {
            segment: excerpt(segment),
        });
    }
    Ok(segment.to_owned())
}

fn parse_version_id(segment: &str) -> Result<String, RequestLineError> {
    if is_dot_segment(segment) {
        return Err(RequestLineError::DotSegment {
            segment: segment.to_owned(),
        });
    }
    if !is_fhir_id(segment) {
        return Err(RequestLineError::InvalidVersionId {
            segment: excerpt(segment),
        });
    }
    Ok(segment.to_owned())
}

/// `.` and `..`, which RFC 3986 §5.2.4 removes from a path.
fn is_dot_segment(segment: &str) -> bool {
    matches!(segment, "." | "..")
}

/// `$` then `[A-Za-z][A-Za-z0-9_-]*`; returns the name without `$`.
fn parse_operation(segment: &str) -> Result<String, RequestLineError> {
    let invalid = || RequestLineError::InvalidOperationName {
        segment: excerpt(segment),
    };
    let name = segment.strip_prefix('$').ok_or_else(invalid)?;
    let starts_with_letter = name.starts_with(|first: char| first.is_ascii_alphabetic());
    let is_well_formed = starts_with_letter
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-');
    if !is_well_formed {
        return Err(invalid());
    }
    Ok(name.to_owned())
}

/// FHIR R4 datatypes.html#id: `[A-Za-z0-9\-\.]{1,64}`.
/// A FHIR id, except `.` and `..`: they match the id grammar, but a proxy or server that
/// normalises paths reads them as dot segments, so `Observation/..?_type=Patient` would be
/// decided as one request and executed as another (RFC 3986 §5.2.4).
fn is_fhir_id(segment: &str) -> bool {
    !segment.is_empty()
        && segment != "."
        && segment != ".."
        && segment.len() <= MAX_ID_CHARS
        && segment
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'.')
}

fn unexpected_segment(segment: &str, position: usize) -> RequestLineError {
    RequestLineError::UnexpectedSegment {
        segment: excerpt(segment),
        position,
    }
}

fn too_many_segments(method: Method, segments: &[&str], max: usize) -> RequestLineError {
    RequestLineError::TooManySegments {
        method: method.as_str(),
        count: segments.len(),
        max,
    }
}

/// The first [`MAX_ERROR_EXCERPT_CHARS`] characters of `text`, marked with `…` when cut.
fn excerpt(text: &str) -> String {
    match text.char_indices().nth(MAX_ERROR_EXCERPT_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests;
