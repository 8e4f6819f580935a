//! The floor and the cached call measured by h2load (nghttp2), an independent HTTP/2 load
//! generator, sending the same pre-encoded gRPC frames.

use std::path::Path;
use std::process::Command;

use jsonwebtoken::Algorithm;
use tonic_health::pb::HealthCheckRequest;

use super::keys::Keys;
use super::load::{ALLOW, percentile};
use super::options::{Options, Transport};
use super::preencoded::{self, Expect};
use super::requests::{
    CHECK_ACCESS, HEALTH_CHECK, SEARCH, SERVING, check_request, padded_health_check,
};
use super::server::{SCENARIO_CACHE_BYTES, Server, TICKS_PER_SECOND, cpu_ticks};

/// The requests h2load counts as succeeded ("requests: 200000 total, ..., 200000 succeeded,
/// 0 failed, ..."): the calls the server's CPU time is divided by.
pub(super) fn h2load_succeeded(output: &str) -> Option<u64> {
    let line = output.lines().find(|line| line.starts_with("requests: "))?;
    line.split(", ")
        .find_map(|part| part.strip_suffix(" succeeded"))?
        .trim()
        .parse()
        .ok()
}

/// The latencies in µs, sorted, of the requests answered with HTTP 200 in h2load's
/// `--log-file` (a row per request: start time, status, µs until the end of the answer).
pub(super) fn h2load_latencies(log: &str) -> Vec<u64> {
    let mut latencies: Vec<u64> = log
        .lines()
        .filter_map(|row| {
            let mut columns = row.split('\t');
            let (_start, status, took) = (columns.next()?, columns.next()?, columns.next()?);
            (status == "200").then(|| took.trim().parse().ok())?
        })
        .collect();
    latencies.sort_unstable();
    latencies
}

/// requests/s of h2load's summary line ("finished in 2.01s, 49751.24 req/s, ...").
pub(super) fn h2load_rate(output: &str) -> Option<f64> {
    output.lines().find_map(|line| {
        let rest = line.strip_prefix("finished in ")?;
        let (_, after) = rest.split_once(", ")?;
        after.split_whitespace().next()?.parse().ok()
    })
}

/// What h2load reached with one frame, and what the server spent meanwhile.
#[derive(Clone, Copy, Debug, Default)]
pub struct H2loadRun {
    /// Requests per second, h2load's figure.
    pub rate: f64,
    /// The server's CPU time per request, user + system.
    pub server_cpu_us: f64,
    /// The median and 99th percentile of h2load's request times (µs, answered requests),
    /// for the call whose latency is a target: the cached `CheckAccess`.
    pub latency_us: Option<(u64, u64)>,
}

impl H2loadRun {
    /// The share of one CPU the server used ([`Measured::server_busy`]).
    pub fn server_busy(&self) -> f64 {
        self.server_cpu_us * self.rate / 1e6
    }
}

/// h2load's runs of the three frames.
#[derive(Clone, Copy, Debug)]
pub struct H2loadRates {
    pub floor: H2loadRun,
    /// The floor carrying the token's bytes in a field Health skips.
    pub floor_with_token: H2loadRun,
    pub cached: H2loadRun,
}

