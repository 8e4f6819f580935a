//! Enforcement on the way back: what a FHIR server answered, judged before it reaches the
//! app (docs/response-filtering.md).
//!
//! An allowed search, history or `_include` still carries constraints the server must apply
//! (the compartment `Patient/123`, granular filters, the types readable through includes),
//! and a server that gets one wrong leaks another patient's data. Here every resource of the
//! answer is judged as a read of it would be, with the resource as the stored version, so
//! the compartment and the filters are checked by the engine itself (a match of a search of
//! its type may be granted by `s` as well as `r`, [`Engine::decide_search_match`]):
//! - a Bundle (searchset, history, an operation's answer) loses the entries that fail;
//!   `total` is removed when any did (the count would tell how many resources of others
//!   matched), or when it is not the count of the matches shown (a page, `_summary=count`,
//!   none shown), and a searchset gains an `OperationOutcome` entry with `search.mode =
//!   outcome` saying that entries were withheld (other Bundle types may not carry `search`,
//!   FHIR R4 bundle invariant bdl-2);
//! - the answer to a batch or transaction keeps one entry per request entry, in order: one
//!   that fails keeps its status and location and gets a `suppressed` outcome instead of
//!   its resource;
//! - a single resource that fails denies the whole answer;
//! - an `OperationOutcome` answer, or an entry in `outcome` mode, is the server's own
//!   message and passes, unless it carries `contained` resources;
//! - whatever cannot be judged is dropped: an entry with no resource (outside batch and
//!   transaction answers), a resource without type or id, a Bundle nested in an entry.
//!
//! An entry is kept only when the read is allowed under a grant left with nothing to
//! enforce: with the resource at hand the engine verifies compartments and filters, so a
//! grant still carrying one means the engine could not, and that is a drop.

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::{Decision, Engine, Grant, Outcome, Reason};
use crate::fhir::{FhirRequest, Interaction, Resource};
use crate::smart::{Permission, ScopeContext, TokenContext};

/// Why a response cannot be filtered: never an allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    #[error("the response is not a JSON object")]
    NotAnObject,
    #[error("the response has no resourceType")]
    MissingResourceType,
    /// A single object where an array belongs: a reader that takes it as a one-entry list
    /// would show an entry nobody judged.
    #[error("Bundle.entry must be an array")]
    EntryNotAnArray,
}

/// The `search.mode` of a Bundle entry (FHIR R4 bundle.html, SearchEntryMode).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryMode {
    /// A match of the search, or an entry with no (or an unknown) mode.
    Match,
    /// Included by `_include` / `_revinclude`.
    Include,
    /// The server's `OperationOutcome` about the search.
    Outcome,
}

/// The verdict on one entry (or on the single resource of the answer).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EntryVerdict {
    /// Position in the answer's `entry` array (0 for a single resource).
    pub index: usize,
    /// `Type/id` of the resource, when it has both.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    pub mode: EntryMode,
    pub kept: bool,
    /// `Granted` for a kept entry; for a dropped one, why a read of it is denied.
    pub reason: Reason,
    pub message: String,
}

/// The answer as it may go back to the app.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FilteredResponse {
    /// Allow: `body` may be returned. Deny: nothing of the answer may.
    #[serde(rename = "decision")]
    pub outcome: Outcome,
    pub reason: Reason,
    pub message: String,
    /// False when the request's grant needs no filtering (every resource it can return is
    /// readable without constraint): the answer passes unread.
    pub filtered: bool,
    /// One verdict per entry of a Bundle, in order; one for a single resource.
    pub entries: Vec<EntryVerdict>,
    /// Entries withheld: removed, or in a batch's or transaction's answer replaced by their
    /// status and a `suppressed` outcome.
    pub withheld: usize,
    /// Whether `body` differs from the answer as sent: entries withheld, or a `total` it
    /// could not vouch for removed.
    pub rewritten: bool,
    /// The answer without the withheld entries' resources; `Null` on a deny.
    pub body: Value,
    /// For a Bundle, where each entry of `body` comes from: the position of the answer's
    /// entry it is, unchanged, or `None` for one the filter wrote (a status, an outcome).
    /// Lets the answer be written with the server's own text of what it kept
    /// ([`crate::fhir::to_fhir_json_keeping`]).
    #[serde(skip)]
    pub entry_sources: Vec<Option<usize>>,
}

