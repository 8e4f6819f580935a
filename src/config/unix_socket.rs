//! `unix_listen`: the gRPC API on a Unix domain socket, for a caller in the same pod or on
//! the same host (a sidecar Envoy, a co-located FHIR server). A local socket skips the TCP
//! stack on both sides, and the file's permissions say who may connect.

use std::path::PathBuf;

use super::{ConfigError, TlsConfig, invalid};

/// The longest `unix_listen`: Linux's `sun_path` holds 107 bytes and a final NUL, and the
/// socket is bound under the path plus `.new` before it is renamed into place.
const MAX_UNIX_PATH_BYTES: usize = 103;

/// Checks `unix_listen` (empty: none). The socket is plaintext: no network is crossed. It
/// carries no client certificate, so under mutual TLS (`[tls] client_ca_file`) every call
/// on it would be refused as a caller without one; that combination is a configuration
/// error rather than a listener that answers nothing but refusals.
pub(super) fn validate_unix_listen(
    path: &str,
    tls: Option<&TlsConfig>,
) -> Result<Option<PathBuf>, ConfigError> {
    if path.is_empty() {
        return Ok(None);
    }
    if path.trim() != path || path.ends_with('/') {
        return Err(invalid(
            "unix_listen",
            format!("{path:?} is not a socket file path like /run/smart-authz/grpc.sock"),
        ));
    }
    if path.len() > MAX_UNIX_PATH_BYTES {
        return Err(invalid(
            "unix_listen",
            format!(
                "{} bytes long; at most {MAX_UNIX_PATH_BYTES} (Linux's 107, less the `.new` the socket is bound under first)",
                path.len()
            ),
        ));
    }
    if tls.is_some_and(|tls| tls.client_ca_file.is_some()) {
        return Err(invalid(
            "unix_listen",
            "a Unix socket carries no client certificate, and [tls] client_ca_file requires one on every call: drop one of the two",
        ));
    }
    Ok(Some(PathBuf::from(path)))
}
