//! System-level search and history, and searches of all types of a compartment
//! (docs/semantics.md §3: `_type` and the searchable types).

use super::compartment::SYSTEM_LEVEL;
use super::grants::new_grant;
use super::{Access, Findings, Refusal, Session};
use crate::decision::{Grant, Reason};
use crate::smart::{Permission, Permissions, ResourceSelector};

impl<'a> Session<'a> {
    /// System search and history, and `Patient/[id]/*`: with `_type`, every listed type must
    /// be searchable; without, the searchable types become the constraint (§3).
    pub(super) fn system_search(&self) -> Findings {
        let types = match self.listed_types() {
            Ok(types) => types,
            Err(refusal) => {
                return Findings::refused(refusal);
            }
        };
        if !types.is_empty() {
            return self.every_type(&types, Access::Search);
        }
        let mut findings = Findings::default();
        for candidate in &self.candidates {
            if !candidate.scope.permissions.contains(Permission::Search) {
                continue;
            }
            match &candidate.scope.resource {
                ResourceSelector::Type(resource_type) => {
                    findings.record(self.grant(candidate, resource_type, Access::Search));
                }
                ResourceSelector::All => {
                    let mut grant = new_grant(candidate, vec!["*".to_owned()]);
                    grant.filters = candidate.scope.filter.clone();
                    if let Some(patient) = candidate.patient {
                        // Every type may answer, those outside the compartment too (unless the
                        // policy keeps them from patient/ scopes): the same rule as naming one.
                        let checked = self
                            .check_search_names_only(patient, SYSTEM_LEVEL)
                            .and_then(|()| self.check_untyped_search_not_trimmed());
                        if let Err(refusal) = checked {
                            findings.refuse(refusal);
                            continue;
                        }
                        grant.compartment = Some(format!("Patient/{patient}"));
                    }
                    findings.grants.push(grant);
                }
            }
        }
        if findings.grants.is_empty() {
            self.refuse_unusable(
                &mut findings,
                "*",
                Permissions::NONE.with(Permission::Search),
            );
            findings.refuse(Refusal::new(
                Reason::NoMatchingScope,
                "no scope grants search",
            ));
        }
        findings
    }

    /// The types of `_type` (repeated or comma-separated), each checked against the version.
    pub(super) fn listed_types(&self) -> Result<Vec<&'a str>, Refusal> {
        let mut types: Vec<&str> = Vec::new();
        for listed in self
            .request
            .param_values("_type")
            .flat_map(|value| value.split(','))
        {
            if !self.version().is_resource_type(listed) {
                return Err(Refusal::new(
                    Reason::UnsupportedRequest,
                    format!("unknown resource type {listed} in _type"),
                ));
            }
            if !types.contains(&listed) {
                types.push(listed);
            }
        }
        Ok(types)
    }

    /// Every type must be granted; the grants of all types are merged by scope.
    fn every_type(&self, types: &[&str], access: Access) -> Findings {
        let mut merged = Findings::default();
        for resource_type in types {
            let findings = self.one_type(resource_type, access);
            if findings.grants.is_empty() {
                let refusal = findings.refusal.unwrap_or_else(|| {
                    Refusal::new(
                        Reason::NoMatchingScope,
                        format!("no scope grants {} on {resource_type}", access.verb()),
                    )
                });
                return Findings::refused(refusal);
            }
            for grant in findings.grants {
                merge_grant(&mut merged.grants, grant);
            }
        }
        merged
    }
}

/// Adds `grant` to `grants`, merging its types into an existing grant that differs from it
/// in nothing else; types with other constraints (linked to the compartment by other
/// parameters, or kept from another patient through other references) stay apart, so every
/// constraint of a grant holds for all its types and none is dropped (docs/semantics.md §5).
fn merge_grant(grants: &mut Vec<Grant>, grant: Grant) {
    match grants
        .iter_mut()
        .find(|existing| same_but_types(existing, &grant))
    {
        Some(existing) => {
            for resource_type in grant.resource_types {
                if !existing.resource_types.contains(&resource_type) {
                    existing.resource_types.push(resource_type);
                }
            }
        }
        None => grants.push(grant),
    }
}

/// True when `a` and `b` differ at most in their types. Every field is named, so a field
/// added to [`Grant`] must be placed on one side or the other here.
fn same_but_types(a: &Grant, b: &Grant) -> bool {
    let Grant {
        scope,
        context,
        compartment,
        compartment_params,
        exclude_other_patients_via,
        answer_must_be_read,
        filters,
        resource_types: _,
        obligation,
    } = a;
    *scope == b.scope
        && *context == b.context
        && *compartment == b.compartment
        && *compartment_params == b.compartment_params
        && *exclude_other_patients_via == b.exclude_other_patients_via
        && *answer_must_be_read == b.answer_must_be_read
        && *filters == b.filters
        && *obligation == b.obligation
}
