//! Batches and transactions (FHIR R4 http.html §3.1.0.11), decided entry by entry
//! (docs/semantics.md §2). A transaction is all or nothing, so it is allowed only when every
//! entry is; a batch's entries stand alone, and the server must skip the denied ones.

use serde::Serialize;
use serde_json::Value;

use super::{Decision, Engine, Outcome, Reason};
use crate::fhir::{FhirRequest, Interaction, Resource, TreeMemory, parse_request_line};
use crate::smart::TokenContext;

/// Whether the entries stand alone or succeed together.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BundleKind {
    Batch,
    Transaction,
}

/// One entry: its request (or why it could not be read), and its resource versions.
#[derive(Clone, Debug, PartialEq)]
pub struct BundleEntry {
    pub request: Result<FhirRequest, String>,
    pub stored: Option<Resource>,
    pub proposed: Option<Resource>,
    /// The `ifNoneExist` query of a conditional create (`identifier=x`): a search the server
    /// runs for the token before it creates.
    pub if_none_exist: Option<String>,
    /// A PATCH entry's document: the JSON Patch its Binary holds, decoded, or its FHIRPath
    /// Patch `Parameters` ([`Engine::check_patch_document`]).
    pub patch: Option<Value>,
}

/// The decision on every entry, and on the bundle as a whole.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BundleDecision {
    pub kind: BundleKind,
    /// Allow only when every entry is allowed.
    #[serde(rename = "decision")]
    pub outcome: Outcome,
    pub reason: Reason,
    pub message: String,
    pub entries: Vec<Decision>,
}

impl BundleDecision {
    /// The Bundle's answer from its entries' decisions, in order: allowed when every entry
    /// is, denied with the first denied entry's reason otherwise, and denied when there is no
    /// entry at all.
    pub fn of(kind: BundleKind, decisions: Vec<Decision>) -> Self {
        let first_denied = decisions.iter().position(|decision| !decision.is_allowed());
        let (outcome, reason, message) = match (first_denied, decisions.is_empty()) {
            (_, true) => (
                Outcome::Deny,
                Reason::UnsupportedRequest,
                "denied: the bundle has no entries".to_owned(),
            ),
            (None, false) => (
                Outcome::Allow,
                Reason::Granted,
                format!("allowed: all {} entries", decisions.len()),
            ),
            (Some(index), false) => (
                Outcome::Deny,
                decisions[index].reason,
                format!(
                    "denied: entry {index}: {}",
                    decisions[index].message.trim_start_matches("denied: ")
                ),
            ),
        };
        BundleDecision {
            kind,
            outcome,
            reason,
            message,
            entries: decisions,
        }
    }

    /// True only for an allow.
    pub fn is_allowed(&self) -> bool {
        self.outcome == Outcome::Allow
    }
}

/// Why a JSON document is not a batch or transaction Bundle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    #[error("not a Bundle")]
    NotABundle,
    #[error("Bundle.type is {0:?}, not batch or transaction")]
    WrongType(String),
    /// `entry` given as anything but an array: a server that reads a single object as a
    /// one-entry list would run an entry nobody decided.
    #[error("Bundle.entry must be an array")]
    EntryNotAnArray,
}

/// Reads the entries of a batch or transaction Bundle: each `request.method` and relative
/// `request.url`, with `resource` as the new version.
pub fn bundle_entries(bundle: Value) -> Result<(BundleKind, Vec<BundleEntry>), BundleError> {
    bundle_entries_within(bundle, &mut |_| true)
}

/// [`bundle_entries`], the tree of each JSON Patch a PATCH entry's Binary holds in base64
/// asked of `memory` as it is parsed ([`crate::fhir::parse_strict_within`]): its decoded
/// bytes parse into a tree no count of the Bundle's own saw. The entries' resources are
/// moved out of `bundle`, not copied.
pub fn bundle_entries_within(
    bundle: Value,
    memory: &mut dyn TreeMemory,
) -> Result<(BundleKind, Vec<BundleEntry>), BundleError> {
    let (kind, entries) = open_bundle(bundle)?;
    let entries = entries
        .into_iter()
        .map(|entry| read_entry(entry, memory))
        .collect();
    Ok((kind, entries))
}

