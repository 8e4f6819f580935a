//! Done means, for enforcement on the way back: with Envoy in front, a FHIR server with no
//! SMART code at all returns only what the token may see.
//!
//! No Envoy binary runs here, so this test plays Envoy's part over real gRPC, in Envoy's
//! order: ext_authz `Check` on the request, then the ext_proc stream (request headers, the
//! FHIR server's real answer: headers and buffered body), applying each answer as Envoy
//! would. Behind it, the example FHIR server (`examples/fhir-server`) with its own
//! enforcement turned off: it serves everything to anyone.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a panic is a failed test"
)]

mod common;

use common::answers::{patients_named, references};
use common::envoy::check_request;
use common::example_fhir::{ExampleFhirServer, installed};
use common::ext_proc::*;
use common::oauth::{FHIR_RESOURCE, OidcProvider};
use common::*;
use envoy_types::ext_authz::v3::pb::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::ext_proc::v3::processing_response::Response as Reply;
use serde_json::{Value, json};
use tonic::Code;

/// The route Envoy serves the FHIR server under.
const PREFIX: &str = "/fhir/";

/// What the app receives.
struct Received {
    status: u16,
    body: Value,
}

/// Envoy between the app and the FHIR server, with smart-authz's ext_authz and ext_proc.
struct Envoy<'a> {
    authz: &'a TestServer,
    fhir: &'a ExampleFhirServer,
    http: reqwest::Client,
}

impl Envoy<'_> {
    /// `GET PREFIX + path` from an app holding `token`.
    async fn get(&self, token: &str, path: &str) -> Received {
        let full = format!("{PREFIX}{path}");
        // ext_authz first: a deny is the answer.
        let check = AuthorizationClient::new(self.authz.channel.clone())
            .check(check_request("GET", &full, Some(token), &[], None))
            .await
            .unwrap()
            .into_inner();
        if check.status.as_ref().unwrap().code != Code::Ok as i32 {
            let Some(HttpResponse::DeniedResponse(denied)) = check.http_response else {
                panic!("a denied response: {check:?}");
            };
            return Received {
                status: u16::try_from(denied.status.unwrap().code).unwrap(),
                body: serde_json::from_str(&denied.body).unwrap(),
            };
        }
        // Then ext_proc, on the request headers.
        let mut stream = ProcessStream::open(&self.authz.channel).await;
        let reply = stream
            .send(request_headers(
                "GET",
                &full,
                Some(token),
                &[("accept-encoding", "gzip")],
            ))
            .await;
        if let Some(local) = immediate(&reply) {
            return local_answer(local);
        }
        // Applied as Envoy applies `mode_override`: the answer goes unread only when the
        // override says so; otherwise it is sent, buffered.
        let skip = skips_the_answer(&reply);
        // The request goes upstream with ext_proc's header changes.
        let mut upstream = self
            .http
            .get(format!("{}/{path}", self.fhir.base))
            .bearer_auth(token);
        for (name, value) in set_headers(&reply) {
            upstream = upstream.header(name, value);
        }
        let answer = upstream.send().await.unwrap();
        let status = answer.status().as_u16();
        let mut headers: Vec<(String, String)> = answer
            .headers()
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_str().unwrap().to_owned()))
            .collect();
        let body = answer.bytes().await.unwrap().to_vec();
        if skip {
            stream.close().await.unwrap();
            return Received {
                status,
                body: serde_json::from_slice(&body).unwrap(),
            };
        }
        let content_type = headers
            .iter()
            .position(|(name, _)| name == "content-type")
            .map(|index| headers.remove(index).1)
            .unwrap_or_default();
        let extra: Vec<(&str, &str)> = headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        let reply = stream
            .send(response_headers(&status.to_string(), &content_type, &extra))
            .await;
        if let Some(local) = immediate(&reply) {
            return local_answer(local);
        }
        let reply = stream.send(response_body(&body)).await;
        if let Some(local) = immediate(&reply) {
            return local_answer(local);
        }
        assert!(matches!(reply.response, Some(Reply::ResponseBody(_))));
        let delivered = replaced_body(&reply).map_or(body.clone(), <[u8]>::to_vec);
        Received {
            status,
            body: serde_json::from_slice(&delivered).unwrap(),
        }
    }
}

