//! The decision engine: given a token's context and a FHIR request, allow or deny, say why,
//! and list the constraints the FHIR server must still apply (docs/semantics.md).
//!
//! Pure and synchronous: no I/O, no clock, no async. A deny is a [`Decision`], not an error.

mod batch;
mod engine;
mod policy;
mod response;

pub use batch::{
    BundleDecision, BundleEntry, BundleError, BundleKind, bundle_entries, bundle_entries_within,
    open_bundle, read_entry,
};
pub use engine::{Engine, decide};
pub use policy::{NonCompartmentAccess, OperationRule, Policy};
pub use response::{EntryMode, EntryVerdict, FilteredResponse, ResponseError};

use serde::Serialize;

use crate::smart::{FilterItem, ScopeContext};

/// Allow or deny. Deny comes first so that no default value means allow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    #[default]
    Deny,
    Allow,
}

impl Outcome {
    /// `allow` or `deny`, as in the audit log, metrics and Envoy's metadata.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allow => "allow",
            Outcome::Deny => "deny",
        }
    }
}

/// The machine-readable cause of a decision.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Never produced by the engine; the zero value of the API.
    #[default]
    Unspecified,
    /// At least one scope grants the request.
    Granted,
    /// `metadata` and `.well-known/smart-configuration` need no token (§2).
    PublicEndpoint,
    /// No scope grants this interaction on this type.
    NoMatchingScope,
    /// A `patient/` scope would grant it, but the token has no patient context.
    MissingPatientContext,
    /// A `user/` scope would grant it, but the token has no `fhirUser`.
    MissingUserIdentity,
    /// The resource, or the search, is outside the patient's compartment.
    OutsideCompartment,
    /// The resource does not match any granular scope's filter, or the filter cannot be
    /// evaluated.
    FilterMismatch,
    /// The request is malformed, of an unknown type, or an operation not configured.
    UnsupportedRequest,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Unspecified => "unspecified",
            Reason::Granted => "granted",
            Reason::PublicEndpoint => "public_endpoint",
            Reason::NoMatchingScope => "no_matching_scope",
            Reason::MissingPatientContext => "missing_patient_context",
            Reason::MissingUserIdentity => "missing_user_identity",
            Reason::OutsideCompartment => "outside_compartment",
            Reason::FilterMismatch => "filter_mismatch",
            Reason::UnsupportedRequest => "unsupported_request",
        }
    }
}

/// What the FHIR server must still do for a grant beyond the constraints listed in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Obligation {
    /// Nothing: the listed constraints are the whole rule (`patient/` scopes).
    None,
    /// Apply the permissions of the token's `fhirUser` (`user/` scopes, §3.0.2.9).
    UserPermissions,
    /// Apply the client's pre-authorised policy (`system/` scopes, §3.0.2.10).
    ClientPolicy,
}

/// One scope that grants the request, and what the server must still enforce for it. The
/// grants of a decision are alternatives: satisfying any one is enough.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Grant {
    /// The scope as written in the token.
    pub scope: String,
    pub context: ScopeContext,
    /// The compartment results must be limited to, e.g. `Patient/123`, when the engine could
    /// not verify membership itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compartment: Option<String>,
    /// The search parameters that link the type to the compartment (e.g. `subject`,
    /// `performer` for Observation), for the server to build the compartment filter.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub compartment_params: Vec<String>,
    /// Under a `patient/` scope, the reference parameters through which a resource must not
    /// point to a patient other than the one in context, when the engine could not check it
    /// itself: for a type never in the Patient compartment (e.g. R4 Device), what a result may
    /// not name; for a write decided without its stored or its new version, what the
    /// resource, as stored or as written, may not name (its compartment parameters; `link`
    /// for a Patient, whose own record's stored links are exempt), §3.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exclude_other_patients_via: Vec<String>,
    /// Under a `patient/` scope on a type never in the Patient compartment that has no
    /// search parameter pointing to a Patient (Binary, Bundle), when the service did not see
    /// the resource: whether it is another patient's shows only in the references it holds (a
    /// Binary's `securityContext`, a Bundle's entries), so each resource of the answer must be
    /// read for one before it goes back (ext_proc, `FilterResources`), §3.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub answer_must_be_read: bool,
    /// Granular filters still to apply: AND of the items, OR inside an item's values.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<FilterItem>,
    /// The resource types this grant covers for the request (`*` for all).
    pub resource_types: Vec<String>,
    pub obligation: Obligation,
}

impl Grant {
    /// Whether the grant leaves the server nothing to enforce on a resource: no compartment,
    /// no filter, no patient to exclude (its obligation is the server's, and unknowable here).
    pub fn is_unconstrained(&self) -> bool {
        self.compartment.is_none()
            && self.filters.is_empty()
            && self.exclude_other_patients_via.is_empty()
            && !self.answer_must_be_read
    }
}

/// A granted scope that played no part in the decision, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IgnoredScope {
    pub scope: String,
    pub reason: String,
}

/// For searches with `_include` / `_revinclude`: included resources must pass the same
/// decision as a read of them (docs/semantics.md §3).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IncludedResources {
    /// Types some scope can read (`*` for all); others must be left out of the bundle.
    pub readable_types: Vec<String>,
}

/// The engine's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Decision {
    #[serde(rename = "decision")]
    pub outcome: Outcome,
    pub reason: Reason,
    /// One human sentence: what was allowed under which scope, or why not.
    pub message: String,
    pub grants: Vec<Grant>,
    pub ignored_scopes: Vec<IgnoredScope>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub included_resources: Option<IncludedResources>,
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        self.outcome == Outcome::Allow
    }

    /// An allow that leaves the enforcement point nothing to apply: no grant (a public
    /// endpoint, a valid token enough), or a grant without compartment, filter, exclusion
    /// or obligation, and no `_include` types to hold the answer to. What a caller that
    /// reads a yes or a no alone, and applies nothing, may act on.
    pub fn is_allowed_outright(&self) -> bool {
        self.is_allowed()
            && self.included_resources.is_none()
            && (self.grants.is_empty()
                || self
                    .grants
                    .iter()
                    .any(|grant| grant.is_unconstrained() && grant.obligation == Obligation::None))
    }

    /// An allow each of whose grants leaves a constraint on the resource itself to the
    /// server (a compartment, a filter, another patient to exclude, an answer to read); an
    /// obligation alone (the user's permissions, the client's policy) is not one.
    pub fn is_constrained_allow(&self) -> bool {
        self.is_allowed()
            && !self.grants.is_empty()
            && !self.grants.iter().any(Grant::is_unconstrained)
    }

    /// The allow of a public endpoint (`metadata`, `.well-known/smart-configuration`).
    pub fn public_endpoint() -> Self {
        Decision {
            outcome: Outcome::Allow,
            reason: Reason::PublicEndpoint,
            message: "allowed: public endpoint, no token needed".to_owned(),
            grants: Vec::new(),
            ignored_scopes: Vec::new(),
            included_resources: None,
        }
    }

    /// A deny with no grants.
    pub fn deny(reason: Reason, message: impl Into<String>) -> Self {
        Decision {
            outcome: Outcome::Deny,
            reason,
            message: message.into(),
            grants: Vec::new(),
            ignored_scopes: Vec::new(),
            included_resources: None,
        }
    }
}

#[cfg(test)]
mod tests;
