//! The bounded soak of docs/operations.md: the release binary under steady load with
//! rotating tokens, resident memory and errors every second, a JSON report at the end.
//!
//! `cargo build --release && cargo run --release --example soak -- [SECONDS] [CALLS_PER_S]`
//! (defaults: 600 s, 2000 calls/s). `AUTHZ_BIN` names another binary. Exits with 1 on
//! any error or when memory grew after warm-up.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a benchmark or example stops on a broken set-up"
)]

#[path = "../tests/common/soak.rs"]
mod soak;
#[path = "../tests/common/spawned.rs"]
mod spawned;

use std::path::{Path, PathBuf};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::process::ExitCode {
    let mut args = std::env::args()
        .skip(1)
        .map(|arg| arg.parse::<u64>().expect("numbers"));
    let seconds = args.next().unwrap_or(600);
    let rate = args.next().unwrap_or(2000);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let binary = std::env::var_os("AUTHZ_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/release/smart-authz"));
    assert!(binary.exists(), "build it first: cargo build --release");
    let report = soak::run(&binary, &root.join("tests/fixtures/keys"), seconds, rate).await;
    println!("second,rss_kib,calls,errors");
    for sample in &report.samples {
        println!(
            "{},{},{},{}",
            sample.second, sample.rss_kib, sample.calls, sample.errors
        );
    }
    println!("{}", report.json());
    let (warm, steady) = report.rss_halves();
    if report.errors() > 0 || steady > warm + warm / 5 + 2048 {
        return std::process::ExitCode::FAILURE;
    }
    std::process::ExitCode::SUCCESS
}
