//! `decide`: the rule book of smart-semantics.md applied to one request.
//!
//! The engine first turns the token's scopes into *candidates* (resource scopes whose
//! context is usable: a patient for `patient/`, a user for `user/`), then asks each candidate
//! whether it grants the request. Scopes combine as a union (§3.0.2.2): any grant allows.
//! When none does, the most specific refusal becomes the deny reason.

use std::collections::BTreeSet;

use super::policy::{NonCompartmentAccess, OperationRule, Policy};
use super::{Decision, Grant, IgnoredScope, IncludedResources, Obligation, Outcome, Reason};
use crate::fhir::reference::{id_of, parse_reference};
use crate::fhir::{FhirRequest, FhirVersion, FilterMatch, Interaction, Resource};
use crate::smart::{
    FilterItem, Permission, Permissions, ResourceScope, ResourceSelector, ScopeContext,
    TokenContext,
};

/// The decision engine, configured by a [`Policy`]. Cheap to share: it holds only the policy.
#[derive(Clone, Debug, Default)]
pub struct Engine {
    policy: Policy,
}

/// Decides with the default policy (FHIR R4). See [`Engine::decide`].
pub fn decide(
    token: &TokenContext,
    request: &FhirRequest,
    stored: Option<&Resource>,
    proposed: Option<&Resource>,
) -> Decision {
    Engine::default().decide(token, request, stored, proposed)
}

/// What a request does to resources of one type, and so which letter it needs (§3.0.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Access {
    /// read, vread, history-instance: the stored version.
    Read,
    /// Searches and type/system history: a constraint on the results.
    Search,
    /// create: the new version.
    Create,
    /// update, patch: the stored and the new version.
    Update,
    /// delete: the stored version.
    Delete,
}

impl Access {
    fn permission(self) -> Permission {
        match self {
            Access::Read => Permission::Read,
            Access::Search => Permission::Search,
            Access::Create => Permission::Create,
            Access::Update => Permission::Update,
            Access::Delete => Permission::Delete,
        }
    }

    fn is_write(self) -> bool {
        matches!(self, Access::Create | Access::Update | Access::Delete)
    }

    fn verb(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Search => "search",
            Access::Create => "create",
            Access::Update => "update",
            Access::Delete => "delete",
        }
    }
}

/// Why one candidate did not grant. Ranked so the deny reason is the most specific cause.
#[derive(Clone, Debug)]
struct Refusal {
    reason: Reason,
    message: String,
}

impl Refusal {
    fn new(reason: Reason, message: impl Into<String>) -> Self {
        Refusal {
            reason,
            message: message.into(),
        }
    }

    fn rank(&self) -> u8 {
        match self.reason {
            Reason::UnsupportedRequest => 5,
            Reason::OutsideCompartment => 4,
            Reason::FilterMismatch => 3,
            Reason::MissingPatientContext | Reason::MissingUserIdentity => 2,
            _ => 1,
        }
    }
}

/// A resource scope the token can use now, with the patient it is bound to.
struct Candidate<'a> {
    text: &'a str,
    scope: &'a ResourceScope,
    /// The patient id, for `patient/` scopes.
    patient: Option<&'a str>,
}

/// A resource scope that cannot be used for lack of launch context, kept to explain denies.
struct Unusable<'a> {
    scope: &'a ResourceScope,
    reason: Reason,
}

/// The resources a request touches, as the caller described them.
#[derive(Clone, Copy)]
struct Versions<'a> {
    stored: Option<&'a Resource>,
    proposed: Option<&'a Resource>,
}

/// One decision in progress.
struct Session<'a> {
    policy: &'a Policy,
    request: &'a FhirRequest,
    versions: Versions<'a>,
    candidates: Vec<Candidate<'a>>,
    unusable: Vec<Unusable<'a>>,
    ignored: Vec<IgnoredScope>,
}

/// The grants found so far, and the best refusal in case there are none.
#[derive(Default)]
struct Findings {
    grants: Vec<Grant>,
    refusal: Option<Refusal>,
}

