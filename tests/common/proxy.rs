//! A loopback TCP proxy that can be switched off and on, to simulate an upstream (e.g. the
//! introspection endpoint) going down mid-test and coming back on the same address.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Forwards every connection to 127.0.0.1:<port> on to `target`, bytes both ways.
///
/// [`TcpProxy::stop`] closes the listener (new connections are refused) and every open
/// connection (clients see the upstream gone); [`TcpProxy::resume`] listens again on the
/// same port. When the target refuses a connection, the proxy closes the client's.
pub struct TcpProxy {
    address: SocketAddr,
    target: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Mutex<Option<JoinHandle<()>>>,
}

struct Shared {
    accepted: AtomicU64,
    connections: Mutex<Vec<JoinHandle<()>>>,
}

impl TcpProxy {
    /// Starts a proxy to `target` on 127.0.0.1, an ephemeral port.
    pub async fn start(target: SocketAddr) -> TcpProxy {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("a loopback port for the proxy");
        let address = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            accepted: AtomicU64::new(0),
            connections: Mutex::new(Vec::new()),
        });
        let acceptor = spawn_acceptor(listener, target, shared.clone());
        TcpProxy {
            address,
            target,
            shared,
            acceptor: Mutex::new(Some(acceptor)),
        }
    }

    /// `127.0.0.1:<port>`: the same across stop/resume.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// `http://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// Connections accepted since the start (across stop/resume).
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Connections currently being forwarded.
    pub fn open_connections(&self) -> usize {
        let mut connections = self.shared.connections.lock().unwrap();
        connections.retain(|connection| !connection.is_finished());
        connections.len()
    }

    /// Whether the proxy is accepting connections.
    pub fn is_running(&self) -> bool {
        self.acceptor
            .lock()
            .unwrap()
            .as_ref()
            .is_some_and(|acceptor| !acceptor.is_finished())
    }

    /// Stops accepting (the port refuses connections) and closes every open connection.
    /// When it returns, both are done.
    pub async fn stop(&self) {
        let acceptor = self.acceptor.lock().unwrap().take();
        if let Some(acceptor) = acceptor {
            acceptor.abort();
            let _ = acceptor.await; // the listener is dropped once this returns
        }
        let connections = std::mem::take(&mut *self.shared.connections.lock().unwrap());
        for connection in &connections {
            connection.abort();
        }
        for connection in connections {
            let _ = connection.await; // both sockets are closed once this returns
        }
    }

    /// Listens again on the same port (no-op when running). Panics if the port cannot be
    /// bound again within a couple of seconds.
    pub async fn resume(&self) {
        if self.is_running() {
            return;
        }
        let mut last_error = None;
        for _ in 0..40 {
            match TcpListener::bind(self.address).await {
                Ok(listener) => {
                    let acceptor = spawn_acceptor(listener, self.target, self.shared.clone());
                    *self.acceptor.lock().unwrap() = Some(acceptor);
                    return;
                }
                Err(error) => last_error = Some(error),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "the proxy cannot listen on {} again: {:?}",
            self.address, last_error
        );
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        if let Some(acceptor) = self.acceptor.get_mut().unwrap().take() {
            acceptor.abort();
        }
        for connection in self.shared.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }
}

fn spawn_acceptor(
    listener: TcpListener,
    target: SocketAddr,
    shared: Arc<Shared>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            shared.accepted.fetch_add(1, Ordering::SeqCst);
            // No await between spawning and registering: `stop` cannot miss a connection.
            let connection = tokio::spawn(forward(client, target));
            let mut connections = shared.connections.lock().unwrap();
            connections.retain(|connection| !connection.is_finished());
            connections.push(connection);
        }
    })
}

async fn forward(mut client: TcpStream, target: SocketAddr) {
    let Ok(mut upstream) = TcpStream::connect(target).await else {
        return; // dropping the client closes it
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}
