//! The AuthZEN HTTP JSON face, called with plain HTTP requests as a client without gRPC
//! would: the metadata, one evaluation in both request forms, several with each
//! semantic, what it refuses, and the service's own filter endpoint.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a panic is a failed test"
)]

mod common;

use common::answers::{mixed_search, observation_of, patients_named, references, searchset};
use common::*;
use serde_json::{Value, json};

/// The context of a caller that applies an allow's grants (compartment, filters, ...).
static ENFORCING: std::sync::LazyLock<Value> =
    std::sync::LazyLock::new(|| json!({ "enforces_grants": true }));

const CONFIG: &str =
    "[authzen]\nlisten = \"127.0.0.1:0\"\nbase_url = \"https://authz.example.org\"\n";

struct Face {
    base: String,
    http: reqwest::Client,
}

impl Face {
    fn of(server: &TestServer) -> Self {
        Face {
            base: format!(
                "http://{}",
                server.authzen_address.expect("[authzen] is configured")
            ),
            http: reqwest::Client::new(),
        }
    }

    async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.post_raw(path, "application/json", body.to_string(), None)
            .await
    }

    async fn post_raw(
        &self,
        path: &str,
        content_type: &str,
        body: String,
        request_id: Option<&str>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", content_type)
            .body(body);
        if let Some(id) = request_id {
            request = request.header("x-request-id", id);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let echoed = response
            .headers()
            .get("x-request-id")
            .map(|value| value.to_str().unwrap().to_owned());
        if let Some(id) = request_id.filter(|_| status == 200) {
            assert_eq!(echoed.as_deref(), Some(id), "X-Request-ID is echoed");
        }
        (status, response.json().await.unwrap())
    }
}

fn subject(token: &str) -> Value {
    json!({ "type": "access_token", "id": token })
}

