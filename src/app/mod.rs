//! Wiring: builds the shared state from a [`Config`] and serves every gRPC service on one
//! listener until `shutdown` resolves, then drains in-flight calls. Prometheus metrics are
//! served on a second listener (`[telemetry] metrics_listen`) for as long, health alone on
//! a third (`health_listen`) for probes, and the AuthZEN HTTP face on a fourth
//! (`[authzen] listen`). The gRPC API may also answer on a Unix socket (`unix_listen`,
//! [`unix_socket`]). [`health`] says when the process is live and ready; [`runtime()`] is
//! the async runtime it all runs on.

mod counted_messages;
mod grpc_connections;
pub mod health;
mod http_listener;
mod overload;
mod runtime;
mod single_write;
pub mod tls;
mod unix_socket;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::ext_authz::v3::pb::AuthorizationServer;
use envoy_types::pb::envoy::service::ext_proc::v3::external_processor_server::ExternalProcessorServer;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tower::util::MapResponseLayer;

use self::grpc_connections::{Admitted, Bounded};
use self::health::Health;
use self::overload::ShedLayer;
pub use self::runtime::runtime;
pub use self::single_write::SingleWrite;
use self::tls::{TlsError, TlsFiles};
pub use self::unix_socket::UnixSocket;
use crate::authorize::{Authorizer, Capacity, Servers};
use crate::authzen;
use crate::config::Config;
use crate::envoy::{EnvoyAuthz, EnvoyProcessor};
use crate::grpc::AuthzGrpc;
use crate::grpc::pb::authz_service_server::AuthzServiceServer;
use crate::grpc::pb::{ENVOY_FILE_DESCRIPTOR_SET, FILE_DESCRIPTOR_SET};
use crate::telemetry::{self, Observer};
use crate::token::{Authenticator, KeySetupError};

/// How often an idle HTTP/2 connection is pinged.
const HTTP2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// How long a ping may go unanswered before the connection is closed.
const HTTP2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Streams one HTTP/2 connection may have open at once (hyper's own default; tonic unsets
/// it). A client with more calls in flight opens another connection or waits.
const MAX_STREAMS_PER_CONNECTION: u32 = 200;
/// The decoding limit of the services whose requests are small (health).
pub const SMALL_MESSAGE_BYTES: usize = 16 * 1024;
/// Longest the drain waits for what is still open once it has begun: a stream that never
/// ends (a `Health/Watch`, a reflection stream) would otherwise hold the process until
/// Kubernetes kills it, and the trace exporter's flush would never run. A call is over in
/// microseconds unless it waits for an issuer or for its message; one still waiting then is
/// cut, and its caller retries on another replica.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Streams one HTTP/2 connection may make the server reset, by malformed frames, before it
/// is closed with GOAWAY: hyper's own default.
const MAX_LOCAL_ERROR_RESETS: usize = 1024;
/// A listener's pause after it failed to accept for want of descriptors or memory.
const ACCEPT_PAUSE: Duration = Duration::from_millis(50);

/// Why the service could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Keys(#[from] KeySetupError),
    #[error("gRPC reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot bind health_listen {address}: {error}")]
    HealthListen {
        address: std::net::SocketAddr,
        error: std::io::Error,
    },
    #[error("cannot bind authzen.listen {address}: {error}")]
    AuthzenListen {
        address: std::net::SocketAddr,
        error: std::io::Error,
    },
    #[error("cannot bind unix_listen {path:?}: {error}")]
    UnixListen {
        path: std::path::PathBuf,
        error: std::io::Error,
    },
}

/// The sockets the service answers on.
#[derive(Debug)]
pub struct Listeners {
    /// gRPC: the API, ext_authz, ext_proc, health and reflection.
    pub api: TcpListener,
    /// Prometheus `/metrics`; `None` serves no metrics.
    pub metrics: Option<TcpListener>,
    /// Plaintext `grpc.health.v1` only, for probes; `None`: none.
    pub health: Option<TcpListener>,
    /// The AuthZEN HTTP face; `None`: off (it also needs `[authzen]` in the configuration).
    pub authzen: Option<TcpListener>,
    /// The gRPC API again, on a Unix socket; `None`: none.
    pub unix: Option<UnixSocket>,
}

