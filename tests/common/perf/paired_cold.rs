//! The cold path in paired rounds: new tokens into the shipped cache, full, each slice
//! between two raw verifications.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::Algorithm;

use super::keys::{COLD_ES256_FIRST, COLD_RS256_FIRST, FLOOD_FIRST, Keys, mint_many};
use super::load::ALLOW;
use super::options::Options;
use super::preencoded;
use super::report::Measured;
use super::requests::{CHECK_ACCESS, SEARCH, check_request};
use super::scenarios::{check_cached, check_cold, flood};
use super::server::{CacheState, Server};
use crate::median::median;

/// What the cache weighs an entry of these tokens at (docs/performance-log.md, "What the
/// profile shows", the shared case): a cache of `b` bytes holds about `b / 1,062` of them.
pub(super) const WEIGHED_ENTRY_BYTES: u64 = 1_062;

/// The rounds of [`paired_cold`] and the cache they ran against.
#[derive(Debug)]
pub struct ColdRounds {
    /// The cache's bound, the shipped default in a full measurement.
    pub cache_bytes: u64,
    /// The distinct tokens sent before the first round, to fill the cache.
    pub filled_with: u64,
    /// The cache after the filling, and after the last round.
    pub after_fill: CacheState,
    pub after_rounds: CacheState,
    pub rounds: Vec<ColdRound>,
}

/// One round of [`paired_cold`]: a cached call, then for RS256 and ES256 a slice of cold
/// calls between two raw verifications in this process.
#[derive(Debug)]
pub struct ColdRound {
    pub cached: Measured,
    pub rs256: ColdSlice,
    pub es256: ColdSlice,
}

/// Cold calls of one algorithm and the raw verification measured around them.
#[derive(Debug)]
pub struct ColdSlice {
    pub cold: Measured,
    /// µs per raw verification: the mean of the medians measured before and after.
    pub raw_us: f64,
}

impl ColdRound {
    /// What a cold call costs the server beyond this round's cached call, over one raw
    /// verification, RS256 then ES256 (the target: at most 1.3 each).
    pub fn ratios(&self) -> (f64, f64) {
        let beyond = |slice: &ColdSlice| {
            (slice.cold.server_cpu_us - self.cached.server_cpu_us) / slice.raw_us.max(1e-9)
        };
        (beyond(&self.rs256), beyond(&self.es256))
    }
}

/// `rounds` rounds of the cold path's measurement on one server: the cached call, and each
/// algorithm's cold calls (`options.cold_tokens` new tokens a round) with the raw
/// verification measured just before and after. A full report measures the three minutes
/// apart, and the machine's drift over minutes moved its ratio from 1.1 to 2.4; here each
/// round's ratio is taken from seconds of the same machine, and the median of the rounds is
/// reported. The cached call goes first in even rounds and last in odd ones, and the two
/// algorithms swap places from round to round.
///
/// The cache is the shipped one (its default bound; `memory_bound_bytes` in a smoke run)
/// and full before the first round: under a steady stream of new tokens that is where a
/// server stays, each new token evicting another or refused by the cache's admission. The
/// full report's cold scenarios run while a 1 GiB cache grows instead, and pay for the
/// growth (fresh pages, the hash table rehashed). The server serves its metrics, which say
/// the cache was full; their cost falls on the cached and the cold calls alike.
pub async fn paired_cold(
    binary: &Path,
    keys_dir: &Path,
    options: &Options,
    rounds: usize,
) -> ColdRounds {
    assert!(rounds > 0, "at least one round");
    let keys = Arc::new(Keys::load(keys_dir));
    let per_round = options.cold_tokens.max(1);
    let mut minted = Vec::new();
    for (algorithm, first) in [
        (Algorithm::RS256, COLD_RS256_FIRST),
        (Algorithm::ES256, COLD_ES256_FIRST),
    ] {
        let all = mint_many(&keys, algorithm, first, per_round * rounds).await;
        let slices: Vec<Arc<Vec<String>>> = all
            .chunks(per_round)
            .map(|chunk| Arc::new(chunk.to_vec()))
            .collect();
        minted.push(slices);
    }
    let cache_bytes = if options.measures() {
        smart_authz::config::CacheConfig::default().max_bytes
    } else {
        options.memory_bound_bytes
    };
    // Half as many again as the cache holds.
    let fill_count = usize::try_from(cache_bytes * 3 / 2 / WEIGHED_ENTRY_BYTES).unwrap();
    let fill = mint_many(&keys, Algorithm::ES256, FLOOD_FIRST, fill_count).await;
    let (server, links) = Server::with_cache(binary, &keys, options, cache_bytes, true).await;
    let pid = server.pid();
    let filled = flood("fill", &links, fill, options, pid).await;
    assert_eq!(
        filled.errors, 0,
        "every token filling the cache is accepted"
    );
    assert_eq!(
        filled.calls, fill_count as u64,
        "every filling token is sent"
    );
    let token = keys.mint(Algorithm::RS256, 0);
    let request = check_request(&token, SEARCH, None);
    // moka applies its pending writes, and updates the counts the metrics read, on a
    // later operation once a moment has passed: this call is that operation.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let body = preencoded::encode(&request);
    assert!(preencoded::call(&links[0], CHECK_ACCESS, &body, ALLOW).await);
    let after_fill = server.cache_state().await;
    let mut measured = Vec::with_capacity(rounds);
    for (round, (rs256_tokens, es256_tokens)) in minted[0].iter().zip(&minted[1]).enumerate() {
        let cached_first = round % 2 == 0;
        let mut cached = None;
        if cached_first {
            cached = Some(check_cached(&links, &request, options, pid).await);
        }
        let mut algorithms = [
            ("cold_rs256", Algorithm::RS256, rs256_tokens),
            ("cold_es256", Algorithm::ES256, es256_tokens),
        ];
        if round % 2 == 1 {
            algorithms.reverse();
        }
        let (mut rs256, mut es256) = (None, None);
        for (name, algorithm, tokens) in algorithms {
            let before = keys.raw_verify_us(algorithm, options.raw_rounds());
            let cold = check_cold(name, &links, Arc::clone(tokens), options, pid).await;
            let after = keys.raw_verify_us(algorithm, options.raw_rounds());
            let slice = ColdSlice {
                cold,
                raw_us: (before + after) / 2.0,
            };
            match algorithm {
                Algorithm::RS256 => rs256 = Some(slice),
                _ => es256 = Some(slice),
            }
        }
        if !cached_first {
            cached = Some(check_cached(&links, &request, options, pid).await);
        }
        let (Some(cached), Some(rs256), Some(es256)) = (cached, rs256, es256) else {
            unreachable!("each slice runs once per round")
        };
        measured.push(ColdRound {
            cached,
            rs256,
            es256,
        });
    }
    let after_rounds = server.cache_state().await;
    server.stop().await;
    ColdRounds {
        cache_bytes,
        filled_with: filled.calls,
        after_fill,
        after_rounds,
        rounds: measured,
    }
}

