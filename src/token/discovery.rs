//! Issuer discovery: `jwks_uri` and `introspection_endpoint` from
//! `{issuer}/.well-known/openid-configuration` (OpenID Connect Discovery 1.0 §4), and from
//! `{issuer}/.well-known/smart-configuration` (SMART App Launch 2.2 §2.1) when the first is
//! missing or lacks a field.
//!
//! A document's `issuer` must equal the configured issuer (OIDC Discovery §4.3), or the
//! attempt fails: otherwise a misconfigured proxy or a hostile host could make this service
//! trust another server's keys. The OpenID document must carry `issuer`; the SMART one may
//! omit it (SMART §2.1 omits it for servers without OpenID Connect), since it is fetched from
//! the issuer's own URL.
//!
//! At startup the service waits a bounded time for discovery (a few attempts with backoff),
//! then starts anyway: the issuer's tokens are `Unavailable` until the background task,
//! retrying with exponential backoff capped at the refresh interval, succeeds. After that
//! the documents are refreshed every refresh interval; a failed refresh keeps the last
//! good endpoints.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use reqwest::header::ACCEPT;
use serde_json::{Map, Value};
use tokio::sync::watch;
use tracing::Instrument as _;

use super::introspect::{Introspector, read_limited};
use super::jwks::KeySet;
use super::metrics::{self, Upstream};
use crate::config::IssuerConfig;

/// Largest discovery document read.
pub const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// The OpenID Connect discovery document (OIDC Discovery §4).
pub const OPENID_CONFIGURATION: &str = "openid-configuration";
/// The SMART configuration document (SMART App Launch 2.2 §2.1).
pub const SMART_CONFIGURATION: &str = "smart-configuration";

/// Why discovery failed; the issuer's tokens stay `Unavailable` (or keep the last good
/// endpoints).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DiscoveryError {
    /// The document could not be fetched.
    #[error("cannot fetch {document}: {message}")]
    Fetch {
        /// `openid-configuration` or `smart-configuration`.
        document: &'static str,
        /// Why.
        message: String,
    },
    /// The document's URL answered with a non-200 status.
    #[error("{document} answered HTTP {status}")]
    Status {
        /// Which document.
        document: &'static str,
        /// The HTTP status.
        status: u16,
    },
    /// The body is not a JSON object, or names a member twice.
    #[error("{document} is not a JSON object, or names a member twice")]
    NotAnObject {
        /// Which document.
        document: &'static str,
    },
    /// The document names another issuer (OIDC Discovery §4.3), or none where it must.
    #[error("{document} names issuer {found:?}, not the configured issuer")]
    IssuerMismatch {
        /// Which document.
        document: &'static str,
        /// The `issuer` it has (empty when missing).
        found: String,
    },
    /// A field is not an acceptable URL.
    #[error(
        "{document} field {field} is not an http(s) URL (https is required for an https issuer)"
    )]
    BadField {
        /// Which document.
        document: &'static str,
        /// Which field.
        field: &'static str,
    },
    /// A needed field is in neither document.
    #[error("no {field} in the discovery documents ({details})")]
    Missing {
        /// The field.
        field: &'static str,
        /// What each document said.
        details: String,
    },
}

/// Whether discovery must find a field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Configured, or not wanted: ignored.
    No,
    /// Used when found (e.g. `jwks_uri` of an issuer that can also introspect).
    Optional,
    /// Discovery fails without it.
    Required,
}

/// What an issuer's discovery looks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Needs {
    /// `jwks_uri`, for local JWT verification.
    pub jwks_uri: Need,
    /// `introspection_endpoint`, for RFC 7662.
    pub introspection_endpoint: Need,
}

