use http_body_util::BodyExt as _;

use super::*;
use crate::grpc::wire;

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

/// A message of `fields` empty length-delimited fields, framed.
fn empty_fields(fields: usize) -> Vec<u8> {
    let payload = [0x0a, 0x00].repeat(fields);
    let mut framed = vec![0];
    framed.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_be_bytes());
    framed.extend_from_slice(&payload);
    framed
}

fn weighed(chunks: Vec<Vec<u8>>, capacity: &Capacity) -> CountedMessages {
    CountedMessages::weighed(body(chunks), capacity.clone(), Schema::ENVOY)
}

/// 100 empty fields, 200 bytes sent: 400 and 216 a field (and one for the message) once
/// decoded with what prost's refusal of it would hold, and its 205 bytes framed in tonic's
/// buffer while it is decoded.
const SMALL_WEIGHT: usize = 2 * 200 + 101 * wire::FIELD_BYTES + wire::refusal_bytes(2) + 205;

#[tokio::test]
async fn a_whole_message_holds_its_weight_until_the_body_is_read_again() {
    let capacity = Capacity::new(8, 100_000);
    let (first, second) = (empty_fields(100), empty_fields(100));
    let mut counted = weighed(
        vec![first, second[..3].to_vec(), second[3..].to_vec()],
        &capacity,
    );
    counted.frame().await.unwrap().unwrap();
    assert!(
        capacity
            .try_hold_bytes(100_000 - SMALL_WEIGHT + 1)
            .is_none(),
        "the first message's weight held"
    );
    assert!(capacity.try_hold_bytes(100_000 - SMALL_WEIGHT).is_some());
    // Read again: the first's weight is given back, the second's three bytes held three
    // times (tonic's, and the copy weighed as its vector grows).
    counted.frame().await.unwrap().unwrap();
    assert!(capacity.try_hold_bytes(100_000 - 9 + 1).is_none());
    assert!(capacity.try_hold_bytes(100_000 - 9).is_some());
    counted.frame().await.unwrap().unwrap();
    assert!(
        capacity
            .try_hold_bytes(100_000 - SMALL_WEIGHT + 1)
            .is_none()
    );
    assert!(capacity.try_hold_bytes(100_000 - SMALL_WEIGHT).is_some());
    drop(counted);
    assert!(
        capacity.try_hold_bytes(100_000).is_some(),
        "every byte given back"
    );
}

/// Messages that arrive together are decoded before the body is read again: each keeps its
/// weight until then.
#[tokio::test]
async fn messages_in_one_chunk_hold_their_weights_together() {
    let capacity = Capacity::new(8, 100_000);
    let both = [empty_fields(100), empty_fields(100)].concat();
    let mut counted = weighed(vec![both], &capacity);
    counted.frame().await.unwrap().unwrap();
    assert!(
        capacity
            .try_hold_bytes(100_000 - 2 * SMALL_WEIGHT + 1)
            .is_none()
    );
    assert!(
        capacity
            .try_hold_bytes(100_000 - 2 * SMALL_WEIGHT)
            .is_some()
    );
}

#[tokio::test]
async fn a_message_weighing_more_than_the_whole_budget_is_too_large() {
    let capacity = Capacity::new(8, 100_000);
    let mut counted = weighed(vec![empty_fields(1_000)], &capacity);
    let refused = counted.frame().await.unwrap().unwrap_err();
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
    assert!(refused.message().contains("once decoded"), "{refused:?}");
    assert!(refused.metadata().get("grpc-retry-pushback-ms").is_none());
    assert!(capacity.try_hold_bytes(100_000).is_some(), "nothing kept");
}

#[tokio::test]
async fn a_message_weighing_more_than_is_free_is_busy() {
    let capacity = Capacity::new(8, 100_000);
    let _elsewhere = capacity.hold_bytes(100_000 - SMALL_WEIGHT + 1).unwrap();
    let mut counted = weighed(vec![empty_fields(100)], &capacity);
    let refused = counted.frame().await.unwrap().unwrap_err();
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
    assert!(refused.metadata().get("grpc-retry-pushback-ms").is_some());
}

/// Without a schema (reflection) a message is counted by its bytes alone.
#[tokio::test]
async fn without_a_schema_a_message_is_not_weighed() {
    let capacity = Capacity::new(8, 1_000);
    let mut counted = CountedMessages::new(body(vec![empty_fields(100)]), capacity.clone());
    counted.frame().await.unwrap().unwrap();
    assert!(capacity.try_hold_bytes(1_000).is_some());
}
