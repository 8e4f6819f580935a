//! Every Envoy bootstrap in the documentation is one Envoy would load: each ```yaml block
//! with `static_resources` under `docs/` is parsed strictly against Envoy's own protobuf
//! schema (`tests/envoy/check_bootstrap.py`, with `xds-protos` from PyPI: `.ci/run` installs
//! it and sets `ENVOY_CHECK_PYTHON`). No Envoy binary runs here; this is the next best thing
//! to loading the file, and it keeps a renamed or deprecated field out of the docs.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a panic is a failed test"
)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn documents_with_a_bootstrap() -> Vec<PathBuf> {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    let mut found: Vec<PathBuf> = std::fs::read_dir(docs)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "md"))
        .filter(|path| {
            std::fs::read_to_string(path)
                .unwrap()
                .contains("static_resources")
        })
        .collect();
    found.sort();
    found
}

#[test]
fn every_envoy_bootstrap_in_the_docs_matches_envoys_schema() {
    let python = std::env::var("ENVOY_CHECK_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let has_schema = Command::new(&python)
        .args(["-c", "import envoy.config.bootstrap.v3.bootstrap_pb2, yaml"])
        .output()
        .is_ok_and(|output| output.status.success());
    if !has_schema {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI installs xds-protos (.ci/run): set ENVOY_CHECK_PYTHON"
        );
        eprintln!("note: no Python with xds-protos; the Envoy configurations were not checked");
        return;
    }
    let documents = documents_with_a_bootstrap();
    let names: Vec<String> = documents
        .iter()
        .map(|path| path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for expected in ["envoy.md", "operations.md"] {
        assert!(names.iter().any(|name| name == expected), "{names:?}");
    }
    let output = Command::new(&python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/envoy/check_bootstrap.py"))
        .args(&documents)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(report.lines().count() >= 4, "{report}");
}
