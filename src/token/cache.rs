//! The token cache, shared by both paths: a signature check costs ~30-80 µs and an
//! introspection a network round trip, a hit ~1 µs, and a client sends the same access token
//! with every request until it expires.
//!
//! Entries are keyed by the SHA-256 of the token, so the cache never holds a usable
//! credential. An accepted token ([`CachedVerdict::Active`]) lives until its `exp`
//! (RFC 7519 §4.1.4) or the maximum TTL of its path, whichever comes first: `max_ttl_secs`
//! for local JWTs (a changed configuration is noticed within it; a token verified with a key
//! since withdrawn from its issuer's set is judged again, [`super::jwks::KeysSeen`]),
//! `introspection_max_ttl_secs` for introspected tokens (a revocation at the issuer is seen
//! within it, RFC 7662 §4). A refused token ([`CachedVerdict::Refused`]) lives
//! `negative_ttl_secs`, so a flood of bad tokens reaches neither the CPU-heavy verification
//! nor the issuer. "Could not judge" ([`super::AuthError::Unavailable`]) is never cached.
//!
//! The cache is bounded by approximate bytes ([`verdict_weight`]), not entry count, since an
//! entry's claims can be anywhere from a few hundred bytes to tens of kilobytes.

use std::mem::size_of;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use moka::Expiry;
use moka::notification::RemovalCause;
use sha2::{Digest, Sha256};

use super::{TokenError, TokenSource, VerifiedToken};
use crate::config::CacheConfig;
use crate::smart::{FilterItem, ResourceSelector, Scope, ScopeError, ScopeSet, TokenContext};

/// The cache key: SHA-256 of the token's bytes, never the token itself.
pub type TokenKey = [u8; 32];

/// The key of `token` in the cache.
pub fn token_key(token: &str) -> TokenKey {
    Sha256::digest(token.as_bytes()).into()
}

/// The first 8 hex digits of a token key: enough to correlate log lines about one token,
/// useless for replaying it.
pub fn token_fingerprint(key: &TokenKey) -> String {
    super::TokenFingerprint::of(key).to_string()
}

/// What the cache remembers about one token.
#[derive(Clone, Debug)]
pub enum CachedVerdict {
    /// The token was accepted: shared, so a hit costs one `Arc` clone.
    Active(Arc<VerifiedToken>),
    /// The token was judged and refused (invalid, expired, inactive): negative caching.
    Refused(TokenError),
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

/// Per-entry expiry for moka: [`TokenExpiry::time_to_live`] at insertion, unchanged by reads.
#[derive(Clone, Copy, Debug)]
pub struct TokenExpiry {
    /// Cap for locally verified JWTs (`max_ttl_secs`).
    pub local_max_ttl: Duration,
    /// Cap for introspected tokens (`introspection_max_ttl_secs`).
    pub introspection_max_ttl: Duration,
    /// Lifetime of a refusal (`negative_ttl_secs`).
    pub negative_ttl: Duration,
}

impl TokenExpiry {
    /// The expiry rules of `config`.
    pub fn from_config(config: &CacheConfig) -> Self {
        TokenExpiry {
            local_max_ttl: Duration::from_secs(config.max_ttl_secs),
            introspection_max_ttl: Duration::from_secs(config.introspection_max_ttl_secs),
            negative_ttl: Duration::from_secs(config.negative_ttl_secs),
        }
    }

