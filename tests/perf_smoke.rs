//! The performance report's tool (`examples/perf.rs`) in smoke mode: a few hundred calls
//! per scenario against this build's binary, so every scenario keeps working. Nothing here
//! is a timing assertion; the figures are docs/performance.md's.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a panic is a failed test"
)]

#[path = "common/median.rs"]
mod median;
#[path = "common/perf/mod.rs"]
mod perf;
#[path = "common/spawned.rs"]
mod spawned;
#[path = "common/tls.rs"]
#[allow(
    dead_code,
    reason = "the perf tool uses the server certificate and a TLS client only"
)]
mod tls;

use std::path::Path;

/// The report of this build's binary with `options`.
async fn report(options: &perf::Options) -> perf::Report {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    perf::run(
        Path::new(env!("CARGO_BIN_EXE_smart-authz")),
        &root.join("tests/fixtures/keys"),
        options,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_of_the_performance_report_runs_without_errors() {
    let options = perf::Options::smoke();
    let report = report(&options).await;
    let table = report.table();
    for name in [
        "health_floor",
        "health_token_bytes",
        "check_cached",
        "check_10k_tokens",
        "cold_rs256",
        "cold_es256",
        "check_denied",
        "resource_json_5kb",
        "batch_20",
        "filter_20",
        "introspect_cached",
        "envoy_check",
    ] {
        let scenario = report
            .scenario(name)
            .unwrap_or_else(|| panic!("{name} missing:\n{table}"));
        assert!(scenario.calls > 0, "{name}:\n{table}");
        assert_eq!(scenario.errors, 0, "{name}:\n{table}");
        assert!(table.contains(name));
    }
    assert!(report.raw_rs256_us > 0.0 && report.raw_es256_us > 0.0);
    assert_eq!(report.memory.tokens, options.memory_tokens);
    assert!(
        report.memory.filled_kib > 0 && report.memory.bounded_kib > 0,
        "{table}"
    );
    let json = report.json();
    assert_eq!(json["scenarios"].as_array().unwrap().len(), 12);
    assert!(json["memory"]["bytes_per_token"].is_number());
    // The report names what it measured: this machine's processors and this build's binary.
    assert!(json["machine"]["cpus"].as_u64().unwrap() >= 1);
    assert_eq!(
        json["machine"]["server"],
        env!("CARGO_BIN_EXE_smart-authz"),
        "{table}"
    );
    assert!(table.starts_with("machine: "), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_runs_over_tls_and_over_a_unix_socket() {
    for (transport, name) in [
        (perf::Transport::Tls, "tls"),
        (perf::Transport::Unix, "unix"),
    ] {
        let mut options = perf::Options::smoke();
        options.transport = transport;
        options.skip_memory = true;
        options.only = vec!["check_cached".to_owned(), "envoy_check".to_owned()];
        let report = report(&options).await;
        let table = report.table();
        for scenario_name in ["health_floor", "check_cached", "envoy_check"] {
            let scenario = report
                .scenario(scenario_name)
                .unwrap_or_else(|| panic!("{scenario_name} missing:\n{table}"));
            assert!(scenario.calls > 0, "{scenario_name}:\n{table}");
            assert_eq!(scenario.errors, 0, "{scenario_name}:\n{table}");
        }
        assert!(report.scenario("cold_rs256").is_none(), "{table}");
        assert_eq!(report.json()["options"]["transport"], name);
    }
}

/// The generator counts a call as done only on the answer it expects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_counts_on_its_expected_answer_alone() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let judged = perf::judged(
        Path::new(env!("CARGO_BIN_EXE_smart-authz")),
        &root.join("tests/fixtures/keys"),
    )
    .await;
    assert_eq!(
        judged,
        [
            ("allowed", true),
            ("denied", false),
            ("forged", false),
            ("not a request", false),
            ("no such method", false),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_paired_rounds_run() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let options = perf::Options::smoke();
    let rounds = perf::paired(
        Path::new(env!("CARGO_BIN_EXE_smart-authz")),
        &root.join("tests/fixtures/keys"),
        &options,
        2,
    )
    .await;
    let table = perf::paired_table(&rounds);
    assert_eq!(rounds.len(), 2, "{table}");
    for round in &rounds {
        let slices = [
            &round.floor,
            &round.floor_with_token,
            &round.cached,
            &round.working_set,
        ];
        for slice in slices {
            assert!(slice.calls > 0, "{}: {table}", slice.name);
            assert_eq!(slice.errors, 0, "{}: {table}", slice.name);
        }
        assert_eq!(round.floor_with_token.name, "health_token_bytes", "{table}");
        assert_eq!(round.working_set.name, "check_10k_tokens", "{table}");
    }
    assert!(table.contains("median of 2 rounds"), "{table}");
    assert!(table.contains("the working set"), "{table}");
    assert!(
        table.contains("the floor carrying the token's bytes"),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_paired_cold_rounds_run_against_a_full_cache() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let options = perf::Options::smoke();
    let cold = perf::paired_cold(
        Path::new(env!("CARGO_BIN_EXE_smart-authz")),
        &root.join("tests/fixtures/keys"),
        &options,
        2,
    )
    .await;
    let table = perf::paired_cold_table(&cold);
    assert_eq!(cold.rounds.len(), 2, "{table}");
    // Full: the weighed size near the bound, and tokens already turned away for room.
    for state in [&cold.after_fill, &cold.after_rounds] {
        assert!(state.evictions > 0.0, "{table}");
        assert!(
            state.weighed_bytes > 0.75 * cold.cache_bytes as f64
                && state.weighed_bytes <= cold.cache_bytes as f64,
            "{table}"
        );
    }
    for round in &cold.rounds {
        for slice in [&round.cached, &round.rs256.cold, &round.es256.cold] {
            assert!(slice.calls > 0, "{}: {table}", slice.name);
            assert_eq!(slice.errors, 0, "{}: {table}", slice.name);
        }
        for slice in [&round.rs256, &round.es256] {
            assert_eq!(
                slice.cold.calls, options.cold_tokens as u64,
                "every new token once: {table}"
            );
        }
    }
}

/// `benches/beside_batches.py` (small calls timed beside batches of 10,000) runs: briefly,
/// with small batches, through the Python client `.ci/run` installs (`CLIENT_PYTHON`).
#[test]
fn the_latency_beside_batches_runs() {
    let python = std::env::var("CLIENT_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let ready = std::process::Command::new(&python)
        .args(["-c", "import smart_authz_client"])
        .output()
        .is_ok_and(|output| output.status.success());
    if !ready {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI prepares the Python client (.ci/run)"
        );
        eprintln!("note: the Python client (CLIENT_PYTHON) is not prepared; not run");
        return;
    }
    let mut script = std::process::Command::new(&python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/beside_batches.py"))
        .env("AUTHZ_BIN", env!("CARGO_BIN_EXE_smart-authz"))
        .env("ENTRIES", "200")
        .env("DURATION", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Drained while it runs: a script that fills a pipe must fail, not wait for the deadline.
    let stdout = drained(script.stdout.take().unwrap());
    let stderr = drained(script.stderr.take().unwrap());
    // The script bounds each of its waits; this bounds the whole.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    while script.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            script.kill().unwrap();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let status = script.wait().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&stdout.join().unwrap()),
        String::from_utf8_lossy(&stderr.join().unwrap())
    );
    assert!(status.success(), "{report}");
    assert!(report.contains("batches of 200 beside"), "{report}");
}

/// Everything `pipe` gives until it closes, read on a thread of its own.
fn drained(mut pipe: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}
