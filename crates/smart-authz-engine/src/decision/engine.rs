//! `decide`: the rule book of docs/semantics.md applied to one request.
//!
//! The engine first turns the token's scopes into *candidates* (resource scopes whose
//! context is usable: a patient for `patient/`, a user for `user/`), then asks each candidate
//! whether it grants the request. Scopes combine as a union (§3.0.2.2): any grant allows.
//! When none does, the most specific refusal becomes the deny reason.

use std::collections::BTreeSet;

use self::grants::{allow_message, drop_subsumed, new_grant};
use super::policy::{OperationRule, Policy};
use super::{Decision, Grant, IgnoredScope, IncludedResources, Outcome, Reason};
use crate::fhir::reference::{Locality, parse_reference};
use crate::fhir::{FhirRequest, FhirVersion, FilterMatch, Interaction, Resource};
use crate::smart::{
    FilterItem, Permission, Permissions, ResourceScope, ScopeContext, TokenContext,
};

mod compartment;
mod conditions;
mod grants;
mod operations;
mod reach;
mod search;

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
    /// Why the patient is missing, for a patient/ scope.
    patient: Option<NoPatient>,
}

/// The resources a request touches, as the caller described them.
#[derive(Clone, Copy)]
struct Versions<'a> {
    stored: Option<&'a Resource>,
    proposed: Option<&'a Resource>,
}

impl<'a> Versions<'a> {
    /// The versions an access touches, labelled for messages: reads and deletes the stored
    /// one, creates the new one, updates both (docs/semantics.md §3 "patient/", §4). An
    /// iterator, not a `Vec`: every read of a stored resource walks it, and it needs no
    /// allocation for at most two.
    fn touched_by(
        self,
        access: Access,
    ) -> impl Iterator<Item = (&'static str, Option<&'a Resource>)> {
        let stored = ("stored", self.stored);
        let new = ("new", self.proposed);
        let (first, second) = match access {
            Access::Search => (None, None),
            Access::Read | Access::Delete => (Some(stored), None),
            Access::Create => (Some(new), None),
            Access::Update => (Some(stored), Some(new)),
        };
        first.into_iter().chain(second)
    }
}

/// One decision in progress.
struct Session<'a> {
    policy: &'a Policy,
    request: &'a FhirRequest,
    versions: Versions<'a>,
    candidates: Vec<Candidate<'a>>,
    unusable: Vec<Unusable<'a>>,
    ignored: Vec<IgnoredScope>,
    /// The token's patient in context, whatever its scopes' contexts
    /// (`Patient/[id]/$everything` needs it under every context).
    patient: Result<&'a str, NoPatient>,
    /// The read is of a resource a search returned as a match: `s` on its type grants it
    /// as well as `r` ([`Engine::decide_search_match`]).
    search_match: bool,
}

/// The grants found so far, and the best refusal in case there are none.
#[derive(Default)]
struct Findings {
    grants: Vec<Grant>,
    refusal: Option<Refusal>,
    /// Set by rules that need nothing beyond a verified token (`$validate` at type or
    /// system level).
    valid_token_suffices: bool,
}

