//! The full report: every scenario against the floor on one server, then the raw
//! verifications and the memory.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use prost::Message;
use smart_authz::grpc::pb;

use super::keys::{COLD_ES256_FIRST, COLD_RS256_FIRST, FLOOD_FIRST, Keys, mint_many};
use super::load::{ALLOW, CHECK_ALLOWED, Method, send_one};
use super::options::{Options, Transport};
use super::preencoded::{self, Expect};
use super::report::{Machine, Memory, Report};
use super::requests::{
    BATCH_CHECK_ACCESS, CHECK_ACCESS, ENVOY_CHECK, FILTER_RESOURCES, INTROSPECT_TOKEN, SEARCH,
    check_request, delete_request, envoy_request, observation_5kb, searchset_20,
};
use super::scenarios::{
    check_cached, check_cold, check_working_set, flood, health_floor, health_token_bytes,
    working_set,
};
use super::server::{SCENARIO_CACHE_BYTES, Server};

/// Runs every scenario against `binary` and measures memory.
pub async fn run(binary: &Path, keys_dir: &Path, options: &Options) -> Report {
    let keys = Arc::new(Keys::load(keys_dir));
    let (server, links) = Server::for_scenarios(binary, &keys, options).await;
    let pid = server.pid();
    let token = Arc::new(keys.mint(Algorithm::RS256, 0));
    let mut scenarios = Vec::new();

    scenarios.push(health_floor(&links, options, pid).await);

    if options.runs("health_token_bytes") {
        scenarios.push(health_token_bytes(&links, token.len(), options, pid).await);
    }

    if options.runs("check_cached") {
        let request = check_request(&token, SEARCH, None);
        scenarios.push(check_cached(&links, &request, options, pid).await);
    }

    if options.runs("check_10k_tokens") {
        let set = working_set(&links, &keys, options, pid).await;
        scenarios.push(check_working_set(&links, set, options, pid).await);
    }

    for (name, algorithm, offset) in [
        ("cold_rs256", Algorithm::RS256, COLD_RS256_FIRST),
        ("cold_es256", Algorithm::ES256, COLD_ES256_FIRST),
    ] {
        if !options.runs(name) {
            continue;
        }
        let fresh = mint_many(&keys, algorithm, offset, options.cold_tokens).await;
        scenarios.push(check_cold(name, &links, fresh, options, pid).await);
    }

    if options.runs("check_denied") {
        // The path a denial takes, which the allow-only scenarios never run.
        let denied = delete_request(&token);
        let denied_for_scope = Method {
            path: CHECK_ACCESS,
            expect: Expect::Answer(|answer| {
                pb::CheckAccessResponse::decode(answer).is_ok_and(|answer| {
                    answer.decision == pb::Decision::Deny as i32
                        && answer.reason == pb::Reason::NoMatchingScope as i32
                })
            }),
        };
        scenarios.push(
            send_one(
                "check_denied",
                &links,
                denied_for_scope,
                &denied,
                options,
                pid,
            )
            .await,
        );
    }

    if options.runs("resource_json_5kb") {
        let stored = check_request(&token, "Observation/obs-1", Some(observation_5kb()));
        scenarios.push(
            send_one(
                "resource_json_5kb",
                &links,
                CHECK_ALLOWED,
                &stored,
                options,
                pid,
            )
            .await,
        );
    }

    if options.runs("batch_20") {
        let batch = pb::BatchCheckAccessRequest {
            access_token: (*token).clone(),
            bundle_type: pb::BundleType::Batch as i32,
            entries: (0..20)
                .map(|index| pb::BatchEntry {
                    request: Some(pb::batch_entry::Request::Http(pb::HttpRequest {
                        method: "GET".into(),
                        path: format!("Observation/o{index}"),
                        ..Default::default()
                    })),
                    stored: None,
                    proposed: None,
                })
                .collect(),
            ..Default::default()
        };
        let allowed = Method {
            path: BATCH_CHECK_ACCESS,
            expect: ALLOW,
        };
        scenarios.push(send_one("batch_20", &links, allowed, &batch, options, pid).await);
    }

    if options.runs("filter_20") {
        let filter = pb::FilterResourcesRequest {
            access_token: (*token).clone(),
            request: Some(pb::filter_resources_request::Request::Http(
                pb::HttpRequest {
                    method: "GET".into(),
                    path: SEARCH.into(),
                    ..Default::default()
                },
            )),
            response: searchset_20(),
            ..Default::default()
        };
        let half_withheld = Method {
            path: FILTER_RESOURCES,
            expect: Expect::Answer(|answer| {
                pb::FilterResourcesResponse::decode(answer).is_ok_and(|answer| {
                    answer.decision == pb::Decision::Allow as i32 && answer.withheld == 10
                })
            }),
        };
        scenarios.push(send_one("filter_20", &links, half_withheld, &filter, options, pid).await);
    }

    if options.runs("introspect_cached") {
        let introspection = pb::IntrospectTokenRequest {
            token: (*token).clone(),
            ..Default::default()
        };
        let active = Method {
            path: INTROSPECT_TOKEN,
            expect: Expect::Answer(|answer| {
                pb::IntrospectTokenResponse::decode(answer).is_ok_and(|answer| answer.active)
            }),
        };
        scenarios.push(
            send_one(
                "introspect_cached",
                &links,
                active,
                &introspection,
                options,
                pid,
            )
            .await,
        );
    }

    if options.runs("envoy_check") {
        let ok = Method {
            path: ENVOY_CHECK,
            expect: Expect::EnvoyOk,
        };
        scenarios.push(
            send_one(
                "envoy_check",
                &links,
                ok,
                &envoy_request(&token),
                options,
                pid,
            )
            .await,
        );
    }
    server.stop().await;

    let raw_rs256_us = keys.raw_verify_us(Algorithm::RS256, options.raw_rounds());
    let raw_es256_us = keys.raw_verify_us(Algorithm::ES256, options.raw_rounds());
    let memory = if options.skip_memory {
        Memory::default()
    } else {
        measure_memory(binary, &keys, options).await
    };
    Report {
        scenarios,
        raw_rs256_us,
        raw_es256_us,
        memory,
        options: options.clone(),
        machine: Machine::of(binary),
    }
}

