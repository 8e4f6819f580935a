use serde_json::{Value, json};

use super::*;
use crate::fhir::FhirVersion;
use crate::smart::TokenContext;
use crate::token::TokenSource;

const TWO_SERVERS: &str = r#"
[[issuers]]
issuer = "https://as-a.example"
jwks_uri = "https://as-a.example/jwks"

[[issuers]]
issuer = "https://as-b.example"
jwks_uri = "https://as-b.example/jwks"

[[fhir_servers]]
name = "a"
base_urls = ["https://a.example/fhir"]
issuers = ["https://as-a.example"]
envoy_prefixes = ["/a/", "/shared/"]
authorities = ["a.example"]

[[fhir_servers]]
name = "b"
base_urls = ["https://b.example/fhir"]
issuers = ["https://as-a.example", "https://as-b.example"]
fhir_version = "r5"
envoy_prefixes = ["/b/", "/shared/"]
authorities = ["b.example"]
"#;

const MUTUAL_TLS: &str = r#"
[tls]
cert_file = "s.pem"
key_file = "k.pem"
client_ca_file = "ca.pem"
"#;

const CALLERS: &str = r#"
[[callers]]
identity = "spiffe://example.org/fhir-a"
fhir_servers = ["a"]

[[callers]]
identity = "ops.example"
fhir_servers = ["*"]
introspect = true
"#;

fn servers(text: &str) -> Servers {
    Servers::from_config(&Config::from_toml(text).unwrap())
}

fn token(issuer: &str, aud: Value) -> VerifiedToken {
    let claims = json!({"scope": "patient/*.rs", "aud": aud});
    let context = TokenContext::from_claims(&claims, FhirVersion::R4).unwrap();
    let Value::Object(claims) = claims else {
        unreachable!()
    };
    let audiences = match claims.get("aud") {
        Some(Value::String(one)) => vec![one.clone()],
        Some(Value::Array(many)) => many
            .iter()
            .map(|one| one.as_str().unwrap().to_owned())
            .collect(),
        _ => Vec::new(),
    };
    VerifiedToken {
        context,
        claims: crate::token::IntrospectionClaims::read(&claims),
        expires_at: None,
        source: TokenSource::LocalJwt,
        issuer: issuer.to_owned(),
        audiences,
        keys: None,
    }
}

fn certified(identity: &str) -> Caller {
    if identity.contains(':') {
        Caller::certified(vec![identity.to_owned()], vec!["other.example".to_owned()])
    } else {
        Caller::certified(
            Vec::new(),
            vec!["other.example".to_owned(), identity.to_owned()],
        )
    }
}

#[test]
fn a_request_names_its_server_by_name_or_base_url() {
    let servers = servers(TWO_SERVERS);
    let anyone = Caller::default();
    assert_eq!(
        servers
            .named(&anyone, "a", Release::Unnamed)
            .unwrap()
            .name(),
        "a"
    );
    assert_eq!(
        servers
            .named(&anyone, "https://b.example/fhir/", Release::Unnamed)
            .unwrap()
            .name(),
        "b"
    );
    assert_eq!(
        servers
            .named(&anyone, "b", Release::Unnamed)
            .unwrap()
            .engine()
            .fhir_version(),
        FhirVersion::R5
    );
    for unknown in ["", "c", "https://c.example/fhir", "A"] {
        let refusal = servers
            .named(&anyone, unknown, Release::Unnamed)
            .unwrap_err();
        assert!(matches!(refusal, Refusal::UnknownServer(_)), "{unknown:?}");
        assert_eq!(refusal.status().grpc, tonic::Code::InvalidArgument);
    }
}

#[test]
fn one_server_needs_no_name() {
    let text = r#"
[[issuers]]
issuer = "https://as.example"
audiences = ["https://fhir.example/r4"]
jwks_uri = "https://as.example/jwks"
"#;
    let servers = servers(text);
    let anyone = Caller::default();
    assert_eq!(
        servers.named(&anyone, "", Release::Unnamed).unwrap().name(),
        "default"
    );
    assert_eq!(
        servers
            .named(&anyone, "https://fhir.example/r4", Release::Unnamed)
            .unwrap()
            .name(),
        "default"
    );
    assert!(
        servers
            .named(&anyone, "https://other.example", Release::Unnamed)
            .is_err()
    );
}

