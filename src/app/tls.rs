//! TLS and mutual TLS on the gRPC listener: bearer tokens and resources cross the network
//! between a FHIR server (or Envoy) and this service, so they travel encrypted, and with a
//! client CA each caller is known by its certificate ([`Caller`]).
//!
//! The certificate, key and client CA are files, read again every `[tls] reload_secs`: when
//! Kubernetes rotates a mounted Secret, new connections get the new certificate, while
//! established connections (and their calls in flight) keep the session they have.
//! A file that cannot be read or parsed at start-up stops the service, naming its key; after
//! start-up it is logged and the last good configuration keeps serving.
//!
//! Handshakes run beside the accept loop, each bounded in time, so a client that never
//! finishes one holds nothing but its own socket. A client without a certificate completes
//! the handshake even under mutual TLS: health checks stay reachable, and the API answers
//! it `UNAUTHENTICATED` by name instead of a bare handshake alert. A certificate that does
//! not chain to the client CA fails the handshake.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::crypto::aws_lc_rs;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};
use tokio_rustls::server::TlsStream;
use tonic::transport::server::Connected;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::authorize::Caller;
use crate::config::TlsConfig;

/// Longest a client may take to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshaken connections waiting for the server to take them.
const ACCEPTED_BACKLOG: usize = 128;
/// Idle time before TCP keepalive probes start.
pub const TCP_KEEPALIVE: Duration = Duration::from_secs(60);
/// Handshakes in progress at once; beyond it the listener stops accepting until one ends,
/// so a flood of clients that never finish holds a bounded number of sockets.
const MAX_HANDSHAKES: usize = 1024;

/// A TLS file that cannot be used; the message names its configuration key.
#[derive(Debug, thiserror::Error)]
#[error("configuration key `{key}`: {message}")]
pub struct TlsError {
    pub key: &'static str,
    pub message: String,
}

fn tls_error(key: &'static str, message: impl Into<String>) -> TlsError {
    TlsError {
        key,
        message: message.into(),
    }
}

/// The listener's TLS configuration, swapped whole when its files change.
#[derive(Debug)]
pub struct TlsFiles {
    config: TlsConfig,
    current: RwLock<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    server: Arc<ServerConfig>,
    /// The files' contents it was built from, to notice a change.
    contents: Contents,
}

/// The bytes of the three files.
#[derive(Debug, PartialEq, Eq)]
struct Contents {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
}

impl TlsFiles {
    /// Reads and checks the files: an error here stops the start-up.
    pub fn load(config: &TlsConfig) -> Result<Arc<Self>, TlsError> {
        let contents = read_all(config)?;
        let server = server_config(&contents)?;
        Ok(Arc::new(TlsFiles {
            config: config.clone(),
            current: RwLock::new(Loaded { server, contents }),
        }))
    }

    fn acceptor(&self) -> TlsAcceptor {
        let current = self
            .current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        TlsAcceptor::from(Arc::clone(&current.server))
    }

    /// Reads the files again; builds and installs a new configuration when they changed.
    /// Returns whether it did.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let contents = read_all(&self.config)?;
        let unchanged = self
            .current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contents
            == contents;
        if unchanged {
            return Ok(false);
        }
        let server = server_config(&contents)?;
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Loaded { server, contents };
        Ok(true)
    }
}

/// Reloads `files` every `reload_secs` until the returned task is aborted.
pub fn reload_periodically(files: Arc<TlsFiles>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(files.config.reload_interval);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval.tick().await;
        let mut last_error = None;
        loop {
            interval.tick().await;
            // File reads block: off the runtime's workers.
            let reloading = Arc::clone(&files);
            let Ok(reloaded) = tokio::task::spawn_blocking(move || reloading.reload()).await else {
                continue;
            };
            match reloaded {
                Ok(true) => {
                    last_error = None;
                    tracing::info!("TLS certificate reloaded; new connections use it");
                }
                Ok(false) => {}
                Err(error) => {
                    let message = error.to_string();
                    if last_error.as_ref() != Some(&message) {
                        tracing::warn!(%message, "TLS files changed but cannot be used; still serving the previous certificate");
                    }
                    last_error = Some(message);
                }
            }
        }
    })
}

fn read_all(config: &TlsConfig) -> Result<Contents, TlsError> {
    let read = |key: &'static str, path: &Path| {
        std::fs::read(path)
            .map_err(|error| tls_error(key, format!("cannot read {}: {error}", path.display())))
    };
    Ok(Contents {
        cert: read("tls.cert_file", &config.cert_file)?,
        key: read("tls.key_file", &config.key_file)?,
        client_ca: config
            .client_ca_file
            .as_deref()
            .map(|path| read("tls.client_ca_file", path))
            .transpose()?,
    })
}

