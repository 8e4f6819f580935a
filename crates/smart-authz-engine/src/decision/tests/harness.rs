//! The `Case` builder and runner of the rule-book table.
//!
//! A case is a token (scopes and launch context, read through `TokenContext::from_claims`
//! as a verified token would be), a request line or a Bundle, optional resource versions,
//! the expected outcome and reason, and optional further expectations. Running a case never
//! panics: every mismatch comes back as one line of text, so one run shows them all.

use std::collections::BTreeSet;
use std::panic::{AssertUnwindSafe, catch_unwind};

use serde_json::{Map, Value};

use crate::decision::{
    BundleDecision, Decision, Engine, Grant, Obligation, Outcome, Policy, Reason, bundle_entries,
};
use crate::fhir::{FhirVersion, Resource, ResourceFacts, parse_request_line};
use crate::smart::{ScopeContext, TokenContext};

/// Overriding principle: fail closed (unknown types, malformed requests, mismatched input).
pub const S0: &str = "§0 fail closed";
/// Scope grammar.
pub const S1: &str = "§1";
/// Letters, interactions, operations, batches.
pub const S2: &str = "§2";
/// Union of scopes and contexts, subsumption of grants.
pub const S3: &str = "§3";
pub const S3P: &str = "§3 patient/";
pub const S3U: &str = "§3 user/";
pub const S3S: &str = "§3 system/";
/// Granular filters.
pub const S4: &str = "§4";
/// What a decision needs from the caller.
pub const S5: &str = "§5";

/// Every section label a case may carry, in rule-book order.
pub const SECTIONS: [&str; 9] = [S0, S1, S2, S3, S3P, S3U, S3S, S4, S5];

type Check = Box<dyn Fn(&Decision) -> Result<(), String>>;
type BundleCheck = Box<dyn Fn(&BundleDecision) -> Result<(), String>>;

/// The expected top-level answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// Allow, reason `Granted`.
    Allow,
    /// Allow, reason `PublicEndpoint`.
    Public,
    Deny(Reason),
    /// `bundle_entries` refuses the document.
    BadBundle,
}

impl Expect {
    fn describe(self) -> String {
        match self {
            Expect::Allow => "allow (granted)".to_owned(),
            Expect::Public => "allow (public_endpoint)".to_owned(),
            Expect::Deny(reason) => format!("deny ({})", reason.as_str()),
            Expect::BadBundle => "a bundle error".to_owned(),
        }
    }

    fn matches(self, outcome: Outcome, reason: Reason) -> bool {
        match self {
            Expect::Allow => outcome == Outcome::Allow && reason == Reason::Granted,
            Expect::Public => outcome == Outcome::Allow && reason == Reason::PublicEndpoint,
            Expect::Deny(expected) => outcome == Outcome::Deny && reason == expected,
            Expect::BadBundle => false,
        }
    }
}

enum Target {
    Line(String, String),
    Bundle(Value),
}

/// One row of the table.
pub struct Case {
    pub section: &'static str,
    pub name: String,
    policy: Policy,
    scopes: String,
    patient: Option<String>,
    fhir_user: Option<String>,
    sub: Option<String>,
    target: Option<Target>,
    stored: Option<Resource>,
    proposed: Option<Resource>,
    patch: Option<Value>,
    expect: Option<Expect>,
    checks: Vec<Check>,
    bundle_checks: Vec<BundleCheck>,
}

/// A new case of `section` (one of [`SECTIONS`]).
pub fn case(section: &'static str, name: impl Into<String>) -> Case {
    Case {
        section,
        name: name.into(),
        policy: Policy::default(),
        scopes: String::new(),
        patient: None,
        fhir_user: None,
        sub: None,
        target: None,
        stored: None,
        proposed: None,
        patch: None,
        expect: None,
        checks: Vec::new(),
        bundle_checks: Vec::new(),
    }
}

fn set_of<'a>(items: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
    items.into_iter().map(str::to_owned).collect()
}

fn owned(items: &[&str]) -> Vec<String> {
    items.iter().map(|item| (*item).to_owned()).collect()
}

impl Case {
    // ---- configuration -------------------------------------------------------------------

    /// FHIR R5: default policy for R5, scopes parsed for R5.
    pub fn r5(mut self) -> Self {
        self.policy.fhir_version = FhirVersion::R5;
        self
    }

    /// Another FHIR version (R4B): its default policy, scopes parsed for it.
    pub fn version(mut self, version: FhirVersion) -> Self {
        self.policy.fhir_version = version;
        self
    }