fn http_line(method: &str, path: &str) -> (Value, Value) {
    (
        json!({ "name": method }),
        json!({ "type": "fhir_request", "id": path }),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metadata_names_both_endpoints() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, CONFIG).await;
    let face = Face::of(&server);
    let metadata: Value = face
        .http
        .get(format!("{}/.well-known/authzen-configuration", face.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        metadata,
        json!({
            "policy_decision_point": "https://authz.example.org",
            "access_evaluation_endpoint": "https://authz.example.org/access/v1/evaluation",
            "access_evaluations_endpoint": "https://authz.example.org/access/v1/evaluations",
        })
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_evaluation_is_decided_with_its_constraints_in_the_context() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, CONFIG).await;
    let face = Face::of(&server);
    let token = issuer.patient_token("patient/Observation.rs", "123");

    let (action, resource) = http_line("GET", "Observation?code=8867-4");
    let body = json!({ "subject": subject(&token), "action": action, "resource": resource,
        "context": ENFORCING.clone() });
    let (status, answer) = face
        .post_raw(
            "/access/v1/evaluation",
            "application/json; charset=utf-8",
            body.to_string(),
            Some("req-1"),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["decision"], true);
    assert_eq!(answer["context"]["reason"], "granted");
    assert_eq!(answer["context"]["grants"][0]["compartment"], "Patient/123");
    assert_eq!(answer["context"]["subject"]["patient"], "123");

    // To a caller that does not say it applies the grants, an allow under a compartment is
    // no: a generic enforcement point would pass every patient's search on.
    let mut unsaid = body.clone();
    unsaid.as_object_mut().unwrap().remove("context");
    let (status, conditional) = face.post("/access/v1/evaluation", &unsaid).await;
    assert_eq!(status, 200, "{conditional}");
    assert_eq!(conditional["decision"], false, "{conditional}");
    assert_eq!(conditional["context"]["reason"], "grants_not_enforced");
    assert_eq!(
        conditional["context"]["grants"][0]["compartment"],
        "Patient/123"
    );
    unsaid["context"] = json!({ "enforces_grants": "yes" });
    let (status, _) = face.post("/access/v1/evaluation", &unsaid).await;
    assert_eq!(status, 400);
    // An allow with nothing left to apply is yes to any caller: a read judged on the
    // stored resource.
    let own = json!({
        "subject": subject(&token),
        "action": { "name": "read" },
        "resource": { "type": "Observation", "id": "obs-1", "properties": { "stored": observation("123") } },
    });
    let (_, outright) = face.post("/access/v1/evaluation", &own).await;
    assert_eq!(outright["decision"], true, "{outright}");

    // The structured form decides the same request the same way.
    let structured = json!({
        "subject": subject(&token),
        "action": { "name": "search-type" },
        "resource": { "type": "Observation", "properties": { "query": "code=8867-4" } },
        "context": ENFORCING.clone(),
    });
    let (_, same) = face.post("/access/v1/evaluation", &structured).await;
    assert_eq!(same, answer);

    // A read judged on the stored resource: another patient's Observation is a deny.
    let foreign = json!({
        "subject": subject(&token),
        "action": { "name": "read" },
        "resource": { "type": "Observation", "id": "obs-1", "properties": { "stored": observation("456") } },
    });
    let (status, denied) = face.post("/access/v1/evaluation", &foreign).await;
    assert_eq!(status, 200);
    assert_eq!(denied["decision"], false, "{denied}");
    assert_eq!(denied["context"]["reason"], "outside_compartment");
    assert!(denied["context"].get("grants").is_none());

    // A token problem is a deny with its reason, as on the gRPC API.
    let (action, resource) = http_line("GET", "Observation/o1");
    let missing = json!({ "subject": subject(""), "action": action, "resource": resource });
    let (status, refused) = face.post("/access/v1/evaluation", &missing).await;
    assert_eq!(status, 200);
    assert_eq!(refused["decision"], false);
    assert_eq!(refused["context"]["reason"], "token_missing");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_evaluations_take_defaults_and_each_semantic() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, CONFIG).await;
    let face = Face::of(&server);
    let token = issuer.patient_token("patient/Observation.rs", "123");
    let items = json!([
        { "resource": { "type": "fhir_request", "id": "Observation/o1" } },
        { "resource": { "type": "fhir_request", "id": "Condition/c1" } },
        { "action": { "name": "DELETE" }, "resource": { "type": "fhir_request", "id": "Observation/o1" } },
        { "resource": { "type": "fhir_request", "id": "Observation?patient=123" } },
    ]);
    let request = |semantic: Option<&str>| {
        let mut body = json!({
            "subject": subject(&token),
            "action": { "name": "GET" },
            "context": ENFORCING.clone(),
            "evaluations": items,
        });
        if let Some(semantic) = semantic {
            body["options"] = json!({ "evaluations_semantic": semantic });
        }
        body
    };
    let decisions = |answer: &Value| -> Vec<bool> {
        answer["evaluations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| item["decision"].as_bool().unwrap())
            .collect()
    };
    let (status, all) = face.post("/access/v1/evaluations", &request(None)).await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(decisions(&all), [true, false, false, true]);
    let (_, stop_deny) = face
        .post(
            "/access/v1/evaluations",
            &request(Some("deny_on_first_deny")),
        )
        .await;
    assert_eq!(decisions(&stop_deny), [true, false]);
    let (_, stop_permit) = face
        .post(
            "/access/v1/evaluations",
            &request(Some("permit_on_first_permit")),
        )
        .await;
    assert_eq!(decisions(&stop_permit), [true]);
    let (status, _) = face
        .post("/access/v1/evaluations", &request(Some("first_come")))
        .await;
    assert_eq!(status, 400);

    // An item that cannot be read is a deny in its place, with the error.
    let mixed = json!({
        "subject": subject(&token),
        "action": { "name": "GET" },
        "context": ENFORCING.clone(),
        "evaluations": [
            { "resource": { "type": "fhir_request", "id": "Observation/o1" } },
            { "resource": { "type": "fhir_request", "id": "Observation/../Patient/456" } },
            { "action": { "name": "fetch" }, "resource": { "type": "fhir_request", "id": "Observation/o1" } },
        ],
    });
    let (status, answer) = face.post("/access/v1/evaluations", &mixed).await;
    assert_eq!(status, 200);
    assert_eq!(decisions(&answer), [true, false, false]);
    assert_eq!(answer["evaluations"][1]["context"]["error"]["status"], 400);
    assert_eq!(answer["evaluations"][2]["context"]["error"]["status"], 400);

    // Without evaluations, the request is one evaluation.
    let (action, resource) = http_line("GET", "Observation/o1");
    let single = json!({ "subject": subject(&token), "action": action, "resource": resource,
        "context": ENFORCING.clone() });
    let (_, answer) = face.post("/access/v1/evaluations", &single).await;
    assert_eq!(answer["decision"], true);

    // The default resource's stored version is read once and holds for every item that
    // takes it; a member AuthZEN does not define is ignored (its §10.1.1), so an item with
    // a misspelt `resorce` takes the default resource.
    let theirs = json!({
        "resourceType": "Observation", "id": "o9", "status": "final",
        "code": { "text": "x" }, "subject": { "reference": "Patient/456" },
    });
    let shared = json!({
        "subject": subject(&token),
        "action": { "name": "read" },
        "resource": { "type": "Observation", "id": "o9", "properties": { "stored": theirs } },
        "context": ENFORCING.clone(),
        "evaluations": [
            {},
            { "action": { "name": "delete" } },
            { "action": { "name": "read" }, "resorce": { "type": "Observation", "id": "o1" } },
            { "resource": { "type": "Observation", "id": "o1" } },
        ],
    });
    let (status, answer) = face.post("/access/v1/evaluations", &shared).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(decisions(&answer), [false, false, false, true]);
    for denied in [0, 2] {
        assert_eq!(
            answer["evaluations"][denied]["context"]["reason"], "outside_compartment",
            "{answer}"
        );
    }

    // The default resource's versions are decided on once per item that takes them: a
    // large one with many items is refused before any is decided.
    let notes: Vec<Value> = (0..1000)
        .map(|n| json!({ "text": format!("note {n} {}", "x".repeat(60)) }))
        .collect();
    let heavy = json!({ "resourceType": "Observation", "id": "o9", "status": "final",
        "code": { "text": "x" }, "subject": { "reference": "Patient/123" }, "note": notes });
    let many = |count: usize| {
        json!({
            "subject": subject(&token),
            "action": { "name": "read" },
            "resource": { "type": "Observation", "id": "o9", "properties": { "stored": heavy } },
            "context": ENFORCING.clone(),
            "evaluations": vec![json!({}); count],
        })
    };
    let (status, answer) = face.post("/access/v1/evaluations", &many(1000)).await;
    assert_eq!(status, 413, "{answer}");
    let (status, answer) = face.post("/access/v1/evaluations", &many(10)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(decisions(&answer), [true; 10]);

    // The same holds for every default part: each item that takes it reads its headers,
    // body and token again.
    let headers: serde_json::Map<String, Value> = (0..40)
        .map(|n| (format!("x-note-{n}"), json!("x".repeat(2000))))
        .collect();
    let with_headers = |count: usize| {
        json!({
            "subject": subject(&token),
            "action": { "name": "GET" },
            "resource": { "type": "fhir_request", "id": "Observation/o1",
                "properties": { "headers": headers } },
            "context": ENFORCING.clone(),
            "evaluations": vec![json!({}); count],
        })
    };
    let (status, answer) = face
        .post("/access/v1/evaluations", &with_headers(1000))
        .await;
    assert_eq!(status, 413, "{answer}");
    let (status, answer) = face.post("/access/v1/evaluations", &with_headers(10)).await;
    assert_eq!(status, 200, "{answer}");
    let mut long_subject = with_headers(0);
    long_subject["resource"] = json!({ "type": "fhir_request", "id": "Observation/o1" });
    long_subject["subject"] = subject(&"x".repeat(30_000));
    long_subject["evaluations"] = json!(vec![json!({}); 3000]);
    let (status, answer) = face.post("/access/v1/evaluations", &long_subject).await;
    assert_eq!(status, 413, "{answer}");
    let mut too_many_headers = with_headers(0);
    too_many_headers["resource"]["properties"]["headers"] = (0..65)
        .map(|n| (format!("x-{n}"), json!("")))
        .collect::<serde_json::Map<String, Value>>()
        .into();
    let (status, answer) = face.post("/access/v1/evaluation", &too_many_headers).await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 64"),
        "{answer}"
    );

    // Each distinct token is a verification or an introspection of its own: a request
    // may carry a hundred, not one per item.
    let tokens = |count: usize| {
        json!({
            "action": { "name": "read" },
            "resource": { "type": "Observation", "id": "o1" },
            "evaluations": (0..count)
                .map(|n| json!({ "subject": subject(&format!("made-up-{n}")) }))
                .collect::<Vec<_>>(),
        })
    };
    let (status, answer) = face.post("/access/v1/evaluations", &tokens(101)).await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("distinct subject tokens"),
        "{answer}"
    );
    let (status, answer) = face.post("/access/v1/evaluations", &tokens(100)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(decisions(&answer), [false; 100]);
    let mut repeated = tokens(0);
    repeated["subject"] = subject(&token);
    repeated["context"] = ENFORCING.clone();
    repeated["evaluations"] = json!(vec![json!({}); 500]);
    let (status, answer) = face.post("/access/v1/evaluations", &repeated).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(decisions(&answer), [true; 500]);

    // A body past 64 KB is parsed on the blocking pool, to the same answer.
    let mut large = request(None);
    large["context"] = json!({ "enforces_grants": true, "pad": "x".repeat(100_000) });
    let (status, answer) = face.post("/access/v1/evaluations", &large).await;
    assert_eq!(status, 200);
    assert_eq!(decisions(&answer), [true, false, false, true]);
    server.stop().await;
}

/// A `POST` search given as an HTTP line is decided on its form body, as on the other faces.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_search_is_decided_on_its_body() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, CONFIG).await;
    let face = Face::of(&server);
    let token = issuer.patient_token("patient/Observation.rs", "123");
    let search = |body: Option<&str>| {
        let mut resource = json!({ "type": "fhir_request", "id": "Observation/_search" });
        if let Some(body) = body {
            resource["properties"] = json!({ "body": body });
        }
        json!({ "subject": subject(&token), "action": { "name": "POST" }, "resource": resource,
            "context": ENFORCING.clone() })
    };

    let (status, answer) = face
        .post("/access/v1/evaluation", &search(Some("code=x")))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["decision"], true, "{answer}");
    let (status, answer) = face
        .post("/access/v1/evaluation", &search(Some("patient=456")))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["decision"], false, "{answer}");
    // Without its body the search is not decided.
    let (status, answer) = face.post("/access/v1/evaluation", &search(None)).await;
    assert_eq!(status, 403, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("form body")
    );
    // A body is read for a POST search only: beside anything else it is refused.
    let (action, mut resource) = http_line("GET", "Observation?code=x");
    resource["properties"] = json!({ "body": "patient=456" });
    let unread = json!({ "subject": subject(&token), "action": action, "resource": resource });
    let (status, answer) = face.post("/access/v1/evaluation", &unread).await;
    assert_eq!(status, 400, "{answer}");
    // A body belongs to an HTTP line only.
    let structured = json!({
        "subject": subject(&token),
        "action": { "name": "search-type" },
        "resource": { "type": "Observation", "properties": { "body": "patient=456" } },
    });
    let (status, answer) = face.post("/access/v1/evaluation", &structured).await;
    assert_eq!(status, 400, "{answer}");
    server.stop().await;
}

