//! The `[[fhir_servers]]` entries: the FHIR servers this service decides for, each with its
//! own token audience, trusted issuers, FHIR version, policy and Envoy prefixes.
//!
//! One service may sit behind many FHIR servers. A token is valid for a decision only when
//! its issuer is one the asking server trusts and its `aud` names that server: SMART App
//! Launch 2.2 §"Obtaining authorization" (the `aud` parameter is the FHIR base URL the token
//! is for) and RFC 8707. Without that check, a token issued for server A would be honoured
//! when server B asks: a confused deputy.
//!
//! With no `[[fhir_servers]]`, one implicit server named `default` stands for everything
//! configured at the top level, and each issuer's own `audiences` decide, as before.

use figment::Figment;
use figment::providers::Serialized;
use figment::value::Dict;
use serde::{Deserialize, Serialize};

use super::envoy::{EnvoyConfig, FhirBase, check_public_paths};
use super::{ConfigError, IssuerConfig, check_operation_letters, invalid, is_http_url};
use crate::decision::Policy;
use crate::fhir::FhirVersion;

/// The name of the server that stands for a configuration without `[[fhir_servers]]`.
pub const DEFAULT_SERVER: &str = "default";

/// One FHIR server, as written in the file.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FhirServerFile {
    /// How requests name it (`fhir_server` in the API): letters, digits, `.`, `_`, `-`.
    pub name: String,
    /// Its FHIR base URL(s), e.g. `https://fhir.example.org/r4`. A request may name the server
    /// by one of them; absolute references under them are local.
    pub base_urls: Vec<String>,
    /// The `aud` values its tokens carry; default: `base_urls`.
    pub audiences: Vec<String>,
    /// The `issuer`s of `[[issuers]]` whose tokens it accepts; default: all of them.
    pub issuers: Vec<String>,
    /// Its FHIR version; default: the top-level `fhir_version`.
    pub fhir_version: Option<FhirVersion>,
    /// Keys of `[policy]` that differ for this server; the rest comes from `[policy]`.
    pub policy: Dict,
    /// Envoy path prefixes of its FHIR base, e.g. `/a/fhir/`; default `/` when it is the only
    /// server, none otherwise (it is then reachable through the gRPC API only).
    pub envoy_prefixes: Vec<String>,
    /// The `:authority` (host, or host:port) values its Envoy requests carry; none means any.
    pub authorities: Vec<String>,
    /// Paths relative to its base that need no token, in place of `[envoy] public_paths`;
    /// absent: those.
    pub public_paths: Option<Vec<String>>,
}

/// A validated FHIR server.
#[derive(Clone, Debug, PartialEq)]
pub struct FhirServerConfig {
    pub name: String,
    /// Without a trailing `/`.
    pub base_urls: Vec<String>,
    /// The `aud` values its tokens must name one of; `None` for the implicit server, whose
    /// issuers' `audiences` decide.
    pub audiences: Option<Vec<String>>,
    /// The issuers it trusts; `None` means every configured issuer.
    pub issuers: Option<Vec<String>>,
    /// Its policy, with its FHIR version.
    pub policy: Policy,
    /// Where Envoy's requests for it arrive; a base's `fhir_version` overrides the policy's.
    pub envoy_bases: Vec<FhirBase>,
    /// Lower-case `:authority` values; empty means any.
    pub authorities: Vec<String>,
    /// Its own public paths; `None`: the top-level `[envoy] public_paths`.
    pub public_paths: Option<Vec<String>>,
}

impl FhirServerConfig {
    /// Whether an Envoy request with this `:authority` may be for this server. Compared as
    /// Envoy compares a virtual host's domains by default: the whole authority, port
    /// included, host name without case. A looser match here (any port, say) would let the
    /// service decide for one server while Envoy routes to another.
    pub fn serves_authority(&self, authority: &str) -> bool {
        self.authorities.is_empty() || self.names_authority(authority)
    }

    /// Whether `authority` is one of this server's own `authorities` (not merely any).
    pub fn names_authority(&self, authority: &str) -> bool {
        self.authorities
            .iter()
            .any(|ours| ours.eq_ignore_ascii_case(authority))
    }
}