impl Findings {
    fn refuse(&mut self, refusal: Refusal) {
        if self
            .refusal
            .as_ref()
            .is_none_or(|best| refusal.rank() > best.rank())
        {
            self.refusal = Some(refusal);
        }
    }

    fn record(&mut self, outcome: Result<Grant, Refusal>) {
        match outcome {
            Ok(grant) => self.grants.push(grant),
            Err(refusal) => self.refuse(refusal),
        }
    }
}

impl Engine {
    pub fn new(policy: Policy) -> Self {
        Engine { policy }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn fhir_version(&self) -> FhirVersion {
        self.policy.fhir_version
    }

    /// Decides whether `token` may perform `request`.
    ///
    /// `stored` is the resource as it is now (reads, deletes, updates), `proposed` the new
    /// version (creates, updates, patches, with the patch applied). Without them the decision
    /// is an allow with the constraints the server must apply (smart-semantics.md §5).
    pub fn decide(
        &self,
        token: &TokenContext,
        request: &FhirRequest,
        stored: Option<&Resource>,
        proposed: Option<&Resource>,
    ) -> Decision {
        if matches!(
            request.interaction,
            Interaction::Capabilities | Interaction::SmartConfiguration
        ) {
            let mut decision =
                Decision::deny(Reason::PublicEndpoint, "public endpoint: no token needed");
            decision.outcome = Outcome::Allow;
            return decision;
        }
        let session = Session::new(&self.policy, token, request, Versions { stored, proposed });
        if let Err(message) = session.validate() {
            return session.finish(Findings {
                grants: Vec::new(),
                refusal: Some(Refusal::new(Reason::UnsupportedRequest, message)),
            });
        }
        let findings = session.evaluate();
        session.finish(findings)
    }
}

impl<'a> Session<'a> {
    fn new(
        policy: &'a Policy,
        token: &'a TokenContext,
        request: &'a FhirRequest,
        versions: Versions<'a>,
    ) -> Self {
        let mut session = Session {
            policy,
            request,
            versions,
            candidates: Vec::new(),
            unusable: Vec::new(),
            ignored: token
                .scopes
                .invalid()
                .map(|(text, error)| IgnoredScope {
                    scope: text.to_owned(),
                    reason: error.to_string(),
                })
                .collect(),
        };
        if let Some(reason) = strict_mode_violation(policy, token) {
            session.ignored.extend(
                token
                    .scopes
                    .resource_scopes()
                    .map(|(text, _)| IgnoredScope {
                        scope: text.to_owned(),
                        reason: reason.to_owned(),
                    }),
            );
            return session;
        }
        let patient = patient_context(policy, token);
        let has_user = token.fhir_user.is_some() || (policy.user_from_sub && token.sub.is_some());
        for (text, scope) in token.scopes.resource_scopes() {
            let missing = match scope.context {
                ScopeContext::Patient if patient.is_none() => Some((
                    Reason::MissingPatientContext,
                    "patient/ scope, but the token has no patient context",
                )),
                ScopeContext::User if !has_user => Some((
                    Reason::MissingUserIdentity,
                    "user/ scope, but the token has no fhirUser",
                )),
                _ => None,
            };
            match missing {
                Some((reason, message)) => {
                    session.unusable.push(Unusable { scope, reason });
                    session.ignored.push(IgnoredScope {
                        scope: text.to_owned(),
                        reason: message.to_owned(),
                    });
                }
                None => session.candidates.push(Candidate {
                    text,
                    scope,
                    patient: patient.filter(|_| scope.context == ScopeContext::Patient),
                }),
            }
        }
        session
    }

    fn version(&self) -> FhirVersion {
        self.policy.fhir_version
    }

