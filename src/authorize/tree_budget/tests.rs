use super::*;

#[test]
fn a_tree_holds_its_memory_until_the_budget_is_dropped() {
    let capacity = Capacity::new(4, 100);
    let mut first = capacity.tree_budget();
    assert!(first.grow(60));
    assert_eq!(first.refusal(), None);
    let mut second = capacity.tree_budget();
    assert!(!second.grow(60), "only 40 bytes are free");
    assert!(
        matches!(second.refusal(), Some(Refusal::Overloaded(_))),
        "{:?}",
        second.refusal()
    );
    drop(first);
    let mut third = capacity.tree_budget();
    assert!(third.grow(60));
}

#[test]
fn a_tree_larger_than_the_whole_budget_is_too_large() {
    let capacity = Capacity::new(4, 100);
    let mut budget = capacity.tree_budget();
    assert!(budget.grow(80));
    assert!(!budget.grow(30));
    let refusal = budget.refusal();
    assert!(
        matches!(&refusal, Some(Refusal::TooLarge(message)) if message.contains("max_buffered_request_bytes (100 bytes)")),
        "{refusal:?}"
    );
}

#[test]
fn a_fork_counted_on_another_thread_is_held_once_absorbed() {
    let capacity = Capacity::new(4, 100);
    let mut budget = capacity.tree_budget();
    let mut fork = budget.fork();
    assert!(fork.grow(70));
    budget.absorb(fork);
    // Its 70 bytes count toward the call's share of the whole budget, and are held.
    assert!(!budget.grow(40));
    assert!(matches!(budget.refusal(), Some(Refusal::TooLarge(_))));
    assert!(!capacity.tree_budget().grow(40));
    drop(budget);
    assert!(capacity.tree_budget().grow(100));
}

#[test]
fn the_bytes_parsed_count_toward_too_large() {
    let capacity = Capacity::new(4, 100);
    let mut budget = capacity.tree_budget();
    // 40 bytes of body (held by the call as it was read) and 70 of tree: never within 100.
    let refused = budget.parse(&[b' '; 40], |_, grow| grow(70));
    assert!(!refused);
    assert!(matches!(budget.refusal(), Some(Refusal::TooLarge(_))));
    let mut budget = capacity.tree_budget();
    assert!(budget.parse(&[b' '; 40], |_, grow| grow(60)));
}

#[test]
fn a_fork_knows_what_its_call_holds_beside_it() {
    let capacity = Capacity::new(4, 100);
    let mut budget = capacity.tree_budget();
    // The copy of a body the blocking pool reads, then the fork's tree.
    assert!(budget.grow(30));
    let mut fork = budget.fork();
    // 30 of body and 30 held by the call: 41 more would never fit, though 70 are free.
    assert!(!fork.parse(&[b' '; 30], |_, grow| grow(41)));
    budget.absorb(fork);
    assert!(matches!(budget.refusal(), Some(Refusal::TooLarge(_))));
    let mut budget = capacity.tree_budget();
    assert!(budget.grow(30));
    let mut fork = budget.fork();
    assert!(fork.parse(&[b' '; 30], |_, grow| grow(40)));
    budget.absorb(fork);
    // The body counted once: 30 + 40 taken, 30 parsed.
    assert!(!budget.grow(1));
    assert!(matches!(budget.refusal(), Some(Refusal::TooLarge(_))));
}

#[test]
fn a_tree_is_refused_for_what_it_needs_not_for_the_step_it_asked_ahead() {
    let capacity = Capacity::new(4, 100);
    let mut budget = capacity.tree_budget();
    assert!(budget.grow(70));
    // A step of 40 ahead would go beyond the whole; the 25 needed do not.
    assert!(!budget.grow(40));
    assert!(budget.grow(25));
    assert_eq!(budget.refusal(), None);
}

#[test]
fn a_tree_refused_its_step_ahead_as_too_large_stays_too_large() {
    let capacity = Capacity::new(4, 100);
    // 10 bytes held beside the budget by the same call (its message's other fields).
    let _message = capacity.hold_bytes(10).unwrap();
    let mut budget = capacity.tree_budget();
    assert!(budget.grow(80));
    assert!(!budget.grow(30), "beyond the whole");
    assert!(
        !budget.grow(15),
        "within the whole, not within what is free"
    );
    assert!(matches!(budget.refusal(), Some(Refusal::TooLarge(_))));
}