    /// How long `verdict`, cached at `now`, stays: an accepted token until its `exp` capped
    /// by the maximum TTL of the path that accepted it; a refusal for the negative TTL.
    pub fn time_to_live(&self, verdict: &CachedVerdict, now: SystemTime) -> Duration {
        match verdict {
            CachedVerdict::Active(token) => {
                let max_ttl = match token.source {
                    TokenSource::LocalJwt => self.local_max_ttl,
                    TokenSource::RemoteIntrospection => self.introspection_max_ttl,
                };
                time_to_keep(token.expires_at, now, max_ttl)
            }
            CachedVerdict::Refused(_) => self.negative_ttl,
        }
    }
}

impl Expiry<TokenKey, CachedVerdict> for TokenExpiry {
    fn expire_after_create(
        &self,
        _key: &TokenKey,
        verdict: &CachedVerdict,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(self.time_to_live(verdict, SystemTime::now()))
    }
}

/// Bytes moka spends per entry beyond what the value points to: the key's `Arc`, the value
/// entry with the verdict inline, its access-order, write-order and timer nodes, and its
/// share of the hash table; measured by `tests/cache_memory.rs` (moka 0.12).
const ENTRY_OVERHEAD: usize = 470;

/// What glibc's malloc spends for `size` bytes: an 8-byte header, rounded up to 16, at
/// least 32; nothing for an empty buffer, which allocates nothing. The service's binary
/// allocates with mimalloc, whose size classes spend less on these entries overall (903
/// bytes per cached token against glibc's 1,024, docs/performance-log.md), so there the bound
/// is met with room to spare; glibc is the allocator of whoever embeds the library.
fn allocation(size: usize) -> usize {
    if size == 0 {
        0
    } else {
        (size + 8).next_multiple_of(16).max(32)
    }
}

/// The memory one cached verdict holds, in bytes: moka's entry and every heap allocation
/// the verdict owns, each counted as malloc spends it. Computed once, at insertion; the
/// cache's `max_bytes` bound is a bound on these sums, and `tests/cache_memory.rs` checks
/// them against a counting allocator, so the bound an operator sets is the memory used.
pub fn verdict_weight(verdict: &CachedVerdict) -> u32 {
    let bytes = ENTRY_OVERHEAD
        + match verdict {
            CachedVerdict::Active(token) => {
                // The `Arc`'s allocation: two counters and the token.
                allocation(2 * size_of::<usize>() + size_of::<VerifiedToken>())
                    + context_bytes(&token.context)
                    + scopes_bytes(&token.context.scopes)
                    + token.claims.heap_bytes(allocation)
                    + allocation(token.issuer.len())
                    + allocation(token.audiences.len() * size_of::<String>())
                    + token
                        .audiences
                        .iter()
                        .map(|audience| allocation(audience.len()))
                        .sum::<usize>()
            }
            CachedVerdict::Refused(error) => allocation(refusal_text_bytes(error)),
        };
    u32::try_from(bytes).unwrap_or(u32::MAX)
}

fn refusal_text_bytes(error: &TokenError) -> usize {
    match error {
        TokenError::Malformed(text) | TokenError::BadSignature(text) => text.len(),
        TokenError::WrongIssuer(issuer) => issuer.len(),
        _ => 0,
    }
}

/// A token's parsed scopes: in full for the token that brought them, nothing more for the
/// tokens that share them (`token::shared_scopes`), whose `Arc` holds a second count.
fn scopes_bytes(scopes: &Arc<ScopeSet>) -> usize {
    if Arc::strong_count(scopes) > 1 {
        return 0;
    }
    let entries = scopes.entries();
    allocation(2 * size_of::<usize>() + size_of::<ScopeSet>())
        + allocation(size_of_val(entries))
        + allocation(scopes.scope_string().len())
        + entries
            .iter()
            .map(|entry| allocation(entry.text.len()) + scope_bytes(&entry.parsed))
            .sum::<usize>()
}

/// The launch context's own texts (the scopes are weighed apart).
fn context_bytes(context: &TokenContext) -> usize {
    let texts = [
        &context.patient,
        &context.patient_url,
        &context.encounter,
        &context.fhir_user,
        &context.client_id,
        &context.sub,
    ];
    texts
        .iter()
        .filter_map(|text| text.as_ref())
        .map(|text| allocation(text.len()))
        .sum::<usize>()
}

/// The heap a parsed scope holds: its resource type and granular filter, or its name.
fn scope_bytes(parsed: &Result<Scope, ScopeError>) -> usize {
    match parsed {
        Ok(Scope::Resource(scope)) => {
            let resource = match &scope.resource {
                ResourceSelector::Type(name) => allocation(name.len()),
                ResourceSelector::All => 0,
            };
            let filter: usize = scope
                .filter
                .iter()
                .map(|item| {
                    allocation(item.param.len())
                        + allocation(item.values.len() * size_of::<String>())
                        + item
                            .values
                            .iter()
                            .map(|value| allocation(value.len()))
                            .sum::<usize>()
                })
                .sum();
            resource + allocation(scope.filter.len() * size_of::<FilterItem>()) + filter
        }
        Ok(
            Scope::Identity(name)
            | Scope::Launch(name)
            | Scope::Refresh(name)
            | Scope::Extension(name),
        ) => allocation(name.len()),
        Err(_) => 0,
    }
}

/// A snapshot of the cache's counters, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Answers served without verifying or introspecting: cached entries, and callers that
    /// waited for a concurrent caller's verification of the same token.
    pub hits: u64,
    /// Of the hits, those that were a cached refusal (negative caching at work).
    pub negative_hits: u64,
    /// Answers that needed a verification or introspection by this call, or that failed
    /// with "unavailable".
    pub misses: u64,
    /// Entries evicted to stay within `max_bytes`.
    pub evictions: u64,
    /// Entries dropped at their expiry (`exp`, maximum TTL or negative TTL).
    pub expirations: u64,
    /// Entries in the cache (moka updates it lazily).
    pub entry_count: u64,
    /// Their approximate size in bytes ([`verdict_weight`]), bounded by `max_bytes`.
    pub weighted_size: u64,
}