#[test]
fn a_server_honours_only_tokens_for_it_from_issuers_it_trusts() {
    let servers = servers(TWO_SERVERS);
    let anyone = Caller::default();
    let a = servers.named(&anyone, "a", Release::Unnamed).unwrap();
    let b = servers.named(&anyone, "b", Release::Unnamed).unwrap();
    let for_a = token("https://as-a.example", json!("https://a.example/fhir"));
    assert_eq!(a.accepts(&for_a), Ok(()));
    assert_eq!(b.accepts(&for_a), Err(TokenError::WrongAudience));
    let slash = token(
        "https://as-a.example",
        json!(["x", "https://a.example/fhir/"]),
    );
    assert_eq!(a.accepts(&slash), Ok(()), "a trailing / is the same base");
    let none = token("https://as-a.example", Value::Null);
    assert_eq!(a.accepts(&none), Err(TokenError::WrongAudience));
    // Issuer B's tokens for A: A trusts only issuer A.
    let b_for_a = token("https://as-b.example", json!("https://a.example/fhir"));
    assert!(matches!(
        a.accepts(&b_for_a),
        Err(TokenError::WrongIssuer(_))
    ));
    let b_for_b = token("https://as-b.example", json!("https://b.example/fhir"));
    assert_eq!(b.accepts(&b_for_b), Ok(()));
    let prefix = token("https://as-b.example", json!("https://b.example/fhir2"));
    assert_eq!(b.accepts(&prefix), Err(TokenError::WrongAudience));
}

#[test]
fn envoy_requests_route_by_prefix_and_authority() {
    let servers = servers(TWO_SERVERS);
    let anyone = Caller::default();
    let (server, relative) = servers
        .route(&anyone, "b.example", "/shared/Patient/1")
        .unwrap();
    assert_eq!((server.name(), relative), ("b", "Patient/1"));
    let (server, _) = servers
        .route(&anyone, "A.EXAMPLE", "/shared/Patient/1")
        .unwrap();
    assert_eq!(server.name(), "a");
    assert_eq!(
        servers
            .route(&anyone, "b.example", "/a/Patient/1")
            .unwrap_err(),
        Refusal::NoFhirBase,
        "a's prefix on b's authority"
    );
    assert_eq!(
        servers
            .route(&anyone, "c.example", "/shared/Patient/1")
            .unwrap_err(),
        Refusal::NoFhirBase
    );
}

/// Envoy picks the virtual host first, an exact domain before `*`, and only its routes:
/// a longer prefix of a server for any authority does not take a request for a named one.
#[test]
fn a_server_for_any_authority_does_not_take_a_named_authoritys_requests() {
    let text = r#"
[[issuers]]
issuer = "https://as-a.example"
jwks_uri = "https://as-a.example/jwks"

[[fhir_servers]]
name = "a"
base_urls = ["https://a.example/fhir"]
envoy_prefixes = ["/"]
authorities = ["a.example"]

[[fhir_servers]]
name = "b"
base_urls = ["https://b.example/fhir"]
envoy_prefixes = ["/b/"]
"#;
    let servers = servers(text);
    let anyone = Caller::default();
    let (server, relative) = servers.route(&anyone, "a.example", "/b/Patient/1").unwrap();
    assert_eq!((server.name(), relative), ("a", "b/Patient/1"));
    let (server, relative) = servers
        .route(&anyone, "other.example", "/b/Patient/1")
        .unwrap();
    assert_eq!((server.name(), relative), ("b", "Patient/1"));
    assert_eq!(
        servers
            .route(&anyone, "other.example", "/Patient/1")
            .unwrap_err(),
        Refusal::NoFhirBase,
        "a's prefix on another authority"
    );
}

#[test]
fn an_envoy_base_may_override_the_fhir_version() {
    let text = r#"
fhir_version = "r4"
[[issuers]]
issuer = "https://as.example"
audiences = ["https://fhir.example"]
jwks_uri = "https://as.example/jwks"
[envoy]
bases = [{ prefix = "/fhir/" }, { prefix = "/fhir/R5/", fhir_version = "r5" }]
"#;
    let servers = servers(text);
    let anyone = Caller::default();
    let (server, relative) = servers.route(&anyone, "", "/fhir/R5/Observation").unwrap();
    assert_eq!(server.engine().fhir_version(), FhirVersion::R5);
    assert_eq!(relative, "Observation");
    let (server, _) = servers.route(&anyone, "", "/fhir/Observation").unwrap();
    assert_eq!(server.engine().fhir_version(), FhirVersion::R4);
    assert_eq!(server.name(), "default");
}

const TWO_RELEASES: &str = r#"
fhir_version = "r4"
[[issuers]]
issuer = "https://as.example"
audiences = ["https://fhir.example"]
jwks_uri = "https://as.example/jwks"
[envoy]
bases = [
  { prefix = "/fhir/R4/" },
  { prefix = "/fhir/R5/", fhir_version = "r5" },
  { prefix = "/fhir/5/", fhir_version = "r5" },
]
"#;

