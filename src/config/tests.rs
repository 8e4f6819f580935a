use std::time::Duration;

use super::*;
use crate::decision::Outcome;

const MINIMAL: &str = r#"
[[issuers]]
issuer = "https://issuer.example"
audiences = ["https://fhir.example/r4"]
jwks_uri = "https://issuer.example/jwks"
"#;

/// An issuer with introspection settings but neither keys nor endpoint: discovered.
const INTROSPECTING: &str = r#"
[[issuers]]
issuer = "https://as.example"
audiences = ["https://fhir.example/r4"]
client_id = "rs"
client_secret = "s3cret"
"#;

const INTROSPECTING_WITH_ENDPOINT: &str = r#"
[[issuers]]
issuer = "https://as.example"
audiences = ["https://fhir.example/r4"]
introspection_endpoint = "https://as.example/introspect"
client_id = "rs"
client_secret = "s3cret"
"#;

fn error_of(text: &str) -> String {
    Config::from_toml(text).expect_err("invalid").to_string()
}

#[test]
fn defaults_fill_what_the_file_leaves_out() {
    let config = Config::from_toml(MINIMAL).unwrap();
    assert_eq!(config.listen.to_string(), "0.0.0.0:50051");
    assert_eq!(config.policy.fhir_version, FhirVersion::R4);
    assert_eq!(config.issuers[0].algorithms, DEFAULT_ALGORITHMS.to_vec());
    assert_eq!(
        config.issuers[0].keys,
        Some(KeySource::Uri("https://issuer.example/jwks".into()))
    );
    assert!(!config.issuers[0].discovery);
    assert!(config.issuers[0].introspection.is_none());
    assert!(!config.issuers[0].opaque_tokens);
    assert_eq!(config.cache.max_ttl_secs, 300);
    assert_eq!(config.cache.max_bytes, 64 * 1024 * 1024);
    assert_eq!(config.cache.introspection_max_ttl_secs, 300);
    assert_eq!(config.cache.negative_ttl_secs, 10);
    assert!(config.policy.patient_from_fhir_user);
    assert!(config.policy.operations.contains_key("everything"));
    assert!(!config.development);
}

#[test]
fn the_development_configuration_loads_from_any_directory() {
    let config =
        Config::load_with_env(None, Serialized::defaults(figment::value::Dict::new())).unwrap();
    assert!(config.development);
    assert_eq!(
        config.issuers[0].keys,
        Some(KeySource::Inline(DEVELOPMENT_JWKS.to_owned()))
    );
    assert!(!config.issuers[0].discovery);
    assert_eq!(config.listen.to_string(), "127.0.0.1:50051");
}

#[test]
fn environment_overrides_the_file() {
    let env = Serialized::defaults(serde_json::json!({
        "listen": "127.0.0.1:6000",
        "fhir_version": "r5",
        "policy": {"strict_scopes": true}
    }));
    let config = Config::load_with_env(None, env).unwrap();
    assert_eq!(config.listen.to_string(), "127.0.0.1:6000");
    assert_eq!(config.policy.fhir_version, FhirVersion::R5);
    assert!(config.policy.strict_scopes);
}

#[test]
fn custom_operations_add_to_the_defaults() {
    let config = Config::from_toml(&format!(
        "{MINIMAL}\n[policy.operations.meta]\nrule = \"permissions\"\nletters = \"r\"\n"
    ))
    .unwrap();
    assert!(config.policy.operations.contains_key("meta"));
    assert!(config.policy.operations.contains_key("everything"));
}

#[test]
fn errors_name_the_key() {
    let cases = [
        (format!("listen = \"nowhere\"\n{MINIMAL}"), "`listen`"),
        ("".to_owned(), "`issuers`"),
        (
            MINIMAL.replace("audiences = [\"https://fhir.example/r4\"]", ""),
            "`issuers[0].audiences`",
        ),
        (
            format!("{MINIMAL}jwks_file = \"x.json\"\n"),
            "`issuers[0].jwks_uri`",
        ),
        (
            format!("{MINIMAL}algorithms = [\"HS256\"]\n"),
            "`issuers[0].algorithms`",
        ),
        (
            format!("{MINIMAL}algorithms = [\"none\"]\n"),
            "`issuers[0].algorithms`",
        ),
        (
            MINIMAL.replace(
                "jwks_uri = \"https://issuer.example/jwks\"",
                "jwks_uri = \"ftp://x\"",
            ),
            "`issuers[0].jwks_uri`",
        ),
        (
            format!("{MINIMAL}[cache]\nmax_bytes = 100\n"),
            "`cache.max_bytes`",
        ),
        (
            format!("{MINIMAL}[cache]\nintrospection_max_ttl_secs = 0\n"),
            "`cache.introspection_max_ttl_secs`",
        ),
        (
            format!("{INTROSPECTING}introspection_endpoint = \"ftp://x\"\n"),
            "`issuers[0].introspection_endpoint`",
        ),
        (
            INTROSPECTING_WITH_ENDPOINT.replace("client_id = \"rs\"\n", ""),
            "`issuers[0].client_id`",
        ),
        (
            INTROSPECTING_WITH_ENDPOINT.replace("client_secret = \"s3cret\"\n", ""),
            "`issuers[0].client_secret`",
        ),
        (
            format!("{INTROSPECTING_WITH_ENDPOINT}client_secret_file = \"/x\"\n"),
            "`issuers[0].client_secret`",
        ),
        (
            INTROSPECTING_WITH_ENDPOINT.replace(
                "client_secret = \"s3cret\"",
                "client_secret_file = \"/nonexistent/secret\"",
            ),
            "`issuers[0].client_secret_file`",
        ),
        (
            format!("{INTROSPECTING_WITH_ENDPOINT}introspection_auth = \"private_key_jwt\"\n"),
            "`issuers[0].introspection_auth`",
        ),
        (
            format!("{MINIMAL}client_id = \"rs\"\nclient_secret = \"x\"\n"),
            "`issuers[0].introspection_endpoint`",
        ),
        (
            format!("{MINIMAL}introspection_only = true\n"),
            "`issuers[0].introspection_only`",
        ),
        (
            format!("{INTROSPECTING_WITH_ENDPOINT}jwks_uri = \"https://as.example/jwks\"\nintrospection_only = true\n"),
            "`issuers[0].introspection_only`",
        ),
        (
            format!("{MINIMAL}opaque_tokens = true\n"),
            "`issuers[0].opaque_tokens`",
        ),
        (
            format!(
                "{INTROSPECTING_WITH_ENDPOINT}{}",
                INTROSPECTING_WITH_ENDPOINT.replace("https://as.example", "https://as2.example")
            ),
            "`issuers[1].opaque_tokens`",
        ),
        (
            "[[issuers]]\nissuer = \"not-a-url\"\naudiences = [\"https://fhir.example/r4\"]\n"
                .to_owned(),
            "`issuers[0].issuer`",
        ),
        (
            "[[issuers]]\nissuer = \"https://as.example\"\naudiences = [\"https://fhir.example/r4\"]\ndiscovery = false\n"
                .to_owned(),
            "`issuers[0].jwks_uri`",
        ),
        (
            format!("{MINIMAL}[policy.operations.meta]\nrule = \"permissions\"\nletters = \"x\"\n"),
            "policy.operations.meta.letters",
        ),
    ];
    for (text, key) in cases {
        let error = error_of(&text);
        assert!(error.contains(key), "{key}: {error}");
    }
}

