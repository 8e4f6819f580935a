use super::*;

/// A call that holds `N` bytes across an await, as a handler's decoded request does.
async fn handler<const N: usize>(answer: Result<u8, tonic::Status>) -> Result<u8, tonic::Status> {
    let held = [7_u8; N];
    tokio::task::yield_now().await;
    answer.map(|value| value.wrapping_add(held[N - 1]).wrapping_sub(7))
}

#[test]
fn observing_a_call_adds_a_few_words_not_another_copy_of_it() {
    let span = Span::none();
    let call = handler::<4096>(Ok(1));
    let bare = std::mem::size_of_val(&call);
    let observed = observe(Rpc::CheckAccess, &span, call);
    assert!(bare >= 4096);
    assert!(
        std::mem::size_of_val(&observed) <= bare + 64,
        "{} bytes around a {bare}-byte call",
        std::mem::size_of_val(&observed)
    );
}

#[tokio::test]
async fn the_answer_and_the_error_pass_unchanged() {
    let span = Span::none();
    assert_eq!(
        observe(Rpc::CheckAccess, &span, handler::<8>(Ok(41)))
            .await
            .unwrap(),
        41
    );
    let error = observe(
        Rpc::CheckAccess,
        &span,
        handler::<8>(Err(tonic::Status::unavailable("issuer down"))),
    )
    .await
    .unwrap_err();
    assert_eq!(error.code(), tonic::Code::Unavailable);
    assert_eq!(error.message(), "issuer down");
}

#[test]
fn an_owned_span_is_kept_by_the_future_and_entered_around_the_call() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    tracing::subscriber::with_default(tracing_subscriber::registry(), || {
        let span = tracing::info_span!("rpc");
        let expected = span.id();
        assert!(expected.is_some());
        let call = async { Ok::<_, tonic::Status>(Span::current().id()) };
        // Owned, the span lets the observed call be boxed as a `'static` answer.
        let answer: std::pin::Pin<Box<dyn Future<Output = _> + Send + 'static>> =
            Box::pin(observe(Rpc::CheckAccess, span, call));
        assert_eq!(runtime.block_on(answer).unwrap(), expected);
    });
}
