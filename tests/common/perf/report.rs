//! A full report's figures: each scenario's, the raw verifications' and the memory's, as a
//! table and as JSON.

use std::path::Path;

use serde_json::{Value, json};

use super::options::Options;

/// One scenario's figures.
#[derive(Clone, Debug)]
pub struct Measured {
    pub name: &'static str,
    pub calls: u64,
    pub errors: u64,
    pub seconds: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    /// Server CPU time per call, user + system.
    pub server_cpu_us: f64,
}

impl Measured {
    pub fn rate(&self) -> f64 {
        self.calls as f64 / self.seconds.max(1e-9)
    }

    /// The share of one CPU the server used while the scenario ran. Near 1 the server was
    /// the limit (with one CPU it has no other); well below it the load generator was, and
    /// the server, waiting for calls, spends more per call (fewer calls per wake-up and per
    /// system call): such a scenario measures the generator as much as the service.
    pub fn server_busy(&self) -> f64 {
        self.server_cpu_us * self.rate() / 1e6
    }
}

/// What a report was measured on. Figures from two machines, or from two builds of the
/// server, do not compare: every report names its processor and the binary it ran.
#[derive(Clone, Debug)]
pub struct Machine {
    /// The first `model name` of `/proc/cpuinfo`, when the kernel gives one.
    pub cpu_model: Option<String>,
    /// Processors online: the machine's, not the one CPU the load generator pins itself to.
    pub cpus: usize,
    /// The server binary measured (`AUTHZ_BIN`, or the release build).
    pub server: String,
}

impl Machine {
    pub fn of(server: &Path) -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let field = |line: &str, name: &str| {
            let (key, value) = line.split_once(':')?;
            (key.trim() == name).then(|| value.trim().to_owned())
        };
        let cpu_model = cpuinfo.lines().find_map(|line| field(line, "model name"));
        let listed = cpuinfo
            .lines()
            .filter(|line| field(line, "processor").is_some())
            .count();
        let cpus = if listed > 0 {
            listed
        } else {
            std::thread::available_parallelism().map_or(1, usize::from)
        };
        Machine {
            cpu_model,
            cpus,
            server: server.display().to_string(),
        }
    }

    /// One line for the head of a table.
    pub fn line(&self) -> String {
        format!(
            "machine: {}, {} CPUs; server {}\n",
            self.cpu_model.as_deref().unwrap_or("processor unknown"),
            self.cpus,
            self.server
        )
    }
}

/// The memory figures.
#[derive(Clone, Debug, Default)]
pub struct Memory {
    pub tokens: usize,
    pub idle_kib: u64,
    pub filled_kib: u64,
    pub bound_bytes: u64,
    pub bounded_kib: u64,
}

impl Memory {
    /// Resident bytes per cached token, with a cache large enough for all of them.
    pub fn bytes_per_token(&self) -> f64 {
        (self.filled_kib.saturating_sub(self.idle_kib) * 1024) as f64 / self.tokens.max(1) as f64
    }

    /// Resident memory once a `bound_bytes` cache is full, over `bound_bytes` + idle.
    pub fn bound_ratio(&self) -> f64 {
        (self.bounded_kib * 1024) as f64 / (self.bound_bytes + self.idle_kib * 1024) as f64
    }
}

/// The whole report.
#[derive(Clone, Debug)]
pub struct Report {
    pub scenarios: Vec<Measured>,
    /// One RS256 and one ES256 signature verification in this process, in µs.
    pub raw_rs256_us: f64,
    pub raw_es256_us: f64,
    pub memory: Memory,
    pub options: Options,
    pub machine: Machine,
}

impl Report {
    pub(super) fn floor(&self) -> f64 {
        self.scenarios
            .iter()
            .find(|scenario| scenario.name == "health_floor")
            .map_or(1.0, Measured::rate)
    }

    /// What a cold call costs the server beyond a cached one (the transport and the decision
    /// are the same): the verification and caching of a new token, to set against the raw
    /// verification.
    pub fn cold_extra_us(&self, cold: &str) -> Option<f64> {
        let cached = self.scenario("check_cached")?.server_cpu_us;
        Some(self.scenario(cold)?.server_cpu_us - cached)
    }