#[test]
fn unknown_keys_and_wrong_types_are_refused_by_name() {
    let error = error_of(&format!("lisen = \"0.0.0.0:1\"\n{MINIMAL}"));
    assert!(error.contains("lisen"), "{error}");
    let error = error_of(&format!("{MINIMAL}leeway_secs = \"ten\"\n"));
    assert!(error.contains("leeway_secs"), "{error}");
    let error = error_of(&format!("fhir_version = \"r6\"\n{MINIMAL}"));
    assert!(error.contains("fhir_version"), "{error}");
}

#[test]
fn an_issuer_alone_is_discovered() {
    let config = Config::from_toml(
        "[[issuers]]\nissuer = \"https://as.example\"\naudiences = [\"https://fhir.example/r4\"]\n",
    )
    .unwrap();
    let issuer = &config.issuers[0];
    assert!(issuer.discovery);
    assert_eq!(issuer.keys, None);
    assert!(issuer.introspection.is_none());
    assert!(!issuer.opaque_tokens);

    let config = Config::from_toml(INTROSPECTING).unwrap();
    let issuer = &config.issuers[0];
    assert!(issuer.discovery);
    let introspection = issuer.introspection.as_ref().unwrap();
    assert_eq!(introspection.endpoint, None);
    assert!(issuer.opaque_tokens);
}

#[test]
fn introspection_settings_and_their_defaults() {
    let config = Config::from_toml(INTROSPECTING_WITH_ENDPOINT).unwrap();
    let issuer = &config.issuers[0];
    assert!(!issuer.discovery);
    assert!(issuer.opaque_tokens);
    assert!(!issuer.introspection_only);
    let introspection = issuer.introspection.as_ref().unwrap();
    assert_eq!(
        introspection.endpoint.as_deref(),
        Some("https://as.example/introspect")
    );
    assert_eq!(introspection.auth, IntrospectionAuth::ClientSecretBasic);
    assert_eq!(introspection.client_id.as_deref(), Some("rs"));
    assert_eq!(introspection.client_secret.expose(), "s3cret");
    assert_eq!(introspection.timeout, Duration::from_millis(3000));
    assert_eq!(introspection.max_concurrency, 32);

    let custom = Config::from_toml(&format!(
        "{INTROSPECTING_WITH_ENDPOINT}introspection_auth = \"client_secret_post\"\nintrospection_timeout_ms = 700\nintrospection_max_concurrency = 4\nopaque_tokens = false\ndiscovery = true\n"
    ))
    .unwrap();
    let issuer = &custom.issuers[0];
    assert!(issuer.discovery && !issuer.opaque_tokens);
    let introspection = issuer.introspection.as_ref().unwrap();
    assert_eq!(introspection.auth, IntrospectionAuth::ClientSecretPost);
    assert_eq!(introspection.timeout, Duration::from_millis(700));
    assert_eq!(introspection.max_concurrency, 4);

    // A bearer token needs no client id.
    let bearer = Config::from_toml(&format!(
        "{}introspection_auth = \"bearer\"\n",
        INTROSPECTING_WITH_ENDPOINT.replace("client_id = \"rs\"\n", "")
    ))
    .unwrap();
    let introspection = bearer.issuers[0].introspection.as_ref().unwrap();
    assert_eq!(introspection.auth, IntrospectionAuth::Bearer);
    assert_eq!(introspection.client_id, None);
}

#[test]
fn one_opaque_issuer_among_several_is_fine() {
    let second = INTROSPECTING_WITH_ENDPOINT.replace("https://as.example", "https://as2.example");
    let config = Config::from_toml(&format!(
        "{INTROSPECTING_WITH_ENDPOINT}{second}opaque_tokens = false\nintrospection_only = true\n"
    ))
    .unwrap();
    assert!(config.issuers[0].opaque_tokens);
    assert!(!config.issuers[1].opaque_tokens);
    assert!(config.issuers[1].introspection_only);
}

