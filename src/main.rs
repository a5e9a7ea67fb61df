//! The `legibility` binary: parses the command line and hands over to [`legibility::cli`].

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = legibility::cli::Cli::parse();
    if let Some(threads) = cli.model_threads() {
        // candle reads its CPU thread count from RAYON_NUM_THREADS on every matrix product.
        // SAFETY: set before any other thread exists (the runtime is built below).
        unsafe { std::env::set_var("RAYON_NUM_THREADS", threads.to_string()) };
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        legibility::cli::init_tracing_as(cli.log_format);
        match legibility::cli::run(cli).await {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {}", legibility::cli::error_report(&e));
                std::process::ExitCode::FAILURE
            }
        }
    })
}
