//! The `x-smart-constraints` header, written straight from the decision, says what the
//! FHIR server must enforce: every grant field, the include rule, a bundle's entries; and
//! every client header a server may read as `x-smart-*` is the service's.

use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use serde_json::{Value, json};

use super::*;
use crate::decision::{IncludedResources, Obligation, Outcome};
use crate::smart::{FilterItem, ScopeContext};

fn grant() -> Grant {
    Grant {
        scope: "patient/Observation.rs?category=laboratory".to_owned(),
        context: ScopeContext::Patient,
        compartment: Some("Patient/123".to_owned()),
        compartment_params: vec!["subject".to_owned(), "performer".to_owned()],
        exclude_other_patients_via: Vec::new(),
        answer_must_be_read: false,
        filters: vec![FilterItem {
            param: "category".to_owned(),
            values: vec!["laboratory".to_owned()],
        }],
        resource_types: vec!["Observation".to_owned()],
        obligation: Obligation::None,
    }
}

fn allow(included: Option<Vec<&str>>) -> Decision {
    Decision {
        outcome: Outcome::Allow,
        reason: Reason::Granted,
        message: "allowed".to_owned(),
        grants: vec![grant()],
        ignored_scopes: Vec::new(),
        included_resources: included.map(|types| IncludedResources {
            readable_types: types.into_iter().map(str::to_owned).collect(),
        }),
    }
}

/// The header the answer sets, as JSON.
fn constraints_of(response: &CheckResponse) -> Value {
    let Some(HttpResponse::OkResponse(ok)) = &response.http_response else {
        panic!("not an allow: {response:?}");
    };
    let header = ok
        .headers
        .iter()
        .filter_map(|option| option.header.as_ref())
        .find(|header| header.key == CONSTRAINTS_HEADER)
        .expect("the constraints header is set");
    serde_json::from_str(&header.value).expect("the header is JSON")
}

#[test]
fn the_header_holds_every_grant_field_and_the_include_rule() {
    let with_includes = allowed(
        &allow(Some(vec!["Patient", "Practitioner"])),
        None,
        &HashMap::new(),
        None,
    );
    assert_eq!(
        constraints_of(&with_includes),
        json!({
            "reason": "granted",
            "grants": [{
                "scope": "patient/Observation.rs?category=laboratory",
                "context": "patient",
                "compartment": "Patient/123",
                "compartment_params": ["subject", "performer"],
                "filters": [{"param": "category", "values": ["laboratory"]}],
                "resource_types": ["Observation"],
                "obligation": "none",
            }],
            "include_readable_types": ["Patient", "Practitioner"],
        })
    );
    let without = constraints_of(&allowed(&allow(None), None, &HashMap::new(), None));
    assert!(without.get("include_readable_types").is_none(), "{without}");
    assert_eq!(without["grants"][0]["compartment"], "Patient/123");
}

#[test]
fn a_bundle_lists_each_entrys_grants() {
    let bundle = BundleDecision {
        kind: crate::decision::BundleKind::Transaction,
        outcome: Outcome::Allow,
        reason: Reason::Granted,
        message: "allowed".to_owned(),
        entries: vec![allow(None), allow(None)],
    };
    let token = VerifiedToken {
        context: crate::smart::TokenContext::default(),
        claims: crate::token::IntrospectionClaims::default(),
        expires_at: None,
        source: crate::token::TokenSource::LocalJwt,
        issuer: "https://issuer.test".to_owned(),
        audiences: Vec::new(),
        keys: None,
    };
    let constraints = constraints_of(&allowed_bundle(&bundle, &token, &HashMap::new()));
    assert_eq!(constraints["reason"], "granted");
    let entries = constraints["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 2);
    for entry in entries {
        assert_eq!(entry["grants"][0]["compartment"], "Patient/123");
        assert_eq!(entry["grants"][0]["filters"][0]["param"], "category");
    }
}

#[test]
fn a_header_a_server_may_read_as_x_smart_is_the_services() {
    for name in [
        "x-smart-patient",
        "X-Smart-Tenant",
        "x_smart_patient",
        "X_SMART-other",
        "x-smart-",
    ] {
        assert!(reads_as_smart_header(name), "{name}");
    }
    for name in [
        "x-smart",
        "x-smarter-thing",
        "xsmart-patient",
        "x-smart\u{e9}",
        "",
    ] {
        assert!(!reads_as_smart_header(name), "{name}");
    }
}

#[test]
fn the_refusals_for_memory_say_whether_a_retry_may_pass() {
    let denied = |refusal: Refusal| {
        let response = refused(&refusal);
        let Some(HttpResponse::DeniedResponse(denied)) = response.http_response else {
            panic!("a denied response: {response:?}");
        };
        let retry_after = denied.headers.iter().any(|option| {
            option
                .header
                .as_ref()
                .is_some_and(|header| header.key == "retry-after" && header.value == "1")
        });
        (denied.status.map(|status| status.code), retry_after)
    };
    assert_eq!(
        denied(Refusal::Overloaded("busy".into())),
        (Some(HttpStatusCode::ServiceUnavailable as i32), true)
    );
    assert_eq!(
        denied(Refusal::TooLarge("never".into())),
        (Some(HttpStatusCode::PayloadTooLarge as i32), false)
    );
}