#[test]
fn the_client_secret_file_is_read_at_startup_and_trimmed() {
    let path = std::env::temp_dir().join(format!(
        "smart-authz-secret-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::write(&path, "file-secret\n").unwrap();
    let text = INTROSPECTING_WITH_ENDPOINT.replace(
        "client_secret = \"s3cret\"",
        &format!("client_secret_file = {:?}", path.display().to_string()),
    );
    let config = Config::from_toml(&text);
    std::fs::remove_file(&path).unwrap();
    let config = config.unwrap();
    let introspection = config.issuers[0].introspection.as_ref().unwrap();
    assert_eq!(introspection.client_secret.expose(), "file-secret");
}

#[test]
fn secrets_never_show_in_debug_output() {
    let config = Config::from_toml(&format!(
        "{INTROSPECTING_WITH_ENDPOINT}\n[telemetry]\notlp_endpoint = \"http://collector:0tlp-s3cret@otel:4317\"\n"
    ))
    .unwrap();
    let shown = format!("{config:?}");
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(shown.contains("<redacted>"));
    assert!(shown.contains("http://***@otel:4317"), "{shown}");
}

#[test]
fn the_renamed_max_entries_is_refused_by_name() {
    let error = error_of(&format!("{MINIMAL}[cache]\nmax_entries = 10\n"));
    assert!(error.contains("max_entries"), "{error}");
}

#[test]
fn telemetry_defaults_serve_metrics_and_audit_denies() {
    let config = Config::from_toml(MINIMAL).unwrap();
    assert_eq!(
        config.telemetry,
        TelemetryConfig {
            otlp_endpoint: None,
            metrics_listen: Some(DEFAULT_METRICS_LISTEN.parse().unwrap()),
            audit: AuditMode::Denies,
            trace_sampling_ratio: None,
        }
    );
}

#[test]
fn telemetry_is_configured_in_its_section() {
    let config = Config::from_toml(&format!(
        "[telemetry]\notlp_endpoint = \"http://otel-collector:4317\"\nmetrics_listen = \"127.0.0.1:9100\"\naudit = \"all\"\ntrace_sampling_ratio = 0.05\n{MINIMAL}"
    ))
    .unwrap();
    assert_eq!(
        config.telemetry,
        TelemetryConfig {
            otlp_endpoint: Some("http://otel-collector:4317".into()),
            metrics_listen: Some("127.0.0.1:9100".parse().unwrap()),
            audit: AuditMode::All,
            trace_sampling_ratio: Some(0.05),
        }
    );
    let off = Config::from_toml(&format!(
        "[telemetry]\nmetrics_listen = \"\"\naudit = \"off\"\n{MINIMAL}"
    ))
    .unwrap();
    assert_eq!(off.telemetry.metrics_listen, None);
    assert_eq!(off.telemetry.audit, AuditMode::Off);
}

#[test]
fn the_environment_can_disable_metrics() {
    let env = Serialized::defaults(serde_json::json!({
        "telemetry": {"metrics_listen": "", "audit": "all"}
    }));
    let config = Config::load_with_env(None, env).unwrap();
    assert_eq!(config.telemetry.metrics_listen, None);
    assert_eq!(config.telemetry.audit, AuditMode::All);
}

#[test]
fn telemetry_errors_name_the_key() {
    let cases = [
        ("metrics_listen = \"nowhere\"", "`telemetry.metrics_listen`"),
        (
            "metrics_listen = \"0.0.0.0:50051\"",
            "`telemetry.metrics_listen`",
        ),
        (
            "otlp_endpoint = \"otel-collector:4317\"",
            "`telemetry.otlp_endpoint`",
        ),
        (
            "trace_sampling_ratio = 1.5",
            "`telemetry.trace_sampling_ratio`",
        ),
        (
            "trace_sampling_ratio = -0.1",
            "`telemetry.trace_sampling_ratio`",
        ),
        ("audit = \"sometimes\"", "telemetry.audit"),
        ("sampling = 0.5", "sampling"),
    ];
    for (line, key) in cases {
        let error = error_of(&format!("[telemetry]\n{line}\n{MINIMAL}"));
        assert!(error.contains(key), "{line}: {error}");
    }
}

#[test]
fn the_development_key_never_serves_another_issuer_or_another_interface() {
    let env = Serialized::defaults(serde_json::json!({
        "issuers": [{"issuer": "https://idp.example.org", "audiences": ["https://fhir.example/r4"]}]
    }));
    let config = Config::load_with_env(None, env).unwrap();
    assert_ne!(
        config.issuers[0].keys,
        Some(KeySource::Inline(DEVELOPMENT_JWKS.to_owned())),
        "an issuer from the environment must not get the public development key"
    );
    let env = Serialized::defaults(serde_json::json!({"listen": "0.0.0.0:50051"}));
    let error = Config::load_with_env(None, env).unwrap_err().to_string();
    assert!(
        error.contains("`listen`") && error.contains("public"),
        "{error}"
    );
}

#[test]
fn leeway_is_bounded() {
    let error = error_of(&format!("{MINIMAL}leeway_secs = 86400\n"));
    assert!(error.contains("`issuers[0].leeway_secs`"), "{error}");
}

#[test]
fn modes_choose_the_audited_outcomes() {
    assert!(!AuditMode::Off.covers(Outcome::Deny));
    assert!(AuditMode::Denies.covers(Outcome::Deny));
    assert!(!AuditMode::Denies.covers(Outcome::Allow));
    assert!(AuditMode::All.covers(Outcome::Allow));
    assert_eq!(AuditMode::default(), AuditMode::Denies);
}

#[test]
fn an_empty_or_unmatchable_public_path_is_refused() {
    let unmatchable = [
        "\"Questionnaire?status=active\"",
        "\"Patient/*\"",
        "\"metadata#x\"",
        "\"Questionnaire \"",
    ];
    for public in ["\"\"", "\"/\"", "\"//\""].into_iter().chain(unmatchable) {
        let text = format!(
            "[[issuers]]\nissuer = \"https://auth.example\"\naudiences = [\"https://fhir.example\"]\njwks = '{{\"keys\": []}}'\n[envoy]\npublic_paths = [{public}]\n"
        );
        let error = Config::from_toml(&text).unwrap_err();
        assert!(
            error.to_string().contains("envoy.public_paths[0]"),
            "{error}"
        );
    }
    let text = "[[issuers]]\nissuer = \"https://auth.example\"\naudiences = [\"https://fhir.example\"]\njwks = '{\"keys\": []}'\n[envoy]\npublic_paths = [\"Questionnaire\", \"/StructureDefinition/\"]\n";
    assert!(Config::from_toml(text).is_ok());
}

/// Two issuers and two FHIR servers, each trusting one issuer.
const TWO_SERVERS: &str = r#"
[[issuers]]
issuer = "https://as-a.example"
jwks_uri = "https://as-a.example/jwks"

[[issuers]]
issuer = "https://as-b.example"
jwks_uri = "https://as-b.example/jwks"

[[fhir_servers]]
name = "a"
base_urls = ["https://a.example/fhir/"]
issuers = ["https://as-a.example"]
envoy_prefixes = ["/a/"]

[[fhir_servers]]
name = "b"
base_urls = ["https://b.example/fhir"]
audiences = ["https://b.example/fhir", "urn:b"]
issuers = ["https://as-a.example", "https://as-b.example"]
fhir_version = "r5"
envoy_prefixes = ["/b/"]
policy = { user_from_sub = true }
"#;

#[test]
fn without_fhir_servers_one_implicit_server_keeps_the_issuer_audiences() {
    let config = Config::from_toml(MINIMAL).unwrap();
    let [server] = config.fhir_servers.as_slice() else {
        panic!("one implicit server");
    };
    assert_eq!(server.name, DEFAULT_SERVER);
    assert_eq!(server.base_urls, ["https://fhir.example/r4"]);
    assert_eq!(server.audiences, None, "the issuer's audiences decide");
    assert_eq!(server.issuers, None);
    assert_eq!(server.envoy_bases, [FhirBase::root()]);
    assert_eq!(server.policy, config.policy);
    assert!(config.tls.is_none() && config.callers.is_empty());
}

#[test]
fn fhir_servers_carry_their_audiences_issuers_versions_and_policies() {
    let config = Config::from_toml(TWO_SERVERS).unwrap();
    let [a, b] = config.fhir_servers.as_slice() else {
        panic!("two servers");
    };
    assert_eq!(
        a.base_urls,
        ["https://a.example/fhir"],
        "trailing / dropped"
    );
    assert_eq!(a.audiences.as_deref(), Some(&a.base_urls[..]));
    assert_eq!(a.issuers, Some(vec!["https://as-a.example".to_owned()]));
    assert_eq!(a.policy.fhir_version, FhirVersion::R4);
    assert!(!a.policy.user_from_sub);
    assert_eq!(
        b.issuers,
        Some(vec![
            "https://as-a.example".to_owned(),
            "https://as-b.example".to_owned()
        ])
    );
    assert_eq!(
        b.audiences,
        Some(vec![
            "https://b.example/fhir".to_owned(),
            "urn:b".to_owned()
        ])
    );
    assert_eq!(b.policy.fhir_version, FhirVersion::R5);
    assert!(b.policy.user_from_sub, "the override");
    assert_eq!(
        b.policy.operations, config.policy.operations,
        "the rest from [policy]"
    );
    assert_eq!(b.envoy_bases[0].prefix, "/b/");
}

#[test]
fn a_single_fhir_server_gets_the_whole_envoy_path_space() {
    let text = TWO_SERVERS
        .split("[[fhir_servers]]\nname = \"b\"")
        .next()
        .unwrap()
        .replace("envoy_prefixes = [\"/a/\"]", "");
    let config = Config::from_toml(&text).unwrap();
    assert_eq!(config.fhir_servers[0].envoy_bases, [FhirBase::root()]);
}

/// Routing sends a listed authority's requests to the servers that list it and the rest to
/// the servers that list none (`Servers::route`): one prefix on both never competes.
#[test]
fn one_prefix_for_a_listed_authority_and_for_the_others_is_no_conflict() {
    let text = TWO_SERVERS
        .replace(
            "envoy_prefixes = [\"/a/\"]\n",
            "envoy_prefixes = [\"/a/\"]\nauthorities = [\"a.example\"]\n",
        )
        .replace("envoy_prefixes = [\"/b/\"]", "envoy_prefixes = [\"/a/\"]");
    let config = Config::from_toml(&text).unwrap();
    assert_eq!(config.fhir_servers[0].authorities, ["a.example"]);
    assert!(config.fhir_servers[1].authorities.is_empty());
}

#[test]
fn server_and_tls_errors_name_the_key() {
    let cases = [
        (
            TWO_SERVERS.replace(
                "issuers = [\"https://as-a.example\"]",
                "issuers = [\"https://nobody.example\"]",
            ),
            "`fhir_servers[0].issuers[0]`",
        ),
        (
            TWO_SERVERS.replace("envoy_prefixes = [\"/b/\"]", "envoy_prefixes = [\"/a/\"]"),
            "`fhir_servers[1].envoy_prefixes[0]`",
        ),
        (
            TWO_SERVERS.replace("name = \"b\"", "name = \"a\""),
            "`fhir_servers[1].name`",
        ),
        // Envoy reads `*` as a wildcard; the service would route those hosts elsewhere.
        (
            TWO_SERVERS.replace(
                "envoy_prefixes = [\"/a/\"]",
                "envoy_prefixes = [\"/a/\"]\nauthorities = [\"*.a.example\"]",
            ),
            "`fhir_servers[0].authorities`",
        ),
        (
            TWO_SERVERS.replace(
                "envoy_prefixes = [\"/a/\"]",
                "envoy_prefixes = [\"/a/\"]\nauthorities = [\"a.example:*\"]",
            ),
            "`fhir_servers[0].authorities`",
        ),
        // A server's own policy is held to the rules of [policy].
        (
            TWO_SERVERS.replace(
                "policy = { user_from_sub = true }",
                "policy = { operations = { meta = { rule = \"permissions\", letters = \"x\" } } }",
            ),
            "fhir_servers[1].policy.operations.meta.letters",
        ),
        (
            TWO_SERVERS.replace("name = \"b\"", "name = \"b c\""),
            "`fhir_servers[1].name`",
        ),
        (
            TWO_SERVERS.replace(
                "base_urls = [\"https://b.example/fhir\"]",
                "base_urls = [\"https://a.example/fhir\"]",
            ),
            "`fhir_servers[1].base_urls`",
        ),
        (
            TWO_SERVERS.replace(
                "base_urls = [\"https://b.example/fhir\"]",
                "base_urls = [\"b.example/fhir\"]",
            ),
            "`fhir_servers[1].base_urls[0]`",
        ),
        (
            TWO_SERVERS.replace("base_urls = [\"https://b.example/fhir\"]", ""),
            "`fhir_servers[1].base_urls`",
        ),
        (
            TWO_SERVERS.replace("\"urn:b\"", "\"https://a.example/fhir\""),
            "`fhir_servers[1].audiences`",
        ),
        // a's own audience is another, but its base URL is what issuers write for it.
        (
            TWO_SERVERS
                .replace(
                    "issuers = [\"https://as-a.example\"]",
                    "issuers = [\"https://as-a.example\"]\naudiences = [\"urn:a\"]",
                )
                .replace("\"urn:b\"", "\"https://a.example/fhir\""),
            "`fhir_servers[1].audiences`",
        ),
        (
            TWO_SERVERS.replace(
                "issuers = [\"https://as-a.example\"]",
                "issuers = [\"https://as-a.example\"]\naudiences = [\"https://b.example/fhir\"]",
            ),
            "`fhir_servers[1].audiences`",
        ),
        (
            format!(
                "{TWO_SERVERS}\n[tls]\ncert_file = \"s.pem\"\nkey_file = \"k.pem\"\nclient_ca_file = \"ca.pem\"\n[[callers]]\nidentity = \"spiffe://x\"\n"
            ),
            "`callers[0].fhir_servers`",
        ),
        (
            TWO_SERVERS.replace("envoy_prefixes = [\"/b/\"]", "envoy_prefixes = [\"/b\"]"),
            "`fhir_servers[1].envoy_prefixes[0]`",
        ),
        (
            TWO_SERVERS.replace(
                "envoy_prefixes = [\"/b/\"]",
                "envoy_prefixes = [\"/b/\"]\npublic_paths = [\"/\"]",
            ),
            "`fhir_servers[1].public_paths[0]`",
        ),
        (
            TWO_SERVERS.replace("user_from_sub = true", "user_from_sub = 3"),
            "`fhir_servers[1].policy`",
        ),
        (
            format!("{TWO_SERVERS}\n[envoy]\nbases = [{{ prefix = \"/x/\" }}]\n"),
            "`envoy.bases`",
        ),
        (
            format!("{MINIMAL}\n[tls]\ncert_file = \"server.pem\"\n"),
            "`tls.key_file`",
        ),
        (
            format!("{MINIMAL}\n[tls]\nclient_ca_file = \"ca.pem\"\n"),
            "`tls.client_ca_file`",
        ),
        (
            format!("{MINIMAL}\n[[callers]]\nidentity = \"spiffe://x\"\n"),
            "`callers`",
        ),
        (
            format!(
                "{TWO_SERVERS}\n[tls]\ncert_file = \"s.pem\"\nkey_file = \"k.pem\"\nclient_ca_file = \"ca.pem\"\n[[callers]]\nidentity = \"spiffe://x\"\nfhir_servers = [\"c\"]\n"
            ),
            "`callers[0].fhir_servers[0]`",
        ),
    ];
    for (text, key) in cases {
        let error = error_of(&text);
        assert!(error.contains(key), "{key} not in {error:?}");
    }
}

#[test]
fn two_servers_may_share_a_prefix_on_distinct_authorities() {
    let text = TWO_SERVERS
        .replace(
            "envoy_prefixes = [\"/a/\"]",
            "envoy_prefixes = [\"/fhir/\"]\nauthorities = [\"a.example\"]",
        )
        .replace(
            "envoy_prefixes = [\"/b/\"]",
            "envoy_prefixes = [\"/fhir/\"]\nauthorities = [\"B.example\"]",
        );
    let config = Config::from_toml(&text).unwrap();
    assert_eq!(config.fhir_servers[1].authorities, ["b.example"]);
    let overlapping = text.replace("[\"B.example\"]", "[\"b.example\", \"A.example\"]");
    assert!(error_of(&overlapping).contains("`fhir_servers[1].envoy_prefixes[0]`"));
}

#[test]
fn tls_and_callers_are_read() {
    let text = format!(
        "{TWO_SERVERS}\n[tls]\ncert_file = \"s.pem\"\nkey_file = \"k.pem\"\nclient_ca_file = \"ca.pem\"\n[[callers]]\nidentity = \"spiffe://example.org/a\"\nfhir_servers = [\"a\"]\n[[callers]]\nidentity = \"ops.example\"\nfhir_servers = [\"*\"]\nintrospect = true\n"
    );
    let config = Config::from_toml(&text).unwrap();
    let tls = config.tls.unwrap();
    assert_eq!(tls.reload_interval, Duration::from_secs(10));
    assert_eq!(tls.client_ca_file.as_deref(), Some(Path::new("ca.pem")));
    assert_eq!(config.callers[0].fhir_servers, Some(vec!["a".to_owned()]));
    assert!(!config.callers[0].introspect);
    assert_eq!(config.callers[1].fhir_servers, None);
    assert!(config.callers[1].introspect);
}

#[test]
fn the_two_server_example_is_valid() {
    let config = Config::from_toml(include_str!("../../examples/servers/config.toml")).unwrap();
    assert_eq!(config.fhir_servers.len(), 2);
    assert_eq!(config.fhir_servers[1].policy.fhir_version, FhirVersion::R5);
    assert_eq!(
        config.fhir_servers[1].policy.base_urls,
        ["https://fhir.clinic-b.example/fhir"]
    );
    assert_eq!(config.warnings(), Vec::<String>::new());
    assert!(config.tls.unwrap().client_ca_file.is_some());
    assert_eq!(config.callers.len(), 4);
}

#[test]
fn an_authority_matches_as_envoy_matches_a_domain() {
    let server = |authorities: &[&str]| FhirServerConfig {
        name: "a".into(),
        base_urls: Vec::new(),
        audiences: None,
        issuers: None,
        policy: Policy::default(),
        envoy_bases: Vec::new(),
        authorities: authorities.iter().map(|a| (*a).to_owned()).collect(),
        public_paths: None,
    };
    let bare = server(&["fhir.example", "fhir.example:8443"]);
    for served in ["fhir.example", "FHIR.example", "fhir.example:8443"] {
        assert!(bare.serves_authority(served), "{served}");
    }
    for other in [
        "fhir.example:443",
        "fhir.example.evil",
        "evil.fhir.example",
        "",
    ] {
        assert!(!bare.serves_authority(other), "{other}");
    }
    assert!(server(&[]).serves_authority("anything"));
}

#[test]
fn a_json_file_is_read_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    std::fs::write(
        &path,
        r#"{"listen": "127.0.0.1:50051", "health_listen": "0.0.0.0:8081", "shutdown_delay_secs": 5,
            "issuers": [{"issuer": "https://issuer.example", "audiences": ["https://fhir.example/r4"],
                         "jwks_uri": "https://issuer.example/jwks"}],
            "cache": {"max_ttl_secs": 60}}"#,
    )
    .unwrap();
    let config = Config::load_with_env(
        Some(&path),
        Serialized::defaults(figment::value::Dict::new()),
    )
    .unwrap();
    assert_eq!(config.health_listen, Some("0.0.0.0:8081".parse().unwrap()));
    assert_eq!(config.shutdown_delay, Duration::from_secs(5));
    assert_eq!(config.cache.max_ttl_secs, 60);
}