/// Resident memory idle, with `memory_tokens` distinct tokens cached (a cache large
/// enough for all), and once a cache bounded at `memory_bound_bytes` is full.
pub(super) async fn measure_memory(binary: &Path, keys: &Keys, options: &Options) -> Memory {
    let tokens: Arc<Vec<String>> = Arc::new(
        (0..options.memory_tokens)
            // ES256 only to mint 100,000 quickly: the cache keeps the verified claims and
            // context, never the token, so the signature's length costs no cache memory.
            .map(|serial| keys.mint(Algorithm::ES256, FLOOD_FIRST + serial))
            .collect(),
    );
    let mut memory = Memory {
        tokens: tokens.len(),
        bound_bytes: options.memory_bound_bytes,
        ..Memory::default()
    };
    for (bound, filled) in [
        (SCENARIO_CACHE_BYTES, true),
        (options.memory_bound_bytes, false),
    ] {
        let server = Server::start(
            binary,
            keys,
            bound,
            options.pin_server,
            Transport::Tcp,
            false,
        )
        .await;
        let pid = server.pid();
        let links = Arc::new(server.links(options.connections.max(1)).await);
        // One call first: the idle footprint of a serving process.
        let first = preencoded::encode(&check_request(&tokens[0], SEARCH, None));
        assert!(preencoded::call(&links[0], CHECK_ACCESS, &first, ALLOW).await);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let idle = server.served.rss_kib();
        let filling = flood("memory", &links, Arc::clone(&tokens), options, pid).await;
        assert_eq!(filling.errors, 0, "every token is accepted");
        tokio::time::sleep(Duration::from_millis(500)).await;
        if filled {
            memory.idle_kib = idle;
            memory.filled_kib = server.served.rss_kib();
        } else {
            memory.bounded_kib = server.served.rss_kib();
        }
        server.stop().await;
    }
    memory
}
