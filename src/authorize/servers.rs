//! Which FHIR server a request is for, whether that server honours the token, and whether
//! the caller may ask for it.
//!
//! A token is for one FHIR server: its `aud` names that server's base URL (SMART App Launch
//! 2.2 §"Obtaining authorization", RFC 8707) and its issuer is one the server trusts. A
//! service shared by servers A and B that checked only "some configured audience" would
//! honour A's tokens when B asks: a confused deputy. So every request names its server (gRPC
//! `fhir_server`, Envoy's path prefix and `:authority`), and with mutual TLS a caller may be
//! bound to the servers it may ask for, so backend A cannot ask about B's traffic.

use std::sync::Arc;

use super::Refusal;
use crate::config::{CallerConfig, Config, FhirBase, FhirServerConfig};
use crate::decision::{Engine, Policy};
use crate::fhir::FhirVersion;
use crate::token::{TokenError, VerifiedToken};

/// One FHIR server and the engine of its FHIR version and policy.
#[derive(Debug)]
pub struct FhirServer {
    config: FhirServerConfig,
    engine: Engine,
}

impl FhirServer {
    pub fn new(config: FhirServerConfig) -> Self {
        let engine = Engine::new(config.policy.clone());
        FhirServer { config, engine }
    }

    /// The same server, deciding for another FHIR version (an Envoy base that overrides it).
    fn for_version(&self, version: FhirVersion) -> Self {
        let mut config = self.config.clone();
        config.policy = Policy {
            fhir_version: version,
            ..config.policy
        };
        FhirServer::new(config)
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Refuses a token this server does not honour: an issuer it does not trust, or an `aud`
    /// that does not name it. The implicit server (no `[[fhir_servers]]`) leaves both to the
    /// issuer's own `audiences`, checked when the token was verified.
    pub fn accepts(&self, token: &VerifiedToken) -> Result<(), TokenError> {
        if let Some(issuers) = &self.config.issuers
            && !issuers.contains(&token.issuer)
        {
            return Err(TokenError::WrongIssuer(token.issuer.clone()));
        }
        match &self.config.audiences {
            Some(audiences) if !token.is_for(audiences) => Err(TokenError::WrongAudience),
            _ => Ok(()),
        }
    }

    /// The paths under its base that need no token: its own, or `shared` (`[envoy]
    /// public_paths`) when it names none.
    pub fn public_paths<'a>(&'a self, shared: &'a [String]) -> &'a [String] {
        self.config.public_paths.as_deref().unwrap_or(shared)
    }

    /// Whether `name` is this server's name or one of its base URLs (a trailing `/` aside).
    fn is_named(&self, name: &str) -> bool {
        self.config.name == name
            || self
                .config
                .base_urls
                .iter()
                .any(|url| url == name.strip_suffix('/').unwrap_or(name))
    }
}

/// Who is asking: the subject alternative names of the client certificate a mutual TLS
/// connection presented, or nobody known (plaintext, or TLS without a client certificate).
///
/// The TLS listener attaches it to each connection; a face reads it with [`Caller::of`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Caller {
    certificate: Option<Arc<Identities>>,
}

/// The identities of a client certificate, by SAN type.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Identities {
    /// URI SANs, e.g. SPIFFE IDs.
    uris: Vec<String>,
    /// DNS SANs.
    dns_names: Vec<String>,
    /// The end of the certificate's validity, in seconds since the Unix epoch: the
    /// handshake checked it once, but an HTTP/2 connection lives on, so each request does.
    not_after: Option<i64>,
}

impl Caller {
    /// A caller whose certificate chain verified, known by its URI and DNS SANs.
    pub fn certified(uris: Vec<String>, dns_names: Vec<String>) -> Self {
        Caller {
            certificate: Some(Arc::new(Identities {
                uris,
                dns_names,
                not_after: None,
            })),
        }
    }

    /// The same caller, whose certificate is valid until `not_after` (Unix seconds).
    pub fn valid_until(self, not_after: i64) -> Self {
        Caller {
            certificate: self.certificate.map(|certificate| {
                Arc::new(Identities {
                    not_after: Some(not_after),
                    ..Identities::clone(&certificate)
                })
            }),
        }
    }

    /// The caller of a request: the one its connection carries, or an unknown one.
    pub fn of(extensions: &tonic::Extensions) -> Self {
        extensions.get::<Caller>().cloned().unwrap_or_default()
    }

    /// Whether its certificate names `identity`: a URI (it has a scheme, so a `:`) equal to
    /// a URI SAN, or a DNS name equal, without case, to a DNS SAN. A DNS SAN spelled like a
    /// URI never stands for a URI binding.
    fn is(&self, identity: &str) -> bool {
        let Some(certificate) = &self.certificate else {
            return false;
        };
        if identity.contains(':') {
            certificate.uris.iter().any(|uri| uri == identity)
        } else {
            certificate
                .dns_names
                .iter()
                .any(|name| name.eq_ignore_ascii_case(identity))
        }
    }