#[test]
fn health_listen_and_the_shutdown_delay_are_checked() {
    let config = Config::from_toml(MINIMAL).unwrap();
    assert_eq!(config.health_listen, None);
    assert_eq!(config.shutdown_delay, Duration::ZERO);
    assert_eq!(config.max_concurrent_calls, 1024);
    assert_eq!(config.max_connections, 4096);
    assert_eq!(config.max_connection_age, None);
    for (text, key) in [
        (
            format!("health_listen = \"nowhere\"\n{MINIMAL}"),
            "`health_listen`",
        ),
        (
            format!("listen = \"0.0.0.0:50051\"\nhealth_listen = \"0.0.0.0:50051\"\n{MINIMAL}"),
            "`health_listen`",
        ),
        (
            format!("shutdown_delay_secs = 600\n{MINIMAL}"),
            "`shutdown_delay_secs`",
        ),
        (
            format!("max_concurrent_calls = 0\n{MINIMAL}"),
            "`max_concurrent_calls`",
        ),
        (
            format!("max_connections = 0\n{MINIMAL}"),
            "`max_connections`",
        ),
        (
            format!("max_connections = 1000001\n{MINIMAL}"),
            "`max_connections`",
        ),
        (
            format!("max_concurrent_calls = 4611686018427387904\n{MINIMAL}"),
            "`max_concurrent_calls`",
        ),
    ] {
        let error = error_of(&text);
        assert!(error.contains(key), "{key} not in {error:?}");
    }
}

