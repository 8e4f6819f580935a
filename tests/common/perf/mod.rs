//! The performance report of docs/performance.md: every scenario side by side against the
//! gRPC floor (`grpc.health.v1.Health/Check` on the same server, in the same run), each
//! bounded in calls and time, printed as a table and as JSON. Shared by `examples/perf.rs`
//! (the measurement) and `tests/perf_smoke.rs` (a few hundred calls, so the tool never rots).
//!
//! The server is the real `smart-authz` binary in its own process, pinned to CPU 0 when the
//! machine has two or more (`taskset`); the caller should pin itself to the other. Besides
//! throughput and latency, each scenario reports the server's CPU time per call, read from
//! `/proc/<pid>/stat` (USER_HZ 100): the cost the service adds, whatever the client costs.
//!
//! The layout, from the wire up:
//! - `preencoded`: gRPC frames encoded once, sent over the `h2` crate's client, each answer
//!   judged by what it must say;
//! - `server`: the binary under measurement and what `/proc` says of it;
//! - `options`: how much the tool runs, and over which transport;
//! - `keys`, `requests`: the tokens and the requests the scenarios send;
//! - `load`: calls in flight, their latencies and the server's CPU per call;
//! - `scenarios`: the floor, the cached call, the working set, new tokens;
//! - `run` and `report`: the full report, its table and JSON;
//! - `paired`, `paired_cold`: the same scenarios in alternating slices, for the ratios;
//! - `h2load`: the floor and the cached call by an independent load generator;
//! - `judged`: which answers count, shown on five calls.

#![allow(dead_code)]

mod h2load;
mod judged;
mod keys;
mod load;
mod options;
mod paired;
mod paired_cold;
mod preencoded;
mod report;
mod requests;
mod run;
mod scenarios;
mod server;

pub use self::options::{Options, Transport};
pub use self::paired::{paired, paired_table};
pub use self::paired_cold::{paired_cold, paired_cold_table};
pub use self::run::run;
// Each of the two programs that include this module names one of these.
#[allow(
    unused_imports,
    reason = "examples/perf.rs alone runs h2load and names the machine"
)]
pub use self::{h2load::h2load, report::Machine};
#[allow(
    unused_imports,
    reason = "tests/perf_smoke.rs alone judges calls and names the report"
)]
pub use self::{judged::judged, report::Report};
