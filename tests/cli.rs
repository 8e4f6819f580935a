//! The `explain` command, run as a user runs it: the real binary, real files, exit codes.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a panic is a failed test"
)]

use std::process::{Command, Output};

use serde_json::{Value, json};

fn explain(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_smart-authz"))
        .arg("explain")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the binary runs")
}

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).expect("--json prints one JSON object")
}

#[test]
fn allows_a_compartment_search_and_names_the_constraint() {
    let output = explain(&[
        "--scope",
        "patient/*.rs",
        "--patient",
        "123",
        "GET",
        "Observation?code=x",
    ]);
    assert_eq!(output.status.code(), Some(0));
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.starts_with("ALLOW (granted)"), "{text}");
    assert!(
        text.contains("limit to compartment Patient/123 via subject | performer"),
        "{text}"
    );
}

#[test]
fn json_output_has_the_decision_at_the_top() {
    let output = explain(&[
        "--json",
        "--scope",
        "patient/*.rs",
        "--patient",
        "123",
        "GET",
        "Observation?code=x",
    ]);
    let report = json(&output);
    assert_eq!(report["decision"], "allow");
    assert_eq!(report["reason"], "granted");
    assert_eq!(report["grants"][0]["scope"], "patient/*.rs");
    assert_eq!(report["grants"][0]["compartment"], "Patient/123");
    assert_eq!(report["request"]["interaction"], "search-type");
}

#[test]
fn denies_a_stored_resource_of_another_patient_with_exit_status_1() {
    let output = explain(&[
        "--json",
        "--scope",
        "patient/Observation.rs",
        "--patient",
        "Patient/123",
        "--stored",
        "tests/fixtures/observation-456.json",
        "GET",
        "Observation/obs-1",
    ]);
    assert_eq!(output.status.code(), Some(1));
    let report = json(&output);
    assert_eq!(report["decision"], "deny");
    assert_eq!(report["reason"], "outside_compartment");
}

/// A `POST _search` is decided on its form body as the faces read it; a body beside any other
/// request, or one a form parser could read otherwise, is bad input.
#[test]
fn decides_a_post_search_on_its_body() {
    let post = |body: &[&str]| {
        let mut args = vec![
            "--json",
            "--scope",
            "patient/Observation.rs",
            "--patient",
            "123",
        ];
        args.extend_from_slice(body);
        args.extend_from_slice(&["POST", "Observation/_search"]);
        explain(&args)
    };
    let other = post(&["--body", "code=x&patient=456"]);
    assert_eq!(other.status.code(), Some(1));
    assert_eq!(json(&other)["reason"], "outside_compartment");
    let own = post(&["--body", "code=a+b&patient=Patient/123"]);
    assert_eq!(own.status.code(), Some(0));
    let params = &json(&own)["request"]["params"];
    assert_eq!(
        params[0],
        json!({ "name": "code", "value": "a b" }),
        "a form's + is a space"
    );
    for no_body in [post(&[]), post(&["--body", ""])] {
        assert_eq!(no_body.status.code(), Some(0));
    }
    // An operation's parameters in a body this service does not read: still refused.
    let operation = explain(&[
        "--json",
        "--scope",
        "patient/Observation.rs",
        "--patient",
        "123",
        "POST",
        "Observation/$lastn",
    ]);
    assert_eq!(json(&operation)["reason"], "unsupported_request");
    for body in ["code=%ZZ", "code=x&_method=DELETE"] {
        let refused = post(&["--body", body]);
        assert_eq!(refused.status.code(), Some(2), "{body}");
        assert!(String::from_utf8_lossy(&refused.stderr).contains("invalid --body"));
    }
    let beside_a_read = explain(&[
        "--scope",
        "patient/Observation.rs",
        "--patient",
        "123",
        "--body",
        "code=x",
        "GET",
        "Observation",
    ]);
    assert_eq!(beside_a_read.status.code(), Some(2));
}

#[test]
fn checks_a_granular_filter_on_the_stored_resource() {
    let allowed = explain(&[
        "--scope",
        "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|vital-signs",
        "--patient",
        "123",
        "--stored",
        "tests/fixtures/observation-123.json",
        "GET",
        "Observation/obs-1",
    ]);
    assert_eq!(
        allowed.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&allowed.stdout)
    );
    let denied = explain(&[
        "--json",
        "--scope",
        "patient/Observation.rs?category=laboratory",
        "--patient",
        "123",
        "--stored",
        "tests/fixtures/observation-123.json",
        "GET",
        "Observation/obs-1",
    ]);
    assert_eq!(json(&denied)["reason"], "filter_mismatch");
}

