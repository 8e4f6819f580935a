//! The `[response_filter]` section: enforcement on the way back (`FilterResources`, Envoy's
//! ext_proc face, docs/response-filtering.md).

use serde::{Deserialize, Serialize};

use super::{ConfigError, invalid};

/// Default largest answer filtered, when `max_request_bytes` leaves room for it.
pub const DEFAULT_MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// `[response_filter]` as written.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResponseFilterFile {
    /// Largest answer body that is filtered, in bytes. A larger answer is refused (HTTP 502
    /// on the ext_proc face, RESOURCE_EXHAUSTED on `FilterResources`), never passed unread.
    /// Default: 3 MiB, or three quarters of `max_request_bytes` when that is smaller.
    pub max_body_bytes: Option<usize>,
    /// On the ext_proc face, answer a read of a resource the token may not read as the FHIR
    /// server's own "not found" is answered: one `404` for both, so the answer does not say
    /// the resource exists (RFC 9110 §15.5.4). Off by default: a `403` says why.
    pub hide_existence: bool,
}

/// The validated `[response_filter]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponseFilterConfig {
    pub max_body_bytes: usize,
    pub hide_existence: bool,
}

/// The body travels inside one gRPC message (a `ProcessingRequest`, a
/// `FilterResourcesRequest`), so it must leave room in `max_request_bytes` for the rest.
pub(super) fn validate_response_filter(
    file: &ResponseFilterFile,
    max_request_bytes: usize,
) -> Result<ResponseFilterConfig, ConfigError> {
    let hide_existence = file.hide_existence;
    let Some(max_body_bytes) = file.max_body_bytes else {
        return Ok(ResponseFilterConfig {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES.min(max_request_bytes / 4 * 3),
            hide_existence,
        });
    };
    if max_body_bytes < 1024 {
        return Err(invalid(
            "response_filter.max_body_bytes",
            "must be at least 1024",
        ));
    }
    if max_body_bytes >= max_request_bytes {
        return Err(invalid(
            "response_filter.max_body_bytes",
            format!(
                "must be below max_request_bytes ({max_request_bytes}): the body arrives inside one gRPC message"
            ),
        ));
    }
    Ok(ResponseFilterConfig {
        max_body_bytes,
        hide_existence,
    })
}
