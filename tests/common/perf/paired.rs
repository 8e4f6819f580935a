//! Paired rounds: the floor, the floor carrying the token, the cached call and the working
//! set in alternating slices on one server, so each ratio comes from seconds of the same
//! machine.

use std::path::Path;
use std::sync::Arc;

use jsonwebtoken::Algorithm;

use super::keys::Keys;
use super::options::Options;
use super::report::Measured;
use super::requests::{SEARCH, check_request};
use super::scenarios::{
    check_cached, check_working_set, health_floor, health_token_bytes, working_set,
};
use super::server::Server;
use crate::median::median;

/// One round of [`paired`]: the floor, the floor carrying the token's bytes, the cached
/// call and the working set, measured one after the other on the same server.
#[derive(Debug)]
pub struct Round {
    pub floor: Measured,
    pub floor_with_token: Measured,
    pub cached: Measured,
    pub working_set: Measured,
}

impl Round {
    /// Each slice's throughput over the floor's: the floor with the token, the cached call,
    /// the working set.
    pub(super) fn ratios(&self) -> [f64; 3] {
        let floor = self.floor.rate().max(1e-9);
        [&self.floor_with_token, &self.cached, &self.working_set].map(|slice| slice.rate() / floor)
    }
}

/// `rounds` rounds of the floor, the floor carrying the token's bytes, the cached
/// `CheckAccess` and the working set of `options.working_set` cached tokens, each slice
/// bounded by `options`, on one server: the ratios with the machine's drift over seconds
/// taken out. The order turns from round to round (each slice takes each place once in
/// four rounds: ask for a multiple of four for an even share), so no slice always meets a
/// warmer machine.
pub async fn paired(
    binary: &Path,
    keys_dir: &Path,
    options: &Options,
    rounds: usize,
) -> Vec<Round> {
    let keys = Arc::new(Keys::load(keys_dir));
    let (server, links) = Server::for_scenarios(binary, &keys, options).await;
    let pid = server.pid();
    let token = keys.mint(Algorithm::RS256, 0);
    let request = check_request(&token, SEARCH, None);
    let set = working_set(&links, &keys, options, pid).await;
    let mut measured = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let mut slices: [Option<Measured>; 4] = [None, None, None, None];
        for step in 0..4 {
            let slice = (round + step) % 4;
            slices[slice] = Some(match slice {
                0 => health_floor(&links, options, pid).await,
                1 => health_token_bytes(&links, token.len(), options, pid).await,
                2 => check_cached(&links, &request, options, pid).await,
                _ => check_working_set(&links, Arc::clone(&set), options, pid).await,
            });
        }
        let [
            Some(floor),
            Some(floor_with_token),
            Some(cached),
            Some(working_set),
        ] = slices
        else {
            unreachable!("each of the four slices runs once per round")
        };
        measured.push(Round {
            floor,
            floor_with_token,
            cached,
            working_set,
        });
    }
    server.stop().await;
    measured
}

/// The rounds of [`paired`], one line each, then the medians of the ratios: by throughput
/// (what the target reads) and, for the cached call, by the server's CPU per call.
pub fn paired_table(rounds: &[Round]) -> String {
    let mut table = format!(
        "{:>5} {:>9} {:>9} {:>9} {:>9} {:>6} {:>6} {:>6} {:>9} {:>9} {:>10} {:>7} {:>6} {:>10} {:>11}\n",
        "round",
        "floor/s",
        "token/s",
        "cached/s",
        "10k/s",
        "token",
        "cached",
        "10k",
        "floor µs",
        "token µs",
        "cached µs",
        "10k µs",
        "by CPU",
        "floor p99",
        "cached p99"
    );
    let mut ratios: [Vec<f64>; 3] = Default::default();
    let mut by_cpu = Vec::new();
    let mut busy: [Vec<f64>; 4] = Default::default();
    for (number, round) in rounds.iter().enumerate() {
        let [token, cached, set] = round.ratios();
        for (ratio, all) in [token, cached, set].into_iter().zip(ratios.iter_mut()) {
            all.push(ratio);
        }
        let cpu = round.floor.server_cpu_us / round.cached.server_cpu_us.max(1e-9);
        by_cpu.push(cpu);
        let slices = [
            &round.floor,
            &round.floor_with_token,
            &round.cached,
            &round.working_set,
        ];
        for (slice, busy) in slices.into_iter().zip(busy.iter_mut()) {
            busy.push(slice.server_busy());
        }
        table.push_str(&format!(
            "{:>5} {:>9.0} {:>9.0} {:>9.0} {:>9.0} {:>6.2} {:>6.2} {:>6.2} {:>9.1} {:>9.1} {:>10.1} {:>7.1} {:>6.2} {:>10} {:>11}\n",
            number + 1,
            round.floor.rate(),
            round.floor_with_token.rate(),
            round.cached.rate(),
            round.working_set.rate(),
            token,
            cached,
            set,
            round.floor.server_cpu_us,
            round.floor_with_token.server_cpu_us,
            round.cached.server_cpu_us,
            round.working_set.server_cpu_us,
            cpu,
            round.floor.p99_us,
            round.cached.p99_us
        ));
    }
    let [with_token, by_rate, working_set] = &mut ratios;
    table.push_str(&format!(
        "median of {} rounds: cached CheckAccess {:.2} of the floor by throughput, {:.2} by server CPU; the working set {:.2}; the floor carrying the token's bytes {:.2}\n",
        rounds.len(),
        median(by_rate),
        median(&mut by_cpu),
        median(working_set),
        median(with_token)
    ));
    let [floor_busy, token_busy, cached_busy, set_busy] = &mut busy;
    table.push_str(&format!(
        "server busy (medians; well under 1, the load generator was the limit): floor {:.2}, carrying the token {:.2}, cached {:.2}, the working set {:.2}\n",
        median(floor_busy),
        median(token_busy),
        median(cached_busy),
        median(set_busy)
    ));
    table
}
