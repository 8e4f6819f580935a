//! The grammar of one SMART scope (App Launch 2.2 §3.0.2, §3.0.2.3, §3.0.2.7).
//!
//! Parsing is strict on purpose: a scope that is not exactly right grants nothing, and the
//! error says why, so a developer can fix the client's or the server's configuration.

use std::fmt;

use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use serde::{Deserialize, Serialize};

use super::permissions::{Permission, Permissions};
use crate::fhir::FhirVersion;
use crate::fhir::request_line::decode_percent_strict;

/// Who a resource scope speaks for (§3.0.2): the patient in context, the signed-in user, or
/// the client itself (Backend Services).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScopeContext {
    Patient,
    User,
    System,
}

impl ScopeContext {
    pub fn as_str(self) -> &'static str {
        match self {
            ScopeContext::Patient => "patient",
            ScopeContext::User => "user",
            ScopeContext::System => "system",
        }
    }
}

impl fmt::Display for ScopeContext {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// The resource types a scope covers: one type, or `*` (all types, present and future).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ResourceSelector {
    All,
    Type(String),
}

impl ResourceSelector {
    pub fn covers(&self, resource_type: &str) -> bool {
        match self {
            ResourceSelector::All => true,
            ResourceSelector::Type(name) => name == resource_type,
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            ResourceSelector::All => "*",
            ResourceSelector::Type(name) => name,
        }
    }
}

/// One item of a granular scope's query: `param=v1,v2` means the resource matches `param`
/// on `v1` or `v2` (§3.0.2.3). Items of one scope are ANDed.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct FilterItem {
    pub param: String,
    /// Percent-decoded alternatives, never empty.
    pub values: Vec<String>,
}

/// A scope that grants access to FHIR resources: `context/Type.perms[?query]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ResourceScope {
    pub context: ScopeContext,
    pub resource: ResourceSelector,
    pub permissions: Permissions,
    /// Empty for a plain scope; otherwise the granular filter, AND of OR-lists.
    pub filter: Vec<FilterItem>,
}

impl ResourceScope {
    pub fn grants(&self, resource_type: &str, permission: Permission) -> bool {
        self.permissions.contains(permission) && self.resource.covers(resource_type)
    }
}

/// A recognised scope. Only [`Scope::Resource`] grants access; the others are reported.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    Resource(ResourceScope),
    /// `openid`, `fhirUser`, `profile` (§3.0.5).
    Identity(String),
    /// `launch`, `launch/patient`, `launch/encounter`, `launch/x?role=...` (§3.0.4).
    Launch(String),
    /// `offline_access`, `online_access` (§3.0.6).
    Refresh(String),
    /// `__name` or an absolute URI: meaningful to some server, not to SMART.
    Extension(String),
}

impl Scope {
    /// A short description of what kind of scope this is, for reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Scope::Resource(_) => "resource",
            Scope::Identity(_) => "identity",
            Scope::Launch(_) => "launch context",
            Scope::Refresh(_) => "refresh token",
            Scope::Extension(_) => "extension",
        }
    }
}

/// Why a scope grants nothing.
#[derive(Clone, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum ScopeError {
    #[error("empty scope")]
    Empty,
    /// RFC 6749 §3.3: scopes are separated by single spaces, and a scope-token is made of
    /// visible ASCII other than `"` and `\`. Any other character (a tab, a newline, a
    /// no-break space, a control character) makes the scope invalid rather than another
    /// scope.
    #[error("character {0:?} is not allowed in a scope (RFC 6749 §3.3)")]
    InvalidCharacter(char),
    #[error("more than {0} scopes in one token: ignored")]
    TooMany(usize),
    #[error("not a SMART scope")]
    Unrecognised,
    #[error("unknown context {0:?}: expected patient, user or system")]
    UnknownContext(String),
    #[error("context {0:?} must be lower case")]
    ContextCase(String),
    #[error("missing resource type before '.'")]
    MissingResourceType,
    #[error("missing '.' and permissions after the resource type")]
    MissingPermissions,
    #[error("empty permissions")]
    EmptyPermissions,
    #[error("unknown resource type {resource_type:?} in FHIR {version}")]
    UnknownResourceType {
        resource_type: String,
        version: FhirVersion,
    },
    #[error("resource type {found:?} must be written {expected:?} (types are case-sensitive)")]
    ResourceTypeCase { found: String, expected: String },
    #[error("permissions {0:?} must be lower case")]
    PermissionCase(String),
    #[error("unknown permission letter {0:?}: expected letters of cruds")]
    UnknownPermission(char),
    #[error("duplicate permission letter {0:?}")]
    DuplicatePermission(char),
    #[error("permission letters {0:?} out of order: expected a subsequence of cruds")]
    PermissionsOutOfOrder(String),
    #[error("granular filters need SMART v2 permissions, not {0:?}")]
    QueryOnV1(String),
    #[error("unsupported granular scope: {0}")]
    UnsupportedQuery(QueryError),
}

