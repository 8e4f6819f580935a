use http_body_util::{Full, StreamBody};

use super::*;

fn body(chunks: &[&'static [u8]]) -> impl Body<Data = Bytes> {
    let frames: Vec<Result<http_body::Frame<Bytes>, std::convert::Infallible>> = chunks
        .iter()
        .map(|chunk| Ok(http_body::Frame::data(Bytes::from_static(chunk))))
        .collect();
    StreamBody::new(tokio_stream::iter(frames))
}

#[tokio::test]
async fn a_body_in_chunks_is_read_whole_and_held_until_dropped() {
    let capacity = Capacity::new(8, 10);
    let read = capacity
        .read_whole(body(&[b"ab", b"c", b"defg"]), 100)
        .await
        .unwrap();
    assert_eq!(read.bytes, Bytes::from_static(b"abcdefg"));
    // 7 of the 10 bytes are held: a body of 4 more is refused, one of 3 is read.
    assert_eq!(
        capacity
            .read_whole(body(&[b"hijk"]), 100)
            .await
            .unwrap_err(),
        Unread::OverBudget
    );
    let three = capacity.read_whole(body(&[b"hij"]), 100).await.unwrap();
    drop((read, three));
    let again = capacity.read_whole(body(&[b"0123456789"]), 100).await;
    assert_eq!(
        again.unwrap().bytes.len(),
        10,
        "dropped bodies give their bytes back"
    );
}

#[tokio::test]
async fn a_body_over_its_limit_is_refused_and_holds_nothing() {
    let capacity = Capacity::new(8, 10);
    assert_eq!(
        capacity
            .read_whole(body(&[b"abcd", b"ef"]), 5)
            .await
            .unwrap_err(),
        Unread::TooLarge
    );
    let whole = capacity.read_whole(Full::new(Bytes::from_static(b"0123456789")), 10);
    assert_eq!(whole.await.unwrap().bytes.len(), 10);
}