/// gRPC and AuthZEN name no base: a request to a server serving two releases must name its
/// own, and is decided in it, by the engine its Envoy base gets.
#[test]
fn a_request_to_a_server_of_several_releases_names_its_own() {
    let servers = servers(TWO_RELEASES);
    let anyone = Caller::default();
    let refusal = servers.named(&anyone, "", Release::Unnamed).unwrap_err();
    assert!(
        matches!(&refusal, Refusal::InvalidRequest(message)
            if message.contains("fhir_version: required") && message.contains("R4 and R5")),
        "{refusal:?}"
    );
    assert_eq!(refusal.status().grpc, tonic::Code::InvalidArgument);

    let r5 = servers
        .named(&anyone, "", Release::Named(FhirVersion::R5))
        .unwrap();
    assert_eq!(r5.engine().fhir_version(), FhirVersion::R5);
    assert_eq!(r5.name(), "default");
    // Both R5 bases lead to the one engine the request gets.
    let (routed, _) = servers.route(&anyone, "", "/fhir/R5/Observation").unwrap();
    assert!(Arc::ptr_eq(routed, r5));
    let (routed, _) = servers.route(&anyone, "", "/fhir/5/Observation").unwrap();
    assert!(Arc::ptr_eq(routed, r5));

    let r4 = servers
        .named(&anyone, "default", Release::Named(FhirVersion::R4))
        .unwrap();
    assert_eq!(r4.engine().fhir_version(), FhirVersion::R4);
    let refusal = servers
        .named(&anyone, "", Release::Named(FhirVersion::R4B))
        .unwrap_err();
    assert!(
        matches!(&refusal, Refusal::InvalidRequest(message) if message.contains("does not serve R4B")),
        "{refusal:?}"
    );
    // IntrospectToken decides nothing: the configured release.
    let configured = servers.named(&anyone, "", Release::Configured).unwrap();
    assert_eq!(configured.engine().fhir_version(), FhirVersion::R4);
}

#[test]
fn a_server_of_one_release_serves_that_one_only() {
    let servers = servers(TWO_SERVERS);
    let anyone = Caller::default();
    let b = servers
        .named(&anyone, "b", Release::Named(FhirVersion::R5))
        .unwrap();
    assert_eq!(b.engine().fhir_version(), FhirVersion::R5);
    assert!(Arc::ptr_eq(
        b,
        servers.named(&anyone, "b", Release::Unnamed).unwrap()
    ));
    for other in [FhirVersion::R4, FhirVersion::R4B] {
        let refusal = servers
            .named(&anyone, "b", Release::Named(other))
            .unwrap_err();
        assert_eq!(refusal.status().grpc, tonic::Code::InvalidArgument);
    }
}

/// A caller that may not ask hears that first, whatever else its request got wrong.
#[test]
fn the_caller_is_checked_before_the_release_is_read() {
    let servers = servers(&format!("{TWO_SERVERS}{MUTUAL_TLS}{CALLERS}"));
    assert_eq!(
        servers
            .named_in(&Caller::default(), "a", || Release::read("R9"))
            .unwrap_err(),
        Refusal::CallerUnauthenticated
    );
    let fhir_a = certified("spiffe://example.org/fhir-a");
    assert!(matches!(
        servers.named_in(&fhir_a, "b", || Release::read("R9")),
        Err(Refusal::CallerNotAllowed(_))
    ));
    assert!(matches!(
        servers.named_in(&fhir_a, "a", || Release::read("R9")),
        Err(Refusal::InvalidRequest(_))
    ));
}

#[test]
fn a_release_is_read_as_the_configuration_spells_it() {
    assert_eq!(Release::read("").unwrap(), Release::Unnamed);
    for (text, version) in [
        ("R4", FhirVersion::R4),
        ("r4b", FhirVersion::R4B),
        ("4.0.1", FhirVersion::R4),
        ("5.0.0", FhirVersion::R5),
    ] {
        assert_eq!(
            Release::read(text).unwrap(),
            Release::Named(version),
            "{text}"
        );
    }
    for unknown in ["R6", " R4", "R4 ", "4", "stu3"] {
        let refusal = Release::read(unknown).unwrap_err();
        assert!(
            matches!(&refusal, Refusal::InvalidRequest(message) if message.starts_with("fhir_version: ")),
            "{unknown:?}: {refusal:?}"
        );
    }
}

