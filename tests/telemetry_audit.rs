//! The decision audit log: one JSON line per decision on its own output, never the token.
//!
//! In process, the audit writer is injected (the subscriber is process-wide, so one test
//! installs it and runs every in-process case in turn); as a subprocess, the binary writes
//! audit lines to stdout and its other logs to stderr, and stops promptly on SIGTERM even
//! with an OTLP endpoint that refuses connections.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a panic is a failed test"
)]

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::spawned::{self, Served};
use common::*;
use envoy_types::ext_authz::v3::pb::CheckRequest;
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use serde_json::{Value, json};
use smart_authz::config::{LogConfig, TelemetryConfig};
use smart_authz::grpc::pb;
use smart_authz::telemetry::{self, Outputs};
use smart_authz::token::cache::{token_fingerprint, token_key};
use tracing_subscriber::fmt::writer::BoxMakeWriter;

/// A shared in-memory output.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    fn writer(&self) -> BoxMakeWriter {
        let capture = self.clone();
        BoxMakeWriter::new(move || capture.clone())
    }

    /// Takes what was written, as lines.
    fn take_lines(&self) -> Vec<String> {
        let bytes = std::mem::take(&mut *self.0.lock().unwrap());
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn parse(lines: &[String]) -> Vec<Value> {
    lines
        .iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect()
}

/// No field of any line holds the token, its signature or a long piece of it.
fn assert_no_token(lines: &[Value], token: &str) {
    let signature = token.rsplit('.').next().unwrap();
    for line in lines {
        for (name, value) in line.as_object().unwrap() {
            let text = match value {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            assert!(
                !text.contains(token) && !text.contains(signature),
                "{name} holds the token: {line}"
            );
            assert!(
                text.len() < 16 || !token.contains(&text),
                "{name} holds a piece of the token: {line}"
            );
        }
    }
}

fn fingerprint(token: &str) -> String {
    token_fingerprint(&token_key(token))
}

fn find<'a>(lines: &'a [Value], pairs: &[(&str, &str)]) -> &'a Value {
    lines
        .iter()
        .find(|line| pairs.iter().all(|(key, value)| line[key] == *value))
        .unwrap_or_else(|| panic!("no line with {pairs:?} in {lines:#?}"))
}

