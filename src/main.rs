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
/// its own bookkeeping (docs/performance-log.md, "What the profile shows", the allocator).
/// The library leaves the choice to whoever embeds it.
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
    /// Configuration file, TOML (JSON when it ends in `.json`); without it, the built-in
    /// development configuration.
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
        config.listen_on(listen)?;
    }
    let runtime = smart_authz::app::runtime().context("starting the async runtime")?;
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
    // The last spans leave through the exporter's channel, a task on the runtime: the flush
    // waits on the blocking pool while this thread drives the runtime (with one CPU, the only
    // thread that does).
    runtime.block_on(async move {
        let flush = tokio::task::spawn_blocking(move || {
            telemetry.shutdown(std::time::Duration::from_secs(5));
        });
        if flush.await.is_err() {
            tracing::warn!("stopping the trace exporter failed; some spans may be lost");
        }
    });
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