    /// Checks that the request is complete and names known types, and that the resources
    /// given are of the requested type.
    fn validate(&self) -> Result<(), String> {
        let request = self.request;
        let version = self.version();
        use Interaction::*;
        let needs_type = !matches!(
            request.interaction,
            SearchSystem | HistorySystem | SearchCompartment | Operation | Batch | Transaction
        );
        if needs_type && request.resource_type.is_none() {
            return Err(format!("{} needs a resource type", request.interaction));
        }
        if let Some(resource_type) = request.resource_type.as_deref() {
            let wildcard = resource_type == "*" && request.interaction == SearchCompartment;
            if !wildcard && !version.is_resource_type(resource_type) {
                return Err(format!(
                    "unknown resource type {resource_type} in FHIR {version}"
                ));
            }
        }
        let has_query = !request.params.is_empty();
        match request.interaction {
            Read | HistoryInstance if request.id.is_none() => {
                return Err(format!("{} needs a resource id", request.interaction));
            }
            Vread if request.id.is_none() || request.version_id.is_none() => {
                return Err("vread needs a resource id and a version id".to_owned());
            }
            Update | Patch | Delete if request.id.is_none() && !has_query => {
                return Err(format!(
                    "{} needs a resource id or a condition",
                    request.interaction
                ));
            }
            SearchCompartment => {
                let Some(compartment) = &request.compartment else {
                    return Err("search-compartment needs a compartment".to_owned());
                };
                if version
                    .tables()
                    .compartment(&compartment.compartment_type)
                    .is_none()
                {
                    return Err(format!(
                        "{} is not a compartment type",
                        compartment.compartment_type
                    ));
                }
            }
            Operation if request.operation.as_deref().is_none_or(str::is_empty) => {
                return Err("operation needs a name".to_owned());
            }
            Batch | Transaction => {
                return Err(format!(
                    "a {} is decided entry by entry: send its entries",
                    request.interaction
                ));
            }
            _ => {}
        }
        for (label, resource) in [
            ("stored", self.versions.stored),
            ("new", self.versions.proposed),
        ] {
            let Some(found) = resource.and_then(Resource::resource_type) else {
                continue;
            };
            if request
                .resource_type
                .as_deref()
                .is_some_and(|expected| expected != found)
            {
                return Err(format!(
                    "the {label} resource is a {found}, but the request is for {}",
                    request.resource_type.as_deref().unwrap_or_default()
                ));
            }
        }
        if let (Some(id), Some(new_id)) = (
            request.id.as_deref(),
            self.versions.proposed.and_then(Resource::id),
        ) && id != new_id
        {
            return Err(format!(
                "the new resource has id {new_id}, but the request is for id {id}"
            ));
        }
        Ok(())
    }

    fn evaluate(&self) -> Findings {
        let request = self.request;
        let resource_type = request.resource_type.as_deref().unwrap_or_default();
        match request.interaction {
            Interaction::Read | Interaction::Vread | Interaction::HistoryInstance => {
                self.one_type(resource_type, Access::Read)
            }
            Interaction::Create => self.one_type(resource_type, Access::Create),
            Interaction::Update | Interaction::Patch => {
                self.one_type(resource_type, Access::Update)
            }
            Interaction::Delete => self.one_type(resource_type, Access::Delete),
            Interaction::SearchType | Interaction::HistoryType => {
                self.one_type(resource_type, Access::Search)
            }
            Interaction::SearchCompartment if resource_type != "*" && !resource_type.is_empty() => {
                self.one_type(resource_type, Access::Search)
            }
            Interaction::SearchCompartment
            | Interaction::SearchSystem
            | Interaction::HistorySystem => self.system_search(),
            Interaction::Operation => self.operation(),
            Interaction::Capabilities
            | Interaction::SmartConfiguration
            | Interaction::Batch
            | Interaction::Transaction => unreachable!("handled before evaluation"),
        }
    }

    /// Every candidate's answer for one resource type, plus the refusals of the scopes that
    /// lack launch context.
    fn one_type(&self, resource_type: &str, access: Access) -> Findings {
        let mut findings = Findings::default();
        let permission = access.permission();
        for candidate in &self.candidates {
            if !candidate.scope.grants(resource_type, permission) {
                continue;
            }
            findings.record(self.grant(candidate, resource_type, access));
        }
        if findings.grants.is_empty() {
            self.refuse_unusable(
                &mut findings,
                resource_type,
                Permissions::NONE.with(permission),
            );
            findings.refuse(Refusal::new(
                Reason::NoMatchingScope,
                format!("no scope grants {} on {resource_type}", access.verb()),
            ));
        }
        findings
    }

