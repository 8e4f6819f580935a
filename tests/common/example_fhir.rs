//! The example FHIR server (`examples/fhir-server`, Medplum's FHIR router) as its own
//! process: with its smart-authz enforcement on, or off to stand for a FHIR server with no
//! SMART code at all.
//!
//! `.ci/run` installs the example's packages; without them the tests that need it are
//! skipped outside CI and fail in CI ([`installed`]).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub fn example_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/fhir-server")
}

/// Whether the example's packages are installed; in CI they must be.
pub fn installed() -> bool {
    let ready = example_dir()
        .join("node_modules/@medplum/fhir-router")
        .is_dir()
        && example_dir()
            .join("node_modules/@smart-authz/client/dist/index.js")
            .is_file();
    if !ready {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI installs the example (.ci/run)"
        );
        eprintln!("note: examples/fhir-server is not installed; the end-to-end test did not run");
    }
    ready
}

/// The example FHIR server, killed when dropped.
pub struct ExampleFhirServer {
    child: Child,
    /// Its FHIR base URL, without a trailing `/`.
    pub base: String,
}

impl ExampleFhirServer {
    /// Starts the example on a free port with the demonstration data (Patient/123 and
    /// Patient/456 with their Observations, a Practitioner), asking smart-authz at `authz`
    /// when `enforce`, serving everything to anyone otherwise.
    pub fn start(authz: std::net::SocketAddr, enforce: bool) -> ExampleFhirServer {
        let mut child = Command::new("node")
            .arg("server.mjs")
            .current_dir(example_dir())
            .env("PORT", "0")
            .env("AUTHZ", authz.to_string())
            .env("SEED", "demo")
            .env("ENFORCE", if enforce { "on" } else { "off" })
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node runs");
        let stdout = child.stdout.take().unwrap();
        let (ready, listening) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(base) = line.strip_prefix("listening on ") {
                    let _ = ready.send(base.to_owned());
                }
            }
        });
        let base = listening
            .recv_timeout(Duration::from_secs(60))
            .expect("the example FHIR server starts");
        ExampleFhirServer { child, base }
    }
}

impl Drop for ExampleFhirServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
