//! How the load generator judges an answer, shown on five calls to the real binary.

use std::path::Path;

use jsonwebtoken::Algorithm;

use super::keys::Keys;
use super::load::ALLOW;
use super::options::Transport;
use super::preencoded::{self, Body};
use super::requests::{CHECK_ACCESS, SEARCH, check_request, delete_request};
use super::server::Server;

/// How the generator judges five calls against `binary`: (what was sent, counted as done).
/// Only the allowed read may count; a deny, a gRPC error in the trailers or a trailers-only
/// error is an error of the scenario (`tests/perf_smoke.rs` holds it to that).
pub async fn judged(binary: &Path, keys_dir: &Path) -> Vec<(&'static str, bool)> {
    let keys = Keys::load(keys_dir);
    let server = Server::start(binary, &keys, 1 << 20, false, Transport::Tcp, false).await;
    let link = server.link().await;
    let token = keys.mint(Algorithm::RS256, 0);
    let allowed = preencoded::encode(&check_request(&token, SEARCH, None));
    let forged = check_request("not.a.token", SEARCH, None);
    // Not a `CheckAccessRequest`: INVALID_ARGUMENT. No such method: UNIMPLEMENTED,
    // trailers-only.
    let garbage = Body(prost::bytes::Bytes::from_static(&[
        0, 0, 0, 0, 2, 0xff, 0xff,
    ]));
    let calls = [
        ("allowed", CHECK_ACCESS, allowed.clone()),
        (
            "denied",
            CHECK_ACCESS,
            preencoded::encode(&delete_request(&token)),
        ),
        ("forged", CHECK_ACCESS, preencoded::encode(&forged)),
        ("not a request", CHECK_ACCESS, garbage),
        (
            "no such method",
            "/smartauthz.v1.AuthzService/NoSuchMethod",
            allowed,
        ),
    ];
    let mut judged = Vec::with_capacity(calls.len());
    for (name, path, body) in calls {
        judged.push((name, preencoded::call(&link, path, &body, ALLOW).await));
    }
    server.stop().await;
    judged
}
