//! Building and reporting grants: one per granting scope, the irrelevant ones dropped.

use std::fmt::Write as _;

use super::Candidate;
use crate::decision::{Grant, Obligation};
use crate::fhir::FhirRequest;
use crate::smart::ScopeContext;

pub(super) fn new_grant(candidate: &Candidate<'_>, resource_types: Vec<String>) -> Grant {
    Grant {
        scope: candidate.text.to_owned(),
        context: candidate.scope.context,
        compartment: None,
        compartment_params: Vec::new(),
        exclude_other_patients_via: Vec::new(),
        answer_must_be_read: false,
        filters: Vec::new(),
        resource_types,
        obligation: match candidate.scope.context {
            ScopeContext::Patient => Obligation::None,
            ScopeContext::User => Obligation::UserPermissions,
            ScopeContext::System => Obligation::ClientPolicy,
        },
    }
}

/// Drops every grant that another grant makes irrelevant by being strictly less constrained
/// (docs/semantics.md §3, §4: `system/*.rs` beside `patient/*.rs`, a plain scope beside a
/// granular one). `user/` grants carry the user's permissions as a constraint.
pub(super) fn drop_subsumed(grants: Vec<Grant>) -> Vec<Grant> {
    if grants.len() < 2 {
        return grants;
    }
    let at_most_as_constrained = |a: &Grant, b: &Grant| {
        (a.compartment.is_none() || a.compartment == b.compartment)
            && a.exclude_other_patients_via
                .iter()
                .all(|param| b.exclude_other_patients_via.contains(param))
            && (!a.answer_must_be_read || b.answer_must_be_read)
            && a.filters.iter().all(|item| b.filters.contains(item))
            && (a.obligation != Obligation::UserPermissions
                || b.obligation == Obligation::UserPermissions)
            && (a.resource_types.iter().any(|t| t == "*")
                || b.resource_types
                    .iter()
                    .all(|t| a.resource_types.contains(t)))
    };
    let keep: Vec<bool> = grants
        .iter()
        .map(|b| {
            !grants
                .iter()
                .any(|a| at_most_as_constrained(a, b) && !at_most_as_constrained(b, a))
        })
        .collect();
    grants
        .into_iter()
        .zip(keep)
        .filter_map(|(grant, keep)| keep.then_some(grant))
        .collect()
}

/// One sentence naming the interaction, the target and the granting scopes. Written straight
/// into one buffer: this runs on every allow.
pub(super) fn allow_message(request: &FhirRequest, grants: &[Grant]) -> String {
    // The fixed words, the type and the scopes: one allocation, however long the scopes.
    let scopes: usize = grants.iter().map(|grant| grant.scope.len() + 4).sum();
    let mut message = String::with_capacity(112 + scopes);
    let _ = write!(message, "allowed: {} ", request.interaction);
    match (&request.resource_type, &request.operation) {
        (_, Some(operation)) => {
            message.push('$');
            message.push_str(operation);
        }
        (Some(resource_type), None) => message.push_str(resource_type),
        (None, None) => message.push_str("all types"),
    }
    if grants.is_empty() {
        message.push_str(" needs only a valid token");
        return message;
    }
    message.push_str(" by ");
    for (index, grant) in grants.iter().enumerate() {
        if index > 0 {
            message.push_str(" or ");
        }
        message.push_str(&grant.scope);
    }
    if grants
        .iter()
        .any(|grant| grant.compartment.is_some() || !grant.filters.is_empty())
    {
        message.push_str("; the server must apply the constraints");
    }
    message
}
