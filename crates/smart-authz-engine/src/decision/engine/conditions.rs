//! Searches a FHIR server runs on the token's behalf while it writes: the conditional
//! references of a resource (`"subject": {"reference": "Patient?identifier=x"}`, FHIR R4
//! http.html §3.1.0.11.2) and the `ifNoneExist` of a conditional create (§3.1.0.8.1).
//!
//! The server resolves them before the engine's constraints could apply, so the write
//! stands only when the token may run that search with no constraint left for the server
//! to apply (docs/semantics.md, part 2, Requests): a patient-scoped token cannot have a
//! conditional reference resolved to whichever patient matches.

use serde_json::Value;

use super::Engine;
use crate::decision::{Decision, Grant, Reason};
use crate::fhir::{FhirRequest, Interaction, Resource, parse_request_line};
use crate::smart::TokenContext;

impl Engine {
    /// `decision` for a write, denied when a conditional reference of `proposed` is a search
    /// the token may not run unconstrained.
    pub(super) fn check_conditional_references(
        &self,
        token: &TokenContext,
        request: &FhirRequest,
        proposed: Option<&Resource>,
        decision: Decision,
    ) -> Decision {
        let writes = matches!(
            request.interaction,
            Interaction::Create | Interaction::Update | Interaction::Patch
        );
        let Some(Resource::Json(resource)) = proposed.filter(|_| writes && decision.is_allowed())
        else {
            return decision;
        };
        for search in conditional_references(resource) {
            if let Some(refusal) = self.condition_refusal(token, "conditional reference", search) {
                return refusal;
            }
        }
        decision
    }

    /// `decision` for a patch, denied when its document (JSON Patch, RFC 6902, or a FHIRPath
    /// Patch's `Parameters`) writes a conditional reference the token may not run
    /// unconstrained. A server resolves one when it stores the patched resource (HAPI's
    /// inline match URLs), before any constraint could apply. The resource as patched is not
    /// known here, so what counts is read as a server would: any `reference` member, or JSON
    /// Patch `value` written at a `.../reference` path, that holds a `?`; and any other
    /// string that reads as `[base/]Type[/]?query` with the type in any case (HAPI drops the
    /// slashes and looks the type up without case), wherever it stands (a FHIRPath Patch's
    /// `valueString`).
    pub fn check_patch_document(
        &self,
        token: &TokenContext,
        request: &FhirRequest,
        document: &Value,
        decision: Decision,
    ) -> Decision {
        if request.interaction != Interaction::Patch || !decision.is_allowed() {
            return decision;
        }
        let types = self.fhir_version().tables().resource_types;
        // Each value, and whether it stands where a reference's text does.
        let mut pending = vec![(document, false)];
        while let Some((value, a_reference)) = pending.pop() {
            match value {
                Value::String(text)
                    if text.contains('?') && (a_reference || reads_as_search(text, types)) =>
                {
                    if let Some(refusal) =
                        self.condition_refusal(token, "conditional reference", text)
                    {
                        return refusal;
                    }
                }
                Value::Object(object) => {
                    let writes_a_reference = object
                        .get("path")
                        .and_then(Value::as_str)
                        .is_some_and(|path| path.ends_with("/reference"));
                    pending.extend(object.iter().map(|(name, member)| {
                        let a_reference =
                            name == "reference" || (writes_a_reference && name == "value");
                        (member, a_reference)
                    }));
                }
                Value::Array(items) => pending.extend(items.iter().map(|item| (item, false))),
                _ => {}
            }
        }
        decision
    }

    /// A deny when the token may not run `search` (`Type?query`) with no constraint left,
    /// `None` when it may. `what` names the condition in the message.
    pub fn condition_refusal(
        &self,
        token: &TokenContext,
        what: &str,
        search: &str,
    ) -> Option<Decision> {
        let request = match parse_request_line("GET", search) {
            Ok(request) if request.interaction == Interaction::SearchType => request,
            Ok(_) => {
                return Some(Decision::deny(
                    Reason::UnsupportedRequest,
                    format!("denied: {what} {search:?} is not a search of one type"),
                ));
            }
            Err(error) => {
                return Some(Decision::deny(
                    Reason::UnsupportedRequest,
                    format!("denied: {what} {search:?}: {error}"),
                ));
            }
        };
        let decision = self.decide(token, &request, None, None);
        if !decision.is_allowed() {
            return Some(Decision::deny(
                decision.reason,
                format!(
                    "denied: {what} {search:?}: {}",
                    decision.message.trim_start_matches("denied: ")
                ),
            ));
        }
        if !decision.grants.iter().any(Grant::is_unconstrained) {
            return Some(Decision::deny(
                Reason::OutsideCompartment,
                format!(
                    "denied: {what} {search:?} is a search the server would run before any constraint of these scopes could apply"
                ),
            ));
        }
        None
    }
}

/// Every `reference` value of the form `Type?query` anywhere in `resource`.
fn conditional_references(resource: &Value) -> Vec<&str> {
    let mut found = Vec::new();
    let mut pending = vec![resource];
    while let Some(value) = pending.pop() {
        match value {
            Value::Object(object) => {
                if let Some(Value::String(reference)) = object.get("reference")
                    && is_conditional(reference)
                {
                    found.push(reference.as_str());
                }
                pending.extend(object.values());
            }
            Value::Array(items) => pending.extend(items),
            _ => {}
        }
    }
    found
}

/// Whether `text` reads as a search of a resource type, to a server that looks the type up
/// without case and past slashes (`Patient?identifier=x`, `patient/?identifier=x`,
/// `https://host/fhir/Patient?identifier=x`).
fn reads_as_search(text: &str, types: &[&str]) -> bool {
    text.split_once('?').is_some_and(|(path, _)| {
        path.rsplit('/')
            .find(|segment| !segment.is_empty())
            .is_some_and(|last| types.iter().any(|name| name.eq_ignore_ascii_case(last)))
    })
}

/// A reference holding a query (`Type?query`, `/Type?query`, `http://host/fhir/Type?query`):
/// servers read every such reference as a search, and no literal reference has a query.
fn is_conditional(reference: &str) -> bool {
    reference.contains('?')
}
