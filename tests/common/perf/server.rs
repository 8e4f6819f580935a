//! The server under measurement: the real binary in its own process (pinned to CPU 0 when
//! the options ask for it and `taskset` is there), its configuration written for the run,
//! and what `/proc` says of it.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use http::uri::Scheme;

use super::keys::{AUDIENCE, ISSUER, Keys};
use super::options::{Options, Transport};
use super::preencoded::Link;

/// The cache bound of the timed scenarios: far above what any of them fills.
pub(super) const SCENARIO_CACHE_BYTES: u64 = 1024 * 1024 * 1024;
/// How long a server may take to stop after SIGTERM before it is killed.
pub(super) const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// The server's clock ticks per second in `/proc/<pid>/stat` (USER_HZ).
pub(super) const TICKS_PER_SECOND: f64 = 100.0;

/// The server process: [`Server::stop`] ends it as Kubernetes would, dropping it kills it.
pub(super) struct Server {
    pub(super) served: crate::spawned::Served,
    _config: tempfile::NamedTempFile,
    /// The certificates of a TLS server, kept until it stops.
    pki: Option<crate::tls::Pki>,
    /// The directory of a Unix socket, removed when the server is gone.
    _socket_dir: Option<tempfile::TempDir>,
    /// The Unix socket it serves on, when asked to.
    socket: Option<std::path::PathBuf>,
    /// Where it serves its metrics, when asked to.
    metrics: Option<std::net::SocketAddr>,
}

/// The token cache as the server's metrics show it.
#[derive(Clone, Copy, Debug, Default)]
pub struct CacheState {
    pub entries: f64,
    /// The sum of the entries' weights, which `max_bytes` bounds.
    pub weighed_bytes: f64,
    /// Entries evicted, or refused by the cache's admission, for want of room.
    pub evictions: f64,
}

impl Server {
    /// The server the timed scenarios share (a cache no scenario fills), with the
    /// connections `options` asks for.
    pub(super) async fn for_scenarios(
        binary: &Path,
        keys: &Keys,
        options: &Options,
    ) -> (Server, Arc<Vec<Link>>) {
        Server::with_cache(binary, keys, options, SCENARIO_CACHE_BYTES, options.metrics).await
    }

    /// A server whose token cache is bounded at `cache_bytes`, serving its metrics if
    /// `metrics` (their cost falls on every call), with the connections `options` asks for.
    pub(super) async fn with_cache(
        binary: &Path,
        keys: &Keys,
        options: &Options,
        cache_bytes: u64,
        metrics: bool,
    ) -> (Server, Arc<Vec<Link>>) {
        let server = Server::start(
            binary,
            keys,
            cache_bytes,
            options.pin_server,
            options.transport,
            metrics,
        )
        .await;
        let links = Arc::new(server.links(options.connections.max(1)).await);
        (server, links)
    }