impl FilteredResponse {
    pub fn is_allowed(&self) -> bool {
        self.outcome == Outcome::Allow
    }

    /// Whether `body` differs from the answer (rewritten, or denied).
    pub fn changed(&self) -> bool {
        self.rewritten || !self.is_allowed()
    }

    fn denied(reason: Reason, message: String, entries: Vec<EntryVerdict>) -> Self {
        FilteredResponse {
            outcome: Outcome::Deny,
            reason,
            message,
            filtered: true,
            entries,
            withheld: 0,
            rewritten: true,
            body: Value::Null,
            entry_sources: Vec::new(),
        }
    }
}

/// The resources a search may return as its matches, which `s` grants as well as `r`
/// ([`Engine::decide_search_match`]): of the types it searched, and, when it brings in
/// others (`_include`...), only entries the server marked `match`, as an entry without a
/// mode may be an included one.
struct SearchMatches<'r> {
    /// The searched types; empty: any (a search of every type without `_type`).
    types: Vec<&'r str>,
    brings_other_types: bool,
}

impl<'r> SearchMatches<'r> {
    fn of(request: &'r FhirRequest) -> Option<Self> {
        if !request.interaction.is_search() {
            return None;
        }
        let types = match request.resource_type.as_deref() {
            Some(resource_type) if resource_type != "*" => vec![resource_type],
            _ => request
                .params
                .iter()
                .filter(|param| param.name == "_type")
                .flat_map(|param| param.value.split(','))
                .collect(),
        };
        Some(SearchMatches {
            types,
            // An unread `POST` body may hold an `_include` as well.
            brings_other_types: brings_other_types(request) || request.has_unread_search_body(),
        })
    }

    fn admits(&self, resource_type: &str, marked_match: bool) -> bool {
        (marked_match || !self.brings_other_types)
            && (self.types.is_empty() || self.types.contains(&resource_type))
    }
}

/// Removes the Bundle's links of relation `last`; whether there were any.
fn remove_last_link(bundle: &mut Map<String, Value>) -> bool {
    let Some(Value::Array(links)) = bundle.get_mut("link") else {
        return false;
    };
    let before = links.len();
    links.retain(|link| link.get("relation").and_then(Value::as_str) != Some("last"));
    links.len() != before
}

/// Parameters that make an answer carry resources of other types than the one searched.
pub(crate) fn brings_other_types(request: &FhirRequest) -> bool {
    request.params.iter().any(|param| {
        let name = param.name.split(':').next().unwrap_or_default();
        match name {
            "_include" | "_revinclude" => true,
            // `false`, the default, asks for no contained resources.
            "_contained" => param.value != "false",
            _ => false,
        }
    })
}

