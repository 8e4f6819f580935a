use super::*;

#[test]
fn a_tree_holds_its_memory_until_the_budget_is_dropped() {
    let capacity = Capacity::new(4, 100);
    let mut first = capacity.tree_budget();
    assert_eq!(first.grow(60, 60), Some(60));
    assert_eq!(first.refusal(), None);
    let mut second = capacity.tree_budget();
    assert_eq!(second.grow(60, 60), None, "only 40 bytes are free");
    assert!(
        matches!(second.refusal(), Some(Refusal::Overloaded(_))),
        "{:?}",
        second.refusal()
    );
    drop(first);
    let mut third = capacity.tree_budget();
    assert_eq!(third.grow(60, 60), Some(60));
}

#[test]
fn a_tree_beyond_the_whole_budget_with_what_the_call_holds_is_too_large() {
    let capacity = Capacity::new(4, 100);
    let mut budget = capacity.tree_budget();
    // 40 bytes of request held beside the budget, 70 of tree: never within 100.
    budget.holding(40);
    assert_eq!(budget.grow(70, 70), None);
    let refusal = budget.refusal();
    assert!(
        matches!(&refusal, Some(Refusal::TooLarge(message)) if message.contains("max_buffered_request_bytes (100 bytes)")),
        "{refusal:?}"
    );
    // Once refused, a budget stays refused: a later parse of the call is not let through.
    assert_eq!(budget.grow(1, 1), None);
    let mut budget = capacity.tree_budget();
    budget.holding(40);
    assert_eq!(budget.grow(60, 60), Some(60));
}

#[test]
fn a_step_ahead_refused_is_given_for_what_is_needed() {
    let capacity = Capacity::new(4, 1_000);
    let mut budget = capacity.tree_budget();
    assert_eq!(budget.grow(700, 700), Some(700));
    // A step of 400 ahead would go beyond the whole; the 200 needed do not.
    assert_eq!(budget.grow(200, 400), Some(200));
    assert_eq!(budget.refusal(), None);
    // Another call holds 60: the 50 needed are within the whole, but not free.
    let _other = capacity.hold_bytes(60).unwrap();
    assert_eq!(budget.grow(50, 80), None);
    assert!(matches!(budget.refusal(), Some(Refusal::Overloaded(_))));
}

#[test]
fn what_a_parse_leaves_unused_is_given_to_the_next() {
    let capacity = Capacity::new(4, 100);
    let mut budget = capacity.tree_budget();
    // Three small parses, each asking 30 ahead for the 10 it uses: the 30 used and the last
    // step's 20 held, not 90.
    for _ in 0..3 {
        assert_eq!(budget.grow(10, 30), Some(30));
        budget.unused(20);
    }
    assert_eq!(capacity.tree_budget().grow(51, 51), None);
    assert_eq!(capacity.tree_budget().grow(50, 50), Some(50));
}

#[test]
fn a_fork_knows_what_its_call_holds_beside_it() {
    let capacity = Capacity::new(4, 100);
    let mut budget = capacity.tree_budget();
    budget.holding(30);
    // The copy of a body the blocking pool reads, then the fork's tree.
    assert!(budget.take(30));
    let mut fork = budget.fork();
    // 30 held beside the budget and 30 by the call: 41 more would never fit, though 70
    // are free.
    assert_eq!(fork.grow(41, 41), None);
    budget.absorb(fork);
    assert!(matches!(budget.refusal(), Some(Refusal::TooLarge(_))));
    drop(budget);

    let mut budget = capacity.tree_budget();
    budget.holding(30);
    assert!(budget.take(30));
    let mut fork = budget.fork();
    assert_eq!(fork.grow(40, 40), Some(40));
    budget.absorb(fork);
    // 30 + 40 taken, 30 held beside: nothing more fits, and what is taken stays held.
    assert!(!budget.take(1));
    assert!(matches!(budget.refusal(), Some(Refusal::TooLarge(_))));
    assert_eq!(capacity.tree_budget().grow(31, 31), None);
    drop(budget);
    assert_eq!(capacity.tree_budget().grow(100, 100), Some(100));
}

#[test]
fn a_tree_refused_within_the_headroom_of_the_whole_is_too_large() {
    // 3,200 bytes: a headroom of 100 for what the call holds beside its declared JSON.
    let capacity = Capacity::new(4, 3_200);
    // The call's own message, of which 1,000 bytes are its JSON and 60 the rest.
    let _message = capacity.hold_bytes(1_060).unwrap();
    let mut budget = capacity.tree_budget();
    budget.holding(1_000);
    assert_eq!(budget.grow(2_100, 2_100), Some(2_100));
    // 40 more are within the whole (3,140 of 3,200 declared) but not free: the call's own
    // 60 bytes are what lacks.
    assert_eq!(budget.grow(41, 41), None);
    assert!(matches!(budget.refusal(), Some(Refusal::TooLarge(_))));
}