/// Serves `AuthzService`, Envoy's `Authorization` (ext_authz) and `ExternalProcessor`
/// (ext_proc), gRPC health and reflection
/// on `listener` until `shutdown`, and metrics on `[telemetry] metrics_listen`.
///
/// Tests bind `127.0.0.1:0` themselves and pass the listener, so they know the port. A
/// metrics address that cannot be bound is logged and skipped: observability never stops
/// the authorizer.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), AppError> {
    let metrics = match config.telemetry.metrics_listen {
        Some(address) => match TcpListener::bind(address).await {
            Ok(metrics) => Some(metrics),
            Err(error) => {
                tracing::error!(%address, %error, "cannot bind telemetry.metrics_listen; serving without /metrics");
                None
            }
        },
        None => None,
    };
    // Probes depend on it: a health port that cannot be bound stops the start-up.
    let health = match config.health_listen {
        Some(address) => Some(
            TcpListener::bind(address)
                .await
                .map_err(|error| AppError::HealthListen { address, error })?,
        ),
        None => None,
    };
    // An API face: one that cannot be bound stops the start-up too.
    let authzen = match &config.authzen {
        Some(authzen) => Some(TcpListener::bind(authzen.listen).await.map_err(|error| {
            AppError::AuthzenListen {
                address: authzen.listen,
                error,
            }
        })?),
        None => None,
    };
    let unix = match &config.unix_listen {
        Some(path) => Some(
            UnixSocket::bind(path)
                .await
                .map_err(|error| AppError::UnixListen {
                    path: path.clone(),
                    error,
                })?,
        ),
        None => None,
    };
    let listeners = Listeners {
        api: listener,
        metrics,
        health,
        authzen,
        unix,
    };
    serve(listeners, config, shutdown).await
}