impl Engine {
    /// Whether the answer to `request`, allowed by `decision` for `token`, must be read
    /// before it goes back. Not for a public endpoint, nor under a grant with nothing to
    /// enforce that covers every type the answer can carry: a `system/` or `user/` scope on
    /// all types, or any such grant on the one type of a plain read, search or history with
    /// no includes. Under a `patient/` grant a type never in the Patient compartment (Binary,
    /// Bundle, R4 Device, Practitioner...) is always read: whether such a resource is another
    /// patient's shows only in the references it holds (a Binary's `securityContext`, a
    /// Bundle's entries), which no search parameter lets the server filter by (§3).
    /// Envoy's ext_proc face asks for no body then.
    pub fn response_needs_filtering(
        &self,
        token: &TokenContext,
        request: &FhirRequest,
        decision: &Decision,
    ) -> bool {
        if decision.reason == Reason::PublicEndpoint {
            return false;
        }
        // A write was decided with its resources on the way in: its answer is judged, but
        // the request is not decided again without them.
        if !decision.is_allowed() || request.interaction.is_write() {
            return true;
        }
        let single_type = matches!(
            request.interaction,
            Interaction::Read
                | Interaction::Vread
                | Interaction::HistoryInstance
                | Interaction::SearchType
                | Interaction::HistoryType
        ) && !brings_other_types(request)
            && !request.params_in_body;
        let outside_patient_compartment = request.resource_type.as_deref().is_none_or(|name| {
            self.fhir_version()
                .patient_compartment_params(name)
                .is_none()
        });
        let covers_its_type = |grant: &Grant| {
            single_type
                && !(grant.context == ScopeContext::Patient && outside_patient_compartment)
                && grant
                    .resource_types
                    .iter()
                    .any(|covered| Some(covered.as_str()) == request.resource_type.as_deref())
        };
        let reads_every_type = |grant: &Grant| {
            grant.context != ScopeContext::Patient
                && token.scopes.resource_scopes().any(|(text, scope)| {
                    text == grant.scope
                        && scope.resource.as_str() == "*"
                        && scope.permissions.contains(Permission::Read)
                        && scope.filter.is_empty()
                })
        };
        !decision.grants.iter().any(|grant| {
            grant.is_unconstrained() && (covers_its_type(grant) || reads_every_type(grant))
        })
    }

    /// Judges the answer `response` (parsed JSON) to `request`, made with `token`, and
    /// returns what of it may go back (module documentation).
    pub fn filter_response(
        &self,
        token: &TokenContext,
        request: &FhirRequest,
        response: Value,
    ) -> Result<FilteredResponse, ResponseError> {
        let Value::Object(object) = response else {
            return Err(ResponseError::NotAnObject);
        };
        let resource_type = match object.get("resourceType").and_then(Value::as_str) {
            Some(resource_type) if !resource_type.is_empty() => resource_type.to_owned(),
            _ => return Err(ResponseError::MissingResourceType),
        };
        let is_bundle_answer = resource_type == "Bundle"
            && !(matches!(request.interaction, Interaction::Read | Interaction::Vread)
                && request.resource_type.as_deref() == Some("Bundle"));
        if is_bundle_answer && !matches!(object.get("entry"), None | Some(Value::Array(_))) {
            return Err(ResponseError::EntryNotAnArray);
        }
        if !request.interaction.is_write() {
            let decision = self.decide(token, request, None, None);
            if !decision.is_allowed() {
                let message = format!(
                    "denied: the request itself is not allowed: {}",
                    decision.message.trim_start_matches("denied: ")
                );
                return Ok(FilteredResponse::denied(
                    decision.reason,
                    message,
                    Vec::new(),
                ));
            }
            if !self.response_needs_filtering(token, request, &decision) {
                return Ok(FilteredResponse {
                    outcome: Outcome::Allow,
                    reason: decision.reason,
                    message: "allowed: the grant leaves nothing to check in the answer".to_owned(),
                    filtered: false,
                    entries: Vec::new(),
                    withheld: 0,
                    rewritten: false,
                    body: Value::Object(object),
                    entry_sources: Vec::new(),
                });
            }
        }
        if is_bundle_answer {
            let answers_a_batch = matches!(
                request.interaction,
                Interaction::Batch | Interaction::Transaction
            );
            let search = SearchMatches::of(request);
            Ok(self.filter_bundle(token, object, answers_a_batch, search.as_ref()))
        } else {
            let (resource, verdict) =
                self.judge(token, Value::Object(object), 0, EntryMode::Match, None);
            Ok(if verdict.kept {
                FilteredResponse {
                    outcome: Outcome::Allow,
                    reason: Reason::Granted,
                    message: verdict.message.clone(),
                    filtered: true,
                    entries: vec![verdict],
                    withheld: 0,
                    rewritten: false,
                    body: resource,
                    entry_sources: Vec::new(),
                }
            } else {
                let (reason, message) = (verdict.reason, verdict.message.clone());
                FilteredResponse::denied(reason, message, vec![verdict])
            })
        }
    }

