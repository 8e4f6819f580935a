//! The Python and Node clients of `clients/`, each run through its own test suite (pytest,
//! node's test runner) against this build's `smart-authz` binary, which their tests start.
//! `.ci/run` installs the Python client with pytest (`CLIENT_PYTHON`) and builds the Node
//! one; without them this test is skipped outside CI and fails in CI.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a panic is a failed test"
)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn clients() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("clients")
}

fn skip_outside_ci(what: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "CI prepares {what} (.ci/run)"
    );
    eprintln!("note: {what} is not prepared; its tests were not run");
}

fn run_suite(mut command: Command, name: &str) {
    let output = command
        .env("SMART_AUTHZ_BIN", env!("CARGO_BIN_EXE_smart-authz"))
        .output()
        .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{name}:\n{report}");
    eprintln!("{name}:\n{report}");
}

#[test]
fn the_python_client_passes_its_suite_against_the_service() {
    let python = std::env::var("CLIENT_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let ready = Command::new(&python)
        .args(["-c", "import smart_authz_client, pytest"])
        .output()
        .is_ok_and(|output| output.status.success());
    if !ready {
        skip_outside_ci("the Python client (CLIENT_PYTHON)");
        return;
    }
    let mut pytest = Command::new(&python);
    pytest.current_dir(clients().join("python")).args([
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "tests",
    ]);
    run_suite(pytest, "pytest");
}

#[test]
fn the_node_client_passes_its_suite_against_the_service() {
    let node = clients().join("node");
    let built = node.join("dist/index.js").is_file() && node.join("node_modules").is_dir();
    if !built {
        skip_outside_ci("the Node client (npm ci && npm run build in clients/node)");
        return;
    }
    let mut test = Command::new("node");
    test.current_dir(&node)
        .args(["--test", "test/client.test.mjs"]);
    run_suite(test, "node --test");
}
