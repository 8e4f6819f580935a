//! Metrics end to end: a few calls on the real server, then a scrape of `/metrics` on its
//! own listener, parsed as Prometheus text.
//!
//! The recorder is process-wide, so this file is its own test binary; its tests count with
//! labels the other does not touch.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a panic is a failed test"
)]

mod common;

use common::*;
use prometheus_parse::{Sample, Scrape, Value};
use smart_authz::grpc::pb;

fn scrape_text(text: &str) -> Scrape {
    Scrape::parse(text.lines().map(|line| Ok(line.to_owned()))).expect("Prometheus text parses")
}

async fn scrape(server: &TestServer) -> (String, Scrape) {
    let address = server.metrics_address.expect("metrics are served");
    let response = reqwest::get(format!("http://{address}/metrics"))
        .await
        .expect("the metrics listener answers");
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = response.text().await.unwrap();
    let scrape = scrape_text(&text);
    (text, scrape)
}

fn sample<'a>(scrape: &'a Scrape, name: &str, labels: &[(&str, &str)]) -> Option<&'a Sample> {
    scrape.samples.iter().find(|sample| {
        sample.metric == name
            && labels
                .iter()
                .all(|(key, value)| sample.labels.get(key) == Some(*value))
    })
}

fn number(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    match sample(scrape, name, labels).map(|sample| &sample.value) {
        Some(Value::Counter(value) | Value::Gauge(value) | Value::Untyped(value)) => *value,
        Some(other) => panic!("{name} is {other:?}"),
        None => 0.0,
    }
}

/// The observation count of a histogram series.
fn histogram_count(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    match sample(scrape, name, labels).map(|sample| &sample.value) {
        Some(Value::Histogram(buckets)) => buckets
            .iter()
            .find(|bucket| bucket.less_than == f64::INFINITY)
            .map(|bucket| bucket.count)
            .unwrap_or_default(),
        Some(other) => panic!("{name} is {other:?}"),
        None => 0.0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_move_after_calls_and_the_scrape_parses() {
    let issuer = TestIssuer::start(&[&RSA_1]).await;
    let server = TestServer::start_with_metrics(&format!(
        "[telemetry]\naudit = \"off\"\n{}",
        issuer.issuer_toml()
    ))
    .await;
    let (_, before) = scrape(&server).await;
    let allow_labels = [
        ("face", "grpc"),
        ("decision", "allow"),
        ("reason", "granted"),
        ("interaction", "read"),
        ("context", "patient"),
    ];
    let allows_before = number(&before, "smart_authz_decisions_total", &allow_labels);

    let token = issuer.patient_token("patient/Observation.rs", "123");
    for _ in 0..3 {
        let allowed = server.check(&token, "GET", "Observation/obs-1").await;
        assert_eq!(decision(&allowed), pb::Decision::Allow);
    }
    let denied = server.check(&token, "GET", "Condition/c-1").await;
    assert_eq!(decision(&denied), pb::Decision::Deny);
    let refused = server
        .check("not-a-token", "GET", "Observation/obs-1")
        .await;
    assert_eq!(decision(&refused), pb::Decision::Deny);

    let (text, after) = scrape(&server).await;
    assert_eq!(
        number(&after, "smart_authz_decisions_total", &allow_labels) - allows_before,
        3.0,
        "{text}"
    );
    let scope_deny = [
        ("face", "grpc"),
        ("decision", "deny"),
        ("reason", "no_matching_scope"),
        ("interaction", "read"),
        ("context", "none"),
    ];
    assert!(
        number(&after, "smart_authz_decisions_total", &scope_deny) >= 1.0,
        "{text}"
    );
    let token_deny = [("decision", "deny"), ("reason", "token_malformed")];
    assert!(
        number(&after, "smart_authz_decisions_total", &token_deny) >= 1.0,
        "{text}"
    );

    let check_access = [("rpc", "CheckAccess")];
    let calls = histogram_count(&after, "smart_authz_rpc_duration_seconds", &check_access)
        - histogram_count(&before, "smart_authz_rpc_duration_seconds", &check_access);
    assert_eq!(calls, 5.0, "{text}");
    assert_eq!(
        number(&after, "smart_authz_requests_in_flight", &check_access),
        0.0,
        "{text}"
    );
    // The first call and the bad token miss; the other calls with the good token hit.
    assert!(
        number(&after, "smart_authz_token_cache_hits_total", &[]) >= 2.0,
        "{text}"
    );
    assert!(
        number(&after, "smart_authz_token_cache_misses_total", &[]) >= 1.0,
        "{text}"
    );
    assert!(number(&after, "smart_authz_token_cache_entries", &[]) >= 0.0);
    assert!(
        number(&after, "smart_authz_token_verifications_total", &[]) >= 1.0,
        "{text}"
    );
    // The issuer's keys were loaded at startup.
    assert!(
        number(&after, "smart_authz_jwks_refreshes_total", &[]) >= 1.0,
        "{text}"
    );
    assert_eq!(
        number(
            &after,
            "smart_authz_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    for name in [
        "smart_authz_decisions_total",
        "smart_authz_rpc_duration_seconds",
        "smart_authz_token_cache_hits_total",
    ] {
        assert!(after.docs.contains_key(name), "no HELP for {name}");
    }
    // Label values are enums: no request text (ids, tokens) becomes a label.
    for sample in &after.samples {
        for value in sample.labels.values() {
            assert!(
                !value.contains("obs-1") && !value.contains(&token),
                "{value}"
            );
        }
    }

    let missing = reqwest::get(format!("http://{}/other", server.metrics_address.unwrap()))
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_introspection_endpoint_is_counted() {
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = TestServer::start_with_metrics(&format!(
        "[[issuers]]\nissuer = \"https://as.down.test\"\naudiences = [\"{AUDIENCE}\"]\nintrospection_endpoint = \"http://127.0.0.1:{closed_port}/introspect\"\nclient_id = \"rs\"\nclient_secret = \"s3cret\"\n"
    ))
    .await;
    let (_, before) = scrape(&server).await;
    let unreachable = [("kind", "unreachable")];
    let introspect = [("rpc", "IntrospectToken")];
    let unavailable = [("rpc", "IntrospectToken"), ("code", "unavailable")];

    let error = server
        .client
        .clone()
        .introspect_token(pb::IntrospectTokenRequest {
            token: "an-opaque-token".into(),
            ..Default::default()
        })
        .await
        .expect_err("the issuer is down");
    assert_eq!(error.code(), tonic::Code::Unavailable);

    let (text, after) = scrape(&server).await;
    let moved = |name: &str, labels: &[(&str, &str)]| {
        number(&after, name, labels) - number(&before, name, labels)
    };
    assert_eq!(
        moved("smart_authz_introspection_errors_total", &unreachable),
        1.0,
        "{text}"
    );
    assert_eq!(
        moved("smart_authz_rpc_errors_total", &unavailable),
        1.0,
        "{text}"
    );
    assert!(
        histogram_count(&after, "smart_authz_introspection_duration_seconds", &[])
            > histogram_count(&before, "smart_authz_introspection_duration_seconds", &[]),
        "{text}"
    );
    assert!(
        histogram_count(&after, "smart_authz_rpc_duration_seconds", &introspect)
            > histogram_count(&before, "smart_authz_rpc_duration_seconds", &introspect),
        "{text}"
    );
    server.stop().await;
}