/// The rustls configuration of the files' contents, with the aws-lc-rs provider the rest
/// of the service (JWT verification, HTTPS clients) uses; mutual TLS exactly when the
/// contents hold a client CA, which they do exactly when one is configured.
fn server_config(contents: &Contents) -> Result<Arc<ServerConfig>, TlsError> {
    let chain =
        certificates(&contents.cert).map_err(|message| tls_error("tls.cert_file", message))?;
    let key = PrivateKeyDer::from_pem_slice(&contents.key)
        .map_err(|error| tls_error("tls.key_file", format!("no usable private key: {error}")))?;
    let provider = Arc::new(aws_lc_rs::default_provider());
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|error| tls_error("tls", error.to_string()))?;
    let builder = match &contents.client_ca {
        Some(ca_pem) => {
            let mut roots = RootCertStore::empty();
            for ca in
                certificates(ca_pem).map_err(|message| tls_error("tls.client_ca_file", message))?
            {
                roots.add(ca).map_err(|error| {
                    tls_error(
                        "tls.client_ca_file",
                        format!("not a CA certificate: {error}"),
                    )
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|error| tls_error("tls.client_ca_file", error.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut server = builder.with_single_cert(chain, key).map_err(|error| {
        tls_error(
            "tls.key_file",
            format!("the key does not fit the certificate: {error}"),
        )
    })?;
    // gRPC is HTTP/2 only; clients such as grpc-go refuse a server that does not say so.
    server.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(server))
}

fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| format!("not PEM certificates: {error}"))?;
    if chain.is_empty() {
        return Err("holds no PEM certificate".to_owned());
    }
    Ok(chain)
}

/// One accepted TLS connection and who is on the other end.
#[derive(Debug)]
pub struct TlsConnection {
    stream: TlsStream<TcpStream>,
    caller: Caller,
}

impl Connected for TlsConnection {
    /// Every request of the connection carries its [`Caller`] in its extensions.
    type ConnectInfo = Caller;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.caller.clone()
    }
}

impl AsyncRead for TlsConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(context, buffer)
    }
}

impl AsyncWrite for TlsConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(context, buffer)
    }

    fn poll_flush(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(context)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(context)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffers: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(context, buffers)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// The handshaken connections of a listener, each with the connection slot it was accepted
/// in, for tonic's `serve_with_incoming`. Dropping it stops accepting.
pub struct TlsIncoming {
    accepted: mpsc::Receiver<(TlsConnection, OwnedSemaphorePermit)>,
    accept_loop: tokio::task::JoinHandle<()>,
}

impl Drop for TlsIncoming {
    fn drop(&mut self) {
        self.accept_loop.abort();
    }
}

impl tokio_stream::Stream for TlsIncoming {
    type Item = Result<(TlsConnection, OwnedSemaphorePermit), io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.accepted.poll_recv(context).map(|next| next.map(Ok))
    }
}

/// Accepts on `listener` and hands over the connections whose handshake succeeded. Each is
/// accepted in a slot of `connections`, taken before `accept` and held through its
/// handshake and its life, so that at most that many are open, handshaking or waiting to be
/// taken: one more waits in the listen backlog.
pub fn incoming(
    listener: TcpListener,
    files: Arc<TlsFiles>,
    connections: Arc<Semaphore>,
) -> TlsIncoming {
    let (sender, accepted) = mpsc::channel(ACCEPTED_BACKLOG);
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    let accept_loop = tokio::spawn(async move {
        loop {
            let Ok(slot) = Arc::clone(&connections).acquire_owned().await else {
                return;
            };
            let Ok(permit) = Arc::clone(&handshakes).acquire_owned().await else {
                return;
            };
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    if let Some(pause) = super::accept_pause(&error) {
                        tokio::time::sleep(pause).await;
                    }
                    continue;
                }
            };
            // Small gRPC answers must not wait for the peer's delayed ACK; keepalive notices
            // peers that are gone, as on the plaintext listener.
            let _ = stream.set_nodelay(true);
            let keepalive = socket2::TcpKeepalive::new().with_time(TCP_KEEPALIVE);
            let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive);
            let acceptor = files.acceptor();
            let sender = sender.clone();
            tokio::spawn(async move {
                let handshake =
                    tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await;
                drop(permit);
                match handshake {
                    Ok(Ok(stream)) => {
                        let caller = caller_of(&stream);
                        let _ = sender.send((TlsConnection { stream, caller }, slot)).await;
                    }
                    Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
            });
        }
    });
    TlsIncoming {
        accepted,
        accept_loop,
    }
}

/// The identities of the verified client certificate: its URI (e.g. SPIFFE IDs) and DNS
/// subject alternative names. The chain was verified during the handshake.
fn caller_of(stream: &TlsStream<TcpStream>) -> Caller {
    let Some(leaf) = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(<[_]>::first)
    else {
        return Caller::default();
    };
    // rustls verified the chain; a leaf this parser cannot read has no identity or
    // validity to check, so it counts as no certificate (refused under mutual TLS).
    let Ok((_, certificate)) = X509Certificate::from_der(leaf.as_ref()) else {
        return Caller::default();
    };
    let (mut uris, mut dns_names) = (Vec::new(), Vec::new());
    if let Ok(Some(names)) = certificate.subject_alternative_name() {
        for name in &names.value.general_names {
            match name {
                GeneralName::URI(uri) => uris.push((*uri).to_owned()),
                GeneralName::DNSName(dns) => dns_names.push((*dns).to_owned()),
                _ => {}
            }
        }
    }
    Caller::certified(uris, dns_names).valid_until(certificate.validity().not_after.timestamp())
}
