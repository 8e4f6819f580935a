//! The `[authzen]` configuration: the HTTP JSON face (OpenID AuthZEN Authorization API 1.0,
//! docs/authzen.md) for clients without gRPC. Off unless `listen` is set.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::{ConfigError, MAX_LIMIT, TlsConfig, invalid, is_http_url, listen_is_loopback};

/// `[authzen]` as written.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthzenFile {
    /// The HTTP listener, e.g. `127.0.0.1:8181`; empty: the face is off.
    pub listen: String,
    /// The public URL of the face, published by `/.well-known/authzen-configuration`;
    /// default `http://<listen>`.
    pub base_url: String,
    /// Connections open at once; beyond it a new one waits in the listen backlog. Default
    /// [`DEFAULT_MAX_CONNECTIONS`].
    pub max_connections: Option<u32>,
}

/// Default of `[authzen] max_connections`: each connection is a file descriptor the gRPC
/// listener shares, and may hold a body of up to `max_request_bytes` being read.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 1024;

/// The validated `[authzen]` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthzenConfig {
    pub listen: SocketAddr,
    /// Without a trailing `/`.
    pub base_url: String,
    pub max_connections: u32,
}

/// Checks `[authzen]` against the gRPC listeners and TLS. The face speaks plaintext HTTP
/// and sees no client certificate, so where the gRPC port is protected by TLS it may only
/// listen on loopback (a sidecar or local proxy terminates TLS), and never beside mutual
/// TLS, whose caller bindings it could not enforce.
pub(super) fn validate_authzen(
    file: AuthzenFile,
    tls: Option<&TlsConfig>,
    development: bool,
) -> Result<Option<AuthzenConfig>, ConfigError> {
    let listen = match file.listen.trim() {
        "" => return Ok(None),
        address => address.parse::<SocketAddr>().map_err(|_| {
            invalid(
                "authzen.listen",
                format!("{address:?} is not an address like 127.0.0.1:8181; empty: off"),
            )
        })?,
    };
    if let Some(tls) = tls {
        if tls.client_ca_file.is_some() {
            return Err(invalid(
                "authzen.listen",
                "the HTTP face has no client certificates, so it cannot honour mutual TLS and [[callers]]: use the gRPC API",
            ));
        }
        if !listen_is_loopback(&listen) {
            return Err(invalid(
                "authzen.listen",
                "the HTTP face is plaintext: with [tls] on the gRPC port, listen on loopback behind a proxy that terminates TLS",
            ));
        }
    }
    if development && !listen_is_loopback(&listen) {
        return Err(invalid(
            "authzen.listen",
            "the development configuration's signing key is public: listen on a loopback address, or pass --config",
        ));
    }
    let base_url = match file.base_url.trim().trim_end_matches('/') {
        "" => format!("http://{listen}"),
        url if is_http_url(url) => url.to_owned(),
        url => {
            return Err(invalid(
                "authzen.base_url",
                format!("{url:?} is not an http(s) URL"),
            ));
        }
    };
    let max_connections = match file.max_connections {
        None => DEFAULT_MAX_CONNECTIONS,
        Some(limit) if (1..=MAX_LIMIT).contains(&(limit as usize)) => limit,
        Some(_) => {
            return Err(invalid(
                "authzen.max_connections",
                format!("must be between 1 and {MAX_LIMIT}"),
            ));
        }
    };
    Ok(Some(AuthzenConfig {
        listen,
        base_url,
        max_connections,
    }))
}