#[test]
fn reports_invalid_and_non_resource_scopes() {
    let output = explain(&[
        "--json",
        "--scope",
        "openid fhirUser launch/patient patient/Observation.sr",
        "--patient",
        "123",
        "GET",
        "Observation/1",
    ]);
    let report = json(&output);
    assert_eq!(report["decision"], "deny");
    assert_eq!(report["reason"], "no_matching_scope");
    assert_eq!(
        report["ignored_scopes"][0]["scope"],
        "patient/Observation.sr"
    );
    let kinds: Vec<&str> = report["scopes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["identity", "identity", "launch context", "invalid"]);
}

#[test]
fn decides_a_transaction_entry_by_entry() {
    let output = explain(&[
        "--json",
        "--scope",
        "patient/Observation.c",
        "--patient",
        "123",
        "--resource",
        "tests/fixtures/transaction.json",
        "POST",
        "/",
    ]);
    assert_eq!(output.status.code(), Some(1));
    let report = json(&output);
    assert_eq!(report["kind"], "transaction");
    assert_eq!(report["decision"], "deny");
    assert_eq!(report["entries"][0]["decision"], "allow");
    assert_eq!(report["entries"][1]["decision"], "deny");
}

#[test]
fn r5_is_selectable() {
    let r4 = explain(&[
        "--scope",
        "patient/DeviceUsage.rs",
        "--patient",
        "1",
        "GET",
        "DeviceUsage?code=x",
    ]);
    assert_eq!(r4.status.code(), Some(1), "DeviceUsage is not an R4 type");
    let r5 = explain(&[
        "--fhir-version",
        "r5",
        "--scope",
        "patient/DeviceUsage.rs",
        "--patient",
        "1",
        "GET",
        "DeviceUsage?code=x",
    ]);
    assert_eq!(r5.status.code(), Some(0));
}

#[test]
fn bad_input_is_a_clear_error_with_exit_status_2() {
    for (args, expected) in [
        (
            &["GET", "Observation/1/2/3/4/5"][..],
            "invalid request line",
        ),
        (
            &[
                "--stored",
                "tests/fixtures/missing.json",
                "GET",
                "Observation/1",
            ][..],
            "cannot read",
        ),
        (
            &["--patient", "Practitioner/1", "GET", "Observation/1"][..],
            "invalid --patient",
        ),
        (&["--fhir-version", "r6", "GET", "Observation/1"][..], "r6"),
    ] {
        let output = explain(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

#[test]
fn decides_batch_entries_whose_query_holds_a_url() {
    let output = explain(&[
        "--json",
        "--scope",
        "patient/Observation.rus",
        "--patient",
        "123",
        "--resource",
        "tests/fixtures/batch-system-urls.json",
        "POST",
        "/",
    ]);
    let report = json(&output);
    assert_eq!(output.status.code(), Some(0), "{report}");
    assert_eq!(report["kind"], "batch");
    assert_eq!(report["decision"], "allow");
    assert_eq!(report["entries"].as_array().unwrap().len(), 3);
}

#[test]
fn refuses_a_batch_entry_whose_url_is_absolute() {
    let bundle =
        std::env::temp_dir().join(format!("smart-authz-absolute-{}.json", std::process::id()));
    std::fs::write(
        &bundle,
        json!({"resourceType": "Bundle", "type": "batch", "entry": [
            {"request": {"method": "GET", "url": "https://other.example.org/fhir/Observation/1"}}
        ]})
        .to_string(),
    )
    .unwrap();
    let output = explain(&[
        "--json",
        "--scope",
        "system/*.rs",
        "--resource",
        bundle.to_str().unwrap(),
        "POST",
        "/",
    ]);
    let _ = std::fs::remove_file(&bundle);
    let report = json(&output);
    assert_eq!(output.status.code(), Some(1), "{report}");
    assert_eq!(report["entries"][0]["reason"], "unsupported_request");
    assert!(
        report["entries"][0]["message"]
            .as_str()
            .unwrap()
            .contains("absolute URL"),
        "{report}"
    );
}

/// `smart-authz serve --config FILE` on `config`: it must stop at once, so it is killed
/// after a few seconds if it does not.
fn serve_fails(config: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, config).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_smart-authz"))
        .args(["serve", "--config"])
        .arg(&path)
        .env_remove("SMART_AUTHZ_CONFIG")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..100 {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    if child.try_wait().unwrap().is_none() {
        child.kill().unwrap();
        panic!("the service started on an invalid configuration");
    }
    let output = child.wait_with_output().unwrap();
    assert!(!output.status.success());
    String::from_utf8(output.stderr).unwrap()
}

const SERVE_BASE: &str = r#"
listen = "127.0.0.1:0"
[telemetry]
metrics_listen = ""
[[issuers]]
issuer = "https://as.example"
jwks_file = "examples/dev/jwks.json"
"#;

#[test]
fn configuration_errors_stop_the_start_up_naming_the_key() {
    let unknown_issuer = format!(
        "{SERVE_BASE}[[fhir_servers]]\nname = \"a\"\nbase_urls = [\"https://a.example/fhir\"]\nissuers = [\"https://nobody.example\"]\n"
    );
    let stderr = serve_fails(&unknown_issuer);
    assert!(stderr.contains("`fhir_servers[0].issuers[0]`"), "{stderr}");

    let shared_prefix = format!(
        "{SERVE_BASE}[[fhir_servers]]\nname = \"a\"\nbase_urls = [\"https://a.example/fhir\"]\nenvoy_prefixes = [\"/fhir/\"]\n[[fhir_servers]]\nname = \"b\"\nbase_urls = [\"https://b.example/fhir\"]\nenvoy_prefixes = [\"/fhir/\"]\n"
    );
    let stderr = serve_fails(&shared_prefix);
    assert!(
        stderr.contains("`fhir_servers[1].envoy_prefixes[0]`"),
        "{stderr}"
    );

    let unreadable = format!(
        "{SERVE_BASE}[[fhir_servers]]\nname = \"a\"\nbase_urls = [\"https://a.example/fhir\"]\n[tls]\ncert_file = \"/nonexistent/tls.crt\"\nkey_file = \"/nonexistent/tls.key\"\n"
    );
    let stderr = serve_fails(&unreadable);
    assert!(stderr.contains("`tls.cert_file`"), "{stderr}");
}