/// The floor, the floor carrying the token's bytes and the cached `CheckAccess` measured by
/// h2load (nghttp2), an independent HTTP/2 load generator, sending pre-encoded gRPC frames;
/// h2load pinned to CPU 1 when the server is pinned. Returns the rates and h2load's
/// summaries.
pub async fn h2load(binary: &Path, keys_dir: &Path, options: &Options) -> (H2loadRates, String) {
    let keys = Keys::load(keys_dir);
    // h2load's pre-encoded frames go over cleartext HTTP/2 (h2c).
    let server = Server::start(
        binary,
        &keys,
        SCENARIO_CACHE_BYTES,
        options.pin_server,
        Transport::Tcp,
        false,
    )
    .await;
    let token = keys.mint(Algorithm::RS256, 0);
    let frames = tempfile::tempdir().unwrap();
    let calls = [
        (
            "health",
            HEALTH_CHECK,
            preencoded::encode(&HealthCheckRequest::default()),
            Expect::FirstField(SERVING),
        ),
        (
            "health-with-token",
            HEALTH_CHECK,
            padded_health_check(token.len()),
            Expect::FirstField(SERVING),
        ),
        (
            "check",
            CHECK_ACCESS,
            preencoded::encode(&check_request(&token, SEARCH, None)),
            ALLOW,
        ),
    ];
    // Writing a line per request costs h2load time, and at the floor's rate h2load is
    // close to its own limit: only the call whose p99 is a target is logged.
    let logged = "check";
    let link = server.links(1).await.remove(0);
    let base = format!("http://{}", server.served.address);
    let mut summaries = String::new();
    let mut rates = Vec::new();
    for (name, path, body, expect) in calls {
        // The same bytes once first, the answer read: h2load counts any HTTP 200, and a
        // gRPC error or a deny is one.
        assert!(
            preencoded::call(&link, path, &body, expect).await,
            "{name}: the frame h2load sends is answered as expected"
        );
        let frame = frames.path().join(format!("{name}.bin"));
        std::fs::write(&frame, body.frame()).unwrap();
        let mut command = if options.pin_server {
            let mut command = Command::new("taskset");
            command.args(["-c", "1", "h2load"]);
            command
        } else {
            Command::new("h2load")
        };
        let streams = (options.concurrency / options.connections.max(1)).max(1);
        let log = frames.path().join(format!("{name}.log"));
        if name == logged {
            command.arg(format!("--log-file={}", log.display()));
        }
        let cpu_before = cpu_ticks(server.pid());
        let output = command
            .args(["-n", &options.calls.to_string()])
            .args(["-c", &options.connections.to_string()])
            .args(["-m", &streams.to_string()])
            .args(["-H", "content-type: application/grpc", "-H", "te: trailers"])
            .arg("-d")
            .arg(&frame)
            .arg(format!("{base}{path}"))
            .output()
            .expect("h2load runs (Debian's nghttp2-client)");
        let cpu = cpu_ticks(server.pid()).saturating_sub(cpu_before) as f64 / TICKS_PER_SECOND;
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        // Under taskset a missing h2load is taskset's failure, not a spawn error.
        assert!(
            output.status.success(),
            "h2load failed ({}): {} (benches/h2load.sh installs Debian's nghttp2-client)",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
        let succeeded = h2load_succeeded(&text).unwrap_or(0);
        assert!(
            succeeded > 0,
            "{name}: h2load had no call answered:\n{text}"
        );
        let latency_us = (name == logged).then(|| {
            let latencies = h2load_latencies(&std::fs::read_to_string(&log).unwrap_or_default());
            assert!(
                succeeded == 0 || !latencies.is_empty(),
                "h2load wrote its request times to {}",
                log.display()
            );
            (percentile(&latencies, 0.50), percentile(&latencies, 0.99))
        });
        rates.push(H2loadRun {
            rate: h2load_rate(&text).unwrap_or(0.0),
            server_cpu_us: cpu * 1e6 / succeeded.max(1) as f64,
            latency_us,
        });
        summaries.push_str(&format!("== {path} ({name})\n{text}\n"));
    }
    let rates = H2loadRates {
        floor: rates[0],
        floor_with_token: rates[1],
        cached: rates[2],
    };
    (rates, summaries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn h2load_summary_and_log_are_read() {
        let summary = "finished in 2.01s, 49751.24 req/s, 2.10MB/s\n\
                       requests: 100000 total, 100000 started, 100000 done, 99998 succeeded, 2 failed, 0 errored, 0 timeout\n";
        assert_eq!(h2load_rate(summary), Some(49751.24));
        assert_eq!(h2load_succeeded(summary), Some(99998));
        let log = "1764730000000000\t200\t300\n1764730000000001\t200\t100\n\
                   1764730000000002\t503\t5\n1764730000000003\t200\t200\nnot a row\n";
        let latencies = h2load_latencies(log);
        assert_eq!(latencies, [100, 200, 300], "only answered requests, sorted");
        assert_eq!(percentile(&latencies, 0.5), 200);
        assert_eq!(percentile(&latencies, 0.99), 200, "the nearest rank below");
        assert_eq!(percentile(&[], 0.99), 0);
    }
}
