//! End to end: a real FHIR server (`examples/fhir-server`, Medplum's FHIR router) that asks
//! smart-authz about every request, called over HTTP with SMART access tokens from a real
//! issuer (oidc-provider, RFC 9068 JWTs). What reaches the app is what the token may see.
//!
//! `.ci/run` installs the example's packages (see `common::example_fhir`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a panic is a failed test"
)]

mod common;

use common::example_fhir::{ExampleFhirServer, installed};
use common::oauth::{FHIR_RESOURCE, OidcProvider};
use common::*;
use serde_json::{Value, json};

const VITALS: &str = "http://terminology.hl7.org/CodeSystem/observation-category|vital-signs";

struct App<'a> {
    fhir: &'a ExampleFhirServer,
    http: reqwest::Client,
    token: String,
}

impl App<'_> {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}/{path}", self.fhir.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/fhir+json")
                .body(body.to_string());
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.send(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }
}

/// The `Type/id` of every entry of a Bundle that is not the withheld-notice outcome.
fn ids(bundle: &Value) -> Vec<String> {
    let mut ids: Vec<String> = bundle["entry"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter(|entry| entry["search"]["mode"] != "outcome")
        .map(|entry| {
            format!(
                "{}/{}",
                entry["resource"]["resourceType"].as_str().unwrap(),
                entry["resource"]["id"].as_str().unwrap()
            )
        })
        .collect();
    ids.sort();
    ids
}

fn observation(patient: &str) -> Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "category": [{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs" }] }],
        "code": { "coding": [{ "system": "http://loinc.org", "code": "8867-4" }] },
        "subject": { "reference": format!("Patient/{patient}") },
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fhir_server_that_delegates_to_smart_authz_returns_only_what_the_token_may_see() {
    if !installed() {
        return;
    }
    let issuer = OidcProvider::start().await;
    let authz = TestServer::start(&format!(
        "[[issuers]]\nissuer = \"{}\"\naudiences = [\"{FHIR_RESOURCE}\"]\ndiscovery = true\n",
        issuer.issuer
    ))
    .await;
    let fhir = ExampleFhirServer::start(authz.address, true);
    let app = |token: String| App {
        fhir: &fhir,
        http: reqwest::Client::new(),
        token,
    };

    // A patient app sees only its patient's Observations: search, read, _include.
    let patient = app(issuer
        .jwt_token(
            "launch/patient patient/Observation.rs patient/Patient.rs",
            Some("123"),
        )
        .await);
    let (status, bundle) = patient.get("Observation").await;
    assert_eq!(status, 200, "{bundle}");
    assert_eq!(
        ids(&bundle),
        ["Observation/o-123-lab", "Observation/o-123-vitals"]
    );
    assert!(
        bundle.get("total").is_none(),
        "a count of what was withheld leaks"
    );
    let (status, _) = patient.get("Observation/o-123-lab").await;
    assert_eq!(status, 200);
    let (status, refused) = patient.get("Observation/o-456-lab").await;
    assert_eq!(status, 403, "{refused}");
    assert_eq!(refused["resourceType"], "OperationOutcome");
    let (status, refused) = patient.get("Patient/456").await;
    assert_eq!(status, 403, "{refused}");
    let (status, bundle) = patient
        .get("Observation?_include=Observation:subject&_include=Observation:performer")
        .await;
    assert_eq!(status, 200, "{bundle}");
    assert_eq!(
        ids(&bundle),
        [
            "Observation/o-123-lab",
            "Observation/o-123-vitals",
            "Patient/123"
        ],
        "the practitioner is of a type the token cannot read, Patient/456 another patient"
    );
    let (status, _) = patient.get("Observation?subject=Patient/456").await;
    assert_eq!(
        status, 403,
        "a search naming another patient is refused whole"
    );

    // A category-limited token sees only that category.
    let vitals = app(issuer
        .jwt_token(
            &format!("launch/patient patient/Observation.rs?category={VITALS}"),
            Some("123"),
        )
        .await);
    let (status, bundle) = vitals.get("Observation").await;
    assert_eq!(status, 200, "{bundle}");
    assert_eq!(ids(&bundle), ["Observation/o-123-vitals"]);
    let (status, _) = vitals.get("Observation/o-123-lab").await;
    assert_eq!(status, 403);

    // A write into another patient's compartment is refused; into its own, accepted.
    let writer = app(issuer
        .jwt_token("launch/patient patient/Observation.crs", Some("123"))
        .await);
    let (status, refused) = writer.post("Observation", &observation("456")).await;
    assert_eq!(status, 403, "{refused}");
    let (status, created) = writer.post("Observation", &observation("123")).await;
    assert_eq!(status, 201, "{created}");

    // A transaction with one bad entry is refused whole: nothing of it is written.
    let entry = |patient: &str| json!({ "resource": observation(patient), "request": { "method": "POST", "url": "Observation" } });
    let transaction = json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [entry("123"), entry("456")],
    });
    let (status, refused) = writer.post("", &transaction).await;
    assert_eq!(status, 403, "{refused}");
    // So is a conditional create whose search names another patient: the server would run
    // it first, and answer with that patient's match.
    let mut conditional = entry("123");
    conditional["request"]["ifNoneExist"] = json!("subject=Patient/456");
    let transaction = json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [conditional],
    });
    let (status, refused) = writer.post("", &transaction).await;
    assert_eq!(status, 403, "{refused}");

    // system/*.rs sees everything, including what the patient apps could not.
    let backend = app(issuer.jwt_token("system/*.rs", None).await);
    let (status, bundle) = backend.get("Observation").await;
    assert_eq!(status, 200, "{bundle}");
    assert_eq!(
        ids(&bundle).len(),
        5,
        "four seeded and the one created, none from the refused transaction: {bundle}"
    );
    assert!(
        bundle.get("total").is_some(),
        "nothing withheld, total kept"
    );

    // No token: 401.
    let anonymous = app(String::new());
    let response = anonymous
        .http
        .get(format!("{}/Observation", fhir.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    authz.stop().await;
}
