//! FHIR references (`Patient/123`, `https://host/fhir/Patient/123/_history/2`) reduced to the
//! type and id that compartment membership compares.

/// The resource type and id a literal reference points to.
///
/// A relative reference is exactly `Type/id` or `Type/id/_history/vid`. An absolute one,
/// `http(s)://authority/base/Type/id` (optionally `/_history/vid`), resolves to its last
/// `Type/id` because the engine does not know the server's base URL (docs/semantics.md):
/// any `http`/`https` base with a non-empty authority is accepted, but not one with an
/// empty, `.` or `..` path segment. Contained (`#p1`), `urn:`, logical (identifier-only)
/// references and anything carrying a query or fragment do not resolve, because nothing
/// proves which resource they denote (FHIR R4 references.html §2.3.0). Fail closed: when in
/// doubt, `None`.
pub fn parse_reference(reference: &str) -> Option<(&str, &str)> {
    if reference
        .chars()
        .any(|c| matches!(c, '?' | '#' | '\\') || c.is_whitespace() || c.is_control())
    {
        return None;
    }
    match reference.split_once("://") {
        Some((scheme, rest)) => {
            if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) {
                return None;
            }
            let (authority, path) = rest.split_once('/')?;
            let host = authority.rsplit('@').next().unwrap_or_default();
            if host.is_empty() || host.starts_with(':') {
                return None;
            }
            let segments: Vec<&str> = path.split('/').collect();
            if !segments.iter().all(|segment| is_plain_segment(segment)) {
                return None;
            }
            let versioned = segments.len() >= 4 && segments[segments.len() - 2] == "_history";
            let tail = if versioned { 4 } else { 2 };
            resource_type_and_id(&segments[segments.len().checked_sub(tail)?..])
        }
        // `urn:`, `mailto:`, `Patient/a:b`, ...: not a relative `Type/id`.
        None if reference.contains(':') => None,
        None => resource_type_and_id(&reference.split('/').collect::<Vec<_>>()),
    }
}

/// `Type/id` or `Type/id/_history/vid`, exactly.
fn resource_type_and_id<'a>(segments: &[&'a str]) -> Option<(&'a str, &'a str)> {
    let (resource_type, id) = match *segments {
        [resource_type, id] => (resource_type, id),
        [resource_type, id, "_history", version_id] if is_valid_id(version_id) => {
            (resource_type, id)
        }
        _ => return None,
    };
    (is_resource_type_name(resource_type) && is_valid_id(id)).then_some((resource_type, id))
}

/// A resource type name: an upper-case ASCII letter followed by ASCII letters.
fn is_resource_type_name(name: &str) -> bool {
    name.starts_with(|first: char| first.is_ascii_uppercase())
        && name.chars().all(|c| c.is_ascii_alphabetic())
}

/// A path segment of an absolute reference's base: not empty and not a dot segment, even
/// percent-encoded (RFC 3986 §5.2.4 would remove it and change the base).
fn is_plain_segment(segment: &str) -> bool {
    let is_dot_segment =
        after_dot(segment).is_some_and(|rest| rest.is_empty() || after_dot(rest) == Some(""));
    !segment.is_empty() && !is_dot_segment
}

/// `text` without its leading dot, `.` or percent-encoded (`%2e`, `%2E`), if it has one.
/// Read in place: every id of every request and resource is checked, and decoding the
/// segment into a new string cost two allocations each time.
fn after_dot(text: &str) -> Option<&str> {
    text.strip_prefix('.').or_else(|| {
        text.get(..3)
            .filter(|escape| escape.eq_ignore_ascii_case("%2e"))
            .map(|_| &text[3..])
    })
}

/// The FHIR `id` grammar: `[A-Za-z0-9\-.]{1,64}`, except `.` and `..`, which as a URL path
/// segment would denote another resource (RFC 3986 §5.2.4).
pub fn is_valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && is_plain_segment(id)
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

/// Which absolute references name the server's own resources. An absolute reference under
/// the server's base URL is a local one; under another base it names another server's
/// resource (FHIR R4 references.html §2.3.0), which belongs to none of this server's
/// compartments.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Locality<'a> {
    /// The server's base URLs, without a trailing `/`; empty when they are unknown.
    bases: &'a [String],
}

impl<'a> Locality<'a> {
    /// The base URL is unknown: an absolute `http(s)` reference is read by its `Type/id`
    /// tail, whatever its base ([`parse_reference`]).
    pub const ANY_BASE: Locality<'static> = Locality { bases: &[] };

    /// The server at `bases` (without trailing `/`); no bases is [`Locality::ANY_BASE`].
    pub fn of(bases: &'a [String]) -> Self {
        Locality { bases }
    }

    /// The local `Type/id` a literal reference names: a relative one, or an absolute one
    /// under one of the bases (compared exactly: another spelling of the base is refused,
    /// never guessed). `None` for anything else, a foreign absolute reference included.
    pub fn resolve<'r>(&self, reference: &'r str) -> Option<(&'r str, &'r str)> {
        if self.bases.is_empty() || !reference.contains("://") {
            return parse_reference(reference);
        }
        parse_reference(self.local_path(reference)?)
    }

    /// The part of an absolute `reference` after one of the bases and its `/`, e.g.
    /// `Patient/1/_history/2`; `None` when the bases are unknown or none of them is its base.
    pub fn local_path<'r>(&self, reference: &'r str) -> Option<&'r str> {
        let path = self
            .bases
            .iter()
            .find_map(|base| reference.strip_prefix(base.as_str())?.strip_prefix('/'))?;
        (!path.contains(':')).then_some(path)
    }

    /// Whether the base URLs are known.
    pub fn knows_bases(&self) -> bool {
        !self.bases.is_empty()
    }
}

/// The id of a `Patient` (or of a `Type/id` reference of `expected_type`), accepting a bare
/// id too: `123`, `Patient/123`, or an absolute URL ending in `/Patient/123`. A bare id must
/// follow the FHIR id grammar (`[A-Za-z0-9\-.]{1,64}`), so `123,456` or `a|b` is `None`.
pub fn id_of<'a>(expected_type: &str, text: &'a str) -> Option<&'a str> {
    if !text.contains('/') {
        return is_valid_id(text).then_some(text);
    }
    match parse_reference(text) {
        Some((resource_type, id)) if resource_type == expected_type => Some(id),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