impl Needs {
    /// What `issuer` needs: `jwks_uri` unless keys are configured or the issuer is
    /// introspection-only (optional when it can introspect anyway); `introspection_endpoint`
    /// when introspection is configured without an endpoint.
    pub fn of(issuer: &IssuerConfig) -> Self {
        if !issuer.discovery {
            return Needs {
                jwks_uri: Need::No,
                introspection_endpoint: Need::No,
            };
        }
        let introspection_endpoint = match &issuer.introspection {
            Some(settings) if settings.endpoint.is_none() => Need::Required,
            _ => Need::No,
        };
        let jwks_uri = if issuer.keys.is_some() || issuer.introspection_only {
            Need::No
        } else if issuer.introspection.is_some() {
            Need::Optional
        } else {
            Need::Required
        };
        Needs {
            jwks_uri,
            introspection_endpoint,
        }
    }

    /// True when there is nothing to discover.
    pub fn is_empty(&self) -> bool {
        self.jwks_uri == Need::No && self.introspection_endpoint == Need::No
    }
}

/// The endpoints found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DiscoveredEndpoints {
    /// `jwks_uri`, if needed and found.
    pub jwks_uri: Option<String>,
    /// `introspection_endpoint`, if needed and found.
    pub introspection_endpoint: Option<String>,
}

/// Reads one discovery document: checks its `issuer` and takes the needed fields.
pub fn read_document(
    document: &'static str,
    body: &[u8],
    issuer: &str,
    needs: Needs,
) -> Result<DiscoveredEndpoints, DiscoveryError> {
    // Strict: with a member named twice, `{"issuer": "other", "issuer": "<ours>"}` would
    // pass the issuer check on the one value and mean the other.
    let Ok(Value::Object(fields)) = crate::fhir::parse_strict(body) else {
        return Err(DiscoveryError::NotAnObject { document });
    };
    let issuer_required = document == OPENID_CONFIGURATION;
    match fields.get("issuer") {
        Some(Value::String(found)) if found == issuer => {}
        None if !issuer_required => {}
        other => {
            return Err(DiscoveryError::IssuerMismatch {
                document,
                found: other
                    .map(|value| {
                        value
                            .as_str()
                            .map_or_else(|| value.to_string(), str::to_owned)
                    })
                    .unwrap_or_default(),
            });
        }
    }
    let https_only = issuer.starts_with("https://");
    let field = |name: &'static str, need: Need| -> Result<Option<String>, DiscoveryError> {
        if need == Need::No {
            return Ok(None);
        }
        url_field(&fields, name, https_only).map_err(|()| DiscoveryError::BadField {
            document,
            field: name,
        })
    };
    Ok(DiscoveredEndpoints {
        jwks_uri: field("jwks_uri", needs.jwks_uri)?,
        introspection_endpoint: field("introspection_endpoint", needs.introspection_endpoint)?,
    })
}

fn url_field(
    fields: &Map<String, Value>,
    name: &str,
    https_only: bool,
) -> Result<Option<String>, ()> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(url)) => {
            let acceptable =
                url.starts_with("https://") || (!https_only && url.starts_with("http://"));
            if acceptable && url.len() > "https://".len() {
                Ok(Some(url.clone()))
            } else {
                Err(())
            }
        }
        Some(_) => Err(()),
    }
}

/// The URL of a well-known document of `issuer` (OIDC Discovery §4: a terminating `/` of
/// the issuer is removed before appending).
pub fn well_known_url(issuer: &str, document: &str) -> String {
    format!("{}/.well-known/{document}", issuer.trim_end_matches('/'))
}

/// The longest pause between two failed discovery attempts.
pub const MAX_RETRY_PAUSE: Duration = Duration::from_secs(30);

/// The pause before the next attempt after `failures` consecutive failures: `first`,
/// doubling, capped at `cap`.
pub fn retry_delay(failures: u32, first: Duration, cap: Duration) -> Duration {
    let doublings = failures.saturating_sub(1).min(31);
    first.saturating_mul(1 << doublings).min(cap)
}

#[derive(Debug, Default)]
struct DiscoveryState {
    endpoints: Option<Arc<DiscoveredEndpoints>>,
    last_error: Option<DiscoveryError>,
}

