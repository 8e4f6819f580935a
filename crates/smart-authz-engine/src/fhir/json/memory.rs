//! The memory a parsed JSON tree takes, counted while it is built, so that a caller can
//! bound it. A document's tree is many times its bytes: 10 to 16 times for FHIR resources,
//! and up to 90 times for a document built to be large (`[{"a":0},{"a":0},...]` puts a
//! B-tree node of 632 bytes behind each 8 bytes of text). A service that bounds the bytes
//! it reads but not the trees it parses them into can be made to take hundreds of
//! megabytes by a few requests within its byte limits.
//!
//! The count is an estimate from the shapes `serde_json::Value` allocates (a string's
//! bytes, an array's slots, a map's B-tree nodes), never less than what the finished tree
//! holds and at most about twice it (pinned against a counting allocator in the service's
//! tests, `tests/parse_memory.rs`).

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

/// Counts the memory of the tree being built and asks `grow` for it ahead, in steps.
pub(super) struct Meter<'g> {
    used: Cell<usize>,
    granted: Cell<usize>,
    grow: RefCell<&'g mut dyn FnMut(usize) -> bool>,
}

impl<'g> Meter<'g> {
    pub(super) fn new(grow: &'g mut dyn FnMut(usize) -> bool) -> Self {
        Meter {
            used: Cell::new(0),
            granted: Cell::new(0),
            grow: RefCell::new(grow),
        }
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
        // Asks grow with the tree, so a large one asks a few dozen times, not once a node;
        // one refused is asked again for what is needed alone, so that a tree is refused
        // for what it takes, not for the step it asked ahead.
        let ahead = needed.max(LEAST_ASK).max(granted / 4);
        let mut grow = self.grow.borrow_mut();
        let given = if grow(ahead) {
            Some(ahead)
        } else if needed < ahead && grow(needed) {
            Some(needed)
        } else {
            None
        };
        if let Some(given) = given {
            self.granted.set(granted.saturating_add(given));
            Ok(())
        } else {
            Err(format!(
                "the parsed JSON would take more than the {granted} bytes of memory it was given"
            ))
        }
    }
}