/// A body whose JSON would take more memory once parsed than the whole of
/// `max_buffered_request_bytes` is refused 413 as it is parsed (900 KB of one-member
/// objects is some 80 MB as a tree); one of ordinary shape is decided.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_that_parse_into_more_than_the_budget_are_refused() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let config =
        format!("max_request_bytes = 1048576\nmax_buffered_request_bytes = 4194304\n{CONFIG}");
    let server = TestServer::for_issuer(&issuer, &config).await;
    let face = Face::of(&server);
    let token = issuer.patient_token("patient/Observation.rs", "123");
    let (action, resource) = http_line("GET", "Observation/o1");
    let stored = |extension: Value| {
        json!({
            "subject": subject(&token), "action": action, "resource": resource,
            "context": { "enforces_grants": true, "stored": {
                "resourceType": "Observation", "id": "o1", "status": "final",
                "code": { "text": "x" }, "subject": { "reference": "Patient/123" },
                "extension": extension,
            } },
        })
    };
    let dense = Value::Array(vec![json!({ "a": 0 }); 112_000]);
    let (status, answer) = face.post("/access/v1/evaluation", &stored(dense)).await;
    assert_eq!(status, 413, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_buffered_request_bytes (4194304 bytes)"),
        "{answer}"
    );
    let ordinary = Value::Array(vec![
        json!({ "url": "http://example.org/x", "valueString": "y" });
        2_000
    ]);
    let (status, answer) = face.post("/access/v1/evaluation", &stored(ordinary)).await;
    assert_eq!(
        (status, answer["decision"].as_bool()),
        (200, Some(true)),
        "{answer}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_could_be_read_two_ways_is_refused() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server =
        TestServer::for_issuer(&issuer, &format!("max_request_bytes = 4096\n{CONFIG}")).await;
    let face = Face::of(&server);
    let token = issuer.patient_token("patient/Observation.rs", "123");
    let (action, resource) = http_line("GET", "Observation/o1");
    let body = json!({ "subject": subject(&token), "action": action, "resource": resource });

    // A member named twice: which one the service would read is a guess.
    let twice = format!(
        r#"{{"subject": {{"type": "access_token", "id": "{token}"}}, "action": {{"name": "GET"}}, "resource": {{"type": "fhir_request", "id": "Patient/456", "id": "Observation/o1"}}}}"#
    );
    let (status, answer) = face
        .post_raw("/access/v1/evaluation", "application/json", twice, None)
        .await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not JSON")
    );

    let (status, _) = face
        .post_raw(
            "/access/v1/evaluation",
            "text/plain",
            body.to_string(),
            None,
        )
        .await;
    assert_eq!(status, 415);
    let (status, _) = face
        .post_raw(
            "/access/v1/evaluation",
            "application/json",
            "[1]".to_owned(),
            None,
        )
        .await;
    assert_eq!(status, 400);
    let padded = json!({ "subject": subject(&token), "action": { "name": "GET" }, "resource": resource, "context": { "pad": "x".repeat(5000) } });
    let (status, answer) = face.post("/access/v1/evaluation", &padded).await;
    assert_eq!(status, 413, "{answer}");
    let (status, answer) = face
        .post_raw(
            "/access/v1/evaluation",
            "application/json",
            body.to_string(),
            Some("two words"),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    // A path the FHIR server could read as another request.
    let (action, resource) = http_line("GET", "Observation/./o1");
    let dots = json!({ "subject": subject(&token), "action": action, "resource": resource });
    let (status, _) = face.post("/access/v1/evaluation", &dots).await;
    assert_eq!(status, 400);
    // An unknown FHIR server.
    let elsewhere = json!({ "subject": subject(&token), "action": { "name": "GET" }, "resource": { "type": "fhir_request", "id": "Observation/o1" }, "context": { "fhir_server": "nowhere" } });
    let (status, answer) = face.post("/access/v1/evaluation", &elsewhere).await;
    assert_eq!(status, 400, "{answer}");
    server.stop().await;
}