#[test]
fn the_unix_socket_is_a_path_beside_plain_or_server_only_tls() {
    assert_eq!(Config::from_toml(MINIMAL).unwrap().unix_listen, None);
    let config = Config::from_toml(&format!(
        "unix_listen = \"/run/smart-authz/grpc.sock\"\n{MINIMAL}"
    ))
    .unwrap();
    assert_eq!(
        config.unix_listen.as_deref(),
        Some(std::path::Path::new("/run/smart-authz/grpc.sock"))
    );
    let tls = "[tls]\ncert_file = \"s.pem\"\nkey_file = \"k.pem\"\n";
    let server_only_tls = Config::from_toml(&format!(
        "unix_listen = \"/run/smart-authz/grpc.sock\"\n{MINIMAL}\n{tls}"
    ))
    .unwrap();
    assert!(server_only_tls.unix_listen.is_some());
    let too_long = format!("/run/{}.sock", "s".repeat(120));
    for (text, words) in [
        (
            format!("unix_listen = \"{too_long}\"\n{MINIMAL}"),
            "at most 103",
        ),
        (
            format!("unix_listen = \"/run/smart-authz/\"\n{MINIMAL}"),
            "not a socket file path",
        ),
        (
            format!("unix_listen = \" /run/grpc.sock\"\n{MINIMAL}"),
            "not a socket file path",
        ),
        (
            format!(
                "unix_listen = \"/run/grpc.sock\"\n{MINIMAL}\n{tls}client_ca_file = \"ca.pem\"\n"
            ),
            "no client certificate",
        ),
    ] {
        let error = error_of(&text);
        assert!(
            error.contains("`unix_listen`") && error.contains(words),
            "{words} not in {error:?}"
        );
    }
}

