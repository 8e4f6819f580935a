use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};
use tokio::sync::mpsc;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::ReceiverStream;

use super::{Admitted, Bounded};

const TIMEOUT: Duration = Duration::from_millis(100);

/// A listener stand-in: the server's ends of connections sent on the returned sender.
fn listener(
    limit: usize,
) -> (
    mpsc::Sender<std::io::Result<DuplexStream>>,
    Bounded<ReceiverStream<std::io::Result<DuplexStream>>>,
) {
    let (sender, accepted) = mpsc::channel(8);
    let bounded = Bounded::with_preface_timeout(ReceiverStream::new(accepted), limit, TIMEOUT);
    (sender, bounded)
}

async fn connect(sender: &mpsc::Sender<std::io::Result<DuplexStream>>) -> DuplexStream {
    let (client, server) = duplex(1024);
    sender.send(Ok(server)).await.unwrap();
    client
}

async fn next(
    bounded: &mut Bounded<ReceiverStream<std::io::Result<DuplexStream>>>,
) -> Admitted<DuplexStream> {
    bounded.next().await.unwrap().unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_connection_beyond_the_limit_waits_until_one_closes() {
    let (sender, mut bounded) = listener(1);
    let _first_client = connect(&sender).await;
    let _second_client = connect(&sender).await;
    let first = next(&mut bounded).await;
    let waiting = tokio::time::timeout(Duration::from_secs(60), bounded.next()).await;
    assert!(
        waiting.is_err(),
        "a second connection was admitted beside the first"
    );
    drop(first);
    let second = tokio::time::timeout(Duration::from_secs(1), bounded.next()).await;
    assert!(
        matches!(second, Ok(Some(Ok(_)))),
        "admitted once the first closed"
    );
}

/// A failed accept is paused on, not handed on (tonic would poll again at once), and its
/// slot waits for the next connection; a connection its peer reset is passed over at once.
#[tokio::test(start_paused = true)]
async fn a_failed_accept_is_paused_on_and_keeps_its_slot() {
    let (sender, mut bounded) = listener(1);
    for _ in 0..3 {
        sender
            .send(Err(std::io::Error::other("accept failed")))
            .await
            .unwrap();
        sender
            .send(Err(std::io::ErrorKind::ConnectionReset.into()))
            .await
            .unwrap();
    }
    let _client = connect(&sender).await;
    let started = tokio::time::Instant::now();
    let admitted = tokio::time::timeout(Duration::from_secs(1), bounded.next()).await;
    assert!(matches!(admitted, Ok(Some(Ok(_)))));
    let pause = crate::app::ACCEPT_PAUSE;
    assert!(
        started.elapsed() >= pause * 3 && started.elapsed() < pause * 4,
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn a_connection_without_its_preface_in_time_is_closed() {
    let (sender, mut bounded) = listener(4);
    // Nothing at all, then a part of the preface: both time out.
    let _silent = connect(&sender).await;
    let mut partial = connect(&sender).await;
    partial.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    for _ in 0..2 {
        let mut admitted = next(&mut bounded).await;
        let mut buffer = [0_u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                match admitted.read(&mut buffer).await {
                    Ok(0) => panic!("the connection ended instead of timing out"),
                    Ok(_) => continue,
                    Err(error) => break error,
                }
            }
        })
        .await
        .expect("closed once the preface was overdue");
        assert_eq!(read.kind(), std::io::ErrorKind::TimedOut);
    }
}

#[tokio::test(start_paused = true)]
async fn a_connection_that_sent_its_preface_may_stay_quiet() {
    let (sender, mut bounded) = listener(4);
    let mut client = connect(&sender).await;
    let mut admitted = next(&mut bounded).await;
    client
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    let mut preface = [0_u8; 24];
    admitted.read_exact(&mut preface).await.unwrap();
    tokio::time::sleep(TIMEOUT * 10).await;
    client.write_all(b"later").await.unwrap();
    let mut later = [0_u8; 5];
    admitted.read_exact(&mut later).await.unwrap();
    assert_eq!(&later, b"later");
}
