//! Fail closed on any input: random scopes, request lines and resources never make the engine
//! panic, and its answers keep their invariants.

use proptest::prelude::*;
use serde_json::json;

use crate::decision::{Engine, Outcome, Policy, Reason};
use crate::fhir::{FhirVersion, Resource, parse_request_line};
use crate::smart::{ScopeSet, TokenContext};

fn scope_text() -> impl Strategy<Value = String> {
    let scope = prop_oneof![
        "(patient|user|system)/(Observation|Patient|Condition|Device|Practitioner|\\*)\\.(c?r?u?d?s?|read|write|\\*)",
        "(patient|user|system)/(Observation|\\*)\\.rs\\?(category|_tag|code|subject|date)=[a-z0-9|:/,%]{1,12}",
        "[a-zA-Z/._*?=&|]{0,16}",
    ];
    prop::collection::vec(scope, 0..5).prop_map(|scopes| scopes.join(" "))
}

fn request_path() -> impl Strategy<Value = String> {
    prop_oneof![
        "(Observation|Patient|Condition|Device|Group|Foo)(/[a-z0-9]{1,3})?(/_history(/[0-9])?)?(\\?(_type|patient|subject|code|_id|_include)=[A-Za-z0-9/,|]{0,10})?",
        "(Patient/[0-9]{1,3}/(Observation|\\*|\\$everything))|(\\$(export|validate|meta))|(Observation/\\$(lastn|stats))",
        "\\??[A-Za-z0-9$_*?=&,/|:.%-]{0,30}",
    ]
}

fn stored_resource() -> impl Strategy<Value = Option<Resource>> {
    let reference =
        "(Patient|Group|Practitioner)/[0-9]{1,3}|#p1|urn:uuid:1|https://x/fhir/Patient/1[0-9]?";
    prop_oneof![
        Just(None),
        (reference, "[a-z]{1,8}").prop_map(|(reference, code)| Some(Resource::Json(json!({
            "resourceType": "Observation",
            "subject": {"reference": reference},
            "category": [{"coding": [{"code": code}]}]
        })))),
        (reference).prop_map(|reference| Some(Resource::Json(json!({
            "resourceType": "Patient", "id": "123", "link": [{"other": {"reference": reference}}]
        })))),
    ]
}

proptest! {
    #[test]
    fn the_engine_never_panics_and_keeps_its_invariants(
        scopes in scope_text(),
        method in prop::sample::select(vec!["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]),
        path in request_path(),
        patient in prop::option::of("[0-9]{1,3}"),
        fhir_user in prop::option::of("(Patient|Practitioner)/[0-9]{1,3}"),
        stored in stored_resource(),
        version in prop::sample::select(FhirVersion::ALL.to_vec()),
    ) {
        let Ok(request) = parse_request_line(method, &path) else { return Ok(()) };
        let token = TokenContext {
            scopes: std::sync::Arc::new(ScopeSet::parse(&scopes, version)),
            patient,
            fhir_user,
            ..TokenContext::default()
        };
        let decision = Engine::new(Policy::for_version(version)).decide(&token, &request, stored.as_ref(), None);
        match decision.outcome {
            Outcome::Allow => prop_assert!(matches!(decision.reason, Reason::Granted | Reason::PublicEndpoint)),
            Outcome::Deny => {
                prop_assert!(decision.grants.is_empty());
                prop_assert!(decision.reason != Reason::Granted && decision.reason != Reason::Unspecified);
            }
        }
        let no_resource_scope = token.scopes.resource_scopes().next().is_none();
        if no_resource_scope && decision.is_allowed() {
            // Only public endpoints and operations needing a valid token alone may pass.
            prop_assert!(decision.grants.is_empty(), "{decision:?}");
        }
    }
}

proptest! {
    /// Scopes combine as a union (§3.0.2.2): a token with one more scope may do at least
    /// what it could before.
    #[test]
    fn adding_a_scope_never_turns_an_allow_into_a_deny(
        scopes in scope_text(),
        extra in scope_text(),
        method in prop::sample::select(vec!["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]),
        path in request_path(),
        patient in prop::option::of("[0-9]{1,3}"),
        stored in stored_resource(),
        version in prop::sample::select(FhirVersion::ALL.to_vec()),
    ) {
        let Ok(request) = parse_request_line(method, &path) else { return Ok(()) };
        let engine = Engine::new(Policy::for_version(version));
        let token = |scopes: &str| TokenContext {
            scopes: std::sync::Arc::new(ScopeSet::parse(scopes, version)),
            patient: patient.clone(),
            ..TokenContext::default()
        };
        let before = engine.decide(&token(&scopes), &request, stored.as_ref(), None);
        let after = engine.decide(&token(&format!("{scopes} {extra}")), &request, stored.as_ref(), None);
        if before.is_allowed() {
            prop_assert!(after.is_allowed(), "{scopes:?} + {extra:?} on {method} {path}: {after:?}");
        }
    }

    /// The `http` and structured forms of one request decide the same: the structured form
    /// is the request line read back, with every parameter in it (a POST's body parameters
    /// added, as a face does before it decides).
    #[test]
    fn both_request_forms_decide_the_same(
        scopes in scope_text(),
        method in prop::sample::select(vec!["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]),
        path in request_path(),
        patient in prop::option::of("[0-9]{1,3}"),
        version in prop::sample::select(FhirVersion::ALL.to_vec()),
    ) {
        let Ok(mut request) = parse_request_line(method, &path) else { return Ok(()) };
        request.params_in_body = false;
        let Ok(structured) = crate::fhir::validate_structured(&request) else {
            // Only a batch has no structured form.
            prop_assert!(request.interaction == crate::fhir::Interaction::Batch);
            return Ok(());
        };
        let engine = Engine::new(Policy::for_version(version));
        let token = TokenContext {
            scopes: std::sync::Arc::new(ScopeSet::parse(&scopes, version)),
            patient,
            ..TokenContext::default()
        };
        prop_assert_eq!(
            engine.decide(&token, &request, None, None),
            engine.decide(&token, &structured, None, None)
        );
    }
}