#[test]
fn the_authzen_face_is_off_unless_it_has_a_listener() {
    assert_eq!(Config::from_toml(MINIMAL).unwrap().authzen, None);
    let on = Config::from_toml(&format!(
        "{MINIMAL}\n[authzen]\nlisten = \"127.0.0.1:8181\"\n"
    ))
    .unwrap();
    assert_eq!(
        on.authzen,
        Some(AuthzenConfig {
            listen: "127.0.0.1:8181".parse().unwrap(),
            base_url: "http://127.0.0.1:8181".to_owned(),
            max_connections: 1024,
        })
    );
    let bounded = Config::from_toml(&format!(
        "{MINIMAL}\n[authzen]\nlisten = \"127.0.0.1:8181\"\nmax_connections = 16\n"
    ))
    .unwrap();
    assert_eq!(bounded.authzen.unwrap().max_connections, 16);
    let published = Config::from_toml(&format!(
        "{MINIMAL}\n[authzen]\nlisten = \"0.0.0.0:8181\"\nbase_url = \"https://authz.example.org/\"\n"
    ))
    .unwrap();
    assert_eq!(
        published.authzen.unwrap().base_url,
        "https://authz.example.org"
    );
}

#[test]
fn the_authzen_face_never_weakens_the_grpc_listeners_tls() {
    let tls = "[tls]\ncert_file = \"s.pem\"\nkey_file = \"k.pem\"\n";
    for (text, message) in [
        (
            format!("{MINIMAL}\n[authzen]\nlisten = \"8181\"\n"),
            "`authzen.listen`",
        ),
        (
            format!(
                "listen = \"127.0.0.1:50051\"\n{MINIMAL}\n[authzen]\nlisten = \"127.0.0.1:50051\"\n"
            ),
            "must differ",
        ),
        (
            format!("{MINIMAL}\n{tls}\n[authzen]\nlisten = \"0.0.0.0:8181\"\n"),
            "listen on loopback",
        ),
        (
            format!(
                "{MINIMAL}\n{tls}client_ca_file = \"ca.pem\"\n[authzen]\nlisten = \"127.0.0.1:8181\"\n"
            ),
            "mutual TLS",
        ),
        (
            format!("{MINIMAL}\n[authzen]\nlisten = \"127.0.0.1:8181\"\nbase_url = \"ftp://x\"\n"),
            "`authzen.base_url`",
        ),
        (
            format!("{MINIMAL}\n[authzen]\nlisten = \"127.0.0.1:8181\"\nmax_connections = 0\n"),
            "`authzen.max_connections`",
        ),
    ] {
        let error = error_of(&text);
        assert!(error.contains(message), "{error}");
    }
    // Behind TLS, loopback is fine: a local proxy terminates TLS for it.
    assert!(
        Config::from_toml(&format!(
            "{MINIMAL}\n{tls}\n[authzen]\nlisten = \"127.0.0.1:8181\"\n"
        ))
        .is_ok()
    );
}