    pub fn is_r5(&self) -> bool {
        self.policy.fhir_version == FhirVersion::R5
    }

    /// Changes the policy (starting from the default of the case's version).
    pub fn policy(mut self, change: impl FnOnce(&mut Policy)) -> Self {
        change(&mut self.policy);
        self
    }

    /// The granted `scope` claim, space-separated.
    pub fn scopes(mut self, scopes: &str) -> Self {
        self.scopes = scopes.to_owned();
        self
    }

    /// The `patient` claim (bare id or `Patient/id`).
    pub fn patient(mut self, patient: &str) -> Self {
        self.patient = Some(patient.to_owned());
        self
    }

    pub fn fhir_user(mut self, fhir_user: &str) -> Self {
        self.fhir_user = Some(fhir_user.to_owned());
        self
    }

    pub fn sub(mut self, sub: &str) -> Self {
        self.sub = Some(sub.to_owned());
        self
    }

    /// The request, as `METHOD path?query` relative to the FHIR base.
    pub fn line(mut self, method: &str, path: &str) -> Self {
        self.target = Some(Target::Line(method.to_owned(), path.to_owned()));
        self
    }

    /// A batch or transaction Bundle, read with `bundle_entries` and decided with
    /// `decide_bundle`.
    pub fn bundle(mut self, bundle: Value) -> Self {
        self.target = Some(Target::Bundle(bundle));
        self
    }

    /// The stored (current) version as JSON.
    pub fn stored(mut self, resource: Value) -> Self {
        self.stored = Some(Resource::Json(resource));
        self
    }

    pub fn stored_facts(mut self, facts: ResourceFacts) -> Self {
        self.stored = Some(Resource::Facts(facts));
        self
    }

    /// The new version (create, update, patch with the patch applied) as JSON.
    pub fn proposed(mut self, resource: Value) -> Self {
        self.proposed = Some(Resource::Json(resource));
        self
    }

    pub fn proposed_facts(mut self, facts: ResourceFacts) -> Self {
        self.proposed = Some(Resource::Facts(facts));
        self
    }

    /// A patch's document (JSON Patch or FHIRPath Patch), read with `check_patch_document`.
    pub fn patch_document(mut self, document: Value) -> Self {
        self.patch = Some(document);
        self
    }

    // ---- expectations --------------------------------------------------------------------

    pub fn allow(mut self) -> Self {
        self.expect = Some(Expect::Allow);
        self
    }

    pub fn public(mut self) -> Self {
        self.expect = Some(Expect::Public);
        self
    }

    pub fn deny(mut self, reason: Reason) -> Self {
        self.expect = Some(Expect::Deny(reason));
        self
    }

    pub fn bad_bundle(mut self) -> Self {
        self.expect = Some(Expect::BadBundle);
        self
    }

    /// Any further check on the decision.
    pub fn expect(mut self, check: impl Fn(&Decision) -> Result<(), String> + 'static) -> Self {
        self.checks.push(Box::new(check));
        self
    }

    fn expect_grants(self, check: impl Fn(&[Grant]) -> Result<(), String> + 'static) -> Self {
        self.expect(move |decision| {
            if decision.grants.is_empty() {
                return Err("expected grants, got none".to_owned());
            }
            check(&decision.grants)
        })
    }

    /// Every grant carries this compartment constraint.
    pub fn compartment(self, compartment: &str) -> Self {
        let compartment = compartment.to_owned();
        self.expect_grants(move |grants| {
            match grants
                .iter()
                .find(|grant| grant.compartment.as_deref() != Some(compartment.as_str()))
            {
                Some(grant) => Err(format!(
                    "grant {} has compartment {:?}, expected {compartment:?}",
                    grant.scope, grant.compartment
                )),
                None => Ok(()),
            }
        })
    }

    /// No grant carries a compartment constraint (verified, or not a patient/ grant).
    pub fn no_compartment(self) -> Self {
        self.expect_grants(|grants| {
            match grants
                .iter()
                .find(|grant| grant.compartment.is_some() || !grant.compartment_params.is_empty())
            {
                Some(grant) => Err(format!(
                    "grant {} has compartment {:?} (params {:?}), expected none",
                    grant.scope, grant.compartment, grant.compartment_params
                )),
                None => Ok(()),
            }
        })
    }