/// Why a granular scope's query cannot be enforced (docs/semantics.md §1): the scope then
/// grants nothing, never the whole type.
#[derive(Clone, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum QueryError {
    #[error("empty query after '?'")]
    Empty,
    #[error("empty item in query")]
    EmptyItem,
    #[error("{0:?} has no '='")]
    MissingEquals(String),
    #[error("empty parameter name")]
    EmptyName,
    #[error("parameter {0} has an empty value")]
    EmptyValue(String),
    #[error("modifier {0:?} is not supported")]
    Modifier(String),
    #[error("chained parameter {0:?} is not supported")]
    Chain(String),
    #[error("{0} is not a filter")]
    ResultParameter(String),
    #[error("_has is not supported")]
    Has,
    #[error("_filter is not supported")]
    Filter,
    #[error("{param} is not a search parameter of {resource_type}")]
    UnknownParameter {
        param: String,
        resource_type: String,
    },
    #[error("bad percent-encoding in {0:?}")]
    BadEncoding(String),
    /// A `\` in a value: FHIR search escapes `,`, `|` and `$` with it, so where this value
    /// splits into alternatives depends on a reading this service does not do.
    #[error("a backslash in {0:?}: FHIR's escapes are not read in scopes")]
    Escape(String),
    /// A `%2C` in a value: one value holding a comma to this service, two alternatives to a
    /// server that writes the constraint's values back into a query (`code=a,b`).
    #[error("a percent-encoded comma in {0:?}: one value here, two alternatives to a server")]
    EncodedComma(String),
}

/// Parses one scope against the resource types and search parameters of `version`.
pub fn parse_scope(text: &str, version: FhirVersion) -> Result<Scope, ScopeError> {
    match text {
        "" => return Err(ScopeError::Empty),
        "openid" | "fhirUser" | "profile" => return Ok(Scope::Identity(text.to_owned())),
        "offline_access" | "online_access" => return Ok(Scope::Refresh(text.to_owned())),
        "launch" => return Ok(Scope::Launch(text.to_owned())),
        _ => {}
    }
    if let Some(launch_context) = text.strip_prefix("launch/") {
        let name = launch_context.split('?').next().unwrap_or_default();
        if name.is_empty() || name.contains('/') {
            return Err(ScopeError::Unrecognised);
        }
        return Ok(Scope::Launch(text.to_owned()));
    }
    if is_extension(text) {
        return Ok(Scope::Extension(text.to_owned()));
    }
    parse_resource_scope(text, version).map(Scope::Resource)
}

/// `__name`, or an absolute URI (a scheme before the first `:` and no `/` before it).
fn is_extension(text: &str) -> bool {
    if let Some(name) = text.strip_prefix("__") {
        return !name.is_empty();
    }
    match text.split_once(':') {
        Some((scheme, rest)) => {
            !rest.is_empty()
                && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        }
        None => false,
    }
}