/// The handshake checked the certificate's validity once; an HTTP/2 connection outlives it.
#[test]
fn a_certificate_that_expired_on_an_open_connection_is_refused() {
    let servers = servers(&format!("{TWO_SERVERS}{MUTUAL_TLS}"));
    let expired = certified("anyone.example").valid_until(1);
    match servers.named(&expired, "a", Release::Unnamed).unwrap_err() {
        Refusal::CallerNotAllowed(message) => assert!(message.contains("expired"), "{message}"),
        other => panic!("expected CallerNotAllowed, got {other:?}"),
    }
    assert!(servers.may_introspect(&expired).is_err());
    let valid = certified("anyone.example").valid_until(i64::MAX);
    assert!(servers.named(&valid, "a", Release::Unnamed).is_ok());
}

#[test]
fn with_mutual_tls_a_caller_needs_a_certificate() {
    let servers = servers(&format!("{TWO_SERVERS}{MUTUAL_TLS}"));
    assert_eq!(
        servers
            .named(&Caller::default(), "a", Release::Unnamed)
            .unwrap_err(),
        Refusal::CallerUnauthenticated
    );
    assert_eq!(
        servers.may_introspect(&Caller::default()).unwrap_err(),
        Refusal::CallerUnauthenticated
    );
    // Without [[callers]], every certified caller may ask for every server.
    let caller = certified("anyone.example");
    assert!(servers.named(&caller, "a", Release::Unnamed).is_ok());
    assert!(servers.named(&caller, "b", Release::Unnamed).is_ok());
    assert!(servers.may_introspect(&caller).is_ok());
}

#[test]
fn a_bound_caller_asks_only_for_its_servers() {
    let servers = servers(&format!("{TWO_SERVERS}{MUTUAL_TLS}{CALLERS}"));
    let fhir_a = certified("spiffe://example.org/fhir-a");
    assert!(servers.named(&fhir_a, "a", Release::Unnamed).is_ok());
    assert!(servers.route(&fhir_a, "a.example", "/a/Patient/1").is_ok());
    for refusal in [
        servers.named(&fhir_a, "b", Release::Unnamed).unwrap_err(),
        servers
            .route(&fhir_a, "b.example", "/b/Patient/1")
            .unwrap_err(),
        servers.may_introspect(&fhir_a).unwrap_err(),
        servers
            .named(&certified("stranger.example"), "a", Release::Unnamed)
            .unwrap_err(),
    ] {
        assert!(
            matches!(refusal, Refusal::CallerNotAllowed(_)),
            "{refusal:?}"
        );
        assert_eq!(refusal.status().grpc, tonic::Code::PermissionDenied);
    }
    let ops = certified("ops.example");
    assert!(servers.named(&ops, "b", Release::Unnamed).is_ok());
    assert!(servers.may_introspect(&ops).is_ok());
}

#[test]
fn without_mutual_tls_callers_are_not_asked_for() {
    let servers = servers(TWO_SERVERS);
    assert!(
        servers
            .named(&Caller::default(), "b", Release::Unnamed)
            .is_ok()
    );
    assert!(servers.may_introspect(&Caller::default()).is_ok());
}

#[test]
fn identities_match_by_san_type() {
    let servers = servers(&format!("{TWO_SERVERS}{MUTUAL_TLS}{CALLERS}"));
    // A DNS SAN spelled like the SPIFFE ID of a binding is not that URI.
    let spoof = Caller::certified(Vec::new(), vec!["spiffe://example.org/fhir-a".to_owned()]);
    assert!(matches!(
        servers.named(&spoof, "a", Release::Unnamed).unwrap_err(),
        Refusal::CallerNotAllowed(_)
    ));
    // DNS names compare without case.
    let ops = Caller::certified(Vec::new(), vec!["OPS.example".to_owned()]);
    assert!(servers.named(&ops, "b", Release::Unnamed).is_ok());
    // A certificate naming two bound identities is refused, not guessed at.
    let both = Caller::certified(
        vec!["spiffe://example.org/fhir-a".to_owned()],
        vec!["ops.example".to_owned()],
    );
    let refusal = servers.named(&both, "a", Release::Unnamed).unwrap_err();
    assert!(matches!(refusal, Refusal::CallerNotAllowed(message) if message.contains("several")));
}

#[test]
fn a_caller_is_checked_before_the_server_it_names() {
    let servers = servers(&format!("{TWO_SERVERS}{MUTUAL_TLS}{CALLERS}"));
    assert_eq!(
        servers
            .named(&Caller::default(), "nonexistent", Release::Unnamed)
            .unwrap_err(),
        Refusal::CallerUnauthenticated
    );
    assert!(matches!(
        servers
            .route(&certified("stranger.example"), "x", "/nowhere/")
            .unwrap_err(),
        Refusal::CallerNotAllowed(_)
    ));
}
