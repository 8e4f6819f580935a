//! The `smart-authz` command line. Thin: parse arguments, load configuration, run.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use smart_authz::config::Config;
use smart_authz::explain::{ExplainArgs, explain};
use smart_authz::mint::{MintArgs, mint};

/// mimalloc instead of glibc's malloc: a call allocates and frees dozens of small blocks
/// (a JSON resource hundreds), and glibc spent a third of a 5 KB resource's decision in
/// its own bookkeeping (docs/performance.md, "The allocator"). The library leaves the
/// choice to whoever embeds it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "smart-authz",
    version,
    about = "SMART on FHIR authorization decisions"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the gRPC API (the default command).
    Serve(ServeArgs),
    /// Mint a development access token, accepted by the built-in development configuration.
    Token(MintArgs),
    /// Decide one FHIR request for the given scopes and context, and say why.
    ///
    /// Exit status: 0 allow, 1 deny, 2 bad input.
    Explain(ExplainArgs),
}

#[derive(Default, clap::Args)]
struct ServeArgs {
    /// TOML configuration file; without it, the built-in development configuration.
    #[arg(long, env = "SMART_AUTHZ_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on, overriding the configuration's `listen`.
    #[arg(long)]
    listen: Option<SocketAddr>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve(ServeArgs::default())) {
        Command::Serve(args) => match serve(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("smart-authz: {error:#}");
                ExitCode::FAILURE
            }
        },
        Command::Token(args) => match mint(&args) {
            Ok(token) => {
                let _ = writeln!(std::io::stdout().lock(), "{token}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("smart-authz token: {error}");
                ExitCode::FAILURE
            }
        },
        Command::Explain(args) => match explain(&args) {
            Ok(explanation) => {
                let _ = writeln!(
                    std::io::stdout().lock(),
                    "{}",
                    explanation.output.trim_end()
                );
                if explanation.allowed {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                }
            }
            Err(error) => {
                eprintln!("smart-authz explain: {error}");
                ExitCode::from(2)
            }
        },
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = Config::load(args.config.as_deref())?;
    if let Some(listen) = args.listen {
        anyhow::ensure!(
            !config.development || smart_authz::config::listen_is_loopback(&listen),
            "--listen {listen}: the development configuration's signing key is public: listen on a loopback address, or pass --config"
        );
        config.listen = listen;
    }
    // One worker per CPU the process may use (its affinity and cgroup quota: what a
    // container is given). A second worker on one CPU only wakes and preempts the first: with
    // the service pinned to one core, one worker gave the same throughput and a p99 of 2.5 ms
    // instead of 5.5 ms (docs/performance.md). Slow work does not stall the worker: large JSON
    // is parsed on the blocking pool, and the telemetry flush at shutdown runs from this thread
    // while the worker sends.
    let workers = std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    // The OTLP exporter's channel is created on the runtime.
    let telemetry = {
        let _runtime = runtime.enter();
        smart_authz::telemetry::install(
            &config.log,
            &config.telemetry,
            &smart_authz::telemetry::process_environment,
        )
        .context("configuring telemetry")?
    };
    let served = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        smart_authz::app::run(listener, config, shutdown_signal()).await?;
        Ok(())
    });
    // From this thread, while the runtime's workers still run: the last spans are sent.
    telemetry.shutdown(std::time::Duration::from_secs(5));
    served
}

/// Resolves on SIGINT or SIGTERM (what Kubernetes sends before killing a pod).
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(terminate) => terminate,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
