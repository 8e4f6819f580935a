use super::*;

fn environment(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect();
    move |name| map.get(name).cloned()
}

#[test]
fn traces_are_off_without_an_endpoint() {
    let none = TraceSettings::resolve(&TelemetryConfig::default(), &environment(&[]));
    assert_eq!(none.unwrap(), None);
}

#[test]
fn the_standard_variables_turn_traces_on() {
    let env = environment(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
        ("OTEL_SERVICE_NAME", "authz-eu"),
        ("OTEL_TRACES_SAMPLER", "traceidratio"),
        ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
    ]);
    let settings = TraceSettings::resolve(&TelemetryConfig::default(), &env)
        .unwrap()
        .unwrap();
    assert_eq!(settings.endpoint, "http://collector:4317");
    assert_eq!(settings.service_name, "authz-eu");
    assert_eq!(settings.sampler, SamplerChoice::Ratio(0.25));
}

#[test]
fn the_configuration_wins_over_the_environment() {
    let config = TelemetryConfig {
        otlp_endpoint: Some("http://sidecar:4317".into()),
        trace_sampling_ratio: Some(0.1),
        ..TelemetryConfig::default()
    };
    let env = environment(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
        ("OTEL_TRACES_SAMPLER", "always_off"),
    ]);
    let settings = TraceSettings::resolve(&config, &env).unwrap().unwrap();
    assert_eq!(settings.endpoint, "http://sidecar:4317");
    assert_eq!(settings.sampler, SamplerChoice::ParentBasedRatio(0.1));
    assert_eq!(settings.service_name, DEFAULT_SERVICE_NAME);
}

#[test]
fn the_traces_endpoint_wins_over_the_general_one() {
    let env = environment(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://general:4317"),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "https://traces:4317"),
    ]);
    let settings = TraceSettings::resolve(&TelemetryConfig::default(), &env)
        .unwrap()
        .unwrap();
    assert_eq!(settings.endpoint, "https://traces:4317");
    assert_eq!(settings.sampler, SamplerChoice::ParentBasedAlwaysOn);
}

#[test]
fn disabling_variables_win() {
    for disabling in [
        ("OTEL_SDK_DISABLED", "true"),
        ("OTEL_TRACES_EXPORTER", "none"),
    ] {
        let env = environment(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
            disabling,
        ]);
        let settings = TraceSettings::resolve(&TelemetryConfig::default(), &env).unwrap();
        assert_eq!(settings, None, "{disabling:?}");
    }
}

#[test]
fn a_malformed_endpoint_variable_is_named() {
    let env = environment(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317")]);
    let error = TraceSettings::resolve(&TelemetryConfig::default(), &env).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("OTEL_EXPORTER_OTLP_ENDPOINT:"),
        "{error}"
    );
}

#[test]
fn unknown_samplers_fall_back_to_the_default() {
    assert_eq!(
        sampler_from_environment(Some("jaeger_remote"), None),
        SamplerChoice::ParentBasedAlwaysOn
    );
    assert_eq!(
        sampler_from_environment(Some("parentbased_traceidratio"), Some("2")),
        SamplerChoice::ParentBasedRatio(1.0)
    );
    assert_eq!(
        sampler_from_environment(Some("ALWAYS_OFF"), None),
        SamplerChoice::AlwaysOff
    );
}

#[test]
fn spans_are_disabled_when_traces_are_off() {
    let span = rpc_span(Rpc::CheckAccess, &MetadataMap::new());
    assert!(span.is_disabled());
    assert_eq!(trace_id(&span), None);
}
