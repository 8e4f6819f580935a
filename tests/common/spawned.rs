//! `smart-authz serve` as its own process, on the port the kernel gave it and the service
//! announced in its "smart-authz serving" log line.
//!
//! Probing for a free port and handing it to the child races every listener the test binary
//! opens meanwhile: a CI run once found another test's HTTP face on the probed port, and the
//! gRPC call got a 404. Listening on port 0 and reading the address back cannot race.

#![allow(dead_code)]

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// How long a child may take to start serving (issuer discovery included).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A command for `program`: none of the caller's `SMART_AUTHZ_*` variables (every one is
/// configuration to the service), JSON logs, and the service's own start-up lines kept when
/// the rest is quiet. Add `serve` and its arguments, then [`Served::start`] it.
pub fn command(program: impl AsRef<OsStr>) -> Command {
    let mut command = Command::new(program);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("SMART_AUTHZ_") {
            command.env_remove(name);
        }
    }
    command
        .env("SMART_AUTHZ_LOG__FORMAT", "json")
        .env("RUST_LOG", "warn,smart_authz::app=info")
        .stdout(Stdio::null());
    command
}

/// A running `smart-authz serve`, killed when dropped.
pub struct Served {
    pub child: Child,
    pub address: SocketAddr,
    logs: Receiver<String>,
    seen: Vec<String>,
}

impl Served {
    /// Starts `command` listening on `127.0.0.1:0` and waits for the address it announces.
    pub fn start(mut command: Command) -> Served {
        let mut child = command
            .args(["--listen", "127.0.0.1:0"])
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary runs");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (sender, logs) = std::sync::mpsc::channel();
        // Drained for the child's whole life: a full pipe would stall its logging.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = sender.send(line);
            }
        });
        let mut seen = Vec::new();
        let started = Instant::now();
        let address = loop {
            let left = START_TIMEOUT.saturating_sub(started.elapsed());
            let line = match logs.recv_timeout(left) {
                Ok(line) => line,
                Err(RecvTimeoutError::Timeout) => {
                    let _ = child.kill();
                    panic!("the server did not start within {START_TIMEOUT:?}: {seen:#?}");
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = child.wait();
                    panic!("the server exited before serving ({status:?}): {seen:#?}");
                }
            };
            let announced = serving_address(&line);
            seen.push(line);
            if let Some(address) = announced {
                break address;
            }
        };
        Served {
            child,
            address,
            logs,
            seen,
        }
    }

    /// A gRPC channel to the address it serves.
    pub async fn channel(&self) -> tonic::transport::Channel {
        tonic::transport::Endpoint::from_shared(format!("http://{}", self.address))
            .expect("an address makes a URI")
            .connect()
            .await
            .expect("the server listens")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its resident memory now, in KiB (`VmRSS` of `/proc/<pid>/status`); 0 once it is gone.
    pub fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .ok()
            .and_then(|status| {
                status
                    .lines()
                    .find(|line| line.starts_with("VmRSS:"))
                    .and_then(|line| line.split_whitespace().nth(1)?.parse().ok())
            })
            .unwrap_or(0)
    }

    /// Sends SIGTERM, as Kubernetes does before it kills a pod: the server drains and exits
    /// by itself, and a build with `-Cprofile-generate` writes its profile on the way out
    /// (scripts/pgo-build.sh), which SIGKILL prevents. Whether the signal was sent.
    pub fn send_sigterm(&self) -> bool {
        Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .is_ok_and(|status| status.success())
    }

    /// How the child exited, if it does within `grace`. Waits without blocking the runtime:
    /// the caller's connections must answer the server's GOAWAY and PING as it drains.
    pub async fn exit_within(&mut self, grace: Duration) -> Option<ExitStatus> {
        let waiting = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("the child can be waited on") {
                return Some(status);
            }
            if waiting.elapsed() > grace {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends SIGTERM and waits for a clean exit: the server stops by itself within 20 s and
    /// exits successfully, or the test fails.
    pub async fn stop_with_sigterm(&mut self) {
        assert!(self.send_sigterm(), "SIGTERM could not be sent");
        let status = self
            .exit_within(Duration::from_secs(20))
            .await
            .expect("the server stops within 20 s of SIGTERM");
        assert!(status.success(), "{status}");
    }

    /// Every log line, once the child has exited (blocks until its stderr closes).
    pub fn logs_after_exit(&mut self) -> Vec<String> {
        let mut lines = std::mem::take(&mut self.seen);
        lines.extend(self.logs.iter());
        lines
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `listen` field of the JSON "smart-authz serving" line.
fn serving_address(line: &str) -> Option<SocketAddr> {
    let record: serde_json::Value = serde_json::from_str(line).ok()?;
    if record["message"] != "smart-authz serving" {
        return None;
    }
    record["listen"].as_str()?.parse().ok()
}