    /// A Bundle answer, entry by entry. `answers_a_batch`: the request was a batch or a
    /// transaction, whose answer reports each entry's outcome in the order of the request's
    /// entries (FHIR R4 http.html#transaction-response). `search`: the request was a
    /// search, and what its matches may be.
    fn filter_bundle(
        &self,
        token: &TokenContext,
        mut bundle: Map<String, Value>,
        answers_a_batch: bool,
        search: Option<&SearchMatches<'_>>,
    ) -> FilteredResponse {
        let bundle_type = bundle
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        // Only there is an entry without a resource a status line rather than data, and a
        // withheld entry is replaced instead of removed: the app pairs answers to its
        // requests by position. A batch-response to a search is a server's mistake, read as
        // any other Bundle.
        let statuses = answers_a_batch
            && matches!(
                bundle_type.as_str(),
                "batch-response" | "transaction-response"
            );
        let entries = match bundle.remove("entry") {
            Some(Value::Array(entries)) => entries,
            _ => Vec::new(),
        };
        let mut kept = Vec::with_capacity(entries.len());
        let mut sources = Vec::with_capacity(entries.len());
        let mut verdicts = Vec::with_capacity(entries.len());
        // A status entry is kept reduced to what it may show ([`status_of`]).
        let mut statuses_reduced = false;
        // The kept matches, as `total` counts them: where the search brings other resources
        // an entry without a mode may be one of those, and is not counted.
        let brings_other_types = search.is_some_and(|search| search.brings_other_types);
        let mut shown = 0_usize;
        for (index, entry) in entries.into_iter().enumerate() {
            let status_only = statuses && entry.get("resource").is_none();
            statuses_reduced |= status_only;
            let mode = entry
                .get("search")
                .and_then(|search| search.get("mode"))
                .and_then(Value::as_str);
            let counted = mode == Some("match") || (mode.is_none() && !brings_other_types);
            let (entry, verdict) = self.judge_entry(token, entry, index, statuses, search);
            shown += usize::from(verdict.kept && counted);
            if verdict.kept {
                // Given back whole unless it was reduced to its status.
                sources.push((!status_only).then_some(index));
                kept.push(entry);
            } else if statuses {
                sources.push(None);
                kept.push(suppressed_status(&entry));
            }
            verdicts.push(verdict);
        }
        let withheld = verdicts.iter().filter(|verdict| !verdict.kept).count();
        // R5's `Bundle.issues`, the server's outcome about the whole Bundle, passes only
        // plain, as an `outcome` entry does.
        let issues_removed = bundle
            .get("issues")
            .is_some_and(|issues| !is_plain_outcome(issues))
            && bundle.remove("issues").is_some();
        // `total` counts what matched on the server, on every page: kept only when it is the
        // matches this answer shows, none withheld, and there are some. Otherwise it would
        // tell how many resources of others matched (another page, `_summary=count`, an entry
        // withheld), and a total of 0 kept where any other goes would tell whether any did.
        let vouched =
            shown > 0 && bundle.get("total").and_then(Value::as_u64) == u64::try_from(shown).ok();
        let count_hidden = withheld > 0 || !vouched;
        let total_removed = count_hidden && bundle.remove("total").is_some();
        // A `last` link's offset (`_getpagesoffset=39`) tells that count as well; `next`
        // stays, for paging, and tells only that more may follow.
        let last_removed = count_hidden && remove_last_link(&mut bundle);
        if withheld > 0 && bundle_type == "searchset" {
            sources.push(None);
            kept.push(withheld_outcome());
        }
        if !kept.is_empty() {
            bundle.insert("entry".to_owned(), Value::Array(kept));
        }
        let message = if withheld == 0 {
            format!("allowed: all {} entries may be read", verdicts.len())
        } else {
            format!(
                "allowed: {} of {} entries withheld: a read of them is denied",
                withheld,
                verdicts.len()
            )
        };
        FilteredResponse {
            outcome: Outcome::Allow,
            reason: Reason::Granted,
            message,
            filtered: true,
            entries: verdicts,
            withheld,
            rewritten: withheld > 0
                || total_removed
                || last_removed
                || issues_removed
                || statuses_reduced,
            body: Value::Object(bundle),
            entry_sources: sources,
        }
    }

