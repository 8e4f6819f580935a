//! The `smart-authz` command line. Thin: parse arguments, call the library, set the exit code.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use smart_authz::explain::{ExplainArgs, explain};

#[derive(Parser)]
#[command(
    name = "smart-authz",
    version,
    about = "SMART on FHIR authorization decisions"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Decide one FHIR request for the given scopes and context, and say why.
    ///
    /// Exit status: 0 allow, 1 deny, 2 bad input.
    Explain(ExplainArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Explain(args) => match explain(&args) {
            Ok(explanation) => {
                println!("{}", explanation.output.trim_end());
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