    fn describe(&self) -> String {
        match &self.certificate {
            Some(certificate) => {
                format!("URI {:?} DNS {:?}", certificate.uris, certificate.dns_names)
            }
            None => "without a certificate".to_owned(),
        }
    }
}

/// The FHIR release a gRPC or AuthZEN request is decided in, as the request names it
/// (`fhir_version`).
///
/// The release decides which resource types exist, what each search parameter reads and
/// what puts a resource in a patient's compartment, so a server that serves several (the
/// implicit server's `[envoy] bases` may each name one) is not left to guess which one a
/// request is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Release {
    /// The request names none: the server's only release. Refused for a server that
    /// serves several.
    Unnamed,
    /// The request names this one: refused unless the server serves it.
    Named(FhirVersion),
    /// The server's configured release, whatever its bases serve: for a call that decides
    /// nothing (`IntrospectToken`).
    Configured,
}

impl Release {
    /// Reads a request's `fhir_version`: empty, or a release as the configuration's
    /// `fhir_version` spells it (`R4`, `4.0.1`, without case).
    pub fn read(text: &str) -> Result<Release, Refusal> {
        if text.is_empty() {
            return Ok(Release::Unnamed);
        }
        text.parse()
            .map(Release::Named)
            .map_err(|error| Refusal::InvalidRequest(format!("fhir_version: {error}")))
    }
}

/// An Envoy base prefix and the server it leads to.
#[derive(Debug)]
struct Route {
    base: FhirBase,
    server: Arc<FhirServer>,
}

/// A configured server, and the same server in the other releases its Envoy bases name.
#[derive(Debug)]
struct Served {
    server: Arc<FhirServer>,
    other_releases: Vec<Arc<FhirServer>>,
}

impl Served {
    /// The server deciding in `release`.
    fn in_release(&self, release: Release) -> Result<&Arc<FhirServer>, Refusal> {
        let own = self.server.engine.fhir_version();
        match release {
            Release::Configured => Ok(&self.server),
            Release::Unnamed => match self.other_releases.first() {
                None => Ok(&self.server),
                Some(other) => Err(Refusal::InvalidRequest(format!(
                    "fhir_version: required, FHIR server {:?} serves {own} and {}",
                    self.server.name(),
                    other.engine.fhir_version()
                ))),
            },
            Release::Named(version) if version == own => Ok(&self.server),
            Release::Named(version) => self
                .other_releases
                .iter()
                .find(|server| server.engine.fhir_version() == version)
                .ok_or_else(|| {
                    Refusal::InvalidRequest(format!(
                        "fhir_version: FHIR server {:?} does not serve {version}",
                        self.server.name()
                    ))
                }),
        }
    }
}

/// The configured servers, their Envoy routes and the caller bindings.
#[derive(Debug)]
pub struct Servers {
    servers: Vec<Served>,
    routes: Vec<Route>,
    /// Whether client certificates are verified (`[tls] client_ca_file`): a caller without
    /// one is refused.
    mutual_tls: bool,
    /// `[[callers]]`; empty lets every certified caller ask for every server.
    callers: Vec<CallerConfig>,
}

impl Servers {
    pub fn from_config(config: &Config) -> Self {
        let mut servers = Vec::with_capacity(config.fhir_servers.len());
        let mut routes = Vec::new();
        for config in &config.fhir_servers {
            let mut served = Served {
                server: Arc::new(FhirServer::new(config.clone())),
                other_releases: Vec::new(),
            };
            for base in &config.envoy_bases {
                let server = match base.fhir_version {
                    Some(version) if version != served.server.engine.fhir_version() => {
                        let known = served
                            .other_releases
                            .iter()
                            .find(|server| server.engine.fhir_version() == version)
                            .cloned();
                        known.unwrap_or_else(|| {
                            let server = Arc::new(served.server.for_version(version));
                            served.other_releases.push(Arc::clone(&server));
                            server
                        })
                    }
                    _ => Arc::clone(&served.server),
                };
                routes.push(Route {
                    base: base.clone(),
                    server,
                });
            }
            servers.push(served);
        }
        Servers {
            servers,
            routes,
            mutual_tls: config
                .tls
                .as_ref()
                .is_some_and(|tls| tls.client_ca_file.is_some()),
            callers: config.callers.clone(),
        }
    }

    /// The server a gRPC or AuthZEN request names (by name or base URL), for `caller`,
    /// deciding in `release`. An empty name is the only server when there is one; with
    /// several, a request must say which. The caller is checked first, so one that may not
    /// ask learns nothing of the servers, nor of what else its request got wrong.
    pub fn named(
        &self,
        caller: &Caller,
        name: &str,
        release: Release,
    ) -> Result<&Arc<FhirServer>, Refusal> {
        self.named_in(caller, name, || Ok(release))
    }

