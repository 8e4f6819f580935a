//! Driving calls: `concurrency` calls in flight over the server's connections, each
//! answer judged, the latencies and the server's CPU time counted.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prost::Message;
use smart_authz::grpc::pb;

use super::options::Options;
use super::preencoded::{self, Body, Expect, Link};
use super::report::Measured;
use super::requests::{CHECK_ACCESS, HEALTH_CHECK, SERVING};
use super::server::{TICKS_PER_SECOND, cpu_ticks};

/// Runs one scenario: `call(connection, serial)` answers whether the call succeeded.
pub(super) async fn drive<F, Fut>(
    name: &'static str,
    options: &Options,
    pid: u32,
    calls: u64,
    call: F,
) -> Measured
where
    F: Fn(usize, u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = bool> + Send,
{
    let issued = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs_f64(options.seconds);
    let cpu_before = cpu_ticks(pid);
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..options.concurrency {
        let (issued, call) = (Arc::clone(&issued), call.clone());
        let connection = worker % options.connections.max(1);
        workers.spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0_u64;
            loop {
                let serial = issued.fetch_add(1, Ordering::Relaxed);
                if serial >= calls || Instant::now() >= deadline {
                    break;
                }
                let sent = Instant::now();
                if !call(connection, serial).await {
                    errors += 1;
                }
                latencies.push(u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX));
            }
            (latencies, errors)
        });
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    while let Some(worker) = workers.join_next().await {
        let (worker_latencies, worker_errors) = worker.unwrap();
        latencies.extend(worker_latencies);
        errors += worker_errors;
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = cpu_ticks(pid).saturating_sub(cpu_before) as f64 / TICKS_PER_SECOND;
    latencies.sort_unstable();
    let done = latencies.len() as u64;
    Measured {
        name,
        calls: done,
        errors,
        seconds,
        p50_us: percentile(&latencies, 0.50),
        p99_us: percentile(&latencies, 0.99),
        server_cpu_us: cpu * 1e6 / done.max(1) as f64,
    }
}

/// The `p` quantile (0 to 1) of `sorted` latencies, 0 for none: the nearest rank below.
pub(super) fn percentile(sorted: &[u64], p: f64) -> u64 {
    sorted
        .get((sorted.len().saturating_sub(1) as f64 * p) as usize)
        .copied()
        .unwrap_or(0)
}

/// What an allowed `CheckAccess` (or `BatchCheckAccess`) answers in its field 1.
pub(super) const ALLOW: Expect = Expect::FirstField(pb::Decision::Allow as i32);

/// The method a scenario calls, and what each answer must say.
#[derive(Clone, Copy, Debug)]
pub(super) struct Method {
    pub(super) path: &'static str,
    pub(super) expect: Expect,
}

/// `Health/Check`, answered SERVING.
pub(super) const HEALTH_SERVING: Method = Method {
    path: HEALTH_CHECK,
    expect: Expect::FirstField(SERVING),
};

/// `CheckAccess`, answered ALLOW.
pub(super) const CHECK_ALLOWED: Method = Method {
    path: CHECK_ACCESS,
    expect: ALLOW,
};

/// `request`, encoded once, sent to `method` again and again.
pub(super) async fn send_one(
    name: &'static str,
    links: &Arc<Vec<Link>>,
    method: Method,
    request: &impl Message,
    options: &Options,
    pid: u32,
) -> Measured {
    let bodies = Arc::new(vec![preencoded::encode(request)]);
    send_each(name, links, method, bodies, options.calls, options, pid).await
}

/// Sends `calls` of `bodies` to `method`, in turn from the first; past the last, from the
/// first again.
pub(super) async fn send_each(
    name: &'static str,
    links: &Arc<Vec<Link>>,
    method: Method,
    bodies: Arc<Vec<Body>>,
    calls: u64,
    options: &Options,
    pid: u32,
) -> Measured {
    let links = Arc::clone(links);
    drive(name, options, pid, calls, move |connection, serial| {
        let link = links[connection].clone();
        let body = bodies[serial as usize % bodies.len()].clone();
        async move { preencoded::call(&link, method.path, &body, method.expect).await }
    })
    .await
}
