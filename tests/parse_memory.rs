//! The memory a parsed tree is counted at (`fhir::parse_strict_within`) is close to what the
//! allocator really gives it: at least what it takes, so that a bound on the count bounds
//! the memory, and not many times more, so that the count does not refuse what fits. A
//! counting allocator measures the trees of FHIR resources and of documents built to be
//! large for their bytes.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a panic is a failed test"
)]

use std::alloc::System;
use std::sync::Mutex;

use smart_authz::fhir::{TreeMemory, parse_strict_within};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static ALLOCATOR: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// The allocator counts every thread: one measurement at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// What an allocator spends beyond the bytes asked for, on average per allocation: glibc's
/// 8-byte header and rounding to 16 (as `tests/cache_memory.rs` counts it).
const MALLOC_OVERHEAD: usize = 16;

/// What a parse gives and is told back: the parse's own count is the difference.
#[derive(Default)]
struct Counted {
    given: usize,
    unused: usize,
}

impl TreeMemory for Counted {
    fn grow(&mut self, _needed: usize, ahead: usize) -> Option<usize> {
        self.given += ahead;
        Some(ahead)
    }

    fn unused(&mut self, bytes: usize) {
        self.unused += bytes;
    }
}

/// The bytes the tree of `text` holds once parsed, and the bytes its parse counted (what it
/// asked for, less what it did not use).
fn measured(text: &str) -> (usize, usize) {
    let mut counted = Counted::default();
    let region = Region::new(ALLOCATOR);
    let tree = parse_strict_within(text.as_bytes(), &mut counted).unwrap();
    let change = region.change();
    // stats_alloc counts a buffer grown in place in `bytes_allocated` too. Each allocation
    // costs the allocator's rounding and bookkeeping beyond the bytes asked for.
    let allocations = change.allocations - change.deallocations;
    let held = change.bytes_allocated - change.bytes_deallocated + allocations * MALLOC_OVERHEAD;
    drop(tree);
    (held, counted.given - counted.unused)
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("tests/fixtures/{name}.json")).unwrap()
}

/// An array of `count` objects of `members` members each: the twelfth splits a B-tree's
/// first leaf into two under a new root.
fn objects_of(members: usize, count: usize) -> String {
    let object = (0..members)
        .map(|index| format!(r#""m{index:02}":0"#))
        .collect::<Vec<_>>()
        .join(",");
    format!("[{}]", vec![format!("{{{object}}}"); count].join(","))
}

/// Documents of every shape that makes a tree large, each about a megabyte or more.
fn documents() -> Vec<(&'static str, String)> {
    let n = 200_000;
    let observation = fixture("observation-123");
    vec![
        (
            "a Bundle of 2,000 Observations",
            format!(
                r#"{{"resourceType":"Bundle","type":"searchset","entry":[{}]}}"#,
                vec![format!(r#"{{"resource":{observation}}}"#); 2_000].join(",")
            ),
        ),
        ("an array of zeros", format!("[{}0]", "0,".repeat(n))),
        (
            "an array of empty arrays",
            format!("[{}[]]", "[],".repeat(n)),
        ),
        (
            "an array of empty objects",
            format!("[{}{{}}]", "{},".repeat(n)),
        ),
        (
            "an array of one-member objects",
            format!(r#"[{}{{"a":0}}]"#, r#"{"a":0},"#.repeat(n)),
        ),
        (
            "an array of arrays of one",
            format!("[{}[0]]", "[0],".repeat(n)),
        ),
        ("objects of twelve members", objects_of(12, 20_000)),
        ("objects of seventeen members", objects_of(17, 20_000)),
        ("objects of eighteen members", objects_of(18, 20_000)),
        (
            "an array of short strings",
            format!(r#"[{}"a"]"#, r#""a","#.repeat(n)),
        ),
        (
            "one object of many members",
            format!(
                "{{{}\"last\":0}}",
                (0..n)
                    .map(|index| format!(r#""{index}":0,"#))
                    .collect::<String>()
            ),
        ),
        ("one long string", format!("\"{}\"", "a".repeat(4_000_000))),
    ]
}

#[test]
fn the_count_covers_the_tree_and_stays_within_twice_and_a_half_of_it() {
    let _alone = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    for (name, text) in documents() {
        let (held, asked) = measured(&text);
        assert!(
            asked >= held,
            "{name}: {asked} bytes counted for a tree of {held}"
        );
        println!(
            "{name}: {} bytes, a tree of {held}, {asked} counted",
            text.len()
        );
        assert!(
            asked <= held * 5 / 2,
            "{name}: {asked} bytes counted for a tree of {held}"
        );
    }
}

#[test]
fn a_refused_ask_stops_the_parse_before_the_tree_grows_past_it() {
    let _alone = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let text = format!(r#"[{}{{"a":0}}]"#, r#"{"a":0},"#.repeat(200_000));
    let mut left: usize = 1024 * 1024;
    let mut grow = |bytes: usize| match left.checked_sub(bytes) {
        Some(rest) => {
            left = rest;
            true
        }
        None => false,
    };
    let region = Region::new(ALLOCATOR);
    let refused = parse_strict_within(text.as_bytes(), &mut grow).unwrap_err();
    let change = region.change();
    assert!(refused.to_string().contains("memory"), "{refused}");
    // What the parse held at most: everything it allocated, less nothing (a bound from
    // above on its peak). The tree of the whole document is 143 MB.
    assert!(
        change.bytes_allocated < 4 * 1024 * 1024,
        "{} bytes allocated before the refusal",
        change.bytes_allocated
    );
}