/// A batch or transaction Bundle's kind and its entries as JSON, each to be read with
/// [`read_entry`]: [`bundle_entries_within`] in two steps, for a caller that reads
/// thousands of entries and pauses between them.
pub fn open_bundle(bundle: Value) -> Result<(BundleKind, Vec<Value>), BundleError> {
    let Value::Object(mut bundle) = bundle else {
        return Err(BundleError::NotABundle);
    };
    if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err(BundleError::NotABundle);
    }
    let kind = match bundle.get("type").and_then(Value::as_str) {
        Some("batch") => BundleKind::Batch,
        Some("transaction") => BundleKind::Transaction,
        other => return Err(BundleError::WrongType(other.unwrap_or_default().to_owned())),
    };
    // No `entry` is an empty Bundle, which the engine denies; `null`, an object or any other
    // value is refused rather than guessed at.
    match bundle.remove("entry") {
        None => Ok((kind, Vec::new())),
        Some(Value::Array(entries)) => Ok((kind, entries)),
        Some(_) => Err(BundleError::EntryNotAnArray),
    }
}

/// One entry of a Bundle [`open_bundle`] opened, as [`bundle_entries_within`] reads it.
pub fn read_entry(mut entry: Value, memory: &mut dyn TreeMemory) -> BundleEntry {
    // Taken out whole, so the entry's other members are read from what is left.
    let resource = entry
        .as_object_mut()
        .and_then(|entry| entry.remove("resource"));
    let entry = &entry;
    let request = entry.get("request");
    let method = request
        .and_then(|request| request.get("method"))
        .and_then(Value::as_str);
    let url = request
        .and_then(|request| request.get("url"))
        .and_then(Value::as_str);
    // An entry url is read exactly as a request line of the `http` form: relative to the
    // FHIR base, with URLs allowed in its query (token systems, conditional references).
    let if_none_exist = request.and_then(|request| request.get("ifNoneExist"));
    let request = match (method, url, if_none_exist) {
        (_, _, Some(condition)) if !condition.is_string() => {
            Err("entry request.ifNoneExist must be a string".to_owned())
        }
        (Some(method), Some(url), _) => {
            parse_request_line(method, url).map_err(|error| format!("entry url {url:?}: {error}"))
        }
        _ => Err("entry has no request.method and request.url".to_owned()),
    };
    let request = request.and_then(|request| {
        check_full_url(entry.get("fullUrl"), &request)?;
        Ok(request)
    });
    // A PATCH entry's `resource` is the patch (FHIR R4 http.html §3.1.0.11.1): a Binary
    // holding a JSON Patch, or Parameters for FHIRPath Patch, never the version it makes,
    // which stays unseen as for a PATCH request. Another resource there is read no single way.
    let is_patch = request
        .as_ref()
        .is_ok_and(|request| request.interaction == Interaction::Patch);
    if is_patch {
        let (request, patch) = match patch_document(resource, memory) {
            Ok(document) => (request, Some(document)),
            Err(error) => (Err(error), None),
        };
        return BundleEntry {
            request,
            stored: None,
            proposed: None,
            if_none_exist: if_none_exist.and_then(Value::as_str).map(str::to_owned),
            patch,
        };
    }
    // A `resource` the entry holds is the resource the server will write: one that cannot
    // be read as a resource (an array, `null`, no `resourceType`) makes the entry unreadable,
    // never a write without a body.
    let proposed = match resource.map(Resource::from_json) {
        None => None,
        Some(Ok(resource)) => Some(resource),
        Some(Err(error)) => {
            return BundleEntry {
                request: Err(format!("entry resource: {error}")),
                stored: None,
                proposed: None,
                if_none_exist: None,
                patch: None,
            };
        }
    };
    BundleEntry {
        request,
        stored: None,
        proposed,
        if_none_exist: if_none_exist.and_then(Value::as_str).map(str::to_owned),
        patch: None,
    }
}

/// An entry's `fullUrl` names the resource the entry writes, or is a placeholder
/// (`urn:uuid:`, `urn:oid:`). In a transaction a server rewrites every reference to a
/// non-placeholder `fullUrl` into the id it gives the new resource (HAPI's id substitution),
/// so a create whose `fullUrl` were `Patient/123` would turn the other entries'
/// `Patient/123`, already judged, into references to itself: refused.
fn check_full_url(full_url: Option<&Value>, request: &FhirRequest) -> Result<(), String> {
    let Some(full_url) = full_url else {
        return Ok(());
    };
    let Some(full_url) = full_url.as_str() else {
        return Err("entry fullUrl must be a string".to_owned());
    };
    if full_url.starts_with("urn:uuid:") || full_url.starts_with("urn:oid:") {
        return Ok(());
    }
    let names_own =
        crate::fhir::reference::parse_reference(full_url).is_some_and(|(resource_type, id)| {
            request.resource_type.as_deref() == Some(resource_type)
                && request.id.as_deref().is_none_or(|own| own == id)
        });
    if names_own {
        Ok(())
    } else {
        Err(format!(
            "entry fullUrl {full_url:?} names another resource than the entry's own: a server rewrites the transaction's references to it"
        ))
    }
}