#[test]
fn the_response_filter_limit_fits_inside_one_grpc_message() {
    let config = Config::from_toml(MINIMAL).unwrap();
    assert_eq!(
        config.response_filter.max_body_bytes,
        DEFAULT_MAX_BODY_BYTES
    );
    // A smaller message limit brings the default down with it rather than failing.
    let small = Config::from_toml(&format!("max_request_bytes = 65536\n{MINIMAL}")).unwrap();
    assert_eq!(small.response_filter.max_body_bytes, 49152);
    let set = Config::from_toml(&format!(
        "{MINIMAL}\n[response_filter]\nmax_body_bytes = 100000\n"
    ))
    .unwrap();
    assert_eq!(set.response_filter.max_body_bytes, 100_000);
    assert!(!set.response_filter.hide_existence, "off by default");
    let hiding = Config::from_toml(&format!(
        "{MINIMAL}\n[response_filter]\nhide_existence = true\n"
    ))
    .unwrap();
    assert!(hiding.response_filter.hide_existence);
    for (limit, expected) in [
        ("4194304", "must be below max_request_bytes"),
        ("512", "at least 1024"),
    ] {
        let error = error_of(&format!(
            "{MINIMAL}\n[response_filter]\nmax_body_bytes = {limit}\n"
        ));
        assert!(
            error.contains("response_filter.max_body_bytes") && error.contains(expected),
            "{error}"
        );
    }
}

/// Among several servers and several issuers, a server that named none would honour the
/// tokens of every issuer, another tenant's among them: a start-up error, where it was a
/// warning. One server, or one issuer, trusts every issuer without a list.
#[test]
fn servers_among_several_must_name_their_issuers_of_several() {
    let open = TWO_SERVERS.replace(
        "issuers = [\"https://as-a.example\", \"https://as-b.example\"]\n",
        "",
    );
    let error = error_of(&open);
    assert!(error.contains("fhir_servers[1].issuers"), "{error}");
    let one_issuer = open
        .replace(
            "[[issuers]]\nissuer = \"https://as-b.example\"\njwks_uri = \"https://as-b.example/jwks\"\n",
            "",
        );
    let config = Config::from_toml(&one_issuer).unwrap();
    assert_eq!(
        config.fhir_servers[1].issuers, None,
        "every issuer: there is one"
    );
    assert!(config.warnings().is_empty());
    assert!(Config::from_toml(MINIMAL).unwrap().warnings().is_empty());
}

#[test]
fn mutual_tls_without_callers_is_warned_about() {
    let tls = "[tls]\ncert_file = \"s.pem\"\nkey_file = \"k.pem\"\nclient_ca_file = \"ca.pem\"\n";
    let open = Config::from_toml(&format!("{MINIMAL}\n{tls}")).unwrap();
    let [warning] = open.warnings().try_into().unwrap();
    assert!(warning.contains("[[callers]]"), "{warning}");
    let bound = format!(
        "{MINIMAL}\n{tls}[[callers]]\nidentity = \"spiffe://x/fhir\"\nfhir_servers = [\"*\"]\n"
    );
    assert!(Config::from_toml(&bound).unwrap().warnings().is_empty());
}

/// Keys, an introspection endpoint or discovery over plain HTTP beyond this host can be
/// replaced or read on the way: warned about; a loopback issuer (development) is not.
#[test]
fn plain_http_to_an_issuer_beyond_this_host_is_warned_about() {
    let warned = |text: &str| -> String {
        let warnings = Config::from_toml(text).unwrap().warnings();
        let [warning] = warnings.try_into().unwrap();
        assert!(
            warning.contains("issuers[0]") && warning.contains("plain HTTP"),
            "{warning}"
        );
        warning
    };
    warned(&MINIMAL.replace(
        "https://issuer.example/jwks",
        "http://keycloak.auth.svc:8080/jwks",
    ));
    let introspection = warned(&INTROSPECTING_WITH_ENDPOINT.replace(
        "https://as.example/introspect",
        "http://rs:pw@10.0.0.7/introspect",
    ));
    assert!(!introspection.contains("pw"), "{introspection}");
    // Discovery fetches the issuer's own URL.
    warned(&INTROSPECTING.replace("https://as.example", "http://as.example"));
    for local in [
        "http://127.0.0.1:8080/jwks",
        "http://localhost/jwks",
        "http://[::1]:9000/jwks",
    ] {
        let text = MINIMAL.replace("https://issuer.example/jwks", local);
        assert!(
            Config::from_toml(&text).unwrap().warnings().is_empty(),
            "{local}"
        );
    }
}