    pub fn scenario(&self, name: &str) -> Option<&Measured> {
        self.scenarios.iter().find(|scenario| scenario.name == name)
    }

    pub fn errors(&self) -> u64 {
        self.scenarios.iter().map(|scenario| scenario.errors).sum()
    }

    pub fn table(&self) -> String {
        let floor = self.floor();
        let mut table = self.machine.line();
        table.push_str(&format!(
            "{:<20} {:>8} {:>10} {:>6} {:>8} {:>8} {:>10} {:>5} {:>6}\n",
            "scenario",
            "calls",
            "calls/s",
            "floor",
            "p50 µs",
            "p99 µs",
            "server µs",
            "busy",
            "errors"
        ));
        for scenario in &self.scenarios {
            table.push_str(&format!(
                "{:<20} {:>8} {:>10.0} {:>6.2} {:>8} {:>8} {:>10.1} {:>5.2} {:>6}\n",
                scenario.name,
                scenario.calls,
                scenario.rate(),
                scenario.rate() / floor,
                scenario.p50_us,
                scenario.p99_us,
                scenario.server_cpu_us,
                scenario.server_busy(),
                scenario.errors
            ));
        }
        table.push_str(&format!(
            "raw signature verification in process: RS256 {:.1} µs, ES256 {:.1} µs\n",
            self.raw_rs256_us, self.raw_es256_us
        ));
        for (name, raw) in [
            ("cold_rs256", self.raw_rs256_us),
            ("cold_es256", self.raw_es256_us),
        ] {
            if let Some(extra) = self.cold_extra_us(name) {
                table.push_str(&format!(
                    "{name}: {extra:.1} µs server CPU per call beyond the cached call, {:.2}× the raw verification (measured minutes apart; --paired-cold for the target)\n",
                    extra / raw
                ));
            }
        }
        let memory = &self.memory;
        if memory.tokens == 0 {
            table.push_str("memory: not measured\n");
            return table;
        }
        table.push_str(&format!(
            "memory: idle {} KiB; {} cached tokens {} KiB, {:.0} bytes per token; cache bound {} KiB full at {} KiB resident, {:.2} of bound + idle\n",
            memory.idle_kib,
            memory.tokens,
            memory.filled_kib,
            memory.bytes_per_token(),
            memory.bound_bytes / 1024,
            memory.bounded_kib,
            memory.bound_ratio()
        ));
        table
    }

    pub fn json(&self) -> Value {
        let floor = self.floor();
        json!({
            "options": {
                "calls": self.options.calls,
                "seconds": self.options.seconds,
                "concurrency": self.options.concurrency,
                "connections": self.options.connections,
                "working_set": self.options.working_set,
                "pin_server": self.options.pin_server,
                "cold_tokens": self.options.cold_tokens,
                "transport": self.options.transport.name(),
            },
            "machine": {
                "cpu_model": self.machine.cpu_model,
                "cpus": self.machine.cpus,
                "server": self.machine.server,
            },
            "scenarios": self.scenarios.iter().map(|scenario| json!({
                "name": scenario.name,
                "calls": scenario.calls,
                "errors": scenario.errors,
                "seconds": scenario.seconds,
                "calls_per_second": scenario.rate(),
                "ratio_to_floor": scenario.rate() / floor,
                "p50_us": scenario.p50_us,
                "p99_us": scenario.p99_us,
                "server_cpu_us_per_call": scenario.server_cpu_us,
                "server_busy": scenario.server_busy(),
            })).collect::<Vec<_>>(),
            "raw_verify_us": { "rs256": self.raw_rs256_us, "es256": self.raw_es256_us },
            "cold_beyond_cached_us": {
                "rs256": self.cold_extra_us("cold_rs256"),
                "es256": self.cold_extra_us("cold_es256"),
            },
            "memory": {
                "tokens": self.memory.tokens,
                "idle_kib": self.memory.idle_kib,
                "filled_kib": self.memory.filled_kib,
                "bytes_per_token": self.memory.bytes_per_token(),
                "bound_bytes": self.memory.bound_bytes,
                "bounded_kib": self.memory.bounded_kib,
                "bound_ratio": self.memory.bound_ratio(),
            },
        })
    }
}