fn parse_resource_scope(text: &str, version: FhirVersion) -> Result<ResourceScope, ScopeError> {
    let (context, rest) = text.split_once('/').ok_or(ScopeError::Unrecognised)?;
    let context = parse_context(context)?;
    let (head, query) = match rest.split_once('?') {
        Some((head, query)) => (head, Some(query)),
        None => (rest, None),
    };
    let (resource, permissions) = head
        .rsplit_once('.')
        .ok_or(ScopeError::MissingPermissions)?;
    let resource = parse_resource_selector(resource, version)?;
    let (permissions, is_v1) = parse_permissions(permissions)?;
    let filter = match query {
        None => Vec::new(),
        Some(_) if is_v1 => return Err(ScopeError::QueryOnV1(text.to_owned())),
        Some(query) => {
            parse_filter(query, &resource, version).map_err(ScopeError::UnsupportedQuery)?
        }
    };
    Ok(ResourceScope {
        context,
        resource,
        permissions,
        filter,
    })
}

fn parse_context(text: &str) -> Result<ScopeContext, ScopeError> {
    match text {
        "patient" => Ok(ScopeContext::Patient),
        "user" => Ok(ScopeContext::User),
        "system" => Ok(ScopeContext::System),
        _ if ["patient", "user", "system"]
            .iter()
            .any(|name| name.eq_ignore_ascii_case(text)) =>
        {
            Err(ScopeError::ContextCase(text.to_owned()))
        }
        _ => Err(ScopeError::UnknownContext(text.to_owned())),
    }
}

fn parse_resource_selector(
    text: &str,
    version: FhirVersion,
) -> Result<ResourceSelector, ScopeError> {
    if text == "*" {
        return Ok(ResourceSelector::All);
    }
    if text.is_empty() {
        return Err(ScopeError::MissingResourceType);
    }
    if version.is_resource_type(text) {
        return Ok(ResourceSelector::Type(text.to_owned()));
    }
    let same_but_case = version
        .tables()
        .resource_types
        .iter()
        .find(|name| name.eq_ignore_ascii_case(text));
    Err(match same_but_case {
        Some(expected) => ScopeError::ResourceTypeCase {
            found: text.to_owned(),
            expected: (*expected).to_owned(),
        },
        None => ScopeError::UnknownResourceType {
            resource_type: text.to_owned(),
            version,
        },
    })
}

/// Parses v2 letters or a v1 word; returns the set and whether it was v1 syntax.
fn parse_permissions(text: &str) -> Result<(Permissions, bool), ScopeError> {
    match text {
        "read" => {
            return Ok((
                Permissions::of(&[Permission::Read, Permission::Search]),
                true,
            ));
        }
        "write" => {
            let write = [Permission::Create, Permission::Update, Permission::Delete];
            return Ok((Permissions::of(&write), true));
        }
        "*" => return Ok((Permissions::ALL, true)),
        "" => return Err(ScopeError::EmptyPermissions),
        _ => {}
    }
    if text.eq_ignore_ascii_case("read")
        || text.eq_ignore_ascii_case("write")
        || text.chars().any(|c| c.is_ascii_uppercase())
    {
        return Err(ScopeError::PermissionCase(text.to_owned()));
    }
    let mut permissions = Permissions::NONE;
    let mut last_position = None;
    let mut out_of_order = false;
    for letter in text.chars() {
        let permission =
            Permission::from_letter(letter).ok_or(ScopeError::UnknownPermission(letter))?;
        if permissions.contains(permission) {
            return Err(ScopeError::DuplicatePermission(letter));
        }
        let position = Permission::ORDER.iter().position(|p| *p == permission);
        out_of_order |= position < last_position;
        last_position = position;
        permissions = permissions.with(permission);
    }
    if out_of_order {
        return Err(ScopeError::PermissionsOutOfOrder(text.to_owned()));
    }
    Ok((permissions, false))
}

fn parse_filter(
    query: &str,
    resource: &ResourceSelector,
    version: FhirVersion,
) -> Result<Vec<FilterItem>, QueryError> {
    if query.is_empty() {
        return Err(QueryError::Empty);
    }
    let mut items: Vec<FilterItem> = query
        .split('&')
        .map(|item| parse_filter_item(item, resource, version))
        .collect::<Result<_, _>>()?;
    // A parsed scope lives as long as its token is cached: no spare capacity.
    items.shrink_to_fit();
    Ok(items)
}

