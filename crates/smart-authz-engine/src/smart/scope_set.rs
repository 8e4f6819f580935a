//! The scopes granted to a token, each parsed on its own: one bad scope never invalidates the
//! others, because scopes combine as a union (§3.0.2.2).

use std::collections::HashSet;

use super::scope::{ResourceScope, Scope, ScopeError, parse_scope};
use crate::fhir::FhirVersion;

/// Most scopes of one token that are evaluated; real tokens carry a few dozen at most.
pub const MAX_SCOPES: usize = 256;

/// One granted scope as written in the token, with its parse result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScopeEntry {
    pub text: String,
    pub parsed: Result<Scope, ScopeError>,
}

impl ScopeEntry {
    /// True when the scope uses SMART v1 permission words (`read`, `write`, `*`).
    pub fn is_v1(&self) -> bool {
        matches!(self.parsed, Ok(Scope::Resource(_)))
            && self
                .text
                .split('?')
                .next()
                .and_then(|head| head.rsplit_once('.'))
                .is_some_and(|(_, permissions)| matches!(permissions, "read" | "write" | "*"))
    }
}

/// The granted scopes of one token, in the order they were written, without duplicates.
///
/// Built only by parsing (or empty, by `Default`), so the joined scope string always matches
/// the entries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScopeSet {
    entries: Vec<ScopeEntry>,
    /// [`ScopeSet::scope_string`], joined once: every allow on every face writes it, and the
    /// set is cached (and shared) for as long as its tokens are.
    joined: Box<str>,
}

impl ScopeSet {
    /// Parses a `scope` claim: scopes separated by spaces (U+0020) and nothing else (RFC
    /// 6749 §3.3). A scope holding any other whitespace or a control character is invalid as
    /// a whole; it is never trimmed or split into another scope.
    pub fn parse(scope: &str, version: FhirVersion) -> Self {
        ScopeSet::from_list(scope.split(' '), version)
    }

    /// Parses a list of scopes, such as an `scp` array claim. Scopes past [`MAX_SCOPES`] are
    /// kept as invalid, so a hostile token cannot make every decision slow.
    pub fn from_list<'a>(scopes: impl IntoIterator<Item = &'a str>, version: FhirVersion) -> Self {
        let mut entries: Vec<ScopeEntry> = Vec::new();
        let mut seen: HashSet<&str> = HashSet::new();
        for text in scopes {
            if text.is_empty() || !seen.insert(text) {
                continue;
            }
            let parsed = if let Some(invalid) = text.chars().find(|c| !is_scope_token_char(*c)) {
                Err(ScopeError::InvalidCharacter(invalid))
            } else if entries.len() >= MAX_SCOPES {
                Err(ScopeError::TooMany(MAX_SCOPES))
            } else {
                parse_scope(text, version)
            };
            entries.push(ScopeEntry {
                text: text.to_owned(),
                parsed,
            });
        }
        // A token's scopes are kept as long as the token is cached: no spare capacity.
        entries.shrink_to_fit();
        let joined = join_printable(&entries);
        ScopeSet { entries, joined }
    }

    /// Every scope as written, valid or not, in order.
    pub fn entries(&self) -> &[ScopeEntry] {
        &self.entries
    }

    /// The resource scopes, with the text they were written as.
    pub fn resource_scopes(&self) -> impl Iterator<Item = (&str, &ResourceScope)> {
        self.entries.iter().filter_map(|entry| match &entry.parsed {
            Ok(Scope::Resource(scope)) => Some((entry.text.as_str(), scope)),
            _ => None,
        })
    }

    /// The scopes that failed to parse, with the reason.
    pub fn invalid(&self) -> impl Iterator<Item = (&str, &ScopeError)> {
        self.entries.iter().filter_map(|entry| match &entry.parsed {
            Err(error) => Some((entry.text.as_str(), error)),
            Ok(_) => None,
        })
    }

    /// The granted scopes joined by spaces, as they appeared, leaving out those with a
    /// character no scope may hold: the string may travel in an HTTP header, and a newline
    /// from a token must never reach one. Those scopes are reported with the invalid ones.
    pub fn scope_string(&self) -> &str {
        &self.joined
    }

    /// [`ScopeSet::scope_string`], owned.
    pub fn to_scope_string(&self) -> String {
        self.joined.to_string()
    }
}

/// The texts of `entries` that hold only scope-token characters, joined by spaces.
fn join_printable(entries: &[ScopeEntry]) -> Box<str> {
    let longest = entries.iter().map(|entry| entry.text.len() + 1).sum();
    let mut joined = String::with_capacity(longest);
    for text in entries.iter().map(|entry| entry.text.as_str()) {
        if !text.bytes().all(is_scope_token_byte) {
            continue;
        }
        if !joined.is_empty() {
            joined.push(' ');
        }
        joined.push_str(text);
    }
    joined.into_boxed_str()
}

/// RFC 6749 §3.3 `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`: ASCII only, so a byte of
/// a multi-byte UTF-8 character (0x80 and above) never passes.
fn is_scope_token_byte(byte: u8) -> bool {
    matches!(byte, 0x21 | 0x23..=0x5B | 0x5D..=0x7E)
}

fn is_scope_token_char(character: char) -> bool {
    u8::try_from(character).is_ok_and(is_scope_token_byte)
}

#[cfg(test)]
mod tests;