impl Findings {
    fn refused(refusal: Refusal) -> Self {
        Findings {
            refusal: Some(refusal),
            ..Findings::default()
        }
    }

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
        // The tables' index is built here, once per version, rather than in the first
        // request's decision.
        policy.fhir_version.tables().prepare();
        Engine { policy }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The patient `token`'s patient/ grants refer to: the `patient` claim, or a Patient
    /// `fhirUser` under `patient_from_fhir_user` (§3). What the faces must name as the
    /// patient in context, so that a server applying a grant compares with the same one.
    pub fn patient_in_context<'t>(&self, token: &'t TokenContext) -> Option<&'t str> {
        patient_context(&self.policy, token).ok()
    }

    pub fn fhir_version(&self) -> FhirVersion {
        self.policy.fhir_version
    }

    /// Decides whether `token` may perform `request`.
    ///
    /// `stored` is the resource as it is now (reads, deletes, updates), `proposed` the new
    /// version (creates, updates, patches, with the patch applied). Without them the decision
    /// is an allow with the constraints the server must apply (docs/semantics.md §5).
    pub fn decide(
        &self,
        token: &TokenContext,
        request: &FhirRequest,
        stored: Option<&Resource>,
        proposed: Option<&Resource>,
    ) -> Decision {
        let decision = self.decide_with(token, request, Versions { stored, proposed }, false);
        self.check_conditional_references(token, request, proposed, decision)
    }

    /// Decides a `read` of a resource that a search returned as a match, with `stored` the
    /// resource as returned: as [`Engine::decide`], but `s` on its type grants it as well as
    /// `r`. The search was decided under `s` (§3.0.2: `s` is what a search needs), so the
    /// matches of a token holding `s` without `r` pass when they are in its compartment
    /// and match its filters, as the server should have made them; included resources and
    /// everything else still need `r`. The caller answers for the resource being a match
    /// of the type searched (`response::SearchMatches`).
    pub(crate) fn decide_search_match(
        &self,
        token: &TokenContext,
        read: &FhirRequest,
        stored: &Resource,
    ) -> Decision {
        let versions = Versions {
            stored: Some(stored),
            proposed: None,
        };
        self.decide_with(token, read, versions, read.interaction == Interaction::Read)
    }

    fn decide_with(
        &self,
        token: &TokenContext,
        request: &FhirRequest,
        versions: Versions<'_>,
        search_match: bool,
    ) -> Decision {
        if request.interaction.is_public() {
            return Decision::public_endpoint();
        }
        let mut session = Session::new(&self.policy, token, request, versions);
        session.search_match = search_match;
        if let Err(message) = session.validate() {
            return session.finish(Findings::refused(Refusal::new(
                Reason::UnsupportedRequest,
                message,
            )));
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
        let patient = patient_context(policy, token);
        let mut session = Session {
            policy,
            request,
            versions,
            patient,
            candidates: Vec::with_capacity(token.scopes.entries().len()),
            unusable: Vec::new(),
            search_match: false,
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
        let present =
            |claim: &Option<String>| claim.as_deref().is_some_and(|value| !value.is_empty());
        let has_user = present(&token.fhir_user) || (policy.user_from_sub && present(&token.sub));
        for (text, scope) in token.scopes.resource_scopes() {
            let missing = match (scope.context, patient) {
                (ScopeContext::Patient, Err(missing)) => Some((
                    Reason::MissingPatientContext,
                    missing.ignored(),
                    Some(missing),
                )),
                (ScopeContext::User, _) if !has_user => Some((
                    Reason::MissingUserIdentity,
                    "user/ scope, but the token has no fhirUser",
                    None,
                )),
                _ => None,
            };
            match missing {
                Some((reason, message, patient)) => {
                    session.unusable.push(Unusable {
                        scope,
                        reason,
                        patient,
                    });
                    session.ignored.push(IgnoredScope {
                        scope: text.to_owned(),
                        reason: message.to_owned(),
                    });
                }
                None => session.candidates.push(Candidate {
                    text,
                    scope,
                    patient: patient
                        .ok()
                        .filter(|_| scope.context == ScopeContext::Patient),
                }),
            }
        }
        session
    }

    fn version(&self) -> FhirVersion {
        self.policy.fhir_version
    }

    /// Which absolute references in resources are the server's own.
    fn locality(&self) -> Locality<'_> {
        Locality::of(&self.policy.base_urls)
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
        for (label, resource) in [
            ("stored", self.versions.stored),
            ("new", self.versions.proposed),
        ] {
            if let (Some(id), Some(resource_id)) =
                (request.id.as_deref(), resource.and_then(Resource::id))
                && id != resource_id
            {
                return Err(format!(
                    "the {label} resource has id {resource_id}, but the request is for id {id}"
                ));
            }
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
            // Answered before evaluation; a refusal (never a panic) should that ever change.
            Interaction::Capabilities
            | Interaction::SmartConfiguration
            | Interaction::Batch
            | Interaction::Transaction => Findings::refused(Refusal::new(
                Reason::UnsupportedRequest,
                format!("{} is not decided here", request.interaction),
            )),
        }
    }

    /// Every candidate's answer for one resource type, plus the refusals of the scopes that
    /// lack launch context.
    fn one_type(&self, resource_type: &str, access: Access) -> Findings {
        let mut findings = Findings::default();
        let permission = access.permission();
        let found_by_search = self.search_match && access == Access::Read;
        for candidate in &self.candidates {
            if !(candidate.scope.grants(resource_type, permission)
                || found_by_search && candidate.scope.grants(resource_type, Permission::Search))
            {
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
                let message = match unusable.patient {
                    Some(missing) => missing.refused(),
                    None => "a user/ scope matches, but the token has no fhirUser",
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

    /// Evaluates a granular scope's filter on the resources the request touches; returns the
    /// filter items the server must still apply (docs/semantics.md §4).
    fn check_filters(
        &self,
        scope: &ResourceScope,
        resource_type: &str,
        access: Access,
    ) -> Result<Vec<FilterItem>, Refusal> {
        if scope.filter.is_empty() {
            return Ok(Vec::new());
        }
        if access == Access::Search {
            return Ok(scope.filter.clone());
        }
        let mut verified = true;
        for (label, resource) in self.versions.touched_by(access) {
            let Some(resource) = resource else {
                verified = false;
                continue;
            };
            for item in &scope.filter {
                match resource.matches_filter_at(
                    self.version(),
                    self.locality(),
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
        // Like the compartment, a filter checked on the current version says nothing of the
        // past versions a history or a vread returns.
        Ok(if verified && !self.reads_past_versions() {
            Vec::new()
        } else {
            scope.filter.clone()
        })
    }

    /// Turns the findings into the decision: allow with the grants that matter, or deny with
    /// the most specific refusal.
    fn finish(self, findings: Findings) -> Decision {
        let request = self.request;
        let allowed = !findings.grants.is_empty() || findings.valid_token_suffices;
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

    /// For searches with `_include`/`_revinclude`: the types some candidate can read. So for
    /// an operation the table treats as a search (`$lastn`, whose parameters are
    /// Observation's search parameters: FHIR observation-operation-lastn; `$stats`).
    fn included_resources(&self) -> Option<IncludedResources> {
        let includes = self.request.params.iter().any(|param| {
            let name = param.name.split(':').next().unwrap_or_default();
            name == "_include" || name == "_revinclude"
        });
        let searches = self.request.interaction.is_search()
            || (self.request.interaction == Interaction::Operation
                && self
                    .request
                    .operation
                    .as_deref()
                    .and_then(|name| self.policy.operations.get(name))
                    .is_some_and(|rule| matches!(rule, OperationRule::TypeSearch)));
        if !includes || !searches {
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
/// allows that fallback (docs/semantics.md §3); otherwise why there is none.
///
/// An absolute URL names a patient of the server at its base (FHIR references.html §2.3.0):
/// on a server whose base URLs are configured, one under another base is no patient of this
/// server, however its id reads. Taking its `Patient/<id>` tail would give the token
/// whichever local patient happens to share the id.
fn patient_context<'a>(policy: &Policy, token: &'a TokenContext) -> Result<&'a str, NoPatient> {
    let locality = Locality::of(&policy.base_urls);
    if let Some(patient) = token
        .patient
        .as_deref()
        .filter(|patient| !patient.is_empty())
    {
        return match token.patient_url.as_deref() {
            Some(url) if locality.resolve(url) != Some(("Patient", patient)) => {
                Err(NoPatient::Foreign)
            }
            _ => Ok(patient),
        };
    }
    if !policy.patient_from_fhir_user {
        return Err(NoPatient::Absent);
    }
    let fhir_user = token.fhir_user.as_deref().ok_or(NoPatient::Absent)?;
    match parse_reference(fhir_user) {
        Some(("Patient", id)) => match locality.resolve(fhir_user) {
            Some(("Patient", local)) if local == id => Ok(id),
            _ => Err(NoPatient::Foreign),
        },
        _ => Err(NoPatient::Absent),
    }
}

/// Why a token has no patient in context.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NoPatient {
    /// Neither a `patient` claim nor (under the fallback) a Patient `fhirUser`.
    Absent,
    /// One that names a patient of another server (an absolute URL under another base).
    Foreign,
}

impl NoPatient {
    /// Why a patient/ scope is ignored.
    fn ignored(self) -> &'static str {
        match self {
            NoPatient::Absent => "patient/ scope, but the token has no patient context",
            NoPatient::Foreign => {
                "patient/ scope, but the token's patient is an absolute URL under none of this \
                 FHIR server's base URLs"
            }
        }
    }

    /// Why a request a patient/ scope would grant is refused.
    fn refused(self) -> &'static str {
        match self {
            NoPatient::Absent => "a patient/ scope matches, but the token has no patient context",
            NoPatient::Foreign => {
                "a patient/ scope matches, but the token's patient is a patient of another FHIR \
                 server (an absolute URL under none of this server's base URLs)"
            }
        }
    }
}

/// In strict mode, why the token's resource scopes are all refused, if they are.
fn strict_mode_violation(policy: &Policy, token: &TokenContext) -> Option<&'static str> {
    if !policy.strict_scopes {
        return None;
    }
    let resource: Vec<_> = token
        .scopes
        .entries()
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