    /// One Bundle entry: its resource judged, the entry given back whole.
    fn judge_entry(
        &self,
        token: &TokenContext,
        entry: Value,
        index: usize,
        statuses: bool,
        search: Option<&SearchMatches<'_>>,
    ) -> (Value, EntryVerdict) {
        let Value::Object(mut entry) = entry else {
            return (
                Value::Null,
                dropped(index, None, EntryMode::Match, "the entry is not an object"),
            );
        };
        let marked = entry
            .get("search")
            .and_then(|search| search.get("mode"))
            .and_then(Value::as_str);
        let mode = match marked {
            Some("include") => EntryMode::Include,
            Some("outcome") => EntryMode::Outcome,
            _ => EntryMode::Match,
        };
        let marked_match = marked == Some("match");
        if !entry
            .get("response")
            .and_then(|response| response.get("outcome"))
            .is_none_or(is_plain_outcome)
        {
            let message = "the entry's response.outcome is not a plain OperationOutcome";
            return (Value::Object(entry), dropped(index, None, mode, message));
        }
        let Some(resource) = entry.remove("resource") else {
            if !statuses {
                let message = "the entry carries no resource to judge";
                return (Value::Object(entry), dropped(index, None, mode, message));
            }
            let mut response = status_of(&entry);
            // A success other than the app's own creation may be about a resource the app
            // never named (HAPI's outcome of a conditional create that matched gives its
            // id): its outcome goes with its location. An error is about the app's request.
            let status = response
                .get("status")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let names_a_match = status.trim_start().starts_with('2') && !created(status);
            if let Some(outcome) = entry
                .get("response")
                .and_then(|response| response.get("outcome"))
                .filter(|_| !names_a_match)
            {
                response.insert("outcome".to_owned(), outcome.clone());
            }
            let verdict = kept(index, None, mode, "kept: an entry's status, no resource");
            return (json!({ "response": response }), verdict);
        };
        let search = search
            .filter(|_| mode == EntryMode::Match)
            .map(|search| (search, marked_match));
        let (resource, verdict) = self.judge(token, resource, index, mode, search);
        entry.insert("resource".to_owned(), resource);
        (Value::Object(entry), verdict)
    }

