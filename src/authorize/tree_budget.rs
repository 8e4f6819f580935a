//! The memory of the JSON trees a call parses (a resource it carries, the body Envoy
//! forwards, an AuthZEN request, a FHIR server's answer), counted against the same budget
//! as the bytes they are read from, `max_buffered_request_bytes`.
//!
//! A tree is many times its bytes: 10 to 16 times for FHIR resources, up to 90 times for a
//! document built for it (`fhir::parse_strict_within`). Counting only the bytes let four
//! bodies of 4 MiB, each one array of zeros, hold 438 MB (docs/performance-log.md,
//! "Memory of parsed resources"). The parse asks for the tree's memory as it grows; what
//! the budget has not free refuses the call as the bytes would (retry later), and a tree
//! larger than the whole budget refuses it as too large (no retry gets it through).

use tokio::sync::OwnedSemaphorePermit;

use super::{Capacity, Refusal};

/// What a call refused for the budget is told.
pub const TREE_OVER_BUDGET: &str = "overloaded: the requests being read and parsed hold max_buffered_request_bytes; retry, on another replica if there is one";

/// The memory one call's parsed trees hold, given back when dropped. Keep it for as long
/// as the trees it counted.
#[derive(Debug)]
pub struct TreeBudget {
    capacity: Capacity,
    held: Option<OwnedSemaphorePermit>,
    taken: usize,
    /// What the call holds beside these permits: the bytes the trees were parsed from,
    /// and for a fork what its call held when it was made.
    elsewhere: usize,
    refused: Option<Refused>,
}

/// Why memory was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refused {
    /// Held by other calls now.
    Busy,
    /// More than the whole budget.
    TooLarge,
}

/// A parse of bytes whose tree's memory is asked for as it grows
/// (`fhir::parse_strict_within` and the parsers built on it).
pub type MeteredParse<T> = fn(&[u8], &mut dyn FnMut(usize) -> bool) -> T;

impl Capacity {
    /// An empty budget for one call's trees.
    pub fn tree_budget(&self) -> TreeBudget {
        TreeBudget {
            capacity: self.clone(),
            held: None,
            taken: 0,
            elsewhere: 0,
            refused: None,
        }
    }
}

impl TreeBudget {
    /// `bytes` more for a tree; false when the budget refuses them (and the call is to be
    /// refused with [`TreeBudget::refusal`], which names the last refusal: a parse refused
    /// the step it asked ahead asks again for what it needs, and goes on if it gets it). The
    /// trees and the bytes they were parsed from beyond the whole budget are too large;
    /// within it, they wait for no one: busy.
    pub fn grow(&mut self, bytes: usize) -> bool {
        let taken = self.taken.saturating_add(bytes);
        if taken.saturating_add(self.elsewhere) > self.capacity.buffered_limit() {
            self.refused = Some(Refused::TooLarge);
            return false;
        }
        let Some(permit) = self.capacity.hold_bytes(bytes) else {
            // Refused its step ahead as too large just before, the tree needs nearly all of
            // the budget: what the call holds beside it (its message's other fields) is
            // what is missing now, and no retry finds more.
            if self.refused != Some(Refused::TooLarge) {
                self.refused = Some(Refused::Busy);
            }
            return false;
        };
        match self.held.as_mut() {
            Some(held) => held.merge(permit),
            None => self.held = Some(permit),
        }
        self.taken = taken;
        self.refused = None;
        true
    }

    /// `parse(body)`, its tree counted here.
    pub fn parse<T>(&mut self, body: &[u8], parse: MeteredParse<T>) -> T {
        self.elsewhere = self.elsewhere.saturating_add(body.len());
        parse(body, &mut |bytes| self.grow(bytes))
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
        // The fork's `elsewhere` is this budget's, its permits included, and the bytes
        // it parsed.
        self.elsewhere = fork
            .elsewhere
            .saturating_sub(self.taken)
            .max(self.elsewhere);
        self.taken = self.taken.saturating_add(fork.taken);
        self.refused = self.refused.or(fork.refused);
        match (self.held.as_mut(), fork.held) {
            (Some(held), Some(more)) => held.merge(more),
            (None, more) => self.held = more,
            (Some(_), None) => {}
        }
    }

    /// The refusal of a call whose parse the budget stopped; `None` when it stopped none
    /// (the parse's own error is the call's).
    pub fn refusal(&self) -> Option<Refusal> {
        self.refused.map(|refused| match refused {
            Refused::Busy => Refusal::Overloaded(TREE_OVER_BUDGET.to_owned()),
            Refused::TooLarge => Refusal::TooLarge(format!(
                "the JSON would take more memory once read than max_buffered_request_bytes ({} bytes) allows",
                self.capacity.buffered_limit()
            )),
        })
    }
}

#[cfg(test)]
mod tests;