/// How moka hashes a key to find its slot. A key is a SHA-256 digest, already uniform, so the
/// standard library's SipHash (about 270 instructions a look-up) buys nothing that foldhash
/// with a per-process random seed does not (a few dozen): no one outside the process can
/// aim tokens at one slot without knowing the seed.
type KeyHasher = foldhash::fast::RandomState;

#[derive(Debug, Default)]
struct Counters {
    hits: AtomicU64,
    negative_hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
    expirations: AtomicU64,
}

/// Verdicts by [`TokenKey`], for both verification paths.
#[derive(Clone, Debug)]
pub struct TokenCache {
    entries: moka::future::Cache<TokenKey, CachedVerdict, KeyHasher>,
    counters: Arc<Counters>,
}

impl TokenCache {
    /// An empty cache bounded by `config.max_bytes`, with the TTLs of `config`.
    pub fn new(config: &CacheConfig) -> Self {
        let counters = Arc::new(Counters::default());
        let listener_counters = Arc::clone(&counters);
        let entries = moka::future::Cache::builder()
            .max_capacity(config.max_bytes)
            .weigher(|_key, verdict| verdict_weight(verdict))
            .expire_after(TokenExpiry::from_config(config))
            .eviction_listener(move |_key, _verdict, cause| {
                let counter = match cause {
                    RemovalCause::Size => &listener_counters.evictions,
                    RemovalCause::Expired => &listener_counters.expirations,
                    RemovalCause::Explicit | RemovalCause::Replaced => return,
                };
                counter.fetch_add(1, Ordering::Relaxed);
            })
            .build_with_hasher(KeyHasher::default());
        TokenCache { entries, counters }
    }

