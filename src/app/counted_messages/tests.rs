use http_body_util::BodyExt as _;

use super::*;

fn message(length: usize) -> Vec<u8> {
    let mut framed = vec![0];
    framed.extend_from_slice(&u32::try_from(length).unwrap().to_be_bytes());
    framed.resize(PREFIX + length, b'x');
    framed
}

/// A body of `chunks`, as frames.
fn body(chunks: Vec<Vec<u8>>) -> Body {
    let frames: Vec<Result<Frame<Bytes>, tonic::Status>> = chunks
        .into_iter()
        .map(|chunk| Ok(Frame::data(Bytes::from(chunk))))
        .collect();
    Body::new(http_body_util::StreamBody::new(tokio_stream::iter(frames)))
}

#[tokio::test]
async fn a_whole_message_gives_its_bytes_back() {
    let capacity = Capacity::new(8, 100);
    // Two messages of 45 bytes (50 framed) in three chunks: never more than 100 held.
    let (first, second) = (message(45), message(45));
    let chunks = vec![
        first[..30].to_vec(),
        [&first[30..], &second[..10]].concat(),
        second[10..].to_vec(),
    ];
    let mut counted = CountedMessages::new(body(chunks), capacity.clone());
    while let Some(frame) = counted.frame().await {
        frame.unwrap();
    }
    assert!(counted.held.is_none());
    assert!(capacity.hold_bytes(100).is_some(), "every byte given back");
}

#[tokio::test]
async fn a_message_beyond_the_budget_ends_the_call() {
    let capacity = Capacity::new(8, 100);
    let _elsewhere = capacity.hold_bytes(60).unwrap();
    let mut counted = CountedMessages::new(
        body(vec![message(45)[..30].to_vec(), message(45)[30..].to_vec()]),
        capacity.clone(),
    );
    assert!(
        counted.frame().await.unwrap().is_ok(),
        "30 of the 40 bytes left"
    );
    let refused = counted.frame().await.unwrap().unwrap_err();
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
    drop(counted);
    assert!(
        capacity.hold_bytes(40).is_some(),
        "the refused message's bytes given back"
    );
}

#[tokio::test]
async fn a_partial_message_holds_its_bytes_until_the_stream_ends() {
    let capacity = Capacity::new(8, 100);
    let mut counted =
        CountedMessages::new(body(vec![message(80)[..70].to_vec()]), capacity.clone());
    counted.frame().await.unwrap().unwrap();
    assert!(
        capacity.hold_bytes(31).is_none(),
        "70 held by the partial message"
    );
    drop(counted);
    assert!(capacity.hold_bytes(100).is_some());
}
