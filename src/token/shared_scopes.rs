//! Parsed scope sets shared between verified tokens: the tokens of one app carry the same
//! scopes, and the parsed set is most of what a cached token holds, so the cache keeps one
//! copy per distinct set rather than one per token.
//!
//! The table holds weak references only: a set lives as long as some token holds it. The
//! cache's weigher counts a set in full for the token that brought it and as a pointer for
//! the tokens that share it (`Arc::strong_count` at insertion), so tokens that each bring a
//! set of their own (a flood of distinct scopes) are weighed in full.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use crate::fhir::FhirVersion;
use crate::smart::ScopeSet;

/// Distinct sets tracked at most; past it, dead entries are swept (every
/// [`SWEEP_EVERY`] attempts, so a flood of distinct live sets does not scan the table on every
/// verification), and a set that finds no room is simply not shared.
const MAX_SETS: usize = 10_000;
const SWEEP_EVERY: u64 = 256;

/// The shared sets, by FHIR version and scope texts.
#[derive(Debug, Default)]
pub struct SharedScopes {
    table: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    sets: HashMap<(FhirVersion, Box<str>), Weak<ScopeSet>>,
    /// Sets offered while the table was full.
    full_attempts: u64,
}

impl SharedScopes {
    /// The shared copy of `scopes` when an equal set is alive, else `scopes`, remembered for
    /// the tokens to come.
    pub fn share(&self, scopes: Arc<ScopeSet>, version: FhirVersion) -> Arc<ScopeSet> {
        let texts: Vec<&str> = scopes
            .entries
            .iter()
            .map(|entry| entry.text.as_str())
            .collect();
        let key = (version, Box::from(texts.join(" ")));
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(shared) = table.sets.get(&key).and_then(Weak::upgrade) {
            // The key joins texts with spaces: equal keys from different sets are possible
            // for texts holding spaces (invalid scopes), so equality decides.
            if *shared == *scopes {
                return shared;
            }
        }
        if table.sets.len() >= MAX_SETS {
            if table.full_attempts.is_multiple_of(SWEEP_EVERY) {
                table.sets.retain(|_, set| set.strong_count() > 0);
            }
            table.full_attempts += 1;
        }
        if table.sets.len() < MAX_SETS {
            table.sets.insert(key, Arc::downgrade(&scopes));
        }
        scopes
    }

    /// Distinct sets tracked, live or not yet swept.
    #[cfg(test)]
    pub fn tracked(&self) -> usize {
        self.table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .sets
            .len()
    }
}

#[cfg(test)]
mod tests;