    pub(super) async fn start(
        binary: &Path,
        keys: &Keys,
        cache_bytes: u64,
        pin: bool,
        transport: Transport,
        metrics: bool,
    ) -> Server {
        let config = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        // A port free a moment ago: the server binds it again at once.
        let metrics = metrics.then(|| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|listener| listener.local_addr())
                .unwrap()
        });
        let metrics_listen = metrics
            .map(|address| address.to_string())
            .unwrap_or_default();
        let pki = (transport == Transport::Tls).then(|| crate::tls::Pki::new("perf"));
        let tls_section = pki
            .as_ref()
            .map(|pki| pki.tls_toml(&pki.server(), None))
            .unwrap_or_default();
        let socket_dir = (transport == Transport::Unix).then(|| tempfile::tempdir().unwrap());
        let socket = socket_dir.as_ref().map(|dir| dir.path().join("grpc.sock"));
        let unix_listen = socket
            .as_ref()
            .map(|socket| format!("unix_listen = \"{}\"\n", socket.display()))
            .unwrap_or_default();
        std::fs::write(
            config.path(),
            format!(
                "{unix_listen}max_concurrent_calls = 100000\n[[issuers]]\nissuer = \"{ISSUER}\"\naudiences = [\"{AUDIENCE}\"]\njwks = '{}'\n[cache]\nmax_bytes = {cache_bytes}\n[envoy]\nbases = [{{ prefix = \"/fhir/\" }}]\n[telemetry]\nmetrics_listen = \"{metrics_listen}\"\naudit = \"off\"\n{tls_section}",
                keys.jwks
            ),
        )
        .unwrap();
        let pinned = pin && Command::new("taskset").arg("--version").output().is_ok();
        let mut command = if pinned {
            let mut command = crate::spawned::command("taskset");
            command.args(["-c", "0"]).arg(binary);
            command
        } else {
            crate::spawned::command(binary)
        };
        command.args(["serve", "--config"]).arg(config.path());
        let served = crate::spawned::Served::start(command);
        Server {
            served,
            _config: config,
            pki,
            _socket_dir: socket_dir,
            socket,
            metrics,
        }
    }

    /// The token cache as the server's metrics show it now.
    pub(super) async fn cache_state(&self) -> CacheState {
        use smart_authz::telemetry::metrics::{CACHE_ENTRIES, CACHE_EVICTIONS, CACHE_SIZE};
        let address = self.metrics.expect("a server started with its metrics");
        let text = reqwest::get(format!("http://{address}/metrics"))
            .await
            .and_then(reqwest::Response::error_for_status)
            .expect("the metrics listener answers")
            .text()
            .await
            .unwrap();
        let scrape = prometheus_parse::Scrape::parse(text.lines().map(|line| Ok(line.to_owned())))
            .expect("Prometheus text parses");
        let number = |name: &str| {
            scrape
                .samples
                .iter()
                .find(|sample| sample.metric == name)
                .map_or(0.0, |sample| match sample.value {
                    prometheus_parse::Value::Counter(value)
                    | prometheus_parse::Value::Gauge(value)
                    | prometheus_parse::Value::Untyped(value) => value,
                    _ => 0.0,
                })
        };
        CacheState {
            entries: number(CACHE_ENTRIES),
            weighed_bytes: number(CACHE_SIZE),
            evictions: number(CACHE_EVICTIONS),
        }
    }

    pub(super) fn pid(&self) -> u32 {
        self.served.pid()
    }

    /// SIGTERM, then up to [`SHUTDOWN_GRACE`] for the server to drain and exit by itself (or a
    /// panic: a service that ignores SIGTERM is a bug), so that a build instrumented for
    /// profile-guided optimisation writes what it counted (scripts/pgo-build.sh trains on
    /// these scenarios).
    pub(super) async fn stop(mut self) {
        assert!(self.served.send_sigterm(), "`kill -TERM` failed");
        assert!(
            self.served.exit_within(SHUTDOWN_GRACE).await.is_some(),
            "the server did not stop within {SHUTDOWN_GRACE:?} of SIGTERM"
        );
    }

    /// `count` HTTP/2 connections of their own.
    pub(super) async fn links(&self, count: usize) -> Vec<Link> {
        let mut links = Vec::with_capacity(count);
        for _ in 0..count {
            links.push(self.link().await);
        }
        links
    }

    /// An HTTP/2 connection of the `h2` crate's client, over the server's transport.
    pub(super) async fn link(&self) -> Link {
        let authority = http::uri::Authority::try_from(self.served.address.to_string()).unwrap();
        if let Some(socket) = &self.socket {
            let stream = tokio::net::UnixStream::connect(socket).await.unwrap();
            return Link::handshake(stream, Scheme::HTTP, authority).await;
        }
        let stream = tokio::net::TcpStream::connect(self.served.address)
            .await
            .unwrap();
        stream.set_nodelay(true).unwrap();
        match &self.pki {
            Some(pki) => {
                let stream = pki
                    .h2_connector()
                    .connect("localhost".try_into().unwrap(), stream)
                    .await
                    .expect("a TLS handshake");
                Link::handshake(stream, Scheme::HTTPS, authority).await
            }
            None => Link::handshake(stream, Scheme::HTTP, authority).await,
        }
    }
}

/// User + system CPU of `pid`, in clock ticks.
pub(super) fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let field = |index: usize| {
        fields
            .get(index)
            .and_then(|value| value.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}
