//! The verified-token cache: a signature check costs ~30-80 µs, a hit ~1 µs, and a client
//! sends the same access token with every request until it expires.
//!
//! Entries are keyed by the SHA-256 of the token, so the cache never holds a usable
//! credential, and live until the token's `exp` (RFC 7519 §4.1.4) or `max_ttl_secs`,
//! whichever comes first, so a revoked key or changed configuration is noticed within
//! `max_ttl_secs`. Refusals are never cached.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use moka::Expiry;
use sha2::{Digest, Sha256};

use super::VerifiedToken;
use crate::config::CacheConfig;

/// The cache key: SHA-256 of the token's bytes, never the token itself.
pub type TokenKey = [u8; 32];

/// The key of `token` in the cache.
pub fn token_key(token: &str) -> TokenKey {
    Sha256::digest(token.as_bytes()).into()
}

/// The first 8 hex digits of a token key: enough to correlate log lines about one token,
/// useless for replaying it.
pub fn token_fingerprint(key: &TokenKey) -> String {
    key[..4].iter().map(|byte| format!("{byte:02x}")).collect()
}

/// How long a verified token may stay cached: until its `exp`, capped by `max_ttl`, and not
/// at all once expired. A token without `exp` (possible from introspection) gets `max_ttl`.
pub fn time_to_keep(expires_at: Option<i64>, now: SystemTime, max_ttl: Duration) -> Duration {
    let Some(expires_at) = expires_at else {
        return max_ttl;
    };
    let Ok(expires_at) = u64::try_from(expires_at) else {
        return Duration::ZERO;
    };
    let expiry = UNIX_EPOCH + Duration::from_secs(expires_at);
    expiry
        .duration_since(now)
        .unwrap_or(Duration::ZERO)
        .min(max_ttl)
}

/// Per-entry expiry for moka: [`time_to_keep`] at insertion, unchanged by reads.
#[derive(Clone, Copy, Debug)]
pub struct TokenExpiry {
    /// The cap from `CacheConfig::max_ttl_secs`.
    pub max_ttl: Duration,
}

impl Expiry<TokenKey, Arc<VerifiedToken>> for TokenExpiry {
    fn expire_after_create(
        &self,
        _key: &TokenKey,
        token: &Arc<VerifiedToken>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(time_to_keep(
            token.expires_at,
            SystemTime::now(),
            self.max_ttl,
        ))
    }
}

/// Verified tokens by [`TokenKey`].
#[derive(Clone, Debug)]
pub struct TokenCache {
    entries: moka::future::Cache<TokenKey, Arc<VerifiedToken>>,
}

impl TokenCache {
    /// An empty cache bounded by `config.max_entries`.
    pub fn new(config: &CacheConfig) -> Self {
        let entries = moka::future::Cache::builder()
            .max_capacity(config.max_entries)
            .expire_after(TokenExpiry {
                max_ttl: Duration::from_secs(config.max_ttl_secs),
            })
            .build();
        TokenCache { entries }
    }

    /// The cached token for `key`, or the result of `verify` (cached when it succeeds).
    /// Concurrent callers with one uncached key share one `verify`. The flag is true when
    /// the value was not produced by this call's `verify`.
    pub async fn get_or_verify<E>(
        &self,
        key: &TokenKey,
        verify: impl Future<Output = Result<Arc<VerifiedToken>, E>>,
    ) -> Result<(Arc<VerifiedToken>, bool), E>
    where
        E: Clone + Send + Sync + 'static,
    {
        let entry = self
            .entries
            .entry_by_ref(key)
            .or_try_insert_with(verify)
            .await
            .map_err(Arc::unwrap_or_clone)?;
        let cached = !entry.is_fresh();
        Ok((entry.into_value(), cached))
    }

    /// Approximate number of cached tokens (moka updates it lazily), for metrics.
    pub fn entry_count(&self) -> u64 {
        self.entries.entry_count()
    }

    /// Applies pending evictions and counts, so `entry_count` is exact (tests, shutdown).
    pub async fn run_pending_tasks(&self) {
        self.entries.run_pending_tasks().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: Duration = Duration::from_secs(300);

    #[test]
    fn keeps_until_exp_capped_by_max_ttl() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(
            time_to_keep(Some(1_000_002), now, MAX),
            Duration::from_secs(2)
        );
        assert_eq!(time_to_keep(Some(1_000_000 + 10_000), now, MAX), MAX);
        assert_eq!(time_to_keep(Some(999_990), now, MAX), Duration::ZERO);
        assert_eq!(time_to_keep(Some(-1), now, MAX), Duration::ZERO);
        assert_eq!(time_to_keep(None, now, MAX), MAX);
        let between_seconds = now + Duration::from_millis(400);
        assert_eq!(
            time_to_keep(Some(1_000_001), between_seconds, MAX),
            Duration::from_millis(600)
        );
    }

    #[test]
    fn keys_are_hashes_not_tokens() {
        let key = token_key("abc");
        assert_eq!(token_fingerprint(&key), "ba7816bf");
        assert_ne!(token_key("abd"), key);
    }
}
