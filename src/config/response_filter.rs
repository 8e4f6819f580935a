//! The `[response_filter]` section: enforcement on the way back (`FilterResources`, Envoy's
//! ext_proc face, docs/response-filtering.md).

use serde::{Deserialize, Serialize};

use super::{ConfigError, invalid};

/// `[response_filter]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResponseFilterConfig {
    /// Largest answer body that is filtered, in bytes. A larger answer is refused (HTTP 502
    /// on the ext_proc face, RESOURCE_EXHAUSTED on `FilterResources`), never passed unread.
    pub max_body_bytes: usize,
}

impl Default for ResponseFilterConfig {
    fn default() -> Self {
        ResponseFilterConfig {
            max_body_bytes: 3 * 1024 * 1024,
        }
    }
}

/// The body travels inside one gRPC message (a `ProcessingRequest`, a
/// `FilterResourcesRequest`), so it must leave room in `max_request_bytes` for the rest.
pub(super) fn validate_response_filter(
    filter: &ResponseFilterConfig,
    max_request_bytes: usize,
) -> Result<(), ConfigError> {
    if filter.max_body_bytes < 1024 {
        return Err(invalid(
            "response_filter.max_body_bytes",
            "must be at least 1024",
        ));
    }
    if filter.max_body_bytes >= max_request_bytes {
        return Err(invalid(
            "response_filter.max_body_bytes",
            format!(
                "must be below max_request_bytes ({max_request_bytes}): the body arrives inside one gRPC message"
            ),
        ));
    }
    Ok(())
}