    /// Every grant with a compartment lists exactly these linking parameters.
    pub fn compartment_params(self, params: &[&str]) -> Self {
        let expected = set_of(params.iter().copied());
        self.expect_grants(move |grants| {
            let mut seen = false;
            for grant in grants.iter().filter(|grant| grant.compartment.is_some()) {
                seen = true;
                let actual = set_of(grant.compartment_params.iter().map(String::as_str));
                if actual != expected {
                    return Err(format!(
                        "grant {} has compartment_params {actual:?}, expected {expected:?}",
                        grant.scope
                    ));
                }
            }
            if seen {
                Ok(())
            } else {
                Err("no grant carries a compartment".to_owned())
            }
        })
    }

    /// The granting scopes reported, as a set.
    pub fn grant_scopes(self, scopes: &[&str]) -> Self {
        let expected = set_of(scopes.iter().copied());
        self.expect(move |decision| {
            let actual = set_of(decision.grants.iter().map(|grant| grant.scope.as_str()));
            if actual == expected {
                Ok(())
            } else {
                Err(format!("granting scopes {actual:?}, expected {expected:?}"))
            }
        })
    }

    pub fn obligation(self, obligation: Obligation) -> Self {
        self.expect_grants(move |grants| {
            match grants.iter().find(|grant| grant.obligation != obligation) {
                Some(grant) => Err(format!(
                    "grant {} has obligation {:?}, expected {obligation:?}",
                    grant.scope, grant.obligation
                )),
                None => Ok(()),
            }
        })
    }

    /// Every grant carries exactly these filter items (order of items and values free).
    pub fn filters(self, items: &[(&str, &[&str])]) -> Self {
        let expected = filter_set(items);
        self.expect_grants(move |grants| {
            for grant in grants {
                let actual = grant_filter_set(grant);
                if actual != expected {
                    return Err(format!(
                        "grant {} has filters {actual:?}, expected {expected:?}",
                        grant.scope
                    ));
                }
            }
            Ok(())
        })
    }

    /// The grant of `scope` carries exactly these filter items.
    pub fn filters_of(self, scope: &str, items: &[(&str, &[&str])]) -> Self {
        let expected = filter_set(items);
        let scope = scope.to_owned();
        self.expect_grants(move |grants| {
            let Some(grant) = grants.iter().find(|grant| grant.scope == scope) else {
                return Err(format!("no grant of {scope}"));
            };
            let actual = grant_filter_set(grant);
            if actual == expected {
                Ok(())
            } else {
                Err(format!(
                    "grant {scope} has filters {actual:?}, expected {expected:?}"
                ))
            }
        })
    }

    /// No grant carries a filter constraint.
    pub fn no_filters(self) -> Self {
        self.expect_grants(
            |grants| match grants.iter().find(|grant| !grant.filters.is_empty()) {
                Some(grant) => Err(format!(
                    "grant {} has filters {:?}, expected none",
                    grant.scope, grant.filters
                )),
                None => Ok(()),
            },
        )
    }

    /// The union of the grants' resource types.
    pub fn types(self, types: &[&str]) -> Self {
        let expected = set_of(types.iter().copied());
        self.expect_grants(move |grants| {
            let actual = set_of(
                grants
                    .iter()
                    .flat_map(|grant| grant.resource_types.iter().map(String::as_str)),
            );
            if actual == expected {
                Ok(())
            } else {
                Err(format!("resource types {actual:?}, expected {expected:?}"))
            }
        })
    }

    /// Each scope is listed in `ignored_scopes` with a non-empty reason.
    pub fn ignored(self, scopes: &[&str]) -> Self {
        let scopes = owned(scopes);
        self.expect(move |decision| {
            for scope in &scopes {
                match decision
                    .ignored_scopes
                    .iter()
                    .find(|ignored| &ignored.scope == scope)
                {
                    None => return Err(format!("{scope} is not listed in ignored_scopes")),
                    Some(ignored) if ignored.reason.trim().is_empty() => {
                        return Err(format!("{scope} is ignored without a reason"));
                    }
                    Some(_) => {}
                }
            }
            Ok(())
        })
    }

    /// `included_resources` is present with exactly these readable types.
    pub fn included(self, types: &[&str]) -> Self {
        let expected = set_of(types.iter().copied());
        self.expect(move |decision| match &decision.included_resources {
            None => Err("included_resources missing".to_owned()),
            Some(included) => {
                let actual = set_of(included.readable_types.iter().map(String::as_str));
                if actual == expected {
                    Ok(())
                } else {
                    Err(format!(
                        "included readable types {actual:?}, expected {expected:?}"
                    ))
                }
            }
        })
    }

