//! The service's HTTP listeners (the AuthZEN face, `/metrics`), served by hyper directly
//! rather than `axum::serve`, which bounds neither how many connections are open nor how
//! long one may take to send a request's headers.
//!
//! - At most `max_connections` at once. Each is a file descriptor the gRPC listener
//!   shares and may hold a body being read; one beyond waits in the listen backlog until
//!   another closes, so a flood of connections cannot take every descriptor away from the
//!   gRPC faces.
//! - A request's headers must arrive within 30 s of the connection opening or
//!   of the previous answer, which is also how long an idle keep-alive connection is kept:
//!   a peer that opens connections and sends nothing does not hold them (the AuthZEN face
//!   reads a body within 10 s of its own).
//! - A connection lives at most 5 minutes: then it closes after the answer in progress, so
//!   a peer asking now and then cannot keep its slot for ever.
//! - A closing connection (too old, or the service stopping) has 10 s to finish its answer,
//!   then is dropped: a peer that does not read its answer cannot hold the slot, nor stop
//!   the service from stopping. On shutdown no connection is accepted and idle ones close.

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

/// The times a connection is held to.
#[derive(Clone, Copy, Debug)]
struct Timing {
    /// For a request's headers, idle time before them included.
    headers: Duration,
    /// A connection's life: past it the connection closes after the answer in progress, so
    /// a peer asking now and then cannot keep its slot for ever.
    max_age: Duration,
    /// For a closing connection (too old, or the service stopping) to finish its answer;
    /// then it is dropped, which also bounds a peer that does not read that answer.
    grace: Duration,
}

const TIMING: Timing = Timing {
    headers: Duration::from_secs(30),
    max_age: Duration::from_secs(300),
    grace: Duration::from_secs(10),
};

/// Serves `router` on `listener` until `shutdown` resolves, then waits for the connections
/// to finish, at most [`Timing::grace`].
pub async fn serve(
    listener: TcpListener,
    router: Router,
    max_connections: u32,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_timed(listener, router, max_connections, TIMING, shutdown).await
}

async fn serve_timed(
    listener: TcpListener,
    router: Router,
    max_connections: u32,
    timing: Timing,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(max_connections as usize));
    let (stop, stopping) = watch::channel(false);
    let mut shutdown = pin!(shutdown);
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(timing.headers);
    loop {
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => slot,
            () = &mut shutdown => break,
        };
        // The semaphore is never closed.
        let Ok(slot) = slot else { break };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    if let Some(pause) = super::accept_pause(&error) {
                        tokio::time::sleep(pause).await;
                    }
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let connection = builder.serve_connection(
            TokioIo::new(stream),
            TowerToHyperService::new(router.clone()),
        );
        let mut stopping = stopping.clone();
        tokio::spawn(async move {
            let mut connection = pin!(connection);
            let closing = tokio::select! {
                _ = connection.as_mut() => false,
                () = tokio::time::sleep(timing.max_age) => true,
                _ = async { stopping.wait_for(|stop| *stop).await.is_ok() } => true,
            };
            if closing {
                connection.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(timing.grace, connection).await;
            }
            drop(slot);
        });
    }
    let _ = stop.send(true);
    // Every connection gives its slot back when it ends.
    let _ = slots.acquire_many(max_connections).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::Router;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::Timing;

    const LONG: Timing = Timing {
        headers: Duration::from_secs(60),
        max_age: Duration::from_secs(60),
        grace: Duration::from_secs(60),
    };

    /// Serves `router` with `timing` on a new port; the sender stops it.
    async fn serving(
        router: Router,
        timing: Timing,
    ) -> (
        std::net::SocketAddr,
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<std::io::Result<()>>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(super::serve_timed(
            listener,
            router,
            8,
            timing,
            async move {
                let _ = stopped.await;
            },
        ));
        (address, stop, served)
    }

    /// A peer that asks again before each header time is up still loses its connection
    /// once the connection is too old.
    #[tokio::test]
    async fn a_connection_that_keeps_asking_is_closed_when_too_old() {
        let router = Router::new().route("/", get(|| async { "ok" }));
        let timing = Timing {
            headers: Duration::from_millis(500),
            max_age: Duration::from_secs(1),
            ..LONG
        };
        let (address, _stop, _served) = serving(router, timing).await;
        let mut peer = TcpStream::connect(address).await.unwrap();
        let kept = tokio::time::timeout(Duration::from_secs(10), async {
            let mut asked = 0;
            loop {
                if peer
                    .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
                    .await
                    .is_err()
                {
                    return asked;
                }
                let mut answer = [0_u8; 256];
                match peer.read(&mut answer).await {
                    Ok(0) | Err(_) => return asked,
                    Ok(_) => asked += 1,
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
        .await
        .expect("closed within 10 s");
        assert!(kept >= 2, "answered {kept} times before it closed");
    }

    /// A peer that does not read a large answer does not keep the service from stopping.
    #[tokio::test]
    async fn a_peer_that_does_not_read_its_answer_does_not_hold_the_stop() {
        let large = "x".repeat(16 << 20);
        let router = Router::new().route("/", get(move || async move { large }));
        let timing = Timing {
            grace: Duration::from_millis(500),
            ..LONG
        };
        let (address, stop, served) = serving(router, timing).await;
        let mut peer = TcpStream::connect(address).await.unwrap();
        peer.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), served)
            .await
            .expect("stopped within the grace")
            .unwrap()
            .unwrap();
    }

    /// A peer that sends nothing, one that sends half a request's headers, and one that
    /// stays idle after an answer are all closed once the header time is up.
    #[tokio::test]
    async fn connections_that_send_no_headers_are_closed() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let router = Router::new().route("/", get(|| async { "ok" }));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(super::serve_timed(
            listener,
            router,
            8,
            Timing {
                headers: Duration::from_millis(300),
                ..LONG
            },
            async move {
                let _ = stopped.await;
            },
        ));

        let silent = TcpStream::connect(address).await.unwrap();
        let mut partial = TcpStream::connect(address).await.unwrap();
        partial
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n")
            .await
            .unwrap();
        let mut idle = TcpStream::connect(address).await.unwrap();
        idle.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut answer = [0_u8; 64];
        let read = idle.read(&mut answer).await.unwrap();
        assert!(answer[..read].starts_with(b"HTTP/1.1 200"));

        for mut stream in [silent, partial, idle] {
            let mut rest = Vec::new();
            let closed =
                tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
            assert!(closed.is_ok(), "still open after the header time");
        }
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), served)
            .await
            .expect("stops once its connections are gone")
            .unwrap()
            .unwrap();
    }
}
