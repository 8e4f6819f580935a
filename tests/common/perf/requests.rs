//! What the scenarios send: the methods' paths and the requests, built once.

use std::sync::Arc;

use envoy_types::ext_authz::v3::pb::CheckRequest;
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use serde_json::{Value, json};
use smart_authz::grpc::pb;

use super::preencoded::{self, Body};

pub(super) const SEARCH: &str = "Observation?code=http://loinc.org|8867-4&_count=50";
pub(super) const HEALTH_CHECK: &str = "/grpc.health.v1.Health/Check";
pub(super) const CHECK_ACCESS: &str = "/smartauthz.v1.AuthzService/CheckAccess";
pub(super) const BATCH_CHECK_ACCESS: &str = "/smartauthz.v1.AuthzService/BatchCheckAccess";
pub(super) const FILTER_RESOURCES: &str = "/smartauthz.v1.AuthzService/FilterResources";
pub(super) const INTROSPECT_TOKEN: &str = "/smartauthz.v1.AuthzService/IntrospectToken";
pub(super) const ENVOY_CHECK: &str = "/envoy.service.auth.v3.Authorization/Check";
/// `HealthCheckResponse.status` SERVING.
pub(super) const SERVING: i32 = 1;

/// A `CheckAccess` of `GET path` with `token`, and the stored resource's JSON when given.
pub(super) fn check_request(
    token: &str,
    path: &str,
    stored: Option<Vec<u8>>,
) -> pb::CheckAccessRequest {
    pb::CheckAccessRequest {
        access_token: token.to_owned(),
        request: Some(pb::check_access_request::Request::Http(pb::HttpRequest {
            method: "GET".into(),
            path: path.into(),
            ..Default::default()
        })),
        stored: stored.map(|json| pb::Resource {
            content: Some(pb::resource::Content::Json(json)),
        }),
        ..Default::default()
    }
}

/// A `CheckAccess` request the token's scopes do not grant: it reads, this deletes.
pub(super) fn delete_request(token: &str) -> pb::CheckAccessRequest {
    let mut delete = check_request(token, "Observation/o1", None);
    if let Some(pb::check_access_request::Request::Http(http)) = delete.request.as_mut() {
        http.method = "DELETE".into();
    }
    delete
}

/// An Observation of Patient/123 of about 5 KB: a panel with components.
pub fn observation_5kb() -> Vec<u8> {
    let components: Vec<Value> = (0..24)
        .map(|index| {
            json!({
                "code": { "coding": [{ "system": "http://loinc.org", "code": format!("{}-{}", 8000 + index, index % 10), "display": format!("Component measurement number {index}") }] },
                "valueQuantity": { "value": 100 + index, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]" },
            })
        })
        .collect();
    serde_json::to_vec(&json!({
        "resourceType": "Observation",
        "id": "obs-1",
        "status": "final",
        "category": [{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs" }] }],
        "code": { "coding": [{ "system": "http://loinc.org", "code": "85354-9", "display": "Blood pressure panel" }] },
        "subject": { "reference": "Patient/123" },
        "performer": [{ "reference": "Practitioner/pr1" }],
        "effectiveDateTime": "2026-11-30T09:30:00Z",
        "component": components,
    }))
    .unwrap()
}

/// A searchset of 20 Observations, every other one of another patient: the answer
/// `FilterResources` keeps half of.
pub fn searchset_20() -> Vec<u8> {
    let entries: Vec<Value> = (0..20)
        .map(|index| {
            let patient = if index % 2 == 0 { "123" } else { "456" };
            json!({
                "fullUrl": format!("https://fhir.perf/Observation/o{index}"),
                "resource": {
                    "resourceType": "Observation",
                    "id": format!("o{index}"),
                    "status": "final",
                    "code": { "coding": [{ "system": "http://loinc.org", "code": "8867-4", "display": "Heart rate" }] },
                    "subject": { "reference": format!("Patient/{patient}") },
                    "effectiveDateTime": "2026-11-30T09:30:00Z",
                    "valueQuantity": { "value": 60 + index, "unit": "beats/minute", "system": "http://unitsofmeasure.org", "code": "/min" },
                },
                "search": { "mode": "match" },
            })
        })
        .collect();
    serde_json::to_vec(&json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": entries,
    }))
    .unwrap()
}

pub(super) fn envoy_request(token: &str) -> CheckRequest {
    let headers = [
        (":authority", "fhir.perf"),
        ("authorization", &format!("Bearer {token}")),
        ("x-request-id", "0b5f3c52-9a1e-4a86-9d55-2f0c1a7e6b11"),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value.to_owned()))
    .collect();
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                http: Some(HttpRequest {
                    method: "GET".into(),
                    path: format!("/fhir/{SEARCH}"),
                    host: "fhir.perf".into(),
                    headers,
                    ..HttpRequest::default()
                }),
                ..Request::default()
            }),
            ..AttributeContext::default()
        }),
    }
}

/// A `CheckAccess` request for each of `tokens` (the search the scenarios share), encoded.
pub(super) fn encode_checks(tokens: &[String]) -> Arc<Vec<Body>> {
    Arc::new(
        tokens
            .iter()
            .map(|token| preencoded::encode(&check_request(token, SEARCH, None)))
            .collect(),
    )
}

/// A `Health/Check` request carrying `padding` bytes the server skips, encoded.
pub(super) fn padded_health_check(padding: usize) -> Body {
    preencoded::encode(&PaddedHealthCheck {
        service: String::new(),
        padding: vec![b'.'; padding],
    })
}

/// `grpc.health.v1.HealthCheckRequest` with a field of its own that the server's decoder
/// skips (field 15, unknown to Health).
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct PaddedHealthCheck {
    #[prost(string, tag = "1")]
    service: String,
    #[prost(bytes = "vec", tag = "15")]
    padding: Vec<u8>,
}
