//! Envoy's side of the ext_authz face: `CheckRequest`s built as Envoy builds them, sent with a
//! tonic client of `envoy.service.auth.v3.Authorization` from the same `envoy-types` crate,
//! and the parts of the answer the tests read.

use std::collections::HashMap;

use envoy_types::ext_authz::v3::pb::{CheckRequest, CheckResponse, HttpResponse};
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use serde_json::Value;
use tonic::Code;

use super::TestServer;

pub const ENVOY_CONFIG: &str = r#"
[envoy]
narrow_searches = true
bases = [
  { prefix = "/fhir/R4/" },
  { prefix = "/fhir/R5/", fhir_version = "r5" },
]
"#;

pub fn check_request(
    method: &str,
    path: &str,
    token: Option<&str>,
    extra_headers: &[(&str, &str)],
    body: Option<&Value>,
) -> CheckRequest {
    let mut headers: HashMap<String, String> = extra_headers
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    headers
        .entry(":authority".into())
        .or_insert_with(|| "fhir.example".into());
    if let Some(token) = token {
        headers.insert("authorization".into(), format!("Bearer {token}"));
    }
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                http: Some(HttpRequest {
                    method: method.into(),
                    path: path.into(),
                    host: headers[":authority"].clone(),
                    headers,
                    body: body.map(Value::to_string).unwrap_or_default(),
                    ..HttpRequest::default()
                }),
                ..Request::default()
            }),
            ..AttributeContext::default()
        }),
    }
}

pub async fn envoy_check(server: &TestServer, request: CheckRequest) -> CheckResponse {
    AuthorizationClient::new(server.channel.clone())
        .check(request)
        .await
        .expect("Check answers")
        .into_inner()
}

pub struct Allowed<'a> {
    pub set: HashMap<&'a str, &'a str>,
    pub removed: Vec<&'a str>,
    pub query: Vec<(&'a str, &'a str)>,
}

pub fn ok_response(response: &CheckResponse) -> Allowed<'_> {
    assert_eq!(
        response.status.as_ref().unwrap().code,
        Code::Ok as i32,
        "{response:?}"
    );
    let Some(HttpResponse::OkResponse(ok)) = &response.http_response else {
        panic!("expected an OkHttpResponse: {response:?}");
    };
    Allowed {
        set: ok
            .headers
            .iter()
            .map(|option| {
                let header = option.header.as_ref().unwrap();
                (header.key.as_str(), header.value.as_str())
            })
            .collect(),
        removed: ok.headers_to_remove.iter().map(String::as_str).collect(),
        query: ok
            .query_parameters_to_set
            .iter()
            .map(|param| (param.key.as_str(), param.value.as_str()))
            .collect(),
    }
}

pub fn denied_response(response: &CheckResponse, http_status: u16) -> (HashMap<&str, &str>, Value) {
    let Some(HttpResponse::DeniedResponse(denied)) = &response.http_response else {
        panic!("expected a DeniedHttpResponse: {response:?}");
    };
    assert_eq!(denied.status.as_ref().unwrap().code, http_status as i32);
    assert_ne!(response.status.as_ref().unwrap().code, Code::Ok as i32);
    let headers = denied
        .headers
        .iter()
        .map(|option| {
            let header = option.header.as_ref().unwrap();
            (header.key.as_str(), header.value.as_str())
        })
        .collect();
    let body: Value = serde_json::from_str(&denied.body).expect("an OperationOutcome");
    assert_eq!(body["resourceType"], "OperationOutcome");
    (headers, body)
}

/// The raw body a client sent, as Envoy forwards it, its `content-length` declared as a
/// client does (a form without its length is refused) unless the request already has one.
pub fn with_raw_body(mut request: CheckRequest, body: &str) -> CheckRequest {
    let http = http_of(&mut request);
    http.body = body.to_owned();
    http.headers
        .entry("content-length".to_owned())
        .or_insert_with(|| body.len().to_string());
    request
}

/// The HTTP request of a `CheckRequest` made by [`check_request`].
pub fn http_of(request: &mut CheckRequest) -> &mut HttpRequest {
    request
        .attributes
        .as_mut()
        .and_then(|attributes| attributes.request.as_mut())
        .and_then(|request| request.http.as_mut())
        .expect("check_request makes an HTTP request")
}
