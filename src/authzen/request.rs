//! An AuthZEN evaluation read into what the pipeline decides on (docs/authzen.md): the
//! subject is the access token, the action an HTTP method or a FHIR interaction, the
//! resource the FHIR request. Anything that could be read two ways is refused.

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::fhir::Interaction;

/// The `subject.type` of an access token.
pub const TOKEN_SUBJECT: &str = "access_token";
/// The `resource.type` of a request given as its HTTP line.
pub const REQUEST_RESOURCE: &str = "fhir_request";

/// The members of `resource.properties`.
const RESOURCE_PROPERTIES: [&str; 6] = [
    "query",
    "version_id",
    "stored",
    "proposed",
    "headers",
    "body",
];

/// Most headers one evaluation may give: a FHIR request needs a few (`If-None-Exist`,
/// `Content-Type`, `Prefer`); each is read again by every item that shares them.
pub const MAX_HEADERS: usize = 64;

/// One evaluation, ready for the pipeline. Its `Debug` leaves the token and the headers'
/// values out.
#[derive(Default)]
pub struct Evaluation<'a> {
    pub token: String,
    pub method: String,
    /// Relative to the FHIR base, with its query.
    pub path: String,
    pub headers: HashMap<String, String>,
    /// The form body of a `POST` search given as an HTTP line.
    pub body: String,
    pub stored: Option<&'a Value>,
    pub proposed: Option<&'a Value>,
    pub fhir_server: String,
    /// `context.fhir_version`: the FHIR release the request is in; empty, the server's only
    /// one.
    pub fhir_version: String,
    /// `context.enforces_grants`: the caller applies an allow's grants (compartment,
    /// filters, exclusions, obligations). Without it an allow that has any is `false`.
    pub enforces_grants: bool,
}

impl std::fmt::Debug for Evaluation<'_> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Evaluation")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("body_bytes", &self.body.len())
            .field("fhir_server", &self.fhir_server)
            .field("fhir_version", &self.fhir_version)
            .field("enforces_grants", &self.enforces_grants)
            .finish_non_exhaustive()
    }
}

/// Why an evaluation cannot be read: a 400.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unreadable(pub String);

fn unreadable(message: impl Into<String>) -> Unreadable {
    Unreadable(message.into())
}

/// An object member that must be a string when present.
fn text<'a>(
    object: &'a Map<String, Value>,
    field: &str,
    name: &str,
) -> Result<Option<&'a str>, Unreadable> {
    match object.get(name) {
        None => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(unreadable(format!("{field}.{name}: must be a string"))),
    }
}

fn object<'a>(value: &'a Value, field: &str) -> Result<&'a Map<String, Value>, Unreadable> {
    value
        .as_object()
        .ok_or_else(|| unreadable(format!("{field}: must be an object")))
}

/// The optional `properties` object of a subject, action or resource.
fn properties<'a>(
    object: &'a Map<String, Value>,
    field: &str,
) -> Result<Option<&'a Map<String, Value>>, Unreadable> {
    match object.get("properties") {
        None => Ok(None),
        Some(value) => self::object(value, &format!("{field}.properties")).map(Some),
    }
}