    /// Adds the refusal of a scope that would grant `letters` on `resource_type` if the token
    /// had the launch context it needs.
    fn refuse_unusable(&self, findings: &mut Findings, resource_type: &str, letters: Permissions) {
        for unusable in &self.unusable {
            if unusable.scope.resource.covers(resource_type)
                && unusable.scope.permissions.contains_all(letters)
            {
                let message = match unusable.reason {
                    Reason::MissingPatientContext => {
                        "a patient/ scope matches, but the token has no patient context"
                    }
                    _ => "a user/ scope matches, but the token has no fhirUser",
                };
                findings.refuse(Refusal::new(unusable.reason, message));
            }
        }
    }

    /// Whether `candidate` (which has the letter) grants `access` on `resource_type`.
    fn grant(
        &self,
        candidate: &Candidate<'_>,
        resource_type: &str,
        access: Access,
    ) -> Result<Grant, Refusal> {
        let mut grant = new_grant(candidate, vec![resource_type.to_owned()]);
        if let Some(patient) = candidate.patient {
            self.check_patient_compartment(&mut grant, patient, resource_type, access)?;
        }
        grant.filters = self.check_filters(candidate.scope, resource_type, access)?;
        Ok(grant)
    }

    /// The Patient compartment rules of smart-semantics.md §3 "patient/".
    fn check_patient_compartment(
        &self,
        grant: &mut Grant,
        patient: &str,
        resource_type: &str,
        access: Access,
    ) -> Result<(), Refusal> {
        let version = self.version();
        let Some(params) = version.patient_compartment().params(resource_type) else {
            return self.check_outside_compartment_type(patient, resource_type, access);
        };
        if access == Access::Search {
            self.check_search_names_only(patient, resource_type)?;
            grant.compartment = Some(format!("Patient/{patient}"));
            grant.compartment_params = compartment_params(resource_type, params);
            return Ok(());
        }
        if resource_type == "Patient" && access == Access::Create {
            return Err(Refusal::new(
                Reason::OutsideCompartment,
                "a Patient cannot be created under patient/ scopes",
            ));
        }
        let mut verified = true;
        let checks: &[(&str, Option<&Resource>)] = match access {
            Access::Read | Access::Delete => &[("stored", self.versions.stored)],
            Access::Create => &[("new", self.versions.proposed)],
            _ => &[
                ("stored", self.versions.stored),
                ("new", self.versions.proposed),
            ],
        };
        for (label, resource) in checks {
            match resource {
                Some(resource) => {
                    if !resource
                        .patient_compartments(version, resource_type)
                        .iter()
                        .any(|id| id == patient)
                    {
                        return Err(Refusal::new(
                            Reason::OutsideCompartment,
                            format!(
                                "the {label} {resource_type} is not in the compartment of Patient/{patient}"
                            ),
                        ));
                    }
                }
                None => verified = false,
            }
        }
        if resource_type == "Patient"
            && let Some(id) = self.request.id.as_deref()
        {
            // A Patient is in its own compartment by id; another one only through `link`,
            // which only the stored resource can show (a check above then verified it).
            let stored_in_compartment = self.versions.stored.is_some() && access != Access::Create;
            if id != patient && !stored_in_compartment {
                return Err(Refusal::new(
                    Reason::OutsideCompartment,
                    format!("Patient/{id} is not the patient in context (Patient/{patient})"),
                ));
            }
            verified |= access != Access::Update || self.versions.proposed.is_some();
            verified &= access == Access::Read
                || access == Access::Delete
                || self.versions.proposed.is_some();
        }
        if !verified {
            grant.compartment = Some(format!("Patient/{patient}"));
            grant.compartment_params = compartment_params(resource_type, params);
        }
        Ok(())
    }

