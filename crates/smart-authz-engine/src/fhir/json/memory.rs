//! The memory a parsed JSON tree takes, counted while it is built, so that a caller can
//! bound it. A document's tree is many times its bytes: 10 to 16 times for FHIR resources,
//! and up to 90 times for a document built to be large (`[{"a":0},{"a":0},...]` puts a
//! B-tree node of 632 bytes behind each 8 bytes of text). A service that bounds the bytes
//! it reads but not the trees it parses them into can be made to take hundreds of
//! megabytes by a few requests within its byte limits.
//!
//! The count is an estimate from the shapes `serde_json::Value` allocates (a string's
//! bytes, an array's slots, a map's B-tree nodes), never less than what the finished tree
//! holds and at most two and a half times it (pinned against a counting allocator in the
//! service's tests, `tests/parse_memory.rs`).

use std::cell::{Cell, RefCell};

use serde::de;

/// The size of one `serde_json::Value`, the slot of an array element.
const VALUE_SLOT: usize = 32;
/// A `BTreeMap<String, Value>` leaf: eleven keys (24 bytes) and values (32), its parent
/// link and lengths. Every object with a member has one.
const MAP_LEAF: usize = 640;
/// The members a leaf holds.
const MAP_LEAF_MEMBERS: usize = 11;
/// An internal node: a leaf and twelve edges of 8 bytes. The twelfth member splits the
/// first leaf into two under a new root.
const MAP_INTERNAL: usize = 736;
/// Each member beyond the first split: leaves split half full hold five or six (a new leaf
/// at most every five members), and every six leaves take another internal node (Rust's
/// `alloc::collections::btree::node`).
const MAP_MEMBER: usize = 160;
/// What the allocator adds to one allocation, on average: rounding and a header.
const ALLOCATION: usize = 16;

/// The least memory asked for at once: a small resource asks once or twice.
const LEAST_ASK: usize = 16 * 1024;

/// Memory for the tree a parse builds ([`super::parse_strict_within`]), asked for as it
/// grows: the parse counts what its tree takes and asks for more only when the count passes
/// what it was given.
pub trait TreeMemory {
    /// `needed` bytes more, or better `ahead` (at least `needed`), so that the parse asks
    /// again only after a while; what was given, at least `needed`, or `None` to stop the
    /// parse before its tree takes them.
    fn grow(&mut self, needed: usize, ahead: usize) -> Option<usize>;

    /// The parse has ended, `bytes` of what it was given unused.
    fn unused(&mut self, _bytes: usize) {}
}

/// A closure that says yes or no to each ask: given `ahead`, or else `needed`.
impl<F: FnMut(usize) -> bool> TreeMemory for F {
    fn grow(&mut self, needed: usize, ahead: usize) -> Option<usize> {
        if self(ahead) {
            Some(ahead)
        } else if needed < ahead && self(needed) {
            Some(needed)
        } else {
            None
        }
    }
}

/// Counts the memory of the tree being built and asks for it ahead, in steps.
pub(super) struct Meter<'g> {
    used: Cell<usize>,
    granted: Cell<usize>,
    memory: RefCell<&'g mut dyn TreeMemory>,
}

impl<'g> Meter<'g> {
    pub(super) fn new(memory: &'g mut dyn TreeMemory) -> Self {
        Meter {
            used: Cell::new(0),
            granted: Cell::new(0),
            memory: RefCell::new(memory),
        }
    }

    /// Tells the memory what the parse was given and did not use.
    pub(super) fn end(self) {
        let unused = self.granted.get().saturating_sub(self.used.get());
        self.memory.into_inner().unused(unused);
    }

    /// A string of `length` bytes.
    #[inline(always)]
    pub(super) fn string<E: de::Error>(&self, length: usize) -> Result<(), E> {
        if length == 0 {
            return Ok(());
        }
        self.take(length.next_multiple_of(ALLOCATION) + ALLOCATION)
    }

    /// An array's buffer grown from `before` slots to `after`: the whole new buffer, since
    /// the old one is copied into it before it is freed (a large array's peak is three times
    /// its last buffer's half). The count runs ahead of the finished array by its old
    /// buffers, at most as much again.
    pub(super) fn slots<E: de::Error>(&self, before: usize, after: usize) -> Result<(), E> {
        if after <= before {
            return Ok(());
        }
        self.take(after * VALUE_SLOT + ALLOCATION)
    }

    /// The `count`th member of an object (from 1), its name `name_length` bytes long.
    #[inline(always)]
    pub(super) fn member<E: de::Error>(&self, count: usize, name_length: usize) -> Result<(), E> {
        let node = match count {
            1 => MAP_LEAF,
            2..=MAP_LEAF_MEMBERS => 0,
            12 => MAP_LEAF + MAP_INTERNAL,
            _ => MAP_MEMBER,
        };
        let name = if name_length == 0 {
            0
        } else {
            name_length.next_multiple_of(ALLOCATION) + ALLOCATION
        };
        self.take(node + name)
    }

    /// Counts `bytes`; asks for more only when the count passes what was granted, which is
    /// rare (once or twice for a small resource), so the usual path is an addition and a
    /// comparison.
    #[inline(always)]
    fn take<E: de::Error>(&self, bytes: usize) -> Result<(), E> {
        let used = self.used.get().saturating_add(bytes);
        self.used.set(used);
        if used <= self.granted.get() {
            return Ok(());
        }
        self.ask(used).map_err(E::custom)
    }

    #[cold]
    #[inline(never)]
    fn ask(&self, used: usize) -> Result<(), String> {
        let granted = self.granted.get();
        let needed = used - granted;
        // Asks grow with the tree, so a large one asks a few dozen times, not once a node.
        let ahead = needed.max(LEAST_ASK).max(granted / 4);
        match self.memory.borrow_mut().grow(needed, ahead) {
            Some(given) => {
                self.granted.set(granted.saturating_add(given.max(needed)));
                Ok(())
            }
            None => Err(format!(
                "the parsed JSON would take more than the {granted} bytes of memory it was given"
            )),
        }
    }
}