    /// One resource, judged as a read of it with the resource as the stored version; as a
    /// match of `search` when it is one (the flag: the server marked it `match`).
    fn judge(
        &self,
        token: &TokenContext,
        resource: Value,
        index: usize,
        mode: EntryMode,
        search: Option<(&SearchMatches<'_>, bool)>,
    ) -> (Value, EntryVerdict) {
        let resource_type = resource.get("resourceType").and_then(Value::as_str);
        let id = resource.get("id").and_then(Value::as_str);
        let reference = resource_type
            .zip(id)
            .map(|(resource_type, id)| format!("{resource_type}/{id}"));
        match resource_type {
            Some("OperationOutcome") if is_plain_outcome(&resource) => {
                return (
                    resource,
                    kept(
                        index,
                        reference,
                        mode,
                        "kept: the server's OperationOutcome",
                    ),
                );
            }
            Some("OperationOutcome") => {
                let message = "an OperationOutcome carrying contained resources is not judged";
                return (resource, dropped(index, reference, mode, message));
            }
            Some("Bundle") => {
                let message = "a Bundle inside the answer is not judged entry by entry";
                return (resource, dropped(index, reference, mode, message));
            }
            _ => {}
        }
        let (Some(resource_type), Some(id)) = (resource_type, id) else {
            let message = "the resource has no resourceType and id to judge a read by";
            return (resource, dropped(index, reference, mode, message));
        };
        if let Err(error) = Resource::check_shape(&resource) {
            let message = error.to_string();
            return (resource, dropped(index, reference, mode, &message));
        }
        let read = FhirRequest::new(Interaction::Read)
            .with_type(resource_type)
            .with_id(id);
        let by_search = search.is_some_and(|(search, marked)| search.admits(resource_type, marked));
        let stored = Resource::Json(resource);
        let decision = if by_search {
            self.decide_search_match(token, &read, &stored)
        } else {
            self.decide(token, &read, Some(&stored), None)
        };
        let resource = match stored {
            Resource::Json(resource) => resource,
            Resource::Facts(_) => Value::Null,
        };
        let verdict = if !decision.is_allowed() {
            EntryVerdict {
                index,
                reference,
                mode,
                kept: false,
                reason: decision.reason,
                message: decision.message,
            }
        } else if decision.grants.iter().any(Grant::is_unconstrained) {
            kept(index, reference, mode, &decision.message)
        } else {
            EntryVerdict {
                index,
                reference,
                mode,
                kept: false,
                reason: Reason::FilterMismatch,
                message: "denied: the grant leaves a constraint the service cannot check here"
                    .to_owned(),
            }
        };
        (resource, verdict)
    }
}

fn kept(index: usize, reference: Option<String>, mode: EntryMode, message: &str) -> EntryVerdict {
    EntryVerdict {
        index,
        reference,
        mode,
        kept: true,
        reason: Reason::Granted,
        message: message.to_owned(),
    }
}

fn dropped(index: usize, reference: Option<String>, mode: EntryMode, why: &str) -> EntryVerdict {
    EntryVerdict {
        index,
        reference,
        mode,
        kept: false,
        reason: Reason::UnsupportedRequest,
        message: format!("denied: {why}"),
    }
}

/// The server's own message, passed unread: an `OperationOutcome` whose issues hold text
/// and codes. One that carries `contained` resources could carry anyone's data.
fn is_plain_outcome(outcome: &Value) -> bool {
    outcome.get("resourceType").and_then(Value::as_str) == Some("OperationOutcome")
        && outcome.get("contained").is_none()
}

/// An `OperationOutcome` with the issue type `suppressed`: "not returned because of access
/// permission constraints" (FHIR R4 valueset-issue-type).
fn suppressed(diagnostics: &str) -> Value {
    json!({
        "resourceType": "OperationOutcome",
        "issue": [{
            "severity": "information",
            "code": "suppressed",
            "diagnostics": diagnostics,
        }],
    })
}

/// The searchset entry that says entries were withheld. It says how many to no one: for a
/// search the server ran beyond the compartment, the count would be the number of other
/// patients' resources that matched (the reason `total` goes).
fn withheld_outcome() -> Value {
    json!({
        "resource": suppressed("entries were withheld: the access token may not read them"),
        "search": { "mode": "outcome" },
    })
}

/// What stands in a batch's or transaction's answer for an entry withheld: the server's
/// `status`, which reports what it did (a write stays reported as done, so the app does not
/// send it again), and an outcome saying why there is no resource. The `location` stays
/// only on a `201 Created`, where it names what the app itself created: elsewhere it may
/// name a resource the app never named (a conditional create that found another patient's).
/// The version's `etag` and `lastModified` go with the resource.
fn suppressed_status(entry: &Value) -> Value {
    let mut response = status_of(entry.as_object().unwrap_or(&Map::new()));
    response.insert(
        "outcome".to_owned(),
        suppressed("the entry's resource was withheld: the access token may not read it"),
    );
    json!({ "response": response })
}

/// What the `response` of a batch answer's entry keeps when no resource of it is shown: its
/// status, and its `location` only when the app's own request created it (`201`). Not an
/// `etag`, `lastModified`, a `location` otherwise, or the entry's `fullUrl`: a conditional
/// create or update that found a resource (`200`) would name one the token may not read,
/// another patient's, and no resource is there to judge.
fn status_of(entry: &Map<String, Value>) -> Map<String, Value> {
    let mut response = Map::new();
    if let Some(Value::Object(original)) = entry.get("response")
        && let Some(status @ Value::String(text)) = original.get("status")
    {
        response.insert("status".to_owned(), status.clone());
        if created(text)
            && let Some(location @ Value::String(_)) = original.get("location")
        {
            response.insert("location".to_owned(), location.clone());
        }
    }
    response
}

/// Whether a batch entry's `response.status` says the app's own request created a resource.
fn created(status: &str) -> bool {
    status.trim_start().starts_with("201")
}

#[cfg(test)]
mod tests;
