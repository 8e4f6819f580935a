//! The memory of the JSON trees a call parses (a resource it carries, the body Envoy
//! forwards, an AuthZEN request, a FHIR server's answer), counted against the same budget
//! as the bytes they are read from, `max_buffered_request_bytes`.
//!
//! A tree is many times its bytes: 10 to 18 times for FHIR resources, up to 90 times for a
//! document built for it (`fhir::parse_strict_within`). Counting only the bytes let four
//! bodies of 4 MiB, each one array of zeros, hold 438 MB (docs/performance-log.md,
//! "Memory of parsed resources"). The parse asks for the tree's memory as it grows; what
//! the budget has not free refuses the call as the bytes would (retry later), and a tree
//! that with what the call holds would go beyond the whole budget refuses it as too large
//! (no retry gets it through).

use tokio::sync::OwnedSemaphorePermit;

use super::{Capacity, Refusal};
use crate::fhir::TreeMemory;
use crate::telemetry;

/// What one entry of a request of many takes once it is read and decided, beside the
/// message or tree it came from: its parsed request and its decision, whose grants name the
/// scopes they come from. 1.8 KB for a search decided for a patient's token
/// (`tests/decode_memory.rs`). The calls that read many hand the runtime back between
/// entries ([`super::between_entries`]), so several may hold theirs at once.
pub const DECIDED_ENTRY_BYTES: usize = 2 * 1024;

/// What a call refused for the budget is told.
const TREE_OVER_BUDGET: &str = "overloaded: the requests being read and parsed hold max_buffered_request_bytes; retry, on another replica if there is one";

/// The memory one call's parsed trees hold, given back when dropped. Keep it for as long
/// as the trees it counted.
#[derive(Debug)]
pub struct TreeBudget {
    capacity: Capacity,
    held: Option<OwnedSemaphorePermit>,
    /// The bytes of `held`.
    taken: usize,
    /// Of `taken`, what no parse uses: given first to the next one, so that many small
    /// parses (a batch's resources) do not each keep their step ahead.
    spare: usize,
    /// What the call holds beside these permits: the request it read (`holding`), and for
    /// a fork what its call held when it was made.
    elsewhere: usize,
    refused: Option<Refused>,
}

/// Why memory was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refused {
    /// Held by other calls now.
    Busy,
    /// More than the whole budget, with what the call holds.
    TooLarge,
}

/// A parse of bytes whose tree's memory is asked for as it grows
/// (`fhir::parse_strict_within` and the parsers built on it).
pub type MeteredParse<T> = fn(&[u8], &mut dyn TreeMemory) -> T;

impl Capacity {
    /// An empty budget for one call's trees.
    pub fn tree_budget(&self) -> TreeBudget {
        TreeBudget {
            capacity: self.clone(),
            held: None,
            taken: 0,
            spare: 0,
            elsewhere: 0,
            refused: None,
        }
    }
}

impl TreeBudget {
    /// The call holds `bytes` beside its trees (the request it read, whose JSON it parses):
    /// counted when a tree is judged too large for the whole budget.
    pub fn holding(&mut self, bytes: usize) {
        self.elsewhere = self.elsewhere.saturating_add(bytes);
    }

    /// `bytes` more for something other than a tree (the copy of a body the blocking pool
    /// reads); false, and the call to be refused with [`TreeBudget::refusal`], when the
    /// budget refuses them.
    pub fn take(&mut self, bytes: usize) -> bool {
        self.grow(bytes, bytes).is_some()
    }

    /// [`DECIDED_ENTRY_BYTES`] for each of `entries` entries (of a batch, a Bundle, AuthZEN's
    /// evaluations) about to be read and decided; the call's refusal when the budget
    /// refuses them.
    pub fn take_entries(&mut self, entries: usize) -> Result<(), Refusal> {
        if self.take(entries.saturating_mul(DECIDED_ENTRY_BYTES)) {
            return Ok(());
        }
        Err(self
            .refusal()
            .unwrap_or_else(|| Refusal::Overloaded(TREE_OVER_BUDGET.to_owned())))
    }

    /// `parse(body)`, its tree counted here.
    pub fn parse<T>(&mut self, body: &[u8], parse: MeteredParse<T>) -> T {
        parse(body, self)
    }

    /// A budget of the same call, for a parse on another thread; [`TreeBudget::absorb`] it
    /// back.
    pub fn fork(&self) -> TreeBudget {
        TreeBudget {
            elsewhere: self.elsewhere.saturating_add(self.taken),
            ..self.capacity.tree_budget()
        }
    }

    /// What a fork counted, held here from now on.
    pub fn absorb(&mut self, fork: TreeBudget) {
        self.taken = self.taken.saturating_add(fork.taken);
        self.spare = self.spare.saturating_add(fork.spare);
        self.refused = self.refused.or(fork.refused);
        match (self.held.as_mut(), fork.held) {
            (Some(held), Some(more)) => held.merge(more),
            (None, more) => self.held = more,
            (Some(_), None) => {}
        }
    }

    /// The refusal of a call whose parse the budget stopped; `None` when it stopped none
    /// (the parse's own error is the call's). Once refused, a budget stays refused.
    pub fn refusal(&self) -> Option<Refusal> {
        self.refused.map(|refused| match refused {
            Refused::Busy => Refusal::Overloaded(TREE_OVER_BUDGET.to_owned()),
            Refused::TooLarge => Refusal::TooLarge(format!(
                "the request would take more memory once read than max_buffered_request_bytes ({} bytes) allows",
                self.capacity.buffered_limit()
            )),
        })
    }

    /// `bytes` more permits, within the whole budget with what the call holds.
    fn hold(&mut self, bytes: usize) -> bool {
        let taken = self.taken.saturating_add(bytes);
        if taken.saturating_add(self.elsewhere) > self.capacity.buffered_limit() {
            return false;
        }
        let Some(permit) = self.capacity.try_hold_bytes(bytes) else {
            return false;
        };
        match self.held.as_mut() {
            Some(held) => held.merge(permit),
            None => self.held = Some(permit),
        }
        self.taken = taken;
        true
    }
}

impl TreeMemory for TreeBudget {
    /// From what is spare first; then `ahead`, or else `needed`, from the budget. Refused
    /// only when even `needed` is not there: too large when it would take the call beyond
    /// the whole budget, or within a headroom of it (`Capacity::beyond_whole_budget`);
    /// busy when other calls hold what it lacks.
    fn grow(&mut self, needed: usize, ahead: usize) -> Option<usize> {
        if self.refused.is_some() {
            return None;
        }
        for ask in [ahead, needed] {
            if ask <= self.spare {
                let given = self.spare.min(ahead);
                self.spare -= given;
                return Some(given);
            }
            if self.hold(ask - self.spare) {
                self.spare = 0;
                return Some(ask);
            }
        }
        let lacking = needed - self.spare;
        let whole = self
            .taken
            .saturating_add(lacking)
            .saturating_add(self.elsewhere);
        self.refused = Some(if self.capacity.beyond_whole_budget(whole) {
            Refused::TooLarge
        } else {
            telemetry::metrics::shed();
            Refused::Busy
        });
        None
    }

    fn unused(&mut self, bytes: usize) {
        self.spare = self.spare.saturating_add(bytes).min(self.taken);
    }
}

#[cfg(test)]
mod tests;