    /// [`Servers::named`], with the release read once the caller and the server are known.
    pub(super) fn named_in(
        &self,
        caller: &Caller,
        name: &str,
        release: impl FnOnce() -> Result<Release, Refusal>,
    ) -> Result<&Arc<FhirServer>, Refusal> {
        let binding = self.binding(caller)?;
        let served = if name.is_empty() {
            match self.servers.as_slice() {
                [only] => only,
                _ => {
                    return Err(Refusal::UnknownServer(
                        "fhir_server: required, this service decides for several FHIR servers"
                            .to_owned(),
                    ));
                }
            }
        } else {
            self.servers
                .iter()
                .find(|served| served.server.is_named(name))
                .ok_or_else(|| {
                    Refusal::UnknownServer(format!(
                        "fhir_server: {name:?} is no configured FHIR server"
                    ))
                })?
        };
        may_ask(binding, &served.server)?;
        served.in_release(release()?)
    }

    /// The server of an Envoy request: the longest base prefix `path` starts with among the
    /// servers that serve `authority`; and the path relative to that base. As Envoy picks a
    /// virtual host before a route (an exact domain before `*`), servers that name the
    /// authority are the only candidates when there are any, and servers that serve any
    /// authority only when none does: otherwise a longer prefix of a server for any host
    /// would decide a request Envoy sends to the named host's upstream.
    pub fn route<'p>(
        &self,
        caller: &Caller,
        authority: &str,
        path: &'p str,
    ) -> Result<(&Arc<FhirServer>, &'p str), Refusal> {
        let binding = self.binding(caller)?;
        let named_here = self
            .routes
            .iter()
            .any(|route| route.server.config.names_authority(authority));
        let (route, relative) = self
            .routes
            .iter()
            .filter(|route| {
                if named_here {
                    route.server.config.names_authority(authority)
                } else {
                    route.server.config.authorities.is_empty()
                }
            })
            .filter_map(|route| Some((route, route.base.relative_path(path)?)))
            .max_by_key(|(route, _)| route.base.prefix.len())
            .ok_or(Refusal::NoFhirBase)?;
        may_ask(binding, &route.server)?;
        Ok((&route.server, relative))
    }

    /// Whether `caller` may call `IntrospectToken`: with `[[callers]]`, only those marked
    /// `introspect = true`, as the answer discloses a token's claims.
    pub fn may_introspect(&self, caller: &Caller) -> Result<(), Refusal> {
        match self.binding(caller)? {
            Some(binding) if !binding.introspect => Err(Refusal::CallerNotAllowed(format!(
                "caller {:?} may not introspect tokens",
                binding.identity
            ))),
            _ => Ok(()),
        }
    }

    /// The `[[callers]]` entry of `caller`: `None` when there are no entries. With mutual TLS
    /// a caller without a certificate is refused; with entries, one that matches none, or
    /// (rather than guessing which applies) several.
    fn binding(&self, caller: &Caller) -> Result<Option<&CallerConfig>, Refusal> {
        if !self.mutual_tls {
            return Ok(None);
        }
        let Some(certificate) = &caller.certificate else {
            return Err(Refusal::CallerUnauthenticated);
        };
        if let Some(not_after) = certificate.not_after
            && crate::token::unix_now() > not_after
        {
            return Err(Refusal::CallerNotAllowed(format!(
                "the client certificate ({}) expired: connect again with a valid one",
                caller.describe()
            )));
        }
        if self.callers.is_empty() {
            return Ok(None);
        }
        let mut matching = self
            .callers
            .iter()
            .filter(|binding| caller.is(&binding.identity));
        match (matching.next(), matching.next()) {
            (Some(binding), None) => Ok(Some(binding)),
            (None, _) => Err(Refusal::CallerNotAllowed(format!(
                "no [[callers]] entry names the client certificate ({})",
                caller.describe()
            ))),
            (Some(first), Some(second)) => Err(Refusal::CallerNotAllowed(format!(
                "the client certificate matches several [[callers]] entries ({:?}, {:?})",
                first.identity, second.identity
            ))),
        }
    }
}

/// Whether the caller of `binding` (none: any caller) may ask for `server`'s decisions.
fn may_ask(binding: Option<&CallerConfig>, server: &FhirServer) -> Result<(), Refusal> {
    match binding.and_then(|binding| Some((binding, binding.fhir_servers.as_ref()?))) {
        Some((binding, names)) if !names.iter().any(|name| name == server.name()) => {
            Err(Refusal::CallerNotAllowed(format!(
                "caller {:?} may not ask for FHIR server {:?}",
                binding.identity,
                server.name()
            )))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