    /// Types never in the Patient compartment: configurable; by default readable and
    /// searchable unless known to belong to another patient, never writable.
    fn check_outside_compartment_type(
        &self,
        patient: &str,
        resource_type: &str,
        access: Access,
    ) -> Result<(), Refusal> {
        if self.policy.non_compartment_types == NonCompartmentAccess::Deny {
            return Err(Refusal::new(
                Reason::OutsideCompartment,
                format!(
                    "{resource_type} is never in the Patient compartment, and the policy keeps patient/ scopes from it"
                ),
            ));
        }
        if access.is_write() {
            return Err(Refusal::new(
                Reason::OutsideCompartment,
                format!(
                    "patient/ scopes cannot {} {resource_type}, which is never in the Patient compartment",
                    access.verb()
                ),
            ));
        }
        if access == Access::Search {
            return self.check_search_names_only(patient, resource_type);
        }
        if let Some(stored) = self.versions.stored
            && let Some(other) = stored
                .referenced_patients(self.version(), resource_type)
                .into_iter()
                .find(|id| id != patient)
        {
            return Err(Refusal::new(
                Reason::OutsideCompartment,
                format!("the stored {resource_type} belongs to another patient (Patient/{other})"),
            ));
        }
        Ok(())
    }

    /// Denies a search that names another patient: a compartment search on another Patient,
    /// or a reference parameter that can target Patient with another patient's id.
    fn check_search_names_only(&self, patient: &str, resource_type: &str) -> Result<(), Refusal> {
        let request = self.request;
        if let Some(compartment) = &request.compartment
            && compartment.compartment_type == "Patient"
            && compartment.id != patient
        {
            return Err(Refusal::new(
                Reason::OutsideCompartment,
                format!(
                    "search in the compartment of {compartment}, but the patient in context is Patient/{patient}"
                ),
            ));
        }
        for param in &request.params {
            if let Some(other) =
                self.other_patient_named(param.name.as_str(), &param.value, patient, resource_type)
            {
                return Err(Refusal::new(
                    Reason::OutsideCompartment,
                    format!(
                        "search parameter {}={} names another patient (Patient/{other})",
                        param.name, param.value
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The id of a patient other than `patient` that the search parameter names, if any.
    /// A bare id on a parameter that can target Patient counts as a Patient id (fail closed).
    fn other_patient_named<'v>(
        &self,
        name: &str,
        value: &'v str,
        patient: &str,
        resource_type: &str,
    ) -> Option<&'v str> {
        let (base, modifier) = match name.split_once(':') {
            Some((base, modifier)) => (base, Some(modifier)),
            None => (name, None),
        };
        if base.contains('.') {
            return None;
        }
        let names_patient = if resource_type == "Patient" && base == "_id" {
            true
        } else {
            let definition = self.version().search_param(resource_type, base)?;
            definition.targets_type("Patient")
                && match modifier {
                    None | Some("Patient") => true,
                    // `:missing`, `:identifier`, `:text`, `:not` or another target type:
                    // the value is no Patient id; the compartment constraint still applies.
                    Some(_) => false,
                }
        };
        if !names_patient {
            return None;
        }
        value.split(',').find_map(|alternative| {
            let named = if alternative.contains('/') {
                match parse_reference(alternative) {
                    Some(("Patient", id)) => id,
                    _ => return None,
                }
            } else {
                alternative
            };
            (!named.is_empty() && named != patient).then_some(named)
        })
    }

    /// Evaluates a granular scope's filter on the resources the request touches; returns the
    /// filter items the server must still apply (smart-semantics.md §4).
    fn check_filters(
        &self,
        scope: &ResourceScope,
        resource_type: &str,
        access: Access,
    ) -> Result<Vec<FilterItem>, Refusal> {
        if scope.filter.is_empty() {
            return Ok(Vec::new());
        }
        let checks: &[(&str, Option<&Resource>)] = match access {
            Access::Search => return Ok(scope.filter.clone()),
            Access::Read | Access::Delete => &[("stored", self.versions.stored)],
            Access::Create => &[("new", self.versions.proposed)],
            Access::Update => &[
                ("stored", self.versions.stored),
                ("new", self.versions.proposed),
            ],
        };
        let mut verified = true;
        for (label, resource) in checks {
            let Some(resource) = resource else {
                verified = false;
                continue;
            };
            for item in &scope.filter {
                match resource.matches_filter(
                    self.version(),
                    resource_type,
                    &item.param,
                    &item.values,
                ) {
                    FilterMatch::Match => {}
                    FilterMatch::NoMatch => {
                        return Err(Refusal::new(
                            Reason::FilterMismatch,
                            format!(
                                "the {label} {resource_type} does not match {}={}",
                                item.param,
                                item.values.join(",")
                            ),
                        ));
                    }
                    FilterMatch::NotEnforceable(why) => {
                        return Err(Refusal::new(Reason::FilterMismatch, why));
                    }
                }
            }
        }
        Ok(if verified {
            Vec::new()
        } else {
            scope.filter.clone()
        })
    }

    /// System search and history, and `Patient/[id]/*`: with `_type`, every listed type must
    /// be searchable; without, the searchable types become the constraint (§3).
    fn system_search(&self) -> Findings {
        let types = match self.listed_types() {
            Ok(types) => types,
            Err(refusal) => {
                return Findings {
                    grants: Vec::new(),
                    refusal: Some(refusal),
                };
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
                        let checked = self.check_search_names_only(patient, "Resource");
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
    fn listed_types(&self) -> Result<Vec<&'a str>, Refusal> {
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
                return Findings {
                    grants: Vec::new(),
                    refusal: Some(refusal),
                };
            }
            for grant in findings.grants {
                merge_grant(&mut merged.grants, grant);
            }
        }
        merged
    }

    /// The operation table of smart-semantics.md §2.
    fn operation(&self) -> Findings {
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

    /// Turns the findings into the decision: allow with the grants that matter, or deny with
    /// the most specific refusal.
    fn finish(self, findings: Findings) -> Decision {
        let request = self.request;
        let allowed = !findings.grants.is_empty()
            || (findings.refusal.is_none() && request.interaction == Interaction::Operation);
        if !allowed {
            let refusal = findings.refusal.unwrap_or_else(|| {
                Refusal::new(Reason::NoMatchingScope, "no scope grants this request")
            });
            let mut decision =
                Decision::deny(refusal.reason, format!("denied: {}", refusal.message));
            decision.ignored_scopes = self.ignored;
            return decision;
        }
        let grants = drop_subsumed(findings.grants);
        let message = allow_message(request, &grants);
        let included_resources = self.included_resources();
        Decision {
            outcome: Outcome::Allow,
            reason: Reason::Granted,
            message,
            grants,
            ignored_scopes: self.ignored,
            included_resources,
        }
    }

    /// For searches with `_include`/`_revinclude`: the types some candidate can read.
    fn included_resources(&self) -> Option<IncludedResources> {
        let includes = self.request.params.iter().any(|param| {
            let name = param.name.split(':').next().unwrap_or_default();
            name == "_include" || name == "_revinclude"
        });
        if !includes || !self.request.interaction.is_search() {
            return None;
        }
        let readable = self
            .candidates
            .iter()
            .filter(|candidate| candidate.scope.permissions.contains(Permission::Read));
        let mut types = BTreeSet::new();
        for candidate in readable {
            types.insert(candidate.scope.resource.as_str().to_owned());
        }
        let readable_types = if types.contains("*") {
            vec!["*".to_owned()]
        } else {
            types.into_iter().collect()
        };
        Some(IncludedResources { readable_types })
    }
}

/// The patient in context: the `patient` claim, or a Patient `fhirUser` when the policy
/// allows that fallback (smart-semantics.md §3).
fn patient_context<'a>(policy: &Policy, token: &'a TokenContext) -> Option<&'a str> {
    if let Some(patient) = token.patient.as_deref() {
        return Some(patient);
    }
    if !policy.patient_from_fhir_user {
        return None;
    }
    let fhir_user = token.fhir_user.as_deref()?;
    match parse_reference(fhir_user) {
        Some(("Patient", id)) => Some(id),
        _ => id_of("Patient", fhir_user).filter(|_| fhir_user.contains('/')),
    }
}

/// In strict mode, why the token's resource scopes are all refused, if they are.
fn strict_mode_violation(policy: &Policy, token: &TokenContext) -> Option<&'static str> {
    if !policy.strict_scopes {
        return None;
    }
    let resource: Vec<_> = token
        .scopes
        .entries
        .iter()
        .filter_map(|entry| match &entry.parsed {
            Ok(crate::smart::Scope::Resource(scope)) => Some((entry.is_v1(), scope.context)),
            _ => None,
        })
        .collect();
    let (first_v1, first_context) = resource.first().copied()?;
    if resource.iter().any(|(v1, _)| *v1 != first_v1) {
        return Some("strict mode: the token mixes SMART v1 and v2 scopes");
    }
    if resource
        .iter()
        .any(|(_, context)| *context != first_context)
    {
        return Some("strict mode: the token mixes patient/, user/ and system/ scopes");
    }
    None
}

fn new_grant(candidate: &Candidate<'_>, resource_types: Vec<String>) -> Grant {
    Grant {
        scope: candidate.text.to_owned(),
        context: candidate.scope.context,
        compartment: None,
        compartment_params: Vec::new(),
        filters: Vec::new(),
        resource_types,
        obligation: match candidate.scope.context {
            ScopeContext::Patient => Obligation::None,
            ScopeContext::User => Obligation::UserPermissions,
            ScopeContext::System => Obligation::ClientPolicy,
        },
    }
}

/// The parameters linking `resource_type` to the Patient compartment, for the server's
/// filter; a Patient links by its own id.
fn compartment_params(resource_type: &str, params: &[&str]) -> Vec<String> {
    let own_id = (resource_type == "Patient").then_some("_id");
    own_id
        .into_iter()
        .chain(params.iter().copied())
        .map(str::to_owned)
        .collect()
}

/// Adds `grant` to `grants`, merging its types into an existing grant of the same scope.
fn merge_grant(grants: &mut Vec<Grant>, grant: Grant) {
    match grants.iter_mut().find(|existing| {
        existing.scope == grant.scope
            && existing.compartment == grant.compartment
            && existing.filters == grant.filters
    }) {
        Some(existing) => {
            for resource_type in grant.resource_types {
                if !existing.resource_types.contains(&resource_type) {
                    existing.resource_types.push(resource_type);
                }
            }
            for param in grant.compartment_params {
                if !existing.compartment_params.contains(&param) {
                    existing.compartment_params.push(param);
                }
            }
        }
        None => grants.push(grant),
    }
}

/// Drops every grant that another grant makes irrelevant by being strictly less constrained
/// (smart-semantics.md §3, §4: `system/*.rs` beside `patient/*.rs`, a plain scope beside a
/// granular one). `user/` grants carry the user's permissions as a constraint.
fn drop_subsumed(grants: Vec<Grant>) -> Vec<Grant> {
    let at_most_as_constrained = |a: &Grant, b: &Grant| {
        (a.compartment.is_none() || a.compartment == b.compartment)
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

/// The types a set of scopes can both read and search.
enum Coverage {
    All,
    Types(BTreeSet<String>),
}

impl Coverage {
    fn covers(&self, resource_type: &str) -> bool {
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

fn allow_message(request: &FhirRequest, grants: &[Grant]) -> String {
    let target = match (&request.resource_type, &request.operation) {
        (_, Some(operation)) => format!("${operation}"),
        (Some(resource_type), None) => resource_type.clone(),
        (None, None) => "all types".to_owned(),
    };
    if grants.is_empty() {
        return format!(
            "allowed: {} {target} needs only a valid token",
            request.interaction
        );
    }
    let scopes: Vec<&str> = grants.iter().map(|grant| grant.scope.as_str()).collect();
    let constraints = grants
        .iter()
        .any(|grant| grant.compartment.is_some() || !grant.filters.is_empty());
    format!(
        "allowed: {} {target} by {}{}",
        request.interaction,
        scopes.join(" or "),
        if constraints {
            "; the server must apply the constraints"
        } else {
            ""
        }
    )
}