fn envoy_request(path: &str, token: &str) -> CheckRequest {
    let headers = HashMap::from([
        (":authority".to_owned(), "fhir.example".to_owned()),
        ("authorization".to_owned(), format!("Bearer {token}")),
    ]);
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                http: Some(HttpRequest {
                    method: "GET".into(),
                    path: path.into(),
                    headers,
                    ..HttpRequest::default()
                }),
                ..Request::default()
            }),
            ..AttributeContext::default()
        }),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_decision_gets_one_json_line_without_the_token() {
    let audit = Capture::default();
    let logs = Capture::default();
    let outputs = Outputs {
        logs: logs.writer(),
        audit: audit.writer(),
        audit_flusher: None,
    };
    let _guard = telemetry::install_with(
        &LogConfig::default(),
        &TelemetryConfig::default(),
        &|_| None,
        outputs,
    )
    .expect("telemetry installs");

    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::for_issuer(
        &issuer,
        "[telemetry]\naudit = \"all\"\n[envoy]\nbases = [{ prefix = \"/fhir/R4/\" }]\n[authzen]\nlisten = \"127.0.0.1:0\"\n",
    )
    .await;
    let token = issuer.patient_token("patient/Observation.rs patient/Patient.rs", "123");
    let expired = {
        let mut claims = issuer.claims("patient/*.rs");
        claims["exp"] = json!(now() - 3600);
        sign(&RSA_1, &claims)
    };
    audit.take_lines();

    let allowed = server
        .client
        .clone()
        .check_access(pb::CheckAccessRequest {
            access_token: token.clone(),
            request: Some(pb::check_access_request::Request::Http(pb::HttpRequest {
                method: "GET".into(),
                path: "Observation/obs-1".into(),
                ..Default::default()
            })),
            request_id: "fhir-req-7f3a".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(decision(&allowed), pb::Decision::Allow);
    assert_eq!(allowed.request_id, "fhir-req-7f3a", "echoed in the answer");
    let denied = server.check(&token, "DELETE", "Observation/obs-1").await;
    assert_eq!(decision(&denied), pb::Decision::Deny);
    let refused = server.check(&expired, "GET", "Observation/obs-1").await;
    assert_eq!(reason(&refused), pb::Reason::TokenExpired);
    let public = server.check("", "GET", "metadata").await;
    assert_eq!(decision(&public), pb::Decision::Allow);
    let batch = server
        .client
        .clone()
        .batch_check_access(pb::BatchCheckAccessRequest {
            access_token: format!("Bearer {token}"),
            bundle_type: pb::BundleType::Batch as i32,
            entries: ["Patient/123", "Patient/456"]
                .into_iter()
                .map(|path| pb::BatchEntry {
                    request: Some(pb::batch_entry::Request::Http(pb::HttpRequest {
                        method: "GET".into(),
                        path: path.into(),
                        ..Default::default()
                    })),
                    stored: None,
                    proposed: None,
                })
                .collect(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(batch.entries.len(), 2);
    let mut forwarded = envoy_request("/fhir/R4/Condition/c-1", &token);
    forwarded
        .attributes
        .as_mut()
        .and_then(|attributes| attributes.request.as_mut())
        .and_then(|request| request.http.as_mut())
        .unwrap()
        .headers
        .insert(
            "x-request-id".into(),
            "0b5f3c52-9a1e-4a86-9d55-2f0c1a7e6b11".into(),
        );
    let envoy = AuthorizationClient::new(server.channel.clone())
        .check(forwarded)
        .await
        .unwrap()
        .into_inner();
    assert_ne!(envoy.status.unwrap().code, 0);
    let authzen: Value = reqwest::Client::new()
        .post(format!(
            "http://{}/access/v1/evaluation",
            server.authzen_address.unwrap()
        ))
        .header("content-type", "application/json")
        .header("x-request-id", "authzen-req-5")
        .body(
            json!({
                "subject": { "type": "access_token", "id": token },
                "action": { "name": "read" },
                "resource": { "type": "Patient", "id": "123" },
            })
            .to_string(),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(authzen["decision"], true, "{authzen}");

    let lines = audit.take_lines();
    let records = parse(&lines);
    assert_eq!(records.len(), 8, "{lines:#?}");
    for record in &records {
        assert!(record["time"].as_str().unwrap().ends_with('Z'), "{record}");
    }
    assert_no_token(&records, &token);
    assert_no_token(&records, &expired);

    let allow = find(&records, &[("decision", "allow"), ("interaction", "read")]);
    assert_eq!(allow["face"], "grpc");
    assert_eq!(allow["rpc"], "CheckAccess");
    assert_eq!(allow["fhir_server"], "default", "the implicit server");
    assert_eq!(allow["reason"], "granted");
    assert_eq!(allow["resource_type"], "Observation");
    assert_eq!(allow["resource_id"], "obs-1");
    assert_eq!(allow["client_id"], "test-client");
    assert_eq!(allow["sub"], "user-1");
    assert_eq!(allow["patient"], "123");
    assert_eq!(allow["scopes"], "patient/Observation.rs");
    assert_eq!(allow["token_fingerprint"], fingerprint(&token));
    assert_eq!(allow["request_id"], "fhir-req-7f3a");
    assert!(allow.get("trace_id").is_none(), "traces are off: {allow}");

    let deny = find(&records, &[("interaction", "delete")]);
    assert!(deny.get("request_id").is_none(), "none was sent: {deny}");
    assert_eq!(deny["decision"], "deny");
    assert_eq!(deny["reason"], "no_matching_scope");
    assert!(deny.get("scopes").is_none());

    let expired_line = find(&records, &[("reason", "token_expired")]);
    assert_eq!(expired_line["decision"], "deny");
    assert_eq!(expired_line["token_fingerprint"], fingerprint(&expired));
    assert!(
        expired_line.get("client_id").is_none(),
        "an unverified token names no one"
    );

    let public_line = find(&records, &[("reason", "public_endpoint")]);
    assert!(public_line.get("token_fingerprint").is_none());

    let first_entry = find(
        &records,
        &[("rpc", "BatchCheckAccess"), ("resource_id", "123")],
    );
    assert_eq!(first_entry["entry"], 0);
    assert_eq!(first_entry["decision"], "allow");
    assert_eq!(first_entry["token_fingerprint"], fingerprint(&token));
    let second_entry = find(
        &records,
        &[("rpc", "BatchCheckAccess"), ("resource_id", "456")],
    );
    assert_eq!(second_entry["entry"], 1);
    assert_eq!(second_entry["decision"], "deny");

    let envoy_line = find(&records, &[("face", "envoy")]);
    assert_eq!(envoy_line["rpc"], "ext_authz.Check");
    assert_eq!(envoy_line["fhir_server"], "default");
    assert_eq!(envoy_line["decision"], "deny");
    assert_eq!(envoy_line["resource_type"], "Condition");
    assert_eq!(envoy_line["token_fingerprint"], fingerprint(&token));
    assert_eq!(
        envoy_line["request_id"],
        "0b5f3c52-9a1e-4a86-9d55-2f0c1a7e6b11"
    );

    let authzen_line = find(&records, &[("face", "authzen")]);
    assert_eq!(authzen_line["rpc"], "authzen.evaluation");
    assert_eq!(authzen_line["decision"], "allow");
    assert_eq!(authzen_line["resource_type"], "Patient");
    assert_eq!(authzen_line["request_id"], "authzen-req-5");
    assert_eq!(authzen_line["token_fingerprint"], fingerprint(&token));

    // Each item of `evaluations` is decided on its own: its line names its index, as a
    // Bundle entry's does.
    let answer: Value = reqwest::Client::new()
        .post(format!(
            "http://{}/access/v1/evaluations",
            server.authzen_address.unwrap()
        ))
        .json(&json!({
            "subject": { "type": "access_token", "id": token },
            "action": { "name": "read" },
            "evaluations": [
                { "resource": { "type": "Patient", "id": "456" } },
                { "resource": { "type": "Patient", "id": "123" } },
            ],
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["evaluations"][1]["decision"], true, "{answer}");
    let records = parse(&audit.take_lines());
    assert_eq!(records.len(), 2, "{records:#?}");
    let other = find(&records, &[("resource_id", "456")]);
    assert_eq!(other["entry"], 0);
    assert_eq!(other["decision"], "deny");
    let own = find(&records, &[("resource_id", "123")]);
    assert_eq!(own["entry"], 1);
    assert_eq!(own["decision"], "allow");

    // A HEAD that ext_proc would have to read the answer of is refused: one deny, no allow
    // before it.
    let mut stream = common::ext_proc::ProcessStream::open(&server.channel).await;
    stream
        .send(common::ext_proc::request_headers(
            "HEAD",
            "/fhir/R4/Observation/o2",
            Some(&token),
            &[],
        ))
        .await;
    let records = parse(&audit.take_lines());
    assert_eq!(records.len(), 1, "{records:#?}");
    assert_eq!(records[0]["decision"], "deny");
    assert_eq!(records[0]["reason"], "unsupported_request");

    // Audit events stay out of the ordinary log output.
    let log_lines = logs.take_lines();
    assert!(
        log_lines
            .iter()
            .all(|line| !line.contains("token_fingerprint")),
        "{log_lines:#?}"
    );
    server.stop().await;

    // `denies`, the default: allows are not audited.
    let server = TestServer::for_issuer(&issuer, "").await;
    audit.take_lines();
    server.check(&token, "GET", "Observation/obs-1").await;
    server.check(&token, "GET", "Condition/c-1").await;
    let records = parse(&audit.take_lines());
    assert_eq!(records.len(), 1, "{records:#?}");
    assert_eq!(records[0]["decision"], "deny");

    // An answer with withheld entries is allowed, but its withheld reads are denies: it is
    // audited under `denies`, with their count.
    let filtered = server
        .client
        .clone()
        .filter_resources(pb::FilterResourcesRequest {
            access_token: token.clone(),
            request: Some(pb::filter_resources_request::Request::Http(
                pb::HttpRequest {
                    method: "GET".into(),
                    path: "Observation?_include=Observation:subject".into(),
                    ..Default::default()
                },
            )),
            response: serde_json::to_vec(&answers::mixed_search()).unwrap(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(filtered.withheld, 2);
    let records = parse(&audit.take_lines());
    assert_eq!(records.len(), 1, "{records:#?}");
    assert_eq!(records[0]["rpc"], "FilterResources");
    assert_eq!(records[0]["decision"], "allow");
    assert_eq!(records[0]["withheld"], 2);

    // The patient of a line is the one the decision was for: here a Patient fhirUser's, as
    // the token has no `patient` claim.
    let by_fhir_user = {
        let mut claims = issuer.claims("patient/Observation.rs");
        claims["fhirUser"] = json!("Patient/77");
        sign(&RSA_1, &claims)
    };
    server.check(&by_fhir_user, "GET", "Condition/c-1").await;
    let records = parse(&audit.take_lines());
    assert_eq!(records.len(), 1, "{records:#?}");
    assert_eq!(records[0]["patient"], "77");

    // A Bundle with no entry is denied as a whole: that deny is the one line.
    let empty = server
        .client
        .clone()
        .batch_check_access(pb::BatchCheckAccessRequest {
            access_token: token.clone(),
            bundle_type: pb::BundleType::Transaction as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(empty.decision, pb::Decision::Deny as i32);
    let records = parse(&audit.take_lines());
    assert_eq!(records.len(), 1, "{records:#?}");
    assert_eq!(records[0]["rpc"], "BatchCheckAccess");
    assert_eq!(records[0]["decision"], "deny");
    assert!(records[0].get("entry").is_none());

    server.stop().await;

    // A verified token that another FHIR server of the service refuses (its `aud` names the
    // first) is audited with who it speaks for.
    let server = TestServer::for_issuer(
        &issuer,
        &format!(
            "[[fhir_servers]]\nname = \"a\"\nbase_urls = [\"{AUDIENCE}\"]\n\
             [[fhir_servers]]\nname = \"b\"\nbase_urls = [\"https://b.example/fhir\"]\n"
        ),
    )
    .await;
    audit.take_lines();
    let mut replayed = check_http(&token, "GET", "Observation/obs-1");
    replayed.fhir_server = "b".to_owned();
    let refused = server.check_request(replayed).await;
    assert_eq!(reason(&refused), pb::Reason::TokenWrongAudience);
    let records = parse(&audit.take_lines());
    assert_eq!(records.len(), 1, "{records:#?}");
    assert_eq!(records[0]["reason"], "token_wrong_audience");
    assert_eq!(records[0]["fhir_server"], "b");
    assert_eq!(records[0]["client_id"], "test-client");
    assert_eq!(records[0]["patient"], "123");
    assert!(records[0].get("patient_claim").is_none(), "it agrees");
    // Its patient written as an absolute URL under server a's base: no patient of b's, and
    // the line still says whom the token named.
    let absolute = {
        let mut claims = issuer.claims("patient/Observation.rs");
        claims["patient"] = json!(format!("{AUDIENCE}/Patient/123"));
        sign(&RSA_1, &claims)
    };
    let mut replayed = check_http(&absolute, "GET", "Observation/obs-1");
    replayed.fhir_server = "b".to_owned();
    server.check_request(replayed).await;
    let records = parse(&audit.take_lines());
    assert_eq!(records.len(), 1, "{records:#?}");
    assert!(records[0].get("patient").is_none(), "{records:#?}");
    assert_eq!(
        records[0]["patient_claim"],
        format!("{AUDIENCE}/Patient/123")
    );
    // The same through IntrospectToken: the line names the claim as the token wrote it.
    let inactive = server
        .client
        .clone()
        .introspect_token(pb::IntrospectTokenRequest {
            token: absolute.clone(),
            fhir_server: "b".to_owned(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!inactive.active);
    let records = parse(&audit.take_lines());
    assert_eq!(records.len(), 1, "{records:#?}");
    assert_eq!(records[0]["rpc"], "IntrospectToken");
    assert_eq!(
        records[0]["patient_claim"],
        format!("{AUDIENCE}/Patient/123")
    );
    // A request gRPC cannot read leaves the line the other faces leave for it: the token's
    // fingerprint, the server, and the request id once it was read.
    let mut overridden = check_http(&token, "POST", "Observation");
    overridden.fhir_server = "a".to_owned();
    overridden.request_id = "unreadable-1".to_owned();
    if let Some(pb::check_access_request::Request::Http(http)) = overridden.request.as_mut() {
        http.headers
            .insert("X-HTTP-Method-Override".into(), "DELETE".into());
    }
    let mut bad_id = check_http(&token, "GET", "Observation/obs-1");
    bad_id.fhir_server = "a".to_owned();
    bad_id.request_id = "two words".to_owned();
    let mut bad_release = check_http(&token, "GET", "Observation/obs-1");
    bad_release.fhir_server = "a".to_owned();
    bad_release.fhir_version = "R9".to_owned();
    for request in [overridden, bad_id, bad_release] {
        let error = server
            .client
            .clone()
            .check_access(request)
            .await
            .unwrap_err();
        assert_eq!(error.code(), tonic::Code::InvalidArgument, "{error:?}");
    }
    let error = server
        .client
        .clone()
        .batch_check_access(pb::BatchCheckAccessRequest {
            access_token: token.clone(),
            fhir_server: "a".to_owned(),
            request_id: "unreadable-2".to_owned(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::InvalidArgument, "{error:?}");
    let records = parse(&audit.take_lines());
    assert_eq!(records.len(), 4, "{records:#?}");
    assert_no_token(&records, &token);
    for record in &records {
        assert_eq!(record["decision"], "deny", "{record}");
        assert_eq!(record["reason"], "unsupported_request", "{record}");
        assert_eq!(record["token_fingerprint"], fingerprint(&token), "{record}");
    }
    let overridden = find(&records, &[("request_id", "unreadable-1")]);
    assert_eq!(overridden["fhir_server"], "a");
    assert_eq!(overridden["rpc"], "CheckAccess");
    assert_eq!(records[1]["rpc"], "CheckAccess");
    assert!(records[1].get("request_id").is_none(), "{records:#?}");
    assert_eq!(records[2]["rpc"], "CheckAccess");
    let batch = find(&records, &[("request_id", "unreadable-2")]);
    assert_eq!(batch["rpc"], "BatchCheckAccess");
    assert_eq!(batch["fhir_server"], "a");
    server.stop().await;

    // An IntrospectToken answer that hands a token's claims out is recorded (`all`).
    let server = TestServer::for_issuer(&issuer, "[telemetry]\naudit = \"all\"\n").await;
    audit.take_lines();
    let introspected = server
        .client
        .clone()
        .introspect_token(pb::IntrospectTokenRequest {
            token: token.clone(),
            request_id: "introspect-1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(introspected.active);
    let inactive = server
        .client
        .clone()
        .introspect_token(pb::IntrospectTokenRequest {
            token: expired.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!inactive.active);
    // No token at all is a refusal too, with a line of its own.
    let error = server
        .client
        .clone()
        .introspect_token(pb::IntrospectTokenRequest {
            token: " \t".into(),
            request_id: "introspect-2".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::InvalidArgument);
    let records = parse(&audit.take_lines());
    assert_eq!(records.len(), 3, "{records:#?}");
    assert_no_token(&records, &token);
    let missing = find(&records, &[("request_id", "introspect-2")]);
    assert_eq!(missing["rpc"], "IntrospectToken");
    assert_eq!(missing["decision"], "deny");
    assert_eq!(missing["reason"], "unsupported_request");
    let active = find(&records, &[("request_id", "introspect-1")]);
    assert_eq!(active["rpc"], "IntrospectToken");
    assert_eq!(active["decision"], "allow");
    assert_eq!(active["reason"], "token_active");
    assert_eq!(active["client_id"], "test-client");
    assert_eq!(active["token_fingerprint"], fingerprint(&token));
    let refused = find(&records, &[("reason", "token_expired")]);
    assert_eq!(refused["rpc"], "IntrospectToken");
    assert_eq!(refused["token_fingerprint"], fingerprint(&expired));
    server.stop().await;

    let server = TestServer::for_issuer(&issuer, "[telemetry]\naudit = \"off\"\n").await;
    audit.take_lines();
    server.check(&token, "GET", "Condition/c-1").await;
    assert!(audit.take_lines().is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_writes_audit_lines_to_stdout_and_logs_to_stderr() {
    // Nothing listens there: every export fails, which must not matter.
    let collector = format!(
        "http://127.0.0.1:{}",
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    );
    let mut command = spawned::command(env!("CARGO_BIN_EXE_smart-authz"));
    command
        .arg("serve")
        .env_remove("RUST_LOG")
        .env("SMART_AUTHZ_TELEMETRY__METRICS_LISTEN", "")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &collector)
        .stdout(Stdio::piped());
    let mut server = Served::start(command);
    let stdout = server.child.stdout.take().unwrap();
    let (line_sender, lines) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = line_sender.send(line);
        }
    });

    let token = binary_token(&["--scope", "patient/*.rs", "--patient", "123"]);
    let mut client = pb::authz_service_client::AuthzServiceClient::new(server.channel().await);
    let allowed = client
        .check_access(check_http(&token, "GET", "Observation?code=x"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(decision(&allowed), pb::Decision::Allow);
    let denied = client
        .check_access(check_http(&token, "GET", "Patient/456/Observation"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(decision(&denied), pb::Decision::Deny);

    let line = lines
        .recv_timeout(Duration::from_secs(10))
        .expect("an audit line on stdout");
    let record: Value = serde_json::from_str(&line).expect("the audit line is JSON");
    assert_eq!(record["decision"], "deny", "{line}");
    assert_eq!(record["reason"], "outside_compartment");
    assert_eq!(record["compartment"], "Patient/456");
    assert_eq!(record["token_fingerprint"], fingerprint(&token));
    // Traces are exported (to nowhere): the line names the trace.
    assert_eq!(
        record["trace_id"].as_str().map(str::len),
        Some(32),
        "{line}"
    );
    assert_no_token(&[record], &token);

    // SIGTERM: drains, flushes the trace exporter (which fails) and exits promptly.
    let stopping = Instant::now();
    server.stop_with_sigterm().await;
    assert!(
        stopping.elapsed() < Duration::from_secs(10),
        "stopping took {:?}",
        stopping.elapsed()
    );
    assert!(
        lines.recv_timeout(Duration::from_secs(1)).is_err(),
        "only the deny is audited by default"
    );
    let errors = server.logs_after_exit();
    assert!(
        errors
            .iter()
            .any(|line| line.contains("smart-authz serving")),
        "{errors:#?}"
    );
    assert!(
        errors
            .iter()
            .all(|line| !line.contains("token_fingerprint")),
        "{errors:#?}"
    );
    // The failed export is logged, not fatal.
    assert!(
        errors
            .iter()
            .any(|line| line.contains(r#""target":"opentelemetry"#)
                && (line.contains(r#""level":"ERROR""#) || line.contains(r#""level":"WARN""#))),
        "{errors:#?}"
    );
    for line in &errors {
        assert!(!line.contains(&token), "a log line holds the token: {line}");
        serde_json::from_str::<Value>(line).expect("logs are JSON lines");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_decision_audited_each_line_reaches_stdout_by_the_time_the_binary_stops() {
    let mut command = spawned::command(env!("CARGO_BIN_EXE_smart-authz"));
    command
        .arg("serve")
        .env("SMART_AUTHZ_TELEMETRY__AUDIT", "all")
        .env("SMART_AUTHZ_TELEMETRY__METRICS_LISTEN", "")
        .stdout(Stdio::piped());
    let mut server = Served::start(command);
    let stdout = server.child.stdout.take().unwrap();
    let reading = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });

    let token = binary_token(&["--scope", "patient/*.rs", "--patient", "123"]);
    let mut client = pb::authz_service_client::AuthzServiceClient::new(server.channel().await);
    let calls = 300;
    for index in 0..calls {
        let mut request = check_http(&token, "GET", "Observation?code=x");
        request.request_id = format!("audited-{index}");
        let answer = client.check_access(request).await.unwrap().into_inner();
        assert_eq!(decision(&answer), pb::Decision::Allow);
    }
    // Stopped at once: the last lines are still in the batch, written as the service stops.
    server.stop_with_sigterm().await;

    let lines = reading.join().unwrap();
    let ids: Vec<String> = lines
        .iter()
        .map(|line| {
            let record: Value = serde_json::from_str(line).expect("each audit line is JSON");
            record["request_id"].as_str().unwrap().to_owned()
        })
        .collect();
    let expected: Vec<String> = (0..calls).map(|index| format!("audited-{index}")).collect();
    assert_eq!(ids, expected, "every decision's line, once, in order");
}