    /// The first grant's `exclude_other_patients_via` is exactly `params` (none when empty).
    pub fn excludes_other_patients_via(self, params: &[&str]) -> Self {
        let expected: Vec<String> = params.iter().map(|&param| param.to_owned()).collect();
        self.expect(move |decision| {
            let actual = decision
                .grants
                .first()
                .map(|grant| grant.exclude_other_patients_via.clone())
                .unwrap_or_default();
            if actual == expected {
                Ok(())
            } else {
                Err(format!(
                    "exclude_other_patients_via {actual:?}, expected {expected:?}"
                ))
            }
        })
    }

    pub fn no_included(self) -> Self {
        self.expect(|decision| match &decision.included_resources {
            None => Ok(()),
            Some(included) => Err(format!("unexpected included_resources {included:?}")),
        })
    }

    pub fn no_grants(self) -> Self {
        self.expect(|decision| {
            if decision.grants.is_empty() {
                Ok(())
            } else {
                Err(format!("expected no grants, got {}", decision.grants.len()))
            }
        })
    }

    /// Outcome of each Bundle entry, in order.
    pub fn entries(mut self, outcomes: &[Outcome]) -> Self {
        let expected = outcomes.to_vec();
        self.bundle_checks.push(Box::new(move |bundle| {
            let actual: Vec<Outcome> = bundle.entries.iter().map(|entry| entry.outcome).collect();
            if actual == expected {
                Ok(())
            } else {
                Err(format!("entry outcomes {actual:?}, expected {expected:?}"))
            }
        }));
        self
    }

    /// Reason of the Bundle entry at `index`.
    pub fn entry_reason(mut self, index: usize, reason: Reason) -> Self {
        self.bundle_checks
            .push(Box::new(move |bundle| match bundle.entries.get(index) {
                Some(entry) if entry.reason == reason => Ok(()),
                Some(entry) => Err(format!(
                    "entry {index} has reason {}, expected {}",
                    entry.reason.as_str(),
                    reason.as_str()
                )),
                None => Err(format!("no entry {index}")),
            }));
        self
    }

    /// Any check of the decision of the Bundle entry at `index`.
    pub fn entry_expect(
        mut self,
        index: usize,
        check: impl Fn(&Decision) -> Result<(), String> + 'static,
    ) -> Self {
        self.bundle_checks
            .push(Box::new(move |bundle| match bundle.entries.get(index) {
                Some(entry) => check(entry),
                None => Err(format!("no entry {index}")),
            }));
        self
    }

    // ---- running -------------------------------------------------------------------------

    fn token(&self) -> Result<TokenContext, String> {
        let mut claims = Map::new();
        claims.insert("scope".into(), Value::String(self.scopes.clone()));
        for (name, value) in [
            ("patient", &self.patient),
            ("fhirUser", &self.fhir_user),
            ("sub", &self.sub),
        ] {
            if let Some(value) = value {
                claims.insert(name.into(), Value::String(value.clone()));
            }
        }
        TokenContext::from_claims(&Value::Object(claims), self.policy.fhir_version)
            .map_err(|error| format!("the case's claims are refused: {error}"))
    }