/// Reads one evaluation from its four parts (AuthZEN 1.0 §6.1; for `evaluations`, each
/// already merged with the defaults). Members AuthZEN does not define are ignored, as its
/// §10.1.1 requires of receivers ("MUST ignore unknown fields"); `resource.properties`,
/// whose members are this service's own, is read strictly.
pub fn read<'a>(
    subject: Option<&'a Value>,
    action: Option<&'a Value>,
    resource: Option<&'a Value>,
    context: Option<&'a Value>,
) -> Result<Evaluation<'a>, Unreadable> {
    let subject = object(
        subject.ok_or_else(|| unreadable("subject: required"))?,
        "subject",
    )?;
    let action = object(
        action.ok_or_else(|| unreadable("action: required"))?,
        "action",
    )?;
    let resource = object(
        resource.ok_or_else(|| unreadable("resource: required"))?,
        "resource",
    )?;
    let mut evaluation = Evaluation::default();

    match text(subject, "subject", "type")? {
        Some(TOKEN_SUBJECT) => {}
        other => {
            return Err(unreadable(format!(
                "subject.type: must be {TOKEN_SUBJECT:?}, got {other:?}"
            )));
        }
    }
    // An empty id is no token: public endpoints still pass, anything else is a deny.
    evaluation.token = text(subject, "subject", "id")?
        .unwrap_or_default()
        .to_owned();

    let name =
        text(action, "action", "name")?.ok_or_else(|| unreadable("action.name: required"))?;
    let resource_type =
        text(resource, "resource", "type")?.ok_or_else(|| unreadable("resource.type: required"))?;
    let id = text(resource, "resource", "id")?.unwrap_or_default();
    let resource_properties = properties(resource, "resource")?;
    // A member this face does not read would leave the caller's request and the one decided
    // apart (a `query` beside an HTTP line, a misspelt `stord`): refused, not ignored.
    if let Some(unknown) = resource_properties.and_then(|properties| {
        properties
            .keys()
            .find(|key| !RESOURCE_PROPERTIES.contains(&key.as_str()))
    }) {
        return Err(unreadable(format!(
            "resource.properties.{unknown}: not a member this service reads (one of {})",
            RESOURCE_PROPERTIES.join(", ")
        )));
    }

    if is_http_method(name) {
        if resource_type != REQUEST_RESOURCE {
            return Err(unreadable(format!(
                "resource.type: with an HTTP method as action.name, must be {REQUEST_RESOURCE:?} and resource.id the path"
            )));
        }
        if let Some(member) = resource_properties.and_then(|properties| {
            ["query", "version_id"]
                .into_iter()
                .find(|member| properties.contains_key(*member))
        }) {
            return Err(unreadable(format!(
                "resource.properties.{member}: with an HTTP method as action.name, the whole request line is resource.id"
            )));
        }
        evaluation.method = name.to_owned();
        evaluation.path = id.to_owned();
    } else {
        let query = match resource_properties {
            Some(properties) => text(properties, "resource.properties", "query")?,
            None => None,
        };
        let version = match resource_properties {
            Some(properties) => text(properties, "resource.properties", "version_id")?,
            None => None,
        };
        let (method, path) = structured_line(name, resource_type, id, version, query)?;
        evaluation.method = method.to_owned();
        evaluation.path = path;
        if resource_properties.is_some_and(|properties| properties.contains_key("body")) {
            return Err(unreadable(
                "resource.properties.body: only with an HTTP line (a POST search's form body)",
            ));
        }
    }

    if let Some(properties) = resource_properties {
        evaluation.body = text(properties, "resource.properties", "body")?
            .unwrap_or_default()
            .to_owned();
        evaluation.stored = properties.get("stored");
        evaluation.proposed = properties.get("proposed");
        if let Some(headers) = properties.get("headers") {
            let headers = object(headers, "resource.properties.headers")?;
            if headers.len() > MAX_HEADERS {
                return Err(unreadable(format!(
                    "resource.properties.headers: at most {MAX_HEADERS}"
                )));
            }
            for (name, value) in headers {
                let Value::String(value) = value else {
                    return Err(unreadable(format!(
                        "resource.properties.headers.{name}: must be a string"
                    )));
                };
                // Matched without case, as HTTP does: a name given twice is not guessed at.
                if evaluation
                    .headers
                    .insert(name.to_ascii_lowercase(), value.clone())
                    .is_some()
                {
                    return Err(unreadable(format!(
                        "resource.properties.headers: {name:?} is given twice"
                    )));
                }
            }
        }
    }
    if let Some(context) = context {
        let context = object(context, "context")?;
        evaluation.fhir_server = text(context, "context", "fhir_server")?
            .unwrap_or_default()
            .to_owned();
        evaluation.fhir_version = text(context, "context", "fhir_version")?
            .unwrap_or_default()
            .to_owned();
        evaluation.enforces_grants = match context.get("enforces_grants") {
            None => false,
            Some(Value::Bool(enforces)) => *enforces,
            Some(_) => return Err(unreadable("context.enforces_grants: must be true or false")),
        };
    }
    Ok(evaluation)
}

