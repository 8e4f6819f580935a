//! Parsed scope sets shared between verified tokens: the tokens of one app carry the same
//! scope claim, so the set is parsed once and the cache keeps one copy per distinct claim
//! rather than one per token. Parsing is a pure function of the claim's text and the FHIR
//! version, so the set another token's identical claim produced is the set this one would.
//!
//! The table holds weak references only: a set lives as long as some token holds it. The
//! cache's weigher counts a set in full for the token that brought it and as a pointer for
//! the tokens that share it (`Arc::strong_count` at insertion), so tokens that each bring a
//! set of their own (a flood of distinct scopes) are weighed in full.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use serde_json::Value;

use crate::fhir::FhirVersion;
use crate::smart::{ClaimsError, ScopeClaim, ScopeSet, TokenContext};

/// Distinct sets tracked at most; past it, dead entries are swept (every
/// [`SWEEP_EVERY`] attempts, so a flood of distinct live sets does not scan the table on every
/// verification), and a set that finds no room is simply not shared.
const MAX_SETS: usize = 10_000;
const SWEEP_EVERY: u64 = 256;
/// Longer claims are parsed for their token alone: the table keeps each claim's text, and
/// real scope claims are a few hundred bytes.
const MAX_SHARED_CLAIM_BYTES: usize = 8 * 1024;

/// The shared sets, by FHIR version and scope claim.
#[derive(Debug, Default)]
pub struct SharedScopes {
    table: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    sets: HashMap<(FhirVersion, Claim), Weak<ScopeSet>>,
    /// Sets offered while the table was full.
    full_attempts: u64,
}

/// A scope claim as the table keeps it: a string and a list are different keys, and a
/// list's items stay apart (joining them could make two lists one key).
#[derive(Debug, PartialEq, Eq, Hash)]
enum Claim {
    Text(Box<str>),
    List(Box<[Box<str>]>),
}

impl From<&ScopeClaim<'_>> for Claim {
    fn from(claim: &ScopeClaim<'_>) -> Claim {
        match claim {
            ScopeClaim::Text(text) => Claim::Text(Box::from(*text)),
            ScopeClaim::List(items) => {
                Claim::List(items.iter().map(|item| Box::from(*item)).collect())
            }
        }
    }
}

impl SharedScopes {
    /// The set `claim` stands for: the one an identical claim of a live token was parsed into,
    /// else `claim` parsed now and remembered for the tokens to come.
    pub fn parse(&self, claim: ScopeClaim<'_>, version: FhirVersion) -> Arc<ScopeSet> {
        if claim_bytes(&claim) > MAX_SHARED_CLAIM_BYTES {
            return Arc::new(claim.parse(version));
        }
        let key = (version, Claim::from(&claim));
        let live = |table: &Table| table.sets.get(&key).and_then(Weak::upgrade);
        if let Some(shared) = live(&self.lock()) {
            return shared;
        }
        // Parsed without the lock: a long hostile claim must not stall other verifications.
        let scopes = Arc::new(claim.parse(version));
        let mut table = self.lock();
        if let Some(shared) = live(&table) {
            return shared;
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

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Distinct sets tracked, live or not yet swept.
    #[cfg(test)]
    pub fn tracked(&self) -> usize {
        self.lock().sets.len()
    }
}

fn claim_bytes(claim: &ScopeClaim<'_>) -> usize {
    match claim {
        ScopeClaim::Text(text) => text.len(),
        ScopeClaim::List(items) => items.iter().map(|item| item.len() + 1).sum(),
    }
}

/// Reads verified claims (a JWT's or an introspection answer's) into a token context, for
/// this service's FHIR version and with the scope sets of [`SharedScopes`].
#[derive(Clone, Debug)]
pub struct ContextReader {
    version: FhirVersion,
    shared: Arc<SharedScopes>,
}

impl ContextReader {
    pub fn new(version: FhirVersion) -> ContextReader {
        ContextReader {
            version,
            shared: Arc::default(),
        }
    }

    pub fn version(&self) -> FhirVersion {
        self.version
    }

    pub fn read(&self, claims: &Value) -> Result<TokenContext, ClaimsError> {
        TokenContext::from_claims_with(claims, |claim| self.shared.parse(claim, self.version))
    }
}

#[cfg(test)]
mod tests;