/// One issuer's discovery: fetches the documents and hands the endpoints to its key set and
/// introspector.
pub struct Discovery {
    issuer: String,
    needs: Needs,
    refresh_interval: Duration,
    http: reqwest::Client,
    keys: Option<Arc<KeySet>>,
    introspector: Option<Arc<Introspector>>,
    state: RwLock<DiscoveryState>,
    ready: watch::Sender<bool>,
    attempts: AtomicU64,
}

impl std::fmt::Debug for Discovery {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Discovery")
            .field("issuer", &self.issuer)
            .field("needs", &self.needs)
            .field("ready", &self.is_ready())
            .finish_non_exhaustive()
    }
}

impl Discovery {
    /// The discovery of `issuer`, feeding `keys` (a discovered key set) and `introspector`.
    pub fn new(
        issuer: &IssuerConfig,
        keys: Option<Arc<KeySet>>,
        introspector: Option<Arc<Introspector>>,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(issuer.fetch_timeout)
            .connect_timeout(issuer.fetch_timeout)
            // Never follow redirects: keys and endpoints come only from the configured host,
            // never from wherever a redirect points (fail closed).
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Discovery {
            issuer: issuer.issuer.clone(),
            needs: Needs::of(issuer),
            refresh_interval: issuer.refresh_interval,
            http,
            keys,
            introspector,
            state: RwLock::new(DiscoveryState::default()),
            ready: watch::Sender::new(false),
            attempts: AtomicU64::new(0),
        })
    }

    /// True once an attempt succeeded.
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Waits until an attempt succeeds.
    pub async fn wait_ready(&self) {
        let mut receiver = self.ready.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = receiver.wait_for(|ready| *ready).await;
    }

    /// Attempts so far, for tests and metrics.
    pub fn attempts(&self) -> u64 {
        self.attempts.load(Ordering::Relaxed)
    }

    /// The endpoints of the last successful attempt.
    pub fn endpoints(&self) -> Option<Arc<DiscoveredEndpoints>> {
        self.read_state().endpoints.clone()
    }

    /// Why the issuer cannot be used yet, for `Unavailable` answers.
    pub fn pending_detail(&self) -> String {
        match &self.read_state().last_error {
            Some(error) => format!("discovery has not succeeded yet: {error}"),
            None => "discovery has not succeeded yet".to_owned(),
        }
    }

    fn read_state(&self) -> std::sync::RwLockReadGuard<'_, DiscoveryState> {
        match self.state.read() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn write_state(&self) -> std::sync::RwLockWriteGuard<'_, DiscoveryState> {
        match self.state.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// One attempt: fetches the documents, hands the endpoints over (loading keys from a new
    /// `jwks_uri` before declaring the issuer ready) and records the outcome. On failure
    /// the last good endpoints stay in use.
    pub async fn refresh(&self) -> Result<Arc<DiscoveredEndpoints>, DiscoveryError> {
        self.attempts.fetch_add(1, Ordering::Relaxed);
        let span = metrics::upstream_span(Upstream::Discovery, &self.issuer);
        let endpoints = match self.discover().instrument(span.clone()).await {
            Ok(endpoints) => Arc::new(endpoints),
            Err(error) => {
                metrics::record_upstream_error(&span, "discovery_failed");
                metrics::record_discovery_failure();
                tracing::warn!(issuer = %self.issuer, %error, "issuer discovery failed");
                self.write_state().last_error = Some(error.clone());
                return Err(error);
            }
        };
        if let (Some(keys), Some(uri)) = (&self.keys, &endpoints.jwks_uri) {
            let changed = keys.set_discovered_uri(uri);
            if changed || keys.snapshot().is_none() {
                // A failure is logged by the key set; the periodic reload retries.
                let _ = keys.refresh().await;
            }
        }
        if let (Some(introspector), Some(endpoint)) =
            (&self.introspector, &endpoints.introspection_endpoint)
        {
            introspector.set_endpoint(endpoint);
        }
        {
            let mut state = self.write_state();
            state.endpoints = Some(Arc::clone(&endpoints));
            state.last_error = None;
        }
        tracing::debug!(issuer = %self.issuer, jwks_uri = ?endpoints.jwks_uri, introspection_endpoint = ?endpoints.introspection_endpoint, "issuer discovered");
        self.ready.send_replace(true);
        Ok(endpoints)
    }

    async fn discover(&self) -> Result<DiscoveredEndpoints, DiscoveryError> {
        let openid = self.fetch(OPENID_CONFIGURATION).await;
        let mut found = match &openid {
            Ok(endpoints) => endpoints.clone(),
            // A wrong issuer is never papered over by the other document.
            Err(error @ DiscoveryError::IssuerMismatch { .. }) => return Err(error.clone()),
            Err(_) => DiscoveredEndpoints::default(),
        };
        let lacks = |found: &DiscoveredEndpoints| {
            (self.needs.jwks_uri != Need::No && found.jwks_uri.is_none())
                || (self.needs.introspection_endpoint != Need::No
                    && found.introspection_endpoint.is_none())
        };
        let mut smart = None;
        if lacks(&found) {
            let result = self.fetch(SMART_CONFIGURATION).await;
            match &result {
                Ok(endpoints) => {
                    found.jwks_uri = found.jwks_uri.take().or(endpoints.jwks_uri.clone());
                    found.introspection_endpoint = found
                        .introspection_endpoint
                        .take()
                        .or(endpoints.introspection_endpoint.clone());
                }
                Err(error @ DiscoveryError::IssuerMismatch { .. }) => return Err(error.clone()),
                Err(_) => {}
            }
            smart = Some(result);
        }
        let details = || {
            let describe = |result: &Result<DiscoveredEndpoints, DiscoveryError>| match result {
                Ok(_) => "lacks it".to_owned(),
                Err(error) => error.to_string(),
            };
            let mut text = format!("{OPENID_CONFIGURATION}: {}", describe(&openid));
            if let Some(smart) = &smart {
                text.push_str(&format!("; {SMART_CONFIGURATION}: {}", describe(smart)));
            }
            text
        };
        if self.needs.jwks_uri == Need::Required && found.jwks_uri.is_none() {
            return Err(DiscoveryError::Missing {
                field: "jwks_uri",
                details: details(),
            });
        }
        if self.needs.introspection_endpoint == Need::Required
            && found.introspection_endpoint.is_none()
        {
            return Err(DiscoveryError::Missing {
                field: "introspection_endpoint",
                details: details(),
            });
        }
        Ok(found)
    }

    async fn fetch(&self, document: &'static str) -> Result<DiscoveredEndpoints, DiscoveryError> {
        let fetch_error = |message: String| DiscoveryError::Fetch { document, message };
        let response = self
            .http
            .get(well_known_url(&self.issuer, document))
            .header(ACCEPT, "application/json")
            .send()
            .await
            .map_err(|error| fetch_error(error.without_url().to_string()))?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(DiscoveryError::Status { document, status });
        }
        let body = read_limited(response, MAX_DOCUMENT_BYTES)
            .await
            .map_err(fetch_error)?;
        read_document(document, &body, &self.issuer, self.needs)
    }
}

/// Discovers until the discovery is dropped: the first attempt at once, retries after
/// [`retry_delay`] (from `first_retry`, capped at the refresh interval), and after each
/// success a refresh after the refresh interval.
pub async fn run(discovery: Weak<Discovery>, first_retry: Duration) {
    let mut failures = 0_u32;
    loop {
        let Some(current) = discovery.upgrade() else {
            return;
        };
        let succeeded = current.refresh().await.is_ok();
        let interval = current.refresh_interval;
        drop(current);
        failures = if succeeded {
            0
        } else {
            failures.saturating_add(1)
        };
        // Retries back off up to MAX_RETRY_PAUSE, not the refresh interval (minutes): an
        // issuer back from an outage is found within seconds.
        let pause = if succeeded {
            interval
        } else {
            retry_delay(failures, first_retry, interval.min(MAX_RETRY_PAUSE))
        };
        tokio::time::sleep(pause).await;
    }
}

#[cfg(test)]
mod tests;