/// [`run`] on listeners bound by the caller (`config.listen`, `config.health_listen`,
/// `config.telemetry.metrics_listen`, `config.authzen.listen` and `config.unix_listen` are
/// not used).
///
/// When `shutdown` resolves, health turns NOT_SERVING on every listener, and after
/// `shutdown_delay_secs` (time for endpoints and load balancers to stop sending new calls)
/// the listener stops accepting and in-flight calls drain.
pub async fn serve(
    listeners: Listeners,
    config: Config,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), AppError> {
    let listener = listeners.api;
    // Before anything else: an unreadable certificate stops the start-up.
    let tls = config.tls.as_ref().map(TlsFiles::load).transpose()?;
    // Before the issuers' keys load, so the startup loads are counted.
    let metrics = listeners
        .metrics
        .and_then(|metrics| telemetry::metrics::install_recorder().map(|handle| (metrics, handle)));
    // Health first, on its own port when there is one: probes get an answer (live, not
    // ready) while the issuers' keys load.
    let max_connections = config.max_connections;
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    // A health request names a service: a few bytes. Never counted against the budget of
    // buffered bytes (health is never refused), so held small instead.
    let health_service = health_service.max_decoding_message_size(SMALL_MESSAGE_BYTES);
    let health = Health::starting(health_reporter).await;
    let _health_server = listeners.health.map(|listener| {
        let health = grpc_server(&config)
            .layer(size_limit_named(config.max_request_bytes))
            .add_service(health_service.clone());
        AbortOnDrop(tokio::spawn(async move {
            let connections = incoming(listener, max_connections);
            if let Err(error) = health.serve_with_incoming(connections).await {
                tracing::error!(%error, "the health listener stopped");
            }
        }))
    });
    crate::grpc::wire::read_descriptors();
    let authenticator =
        Authenticator::new(&config.issuers, &config.cache, config.policy.fhir_version).await?;
    health.ready_when_loaded(Arc::clone(&authenticator)).await;
    // One limit on calls in flight and on request memory for every face.
    let capacity = Capacity::new(
        config.max_concurrent_calls,
        config.max_buffered_request_bytes,
    );
    let authorizer = Arc::new(
        Authorizer::new(
            Arc::clone(&authenticator),
            Observer::new(config.telemetry.audit),
            config.envoy.public_paths.clone(),
            Servers::from_config(&config),
        )
        .with_max_answer_bytes(config.response_filter.max_body_bytes)
        .with_capacity(capacity.clone()),
    );
    let envoy = EnvoyAuthz::new(&config.envoy, Arc::clone(&authorizer));
    let processor = EnvoyProcessor::new(
        Arc::clone(&authorizer),
        capacity.clone(),
        config.response_filter.hide_existence,
    );
    // The HTTP face and the Unix socket stop accepting when the gRPC listener does, and
    // finish their calls.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let drain_started = stopped.clone();
    let authzen_server = match (listeners.authzen, &config.authzen) {
        (Some(listener), Some(settings)) => {
            let router = authzen::router(
                Arc::clone(&authorizer),
                settings,
                config.max_request_bytes,
                capacity.clone(),
            );
            tracing::info!(
                listen = %listener.local_addr().map(|address| address.to_string()).unwrap_or_default(),
                "serving the AuthZEN HTTP face"
            );
            let mut stopped = stopped.clone();
            Some(tokio::spawn(http_listener::serve(
                listener,
                router,
                settings.max_connections,
                async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                },
            )))
        }
        _ => None,
    };
    let authz = AuthzGrpc::new(authorizer);
    let _metrics_server =
        metrics.map(|(metrics, handle)| start_metrics(metrics, handle, authenticator));

    // Both reflection versions: grpcurl before 1.8.8, Evans, older grpcui, Postman before 11,
    // Kreya and Insomnia speak only v1alpha.
    // A reflection request names a file or a symbol: a few bytes. Held small, as each
    // answer echoes its request twice and its stream's messages are counted against the
    // budget only while they arrive.
    let reflection_v1 = reflection_builder()
        .build_v1()?
        .max_decoding_message_size(SMALL_MESSAGE_BYTES);
    let reflection_v1alpha = reflection_builder()
        .build_v1alpha()?
        .max_decoding_message_size(SMALL_MESSAGE_BYTES);
    let authz = AuthzServiceServer::new(authz).max_decoding_message_size(config.max_request_bytes);

    // The runtime `runtime()` chose for the CPUs the pod was given: one thread, or a worker each.
    let runtime = tokio::runtime::Handle::current();
    tracing::info!(
        listen = %listener.local_addr().map(|address| address.to_string()).unwrap_or_default(),
        fhir_version = %config.policy.fhir_version,
        issuers = config.issuers.len(),
        runtime = ?runtime.runtime_flavor(),
        workers = runtime.metrics().num_workers(),
        "smart-authz serving"
    );
    match &config.tls {
        Some(tls) => tracing::info!(
            mutual = tls.client_ca_file.is_some(),
            callers = config.callers.len(),
            "gRPC listener speaks TLS"
        ),
        None if !listener
            .local_addr()
            .is_ok_and(|address| address.ip().is_loopback()) =>
        {
            tracing::warn!(
                "the gRPC listener is plaintext on a non-loopback address: tokens cross the network in clear unless a service mesh encrypts them; configure [tls]"
            );
        }
        None => {}
    }
    // `run` refuses this configuration; a caller binding its own listeners may not have.
    if listeners.unix.is_some()
        && config
            .tls
            .as_ref()
            .is_some_and(|tls| tls.client_ca_file.is_some())
    {
        tracing::warn!(
            "the Unix socket carries no client certificate: under mutual TLS every call on it is refused"
        );
    }
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    let ignored = crate::config::ignored_environment();
    if !ignored.is_empty() {
        tracing::warn!(
            ?ignored,
            "Kubernetes service links share the configuration's prefix: not read as configuration"
        );
    }
    if config.development {
        tracing::warn!(
            "running on the built-in DEVELOPMENT configuration: its signing key is public; never expose this server"
        );
    }
    let router = grpc_server(&config)
        .layer(ShedLayer::new(capacity, config.max_request_bytes))
        .layer(size_limit_named(config.max_request_bytes))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(authz)
        .add_service(
            AuthorizationServer::new(envoy).max_decoding_message_size(config.max_request_bytes),
        )
        .add_service(
            ExternalProcessorServer::new(processor)
                .max_decoding_message_size(config.max_request_bytes),
        );
    let delay = config.shutdown_delay;
    let shutdown = async move {
        shutdown.await;
        tracing::info!(
            delay_secs = delay.as_secs(),
            "shutting down: health is NOT_SERVING"
        );
        health.shutting_down().await;
        tokio::time::sleep(delay).await;
        tracing::info!("draining in-flight calls");
        let _ = stop.send(true);
    };
    // Plaintext: a local socket crosses no network, and its file's mode says who connects.
    let unix_router = router.clone();
    let unix = async move {
        let Some(socket) = listeners.unix else {
            return Ok(());
        };
        tracing::info!(path = %socket.path().display(), "serving the gRPC API on a Unix socket too");
        let (connections, _file) = socket.incoming();
        // Held to the TCP listener's rules: a bound, the preface in time, a pause on errors.
        let connections = Bounded::new(connections, max_connections);
        let mut stopped = stopped;
        unix_router
            .serve_with_incoming_shutdown(connections, async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            })
            .await
    };
    let tcp = async move {
        match tls {
            Some(files) => {
                let _reload = AbortOnDrop(tls::reload_periodically(Arc::clone(&files)));
                use tokio_stream::StreamExt as _;
                // h2 above the TLS stream writes each answer with its trailers too: one record.
                // The slot is taken before the handshake: the cap holds handshakes too.
                let slots = Arc::new(tokio::sync::Semaphore::new(max_connections));
                let connections = tls::incoming(listener, files, slots).map(|accepted| {
                    accepted.map(|(connection, slot)| Admitted::new(SingleWrite(connection), slot))
                });
                router
                    .serve_with_incoming_shutdown(connections, shutdown)
                    .await
            }
            None => {
                router
                    .serve_with_incoming_shutdown(incoming(listener, max_connections), shutdown)
                    .await
            }
        }
    };
    let drained = async move {
        tokio::try_join!(tcp, unix)?;
        if let Some(server) = authzen_server {
            match server.await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::error!(%error, "the AuthZEN listener stopped"),
                Err(error) => tracing::error!(%error, "the AuthZEN listener failed"),
            }
        }
        Ok::<(), AppError>(())
    };
    let mut draining = drain_started;
    let deadline = async move {
        let _ = draining.wait_for(|stop| *stop).await;
        tokio::time::sleep(DRAIN_TIMEOUT).await;
    };
    tokio::select! {
        drained = drained => drained,
        () = deadline => {
            tracing::warn!(
                drain_secs = DRAIN_TIMEOUT.as_secs(),
                "calls or streams still open when the drain's time ran out: stopping without them"
            );
            Ok(())
        }
    }
}

