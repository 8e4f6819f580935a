//! The operation table (docs/semantics.md §2 "operations"): `$everything`, `$lastn`,
//! `$stats`, `$export`, `$validate`, and operations configured in the policy.

use super::grants::new_grant;
use super::{Access, Candidate, Findings, Refusal, Session};
use crate::decision::policy::OperationRule;
use crate::decision::{Grant, Reason};
use crate::fhir::Resource;
use crate::smart::{Permission, Permissions, ResourceSelector, ScopeContext};

impl Session<'_> {
    /// The operation table of docs/semantics.md §2.
    pub(super) fn operation(&self) -> Findings {
        let request = self.request;
        let name = request.operation.as_deref().unwrap_or_default();
        let unsupported =
            |message: String| Findings::refused(Refusal::new(Reason::UnsupportedRequest, message));
        let Some(rule) = self.policy.operations.get(name) else {
            return unsupported(format!("operation ${name} is not enabled by the policy"));
        };
        let resource_type = request.resource_type.as_deref();
        // These rules read the operation's parameters (`_type` of an export, the patient a
        // `$lastn` names), which a POST carries in a body no face reads: the same request as
        // a GET would be judged on them, so the POST is refused rather than judged without.
        if request.params_in_body
            && (matches!(rule, OperationRule::TypeSearch | OperationRule::BulkExport)
                || (matches!(rule, OperationRule::Permissions { .. })
                    && request.id.is_none()
                    && rule.letters().is_some_and(|letters| !letters.writes())))
        {
            return unsupported(format!(
                "POST ${name} carries its parameters in a body this service does not read: \
                 send them in the query (GET)"
            ));
        }
        match (rule, resource_type, request.id.as_deref()) {
            (OperationRule::Deny, ..) => {
                unsupported(format!("operation ${name} is denied by the policy"))
            }
            (OperationRule::ValidToken, Some(resource_type), Some(_)) => {
                self.valid_token_on_instance(name, resource_type)
            }
            (OperationRule::ValidToken, ..) => Findings {
                valid_token_suffices: true,
                ..Findings::default()
            },
            (OperationRule::TypeSearch, Some(resource_type), None) => {
                self.one_type(resource_type, Access::Search)
            }
            (OperationRule::TypeSearch, ..) => unsupported(format!(
                "operation ${name} is allowed only on a resource type"
            )),
            (OperationRule::PatientEverything, Some("Patient"), Some(id)) => {
                self.patient_everything(id)
            }
            (OperationRule::PatientEverything, ..) => {
                unsupported(format!("operation ${name} is allowed only on Patient/[id]"))
            }
            (OperationRule::BulkExport, None, None)
            | (OperationRule::BulkExport, Some("Patient"), None)
            | (OperationRule::BulkExport, Some("Group"), Some(_)) => self.bulk_export(),
            (OperationRule::BulkExport, ..) => unsupported(format!(
                "operation ${name} is allowed only at system level, on Patient, or on Group/[id]"
            )),
            (OperationRule::Permissions { .. }, Some(resource_type), id) => {
                let Some(letters) = rule.letters() else {
                    return unsupported(format!(
                        "operation ${name} has an invalid permission rule"
                    ));
                };
                self.operation_with_letters(resource_type, id.is_some(), letters)
            }
            (OperationRule::Permissions { .. }, None, _) => {
                unsupported(format!("operation ${name} needs a resource type"))
            }
        }
    }

    /// A configured operation needing `letters` on the type. With a write letter it is judged
    /// like an update of the instance (instance level) or a create (type level), so the
    /// write rules of docs/semantics.md §3 apply; otherwise like a read or a search.
    fn operation_with_letters(
        &self,
        resource_type: &str,
        instance: bool,
        letters: Permissions,
    ) -> Findings {
        let access = match (letters.writes(), instance) {
            (true, true) => Access::Update,
            (true, false) => Access::Create,
            (false, true) => Access::Read,
            (false, false) => Access::Search,
        };
        let mut findings = Findings::default();
        for candidate in &self.candidates {
            if candidate.scope.resource.covers(resource_type)
                && candidate.scope.permissions.contains_all(letters)
            {
                findings.record(self.grant(candidate, resource_type, access));
            }
        }
        if findings.grants.is_empty() {
            self.refuse_unusable(&mut findings, resource_type, letters);
            findings.refuse(Refusal::new(
                Reason::NoMatchingScope,
                format!("no scope grants {letters} on {resource_type}"),
            ));
        }
        findings
    }

    /// A valid-token operation on an instance: `$validate` there
    /// (`Observation/o1/$validate?mode=delete`) checks the resource as stored, and its
    /// answer, an `OperationOutcome`, tells what it found (that it exists, what still refers
    /// to it): it needs what a read of the instance needs. Verified here, on the stored
    /// version, or refused: no check of the answer can tell an outcome about another
    /// patient's resource from any other. At type level it checks only what the app sends,
    /// and a valid token suffices (docs/semantics.md §2).
    fn valid_token_on_instance(&self, name: &str, resource_type: &str) -> Findings {
        let mut findings = self.one_type(resource_type, Access::Read);
        // Outside the Patient compartment a patient/ grant can look unconstrained only for
        // want of a parameter to carry (R4 Binary, Bundle): unverified all the same, unless
        // the stored JSON was read (facts do not list every reference, §3).
        let outside_unread = self
            .version()
            .patient_compartment_params(resource_type)
            .is_none()
            && !matches!(self.versions.stored, Some(Resource::Json(_)));
        let verified = |grant: &Grant| {
            grant.is_unconstrained() && !(outside_unread && grant.context == ScopeContext::Patient)
        };
        if findings.grants.iter().any(|grant| !verified(grant)) {
            findings.grants.retain(verified);
            if findings.grants.is_empty() {
                findings.refuse(Refusal::new(
                    Reason::UnsupportedRequest,
                    format!(
                        "${name} on a {resource_type} instance needs its stored version to \
                         check the read it implies"
                    ),
                ));
            }
        }
        findings
    }

    /// `Patient/[id]/$everything`: the types the token can both read and search, and the
    /// patient in context must be `id` under every scope context (smart-semantics.md §2,
    /// the default operation table): a `user/` or `system/` token names the patient it
    /// may gather everything of by its launch context, not by the URL it asks for.
    fn patient_everything(&self, id: &str) -> Findings {
        let mut findings = Findings::default();
        for pair in self.read_and_search_pairs() {
            let refusal = match self.patient {
                Ok(patient) if patient == id => None,
                Ok(patient) => Some(Refusal::new(
                    Reason::OutsideCompartment,
                    format!(
                        "$everything on Patient/{id}, but the patient in context is Patient/{patient}"
                    ),
                )),
                Err(_) => Some(Refusal::new(
                    Reason::MissingPatientContext,
                    format!(
                        "$everything on Patient/{id} needs that patient in context; the token has none"
                    ),
                )),
            };
            if let Some(refusal) = refusal {
                findings.refuse(refusal);
                continue;
            }
            // Its answer holds what the patient's records refer to as well (an R4 Device
            // whose `patient` is another), which a trimmed resource could hide from the
            // check of the answer: the rule of a search of every type.
            if pair.reader.patient.is_some()
                && let Err(refusal) = self.check_untyped_search_not_trimmed()
            {
                findings.refuse(refusal);
                continue;
            }
            let mut grant = pair.grant(vec![pair.types.to_owned()]);
            if pair.reader.patient.is_some() {
                grant.compartment = Some(format!("Patient/{id}"));
            }
            findings.grants.push(grant);
        }
        if findings.grants.is_empty() {
            self.refuse_unusable(&mut findings, "Patient", Permissions::READ_AND_SEARCH);
            findings.refuse(Refusal::new(
                Reason::NoMatchingScope,
                "$everything needs scopes that can both read and search",
            ));
        }
        findings
    }

    /// Bulk export: only `system/` scopes with `r` and `s`; with `_type`, every listed type
    /// must be covered by one of them.
    fn bulk_export(&self) -> Findings {
        let listed = match self.listed_types() {
            Ok(listed) => listed,
            Err(refusal) => return Findings::refused(refusal),
        };
        let exporters: Vec<ReadAndSearch<'_, '_>> = self
            .read_and_search_pairs()
            .into_iter()
            .filter(|pair| pair.reader.scope.context == ScopeContext::System)
            .collect();
        let covers = |resource_type: &str| exporters.iter().any(|pair| pair.covers(resource_type));
        if let Some(missing) = listed.iter().find(|listed| !covers(listed)) {
            return Findings::refused(Refusal::new(
                Reason::NoMatchingScope,
                format!(
                    "bulk export of {missing} needs system/ scopes that can read and search it"
                ),
            ));
        }
        let mut findings = Findings::default();
        for pair in &exporters {
            let resource_types: Vec<String> = if listed.is_empty() {
                vec![pair.types.to_owned()]
            } else {
                listed
                    .iter()
                    .filter(|listed| pair.covers(listed))
                    .map(|listed| (*listed).to_owned())
                    .collect()
            };
            if !resource_types.is_empty() {
                findings.grants.push(pair.grant(resource_types));
            }
        }
        if findings.grants.is_empty() {
            findings.refuse(Refusal::new(
                Reason::NoMatchingScope,
                "bulk export needs system/ scopes that can read and search",
            ));
        }
        findings
    }

    /// Every way the token can both read and search some types: a scope with `rs`, or a
    /// reading and a searching scope of the same context whose types overlap. A pair's grant
    /// carries the filters of both scopes (AND), so combining two scopes never widens either.
    fn read_and_search_pairs(&self) -> Vec<ReadAndSearch<'_, '_>> {
        let with = |permission: Permission| {
            self.candidates
                .iter()
                .filter(move |candidate| candidate.scope.permissions.contains(permission))
        };
        let mut pairs = Vec::new();
        for reader in with(Permission::Read) {
            for searcher in with(Permission::Search) {
                if pairs.len() == MAX_PAIRS {
                    return pairs;
                }
                if reader.scope.context != searcher.scope.context {
                    continue;
                }
                let types = match (&reader.scope.resource, &searcher.scope.resource) {
                    (ResourceSelector::All, other) | (other, ResourceSelector::All) => {
                        other.as_str()
                    }
                    (ResourceSelector::Type(a), ResourceSelector::Type(b)) if a == b => a.as_str(),
                    _ => continue,
                };
                pairs.push(ReadAndSearch {
                    reader,
                    searcher,
                    types,
                });
            }
        }
        pairs
    }
}

/// Bounds the pairs formed from one token (at most [`crate::smart::scope_set::MAX_SCOPES`]
/// squared otherwise); fewer pairs only ever means fewer grants.
const MAX_PAIRS: usize = 1024;

/// A reading scope and a searching scope (the same one for an `rs` scope), and the types
/// both cover (`*` for all).
struct ReadAndSearch<'c, 'a> {
    reader: &'c Candidate<'a>,
    searcher: &'c Candidate<'a>,
    types: &'c str,
}

impl ReadAndSearch<'_, '_> {
    fn covers(&self, resource_type: &str) -> bool {
        self.types == "*" || self.types == resource_type
    }

    fn grant(&self, resource_types: Vec<String>) -> Grant {
        let mut grant = new_grant(self.reader, resource_types);
        let mut filters = self.reader.scope.filter.clone();
        if !std::ptr::eq(self.reader, self.searcher) {
            grant.scope = format!("{} {}", self.reader.text, self.searcher.text);
            for item in &self.searcher.scope.filter {
                if !filters.contains(item) {
                    filters.push(item.clone());
                }
            }
        }
        grant.filters = filters;
        grant
    }
}
