//! The operation table (docs/semantics.md §2 "operations"): `$everything`, `$lastn`,
//! `$stats`, `$export`, `$validate`, and operations configured in the policy.

use std::collections::BTreeSet;

use super::grants::new_grant;
use super::{Access, Candidate, Findings, Refusal, Session};
use crate::decision::Reason;
use crate::decision::policy::OperationRule;
use crate::smart::{Permission, Permissions, ResourceScope, ResourceSelector, ScopeContext};

impl Session<'_> {
    /// The operation table of docs/semantics.md §2.
    pub(super) fn operation(&self) -> Findings {
        let request = self.request;
        let name = request.operation.as_deref().unwrap_or_default();
        let unsupported = |message: String| Findings {
            grants: Vec::new(),
            refusal: Some(Refusal::new(Reason::UnsupportedRequest, message)),
        };
        let Some(rule) = self.policy.operations.get(name) else {
            return unsupported(format!("operation ${name} is not enabled by the policy"));
        };
        let resource_type = request.resource_type.as_deref();
        match (rule, resource_type, request.id.as_deref()) {
            (OperationRule::Deny, ..) => {
                unsupported(format!("operation ${name} is denied by the policy"))
            }
            (OperationRule::ValidToken, ..) => Findings::default(),
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

    /// A configured operation needing `letters` on the type: judged like a read of the
    /// instance (instance level) or a search of the type (type level).
    fn operation_with_letters(
        &self,
        resource_type: &str,
        instance: bool,
        letters: Permissions,
    ) -> Findings {
        let access = if instance {
            Access::Read
        } else {
            Access::Search
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

    /// `Patient/[id]/$everything`: for `patient/` scopes the context must be `id`; the result
    /// covers the types the token can both read and search.
    fn patient_everything(&self, id: &str) -> Findings {
        let mut findings = Findings::default();
        let usable: Vec<&Candidate<'_>> = self
            .candidates
            .iter()
            .filter(|candidate| match candidate.patient {
                Some(patient) if patient != id => {
                    findings.refuse(Refusal::new(
                        Reason::OutsideCompartment,
                        format!("$everything on Patient/{id}, but the patient in context is Patient/{patient}"),
                    ));
                    false
                }
                _ => true,
            })
            .collect();
        let covered = readable_and_searchable(usable.iter().map(|candidate| candidate.scope));
        self.grant_covered(&mut findings, &usable, &covered, Some(id));
        if findings.grants.is_empty() {
            self.refuse_unusable(
                &mut findings,
                "Patient",
                Permissions::NONE.with(Permission::Read),
            );
            findings.refuse(Refusal::new(
                Reason::NoMatchingScope,
                "$everything needs scopes that can both read and search some type",
            ));
        }
        findings
    }

    /// Bulk export: only `system/` scopes, with `r` and `s` on every exported type.
    fn bulk_export(&self) -> Findings {
        let system: Vec<&Candidate<'_>> = self
            .candidates
            .iter()
            .filter(|candidate| candidate.scope.context == ScopeContext::System)
            .collect();
        let covered = readable_and_searchable(system.iter().map(|candidate| candidate.scope));
        let mut findings = Findings::default();
        let listed = match self.listed_types() {
            Ok(listed) => listed,
            Err(refusal) => {
                return Findings {
                    grants: Vec::new(),
                    refusal: Some(refusal),
                };
            }
        };
        if let Some(missing) = listed.iter().find(|listed| !covered.covers(listed)) {
            findings.refuse(Refusal::new(
                Reason::NoMatchingScope,
                format!("bulk export of {missing} needs system/ scopes with read and search on it"),
            ));
            return findings;
        }
        let covered = if listed.is_empty() {
            covered
        } else {
            Coverage::Types(listed.iter().map(|listed| (*listed).to_owned()).collect())
        };
        self.grant_covered(&mut findings, &system, &covered, None);
        if findings.grants.is_empty() {
            findings.refuse(Refusal::new(
                Reason::NoMatchingScope,
                "bulk export needs system/ scopes with read and search",
            ));
        }
        findings
    }

    /// One grant per candidate that contributes to `covered`, listing the covered types.
    fn grant_covered(
        &self,
        findings: &mut Findings,
        candidates: &[&Candidate<'_>],
        covered: &Coverage,
        compartment_of: Option<&str>,
    ) {
        for candidate in candidates {
            let letters = candidate.scope.permissions;
            if !letters.contains(Permission::Read) && !letters.contains(Permission::Search) {
                continue;
            }
            let resource_types = match (&candidate.scope.resource, covered) {
                (_, Coverage::Types(types)) if types.is_empty() => continue,
                (ResourceSelector::All, Coverage::All) => vec!["*".to_owned()],
                (ResourceSelector::All, Coverage::Types(types)) => types.iter().cloned().collect(),
                (ResourceSelector::Type(resource_type), covered)
                    if covered.covers(resource_type) =>
                {
                    vec![resource_type.clone()]
                }
                _ => continue,
            };
            let mut grant = new_grant(candidate, resource_types);
            grant.filters = candidate.scope.filter.clone();
            if candidate.patient.is_some() {
                grant.compartment = compartment_of.map(|id| format!("Patient/{id}"));
            }
            findings.grants.push(grant);
        }
    }
}

/// The types a set of scopes can both read and search.
enum Coverage {
    All,
    Types(BTreeSet<String>),
}

impl Coverage {
    pub(super) fn covers(&self, resource_type: &str) -> bool {
        match self {
            Coverage::All => true,
            Coverage::Types(types) => types.contains(resource_type),
        }
    }
}

fn readable_and_searchable<'s>(
    scopes: impl Iterator<Item = &'s ResourceScope> + Clone,
) -> Coverage {
    let selectors = |permission: Permission| {
        let mut all = false;
        let mut named = BTreeSet::new();
        for scope in scopes
            .clone()
            .filter(|scope| scope.permissions.contains(permission))
        {
            match &scope.resource {
                ResourceSelector::All => all = true,
                ResourceSelector::Type(name) => {
                    named.insert(name.clone());
                }
            }
        }
        (all, named)
    };
    let (read_all, read_named) = selectors(Permission::Read);
    let (search_all, search_named) = selectors(Permission::Search);
    match (read_all, search_all) {
        (true, true) => Coverage::All,
        (true, false) => Coverage::Types(search_named),
        (false, true) => Coverage::Types(read_named),
        (false, false) => {
            Coverage::Types(read_named.intersection(&search_named).cloned().collect())
        }
    }
}
