use super::*;
use crate::authorize::Capacity;

/// A parse that asks for as many bytes as its body has, and gives its length.
fn length(body: &[u8], memory: &mut dyn crate::fhir::TreeMemory) -> Option<usize> {
    memory.grow(body.len(), body.len()).map(|_| body.len())
}

#[tokio::test]
async fn small_and_large_bodies_are_both_parsed_and_counted() {
    let large = vec![b' '; BLOCKING_PARSE_BYTES + 1];
    let capacity = Capacity::new(4, 4 * BLOCKING_PARSE_BYTES);
    let mut budget = capacity.tree_budget();
    assert_eq!(
        parse_off_runtime(b"{}", &mut budget, length).await,
        Ok(Some(2))
    );
    assert_eq!(
        parse_off_runtime(&large, &mut budget, length).await,
        Ok(Some(BLOCKING_PARSE_BYTES + 1))
    );
    // What the parse on the blocking pool counted (its copy and its tree) is held by the
    // call's budget.
    assert!(!capacity.tree_budget().take(2 * BLOCKING_PARSE_BYTES));
    drop(budget);
    assert!(capacity.tree_budget().take(4 * BLOCKING_PARSE_BYTES));
}

#[tokio::test]
async fn large_work_runs_off_the_runtime_thread() {
    let runtime = std::thread::current().id();
    let on_runtime =
        |size| off_runtime_if_large(size, move || std::thread::current().id() == runtime);
    assert_eq!(on_runtime(BLOCKING_PARSE_BYTES).await, Some(true));
    assert_eq!(on_runtime(BLOCKING_PARSE_BYTES + 1).await, Some(false));
}
