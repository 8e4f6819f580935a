//! The second half of the pipeline: decisions for a token that passed.

use std::sync::Arc;

use serde_json::Value;

use super::{Authorizer, Call, Refusal, Verdict};
use crate::decision::{BundleDecision, BundleEntry, BundleKind, Decision, Engine, Outcome};
use crate::fhir::{FhirRequest, Interaction, Resource};
use crate::smart::TokenContext;
use crate::telemetry::{DecisionEvent, EventToken, traces};
use crate::token::{TokenFingerprint, VerifiedToken};

/// A verified token, ready to decide with one engine. Every answer through it is reported
/// once, with the token's context and fingerprint.
#[derive(Debug)]
pub struct Admitted<'a> {
    authorizer: &'a Authorizer,
    pub(super) call: Call<'a>,
    pub(super) engine: &'a Engine,
    pub(super) token: Arc<VerifiedToken>,
    /// The token's context read again for the engine's FHIR version, when it differs from
    /// the version the token was verified for (scopes name version-specific types).
    reread: Option<TokenContext>,
    fingerprint: TokenFingerprint,
}

impl<'a> Admitted<'a> {
    pub(super) fn new(
        authorizer: &'a Authorizer,
        call: Call<'a>,
        engine: &'a Engine,
        token: Arc<VerifiedToken>,
        fingerprint: TokenFingerprint,
    ) -> Self {
        let version = engine.fhir_version();
        let reread = (version != authorizer.authenticator.fhir_version())
            .then(|| token.context.for_version(version));
        Admitted {
            authorizer,
            call,
            engine,
            token,
            reread,
            fingerprint,
        }
    }

    /// What the engine decides on.
    pub(super) fn context(&self) -> &TokenContext {
        self.reread.as_ref().unwrap_or(&self.token.context)
    }

    /// Decides one request; `patch`, a patch's document when it came with the request;
    /// `if_none_exist`, the query of a conditional create. A `POST` search whose body's
    /// parameters were not added ([`super::add_search_body`]) is refused.
    pub fn decide(
        self,
        request: &FhirRequest,
        stored: Option<&Resource>,
        proposed: Option<&Resource>,
        patch: Option<&Value>,
        if_none_exist: Option<&str>,
    ) -> Verdict<Decision> {
        if let Some(refusal) = super::request::unread_search_body(request) {
            self.refuse(Some(request), refusal.clone());
            return Verdict::Refused(refusal);
        }
        let mut decision = self.decision(request, stored, proposed, if_none_exist);
        if let Some(document) = patch {
            decision =
                self.engine
                    .check_patch_document(self.context(), request, document, decision);
        }
        self.conclude(request, decision)
    }

    /// The engine's decision, not yet reported.
    pub(super) fn decision(
        &self,
        request: &FhirRequest,
        stored: Option<&Resource>,
        proposed: Option<&Resource>,
        if_none_exist: Option<&str>,
    ) -> Decision {
        let decision = self
            .engine
            .decide(self.context(), request, stored, proposed);
        // Servers run the header's search for a create only, and ignore it elsewhere.
        let conditional_create = request.interaction == Interaction::Create;
        match if_none_exist.filter(|_| conditional_create && decision.is_allowed()) {
            Some(query) => {
                self.engine
                    .check_if_none_exist(self.context(), request, query, decision)
            }
            None => decision,
        }
    }

    /// Reports `decision` and answers it.
    pub(super) fn conclude(self, request: &FhirRequest, decision: Decision) -> Verdict<Decision> {
        self.authorizer.report_decision(
            self.call,
            &decision,
            Some(request),
            Some((self.event_token(), self.fingerprint)),
            None,
        );
        Verdict::Decided {
            decision,
            token: self.rendered_token(),
        }
    }

