//! The `legibility` binary: parses the command line and hands over to [`legibility::cli`].

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = legibility::cli::Cli::parse();
    legibility::cli::init_tracing();
    match legibility::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