fn is_http_method(name: &str) -> bool {
    matches!(name, "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE")
}

/// The request line of a FHIR interaction on `resource_type` (and `id`): one of the
/// interactions on a type or an instance; everything else is given as an HTTP line. The
/// type and id are checked here so that neither can carry a path or a query of its own.
fn structured_line(
    name: &str,
    resource_type: &str,
    id: &str,
    version: Option<&str>,
    query: Option<&str>,
) -> Result<(&'static str, String), Unreadable> {
    let interaction = [
        Interaction::Read,
        Interaction::Vread,
        Interaction::Update,
        Interaction::Patch,
        Interaction::Delete,
        Interaction::HistoryInstance,
        Interaction::HistoryType,
        Interaction::Create,
        Interaction::SearchType,
    ]
    .into_iter()
    .find(|interaction| interaction.as_str() == name)
    .ok_or_else(|| {
        unreadable(format!(
            "action.name: {name:?} is neither an HTTP method nor a FHIR interaction on a type or an instance (read, vread, update, patch, delete, history-instance, history-type, create, search-type); give other requests as an HTTP line"
        ))
    })?;
    // A FHIR type name starts with a capital: `metadata` would make `GET metadata`.
    if !resource_type.starts_with(|first: char| first.is_ascii_uppercase())
        || resource_type.len() > 64
        || !resource_type.bytes().all(|byte| byte.is_ascii_alphabetic())
    {
        return Err(unreadable(format!(
            "resource.type: {resource_type:?} is not a FHIR resource type"
        )));
    }
    let instance = matches!(
        interaction,
        Interaction::Read
            | Interaction::Vread
            | Interaction::Update
            | Interaction::Patch
            | Interaction::Delete
            | Interaction::HistoryInstance
    );
    if instance && !is_fhir_id(id) {
        return Err(unreadable(format!(
            "resource.id: {id:?} is not a FHIR id ({name} names one resource)"
        )));
    }
    if !instance && !id.is_empty() {
        return Err(unreadable(format!(
            "resource.id: {name} is on the type, leave the id empty"
        )));
    }
    if query.is_some() && interaction != Interaction::SearchType {
        return Err(unreadable(
            "resource.properties.query: only for search-type",
        ));
    }
    if version.is_some() != (interaction == Interaction::Vread) {
        return Err(unreadable(
            "resource.properties.version_id: required for vread, and only there",
        ));
    }
    Ok(match interaction {
        Interaction::Read => ("GET", format!("{resource_type}/{id}")),
        Interaction::Vread => {
            let version = version.unwrap_or_default();
            if !is_fhir_id(version) {
                return Err(unreadable(format!(
                    "resource.properties.version_id: {version:?} is not a FHIR id"
                )));
            }
            ("GET", format!("{resource_type}/{id}/_history/{version}"))
        }
        Interaction::Update => ("PUT", format!("{resource_type}/{id}")),
        Interaction::Patch => ("PATCH", format!("{resource_type}/{id}")),
        Interaction::Delete => ("DELETE", format!("{resource_type}/{id}")),
        Interaction::HistoryInstance => ("GET", format!("{resource_type}/{id}/_history")),
        Interaction::HistoryType => ("GET", format!("{resource_type}/_history")),
        Interaction::Create => ("POST", resource_type.to_owned()),
        _ => match query {
            Some(query) if !query.is_empty() => ("GET", format!("{resource_type}?{query}")),
            _ => ("GET", resource_type.to_owned()),
        },
    })
}

/// FHIR's id: 1 to 64 of `[A-Za-z0-9.-]` (R4 datatypes.html#id).
fn is_fhir_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'.')
}

#[cfg(test)]
mod tests;