    /// Who the events of this token's decisions are for.
    fn event_token(&self) -> EventToken<'_> {
        event_token(self.engine, self.context())
    }

    /// The token as the faces render it: [`with_patient_in_context`].
    pub(super) fn rendered_token(&self) -> Arc<VerifiedToken> {
        with_patient_in_context(self.engine, &self.token, self.context())
    }

    /// Reports an answer with no grants to name: the verdict on a FHIR server's answer to
    /// `request` (with how many of its entries were withheld), or a Bundle's.
    pub(super) fn report(
        &self,
        request: Option<&FhirRequest>,
        outcome: Outcome,
        reason: &'static str,
        withheld: Option<usize>,
    ) {
        self.authorizer.observer.decided(
            &DecisionEvent {
                rpc: self.call.rpc,
                outcome,
                reason,
                request,
                grants: &[],
                token: Some(self.event_token()),
                token_fingerprint: Some(self.fingerprint),
                entry: self.call.entry,
                fhir_server: self.call.fhir_server,
                request_id: self.call.request_id,
                withheld,
            },
            self.call.span,
        );
    }

    /// Decides a batch or transaction entry by entry; one event per entry, or one for the
    /// Bundle when it has none. `request` is the request that carried the Bundle, when
    /// there was one. The runtime serves other calls between entries
    /// ([`super::between_entries`]), so each entry's event is reported as it is decided: a
    /// call dropped part-way (its client gone, its deadline past) has reported the entries
    /// decided before, as a single call reports its decision before its answer is sent.
    pub async fn decide_bundle(
        self,
        request: Option<&FhirRequest>,
        kind: BundleKind,
        entries: &[BundleEntry],
    ) -> Verdict<BundleDecision> {
        traces::record_bundle_size(self.call.span, entries.len());
        if let Some(refusal) = super::batch_size_refusal(entries.len()) {
            self.refuse(request, refusal.clone());
            return Verdict::Refused(refusal);
        }
        let mut decisions = Vec::with_capacity(entries.len());
        for (index, entry) in entries.iter().enumerate() {
            let decision = self.engine.decide_entry(self.context(), entry);
            self.authorizer.report_decision(
                self.call,
                &decision,
                entry.request.as_ref().ok(),
                Some((self.event_token(), self.fingerprint)),
                Some(index),
            );
            decisions.push(decision);
            super::between_entries().await;
        }
        let decision = BundleDecision::of(kind, decisions);
        if decision.entries.is_empty() {
            // No entry to report it: the Bundle's own answer is the one event.
            self.report(request, decision.outcome, decision.reason.as_str(), None);
        }
        traces::record_decision(
            self.call.span,
            decision.outcome,
            decision.reason.as_str(),
            None,
            &[],
        );
        Verdict::Decided {
            decision,
            token: self.rendered_token(),
        }
    }

    /// Refuses the request for what the face found once the token was known (a body it
    /// cannot read): one deny event with the token's context.
    pub fn refuse(self, request: Option<&FhirRequest>, refusal: Refusal) {
        self.authorizer.report_refusal(
            self.call,
            &refusal,
            request,
            Some(self.event_token()),
            Some(self.fingerprint),
        );
    }
}

/// `token` as the faces render it (`x-smart-patient`, `Subject.patient`, the introspection
/// answer's `patient`): with the patient `engine` decides for, which under
/// `patient_from_fhir_user` comes from a Patient `fhirUser` rather than a `patient` claim
/// (§3), and none when the claim names another server's patient. Without it a grant that
/// excludes other patients would name no patient for the server to compare with, or one
/// the decision did not use.
pub(super) fn with_patient_in_context(
    engine: &Engine,
    token: &Arc<VerifiedToken>,
    context: &TokenContext,
) -> Arc<VerifiedToken> {
    let claimed = token.context.patient.as_deref();
    let decided = engine.patient_in_context(context);
    if claimed == decided {
        return Arc::clone(token);
    }
    let mut rendered = VerifiedToken::clone(token);
    rendered.context.patient = decided.map(str::to_owned);
    Arc::new(rendered)
}

/// Who the events of `context`'s decisions on `engine`'s server are for: the token as it
/// came (its claims, as the audit line's `patient_claim` shows them), and the patient the
/// engine decides for.
pub(super) fn event_token<'a>(engine: &Engine, context: &'a TokenContext) -> EventToken<'a> {
    EventToken {
        context,
        patient: engine.patient_in_context(context),
    }
}
