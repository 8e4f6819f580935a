//! The scenarios a report, the paired rounds and the cold rounds share: the floor, the
//! cached call, the working set, new tokens.

use std::sync::Arc;

use jsonwebtoken::Algorithm;
use smart_authz::grpc::pb;
use tonic_health::pb::HealthCheckRequest;

use super::keys::{Keys, WORKING_SET_FIRST, mint_many};
use super::load::{CHECK_ALLOWED, HEALTH_SERVING, send_each, send_one};
use super::options::Options;
use super::preencoded::{self, Body, Link};
use super::report::Measured;
use super::requests::{encode_checks, padded_health_check};

/// The floor: `grpc.health.v1.Health/Check`, answered SERVING.
pub(super) async fn health_floor(links: &Arc<Vec<Link>>, options: &Options, pid: u32) -> Measured {
    let body = preencoded::encode(&HealthCheckRequest::default());
    health_check("health_floor", body, links, options, pid).await
}

/// `Health/Check` with `body` (the plain request or one carrying padding), answered
/// SERVING.
pub(super) async fn health_check(
    name: &'static str,
    body: Body,
    links: &Arc<Vec<Link>>,
    options: &Options,
    pid: u32,
) -> Measured {
    let bodies = Arc::new(vec![body]);
    send_each(
        name,
        links,
        HEALTH_SERVING,
        bodies,
        options.calls,
        options,
        pid,
    )
    .await
}

/// `CheckAccess` with one cached token, `request` again and again, answered ALLOW.
pub(super) async fn check_cached(
    links: &Arc<Vec<Link>>,
    request: &pb::CheckAccessRequest,
    options: &Options,
    pid: u32,
) -> Measured {
    send_one("check_cached", links, CHECK_ALLOWED, request, options, pid).await
}

/// `options.working_set` distinct RS256 tokens of the cached call's shape, each verified
/// and cached by one call, as `CheckAccess` requests encoded once.
pub(super) async fn working_set(
    links: &Arc<Vec<Link>>,
    keys: &Arc<Keys>,
    options: &Options,
    pid: u32,
) -> Arc<Vec<Body>> {
    let set = mint_many(
        keys,
        Algorithm::RS256,
        WORKING_SET_FIRST,
        options.working_set,
    )
    .await;
    let bodies = encode_checks(&set);
    let calls = bodies.len() as u64;
    let warm_up = send_each(
        "warm_up",
        links,
        CHECK_ALLOWED,
        Arc::clone(&bodies),
        calls,
        options,
        pid,
    )
    .await;
    assert_eq!(warm_up.errors, 0, "the working set is accepted");
    bodies
}

/// `CheckAccess` with each token of a [`working_set`] in turn, all cached: the cached call
/// once the cache's entries no longer sit in the processor's caches.
pub(super) async fn check_working_set(
    links: &Arc<Vec<Link>>,
    set: Arc<Vec<Body>>,
    options: &Options,
    pid: u32,
) -> Measured {
    let calls = options.calls;
    send_each(
        "check_10k_tokens",
        links,
        CHECK_ALLOWED,
        set,
        calls,
        options,
        pid,
    )
    .await
}

/// `CheckAccess` with a token never seen before in each call: the first `options.calls` of
/// `tokens`, each once. The verification and caching of a new token on top of a cached
/// call's work. The requests are encoded before the clock starts, as the cached call's
/// are, so the two differ by the server's work only.
pub(super) async fn check_cold(
    name: &'static str,
    links: &Arc<Vec<Link>>,
    tokens: Arc<Vec<String>>,
    options: &Options,
    pid: u32,
) -> Measured {
    let calls = options.calls.min(tokens.len() as u64);
    let bodies = encode_checks(&tokens[..calls as usize]);
    drop(tokens);
    send_each(name, links, CHECK_ALLOWED, bodies, calls, options, pid).await
}

/// [`check_cold`] with every one of `tokens`, however long it takes.
pub(super) async fn flood(
    name: &'static str,
    links: &Arc<Vec<Link>>,
    tokens: Arc<Vec<String>>,
    options: &Options,
    pid: u32,
) -> Measured {
    let unbounded = Options {
        calls: tokens.len() as u64,
        seconds: 600.0,
        ..options.clone()
    };
    check_cold(name, links, tokens, &unbounded, pid).await
}

/// The floor again, carrying `padding` bytes (as many as the token) in a field the server
/// skips (protobuf ignores unknown fields): what moving a token costs before any work on it.
pub(super) async fn health_token_bytes(
    links: &Arc<Vec<Link>>,
    padding: usize,
    options: &Options,
    pid: u32,
) -> Measured {
    let body = padded_health_check(padding);
    health_check("health_token_bytes", body, links, options, pid).await
}
