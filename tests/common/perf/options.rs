//! How much the tool runs, and over which transport.

/// How much to run.
#[derive(Clone, Debug)]
pub struct Options {
    /// Calls per scenario, at most.
    pub calls: u64,
    /// Seconds per scenario, at most.
    pub seconds: f64,
    /// Calls in flight.
    pub concurrency: usize,
    /// HTTP/2 connections they share.
    pub connections: usize,
    /// Distinct cached tokens of the working-set scenario.
    pub working_set: usize,
    /// Distinct tokens of each cold scenario, at most (each is one call).
    pub cold_tokens: usize,
    /// Distinct tokens of the memory measurement.
    pub memory_tokens: usize,
    /// The cache bound of the memory-bound measurement, in bytes.
    pub memory_bound_bytes: u64,
    /// Pin the server to CPU 0.
    pub pin_server: bool,
    /// Run only these scenarios (and the floor); all when empty. For profiling one path.
    pub only: Vec<String>,
    /// Skip the memory measurement.
    pub skip_memory: bool,
    /// Serve the metrics during the scenarios, as deployments do: each decision is counted.
    pub metrics: bool,
    /// How the load generator reaches the server.
    pub transport: Transport,
}

/// The connection the calls travel on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Transport {
    /// Plaintext TCP on loopback, the default: the method the targets are stated in.
    #[default]
    Tcp,
    /// TLS over TCP (`[tls]`, a certificate made for the run).
    Tls,
    /// The Unix socket of `unix_listen`, as a co-located caller would use it.
    Unix,
}

impl Transport {
    pub(super) fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
            Transport::Unix => "unix",
        }
    }
}

impl Options {
    pub(super) fn runs(&self, name: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|only| only == name)
    }

    /// A measurement, not a smoke run (which sends a few hundred calls per scenario).
    pub(super) fn measures(&self) -> bool {
        self.calls >= 10_000
    }

    /// Raw verifications per measurement of one: enough for a stable median in a full
    /// measurement, a handful in a smoke run.
    pub(super) fn raw_rounds(&self) -> u32 {
        if self.measures() { 2_000 } else { 20 }
    }
}

impl Options {
    /// The measurement of docs/performance.md.
    pub fn full() -> Self {
        Options {
            calls: 200_000,
            seconds: 10.0,
            concurrency: 32,
            connections: 4,
            working_set: 10_000,
            cold_tokens: 10_000,
            memory_tokens: 100_000,
            memory_bound_bytes: 64 * 1024 * 1024,
            pin_server: true,
            only: Vec::new(),
            skip_memory: false,
            metrics: false,
            transport: Transport::Tcp,
        }
    }

    /// A few hundred calls: the tool runs, every scenario answers, nothing is measured.
    pub fn smoke() -> Self {
        Options {
            calls: 300,
            seconds: 10.0,
            concurrency: 8,
            connections: 2,
            working_set: 50,
            cold_tokens: 100,
            memory_tokens: 300,
            memory_bound_bytes: 64 * 1024,
            pin_server: false,
            only: Vec::new(),
            skip_memory: false,
            metrics: false,
            transport: Transport::Tcp,
        }
    }
}