/// The servers of a configuration: the implicit one when `files` is empty.
pub(super) fn validate_servers(
    files: Vec<FhirServerFile>,
    issuers: &[IssuerConfig],
    fhir_version: FhirVersion,
    policy: &Policy,
    envoy: &EnvoyConfig,
) -> Result<Vec<FhirServerConfig>, ConfigError> {
    if files.is_empty() {
        if let Some(index) = issuers
            .iter()
            .position(|issuer| issuer.audiences.is_empty())
        {
            return Err(invalid(
                format!("issuers[{index}].audiences"),
                "list the FHIR base URL(s) tokens must be issued for (or configure [[fhir_servers]])",
            ));
        }
        let mut base_urls: Vec<String> = Vec::new();
        for audience in issuers.iter().flat_map(|issuer| &issuer.audiences) {
            let url = audience.trim_end_matches('/').to_owned();
            if is_http_url(&url) && !base_urls.contains(&url) {
                base_urls.push(url);
            }
        }
        let bases = if envoy.bases.is_empty() {
            vec![FhirBase::root()]
        } else {
            envoy.bases.clone()
        };
        return Ok(vec![FhirServerConfig {
            name: DEFAULT_SERVER.to_owned(),
            base_urls,
            audiences: None,
            issuers: None,
            policy: Policy {
                fhir_version,
                ..policy.clone()
            },
            envoy_bases: bases,
            public_paths: None,
            authorities: Vec::new(),
        }]);
    }
    if !envoy.bases.is_empty() {
        return Err(invalid(
            "envoy.bases",
            "with [[fhir_servers]], give each server its envoy_prefixes instead",
        ));
    }
    let only = files.len() == 1;
    // With several servers and several issuers, a server that names none would trust every
    // one: an authorization server of another tenant could sign tokens whose `aud` names
    // it, and only the `aud`, written by the issuer not trusted, would keep the tenants
    // apart. Each server lists the issuers it trusts.
    if !only
        && issuers.len() > 1
        && let Some(index) = files.iter().position(|file| file.issuers.is_empty())
    {
        return Err(invalid(
            format!("fhir_servers[{index}].issuers"),
            format!(
                "with several FHIR servers and {} [[issuers]], list the issuers this server trusts: without the list it would honour tokens any of them signs",
                issuers.len()
            ),
        ));
    }
    let mut servers: Vec<FhirServerConfig> = Vec::with_capacity(files.len());
    for (index, file) in files.into_iter().enumerate() {
        let server = validate_server(index, file, only, issuers, fhir_version, policy)?;
        check_unique(index, &server, &servers)?;
        servers.push(server);
    }
    Ok(servers)
}

fn validate_server(
    index: usize,
    file: FhirServerFile,
    only: bool,
    issuers: &[IssuerConfig],
    fhir_version: FhirVersion,
    policy: &Policy,
) -> Result<FhirServerConfig, ConfigError> {
    let key = |name: &str| format!("fhir_servers[{index}].{name}");
    if file.name.is_empty()
        || !file
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(invalid(
            key("name"),
            "must be letters, digits, '.', '_' or '-' (and not empty)",
        ));
    }
    if file.base_urls.is_empty() {
        return Err(invalid(key("base_urls"), "list the server's FHIR base URL"));
    }
    let mut base_urls = Vec::with_capacity(file.base_urls.len());
    for (position, url) in file.base_urls.iter().enumerate() {
        if !is_http_url(url) || url.contains(['?', '#']) || url.chars().any(char::is_whitespace) {
            return Err(invalid(
                format!("fhir_servers[{index}].base_urls[{position}]"),
                format!("{url:?} must be an http(s) URL without query or fragment"),
            ));
        }
        base_urls.push(url.trim_end_matches('/').to_owned());
    }
    let audiences = if file.audiences.is_empty() {
        base_urls.clone()
    } else {
        if file.audiences.iter().any(String::is_empty) {
            return Err(invalid(key("audiences"), "an audience may not be empty"));
        }
        file.audiences
    };
    let trusted = if file.issuers.is_empty() {
        None
    } else {
        for (position, named) in file.issuers.iter().enumerate() {
            if !issuers.iter().any(|issuer| &issuer.issuer == named) {
                return Err(invalid(
                    format!("fhir_servers[{index}].issuers[{position}]"),
                    format!("{named:?} is not the issuer of any [[issuers]] entry"),
                ));
            }
        }
        Some(file.issuers)
    };
    let version = file.fhir_version.unwrap_or(fhir_version);
    let policy = if file.policy.is_empty() {
        policy.clone()
    } else {
        let merged = Figment::from(Serialized::defaults(policy))
            .merge(Serialized::defaults(&file.policy))
            .extract::<Policy>()
            .map_err(|error| invalid(key("policy"), error.to_string()))?;
        check_operation_letters(&merged, &key("policy"))?;
        merged
    };
    let prefixes = if file.envoy_prefixes.is_empty() && only {
        vec!["/".to_owned()]
    } else {
        file.envoy_prefixes
    };
    let mut envoy_bases = Vec::with_capacity(prefixes.len());
    for (position, prefix) in prefixes.into_iter().enumerate() {
        if !prefix.starts_with('/') || !prefix.ends_with('/') {
            return Err(invalid(
                format!("fhir_servers[{index}].envoy_prefixes[{position}]"),
                format!("{prefix:?} must start and end with '/'"),
            ));
        }
        envoy_bases.push(FhirBase {
            prefix,
            fhir_version: None,
        });
    }
    // `*` is a wildcard to Envoy (`*.hospital-a.example`, `a.example:*`) and plain text
    // here: Envoy would route hosts to this server that the service routes elsewhere.
    if file.authorities.iter().any(|authority| {
        authority.is_empty()
            || authority.contains(['/', '@', '*'])
            || authority.contains(char::is_whitespace)
    }) {
        return Err(invalid(
            key("authorities"),
            "each must be a host or host:port, as in the :authority header (no wildcards)",
        ));
    }
    if let Some(public_paths) = &file.public_paths {
        check_public_paths(public_paths, &format!("fhir_servers[{index}].public_paths"))
            .map_err(|(key, message)| invalid(key, message))?;
    }
    Ok(FhirServerConfig {
        public_paths: file.public_paths,
        name: file.name,
        base_urls: base_urls.clone(),
        audiences: Some(audiences),
        issuers: trusted,
        policy: Policy {
            fhir_version: version,
            base_urls,
            ..policy
        },
        envoy_bases,
        authorities: file
            .authorities
            .iter()
            .map(|authority| authority.to_ascii_lowercase())
            .collect(),
    })
}