/// As on gRPC: a server whose Envoy bases serve two FHIR releases hears from each
/// evaluation which one it is in (`context.fhir_version`); `NutritionIntake` is R5's only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evaluation_names_its_release_where_the_server_serves_two() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let releases = "fhir_version = \"r4\"\n[envoy]\nbases = [{ prefix = \"/r4/\" }, { prefix = \"/r5/\", fhir_version = \"r5\" }]\n";
    let server = TestServer::for_issuer(&issuer, &format!("{releases}{CONFIG}")).await;
    let face = Face::of(&server);
    let mut claims = issuer.claims("user/*.rs");
    claims["fhirUser"] = json!("Practitioner/p1");
    let token = sign(&RSA_1, &claims);
    let (action, resource) = http_line("GET", "NutritionIntake/n1");
    let evaluation = |context: Value| json!({ "subject": subject(&token), "action": action, "resource": resource, "context": context });

    let (status, answer) = face
        .post("/access/v1/evaluation", &evaluation(json!({})))
        .await;
    assert_eq!(status, 400, "{answer}");
    let (status, answer) = face
        .post(
            "/access/v1/evaluation",
            &evaluation(json!({ "fhir_version": "R5", "enforces_grants": true })),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["decision"], true, "{answer}");
    let (status, answer) = face
        .post(
            "/access/v1/evaluation",
            &evaluation(json!({ "fhir_version": "R4", "enforces_grants": true })),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["decision"], false, "{answer}");
    for refused in [json!("R4B"), json!(5)] {
        let (status, answer) = face
            .post(
                "/access/v1/evaluation",
                &evaluation(json!({ "fhir_version": refused })),
            )
            .await;
        assert_eq!(status, 400, "{refused}: {answer}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_filter_endpoint_returns_only_what_the_token_may_read() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, CONFIG).await;
    let face = Face::of(&server);
    let token = issuer.patient_token("patient/Observation.rs patient/Patient.r", "123");
    let (action, resource) = http_line("GET", "Observation?_include=Observation:subject");
    let (status, answer) = face
        .post(
            "/smart-authz/v1/filter-resources",
            &json!({ "subject": subject(&token), "action": action, "resource": resource,
                "response": mixed_search() }),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["decision"], true);
    assert_eq!(answer["context"]["withheld"], 2);
    assert_eq!(answer["context"]["subject"]["patient"], "123");
    assert_eq!(
        answer["context"]["entries"][1]["reason"],
        "outside_compartment"
    );
    assert_eq!(
        references(&answer["body"]),
        ["Observation/o1", "Patient/123", "OperationOutcome/-"]
    );
    assert_eq!(patients_named(&answer["body"]), ["Patient/123"]);

    // An answer large enough to be written and read off the runtime: the same verdicts.
    let many: Vec<_> = (0..400)
        .map(|n| {
            (
                observation_of(&format!("o{n}"), ["123", "456"][n % 2]),
                "match",
            )
        })
        .collect();
    let (action, resource) = http_line("GET", "Observation");
    let large = json!({ "subject": subject(&token), "action": action, "resource": resource,
        "response": searchset(&many) });
    assert!(large.to_string().len() > 64 * 1024);
    let (status, answer) = face.post("/smart-authz/v1/filter-resources", &large).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["decision"], true);
    assert_eq!(answer["context"]["withheld"], 200);
    assert_eq!(patients_named(&answer["body"]), ["Patient/123"]);
    assert_eq!(references(&answer["body"]).len(), 201);

    // A single resource of another patient: a deny, and no body.
    let (action, resource) = http_line("GET", "Observation/o2");
    let (status, answer) = face
        .post(
            "/smart-authz/v1/filter-resources",
            &json!({ "subject": subject(&token), "action": action, "resource": resource,
                "response": observation_of("o2", "456") }),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["decision"], false);
    assert_eq!(answer["context"]["reason"], "outside_compartment");
    assert!(answer.get("body").is_none());

    // A count of the server's matches (`_summary=count`): removed, as on the other faces.
    let (action, resource) = http_line("GET", "Observation?code=x&_summary=count");
    let (status, answer) = face
        .post(
            "/smart-authz/v1/filter-resources",
            &json!({ "subject": subject(&token), "action": action, "resource": resource,
                "response": { "resourceType": "Bundle", "type": "searchset", "total": 7 } }),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["decision"], true);
    assert_eq!(answer["body"].get("total"), None, "{answer}");

    // No answer, or one that is not a FHIR resource: a 400, never an allow.
    for response in [None, Some(json!([1])), Some(json!({ "id": "x" }))] {
        let mut body =
            json!({ "subject": subject(&token), "action": action, "resource": resource });
        if let Some(response) = response {
            body["response"] = response;
        }
        let (status, answer) = face.post("/smart-authz/v1/filter-resources", &body).await;
        assert_eq!(status, 400, "{answer}");
    }
    server.stop().await;
}