/// The reflection service's descriptors: the API, Envoy's ext_authz and ext_proc, and health.
fn reflection_builder() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(ENVOY_FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
}

/// The layer of every gRPC listener that mends one answer: tonic answers a request over
/// `max_decoding_message_size` with `OUT_OF_RANGE`; the gRPC status code guide gives
/// `RESOURCE_EXHAUSTED` to a message over the receiver's limit, and an operator needs the
/// configuration key to raise it. The answer does not say which service refused, so the
/// message names both limits. Every other answer passes unchanged, after one header
/// look-up: this runs on every call, `Health/Check` included.
fn size_limit_named(
    max_request_bytes: usize,
) -> MapResponseLayer<
    impl Fn(http::Response<tonic::body::Body>) -> http::Response<tonic::body::Body> + Clone,
> {
    const GRPC_STATUS: http::HeaderName = http::HeaderName::from_static("grpc-status");
    const GRPC_MESSAGE: http::HeaderName = http::HeaderName::from_static("grpc-message");
    MapResponseLayer::new(move |mut response: http::Response<tonic::body::Body>| {
        let headers = response.headers_mut();
        // Only a trailers-only answer carries its status among the headers.
        if headers.get(GRPC_STATUS).is_none_or(|status| status != "11") {
            return response;
        }
        // grpc-message is percent-encoded (gRPC over HTTP/2, "Responses").
        let too_large = headers.get(GRPC_MESSAGE).is_some_and(|message| {
            percent_encoding::percent_decode(message.as_bytes())
                .decode_utf8_lossy()
                .contains("message length too large")
        });
        if too_large {
            let message = format!(
                "the request message is larger than its service takes: max_request_bytes \
                 ({max_request_bytes} bytes) for the API and Envoy's services, \
                 {SMALL_MESSAGE_BYTES} bytes for health and reflection"
            );
            if let Ok(message) = http::HeaderValue::from_str(&message) {
                headers.insert(GRPC_STATUS, http::HeaderValue::from_static("8"));
                headers.insert(GRPC_MESSAGE, message);
            }
        }
        response
    })
}

/// Connections to `/metrics` open at once: scrapers are a few, and the listener is often
/// reachable from the whole cluster.
const METRICS_MAX_CONNECTIONS: u32 = 64;