    /// Runs the case; `Err` describes every mismatch.
    pub fn run(&self) -> Result<(), String> {
        match catch_unwind(AssertUnwindSafe(|| self.run_inner())) {
            Ok(result) => result,
            Err(panic) => {
                let text = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|text| (*text).to_owned()))
                    .unwrap_or_default();
                Err(format!("PANIC: {text}"))
            }
        }
    }

    fn run_inner(&self) -> Result<(), String> {
        let expect = self.expect.ok_or("the case has no expectation")?;
        let token = self.token()?;
        let engine = Engine::new(self.policy.clone());
        match self.target.as_ref().ok_or("the case has no request")? {
            Target::Line(method, path) => {
                let request = parse_request_line(method, path)
                    .map_err(|error| format!("{method} {path} does not parse: {error}"))?;
                let mut decision = engine.decide(
                    &token,
                    &request,
                    self.stored.as_ref(),
                    self.proposed.as_ref(),
                );
                if let Some(document) = &self.patch {
                    decision = engine.check_patch_document(&token, &request, document, decision);
                }
                let mut problems = Vec::new();
                if !expect.matches(decision.outcome, decision.reason) {
                    problems.push(format!(
                        "expected {}, got {}",
                        expect.describe(),
                        describe(decision.outcome, decision.reason)
                    ));
                }
                problems.extend(invariants(&decision));
                for check in &self.checks {
                    if let Err(problem) = check(&decision) {
                        problems.push(problem);
                    }
                }
                if problems.is_empty() {
                    Ok(())
                } else {
                    Err(format!(
                        "{}\n      decision: {}",
                        problems.join("; "),
                        serde_json::to_string(&decision).unwrap_or_default()
                    ))
                }
            }
            Target::Bundle(bundle) => {
                let (kind, entries) = match bundle_entries(bundle.clone()) {
                    Err(error) if expect == Expect::BadBundle => {
                        let _ = error;
                        return Ok(());
                    }
                    Err(error) => {
                        return Err(format!(
                            "expected {}, got the bundle error {error}",
                            expect.describe()
                        ));
                    }
                    Ok(read) if expect == Expect::BadBundle => {
                        return Err(format!(
                            "expected a bundle error, got a {:?} of {} entries",
                            read.0,
                            read.1.len()
                        ));
                    }
                    Ok(read) => read,
                };
                let decision = engine.decide_bundle(&token, kind, &entries);
                let mut problems = Vec::new();
                if !expect.matches(decision.outcome, decision.reason) {
                    problems.push(format!(
                        "expected {}, got {}",
                        expect.describe(),
                        describe(decision.outcome, decision.reason)
                    ));
                }
                for entry in &decision.entries {
                    problems.extend(invariants(entry));
                }
                for check in &self.bundle_checks {
                    if let Err(problem) = check(&decision) {
                        problems.push(problem);
                    }
                }
                if !self.checks.is_empty() {
                    problems.push("decision checks on a bundle case".to_owned());
                }
                if problems.is_empty() {
                    Ok(())
                } else {
                    Err(format!(
                        "{}\n      decision: {}",
                        problems.join("; "),
                        serde_json::to_string(&decision).unwrap_or_default()
                    ))
                }
            }
        }
    }
}

fn describe(outcome: Outcome, reason: Reason) -> String {
    let outcome = match outcome {
        Outcome::Allow => "allow",
        Outcome::Deny => "deny",
    };
    format!("{outcome} ({})", reason.as_str())
}

fn filter_set(items: &[(&str, &[&str])]) -> BTreeSet<(String, BTreeSet<String>)> {
    items
        .iter()
        .map(|(param, values)| ((*param).to_owned(), set_of(values.iter().copied())))
        .collect()
}

fn grant_filter_set(grant: &Grant) -> BTreeSet<(String, BTreeSet<String>)> {
    grant
        .filters
        .iter()
        .map(|item| {
            (
                item.param.clone(),
                set_of(item.values.iter().map(String::as_str)),
            )
        })
        .collect()
}

/// What holds of every decision, whatever the case: a deny grants nothing; an allow says
/// why; each context carries its obligation (§3: patient/ none, user/ the user's
/// permissions, system/ the client's policy); a compartment is always `Patient/<id>`.
fn invariants(decision: &Decision) -> Vec<String> {
    let mut problems = Vec::new();
    if decision.message.trim().is_empty() {
        problems.push("empty message".to_owned());
    }
    match decision.outcome {
        Outcome::Deny => {
            if !decision.grants.is_empty() {
                problems.push("a deny with grants".to_owned());
            }
            if decision.included_resources.is_some() {
                problems.push("a deny with included_resources".to_owned());
            }
            if matches!(
                decision.reason,
                Reason::Granted | Reason::PublicEndpoint | Reason::Unspecified
            ) {
                problems.push(format!("a deny with reason {}", decision.reason.as_str()));
            }
        }
        Outcome::Allow => {
            if !matches!(decision.reason, Reason::Granted | Reason::PublicEndpoint) {
                problems.push(format!("an allow with reason {}", decision.reason.as_str()));
            }
        }
    }
    for grant in &decision.grants {
        let expected = match grant.context {
            ScopeContext::Patient => Obligation::None,
            ScopeContext::User => Obligation::UserPermissions,
            ScopeContext::System => Obligation::ClientPolicy,
        };
        if grant.obligation != expected {
            problems.push(format!(
                "grant {} ({}) has obligation {:?}",
                grant.scope, grant.context, grant.obligation
            ));
        }
        if grant.context != ScopeContext::Patient && grant.compartment.is_some() {
            problems.push(format!(
                "{} grant {} has a compartment",
                grant.context, grant.scope
            ));
        }
        if let Some(compartment) = &grant.compartment
            && !compartment.starts_with("Patient/")
        {
            problems.push(format!("compartment {compartment} is not a Patient"));
        }
        if grant.resource_types.is_empty() {
            problems.push(format!("grant {} covers no type", grant.scope));
        }
    }
    problems
}