/// A client that sends its headers and then nothing holds no slot of
/// `max_concurrent_calls`, and is answered 408 once the body's time is up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_never_arrives_holds_no_slot() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server =
        TestServer::for_issuer(&issuer, &format!("max_concurrent_calls = 1\n{CONFIG}")).await;
    let face = Face::of(&server);
    let address = server.authzen_address.unwrap();
    let mut stalled = tokio::net::TcpStream::connect(address).await.unwrap();
    stalled
        .write_all(
            format!(
                "POST /access/v1/evaluation HTTP/1.1\r\nhost: {address}\r\ncontent-type: application/json\r\ncontent-length: 4000\r\n\r\n{{"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    let token = issuer.patient_token("patient/Observation.rs", "123");
    let (action, resource) = http_line("GET", "Observation/o1");
    let body = json!({ "subject": subject(&token), "action": action, "resource": resource });
    let (status, answer) = face.post("/access/v1/evaluation", &body).await;
    assert_eq!(status, 200, "the only slot is free: {answer}");

    let mut reply = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        stalled.read_to_end(&mut reply),
    )
    .await;
    let reply = String::from_utf8_lossy(&reply);
    assert!(read.is_ok(), "no answer within 20 s: {reply}");
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    server.stop().await;
}

/// `[authzen] max_connections` bounds the connections open at once: one beyond waits in
/// the listen backlog, and is served as soon as another closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_wait_until_one_closes() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(&issuer, &format!("{CONFIG}max_connections = 1\n")).await;
    let face = Face::of(&server);
    let address = server.authzen_address.unwrap();
    let holder = tokio::net::TcpStream::connect(address).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    let metadata = format!("http://{address}/.well-known/authzen-configuration");
    let waiting = tokio::spawn({
        let http = face.http.clone();
        async move {
            http.get(metadata)
                .send()
                .await
                .map(|answer| answer.status())
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "served beside the only connection");

    drop(holder);
    let status = tokio::time::timeout(std::time::Duration::from_secs(10), waiting)
        .await
        .expect("served once the other connection closed")
        .unwrap()
        .unwrap();
    assert_eq!(status, 200);
    server.stop().await;
}