/// A server's audiences, a trailing `/` aside.
fn audiences_of(server: &FhirServerConfig) -> impl Iterator<Item = &str> {
    server
        .audiences
        .iter()
        .flatten()
        .map(|audience| audience.strip_suffix('/').unwrap_or(audience))
}

/// Names, base URLs, audiences and Envoy routes must each lead to one server.
fn check_unique(
    index: usize,
    server: &FhirServerConfig,
    earlier: &[FhirServerConfig],
) -> Result<(), ConfigError> {
    for (other_index, other) in earlier.iter().enumerate() {
        if other.name == server.name {
            return Err(invalid(
                format!("fhir_servers[{index}].name"),
                format!(
                    "{:?} is also the name of fhir_servers[{other_index}]",
                    server.name
                ),
            ));
        }
        if let Some(url) = server
            .base_urls
            .iter()
            .find(|url| other.base_urls.contains(url))
        {
            return Err(invalid(
                format!("fhir_servers[{index}].base_urls"),
                format!("{url:?} is also a base URL of fhir_servers[{other_index}]"),
            ));
        }
        // A token naming an audience of both would be honoured by both.
        if let Some(audience) = audiences_of(server)
            .find(|audience| audiences_of(other).any(|theirs| theirs == *audience))
        {
            return Err(invalid(
                format!("fhir_servers[{index}].audiences"),
                format!(
                    "{audience:?} is also an audience of fhir_servers[{other_index}]: a token for one would be honoured by both"
                ),
            ));
        }
        // A base URL names its server (`fhir_server`, and the `aud` SMART issuers write for
        // it): as another server's audience, tokens for the one would be honoured by the other.
        let base_of = |owner: &FhirServerConfig, audience: &str| {
            owner.base_urls.iter().any(|url| url == audience)
        };
        let crossed = audiences_of(server)
            .find(|audience| base_of(other, audience))
            .map(|audience| {
                (
                    audience,
                    format!("a base URL of fhir_servers[{other_index}]"),
                )
            })
            .or_else(|| {
                audiences_of(other)
                    .find(|audience| base_of(server, audience))
                    .map(|audience| {
                        (
                            audience,
                            format!("an audience of fhir_servers[{other_index}]"),
                        )
                    })
            });
        if let Some((audience, as_what)) = crossed {
            return Err(invalid(
                format!("fhir_servers[{index}].audiences"),
                format!(
                    "{audience:?} is {as_what} and names the other server: a token for one would be honoured by the other"
                ),
            ));
        }
        // Requests for an authority a server lists go to the servers that list it, and the
        // others to the servers that list none (`Servers::route`): two servers compete for a
        // prefix only when both list none, or both list one authority.
        let shared_authority = (server.authorities.is_empty() && other.authorities.is_empty())
            || server
                .authorities
                .iter()
                .any(|authority| other.authorities.contains(authority));
        if !shared_authority {
            continue;
        }
        for (position, base) in server.envoy_bases.iter().enumerate() {
            if other
                .envoy_bases
                .iter()
                .any(|theirs| theirs.prefix == base.prefix)
            {
                return Err(invalid(
                    format!("fhir_servers[{index}].envoy_prefixes[{position}]"),
                    format!(
                        "{:?} is also a prefix of fhir_servers[{other_index}] for the same authorities: give them distinct prefixes or distinct authorities",
                        base.prefix
                    ),
                ));
            }
        }
    }
    Ok(())
}
