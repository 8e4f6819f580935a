//! The performance report of docs/performance.md: every scenario against the gRPC floor,
//! the release binary in its own process pinned to CPU 0, this load generator on CPU 1
//! (one thread), then the resident memory per cached token and under the cache's bound.
//!
//! `cargo build --release && cargo run --release --example perf -- [--smoke] [--json FILE]
//! [--calls N] [--seconds S] [--concurrency C] [--connections K] [--cold-tokens T]
//! [--only A,B] [--no-memory] [--no-pin] [--tls | --unix]`
//! (defaults: 200,000 calls or 10 s per scenario, 32 in flight over 4 connections, plaintext
//! TCP; `--tls` over TLS, `--unix` over the server's Unix socket; `--no-pin` lets the server
//! and the load generator share every CPU, so the server runs a worker thread per CPU instead
//! of its one-thread runtime).
//! `AUTHZ_BIN` names another binary (`target/release/examples/tonic_alone`: tonic alone,
//! answering at once). `--h2load` measures the floor, the floor carrying the
//! token's bytes and the cached `CheckAccess` with h2load instead, with the median and 99th
//! percentile of the cached call's request times (benches/h2load.sh installs h2load and
//! runs this). `--paired N` measures those three and the 10,000-token working set, in N
//! rounds of `--seconds` a slice, their order turning, and prints each round's ratios and
//! their medians.
//! `--paired-cold N` measures the cold path in N rounds against the shipped cache, full: a
//! cached call, then RS256 and ES256 calls with `--cold-tokens` new tokens each (default
//! 10,000), each between two raw verifications, and prints each round's ratios and their
//! medians (minting the RS256 tokens takes about a millisecond each, before the server
//! starts).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a benchmark or example stops on a broken set-up"
)]

#[path = "../tests/common/median.rs"]
mod median;
#[path = "../tests/common/perf/mod.rs"]
mod perf;
#[path = "../tests/common/spawned.rs"]
mod spawned;
#[path = "../tests/common/tls.rs"]
#[allow(
    dead_code,
    reason = "the perf tool uses the server certificate and a TLS client only"
)]
mod tls;

use std::path::{Path, PathBuf};
use std::process::Command;

const USAGE: &str = "usage: perf [--smoke] [--json FILE] [--calls N] [--seconds S] \
[--concurrency C] [--connections K] [--cold-tokens T] [--only A,B] [--no-memory] [--no-pin] \
[--metrics] [--tls | --unix] \
[--h2load | --paired N | --paired-cold N]
  (AUTHZ_BIN names the server binary; docs/performance.md explains each scenario)";

fn main() {
    let mut options = perf::Options::full();
    let mut json_file = None;
    let mut with_h2load = false;
    let mut paired_rounds: Option<usize> = None;
    let mut cold_rounds: Option<usize> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().expect("a value after the option");
        match arg.as_str() {
            "--smoke" => options = perf::Options::smoke(),
            "--h2load" => with_h2load = true,
            "--only" => options.only = value().split(',').map(str::to_owned).collect(),
            "--no-memory" => options.skip_memory = true,
            "--metrics" => options.metrics = true,
            "--no-pin" => options.pin_server = false,
            "--json" => json_file = Some(PathBuf::from(value())),
            "--calls" => options.calls = value().parse().expect("a number"),
            "--seconds" => options.seconds = value().parse().expect("a number"),
            "--concurrency" => options.concurrency = value().parse().expect("a number"),
            "--connections" => options.connections = value().parse().expect("a number"),
            "--cold-tokens" => options.cold_tokens = value().parse().expect("a number"),
            "--tls" => options.transport = perf::Transport::Tls,
            "--unix" => options.transport = perf::Transport::Unix,
            "--paired" => paired_rounds = Some(value().parse().expect("a number")),
            "--paired-cold" => cold_rounds = Some(value().parse().expect("a number")),
            "--help" | "-h" => {
                println!("{USAGE}");
                return;
            }
            other => {
                eprintln!("unknown option {other}\n{USAGE}");
                std::process::exit(2);
            }
        }
    }
    assert!(
        [with_h2load, paired_rounds.is_some(), cold_rounds.is_some()]
            .iter()
            .filter(|chosen| **chosen)
            .count()
            <= 1,
        "--h2load, --paired and --paired-cold are three measurements: choose one"
    );
    assert!(
        paired_rounds != Some(0) && cold_rounds != Some(0),
        "--paired and --paired-cold take at least one round"
    );
    assert!(
        !(with_h2load && options.transport != perf::Transport::Tcp),
        "--h2load sends its frames over plaintext TCP: drop --tls and --unix"
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let binary = std::env::var_os("AUTHZ_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/release/smart-authz"));
    assert!(binary.exists(), "build it first: cargo build --release");
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    if options.pin_server && cpus >= 2 {
        // Before the runtime starts: its threads inherit the affinity.
        let pinned = Command::new("taskset")
            .args(["-cp", "1", &std::process::id().to_string()])
            .output()
            .is_ok_and(|output| output.status.success());
        eprintln!("load generator pinned to CPU 1: {pinned}; server to CPU 0");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let keys = root.join("tests/fixtures/keys");
    if with_h2load || paired_rounds.is_some() || cold_rounds.is_some() {
        print!("{}", perf::Machine::of(&binary).line());
    }
    if with_h2load {
        let (rates, summaries) = runtime.block_on(perf::h2load(&binary, &keys, &options));
        print!("{summaries}");
        let floor = rates.floor.rate.max(1.0);
        println!(
            "{:<22} {:>9} {:>6} {:>10} {:>5} {:>7} {:>7}",
            "h2load", "req/s", "floor", "server µs", "busy", "p50 µs", "p99 µs"
        );
        for (name, run) in [
            ("Health/Check", rates.floor),
            ("carrying the token", rates.floor_with_token),
            ("cached CheckAccess", rates.cached),
        ] {
            let (p50, p99) = run.latency_us.map_or_else(
                || ("-".to_owned(), "-".to_owned()),
                |(p50, p99)| (p50.to_string(), p99.to_string()),
            );
            println!(
                "{name:<22} {:>9.0} {:>6.2} {:>10.1} {:>5.2} {p50:>7} {p99:>7}",
                run.rate,
                run.rate / floor,
                run.server_cpu_us,
                run.server_busy(),
            );
        }
        return;
    }
    if let Some(rounds) = paired_rounds {
        let rounds = runtime.block_on(perf::paired(&binary, &keys, &options, rounds));
        print!("{}", perf::paired_table(&rounds));
        return;
    }
    if let Some(rounds) = cold_rounds {
        let rounds = runtime.block_on(perf::paired_cold(&binary, &keys, &options, rounds));
        print!("{}", perf::paired_cold_table(&rounds));
        return;
    }
    let report = runtime.block_on(perf::run(&binary, &keys, &options));
    print!("{}", report.table());
    let json = serde_json::to_string_pretty(&report.json()).unwrap();
    match json_file {
        Some(path) => std::fs::write(path, json).unwrap(),
        None => println!("{json}"),
    }
}
