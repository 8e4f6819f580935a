use super::*;

const MINIMAL: &str = r#"
[[issuers]]
issuer = "https://issuer.example"
audiences = ["https://fhir.example/r4"]
jwks_uri = "https://issuer.example/jwks"
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
        KeySource::Uri("https://issuer.example/jwks".into())
    );
    assert_eq!(config.cache.max_ttl_secs, 300);
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
        KeySource::Inline(DEVELOPMENT_JWKS.to_owned())
    );
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
            format!("{MINIMAL}[cache]\nmax_entries = 0\n"),
            "`cache.max_entries`",
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
