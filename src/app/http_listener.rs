//! The service's HTTP listeners (the AuthZEN face, `/metrics`), served by hyper directly
//! rather than `axum::serve`, which bounds neither how many connections are open nor how
//! long one may take to send a request's headers.
//!
//! - At most `max_connections` at once. Each is a file descriptor the gRPC listener
//!   shares and may hold a body being read; one beyond waits in the listen backlog until
//!   another closes, so a flood of connections cannot take every descriptor away from the
//!   gRPC faces.
//! - A request's headers must arrive within [`HEADER_TIMEOUT`] of the connection opening or
//!   of the previous answer, which is also how long an idle keep-alive connection is kept:
//!   a peer that opens connections and sends nothing does not hold them (the AuthZEN face
//!   reads a body within 10 s of its own).
//! - On shutdown no connection is accepted, idle ones close, and those answering finish.

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

/// How long a connection may take to send a request's headers, idle time before them
/// included.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `router` on `listener` until `shutdown` resolves, then waits for the connections
/// to finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    max_connections: u32,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_timed(listener, router, max_connections, HEADER_TIMEOUT, shutdown).await
}

async fn serve_timed(
    listener: TcpListener,
    router: Router,
    max_connections: u32,
    header_timeout: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(max_connections as usize));
    let (stop, stopping) = watch::channel(false);
    let mut shutdown = pin!(shutdown);
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
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
                    backoff(&error).await;
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
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = async { stopping.wait_for(|stop| *stop).await.is_ok() } => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
            drop(slot);
        });
    }
    let _ = stop.send(true);
    // Every connection gives its slot back when it ends.
    let _ = slots.acquire_many(max_connections).await;
    Ok(())
}

/// After a failed `accept`: a connection the peer reset is forgotten at once; a resource
/// exhausted (descriptors, memory) is given a second before the next try, as hyper's and
/// axum's own loops do, rather than spinning.
async fn backoff(error: &std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        error.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::warn!(%error, "an HTTP listener could not accept a connection; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::Router;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

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
            Duration::from_millis(300),
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