fn parse_filter_item(
    item: &str,
    resource: &ResourceSelector,
    version: FhirVersion,
) -> Result<FilterItem, QueryError> {
    if item.is_empty() {
        return Err(QueryError::EmptyItem);
    }
    let (name, value) = item
        .split_once('=')
        .ok_or_else(|| QueryError::MissingEquals(item.to_owned()))?;
    check_filter_name(name, resource, version)?;
    if value.is_empty() {
        return Err(QueryError::EmptyValue(name.to_owned()));
    }
    let mut values: Vec<String> = value
        .split(',')
        .map(|alternative| {
            let mut decoded = decode_percent_strict(alternative)
                .ok_or_else(|| QueryError::BadEncoding(item.to_owned()))?;
            if decoded.is_empty() {
                return Err(QueryError::EmptyValue(name.to_owned()));
            }
            if decoded.contains('\\') {
                return Err(QueryError::Escape(item.to_owned()));
            }
            if decoded.contains(',') {
                return Err(QueryError::EncodedComma(item.to_owned()));
            }
            decoded.shrink_to_fit();
            Ok(decoded)
        })
        .collect::<Result<_, _>>()?;
    values.shrink_to_fit();
    Ok(FilterItem {
        param: name.to_owned(),
        values,
    })
}

fn check_filter_name(
    name: &str,
    resource: &ResourceSelector,
    version: FhirVersion,
) -> Result<(), QueryError> {
    match name {
        "" => return Err(QueryError::EmptyName),
        // Parameters that shape the search rather than filter it: a server may ignore `_type`
        // on a type search, and `_query` runs a named query of its own in its place. (A
        // membership or text filter, `_list`, `_in`, `_text`, stays a filter: passed on as a
        // constraint on a search, unmatchable on a read.)
        "_include" | "_revinclude" | "_type" | "_query" => {
            return Err(QueryError::ResultParameter(name.to_owned()));
        }
        "_filter" => return Err(QueryError::Filter),
        _ if name == "_has" || name.starts_with("_has:") => return Err(QueryError::Has),
        _ if name.starts_with("_include:") || name.starts_with("_revinclude:") => {
            return Err(QueryError::ResultParameter(name.to_owned()));
        }
        _ if name.contains(':') => return Err(QueryError::Modifier(name.to_owned())),
        _ if name.contains('.') => return Err(QueryError::Chain(name.to_owned())),
        _ => {}
    }
    let known = match resource {
        // For `*`, only what every resource has (docs/semantics.md §1).
        ResourceSelector::All => version.search_param("Resource", name).is_some(),
        ResourceSelector::Type(resource_type) => {
            version.search_param(resource_type, name).is_some()
        }
    };
    if !known {
        return Err(QueryError::UnknownParameter {
            param: name.to_owned(),
            resource_type: resource.as_str().to_owned(),
        });
    }
    Ok(())
}

/// Characters a filter value must escape to survive a round trip through the parser.
const FILTER_VALUE: &AsciiSet = &CONTROLS.add(b' ').add(b'%').add(b'&').add(b',').add(b'#');

impl ResourceScope {
    /// The canonical v2 form: v1 words come out as letters (`read` as `rs`). Built into one
    /// string rather than through the formatter: introspection writes it for every scope of
    /// the token on every call.
    pub fn canonical(&self) -> String {
        let mut text = String::with_capacity(48);
        text.push_str(self.context.as_str());
        text.push('/');
        text.push_str(self.resource.as_str());
        text.push('.');
        text.extend(self.permissions.iter().map(Permission::letter));
        for (position, item) in self.filter.iter().enumerate() {
            text.push(if position == 0 { '?' } else { '&' });
            text.push_str(&item.param);
            text.push('=');
            for (index, value) in item.values.iter().enumerate() {
                if index > 0 {
                    text.push(',');
                }
                text.extend(utf8_percent_encode(value, FILTER_VALUE));
            }
        }
        text
    }
}

impl fmt::Display for ResourceScope {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.canonical())
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Resource(scope) => scope.fmt(formatter),
            Scope::Identity(text)
            | Scope::Launch(text)
            | Scope::Refresh(text)
            | Scope::Extension(text) => formatter.write_str(text),
        }
    }
}

#[cfg(test)]
mod tests;