/// Serves `/metrics` on `listener` in the background, until the returned guard is dropped.
fn start_metrics(
    listener: TcpListener,
    handle: PrometheusHandle,
    authenticator: Arc<Authenticator>,
) -> AbortOnDrop {
    let address = listener
        .local_addr()
        .map(|address| address.to_string())
        .unwrap_or_default();
    tracing::info!(listen = %address, "serving Prometheus metrics on /metrics");
    AbortOnDrop(tokio::spawn(async move {
        let _upkeep = AbortOnDrop(tokio::spawn(telemetry::metrics::upkeep(handle.clone())));
        let router = telemetry::metrics::router(handle, authenticator);
        let served = http_listener::serve(
            listener,
            router,
            METRICS_MAX_CONNECTIONS,
            std::future::pending(),
        );
        if let Err(error) = served.await {
            tracing::error!(%error, "the metrics listener stopped");
        }
    }))
}

/// A gRPC server whose connections are held to the same rules on every listener.
fn grpc_server(config: &Config) -> Server {
    let server = Server::builder()
        // tonic leaves streams per connection unbounded; a call reads its message before it
        // takes a slot (app::overload), so this bounds what one connection has in reading.
        .max_concurrent_streams(Some(MAX_STREAMS_PER_CONNECTION))
        // hyper's own bound on the streams it resets for a peer's errors before it sends
        // GOAWAY (RUSTSEC-2024-0003), which tonic turns off by passing hyper no value.
        .http2_max_local_error_reset_streams(Some(MAX_LOCAL_ERROR_RESETS))
        // Pings find peers that vanished without closing (a node lost, a NAT timeout).
        .http2_keepalive_interval(Some(HTTP2_KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(HTTP2_KEEPALIVE_TIMEOUT));
    // Without a grace: tonic 0.14, given one, sleeps through the age and the grace and then
    // drops the connection, calls in flight and all, without ever sending the GOAWAY. So a
    // connection past its age is told GOAWAY and closes once its calls have finished.
    match config.max_connection_age {
        Some(age) => server.max_connection_age(age),
        None => server,
    }
}

/// How long every listener waits after a failed `accept` before the next one.
///
/// A connection the peer reset or abandoned before it was taken is the peer's business: the
/// next is taken at once, or a client could slow a listener for everyone by resetting its
/// own connections. Anything else means the process ran out of something (descriptors,
/// memory): it is logged, and the listener pauses rather than spin.
fn accept_pause(error: &std::io::Error) -> Option<Duration> {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        error.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return None;
    }
    tracing::warn!(%error, "cannot accept a connection; trying again in {ACCEPT_PAUSE:?}");
    Some(ACCEPT_PAUSE)
}

/// Stops a background task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The accepted connections, with Nagle's algorithm off: small gRPC responses must not wait
/// for the peer's delayed ACK (a 40 ms stall per call otherwise), with TCP keepalive so dead
/// peers behind a load balancer are noticed, and answered in one write ([`SingleWrite`]);
/// at most `max_connections` at once, each with its preface in time ([`Bounded`]).
fn incoming(
    listener: TcpListener,
    max_connections: usize,
) -> impl tokio_stream::Stream<Item = std::io::Result<Admitted<SingleWrite<tokio::net::TcpStream>>>>
{
    use tokio_stream::StreamExt as _;
    let accepted = TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(tls::TCP_KEEPALIVE))
        .map(|accepted| accepted.map(SingleWrite));
    Bounded::new(accepted, max_connections)
}

#[cfg(test)]
mod tests {
    use std::io::{Error, ErrorKind};

    use super::{ACCEPT_PAUSE, accept_pause};

    #[test]
    fn a_connection_the_peer_dropped_does_not_pause_a_listener() {
        for kind in [
            ErrorKind::ConnectionAborted,
            ErrorKind::ConnectionReset,
            ErrorKind::ConnectionRefused,
        ] {
            assert_eq!(accept_pause(&Error::from(kind)), None, "{kind:?}");
        }
        // EMFILE: the process is out of descriptors.
        assert_eq!(
            accept_pause(&Error::from_raw_os_error(24)),
            Some(ACCEPT_PAUSE)
        );
        assert_eq!(
            accept_pause(&Error::from(ErrorKind::OutOfMemory)),
            Some(ACCEPT_PAUSE)
        );
    }
}
