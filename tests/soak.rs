//! A short soak in the suite (`SOAK_SECONDS`, 20 s by default): the real binary under steady
//! load with rotating tokens, zero errors, and resident memory flat once the token cache is
//! full. The 10-minute soak of docs/operations.md is `examples/soak.rs`, the same code.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a panic is a failed test"
)]

#[path = "common/soak.rs"]
mod soak;
#[path = "common/spawned.rs"]
mod spawned;

use std::path::Path;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_load_with_rotating_tokens_has_no_errors_and_flat_memory() {
    let seconds = std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|seconds| seconds.parse().ok())
        .unwrap_or(20);
    let keys = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/keys");
    let report = soak::run(
        Path::new(env!("CARGO_BIN_EXE_smart-authz")),
        &keys,
        seconds,
        500,
    )
    .await;
    eprintln!("{}", report.json());
    assert_eq!(report.errors(), 0, "every call allowed");
    assert!(
        report.calls() >= seconds * 250,
        "the load ran: {} calls",
        report.calls()
    );
    let (warm, steady) = report.rss_halves();
    assert!(warm > 0, "resident memory was read");
    // Flat: the cache is full within the first half; the second half may not grow by more
    // than a fifth (allocator noise) plus 2 MiB.
    assert!(
        steady <= warm + warm / 5 + 2048,
        "resident memory grew from {warm} KiB to {steady} KiB"
    );
}