#[test]
fn credentials_in_a_url_are_hidden_from_logs() {
    for (url, shown) in [
        ("http://user:secret@otel:4317", "http://***@otel:4317"),
        (
            "https://a@b@otel:4317/v1?x=@",
            "https://***@otel:4317/v1?x=@",
        ),
        ("user:secret@otel:4317", "***@otel:4317"),
        ("http://otel:4317/path@x", "http://otel:4317/path@x"),
        ("http://otel:4317", "http://otel:4317"),
    ] {
        assert_eq!(super::without_userinfo(url), shown, "{url}");
    }
}

#[test]
fn every_variable_is_configuration_but_config_and_kubernetes_service_links() {
    for read in [
        "SMART_AUTHZ_LISTEN",
        "SMART_AUTHZ_CACHE__MAX_TTL_SECS",
        "smart_authz_policy__strict_scopes",
        // Misspelt: read, and refused as an unknown key at start-up.
        "SMART_AUTHZ_POLICY_STRICT_SCOPES",
        "SMART_AUTHZ_MAX_CONCURENT_CALLS",
        "SMART_AUTHZ_PORTS",
        "SMART_AUTHZ_PORT_X_TCP",
    ] {
        assert!(environment_variable_is_read(read), "{read}");
    }
    for ignored in [
        "SMART_AUTHZ_CONFIG",
        "SMART_AUTHZ_SERVICE_HOST",
        "SMART_AUTHZ_SERVICE_PORT",
        "SMART_AUTHZ_SERVICE_PORT_GRPC_HEALTH",
        "SMART_AUTHZ_PORT",
        "SMART_AUTHZ_PORT_50051_TCP",
        "SMART_AUTHZ_PORT_50051_TCP_ADDR",
        "SMART_AUTHZ_HEADLESS_PORT_9464_TCP_PROTO",
        "SMART_AUTHZ_METRICS_SERVICE_HOST",
        "LISTEN",
    ] {
        assert!(!environment_variable_is_read(ignored), "{ignored}");
    }
}

#[test]
fn every_listener_needs_its_own_address() {
    let with = |head: &str, tail: &str| Config::from_toml(&format!("{head}\n{MINIMAL}\n{tail}"));
    let error = |head: &str, tail: &str| with(head, tail).unwrap_err().to_string();
    let listen = "listen = \"127.0.0.1:7000\"";
    for (head, tail, key) in [
        (
            format!("{listen}\nhealth_listen = \"127.0.0.1:7000\""),
            "",
            "`health_listen`",
        ),
        (
            listen.to_owned(),
            "[telemetry]\nmetrics_listen = \"127.0.0.1:7000\"",
            "`telemetry.metrics_listen`",
        ),
        // Neither is `listen`: the pairs beside it count too.
        (
            format!("{listen}\nhealth_listen = \"127.0.0.1:7001\""),
            "[telemetry]\nmetrics_listen = \"127.0.0.1:7001\"",
            "must differ from `health_listen`",
        ),
        (
            listen.to_owned(),
            "[telemetry]\nmetrics_listen = \"127.0.0.1:7002\"\n[authzen]\nlisten = \"127.0.0.1:7002\"",
            "`authzen.listen`",
        ),
    ] {
        let error = error(&head, tail);
        assert!(error.contains(key), "{error}");
    }
    // A wildcard address takes the port on every address.
    let wildcard = error(
        "listen = \"0.0.0.0:7005\"\nhealth_listen = \"127.0.0.1:7005\"",
        "",
    );
    assert!(wildcard.contains("`health_listen`"), "{wildcard}");
    let v6 = with(
        "listen = \"127.0.0.1:7005\"",
        "[telemetry]\nmetrics_listen = \"[::]:7005\"",
    );
    assert!(v6.is_err());
    let apart = "listen = \"127.0.0.1:7006\"\nhealth_listen = \"127.0.0.2:7006\"";
    assert!(with(apart, "").is_ok());
    // Port 0 takes any free port: never a clash.
    assert!(
        with(
            "listen = \"127.0.0.1:0\"\nhealth_listen = \"127.0.0.1:0\"",
            ""
        )
        .is_ok()
    );

    // `--listen` is held to the same rules.
    let mut config = with(listen, "[telemetry]\nmetrics_listen = \"127.0.0.1:7003\"").unwrap();
    let clash = config.listen_on("127.0.0.1:7003".parse().unwrap());
    assert!(clash.unwrap_err().to_string().contains("`listen`"));
    assert!(config.listen_on("127.0.0.1:7004".parse().unwrap()).is_ok());
}

#[test]
fn the_development_configuration_listens_only_on_loopback_even_from_the_command_line() {
    let mut config =
        Config::load_with_env(None, Serialized::defaults(figment::value::Dict::new())).unwrap();
    let error = config.listen_on("0.0.0.0:50051".parse().unwrap());
    assert!(error.unwrap_err().to_string().contains("--listen"));
    assert!(config.listen_on("127.0.0.1:50052".parse().unwrap()).is_ok());
}

#[test]
fn the_buffered_bytes_cover_the_largest_requests() {
    let with = |head: &str| Config::from_toml(&format!("{head}\n{MINIMAL}"));
    // Unset, it holds the largest request's bytes, a copy and its parsed tree.
    assert_eq!(
        with("").unwrap().max_buffered_request_bytes,
        24 * 4 * 1024 * 1024
    );
    let large = with("max_request_bytes = 33554432").unwrap();
    assert_eq!(large.max_buffered_request_bytes, 24 * 33_554_432);
    let small = with("max_request_bytes = 1048576").unwrap();
    assert_eq!(
        small.max_buffered_request_bytes,
        DEFAULT_MAX_BUFFERED_REQUEST_BYTES
    );
    let error = with("max_request_bytes = 4096\nmax_buffered_request_bytes = 8191").unwrap_err();
    assert!(
        error.to_string().contains("max_buffered_request_bytes"),
        "{error}"
    );
    let set = with("max_request_bytes = 4096\nmax_buffered_request_bytes = 8192").unwrap();
    assert_eq!(set.max_buffered_request_bytes, 8192);
}
