use super::*;

fn length(body: &[u8]) -> usize {
    body.len()
}

#[tokio::test]
async fn small_and_large_bodies_are_both_parsed() {
    assert_eq!(parse_off_runtime(b"{}", length).await, Some(2));
    let large = vec![b' '; BLOCKING_PARSE_BYTES + 1];
    assert_eq!(
        parse_off_runtime(&large, length).await,
        Some(BLOCKING_PARSE_BYTES + 1)
    );
}

#[tokio::test]
async fn large_work_runs_off_the_runtime_thread() {
    let runtime = std::thread::current().id();
    let on_runtime =
        |size| off_runtime_if_large(size, move || std::thread::current().id() == runtime);
    assert_eq!(on_runtime(BLOCKING_PARSE_BYTES).await, Some(true));
    assert_eq!(on_runtime(BLOCKING_PARSE_BYTES + 1).await, Some(false));
}