    /// The cached verdict for `key`, or the result of `verify` (cached whether it accepts
    /// or refuses; an `Err`, i.e. "could not judge", is not cached). Concurrent callers with
    /// one uncached key share one `verify`. A cached refusal comes back as `Err`. The flag
    /// is true when the answer was not produced by this call's `verify`.
    ///
    /// A hit is a hash-table lookup and an `Arc` clone: `verify` is only polled on a miss,
    /// so hits never wait on the network, the introspection semaphore or a key reload.
    pub async fn get_or_verify<E, F, V>(
        &self,
        key: &TokenKey,
        verify: F,
    ) -> Result<(Arc<VerifiedToken>, bool), E>
    where
        F: Fn() -> V,
        V: Future<Output = Result<CachedVerdict, E>>,
        E: From<TokenError> + Clone + Send + Sync + 'static,
    {
        // The hot path: a plain lookup, without the single-flight machinery of `entry`. Its
        // future is boxed: moka's lookup future is 752 bytes, which every future above it
        // would otherwise carry and copy on every call; the box is one allocation.
        match Box::pin(self.entries.get(key)).await {
            Some(CachedVerdict::Active(token)) if !token.keys_still_held() => {
                // Verified with a key since withdrawn: judged again, never served.
                self.entries.invalidate(key).await;
            }
            Some(verdict) => {
                self.counters.hits.fetch_add(1, Ordering::Relaxed);
                return match verdict {
                    CachedVerdict::Active(token) => Ok((token, true)),
                    CachedVerdict::Refused(error) => {
                        self.counters.negative_hits.fetch_add(1, Ordering::Relaxed);
                        Err(E::from(error))
                    }
                };
            }
            None => {}
        }
        // The miss path is boxed: its futures (a verification that may fetch keys or
        // introspect over HTTP, moka's single-flight entry) run to kilobytes, and a hit must
        // neither carry nor copy them (a profile showed those copies at 12% of a cached call).
        let answer = Box::pin(self.verify_and_insert(key, verify())).await;
        match answer {
            // Another call's verification, under way when a key of its issuer went, inserted
            // or shared: judged again. One of this call's own is its answer, as for any call
            // in flight at that moment.
            Ok((token, true)) if !token.keys_still_held() => {
                self.entries.invalidate(key).await;
                Box::pin(self.verify_and_insert(key, verify())).await
            }
            answer => answer,
        }
    }

    async fn verify_and_insert<E>(
        &self,
        key: &TokenKey,
        verify: impl Future<Output = Result<CachedVerdict, E>>,
    ) -> Result<(Arc<VerifiedToken>, bool), E>
    where
        E: From<TokenError> + Clone + Send + Sync + 'static,
    {
        let entry = match self
            .entries
            .entry_by_ref(key)
            .or_try_insert_with(verify)
            .await
        {
            Ok(entry) => entry,
            Err(error) => {
                self.counters.misses.fetch_add(1, Ordering::Relaxed);
                return Err(Arc::unwrap_or_clone(error));
            }
        };
        let cached = !entry.is_fresh();
        let counter = if cached {
            &self.counters.hits
        } else {
            &self.counters.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        match entry.into_value() {
            CachedVerdict::Active(token) => Ok((token, cached)),
            CachedVerdict::Refused(error) => {
                if cached {
                    self.counters.negative_hits.fetch_add(1, Ordering::Relaxed);
                }
                Err(E::from(error))
            }
        }
    }

    /// Approximate number of cached tokens (moka updates it lazily), for metrics.
    pub fn entry_count(&self) -> u64 {
        self.entries.entry_count()
    }

    /// The counters and sizes now.
    pub fn stats(&self) -> CacheStats {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        CacheStats {
            hits: load(&self.counters.hits),
            negative_hits: load(&self.counters.negative_hits),
            misses: load(&self.counters.misses),
            evictions: load(&self.counters.evictions),
            expirations: load(&self.counters.expirations),
            entry_count: self.entries.entry_count(),
            weighted_size: self.entries.weighted_size(),
        }
    }

    /// Applies pending evictions and counts, so `entry_count` is exact (tests, shutdown).
    pub async fn run_pending_tasks(&self) {
        self.entries.run_pending_tasks().await;
    }
}

#[cfg(test)]
mod tests;