fn local_answer(
    local: &envoy_types::pb::envoy::service::ext_proc::v3::ImmediateResponse,
) -> Received {
    Received {
        status: u16::try_from(local.status.as_ref().unwrap().code).unwrap(),
        body: serde_json::from_slice(&local.body).unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_envoy_a_fhir_server_without_smart_code_returns_only_what_the_token_may_see() {
    if !installed() {
        return;
    }
    let issuer = OidcProvider::start().await;
    let authz = TestServer::start(&format!(
        "[envoy]\nbases = [{{ prefix = \"{PREFIX}\" }}]\n[[issuers]]\nissuer = \"{}\"\naudiences = [\"{FHIR_RESOURCE}\"]\ndiscovery = true\n",
        issuer.issuer
    ))
    .await;
    let fhir = ExampleFhirServer::start(authz.address, false);
    let http = reqwest::Client::new();
    let envoy = Envoy {
        authz: &authz,
        fhir: &fhir,
        http: http.clone(),
    };
    let token = issuer
        .jwt_token(
            "launch/patient patient/Observation.rs patient/Patient.rs",
            Some("123"),
        )
        .await;

    // The FHIR server alone hands out everything: the control that makes this test mean
    // something.
    let direct: Value = http
        .get(format!(
            "{}/Observation?_include=Observation:subject",
            fhir.base
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(patients_named(&direct).contains(&"Patient/456".to_owned()));

    // A history whose first version was another patient's: the FHIR server is told to
    // move o-moved from Patient/456 to Patient/123 (no SMART code: it just does it).
    let moved = |patient: &str| {
        json!({ "resourceType": "Observation", "id": "o-moved", "status": "final",
            "code": { "text": "moved" }, "subject": { "reference": format!("Patient/{patient}") } })
    };
    for patient in ["456", "123"] {
        let status = http
            .put(format!("{}/Observation/o-moved", fhir.base))
            .header("content-type", "application/fhir+json")
            .body(moved(patient).to_string())
            .send()
            .await
            .unwrap()
            .status();
        assert!(status.is_success(), "{status}");
    }

    let mut everything_received = Vec::new();
    let search = envoy
        .get(
            &token,
            "Observation?_include=Observation:subject&_include=Observation:performer",
        )
        .await;
    assert_eq!(search.status, 200, "{}", search.body);
    let mut kept = references(&search.body);
    kept.sort();
    assert_eq!(
        kept,
        [
            "Observation/o-123-lab",
            "Observation/o-123-vitals",
            "Observation/o-moved",
            "OperationOutcome/-",
            "Patient/123",
        ],
        "{}",
        search.body
    );
    assert!(search.body.get("total").is_none());
    everything_received.push(search.body);

    let read = envoy.get(&token, "Observation/o-456-lab").await;
    assert_eq!(read.status, 403, "{}", read.body);
    assert_eq!(read.body["resourceType"], "OperationOutcome");
    everything_received.push(read.body);

    let own = envoy.get(&token, "Observation/o-123-lab").await;
    assert_eq!(own.status, 200);
    assert_eq!(own.body["id"], "o-123-lab");
    everything_received.push(own.body);

    let other_patient = envoy.get(&token, "Patient/456").await;
    assert_eq!(other_patient.status, 403, "{}", other_patient.body);
    everything_received.push(other_patient.body);

    let history = envoy.get(&token, "Observation/o-moved/_history").await;
    assert_eq!(history.status, 200, "{}", history.body);
    let versions = history.body["entry"].as_array().unwrap();
    assert_eq!(versions.len(), 1, "{}", history.body);
    assert_eq!(
        versions[0]["resource"]["subject"]["reference"],
        "Patient/123"
    );
    everything_received.push(history.body);

    // Refused by ext_authz before the FHIR server is asked.
    let named = envoy.get(&token, "Observation?subject=Patient/456").await;
    assert_eq!(named.status, 403, "{}", named.body);
    everything_received.push(named.body);

    for body in &everything_received {
        // A deny's diagnostics may repeat what the app asked for; data may name no one else.
        if body["resourceType"] != "OperationOutcome" {
            assert_eq!(
                patients_named(body),
                ["Patient/123"],
                "another patient reached the app: {body}"
            );
        }
        // Nothing of Patient/456's record: her name, her Observations' contents.
        let text = body.to_string();
        assert!(
            !text.contains("Baxter") && !text.contains("o-456-vitals"),
            "{text}"
        );
    }

    // A backend with system/*.rs sees all of it, unfiltered.
    let backend = issuer.jwt_token("system/*.rs", None).await;
    let all = envoy.get(&backend, "Observation").await;
    assert_eq!(all.status, 200);
    assert!(patients_named(&all.body).contains(&"Patient/456".to_owned()));
    assert!(all.body.get("total").is_some());
    authz.stop().await;
}