/// The rounds of [`paired_cold`], one line each, then the medians of the ratios.
pub fn paired_cold_table(cold: &ColdRounds) -> String {
    let state = |state: &CacheState| {
        format!(
            "{:.0} entries weighing {:.0} KiB, {:.0} evicted or refused",
            state.entries,
            state.weighed_bytes / 1024.0,
            state.evictions
        )
    };
    let mut table = format!(
        "the token cache bounded at {} KiB; after {} distinct tokens: {}; after the rounds: {}\n",
        cold.cache_bytes / 1024,
        cold.filled_with,
        state(&cold.after_fill),
        state(&cold.after_rounds)
    );
    table.push_str(&format!(
        "{:>5} {:>10} {:>5} {:>10} {:>5} {:>8} {:>6} {:>10} {:>5} {:>8} {:>6}\n",
        "round",
        "cached µs",
        "busy",
        "RS256 µs",
        "busy",
        "raw µs",
        "ratio",
        "ES256 µs",
        "busy",
        "raw µs",
        "ratio"
    ));
    let (mut rs256, mut es256) = (Vec::new(), Vec::new());
    let mut cached_busy = Vec::new();
    for (number, round) in cold.rounds.iter().enumerate() {
        let (rs256_ratio, es256_ratio) = round.ratios();
        rs256.push(rs256_ratio);
        es256.push(es256_ratio);
        cached_busy.push(round.cached.server_busy());
        table.push_str(&format!(
            "{:>5} {:>10.1} {:>5.2} {:>10.1} {:>5.2} {:>8.1} {:>6.2} {:>10.1} {:>5.2} {:>8.1} {:>6.2}\n",
            number + 1,
            round.cached.server_cpu_us,
            round.cached.server_busy(),
            round.rs256.cold.server_cpu_us,
            round.rs256.cold.server_busy(),
            round.rs256.raw_us,
            rs256_ratio,
            round.es256.cold.server_cpu_us,
            round.es256.cold.server_busy(),
            round.es256.raw_us,
            es256_ratio,
        ));
    }
    table.push_str(&format!(
        "median of {} rounds: a cold call beyond a cached one, over one raw verification: RS256 {:.2}×, ES256 {:.2}× (target ≤ 1.3); the cached slice's median busy {:.2} (under 1, its µs are high and the ratios low)\n",
        cold.rounds.len(),
        median(&mut rs256),
        median(&mut es256),
        median(&mut cached_busy)
    ));
    table
}