/// The document of a PATCH entry's `resource`: the FHIRPath Patch `Parameters` as they
/// are, or the JSON Patch a Binary holds in `data` (base64), read as strictly as any body.
/// An XML patch, or a Binary whose data is no JSON, cannot be read for what it writes.
fn patch_document(resource: Option<Value>, memory: &mut dyn TreeMemory) -> Result<Value, String> {
    use base64::Engine as _;
    let resource_type =
        |resource: &Value| match resource.get("resourceType").and_then(Value::as_str) {
            Some("Parameters") => Some(true),
            Some("Binary") => Some(false),
            _ => None,
        };
    let is_parameters = resource.as_ref().and_then(resource_type);
    match (is_parameters, resource) {
        (Some(true), Some(parameters)) => Ok(parameters),
        (Some(false), Some(binary)) => {
            let data = binary
                .get("data")
                .and_then(Value::as_str)
                .ok_or("a PATCH entry's Binary has no data")?;
            // base64Binary may wrap its lines (FHIR datatypes.html#base64Binary).
            let data: String = data
                .chars()
                .filter(|character| !character.is_ascii_whitespace())
                .collect();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(data)
                .map_err(|error| format!("a PATCH entry's Binary data is not base64: {error}"))?;
            crate::fhir::parse_strict_within(&bytes, memory)
                .map_err(|error| format!("a PATCH entry's Binary is no JSON Patch: {error}"))
        }
        _ => Err(
            "a PATCH entry's resource is its patch: a Binary (JSON Patch) or Parameters (FHIRPath Patch)"
                .to_owned(),
        ),
    }
}

impl Engine {
    /// A conditional create's `ifNoneExist` (a Bundle entry's, or the `If-None-Exist`
    /// header of a single create) is a search of the created type the server runs for the
    /// token (FHIR R4 http.html §3.1.0.8.1): `decision` stands only when that search may run
    /// unconstrained.
    pub fn check_if_none_exist(
        &self,
        token: &TokenContext,
        request: &FhirRequest,
        query: &str,
        decision: Decision,
    ) -> Decision {
        let resource_type = match (request.interaction, request.resource_type.as_deref()) {
            (Interaction::Create, Some(resource_type)) => resource_type,
            _ => {
                return Decision::deny(
                    Reason::UnsupportedRequest,
                    "denied: ifNoneExist belongs to a create",
                );
            }
        };
        let search = format!("{resource_type}?{}", query.trim_start_matches('?'));
        self.condition_refusal(token, "ifNoneExist", &search)
            .unwrap_or(decision)
    }

    /// Decides every entry with the same token.
    pub fn decide_bundle(
        &self,
        token: &TokenContext,
        kind: BundleKind,
        entries: &[BundleEntry],
    ) -> BundleDecision {
        let decisions = entries
            .iter()
            .map(|entry| self.decide_entry(token, entry))
            .collect();
        BundleDecision::of(kind, decisions)
    }

    /// Decides one entry of a batch or transaction, as [`Engine::decide_bundle`] does: a
    /// caller that decides thousands can pause between them, and conclude with
    /// [`BundleDecision::of`].
    pub fn decide_entry(&self, token: &TokenContext, entry: &BundleEntry) -> Decision {
        match &entry.request {
            Err(error) => Decision::deny(Reason::UnsupportedRequest, format!("denied: {error}")),
            Ok(request)
                if matches!(
                    request.interaction,
                    Interaction::Batch | Interaction::Transaction
                ) =>
            {
                Decision::deny(
                    Reason::UnsupportedRequest,
                    "denied: a bundle entry cannot be another batch",
                )
            }
            // A `POST _search` entry's parameters are not in its `url` (FHIR R4
            // http.html §3.1.0.7.1), and an entry carries no form body to read them from.
            Ok(request) if request.has_unread_search_body() => Decision::deny(
                Reason::UnsupportedRequest,
                "denied: a POST search entry is decided on parameters it does not carry: search with GET",
            ),
            Ok(request) => {
                let decision = self.decide(
                    token,
                    request,
                    entry.stored.as_ref(),
                    entry.proposed.as_ref(),
                );
                let decision = match &entry.if_none_exist {
                    Some(query) if decision.is_allowed() => {
                        self.check_if_none_exist(token, request, query, decision)
                    }
                    _ => decision,
                };
                match &entry.patch {
                    Some(document) => self.check_patch_document(token, request, document, decision),
                    None => decision,
                }
            }
        }
    }
}
