//! The `[cache]` section: the bound and lifetimes of the token cache.

use serde::{Deserialize, Serialize};

use super::{ConfigError, invalid};

/// The token cache, shared by locally verified JWTs and introspected tokens.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Bound of the cache, in approximate bytes of its entries (claims and strings).
    pub max_bytes: u64,
    /// Longest a locally verified JWT is kept, even if its `exp` is later.
    pub max_ttl_secs: u64,
    /// Longest an introspected token is kept: a revocation at the issuer is seen within
    /// this bound.
    pub introspection_max_ttl_secs: u64,
    /// How long a refused token (invalid, inactive) is remembered, so a flood of bad tokens
    /// does not reach the issuer; 0 disables negative caching.
    pub negative_ttl_secs: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            max_bytes: 64 * 1024 * 1024,
            max_ttl_secs: 300,
            introspection_max_ttl_secs: 300,
            negative_ttl_secs: 10,
        }
    }
}

/// Least cache size accepted: a few entries.
const MIN_CACHE_BYTES: u64 = 4096;

pub(super) fn validate_cache(cache: &CacheConfig) -> Result<(), ConfigError> {
    if cache.max_bytes < MIN_CACHE_BYTES {
        return Err(invalid(
            "cache.max_bytes",
            format!("must be at least {MIN_CACHE_BYTES}"),
        ));
    }
    if cache.max_ttl_secs == 0 {
        return Err(invalid("cache.max_ttl_secs", "must be at least 1"));
    }
    if cache.introspection_max_ttl_secs == 0 {
        return Err(invalid(
            "cache.introspection_max_ttl_secs",
            "must be at least 1",
        ));
    }
    Ok(())
}
